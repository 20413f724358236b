//! The steps of a migration as log entries, and their encoding.
//!
//! ```text
//! step       := version u8 (STEP_VERSION) | kind u8 | body
//! migration  := id u64 | source u32 | target u32 | slots
//! slots      := count u16 | (start u16 | end u16)*          (merged, ≤ MAX_SLOT_RANGES)
//! chunk      := seq u64 | count u32 | (slot u16 | key bytes | value bytes)*
//! manifest   := chunks u64 | entries u64 | digest u64
//! bytes      := len u32 | len bytes
//! ```
//!
//! System steps (kinds 1–4) go to the system group's log; group steps
//! (kinds 16–23) to a data group's. Every length is checked against its
//! limit before it is allocated; decoding never panics.

use crate::codec::{DecodeError, Reader, Writer};
use crate::slots::SlotRanges;
use crate::{GroupId, MigrationId, MAX_CHUNK_BYTES, MAX_CHUNK_ENTRIES};

/// Version of the step encoding.
pub const STEP_VERSION: u8 = 1;

/// Bytes a chunk entry costs beyond its key and value: the slot and the
/// two length prefixes (what [`MAX_CHUNK_BYTES`] counts).
pub const ENTRY_FRAMING_BYTES: usize = 2 + 4 + 4;

/// One migration: `slots` move from group `source` to group `target`.
/// Every group step carries it whole, so a data group applies a step
/// from its own log without asking the system group anything.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Migration {
    /// Allocated by the system group, increasing, never reused.
    pub id: MigrationId,
    /// The slots that move.
    pub slots: SlotRanges,
    /// The group that gives them.
    pub source: GroupId,
    /// The group that takes them.
    pub target: GroupId,
}

/// How a migration ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The slots moved: the target serves them.
    Completed,
    /// The slots stayed: the source serves them.
    Aborted,
}

/// One stored entry of a migrating slot, as the source's storage holds
/// it: the copier sends raw entries (a hash's fields are entries of their
/// own), so the slot is carried, not recomputed from the key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ChunkEntry {
    /// The slot the entry belongs to; must be one of the migration's.
    pub slot: u16,
    /// The entry's key in the group's storage (without the group prefix).
    pub key: Vec<u8>,
    /// The entry's value.
    pub value: Vec<u8>,
}

impl ChunkEntry {
    /// What the entry counts against [`MAX_CHUNK_BYTES`].
    pub fn size(&self) -> usize {
        ENTRY_FRAMING_BYTES
            .saturating_add(self.key.len())
            .saturating_add(self.value.len())
    }
}

/// The `seq`-th chunk of a migration's copy.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Chunk {
    /// Position in the copy, from 0; the target applies chunks in order
    /// and ignores one it has already applied.
    pub seq: u64,
    /// At most [`MAX_CHUNK_ENTRIES`] entries of at most
    /// [`MAX_CHUNK_BYTES`] together.
    pub entries: Vec<ChunkEntry>,
}

impl Chunk {
    /// What the chunk counts against [`MAX_CHUNK_BYTES`].
    pub fn size(&self) -> usize {
        self.entries
            .iter()
            .fold(0usize, |n, e| n.saturating_add(e.size()))
    }
}

/// What a copy holds: the number of chunks, of entries, and the
/// order-independent digest of the entries (see [`crate::copy`]). The
/// source's frozen data gives the expected manifest; the target counts
/// the one it received.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Manifest {
    /// Chunks.
    pub chunks: u64,
    /// Entries over all chunks.
    pub entries: u64,
    /// Wrapping sum of the entries' hashes.
    pub digest: u64,
}

/// A step in the system group's log.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SystemStep {
    /// Start a migration of `slots` from `source` to `target`, if the
    /// slot map is still at `map_version` (what the requester saw, so a
    /// retried request cannot start a second migration after a flip).
    Record {
        /// The slots to move.
        slots: SlotRanges,
        /// Group giving them; must own all of them.
        source: GroupId,
        /// Group taking them.
        target: GroupId,
        /// The slot map version the request was made against.
        map_version: u64,
    },
    /// Ask for migration `id` to be abandoned (takes effect only if the
    /// source has not handed off).
    Abort(MigrationId),
    /// The target serves the slots: the slot map gives them to it.
    Flip(MigrationId),
    /// Both groups have finished the migration with this outcome.
    Done(MigrationId, Outcome),
}

