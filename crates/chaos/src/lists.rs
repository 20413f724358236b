//! Checking lists used as queues: `RPUSH` appends, `LPOP` takes the head.
//!
//! [`check_lists`] says what is checked; [`ListProblem`] is what it finds.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use crate::final_reads::FinalCollections;
use crate::history::{fmt_value, foreign_ops, ops_by_key, Op, OpKind, Outcome};
use crate::report::{Found, KeyViolation};

/// A problem with one list; see [`check_lists`] for the checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListProblem {
    /// The key was written with commands other than `RPUSH` and `LPOP`,
    /// so it is not checked as a queue.
    NotOnlyListCommands,
    /// Two `RPUSH`es that did not fail pushed the same value, so values
    /// do not name pushes and the key is not checked.
    PushedTwice {
        /// The value.
        value: Vec<u8>,
    },
    /// An acknowledged `RPUSH` replied something other than a length from
    /// 1 to the number of `RPUSH`es invoked by its reply (check 1).
    BadLength {
        /// The reply (`None`: nil).
        reply: Option<Vec<u8>>,
        /// How many `RPUSH`es that did not fail had been invoked by then.
        invoked: usize,
    },
    /// A value was returned by `LPOP` or listed more than once in all
    /// (check 2).
    Duplicated {
        /// The value.
        value: Vec<u8>,
        /// How many acknowledged `LPOP`s returned it.
        popped: usize,
        /// How many times the final list holds it.
        listed: usize,
    },
    /// A value in the final list or returned by an `LPOP` that no `RPUSH`
    /// (failed ones aside) pushed (check 3).
    FromNowhere {
        /// The value.
        value: Vec<u8>,
    },
    /// An `LPOP` returned a value whose `RPUSH` was invoked after the
    /// `LPOP`'s reply (check 3).
    PoppedBeforePushed {
        /// The value.
        value: Vec<u8>,
    },
    /// More acknowledged pushes are missing from both the final list and
    /// the `LPOP` replies than `LPOP`s were indeterminate (check 4).
    Lost {
        /// How many acknowledged pushes are missing.
        missing: usize,
        /// How many `LPOP`s were indeterminate.
        indeterminate_pops: usize,
    },
    /// The final list holds a value ahead of one pushed before it
    /// (check 5).
    OutOfOrder {
        /// The value pushed first, listed second.
        pushed_first: Vec<u8>,
        /// The value listed first, pushed second.
        listed_first: Vec<u8>,
    },
    /// A value is gone while one pushed before it is still in the final
    /// list (check 5).
    Skipped {
        /// The value gone.
        gone: Vec<u8>,
        /// The value pushed before it, still listed.
        kept: Vec<u8>,
    },
    /// An `LPOP` returned a value, and completed before another `LPOP`,
    /// which returned a value pushed before it (check 5).
    PoppedOutOfOrder {
        /// The value pushed first, popped second.
        pushed_first: Vec<u8>,
        /// The value popped first, pushed second.
        popped_first: Vec<u8>,
    },
    /// An acknowledged `LPOP` found the list empty while a value was
    /// certainly in it (check 5).
    PoppedEmpty {
        /// The value in the list meanwhile.
        kept: Vec<u8>,
    },
}

