//! One test per rule, on small hand-built views.

use std::collections::BTreeMap;

use crate::Action::*;
use crate::{admissible, plan, Action, ClusterView, GroupView, NodeState, NodeView, SYSTEM_GROUP};

/// Nodes `1..=n`, all Active; a system group whose voters are the first
/// three nodes (five with five nodes or more; leader 1) and the rest
/// caught-up learners; replication factor 3; no data group.
fn cluster(n: u64) -> ClusterView {
    let nodes = (1..=n)
        .map(|id| NodeView {
            id,
            state: NodeState::Active,
            dead: false,
        })
        .collect();
    let size = if n >= 5 { 5 } else { n.min(3) };
    let system = GroupView {
        id: SYSTEM_GROUP,
        leader: Some(1),
        voters: (1..=size).collect(),
        learners: (size + 1..=n).map(|id| (id, true)).collect(),
        hosts: (1..=n).collect(),
        ..GroupView::default()
    };
    ClusterView {
        nodes,
        groups: vec![system],
        replication_factor: 3,
    }
}

/// A data group with these voters, led by the first, which is also its
/// preferred leader; every voter runs a replica.
fn group(id: u32, voters: &[u64]) -> GroupView {
    GroupView {
        id,
        leader: voters.first().copied(),
        voters: voters.iter().copied().collect(),
        joint: false,
        learners: BTreeMap::new(),
        preferred_leader: voters.first().copied(),
        hosts: voters.iter().copied().collect(),
    }
}

fn with(mut view: ClusterView, groups: Vec<GroupView>) -> ClusterView {
    view.groups.extend(groups);
    view
}

fn node(view: &mut ClusterView, id: u64) -> &mut NodeView {
    let Some(n) = view.nodes.iter_mut().find(|n| n.id == id) else {
        panic!("no node {id}");
    };
    n
}

fn kill(view: &mut ClusterView, id: u64) {
    node(view, id).dead = true;
}

fn set(view: &mut ClusterView, id: u64, state: NodeState) {
    node(view, id).state = state;
}

fn grp(view: &mut ClusterView, id: u32) -> &mut GroupView {
    let Some(g) = view.groups.iter_mut().find(|g| g.id == id) else {
        panic!("no group {id}");
    };
    g
}

fn learner(view: &mut ClusterView, id: u32, node: u64, caught_up: bool) {
    let g = grp(view, id);
    g.learners.insert(node, caught_up);
    g.hosts.insert(node);
}

/// The plan's actions about data group `id`.
fn about(actions: &[Action], id: u32) -> Vec<Action> {
    actions
        .iter()
        .copied()
        .filter(|a| a.group() == Some(id))
        .collect()
}

/// The plan's actions, but the system group's.
fn data(view: &ClusterView) -> Vec<Action> {
    let mut actions = planned(view);
    actions.retain(|a| a.group() != Some(SYSTEM_GROUP));
    actions
}

/// Every planned action is admissible in the view it was planned from.
fn planned(view: &ClusterView) -> Vec<Action> {
    let actions = plan(view);
    for a in &actions {
        assert!(admissible(a, view), "{a:?} planned but not admissible");
    }
    actions
}

#[test]
fn a_balanced_cluster_gets_nothing() {
    let view = with(
        cluster(3),
        vec![
            group(1, &[1, 2, 3]),
            group(2, &[2, 3, 1]),
            group(3, &[3, 1, 2]),
        ],
    );
    assert_eq!(planned(&view), vec![]);
}

#[test]
fn a_joint_or_leaderless_group_gets_nothing_and_a_joint_one_blocks_new_moves() {
    let mut view = with(cluster(4), vec![group(1, &[1, 2, 3]), group(2, &[1, 2, 3])]);
    kill(&mut view, 3);
    grp(&mut view, 1).joint = true;
    grp(&mut view, 1).hosts.insert(4);
    grp(&mut view, 2).leader = None;
    grp(&mut view, 2).hosts.insert(4);
    // Both need a replica on 4, and group 1 has a leftover: nothing.
    assert_eq!(data(&view), vec![]);
    // Group 1 finishes its joint change: group 2 still has no leader.
    grp(&mut view, 1).joint = false;
    assert_eq!(
        data(&view),
        vec![Open { group: 1, node: 4 }, AddLearner { group: 1, node: 4 }]
    );
}

