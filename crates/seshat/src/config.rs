//! Command-line flags, environment variables and the TOML file, merged and
//! validated once into [`Settings`].
//!
//! Precedence: flag or `SESHAT_*` variable, then the `--config` file, then
//! the defaults. Every refusal names the setting and the bad value.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use serde::Deserialize;
use seshat_common::{InvalidSetting, Limits, NodeId};

use crate::auth::{protected_mode_refusal, PasswordDigest};

/// Default `--dead-node-timeout`, seconds: a node unreachable this long is
/// treated as gone and its replicas are made again elsewhere.
pub const DEFAULT_DEAD_NODE_TIMEOUT_SECS: u64 = 300;
/// Default client (RESP) address.
const DEFAULT_CLIENT_ADDR: &str = "127.0.0.1:6379";
/// Default internal Raft (gRPC) address.
pub const DEFAULT_RAFT_ADDR: &str = "127.0.0.1:7379";
/// Default metrics/health HTTP address.
pub const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:9090";
/// Default data directory.
pub const DEFAULT_DATA_DIR: &str = "./seshat-data";
/// Default cap on connected clients (Redis's `maxclients` default).
pub const DEFAULT_MAX_CLIENTS: usize = 10_000;
/// Smallest non-zero `maxmemory-clients`: one client's ordinary buffers
/// must fit.
const MIN_MAXMEMORY_CLIENTS: usize = 1 << 20;
/// Longest idle timeout or keepalive accepted, seconds.
const MAX_IDLE_SECS: u64 = 365 * 24 * 3600;
/// Default TCP keepalive idle time on client sockets, seconds (Redis's).
pub const DEFAULT_TCP_KEEPALIVE_SECS: u64 = 300;
/// Default time a proposal may take before the client gets `-TIMEOUT`.
pub const DEFAULT_REQUEST_TIMEOUT_MS: u64 = 30_000;
/// Default Raft heartbeat interval.
pub const DEFAULT_HEARTBEAT_INTERVAL_MS: u64 = 100;
/// Default election timeout range.
pub const DEFAULT_ELECTION_TIMEOUT_MS_MIN: u64 = 500;
/// Default election timeout range, upper end.
pub const DEFAULT_ELECTION_TIMEOUT_MS_MAX: u64 = 1_000;
/// Default snapshot interval, in applied entries.
pub const DEFAULT_SNAPSHOT_EVERY_ENTRIES: u64 = 10_000;
/// Default number of log entries kept behind a snapshot for lagging
/// followers.
pub const DEFAULT_LOG_TAIL_ENTRIES: u64 = 1_000;
/// Default worker threads of the node's Raft runtime (its core,
/// replication, heartbeats, the node-to-node server). Its tasks are light
/// (log syncs, snapshot files and long applies run on other threads), but
/// a RocksDB write of the log or of an applied batch can still block in
/// the kernel (dirty-page throttling on a busy disk, a write stall): with
/// a second worker the other tasks — heartbeats, a follower's election
/// timer — go on meanwhile. Where several nodes share few cores (`seshat
/// dev-cluster`), one worker costs less CPU per request (fewer wake-ups
/// and thread hops; BENCHMARKS.md).
pub const DEFAULT_RAFT_WORKER_THREADS: usize = 2;
/// Most worker threads of the Raft runtime.
pub const MAX_RAFT_WORKER_THREADS: usize = 64;
/// Longest time in-flight requests get to finish on shutdown.
pub const SHUTDOWN_GRACE_MS: u64 = 5_000;

/// Seshat: a Raft-replicated key-value store that speaks the Redis protocol.
#[derive(Debug, Parser)]
#[command(
    name = "seshat",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// Node settings (when no subcommand is given).
    #[command(flatten)]
    pub node: NodeArgs,
    /// Optional subcommand.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start a local N-node cluster for development; Ctrl-C stops it.
    DevCluster(DevClusterArgs),
    /// Operate a running cluster (resharding).
    Admin(AdminArgs),
}

/// `seshat admin …`.
#[derive(Debug, Args)]
pub struct AdminArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: AdminCommand,
}

/// Where `seshat admin` connects.
#[derive(Debug, Clone, Args)]
pub struct ConnectArgs {
    /// Any node's client host.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Its client port.
    #[arg(short, long, default_value_t = 6379)]
    pub port: u16,
    /// The default user's password, if one is set.
    #[arg(short = 'a', long, env = "SESHAT_ADMIN_PASSWORD")]
    pub password: Option<String>,
}

/// The admin subcommands.
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Move slots to a shard, in batches, while clients keep working.
    Reshard {
        /// Where to connect.
        #[command(flatten)]
        connect: ConnectArgs,
        /// Slots to move: `A-B` or `A`; repeat for more.
        #[arg(long, required = true)]
        slots: Vec<String>,
        /// The shard (data group, numbered from 1) that takes them.
        #[arg(long)]
        to_shard: u32,
        /// Slots per migration: each batch is frozen only while it is
        /// copied.
        #[arg(long, default_value_t = 256)]
        batch_slots: usize,
    },
    /// Move slots until every shard holds an even share.
    Rebalance {
        /// Where to connect.
        #[command(flatten)]
        connect: ConnectArgs,
        /// Slots per migration.
        #[arg(long, default_value_t = 256)]
        batch_slots: usize,
    },
    /// List every node the cluster has had: id, state, addresses,
    /// replicas and leaderships.
    Nodes {
        /// Where to connect.
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Move every replica off a node, then remove it from the cluster.
    Decommission {
        /// Where to connect.
        #[command(flatten)]
        connect: ConnectArgs,
        /// The node's id (see `seshat admin nodes`).
        id: u64,
        /// Return once the state is set instead of waiting until the node
        /// holds nothing.
        #[arg(long)]
        no_wait: bool,
    },
    /// Remove a node that is gone for good: its replicas are made again
    /// on the other nodes, and it may never run again.
    Remove {
        /// Where to connect.
        #[command(flatten)]
        connect: ConnectArgs,
        /// The node's id.
        id: u64,
        /// Return once the state is set instead of waiting for the
        /// replicas to be made again.
        #[arg(long)]
        no_wait: bool,
    },
    /// Replace a dead node (its disk lost): the same as `remove`; start
    /// the new machine with `--join` and the rebalancer gives it the
    /// replicas.
    Replace {
        /// Where to connect.
        #[command(flatten)]
        connect: ConnectArgs,
        /// The dead node's id.
        id: u64,
        /// Return once the state is set.
        #[arg(long)]
        no_wait: bool,
    },
}

