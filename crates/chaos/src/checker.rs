//! Linearizability checking for a per-key register.
//!
//! Each key is an independent register (P-compositionality): its initial
//! value is `None` (absent), `Write(Some(v))` sets it, `Write(None)` deletes
//! it, and a read must return the current value. A write with a TTL is a
//! plain write when the TTL outlasts the key's history. Keys that are not
//! registers are skipped: those with an `INCR` (see
//! [`crate::check_counters`]), lists and sets (see [`crate::check_lists`]
//! and [`crate::check_sets`]), or with a write whose TTL may run out within
//! the history (see [`crate::expired_keys_stay_expired`]).
//!
//! Each key's history is checked with the Wing–Gong algorithm as improved
//! by Lowe: a depth-first search that repeatedly picks a pending operation
//! to linearize next, backtracks when some operation's completion is
//! reached before it was linearized, and memoises (set of linearized
//! operations, register value) pairs so that no configuration is explored
//! twice. At most
//! [`CheckerConfig::max_states_per_key`] configurations are explored per
//! key; past that the key is [`Verdict::Inconclusive`].
//!
//! How outcomes are treated:
//! - [`Outcome::Ok`]: took effect once, between invoke and completion.
//! - [`Outcome::Fail`]: never happened; dropped.
//! - [`Outcome::Unknown`] write: took effect once at some point after its
//!   invoke, or never; it never has to be linearized.
//! - [`Outcome::Unknown`] read: tells nothing; dropped.
//!
//! Unknown writes are what makes the search expensive, so three exact
//! reductions apply to them: one whose value no read returned is dropped;
//! one that is linearized must be followed directly by a read; and those of
//! equal value are used in invoke order. Configurations are remembered as
//! 128-bit fingerprints, to bound memory (~100 MB at the default bound).
//!
//! Operation `a` precedes `b` in real time only if `a.complete_ns <
//! b.invoke_ns`; equal timestamps count as concurrent.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::ops::Range;

use crate::history::{fmt_value, ms_to_ns, Op, OpKind, Outcome};

/// Default bound on the configurations explored for one key before giving
/// up as inconclusive.
pub const DEFAULT_MAX_STATES_PER_KEY: usize = 2_000_000;
/// Default bound on the candidate sub-histories tried while shrinking a
/// violation.
pub const DEFAULT_MAX_SHRINK_STEPS: usize = 1_000;
/// Default bound on the configurations explored for each shrinking candidate
/// (a candidate that hits it is treated as not failing).
pub const DEFAULT_SHRINK_MAX_STATES: usize = 100_000;
/// Default bound on the configurations explored while shrinking one
/// violation, over all candidates.
pub const DEFAULT_SHRINK_TOTAL_STATES: usize = 2_000_000;

/// The register value meaning "key absent"; values read or written get ids
/// from 1.
const ABSENT: usize = 0;

/// Search and shrinking bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckerConfig {
    /// Configurations explored per key before the key is inconclusive.
    pub max_states_per_key: usize,
    /// Candidate sub-histories tried while shrinking one violation.
    pub max_shrink_steps: usize,
    /// Configurations explored per shrinking candidate.
    pub shrink_max_states: usize,
    /// Configurations explored while shrinking one violation, in total.
    pub shrink_total_states: usize,
}

impl Default for CheckerConfig {
    fn default() -> Self {
        Self {
            max_states_per_key: DEFAULT_MAX_STATES_PER_KEY,
            max_shrink_steps: DEFAULT_MAX_SHRINK_STEPS,
            shrink_max_states: DEFAULT_SHRINK_MAX_STATES,
            shrink_total_states: DEFAULT_SHRINK_TOTAL_STATES,
        }
    }
}

/// The verdict for one register history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Some linearization exists.
    Linearizable,
    /// No linearization exists.
    NotLinearizable,
    /// The search bound was reached first.
    Inconclusive,
}

/// A key whose history is not linearizable, with a small failing
/// sub-history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The key.
    pub key: Vec<u8>,
    /// Operations of this key that are not linearizable on their own, in
    /// invoke order. Only ops that cannot hide a linearization were cut
    /// (reads, and writes whose value no remaining read returns), so their
    /// failure is the history's failure, not an artefact of the cutting.
    pub ops: Vec<Op>,
    /// How many operations the history had on this key.
    pub key_ops: usize,
    /// Whether shrinking finished: no single operation of `ops` can be
    /// removed. `false` if it stopped at a step or state limit.
    pub minimal: bool,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("key ")?;
        fmt_value(f, Some(&self.key))?;
        let how = if self.minimal {
            "minimal"
        } else {
            "shrinking stopped at its limits"
        };
        writeln!(
            f,
            ": not linearizable; these {} of its {} ops cannot be linearized ({how}):",
            self.ops.len(),
            self.key_ops
        )?;
        for op in &self.ops {
            writeln!(f, "  {op}")?;
        }
        Ok(())
    }
}

