//! Recorded histories of client operations against a key-value store.
//!
//! A history is a list of [`Op`]s, each with the interval in which it was in
//! flight (`invoke_ns` .. `complete_ns`) and what the client learned about it
//! (its [`Outcome`]). An op reads, writes (optionally with a TTL) or
//! increments one key, or pushes to or pops from a list, or adds a member
//! to or removes one from a set. [`Recorder`] builds one from many threads; [`write_jsonl`]
//! and [`read_jsonl`] save and load it one JSON object per line.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use serde::{Deserialize, Serialize};

/// What a client asked the store to do to one key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum OpKind {
    /// `GET key`.
    Read,
    /// `SET key value` (`Some(value)`) or `DEL key` (`None`).
    Write(Option<Vec<u8>>),
    /// `SET key value PX ttl_ms`: the key expires `ttl_ms` after the store
    /// applies the write.
    WriteWithTtl {
        /// The value written.
        value: Vec<u8>,
        /// The time to live, in milliseconds.
        ttl_ms: u64,
    },
    /// `INCR key`.
    Incr,
    /// `RPUSH key value`: appends `value` to the list. Its reply is the
    /// list's new length.
    RPush(Vec<u8>),
    /// `LPOP key`: takes the list's head. Its reply is the value taken, or
    /// nil for an empty list.
    LPop,
    /// `SADD key member`. Its reply is 1 if `member` was added, 0 if it was
    /// there already.
    SAdd(Vec<u8>),
    /// `SREM key member`. Its reply is 1 if `member` was removed, 0 if it
    /// was not there.
    SRem(Vec<u8>),
}

impl OpKind {
    /// The TTL this op sets, in milliseconds; `None` if it sets none.
    pub fn ttl_ms(&self) -> Option<u64> {
        match self {
            Self::WriteWithTtl { ttl_ms, .. } => Some(*ttl_ms),
            Self::Read
            | Self::Write(_)
            | Self::Incr
            | Self::RPush(_)
            | Self::LPop
            | Self::SAdd(_)
            | Self::SRem(_) => None,
        }
    }
}

/// What the client learned about an operation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Outcome {
    /// It happened. For a read, the value read (`None` = key absent); for
    /// `LPOP`, the value taken (`None` = the list was empty); for `INCR`,
    /// `RPUSH`, `SADD` and `SREM`, the integer reply in decimal digits, as
    /// Redis would send it in a bulk string; for other writes, `None`.
    Ok(Option<Vec<u8>>),
    /// Definite failure: it did not happen and never will.
    Fail,
    /// Indeterminate (timeout, lost connection, ...): it may or may not have
    /// happened, at any time after it was invoked.
    Unknown,
}

/// One client operation on one key, with its real-time interval.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Op {
    /// The client (a sequential process) that issued it.
    pub client: u64,
    /// The key it touched.
    pub key: Vec<u8>,
    /// What it asked for.
    pub kind: OpKind,
    /// When it was sent, in nanoseconds since the recorder started.
    pub invoke_ns: u64,
    /// When its reply arrived. Ignored for [`Outcome::Unknown`] (treated as
    /// infinity).
    pub complete_ns: u64,
    /// What the client learned.
    pub outcome: Outcome,
}

impl Op {
    /// Whether this is a write (anything but `GET`).
    pub fn is_write(&self) -> bool {
        !matches!(self.kind, OpKind::Read)
    }

    /// The completion time the checker uses: `None` (infinity) for an
    /// [`Outcome::Unknown`] op, otherwise `complete_ns`, but never before
    /// `invoke_ns`.
    pub fn effective_complete_ns(&self) -> Option<u64> {
        match self.outcome {
            Outcome::Unknown => None,
            _ => Some(self.complete_ns.max(self.invoke_ns)),
        }
    }

    /// [`Self::effective_complete_ns`], with `u64::MAX` for never: `a`
    /// precedes `b` in real time when `a.done_ns() < b.invoke_ns`.
    pub fn done_ns(&self) -> u64 {
        self.effective_complete_ns().unwrap_or(u64::MAX)
    }

