//! Generated `INCR` and TTL histories: correct by construction, then
//! mutated into a lost, doubled or reordered increment or a resurrected key.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use std::collections::BTreeMap;

use proptest::prelude::*;
use seshat_chaos::{
    check_counters, expired_keys_stay_expired, CounterProblem, ExpiryProblem, FinalReads, Op,
    OpKind, Outcome,
};

/// Per-mille resolution of where an op's linearization point lies in it.
const PER_MILLE: u64 = 1000;
/// Nanoseconds per millisecond.
const MS: u64 = 1_000_000;

/// What became of one generated `INCR`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Acked,
    /// Indeterminate, and applied at its linearization point.
    UnknownApplied,
    /// Indeterminate, never applied.
    UnknownLost,
    Failed,
}

/// One generated `INCR`, before it is placed in time.
#[derive(Debug, Clone)]
struct Spec {
    client: u64,
    key: u8,
    duration: u64,
    gap: u64,
    /// Where the linearization point lies in the interval, per mille.
    point: u64,
    fate: Fate,
}

fn spec(clients: u64, keys: u8) -> impl Strategy<Value = Spec> {
    let fate = prop_oneof![
        6 => Just(Fate::Acked),
        1 => Just(Fate::UnknownApplied),
        1 => Just(Fate::UnknownLost),
        1 => Just(Fate::Failed),
    ];
    (0..clients, 0..keys, 0u64..50, 0u64..20, 0..=PER_MILLE, fate).prop_map(
        |(client, key, duration, gap, point, fate)| Spec {
            client,
            key,
            duration,
            gap,
            point,
            fate,
        },
    )
}

fn key(k: u8) -> Vec<u8> {
    vec![b'c', k]
}

/// Places each client's ops one after another, applies the ones that
/// take effect to a counter per key in linearization-point order, and
/// returns the history and each key's final value.
fn build(specs: &[Spec]) -> (Vec<Op>, FinalReads) {
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
    let mut counters: BTreeMap<u8, i64> = BTreeMap::new();
    let mut ops: Vec<Option<Op>> = vec![None; specs.len()];
    for i in order {
        let s = &specs[i];
        let counter = counters.entry(s.key).or_insert(0);
        let outcome = match s.fate {
            Fate::Acked => {
                *counter += 1;
                Outcome::Ok(Some(counter.to_string().into_bytes()))
            }
            Fate::UnknownApplied => {
                *counter += 1;
                Outcome::Unknown
            }
            Fate::UnknownLost => Outcome::Unknown,
            Fate::Failed => Outcome::Fail,
        };
        ops[i] = Some(Op {
            client: s.client,
            key: key(s.key),
            kind: OpKind::Incr,
            invoke_ns: placed[i].1,
            complete_ns: placed[i].2,
            outcome,
        });
    }
    let finals = counters
        .into_iter()
        .map(|(k, n)| (key(k), Some(n.to_string().into_bytes())))
        .collect();
    (ops.into_iter().flatten().collect(), finals)
}

fn value(op: &Op) -> Option<i64> {
    match &op.outcome {
        Outcome::Ok(Some(v)) => std::str::from_utf8(v).ok()?.parse().ok(),
        _ => None,
    }
}

/// How many of `key`'s INCRs were acknowledged and indeterminate.
fn counts(ops: &[Op], key: &[u8]) -> (i64, i64) {
    let of = |f: fn(&Outcome) -> bool| {
        let n = ops.iter().filter(|o| o.key == key && f(&o.outcome)).count();
        i64::try_from(n).unwrap()
    };
    (
        of(|o| matches!(o, Outcome::Ok(_))),
        of(|o| *o == Outcome::Unknown),
    )
}

fn has(
    found: &[seshat_chaos::CounterViolation],
    key: &[u8],
    want: fn(&CounterProblem) -> bool,
) -> bool {
    found.iter().any(|v| v.key == key && want(&v.problem))
}

