//! The replicated state machine on RocksDB (`data_kv`, `data_raft_state`).
//!
//! Each call to `apply` turns its entries into one atomic write batch: the
//! key-value changes, the new applied log id, the membership and the key
//! count commit together, so after a crash the data and the applied index
//! always agree. Replies are sent only after the batch is written, so a
//! client that saw `OK` reads its own write.

use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use futures::{Stream, TryStreamExt};
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder};
use prost::Message;
use seshat_common::stages::{self, Stage};
use seshat_kv::{KvState, OpResult};
use seshat_storage::{Batch, Cf, StorageError, Store, StoreOptions};

use crate::codec::{self, RECORD_VERSION};
use crate::pb;
use crate::snapshot::{self, SnapshotFile, USER_KEY_PREFIX};
use crate::types::{LogId, SnapshotMeta, StoredMembership, TypeConfig};

/// Key of the [`pb::AppliedRecord`] in `data_raft_state`.
pub const KEY_APPLIED: &[u8] = b"applied";
/// Most entries applied in one write batch; bounds batch memory.
pub const MAX_ENTRIES_PER_APPLY_BATCH: usize = 4096;

/// Where a node keeps its files and how RocksDB is tuned.
#[derive(Debug, Clone)]
pub struct StorageConfig {
    /// The node's data directory.
    pub data_dir: PathBuf,
    /// RocksDB tunables.
    pub store_options: StoreOptions,
}

impl StorageConfig {
    /// Default tunables for `data_dir`.
    pub fn new(data_dir: PathBuf) -> Self {
        Self {
            data_dir,
            store_options: StoreOptions::default(),
        }
    }

    /// The RocksDB directory.
    pub fn db_dir(&self) -> PathBuf {
        self.data_dir.join("db")
    }

    /// The snapshot directory.
    pub fn snapshot_dir(&self) -> PathBuf {
        self.data_dir.join("snapshots")
    }
}

/// Counters the server reads without going through Raft.
#[derive(Debug, Default)]
pub struct SmStats {
    /// Index of the last applied entry.
    pub applied_index: AtomicU64,
    /// Number of user keys.
    pub key_count: AtomicU64,
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

/// The state machine handed to openraft.
pub struct StateMachine {
    store: Store,
    snapshot_dir: PathBuf,
    /// Held by a snapshot install for its whole run and by a snapshot
    /// build while it reads the database and replaces files, so a build
    /// never sees a half-loaded snapshot nor deletes an install's files.
    snapshot_files: Arc<tokio::sync::Mutex<()>>,
    applied: Option<LogId>,
    membership: StoredMembership,
    key_count: u64,
    stats: Arc<SmStats>,
}

/// The key under which user key `key` is stored in `data_kv`.
pub fn data_key(key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + 1);
    k.push(USER_KEY_PREFIX);
    k.extend_from_slice(key);
    k
}

/// The applied index, an FNV-1a hash of every user key and value, and the
/// number of keys, all read from one consistent view of the database.
pub fn state_digest(store: &Store) -> io::Result<(u64, u64, u64)> {
    const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
    let view = store.snapshot();
    let applied = match view
        .get(Cf::DataRaftState, KEY_APPLIED)
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
    view.for_each(
        Cf::DataKv,
        &[USER_KEY_PREFIX],
        &[USER_KEY_PREFIX + 1],
        |k, v| {
            feed(k);
            feed(v);
            keys += 1;
            true
        },
    )
    .map_err(io::Error::other)?;
    Ok((applied, hash, keys))
}

/// Reads user key `key` from the applied state.
pub fn read_value(store: &Store, key: &[u8]) -> Result<Option<Bytes>, StorageError> {
    Ok(store.get(Cf::DataKv, &data_key(key))?.map(Bytes::from))
}

