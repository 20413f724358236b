//! The planner against a simulated cluster, over many seeds.
//!
//! The model holds nodes (state, dead) and groups (leader, voters,
//! learners that catch up a few calls after they are added and opened,
//! replicas hosted). Each step: maybe a random event (a node joins, is
//! decommissioned, dies for good, is marked Removed; a leader changes or
//! is not observed for a call); the late actions of earlier steps are
//! carried out if [`admissible`] still says so; then a plan — from the
//! fresh view, or sometimes from a view a few steps old (a previous
//! leader's task) — is carried out with the executor's idempotent
//! semantics, each action sometimes dropped or also queued to be done
//! again later. A membership change sometimes leaves the group joint for
//! one observation.
//!
//! Checked at every step, by the model's own arithmetic, not the
//! planner's: every action planned from the fresh view is admissible in
//! it, changes at most one membership per group, and adds a data learner
//! only while no data group has one; no removal leaves a group without a
//! live majority, or with fewer eligible voters than its target, or
//! (removing a dead or decommissioning voter) below its floor; the leader
//! is never removed; no data group has two learners; a learner is
//! promoted only once caught up; `Drop` never hits a member;
//! `MarkRemoved` only a node holding nothing.
//!
//! Then events stop, and within [`CONVERGE_CALLS`] calls of a faultless
//! executor the plan must come back empty with the cluster where the
//! rules want it: every data group with exactly its target of eligible
//! voters (and an ineligible one only where nothing can replace it), no
//! learner, no leftover replica; eligible loads within 1 of each other;
//! the system group with its target, every other eligible node a
//! learner; no Decommissioning node that holds nothing.
//!
//! `SESHAT_MEMBERSHIP_SEEDS` sets the number of seeds (default 400),
//! `SESHAT_MEMBERSHIP_SEED` runs one.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use seshat_membership::{
    admissible, plan, Action, ClusterView, GroupId, GroupView, NodeId, NodeState, NodeView,
    SYSTEM_GROUP,
};

/// Steps with random events and faults.
const EVENT_STEPS: usize = 150;
/// Calls allowed to converge once events stop.
const CONVERGE_CALLS: usize = 200;

/// SplitMix64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn percent(&mut self, p: u64) -> bool {
        self.next() % 100 < p
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> Option<T> {
        (!items.is_empty()).then(|| items[self.below(items.len())])
    }
}

#[derive(Debug, Clone)]
struct Group {
    leader: Option<NodeId>,
    voters: BTreeSet<NodeId>,
    /// Learner → calls left until it has caught up (once opened).
    learners: BTreeMap<NodeId, u32>,
    hosts: BTreeSet<NodeId>,
    preferred: Option<NodeId>,
    /// The previous voters while the last change is seen joint.
    joint_old: Option<BTreeSet<NodeId>>,
    /// The leader is not observed this call.
    hide_leader: bool,
}

#[derive(Debug, Clone, Copy)]
struct Node {
    state: NodeState,
    dead: bool,
}

struct Model {
    nodes: BTreeMap<NodeId, Node>,
    groups: BTreeMap<GroupId, Group>,
    rf: usize,
    next_id: NodeId,
}

type Check = Result<(), String>;

fn system_size(n: usize) -> usize {
    if n >= 5 {
        5
    } else {
        n.clamp(1, 3)
    }
}

