//! Generated histories: linearizable by construction, then mutated.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use std::collections::BTreeMap;
use std::time::Instant;

use proptest::prelude::*;
use seshat_chaos::{
    acknowledged_writes_visible, check, read_jsonl, write_jsonl, Op, OpKind, Outcome,
};

/// A value no generated operation ever writes.
const NEVER_WRITTEN: &[u8] = b"never-written";
/// Per-mille resolution of where an op's linearization point lies in it.
const PER_MILLE: u64 = 1000;

/// The value of each key after a run.
type FinalReads = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

/// One generated operation, before it is placed in time.
#[derive(Debug, Clone)]
struct Spec {
    client: u64,
    key: u8,
    /// 0 = read, 1 = set, 2 = del.
    kind: u8,
    value: u16,
    duration: u64,
    gap: u64,
    /// Where the linearization point lies in the interval, per mille.
    point: u64,
    /// 0, 1 and 2 pick an unusual outcome (see `build`), anything else Ok.
    fate: u8,
}

/// Places the ops of each client one after another and simulates a
/// sequential register per key at their linearization points, so the result
/// is linearizable. Unusual fates: a write is Unknown-and-applied (0),
/// Unknown-and-lost (1) or Fail (2); a read is Unknown (0) or Fail (1 or 2).
fn build(specs: &[Spec]) -> Vec<Op> {
    build_with_finals(specs).0
}

/// [`build`], plus each key's value at the end of the simulation.
fn build_with_finals(specs: &[Spec]) -> (Vec<Op>, FinalReads) {
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
    let mut registers: BTreeMap<u8, Option<Vec<u8>>> = BTreeMap::new();
    let mut ops: Vec<Option<Op>> = vec![None; specs.len()];
    for i in order {
        let s = &specs[i];
        let register = registers.entry(s.key).or_insert(None);
        let (kind, outcome) = simulate(s, register);
        ops[i] = Some(Op {
            client: s.client,
            key: vec![b'k', s.key],
            kind,
            invoke_ns: placed[i].1,
            complete_ns: placed[i].2,
            outcome,
        });
    }
    let finals = registers
        .into_iter()
        .map(|(key, value)| (vec![b'k', key], value))
        .collect();
    (ops.into_iter().flatten().collect(), finals)
}

/// Applies one op to its register (if it takes effect) and says what the
/// client saw.
fn simulate(s: &Spec, register: &mut Option<Vec<u8>>) -> (OpKind, Outcome) {
    if s.kind == 0 {
        let outcome = match s.fate {
            0 => Outcome::Unknown,
            1 | 2 => Outcome::Fail,
            _ => Outcome::Ok(register.clone()),
        };
        return (OpKind::Read, outcome);
    }
    let value = (s.kind == 1).then(|| s.value.to_be_bytes().to_vec());
    let outcome = match s.fate {
        0 => Outcome::Unknown,
        1 => return (OpKind::Write(value), Outcome::Unknown),
        2 => return (OpKind::Write(value), Outcome::Fail),
        _ => Outcome::Ok(None),
    };
    register.clone_from(&value);
    (OpKind::Write(value), outcome)
}

fn spec(clients: u64, keys: u8) -> impl Strategy<Value = Spec> {
    (
        0..clients,
        0..keys,
        0u8..3,
        0u16..4,
        0u64..50,
        0u64..20,
        0..=PER_MILLE,
        0u8..13,
    )
        .prop_map(
            |(client, key, kind, value, duration, gap, point, fate)| Spec {
                client,
                key,
                kind,
                value,
                duration,
                gap,
                point,
                fate,
            },
        )
}

fn ok_reads(ops: &[Op]) -> Vec<usize> {
    (0..ops.len())
        .filter(|&i| ops[i].kind == OpKind::Read && matches!(ops[i].outcome, Outcome::Ok(_)))
        .collect()
}

proptest! {
    #[test]
    fn generated_histories_are_linearizable(specs in prop::collection::vec(spec(4, 3), 0..80)) {
        let ops = build(&specs);
        let result = check(&ops);
        prop_assert!(result.ok, "{}", result);
    }

    #[test]
    fn a_read_of_a_value_never_written_is_caught(
        specs in prop::collection::vec(spec(4, 3), 1..80),
        pick in any::<prop::sample::Index>(),
    ) {
        let mut ops = build(&specs);
        let reads = ok_reads(&ops);
        prop_assume!(!reads.is_empty());
        let victim = reads[pick.index(reads.len())];
        ops[victim].outcome = Outcome::Ok(Some(NEVER_WRITTEN.to_vec()));
        let result = check(&ops);
        prop_assert!(!result.ok && result.inconclusive.is_empty(), "{}", result);
        let violation = result.violation().cloned().unwrap_or_else(|| unreachable!());
        prop_assert_eq!(&violation.key, &ops[victim].key);
        if violation.minimal {
            prop_assert_eq!(violation.ops, vec![ops[victim].clone()]);
        }
    }

    #[test]
    fn final_reads_are_checked(specs in prop::collection::vec(spec(3, 2), 0..40)) {
        let (ops, mut finals) = build_with_finals(&specs);
        let problems = acknowledged_writes_visible(&ops, &finals);
        prop_assert!(problems.is_empty(), "{:?}", problems);
        for v in finals.values_mut() {
            *v = Some(NEVER_WRITTEN.to_vec());
        }
        prop_assert_eq!(acknowledged_writes_visible(&ops, &finals).len(), finals.len());
    }

    #[test]
    fn jsonl_round_trips(specs in prop::collection::vec(spec(4, 3), 0..40)) {
        let ops = build(&specs);
        let mut buf = Vec::new();
        write_jsonl(&ops, &mut buf).unwrap();
        prop_assert_eq!(read_jsonl(buf.as_slice()).unwrap(), ops);
    }
}

