//! Concurrent clients that record every operation for the checker.
//!
//! Keys, all named `<prefix><name>` so that successive runs against one
//! cluster can work on disjoint keys:
//! - registers [`KEYS`] (`GET`, `SET`, `DEL`) and [`TTL_KEYS`] (`GET`, and
//!   `SET … PX` [`LONG_TTL_MS`] only: the TTL outlasts any run, so they stay
//!   registers and must still have a TTL at the end);
//! - counters [`COUNTER_KEYS`], only ever incremented with `INCR`;
//! - lists [`LIST_KEYS`], used as queues: `RPUSH` of a unique value,
//!   `LPOP`;
//! - sets [`SET_KEYS`]: `SADD` of a unique member, and `SREM` of a member
//!   the same client added;
//! - fresh keys `e<client>-<n>`, each written once with `SET … PX`
//!   [`SHORT_TTL_MS`] and read back [`EXPIRED_READ_DELAY`] after the
//!   acknowledgement, when it must have expired.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use redis::Value;
use seshat_chaos::{Op, OpKind, Outcome, Recorder, FINAL_READ_CLIENT};

/// The plain register keys: few, so operations contend.
pub const KEYS: [&str; 5] = ["k0", "k1", "k2", "k3", "k4"];
/// Register keys only ever written with `SET … PX` [`LONG_TTL_MS`].
pub const TTL_KEYS: [&str; 3] = ["t0", "t1", "t2"];
/// Counter keys, only ever changed by `INCR`.
pub const COUNTER_KEYS: [&str; 3] = ["c0", "c1", "c2"];
/// List keys, only ever changed by `RPUSH` and `LPOP`.
pub const LIST_KEYS: [&str; 2] = ["l0", "l1"];
/// Set keys, only ever changed by `SADD` and `SREM`.
pub const SET_KEYS: [&str; 2] = ["s0", "s1"];
/// Most members a client remembers having added, to remove later.
const MAX_REMOVABLE_MEMBERS: usize = 32;
/// The TTL of [`TTL_KEYS`]' writes: far longer than any run.
pub const LONG_TTL_MS: u64 = 600_000;
/// The TTL of the fresh short-lived keys.
pub const SHORT_TTL_MS: u64 = 200;
/// How long after its acknowledgement a short-lived key is read back: well
/// past [`SHORT_TTL_MS`], so it must read as absent.
pub const EXPIRED_READ_DELAY: Duration = Duration::from_secs(1);
/// Most short-lived keys a client waits to read back; it writes no new one
/// while this many wait.
const MAX_PENDING_EXPIRED_READS: usize = 32;
/// Most `GET`s in one pipeline of the final reads of short-lived keys.
const FINAL_READ_PIPELINE_DEPTH: usize = 256;
/// How long a client waits for a reply before calling it indeterminate.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(4);

/// Running clients.
pub struct Workload {
    stop: Arc<AtomicBool>,
    handles: Vec<JoinHandle<()>>,
    /// Every operation so far.
    pub recorder: Recorder,
    /// The keys the clients work on.
    pub keys: Arc<Keys>,
}

impl Workload {
    /// Starts `clients` clients spread over `addrs`.
    pub fn start(addrs: Vec<String>, clients: usize) -> Workload {
        Self::start_mixed(addrs, clients, 0)
    }

    /// Starts `clients` one-command-at-a-time clients and `pipelined`
    /// clients that send pipelines of [`PIPELINE_DEPTH`] commands.
    pub fn start_mixed(addrs: Vec<String>, clients: usize, pipelined: usize) -> Workload {
        Self::start_on(addrs, clients, pipelined, "")
    }

    /// [`Self::start_mixed`] on keys named `<prefix><key>`, so successive
    /// runs against one cluster work on disjoint keys.
    pub fn start_on(
        addrs: Vec<String>,
        clients: usize,
        pipelined: usize,
        prefix: &str,
    ) -> Workload {
        let keys = Arc::new(Keys::new(prefix));
        let stop = Arc::new(AtomicBool::new(false));
        let recorder = Recorder::new();
        let handles = (0..clients + pipelined)
            .map(|id| {
                let (addrs, rec, stop) = (addrs.clone(), recorder.clone(), stop.clone());
                let keys = keys.clone();
                std::thread::spawn(move || {
                    if id < clients {
                        client_loop(id as u64, &addrs, &keys, &rec, &stop)
                    } else {
                        pipeline_loop(id as u64, &addrs, &keys, &rec, &stop)
                    }
                })
            })
            .collect();
        Workload {
            stop,
            handles,
            recorder,
            keys,
        }
    }