impl Model {
    fn new(rng: &mut Rng) -> Model {
        let n = 3 + rng.below(4) as u64;
        let rf = [1, 2, 3, 3, 3][rng.below(5)];
        let data = 1 + rng.below(5) as u32;
        let nodes = (1..=n)
            .map(|id| {
                let node = Node {
                    state: NodeState::Active,
                    dead: false,
                };
                (id, node)
            })
            .collect();
        let mut groups = BTreeMap::new();
        let size = system_size(n as usize) as u64;
        groups.insert(
            SYSTEM_GROUP,
            Group {
                leader: Some(1),
                voters: (1..=size).collect(),
                learners: (size + 1..=n).map(|id| (id, 0)).collect(),
                hosts: (1..=n).collect(),
                preferred: None,
                joint_old: None,
                hide_leader: false,
            },
        );
        for g in 1..=data {
            let voters: Vec<NodeId> = (0..(rf as u64).min(n))
                .map(|k| (u64::from(g) - 1 + k) % n + 1)
                .collect();
            let preferred = (!rng.percent(30)).then_some(voters[0]);
            groups.insert(
                g,
                Group {
                    leader: Some(voters[0]),
                    voters: voters.iter().copied().collect(),
                    learners: BTreeMap::new(),
                    hosts: voters.iter().copied().collect(),
                    preferred,
                    joint_old: None,
                    hide_leader: false,
                },
            );
        }
        Model {
            nodes,
            groups,
            rf,
            next_id: n + 1,
        }
    }

    fn view(&self) -> ClusterView {
        let nodes = self
            .nodes
            .iter()
            .map(|(&id, n)| NodeView {
                id,
                state: n.state,
                dead: n.dead,
            })
            .collect();
        let groups = self
            .groups
            .iter()
            .map(|(&id, g)| {
                let mut voters = g.voters.clone();
                voters.extend(g.joint_old.iter().flatten());
                GroupView {
                    id,
                    leader: g.leader.filter(|_| !g.hide_leader),
                    voters,
                    joint: g.joint_old.is_some(),
                    learners: g
                        .learners
                        .iter()
                        .map(|(&n, &left)| (n, left == 0 && self.caught_up_possible(id, n)))
                        .collect(),
                    preferred_leader: g.preferred,
                    hosts: g.hosts.clone(),
                }
            })
            .collect();
        ClusterView {
            nodes,
            groups,
            replication_factor: self.rf,
        }
    }

    /// A learner receives the log only on a live node that runs the
    /// replica.
    fn caught_up_possible(&self, g: GroupId, n: NodeId) -> bool {
        !self.dead(n) && self.groups.get(&g).is_some_and(|g| g.hosts.contains(&n))
    }

    fn dead(&self, n: NodeId) -> bool {
        self.nodes.get(&n).is_none_or(|n| n.dead)
    }

    fn state(&self, n: NodeId) -> NodeState {
        self.nodes.get(&n).map_or(NodeState::Removed, |n| n.state)
    }

    fn eligible(&self, n: NodeId) -> bool {
        self.state(n) == NodeState::Active && !self.dead(n)
    }

    fn eligible_count(&self) -> usize {
        self.nodes.keys().filter(|n| self.eligible(**n)).count()
    }

    fn target(&self, g: GroupId) -> usize {
        let e = self.eligible_count();
        if g == SYSTEM_GROUP {
            system_size(e)
        } else {
            self.rf.min(e).max(1)
        }
    }

    fn floor(&self, g: GroupId) -> usize {
        let alive = self
            .nodes
            .values()
            .filter(|n| n.state != NodeState::Removed)
            .count();
        let decommissioning = self
            .nodes
            .values()
            .filter(|n| n.state == NodeState::Decommissioning)
            .count();
        if g == SYSTEM_GROUP {
            // Decommissioning nodes may leave the system group as long as
            // it keeps the 3 (or fewer nodes) that tolerate a failure.
            system_size(alive - decommissioning).max(alive.clamp(1, 3))
        } else {
            self.rf.min(alive).max(1)
        }
    }

    fn live_majority(&self, voters: &BTreeSet<NodeId>) -> bool {
        let live = voters.iter().filter(|v| !self.dead(**v)).count();
        2 * live > voters.len()
    }

    fn eligible_voters(&self, voters: &BTreeSet<NodeId>) -> usize {
        voters.iter().filter(|v| self.eligible(**v)).count()
    }

