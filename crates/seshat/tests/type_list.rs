//! Lists against real `seshat` processes: the commands with the `redis`
//! crate and redis-py, the exact RESP shapes, a lagging replica caught up
//! by snapshot, a leader kill, a restart, and deleting a big list.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{Cluster, Server};
use redis::{Commands, Direction, RedisError, Value};

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

fn range(c: &mut redis::Connection, key: &str) -> Vec<String> {
    c.lrange(key, 0, -1).unwrap()
}

/// `INFO digest`'s (applied index, hash of every stored record, keys).
fn digest(node: &Server) -> (u64, String, u64) {
    let mut c = node.conn();
    let info: String = redis::cmd("INFO").arg("digest").query(&mut c).unwrap();
    let line = info
        .lines()
        .find_map(|l| l.strip_prefix("storage_digest:"))
        .unwrap_or_else(|| panic!("no digest in {info}"));
    let parts: Vec<&str> = line.trim().split(':').collect();
    (
        parts[0].parse().unwrap(),
        parts[1].to_string(),
        parts[2].parse().unwrap(),
    )
}

/// The digest of a data group that stores no record at all (FNV-1a's
/// offset basis).
const EMPTY_DIGEST: &str = "cbf29ce484222325";

#[test]
fn list_commands_answer_as_redis_does() {
    let server = Server::start();
    let mut c = server.conn();
    assert_eq!(c.rpush::<_, _, i64>("l", &["a", "b", "c"]).unwrap(), 3);
    assert_eq!(c.lpush::<_, _, i64>("l", &["z", "y"]).unwrap(), 5);
    assert_eq!(range(&mut c, "l"), ["y", "z", "a", "b", "c"]);
    assert_eq!(c.llen::<_, i64>("l").unwrap(), 5);
    assert_eq!(c.lindex::<_, String>("l", -2).unwrap(), "b");
    let () = c.lset("l", 0, "Y").unwrap();
    assert_eq!(c.linsert_after::<_, _, _, i64>("l", "a", "x").unwrap(), 6);
    assert_eq!(c.lrem::<_, _, i64>("l", 1, "z").unwrap(), 1);
    assert_eq!(range(&mut c, "l"), ["Y", "a", "x", "b", "c"]);
    assert_eq!(
        c.lmove::<_, _, String>("l", "m", Direction::Right, Direction::Left)
            .unwrap(),
        "c"
    );
    assert_eq!(c.rpoplpush::<_, _, String>("l", "m").unwrap(), "b");
    assert_eq!(range(&mut c, "m"), ["b", "c"]);
    let () = c.ltrim("l", 1, -1).unwrap();
    assert_eq!(range(&mut c, "l"), ["a", "x"]);
    assert_eq!(
        c.lpop::<_, Vec<String>>("m", std::num::NonZeroUsize::new(5))
            .unwrap(),
        ["b", "c"]
    );
    assert_eq!(c.exists::<_, i64>("m").unwrap(), 0);
    c.rpush::<_, _, ()>("p", &["a", "b", "a", "c", "a"])
        .unwrap();
    assert_eq!(
        cmd(&mut c, &["LPOS", "p", "a", "RANK", "-2"]),
        Value::Int(2)
    );
    assert_eq!(
        cmd(&mut c, &["LPOS", "p", "a", "COUNT", "0", "MAXLEN", "3"]),
        Value::Array(vec![Value::Int(0), Value::Int(2)])
    );
    assert_eq!(
        cmd(&mut c, &["LMPOP", "2", "nope", "p", "RIGHT", "COUNT", "2"]),
        Value::Array(vec![
            Value::BulkString(b"p".to_vec()),
            Value::Array(vec![
                Value::BulkString(b"a".to_vec()),
                Value::BulkString(b"c".to_vec())
            ])
        ])
    );
    assert_eq!(
        cmd(&mut c, &["TYPE", "p"]),
        Value::SimpleString("list".into())
    );
    assert_eq!(
        cmd(&mut c, &["OBJECT", "ENCODING", "p"]),
        Value::BulkString(b"quicklist".to_vec())
    );

    // Errors, in Redis's words.
    c.set::<_, _, ()>("s", "v").unwrap();
    assert_eq!(
        cmd_err(&mut c, &["LPUSH", "s", "a"]),
        "WRONGTYPE Operation against a key holding the wrong kind of value"
    );
    assert_eq!(
        cmd_err(&mut c, &["LSET", "nope", "0", "a"]),
        "ERR no such key"
    );
    assert_eq!(
        cmd_err(&mut c, &["LSET", "l", "9", "a"]),
        "ERR index out of range"
    );
    assert_eq!(
        cmd_err(&mut c, &["LPOP", "l", "1", "2"]),
        "ERR wrong number of arguments for 'lpop' command"
    );
    assert_eq!(
        cmd_err(&mut c, &["LMPOP", "0", "l", "LEFT"]),
        "ERR numkeys should be greater than 0"
    );
    assert_eq!(
        cmd_err(&mut c, &["LINSERT", "l", "NEAR", "a", "b"]),
        "ERR syntax error"
    );
    // No blocking variants.
    assert!(cmd_err(&mut c, &["BLPOP", "l", "0"]).starts_with("ERR unknown command 'BLPOP'"));

    // COMMAND INFO is Redis's.
    let info = cmd(&mut c, &["COMMAND", "INFO", "lmove", "lmpop"]);
    let text = format!("{info:?}");
    assert!(text.contains("@list") && text.contains("@write"), "{text}");

    // The encoding knobs Redis's test suite sets are accepted and ignored.
    let ok = Value::Okay;
    assert_eq!(
        cmd(&mut c, &["CONFIG", "SET", "list-max-ziplist-size", "5"]),
        ok
    );
    assert_eq!(
        cmd(&mut c, &["CONFIG", "SET", "list-compress-depth", "2"]),
        ok
    );
    assert!(
        cmd_err(&mut c, &["CONFIG", "SET", "list-compress-depth", "-1"]).contains("between 0 and")
    );
}