/// Flags of `seshat dev-cluster`.
#[derive(Debug, Args)]
pub struct DevClusterArgs {
    /// Number of nodes (1 to 9).
    #[arg(long, default_value_t = 3)]
    pub nodes: u16,
    /// Directory holding each node's data, pid and log (`DIR/node-i/`).
    #[arg(long, default_value = "./seshat-dev")]
    pub dir: PathBuf,
    /// Client port of node 1; node i gets base + i - 1.
    #[arg(long, default_value_t = 6379)]
    pub client_port_base: u16,
    /// Raft port of node 1.
    #[arg(long, default_value_t = 7379)]
    pub raft_port_base: u16,
    /// HTTP port of node 1.
    #[arg(long, default_value_t = 9090)]
    pub http_port_base: u16,
    /// TLS client port of node 1 (off when not given); the certificate
    /// flags go after `--`, e.g. `-- --tls-cert-file s.crt --tls-key-file
    /// s.key`.
    #[arg(long)]
    pub tls_port_base: Option<u16>,
    /// Data groups (shards) of the new cluster (see the node flag
    /// `--shards`); default as for a node.
    #[arg(long)]
    pub shards: Option<u32>,
    /// Replicas of each data group (see the node flag `--replicas`).
    #[arg(long)]
    pub replicas: Option<u32>,
    /// Instead of a new cluster, start this many more nodes that join the
    /// cluster another `dev-cluster` runs in `--dir` (through node 1's
    /// Raft port); they take the next numbers after its `node-i`
    /// directories, with the same port scheme.
    #[arg(long, default_value_t = 0)]
    pub add: u16,
    /// Extra flags passed to every node (e.g. `--log-level=debug`).
    #[arg(last = true)]
    pub node_args: Vec<String>,
}

/// Flags of a node. Every one can also be given as a `SESHAT_*` variable or
/// in the TOML file (same name with `_` instead of `-`).
#[derive(Debug, Args, Default)]
pub struct NodeArgs {
    /// This node's id (never reused within a cluster).
    #[arg(long, env = "SESHAT_NODE_ID")]
    pub node_id: Option<NodeId>,
    /// Address for Redis clients (RESP).
    #[arg(long, env = "SESHAT_CLIENT_ADDR")]
    pub client_addr: Option<String>,
    /// Address for Raft traffic between nodes (gRPC).
    #[arg(long, env = "SESHAT_RAFT_ADDR")]
    pub raft_addr: Option<String>,
    /// Address for /metrics, /health and /ready.
    #[arg(long, env = "SESHAT_HTTP_ADDR")]
    pub http_addr: Option<String>,
    /// Directory for the node's database and snapshots.
    #[arg(long, env = "SESHAT_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// TOML file with any of these settings.
    #[arg(long, env = "SESHAT_CONFIG")]
    pub config: Option<PathBuf>,
    /// Log filter (error, warn, info, debug, trace, or a tracing directive).
    #[arg(long, env = "SESHAT_LOG_LEVEL")]
    pub log_level: Option<String>,
    /// Log format: `text` (default) or `json` for log pipelines.
    #[arg(long, env = "SESHAT_LOG_FORMAT")]
    pub log_format: Option<LogFormat>,
    /// Maximum number of connected clients.
    #[arg(long, env = "SESHAT_MAX_CLIENTS")]
    pub max_clients: Option<usize>,
    /// Bound on memory held for all clients together (input buffers,
    /// decoded requests not yet answered, unsent replies), e.g. `512mb`;
    /// past it the largest clients are disconnected. `0`: no bound.
    #[arg(long, env = "SESHAT_MAXMEMORY_CLIENTS")]
    pub maxmemory_clients: Option<String>,
    /// Memory for the key cache, e.g. `64mb`: the newest records of
    /// recently read or written keys, so a `GET` or a `SET`'s look at its
    /// key's old record is a hash lookup instead of a RocksDB search.
    /// `0`: off.
    #[arg(long, env = "SESHAT_KEY_CACHE_BYTES")]
    pub key_cache_bytes: Option<String>,
    /// Close a client after this many seconds without a byte read or
    /// written (Redis's `timeout`). `0`: never.
    #[arg(long, env = "SESHAT_TIMEOUT")]
    pub timeout: Option<u64>,
    /// TCP keepalive probes on client connections after this many idle
    /// seconds (Redis's `tcp-keepalive`). `0`: off.
    #[arg(long, env = "SESHAT_TCP_KEEPALIVE")]
    pub tcp_keepalive: Option<u64>,
    /// Largest key accepted, in bytes.
    #[arg(long, env = "SESHAT_MAX_KEY_BYTES")]
    pub max_key_bytes: Option<usize>,
    /// Largest value accepted, in bytes.
    #[arg(long, env = "SESHAT_MAX_VALUE_BYTES")]
    pub max_value_bytes: Option<usize>,
    /// Time a write or read may wait for Raft before `-TIMEOUT`.
    #[arg(long, env = "SESHAT_REQUEST_TIMEOUT_MS")]
    pub request_timeout_ms: Option<u64>,
    /// Raft heartbeat interval.
    #[arg(long, env = "SESHAT_HEARTBEAT_INTERVAL_MS")]
    pub heartbeat_interval_ms: Option<u64>,
    /// Raft election timeout, lower bound.
    #[arg(long, env = "SESHAT_ELECTION_TIMEOUT_MS_MIN")]
    pub election_timeout_ms_min: Option<u64>,
    /// Raft election timeout, upper bound.
    #[arg(long, env = "SESHAT_ELECTION_TIMEOUT_MS_MAX")]
    pub election_timeout_ms_max: Option<u64>,
    /// Build a snapshot after this many applied entries.
    #[arg(long, env = "SESHAT_SNAPSHOT_EVERY_ENTRIES")]
    pub snapshot_every_entries: Option<u64>,
    /// Log entries kept behind a snapshot for lagging followers.
    #[arg(long, env = "SESHAT_LOG_TAIL_ENTRIES")]
    pub log_tail_entries: Option<u64>,
    /// Worker threads of the Raft runtime (1 to 64).
    #[arg(long, env = "SESHAT_RAFT_WORKER_THREADS")]
    pub raft_worker_threads: Option<usize>,
    /// The initial cluster, identical on every initial node:
    /// `1=RAFT_ADDR/CLIENT_ADDR,2=RAFT_ADDR/CLIENT_ADDR,...`.
    #[arg(long, env = "SESHAT_INITIAL_MEMBERS")]
    pub initial_members: Option<String>,
    /// Data groups (shards) the slots are split over, fixed when the
    /// cluster is created: 1 to 16, default 1. Identical on every initial
    /// node; a restart may leave it out.
    #[arg(long, env = "SESHAT_SHARDS")]
    pub shards: Option<u32>,
    /// Replicas of each data group (the replication factor), fixed when
    /// the cluster is created: 1 to 7, default 3 on a sharded cluster
    /// (every node when the cluster has fewer), every node up to 7 on a
    /// one-group cluster. Identical on every initial node; a restart may
    /// leave it out.
    #[arg(long, env = "SESHAT_REPLICAS")]
    pub replicas: Option<u32>,
    /// What a follower does with data commands: `redirect` (answer MOVED)
    /// or `proxy` (forward to the leader).
    #[arg(long, env = "SESHAT_FOLLOWER_MODE")]
    pub follower_mode: Option<crate::proxy::FollowerMode>,
    /// Join a running cluster through this member's Raft address
    /// (`host:port`). The cluster gives the node its id; needs an empty
    /// data directory the first time, and is kept in it afterwards.
    #[arg(long, env = "SESHAT_JOIN")]
    pub join: Option<String>,
    /// Seconds a node may be unreachable before the rebalancer makes its
    /// replicas again on other nodes (0: never by itself; use `CLUSTER
    /// FORGET`).
    #[arg(long, env = "SESHAT_DEAD_NODE_TIMEOUT")]
    pub dead_node_timeout: Option<u64>,
    /// Password clients must give (`AUTH password`, `HELLO 3 AUTH default
    /// password`) before any other command. Empty: none. Prefer the
    /// variable or the file: a flag shows in `ps`.
    #[arg(long, env = "SESHAT_REQUIREPASS", hide_env_values = true)]
    pub requirepass: Option<String>,
    /// An ACL file (Redis's format: `user <name> <rules…>` per line),
    /// read at start (a malformed file stops the start) and proposed as
    /// the cluster's users when this node first leads; `ACL LOAD` re-reads
    /// it, `ACL SAVE` writes it.
    #[arg(long, env = "SESHAT_ACLFILE")]
    pub aclfile: Option<PathBuf>,
    /// `yes` (default): refuse to start on a non-loopback client address
    /// without a password. `no`: allow it.
    #[arg(long, env = "SESHAT_PROTECTED_MODE")]
    pub protected_mode: Option<YesNo>,
    /// Serve TLS clients on this port, on the client address' IP (the
    /// plain listener stays). Needs `--tls-cert-file` and `--tls-key-file`.
    #[arg(long, env = "SESHAT_TLS_PORT")]
    pub tls_port: Option<u16>,
    /// The TLS server certificate chain (PEM), leaf first.
    #[arg(long, env = "SESHAT_TLS_CERT_FILE")]
    pub tls_cert_file: Option<PathBuf>,
    /// The private key of the TLS certificate (PEM).
    #[arg(long, env = "SESHAT_TLS_KEY_FILE")]
    pub tls_key_file: Option<PathBuf>,
    /// CA certificates (PEM) that client certificates must chain to.
    #[arg(long, env = "SESHAT_TLS_CA_CERT_FILE")]
    pub tls_ca_cert_file: Option<PathBuf>,
    /// Client certificates: `yes` (required), `no`, or `optional`.
    /// Default: `yes` when a CA file is given, else `no`.
    #[arg(long, env = "SESHAT_TLS_AUTH_CLIENTS")]
    pub tls_auth_clients: Option<String>,
    /// `yes`: the HTTP port speaks only TLS (HTTPS), with the client TLS
    /// certificate, key and client-certificate policy (`--tls-*`), which
    /// must then be given. `no` (default): plain HTTP.
    #[arg(long, env = "SESHAT_HTTP_TLS")]
    pub http_tls: Option<YesNo>,
    /// Mutual TLS on the Raft port: this node's certificate chain (PEM,
    /// leaf first), with DNS name `seshat-node` among its subject
    /// alternative names. Needs `--raft-tls-key-file` and
    /// `--raft-tls-ca-cert-file`.
    #[arg(long, env = "SESHAT_RAFT_TLS_CERT_FILE")]
    pub raft_tls_cert_file: Option<PathBuf>,
    /// The private key of the Raft TLS certificate (PEM).
    #[arg(long, env = "SESHAT_RAFT_TLS_KEY_FILE")]
    pub raft_tls_key_file: Option<PathBuf>,
    /// The cluster CA (PEM): peers' certificates must chain to it, both
    /// ways.
    #[arg(long, env = "SESHAT_RAFT_TLS_CA_CERT_FILE")]
    pub raft_tls_ca_cert_file: Option<PathBuf>,
}