    fn load(&self, n: NodeId) -> usize {
        self.groups
            .iter()
            .filter(|(id, g)| {
                **id != SYSTEM_GROUP && (g.voters.contains(&n) || g.learners.contains_key(&n))
            })
            .count()
    }

    fn holds_anything(&self, n: NodeId) -> bool {
        self.groups.iter().any(|(id, g)| {
            g.voters.contains(&n) || (*id != SYSTEM_GROUP && g.learners.contains_key(&n))
        })
    }

    fn group(&mut self, g: GroupId) -> Result<&mut Group, String> {
        self.groups
            .get_mut(&g)
            .ok_or_else(|| format!("no group {g}"))
    }

    /// Carry out one action as the executor does.
    fn execute(&mut self, a: Action, rng: &mut Rng) -> Check {
        let joint = rng.percent(20);
        let catch_up = rng.below(4) as u32;
        match a {
            Action::Open { group, node } => {
                if group == SYSTEM_GROUP {
                    return Err(format!("{a:?}: the system group is never opened"));
                }
                if !self.dead(node) {
                    self.group(group)?.hosts.insert(node);
                }
            }
            Action::AddLearner { group, node } => {
                let g = self.group(group)?;
                if !g.voters.contains(&node) && !g.learners.contains_key(&node) {
                    if group != SYSTEM_GROUP && !g.learners.is_empty() {
                        return Err(format!("{a:?}: a second learner"));
                    }
                    g.learners.insert(node, catch_up);
                    if group == SYSTEM_GROUP {
                        g.hosts.insert(node);
                    }
                }
            }
            Action::Promote { group, node } => {
                let ready = self.caught_up_possible(group, node) && self.eligible(node);
                let g = self.group(group)?;
                if !g.voters.contains(&node) {
                    if g.learners.get(&node) != Some(&0) || !ready {
                        return Err(format!("{a:?}: not a caught-up learner"));
                    }
                    let old = g.voters.clone();
                    g.learners.remove(&node);
                    g.voters.insert(node);
                    g.joint_old = joint.then_some(old);
                }
            }
            Action::RemoveVoter { group, node } => self.remove_voter(group, node, joint)?,
            Action::RemoveLearner { group, node } => {
                self.group(group)?.learners.remove(&node);
            }
            Action::TransferLeader { group, to } => {
                let dead = self.dead(to);
                let g = self.group(group)?;
                if g.voters.contains(&to) && !dead {
                    g.leader = Some(to);
                }
            }
            Action::Drop { group, node } => {
                let g = self.group(group)?;
                if g.voters.contains(&node) || g.learners.contains_key(&node) {
                    return Err(format!("{a:?}: dropped a member"));
                }
                g.hosts.remove(&node);
            }
            Action::MarkRemoved { node } => match self.state(node) {
                NodeState::Removed => {}
                NodeState::Active => return Err(format!("{a:?}: an Active node")),
                NodeState::Decommissioning => {
                    if self.holds_anything(node) {
                        return Err(format!("{a:?}: it still holds replicas"));
                    }
                    if let Some(n) = self.nodes.get_mut(&node) {
                        n.state = NodeState::Removed;
                    }
                }
            },
        }
        Ok(())
    }

    fn remove_voter(&mut self, group: GroupId, node: NodeId, joint: bool) -> Check {
        let Some(g) = self.groups.get(&group) else {
            return Err(format!("no group {group}"));
        };
        if !g.voters.contains(&node) {
            return Ok(());
        }
        let what = format!("RemoveVoter {node} from group {group} {:?}", g.voters);
        if g.leader == Some(node) {
            return Err(format!("{what}: the leader"));
        }
        let mut after = g.voters.clone();
        after.remove(&node);
        if !self.live_majority(&after) {
            return Err(format!("{what}: loses its live majority"));
        }
        let target = self.target(group);
        if self.eligible_voters(&after) < target {
            return Err(format!("{what}: fewer eligible voters than {target}"));
        }
        let removed_left = after.iter().any(|v| self.state(*v) == NodeState::Removed);
        let replaceable =
            self.eligible(node) || self.state(node) == NodeState::Removed || removed_left;
        if !replaceable && after.len() < self.floor(group) {
            return Err(format!("{what}: below the floor {}", self.floor(group)));
        }
        let old = g.voters.clone();
        let g = self.group(group)?;
        g.voters = after;
        g.learners.remove(&node);
        g.joint_old = joint.then_some(old);
        Ok(())
    }

