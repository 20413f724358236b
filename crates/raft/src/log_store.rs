//! The Raft logs of a node's groups on RocksDB (`*_raft_log`,
//! `*_raft_state`, keys from [`crate::layout`]), with group commit across
//! groups.
//!
//! `append` writes its entries to RocksDB immediately (without fsync) so
//! they can be read back at once, then queues openraft's "flushed" callback
//! to the node's one [`Syncer`] thread. The syncer takes every callback
//! queued so far — whatever group it belongs to: RocksDB has one WAL for
//! all column families — issues one WAL fsync, and completes them all in
//! order: one fsync serves every append of every group that arrived while
//! the previous fsync ran.
//!
//! The newest entries of each group are also kept in memory
//! ([`EntryCache`]): replication to each follower and apply read entries
//! that were appended moments ago, and serving them from memory saves a
//! RocksDB scan and a decode per read. The caches of all groups share one
//! node-wide budget ([`CacheBudget`]); when it is exceeded, the group
//! holding the most loses its oldest entries ([`NodeCaches`]).

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use std::time::Instant;

use openraft::storage::{IOFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader};
use seshat_common::stages::{self, Stage};
use seshat_storage::{Batch, Store};

use crate::codec;
use crate::layout::{GroupId, GroupLayout, StateName};
use crate::types::{Entry, LogId, TypeConfig, Vote};

/// Most entries read from RocksDB in one scan; longer ranges are read in
/// several. Also the most `limited_get_log_entries` returns (replication
/// batches are bounded further by openraft's `max_payload_entries`), and
/// the chunk `entries_stream` reads at a time, so applying a long run of
/// entries holds at most this many in memory.
pub const MAX_ENTRIES_PER_READ: usize = 4096;

/// Most entries the in-memory caches of all a node's groups keep.
pub const CACHE_MAX_ENTRIES: usize = 8192;
/// Most bytes (see [`cache_footprint`]) the in-memory caches of all a
/// node's groups keep.
pub const CACHE_MAX_BYTES: usize = 32 * 1024 * 1024;

/// What the entry caches of all a node's groups may hold together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheBudget {
    /// Most entries.
    pub max_entries: usize,
    /// Most bytes, as [`cache_footprint`] counts them.
    pub max_bytes: usize,
}

impl Default for CacheBudget {
    fn default() -> Self {
        Self {
            max_entries: CACHE_MAX_ENTRIES,
            max_bytes: CACHE_MAX_BYTES,
        }
    }
}

/// What an entry encoded in `encoded_len` bytes is counted as in the
/// cache: its buffer plus the decoded structures around it (about as much
/// again for many small writes).
fn cache_footprint(encoded_len: usize) -> usize {
    encoded_len.saturating_mul(2).saturating_add(256)
}

/// The newest log entries of one group, consecutive, mirroring the end of
/// its log on disk: every change to the log (append, truncate, purge)
/// changes the cache under the same call, so when the cache is not empty
/// its last entry is the log's last entry. Eviction ([`NodeCaches`]) drops
/// the oldest entries only.
#[derive(Default)]
struct EntryCache {
    entries: VecDeque<(Entry, usize)>,
    bytes: usize,
}

impl EntryCache {
    fn first_index(&self) -> Option<u64> {
        self.entries.front().map(|(e, _)| e.log_id.index)
    }

    fn last_index(&self) -> Option<u64> {
        self.entries.back().map(|(e, _)| e.log_id.index)
    }

    fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }

    /// Adds an entry just written to disk.
    fn push(&mut self, entry: Entry, size: usize) {
        // Not consecutive (first append after a restart, or after a purge
        // that emptied the cache): start over from this entry.
        if self
            .last_index()
            .is_some_and(|last| last.checked_add(1) != Some(entry.log_id.index))
        {
            self.clear();
        }
        self.entries.push_back((entry, size));
        self.bytes += size;
    }

    /// Drops the oldest entry (eviction: the cache still ends where the
    /// log ends).
    fn pop_oldest(&mut self) {
        if let Some((_, s)) = self.entries.pop_front() {
            self.bytes -= s;
        }
    }

    /// Drops entries with index >= `from` (log truncated).
    fn truncate_from(&mut self, from: u64) {
        while self.last_index().is_some_and(|i| i >= from) {
            if let Some((_, s)) = self.entries.pop_back() {
                self.bytes -= s;
            }
        }
    }

    /// Drops entries with index <= `upto` (log purged).
    fn purge_through(&mut self, upto: u64) {
        while self.first_index().is_some_and(|i| i <= upto) {
            if let Some((_, s)) = self.entries.pop_front() {
                self.bytes -= s;
            }
        }
    }

    /// Entries `[from, to)` if the cache holds all of them.
    fn get(&self, from: u64, to: u64) -> Option<Vec<Entry>> {
        let first = self.first_index()?;
        let last = self.last_index()?;
        if from < first || to > last.saturating_add(1) {
            return None;
        }
        let skip = usize::try_from(from - first).ok()?;
        let take = usize::try_from(to.saturating_sub(from)).ok()?;
        Some(
            self.entries
                .iter()
                .skip(skip)
                .take(take)
                .map(|(e, _)| e.clone())
                .collect(),
        )
    }
}

/// The entry caches of every group of a node, under one budget: when the
/// caches together hold more than it allows, the group holding the most
/// (bytes, or entries when the entry count is what is over) loses its
/// oldest entries until they fit. A busy group thus makes room mostly at
/// its own expense, and an idle group's tail stays cached until it is
/// the largest. Every group's cache still mirrors the end of its log.
pub(crate) struct NodeCaches {
    groups: BTreeMap<GroupId, EntryCache>,
    /// Entries in every cache.
    entries: usize,
    /// Bytes in every cache.
    bytes: usize,
    budget: CacheBudget,
}

impl NodeCaches {
    fn new(budget: CacheBudget) -> Self {
        Self {
            groups: BTreeMap::new(),
            entries: 0,
            bytes: 0,
            budget,
        }
    }

    /// Runs `f` on `group`'s cache and keeps the node's totals exact.
    fn change<R>(&mut self, group: GroupId, f: impl FnOnce(&mut EntryCache) -> R) -> R {
        let cache = self.groups.entry(group).or_default();
        let (entries, bytes) = (cache.entries.len(), cache.bytes);
        let r = f(cache);
        self.entries = self.entries - entries + cache.entries.len();
        self.bytes = self.bytes - bytes + cache.bytes;
        r
    }

    fn push(&mut self, group: GroupId, entry: Entry, size: usize) {
        self.change(group, |c| c.push(entry, size));
        self.evict();
    }

    fn truncate_from(&mut self, group: GroupId, from: u64) {
        self.change(group, |c| c.truncate_from(from));
    }

    fn purge_through(&mut self, group: GroupId, upto: u64) {
        self.change(group, |c| c.purge_through(upto));
    }

    fn clear(&mut self, group: GroupId) {
        self.change(group, EntryCache::clear);
    }

    /// Forgets `group` (closed): its entries no longer count.
    pub(crate) fn remove(&mut self, group: GroupId) {
        self.clear(group);
        self.groups.remove(&group);
    }

    fn clear_all(&mut self) {
        self.groups.values_mut().for_each(EntryCache::clear);
        self.entries = 0;
        self.bytes = 0;
    }

    fn get(&self, group: GroupId, from: u64, to: u64) -> Option<Vec<Entry>> {
        self.groups.get(&group)?.get(from, to)
    }

    /// Drops the oldest entries of the largest caches until every cache
    /// together fits the budget.
    fn evict(&mut self) {
        loop {
            let by_bytes = self.bytes > self.budget.max_bytes;
            if !by_bytes && self.entries <= self.budget.max_entries {
                return;
            }
            let largest = self
                .groups
                .iter()
                .filter(|(_, c)| !c.entries.is_empty())
                .max_by_key(|(_, c)| if by_bytes { c.bytes } else { c.entries.len() })
                .map(|(g, _)| *g);
            match largest {
                Some(group) => self.change(group, EntryCache::pop_oldest),
                // Unreachable while the totals are exact; never spin.
                None => return,
            }
        }
    }
}

