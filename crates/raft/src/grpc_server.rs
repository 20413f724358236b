//! The server half of the node-to-node transport: one tonic service per
//! node that hands each RPC to the Raft group it names.
//!
//! [`RaftGrpc`] is a registry of the groups this node serves, which can
//! gain and lose groups while the server runs. Each request names its
//! group and target replica ([`crate::route`]): a request without them is
//! refused with `invalid_argument`, one for a group this node does not
//! serve with `not_found`, one for another replica than this node's of the
//! group with `failed_precondition`. The `Forward` RPC (client commands
//! forwarded by followers) is the node's, not a group's.
//!
//! Nothing a peer sends reaches openraft unchecked: each request must keep
//! the rules of [`crate::peer_input`] — its shape as it is decoded, then
//! against what this node knows ([`LocalView`]) — or it is refused with
//! `invalid_argument`. openraft asserts on some impossible messages, and an
//! assert stops its core for good.
//!
//! Incoming snapshots are written chunk by chunk to a file under
//! `snapshots/incoming/`, then **validated completely** (sizes, record
//! framing, versions, key prefix, and that the header matches the
//! announced metadata) before openraft is asked to install them: an
//! install error would stop the node, so bad data is refused here.
//!
//! A transfer is bounded: at most [`MAX_CONCURRENT_INCOMING_SNAPSHOTS`] at
//! once per group, refused up front unless the disk has room for it, given up after
//! [`SNAPSHOT_PROGRESS_TIMEOUT`] without a chunk, and its file is removed
//! however it ends (an error, the peer's reset, the handler dropped at
//! shutdown); a crash leaves files that the next start removes
//! ([`snapshot::clear_incoming`]).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use futures::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use crate::layout::{GroupId, GroupLayout};
use crate::network::SNAPSHOT_PROGRESS_TIMEOUT;
use crate::pb;
use crate::pb::raft_service_server::{RaftService, RaftServiceServer};
use crate::peer_input::LocalView;
use crate::route::Route;
use crate::rpc_codec;
use crate::snapshot::{self, SnapshotFile};
use crate::types::{Raft, TypeConfig};

/// Distinguishes the files of concurrent or retried snapshot transfers.
static INCOMING_SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Largest snapshot accepted from a peer, in bytes.
pub const MAX_INCOMING_SNAPSHOT_BYTES: u64 = 64 * 1024 * 1024 * 1024;
/// Incoming snapshot transfers received at once per group (only its
/// leader sends them); a further one is refused with `resource_exhausted`
/// and the leader retries it later.
pub const MAX_CONCURRENT_INCOMING_SNAPSHOTS: usize = 1;
/// Free disk an incoming snapshot must leave beyond twice its size (its
/// file, and the data loaded from it), by default.
pub const SNAPSHOT_DISK_MARGIN_BYTES: u64 = 256 * 1024 * 1024;

/// Runs client commands forwarded by followers in proxy mode.
#[tonic::async_trait]
pub trait ForwardHandler: Send + Sync + 'static {
    /// Executes `args` as a client command and returns the encoded RESP
    /// reply in protocol `protover`.
    async fn forward(&self, args: Vec<bytes::Bytes>, protover: u32) -> bytes::Bytes;
}

/// One group this node serves: its Raft, where its incoming snapshots
/// go, and its own snapshot transfer permits.
struct GroupService {
    group: GroupId,
    raft: Raft,
    snapshot_dir: PathBuf,
    /// Permits for incoming snapshot transfers.
    transfers: Arc<tokio::sync::Semaphore>,
    /// Set when the group is removed: streams opened before (a leader's
    /// append and heartbeat streams live long) end at their next message.
    removed: std::sync::atomic::AtomicBool,
    /// Added to a running group: grants no vote while its log is empty
    /// (see [`RaftGrpc::add_group_with`]).
    added: bool,
}

impl GroupService {
    fn not_served(group: GroupId) -> Status {
        Status::not_found(format!("group {group} is not served by this node"))
    }

    /// Refuses a message for a group removed since its stream opened.
    fn check_served(&self) -> Result<(), Status> {
        if self.removed.load(std::sync::atomic::Ordering::Acquire) {
            return Err(Self::not_served(self.group));
        }
        Ok(())
    }