    /// The end of a call: learners progress, one-call conditions clear.
    fn tick(&mut self) {
        let live: BTreeSet<NodeId> = self
            .nodes
            .iter()
            .filter(|(_, n)| !n.dead)
            .map(|(id, _)| *id)
            .collect();
        for g in self.groups.values_mut() {
            for (n, left) in &mut g.learners {
                if live.contains(n) && g.hosts.contains(n) {
                    *left = left.saturating_sub(1);
                }
            }
            g.joint_old = None;
            g.hide_leader = false;
        }
    }

    /// One random event, as the world (not the planner) causes it.
    fn event(&mut self, rng: &mut Rng) {
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        let eligible = self.eligible_count();
        match rng.below(7) {
            0 if self.nodes.len() < 10 => {
                let node = Node {
                    state: NodeState::Active,
                    dead: false,
                };
                self.nodes.insert(self.next_id, node);
                self.next_id += 1;
            }
            1 if eligible > 2 => {
                let active: Vec<NodeId> = ids.into_iter().filter(|n| self.eligible(*n)).collect();
                if let Some(n) = rng.pick(&active) {
                    if let Some(node) = self.nodes.get_mut(&n) {
                        node.state = NodeState::Decommissioning;
                    }
                }
            }
            2 => {
                let live: Vec<NodeId> = ids.into_iter().filter(|n| !self.dead(*n)).collect();
                if let Some(n) = rng.pick(&live) {
                    if eligible > 2 || !self.eligible(n) {
                        self.kill(n, rng);
                    }
                }
            }
            3 => {
                let unwanted: Vec<NodeId> = ids
                    .iter()
                    .copied()
                    .filter(|n| self.state(*n) != NodeState::Removed && !self.eligible(*n))
                    .collect();
                let any: Vec<NodeId> = ids
                    .iter()
                    .copied()
                    .filter(|n| self.state(*n) != NodeState::Removed)
                    .collect();
                let n = if rng.percent(70) || eligible <= 2 {
                    rng.pick(&unwanted)
                } else {
                    rng.pick(&any)
                };
                if let Some(node) = n.and_then(|n| self.nodes.get_mut(&n)) {
                    node.state = NodeState::Removed;
                }
            }
            4 | 5 => {
                let gids: Vec<GroupId> = self.groups.keys().copied().collect();
                if let Some(gid) = rng.pick(&gids) {
                    let live: Vec<NodeId> = self.groups[&gid]
                        .voters
                        .iter()
                        .copied()
                        .filter(|v| !self.dead(*v))
                        .collect();
                    let to = rng.pick(&live);
                    if let Some(g) = self.groups.get_mut(&gid) {
                        g.leader = to.or(g.leader);
                    }
                }
            }
            _ => {
                let gids: Vec<GroupId> = self.groups.keys().copied().collect();
                if let Some(g) = rng.pick(&gids).and_then(|g| self.groups.get_mut(&g)) {
                    g.hide_leader = true;
                }
            }
        }
    }

