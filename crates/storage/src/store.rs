//! The [`Store`] handle: RocksDB with typed column families and poisoning.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::key_cache::{KeyCache, KeyCacheRules, KeyCacheStats, ReadMark};
use bytes::Bytes;
use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamily, ColumnFamilyDescriptor, DBCompressionType, Direction,
    IteratorMode, Options, ReadOptions, WriteBatch, WriteOptions, DB,
};

/// The column families of a node's database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cf {
    /// Raft log of the system group (group 0): `group | index` → entry.
    SystemRaftLog,
    /// Vote and metadata of the system group: `group | name` → record.
    SystemRaftState,
    /// Cluster metadata kept by the system group.
    SystemData,
    /// Raft logs of the data groups (ids from 1): `group | index` → entry.
    DataRaftLog,
    /// Vote, last purged id, applied state of each data group
    /// (`group | name` → record), and the node's format version.
    DataRaftState,
    /// User keys and values, under their group's prefix.
    DataKv,
}

impl Cf {
    /// Every column family, in creation order.
    pub const ALL: [Cf; 6] = [
        Cf::SystemRaftLog,
        Cf::SystemRaftState,
        Cf::SystemData,
        Cf::DataRaftLog,
        Cf::DataRaftState,
        Cf::DataKv,
    ];

    /// The column family's name on disk.
    pub fn name(self) -> &'static str {
        match self {
            Cf::SystemRaftLog => "system_raft_log",
            Cf::SystemRaftState => "system_raft_state",
            Cf::SystemData => "system_data",
            Cf::DataRaftLog => "data_raft_log",
            Cf::DataRaftState => "data_raft_state",
            Cf::DataKv => "data_kv",
        }
    }
}

/// Errors from the storage layer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StorageError {
    /// RocksDB reported an error for this operation.
    #[error("rocksdb {op} failed: {message}")]
    Rocks {
        /// What was being done (open, write, sync, read, ...).
        op: &'static str,
        /// RocksDB's message.
        message: String,
    },
    /// An earlier write or sync failed; no further writes are accepted.
    #[error("storage is poisoned after an earlier failure ({0}); restart the node once the disk is healthy")]
    Poisoned(String),
    /// A column family is missing from an opened database.
    #[error("column family {0} is missing")]
    MissingColumnFamily(&'static str),
}

impl StorageError {
    fn rocks(op: &'static str, e: rocksdb::Error) -> Self {
        StorageError::Rocks {
            op,
            message: e.into_string(),
        }
    }
}

/// Tunables for opening the database.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Size of the shared block cache, in bytes.
    pub block_cache_bytes: usize,
    /// Size of each memtable, in bytes.
    pub write_buffer_bytes: usize,
    /// Most files RocksDB keeps open: its table cache holds this many
    /// less ten (RocksDB's own allowance for the WAL, MANIFEST, LOG, …),
    /// closing the least recently used table files beyond.
    pub max_open_files: usize,
    /// Budget of the key cache of [`Cf::DataKv`] ([`crate::KeyCache`]),
    /// in bytes; 0 turns it off.
    pub key_cache_bytes: usize,
    /// Which keys the key cache holds; without rules there is no cache.
    pub key_cache_rules: Option<KeyCacheRules>,
}

/// Default block cache: bounded so several nodes fit on one small machine.
pub const DEFAULT_BLOCK_CACHE_BYTES: usize = 64 * 1024 * 1024;
/// Default memtable size.
pub const DEFAULT_WRITE_BUFFER_BYTES: usize = 32 * 1024 * 1024;
/// Default key cache budget (see [`StoreOptions::key_cache_bytes`]).
pub const DEFAULT_KEY_CACHE_BYTES: usize = 64 * 1024 * 1024;
/// Default cap on RocksDB's open files. Table files grow to 64 MiB, so
/// 256 keeps some 16 GiB of tables open; a larger database reopens table
/// files as it reads them (slower, never failing).
pub const DEFAULT_MAX_OPEN_FILES: usize = 256;
/// Descriptors RocksDB may hold beyond `max_open_files` at one time: the
/// files it counts outside the table cache (WAL, MANIFEST, LOG, LOCK,
/// directories), tables being written by flushes and compactions, files
/// read once during recovery, and slack.
pub const ROCKSDB_EXTRA_FILES: usize = 32;
/// Fewest open files RocksDB can work with (it counts ten for itself).
pub const MIN_MAX_OPEN_FILES: usize = 20;

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            block_cache_bytes: DEFAULT_BLOCK_CACHE_BYTES,
            write_buffer_bytes: DEFAULT_WRITE_BUFFER_BYTES,
            max_open_files: DEFAULT_MAX_OPEN_FILES,
            key_cache_bytes: DEFAULT_KEY_CACHE_BYTES,
            key_cache_rules: None,
        }
    }
}