/// The part of the log every group of a node shares: the database, the
/// one sync thread and the entry caches' budget. Cheap to clone.
#[derive(Clone)]
pub(crate) struct NodeLog {
    store: Store,
    syncer: Arc<Syncer>,
    caches: Arc<Mutex<NodeCaches>>,
}

impl NodeLog {
    /// Starts the node's sync thread.
    pub(crate) fn start(store: Store, budget: CacheBudget) -> io::Result<Self> {
        let syncer = Syncer::start(store.clone())?;
        Ok(Self {
            store,
            syncer: Arc::new(syncer),
            caches: Arc::new(Mutex::new(NodeCaches::new(budget))),
        })
    }

    /// The log store of `layout`'s group.
    pub(crate) fn group(&self, layout: GroupLayout) -> LogStore {
        LogStore {
            store: self.store.clone(),
            layout,
            syncer: self.syncer.clone(),
            caches: self.caches.clone(),
        }
    }

    /// Drops `group`'s cached entries and its share of the budget.
    pub(crate) fn forget(&self, group: GroupId) {
        lock_caches(&self.caches).remove(group);
    }
}

/// The caches are only a copy: if a panic poisoned the lock, empty them
/// all and go on (reads then come from disk).
fn lock_caches(caches: &Mutex<NodeCaches>) -> MutexGuard<'_, NodeCaches> {
    caches.lock().unwrap_or_else(|poisoned| {
        let mut guard = poisoned.into_inner();
        guard.clear_all();
        guard
    })
}

/// The Raft log store of one group. Cheap to clone (all clones, and the
/// stores of the node's other groups, share one syncer and one cache
/// budget).
#[derive(Clone)]
pub struct LogStore {
    store: Store,
    layout: GroupLayout,
    syncer: Arc<Syncer>,
    caches: Arc<Mutex<NodeCaches>>,
}

impl LogStore {
    /// The group this log belongs to.
    pub fn group(&self) -> GroupId {
        self.layout.group()
    }

