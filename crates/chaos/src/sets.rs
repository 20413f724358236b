//! Checking sets: `SADD` adds a member, `SREM` removes it.
//!
//! [`check_sets`] says what is checked; [`SetProblem`] is what it finds.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::ptr;

use crate::final_reads::FinalCollections;
use crate::history::{fmt_value, foreign_ops, ops_by_key, Op, OpKind, Outcome};
use crate::report::{Found, KeyViolation};

/// A problem with one set; see [`check_sets`] for the checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetProblem {
    /// The key was written with commands other than `SADD` and `SREM`, so
    /// it is not checked as a set.
    NotOnlySetCommands,
    /// An acknowledged `SADD` or `SREM` replied something other than 0 or
    /// 1 (check 1).
    BadReply {
        /// The reply (`None`: nil).
        reply: Option<Vec<u8>>,
    },
    /// An `SREM` replied 1 (removed), but no `SADD` of the member had been
    /// invoked by then (check 2).
    RemovedBeforeAdded {
        /// The member.
        member: Vec<u8>,
    },
    /// An `SADD` replied 0 (already there), but no other `SADD` of the
    /// member had been invoked by then (check 2).
    FoundBeforeAdded {
        /// The member.
        member: Vec<u8>,
    },
    /// The final set lists a member more than once (check 3).
    Duplicated {
        /// The member.
        member: Vec<u8>,
        /// How many times it is listed.
        listed: usize,
    },
    /// An acknowledged `SADD`'s member is missing from the final set, and
    /// every `SREM` of it was before the `SADD` (check 4).
    Lost {
        /// The member.
        member: Vec<u8>,
    },
    /// A member of the final set that no `SADD` (failed ones aside) added
    /// (check 5).
    FromNowhere {
        /// The member.
        member: Vec<u8>,
    },
    /// A member of the final set that an acknowledged `SREM` removed after
    /// every `SADD` of it (check 5).
    Resurrected {
        /// The member.
        member: Vec<u8>,
    },
}

impl fmt::Display for SetProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = |f: &mut fmt::Formatter<'_>, member: &[u8]| fmt_value(f, Some(member));
        match self {
            Self::NotOnlySetCommands => f.write_str(
                "written with commands other than SADD and SREM, so not checked as a set",
            ),
            Self::BadReply { reply } => {
                f.write_str("impossible reply: an SADD or SREM replied ")?;
                fmt_value(f, reply.as_deref())?;
                f.write_str(", not 0 or 1")
            }
            Self::RemovedBeforeAdded { member } => {
                f.write_str("removed before added: an SREM of ")?;
                m(f, member)?;
                f.write_str(" replied 1, but no SADD of it had been invoked by then")
            }
            Self::FoundBeforeAdded { member } => {
                f.write_str("found before added: an SADD of ")?;
                m(f, member)?;
                f.write_str(" replied 0, but no other SADD of it had been invoked by then")
            }
            Self::Duplicated { member, listed } => {
                f.write_str("duplicated member: the final set lists ")?;
                m(f, member)?;
                write!(f, " {listed} times")
            }
            Self::Lost { member } => {
                f.write_str("lost add: ")?;
                m(f, member)?;
                f.write_str(
                    " is not in the final set, though it was added and no SREM of it came after",
                )
            }
            Self::FromNowhere { member } => {
                f.write_str("member from nowhere: ")?;
                m(f, member)?;
                f.write_str(" is in the final set, but no SADD that did not fail added it")
            }
            Self::Resurrected { member } => {
                f.write_str("resurrected member: ")?;
                m(f, member)?;
                f.write_str(
                    " is in the final set, but an acknowledged SREM removed it after every SADD",
                )
            }
        }
    }
}

/// A problem with one set key, with the ops that show it.
pub type SetViolation = KeyViolation<SetProblem>;