    /// Stops the clients and returns the history.
    pub fn stop(self) -> Vec<Op> {
        self.stop.store(true, Ordering::Release);
        for h in self.handles {
            let _ = h.join();
        }
        self.recorder.history()
    }
}

/// The workload's key names, with their prefix.
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Keys {
        Keys {
            prefix: prefix.to_string(),
        }
    }

    fn named(&self, names: &[&str]) -> Vec<String> {
        names
            .iter()
            .map(|k| format!("{}{k}", self.prefix))
            .collect()
    }

    /// Every register key: [`KEYS`] and [`TTL_KEYS`].
    pub fn registers(&self) -> Vec<String> {
        self.named(&KEYS.iter().chain(&TTL_KEYS).copied().collect::<Vec<_>>())
    }

    /// The register keys written with a TTL.
    pub fn ttl_registers(&self) -> Vec<String> {
        self.named(&TTL_KEYS)
    }

    /// The counter keys.
    pub fn counters(&self) -> Vec<String> {
        self.named(&COUNTER_KEYS)
    }

    /// The list keys.
    pub fn lists(&self) -> Vec<String> {
        self.named(&LIST_KEYS)
    }

    /// The set keys.
    pub fn sets(&self) -> Vec<String> {
        self.named(&SET_KEYS)
    }

    /// A random register key, and the TTL its writes set.
    fn register(&self, rng: &mut Rng) -> (String, Option<u64>) {
        let i = rng.next() as usize % (KEYS.len() + TTL_KEYS.len());
        match KEYS.get(i) {
            Some(k) => (format!("{}{k}", self.prefix), None),
            None => (
                format!("{}{}", self.prefix, TTL_KEYS[i - KEYS.len()]),
                Some(LONG_TTL_MS),
            ),
        }
    }

    fn counter(&self, rng: &mut Rng) -> String {
        self.any_of(&COUNTER_KEYS, rng)
    }

    fn list(&self, rng: &mut Rng) -> String {
        self.any_of(&LIST_KEYS, rng)
    }

    fn set(&self, rng: &mut Rng) -> String {
        self.any_of(&SET_KEYS, rng)
    }

    /// One of `names`, picked at random, with the prefix.
    fn any_of(&self, names: &[&str], rng: &mut Rng) -> String {
        let k = names[rng.next() as usize % names.len()];
        format!("{}{k}", self.prefix)
    }

    /// Client `id`'s `n`th short-lived key.
    fn expiring(&self, id: u64, n: u64) -> String {
        format!("{}e{id}-{n}", self.prefix)
    }

    /// Whether `key` is one of the short-lived keys.
    fn is_expiring(&self, key: &[u8]) -> bool {
        key.strip_prefix(self.prefix.as_bytes())
            .is_some_and(|k| k.starts_with(b"e"))
    }
}

/// A command to send, and how the history records it.
struct Planned {
    key: String,
    kind: OpKind,
    cmd: redis::Cmd,
}

impl Planned {
    fn get(key: String) -> Planned {
        Planned::on_key("GET", key, OpKind::Read)
    }

    /// `SET key value`, with `PX ttl_ms` if given.
    fn set(key: String, value: String, ttl_ms: Option<u64>) -> Planned {
        let mut cmd = redis::cmd("SET");
        cmd.arg(&key).arg(&value);
        let value = value.into_bytes();
        let kind = match ttl_ms {
            Some(ttl_ms) => {
                cmd.arg("PX").arg(ttl_ms);
                OpKind::WriteWithTtl { value, ttl_ms }
            }
            None => OpKind::Write(Some(value)),
        };
        Planned { key, kind, cmd }
    }

    fn del(key: String) -> Planned {
        Planned::on_key("DEL", key, OpKind::Write(None))
    }

    fn incr(key: String) -> Planned {
        Planned::on_key("INCR", key, OpKind::Incr)
    }

