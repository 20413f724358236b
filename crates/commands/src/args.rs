//! Argument parsing shared by the command families.

use bytes::Bytes;

use crate::reply::{err, CmdError, NOT_FLOAT, NOT_INTEGER};

/// Case-insensitive comparison with an option keyword.
pub fn is(arg: &[u8], keyword: &str) -> bool {
    arg.eq_ignore_ascii_case(keyword.as_bytes())
}

/// A strict 64-bit integer as Redis's `string2ll` accepts it.
pub fn int(arg: &[u8]) -> Result<i64, CmdError> {
    seshat_protocol_resp::parse_i64(arg).ok_or_else(|| err(NOT_INTEGER))
}

/// A float as Redis's `string2ld` accepts it: no surrounding spaces, not
/// empty, not NaN.
pub fn float(arg: &[u8]) -> Result<f64, CmdError> {
    parse_float(arg).ok_or_else(|| err(NOT_FLOAT))
}

/// See [`float`].
pub fn parse_float(arg: &[u8]) -> Option<f64> {
    let text = std::str::from_utf8(arg).ok()?;
    if text.is_empty() || text.len() > 5000 || text.trim() != text {
        return None;
    }
    let lower = text.to_ascii_lowercase();
    let value = match lower.trim_start_matches(['+', '-']) {
        "inf" | "infinity" => {
            if lower.starts_with('-') {
                f64::NEG_INFINITY
            } else {
                f64::INFINITY
            }
        }
        _ => text.parse::<f64>().ok()?,
    };
    (!value.is_nan()).then_some(value)
}

/// A float formatted the way Redis prints `INCRBYFLOAT` results: the
/// shortest text that reads back as the same value, no exponent for
/// ordinary magnitudes, and never `-0`.
pub fn format_float(value: f64) -> String {
    if value == 0.0 {
        return "0".into();
    }
    if value.is_infinite() {
        return if value > 0.0 {
            "inf".into()
        } else {
            "-inf".into()
        };
    }
    format!("{value}")
}

/// The argument at `index`; arity was checked before any handler runs.
pub fn arg(args: &[Bytes], index: usize) -> Result<&Bytes, CmdError> {
    args.get(index)
        .ok_or_else(|| err("ERR internal error: argument missing after arity check"))
}

/// Redis's glob match (`stringmatchlen`): `*`, `?`, `[...]` with ranges
/// and `^` negation, `\` escapes. `nocase` folds ASCII case. Runs in
/// O(pattern × text): one remembered `*` to backtrack to, never recursion.
pub fn glob_match(pattern: &[u8], text: &[u8], nocase: bool) -> bool {
    let tokens = glob_tokens(pattern);
    let (mut p, mut t) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        let ch = text.get(t).copied().unwrap_or(0);
        match tokens.get(p) {
            Some(Token::Star) => {
                star = Some((p, t));
                p += 1;
                continue;
            }
            Some(tok) if tok.matches(ch, nocase) => {
                p += 1;
                t += 1;
                continue;
            }
            _ => {}
        }
        match star {
            Some((sp, st)) => {
                p = sp + 1;
                t = st + 1;
                star = Some((sp, st + 1));
            }
            None => return false,
        }
    }
    tokens
        .get(p..)
        .unwrap_or_default()
        .iter()
        .all(|t| matches!(t, Token::Star))
}

enum Token {
    Star,
    Any,
    Lit(u8),
    Class { negate: bool, items: Vec<(u8, u8)> },
}

impl Token {
    fn matches(&self, ch: u8, nocase: bool) -> bool {
        let fold = |b: u8| if nocase { b.to_ascii_lowercase() } else { b };
        match self {
            Token::Star | Token::Any => true,
            Token::Lit(c) => fold(*c) == fold(ch),
            Token::Class { negate, items } => {
                let c = fold(ch);
                let hit = items.iter().any(|(lo, hi)| {
                    let (lo, hi) = (fold(*lo), fold(*hi));
                    let (lo, hi) = if lo <= hi { (lo, hi) } else { (hi, lo) };
                    (lo..=hi).contains(&c)
                });
                hit != *negate
            }
        }
    }
}

fn glob_tokens(mut p: &[u8]) -> Vec<Token> {
    let mut out = Vec::new();
    while let Some((&c, rest)) = p.split_first() {
        p = rest;
        out.push(match c {
            b'*' => Token::Star,
            b'?' => Token::Any,
            b'\\' => match p.split_first() {
                Some((&lit, rest)) => {
                    p = rest;
                    Token::Lit(lit)
                }
                None => Token::Lit(b'\\'),
            },
            b'[' => {
                let negate = matches!(p.first(), Some(b'^'));
                if negate {
                    p = p.get(1..).unwrap_or_default();
                }
                let mut items = Vec::new();
                loop {
                    match p {
                        [] => break,
                        [b']', rest @ ..] => {
                            p = rest;
                            break;
                        }
                        [b'\\', lit, rest @ ..] => {
                            items.push((*lit, *lit));
                            p = rest;
                        }
                        [a, b'-', b, rest @ ..] if *b != b']' => {
                            items.push((*a, *b));
                            p = rest;
                        }
                        [c, rest @ ..] => {
                            items.push((*c, *c));
                            p = rest;
                        }
                    }
                }
                Token::Class { negate, items }
            }
            c => Token::Lit(c),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_like_redis() {
        assert!(glob_match(b"*", b"anything", false));
        assert!(glob_match(b"h?llo", b"hello", false));
        assert!(glob_match(b"h*llo", b"heeeello", false));
        assert!(glob_match(b"h[ae]llo", b"hallo", false));
        assert!(!glob_match(b"h[ae]llo", b"hillo", false));
        assert!(glob_match(b"h[^e]llo", b"hallo", false));
        assert!(!glob_match(b"h[^e]llo", b"hello", false));
        assert!(glob_match(b"h[a-b]llo", b"hbllo", false));
        assert!(glob_match(b"key:\\*", b"key:*", false));
        assert!(!glob_match(b"key:\\*", b"key:a", false));
        assert!(glob_match(b"SAVE", b"save", true));
        assert!(!glob_match(b"SAVE", b"save", false));
        assert!(glob_match(b"foo*", b"foo", false));
        assert!(!glob_match(b"a*b", b"a", false));
        assert!(glob_match(b"*.txt", b"a.b.txt", false));
        assert!(glob_match(b"a*b*c", b"aXbYbZc", false));
        // A hostile pattern ends quickly.
        let p = b"*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b".as_slice();
        assert!(!glob_match(p, &[b'a'; 4000], false));
    }

    #[test]
    fn floats_like_redis() {
        assert_eq!(parse_float(b"1.5"), Some(1.5));
        assert_eq!(parse_float(b" 1"), None);
        assert_eq!(parse_float(b"1 "), None);
        assert_eq!(parse_float(b""), None);
        assert_eq!(parse_float(b"nan"), None);
        assert_eq!(parse_float(b"+inf"), Some(f64::INFINITY));
        assert_eq!(format_float(3.0), "3");
        assert_eq!(format_float(-0.0), "0");
        assert_eq!(format_float(17179869185.5), "17179869185.5");
    }
}
