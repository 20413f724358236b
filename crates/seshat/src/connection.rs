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
//!
//! Where a request goes comes from its command's declaration
//! ([`Decl::route`]): writes to the log, reads after a barrier, pure
//! commands at once, server commands to [`commands::execute_server`].
//! Transactions are kept here: `MULTI` queues, `EXEC` proposes the queue
//! as one write (one log entry, atomic on every replica) with the
//! `WATCH`ed keys' modification indexes, checked at apply.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use futures::{FutureExt, SinkExt, StreamExt};
use seshat_commands::{Decl, Route, ServerCmd};
use seshat_common::crc16_slot;
use seshat_common::stages::{self, Stage};
use seshat_kv::Write;
use seshat_protocol_resp::{CodecError, Frame, ServerCodec};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tokio_util::codec::Framed;

use crate::client_memory::{MeteredCodec, Registration};
use crate::commands::{self, Outcome};
use crate::node::{Node, PendingWrite, ServeError};
use crate::proxy::FollowerMode;
use crate::session::{ClientState, Multi, MAX_QUEUED_COMMANDS};
use crate::shared::Shared;

/// Most writes a connection keeps in flight before waiting for replies.
pub const MAX_PIPELINED_WRITES: usize = 1024;

/// Buffers larger than this are replaced between requests.
const KEEP_BUFFER_BYTES: usize = 64 * 1024;
/// What a released buffer is replaced with (tokio-util's initial size).
const SMALL_BUFFER_BYTES: usize = 8 * 1024;

/// Most already-received requests decoded ahead of a shared read barrier.
const MAX_DECODED_AHEAD: usize = 1024;

/// What `Framed::next` yields.
type Decoded = Option<Result<seshat_protocol_resp::Request, CodecError>>;

/// A client's byte stream: a TCP socket, or a TLS session over one.
/// [`Connection`] is generic over it, so the plain path pays nothing for
/// TLS.
pub trait ClientStream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> ClientStream for S {}

/// A connected client.
pub struct Connection<S> {
    framed: Framed<S, MeteredCodec>,
    shared: Arc<Shared>,
    /// This client's entry in the server-wide client memory account.
    memory: Registration,
    /// Bytes of the requests in `ahead`.
    ahead_bytes: usize,
    /// Bytes of the writes in `inflight`.
    inflight_bytes: usize,
    /// The largest the output buffer has been since last released.
    write_peak: usize,
    state: ClientState,
    inflight: VecDeque<InflightWrite>,
    /// Requests decoded ahead of a shared read barrier, in arrival order.
    ahead: VecDeque<Decoded>,
    /// How many of the first `ahead` a succeeded barrier covers.
    covered: usize,
    shutdown: watch::Receiver<bool>,
    /// The replicated ACL users: a change may revoke this client's user.
    users: watch::Receiver<Arc<seshat_commands::acl::Users>>,
}

impl<S: ClientStream> Connection<S> {
    /// Wraps an accepted stream; `tls` says whether it came in on the TLS
    /// port.
    pub fn new(
        socket: S,
        peer: SocketAddr,
        tls: bool,
        shared: Arc<Shared>,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        let id = shared.stats.next_client_id.fetch_add(1, Ordering::Relaxed);
        let usage = shared.client_memory.register(id);
        let users = shared.auth.subscribe();
        let authenticated = !shared.auth.required();
        let codec = MeteredCodec::new(ServerCodec::default(), usage.clone());
        let mut state = ClientState::new(id, peer, authenticated, shared.auth.default_identity());
        state.tls = tls;
        Self {
            framed: Framed::new(socket, codec),
            shared,
            memory: Registration(usage),
            ahead_bytes: 0,
            inflight_bytes: 0,
            write_peak: 0,
            state,
            inflight: VecDeque::new(),
            ahead: VecDeque::new(),
            covered: 0,
            shutdown,
            users,
        }
    }

