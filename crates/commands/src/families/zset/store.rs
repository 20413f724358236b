//! How a sorted set is stored, and bounded walks over it.
//!
//! A sorted set is a composite record (`size` = number of members), one
//! element per member whose value is its score (8 bytes, big-endian IEEE
//! 754), and the score index ordered by (score, member). `-0.0` is stored
//! as `0.0` everywhere (the index cannot tell them apart), and NaN never
//! is. Point questions (`ZSCORE`, `ZADD`) read the element; ordered ones
//! walk the index (by score or rank) or the elements (by member, for lex
//! ranges, set operations and `ZSCAN`).
//!
//! Ranks are not stored: a rank is found by walking the index from the
//! nearer end, so it costs O(rank) reads. Every walk is bounded by
//! [`MAX_READ_MEMBERS`]: a command that would read more answers an error
//! instead of stalling its node.

use bytes::Bytes;
use seshat_kv::{Kind, KvError, Record};

use crate::exec::Ctx;
use crate::families::typed_record;
use crate::reply::{err, CmdError};

use super::{MAX_READ_MEMBERS, MAX_WRITE_MEMBERS};

/// Entries one storage scan of a walk reads at most. Tiny in unit tests,
/// so that small sets cross chunk boundaries.
pub(super) const WALK_CHUNK: usize = if cfg!(test) { 3 } else { 512 };

/// A member and its score.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Scored {
    /// The member.
    pub member: Bytes,
    /// Its score (never NaN, never `-0.0`).
    pub score: f64,
}

impl Scored {
    /// Orders by (score, member), the index's order.
    pub fn index_cmp(&self, other: &Scored) -> std::cmp::Ordering {
        self.score
            .total_cmp(&other.score)
            .then_with(|| self.member.cmp(&other.member))
    }
}

/// `-0.0` becomes `0.0`: the index stores them alike, so the element must.
pub(super) fn normalize(score: f64) -> f64 {
    if score == 0.0 {
        0.0
    } else {
        score
    }
}

/// A score as a member's element value.
fn score_value(score: f64) -> [u8; 8] {
    normalize(score).to_be_bytes()
}

/// A member's element value read back as its score.
fn decode_score_value(raw: &[u8]) -> Result<f64, KvError> {
    let bytes = <[u8; 8]>::try_from(raw)
        .map_err(|_| KvError::Corrupt("sorted set score is not 8 bytes".into()))?;
    let score = f64::from_be_bytes(bytes);
    if score.is_nan() {
        return Err(KvError::Corrupt("sorted set score is NaN".into()));
    }
    Ok(score)
}

/// `member`'s score in `key`, a sorted set (its score) or a plain set (1,
/// as Redis scores a set's members in set operations).
pub(super) fn member_score(
    ctx: &mut Ctx<'_>,
    key: &[u8],
    kind: Kind,
    member: &[u8],
) -> Result<Option<f64>, CmdError> {
    if kind != Kind::ZSet {
        // A set stores a member under its hash position (see
        // `families::elements`).
        let stored = crate::families::elements::stored_name(member);
        return Ok(ctx.db.element(key, &stored)?.map(|_| 1.0));
    }
    Ok(match ctx.db.element(key, member)? {
        None => None,
        Some(raw) => Some(decode_score_value(&raw)?),
    })
}

/// The smallest byte string after `bytes`.
pub(super) fn successor(bytes: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(bytes.len() + 1);
    v.extend_from_slice(bytes);
    v.push(0);
    v
}

/// The error for a command that would read more than
/// [`MAX_READ_MEMBERS`] members.
pub(super) fn too_many_read() -> CmdError {
    err(format!(
        "ERR this command would read more than {MAX_READ_MEMBERS} sorted set members; Seshat bounds the work of one command (use LIMIT, a narrower range or ZSCAN)"
    ))
}

/// The error for a command that would write or remove more than
/// [`MAX_WRITE_MEMBERS`] members.
pub(super) fn too_many_written() -> CmdError {
    err(format!(
        "ERR this command would write or remove more than {MAX_WRITE_MEMBERS} sorted set members; Seshat bounds the work of one write (split it)"
    ))
}

/// A live sorted set and its size, changed through this handle; [`ZSet::save`]
/// writes the new size (or deletes the emptied key).
#[derive(Debug)]
pub(super) struct ZSet {
    /// Its key.
    pub key: Bytes,
    record: Record,
    /// Members, as changed so far.
    pub size: u64,
}

