//! Dynamic membership: nodes join a running cluster, replicas move between
//! nodes, nodes are decommissioned or replaced.
//!
//! - **The directory** of nodes (ids, addresses, states) is a record of
//!   the system group ([`seshat_commands::members`]). Every node reads it
//!   from its own system replica ([`run_directory_refresh`]); `MOVED`
//!   replies, `CLUSTER` replies and peer calls use it, so a node that
//!   joined is known everywhere once the record reaches each node.
//! - **Join** ([`join`]): a node started with `--join RAFT_ADDR` and an
//!   empty data directory asks that member for an id (`SESHAT.NODE JOIN`,
//!   forwarded to the system group's leader, which records the node and
//!   adds it to the system group as a learner). The id and the cluster's
//!   layout are kept in the data directory; a wiped directory joins again
//!   as a new node, never under its old id.
//! - **Hosted replicas** ([`Hosted`]): each node records which groups it
//!   holds a replica of, so a restart reopens the replicas it was given
//!   and not the ones taken away.
//! - **Replica moves** are run by the rebalancer ([`run_rebalancer`]) on
//!   the system group's leader: it observes every group at its leader and
//!   every node's hosted replicas, asks the pure planner
//!   ([`seshat_membership::plan`]) what to do, and does it through peer
//!   operations (`SESHAT.REPLICA`, [`serve_replica`]): open an empty
//!   replica, add it as a learner, promote it through joint consensus
//!   once caught up, hand the leadership away from a replica about to go,
//!   remove it, and drop its data on its node (which keeps its vote as a
//!   tombstone, see [`seshat_raft::NodeStorage::destroy_group`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use seshat_commands::members::{Addresses, Directory, MemberOp, NodeState};
use seshat_kv::{SystemWrite, Write};
use seshat_protocol_resp::Frame;
use seshat_raft::layout::SYSTEM_GROUP;
use seshat_raft::SeshatNode;
use seshat_storage::{Batch, Cf, Store};

use crate::config::{Member, Settings};
use crate::groups::Groups;
use crate::layout::Layout;
use crate::node::Node;
use crate::proxy::Proxy;
use crate::shared::Shared;

/// The internal command of replica operations between peers.
pub const INTERNAL: &str = "SESHAT.REPLICA";

/// Store key of the groups this node hosts.
const KEY_HOSTED: &[u8] = b"hosted";
/// Store key of this node's id and cluster layout, once it has joined.
const KEY_JOINED: &[u8] = b"joined";

/// How long a peer has to answer a replica operation.
const PEER_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest reply of a peer operation.
const MAX_PEER_REPLY_BYTES: usize = 64 * 1024;
/// How long a joining node keeps asking before it gives up.
const JOIN_PATIENCE: Duration = Duration::from_secs(60);
/// How often a node reads the directory from its system replica.
const DIRECTORY_INTERVAL: Duration = Duration::from_millis(500);
/// How often the rebalancer looks at the cluster.
const REBALANCE_INTERVAL: Duration = Duration::from_millis(500);
/// Most entries a learner may lag behind its leader and count as caught
/// up (promoted).
const CAUGHT_UP_LAG: u64 = 64;

// ---------------------------------------------------------------------
// The directory as this node knows it

/// One node as this node knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownNode {
    /// Its addresses.
    pub member: Member,
    /// Its state (`Active` for members known only from the flags).
    pub state: NodeState,
}

/// Every node this node knows of: the flags' members, overlaid by the
/// system group's directory once it has reached this node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Known {
    nodes: BTreeMap<u64, KnownNode>,
}

impl Known {
    /// The members the flags name (`--initial-members`, or this node).
    pub fn from_flags(settings: &Settings) -> Known {
        Known {
            nodes: settings
                .initial_members
                .iter()
                .map(|(id, m)| {
                    (
                        *id,
                        KnownNode {
                            member: m.clone(),
                            state: NodeState::Active,
                        },
                    )
                })
                .collect(),
        }
    }

    /// The flags' members overlaid by the recorded directory.
    pub fn with_directory(settings: &Settings, dir: &Directory) -> Known {
        let mut known = Known::from_flags(settings);
        for n in dir.nodes.values() {
            let parse = |a: &str| a.parse::<std::net::SocketAddr>().ok();
            let (Some(raft_addr), Some(client_addr)) =
                (parse(&n.addrs.raft), parse(&n.addrs.client))
            else {
                continue;
            };
            known.nodes.insert(
                n.id,
                KnownNode {
                    member: Member {
                        raft_addr,
                        client_addr,
                        tls_addr: n.addrs.tls.as_deref().and_then(parse),
                    },
                    state: n.state,
                },
            );
        }
        known
    }

    /// Node `id`'s addresses.
    pub fn member(&self, id: u64) -> Option<Member> {
        self.nodes.get(&id).map(|n| n.member.clone())
    }

    /// Node `id`'s state, if known.
    pub fn state(&self, id: u64) -> Option<NodeState> {
        self.nodes.get(&id).map(|n| n.state)
    }

    /// Every node known, by id.
    pub fn nodes(&self) -> &BTreeMap<u64, KnownNode> {
        &self.nodes
    }

    /// The addresses of every node but `me` that has not been removed.
    pub fn peers(&self, me: u64) -> impl Iterator<Item = &Member> {
        self.nodes
            .iter()
            .filter(move |(id, n)| **id != me && n.state != NodeState::Removed)
            .map(|(_, n)| &n.member)
    }
}

/// The directory as this node's system replica has applied it.
pub fn recorded_directory(groups: &Groups) -> Result<Directory, seshat_kv::KvError> {
    groups.read_system(seshat_commands::members::directory)
}

/// How often a node asks its peers whether the cluster removed it.
const REMOVED_CHECK_INTERVAL: Duration = Duration::from_secs(3);

