//! A running node: storage, the Raft instance, and the request paths the
//! RESP server uses — [`Node::propose`]/[`Node::finish`] for writes,
//! [`Node::read`] for reads after a barrier — with every Raft outcome
//! mapped to a client-facing [`ServeError`]. It also runs the leader's
//! expiry sweep ([`run_expiry_sweeper`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Context;
use bytes::Bytes;
use openraft::errors::{ClientWriteError, ForwardToLeader, LinearizableReadError, RaftError};
use openraft::impls::ProgressResponder;
use openraft::raft::ClientWriteResult;
use openraft::type_config::async_runtime::WatchReceiver;
use openraft::{ReadPolicy, SnapshotPolicy};
use seshat_commands::Decl;
use seshat_kv::{Counts, Keyspace, Watch, Write, WriteBatch};
use seshat_protocol_resp::Frame;
use seshat_raft::log_store::LogStore;
use seshat_raft::network::Network;
use seshat_raft::peer_tls::PeerTls;
use seshat_raft::state_machine::{ReadView, SmStats};
use seshat_raft::{Raft, SeshatNode, TypeConfig};
use seshat_storage::Store;

use seshat_common::stages::{self, Stage};
use std::time::Instant;
use tokio::sync::{mpsc, oneshot, watch};

use crate::config::Settings;

/// Why a request was not served. `Display` is the exact RESP error text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServeError {
    /// Over a size limit (definite).
    #[error("{0}")]
    Limit(#[from] seshat_common::LimitError),
    /// Another node leads (definite): the client should go there.
    #[error("MOVED {slot} {addr}")]
    Moved {
        /// The key's hash slot (0 for keyless commands).
        slot: u16,
        /// The leader's node id (a TLS client is sent to its TLS address).
        leader: u64,
        /// The leader's client address.
        addr: String,
    },
    /// The slot is being migrated to another group and this one has
    /// handed it off (definite): the client should ask there once.
    #[error("ASK {slot} {addr}")]
    Ask {
        /// The key's hash slot.
        slot: u16,
        /// The target group's leader (a TLS client is sent to its TLS
        /// address).
        leader: u64,
        /// The leader's client address.
        addr: String,
    },
    /// The slot is frozen for a migration, or its new group has not
    /// committed the copy yet (definite: nothing applied).
    #[error("TRYAGAIN slot {0} is moving between shards; retry")]
    TryAgain(u16),
    /// No leader is known (definite).
    #[error("CLUSTERDOWN {0}")]
    NoLeader(String),
    /// The leader cannot reach a majority (definite: nothing proposed).
    #[error("NOQUORUM {0}")]
    NoQuorum(String),
    /// A sharded cluster's command with keys in different slots
    /// (definite).
    #[error("CROSSSLOT Keys in request don't hash to the same slot")]
    CrossSlot,
    /// Proposed but not confirmed in time (indeterminate).
    #[error("TIMEOUT {0}")]
    Timeout(String),
    /// The node stopped serving (storage failure or shutdown).
    #[error("ERR {0}")]
    Stopped(String),
}

/// Longest a shutting-down leader waits for another node to take over.
pub const LEADER_HANDOVER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// A write's outcome: its RESP reply, or why it was not served.
type WriteResult = Result<Frame, ServeError>;

/// A write handed to the proposer whose result has not arrived yet.
pub struct PendingWrite {
    rx: oneshot::Receiver<WriteResult>,
    slot: u16,
    deadline: tokio::time::Instant,
    timeout: std::time::Duration,
}

impl PendingWrite {
    /// Waits for the write's reply, up to the request timeout.
    pub async fn finish(self) -> Result<Frame, ServeError> {
        let timeout_ms = self.timeout.as_millis();
        match tokio::time::timeout_at(self.deadline, self.rx).await {
            Err(_) => Err(ServeError::Timeout(format!(
                "write not confirmed within {timeout_ms} ms; it may still be applied"
            ))),
            // The reply was dropped: Raft stopped after the proposal, so
            // the write may or may not have committed.
            Ok(Err(_)) => Err(ServeError::Timeout(
                "node stopped before the write was confirmed; it may still be applied".into(),
            )),
            Ok(Ok(Ok(result))) => Ok(result),
            Ok(Ok(Err(e))) => Err(e.with_slot(self.slot)),
        }
    }
}

/// A validated client write waiting to be put in a log entry.
struct Submission {
    write: Write,
    reply: oneshot::Sender<WriteResult>,
    queued: Instant,
}

/// Most client writes one log entry carries.
pub const MAX_BATCH_WRITES: usize = 1024;
/// Writes queued for the proposer before `propose` waits (backpressure).
const PROPOSAL_QUEUE: usize = 4 * MAX_BATCH_WRITES;

