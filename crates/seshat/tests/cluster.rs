//! Real 3- and 5-node clusters on loopback: formation, MOVED redirects,
//! failover after kill -9, majority loss, and Redis cluster clients.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::Cluster;
use redis::{RedisError, Value};

#[allow(clippy::unwrap_used)]
fn slot_of(key: &str, c: &mut redis::Connection) -> i64 {
    redis::cmd("CLUSTER")
        .arg("KEYSLOT")
        .arg(key)
        .query(c)
        .unwrap()
}

#[test]
fn three_nodes_form_a_cluster_and_followers_answer_moved() {
    let cluster = Cluster::start(3);
    let leader = cluster.wait_for_leader(Duration::from_secs(30));
    let leader_port = cluster.nodes[leader].port;
    let mut lc = cluster.nodes[leader].conn();
    let _: () = redis::cmd("SET")
        .arg("foo")
        .arg("bar")
        .query(&mut lc)
        .unwrap();
    let slot = slot_of("foo", &mut lc);
    assert_eq!(slot, 12182);
    for (i, node) in cluster.nodes.iter().enumerate() {
        if i == leader {
            continue;
        }
        let mut c = node.conn();
        for cmd in [
            redis::cmd("SET").arg("foo").arg("x").clone(),
            redis::cmd("GET").arg("foo").clone(),
        ] {
            let err: RedisError = cmd.query::<Value>(&mut c).unwrap_err();
            assert_eq!(err.code(), Some("MOVED"), "{err:?}");
            let (addr, s) = err.redirect_node().expect("MOVED carries slot and address");
            assert_eq!(
                (s, addr),
                (12182, format!("127.0.0.1:{leader_port}").as_str()),
                "{err:?}"
            );
        }
        // Regression: pipelined reads share one barrier; when it fails on
        // a follower every read still gets its own MOVED (its own slot),
        // in order, and so does a write in between.
        {
            use std::io::{Read, Write};
            let mut raw = std::net::TcpStream::connect(("127.0.0.1", node.port)).unwrap();
            raw.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            raw.write_all(b"GET foo\r\nGET bar\r\nSET foo x\r\nGET foo\r\nEXISTS bar\r\n")
                .unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            while got.iter().filter(|b| **b == b'\n').count() < 5 {
                let n = raw.read(&mut buf).unwrap();
                assert!(
                    n > 0,
                    "connection closed: {:?}",
                    String::from_utf8_lossy(&got)
                );
                got.extend_from_slice(&buf[..n]);
            }
            let text = String::from_utf8(got).unwrap();
            let addr = format!("127.0.0.1:{leader_port}");
            let want: Vec<String> = [12182, 5061, 12182, 12182, 5061]
                .iter()
                .map(|s| format!("-MOVED {s} {addr}"))
                .collect();
            assert_eq!(text.lines().collect::<Vec<_>>(), want, "{text}");
        }
        // Keyless commands redirect with slot 0; PING is answered locally.
        let err: RedisError = redis::cmd("DBSIZE").query::<i64>(&mut c).unwrap_err();
        assert_eq!(err.redirect_node().map(|(_, s)| s), Some(0));
        let pong: String = redis::cmd("PING").query(&mut c).unwrap();
        assert_eq!(pong, "PONG");
        let info: String = redis::cmd("INFO").arg("replication").query(&mut c).unwrap();
        assert!(info.contains("role:slave"), "{info}");
        assert!(
            info.contains(&format!("master_port:{leader_port}")),
            "{info}"
        );
    }
    let v: String = redis::cmd("GET").arg("foo").query(&mut lc).unwrap();
    assert_eq!(v, "bar");
    // CLUSTER SLOTS names the leader first, on every node.
    for node in &cluster.nodes {
        let mut c = node.conn();
        let slots: Value = redis::cmd("CLUSTER").arg("SLOTS").query(&mut c).unwrap();
        let Value::Array(ranges) = slots else {
            panic!("{slots:?}")
        };
        assert_eq!(ranges.len(), 1);
        let Value::Array(range) = &ranges[0] else {
            panic!()
        };
        assert_eq!(range[0], Value::Int(0));
        assert_eq!(range[1], Value::Int(16383));
        assert_eq!(range.len(), 5, "master + 2 replicas: {range:?}");
        let Value::Array(master) = &range[2] else {
            panic!()
        };
        assert_eq!(master[1], Value::Int(leader_port as i64));
    }
}