/// The reply shapes a client tells apart: nil, null array, empty array.
#[test]
fn list_replies_have_redis_s_exact_shapes() {
    let server = Server::start();
    let raw = |req: &str| {
        String::from_utf8(common::raw_roundtrip(server.port, req.as_bytes()).unwrap()).unwrap()
    };
    assert_eq!(raw("RPUSH l a\r\n"), ":1\r\n");
    assert_eq!(raw("LPOP nope\r\n"), "$-1\r\n");
    assert_eq!(raw("LPOP nope 0\r\n"), "*-1\r\n");
    assert_eq!(raw("LPOP l 0\r\n"), "*0\r\n");
    assert_eq!(raw("LRANGE nope 0 -1\r\n"), "*0\r\n");
    assert_eq!(raw("LINDEX l 5\r\n"), "$-1\r\n");
    assert_eq!(raw("LPOS l zz\r\n"), "$-1\r\n");
    assert_eq!(raw("LPOS nope zz COUNT 0\r\n"), "*0\r\n");
    assert_eq!(raw("LMPOP 1 nope LEFT\r\n"), "*-1\r\n");
    assert_eq!(raw("RPOPLPUSH nope l\r\n"), "$-1\r\n");
    assert!(raw("HELLO 3\r\nLPOP nope 1\r\n").ends_with("\r\n_\r\n"));
    let mut c3 = server.conn_resp3();
    assert_eq!(cmd(&mut c3, &["LMPOP", "1", "nope", "LEFT"]), Value::Nil);
    assert_eq!(cmd(&mut c3, &["LPOP", "nope"]), Value::Nil);
}

