//! File descriptors: checked against `RLIMIT_NOFILE` once at start, as
//! Redis's `adjustOpenFilesLimit` does.
//!
//! Every client takes a descriptor, and so does every file RocksDB opens
//! (WAL, tables, MANIFEST), every snapshot file and every peer connection.
//! Without a budget, idle clients could take the last descriptors and the
//! next WAL rotation or snapshot fail with `EMFILE` — which stops the Raft
//! core and poisons the store although the disk is fine (issue 18). So the
//! node reserves what it needs for itself, raises the soft limit when that
//! and `--max-clients` do not fit, and otherwise lowers max clients with a
//! warning; the clients beyond it get `-ERR max number of clients
//! reached`, never a descriptor the store needs.

use anyhow::bail;
use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

/// Descriptors the node needs besides clients, RocksDB and peers: stdio,
/// the listeners (client, TLS, Raft, HTTP), the runtimes' epolls and wakers, snapshot files
/// being written or read, `/metrics` scrapes and slack (32), and the
/// clients being refused at one time.
pub const BASE_RESERVED_FDS: usize = 32 + crate::server::REFUSALS_IN_FLIGHT;
/// Descriptors per other member: its two outgoing channels (replication
/// and heartbeats each have their own) and the two incoming ones, the
/// proxy's channel to it, a reconnect overlapping an old connection, a
/// snapshot file streamed to it, and one spare.
pub const FDS_PER_PEER: usize = 8;
/// Fewest clients a node starts with after lowering `--max-clients`.
pub const MIN_CLIENTS_AFTER_LOWERING: usize = 16;

/// Descriptors reserved for everything but clients.
pub fn reserved_fds(rocksdb_fds: usize, peers: usize) -> usize {
    BASE_RESERVED_FDS
        .saturating_add(rocksdb_fds)
        .saturating_add(FDS_PER_PEER.saturating_mul(peers))
}

/// What start-up decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Budget {
    /// The soft limit in force after start-up.
    pub limit: u64,
    /// Clients the node accepts (at most what was asked for).
    pub max_clients: usize,
}

/// Decides max clients from the soft limit in force (`limit`, after any
/// raise). Refuses when fewer than a handful of clients would fit.
pub fn plan(requested_clients: usize, reserved: usize, limit: u64) -> anyhow::Result<Budget> {
    let limit_fds = usize::try_from(limit).unwrap_or(usize::MAX);
    let fit = limit_fds.saturating_sub(reserved);
    let max_clients = requested_clients.min(fit);
    if max_clients < requested_clients.min(MIN_CLIENTS_AFTER_LOWERING) {
        let needed = reserved.saturating_add(requested_clients.min(MIN_CLIENTS_AFTER_LOWERING));
        bail!(
            "the open-file limit ({limit}) is too low to start: the node needs {reserved} \
             descriptors for storage, peers and listeners plus some for clients; raise it to \
             at least {needed} (`ulimit -n {needed}`, or LimitNOFILE= in a systemd unit)"
        );
    }
    Ok(Budget { limit, max_clients })
}

/// The soft limit to ask for: enough for `needed`, never above the hard
/// limit (`None`: unlimited).
pub fn limit_to_request(needed: usize, hard: Option<u64>) -> u64 {
    let needed = u64::try_from(needed).unwrap_or(u64::MAX);
    hard.map_or(needed, |hard| needed.min(hard))
}

/// Checks `RLIMIT_NOFILE` against `requested_clients` plus `reserved`,
/// raising the soft limit if it is short and lowering max clients (with a
/// warning) if the hard limit is short too.
pub fn adjust(requested_clients: usize, reserved: usize) -> anyhow::Result<Budget> {
    let needed = requested_clients.saturating_add(reserved);
    let current = getrlimit(Resource::Nofile);
    // `None` is RLIM_INFINITY.
    let Some(soft) = current.current else {
        return plan(requested_clients, reserved, u64::MAX);
    };
    let mut limit = soft;
    if usize::try_from(soft).is_ok_and(|soft| soft < needed) {
        let wanted = limit_to_request(needed, current.maximum);
        if wanted > soft {
            match setrlimit(
                Resource::Nofile,
                Rlimit {
                    current: Some(wanted),
                    maximum: current.maximum,
                },
            ) {
                Ok(()) => {
                    limit = wanted;
                    tracing::info!(from = soft, to = wanted, "raised the open-file limit");
                }
                Err(e) => tracing::warn!(
                    error = %e,
                    from = soft,
                    to = wanted,
                    "cannot raise the open-file limit"
                ),
            }
        }
    }
    let budget = plan(requested_clients, reserved, limit)?;
    if budget.max_clients < requested_clients {
        tracing::warn!(
            open_file_limit = limit,
            reserved_fds = reserved,
            max_clients_requested = requested_clients,
            max_clients = budget.max_clients,
            "the open-file limit is too low for --max-clients {requested_clients}: serving at most \
             {} clients; raise the limit to {needed} (`ulimit -n {needed}`) for all of them",
            budget.max_clients
        );
    }
    Ok(budget)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enough_descriptors_keep_max_clients() {
        let b = plan(10_000, 336, 20_000).unwrap();
        assert_eq!(b.max_clients, 10_000);
    }

    #[test]
    fn too_few_descriptors_lower_max_clients_to_what_fits() {
        let b = plan(10_000, 336, 1024).unwrap();
        assert_eq!(b.max_clients, 1024 - 336);
    }

    #[test]
    fn a_limit_that_fits_no_handful_of_clients_refuses_to_start() {
        let err = plan(10_000, 320, 330).unwrap_err().to_string();
        assert!(
            err.contains("330") && err.contains("ulimit -n 336"),
            "{err}"
        );
        // A small request is honoured as long as it fits whole.
        assert_eq!(plan(2, 320, 322).unwrap().max_clients, 2);
        assert!(plan(2, 320, 321).is_err());
    }

    #[test]
    fn the_raise_never_asks_beyond_the_hard_limit() {
        assert_eq!(limit_to_request(10_320, Some(4096)), 4096);
        assert_eq!(limit_to_request(10_320, Some(1 << 20)), 10_320);
        assert_eq!(limit_to_request(10_320, None), 10_320);
    }

    #[test]
    fn reserve_counts_rocksdb_and_every_peer() {
        assert_eq!(reserved_fds(288, 0), 336);
        assert_eq!(reserved_fds(288, 4), 368);
    }
}
