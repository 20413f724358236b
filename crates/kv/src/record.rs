//! A key's metadata record: its type, expiry and modification index, with a
//! string's bytes inline so `GET` is one point read.
//!
//! ```text
//! kind u8 (bit 7: raw) | expire_at_ms u64 | mod_index u64 | payload
//! ```
//!
//! `expire_at_ms` is absolute (0 = no expiry). `mod_index` is the Raft log
//! index of the last write that changed the key: `WATCH` remembers it and
//! `EXEC` compares it at apply. For a string the payload is its bytes.

use bytes::Bytes;

use crate::KvError;

/// Bytes of a record before its payload.
pub const RECORD_HEADER_BYTES: usize = 1 + 8 + 8;

/// The type of a key's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A string (inline payload).
    String,
    /// A hash (sub-key records).
    Hash,
    /// A list (sub-key records).
    List,
    /// A set (sub-key records).
    Set,
    /// A sorted set (sub-key records and a score index).
    ZSet,
}

impl Kind {
    fn code(self) -> u8 {
        match self {
            Kind::String => 1,
            Kind::Hash => 2,
            Kind::List => 3,
            Kind::Set => 4,
            Kind::ZSet => 5,
        }
    }

    fn from_code(code: u8) -> Option<Kind> {
        Some(match code {
            1 => Kind::String,
            2 => Kind::Hash,
            3 => Kind::List,
            4 => Kind::Set,
            5 => Kind::ZSet,
            _ => return None,
        })
    }

    /// The name `TYPE` replies with.
    pub fn type_name(self) -> &'static str {
        match self {
            Kind::String => "string",
            Kind::Hash => "hash",
            Kind::List => "list",
            Kind::Set => "set",
            Kind::ZSet => "zset",
        }
    }
}

/// A decoded metadata record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The value's type.
    pub kind: Kind,
    /// Absolute expiry in Unix milliseconds; 0 = none.
    pub expire_at_ms: u64,
    /// Log index of the last write that changed the key.
    pub mod_index: u64,
    /// A string's bytes; for other kinds, their fixed metadata.
    pub payload: Bytes,
    /// A string last changed in place (Redis's `raw` encoding).
    pub raw: bool,
}

/// Bytes of a composite record's payload: size, head, tail.
pub const COMPOSITE_PAYLOAD_BYTES: usize = 24;

/// The bit of the kind byte that marks a [`Record::raw`] string.
const RAW_BIT: u8 = 0x80;

impl Record {
    /// A string record without expiry (the caller sets `mod_index` when it
    /// writes).
    pub fn string(payload: Bytes) -> Record {
        Record {
            kind: Kind::String,
            expire_at_ms: 0,
            mod_index: 0,
            payload,
            raw: false,
        }
    }

    /// A composite record (hash, list, set, sorted set) of `size` elements;
    /// a list also records the indexes of its first element and one past
    /// its last (`head`, `tail`).
    pub fn composite(kind: Kind, size: u64, head: u64, tail: u64) -> Record {
        let mut payload = Vec::with_capacity(COMPOSITE_PAYLOAD_BYTES);
        payload.extend_from_slice(&size.to_be_bytes());
        payload.extend_from_slice(&head.to_be_bytes());
        payload.extend_from_slice(&tail.to_be_bytes());
        Record {
            kind,
            expire_at_ms: 0,
            mod_index: 0,
            payload: Bytes::from(payload),
            raw: false,
        }
    }

    /// A composite record's (size, head, tail); see [`Record::composite`].
    pub fn composite_meta(&self) -> Result<(u64, u64, u64), KvError> {
        let field = |i: usize| {
            self.payload
                .get(i * 8..i * 8 + 8)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map(u64::from_be_bytes)
                .ok_or_else(|| KvError::Corrupt("short composite metadata".into()))
        };
        if self.kind == Kind::String {
            return Err(KvError::Corrupt(
                "a string has no composite metadata".into(),
            ));
        }
        Ok((field(0)?, field(1)?, field(2)?))
    }

    /// The same record with new composite metadata, keeping its expiry.
    pub fn with_composite_meta(&self, size: u64, head: u64, tail: u64) -> Record {
        Record {
            expire_at_ms: self.expire_at_ms,
            ..Record::composite(self.kind, size, head, tail)
        }
    }

    /// Whether the key is expired at `now_ms`.
    pub fn is_expired(&self, now_ms: u64) -> bool {
        self.expire_at_ms != 0 && self.expire_at_ms <= now_ms
    }

    /// The on-disk bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(RECORD_HEADER_BYTES + self.payload.len());
        out.push(self.kind.code() | if self.raw { RAW_BIT } else { 0 });
        out.extend_from_slice(&self.expire_at_ms.to_be_bytes());
        out.extend_from_slice(&self.mod_index.to_be_bytes());
        out.extend_from_slice(&self.payload);
        out
    }

    /// Decodes on-disk bytes; the payload shares `raw`.
    pub fn decode(raw: Bytes) -> Result<Record, KvError> {
        let corrupt = |why: &str| KvError::Corrupt(format!("metadata record: {why}"));
        let head = raw
            .get(..RECORD_HEADER_BYTES)
            .ok_or_else(|| corrupt("shorter than its header"))?;
        let (code, rest) = head.split_first().ok_or_else(|| corrupt("empty"))?;
        let kind = Kind::from_code(*code & !RAW_BIT)
            .ok_or_else(|| corrupt(&format!("unknown type {code}")))?;
        let (expire, rest) = rest
            .split_first_chunk::<8>()
            .ok_or_else(|| corrupt("no expiry"))?;
        let (modi, _) = rest
            .split_first_chunk::<8>()
            .ok_or_else(|| corrupt("no modification index"))?;
        Ok(Record {
            kind,
            expire_at_ms: u64::from_be_bytes(*expire),
            mod_index: u64::from_be_bytes(*modi),
            payload: raw.slice(RECORD_HEADER_BYTES..),
            raw: *code & RAW_BIT != 0,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn records_round_trip(code in 1u8..=5, at in any::<u64>(), m in any::<u64>(), p in prop::collection::vec(any::<u8>(), 0..64), raw in any::<bool>()) {
            let r = Record { kind: Kind::from_code(code).unwrap(), expire_at_ms: at, mod_index: m, payload: Bytes::from(p), raw };
            prop_assert_eq!(Record::decode(Bytes::from(r.encode())).unwrap(), r);
        }

        #[test]
        fn garbage_is_an_error_not_a_panic(raw in prop::collection::vec(any::<u8>(), 0..40)) {
            let _ = Record::decode(Bytes::from(raw));
        }
    }

    #[test]
    fn short_or_unknown_records_are_corrupt() {
        assert!(Record::decode(Bytes::from_static(b"\x01abc")).is_err());
        let mut r = Record::string(Bytes::from_static(b"v")).encode();
        r[0] = 9;
        assert!(Record::decode(Bytes::from(r)).is_err());
    }
}
