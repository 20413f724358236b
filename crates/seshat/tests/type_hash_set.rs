//! Hashes and sets against real `seshat` processes with real clients:
//! the commands in RESP2 and RESP3, scans, a key of 100,000 elements
//! deleted at once, state surviving a snapshot and a restart, `SPOP`
//! removing the same members on every replica, and redis-py.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Cluster, Server};
use redis::Value;

fn cmd(c: &mut redis::Connection, args: &[&str]) -> Value {
    let mut command = redis::cmd(args[0]);
    for a in &args[1..] {
        command.arg(*a);
    }
    command.query(c).unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

fn int(c: &mut redis::Connection, args: &[&str]) -> i64 {
    match cmd(c, args) {
        Value::Int(n) => n,
        other => panic!("{args:?}: {other:?}"),
    }
}

fn err(c: &mut redis::Connection, args: &[&str]) -> String {
    let mut command = redis::cmd(args[0]);
    for a in &args[1..] {
        command.arg(*a);
    }
    let e = command.query::<Value>(c).unwrap_err();
    format!("{} {}", e.code().unwrap_or("?"), e.detail().unwrap_or(""))
}

fn text(v: &Value) -> String {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).unwrap(),
        Value::SimpleString(s) => s.clone(),
        other => panic!("not a string: {other:?}"),
    }
}

/// The strings of an array or set reply, sorted.
fn sorted(v: Value) -> Vec<String> {
    let items = match v {
        Value::Array(items) | Value::Set(items) => items,
        other => panic!("not a list: {other:?}"),
    };
    let mut out: Vec<String> = items.iter().map(text).collect();
    out.sort();
    out
}

#[test]
fn hash_and_set_commands_answer_as_redis_does() {
    let server = Server::start();
    let mut c = server.conn();
    assert_eq!(int(&mut c, &["HSET", "h", "a", "1", "b", "2"]), 2);
    assert_eq!(int(&mut c, &["HINCRBY", "h", "a", "41"]), 42);
    assert_eq!(
        text(&cmd(&mut c, &["HINCRBYFLOAT", "h", "f", "2.5"])),
        "2.5"
    );
    assert_eq!(text(&cmd(&mut c, &["HGET", "h", "a"])), "42");
    assert_eq!(cmd(&mut c, &["HGET", "h", "zz"]), Value::Nil);
    assert_eq!(int(&mut c, &["HLEN", "h"]), 3);
    let all: BTreeMap<String, String> = redis::cmd("HGETALL").arg("h").query(&mut c).unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(all["b"], "2");
    assert_eq!(int(&mut c, &["HDEL", "h", "a", "b", "f"]), 3);
    assert_eq!(int(&mut c, &["EXISTS", "h"]), 0);

    assert_eq!(int(&mut c, &["SADD", "s1", "a", "b", "c"]), 3);
    assert_eq!(int(&mut c, &["SADD", "s2", "b", "c", "d"]), 3);
    assert_eq!(sorted(cmd(&mut c, &["SINTER", "s1", "s2"])), ["b", "c"]);
    assert_eq!(
        sorted(cmd(&mut c, &["SUNION", "s1", "s2"])),
        ["a", "b", "c", "d"]
    );
    assert_eq!(sorted(cmd(&mut c, &["SDIFF", "s1", "s2"])), ["a"]);
    assert_eq!(int(&mut c, &["SINTERSTORE", "s3", "s1", "s2"]), 2);
    assert_eq!(
        int(&mut c, &["SINTERCARD", "2", "s1", "s2", "LIMIT", "1"]),
        1
    );
    assert_eq!(int(&mut c, &["SMOVE", "s1", "s3", "a"]), 1);
    assert_eq!(sorted(cmd(&mut c, &["SMEMBERS", "s3"])), ["a", "b", "c"]);
    assert_eq!(text(&cmd(&mut c, &["TYPE", "s3"])), "set");
    assert_eq!(
        text(&cmd(&mut c, &["OBJECT", "ENCODING", "s3"])),
        "hashtable"
    );
    assert_eq!(int(&mut c, &["SADD", "ints", "1", "2"]), 2);
    assert_eq!(
        text(&cmd(&mut c, &["OBJECT", "ENCODING", "ints"])),
        "intset"
    );
    cmd(&mut c, &["SET", "str", "v"]);
    assert_eq!(
        err(&mut c, &["SADD", "str", "a"]),
        "WRONGTYPE Operation against a key holding the wrong kind of value"
    );
    assert_eq!(
        err(&mut c, &["HSET", "h", "a"]),
        "ERR wrong number of arguments for 'hset' command"
    );
    // The keyspace commands work on the new types.
    assert_eq!(cmd(&mut c, &["RENAME", "s3", "moved"]), Value::Okay);
    assert_eq!(int(&mut c, &["COPY", "moved", "copied"]), 1);
    assert_eq!(
        sorted(cmd(&mut c, &["SMEMBERS", "copied"])),
        ["a", "b", "c"]
    );
    assert_eq!(int(&mut c, &["EXPIRE", "copied", "100"]), 1);
    assert_eq!(int(&mut c, &["SADD", "copied", "z"]), 1);
    assert!(
        int(&mut c, &["TTL", "copied"]) > 90,
        "a write keeps the TTL"
    );
}

