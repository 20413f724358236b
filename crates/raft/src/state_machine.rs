//! The replicated state machine of one Raft group on RocksDB: the group's
//! range of `data_kv` (`system_data` for the system group) and its applied
//! record in `*_raft_state` ([`crate::layout`]).
//!
//! Each call to `apply` turns its entries into one atomic write batch: the
//! key-value changes, the new applied log id, the membership and the key
//! count commit together, so after a crash the data and the applied index
//! always agree. Replies are sent only after the batch is written, so a
//! client that saw `OK` reads its own write.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use futures::{Stream, TryStreamExt};
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder};
use prost::Message;
use seshat_commands::acl::{Users, MAX_USERS};
use seshat_commands::GroupState;
use seshat_common::stages::{self, Stage};
use seshat_kv::keys;
use seshat_kv::{Keyspace, KvError, RawKv};
use seshat_migration::{SlotTable, SystemTable};
use seshat_protocol_resp::Frame;
use seshat_storage::{Batch, Cf, DbSnapshot, KeyCacheRules, Store, StoreOptions};

use crate::codec::{self, RECORD_VERSION};
use crate::layout::{GroupId, GroupLayout, StateName};
use crate::log_store::CacheBudget;
use crate::pb;
use crate::snapshot::{self, SnapshotFile};
use crate::types::{LogId, SnapshotMeta, StoredMembership, TypeConfig};

/// Most entries applied in one write batch; bounds batch memory.
pub const MAX_ENTRIES_PER_APPLY_BATCH: usize = 4096;

/// The key cache keeps the metadata records of user keys: what a `SET`
/// reads (its key's old record) and writes, and what a `GET` reads.
/// Composite values' elements stay out, so deleting one (a range delete of
/// its elements) never has to search the cache.
pub const KEY_CACHE_RULES: KeyCacheRules = KeyCacheRules {
    cacheable: seshat_kv::keys::is_meta_key,
    range_may_hold: seshat_kv::keys::range_may_hold_meta,
};

/// Where a node keeps its files and how RocksDB is tuned.
#[derive(Debug, Clone)]
pub struct StorageConfig {
    /// The node's data directory.
    pub data_dir: PathBuf,
    /// RocksDB tunables.
    pub store_options: StoreOptions,
    /// What the log entry caches of all the node's groups may hold.
    pub log_cache: CacheBudget,
}

impl StorageConfig {
    /// Default tunables for `data_dir`.
    pub fn new(data_dir: PathBuf) -> Self {
        Self {
            data_dir,
            store_options: StoreOptions {
                key_cache_rules: Some(KEY_CACHE_RULES),
                ..StoreOptions::default()
            },
            log_cache: CacheBudget::default(),
        }
    }

    /// The RocksDB directory.
    pub fn db_dir(&self) -> PathBuf {
        self.data_dir.join("db")
    }

    /// The node's snapshot directory: each group has its own below it
    /// ([`Self::group_snapshot_dir`]).
    pub fn snapshot_dir(&self) -> PathBuf {
        self.data_dir.join("snapshots")
    }

    /// The snapshot directory of `layout`'s group.
    pub fn group_snapshot_dir(&self, layout: GroupLayout) -> PathBuf {
        layout.snapshot_dir(&self.snapshot_dir())
    }
}

/// Counters the server reads without going through Raft.
#[derive(Debug, Default)]
pub struct SmStats {
    /// Index of the last applied entry.
    pub applied_index: AtomicU64,
    /// Number of user keys.
    pub key_count: AtomicU64,
    /// Number of user keys with an expiry.
    pub expiring_count: AtomicU64,
    /// Time of the last applied write entry (Unix ms).
    pub last_now_ms: AtomicU64,
    /// Index of the newest snapshot (0 = none).
    pub snapshot_index: AtomicU64,
    /// Size of the newest snapshot file, in bytes.
    pub snapshot_bytes: AtomicU64,
    /// Snapshots built since start.
    pub snapshots_built: AtomicU64,
    /// Snapshots installed from a leader since start.
    pub snapshots_installed: AtomicU64,
    /// Total time spent building snapshots, in microseconds.
    pub snapshot_build_micros: AtomicU64,
}

/// The state machine of one group, handed to openraft.
pub struct StateMachine {
    store: Store,
    layout: GroupLayout,
    snapshot_dir: PathBuf,
    /// Held by a snapshot install for its whole run and by a snapshot
    /// build while it reads the database and replaces files, so a build
    /// never sees a half-loaded snapshot nor deletes an install's files.
    snapshot_files: Arc<tokio::sync::Mutex<()>>,
    applied: Option<LogId>,
    membership: StoredMembership,
    group: GroupState,
    stats: Arc<SmStats>,
    users: UsersWatch,
    table: TableWatch,
    system_table: SystemWatch,
}

/// This node's copy of the replicated ACL users, rebuilt from storage at
/// start, after every applied batch that changed them (before its
/// replies are sent) and after a snapshot install. Connections hold a
/// receiver: `has_changed` is one atomic load per command.
pub type UsersWatch = Arc<tokio::sync::watch::Sender<Arc<Users>>>;

/// This node's copy of the group's slot table (`None`: the group never
/// took part in a migration), published at start, after every applied
/// batch that held a migration step (before its replies are sent) and
/// after a snapshot install.
pub type TableWatch = Arc<tokio::sync::watch::Sender<Option<Arc<SlotTable>>>>;

/// This node's copy of the system group's [`SystemTable`] (`None` on a
/// data group, or before the bootstrap), reloaded from storage at start,
/// after every applied batch that held a system write (before its
/// replies are sent) and after a snapshot install.
pub type SystemWatch = Arc<tokio::sync::watch::Sender<Option<Arc<SystemTable>>>>;

