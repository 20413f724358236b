//! Seshat's replica-placement planner: from one observation of the
//! cluster, the membership changes to make next — as a pure function,
//! with no I/O, no Raft and no clock.
//!
//! Seshat runs several Raft groups: group 0 is the system group (cluster
//! metadata), groups 1..=N are the data groups (shards). In a group the
//! Raft member id is the physical node id. A task on the system group's
//! leader observes the cluster ([`ClusterView`]), calls [`plan`], carries
//! out the [`Action`]s it returns, observes again and repeats.
//!
//! # Why a pure, stateless function
//!
//! The task keeps nothing between calls: after a crash or a change of
//! leader the next task starts from observation alone. So every decision
//! is derived from the observed state, and the rules are written so that
//! repeating [`plan`] → execute → observe converges: each step either
//! repairs a group, finishes a move already visible in the membership, or
//! strictly reduces an imbalance (the sum of squared loads, the sum of
//! squared leader counts), and when nothing is left to improve [`plan`]
//! returns nothing.
//!
//! An action may be decided from a view that is a little old (a previous
//! leader's task, a slow executor), be dropped, or be carried out twice.
//! Carrying one out twice is harmless because each is idempotent (adding
//! a learner that is already a member, promoting a voter, removing a
//! non-member are no-ops). An action carried out late is checked again
//! by the executor against a fresh view with [`admissible`], which holds
//! the safety conditions (quorum, replication, membership) independently
//! of the placement policy: a late action is either still safe or
//! skipped, and the next [`plan`] repairs whatever the skip left.
//!
//! # The rules
//!
//! A node is *eligible* to receive replicas if its recorded state is
//! [`NodeState::Active`] and it is not [`NodeView::dead`]. The *load* of
//! a node is the number of data groups where it is a voter or a learner.
//! A group is only planned for if it has a leader on a node not dead and
//! is not in a joint configuration; otherwise it is left alone, and a
//! joint group counts as a move in flight.
//!
//! Data groups, at most one membership action per group per call:
//!
//! 1. Learners first. A learner on an ineligible node is removed. A
//!    learner whose node does not report its replica gets [`Action::Open`]
//!    again (the first `Open` was lost). A caught-up learner is promoted;
//!    a learner still catching up is waited for.
//! 2. *target* = min(replication factor, eligible nodes), at least 1.
//! 3. Shrink. With more voters than needed, one is removed: a voter on an
//!    ineligible node (Removed, then dead, then Decommissioning; ties
//!    highest id) once the voters on eligible nodes reach the target
//!    without it, else — only while the eligible voters exceed the target
//!    — the eligible voter on the most-loaded node (ties: not the leader,
//!    not the preferred leader, highest id). A voter on a dead or
//!    Decommissioning node is kept when its removal would leave fewer
//!    voters than the *floor* = min(replication factor, nodes not
//!    Removed): with no eligible replacement, a dead voter costs nothing
//!    (its quorum is the same with or without it) and may come back —
//!    unless a voter on a Removed node is still to go: that one counts
//!    for the quorum until its node is shut down, and removing it may
//!    need the dead one gone first.
//!    No removal ever leaves the non-dead voters short of a majority of
//!    the new voter set (the new configuration must be able to commit);
//!    if the voter to remove leads the group, leadership is transferred
//!    first to another eligible voter (lowest load, then lowest id).
//! 4. Grow. With fewer voters on eligible nodes than the target, the
//!    group *needs a replica*: [`Action::Open`] then
//!    [`Action::AddLearner`] on the least-loaded eligible node outside
//!    the group (ties lowest id); the learner is promoted by rule 1 and
//!    the replaced voter removed by rule 3.
//! 5. One move at a time. Copying a replica is the expensive part, so a
//!    new learner is added only while no data group has a move in flight
//!    (a learner, a joint configuration, or a voter being removed).
//!    Moves in flight are always carried on. Among groups needing a
//!    replica, the one with the fewest eligible voters goes first (ties
//!    lowest id).
//! 6. Evenness, only when no move is in flight and no group needs a
//!    replica: if the loads of eligible nodes differ by more than 1, the
//!    lowest group with a voter on a most-loaded node and a least-loaded
//!    node outside it gets a learner on that node; rule 3 then removes the
//!    most-loaded voter. Groups whose removed voter would be their
//!    preferred leader go last, unless that node leads more than its fair
//!    share of data groups.
//! 7. Leftovers. A node reporting a replica of a data group it is no
//!    member of gets [`Action::Drop`] (not a dead node, which cannot act,
//!    and not a node being opened in the same call).
//! 8. Leader spreading. In a group whose preferred leader is unset or not
//!    a voter, and that has nothing else to do, leadership moves to the
//!    eligible voter leading the fewest data groups when the current
//!    leader's node leads at least 2 more. At most one such transfer per
//!    call. Groups whose preferred leader is a voter are left to the
//!    mechanism that moves leadership to it.
//!
//! The system group: its target is 5 voters with at least 5 eligible
//! nodes, else min(3, eligible), at least 1; every eligible node that is
//! not a voter is a learner (no `Open`: every node runs a system replica).
//! One membership action per call, in this order: remove a learner on a
//! Removed node; promote a caught-up eligible learner (lowest id) while
//! the eligible voters are below the target; remove an ineligible voter
//! under rule 3's conditions (its floor being the system target over the
//! nodes not Removed; an eligible system voter is never removed just for
//! being one too many); add a missing learner (lowest id). System moves
//! are independent of data-group moves.
//!
//! A Decommissioning node that is no voter or learner of any data group
//! and no voter of the system group is marked Removed.
//!
//! # Safety in numbers
//!
//! Promoting a caught-up learner on a live node keeps a quorum (one more
//! live voter). Removing a voter is checked explicitly. Together with the
//! one-learner-per-group rule this is what the model test in
//! `tests/model.rs` checks after every step, under random failures,
//! operator actions, leader changes, lost, repeated and stale actions.

