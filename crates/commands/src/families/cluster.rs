//! Redis Cluster commands. The replies describe the node's Raft groups, so
//! the server answers most of them; `CLUSTER KEYSLOT` needs only the key,
//! `COUNTKEYSINSLOT`/`GETKEYSINSLOT` read one slot of a group's keys (on a
//! sharded cluster they run on the groups this node leads, so a node that
//! does not serve the slot answers 0 / nothing, as in Redis Cluster).

use bytes::Bytes;
use seshat_common::crc16_slot;
use seshat_protocol_resp::Frame;

use crate::args::{arg, int};
use crate::decl::{data, Decl, Flags, Group, Handler, KeySpec, ServerCmd};
use crate::exec::Ctx;
use crate::reply::err;
use crate::reply::CmdResult;

const STALE: Flags = Flags::STALE;
const LOADING_STALE: Flags = Flags::LOADING.with(Flags::STALE);
const CONN_FAST: Flags = Flags::LOADING.with(Flags::STALE).with(Flags::FAST);

const fn cl(
    name: &'static str,
    arity: i32,
    flags: Flags,
    docs: (&'static str, &'static str),
    handler: Handler,
) -> Decl {
    Decl::new(
        name,
        arity,
        flags,
        KeySpec::NONE,
        Group::Cluster,
        docs,
        handler,
    )
}

const CLUSTER_SUBCOMMANDS: &[Decl] = &[
    cl(
        "cluster|cancelslotmigrations",
        2,
        Flags::ADMIN.with(Flags::STALE),
        (
            "Asks every slot migration in progress to abort (Valkey 9).",
            "9.0.0",
        ),
        Handler::Server(ServerCmd::ClusterCancelSlotMigrations),
    ),
    cl(
        "cluster|decommission",
        3,
        Flags::ADMIN.with(Flags::STALE),
        (
            "Moves every replica off a node, then removes it from the cluster (Seshat).",
            "7.0.0",
        ),
        Handler::Server(ServerCmd::ClusterDecommission),
    ),
    cl(
        "cluster|forget",
        3,
        Flags::ADMIN.with(Flags::STALE),
        (
            "Removes a node for good; its replicas are made again on the others (Seshat: cluster-wide).",
            "3.0.0",
        ),
        Handler::Server(ServerCmd::ClusterForget),
    ),
    cl(
        "cluster|getslotmigrations",
        2,
        STALE,
        (
            "Lists the slot migrations in progress and the last finished (Valkey 9).",
            "9.0.0",
        ),
        Handler::Server(ServerCmd::ClusterGetSlotMigrations),
    ),
    cl(
        "cluster|info",
        2,
        STALE,
        ("Returns information about the state of a node.", "3.0.0"),
        Handler::Server(ServerCmd::ClusterInfo),
    ),
    cl(
        "cluster|countkeysinslot",
        3,
        Flags::READONLY.with(Flags::STALE),
        ("Returns the number of keys in a hash slot.", "3.0.0"),
        data(countkeysinslot),
    ),
    cl(
        "cluster|getkeysinslot",
        4,
        Flags::READONLY.with(Flags::STALE),
        ("Returns the key names in a hash slot.", "3.0.0"),
        data(getkeysinslot),
    ),
    cl(
        "cluster|keyslot",
        3,
        STALE,
        ("Returns the hash slot for a key.", "3.0.0"),
        data(keyslot),
    ),
    cl(
        "cluster|members",
        2,
        STALE,
        (
            "Lists every node the cluster has had: id, state, addresses, leaderships (Seshat).",
            "7.0.0",
        ),
        Handler::Server(ServerCmd::ClusterMembers),
    ),
    cl(
        "cluster|migrateslots",
        -7,
        Flags::ADMIN.with(Flags::STALE),
        (
            "Moves slots to another shard while clients keep writing (Valkey 9's shape).",
            "9.0.0",
        ),
        Handler::Server(ServerCmd::ClusterMigrateSlots),
    ),
    cl(
        "cluster|myid",
        2,
        STALE,
        ("Returns the ID of a node.", "3.0.0"),
        Handler::Server(ServerCmd::ClusterMyId),
    ),
    cl(
        "cluster|nodes",
        2,
        STALE,
        ("Returns the cluster configuration for a node.", "3.0.0"),
        Handler::Server(ServerCmd::ClusterNodes),
    ),
    cl(
        "cluster|shards",
        2,
        LOADING_STALE,
        ("Returns the mapping of cluster slots to shards.", "7.0.0"),
        Handler::Server(ServerCmd::ClusterShards),
    ),
    cl(
        "cluster|slots",
        2,
        LOADING_STALE,
        ("Returns the mapping of cluster slots to nodes.", "3.0.0"),
        Handler::Server(ServerCmd::ClusterSlots),
    ),
];