    /// What this replica knows now, to check a peer's message against.
    fn local_view(&self) -> LocalView {
        LocalView::of(&self.raft)
    }
}

/// Why a group cannot be added to a [`RaftGrpc`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddGroupError {
    /// The group is served already (remove it first).
    #[error("group {0} is already served by this node")]
    AlreadyServed(GroupId),
    /// The group id is out of range.
    #[error("group id {0} exceeds {max}", max = crate::layout::MAX_GROUP_ID)]
    BadGroupId(GroupId),
}

/// The Raft gRPC service of one node: the groups it serves, by id. Cheap
/// to clone; every clone shares the registry, so a clone kept aside adds
/// and removes groups while another serves.
#[derive(Clone)]
pub struct RaftGrpc {
    groups: Arc<RwLock<BTreeMap<GroupId, Arc<GroupService>>>>,
    snapshot_root: PathBuf,
    forward: Option<std::sync::Arc<dyn ForwardHandler>>,
    /// See [`RaftGrpc::with_snapshot_disk_margin_bytes`].
    disk_margin_bytes: u64,
}

impl RaftGrpc {
    /// A service serving no group yet; each group's incoming snapshots go
    /// under its directory below `snapshot_root`
    /// ([`crate::layout::GroupLayout::snapshot_dir`], the directory its
    /// state machine uses).
    pub fn new(snapshot_root: PathBuf) -> Self {
        Self {
            groups: Arc::default(),
            snapshot_root,
            forward: None,
            disk_margin_bytes: SNAPSHOT_DISK_MARGIN_BYTES,
        }
    }

    /// Serves `group` with `raft` from now on; its local replica id is
    /// `raft`'s node id.
    pub fn add_group(&self, group: GroupId, raft: Raft) -> Result<(), AddGroupError> {
        self.add_group_with(group, raft, false)
    }

    /// [`Self::add_group`]; `added`: the replica was added to a running
    /// group (not placed there when the group was created), so while its
    /// log is empty it grants no vote. An empty replica may be one whose
    /// node still appears caught up to the leader (its data was deleted
    /// and it was added back under the same id); its vote could then
    /// elect a candidate lacking committed entries. A bootstrap replica
    /// must vote while empty: the group's first election needs it.
    pub fn add_group_with(
        &self,
        group: GroupId,
        raft: Raft,
        added: bool,
    ) -> Result<(), AddGroupError> {
        let layout = GroupLayout::new(group).map_err(|_| AddGroupError::BadGroupId(group))?;
        let service = GroupService {
            group,
            raft,
            snapshot_dir: layout.snapshot_dir(&self.snapshot_root),
            transfers: Arc::new(tokio::sync::Semaphore::new(
                MAX_CONCURRENT_INCOMING_SNAPSHOTS,
            )),
            removed: std::sync::atomic::AtomicBool::new(false),
            added,
        };
        let mut groups = self.groups.write().unwrap_or_else(|p| p.into_inner());
        if groups.contains_key(&group) {
            return Err(AddGroupError::AlreadyServed(group));
        }
        groups.insert(group, Arc::new(service));
        Ok(())
    }

    /// Stops serving `group` and returns its Raft: later requests for it
    /// get `not_found`, and so does the next message of a stream opened
    /// before (the stream then ends). Unary requests already running
    /// finish.
    pub fn remove_group(&self, group: GroupId) -> Option<Raft> {
        let mut groups = self.groups.write().unwrap_or_else(|p| p.into_inner());
        let removed = groups.remove(&group)?;
        removed
            .removed
            .store(true, std::sync::atomic::Ordering::Release);
        Some(removed.raft.clone())
    }

    /// Each served group's term and leader as its replica here knows them.
    pub fn leaders(&self) -> Vec<pb::GroupLeader> {
        let groups = self.groups.read().unwrap_or_else(|p| p.into_inner());
        groups
            .values()
            .map(|g| {
                use openraft::type_config::async_runtime::WatchReceiver;
                let metrics = g.raft.metrics();
                let m = metrics.borrow_watched();
                pb::GroupLeader {
                    group: g.group,
                    term: m.current_term,
                    leader: m.current_leader,
                    voters: m.membership_config.membership().voter_ids().collect(),
                }
            })
            .collect()
    }

