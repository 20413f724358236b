//! The operator endpoints on `--http-addr`: `/metrics` (Prometheus text),
//! `/health` and `/ready`, over plain HTTP or, with `--http-tls yes`, only
//! HTTPS ([`crate::https`]).

use std::fmt::Write;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use openraft::ServerState;
use seshat_storage::Cf;

use crate::shared::Shared;
use crate::tls::TlsContext;

/// A node is ready when its applied index is within this many entries of
/// the commit index it knows.
pub const READY_MAX_LAG_ENTRIES: u64 = 100;

/// Serves the routes on `listener` until `shutdown` changes, then stops
/// accepting and lets the requests under way finish. With `tls`, every
/// connection must complete a TLS handshake with its configuration (the
/// client TLS certificate and client-certificate policy) first.
pub async fn serve(
    listener: tokio::net::TcpListener,
    tls: Option<Arc<TlsContext>>,
    shared: Arc<Shared>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<()> {
    let stop = async move {
        let _ = shutdown.changed().await;
    };
    let routes = router(shared);
    match tls {
        None => {
            axum::serve(listener, routes)
                .with_graceful_shutdown(stop)
                .await
        }
        Some(context) => {
            axum::serve(crate::https::TlsIncoming::new(listener, context)?, routes)
                .with_graceful_shutdown(stop)
                .await
        }
    }
}

/// The HTTP routes.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .with_state(shared)
}

async fn metrics(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        render_metrics(&shared),
    )
}

/// Why the node is unhealthy, if it is: it must run and each of its
/// groups must have a leader it can reach (or, as leader, a majority it
/// hears from). On a sharded cluster every group lacking one is named.
pub fn health_problem(shared: &Shared) -> Option<String> {
    let groups = &shared.groups;
    if let Some(reason) = groups.store.poison_reason() {
        return Some(format!("storage failure: {reason}"));
    }
    if let Some(reason) = groups.layout_conflict() {
        return Some(reason.to_string());
    }
    // Before any metric: a core that stopped left them as they were.
    if let Some(reason) = groups.core_problem() {
        return Some(reason);
    }
    if let Some(reason) = groups.task_problem() {
        return Some(reason);
    }
    let problems: Vec<String> = groups
        .all()
        .iter()
        .filter_map(|node| {
            group_problem(node, shared.settings.election_timeout_ms.1).map(|p| {
                if groups.layout.is_sharded() {
                    format!("group {}: {p}", node.group)
                } else {
                    p
                }
            })
        })
        .collect();
    (!problems.is_empty()).then(|| problems.join("; "))
}

/// Why one group's replica here cannot serve, if it cannot.
fn group_problem(node: &crate::node::Node, election_timeout_ms: u64) -> Option<String> {
    let m = node.metrics();
    match m.current_leader {
        None => Some("no raft leader".into()),
        Some(l) if l == m.id => match crate::node::millis_since_quorum_ack(&m) {
            Some(ms)
                if ms > election_timeout_ms
                    && m.membership_config.membership().voter_ids().count() > 1 =>
            {
                Some(format!("leader has not heard from a majority for {ms} ms"))
            }
            _ => None,
        },
        Some(_) => None,
    }
}

async fn health(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    match health_problem(&shared) {
        None => (StatusCode::OK, "ok\n".to_string()),
        Some(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")),
    }
}

async fn ready(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    if let Some(why) = health_problem(&shared) {
        return (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n"));
    }
    for node in shared.groups.all() {
        let m = node.metrics();
        let committed = m.local_committed.map_or(0, |l| l.index);
        let applied = m.last_applied.map_or(0, |l| l.index);
        let lag = committed.saturating_sub(applied);
        if lag >= READY_MAX_LAG_ENTRIES {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "catching up: group {} applied {applied}, committed {committed}\n",
                    node.group
                ),
            );
        }
    }
    (StatusCode::OK, "ready\n".to_string())
}

fn gauge(out: &mut String, name: &str, help: &str, node_id: u64, value: impl std::fmt::Display) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} gauge");
    let _ = writeln!(out, "{name}{{node_id=\"{node_id}\"}} {value}");
}

