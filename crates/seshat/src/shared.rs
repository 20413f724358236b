//! What every connection shares: the node, counters, metrics and the
//! proxy's clients.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Instant;

use crate::config::Settings;
use crate::groups::Groups;

/// Server-wide counters shown by INFO.
#[derive(Debug)]
pub struct ServerStats {
    /// When the server started.
    pub started: Instant,
    /// Connections accepted since start.
    pub total_connections: AtomicU64,
    /// Connections refused because of `max_clients`.
    pub rejected_connections: AtomicU64,
    /// Commands processed since start.
    pub total_commands: AtomicU64,
    /// Clients connected now.
    pub connected_clients: AtomicU64,
    /// Source of client ids (`CLIENT ID`).
    pub next_client_id: AtomicU64,
    /// Clients closed by the idle `timeout`.
    pub idle_timeouts: AtomicU64,
}

impl Default for ServerStats {
    fn default() -> Self {
        Self {
            started: Instant::now(),
            total_connections: AtomicU64::new(0),
            rejected_connections: AtomicU64::new(0),
            total_commands: AtomicU64::new(0),
            connected_clients: AtomicU64::new(0),
            next_client_id: AtomicU64::new(1),
            idle_timeouts: AtomicU64::new(0),
        }
    }
}

/// What every connection shares.
pub struct Shared {
    /// The validated settings.
    pub settings: Arc<Settings>,
    /// The node's data groups, which serve the requests.
    pub groups: Arc<Groups>,
    /// Counters.
    pub stats: ServerStats,
    /// Per-command counters and latencies.
    pub requests: crate::metrics::RequestMetrics,
    /// Clients to the leader for proxy mode.
    pub proxy: crate::proxy::Proxy,
    /// What this node's resharding coordinator has done.
    pub progress: crate::resharding::Progress,
    /// What this node's rebalancer has done.
    pub membership: crate::membership::Progress,
    /// Memory held for clients, against `maxmemory-clients`.
    pub client_memory: Arc<crate::client_memory::ClientMemory>,
    /// The password clients must give, and failed attempts.
    pub auth: crate::auth::Auth,
    /// The client TLS configuration of the TLS port and HTTPS, if either
    /// is on (reloaded by SIGHUP and `CONFIG SET tls-…-file`).
    pub tls: Option<Arc<crate::tls::TlsContext>>,
}