/// A step in a data group's log. The first four are applied by the
/// source, the last four by the target.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum GroupStep {
    /// Source: refuse writes to the slots (`TRYAGAIN`), keep serving reads.
    Freeze(Migration),
    /// Source: the commit point; every command on the slots gets `ASK`.
    HandOff(Migration),
    /// Source: serve the slots again (before hand-off only).
    Abort(Migration),
    /// Source: forget the slots and delete their data (after the flip).
    Drop(Migration),
    /// Target: prepare to receive the slots, hidden.
    ImportStart(Migration),
    /// Target: write one chunk of the copy.
    ImportChunk(Migration, Chunk),
    /// Target: serve the slots, if the copy matches the manifest.
    ImportCommit(Migration, Manifest),
    /// Target: forget the slots and delete what was copied.
    ImportAbort(Migration),
}

/// Which side of a migration applies a group step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The group giving the slots.
    Source,
    /// The group taking them.
    Target,
}

impl GroupStep {
    /// The migration the step belongs to.
    pub fn migration(&self) -> &Migration {
        match self {
            GroupStep::Freeze(m)
            | GroupStep::HandOff(m)
            | GroupStep::Abort(m)
            | GroupStep::Drop(m)
            | GroupStep::ImportStart(m)
            | GroupStep::ImportChunk(m, _)
            | GroupStep::ImportCommit(m, _)
            | GroupStep::ImportAbort(m) => m,
        }
    }

    /// Which group applies it.
    pub fn side(&self) -> Side {
        match self {
            GroupStep::Freeze(_)
            | GroupStep::HandOff(_)
            | GroupStep::Abort(_)
            | GroupStep::Drop(_) => Side::Source,
            GroupStep::ImportStart(_)
            | GroupStep::ImportChunk(..)
            | GroupStep::ImportCommit(..)
            | GroupStep::ImportAbort(_) => Side::Target,
        }
    }

    /// The group whose log the step belongs in.
    pub fn group(&self) -> GroupId {
        let m = self.migration();
        match self.side() {
            Side::Source => m.source,
            Side::Target => m.target,
        }
    }

    /// A short name for logs and refusals.
    pub fn name(&self) -> &'static str {
        match self {
            GroupStep::Freeze(_) => "Freeze",
            GroupStep::HandOff(_) => "HandOff",
            GroupStep::Abort(_) => "Abort",
            GroupStep::Drop(_) => "Drop",
            GroupStep::ImportStart(_) => "ImportStart",
            GroupStep::ImportChunk(..) => "ImportChunk",
            GroupStep::ImportCommit(..) => "ImportCommit",
            GroupStep::ImportAbort(_) => "ImportAbort",
        }
    }

    fn kind(&self) -> u8 {
        match self {
            GroupStep::Freeze(_) => 16,
            GroupStep::HandOff(_) => 17,
            GroupStep::Abort(_) => 18,
            GroupStep::Drop(_) => 19,
            GroupStep::ImportStart(_) => 20,
            GroupStep::ImportChunk(..) => 21,
            GroupStep::ImportCommit(..) => 22,
            GroupStep::ImportAbort(_) => 23,
        }
    }

    /// The log entry's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new(STEP_VERSION, self.kind());
        write_migration(&mut w, self.migration());
        match self {
            GroupStep::ImportChunk(_, chunk) => {
                w.u64(chunk.seq);
                // At most MAX_CHUNK_ENTRIES for a chunk the copier built.
                w.u32(u32::try_from(chunk.entries.len()).unwrap_or(u32::MAX));
                for e in &chunk.entries {
                    w.u16(e.slot);
                    w.bytes(&e.key);
                    w.bytes(&e.value);
                }
            }
            GroupStep::ImportCommit(_, m) => write_manifest(&mut w, m),
            _ => {}
        }
        w.out
    }

    /// Reads a step written by [`GroupStep::encode`]. Refuses another
    /// version, an unknown kind, a chunk over [`MAX_CHUNK_ENTRIES`] or
    /// [`MAX_CHUNK_BYTES`], invalid slots and trailing bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let kind = r.header(STEP_VERSION)?;
        let m = read_migration(&mut r)?;
        let step = match kind {
            16 => GroupStep::Freeze(m),
            17 => GroupStep::HandOff(m),
            18 => GroupStep::Abort(m),
            19 => GroupStep::Drop(m),
            20 => GroupStep::ImportStart(m),
            21 => {
                let chunk = read_chunk(&mut r)?;
                GroupStep::ImportChunk(m, chunk)
            }
            22 => GroupStep::ImportCommit(m, read_manifest(&mut r)?),
            23 => GroupStep::ImportAbort(m),
            tag => {
                return Err(DecodeError::Tag {
                    what: "group step",
                    tag,
                })
            }
        };
        r.finish()?;
        Ok(step)
    }
}

