//! The planner: [`plan`] and the rules it applies, one function per rule.
//! See the crate docs for the rules and why they converge.

use std::cmp::Reverse;

use crate::ctx::{data_groups, Ctx, Unfit};
use crate::{Action, ClusterView, GroupId, GroupView, NodeId, SYSTEM_GROUP};

/// The actions to carry out next, from one observation of the cluster.
///
/// Deterministic: the same view gives the same actions, in this order:
/// the data groups' moves in flight (by group id), a new move (`Open`
/// then `AddLearner`), leftovers to drop, a leader transfer, the system
/// group's action, and nodes to mark Removed. An empty result means the
/// cluster is where the rules want it (or is waiting: for a learner to
/// catch up, a joint configuration to finish, a leader to be elected).
pub fn plan(view: &ClusterView) -> Vec<Action> {
    let ctx = Ctx::new(view);
    let mut groups: Vec<&GroupView> = data_groups(view).collect();
    groups.sort_by_key(|g| g.id);

    let mut out = Vec::new();
    let mut in_flight = false;
    let mut grow: Option<(usize, GroupId, NodeId)> = None;
    let mut idle = Vec::new();
    for g in &groups {
        match data_step(&ctx, g) {
            // A leaderless group's learner still counts: its move goes
            // on as soon as a leader is observed.
            Step::Blocked { joint } => in_flight |= joint || !g.learners.is_empty(),
            Step::Carry(action) => {
                in_flight = true;
                out.extend(action);
            }
            Step::Grow { node, have } => {
                if grow.is_none_or(|(h, _, _)| have < h) {
                    grow = Some((have, g.id, node));
                }
            }
            Step::Idle => idle.push(*g),
        }
    }

    let mut opened = None;
    if !in_flight {
        let next = match grow {
            Some((_, group, node)) => Some((group, node)),
            None => evenness(&ctx, &groups),
        };
        if let Some((group, node)) = next {
            out.push(Action::Open { group, node });
            out.push(Action::AddLearner { group, node });
            opened = Some((group, node));
            idle.retain(|g| g.id != group);
        }
    }

    for g in &groups {
        out.extend(leftovers(&ctx, g, opened));
    }
    out.extend(spread_leaders(&ctx, &idle));
    let system = view.groups.iter().find(|g| g.id == SYSTEM_GROUP);
    out.extend(system.and_then(|g| system_step(&ctx, g)));
    out.extend(decommissioned(&ctx));
    out
}

/// What one data group needs this call.
enum Step {
    /// Nothing can be planned: no leader, or a joint configuration (a
    /// move in flight, as is a learner of a leaderless group).
    Blocked { joint: bool },
    /// A move in flight goes on: this action, or wait for a learner.
    Carry(Option<Action>),
    /// It needs a replica on `node`; it has `have` voters on eligible
    /// nodes. Started only when no move is in flight.
    Grow { node: NodeId, have: usize },
    /// Nothing to do.
    Idle,
}

/// Rules 1–4 for one data group.
fn data_step(ctx: &Ctx<'_>, g: &GroupView) -> Step {
    if g.joint {
        return Step::Blocked { joint: true };
    }
    let Some(leader) = ctx.plannable_leader(g) else {
        return Step::Blocked { joint: false };
    };
    if let Some(action) = learner_step(ctx, g) {
        return Step::Carry(action);
    }
    if let Some(action) = shrink(ctx, g, leader, true) {
        return Step::Carry(Some(action));
    }
    let have = ctx.eligible_voters(g);
    if have < ctx.target(g) {
        if let Some(node) = least_loaded_outside(ctx, g) {
            return Step::Grow { node, have };
        }
    }
    Step::Idle
}