impl fmt::Display for ListProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = |f: &mut fmt::Formatter<'_>, value: &[u8]| fmt_value(f, Some(value));
        match self {
            Self::NotOnlyListCommands => f.write_str(
                "written with commands other than RPUSH and LPOP, so not checked as a queue",
            ),
            Self::PushedTwice { value } => {
                f.write_str("value ")?;
                v(f, value)?;
                f.write_str(" pushed twice, so the list is not checked (values must be unique)")
            }
            Self::BadLength { reply, invoked } => {
                f.write_str("impossible length: an RPUSH replied ")?;
                fmt_value(f, reply.as_deref())?;
                write!(f, ", but only {invoked} RPUSHes that did not fail had been invoked by then")
            }
            Self::Duplicated {
                value,
                popped,
                listed,
            } => {
                f.write_str("duplicated value: ")?;
                v(f, value)?;
                write!(f, " was returned by {popped} LPOPs and is listed {listed} times in the final list")
            }
            Self::FromNowhere { value } => {
                f.write_str("value from nowhere: ")?;
                v(f, value)?;
                f.write_str(" was never pushed by an RPUSH that did not fail")
            }
            Self::PoppedBeforePushed { value } => {
                f.write_str("popped before pushed: an LPOP returned ")?;
                v(f, value)?;
                f.write_str(" before its RPUSH was invoked")
            }
            Self::Lost {
                missing,
                indeterminate_pops,
            } => write!(
                f,
                "lost push: {missing} acknowledged RPUSHes are neither in the final list nor popped, but only {indeterminate_pops} LPOPs were indeterminate"
            ),
            Self::OutOfOrder {
                pushed_first,
                listed_first,
            } => {
                f.write_str("out of order: the final list has ")?;
                v(f, listed_first)?;
                f.write_str(" ahead of ")?;
                v(f, pushed_first)?;
                f.write_str(", whose RPUSH completed before that of the first was invoked")
            }
            Self::Skipped { gone, kept } => {
                f.write_str("skipped: ")?;
                v(f, gone)?;
                f.write_str(" left the list (popped, or lost) while ")?;
                v(f, kept)?;
                f.write_str(", pushed before it, is still in it")
            }
            Self::PoppedOutOfOrder {
                pushed_first,
                popped_first,
            } => {
                f.write_str("popped out of order: an LPOP returned ")?;
                v(f, popped_first)?;
                f.write_str(" before another LPOP, which returned ")?;
                v(f, pushed_first)?;
                f.write_str(", pushed before it, was invoked")
            }
            Self::PoppedEmpty { kept } => {
                f.write_str("empty pop: an LPOP found the list empty while ")?;
                v(f, kept)?;
                f.write_str(" was certainly in it")
            }
        }
    }
}

/// A problem with one list key, with the ops that show it.
pub type ListViolation = KeyViolation<ListProblem>;

/// Checks every key that has an `RPUSH` or `LPOP` in `history` or a value
/// in `finals` as a queue, against the final list read once the cluster
/// has healed (`LRANGE key 0 -1`).
///
/// Every value is pushed by one `RPUSH` at most (the workload makes values
/// unique), so a value names its push. An acknowledged op applied once
/// between its invoke and its reply; an indeterminate one applied once at
/// some time after its invoke, or never; a failed one never. "`a` before
/// `b`" below means `a`'s reply arrived before `b` was invoked. A value is
/// *gone* when an acknowledged `LPOP` returned it, or when its `RPUSH` was
/// acknowledged and it is not in the final list either. Asserted:
///
/// 1. each acknowledged `RPUSH` replied a length from 1 to the number of
///    `RPUSH`es, failed ones aside, invoked by its reply;
/// 2. no value is both in the final list and returned by an acknowledged
///    `LPOP`, or returned twice, or listed twice;
/// 3. every value in the final list or returned by an `LPOP` was pushed by
///    an `RPUSH` that did not fail, and one that `LPOP` returned was pushed
///    by an `RPUSH` invoked before the `LPOP`'s reply;
/// 4. no acknowledged push is lost: the acknowledged `RPUSH`es whose value
///    is neither in the final list nor returned by an `LPOP` are no more
///    than the indeterminate `LPOP`s, each of which may have taken one;
/// 5. first in, first out, when the push of `a` was before the push of
///    `b`: if both are in the final list, `a` is ahead of `b`; `b` is not
///    gone while `a` is still in the final list; an `LPOP` that returned
///    `b` was not before one that returned `a`; and no acknowledged `LPOP`
///    found the list empty while a value was certainly in it (pushed before
///    the `LPOP`, and in the final list or taken by an `LPOP` that the
///    empty one was before).
///
/// These are necessary conditions for a linearizable queue, checked in
/// O(n log n) per key, not a full linearizability search. Keys missing
/// from `finals` skip what needs the final list. Returns one entry per kind
/// of problem per key, in key order; empty means all is well.
pub fn check_lists(history: &[Op], finals: &FinalCollections) -> Vec<ListViolation> {
    let is_list_op = |kind: &OpKind| matches!(kind, OpKind::RPush(_) | OpKind::LPop);
    ops_by_key(history, is_list_op, finals.keys().map(Vec::as_slice))
        .into_iter()
        .flat_map(|(key, ops)| {
            let mut found = Found::new(key);
            let others = foreign_ops(&ops, is_list_op);
            if !others.is_empty() {
                found.push(ListProblem::NotOnlyListCommands, others);
            } else if let Some(queue) = Queue::new(&ops, finals.get(key), &mut found) {
                queue.check(&mut found);
            }
            found.into_vec()
        })
        .collect()
}