    fn caches(&self) -> MutexGuard<'_, NodeCaches> {
        lock_caches(&self.caches)
    }

    /// Every entry the log holds in `[from, to_exclusive)`, read in scans
    /// of at most [`MAX_ENTRIES_PER_READ`]: missing entries are tolerated
    /// only before the first (purged) and after the last (not appended);
    /// a hole is an error. openraft requires the whole range.
    fn read_entries(&self, from: u64, to_exclusive: u64) -> io::Result<Vec<Entry>> {
        let mut out: Vec<Entry> = Vec::new();
        let mut next = from;
        while next < to_exclusive {
            let chunk = self.read_chunk(next, to_exclusive)?;
            let full = chunk.len() == MAX_ENTRIES_PER_READ;
            if let (Some(prev), Some(first)) = (out.last(), chunk.first()) {
                if first.log_id.index != prev.log_id.index.saturating_add(1) {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "log has a hole: expected index {}, found {}",
                            prev.log_id.index.saturating_add(1),
                            first.log_id.index
                        ),
                    ));
                }
            }
            let Some(last) = chunk.last().map(|e| e.log_id.index) else {
                break;
            };
            out.extend(chunk);
            if !full {
                break;
            }
            next = last.saturating_add(1);
        }
        Ok(out)
    }

    /// The entries of `[from, to)`, from the cache when it holds them all.
    fn entries(&self, from: u64, to: u64) -> io::Result<Vec<Entry>> {
        if from >= to {
            return Ok(Vec::new());
        }
        if let Some(entries) = self.caches().get(self.group(), from, to) {
            return Ok(entries);
        }
        self.read_entries(from, to)
    }

    /// One scan: at most [`MAX_ENTRIES_PER_READ`] entries from `from`.
    fn read_chunk(&self, from: u64, to_exclusive: u64) -> io::Result<Vec<Entry>> {
        if from >= to_exclusive {
            return Ok(Vec::new());
        }
        let rows = self
            .store
            .scan(
                self.layout.log_cf(),
                &self.layout.log_key(from),
                &self.layout.log_key(to_exclusive),
                MAX_ENTRIES_PER_READ,
            )
            .map_err(io::Error::other)?;
        let mut out = Vec::with_capacity(rows.len());
        // Entries before the first one may be purged; after it there must
        // be no gap.
        let mut expected: Option<u64> = None;
        for (key, value) in rows {
            let index = self.layout.index_of_log_key(&key)?;
            let entry = codec::decode_entry(&value)?;
            if index != entry.log_id.index {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("log key {index} holds entry {}", entry.log_id),
                ));
            }
            // A hole means the log is corrupt; openraft must not see a gap.
            if let Some(want) = expected {
                if index != want {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("log has a hole: expected index {want}, found {index}"),
                    ));
                }
            }
            expected = Some(index.saturating_add(1));
            out.push(entry);
        }
        Ok(out)
    }

    fn read_meta(&self, name: StateName) -> io::Result<Option<Vec<u8>>> {
        self.store
            .get(self.layout.state_cf(), &self.layout.state_key(name))
            .map_err(io::Error::other)
    }

    /// The group's first (`rev` false) or last log row.
    fn end_row(&self, rev: bool) -> io::Result<Option<(Vec<u8>, Vec<u8>)>> {
        let (cf, from, to) = (
            self.layout.log_cf(),
            self.layout.log_key(0),
            self.layout.log_end(),
        );
        let rows = if rev {
            self.store.scan_rev(cf, &from, &to, 1)
        } else {
            self.store.scan(cf, &from, &to, 1)
        };
        Ok(rows.map_err(io::Error::other)?.into_iter().next())
    }

    /// Number of log entries on disk and the last purged index, for INFO.
    pub fn stats(&self) -> io::Result<(u64, Option<u64>)> {
        let purged = match self.read_meta(StateName::LastPurged)? {
            Some(b) => Some(codec::decode_log_id(&b)?.index),
            None => None,
        };
        let count = match (self.end_row(false)?, self.end_row(true)?) {
            (Some((f, _)), Some((l, _))) => {
                let f = self.layout.index_of_log_key(&f)?;
                let l = self.layout.index_of_log_key(&l)?;
                l.saturating_sub(f).saturating_add(1)
            }
            _ => 0,
        };
        Ok((count, purged))
    }
}