    /// The groups served now.
    pub fn groups(&self) -> Vec<GroupId> {
        let groups = self.groups.read().unwrap_or_else(|p| p.into_inner());
        groups.keys().copied().collect()
    }

    /// The group `req` is for, if this node serves it and `req` targets
    /// this node's replica.
    fn group_for<T>(&self, req: &Request<T>) -> Result<Arc<GroupService>, Status> {
        let route = Route::of(req)?;
        let service = {
            let groups = self.groups.read().unwrap_or_else(|p| p.into_inner());
            groups.get(&route.group).cloned()
        };
        let service = service.ok_or_else(|| GroupService::not_served(route.group))?;
        let local = *service.raft.node_id();
        if route.target != local {
            return Err(Status::failed_precondition(format!(
                "request for replica {} of group {}; this node holds replica {local}",
                route.target, route.group
            )));
        }
        Ok(service)
    }

    /// Refuses an incoming snapshot unless its file system has twice its
    /// size plus `bytes` free (default [`SNAPSHOT_DISK_MARGIN_BYTES`]).
    pub fn with_snapshot_disk_margin_bytes(mut self, bytes: u64) -> Self {
        self.disk_margin_bytes = bytes;
        self
    }

    /// Serves forwarded client commands with `handler`.
    pub fn with_forward_handler(mut self, handler: std::sync::Arc<dyn ForwardHandler>) -> Self {
        self.forward = Some(handler);
        self
    }

    /// Wraps the service for tonic with Seshat's message-size limits.
    pub fn into_server(self) -> RaftServiceServer<Self> {
        RaftServiceServer::new(self)
            .max_decoding_message_size(crate::network::MAX_RPC_MESSAGE_BYTES)
            .max_encoding_message_size(crate::network::MAX_RPC_MESSAGE_BYTES)
    }
}

fn bad_request(e: impl std::fmt::Display) -> Status {
    Status::invalid_argument(e.to_string())
}

fn stopped(e: impl std::fmt::Display) -> Status {
    Status::unavailable(format!("raft stopped: {e}"))
}

/// Decodes an AppendEntries request and checks it against this replica.
fn accept_append(
    group: &GroupService,
    r: pb::AppendEntriesRequest,
) -> Result<openraft::raft::AppendEntriesRequest<TypeConfig>, Status> {
    group.check_served()?;
    let req = rpc_codec::append_request_from_pb(r).map_err(bad_request)?;
    group.local_view().check_append(&req).map_err(bad_request)?;
    Ok(req)
}

/// Decodes a Vote or Pre-Vote request and checks it against this replica.
fn accept_vote(
    group: &GroupService,
    r: pb::VoteRequest,
) -> Result<openraft::raft::VoteRequest<TypeConfig>, Status> {
    let req = rpc_codec::vote_request_from_pb(r).map_err(bad_request)?;
    group
        .local_view()
        .check_sender("vote request", &req.vote)
        .map_err(bad_request)?;
    check_candidate_is_voter(&group.raft, req.vote.leader_id.node_id)?;
    if group.added {
        use openraft::type_config::async_runtime::WatchReceiver;
        let empty = group
            .raft
            .metrics()
            .borrow_watched()
            .last_log_index
            .is_none();
        if empty {
            return Err(Status::failed_precondition(format!(
                "replica of group {} has no log yet and grants no vote",
                group.group
            )));
        }
    }
    Ok(req)
}

/// A replica that knows a membership votes only for its voters: a replica
/// removed from the group (a node that was down while it was replaced,
/// restarted with its old data) can neither win an election nor raise
/// the term of the members it left. A voter added by an entry this
/// replica has not received yet is refused too, which costs at most that
/// one vote: the candidate's own log then holds more than this replica's,
/// so the other voters decide.
fn check_candidate_is_voter(raft: &Raft, candidate: u64) -> Result<(), Status> {
    use openraft::type_config::async_runtime::WatchReceiver;
    let metrics = raft.metrics();
    let m = metrics.borrow_watched();
    let membership = m.membership_config.membership();
    let mut voters = membership.voter_ids().peekable();
    if voters.peek().is_none() || membership.voter_ids().any(|v| v == candidate) {
        return Ok(());
    }
    Err(Status::failed_precondition(format!(
        "node {candidate} is not a voter of this group (its voters: {:?})",
        membership.voter_ids().collect::<Vec<_>>()
    )))
}

