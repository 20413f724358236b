//! The `seshat` binary: parses settings, starts the node and the RESP
//! server, and shuts both down cleanly on SIGINT or SIGTERM — or, if the
//! Raft core stops, after a short grace period with a non-zero exit. `main`
//! only maps errors to an exit code.

mod acl;
mod admin;
mod auth;
mod boot;
mod client_memory;
mod cluster;
mod commands;
mod config;
mod connection;
mod dev_cluster;
mod fd_limit;
mod forwarded;
mod groups;
mod http;
mod https;
mod info;
mod layout;
mod membership;
mod metrics;
mod node;
mod proxy;
mod resharding;
mod server;
mod session;
mod shared;
mod tls;

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::{Cli, Command, Settings};
use crate::groups::Groups;
use crate::shared::{ServerStats, Shared};

// mimalloc: glibc malloc/free were 5-8 % of a node's CPU on the write path
// (many small, short-lived buffers crossing threads).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How long a node whose Raft core stopped (a panic, a fatal storage error)
/// goes on answering — `/health` and `/ready` with 503 and the reason,
/// clients with errors — before it exits non-zero for its supervisor to
/// restart it. Long enough for a health probe to see why; short enough
/// that the restart is prompt.
const RAFT_STOPPED_EXIT_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("seshat: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(mut cli: Cli) -> anyhow::Result<()> {
    match &cli.command {
        Some(Command::DevCluster(args)) => return dev_cluster::run(args),
        Some(Command::Admin(args)) => return admin::run(args),
        None => {}
    }
    let mut settings = Settings::from_args(&cli.node)?;
    // Only the password's digest is kept: drop the text, and take it out
    // of the environment (`/proc/PID/environ`) before any thread starts.
    cli.node.requirepass = None;
    std::env::remove_var("SESHAT_REQUIREPASS");
    init_tracing(&settings.log_level, settings.log_format)?;
    if let Some(warning) = auth::http_exposure_warning(
        settings.http_addr,
        settings.http_tls(),
        settings.protected_mode,
    ) {
        tracing::warn!("{warning}");
    }
    // Before anything opens files: clients must never take the
    // descriptors storage and peers need.
    settings.max_clients = fit_clients_to_open_file_limit(&settings)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("seshat")
        .build()
        .context("cannot start the async runtime")?;
    // Raft (its core, replication, heartbeats, the node-to-node server)
    // runs on threads of its own: however busy the client connections
    // keep their workers (hundreds of clients uploading at once), the
    // kernel still schedules these, so heartbeats are not queued behind
    // client tasks and no election follows.
    let raft_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(settings.raft_worker_threads)
        .enable_all()
        .thread_name("seshat-raft")
        .build()
        .context("cannot start the Raft runtime")?;
    let result = runtime.block_on(serve(Arc::new(settings), raft_runtime.handle().clone()));
    drop(runtime);
    raft_runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    result
}

/// `--max-clients`, lowered if the open-file limit cannot hold it beside
/// what storage and peers need ([`fd_limit`]).
fn fit_clients_to_open_file_limit(settings: &Settings) -> anyhow::Result<usize> {
    let rocksdb = seshat_raft::StorageConfig::new(settings.data_dir.clone())
        .store_options
        .descriptors_needed();
    let peers = settings
        .initial_members
        .keys()
        .filter(|id| **id != settings.node_id)
        .count();
    let reserved = fd_limit::reserved_fds(rocksdb, peers);
    Ok(fd_limit::adjust(settings.max_clients, reserved)?.max_clients)
}

fn init_tracing(level: &str, format: config::LogFormat) -> anyhow::Result<()> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.is_empty() => tracing_subscriber::EnvFilter::try_new(v),
        // openraft logs at warn unless the level names it.
        _ if level.contains("openraft") => tracing_subscriber::EnvFilter::try_new(level),
        _ => tracing_subscriber::EnvFilter::try_new(format!("{level},openraft=warn")),
    }
    .with_context(|| format!("invalid setting log-level = {level}"))?;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        config::LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .finish()
            .with(QuietStaleNotices)
            .init(),
        config::LogFormat::Json => builder.json().finish().with(QuietStaleNotices).init(),
    }
    Ok(())
}

/// Drops openraft's WARN "A message will be ignored because …": it reports
/// a notification that arrived after the vote it was sent under changed —
/// on every first start (the node's own election overtakes its
/// initialisation) and after elections — and asks nothing of an operator.
struct QuietStaleNotices;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for QuietStaleNotices {
    fn event_enabled(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) -> bool {
        let meta = event.metadata();
        if *meta.level() != tracing::Level::WARN || !meta.target().starts_with("openraft") {
            return true;
        }
        let mut stale = StaleNotice(false);
        event.record(&mut stale);
        !stale.0
    }
}