impl SystemStep {
    fn kind(&self) -> u8 {
        match self {
            SystemStep::Record { .. } => 1,
            SystemStep::Abort(_) => 2,
            SystemStep::Flip(_) => 3,
            SystemStep::Done(..) => 4,
        }
    }

    /// The log entry's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new(STEP_VERSION, self.kind());
        match self {
            SystemStep::Record {
                slots,
                source,
                target,
                map_version,
            } => {
                w.slots(slots);
                w.u32(*source);
                w.u32(*target);
                w.u64(*map_version);
            }
            SystemStep::Abort(id) | SystemStep::Flip(id) => w.u64(*id),
            SystemStep::Done(id, outcome) => {
                w.u64(*id);
                w.u8(outcome_tag(*outcome));
            }
        }
        w.out
    }

    /// Reads a step written by [`SystemStep::encode`]; refuses another
    /// version, an unknown kind or outcome, invalid slots, a migration
    /// from a group to itself and trailing bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let step = match r.header(STEP_VERSION)? {
            1 => {
                let slots = r.slots()?;
                let source = r.u32("source")?;
                let target = r.u32("target")?;
                if source == target {
                    return Err(DecodeError::Invalid("migration from a group to itself"));
                }
                let map_version = r.u64("map version")?;
                SystemStep::Record {
                    slots,
                    source,
                    target,
                    map_version,
                }
            }
            2 => SystemStep::Abort(r.u64("migration id")?),
            3 => SystemStep::Flip(r.u64("migration id")?),
            4 => {
                let id = r.u64("migration id")?;
                SystemStep::Done(id, read_outcome(&mut r)?)
            }
            tag => {
                return Err(DecodeError::Tag {
                    what: "system step",
                    tag,
                })
            }
        };
        r.finish()?;
        Ok(step)
    }
}

pub(crate) fn outcome_tag(o: Outcome) -> u8 {
    match o {
        Outcome::Completed => 1,
        Outcome::Aborted => 2,
    }
}

pub(crate) fn read_outcome(r: &mut Reader<'_>) -> Result<Outcome, DecodeError> {
    match r.u8("outcome")? {
        1 => Ok(Outcome::Completed),
        2 => Ok(Outcome::Aborted),
        tag => Err(DecodeError::Tag {
            what: "outcome",
            tag,
        }),
    }
}

pub(crate) fn write_migration(w: &mut Writer, m: &Migration) {
    w.u64(m.id);
    w.u32(m.source);
    w.u32(m.target);
    w.slots(&m.slots);
}

pub(crate) fn read_migration(r: &mut Reader<'_>) -> Result<Migration, DecodeError> {
    let id = r.u64("migration id")?;
    let source = r.u32("source")?;
    let target = r.u32("target")?;
    if source == target {
        return Err(DecodeError::Invalid("migration from a group to itself"));
    }
    let slots = r.slots()?;
    Ok(Migration {
        id,
        slots,
        source,
        target,
    })
}

pub(crate) fn write_manifest(w: &mut Writer, m: &Manifest) {
    w.u64(m.chunks);
    w.u64(m.entries);
    w.u64(m.digest);
}

pub(crate) fn read_manifest(r: &mut Reader<'_>) -> Result<Manifest, DecodeError> {
    Ok(Manifest {
        chunks: r.u64("manifest chunks")?,
        entries: r.u64("manifest entries")?,
        digest: r.u64("manifest digest")?,
    })
}