/// The result of checking a whole history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckResult {
    /// Every register key was shown linearizable.
    pub ok: bool,
    /// How many distinct register keys the history touched.
    pub keys_checked: usize,
    /// How many keys were skipped as not registers (counters, lists, sets,
    /// keys whose TTL may run out within the history).
    pub keys_skipped: usize,
    /// One entry per non-linearizable key, in key order.
    pub violations: Vec<Violation>,
    /// Keys whose search hit `max_states_per_key`, in key order.
    pub inconclusive: Vec<Vec<u8>>,
    /// Configurations explored over all keys (not counting shrinking).
    pub states_explored: usize,
}

impl CheckResult {
    /// The first violation, if any.
    pub fn violation(&self) -> Option<&Violation> {
        self.violations.first()
    }

    /// No violation was found, but some key could not be decided.
    pub fn is_inconclusive(&self) -> bool {
        self.violations.is_empty() && !self.inconclusive.is_empty()
    }
}

impl fmt::Display for CheckResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} register keys checked ({} other keys skipped): {} not linearizable, {} inconclusive",
            self.keys_checked,
            self.keys_skipped,
            self.violations.len(),
            self.inconclusive.len()
        )?;
        for v in &self.violations {
            write!(f, "{v}")?;
        }
        for key in &self.inconclusive {
            f.write_str("key ")?;
            fmt_value(f, Some(key))?;
            writeln!(f, ": inconclusive (search bound reached)")?;
        }
        Ok(())
    }
}

/// Checks `history` with the default bounds.
pub fn check(history: &[Op]) -> CheckResult {
    check_with(history, &CheckerConfig::default())
}

/// Checks `history`, each register key independently.
pub fn check_with(history: &[Op], config: &CheckerConfig) -> CheckResult {
    let (registers, others): (Vec<_>, Vec<_>) = split_by_key(history)
        .into_iter()
        .partition(|(_, ops)| is_register(ops));
    let mut result = CheckResult {
        ok: true,
        keys_checked: registers.len(),
        keys_skipped: others.len(),
        violations: Vec::new(),
        inconclusive: Vec::new(),
        states_explored: 0,
    };
    for (key, ops) in registers {
        let (verdict, states) = search(&prepare(&ops), config.max_states_per_key);
        result.states_explored += states;
        match verdict {
            Verdict::Linearizable => {}
            Verdict::NotLinearizable => result.violations.push(violation(key, &ops, config)),
            Verdict::Inconclusive => result.inconclusive.push(key.to_vec()),
        }
    }
    result.ok = result.violations.is_empty() && result.inconclusive.is_empty();
    result
}

/// Checks `ops` as the history of a single register, ignoring their keys.
/// `INCR`s are ignored, and writes with a TTL are taken as plain writes.
pub fn check_register(ops: &[Op], max_states: usize) -> Verdict {
    search(&prepare(ops), max_states).0
}

/// Whether one key's ops fit the register model: each is a `GET`, `SET` or
/// `DEL` (not an `INCR` nor a list or set command), and no
/// write with a TTL may expire within the history. Such a write cannot
/// expire before `ttl_ms` after its invoke, and the history ends at its
/// latest event.
fn is_register(ops: &[Op]) -> bool {
    let end_ns = ops
        .iter()
        .map(|op| op.effective_complete_ns().unwrap_or(op.invoke_ns))
        .max()
        .unwrap_or(0);
    ops.iter().all(|op| match &op.kind {
        OpKind::WriteWithTtl { ttl_ms, .. } => {
            op.outcome == Outcome::Fail || op.invoke_ns.saturating_add(ms_to_ns(*ttl_ms)) > end_ns
        }
        kind => register_op(kind).is_some(),
    })
}

fn split_by_key(history: &[Op]) -> BTreeMap<&[u8], Vec<Op>> {
    let mut by_key: BTreeMap<&[u8], Vec<Op>> = BTreeMap::new();
    for op in history {
        by_key.entry(&op.key).or_default().push(op.clone());
    }
    by_key
}

// ---------------------------------------------------------------------------
// Preparation: drop what cannot matter, intern values.

/// An op as the register model sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RegisterOp<'a> {
    Read,
    /// Sets the value (`None` deletes the key).
    Write(Option<&'a [u8]>),
}

/// How the register model sees `kind`; `None` for an `INCR` or a list or
/// set command, which are not register operations.
fn register_op(kind: &OpKind) -> Option<RegisterOp<'_>> {
    match kind {
        OpKind::Read => Some(RegisterOp::Read),
        OpKind::Write(v) => Some(RegisterOp::Write(v.as_deref())),
        OpKind::WriteWithTtl { value, .. } => Some(RegisterOp::Write(Some(value))),
        OpKind::Incr | OpKind::RPush(_) | OpKind::LPop | OpKind::SAdd(_) | OpKind::SRem(_) => None,
    }
}

/// A model step, with values interned (`ABSENT` = key absent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Read(usize),
    Write(usize),
}

