//! Sharded clusters: several data groups per node, each serving a range of
//! the 16384 slots, driven by real cluster clients (the `redis` crate's
//! `ClusterClient`, `redis-cli -c` and `--cluster check`, redis-py's
//! `RedisCluster`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod common;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{cluster_client, Cluster, Server};
use redis::{RedisError, Value};

/// Waits until `CLUSTER INFO` on every running node says every slot is
/// served (every group has a leader).
fn wait_all_slots_ok(cluster: &Cluster) {
    cluster.wait_cluster_ok(Duration::from_secs(60));
}

/// Waits until every group's leader is a different node (3 nodes, 3
/// groups): leader balancing hands each group to its preferred leader.
fn wait_leaders_spread(cluster: &Cluster) {
    cluster.wait_until("leaders spread", Duration::from_secs(60), || {
        let masters: BTreeSet<i64> = slot_ranges(cluster, 0).iter().map(|r| r.2).collect();
        masters.len() == cluster.nodes.len()
    });
}

/// The slot ranges `CLUSTER SLOTS` reports on node `i`, with each range's
/// master port.
fn slot_ranges(cluster: &Cluster, i: usize) -> Vec<(i64, i64, i64)> {
    let mut c = cluster.nodes[i].conn();
    let Value::Array(ranges) = redis::cmd("CLUSTER").arg("SLOTS").query(&mut c).unwrap() else {
        panic!("CLUSTER SLOTS is not an array");
    };
    let mut out: Vec<(i64, i64, i64)> = ranges
        .into_iter()
        .map(|r| {
            let Value::Array(r) = r else { panic!("range") };
            let int = |v: &Value| match v {
                Value::Int(n) => *n,
                other => panic!("not an integer: {other:?}"),
            };
            let Value::Array(master) = &r[2] else {
                panic!("master")
            };
            (int(&r[0]), int(&r[1]), int(&master[1]))
        })
        .collect();
    out.sort_unstable();
    out
}

