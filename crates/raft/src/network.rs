//! The client half of the node-to-node transport: openraft's RPCs over
//! gRPC (tonic), for one Raft group.
//!
//! A [`Network`] belongs to one group, and every request its clients send
//! names that group and the target replica ([`crate::route`]), so one
//! server per node serves all its groups. Each peer of the group gets one
//! lazily connected HTTP/2 channel (and one heartbeat stream) that
//! reconnects by itself (mutual TLS when the network has a [`PeerTls`]); message sizes are bounded by [`MAX_RPC_MESSAGE_BYTES`], and
//! snapshots travel as a stream of [`SNAPSHOT_CHUNK_BYTES`] chunks read
//! from the snapshot file, so memory stays bounded whatever the data size.
//! Deadlines ([`Timeouts`]) bound waiting without news, never work that
//! keeps moving: a unary call [`RPC_TIMEOUT`] (or openraft's own deadline
//! when shorter), an append-stream reply that plus the bytes in flight at
//! [`LINK_MIN_BYTES_PER_SEC`], a snapshot stream
//! [`SNAPSHOT_PROGRESS_TIMEOUT`] without a chunk moving. openraft sends
//! one request at a time per peer, which bounds the requests (and bytes)
//! in flight per peer.

use std::collections::VecDeque;
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use seshat_common::stages::{self, Stage};

use futures::StreamExt;
use openraft::base::{BoxFuture, BoxStream};
use openraft::errors::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{Backoff, RPCOption, RaftNetworkFactory};
use openraft::raft::StreamAppendResult;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};
use openraft::{OptionalSend, RaftNetworkV2};
use prost::Message;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::codec::{log_id_to_pb, membership_to_pb, vote_to_pb, CodecError};
use crate::layout::GroupId;
use crate::pb;
use crate::pb::raft_service_client::RaftServiceClient;
use crate::peer_tls::{peer_endpoint, PeerTls};
use crate::route::Route;
use crate::rpc_codec;
use crate::snapshot::SnapshotFile;
use crate::types::{SeshatNode, TypeConfig, Vote};

/// Default deadline of one RPC.
pub const RPC_TIMEOUT: Duration = Duration::from_secs(5);
/// Deadline for establishing a connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Largest gRPC message sent or accepted (tonic's default is 4 MiB; an
/// append batch of openraft's `max_payload_entries` entries of the largest
/// allowed value must fit).
pub const MAX_RPC_MESSAGE_BYTES: usize = 64 * 1024 * 1024;
/// Size of one snapshot chunk on the wire.
pub const SNAPSHOT_CHUNK_BYTES: usize = 1024 * 1024;
/// Snapshot chunks buffered between the file reader and the stream.
pub const SNAPSHOT_CHUNKS_IN_FLIGHT: usize = 4;
/// Longest a snapshot stream may go without moving a chunk, on either
/// side. A transfer takes as long as it needs while bytes keep moving.
pub const SNAPSHOT_PROGRESS_TIMEOUT: Duration = Duration::from_secs(30);
/// Time the receiver gets, after the last chunk, to check and install a
/// snapshot, beyond what its size accounts for
/// ([`SNAPSHOT_INSTALL_MIN_BYTES_PER_SEC`]).
pub const SNAPSHOT_INSTALL_TIMEOUT_BASE: Duration = Duration::from_secs(60);
/// Slowest rate at which a receiver is assumed to check and load a
/// snapshot (it reads the file twice and writes its data once).
pub const SNAPSHOT_INSTALL_MIN_BYTES_PER_SEC: u64 = 8 * 1024 * 1024;
/// Slowest link between two nodes the append stream allows for: a reply
/// may take [`RPC_TIMEOUT`] plus the time the requests in flight take to
/// cross a link this slow.
pub const LINK_MIN_BYTES_PER_SEC: u64 = 1024 * 1024;

