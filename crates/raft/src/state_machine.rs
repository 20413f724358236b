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

/// Reads user key `key` from the applied state.
pub fn read_value(store: &Store, key: &[u8]) -> Result<Option<Bytes>, StorageError> {
    Ok(store.get(Cf::DataKv, &data_key(key))?.map(Bytes::from))
}

impl StateMachine {
    /// Loads the applied state from `store`.
    pub fn open(store: Store, config: &StorageConfig) -> io::Result<Self> {
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
        if self.get(&key)?.is_none() {
            self.key_count = self.key_count.saturating_add(1);
        }
        self.batch.put(Cf::DataKv, &data_key(&key), &value);
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
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            store: self.store.clone(),
            dir: self.snapshot_dir.clone(),
            stats: self.stats.clone(),
        }
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: SnapshotFile,
    ) -> Result<(), io::Error> {
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

fn meta_from_header(header: &pb::SnapshotHeader) -> io::Result<SnapshotMeta> {
    let applied = header.applied.clone().unwrap_or_default();
    let (last_log_id, last_membership) = applied_from_record(&applied)?;
    Ok(SnapshotMeta {
        last_log_id,
        last_membership,
    })
}

/// Replaces the state with the snapshot at `path` in one atomic, fsynced
/// batch, then keeps a copy of the file as the node's current snapshot.
fn install_from_file(
    store: &Store,
    dir: &std::path::Path,
    path: &std::path::Path,
) -> io::Result<(pb::SnapshotHeader, PathBuf)> {
    let mut reader = snapshot::SnapshotReader::open(path)?;
    let mut batch = Batch::default();
    batch.delete_range(Cf::DataKv, &[USER_KEY_PREFIX], &[USER_KEY_PREFIX + 1]);
    while let Some(chunk) = reader.next_chunk()? {
        for (k, v) in chunk.keys.iter().zip(chunk.values.iter()) {
            if k.first() != Some(&USER_KEY_PREFIX) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "snapshot key without the user prefix",
                ));
            }
            batch.put(Cf::DataKv, k, v);
        }
    }
    let header = reader.header.clone();
    let applied = header.applied.clone().unwrap_or_default();
    batch.put(Cf::DataRaftState, KEY_APPLIED, &applied.encode_to_vec());
    store.write(batch, true).map_err(io::Error::other)?;
    std::fs::create_dir_all(dir)?;
    let target = dir.join(path.file_name().unwrap_or_default());
    if target != path {
        std::fs::copy(path, &target)?;
    }
    snapshot::remove_other_snapshots(dir, &target)?;
    Ok((header, target))
}

/// Builds snapshots from a consistent RocksDB view while writes go on.
pub struct SnapshotBuilder {
    store: Store,
    dir: PathBuf,
    stats: Arc<SmStats>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    type SnapshotData = SnapshotFile;

    async fn build_snapshot(
        &mut self,
    ) -> Result<openraft::alias::SnapshotOf<TypeConfig, SnapshotFile>, io::Error> {
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
