//! Generated list and set histories: correct by construction, then mutated
//! into a lost push or add, a value popped and still listed, a reordered
//! list or pops, or a member from nowhere or back after its removal.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use proptest::prelude::*;
use seshat_chaos::{
    check_lists, check_sets, FinalCollections, ListProblem, ListViolation, Op, OpKind, Outcome,
    SetProblem, SetViolation,
};

/// Per-mille resolution of where an op's linearization point lies in it.
const PER_MILLE: u64 = 1000;
/// List keys, then set keys.
const LISTS: [&[u8]; 2] = [b"l0", b"l1"];
const SETS: [&[u8]; 2] = [b"s0", b"s1"];

/// What became of one generated op.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Acked,
    /// Indeterminate, and applied at its linearization point.
    UnknownApplied,
    /// Indeterminate, never applied.
    UnknownLost,
    Failed,
}

#[derive(Debug, Clone, Copy)]
enum Command {
    RPush,
    LPop,
    SAdd,
    /// `SREM` of the member of an earlier `SADD` on the same key, picked
    /// with this; an `SADD` if there is none.
    SRem(prop::sample::Index),
}

/// One generated op, before it is placed in time.
#[derive(Debug, Clone)]
struct Spec {
    client: u64,
    key: usize,
    command: Command,
    duration: u64,
    gap: u64,
    /// Where the linearization point lies in the interval, per mille.
    point: u64,
    fate: Fate,
}

fn spec() -> impl Strategy<Value = Spec> {
    let fate = prop_oneof![
        6 => Just(Fate::Acked),
        1 => Just(Fate::UnknownApplied),
        1 => Just(Fate::UnknownLost),
        1 => Just(Fate::Failed),
    ];
    let command = prop_oneof![
        3 => Just(Command::RPush),
        2 => Just(Command::LPop),
        3 => Just(Command::SAdd),
        1 => any::<prop::sample::Index>().prop_map(Command::SRem),
    ];
    (
        0..4u64,
        0..2usize,
        command,
        0u64..50,
        0u64..20,
        0..=PER_MILLE,
        fate,
    )
        .prop_map(|(client, key, command, duration, gap, point, fate)| Spec {
            client,
            key,
            command,
            duration,
            gap,
            point,
            fate,
        })
}

/// A generated history, and what the model holds at its end.
struct Run {
    ops: Vec<Op>,
    lists: FinalCollections,
    sets: FinalCollections,
}

/// What one spec does, with its key and value fixed.
fn kind_of(specs: &[Spec], i: usize) -> (Vec<u8>, OpKind) {
    let s = &specs[i];
    match s.command {
        Command::RPush => (LISTS[s.key].to_vec(), OpKind::RPush(value(i))),
        Command::LPop => (LISTS[s.key].to_vec(), OpKind::LPop),
        Command::SAdd => (SETS[s.key].to_vec(), OpKind::SAdd(value(i))),
        Command::SRem(pick) => {
            let adds: Vec<usize> = (0..i)
                .filter(|&j| matches!(specs[j].command, Command::SAdd) && specs[j].key == s.key)
                .collect();
            let kind = match adds.get(pick.index(adds.len().max(1))) {
                Some(&j) => OpKind::SRem(value(j)),
                None => OpKind::SAdd(value(i)),
            };
            (SETS[s.key].to_vec(), kind)
        }
    }
}

fn value(i: usize) -> Vec<u8> {
    format!("v{i}").into_bytes()
}

