//! The server half of the node-to-node transport: a tonic service that
//! hands each RPC to the local Raft instance.
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

use std::io::Write;
use std::path::{Path, PathBuf};

use futures::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use crate::pb;
use crate::pb::raft_service_server::{RaftService, RaftServiceServer};
use crate::peer_input::LocalView;
use crate::rpc_codec;
use crate::snapshot::{self, SnapshotFile};
use crate::types::{Raft, TypeConfig};

/// Distinguishes the files of concurrent or retried snapshot transfers.
static INCOMING_SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Largest snapshot accepted from a peer, in bytes.
pub const MAX_INCOMING_SNAPSHOT_BYTES: u64 = 64 * 1024 * 1024 * 1024;

/// Runs client commands forwarded by followers in proxy mode.
#[tonic::async_trait]
pub trait ForwardHandler: Send + Sync + 'static {
    /// Executes `args` as a client command and returns the encoded RESP
    /// reply in protocol `protover`.
    async fn forward(&self, args: Vec<bytes::Bytes>, protover: u32) -> bytes::Bytes;
}

/// The Raft gRPC service of one node.
pub struct RaftGrpc {
    raft: Raft,
    snapshot_dir: PathBuf,
    forward: Option<std::sync::Arc<dyn ForwardHandler>>,
}