/// The reply stream of a pipelined append.
pub type StreamAppendReplies =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<pb::StreamAppendReply, Status>> + Send>>;

#[tonic::async_trait]
impl RaftService for RaftGrpc {
    type StreamAppendStream = StreamAppendReplies;

    async fn stream_append(
        &self,
        request: Request<Streaming<pb::AppendEntriesRequest>>,
    ) -> Result<Response<Self::StreamAppendStream>, Status> {
        // A request that cannot be decoded (or any error of the input)
        // ends the input, and so does a refused one: the replies already
        // due are sent, then the refusal, and the leader reconnects.
        let group = self.group_for(&request)?;
        let refused = Arc::new(std::sync::Mutex::new(None::<Status>));
        let checked = group.clone();
        let input = request
            .into_inner()
            .scan(refused.clone(), move |refused, r| {
                let accepted = r
                    .map_err(|s| bad_request(format!("unreadable append request: {}", s.message())))
                    .and_then(|r| accept_append(&checked, r));
                std::future::ready(match accepted {
                    Ok(req) => Some(req),
                    Err(status) => {
                        tracing::warn!(group = checked.group, error = %status.message(), "refusing append request");
                        if let Ok(mut slot) = refused.lock() {
                            *slot = Some(status);
                        }
                        None
                    }
                })
            });
        let output = group.raft.stream_append(input).map(|r| match r {
            Ok(result) => Ok(rpc_codec::stream_result_to_pb(&result)),
            Err(fatal) => Err(stopped(fatal)),
        });
        // Runs once the input has ended and every reply due was sent.
        let refusal =
            futures::stream::once(
                async move { refused.lock().ok().and_then(|mut slot| slot.take()) },
            )
            .filter_map(|s| std::future::ready(s.map(Err)));
        Ok(Response::new(Box::pin(output.chain(refusal))))
    }

    async fn append_entries(
        &self,
        request: Request<pb::AppendEntriesRequest>,
    ) -> Result<Response<pb::AppendEntriesResponse>, Status> {
        let group = self.group_for(&request)?;
        let req = accept_append(&group, request.into_inner())?;
        let resp = group.raft.append_entries(req).await.map_err(stopped)?;
        Ok(Response::new(rpc_codec::append_response_to_pb(&resp)))
    }

    async fn vote(
        &self,
        request: Request<pb::VoteRequest>,
    ) -> Result<Response<pb::VoteResponse>, Status> {
        let group = self.group_for(&request)?;
        let req = accept_vote(&group, request.into_inner())?;
        let resp = group.raft.vote(req).await.map_err(stopped)?;
        Ok(Response::new(rpc_codec::vote_response_to_pb(&resp)))
    }

    async fn pre_vote(
        &self,
        request: Request<pb::VoteRequest>,
    ) -> Result<Response<pb::VoteResponse>, Status> {
        let group = self.group_for(&request)?;
        let req = accept_vote(&group, request.into_inner())?;
        let resp = group.raft.pre_vote(req).await.map_err(stopped)?;
        Ok(Response::new(rpc_codec::vote_response_to_pb(&resp)))
    }

