//! Resharding on real processes: slots moved between data groups with
//! `seshat admin reshard` and `CLUSTER MIGRATESLOTS` while cluster
//! clients read and write; every acknowledged write must be readable with
//! its last value afterwards, and kills during a migration must leave it
//! completed (or aborted), never a slot frozen or owned twice.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod common;

use std::collections::HashMap;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::Cluster;
use redis::Value;
use seshat_common::crc16_slot;

fn cluster_client(cluster: &Cluster) -> redis::cluster::ClusterConnection {
    let seeds: Vec<String> = cluster
        .nodes
        .iter()
        .filter(|n| n.is_running())
        .map(|n| format!("redis://127.0.0.1:{}", n.port))
        .collect();
    common::cluster_client(seeds)
}

/// The owner (shard number, from 1) of every slot, as `CLUSTER SHARDS` on
/// node `i` lists them.
fn owners(cluster: &Cluster, i: usize) -> Vec<u32> {
    let mut c = cluster.nodes[i].conn();
    let Value::Array(shards) = redis::cmd("CLUSTER").arg("SHARDS").query(&mut c).unwrap() else {
        panic!("CLUSTER SHARDS is not an array");
    };
    let mut owners = vec![0u32; 16384];
    for (g, shard) in (1u32..).zip(shards) {
        let fields: Vec<Value> = match shard {
            Value::Array(f) => f,
            Value::Map(pairs) => pairs.into_iter().flat_map(|(k, v)| [k, v]).collect(),
            other => panic!("shard entry {other:?}"),
        };
        for kv in fields.chunks(2) {
            let is_slots = matches!(&kv[0], Value::BulkString(k) if k == b"slots");
            if !is_slots {
                continue;
            }
            let Value::Array(bounds) = &kv[1] else {
                panic!("slots")
            };
            for pair in bounds.chunks(2) {
                let (Value::Int(a), Value::Int(b)) = (&pair[0], &pair[1]) else {
                    panic!("bounds")
                };
                for s in *a..=*b {
                    owners[s as usize] = g;
                }
            }
        }
    }
    owners
}

/// Runs `seshat admin ARGS` against node 0 and returns its output.
fn admin(cluster: &Cluster, args: &[&str]) -> String {
    let port = cluster.nodes[0].port.to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_seshat"))
        .arg("admin")
        .args(args)
        .args(["--port", &port])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "seshat admin {args:?} failed:\n{text}\n{}",
        cluster.logs()
    );
    text
}

/// Keys of several types, some with a TTL; returns what each holds.
fn load(c: &mut redis::cluster::ClusterConnection, n: usize) -> HashMap<String, String> {
    let mut expect = HashMap::new();
    for i in 0..n {
        let key = format!("k{i}");
        match i % 4 {
            0 => {
                let _: () = redis::cmd("SET").arg(&key).arg(i).query(c).unwrap();
                expect.insert(key, format!("string {i}"));
            }
            1 => {
                let _: () = redis::cmd("HSET")
                    .arg(&key)
                    .arg("a")
                    .arg(i)
                    .arg("b")
                    .arg(i + 1)
                    .query(c)
                    .unwrap();
                expect.insert(key, format!("hash {i}"));
            }
            2 => {
                let _: () = redis::cmd("ZADD")
                    .arg(&key)
                    .arg(1)
                    .arg("x")
                    .arg(2)
                    .arg(format!("y{i}"))
                    .query(c)
                    .unwrap();
                expect.insert(key, format!("zset {i}"));
            }
            _ => {
                let _: () = redis::cmd("SET")
                    .arg(&key)
                    .arg(i)
                    .arg("EX")
                    .arg(3600)
                    .query(c)
                    .unwrap();
                expect.insert(key, format!("ttl {i}"));
            }
        }
    }
    expect
}

