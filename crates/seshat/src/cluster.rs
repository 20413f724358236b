//! `CLUSTER` replies: each data group is a Redis Cluster shard that holds
//! its slot range, its leader the master and the other voters replicas, so
//! cluster-aware clients route every key to the leader of its group.
//!
//! `CLUSTER SLOTS` and `CLUSTER SHARDS` list every group (`SLOTS` only
//! its leader when sharded, see [`slots`]). `CLUSTER NODES`
//! has one line per node: on an unsharded cluster the leader is the master
//! of all slots and the others its replicas; on a sharded one every node
//! is a master holding the slots of the groups it leads (a node can lead
//! one group and follow another, which Redis's node model cannot say, and
//! a follower cannot serve a group's slots anyway). Slots of a group
//! without a leader are listed nowhere: clients see them uncovered.
//!
//! Groups held elsewhere (a cluster larger than the replication factor)
//! are shown with the leader the node's peers report and the replicas
//! the layout placed.
//!
//! A client on the TLS port is given each member's TLS address where it
//! is known ([`Settings::tls_client_addr`](crate::config::Settings::tls_client_addr)),
//! as Redis gives TLS clients TLS ports.

use std::collections::BTreeMap;
use std::fmt::Write;

use seshat_common::CLUSTER_SLOTS;
use seshat_protocol_resp::Frame;

use crate::groups::Groups;

/// The 40-character node name Redis Cluster uses, derived from the id.
pub fn node_name(id: u64) -> String {
    format!("{id:040x}")
}

/// A node as clients are told to reach it.
struct Member {
    id: u64,
    host: String,
    port: u16,
}

/// One group as `CLUSTER` replies show it.
struct Shard {
    /// The group's slots as runs of the slot map, in order (none once
    /// every slot has moved away).
    slots: Vec<(u16, u16)>,
    leader: Option<u64>,
    /// Every voter, the leader first, then by id.
    voters: Vec<u64>,
    applied: u64,
}

/// What the replies are built from: the members' addresses, every
/// group's leader and voters, and the highest term (the epoch).
struct View {
    members: BTreeMap<u64, Member>,
    shards: Vec<Shard>,
    epoch: u64,
    sharded: bool,
}

fn view(groups: &Groups, tls: bool) -> View {
    let settings = &groups.settings;
    let me = settings.node_id;
    let members = groups
        .known_nodes()
        .nodes()
        .iter()
        .filter(|(_, n)| n.state != seshat_commands::members::NodeState::Removed)
        .map(|(id, n)| {
            let tls_addr = if *id == me {
                settings.tls_client_addr(me)
            } else {
                n.member.tls_addr
            };
            let addr = tls
                .then_some(tls_addr)
                .flatten()
                .unwrap_or(n.member.client_addr);
            (
                *id,
                Member {
                    id: *id,
                    host: addr.ip().to_string(),
                    port: addr.port(),
                },
            )
        })
        .collect();
    let mut epoch = 0;
    let mut shards = Vec::new();
    let runs = groups.with_slot_map(seshat_migration::SlotMap::runs);
    for g in groups.layout.groups() {
        let leader = groups.leader_of(g.id);
        let (mut voters, applied) = match groups.get(g.id) {
            Some(node) => {
                let m = node.metrics();
                epoch = epoch.max(m.current_term);
                let voters: Vec<u64> = m.membership_config.membership().voter_ids().collect();
                (voters, m.last_applied.map_or(0, |l| l.index))
            }
            // A group held elsewhere: its voters as its replicas report
            // them, else as placed at bootstrap.
            None => (
                groups.voters_of(g.id).unwrap_or_else(|| g.replicas.clone()),
                0,
            ),
        };
        // Reports of a group held elsewhere may be older than its
        // leader: the leader is always listed.
        if let Some(l) = leader.filter(|l| !voters.contains(l)) {
            voters.push(l);
        }
        voters.sort_by_key(|id| (Some(*id) != leader, *id));
        shards.push(Shard {
            slots: runs
                .iter()
                .filter(|(_, _, owner)| *owner == g.id)
                .map(|(first, last, _)| (*first, *last))
                .collect(),
            leader,
            voters,
            applied,
        });
    }
    View {
        members,
        shards,
        epoch,
        sharded: groups.layout.is_sharded(),
    }
}

fn slot_range((first, last): (u16, u16)) -> [Frame; 2] {
    [
        Frame::Integer(i64::from(first)),
        Frame::Integer(i64::from(last)),
    ]
}

/// `CLUSTER SLOTS`: every group with a leader, its leader first. On a
/// sharded cluster only the leader is listed: a node is a replica in one
/// group and the master of another, and clients that keep one role per
/// node (redis-py) would take a master for a replica.
pub fn slots(groups: &Groups, tls: bool) -> Frame {
    let v = view(groups, tls);
    let listed = if v.sharded { 1 } else { usize::MAX };
    let mut ranges: Vec<(u16, u16, &Shard)> = v
        .shards
        .iter()
        .filter(|s| s.leader.is_some())
        .flat_map(|s| s.slots.iter().map(move |(a, b)| (*a, *b, s)))
        .collect();
    ranges.sort_by_key(|(first, _, _)| *first);
    let entries = ranges
        .into_iter()
        .filter_map(|(first, last, s)| {
            // The leader first (even when the voters reported for a group
            // held elsewhere are older than its leader), then the other
            // voters; a range whose leader is no known member is left out
            // rather than listed without a master (redis-py fails on one).
            let others = s.voters.iter().copied().filter(|id| Some(*id) != s.leader);
            let ids = s.leader.into_iter().chain(others).take(listed);
            let nodes: Vec<&Member> = ids.filter_map(|id| v.members.get(&id)).collect();
            if nodes.first().map(|m| Some(m.id)) != Some(s.leader) {
                return None;
            }
            let mut entry = slot_range((first, last)).to_vec();
            entry.extend(nodes.into_iter().map(|m| {
                Frame::Array(vec![
                    Frame::bulk(m.host.clone()),
                    Frame::Integer(i64::from(m.port)),
                    Frame::bulk(node_name(m.id)),
                    Frame::Array(vec![]),
                ])
            }));
            Some(Frame::Array(entry))
        })
        .collect();
    Frame::Array(entries)
}

