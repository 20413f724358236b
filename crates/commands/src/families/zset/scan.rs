//! `ZSCAN`'s cursor: a position in member order that means the same thing
//! on every replica, after restarts and leader changes, and keeps Redis's
//! guarantee — every member present for a whole scan is returned (some
//! may be returned twice).
//!
//! Members are stored in byte order, and a cursor must be a 64-bit
//! number, so a cursor names a position by a few bytes: the members of a
//! set often share a prefix (`user:`), so the position is taken *after*
//! the prefix shared by the set's smallest and largest members (hence by
//! every member):
//!
//! ```text
//! cursor = shared prefix length (8 bits) | up to 6 bytes after it (48 bits) | their count (8 bits)
//! ```
//!
//! A step returns at least `COUNT` members from the cursor's position on,
//! then keeps going while the next member's first `shared + 6` bytes are
//! those of the last one returned (a position between them cannot be
//! named), and answers the next member's first `shared + 6` bytes as the
//! cursor. Members differing only after that many bytes are therefore
//! returned together, in one larger step (bounded like every read).
//!
//! Why it keeps the guarantee: a member present for the whole scan starts
//! with the prefix at every step, so the prefix bytes a cursor stands for
//! are read back the same from the set at each step; positions only grow,
//! and each step returns every member between its position and the next
//! cursor. A scan's prefix length never grows; when the set gains a
//! member outside the prefix, the shared prefix shrinks below the
//! cursor's and the step restarts from the beginning with the shorter one
//! (at most 255 times), returning members again, which Redis allows.

use seshat_kv::Kind;

use crate::exec::Ctx;
use crate::reply::CmdError;

use super::store::{Scored, Walk, ZSet, WALK_CHUNK};

/// Bytes after the shared prefix a cursor holds.
const CURSOR_SUFFIX_BYTES: usize = 6;
/// Longest shared prefix a cursor is relative to (its length is a byte).
const MAX_SHARED_PREFIX_BYTES: usize = 255;
/// Members read per storage scan once a step has `COUNT` members and only
/// finishes the last one's group.
const GROUP_CHUNK: usize = if cfg!(test) { 2 } else { 64 };

/// A decoded non-zero cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Cursor {
    /// Length of the shared prefix the position is relative to.
    shared: usize,
    /// The position's bytes after that prefix (1 to 6).
    suffix: Vec<u8>,
}

impl Cursor {
    /// Any 64-bit value decodes (a client may send anything): a count
    /// outside 1..=6 is clamped.
    fn decode(cursor: u64) -> Option<Cursor> {
        if cursor == 0 {
            return None;
        }
        let bytes = cursor.to_be_bytes();
        let shared = usize::from(bytes[0]);
        let n = usize::from(bytes[7]).clamp(1, CURSOR_SUFFIX_BYTES);
        let suffix = bytes.get(1..1 + n).unwrap_or_default().to_vec();
        Some(Cursor { shared, suffix })
    }

    /// Never 0: the suffix has at least one byte.
    fn encode(&self) -> u64 {
        let mut bytes = [0u8; 8];
        bytes[0] = u8::try_from(self.shared).unwrap_or(u8::MAX);
        let n = self.suffix.len().min(CURSOR_SUFFIX_BYTES);
        if let (Some(dst), Some(src)) = (bytes.get_mut(1..1 + n), self.suffix.get(..n)) {
            dst.copy_from_slice(src);
        }
        bytes[7] = u8::try_from(n).unwrap_or(0);
        u64::from_be_bytes(bytes)
    }
}

/// Length of the common prefix of `a` and `b`.
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// One `ZSCAN` step over `z` from `cursor`: the next cursor (0 at the
/// end) and the members of this step, in member order.
pub(super) fn step(
    ctx: &mut Ctx<'_>,
    z: &ZSet,
    cursor: u64,
    count: usize,
) -> Result<(u64, Vec<Scored>), CmdError> {
    let ends = |rev| Walk::members(&z.key, None, None, rev, Kind::ZSet);
    let (Some(first), Some(last)) = (
        ends(false).next(ctx, 1)?.pop(),
        ends(true).next(ctx, 1)?.pop(),
    ) else {
        return Ok((0, Vec::new()));
    };
    let common = common_prefix(&first.member, &last.member).min(MAX_SHARED_PREFIX_BYTES);
    let (shared, from) = match Cursor::decode(cursor) {
        Some(c) if c.shared <= common => {
            let mut from = first.member.get(..c.shared).unwrap_or_default().to_vec();
            from.extend_from_slice(&c.suffix);
            (c.shared, Some(from))
        }
        // First step, or the set gained a member outside the cursor's
        // prefix: (re)start with the prefix shared now.
        _ => (common, None),
    };
    let mut walk = Walk::members(&z.key, from, None, false, Kind::ZSet);
    let want = count.max(1);
    let mut out: Vec<Scored> = Vec::new();
    loop {
        let chunk = if out.len() < want {
            (want + 1 - out.len()).min(WALK_CHUNK)
        } else {
            GROUP_CHUNK
        };
        let rows = walk.next(ctx, chunk)?;
        if rows.is_empty() {
            return Ok((0, out));
        }
        for row in rows {
            if out.len() >= want {
                if let Some(next) = boundary(out.last(), &row.member, shared) {
                    return Ok((next.encode(), out));
                }
            }
            out.push(row);
        }
    }
}

/// The cursor for resuming at `next` after `last`, if a cursor can name a
/// position between them.
fn boundary(last: Option<&Scored>, next: &[u8], shared: usize) -> Option<Cursor> {
    let end = (shared + CURSOR_SUFFIX_BYTES).min(next.len());
    let position = next.get(..end)?;
    let suffix = next.get(shared..end).filter(|s| !s.is_empty())?;
    if last.is_some_and(|l| l.member.starts_with(position)) {
        return None;
    }
    Some(Cursor {
        shared,
        suffix: suffix.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_are_never_zero() {
        let c = Cursor {
            shared: 5,
            suffix: b"abc".to_vec(),
        };
        assert_ne!(c.encode(), 0);
        assert_eq!(Cursor::decode(c.encode()), Some(c));
        let full = Cursor {
            shared: 255,
            suffix: vec![0xff; 6],
        };
        assert_eq!(Cursor::decode(full.encode()), Some(full));
        assert_eq!(Cursor::decode(0), None);
        // Garbage decodes to some position rather than failing.
        assert!(Cursor::decode(u64::MAX).is_some());
        assert!(Cursor::decode(1 << 40).is_some());
    }

    #[test]
    fn a_boundary_needs_distinct_leading_bytes() {
        let last = Scored {
            member: bytes::Bytes::from_static(b"user:1234567"),
            score: 0.0,
        };
        // Same 5 + 6 leading bytes: no position between them.
        assert_eq!(boundary(Some(&last), b"user:1234568", 5), None);
        assert_eq!(
            boundary(Some(&last), b"user:1234600", 5).map(|c| c.suffix),
            Some(b"123460".to_vec())
        );
        // A short next member is its own position.
        assert_eq!(
            boundary(Some(&last), b"user:2", 5).map(|c| c.suffix),
            Some(b"2".to_vec())
        );
    }
}