/// The stored ACL users of `group`, as one consistent read. Users live
/// in the system group; other groups have none.
pub fn load_users(store: &Store, group: GroupId) -> io::Result<Users> {
    let mut view = ReadView::new(store, group);
    let records = seshat_kv::users_in(&mut view, group, MAX_USERS + 1).map_err(io::Error::other)?;
    Users::from_records(records).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// The stored slot table of data group `group` (`None` if it never took
/// part in a migration), as one consistent read.
pub fn load_slot_table(store: &Store, group: GroupId) -> io::Result<Option<SlotTable>> {
    let mut view = ReadView::new(store, group);
    let mut db = Keyspace::new(&mut view, group, 0, 0, seshat_kv::Counts::default());
    seshat_commands::migration::load_table(&mut db).map_err(io::Error::other)
}

/// The stored system table of `group` (`None` unless it is the system
/// group and has been bootstrapped), as one consistent read.
pub fn load_system_table(store: &Store, group: GroupId) -> io::Result<Option<SystemTable>> {
    let mut view = ReadView::new(store, group);
    let mut db = Keyspace::new(&mut view, group, 0, 0, seshat_kv::Counts::default());
    seshat_commands::migration::load_system_table(&mut db).map_err(io::Error::other)
}

/// The applied index, an FNV-1a hash of every record of `group`
/// (metadata, sub-keys and the expiry index), and the number of keys, all
/// read from one consistent view of the database.
pub fn state_digest(store: &Store, group: GroupId) -> io::Result<(u64, u64, u64)> {
    const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
    let layout = GroupLayout::new(group)?;
    let view = store.snapshot();
    let applied = match view
        .get(layout.state_cf(), &layout.state_key(StateName::Applied))
        .map_err(io::Error::other)?
    {
        Some(b) => codec::decode_applied(&b)?
            .last_applied
            .map_or(0, |l| l.index),
        None => 0,
    };
    let mut hash = FNV_OFFSET;
    let mut keys = 0u64;
    let mut feed = |bytes: &[u8]| {
        for b in (bytes.len() as u64).to_le_bytes().iter().chain(bytes) {
            hash ^= u64::from(*b);
            hash = hash.wrapping_mul(FNV_PRIME);
        }
    };
    let (start, end) = layout.data_range();
    view.for_each(layout.data_cf(), &start, &end, |k, v| {
        feed(k);
        feed(v);
        if keys::parse_meta_key(group, k).is_some() {
            keys += 1;
        }
        true
    })
    .map_err(io::Error::other)?;
    Ok((applied, hash, keys))
}

fn kv_error(e: seshat_storage::StorageError) -> KvError {
    KvError::Storage(e.to_string())
}

/// A read-only [`RawKv`] over one consistent view of the database: reads
/// run on it after their barrier.
pub struct ReadView<'a> {
    view: DbSnapshot<'a>,
    /// The family `group`'s data lives in.
    cf: Cf,
}

impl<'a> ReadView<'a> {
    /// A view of `store` as of now, reading the family that holds
    /// `group`'s data (`system_data` for the system group, `data_kv` for
    /// data groups).
    pub fn new(store: &'a Store, group: GroupId) -> Self {
        Self {
            view: store.snapshot_for(&group.to_be_bytes()),
            cf: crate::layout::data_cf(group),
        }
    }
}

impl RawKv for ReadView<'_> {
    fn get(&mut self, key: &[u8]) -> Result<Option<Bytes>, KvError> {
        self.view.get_bytes(self.cf, key).map_err(kv_error)
    }

    fn put(&mut self, _: Vec<u8>, _: Vec<u8>) -> Result<(), KvError> {
        Err(KvError::ReadOnly)
    }

    fn delete(&mut self, _: Vec<u8>) -> Result<(), KvError> {
        Err(KvError::ReadOnly)
    }

    fn delete_range(&mut self, _: Vec<u8>, _: Vec<u8>) -> Result<(), KvError> {
        Err(KvError::ReadOnly)
    }

    fn scan(
        &mut self,
        from: &[u8],
        to: &[u8],
        limit: usize,
    ) -> Result<Vec<(Bytes, Bytes)>, KvError> {
        self.collect(from, to, limit, false)
    }

    fn scan_rev(
        &mut self,
        from: &[u8],
        to: &[u8],
        limit: usize,
    ) -> Result<Vec<(Bytes, Bytes)>, KvError> {
        self.collect(from, to, limit, true)
    }
}

impl ReadView<'_> {
    /// Up to `limit` pairs of `[from, to)`, ascending or (`rev`) descending.
    fn collect(
        &self,
        from: &[u8],
        to: &[u8],
        limit: usize,
        rev: bool,
    ) -> Result<Vec<(Bytes, Bytes)>, KvError> {
        let mut out = Vec::new();
        if limit == 0 || from >= to {
            return Ok(out);
        }
        let visit = |k: &[u8], v: &[u8]| {
            out.push((Bytes::copy_from_slice(k), Bytes::copy_from_slice(v)));
            out.len() < limit
        };
        let visited = if rev {
            self.view.for_each_rev(self.cf, from, to, visit)
        } else {
            self.view.for_each(self.cf, from, to, visit)
        };
        visited.map_err(kv_error)?;
        Ok(out)
    }
}

impl StateMachine {
    /// Loads the applied state of `layout`'s group from `store`, first
    /// finishing a snapshot install a crash interrupted and removing what
    /// unfinished transfers left in `snapshot_dir` (the group's own).
    pub(crate) fn open(
        store: Store,
        layout: GroupLayout,
        snapshot_dir: PathBuf,
    ) -> io::Result<Self> {
        resume_interrupted_install(&store, layout, &snapshot_dir)?;
        snapshot::clear_incoming(&snapshot_dir)?;
        let record = match store
            .get(layout.state_cf(), &layout.state_key(StateName::Applied))
            .map_err(io::Error::other)?
        {
            Some(b) => codec::decode_applied(&b)?,
            None => pb::AppliedRecord {
                version: RECORD_VERSION,
                ..Default::default()
            },
        };
        let (applied, membership) = applied_from_record(&record)?;
        let stats = Arc::new(SmStats::default());
        stats
            .applied_index
            .store(applied.map_or(0, |l| l.index), Ordering::Release);
        stats.key_count.store(record.key_count, Ordering::Release);
        stats
            .expiring_count
            .store(record.expiring_count, Ordering::Release);
        stats
            .last_now_ms
            .store(record.last_now_ms, Ordering::Release);
        let users = Arc::new(tokio::sync::watch::Sender::new(Arc::new(load_users(
            &store,
            layout.group(),
        )?)));
        let group = group_state(&record, load_slot_table(&store, layout.group())?);
        let table = Arc::new(tokio::sync::watch::Sender::new(group.table.clone()));
        let system_table = Arc::new(tokio::sync::watch::Sender::new(
            load_system_table(&store, layout.group())?.map(Arc::new),
        ));
        let sm = Self {
            store,
            layout,
            snapshot_dir,
            snapshot_files: Arc::new(tokio::sync::Mutex::new(())),
            applied,
            membership,
            group,
            stats,
            users,
            table,
            system_table,
        };
        if let Some(path) = snapshot::newest_snapshot(&sm.snapshot_dir)? {
            let reader = snapshot::SnapshotReader::open(&path)?;
            sm.record_snapshot_stats(&reader.header, &path);
        }
        Ok(sm)
    }

    /// The group this state machine belongs to.
    pub fn group(&self) -> GroupId {
        self.layout.group()
    }

    /// Shared counters for INFO and DBSIZE.
    pub fn stats(&self) -> Arc<SmStats> {
        self.stats.clone()
    }

    /// This node's copy of the ACL users.
    pub fn users(&self) -> UsersWatch {
        self.users.clone()
    }

    /// Rebuilds the copy of the ACL users from storage.
    fn reload_users(&self) -> io::Result<()> {
        let users = load_users(&self.store, self.layout.group())?;
        self.users.send_replace(Arc::new(users));
        Ok(())
    }

    /// This node's copy of the group's slot table.
    pub fn slot_table(&self) -> TableWatch {
        self.table.clone()
    }

    /// This node's copy of the system table (system group only).
    pub fn system_table(&self) -> SystemWatch {
        self.system_table.clone()
    }

