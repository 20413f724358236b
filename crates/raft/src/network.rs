//! The client half of the node-to-node transport: openraft's RPCs over
//! gRPC (tonic).
//!
//! Each peer gets one lazily connected HTTP/2 channel that reconnects by
//! itself; every call is bounded by [`RPC_TIMEOUT`] (or openraft's own
//! deadline when shorter), message sizes by [`MAX_RPC_MESSAGE_BYTES`], and
//! snapshots travel as a stream of [`SNAPSHOT_CHUNK_BYTES`] chunks read
//! from the snapshot file, so memory stays bounded whatever the data size.
//! openraft sends one request at a time per peer, which bounds the
//! requests (and bytes) in flight per peer.

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
use tonic::transport::{Channel, Endpoint};

use crate::codec::{log_id_to_pb, membership_to_pb, vote_to_pb, CodecError};
use crate::pb;
use crate::pb::raft_service_client::RaftServiceClient;
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
/// Longest a whole snapshot transfer may take.
pub const SNAPSHOT_TRANSFER_TIMEOUT: Duration = Duration::from_secs(600);

/// Creates clients for peers.
#[derive(Debug, Clone, Default)]
pub struct Network;

/// A client for one peer.
pub struct PeerClient {
    target: u64,
    addr: String,
    client: Option<RaftServiceClient<Channel>>,
    /// This is the client openraft uses only for heartbeats.
    for_heartbeats: bool,
    /// The open heartbeat stream of a heartbeat client.
    heartbeats: Option<HeartbeatStream>,
}

/// Heartbeats to one peer go over one long-lived `stream_append` stream.
///
/// openraft's heartbeat worker sends each heartbeat as a one-request
/// `stream_append`; as its own gRPC stream that is a stream setup and
/// teardown (headers, trailers, a server task) per heartbeat, and every
/// ReadIndex round is a heartbeat. Here the heartbeats share one stream
/// and each is one message each way. At most one heartbeat is in flight on
/// the stream, so its reply is the next one to arrive; any doubt (a
/// heartbeat abandoned before its reply, an error, the stream ending, a
/// rejection after which the peer ends the stream) drops the stream and
/// the next heartbeat opens a new one. A reply can therefore never be
/// taken for the answer to a later heartbeat.
struct HeartbeatStream {
    requests: tokio::sync::mpsc::Sender<pb::AppendEntriesRequest>,
    replies: tonic::Streaming<pb::StreamAppendReply>,
    /// A heartbeat was sent and its reply not yet taken.
    awaiting_reply: bool,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: u64, node: &SeshatNode) -> PeerClient {
        PeerClient {
            target,
            addr: node.raft_addr.clone(),
            client: None,
            for_heartbeats: false,
            heartbeats: None,
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
        tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => {
            unreachable(msg)
        }
        _ => network(msg),
    }
}

fn decode_error(target: u64, e: CodecError) -> RPCError<TypeConfig> {
    network(format!("bad reply from node {target}: {e}"))
}