    fn lpop(key: String) -> Planned {
        Planned::on_key("LPOP", key, OpKind::LPop)
    }

    fn rpush(key: String, value: String) -> Planned {
        let kind = OpKind::RPush(value.clone().into_bytes());
        Planned::with_arg("RPUSH", key, value, kind)
    }

    fn sadd(key: String, member: String) -> Planned {
        let kind = OpKind::SAdd(member.clone().into_bytes());
        Planned::with_arg("SADD", key, member, kind)
    }

    fn srem(key: String, member: String) -> Planned {
        let kind = OpKind::SRem(member.clone().into_bytes());
        Planned::with_arg("SREM", key, member, kind)
    }

    /// `command key`.
    fn on_key(command: &str, key: String, kind: OpKind) -> Planned {
        let cmd = redis::cmd(command).arg(&key).clone();
        Planned { key, kind, cmd }
    }

    /// `command key arg`.
    fn with_arg(command: &str, key: String, arg: String, kind: OpKind) -> Planned {
        let cmd = redis::cmd(command).arg(&key).arg(arg).clone();
        Planned { key, kind, cmd }
    }
}

/// What a successful reply to `kind` says. A reply of the wrong type for
/// its command fails the test (replies out of order, say).
fn outcome_of(kind: &OpKind, reply: Value) -> Outcome {
    match (kind, reply) {
        (OpKind::Read, Value::BulkString(v)) => Outcome::Ok(Some(v)),
        (OpKind::Read, Value::Nil) => Outcome::Ok(None),
        (OpKind::Write(Some(_)) | OpKind::WriteWithTtl { .. }, Value::Okay) => Outcome::Ok(None),
        (OpKind::Write(None), Value::Int(_)) => Outcome::Ok(None),
        (OpKind::Incr | OpKind::RPush(_) | OpKind::SAdd(_) | OpKind::SRem(_), Value::Int(n)) => {
            Outcome::Ok(Some(n.to_string().into_bytes()))
        }
        (OpKind::LPop, Value::BulkString(v)) => Outcome::Ok(Some(v)),
        (OpKind::LPop, Value::Nil) => Outcome::Ok(None),
        (kind, reply) => panic!("unexpected reply {reply:?} to {kind:?}"),
    }
}