/// Checks every key `load` wrote.
fn check(c: &mut redis::cluster::ClusterConnection, expect: &HashMap<String, String>) {
    for (key, what) in expect {
        let (kind, i) = what.split_once(' ').unwrap();
        let i: i64 = i.parse().unwrap();
        match kind {
            "string" => {
                let v: Option<i64> = redis::cmd("GET").arg(key).query(c).unwrap();
                assert_eq!(v, Some(i), "{key}");
            }
            "hash" => {
                let v: Vec<i64> = redis::cmd("HMGET")
                    .arg(key)
                    .arg("a")
                    .arg("b")
                    .query(c)
                    .unwrap();
                assert_eq!(v, vec![i, i + 1], "{key}");
            }
            "zset" => {
                let v: Vec<String> = redis::cmd("ZRANGE")
                    .arg(key)
                    .arg(0)
                    .arg(-1)
                    .query(c)
                    .unwrap();
                assert_eq!(v, vec!["x".to_string(), format!("y{i}")], "{key}");
            }
            _ => {
                let v: Option<i64> = redis::cmd("GET").arg(key).query(c).unwrap();
                assert_eq!(v, Some(i), "{key}");
                let ttl: i64 = redis::cmd("TTL").arg(key).query(c).unwrap();
                assert!((3000..=3600).contains(&ttl), "{key} ttl {ttl}");
            }
        }
    }
}

/// DBSIZE summed over the node that serves each shard, through the
/// cluster client's routing: one key-count per shard leader.
fn total_keys(cluster: &Cluster) -> i64 {
    cluster
        .nodes
        .iter()
        .filter(|n| n.is_running())
        .map(|n| redis::cmd("DBSIZE").query::<i64>(&mut n.conn()).unwrap())
        .sum()
}

#[test]
fn slots_move_to_another_shard_and_back_with_every_key() {
    let cluster = Cluster::start_with(3, &["--shards", "3"]);
    let mut c = cluster_client(&cluster);
    let expect = load(&mut c, 2000);
    let before = owners(&cluster, 0);
    assert!(
        before[..3000].iter().all(|o| *o == 1),
        "slots 0..3000 start in shard 1"
    );
    let moved_keys = expect
        .keys()
        .filter(|k| crc16_slot(k.as_bytes()) < 3000)
        .count();
    assert!(
        moved_keys > 200,
        "only {moved_keys} keys in the moved slots"
    );

    // A WATCH taken on shard 1 before the move: the EXEC after it must
    // not run (its modification index is of shard 1's log).
    let watched = expect
        .iter()
        .find(|(k, v)| crc16_slot(k.as_bytes()) < 3000 && v.starts_with("string"))
        .map(|(k, _)| k.clone())
        .unwrap();
    let mut watcher = cluster
        .nodes
        .iter()
        .map(|n| common::Raw::connect(n.port))
        .find_map(|mut r| {
            (r.call(&["WATCH", &watched]) == seshat_protocol_resp::Frame::ok()).then_some(r)
        })
        .expect("some node serves WATCH on shard 1");
    let out = admin(
        &cluster,
        &[
            "reshard",
            "--slots",
            "0-2999",
            "--to-shard",
            "2",
            "--batch-slots",
            "500",
        ],
    );
    assert!(out.contains("completed"), "{out}");
    for i in 0..3 {
        cluster.wait_until(
            "every node routes the new map",
            Duration::from_secs(10),
            || {
                let o = owners(&cluster, i);
                o[..3000].iter().all(|g| *g == 2) && o[3000..5461].iter().all(|g| *g == 1)
            },
        );
    }
    check(&mut c, &expect);
    assert_eq!(total_keys(&cluster), 2000, "{}", cluster.logs());
    assert_eq!(watcher.call(&["MULTI"]), seshat_protocol_resp::Frame::ok());
    watcher.call(&["SET", &watched, "from-a-stale-watch"]);
    match watcher.call(&["EXEC"]) {
        seshat_protocol_resp::Frame::Null | seshat_protocol_resp::Frame::NullArray => {}
        seshat_protocol_resp::Frame::Error(e) if e.starts_with(b"MOVED") => {}
        other => panic!("EXEC after the watched key moved: {other:?}"),
    }
    let now: Option<String> = redis::cmd("GET").arg(&watched).query(&mut c).unwrap();
    assert_ne!(now.as_deref(), Some("from-a-stale-watch"));

    // A plain client asking shard 1's leader for a moved key is sent to
    // shard 2's leader.
    let key = expect
        .iter()
        .find(|(k, v)| crc16_slot(k.as_bytes()) < 3000 && v.starts_with("string"))
        .map(|(k, _)| k)
        .unwrap();
    let slot = crc16_slot(key.as_bytes());
    let mut redirects = 0;
    for n in &cluster.nodes {
        let reply = common::Raw::connect(n.port).call(&["GET", key]);
        if let seshat_protocol_resp::Frame::Error(e) = reply {
            let text = String::from_utf8_lossy(&e).into_owned();
            assert!(text.starts_with(&format!("MOVED {slot} ")), "{text}");
            redirects += 1;
        }
    }
    assert_eq!(redirects, 2, "exactly one node serves slot {slot}");

    // And back, with the status command showing the finished migrations.
    admin(
        &cluster,
        &["reshard", "--slots", "0-2999", "--to-shard", "1"],
    );
    cluster.wait_until("slots back in shard 1", Duration::from_secs(10), || {
        owners(&cluster, 1)[..5461].iter().all(|g| *g == 1)
    });
    check(&mut c, &expect);
    assert_eq!(total_keys(&cluster), 2000);
    let status: Value = redis::cmd("CLUSTER")
        .arg("GETSLOTMIGRATIONS")
        .query(&mut cluster.nodes[2].conn())
        .unwrap();
    assert!(format!("{status:?}").contains("completed"), "{status:?}");
    let info: String = redis::cmd("INFO")
        .arg("cluster")
        .query(&mut cluster.nodes[0].conn())
        .unwrap();
    assert!(info.contains("migrations_in_progress:0"), "{info}");
}