use std::collections::{BTreeMap, BTreeSet};

mod check;
mod ctx;
mod plan;
#[cfg(test)]
mod tests;

pub use check::admissible;
pub use plan::plan;

/// A physical node's id; in every group the Raft member id.
pub type NodeId = u64;

/// A Raft group's id.
pub type GroupId = u32;

/// The system group: cluster metadata. Groups `1..` are data groups.
pub const SYSTEM_GROUP: GroupId = 0;

/// A node's state as recorded in the system group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NodeState {
    /// Serving; may receive replicas.
    Active,
    /// An operator asked for its replicas to be moved away; it receives
    /// no new ones and is marked [`NodeState::Removed`] once it holds
    /// none.
    Decommissioning,
    /// Gone for good: its replicas are removed without waiting for it.
    Removed,
}

/// One node as the planner sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeView {
    /// The node's id.
    pub id: NodeId,
    /// Its state as recorded in the system group (operator-set).
    pub state: NodeState,
    /// Unreachable for longer than the dead-node timeout (observed).
    pub dead: bool,
}

/// One Raft group as its leader reports it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GroupView {
    /// The group's id; [`SYSTEM_GROUP`] or a data group.
    pub id: GroupId,
    /// The observed leader; `None`: nothing is planned for the group.
    pub leader: Option<NodeId>,
    /// The leader's effective voters (in a joint configuration, the
    /// union of both).
    pub voters: BTreeSet<NodeId>,
    /// A membership change is still in a joint configuration: nothing is
    /// planned for the group until it finishes.
    pub joint: bool,
    /// Learners, each with whether it has caught up (its matched index is
    /// close to the leader's last log index).
    pub learners: BTreeMap<NodeId, bool>,
    /// The bootstrap layout's preferred leader (data groups); `None` for
    /// a group that was moved or is unknown.
    pub preferred_leader: Option<NodeId>,
    /// Nodes that report running a replica of the group, members or not.
    pub hosts: BTreeSet<NodeId>,
}

/// One observation of the whole cluster.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClusterView {
    /// Every node the system group knows.
    pub nodes: Vec<NodeView>,
    /// The system group and every data group.
    pub groups: Vec<GroupView>,
    /// Wanted voters per data group (e.g. 3).
    pub replication_factor: usize,
}

/// One thing for the executor to do. Each is idempotent: carried out
/// twice it has the effect of once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    /// Start an empty replica of `group` on `node`, so that it can receive
    /// the log; precedes [`Action::AddLearner`]. A no-op if it runs one.
    Open {
        /// The data group.
        group: GroupId,
        /// Where to start the replica.
        node: NodeId,
    },
    /// Add `node` as a learner of `group`. A no-op if it is a member.
    AddLearner {
        /// The group.
        group: GroupId,
        /// The new learner.
        node: NodeId,
    },
    /// Change the membership to voters + `node` (a caught-up learner). A
    /// no-op if it is a voter.
    Promote {
        /// The group.
        group: GroupId,
        /// The learner to promote.
        node: NodeId,
    },
    /// Ask the group's leader to hand leadership to `to`.
    TransferLeader {
        /// The group.
        group: GroupId,
        /// The voter to lead it.
        to: NodeId,
    },
    /// Change the membership to voters − `node` (also no longer a
    /// learner). A no-op if it is no voter.
    RemoveVoter {
        /// The group.
        group: GroupId,
        /// The voter to remove.
        node: NodeId,
    },
    /// Remove the learner `node`. A no-op if it is no learner.
    RemoveLearner {
        /// The group.
        group: GroupId,
        /// The learner to remove.
        node: NodeId,
    },
    /// `node` runs a replica of `group` but is no member: delete it there.
    Drop {
        /// The data group.
        group: GroupId,
        /// The node holding the leftover replica.
        node: NodeId,
    },
    /// Record the Decommissioning `node` as Removed: it holds nothing.
    MarkRemoved {
        /// The node.
        node: NodeId,
    },
}

impl Action {
    /// The group the action is about, if any.
    pub fn group(&self) -> Option<GroupId> {
        match *self {
            Action::Open { group, .. }
            | Action::AddLearner { group, .. }
            | Action::Promote { group, .. }
            | Action::TransferLeader { group, .. }
            | Action::RemoveVoter { group, .. }
            | Action::RemoveLearner { group, .. }
            | Action::Drop { group, .. } => Some(group),
            Action::MarkRemoved { .. } => None,
        }
    }

    /// Whether the action changes a group's Raft membership.
    pub fn is_membership_change(&self) -> bool {
        matches!(
            self,
            Action::AddLearner { .. }
                | Action::Promote { .. }
                | Action::RemoveVoter { .. }
                | Action::RemoveLearner { .. }
        )
    }
}
