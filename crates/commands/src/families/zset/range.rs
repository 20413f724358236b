//! Score, lex and rank ranges as Redis parses them, turned into walk
//! bounds.

use bytes::Bytes;

use crate::args::{float, is};
use crate::reply::{err, CmdError, NOT_FLOAT};

use super::store::{successor, IndexPos};

/// `min or max is not a float`.
pub(super) const SCORE_RANGE_ERR: &str = "ERR min or max is not a float";
/// `min or max not valid string range item`.
pub(super) const LEX_RANGE_ERR: &str = "ERR min or max not valid string range item";

/// A score argument as Redis's `string2d` accepts it (`ZADD`, `ZINCRBY`,
/// `WEIGHTS`): [`float`], refusing what overflows to infinity or
/// underflows to zero.
pub(super) fn score_arg(text: &[u8], error: &'static str) -> Result<f64, CmdError> {
    let value = float(text).map_err(|_| err(error))?;
    let mantissa = text
        .split(|&b| b == b'e' || b == b'E')
        .next()
        .unwrap_or_default();
    let overflow = value.is_infinite() && !text.iter().any(|b| b.eq_ignore_ascii_case(&b'i'));
    let underflow = value == 0.0 && mantissa.iter().any(|b| (b'1'..=b'9').contains(b));
    if overflow || underflow {
        return Err(err(error));
    }
    Ok(value)
}

/// A score argument of a `ZADD`-family command.
pub(super) fn score(text: &[u8]) -> Result<f64, CmdError> {
    score_arg(text, NOT_FLOAT)
}

/// A range end as C's `strtod` reads it in `zslParseRange`: leading
/// whitespace skipped, the whole rest a number (overflow is infinity), an
/// empty string zero, NaN refused.
fn strtod(text: &[u8]) -> Option<f64> {
    if text.is_empty() {
        return Some(0.0);
    }
    let s = std::str::from_utf8(text).ok()?;
    let s = s.trim_start_matches([' ', '\t', '\n', '\x0b', '\x0c', '\r']);
    let lower = s.to_ascii_lowercase();
    let value = match lower.trim_start_matches(['+', '-']) {
        "inf" | "infinity" if lower.starts_with('-') => f64::NEG_INFINITY,
        "inf" | "infinity" => f64::INFINITY,
        _ => s.parse::<f64>().ok()?,
    };
    (!value.is_nan()).then_some(value)
}

/// The smallest double above `x` (`f64::next_up`, which is newer than the
/// workspace's minimum Rust).
fn next_up(x: f64) -> f64 {
    if x.is_nan() || x == f64::INFINITY {
        return x;
    }
    if x == 0.0 {
        return f64::from_bits(1);
    }
    let bits = x.to_bits();
    f64::from_bits(if x > 0.0 { bits + 1 } else { bits - 1 })
}

/// Score index positions from (inclusive) and to (exclusive); `None`:
/// unbounded.
pub(super) type IndexBounds = (Option<IndexPos>, Option<IndexPos>);

/// Members from (inclusive) and to (exclusive); `None`: unbounded.
pub(super) type MemberBounds = (Option<Vec<u8>>, Option<Vec<u8>>);

/// A score range: `min`/`max`, each inclusive or (`(`) exclusive.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct ScoreRange {
    pub min: f64,
    pub max: f64,
    pub min_ex: bool,
    pub max_ex: bool,
}

impl ScoreRange {
    /// Parses `min` and `max` as `ZRANGEBYSCORE` does.
    pub fn parse(min: &[u8], max: &[u8]) -> Result<ScoreRange, CmdError> {
        let end = |t: &[u8]| -> Option<(f64, bool)> {
            match t.split_first() {
                Some((b'(', rest)) => strtod(rest).map(|v| (v, true)),
                _ => strtod(t).map(|v| (v, false)),
            }
        };
        let ((min, min_ex), (max, max_ex)) =
            end(min).zip(end(max)).ok_or_else(|| err(SCORE_RANGE_ERR))?;
        Ok(ScoreRange {
            min,
            max,
            min_ex,
            max_ex,
        })
    }

    /// The score index positions of the range, from (inclusive) and to
    /// (exclusive); `None` when no score can be in it.
    pub fn bounds(&self) -> Option<IndexBounds> {
        if self.min > self.max || (self.min == self.max && (self.min_ex || self.max_ex)) {
            return None;
        }
        let lo = match (self.min_ex, self.min) {
            (true, m) => Some((next_up(m), Vec::new())),
            (false, f64::NEG_INFINITY) => None,
            (false, m) => Some((m, Vec::new())),
        };
        let hi = match (self.max_ex, self.max) {
            (true, m) => Some((m, Vec::new())),
            (false, f64::INFINITY) => None,
            (false, m) => Some((next_up(m), Vec::new())),
        };
        Some((lo, hi))
    }
}

/// One end of a lex range.
#[derive(Debug, Clone, PartialEq, Eq)]
enum LexEnd {
    /// `-`: below every member.
    Min,
    /// `+`: above every member.
    Max,
    /// `[x`.
    Incl(Bytes),
    /// `(x`.
    Excl(Bytes),
}

impl LexEnd {
    fn parse(item: &Bytes) -> Option<LexEnd> {
        match item.first() {
            Some(b'+') if item.len() == 1 => Some(LexEnd::Max),
            Some(b'-') if item.len() == 1 => Some(LexEnd::Min),
            Some(b'[') => Some(LexEnd::Incl(item.slice(1..))),
            Some(b'(') => Some(LexEnd::Excl(item.slice(1..))),
            _ => None,
        }
    }
}

/// A lex range of members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct LexRange {
    min: LexEnd,
    max: LexEnd,
}