/// This node's replica of one data group.
pub struct Node {
    /// The group.
    pub group: u32,
    /// Added to the group while it ran (not placed at bootstrap): grants
    /// no vote while its log is empty (`RaftGrpc::add_group_with`).
    pub added: bool,
    /// The Raft handle.
    pub raft: Raft,
    /// The node's database.
    pub store: Store,
    /// This node's copy of the replicated ACL users.
    pub users: seshat_raft::state_machine::UsersWatch,
    /// The group's slot table as last applied here (`None` until the
    /// group takes part in its first migration).
    pub slot_table: seshat_raft::state_machine::TableWatch,
    /// The system group's table (slot map, migrations) as last applied
    /// here; `None` on data groups and before the bootstrap record.
    pub system_table: seshat_raft::state_machine::SystemWatch,
    /// The log store (for INFO figures).
    pub log: LogStore,
    /// State machine counters.
    pub sm_stats: Arc<SmStats>,
    /// The validated settings.
    pub settings: Arc<Settings>,
    /// Client writes on their way to the proposer task.
    proposals: mpsc::Sender<Submission>,
    /// Reads waiting for the read confirmer task.
    read_waiters: mpsc::Sender<ReadWaiter>,
    /// Why the Raft core stopped, once it has (set by [`watch_core`]).
    core_stop: watch::Receiver<Option<String>>,
    /// Set by [`Node::shutdown`]: the core is then stopped on purpose.
    shutting_down: Arc<std::sync::atomic::AtomicBool>,
}

/// Bytes of log payload one replication message may carry, well under
/// the transport's message limit.
pub const MAX_REPLICATION_BATCH_BYTES: usize = 48 * 1024 * 1024;

fn raft_config(settings: &Settings) -> anyhow::Result<openraft::Config> {
    // Largest possible entry: the largest write, plus the entry's own
    // framing. A batch of them must fit in one gRPC message. A migration
    // step's chunk may be larger than any client write.
    let max_entry_bytes = settings
        .limits
        .max_request_bytes()
        .max(seshat_kv::MAX_MIGRATION_WRITE_BYTES)
        + 1024;
    let max_payload_entries = (MAX_REPLICATION_BATCH_BYTES / max_entry_bytes).clamp(1, 300) as u64;
    let config = openraft::Config {
        max_payload_entries,
        cluster_name: "seshat".into(),
        heartbeat_interval: settings.heartbeat_interval_ms,
        election_timeout_min: settings.election_timeout_ms.0,
        election_timeout_max: settings.election_timeout_ms.1,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(settings.snapshot_every_entries),
        max_in_snapshot_log_to_keep: settings.log_tail_entries,
        enable_pre_vote: Some(true),
        ..Default::default()
    };
    config.validate().context("invalid raft settings")
}

impl ServeError {
    /// The same error, with `MOVED` naming `slot` (a batch's error is made
    /// once, then given to each write with its own key's slot).
    fn with_slot(self, slot: u16) -> ServeError {
        match self {
            ServeError::Moved { leader, addr, .. } => ServeError::Moved { slot, leader, addr },
            e => e,
        }
    }

    /// The reply a client gets. A client on the TLS port is sent to the
    /// leader's TLS address when it is known ([`Settings::tls_client_addr`]),
    /// as Redis answers TLS clients with TLS ports.
    pub fn to_frame(&self, settings: &Settings, tls: bool) -> Frame {
        match self {
            ServeError::Moved { slot, leader, .. } if tls => {
                match settings.tls_client_addr(*leader) {
                    Some(addr) => Frame::error(format!("MOVED {slot} {addr}")),
                    None => Frame::error(self.to_string()),
                }
            }
            ServeError::Ask { slot, leader, .. } if tls => {
                match settings.tls_client_addr(*leader) {
                    Some(addr) => Frame::error(format!("ASK {slot} {addr}")),
                    None => Frame::error(self.to_string()),
                }
            }
            e => Frame::error(e.to_string()),
        }
    }
}

/// The proposer: takes every write queued since its last proposal and
/// proposes them as one log entry (a lone write as itself), so concurrent
/// clients share one entry's encode, append, sync, replication and apply.
/// It never waits on a timer. At most [`MAX_ENTRIES_IN_FLIGHT`] of its
/// entries are uncommitted at once: while they are, new writes queue and
/// go together in the next entry, so the busier the node, the larger the
/// entries and the fewer of them (each costs replication requests, fsyncs
/// and wake-ups). Under light load each write is proposed at once.
async fn run_proposer(
    raft: Raft,
    store: Store,
    sm_stats: Arc<SmStats>,
    mut queued: mpsc::Receiver<Submission>,
    max_batch_bytes: usize,
) {
    let mut clock = EntryClock::new(sm_stats);
    let in_flight = Arc::new(tokio::sync::Semaphore::new(MAX_ENTRIES_IN_FLIGHT));
    let mut taken = Vec::with_capacity(MAX_BATCH_WRITES);
    while queued.recv_many(&mut taken, MAX_BATCH_WRITES).await > 0 {
        // Writes arrive in bursts: one apply wakes many clients, whose
        // next writes are a scheduling round away. Yield once so the tasks
        // already woken can queue theirs.
        tokio::task::yield_now().await;
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            return;
        };
        // Whatever queued while an entry slot was busy goes too.
        take_queued(&mut queued, &mut taken, MAX_BATCH_WRITES);
        let mut batch = Vec::with_capacity(taken.len());
        let mut bytes = 0;
        let mut permit = Some(permit);
        for submission in taken.drain(..) {
            stages::record_since(Stage::ProposeQueue, submission.queued);
            // The client gave up (timed out or disconnected): it was told
            // the write may or may not apply; not proposing it is allowed.
            if submission.reply.is_closed() {
                continue;
            }
            let size = submission.write.encoded_size_hint();
            if !batch.is_empty() && bytes + size > max_batch_bytes {
                let Some(p) = entry_slot(&mut permit, &in_flight).await else {
                    return;
                };
                submit(&raft, &store, &mut clock, std::mem::take(&mut batch), p).await;
                bytes = 0;
            }
            bytes += size;
            batch.push(submission);
        }
        if !batch.is_empty() {
            let Some(p) = entry_slot(&mut permit, &in_flight).await else {
                return;
            };
            submit(&raft, &store, &mut clock, batch, p).await;
        }
    }
}