#[test]
fn a_learner_catching_up_is_waited_for_and_blocks_new_moves() {
    let mut view = with(cluster(5), vec![group(1, &[1, 2, 3]), group(2, &[1, 2, 3])]);
    kill(&mut view, 3);
    learner(&mut view, 1, 4, false);
    assert_eq!(planned(&view), vec![]);
    learner(&mut view, 1, 4, true);
    assert_eq!(planned(&view), vec![Promote { group: 1, node: 4 }]);
}

#[test]
fn a_learner_on_an_ineligible_node_is_removed_and_a_lost_open_is_repeated() {
    let mut view = with(cluster(5), vec![group(1, &[1, 2, 3])]);
    kill(&mut view, 3);
    learner(&mut view, 1, 4, true);
    set(&mut view, 4, NodeState::Decommissioning);
    assert_eq!(
        about(&planned(&view), 1),
        vec![RemoveLearner { group: 1, node: 4 }]
    );
    grp(&mut view, 1).learners.clear();
    grp(&mut view, 1).hosts.remove(&4);
    learner(&mut view, 1, 5, false);
    grp(&mut view, 1).hosts.remove(&5);
    assert_eq!(about(&planned(&view), 1), vec![Open { group: 1, node: 5 }]);
}

#[test]
fn a_dead_voter_is_replaced_on_the_least_loaded_node_then_removed() {
    let mut view = with(
        cluster(5),
        vec![
            group(1, &[1, 2, 3]),
            group(2, &[1, 4, 5]),
            group(3, &[2, 4, 1]),
        ],
    );
    kill(&mut view, 3);
    // Outside group 1: 4 (load 2) and 5 (load 1).
    assert_eq!(
        planned(&view),
        vec![Open { group: 1, node: 5 }, AddLearner { group: 1, node: 5 }]
    );
    // Promoted: now the dead voter goes.
    grp(&mut view, 1).voters.insert(5);
    grp(&mut view, 1).hosts.insert(5);
    assert_eq!(planned(&view), vec![RemoveVoter { group: 1, node: 3 }]);
}

#[test]
fn without_a_replacement_a_dead_or_decommissioning_voter_stays_a_removed_one_goes() {
    let mut view = with(cluster(3), vec![group(1, &[1, 2, 3])]);
    kill(&mut view, 3);
    assert_eq!(about(&planned(&view), 1), vec![]);
    node(&mut view, 3).dead = false;
    set(&mut view, 3, NodeState::Decommissioning);
    assert_eq!(planned(&view), vec![]);
    set(&mut view, 3, NodeState::Removed);
    assert_eq!(
        about(&planned(&view), 1),
        vec![RemoveVoter { group: 1, node: 3 }]
    );
}

#[test]
fn ineligible_voters_go_removed_first_then_dead_then_decommissioning() {
    let mut view = with(cluster(7), vec![group(1, &[1, 2, 3, 4, 5, 6])]);
    set(&mut view, 2, NodeState::Decommissioning);
    kill(&mut view, 3);
    set(&mut view, 4, NodeState::Removed);
    assert_eq!(
        about(&planned(&view), 1),
        vec![RemoveVoter { group: 1, node: 4 }]
    );
    grp(&mut view, 1).voters.remove(&4);
    grp(&mut view, 1).hosts.remove(&4);
    assert_eq!(
        about(&planned(&view), 1),
        vec![RemoveVoter { group: 1, node: 3 }]
    );
    grp(&mut view, 1).voters.remove(&3);
    assert_eq!(
        about(&planned(&view), 1),
        vec![RemoveVoter { group: 1, node: 2 }]
    );
}