/// The TOML file: the same settings as the flags.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    node_id: Option<NodeId>,
    client_addr: Option<String>,
    raft_addr: Option<String>,
    http_addr: Option<String>,
    data_dir: Option<PathBuf>,
    log_level: Option<String>,
    log_format: Option<LogFormat>,
    max_clients: Option<usize>,
    maxmemory_clients: Option<String>,
    key_cache_bytes: Option<String>,
    timeout: Option<u64>,
    tcp_keepalive: Option<u64>,
    max_key_bytes: Option<usize>,
    max_value_bytes: Option<usize>,
    request_timeout_ms: Option<u64>,
    heartbeat_interval_ms: Option<u64>,
    election_timeout_ms_min: Option<u64>,
    election_timeout_ms_max: Option<u64>,
    snapshot_every_entries: Option<u64>,
    log_tail_entries: Option<u64>,
    raft_worker_threads: Option<usize>,
    initial_members: Option<String>,
    shards: Option<u32>,
    replicas: Option<u32>,
    follower_mode: Option<crate::proxy::FollowerMode>,
    join: Option<String>,
    dead_node_timeout: Option<u64>,
    requirepass: Option<String>,
    aclfile: Option<PathBuf>,
    protected_mode: Option<YesNo>,
    tls_port: Option<u16>,
    tls_cert_file: Option<PathBuf>,
    tls_key_file: Option<PathBuf>,
    tls_ca_cert_file: Option<PathBuf>,
    tls_auth_clients: Option<String>,
    http_tls: Option<YesNo>,
    raft_tls_cert_file: Option<PathBuf>,
    raft_tls_key_file: Option<PathBuf>,
    raft_tls_ca_cert_file: Option<PathBuf>,
}

/// Validated settings of one node.
#[derive(Debug, Clone)]
pub struct Settings {
    /// This node's id.
    pub node_id: NodeId,
    /// RESP listen (and advertised) address.
    pub client_addr: SocketAddr,
    /// Raft listen (and advertised) address.
    pub raft_addr: SocketAddr,
    /// HTTP listen address.
    pub http_addr: SocketAddr,
    /// Data directory.
    pub data_dir: PathBuf,
    /// Log filter.
    pub log_level: String,
    /// Log format.
    pub log_format: LogFormat,
    /// Maximum connected clients.
    pub max_clients: usize,
    /// Bound on memory held for clients, bytes (0: none).
    pub maxmemory_clients: usize,
    /// Key cache budget, bytes (0: off).
    pub key_cache_bytes: usize,
    /// Idle client timeout (zero: never).
    pub client_timeout: Duration,
    /// TCP keepalive idle time on client sockets (zero: off).
    pub tcp_keepalive: Duration,
    /// Key and value size limits.
    pub limits: Limits,
    /// Time a request may wait on Raft.
    pub request_timeout: Duration,
    /// Raft heartbeat interval, ms.
    pub heartbeat_interval_ms: u64,
    /// Election timeout range, ms.
    pub election_timeout_ms: (u64, u64),
    /// Snapshot interval, entries.
    pub snapshot_every_entries: u64,
    /// Log entries kept behind a snapshot.
    pub log_tail_entries: u64,
    /// Worker threads of the Raft runtime.
    pub raft_worker_threads: usize,
    /// The member to join through (`--join`), when this node joins a
    /// running cluster: `node_id` is then given by the cluster at start.
    pub join: Option<String>,
    /// How long a node may be unreachable before its replicas are made
    /// again elsewhere (zero: never).
    pub dead_node_timeout: Duration,
    /// The initial members (just this node when not given).
    pub initial_members: BTreeMap<NodeId, Member>,
    /// `--shards`, if given (see [`crate::layout`]).
    pub shards: Option<u32>,
    /// `--replicas`, if given (see [`crate::layout`]).
    pub replicas: Option<u32>,
    /// Redirect or proxy on followers.
    pub follower_mode: crate::proxy::FollowerMode,
    /// The password clients must give, as its digest (none: no password).
    pub requirepass: Option<PasswordDigest>,
    /// The ACL file and the users it held at start.
    pub aclfile: Option<AclFile>,
    /// Refuse a non-loopback client address without a password.
    pub protected_mode: bool,
    /// The client TLS settings, when the TLS client port or the HTTP port
    /// serves TLS.
    pub tls: Option<TlsSettings>,
    /// Mutual TLS on the Raft port, if enabled.
    pub raft_tls: Option<RaftTlsFiles>,
}