/// Whether any reachable peer's directory says this node was removed. A
/// node taken out of the system group is not told so (its leader just
/// stops sending to it, and its elections are refused), so its own
/// directory may never say it; a peer's "removed" is final and decided by
/// the system group, so one is enough.
async fn removed_say_peers(groups: &Groups, proxy: &Proxy) -> bool {
    let me = groups.settings.node_id;
    let args = [
        Bytes::from_static(crate::boot::INTERNAL.as_bytes()),
        Bytes::from_static(b"STATE"),
        Bytes::from(me.to_string()),
    ];
    let known = groups.known_nodes();
    let asks = known.peers(me).map(|peer| {
        let addr = peer.raft_addr.to_string();
        let args = &args;
        async move { proxy.call(&addr, args, Duration::from_secs(1), 1024).await }
    });
    futures::future::join_all(asks)
        .await
        .into_iter()
        .any(|a| matches!(a, Ok(Frame::Bulk(s)) if s.as_ref() == b"removed"))
}

/// Keeps [`Groups::known_nodes`] up to date with the system group's
/// directory, and stops a node the cluster removed: it must not serve or
/// vote again. A node taken out of the system group no longer receives
/// the directory; it asks its peers instead.
pub async fn run_directory_refresh(groups: std::sync::Weak<Groups>, proxy: Proxy) {
    let mut tick = tokio::time::interval(DIRECTORY_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut asked: Option<Instant> = None;
    loop {
        tick.tick().await;
        let Some(groups) = groups.upgrade() else {
            return;
        };
        let dir = match recorded_directory(&groups) {
            Ok(dir) => dir,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the node directory");
                continue;
            }
        };
        let known = Known::with_directory(&groups.settings, &dir);
        let me = groups.settings.node_id;
        let mut removed = known.state(me) == Some(NodeState::Removed);
        if !removed && asked.is_none_or(|t| t.elapsed() > REMOVED_CHECK_INTERVAL) {
            asked = Some(Instant::now());
            removed = removed_say_peers(&groups, &proxy).await;
        }
        if known != groups.known_nodes() {
            groups.set_directory(known);
        }
        if removed && groups.layout_conflict().is_none() {
            let why = format!(
                "node {me} was removed from the cluster: it serves nothing and takes no part \
                 in any group (start a new node with an empty data directory and --join to \
                 add this machine again)"
            );
            tracing::error!("{why}");
            groups.mark_removed(why);
            groups.shutdown().await;
            return;
        }
    }
}

// ---------------------------------------------------------------------
// Hosted replicas

/// The groups this node holds a replica of, as its data directory records
/// them: each with whether it was placed here when the cluster was
/// bootstrapped (only such a replica may initialise its group).
pub struct Hosted {
    groups: BTreeMap<u32, bool>,
}

impl Hosted {
    fn read(store: &Store) -> anyhow::Result<Option<BTreeMap<u32, bool>>> {
        let Some(bytes) = store
            .get(Cf::SystemData, KEY_HOSTED)
            .map_err(|e| anyhow::anyhow!("cannot read the hosted replicas: {e}"))?
        else {
            return Ok(None);
        };
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let mut groups = BTreeMap::new();
        for item in text.split(',').filter(|i| !i.is_empty()) {
            let (g, origin) = item
                .split_once(':')
                .with_context(|| format!("unreadable hosted replicas record {text:?}"))?;
            let g: u32 = g
                .parse()
                .with_context(|| format!("unreadable hosted replicas record {text:?}"))?;
            groups.insert(g, origin == "initial");
        }
        Ok(Some(groups))
    }

    fn write(store: &Store, groups: &BTreeMap<u32, bool>) -> anyhow::Result<()> {
        let text: Vec<String> = groups
            .iter()
            .map(|(g, initial)| format!("{g}:{}", if *initial { "initial" } else { "added" }))
            .collect();
        let mut batch = Batch::default();
        batch.put(Cf::SystemData, KEY_HOSTED, text.join(",").as_bytes());
        store
            .write(batch, true)
            .map_err(|e| anyhow::anyhow!("cannot record the hosted replicas: {e}"))
    }

    /// The recorded replicas; on a first start, the layout's placement
    /// for `me` (the system group and the data groups placed here; a node
    /// that joined holds only the system group, as a learner), recorded.
    pub fn open(store: &Store, layout: &Layout, me: u64) -> anyhow::Result<Hosted> {
        if let Some(groups) = Self::read(store)? {
            return Ok(Hosted { groups });
        }
        let bootstrap = layout.members().contains(&me);
        let mut groups = BTreeMap::from([(SYSTEM_GROUP, bootstrap)]);
        for g in layout.groups_of(me) {
            groups.insert(g.id, true);
        }
        Self::write(store, &groups)?;
        Ok(Hosted { groups })
    }

    /// The groups, each with whether it was placed here at bootstrap.
    pub fn groups(&self) -> impl Iterator<Item = (u32, bool)> + '_ {
        self.groups.iter().map(|(g, i)| (*g, *i))
    }

    /// Records a replica of `group` added while the cluster runs.
    pub fn add(store: &Store, group: u32) -> anyhow::Result<()> {
        let mut groups = Self::read(store)?.unwrap_or_default();
        groups.insert(group, false);
        Self::write(store, &groups)
    }

    /// Forgets the replica of `group`.
    pub fn remove(store: &Store, group: u32) -> anyhow::Result<()> {
        let mut groups = Self::read(store)?.unwrap_or_default();
        groups.remove(&group);
        Self::write(store, &groups)
    }
}

// ---------------------------------------------------------------------
// Join

/// What a node that joined knows before its groups start.
pub struct Joined {
    /// The settings with the id the cluster gave it.
    pub settings: Settings,
    /// The cluster's layout record.
    pub layout: String,
}