fn counter(out: &mut String, name: &str, help: &str, node_id: u64, value: u64) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} counter");
    let _ = writeln!(out, "{name}{{node_id=\"{node_id}\"}} {value}");
}

/// One gauge per group of this node, labelled `group` (the unlabelled
/// `raft_*` gauges above describe the first group).
fn group_gauge(
    out: &mut String,
    name: &str,
    help: &str,
    node_id: u64,
    rows: impl Iterator<Item = (u32, u64)>,
) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} gauge");
    for (group, value) in rows {
        let _ = writeln!(
            out,
            "{name}{{node_id=\"{node_id}\",group=\"{group}\"}} {value}"
        );
    }
}

/// Per-group Raft figures: which groups this node leads, which have a
/// leader at all, their terms, applied indexes and keys.
fn group_metrics(out: &mut String, shared: &Shared) {
    let id = shared.settings.node_id;
    let nodes = shared.groups.all();
    let rows: Vec<(
        u32,
        openraft::RaftMetrics<seshat_raft::TypeConfig>,
        bool,
        u64,
    )> = nodes
        .iter()
        .map(|n| {
            (
                n.group,
                n.metrics(),
                n.core_problem().is_none(),
                n.counts().keys,
            )
        })
        .collect();
    group_gauge(
        out,
        "raft_group_is_leader",
        "1 if this node leads the group.",
        id,
        rows.iter()
            .map(|(g, m, run, _)| (*g, u64::from(*run && m.state == ServerState::Leader))),
    );
    group_gauge(
        out,
        "raft_group_has_leader",
        "1 if this node knows a leader of the group.",
        id,
        rows.iter()
            .map(|(g, m, run, _)| (*g, u64::from(*run && m.current_leader.is_some()))),
    );
    group_gauge(
        out,
        "raft_group_term",
        "The group's current term on this node.",
        id,
        rows.iter().map(|(g, m, _, _)| (*g, m.current_term)),
    );
    group_gauge(
        out,
        "raft_group_applied_index",
        "Highest log index of the group applied on this node.",
        id,
        rows.iter()
            .map(|(g, m, _, _)| (*g, m.last_applied.map_or(0, |l| l.index))),
    );
    group_gauge(
        out,
        "raft_group_keys",
        "User keys of the group stored on this node.",
        id,
        rows.iter().map(|(g, _, _, keys)| (*g, *keys)),
    );
}

/// The whole `/metrics` page.
/// Membership: the nodes by state and what this node's rebalancer did.
fn render_membership(shared: &Shared, id: u64, out: &mut String) {
    use seshat_commands::members::NodeState;
    use std::sync::atomic::Ordering::Relaxed;
    let known = shared.groups.known_nodes();
    for state in [
        NodeState::Active,
        NodeState::Decommissioning,
        NodeState::Removed,
    ] {
        let count = known.nodes().values().filter(|n| n.state == state).count();
        let _ = writeln!(
            out,
            "cluster_nodes{{node_id=\"{id}\",state=\"{}\"}} {count}",
            state.name()
        );
    }
    let p = &shared.membership;
    counter(
        out,
        "rebalancer_actions_total",
        "Replica moves' steps (open, learner, promote, remove, transfer, drop) this node's rebalancer carried out.",
        id,
        p.actions.load(Relaxed),
    );
    counter(
        out,
        "rebalancer_failures_total",
        "Rebalancer steps that failed (retried at its next round).",
        id,
        p.failures.load(Relaxed),
    );
    gauge(
        out,
        "rebalancer_moves_in_flight",
        "Groups with a membership change in progress, at the rebalancer's last round.",
        id,
        p.in_flight.load(Relaxed),
    );
}

