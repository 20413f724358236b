//! The copy: a frozen source's entries in the migrating slots, cut into
//! bounded chunks, and the manifest that checks them at the target.
//!
//! The source's data in the slots does not change between `Freeze` and
//! `Drop` (writes, expiry deletions included, are refused), so cutting the
//! same entries in the same order always gives the same chunks: a
//! coordinator restarted after a crash re-derives chunk `seq` without any
//! record of what it sent, and the target's deduplication by `seq` is
//! exact.
//!
//! The digest is the wrapping sum of a 64-bit FNV-1a hash of each entry
//! (slot, key and value, length-prefixed): independent of order, cheap to
//! keep as entries arrive, and (unlike XOR) a duplicated entry does not
//! cancel out.

use crate::step::{Chunk, ChunkEntry, Manifest, ENTRY_FRAMING_BYTES};
use crate::{MAX_CHUNK_BYTES, MAX_CHUNK_ENTRIES};

/// Why a copy could not be cut.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CopyError {
    /// Limits of zero or above the ceilings.
    #[error("chunk limits {entries} entries / {bytes} bytes: need 1..={MAX_CHUNK_ENTRIES} entries and {ENTRY_FRAMING_BYTES}..={MAX_CHUNK_BYTES} bytes")]
    Limits {
        /// Entries asked for.
        entries: usize,
        /// Bytes asked for.
        bytes: usize,
    },
    /// One entry is larger than a chunk may be.
    #[error("an entry of {size} bytes in slot {slot} exceeds the chunk limit of {max} bytes")]
    EntryTooLarge {
        /// Its slot.
        slot: u16,
        /// Its size (key, value and framing).
        size: usize,
        /// The chunk limit.
        max: usize,
    },
}

/// How large a chunk may be, validated against [`MAX_CHUNK_ENTRIES`] and
/// [`MAX_CHUNK_BYTES`] (the ceilings every replica enforces at apply).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkLimits {
    entries: usize,
    bytes: usize,
}

impl ChunkLimits {
    /// Limits of `entries` entries and `bytes` bytes per chunk.
    pub fn new(entries: usize, bytes: usize) -> Result<Self, CopyError> {
        if !(1..=MAX_CHUNK_ENTRIES).contains(&entries)
            || !(ENTRY_FRAMING_BYTES..=MAX_CHUNK_BYTES).contains(&bytes)
        {
            return Err(CopyError::Limits { entries, bytes });
        }
        Ok(Self { entries, bytes })
    }

    /// The ceilings themselves.
    pub fn max() -> Self {
        Self {
            entries: MAX_CHUNK_ENTRIES,
            bytes: MAX_CHUNK_BYTES,
        }
    }

    /// Entries per chunk.
    pub fn entries(&self) -> usize {
        self.entries
    }

    /// Bytes per chunk.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

/// The 64-bit FNV-1a hash of an entry.
pub fn entry_hash(slot: u16, key: &[u8], value: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let key_len = (key.len() as u64).to_be_bytes();
    let value_len = (value.len() as u64).to_be_bytes();
    [&slot.to_be_bytes()[..], &key_len, key, &value_len, value]
        .into_iter()
        .flatten()
        .fold(OFFSET, |h, &b| (h ^ u64::from(b)).wrapping_mul(PRIME))
}

impl Manifest {
    /// Adds one chunk: what the target does as it applies `ImportChunk`.
    pub fn add(&mut self, chunk: &Chunk) {
        self.chunks = self.chunks.wrapping_add(1);
        for e in &chunk.entries {
            self.entries = self.entries.wrapping_add(1);
            self.digest = self
                .digest
                .wrapping_add(entry_hash(e.slot, &e.key, &e.value));
        }
    }
}

/// Cuts `entries` (the frozen source's entries in the migrating slots, in
/// storage order) into chunks of at most `limits`, numbered from 0.
/// Yields an error (and then stops) for an entry larger than a chunk.
pub fn chunks<I>(entries: I, limits: ChunkLimits) -> Chunks<I::IntoIter>
where
    I: IntoIterator<Item = ChunkEntry>,
{
    Chunks {
        entries: entries.into_iter().peekable(),
        limits,
        seq: 0,
        failed: false,
    }
}

/// The iterator [`chunks`] returns.
pub struct Chunks<I: Iterator<Item = ChunkEntry>> {
    entries: std::iter::Peekable<I>,
    limits: ChunkLimits,
    seq: u64,
    failed: bool,
}

impl<I: Iterator<Item = ChunkEntry>> Iterator for Chunks<I> {
    type Item = Result<Chunk, CopyError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let mut out = Vec::new();
        let mut bytes = 0usize;
        while let Some(next) = self.entries.peek() {
            let size = next.size();
            if size > self.limits.bytes {
                self.failed = true;
                return Some(Err(CopyError::EntryTooLarge {
                    slot: next.slot,
                    size,
                    max: self.limits.bytes,
                }));
            }
            if out.len() == self.limits.entries || bytes.saturating_add(size) > self.limits.bytes {
                break;
            }
            bytes = bytes.saturating_add(size);
            out.extend(self.entries.next());
        }
        if out.is_empty() {
            return None;
        }
        let chunk = Chunk {
            seq: self.seq,
            entries: out,
        };
        self.seq = self.seq.saturating_add(1);
        Some(Ok(chunk))
    }
}