/// The transport's deadlines. None bounds how long a transfer that keeps
/// moving may take; each bounds how long the client waits without news.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// A unary call, a stream's setup, a reply on an idle append stream.
    pub rpc: Duration,
    /// A snapshot stream without progress (see [`SNAPSHOT_PROGRESS_TIMEOUT`]).
    pub snapshot_progress: Duration,
    /// See [`SNAPSHOT_INSTALL_TIMEOUT_BASE`].
    pub snapshot_install_base: Duration,
    /// See [`SNAPSHOT_INSTALL_MIN_BYTES_PER_SEC`].
    pub snapshot_install_min_bytes_per_sec: u64,
    /// See [`LINK_MIN_BYTES_PER_SEC`].
    pub link_min_bytes_per_sec: u64,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            rpc: RPC_TIMEOUT,
            snapshot_progress: SNAPSHOT_PROGRESS_TIMEOUT,
            snapshot_install_base: SNAPSHOT_INSTALL_TIMEOUT_BASE,
            snapshot_install_min_bytes_per_sec: SNAPSHOT_INSTALL_MIN_BYTES_PER_SEC,
            link_min_bytes_per_sec: LINK_MIN_BYTES_PER_SEC,
        }
    }
}

impl Timeouts {
    /// How long `bytes` take at `bytes_per_sec` (at least 1 byte/s).
    fn at_rate(bytes: u64, bytes_per_sec: u64) -> Duration {
        Duration::from_secs_f64(bytes as f64 / bytes_per_sec.max(1) as f64)
    }

    /// How long the receiver may take to check and install a snapshot of
    /// `size_bytes` once it has all of it.
    pub fn snapshot_install(&self, size_bytes: u64) -> Duration {
        self.snapshot_install_base
            + Self::at_rate(size_bytes, self.snapshot_install_min_bytes_per_sec)
    }

    /// How long a reply on the append stream may take while
    /// `in_flight_bytes` of requests are unanswered.
    pub fn append_reply(&self, in_flight_bytes: u64) -> Duration {
        self.rpc + Self::at_rate(in_flight_bytes, self.link_min_bytes_per_sec)
    }
}

/// Creates clients for the peers of one Raft group.
#[derive(Debug, Clone)]
pub struct Network {
    group: GroupId,
    timeouts: Timeouts,
    tls: Option<PeerTls>,
}

impl Network {
    /// The network of `group`, with the default [`Timeouts`] and no TLS.
    pub fn new(group: GroupId) -> Self {
        Self {
            group,
            timeouts: Timeouts::default(),
            tls: None,
        }
    }

    /// The same network for `group`.
    pub fn with_group(mut self, group: GroupId) -> Self {
        self.group = group;
        self
    }

    /// Clients use `timeouts`.
    pub fn with_timeouts(mut self, timeouts: Timeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    /// The group whose peers it reaches.
    pub fn group(&self) -> GroupId {
        self.group
    }

    /// Clients dial peers with mutual TLS (see [`crate::peer_tls`]).
    pub fn with_tls(mut self, tls: PeerTls) -> Self {
        self.tls = Some(tls);
        self
    }
}

/// A gRPC client whose every request carries its [`Route`].
type GroupClient = RaftServiceClient<InterceptedService<Channel, Route>>;

/// A client for one replica of the group.
pub struct PeerClient {
    target: u64,
    group: GroupId,
    addr: String,
    timeouts: Timeouts,
    tls: Option<PeerTls>,
    client: Option<GroupClient>,
    /// This is the client openraft uses only for heartbeats.
    for_heartbeats: bool,
    /// The open heartbeat stream of a heartbeat client.
    heartbeats: Option<HeartbeatStream>,
    /// The heartbeat stream being opened.
    opening: Option<OpeningHeartbeats>,
}

/// Heartbeats to one peer go over one long-lived `stream_append` stream.
///
/// openraft's heartbeat worker sends each heartbeat as a one-request
/// `stream_append`; as its own gRPC stream that is a stream setup and
/// teardown (headers, trailers, a server task) per heartbeat, and every
/// ReadIndex round is a heartbeat. Here the heartbeats share one stream
/// and each is one message each way.
///
/// Replies come in request order, and the stream counts the heartbeats
/// it still owes a reply: a heartbeat abandoned at its deadline leaves its
/// reply owed, and the next heartbeat skips that many replies before it
/// takes one as its own. A reply can therefore never be taken for the
/// answer to a later heartbeat, and a link whose round trip is close to
/// the deadline keeps its stream instead of reopening it (a round trip
/// more) after every late reply. Any other doubt (an error, the stream
/// ending, a rejection after which the peer ends the stream, more than
/// [`MAX_ABANDONED_HEARTBEATS`] owed) drops the stream.
struct HeartbeatStream {
    requests: tokio::sync::mpsc::Sender<pb::AppendEntriesRequest>,
    replies: tonic::Streaming<pb::StreamAppendReply>,
    /// Heartbeats sent whose replies were not taken yet.
    owed: u32,
}

/// Replies of abandoned heartbeats a heartbeat stream may owe; beyond,
/// the stream is dropped.
pub const MAX_ABANDONED_HEARTBEATS: u32 = 4;

/// A heartbeat stream being opened, in a task of its own: opening costs a
/// round trip or more (a new connection, the stream's headers), and a
/// heartbeat abandoned meanwhile must not waste it.
type OpeningHeartbeats = tokio::task::JoinHandle<Result<HeartbeatStream, RPCError<TypeConfig>>>;

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: u64, node: &SeshatNode) -> PeerClient {
        PeerClient {
            target,
            group: self.group,
            addr: node.raft_addr.clone(),
            timeouts: self.timeouts,
            tls: self.tls.clone(),
            client: None,
            for_heartbeats: false,
            heartbeats: None,
            opening: None,
        }
    }

    async fn new_heartbeat_client(&mut self, target: u64, node: &SeshatNode) -> PeerClient {
        PeerClient {
            for_heartbeats: true,
            ..self.new_client(target, node).await
        }
    }
}