/// The id and layout of a node started with `--join`: from its data
/// directory if it joined before, else asked of the member `--join`
/// names (retried for up to [`JOIN_PATIENCE`]) and recorded.
pub async fn join(
    settings: &Settings,
    proxy: &Proxy,
    store: &Store,
    instance: u64,
) -> anyhow::Result<Joined> {
    let joined = |id: u64, layout: String| {
        let mut s = settings.clone();
        s.node_id = id;
        s.initial_members = BTreeMap::from([(
            id,
            Member {
                raft_addr: settings.raft_addr,
                client_addr: settings.client_addr,
                tls_addr: settings.tls.as_ref().and_then(|t| t.addr),
            },
        )]);
        Joined {
            settings: s,
            layout,
        }
    };
    if let Some(bytes) = store
        .get(Cf::SystemData, KEY_JOINED)
        .map_err(|e| anyhow::anyhow!("cannot read the join record: {e}"))?
    {
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let (id, layout) = text
            .split_once('\n')
            .and_then(|(id, l)| Some((id.parse::<u64>().ok()?, l.to_string())))
            .with_context(|| format!("unreadable join record {text:?}"))?;
        return Ok(joined(id, layout));
    }
    if Layout::is_recorded(store)? {
        anyhow::bail!(
            "{} holds a node of a cluster it did not join (started with --initial-members): \
             start it as it was started before, without --join",
            settings.data_dir.display()
        );
    }
    let target = settings.join.clone().unwrap_or_default();
    let tls = settings
        .tls
        .as_ref()
        .and_then(|t| t.addr)
        .map_or_else(|| "-".to_string(), |a| a.to_string());
    let args = [
        Bytes::from_static(crate::boot::INTERNAL.as_bytes()),
        Bytes::from_static(b"JOIN"),
        Bytes::from(instance.to_string()),
        Bytes::from(settings.raft_addr.to_string()),
        Bytes::from(settings.client_addr.to_string()),
        Bytes::from(tls),
    ];
    let deadline = Instant::now() + JOIN_PATIENCE;
    let (id, layout) = loop {
        let answer = proxy
            .call(&target, &args, PEER_TIMEOUT, MAX_PEER_REPLY_BYTES)
            .await;
        let why = match answer {
            Ok(Frame::Array(items)) => match &items[..] {
                [Frame::Integer(id), Frame::Bulk(layout)] if *id > 0 => {
                    break (
                        u64::try_from(*id).unwrap_or(0),
                        String::from_utf8_lossy(layout).into_owned(),
                    )
                }
                _ => "an unreadable answer".to_string(),
            },
            Ok(Frame::Error(e)) => {
                let e = String::from_utf8_lossy(&e).into_owned();
                if e.starts_with("ERR ") {
                    anyhow::bail!("the cluster at {target} refused this node: {e}");
                }
                e
            }
            Ok(other) => format!("an unexpected answer {other:?}"),
            Err(e) => e.to_string(),
        };
        if Instant::now() > deadline {
            anyhow::bail!(
                "cannot join the cluster at {target} (--join): {why}; is it a member's Raft address?"
            );
        }
        tracing::info!(%target, reason = %why, "not joined yet; retrying");
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let mut batch = Batch::default();
    batch.put(
        Cf::SystemData,
        KEY_JOINED,
        format!("{id}\n{layout}").as_bytes(),
    );
    store
        .write(batch, true)
        .map_err(|e| anyhow::anyhow!("cannot record the join: {e}"))?;
    tracing::info!(node_id = id, %target, "joined the cluster");
    Ok(joined(id, layout))
}

/// Serves `SESHAT.NODE JOIN instance raft client tls`: on the system
/// group's leader, records the node (or finds it recorded) and adds it to
/// the system group as a learner; elsewhere, forwarded to that leader.
/// Replies `[id, layout]`.
pub async fn serve_join(shared: &Shared, args: &[Bytes]) -> Frame {
    let groups = &shared.groups;
    let system = groups.system().clone();
    if !system.raft.is_leader() {
        return call_system_leader(shared, args).await;
    }
    let text = |i: usize| {
        args.get(i)
            .and_then(|a| std::str::from_utf8(a).ok())
            .unwrap_or("")
    };
    let Ok(instance) = text(2).parse::<u64>() else {
        return Frame::error("ERR JOIN: bad instance");
    };
    let addrs = Addresses {
        raft: text(3).to_string(),
        client: text(4).to_string(),
        tls: (text(5) != "-" && !text(5).is_empty()).then(|| text(5).to_string()),
    };
    let op = MemberOp::Join {
        instance,
        addrs: addrs.clone(),
    };
    let reply = match member_write(&system, &op).await {
        Ok(r) => r,
        Err(e) => return e,
    };
    let Frame::Integer(id) = reply else {
        return reply;
    };
    let Some((layout, _)) = groups.system_records().ok().flatten() else {
        return Frame::error("CLUSTERDOWN the cluster's metadata is not recorded yet");
    };
    let node = SeshatNode {
        raft_addr: addrs.raft,
        client_addr: addrs.client,
    };
    let new_id = u64::try_from(id).unwrap_or(0);
    if let Err(e) = system.raft.add_learner(new_id, node, false).await {
        return Frame::error(format!(
            "TRYAGAIN cannot add node {new_id} to the system group: {e}"
        ));
    }
    tracing::info!(node_id = new_id, "a node joined the cluster");
    Frame::Array(vec![Frame::Integer(id), Frame::Bulk(layout)])
}

/// Proposes a directory change on this node's system replica (which must
/// lead); an error reply as `Err`.
async fn member_write(system: &Arc<Node>, op: &MemberOp) -> Result<Frame, Frame> {
    let write = Write::System(SystemWrite::Member(op.encode()));
    match system.write(write, 0).await {
        Ok(Frame::Error(e)) => Err(Frame::Error(e)),
        Ok(frame) => Ok(frame),
        Err(e) => Err(Frame::error(format!("TRYAGAIN {e}"))),
    }
}

/// Sends `args` (a `SESHAT.NODE` command) to the system group's leader.
async fn call_system_leader(shared: &Shared, args: &[Bytes]) -> Frame {
    let groups = &shared.groups;
    let Some(leader) = groups.leader_of(SYSTEM_GROUP) else {
        return Frame::error("TRYAGAIN the system group has no leader");
    };
    if leader == shared.settings.node_id {
        return Frame::error("TRYAGAIN the system group's leadership is changing");
    }
    let Some(member) = groups.member(leader) else {
        return Frame::error("TRYAGAIN the system group's leader is unknown here");
    };
    shared
        .proxy
        .call(
            &member.raft_addr.to_string(),
            args,
            PEER_TIMEOUT,
            MAX_PEER_REPLY_BYTES,
        )
        .await
        .unwrap_or_else(|e| Frame::error(format!("TRYAGAIN {e}")))
}

/// Serves `SESHAT.NODE STATE id state` and `SESHAT.NODE ADDR id raft
/// client tls`: a directory change, on the system group's leader.
pub async fn serve_member_op(shared: &Shared, args: &[Bytes]) -> Frame {
    let system = shared.groups.system().clone();
    if !system.raft.is_leader() {
        return call_system_leader(shared, args).await;
    }
    let Some(op) = args.get(2).and_then(|b| MemberOp::decode(b).ok()) else {
        return Frame::error("ERR unreadable member op");
    };
    if let MemberOp::State {
        node,
        state: NodeState::Removed,
    } = op
    {
        if let Some(why) = removal_refusal(shared, node) {
            return Frame::error(why);
        }
    }
    member_write(&system, &op).await.unwrap_or_else(|e| e)
}

/// Why removing `node` must be refused, on the system group's leader: a
/// removed node that still runs stops its replicas, so a removal that
/// leaves some group without a majority of its voters on nodes not
/// removed could never be repaired.
fn removal_refusal(shared: &Shared, node: u64) -> Option<String> {
    let dir = recorded_directory(&shared.groups).ok()?;
    let removed =
        |id: u64| id == node || dir.get(id).is_some_and(|n| n.state == NodeState::Removed);
    let mut groups: Vec<u32> = vec![SYSTEM_GROUP];
    groups.extend(shared.groups.layout.groups().iter().map(|g| g.id));
    for g in groups {
        let voters = shared.groups.voters_of(g).unwrap_or_default();
        let staying = voters.iter().filter(|v| !removed(**v)).count();
        if !voters.is_empty() && staying * 2 <= voters.len() {
            return Some(format!(
                "ERR removing node {node} would leave group {g} without a majority ({staying} of \
                 its {} voters on nodes not removed): bring nodes back or add nodes first",
                voters.len()
            ));
        }
    }
    None
}

/// Proposes `op` on the system group's leader, wherever it is.
pub async fn member_op_anywhere(shared: &Shared, op: &MemberOp) -> Frame {
    let args = [
        Bytes::from_static(crate::boot::INTERNAL.as_bytes()),
        Bytes::from_static(b"MEMBER"),
        op.encode(),
    ];
    serve_member_op(shared, &args).await
}

/// Records this node's addresses in the directory (a bootstrap member's
/// first start, or new addresses); ends once they are there.
pub async fn run_address_record(shared: std::sync::Weak<Shared>) {
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let me = shared.settings.node_id;
        let Some(mine) = shared.settings.initial_members.get(&me).cloned() else {
            return;
        };
        let addrs = Addresses {
            raft: mine.raft_addr.to_string(),
            client: mine.client_addr.to_string(),
            tls: shared.settings.tls_client_addr(me).map(|a| a.to_string()),
        };
        match recorded_directory(&shared.groups) {
            Ok(dir) => match dir.get(me) {
                Some(n) if n.addrs == addrs || n.state == NodeState::Removed => return,
                _ => {}
            },
            Err(e) => {
                tracing::error!(error = %e, "cannot read the node directory");
                return;
            }
        }
        if shared.groups.system_records().ok().flatten().is_none() {
            continue;
        }
        let reply = member_op_anywhere(&shared, &MemberOp::Addresses { node: me, addrs }).await;
        if let Frame::Error(e) = reply {
            tracing::debug!(error = %String::from_utf8_lossy(&e), "addresses not recorded yet");
        }
    }
}