/// The manifest of a whole copy: what the target must have received
/// before the source may hand off.
pub fn manifest<I>(entries: I, limits: ChunkLimits) -> Result<Manifest, CopyError>
where
    I: IntoIterator<Item = ChunkEntry>,
{
    let mut m = Manifest::default();
    for chunk in chunks(entries, limits) {
        m.add(&chunk?);
    }
    Ok(m)
}

/// Chunk `seq` of the copy, or `None` past the end: what a coordinator
/// resuming a copy sends next.
pub fn chunk_at<I>(entries: I, limits: ChunkLimits, seq: u64) -> Result<Option<Chunk>, CopyError>
where
    I: IntoIterator<Item = ChunkEntry>,
{
    for chunk in chunks(entries, limits) {
        let chunk = chunk?;
        if chunk.seq == seq {
            return Ok(Some(chunk));
        }
    }
    Ok(None)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn entry(slot: u16, key: &str, value_len: usize) -> ChunkEntry {
        ChunkEntry {
            slot,
            key: key.as_bytes().to_vec(),
            value: vec![b'v'; value_len],
        }
    }

    #[test]
    fn chunks_respect_both_limits_and_number_from_zero() {
        let entries: Vec<_> = (0..10).map(|i| entry(1, &format!("k{i}"), 10)).collect();
        // Each entry is 10 + 2 + 10 = 22 bytes.
        let limits = ChunkLimits::new(3, 50).unwrap();
        let cut: Vec<_> = chunks(entries.clone(), limits)
            .map(Result::unwrap)
            .collect();
        assert_eq!(cut.len(), 5, "two per chunk by bytes");
        assert!(cut.iter().all(|c| c.entries.len() == 2 && c.size() <= 50));
        assert_eq!(
            cut.iter().map(|c| c.seq).collect::<Vec<_>>(),
            [0, 1, 2, 3, 4]
        );
        let limits = ChunkLimits::new(3, 1000).unwrap();
        let cut: Vec<_> = chunks(entries.clone(), limits)
            .map(Result::unwrap)
            .collect();
        assert_eq!(
            cut.iter().map(|c| c.entries.len()).collect::<Vec<_>>(),
            [3, 3, 3, 1]
        );
        assert_eq!(
            chunk_at(entries.clone(), limits, 3).unwrap(),
            Some(cut[3].clone())
        );
        assert_eq!(chunk_at(entries.clone(), limits, 4).unwrap(), None);
        let m = manifest(entries, limits).unwrap();
        assert_eq!((m.chunks, m.entries), (4, 10));
    }

    #[test]
    fn the_digest_ignores_order_and_sees_duplicates() {
        let a = entry(1, "a", 1);
        let b = entry(2, "b", 1);
        let limits = ChunkLimits::new(1, 100).unwrap();
        let ab = manifest([a.clone(), b.clone()], limits).unwrap();
        let ba = manifest([b.clone(), a.clone()], limits).unwrap();
        assert_eq!(ab, ba);
        let aab = manifest([a.clone(), a.clone(), b.clone()], limits).unwrap();
        let bb = manifest([b.clone(), b], limits).unwrap();
        assert_ne!(aab.digest, ab.digest);
        assert_ne!(bb.digest, 0);
    }

    #[test]
    fn an_entry_larger_than_a_chunk_is_an_error_and_limits_are_checked() {
        let limits = ChunkLimits::new(10, 20).unwrap();
        let mut it = chunks([entry(5, "big", 100)], limits);
        assert!(matches!(
            it.next(),
            Some(Err(CopyError::EntryTooLarge { slot: 5, .. }))
        ));
        assert!(it.next().is_none());
        assert!(ChunkLimits::new(0, 100).is_err());
        assert!(ChunkLimits::new(1, MAX_CHUNK_BYTES + 1).is_err());
        assert!(ChunkLimits::new(MAX_CHUNK_ENTRIES + 1, 100).is_err());
    }
}
