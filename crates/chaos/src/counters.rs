//! Checking `INCR` counters: no acknowledged increment lost, none doubled.
//!
//! A counter key starts absent (0) and is changed only by `INCR`. An
//! acknowledged `INCR` returned the counter's value just after it applied;
//! an indeterminate one applied once or not at all, at some time after its
//! invoke; a failed one never applied. With `A` acknowledged and `U`
//! indeterminate increments on a key, and `F` its value read once the
//! cluster has healed, [`check_counters`] asserts:
//!
//! 1. acknowledged values are integers, all distinct (two `INCR`s that
//!    returned the same value applied to the same count: one was lost);
//! 2. real-time order: if `INCR` `a` completed before `INCR` `b` was
//!    invoked, `a`'s value is below `b`'s;
//! 3. each acknowledged value `v` is at least 1 and at most the number of
//!    `INCR`s, failed ones aside, invoked by the time `v` was received (more
//!    means an increment applied twice, or from nowhere);
//! 4. `A <= F <= A + U`: below is a lost increment, above a doubled one;
//! 5. every acknowledged value is at most `F` (a higher one was undone).
//!
//! These are necessary conditions for a linearizable counter, checked in
//! O(n log n) per key, not a full linearizability search.

use std::fmt;

use crate::final_reads::FinalReads;
use crate::history::{fmt_value, foreign_ops, ops_by_key, parse_int, Op, OpKind, Outcome};
use crate::report::{Found, KeyViolation};

/// A problem with one counter; see the `counters` module docs for the checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CounterProblem {
    /// An `INCR` reply (`None`: none) or the final value is not a decimal
    /// integer.
    NotAnInteger {
        /// What was received.
        value: Option<Vec<u8>>,
    },
    /// The key was written with commands other than `INCR` too, so it is
    /// not checked as a counter.
    NotOnlyIncrements,
    /// Two acknowledged `INCR`s returned the same value (check 1).
    Duplicate {
        /// The value both returned.
        value: i64,
    },
    /// An `INCR` that completed before another was invoked returned a value
    /// no smaller (check 2).
    OutOfOrder {
        /// The value of the one that completed first.
        earlier: i64,
        /// The value of the one invoked later.
        later: i64,
    },
    /// An acknowledged value is below 1, or above the number of `INCR`s
    /// (failed ones aside) invoked by the time it was received (check 3).
    OutOfRange {
        /// The value returned.
        value: i64,
        /// How many `INCR`s had been invoked by then.
        invoked: usize,
    },
    /// The final value is below the number of acknowledged `INCR`s
    /// (check 4).
    Lost {
        /// The value read after the run.
        final_value: i64,
        /// How many `INCR`s were acknowledged.
        acknowledged: usize,
    },
    /// The final value is above the number of `INCR`s that may have
    /// applied (check 4).
    Doubled {
        /// The value read after the run.
        final_value: i64,
        /// How many `INCR`s were acknowledged.
        acknowledged: usize,
        /// How many were indeterminate.
        indeterminate: usize,
    },
    /// An acknowledged value is above the final value (check 5).
    AboveFinal {
        /// The value returned.
        value: i64,
        /// The value read after the run.
        final_value: i64,
    },
}

impl fmt::Display for CounterProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotAnInteger { value } => {
                f.write_str("counter value is not an integer: ")?;
                fmt_value(f, value.as_deref())
            }
            Self::NotOnlyIncrements => f.write_str(
                "written with commands other than INCR, so not checked as a counter",
            ),
            Self::Duplicate { value } => write!(
                f,
                "lost increment: two acknowledged INCRs both returned {value}"
            ),
            Self::OutOfOrder { earlier, later } => write!(
                f,
                "out of order: an INCR that returned {earlier} completed before one that returned {later} was invoked"
            ),
            Self::OutOfRange { value, invoked } => write!(
                f,
                "doubled or invented increment: an INCR returned {value}, but only {invoked} INCRs that did not fail had been invoked by its reply"
            ),
            Self::Lost {
                final_value,
                acknowledged,
            } => write!(
                f,
                "lost increment: final value {final_value}, but {acknowledged} INCRs were acknowledged"
            ),
            Self::Doubled {
                final_value,
                acknowledged,
                indeterminate,
            } => write!(
                f,
                "doubled increment: final value {final_value}, but only {acknowledged} INCRs were acknowledged and {indeterminate} indeterminate"
            ),
            Self::AboveFinal { value, final_value } => write!(
                f,
                "undone increment: an INCR returned {value}, above the final value {final_value}"
            ),
        }
    }
}