/// A follower that missed the writes catches up from a snapshot (lists'
/// element records travel in it); then every replica stores the same
/// records, and the lists survive the leader's death.
#[test]
fn lists_reach_a_lagging_replica_by_snapshot_and_survive_a_leader_kill() {
    let mut cluster = Cluster::start_with(
        3,
        &["--snapshot-every-entries", "20", "--log-tail-entries", "5"],
    );
    let leader = cluster.wait_for_leader(Duration::from_secs(30));
    let lagger = (leader + 1) % 3;
    cluster.nodes[lagger].kill9();
    {
        // One write at a time: each is an entry of its own.
        let mut c = cluster.nodes[leader].conn();
        for i in 0..50 {
            c.rpush::<_, _, ()>("q", i).unwrap();
            c.lpush::<_, _, ()>("q", -i).unwrap();
        }
        c.linsert_before::<_, _, _, ()>("q", 10, "ten").unwrap();
        c.lrem::<_, _, ()>("q", 0, 0).unwrap();
        c.ltrim::<_, ()>("q", 5, -5).unwrap();
        c.lmove::<_, _, ()>("q", "r", Direction::Left, Direction::Right)
            .unwrap();
    }
    let expected = range(&mut cluster.nodes[leader].conn(), "q");
    // 100 pushed, one inserted, two zeros removed, nine trimmed, one moved.
    assert_eq!(expected.len(), 89);
    // The leader purges the entries the follower missed while it is still
    // down (its retries back off; they must not keep the log in use).
    cluster.wait_until(
        "the leader purges its log past index 50",
        Duration::from_secs(30),
        || {
            cluster.nodes[leader]
                .info_field("raft_last_purged_index")
                .and_then(|p| p.parse::<u64>().ok())
                .is_some_and(|p| p >= 50)
        },
    );
    cluster.nodes[lagger].restart();
    // Every replica reaches the same applied index with the same records.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let digests: Vec<_> = cluster.nodes.iter().map(digest).collect();
        if digests.windows(2).all(|w| w[0] == w[1]) {
            assert_eq!(digests[0].2, 2, "two keys: q and r");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "replicas differ: {digests:?}\n{}",
            cluster.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        cluster.nodes[lagger].log().contains("snapshot installed"),
        "the follower must catch up from a snapshot:\n{}",
        cluster.nodes[lagger].log()
    );
    cluster.nodes[leader].kill9();
    let new_leader = cluster.wait_for_leader(Duration::from_secs(30));
    let mut c = cluster.nodes[new_leader].conn();
    assert_eq!(range(&mut c, "q"), expected);
    assert_eq!(c.lpop::<_, String>("r", None).unwrap(), "-44");
}