#[test]
fn three_nodes_three_shards_serve_every_slot_through_a_cluster_client() {
    let cluster = Cluster::start_with(3, &["--shards", "3"]);
    wait_all_slots_ok(&cluster);
    wait_leaders_spread(&cluster);
    let ranges = slot_ranges(&cluster, 0);
    assert_eq!(
        ranges.iter().map(|r| (r.0, r.1)).collect::<Vec<_>>(),
        [(0, 5460), (5461, 10921), (10922, 16383)],
        "{ranges:?}"
    );
    // /metrics: per group, exactly one node says it leads; /health is
    // 200 everywhere.
    let mut leaders = std::collections::BTreeMap::<String, u32>::new();
    for n in &cluster.nodes {
        let (status, _) = common::http_get(n.http_port, "/health");
        assert_eq!(status, 200);
        let (_, body) = common::http_get(n.http_port, "/metrics");
        for line in body
            .lines()
            .filter(|l| l.starts_with("raft_group_is_leader{"))
        {
            let (labels, value) = line.rsplit_once(' ').unwrap();
            let group = labels.split("group=").nth(1).unwrap().to_string();
            *leaders.entry(group).or_default() += value.parse::<u32>().unwrap();
        }
    }
    // Three data groups and the system group.
    assert_eq!(leaders.len(), 4, "{leaders:?}");
    assert!(leaders.values().all(|n| *n == 1), "{leaders:?}");
    let client = redis::cluster::ClusterClient::new(vec![cluster.nodes[1].url()]).unwrap();
    let mut c = client.get_connection().unwrap();
    for i in 0..300 {
        let _: () = redis::cmd("SET")
            .arg(format!("key{i}"))
            .arg(i)
            .query(&mut c)
            .unwrap();
    }
    for i in 0..300 {
        let v: i64 = redis::cmd("GET")
            .arg(format!("key{i}"))
            .query(&mut c)
            .unwrap();
        assert_eq!(v, i);
    }
    // Keys of one hash tag share a slot: multi-key commands work on them.
    let _: () = redis::cmd("MSET")
        .arg("{t}a")
        .arg("1")
        .arg("{t}b")
        .arg("2")
        .query(&mut c)
        .unwrap();
    let both: Vec<i64> = redis::cmd("MGET")
        .arg("{t}a")
        .arg("{t}b")
        .query(&mut c)
        .unwrap();
    assert_eq!(both, [1, 2]);
    // Keys of different slots in one command: CROSSSLOT, from any node
    // (the check comes before routing).
    for node in &cluster.nodes {
        let mut plain = node.conn();
        let err: RedisError = redis::cmd("MSET")
            .arg("key1")
            .arg("x")
            .arg("key2")
            .arg("y")
            .query::<Value>(&mut plain)
            .unwrap_err();
        assert_eq!(err.code(), Some("CROSSSLOT"), "{err:?}");
        let err: RedisError = redis::cmd("ZUNIONSTORE")
            .arg("{t}dst")
            .arg(2)
            .arg("{t}a")
            .arg("other")
            .query::<Value>(&mut plain)
            .unwrap_err();
        assert_eq!(err.code(), Some("CROSSSLOT"), "{err:?}");
    }
    // Every node counts the keys of the groups it leads: together, all.
    let total: i64 = cluster
        .nodes
        .iter()
        .map(|n| redis::cmd("DBSIZE").query::<i64>(&mut n.conn()).unwrap())
        .sum();
    assert_eq!(total, 302);
    // A full SCAN on every node returns the keys of the groups it leads;
    // together, every key exactly once.
    let mut seen = Vec::new();
    for n in &cluster.nodes {
        let mut plain = n.conn();
        let mut cursor = 0u64;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("COUNT")
                .arg(7)
                .query(&mut plain)
                .unwrap();
            seen.extend(keys);
            if next == 0 {
                break;
            }
            cursor = next;
        }
    }
    let unique: BTreeSet<&String> = seen.iter().collect();
    assert_eq!(seen.len(), 302, "a key was returned twice or missed");
    assert_eq!(unique.len(), 302);
    // COUNTKEYSINSLOT / GETKEYSINSLOT: only the node leading the slot's
    // group reports its keys (the others answer 0, as in Redis Cluster).
    let mut plain = cluster.nodes[0].conn();
    let slot: i64 = redis::cmd("CLUSTER")
        .arg("KEYSLOT")
        .arg("{t}a")
        .query(&mut plain)
        .unwrap();
    let expected: Vec<&String> = seen
        .iter()
        .filter(|k| {
            redis::cmd("CLUSTER")
                .arg("KEYSLOT")
                .arg(k.as_str())
                .query::<i64>(&mut plain)
                .unwrap()
                == slot
        })
        .collect();
    let counts: Vec<i64> = cluster
        .nodes
        .iter()
        .map(|n| {
            redis::cmd("CLUSTER")
                .arg("COUNTKEYSINSLOT")
                .arg(slot)
                .query(&mut n.conn())
                .unwrap()
        })
        .collect();
    assert_eq!(
        counts.iter().sum::<i64>(),
        expected.len() as i64,
        "{counts:?}"
    );
    assert_eq!(counts.iter().filter(|c| **c > 0).count(), 1, "{counts:?}");
    let mut got: Vec<String> = cluster
        .nodes
        .iter()
        .flat_map(|n| {
            redis::cmd("CLUSTER")
                .arg("GETKEYSINSLOT")
                .arg(slot)
                .arg(1000)
                .query::<Vec<String>>(&mut n.conn())
                .unwrap()
        })
        .collect();
    got.sort();
    let mut want: Vec<String> = expected.into_iter().cloned().collect();
    want.sort();
    assert_eq!(got, want);
}