/// The files of mutual TLS between nodes (see `seshat_raft::peer_tls`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaftTlsFiles {
    /// This node's certificate chain (PEM), leaf first.
    pub cert_file: PathBuf,
    /// Its private key (PEM).
    pub key_file: PathBuf,
    /// The cluster CA (PEM).
    pub ca_cert_file: PathBuf,
}

/// What serves client TLS: the TLS client port, HTTPS on the HTTP port,
/// or both (at least one), with one set of files.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    /// The TLS client port's listen (and advertised) address: the client
    /// address' IP, the TLS port. None when only the HTTP port serves TLS.
    pub addr: Option<SocketAddr>,
    /// The HTTP port speaks only TLS (`--http-tls yes`).
    pub http: bool,
    /// Certificate, key, CA and client-certificate policy at start.
    pub files: crate::tls::TlsFiles,
}

/// A `yes`/`no` setting, spelled as Redis spells its booleans.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum YesNo {
    /// On.
    Yes,
    /// Off.
    No,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// One member's advertised addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Raft (gRPC) address.
    pub raft_addr: SocketAddr,
    /// Client (RESP) address.
    pub client_addr: SocketAddr,
    /// Client TLS address, if the member serves TLS: what TLS clients are
    /// redirected to.
    pub tls_addr: Option<SocketAddr>,
}

/// Parses `1=RAFT/CLIENT,2=RAFT/CLIENT/TLS,...` (the TLS client address is
/// optional, per member).
pub fn parse_members(text: &str) -> Result<BTreeMap<NodeId, Member>, InvalidSetting> {
    const NAME: &str = "initial-members";
    let bad = |why: String| InvalidSetting::new(NAME, text, why);
    let mut out = BTreeMap::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (id, addrs) = part
            .split_once('=')
            .ok_or_else(|| bad(format!("'{part}' is not ID=RAFT_ADDR/CLIENT_ADDR")))?;
        let id: NodeId = id
            .trim()
            .parse()
            .map_err(|_| bad(format!("'{id}' is not a node id")))?;
        if id == 0 {
            return Err(bad("node ids start at 1".into()));
        }
        let mut fields = addrs.split('/');
        let (Some(raft), Some(client), tls, None) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return Err(bad(format!(
                "'{part}' is not ID=RAFT_ADDR/CLIENT_ADDR[/TLS_CLIENT_ADDR]"
            )));
        };
        let addr = |text: &str| {
            text.trim()
                .parse::<SocketAddr>()
                .map_err(|_| bad(format!("'{text}' is not ip:port")))
        };
        let member = Member {
            raft_addr: addr(raft)?,
            client_addr: addr(client)?,
            tls_addr: tls.map(addr).transpose()?,
        };
        if out.insert(id, member).is_some() {
            return Err(bad(format!("node {id} is listed twice")));
        }
    }
    if out.is_empty() {
        return Err(bad("no members".into()));
    }
    Ok(out)
}

/// Parses a byte size as Redis does: a number with an optional unit `b`,
/// `k`/`kb`, `m`/`mb`, `g`/`gb` (`k` is 1000, `kb` 1024, and so on).
pub fn parse_bytes(name: &'static str, text: &str) -> Result<usize, InvalidSetting> {
    let lower = text.trim().to_ascii_lowercase();
    let digits = lower.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &lower[digits.len()..];
    let multiplier: u64 = match unit {
        "" | "b" => 1,
        "k" => 1_000,
        "kb" => 1 << 10,
        "m" => 1_000_000,
        "mb" => 1 << 20,
        "g" => 1_000_000_000,
        "gb" => 1 << 30,
        _ => {
            return Err(InvalidSetting::new(
                name,
                text,
                "unknown unit (use b, k, kb, m, mb, g or gb)",
            ))
        }
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(multiplier))
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| InvalidSetting::new(name, text, "expected a byte size such as 512mb"))
}

fn parse_addr(name: &'static str, value: &str) -> Result<SocketAddr, InvalidSetting> {
    value
        .parse()
        .map_err(|e| InvalidSetting::new(name, value, format!("expected ip:port ({e})")))
}

fn read_file(path: &Path) -> anyhow::Result<FileSettings> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("invalid config file {}", path.display()))
}

/// An ACL file and the users it defines.
#[derive(Debug, Clone)]
pub struct AclFile {
    /// Where it is (`ACL LOAD` re-reads it, `ACL SAVE` writes it).
    pub path: PathBuf,
    /// The users it held when read.
    pub users: Vec<seshat_kv::UserDef>,
}

impl AclFile {
    /// Reads and checks the file at `path`; an error names the line.
    pub fn read(path: PathBuf) -> Result<Self, InvalidSetting> {
        let bad = |why: String| InvalidSetting::new("aclfile", path.display(), why);
        let text =
            std::fs::read_to_string(&path).map_err(|e| bad(format!("cannot read it: {e}")))?;
        let users = seshat_commands::acl::parse_acl_file(&text).map_err(bad)?;
        Ok(Self { path, users })
    }
}

