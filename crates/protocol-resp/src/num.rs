//! Strict integer parsing shared by the decoders and command parsing.

/// Longest accepted integer text, as Redis's `LONG_STR_SIZE - 1`:
/// `-9223372036854775808` is 20 bytes.
const MAX_INTEGER_TEXT: usize = 20;

/// Parses a signed 64-bit integer exactly as Redis's `string2ll` does:
/// optional `-`, no `+`, no leading zeros (except `0` itself), no `-0`,
/// no whitespace, no overflow.
pub fn parse_i64(text: &[u8]) -> Option<i64> {
    if text.is_empty() || text.len() > MAX_INTEGER_TEXT {
        return None;
    }
    if text == b"0" {
        return Some(0);
    }
    let (negative, digits) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    let magnitude = parse_magnitude(digits)?;
    if negative {
        0i64.checked_sub_unsigned(magnitude)
    } else {
        i64::try_from(magnitude).ok()
    }
}

/// Parses a non-empty run of digits that does not start with `0`.
fn parse_magnitude(digits: &[u8]) -> Option<u64> {
    match digits.first() {
        Some(b'1'..=b'9') => {}
        _ => return None,
    }
    digits.iter().try_fold(0u64, |acc, &b| {
        if !b.is_ascii_digit() {
            return None;
        }
        acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn accepts_canonical_integers() {
        assert_eq!(parse_i64(b"0"), Some(0));
        assert_eq!(parse_i64(b"7"), Some(7));
        assert_eq!(parse_i64(b"-1"), Some(-1));
        assert_eq!(parse_i64(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
    }

    #[test]
    fn rejects_what_string2ll_rejects() {
        for bad in [
            &b""[..],
            b"-",
            b"+1",
            b"-0",
            b"01",
            b" 1",
            b"1 ",
            b"1a",
            b"9223372036854775808",
            b"-9223372036854775809",
            b"99999999999999999999",
            b"000000000000000000001",
        ] {
            assert_eq!(parse_i64(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn round_trips_every_width() {
        for n in [1i64, 12, -123, 4_567_890, i64::MAX / 3, i64::MIN + 1] {
            assert_eq!(parse_i64(n.to_string().as_bytes()), Some(n));
        }
    }
}
