//! The byte-level store a [`Keyspace`](crate::Keyspace) works on, and an
//! in-memory one for tests and models.

use std::collections::BTreeMap;
use std::ops::Bound;

use bytes::Bytes;

/// Why a keyspace operation failed. These are never client errors: a
/// storage failure or corrupt data stops the node from applying.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KvError {
    /// The underlying store failed.
    #[error("storage failure: {0}")]
    Storage(String),
    /// Stored bytes do not decode.
    #[error("corrupt data: {0}")]
    Corrupt(String),
    /// A write through a read-only view (a bug in command classification).
    #[error("internal error: write attempted on a read-only view")]
    ReadOnly,
}

/// Ordered byte keys and values. Writes must be visible to later reads
/// through the same value, even before they reach disk, so one apply batch
/// can hold several dependent commands.
pub trait RawKv {
    /// The value of `key`.
    fn get(&mut self, key: &[u8]) -> Result<Option<Bytes>, KvError>;
    /// Sets `key` to `value`.
    fn put(&mut self, key: Vec<u8>, value: Vec<u8>) -> Result<(), KvError>;
    /// Removes `key`.
    fn delete(&mut self, key: Vec<u8>) -> Result<(), KvError>;
    /// Removes every key in `[from, to)`.
    fn delete_range(&mut self, from: Vec<u8>, to: Vec<u8>) -> Result<(), KvError>;
    /// Up to `limit` pairs with `from <= key < to`, in key order.
    fn scan(
        &mut self,
        from: &[u8],
        to: &[u8],
        limit: usize,
    ) -> Result<Vec<(Bytes, Bytes)>, KvError>;
    /// Up to `limit` pairs with `from <= key < to`, in descending order.
    fn scan_rev(
        &mut self,
        from: &[u8],
        to: &[u8],
        limit: usize,
    ) -> Result<Vec<(Bytes, Bytes)>, KvError>;
}

/// An in-memory [`RawKv`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemKv {
    /// The keys and values, ordered.
    pub map: BTreeMap<Vec<u8>, Bytes>,
}

impl RawKv for MemKv {
    fn get(&mut self, key: &[u8]) -> Result<Option<Bytes>, KvError> {
        Ok(self.map.get(key).cloned())
    }

    fn put(&mut self, key: Vec<u8>, value: Vec<u8>) -> Result<(), KvError> {
        self.map.insert(key, Bytes::from(value));
        Ok(())
    }

    fn delete(&mut self, key: Vec<u8>) -> Result<(), KvError> {
        self.map.remove(&key);
        Ok(())
    }

    fn delete_range(&mut self, from: Vec<u8>, to: Vec<u8>) -> Result<(), KvError> {
        if from < to {
            let doomed: Vec<Vec<u8>> = self
                .map
                .range::<[u8], _>((Bound::Included(&from[..]), Bound::Excluded(&to[..])))
                .map(|(k, _)| k.clone())
                .collect();
            for k in doomed {
                self.map.remove(&k);
            }
        }
        Ok(())
    }

    fn scan(
        &mut self,
        from: &[u8],
        to: &[u8],
        limit: usize,
    ) -> Result<Vec<(Bytes, Bytes)>, KvError> {
        if from >= to {
            return Ok(Vec::new());
        }
        Ok(self
            .map
            .range::<[u8], _>((Bound::Included(from), Bound::Excluded(to)))
            .take(limit)
            .map(|(k, v)| (Bytes::copy_from_slice(k), v.clone()))
            .collect())
    }

    fn scan_rev(
        &mut self,
        from: &[u8],
        to: &[u8],
        limit: usize,
    ) -> Result<Vec<(Bytes, Bytes)>, KvError> {
        if from >= to {
            return Ok(Vec::new());
        }
        Ok(self
            .map
            .range::<[u8], _>((Bound::Included(from), Bound::Excluded(to)))
            .rev()
            .take(limit)
            .map(|(k, v)| (Bytes::copy_from_slice(k), v.clone()))
            .collect())
    }
}
