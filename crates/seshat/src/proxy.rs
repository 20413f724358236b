//! Follower proxy mode (`--follower-mode proxy`): a follower forwards data
//! commands (those whose declaration reads or writes data) to the leader
//! over the internal gRPC port and relays the reply, instead of answering
//! `MOVED`. The leader's side is [`crate::forwarded`].
//!
//! At most once: a forwarded command is sent exactly one time — neither
//! the follower nor the gRPC link retries it. If the link fails after the
//! command may have reached the leader, a write is answered `-TIMEOUT`
//! (indeterminate), never silently re-sent. A client that retries sends a
//! new command, as with Redis itself.

use std::collections::HashMap;
use std::sync::Mutex;

use bytes::Bytes;
use seshat_protocol_resp::{decode_frame, DecodeLimits, Frame, ProtocolVersion};
use seshat_raft::network::MAX_RPC_MESSAGE_BYTES;
use seshat_raft::pb;
use seshat_raft::pb::raft_service_client::RaftServiceClient;
use seshat_raft::peer_tls::{peer_endpoint, PeerTls};
use tonic::transport::Channel;

use crate::node::ServeError;

/// Whether a follower redirects clients or forwards their commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum FollowerMode {
    /// Answer `-MOVED` with the leader's address (Redis Cluster style).
    #[default]
    Redirect,
    /// Forward the command to the leader and relay its reply.
    Proxy,
}

/// gRPC clients to leaders, one per address.
#[derive(Default)]
pub struct Proxy {
    clients: Mutex<HashMap<String, RaftServiceClient<Channel>>>,
    /// Mutual TLS to the leader's Raft port, as the Raft clients use.
    tls: Option<PeerTls>,
}

impl Proxy {
    /// How peers are dialled (mutual TLS, when on).
    pub fn peer_tls(&self) -> Option<&PeerTls> {
        self.tls.as_ref()
    }

    /// A proxy whose clients dial leaders with `tls` when given.
    pub fn new(tls: Option<PeerTls>) -> Proxy {
        Proxy {
            clients: Mutex::default(),
            tls,
        }
    }

    fn client(&self, raft_addr: &str) -> Result<RaftServiceClient<Channel>, ServeError> {
        let mut clients = match self.clients.lock() {
            Ok(c) => c,
            Err(p) => p.into_inner(),
        };
        if let Some(c) = clients.get(raft_addr) {
            return Ok(c.clone());
        }
        let endpoint = peer_endpoint(raft_addr, self.tls.as_ref())
            .map_err(|e| ServeError::NoLeader(format!("bad leader address {raft_addr}: {e}")))?;
        let client = RaftServiceClient::new(endpoint.connect_lazy())
            .max_decoding_message_size(MAX_RPC_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_RPC_MESSAGE_BYTES);
        clients.insert(raft_addr.to_string(), client.clone());
        Ok(client)
    }

    /// Sends `args` to the leader at `raft_addr` once and returns its reply.
    pub async fn forward(
        &self,
        raft_addr: &str,
        args: &[Bytes],
        version: ProtocolVersion,
        is_write: bool,
        timeout: std::time::Duration,
    ) -> Result<Frame, ServeError> {
        let mut client = self.client(raft_addr)?;
        let request = pb::ForwardRequest {
            args: args.to_vec(),
            protover: u32::try_from(version.protover()).unwrap_or(2),
        };
        let reply = match tokio::time::timeout(timeout, client.forward(request)).await {
            Ok(Ok(r)) => r.into_inner().reply,
            Ok(Err(status)) => return Err(link_error(is_write, &status.to_string())),
            Err(_) => return Err(link_error(is_write, "no answer from the leader in time")),
        };
        match decode_frame(&reply, &DecodeLimits::default()) {
            Ok(Some((frame, _))) => Ok(frame),
            _ => Err(link_error(is_write, "unreadable reply from the leader")),
        }
    }
}

impl Proxy {
    /// Sends a peer operation (an internal command, see
    /// [`crate::resharding::INTERNAL`]) to the node at `raft_addr` once and
    /// returns its reply, which may hold bulk strings of up to
    /// `max_reply_bytes`.
    pub async fn call(
        &self,
        raft_addr: &str,
        args: &[Bytes],
        timeout: std::time::Duration,
        max_reply_bytes: usize,
    ) -> Result<Frame, ServeError> {
        let mut client = self.client(raft_addr)?;
        let request = pb::ForwardRequest {
            args: args.to_vec(),
            protover: 2,
        };
        let reply = match tokio::time::timeout(timeout, client.forward(request)).await {
            Ok(Ok(r)) => r.into_inner().reply,
            Ok(Err(status)) => {
                return Err(ServeError::NoLeader(format!("peer {raft_addr}: {status}")))
            }
            Err(_) => {
                return Err(ServeError::NoLeader(format!(
                    "peer {raft_addr}: no answer in time"
                )))
            }
        };
        let limits = DecodeLimits {
            max_bulk_bytes: max_reply_bytes,
            ..DecodeLimits::default()
        };
        match decode_frame(&reply, &limits) {
            Ok(Some((frame, _))) => Ok(frame),
            _ => Err(ServeError::NoLeader(format!(
                "peer {raft_addr}: unreadable reply"
            ))),
        }
    }
}

fn link_error(is_write: bool, why: &str) -> ServeError {
    if is_write {
        ServeError::Timeout(format!(
            "forwarded write not confirmed ({why}); it may have been applied"
        ))
    } else {
        ServeError::NoLeader(format!("leader unreachable through proxy ({why})"))
    }
}