    async fn install_snapshot(
        &self,
        request: Request<Streaming<pb::SnapshotChunk>>,
    ) -> Result<Response<pb::SnapshotReply>, Status> {
        let group = self.group_for(&request)?;
        let mut stream = request.into_inner();
        let start = match next_chunk(&mut stream).await?.map(|c| c.payload) {
            Some(Some(pb::snapshot_chunk::Payload::Start(s))) => s,
            Some(_) => return Err(bad_request("snapshot stream must begin with its metadata")),
            None => return Err(bad_request("empty snapshot stream")),
        };
        if start.size_bytes > MAX_INCOMING_SNAPSHOT_BYTES {
            return Err(bad_request(format!(
                "snapshot of {} bytes exceeds {MAX_INCOMING_SNAPSHOT_BYTES}",
                start.size_bytes
            )));
        }
        // Checked before a byte is received, and again against what this
        // node knows once it is.
        let (vote, meta) = rpc_codec::snapshot_start_from_pb(&start).map_err(bad_request)?;
        group
            .local_view()
            .check_snapshot(&vote, &meta)
            .map_err(bad_request)?;
        // Held until the install below has finished, even if this handler
        // is dropped before.
        let permit = group.transfers.clone().try_acquire_owned().map_err(|_| {
            Status::resource_exhausted(format!(
                "another snapshot transfer to group {} is under way (at most \
                 {MAX_CONCURRENT_INCOMING_SNAPSHOTS} at once); retry later",
                group.group
            ))
        })?;
        let dir = snapshot::incoming_dir(&group.snapshot_dir);
        std::fs::create_dir_all(&dir).map_err(|e| Status::internal(e.to_string()))?;
        check_free_disk(&dir, start.size_bytes, self.disk_margin_bytes)?;
        let file = receive_file(&dir, &start, &mut stream).await?;
        let checked = {
            let path = file.path().to_path_buf();
            let meta = meta.clone();
            let layout =
                GroupLayout::new(group.group).map_err(|e| Status::internal(e.to_string()))?;
            tokio::task::spawn_blocking(move || snapshot::validate_file(&path, &meta, layout))
                .await
                .map_err(|e| Status::internal(e.to_string()))?
        };
        if let Err(e) = checked {
            return Err(bad_request(format!("invalid snapshot: {e}")));
        }
        // Receiving took a while: the group may be gone, or this node may
        // have committed more since.
        group.check_served()?;
        group
            .local_view()
            .check_snapshot(&vote, &meta)
            .map_err(bad_request)?;
        // The install runs in a task of its own: openraft reads the file
        // until it is done, whether or not this handler is still there to
        // answer. The file (unless the install moved it into place) and
        // the permit go when it ends.
        let raft = group.raft.clone();
        let install = tokio::spawn(async move {
            let snapshot = openraft::alias::SnapshotOf::<TypeConfig, SnapshotFile> {
                meta,
                snapshot: SnapshotFile {
                    path: file.path().to_path_buf(),
                },
            };
            let result = raft.install_full_snapshot(vote, snapshot).await;
            drop((file, permit));
            result
        });
        let resp = install
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(stopped)?;
        Ok(Response::new(pb::SnapshotReply {
            vote: Some(crate::codec::vote_to_pb(&resp.vote)),
        }))
    }

    async fn transfer_leader(
        &self,
        request: Request<pb::TransferLeaderRequest>,
    ) -> Result<Response<pb::TransferLeaderReply>, Status> {
        const WHAT: &str = "transfer-leader request";
        let group = self.group_for(&request)?;
        let req = rpc_codec::transfer_leader_from_pb(&request.into_inner()).map_err(bad_request)?;
        group
            .local_view()
            .check_sender(WHAT, req.from_leader())
            .map_err(bad_request)?;
        let resp = group
            .raft
            .handle_transfer_leader(req)
            .await
            .map_err(stopped)?;
        Ok(Response::new(pb::TransferLeaderReply {
            error: resp.err().map(|e| e.to_string()).unwrap_or_default(),
        }))
    }

    async fn forward(
        &self,
        request: Request<pb::ForwardRequest>,
    ) -> Result<Response<pb::ForwardReply>, Status> {
        self.run_forwarded(request.into_inner()).await
    }

    async fn leaders(
        &self,
        _request: Request<pb::LeadersRequest>,
    ) -> Result<Response<pb::LeadersReply>, Status> {
        Ok(Response::new(pb::LeadersReply {
            groups: self.leaders(),
        }))
    }
}

impl RaftGrpc {
    async fn run_forwarded(
        &self,
        r: pb::ForwardRequest,
    ) -> Result<Response<pb::ForwardReply>, Status> {
        let Some(handler) = &self.forward else {
            return Err(Status::unimplemented(
                "this node does not serve forwarded commands",
            ));
        };
        if r.args.is_empty() {
            return Err(bad_request("forwarded command without arguments"));
        }
        let reply = handler.forward(r.args, r.protover).await;
        Ok(Response::new(pb::ForwardReply { reply }))
    }
}