/// The time and seed of each proposed entry: `now_ms` is the leader's
/// clock, but never earlier than the last applied entry's time (which
/// may come from an earlier leader) nor the last proposed one, so time
/// never runs backwards across entries or leader changes.
struct EntryClock {
    sm_stats: Arc<SmStats>,
    last_ms: u64,
    seed: u64,
}

impl EntryClock {
    fn new(sm_stats: Arc<SmStats>) -> Self {
        let seed = wall_clock_ms() ^ u64::from(std::process::id()).rotate_left(32);
        Self {
            sm_stats,
            last_ms: 0,
            seed,
        }
    }

    fn next(&mut self) -> (u64, u64) {
        let applied = self
            .sm_stats
            .last_now_ms
            .load(std::sync::atomic::Ordering::Acquire);
        self.last_ms = wall_clock_ms().max(applied).max(self.last_ms);
        self.seed = self.seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        (
            self.last_ms,
            seshat_kv::EntryRng::new(self.seed, 0).next_u64(),
        )
    }
}

/// The system clock in Unix milliseconds (0 if it is before 1970).
pub fn wall_clock_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Moves what is already queued in `rx` into `buf`, up to `limit` items.
fn take_queued<T>(rx: &mut mpsc::Receiver<T>, buf: &mut Vec<T>, limit: usize) {
    while buf.len() < limit {
        match rx.try_recv() {
            Ok(item) => buf.push(item),
            Err(_) => break,
        }
    }
}

/// The entry slot already held, or the next free one (`None`: closed).
async fn entry_slot(
    held: &mut Option<tokio::sync::OwnedSemaphorePermit>,
    slots: &Arc<tokio::sync::Semaphore>,
) -> Option<tokio::sync::OwnedSemaphorePermit> {
    match held.take() {
        Some(p) => Some(p),
        None => slots.clone().acquire_owned().await.ok(),
    }
}

/// Most entries of client writes proposed and not yet answered.
const MAX_ENTRIES_IN_FLIGHT: usize = 2;

/// Proposes `batch` as one entry and arranges for each write's result to
/// reach its client when the entry is applied (or fails); `permit` is held
/// until then.
async fn submit(
    raft: &Raft,
    store: &Store,
    clock: &mut EntryClock,
    batch: Vec<Submission>,
    permit: tokio::sync::OwnedSemaphorePermit,
) {
    let (writes, replies): (Vec<Write>, Vec<_>) =
        batch.into_iter().map(|s| (s.write, s.reply)).unzip();
    if writes.is_empty() {
        return;
    }
    let (now_ms, seed) = clock.next();
    let entry = WriteBatch {
        now_ms,
        seed,
        writes,
    };
    stages::record_entry(replies.len());
    let (responder, rx) = ProgressResponder::complete_only();
    let started = Instant::now();
    let handed = raft.client_write_ff(entry, Some(responder)).await;
    stages::record_since(Stage::ProposeHandoff, started);
    if let Err(f) = handed {
        // Not proposed: a definite failure for every write.
        let e = fatal(store, f);
        for reply in replies {
            let _ = reply.send(Err(e.clone()));
        }
        return;
    }
    tokio::spawn(async move {
        let outcome = rx.await;
        drop(permit);
        stages::record_since(Stage::ProposeToApplied, started);
        deliver(outcome, replies);
    });
}

/// A read waiting for the leadership confirmation that covers it.
type ReadWaiter = oneshot::Sender<Result<(), ServeError>>;
/// Reads queued for the read confirmer before `read_barrier` waits.
const READ_QUEUE: usize = 16 * 1024;

/// The read confirmer: one ReadIndex round (the leader confirms with a
/// majority that it still leads, then waits until it has applied up to its
/// commit index) answers every read that was waiting when the round began.
/// A read that arrives during a round waits for a later one: a round
/// started before a read was invoked could not vouch for it. So concurrent
/// reads share one heartbeat round instead of each sending its own. Up to
/// [`MAX_READ_ROUNDS`] rounds overlap, so a read that just missed a round
/// does not wait for it to finish before its own starts.
async fn run_read_confirmer(
    raft: Raft,
    store: Store,
    mut waiting: mpsc::Receiver<ReadWaiter>,
    timeout: std::time::Duration,
) {
    let rounds = Arc::new(tokio::sync::Semaphore::new(MAX_READ_ROUNDS));
    let mut waiters = Vec::new();
    while waiting.recv_many(&mut waiters, READ_QUEUE).await > 0 {
        let Ok(permit) = rounds.clone().acquire_owned().await else {
            return;
        };
        // Reads that queued while no round was free join this one.
        take_queued(&mut waiting, &mut waiters, READ_QUEUE);
        // Every read in `batch` was queued before its round starts here.
        let batch = std::mem::take(&mut waiters);
        let (raft, store) = (raft.clone(), store.clone());
        tokio::spawn(async move {
            let started = Instant::now();
            let result = confirm_read(&raft, &store, timeout).await;
            stages::record_since(Stage::ReadRound, started);
            drop(permit);
            for waiter in batch {
                let _ = waiter.send(result.clone());
            }
        });
    }
}