    /// Node `n` dies for good, unless a group would lose its majority.
    fn kill(&mut self, n: NodeId, rng: &mut Rng) {
        let survives = |voters: &BTreeSet<NodeId>| {
            let live = voters
                .iter()
                .filter(|v| **v != n && !self.dead(**v))
                .count();
            2 * live > voters.len()
        };
        let ok = self
            .groups
            .values()
            .all(|g| survives(&g.voters) && g.joint_old.as_ref().is_none_or(survives));
        if !ok {
            return;
        }
        if let Some(node) = self.nodes.get_mut(&n) {
            node.dead = true;
        }
        let dead: BTreeSet<NodeId> = self
            .nodes
            .iter()
            .filter(|(_, n)| n.dead)
            .map(|(id, _)| *id)
            .collect();
        for g in self.groups.values_mut() {
            if g.leader == Some(n) {
                let live: Vec<NodeId> = g.voters.difference(&dead).copied().collect();
                g.leader = rng.pick(&live);
            }
        }
    }

    /// What holds after every step.
    fn check(&self) -> Check {
        for (id, g) in &self.groups {
            if !self.live_majority(&g.voters) {
                return Err(format!("group {id} {:?} has no live majority", g.voters));
            }
            if *id != SYSTEM_GROUP && g.learners.len() > 1 {
                return Err(format!("group {id} has learners {:?}", g.learners));
            }
            if let Some(l) = g.leader {
                if !g.voters.contains(&l) || self.dead(l) {
                    return Err(format!("group {id}: leader {l} not a live voter"));
                }
            }
            if let Some(n) = g.learners.keys().find(|n| g.voters.contains(n)) {
                return Err(format!("group {id}: {n} voter and learner"));
            }
        }
        Ok(())
    }

    /// Where the rules want the cluster once events stop.
    fn settled(&self) -> Check {
        let eligible: Vec<NodeId> = self
            .nodes
            .keys()
            .copied()
            .filter(|n| self.eligible(*n))
            .collect();
        for (&id, g) in &self.groups {
            let target = self.target(id);
            let have = self.eligible_voters(&g.voters);
            let removed = g
                .learners
                .keys()
                .find(|n| self.state(**n) == NodeState::Removed);
            if let Some(n) = removed {
                return Err(format!("group {id}: learner on Removed node {n}"));
            }
            for &v in g.voters.iter().filter(|v| !self.eligible(**v)) {
                if self.state(v) == NodeState::Removed || g.voters.len() > self.floor(id) {
                    return Err(format!("group {id} {:?}: replaceable voter {v}", g.voters));
                }
            }
            if id == SYSTEM_GROUP {
                if have < target {
                    return Err(format!("system group {:?}: below {target}", g.voters));
                }
                let missing = eligible
                    .iter()
                    .find(|n| !g.voters.contains(n) && !g.learners.contains_key(n));
                if let Some(n) = missing {
                    return Err(format!("system group: {n} neither voter nor learner"));
                }
                continue;
            }
            if have != target || !g.learners.is_empty() {
                return Err(format!(
                    "group {id}: voters {:?}, learners {:?}, target {target}",
                    g.voters, g.learners
                ));
            }
            let leftover = g
                .hosts
                .iter()
                .find(|h| !self.dead(**h) && !g.voters.contains(h) && !g.learners.contains_key(h));
            if let Some(h) = leftover {
                return Err(format!("group {id}: leftover replica on {h}"));
            }
        }
        let loads: Vec<usize> = eligible.iter().map(|n| self.load(*n)).collect();
        let (min, max) = (loads.iter().min(), loads.iter().max());
        if let (Some(min), Some(max)) = (min, max) {
            if max - min > 1 {
                return Err(format!("loads {eligible:?} {loads:?}"));
            }
        }
        let idle = self
            .nodes
            .iter()
            .find(|(id, n)| n.state == NodeState::Decommissioning && !self.holds_anything(**id));
        if let Some((id, _)) = idle {
            return Err(format!("decommissioned node {id} not marked Removed"));
        }
        Ok(())
    }
}