#[test]
fn killing_the_leader_elects_another_and_keeps_every_acknowledged_write() {
    let mut cluster = Cluster::start(3);
    let leader = cluster.wait_for_leader(Duration::from_secs(30));
    {
        let mut c = cluster.nodes[leader].conn();
        let mut pipe = redis::pipe();
        for i in 0..300 {
            pipe.cmd("SET").arg(format!("k{i}")).arg(i).ignore();
        }
        let _: () = pipe.query(&mut c).unwrap();
    }
    let killed_at = Instant::now();
    cluster.nodes[leader].kill9();
    let new_leader = cluster.wait_for_leader(Duration::from_secs(30));
    let took = killed_at.elapsed();
    eprintln!("new leader after {took:?} (election timeout 500-1000 ms)");
    assert_ne!(new_leader, leader);
    let mut c = cluster.nodes[new_leader].conn();
    for i in 0..300 {
        let v: i64 = redis::cmd("GET")
            .arg(format!("k{i}"))
            .query(&mut c)
            .unwrap();
        assert_eq!(v, i, "acknowledged write k{i} lost after failover");
    }
    // The cluster keeps accepting writes with one node down.
    let _: () = redis::cmd("SET")
        .arg("after")
        .arg("1")
        .query(&mut c)
        .unwrap();
    // The old leader rejoins as a follower and catches up.
    cluster.nodes[leader].restart();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let applied = cluster.nodes[leader].info_field("raft_applied_index");
        let target = cluster.nodes[new_leader].info_field("raft_applied_index");
        if applied.is_some() && applied == target {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "old leader did not catch up:\n{}",
            cluster.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn five_nodes_survive_two_failures() {
    let mut cluster = Cluster::start(5);
    let leader = cluster.wait_for_leader(Duration::from_secs(30));
    let mut c = cluster.nodes[leader].conn();
    let _: () = redis::cmd("SET")
        .arg("five")
        .arg("5")
        .query(&mut c)
        .unwrap();
    drop(c);
    // Kill the leader and one follower: 3 of 5 remain, a majority.
    let follower = (leader + 1) % 5;
    cluster.nodes[leader].kill9();
    cluster.nodes[follower].kill9();
    let new_leader = cluster.wait_for_leader(Duration::from_secs(30));
    let mut c = cluster.nodes[new_leader].conn();
    let v: String = redis::cmd("GET").arg("five").query(&mut c).unwrap();
    assert_eq!(v, "5");
    let _: () = redis::cmd("SET").arg("six").arg("6").query(&mut c).unwrap();
}

/// A leader with writes to replicate retries a dead follower at the pace
/// of its replication backoff (200 ms growing to 1 s), not once per turn of
/// its core: it once reopened the stream as fast as the connection was
/// refused, tens of thousands of times a second under write load, each
/// attempt logged, until the two cores were busy with it.
#[test]
fn a_dead_follower_is_retried_with_backoff_under_write_load() {
    let mut cluster = Cluster::start(3);
    let leader = cluster.wait_for_leader(Duration::from_secs(30));
    let follower = (leader + 1) % 3;
    cluster.nodes[follower].kill9();
    const FAILURE: &str = "ReplicationCore recv RPCError";
    let before = cluster.nodes[leader].log().matches(FAILURE).count();
    // Four writers for three seconds: every write is replicated to the
    // live follower and offered to the dead one.
    let stop = Instant::now() + Duration::from_secs(3);
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let mut c = cluster.nodes[leader].conn();
            std::thread::spawn(move || {
                let mut n = 0u64;
                while Instant::now() < stop {
                    let _: () = redis::cmd("SET")
                        .arg(format!("w{w}-{n}"))
                        .arg(n)
                        .query(&mut c)
                        .unwrap();
                    n += 1;
                }
                n
            })
        })
        .collect();
    let writes: u64 = writers.into_iter().map(|w| w.join().unwrap()).sum();
    let failures = cluster.nodes[leader].log().matches(FAILURE).count() - before;
    // The backoff allows about a dozen attempts in 3 s; the tight loop made
    // one per core turn (thousands here). The bound leaves room for both
    // of the leader's groups and a slow machine.
    assert!(
        failures <= 100,
        "{failures} failed replication attempts to the dead follower during {writes} writes"
    );
    assert!(writes > 0);
}

