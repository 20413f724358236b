//! The `INFO` command's text, section by section, named as Redis names
//! them, plus `raft` and `storage`.

use std::fmt::Write;
use std::sync::atomic::Ordering;

use bytes::Bytes;

use crate::shared::Shared;

/// The Redis version Seshat reports for client compatibility checks.
pub const REDIS_COMPAT_VERSION: &str = "7.2.0";

const SECTIONS: [&str; 8] = [
    "server",
    "clients",
    "stats",
    "replication",
    "raft",
    "storage",
    "cluster",
    "keyspace",
];

/// Renders the requested sections (all when none or `all`/`everything`
/// /`default` is asked for).
pub fn render(requested: &[Bytes], shared: &Shared) -> String {
    let wanted = |name: &str| {
        requested.is_empty()
            || requested.iter().any(|r| {
                r.eq_ignore_ascii_case(name.as_bytes())
                    || r.eq_ignore_ascii_case(b"all")
                    || r.eq_ignore_ascii_case(b"everything")
                    || r.eq_ignore_ascii_case(b"default")
            })
    };
    let mut out = String::new();
    for section in SECTIONS {
        if !wanted(section) {
            continue;
        }
        if !out.is_empty() {
            out.push_str("\r\n");
        }
        match section {
            "server" => server(&mut out, shared),
            "clients" => clients(&mut out, shared),
            "stats" => stats(&mut out, shared),
            "replication" => replication(&mut out, shared),
            "raft" => raft(&mut out, shared),
            "storage" => storage(&mut out, shared),
            // Cluster tools (`redis-cli --cluster`) check for it.
            "cluster" => cluster(&mut out, shared),
            _ => keyspace(&mut out, shared),
        }
    }
    // Not part of `all`: it reads every key. Chaos tests compare it
    // across replicas.
    if reads_every_key(requested) {
        if !out.is_empty() {
            out.push_str("\r\n");
        }
        digest(&mut out, shared);
    }
    out
}

/// Whether these `INFO` sections include the digest, which reads every
/// key.
pub fn reads_every_key(requested: &[Bytes]) -> bool {
    requested.iter().any(|r| r.eq_ignore_ascii_case(b"digest"))
}

/// `# Digest`: per group, the applied index and an FNV-1a hash of every
/// user key and value, each read from one consistent RocksDB view:
/// `storage_digest` for the first group (the only one of an unsharded
/// cluster), then `storage_digest_group_<id>` for every group of a sharded
/// one.
fn digest(out: &mut String, shared: &Shared) {
    out.push_str("# Digest\r\n");
    let groups = &shared.groups;
    let mut line = |name: String, group: u32| match seshat_raft::state_machine::state_digest(
        &groups.store,
        group,
    ) {
        Ok((applied, hash, keys)) => {
            let _ = write!(out, "{name}:{applied}:{hash:016x}:{keys}\r\n");
        }
        Err(e) => {
            let _ = write!(out, "{name}_error:{e}\r\n");
        }
    };
    line("storage_digest".into(), groups.first().group);
    if groups.layout.is_sharded() {
        for node in groups.all() {
            line(format!("storage_digest_group_{}", node.group), node.group);
        }
    }
}

fn server(out: &mut String, shared: &Shared) {
    let s = &shared.settings;
    let uptime = shared.stats.started.elapsed().as_secs();
    let _ = write!(
        out,
        "# Server\r\nredis_version:{REDIS_COMPAT_VERSION}\r\nseshat_version:{}\r\nredis_mode:cluster\r\n\
         os:{}\r\narch_bits:64\r\nprocess_id:{}\r\ntcp_port:{}\r\nuptime_in_seconds:{uptime}\r\n\
         uptime_in_days:{}\r\nnode_id:{}\r\n",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::OS,
        std::process::id(),
        s.client_addr.port(),
        uptime / 86_400,
        s.node_id,
    );
}

fn clients(out: &mut String, shared: &Shared) {
    let _ = write!(
        out,
        "# Clients\r\nconnected_clients:{}\r\nmaxclients:{}\r\nclient_recent_max_input_buffer:{}\r\nmem_clients_normal:{}\r\nmaxmemory_clients:{}\r\n",
        shared.stats.connected_clients.load(Ordering::Relaxed),
        shared.settings.max_clients,
        shared.client_memory.largest_input(),
        shared.client_memory.total(),
        shared.client_memory.limit(),
    );
}

