//! One client connection: decodes requests, runs them, writes replies in
//! order.
//!
//! Pipelining: consecutive writes are proposed to Raft one after another
//! without waiting, so they share log syncs and replication round trips;
//! their replies are awaited in order. Any other command first waits for
//! the writes before it, so a client always reads its own writes.
//!
//! Pipelined reads share one read barrier: before a read that needs one,
//! every request already received is decoded, then one barrier is taken;
//! it covers all of them (they were sent before it began), so those that
//! are reads need no barrier of their own.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures::{FutureExt, SinkExt, StreamExt};
use seshat_common::stages::{self, Stage};
use seshat_protocol_resp::{
    parse_command, CodecError, Command, Frame, ProtocolVersion, ServerCodec,
};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_util::codec::Framed;

use crate::commands::{self, Outcome};
use crate::node::PendingWrite;
use crate::proxy::{is_forwarded, FollowerMode};
use crate::server::Shared;

/// Most writes a connection keeps in flight before waiting for replies.
pub const MAX_PIPELINED_WRITES: usize = 1024;

/// Per-client state that commands read and change.
#[derive(Debug)]
pub struct ClientState {
    /// `CLIENT ID`.
    pub id: u64,
    /// `CLIENT SETNAME`.
    pub name: Option<Bytes>,
    /// Reply protocol (RESP3 after `HELLO 3`).
    pub version: ProtocolVersion,
    /// `CLIENT SETINFO lib-name`.
    pub lib_name: Option<Bytes>,
    /// `CLIENT SETINFO lib-ver`.
    pub lib_ver: Option<Bytes>,
    /// The peer's address.
    pub peer: SocketAddr,
    /// The command being run was received before a read barrier that has
    /// since succeeded: a read needs no barrier of its own.
    pub read_confirmed: bool,
}

/// Most already-received requests decoded ahead of a shared read barrier.
const MAX_DECODED_AHEAD: usize = 1024;

/// What `Framed::next` yields.
type Decoded = Option<Result<seshat_protocol_resp::Request, CodecError>>;

/// A connected client.
pub struct Connection {
    framed: Framed<TcpStream, ServerCodec>,
    shared: Arc<Shared>,
    state: ClientState,
    inflight: VecDeque<InflightWrite>,
    /// Requests decoded ahead of a shared read barrier, in arrival order.
    ahead: VecDeque<Decoded>,
    /// How many of the first `ahead` a succeeded barrier covers.
    covered: usize,
    shutdown: watch::Receiver<bool>,
}

impl Connection {
    /// Wraps an accepted socket.
    pub fn new(
        socket: TcpStream,
        peer: SocketAddr,
        shared: Arc<Shared>,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        let id = shared.stats.next_client_id.fetch_add(1, Ordering::Relaxed);
        Self {
            framed: Framed::new(socket, ServerCodec::default()),
            shared,
            state: ClientState {
                id,
                name: None,
                version: ProtocolVersion::Resp2,
                lib_name: None,
                lib_ver: None,
                peer,
                read_confirmed: false,
            },
            inflight: VecDeque::new(),
            ahead: VecDeque::new(),
            covered: 0,
            shutdown,
        }
    }

    /// Serves the client until it disconnects, breaks the protocol, sends
    /// QUIT, or the server shuts down.
    pub async fn run(mut self) {
        self.shared
            .stats
            .connected_clients
            .fetch_add(1, Ordering::Relaxed);
        if let Err(e) = self.serve().await {
            tracing::debug!(client = self.state.id, error = %e, "connection closed with error");
        }
        self.shared
            .stats
            .connected_clients
            .fetch_sub(1, Ordering::Relaxed);
    }

    async fn serve(&mut self) -> Result<(), CodecError> {
        loop {
            // Take whatever is already decodable without waiting; when
            // nothing is, answer what is pending and then wait.
            let mut covered = false;
            let next = if let Some(item) = self.ahead.pop_front() {
                covered = self.covered > 0;
                self.covered = self.covered.saturating_sub(1);
                item
            } else {
                match self.framed.next().now_or_never() {
                    Some(item) => item,
                    None => {
                        self.drain_writes().await?;
                        self.flush().await?;
                        tokio::select! {
                            item = self.framed.next() => item,
                            _ = self.shutdown.changed() => return Ok(()),
                        }
                    }
                }
            };
            self.state.read_confirmed = covered;
            let request = match next {
                None => {
                    self.drain_writes().await?;
                    return self.flush().await;
                }
                Some(Ok(request)) => request,
                Some(Err(CodecError::Protocol(e))) => {
                    // Answer what came before, then the error, then close —
                    // as Redis does.
                    self.drain_writes().await?;
                    self.framed.send(Frame::error(format!("ERR {e}"))).await?;
                    return Ok(());
                }
                Some(Err(e @ CodecError::Io(_))) => return Err(e),
            };
            self.shared
                .stats
                .total_commands
                .fetch_add(1, Ordering::Relaxed);
            let parse_started = Instant::now();
            let parsed = parse_command(&request);
            stages::record_since(Stage::Dispatch, parse_started);
            let command = match parsed {
                Ok(c) => c,
                Err(e) => {
                    self.drain_writes().await?;
                    self.framed.feed(Frame::error(e.to_string())).await?;
                    continue;
                }
            };
            if self.handle(command, request.args).await? == Flow::Close {
                self.drain_writes().await?;
                return self.flush().await;
            }
        }
    }