/// Places each client's ops one after another, applies the ones that take
/// effect to a queue or set per key in linearization-point order, and
/// returns the history and the final contents.
fn build(specs: &[Spec]) -> Run {
    let mut free_at: BTreeMap<u64, u64> = BTreeMap::new();
    let mut placed = Vec::with_capacity(specs.len());
    for s in specs {
        let start = free_at.entry(s.client).or_insert(0);
        let invoke = *start + s.gap;
        let complete = invoke + s.duration;
        *start = complete + 1;
        placed.push((invoke + s.duration * s.point / PER_MILLE, invoke, complete));
    }
    let mut order: Vec<usize> = (0..specs.len()).collect();
    order.sort_by_key(|&i| (placed[i].0, i));
    let mut queues: BTreeMap<Vec<u8>, VecDeque<Vec<u8>>> = LISTS
        .iter()
        .map(|k| (k.to_vec(), VecDeque::new()))
        .collect();
    let mut sets: BTreeMap<Vec<u8>, BTreeSet<Vec<u8>>> =
        SETS.iter().map(|k| (k.to_vec(), BTreeSet::new())).collect();
    let mut ops: Vec<Option<Op>> = vec![None; specs.len()];
    for i in order {
        let (key, kind) = kind_of(specs, i);
        let fate = specs[i].fate;
        let applies = matches!(fate, Fate::Acked | Fate::UnknownApplied);
        let int = |n: usize| Some(n.to_string().into_bytes());
        let reply = match &kind {
            OpKind::RPush(v) => {
                let queue = queues.get_mut(&key).unwrap();
                if applies {
                    queue.push_back(v.clone());
                }
                int(queue.len())
            }
            OpKind::LPop => applies
                .then(|| queues.get_mut(&key).unwrap().pop_front())
                .flatten(),
            OpKind::SAdd(m) => int(usize::from(
                applies && sets.get_mut(&key).unwrap().insert(m.clone()),
            )),
            OpKind::SRem(m) => int(usize::from(
                applies && sets.get_mut(&key).unwrap().remove(m),
            )),
            _ => unreachable!("only list and set commands are generated"),
        };
        let outcome = match fate {
            Fate::Acked => Outcome::Ok(reply),
            Fate::UnknownApplied | Fate::UnknownLost => Outcome::Unknown,
            Fate::Failed => Outcome::Fail,
        };
        ops[i] = Some(Op {
            client: specs[i].client,
            key,
            kind,
            invoke_ns: placed[i].1,
            complete_ns: placed[i].2,
            outcome,
        });
    }
    Run {
        ops: ops.into_iter().flatten().collect(),
        lists: queues
            .into_iter()
            .map(|(k, q)| (k, q.into_iter().collect()))
            .collect(),
        sets: sets
            .into_iter()
            .map(|(k, s)| (k, s.into_iter().collect()))
            .collect(),
    }
}

fn acked(op: &Op) -> bool {
    matches!(op.outcome, Outcome::Ok(_))
}

/// The acknowledged op of `kind` on `key`.
fn acked_op<'a>(ops: &'a [Op], key: &[u8], kind: &OpKind) -> Option<&'a Op> {
    ops.iter()
        .find(|op| op.key == key && op.kind == *kind && acked(op))
}

fn has_list(found: &[ListViolation], key: &[u8], want: fn(&ListProblem) -> bool) -> bool {
    found.iter().any(|v| v.key == key && want(&v.problem))
}

fn has_set(found: &[SetViolation], key: &[u8], want: fn(&SetProblem) -> bool) -> bool {
    found.iter().any(|v| v.key == key && want(&v.problem))
}

fn shown<T: ToString>(found: &[T]) -> String {
    found.iter().map(ToString::to_string).collect()
}