fn stats(out: &mut String, shared: &Shared) {
    let st = &shared.stats;
    let _ = write!(
        out,
        "# Stats\r\ntotal_connections_received:{}\r\ntotal_commands_processed:{}\r\nrejected_connections:{}\r\nevicted_clients:{}\r\nacl_access_denied_auth:{}\r\nacl_access_denied_cmd:{}\r\nacl_access_denied_key:{}\r\nacl_access_denied_channel:0\r\n",
        st.total_connections.load(Ordering::Relaxed),
        st.total_commands.load(Ordering::Relaxed),
        st.rejected_connections.load(Ordering::Relaxed),
        shared.client_memory.evicted(),
        shared.auth.failures(),
        shared.auth.denied_commands(),
        shared.auth.denied_keys(),
    );
}

/// `cluster_enabled` (cluster tools check for it), then what the system
/// group recorded: the slot map's version (`pending` until the bootstrap
/// record has applied on this node) and whether this node's layout
/// matches the cluster's.
fn cluster(out: &mut String, shared: &Shared) {
    let _ = write!(out, "# Cluster\r\ncluster_enabled:1\r\n");
    let groups = &shared.groups;
    let version = match groups.system_records() {
        Ok(Some((_, table))) => table.map_version().to_string(),
        Ok(None) => "pending".to_string(),
        Err(e) => format!("unreadable ({e})").replace(['\r', '\n'], " "),
    };
    let _ = write!(
        out,
        "cluster_slot_map_version:{version}\r\ncluster_layout:{}\r\n",
        if groups.layout_conflict().is_some() {
            "conflict"
        } else {
            "ok"
        }
    );
    let booted = matches!(groups.node_instance(shared.settings.node_id), Ok(Some(i)) if i == groups.instance);
    let _ = write!(
        out,
        "cluster_boot_recorded:{}\r\n",
        if booted { "yes" } else { "no" }
    );
    out.push_str(&crate::resharding::info(shared));
    out.push_str(&crate::membership::info(shared));
}

fn replication(out: &mut String, shared: &Shared) {
    let m = shared.groups.first().metrics();
    let is_leader = m.current_leader == Some(m.id);
    let role = if is_leader { "master" } else { "slave" };
    let _ = write!(out, "# Replication\r\nrole:{role}\r\n");
    let nodes = m
        .membership_config
        .membership()
        .nodes()
        .map(|(id, n)| (*id, n.client_addr.clone()))
        .collect::<Vec<_>>();
    if is_leader {
        let replicas: Vec<_> = nodes.iter().filter(|(id, _)| *id != m.id).collect();
        let _ = write!(out, "connected_slaves:{}\r\n", replicas.len());
        for (i, (_, addr)) in replicas.iter().enumerate() {
            let (ip, port) = addr.rsplit_once(':').unwrap_or((addr.as_str(), "0"));
            let _ = write!(out, "slave{i}:ip={ip},port={port},state=online\r\n");
        }
    } else if let Some((_, addr)) = nodes.iter().find(|(id, _)| Some(*id) == m.current_leader) {
        let (ip, port) = addr.rsplit_once(':').unwrap_or((addr.as_str(), "0"));
        let _ = write!(
            out,
            "master_host:{ip}\r\nmaster_port:{port}\r\nmaster_link_status:up\r\n"
        );
    } else {
        let _ = write!(out, "master_link_status:down\r\n");
    }
    let _ = write!(
        out,
        "master_repl_offset:{}\r\n",
        m.last_applied.map_or(0, |l| l.index)
    );
}