/// An operation as the search sees it.
#[derive(Debug, Clone, Copy)]
struct Prepared {
    invoke: u64,
    /// `None` = never completes: the op is optional.
    complete: Option<u64>,
    action: Action,
}

impl Prepared {
    fn required(&self) -> bool {
        self.complete.is_some()
    }
}

/// The values that successful reads in `ops` returned.
fn read_values<'a>(ops: impl IntoIterator<Item = &'a Op>) -> HashSet<Option<&'a [u8]>> {
    ops.into_iter()
        .filter_map(|op| match (register_op(&op.kind), &op.outcome) {
            (Some(RegisterOp::Read), Outcome::Ok(v)) => Some(v.as_deref()),
            _ => None,
        })
        .collect()
}

/// The ops of one register that can matter, in their original order. Dropped:
/// failed ops, reads of unknown outcome, unknown writes whose value no read
/// returned (such a write can always be taken as never having happened:
/// removing a write whose value nobody reads keeps a linearization valid),
/// and ops that are not register operations.
fn relevant(ops: &[Op]) -> Vec<&Op> {
    let seen = read_values(ops);
    ops.iter()
        .filter(|op| match (register_op(&op.kind), &op.outcome) {
            (None, _) | (_, Outcome::Fail) | (Some(RegisterOp::Read), Outcome::Unknown) => false,
            (Some(RegisterOp::Write(v)), Outcome::Unknown) => seen.contains(&v),
            (Some(_), Outcome::Ok(_)) => true,
        })
        .collect()
}

fn prepare(ops: &[Op]) -> Vec<Prepared> {
    let mut ids: HashMap<&[u8], usize> = HashMap::new();
    relevant(ops)
        .into_iter()
        .filter_map(|op| {
            let action = match (register_op(&op.kind)?, &op.outcome) {
                (RegisterOp::Write(v), _) => Action::Write(intern(&mut ids, v)),
                (RegisterOp::Read, Outcome::Ok(v)) => Action::Read(intern(&mut ids, v.as_deref())),
                (RegisterOp::Read, _) => Action::Read(ABSENT),
            };
            Some(Prepared {
                invoke: op.invoke_ns,
                complete: op.effective_complete_ns(),
                action,
            })
        })
        .collect()
}

fn intern<'a>(ids: &mut HashMap<&'a [u8], usize>, value: Option<&'a [u8]>) -> usize {
    match value {
        None => ABSENT,
        Some(bytes) => {
            let next = ids.len() + 1;
            *ids.entry(bytes).or_insert(next)
        }
    }
}

/// The register model: the state after `action`, or `None` if a read
/// returned something other than the current value.
fn step(state: usize, action: Action) -> Option<usize> {
    match action {
        Action::Read(v) => (v == state).then_some(state),
        Action::Write(v) => Some(v),
    }
}

// ---------------------------------------------------------------------------
// The search.

/// A node of the doubly linked event list.
#[derive(Debug, Clone, Copy)]
enum Node {
    Head,
    Tail,
    Call(usize),
    Return(usize),
}

/// Call and return events in time order, as a doubly linked list that
/// supports removing an operation's events and putting them back in LIFO
/// order ("dancing links").
struct Events {
    nodes: Vec<Node>,
    prev: Vec<usize>,
    next: Vec<usize>,
    call_of: Vec<usize>,
    return_of: Vec<Option<usize>>,
}

const HEAD: usize = 0;

impl Events {
    fn new(ops: &[Prepared]) -> Self {
        // (time, calls before returns at equal times, node)
        let mut events: Vec<(u64, u8, Node)> = Vec::with_capacity(ops.len() * 2);
        for (i, op) in ops.iter().enumerate() {
            events.push((op.invoke, 0, Node::Call(i)));
            if let Some(t) = op.complete {
                events.push((t, 1, Node::Return(i)));
            }
        }
        events.sort_by_key(|&(t, rank, _)| (t, rank));
        let mut nodes = Vec::with_capacity(events.len() + 2);
        nodes.push(Node::Head);
        nodes.extend(events.into_iter().map(|(_, _, n)| n));
        nodes.push(Node::Tail);
        let mut call_of = vec![HEAD; ops.len()];
        let mut return_of = vec![None; ops.len()];
        for (idx, node) in nodes.iter().enumerate() {
            match *node {
                Node::Call(op) => call_of[op] = idx,
                Node::Return(op) => return_of[op] = Some(idx),
                Node::Head | Node::Tail => {}
            }
        }
        let len = nodes.len();
        Self {
            nodes,
            prev: (0..len).map(|i| i.saturating_sub(1)).collect(),
            next: (1..=len).collect(),
            call_of,
            return_of,
        }
    }

    fn first(&self) -> usize {
        self.next[HEAD]
    }

    fn unlink(&mut self, i: usize) {
        let (p, n) = (self.prev[i], self.next[i]);
        self.next[p] = n;
        self.prev[n] = p;
    }