fn range_to_bounds<RB: RangeBounds<u64>>(range: &RB) -> (u64, u64) {
    let start = match range.start_bound() {
        Bound::Included(x) => *x,
        Bound::Excluded(x) => x.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(x) => x.saturating_add(1),
        Bound::Excluded(x) => *x,
        Bound::Unbounded => u64::MAX,
    };
    (start, end)
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        let (from, to) = range_to_bounds(&range);
        self.entries(from, to)
    }

    /// At most [`MAX_ENTRIES_PER_READ`] entries from `start` (replication
    /// asks for its batches this way).
    async fn limited_get_log_entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> Result<Vec<Entry>, io::Error> {
        let cap = u64::try_from(MAX_ENTRIES_PER_READ).unwrap_or(u64::MAX);
        self.entries(start, end.min(start.saturating_add(cap)))
    }

    /// The range's entries as a stream read [`MAX_ENTRIES_PER_READ`] at a
    /// time, so applying a long run of entries (after a restart, say)
    /// never holds all of them in memory.
    async fn entries_stream<RB>(
        &mut self,
        range: RB,
    ) -> impl futures::Stream<Item = Result<Entry, io::Error>> + OptionalSend
    where
        RB: RangeBounds<u64> + Clone + Debug + OptionalSend,
    {
        use futures::StreamExt;
        let (from, to) = range_to_bounds(&range);
        let reader = self.clone();
        let cap = u64::try_from(MAX_ENTRIES_PER_READ).unwrap_or(u64::MAX);
        // State: the next index, and whether an entry was read already (a
        // later chunk must start exactly there: a gap is a hole).
        futures::stream::unfold(Some((from, false)), move |state| {
            let reader = reader.clone();
            async move {
                let (next, started) = state.filter(|(n, _)| *n < to)?;
                let chunk_end = to.min(next.saturating_add(cap));
                let entries = match reader.entries(next, chunk_end) {
                    Err(e) => return Some((vec![Err(e)], None)),
                    Ok(entries) => entries,
                };
                if let Some(first) = entries.first().filter(|_| started) {
                    if first.log_id.index != next {
                        let hole = io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!(
                                "log has a hole: expected index {next}, found {}",
                                first.log_id.index
                            ),
                        );
                        return Some((vec![Err(hole)], None));
                    }
                }
                // A chunk that ends early reached the end of the log.
                let after = entries.last().map(|e| e.log_id.index.saturating_add(1));
                let more = after.filter(|a| *a == chunk_end).map(|a| (a, true));
                Some((entries.into_iter().map(Ok).collect::<Vec<_>>(), more))
            }
        })
        .flat_map(futures::stream::iter)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        match self.read_meta(StateName::Vote)? {
            Some(b) => Ok(Some(codec::decode_vote(&b)?)),
            None => Ok(None),
        }
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        let last_purged_log_id = match self.read_meta(StateName::LastPurged)? {
            Some(b) => Some(codec::decode_log_id(&b)?),
            None => None,
        };
        let last_log_id = match self.end_row(true)? {
            Some((_, v)) => Some(codec::decode_entry(&v)?.log_id),
            None => last_purged_log_id,
        };
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        let mut batch = Batch::default();
        batch.put(
            self.layout.state_cf(),
            &self.layout.state_key(StateName::Vote),
            &codec::encode_vote(vote),
        );
        let store = self.store.clone();
        // The vote is fsynced before we return: a node must never vote twice
        // in one term, even across a crash.
        tokio::task::spawn_blocking(move || store.write(batch, true))
            .await
            .map_err(io::Error::other)?
            .map_err(io::Error::other)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        let mut batch = Batch::default();
        let (cf, key) = (
            self.layout.state_cf(),
            self.layout.state_key(StateName::Committed),
        );
        match committed {
            Some(id) => batch.put(cf, &key, &codec::encode_log_id(&id)),
            None => batch.delete(cf, &key),
        }
        // Not synced: the committed index is a hint that speeds up restart;
        // losing it only means re-learning it from the leader.
        self.store.write(batch, false).map_err(io::Error::other)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        match self.read_meta(StateName::Committed)? {
            Some(b) => Ok(Some(codec::decode_log_id(&b)?)),
            None => Ok(None),
        }
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: IOFlushed<TypeConfig>,
    ) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut batch = Batch::default();
        let mut encoded_entries = Vec::new();
        for entry in entries {
            let encoded = codec::encode_entry(&entry);
            batch.put(
                self.layout.log_cf(),
                &self.layout.log_key(entry.log_id.index),
                &encoded,
            );
            encoded_entries.push(encoded);
        }
        // Written now so the entries are readable when we return; durable
        // only once the syncer's fsync completes the callback. Readers that
        // look before the cache has them read the disk.
        let started = Instant::now();
        let group = self.group();
        if let Err(e) = self.store.write(batch, false) {
            self.caches().clear(group);
            return Err(io::Error::other(e));
        }
        // Cache copies decoded from the exact encoded bytes: the entries
        // openraft handed us may share a client's or a peer's much larger
        // read buffer, which the cache must not keep alive.
        let cached: Result<Vec<_>, _> = encoded_entries
            .into_iter()
            .map(|encoded| {
                let size = cache_footprint(encoded.len());
                codec::decode_entry_shared(Bytes::from(encoded)).map(|e| (e, size))
            })
            .collect();
        let mut caches = self.caches();
        match cached {
            Ok(entries) => entries
                .into_iter()
                .for_each(|(e, size)| caches.push(group, e, size)),
            // The disk has the entries; only the copy failed: read from disk.
            Err(e) => {
                tracing::warn!(error = %e, group, "log cache: cannot decode an appended entry");
                caches.clear(group);
            }
        }
        drop(caches);
        stages::record_since(Stage::LogWrite, started);
        self.syncer.submit(callback, started)
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        let from = last_log_id.map_or(0, |id| id.index.saturating_add(1));
        let mut batch = Batch::default();
        batch.delete_range(
            self.layout.log_cf(),
            &self.layout.log_key(from),
            &self.layout.log_end(),
        );
        // Ordered in the WAL before any later append, whose fsync makes it
        // durable too.
        let group = self.group();
        let mut caches = self.caches();
        caches.truncate_from(group, from);
        self.store.write(batch, false).map_err(|e| {
            caches.clear(group);
            io::Error::other(e)
        })
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        let mut batch = Batch::default();
        // The purge marker and the deletion commit together.
        batch.put(
            self.layout.state_cf(),
            &self.layout.state_key(StateName::LastPurged),
            &codec::encode_log_id(&log_id),
        );
        // `index + 1` may wrap to 0 only for `u64::MAX`, whose purge
        // covers the whole log.
        let end = match log_id.index.checked_add(1) {
            Some(next) => self.layout.log_key(next),
            None => self.layout.log_end(),
        };
        batch.delete_range(self.layout.log_cf(), &self.layout.log_key(0), &end);
        let group = self.group();
        let mut caches = self.caches();
        caches.purge_through(group, log_id.index);
        self.store.write(batch, false).map_err(|e| {
            caches.clear(group);
            io::Error::other(e)
        })
    }
}

