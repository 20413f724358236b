//! Where each Raft group's records live: the one place that builds the
//! keys of a group's log and Raft state (user data keys belong to
//! [`seshat_kv::keys`]).
//!
//! Every group on a node shares one RocksDB. The system group
//! ([`SYSTEM_GROUP`]) lives in the `system_*` column families, data groups
//! in the `data_*` ones, each under its group id:
//!
//! ```text
//! log     group u32 | index u64   → LogEntry        (system_raft_log / data_raft_log)
//! state   group u32 | name        → record          (system_raft_state / data_raft_state)
//! data    group u32 | slot u16 …  → record          (system_data / data_kv; see seshat_kv::keys)
//! ```
//!
//! All integers are big-endian, so a group's log is one contiguous range
//! ordered by index. Group ids stay below 2^24 ([`MAX_GROUP_ID`]): every
//! group key starts with a zero byte, and node-level records in the same
//! families (the format version, whose name starts with a letter) can
//! never be mistaken for one.
//!
//! ```
//! use seshat_raft::layout::{GroupLayout, StateName};
//! let g = GroupLayout::new(2).unwrap();
//! assert_eq!(g.log_key(7), [0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 7]);
//! assert_eq!(g.index_of_log_key(&g.log_key(7)).unwrap(), 7);
//! assert!(g.state_key(StateName::Vote).starts_with(&[0, 0, 0, 2]));
//! ```

use std::io;
use std::path::{Path, PathBuf};

use seshat_kv::keys;
use seshat_storage::Cf;

use crate::codec::CodecError;

/// A Raft group's id. Inside a group, the openraft node id is the id of
/// the group's replica.
pub type GroupId = u32;

/// The system group: the cluster's metadata (members, slot map, users).
pub const SYSTEM_GROUP: GroupId = keys::SYSTEM_GROUP;

/// Largest group id: every group key's first byte is zero, so node-level
/// keys, which start with a letter, never collide with a group's.
pub const MAX_GROUP_ID: GroupId = (1 << 24) - 1;

/// Bytes of a log key: group, then index.
pub const LOG_KEY_BYTES: usize = 4 + 8;

/// The records a group keeps in its Raft state family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateName {
    /// The vote (synced before any reply).
    Vote,
    /// The last purged log id.
    LastPurged,
    /// The committed log id (a hint for restarts).
    Committed,
    /// What the state machine has applied (written with the data).
    Applied,
    /// A snapshot install under way, and from which file.
    Installing,
}

impl StateName {
    /// The name's bytes after the group id.
    pub fn as_bytes(self) -> &'static [u8] {
        match self {
            StateName::Vote => b"vote",
            StateName::LastPurged => b"last_purged",
            StateName::Committed => b"committed",
            StateName::Applied => b"applied",
            StateName::Installing => b"installing_snapshot",
        }
    }
}

/// The family holding `group`'s replicated data: `system_data` for the
/// system group, `data_kv` for data groups.
pub fn data_cf(group: GroupId) -> Cf {
    if group == SYSTEM_GROUP {
        Cf::SystemData
    } else {
        Cf::DataKv
    }
}

/// The column families and keys of one group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GroupLayout {
    group: GroupId,
}