#[test]
fn migrate_slots_refuses_what_it_cannot_do() {
    let cluster = Cluster::start_with(3, &["--shards", "3"]);
    let mut c = cluster.nodes[0].conn();
    let mut err = |args: &[&str]| -> String {
        let mut cmd = redis::cmd("CLUSTER");
        for a in args {
            cmd.arg(*a);
        }
        match cmd.query::<Value>(&mut c) {
            Err(e) => e.to_string(),
            Ok(v) => panic!("{args:?} accepted: {v:?}"),
        }
    };
    assert!(
        err(&["MIGRATESLOTS", "SLOTSRANGE", "0", "10", "SHARD", "1"]).contains("already belong")
    );
    assert!(
        err(&["MIGRATESLOTS", "SLOTSRANGE", "5000", "6000", "SHARD", "3"])
            .contains("more than one shard")
    );
    assert!(err(&["MIGRATESLOTS", "SLOTSRANGE", "0", "10", "SHARD", "9"]).contains("no shard 9"));
    assert!(err(&["MIGRATESLOTS", "SLOTSRANGE", "10", "0", "SHARD", "2"]).contains("greater"));
    assert!(
        err(&["MIGRATESLOTS", "SLOTSRANGE", "0", "5000", "SHARD", "2"])
            .to_lowercase()
            .contains("slots")
    );
}

/// A writer that keeps incrementing its own counters through a cluster
/// client; every acknowledged value is remembered.
struct Writer {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<HashMap<String, i64>>>,
    errors: Arc<Mutex<Vec<String>>>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    fn start(cluster: &Cluster, keys: usize) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(HashMap::new()));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let mut c = cluster_client(cluster);
        let (s, a, e) = (stop.clone(), acked.clone(), errors.clone());
        let handle = std::thread::spawn(move || {
            let mut round = 0i64;
            while !s.load(Ordering::Relaxed) {
                round += 1;
                for k in 0..keys {
                    let key = format!("w{k}");
                    match redis::cmd("SET").arg(&key).arg(round).query::<()>(&mut c) {
                        Ok(()) => {
                            a.lock().unwrap().insert(key, round);
                        }
                        Err(err) => e.lock().unwrap().push(format!("{key}: {err}")),
                    }
                }
            }
        });
        Writer {
            stop,
            acked,
            errors,
            handle: Some(handle),
        }
    }

    fn finish(mut self) -> (HashMap<String, i64>, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.take().unwrap().join().unwrap();
        let acked = self.acked.lock().unwrap().clone();
        let errors = self.errors.lock().unwrap().clone();
        (acked, errors)
    }
}