impl StateMachine {
    /// Loads the applied state from `store`.
    pub fn open(store: Store, config: &StorageConfig) -> io::Result<Self> {
        resume_interrupted_install(&store, &config.snapshot_dir())?;
        let record = match store
            .get(Cf::DataRaftState, KEY_APPLIED)
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
        let sm = Self {
            store,
            snapshot_dir: config.snapshot_dir(),
            snapshot_files: Arc::new(tokio::sync::Mutex::new(())),
            applied,
            membership,
            key_count: record.key_count,
            stats,
        };
        if let Some(path) = snapshot::newest_snapshot(&sm.snapshot_dir)? {
            let reader = snapshot::SnapshotReader::open(&path)?;
            sm.record_snapshot_stats(&reader.header, &path);
        }
        Ok(sm)
    }

    /// Shared counters for INFO and DBSIZE.
    pub fn stats(&self) -> Arc<SmStats> {
        self.stats.clone()
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
            key_count: self.key_count,
        }
    }

    fn publish(&self) {
        self.stats
            .applied_index
            .store(self.applied.map_or(0, |l| l.index), Ordering::Release);
        self.stats
            .key_count
            .store(self.key_count, Ordering::Release);
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

/// One apply batch: pending changes that later operations in the same batch
/// must see before they reach RocksDB.
struct ApplyBatch<'a> {
    store: &'a Store,
    batch: Batch,
    overlay: BTreeMap<Bytes, Option<Bytes>>,
    cleared: bool,
    key_count: u64,
}

impl KvState for ApplyBatch<'_> {
    type Error = StorageError;

    fn get(&mut self, key: &[u8]) -> Result<Option<Bytes>, StorageError> {
        if let Some(v) = self.overlay.get(key) {
            return Ok(v.clone());
        }
        if self.cleared {
            return Ok(None);
        }
        read_value(self.store, key)
    }

    fn put(&mut self, key: Bytes, value: Bytes) -> Result<(), StorageError> {
        let data_key = data_key(&key);
        // Only whether the key exists matters here (for the key count): no
        // copy of the old value.
        let exists = match self.overlay.get(&key) {
            Some(v) => v.is_some(),
            None => !self.cleared && self.store.contains(Cf::DataKv, &data_key)?,
        };
        if !exists {
            self.key_count = self.key_count.saturating_add(1);
        }
        self.batch.put(Cf::DataKv, &data_key, &value);
        self.overlay.insert(key, Some(value));
        Ok(())
    }

    fn delete(&mut self, key: Bytes) -> Result<(), StorageError> {
        self.key_count = self.key_count.saturating_sub(1);
        self.batch.delete(Cf::DataKv, &data_key(&key));
        self.overlay.insert(key, None);
        Ok(())
    }

    fn clear(&mut self) -> Result<(), StorageError> {
        self.batch
            .delete_range(Cf::DataKv, &[USER_KEY_PREFIX], &[USER_KEY_PREFIX + 1]);
        self.overlay.clear();
        self.cleared = true;
        self.key_count = 0;
        Ok(())
    }
}

type Responder = openraft::storage::ApplyResponder<TypeConfig>;