/// A node rebuilt from its snapshot (plus the log after it) has the same
/// lists, expiry included.
#[test]
fn lists_survive_a_snapshot_and_restart() {
    let mut server =
        Server::start_with(&["--snapshot-every-entries", "50", "--log-tail-entries", "10"]);
    let mut model = std::collections::VecDeque::new();
    {
        // One write at a time: each is an entry of its own.
        let mut c = server.conn();
        for i in 0..300 {
            match i % 4 {
                0 | 1 => {
                    c.rpush::<_, _, ()>("q", i).unwrap();
                    model.push_back(i.to_string());
                }
                2 => {
                    c.lpush::<_, _, ()>("q", i).unwrap();
                    model.push_front(i.to_string());
                }
                _ => {
                    let v: String = c.lpop("q", None).unwrap();
                    assert_eq!(Some(v), model.pop_front());
                }
            }
        }
        c.lset::<_, _, ()>("q", 3, "three").unwrap();
        model[3] = "three".into();
        c.expire::<_, ()>("q", 1_000).unwrap();
        c.rpush::<_, _, ()>("other", "x").unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while server
        .info_field("raft_snapshot_index")
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0)
        < 250
    {
        assert!(Instant::now() < deadline, "no snapshot:\n{}", server.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    server.kill9();
    server.restart();
    let mut c = server.conn();
    let want: Vec<String> = model.into_iter().collect();
    assert_eq!(range(&mut c, "q"), want);
    assert!(c.ttl::<_, i64>("q").unwrap() > 900);
    assert_eq!(range(&mut c, "other"), ["x"]);
    // Still a working list: pushes continue at both ends.
    assert_eq!(c.lpush::<_, _, usize>("q", "h").unwrap(), want.len() + 1);
    assert_eq!(c.rpush::<_, _, usize>("q", "t").unwrap(), want.len() + 2);
}

/// Deleting a list costs two range deletes whatever its size: the key and
/// every element record are gone at once, and a new list of that name
/// starts empty.
#[test]
fn deleting_a_list_of_100000_elements_is_one_quick_step() {
    let server = Server::start();
    let mut c = server.conn();
    for chunk in 0..100 {
        let values: Vec<u32> = (chunk * 1000..(chunk + 1) * 1000).collect();
        c.rpush::<_, _, ()>("big", values).unwrap();
    }
    assert_eq!(c.llen::<_, i64>("big").unwrap(), 100_000);
    assert_eq!(c.lindex::<_, String>("big", 77_777).unwrap(), "77777");
    let started = Instant::now();
    assert_eq!(c.del::<_, i64>("big").unwrap(), 1);
    let took = started.elapsed();
    eprintln!("DEL of a 100,000-element list took {took:?}");
    assert!(took < Duration::from_secs(1), "DEL took {took:?}");
    assert_eq!(cmd(&mut c, &["DBSIZE"]), Value::Int(0));
    assert_eq!(c.llen::<_, i64>("big").unwrap(), 0);
    // No record of the list is left in storage.
    let (_, hash, keys) = digest(&server);
    assert_eq!((hash.as_str(), keys), (EMPTY_DIGEST, 0));
    assert_eq!(c.rpush::<_, _, i64>("big", "fresh").unwrap(), 1);
    assert_eq!(range(&mut c, "big"), ["fresh"]);
}

/// `WATCH` sees a list changed by another client; a transaction of list
/// commands is atomic.
#[test]
fn watch_and_transactions_cover_lists() {
    let server = Server::start();
    let mut c = server.conn();
    let mut other = server.conn();
    c.rpush::<_, _, ()>("w", &["a", "b"]).unwrap();
    let _: () = redis::cmd("WATCH").arg("w").query(&mut c).unwrap();
    other.lset::<_, _, ()>("w", 0, "A").unwrap();
    let aborted: Option<Vec<String>> = redis::pipe()
        .atomic()
        .rpop("w", None)
        .query(&mut c)
        .unwrap();
    assert_eq!(aborted, None);
    let (popped, len): (String, i64) = redis::pipe()
        .atomic()
        .rpoplpush("w", "v")
        .llen("w")
        .query(&mut c)
        .unwrap();
    assert_eq!((popped.as_str(), len), ("b", 1));
}

/// An application using lists through redis-py (RESP3, its default
/// parsing of every list reply).
#[test]
fn a_redis_py_application_uses_lists() {
    if !common::redis_py_available() {
        return;
    }
    let server = Server::start();
    let script = format!(
        r#"
import redis
r = redis.Redis(port={port}, protocol=3, decode_responses=True)
assert r.rpush("jobs", "a", "b", "c", "d") == 4
assert r.lpush("jobs", "z") == 5
assert r.lrange("jobs", 0, -1) == ["z", "a", "b", "c", "d"]
assert r.lpop("jobs") == "z"
assert r.rpop("jobs", 2) == ["d", "c"]
assert r.lpop("missing") is None
assert r.lpop("missing", 3) is None
assert r.lmove("jobs", "done", "LEFT", "RIGHT") == "a"
assert r.rpoplpush("jobs", "done") == "b"
assert r.exists("jobs") == 0
assert r.lrange("done", 0, -1) == ["b", "a"]
assert r.linsert("done", "AFTER", "b", "x") == 3
assert r.lpos("done", "x") == 1
assert r.lpos("done", "nope", count=0) == []
assert r.lset("done", 0, "B") is True
assert r.lrem("done", 0, "x") == 1
assert r.lmpop(2, "jobs", "done", direction="RIGHT", count=5) == ["done", ["a", "B"]]
assert r.lmpop(1, "done", direction="LEFT") is None
r.rpush("cap", *range(10))
assert r.ltrim("cap", 0, 2) is True
assert r.lrange("cap", 0, -1) == ["0", "1", "2"]
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