#[test]
fn writes_during_back_and_forth_migrations_are_all_kept() {
    let cluster = Cluster::start_with(3, &["--shards", "3"]);
    let mut c = cluster_client(&cluster);
    let expect = load(&mut c, 600);
    let writer = Writer::start(&cluster, 300);
    let started = Instant::now();
    for round in 0..2 {
        for to in ["3", "1"] {
            let args = [
                "reshard",
                "--slots",
                "0-5460",
                "--to-shard",
                to,
                "--batch-slots",
                "1024",
            ];
            admin(&cluster, &args);
        }
        eprintln!("round {round} done after {:?}", started.elapsed());
    }
    let (acked, errors) = writer.finish();
    assert!(errors.is_empty(), "client errors: {errors:?}");
    assert_eq!(acked.len(), 300);
    for (key, value) in &acked {
        let v: Option<i64> = redis::cmd("GET").arg(key).query(&mut c).unwrap();
        assert_eq!(v, Some(*value), "{key}: last acknowledged value lost");
    }
    check(&mut c, &expect);
    assert_eq!(total_keys(&cluster), 900);
}

/// The index of the node that leads group `g`, as node `i` reports it.
fn leader_of_group(cluster: &Cluster, g: u32) -> Option<usize> {
    let n = cluster.nodes.iter().position(|n| n.is_running())?;
    let line = cluster.nodes[n].info_field(&format!("raft_group_{g}"))?;
    let leader: u64 = line
        .split(',')
        .find_map(|kv| kv.strip_prefix("leader="))?
        .parse()
        .ok()?;
    cluster.nodes.iter().position(|n| n.node_id == leader)
}

/// The state of migration `id` as a running node reports it.
fn migration_state(cluster: &Cluster, id: i64) -> Option<String> {
    let node = cluster.nodes.iter().find(|n| n.is_running())?;
    let v: Value = redis::cmd("CLUSTER")
        .arg("GETSLOTMIGRATIONS")
        .query(&mut node.conn())
        .ok()?;
    let Value::Array(entries) = v else {
        return None;
    };
    for e in entries {
        let fields: Vec<Value> = match e {
            Value::Array(f) => f,
            Value::Map(pairs) => pairs.into_iter().flat_map(|(k, v)| [k, v]).collect(),
            _ => continue,
        };
        let get = |name: &[u8]| {
            fields
                .chunks(2)
                .find(|kv| matches!(&kv[0], Value::BulkString(k) if k == name))
                .map(|kv| kv[1].clone())
        };
        if get(b"id") == Some(Value::Int(id)) {
            if let Some(Value::BulkString(s)) = get(b"state") {
                return Some(String::from_utf8_lossy(&s).into_owned());
            }
        }
    }
    None
}

#[test]
fn five_nodes_move_slots_between_groups_held_on_different_nodes() {
    // Five shards on three replicas each: shard 1 on nodes 1-3, shard 4
    // on nodes 4, 5 and 1. The coordinator reaches leaders on other
    // nodes over the Raft port.
    let cluster = Cluster::start_with(5, &["--shards", "5"]);
    let mut c = cluster_client(&cluster);
    let expect = load(&mut c, 1500);
    let first = owners(&cluster, 0);
    let (lo, hi) = (0usize, 3275usize);
    assert!(first[lo..=hi].iter().all(|g| *g == 1));
    // To shard 4, then from shard 4 to shard 3 (nodes 3, 4, 5).
    for to in [4u32, 3] {
        let out = admin(
            &cluster,
            &[
                "reshard",
                "--slots",
                &format!("{lo}-{hi}"),
                "--to-shard",
                &to.to_string(),
            ],
        );
        assert!(out.contains("completed"), "{out}");
        for i in 0..5 {
            cluster.wait_until(
                "every node routes the new map",
                Duration::from_secs(10),
                || owners(&cluster, i)[lo..=hi].iter().all(|g| *g == to),
            );
        }
        check(&mut c, &expect);
        cluster.wait_until("keys counted once", Duration::from_secs(10), || {
            total_keys(&cluster) == 1500
        });
    }
}