#[test]
fn a_transaction_must_stay_in_one_slot() {
    let cluster = Cluster::start_with(3, &["--shards", "2"]);
    wait_all_slots_ok(&cluster);
    let client = redis::cluster::ClusterClient::new(vec![cluster.nodes[0].url()]).unwrap();
    let mut c = client.get_connection().unwrap();
    let _: () = redis::cmd("SET").arg("{u}n").arg(1).query(&mut c).unwrap();
    // Find the node that serves {u}: the client's MOVED handling found it.
    let slot: i64 = redis::cmd("CLUSTER")
        .arg("KEYSLOT")
        .arg("{u}n")
        .query(&mut c)
        .unwrap();
    let port = slot_ranges(&cluster, 0)
        .into_iter()
        .find(|r| r.0 <= slot && slot <= r.1)
        .unwrap()
        .2;
    let node = cluster
        .nodes
        .iter()
        .find(|n| i64::from(n.port) == port)
        .unwrap();
    let mut t = node.conn();
    let (n, _): (i64, i64) = redis::pipe()
        .atomic()
        .cmd("INCR")
        .arg("{u}n")
        .cmd("INCR")
        .arg("{u}m")
        .query(&mut t)
        .unwrap();
    assert_eq!(n, 2);
    // Commands of different slots in one transaction: EXEC fails with
    // CROSSSLOT and nothing is applied.
    let _: () = redis::cmd("MULTI").query(&mut t).unwrap();
    let _: Value = redis::cmd("INCR").arg("{u}n").query(&mut t).unwrap();
    let _: Value = redis::cmd("INCR").arg("elsewhere").query(&mut t).unwrap();
    let err: RedisError = redis::cmd("EXEC").query::<Value>(&mut t).unwrap_err();
    assert_eq!(err.code(), Some("CROSSSLOT"), "{err:?}");
    let n: i64 = redis::cmd("GET").arg("{u}n").query(&mut t).unwrap();
    assert_eq!(n, 2);
}

