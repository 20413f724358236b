//! Splitting inline commands into arguments, a port of Redis's
//! `sdssplitargs`.

use bytes::Bytes;

/// Quoting state inside one token.
#[derive(Clone, Copy)]
enum Quote {
    None,
    Double,
    Single,
}

/// Splits an inline command line into arguments with Redis's rules:
/// whitespace separates arguments; `"..."` supports `\xHH`, `\n`, `\r`,
/// `\t`, `\b`, `\a` and `\<any>`; `'...'` supports `\'`; a closing quote
/// must be followed by whitespace or the end of the line. As in C, the line
/// ends at the first NUL byte.
///
/// Returns `None` for unbalanced quotes.
pub(crate) fn split_args(line: &[u8]) -> Option<Vec<Bytes>> {
    let line = match line.iter().position(|&b| b == 0) {
        Some(nul) => line.get(..nul).unwrap_or_default(),
        None => line,
    };
    let mut args = Vec::new();
    let mut pos = 0;
    loop {
        while line.get(pos).is_some_and(|&b| is_c_space(b)) {
            pos += 1;
        }
        if pos >= line.len() {
            return Some(args);
        }
        let (token, next) = read_token(line, pos)?;
        args.push(Bytes::from(token));
        pos = next;
    }
}

/// Reads one token starting at `pos`; returns it and the position after it.
fn read_token(line: &[u8], mut pos: usize) -> Option<(Vec<u8>, usize)> {
    let mut token = Vec::new();
    let mut quote = Quote::None;
    loop {
        let Some(&byte) = line.get(pos) else {
            // End of line: fine outside quotes, unbalanced inside.
            return match quote {
                Quote::None => Some((token, pos)),
                Quote::Double | Quote::Single => None,
            };
        };
        match quote {
            Quote::None => match byte {
                b' ' | b'\n' | b'\r' | b'\t' => return Some((token, pos + 1)),
                b'"' => quote = Quote::Double,
                b'\'' => quote = Quote::Single,
                _ => token.push(byte),
            },
            Quote::Double => match byte {
                b'\\' => pos = double_quoted_escape(line, pos, &mut token),
                b'"' => return closing_quote(line, pos).then_some((token, pos + 1)),
                _ => token.push(byte),
            },
            Quote::Single => match byte {
                b'\\' if line.get(pos + 1) == Some(&b'\'') => {
                    token.push(b'\'');
                    pos += 1;
                }
                b'\'' => return closing_quote(line, pos).then_some((token, pos + 1)),
                _ => token.push(byte),
            },
        }
        pos += 1;
    }
}

/// Handles a backslash at `pos` inside double quotes; returns the position
/// of the last byte consumed.
fn double_quoted_escape(line: &[u8], pos: usize, token: &mut Vec<u8>) -> usize {
    let next = line.get(pos + 1).copied();
    if next == Some(b'x') {
        let hi = line.get(pos + 2).copied().and_then(hex_value);
        let lo = line.get(pos + 3).copied().and_then(hex_value);
        if let (Some(hi), Some(lo)) = (hi, lo) {
            token.push(hi * 16 + lo);
            return pos + 3;
        }
    }
    match next {
        Some(escaped) => {
            token.push(match escaped {
                b'n' => b'\n',
                b'r' => b'\r',
                b't' => b'\t',
                b'b' => 0x08,
                b'a' => 0x07,
                other => other,
            });
            pos + 1
        }
        // A trailing backslash is kept; the missing quote fails next.
        None => {
            token.push(b'\\');
            pos
        }
    }
}

/// A closing quote must be followed by whitespace or the end of the line.
fn closing_quote(line: &[u8], pos: usize) -> bool {
    line.get(pos + 1).is_none_or(|&b| is_c_space(b))
}

/// C's `isspace` in the "C" locale.
fn is_c_space(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// The value of an ASCII hex digit.
fn hex_value(byte: u8) -> Option<u8> {
    char::from(byte)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn split(line: &[u8]) -> Option<Vec<Vec<u8>>> {
        split_args(line).map(|args| args.into_iter().map(|a| a.to_vec()).collect())
    }

    fn ok(line: &[u8], expected: &[&[u8]]) {
        let expected: Vec<Vec<u8>> = expected.iter().map(|a| a.to_vec()).collect();
        assert_eq!(
            split(line),
            Some(expected),
            "{:?}",
            String::from_utf8_lossy(line)
        );
    }

    #[test]
    fn whitespace_separates() {
        ok(b"SET  k\tv", &[b"SET", b"k", b"v"]);
        ok(b"  PING  ", &[b"PING"]);
        ok(b"", &[]);
        ok(b" \t \x0b\x0c ", &[]);
    }

    #[test]
    fn double_quotes_and_escapes() {
        ok(
            br#"SET "a b" "x\x41\x7a\n\r\t\b\a\"\\q""#,
            &[b"SET", b"a b", b"xAz\n\r\t\x08\x07\"\\q"],
        );
        ok(br#""\xZZ""#, &[b"xZZ"]);
        ok(br#""""#, &[b""]);
        ok(br#"a"b c" d"#, &[b"ab c", b"d"]);
    }

    #[test]
    fn single_quotes() {
        ok(br"'it\'s' '\n'", &[b"it's", b"\\n"]);
    }

    #[test]
    fn unbalanced_quotes() {
        assert_eq!(split(br#""abc"#), None);
        assert_eq!(split(br"'abc"), None);
        assert_eq!(split(br#""abc"x"#), None);
        assert_eq!(split(br"'abc'x"), None);
        assert_eq!(split(br#""abc\"#), None);
    }

    #[test]
    fn nul_ends_the_line() {
        ok(b"GET k\0ignored", &[b"GET", b"k"]);
        assert_eq!(split(b"GET \"k\0\""), None);
    }

    #[test]
    fn vertical_tab_is_part_of_unquoted_tokens() {
        ok(b"a\x0bb", &[b"a\x0bb"]);
    }
}