proptest! {
    #[test]
    fn generated_counters_pass(specs in prop::collection::vec(spec(4, 3), 0..80)) {
        let (ops, finals) = build(&specs);
        let found = check_counters(&ops, &finals);
        prop_assert!(found.is_empty(), "{}", found.iter().map(ToString::to_string).collect::<String>());
    }

    #[test]
    fn a_final_value_too_low_is_a_lost_increment(
        specs in prop::collection::vec(spec(4, 2), 1..60),
        pick in any::<prop::sample::Index>(),
    ) {
        let (ops, mut finals) = build(&specs);
        let keys: Vec<Vec<u8>> = finals.keys().cloned().collect();
        let victim = &keys[pick.index(keys.len())];
        let (acked, _) = counts(&ops, victim);
        finals.insert(victim.clone(), Some((acked - 1).to_string().into_bytes()));
        let found = check_counters(&ops, &finals);
        prop_assert!(has(&found, victim, |p| matches!(p, CounterProblem::Lost { .. })), "{:?}", found);
    }

    #[test]
    fn a_final_value_too_high_is_a_doubled_increment(
        specs in prop::collection::vec(spec(4, 2), 1..60),
        pick in any::<prop::sample::Index>(),
    ) {
        let (ops, mut finals) = build(&specs);
        let keys: Vec<Vec<u8>> = finals.keys().cloned().collect();
        let victim = &keys[pick.index(keys.len())];
        let (acked, unknown) = counts(&ops, victim);
        finals.insert(victim.clone(), Some((acked + unknown + 1).to_string().into_bytes()));
        let found = check_counters(&ops, &finals);
        prop_assert!(has(&found, victim, |p| matches!(p, CounterProblem::Doubled { .. })), "{:?}", found);
    }

    #[test]
    fn a_repeated_value_is_caught(
        specs in prop::collection::vec(spec(4, 1), 2..60),
        picks in (any::<prop::sample::Index>(), any::<prop::sample::Index>()),
    ) {
        let (mut ops, finals) = build(&specs);
        let acked: Vec<usize> = (0..ops.len()).filter(|&i| value(&ops[i]).is_some()).collect();
        prop_assume!(acked.len() >= 2);
        let (a, b) = (acked[picks.0.index(acked.len())], acked[picks.1.index(acked.len())]);
        prop_assume!(a != b);
        ops[b].outcome = ops[a].outcome.clone();
        let found = check_counters(&ops, &finals);
        prop_assert!(has(&found, &key(0), |p| matches!(p, CounterProblem::Duplicate { .. })), "{:?}", found);
    }

    #[test]
    fn swapped_values_of_ordered_increments_are_caught(
        specs in prop::collection::vec(spec(4, 1), 2..60),
        pick in any::<prop::sample::Index>(),
    ) {
        let (mut ops, finals) = build(&specs);
        let acked: Vec<usize> = (0..ops.len()).filter(|&i| value(&ops[i]).is_some()).collect();
        let ordered: Vec<(usize, usize)> = acked
            .iter()
            .flat_map(|&a| acked.iter().map(move |&b| (a, b)))
            .filter(|&(a, b)| ops[a].complete_ns < ops[b].invoke_ns)
            .collect();
        prop_assume!(!ordered.is_empty());
        let (a, b) = ordered[pick.index(ordered.len())];
        let (va, vb) = (ops[a].outcome.clone(), ops[b].outcome.clone());
        ops[a].outcome = vb;
        ops[b].outcome = va;
        let found = check_counters(&ops, &finals);
        prop_assert!(has(&found, &key(0), |p| matches!(p, CounterProblem::OutOfOrder { .. })), "{:?}", found);
    }
}

/// One short-TTL key: written once, then read at `read_after_ms` past the
/// write's acknowledgement. Before the deadline any answer is possible.
fn expiring_key(
    n: u32,
    ttl_ms: u64,
    read_after_ms: u64,
    acked: bool,
    resurrected: bool,
) -> [Op; 2] {
    let key = format!("e{n}").into_bytes();
    let invoke_ns = u64::from(n) * 10 * MS;
    let acked_ns = invoke_ns + MS;
    let write = Op {
        client: 1,
        key: key.clone(),
        kind: OpKind::WriteWithTtl {
            value: b"v".to_vec(),
            ttl_ms,
        },
        invoke_ns,
        complete_ns: acked_ns,
        outcome: if acked {
            Outcome::Ok(None)
        } else {
            Outcome::Unknown
        },
    };
    let read_ns = acked_ns + read_after_ms * MS;
    let expired = read_after_ms > ttl_ms;
    let seen = (!expired || resurrected).then(|| b"v".to_vec());
    let read = Op {
        client: 2,
        key,
        kind: OpKind::Read,
        invoke_ns: read_ns,
        complete_ns: read_ns + MS,
        outcome: Outcome::Ok(seen),
    };
    [write, read]
}

proptest! {
    #[test]
    fn expired_keys_are_checked(
        keys in prop::collection::vec((1u64..500, 0u64..1_000, any::<bool>(), any::<bool>()), 0..40),
    ) {
        let mut ops = Vec::new();
        let mut resurrections = 0;
        for (n, &(ttl_ms, read_after_ms, acked, resurrected)) in keys.iter().enumerate() {
            ops.extend(expiring_key(u32::try_from(n).unwrap(), ttl_ms, read_after_ms, acked, resurrected));
            // Only a value seen after an acknowledged write's deadline counts.
            if acked && resurrected && read_after_ms > ttl_ms {
                resurrections += 1;
            }
        }
        let found = expired_keys_stay_expired(&ops);
        prop_assert_eq!(found.len(), resurrections, "{:?}", found);
        let resurrected = |v: &seshat_chaos::ExpiryViolation| {
            matches!(v.problem, ExpiryProblem::Resurrected { .. })
        };
        prop_assert!(found.iter().all(resurrected), "{:?}", found);
    }
}