impl StoreOptions {
    /// File descriptors a store opened with these options may hold at
    /// once: the process must keep this many free for it, or a flush, a
    /// WAL rotation or a compaction fails for want of one (and the store
    /// is poisoned).
    pub fn descriptors_needed(&self) -> usize {
        self.max_open_files
            .max(MIN_MAX_OPEN_FILES)
            .saturating_add(ROCKSDB_EXTRA_FILES)
    }
}

/// A key and its value, as read from a column family.
pub type KeyValue = (Vec<u8>, Vec<u8>);

/// A set of changes committed atomically by [`Store::write`].
#[derive(Default)]
pub struct Batch {
    ops: Vec<BatchOp>,
    bytes: usize,
}

enum BatchOp {
    Put(Cf, Vec<u8>, Vec<u8>),
    Delete(Cf, Vec<u8>),
    DeleteRange(Cf, Vec<u8>, Vec<u8>),
}

impl Batch {
    /// Adds a put of `key` → `value` in `cf`.
    pub fn put(&mut self, cf: Cf, key: &[u8], value: &[u8]) {
        self.bytes = self.bytes.saturating_add(key.len() + value.len());
        self.ops
            .push(BatchOp::Put(cf, key.to_vec(), value.to_vec()));
    }

    /// Adds a delete of `key` in `cf`.
    pub fn delete(&mut self, cf: Cf, key: &[u8]) {
        self.bytes = self.bytes.saturating_add(key.len());
        self.ops.push(BatchOp::Delete(cf, key.to_vec()));
    }

    /// Adds a delete of every key in `[from, to)` in `cf`.
    pub fn delete_range(&mut self, cf: Cf, from: &[u8], to: &[u8]) {
        self.bytes = self.bytes.saturating_add(from.len() + to.len());
        self.ops
            .push(BatchOp::DeleteRange(cf, from.to_vec(), to.to_vec()));
    }

    /// Number of operations in the batch.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// True when the batch holds no operation.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Approximate payload size, in bytes.
    pub fn size_bytes(&self) -> usize {
        self.bytes
    }
}

/// A node's database. Cheap to clone; clones share the handle and the
/// poisoned flag.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    db: DB,
    path: PathBuf,
    poisoned: AtomicBool,
    poison_reason: Mutex<Option<String>>,
    /// The cache of [`Cf::DataKv`]'s point reads, if on.
    key_cache: Option<KeyCache>,
}

/// The family the key cache serves.
const CACHED_CF: Cf = Cf::DataKv;

/// A consistent read-only view of the whole database at one instant.
pub struct DbSnapshot<'a> {
    store: &'a Store,
    snap: rocksdb::Snapshot<'a>,
    /// Noted before the snapshot was taken: cached records of that key
    /// group are the snapshot's while no write of the group has begun.
    mark: Option<ReadMark>,
}