fn unreachable(e: impl std::fmt::Display) -> RPCError<TypeConfig> {
    RPCError::Unreachable(Unreachable::from_string(e.to_string()))
}

fn network(e: impl std::fmt::Display) -> RPCError<TypeConfig> {
    RPCError::Network(NetworkError::from_string(e.to_string()))
}

fn status_error(target: u64, s: tonic::Status) -> RPCError<TypeConfig> {
    let msg = format!("node {target}: {s}");
    match s.code() {
        // Not there, or another node's replica answers at that address (a
        // group not served, a replica dropped, a node replaced by a new
        // one on the same address): as unreachable as a down peer, so
        // openraft backs off instead of retrying at once.
        tonic::Code::Unavailable
        | tonic::Code::DeadlineExceeded
        | tonic::Code::Cancelled
        | tonic::Code::NotFound
        | tonic::Code::FailedPrecondition => unreachable(msg),
        _ => network(msg),
    }
}

fn decode_error(target: u64, e: CodecError) -> RPCError<TypeConfig> {
    network(format!("bad reply from node {target}: {e}"))
}

impl PeerClient {
    fn client(&mut self) -> Result<GroupClient, RPCError<TypeConfig>> {
        if let Some(c) = &self.client {
            return Ok(c.clone());
        }
        let endpoint = peer_endpoint(&self.addr, self.tls.as_ref())
            .map_err(|e| {
                unreachable(format!(
                    "bad raft address {} of node {} (group {}): {e}",
                    self.addr, self.target, self.group
                ))
            })?
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(5));
        let route = Route::new(self.group, self.target);
        let client = RaftServiceClient::with_interceptor(endpoint.connect_lazy(), route)
            .max_decoding_message_size(MAX_RPC_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_RPC_MESSAGE_BYTES);
        self.client = Some(client.clone());
        Ok(client)
    }

    async fn call<T, F, Fut>(&mut self, option: &RPCOption, f: F) -> Result<T, RPCError<TypeConfig>>
    where
        F: FnOnce(GroupClient) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let client = self.client()?;
        let deadline = option.hard_ttl().min(self.timeouts.rpc);
        match tokio::time::timeout(deadline, f(client)).await {
            Err(_) => Err(unreachable(format!(
                "node {} did not answer within {deadline:?}",
                self.target
            ))),
            Ok(Err(s)) => Err(status_error(self.target, s)),
            Ok(Ok(r)) => Ok(r.into_inner()),
        }
    }

    /// Sends one heartbeat on the peer's heartbeat stream (opening it if
    /// needed) and waits for its reply; see [`HeartbeatStream`]. It ends by
    /// openraft's soft deadline, so the heartbeat fails here, cleanly,
    /// before openraft gives up on it.
    async fn heartbeat(
        &mut self,
        req: AppendEntriesRequest<TypeConfig>,
        option: &RPCOption,
    ) -> Result<StreamAppendResult<TypeConfig>, RPCError<TypeConfig>> {
        let target = self.target;
        let deadline = option.soft_ttl().min(self.timeouts.rpc);
        let started = Instant::now();
        let until = tokio::time::Instant::from_std(started + deadline);
        if self
            .heartbeats
            .as_ref()
            .is_some_and(|s| s.owed > MAX_ABANDONED_HEARTBEATS)
        {
            self.heartbeats = None;
        }
        if self.heartbeats.is_none() {
            self.heartbeats = Some(self.open_heartbeats(until, deadline).await?);
        }
        let Some(stream) = self.heartbeats.as_mut() else {
            return Err(network(format!("node {target}: no heartbeat stream")));
        };
        let exchange = async {
            let permit = stream
                .requests
                .reserve()
                .await
                .map_err(|_| unreachable(format!("node {target}: heartbeat stream closed")))?;
            // Counted in the same step as it is sent: the count never
            // misses a heartbeat on the wire.
            permit.send(rpc_codec::append_request_to_pb(&req));
            stream.owed += 1;
            loop {
                let reply = match stream.replies.next().await {
                    None => Err(unreachable(format!(
                        "node {target}: heartbeat stream ended"
                    ))),
                    Some(Err(s)) => Err(status_error(target, s)),
                    Some(Ok(reply)) => Ok(reply),
                };
                stream.owed = stream.owed.saturating_sub(1);
                // Replies before this heartbeat's are those of heartbeats
                // abandoned at their deadline.
                if stream.owed == 0 || reply.is_err() {
                    return reply;
                }
            }
        };
        let (reply, late) = match tokio::time::timeout_at(until, exchange).await {
            Err(_) => (
                Err(unreachable(format!(
                    "node {target} did not answer a heartbeat within {deadline:?}"
                ))),
                true,
            ),
            Ok(r) => (r, false),
        };
        let result = reply
            .and_then(|r| rpc_codec::stream_result_from_pb(r).map_err(|e| decode_error(target, e)));
        match &result {
            Ok(Ok(_)) => stages::record_since(Stage::ReplicationRoundTrip, started),
            // Its reply stays owed, and the stream stays.
            Err(_) if late => {}
            // The peer ends its side of a stream after a rejection.
            Ok(Err(_)) | Err(_) => self.heartbeats = None,
        }
        result
    }

    /// Waits until `until` for the heartbeat stream being opened, starting
    /// to open one if none is. A stream still opening at `until` stays in
    /// the works for the next heartbeat.
    async fn open_heartbeats(
        &mut self,
        until: tokio::time::Instant,
        deadline: Duration,
    ) -> Result<HeartbeatStream, RPCError<TypeConfig>> {
        let target = self.target;
        if self.opening.is_none() {
            let mut client = self.client()?;
            let setup = self.timeouts.rpc;
            self.opening = Some(tokio::spawn(async move {
                let (tx, rx) = tokio::sync::mpsc::channel(1);
                let requests = futures::stream::unfold(rx, |mut rx| async move {
                    rx.recv().await.map(|r| (r, rx))
                });
                match tokio::time::timeout(setup, client.stream_append(requests)).await {
                    Err(_) => Err(unreachable(format!(
                        "node {target}: no heartbeat stream within {setup:?}"
                    ))),
                    Ok(Err(s)) => Err(status_error(target, s)),
                    Ok(Ok(r)) => Ok(HeartbeatStream {
                        requests: tx,
                        replies: r.into_inner(),
                        owed: 0,
                    }),
                }
            }));
        }
        let Some(opening) = self.opening.as_mut() else {
            return Err(network(format!("node {target}: no heartbeat stream")));
        };
        // Kept in `self` while awaited: if this heartbeat is dropped, the
        // next one finds the stream (being) opened.
        let joined = tokio::time::timeout_at(until, opening).await;
        match joined {
            Err(_) => Err(unreachable(format!(
                "node {target}: heartbeat stream not open within {deadline:?}"
            ))),
            Ok(joined) => {
                self.opening = None;
                joined.map_err(|e| {
                    network(format!(
                        "node {target}: opening the heartbeat stream failed: {e}"
                    ))
                })?
            }
        }
    }
}

