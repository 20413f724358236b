//! The Raft log on RocksDB (`data_raft_log`, `data_raft_state`), with group
//! commit.
//!
//! `append` writes its entries to RocksDB immediately (without fsync) so
//! they can be read back at once, then queues openraft's "flushed" callback
//! to the [`Syncer`] thread. The syncer takes every callback queued so far,
//! issues one WAL fsync, and completes them all in order: one fsync serves
//! every append that arrived while the previous fsync ran.
//!
//! The newest entries are also kept in memory ([`EntryCache`]): replication
//! to each follower and apply read entries that were appended moments ago,
//! and serving them from memory saves a RocksDB scan and a decode per read.

use std::collections::VecDeque;
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
use seshat_storage::{Batch, Cf, Store};

use crate::codec::{self, log_key};
use crate::types::{Entry, LogId, TypeConfig, Vote};

const KEY_VOTE: &[u8] = b"vote";
const KEY_LAST_PURGED: &[u8] = b"last_purged";
const KEY_COMMITTED: &[u8] = b"committed";

/// Most entries read from RocksDB in one scan; longer ranges are read in
/// several. Also the most `limited_get_log_entries` returns (replication
/// batches are bounded further by openraft's `max_payload_entries`), and
/// the chunk `entries_stream` reads at a time, so applying a long run of
/// entries holds at most this many in memory.
pub const MAX_ENTRIES_PER_READ: usize = 4096;

/// Most entries the in-memory cache keeps.
pub const CACHE_MAX_ENTRIES: usize = 8192;
/// Most encoded bytes of entries the in-memory cache keeps.
pub const CACHE_MAX_BYTES: usize = 32 * 1024 * 1024;

/// What an entry encoded in `encoded_len` bytes is counted as in the
/// cache: its buffer plus the decoded structures around it (about as much
/// again for many small writes).
fn cache_footprint(encoded_len: usize) -> usize {
    encoded_len.saturating_mul(2).saturating_add(256)
}

