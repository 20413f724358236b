//! Seshat's Raft layer: openraft's type configuration, the RocksDB-backed
//! log store and state machine, and the conversions between openraft's types
//! and Seshat's protobuf records.
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
//! use seshat_raft::{open_storage, StorageConfig};
//! let (store, log, sm) = open_storage(&StorageConfig::new("/tmp/seshat-demo".into()))?;
//! # Ok::<(), std::io::Error>(())
//! ```

pub mod codec;
pub mod grpc_server;
pub mod log_store;
pub mod network;
pub mod peer_input;
pub mod rpc_codec;
pub mod snapshot;
pub mod state_machine;
pub mod types;

pub use log_store::LogStore;
pub use state_machine::{StateMachine, StorageConfig};
pub use types::{Raft, SeshatNode, TypeConfig};

/// Generated protobuf types (`proto/seshat.proto`).
pub mod pb {
    #![allow(missing_docs, clippy::all)]
    tonic::include_proto!("seshat.v1");
}

/// Opens the node's database and builds the log store and state machine on
/// it.
pub fn open_storage(
    config: &StorageConfig,
) -> Result<(seshat_storage::Store, LogStore, StateMachine), std::io::Error> {
    let store = seshat_storage::Store::open(&config.db_dir(), &config.store_options)
        .map_err(std::io::Error::other)?;
    let log = LogStore::new(store.clone())?;
    let sm = StateMachine::open(store.clone(), config)?;
    Ok((store, log, sm))
}