/// Checks every key that has an `SADD` or `SREM` in `history` or members
/// in `finals` as a set, against the final set read once the cluster has
/// healed (`SMEMBERS key`).
///
/// An acknowledged op applied once between its invoke and its reply; an
/// indeterminate one applied once at some time after its invoke, or never;
/// a failed one never. "`a` before `b`" below means `a`'s reply arrived
/// before `b` was invoked. Asserted:
///
/// 1. each acknowledged `SADD` or `SREM` replied 0 or 1;
/// 2. an `SREM` that replied 1 found the member there, and so did an
///    `SADD` that replied 0: an `SADD` of it (another one, for an `SADD`)
///    that did not fail had been invoked by the reply;
/// 3. the final set lists no member twice;
/// 4. no acknowledged add is lost: the member of an acknowledged `SADD` is
///    in the final set, unless an `SREM` of it that did not fail may have
///    applied after the `SADD` (was not before it);
/// 5. every member of the final set was added by an `SADD` that did not
///    fail and that no acknowledged `SREM` of it was after (a member
///    removed after every add of it stays removed).
///
/// These are necessary conditions for a linearizable set, checked in
/// O(n log n) per key. Keys missing from `finals` skip checks 3 to 5.
/// Returns one entry per kind of problem per key, in key order; empty
/// means all is well.
pub fn check_sets(history: &[Op], finals: &FinalCollections) -> Vec<SetViolation> {
    let is_set_op = |kind: &OpKind| matches!(kind, OpKind::SAdd(_) | OpKind::SRem(_));
    ops_by_key(history, is_set_op, finals.keys().map(Vec::as_slice))
        .into_iter()
        .flat_map(|(key, ops)| {
            let mut found = Found::new(key);
            let others = foreign_ops(&ops, is_set_op);
            if others.is_empty() {
                check_set(&ops, finals.get(key).map(Vec::as_slice), &mut found);
            } else {
                found.push(SetProblem::NotOnlySetCommands, others);
            }
            found.into_vec()
        })
        .collect()
}

/// The `SADD`s and `SREM`s of one member that did not fail.
#[derive(Default)]
struct Member<'a> {
    adds: Vec<&'a Op>,
    removes: Vec<&'a Op>,
}

impl Member<'_> {
    /// The acknowledged `SREM`s.
    fn acked_removes(&self) -> impl Iterator<Item = &Op> + '_ {
        let acked = |op: &&&Op| matches!(op.outcome, Outcome::Ok(_));
        self.removes.iter().filter(acked).copied()
    }
}

/// Checks one set key's ops; `members` is `None` when not read.
fn check_set(ops: &[&Op], members: Option<&[Vec<u8>]>, found: &mut Found<'_, SetProblem>) {
    let mut by_member: BTreeMap<&[u8], Member<'_>> = BTreeMap::new();
    for &op in ops.iter().filter(|op| op.outcome != Outcome::Fail) {
        match &op.kind {
            OpKind::SAdd(member) => by_member.entry(member).or_default().adds.push(op),
            OpKind::SRem(member) => by_member.entry(member).or_default().removes.push(op),
            _ => {}
        }
    }
    for (member, ops) in &by_member {
        replies(member, ops, found);
    }
    let Some(members) = members else {
        return;
    };
    let listed = duplicates(members, found);
    for (member, ops) in &by_member {
        if !listed.contains(member) {
            lost(member, ops, found);
        }
    }
    for member in members {
        let none = Member::default();
        added(
            member,
            by_member.get(member.as_slice()).unwrap_or(&none),
            found,
        );
    }
}

