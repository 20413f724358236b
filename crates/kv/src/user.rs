//! An ACL user's stored record: the user's rules in Redis's ACL file form
//! (what `ACL LIST` shows after the name) and the log index that created
//! it.
//!
//! ```text
//! version u8 (1) | created_index u64 | rules (utf-8, space separated)
//! ```
//!
//! The rules are re-read with the `ACL SETUSER` grammar when the user
//! table is rebuilt, so categories follow the command table of the binary
//! that reads them (as an ACL file does in Redis). `created_index` tells
//! a deleted and re-created user from the one a connection logged in as.

use bytes::Bytes;

use crate::KvError;

/// Version of the user record encoding.
pub const USER_RECORD_VERSION: u8 = 1;

/// One ACL user as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// Index of the log entry that created the user.
    pub created_index: u64,
    /// The user's rules, as `ACL LIST` describes them.
    pub rules: Bytes,
}

impl UserRecord {
    /// The stored form.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(9 + self.rules.len());
        out.push(USER_RECORD_VERSION);
        out.extend_from_slice(&self.created_index.to_be_bytes());
        out.extend_from_slice(&self.rules);
        out
    }

    /// Reads a stored record; an unknown version or a short record is
    /// corrupt.
    pub fn decode(raw: Bytes) -> Result<Self, KvError> {
        let (&version, rest) = raw
            .split_first()
            .ok_or_else(|| KvError::Corrupt("empty ACL user record".into()))?;
        if version != USER_RECORD_VERSION {
            return Err(KvError::Corrupt(format!(
                "ACL user record version {version}, this build reads {USER_RECORD_VERSION}"
            )));
        }
        let (index, _) = rest
            .split_first_chunk::<8>()
            .ok_or_else(|| KvError::Corrupt("short ACL user record".into()))?;
        Ok(Self {
            created_index: u64::from_be_bytes(*index),
            rules: raw.slice(9..),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_record_round_trips_and_other_versions_are_refused() {
        let r = UserRecord {
            created_index: 42,
            rules: Bytes::from_static(b"on nopass ~* &* +@all"),
        };
        assert_eq!(UserRecord::decode(Bytes::from(r.encode())).unwrap(), r);
        let mut bad = r.encode();
        bad[0] = 9;
        assert!(UserRecord::decode(Bytes::from(bad)).is_err());
        assert!(UserRecord::decode(Bytes::from_static(&[1, 0, 0])).is_err());
        assert!(UserRecord::decode(Bytes::new()).is_err());
    }
}
