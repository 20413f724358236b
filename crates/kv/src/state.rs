//! Deterministic apply of an [`Operation`] onto a key-value state.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

use crate::operation::{OpResult, Operation, SetCondition};

/// The state an operation reads and changes. Implementations must make a
/// write visible to later reads through the same value, even before it is
/// committed to disk, so one batch can hold several dependent operations.
pub trait KvState {
    /// The implementation's error (storage failure, corrupt data).
    type Error;
    /// The current value of `key`.
    fn get(&mut self, key: &[u8]) -> Result<Option<Bytes>, Self::Error>;
    /// Sets `key` to `value`.
    fn put(&mut self, key: Bytes, value: Bytes) -> Result<(), Self::Error>;
    /// Removes `key` (which is known to exist).
    fn delete(&mut self, key: Bytes) -> Result<(), Self::Error>;
    /// Removes every key.
    fn clear(&mut self) -> Result<(), Self::Error>;
}

/// Applies `op` to `state` and returns the client-visible result. The result
/// depends only on `op` and the state, never on time or randomness.
pub fn apply<S: KvState>(op: &Operation, state: &mut S) -> Result<OpResult, S::Error> {
    match op {
        Operation::Set {
            key,
            value,
            condition,
            return_old,
        } => apply_set(state, key, value, *condition, *return_old),
        Operation::Del { keys } => apply_del(state, keys),
        Operation::FlushAll => {
            state.clear()?;
            Ok(OpResult::Ok)
        }
        Operation::Batch(ops) => {
            let mut results = Vec::with_capacity(ops.len());
            for op in ops {
                results.push(match op {
                    // Refused by `validate` and the log codec; never applied.
                    Operation::Batch(_) => OpResult::Nil,
                    op => apply(op, state)?,
                });
            }
            Ok(OpResult::Batch(results))
        }
    }
}

fn apply_set<S: KvState>(
    state: &mut S,
    key: &Bytes,
    value: &Bytes,
    condition: Option<SetCondition>,
    return_old: bool,
) -> Result<OpResult, S::Error> {
    // A plain SET never needs the old value: skip the read.
    let old = if condition.is_some() || return_old {
        state.get(key)?
    } else {
        None
    };
    let allowed = match condition {
        None => true,
        Some(SetCondition::IfAbsent) => old.is_none(),
        Some(SetCondition::IfPresent) => old.is_some(),
    };
    if allowed {
        state.put(key.clone(), value.clone())?;
    }
    Ok(match (return_old, allowed) {
        (true, _) => old.map_or(OpResult::Nil, OpResult::Value),
        (false, true) => OpResult::Ok,
        (false, false) => OpResult::Nil,
    })
}

fn apply_del<S: KvState>(state: &mut S, keys: &[Bytes]) -> Result<OpResult, S::Error> {
    let mut removed: i64 = 0;
    let mut seen = BTreeSet::new();
    for key in keys {
        if !seen.insert(key.clone()) {
            continue;
        }
        if state.get(key)?.is_some() {
            state.delete(key.clone())?;
            removed = removed.saturating_add(1);
        }
    }
    Ok(OpResult::Integer(removed))
}

/// An in-memory [`KvState`] for tests and models.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemState {
    /// The keys and values, ordered.
    pub map: BTreeMap<Bytes, Bytes>,
}

impl KvState for MemState {
    type Error = std::convert::Infallible;

    fn get(&mut self, key: &[u8]) -> Result<Option<Bytes>, Self::Error> {
        Ok(self.map.get(key).cloned())
    }

    fn put(&mut self, key: Bytes, value: Bytes) -> Result<(), Self::Error> {
        self.map.insert(key, value);
        Ok(())
    }

    fn delete(&mut self, key: Bytes) -> Result<(), Self::Error> {
        self.map.remove(&key);
        Ok(())
    }