impl ZSet {
    /// The sorted set at `key`; `None` if absent; `-WRONGTYPE` for
    /// another type.
    pub fn load(ctx: &mut Ctx<'_>, key: &Bytes) -> Result<Option<ZSet>, CmdError> {
        let Some(record) = typed_record(ctx, key, Kind::ZSet)? else {
            return Ok(None);
        };
        let (size, _, _) = record.composite_meta()?;
        Ok(Some(ZSet {
            key: key.clone(),
            record,
            size,
        }))
    }

    /// A new empty sorted set at `key`, replacing any value there (and its
    /// expiry); fill it, then [`ZSet::save`].
    pub fn create(ctx: &mut Ctx<'_>, key: &Bytes) -> Result<ZSet, CmdError> {
        let record = Record::composite(Kind::ZSet, 0, 0, 0);
        ctx.db.put(key, record.clone())?;
        Ok(ZSet {
            key: key.clone(),
            record,
            size: 0,
        })
    }

    /// `member`'s score.
    pub fn score(&self, ctx: &mut Ctx<'_>, member: &[u8]) -> Result<Option<f64>, CmdError> {
        member_score(ctx, &self.key, Kind::ZSet, member)
    }

    /// Gives `member` the score `new` (`old`: its current score, `None`
    /// when it is not a member yet).
    pub fn set(
        &mut self,
        ctx: &mut Ctx<'_>,
        member: &[u8],
        old: Option<f64>,
        new: f64,
    ) -> Result<(), CmdError> {
        debug_assert!(!new.is_nan(), "NaN never reaches storage");
        let new = normalize(new);
        match old {
            Some(o) if o == new => return Ok(()),
            Some(o) => ctx.db.delete_score(&self.key, o, member)?,
            None => self.size += 1,
        }
        ctx.db.put_element(&self.key, member, &score_value(new))?;
        ctx.db.put_score(&self.key, new, member)?;
        Ok(())
    }

    /// Removes `member`, whose score is `score`.
    pub fn remove(&mut self, ctx: &mut Ctx<'_>, member: &[u8], score: f64) -> Result<(), CmdError> {
        ctx.db.delete_element(&self.key, member)?;
        ctx.db.delete_score(&self.key, score, member)?;
        self.size = self.size.saturating_sub(1);
        Ok(())
    }

    /// Writes the size (stamping the key as modified, keeping its expiry),
    /// or deletes the key when no member is left.
    pub fn save(&self, ctx: &mut Ctx<'_>) -> Result<(), CmdError> {
        if self.size == 0 {
            ctx.db.delete(&self.key)?;
        } else {
            let record = self.record.with_composite_meta(self.size, 0, 0);
            ctx.db.update(&self.key, record)?;
        }
        Ok(())
    }

    /// Writes `members` (distinct) as the whole sorted set at `key`,
    /// replacing any value there; an empty result deletes `key`. Bounded
    /// by [`MAX_WRITE_MEMBERS`]. The number of members stored.
    pub fn store(ctx: &mut Ctx<'_>, key: &Bytes, members: &[Scored]) -> Result<u64, CmdError> {
        if members.len() > MAX_WRITE_MEMBERS {
            return Err(too_many_written());
        }
        if members.is_empty() {
            ctx.db.delete(key)?;
            return Ok(0);
        }
        let mut z = ZSet::create(ctx, key)?;
        for m in members {
            z.set(ctx, &m.member, None, m.score)?;
        }
        z.save(ctx)?;
        Ok(z.size)
    }

    /// The members at the ascending ranks `start..=end` (valid ranks),
    /// walked from the nearer end; in index order.
    pub fn by_rank(
        &self,
        ctx: &mut Ctx<'_>,
        start: u64,
        end: u64,
    ) -> Result<Vec<Scored>, CmdError> {
        let count = end.saturating_sub(start) + 1;
        let from_top = self.size.saturating_sub(1).saturating_sub(end);
        let out = if start <= from_top {
            let mut w = Walk::all(&self.key, false);
            w.skip(ctx, start)?;
            w.take(ctx, count)?
        } else {
            let mut w = Walk::all(&self.key, true);
            w.skip(ctx, from_top)?;
            let mut v = w.take(ctx, count)?;
            v.reverse();
            v
        };
        if out.len() as u64 != count {
            return Err(short_index());
        }
        Ok(out)
    }