#[test]
fn stopping_one_groups_leader_stalls_only_that_groups_slots() {
    let cluster = Cluster::start_with(3, &["--shards", "3"]);
    wait_all_slots_ok(&cluster);
    wait_leaders_spread(&cluster);
    // A node that leads some groups but not all (after an election the
    // leaders may all be on one node; then every other node leads none).
    let ranges = slot_ranges(&cluster, 0);
    let masters: BTreeSet<i64> = ranges.iter().map(|r| r.2).collect();
    let victim_port = *masters.iter().next().unwrap();
    let victim = cluster
        .nodes
        .iter()
        .position(|n| i64::from(n.port) == victim_port)
        .unwrap();
    // One key per group, found before anything stops.
    let keys: Vec<String> = ranges
        .iter()
        .map(|(first, _, _)| key_in_slot_range(&cluster, *first))
        .collect();
    let pid = cluster.nodes[victim].pid().unwrap();
    common::signal(pid, "STOP");
    let witness = (victim + 1) % cluster.nodes.len();
    // A write to a slot of a group led elsewhere succeeds at once (its
    // leader and a majority are up); the victim's groups elect new
    // leaders, which CLUSTER SLOTS then names and which take writes.
    for ((first, _, master), key) in ranges.iter().zip(&keys) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let port = if *master != victim_port {
            *master
        } else {
            loop {
                let now = slot_ranges(&cluster, witness)
                    .into_iter()
                    .find(|r| r.0 == *first)
                    .map(|r| r.2);
                match now {
                    Some(p) if p != victim_port => break p,
                    _ => assert!(
                        Instant::now() < deadline,
                        "group at {first} has no new leader:\n{}",
                        cluster.logs()
                    ),
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        };
        let node = cluster
            .nodes
            .iter()
            .find(|n| i64::from(n.port) == port)
            .unwrap();
        let mut d = node.conn();
        loop {
            match redis::cmd("SET").arg(key).arg("during").query::<()>(&mut d) {
                Ok(()) => break,
                // The new leader commits its first entry of the term.
                Err(e) => assert!(Instant::now() < deadline, "{key}: {e}"),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // Groups led elsewhere never lost their leader.
        if *master != victim_port {
            assert_eq!(port, *master);
        }
    }
    common::signal(pid, "CONT");
    wait_all_slots_ok(&cluster);
    // The returning node takes its preferred group back.
    wait_leaders_spread(&cluster);
}

/// A key whose slot is `first` or a little after (in the same group).
fn key_in_slot_range(cluster: &Cluster, first: i64) -> String {
    let mut c = cluster.nodes[0].conn();
    for i in 0.. {
        let key = format!("probe{i}");
        let slot: i64 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(&key)
            .query(&mut c)
            .unwrap();
        if (first..first + 5000).contains(&slot) {
            return key;
        }
    }
    unreachable!()
}

#[test]
fn redis_cli_cluster_check_finds_every_slot_covered() {
    if !common::have_tool("redis-cli") {
        eprintln!("skipped: redis-cli is not installed");
        return;
    }
    let cluster = Cluster::start_with(3, &["--shards", "3"]);
    wait_all_slots_ok(&cluster);
    wait_leaders_spread(&cluster);
    let port = cluster.nodes[0].port.to_string();
    let out = Command::new("redis-cli")
        .args(["--cluster", "check", &format!("127.0.0.1:{port}")])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("[OK] All 16384 slots covered"), "{text}");
    assert!(!text.contains("[ERR]"), "{text}");
    for i in 0..20 {
        let key = format!("cli{i}");
        let run = |args: &[&str]| {
            let out = Command::new("redis-cli")
                .args(["-c", "-p", &port])
                .args(args)
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).trim_end().to_string()
        };
        assert_eq!(run(&["SET", &key, "v"]), "OK");
        assert_eq!(run(&["GET", &key]), "v");
    }
}

#[test]
fn redis_py_cluster_client_writes_and_reads_every_group() {
    if !common::redis_py_available() {
        eprintln!("skipped: redis-py is not installed");
        return;
    }
    let cluster = Cluster::start_with(3, &["--shards", "3"]);
    wait_all_slots_ok(&cluster);
    // The client learns the masters once; let balancing settle first.
    wait_leaders_spread(&cluster);
    let code = format!(
        r#"
from redis.cluster import RedisCluster
rc = RedisCluster(host="127.0.0.1", port={port})
for i in range(200):
    assert rc.set(f"py{{i}}", i) is True
for i in range(200):
    assert rc.get(f"py{{i}}") == str(i).encode()
r = rc.dbsize(target_nodes=RedisCluster.PRIMARIES)
total = r if isinstance(r, int) else sum(r.values())
assert total == 200, r
print("ok")
"#,
        port = cluster.nodes[2].port
    );
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
}

#[test]
fn the_shard_count_cannot_change_by_restarting() {
    let mut node = Server::start_with(&["--shards", "2"]);
    let mut c = node.conn();
    let _: () = redis::cmd("SET").arg("a").arg("1").query(&mut c).unwrap();
    node.terminate();
    node.extra_args = vec!["--shards".into(), "3".into()];
    node.respawn();
    let status = node.wait_exit(Duration::from_secs(30));
    assert!(!status.success());
    assert!(
        node.log().contains("bootstrapped with --shards 2"),
        "{}",
        node.log()
    );
    // Without the flag it restarts with its two groups and its data.
    node.extra_args.clear();
    node.restart();
    let mut c = node.conn();
    let v: String = redis::cmd("GET").arg("a").query(&mut c).unwrap();
    assert_eq!(v, "1");
    // Two data groups and the system group.
    assert_eq!(node.info_field("raft_groups").as_deref(), Some("3"));
    // One node leads both groups: every keyless command sees every key.
    let _: () = redis::cmd("SET").arg("b").arg("2").query(&mut c).unwrap();
    let n: i64 = redis::cmd("DBSIZE").query(&mut c).unwrap();
    assert_eq!(n, 2);
    let mut keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut c).unwrap();
    keys.sort();
    assert_eq!(keys, ["a", "b"]);
    let slot: i64 = redis::cmd("CLUSTER")
        .arg("KEYSLOT")
        .arg("a")
        .query(&mut c)
        .unwrap();
    let n: i64 = redis::cmd("CLUSTER")
        .arg("COUNTKEYSINSLOT")
        .arg(slot)
        .query(&mut c)
        .unwrap();
    assert_eq!(n, 1);
    let _: () = redis::cmd("FLUSHALL").query(&mut c).unwrap();
    let n: i64 = redis::cmd("DBSIZE").query(&mut c).unwrap();
    assert_eq!(n, 0);
}