    fn relink(&mut self, i: usize) {
        let (p, n) = (self.prev[i], self.next[i]);
        self.next[p] = i;
        self.prev[n] = i;
    }

    /// Removes `op`'s events: it is linearized.
    fn lift(&mut self, op: usize) {
        self.unlink(self.call_of[op]);
        if let Some(r) = self.return_of[op] {
            self.unlink(r);
        }
    }

    /// Undoes the latest [`lift`](Self::lift), which must have been of `op`.
    fn unlift(&mut self, op: usize) {
        if let Some(r) = self.return_of[op] {
            self.relink(r);
        }
        self.relink(self.call_of[op]);
    }
}

/// The set of linearized operations.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Bitset(Vec<u64>);

impl Bitset {
    fn new(len: usize) -> Self {
        Self(vec![0; len.div_ceil(64)])
    }

    fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }

    fn clear(&mut self, i: usize) {
        self.0[i / 64] &= !(1 << (i % 64));
    }

    fn get(&self, i: usize) -> bool {
        self.0[i / 64] & (1 << (i % 64)) != 0
    }
}

/// For each optional write, the previous optional write (in event-list
/// order) of the same value.
fn previous_twins(ops: &[Prepared], events: &Events) -> Vec<Option<usize>> {
    let mut optional: Vec<usize> = (0..ops.len()).filter(|&i| !ops[i].required()).collect();
    optional.sort_by_key(|&i| events.call_of[i]);
    let mut last_of_value: HashMap<usize, usize> = HashMap::new();
    let mut twins = vec![None; ops.len()];
    for i in optional {
        if let Action::Write(v) = ops[i].action {
            twins[i] = last_of_value.insert(v, i);
        }
    }
    twins
}

/// Passes a fingerprint's low bits through as its hash: it is random already.
#[derive(Debug, Default)]
struct Passthrough(u64);

impl Hasher for Passthrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u128(&mut self, n: u128) {
        // Truncation intended: the low half of a random fingerprint.
        self.0 = n as u64;
    }
}

/// The configurations explored so far, as 128-bit fingerprints of (set of
/// linearized ops, register value, "latest op was an optional write"). A
/// fingerprint collision could only hide a linearization (a false
/// violation); at the default bound its probability is below 2^-80.
struct Memo {
    keys: [RandomState; 2],
    seen: HashSet<u128, BuildHasherDefault<Passthrough>>,
}

impl Memo {
    fn new() -> Self {
        Self {
            keys: [RandomState::new(), RandomState::new()],
            seen: HashSet::default(),
        }
    }

    /// Records a configuration; false if it was seen before.
    fn insert(&mut self, linearized: &Bitset, state: usize, after_optional: bool) -> bool {
        let config = (&linearized.0, state, after_optional);
        let [a, b] = &self.keys;
        let fingerprint = u128::from(a.hash_one(config)) << 64 | u128::from(b.hash_one(config));
        self.seen.insert(fingerprint)
    }

    fn len(&self) -> usize {
        self.seen.len()
    }
}

/// Searches for a linearization of `ops`; returns the verdict and the number
/// of configurations explored.
///
/// Two exact prunings, for optional (unknown) writes:
/// - one must be followed directly by a read (of its value, or the read
///   fails anyway). Otherwise nothing observes it, and the same
///   linearization without it, which the search also explores, is as good.
///   The flag in [`Memo`] keeps memoisation exact under this rule.
/// - optional writes of the same value are interchangeable but for their
///   invoke times, so they are used in invoke order: if some linearization
///   uses them, the one that gives the k-th use to the k-th earliest is
///   valid too.
fn search(ops: &[Prepared], max_states: usize) -> (Verdict, usize) {
    let mut events = Events::new(ops);
    let twins = previous_twins(ops, &events);
    let mut linearized = Bitset::new(ops.len());
    let mut seen = Memo::new();
    // (op, register value before it)
    let mut stack: Vec<(usize, usize)> = Vec::new();
    let mut state = ABSENT;
    let mut remaining = ops.iter().filter(|op| op.required()).count();
    let mut cursor = events.first();
    loop {
        if remaining == 0 {
            return (Verdict::Linearizable, seen.len());
        }
        if let Node::Call(op) = events.nodes[cursor] {
            let must_read = stack.last().is_some_and(|&(top, _)| !ops[top].required());
            let allowed = (!must_read || matches!(ops[op].action, Action::Read(_)))
                && twins[op].is_none_or(|twin| linearized.get(twin));
            if let Some(after) = step(state, ops[op].action).filter(|_| allowed) {
                linearized.set(op);
                if seen.insert(&linearized, after, !ops[op].required()) {
                    if seen.len() > max_states {
                        return (Verdict::Inconclusive, seen.len());
                    }
                    stack.push((op, state));
                    state = after;
                    events.lift(op);
                    remaining -= usize::from(ops[op].required());
                    cursor = events.first();
                    continue;
                }
                linearized.clear(op);
            }
            cursor = events.next[cursor];
            continue;
        }
        // A pending op's return (or the end of the list) is reached: the
        // latest choice was wrong.
        let Some((op, before)) = stack.pop() else {
            return (Verdict::NotLinearizable, seen.len());
        };
        linearized.clear(op);
        state = before;
        events.unlift(op);
        remaining += usize::from(ops[op].required());
        cursor = events.next[events.call_of[op]];
    }
}