impl Settings {
    /// Merges flags, environment and file, then validates.
    pub fn from_args(args: &NodeArgs) -> anyhow::Result<Settings> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => FileSettings::default(),
        };
        macro_rules! pick {
            ($field:ident, $default:expr) => {
                args.$field
                    .clone()
                    .or(file.$field.clone())
                    .unwrap_or_else(|| $default)
            };
        }
        // A size flag (`512mb`, `0`, …), parsed, or its default.
        macro_rules! pick_bytes {
            ($field:ident, $name:literal, $default:expr) => {
                match args.$field.clone().or(file.$field.clone()) {
                    Some(text) => parse_bytes($name, &text)?,
                    None => $default,
                }
            };
        }
        let join = args.join.clone().or(file.join.clone());
        if let Some(join) = &join {
            if args.initial_members.is_some() || file.initial_members.is_some() {
                bail!(InvalidSetting::new(
                    "join",
                    join,
                    "cannot be given with --initial-members: a node either bootstraps a cluster or joins one"
                ));
            }
            if args.node_id.is_some() || file.node_id.is_some() {
                bail!(InvalidSetting::new(
                    "join",
                    join,
                    "cannot be given with --node-id: the cluster gives a joining node its id"
                ));
            }
            parse_addr("join", join)?;
        }
        // A joining node's id is given by the cluster at start.
        let node_id = if join.is_some() { 0 } else { pick!(node_id, 1) };
        let members = match args
            .initial_members
            .clone()
            .or(file.initial_members.clone())
        {
            Some(text) => Some(parse_members(&text)?),
            None => None,
        };
        let me = members.as_ref().and_then(|m| m.get(&node_id)).cloned();
        if members.is_some() && me.is_none() {
            bail!(InvalidSetting::new(
                "node-id",
                node_id,
                "is not one of --initial-members"
            ));
        }
        let default_client = me.as_ref().map_or(DEFAULT_CLIENT_ADDR.to_string(), |m| {
            m.client_addr.to_string()
        });
        let default_raft = me
            .as_ref()
            .map_or(DEFAULT_RAFT_ADDR.to_string(), |m| m.raft_addr.to_string());
        let client_addr = parse_addr("client-addr", &pick!(client_addr, default_client))?;
        let raft_addr = parse_addr("raft-addr", &pick!(raft_addr, default_raft))?;
        let tls = tls_settings(args, &file, client_addr, me.as_ref())?;
        let initial_members = members.unwrap_or_else(|| {
            BTreeMap::from([(
                node_id,
                Member {
                    raft_addr,
                    client_addr,
                    tls_addr: tls.as_ref().and_then(|t| t.addr),
                },
            )])
        });
        let settings = Settings {
            node_id,
            client_addr,
            raft_addr,
            http_addr: parse_addr("http-addr", &pick!(http_addr, DEFAULT_HTTP_ADDR.into()))?,
            data_dir: pick!(data_dir, PathBuf::from(DEFAULT_DATA_DIR)),
            log_level: pick!(log_level, "info".into()),
            log_format: pick!(log_format, LogFormat::Text),
            max_clients: pick!(max_clients, DEFAULT_MAX_CLIENTS),
            maxmemory_clients: pick_bytes!(
                maxmemory_clients,
                "maxmemory-clients",
                crate::client_memory::DEFAULT_MAXMEMORY_CLIENTS
            ),
            key_cache_bytes: pick_bytes!(
                key_cache_bytes,
                "key-cache-bytes",
                seshat_storage::DEFAULT_KEY_CACHE_BYTES
            ),
            client_timeout: Duration::from_secs(pick!(timeout, 0)),
            tcp_keepalive: Duration::from_secs(pick!(tcp_keepalive, DEFAULT_TCP_KEEPALIVE_SECS)),
            limits: Limits {
                max_key_bytes: pick!(max_key_bytes, seshat_common::DEFAULT_MAX_KEY_BYTES),
                max_value_bytes: pick!(max_value_bytes, seshat_common::DEFAULT_MAX_VALUE_BYTES),
            },
            request_timeout: Duration::from_millis(pick!(
                request_timeout_ms,
                DEFAULT_REQUEST_TIMEOUT_MS
            )),
            heartbeat_interval_ms: pick!(heartbeat_interval_ms, DEFAULT_HEARTBEAT_INTERVAL_MS),
            election_timeout_ms: (
                pick!(election_timeout_ms_min, DEFAULT_ELECTION_TIMEOUT_MS_MIN),
                pick!(election_timeout_ms_max, DEFAULT_ELECTION_TIMEOUT_MS_MAX),
            ),
            snapshot_every_entries: pick!(snapshot_every_entries, DEFAULT_SNAPSHOT_EVERY_ENTRIES),
            log_tail_entries: pick!(log_tail_entries, DEFAULT_LOG_TAIL_ENTRIES),
            raft_worker_threads: pick!(raft_worker_threads, DEFAULT_RAFT_WORKER_THREADS),
            join,
            dead_node_timeout: Duration::from_secs(pick!(
                dead_node_timeout,
                DEFAULT_DEAD_NODE_TIMEOUT_SECS
            )),
            initial_members,
            shards: args.shards.or(file.shards),
            replicas: args.replicas.or(file.replicas),
            follower_mode: pick!(follower_mode, crate::proxy::FollowerMode::Redirect),
            requirepass: args
                .requirepass
                .as_ref()
                .or(file.requirepass.as_ref())
                .and_then(|p| PasswordDigest::of(p.as_bytes())),
            aclfile: args
                .aclfile
                .clone()
                .or(file.aclfile.clone())
                .map(AclFile::read)
                .transpose()?,
            protected_mode: pick!(protected_mode, YesNo::Yes) == YesNo::Yes,
            tls,
            raft_tls: raft_tls_files(args, &file)?,
        };
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> anyhow::Result<()> {
        self.limits.validate()?;
        if self.node_id == 0 && self.join.is_none() {
            bail!(InvalidSetting::new("node-id", 0, "node ids start at 1"));
        }
        if let Some(n) = self.shards {
            if n == 0 || n > crate::layout::MAX_SHARDS {
                bail!(InvalidSetting::new(
                    "shards",
                    n,
                    format!("must be between 1 and {}", crate::layout::MAX_SHARDS)
                ));
            }
        }
        if let Some(n) = self.replicas {
            if n == 0 || n > crate::layout::MAX_REPLICAS {
                bail!(InvalidSetting::new(
                    "replicas",
                    n,
                    format!("must be between 1 and {}", crate::layout::MAX_REPLICAS)
                ));
            }
        }
        if self.max_clients == 0 || self.max_clients > 1_000_000 {
            bail!(InvalidSetting::new(
                "max-clients",
                self.max_clients,
                "must be between 1 and 1000000"
            ));
        }
        if self.maxmemory_clients != 0 && self.maxmemory_clients < MIN_MAXMEMORY_CLIENTS {
            bail!(InvalidSetting::new(
                "maxmemory-clients",
                self.maxmemory_clients,
                "must be 0 (no bound) or at least 1mb"
            ));
        }
        if self.client_timeout.as_secs() > MAX_IDLE_SECS {
            bail!(InvalidSetting::new(
                "timeout",
                self.client_timeout.as_secs(),
                "must be at most 31536000 (a year)"
            ));
        }
        if self.tcp_keepalive.as_secs() > MAX_IDLE_SECS {
            bail!(InvalidSetting::new(
                "tcp-keepalive",
                self.tcp_keepalive.as_secs(),
                "must be at most 31536000 (a year)"
            ));
        }
        let timeout_ms = self.request_timeout.as_millis();
        if !(1..=600_000).contains(&timeout_ms) {
            bail!(InvalidSetting::new(
                "request-timeout-ms",
                timeout_ms,
                "must be between 1 and 600000"
            ));
        }
        let (min, max) = self.election_timeout_ms;
        if self.heartbeat_interval_ms == 0 {
            bail!(InvalidSetting::new(
                "heartbeat-interval-ms",
                0,
                "must be at least 1"
            ));
        }
        if min <= self.heartbeat_interval_ms {
            bail!(InvalidSetting::new(
                "election-timeout-ms-min",
                min,
                format!(
                    "must be greater than heartbeat-interval-ms ({})",
                    self.heartbeat_interval_ms
                )
            ));
        }
        if max <= min {
            bail!(InvalidSetting::new(
                "election-timeout-ms-max",
                max,
                format!("must be greater than election-timeout-ms-min ({min})")
            ));
        }
        if !(1..=MAX_RAFT_WORKER_THREADS).contains(&self.raft_worker_threads) {
            bail!(InvalidSetting::new(
                "raft-worker-threads",
                self.raft_worker_threads,
                format!("must be between 1 and {MAX_RAFT_WORKER_THREADS}")
            ));
        }
        if self.snapshot_every_entries == 0 {
            bail!(InvalidSetting::new(
                "snapshot-every-entries",
                0,
                "must be at least 1"
            ));
        }
        if let Some(why) = protected_mode_refusal(
            self.client_addr,
            self.requirepass.is_some(),
            self.protected_mode,
        ) {
            bail!(InvalidSetting::new("client-addr", self.client_addr, why));
        }
        let mut addrs = vec![
            ("client-addr", self.client_addr),
            ("raft-addr", self.raft_addr),
            ("http-addr", self.http_addr),
        ];
        if let Some(addr) = self.tls.as_ref().and_then(|t| t.addr) {
            addrs.push(("tls-port", addr));
        }
        for (i, (name, addr)) in addrs.iter().enumerate() {
            if addrs
                .iter()
                .skip(i + 1)
                .any(|(_, other)| other == addr && addr.port() != 0)
            {
                bail!(InvalidSetting::new(
                    name,
                    addr,
                    "is used by another listener of this node"
                ));
            }
        }
        Ok(())
    }

    /// True when the TLS listeners (the TLS client port, HTTPS) require a
    /// client certificate signed by the CA (`tls-auth-clients yes`). The
    /// plain client port, if reachable, is not covered by this.
    pub fn tls_verifies_clients(&self) -> bool {
        self.tls
            .as_ref()
            .is_some_and(|t| t.files.auth_clients == crate::tls::AuthClients::Yes)
    }

    /// True when the HTTP port speaks only TLS (`--http-tls yes`).
    pub fn http_tls(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.http)
    }

    /// The client TLS address advertised for member `id` (to TLS clients,
    /// in `MOVED` and `CLUSTER` replies): this node's own TLS listener, or
    /// the one `--initial-members` lists for another member.
    pub fn tls_client_addr(&self, id: NodeId) -> Option<SocketAddr> {
        let member = self.initial_members.get(&id);
        if id == self.node_id {
            // What the others advertise for this node when it is listed;
            // else the listener, with the advertised client IP if it
            // listens on every address (0.0.0.0 is no place to connect).
            let mut addr = self.tls.as_ref()?.addr?;
            if let Some(listed) = member.and_then(|m| m.tls_addr) {
                return Some(listed);
            }
            if addr.ip().is_unspecified() {
                if let Some(m) = member {
                    addr.set_ip(m.client_addr.ip());
                }
            }
            return Some(addr);
        }
        member.and_then(|m| m.tls_addr)
    }
}