// ---------------------------------------------------------------------
// Replica operations (peer side)

/// A group's membership as its leader sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupStatus {
    /// The leader (this node, when it answers).
    pub leader: u64,
    /// Voters (both configs' when joint).
    pub voters: BTreeSet<u64>,
    /// Learners, with whether each is caught up.
    pub learners: BTreeMap<u64, bool>,
    /// A membership change is in a joint config or not yet committed.
    pub changing: bool,
    /// The membership is joint and applied: a change whose leader stopped
    /// between its two steps, which nobody will finish but a `FINISH`.
    pub stuck_joint: bool,
    /// The log index of the membership the status describes (what a
    /// `DROP` is fenced with).
    pub membership_index: u64,
}

async fn status_of(node: &Node) -> Result<GroupStatus, String> {
    // Only a leader that a majority still follows answers: a deposed one
    // must not describe a membership that has moved on.
    node.read_barrier(0)
        .await
        .map_err(|e| format!("TRYAGAIN {e}"))?;
    let m = node.metrics();
    if m.current_leader != Some(m.id) {
        return Err(format!(
            "TRYAGAIN node {} does not lead group {}",
            m.id, node.group
        ));
    }
    let membership = m.membership_config.membership();
    let voters: BTreeSet<u64> = membership.voter_ids().collect();
    let last = m.last_log_index.unwrap_or(0);
    let learners = membership
        .learner_ids()
        .map(|l| {
            let matched = m
                .replication
                .as_ref()
                .and_then(|r| r.get(&l).cloned().flatten())
                .map(|id| id.index);
            (l, matched.is_some_and(|i| i + CAUGHT_UP_LAG >= last))
        })
        .collect();
    let committed = m.membership_config.log_id().as_ref().map(|l| l.index);
    let joint = membership.get_joint_config().len() > 1;
    let applied = committed.is_none_or(|c| m.last_applied.as_ref().is_some_and(|a| a.index >= c));
    Ok(GroupStatus {
        leader: m.id,
        voters,
        learners,
        changing: joint || !applied,
        stuck_joint: joint && applied,
        membership_index: committed.unwrap_or(0),
    })
}