/// The next message of a snapshot stream; `None` at its end. A peer that sends nothing for [`SNAPSHOT_PROGRESS_TIMEOUT`] is
/// given up on, so a stalled transfer never holds its permit and file.
async fn next_chunk(
    stream: &mut Streaming<pb::SnapshotChunk>,
) -> Result<Option<pb::SnapshotChunk>, Status> {
    match tokio::time::timeout(SNAPSHOT_PROGRESS_TIMEOUT, stream.next()).await {
        Err(_) => Err(Status::deadline_exceeded(format!(
            "snapshot stream sent nothing for {SNAPSHOT_PROGRESS_TIMEOUT:?}"
        ))),
        Ok(None) => Ok(None),
        Ok(Some(msg)) => msg.map(Some),
    }
}

/// Refuses a snapshot of `size_bytes` unless the file system of `dir`
/// has room for the file, the data loaded from it (RocksDB holds it beside
/// the old data until compaction) and `margin_bytes`.
fn check_free_disk(dir: &Path, size_bytes: u64, margin_bytes: u64) -> Result<(), Status> {
    let needed = size_bytes.saturating_mul(2).saturating_add(margin_bytes);
    let available = snapshot::free_bytes(dir).map_err(|e| {
        Status::internal(format!(
            "cannot read the free space of {}: {e}",
            dir.display()
        ))
    })?;
    if available < needed {
        return Err(Status::resource_exhausted(format!(
            "not enough disk for a snapshot of {size_bytes} bytes in {}: {needed} bytes needed \
             (twice its size plus {margin_bytes}), {available} available",
            dir.display()
        )));
    }
    Ok(())
}

/// Writes the streamed bytes to a file of their own under `dir`,
/// refusing more bytes than announced. The file is removed when the
/// returned guard is dropped.
async fn receive_file(
    dir: &Path,
    start: &pb::SnapshotStart,
    stream: &mut Streaming<pb::SnapshotChunk>,
) -> Result<IncomingFile, Status> {
    let index = start.last_log_id.as_ref().map_or(0, |l| l.index);
    let term = start.last_log_id.as_ref().map_or(0, |l| l.term);
    // One file per transfer: a retried or concurrent transfer of the same
    // snapshot never truncates a file another one is installing.
    let unique = INCOMING_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = dir.join(format!(
        "{index:020}-{term:020}-{}-{unique}.part",
        std::process::id()
    ));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| Status::internal(e.to_string()))?;
    // From here on, every way out — an error, the peer's reset, this
    // future dropped — removes the file.
    let guard = IncomingFile { path };
    let mut received: u64 = 0;
    while let Some(chunk) = next_chunk(stream).await? {
        let Some(pb::snapshot_chunk::Payload::Data(data)) = chunk.payload else {
            return Err(bad_request("unexpected message in snapshot stream"));
        };
        received = received.saturating_add(data.len() as u64);
        if received > start.size_bytes {
            return Err(bad_request("snapshot stream longer than announced"));
        }
        // On a blocking thread: a write can wait for writeback once a
        // large snapshot has filled the page cache, and the Raft runtime's
        // worker must stay free for heartbeats.
        file = off_the_runtime(move || file.write_all(&data).map(|()| file)).await?;
    }
    if received != start.size_bytes {
        return Err(bad_request(format!(
            "snapshot stream ended after {received} of {} bytes",
            start.size_bytes
        )));
    }
    off_the_runtime(move || file.sync_all()).await?;
    Ok(guard)
}

/// Runs blocking file work on the blocking pool.
async fn off_the_runtime<T: Send + 'static>(
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Status::internal(e.to_string()))?
        .map_err(|e| Status::internal(e.to_string()))
}

/// A file under `snapshots/incoming/`, removed when dropped: a transfer
/// that ends in any way before its install leaves nothing behind.
struct IncomingFile {
    path: PathBuf,
}

impl IncomingFile {
    fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for IncomingFile {
    fn drop(&mut self) {
        match std::fs::remove_file(&self.path) {
            Ok(()) => {}
            // The install moved it into place.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(
                path = %self.path.display(),
                error = %e,
                "cannot remove an incoming snapshot file (it goes at the next start)"
            ),
        }
    }
}