/// The cluster commands.
pub static COMMANDS: &[Decl] = &[
    Decl::container(
        "cluster",
        Group::Cluster,
        ("A container for Redis Cluster commands.", "3.0.0"),
        CLUSTER_SUBCOMMANDS,
    ),
    cl(
        "readonly",
        1,
        CONN_FAST,
        (
            "Enables read-only queries for a connection to a Redis Cluster replica node.",
            "3.0.0",
        ),
        Handler::Server(ServerCmd::ReadOnly),
    ),
    cl(
        "readwrite",
        1,
        CONN_FAST,
        (
            "Enables read-write queries for a connection to a Redis Cluster replica node.",
            "3.0.0",
        ),
        Handler::Server(ServerCmd::ReadWrite),
    ),
    cl(
        "asking",
        1,
        Flags::FAST,
        (
            "Signals that a cluster client is following an -ASK redirect.",
            "3.0.0",
        ),
        Handler::Server(ServerCmd::Asking),
    ),
];

fn keyslot(_ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    Ok(Frame::Integer(i64::from(crc16_slot(arg(args, 2)?))))
}

/// Most keys `CLUSTER GETKEYSINSLOT` returns, whatever `count` asks.
const MAX_KEYS_IN_SLOT_REPLY: usize = 100_000;

/// The slot argument of `COUNTKEYSINSLOT`/`GETKEYSINSLOT`.
fn slot_arg(args: &[Bytes]) -> Result<u16, crate::reply::CmdError> {
    int(arg(args, 2)?)
        .ok()
        .and_then(|n| u16::try_from(n).ok())
        .filter(|n| *n < seshat_common::CLUSTER_SLOTS)
        .ok_or_else(|| err("ERR Invalid slot"))
}

/// Walks the keys of `slot` (a contiguous range of the group's keys),
/// giving each to `visit` until it returns false.
fn each_key_in_slot(
    ctx: &mut Ctx<'_>,
    slot: u16,
    mut visit: impl FnMut(&Bytes) -> bool,
) -> Result<(), crate::reply::CmdError> {
    let mut cursor = u64::from(slot) << 32;
    loop {
        let (next, found) = ctx
            .db
            .scan(cursor, 1024, |key, _| crc16_slot(key) == slot)?;
        for key in &found {
            if !visit(key) {
                return Ok(());
            }
        }
        if next == 0 || next >> 32 != u64::from(slot) {
            return Ok(());
        }
        cursor = next;
    }
}

fn countkeysinslot(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let slot = slot_arg(args)?;
    let mut n = 0i64;
    each_key_in_slot(ctx, slot, |_| {
        n += 1;
        true
    })?;
    Ok(Frame::Integer(n))
}

fn getkeysinslot(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let slot = slot_arg(args)?;
    let count = int(arg(args, 3)?)
        .ok()
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| err("ERR Invalid number of keys"))?
        .min(MAX_KEYS_IN_SLOT_REPLY);
    let mut out = Vec::new();
    if count > 0 {
        each_key_in_slot(ctx, slot, |key| {
            out.push(Frame::Bulk(key.clone()));
            out.len() < count
        })?;
    }
    Ok(Frame::Array(out))
}
