//! Concurrent clients that record every operation for the checker.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use redis::Value;
use seshat_chaos::{Op, OpKind, Outcome, Recorder};

/// The keys every client works on: few, so operations contend.
pub const KEYS: [&str; 5] = ["k0", "k1", "k2", "k3", "k4"];
/// How long a client waits for a reply before calling it indeterminate.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(4);

/// Running clients.
pub struct Workload {
    stop: Arc<AtomicBool>,
    handles: Vec<JoinHandle<()>>,
    /// Every operation so far.
    pub recorder: Recorder,
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
        let keys: Arc<Vec<String>> =
            Arc::new(KEYS.iter().map(|k| format!("{prefix}{k}")).collect());
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

fn client_loop(id: u64, addrs: &[String], keys: &[String], rec: &Recorder, stop: &AtomicBool) {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (id + 1).wrapping_mul(0x2545_F491_4F6C_DD1D));
    let mut target = addrs[id as usize % addrs.len()].clone();
    let mut conn: Option<redis::Connection> = None;
    let mut seq = 0u64;
    while !stop.load(Ordering::Acquire) {
        let Some(c) = conn.as_mut() else {
            try_connect(&mut conn, &mut target, addrs, &mut rng);
            continue;
        };
        let key = keys[rng.next() as usize % keys.len()].as_str();
        let roll = rng.next() % 10;
        let (kind, cmd) = if roll < 4 {
            seq += 1;
            let value = format!("c{id}-{seq}");
            (
                OpKind::Write(Some(value.clone().into_bytes())),
                redis::cmd("SET").arg(key).arg(value).clone(),
            )
        } else if roll == 4 {
            (OpKind::Write(None), redis::cmd("DEL").arg(key).clone())
        } else {
            (OpKind::Read, redis::cmd("GET").arg(key).clone())
        };
        let is_write = matches!(kind, OpKind::Write(_));
        let op = rec.invoke(id, key, kind);
        match cmd.query::<Value>(c) {
            Ok(Value::BulkString(v)) => op.complete(Outcome::Ok(Some(v))),
            Ok(Value::Nil) => op.complete(Outcome::Ok(None)),
            Ok(Value::Okay) | Ok(Value::Int(_)) => op.complete(Outcome::Ok(None)),
            Ok(other) => panic!("unexpected reply {other:?}"),
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
                Some("TIMEOUT") => {
                    op.complete(if is_write {
                        Outcome::Unknown
                    } else {
                        Outcome::Fail
                    });
                }
                Some("ERR") => {
                    // E.g. a stopping node; count a write as indeterminate.
                    op.complete(if is_write {
                        Outcome::Unknown
                    } else {
                        Outcome::Fail
                    });
                    conn = None;
                }
                _ => {
                    // I/O error or timeout: the request may have been sent.
                    op.complete(if is_write {
                        Outcome::Unknown
                    } else {
                        Outcome::Fail
                    });
                    target = addrs[rng.next() as usize % addrs.len()].clone();
                    conn = None;
                }
            },
        }
    }
}

/// Commands per pipeline of a pipelined client.
pub const PIPELINE_DEPTH: usize = 8;

/// A client that sends pipelines of SETs and GETs. Each command is
/// recorded with the pipeline's interval; if any reply is an error or the
/// connection fails, its writes count as indeterminate and its reads as
/// failed. Replies must come back in order: a reply of the wrong type for
/// its command fails the test.
fn pipeline_loop(id: u64, addrs: &[String], keys: &[String], rec: &Recorder, stop: &AtomicBool) {
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
        let mut kinds = Vec::new();
        for _ in 0..PIPELINE_DEPTH {
            let key = keys[rng.next() as usize % keys.len()].as_str();
            if rng.next().is_multiple_of(2) {
                seq += 1;
                let value = format!("p{id}-{seq}");
                pipe.cmd("SET").arg(key).arg(&value);
                ops.push(rec.invoke(id, key, OpKind::Write(Some(value.into_bytes()))));
                kinds.push(true);
            } else {
                pipe.cmd("GET").arg(key);
                ops.push(rec.invoke(id, key, OpKind::Read));
                kinds.push(false);
            }
        }
        match pipe.query::<Vec<Value>>(c) {
            Ok(replies) => {
                assert_eq!(replies.len(), ops.len(), "one reply per pipelined command");
                for ((op, reply), is_set) in ops.into_iter().zip(replies).zip(kinds) {
                    match (is_set, reply) {
                        (true, Value::Okay) => op.complete(Outcome::Ok(None)),
                        (false, Value::BulkString(v)) => op.complete(Outcome::Ok(Some(v))),
                        (false, Value::Nil) => op.complete(Outcome::Ok(None)),
                        (is_set, other) => panic!(
                            "reply out of order: {other:?} for a {}",
                            if is_set { "SET" } else { "GET" }
                        ),
                    }
                }
            }
            Err(e) => {
                for (op, is_set) in ops.into_iter().zip(kinds) {
                    op.complete(if is_set {
                        Outcome::Unknown
                    } else {
                        Outcome::Fail
                    });
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
