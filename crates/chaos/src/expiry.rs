//! Checking keys written with a TTL (`SET key value PX ttl_ms`).
//!
//! - [`expired_keys_stay_expired`]: no read returns a value once every write
//!   that could have produced it has expired; an expired key must never come
//!   back, whatever leader serves the read.
//! - [`ttls_kept`]: after the run, a key only ever written with a TTL is
//!   absent or still has a TTL, no longer than the longest written.
//!
//! Both assume what Seshat does: a write's expiry time is fixed, from the
//! leader's clock, when the write is proposed, so no later than its
//! acknowledgement; and the nodes judge expiry by a clock running at the
//! rate of the recorder's (same host). So a write acknowledged at `t` with
//! TTL `ttl` has expired by `t + ttl`. An indeterminate write may apply at
//! any time after its invoke, so it gives no such bound.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use crate::history::{ms_to_ns, Op, OpKind, Outcome};
use crate::report::{Found, KeyViolation};

/// A problem with a key written with a TTL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExpiryProblem {
    /// A read returned a value whose every write had been acknowledged
    /// and had expired before the read was invoked.
    Resurrected {
        /// How long after the latest of those writes expired the read was
        /// invoked, in nanoseconds.
        late_by_ns: u64,
    },
    /// A read returned a value that no write invoked before its reply
    /// wrote.
    FromNowhere,
    /// The key has no TTL (`PTTL` -1), though every write gave it one.
    TtlLost,
    /// `PTTL` is longer than any TTL written.
    TtlTooLong {
        /// The `PTTL` reply.
        pttl_ms: i64,
        /// The longest TTL written.
        max_ttl_ms: u64,
    },
    /// Any other impossible `PTTL` reply: 0 or below -2, or a key that
    /// exists though every write to it failed.
    UnexpectedPttl {
        /// The `PTTL` reply.
        pttl_ms: i64,
    },
}

impl fmt::Display for ExpiryProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Resurrected { late_by_ns } => write!(
                f,
                "expired key resurrected: read a value {} ms after every write of it had expired",
                late_by_ns / 1_000_000
            ),
            Self::FromNowhere => f.write_str("read a value that no write wrote"),
            Self::TtlLost => f.write_str("TTL lost: PTTL -1, but every write set a TTL"),
            Self::TtlTooLong {
                pttl_ms,
                max_ttl_ms,
            } => write!(
                f,
                "TTL too long: PTTL {pttl_ms}, but no write set more than {max_ttl_ms}"
            ),
            Self::UnexpectedPttl { pttl_ms } => write!(f, "impossible PTTL {pttl_ms}"),
        }
    }
}

/// A problem with one key written with a TTL, with the ops that show it.
pub type ExpiryViolation = KeyViolation<ExpiryProblem>;

/// Checks every successful read of a key that has a write with a TTL in
/// `history`: the value read was written by a write invoked before the
/// read's reply (else [`ExpiryProblem::FromNowhere`]), and not only by
/// acknowledged writes with a TTL that had all expired when the read was
/// invoked (else [`ExpiryProblem::Resurrected`]). Keys with an `INCR` are
/// skipped. Returns one entry per kind of problem per key, in key order.
pub fn expired_keys_stay_expired(history: &[Op]) -> Vec<ExpiryViolation> {
    let mut by_key: BTreeMap<&[u8], Vec<&Op>> = BTreeMap::new();
    for op in history {
        by_key.entry(&op.key).or_default().push(op);
    }
    by_key
        .into_iter()
        .filter(|(_, ops)| ops.iter().any(|op| op.kind.ttl_ms().is_some()))
        .filter(|(_, ops)| ops.iter().all(|op| op.kind != OpKind::Incr))
        .flat_map(|(key, ops)| check_reads(key, &ops))
        .collect()
}

/// The value a write op writes (`None` deletes); `None` for reads.
fn written(kind: &OpKind) -> Option<Option<&[u8]>> {
    match kind {
        OpKind::Write(v) => Some(v.as_deref()),
        OpKind::WriteWithTtl { value, .. } => Some(Some(value)),
        OpKind::Read
        | OpKind::Incr
        | OpKind::RPush(_)
        | OpKind::LPop
        | OpKind::SAdd(_)
        | OpKind::SRem(_) => None,
    }
}

/// When the value `op` wrote has certainly expired, if it has a TTL and was
/// acknowledged.
fn expired_by_ns(op: &Op) -> Option<u64> {
    let ttl_ms = op.kind.ttl_ms()?;
    let acked_ns = match op.outcome {
        Outcome::Ok(_) => op.effective_complete_ns()?,
        Outcome::Fail | Outcome::Unknown => return None,
    };
    Some(acked_ns.saturating_add(ms_to_ns(ttl_ms)))
}