#[test]
fn without_a_majority_writes_are_never_acknowledged_and_reads_fail() {
    let mut cluster = Cluster::start_with(3, &["--request-timeout-ms", "3000"]);
    let leader = cluster.wait_for_leader(Duration::from_secs(30));
    let mut c = cluster.nodes[leader].conn();
    let _: () = redis::cmd("SET").arg("m").arg("1").query(&mut c).unwrap();
    drop(c);
    for i in 0..3 {
        if i != leader {
            cluster.nodes[i].kill9();
        }
    }
    let mut c = cluster.nodes[leader].conn();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut kinds = Vec::new();
    while Instant::now() < deadline {
        match redis::cmd("SET").arg("m").arg("2").query::<Value>(&mut c) {
            Ok(v) => panic!("a minority acknowledged a write: {v:?}"),
            Err(e) => kinds.push(e.code().unwrap_or("?").to_string()),
        }
        match redis::cmd("GET").arg("m").query::<Value>(&mut c) {
            Ok(v) => panic!("a minority served a read: {v:?}"),
            Err(e) => kinds.push(e.code().unwrap_or("?").to_string()),
        }
    }
    eprintln!("replies without quorum: {kinds:?}");
    for k in &kinds {
        assert!(
            ["NOQUORUM", "TIMEOUT", "CLUSTERDOWN", "MOVED"].contains(&k.as_str()),
            "unexpected {k}"
        );
    }
}

/// Followers that stop answering without closing their connections
/// (SIGSTOP) while reads are flowing: the leader's heartbeat streams to them
/// stay open with a heartbeat unanswered, so no read may be confirmed; once
/// they continue, the queued replies to abandoned heartbeats must not vouch
/// for new reads, and reads resume.
#[test]
fn reads_stop_while_followers_are_paused_and_resume_after() {
    let cluster = Cluster::start_with(3, &["--request-timeout-ms", "2000"]);
    let leader = cluster.wait_for_leader(Duration::from_secs(30));
    let mut c = cluster.nodes[leader].conn();
    let _: () = redis::cmd("SET").arg("p").arg("1").query(&mut c).unwrap();
    for _ in 0..200 {
        let v: String = redis::cmd("GET").arg("p").query(&mut c).unwrap();
        assert_eq!(v, "1");
    }
    let followers: Vec<u32> = (0..3)
        .filter(|&i| i != leader)
        .map(|i| cluster.nodes[i].pid().expect("follower running"))
        .collect();
    for &pid in &followers {
        common::signal(pid, "STOP");
    }
    // `kill -STOP` returns once the signal is queued; a follower thread can
    // still run (and answer a heartbeat, legitimately) until it is
    // scheduled out. Reads start only when every thread of both followers
    // has stopped, so a read served after this point is a real failure.
    for &pid in &followers {
        wait_until_stopped(pid);
    }
    let deadline = Instant::now() + Duration::from_secs(6);
    let mut kinds = Vec::new();
    while Instant::now() < deadline {
        match redis::cmd("GET").arg("p").query::<Value>(&mut c) {
            Ok(v) => {
                for &pid in &followers {
                    common::signal(pid, "CONT");
                }
                panic!("a leader without a live majority served a read: {v:?}");
            }
            Err(e) => kinds.push(e.code().unwrap_or("?").to_string()),
        }
    }
    for &pid in &followers {
        common::signal(pid, "CONT");
    }
    let mut counts = std::collections::BTreeMap::new();
    for k in &kinds {
        *counts.entry(k.as_str()).or_insert(0) += 1;
    }
    eprintln!("read replies while the followers were paused: {counts:?}");
    assert!(!kinds.is_empty());
    for k in &kinds {
        assert!(
            ["NOQUORUM", "TIMEOUT", "CLUSTERDOWN", "MOVED"].contains(&k.as_str()),
            "unexpected {k}"
        );
    }
    // The paused followers may have started an election on waking; reads
    // come back from whichever node leads, with the acknowledged value.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let leader = cluster.wait_for_leader(Duration::from_secs(30));
        let got = redis::cmd("GET")
            .arg("p")
            .query::<Option<String>>(&mut cluster.nodes[leader].conn());
        match got {
            Ok(Some(v)) if v == "1" => break,
            Ok(v) => panic!("read after the pause returned {v:?}"),
            Err(e) if Instant::now() < deadline => {
                eprintln!("read after the pause: {e}");
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => panic!("reads did not resume after the pause: {e}"),
        }
    }
}