impl LexRange {
    /// Parses `min` and `max` as `ZRANGEBYLEX` does.
    pub fn parse(min: &Bytes, max: &Bytes) -> Result<LexRange, CmdError> {
        match (LexEnd::parse(min), LexEnd::parse(max)) {
            (Some(min), Some(max)) => Ok(LexRange { min, max }),
            _ => Err(err(LEX_RANGE_ERR)),
        }
    }

    /// The member bounds, from (inclusive) and to (exclusive); `None` when
    /// no member can be in the range.
    pub fn bounds(&self) -> Option<MemberBounds> {
        let lo = match &self.min {
            LexEnd::Max => return None,
            LexEnd::Min => None,
            LexEnd::Incl(x) => Some(x.to_vec()),
            LexEnd::Excl(x) => Some(successor(x)),
        };
        let hi = match &self.max {
            LexEnd::Min => return None,
            LexEnd::Max => None,
            LexEnd::Incl(x) => Some(successor(x)),
            LexEnd::Excl(x) => Some(x.to_vec()),
        };
        match (&lo, &hi) {
            (Some(l), Some(h)) if l >= h => None,
            _ => Some((lo, hi)),
        }
    }
}

/// Redis's rank arithmetic (`ZRANGE`, `ZREMRANGEBYRANK`): negative ranks
/// count from the end; `None` when the range is empty, else the valid
/// ranks `start..=end`.
pub(super) fn rank_range(start: i64, end: i64, len: u64) -> Option<(u64, u64)> {
    let len = i64::try_from(len).unwrap_or(i64::MAX);
    let start = if start < 0 { len + start } else { start }.max(0);
    let end = if end < 0 { len + end } else { end };
    if start > end || start >= len {
        return None;
    }
    let end = end.min(len - 1);
    Some((u64::try_from(start).ok()?, u64::try_from(end).ok()?))
}

/// Whether `arg` is the keyword `WITHSCORES`.
pub(super) fn is_withscores(arg: &[u8]) -> bool {
    is(arg, "WITHSCORES")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn score_ranges_parse_like_strtod() {
        let r = ScoreRange::parse(b"(1.5", b"+inf").unwrap();
        assert_eq!(
            (r.min, r.min_ex, r.max, r.max_ex),
            (1.5, true, f64::INFINITY, false)
        );
        assert_eq!(ScoreRange::parse(b"", b"(").unwrap().max, 0.0);
        assert_eq!(ScoreRange::parse(b" 2", b"-inf").unwrap().min, 2.0);
        assert_eq!(
            ScoreRange::parse(b"1e400", b"1").unwrap().min,
            f64::INFINITY
        );
        for bad in [&b"str"[..], b"nan", b"1 ", b" ", b"(x"] {
            assert!(ScoreRange::parse(bad, b"1").is_err(), "{bad:?}");
        }
    }

    #[test]
    fn score_range_bounds_cover_exactly_the_range() {
        let b = |min: &[u8], max: &[u8]| ScoreRange::parse(min, max).unwrap().bounds();
        assert_eq!(b(b"-inf", b"+inf"), Some((None, None)));
        assert_eq!(
            b(b"1", b"1"),
            Some((Some((1.0, vec![])), Some((next_up(1.0), vec![]))))
        );
        assert_eq!(b(b"(1", b"1"), None);
        assert_eq!(b(b"2", b"1"), None);
        assert_eq!(b(b"(+inf", b"+inf"), None);
        assert_eq!(
            b(b"(-inf", b"(0"),
            Some((Some((-f64::MAX, vec![])), Some((0.0, vec![]))))
        );
        assert_eq!(next_up(-0.0), f64::from_bits(1));
        assert_eq!(next_up(-f64::from_bits(1)), 0.0);
    }

    #[test]
    fn lex_ranges_follow_redis() {
        let r = |a: &str, b: &str| {
            LexRange::parse(&Bytes::from(a.to_string()), &Bytes::from(b.to_string()))
        };
        assert!(r("a", "[b").is_err());
        assert!(r("[a", "+x").is_err());
        assert_eq!(r("-", "+").unwrap().bounds(), Some((None, None)));
        assert_eq!(r("+", "+").unwrap().bounds(), None);
        assert_eq!(r("-", "-").unwrap().bounds(), None);
        assert_eq!(
            r("[a", "[a").unwrap().bounds(),
            Some((Some(b"a".to_vec()), Some(b"a\0".to_vec())))
        );
        assert_eq!(r("(a", "[a").unwrap().bounds(), None);
        assert_eq!(r("[b", "[a").unwrap().bounds(), None);
    }

    #[test]
    fn ranks_normalize_like_redis() {
        assert_eq!(rank_range(0, -1, 5), Some((0, 4)));
        assert_eq!(rank_range(-2, -1, 5), Some((3, 4)));
        assert_eq!(rank_range(-100, 100, 5), Some((0, 4)));
        assert_eq!(rank_range(3, 1, 5), None);
        assert_eq!(rank_range(5, 10, 5), None);
        assert_eq!(rank_range(0, -1, 0), None);
        assert_eq!(rank_range(i64::MIN, i64::MAX, 3), Some((0, 2)));
    }

    #[test]
    fn scores_refuse_overflow_and_underflow() {
        assert_eq!(score(b"1.5").unwrap(), 1.5);
        assert_eq!(score(b"-inf").unwrap(), f64::NEG_INFINITY);
        assert_eq!(score(b"0e10").unwrap(), 0.0);
        assert!(score(b"1e400").is_err());
        assert!(score(b"1e-400").is_err());
        assert!(score(b"").is_err());
        assert!(score(b"nan").is_err());
        assert!(score(b"30.badscore").is_err());
    }
}