/// A value and the `RPUSH` that pushed it.
type Pushed<'a> = (&'a [u8], &'a Op);

/// One key's ops, sorted for the checks.
struct Queue<'a> {
    /// The `RPUSH`es that did not fail, in history order.
    pushes: Vec<&'a Op>,
    /// The `RPUSH` of each value, failed ones aside.
    push_of: HashMap<&'a [u8], &'a Op>,
    /// The acknowledged `LPOP`s that returned a value, and the value.
    popped: Vec<(&'a [u8], &'a Op)>,
    /// The acknowledged `LPOP`s that found the list empty.
    empty_pops: Vec<&'a Op>,
    /// The indeterminate `LPOP`s.
    unknown_pops: Vec<&'a Op>,
    /// The final list, if it was read.
    listed: Option<&'a [Vec<u8>]>,
}

impl<'a> Queue<'a> {
    /// Sorts `ops`; `None` (with the problem noted) if a value was pushed
    /// twice.
    fn new(
        ops: &[&'a Op],
        listed: Option<&'a Vec<Vec<u8>>>,
        found: &mut Found<'_, ListProblem>,
    ) -> Option<Self> {
        let mut queue = Queue {
            pushes: Vec::new(),
            push_of: HashMap::new(),
            popped: Vec::new(),
            empty_pops: Vec::new(),
            unknown_pops: Vec::new(),
            listed: listed.map(Vec::as_slice),
        };
        for &op in ops {
            match (&op.kind, &op.outcome) {
                (OpKind::RPush(_), Outcome::Fail) => {}
                (OpKind::RPush(value), _) => {
                    queue.pushes.push(op);
                    if let Some(first) = queue.push_of.insert(value, op) {
                        let value = value.clone();
                        found.push(ListProblem::PushedTwice { value }, [first, op]);
                        return None;
                    }
                }
                (OpKind::LPop, Outcome::Ok(Some(value))) => queue.popped.push((value, op)),
                (OpKind::LPop, Outcome::Ok(None)) => queue.empty_pops.push(op),
                (OpKind::LPop, Outcome::Unknown) => queue.unknown_pops.push(op),
                _ => {}
            }
        }
        Some(queue)
    }

    fn check(&self, found: &mut Found<'_, ListProblem>) {
        self.lengths(found);
        self.duplicates(found);
        self.origins(found);
        let missing = self.missing();
        if let Some(missing) = &missing {
            self.lost(missing, found);
        }
        self.listed_in_order(found);
        self.nothing_skipped(missing.as_deref().unwrap_or_default(), found);
        self.popped_in_order(found);
        self.empty_only_when_empty(found);
    }

    /// The final list, empty if it was not read.
    fn listed(&self) -> &'a [Vec<u8>] {
        self.listed.unwrap_or_default()
    }

    /// The listed values whose push is known, in list order.
    fn listed_pushes(&self) -> impl DoubleEndedIterator<Item = Pushed<'a>> + '_ {
        self.listed()
            .iter()
            .filter_map(|value| self.push_of.get_key_value(value.as_slice()))
            .map(|(value, push)| (*value, *push))
    }