/// The TLS settings: the port from `--tls-port` or, by default, from this
/// node's entry in `--initial-members`; HTTPS from `--http-tls`; files
/// from their flags, required when either serves TLS.
fn tls_settings(
    args: &NodeArgs,
    file: &FileSettings,
    client_addr: SocketAddr,
    me: Option<&Member>,
) -> anyhow::Result<Option<TlsSettings>> {
    let port = args
        .tls_port
        .or(file.tls_port)
        .or(me.and_then(|m| m.tls_addr).map(|a| a.port()));
    let cert = args.tls_cert_file.clone().or(file.tls_cert_file.clone());
    let key = args.tls_key_file.clone().or(file.tls_key_file.clone());
    let ca = args
        .tls_ca_cert_file
        .clone()
        .or(file.tls_ca_cert_file.clone());
    let auth = match args
        .tls_auth_clients
        .clone()
        .or(file.tls_auth_clients.clone())
    {
        Some(text) => crate::tls::AuthClients::parse(&text).ok_or_else(|| {
            InvalidSetting::new("tls-auth-clients", &text, "expected yes, no or optional")
        })?,
        None if ca.is_some() => crate::tls::AuthClients::Yes,
        None => crate::tls::AuthClients::No,
    };
    let http = args.http_tls.or(file.http_tls) == Some(YesNo::Yes);
    if port.is_none() && !http {
        if let Some(path) = cert.as_ref().or(key.as_ref()).or(ca.as_ref()) {
            bail!(InvalidSetting::new(
                "tls-port",
                "(none)",
                format!(
                    "TLS files are given ({}) but no tls-port (nor http-tls yes) to serve them on",
                    path.display()
                )
            ));
        }
        return Ok(None);
    }
    let (Some(cert_file), Some(key_file)) = (cert, key) else {
        // Name the listener that needs them: the TLS port if there is one.
        bail!(match port {
            Some(port) =>
                InvalidSetting::new("tls-port", port, "needs tls-cert-file and tls-key-file"),
            None => InvalidSetting::new(
                "http-tls",
                "yes",
                "needs tls-cert-file and tls-key-file (HTTPS serves the client TLS certificate)"
            ),
        });
    };
    if auth != crate::tls::AuthClients::No && ca.is_none() {
        bail!(InvalidSetting::new(
            "tls-auth-clients",
            auth.as_str(),
            "needs tls-ca-cert-file (the CA client certificates must chain to)"
        ));
    }
    Ok(Some(TlsSettings {
        addr: port.map(|port| SocketAddr::new(client_addr.ip(), port)),
        http,
        files: crate::tls::TlsFiles {
            cert_file,
            key_file,
            ca_cert_file: ca,
            auth_clients: auth,
        },
    }))
}