#[test]
fn redis_py_cluster_writes_through_a_third_of_the_slots_moving_and_back() {
    if !common::redis_py_available() {
        eprintln!("SKIPPED: redis-py is not installed");
        return;
    }
    let cluster = Cluster::start_with(3, &["--shards", "3"]);
    let stop = tempfile::tempdir().unwrap();
    let stop_file = stop.path().join("stop");
    // Unique increasing values per key; afterwards every acknowledged
    // value must read back. Errors are counted (redis-py retries MOVED,
    // ASK and TRYAGAIN itself: anything it gives up on is an error).
    let code = format!(
        r#"
import os, json
from redis.cluster import RedisCluster
from redis.exceptions import RedisError
rc = RedisCluster(host="127.0.0.1", port={port})
acked, errors, rnd = {{}}, [], 0
while not os.path.exists({stop:?}):
    rnd += 1
    for k in range(300):
        key = f"py{{k}}"
        try:
            rc.set(key, rnd)
            acked[key] = rnd
        except RedisError as e:
            errors.append(f"{{key}}: {{type(e).__name__}}: {{e}}")
lost = [k for k, v in acked.items() if rc.get(k) != str(v).encode()]
print(json.dumps({{"rounds": rnd, "acked": len(acked), "errors": errors[:5], "lost": lost[:5]}}))
assert not errors and not lost and len(acked) == 300
"#,
        port = cluster.nodes[0].port,
        stop = stop_file.display().to_string(),
    );
    let writer = Command::new("python3")
        .args(["-c", &code])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    admin(
        &cluster,
        &["reshard", "--slots", "0-5460", "--to-shard", "2"],
    );
    admin(
        &cluster,
        &["reshard", "--slots", "0-5460", "--to-shard", "1"],
    );
    std::fs::write(&stop_file, b"").unwrap();
    let out = writer.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The `last-step` of migration `id` as node `i`'s coordinator noted it.
fn last_step(conn: &mut common::Raw, id: i64) -> Option<String> {
    let seshat_protocol_resp::Frame::Array(entries) = conn.call(&["CLUSTER", "GETSLOTMIGRATIONS"])
    else {
        return None;
    };
    entries.into_iter().find_map(|e| {
        let seshat_protocol_resp::Frame::Array(fields) = e else {
            return None;
        };
        let get = |name: &[u8]| {
            fields
                .chunks(2)
                .find(|kv| matches!(&kv[0], seshat_protocol_resp::Frame::Bulk(k) if k.as_ref() == name))
                .map(|kv| kv[1].clone())
        };
        match (get(b"id"), get(b"last-step")) {
            (Some(seshat_protocol_resp::Frame::Integer(n)), Some(seshat_protocol_resp::Frame::Bulk(s)))
                if n == id =>
            {
                Some(String::from_utf8_lossy(&s).into_owned())
            }
            _ => None,
        }
    })
}

#[test]
fn a_kill_right_after_each_step_ends_every_migration_completed_or_aborted() {
    let mut cluster = Cluster::start_with(3, &["--shards", "3"]);
    let mut c = cluster_client(&cluster);
    let expect = load(&mut c, 6000);
    // Each round waits until the coordinator has taken `step`, then
    // kill -9s the leader of one role's group, restarts it and checks the
    // migration ended one way or the other with every key.
    let steps = [
        "ImportStart",
        "Freeze",
        "manifest",
        "chunk 0 (",
        "HandOff",
        "ImportCommit",
        "Flip",
        "Drop",
    ];
    let roles = ["system", "source", "target"];
    let mut at = (1u32, 2u32);
    let mut hit = 0;
    // Every (step, role) pair once.
    for round in 0..steps.len() * roles.len() {
        let (step, role) = (steps[round % steps.len()], roles[round / steps.len()]);
        let (source, target) = at;
        let system = leader_of_group(&cluster, 0).expect("a system leader");
        let group = match role {
            "system" => 0,
            "source" => source,
            _ => target,
        };
        let victim = leader_of_group(&cluster, group).expect("a leader");
        let mut watcher = common::Raw::connect(cluster.nodes[system].port);
        let id = match watcher.call(&[
            "CLUSTER",
            "MIGRATESLOTS",
            "SLOTSRANGE",
            "0",
            "2999",
            "SHARD",
            &target.to_string(),
        ]) {
            seshat_protocol_resp::Frame::Integer(id) => id,
            other => panic!("round {round}: {other:?}\n{}", cluster.logs()),
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut seen: Option<String> = None;
        while Instant::now() < deadline {
            match last_step(&mut watcher, id) {
                Some(now) if now.contains(step) => {
                    hit += 1;
                    seen = Some(now);
                    break;
                }
                Some(now) => seen = Some(now),
                // No longer in progress: it finished before the step was seen.
                None if seen.is_some() => break,
                None => {}
            }
        }
        cluster.nodes[victim].kill9();
        std::thread::sleep(Duration::from_millis(300));
        cluster.nodes[victim].respawn();
        cluster.nodes[victim].wait_ready();
        let mut state = None;
        cluster.wait_until(
            &format!("round {round}: migration {id} finished"),
            Duration::from_secs(60),
            || {
                state = migration_state(&cluster, id);
                matches!(state.as_deref(), Some("completed" | "aborted"))
            },
        );
        cluster.wait_cluster_ok(Duration::from_secs(30));
        let o = owners(&cluster, victim);
        let moved = o[..3000].iter().all(|g| *g == target);
        let stayed = o[..3000].iter().all(|g| *g == source);
        assert!(
            (state.as_deref() == Some("completed") && moved) || (state.as_deref() == Some("aborted") && stayed),
            "round {round}: {state:?} after killing the {role} leader at {seen:?}; moved {moved}, stayed {stayed}"
        );
        eprintln!("round {round}: killed the {role} leader after {seen:?}: {state:?}");
        if moved {
            at = (target, source);
        }
        let mut c = cluster_client(&cluster);
        check(&mut c, &expect);
        cluster.wait_until("keys counted once", Duration::from_secs(10), || {
            total_keys(&cluster) == 6000
        });
    }
    eprintln!(
        "{hit} of {} kills landed right after the step they waited for",
        steps.len() * roles.len()
    );
}

#[test]
fn a_proxying_node_serves_a_plain_client_every_slot_while_slots_move() {
    // `--follower-mode proxy` on a sharded cluster: a client that knows
    // nothing of clusters writes and reads keys of every shard through one
    // node, and keeps doing so while slots move.
    let cluster = Cluster::start_with(3, &["--shards", "3", "--follower-mode", "proxy"]);
    let mut plain = cluster.nodes[2].conn();
    for i in 0..300 {
        let _: () = redis::cmd("SET")
            .arg(format!("p{i}"))
            .arg(i)
            .query(&mut plain)
            .unwrap_or_else(|e| panic!("SET p{i}: {e}\n{}", cluster.logs()));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let mut c = cluster.nodes[1].conn();
        std::thread::spawn(move || {
            let mut round = 0i64;
            let mut errors = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                round += 1;
                for i in 0..300 {
                    if let Err(e) = redis::cmd("SET")
                        .arg(format!("p{i}"))
                        .arg(round * 1000 + i)
                        .query::<()>(&mut c)
                    {
                        errors.push(format!("p{i}: {e}"));
                    }
                }
            }
            (round, errors)
        })
    };
    admin(
        &cluster,
        &["reshard", "--slots", "0-5460", "--to-shard", "3"],
    );
    stop.store(true, Ordering::Relaxed);
    let (round, errors) = writer.join().unwrap();
    assert!(
        errors.is_empty(),
        "plain client errors through the proxy: {errors:?}"
    );
    for i in 0..300 {
        let v: i64 = redis::cmd("GET")
            .arg(format!("p{i}"))
            .query(&mut plain)
            .unwrap_or_else(|e| panic!("GET p{i}: {e}"));
        assert_eq!(v, round * 1000 + i, "p{i}");
    }
}