impl RaftNetworkV2<TypeConfig> for PeerClient {
    type SnapshotData = SnapshotFile;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        let req = rpc_codec::append_request_to_pb(&rpc);
        let reply = self
            .call(&option, |mut c| async move { c.append_entries(req).await })
            .await?;
        rpc_codec::append_response_from_pb(reply).map_err(|e| decode_error(self.target, e))
    }

    fn stream_append<'s, S>(
        &'s mut self,
        input: S,
        option: RPCOption,
    ) -> BoxFuture<
        's,
        Result<
            BoxStream<'s, Result<StreamAppendResult<TypeConfig>, RPCError<TypeConfig>>>,
            RPCError<TypeConfig>,
        >,
    >
    where
        S: futures::Stream<Item = AppendEntriesRequest<TypeConfig>>
            + OptionalSend
            + Unpin
            + 'static,
    {
        Box::pin(async move {
            if self.for_heartbeats {
                // openraft's heartbeat worker: exactly one request.
                let mut input = input;
                let Some(req) = input.next().await else {
                    return Ok(Box::pin(futures::stream::empty()) as BoxStream<'s, _>);
                };
                let result = self.heartbeat(req, &option).await;
                return Ok(
                    Box::pin(futures::stream::once(std::future::ready(result))) as BoxStream<'s, _>
                );
            }
            // The first request before the connection: openraft sleeps
            // out its replication backoff while producing a request, so a
            // peer that refuses connections is retried at the backoff's
            // pace (200 ms growing to 1 s), not as fast as the leader's
            // core loops (tens of thousands of attempts a second, each
            // logged, under write load). A session with nothing to send
            // ends without a connection.
            let mut input = input;
            let Some(first) = input.next().await else {
                return Ok(Box::pin(futures::stream::empty()) as BoxStream<'s, _>);
            };
            let input = futures::stream::once(std::future::ready(first)).chain(input);
            let target = self.target;
            let timeouts = self.timeouts;
            let mut client = self.client()?;
            // Replies come in request order: the oldest request in flight
            // is the one a reply answers.
            let in_flight = Arc::new(Mutex::new(InFlight::default()));
            let in_flight_in = in_flight.clone();
            let requests = input.map(move |r| {
                let req = rpc_codec::append_request_to_pb(&r);
                if let Ok(mut f) = in_flight_in.lock() {
                    f.sent(req.encoded_len() as u64);
                }
                req
            });
            let setup = option.soft_ttl().min(timeouts.rpc);
            let replies = match tokio::time::timeout(setup, client.stream_append(requests)).await {
                Err(_) => {
                    return Err(unreachable(format!(
                        "node {target}: no stream within {setup:?}"
                    )))
                }
                Ok(Err(s)) => return Err(status_error(target, s)),
                Ok(Ok(r)) => r.into_inner(),
            };
            // Each reply must come within `Timeouts::append_reply` of the
            // bytes in flight (a stuck stream is reported instead of
            // waiting forever; a slow link that keeps moving is not).
            let out = futures::stream::unfold(Some(replies), move |state| {
                let in_flight = in_flight.clone();
                async move {
                    let mut replies = state?;
                    let item = match next_reply(&mut replies, &in_flight, &timeouts).await {
                        Err(waited) => Err(unreachable(format!(
                            "node {target}: no append reply within {waited:?}"
                        ))),
                        Ok(None) => return None,
                        Ok(Some(Err(s))) => Err(status_error(target, s)),
                        Ok(Some(Ok(reply))) => {
                            let sent = in_flight.lock().ok().and_then(|mut f| f.answered());
                            if let Some(t) = sent {
                                stages::record_since(Stage::ReplicationRoundTrip, t);
                            }
                            rpc_codec::stream_result_from_pb(reply)
                                .map_err(|e| decode_error(target, e))
                        }
                    };
                    let next = if item.is_ok() { Some(replies) } else { None };
                    Some((item, next))
                }
            });
            Ok(Box::pin(out) as BoxStream<'s, _>)
        })
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        let req = rpc_codec::vote_request_to_pb(&rpc);
        let reply = self
            .call(&option, |mut c| async move { c.vote(req).await })
            .await?;
        rpc_codec::vote_response_from_pb(reply).map_err(|e| decode_error(self.target, e))
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        let req = rpc_codec::vote_request_to_pb(&rpc);
        let reply = self
            .call(&option, |mut c| async move { c.pre_vote(req).await })
            .await?;
        rpc_codec::vote_response_from_pb(reply).map_err(|e| decode_error(self.target, e))
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: openraft::alias::SnapshotOf<TypeConfig, SnapshotFile>,
        cancel: impl std::future::Future<Output = ReplicationClosed> + OptionalSend + 'static,
        // openraft's `install_snapshot_timeout` would bound the whole
        // transfer; `until_stalled` bounds its progress instead.
        _option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let to_streaming = |e: RPCError<TypeConfig>| match e {
            RPCError::Unreachable(u) => StreamingError::Unreachable(u),
            other => StreamingError::Network(NetworkError::from_string(other.to_string())),
        };
        let mut client = self.client().map_err(to_streaming)?;
        let path = snapshot.snapshot.path.clone();
        let size_bytes = std::fs::metadata(&path)
            .map_err(|e| StreamingError::Network(NetworkError::new(&e)))?
            .len();
        let meta = &snapshot.meta;
        let start = pb::SnapshotChunk {
            payload: Some(pb::snapshot_chunk::Payload::Start(pb::SnapshotStart {
                vote: Some(vote_to_pb(&vote)),
                last_log_id: meta.last_log_id.as_ref().map(log_id_to_pb),
                membership_log_id: meta.last_membership.log_id().as_ref().map(log_id_to_pb),
                membership: Some(membership_to_pb(meta.last_membership.membership())),
                size_bytes,
            })),
        };
        let (tx, rx) = tokio::sync::mpsc::channel::<pb::SnapshotChunk>(SNAPSHOT_CHUNKS_IN_FLIGHT);
        tx.send(start)
            .await
            .map_err(|e| StreamingError::Network(NetworkError::from_string(e.to_string())))?;
        // The file is read in a blocking thread, one bounded chunk at a
        // time; the channel's capacity bounds what is buffered.
        let reader = tokio::task::spawn_blocking(move || stream_file(&path, &tx));
        // The transport takes a chunk when it has room for it (HTTP/2 flow
        // control): each one taken is progress.
        let (moved, progress) = tokio::sync::watch::channel(Progress::default());
        let stream = futures::stream::unfold((rx, moved), |(mut rx, moved)| async move {
            match rx.recv().await {
                Some(chunk) => {
                    moved.send_modify(|p| p.chunks += 1);
                    Some((chunk, (rx, moved)))
                }
                None => {
                    moved.send_modify(|p| p.done = true);
                    None
                }
            }
        });
        let target = self.target;
        let send = async move { client.install_snapshot(stream).await };
        let reply = tokio::select! {
            closed = cancel => return Err(StreamingError::Closed(closed)),
            r = until_stalled(send, progress, &self.timeouts, size_bytes) => r,
        };
        let read_result = reader.await;
        let reply = match reply {
            Err(stalled) => {
                return Err(to_streaming(unreachable(format!(
                    "snapshot of {size_bytes} bytes to node {target}: {stalled}"
                ))))
            }
            Ok(Err(s)) => return Err(to_streaming(status_error(target, s))),
            Ok(Ok(r)) => r.into_inner(),
        };
        match read_result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(StreamingError::Network(NetworkError::new(&e))),
            Err(e) => {
                return Err(StreamingError::Network(NetworkError::from_string(
                    e.to_string(),
                )))
            }
        }
        let vote = rpc_codec::snapshot_reply_from_pb(&reply).map_err(|e| {
            StreamingError::Network(NetworkError::from_string(format!(
                "bad reply from node {target}: {e}"
            )))
        })?;
        Ok(SnapshotResponse::new(vote))
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        let msg = pb::TransferLeaderRequest {
            from_leader: Some(vote_to_pb(req.from_leader())),
            to_node_id: *req.to_node_id(),
            last_log_id: req.last_log_id().map(log_id_to_pb),
        };
        let reply = self
            .call(&option, |mut c| async move { c.transfer_leader(msg).await })
            .await?;
        if reply.error.is_empty() {
            Ok(Ok(()))
        } else {
            Err(network(format!(
                "node {} refused leadership: {}",
                self.target, reply.error
            )))
        }
    }

    fn backoff(&self) -> Option<Backoff> {
        // After a failure, retry a down peer at most every 200 ms instead of
        // spinning.
        Some(Backoff::new(std::iter::repeat(Duration::from_millis(200))))
    }
}

/// How far a snapshot stream has gone.
#[derive(Debug, Default, Clone, Copy)]
struct Progress {
    /// Chunks taken by the transport.
    chunks: u64,
    /// The transport has taken the whole stream.
    done: bool,
}

/// Runs `send` (a snapshot transfer) while it makes progress: it fails
/// after `timeouts.snapshot_progress` without a chunk taken, or, once
/// every chunk is, after `timeouts.snapshot_install(size_bytes)` without
/// the receiver's reply. A transfer has no overall deadline: a large
/// snapshot over a slow link takes as long as it needs.
async fn until_stalled<T>(
    send: impl std::future::Future<Output = T>,
    mut progress: tokio::sync::watch::Receiver<Progress>,
    timeouts: &Timeouts,
    size_bytes: u64,
) -> Result<T, String> {
    tokio::pin!(send);
    let mut watching = true;
    let mut seen = Progress::default();
    let mut until = tokio::time::Instant::now() + timeouts.snapshot_progress;
    loop {
        tokio::select! {
            r = &mut send => return Ok(r),
            changed = progress.changed(), if watching => {
                // Closed once the stream is dropped; the last deadline set holds.
                watching = changed.is_ok();
                seen = *progress.borrow_and_update();
                until = tokio::time::Instant::now() + if seen.done {
                    timeouts.snapshot_install(size_bytes)
                } else {
                    timeouts.snapshot_progress
                };
            }
            _ = tokio::time::sleep_until(until) => {
                return Err(if seen.done {
                    format!(
                        "sent, but not installed within {:?}",
                        timeouts.snapshot_install(size_bytes)
                    )
                } else {
                    format!(
                        "no progress for {:?} after {} chunks",
                        timeouts.snapshot_progress, seen.chunks
                    )
                });
            }
        }
    }
}

/// The requests of an append stream not answered yet.
#[derive(Default)]
struct InFlight {
    /// When each was sent, and its size.
    sent: VecDeque<(Instant, u64)>,
    /// Their total size.
    bytes: u64,
}

impl InFlight {
    /// Bounded by the replication pipeline; a cap in case replies stop
    /// matching requests.
    const MAX_REQUESTS: usize = 4096;

    fn sent(&mut self, bytes: u64) {
        if self.sent.len() < Self::MAX_REQUESTS {
            self.sent.push_back((Instant::now(), bytes));
            self.bytes = self.bytes.saturating_add(bytes);
        }
    }

    /// The oldest request was answered: when it was sent.
    fn answered(&mut self) -> Option<Instant> {
        let (at, bytes) = self.sent.pop_front()?;
        self.bytes = self.bytes.saturating_sub(bytes);
        Some(at)
    }
}

/// The next reply of an append stream, waiting at most
/// `Timeouts::append_reply` of the bytes in flight; the deadline grows
/// when more requests are sent meanwhile. `Err` carries how long it
/// waited.
async fn next_reply(
    replies: &mut tonic::Streaming<pb::StreamAppendReply>,
    in_flight: &Mutex<InFlight>,
    timeouts: &Timeouts,
) -> Result<Option<Result<pb::StreamAppendReply, tonic::Status>>, Duration> {
    let since = tokio::time::Instant::now();
    loop {
        let bytes = in_flight.lock().map_or(0, |f| f.bytes);
        let until = since + timeouts.append_reply(bytes);
        if until <= tokio::time::Instant::now() {
            return Err(since.elapsed());
        }
        // `next` is cancel-safe: a deadline passed loses nothing.
        if let Ok(reply) = tokio::time::timeout_at(until, replies.next()).await {
            return Ok(reply);
        }
    }
}

fn stream_file(
    path: &std::path::Path,
    tx: &tokio::sync::mpsc::Sender<pb::SnapshotChunk>,
) -> std::io::Result<()> {
    let mut file = std::fs::File::open(path)?;
    loop {
        let mut buf = vec![0u8; SNAPSHOT_CHUNK_BYTES];
        let mut filled = 0;
        while filled < buf.len() {
            let n = file.read(&mut buf[filled..])?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        if filled == 0 {
            return Ok(());
        }
        buf.truncate(filled);
        let chunk = pb::SnapshotChunk {
            payload: Some(pb::snapshot_chunk::Payload::Data(buf.into())),
        };
        if tx.blocking_send(chunk).is_err() {
            // The receiver went away: the transfer was cancelled.
            return Ok(());
        }
    }
}
