//! Sorted sets against real `seshat` processes: the redis crate and
//! redis-py in both protocols, raw RESP shapes, snapshots and restarts,
//! failover, and deleting a big sorted set.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{raw_roundtrip, Cluster, Server};

fn zadd(c: &mut redis::Connection, key: &str, pairs: &[(f64, String)]) -> i64 {
    let mut cmd = redis::cmd("ZADD");
    cmd.arg(key);
    for (s, m) in pairs {
        cmd.arg(*s).arg(m);
    }
    cmd.query(c).unwrap()
}

fn range_withscores(c: &mut redis::Connection, key: &str) -> Vec<(String, f64)> {
    redis::cmd("ZRANGE")
        .arg(key)
        .arg(0)
        .arg(-1)
        .arg("WITHSCORES")
        .query(c)
        .unwrap()
}

fn err_text<T: redis::FromRedisValue + std::fmt::Debug>(r: redis::RedisResult<T>) -> String {
    let e = r.expect_err("expected an error reply");
    format!("{} {}", e.code().unwrap_or(""), e.detail().unwrap_or(""))
        .trim()
        .to_string()
}

#[test]
fn sorted_set_commands_through_the_redis_crate() {
    let server = Server::start();
    let mut c = server.conn();
    let pairs: Vec<(f64, String)> = (0..50)
        .map(|i| (f64::from(i % 10), format!("m{i:02}")))
        .collect();
    assert_eq!(zadd(&mut c, "z", &pairs), 50);
    let all = range_withscores(&mut c, "z");
    assert_eq!(all.len(), 50);
    assert!(all
        .windows(2)
        .all(|w| (w[0].1, &w[0].0) <= (w[1].1, &w[1].0)));
    // Score 9: m09 m19 m29 m39 m49, ranks 45 to 49.
    let rank: i64 = redis::cmd("ZRANK")
        .arg("z")
        .arg("m19")
        .query(&mut c)
        .unwrap();
    assert_eq!(rank, 46);
    let rev: i64 = redis::cmd("ZREVRANK")
        .arg("z")
        .arg("m00")
        .query(&mut c)
        .unwrap();
    assert_eq!(rev, 49);
    let count: i64 = redis::cmd("ZCOUNT")
        .arg("z")
        .arg("(2")
        .arg("4")
        .query(&mut c)
        .unwrap();
    assert_eq!(count, 10);
    // Scores read back as Redis 7.0 prints them.
    let _: i64 = redis::cmd("ZADD")
        .arg("f")
        .arg("1.1")
        .arg("a")
        .query(&mut c)
        .unwrap();
    let text: String = redis::cmd("ZSCORE")
        .arg("f")
        .arg("a")
        .query(&mut c)
        .unwrap();
    assert_eq!(text, "1.1000000000000001");
    let inc: f64 = redis::cmd("ZINCRBY")
        .arg("f")
        .arg("+inf")
        .arg("a")
        .query(&mut c)
        .unwrap();
    assert_eq!(inc, f64::INFINITY);
    assert_eq!(
        err_text(
            redis::cmd("ZINCRBY")
                .arg("f")
                .arg("-inf")
                .arg("a")
                .query::<f64>(&mut c)
        ),
        "ERR resulting score is not a number (NaN)"
    );
    let popped: Vec<(String, f64)> = redis::cmd("ZPOPMIN").arg("z").arg(3).query(&mut c).unwrap();
    assert_eq!(
        popped,
        vec![
            ("m00".into(), 0.0),
            ("m10".into(), 0.0),
            ("m20".into(), 0.0)
        ]
    );
    let stored: i64 = redis::cmd("ZUNIONSTORE")
        .arg("u")
        .arg(2)
        .arg("z")
        .arg("f")
        .arg("WEIGHTS")
        .arg(2)
        .arg(1)
        .query(&mut c)
        .unwrap();
    assert_eq!(stored, 48);
    let top: Vec<(String, f64)> = redis::cmd("ZRANGE")
        .arg("u")
        .arg("+inf")
        .arg("10")
        .arg("BYSCORE")
        .arg("REV")
        .arg("WITHSCORES")
        .query(&mut c)
        .unwrap();
    assert_eq!(top[0], ("a".into(), f64::INFINITY));
    assert_eq!(top[1].1, 18.0);
    let lex: Vec<String> = redis::cmd("ZRANGEBYLEX")
        .arg("u")
        .arg("[m48")
        .arg("+")
        .query(&mut c)
        .unwrap();
    assert_eq!(lex, vec!["m48", "m49"]);
    // The keyspace commands know sorted sets.
    let kind: String = redis::cmd("TYPE").arg("u").query(&mut c).unwrap();
    assert_eq!(kind, "zset");
    let enc: String = redis::cmd("OBJECT")
        .arg("ENCODING")
        .arg("u")
        .query(&mut c)
        .unwrap();
    assert_eq!(enc, "skiplist");
    let _: () = redis::cmd("RENAME")
        .arg("u")
        .arg("u2")
        .query(&mut c)
        .unwrap();
    let copied: i64 = redis::cmd("COPY")
        .arg("u2")
        .arg("u3")
        .query(&mut c)
        .unwrap();
    assert_eq!(copied, 1);
    assert_eq!(
        range_withscores(&mut c, "u3"),
        range_withscores(&mut c, "u2")
    );
    let _: () = redis::cmd("SET").arg("s").arg("v").query(&mut c).unwrap();
    assert_eq!(
        err_text(
            redis::cmd("ZADD")
                .arg("s")
                .arg(1)
                .arg("a")
                .query::<i64>(&mut c)
        ),
        "WRONGTYPE Operation against a key holding the wrong kind of value"
    );
    assert_eq!(
        err_text(
            redis::cmd("ZADD")
                .arg("z")
                .arg("XX")
                .arg("NX")
                .arg(1)
                .arg("a")
                .query::<i64>(&mut c)
        ),
        "ERR XX and NX options at the same time are not compatible"
    );
    // ZSCAN visits every member once the set is quiet.
    let many: Vec<(f64, String)> = (0..3000).map(|i| (1.0, format!("user:{i:06}"))).collect();
    for chunk in many.chunks(1000) {
        zadd(&mut c, "scan", chunk);
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut cursor = 0u64;
    let mut steps = 0;
    loop {
        let (next, items): (u64, Vec<(String, f64)>) = redis::cmd("ZSCAN")
            .arg("scan")
            .arg(cursor)
            .arg("COUNT")
            .arg(100)
            .query(&mut c)
            .unwrap();
        seen.extend(items.into_iter().map(|(m, _)| m));
        steps += 1;
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    assert_eq!(seen.len(), 3000);
    assert!(steps >= 30, "ZSCAN answered in {steps} steps");
}

#[test]
fn replies_take_redis_7_shapes_in_resp2_and_resp3() {
    let server = Server::start();
    let run =
        |req: &str| String::from_utf8(raw_roundtrip(server.port, req.as_bytes()).unwrap()).unwrap();
    assert_eq!(run("ZADD z 1 a 2.5 b\r\n"), ":2\r\n");
    assert_eq!(
        run("ZRANGE z 0 -1 WITHSCORES\r\n"),
        "*4\r\n$1\r\na\r\n$1\r\n1\r\n$1\r\nb\r\n$3\r\n2.5\r\n"
    );
    let resp3 = run("HELLO 3\r\nZRANGE z 0 -1 WITHSCORES\r\nZSCORE z b\r\nZPOPMAX z 1\r\nZPOPMIN z\r\nZRANDMEMBER z 0\r\nZRANDMEMBER nope 5\r\nZMPOP 1 nope MIN\r\n");
    let after_hello = &resp3[resp3.find("*2\r\n*2").expect(&resp3)..];
    assert_eq!(
        after_hello,
        "*2\r\n*2\r\n$1\r\na\r\n,1\r\n*2\r\n$1\r\nb\r\n,2.5\r\n,2.5\r\n*1\r\n*2\r\n$1\r\nb\r\n,2.5\r\n*2\r\n$1\r\na\r\n,1\r\n*0\r\n*0\r\n_\r\n"
    );
    assert_eq!(run("ZMPOP 1 nope MIN\r\n"), "*-1\r\n");
    assert_eq!(
        run("ZADD z 1 a\r\nZMPOP 1 z MAX\r\n"),
        ":1\r\n*2\r\n$1\r\nz\r\n*1\r\n*2\r\n$1\r\na\r\n$1\r\n1\r\n"
    );
    assert_eq!(
        run("ZADD r 1 a 2 b 3 c\r\nHELLO 3\r\nZRANDMEMBER r -5 WITHSCORES\r\n")
            .matches("*2\r\n$1\r\n")
            .count(),
        5
    );
    assert_eq!(
        run("ZRANDMEMBER r -9223372036854775808\r\n"),
        "-ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807\r\n"
    );
    assert_eq!(
        run("ZRANDMEMBER r -9223372036854770000 WITHSCORES\r\n"),
        "-ERR value is out of range\r\n"
    );
    // ZSCAN carries scores as plain strings in both protocols.
    let scan = run("HELLO 3\r\nZSCAN r 0\r\n");
    assert!(scan.ends_with("*2\r\n$1\r\n0\r\n*6\r\n$1\r\na\r\n$1\r\n1\r\n$1\r\nb\r\n$1\r\n2\r\n$1\r\nc\r\n$1\r\n3\r\n"), "{scan}");
    // The encoding knobs Redis's tests set are accepted and ignored.
    assert_eq!(
        run("CONFIG SET zset-max-ziplist-entries 0 zset-max-listpack-value 10\r\n"),
        "+OK\r\n"
    );
    assert!(run("CONFIG SET zset-max-ziplist-entries x\r\n").starts_with("-ERR CONFIG SET failed"));
}

#[test]
fn sorted_sets_survive_a_snapshot_and_a_restart() {
    let mut server = Server::start_with(&[
        "--snapshot-every-entries",
        "200",
        "--log-tail-entries",
        "50",
    ]);
    {
        // One write at a time: each is its own log entry.
        let mut c = server.conn();
        for i in 0..600 {
            let key = format!("z{}", i % 5);
            let _: i64 = redis::cmd("ZADD")
                .arg(&key)
                .arg(f64::from(i) / 4.0)
                .arg(format!("m{i}"))
                .query(&mut c)
                .unwrap();
        }
        let _: i64 = redis::cmd("ZREM")
            .arg("z0")
            .arg("m0")
            .arg("m5")
            .query(&mut c)
            .unwrap();
        let _: i64 = redis::cmd("PEXPIRE")
            .arg("z4")
            .arg(600_000)
            .query(&mut c)
            .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while server
        .info_field("raft_snapshot_index")
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0)
        < 400
    {
        assert!(Instant::now() < deadline, "no snapshot:\n{}", server.log());
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut c = server.conn();
    let before: Vec<Vec<(String, f64)>> = (0..5)
        .map(|k| range_withscores(&mut c, &format!("z{k}")))
        .collect();
    drop(c);
    server.kill9();
    server.restart();
    let mut c = server.conn();
    for (k, want) in before.iter().enumerate() {
        assert_eq!(&range_withscores(&mut c, &format!("z{k}")), want);
        let card: usize = redis::cmd("ZCARD")
            .arg(format!("z{k}"))
            .query(&mut c)
            .unwrap();
        assert_eq!(card, want.len());
    }
    assert_eq!(before[0].len(), 118);
    let ttl: i64 = redis::cmd("TTL").arg("z4").query(&mut c).unwrap();
    assert!(ttl > 500, "{ttl}");
    let rank: i64 = redis::cmd("ZRANK")
        .arg("z1")
        .arg("m596")
        .query(&mut c)
        .unwrap();
    assert_eq!(rank, 119);
}

#[test]
fn deleting_a_sorted_set_of_100_000_members_is_fast() {
    let server = Server::start();
    let mut c = server.conn();
    // 1,000 members per ZADD keeps each write under the request limit.
    for chunk in 0..100 {
        let pairs: Vec<(f64, String)> = (0..1_000)
            .map(|i| (f64::from(i), format!("member:{chunk}:{i}")))
            .collect();
        assert_eq!(zadd(&mut c, "big", &pairs), 1_000);
    }
    let card: i64 = redis::cmd("ZCARD").arg("big").query(&mut c).unwrap();
    assert_eq!(card, 100_000);
    let mid: Vec<String> = redis::cmd("ZRANGE")
        .arg("big")
        .arg(50_000)
        .arg(50_001)
        .query(&mut c)
        .unwrap();
    assert_eq!(mid.len(), 2);
    let started = Instant::now();
    let removed: i64 = redis::cmd("DEL").arg("big").query(&mut c).unwrap();
    let took = started.elapsed();
    assert_eq!(removed, 1);
    assert!(
        took < Duration::from_secs(1),
        "DEL of 100,000 members took {took:?}"
    );
    let dbsize: i64 = redis::cmd("DBSIZE").query(&mut c).unwrap();
    assert_eq!(dbsize, 0);
    // A new sorted set of the same name starts empty.
    assert_eq!(zadd(&mut c, "big", &[(1.0, "fresh".into())]), 1);
    assert_eq!(
        range_withscores(&mut c, "big"),
        vec![("fresh".to_string(), 1.0)]
    );
    let lex: Vec<String> = redis::cmd("ZRANGEBYLEX")
        .arg("big")
        .arg("-")
        .arg("+")
        .query(&mut c)
        .unwrap();
    assert_eq!(lex, vec!["fresh"]);
}

#[test]
fn sorted_sets_survive_a_leader_failover() {
    let mut cluster = Cluster::start(3);
    let leader = cluster.wait_for_leader(Duration::from_secs(30));
    let want;
    {
        let mut c = cluster.nodes[leader].conn();
        let mut pipe = redis::pipe();
        for i in 0..200 {
            pipe.cmd("ZINCRBY")
                .arg("board")
                .arg(i % 7)
                .arg(format!("p{}", i % 40))
                .ignore();
        }
        pipe.cmd("ZPOPMAX").arg("board").arg(2).ignore();
        pipe.cmd("ZRANGESTORE")
            .arg("top")
            .arg("board")
            .arg(0)
            .arg(9)
            .arg("REV")
            .ignore();
        let _: () = pipe.query(&mut c).unwrap();
        want = (
            range_withscores(&mut c, "board"),
            range_withscores(&mut c, "top"),
        );
    }
    assert_eq!(want.0.len(), 38);
    assert_eq!(want.1.len(), 10);
    cluster.nodes[leader].kill9();
    let new_leader = cluster.wait_for_leader(Duration::from_secs(30));
    let mut c = cluster.nodes[new_leader].conn();
    assert_eq!(range_withscores(&mut c, "board"), want.0);
    assert_eq!(range_withscores(&mut c, "top"), want.1);
}

#[test]
fn redis_py_sorted_sets_in_resp2_and_resp3() {
    if !common::redis_py_available() {
        return;
    }
    let server = Server::start();
    let script = format!(
        r#"
import random, redis
def pairs(v):
    # redis-py gives tuples in RESP2 and the nested arrays themselves in
    # RESP3 (flat ones for a pop without a count).
    if v and not isinstance(v[0], (list, tuple)):
        v = [v[i:i + 2] for i in range(0, len(v), 2)]
    return [(m, float(s)) for m, s in v]
for proto in (2, 3):
    r = redis.Redis(host="127.0.0.1", port={port}, protocol=proto, decode_responses=True)
    r.delete("z", "w", "dst")
    assert r.zadd("z", {{"a": 1, "b": 2.5, "c": -3}}) == 3
    assert r.zadd("z", {{"a": 5}}, gt=True, ch=True) == 1
    assert pairs(r.zrange("z", 0, -1, withscores=True)) == [("c", -3.0), ("b", 2.5), ("a", 5.0)]
    assert r.zscore("z", "b") == 2.5
    assert r.zmscore("z", ["a", "nope"]) == [5.0, None]
    assert r.zrank("z", "a") == 2 and r.zrevrank("z", "a") == 0
    assert r.zincrby("z", 1.5, "b") == 4.0
    assert r.zrangebyscore("z", "(-3", "+inf") == ["b", "a"]
    assert pairs(r.zrevrangebyscore("z", "+inf", "-inf", start=1, num=1, withscores=True)) == [("b", 4.0)]
    assert r.zadd("w", {{"a": 1, "x": 2}}) == 2
    assert r.zunionstore("dst", {{"z": 2, "w": 1}}, aggregate="MAX") == 4
    assert pairs(r.zrange("dst", 0, -1, withscores=True)) == [("c", -6.0), ("x", 2.0), ("b", 8.0), ("a", 10.0)]
    assert pairs(r.zinter(["z", "w"], withscores=True)) == [("a", 6.0)]
    assert r.zdiff(["z", "w"]) == ["c", "b"]
    assert r.zintercard(2, ["z", "w"]) == 1
    assert r.zrangestore("dst", "z", 0, 0) == 1
    assert pairs(r.zpopmin("z")) == [("c", -3.0)]
    assert pairs(r.zpopmax("z", 2)) == [("a", 5.0), ("b", 4.0)]
    assert r.exists("z") == 0
    res = r.zmpop(1, ["w"], max=True)
    assert res[0] == "w" and pairs(res[1]) == [("x", 2.0)], res
    members = {{"m%d" % i: i for i in range(500)}}
    r.zadd("big", members)
    assert dict(r.zscan_iter("big", count=37)) == {{k: float(v) for k, v in members.items()}}
    assert len(set(r.zrandmember("big", 20))) == 20
    r.delete("big")
# Scores print as C's %.17g, exactly.
r = redis.Redis(host="127.0.0.1", port={port}, protocol=2, decode_responses=True)
r.set_response_callback("ZSCORE", lambda reply, **options: reply)
rnd = random.Random(7)
scores = [rnd.random() for _ in range(300)] + [rnd.uniform(-1e20, 1e20) for _ in range(300)] + [1e-5, 0.1, 1e17, 123456789.125]
pipe = r.pipeline(transaction=False)
for i, s in enumerate(scores):
    pipe.zadd("fmt", {{"m%d" % i: repr(s)}})
pipe.execute()
for i, s in enumerate(scores):
    got = r.execute_command("ZSCORE", "fmt", "m%d" % i)
    assert got == "%.17g" % s, (got, "%.17g" % s)
print("ok")
"#,
        port = server.port
    );
    let out = Command::new("python3")
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("ok"),
        "stdout: {}\nstderr: {}\nserver: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
}