#[test]
fn acl_users_apply_on_every_node_of_a_sharded_cluster() {
    let cluster = Cluster::start_with(3, &["--shards", "3"]);
    wait_all_slots_ok(&cluster);
    // Users live in the group serving slot 0: its leader takes the write.
    let first_master = slot_ranges(&cluster, 0)[0].2;
    let leader = cluster
        .nodes
        .iter()
        .find(|n| i64::from(n.port) == first_master)
        .unwrap();
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg("alice")
        .arg("on")
        .arg(">pw")
        .arg("~a*")
        .arg("+get")
        .arg("+set")
        // What a cluster client needs to learn the slot map.
        .arg("+@connection")
        .arg("+cluster")
        .query(&mut leader.conn())
        .unwrap();
    // Another node redirects the write to that leader.
    if let Some(other) = cluster
        .nodes
        .iter()
        .find(|n| i64::from(n.port) != first_master)
    {
        let err: RedisError = redis::cmd("ACL")
            .arg("SETUSER")
            .arg("bob")
            .query::<Value>(&mut other.conn())
            .unwrap_err();
        assert_eq!(err.code(), Some("MOVED"), "{err:?}");
    }
    // Every node enforces alice's rules, whichever group a key is in.
    for n in &cluster.nodes {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut c = n.conn();
        loop {
            match redis::cmd("AUTH")
                .arg("alice")
                .arg("pw")
                .query::<()>(&mut c)
            {
                Ok(()) => break,
                Err(e) => assert!(Instant::now() < deadline, "{e}"),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let err: RedisError = redis::cmd("SET")
            .arg("b")
            .arg("x")
            .query::<Value>(&mut c)
            .unwrap_err();
        assert_eq!(err.code(), Some("NOPERM"), "{err:?}");
        let err: RedisError = redis::cmd("DEL")
            .arg("a1")
            .query::<Value>(&mut c)
            .unwrap_err();
        assert_eq!(err.code(), Some("NOPERM"), "{err:?}");
    }
    let client = redis::cluster::ClusterClient::builder(vec![cluster.nodes[0].url()])
        .username("alice".to_string())
        .password("pw".to_string())
        .build()
        .unwrap();
    let mut c = client.get_connection().unwrap();
    for i in 0..30 {
        let _: () = redis::cmd("SET")
            .arg(format!("a{i}"))
            .arg(i)
            .query(&mut c)
            .unwrap();
        let v: i64 = redis::cmd("GET")
            .arg(format!("a{i}"))
            .query(&mut c)
            .unwrap();
        assert_eq!(v, i);
    }
}

/// `SET key value`, retried for up to a minute while groups elect.
fn set_retrying(c: &mut redis::cluster::ClusterConnection, key: &str, value: i64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match redis::cmd("SET").arg(key).arg(value).query::<()>(c) {
            Ok(()) => return,
            Err(e) => assert!(Instant::now() < deadline, "{key}: {e}"),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn five_nodes_five_shards_survive_two_failures() {
    // Five replicas per group: any two nodes may fail.
    let mut cluster = Cluster::start_with(5, &["--shards", "5", "--replicas", "5"]);
    wait_all_slots_ok(&cluster);
    wait_leaders_spread(&cluster);
    let seeds: Vec<String> = cluster.nodes.iter().map(|n| n.url()).collect();
    let write_all = |seeds: Vec<String>, from: i64, to: i64| {
        let mut c = cluster_client(seeds);
        for i in from..to {
            set_retrying(&mut c, &format!("five{i}"), i);
        }
        c
    };
    write_all(seeds, 0, 200);
    // Two of five down: every group keeps a majority of its five replicas.
    cluster.nodes[0].kill9();
    cluster.nodes[3].kill9();
    // The groups they led elect new leaders among the survivors, which
    // every survivor's CLUSTER SLOTS names.
    wait_all_slots_ok(&cluster);
    let dead = [
        i64::from(cluster.nodes[0].port),
        i64::from(cluster.nodes[3].port),
    ];
    cluster.wait_until(
        "no killed node as a master",
        Duration::from_secs(60),
        || !slot_ranges(&cluster, 1).iter().any(|r| dead.contains(&r.2)),
    );
    let survivors: Vec<String> = [1, 2, 4].iter().map(|i| cluster.nodes[*i].url()).collect();
    let mut c = write_all(survivors, 200, 300);
    for i in 0..300 {
        let v: i64 = redis::cmd("GET")
            .arg(format!("five{i}"))
            .query(&mut c)
            .unwrap();
        assert_eq!(v, i);
    }
}

/// The groups whose `raft_group_<id>` line node `i`'s `INFO raft` has
/// (its replicas, the system group 0 included).
fn held_groups(cluster: &Cluster, i: usize) -> BTreeSet<u32> {
    let mut c = cluster.nodes[i].conn();
    let info: String = redis::cmd("INFO").arg("raft").query(&mut c).unwrap();
    info.lines()
        .filter_map(|l| l.strip_prefix("raft_group_"))
        .filter_map(|l| l.split(':').next()?.parse().ok())
        .collect()
}

#[test]
fn five_nodes_place_each_group_on_three_and_route_through_every_node() {
    let mut cluster = Cluster::start_with(5, &["--shards", "5"]);
    wait_all_slots_ok(&cluster);
    wait_leaders_spread(&cluster);
    // Replication factor 3: each node holds three data groups (and the
    // system group), each group is on three nodes.
    let mut holders = std::collections::BTreeMap::<u32, usize>::new();
    for i in 0..5 {
        let held = held_groups(&cluster, i);
        assert!(held.contains(&0), "node {i}: {held:?}");
        assert_eq!(held.len(), 4, "node {i}: {held:?}");
        for g in held {
            *holders.entry(g).or_default() += 1;
        }
    }
    assert_eq!(holders.remove(&0), Some(5));
    assert!(holders.values().all(|&n| n == 3), "{holders:?}");
    // What a node knows of the two groups it does not hold.
    let mut c = cluster.nodes[0].conn();
    let info: String = redis::cmd("INFO").arg("raft").query(&mut c).unwrap();
    let remote: Vec<&str> = info
        .lines()
        .filter(|l| l.starts_with("raft_remote_group_"))
        .collect();
    assert_eq!(remote.len(), 2, "{info}");
    // Every node names the same leader for every range, including the
    // groups it holds no replica of (learnt from its peers).
    cluster.wait_until(
        "the same slot map on every node",
        Duration::from_secs(30),
        || (1..5).all(|i| slot_ranges(&cluster, i) == slot_ranges(&cluster, 0)),
    );
    // A key of a group a node does not hold is redirected to its leader.
    let mut c = cluster.nodes[3].conn();
    let held = held_groups(&cluster, 3);
    let ranges = slot_ranges(&cluster, 3);
    let (first, last, master) = ranges
        .iter()
        .enumerate()
        .find(|(g, _)| !held.contains(&(*g as u32 + 1)))
        .map(|(_, r)| *r)
        .unwrap();
    let key = (0..)
        .map(|i| format!("probe{i}"))
        .find(|k| {
            let slot: i64 = redis::cmd("CLUSTER")
                .arg("KEYSLOT")
                .arg(k)
                .query(&mut c)
                .unwrap();
            (first..=last).contains(&slot)
        })
        .unwrap();
    let err: RedisError = redis::cmd("SET")
        .arg(&key)
        .arg("x")
        .query::<Value>(&mut c)
        .unwrap_err();
    assert_eq!(err.code(), Some("MOVED"), "{err:?}");
    assert!(
        err.to_string().ends_with(&format!(":{master}")),
        "{err} (master port {master})"
    );
    // A cluster client writes and reads keys of every group through any
    // node; after one node is killed every group keeps two of its three
    // replicas, and a client seeded with the survivors carries on (the
    // `redis` crate's sync client does not drop a dead seed by itself).
    let mut c = cluster_client(cluster.nodes.iter().map(|n| n.url()).collect());
    for i in 0..200 {
        set_retrying(&mut c, &format!("rf{i}"), i);
    }
    cluster.nodes[0].kill9();
    wait_all_slots_ok(&cluster);
    let dead = i64::from(cluster.nodes[0].port);
    cluster.wait_until(
        "no killed node as a master",
        Duration::from_secs(60),
        || !(1..5).any(|i| slot_ranges(&cluster, i).iter().any(|r| r.2 == dead)),
    );
    let mut c = cluster_client(cluster.nodes[1..].iter().map(|n| n.url()).collect());
    for i in 200..300 {
        set_retrying(&mut c, &format!("rf{i}"), i);
    }
    for i in 0..300 {
        let v: i64 = redis::cmd("GET")
            .arg(format!("rf{i}"))
            .query(&mut c)
            .unwrap();
        assert_eq!(v, i);
    }
    // DBSIZE counts the groups a node leads: the survivors' add up.
    let total: i64 = (1..5)
        .map(|i| {
            let mut c = cluster.nodes[i].conn();
            redis::cmd("DBSIZE").query::<i64>(&mut c).unwrap()
        })
        .sum();
    assert_eq!(total, 300);
}

#[test]
fn redis_py_cluster_client_keeps_working_through_a_kill_on_five_nodes() {
    if !common::redis_py_available() {
        eprintln!("skipped: redis-py is not installed");
        return;
    }
    let mut cluster = Cluster::start_with(5, &["--shards", "5"]);
    wait_all_slots_ok(&cluster);
    wait_leaders_spread(&cluster);
    // One client object across the kill: it writes, waits for the kill,
    // writes more (retrying what fails while the dead node's groups
    // elect), then reads everything back and counts keys over the
    // primaries.
    let code = format!(
        r#"
import sys, time
from redis.cluster import RedisCluster
rc = RedisCluster(host="127.0.0.1", port={port})
failures = 0
def retry(op):
    global failures
    deadline = time.time() + 60
    while True:
        try:
            return op()
        except Exception as e:
            failures += 1
            if time.time() > deadline:
                raise
            time.sleep(0.1)
for i in range(300):
    assert retry(lambda: rc.set(f"pk{{i}}", i)) is True
print("written", flush=True)
sys.stdin.readline()
for i in range(300, 600):
    assert retry(lambda: rc.set(f"pk{{i}}", i)) is True
for i in range(600):
    assert retry(lambda: rc.get(f"pk{{i}}")) == str(i).encode(), i
r = retry(lambda: rc.dbsize(target_nodes=RedisCluster.PRIMARIES))
total = r if isinstance(r, int) else sum(r.values())
assert total == 600, r
print("ok", failures, flush=True)
"#,
        port = cluster.nodes[4].port
    );
    let mut child = Command::new("python3")
        .args(["-c", &code])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
    assert_eq!(line.trim(), "written", "{}", cluster.logs());
    // Node 2 leads a group and holds two others.
    cluster.nodes[1].kill9();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), b"go\n").unwrap();
    let out = child.wait_with_output().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    assert!(
        out.status.success() && rest.starts_with("ok"),
        "{rest}\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        cluster.logs()
    );
    eprintln!("redis-py through the kill: {}", rest.trim());
}

/// `INFO cluster`'s `name` field on node `i`.
fn cluster_field(cluster: &Cluster, i: usize, name: &str) -> Option<String> {
    let mut c = cluster.nodes[i].conn();
    let info: String = redis::cmd("INFO").arg("cluster").query(&mut c).ok()?;
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .map(|v| v.trim().to_string())
}

#[test]
fn the_system_group_records_the_layout_and_a_node_started_otherwise_serves_no_data() {
    // Node 3 is started with another shard count than nodes 1 and 2: its
    // own layout would route slots to other groups than the cluster's.
    let cluster = Cluster::start_with_each(3, &[], |i| {
        let shards = if i == 2 { "2" } else { "3" };
        vec!["--shards".into(), shards.into()]
    });
    // Nodes 1 and 2 apply the system group's bootstrap record and find
    // their own layout in it.
    for i in 0..2 {
        cluster.wait_until("slot map version 1", Duration::from_secs(30), || {
            cluster_field(&cluster, i, "cluster_slot_map_version").as_deref() == Some("1")
        });
        assert_eq!(
            cluster_field(&cluster, i, "cluster_layout").as_deref(),
            Some("ok")
        );
    }
    // Node 3, once it has the records, refuses data commands and /health
    // says why.
    cluster.wait_until(
        "node 3 to see the conflict",
        Duration::from_secs(30),
        || cluster_field(&cluster, 2, "cluster_layout").as_deref() == Some("conflict"),
    );
    let err: RedisError = redis::cmd("GET")
        .arg("k")
        .query::<Value>(&mut cluster.nodes[2].conn())
        .unwrap_err();
    assert!(
        err.to_string().contains("bootstrapped as"),
        "{err}\n{}",
        cluster.logs()
    );
    let (status, body) = common::http_get(cluster.nodes[2].http_port, "/health");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("--shards"), "{body}");
    // The others serve the groups that formed: "bar" is in slot 5061,
    // group 1, which node 1 initialised and leads. (Group 3's preferred
    // leader is node 3, which holds no group 3: that group never forms —
    // the misconfigured node is what it looks like.)
    let _: () = redis::cmd("SET")
        .arg("bar")
        .arg("v")
        .query(&mut cluster.nodes[0].conn())
        .unwrap();
}