/// Checks 1 and 2.
fn replies(member: &[u8], ops: &Member<'_>, found: &mut Found<'_, SetProblem>) {
    let member_owned = || member.to_vec();
    // Whether an SADD of the member, other than `skip`, was invoked by the
    // reply to `op`.
    let added_by = |op: &Op, skip: Option<&Op>| {
        ops.adds
            .iter()
            .any(|add| skip.is_none_or(|s| !ptr::eq(*add, s)) && add.invoke_ns <= op.done_ns())
    };
    for &op in ops.adds.iter().chain(&ops.removes) {
        let Outcome::Ok(reply) = &op.outcome else {
            continue;
        };
        let is_add = matches!(op.kind, OpKind::SAdd(_));
        match op.int_reply() {
            Some(0) if is_add && !added_by(op, Some(op)) => found.push(
                SetProblem::FoundBeforeAdded {
                    member: member_owned(),
                },
                [op],
            ),
            Some(1) if !is_add && !added_by(op, None) => found.push(
                SetProblem::RemovedBeforeAdded {
                    member: member_owned(),
                },
                [op],
            ),
            Some(0 | 1) => {}
            _ => {
                let reply = reply.clone();
                found.push(SetProblem::BadReply { reply }, [op]);
            }
        }
    }
}

/// Check 3; the members listed.
fn duplicates<'m>(members: &'m [Vec<u8>], found: &mut Found<'_, SetProblem>) -> HashSet<&'m [u8]> {
    let mut counts: BTreeMap<&[u8], usize> = BTreeMap::new();
    for member in members {
        *counts.entry(member).or_default() += 1;
    }
    for (member, &listed) in counts.iter().filter(|(_, n)| **n > 1) {
        let member = member.to_vec();
        found.push(SetProblem::Duplicated { member, listed }, []);
    }
    counts.into_keys().collect()
}

/// Check 4, for a member not listed.
fn lost(member: &[u8], ops: &Member<'_>, found: &mut Found<'_, SetProblem>) {
    // The SREM that may have applied last.
    let last_remove_done = ops.removes.iter().map(|r| r.done_ns()).max();
    let acked = ops
        .adds
        .iter()
        .filter(|add| matches!(add.outcome, Outcome::Ok(_)));
    for add in acked {
        if last_remove_done.is_none_or(|done| done < add.invoke_ns) {
            let problem = SetProblem::Lost {
                member: member.to_vec(),
            };
            found.push(
                problem,
                [*add].into_iter().chain(ops.removes.iter().copied()),
            );
        }
    }
}