proptest! {
    #[test]
    fn generated_lists_and_sets_pass(specs in prop::collection::vec(spec(), 0..100)) {
        let run = build(&specs);
        let lists = check_lists(&run.ops, &run.lists);
        prop_assert!(lists.is_empty(), "{}", shown(&lists));
        let sets = check_sets(&run.ops, &run.sets);
        prop_assert!(sets.is_empty(), "{}", shown(&sets));
    }

    #[test]
    fn a_value_dropped_from_the_list_is_a_lost_push(
        specs in prop::collection::vec(spec(), 1..80),
        pick in any::<prop::sample::Index>(),
    ) {
        let mut run = build(&specs);
        // Listed values whose push was acknowledged.
        let candidates: Vec<(Vec<u8>, usize)> = run.lists.iter()
            .flat_map(|(key, values)| (0..values.len()).map(move |i| (key.clone(), i)))
            .filter(|(key, i)| acked_op(&run.ops, key, &OpKind::RPush(run.lists[key][*i].clone())).is_some())
            .collect();
        prop_assume!(!candidates.is_empty());
        let (key, i) = candidates[pick.index(candidates.len())].clone();
        run.lists.get_mut(&key).unwrap().remove(i);
        let of_key = || run.ops.iter().filter(|op| op.key == key);
        let unknown_pops = of_key()
            .filter(|op| op.kind == OpKind::LPop && op.outcome == Outcome::Unknown)
            .count();
        let popped: BTreeSet<&[u8]> = of_key()
            .filter_map(|op| match &op.outcome {
                Outcome::Ok(Some(v)) if op.kind == OpKind::LPop => Some(v.as_slice()),
                _ => None,
            })
            .collect();
        // Acknowledged pushes neither listed nor popped: the indeterminate
        // pops took all but the dropped one.
        let missing = of_key()
            .filter(|op| acked(op))
            .filter(|op| match &op.kind {
                OpKind::RPush(v) => !run.lists[&key].contains(v) && !popped.contains(v.as_slice()),
                _ => false,
            })
            .count();
        let found = check_lists(&run.ops, &run.lists);
        let lost = has_list(&found, &key, |p| matches!(p, ListProblem::Lost { .. }));
        prop_assert_eq!(lost, missing > unknown_pops, "{}", shown(&found));
    }

    #[test]
    fn a_popped_value_still_listed_is_duplicated(
        specs in prop::collection::vec(spec(), 1..80),
        pick in any::<prop::sample::Index>(),
    ) {
        let mut run = build(&specs);
        let popped: Vec<(Vec<u8>, Vec<u8>)> = run.ops.iter()
            .filter_map(|op| match (&op.kind, &op.outcome) {
                (OpKind::LPop, Outcome::Ok(Some(v))) => Some((op.key.clone(), v.clone())),
                _ => None,
            })
            .collect();
        prop_assume!(!popped.is_empty());
        let (key, value) = popped[pick.index(popped.len())].clone();
        run.lists.get_mut(&key).unwrap().push(value);
        let found = check_lists(&run.ops, &run.lists);
        prop_assert!(has_list(&found, &key, |p| matches!(p, ListProblem::Duplicated { .. })), "{}", shown(&found));
    }

    #[test]
    fn swapped_listed_values_of_ordered_pushes_are_caught(
        specs in prop::collection::vec(spec(), 2..80),
        pick in any::<prop::sample::Index>(),
    ) {
        let mut run = build(&specs);
        let push = |key: &[u8], v: &[u8]| {
            run.ops.iter().find(|op| op.key == key && op.kind == OpKind::RPush(v.to_vec())).unwrap()
        };
        let mut ordered = Vec::new();
        for (key, values) in &run.lists {
            for (a, va) in values.iter().enumerate() {
                for (b, vb) in values.iter().enumerate().skip(a + 1) {
                    if push(key, va).done_ns() < push(key, vb).invoke_ns {
                        ordered.push((key.clone(), a, b));
                    }
                }
            }
        }
        prop_assume!(!ordered.is_empty());
        let (key, a, b) = ordered[pick.index(ordered.len())].clone();
        run.lists.get_mut(&key).unwrap().swap(a, b);
        let found = check_lists(&run.ops, &run.lists);
        prop_assert!(has_list(&found, &key, |p| matches!(p, ListProblem::OutOfOrder { .. })), "{}", shown(&found));
    }

    #[test]
    fn swapped_values_of_ordered_pops_are_caught(
        specs in prop::collection::vec(spec(), 20..100),
        pick in any::<prop::sample::Index>(),
    ) {
        let mut run = build(&specs);
        let pops: Vec<usize> = (0..run.ops.len())
            .filter(|&i| run.ops[i].kind == OpKind::LPop && matches!(run.ops[i].outcome, Outcome::Ok(Some(_))))
            .collect();
        let value_of = |op: &Op| match &op.outcome {
            Outcome::Ok(Some(v)) => v.clone(),
            _ => unreachable!("an LPOP that returned a value"),
        };
        let push_of = |key: &[u8], v: Vec<u8>| {
            run.ops.iter().find(|op| op.key == key && op.kind == OpKind::RPush(v.clone())).unwrap()
        };
        let mut ordered = Vec::new();
        for &a in &pops {
            for &b in &pops {
                let (pa, pb) = (&run.ops[a], &run.ops[b]);
                if pa.key == pb.key
                    && pa.done_ns() < pb.invoke_ns
                    && push_of(&pa.key, value_of(pa)).done_ns() < push_of(&pb.key, value_of(pb)).invoke_ns
                {
                    ordered.push((a, b));
                }
            }
        }
        prop_assume!(!ordered.is_empty());
        let (a, b) = ordered[pick.index(ordered.len())];
        let key = run.ops[a].key.clone();
        let (oa, ob) = (run.ops[a].outcome.clone(), run.ops[b].outcome.clone());
        run.ops[a].outcome = ob;
        run.ops[b].outcome = oa;
        let found = check_lists(&run.ops, &run.lists);
        prop_assert!(has_list(&found, &key, |p| matches!(p, ListProblem::PoppedOutOfOrder { .. })), "{}", shown(&found));
    }

    #[test]
    fn a_member_dropped_from_the_set_is_a_lost_add(
        specs in prop::collection::vec(spec(), 1..80),
        pick in any::<prop::sample::Index>(),
    ) {
        let mut run = build(&specs);
        // Listed members acknowledged and never removed.
        let candidates: Vec<(Vec<u8>, usize)> = run.sets.iter()
            .flat_map(|(key, members)| (0..members.len()).map(move |i| (key.clone(), i)))
            .filter(|(key, i)| {
                let member = &run.sets[key][*i];
                let removed = run.ops.iter().any(|op| op.key == *key && op.kind == OpKind::SRem(member.clone()));
                !removed && acked_op(&run.ops, key, &OpKind::SAdd(member.clone())).is_some()
            })
            .collect();
        prop_assume!(!candidates.is_empty());
        let (key, i) = candidates[pick.index(candidates.len())].clone();
        run.sets.get_mut(&key).unwrap().remove(i);
        let found = check_sets(&run.ops, &run.sets);
        prop_assert!(has_set(&found, &key, |p| matches!(p, SetProblem::Lost { .. })), "{}", shown(&found));
    }

    #[test]
    fn a_removed_member_listed_again_is_resurrected(
        specs in prop::collection::vec(spec(), 20..100),
        pick in any::<prop::sample::Index>(),
    ) {
        let mut run = build(&specs);
        // Members removed by an acknowledged SREM after their SADD.
        let removed: Vec<(Vec<u8>, Vec<u8>)> = run.ops.iter()
            .filter(|op| acked(op))
            .filter_map(|op| match &op.kind {
                OpKind::SRem(member) => {
                    let add = run.ops.iter()
                        .find(|a| a.key == op.key && a.kind == OpKind::SAdd(member.clone()))?;
                    (add.outcome != Outcome::Fail && add.done_ns() < op.invoke_ns)
                        .then(|| (op.key.clone(), member.clone()))
                }
                _ => None,
            })
            .collect();
        prop_assume!(!removed.is_empty());
        let (key, member) = removed[pick.index(removed.len())].clone();
        run.sets.get_mut(&key).unwrap().push(member);
        let found = check_sets(&run.ops, &run.sets);
        prop_assert!(has_set(&found, &key, |p| matches!(p, SetProblem::Resurrected { .. })), "{}", shown(&found));
        // And a member nobody added comes from nowhere.
        run.sets.get_mut(&key).unwrap().push(b"nobody".to_vec());
        let found = check_sets(&run.ops, &run.sets);
        prop_assert!(has_set(&found, &key, |p| matches!(p, SetProblem::FromNowhere { .. })), "{}", shown(&found));
    }
}
