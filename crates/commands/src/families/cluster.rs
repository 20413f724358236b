//! Redis Cluster commands. The replies describe the node's Raft group, so
//! the server answers most of them; `CLUSTER KEYSLOT` needs only the key.

use bytes::Bytes;
use seshat_common::crc16_slot;
use seshat_protocol_resp::Frame;

use crate::args::arg;
use crate::decl::{data, Decl, Flags, Group, Handler, KeySpec, ServerCmd};
use crate::exec::Ctx;
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
        "cluster|info",
        2,
        STALE,
        ("Returns information about the state of a node.", "3.0.0"),
        Handler::Server(ServerCmd::ClusterInfo),
    ),
    cl(
        "cluster|keyslot",
        3,
        STALE,
        ("Returns the hash slot for a key.", "3.0.0"),
        data(keyslot),
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