impl Store {
    /// Opens (creating if needed) the database at `path` with all column
    /// families of [`Cf::ALL`].
    pub fn open(path: &Path, options: &StoreOptions) -> Result<Store, StorageError> {
        let cache = Cache::new_lru_cache(options.block_cache_bytes);
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(&cache);
        table.set_bloom_filter(10.0, false);
        table.set_cache_index_and_filter_blocks(true);

        let mut cf_opts = Options::default();
        cf_opts.set_block_based_table_factory(&table);
        cf_opts.set_write_buffer_size(options.write_buffer_bytes);
        cf_opts.set_compression_type(DBCompressionType::Lz4);

        let mut db_opts = Options::default();
        db_opts.create_if_missing(true);
        db_opts.create_missing_column_families(true);
        db_opts.set_max_background_jobs(2);
        db_opts.set_max_total_wal_size(256 * 1024 * 1024);
        // Keep RocksDB's own info log small: the node logs what matters.
        db_opts.set_keep_log_file_num(3);
        db_opts.set_max_log_file_size(8 * 1024 * 1024);
        // Bounded, so that the node can reserve RocksDB's descriptors
        // (RocksDB's default, -1, keeps every table file open).
        let max_open_files = options
            .max_open_files
            .clamp(MIN_MAX_OPEN_FILES, i32::MAX as usize);
        db_opts.set_max_open_files(i32::try_from(max_open_files).unwrap_or(i32::MAX));

        // User data: every SET asks whether its key exists (for the key
        // count); a memtable bloom filter answers "no" for new keys without
        // searching the memtable skiplist.
        let mut data_opts = cf_opts.clone();
        data_opts.set_memtable_whole_key_filtering(true);
        data_opts.set_memtable_prefix_bloom_ratio(0.05);

        let cfs = Cf::ALL.iter().map(|cf| {
            let opts = if *cf == Cf::DataKv {
                data_opts.clone()
            } else {
                cf_opts.clone()
            };
            ColumnFamilyDescriptor::new(cf.name(), opts)
        });
        let db = DB::open_cf_descriptors(&db_opts, path, cfs)
            .map_err(|e| StorageError::rocks("open", e))?;
        for cf in Cf::ALL {
            if db.cf_handle(cf.name()).is_none() {
                return Err(StorageError::MissingColumnFamily(cf.name()));
            }
        }
        Ok(Store {
            inner: Arc::new(Inner {
                db,
                path: path.to_path_buf(),
                poisoned: AtomicBool::new(false),
                poison_reason: Mutex::new(None),
                key_cache: options
                    .key_cache_rules
                    .filter(|_| options.key_cache_bytes > 0)
                    .map(|rules| KeyCache::new(options.key_cache_bytes, rules)),
            }),
        })
    }

