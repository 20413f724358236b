//! The write operations a Raft log entry can carry, and their results.

use std::fmt;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use seshat_common::{LimitError, Limits};

/// When a `SET` may take effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SetCondition {
    /// `NX`: only if the key does not exist.
    IfAbsent,
    /// `XX`: only if the key already exists.
    IfPresent,
}

/// A state-changing command, as replicated through the Raft log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Operation {
    /// `SET key value [NX|XX] [GET]`.
    Set {
        /// The key to write.
        key: Bytes,
        /// The new value.
        value: Bytes,
        /// Optional `NX` / `XX` condition.
        condition: Option<SetCondition>,
        /// `GET`: reply with the previous value.
        return_old: bool,
    },
    /// `DEL key [key ...]`: replies with the number of keys removed.
    Del {
        /// Keys to remove; duplicates count once.
        keys: Vec<Bytes>,
    },
    /// `FLUSHALL` / `FLUSHDB`: removes every key.
    FlushAll,
    /// Several client writes carried by one log entry, applied in order,
    /// each with its own result. The leader batches concurrent writes this
    /// way so they share one entry's costs (encode, append, replication,
    /// apply). Never nested: [`validate`] and the log codec refuse a batch
    /// inside a batch.
    Batch(Vec<Operation>),
}

impl Operation {
    /// A plain `SET key value`.
    pub fn set(key: Bytes, value: Bytes) -> Self {
        Operation::Set {
            key,
            value,
            condition: None,
            return_old: false,
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Operation::Set { key, value, .. } => {
                write!(f, "SET {:?} ({} bytes)", key, value.len())
            }
            Operation::Del { keys } => write!(f, "DEL {} keys", keys.len()),
            Operation::FlushAll => write!(f, "FLUSHALL"),
            Operation::Batch(ops) => write!(f, "batch of {} writes", ops.len()),
        }
    }
}

/// The outcome of applying an [`Operation`]; the server turns it into a
/// RESP reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OpResult {
    /// `+OK`.
    Ok,
    /// A null reply (e.g. `SET ... NX` on an existing key).
    Nil,
    /// A bulk string (e.g. the old value for `SET ... GET`).
    Value(Bytes),
    /// An integer (e.g. the count for `DEL`).
    Integer(i64),
    /// The results of an [`Operation::Batch`], in order.
    Batch(Vec<OpResult>),
}

impl fmt::Display for OpResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpResult::Ok => write!(f, "OK"),
            OpResult::Nil => write!(f, "nil"),
            OpResult::Value(v) => write!(f, "value ({} bytes)", v.len()),
            OpResult::Integer(n) => write!(f, "{n}"),
            OpResult::Batch(results) => write!(f, "{} results", results.len()),
        }
    }
}

/// Checks an operation against the size limits before it is proposed, so an
/// over-large write is refused without touching the log.
pub fn validate(op: &Operation, limits: &Limits) -> Result<(), LimitError> {
    match op {
        Operation::Set { key, value, .. } => {
            limits.check_key(key)?;
            limits.check_value(value)
        }
        Operation::Del { keys } => limits.check_keys_total(keys.iter().map(|k| k.as_ref())),
        Operation::FlushAll => Ok(()),
        Operation::Batch(ops) => ops.iter().try_for_each(|op| match op {
            Operation::Batch(_) => Err(LimitError::RequestTooLarge),
            op => validate(op, limits),
        }),
    }
}

impl Operation {
    /// About how many bytes this operation takes in a log entry (payload
    /// plus framing), for sizing batches.
    pub fn encoded_size_hint(&self) -> usize {
        match self {
            Operation::Set { key, value, .. } => key.len() + value.len() + 16,
            Operation::Del { keys } => keys.iter().map(|k| k.len() + 4).sum::<usize>() + 8,
            Operation::FlushAll => 4,
            Operation::Batch(ops) => ops.iter().map(|o| o.encoded_size_hint() + 4).sum(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oversized_key_or_value_is_refused_before_proposal() {
        let limits = Limits::default();
        let big = Bytes::from(vec![0u8; limits.max_value_bytes + 1]);
        let op = Operation::set(Bytes::from("k"), big);
        assert_eq!(validate(&op, &limits), Err(LimitError::ValueTooLarge));
        let long_key = Bytes::from(vec![b'k'; limits.max_key_bytes + 1]);
        let op = Operation::Del {
            keys: vec![Bytes::from("ok"), long_key],
        };
        assert_eq!(validate(&op, &limits), Err(LimitError::KeyTooLarge));
        assert_eq!(validate(&Operation::FlushAll, &limits), Ok(()));
        // Regression: a DEL of many keys could make one log entry larger
        // than a gRPC message, stalling replication for good.
        let many = (0..2_000)
            .map(|i| Bytes::from(format!("{i:0>200}")))
            .collect();
        assert_eq!(
            validate(&Operation::Del { keys: many }, &limits),
            Err(LimitError::RequestTooLarge)
        );
        // Regression: empty keys cost nothing by length but still take
        // room in the entry; a DEL of a million of them is refused too.
        let empties = vec![Bytes::new(); 1_000_000];
        assert_eq!(
            validate(&Operation::Del { keys: empties }, &limits),
            Err(LimitError::RequestTooLarge)
        );
    }
}