    /// The integer an acknowledged op replied (`INCR`, `RPUSH`, `SADD`,
    /// `SREM`); `None` if it was not acknowledged or its reply is not a
    /// decimal integer.
    pub(crate) fn int_reply(&self) -> Option<i64> {
        match &self.outcome {
            Outcome::Ok(reply) => parse_int(reply.as_deref()),
            Outcome::Fail | Outcome::Unknown => None,
        }
    }
}

/// The ops among `ops` that did not fail and are not of a kind `allowed`:
/// a checker that expects only `allowed` ones skips a key that has any.
pub(crate) fn foreign_ops<'a>(ops: &[&'a Op], allowed: impl Fn(&OpKind) -> bool) -> Vec<&'a Op> {
    ops.iter()
        .copied()
        .filter(|op| !allowed(&op.kind) && op.outcome != Outcome::Fail)
        .collect()
}

/// `value` as a decimal integer, if it is one.
pub(crate) fn parse_int(value: Option<&[u8]>) -> Option<i64> {
    std::str::from_utf8(value?).ok()?.parse().ok()
}

/// The ops of each key that has an op `selected`, or is in `also`, in
/// key order; each key's ops in history order.
pub(crate) fn ops_by_key<'a>(
    history: &'a [Op],
    selected: impl Fn(&OpKind) -> bool,
    also: impl IntoIterator<Item = &'a [u8]>,
) -> BTreeMap<&'a [u8], Vec<&'a Op>> {
    let mut by_key: BTreeMap<&[u8], Vec<&Op>> = history
        .iter()
        .filter(|op| selected(&op.kind))
        .map(|op| op.key.as_slice())
        .chain(also)
        .map(|key| (key, Vec::new()))
        .collect();
    for op in history {
        if let Some(ops) = by_key.get_mut(op.key.as_slice()) {
            ops.push(op);
        }
    }
    by_key
}

/// Nanoseconds in a millisecond.
const NANOS_PER_MILLI: u64 = 1_000_000;

/// `ms` milliseconds in nanoseconds, saturating.
pub(crate) fn ms_to_ns(ms: u64) -> u64 {
    ms.saturating_mul(NANOS_PER_MILLI)
}

/// Writes bytes as a quoted, ASCII-escaped string, or `nil` for `None`.
pub(crate) fn fmt_value(f: &mut fmt::Formatter<'_>, value: Option<&[u8]>) -> fmt::Result {
    match value {
        Some(bytes) => write!(f, "\"{}\"", bytes.escape_ascii()),
        None => f.write_str("nil"),
    }
}

impl fmt::Display for Op {
    /// `client 1: read "k" -> "v" [10, 20]`, `client 2: set "k" = "v" [5, ?] (unknown)`,
    /// `client 3: del "k" [7, 9] (failed)`, `client 4: set "k" = "v" px 200 [1, 2]`,
    /// `client 5: incr "c" -> "7" [3, 4]`, `client 6: rpush "l" "v" -> "3" [5, 6]`,
    /// `client 7: lpop "l" -> "v" [5, 6]`, `client 8: sadd "s" "m" -> "1" [5, 6]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "client {}: ", self.client)?;
        match &self.kind {
            OpKind::Read => {
                f.write_str("read ")?;
                fmt_value(f, Some(&self.key))?;
                self.fmt_result(f)?;
            }
            OpKind::Write(Some(v)) => {
                f.write_str("set ")?;
                fmt_value(f, Some(&self.key))?;
                f.write_str(" = ")?;
                fmt_value(f, Some(v))?;
            }
            OpKind::Write(None) => {
                f.write_str("del ")?;
                fmt_value(f, Some(&self.key))?;
            }
            OpKind::WriteWithTtl { value, ttl_ms } => {
                f.write_str("set ")?;
                fmt_value(f, Some(&self.key))?;
                f.write_str(" = ")?;
                fmt_value(f, Some(value))?;
                write!(f, " px {ttl_ms}")?;
            }
            OpKind::Incr => self.fmt_command(f, "incr", None)?,
            OpKind::RPush(value) => self.fmt_command(f, "rpush", Some(value))?,
            OpKind::LPop => self.fmt_command(f, "lpop", None)?,
            OpKind::SAdd(member) => self.fmt_command(f, "sadd", Some(member))?,
            OpKind::SRem(member) => self.fmt_command(f, "srem", Some(member))?,
        }
        match self.outcome {
            Outcome::Ok(_) => write!(f, " [{}, {}]", self.invoke_ns, self.complete_ns),
            Outcome::Fail => write!(f, " [{}, {}] (failed)", self.invoke_ns, self.complete_ns),
            Outcome::Unknown => write!(f, " [{}, ?] (unknown)", self.invoke_ns),
        }
    }
}

