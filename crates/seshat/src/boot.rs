//! A node whose data directory was lost must not come back under its old
//! id: it would have forgotten the votes it cast and the entries it
//! acknowledged, and could help elect two leaders in one term or lose a
//! committed write. Every data directory gets a random *instance* id when
//! it is created; each node records the instance it first started with
//! in the system group (`SystemWrite::NodeBooted`, the first record
//! stays).
//!
//! - **At start**, a node with a new data directory asks its peers (the
//!   Raft port's forward RPC, internal command [`INTERNAL`]) which
//!   instance the system group recorded for its id. If one was recorded,
//!   this node started before with a directory that is gone: it refuses
//!   to start, before any Raft group runs, and says so.
//! - **After start**, [`run_boot_record`] records the instance (through
//!   the system group's leader) and checks it: a node that started while
//!   every peer was unreachable and then finds another instance recorded
//!   stops its Raft groups, serves no data and reports 503.
//!
//! A node whose peers are all down when it starts with a new directory
//! cannot be told apart from a new cluster's first node; such a node is
//! caught when the record reaches it.

use std::time::Duration;

use bytes::Bytes;
use seshat_kv::{SystemWrite, Write};
use seshat_protocol_resp::Frame;
use seshat_storage::{Batch, Cf, Store};

use crate::config::Settings;
use crate::proxy::Proxy;
use crate::shared::Shared;

/// The internal command of boot records between peers.
pub const INTERNAL: &str = "SESHAT.NODE";

/// The store key of this data directory's instance id.
const KEY_INSTANCE: &[u8] = b"instance";

/// How long a starting node waits for each peer's answer.
const ASK_TIMEOUT: Duration = Duration::from_secs(1);

/// How often the boot record is retried until it is in place.
const RECORD_INTERVAL: Duration = Duration::from_millis(500);

/// This data directory's instance id, created (and synced) if it has none
/// yet.
pub fn instance(store: &Store) -> anyhow::Result<u64> {
    if let Some(v) = store
        .get(Cf::SystemData, KEY_INSTANCE)
        .map_err(|e| anyhow::anyhow!("cannot read the data directory's instance id: {e}"))?
    {
        let bytes: [u8; 8] = <[u8; 8]>::try_from(&v[..])
            .map_err(|_| anyhow::anyhow!("the data directory's instance id is corrupt"))?;
        return Ok(u64::from_be_bytes(bytes));
    }
    let id = random_u64();
    let mut batch = Batch::default();
    batch.put(Cf::SystemData, KEY_INSTANCE, &id.to_be_bytes());
    store
        .write(batch, true)
        .map_err(|e| anyhow::anyhow!("cannot record the data directory's instance id: {e}"))?;
    Ok(id)
}

/// 64 random bits from the standard library's per-process random hash
/// keys, the clock and the process id (not a secret: it only has to
/// differ between two data directories of one node).
fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    h.write_u128(nanos);
    h.write_u32(std::process::id());
    h.finish()
}

/// Refuses to start a node with a new data directory (`instance`) whose
/// id the cluster has seen start before, as any reachable peer's replica
/// of the system group records it.
pub async fn check_new_directory(
    settings: &Settings,
    proxy: &Proxy,
    instance: u64,
) -> anyhow::Result<()> {
    let me = settings.node_id;
    let args = [
        Bytes::from_static(INTERNAL.as_bytes()),
        Bytes::from_static(b"INSTANCE"),
        Bytes::from(me.to_string()),
    ];
    let asks = settings
        .initial_members
        .iter()
        .filter(|(id, _)| **id != me)
        .map(|(id, m)| {
            let addr = m.raft_addr.to_string();
            let args = &args;
            async move { (*id, proxy.call(&addr, args, ASK_TIMEOUT, 1024).await) }
        });
    for (peer, answer) in futures::future::join_all(asks).await {
        if let Ok(Frame::Integer(recorded)) = answer {
            let recorded = u64::from_ne_bytes(recorded.to_ne_bytes());
            if recorded != instance {
                anyhow::bail!(
                    "node {me} started before with another data directory (node {peer} says the \
                     cluster recorded it), and {} is new: a node whose data was lost must not \
                     rejoin under its old id (it would forget its votes). Restore its data \
                     directory, or start it with a new --node-id once membership changes are \
                     supported",
                    settings.data_dir.display()
                );
            }
        }
    }
    Ok(())
}

