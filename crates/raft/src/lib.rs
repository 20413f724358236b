//! Seshat's Raft layer: openraft's type configuration, the RocksDB-backed
//! log store and state machine, the gRPC transport, and the conversions
//! between openraft's types and Seshat's protobuf records.
//!
//! A node hosts several Raft groups ([`GroupId`]; the system group
//! [`SYSTEM_GROUP`] and data groups from 1) in one RocksDB
//! ([`open_node_storage`], [`NodeStorage::open_group`]; keys in
//! [`layout`]) and serves them all from one gRPC service
//! ([`grpc_server::RaftGrpc`]); every RPC names its group and target
//! replica ([`route`]).
//!
//! Durability rules this crate enforces (see `docs/architecture.md`):
//!
//! * a vote is fsynced before `save_vote` returns;
//! * appended entries are written at once (so they are readable) and
//!   openraft is told they are durable only after a WAL fsync; one fsync
//!   serves every append queued behind it (group commit, [`log_store`]);
//! * an apply writes the data, the applied log id, the membership and the
//!   key count in one atomic batch ([`state_machine`]).
//!
//! Nothing a peer sends reaches openraft before it passes the checks of
//! [`peer_input`]: openraft asserts on impossible messages, and an assert
//! stops its core for good.
//!
//! ```no_run
//! use seshat_raft::{open_node_storage, StorageConfig};
//! let node = open_node_storage(&StorageConfig::new("/tmp/seshat-demo".into()))?;
//! let (log, sm) = node.open_group(1)?;
//! # Ok::<(), std::io::Error>(())
//! ```

pub mod codec;
pub mod grpc_server;
pub mod layout;
pub mod log_store;
pub mod network;
pub mod node_storage;
pub mod peer_input;
pub mod peer_tls;
pub mod route;
pub mod rpc_codec;
pub mod snapshot;
pub mod state_machine;
pub mod types;

pub use layout::{GroupId, SYSTEM_GROUP};
pub use log_store::{CacheBudget, LogStore};
pub use node_storage::{open_node_storage, NodeStorage};
pub use state_machine::{StateMachine, StorageConfig};
pub use types::{Raft, SeshatNode, TypeConfig};

/// Generated protobuf types (`proto/seshat.proto`).
pub mod pb {
    #![allow(missing_docs, clippy::all)]
    tonic::include_proto!("seshat.v1");
}

/// The on-disk format this build reads and writes: the key layout of user
/// data and of each group's log and Raft state ([`layout`]), the log entry
/// encoding, the persisted records and the snapshot directories. A data
/// directory in any other format is refused at start.
///
/// 3: ACL users in the data group's range and ACL writes in log entries.
/// 4: Raft log and state keys carry the group id; snapshots live under
/// `snapshots/<group>/` and name their group.
/// 5: every node runs the system group (id 0), which holds the ACL users;
/// the recorded layout names the replication factor and places replicas.
/// 6: log entries carry migration steps (data groups) and system table
/// steps (system group); a data group may hold a `slot-table` record.
/// 7: log entries carry node directory changes (system group); a node
/// records the groups it hosts, and a removed replica leaves its vote.
pub const DATA_FORMAT_VERSION: u32 = 7;
/// Key of the node's format version in `data_raft_state` (a node-level
/// record: group keys start with a zero byte, see [`layout`]).
pub const KEY_FORMAT_VERSION: &[u8] = b"format_version";

/// Opens the node's storage and the log store and state machine of the
/// one data group ([`seshat_kv::keys::DATA_GROUP`]): the node as it runs
/// today. A database in another on-disk format is refused with a message
/// that says so.
pub fn open_storage(
    config: &StorageConfig,
) -> Result<(seshat_storage::Store, LogStore, StateMachine), std::io::Error> {
    let node = open_node_storage(config)?;
    let (log, sm) = node.open_group(seshat_kv::keys::DATA_GROUP)?;
    Ok((node.store().clone(), log, sm))
}