    /// Publishes the slot table apply holds (the one just committed).
    fn publish_table(&self) {
        self.table.send_replace(self.group.table.clone());
    }

    /// Rebuilds the copy of the system table from storage.
    fn reload_system_table(&self) -> io::Result<()> {
        let table = load_system_table(&self.store, self.layout.group())?;
        self.system_table.send_replace(table.map(Arc::new));
        Ok(())
    }

    fn record_snapshot_stats(&self, header: &pb::SnapshotHeader, path: &std::path::Path) {
        let index = header
            .applied
            .as_ref()
            .and_then(|a| a.last_applied.as_ref())
            .map_or(0, |l| l.index);
        let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        self.stats.snapshot_index.store(index, Ordering::Release);
        self.stats.snapshot_bytes.store(size, Ordering::Release);
    }

    fn applied_record(&self) -> pb::AppliedRecord {
        pb::AppliedRecord {
            version: RECORD_VERSION,
            last_applied: self.applied.as_ref().map(codec::log_id_to_pb),
            membership_log_id: self.membership.log_id().as_ref().map(codec::log_id_to_pb),
            membership: Some(codec::membership_to_pb(self.membership.membership())),
            key_count: self.group.counts.keys,
            expiring_count: self.group.counts.expiring,
            last_now_ms: self.group.last_now_ms,
        }
    }

    fn publish(&self) {
        self.stats
            .applied_index
            .store(self.applied.map_or(0, |l| l.index), Ordering::Release);
        self.stats
            .key_count
            .store(self.group.counts.keys, Ordering::Release);
        self.stats
            .expiring_count
            .store(self.group.counts.expiring, Ordering::Release);
        self.stats
            .last_now_ms
            .store(self.group.last_now_ms, Ordering::Release);
    }
}

/// The group's state as the applied record and the stored slot table
/// give it.
fn group_state(record: &pb::AppliedRecord, table: Option<SlotTable>) -> GroupState {
    GroupState {
        counts: seshat_kv::Counts {
            keys: record.key_count,
            expiring: record.expiring_count,
        },
        last_now_ms: record.last_now_ms,
        table: table.map(Arc::new),
    }
}

fn applied_from_record(r: &pb::AppliedRecord) -> io::Result<(Option<LogId>, StoredMembership)> {
    let applied = r.last_applied.as_ref().map(codec::log_id_from_pb);
    let membership = match &r.membership {
        Some(m) => StoredMembership::new(
            r.membership_log_id.as_ref().map(codec::log_id_from_pb),
            codec::membership_from_pb("applied record", m)?,
        ),
        None => StoredMembership::default(),
    };
    Ok((applied, membership))
}

/// Fewest keys the apply overlay reads from RocksDB per step of a scan.
const MIN_SCAN_STEP: usize = 64;

/// One apply batch: pending changes that later commands in the same batch
/// must see before they reach RocksDB.
struct ApplyBatch<'a> {
    store: &'a Store,
    /// The family of the group's data.
    cf: Cf,
    batch: Batch,
    /// Keys written (`Some`) or deleted (`None`) by this batch.
    overlay: BTreeMap<Vec<u8>, Option<Bytes>>,
    /// Ranges deleted by this batch, as `[start, end)`; overlay entries
    /// written after a range delete take precedence.
    cleared: Vec<(Vec<u8>, Vec<u8>)>,
    /// What this batch read from RocksDB, so a key read twice (a `SET`
    /// reads the old record, then `Keyspace::put` reads it again) costs
    /// one memtable search. Consulted after `overlay` and `cleared`, which
    /// hold every change since the read.
    read: HashMap<Vec<u8>, Option<Bytes>>,
}

impl<'a> ApplyBatch<'a> {
    fn new(store: &'a Store, cf: Cf) -> Self {
        Self {
            store,
            cf,
            batch: Batch::default(),
            overlay: BTreeMap::new(),
            cleared: Vec::new(),
            read: HashMap::new(),
        }
    }

    /// The start of a cleared range that covers the keys just below `end`
    /// (so every key in `[start, end)` is cleared), if one does.
    fn cleared_below(&self, end: &[u8]) -> Option<&[u8]> {
        self.cleared
            .iter()
            .filter(|(s, e)| s.as_slice() < end && end <= e.as_slice())
            .map(|(s, _)| s.as_slice())
            .min()
    }

    /// The end of a cleared range containing `key`, if one does.
    fn cleared_until(&self, key: &[u8]) -> Option<&[u8]> {
        self.cleared
            .iter()
            .filter(|(s, e)| s.as_slice() <= key && key < e.as_slice())
            .map(|(_, e)| e.as_slice())
            .max()
    }
}