    fn clear(&mut self) -> Result<(), Self::Error> {
        self.map.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn run(state: &mut MemState, op: Operation) -> OpResult {
        match apply(&op, state) {
            Ok(r) => r,
            Err(never) => match never {},
        }
    }

    #[test]
    fn set_conditions_and_get_option_follow_redis() {
        let mut s = MemState::default();
        let nx = |v: &str| Operation::Set {
            key: b("k"),
            value: b(v),
            condition: Some(SetCondition::IfAbsent),
            return_old: false,
        };
        assert_eq!(run(&mut s, nx("1")), OpResult::Ok);
        assert_eq!(run(&mut s, nx("2")), OpResult::Nil);
        let xx_get = Operation::Set {
            key: b("k"),
            value: b("3"),
            condition: Some(SetCondition::IfPresent),
            return_old: true,
        };
        assert_eq!(run(&mut s, xx_get), OpResult::Value(b("1")));
        assert_eq!(s.map.get(&b("k")), Some(&b("3")));
        let xx_missing = Operation::Set {
            key: b("m"),
            value: b("3"),
            condition: Some(SetCondition::IfPresent),
            return_old: true,
        };
        assert_eq!(run(&mut s, xx_missing), OpResult::Nil);
        assert!(!s.map.contains_key(&b("m")));
    }

    #[test]
    fn del_counts_each_existing_key_once() {
        let mut s = MemState::default();
        run(&mut s, Operation::set(b("a"), b("1")));
        run(&mut s, Operation::set(b("b"), b("2")));
        let del = Operation::Del {
            keys: vec![b("a"), b("a"), b("b"), b("c")],
        };
        assert_eq!(run(&mut s, del), OpResult::Integer(2));
        assert!(s.map.is_empty());
    }

    #[test]
    fn flushall_removes_everything() {
        let mut s = MemState::default();
        run(&mut s, Operation::set(b("a"), b("1")));
        assert_eq!(run(&mut s, Operation::FlushAll), OpResult::Ok);
        assert!(s.map.is_empty());
    }

    fn arb_op() -> impl Strategy<Value = Operation> {
        let key = prop::sample::select(vec!["a", "b", "c", "d"]).prop_map(b);
        let val = "[a-z]{0,4}".prop_map(|v| b(&v));
        prop_oneof![
            8 => (key.clone(), val, any::<Option<bool>>(), any::<bool>()).prop_map(|(k, v, c, g)| {
                Operation::Set {
                    key: k,
                    value: v,
                    condition: c.map(|nx| if nx { SetCondition::IfAbsent } else { SetCondition::IfPresent }),
                    return_old: g,
                }
            }),
            3 => prop::collection::vec(key, 1..4).prop_map(|keys| Operation::Del { keys }),
            1 => Just(Operation::FlushAll),
        ]
    }

    proptest! {
        /// Replicas that apply the same log end in the same state with the
        /// same replies: the property Raft replication relies on.
        #[test]
        fn apply_is_deterministic(ops in prop::collection::vec(arb_op(), 0..64)) {
            let mut a = MemState::default();
            let mut b_state = MemState::default();
            for op in ops {
                let ra = run(&mut a, op.clone());
                let rb = run(&mut b_state, op);
                prop_assert_eq!(ra, rb);
            }
            prop_assert_eq!(a, b_state);
        }

        /// A batch entry gives every write the reply and effect it would
        /// have had as its own entry: batching is invisible to clients.
        #[test]
        fn batch_is_the_same_as_one_by_one(
            before in prop::collection::vec(arb_op(), 0..8),
            ops in prop::collection::vec(arb_op(), 0..32),
        ) {
            let mut single = MemState::default();
            let mut batched = MemState::default();
            for op in before {
                run(&mut single, op.clone());
                run(&mut batched, op);
            }
            let one_by_one: Vec<OpResult> =
                ops.iter().map(|op| run(&mut single, op.clone())).collect();
            let result = run(&mut batched, Operation::Batch(ops));
            prop_assert_eq!(result, OpResult::Batch(one_by_one));
            prop_assert_eq!(single, batched);
        }
    }

    #[test]
    fn nested_batches_are_refused() {
        let limits = seshat_common::Limits::default();
        let inner = Operation::Batch(vec![Operation::FlushAll]);
        let op = Operation::Batch(vec![Operation::set(b("k"), b("v")), inner]);
        assert!(crate::validate(&op, &limits).is_err());
        let ok = Operation::Batch(vec![Operation::set(b("k"), b("v")), Operation::FlushAll]);
        assert!(crate::validate(&ok, &limits).is_ok());
    }
}