    /// The database directory.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    fn cf(&self, cf: Cf) -> Result<&ColumnFamily, StorageError> {
        self.inner
            .db
            .cf_handle(cf.name())
            .ok_or(StorageError::MissingColumnFamily(cf.name()))
    }

    /// The reason the store was poisoned, if it was.
    pub fn poison_reason(&self) -> Option<String> {
        if !self.inner.poisoned.load(Ordering::Acquire) {
            return None;
        }
        match self.inner.poison_reason.lock() {
            Ok(r) => r.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Refuses the operation if the store is poisoned.
    pub fn check_healthy(&self) -> Result<(), StorageError> {
        match self.poison_reason() {
            Some(reason) => Err(StorageError::Poisoned(reason)),
            None => Ok(()),
        }
    }

    /// Marks the store poisoned with `reason` (first reason wins).
    pub fn poison(&self, reason: &str) {
        let mut guard = match self.inner.poison_reason.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if guard.is_none() {
            tracing::error!(reason, "storage poisoned: refusing further writes");
            *guard = Some(reason.to_string());
        }
        self.inner.poisoned.store(true, Ordering::Release);
    }

    fn failed(&self, op: &'static str, e: rocksdb::Error) -> StorageError {
        let err = StorageError::rocks(op, e);
        self.poison(&with_descriptor_hint(err.to_string()));
        err
    }

    /// Commits `batch` atomically. With `sync` the WAL is fsynced before
    /// returning. A failure poisons the store.
    pub fn write(&self, batch: Batch, sync: bool) -> Result<(), StorageError> {
        self.check_healthy()?;
        let mut wb = WriteBatch::default();
        for op in &batch.ops {
            match op {
                BatchOp::Put(cf, k, v) => wb.put_cf(self.cf(*cf)?, k, v),
                BatchOp::Delete(cf, k) => wb.delete_cf(self.cf(*cf)?, k),
                BatchOp::DeleteRange(cf, from, to) => wb.delete_range_cf(self.cf(*cf)?, from, to),
            }
        }
        let mut opts = WriteOptions::default();
        opts.set_sync(sync);
        let Some(cache) = &self.inner.key_cache else {
            return self
                .inner
                .db
                .write_opt(wb, &opts)
                .map_err(|e| self.failed("write", e));
        };
        let writing = cache.begin_write(&cached_groups(&batch));
        let written = self.inner.db.write_opt(wb, &opts);
        match &written {
            Ok(()) => {
                for op in batch.ops {
                    match op {
                        BatchOp::Put(CACHED_CF, k, v) => cache.written(k, Some(Bytes::from(v))),
                        BatchOp::Delete(CACHED_CF, k) => cache.written(k, None),
                        BatchOp::DeleteRange(CACHED_CF, from, to) => cache.cleared(&from, &to),
                        _ => {}
                    }
                }
            }
            // What reached RocksDB is unknown: forget everything.
            Err(_) => cache.clear(),
        }
        drop(writing);
        written.map_err(|e| self.failed("write", e))
    }

    /// The key cache's figures, if it is on.
    pub fn key_cache_stats(&self) -> Option<KeyCacheStats> {
        self.inner.key_cache.as_ref().map(KeyCache::stats)
    }

    /// Reads one key, sharing the stored bytes where it can (a cached
    /// record is not copied).
    pub fn get_bytes(&self, cf: Cf, key: &[u8]) -> Result<Option<Bytes>, StorageError> {
        let read = || Ok(self.get_uncached(cf, key)?.map(Bytes::from));
        match &self.inner.key_cache {
            Some(cache) if cf == CACHED_CF && cache.cacheable(key) => match cache.mark(key) {
                Some(mark) => cache.read_through(key, mark, read),
                None => read(),
            },
            _ => read(),
        }
    }

    fn get_uncached(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        self.inner
            .db
            .get_pinned_cf(self.cf(cf)?, key)
            .map(|v| v.map(|v| v.to_vec()))
            .map_err(|e| StorageError::rocks("read", e))
    }

    /// Fsyncs everything written so far to the WAL. Many writers can share
    /// one call (group commit). A failure poisons the store.
    pub fn sync_wal(&self) -> Result<(), StorageError> {
        self.check_healthy()?;
        self.inner
            .db
            .flush_wal(true)
            .map_err(|e| self.failed("sync", e))
    }

    /// Reads one key.
    pub fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        if self.inner.key_cache.is_some() && cf == CACHED_CF {
            return Ok(self.get_bytes(cf, key)?.map(|b| b.to_vec()));
        }
        self.get_uncached(cf, key)
    }

    /// Whether `key` exists, without copying its value out.
    pub fn contains(&self, cf: Cf, key: &[u8]) -> Result<bool, StorageError> {
        if self.inner.key_cache.is_some() && cf == CACHED_CF {
            return Ok(self.get_bytes(cf, key)?.is_some());
        }
        self.inner
            .db
            .get_pinned_cf(self.cf(cf)?, key)
            .map(|v| v.is_some())
            .map_err(|e| StorageError::rocks("read", e))
    }

    /// Reads the entries of `cf` with keys in `[from, to)`, in key order,
    /// stopping after `limit` entries.
    pub fn scan(
        &self,
        cf: Cf,
        from: &[u8],
        to: &[u8],
        limit: usize,
    ) -> Result<Vec<KeyValue>, StorageError> {
        let mut opts = ReadOptions::default();
        opts.set_iterate_upper_bound(to.to_vec());
        let iter = self.inner.db.iterator_cf_opt(
            self.cf(cf)?,
            opts,
            IteratorMode::From(from, Direction::Forward),
        );
        let mut out = Vec::new();
        for item in iter.take(limit) {
            let (k, v) = item.map_err(|e| StorageError::rocks("scan", e))?;
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }

    /// Reads the entries of `cf` with keys in `[from, to)`, in descending
    /// key order, stopping after `limit` entries.
    pub fn scan_rev(
        &self,
        cf: Cf,
        from: &[u8],
        to: &[u8],
        limit: usize,
    ) -> Result<Vec<KeyValue>, StorageError> {
        let iter =
            self.inner
                .db
                .iterator_cf_opt(self.cf(cf)?, bounded(from, to), IteratorMode::End);
        let mut out = Vec::new();
        for item in iter {
            if out.len() >= limit {
                break;
            }
            let (k, v) = item.map_err(|e| StorageError::rocks("scan", e))?;
            if k.as_ref() >= from && k.as_ref() < to {
                out.push((k.to_vec(), v.to_vec()));
            }
        }
        Ok(out)
    }

    /// The last entry of `cf` (largest key), if any.
    pub fn last(&self, cf: Cf) -> Result<Option<KeyValue>, StorageError> {
        let mut iter = self.inner.db.iterator_cf(self.cf(cf)?, IteratorMode::End);
        match iter.next() {
            None => Ok(None),
            Some(item) => {
                let (k, v) = item.map_err(|e| StorageError::rocks("scan", e))?;
                Ok(Some((k.to_vec(), v.to_vec())))
            }
        }
    }

    /// A point-in-time view of the whole database.
    pub fn snapshot(&self) -> DbSnapshot<'_> {
        DbSnapshot {
            store: self,
            snap: self.inner.db.snapshot(),
            mark: None,
        }
    }

    /// A point-in-time view of the whole database whose point reads of
    /// [`Cf::DataKv`] keys in the key group of `group_prefix` (the first
    /// four bytes of its keys) may be answered by the key cache.
    pub fn snapshot_for(&self, group_prefix: &[u8]) -> DbSnapshot<'_> {
        // The mark comes first: if no write of the group begins between
        // it and a lookup, the cache holds what the snapshot does.
        let mark = self
            .inner
            .key_cache
            .as_ref()
            .and_then(|c| c.mark(group_prefix));
        DbSnapshot {
            store: self,
            snap: self.inner.db.snapshot(),
            mark,
        }
    }

    /// A RocksDB integer property of `cf` (e.g. `rocksdb.estimate-num-keys`).
    pub fn property_u64(&self, cf: Cf, name: &str) -> Result<Option<u64>, StorageError> {
        self.inner
            .db
            .property_int_value_cf(self.cf(cf)?, name)
            .map_err(|e| StorageError::rocks("property", e))
    }

    /// Total size of SST and WAL files in the database directory, in bytes.
    pub fn disk_size_bytes(&self) -> u64 {
        dir_size(&self.inner.path)
    }
}