/// `CLUSTER SHARDS`: one entry per group, the leader as master.
pub fn shards(groups: &Groups, tls: bool) -> Frame {
    let v = view(groups, tls);
    let entries = v
        .shards
        .iter()
        .map(|s| {
            let nodes = s
                .voters
                .iter()
                .filter_map(|id| v.members.get(id))
                .map(|m| {
                    let leads = s.leader == Some(m.id);
                    Frame::Map(vec![
                        (Frame::bulk("id"), Frame::bulk(node_name(m.id))),
                        (Frame::bulk("port"), Frame::Integer(i64::from(m.port))),
                        (Frame::bulk("ip"), Frame::bulk(m.host.clone())),
                        (Frame::bulk("endpoint"), Frame::bulk(m.host.clone())),
                        (
                            Frame::bulk("role"),
                            Frame::bulk(if leads { "master" } else { "replica" }),
                        ),
                        (
                            Frame::bulk("replication-offset"),
                            Frame::Integer(i64::try_from(s.applied).unwrap_or(0)),
                        ),
                        (
                            Frame::bulk("health"),
                            Frame::bulk(if s.leader.is_some() { "online" } else { "fail" }),
                        ),
                    ])
                })
                .collect();
            Frame::Map(vec![
                (
                    Frame::bulk("slots"),
                    Frame::Array(s.slots.iter().flat_map(|r| slot_range(*r)).collect()),
                ),
                (Frame::bulk("nodes"), Frame::Array(nodes)),
            ])
        })
        .collect();
    Frame::Array(entries)
}

/// `CLUSTER NODES`.
pub fn nodes(groups: &Groups, tls: bool) -> String {
    let v = view(groups, tls);
    let me = groups.settings.node_id;
    // On an unsharded cluster the one group's leader is every follower's
    // master; on a sharded one nobody is anybody's replica.
    let master_of_all = (!v.sharded)
        .then(|| v.shards.first().and_then(|s| s.leader))
        .flatten();
    let mut out = String::new();
    for m in v.members.values() {
        let led: Vec<&Shard> = v.shards.iter().filter(|s| s.leader == Some(m.id)).collect();
        let is_replica = master_of_all.is_some_and(|l| l != m.id);
        let role = if is_replica { "slave" } else { "master" };
        let flags = if m.id == me {
            format!("myself,{role}")
        } else {
            role.to_string()
        };
        let master = match master_of_all {
            Some(l) if is_replica => node_name(l),
            _ => "-".to_string(),
        };
        let mut slots = String::new();
        let mut runs: Vec<(u16, u16)> = led.iter().flat_map(|s| s.slots.iter().copied()).collect();
        runs.sort_unstable();
        for (first, last) in runs {
            if first == last {
                let _ = write!(slots, " {first}");
            } else {
                let _ = write!(slots, " {first}-{last}");
            }
        }
        if m.id == me {
            migrating_marks(groups, me, &mut slots);
        }
        let _ = writeln!(
            out,
            "{} {}:{}@0 {flags} {master} 0 0 {} connected{slots}",
            node_name(m.id),
            m.host,
            m.port,
            v.epoch
        );
    }
    out
}

/// Redis's marks of slots in migration on the `myself` line of `CLUSTER
/// NODES`: `[slot->-node]` for each slot this node's led group is giving
/// away, `[slot-<-node]` for each one it is taking, naming the other
/// group's leader.
fn migrating_marks(groups: &Groups, me: u64, out: &mut String) {
    let Some(table) = groups.system_table() else {
        return;
    };
    for record in table.active() {
        let m = &record.migration;
        let (source, target) = (groups.leader_of(m.source), groups.leader_of(m.target));
        let (arrow, other) = if source == Some(me) {
            ("->-", target)
        } else if target == Some(me) {
            ("-<-", source)
        } else {
            continue;
        };
        let Some(other) = other else {
            continue;
        };
        for slot in m.slots.slots() {
            let _ = write!(out, " [{slot}{arrow}{}]", node_name(other));
        }
    }
}

/// `CLUSTER INFO`.
pub fn info(groups: &Groups) -> String {
    let v = view(groups, false);
    let ok_slots: u32 = v
        .shards
        .iter()
        .filter(|s| s.leader.is_some())
        .flat_map(|s| s.slots.iter())
        .map(|(first, last)| u32::from(*last) - u32::from(*first) + 1)
        .sum();
    let state = if ok_slots == u32::from(CLUSTER_SLOTS) {
        "ok"
    } else {
        "fail"
    };
    let masters: std::collections::BTreeSet<u64> =
        v.shards.iter().filter_map(|s| s.leader).collect();
    format!(
        "cluster_state:{state}\r\ncluster_slots_assigned:{CLUSTER_SLOTS}\r\ncluster_slots_ok:{ok_slots}\r\n\
         cluster_slots_pfail:0\r\ncluster_slots_fail:{}\r\ncluster_known_nodes:{}\r\ncluster_size:{}\r\n\
         cluster_current_epoch:{}\r\ncluster_my_epoch:{}\r\n",
        u32::from(CLUSTER_SLOTS) - ok_slots,
        v.members.len(),
        masters.len().max(1),
        v.epoch,
        v.epoch,
    )
}