/// RESP3 types as Redis 7 sends them: a map for `HGETALL`, sets for
/// `SMEMBERS`/`SINTER`/`SPOP n`, nested pairs for `HRANDFIELD … WITHVALUES`.
#[test]
fn resp3_replies_have_redis_s_types() {
    let server = Server::start();
    let mut c = server.conn_resp3();
    cmd(&mut c, &["HSET", "h", "a", "1", "b", "2", "c", "3"]);
    cmd(&mut c, &["SADD", "s", "x", "y", "z"]);
    assert!(matches!(cmd(&mut c, &["HGETALL", "h"]), Value::Map(m) if m.len() == 3));
    assert!(matches!(cmd(&mut c, &["SMEMBERS", "s"]), Value::Set(m) if m.len() == 3));
    assert!(matches!(cmd(&mut c, &["SINTER", "s", "s"]), Value::Set(m) if m.len() == 3));
    assert!(matches!(cmd(&mut c, &["SPOP", "s", "2"]), Value::Set(m) if m.len() == 2));
    match cmd(&mut c, &["HRANDFIELD", "h", "-5", "WITHVALUES"]) {
        Value::Array(pairs) => {
            assert_eq!(pairs.len(), 5);
            assert!(pairs
                .iter()
                .all(|p| matches!(p, Value::Array(kv) if kv.len() == 2)));
        }
        other => panic!("{other:?}"),
    }
    // RESP2: the same reply flattened.
    let mut c2 = server.conn();
    match cmd(&mut c2, &["HRANDFIELD", "h", "-5", "WITHVALUES"]) {
        Value::Array(flat) => assert_eq!(flat.len(), 10),
        other => panic!("{other:?}"),
    }
}