/// The newest log entries, consecutive, mirroring the end of the log on
/// disk: every change to the log (append, truncate, purge) changes the
/// cache under the same call, so when the cache is not empty its last
/// entry is the log's last entry. Eviction drops the oldest entries only.
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
        while self.entries.len() > CACHE_MAX_ENTRIES || self.bytes > CACHE_MAX_BYTES {
            match self.entries.pop_front() {
                Some((_, s)) => self.bytes -= s,
                None => break,
            }
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

/// The Raft log store. Cheap to clone (all clones share one syncer and one
/// entry cache).
#[derive(Clone)]
pub struct LogStore {
    store: Store,
    syncer: Arc<Syncer>,
    cache: Arc<Mutex<EntryCache>>,
}

impl LogStore {
    /// Builds the log store on an opened database and starts its syncer.
    pub fn new(store: Store) -> io::Result<Self> {
        let syncer = Syncer::start(store.clone())?;
        Ok(Self {
            store,
            syncer: Arc::new(syncer),
            cache: Arc::default(),
        })
    }

    fn cache(&self) -> MutexGuard<'_, EntryCache> {
        // The cache is only a copy: if a panic poisoned the lock, empty it
        // and go on (reads then come from disk).
        self.cache.lock().unwrap_or_else(|poisoned| {
            let mut guard = poisoned.into_inner();
            guard.clear();
            guard
        })
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
        if let Some(entries) = self.cache().get(from, to) {
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
                Cf::DataRaftLog,
                &log_key(from),
                &log_key(to_exclusive),
                MAX_ENTRIES_PER_READ,
            )
            .map_err(io::Error::other)?;
        let mut out = Vec::with_capacity(rows.len());
        // Entries before the first one may be purged; after it there must
        // be no gap.
        let mut expected: Option<u64> = None;
        for (key, value) in rows {
            let index = codec::index_of_log_key(&key)?;
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

    fn read_meta(&self, key: &[u8]) -> io::Result<Option<Vec<u8>>> {
        self.store
            .get(Cf::DataRaftState, key)
            .map_err(io::Error::other)
    }

    /// Number of log entries on disk and the last purged index, for INFO.
    pub fn stats(&self) -> io::Result<(u64, Option<u64>)> {
        let first = self
            .store
            .scan(Cf::DataRaftLog, &log_key(0), &log_key(u64::MAX), 1)
            .map_err(io::Error::other)?;
        let last = self.store.last(Cf::DataRaftLog).map_err(io::Error::other)?;
        let purged = match self.read_meta(KEY_LAST_PURGED)? {
            Some(b) => Some(codec::decode_log_id(&b)?.index),
            None => None,
        };
        let count = match (first.first(), last) {
            (Some((f, _)), Some((l, _))) => {
                let f = codec::index_of_log_key(f)?;
                let l = codec::index_of_log_key(&l)?;
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
        match self.read_meta(KEY_VOTE)? {
            Some(b) => Ok(Some(codec::decode_vote(&b)?)),
            None => Ok(None),
        }
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        let last_purged_log_id = match self.read_meta(KEY_LAST_PURGED)? {
            Some(b) => Some(codec::decode_log_id(&b)?),
            None => None,
        };
        let last = self.store.last(Cf::DataRaftLog).map_err(io::Error::other)?;
        let last_log_id = match last {
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
        batch.put(Cf::DataRaftState, KEY_VOTE, &codec::encode_vote(vote));
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
        match committed {
            Some(id) => batch.put(Cf::DataRaftState, KEY_COMMITTED, &codec::encode_log_id(&id)),
            None => batch.delete(Cf::DataRaftState, KEY_COMMITTED),
        }
        // Not synced: the committed index is a hint that speeds up restart;
        // losing it only means re-learning it from the leader.
        self.store.write(batch, false).map_err(io::Error::other)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        match self.read_meta(KEY_COMMITTED)? {
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
            batch.put(Cf::DataRaftLog, &log_key(entry.log_id.index), &encoded);
            encoded_entries.push(encoded);
        }
        // Written now so the entries are readable when we return; durable
        // only once the syncer's fsync completes the callback. Readers that
        // look before the cache has them read the disk.
        let started = Instant::now();
        if let Err(e) = self.store.write(batch, false) {
            self.cache().clear();
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
        let mut cache = self.cache();
        match cached {
            Ok(entries) => entries
                .into_iter()
                .for_each(|(e, size)| cache.push(e, size)),
            // The disk has the entries; only the copy failed: read from disk.
            Err(e) => {
                tracing::warn!(error = %e, "log cache: cannot decode an appended entry");
                cache.clear();
            }
        }
        drop(cache);
        stages::record_since(Stage::LogWrite, started);
        self.syncer.submit(callback, started)
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        let from = last_log_id.map_or(0, |id| id.index.saturating_add(1));
        let mut batch = Batch::default();
        batch.delete_range(Cf::DataRaftLog, &log_key(from), &log_key(u64::MAX));
        batch.delete(Cf::DataRaftLog, &log_key(u64::MAX));
        // Ordered in the WAL before any later append, whose fsync makes it
        // durable too.
        let mut cache = self.cache();
        cache.truncate_from(from);
        self.store.write(batch, false).map_err(|e| {
            cache.clear();
            io::Error::other(e)
        })
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        let mut batch = Batch::default();
        // The purge marker and the deletion commit together.
        batch.put(
            Cf::DataRaftState,
            KEY_LAST_PURGED,
            &codec::encode_log_id(&log_id),
        );
        batch.delete_range(
            Cf::DataRaftLog,
            &log_key(0),
            &log_key(log_id.index.saturating_add(1)),
        );
        let mut cache = self.cache();
        cache.purge_through(log_id.index);
        self.store.write(batch, false).map_err(|e| {
            cache.clear();
            io::Error::other(e)
        })
    }
}

/// Most callbacks one fsync completes; bounds the latency of the last one.
pub const MAX_CALLBACKS_PER_SYNC: usize = 4096;

/// A dedicated thread that turns queued "flushed" callbacks into one WAL
/// fsync per batch.
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
    use std::collections::BTreeMap;

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            log_id: LogId::new(CommittedLeaderId { term, node_id: 1 }, index),
            payload: EntryPayload::Blank,
        }
    }

    /// Writes entries `indexes` straight into the log column family.
    fn write_log(store: &Store, indexes: impl Iterator<Item = u64>) {
        let mut batch = Batch::default();
        for i in indexes {
            batch.put(
                Cf::DataRaftLog,
                &log_key(i),
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
    /// skip applying entries).
    #[test]
    fn long_ranges_come_back_whole_and_streamed_in_bounded_chunks() {
        use futures::StreamExt;
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path(), &seshat_storage::StoreOptions::default()).unwrap();
        // More than the old cap (65,536) and than two scans.
        let n = (MAX_ENTRIES_PER_READ * 2 + 17).max(65_536 + 100) as u64;
        write_log(&store, 5..5 + n);
        let mut log = LogStore::new(store.clone()).unwrap();
        let all = block_on(log.try_get_log_entries(0..u64::MAX)).unwrap();
        assert_eq!(all.len() as u64, n);
        assert!(all
            .windows(2)
            .all(|w| w[1].log_id.index == w[0].log_id.index + 1));
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
        b.delete(Cf::DataRaftLog, &log_key(hole));
        store.write(b, false).unwrap();
        assert!(block_on(log.try_get_log_entries(0..u64::MAX)).is_err());
        let results: Vec<Result<Entry, io::Error>> =
            block_on(async { log.entries_stream(5..5 + n).await.collect().await });
        assert!(
            results.iter().any(|r| r.is_err()),
            "the stream reports the hole"
        );
    }

    #[derive(Debug, Clone)]
    enum Change {
        Append(u64),
        Truncate(u64),
        Purge(u64),
        Read(u64, u64),
    }

    proptest! {
        /// Whatever the cache answers is exactly what the log (modelled as
        /// a map) holds; it never invents, drops or reorders entries.
        #[test]
        fn cache_answers_match_the_log(changes in prop::collection::vec(
            prop_oneof![
                4 => (1u64..40).prop_map(Change::Append),
                1 => (0u64..200).prop_map(Change::Truncate),
                1 => (0u64..200).prop_map(Change::Purge),
                4 => (0u64..200, 0u64..60).prop_map(|(f, n)| Change::Read(f, f + n)),
            ],
            0..60,
        )) {
            let mut cache = EntryCache::default();
            let mut log: BTreeMap<u64, Entry> = BTreeMap::new();
            let mut term = 1;
            for change in changes {
                match change {
                    Change::Append(n) => {
                        term += 1;
                        let next = log.keys().next_back().map_or(0, |l| l + 1);
                        for i in next..next + n {
                            log.insert(i, entry(i, term));
                            cache.push(entry(i, term), 10);
                        }
                    }
                    Change::Truncate(from) => {
                        log.retain(|i, _| *i < from);
                        cache.truncate_from(from);
                    }
                    Change::Purge(upto) => {
                        log.retain(|i, _| *i > upto);
                        cache.purge_through(upto);
                    }
                    Change::Read(from, to) => {
                        if let Some(got) = cache.get(from, to) {
                            let want: Vec<Entry> =
                                log.range(from..to).map(|(_, e)| e.clone()).collect();
                            prop_assert_eq!(got, want);
                        }
                    }
                }
                // Invariant: a non-empty cache ends where the log ends.
                if let Some(last) = cache.last_index() {
                    prop_assert_eq!(Some(&last), log.keys().next_back());
                }
            }
        }
    }

    #[test]
    fn cache_is_bounded() {
        let mut cache = EntryCache::default();
        for i in 0..(CACHE_MAX_ENTRIES as u64 + 100) {
            cache.push(entry(i, 1), 1);
        }
        assert_eq!(cache.entries.len(), CACHE_MAX_ENTRIES);
        assert_eq!(cache.first_index(), Some(100));
        let big = CACHE_MAX_BYTES / 4 + 1;
        for i in 0..4u64 {
            cache.push(entry(CACHE_MAX_ENTRIES as u64 + 100 + i, 1), big);
        }
        assert!(cache.bytes <= CACHE_MAX_BYTES);
        // Reads outside what it holds go to disk.
        assert!(cache.get(0, 10).is_none());
    }
}