/// Rule 1: `None` if the group has no learner, else what to do about
/// them (`Some(None)`: wait for one to catch up).
fn learner_step(ctx: &Ctx<'_>, g: &GroupView) -> Option<Option<Action>> {
    if g.learners.is_empty() {
        return None;
    }
    let group = g.id;
    if let Some(&node) = g.learners.keys().find(|n| !ctx.is_eligible(**n)) {
        return Some(Some(Action::RemoveLearner { group, node }));
    }
    if let Some(&node) = g.learners.keys().find(|n| !g.hosts.contains(n)) {
        return Some(Some(Action::Open { group, node }));
    }
    let caught_up = g.learners.iter().find(|(_, c)| **c);
    Some(caught_up.map(|(&node, _)| Action::Promote { group, node }))
}

/// Rule 3: the voter to remove next (or the leader transfer that must
/// precede its removal), if the group has one too many. Eligible voters
/// are candidates only if `eligible_too` (never in the system group).
fn shrink(ctx: &Ctx<'_>, g: &GroupView, leader: NodeId, eligible_too: bool) -> Option<Action> {
    let target = ctx.target(g);
    let have = ctx.eligible_voters(g);
    let mut candidates = Vec::new();
    if have >= target {
        let floor = ctx.floor(g);
        let below_floor_ok = ctx.below_floor_ok(g);
        let mut unfit: Vec<(Unfit, Reverse<NodeId>)> = g
            .voters
            .iter()
            .filter_map(|&v| ctx.unfit(v).map(|u| (u, Reverse(v))))
            .filter(|(u, _)| *u == Unfit::Removed || below_floor_ok || g.voters.len() > floor)
            .collect();
        unfit.sort();
        candidates.extend(unfit.into_iter().map(|(_, Reverse(v))| v));
    }
    if eligible_too && have > target {
        let mut fit: Vec<NodeId> = g
            .voters
            .iter()
            .copied()
            .filter(|v| ctx.is_eligible(*v))
            .collect();
        fit.sort_by_key(|v| removal_key(ctx, g, leader, *v));
        candidates.extend(fit);
    }
    candidates
        .into_iter()
        .find_map(|x| removal(ctx, g, leader, x))
}

/// Among eligible voters, the first by this key goes: the most loaded;
/// ties: not the leader, not the preferred leader, highest id.
fn removal_key(
    ctx: &Ctx<'_>,
    g: &GroupView,
    leader: NodeId,
    v: NodeId,
) -> (Reverse<usize>, bool, bool, Reverse<NodeId>) {
    (
        Reverse(ctx.load(v)),
        v == leader,
        g.preferred_leader == Some(v),
        Reverse(v),
    )
}

/// Remove `x` if the rest can commit; if `x` leads, first hand
/// leadership to another eligible voter.
fn removal(ctx: &Ctx<'_>, g: &GroupView, leader: NodeId, x: NodeId) -> Option<Action> {
    if !ctx.quorum_after_removal(g, x) {
        return None;
    }
    if x != leader {
        return Some(Action::RemoveVoter {
            group: g.id,
            node: x,
        });
    }
    g.voters
        .iter()
        .copied()
        .filter(|v| *v != leader && ctx.is_eligible(*v))
        .min_by_key(|v| (ctx.load(*v), *v))
        .map(|to| Action::TransferLeader { group: g.id, to })
}

/// Rule 4: the least-loaded eligible node outside the group (ties
/// lowest id).
fn least_loaded_outside(ctx: &Ctx<'_>, g: &GroupView) -> Option<NodeId> {
    ctx.eligible()
        .iter()
        .copied()
        .filter(|n| !is_member(g, *n))
        .min_by_key(|n| (ctx.load(*n), *n))
}

fn is_member(g: &GroupView, n: NodeId) -> bool {
    g.voters.contains(&n) || g.learners.contains_key(&n)
}