fn status_to_frame(s: &GroupStatus) -> Frame {
    let ids = |it: &mut dyn Iterator<Item = u64>| {
        Frame::Array(
            it.map(|i| Frame::Integer(i64::try_from(i).unwrap_or(i64::MAX)))
                .collect(),
        )
    };
    Frame::Array(vec![
        Frame::Integer(i64::try_from(s.leader).unwrap_or(i64::MAX)),
        ids(&mut s.voters.iter().copied()),
        ids(&mut s.learners.iter().filter(|(_, c)| **c).map(|(l, _)| *l)),
        ids(&mut s.learners.iter().filter(|(_, c)| !**c).map(|(l, _)| *l)),
        Frame::Integer(i64::from(s.changing)),
        Frame::Integer(i64::from(s.stuck_joint)),
        Frame::Integer(i64::try_from(s.membership_index).unwrap_or(i64::MAX)),
    ])
}

fn status_from_frame(f: &Frame) -> Option<GroupStatus> {
    let Frame::Array(items) = f else { return None };
    let int = |f: &Frame| match f {
        Frame::Integer(i) => u64::try_from(*i).ok(),
        _ => None,
    };
    let ids = |f: &Frame| -> Option<Vec<u64>> {
        match f {
            Frame::Array(v) => v.iter().map(int).collect(),
            _ => None,
        }
    };
    let [leader, voters, caught_up, behind, changing, stuck_joint, membership_index] = &items[..]
    else {
        return None;
    };
    let mut learners: BTreeMap<u64, bool> =
        ids(caught_up)?.into_iter().map(|l| (l, true)).collect();
    learners.extend(ids(behind)?.into_iter().map(|l| (l, false)));
    Some(GroupStatus {
        leader: int(leader)?,
        voters: ids(voters)?.into_iter().collect(),
        learners,
        changing: int(changing)? != 0,
        stuck_joint: int(stuck_joint)? != 0,
        membership_index: int(membership_index)?,
    })
}

/// Serves a peer's `SESHAT.REPLICA op group [node]`:
///
/// - `OPEN g`: start an empty replica of `g` here;
/// - `DROP g`: delete this node's replica of `g`;
/// - at `g`'s leader: `STATUS g`, `LEARN g n` (add node `n` as a
///   learner), `PROMOTE g n`, `REMOVE g n` (remove a voter or learner),
///   `TRANSFER g n` (hand the leadership to `n`).
pub async fn serve_replica(shared: &Shared, args: &[Bytes]) -> Frame {
    let text = |i: usize| args.get(i).and_then(|a| std::str::from_utf8(a).ok());
    let op = text(1).map(str::to_ascii_uppercase).unwrap_or_default();
    let Some(group) = text(2).and_then(|t| t.parse::<u32>().ok()) else {
        return Frame::error(format!("ERR {INTERNAL}: bad group"));
    };
    let target = text(3).and_then(|t| t.parse::<u64>().ok());
    let groups = &shared.groups;
    match op.as_str() {
        "OPEN" => match groups.open_replica(group).await {
            Ok(_) => Frame::ok(),
            Err(e) => Frame::error(format!("ERR cannot open a replica of group {group}: {e:#}")),
        },
        "DROP" => {
            // Fenced by the membership the leader described: a replica that
            // has seen a newer one (it was added back since) is kept.
            let fence = target.unwrap_or(0);
            if let Some(node) = groups.get(group) {
                let seen = node
                    .metrics()
                    .membership_config
                    .log_id()
                    .as_ref()
                    .map_or(0, |l| l.index);
                if seen > fence {
                    return Frame::error(format!(
                        "TRYAGAIN this replica of group {group} has seen membership {seen}, newer than {fence}"
                    ));
                }
            }
            match groups.drop_replica(group).await {
                Ok(_) => Frame::ok(),
                Err(e) => Frame::error(format!(
                    "ERR cannot drop the replica of group {group}: {e:#}"
                )),
            }
        }
        _ => {
            let Some(node) = groups.get(group) else {
                return Frame::error(format!("TRYAGAIN group {group} is not held by this node"));
            };
            if op == "STATUS" {
                return match status_of(&node).await {
                    Ok(s) => status_to_frame(&s),
                    Err(e) => Frame::error(e),
                };
            }
            let Some(target) = target else {
                return Frame::error(format!("ERR {INTERNAL} {op}: bad node"));
            };
            leader_op(shared, &node, &op, target).await
        }
    }
}

/// A membership operation at a group's leader.
async fn leader_op(shared: &Shared, node: &Node, op: &str, target: u64) -> Frame {
    use openraft::ChangeMembers;
    if !node.raft.is_leader() {
        return Frame::error(format!(
            "TRYAGAIN this node does not lead group {}",
            node.group
        ));
    }
    let result = match op {
        "LEARN" => {
            let Some(m) = shared.groups.member(target) else {
                return Frame::error(format!("ERR node {target} is unknown here"));
            };
            let addr = SeshatNode {
                raft_addr: m.raft_addr.to_string(),
                client_addr: m.client_addr.to_string(),
            };
            node.raft.add_learner(target, addr, false).await.map(|_| ())
        }
        // A joint configuration left by a leader that stopped between the
        // two steps: the empty change is openraft's own second step.
        "FINISH" => node
            .raft
            .change_membership(ChangeMembers::AddVoterIds(BTreeSet::new()), false)
            .await
            .map(|_| ()),
        "PROMOTE" => node
            .raft
            .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([target])), false)
            .await
            .map(|_| ()),
        "REMOVE" => {
            let m = node.metrics();
            let membership = m.membership_config.membership();
            let change = if membership.voter_ids().any(|v| v == target) {
                ChangeMembers::RemoveVoters(BTreeSet::from([target]))
            } else {
                ChangeMembers::RemoveNodes(BTreeSet::from([target]))
            };
            node.raft.change_membership(change, false).await.map(|_| ())
        }
        "TRANSFER" => {
            tracing::info!(
                group = node.group,
                to = target,
                "handing the leadership over"
            );
            return match node.raft.trigger().transfer_leader(target).await {
                Ok(()) => Frame::ok(),
                Err(e) => Frame::error(format!("TRYAGAIN {e}")),
            };
        }
        _ => return Frame::error(format!("ERR {INTERNAL}: unknown operation {op}")),
    };
    match result {
        Ok(()) => {
            tracing::info!(group = node.group, op, node = target, "membership changed");
            Frame::ok()
        }
        Err(e) => {
            let m = node.metrics();
            tracing::info!(
                group = node.group,
                op,
                node = target,
                error = %e,
                state = ?m.state,
                leader = ?m.current_leader,
                vote = %m.vote,
                "membership change refused"
            );
            Frame::error(format!("TRYAGAIN {e}"))
        }
    }
}