/// A problem with one counter key, with the ops that show it.
pub type CounterViolation = KeyViolation<CounterProblem>;

/// Checks every key that has an `INCR` in `history` or a value in `finals`
/// (an absent key counts as 0) as a counter (see the `counters` module docs). Checks 4 and 5 need the
/// final value: keys missing from `finals` skip them. Returns one entry per
/// kind of problem per key, in key order; empty means all is well.
pub fn check_counters(history: &[Op], finals: &FinalReads) -> Vec<CounterViolation> {
    let also = finals.keys().map(Vec::as_slice);
    ops_by_key(history, |kind| *kind == OpKind::Incr, also)
        .into_iter()
        .flat_map(|(key, ops)| {
            let final_value = finals.get(key).map(Option::as_deref);
            check_counter(key, &ops, final_value)
        })
        .collect()
}

/// An acknowledged `INCR` and the value it returned.
type Acked<'a> = (i64, &'a Op);

/// Checks one counter key's ops; `final_value` is `None` when not read.
fn check_counter(
    key: &[u8],
    ops: &[&Op],
    final_value: Option<Option<&[u8]>>,
) -> Vec<CounterViolation> {
    let mut found = Found::new(key);
    let writes = foreign_ops(ops, |kind| matches!(kind, OpKind::Read | OpKind::Incr));
    if !writes.is_empty() {
        found.push(CounterProblem::NotOnlyIncrements, writes);
        return found.into_vec();
    }
    let incrs: Vec<&Op> = ops
        .iter()
        .copied()
        .filter(|op| op.kind == OpKind::Incr)
        .collect();
    let mut acked: Vec<Acked<'_>> = Vec::new();
    for op in &incrs {
        if let Outcome::Ok(value) = &op.outcome {
            match parse_int(value.as_deref()) {
                Some(n) => acked.push((n, op)),
                None => found.push(
                    CounterProblem::NotAnInteger {
                        value: value.clone(),
                    },
                    [*op],
                ),
            }
        }
    }
    acked.sort_by_key(|&(value, op)| (value, op.invoke_ns));
    duplicates(&acked, &mut found);
    out_of_order(&acked, &mut found);
    out_of_range(&acked, &incrs, &mut found);
    if let Some(value) = final_value {
        against_final(value, &acked, &incrs, &mut found);
    }
    found.into_vec()
}