/// How an op ends that got no reply, or an error that does not say it did
/// not happen: a write may have happened, a read tells nothing.
fn indeterminate(kind: &OpKind) -> Outcome {
    if *kind == OpKind::Read {
        Outcome::Fail
    } else {
        Outcome::Unknown
    }
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn connect(addr: &str) -> Option<redis::Connection> {
    let client = redis::Client::open(format!("redis://{addr}/")).ok()?;
    let c = client
        .get_connection_with_timeout(Duration::from_secs(1))
        .ok()?;
    c.set_read_timeout(Some(CLIENT_TIMEOUT)).ok()?;
    c.set_write_timeout(Some(CLIENT_TIMEOUT)).ok()?;
    Some(c)
}

/// Connects to `target`; on failure picks another node and backs off.
fn try_connect(
    conn: &mut Option<redis::Connection>,
    target: &mut String,
    addrs: &[String],
    rng: &mut Rng,
) {
    *conn = connect(target);
    if conn.is_none() {
        *target = addrs[rng.next() as usize % addrs.len()].clone();
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A one-command-at-a-time client: reads, writes and deletes registers,
/// increments counters, pushes to and pops from lists, adds members to sets
/// and removes some it added, writes short-lived keys and reads each back
/// once [`EXPIRED_READ_DELAY`] has passed since it was acknowledged.
fn client_loop(id: u64, addrs: &[String], keys: &Keys, rec: &Recorder, stop: &AtomicBool) {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (id + 1).wrapping_mul(0x2545_F491_4F6C_DD1D));
    let mut target = addrs[id as usize % addrs.len()].clone();
    let mut conn: Option<redis::Connection> = None;
    let mut seq = 0u64;
    // Acknowledged short-lived keys, oldest first, with when they were.
    let mut expiring: VecDeque<(String, Instant)> = VecDeque::new();
    // Set members this client added (acknowledged), with their keys.
    let mut removable: Vec<(String, String)> = Vec::new();
    while !stop.load(Ordering::Acquire) {
        let Some(c) = conn.as_mut() else {
            try_connect(&mut conn, &mut target, addrs, &mut rng);
            continue;
        };
        let due = expiring
            .front()
            .is_some_and(|(_, acked)| acked.elapsed() >= EXPIRED_READ_DELAY);
        let mut added = None;
        let planned = if due {
            let (key, _) = expiring.pop_front().expect("a key is due");
            Planned::get(key)
        } else {
            match rng.next() % 20 {
                0..=2 => Planned::incr(keys.counter(&mut rng)),
                3 if expiring.len() < MAX_PENDING_EXPIRED_READS => {
                    seq += 1;
                    let key = keys.expiring(id, seq);
                    Planned::set(key, format!("c{id}-{seq}"), Some(SHORT_TTL_MS))
                }
                4..=5 => {
                    let key = keys.list(&mut rng);
                    if rng.next().is_multiple_of(2) {
                        seq += 1;
                        Planned::rpush(key, format!("c{id}-{seq}"))
                    } else {
                        Planned::lpop(key)
                    }
                }
                6 if !removable.is_empty() && rng.next().is_multiple_of(4) => {
                    let (key, member) =
                        removable.swap_remove(rng.next() as usize % removable.len());
                    Planned::srem(key, member)
                }
                6 => {
                    seq += 1;
                    let member = (keys.set(&mut rng), format!("c{id}-{seq}"));
                    added = Some(member.clone());
                    Planned::sadd(member.0, member.1)
                }
                _ => {
                    let (key, ttl_ms) = keys.register(&mut rng);
                    match rng.next() % 10 {
                        0..=3 => {
                            seq += 1;
                            Planned::set(key, format!("c{id}-{seq}"), ttl_ms)
                        }
                        4 if ttl_ms.is_none() => Planned::del(key),
                        _ => Planned::get(key),
                    }
                }
            }
        };
        let short_lived = planned.kind.ttl_ms() == Some(SHORT_TTL_MS);
        let op = rec.invoke(id, planned.key.as_str(), planned.kind.clone());
        match planned.cmd.query::<Value>(c) {
            Ok(reply) => {
                op.complete(outcome_of(&planned.kind, reply));
                if short_lived {
                    expiring.push_back((planned.key, Instant::now()));
                }
                if removable.len() < MAX_REMOVABLE_MEMBERS {
                    removable.extend(added);
                }
            }
            Err(e) => match e.code() {
                Some("MOVED") => {
                    op.complete(Outcome::Fail);
                    if let Some((addr, _)) = e.redirect_node() {
                        target = addr.to_string();
                    }
                    conn = None;
                }
                Some("CLUSTERDOWN") | Some("NOQUORUM") => {
                    op.complete(Outcome::Fail);
                    target = addrs[rng.next() as usize % addrs.len()].clone();
                    conn = None;
                    std::thread::sleep(Duration::from_millis(50));
                }
                // A slot being moved between groups (definite: nothing
                // applied); the next command is another key.
                Some("TRYAGAIN") | Some("ASK") => {
                    op.complete(Outcome::Fail);
                    std::thread::sleep(Duration::from_millis(10));
                }
                Some("TIMEOUT") => op.complete(indeterminate(&planned.kind)),
                Some("ERR") => {
                    // E.g. a stopping node; count a write as indeterminate.
                    op.complete(indeterminate(&planned.kind));
                    conn = None;
                }
                _ => {
                    // I/O error or timeout: the request may have been sent.
                    op.complete(indeterminate(&planned.kind));
                    target = addrs[rng.next() as usize % addrs.len()].clone();
                    conn = None;
                }
            },
        }
    }
}

/// Commands per pipeline of a pipelined client.
pub const PIPELINE_DEPTH: usize = 8;

/// A client that sends pipelines of SETs, GETs, INCRs, RPUSHes, LPOPs and
/// SADDs. Each command is
/// recorded with the pipeline's interval; if any reply is an error or the
/// connection fails, its writes count as indeterminate and its reads as
/// failed. Replies must come back in order: a reply of the wrong type for
/// its command fails the test.
fn pipeline_loop(id: u64, addrs: &[String], keys: &Keys, rec: &Recorder, stop: &AtomicBool) {
    let mut rng = Rng(0xD1B5_4A32_D192_ED03 ^ (id + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut target = addrs[id as usize % addrs.len()].clone();
    let mut conn: Option<redis::Connection> = None;
    let mut seq = 0u64;
    while !stop.load(Ordering::Acquire) {
        let Some(c) = conn.as_mut() else {
            try_connect(&mut conn, &mut target, addrs, &mut rng);
            continue;
        };
        let mut pipe = redis::pipe();
        let mut ops = Vec::new();
        for _ in 0..PIPELINE_DEPTH {
            let planned = match rng.next() % 20 {
                0..=2 => Planned::incr(keys.counter(&mut rng)),
                3 => {
                    seq += 1;
                    Planned::rpush(keys.list(&mut rng), format!("p{id}-{seq}"))
                }
                4 => Planned::lpop(keys.list(&mut rng)),
                5 => {
                    seq += 1;
                    Planned::sadd(keys.set(&mut rng), format!("p{id}-{seq}"))
                }
                _ => {
                    let (key, ttl_ms) = keys.register(&mut rng);
                    if rng.next().is_multiple_of(2) {
                        seq += 1;
                        Planned::set(key, format!("p{id}-{seq}"), ttl_ms)
                    } else {
                        Planned::get(key)
                    }
                }
            };
            pipe.add_command(planned.cmd);
            ops.push((
                rec.invoke(id, planned.key.as_str(), planned.kind.clone()),
                planned.kind,
            ));
        }
        match pipe.query::<Vec<Value>>(c) {
            Ok(replies) => {
                assert_eq!(replies.len(), ops.len(), "one reply per pipelined command");
                for ((op, kind), reply) in ops.into_iter().zip(replies) {
                    op.complete(outcome_of(&kind, reply));
                }
            }
            Err(e) => {
                for (op, kind) in ops {
                    op.complete(indeterminate(&kind));
                }
                if let Some((addr, _)) = e.redirect_node() {
                    target = addr.to_string();
                } else {
                    target = addrs[rng.next() as usize % addrs.len()].clone();
                }
                conn = None;
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// Reads back, on every node in `addrs`, each short-lived key written in
/// `history` and acknowledged at least [`EXPIRED_READ_DELAY`] ago,
/// recording the reads in `rec` (whose clock `history` uses). A node that
/// does not serve reads (a follower answers `MOVED`) records them as
/// failed. Every served read must find the key expired.
pub fn read_back_expiring(addrs: &[String], keys: &Keys, rec: &Recorder, history: &[Op]) {
    let due_ns = rec
        .now_ns()
        .saturating_sub(EXPIRED_READ_DELAY.as_nanos() as u64);
    let expiring: Vec<&[u8]> = history
        .iter()
        .filter(|op| op.kind.ttl_ms().is_some() && keys.is_expiring(&op.key))
        .filter(|op| matches!(op.outcome, Outcome::Ok(_)) && op.complete_ns <= due_ns)
        .map(|op| op.key.as_slice())
        .collect();
    for addr in addrs {
        for chunk in expiring.chunks(FINAL_READ_PIPELINE_DEPTH) {
            read_chunk(addr, chunk, rec);
        }
    }
}

/// `GET`s each of `keys` on `addr` in one pipeline, recording each read.
fn read_chunk(addr: &str, keys: &[&[u8]], rec: &Recorder) {
    let Some(mut c) = connect(addr) else {
        return;
    };
    let mut pipe = redis::pipe();
    let ops: Vec<_> = keys
        .iter()
        .map(|key| {
            pipe.cmd("GET").arg(*key);
            rec.invoke(FINAL_READ_CLIENT, *key, OpKind::Read)
        })
        .collect();
    match pipe.query::<Vec<Value>>(&mut c) {
        Ok(replies) => {
            assert_eq!(replies.len(), ops.len(), "one reply per pipelined command");
            for (op, reply) in ops.into_iter().zip(replies) {
                op.complete(outcome_of(&OpKind::Read, reply));
            }
        }
        Err(_) => {
            for op in ops {
                op.complete(Outcome::Fail);
            }
        }
    }
}