#[test]
fn an_extra_voter_goes_from_the_most_loaded_node_and_a_leader_hands_over_first() {
    let mut view = with(
        cluster(4),
        vec![
            group(1, &[1, 2, 3, 4]),
            group(2, &[2, 3, 4]),
            group(3, &[3, 4, 1]),
        ],
    );
    // Loads: 1:2, 2:2, 3:3, 4:3 -> 4 (highest id among the most loaded).
    assert_eq!(
        about(&planned(&view), 1),
        vec![RemoveVoter { group: 1, node: 4 }]
    );
    // Ties prefer a voter that is not the leader: 4 leads, 3 goes.
    grp(&mut view, 1).leader = Some(4);
    assert_eq!(
        about(&planned(&view), 1),
        vec![RemoveVoter { group: 1, node: 3 }]
    );
    // A decommissioning leader hands over first, to the least loaded.
    let mut view = with(
        cluster(4),
        vec![group(1, &[1, 2, 3, 4]), group(2, &[2, 3, 4])],
    );
    set(&mut view, 1, NodeState::Decommissioning);
    assert_eq!(
        about(&planned(&view), 1),
        vec![TransferLeader { group: 1, to: 2 }]
    );
}

#[test]
fn no_removal_leaves_the_live_voters_short_of_a_majority() {
    // 3 is Removed but still running; 2 is dead. Removing 3 would leave
    // {1, 2} with one live voter: 2 goes first, then 3.
    let mut view = with(cluster(3), vec![group(1, &[1, 2, 3])]);
    kill(&mut view, 2);
    set(&mut view, 3, NodeState::Removed);
    let actions = about(&planned(&view), 1);
    assert_eq!(actions, vec![RemoveVoter { group: 1, node: 2 }]);
    assert!(!admissible(&RemoveVoter { group: 1, node: 3 }, &view));
    grp(&mut view, 1).voters.remove(&2);
    assert_eq!(
        about(&planned(&view), 1),
        vec![RemoveVoter { group: 1, node: 3 }]
    );
}

#[test]
fn one_new_move_at_a_time_the_most_urgent_first() {
    let mut view = with(
        cluster(6),
        vec![
            group(1, &[1, 2, 3]),
            group(2, &[1, 2, 4]),
            group(3, &[1, 4, 5]),
        ],
    );
    kill(&mut view, 4);
    set(&mut view, 5, NodeState::Decommissioning);
    // Group 3 has one eligible voter, group 2 two: group 3 first, on the
    // least-loaded node outside it (6 holds nothing).
    assert_eq!(
        data(&view),
        vec![Open { group: 3, node: 6 }, AddLearner { group: 3, node: 6 }]
    );
    // Without a leader group 3 is skipped: group 2.
    grp(&mut view, 3).leader = None;
    assert_eq!(
        data(&view),
        vec![Open { group: 2, node: 6 }, AddLearner { group: 2, node: 6 }]
    );
    // A move in flight in group 3: group 2 waits.
    grp(&mut view, 3).leader = Some(1);
    learner(&mut view, 3, 6, false);
    assert_eq!(data(&view), vec![]);
}

#[test]
fn a_new_node_gets_replicas_until_loads_differ_by_at_most_one() {
    // Loads 3/3/3, node 4 has none: a move to 4, in a group whose
    // leaving voter is not its preferred leader (group 1's would be 3, a
    // tie broken to the highest id: not the preferred leader 1).
    let mut view = with(
        cluster(4),
        vec![
            group(1, &[1, 2, 3]),
            group(2, &[2, 3, 1]),
            group(3, &[3, 1, 2]),
        ],
    );
    assert_eq!(
        planned(&view),
        vec![Open { group: 1, node: 4 }, AddLearner { group: 1, node: 4 }]
    );
    // Group 1 moved: loads 3/3/3/1... after promotion the extra voter goes.
    grp(&mut view, 1).voters.insert(4);
    grp(&mut view, 1).hosts.insert(4);
    assert_eq!(planned(&view), vec![RemoveVoter { group: 1, node: 3 }]);
    grp(&mut view, 1).voters.remove(&3);
    grp(&mut view, 1).hosts.remove(&3);
    // Loads 3/3/2/1: differ by 2 -> another move, from 1 or 2 to 4.
    let actions = planned(&view);
    assert_eq!(actions.len(), 2);
    assert!(matches!(actions[1], AddLearner { node: 4, .. }));
}