    /// The members at `ranks` (ascending, distinct, each below the size),
    /// in that order: ranks in the lower half are walked to from the
    /// start, the others from the end.
    pub fn at_ranks(&self, ctx: &mut Ctx<'_>, ranks: &[u64]) -> Result<Vec<Scored>, CmdError> {
        let mid = ranks.partition_point(|r| *r < self.size / 2);
        let (low, high) = ranks.split_at(mid);
        let mut out = Vec::with_capacity(ranks.len());
        let mut w = Walk::all(&self.key, false);
        let mut pos = 0;
        for &r in low {
            w.skip(ctx, r - pos)?;
            out.push(w.take(ctx, 1)?.pop().ok_or_else(short_index)?);
            pos = r + 1;
        }
        let mut w = Walk::all(&self.key, true);
        let mut pos = 0;
        let mut top = Vec::with_capacity(high.len());
        for &r in high.iter().rev() {
            let from_top = self.size.saturating_sub(1).saturating_sub(r);
            w.skip(ctx, from_top.saturating_sub(pos))?;
            top.push(w.take(ctx, 1)?.pop().ok_or_else(short_index)?);
            pos = from_top + 1;
        }
        out.extend(top.into_iter().rev());
        Ok(out)
    }

    /// The rank of `member` (score `score`): counted from the start and
    /// from the end at once, in chunks, so it costs O(min(rank, size -
    /// rank)) reads.
    pub fn rank(&self, ctx: &mut Ctx<'_>, member: &[u8], score: f64) -> Result<u64, CmdError> {
        let at = (score, member.to_vec());
        let mut before = Walk::scores(&self.key, None, Some(at.clone()), false);
        let mut after = Walk::scores(&self.key, Some((score, successor(member))), None, true);
        let (mut below, mut above) = (0u64, 0u64);
        loop {
            below += before.next(ctx, WALK_CHUNK)?.len() as u64;
            if before.is_done() {
                return Ok(below);
            }
            above += after.next(ctx, WALK_CHUNK)?.len() as u64;
            if after.is_done() {
                return Ok(self.size.saturating_sub(1).saturating_sub(above));
            }
        }
    }
}

/// The index holds fewer entries than the size says.
pub(super) fn short_index() -> CmdError {
    CmdError::Kv(KvError::Corrupt(
        "sorted set index is shorter than its size".into(),
    ))
}

/// A position in the score index: (score, member), a member of `b""`
/// being the first position at that score.
pub(super) type IndexPos = (f64, Vec<u8>);

/// An index position as the keyspace takes it.
fn position(p: &Option<IndexPos>) -> Option<(f64, &[u8])> {
    p.as_ref().map(|(s, m)| (*s, m.as_slice()))
}

/// What a walk goes over.
#[derive(Debug, Clone)]
enum Bounds {
    /// The score index from `lo` (inclusive) to `hi` (exclusive).
    Scores {
        lo: Option<IndexPos>,
        hi: Option<IndexPos>,
    },
    /// The elements by member from `lo` (inclusive) to `hi` (exclusive); a
    /// plain set's members score 1.
    Members {
        lo: Option<Vec<u8>>,
        hi: Option<Vec<u8>>,
        kind: Kind,
    },
}

/// A walk over part of a sorted set (or a set) in chunks of storage
/// scans, narrowing its bounds as it goes; it fails once it has read more
/// than [`MAX_READ_MEMBERS`] entries.
#[derive(Debug, Clone)]
pub(super) struct Walk {
    key: Bytes,
    bounds: Bounds,
    rev: bool,
    done: bool,
    read: usize,
}

impl Walk {
    /// The score index of `key` between `lo` (inclusive) and `hi`
    /// (exclusive), ascending or (`rev`) descending.
    pub fn scores(key: &Bytes, lo: Option<IndexPos>, hi: Option<IndexPos>, rev: bool) -> Walk {
        Walk::new(key, Bounds::Scores { lo, hi }, rev)
    }

    /// The whole score index of `key`.
    pub fn all(key: &Bytes, rev: bool) -> Walk {
        Walk::scores(key, None, None, rev)
    }

    /// The members of `key` (a `kind` value) between `lo` (inclusive) and
    /// `hi` (exclusive) in byte order.
    pub fn members(
        key: &Bytes,
        lo: Option<Vec<u8>>,
        hi: Option<Vec<u8>>,
        rev: bool,
        kind: Kind,
    ) -> Walk {
        Walk::new(key, Bounds::Members { lo, hi, kind }, rev)
    }