/// Adds what to do to a failure caused by running out of file
/// descriptors, which the node's start-up budget should have prevented.
fn with_descriptor_hint(reason: String) -> String {
    if reason.contains("Too many open files") {
        format!("{reason} (out of file descriptors: raise the open-file limit, `ulimit -n`, or lower --max-clients)")
    } else {
        reason
    }
}

/// Read options bounding an iterator to `[from, to)` in both directions.
fn bounded(from: &[u8], to: &[u8]) -> ReadOptions {
    let mut opts = ReadOptions::default();
    opts.set_iterate_lower_bound(from.to_vec());
    opts.set_iterate_upper_bound(to.to_vec());
    opts
}

fn dir_size(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

/// The key-group counter slots whose cached records `batch` may change:
/// the group of each key put or deleted in [`CACHED_CF`] and of each
/// range delete's start, or every slot when a range delete may reach past
/// its start's group (bounds shorter than a group id, or in two groups).
fn cached_groups(batch: &Batch) -> Vec<usize> {
    let mut slots = Vec::new();
    for op in &batch.ops {
        let key = match op {
            BatchOp::Put(CACHED_CF, k, _) | BatchOp::Delete(CACHED_CF, k) => k,
            BatchOp::DeleteRange(CACHED_CF, from, to) => {
                if from.len() < 4 || from.get(..4) != to.get(..4) {
                    return (0..crate::key_cache::GROUP_SLOTS).collect();
                }
                from
            }
            _ => continue,
        };
        let slot = KeyCache::group_slot(key);
        if !slots.contains(&slot) {
            slots.push(slot);
        }
    }
    slots
}

impl DbSnapshot<'_> {
    /// Reads one key as of the snapshot.
    pub fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        self.snap
            .get_cf(self.store.cf(cf)?, key)
            .map_err(|e| StorageError::rocks("read", e))
    }

    /// [`DbSnapshot::get`], answered by the key cache when it holds the
    /// snapshot's record (see [`Store::snapshot_for`]).
    pub fn get_bytes(&self, cf: Cf, key: &[u8]) -> Result<Option<Bytes>, StorageError> {
        let read = || Ok(self.get(cf, key)?.map(Bytes::from));
        match (&self.store.inner.key_cache, self.mark) {
            (Some(cache), Some(mark))
                if cf == CACHED_CF
                    && cache.cacheable(key)
                    && KeyCache::group_slot(key) == mark.group_slot() =>
            {
                cache.read_through(key, mark, read)
            }
            _ => read(),
        }
    }

    /// Visits the entries of `cf` in `[from, to)` in descending key order
    /// as of the snapshot; `visit` returns `false` to stop early.
    pub fn for_each_rev(
        &self,
        cf: Cf,
        from: &[u8],
        to: &[u8],
        mut visit: impl FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StorageError> {
        let iter =
            self.snap
                .iterator_cf_opt(self.store.cf(cf)?, bounded(from, to), IteratorMode::End);
        for item in iter {
            let (k, v) = item.map_err(|e| StorageError::rocks("scan", e))?;
            if k.as_ref() < from || k.as_ref() >= to {
                continue;
            }
            if !visit(&k, &v) {
                break;
            }
        }
        Ok(())
    }

    /// Visits the entries of `cf` in `[from, to)` in key order as of the
    /// snapshot; `visit` returns `false` to stop early.
    pub fn for_each(
        &self,
        cf: Cf,
        from: &[u8],
        to: &[u8],
        mut visit: impl FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StorageError> {
        let mut opts = ReadOptions::default();
        opts.set_iterate_upper_bound(to.to_vec());
        let iter = self.snap.iterator_cf_opt(
            self.store.cf(cf)?,
            opts,
            IteratorMode::From(from, Direction::Forward),
        );
        for item in iter {
            let (k, v) = item.map_err(|e| StorageError::rocks("scan", e))?;
            if !visit(&k, &v) {
                break;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open_temp() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
        (dir, store)
    }

    fn keys_of_group(k: &[u8]) -> bool {
        // Test rules: keys of at least four bytes are cacheable, but for
        // those ending in `-uncached`.
        k.len() >= 4 && !k.ends_with(b"-uncached")
    }
    fn any_range(_: &[u8], _: &[u8]) -> bool {
        true
    }

    fn open_cached() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let options = StoreOptions {
            key_cache_rules: Some(KeyCacheRules {
                cacheable: keys_of_group,
                range_may_hold: any_range,
            }),
            ..StoreOptions::default()
        };
        let store = Store::open(dir.path(), &options).unwrap();
        (dir, store)
    }

    fn gk(group: u32, name: &str) -> Vec<u8> {
        let mut k = group.to_be_bytes().to_vec();
        k.extend_from_slice(name.as_bytes());
        k
    }

    #[test]
    fn the_key_cache_follows_puts_deletes_and_range_deletes() {
        let (_dir, store) = open_cached();
        let (a, b, c) = (gk(1, "a"), gk(1, "b"), gk(1, "c"));
        assert_eq!(store.get_bytes(Cf::DataKv, &a).unwrap(), None);
        let mut batch = Batch::default();
        batch.put(Cf::DataKv, &a, b"1");
        batch.put(Cf::DataKv, &b, b"2");
        batch.put(Cf::DataKv, &c, b"3");
        store.write(batch, false).unwrap();
        // The negative entry cached by the first read was replaced.
        assert_eq!(store.get(Cf::DataKv, &a).unwrap(), Some(b"1".to_vec()));
        let mut batch = Batch::default();
        batch.delete(Cf::DataKv, &a);
        batch.delete_range(Cf::DataKv, &b, &c);
        batch.put(Cf::DataKv, &c, b"4");
        store.write(batch, false).unwrap();
        assert_eq!(store.get(Cf::DataKv, &a).unwrap(), None);
        assert_eq!(store.get(Cf::DataKv, &b).unwrap(), None);
        assert_eq!(store.get(Cf::DataKv, &c).unwrap(), Some(b"4".to_vec()));
        // A range delete after a put in the same batch wins.
        let mut batch = Batch::default();
        batch.put(Cf::DataKv, &b, b"5");
        batch.delete_range(Cf::DataKv, &a, &gk(1, "z"));
        store.write(batch, false).unwrap();
        for k in [&a, &b, &c] {
            assert_eq!(store.get_bytes(Cf::DataKv, k).unwrap(), None);
            let view = store.snapshot_for(&1u32.to_be_bytes());
            assert_eq!(view.get_bytes(Cf::DataKv, k).unwrap(), None);
        }
        let stats = store.key_cache_stats().unwrap();
        assert!(stats.hits > 0 && stats.misses > 0, "{stats:?}");
    }

    /// Readers on other threads never see a value older than a write that
    /// completed before they began, and one view's reads (cached or not)
    /// are of one state: every batch writes the same number to `a`
    /// (cached) and `b` (never cached: read from the view's snapshot), and
    /// a view must read the same from both.
    #[test]
    fn cached_reads_are_never_stale_and_views_stay_consistent() {
        use std::sync::atomic::AtomicU64;
        let (_dir, store) = open_cached();
        let (a, b) = (gk(7, "a"), gk(7, "b-uncached"));
        let done = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let readers: Vec<_> = (0..3)
            .map(|r| {
                let (store, done, stop) = (store.clone(), done.clone(), stop.clone());
                let (a, b) = (a.clone(), b.clone());
                std::thread::spawn(move || {
                    let num = |v: Option<Bytes>| {
                        v.map_or(0, |v| {
                            std::str::from_utf8(&v).unwrap().parse::<u64>().unwrap()
                        })
                    };
                    let mut reads = 0u64;
                    while !stop.load(Ordering::SeqCst) {
                        let floor = done.load(Ordering::SeqCst);
                        let (x, y) = if r == 0 {
                            let x = num(store.get_bytes(Cf::DataKv, &a).unwrap());
                            (x, x)
                        } else {
                            let view = store.snapshot_for(&7u32.to_be_bytes());
                            // Half the views read b first.
                            if reads.is_multiple_of(2) {
                                let x = num(view.get_bytes(Cf::DataKv, &a).unwrap());
                                (x, num(view.get_bytes(Cf::DataKv, &b).unwrap()))
                            } else {
                                let y = num(view.get_bytes(Cf::DataKv, &b).unwrap());
                                (num(view.get_bytes(Cf::DataKv, &a).unwrap()), y)
                            }
                        };
                        assert!(x >= floor, "stale read: {x} after write {floor} completed");
                        assert_eq!(x, y, "one view read two states");
                        reads += 1;
                    }
                    reads
                })
            })
            .collect();
        for n in 1..=20_000u64 {
            let mut batch = Batch::default();
            batch.put(Cf::DataKv, &a, n.to_string().as_bytes());
            batch.put(Cf::DataKv, &b, n.to_string().as_bytes());
            // A batch with a key of another group too.
            batch.put(Cf::DataKv, &gk(8, "other"), b"x");
            store.write(batch, false).unwrap();
            done.store(n, Ordering::SeqCst);
        }
        stop.store(true, Ordering::SeqCst);
        for r in readers {
            assert!(r.join().unwrap() > 0);
        }
    }

    #[test]
    fn all_six_column_families_exist_after_open_and_reopen() {
        let (dir, store) = open_temp();
        drop(store);
        let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
        let names = DB::list_cf(&Options::default(), dir.path()).unwrap();
        for cf in Cf::ALL {
            assert!(
                names.iter().any(|n| n == cf.name()),
                "{} missing",
                cf.name()
            );
            assert!(store.cf(cf).is_ok());
        }
    }

    #[test]
    fn batch_is_atomic_across_column_families_and_survives_reopen() {
        let (dir, store) = open_temp();
        let mut batch = Batch::default();
        batch.put(Cf::DataKv, b"k1", b"v1");
        batch.put(Cf::DataRaftState, b"applied", b"7");
        batch.delete(Cf::DataKv, b"absent");
        store.write(batch, true).unwrap();
        drop(store);
        let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
        assert_eq!(store.get(Cf::DataKv, b"k1").unwrap(), Some(b"v1".to_vec()));
        assert_eq!(
            store.get(Cf::DataRaftState, b"applied").unwrap(),
            Some(b"7".to_vec())
        );
    }

    #[test]
    fn scan_respects_bounds_and_limit_and_last_finds_largest() {
        let (_dir, store) = open_temp();
        let mut batch = Batch::default();
        for i in 0u64..10 {
            batch.put(Cf::DataRaftLog, &i.to_be_bytes(), b"e");
        }
        store.write(batch, false).unwrap();
        let got = store
            .scan(Cf::DataRaftLog, &2u64.to_be_bytes(), &8u64.to_be_bytes(), 3)
            .unwrap();
        let keys: Vec<_> = got.iter().map(|(k, _)| k.clone()).collect();
        assert_eq!(
            keys,
            vec![
                2u64.to_be_bytes().to_vec(),
                3u64.to_be_bytes().to_vec(),
                4u64.to_be_bytes().to_vec()
            ]
        );
        let (last, _) = store.last(Cf::DataRaftLog).unwrap().unwrap();
        assert_eq!(last, 9u64.to_be_bytes().to_vec());
        let mut batch = Batch::default();
        batch.delete_range(Cf::DataRaftLog, &0u64.to_be_bytes(), &5u64.to_be_bytes());
        store.write(batch, false).unwrap();
        let rest = store.scan(Cf::DataRaftLog, &[], &[0xff; 9], 100).unwrap();
        assert_eq!(rest.len(), 5);
    }

    #[test]
    fn poisoned_store_refuses_writes_and_says_why() {
        let (_dir, store) = open_temp();
        store.poison("simulated fsync failure");
        let mut batch = Batch::default();
        batch.put(Cf::DataKv, b"k", b"v");
        let err = store.write(batch, true).unwrap_err();
        assert!(matches!(err, StorageError::Poisoned(_)));
        assert!(err.to_string().contains("simulated fsync failure"));
        assert!(store.sync_wal().is_err());
        // Reads still work, so the operator can inspect the node.
        assert_eq!(store.get(Cf::DataKv, b"k").unwrap(), None);
    }

    #[test]
    fn reverse_scans_respect_bounds_and_limit() {
        let (_tmp, store) = open_temp();
        let mut b = Batch::default();
        for k in [b"a", b"b", b"c", b"d"] {
            b.put(Cf::DataKv, k, b"v");
        }
        store.write(b, false).unwrap();
        let keys = |rows: Vec<KeyValue>| rows.into_iter().map(|(k, _)| k).collect::<Vec<_>>();
        assert_eq!(
            keys(store.scan_rev(Cf::DataKv, b"b", b"d", 10).unwrap()),
            vec![b"c".to_vec(), b"b".to_vec()]
        );
        assert_eq!(
            keys(store.scan_rev(Cf::DataKv, b"a", b"z", 1).unwrap()),
            vec![b"d".to_vec()]
        );
        let view = store.snapshot();
        let mut seen = Vec::new();
        view.for_each_rev(Cf::DataKv, b"a", b"c", |k, _| {
            seen.push(k.to_vec());
            true
        })
        .unwrap();
        assert_eq!(seen, vec![b"b".to_vec(), b"a".to_vec()]);
    }

    #[test]
    fn snapshot_does_not_see_later_writes() {
        let (_dir, store) = open_temp();
        let mut batch = Batch::default();
        batch.put(Cf::DataKv, b"a", b"1");
        store.write(batch, false).unwrap();
        let snap = store.snapshot();
        let mut batch = Batch::default();
        batch.put(Cf::DataKv, b"b", b"2");
        store.write(batch, false).unwrap();
        let mut seen = Vec::new();
        snap.for_each(Cf::DataKv, &[], &[0xff], |k, _| {
            seen.push(k.to_vec());
            true
        })
        .unwrap();
        assert_eq!(seen, vec![b"a".to_vec()]);
        assert_eq!(snap.get(Cf::DataKv, b"b").unwrap(), None);
    }
}