    /// Serves the client until it disconnects, breaks the protocol, sends
    /// QUIT, or the server shuts down.
    pub async fn run(mut self) {
        self.shared
            .stats
            .connected_clients
            .fetch_add(1, Ordering::Relaxed);
        let usage = self.memory.0.clone();
        let idle = self.shared.settings.client_timeout;
        tokio::select! {
            result = self.serve() => {
                if let Err(e) = result {
                    tracing::debug!(client = self.state.id, error = %e, "connection closed with error");
                }
            }
            // Chosen over maxmemory-clients: logged and counted there.
            () = usage.evicted() => {}
            () = usage.idle(idle) => {
                self.shared.stats.idle_timeouts.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(client = self.state.id, "idle client timed out");
            }
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
            self.account_memory();
            // Until it authenticates, a client may only send small requests.
            let must_auth = self.shared.auth.must_authenticate(self.state.authenticated);
            self.framed
                .codec_mut()
                .inner_mut()
                .set_unauthenticated(must_auth);
            let next = if let Some(item) = self.ahead.pop_front() {
                self.ahead_bytes = self.ahead_bytes.saturating_sub(decoded_bytes(&item));
                covered = self.covered > 0;
                self.covered = self.covered.saturating_sub(1);
                item
            } else {
                match self.framed.next().now_or_never() {
                    Some(item) => item,
                    None => {
                        self.drain_writes().await?;
                        // The replies are ready: from here on it is the
                        // client's turn, so one that never reads them is
                        // idle (`--timeout`), not busy.
                        self.memory.0.set_busy(false);
                        self.flush().await?;
                        self.release_idle_buffers();
                        let mut watching_users = true;
                        let item = loop {
                            tokio::select! {
                                item = self.framed.next() => break item,
                                _ = self.shutdown.changed() => return Ok(()),
                                changed = self.users.changed(), if watching_users => {
                                    // A deleted user's idle clients are
                                    // closed at once, as Redis does.
                                    if changed.is_err() {
                                        watching_users = false;
                                    } else if !self.refresh_user() {
                                        return Ok(());
                                    }
                                }
                            }
                        };
                        self.memory.0.set_busy(true);
                        item
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
            let resolved = seshat_commands::resolve(&request.args);
            stages::record_since(Stage::Dispatch, parse_started);
            let decl = match resolved {
                Ok(d) => d,
                Err(e) => {
                    // Inside MULTI an unknown command or a wrong number of
                    // arguments makes EXEC fail, as in Redis.
                    if let Some(multi) = &mut self.state.multi {
                        multi.dirty = true;
                    }
                    self.drain_writes().await?;
                    self.shared.requests.record(
                        crate::metrics::OTHER_COMMAND,
                        false,
                        parse_started.elapsed(),
                    );
                    self.feed(e.into_frame()).await?;
                    continue;
                }
            };
            if self.handle(decl, request.args).await? == Flow::Close {
                self.drain_writes().await?;
                return self.flush().await;
            }
        }
    }

    /// Runs one command; `ASKING` holds for the next command only.
    async fn handle(&mut self, decl: &'static Decl, args: Vec<Bytes>) -> Result<Flow, CodecError> {
        let flow = self.handle_command(decl, args).await;
        if decl.route() != Route::Server(ServerCmd::Asking) {
            self.state.asking = false;
        }
        flow
    }

    async fn handle_command(
        &mut self,
        decl: &'static Decl,
        args: Vec<Bytes>,
    ) -> Result<Flow, CodecError> {
        let started = Instant::now();
        if self.shared.auth.refuses(self.state.authenticated, decl) {
            return self
                .reply(decl.name, started, Frame::error(crate::auth::NOAUTH))
                .await;
        }
        if self.users.has_changed().unwrap_or(false) && !self.refresh_user() {
            // The user was deleted: the connection closes, as in Redis.
            return Ok(Flow::Close);
        }
        if let Err(denied) = self.permit(decl, &args) {
            self.shared.auth.count_denied(denied);
            self.mark_dirty();
            return self
                .reply(decl.name, started, Frame::error(denied.reply(decl)))
                .await;
        }
        if self.state.multi.is_some() {
            if let Some(flow) = self.in_transaction(decl, args.clone(), started).await? {
                return Ok(flow);
            }
        }
        let name = decl.name;
        match decl.route() {
            Route::Server(ServerCmd::Multi) => {
                self.state.multi = Some(Multi::default());
                self.reply(name, started, Frame::ok()).await
            }
            Route::Server(ServerCmd::Exec) => {
                self.reply(name, started, Frame::error("ERR EXEC without MULTI"))
                    .await
            }
            Route::Server(ServerCmd::Discard) => {
                self.reply(name, started, Frame::error("ERR DISCARD without MULTI"))
                    .await
            }
            Route::Server(ServerCmd::Watch) => self.watch(decl, &args, started).await,
            Route::Server(
                cmd @ (ServerCmd::AclSetUser | ServerCmd::AclDelUser | ServerCmd::AclLoad),
            ) => match crate::acl::prepare_write(cmd, &args, &self.shared) {
                Ok(write) => {
                    // Users live in the group serving slot 0 (the first).
                    let node = self.shared.groups.users_group().clone();
                    self.propose(&node, write, 0, name, started).await
                }
                Err(frame) => self.reply(name, started, frame).await,
            },
            Route::Server(ServerCmd::Unwatch) => {
                self.state.watches.clear();
                self.state.watched_groups.clear();
                self.reply(name, started, Frame::ok()).await
            }
            Route::Server(
                cmd @ (ServerCmd::ClusterMigrateSlots
                | ServerCmd::ClusterCancelSlotMigrations
                | ServerCmd::ClusterDecommission
                | ServerCmd::ClusterForget),
            ) => {
                self.drain_writes().await?;
                use seshat_commands::members::NodeState;
                let frame = match cmd {
                    ServerCmd::ClusterMigrateSlots => {
                        crate::resharding::migrate_slots(&self.shared, &args).await
                    }
                    ServerCmd::ClusterDecommission => {
                        crate::membership::set_state(
                            &self.shared,
                            &args,
                            NodeState::Decommissioning,
                        )
                        .await
                    }
                    ServerCmd::ClusterForget => {
                        crate::membership::set_state(&self.shared, &args, NodeState::Removed).await
                    }
                    _ => crate::resharding::cancel_slot_migrations(&self.shared).await,
                };
                self.reply(name, started, frame).await
            }
            Route::Server(cmd) => self.run_server(cmd, &args, name, started).await,
            Route::Pure => {
                let frame = commands::run_pure(decl, &args);
                self.reply(name, started, frame).await
            }
            Route::Write | Route::Read if self.shared.groups.fans_out(decl) => {
                self.drain_writes().await?;
                let frame = {
                    let _in_flight = self.shared.requests.start();
                    commands::run_keyless(decl, args, &self.shared, self.state.tls).await
                };
                self.reply(name, started, frame).await
            }
            Route::Write | Route::Read
                if self.shared.settings.follower_mode == FollowerMode::Proxy
                    && self.shared.groups.layout.is_sharded() =>
            {
                self.drain_writes().await?;
                // As in `forward`: a write acknowledged by another node is
                // not applied here yet, so no earlier shared barrier may
                // let a later read skip its own.
                self.covered = 0;
                self.state.read_confirmed = false;
                let frame = {
                    let _in_flight = self.shared.requests.start();
                    self.proxy_sharded(decl, args).await
                };
                self.reply(name, started, frame).await
            }
            Route::Write | Route::Read if self.proxy_target().is_some() => {
                match self.proxy_target() {
                    Some(addr) => self.forward(decl, &args, started, addr).await,
                    None => {
                        self.reply(name, started, Frame::error("CLUSTERDOWN no raft leader"))
                            .await
                    }
                }
            }
            Route::Write => self.write_here(decl, args, started).await,
            Route::Read => self.read(decl, &args, started).await,
        }
    }

    /// The replica a data command runs on here and its slot, or the error
    /// reply in this client's form (a TLS client is sent to TLS ports).
    /// Waits while the slot is frozen for a migration
    /// ([`commands::route_patiently`]).
    async fn route(&self, decl: &Decl, args: &[Bytes]) -> Result<(Arc<Node>, u16), Frame> {
        commands::route_patiently(decl, args, &self.shared, self.state.asking)
            .await
            .map(|(node, slot)| (node.clone(), slot))
            .map_err(|e| e.to_frame(&self.shared.settings, self.state.tls))
    }

    /// A write proposed by this node's replica of its group.
    async fn write_here(
        &mut self,
        decl: &'static Decl,
        args: Vec<Bytes>,
        started: Instant,
    ) -> Result<Flow, CodecError> {
        let name = decl.name;
        let (node, slot) = match self.route(decl, &args).await {
            Ok(routed) => routed,
            Err(frame) => return self.reply(name, started, frame).await,
        };
        match commands::prepare(decl, args, &self.shared, node.now_ms()) {
            Ok(args) => {
                self.propose(&node, Write::Command(args), slot, name, started)
                    .await
            }
            Err(frame) => self.reply(name, started, frame).await,
        }
    }

    /// Proxy mode on a sharded cluster: runs a data command here if this
    /// node leads the group serving its slot, else forwards it to that
    /// group's leader, and routes it again when the answer is a redirect
    /// (the slot moved between routing and apply, or the leader changed)
    /// — a client of a proxying node follows none. While the slot is
    /// frozen or handed off for a migration the command waits for the
    /// move to pass; all of it for at most [`commands::MAX_TRYAGAIN_WAIT`].
    async fn proxy_sharded(&self, decl: &'static Decl, args: Vec<Bytes>) -> Frame {
        let groups = &self.shared.groups;
        let to_frame = |e: ServeError| e.to_frame(&self.shared.settings, self.state.tls);
        let slot = match groups.slot_for(decl, &args) {
            Ok(slot) => slot,
            Err(e) => return to_frame(e),
        };
        let access = if decl.route() == Route::Write {
            seshat_migration::Access::Write
        } else {
            seshat_migration::Access::Read
        };
        let mut patience = commands::Patience::default();
        loop {
            let leader = match groups.serve(slot, access, false) {
                Ok(node) if node.raft.is_leader() => None,
                Ok(node) => node.metrics().current_leader,
                Err(ServeError::Moved { leader, .. }) => Some(leader),
                Err(ServeError::Ask { .. } | ServeError::TryAgain(_)) if patience.lasts() => {
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                    continue;
                }
                Err(e) => return to_frame(e),
            };
            let member = leader.and_then(|l| self.shared.groups.member(l));
            let frame = match member {
                // Here (or no leader known: the normal path answers).
                None => commands::run_data(decl, args.clone(), &self.state, &self.shared).await,
                Some(m) => self
                    .shared
                    .proxy
                    .forward(
                        &m.raft_addr.to_string(),
                        &args,
                        self.state.version,
                        decl.route() == Route::Write,
                        self.shared.settings.request_timeout,
                    )
                    .await
                    .unwrap_or_else(|e| Frame::error(e.to_string())),
            };
            let redirected = matches!(&frame, Frame::Error(e)
                if e.starts_with(b"MOVED") || e.starts_with(b"ASK") || e.starts_with(b"TRYAGAIN"));
            if !(redirected && patience.lasts()) {
                return frame;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }

    /// Whether this client's user may run `args`.
    fn permit(&self, decl: &Decl, args: &[Bytes]) -> Result<(), seshat_commands::acl::Denied> {
        let user = &self.state.identity.user;
        if user.unrestricted() {
            return Ok(());
        }
        user.check(decl, args)
    }

    /// Takes the users' latest table: the client's user's current rules;
    /// false if its user was deleted (the connection must close).
    fn refresh_user(&mut self) -> bool {
        let users = self.users.borrow_and_update().clone();
        match self.shared.auth.refresh(&self.state.identity, &users) {
            Some(user) => {
                self.state.identity.user = user;
                true
            }
            None => {
                tracing::info!(
                    client = self.state.id,
                    user = %String::from_utf8_lossy(&self.state.identity.name),
                    "closing a connection whose ACL user was deleted"
                );
                false
            }
        }
    }

    /// Drains earlier writes, then queues `frame` as the reply.
    async fn reply(
        &mut self,
        name: &'static str,
        started: Instant,
        frame: Frame,
    ) -> Result<Flow, CodecError> {
        self.drain_writes().await?;
        let ok = !matches!(frame, Frame::Error(_));
        self.shared.requests.record(name, ok, started.elapsed());
        self.feed(frame).await?;
        Ok(Flow::Continue)
    }

    /// Proposes a write and keeps it in flight; its reply is queued when
    /// it applies, in order with the rest of the pipeline.
    async fn propose(
        &mut self,
        node: &Node,
        write: Write,
        slot: u16,
        name: &'static str,
        started: Instant,
    ) -> Result<Flow, CodecError> {
        self.propose_with(node, write, slot, name, started, Vec::new())
            .await
    }

    /// [`Self::propose`], with the errors to put back into a transaction's
    /// reply.
    async fn propose_with(
        &mut self,
        node: &Node,
        write: Write,
        slot: u16,
        name: &'static str,
        started: Instant,
        refused: Vec<(usize, Frame)>,
    ) -> Result<Flow, CodecError> {
        let bytes = write.encoded_size_hint();
        match node.propose(write, slot).await {
            Ok(pending) => {
                self.inflight_bytes += bytes;
                self.inflight.push_back(InflightWrite {
                    pending,
                    name,
                    started,
                    bytes,
                    refused,
                });
            }
            Err(e) => {
                return self
                    .reply(
                        name,
                        started,
                        e.to_frame(&self.shared.settings, self.state.tls),
                    )
                    .await
            }
        }
        if self.inflight.len() >= MAX_PIPELINED_WRITES {
            self.drain_writes().await?;
        }
        Ok(Flow::Continue)
    }

    /// A read: after the writes before it, under a (possibly shared) read
    /// barrier.
    async fn read(
        &mut self,
        decl: &'static Decl,
        args: &[Bytes],
        started: Instant,
    ) -> Result<Flow, CodecError> {
        let (node, slot) = match self.route(decl, args).await {
            Ok(routed) => routed,
            Err(frame) => return self.reply(decl.name, started, frame).await,
        };
        if !self.state.confirmed(node.group) {
            if let Some(Err(e)) = self.confirm_received_reads(&node, slot).await {
                // The barrier this read would take itself just failed.
                return self
                    .reply(
                        decl.name,
                        started,
                        e.to_frame(&self.shared.settings, self.state.tls),
                    )
                    .await;
            }
        }
        self.drain_writes().await?;
        let frame = {
            let _in_flight = self.shared.requests.start();
            node.read(
                decl,
                args,
                slot,
                self.state.confirmed(node.group),
                Some(self.state.asking),
            )
            .await
            .unwrap_or_else(|e| e.to_frame(&self.shared.settings, self.state.tls))
        };
        self.reply(decl.name, started, frame).await
    }

    async fn run_server(
        &mut self,
        cmd: ServerCmd,
        args: &[Bytes],
        name: &'static str,
        started: Instant,
    ) -> Result<Flow, CodecError> {
        self.drain_writes().await?;
        let outcome = if cmd == ServerCmd::Info && crate::info::reads_every_key(&args[1..]) {
            // `INFO digest` reads every key: on a blocking thread, so
            // heartbeats never wait behind it.
            let (shared, args) = (self.shared.clone(), args.to_vec());
            match tokio::task::spawn_blocking(move || {
                Frame::verbatim_text(crate::info::render(&args[1..], &shared))
            })
            .await
            {
                Ok(frame) => Outcome::Reply(frame),
                Err(e) => Outcome::Reply(Frame::error(format!("ERR INFO failed: {e}"))),
            }
        } else {
            commands::execute_server(cmd, args, &mut self.state, &self.shared)
        };
        let ok = !matches!(&outcome, Outcome::Reply(Frame::Error(_)));
        self.shared.requests.record(name, ok, started.elapsed());
        match outcome {
            Outcome::Reply(frame) => {
                self.feed(frame).await?;
                Ok(Flow::Continue)
            }
            Outcome::ReplyThenSwitch(frame, version) => {
                // HELLO answers in the protocol it switches to.
                self.framed.codec_mut().inner_mut().set_version(version);
                self.state.version = version;
                self.feed(frame).await?;
                Ok(Flow::Continue)
            }
            Outcome::Close(frame) => {
                self.feed(frame).await?;
                Ok(Flow::Close)
            }
        }
    }

    /// In proxy mode, sends a data command to the leader once and relays
    /// its reply.
    async fn forward(
        &mut self,
        decl: &'static Decl,
        args: &[Bytes],
        started: Instant,
        leader_raft_addr: String,
    ) -> Result<Flow, CodecError> {
        // A write acknowledged by the leader through the proxy is not
        // applied here yet: a shared barrier taken earlier must not let a
        // later read skip its own (read-your-writes).
        self.covered = 0;
        self.state.read_confirmed = false;
        self.drain_writes().await?;
        let is_write = decl.route() == Route::Write;
        let timeout = self.shared.settings.request_timeout;
        let reply = self
            .shared
            .proxy
            .forward(
                &leader_raft_addr,
                args,
                self.state.version,
                is_write,
                timeout,
            )
            .await
            .unwrap_or_else(|e| Frame::error(e.to_string()));
        self.reply(decl.name, started, reply).await
    }

    /// A command while `MULTI` is open: queued (`+QUEUED`), or one of the
    /// commands that act on the transaction itself. `None`: run it as
    /// usual (only `QUIT`).
    async fn in_transaction(
        &mut self,
        decl: &'static Decl,
        args: Vec<Bytes>,
        started: Instant,
    ) -> Result<Option<Flow>, CodecError> {
        let name = decl.name;
        let frame = match decl.route() {
            Route::Server(ServerCmd::Exec) => return self.exec(started).await.map(Some),
            Route::Server(ServerCmd::Discard) => {
                self.state.multi = None;
                self.state.watches.clear();
                self.state.watched_groups.clear();
                Frame::ok()
            }
            Route::Server(ServerCmd::Multi) => Frame::error("ERR MULTI calls can not be nested"),
            Route::Server(ServerCmd::Watch) => {
                Frame::error("ERR WATCH inside MULTI is not allowed")
            }
            Route::Server(ServerCmd::Quit) => return Ok(None),
            Route::Server(_) => {
                // Server commands act on the connection or the node, not
                // on data: they cannot run in the replicated log.
                self.mark_dirty();
                Frame::error("ERR Command not allowed inside a transaction")
            }
            Route::Write | Route::Read | Route::Pure => self.queue(decl, args),
        };
        self.reply(name, started, frame).await.map(Some)
    }

    fn mark_dirty(&mut self) {
        if let Some(multi) = &mut self.state.multi {
            multi.dirty = true;
        }
    }

    /// Queues a command of an open transaction, checking the limits a
    /// write must meet now (a refused command makes `EXEC` fail).
    fn queue(&mut self, decl: &'static Decl, args: Vec<Bytes>) -> Frame {
        let limits = self.shared.settings.limits;
        let size = seshat_kv::args_size(&args);
        let Some(multi) = &mut self.state.multi else {
            return Frame::error("ERR internal error: no open transaction");
        };
        let refused = match self.shared.groups.slot_for(decl, &args) {
            Err(e) => Some(e.to_string()),
            Ok(_) if decl.route() == Route::Write => {
                commands::check_write_limits(decl, &args, &limits)
                    .err()
                    .map(|e| e.to_string())
            }
            Ok(_) => None,
        };
        let refused = refused.or_else(|| {
            (multi.queued.len() >= MAX_QUEUED_COMMANDS || multi.bytes.saturating_add(size) > limits.max_request_bytes())
                .then(|| "ERR transaction too large: one transaction is one log entry, bounded by the largest write".to_string())
        });
        if let Some(text) = refused {
            multi.dirty = true;
            return Frame::error(text);
        }
        multi.bytes = multi.bytes.saturating_add(size);
        multi.queued.push((decl, args));
        Frame::simple("QUEUED")
    }

    /// `EXEC`: proposes the queue and the watched keys as one write.
    async fn exec(&mut self, started: Instant) -> Result<Flow, CodecError> {
        let name = "exec";
        let multi = self.state.multi.take().unwrap_or_default();
        let watches = std::mem::take(&mut self.state.watches);
        let watched_groups = std::mem::take(&mut self.state.watched_groups);
        if multi.dirty {
            return self
                .reply(
                    name,
                    started,
                    Frame::error("EXECABORT Transaction discarded because of previous errors."),
                )
                .await;
        }
        if self.proxy_target().is_some() {
            return self
                .reply(name, started, Frame::error("ERR transactions cannot pass through a proxying follower; connect to the leader"))
                .await;
        }
        let mut slot = None;
        let mut cross_slot = false;
        let mut commands_out = Vec::with_capacity(multi.queued.len());
        let mut refused = Vec::new();
        // One time for the whole transaction's relative expiries.
        let now_ms = self.shared.groups.now_ms();
        if self.users.has_changed().unwrap_or(false) && !self.refresh_user() {
            return Ok(Flow::Close);
        }
        for (position, (decl, args)) in multi.queued.into_iter().enumerate() {
            // The rules may have changed since the command was queued
            // (Redis checks again at EXEC): a refused command is not run
            // and its place in the reply holds the refusal.
            if let Err(denied) = self.permit(decl, &args) {
                self.shared.auth.count_denied(denied);
                refused.push((position, Frame::error(denied.exec_reply())));
                continue;
            }
            // Each command's own keys were checked when it was queued.
            if let Some(first) = decl.key_args(&args).next().map(|k| crc16_slot(k)) {
                cross_slot |= slot.is_some_and(|s| s != first);
                slot = slot.or(Some(first));
            }
            let args = if decl.route() == Route::Write {
                // A command whose preparation fails is kept as sent: apply
                // gives it the same error, in its place in the reply.
                seshat_commands::prepare_write(decl, args.clone(), now_ms).unwrap_or(args)
            } else {
                args
            };
            commands_out.push(args);
        }
        let slot = slot
            .or_else(|| watches.first().map(|w| crc16_slot(&w.key)))
            .unwrap_or(0);
        if self.shared.groups.layout.is_sharded()
            && (cross_slot || watches.iter().any(|w| crc16_slot(&w.key) != slot))
        {
            return self
                .reply(name, started, Frame::error(crate::groups::CROSSSLOT))
                .await;
        }
        let serving = commands::serve_patiently(
            &self.shared,
            slot,
            seshat_migration::Access::Write,
            self.state.asking,
        )
        .await;
        let node = match serving {
            Ok(node) => node.clone(),
            Err(e) => {
                let frame = e.to_frame(&self.shared.settings, self.state.tls);
                return self.reply(name, started, frame).await;
            }
        };
        if watched_groups.iter().any(|g| *g != node.group) {
            // The watched keys' slot moved to another shard since WATCH:
            // their modification indexes belong to the other group's log.
            return self.reply(name, started, Frame::NullArray).await;
        }
        let write = Write::Transaction {
            watches,
            commands: commands_out,
        };
        self.propose_with(&node, write, slot, name, started, refused)
            .await
    }

    /// `WATCH key …`: remembers each key's modification index, read after
    /// a read barrier and after this client's earlier writes.
    async fn watch(
        &mut self,
        decl: &'static Decl,
        args: &[Bytes],
        started: Instant,
    ) -> Result<Flow, CodecError> {
        if self.proxy_target().is_some() {
            return self
                .reply(
                    decl.name,
                    started,
                    Frame::error(
                        "ERR WATCH cannot pass through a proxying follower; connect to the leader",
                    ),
                )
                .await;
        }
        let keys: Vec<Bytes> = args
            .iter()
            .skip(1)
            .filter(|k| !self.state.watches.iter().any(|w| w.key == **k))
            .cloned()
            .collect();
        self.drain_writes().await?;
        let (node, slot) = match self.route(decl, args).await {
            Ok(routed) => routed,
            Err(frame) => return self.reply(decl.name, started, frame).await,
        };
        if self.shared.groups.layout.is_sharded()
            && self
                .state
                .watches
                .iter()
                .any(|w| crc16_slot(&w.key) != slot)
        {
            return self
                .reply(decl.name, started, Frame::error(crate::groups::CROSSSLOT))
                .await;
        }
        let frame = match node
            .watch(&keys, slot, self.state.confirmed(node.group))
            .await
        {
            Ok(watches) => {
                self.state.watches.extend(watches);
                if !self.state.watched_groups.contains(&node.group) {
                    self.state.watched_groups.push(node.group);
                }
                Frame::ok()
            }
            Err(e) => e.to_frame(&self.shared.settings, self.state.tls),
        };
        self.reply(decl.name, started, frame).await
    }

    /// In proxy mode on a follower, the leader's Raft address; `None` when
    /// commands run here.
    fn proxy_target(&self) -> Option<String> {
        if self.shared.settings.follower_mode != FollowerMode::Proxy {
            return None;
        }
        // The leader of the one data group (a sharded cluster forwards
        // each command to its group's leader: `proxy_decision`; its
        // transactions and `WATCH` are not forwarded).
        if self.shared.groups.layout.is_sharded() {
            return None;
        }
        let m = self.shared.groups.first().metrics();
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
        node: &Node,
        slot: u16,
    ) -> Option<Result<(), crate::node::ServeError>> {
        while self.ahead.len() < MAX_DECODED_AHEAD {
            match self.framed.next().now_or_never() {
                Some(item) => {
                    let end = !matches!(item, Some(Ok(_)));
                    self.ahead_bytes += decoded_bytes(&item);
                    self.ahead.push_back(item);
                    if end {
                        break;
                    }
                }
                None => break,
            }
        }
        self.account_memory();
        if self.ahead.len() <= self.covered {
            return None;
        }
        // Taken after everything in `ahead` was received.
        let result = node.read_barrier(slot).await;
        if result.is_ok() {
            self.covered = self.ahead.len();
            self.state.read_confirmed = true;
            self.state.confirmed_group = Some(node.group);
        }
        Some(result)
    }

    /// Reports what this client holds besides its input buffer (which the
    /// codec reports): decoded requests not answered yet, an open `MULTI`
    /// queue, unsent replies.
    fn account_memory(&mut self) {
        let queued = self.state.multi.as_ref().map_or(0, |m| m.bytes);
        // As for input: the allocation outlives what `capacity()` shows
        // once written bytes are advanced past.
        self.write_peak = self.write_peak.max(self.framed.write_buffer().capacity());
        let held = self.ahead_bytes + self.inflight_bytes + queued + self.write_peak;
        self.memory.0.set_held(held);
    }

    /// Between requests, gives back an input or output buffer a large
    /// request or reply grew (Redis resizes idle query buffers too), so an
    /// idle client holds — and is counted for — a few KiB, not the
    /// megabytes of its largest request.
    fn release_idle_buffers(&mut self) {
        if self.framed.read_buffer().is_empty() && self.framed.codec().peak() > KEEP_BUFFER_BYTES {
            *self.framed.read_buffer_mut() = BytesMut::with_capacity(SMALL_BUFFER_BYTES);
            self.framed.codec_mut().released(SMALL_BUFFER_BYTES);
        }
        if self.framed.write_buffer().is_empty() && self.write_peak > KEEP_BUFFER_BYTES {
            *self.framed.write_buffer_mut() = BytesMut::with_capacity(SMALL_BUFFER_BYTES);
            self.write_peak = 0;
        }
        self.account_memory();
    }

    /// Queues a reply. Writing it may wait for the client to read earlier
    /// ones; while it waits the client, not the node, has to act, so it
    /// counts as idle for `--timeout` (a client that never reads its
    /// replies is closed, as in Redis, instead of holding its slot and
    /// buffers for ever).
    async fn feed(&mut self, frame: Frame) -> Result<(), CodecError> {
        let usage = &self.memory.0;
        usage.set_busy(false);
        let result = self.framed.feed(frame).await;
        usage.set_busy(true);
        result
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
            self.inflight_bytes = self.inflight_bytes.saturating_sub(write.bytes);
            let frame = match write.pending.finish().await {
                Ok(frame) => {
                    let frame = splice_refused(frame, write.refused);
                    let ok = !matches!(frame, Frame::Error(_));
                    self.shared
                        .requests
                        .record(write.name, ok, write.started.elapsed());
                    frame
                }
                Err(e) => {
                    self.shared
                        .requests
                        .record(write.name, false, write.started.elapsed());
                    e.to_frame(&self.shared.settings, self.state.tls)
                }
            };
            self.feed(frame).await?;
        }
        Ok(())
    }
}

struct InflightWrite {
    pending: PendingWrite,
    name: &'static str,
    started: Instant,
    /// What its arguments take, for the client memory account.
    bytes: usize,
    /// For `EXEC`: replies of queued commands the ACL rules refused at
    /// `EXEC` (not proposed), by their place in the reply.
    refused: Vec<(usize, Frame)>,
}

/// A transaction's reply with the refused commands' errors put back in
/// their places.
fn splice_refused(frame: Frame, refused: Vec<(usize, Frame)>) -> Frame {
    match frame {
        Frame::Array(mut replies) if !refused.is_empty() => {
            for (at, error) in refused {
                replies.insert(at.min(replies.len()), error);
            }
            Frame::Array(replies)
        }
        other => other,
    }
}

/// Bytes a decoded look-ahead item holds.
fn decoded_bytes(item: &Decoded) -> usize {
    match item {
        Some(Ok(request)) => seshat_kv::args_size(&request.args),
        _ => 0,
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Flow {
    Continue,
    Close,
}