/// Waits until every thread of `pid` is in the stopped state (`T`).
fn wait_until_stopped(pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("read /proc task list");
        let all_stopped = tasks.flatten().all(|t| {
            std::fs::read_to_string(t.path().join("stat"))
                .ok()
                // The state is the field after the parenthesised name.
                .and_then(|stat| {
                    stat.rsplit_once(')')
                        .and_then(|(_, rest)| rest.split_whitespace().next().map(str::to_owned))
                })
                .is_some_and(|state| state == "T" || state == "t")
        });
        if all_stopped {
            return;
        }
        assert!(Instant::now() < deadline, "process {pid} did not stop");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn redis_cli_in_cluster_mode_follows_moved_to_the_leader() {
    if !common::have_tool("redis-cli") {
        return;
    }
    let cluster = Cluster::start(3);
    let leader = cluster.wait_for_leader(Duration::from_secs(30));
    let follower = (leader + 1) % 3;
    let port = cluster.nodes[follower].port.to_string();
    let run = |args: &[&str]| -> String {
        let out = Command::new("redis-cli")
            .args(["-c", "-p", &port])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim_end().to_string()
    };
    assert_eq!(run(&["SET", "cli-key", "v1"]), "OK");
    assert_eq!(run(&["GET", "cli-key"]), "v1");
    assert_eq!(run(&["DEL", "cli-key"]), "1");
}

#[test]
fn redis_py_cluster_client_routes_to_the_leader_and_reroutes_after_failover() {
    if !common::have_tool("python3") {
        return;
    }
    let mut cluster = Cluster::start(3);
    let leader = cluster.wait_for_leader(Duration::from_secs(30));
    let follower = (leader + 1) % 3;
    let script = |port: u16, key: &str| {
        format!(
            r#"
import redis
from redis.cluster import RedisCluster
rc = RedisCluster(host="127.0.0.1", port={port})
assert rc.set("{key}", "v") is True
assert rc.get("{key}") == b"v"
print("ok")
"#
        )
    };
    let run = |code: String| {
        let out = Command::new("python3")
            .args(["-c", &code])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(script(cluster.nodes[follower].port, "py1"));
    cluster.nodes[leader].kill9();
    let new_leader = cluster.wait_for_leader(Duration::from_secs(30));
    let survivor = (0..3)
        .find(|i| *i != leader && *i != new_leader)
        .unwrap_or(new_leader);
    run(script(cluster.nodes[survivor].port, "py2"));
}

#[test]
fn proxy_mode_followers_forward_reads_and_writes_to_the_leader() {
    let cluster = Cluster::start_with(3, &["--follower-mode", "proxy"]);
    let leader = cluster.wait_for_leader(Duration::from_secs(30));
    let follower = (leader + 1) % 3;
    let mut c = cluster.nodes[follower].conn();
    let _: () = redis::cmd("SET").arg("px").arg("1").query(&mut c).unwrap();
    let v: String = redis::cmd("GET").arg("px").query(&mut c).unwrap();
    assert_eq!(v, "1");
    let n: i64 = redis::cmd("EXISTS")
        .arg("px")
        .arg("nope")
        .query(&mut c)
        .unwrap();
    assert_eq!(n, 1);
    // RESP3 replies survive the hop.
    let mut c3 = cluster.nodes[follower].conn_resp3();
    let missing: Value = redis::cmd("GET").arg("nope").query(&mut c3).unwrap();
    assert_eq!(missing, Value::Nil);
    // Each forwarded write is applied exactly once: DEL counts 1, then 0.
    let n: i64 = redis::cmd("DEL").arg("px").query(&mut c).unwrap();
    assert_eq!(n, 1);
    let n: i64 = redis::cmd("DEL").arg("px").query(&mut c).unwrap();
    assert_eq!(n, 0);
    // A pipeline through the proxy keeps its order.
    let mut pipe = redis::pipe();
    for i in 0..200 {
        pipe.cmd("SET").arg(format!("pp{i}")).arg(i);
        pipe.cmd("GET").arg(format!("pp{i}"));
    }
    let replies: Vec<Value> = pipe.query(&mut c).unwrap();
    for (i, pair) in replies.chunks(2).enumerate() {
        assert_eq!(pair[1], Value::BulkString(i.to_string().into_bytes()));
    }
    let mut lc = cluster.nodes[leader].conn();
    let n: i64 = redis::cmd("DBSIZE").query(&mut lc).unwrap();
    assert_eq!(n, 200);
}

#[test]
fn restarting_the_whole_cluster_keeps_all_data() {
    let mut cluster = Cluster::start(3);
    let leader = cluster.wait_for_leader(Duration::from_secs(30));
    {
        let mut c = cluster.nodes[leader].conn();
        let mut pipe = redis::pipe();
        for i in 0..500 {
            pipe.cmd("SET").arg(format!("r{i}")).arg(i).ignore();
        }
        let _: () = pipe.query(&mut c).unwrap();
    }
    for node in cluster.nodes.iter_mut() {
        node.kill9();
    }
    for node in cluster.nodes.iter_mut() {
        node.restart();
    }
    let leader = cluster.wait_for_leader(Duration::from_secs(30));
    let mut c = cluster.nodes[leader].conn();
    for i in 0..500 {
        let v: i64 = redis::cmd("GET")
            .arg(format!("r{i}"))
            .query(&mut c)
            .unwrap();
        assert_eq!(v, i);
    }
    let n: i64 = redis::cmd("DBSIZE").query(&mut c).unwrap();
    assert_eq!(n, 500);
}

#[test]
fn the_redis_crate_cluster_client_follows_moved() {
    let cluster = Cluster::start(3);
    let leader = cluster.wait_for_leader(Duration::from_secs(30));
    let follower = (leader + 1) % 3;
    let client = redis::cluster::ClusterClient::new(vec![cluster.nodes[follower].url()]).unwrap();
    let mut c = client.get_connection().unwrap();
    for i in 0..50 {
        let _: () = redis::cmd("SET")
            .arg(format!("{{tag}}{i}"))
            .arg(i)
            .query(&mut c)
            .unwrap();
        let _: () = redis::cmd("SET")
            .arg(format!("spread{i}"))
            .arg(i)
            .query(&mut c)
            .unwrap();
    }
    for i in 0..50 {
        let v: i64 = redis::cmd("GET")
            .arg(format!("spread{i}"))
            .query(&mut c)
            .unwrap();
        assert_eq!(v, i);
    }
}

#[test]
fn a_node_whose_data_directory_was_lost_cannot_rejoin_under_its_old_id() {
    let mut cluster = Cluster::start(3);
    common::set(
        &cluster,
        cluster.wait_for_leader(Duration::from_secs(30)),
        "k",
        "v",
    );
    // Every node records the data directory it first started with.
    cluster.wait_until("node 3's boot recorded", Duration::from_secs(30), || {
        redis::cmd("INFO")
            .arg("cluster")
            .query::<String>(&mut cluster.nodes[2].conn())
            .is_ok_and(|i| i.contains("cluster_boot_recorded:yes"))
    });
    // Node 3 loses its disk and comes back with an empty directory.
    assert!(cluster.nodes[2].terminate().success());
    std::fs::remove_dir_all(cluster.nodes[2].data_dir()).unwrap();
    cluster.nodes[2].respawn();
    let status = cluster.nodes[2].wait_exit(Duration::from_secs(30));
    assert!(!status.success());
    let log = cluster.nodes[2].log();
    assert!(
        log.contains("started before with another data directory"),
        "{log}"
    );
    // The others go on serving.
    let leader = cluster.wait_for_leader(Duration::from_secs(30));
    assert_eq!(common::get(&cluster, leader, "k").as_deref(), Some("v"));
}