fn raft(out: &mut String, shared: &Shared) {
    // The first group's figures under Redis-style names (the only data
    // group of an unsharded cluster; else the first this node holds);
    // one line per group after them, the system group's first.
    let node = shared.groups.first();
    let m = node.metrics();
    let (log_entries, purged) = node.log.stats().unwrap_or((0, None));
    let voters: Vec<String> = m
        .membership_config
        .membership()
        .voter_ids()
        .map(|id| id.to_string())
        .collect();
    let learners: Vec<String> = m
        .membership_config
        .membership()
        .learner_ids()
        .map(|id| id.to_string())
        .collect();
    // A stopped core left its metrics as they were: it leads nothing now.
    let stopped = node.core_problem();
    let (role, leader) = match &stopped {
        Some(_) => (openraft::ServerState::Shutdown, None),
        // `raft_leader_id` names the first data group's leader even on a
        // node that holds no replica of it (learnt from its peers), so
        // every node names the same one.
        None if node.group != seshat_kv::keys::DATA_GROUP => (
            m.state,
            shared.groups.leader_of(seshat_kv::keys::DATA_GROUP),
        ),
        None => (m.state, m.current_leader),
    };
    let _ = write!(
        out,
        "# Raft\r\nraft_node_id:{}\r\nraft_core:{}\r\nraft_role:{:?}\r\nraft_term:{}\r\nraft_leader_id:{}\r\n\
         raft_commit_index:{}\r\nraft_applied_index:{}\r\nraft_last_log_index:{}\r\n\
         raft_snapshot_index:{}\r\nraft_snapshot_bytes:{}\r\nraft_last_purged_index:{}\r\n\
         raft_log_entries_on_disk:{log_entries}\r\nraft_voters:{}\r\nraft_learners:{}\r\n",
        m.id,
        if stopped.is_some() { "stopped" } else { "running" },
        role,
        m.current_term,
        leader.map_or("none".to_string(), |l| l.to_string()),
        m.local_committed.map_or(0, |l| l.index),
        m.last_applied.map_or(0, |l| l.index),
        m.last_log_index.unwrap_or(0),
        node.sm_stats.snapshot_index.load(Ordering::Acquire),
        node.sm_stats.snapshot_bytes.load(Ordering::Acquire),
        purged.map_or("none".to_string(), |p| p.to_string()),
        voters.join(","),
        learners.join(","),
    );
    if let Some(reason) = stopped {
        // One line: the reason must not break INFO's `field:value` lines.
        let reason = reason.replace(['\r', '\n'], " ");
        let _ = write!(out, "raft_core_stop_reason:{reason}\r\n");
    }
    let _ = write!(out, "raft_groups:{}\r\n", shared.groups.all().len());
    for node in shared.groups.all() {
        let m = node.metrics();
        let running = node.core_problem().is_none();
        let _ = write!(
            out,
            "raft_group_{}:role={:?},term={},leader={},commit={},applied={},keys={}\r\n",
            node.group,
            if running {
                m.state
            } else {
                openraft::ServerState::Shutdown
            },
            m.current_term,
            m.current_leader
                .filter(|_| running)
                .map_or("none".to_string(), |l| l.to_string()),
            m.local_committed.map_or(0, |l| l.index),
            m.last_applied.map_or(0, |l| l.index),
            node.counts().keys,
        );
        let voters: Vec<String> = m
            .membership_config
            .membership()
            .voter_ids()
            .map(|v| v.to_string())
            .collect();
        let _ = write!(
            out,
            "raft_group_{}_voters:{}\r\n",
            node.group,
            voters.join(",")
        );
    }
    for (group, term, leader, age) in shared.groups.remote_leaders() {
        let _ = write!(
            out,
            "raft_remote_group_{group}:term={term},leader={},reported_ms_ago={}\r\n",
            leader.map_or("none".to_string(), |l| l.to_string()),
            age.as_millis()
        );
    }
}

fn storage(out: &mut String, shared: &Shared) {
    let store = &shared.groups.store;
    let pending = store
        .property_u64(
            seshat_storage::Cf::DataKv,
            "rocksdb.estimate-pending-compaction-bytes",
        )
        .ok()
        .flatten()
        .unwrap_or(0);
    let _ = write!(
        out,
        "# Storage\r\nstorage_engine:rocksdb\r\nstorage_db_dir_bytes:{}\r\nstorage_pending_compaction_bytes:{pending}\r\n\
         storage_healthy:{}\r\n",
        store.disk_size_bytes(),
        if store.poison_reason().is_none() { 1 } else { 0 },
    );
    let cache = store.key_cache_stats().unwrap_or_default();
    let _ = write!(
        out,
        "key_cache_max_bytes:{}\r\nkey_cache_bytes:{}\r\nkey_cache_entries:{}\r\n\
         key_cache_hits:{}\r\nkey_cache_misses:{}\r\n",
        cache.max_bytes, cache.bytes, cache.entries, cache.hits, cache.misses,
    );
}

fn keyspace(out: &mut String, shared: &Shared) {
    let counts = shared.groups.keyspace_counts();
    out.push_str("# Keyspace\r\n");
    if counts.keys > 0 {
        // avg_ttl is not tracked: Redis reports 0 too when it has no sample.
        let _ = write!(
            out,
            "db0:keys={},expires={},avg_ttl=0\r\n",
            counts.keys, counts.expiring
        );
    }
}