impl GroupLayout {
    /// The layout of `group`; refused above [`MAX_GROUP_ID`].
    pub fn new(group: GroupId) -> io::Result<Self> {
        if group > MAX_GROUP_ID {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("group id {group} exceeds {MAX_GROUP_ID}"),
            ));
        }
        Ok(Self { group })
    }

    /// The group's id.
    pub fn group(&self) -> GroupId {
        self.group
    }

    fn is_system(&self) -> bool {
        self.group == SYSTEM_GROUP
    }

    /// The family of the group's log.
    pub fn log_cf(&self) -> Cf {
        if self.is_system() {
            Cf::SystemRaftLog
        } else {
            Cf::DataRaftLog
        }
    }

    /// The family of the group's Raft state (vote, applied record, …).
    pub fn state_cf(&self) -> Cf {
        if self.is_system() {
            Cf::SystemRaftState
        } else {
            Cf::DataRaftState
        }
    }

    /// The family of the group's replicated data.
    pub fn data_cf(&self) -> Cf {
        data_cf(self.group)
    }

    /// The key of log index `index`: keys sort by index.
    pub fn log_key(&self, index: u64) -> [u8; LOG_KEY_BYTES] {
        let mut k = [0u8; LOG_KEY_BYTES];
        k[..4].copy_from_slice(&self.group.to_be_bytes());
        k[4..].copy_from_slice(&index.to_be_bytes());
        k
    }

    /// The end (exclusive) of the group's log: after every index,
    /// `u64::MAX` included.
    pub fn log_end(&self) -> [u8; LOG_KEY_BYTES] {
        let mut k = [0u8; LOG_KEY_BYTES];
        // `group <= MAX_GROUP_ID`, so this cannot overflow.
        k[..4].copy_from_slice(&(self.group + 1).to_be_bytes());
        k
    }

    /// The index in a log key of this group.
    pub fn index_of_log_key(&self, key: &[u8]) -> Result<u64, CodecError> {
        let invalid = |detail: String| CodecError::Invalid {
            what: "log key",
            field: "key",
            detail,
        };
        let arr: [u8; LOG_KEY_BYTES] = key
            .try_into()
            .map_err(|_| invalid(format!("{} bytes, expected {LOG_KEY_BYTES}", key.len())))?;
        let (group, index) = arr.split_at(4);
        let group = u32::from_be_bytes(group.try_into().map_err(|_| invalid("group".into()))?);
        if group != self.group {
            return Err(invalid(format!(
                "key of group {group} in the log of group {}",
                self.group
            )));
        }
        Ok(u64::from_be_bytes(
            index.try_into().map_err(|_| invalid("index".into()))?,
        ))
    }

    /// The key of the group's state record `name`.
    pub fn state_key(&self, name: StateName) -> Vec<u8> {
        let name = name.as_bytes();
        let mut k = Vec::with_capacity(4 + name.len());
        k.extend_from_slice(&self.group.to_be_bytes());
        k.extend_from_slice(name);
        k
    }

    /// The range `[start, end)` of the group's data (its state machine's
    /// records, and nothing else).
    pub fn data_range(&self) -> (Vec<u8>, Vec<u8>) {
        keys::group_range(self.group)
    }

    /// Whether `key` lies in the group's data range.
    pub fn owns_data_key(&self, key: &[u8]) -> bool {
        key.len() >= 4 && key[..4] == self.group.to_be_bytes()
    }

    /// The group's snapshot directory under the node's `snapshot_root`.
    pub fn snapshot_dir(&self, snapshot_root: &Path) -> PathBuf {
        snapshot_root.join(self.group.to_string())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_system_group_uses_the_system_families() {
        let s = GroupLayout::new(SYSTEM_GROUP).unwrap();
        assert_eq!(
            (s.log_cf(), s.state_cf(), s.data_cf()),
            (Cf::SystemRaftLog, Cf::SystemRaftState, Cf::SystemData)
        );
        let d = GroupLayout::new(1).unwrap();
        assert_eq!(
            (d.log_cf(), d.state_cf(), d.data_cf()),
            (Cf::DataRaftLog, Cf::DataRaftState, Cf::DataKv)
        );
        assert!(GroupLayout::new(MAX_GROUP_ID).is_ok());
        assert!(GroupLayout::new(MAX_GROUP_ID + 1).is_err());
    }

    #[test]
    fn node_level_keys_never_look_like_a_groups() {
        // The format version shares `data_raft_state` with every group.
        let node_key = crate::KEY_FORMAT_VERSION;
        for group in [0, 1, 2, 0x66, MAX_GROUP_ID] {
            let g = GroupLayout::new(group).unwrap();
            for name in [
                StateName::Vote,
                StateName::LastPurged,
                StateName::Committed,
                StateName::Applied,
                StateName::Installing,
            ] {
                assert_ne!(g.state_key(name).as_slice(), node_key);
                assert_eq!(g.state_key(name)[0], 0);
            }
            assert_eq!(g.log_key(0)[0], 0);
        }
        assert_ne!(node_key[0], 0);
    }

    #[test]
    fn a_key_of_another_group_is_refused() {
        let one = GroupLayout::new(1).unwrap();
        let two = GroupLayout::new(2).unwrap();
        assert!(two.index_of_log_key(&one.log_key(5)).is_err());
        assert!(one.index_of_log_key(&one.log_key(5)[..8]).is_err());
        assert!(!two.owns_data_key(&one.data_range().0));
        assert!(one.owns_data_key(&seshat_kv::keys::meta_key(1, b"k")));
    }

    proptest! {
        /// Log keys round-trip, sort by (group, index), and every key of a
        /// group lies in `[log_key(0), log_end())`.
        #[test]
        fn log_keys_sort_by_group_then_index(
            g1 in 0..=MAX_GROUP_ID, i1 in any::<u64>(),
            g2 in 0..=MAX_GROUP_ID, i2 in any::<u64>(),
        ) {
            let (a, b) = (GroupLayout::new(g1).unwrap(), GroupLayout::new(g2).unwrap());
            prop_assert_eq!(a.index_of_log_key(&a.log_key(i1)).unwrap(), i1);
            prop_assert_eq!(a.log_key(i1).cmp(&b.log_key(i2)), (g1, i1).cmp(&(g2, i2)));
            prop_assert!(a.log_key(0) <= a.log_key(i1) && a.log_key(i1) < a.log_end());
            if g1 != g2 {
                let inside = b.log_key(0) <= a.log_key(i1) && a.log_key(i1) < b.log_end();
                prop_assert!(!inside);
            }
        }
    }
}