/// Check 5, for a listed member.
fn added(member: &[u8], ops: &Member<'_>, found: &mut Found<'_, SetProblem>) {
    let member = member.to_vec();
    let Some(last_add) = ops.adds.iter().max_by_key(|add| add.done_ns()) else {
        found.push(SetProblem::FromNowhere { member }, []);
        return;
    };
    if let Some(remove) = ops
        .acked_removes()
        .find(|remove| last_add.done_ns() < remove.invoke_ns)
    {
        let shown = ops.adds.iter().copied().chain([remove]);
        found.push(SetProblem::Resurrected { member }, shown);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: &[u8] = b"s";

    fn op(kind: OpKind, t: (u64, u64), reply: Option<i64>) -> Op {
        Op {
            client: 1,
            key: S.to_vec(),
            kind,
            invoke_ns: t.0,
            complete_ns: t.1,
            outcome: match reply {
                Some(n) => Outcome::Ok(Some(n.to_string().into_bytes())),
                None => Outcome::Unknown,
            },
        }
    }

    /// An `SADD` of `member` that replied `reply` (`None`: indeterminate).
    fn sadd(member: &str, reply: Option<i64>, t: (u64, u64)) -> Op {
        op(OpKind::SAdd(member.into()), t, reply)
    }

    fn srem(member: &str, reply: Option<i64>, t: (u64, u64)) -> Op {
        op(OpKind::SRem(member.into()), t, reply)
    }

    fn failed(op: Op) -> Op {
        Op {
            outcome: Outcome::Fail,
            ..op
        }
    }

    fn finals(members: &[&str]) -> FinalCollections {
        let members = members.iter().map(|m| m.as_bytes().to_vec()).collect();
        BTreeMap::from([(S.to_vec(), members)])
    }

    fn problems(history: &[Op], members: &[&str]) -> Vec<SetProblem> {
        check_sets(history, &finals(members))
            .into_iter()
            .map(|v| v.problem)
            .collect()
    }

    fn m(member: &str) -> Vec<u8> {
        member.as_bytes().to_vec()
    }

    #[test]
    fn a_set_that_behaves() {
        let h = [
            sadd("a", Some(1), (0, 1)),
            sadd("b", Some(1), (0, 1)),
            srem("b", Some(1), (2, 3)),
            sadd("c", None, (2, 3)),
            sadd("d", Some(1), (4, 10)),
            srem("d", Some(1), (5, 6)),
            sadd("e", Some(1), (4, 5)),
            srem("e", None, (6, 7)),
            failed(sadd("f", Some(1), (0, 1))),
        ];
        // "d" may have been added after its removal; "e"'s removal and "c"'s
        // add may not have happened.
        assert_eq!(problems(&h, &["a", "c", "d", "e"]), []);
        assert_eq!(problems(&h, &["a"]), []);
        assert!(check_sets(&h, &BTreeMap::new()).is_empty());
    }

    #[test]
    fn replies() {
        let h = [
            sadd("a", Some(2), (0, 1)),
            sadd("b", Some(0), (0, 1)),
            srem("c", Some(1), (0, 1)),
            sadd("c", None, (2, 3)),
        ];
        assert_eq!(
            problems(&h, &["a", "b"]),
            [
                SetProblem::BadReply {
                    reply: Some(m("2"))
                },
                SetProblem::FoundBeforeAdded { member: m("b") },
                SetProblem::RemovedBeforeAdded { member: m("c") },
            ]
        );
        // Another SADD may have added it first; an SREM 0 needs nothing.
        let h = [
            sadd("b", Some(0), (2, 3)),
            sadd("b", None, (3, 4)),
            srem("c", Some(0), (0, 1)),
        ];
        assert_eq!(problems(&h, &["b"]), []);
        let found = check_sets(&[srem("c", Some(1), (0, 1))], &finals(&[]));
        let text = found[0].to_string();
        assert_eq!(
            text,
            "key \"s\": removed before added: an SREM of \"c\" replied 1, but no SADD of it had been invoked by then\n  client 1: srem \"s\" \"c\" -> \"1\" [0, 1]\n"
        );
    }

    #[test]
    fn lost_adds() {
        let h = [
            sadd("a", Some(1), (0, 1)),
            sadd("b", Some(1), (4, 5)),
            srem("b", None, (2, 3)),
            failed(srem("a", Some(1), (2, 3))),
        ];
        assert_eq!(problems(&h, &[]), [SetProblem::Lost { member: m("a") }]);
        let found = check_sets(&h, &finals(&["b"]));
        assert_eq!(found[0].problem, SetProblem::Lost { member: m("a") });
        assert_eq!(found[0].occurrences, 1);
    }

    #[test]
    fn removed_members_stay_removed() {
        let h = [
            sadd("a", Some(1), (0, 1)),
            srem("a", Some(1), (2, 3)),
            failed(sadd("b", Some(1), (0, 1))),
        ];
        assert_eq!(
            problems(&h, &["a", "b", "x"]),
            [
                SetProblem::Resurrected { member: m("a") },
                SetProblem::FromNowhere { member: m("b") },
            ]
        );
        let found = check_sets(&h, &finals(&["a"]));
        assert_eq!(found[0].ops.len(), 2);
        // A later add, even indeterminate, may bring it back.
        let h = [h[0].clone(), h[1].clone(), sadd("a", None, (4, 5))];
        assert_eq!(problems(&h, &["a"]), []);
    }

    #[test]
    fn listed_twice_and_not_a_set() {
        let h = [sadd("a", Some(1), (0, 1))];
        assert_eq!(
            problems(&h, &["a", "a"]),
            [SetProblem::Duplicated {
                member: m("a"),
                listed: 2
            }]
        );
        let mut del = sadd("a", Some(1), (2, 3));
        del.kind = OpKind::Write(None);
        assert_eq!(
            problems(&[h[0].clone(), del], &[]),
            [SetProblem::NotOnlySetCommands]
        );
    }
}