/// Resharding: migrations in progress (as this node's system replica has
/// applied them) and what this node's coordinator did.
fn render_migrations(shared: &Shared, id: u64, out: &mut String) {
    use std::sync::atomic::Ordering::Relaxed;
    let active = shared
        .groups
        .system_table()
        .map_or(0, |t| t.active().count());
    gauge(
        out,
        "migrations_in_progress",
        "Slot migrations recorded and not finished.",
        id,
        active,
    );
    let p = &shared.progress;
    counter(
        out,
        "migration_steps_total",
        "Migration steps this node's coordinator proposed.",
        id,
        p.steps.load(Relaxed),
    );
    counter(
        out,
        "migration_chunks_total",
        "Chunks this node's coordinator copied.",
        id,
        p.chunks.load(Relaxed),
    );
    counter(
        out,
        "migration_entries_total",
        "Entries this node's coordinator copied.",
        id,
        p.entries.load(Relaxed),
    );
    let (_, _, _, max) = p.freeze_summary();
    gauge(
        out,
        "migration_freeze_max_milliseconds",
        "Longest freeze of a slot batch (Freeze to ImportCommit) among the last 1024 this node coordinated.",
        id,
        max,
    );
}

pub fn render_metrics(shared: &Shared) -> String {
    let node = shared.groups.first();
    let id = shared.settings.node_id;
    let m = node.metrics();
    let mut out = String::new();
    gauge(
        &mut out,
        "raft_term",
        "Current Raft term.",
        id,
        m.current_term,
    );
    let running = node.core_problem().is_none();
    gauge(
        &mut out,
        "raft_core_running",
        "1 while the Raft core runs; 0 once it has stopped (the node then exits).",
        id,
        u8::from(running),
    );
    gauge(
        &mut out,
        "raft_is_leader",
        "1 if this node leads its group.",
        id,
        u8::from(running && m.state == ServerState::Leader),
    );
    gauge(
        &mut out,
        "raft_commit_index",
        "Highest log index known committed.",
        id,
        m.local_committed.map_or(0, |l| l.index),
    );
    gauge(
        &mut out,
        "raft_applied_index",
        "Highest log index applied.",
        id,
        m.last_applied.map_or(0, |l| l.index),
    );
    gauge(
        &mut out,
        "raft_last_log_index",
        "Highest log index stored.",
        id,
        m.last_log_index.unwrap_or(0),
    );
    let prop = |cf: Cf, name: &str| {
        node.store
            .property_u64(cf, name)
            .ok()
            .flatten()
            .unwrap_or(0)
    };
    let log_bytes = prop(Cf::DataRaftLog, "rocksdb.total-sst-files-size")
        + prop(Cf::DataRaftLog, "rocksdb.cur-size-all-mem-tables");
    gauge(
        &mut out,
        "raft_log_size_bytes",
        "Bytes of Raft log in RocksDB (SST files and memtables).",
        id,
        log_bytes,
    );
    gauge(
        &mut out,
        "storage_db_size_bytes",
        "Bytes of the database directory (SST and WAL files).",
        id,
        node.store.disk_size_bytes(),
    );
    gauge(
        &mut out,
        "storage_num_keys",
        "User keys stored.",
        id,
        node.sm_stats.key_count.load(Ordering::Acquire),
    );
    let cache = node.store.key_cache_stats().unwrap_or_default();
    gauge(
        &mut out,
        "key_cache_bytes",
        "Bytes held by the key cache (keys, values, per-entry overhead).",
        id,
        cache.bytes,
    );
    counter(
        &mut out,
        "key_cache_hits_total",
        "Point reads answered by the key cache.",
        id,
        cache.hits,
    );
    counter(
        &mut out,
        "key_cache_misses_total",
        "Point reads of cacheable keys that went to RocksDB.",
        id,
        cache.misses,
    );
    group_metrics(&mut out, shared);
    let healthy = cluster_nodes_healthy(&m, shared.settings.election_timeout_ms.1);
    gauge(
        &mut out,
        "cluster_nodes_healthy",
        "Voters this node knows to be reachable (leaders count acknowledged followers).",
        id,
        healthy,
    );
    gauge(
        &mut out,
        "raft_snapshot_index",
        "Last log index in the newest snapshot.",
        id,
        node.sm_stats.snapshot_index.load(Ordering::Acquire),
    );
    counter(
        &mut out,
        "raft_snapshots_built_total",
        "Snapshots built by this node.",
        id,
        node.sm_stats.snapshots_built.load(Ordering::Acquire),
    );
    counter(
        &mut out,
        "raft_snapshots_installed_total",
        "Snapshots installed from a leader.",
        id,
        node.sm_stats.snapshots_installed.load(Ordering::Acquire),
    );
    let build_secs = node.sm_stats.snapshot_build_micros.load(Ordering::Acquire) as f64 / 1e6;
    counter_f(
        &mut out,
        "raft_snapshot_build_seconds_total",
        "Time spent building snapshots.",
        id,
        build_secs,
    );
    counter(
        &mut out,
        "connections_received_total",
        "Client connections accepted.",
        id,
        shared.stats.total_connections.load(Ordering::Relaxed),
    );
    gauge(
        &mut out,
        "connected_clients",
        "Clients connected now.",
        id,
        shared.stats.connected_clients.load(Ordering::Relaxed),
    );
    counter(
        &mut out,
        "connections_rejected_total",
        "Client connections refused because maxclients was reached.",
        id,
        shared.stats.rejected_connections.load(Ordering::Relaxed),
    );
    gauge(
        &mut out,
        "client_memory_bytes",
        "Memory held for clients: input buffers, unanswered requests, unsent replies.",
        id,
        shared.client_memory.total() as u64,
    );
    gauge(
        &mut out,
        "client_memory_limit_bytes",
        "The maxmemory-clients bound (0: none).",
        id,
        shared.client_memory.limit() as u64,
    );
    counter(
        &mut out,
        "clients_evicted_total",
        "Clients disconnected because client memory passed maxmemory-clients.",
        id,
        shared.client_memory.evicted(),
    );
    counter(
        &mut out,
        "clients_idle_timeouts_total",
        "Clients closed by the idle timeout.",
        id,
        shared.stats.idle_timeouts.load(Ordering::Relaxed),
    );
    counter(
        &mut out,
        "auth_failures_total",
        "AUTH and HELLO AUTH attempts refused (wrong user or password).",
        id,
        shared.auth.failures(),
    );
    counter(
        &mut out,
        "acl_denied_commands_total",
        "Commands refused because the user may not run them (-NOPERM).",
        id,
        shared.auth.denied_commands(),
    );
    counter(
        &mut out,
        "acl_denied_keys_total",
        "Commands refused because the user may not touch a key they name (-NOPERM).",
        id,
        shared.auth.denied_keys(),
    );
    shared.requests.render(id, &mut out);
    crate::metrics::render_stages(id, &mut out);
    render_migrations(shared, id, &mut out);
    render_membership(shared, id, &mut out);
    let (entries, writes) = seshat_common::stages::entries_and_writes();
    counter(
        &mut out,
        "proposed_entries_total",
        "Log entries this node proposed for client writes.",
        id,
        entries,
    );
    counter(
        &mut out,
        "proposed_writes_total",
        "Client writes carried by those entries (writes per entry = batching).",
        id,
        writes,
    );
    out
}

fn counter_f(out: &mut String, name: &str, help: &str, node_id: u64, value: f64) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} counter");
    let _ = writeln!(out, "{name}{{node_id=\"{node_id}\"}} {value}");
}

fn cluster_nodes_healthy(
    m: &openraft::RaftMetrics<seshat_raft::TypeConfig>,
    _timeout_ms: u64,
) -> u64 {
    let voters = m.membership_config.membership().voter_ids().count() as u64;
    match (&m.replication, m.current_leader) {
        // A leader counts itself plus followers whose replication is live.
        (Some(rep), Some(l)) if l == m.id => {
            1 + rep
                .iter()
                .filter(|(id, matched)| **id != m.id && matched.is_some())
                .count() as u64
        }
        // A follower that knows a leader sees at least itself and the leader.
        (_, Some(_)) => voters.min(2),
        _ => 1,
    }
}