    fn new(key: &Bytes, bounds: Bounds, rev: bool) -> Walk {
        Walk {
            key: key.clone(),
            bounds,
            rev,
            done: false,
            read: 0,
        }
    }

    /// Whether the walk has reached its end.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The next (at most `max`, at most [`WALK_CHUNK`]) entries; empty at
    /// the end.
    pub fn next(&mut self, ctx: &mut Ctx<'_>, max: usize) -> Result<Vec<Scored>, CmdError> {
        if self.done || max == 0 {
            return Ok(Vec::new());
        }
        let limit = max.min(WALK_CHUNK);
        let rows = self.read_rows(ctx, limit)?;
        self.read = self.read.saturating_add(rows.len());
        if self.read > MAX_READ_MEMBERS {
            return Err(too_many_read());
        }
        match rows.last() {
            Some(last) if rows.len() == limit => self.advance_past(last),
            _ => self.done = true,
        }
        Ok(rows)
    }

    fn read_rows(&self, ctx: &mut Ctx<'_>, limit: usize) -> Result<Vec<Scored>, CmdError> {
        let key = &self.key;
        match &self.bounds {
            Bounds::Scores { lo, hi } => {
                let rows = ctx
                    .db
                    .scores(key, position(lo), position(hi), limit, self.rev)?;
                Ok(rows
                    .into_iter()
                    .map(|(score, member)| Scored { member, score })
                    .collect())
            }
            Bounds::Members { lo, hi, kind } => {
                let rows = ctx
                    .db
                    .elements(key, lo.as_deref(), hi.as_deref(), limit, self.rev)?;
                if *kind != Kind::ZSet {
                    // A set's members follow their hash position: strip it.
                    let skip = crate::families::elements::POSITION_BYTES;
                    return Ok(rows
                        .into_iter()
                        .map(|(stored, _)| Scored {
                            member: stored.slice(skip.min(stored.len())..),
                            score: 1.0,
                        })
                        .collect());
                }
                rows.into_iter()
                    .map(|(member, value)| {
                        Ok(Scored {
                            member,
                            score: decode_score_value(&value)?,
                        })
                    })
                    .collect()
            }
        }
    }

    /// Narrows the bounds to what comes after `last` in walk order.
    fn advance_past(&mut self, last: &Scored) {
        match &mut self.bounds {
            Bounds::Scores { lo, hi } => {
                if self.rev {
                    *hi = Some((last.score, last.member.to_vec()));
                } else {
                    *lo = Some((last.score, successor(&last.member)));
                }
            }
            Bounds::Members { lo, hi, kind } => {
                // Bounds are in stored form: a set's carry the position.
                let stored = if *kind == Kind::ZSet {
                    last.member.to_vec()
                } else {
                    crate::families::elements::stored_name(&last.member)
                };
                if self.rev {
                    *hi = Some(stored);
                } else {
                    *lo = Some(successor(&stored));
                }
            }
        }
    }

    /// Passes over `n` entries.
    pub fn skip(&mut self, ctx: &mut Ctx<'_>, mut n: u64) -> Result<(), CmdError> {
        while n > 0 {
            let rows = self.next(ctx, usize::try_from(n).unwrap_or(usize::MAX))?;
            if rows.is_empty() {
                break;
            }
            n = n.saturating_sub(rows.len() as u64);
        }
        Ok(())
    }

    /// The next `n` entries (fewer at the end).
    pub fn take(&mut self, ctx: &mut Ctx<'_>, n: u64) -> Result<Vec<Scored>, CmdError> {
        let mut out = Vec::new();
        while (out.len() as u64) < n {
            let want = usize::try_from(n - out.len() as u64).unwrap_or(usize::MAX);
            let rows = self.next(ctx, want)?;
            if rows.is_empty() {
                break;
            }
            out.extend(rows);
        }
        Ok(out)
    }

    /// Every remaining entry.
    pub fn rest(&mut self, ctx: &mut Ctx<'_>) -> Result<Vec<Scored>, CmdError> {
        self.take(ctx, u64::MAX)
    }

    /// The number of remaining entries.
    pub fn count(&mut self, ctx: &mut Ctx<'_>) -> Result<u64, CmdError> {
        let mut n = 0u64;
        loop {
            let rows = self.next(ctx, WALK_CHUNK)?;
            if rows.is_empty() {
                return Ok(n);
            }
            n += rows.len() as u64;
        }
    }
}