impl PeerClient {
    fn client(&mut self) -> Result<RaftServiceClient<Channel>, RPCError<TypeConfig>> {
        if let Some(c) = &self.client {
            return Ok(c.clone());
        }
        let endpoint = Endpoint::from_shared(format!("http://{}", self.addr))
            .map_err(|e| {
                unreachable(format!(
                    "bad raft address {} of node {}: {e}",
                    self.addr, self.target
                ))
            })?
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(5));
        let client = RaftServiceClient::new(endpoint.connect_lazy())
            .max_decoding_message_size(MAX_RPC_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_RPC_MESSAGE_BYTES);
        self.client = Some(client.clone());
        Ok(client)
    }

    async fn call<T, F, Fut>(&mut self, option: &RPCOption, f: F) -> Result<T, RPCError<TypeConfig>>
    where
        F: FnOnce(RaftServiceClient<Channel>) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let client = self.client()?;
        let deadline = option.hard_ttl().min(RPC_TIMEOUT);
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
    /// needed) and waits for its reply; see [`HeartbeatStream`]. Opening
    /// and the exchange together end by openraft's soft deadline, so the
    /// heartbeat fails here, cleanly, before openraft gives up on it.
    async fn heartbeat(
        &mut self,
        req: AppendEntriesRequest<TypeConfig>,
        option: &RPCOption,
    ) -> Result<StreamAppendResult<TypeConfig>, RPCError<TypeConfig>> {
        let target = self.target;
        let deadline = option.soft_ttl().min(RPC_TIMEOUT);
        let started = Instant::now();
        let until = tokio::time::Instant::from_std(started + deadline);
        if self.heartbeats.as_ref().is_some_and(|s| s.awaiting_reply) {
            // The previous heartbeat was abandoned before its reply.
            self.heartbeats = None;
        }
        if self.heartbeats.is_none() {
            let mut client = self.client()?;
            let (tx, rx) = tokio::sync::mpsc::channel(1);
            let requests =
                futures::stream::unfold(
                    rx,
                    |mut rx| async move { rx.recv().await.map(|r| (r, rx)) },
                );
            let replies = match tokio::time::timeout_at(until, client.stream_append(requests)).await
            {
                Err(_) => {
                    return Err(unreachable(format!(
                        "node {target}: no heartbeat stream within {deadline:?}"
                    )))
                }
                Ok(Err(s)) => return Err(status_error(target, s)),
                Ok(Ok(r)) => r.into_inner(),
            };
            self.heartbeats = Some(HeartbeatStream {
                requests: tx,
                replies,
                awaiting_reply: false,
            });
        }
        let Some(stream) = self.heartbeats.as_mut() else {
            return Err(network(format!("node {target}: no heartbeat stream")));
        };
        stream.awaiting_reply = true;
        let exchange = async {
            stream
                .requests
                .send(rpc_codec::append_request_to_pb(&req))
                .await
                .map_err(|_| unreachable(format!("node {target}: heartbeat stream closed")))?;
            match stream.replies.next().await {
                None => Err(unreachable(format!(
                    "node {target}: heartbeat stream ended"
                ))),
                Some(Err(s)) => Err(status_error(target, s)),
                Some(Ok(reply)) => Ok(reply),
            }
        };
        let reply = match tokio::time::timeout_at(until, exchange).await {
            Err(_) => Err(unreachable(format!(
                "node {target} did not answer a heartbeat within {deadline:?}"
            ))),
            Ok(r) => r,
        };
        let result = reply
            .and_then(|r| rpc_codec::stream_result_from_pb(r).map_err(|e| decode_error(target, e)));
        match &result {
            Ok(Ok(_)) => {
                stream.awaiting_reply = false;
                stages::record_since(Stage::ReplicationRoundTrip, started);
            }
            // The peer ends its side of a stream after a rejection.
            Ok(Err(_)) | Err(_) => self.heartbeats = None,
        }
        result
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
            let target = self.target;
            let mut client = self.client()?;
            // Replies come in request order: the oldest send time is the
            // one a reply answers.
            let sent = Arc::new(Mutex::new(VecDeque::new()));
            let sent_in = sent.clone();
            let requests = input.map(move |r| {
                if let Ok(mut q) = sent_in.lock() {
                    // Bounded by the replication pipeline; a cap in case
                    // replies stop matching requests.
                    if q.len() < 4096 {
                        q.push_back(Instant::now());
                    }
                }
                rpc_codec::append_request_to_pb(&r)
            });
            let setup = option.soft_ttl().min(RPC_TIMEOUT);
            let replies = match tokio::time::timeout(setup, client.stream_append(requests)).await {
                Err(_) => {
                    return Err(unreachable(format!(
                        "node {target}: no stream within {setup:?}"
                    )))
                }
                Ok(Err(s)) => return Err(status_error(target, s)),
                Ok(Ok(r)) => r.into_inner(),
            };
            // Each reply must come within RPC_TIMEOUT of asking for it: a
            // stuck stream is reported instead of waiting forever.
            let out = futures::stream::unfold(Some(replies), move |state| {
                let sent = sent.clone();
                async move {
                    let mut replies = state?;
                    let item = match tokio::time::timeout(RPC_TIMEOUT, replies.next()).await {
                        Err(_) => Err(unreachable(format!(
                            "node {target}: append stream idle for {RPC_TIMEOUT:?}"
                        ))),
                        Ok(None) => return None,
                        Ok(Some(Err(s))) => Err(status_error(target, s)),
                        Ok(Some(Ok(reply))) => {
                            if let Some(t) = sent.lock().ok().and_then(|mut q| q.pop_front()) {
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
        let stream =
            futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) });
        let target = self.target;
        let send = async move { client.install_snapshot(stream).await };
        let reply = tokio::select! {
            closed = cancel => return Err(StreamingError::Closed(closed)),
            r = tokio::time::timeout(SNAPSHOT_TRANSFER_TIMEOUT, send) => r,
        };
        let read_result = reader.await;
        let reply = match reply {
            Err(_) => {
                return Err(to_streaming(unreachable(format!(
                    "snapshot to node {target} timed out"
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