// ---------------------------------------------------------------------
// The rebalancer (system group's leader)

/// What the rebalancer has done, for `INFO` and `/metrics`.
#[derive(Debug, Default)]
pub struct Progress {
    /// Membership actions carried out.
    pub actions: std::sync::atomic::AtomicU64,
    /// Actions that failed (retried at the next round).
    pub failures: std::sync::atomic::AtomicU64,
    /// Replica moves in flight at the last round.
    pub in_flight: std::sync::atomic::AtomicU64,
    /// The last action, as text.
    pub last: std::sync::Mutex<String>,
}

/// Runs the rebalancer while this node leads the system group (see the
/// module docs). `dead_after`: how long a node may be unreachable before
/// its replicas are re-made elsewhere.
pub async fn run_rebalancer(shared: std::sync::Weak<Shared>, dead_after: Duration) {
    let mut last_seen: HashMap<u64, Instant> = HashMap::new();
    let mut tick = tokio::time::interval(REBALANCE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut leading_since: Option<Instant> = None;
    loop {
        tick.tick().await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        if !shared.groups.system().raft.is_leader() || shared.groups.layout_conflict().is_some() {
            leading_since = None;
            last_seen.clear();
            continue;
        }
        let since = *leading_since.get_or_insert_with(Instant::now);
        if let Err(e) = rebalance_once(&shared, &mut last_seen, since, dead_after).await {
            tracing::debug!(error = %e, "rebalancer round ended early");
        }
    }
}

/// What one node reported of the replicas it holds.
struct NodeReport {
    /// Group → (term, leader, voters as that replica knows them).
    groups: BTreeMap<u32, (u64, Option<u64>, Vec<u64>)>,
}

async fn ask_leaders(shared: &Shared, addr: &str) -> Option<NodeReport> {
    use seshat_raft::pb::raft_service_client::RaftServiceClient;
    let endpoint = seshat_raft::peer_tls::peer_endpoint(addr, shared.proxy.peer_tls()).ok()?;
    let mut client = RaftServiceClient::new(endpoint.connect_lazy());
    let reply = tokio::time::timeout(
        Duration::from_secs(1),
        client.leaders(seshat_raft::pb::LeadersRequest {}),
    )
    .await
    .ok()?
    .ok()?;
    Some(NodeReport {
        groups: reply
            .into_inner()
            .groups
            .into_iter()
            .map(|g| (g.group, (g.term, g.leader, g.voters)))
            .collect(),
    })
}

/// Calls a replica operation on node `id` (this node directly).
async fn replica_call(shared: &Shared, id: u64, args: Vec<Bytes>) -> Frame {
    if id == shared.settings.node_id {
        // As bounded as a peer's answer: a membership change that cannot
        // commit (its group lost its quorum) must not hold the rebalancer.
        return tokio::time::timeout(PEER_TIMEOUT, serve_replica(shared, &args))
            .await
            .unwrap_or_else(|_| Frame::error("TRYAGAIN the operation did not finish in time"));
    }
    let Some(m) = shared.groups.member(id) else {
        return Frame::error(format!("ERR node {id} is unknown here"));
    };
    shared
        .proxy
        .call(
            &m.raft_addr.to_string(),
            &args,
            PEER_TIMEOUT,
            MAX_PEER_REPLY_BYTES,
        )
        .await
        .unwrap_or_else(|e| Frame::error(format!("TRYAGAIN {e}")))
}

fn replica_args(op: &str, group: u32, node: Option<u64>) -> Vec<Bytes> {
    let mut args = vec![
        Bytes::from_static(INTERNAL.as_bytes()),
        Bytes::from(op.to_string()),
        Bytes::from(group.to_string()),
    ];
    if let Some(n) = node {
        args.push(Bytes::from(n.to_string()));
    }
    args
}

async fn rebalance_once(
    shared: &Shared,
    last_seen: &mut HashMap<u64, Instant>,
    leading_since: Instant,
    dead_after: Duration,
) -> anyhow::Result<()> {
    use seshat_membership as plan;
    let groups = &shared.groups;
    let me = shared.settings.node_id;
    // Only a directory that has caught up with this leader's term is used.
    groups
        .system()
        .read_barrier(0)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let term = groups.system().metrics().current_term;
    // Every action is carried out only while this node still leads the
    // system group in the term it observed in: a deposed leader's round
    // stops at once, so two rebalancers never act on one view.
    let still_leading = || {
        let m = groups.system().metrics();
        m.current_leader == Some(me) && m.current_term == term
    };
    let dir = recorded_directory(groups)?;
    let known = Known::with_directory(&shared.settings, &dir);
    // Ask every node that is not removed which replicas it holds.
    let live: Vec<(u64, Member)> = known
        .nodes()
        .iter()
        .filter(|(_, n)| n.state != NodeState::Removed)
        .map(|(id, n)| (*id, n.member.clone()))
        .collect();
    let asks = live.iter().map(|(id, m)| {
        let addr = m.raft_addr.to_string();
        async move { (*id, ask_leaders(shared, &addr).await) }
    });
    let reports: BTreeMap<u64, Option<NodeReport>> =
        futures::future::join_all(asks).await.into_iter().collect();
    let now = Instant::now();
    let mut hosts: BTreeMap<u32, BTreeSet<u64>> = BTreeMap::new();
    for (id, report) in &reports {
        if let Some(r) = report {
            last_seen.insert(*id, now);
            for g in r.groups.keys() {
                hosts.entry(*g).or_default().insert(*id);
            }
        }
    }
    let nodes: Vec<plan::NodeView> = known
        .nodes()
        .iter()
        .map(|(id, n)| {
            // Unreachable for `dead_after`, counted from when this node
            // began to lead (it cannot know of earlier silence).
            let seen = last_seen.get(id).copied().unwrap_or(leading_since);
            plan::NodeView {
                id: *id,
                state: match n.state {
                    NodeState::Active => plan::NodeState::Active,
                    NodeState::Decommissioning => plan::NodeState::Decommissioning,
                    NodeState::Removed => plan::NodeState::Removed,
                },
                dead: !dead_after.is_zero() && now.duration_since(seen) > dead_after,
            }
        })
        .collect();
    let mut group_ids: Vec<u32> = vec![SYSTEM_GROUP];
    group_ids.extend(groups.layout.groups().iter().map(|g| g.id));
    let mut views = Vec::new();
    for g in group_ids {
        let leader = if g == SYSTEM_GROUP {
            Some(me)
        } else {
            groups.leader_of(g).or_else(|| {
                reports
                    .values()
                    .flatten()
                    .filter_map(|r| r.groups.get(&g))
                    .max_by_key(|(term, _, _)| *term)
                    .and_then(|(_, l, _)| *l)
            })
        };
        let status = match leader {
            Some(l) => {
                let reply = replica_call(shared, l, replica_args("STATUS", g, None)).await;
                status_from_frame(&reply)
            }
            None => None,
        };
        if let Some(s) = status.as_ref().filter(|s| s.stuck_joint) {
            // openraft leaves a joint configuration as it is when its
            // leader stops between the two steps; nothing else finishes it.
            let reply = replica_call(shared, s.leader, replica_args("FINISH", g, Some(0))).await;
            tracing::info!(group = g, reply = ?reply, "finishing a joint configuration left behind");
        }
        let view = match status {
            Some(s) => {
                // Moved groups have no preferred leader: the planner
                // spreads their leaders.
                let voters: Vec<u64> = s.voters.iter().copied().collect();
                let preferred = crate::groups::preferred_leader(&groups.layout, g)
                    .filter(|_| groups.layout.placed_as_bootstrapped(g, &voters));
                plan::GroupView {
                    id: g,
                    leader: Some(s.leader),
                    voters: s.voters,
                    joint: s.changing,
                    learners: s.learners,
                    preferred_leader: preferred,
                    hosts: hosts.remove(&g).unwrap_or_default(),
                }
            }
            // No leader answered: nothing is planned for the group, but
            // its members (as the replica of the latest term reports them)
            // still count, so no node holding it is marked removed.
            None => plan::GroupView {
                id: g,
                leader: None,
                voters: reports
                    .values()
                    .flatten()
                    .filter_map(|r| r.groups.get(&g))
                    .max_by_key(|(term, _, _)| *term)
                    .map(|(_, _, v)| v.iter().copied().collect())
                    .unwrap_or_default(),
                joint: false,
                learners: BTreeMap::new(),
                preferred_leader: None,
                hosts: hosts.remove(&g).unwrap_or_default(),
            },
        };
        views.push(view);
    }
    let mut view = plan::ClusterView {
        nodes,
        groups: views,
        replication_factor: groups.layout.replicas() as usize,
    };
    let actions = plan::plan(&view);
    let progress = &shared.membership;
    progress.in_flight.store(
        view.groups
            .iter()
            .filter(|g| !g.learners.is_empty() || g.joint)
            .count() as u64,
        std::sync::atomic::Ordering::Relaxed,
    );
    for action in actions {
        let text = format!("{action:?}");
        // Earlier actions of this round changed the group: its membership
        // is looked at again, and the action is carried out only if it is
        // still safe (quorum, replication, one learner at a time).
        if !still_leading() {
            return Ok(());
        }
        if let Some(g) = action.group() {
            refresh_group(shared, &mut view, g).await;
        }
        // A node is marked removed only when every group's membership is
        // known from its leader.
        let blind = view.groups.iter().any(|g| g.leader.is_none());
        if !plan::admissible(&action, &view)
            || (blind && matches!(action, plan::Action::MarkRemoved { .. }))
        {
            tracing::debug!(action = %text, "rebalancer action no longer admissible");
            return Ok(());
        }
        let result = execute(shared, &view, &action).await;
        match result {
            Ok(()) => {
                tracing::info!(action = %text, "rebalancer");
                progress
                    .actions
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if let Ok(mut last) = progress.last.lock() {
                    *last = text;
                }
            }
            Err(e) => {
                progress
                    .failures
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::info!(action = %text, error = %e, "rebalancer action failed; will look again");
                // The view is stale now: observe again before anything else.
                return Ok(());
            }
        }
    }
    Ok(())
}

/// Asks group `group`'s leader (as `view` has it) for its membership
/// again and puts the answer in `view` (a group without an answer is seen
/// as leaderless: nothing is done to it).
async fn refresh_group(shared: &Shared, view: &mut seshat_membership::ClusterView, group: u32) {
    let Some(g) = view.groups.iter_mut().find(|g| g.id == group) else {
        return;
    };
    let status = match g.leader {
        Some(l) => {
            status_from_frame(&replica_call(shared, l, replica_args("STATUS", group, None)).await)
        }
        None => None,
    };
    match status {
        Some(s) => {
            g.leader = Some(s.leader);
            g.voters = s.voters;
            g.learners = s.learners;
            g.joint = s.changing;
        }
        None => g.leader = None,
    }
}

fn frame_ok(f: Frame) -> anyhow::Result<()> {
    match f {
        Frame::Error(e) => Err(anyhow::anyhow!("{}", String::from_utf8_lossy(&e))),
        _ => Ok(()),
    }
}

async fn execute(
    shared: &Shared,
    view: &seshat_membership::ClusterView,
    action: &seshat_membership::Action,
) -> anyhow::Result<()> {
    use seshat_membership::Action;
    let leader_of = |group: u32| {
        view.groups
            .iter()
            .find(|g| g.id == group)
            .and_then(|g| g.leader)
            .context("no leader observed")
    };
    let leader_call = |group: u32, op: &'static str, node: u64| async move {
        frame_ok(
            replica_call(
                shared,
                leader_of(group)?,
                replica_args(op, group, Some(node)),
            )
            .await,
        )
    };
    match *action {
        Action::Open { group, node } => {
            frame_ok(replica_call(shared, node, replica_args("OPEN", group, None)).await)
        }
        // The membership operations, at the group's leader.
        Action::AddLearner { group, node } => leader_call(group, "LEARN", node).await,
        Action::Promote { group, node } => leader_call(group, "PROMOTE", node).await,
        Action::TransferLeader { group, to } => leader_call(group, "TRANSFER", to).await,
        Action::RemoveVoter { group, node } | Action::RemoveLearner { group, node } => {
            leader_call(group, "REMOVE", node).await
        }
        Action::Drop { group, node } => {
            // Looked at again right before: only a replica its group's
            // leader does not count is deleted.
            let leader = leader_of(group)?;
            let reply = replica_call(shared, leader, replica_args("STATUS", group, None)).await;
            let status = status_from_frame(&reply).context("no status from the leader")?;
            if status.voters.contains(&node)
                || status.learners.contains_key(&node)
                || status.changing
            {
                anyhow::bail!("node {node} is a member of group {group} again, or it is changing");
            }
            frame_ok(
                replica_call(
                    shared,
                    node,
                    replica_args("DROP", group, Some(status.membership_index)),
                )
                .await,
            )
        }
        Action::MarkRemoved { node } => frame_ok(
            member_op_anywhere(
                shared,
                &MemberOp::State {
                    node,
                    state: NodeState::Removed,
                },
            )
            .await,
        ),
    }
}

