//! Seshat's key-value semantics, independent of Raft and RocksDB.
//!
//! A client write becomes an [`Operation`]: a value that is validated once on
//! the leader, carried in a Raft log entry, and applied by [`apply`] on every
//! replica. `apply` is deterministic: it reads and writes only through the
//! [`KvState`] trait, so the same code runs against RocksDB in the state
//! machine and against [`MemState`] in tests.
//!
//! ```
//! use bytes::Bytes;
//! use seshat_kv::{apply, MemState, Operation, OpResult};
//!
//! let mut state = MemState::default();
//! let set = Operation::set(Bytes::from("k"), Bytes::from("v"));
//! assert_eq!(apply(&set, &mut state).unwrap(), OpResult::Ok);
//! let del = Operation::Del { keys: vec![Bytes::from("k"), Bytes::from("x")] };
//! assert_eq!(apply(&del, &mut state).unwrap(), OpResult::Integer(1));
//! ```

mod operation;
mod state;

pub use operation::{validate, OpResult, Operation, SetCondition};
pub use state::{apply, KvState, MemState};