/// Refuses to start a node the cluster removed, as any reachable peer (a
/// member the flags name, or the member `--join` names) knows it: its
/// replicas were made again elsewhere, and it must neither serve nor
/// take part in any group again.
pub async fn check_not_removed(settings: &Settings, proxy: &Proxy) -> anyhow::Result<()> {
    let me = settings.node_id;
    let args = [
        Bytes::from_static(INTERNAL.as_bytes()),
        Bytes::from_static(b"STATE"),
        Bytes::from(me.to_string()),
    ];
    let mut peers: Vec<String> = settings
        .initial_members
        .iter()
        .filter(|(id, _)| **id != me)
        .map(|(_, m)| m.raft_addr.to_string())
        .collect();
    peers.extend(settings.join.clone());
    let asks = peers.iter().map(|addr| {
        let args = &args;
        async move { (addr, proxy.call(addr, args, ASK_TIMEOUT, 1024).await) }
    });
    for (peer, answer) in futures::future::join_all(asks).await {
        if let Ok(Frame::Bulk(state)) = answer {
            if state.as_ref() == b"removed" {
                anyhow::bail!(
                    "node {me} was removed from the cluster (the member at {peer} says so): it                      may not run again. To use this machine again, start a new node with an                      empty data directory and --join"
                );
            }
        }
    }
    Ok(())
}

/// Serves a peer's [`INTERNAL`] command: `INSTANCE node` (the instance
/// this node's system replica records for `node`, nil if none),
/// `BOOTED node instance` (record it; this node must lead the system
/// group), `STATE node` (its state in the directory, nil if unknown),
/// `JOIN …` and `MEMBER op` ([`crate::membership`]).
pub async fn serve_internal(shared: &Shared, args: &[Bytes]) -> Frame {
    let sub = args.get(1).map(|a| a.to_ascii_uppercase());
    match sub.as_deref() {
        Some(b"JOIN") => return crate::membership::serve_join(shared, args).await,
        Some(b"MEMBER") => return crate::membership::serve_member_op(shared, args).await,
        Some(b"STATE") => {
            let id = args
                .get(2)
                .and_then(|a| std::str::from_utf8(a).ok())
                .and_then(|t| t.parse::<u64>().ok());
            return match id.and_then(|id| shared.groups.known_nodes().state(id)) {
                Some(state) => Frame::bulk(state.name()),
                None => Frame::Null,
            };
        }
        _ => {}
    }
    let text = |i: usize| args.get(i).and_then(|a| std::str::from_utf8(a).ok());
    let num = |i: usize| text(i).and_then(|t| t.parse::<u64>().ok());
    match (
        text(1).map(str::to_ascii_uppercase).as_deref(),
        num(2),
        num(3),
    ) {
        (Some("INSTANCE"), Some(node), _) => match shared.groups.node_instance(node) {
            Ok(Some(instance)) => Frame::Integer(i64::from_ne_bytes(instance.to_ne_bytes())),
            Ok(None) => Frame::Null,
            Err(e) => Frame::error(format!("ERR {e}")),
        },
        (Some("BOOTED"), Some(node), Some(instance)) => record(shared, node, instance).await,
        _ => Frame::error(format!("ERR {INTERNAL}: bad arguments")),
    }
}

/// Proposes the boot record on this node's system replica.
async fn record(shared: &Shared, node: u64, instance: u64) -> Frame {
    let write = Write::System(SystemWrite::NodeBooted { node, instance });
    shared
        .groups
        .system()
        .write(write, 0)
        .await
        .unwrap_or_else(|e| e.to_frame(&shared.settings, false))
}

/// Records this node's instance in the system group, then checks it
/// (see the module docs); ends once it is in place or refused.
pub async fn run_boot_record(shared: std::sync::Weak<Shared>, instance: u64) {
    loop {
        tokio::time::sleep(RECORD_INTERVAL).await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let groups = &shared.groups;
        let me = shared.settings.node_id;
        match groups.node_instance(me) {
            Ok(Some(recorded)) if recorded == instance => return,
            Ok(Some(_)) => {
                refuse(&shared).await;
                return;
            }
            Ok(None) => {}
            Err(e) => {
                tracing::error!(error = %e, "cannot read this node's boot record");
                return;
            }
        }
        let reply = if groups.system().raft.is_leader() {
            record(&shared, me, instance).await
        } else {
            let leader = groups.leader_of(seshat_raft::layout::SYSTEM_GROUP);
            let Some(member) = leader.and_then(|l| groups.member(l)) else {
                continue;
            };
            let args = [
                Bytes::from_static(INTERNAL.as_bytes()),
                Bytes::from_static(b"BOOTED"),
                Bytes::from(me.to_string()),
                Bytes::from(instance.to_string()),
            ];
            match shared
                .proxy
                .call(&member.raft_addr.to_string(), &args, ASK_TIMEOUT, 1024)
                .await
            {
                Ok(frame) => frame,
                Err(e) => Frame::error(e.to_string()),
            }
        };
        if let Frame::Error(e) = &reply {
            tracing::debug!(error = %String::from_utf8_lossy(e), "boot record not written yet");
        }
    }
}

/// Another data directory was recorded for this node: stop voting and
/// serving.
async fn refuse(shared: &Shared) {
    let why = format!(
        "node {} started before with another data directory: a node whose data was lost \
         must not rejoin under its old id; its Raft groups are stopped",
        shared.settings.node_id
    );
    tracing::error!("{why}");
    shared.groups.refuse(why);
    shared.groups.shutdown().await;
}