// ---------------------------------------------------------------------------
// Shrinking a violation.

fn violation(key: &[u8], ops: &[Op], config: &CheckerConfig) -> Violation {
    let mut candidates: Vec<Op> = relevant(ops).into_iter().cloned().collect();
    candidates.sort_by_key(|op| (op.invoke_ns, op.effective_complete_ns().unwrap_or(u64::MAX)));
    let (ops_left, minimal) = shrink(candidates, config);
    Violation {
        key: key.to_vec(),
        ops: ops_left,
        key_ops: ops.len(),
        minimal,
    }
}

/// What shrinking may still spend.
struct Budget {
    steps: usize,
    states: usize,
}

impl Budget {
    /// Checks whether `candidate` still fails, paying for it; `None` when the
    /// budget is spent.
    fn still_fails(&mut self, candidate: &[Op], config: &CheckerConfig) -> Option<bool> {
        if self.steps == 0 || self.states == 0 {
            return None;
        }
        self.steps -= 1;
        let bound = config.shrink_max_states.min(self.states);
        let (verdict, states) = search(&prepare(candidate), bound);
        self.states = self.states.saturating_sub(states);
        Some(verdict == Verdict::NotLinearizable)
    }
}

/// Removes chunks of halving size, then single ops until none can go or the
/// budget runs out. Returns the ops left and whether it finished.
fn shrink(mut ops: Vec<Op>, config: &CheckerConfig) -> (Vec<Op>, bool) {
    let mut budget = Budget {
        steps: config.max_shrink_steps,
        states: config.shrink_total_states,
    };
    let mut size = ops.len() / 2;
    while size > 1 {
        if remove_chunks(&mut ops, size, &mut budget, config).is_none() {
            return (ops, false);
        }
        size /= 2;
    }
    loop {
        match remove_chunks(&mut ops, 1, &mut budget, config) {
            Some(true) => {}
            Some(false) => return (ops, true),
            None => return (ops, false),
        }
    }
}

/// One pass, from the end, over chunks of `size` ops, removing from each
/// what may honestly go (see [`removable`]) if the rest still fails.
/// Returns whether anything was removed, or `None` if the budget ran out.
fn remove_chunks(
    ops: &mut Vec<Op>,
    size: usize,
    budget: &mut Budget,
    config: &CheckerConfig,
) -> Option<bool> {
    let mut removed = false;
    let mut end = ops.len();
    while end > 0 {
        let start = end.saturating_sub(size);
        let doomed = removable(ops, start..end);
        if !doomed.is_empty() {
            let candidate: Vec<Op> = ops
                .iter()
                .enumerate()
                .filter(|(i, _)| doomed.binary_search(i).is_err())
                .map(|(_, op)| op.clone())
                .collect();
            if budget.still_fails(&candidate, config)? {
                *ops = candidate;
                removed = true;
            }
        }
        end = start;
    }
    Some(removed)
}