/// Checks (or, in a new database, records) [`DATA_FORMAT_VERSION`].
pub(crate) fn check_format(
    store: &seshat_storage::Store,
    dir: &std::path::Path,
) -> std::io::Result<()> {
    use seshat_storage::{Batch, Cf};
    let refuse = |found: String| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "data directory {} holds Seshat on-disk format {found}; this build reads format \
                 {DATA_FORMAT_VERSION} only and does not migrate: start it with an empty data \
                 directory (or run the Seshat version that wrote it)",
                dir.display()
            ),
        )
    };
    match store
        .get(Cf::DataRaftState, KEY_FORMAT_VERSION)
        .map_err(std::io::Error::other)?
    {
        Some(raw) => {
            let found = <[u8; 4]>::try_from(raw.as_slice())
                .map(u32::from_be_bytes)
                .map_err(|_| refuse(format!("{raw:?} (unreadable)")))?;
            if found == DATA_FORMAT_VERSION {
                Ok(())
            } else {
                Err(refuse(found.to_string()))
            }
        }
        None => {
            for cf in Cf::ALL {
                if store.last(cf).map_err(std::io::Error::other)?.is_some() {
                    return Err(refuse(
                        "1 (from before format versions were recorded)".into(),
                    ));
                }
            }
            let mut batch = Batch::default();
            batch.put(
                Cf::DataRaftState,
                KEY_FORMAT_VERSION,
                &DATA_FORMAT_VERSION.to_be_bytes(),
            );
            store.write(batch, true).map_err(std::io::Error::other)
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod format_tests {
    use super::*;
    use seshat_storage::{Batch, Cf, Store, StoreOptions};

    #[test]
    fn an_older_data_directory_is_refused_with_a_clear_message() {
        let tmp = tempfile::tempdir().unwrap();
        let config = StorageConfig::new(tmp.path().to_path_buf());
        {
            // A format-1 directory: data, no format record.
            let store = Store::open(&config.db_dir(), &StoreOptions::default()).unwrap();
            let mut b = Batch::default();
            b.put(Cf::DataKv, b"kfoo", b"bar");
            store.write(b, true).unwrap();
        }
        let err = open_storage(&config).err().unwrap();
        let text = err.to_string();
        assert!(text.contains("on-disk format 1"), "{text}");
        assert!(text.contains("does not migrate"), "{text}");
    }

    #[test]
    fn a_new_directory_gets_the_current_format_and_reopens() {
        let tmp = tempfile::tempdir().unwrap();
        let config = StorageConfig::new(tmp.path().to_path_buf());
        {
            let (store, _, _) = open_storage(&config).unwrap();
            let v = store.get(Cf::DataRaftState, KEY_FORMAT_VERSION).unwrap();
            assert_eq!(v, Some(DATA_FORMAT_VERSION.to_be_bytes().to_vec()));
        }
        assert!(open_storage(&config).is_ok());
        {
            let store = Store::open(&config.db_dir(), &StoreOptions::default()).unwrap();
            let mut b = Batch::default();
            b.put(Cf::DataRaftState, KEY_FORMAT_VERSION, &99u32.to_be_bytes());
            store.write(b, true).unwrap();
        }
        let text = open_storage(&config).err().unwrap().to_string();
        assert!(text.contains("format 99"), "{text}");
        // The formats before Raft keys carried their group, and before
        // the system group held the users.
        for old in [2u32, 3, 4, 5] {
            {
                let store = Store::open(&config.db_dir(), &StoreOptions::default()).unwrap();
                let mut b = Batch::default();
                b.put(Cf::DataRaftState, KEY_FORMAT_VERSION, &old.to_be_bytes());
                store.write(b, true).unwrap();
            }
            let text = open_storage(&config).err().unwrap().to_string();
            assert!(text.contains(&format!("on-disk format {old};")), "{text}");
            assert!(
                text.contains(&format!("reads format {DATA_FORMAT_VERSION} only")),
                "{text}"
            );
        }
    }
}