/// Scans every field of a big hash (and member of a big set) exactly once
/// while other fields come and go.
#[test]
fn scans_see_every_element_while_the_collection_changes() {
    let server = Server::start();
    let mut c = server.conn();
    let mut pipe = redis::pipe();
    for i in 0..2000 {
        pipe.cmd("HSET")
            .arg("h")
            .arg(format!("f{i}"))
            .arg(i)
            .ignore();
        pipe.cmd("SADD").arg("s").arg(format!("m{i}")).ignore();
    }
    let _: () = pipe.query(&mut c).unwrap();
    for (scan, key, stride) in [("HSCAN", "h", 2), ("SSCAN", "s", 1)] {
        let mut seen = BTreeMap::<String, usize>::new();
        let mut cursor = "0".to_string();
        let mut step = 0;
        loop {
            let (next, items): (String, Vec<String>) = redis::cmd(scan)
                .arg(key)
                .arg(&cursor)
                .arg("COUNT")
                .arg(50)
                .query(&mut c)
                .unwrap();
            for name in items.iter().step_by(stride) {
                *seen.entry(name.clone()).or_default() += 1;
            }
            // Churn: new elements appear, others (never the first 1,000)
            // are removed.
            step += 1;
            let (add, remove) = (format!("new{step}"), 1000 + step);
            if scan == "HSCAN" {
                cmd(&mut c, &["HSET", key, &add, "v"]);
                cmd(&mut c, &["HDEL", key, &format!("f{remove}")]);
            } else {
                cmd(&mut c, &["SADD", key, &add]);
                cmd(&mut c, &["SREM", key, &format!("m{remove}")]);
            }
            if next == "0" {
                break;
            }
            cursor = next;
        }
        let prefix = if scan == "HSCAN" { "f" } else { "m" };
        for i in 0..1000 {
            assert_eq!(seen.get(&format!("{prefix}{i}")), Some(&1), "{scan} {i}");
        }
        assert!(step > 20, "{scan} took {step} steps");
    }
}

/// A key of 100,000 elements goes with one `DEL` in one apply (two range
/// deletes), and a new key of the same name starts empty.
#[test]
fn deleting_a_key_of_100_000_elements_is_fast_and_complete() {
    let server = Server::start();
    let mut c = server.conn();
    for (key, add) in [("bighash", "HSET"), ("bigset", "SADD")] {
        for batch in 0..100 {
            let mut command = redis::cmd(add);
            command.arg(key);
            for i in batch * 1000..(batch + 1) * 1000 {
                command.arg(format!("e{i}"));
                if add == "HSET" {
                    command.arg(i);
                }
            }
            let _: i64 = command.query(&mut c).unwrap();
        }
    }
    assert_eq!(int(&mut c, &["HLEN", "bighash"]), 100_000);
    assert_eq!(int(&mut c, &["SCARD", "bigset"]), 100_000);
    assert_eq!(int(&mut c, &["DBSIZE"]), 2);
    for key in ["bighash", "bigset"] {
        let started = Instant::now();
        assert_eq!(int(&mut c, &["DEL", key]), 1);
        let took = started.elapsed();
        assert!(took < Duration::from_secs(1), "DEL {key} took {took:?}");
    }
    assert_eq!(int(&mut c, &["DBSIZE"]), 0);
    assert_eq!(int(&mut c, &["HSET", "bighash", "only", "1"]), 1);
    assert_eq!(int(&mut c, &["HLEN", "bighash"]), 1);
    assert_eq!(sorted(cmd(&mut c, &["HKEYS", "bighash"])), ["only"]);
    assert_eq!(int(&mut c, &["SADD", "bigset", "e1"]), 1);
    assert_eq!(sorted(cmd(&mut c, &["SMEMBERS", "bigset"])), ["e1"]);
}

