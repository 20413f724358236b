//! The byte helpers under the step encoding: big-endian integers and
//! length-prefixed byte strings, every length checked against what is
//! left (and against its limit) before anything is allocated.

use seshat_common::CLUSTER_SLOTS;

use crate::slots::{SlotError, SlotMap, SlotRanges};
use crate::GroupId;

/// Why bytes could not be read as a step.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The bytes end inside a field.
    #[error("truncated {0}")]
    Truncated(&'static str),
    /// A version this build does not read.
    #[error("step version {found}, this build reads {expected}")]
    Version {
        /// Version found.
        found: u8,
        /// Version this build writes and reads.
        expected: u8,
    },
    /// An unknown step kind or enum tag.
    #[error("unknown {what} tag {tag}")]
    Tag {
        /// Which field.
        what: &'static str,
        /// The tag found.
        tag: u8,
    },
    /// A length above its limit.
    #[error("{what} of {len} exceeds the limit {max}")]
    TooLarge {
        /// Which field.
        what: &'static str,
        /// Length found.
        len: u64,
        /// Its limit.
        max: u64,
    },
    /// Bytes left after the step.
    #[error("{0} bytes after the end of the step")]
    Trailing(usize),
    /// A set of slots that is not valid.
    #[error("invalid slots: {0}")]
    Slots(#[from] SlotError),
    /// A field whose value is not allowed (for example a migration from a
    /// group to itself).
    #[error("invalid {0}")]
    Invalid(&'static str),
}

/// Appends fields to a buffer.
pub(crate) struct Writer {
    pub(crate) out: Vec<u8>,
}

impl Writer {
    pub(crate) fn new(version: u8, kind: u8) -> Self {
        Self {
            out: vec![version, kind],
        }
    }

    pub(crate) fn u8(&mut self, v: u8) {
        self.out.push(v);
    }

    pub(crate) fn u16(&mut self, v: u16) {
        self.out.extend_from_slice(&v.to_be_bytes());
    }

    pub(crate) fn u32(&mut self, v: u32) {
        self.out.extend_from_slice(&v.to_be_bytes());
    }

    pub(crate) fn u64(&mut self, v: u64) {
        self.out.extend_from_slice(&v.to_be_bytes());
    }

    /// A byte string with a u32 length prefix. Lengths are bounded by the
    /// step limits long before `u32::MAX`; a longer one would be refused
    /// by the reader, so saturating here cannot produce a readable lie.
    pub(crate) fn bytes(&mut self, v: &[u8]) {
        self.u32(u32::try_from(v.len()).unwrap_or(u32::MAX));
        self.out.extend_from_slice(v);
    }

    /// A slot map as runs `(first, last, group)`.
    pub(crate) fn map(&mut self, map: &SlotMap) {
        let runs = map.runs();
        // At most CLUSTER_SLOTS runs.
        self.u32(u32::try_from(runs.len()).unwrap_or(u32::MAX));
        for (start, end, group) in runs {
            self.u16(start);
            self.u16(end);
            self.u32(group);
        }
    }

    pub(crate) fn slots(&mut self, slots: &SlotRanges) {
        // At most MAX_SLOT_RANGES (checked at construction), so fits u16.
        self.u16(u16::try_from(slots.ranges().len()).unwrap_or(u16::MAX));
        for r in slots.ranges() {
            self.u16(r.start);
            self.u16(r.end);
        }
    }
}

/// Reads fields from a byte slice.
pub(crate) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self { rest: bytes }
    }

    /// Checks the version byte and returns the kind byte.
    pub(crate) fn header(&mut self, expected: u8) -> Result<u8, DecodeError> {
        let found = self.u8("version")?;
        if found != expected {
            return Err(DecodeError::Version { found, expected });
        }
        self.u8("kind")
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        if self.rest.len() < n {
            return Err(DecodeError::Truncated(what));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], DecodeError> {
        let (head, tail) = self
            .rest
            .split_first_chunk::<N>()
            .ok_or(DecodeError::Truncated(what))?;
        self.rest = tail;
        Ok(*head)
    }

    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(what)?[0])
    }

    pub(crate) fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array(what)?))
    }

    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }

    pub(crate) fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array(what)?))
    }

    /// A length-prefixed byte string of at most `max` bytes.
    pub(crate) fn bytes(&mut self, what: &'static str, max: usize) -> Result<Vec<u8>, DecodeError> {
        let len = self.u32(what)?;
        let len_usize = usize::try_from(len).unwrap_or(usize::MAX);
        if len_usize > max {
            return Err(DecodeError::TooLarge {
                what,
                len: u64::from(len),
                max: max as u64,
            });
        }
        Ok(self.take(len_usize, what)?.to_vec())
    }

    /// A count checked against `max` before anything is allocated for it.
    pub(crate) fn count(&mut self, what: &'static str, max: usize) -> Result<usize, DecodeError> {
        let n = self.u32(what)?;
        let n_usize = usize::try_from(n).unwrap_or(usize::MAX);
        if n_usize > max {
            return Err(DecodeError::TooLarge {
                what,
                len: u64::from(n),
                max: max as u64,
            });
        }
        Ok(n_usize)
    }

    pub(crate) fn slots(&mut self) -> Result<SlotRanges, DecodeError> {
        let n = usize::from(self.u16("slot range count")?);
        if n > crate::MAX_SLOT_RANGES {
            return Err(DecodeError::TooLarge {
                what: "slot range count",
                len: n as u64,
                max: crate::MAX_SLOT_RANGES as u64,
            });
        }
        let mut ranges = Vec::with_capacity(n);
        for _ in 0..n {
            let start = self.u16("slot range")?;
            let end = self.u16("slot range")?;
            ranges.push((start, end));
        }
        Ok(SlotRanges::new(ranges)?)
    }

    /// A slot map written by [`Writer::map`]: runs that start at slot 0,
    /// follow each other without gap or overlap and end at the last slot.
    pub(crate) fn map(&mut self) -> Result<SlotMap, DecodeError> {
        let n = self.count("slot map runs", usize::from(CLUSTER_SLOTS))?;
        let mut owners: Vec<GroupId> = Vec::with_capacity(usize::from(CLUSTER_SLOTS));
        for _ in 0..n {
            let start = self.u16("slot map run")?;
            let end = self.u16("slot map run")?;
            let group = self.u32("slot map run")?;
            if usize::from(start) != owners.len() || end < start || end >= CLUSTER_SLOTS {
                return Err(DecodeError::Invalid("slot map runs"));
            }
            owners.extend((start..=end).map(|_| group));
        }
        Ok(SlotMap::from_owners(owners)?)
    }

    /// Refuses bytes left over.
    pub(crate) fn finish(self) -> Result<(), DecodeError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::Trailing(self.rest.len()))
        }
    }
}
