//! `CLUSTER` replies: the Raft group presented as one Redis Cluster shard
//! that holds all 16384 slots, the leader as master and the other voters
//! as replicas, so cluster-aware clients route to the leader. A client on
//! the TLS port is given each member's TLS address where it is known
//! ([`Settings::tls_client_addr`](crate::config::Settings::tls_client_addr)),
//! as Redis gives TLS clients TLS ports.

use std::fmt::Write;
use std::net::SocketAddr;

use seshat_common::CLUSTER_SLOTS;
use seshat_protocol_resp::Frame;
use seshat_raft::SeshatNode;

use crate::node::Node;

/// The 40-character node name Redis Cluster uses, derived from the id.
pub fn node_name(id: u64) -> String {
    format!("{id:040x}")
}

struct Member {
    id: u64,
    addr: Option<SocketAddr>,
    client_addr: String,
    is_leader: bool,
}

/// Members in reply order: leader first, then the rest by id; with `tls`,
/// their TLS client addresses where known.
fn members(node: &Node, tls: bool) -> (Vec<Member>, Option<u64>, u64) {
    let metrics = node.metrics();
    let leader = metrics.current_leader;
    let mut out: Vec<Member> = metrics
        .membership_config
        .membership()
        .nodes()
        .map(|(id, n): (&u64, &SeshatNode)| Member {
            id: *id,
            addr: tls
                .then(|| node.settings.tls_client_addr(*id))
                .flatten()
                .or_else(|| n.client_addr.parse().ok()),
            client_addr: n.client_addr.clone(),
            is_leader: Some(*id) == leader,
        })
        .collect();
    out.sort_by_key(|m| (!m.is_leader, m.id));
    (out, leader, metrics.current_term)
}

fn host_port(m: &Member) -> (String, u16) {
    match m.addr {
        Some(a) => (a.ip().to_string(), a.port()),
        None => (m.client_addr.clone(), 0),
    }
}

/// `CLUSTER SLOTS`.
pub fn slots(node: &Node, tls: bool) -> Frame {
    let (members, leader, _) = members(node, tls);
    if leader.is_none() {
        return Frame::Array(vec![]);
    }
    let mut range = vec![
        Frame::Integer(0),
        Frame::Integer(i64::from(CLUSTER_SLOTS - 1)),
    ];
    for m in &members {
        let (host, port) = host_port(m);
        range.push(Frame::Array(vec![
            Frame::bulk(host),
            Frame::Integer(i64::from(port)),
            Frame::bulk(node_name(m.id)),
            Frame::Array(vec![]),
        ]));
    }
    Frame::Array(vec![Frame::Array(range)])
}

/// `CLUSTER SHARDS`.
pub fn shards(node: &Node, tls: bool) -> Frame {
    let (members, _, _) = members(node, tls);
    let applied = node
        .sm_stats
        .applied_index
        .load(std::sync::atomic::Ordering::Acquire);
    let nodes = members
        .iter()
        .map(|m| {
            let (host, port) = host_port(m);
            Frame::Map(vec![
                (Frame::bulk("id"), Frame::bulk(node_name(m.id))),
                (Frame::bulk("port"), Frame::Integer(i64::from(port))),
                (Frame::bulk("ip"), Frame::bulk(host.clone())),
                (Frame::bulk("endpoint"), Frame::bulk(host)),
                (
                    Frame::bulk("role"),
                    Frame::bulk(if m.is_leader { "master" } else { "replica" }),
                ),
                (
                    Frame::bulk("replication-offset"),
                    Frame::Integer(i64::try_from(applied).unwrap_or(0)),
                ),
                (Frame::bulk("health"), Frame::bulk("online")),
            ])
        })
        .collect();
    Frame::Array(vec![Frame::Map(vec![
        (
            Frame::bulk("slots"),
            Frame::Array(vec![
                Frame::Integer(0),
                Frame::Integer(i64::from(CLUSTER_SLOTS - 1)),
            ]),
        ),
        (Frame::bulk("nodes"), Frame::Array(nodes)),
    ])])
}

/// `CLUSTER NODES`.
pub fn nodes(node: &Node, tls: bool) -> String {
    let (members, leader, term) = members(node, tls);
    let me = node.settings.node_id;
    let mut out = String::new();
    for m in &members {
        let (host, port) = host_port(m);
        let role = if m.is_leader { "master" } else { "slave" };
        let flags = if m.id == me {
            format!("myself,{role}")
        } else {
            role.to_string()
        };
        let master = match (m.is_leader, leader) {
            (false, Some(l)) => node_name(l),
            _ => "-".to_string(),
        };
        let slots = if m.is_leader {
            format!(" 0-{}", CLUSTER_SLOTS - 1)
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "{} {host}:{port}@0 {flags} {master} 0 0 {term} connected{slots}",
            node_name(m.id)
        );
    }
    out
}

/// `CLUSTER INFO`.
pub fn info(node: &Node) -> String {
    let (members, leader, term) = members(node, false);
    let state = if leader.is_some() { "ok" } else { "fail" };
    let ok_slots = if leader.is_some() { CLUSTER_SLOTS } else { 0 };
    format!(
        "cluster_state:{state}\r\ncluster_slots_assigned:{CLUSTER_SLOTS}\r\ncluster_slots_ok:{ok_slots}\r\n\
         cluster_slots_pfail:0\r\ncluster_slots_fail:{}\r\ncluster_known_nodes:{}\r\ncluster_size:1\r\n\
         cluster_current_epoch:{term}\r\ncluster_my_epoch:{term}\r\n",
        CLUSTER_SLOTS - ok_slots,
        members.len()
    )
}
