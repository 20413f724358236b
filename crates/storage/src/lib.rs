//! RocksDB storage for one Seshat node.
//!
//! One database per node holds six column families ([`Cf`]): the Raft log,
//! Raft state and data of the system group (reserved for sharding) and of the
//! data group. Everything else in Seshat reaches RocksDB only through
//! [`Store`], which adds two guarantees on top of RocksDB:
//!
//! * **Atomic batches**: [`Batch`] collects puts and deletes across column
//!   families and [`Store::write`] commits them all or none.
//! * **Poisoning**: the first failed write or sync marks the store poisoned.
//!   Every later write is refused with [`StorageError::Poisoned`] naming the
//!   original failure, so a node whose disk failed stops accepting writes
//!   instead of guessing what reached the disk.
//!
//! ```no_run
//! use seshat_storage::{Batch, Cf, Store, StoreOptions};
//! let store = Store::open("/tmp/seshat-doc".as_ref(), &StoreOptions::default())?;
//! let mut batch = Batch::default();
//! batch.put(Cf::DataKv, b"k", b"v");
//! store.write(batch, true)?;
//! assert_eq!(store.get(Cf::DataKv, b"k")?.as_deref(), Some(&b"v"[..]));
//! # Ok::<(), seshat_storage::StorageError>(())
//! ```

mod key_cache;
mod store;

pub use key_cache::{KeyCache, KeyCacheRules, KeyCacheStats};
pub use store::{
    Batch, Cf, DbSnapshot, KeyValue, StorageError, Store, StoreOptions, DEFAULT_KEY_CACHE_BYTES,
    DEFAULT_MAX_OPEN_FILES, MIN_MAX_OPEN_FILES, ROCKSDB_EXTRA_FILES,
};