impl RawKv for ApplyBatch<'_> {
    fn get(&mut self, key: &[u8]) -> Result<Option<Bytes>, KvError> {
        if let Some(v) = self.overlay.get(key) {
            return Ok(v.clone());
        }
        if self.cleared_until(key).is_some() {
            return Ok(None);
        }
        if let Some(v) = self.read.get(key) {
            return Ok(v.clone());
        }
        let value = self.store.get_bytes(self.cf, key).map_err(kv_error)?;
        self.read.insert(key.to_vec(), value.clone());
        Ok(value)
    }

    fn put(&mut self, key: Vec<u8>, value: Vec<u8>) -> Result<(), KvError> {
        self.batch.put(self.cf, &key, &value);
        self.overlay.insert(key, Some(Bytes::from(value)));
        Ok(())
    }

    fn delete(&mut self, key: Vec<u8>) -> Result<(), KvError> {
        self.batch.delete(self.cf, &key);
        self.overlay.insert(key, None);
        Ok(())
    }

    fn delete_range(&mut self, from: Vec<u8>, to: Vec<u8>) -> Result<(), KvError> {
        // An empty or inverted range deletes nothing (and must not reach
        // the overlay's ordered range, which would panic).
        if from >= to {
            return Ok(());
        }
        self.batch.delete_range(self.cf, &from, &to);
        let doomed: Vec<Vec<u8>> = self
            .overlay
            .range(from.clone()..to.clone())
            .map(|(k, _)| k.clone())
            .collect();
        for k in doomed {
            self.overlay.remove(&k);
        }
        self.cleared.push((from, to));
        Ok(())
    }

    /// The first `limit` pairs of the store merged with this batch's
    /// changes: store entries hidden by a delete or a cleared range are
    /// skipped (jumping over cleared ranges), overlay writes are added.
    fn scan(
        &mut self,
        from: &[u8],
        to: &[u8],
        limit: usize,
    ) -> Result<Vec<(Bytes, Bytes)>, KvError> {
        if limit == 0 || from >= to {
            return Ok(Vec::new());
        }
        let mut stored: Vec<(Bytes, Bytes)> = Vec::new();
        let mut pos = from.to_vec();
        while stored.len() < limit && pos.as_slice() < to {
            if let Some(end) = self.cleared_until(&pos) {
                pos = end.to_vec();
                continue;
            }
            // Read a few keys at least: entries this batch deleted are
            // skipped, and one-key steps past them would cost a seek each.
            let step = limit.max(MIN_SCAN_STEP);
            let chunk = self.store.scan(self.cf, &pos, to, step).map_err(kv_error)?;
            let full = chunk.len() == step;
            let mut next = None;
            for (k, v) in chunk {
                let hidden = self.overlay.contains_key(&k) || self.cleared_until(&k).is_some();
                if !hidden && stored.len() < limit {
                    stored.push((Bytes::from(k.clone()), Bytes::from(v)));
                }
                next = Some(k);
            }
            match (full, next) {
                (true, Some(mut last)) => {
                    last.push(0);
                    pos = last;
                }
                _ => break,
            }
        }
        let written = self
            .overlay
            .range(from.to_vec()..to.to_vec())
            .filter_map(|(k, v)| v.as_ref().map(|v| (Bytes::from(k.clone()), v.clone())))
            .take(limit);
        let mut merged: Vec<(Bytes, Bytes)> = stored.into_iter().chain(written).collect();
        merged.sort_by(|a, b| a.0.cmp(&b.0));
        merged.truncate(limit);
        Ok(merged)
    }

    /// [`Self::scan`] in descending order: cleared ranges are jumped over
    /// downwards.
    fn scan_rev(
        &mut self,
        from: &[u8],
        to: &[u8],
        limit: usize,
    ) -> Result<Vec<(Bytes, Bytes)>, KvError> {
        if limit == 0 || from >= to {
            return Ok(Vec::new());
        }
        let mut stored: Vec<(Bytes, Bytes)> = Vec::new();
        let mut end = to.to_vec();
        while stored.len() < limit && from < end.as_slice() {
            if let Some(start) = self.cleared_below(&end) {
                end = start.max(from).to_vec();
                continue;
            }
            let step = limit.max(MIN_SCAN_STEP);
            let chunk = self
                .store
                .scan_rev(self.cf, from, &end, step)
                .map_err(kv_error)?;
            let full = chunk.len() == step;
            let mut lowest = None;
            for (k, v) in chunk {
                let hidden = self.overlay.contains_key(&k) || self.cleared_until(&k).is_some();
                if !hidden && stored.len() < limit {
                    stored.push((Bytes::from(k.clone()), Bytes::from(v)));
                }
                lowest = Some(k);
            }
            match (full, lowest) {
                (true, Some(low)) => end = low,
                _ => break,
            }
        }
        let written = self
            .overlay
            .range(from.to_vec()..to.to_vec())
            .rev()
            .filter_map(|(k, v)| v.as_ref().map(|v| (Bytes::from(k.clone()), v.clone())))
            .take(limit);
        let mut merged: Vec<(Bytes, Bytes)> = stored.into_iter().chain(written).collect();
        merged.sort_by(|a, b| b.0.cmp(&a.0));
        merged.truncate(limit);
        Ok(merged)
    }
}

type Responder = openraft::storage::ApplyResponder<TypeConfig>;

/// What an apply batch changed that the node keeps a copy of.
#[derive(Debug, Clone, Copy, Default)]
struct Changed {
    users: bool,
    table: bool,
    system_table: bool,
}

impl Changed {
    fn note(&mut self, batch: &seshat_kv::WriteBatch) {
        use seshat_kv::Write;
        for write in &batch.writes {
            match write {
                Write::Acl(_) => self.users = true,
                Write::Migration { .. } => self.table = true,
                Write::System(_) => self.system_table = true,
                Write::Command(_) | Write::Transaction { .. } | Write::ExpireKeys(_) => {}
            }
        }
    }
}

impl StateMachine {
    /// Writes `batch` with the applied state, then answers the waiting
    /// clients.
    fn commit_batch(
        &mut self,
        mut batch: Batch,
        replies: &mut Vec<(Responder, Vec<Frame>)>,
        changed: Changed,
    ) -> io::Result<()> {
        batch.put(
            self.layout.state_cf(),
            &self.layout.state_key(StateName::Applied),
            &self.applied_record().encode_to_vec(),
        );
        // Not fsynced: the entries are durable in the log, and a batch lost
        // in a crash is re-applied from the log on restart.
        self.store.write(batch, false).map_err(io::Error::other)?;
        self.publish();
        // Before the replies: a client whose ACL SETUSER was answered
        // finds the user in force on this node, and a coordinator whose
        // step was answered sees the table it made.
        if changed.users {
            self.reload_users()?;
        }
        if changed.table {
            self.publish_table();
        }
        if changed.system_table {
            self.reload_system_table()?;
        }
        for (responder, result) in replies.drain(..) {
            responder.send(result);
        }
        Ok(())
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotData = SnapshotFile;
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        Ok((self.applied, self.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + OptionalSend,
    {
        let started = std::time::Instant::now();
        let mut replies = Vec::new();
        let store = self.store.clone();
        let cf = self.layout.data_cf();
        let group = self.layout.group();
        let mut pending = ApplyBatch::new(&store, cf);
        let mut count = 0usize;
        let mut changed = Changed::default();
        while let Some((entry, responder)) = entries.try_next().await? {
            debug_assert!(self.applied.is_none_or(|a| a.index < entry.log_id.index));
            self.applied = Some(entry.log_id);
            let result = match entry.payload {
                EntryPayload::Blank => Vec::new(),
                EntryPayload::Normal(batch) => {
                    changed.note(&batch);
                    off_the_runtime_if(seshat_commands::batch_may_take_long(&batch), || {
                        seshat_commands::apply_group_batch(
                            group,
                            &batch,
                            entry.log_id.index,
                            &mut pending,
                            &mut self.group,
                        )
                    })
                    .map_err(|e| {
                        tracing::error!(error = %e, "cannot apply a committed entry; stopping");
                        io::Error::other(e)
                    })?
                }
                EntryPayload::Membership(m) => {
                    self.membership = StoredMembership::new(Some(entry.log_id), m);
                    Vec::new()
                }
            };
            if let Some(r) = responder {
                replies.push((r, result));
            }
            count += 1;
            if count >= MAX_ENTRIES_PER_APPLY_BATCH {
                let batch = std::mem::take(&mut pending.batch);
                self.commit_batch(batch, &mut replies, std::mem::take(&mut changed))?;
                pending = ApplyBatch::new(&store, cf);
                count = 0;
            }
        }
        if count > 0 {
            let batch = std::mem::take(&mut pending.batch);
            self.commit_batch(batch, &mut replies, changed)?;
        }
        stages::record_since(Stage::Apply, started);
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            store: self.store.clone(),
            layout: self.layout,
            dir: self.snapshot_dir.clone(),
            stats: self.stats.clone(),
            files: self.snapshot_files.clone(),
        }
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: SnapshotFile,
    ) -> Result<(), io::Error> {
        let _files = self.snapshot_files.clone().lock_owned().await;
        let store = self.store.clone();
        let dir = self.snapshot_dir.clone();
        let layout = self.layout;
        let (header, path) = tokio::task::spawn_blocking(move || {
            install_from_file(&store, layout, &dir, &snapshot.path)
        })
        .await
        .map_err(io::Error::other)??;
        let applied = header.applied.unwrap_or_default();
        let (applied_id, membership) = applied_from_record(&applied)?;
        if applied_id != meta.last_log_id {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "snapshot file holds state up to {:?} but its metadata says {:?}",
                    applied_id, meta.last_log_id
                ),
            ));
        }
        self.applied = applied_id;
        self.membership = membership;
        self.group = group_state(&applied, load_slot_table(&self.store, layout.group())?);
        self.publish();
        self.reload_users()?;
        self.publish_table();
        self.reload_system_table()?;
        self.record_snapshot_stats(
            &pb::SnapshotHeader {
                applied: Some(applied),
                ..Default::default()
            },
            &path,
        );
        self.stats
            .snapshots_installed
            .fetch_add(1, Ordering::AcqRel);
        tracing::info!(group = self.layout.group(), last_log_id = ?meta.last_log_id, "snapshot installed");
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<openraft::alias::SnapshotOf<TypeConfig, SnapshotFile>>, io::Error> {
        // A build writes the new file and removes the old ones under this
        // lock: listing then opening without it could open a file a build
        // just removed, and the error would stop the Raft core.
        let _files = self.snapshot_files.clone().lock_owned().await;
        let Some(path) = snapshot::newest_snapshot(&self.snapshot_dir)? else {
            return Ok(None);
        };
        let reader = snapshot::SnapshotReader::open(&path)?;
        let meta = meta_from_header(&reader.header)?;
        Ok(Some(openraft::alias::SnapshotOf::<
            TypeConfig,
            SnapshotFile,
        > {
            meta,
            snapshot: SnapshotFile { path },
        }))
    }
}

