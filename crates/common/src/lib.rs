//! Types every Seshat crate shares: node identifiers, the limits on client
//! input, and the few errors that cross crate boundaries.
//!
//! This crate has no I/O and no heavy dependencies, so the protocol, KV,
//! storage and Raft crates can all depend on it without depending on each
//! other.
//!
//! ```
//! use seshat_common::Limits;
//! let limits = Limits::default();
//! assert!(limits.check_key(b"user:1").is_ok());
//! assert!(limits.check_value(&vec![0u8; 70 * 1024]).is_err());
//! ```

use serde::{Deserialize, Serialize};

pub mod slot;
pub mod stages;

pub use slot::{crc16, crc16_slot, hash_tag};

/// Identifies a node for the lifetime of a cluster. Never reused.
pub type NodeId = u64;

/// Default cap on a key's length, from the KV service spec.
pub const DEFAULT_MAX_KEY_BYTES: usize = 256;
/// Default cap on a value's length, from the KV service spec.
pub const DEFAULT_MAX_VALUE_BYTES: usize = 64 * 1024;
/// Hard ceiling for the configurable key limit: keeps log entries small.
pub const MAX_KEY_BYTES_CEILING: usize = 64 * 1024;
/// Hard ceiling for the configurable value limit: one entry must fit well
/// inside a gRPC message (tonic's default is 4 MiB).
pub const MAX_VALUE_BYTES_CEILING: usize = 1024 * 1024;
/// What one key of a multi-key command is counted as beyond its length
/// (its framing in a log entry), for [`Limits::check_keys_total`].
pub const KEY_FRAMING_BYTES: usize = 8;
/// Room for a write's command name, options and framing beyond its key
/// and value, in [`Limits::max_request_bytes`].
pub const REQUEST_FRAMING_BYTES: usize = 1024;
/// Number of Redis Cluster hash slots.
pub const CLUSTER_SLOTS: u16 = 16384;

/// Size limits applied to client data before it is proposed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Longest accepted key, in bytes.
    pub max_key_bytes: usize,
    /// Longest accepted value, in bytes.
    pub max_value_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_key_bytes: DEFAULT_MAX_KEY_BYTES,
            max_value_bytes: DEFAULT_MAX_VALUE_BYTES,
        }
    }
}

/// A client value that breaks a [`Limits`] rule. The text is the exact
/// Redis-style error reply (without the leading `-`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    /// The key is longer than `max_key_bytes`.
    #[error("ERR key too large")]
    KeyTooLarge,
    /// The value is longer than `max_value_bytes`.
    #[error("ERR value too large")]
    ValueTooLarge,
    /// The keys of one command (each counted with its framing) add up to
    /// more than `max_value_bytes`: one log entry is never much larger than
    /// the largest SET.
    #[error("ERR request too large")]
    RequestTooLarge,
}

/// A configuration value outside its allowed range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid setting {name} = {value}: {reason}")]
pub struct InvalidSetting {
    /// The setting's name as the user spells it (flag or TOML key).
    pub name: &'static str,
    /// The rejected value, rendered for the message.
    pub value: String,
    /// Why it was rejected.
    pub reason: String,
}

impl InvalidSetting {
    /// Builds the error for setting `name` with the offending `value`.
    pub fn new(name: &'static str, value: impl ToString, reason: impl Into<String>) -> Self {
        Self {
            name,
            value: value.to_string(),
            reason: reason.into(),
        }
    }
}

impl Limits {
    /// Checks the limits themselves; errors name the bad setting.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        if self.max_key_bytes == 0 || self.max_key_bytes > MAX_KEY_BYTES_CEILING {
            return Err(InvalidSetting::new(
                "max-key-bytes",
                self.max_key_bytes,
                format!("must be between 1 and {MAX_KEY_BYTES_CEILING}"),
            ));
        }
        if self.max_value_bytes == 0 || self.max_value_bytes > MAX_VALUE_BYTES_CEILING {
            return Err(InvalidSetting::new(
                "max-value-bytes",
                self.max_value_bytes,
                format!("must be between 1 and {MAX_VALUE_BYTES_CEILING}"),
            ));
        }
        Ok(())
    }

    /// Refuses a key longer than `max_key_bytes`.
    pub fn check_key(&self, key: &[u8]) -> Result<(), LimitError> {
        if key.len() > self.max_key_bytes {
            return Err(LimitError::KeyTooLarge);
        }
        Ok(())
    }

    /// Refuses keys of one command whose total size in a log entry —
    /// each key's length plus [`KEY_FRAMING_BYTES`] — exceeds
    /// `max_value_bytes` (so a million empty keys are refused too).
    pub fn check_keys_total<'a>(
        &self,
        keys: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<(), LimitError> {
        let mut total: usize = 0;
        for key in keys {
            self.check_key(key)?;
            total = total.saturating_add(key.len().saturating_add(KEY_FRAMING_BYTES));
            if total > self.max_value_bytes {
                return Err(LimitError::RequestTooLarge);
            }
        }
        Ok(())
    }

    /// The largest write one log entry may carry: the largest key plus the
    /// largest value plus [`REQUEST_FRAMING_BYTES`]. Replication batches are
    /// sized for entries of this size.
    pub fn max_request_bytes(&self) -> usize {
        self.max_key_bytes
            .saturating_add(self.max_value_bytes)
            .saturating_add(REQUEST_FRAMING_BYTES)
    }

    /// Refuses a value longer than `max_value_bytes`.
    pub fn check_value(&self, value: &[u8]) -> Result<(), LimitError> {
        if value.len() > self.max_value_bytes {
            return Err(LimitError::ValueTooLarge);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_at_limit_is_accepted_and_one_more_byte_is_not() {
        let limits = Limits::default();
        assert_eq!(limits.check_key(&[b'k'; DEFAULT_MAX_KEY_BYTES]), Ok(()));
        assert_eq!(
            limits.check_key(&[b'k'; DEFAULT_MAX_KEY_BYTES + 1]),
            Err(LimitError::KeyTooLarge)
        );
        assert_eq!(limits.check_value(&[0; DEFAULT_MAX_VALUE_BYTES]), Ok(()));
        assert_eq!(
            limits.check_value(&[0; DEFAULT_MAX_VALUE_BYTES + 1]),
            Err(LimitError::ValueTooLarge)
        );
    }

    #[test]
    fn error_text_is_the_redis_reply() {
        assert_eq!(LimitError::KeyTooLarge.to_string(), "ERR key too large");
        assert_eq!(LimitError::ValueTooLarge.to_string(), "ERR value too large");
    }

    #[test]
    fn zero_or_huge_limits_are_refused_with_the_setting_named() {
        let err = Limits {
            max_key_bytes: 0,
            ..Limits::default()
        }
        .validate()
        .unwrap_err();
        assert_eq!(err.name, "max-key-bytes");
        let err = Limits {
            max_value_bytes: usize::MAX,
            ..Limits::default()
        }
        .validate()
        .unwrap_err();
        assert_eq!(err.name, "max-value-bytes");
        assert!(err.to_string().contains(&usize::MAX.to_string()));
    }
}