impl StateMachine {
    /// Writes `batch` with the applied state, then answers the waiting
    /// clients.
    fn commit_batch(
        &mut self,
        mut batch: Batch,
        replies: &mut Vec<(Responder, OpResult)>,
    ) -> io::Result<()> {
        batch.put(
            Cf::DataRaftState,
            KEY_APPLIED,
            &self.applied_record().encode_to_vec(),
        );
        // Not fsynced: the entries are durable in the log, and a batch lost
        // in a crash is re-applied from the log on restart.
        self.store.write(batch, false).map_err(io::Error::other)?;
        self.publish();
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
        let mut pending = ApplyBatch {
            store: &self.store.clone(),
            batch: Batch::default(),
            overlay: BTreeMap::new(),
            cleared: false,
            key_count: self.key_count,
        };
        let store = self.store.clone();
        let mut count = 0usize;
        while let Some((entry, responder)) = entries.try_next().await? {
            debug_assert!(self.applied.is_none_or(|a| a.index < entry.log_id.index));
            self.applied = Some(entry.log_id);
            let result = match entry.payload {
                EntryPayload::Blank => OpResult::Ok,
                EntryPayload::Normal(op) => {
                    seshat_kv::apply(&op, &mut pending).map_err(io::Error::other)?
                }
                EntryPayload::Membership(m) => {
                    self.membership = StoredMembership::new(Some(entry.log_id), m);
                    OpResult::Ok
                }
            };
            if let Some(r) = responder {
                replies.push((r, result));
            }
            count += 1;
            if count >= MAX_ENTRIES_PER_APPLY_BATCH {
                self.key_count = pending.key_count;
                let batch = std::mem::take(&mut pending.batch);
                self.commit_batch(batch, &mut replies)?;
                pending = ApplyBatch {
                    store: &store,
                    batch: Batch::default(),
                    overlay: BTreeMap::new(),
                    cleared: false,
                    key_count: self.key_count,
                };
                count = 0;
            }
        }
        if count > 0 {
            self.key_count = pending.key_count;
            let batch = std::mem::take(&mut pending.batch);
            self.commit_batch(batch, &mut replies)?;
        }
        stages::record_since(Stage::Apply, started);
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            store: self.store.clone(),
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
        let (header, path) =
            tokio::task::spawn_blocking(move || install_from_file(&store, &dir, &snapshot.path))
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
        self.key_count = applied.key_count;
        self.publish();
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
        tracing::info!(last_log_id = ?meta.last_log_id, "snapshot installed");
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<openraft::alias::SnapshotOf<TypeConfig, SnapshotFile>>, io::Error> {
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

/// Key of the marker that says a snapshot install is under way, and from
/// which file.
pub const KEY_INSTALLING: &[u8] = b"installing_snapshot";

/// Replaces the state with the snapshot at `path` in bounded memory, and
/// crash-safely:
///
/// 1. the file is copied into the snapshot directory and fsynced;
/// 2. a marker naming it is written and fsynced;
/// 3. `data_kv` is cleared and the snapshot loaded chunk by chunk, each
///    chunk its own batch (memory stays at one chunk);
/// 4. the applied state is written and the marker removed in one fsynced
///    batch.
///
/// A crash between 2 and 4 leaves the marker; [`StateMachine::open`] then
/// repeats 3–4 from the same file before the node serves anything, so the
/// state seen is the old one or the new one, never a mix.
fn install_from_file(
    store: &Store,
    dir: &std::path::Path,
    path: &std::path::Path,
) -> io::Result<(pb::SnapshotHeader, PathBuf)> {
    std::fs::create_dir_all(dir)?;
    // The installed copy is named after the snapshot it holds, whatever the
    // incoming file was called (transfers use unique `.part` names).
    let id = snapshot::SnapshotReader::open(path)?.header.snapshot_id;
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit() || b == b'-') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("bad snapshot id {id:?}"),
        ));
    }
    let name_string = format!("{id}{}", snapshot::SNAPSHOT_SUFFIX);
    let name = std::ffi::OsStr::new(&name_string);
    let target = dir.join(name);
    if target != path {
        let tmp = dir.join(format!("{}.copy", name.to_string_lossy()));
        std::fs::copy(path, &tmp)?;
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, &target)?;
        std::fs::File::open(dir)?.sync_all()?;
    }
    let mut marker = Batch::default();
    marker.put(
        Cf::DataRaftState,
        KEY_INSTALLING,
        name.to_string_lossy().as_bytes(),
    );
    store.write(marker, true).map_err(io::Error::other)?;
    let header = load_snapshot_file(store, &target)?;
    snapshot::remove_other_snapshots(dir, &target)?;
    Ok((header, target))
}