/// The ops in `range` that can be removed while keeping the failure honest
/// (if the whole history were linearizable, the rest would be too): every
/// read, and every write whose value no read outside `range` returns.
fn removable(ops: &[Op], range: Range<usize>) -> Vec<usize> {
    let (start, end) = (range.start, range.end);
    let kept_reads = read_values(ops[..start].iter().chain(&ops[end..]));
    range
        .filter(|&i| match register_op(&ops[i].kind) {
            Some(RegisterOp::Write(v)) => !kept_reads.contains(&v),
            Some(RegisterOp::Read) | None => true,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const K: &[u8] = b"k";

    fn op(client: u64, kind: OpKind, t: (u64, u64), outcome: Outcome) -> Op {
        Op {
            client,
            key: K.to_vec(),
            kind,
            invoke_ns: t.0,
            complete_ns: t.1,
            outcome,
        }
    }

    fn set(client: u64, v: &str, t: (u64, u64)) -> Op {
        op(client, OpKind::Write(Some(v.into())), t, Outcome::Ok(None))
    }

    fn del(client: u64, t: (u64, u64)) -> Op {
        op(client, OpKind::Write(None), t, Outcome::Ok(None))
    }

    fn get(client: u64, v: Option<&str>, t: (u64, u64)) -> Op {
        op(client, OpKind::Read, t, Outcome::Ok(v.map(Into::into)))
    }

    fn with(mut o: Op, outcome: Outcome) -> Op {
        o.outcome = outcome;
        o
    }

    fn keyed(mut o: Op, key: &str) -> Op {
        o.key = key.into();
        o
    }

    fn assert_ok(h: &[Op]) {
        let r = check(h);
        assert!(r.ok, "expected linearizable:\n{r}");
    }

    fn assert_violation(h: &[Op]) -> Violation {
        let r = check(h);
        assert!(
            !r.ok && r.inconclusive.is_empty(),
            "expected a violation:\n{r}"
        );
        r.violation().cloned().unwrap()
    }

    #[test]
    fn empty_history() {
        let r = check(&[]);
        assert!(r.ok);
        assert_eq!(r.keys_checked, 0);
    }

    #[test]
    fn sequential() {
        assert_ok(&[
            get(1, None, (0, 1)),
            set(1, "a", (2, 3)),
            get(2, Some("a"), (4, 5)),
            set(2, "b", (6, 7)),
            get(1, Some("b"), (8, 9)),
        ]);
    }

    #[test]
    fn concurrent_writes_reads_see_either() {
        let writes = [set(1, "a", (0, 10)), set(2, "b", (0, 10))];
        for (x, y) in [("a", "b"), ("b", "a")] {
            let mut after = writes.to_vec();
            after.push(get(3, Some(x), (11, 12)));
            assert_ok(&after);
            // Reads during the writes may see absent, then one, then the other.
            let mut during = writes.to_vec();
            during.extend([
                get(4, None, (1, 2)),
                get(4, Some(y), (3, 4)),
                get(3, Some(x), (11, 12)),
            ]);
            assert_ok(&during);
        }
        // Both orders cannot be observed after both writes completed.
        let mut h = writes.to_vec();
        h.extend([get(3, Some("a"), (11, 12)), get(3, Some("b"), (13, 14))]);
        assert_violation(&h);
    }

    #[test]
    fn stale_read_is_violation() {
        let v = assert_violation(&[
            set(1, "a", (0, 1)),
            set(1, "b", (2, 3)),
            get(2, Some("a"), (4, 5)),
        ]);
        assert_eq!(v.ops.len(), 3, "{v}");
        assert!(v.minimal);
    }

    #[test]
    fn read_of_value_never_written_is_violation() {
        let v = assert_violation(&[set(1, "a", (0, 1)), get(2, Some("zzz"), (2, 3))]);
        assert_eq!(v.ops, vec![get(2, Some("zzz"), (2, 3))]);
    }

    #[test]
    fn lost_write_is_violation() {
        assert_violation(&[
            set(1, "a", (0, 1)),
            get(2, Some("a"), (2, 3)),
            set(1, "b", (4, 5)),
            get(2, Some("a"), (10, 11)),
        ]);
    }

    #[test]
    fn unknown_write_seen_later_is_ok() {
        assert_ok(&[
            set(1, "a", (0, 1)),
            with(set(2, "b", (2, 3)), Outcome::Unknown),
            get(3, Some("a"), (4, 5)),
            get(3, Some("b"), (100, 101)),
            get(3, Some("b"), (102, 103)),
        ]);
    }

    #[test]
    fn unknown_write_never_seen_is_ok() {
        assert_ok(&[
            set(1, "a", (0, 1)),
            with(set(2, "b", (2, 3)), Outcome::Unknown),
            get(3, Some("a"), (100, 101)),
        ]);
    }

    #[test]
    fn unknown_write_not_before_invoke() {
        assert_violation(&[
            get(1, Some("b"), (0, 1)),
            with(set(2, "b", (2, 3)), Outcome::Unknown),
        ]);
    }

    #[test]
    fn unknown_write_takes_effect_once() {
        assert_violation(&[
            with(set(1, "b", (0, 1)), Outcome::Unknown),
            get(2, Some("b"), (2, 3)),
            set(3, "c", (4, 5)),
            get(2, Some("b"), (6, 7)),
        ]);
    }

    #[test]
    fn failed_write_seen_is_violation() {
        let v = assert_violation(&[
            set(1, "a", (0, 1)),
            with(set(2, "b", (2, 3)), Outcome::Fail),
            get(3, Some("b"), (4, 5)),
        ]);
        assert!(v.ops.iter().all(|o| o.outcome != Outcome::Fail));
    }

    #[test]
    fn unknown_and_failed_reads_are_ignored() {
        assert_ok(&[
            set(1, "a", (0, 1)),
            with(get(2, Some("zzz"), (2, 3)), Outcome::Unknown),
            with(get(2, Some("zzz"), (4, 5)), Outcome::Fail),
        ]);
    }

    #[test]
    fn del_semantics() {
        assert_ok(&[
            del(1, (0, 1)),
            get(1, None, (2, 3)),
            set(1, "a", (4, 5)),
            del(2, (6, 7)),
            get(1, None, (8, 9)),
        ]);
        assert_violation(&[
            set(1, "a", (0, 1)),
            del(2, (2, 3)),
            get(1, Some("a"), (4, 5)),
        ]);
        assert_violation(&[set(1, "a", (0, 1)), get(1, None, (2, 3))]);
        // A concurrent DEL may or may not be seen.
        assert_ok(&[
            set(1, "a", (0, 1)),
            del(2, (2, 10)),
            get(1, Some("a"), (3, 4)),
            get(1, None, (5, 6)),
        ]);
    }

    #[test]
    fn equal_timestamps_are_concurrent() {
        assert_ok(&[set(1, "a", (0, 5)), get(2, None, (5, 6))]);
        assert_violation(&[set(1, "a", (0, 5)), get(2, None, (6, 7))]);
    }

    #[test]
    fn keys_are_independent() {
        let h = vec![
            keyed(set(1, "a", (0, 1)), "x"),
            keyed(get(2, None, (2, 3)), "y"),
            keyed(get(2, Some("a"), (2, 3)), "x"),
            keyed(set(1, "a", (0, 1)), "z"),
            keyed(get(2, None, (2, 3)), "z"),
        ];
        let r = check(&h);
        assert_eq!(r.keys_checked, 3);
        assert_eq!(r.violations.len(), 1);
        assert_eq!(r.violations[0].key, b"z");
    }

    fn set_ttl(client: u64, v: &str, ttl_ms: u64, t: (u64, u64)) -> Op {
        let kind = OpKind::WriteWithTtl {
            value: v.into(),
            ttl_ms,
        };
        op(client, kind, t, Outcome::Ok(None))
    }

    #[test]
    fn a_ttl_that_outlasts_the_history_is_a_plain_write() {
        let ms = 1_000_000;
        assert_ok(&[
            set_ttl(1, "a", 10, (0, 1)),
            get(2, Some("a"), (2, 10 * ms - 1)),
        ]);
        assert_violation(&[
            set_ttl(1, "a", 10, (0, 1)),
            set_ttl(1, "b", 10, (2, 3)),
            get(2, Some("a"), (4, 5)),
        ]);
        // A failed write cannot expire anything.
        assert_violation(&[
            set(1, "a", (0, 1)),
            with(set_ttl(1, "b", 10, (2, 3)), Outcome::Fail),
            get(2, None, (20 * ms, 20 * ms + 1)),
        ]);
    }

    #[test]
    fn keys_that_are_not_registers_are_skipped() {
        let ms = 1_000_000;
        let h = [
            // May have expired by the read: not a register.
            keyed(set_ttl(1, "a", 10, (0, 1)), "e"),
            keyed(get(2, None, (10 * ms, 10 * ms + 1)), "e"),
            // A counter.
            keyed(
                op(1, OpKind::Incr, (0, 1), Outcome::Ok(Some(b"1".to_vec()))),
                "c",
            ),
            keyed(get(2, Some("zzz"), (2, 3)), "c"),
            // A register.
            set(1, "a", (0, 1)),
            // A list and a set.
            keyed(
                op(1, OpKind::RPush(b"x".to_vec()), (0, 1), Outcome::Unknown),
                "l",
            ),
            keyed(op(2, OpKind::LPop, (2, 3), Outcome::Ok(None)), "l"),
            keyed(
                op(1, OpKind::SAdd(b"x".to_vec()), (0, 1), Outcome::Unknown),
                "s",
            ),
            keyed(
                op(2, OpKind::SRem(b"x".to_vec()), (2, 3), Outcome::Fail),
                "s",
            ),
        ];
        let r = check(&h);
        assert!(r.ok, "{r}");
        assert_eq!((r.keys_checked, r.keys_skipped), (1, 4));
        assert!(r.to_string().contains("4 other keys skipped"), "{r}");
        // Checked alone, INCRs are ignored and TTLs taken as plain writes.
        assert_eq!(check_register(&h[..2], 100), Verdict::NotLinearizable);
        assert_eq!(check_register(&h[2..3], 100), Verdict::Linearizable);
    }

    #[test]
    fn shrinks_to_the_culprit() {
        let mut h = Vec::new();
        for i in 0..50u64 {
            h.push(set(1, &format!("v{i}"), (i * 10, i * 10 + 5)));
            h.push(get(2, Some(&format!("v{i}")), (i * 10 + 6, i * 10 + 8)));
        }
        // A stale read in the middle.
        h.push(get(3, Some("v20"), (300, 301)));
        let v = assert_violation(&h);
        assert!(v.minimal);
        assert_eq!(v.key_ops, 101);
        // The stale read, the value it read, and something written later.
        assert_eq!(v.ops.len(), 3, "{v}");
        let text = v.to_string();
        assert!(
            text.contains(r#"client 3: read "k" -> "v20" [300, 301]"#),
            "{text}"
        );
    }

    #[test]
    fn shrink_keeps_writes_that_are_read() {
        // Removing set "b" would turn the read into a read of a value never
        // written: a different, misleading failure.
        let v = assert_violation(&[
            set(1, "a", (0, 1)),
            set(1, "b", (2, 3)),
            get(2, Some("b"), (4, 5)),
            get(2, Some("a"), (6, 7)),
        ]);
        assert!(v
            .ops
            .iter()
            .any(|o| o.kind == OpKind::Write(Some(b"b".to_vec()))));
    }

    #[test]
    fn search_bound_is_inconclusive() {
        let mut h = Vec::new();
        for c in 0..12u64 {
            h.push(set(c, &format!("v{c}"), (0, 100)));
        }
        h.push(get(99, Some("never"), (101, 102)));
        let config = CheckerConfig {
            max_states_per_key: 100,
            ..CheckerConfig::default()
        };
        let r = check_with(&h, &config);
        assert!(!r.ok);
        assert!(r.is_inconclusive());
        assert_eq!(r.inconclusive, vec![K.to_vec()]);
        assert!(r.to_string().contains("inconclusive"));
    }

    #[test]
    fn unknown_writes_interleave_with_reads() {
        let unknown = |c, v| with(set(c, v, (0, 1)), Outcome::Unknown);
        assert_ok(&[
            unknown(1, "a"),
            unknown(2, "b"),
            get(3, Some("b"), (1, 2)),
            get(3, Some("a"), (3, 4)),
            get(3, Some("a"), (5, 6)),
        ]);
        assert_violation(&[
            set(1, "a", (0, 1)),
            with(set(2, "b", (2, 3)), Outcome::Unknown),
            get(3, Some("b"), (4, 5)),
            get(3, Some("a"), (6, 7)),
        ]);
    }

    /// Exhaustive oracle: tries every order of the required ops with every
    /// subset of the optional ones.
    fn brute_force(ops: &[Prepared]) -> bool {
        fn go(ops: &[Prepared], placed: &mut Vec<bool>, state: usize) -> bool {
            if (0..ops.len()).all(|i| placed[i] || !ops[i].required()) {
                return true;
            }
            (0..ops.len()).any(|i| {
                let ready = !placed[i]
                    && (0..ops.len())
                        .all(|p| placed[p] || ops[p].complete.is_none_or(|c| c >= ops[i].invoke));
                let Some(after) = step(state, ops[i].action).filter(|_| ready) else {
                    return false;
                };
                placed[i] = true;
                let found = go(ops, placed, after);
                placed[i] = false;
                found
            })
        }
        go(ops, &mut vec![false; ops.len()], ABSENT)
    }

    fn arbitrary_op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        let value = prop_oneof![Just(None), (0u8..3).prop_map(|v| Some(vec![v]))];
        let outcome = prop_oneof![4 => Just(0u8), 2 => Just(1u8), 1 => Just(2u8)];
        (any::<bool>(), value, 0u64..12, 0u64..8, outcome).prop_map(
            |(is_read, value, invoke, duration, outcome)| {
                let kind = if is_read {
                    OpKind::Read
                } else {
                    OpKind::Write(value.clone())
                };
                let outcome = match (outcome, is_read) {
                    (0, true) => Outcome::Ok(value),
                    (0, false) => Outcome::Ok(None),
                    (1, _) => Outcome::Unknown,
                    _ => Outcome::Fail,
                };
                op(1, kind, (invoke, invoke + duration), outcome)
            },
        )
    }

    proptest::proptest! {
        #[test]
        fn agrees_with_brute_force(ops in proptest::collection::vec(arbitrary_op(), 0..8)) {
            // The oracle sees every op that is not dropped by definition
            // (failed ops, unknown reads), so it also checks the dropping of
            // unread unknown writes done by `prepare`.
            let defined: Vec<Op> = ops
                .iter()
                .filter(|o| o.outcome != Outcome::Fail)
                .filter(|o| o.is_write() || o.outcome != Outcome::Unknown)
                .cloned()
                .collect();
            let mut ids = HashMap::new();
            let all: Vec<Prepared> = defined
                .iter()
                .map(|o| {
                    let value = match (&o.kind, &o.outcome) {
                        (OpKind::Write(v), _) | (OpKind::Read, Outcome::Ok(v)) => v.as_deref(),
                        _ => None,
                    };
                    let id = intern(&mut ids, value);
                    let action = if o.is_write() { Action::Write(id) } else { Action::Read(id) };
                    Prepared { invoke: o.invoke_ns, complete: o.effective_complete_ns(), action }
                })
                .collect();
            let expected = brute_force(&all);
            let verdict = check_register(&ops, DEFAULT_MAX_STATES_PER_KEY);
            let want = if expected { Verdict::Linearizable } else { Verdict::NotLinearizable };
            proptest::prop_assert_eq!(verdict, want);
            if let Some(v) = check(&ops).violation() {
                // The shrunk sub-history fails on its own, under the oracle too.
                let sub = check_register(&v.ops, DEFAULT_MAX_STATES_PER_KEY);
                proptest::prop_assert_eq!(sub, Verdict::NotLinearizable);
            }
        }
    }
}
