//! Seshat's data model, independent of Raft, RocksDB and the protocol.
//!
//! - [`keys`] is the one module that knows how user data is laid out in
//!   the store (group | slot | key prefixes, the expiry index);
//! - [`Record`] is a key's metadata record (type, expiry, modification
//!   index, a string's bytes inline);
//! - [`Keyspace`] reads and writes typed records over any ordered byte
//!   store ([`RawKv`]), keeping the expiry index and key count in step;
//! - [`WriteBatch`] is what a Raft log entry of client writes carries.
//!
//! The same code runs against RocksDB in the state machine and against
//! [`MemKv`] in tests.
//!
//! ```
//! use bytes::Bytes;
//! use seshat_kv::{keys::DATA_GROUP, Counts, Keyspace, MemKv, Record};
//!
//! let mut kv = MemKv::default();
//! let mut space = Keyspace::new(&mut kv, DATA_GROUP, 1_000, 1, Counts::default());
//! let mut record = Record::string(Bytes::from("v"));
//! record.expire_at_ms = 2_000;
//! space.put(b"k", record)?;
//! assert!(space.get(b"k")?.is_some());
//! let counts = space.counts();
//! let mut later = Keyspace::new(&mut kv, DATA_GROUP, 2_000, 2, counts);
//! assert!(later.get(b"k")?.is_none(), "expired keys are absent");
//! # Ok::<(), seshat_kv::KvError>(())
//! ```

mod entry;
pub mod keys;
mod keyspace;
mod raw;
mod record;
mod user;

pub use entry::{
    args_size, AclWrite, Argv, EntryRng, SystemWrite, UserDef, Watch, Write, WriteBatch,
    ARG_FRAMING_BYTES, MAX_MIGRATION_WRITE_BYTES,
};
pub use keyspace::{users_in, Counts, Keyspace};
pub use raw::{KvError, MemKv, RawKv};
pub use record::{Kind, Record, COMPOSITE_PAYLOAD_BYTES, RECORD_HEADER_BYTES};
pub use user::{UserRecord, USER_RECORD_VERSION};