/// Most ReadIndex rounds in flight at once.
const MAX_READ_ROUNDS: usize = 2;

/// One ReadIndex round; `MOVED` errors name slot 0 (see
/// [`ServeError::with_slot`]).
async fn confirm_read(
    raft: &Raft,
    store: &Store,
    timeout: std::time::Duration,
) -> Result<(), ServeError> {
    match tokio::time::timeout(timeout, raft.ensure_linearizable(ReadPolicy::ReadIndex)).await {
        Err(_) => Err(ServeError::Timeout(format!(
            "read not confirmed within {} ms",
            timeout.as_millis()
        ))),
        Ok(Ok(_)) => Ok(()),
        Ok(Err(RaftError::APIError(LinearizableReadError::ForwardToLeader(f)))) => {
            Err(redirect(&f, 0))
        }
        Ok(Err(RaftError::APIError(LinearizableReadError::QuorumNotEnough(q)))) => {
            Err(ServeError::NoQuorum(q.to_string()))
        }
        Ok(Err(RaftError::Fatal(f))) => Err(fatal(store, f)),
    }
}

/// Hands each write of an entry its own result.
fn deliver(
    outcome: Result<ClientWriteResult<TypeConfig>, impl std::fmt::Debug>,
    replies: Vec<oneshot::Sender<WriteResult>>,
) {
    let result = match outcome {
        // Raft dropped the responder: stopped after the proposal, so the
        // writes may or may not have committed; dropping the senders tells
        // each client exactly that.
        Err(_) => return,
        Ok(r) => r,
    };
    match result {
        Ok(resp) if resp.data.len() == replies.len() => {
            for (reply, r) in replies.into_iter().zip(resp.data) {
                let _ = reply.send(Ok(r));
            }
        }
        Ok(resp) => {
            // Cannot happen: apply gives one reply per write.
            tracing::error!(
                replies = resp.data.len(),
                writes = replies.len(),
                "entry applied with a mismatched number of replies"
            );
            // Dropped senders: the clients are told the outcome is unknown.
        }
        Err(e) => {
            let e = write_error(e);
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}

/// A proposed entry's failure; `MOVED` names slot 0 (see
/// [`ServeError::with_slot`]).
fn write_error(e: ClientWriteError<TypeConfig>) -> ServeError {
    match e {
        ClientWriteError::ForwardToLeader(f) => redirect(&f, 0),
        ClientWriteError::LogEntryDiscarded(_) => ServeError::Timeout(
            "leader changed before the write was confirmed; it may or may not be applied".into(),
        ),
        ClientWriteError::ChangeMembershipError(e) => ServeError::Stopped(e.to_string()),
        // Only conditional writes (`with_leader`) fail this way; Seshat
        // does not send them, so it means nothing was proposed.
        ClientWriteError::PreconditionFailed(e) => {
            ServeError::NoLeader(format!("write not proposed: {e}"))
        }
    }
}

fn stopped_reason(store: &Store) -> Option<String> {
    store
        .poison_reason()
        .map(|r| format!("storage failure, node refuses requests: {r}"))
}

fn fatal(store: &Store, f: openraft::errors::Fatal<TypeConfig>) -> ServeError {
    ServeError::Stopped(stopped_reason(store).unwrap_or_else(|| format!("raft stopped: {f}")))
}

/// Who initialises a new group, and with which voters.
#[derive(Debug, Clone, Copy)]
pub struct Bootstrap<'a> {
    /// The node that initialises the group (its preferred leader).
    pub initializer: u64,
    /// The node ids of the group's first voters.
    pub replicas: &'a [u64],
}

/// Most keys one `WATCH` reads on an async worker; more go to a blocking
/// thread.
const MAX_INLINE_WATCH_KEYS: usize = 32;

impl Node {
    /// Starts this node's replica of `group` on its opened storage and,
    /// on the first start of a new cluster, initialises the group with
    /// `bootstrap`'s replicas as its voters. Peers are dialled with mutual
    /// TLS when `peer_tls` is given.
    pub async fn start(
        settings: Arc<Settings>,
        group: u32,
        store: Store,
        log: LogStore,
        sm: seshat_raft::StateMachine,
        peer_tls: Option<PeerTls>,
        bootstrap: Bootstrap<'_>,
    ) -> anyhow::Result<Arc<Node>> {
        let sm_stats = sm.stats();
        let users = sm.users();
        let slot_table = sm.slot_table();
        let system_table = sm.system_table();
        let config = Arc::new(raft_config(&settings)?);
        let raft = Raft::new(
            settings.node_id,
            config,
            match peer_tls {
                Some(tls) => Network::new(group).with_tls(tls),
                None => Network::new(group),
            },
            log.clone(),
            sm,
        )
        .await
        .context("cannot start raft")?;
        let (proposals, queued) = mpsc::channel(PROPOSAL_QUEUE);
        // A batch is never larger than the largest write (a write is
        // refused above it), so `raft_config`'s replication sizing for
        // maximal entries holds.
        let max_batch_bytes = settings.limits.max_request_bytes();
        tokio::spawn(run_proposer(
            raft.clone(),
            store.clone(),
            sm_stats.clone(),
            queued,
            max_batch_bytes,
        ));
        let (read_waiters, waiting) = mpsc::channel(READ_QUEUE);
        tokio::spawn(run_read_confirmer(
            raft.clone(),
            store.clone(),
            waiting,
            settings.request_timeout,
        ));
        let (core_stopped, core_stop) = watch::channel(None);
        let shutting_down = Arc::new(std::sync::atomic::AtomicBool::new(false));
        tokio::spawn(watch_core(
            raft.clone(),
            core_stopped,
            shutting_down.clone(),
        ));
        let node = Arc::new(Node {
            group,
            added: bootstrap.initializer == 0,
            raft,
            store,
            users,
            slot_table,
            system_table,
            log,
            sm_stats,
            settings,
            proposals,
            read_waiters,
            core_stop,
            shutting_down,
        });
        node.initialize_if_new(bootstrap.initializer, bootstrap.replicas)
            .await?;
        tokio::spawn(log_role_changes(node.raft.clone(), node.group));
        tokio::spawn(run_expiry_sweeper(Arc::downgrade(&node)));
        Ok(node)
    }

    /// Initialises the group on first start. Only `initializer` does it
    /// (the same node on every member: the group's preferred leader, which
    /// for one group is the lowest id), once: afterwards the log is not
    /// empty and `is_initialized` is true, so restarts with the same flags
    /// are safe. The initializer campaigns first, so each group's first
    /// leader is its preferred one and no leadership moves after start.
    async fn initialize_if_new(&self, initializer: u64, replicas: &[u64]) -> anyhow::Result<()> {
        if self.raft.is_initialized().await.context("raft stopped")? {
            return Ok(());
        }
        let members = &self.settings.initial_members;
        if initializer != self.settings.node_id {
            tracing::info!(
                node_id = self.settings.node_id,
                group = self.group,
                "waiting for node {initializer} to initialise the group"
            );
            return Ok(());
        }
        let nodes: BTreeMap<u64, SeshatNode> = members
            .iter()
            .filter(|(id, _)| replicas.contains(id))
            .map(|(id, m)| {
                (
                    *id,
                    SeshatNode {
                        raft_addr: m.raft_addr.to_string(),
                        client_addr: m.client_addr.to_string(),
                    },
                )
            })
            .collect();
        tracing::info!(
            node_id = self.settings.node_id,
            group = self.group,
            members = nodes.len(),
            "initialising a new group"
        );
        self.raft
            .initialize(nodes)
            .await
            .context("cannot initialise cluster")?;
        Ok(())
    }

    /// `MOVED` / `CLUSTERDOWN` at once when this node does not lead, so a
    /// write is never queued behind the proposer on a follower (it would
    /// wait there for entries of an old term and end as `TIMEOUT`).
    fn check_leader_for_write(&self, slot: u16) -> Result<(), ServeError> {
        let metrics = self.raft.metrics();
        let m = metrics.borrow_watched();
        match m.current_leader {
            Some(leader) if leader == m.id => Ok(()),
            Some(leader) => match m.membership_config.membership().get_node(&leader) {
                Some(node) => Err(ServeError::Moved {
                    slot,
                    leader,
                    addr: node.client_addr.clone(),
                }),
                None => Err(ServeError::NoLeader("no raft leader".into())),
            },
            None => Err(ServeError::NoLeader("no raft leader".into())),
        }
    }

    /// `-NOQUORUM` when this node leads but has not heard from a majority
    /// for longer than an election timeout: nothing is proposed then.
    fn check_quorum(&self) -> Result<(), ServeError> {
        // Borrow, don't clone: this runs on every request.
        let metrics = self.raft.metrics();
        let m = metrics.borrow_watched();
        if m.current_leader != Some(m.id) {
            return Ok(());
        }
        // A lone voter is its own majority; openraft records no quorum
        // acknowledgements for it.
        if m.membership_config
            .membership()
            .voter_ids()
            .nth(1)
            .is_none()
        {
            return Ok(());
        }
        let limit = self.settings.election_timeout_ms.1;
        match millis_since_quorum_ack(&m) {
            Some(ms) if ms > limit => Err(ServeError::NoQuorum(format!(
                "leader has not reached a majority for {ms} ms"
            ))),
            _ => Ok(()),
        }
    }

    /// A copy of the latest Raft metrics.
    pub fn metrics(&self) -> openraft::RaftMetrics<TypeConfig> {
        self.raft.metrics().borrow_watched().clone()
    }

    /// Why the node cannot serve at all, if it cannot.
    fn stopped_reason(&self) -> Option<String> {
        stopped_reason(&self.store)
            .or_else(|| self.core_problem())
            .or_else(|| self.task_problem())
    }

    /// Set once the Raft core has stopped, for any reason: the node then
    /// refuses requests, reports itself unhealthy, and exits (see `main`).
    pub fn core_problem(&self) -> Option<String> {
        self.core_stop.borrow().clone()
    }

    /// Waits until the Raft core stops and returns why.
    pub async fn core_stopped(&self) -> String {
        let mut rx = self.core_stop.clone();
        let reason = match rx.wait_for(Option::is_some).await {
            Ok(reason) => reason.clone().unwrap_or_default(),
            // The watcher always says why before it ends.
            Err(_) => "raft stopped: its watcher ended".into(),
        };
        reason
    }

    /// Set when the proposer or the read confirmer task has ended (they
    /// run for the node's lifetime, so only a bug ends them): the node
    /// then refuses requests and reports itself unhealthy.
    pub fn task_problem(&self) -> Option<String> {
        if self.proposals.is_closed() {
            Some("internal error: the write proposer stopped".into())
        } else if self.read_waiters.is_closed() {
            Some("internal error: the read confirmer stopped".into())
        } else {
            None
        }
    }

    /// Proposes `write` and waits for it to be committed and applied.
    pub async fn write(&self, write: Write, slot: u16) -> Result<Frame, ServeError> {
        self.propose(write, slot).await?.finish().await
    }

    /// Checks `write`'s size and hands it to the proposer, which puts it
    /// in the log — in one entry with whatever other writes are waiting.
    /// Writes are proposed in the order this is called, so a pipeline of
    /// writes from one connection is applied in the client's order while
    /// many are in flight.
    pub async fn propose(&self, write: Write, slot: u16) -> Result<PendingWrite, ServeError> {
        write.check_size(&self.settings.limits)?;
        if let Some(reason) = self.stopped_reason() {
            return Err(ServeError::Stopped(reason));
        }
        self.check_leader_for_write(slot)?;
        self.check_quorum()?;
        let deadline = tokio::time::Instant::now() + self.settings.request_timeout;
        let (reply, rx) = oneshot::channel();
        let submission = Submission {
            write,
            reply,
            queued: Instant::now(),
        };
        match tokio::time::timeout_at(deadline, self.proposals.send(submission)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(ServeError::Stopped("raft stopped".into())),
            // Never queued, so never applied; the wording stays the usual
            // indeterminate one, which is also true.
            Err(_) => {
                return Err(ServeError::Timeout(format!(
                    "write not confirmed within {} ms; it may still be applied",
                    self.settings.request_timeout.as_millis()
                )))
            }
        }
        Ok(PendingWrite {
            rx,
            slot,
            deadline,
            timeout: self.settings.request_timeout,
        })
    }

    /// Confirms leadership for a linearizable read and waits until the
    /// state machine has applied up to the read point.
    pub async fn read_barrier(&self, slot: u16) -> Result<(), ServeError> {
        if let Some(reason) = self.stopped_reason() {
            return Err(ServeError::Stopped(reason));
        }
        self.check_quorum()?;
        let timeout = self.settings.request_timeout;
        let (tx, rx) = oneshot::channel();
        let started = Instant::now();
        self.read_waiters
            .send(tx)
            .await
            .map_err(|_| ServeError::Stopped("raft stopped".into()))?;
        let confirmed = tokio::time::timeout(timeout, rx).await;
        stages::record_since(Stage::ReadConfirm, started);
        match confirmed {
            Err(_) | Ok(Err(_)) => Err(ServeError::Timeout(format!(
                "read not confirmed within {} ms",
                timeout.as_millis()
            ))),
            Ok(Ok(result)) => result.map_err(|e| e.with_slot(slot)),
        }
    }

    /// The time reads judge expiry against: this node's clock, but never
    /// earlier than the last applied entry's time.
    pub fn now_ms(&self) -> u64 {
        wall_clock_ms().max(self.applied_now_ms())
    }

    /// The time of the last applied entry.
    pub fn applied_now_ms(&self) -> u64 {
        self.sm_stats
            .last_now_ms
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// Runs a read command after a read barrier, on one consistent view.
    /// Commands not declared `fast` (`KEYS`, `SCAN`, `LCS`, …) run on a
    /// blocking thread, so they never hold up the async workers that carry
    /// heartbeats.
    ///
    /// `confirmed`: a read barrier that began after this read arrived has
    /// already succeeded (pipelined reads share one), so none is needed.
    ///
    /// `asking`: `None` for a keyless command (it reads the whole group);
    /// for a key's read, whether the client sent `ASKING`. After the
    /// barrier the group's slot table, at least as new as the read point,
    /// must serve the slot: a read that began after a hand-off committed
    /// never sees the data the source keeps until it drops it.
    pub async fn read(
        &self,
        decl: &'static Decl,
        argv: &[Bytes],
        slot: u16,
        confirmed: bool,
        asking: Option<bool>,
    ) -> Result<Frame, ServeError> {
        if !confirmed {
            self.read_barrier(slot).await?;
        }
        if let Some(asking) = asking {
            self.check_slot(slot, seshat_migration::Access::Read, asking)?;
        }
        let counts = self.counts();
        let now = self.now_ms();
        let seed = now ^ wall_clock_nanos();
        let group = self.group;
        let run = move |store: &Store, argv: &[Bytes]| {
            let mut view = ReadView::new(store, group);
            seshat_commands::run_read(decl, argv, group, &mut view, now, counts, seed)
                .map_err(|e| ServeError::Stopped(e.to_string()))
        };
        // Short reads run here; anything that may take long runs on a
        // blocking thread, so heartbeats never wait behind it.
        if decl.flags.has(seshat_commands::Flags::FAST) && !decl.may_take_long(argv) {
            return run(&self.store, argv);
        }
        let (store, argv) = (self.store.clone(), argv.to_vec());
        tokio::task::spawn_blocking(move || run(&store, &argv))
            .await
            .map_err(|e| ServeError::Stopped(format!("read task failed: {e}")))?
    }

    /// The group's slot table as last applied here.
    pub fn table(&self) -> Option<Arc<seshat_migration::SlotTable>> {
        self.slot_table.borrow().clone()
    }

    /// Whether the group's applied slot table lets it serve `slot` for
    /// `access`: a group that never took part in a migration serves what
    /// routing sends it. Anything but `Serve` is `TRYAGAIN`: the caller
    /// routed by an older table, and the retry is routed by this one.
    pub fn check_slot(
        &self,
        slot: u16,
        access: seshat_migration::Access,
        asking: bool,
    ) -> Result<(), ServeError> {
        match self.slot_table.borrow().as_deref() {
            Some(table)
                if table.decide(slot, access, asking) != seshat_migration::Decision::Serve =>
            {
                Err(ServeError::TryAgain(slot))
            }
            _ => Ok(()),
        }
    }

    /// The group's key counts as last applied.
    pub fn counts(&self) -> Counts {
        use std::sync::atomic::Ordering::Acquire;
        Counts {
            keys: self.sm_stats.key_count.load(Acquire),
            expiring: self.sm_stats.expiring_count.load(Acquire),
        }
    }

    /// What `WATCH` remembers of `keys`: each one's modification index
    /// (absent keys: `None`), read after a read barrier.
    pub async fn watch(
        &self,
        keys: &[Bytes],
        slot: u16,
        confirmed: bool,
    ) -> Result<Vec<Watch>, ServeError> {
        if !confirmed {
            self.read_barrier(slot).await?;
        }
        self.check_slot(slot, seshat_migration::Access::Read, false)?;
        let now = self.now_ms();
        let group = self.group;
        let run = move |store: &Store, keys: &[Bytes]| {
            let mut view = ReadView::new(store, group);
            let mut space = Keyspace::new(&mut view, group, now, 0, Counts::default());
            keys.iter()
                .map(|key| {
                    let mod_index = space
                        .get(key)
                        .map_err(|e| ServeError::Stopped(e.to_string()))?
                        .map(|r| r.mod_index);
                    Ok(Watch {
                        key: key.clone(),
                        mod_index,
                    })
                })
                .collect()
        };
        if keys.len() <= MAX_INLINE_WATCH_KEYS {
            return run(&self.store, keys);
        }
        let (store, keys) = (self.store.clone(), keys.to_vec());
        tokio::task::spawn_blocking(move || run(&store, &keys))
            .await
            .map_err(|e| ServeError::Stopped(format!("watch task failed: {e}")))?
    }

    /// If this node leads a multi-node group, hands leadership to the most
    /// up-to-date voter and waits (bounded) until another node leads, so a
    /// planned restart costs no election timeout.
    pub async fn hand_over_leadership(&self) {
        let m = self.metrics();
        if m.current_leader != Some(m.id) {
            return;
        }
        let voters: Vec<u64> = m
            .membership_config
            .membership()
            .voter_ids()
            .filter(|id| *id != m.id)
            .collect();
        let matched = |id: &u64| {
            m.replication
                .as_ref()
                .and_then(|r| r.get(id).cloned().flatten())
                .map_or(0, |l| l.index)
        };
        let Some(target) = voters
            .iter()
            .copied()
            .max_by_key(|id| (matched(id), std::cmp::Reverse(*id)))
        else {
            return;
        };
        tracing::info!(
            node_id = m.id,
            term = m.current_term,
            to = target,
            "handing over leadership before shutdown"
        );
        if let Err(e) = self.raft.trigger().transfer_leader(target).await {
            tracing::warn!(error = %e, "leadership transfer failed");
            return;
        }
        // The target should win within an election timeout; waiting longer
        // only delays a shutdown whose target is itself stopping.
        let wait = LEADER_HANDOVER_TIMEOUT.min(std::time::Duration::from_millis(
            self.settings.election_timeout_ms.1,
        ));
        let deadline = tokio::time::Instant::now() + wait;
        while tokio::time::Instant::now() < deadline {
            let now = self.metrics();
            if now.current_leader.is_some_and(|l| l != m.id) {
                tracing::info!(new_leader = ?now.current_leader, term = now.current_term, "leadership handed over");
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        tracing::warn!("no other node took over leadership in time; stopping anyway");
    }

    /// Stops Raft; the log and state are already durable.
    pub async fn shutdown(&self) {
        self.shutting_down
            .store(true, std::sync::atomic::Ordering::Release);
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "raft shutdown reported an error");
        }
    }
}

fn redirect(f: &ForwardToLeader<TypeConfig>, slot: u16) -> ServeError {
    match (f.leader_id, &f.leader_node) {
        (Some(leader), Some(node)) => ServeError::Moved {
            slot,
            leader,
            addr: node.client_addr.clone(),
        },
        _ => ServeError::NoLeader("no raft leader".into()),
    }
}

/// How long ago this leader last heard from a majority, if it leads.
pub fn millis_since_quorum_ack(m: &openraft::RaftMetrics<TypeConfig>) -> Option<u64> {
    use openraft::type_config::async_runtime::Instant as _;
    m.last_quorum_acked
        .as_ref()
        .map(|at| u64::try_from(at.elapsed().as_millis()).unwrap_or(u64::MAX))
}

/// Waits until the Raft core task has ended, for any reason, and publishes
/// why in `stopped`.
///
/// openraft reports a fatal error in the metrics' `running_state`, but a
/// core that panics reports nothing: its metrics just stop changing, which
/// is how a panicked node went on answering `/health` with 200 (issue 18).
/// Either way the core's task drops the senders of its metrics channels
/// when it ends, so the end of the server-metrics channel (which changes
/// only with role or leader, so this task rarely wakes) is the signal; any
/// call into the core then returns why it stopped.
async fn watch_core(
    raft: Raft,
    stopped: watch::Sender<Option<String>>,
    shutting_down: Arc<std::sync::atomic::AtomicBool>,
) {
    let mut server = raft.server_metrics();
    while server.changed().await.is_ok() {}
    // A shutdown stops the core on purpose: asking it why would only log
    // an error on every clean stop.
    if shutting_down.load(std::sync::atomic::Ordering::Acquire) {
        let _ = stopped.send(Some("raft stopped: the node is shutting down".into()));
        return;
    }
    let reason = match raft.with_raft_state(|_| ()).await {
        Err(fatal) => format!("raft stopped: {fatal}"),
        // Cannot happen: the core answered after its channels closed.
        Ok(()) => "raft stopped: its metrics ended".into(),
    };
    let _ = stopped.send(Some(reason));
}

/// Logs leader, role and membership changes with node id and term, until
/// Raft stops.
async fn log_role_changes(raft: Raft, group: u32) {
    let mut rx = raft.metrics();
    let mut last: Option<(Option<u64>, openraft::ServerState, String)> = None;
    loop {
        let now = {
            let m = rx.borrow_watched();
            let voters: Vec<u64> = m.membership_config.membership().voter_ids().collect();
            let current = (m.current_leader, m.state, format!("{voters:?}"));
            if last.as_ref() != Some(&current) {
                tracing::info!(
                    node_id = m.id,
                    group,
                    term = m.current_term,
                    leader = ?m.current_leader,
                    role = ?m.state,
                    voters = %current.2,
                    "raft state changed"
                );
            }
            current
        };
        last = Some(now);
        if rx.changed().await.is_err() {
            return;
        }
    }
}

fn wall_clock_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::from(d.subsec_nanos()))
}