/// `INFO` lines of the membership part of the cluster section.
pub fn info(shared: &Shared) -> String {
    use std::sync::atomic::Ordering::Relaxed;
    let known = shared.groups.known_nodes();
    let count = |s: NodeState| known.nodes().values().filter(|n| n.state == s).count();
    let me = shared.settings.node_id;
    let last = shared
        .membership
        .last
        .lock()
        .map(|l| l.replace(['\r', '\n'], " "))
        .unwrap_or_default();
    format!(
        "cluster_node_state:{}\r\ncluster_nodes_active:{}\r\ncluster_nodes_decommissioning:{}\r\n\
         cluster_nodes_removed:{}\r\nrebalancer_actions:{}\r\nrebalancer_failures:{}\r\n\
         rebalancer_moves_in_flight:{}\r\nrebalancer_last_action:{last}\r\n",
        known.state(me).map_or("unknown", NodeState::name),
        count(NodeState::Active),
        count(NodeState::Decommissioning),
        count(NodeState::Removed),
        shared.membership.actions.load(Relaxed),
        shared.membership.failures.load(Relaxed),
        shared.membership.in_flight.load(Relaxed),
    )
}

// ---------------------------------------------------------------------
// Admin

/// `CLUSTER MEMBERS`: every node the cluster has had, with its state,
/// addresses and the replicas and leaderships this node knows of.
pub fn members(shared: &Shared) -> Frame {
    let known = shared.groups.known_nodes();
    let mut leaders: BTreeMap<u64, usize> = BTreeMap::new();
    let mut replicas: BTreeMap<u64, usize> = BTreeMap::new();
    for g in shared.groups.layout.groups() {
        if let Some(l) = shared.groups.leader_of(g.id) {
            *leaders.entry(l).or_insert(0) += 1;
        }
        for v in shared.groups.voters_of(g.id).unwrap_or_default() {
            *replicas.entry(v).or_insert(0) += 1;
        }
    }
    let count = |m: &BTreeMap<u64, usize>, id: &u64| {
        Frame::Integer(i64::try_from(m.get(id).copied().unwrap_or(0)).unwrap_or(0))
    };
    Frame::Array(
        known
            .nodes()
            .iter()
            .map(|(id, n)| {
                Frame::Array(vec![
                    Frame::bulk("id"),
                    Frame::Integer(i64::try_from(*id).unwrap_or(i64::MAX)),
                    Frame::bulk("name"),
                    Frame::bulk(crate::cluster::node_name(*id)),
                    Frame::bulk("state"),
                    Frame::bulk(n.state.name()),
                    Frame::bulk("raft-addr"),
                    Frame::bulk(n.member.raft_addr.to_string()),
                    Frame::bulk("client-addr"),
                    Frame::bulk(n.member.client_addr.to_string()),
                    Frame::bulk("replicas"),
                    count(&replicas, id),
                    Frame::bulk("leads"),
                    count(&leaders, id),
                ])
            })
            .collect(),
    )
}