    async fn handle(&mut self, command: Command, args: Vec<Bytes>) -> Result<Flow, CodecError> {
        let name = commands::metric_name(&command);
        let started = Instant::now();
        if let Some(leader_raft_addr) = self.proxy_target(&command) {
            // A write acknowledged by the leader through the proxy is not
            // applied here yet: a shared barrier taken earlier must not
            // let a later read skip its own (read-your-writes).
            self.covered = 0;
            self.state.read_confirmed = false;
            self.drain_writes().await?;
            let is_write = commands::as_write(&command).is_some();
            let timeout = self.shared.node.settings.request_timeout;
            let reply = self
                .shared
                .proxy
                .forward(
                    &leader_raft_addr,
                    &args,
                    self.state.version,
                    is_write,
                    timeout,
                )
                .await
                .unwrap_or_else(|e| Frame::error(e.to_string()));
            let ok = !matches!(reply, Frame::Error(_));
            self.shared.requests.record(name, ok, started.elapsed());
            self.framed.feed(reply).await?;
            return Ok(Flow::Continue);
        }
        if let Some((op, slot)) = commands::as_write(&command) {
            let node = self.shared.node.clone();
            match node.propose(op, slot).await {
                Ok(pending) => self.inflight.push_back(InflightWrite {
                    pending,
                    name,
                    started,
                }),
                Err(e) => {
                    self.drain_writes().await?;
                    self.shared.requests.record(name, false, started.elapsed());
                    self.framed.feed(Frame::error(e.to_string())).await?;
                }
            }
            if self.inflight.len() >= MAX_PIPELINED_WRITES {
                self.drain_writes().await?;
            }
            return Ok(Flow::Continue);
        }
        if commands::is_linearizable_read(&command) && !self.state.read_confirmed {
            if let Some(Err(e)) = self.confirm_received_reads(&command).await {
                // The barrier this read would take itself just failed.
                self.drain_writes().await?;
                self.shared.requests.record(name, false, started.elapsed());
                self.framed.feed(Frame::error(e.to_string())).await?;
                return Ok(Flow::Continue);
            }
        }
        self.drain_writes().await?;
        let outcome = {
            let _in_flight = self.shared.requests.start();
            commands::execute(command, &mut self.state, &self.shared).await
        };
        let ok = !matches!(&outcome, Outcome::Reply(Frame::Error(_)));
        self.shared.requests.record(name, ok, started.elapsed());
        match outcome {
            Outcome::Reply(frame) => {
                self.framed.feed(frame).await?;
                Ok(Flow::Continue)
            }
            Outcome::ReplyThenSwitch(frame, version) => {
                // HELLO answers in the protocol it switches to.
                self.framed.codec_mut().set_version(version);
                self.state.version = version;
                self.framed.feed(frame).await?;
                Ok(Flow::Continue)
            }
            Outcome::Close(frame) => {
                self.framed.feed(frame).await?;
                Ok(Flow::Close)
            }
        }
    }

    /// In proxy mode on a follower, the leader's Raft address for a data
    /// command; `None` when the command runs here.
    fn proxy_target(&self, command: &Command) -> Option<String> {
        let node = &self.shared.node;
        if node.settings.follower_mode != FollowerMode::Proxy || !is_forwarded(command) {
            return None;
        }
        let m = node.metrics();
        let leader = m.current_leader?;
        if leader == m.id {
            return None;
        }
        let addr = m
            .membership_config
            .membership()
            .get_node(&leader)
            .map(|n| n.raft_addr.clone());
        addr
    }

    /// If more requests have already arrived behind this read, decodes
    /// them and takes one read barrier for all: on success this read and
    /// every request decoded ahead count as confirmed. With nothing behind
    /// it the read takes its own barrier as usual (`None`).
    async fn confirm_received_reads(
        &mut self,
        command: &Command,
    ) -> Option<Result<(), crate::node::ServeError>> {
        while self.ahead.len() < MAX_DECODED_AHEAD {
            match self.framed.next().now_or_never() {
                Some(item) => {
                    let end = !matches!(item, Some(Ok(_)));
                    self.ahead.push_back(item);
                    if end {
                        break;
                    }
                }
                None => break,
            }
        }
        if self.ahead.len() <= self.covered {
            return None;
        }
        let slot = commands::read_slot(command);
        // Taken after everything in `ahead` was received.
        let result = self.shared.node.read_barrier(slot).await;
        if result.is_ok() {
            self.covered = self.ahead.len();
            self.state.read_confirmed = true;
        }
        Some(result)
    }

    async fn flush(&mut self) -> Result<(), CodecError> {
        let started = Instant::now();
        let result = SinkExt::<Frame>::flush(&mut self.framed).await;
        stages::record_since(Stage::Reply, started);
        result
    }

    /// Waits for every in-flight write, in order, and queues its reply.
    async fn drain_writes(&mut self) -> Result<(), CodecError> {
        while let Some(write) = self.inflight.pop_front() {
            let frame = match self.shared.node.finish(write.pending).await {
                Ok(result) => {
                    self.shared
                        .requests
                        .record(write.name, true, write.started.elapsed());
                    commands::op_result_frame(result)
                }
                Err(e) => {
                    self.shared
                        .requests
                        .record(write.name, false, write.started.elapsed());
                    Frame::error(e.to_string())
                }
            };
            self.framed.feed(frame).await?;
        }
        Ok(())
    }
}

struct InflightWrite {
    pending: PendingWrite,
    name: &'static str,
    started: Instant,
}

#[derive(Debug, PartialEq, Eq)]
enum Flow {
    Continue,
    Close,
}