impl Op {
    /// `name "key" "arg" -> reply`.
    fn fmt_command(
        &self,
        f: &mut fmt::Formatter<'_>,
        name: &str,
        arg: Option<&[u8]>,
    ) -> fmt::Result {
        write!(f, "{name} ")?;
        fmt_value(f, Some(&self.key))?;
        if let Some(arg) = arg {
            f.write_str(" ")?;
            fmt_value(f, Some(arg))?;
        }
        self.fmt_result(f)
    }

    /// ` -> value`, or ` -> ?` when the outcome is not known.
    fn fmt_result(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(" -> ")?;
        match &self.outcome {
            Outcome::Ok(v) => fmt_value(f, v.as_deref()),
            Outcome::Fail | Outcome::Unknown => f.write_str("?"),
        }
    }
}

/// Records operations from many threads or tasks. Cloning is cheap: clones
/// share the same history and clock.
#[derive(Debug, Clone)]
pub struct Recorder {
    start: Instant,
    ops: Arc<Mutex<Vec<Op>>>,
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

impl Recorder {
    /// A recorder whose clock starts now.
    pub fn new() -> Self {
        Self {
            start: Instant::now(),
            ops: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// Nanoseconds since the recorder started (monotonic).
    pub fn now_ns(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Notes that `client` is about to send `kind` on `key`. Call this just
    /// before sending the request, and [`OpHandle::complete`] just after the
    /// reply arrives.
    pub fn invoke(&self, client: u64, key: impl Into<Vec<u8>>, kind: OpKind) -> OpHandle {
        let pending = Pending {
            client,
            key: key.into(),
            kind,
            invoke_ns: self.now_ns(),
        };
        OpHandle {
            recorder: self.clone(),
            pending: Some(pending),
        }
    }

    /// A copy of the completed operations, in completion order.
    pub fn history(&self) -> Vec<Op> {
        self.lock().clone()
    }

    /// How many operations have completed.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no operation has completed yet.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    fn push(&self, op: Op) {
        self.lock().push(op);
    }

    /// A panic while holding the lock cannot leave the `Vec` half-updated,
    /// so a poisoned lock is still usable.
    fn lock(&self) -> MutexGuard<'_, Vec<Op>> {
        self.ops.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[derive(Debug)]
struct Pending {
    client: u64,
    key: Vec<u8>,
    kind: OpKind,
    invoke_ns: u64,
}

/// An operation in flight. Dropping it without calling
/// [`complete`](OpHandle::complete) (say, a cancelled task) records it with
/// [`Outcome::Unknown`].
#[derive(Debug)]
#[must_use = "complete the operation, or it is recorded as Unknown"]
pub struct OpHandle {
    recorder: Recorder,
    pending: Option<Pending>,
}

impl OpHandle {
    /// Records the operation's outcome, timestamped now.
    pub fn complete(mut self, outcome: Outcome) {
        self.finish(outcome);
    }

    fn finish(&mut self, outcome: Outcome) {
        if let Some(p) = self.pending.take() {
            let complete_ns = self.recorder.now_ns();
            self.recorder.push(Op {
                client: p.client,
                key: p.key,
                kind: p.kind,
                invoke_ns: p.invoke_ns,
                complete_ns,
                outcome,
            });
        }
    }
}

impl Drop for OpHandle {
    fn drop(&mut self) {
        self.finish(Outcome::Unknown);
    }
}

/// Why a history could not be saved or loaded.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// Reading or writing failed.
    #[error("history I/O: {0}")]
    Io(#[from] io::Error),
    /// A line was not a valid [`Op`] (lines count from 1).
    #[error("history line {line}: {source}")]
    Json {
        /// The offending line.
        line: usize,
        /// What was wrong with it.
        #[source]
        source: serde_json::Error,
    },
}

/// Writes `history` as JSON lines: one [`Op`] object per line.
pub fn write_jsonl<W: Write>(history: &[Op], mut out: W) -> Result<(), HistoryError> {
    for (i, op) in history.iter().enumerate() {
        serde_json::to_writer(&mut out, op).map_err(|source| HistoryError::Json {
            line: i + 1,
            source,
        })?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}

/// Reads a history written by [`write_jsonl`]. Blank lines are skipped.
pub fn read_jsonl<R: BufRead>(input: R) -> Result<Vec<Op>, HistoryError> {
    let mut ops = Vec::new();
    for (i, line) in input.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let op = serde_json::from_str(&line).map_err(|source| HistoryError::Json {
            line: i + 1,
            source,
        })?;
        ops.push(op);
    }
    Ok(ops)
}

/// Saves `history` to a file (created or truncated) as JSON lines.
pub fn save_jsonl(history: &[Op], path: impl AsRef<Path>) -> Result<(), HistoryError> {
    write_jsonl(history, BufWriter::new(File::create(path)?))
}

/// Loads a history saved by [`save_jsonl`].
pub fn load_jsonl(path: impl AsRef<Path>) -> Result<Vec<Op>, HistoryError> {
    read_jsonl(BufReader::new(File::open(path)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Op> {
        vec![
            Op {
                client: 1,
                key: b"k".to_vec(),
                kind: OpKind::Write(Some(b"v\n\x00".to_vec())),
                invoke_ns: 1,
                complete_ns: 2,
                outcome: Outcome::Ok(None),
            },
            Op {
                client: 2,
                key: b"k".to_vec(),
                kind: OpKind::Read,
                invoke_ns: 3,
                complete_ns: 4,
                outcome: Outcome::Ok(Some(b"v".to_vec())),
            },
            Op {
                client: 3,
                key: b"k".to_vec(),
                kind: OpKind::Write(None),
                invoke_ns: 5,
                complete_ns: 0,
                outcome: Outcome::Unknown,
            },
            Op {
                client: 3,
                key: b"k".to_vec(),
                kind: OpKind::Read,
                invoke_ns: 6,
                complete_ns: 7,
                outcome: Outcome::Fail,
            },
        ]
    }

    #[test]
    fn jsonl_round_trip() {
        let ops = sample();
        let mut buf = Vec::new();
        write_jsonl(&ops, &mut buf).unwrap();
        let text = String::from_utf8(buf.clone()).unwrap();
        assert_eq!(text.lines().count(), ops.len());
        let with_blank = format!("{text}\n\n");
        assert_eq!(read_jsonl(with_blank.as_bytes()).unwrap(), ops);
    }

    #[test]
    fn jsonl_file_round_trip() {
        let path = std::env::temp_dir().join(format!("seshat-chaos-{}.jsonl", std::process::id()));
        save_jsonl(&sample(), &path).unwrap();
        let loaded = load_jsonl(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(loaded, sample());
    }

    #[test]
    fn jsonl_reports_bad_line() {
        let mut buf = Vec::new();
        write_jsonl(&sample(), &mut buf).unwrap();
        buf.extend_from_slice(b"{not json}\n");
        match read_jsonl(buf.as_slice()) {
            Err(HistoryError::Json { line, .. }) => assert_eq!(line, 5),
            other => panic!("expected a JSON error, got {other:?}"),
        }
    }

    #[test]
    fn display_forms() {
        let ops = sample();
        assert_eq!(
            ops[0].to_string(),
            r#"client 1: set "k" = "v\n\x00" [1, 2]"#
        );
        assert_eq!(ops[1].to_string(), r#"client 2: read "k" -> "v" [3, 4]"#);
        assert_eq!(ops[2].to_string(), r#"client 3: del "k" [5, ?] (unknown)"#);
        assert_eq!(
            ops[3].to_string(),
            r#"client 3: read "k" -> ? [6, 7] (failed)"#
        );
    }

    #[test]
    fn ttl_and_incr_forms() {
        let ops = vec![
            Op {
                client: 4,
                key: b"e".to_vec(),
                kind: OpKind::WriteWithTtl {
                    value: b"v".to_vec(),
                    ttl_ms: 200,
                },
                invoke_ns: 1,
                complete_ns: 2,
                outcome: Outcome::Ok(None),
            },
            Op {
                client: 5,
                key: b"c".to_vec(),
                kind: OpKind::Incr,
                invoke_ns: 3,
                complete_ns: 4,
                outcome: Outcome::Ok(Some(b"7".to_vec())),
            },
            Op {
                client: 5,
                key: b"c".to_vec(),
                kind: OpKind::Incr,
                invoke_ns: 5,
                complete_ns: 0,
                outcome: Outcome::Unknown,
            },
        ];
        assert_eq!(
            ops[0].to_string(),
            r#"client 4: set "e" = "v" px 200 [1, 2]"#
        );
        assert_eq!(ops[1].to_string(), r#"client 5: incr "c" -> "7" [3, 4]"#);
        assert_eq!(
            ops[2].to_string(),
            r#"client 5: incr "c" -> ? [5, ?] (unknown)"#
        );
        assert!(ops.iter().all(Op::is_write));
        let mut buf = Vec::new();
        write_jsonl(&ops, &mut buf).unwrap();
        assert_eq!(read_jsonl(buf.as_slice()).unwrap(), ops);
    }

    #[test]
    fn list_and_set_forms() {
        let op = |kind, outcome: Outcome| Op {
            client: 6,
            key: b"l".to_vec(),
            kind,
            invoke_ns: 5,
            complete_ns: 6,
            outcome,
        };
        let int = |n: &str| Outcome::Ok(Some(n.as_bytes().to_vec()));
        let ops = vec![
            op(OpKind::RPush(b"v".to_vec()), int("3")),
            op(OpKind::LPop, Outcome::Ok(None)),
            op(OpKind::LPop, Outcome::Unknown),
            op(OpKind::SAdd(b"m".to_vec()), int("1")),
            op(OpKind::SRem(b"m".to_vec()), Outcome::Fail),
        ];
        let shown: Vec<String> = ops.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                r#"client 6: rpush "l" "v" -> "3" [5, 6]"#,
                r#"client 6: lpop "l" -> nil [5, 6]"#,
                r#"client 6: lpop "l" -> ? [5, ?] (unknown)"#,
                r#"client 6: sadd "l" "m" -> "1" [5, 6]"#,
                r#"client 6: srem "l" "m" -> ? [5, 6] (failed)"#,
            ]
        );
        assert!(ops
            .iter()
            .all(|op| op.is_write() && op.kind.ttl_ms().is_none()));
        let mut buf = Vec::new();
        write_jsonl(&ops, &mut buf).unwrap();
        assert_eq!(read_jsonl(buf.as_slice()).unwrap(), ops);
    }

    #[test]
    fn recorder_records_from_threads() {
        let rec = Recorder::new();
        let threads: Vec<_> = (0..4u64)
            .map(|c| {
                let rec = rec.clone();
                std::thread::spawn(move || {
                    for _ in 0..10 {
                        let h = rec.invoke(c, "k", OpKind::Read);
                        h.complete(Outcome::Ok(None));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let ops = rec.history();
        assert_eq!(ops.len(), 40);
        assert!(ops.iter().all(|op| op.invoke_ns <= op.complete_ns));
    }

    #[test]
    fn dropped_handle_is_unknown() {
        let rec = Recorder::new();
        assert!(rec.is_empty());
        drop(rec.invoke(7, "k", OpKind::Write(Some(b"v".to_vec()))));
        let ops = rec.history();
        assert_eq!(ops.len(), 1);
        assert_eq!(ops[0].outcome, Outcome::Unknown);
        assert_eq!(ops[0].client, 7);
    }
}