/// The metadata a snapshot file's header describes.
pub(crate) fn meta_from_header(header: &pb::SnapshotHeader) -> io::Result<SnapshotMeta> {
    let applied = header.applied.clone().unwrap_or_default();
    let (last_log_id, last_membership) = applied_from_record(&applied)?;
    Ok(SnapshotMeta {
        last_log_id,
        last_membership,
    })
}

/// Replaces the state with the snapshot at `path` in bounded memory, and
/// crash-safely:
///
/// 1. the file is copied into the snapshot directory and fsynced (a file
///    received under `incoming/` is moved instead);
/// 2. a marker naming it is written and fsynced;
/// 3. the group's data range is cleared and the snapshot loaded chunk by
///    chunk, each chunk its own batch (memory stays at one chunk); a key
///    outside the group's range is refused;
/// 4. the applied state is written and the marker removed in one fsynced
///    batch.
///
/// A crash between 2 and 4 leaves the marker; [`StateMachine::open`] then
/// repeats 3–4 from the same file before the node serves anything, so the
/// state seen is the old one or the new one, never a mix.
fn install_from_file(
    store: &Store,
    layout: GroupLayout,
    dir: &std::path::Path,
    path: &std::path::Path,
) -> io::Result<(pb::SnapshotHeader, PathBuf)> {
    std::fs::create_dir_all(dir)?;
    let header = snapshot::SnapshotReader::open(path)?.header;
    snapshot::check_group(&header, layout)?;
    // The installed copy is named after the snapshot it holds, whatever the
    // incoming file was called (transfers use unique `.part` names).
    let id = header.snapshot_id;
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit() || b == b'-') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("bad snapshot id {id:?}"),
        ));
    }
    let name_string = format!("{id}{}", snapshot::SNAPSHOT_SUFFIX);
    let name = std::ffi::OsStr::new(&name_string);
    let target = dir.join(name);
    if path.parent() == Some(snapshot::incoming_dir(dir).as_path()) {
        // A received file (already fsynced) belongs to its transfer alone:
        // moved into place, not copied — a copy of tens of GB costs as
        // much time and disk again.
        std::fs::rename(path, &target)?;
        std::fs::File::open(dir)?.sync_all()?;
    } else if target != path {
        let tmp = dir.join(format!("{}.copy", name.to_string_lossy()));
        std::fs::copy(path, &tmp)?;
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, &target)?;
        std::fs::File::open(dir)?.sync_all()?;
    }
    let mut marker = Batch::default();
    marker.put(
        layout.state_cf(),
        &layout.state_key(StateName::Installing),
        name.to_string_lossy().as_bytes(),
    );
    store.write(marker, true).map_err(io::Error::other)?;
    let header = load_snapshot_file(store, layout, &target)?;
    snapshot::remove_other_snapshots(dir, &target)?;
    Ok((header, target))
}

/// Steps 3–4 of [`install_from_file`]: replaces the group's data range
/// with the file's contents chunk by chunk, then commits the applied state
/// and clears the install marker in one fsynced batch.
fn load_snapshot_file(
    store: &Store,
    layout: GroupLayout,
    path: &std::path::Path,
) -> io::Result<pb::SnapshotHeader> {
    let mut reader = snapshot::SnapshotReader::open(path)?;
    snapshot::check_group(&reader.header, layout)?;
    let (start, end) = layout.data_range();
    let cf = layout.data_cf();
    let mut clear = Batch::default();
    clear.delete_range(cf, &start, &end);
    store.write(clear, false).map_err(io::Error::other)?;
    while let Some(chunk) = reader.next_chunk()? {
        let mut batch = Batch::default();
        for (k, v) in chunk.keys.iter().zip(chunk.values.iter()) {
            if !layout.owns_data_key(k) {
                return Err(snapshot::key_outside(layout));
            }
            batch.put(cf, k, v);
        }
        store.write(batch, false).map_err(io::Error::other)?;
    }
    let header = reader.header.clone();
    let applied = header.applied.clone().unwrap_or_default();
    let mut done = Batch::default();
    done.put(
        layout.state_cf(),
        &layout.state_key(StateName::Applied),
        &applied.encode_to_vec(),
    );
    done.delete(layout.state_cf(), &layout.state_key(StateName::Installing));
    store.write(done, true).map_err(io::Error::other)?;
    Ok(header)
}

/// Finishes a snapshot install a crash interrupted (see
/// [`install_from_file`]).
fn resume_interrupted_install(
    store: &Store,
    layout: GroupLayout,
    dir: &std::path::Path,
) -> io::Result<()> {
    let Some(name) = store
        .get(layout.state_cf(), &layout.state_key(StateName::Installing))
        .map_err(io::Error::other)?
    else {
        return Ok(());
    };
    let name = String::from_utf8(name).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "install marker is not a file name",
        )
    })?;
    let path = dir.join(&name);
    tracing::warn!(snapshot = %path.display(), "resuming a snapshot install interrupted by a crash");
    load_snapshot_file(store, layout, &path)?;
    tracing::info!(snapshot = %path.display(), "interrupted snapshot install completed");
    Ok(())
}