/// `CLUSTER DECOMMISSION id` and `CLUSTER FORGET id`: mark the node
/// decommissioning (its replicas move away, then it is removed) or removed
/// at once (a dead node: its replicas are made again elsewhere; it may
/// never come back).
pub async fn set_state(shared: &Shared, args: &[Bytes], state: NodeState) -> Frame {
    let Some(node) = args
        .get(2)
        .and_then(|a| std::str::from_utf8(a).ok())
        .and_then(|t| t.parse::<u64>().ok())
    else {
        return Frame::error("ERR node id must be a number (see CLUSTER MEMBERS)");
    };
    let known = shared.groups.known_nodes();
    if known.state(node).is_none() {
        return Frame::error(format!("ERR unknown node {node}"));
    }
    let active = known
        .nodes()
        .iter()
        .filter(|(id, n)| **id != node && n.state == NodeState::Active)
        .count();
    if active == 0 {
        return Frame::error("ERR it is the cluster's last active node");
    }
    member_op_anywhere(shared, &MemberOp::State { node, state }).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_status_round_trips_through_its_reply() {
        let s = GroupStatus {
            leader: 2,
            voters: BTreeSet::from([1, 2, 3]),
            learners: BTreeMap::from([(4, true), (5, false)]),
            changing: true,
            stuck_joint: true,
            membership_index: 42,
        };
        assert_eq!(status_from_frame(&status_to_frame(&s)), Some(s));
        assert_eq!(status_from_frame(&Frame::Integer(1)), None);
    }
}