#[test]
fn evenness_spares_a_preferred_leader_that_leads_its_fair_share() {
    // Node 3 is in every group (load 3), 1, 2 and 4 have 2, 5 none. In
    // groups 1 and 2, 3 would leave and is the preferred leader.
    let mut view = with(
        cluster(5),
        vec![
            group(1, &[3, 1, 2]),
            group(2, &[3, 1, 4]),
            group(3, &[2, 3, 4]),
        ],
    );
    for (id, leader) in [(1, 1), (2, 1), (3, 2)] {
        grp(&mut view, id).leader = Some(leader);
    }
    // 3 leads nothing (fair share: one group): groups 1 and 2 spared.
    assert_eq!(
        planned(&view)[..2],
        [Open { group: 3, node: 5 }, AddLearner { group: 3, node: 5 }]
    );
    // 3 leads two groups, more than its share: group 1 is fine.
    for (id, leader) in [(2, 3), (3, 3)] {
        grp(&mut view, id).leader = Some(leader);
    }
    assert_eq!(
        planned(&view)[..2],
        [Open { group: 1, node: 5 }, AddLearner { group: 1, node: 5 }]
    );
}

#[test]
fn leftovers_are_dropped_but_never_on_members_dead_nodes_or_a_node_being_opened() {
    let mut view = with(
        cluster(5),
        vec![
            group(1, &[1, 2, 3]),
            group(2, &[2, 3, 4]),
            group(3, &[1, 3, 4]),
        ],
    );
    kill(&mut view, 5);
    grp(&mut view, 1).hosts.extend([4, 5]);
    assert_eq!(planned(&view), vec![Drop { group: 1, node: 4 }]);
    assert!(!admissible(&Drop { group: 1, node: 1 }, &view));
    // Group 1 needs a replica (3 is dead), on 4, which ran an old one:
    // it is opened again, not dropped.
    let mut view = with(cluster(4), vec![group(1, &[1, 2, 3])]);
    kill(&mut view, 3);
    grp(&mut view, 1).hosts.insert(4);
    assert_eq!(
        data(&view),
        vec![Open { group: 1, node: 4 }, AddLearner { group: 1, node: 4 }]
    );
}

#[test]
fn leaders_spread_over_groups_without_a_preferred_leader() {
    let mut groups: Vec<GroupView> = (1..=3).map(|id| group(id, &[1, 2, 3])).collect();
    for g in &mut groups {
        g.preferred_leader = None;
    }
    let view = with(cluster(3), groups.clone());
    // 1 leads 3, 2 and 3 lead none: one transfer, to 2.
    assert_eq!(planned(&view), vec![TransferLeader { group: 1, to: 2 }]);
    // Preferred leaders among the voters: left alone.
    for g in &mut groups {
        g.preferred_leader = Some(1);
    }
    assert_eq!(planned(&with(cluster(3), groups)), vec![]);
}

#[test]
fn the_system_group_adds_learners_promotes_them_and_replaces_ineligible_voters() {
    let mut view = cluster(6);
    assert_eq!(planned(&view), vec![]);
    grp(&mut view, SYSTEM_GROUP).learners.clear();
    assert_eq!(planned(&view), vec![AddLearner { group: 0, node: 6 }]);
    learner(&mut view, SYSTEM_GROUP, 6, false);
    // A system voter dies: 5 eligible, target 5: promote 6 once caught
    // up, then remove 2.
    kill(&mut view, 2);
    assert_eq!(planned(&view), vec![]);
    learner(&mut view, SYSTEM_GROUP, 6, true);
    assert_eq!(planned(&view), vec![Promote { group: 0, node: 6 }]);
    let sys = grp(&mut view, SYSTEM_GROUP);
    sys.learners.clear();
    sys.voters.insert(6);
    assert_eq!(planned(&view), vec![RemoveVoter { group: 0, node: 2 }]);
    // The leader decommissioned and the 7th node promoted: hand over
    // first.
    let mut view = cluster(6);
    set(&mut view, 1, NodeState::Decommissioning);
    assert_eq!(planned(&view), vec![Promote { group: 0, node: 6 }]);
    let sys = grp(&mut view, SYSTEM_GROUP);
    sys.learners.clear();
    sys.voters.insert(6);
    assert_eq!(planned(&view), vec![TransferLeader { group: 0, to: 2 }]);
}