/// Most expired keys one removal entry carries.
pub const MAX_EXPIRED_KEYS_PER_ENTRY: usize = 256;
/// How often the leader looks for expired keys.
pub const EXPIRY_SWEEP_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);

/// The leader's expiry sweep: finds keys whose expiry is due in the expiry
/// index and proposes their removal, at most
/// [`MAX_EXPIRED_KEYS_PER_ENTRY`] per entry, as a Redis master sends `DEL`
/// to its replicas. Followers never remove keys on their own; until the
/// removal applies, expired keys are already absent to every command.
pub async fn run_expiry_sweeper(node: std::sync::Weak<Node>) {
    let mut tick = tokio::time::interval(EXPIRY_SWEEP_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(node) = node.upgrade() else {
            return;
        };
        if !node.raft.is_leader() {
            continue;
        }
        // Sweep until a pass finds fewer than a full entry's worth.
        loop {
            let due = {
                let mut view = ReadView::new(&node.store, node.group);
                let mut space =
                    Keyspace::new(&mut view, node.group, node.now_ms(), 0, Counts::default());
                match space.due_keys(MAX_EXPIRED_KEYS_PER_ENTRY) {
                    Ok(keys) => keys,
                    Err(e) => {
                        tracing::warn!(error = %e, "expiry sweep cannot read the expiry index");
                        break;
                    }
                }
            };
            let full = due.len() == MAX_EXPIRED_KEYS_PER_ENTRY;
            if due.is_empty() {
                break;
            }
            let count = due.len();
            match node.write(Write::ExpireKeys(due), 0).await {
                Ok(_) => tracing::debug!(keys = count, "expired keys removed"),
                Err(e) => {
                    tracing::debug!(error = %e, "expiry sweep write not applied");
                    break;
                }
            }
            if !full {
                break;
            }
        }
    }
}
