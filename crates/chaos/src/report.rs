//! Problems found on one key by the checkers that are not a linearizability
//! search ([`crate::check_counters`], [`crate::check_lists`],
//! [`crate::check_sets`], [`crate::expired_keys_stay_expired`],
//! [`crate::ttls_kept`]), reported once per kind with the ops that show it.

use std::fmt;
use std::mem::{discriminant, Discriminant};

use crate::history::{fmt_value, Op};

/// Most ops shown with one problem: enough to see it, few enough to read.
pub const MAX_OPS_SHOWN: usize = 10;

/// A kind of problem (`P`, say [`crate::CounterProblem`]) found on one key:
/// its first occurrence, the ops that show it, and how often it occurred.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyViolation<P> {
    /// The key.
    pub key: Vec<u8>,
    /// What is wrong, at its first occurrence.
    pub problem: P,
    /// The ops that show the first occurrence (at most [`MAX_OPS_SHOWN`]).
    pub ops: Vec<Op>,
    /// How many times this kind of problem occurred on this key.
    pub occurrences: usize,
}

impl<P: fmt::Display> fmt::Display for KeyViolation<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("key ")?;
        fmt_value(f, Some(&self.key))?;
        write!(f, ": {}", self.problem)?;
        if self.occurrences > 1 {
            write!(f, " (the first of {} like it)", self.occurrences)?;
        }
        writeln!(f)?;
        for op in &self.ops {
            writeln!(f, "  {op}")?;
        }
        Ok(())
    }
}

/// The problems found on one key, one entry per kind of problem.
pub(crate) struct Found<'a, P> {
    key: &'a [u8],
    found: Vec<KeyViolation<P>>,
    kinds: Vec<Discriminant<P>>,
}

impl<'a, P> Found<'a, P> {
    pub(crate) fn new(key: &'a [u8]) -> Self {
        Self {
            key,
            found: Vec::new(),
            kinds: Vec::new(),
        }
    }

    /// Notes `problem`, shown by `ops`, unless one of its kind was noted
    /// already (then only counts it).
    pub(crate) fn push<'o>(&mut self, problem: P, ops: impl IntoIterator<Item = &'o Op>) {
        let kind = discriminant(&problem);
        if let Some(i) = self.kinds.iter().position(|k| *k == kind) {
            if let Some(v) = self.found.get_mut(i) {
                v.occurrences += 1;
            }
            return;
        }
        self.kinds.push(kind);
        self.found.push(KeyViolation {
            key: self.key.to_vec(),
            problem,
            ops: ops.into_iter().take(MAX_OPS_SHOWN).cloned().collect(),
            occurrences: 1,
        });
    }

    pub(crate) fn into_vec(self) -> Vec<KeyViolation<P>> {
        self.found
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{OpKind, Outcome};

    #[derive(Debug)]
    enum Problem {
        Odd(u64),
        Even,
    }

    impl fmt::Display for Problem {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            match self {
                Self::Odd(n) => write!(f, "Odd({n})"),
                Self::Even => f.write_str("Even"),
            }
        }
    }

    #[test]
    fn one_entry_per_kind_with_its_first_ops() {
        let op = |t| Op {
            client: 1,
            key: b"k".to_vec(),
            kind: OpKind::Read,
            invoke_ns: t,
            complete_ns: t + 1,
            outcome: Outcome::Ok(None),
        };
        let ops: Vec<Op> = (0..20).map(op).collect();
        let mut found = Found::new(b"k");
        found.push(Problem::Odd(1), &ops);
        found.push(Problem::Even, &ops[..1]);
        found.push(Problem::Odd(3), &ops[..2]);
        let found = found.into_vec();
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].occurrences, 2);
        assert_eq!(found[0].ops.len(), MAX_OPS_SHOWN);
        assert_eq!(found[1].occurrences, 1);
        let text = found[0].to_string();
        assert!(
            text.starts_with("key \"k\": Odd(1) (the first of 2 like it)\n  client 1: read"),
            "{text}"
        );
        assert_eq!(found[1].to_string().lines().count(), 2);
    }
}