/// Check 1; `acked` is sorted by value.
fn duplicates(acked: &[Acked<'_>], found: &mut Found<'_, CounterProblem>) {
    for pair in acked.windows(2) {
        if let [(a, a_op), (b, b_op)] = pair {
            if a == b {
                found.push(CounterProblem::Duplicate { value: *a }, [*a_op, *b_op]);
            }
        }
    }
}

/// Check 2: each op against the highest value among the ops that completed
/// before it was invoked.
fn out_of_order(acked: &[Acked<'_>], found: &mut Found<'_, CounterProblem>) {
    let mut by_done: Vec<&Acked<'_>> = acked.iter().collect();
    by_done.sort_by_key(|(_, op)| op.done_ns());
    let mut by_invoke: Vec<&Acked<'_>> = acked.iter().collect();
    by_invoke.sort_by_key(|(_, op)| op.invoke_ns);
    let mut done = by_done.into_iter().peekable();
    let mut highest: Option<&Acked<'_>> = None;
    for later in by_invoke {
        while let Some(earlier) = done.next_if(|(_, op)| op.done_ns() < later.1.invoke_ns) {
            if highest.is_none_or(|h| earlier.0 > h.0) {
                highest = Some(earlier);
            }
        }
        if let Some(&(earlier, earlier_op)) = highest.filter(|h| h.0 >= later.0) {
            found.push(
                CounterProblem::OutOfOrder {
                    earlier,
                    later: later.0,
                },
                [earlier_op, later.1],
            );
        }
    }
}

/// Check 3. An op invoked at the very time a reply arrived counts as
/// invoked by then (equal times are concurrent).
fn out_of_range(acked: &[Acked<'_>], incrs: &[&Op], found: &mut Found<'_, CounterProblem>) {
    let mut invokes: Vec<u64> = incrs
        .iter()
        .filter(|op| op.outcome != Outcome::Fail)
        .map(|op| op.invoke_ns)
        .collect();
    invokes.sort_unstable();
    for &(value, op) in acked {
        let invoked = invokes.partition_point(|&t| t <= op.done_ns());
        let within = usize::try_from(value).is_ok_and(|v| (1..=invoked).contains(&v));
        if !within {
            found.push(CounterProblem::OutOfRange { value, invoked }, [op]);
        }
    }
}

/// Checks 4 and 5; `acked` is sorted by value.
fn against_final(
    value: Option<&[u8]>,
    acked: &[Acked<'_>],
    incrs: &[&Op],
    found: &mut Found<'_, CounterProblem>,
) {
    let final_value = match value {
        None => 0,
        Some(bytes) => match parse_int(Some(bytes)) {
            Some(n) => n,
            None => {
                let value = Some(bytes.to_vec());
                found.push(CounterProblem::NotAnInteger { value }, []);
                return;
            }
        },
    };
    let acknowledged = incrs
        .iter()
        .filter(|op| matches!(op.outcome, Outcome::Ok(_)))
        .count();
    let unknown: Vec<&Op> = incrs
        .iter()
        .copied()
        .filter(|op| op.outcome == Outcome::Unknown)
        .collect();
    let highest_first = acked.iter().rev().map(|&(_, op)| op);
    let count = |n: i64| usize::try_from(n).unwrap_or(0);
    if final_value < 0 || count(final_value) < acknowledged {
        let problem = CounterProblem::Lost {
            final_value,
            acknowledged,
        };
        found.push(problem, highest_first.clone());
    } else if count(final_value) > acknowledged + unknown.len() {
        let problem = CounterProblem::Doubled {
            final_value,
            acknowledged,
            indeterminate: unknown.len(),
        };
        found.push(
            problem,
            unknown.iter().rev().copied().chain(highest_first.clone()),
        );
    }
    for (value, op) in acked.iter().rev().take_while(|(v, _)| *v > final_value) {
        let problem = CounterProblem::AboveFinal {
            value: *value,
            final_value,
        };
        found.push(problem, [*op]);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    const C: &[u8] = b"c";

    fn incr(client: u64, value: Option<i64>, t: (u64, u64)) -> Op {
        Op {
            client,
            key: C.to_vec(),
            kind: OpKind::Incr,
            invoke_ns: t.0,
            complete_ns: t.1,
            outcome: match value {
                Some(n) => Outcome::Ok(Some(n.to_string().into_bytes())),
                None => Outcome::Unknown,
            },
        }
    }

    fn failed(client: u64, t: (u64, u64)) -> Op {
        Op {
            outcome: Outcome::Fail,
            ..incr(client, None, t)
        }
    }

    fn finals(value: Option<i64>) -> FinalReads {
        BTreeMap::from([(C.to_vec(), value.map(|n| n.to_string().into_bytes()))])
    }

    fn problems(history: &[Op], value: Option<i64>) -> Vec<CounterProblem> {
        check_counters(history, &finals(value))
            .into_iter()
            .map(|v| v.problem)
            .collect()
    }

    #[test]
    fn sequential_and_concurrent_increments() {
        let h = [
            incr(1, Some(1), (0, 1)),
            incr(1, Some(3), (2, 10)),
            incr(2, Some(2), (3, 9)),
            incr(1, Some(4), (11, 12)),
        ];
        assert_eq!(problems(&h, Some(4)), []);
    }

    #[test]
    fn indeterminate_and_failed_increments() {
        let h = [
            incr(1, Some(1), (0, 1)),
            incr(2, None, (2, 3)),
            failed(3, (2, 3)),
            incr(1, Some(3), (4, 5)),
        ];
        // The indeterminate one applied (the 3 says so) ...
        assert_eq!(problems(&h, Some(3)), []);
        // ... so a final 2 undoes it, a final 1 loses an acknowledged one
        // too, and a final 4 doubles one.
        assert_eq!(
            problems(&h, Some(2)),
            [CounterProblem::AboveFinal {
                value: 3,
                final_value: 2
            }]
        );
        assert_eq!(
            problems(&h, Some(1)),
            [
                CounterProblem::Lost {
                    final_value: 1,
                    acknowledged: 2
                },
                CounterProblem::AboveFinal {
                    value: 3,
                    final_value: 1
                },
            ]
        );
        assert_eq!(
            problems(&h, Some(4)),
            [CounterProblem::Doubled {
                final_value: 4,
                acknowledged: 2,
                indeterminate: 1
            }]
        );
        // The failed one must not count: 3 needs the indeterminate one.
        let h = [
            incr(1, Some(1), (0, 1)),
            failed(3, (2, 3)),
            incr(1, Some(3), (4, 5)),
        ];
        assert_eq!(
            problems(&h, None)[..1],
            [CounterProblem::OutOfRange {
                value: 3,
                invoked: 2
            }]
        );
    }

    #[test]
    fn duplicate_values_are_a_lost_increment() {
        let h = [incr(1, Some(1), (0, 10)), incr(2, Some(1), (0, 10))];
        let found = check_counters(&h, &finals(Some(1)));
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(found[0].problem, CounterProblem::Duplicate { value: 1 });
        assert_eq!(found[0].ops.len(), 2);
        assert!(matches!(found[1].problem, CounterProblem::Lost { .. }));
        let text = found[0].to_string();
        assert!(
            text.starts_with("key \"c\": lost increment: two acknowledged INCRs both returned 1\n"),
            "{text}"
        );
    }

    #[test]
    fn real_time_order() {
        let h = [incr(1, Some(2), (0, 1)), incr(2, Some(1), (2, 3))];
        let found = check_counters(&h, &BTreeMap::new());
        assert_eq!(
            found[0].problem,
            CounterProblem::OutOfOrder {
                earlier: 2,
                later: 1
            }
        );
        assert_eq!(found[0].ops, [h[0].clone(), h[1].clone()]);
        // Equal times are concurrent.
        let h = [incr(1, Some(2), (0, 2)), incr(2, Some(1), (2, 3))];
        assert_eq!(problems(&h, Some(2)), []);
    }

    #[test]
    fn values_from_nowhere() {
        let found = check_counters(&[incr(1, Some(0), (0, 1))], &BTreeMap::new());
        assert_eq!(
            found[0].problem,
            CounterProblem::OutOfRange {
                value: 0,
                invoked: 1
            }
        );
        // The second INCR was invoked after the first one's reply.
        let h = [incr(1, Some(2), (0, 1)), incr(2, None, (5, 6))];
        assert_eq!(
            problems(&h, Some(2)),
            [CounterProblem::OutOfRange {
                value: 2,
                invoked: 1
            }]
        );
    }

    #[test]
    fn final_value_only() {
        // A counter never incremented must be absent or 0.
        assert_eq!(problems(&[], None), []);
        assert_eq!(problems(&[], Some(0)), []);
        assert_eq!(
            problems(&[], Some(1)),
            [CounterProblem::Doubled {
                final_value: 1,
                acknowledged: 0,
                indeterminate: 0
            }]
        );
        // No final value: checks 4 and 5 are skipped.
        let h = [incr(1, Some(1), (0, 1))];
        assert!(check_counters(&h, &BTreeMap::new()).is_empty());
    }

    #[test]
    fn not_integers_and_not_counters() {
        let mut odd = incr(1, Some(1), (0, 1));
        odd.outcome = Outcome::Ok(Some(b"one".to_vec()));
        let found = check_counters(&[odd], &finals(None));
        assert_eq!(
            found[0].problem,
            CounterProblem::NotAnInteger {
                value: Some(b"one".to_vec())
            }
        );
        let found = check_counters(&[], &BTreeMap::from([(C.to_vec(), Some(b"x".to_vec()))]));
        assert!(matches!(
            found[0].problem,
            CounterProblem::NotAnInteger { .. }
        ));
        let set = Op {
            kind: OpKind::Write(Some(b"5".to_vec())),
            outcome: Outcome::Ok(None),
            ..incr(1, None, (2, 3))
        };
        let found = check_counters(&[incr(1, Some(1), (0, 1)), set], &finals(Some(5)));
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].problem, CounterProblem::NotOnlyIncrements);
    }

    #[test]
    fn keys_are_independent_and_in_order() {
        let mut other = incr(1, Some(5), (0, 1));
        other.key = b"b".to_vec();
        let h = [incr(1, Some(1), (0, 1)), other];
        let mut f = finals(Some(2));
        f.insert(b"b".to_vec(), Some(b"5".to_vec()));
        let found = check_counters(&h, &f);
        let seen: Vec<(&[u8], &CounterProblem)> = found
            .iter()
            .map(|v| (v.key.as_slice(), &v.problem))
            .collect();
        assert!(
            matches!(
                seen[..],
                [
                    (b"b", CounterProblem::OutOfRange { value: 5, .. }),
                    (b"b", CounterProblem::Doubled { final_value: 5, .. }),
                    (b"c", CounterProblem::Doubled { final_value: 2, .. }),
                ]
            ),
            "{found:?}"
        );
    }

    #[test]
    fn many_occurrences_are_counted_once() {
        let h: Vec<Op> = (0..50u64)
            .map(|i| incr(i, Some(1), (i * 10, i * 10 + 1)))
            .collect();
        let found = check_counters(&h, &BTreeMap::new());
        let dup = found
            .iter()
            .find(|v| matches!(v.problem, CounterProblem::Duplicate { .. }))
            .unwrap();
        assert_eq!(dup.occurrences, 49);
        assert!(dup.to_string().contains("(the first of 49 like it)"));
    }
}