/// Whether an event's message is openraft's stale-notification notice.
struct StaleNotice(bool);

impl tracing::field::Visit for StaleNotice {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}").starts_with("A message will be ignored because");
        }
    }
}

async fn bind(name: &str, addr: std::net::SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {name} {addr}"))
}

/// Longest a one-node cluster waits to lead before serving clients anyway.
const LONE_VOTER_LEAD_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// A one-node cluster elects itself within an election timeout of starting;
/// until then every write would get `CLUSTERDOWN`. Clients are served once
/// it leads (connections made meanwhile wait in the listen backlog), so a
/// script that waits for `PONG` can write at once. Multi-node clusters
/// serve at once: a follower's `MOVED` is useful.
async fn wait_until_a_lone_voter_leads(groups: &Groups) {
    let members = &groups.settings.initial_members;
    let alone = groups.settings.join.is_none()
        && members.len() <= 1
        && members.keys().all(|id| *id == groups.settings.node_id);
    if !alone {
        return;
    }
    let deadline = tokio::time::Instant::now() + LONE_VOTER_LEAD_WAIT;
    while groups.all().iter().any(|n| !n.raft.is_leader()) && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

async fn serve(settings: Arc<Settings>, raft_rt: tokio::runtime::Handle) -> anyhow::Result<()> {
    // Bind first: a busy port fails fast, before storage is opened.
    let client_listener = bind("client-addr", settings.client_addr).await?;
    let raft_listener = std::net::TcpListener::bind(settings.raft_addr)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .with_context(|| format!("cannot listen on raft-addr {}", settings.raft_addr))?;
    let http_listener = bind("http-addr", settings.http_addr).await?;
    let tls_listener = match settings.tls.as_ref().and_then(|t| t.addr) {
        Some(addr) => Some(bind("tls-port", addr).await?),
        None => None,
    };
    // Certificates are read before storage is opened, so a bad file fails
    // the start at once. One context serves the TLS port and HTTPS, so a
    // reload reaches both.
    let tls_context = match &settings.tls {
        Some(t) => Some(Arc::new(tls::TlsContext::load(t.files.clone())?)),
        None => None,
    };
    let tls = tls_listener
        .zip(tls_context.clone())
        .map(|(listener, context)| server::TlsListener { listener, context });
    let http_tls = tls_context.clone().filter(|_| settings.http_tls());
    let peer_tls = settings
        .raft_tls
        .as_ref()
        .map(tls::load_peer_tls)
        .transpose()?;
    // Built before the node starts: a failure here must not leave a
    // started node behind without its shutdown.
    let mut raft_builder = tonic::transport::Server::builder();
    if let Some(peer_tls) = &peer_tls {
        // Only peers with a certificate from the cluster CA get past the
        // handshake; the rest never reach a handler.
        raft_builder = raft_builder
            .tls_config(peer_tls.server_config())
            .context("raft-tls-cert-file: cannot serve mutual TLS with it")?;
    }
    // Started on the Raft runtime, so openraft's tasks live there.
    let node = raft_rt
        .spawn(Groups::start(settings.clone(), peer_tls.clone()))
        .await
        .context("the node's start task failed")??;
    // A node that joined has its id now.
    let settings = node.settings.clone();
    let shared = Arc::new(Shared {
        settings: settings.clone(),
        groups: node.clone(),
        stats: ServerStats::default(),
        requests: metrics::RequestMetrics::default(),
        proxy: proxy::Proxy::new(peer_tls.clone()),
        progress: resharding::Progress::default(),
        membership: membership::Progress::default(),
        client_memory: client_memory::ClientMemory::new(settings.maxmemory_clients),
        auth: auth::Auth::new(settings.requirepass, node.users_group().users.clone()),
        tls: tls_context.clone(),
    });
    if let Some(context) = tls_context {
        tokio::spawn(reload_tls_on_sighup(context));
    }
    tokio::spawn(resharding::run_coordinator(Arc::downgrade(&shared)));
    tokio::spawn(membership::run_address_record(Arc::downgrade(&shared)));
    tokio::spawn(boot::run_boot_record(
        Arc::downgrade(&shared),
        shared.groups.instance,
    ));

    let (stop_tx, stop_rx) = watch::channel(false);
    let grpc = seshat_raft::grpc_server::RaftGrpc::new(
        seshat_raft::StorageConfig::new(settings.data_dir.clone()).snapshot_dir(),
    )
    .with_forward_handler(Arc::new(forwarded::LeaderExecutor {
        shared: shared.clone(),
        client_runtime: tokio::runtime::Handle::current(),
    }));
    for group in node.all() {
        grpc.add_group_with(group.group, group.raft.clone(), group.added)?;
    }
    node.attach_grpc(grpc.clone());
    // After the registry is attached: replicas it opens must be served.
    tokio::spawn(membership::run_rebalancer(
        Arc::downgrade(&shared),
        settings.dead_node_timeout,
    ));
    let mut raft_stop = stop_rx.clone();
    let raft_server = raft_rt.spawn(async move {
        let listener = TcpListener::from_std(raft_listener)?;
        raft_builder
            .add_service(grpc.into_server())
            .serve_with_incoming_shutdown(
                tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
                async move {
                    let _ = raft_stop.changed().await;
                },
            )
            .await
            .map_err(anyhow::Error::from)
    });
    let http_server = tokio::spawn(http::serve(
        http_listener,
        http_tls,
        shared.clone(),
        stop_rx.clone(),
    ));
    wait_until_a_lone_voter_leads(&node).await;
    if shared.auth.default_replicated() && settings.requirepass.is_some() {
        tracing::warn!(
            "--requirepass is not in force: an ACL write replicated the default user, whose rules every node follows"
        );
    }
    if let Some(file) = &settings.aclfile {
        let task = tokio::spawn(acl::propose_aclfile(
            node.users_group().clone(),
            file.users.clone(),
            file.path.display().to_string(),
        ));
        // A node that leads already serves clients only with the file's
        // users in force.
        if node.users_group().raft.is_leader() {
            let _ = task.await;
        }
    }
    let client_server = tokio::spawn(server::serve(client_listener, tls, shared, stop_rx));
    tracing::info!(
        node_id = settings.node_id,
        client_addr = %settings.client_addr,
        tls_addr = settings.tls.as_ref().and_then(|t| t.addr).map(|a| a.to_string()),
        http_addr = %settings.http_addr,
        http_tls = settings.http_tls(),
        tls_verifies_clients = settings.tls_verifies_clients(),
        raft_mtls = peer_tls.is_some(),
        data_dir = %settings.data_dir.display(),
        "ready to accept connections"
    );

    let core_stopped = tokio::select! {
        signal = wait_for_stop_signal() => {
            signal?;
            None
        }
        reason = node.core_stopped() => Some(reason),
    };
    match &core_stopped {
        // Hand over leadership while still serving, so clients are
        // redirected to the new leader instead of seeing an election.
        None => node.hand_over_leadership().await,
        Some(reason) => {
            tracing::error!(
                %reason,
                exit_after_ms = RAFT_STOPPED_EXIT_GRACE.as_millis(),
                "the node can no longer serve; exiting so that it is restarted"
            );
            // Meanwhile /health and /ready say why, and clients get errors.
            tokio::select! {
                () = tokio::time::sleep(RAFT_STOPPED_EXIT_GRACE) => {}
                Ok(()) = wait_for_stop_signal() => {}
            }
        }
    }
    tracing::info!("shutting down: no new connections, finishing in-flight requests");
    let _ = stop_tx.send(true);
    if let Err(e) = client_server.await {
        tracing::warn!(error = %e, "client server task ended abnormally");
    }
    match http_server.await {
        Ok(Err(e)) => tracing::warn!(error = %e, "HTTP server ended with an error"),
        Err(e) => tracing::warn!(error = %e, "HTTP server task failed"),
        Ok(Ok(())) => {}
    }
    node.shutdown().await;
    match raft_server.await {
        Ok(Err(e)) => tracing::warn!(error = %e, "raft transport ended with an error"),
        Err(e) => tracing::warn!(error = %e, "raft transport task failed"),
        Ok(Ok(())) => {}
    }
    // Everything acknowledged is already fsynced; this also persists the
    // unsynced tail (applied state, commit hint) to shorten the next start.
    if let Err(e) = node.store.sync_wal() {
        tracing::warn!(error = %e, "final sync failed");
    }
    tracing::info!("stopped");
    match core_stopped {
        // A non-zero exit, so a supervisor restarts the node.
        Some(reason) => Err(anyhow::anyhow!("{reason}")),
        None => Ok(()),
    }
}

/// Re-reads the TLS certificate, key and CA files on every SIGHUP. New
/// connections get the new files; open ones keep their session. Files
/// that do not load are reported and the previous ones stay in force.
async fn reload_tls_on_sighup(context: Arc<tls::TlsContext>) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot install SIGHUP handler; TLS reload only by CONFIG SET");
            return;
        }
    };
    while hup.recv().await.is_some() {
        match context.reload() {
            Ok(()) => tracing::info!("SIGHUP: TLS certificate, key and CA files reloaded"),
            Err(e) => tracing::error!(
                error = format!("{e:#}"),
                "SIGHUP: TLS files not reloaded; the previous ones stay in force"
            ),
        }
    }
}

async fn wait_for_stop_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("cannot install SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot install SIGINT handler")?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}