impl RaftGrpc {
    /// A service for `raft`, storing incoming snapshots under
    /// `snapshot_dir`.
    pub fn new(raft: Raft, snapshot_dir: PathBuf) -> Self {
        Self {
            raft,
            snapshot_dir,
            forward: None,
        }
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

/// Decodes an AppendEntries request and checks it against this node.
fn accept_append(
    raft: &Raft,
    r: pb::AppendEntriesRequest,
) -> Result<openraft::raft::AppendEntriesRequest<TypeConfig>, Status> {
    let req = rpc_codec::append_request_from_pb(r).map_err(bad_request)?;
    LocalView::of(raft)
        .check_append(&req)
        .map_err(bad_request)?;
    Ok(req)
}

/// Decodes a Vote or Pre-Vote request and checks it against this node.
fn accept_vote(
    raft: &Raft,
    r: pb::VoteRequest,
) -> Result<openraft::raft::VoteRequest<TypeConfig>, Status> {
    let req = rpc_codec::vote_request_from_pb(r).map_err(bad_request)?;
    LocalView::of(raft)
        .check_sender("vote request", &req.vote)
        .map_err(bad_request)?;
    Ok(req)
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
        // A transport error ends the input. So does a refused request: the
        // replies already due are sent, then the refusal, and the leader
        // reconnects.
        let refused = std::sync::Arc::new(std::sync::Mutex::new(None::<Status>));
        let raft = self.raft.clone();
        let input = request
            .into_inner()
            .take_while(|r| std::future::ready(r.is_ok()))
            .filter_map(|r| std::future::ready(r.ok()))
            .scan(refused.clone(), move |refused, r| {
                std::future::ready(match accept_append(&raft, r) {
                    Ok(req) => Some(req),
                    Err(status) => {
                        tracing::warn!(error = %status.message(), "refusing append request");
                        if let Ok(mut slot) = refused.lock() {
                            *slot = Some(status);
                        }
                        None
                    }
                })
            });
        let output = self.raft.stream_append(input).map(|r| match r {
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
        let req = accept_append(&self.raft, request.into_inner())?;
        let resp = self.raft.append_entries(req).await.map_err(stopped)?;
        Ok(Response::new(rpc_codec::append_response_to_pb(&resp)))
    }

    async fn vote(
        &self,
        request: Request<pb::VoteRequest>,
    ) -> Result<Response<pb::VoteResponse>, Status> {
        let req = accept_vote(&self.raft, request.into_inner())?;
        let resp = self.raft.vote(req).await.map_err(stopped)?;
        Ok(Response::new(rpc_codec::vote_response_to_pb(&resp)))
    }

    async fn pre_vote(
        &self,
        request: Request<pb::VoteRequest>,
    ) -> Result<Response<pb::VoteResponse>, Status> {
        let req = accept_vote(&self.raft, request.into_inner())?;
        let resp = self.raft.pre_vote(req).await.map_err(stopped)?;
        Ok(Response::new(rpc_codec::vote_response_to_pb(&resp)))
    }

    async fn install_snapshot(
        &self,
        request: Request<Streaming<pb::SnapshotChunk>>,
    ) -> Result<Response<pb::SnapshotReply>, Status> {
        let mut stream = request.into_inner();
        let start = match stream.next().await {
            Some(Ok(pb::SnapshotChunk {
                payload: Some(pb::snapshot_chunk::Payload::Start(s)),
            })) => s,
            Some(Ok(_)) => return Err(bad_request("snapshot stream must begin with its metadata")),
            Some(Err(s)) => return Err(s),
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
        LocalView::of(&self.raft)
            .check_snapshot(&vote, &meta)
            .map_err(bad_request)?;
        let path = self.receive_file(&start, &mut stream).await?;
        let checked = {
            let path = path.clone();
            let meta = meta.clone();
            tokio::task::spawn_blocking(move || snapshot::validate_file(&path, &meta))
                .await
                .map_err(|e| Status::internal(e.to_string()))?
        };
        if let Err(e) = checked {
            let _ = std::fs::remove_file(&path);
            return Err(bad_request(format!("invalid snapshot: {e}")));
        }
        // Receiving took a while: this node may have committed more since.
        if let Err(e) = LocalView::of(&self.raft).check_snapshot(&vote, &meta) {
            let _ = std::fs::remove_file(&path);
            return Err(bad_request(e));
        }
        let snapshot = openraft::alias::SnapshotOf::<TypeConfig, SnapshotFile> {
            meta,
            snapshot: SnapshotFile { path: path.clone() },
        };
        let result = self.raft.install_full_snapshot(vote, snapshot).await;
        let _ = std::fs::remove_file(&path);
        let resp = result.map_err(stopped)?;
        Ok(Response::new(pb::SnapshotReply {
            vote: Some(crate::codec::vote_to_pb(&resp.vote)),
        }))
    }

    async fn transfer_leader(
        &self,
        request: Request<pb::TransferLeaderRequest>,
    ) -> Result<Response<pb::TransferLeaderReply>, Status> {
        const WHAT: &str = "transfer-leader request";
        let req = rpc_codec::transfer_leader_from_pb(&request.into_inner()).map_err(bad_request)?;
        LocalView::of(&self.raft)
            .check_sender(WHAT, req.from_leader())
            .map_err(bad_request)?;
        let resp = self
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

    /// Writes the streamed bytes to `snapshots/incoming/<index>-<term>.snap`,
    /// refusing more bytes than announced.
    async fn receive_file(
        &self,
        start: &pb::SnapshotStart,
        stream: &mut Streaming<pb::SnapshotChunk>,
    ) -> Result<PathBuf, Status> {
        let dir = self.snapshot_dir.join("incoming");
        std::fs::create_dir_all(&dir).map_err(|e| Status::internal(e.to_string()))?;
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
        let mut received: u64 = 0;
        while let Some(msg) = stream.next().await {
            let data = match msg?.payload {
                Some(pb::snapshot_chunk::Payload::Data(d)) => d,
                _ => {
                    return Err(cleanup(
                        &path,
                        bad_request("unexpected message in snapshot stream"),
                    ))
                }
            };
            received = received.saturating_add(data.len() as u64);
            if received > start.size_bytes {
                return Err(cleanup(
                    &path,
                    bad_request("snapshot stream longer than announced"),
                ));
            }
            // Chunks are ≤ 1 MiB: a blocking write of that size is short.
            file.write_all(&data)
                .map_err(|e| cleanup(&path, Status::internal(e.to_string())))?;
        }
        if received != start.size_bytes {
            return Err(cleanup(
                &path,
                bad_request(format!(
                    "snapshot stream ended after {received} of {} bytes",
                    start.size_bytes
                )),
            ));
        }
        file.sync_all()
            .map_err(|e| cleanup(&path, Status::internal(e.to_string())))?;
        Ok(path)
    }
}

fn cleanup(path: &Path, status: Status) -> Status {
    let _ = std::fs::remove_file(path);
    status
}