fn check_reads(key: &[u8], ops: &[&Op]) -> Vec<ExpiryViolation> {
    let mut writes_of: HashMap<&[u8], Vec<&Op>> = HashMap::new();
    for op in ops.iter().filter(|op| op.outcome != Outcome::Fail) {
        if let Some(Some(value)) = written(&op.kind) {
            writes_of.entry(value).or_default().push(op);
        }
    }
    let mut found = Found::new(key);
    for read in ops.iter().filter(|op| op.kind == OpKind::Read) {
        let (Outcome::Ok(Some(value)), Some(read_done)) =
            (&read.outcome, read.effective_complete_ns())
        else {
            continue;
        };
        let writes: Vec<&Op> = writes_of
            .get(value.as_slice())
            .into_iter()
            .flatten()
            .copied()
            .filter(|w| w.invoke_ns <= read_done)
            .collect();
        if writes.is_empty() {
            found.push(ExpiryProblem::FromNowhere, [*read]);
            continue;
        }
        let expired: Option<Vec<u64>> = writes.iter().map(|w| expired_by_ns(w)).collect();
        let latest = expired.and_then(|deadlines| deadlines.into_iter().max());
        if let Some(latest) = latest.filter(|&t| t < read.invoke_ns) {
            let problem = ExpiryProblem::Resurrected {
                late_by_ns: read.invoke_ns - latest,
            };
            found.push(problem, writes.into_iter().chain([*read]));
        }
    }
    found.into_vec()
}