/// Builds snapshots from a consistent RocksDB view while writes go on.
pub struct SnapshotBuilder {
    store: Store,
    layout: GroupLayout,
    dir: PathBuf,
    stats: Arc<SmStats>,
    files: Arc<tokio::sync::Mutex<()>>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    type SnapshotData = SnapshotFile;

    async fn build_snapshot(
        &mut self,
    ) -> Result<openraft::alias::SnapshotOf<TypeConfig, SnapshotFile>, io::Error> {
        let _files = self.files.clone().lock_owned().await;
        let started = std::time::Instant::now();
        let store = self.store.clone();
        let dir = self.dir.clone();
        let layout = self.layout;
        let (header, path) =
            tokio::task::spawn_blocking(move || snapshot::write_snapshot(&store, layout, &dir))
                .await
                .map_err(io::Error::other)??;
        snapshot::remove_other_snapshots(&self.dir, &path)?;
        let meta = meta_from_header(&header)?;
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        self.stats
            .snapshot_index
            .store(meta.last_log_id.map_or(0, |l| l.index), Ordering::Release);
        self.stats.snapshot_bytes.store(size, Ordering::Release);
        self.stats.snapshots_built.fetch_add(1, Ordering::AcqRel);
        self.stats.snapshot_build_micros.fetch_add(
            u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
            Ordering::AcqRel,
        );
        tracing::info!(group = self.layout.group(), snapshot = %path.display(), bytes = size, last_log_id = ?meta.last_log_id, "snapshot built");
        Ok(openraft::alias::SnapshotOf::<TypeConfig, SnapshotFile> {
            meta,
            snapshot: SnapshotFile { path },
        })
    }
}