/// xorshift64*: a deterministic stream for the large history.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

fn large_history(ops: usize, clients: u64, keys: u8) -> Vec<Op> {
    let mut rng = Rng(0x5e5_4a7);
    let specs: Vec<Spec> = (0..ops)
        .map(|_| Spec {
            client: rng.below(clients),
            key: u8::try_from(rng.below(u64::from(keys))).unwrap(),
            kind: u8::try_from(rng.below(3)).unwrap(),
            value: u16::try_from(rng.below(4)).unwrap(),
            duration: rng.below(50),
            gap: rng.below(5),
            point: rng.below(PER_MILLE + 1),
            fate: u8::try_from(rng.below(13)).unwrap(),
        })
        .collect();
    build(&specs)
}

#[test]
fn large_history_performance() {
    let mut ops = large_history(2_000, 5, 10);
    let started = Instant::now();
    let result = check(&ops);
    eprintln!(
        "2000 ops / 10 keys / 5 clients: linearizable={} states={} in {:?}",
        result.ok,
        result.states_explored,
        started.elapsed()
    );
    assert!(result.ok, "{result}");

    let victim = *ok_reads(&ops).last().unwrap();
    ops[victim].outcome = Outcome::Ok(Some(NEVER_WRITTEN.to_vec()));
    let started = Instant::now();
    let result = check(&ops);
    eprintln!(
        "same, one bad read: violations={} shrunk to {:?} ops in {:?}",
        result.violations.len(),
        result
            .violations
            .iter()
            .map(|v| v.ops.len())
            .collect::<Vec<_>>(),
        started.elapsed()
    );
    assert_eq!(result.violations.len(), 1);

    let ops = large_history(2_000, 5, 1);
    let started = Instant::now();
    let result = check(&ops);
    eprintln!(
        "2000 ops / 1 key / 5 clients: linearizable={} states={} in {:?}",
        result.ok,
        result.states_explored,
        started.elapsed()
    );
    assert!(result.ok, "{result}");
}

/// One key, 2,000 ops, 5 clients: how far the checker gets when refuting a
/// bad history is hard. Prints, asserts nothing; run with `--ignored
/// --nocapture`.
#[test]
#[ignore = "slow: explores the checker's limits"]
fn hard_single_key_histories() {
    // (fates drawn below, distinct values): fewer fates = more unusual outcomes.
    for (fates, values) in [(13u64, 4u64), (13, 60_000), (4, 60_000)] {
        let mut rng = Rng(42);
        let specs: Vec<Spec> = (0..2_000)
            .map(|_| Spec {
                client: rng.below(5),
                key: 0,
                kind: u8::try_from(rng.below(3)).unwrap(),
                value: u16::try_from(rng.below(values)).unwrap(),
                duration: rng.below(50),
                gap: rng.below(5),
                point: rng.below(PER_MILLE + 1),
                fate: u8::try_from(rng.below(fates)).unwrap(),
            })
            .collect();
        let mut ops = build(&specs);
        let unknown = ops
            .iter()
            .filter(|o| o.is_write() && o.outcome == Outcome::Unknown)
            .count();
        let started = Instant::now();
        let result = check(&ops);
        eprintln!(
            "values={values} unknown writes={unknown}: ok={} states={} in {:?}",
            result.ok,
            result.states_explored,
            started.elapsed()
        );
        let victim = *ok_reads(&ops).last().unwrap();
        ops[victim].outcome = Outcome::Ok(Some(NEVER_WRITTEN.to_vec()));
        let started = Instant::now();
        let result = check(&ops);
        eprintln!(
            "  one bad read: violation={} inconclusive={} states={} shrunk to {:?} in {:?}",
            !result.violations.is_empty(),
            result.is_inconclusive(),
            result.states_explored,
            result
                .violations
                .iter()
                .map(|v| (v.ops.len(), v.minimal))
                .collect::<Vec<_>>(),
            started.elapsed()
        );
    }
}