/// Checks each key's `PTTL` reply read after the run (`pttls`), for keys
/// whose every write in `history` that did not fail set a TTL: absent
/// (-2) or a TTL from 1 ms to the longest written. A key with no such
/// write must be absent. Keys with a plain `SET`, `DEL` or `INCR` are
/// skipped: their TTL depends on which write came last. Whether an absent
/// key should exist is the register checker's business
/// ([`crate::acknowledged_writes_visible`]). Returns one entry per key
/// with a problem, in key order.
pub fn ttls_kept(history: &[Op], pttls: &BTreeMap<Vec<u8>, i64>) -> Vec<ExpiryViolation> {
    pttls
        .iter()
        .filter_map(|(key, &pttl_ms)| {
            let writes: Vec<&Op> = history
                .iter()
                .filter(|op| op.key == *key && op.is_write() && op.outcome != Outcome::Fail)
                .collect();
            let ttls: Option<Vec<u64>> = writes.iter().map(|op| op.kind.ttl_ms()).collect();
            let problem = match (ttls?.into_iter().max(), pttl_ms) {
                (_, -2) => return None,
                (None, pttl_ms) => ExpiryProblem::UnexpectedPttl { pttl_ms },
                (Some(_), -1) => ExpiryProblem::TtlLost,
                (Some(max_ttl_ms), pttl_ms)
                    if u64::try_from(pttl_ms).is_ok_and(|p| p > max_ttl_ms) =>
                {
                    ExpiryProblem::TtlTooLong {
                        pttl_ms,
                        max_ttl_ms,
                    }
                }
                (Some(_), 1..) => return None,
                (Some(_), pttl_ms) => ExpiryProblem::UnexpectedPttl { pttl_ms },
            };
            let mut found = Found::new(key);
            found.push(problem, writes.into_iter().rev());
            Some(found.into_vec())
        })
        .flatten()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn op(client: u64, kind: OpKind, t: (u64, u64), outcome: Outcome) -> Op {
        Op {
            client,
            key: b"e".to_vec(),
            kind,
            invoke_ns: t.0,
            complete_ns: t.1,
            outcome,
        }
    }

    fn set_px(v: &str, ttl_ms: u64, t: (u64, u64), outcome: Outcome) -> Op {
        let kind = OpKind::WriteWithTtl {
            value: v.into(),
            ttl_ms,
        };
        op(1, kind, t, outcome)
    }

    fn get(v: Option<&str>, t: (u64, u64)) -> Op {
        op(2, OpKind::Read, t, Outcome::Ok(v.map(Into::into)))
    }

    fn ok() -> Outcome {
        Outcome::Ok(None)
    }

    fn problems(h: &[Op]) -> Vec<ExpiryProblem> {
        expired_keys_stay_expired(h)
            .into_iter()
            .map(|v| v.problem)
            .collect()
    }

    #[test]
    fn reads_before_the_deadline_may_see_the_value() {
        let h = [
            set_px("v", 200, (0, MS), ok()),
            get(Some("v"), (100 * MS, 101 * MS)),
            // Acknowledged at 1 ms, so gone by 201 ms, not earlier.
            get(Some("v"), (201 * MS, 250 * MS)),
            get(None, (1_000 * MS, 1_001 * MS)),
        ];
        assert_eq!(problems(&h), []);
    }

    #[test]
    fn a_value_after_the_deadline_is_a_resurrection() {
        let h = [
            set_px("v", 200, (0, MS), ok()),
            get(None, (1_000 * MS, 1_001 * MS)),
            get(Some("v"), (1_201 * MS, 1_202 * MS)),
        ];
        let found = expired_keys_stay_expired(&h);
        assert_eq!(
            found[0].problem,
            ExpiryProblem::Resurrected {
                late_by_ns: 1_000 * MS
            }
        );
        assert_eq!(found[0].ops, [h[0].clone(), h[2].clone()]);
        let text = found[0].to_string();
        assert!(
            text.starts_with("key \"e\": expired key resurrected: read a value 1000 ms after"),
            "{text}"
        );
    }

    #[test]
    fn writes_without_a_deadline_excuse_the_read() {
        let late = get(Some("v"), (5_000 * MS, 5_001 * MS));
        // An indeterminate write may have applied late ...
        let h = [set_px("v", 200, (0, MS), Outcome::Unknown), late.clone()];
        assert_eq!(problems(&h), []);
        // ... a plain write of the same value does not expire ...
        let plain = op(3, OpKind::Write(Some(b"v".to_vec())), (0, MS), ok());
        let h = [set_px("v", 200, (0, MS), ok()), plain, late.clone()];
        assert_eq!(problems(&h), []);
        // ... and a later write with a TTL may still be live.
        let h = [
            set_px("v", 200, (0, MS), ok()),
            set_px("v", 200, (4_900 * MS, 4_901 * MS), ok()),
            late,
        ];
        assert_eq!(problems(&h), []);
    }

    #[test]
    fn values_from_nowhere() {
        let h = [
            set_px("v", 200, (0, MS), ok()),
            get(Some("w"), (2 * MS, 3 * MS)),
            // A failed write wrote nothing; a write invoked after the read
            // replied cannot explain it.
            set_px("x", 200, (0, MS), Outcome::Fail),
            get(Some("x"), (2 * MS, 3 * MS)),
            set_px("y", 200, (4 * MS, 5 * MS), ok()),
            get(Some("y"), (2 * MS, 3 * MS)),
        ];
        let found = expired_keys_stay_expired(&h);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].problem, ExpiryProblem::FromNowhere);
        assert_eq!(found[0].occurrences, 3);
    }

    #[test]
    fn keys_without_ttls_or_with_incr_are_skipped() {
        let stale = get(Some("v"), (5_000 * MS, 5_001 * MS));
        let plain = op(1, OpKind::Write(Some(b"v".to_vec())), (0, MS), ok());
        assert_eq!(problems(&[plain, get(Some("zzz"), (2, 3))]), []);
        let incr = op(1, OpKind::Incr, (0, 1), Outcome::Ok(Some(b"1".to_vec())));
        assert_eq!(
            problems(&[set_px("v", 200, (0, MS), ok()), incr, stale]),
            []
        );
    }

    fn pttls(pttl: i64) -> BTreeMap<Vec<u8>, i64> {
        BTreeMap::from([(b"e".to_vec(), pttl)])
    }

    fn ttl_problems(h: &[Op], pttl: i64) -> Vec<ExpiryProblem> {
        ttls_kept(h, &pttls(pttl))
            .into_iter()
            .map(|v| v.problem)
            .collect()
    }

    #[test]
    fn ttls_kept_on_keys_only_written_with_ttls() {
        let h = [
            set_px("a", 600_000, (0, MS), ok()),
            set_px("b", 1_000, (2 * MS, 3 * MS), Outcome::Unknown),
            op(1, OpKind::Write(None), (4 * MS, 5 * MS), Outcome::Fail),
        ];
        for fine in [-2, 1, 1_000, 600_000] {
            assert_eq!(ttl_problems(&h, fine), [], "{fine}");
        }
        assert_eq!(ttl_problems(&h, -1), [ExpiryProblem::TtlLost]);
        assert_eq!(
            ttl_problems(&h, 600_001),
            [ExpiryProblem::TtlTooLong {
                pttl_ms: 600_001,
                max_ttl_ms: 600_000
            }]
        );
        for odd in [0, -3] {
            assert_eq!(
                ttl_problems(&h, odd),
                [ExpiryProblem::UnexpectedPttl { pttl_ms: odd }]
            );
        }
        let found = ttls_kept(&h, &pttls(-1));
        assert_eq!(found[0].ops, [h[1].clone(), h[0].clone()]);
        assert!(found[0].to_string().contains("TTL lost"));
    }

    #[test]
    fn ttls_of_keys_never_written_or_written_plainly() {
        // Never written (successfully): must be absent.
        let failed = [set_px("a", 600_000, (0, MS), Outcome::Fail)];
        assert_eq!(ttl_problems(&failed, -2), []);
        assert_eq!(
            ttl_problems(&failed, -1),
            [ExpiryProblem::UnexpectedPttl { pttl_ms: -1 }]
        );
        assert_eq!(
            ttl_problems(&[], 5),
            [ExpiryProblem::UnexpectedPttl { pttl_ms: 5 }]
        );
        // A plain write makes the TTL ambiguous: not checked.
        let mixed = [
            set_px("a", 600_000, (0, MS), ok()),
            op(1, OpKind::Write(Some(b"b".to_vec())), (2, 3), ok()),
        ];
        assert_eq!(ttl_problems(&mixed, -1), []);
    }
}