/// The Raft TLS files: all three flags, or none.
fn raft_tls_files(args: &NodeArgs, file: &FileSettings) -> anyhow::Result<Option<RaftTlsFiles>> {
    let cert = args
        .raft_tls_cert_file
        .clone()
        .or(file.raft_tls_cert_file.clone());
    let key = args
        .raft_tls_key_file
        .clone()
        .or(file.raft_tls_key_file.clone());
    let ca = args
        .raft_tls_ca_cert_file
        .clone()
        .or(file.raft_tls_ca_cert_file.clone());
    match (cert, key, ca) {
        (None, None, None) => Ok(None),
        (Some(cert_file), Some(key_file), Some(ca_cert_file)) => Ok(Some(RaftTlsFiles {
            cert_file,
            key_file,
            ca_cert_file,
        })),
        (cert, key, ca) => {
            let missing: Vec<&'static str> = [
                ("raft-tls-cert-file", cert.is_none()),
                ("raft-tls-key-file", key.is_none()),
                ("raft-tls-ca-cert-file", ca.is_none()),
            ]
            .into_iter()
            .filter_map(|(name, absent)| absent.then_some(name))
            .collect();
            bail!(InvalidSetting::new(
                missing.first().copied().unwrap_or("raft-tls-cert-file"),
                "(none)",
                format!(
                    "mutual TLS between nodes needs raft-tls-cert-file, raft-tls-key-file and \
                     raft-tls-ca-cert-file together; missing: {}",
                    missing.join(", ")
                )
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_match_the_design() {
        let s = Settings::from_args(&NodeArgs::default()).unwrap();
        assert_eq!(s.node_id, 1);
        assert_eq!(s.client_addr.to_string(), DEFAULT_CLIENT_ADDR);
        assert_eq!(s.raft_addr.to_string(), DEFAULT_RAFT_ADDR);
        assert_eq!(s.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
        assert_eq!(s.limits, Limits::default());
    }

    #[test]
    fn byte_sizes_parse_with_redis_units() {
        assert_eq!(parse_bytes("x", "0").unwrap(), 0);
        assert_eq!(parse_bytes("x", "512mb").unwrap(), 512 << 20);
        assert_eq!(parse_bytes("x", "1GB").unwrap(), 1 << 30);
        assert_eq!(parse_bytes("x", "10k").unwrap(), 10_000);
        assert_eq!(parse_bytes("x", "7b").unwrap(), 7);
        for bad in ["", "mb", "12tb", "-1", "1.5gb", "99999999999999999999gb"] {
            let err = parse_bytes("maxmemory-clients", bad).unwrap_err();
            assert!(err.to_string().contains("maxmemory-clients"), "{err}");
        }
        let args = NodeArgs {
            maxmemory_clients: Some("1000".into()),
            ..Default::default()
        };
        let err = Settings::from_args(&args).unwrap_err().to_string();
        assert!(err.contains("at least 1mb"), "{err}");
        let s = Settings::from_args(&NodeArgs::default()).unwrap();
        assert_eq!(
            s.maxmemory_clients,
            crate::client_memory::DEFAULT_MAXMEMORY_CLIENTS
        );
        assert_eq!(s.client_timeout, Duration::ZERO);
        assert_eq!(s.tcp_keepalive, Duration::from_secs(300));
    }

    #[test]
    fn raft_worker_threads_default_to_two_and_are_bounded() {
        let s = Settings::from_args(&NodeArgs::default()).unwrap();
        assert_eq!(s.raft_worker_threads, DEFAULT_RAFT_WORKER_THREADS);
        for (n, ok) in [(0, false), (1, true), (64, true), (65, false)] {
            let args = NodeArgs {
                raft_worker_threads: Some(n),
                ..Default::default()
            };
            match Settings::from_args(&args) {
                Ok(s) => assert!(ok && s.raft_worker_threads == n, "{n} accepted"),
                Err(e) => {
                    let e = e.to_string();
                    assert!(!ok && e.contains("raft-worker-threads"), "{n}: {e}");
                }
            }
        }
    }

    #[test]
    fn bad_settings_are_refused_by_name() {
        let args = NodeArgs {
            client_addr: Some("nonsense".into()),
            ..Default::default()
        };
        let err = Settings::from_args(&args).unwrap_err().to_string();
        assert!(
            err.contains("client-addr") && err.contains("nonsense"),
            "{err}"
        );

        let args = NodeArgs {
            heartbeat_interval_ms: Some(500),
            election_timeout_ms_min: Some(400),
            ..Default::default()
        };
        let err = Settings::from_args(&args).unwrap_err().to_string();
        assert!(err.contains("election-timeout-ms-min = 400"), "{err}");

        let args = NodeArgs {
            max_value_bytes: Some(0),
            ..Default::default()
        };
        let err = Settings::from_args(&args).unwrap_err().to_string();
        assert!(err.contains("max-value-bytes"), "{err}");
    }

    #[test]
    fn initial_members_parse_and_fill_in_this_nodes_addresses() {
        let text = "1=127.0.0.1:7379/127.0.0.1:6379, 2=127.0.0.1:7380/127.0.0.1:6380";
        let args = NodeArgs {
            node_id: Some(2),
            initial_members: Some(text.into()),
            ..Default::default()
        };
        let s = Settings::from_args(&args).unwrap();
        assert_eq!(s.initial_members.len(), 2);
        assert_eq!(s.client_addr.port(), 6380);
        assert_eq!(s.raft_addr.port(), 7380);

        let args = NodeArgs {
            node_id: Some(3),
            initial_members: Some(text.into()),
            ..Default::default()
        };
        let err = Settings::from_args(&args).unwrap_err().to_string();
        assert!(err.contains("node-id = 3"), "{err}");

        for bad in [
            "1=x/y",
            "1=127.0.0.1:1",
            "0=127.0.0.1:1/127.0.0.1:2",
            "1=127.0.0.1:1/127.0.0.1:2,1=127.0.0.1:3/127.0.0.1:4",
            "",
        ] {
            let err = parse_members(bad).unwrap_err();
            assert_eq!(err.name, "initial-members", "{bad}");
        }
    }

    #[test]
    fn protected_mode_refuses_an_open_address_without_a_password() {
        let open = NodeArgs {
            client_addr: Some("0.0.0.0:6379".into()),
            ..Default::default()
        };
        let err = Settings::from_args(&open).unwrap_err().to_string();
        assert!(
            err.contains("client-addr = 0.0.0.0:6379") && err.contains("--protected-mode no"),
            "{err}"
        );
        let with_password = NodeArgs {
            requirepass: Some("pw".into()),
            ..open
        };
        let s = Settings::from_args(&with_password).unwrap();
        assert_eq!(s.requirepass, PasswordDigest::of(b"pw"));
        assert!(s.protected_mode);
        let unprotected = NodeArgs {
            client_addr: Some("0.0.0.0:6379".into()),
            requirepass: Some(String::new()),
            protected_mode: Some(YesNo::No),
            ..Default::default()
        };
        let s = Settings::from_args(&unprotected).unwrap();
        assert_eq!(s.requirepass, None);
        assert!(!s.protected_mode);
    }

    #[test]
    fn raft_tls_needs_all_three_files_or_none() {
        assert!(Settings::from_args(&NodeArgs::default())
            .unwrap()
            .raft_tls
            .is_none());
        let two = NodeArgs {
            raft_tls_cert_file: Some("n.crt".into()),
            raft_tls_key_file: Some("n.key".into()),
            ..Default::default()
        };
        let err = format!("{:#}", Settings::from_args(&two).unwrap_err());
        assert!(err.contains("missing: raft-tls-ca-cert-file"), "{err}");
        let three = NodeArgs {
            raft_tls_ca_cert_file: Some("ca.crt".into()),
            ..two
        };
        let files = Settings::from_args(&three).unwrap().raft_tls.unwrap();
        assert_eq!(files.cert_file, PathBuf::from("n.crt"));
        assert_eq!(files.key_file, PathBuf::from("n.key"));
        assert_eq!(files.ca_cert_file, PathBuf::from("ca.crt"));
    }

    #[test]
    fn tls_settings_are_checked_and_default_from_the_member_list() {
        let files = |ca: bool| NodeArgs {
            tls_cert_file: Some("s.crt".into()),
            tls_key_file: Some("s.key".into()),
            tls_ca_cert_file: ca.then(|| "ca.crt".into()),
            ..Default::default()
        };
        // The TLS port is on the client address' IP.
        let s = Settings::from_args(&NodeArgs {
            tls_port: Some(6390),
            client_addr: Some("127.0.0.2:6379".into()),
            ..files(false)
        })
        .unwrap();
        let tls = s.tls.as_ref().unwrap();
        assert_eq!(tls.addr.unwrap().to_string(), "127.0.0.2:6390");
        assert!(!tls.http && !s.http_tls());
        assert_eq!(tls.files.auth_clients, crate::tls::AuthClients::No);
        assert!(!s.tls_verifies_clients());
        assert_eq!(s.tls_client_addr(1), tls.addr);
        // A CA makes client certificates required, as in Redis.
        let s = Settings::from_args(&NodeArgs {
            tls_port: Some(6390),
            ..files(true)
        })
        .unwrap();
        assert!(s.tls_verifies_clients());
        let s = Settings::from_args(&NodeArgs {
            tls_port: Some(6390),
            tls_auth_clients: Some("optional".into()),
            ..files(true)
        })
        .unwrap();
        assert!(!s.tls_verifies_clients());

        for (args, needle) in [
            (files(false), "no tls-port"),
            (
                NodeArgs {
                    tls_port: Some(6390),
                    ..Default::default()
                },
                "needs tls-cert-file",
            ),
            (
                NodeArgs {
                    tls_port: Some(6390),
                    tls_auth_clients: Some("yes".into()),
                    ..files(false)
                },
                "needs tls-ca-cert-file",
            ),
            (
                NodeArgs {
                    tls_port: Some(6390),
                    tls_auth_clients: Some("sometimes".into()),
                    ..files(false)
                },
                "tls-auth-clients = sometimes",
            ),
            (
                NodeArgs {
                    tls_port: Some(6379),
                    ..files(false)
                },
                "is used by another listener",
            ),
        ] {
            let err = Settings::from_args(&args).unwrap_err().to_string();
            assert!(err.contains(needle), "{needle}: {err}");
        }

        // Every member's TLS address comes from the list; this node's own
        // TLS port too, unless --tls-port says otherwise.
        let text = "1=127.0.0.1:7379/127.0.0.1:6379/127.0.0.1:6390,2=127.0.0.1:7380/127.0.0.1:6380/127.0.0.1:6391,3=127.0.0.1:7381/127.0.0.1:6381";
        let s = Settings::from_args(&NodeArgs {
            node_id: Some(2),
            initial_members: Some(text.into()),
            ..files(false)
        })
        .unwrap();
        assert_eq!(s.tls.as_ref().unwrap().addr.unwrap().port(), 6391);
        assert_eq!(s.tls_client_addr(1).unwrap().port(), 6390);
        assert_eq!(s.tls_client_addr(3), None);
        // Listening on every address: this node advertises its listed
        // client IP with the TLS port, as the others would reach it.
        let s = Settings::from_args(&NodeArgs {
            node_id: Some(1),
            initial_members: Some("1=127.0.0.1:7379/10.0.0.1:6379".into()),
            client_addr: Some("0.0.0.0:6379".into()),
            protected_mode: Some(YesNo::No),
            tls_port: Some(6390),
            ..files(false)
        })
        .unwrap();
        assert_eq!(s.tls_client_addr(1).unwrap().to_string(), "10.0.0.1:6390");
        assert!(parse_members("1=127.0.0.1:1/127.0.0.1:2/127.0.0.1:3/127.0.0.1:4").is_err());
        assert!(parse_members("1=127.0.0.1:1/127.0.0.1:2/x").is_err());
    }

    #[test]
    fn http_tls_serves_the_client_tls_files_with_or_without_a_tls_port() {
        let files = NodeArgs {
            tls_cert_file: Some("s.crt".into()),
            tls_key_file: Some("s.key".into()),
            ..Default::default()
        };
        assert!(!Settings::from_args(&NodeArgs::default())
            .unwrap()
            .http_tls());
        // HTTPS alone: no TLS client port, no TLS address advertised.
        let s = Settings::from_args(&NodeArgs {
            http_tls: Some(YesNo::Yes),
            ..files
        })
        .unwrap();
        let tls = s.tls.as_ref().unwrap();
        assert!(s.http_tls() && tls.addr.is_none());
        assert_eq!(tls.files.cert_file, PathBuf::from("s.crt"));
        assert_eq!(s.tls_client_addr(1), None);
        assert_eq!(s.initial_members[&1].tls_addr, None);
        // Both, with client certificates required on both.
        let s = Settings::from_args(&NodeArgs {
            http_tls: Some(YesNo::Yes),
            tls_port: Some(6390),
            tls_cert_file: Some("s.crt".into()),
            tls_key_file: Some("s.key".into()),
            tls_ca_cert_file: Some("ca.crt".into()),
            ..Default::default()
        })
        .unwrap();
        assert!(s.http_tls() && s.tls_verifies_clients());
        assert_eq!(s.tls.as_ref().unwrap().addr.unwrap().port(), 6390);
        // `no` is the default and changes nothing.
        let s = Settings::from_args(&NodeArgs {
            http_tls: Some(YesNo::No),
            ..Default::default()
        })
        .unwrap();
        assert!(s.tls.is_none());

        for (args, needle) in [
            (
                NodeArgs {
                    http_tls: Some(YesNo::Yes),
                    ..Default::default()
                },
                "invalid setting http-tls = yes: needs tls-cert-file and tls-key-file",
            ),
            (
                NodeArgs {
                    http_tls: Some(YesNo::Yes),
                    tls_cert_file: Some("s.crt".into()),
                    ..Default::default()
                },
                "invalid setting http-tls = yes: needs tls-cert-file and tls-key-file",
            ),
            (
                NodeArgs {
                    http_tls: Some(YesNo::Yes),
                    tls_port: Some(6390),
                    ..Default::default()
                },
                "invalid setting tls-port = 6390: needs tls-cert-file",
            ),
            (
                NodeArgs {
                    http_tls: Some(YesNo::Yes),
                    tls_auth_clients: Some("yes".into()),
                    tls_cert_file: Some("s.crt".into()),
                    tls_key_file: Some("s.key".into()),
                    ..Default::default()
                },
                "needs tls-ca-cert-file",
            ),
        ] {
            let err = Settings::from_args(&args).unwrap_err().to_string();
            assert!(err.contains(needle), "{needle}: {err}");
        }
    }

    #[test]
    fn http_tls_is_read_from_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seshat.toml");
        std::fs::write(
            &path,
            "http_tls = \"yes\"\ntls_cert_file = \"s.crt\"\ntls_key_file = \"s.key\"\n",
        )
        .unwrap();
        let args = NodeArgs {
            config: Some(path),
            ..Default::default()
        };
        assert!(Settings::from_args(&args).unwrap().http_tls());
    }

    #[test]
    fn join_takes_a_raft_address_and_no_id_or_members() {
        let args = NodeArgs {
            join: Some("127.0.0.1:7379".into()),
            ..Default::default()
        };
        let s = Settings::from_args(&args).unwrap();
        assert_eq!(s.join.as_deref(), Some("127.0.0.1:7379"));
        for bad in [
            NodeArgs {
                join: Some("nowhere".into()),
                ..Default::default()
            },
            NodeArgs {
                join: Some("127.0.0.1:7379".into()),
                node_id: Some(4),
                ..Default::default()
            },
            NodeArgs {
                join: Some("127.0.0.1:7379".into()),
                initial_members: Some("1=127.0.0.1:7379/127.0.0.1:6379".into()),
                ..Default::default()
            },
        ] {
            let err = Settings::from_args(&bad).unwrap_err().to_string();
            assert!(err.contains("join"), "{err}");
        }
    }

    #[test]
    fn file_values_apply_and_flags_override_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seshat.toml");
        std::fs::write(
            &path,
            "node_id = 7\nmax_clients = 5\nclient_addr = \"127.0.0.1:7000\"\n",
        )
        .unwrap();
        let args = NodeArgs {
            config: Some(path.clone()),
            max_clients: Some(9),
            ..Default::default()
        };
        let s = Settings::from_args(&args).unwrap();
        assert_eq!(s.node_id, 7);
        assert_eq!(s.max_clients, 9);
        assert_eq!(s.client_addr.port(), 7000);

        std::fs::write(&path, "no_such_setting = 1\n").unwrap();
        let args = NodeArgs {
            config: Some(path),
            ..Default::default()
        };
        let err = format!("{:#}", Settings::from_args(&args).unwrap_err());
        assert!(err.contains("no_such_setting"), "{err}");
    }
}
