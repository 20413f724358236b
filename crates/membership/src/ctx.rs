//! Facts derived once from a [`ClusterView`] and shared by the planner
//! and by [`crate::admissible`]: who is eligible, loads, leader counts,
//! targets, floors, and the quorum rule.

use std::collections::{BTreeMap, BTreeSet};

use crate::{ClusterView, GroupView, NodeId, NodeState, NodeView, SYSTEM_GROUP};

/// Why a node may not hold a voter, most urgent first: the order in
/// which ineligible voters are removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Unfit {
    /// Recorded Removed, or unknown to the system group.
    Removed,
    /// Unreachable.
    Dead,
    /// Being decommissioned.
    Decommissioning,
}

/// The derived facts of one view.
pub(crate) struct Ctx<'a> {
    pub view: &'a ClusterView,
    nodes: BTreeMap<NodeId, &'a NodeView>,
    eligible: BTreeSet<NodeId>,
    load: BTreeMap<NodeId, usize>,
    leads: BTreeMap<NodeId, usize>,
    /// Nodes whose state is not Removed.
    not_removed: usize,
    /// Nodes whose state is Decommissioning.
    decommissioning: usize,
}

impl<'a> Ctx<'a> {
    pub fn new(view: &'a ClusterView) -> Self {
        let nodes: BTreeMap<NodeId, &NodeView> = view.nodes.iter().map(|n| (n.id, n)).collect();
        let eligible = nodes
            .values()
            .filter(|n| n.state == NodeState::Active && !n.dead)
            .map(|n| n.id)
            .collect();
        let not_removed = nodes
            .values()
            .filter(|n| n.state != NodeState::Removed)
            .count();
        let decommissioning = nodes
            .values()
            .filter(|n| n.state == NodeState::Decommissioning)
            .count();
        let mut load = BTreeMap::new();
        let mut leads = BTreeMap::new();
        for g in data_groups(view) {
            for n in g.voters.iter().chain(g.learners.keys()) {
                *load.entry(*n).or_insert(0) += 1;
            }
            if let Some(l) = g.leader {
                *leads.entry(l).or_insert(0) += 1;
            }
        }
        Ctx {
            view,
            nodes,
            eligible,
            load,
            leads,
            not_removed,
            decommissioning,
        }
    }

    /// Active and not dead: may receive replicas.
    pub fn is_eligible(&self, n: NodeId) -> bool {
        self.eligible.contains(&n)
    }

    /// The eligible nodes, in id order.
    pub fn eligible(&self) -> &BTreeSet<NodeId> {
        &self.eligible
    }

    /// Dead, or unknown (counted as dead so that quorum checks err on
    /// the safe side).
    pub fn is_dead(&self, n: NodeId) -> bool {
        self.nodes.get(&n).is_none_or(|v| v.dead)
    }

    /// The node's recorded state, if the system group knows it.
    pub fn state(&self, n: NodeId) -> Option<NodeState> {
        self.nodes.get(&n).map(|v| v.state)
    }

    /// Why `n` may not hold a voter, or `None` if it is eligible.
    pub fn unfit(&self, n: NodeId) -> Option<Unfit> {
        match self.nodes.get(&n) {
            None => Some(Unfit::Removed),
            Some(v) if v.state == NodeState::Removed => Some(Unfit::Removed),
            Some(v) if v.dead => Some(Unfit::Dead),
            Some(v) if v.state == NodeState::Decommissioning => Some(Unfit::Decommissioning),
            Some(_) => None,
        }
    }

    /// Data groups where `n` is a voter or a learner.
    pub fn load(&self, n: NodeId) -> usize {
        self.load.get(&n).copied().unwrap_or(0)
    }

    /// Data groups `n` leads.
    pub fn leads(&self, n: NodeId) -> usize {
        self.leads.get(&n).copied().unwrap_or(0)
    }

    /// How many voters on eligible nodes group `g` wants.
    pub fn target(&self, g: &GroupView) -> usize {
        if g.id == SYSTEM_GROUP {
            system_size(self.eligible.len())
        } else {
            self.view.replication_factor.min(self.eligible.len()).max(1)
        }
    }

    /// The fewest voters group `g` shrinks to by removing a voter on a
    /// dead or Decommissioning node: the target it would have if every
    /// node not Removed were eligible.
    pub fn floor(&self, g: &GroupView) -> usize {
        if g.id == SYSTEM_GROUP {
            system_floor(self.not_removed, self.decommissioning)
        } else {
            self.view.replication_factor.min(self.not_removed).max(1)
        }
    }

    /// Whether a voter of `g` on a dead or Decommissioning node may be
    /// removed although the group would shrink below its floor: when a
    /// voter on a Removed node is still to go. That voter counts for the
    /// quorum until its node is shut down, and removing it may need the
    /// dead one gone first to keep a live majority.
    pub fn below_floor_ok(&self, g: &GroupView) -> bool {
        g.voters
            .iter()
            .any(|v| self.unfit(*v) == Some(Unfit::Removed))
    }

    /// Voters of `g` on eligible nodes.
    pub fn eligible_voters(&self, g: &GroupView) -> usize {
        g.voters.iter().filter(|v| self.is_eligible(**v)).count()
    }

    /// Whether the voters of `g` without `x` can still commit: the
    /// voters on nodes not dead are a majority of the new voter set.
    pub fn quorum_after_removal(&self, g: &GroupView, x: NodeId) -> bool {
        let rest = g.voters.iter().filter(|v| **v != x);
        let size = rest.clone().count();
        let live = rest.filter(|v| !self.is_dead(**v)).count();
        2 * live > size
    }

    /// The leader to plan with: the observed leader, if it is a voter on
    /// a node not dead and the group is not joint.
    pub fn plannable_leader(&self, g: &GroupView) -> Option<NodeId> {
        if g.joint {
            return None;
        }
        g.leader
            .filter(|l| g.voters.contains(l) && !self.is_dead(*l))
    }

    /// Whether `n` is a voter or learner of any data group, or a voter of
    /// the system group.
    pub fn holds_anything(&self, n: NodeId) -> bool {
        self.view
            .groups
            .iter()
            .any(|g| g.voters.contains(&n) || (g.id != SYSTEM_GROUP && g.learners.contains_key(&n)))
    }
}

/// The system group's voter count for `nodes` eligible nodes.
/// The system group's floor: the size it would have without the
/// decommissioning nodes (an operator asked for them to go, and the
/// system group shrinks from 5 to 3 voters for it), but never below the
/// 3 (or fewer nodes) that tolerate a failure.
pub(crate) fn system_floor(not_removed: usize, decommissioning: usize) -> usize {
    system_size(not_removed - decommissioning.min(not_removed)).max(not_removed.clamp(1, 3))
}

fn system_size(nodes: usize) -> usize {
    if nodes >= 5 {
        5
    } else {
        nodes.clamp(1, 3)
    }
}

/// The data groups of a view.
pub(crate) fn data_groups(view: &ClusterView) -> impl Iterator<Item = &GroupView> {
    view.groups.iter().filter(|g| g.id != SYSTEM_GROUP)
}