/// Rule 6: if the eligible nodes' loads differ by more than 1, the group
/// and least-loaded node for the next evenness move.
fn evenness(ctx: &Ctx<'_>, groups: &[&GroupView]) -> Option<(GroupId, NodeId)> {
    let eligible = ctx.eligible();
    let max = eligible.iter().map(|n| ctx.load(*n)).max()?;
    let min = eligible.iter().map(|n| ctx.load(*n)).min()?;
    if max <= min + 1 {
        return None;
    }
    let fair = groups.len().div_ceil(eligible.len());
    let mut best: Option<(bool, GroupId, NodeId)> = None;
    for g in groups {
        let Some(leader) = ctx.plannable_leader(g) else {
            continue;
        };
        if !g.learners.is_empty()
            || !g
                .voters
                .iter()
                .any(|v| ctx.is_eligible(*v) && ctx.load(*v) == max)
        {
            continue;
        }
        let Some(&to) = eligible
            .iter()
            .find(|n| ctx.load(**n) == min && !is_member(g, **n))
        else {
            continue;
        };
        // The voter rule 3 will remove once `to` is promoted.
        let leaving = g
            .voters
            .iter()
            .copied()
            .filter(|v| ctx.is_eligible(*v))
            .min_by_key(|v| removal_key(ctx, g, leader, *v));
        let penalised =
            leaving.is_some_and(|v| g.preferred_leader == Some(v) && ctx.leads(v) <= fair);
        if best.is_none_or(|(p, _, _)| p && !penalised) {
            best = Some((penalised, g.id, to));
        }
    }
    best.map(|(_, g, n)| (g, n))
}

/// Rule 7: nodes running a replica of `g` that are not members, except
/// dead nodes (they cannot act) and the node being opened this call.
fn leftovers(ctx: &Ctx<'_>, g: &GroupView, opened: Option<(GroupId, NodeId)>) -> Vec<Action> {
    if ctx.plannable_leader(g).is_none() {
        // Without a leader the membership seen may be out of date.
        return Vec::new();
    }
    g.hosts
        .iter()
        .copied()
        .filter(|n| !is_member(g, *n) && !ctx.is_dead(*n) && opened != Some((g.id, *n)))
        .map(|node| Action::Drop { group: g.id, node })
        .collect()
}

/// Rule 8: at most one leader transfer among idle groups without a
/// preferred leader among their voters.
fn spread_leaders(ctx: &Ctx<'_>, idle: &[&GroupView]) -> Option<Action> {
    idle.iter().find_map(|g| {
        if g.preferred_leader.is_some_and(|p| g.voters.contains(&p)) {
            return None;
        }
        let leader = ctx.plannable_leader(g)?;
        let to = g
            .voters
            .iter()
            .copied()
            .filter(|v| *v != leader && ctx.is_eligible(*v))
            .min_by_key(|v| (ctx.leads(*v), *v))?;
        (ctx.leads(leader) >= ctx.leads(to) + 2)
            .then_some(Action::TransferLeader { group: g.id, to })
    })
}

/// The system group's one membership action, if any.
fn system_step(ctx: &Ctx<'_>, g: &GroupView) -> Option<Action> {
    let leader = ctx.plannable_leader(g)?;
    let group = g.id;
    if let Some(&node) = g
        .learners
        .keys()
        .find(|n| ctx.unfit(**n) == Some(Unfit::Removed))
    {
        return Some(Action::RemoveLearner { group, node });
    }
    if ctx.eligible_voters(g) < ctx.target(g) {
        let ready = g.learners.iter().find(|(n, c)| **c && ctx.is_eligible(**n));
        if let Some((&node, _)) = ready {
            return Some(Action::Promote { group, node });
        }
    }
    if let Some(action) = shrink(ctx, g, leader, false) {
        return Some(action);
    }
    ctx.eligible()
        .iter()
        .find(|n| !is_member(g, **n))
        .map(|&node| Action::AddLearner { group, node })
}

/// Decommissioning nodes that hold nothing any more.
fn decommissioned(ctx: &Ctx<'_>) -> Vec<Action> {
    let mut nodes: Vec<NodeId> = ctx
        .view
        .nodes
        .iter()
        .filter(|n| n.state == crate::NodeState::Decommissioning)
        .map(|n| n.id)
        .filter(|n| !ctx.holds_anything(*n))
        .collect();
    nodes.sort_unstable();
    nodes.dedup();
    nodes
        .into_iter()
        .map(|node| Action::MarkRemoved { node })
        .collect()
}
