//! Where requests spend their time: for each stage of the write and read
//! paths, how many times it ran and for how long in total, process-wide.
//!
//! The figures are exported on `/metrics` as `stage_seconds_sum` /
//! `stage_seconds_count` and read by the benchmark (`scripts/bench.sh`) to
//! break one SET down. Recording costs two clock reads and two relaxed
//! atomic adds, so it is always on.
//!
//! ```
//! use seshat_common::stages::{self, Stage};
//! let started = std::time::Instant::now();
//! stages::record(Stage::Apply, started.elapsed());
//! let (count, _nanos) = stages::totals(Stage::Apply);
//! assert!(count >= 1);
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A measured stage. The order is the order a SET goes through them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Parsing a decoded request into a command and, for a write, into an
    /// operation (per command).
    Dispatch,
    /// A write waiting in the proposer's queue until it is taken into a
    /// log entry (per write).
    ProposeQueue,
    /// Handing one log entry to Raft (per entry).
    ProposeHandoff,
    /// Writing appended entries to RocksDB, not yet synced (per append).
    LogWrite,
    /// One WAL fsync by the group-commit thread (per fsync).
    LogSync,
    /// From an append until its fsync completed, waiting for the sync
    /// thread included (per append).
    LogDurable,
    /// Leader: one append request to a follower until its reply, which the
    /// follower sends once the entries are synced on its disk (per request).
    ReplicationRoundTrip,
    /// Applying a batch of committed entries to RocksDB and waking the
    /// writers (per apply batch).
    Apply,
    /// One log entry from hand-off to Raft until its result is back:
    /// append, sync, replication, commit and apply (per entry).
    ProposeToApplied,
    /// A read waiting for the leadership confirmation (ReadIndex round)
    /// that covers it (per read).
    ReadConfirm,
    /// One ReadIndex round: confirm leadership with a majority, wait for
    /// apply to reach the read point (per round, shared by the reads
    /// waiting when it began).
    ReadRound,
    /// Writing queued replies to the client socket (per flush).
    Reply,
}

impl Stage {
    /// Every stage, in order.
    pub const ALL: [Stage; 12] = [
        Stage::Dispatch,
        Stage::ProposeQueue,
        Stage::ProposeHandoff,
        Stage::LogWrite,
        Stage::LogSync,
        Stage::LogDurable,
        Stage::ReplicationRoundTrip,
        Stage::Apply,
        Stage::ProposeToApplied,
        Stage::ReadConfirm,
        Stage::ReadRound,
        Stage::Reply,
    ];

    /// The `stage` label value.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Dispatch => "dispatch",
            Stage::ProposeQueue => "propose_queue",
            Stage::ProposeHandoff => "propose_handoff",
            Stage::LogWrite => "log_write",
            Stage::LogSync => "log_sync",
            Stage::LogDurable => "log_durable",
            Stage::ReplicationRoundTrip => "replication_round_trip",
            Stage::Apply => "apply",
            Stage::ProposeToApplied => "propose_to_applied",
            Stage::ReadConfirm => "read_confirm",
            Stage::ReadRound => "read_round",
            Stage::Reply => "reply",
        }
    }
}

struct Totals {
    count: AtomicU64,
    nanos: AtomicU64,
}

#[allow(clippy::declare_interior_mutable_const)] // used only to build the array
const ZERO: Totals = Totals {
    count: AtomicU64::new(0),
    nanos: AtomicU64::new(0),
};
static TOTALS: [Totals; Stage::ALL.len()] = [ZERO; Stage::ALL.len()];
static BATCHED_ENTRIES: AtomicU64 = AtomicU64::new(0);
static BATCHED_WRITES: AtomicU64 = AtomicU64::new(0);

/// Adds one run of `stage` that took `d`.
pub fn record(stage: Stage, d: Duration) {
    let t = &TOTALS[stage as usize];
    t.count.fetch_add(1, Ordering::Relaxed);
    t.nanos.fetch_add(
        u64::try_from(d.as_nanos()).unwrap_or(u64::MAX),
        Ordering::Relaxed,
    );
}

/// Adds one run of `stage` that started at `started` and ends now.
pub fn record_since(stage: Stage, started: Instant) {
    record(stage, started.elapsed());
}

/// How many times `stage` ran and for how many nanoseconds in total.
pub fn totals(stage: Stage) -> (u64, u64) {
    let t = &TOTALS[stage as usize];
    (
        t.count.load(Ordering::Relaxed),
        t.nanos.load(Ordering::Relaxed),
    )
}

/// Counts one proposed log entry carrying `writes` client writes.
pub fn record_entry(writes: usize) {
    BATCHED_ENTRIES.fetch_add(1, Ordering::Relaxed);
    BATCHED_WRITES.fetch_add(writes as u64, Ordering::Relaxed);
}

/// Log entries proposed for client writes, and the writes they carried.
pub fn entries_and_writes() -> (u64, u64) {
    (
        BATCHED_ENTRIES.load(Ordering::Relaxed),
        BATCHED_WRITES.load(Ordering::Relaxed),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_add_up_per_stage() {
        let (c0, n0) = totals(Stage::LogSync);
        record(Stage::LogSync, Duration::from_micros(3));
        record(Stage::LogSync, Duration::from_micros(5));
        let (c1, n1) = totals(Stage::LogSync);
        assert_eq!(c1 - c0, 2);
        assert!(n1 - n0 >= 8_000);
        let (e0, w0) = entries_and_writes();
        record_entry(7);
        let (e1, w1) = entries_and_writes();
        assert_eq!((e1 - e0, w1 - w0), (1, 7));
        for (i, s) in Stage::ALL.iter().enumerate() {
            assert_eq!(*s as usize, i, "ALL is in declaration order");
        }
    }
}