#[test]
fn the_system_group_keeps_extra_eligible_voters_and_learners_of_dead_nodes() {
    let mut view = cluster(4);
    let sys = grp(&mut view, SYSTEM_GROUP);
    sys.voters.insert(4);
    sys.learners.clear();
    // 4 voters, target 3: nothing.
    assert_eq!(planned(&view), vec![]);
    let mut view = cluster(6);
    kill(&mut view, 5);
    set(&mut view, 4, NodeState::Decommissioning);
    assert_eq!(planned(&view), vec![]);
    set(&mut view, 6, NodeState::Removed);
    assert_eq!(planned(&view), vec![RemoveLearner { group: 0, node: 6 }]);
}

#[test]
fn a_decommissioning_node_holding_nothing_is_marked_removed() {
    // 6 is only a system learner; 3 a data voter; 5 a system voter.
    let mut view = with(cluster(6), vec![group(1, &[1, 2, 3])]);
    for n in [3, 5, 6] {
        set(&mut view, n, NodeState::Decommissioning);
    }
    let actions = planned(&view);
    assert!(actions.contains(&MarkRemoved { node: 6 }));
    assert!(!actions.contains(&MarkRemoved { node: 3 }));
    assert!(!actions.contains(&MarkRemoved { node: 5 }));
}

#[test]
fn late_actions_are_refused_once_unsafe() {
    let mut view = with(cluster(5), vec![group(1, &[1, 2, 3, 4])]);
    let remove = RemoveVoter { group: 1, node: 4 };
    assert!(admissible(&remove, &view));
    // 3 died since: removing 4 would leave 2 eligible voters, target 3.
    kill(&mut view, 3);
    assert!(!admissible(&remove, &view));
    // Repeated once done: a no-op.
    grp(&mut view, 1).voters.remove(&4);
    assert!(admissible(&remove, &view));
    // A second learner is refused; a repeat of the first is a no-op; a
    // learner still catching up is not promoted.
    learner(&mut view, 1, 4, false);
    assert!(admissible(&AddLearner { group: 1, node: 4 }, &view));
    assert!(!admissible(&AddLearner { group: 1, node: 5 }, &view));
    assert!(!admissible(&Promote { group: 1, node: 4 }, &view));
    // The leader is never removed directly.
    assert!(!admissible(&RemoveVoter { group: 1, node: 1 }, &view));
}

#[test]
fn a_dead_voter_goes_below_the_floor_when_a_removed_one_needs_it_gone() {
    // System voters {1..5}: 1 and 2 dead, 3 Removed but running. Only
    // 4 and 5 are eligible (target 2), the floor is 5 (nodes not
    // Removed: 1, 2, 4, 5, 6 with 6 Decommissioning). Removing 3 now
    // would leave 2 live of 4: the dead 2 goes first, then 3.
    let mut view = cluster(6);
    kill(&mut view, 1);
    kill(&mut view, 2);
    set(&mut view, 3, NodeState::Removed);
    set(&mut view, 6, NodeState::Decommissioning);
    grp(&mut view, SYSTEM_GROUP).leader = Some(4);
    grp(&mut view, SYSTEM_GROUP).learners.clear();
    let mark = MarkRemoved { node: 6 };
    assert_eq!(
        planned(&view),
        vec![RemoveVoter { group: 0, node: 2 }, mark]
    );
    grp(&mut view, SYSTEM_GROUP).voters.remove(&2);
    assert_eq!(
        planned(&view),
        vec![RemoveVoter { group: 0, node: 3 }, mark]
    );
    grp(&mut view, SYSTEM_GROUP).voters.remove(&3);
    // {1, 4, 5}: the dead 1 stays (nothing can replace it).
    assert_eq!(planned(&view), vec![mark]);
}

#[test]
fn a_decommissioned_system_voter_leaves_while_three_voters_stay() {
    // Five nodes, five system voters, node 2 decommissioning: the system
    // group shrinks to four (the operator asked; three would do).
    let mut view = cluster(5);
    set(&mut view, 2, NodeState::Decommissioning);
    assert_eq!(
        about(&plan(&view), SYSTEM_GROUP),
        [RemoveVoter {
            group: SYSTEM_GROUP,
            node: 2
        }]
    );
    // Three nodes: the decommissioning voter stays until a node joins
    // (two voters would not survive a failure).
    let mut view = cluster(3);
    set(&mut view, 2, NodeState::Decommissioning);
    assert_eq!(about(&plan(&view), SYSTEM_GROUP), []);
}