/// Runs `f` here; when `long` and this is a worker of a multi-threaded
/// runtime, first hands the worker's other tasks (the Raft core, the
/// heartbeats, client connections) to another thread, so a long apply
/// cannot delay them into an election.
fn off_the_runtime_if<T>(long: bool, f: impl FnOnce() -> T) -> T {
    let multi_thread = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    if long && multi_thread {
        tokio::task::block_in_place(f)
    } else {
        f()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use seshat_kv::keys::DATA_GROUP;
    use seshat_kv::{MemKv, Write, WriteBatch};

    fn data() -> GroupLayout {
        GroupLayout::new(DATA_GROUP).unwrap()
    }

    fn argv(words: &[&str]) -> Write {
        Write::Command(
            words
                .iter()
                .map(|w| Bytes::copy_from_slice(w.as_bytes()))
                .collect(),
        )
    }

    /// Applies writes straight to a store, three per batch (the state
    /// machine's semantics without openraft around it), and returns the
    /// replies.
    fn apply_direct(store: &Store, writes: &[Write], state: &mut GroupState) -> Vec<Frame> {
        let mut replies = Vec::new();
        for (i, chunk) in writes.chunks(3).enumerate() {
            let mut b = ApplyBatch::new(store, Cf::DataKv);
            let batch = WriteBatch {
                now_ms: 1_000 + i as u64 * 10,
                seed: i as u64,
                writes: chunk.to_vec(),
            };
            replies
                .extend(seshat_commands::apply_batch(&batch, i as u64 + 1, &mut b, state).unwrap());
            let record = pb::AppliedRecord {
                version: RECORD_VERSION,
                key_count: state.counts.keys,
                expiring_count: state.counts.expiring,
                last_now_ms: state.last_now_ms,
                ..Default::default()
            };
            b.batch.put(
                Cf::DataRaftState,
                &data().state_key(StateName::Applied),
                &record.encode_to_vec(),
            );
            store.write(b.batch, false).unwrap();
        }
        replies
    }

    /// The same writes applied to an in-memory model.
    fn apply_model(writes: &[Write]) -> (MemKv, GroupState, Vec<Frame>) {
        let (mut kv, mut state, mut replies) =
            (MemKv::default(), GroupState::default(), Vec::new());
        for (i, chunk) in writes.chunks(3).enumerate() {
            let batch = WriteBatch {
                now_ms: 1_000 + i as u64 * 10,
                seed: i as u64,
                writes: chunk.to_vec(),
            };
            replies.extend(
                seshat_commands::apply_batch(&batch, i as u64 + 1, &mut kv, &mut state).unwrap(),
            );
        }
        (kv, state, replies)
    }

    fn contents(store: &Store) -> BTreeMap<Vec<u8>, Vec<u8>> {
        let (start, end) = keys::group_range(DATA_GROUP);
        store
            .scan(Cf::DataKv, &start, &end, usize::MAX)
            .unwrap()
            .into_iter()
            .collect()
    }

    fn open(dir: &std::path::Path) -> Store {
        Store::open(&dir.join("db"), &StoreOptions::default()).unwrap()
    }

    fn arb_write() -> impl Strategy<Value = Write> {
        let key = prop::sample::select(vec!["a", "b", "c", "d", "e"]);
        let val = "[a-z0-9]{0,6}";
        prop_oneof![
            6 => (key.clone(), val).prop_map(|(k, v)| argv(&["SET", k, &v])),
            2 => (key.clone(), 1u32..40).prop_map(|(k, ms)| argv(&["SET", k, "t", "PX", &ms.to_string()])),
            2 => key.clone().prop_map(|k| argv(&["INCR", k])),
            3 => prop::collection::vec(key.clone(), 1..3).prop_map(|keys| {
                let mut w = vec!["DEL"];
                w.extend(keys);
                argv(&w)
            }),
            1 => key.clone().prop_map(|k| argv(&["RENAME", k, "z"])),
            1 => Just(argv(&["KEYS", "*"])),
            1 => Just(argv(&["SCAN", "0", "COUNT", "2"])),
            1 => Just(argv(&["DBSIZE"])),
            1 => Just(argv(&["FLUSHALL"])),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        /// State after snapshot + replay of the rest equals state after
        /// replaying everything, through real snapshot files and RocksDB;
        /// and RocksDB with the apply overlay behaves exactly like the
        /// in-memory model (same replies, same records).
        #[test]
        fn snapshot_then_replay_equals_full_replay(ops in prop::collection::vec(arb_write(), 0..40), cut in 0usize..14) {
            let cut = (cut * 3).min(ops.len());
            let tmp = tempfile::tempdir().unwrap();
            let full = open(&tmp.path().join("full"));
            let mut full_state = GroupState::default();
            let full_replies = apply_direct(&full, &ops, &mut full_state);

            let a = open(&tmp.path().join("a"));
            apply_direct(&a, &ops[..cut], &mut GroupState::default());
            let (_, file) = snapshot::write_snapshot(&a, data(), &tmp.path().join("a-snaps")).unwrap();

            let b = open(&tmp.path().join("b"));
            apply_direct(&b, &[argv(&["SET", "stale", "x"])], &mut GroupState::default());
            let (header, _) = install_from_file(&b, data(), &tmp.path().join("b-snaps"), &file).unwrap();
            let mut b_state = group_state(&header.applied.unwrap_or_default(), load_slot_table(&b, DATA_GROUP).unwrap());
            // Replay with the same batch boundaries and times as `full`.
            let rest: Vec<Write> = ops[cut..].to_vec();
            for (i, chunk) in rest.chunks(3).enumerate() {
                let n = cut / 3 + i;
                let mut batch = ApplyBatch::new(&b, Cf::DataKv);
                let wb = WriteBatch { now_ms: 1_000 + n as u64 * 10, seed: n as u64, writes: chunk.to_vec() };
                seshat_commands::apply_batch(&wb, n as u64 + 1, &mut batch, &mut b_state).unwrap();
                b.write(batch.batch, false).unwrap();
            }

            prop_assert_eq!(contents(&b), contents(&full));
            prop_assert_eq!(&b_state, &full_state);
            let (model, model_state, model_replies) = apply_model(&ops);
            let model_contents: BTreeMap<Vec<u8>, Vec<u8>> =
                model.map.into_iter().map(|(k, v)| (k, v.to_vec())).collect();
            prop_assert_eq!(contents(&full), model_contents);
            prop_assert_eq!(full_state, model_state);
            prop_assert_eq!(full_replies, model_replies);
        }
    }

    #[derive(Debug, Clone)]
    enum RawOp {
        Put(u8, u8),
        Delete(u8),
        DeleteRange(u8, u8),
    }

    fn raw_op() -> impl Strategy<Value = RawOp> {
        let k = 0u8..12;
        prop_oneof![
            4 => (k.clone(), any::<u8>()).prop_map(|(k, v)| RawOp::Put(k, v)),
            2 => k.clone().prop_map(RawOp::Delete),
            1 => (k.clone(), k).prop_map(|(a, b)| RawOp::DeleteRange(a, b)),
        ]
    }

    fn run_raw(kv: &mut dyn RawKv, op: &RawOp) {
        match *op {
            RawOp::Put(k, v) => kv.put(vec![k], vec![v]).unwrap(),
            RawOp::Delete(k) => kv.delete(vec![k]).unwrap(),
            RawOp::DeleteRange(a, b) => kv.delete_range(vec![a], vec![b]).unwrap(),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// The apply overlay (this batch's writes, deletes and range
        /// deletes over what RocksDB holds, and its cache of what it read)
        /// reads, scans and scans in reverse exactly like one in-memory
        /// map with every change.
        #[test]
        fn the_apply_overlay_reads_like_one_map(
            stored in prop::collection::vec(raw_op(), 0..20),
            pending in prop::collection::vec(raw_op(), 0..20),
            from in 0u8..13, to in 0u8..13, limit in 1usize..6,
        ) {
            let tmp = tempfile::tempdir().unwrap();
            let store = open(tmp.path());
            let mut model = MemKv::default();
            let mut base = ApplyBatch::new(&store, Cf::DataKv);
            for op in &stored {
                run_raw(&mut base, op);
                run_raw(&mut model, op);
            }
            store.write(base.batch, false).unwrap();
            let mut overlay = ApplyBatch::new(&store, Cf::DataKv);
            for op in &pending {
                // Reads between the changes fill the batch's read cache,
                // which the later changes must hide.
                for k in 0u8..12 {
                    prop_assert_eq!(overlay.get(&[k]).unwrap(), model.get(&[k]).unwrap());
                }
                run_raw(&mut overlay, op);
                run_raw(&mut model, op);
            }
            for k in 0u8..12 {
                prop_assert_eq!(overlay.get(&[k]).unwrap(), model.get(&[k]).unwrap());
            }
            prop_assert_eq!(
                overlay.scan(&[from], &[to], limit).unwrap(),
                model.scan(&[from], &[to], limit).unwrap()
            );
            prop_assert_eq!(
                overlay.scan_rev(&[from], &[to], limit).unwrap(),
                model.scan_rev(&[from], &[to], limit).unwrap()
            );
        }
    }

    /// Regression (issue 18 item 2): listing the newest snapshot while a
    /// build replaced it could open a file the build had just removed, and
    /// that error stopped the Raft core. A build holds the snapshot-files
    /// lock while it writes the new file and removes the old ones; the
    /// listing must wait for it.
    #[test]
    fn current_snapshot_waits_for_a_build_in_progress() {
        let tmp = tempfile::tempdir().unwrap();
        let config = StorageConfig::new(tmp.path().to_path_buf());
        let store = Store::open(&config.db_dir(), &StoreOptions::default()).unwrap();
        apply_direct(
            &store,
            &[argv(&["SET", "k", "v"])],
            &mut GroupState::default(),
        );
        let mut sm = StateMachine::open(store, data(), config.group_snapshot_dir(data())).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            sm.get_snapshot_builder()
                .await
                .build_snapshot()
                .await
                .unwrap();
            // A build in progress holds the lock.
            let build_in_progress = sm.snapshot_files.clone().lock_owned().await;
            let listing = sm.get_current_snapshot();
            tokio::pin!(listing);
            for _ in 0..10 {
                tokio::select! {
                    biased;
                    _ = &mut listing => panic!("listed snapshots while a build was replacing them"),
                    _ = tokio::task::yield_now() => {}
                }
            }
            drop(build_in_progress);
            assert!(listing.await.unwrap().is_some());
        });
    }

    #[test]
    fn an_install_interrupted_by_a_crash_is_completed_on_open() {
        let tmp = tempfile::tempdir().unwrap();
        let source = open(&tmp.path().join("source"));
        let value = "v".repeat(500);
        let ops: Vec<Write> = (0..3000)
            .map(|i| argv(&["SET", &format!("key{i}"), &value]))
            .collect();
        apply_direct(&source, &ops, &mut GroupState::default());
        let (_, file) =
            snapshot::write_snapshot(&source, data(), &tmp.path().join("source-snaps")).unwrap();

        let config = StorageConfig::new(tmp.path().join("node"));
        {
            let store = Store::open(&config.db_dir(), &StoreOptions::default()).unwrap();
            apply_direct(
                &store,
                &[argv(&["SET", "old", "1"])],
                &mut GroupState::default(),
            );
            // Simulate a crash after the marker and part of the data:
            // copy the file, write the marker, load one chunk only.
            let dir = config.group_snapshot_dir(data());
            std::fs::create_dir_all(&dir).unwrap();
            let name = file.file_name().unwrap();
            std::fs::copy(&file, dir.join(name)).unwrap();
            let mut marker = Batch::default();
            marker.put(
                Cf::DataRaftState,
                &data().state_key(StateName::Installing),
                name.to_string_lossy().as_bytes(),
            );
            store.write(marker, true).unwrap();
            let mut reader = snapshot::SnapshotReader::open(&file).unwrap();
            let chunk = reader.next_chunk().unwrap().unwrap();
            let mut partial = Batch::default();
            let (start, end) = keys::group_range(DATA_GROUP);
            partial.delete_range(Cf::DataKv, &start, &end);
            for (k, v) in chunk.keys.iter().zip(chunk.values.iter()) {
                partial.put(Cf::DataKv, k, v);
            }
            store.write(partial, true).unwrap();
            assert!(
                contents(&store).len() < 3000,
                "the test must leave a partial state"
            );
        }
        let store = Store::open(&config.db_dir(), &StoreOptions::default()).unwrap();
        let sm =
            StateMachine::open(store.clone(), data(), config.group_snapshot_dir(data())).unwrap();
        assert_eq!(contents(&store), contents(&source));
        assert_eq!(sm.group.counts.keys, 3000);
        assert_eq!(
            store
                .get(Cf::DataRaftState, &data().state_key(StateName::Installing))
                .unwrap(),
            None
        );
    }

    /// A migration step for group 1 as the target of slots 10000..=10010
    /// (group 2's), and a chunk of one string key in them.
    fn import_steps() -> (Write, Write, seshat_migration::Manifest) {
        use seshat_migration::{
            Chunk, ChunkEntry, GroupStep, Migration, SlotMap, SlotRanges, SlotTable,
        };
        let map = SlotMap::even(&[DATA_GROUP, 2]).unwrap();
        let key = (0..)
            .map(|i| format!("k{i}"))
            .find(|k| (10_000..=10_010).contains(&seshat_common::crc16_slot(k.as_bytes())))
            .unwrap();
        let m = Migration {
            id: 1,
            slots: SlotRanges::new([(10_000, 10_010)]).unwrap(),
            source: 2,
            target: DATA_GROUP,
        };
        let chunk = Chunk {
            seq: 0,
            entries: vec![ChunkEntry {
                slot: seshat_common::crc16_slot(key.as_bytes()),
                key: keys::meta_key(DATA_GROUP, key.as_bytes())[4..].to_vec(),
                value: seshat_kv::Record::string(Bytes::from_static(b"v")).encode(),
            }],
        };
        let mut received = seshat_migration::Manifest::default();
        received.add(&chunk);
        let initial = Bytes::from(SlotTable::new(DATA_GROUP, map).encode());
        let write = |step: GroupStep| Write::Migration {
            step: Bytes::from(step.encode()),
            initial: initial.clone(),
        };
        (
            write(GroupStep::ImportStart(m.clone())),
            write(GroupStep::ImportChunk(m, chunk)),
            received,
        )
    }

    fn entry(index: u64, writes: Vec<Write>) -> crate::types::Entry {
        crate::types::Entry {
            log_id: LogId::new(
                crate::types::CommittedLeaderId {
                    term: 1,
                    node_id: 1,
                },
                index,
            ),
            payload: EntryPayload::Normal(WriteBatch {
                now_ms: 1_000,
                seed: index,
                writes,
            }),
        }
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn the_slot_table_is_published_after_apply_and_survives_a_restart_and_an_install() {
        let tmp = tempfile::tempdir().unwrap();
        let config = StorageConfig::new(tmp.path().join("node"));
        let store = Store::open(&config.db_dir(), &StoreOptions::default()).unwrap();
        let mut sm =
            StateMachine::open(store.clone(), data(), config.group_snapshot_dir(data())).unwrap();
        assert_eq!(*sm.slot_table().borrow(), None);
        let mut watch = sm.slot_table().subscribe();
        let (start, chunk, received) = import_steps();
        let entries = vec![
            Ok((entry(1, vec![argv(&["SET", "a", "1"])]), None)),
            Ok((entry(2, vec![start, chunk]), None)),
        ];
        runtime()
            .block_on(sm.apply(futures::stream::iter(entries)))
            .unwrap();
        assert!(watch.has_changed().unwrap());
        let table = watch.borrow_and_update().clone().unwrap();
        assert_eq!(
            table.view(1),
            seshat_migration::GroupView::Importing(received)
        );
        assert_eq!(received.entries, 1);
        assert_eq!(sm.group.table.as_ref(), Some(&table));
        assert_eq!(sm.group.counts.keys, 2);
        assert_eq!(
            *sm.system_table().borrow(),
            None,
            "a data group has no system table"
        );

        // A restart loads the same table.
        drop(sm);
        let sm =
            StateMachine::open(store.clone(), data(), config.group_snapshot_dir(data())).unwrap();
        assert_eq!(sm.slot_table().borrow().as_ref(), Some(&table));
        assert_eq!(sm.group.table.as_ref(), Some(&table));

        // So does a replica that installs a snapshot of it.
        let (header, file) =
            snapshot::write_snapshot(&store, data(), &tmp.path().join("snaps")).unwrap();
        let meta = meta_from_header(&header).unwrap();
        let other = StorageConfig::new(tmp.path().join("other"));
        let other_store = Store::open(&other.db_dir(), &StoreOptions::default()).unwrap();
        let mut installed =
            StateMachine::open(other_store, data(), other.group_snapshot_dir(data())).unwrap();
        let watch = installed.slot_table().subscribe();
        assert_eq!(*watch.borrow(), None);
        runtime()
            .block_on(installed.install_snapshot(&meta, SnapshotFile { path: file }))
            .unwrap();
        assert!(watch.has_changed().unwrap());
        assert_eq!(watch.borrow().as_ref(), Some(&table));
        assert_eq!(installed.group.table.as_ref(), Some(&table));
        assert_eq!(installed.group.counts.keys, 2);
    }

    #[test]
    fn the_system_table_is_published_after_apply_and_loaded_at_open() {
        use seshat_migration::{SlotMap, SlotRanges, SystemStep, SystemTable};
        let tmp = tempfile::tempdir().unwrap();
        let config = StorageConfig::new(tmp.path().to_path_buf());
        let store = Store::open(&config.db_dir(), &StoreOptions::default()).unwrap();
        let system = GroupLayout::new(keys::SYSTEM_GROUP).unwrap();
        let mut sm =
            StateMachine::open(store.clone(), system, config.group_snapshot_dir(system)).unwrap();
        assert_eq!(*sm.system_table().borrow(), None, "not bootstrapped");
        let map = SlotMap::even(&[1, 2]).unwrap();
        let bootstrap = Write::System(seshat_kv::SystemWrite::Bootstrap {
            cluster: Bytes::from_static(b"layout"),
            slots: Bytes::from(SystemTable::new(map).encode()),
        });
        let record = SystemStep::Record {
            slots: SlotRanges::new([(0, 9)]).unwrap(),
            source: 1,
            target: 2,
            map_version: 1,
        };
        let step = Write::System(seshat_kv::SystemWrite::Step(Bytes::from(record.encode())));
        let mut watch = sm.system_table().subscribe();
        runtime()
            .block_on(sm.apply(futures::stream::iter(vec![Ok((
                entry(1, vec![bootstrap, step]),
                None,
            ))])))
            .unwrap();
        assert!(watch.has_changed().unwrap());
        let table = watch.borrow_and_update().clone().unwrap();
        assert_eq!(table.active().count(), 1);
        assert_eq!(table.last_id(), 1);
        assert_eq!(*sm.slot_table().borrow(), None);
        drop(sm);
        let sm = StateMachine::open(store, system, config.group_snapshot_dir(system)).unwrap();
        assert_eq!(sm.system_table().borrow().as_ref(), Some(&table));
    }
}