/// Hashes and sets come back whole from a snapshot and the log after a
/// restart.
#[test]
fn hashes_and_sets_survive_a_snapshot_and_a_restart() {
    let mut server =
        Server::start_with(&["--snapshot-every-entries", "20", "--log-tail-entries", "5"]);
    let mut c = server.conn();
    for i in 0..100 {
        cmd(&mut c, &["HSET", "h", &format!("f{i}"), &i.to_string()]);
        cmd(&mut c, &["SADD", "s", &format!("m{i}")]);
    }
    cmd(&mut c, &["SREM", "s", "m7"]);
    cmd(&mut c, &["HDEL", "h", "f7"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while server
        .info_field("raft_snapshot_index")
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0)
        == 0
    {
        assert!(Instant::now() < deadline, "no snapshot:\n{}", server.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    // A few writes after the snapshot, replayed from the log.
    cmd(&mut c, &["HSET", "h", "late", "x"]);
    cmd(&mut c, &["SADD", "s", "late"]);
    drop(c);
    assert!(server.terminate().success());
    server.restart();
    let mut c = server.conn();
    assert_eq!(int(&mut c, &["HLEN", "h"]), 100);
    assert_eq!(int(&mut c, &["SCARD", "s"]), 100);
    assert_eq!(text(&cmd(&mut c, &["HGET", "h", "f42"])), "42");
    assert_eq!(cmd(&mut c, &["HGET", "h", "f7"]), Value::Nil);
    assert_eq!(int(&mut c, &["SISMEMBER", "s", "late"]), 1);
    assert_eq!(int(&mut c, &["SISMEMBER", "s", "m7"]), 0);
    let members: BTreeSet<String> = sorted(cmd(&mut c, &["SMEMBERS", "s"]))
        .into_iter()
        .collect();
    assert_eq!(members.len(), 100);
}

/// `SPOP` picks its members from the log entry's seed: every replica
/// removes the same ones and ends with the same state.
#[test]
fn spop_removes_the_same_members_on_every_replica() {
    let cluster = Cluster::start(3);
    let leader = cluster.wait_for_leader(Duration::from_secs(30));
    let mut c = cluster.nodes[leader].conn();
    let mut add = redis::cmd("SADD");
    add.arg("s");
    for i in 0..3000 {
        add.arg(format!("m{i}"));
    }
    let _: i64 = add.query(&mut c).unwrap();
    let mut popped = BTreeSet::new();
    for n in [1, 10, 500] {
        popped.extend(sorted(cmd(&mut c, &["SPOP", "s", &n.to_string()])));
    }
    popped.insert(text(&cmd(&mut c, &["SPOP", "s"])));
    assert_eq!(popped.len(), 512);
    assert_eq!(int(&mut c, &["SCARD", "s"]), 3000 - 512);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let digests: Vec<Option<String>> = cluster.nodes.iter().map(digest).collect();
        if digests[0].is_some() && digests.iter().all(|d| *d == digests[0]) {
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

/// An application written against redis-py (RESP3, its default in
/// redis-py 8, and RESP2) uses hashes and sets through its own API.
#[test]
fn redis_py_uses_hashes_and_sets() {
    if !common::redis_py_available() {
        return;
    }
    let server = Server::start();
    let script = format!(
        r#"
import redis
for protocol in (2, 3):
    r = redis.Redis(port={port}, decode_responses=True, protocol=protocol)
    r.flushall()
    assert r.hset("user:1", mapping={{"name": "ada", "visits": "1"}}) == 2
    assert r.hincrby("user:1", "visits", 2) == 3
    assert r.hgetall("user:1") == {{"name": "ada", "visits": "3"}}, r.hgetall("user:1")
    assert r.hmget("user:1", ["name", "nope"]) == ["ada", None]
    assert dict(r.hscan_iter("user:1")) == {{"name": "ada", "visits": "3"}}
    pairs = r.hrandfield("user:1", 2, withvalues=True)
    # Flat or nested, depending on the protocol and redis-py's mode.
    flat = [x for p in pairs for x in (p if isinstance(p, list) else [p])]
    assert sorted(flat) == ["3", "ada", "name", "visits"], pairs
    assert r.sadd("tags", "a", "b", "c") == 3
    assert r.smembers("tags") == {{"a", "b", "c"}}
    assert r.sinter("tags", "tags") == {{"a", "b", "c"}}
    assert set(r.sscan_iter("tags", match="[ab]")) == {{"a", "b"}}
    assert r.smismember("tags", ["a", "z"]) == [1, 0] or r.smismember("tags", ["a", "z"]) == [True, False]
    popped = r.spop("tags")
    assert popped in {{"a", "b", "c"}} and r.scard("tags") == 2
print("ok")
"#,
        port = server.port
    );
    let out = Command::new("python3")
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "redis-py failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