    /// The popped values whose push is known, with the push and the pop.
    fn popped_pushes(&self) -> impl Iterator<Item = (Pushed<'a>, &'a Op)> + '_ {
        self.popped.iter().filter_map(|&(value, pop)| {
            let push = self.push_of.get(value)?;
            Some(((value, *push), pop))
        })
    }

    /// Check 1.
    fn lengths(&self, found: &mut Found<'_, ListProblem>) {
        let mut invokes: Vec<u64> = self.pushes.iter().map(|op| op.invoke_ns).collect();
        invokes.sort_unstable();
        for push in &self.pushes {
            let Outcome::Ok(reply) = &push.outcome else {
                continue;
            };
            let invoked = invokes.partition_point(|&t| t <= push.done_ns());
            let within = push
                .int_reply()
                .and_then(|n| usize::try_from(n).ok())
                .is_some_and(|n| (1..=invoked).contains(&n));
            if !within {
                let reply = reply.clone();
                found.push(ListProblem::BadLength { reply, invoked }, [*push]);
            }
        }
    }

    /// Check 2.
    fn duplicates(&self, found: &mut Found<'_, ListProblem>) {
        // Each value's pops, and how often it is listed.
        let mut seen: BTreeMap<&[u8], (Vec<&Op>, usize)> = BTreeMap::new();
        for value in self.listed() {
            seen.entry(value).or_default().1 += 1;
        }
        for &(value, pop) in &self.popped {
            seen.entry(value).or_default().0.push(pop);
        }
        for (value, (pops, listed)) in seen {
            if pops.len() + listed > 1 {
                let problem = ListProblem::Duplicated {
                    value: value.to_vec(),
                    popped: pops.len(),
                    listed,
                };
                found.push(
                    problem,
                    self.push_of.get(value).into_iter().copied().chain(pops),
                );
            }
        }
    }

    /// Check 3.
    fn origins(&self, found: &mut Found<'_, ListProblem>) {
        for value in self.listed() {
            if !self.push_of.contains_key(value.as_slice()) {
                found.push(
                    ListProblem::FromNowhere {
                        value: value.clone(),
                    },
                    [],
                );
            }
        }
        for &(value, pop) in &self.popped {
            let value_owned = || value.to_vec();
            match self.push_of.get(value) {
                None => found.push(
                    ListProblem::FromNowhere {
                        value: value_owned(),
                    },
                    [pop],
                ),
                Some(push) if push.invoke_ns > pop.done_ns() => found.push(
                    ListProblem::PoppedBeforePushed {
                        value: value_owned(),
                    },
                    [pop, *push],
                ),
                Some(_) => {}
            }
        }
    }

    /// The acknowledged pushes whose value is neither listed nor popped, in
    /// invoke order; `None` if the final list was not read.
    fn missing(&self) -> Option<Vec<Pushed<'a>>> {
        let listed = self.listed?;
        let present: HashSet<&[u8]> = listed
            .iter()
            .map(Vec::as_slice)
            .chain(self.popped.iter().map(|&(value, _)| value))
            .collect();
        let mut missing: Vec<Pushed<'a>> = self
            .push_of
            .iter()
            .filter(|(value, push)| {
                matches!(push.outcome, Outcome::Ok(_)) && !present.contains(*value)
            })
            .map(|(value, push)| (*value, *push))
            .collect();
        missing.sort_by_key(|&(value, push)| (push.invoke_ns, value));
        Some(missing)
    }

    /// Check 4.
    fn lost(&self, missing: &[Pushed<'a>], found: &mut Found<'_, ListProblem>) {
        if missing.len() > self.unknown_pops.len() {
            let problem = ListProblem::Lost {
                missing: missing.len(),
                indeterminate_pops: self.unknown_pops.len(),
            };
            let pushes = missing.iter().map(|(_, push)| *push);
            found.push(problem, pushes.chain(self.unknown_pops.iter().copied()));
        }
    }

    /// Check 5, final list: walking from its tail, each value against the
    /// value behind it whose push completed first.
    fn listed_in_order(&self, found: &mut Found<'_, ListProblem>) {
        let mut first_done_behind: Option<Pushed<'a>> = None;
        for (value, push) in self.listed_pushes().rev() {
            if let Some((behind, behind_push)) =
                first_done_behind.filter(|(_, b)| b.done_ns() < push.invoke_ns)
            {
                let problem = ListProblem::OutOfOrder {
                    pushed_first: behind.to_vec(),
                    listed_first: value.to_vec(),
                };
                found.push(problem, [behind_push, push]);
            }
            if first_done_behind.is_none_or(|(_, b)| push.done_ns() < b.done_ns()) {
                first_done_behind = Some((value, push));
            }
        }
    }

    /// Check 5, gone values: each against the listed value whose push
    /// completed first.
    fn nothing_skipped(&self, missing: &[Pushed<'a>], found: &mut Found<'_, ListProblem>) {
        let Some((kept, kept_push)) = self.listed_pushes().min_by_key(|(_, p)| p.done_ns()) else {
            return;
        };
        let popped = self.popped_pushes().map(|(pushed, _)| pushed);
        for (gone, push) in popped.chain(missing.iter().copied()) {
            if kept_push.done_ns() < push.invoke_ns {
                let problem = ListProblem::Skipped {
                    gone: gone.to_vec(),
                    kept: kept.to_vec(),
                };
                found.push(problem, [kept_push, push]);
            }
        }
    }

    /// Check 5, pops: each against the pops completed before it was
    /// invoked, the one whose value's push was invoked last.
    fn popped_in_order(&self, found: &mut Found<'_, ListProblem>) {
        let mut by_done: Vec<(Pushed<'a>, &Op)> = self.popped_pushes().collect();
        by_done.sort_by_key(|(_, pop)| pop.done_ns());
        let mut by_invoke = by_done.clone();
        by_invoke.sort_by_key(|(_, pop)| pop.invoke_ns);
        let mut done = by_done.into_iter().peekable();
        let mut latest_pushed: Option<(Pushed<'a>, &Op)> = None;
        for ((value, push), pop) in by_invoke {
            while let Some(earlier) = done.next_if(|(_, p)| p.done_ns() < pop.invoke_ns) {
                let ((_, earlier_push), _) = earlier;
                if latest_pushed.is_none_or(|((_, l), _)| earlier_push.invoke_ns > l.invoke_ns) {
                    latest_pushed = Some(earlier);
                }
            }
            if let Some(((first, first_push), first_pop)) =
                latest_pushed.filter(|((_, l), _)| push.done_ns() < l.invoke_ns)
            {
                let problem = ListProblem::PoppedOutOfOrder {
                    pushed_first: value.to_vec(),
                    popped_first: first.to_vec(),
                };
                found.push(problem, [push, first_push, first_pop, pop]);
            }
        }
    }

    /// Check 5, empty pops: each against the values pushed before it,
    /// the one that left the list last (listed ones never left).
    fn empty_only_when_empty(&self, found: &mut Found<'_, ListProblem>) {
        // A value, its push, and when the op that took it was invoked.
        let mut held: Vec<(Pushed<'a>, u64)> = self
            .listed_pushes()
            .map(|pushed| (pushed, u64::MAX))
            .chain(
                self.popped_pushes()
                    .map(|(pushed, pop)| (pushed, pop.invoke_ns)),
            )
            .collect();
        held.sort_by_key(|((_, push), _)| push.done_ns());
        let mut empty_pops = self.empty_pops.clone();
        empty_pops.sort_by_key(|pop| pop.invoke_ns);
        let mut held = held.into_iter().peekable();
        let mut left_last: Option<(Pushed<'a>, u64)> = None;
        for pop in empty_pops {
            while let Some(h) = held.next_if(|((_, push), _)| push.done_ns() < pop.invoke_ns) {
                if left_last.is_none_or(|(_, left)| h.1 > left) {
                    left_last = Some(h);
                }
            }
            if let Some(((kept, push), _)) = left_last.filter(|(_, left)| *left > pop.done_ns()) {
                let kept = kept.to_vec();
                found.push(ListProblem::PoppedEmpty { kept }, [push, pop]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: &[u8] = b"l";

    fn op(client: u64, kind: OpKind, t: (u64, u64), outcome: Outcome) -> Op {
        Op {
            client,
            key: L.to_vec(),
            kind,
            invoke_ns: t.0,
            complete_ns: t.1,
            outcome,
        }
    }

    /// An `RPUSH` of `value` that replied `len` (`None`: indeterminate).
    fn push(value: &str, len: Option<i64>, t: (u64, u64)) -> Op {
        let outcome = match len {
            Some(n) => Outcome::Ok(Some(n.to_string().into_bytes())),
            None => Outcome::Unknown,
        };
        op(1, OpKind::RPush(value.into()), t, outcome)
    }

    /// An acknowledged `LPOP` that returned `value` (`None`: empty).
    fn pop(value: Option<&str>, t: (u64, u64)) -> Op {
        op(2, OpKind::LPop, t, Outcome::Ok(value.map(Into::into)))
    }

    fn with(op: Op, outcome: Outcome) -> Op {
        Op { outcome, ..op }
    }

    fn finals(values: &[&str]) -> FinalCollections {
        let values = values.iter().map(|v| v.as_bytes().to_vec()).collect();
        BTreeMap::from([(L.to_vec(), values)])
    }

    fn problems(history: &[Op], listed: &[&str]) -> Vec<ListProblem> {
        check_lists(history, &finals(listed))
            .into_iter()
            .map(|v| v.problem)
            .collect()
    }

    fn value(v: &str) -> Vec<u8> {
        v.as_bytes().to_vec()
    }

    #[test]
    fn a_queue_that_behaves() {
        let h = [
            push("a", Some(1), (0, 1)),
            push("b", Some(2), (2, 3)),
            // Concurrent pushes, in either order.
            push("c", Some(3), (4, 10)),
            push("d", Some(3), (4, 10)),
            pop(Some("a"), (11, 12)),
            pop(Some("b"), (13, 14)),
            pop(None, (0, 1)),
            push("e", None, (15, 16)),
            with(push("f", None, (15, 16)), Outcome::Fail),
        ];
        assert_eq!(problems(&h, &["d", "c", "e"]), []);
        assert_eq!(problems(&h, &["c", "d"]), []);
        // Never read: nothing to hold against.
        assert!(check_lists(&h, &BTreeMap::new()).is_empty());
    }

    #[test]
    fn lengths() {
        let h = [push("a", Some(1), (0, 1)), push("b", Some(3), (2, 3))];
        assert_eq!(
            problems(&h, &["a", "b"]),
            [ListProblem::BadLength {
                reply: Some(value("3")),
                invoked: 2
            }]
        );
        let h = [push("a", Some(0), (0, 1))];
        assert!(matches!(
            problems(&h, &["a"])[..],
            [ListProblem::BadLength { invoked: 1, .. }]
        ));
        let h = [with(push("a", None, (0, 1)), Outcome::Ok(None))];
        let found = check_lists(&h, &finals(&["a"]));
        let text = found[0].to_string();
        assert!(
            text.starts_with("key \"l\": impossible length: an RPUSH replied nil"),
            "{text}"
        );
    }

    #[test]
    fn a_value_leaves_once() {
        let h = [push("a", Some(1), (0, 1)), pop(Some("a"), (2, 3))];
        assert_eq!(
            problems(&h, &["a"]),
            [ListProblem::Duplicated {
                value: value("a"),
                popped: 1,
                listed: 1
            }]
        );
        let h = [
            push("a", Some(1), (0, 1)),
            pop(Some("a"), (2, 3)),
            pop(Some("a"), (2, 3)),
        ];
        let found = check_lists(&h, &finals(&[]));
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].ops.len(), 3);
        assert!(found[0]
            .to_string()
            .contains("\"a\" was returned by 2 LPOPs and is listed 0 times"));
    }

    #[test]
    fn values_come_from_pushes() {
        let h = [
            with(push("b", None, (0, 1)), Outcome::Fail),
            pop(Some("b"), (2, 3)),
            pop(Some("c"), (4, 5)),
            pop(Some("d"), (4, 5)),
            push("d", None, (6, 7)),
        ];
        let found = check_lists(&h, &finals(&["x"]));
        let seen: Vec<(&ListProblem, usize)> =
            found.iter().map(|v| (&v.problem, v.occurrences)).collect();
        assert_eq!(
            seen,
            [
                (&ListProblem::FromNowhere { value: value("x") }, 3),
                (&ListProblem::PoppedBeforePushed { value: value("d") }, 1),
            ]
        );
        let text = found[1].to_string();
        assert!(
            text.starts_with("key \"l\": popped before pushed: an LPOP returned \"d\" before its RPUSH was invoked\n  client 2: lpop"),
            "{text}"
        );
    }

    #[test]
    fn lost_pushes_unless_an_indeterminate_pop_took_them() {
        let h = [
            push("a", Some(1), (0, 1)),
            push("b", Some(2), (2, 3)),
            push("c", None, (2, 3)),
        ];
        // "c" may never have applied.
        assert_eq!(problems(&h, &["a", "b"]), []);
        // Gone, and behind one still there.
        assert_eq!(
            problems(&h, &["a"]),
            [
                ListProblem::Lost {
                    missing: 1,
                    indeterminate_pops: 0
                },
                ListProblem::Skipped {
                    gone: value("b"),
                    kept: value("a")
                }
            ]
        );
        let taken = with(pop(None, (4, 5)), Outcome::Unknown);
        let h = [h[0].clone(), h[1].clone(), taken];
        assert_eq!(problems(&h, &["b"]), []);
        // One indeterminate pop takes one value, and only the head.
        assert!(matches!(
            problems(&h, &[])[..],
            [ListProblem::Lost {
                missing: 2,
                indeterminate_pops: 1
            }]
        ));
        assert_eq!(
            problems(&h, &["a"]),
            [ListProblem::Skipped {
                gone: value("b"),
                kept: value("a")
            }]
        );
    }

    #[test]
    fn the_final_list_keeps_push_order() {
        let h = [
            push("a", Some(1), (0, 1)),
            push("b", Some(2), (2, 3)),
            push("c", None, (4, 5)),
        ];
        assert_eq!(
            problems(&h, &["b", "a", "c"]),
            [ListProblem::OutOfOrder {
                pushed_first: value("a"),
                listed_first: value("b")
            }]
        );
        let found = check_lists(&h, &finals(&["c", "b", "a"]));
        assert_eq!(found[0].occurrences, 2, "{found:?}");
        let text = found[0].to_string();
        assert!(
            text.contains("the final list has \"b\" ahead of \"a\""),
            "{text}"
        );
    }

    #[test]
    fn pops_take_the_head() {
        let h = [
            push("a", Some(1), (0, 1)),
            push("b", Some(2), (2, 3)),
            pop(Some("b"), (4, 5)),
            pop(Some("a"), (6, 7)),
        ];
        assert_eq!(
            problems(&h, &[]),
            [ListProblem::PoppedOutOfOrder {
                pushed_first: value("a"),
                popped_first: value("b")
            }]
        );
        // Concurrent pops may return them either way.
        let mut h = h;
        h[3].invoke_ns = 5;
        assert_eq!(problems(&h, &[]), []);
    }

    #[test]
    fn an_empty_pop_needs_an_empty_list() {
        let h = [
            push("a", Some(1), (0, 1)),
            pop(None, (2, 3)),
            pop(Some("a"), (4, 5)),
        ];
        assert_eq!(
            problems(&h, &[]),
            [ListProblem::PoppedEmpty { kept: value("a") }]
        );
        assert!(matches!(
            problems(&h[..2], &["a"])[..],
            [ListProblem::PoppedEmpty { .. }]
        ));
        // Concurrent with the push, or with the pop that took the value.
        let h = [
            push("a", Some(1), (0, 2)),
            pop(None, (2, 3)),
            pop(Some("a"), (3, 5)),
        ];
        assert_eq!(problems(&h, &[]), []);
    }

    #[test]
    fn keys_that_are_not_queues() {
        let h = [
            push("a", Some(1), (0, 1)),
            op(1, OpKind::Write(None), (2, 3), Outcome::Ok(None)),
        ];
        assert_eq!(problems(&h, &[]), [ListProblem::NotOnlyListCommands]);
        let h = [push("a", Some(1), (0, 1)), push("a", Some(2), (2, 3))];
        let found = check_lists(&h, &finals(&["a"]));
        assert_eq!(found.len(), 1);
        assert_eq!(
            found[0].problem,
            ListProblem::PushedTwice { value: value("a") }
        );
        assert_eq!(found[0].ops.len(), 2);
        // A list read but never written must be empty.
        assert_eq!(
            problems(&[], &["a"]),
            [ListProblem::FromNowhere { value: value("a") }]
        );
    }
}
