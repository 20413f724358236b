//! The command surface against real `seshat` processes with real clients:
//! strings, keyspace and expiry, transactions, and an application written
//! against redis-py running through a leader kill.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{Cluster, Server};
use redis::{RedisError, Value};

fn cmd(c: &mut redis::Connection, args: &[&str]) -> Value {
    let mut command = redis::cmd(args[0]);
    for a in &args[1..] {
        command.arg(*a);
    }
    command.query(c).unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

fn cmd_err(c: &mut redis::Connection, args: &[&str]) -> String {
    let mut command = redis::cmd(args[0]);
    for a in &args[1..] {
        command.arg(*a);
    }
    let e: RedisError = command.query::<Value>(c).unwrap_err();
    format!("{} {}", e.code().unwrap_or("?"), e.detail().unwrap_or(""))
}

fn int(c: &mut redis::Connection, args: &[&str]) -> i64 {
    match cmd(c, args) {
        Value::Int(n) => n,
        other => panic!("{args:?}: {other:?}"),
    }
}

fn text(c: &mut redis::Connection, args: &[&str]) -> Option<String> {
    match cmd(c, args) {
        Value::BulkString(b) => Some(String::from_utf8(b).unwrap()),
        Value::SimpleString(s) => Some(s),
        Value::Okay => Some("OK".into()),
        Value::Nil => None,
        other => panic!("{args:?}: {other:?}"),
    }
}

#[test]
fn string_commands_answer_as_redis_does() {
    let server = Server::start();
    let mut c = server.conn();
    assert_eq!(text(&mut c, &["SET", "s", "hello"]).as_deref(), Some("OK"));
    assert_eq!(int(&mut c, &["APPEND", "s", " world"]), 11);
    assert_eq!(int(&mut c, &["STRLEN", "s"]), 11);
    assert_eq!(
        text(&mut c, &["GETRANGE", "s", "-5", "-1"]).as_deref(),
        Some("world")
    );
    assert_eq!(
        text(&mut c, &["SUBSTR", "s", "0", "4"]).as_deref(),
        Some("hello")
    );
    assert_eq!(int(&mut c, &["SETRANGE", "s", "6", "WORLD"]), 11);
    assert_eq!(
        text(&mut c, &["GETSET", "s", "x"]).as_deref(),
        Some("hello WORLD")
    );
    assert_eq!(int(&mut c, &["SETNX", "s", "y"]), 0);
    assert_eq!(text(&mut c, &["GETDEL", "s"]).as_deref(), Some("x"));
    assert_eq!(int(&mut c, &["INCR", "n"]), 1);
    assert_eq!(int(&mut c, &["INCRBY", "n", "10"]), 11);
    assert_eq!(int(&mut c, &["DECR", "n"]), 10);
    assert_eq!(int(&mut c, &["DECRBY", "n", "20"]), -10);
    assert_eq!(
        text(&mut c, &["INCRBYFLOAT", "f", "10.5"]).as_deref(),
        Some("10.5")
    );
    assert_eq!(
        text(&mut c, &["INCRBYFLOAT", "f", "-0.5"]).as_deref(),
        Some("10")
    );
    assert_eq!(
        text(&mut c, &["MSET", "a", "1", "b", "2"]).as_deref(),
        Some("OK")
    );
    assert_eq!(int(&mut c, &["MSETNX", "a", "3", "c", "4"]), 0);
    match cmd(&mut c, &["MGET", "a", "b", "c"]) {
        Value::Array(v) => assert_eq!(
            v,
            vec![
                Value::BulkString(b"1".to_vec()),
                Value::BulkString(b"2".to_vec()),
                Value::Nil
            ]
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        cmd_err(&mut c, &["INCR", "a", "b"]),
        "ERR wrong number of arguments for 'incr' command"
    );
    cmd(&mut c, &["SET", "t", "abc"]);
    assert_eq!(
        cmd_err(&mut c, &["INCR", "t"]),
        "ERR value is not an integer or out of range"
    );
    assert_eq!(
        cmd_err(&mut c, &["SET", "k", "v", "EX", "0"]),
        "ERR invalid expire time in 'set' command"
    );
    assert_eq!(
        cmd_err(&mut c, &["SET", "k", "v", "NX", "XX"]),
        "ERR syntax error"
    );
    cmd(&mut c, &["SET", "big", "9223372036854775807"]);
    assert_eq!(
        cmd_err(&mut c, &["INCR", "big"]),
        "ERR increment or decrement would overflow"
    );
    cmd(&mut c, &["SET", "l1", "ohmytext"]);
    cmd(&mut c, &["SET", "l2", "mynewtext"]);
    assert_eq!(
        text(&mut c, &["LCS", "l1", "l2"]).as_deref(),
        Some("mytext")
    );
    assert_eq!(
        cmd_err(&mut c, &["NOSUCH", "x"]),
        "ERR unknown command 'NOSUCH', with args beginning with: 'x' "
    );
}

#[test]
fn keys_expire_and_are_removed_by_the_leader() {
    let server = Server::start();
    let mut c = server.conn();
    cmd(&mut c, &["SET", "k", "v", "PX", "300"]);
    let pttl = int(&mut c, &["PTTL", "k"]);
    assert!((1..=300).contains(&pttl), "{pttl}");
    assert_eq!(int(&mut c, &["TTL", "nope"]), -2);
    cmd(&mut c, &["SET", "p", "v"]);
    assert_eq!(int(&mut c, &["TTL", "p"]), -1);
    assert_eq!(int(&mut c, &["EXPIRE", "p", "100", "NX"]), 1);
    assert_eq!(int(&mut c, &["EXPIRE", "p", "100", "NX"]), 0);
    assert_eq!(int(&mut c, &["PERSIST", "p"]), 1);
    assert_eq!(text(&mut c, &["TYPE", "p"]).as_deref(), Some("string"));
    assert_eq!(text(&mut c, &["TYPE", "nope"]).as_deref(), Some("none"));
    // The key vanishes for every command once its time has passed, and the
    // leader's sweep removes it physically (DBSIZE counts stored keys).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let exists = int(&mut c, &["EXISTS", "k"]);
        let size = int(&mut c, &["DBSIZE"]);
        if exists == 0 && size == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "exists={exists} dbsize={size}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(text(&mut c, &["GET", "k"]), None);
    // RENAME keeps the TTL; COPY copies it.
    cmd(&mut c, &["SET", "r", "1", "EX", "100"]);
    cmd(&mut c, &["RENAME", "r", "r2"]);
    assert!(int(&mut c, &["TTL", "r2"]) > 90);
    assert_eq!(int(&mut c, &["COPY", "r2", "r3"]), 1);
    assert!(int(&mut c, &["TTL", "r3"]) > 90);
    assert_eq!(cmd_err(&mut c, &["RENAME", "nope", "x"]), "ERR no such key");
    assert_eq!(int(&mut c, &["RENAMENX", "r2", "r3"]), 0);
    // r2 and r3 expire; p was persisted.
    let info: String = redis::cmd("INFO").arg("keyspace").query(&mut c).unwrap();
    assert!(info.contains("db0:keys=3,expires=2,"), "{info}");
    assert_eq!(
        text(&mut c, &["OBJECT", "ENCODING", "r3"]).as_deref(),
        Some("int")
    );
}

#[test]
fn scan_returns_every_key_across_a_restart() {
    let mut server = Server::start();
    let mut c = server.conn();
    let mut pipe = redis::pipe();
    for i in 0..500 {
        pipe.cmd("SET").arg(format!("key:{i}")).arg(i).ignore();
    }
    let _: () = pipe.query(&mut c).unwrap();
    // Half the scan, a restart, then the rest with the same cursor.
    let mut seen = std::collections::HashSet::new();
    let mut cursor: u64 = 0;
    let mut steps = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("COUNT")
            .arg(20)
            .query(&mut c)
            .unwrap();
        seen.extend(keys);
        cursor = next;
        steps += 1;
        if steps == 10 {
            server.terminate();
            server.restart();
            c = server.conn();
        }
        if cursor == 0 {
            break;
        }
    }
    assert_eq!(seen.len(), 500);
    let (_, matched): (u64, Vec<String>) = redis::cmd("SCAN")
        .arg(0)
        .arg("MATCH")
        .arg("key:1?")
        .arg("COUNT")
        .arg(1000)
        .query(&mut c)
        .unwrap();
    assert_eq!(matched.len(), 10);
    let keys: Vec<String> = redis::cmd("KEYS").arg("key:4??").query(&mut c).unwrap();
    assert_eq!(keys.len(), 100);
    let some: Option<String> = redis::cmd("RANDOMKEY").query(&mut c).unwrap();
    assert!(some.unwrap().starts_with("key:"));
}

#[test]
fn transactions_are_atomic_and_watch_aborts_on_change() {
    let server = Server::start();
    let mut c = server.conn();
    let mut other = server.conn();
    cmd(&mut c, &["SET", "w", "1"]);
    cmd(&mut c, &["WATCH", "w"]);
    cmd(&mut c, &["MULTI"]);
    assert_eq!(text(&mut c, &["INCR", "w"]).as_deref(), Some("QUEUED"));
    assert_eq!(text(&mut c, &["PING"]).as_deref(), Some("QUEUED"));
    match cmd(&mut c, &["EXEC"]) {
        Value::Array(v) => assert_eq!(v, vec![Value::Int(2), Value::SimpleString("PONG".into())]),
        other => panic!("{other:?}"),
    }
    // A watched key changed by another client aborts EXEC.
    cmd(&mut c, &["WATCH", "w"]);
    cmd(&mut other, &["SET", "w", "changed"]);
    cmd(&mut c, &["MULTI"]);
    cmd(&mut c, &["INCR", "w"]);
    assert_eq!(cmd(&mut c, &["EXEC"]), Value::Nil);
    assert_eq!(text(&mut c, &["GET", "w"]).as_deref(), Some("changed"));
    // ... and so does a watched key that expires in between.
    cmd(&mut c, &["SET", "e", "1", "PX", "100"]);
    cmd(&mut c, &["WATCH", "e"]);
    std::thread::sleep(Duration::from_millis(250));
    cmd(&mut c, &["MULTI"]);
    cmd(&mut c, &["SET", "x", "1"]);
    assert_eq!(cmd(&mut c, &["EXEC"]), Value::Nil);
    assert_eq!(int(&mut c, &["EXISTS", "x"]), 0);
    // Errors while queueing abort; errors at run time are per command.
    cmd(&mut c, &["MULTI"]);
    cmd_err(&mut c, &["INCR"]);
    assert_eq!(
        cmd_err(&mut c, &["EXEC"]),
        "EXECABORT Transaction discarded because of previous errors."
    );
    let raw = common::raw_roundtrip(
        server.port,
        b"MULTI\r\nSET s abc\r\nINCR s\r\nGET s\r\nEXEC\r\n",
    )
    .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&raw),
        "+OK\r\n+QUEUED\r\n+QUEUED\r\n+QUEUED\r\n*3\r\n+OK\r\n-ERR value is not an integer or out of range\r\n$3\r\nabc\r\n"
    );
    assert_eq!(cmd_err(&mut c, &["EXEC"]), "ERR EXEC without MULTI");
    assert_eq!(cmd_err(&mut c, &["DISCARD"]), "ERR DISCARD without MULTI");
    cmd(&mut c, &["MULTI"]);
    assert_eq!(
        cmd_err(&mut c, &["MULTI"]),
        "ERR MULTI calls can not be nested"
    );
    assert_eq!(text(&mut c, &["DISCARD"]).as_deref(), Some("OK"));
}