/// Checks on a plan from the fresh view.
fn check_plan(view: &ClusterView, actions: &[Action]) -> Check {
    let mut changes: BTreeMap<GroupId, usize> = BTreeMap::new();
    let mut new_learners = 0;
    for a in actions {
        if !admissible(a, view) {
            return Err(format!("{a:?} planned but not admissible"));
        }
        if let (true, Some(g)) = (a.is_membership_change(), a.group()) {
            *changes.entry(g).or_insert(0) += 1;
        }
        if let Action::AddLearner { group, .. } = a {
            if *group != SYSTEM_GROUP {
                new_learners += 1;
                let busy = view
                    .groups
                    .iter()
                    .any(|g| g.id != SYSTEM_GROUP && !g.learners.is_empty());
                if busy {
                    return Err(format!("{a:?} while another move is in flight"));
                }
            }
        }
    }
    if let Some((g, n)) = changes.iter().find(|(_, n)| **n > 1) {
        return Err(format!("{n} membership changes to group {g} in one call"));
    }
    if new_learners > 1 {
        return Err(format!("{new_learners} new data learners in one call"));
    }
    Ok(())
}

/// Carry out `actions` if each is still admissible (a late executor).
fn execute_late(model: &mut Model, actions: &[Action], rng: &mut Rng) -> Check {
    for a in actions {
        if admissible(a, &model.view()) {
            model.execute(*a, rng)?;
        }
    }
    Ok(())
}

fn run(seed: u64) -> Check {
    let mut rng = Rng(seed);
    let mut model = Model::new(&mut rng);
    let mut history: VecDeque<ClusterView> = VecDeque::new();
    let mut late: Vec<Action> = Vec::new();
    for step in 0..EVENT_STEPS {
        let at = |e: String| format!("step {step}: {e}");
        if rng.percent(35) {
            model.event(&mut rng);
        }
        model.check().map_err(at)?;
        let again = std::mem::take(&mut late);
        execute_late(&mut model, &again, &mut rng).map_err(at)?;
        let view = model.view();
        if rng.percent(15) && !history.is_empty() {
            let old = &history[rng.below(history.len())];
            execute_late(&mut model, &plan(old), &mut rng).map_err(at)?;
        } else {
            let actions = plan(&view);
            check_plan(&view, &actions).map_err(at)?;
            for a in actions {
                if rng.percent(10) {
                    continue;
                }
                model.execute(a, &mut rng).map_err(at)?;
                if rng.percent(5) {
                    late.push(a);
                }
            }
        }
        history.push_back(view);
        if history.len() > 4 {
            history.pop_front();
        }
        model.tick();
        model.check().map_err(at)?;
    }
    execute_late(&mut model, &late, &mut rng)?;
    for call in 0..CONVERGE_CALLS {
        let view = model.view();
        let actions = plan(&view);
        check_plan(&view, &actions).map_err(|e| format!("converging, call {call}: {e}"))?;
        if actions.is_empty() && model.settled().is_ok() {
            return Ok(());
        }
        for a in actions {
            model.execute(a, &mut rng)?;
        }
        model.tick();
        model.check()?;
    }
    let last = plan(&model.view());
    if env("SESHAT_MEMBERSHIP_DEBUG").is_some() {
        eprintln!("{:#?}", model.view());
    }
    model
        .settled()
        .map_err(|e| format!("not settled after {CONVERGE_CALLS} calls: {e}; plan {last:?}"))?;
    Err(format!(
        "still planning after {CONVERGE_CALLS} calls: {last:?}"
    ))
}

fn env(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[test]
fn the_planner_keeps_quorum_and_converges() {
    let seeds: Vec<u64> = match env("SESHAT_MEMBERSHIP_SEED") {
        Some(seed) => vec![seed],
        None => (0..env("SESHAT_MEMBERSHIP_SEEDS").unwrap_or(400)).collect(),
    };
    let failures: Vec<String> = seeds
        .iter()
        .filter_map(|&seed| run(seed).err().map(|e| format!("seed {seed}: {e}")))
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} seeds failed; first: {}",
        failures.len(),
        seeds.len(),
        failures.first().map_or("", String::as_str)
    );
}
