//! The executor's re-check of an action against a fresh view.
//!
//! [`crate::plan`] only proposes admissible actions. But an action may be
//! carried out late — decided by a previous leader's task, or retried
//! after a timeout — when the cluster has changed: a voter the plan
//! counted on died, another move started. [`admissible`] holds the
//! safety conditions alone, independent of the placement policy, so the
//! executor calls it right before each action and skips what is no longer
//! safe; the next plan starts again from what it observes.

use crate::ctx::{Ctx, Unfit};
use crate::{Action, ClusterView, NodeState, SYSTEM_GROUP};

/// Whether `action` is still safe to carry out in `view` (a fresh
/// observation). A no-op (e.g. promoting a voter, removing a non-member)
/// is always admissible.
///
/// - `Open`: a data group, on an eligible node (or one already running
///   the replica).
/// - `AddLearner`: a member already, or an eligible node joining a group
///   with a leader, not joint, and — for a data group — no other learner.
/// - `Promote`: a voter already, or a caught-up learner on an eligible
///   node of a group with a leader, not joint.
/// - `TransferLeader`: to a voter on a node not dead.
/// - `RemoveVoter`: no voter, or not the leader of a group with a leader,
///   not joint, such that the voters on nodes not dead stay a majority,
///   the voters on eligible nodes stay at least the target, and a voter
///   on a dead or Decommissioning node leaves at least the floor (unless
///   a voter on a Removed node is still to go).
/// - `RemoveLearner`: always (learners do not count for quorum).
/// - `Drop`: a data group with a leader whose membership does not
///   include the node.
/// - `MarkRemoved`: a Decommissioning node holding nothing (or one
///   already Removed).
pub fn admissible(action: &Action, view: &ClusterView) -> bool {
    let ctx = Ctx::new(view);
    if let Action::MarkRemoved { node } = *action {
        return match ctx.state(node) {
            Some(NodeState::Removed) => true,
            Some(NodeState::Decommissioning) => !ctx.holds_anything(node),
            _ => false,
        };
    }
    let Some(g) = action
        .group()
        .and_then(|id| view.groups.iter().find(|g| g.id == id))
    else {
        return false;
    };
    let leader = ctx.plannable_leader(g);
    let voter = |n| g.voters.contains(&n);
    let learner = |n| g.learners.contains_key(&n);
    match *action {
        Action::Open { node, .. } => {
            g.id != SYSTEM_GROUP && (g.hosts.contains(&node) || ctx.is_eligible(node))
        }
        Action::AddLearner { node, .. } => {
            voter(node)
                || learner(node)
                || (leader.is_some()
                    && ctx.is_eligible(node)
                    && (g.id == SYSTEM_GROUP || g.learners.is_empty()))
        }
        Action::Promote { node, .. } => {
            voter(node)
                || (leader.is_some()
                    && g.learners.get(&node) == Some(&true)
                    && ctx.is_eligible(node))
        }
        Action::TransferLeader { to, .. } => leader.is_some() && voter(to) && !ctx.is_dead(to),
        Action::RemoveVoter { node, .. } => {
            let eligible_after = ctx
                .eligible_voters(g)
                .saturating_sub(usize::from(ctx.is_eligible(node)));
            let floor_ok = match ctx.unfit(node) {
                None | Some(Unfit::Removed) => true,
                Some(Unfit::Dead | Unfit::Decommissioning) => {
                    g.voters.len() > ctx.floor(g) || ctx.below_floor_ok(g)
                }
            };
            !voter(node)
                || (leader.is_some_and(|l| l != node)
                    && ctx.quorum_after_removal(g, node)
                    && eligible_after >= ctx.target(g)
                    && floor_ok)
        }
        Action::RemoveLearner { .. } => true,
        Action::Drop { node, .. } => {
            g.id != SYSTEM_GROUP && leader.is_some() && !voter(node) && !learner(node)
        }
        Action::MarkRemoved { .. } => false,
    }
}