/// Steps 3–4 of [`install_from_file`]: replaces `data_kv` with the file's
/// contents chunk by chunk, then commits the applied state and clears the
/// install marker in one fsynced batch.
fn load_snapshot_file(store: &Store, path: &std::path::Path) -> io::Result<pb::SnapshotHeader> {
    let mut reader = snapshot::SnapshotReader::open(path)?;
    let mut clear = Batch::default();
    clear.delete_range(Cf::DataKv, &[USER_KEY_PREFIX], &[USER_KEY_PREFIX + 1]);
    store.write(clear, false).map_err(io::Error::other)?;
    while let Some(chunk) = reader.next_chunk()? {
        let mut batch = Batch::default();
        for (k, v) in chunk.keys.iter().zip(chunk.values.iter()) {
            if k.first() != Some(&USER_KEY_PREFIX) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "snapshot key without the user prefix",
                ));
            }
            batch.put(Cf::DataKv, k, v);
        }
        store.write(batch, false).map_err(io::Error::other)?;
    }
    let header = reader.header.clone();
    let applied = header.applied.clone().unwrap_or_default();
    let mut done = Batch::default();
    done.put(Cf::DataRaftState, KEY_APPLIED, &applied.encode_to_vec());
    done.delete(Cf::DataRaftState, KEY_INSTALLING);
    store.write(done, true).map_err(io::Error::other)?;
    Ok(header)
}

/// Finishes a snapshot install a crash interrupted (see
/// [`install_from_file`]).
fn resume_interrupted_install(store: &Store, dir: &std::path::Path) -> io::Result<()> {
    let Some(name) = store
        .get(Cf::DataRaftState, KEY_INSTALLING)
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
    load_snapshot_file(store, &path)?;
    tracing::info!(snapshot = %path.display(), "interrupted snapshot install completed");
    Ok(())
}

