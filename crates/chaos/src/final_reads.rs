//! What is read once a run is over, and checking the values of registers
//! against the history.

use std::collections::BTreeMap;

use crate::checker::{check_with, CheckResult, CheckerConfig, Verdict};
use crate::history::{Op, OpKind, Outcome};

/// The value of each key read once a run is over (`None` = absent), as
/// `GET` returned it.
pub type FinalReads = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

/// The elements of each list or set key read once a run is over, in reply
/// order: `LRANGE key 0 -1` for a list, `SMEMBERS key` for a set. An
/// absent key reads as empty.
pub type FinalCollections = BTreeMap<Vec<u8>, Vec<Vec<u8>>>;

/// The client id of the synthetic final read.
pub const FINAL_READ_CLIENT: u64 = u64::MAX;

/// Checks, for each key in `final_reads`, that the value read after the run
/// (`None` = absent) is what some linearization of the history leaves
/// behind: the history of that key is checked extended by one successful
/// read that starts after every recorded invocation and completion. Catches
/// acknowledged writes that were lost and values that appeared from nowhere.
///
/// Returns one readable problem per failing or undecidable key; empty means
/// all is well. Keys of the history missing from `final_reads` are not
/// checked, nor are keys that are not registers (see [`crate::check`]).
pub fn acknowledged_writes_visible(history: &[Op], final_reads: &FinalReads) -> Vec<String> {
    acknowledged_writes_visible_with(history, final_reads, &CheckerConfig::default())
}

/// [`acknowledged_writes_visible`] with explicit search bounds.
pub fn acknowledged_writes_visible_with(
    history: &[Op],
    final_reads: &FinalReads,
    config: &CheckerConfig,
) -> Vec<String> {
    final_reads
        .iter()
        .filter_map(|(key, value)| check_final_read(history, key, value.as_deref(), config))
        .collect()
}

/// The problem with one key's final read, if any.
fn check_final_read(
    history: &[Op],
    key: &[u8],
    value: Option<&[u8]>,
    config: &CheckerConfig,
) -> Option<String> {
    let mut ops: Vec<Op> = history.iter().filter(|op| op.key == key).cloned().collect();
    let read = final_read(key, value, &ops);
    let shown = read.to_string();
    ops.push(read);
    let result = check_with(&ops, config);
    if result.ok {
        return None;
    }
    Some(describe(&shown, &ops[..ops.len() - 1], &result, config))
}

/// A successful read of `value` after everything in `ops`.
fn final_read(key: &[u8], value: Option<&[u8]>, ops: &[Op]) -> Op {
    let last = ops
        .iter()
        .map(|op| op.effective_complete_ns().unwrap_or(0).max(op.invoke_ns))
        .max()
        .unwrap_or(0);
    let invoke_ns = last.saturating_add(1);
    Op {
        client: FINAL_READ_CLIENT,
        key: key.to_vec(),
        kind: OpKind::Read,
        invoke_ns,
        complete_ns: invoke_ns.saturating_add(1),
        outcome: Outcome::Ok(value.map(<[u8]>::to_vec)),
    }
}

/// Explains a failed check of a history extended by a final read.
fn describe(final_read: &str, base: &[Op], result: &CheckResult, config: &CheckerConfig) -> String {
    let Some(violation) = result.violation() else {
        return format!(
            "final {final_read}: inconclusive, the search bound of {} states was reached",
            config.max_states_per_key
        );
    };
    let base_verdict = crate::checker::check_register(base, config.max_states_per_key);
    let why = match base_verdict {
        Verdict::NotLinearizable => "the history is not linearizable even before it",
        Verdict::Linearizable => {
            "it contradicts the history (lost acknowledged write or value from nowhere)"
        }
        Verdict::Inconclusive => "it contradicts the history (the history alone was not decided)",
    };
    format!("final {final_read}: {why}\n{violation}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(client: u64, kind: OpKind, t: (u64, u64), outcome: Outcome) -> Op {
        Op {
            client,
            key: b"k".to_vec(),
            kind,
            invoke_ns: t.0,
            complete_ns: t.1,
            outcome,
        }
    }

    fn set(v: &str, t: (u64, u64), outcome: Outcome) -> Op {
        op(1, OpKind::Write(Some(v.into())), t, outcome)
    }

    fn finals(v: Option<&str>) -> FinalReads {
        BTreeMap::from([(b"k".to_vec(), v.map(Into::into))])
    }

    #[test]
    fn last_acknowledged_write_visible() {
        let h = [
            set("a", (0, 1), Outcome::Ok(None)),
            set("b", (2, 3), Outcome::Ok(None)),
        ];
        assert!(acknowledged_writes_visible(&h, &finals(Some("b"))).is_empty());
    }

    #[test]
    fn lost_write_reported() {
        let h = [
            set("a", (0, 1), Outcome::Ok(None)),
            set("b", (2, 3), Outcome::Ok(None)),
        ];
        let problems = acknowledged_writes_visible(&h, &finals(Some("a")));
        assert_eq!(problems.len(), 1);
        assert!(
            problems[0].contains("contradicts the history"),
            "{}",
            problems[0]
        );
        assert!(acknowledged_writes_visible(&h, &finals(None)).len() == 1);
    }

    #[test]
    fn concurrent_and_unknown_writes_either_way() {
        let h = [
            set("a", (0, 10), Outcome::Ok(None)),
            set("b", (0, 10), Outcome::Ok(None)),
            set("c", (11, 12), Outcome::Unknown),
            set("d", (11, 12), Outcome::Fail),
        ];
        for v in ["a", "b", "c"] {
            assert!(
                acknowledged_writes_visible(&h, &finals(Some(v))).is_empty(),
                "{v}"
            );
        }
        assert_eq!(acknowledged_writes_visible(&h, &finals(Some("d"))).len(), 1);
    }

    #[test]
    fn key_never_touched() {
        assert!(acknowledged_writes_visible(&[], &finals(None)).is_empty());
        assert_eq!(
            acknowledged_writes_visible(&[], &finals(Some("x"))).len(),
            1
        );
    }

    #[test]
    fn bad_history_is_said_so() {
        let h = [
            set("a", (0, 1), Outcome::Ok(None)),
            op(2, OpKind::Read, (2, 3), Outcome::Ok(Some(b"zzz".to_vec()))),
        ];
        let problems = acknowledged_writes_visible(&h, &finals(Some("a")));
        assert_eq!(problems.len(), 1);
        assert!(problems[0].contains("even before it"), "{}", problems[0]);
    }
}