#[test]
fn command_introspection_comes_from_the_declarations() {
    let server = Server::start();
    let mut c = server.conn();
    let keys: Vec<String> = redis::cmd("COMMAND")
        .arg("GETKEYS")
        .arg("MSET")
        .arg("a")
        .arg("1")
        .arg("b")
        .arg("2")
        .query(&mut c)
        .unwrap();
    assert_eq!(keys, vec!["a", "b"]);
    let info: Value = redis::cmd("COMMAND")
        .arg("INFO")
        .arg("incr")
        .query(&mut c)
        .unwrap();
    let text = format!("{info:?}");
    assert!(
        text.contains("write") && text.contains("@string") && text.contains("@fast"),
        "{text}"
    );
    let count: i64 = redis::cmd("COMMAND").arg("COUNT").query(&mut c).unwrap();
    assert!(count > 60, "{count}");
}

/// What an application does through redis-py, against a 3-node cluster,
/// through a leader kill: SET … EX, INCR, MGET, MULTI (pipeline with
/// transaction) and SCAN, with the cluster client following MOVED.
#[test]
fn a_redis_py_application_runs_through_a_leader_kill() {
    if !common::redis_py_available() {
        return;
    }
    let mut cluster = Cluster::start(3);
    let leader = cluster.wait_for_leader(Duration::from_secs(30));
    let ports: Vec<u16> = cluster.nodes.iter().map(|n| n.port).collect();
    let script = |phase: &str| {
        format!(
            r#"
import time, redis
from redis.cluster import RedisCluster, ClusterNode
nodes = [ClusterNode("127.0.0.1", p) for p in {ports:?}]
deadline = time.time() + 60
while True:
    try:
        r = RedisCluster(startup_nodes=nodes, decode_responses=True)
        r.ping()
        break
    except Exception:
        if time.time() > deadline: raise
        time.sleep(0.5)
def retry(f):
    deadline = time.time() + 60
    while True:
        try:
            return f()
        except (redis.exceptions.ConnectionError, redis.exceptions.ClusterDownError, redis.exceptions.TimeoutError):
            if time.time() > deadline: raise
            time.sleep(0.3)
            r.nodes_manager.initialize()
phase = "{phase}"
if phase == "before":
    assert retry(lambda: r.set("{{app}}:session", "abc", ex=300)) is True
    for _ in range(10):
        retry(lambda: r.incr("{{app}}:hits"))
    assert retry(lambda: r.mget(["{{app}}:session", "{{app}}:hits"])) == ["abc", "10"]
    def tx():
        p = r.pipeline(transaction=True)
        p.incr("{{app}}:hits").set("{{app}}:last", "x")
        return p.execute()
    # redis-py's cluster pipeline leaves SET's reply inside EXEC unconverted.
    assert retry(tx) in ([11, True], [11, "OK"])
else:
    assert retry(lambda: r.get("{{app}}:hits")) == "11"
    assert 200 < retry(lambda: r.ttl("{{app}}:session")) <= 300
    assert retry(lambda: r.incr("{{app}}:hits")) == 12
    keys = set()
    for k in retry(lambda: list(r.scan_iter(match="{{app}}:*", count=5))):
        keys.add(k)
    assert keys == {{"{{app}}:session", "{{app}}:hits", "{{app}}:last"}}, keys
print("ok")
"#
        )
    };
    let run = |phase: &str| {
        let out = Command::new("python3")
            .args(["-c", &script(phase)])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "redis-py app ({phase}) failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run("before");
    cluster.nodes[leader].kill9();
    run("after");
}

/// A key with a TTL expires identically on every replica, across a leader
/// change: once its time passes, no node serves it, and the removal the
/// (new) leader proposes leaves every replica with the same state.
#[test]
fn ttl_keys_expire_identically_on_every_replica_across_a_leader_change() {
    let mut cluster = Cluster::start(3);
    let leader = cluster.wait_for_leader(Duration::from_secs(30));
    let mut c = cluster.nodes[leader].conn();
    for i in 0..50 {
        cmd(&mut c, &["SET", &format!("t{i}"), "v", "PX", "1500"]);
    }
    cmd(&mut c, &["SET", "keep", "v"]);
    cluster.nodes[leader].kill9();
    let new_leader = cluster.wait_for_leader(Duration::from_secs(30));
    let mut c = cluster.nodes[new_leader].conn();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let size = int(&mut c, &["DBSIZE"]);
        if size == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "expired keys not removed: dbsize {size}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(int(&mut c, &["EXISTS", "t0", "t49"]), 0);
    cluster.nodes[leader].restart();
    // Every replica converges on the same state (digest includes the
    // expiry index and every record).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let digests: Vec<Option<String>> = cluster.nodes.iter().map(digest).collect();
        let first = digests[0].clone();
        if first.is_some() && digests.iter().all(|d| *d == first) {
            break;
        }
        assert!(Instant::now() < deadline, "replicas differ: {digests:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The node's `storage_digest` (applied index, hash of every record, key
/// count), if it answers.
fn digest(node: &Server) -> Option<String> {
    let mut c = redis::Client::open(node.url())
        .ok()?
        .get_connection_with_timeout(Duration::from_secs(2))
        .ok()?;
    let info: String = redis::cmd("INFO").arg("digest").query(&mut c).ok()?;
    info.lines()
        .find_map(|l| l.strip_prefix("storage_digest:"))
        .map(|v| v.trim().to_string())
}