/// Builds snapshots from a consistent RocksDB view while writes go on.
pub struct SnapshotBuilder {
    store: Store,
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
        let (header, path) =
            tokio::task::spawn_blocking(move || snapshot::write_snapshot(&store, &dir))
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
        tracing::info!(snapshot = %path.display(), bytes = size, last_log_id = ?meta.last_log_id, "snapshot built");
        Ok(openraft::alias::SnapshotOf::<TypeConfig, SnapshotFile> {
            meta,
            snapshot: SnapshotFile { path },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use seshat_kv::{MemState, Operation};

    /// Applies operations straight to a store, one batch each (the state
    /// machine's semantics without openraft around it).
    fn apply_direct(store: &Store, ops: &[Operation], key_count: &mut u64) {
        for op in ops {
            let mut b = ApplyBatch {
                store,
                batch: Batch::default(),
                overlay: BTreeMap::new(),
                cleared: false,
                key_count: *key_count,
            };
            seshat_kv::apply(op, &mut b).unwrap();
            *key_count = b.key_count;
            let record = pb::AppliedRecord {
                version: RECORD_VERSION,
                key_count: *key_count,
                ..Default::default()
            };
            b.batch
                .put(Cf::DataRaftState, KEY_APPLIED, &record.encode_to_vec());
            store.write(b.batch, false).unwrap();
        }
    }

    fn contents(store: &Store) -> BTreeMap<Vec<u8>, Vec<u8>> {
        store
            .scan(
                Cf::DataKv,
                &[USER_KEY_PREFIX],
                &[USER_KEY_PREFIX + 1],
                usize::MAX,
            )
            .unwrap()
            .into_iter()
            .map(|(k, v)| (k[1..].to_vec(), v))
            .collect()
    }

    fn open(dir: &std::path::Path) -> Store {
        Store::open(&dir.join("db"), &StoreOptions::default()).unwrap()
    }

    fn arb_op() -> impl Strategy<Value = Operation> {
        let key = prop::sample::select(vec!["a", "b", "c", "d", "e"])
            .prop_map(|k| Bytes::from(k.as_bytes().to_vec()));
        let val = prop::collection::vec(any::<u8>(), 0..8).prop_map(Bytes::from);
        prop_oneof![
            6 => (key.clone(), val).prop_map(|(k, v)| Operation::set(k, v)),
            3 => prop::collection::vec(key, 1..3).prop_map(|keys| Operation::Del { keys }),
            1 => Just(Operation::FlushAll),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        /// State after snapshot + replay of the rest equals state after
        /// replaying everything, through real snapshot files and RocksDB.
        #[test]
        fn snapshot_then_replay_equals_full_replay(ops in prop::collection::vec(arb_op(), 0..40), cut in 0usize..40) {
            let cut = cut.min(ops.len());
            let tmp = tempfile::tempdir().unwrap();
            let full = open(&tmp.path().join("full"));
            let mut full_count = 0;
            apply_direct(&full, &ops, &mut full_count);

            let a = open(&tmp.path().join("a"));
            let mut a_count = 0;
            apply_direct(&a, &ops[..cut], &mut a_count);
            let (_, file) = snapshot::write_snapshot(&a, &tmp.path().join("a-snaps")).unwrap();

            let b = open(&tmp.path().join("b"));
            apply_direct(&b, &[Operation::set(Bytes::from("stale"), Bytes::from("x"))], &mut 0);
            let (header, _) = install_from_file(&b, &tmp.path().join("b-snaps"), &file).unwrap();
            let mut b_count = header.applied.unwrap_or_default().key_count;
            apply_direct(&b, &ops[cut..], &mut b_count);

            prop_assert_eq!(contents(&b), contents(&full));
            prop_assert_eq!(b_count, full_count);
            let mut model = MemState::default();
            for op in &ops { let _ = seshat_kv::apply(op, &mut model); }
            prop_assert_eq!(contents(&full).len() as u64, full_count);
            prop_assert_eq!(model.map.len() as u64, full_count);
        }
    }

    #[test]
    fn an_install_interrupted_by_a_crash_is_completed_on_open() {
        let tmp = tempfile::tempdir().unwrap();
        let source = open(&tmp.path().join("source"));
        let ops: Vec<Operation> = (0..3000)
            .map(|i| Operation::set(Bytes::from(format!("key{i}")), Bytes::from(vec![b'v'; 500])))
            .collect();
        let mut count = 0;
        apply_direct(&source, &ops, &mut count);
        let (_, file) =
            snapshot::write_snapshot(&source, &tmp.path().join("source-snaps")).unwrap();

        let config = StorageConfig::new(tmp.path().join("node"));
        {
            let store = Store::open(&config.db_dir(), &StoreOptions::default()).unwrap();
            apply_direct(
                &store,
                &[Operation::set(Bytes::from("old"), Bytes::from("1"))],
                &mut 0,
            );
            // Simulate a crash after the marker and part of the data:
            // copy the file, write the marker, load one chunk only.
            std::fs::create_dir_all(config.snapshot_dir()).unwrap();
            let name = file.file_name().unwrap();
            std::fs::copy(&file, config.snapshot_dir().join(name)).unwrap();
            let mut marker = Batch::default();
            marker.put(
                Cf::DataRaftState,
                KEY_INSTALLING,
                name.to_string_lossy().as_bytes(),
            );
            store.write(marker, true).unwrap();
            let mut reader = snapshot::SnapshotReader::open(&file).unwrap();
            let chunk = reader.next_chunk().unwrap().unwrap();
            let mut partial = Batch::default();
            partial.delete_range(Cf::DataKv, &[USER_KEY_PREFIX], &[USER_KEY_PREFIX + 1]);
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
        let sm = StateMachine::open(store.clone(), &config).unwrap();
        assert_eq!(contents(&store), contents(&source));
        assert_eq!(sm.key_count, 3000);
        assert_eq!(store.get(Cf::DataRaftState, KEY_INSTALLING).unwrap(), None);
    }
}