/// Most callbacks one fsync completes; bounds the latency of the last one.
pub const MAX_CALLBACKS_PER_SYNC: usize = 4096;

/// The node's one thread that turns queued "flushed" callbacks, of every
/// group, into one WAL fsync per batch.
struct Syncer {
    tx: Option<mpsc::Sender<(IOFlushed<TypeConfig>, Instant)>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Syncer {
    fn start(store: Store) -> io::Result<Self> {
        let (tx, rx) = mpsc::channel::<(IOFlushed<TypeConfig>, Instant)>();
        let thread = std::thread::Builder::new()
            .name("seshat-log-sync".into())
            .spawn(move || sync_loop(store, rx))?;
        Ok(Self {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    /// Queues `callback` for the next fsync; `appended` is when its
    /// entries were written.
    fn submit(&self, callback: IOFlushed<TypeConfig>, appended: Instant) -> io::Result<()> {
        self.tx
            .as_ref()
            .ok_or_else(|| io::Error::other("log sync thread has stopped"))?
            .send((callback, appended))
            .map_err(|_| io::Error::other("log sync thread has stopped"))
    }
}

impl Drop for Syncer {
    /// Stops the thread and waits for it, so its handle on the database is
    /// released before the database is closed.
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("log sync thread panicked");
            }
        }
    }
}

fn sync_loop(store: Store, rx: mpsc::Receiver<(IOFlushed<TypeConfig>, Instant)>) {
    let mut pending = Vec::new();
    // Ends when every LogStore clone (and so every sender) is dropped.
    while let Ok(first) = rx.recv() {
        pending.push(first);
        while pending.len() < MAX_CALLBACKS_PER_SYNC {
            match rx.try_recv() {
                Ok(cb) => pending.push(cb),
                Err(_) => break,
            }
        }
        let started = Instant::now();
        let result = store.sync_wal();
        stages::record_since(Stage::LogSync, started);
        for (cb, appended) in pending.drain(..) {
            stages::record_since(Stage::LogDurable, appended);
            let r = match &result {
                Ok(()) => Ok(()),
                Err(e) => Err(io::Error::other(e.to_string())),
            };
            cb.io_completed(r);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::CommittedLeaderId;
    use openraft::EntryPayload;
    use proptest::prelude::*;
    use seshat_storage::Cf;

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            log_id: LogId::new(CommittedLeaderId { term, node_id: 1 }, index),
            payload: EntryPayload::Blank,
        }
    }

    fn layout(group: GroupId) -> GroupLayout {
        GroupLayout::new(group).unwrap()
    }

    /// Writes entries `indexes` of `group` straight into its log family.
    fn write_log(store: &Store, group: GroupId, indexes: impl Iterator<Item = u64>) {
        let layout = layout(group);
        let mut batch = Batch::default();
        for i in indexes {
            batch.put(
                layout.log_cf(),
                &layout.log_key(i),
                &codec::encode_entry(&entry(i, 1)),
            );
        }
        store.write(batch, false).unwrap();
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    /// Regression: `try_get_log_entries` stopped after 65,536 entries,
    /// while openraft requires every entry of the range (a replica could
    /// skip applying entries). The logs of the groups around it (one
    /// below, one above, in the same family) never leak into its reads.
    #[test]
    fn long_ranges_come_back_whole_and_streamed_in_bounded_chunks() {
        use futures::StreamExt;
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path(), &seshat_storage::StoreOptions::default()).unwrap();
        // More than the old cap (65,536) and than two scans.
        let n = (MAX_ENTRIES_PER_READ * 2 + 17).max(65_536 + 100) as u64;
        write_log(&store, 2, 5..5 + n);
        write_log(&store, 1, 0..5 + n + 10);
        write_log(&store, 3, 0..3);
        let node = NodeLog::start(store.clone(), CacheBudget::default()).unwrap();
        let mut log = node.group(layout(2));
        let all = block_on(log.try_get_log_entries(0..u64::MAX)).unwrap();
        assert_eq!(all.len() as u64, n);
        assert_eq!(all.first().map(|e| e.log_id.index), Some(5));
        assert!(all
            .windows(2)
            .all(|w| w[1].log_id.index == w[0].log_id.index + 1));
        assert_eq!(log.stats().unwrap(), (n, None));
        let state = block_on(log.get_log_state()).unwrap();
        assert_eq!(state.last_log_id.map(|l| l.index), Some(5 + n - 1));
        let streamed: Vec<Entry> = block_on(async {
            log.entries_stream(5..5 + n)
                .await
                .map(|e| e.unwrap())
                .collect()
                .await
        });
        assert_eq!(streamed, all);
        let limited = block_on(log.limited_get_log_entries(5, 5 + n)).unwrap();
        assert_eq!(limited.len(), MAX_ENTRIES_PER_READ);
        // A hole after the first chunk is an error, never a short read.
        let hole = 5 + MAX_ENTRIES_PER_READ as u64 + 3;
        let mut b = Batch::default();
        b.delete(Cf::DataRaftLog, &layout(2).log_key(hole));
        store.write(b, false).unwrap();
        assert!(block_on(log.try_get_log_entries(0..u64::MAX)).is_err());
        let results: Vec<Result<Entry, io::Error>> =
            block_on(async { log.entries_stream(5..5 + n).await.collect().await });
        assert!(
            results.iter().any(|r| r.is_err()),
            "the stream reports the hole"
        );
    }

    /// Truncating or purging one group's log leaves its neighbours' whole,
    /// and every group of a node shares the one sync thread.
    #[test]
    fn truncate_and_purge_stay_inside_their_group() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path(), &seshat_storage::StoreOptions::default()).unwrap();
        for g in 1..=3 {
            write_log(&store, g, 0..100);
        }
        let node = NodeLog::start(store.clone(), CacheBudget::default()).unwrap();
        let mut two = node.group(layout(2));
        block_on(two.truncate_after(Some(entry(59, 1).log_id))).unwrap();
        block_on(two.purge(entry(9, 1).log_id)).unwrap();
        assert_eq!(two.stats().unwrap(), (50, Some(9)));
        for g in [1, 3] {
            assert_eq!(
                node.group(layout(g)).stats().unwrap(),
                (100, None),
                "group {g}"
            );
        }
        // The system group's log is in its own family.
        write_log(&store, 0, 0..7);
        assert_eq!(node.group(layout(0)).stats().unwrap(), (7, None));
        assert_eq!(node.group(layout(1)).stats().unwrap(), (100, None));
        let one = node.group(layout(1));
        assert!(Arc::ptr_eq(&one.syncer, &two.syncer));
        assert!(Arc::ptr_eq(&one.caches, &two.caches));
    }

    #[derive(Debug, Clone)]
    enum Change {
        Append(u64, usize),
        Truncate(u64),
        Purge(u64),
        Read(u64, u64),
    }

    proptest! {
        /// Whatever a group's cache answers is exactly what its log
        /// (modelled as a map) holds — it never invents, drops or reorders
        /// entries, nor answers with another group's — while the caches of
        /// three groups together never exceed the node's budget, and each
        /// non-empty cache ends where its log ends.
        #[test]
        fn caches_answer_like_their_logs_within_one_budget(changes in prop::collection::vec(
            (0u32..3, prop_oneof![
                4 => (1u64..40, 1usize..30).prop_map(|(n, size)| Change::Append(n, size)),
                1 => (0u64..200).prop_map(Change::Truncate),
                1 => (0u64..200).prop_map(Change::Purge),
                4 => (0u64..200, 0u64..60).prop_map(|(f, n)| Change::Read(f, f + n)),
            ]),
            0..80,
        )) {
            let budget = CacheBudget { max_entries: 60, max_bytes: 700 };
            let mut caches = NodeCaches::new(budget);
            let mut logs: BTreeMap<GroupId, BTreeMap<u64, Entry>> = BTreeMap::new();
            let mut term = 1;
            for (group, change) in changes {
                let log = logs.entry(group).or_default();
                match change {
                    Change::Append(n, size) => {
                        term += 1;
                        let next = log.keys().next_back().map_or(0, |l| l + 1);
                        for i in next..next + n {
                            // The group in the leader id tells groups apart.
                            let mut e = entry(i, term);
                            e.log_id.leader_id.node_id = u64::from(group);
                            log.insert(i, e.clone());
                            caches.push(group, e, size);
                        }
                    }
                    Change::Truncate(from) => {
                        log.retain(|i, _| *i < from);
                        caches.truncate_from(group, from);
                    }
                    Change::Purge(upto) => {
                        log.retain(|i, _| *i > upto);
                        caches.purge_through(group, upto);
                    }
                    Change::Read(from, to) => {
                        if let Some(got) = caches.get(group, from, to) {
                            let want: Vec<Entry> =
                                log.range(from..to).map(|(_, e)| e.clone()).collect();
                            prop_assert_eq!(got, want);
                        }
                    }
                }
                prop_assert!(caches.entries <= budget.max_entries);
                prop_assert!(caches.bytes <= budget.max_bytes);
                let entries: usize = caches.groups.values().map(|c| c.entries.len()).sum();
                let bytes: usize = caches.groups.values().map(|c| c.bytes).sum();
                prop_assert_eq!((caches.entries, caches.bytes), (entries, bytes));
                for (g, cache) in &caches.groups {
                    if let Some(last) = cache.last_index() {
                        let log = logs.get(g).map(|l| l.keys().next_back().copied());
                        prop_assert_eq!(Some(Some(last)), log);
                    }
                }
            }
        }
    }

    /// The budget is the node's: a busy group fills it and then evicts its
    /// own oldest entries, while a quiet group keeps its recent tail.
    #[test]
    fn one_budget_for_every_group() {
        let mut caches = NodeCaches::new(CacheBudget::default());
        for i in 0..10 {
            caches.push(2, entry(i, 1), 1);
        }
        let busy = CACHE_MAX_ENTRIES as u64 + 100;
        for i in 0..busy {
            caches.push(1, entry(i, 1), 1);
        }
        assert_eq!(caches.entries, CACHE_MAX_ENTRIES);
        assert_eq!(caches.get(2, 0, 10).map(|e| e.len()), Some(10));
        let one = &caches.groups[&1];
        assert_eq!(one.entries.len(), CACHE_MAX_ENTRIES - 10);
        assert_eq!(one.last_index(), Some(busy - 1));
        // Bytes: four entries of a quarter of the budget do not all fit.
        let big = CACHE_MAX_BYTES / 4 + 1;
        for i in 0..4u64 {
            caches.push(3, entry(i, 1), big);
        }
        assert!(caches.bytes <= CACHE_MAX_BYTES);
        assert_eq!(caches.groups[&3].last_index(), Some(3));
        // Reads outside what a cache holds go to disk.
        assert!(caches.get(1, 0, 10).is_none());
        assert!(caches.get(4, 0, 1).is_none());
        // A closed group's entries no longer count.
        let before = caches.entries;
        caches.remove(2);
        assert_eq!(caches.entries, before - 10);
    }
}