fn read_chunk(r: &mut Reader<'_>) -> Result<Chunk, DecodeError> {
    let seq = r.u64("chunk seq")?;
    let n = r.count("chunk entries", MAX_CHUNK_ENTRIES)?;
    let mut entries = Vec::with_capacity(n);
    let mut budget = MAX_CHUNK_BYTES;
    for _ in 0..n {
        let slot = r.u16("entry slot")?;
        // Each length is bounded by what is left of the chunk's budget, so
        // a hostile entry cannot make us allocate more than the limit.
        let key = r.bytes("entry key", budget)?;
        let value = r.bytes("entry value", budget.saturating_sub(key.len()))?;
        let entry = ChunkEntry { slot, key, value };
        budget = budget
            .checked_sub(entry.size())
            .ok_or(DecodeError::TooLarge {
                what: "chunk bytes",
                len: MAX_CHUNK_BYTES
                    .saturating_sub(budget)
                    .saturating_add(entry.size()) as u64,
                max: MAX_CHUNK_BYTES as u64,
            })?;
        entries.push(entry);
    }
    Ok(Chunk { seq, entries })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn migration() -> Migration {
        Migration {
            id: 7,
            slots: SlotRanges::new([(1, 3), (100, 100)]).unwrap(),
            source: 1,
            target: 2,
        }
    }

    #[test]
    fn every_step_round_trips() {
        let m = migration();
        let chunk = Chunk {
            seq: 3,
            entries: vec![ChunkEntry {
                slot: 2,
                key: b"k".to_vec(),
                value: b"v".to_vec(),
            }],
        };
        let steps = [
            GroupStep::Freeze(m.clone()),
            GroupStep::HandOff(m.clone()),
            GroupStep::Abort(m.clone()),
            GroupStep::Drop(m.clone()),
            GroupStep::ImportStart(m.clone()),
            GroupStep::ImportChunk(m.clone(), chunk),
            GroupStep::ImportCommit(
                m.clone(),
                Manifest {
                    chunks: 1,
                    entries: 2,
                    digest: 3,
                },
            ),
            GroupStep::ImportAbort(m.clone()),
        ];
        for s in steps {
            assert_eq!(GroupStep::decode(&s.encode()), Ok(s));
        }
        let system = [
            SystemStep::Record {
                slots: m.slots.clone(),
                source: 1,
                target: 2,
                map_version: 9,
            },
            SystemStep::Abort(7),
            SystemStep::Flip(7),
            SystemStep::Done(7, Outcome::Completed),
            SystemStep::Done(7, Outcome::Aborted),
        ];
        for s in system {
            assert_eq!(SystemStep::decode(&s.encode()), Ok(s));
        }
    }

    #[test]
    fn bad_bytes_are_refused() {
        let bytes = GroupStep::Freeze(migration()).encode();
        let mut other_version = bytes.clone();
        other_version[0] = 2;
        assert_eq!(
            GroupStep::decode(&other_version),
            Err(DecodeError::Version {
                found: 2,
                expected: 1
            })
        );
        for cut in 0..bytes.len() {
            assert!(GroupStep::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert_eq!(GroupStep::decode(&trailing), Err(DecodeError::Trailing(1)));
        assert!(
            SystemStep::decode(&bytes).is_err(),
            "a group step is not a system step"
        );
        // A chunk claiming more entries than allowed is refused before
        // anything is allocated for them.
        let mut w = Writer::new(STEP_VERSION, 21);
        write_migration(&mut w, &migration());
        w.u64(0);
        w.u32(u32::MAX);
        assert!(matches!(
            GroupStep::decode(&w.out),
            Err(DecodeError::TooLarge { .. })
        ));
        // So is a key longer than a chunk may be.
        let mut w = Writer::new(STEP_VERSION, 21);
        write_migration(&mut w, &migration());
        w.u64(0);
        w.u32(1);
        w.u16(1);
        w.u32(u32::MAX);
        assert!(matches!(
            GroupStep::decode(&w.out),
            Err(DecodeError::TooLarge { .. })
        ));
    }
}
