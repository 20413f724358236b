//! Dynamic membership with real processes: nodes join a running cluster
//! under client load and replicas spread to them; a decommissioned node
//! hands everything over and is removed; a node whose disk died is
//! replaced by a new one; a node the cluster removed is refused when it
//! comes back, and a replica moved away while its node was down cannot
//! disturb the group it left.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{cluster_client, Cluster};
use redis::Value;

/// Every node the cluster has had, with its state, as `node` sees it.
fn members(cluster: &Cluster, node: usize) -> BTreeMap<u64, String> {
    let Ok(Value::Array(nodes)) = redis::cmd("CLUSTER")
        .arg("MEMBERS")
        .query::<Value>(&mut cluster.nodes[node].conn())
    else {
        return BTreeMap::new();
    };
    nodes
        .iter()
        .filter_map(|n| {
            let Value::Array(fields) = n else { return None };
            let field = |name: &str| {
                fields
                    .chunks(2)
                    .find(|kv| matches!(&kv[0], Value::BulkString(k) if k == name.as_bytes()))
                    .map(|kv| kv[1].clone())
            };
            let id = match field("id")? {
                Value::Int(i) => u64::try_from(i).ok()?,
                _ => return None,
            };
            let state = match field("state")? {
                Value::BulkString(s) => String::from_utf8(s).ok()?,
                _ => return None,
            };
            Some((id, state))
        })
        .collect()
}

/// The node ids of each shard (leader first) in `CLUSTER SHARDS` as
/// `node` answers it.
fn shards(cluster: &Cluster, node: usize) -> Vec<Vec<u64>> {
    let Ok(Value::Array(shards)) = redis::cmd("CLUSTER")
        .arg("SHARDS")
        .query::<Value>(&mut cluster.nodes[node].conn())
    else {
        return Vec::new();
    };
    let text = |v: &Value| match v {
        Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        Value::SimpleString(s) => s.clone(),
        _ => String::new(),
    };
    shards
        .iter()
        .filter_map(|s| {
            let Value::Array(fields) = s else { return None };
            let nodes = fields
                .chunks(2)
                .find(|kv| text(&kv[0]) == "nodes")
                .map(|kv| kv[1].clone())?;
            let Value::Array(nodes) = nodes else {
                return None;
            };
            let ids = nodes
                .iter()
                .filter_map(|n| {
                    let Value::Array(f) = n else { return None };
                    let id = f.chunks(2).find(|kv| text(&kv[0]) == "id")?;
                    u64::from_str_radix(&text(&id[1]), 16).ok()
                })
                .collect();
            Some(ids)
        })
        .collect()
}

/// Group `group`'s voters as node `node`'s replica knows them (`INFO
/// raft`; removed nodes included, unlike `CLUSTER SHARDS`).
fn group_voters(cluster: &Cluster, node: usize, group: u32) -> String {
    let info: String = redis::cmd("INFO")
        .arg("raft")
        .query(&mut cluster.nodes[node].conn())
        .unwrap_or_default();
    let prefix = format!("raft_group_{group}_voters:");
    info.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .unwrap_or_default()
        .to_string()
}

/// How many shards list each node.
fn replicas_per_node(shards: &[Vec<u64>]) -> BTreeMap<u64, usize> {
    let mut counts = BTreeMap::new();
    for s in shards {
        for n in s {
            *counts.entry(*n).or_insert(0) += 1;
        }
    }
    counts
}

fn seeds(cluster: &Cluster) -> Vec<String> {
    cluster
        .nodes
        .iter()
        .filter(|n| n.is_running())
        .map(|n| n.url())
        .collect()
}

/// A client writing unique values (`w:{n}` = n) until stopped: what was
/// acknowledged, and every error a retrying cluster client gave up on.
struct Writer {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<u64>>>,
    errors: Arc<Mutex<Vec<String>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    fn start(seeds: Vec<String>) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let (s, a, e) = (stop.clone(), acked.clone(), errors.clone());
        let thread = std::thread::spawn(move || {
            let mut c = cluster_client(seeds);
            let mut n = 0u64;
            while !s.load(Ordering::Relaxed) {
                n += 1;
                match redis::cmd("SET")
                    .arg(format!("w:{n}"))
                    .arg(n)
                    .query::<()>(&mut c)
                {
                    Ok(()) => a.lock().unwrap().push(n),
                    Err(err) => e.lock().unwrap().push(err.to_string()),
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        Writer {
            stop,
            acked,
            errors,
            thread: Some(thread),
        }
    }

    /// Stops the writer; fails on any error it saw, and reads back every
    /// value it had acknowledged (through any node).
    fn stop_and_check(mut self, cluster: &Cluster) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        let errors = self.errors.lock().unwrap().clone();
        assert!(errors.is_empty(), "the writer saw errors: {errors:?}");
        let acked = self.acked.lock().unwrap().clone();
        assert!(acked.len() > 50, "the writer barely wrote: {}", acked.len());
        let mut c = cluster_client(seeds(cluster));
        for n in acked {
            let v: Option<u64> = redis::cmd("GET")
                .arg(format!("w:{n}"))
                .query(&mut c)
                .unwrap();
            assert_eq!(v, Some(n), "acknowledged write w:{n} lost");
        }
    }
}

fn load_keys(cluster: &Cluster, n: usize) {
    let mut c = cluster_client(seeds(cluster));
    for i in 0..n {
        redis::cmd("SET")
            .arg(format!("k:{i}"))
            .arg(i)
            .query::<()>(&mut c)
            .unwrap();
    }
}

/// Reads back every key written by [`load_keys`], retrying a read that
/// fails (an election after a kill) for up to 30 s.
fn check_keys(cluster: &Cluster, n: usize) {
    let mut c = cluster_client(seeds(cluster));
    for i in 0..n {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let v: Option<usize> = loop {
            match redis::cmd("GET").arg(format!("k:{i}")).query(&mut c) {
                Ok(v) => break v,
                Err(e) if std::time::Instant::now() < deadline => {
                    eprintln!("k:{i}: {e}; retrying");
                    std::thread::sleep(Duration::from_millis(200));
                    c = cluster_client(seeds(cluster));
                }
                Err(e) => panic!("k:{i}: {e}\n{}", cluster.logs()),
            }
        };
        assert_eq!(v, Some(i), "k:{i} lost");
    }
}

#[test]
fn nodes_join_under_load_and_replicas_spread_to_them() {
    let mut cluster = Cluster::start_with(3, &["--shards", "3"]);
    load_keys(&cluster, 1000);
    let writer = Writer::start(seeds(&cluster));
    let four = cluster.join(0, &[]);
    let five = cluster.join(1, &[]);
    let ids: BTreeSet<u64> = cluster.nodes.iter().map(|n| n.node_id).collect();
    assert_eq!(
        ids,
        BTreeSet::from([1, 2, 3, 4, 5]),
        "ids are allocated in order"
    );
    assert_eq!(
        (cluster.nodes[four].node_id, cluster.nodes[five].node_id),
        (4, 5)
    );
    // Nine replicas over five nodes: two each, one node with one; every
    // group keeps three.
    cluster.wait_until(
        "replicas spread over the five nodes",
        Duration::from_secs(90),
        || {
            let s = shards(&cluster, 4);
            let counts = replicas_per_node(&s);
            s.len() == 3
                && s.iter().all(|g| g.len() == 3)
                && counts.len() == 5
                && counts.values().max() <= Some(&2)
        },
    );
    // Every node answers with the same view, the new ones included.
    for i in 0..5 {
        let m = members(&cluster, i);
        assert_eq!(m.len(), 5, "node {i}: {m:?}");
        assert!(m.values().all(|s| s == "active"), "node {i}: {m:?}");
    }
    writer.stop_and_check(&cluster);
    check_keys(&cluster, 1000);
    // The joined nodes serve clients and their restart keeps their ids.
    cluster.nodes[four].kill9();
    cluster.nodes[four].restart();
    let name: String = redis::cmd("CLUSTER")
        .arg("MYID")
        .query(&mut cluster.nodes[four].conn())
        .unwrap();
    assert_eq!(u64::from_str_radix(&name, 16).unwrap(), 4);
    cluster.wait_cluster_ok(Duration::from_secs(30));
    check_keys(&cluster, 1000);
}

#[test]
fn a_decommissioned_node_hands_everything_over_and_is_removed() {
    // Four nodes, two groups of three: node 2 holds both and leads one.
    let cluster = Cluster::start_with(4, &["--shards", "2"]);
    load_keys(&cluster, 500);
    let before = replicas_per_node(&shards(&cluster, 0));
    assert_eq!(before.get(&2), Some(&2), "{before:?}");
    let writer = Writer::start(seeds(&cluster));
    let reply: String = redis::cmd("CLUSTER")
        .arg("DECOMMISSION")
        .arg(2)
        .query(&mut cluster.nodes[0].conn())
        .unwrap();
    assert_eq!(reply, "OK");
    cluster.wait_until("node 2 decommissioned", Duration::from_secs(90), || {
        members(&cluster, 0).get(&2).map(String::as_str) == Some("removed")
    });
    let after = shards(&cluster, 0);
    assert!(
        after.iter().all(|g| g.len() == 3 && !g.contains(&2)),
        "{after:?}"
    );
    writer.stop_and_check(&cluster);
    check_keys(&cluster, 500);
    // The removed node knows it: it serves no data itself, it redirects
    // (a client with an old slot map follows), and /health says why.
    cluster.wait_until(
        "node 2 knows it was removed",
        Duration::from_secs(10),
        || {
            common::http_get(cluster.nodes[1].http_port, "/health")
                .1
                .contains("removed from the cluster")
        },
    );
    for i in 0..50 {
        let reply = redis::cmd("GET")
            .arg(format!("k:{i}"))
            .query::<Option<String>>(&mut cluster.nodes[1].conn());
        let Err(e) = reply else {
            panic!("a removed node served k:{i}: {reply:?}");
        };
        assert!(
            e.redirect_node().is_some() || e.to_string().contains("CLUSTERDOWN"),
            "k:{i}: {e}"
        );
    }
}

#[test]
fn a_node_whose_disk_died_is_replaced_by_a_new_one() {
    let mut cluster = Cluster::start_with(3, &["--shards", "2"]);
    load_keys(&cluster, 500);
    cluster.nodes[2].kill9();
    std::fs::remove_dir_all(cluster.nodes[2].data_dir()).unwrap();
    // The same machine, an empty disk: it joins as a new node, and the
    // old id is removed (its address now belongs to the new one).
    let via = format!("127.0.0.1:{}", cluster.nodes[0].raft_port);
    cluster.nodes[2].initial_members = None;
    cluster.nodes[2].join = Some(via);
    cluster.nodes[2].restart();
    cluster.wait_until(
        "node 4 replaces node 3 everywhere",
        Duration::from_secs(90),
        || {
            let m = members(&cluster, 0);
            // Every replica has the new configurations (a leader's view
            // alone may be a change not committed yet).
            m.get(&3).map(String::as_str) == Some("removed")
                && m.get(&4).map(String::as_str) == Some("active")
                // Removed voters included: CLUSTER SHARDS hides them.
                && (0..3).all(|i| (0..=2).all(|g| group_voters(&cluster, i, g) == "1,2,4"))
        },
    );
    check_keys(&cluster, 500);
    // Full replication again: any one node may go.
    cluster.nodes[0].kill9();
    check_keys(&cluster, 500);
    // Forgetting the dead node is fine; forgetting a second one would
    // leave the groups without a majority for good, and is refused.
    let forget = |id: u64| {
        redis::cmd("CLUSTER")
            .arg("FORGET")
            .arg(id)
            .query::<String>(&mut cluster.nodes[1].conn())
    };
    assert_eq!(forget(1).unwrap(), "OK");
    let refused = forget(2).unwrap_err().to_string();
    assert!(refused.contains("without a majority"), "{refused}");
    check_keys(&cluster, 500);
}

#[test]
fn a_removed_node_is_refused_and_a_moved_replica_cannot_raise_the_term() {
    // Four nodes, one group of three (nodes 1-3); node 4 holds only the
    // system group. A node unreachable for 2 s is treated as dead.
    let mut cluster = Cluster::start_with(
        4,
        &[
            "--shards",
            "1",
            "--replicas",
            "3",
            "--dead-node-timeout",
            "2",
        ],
    );
    load_keys(&cluster, 200);
    // Node 3 goes down with its data; its replica is made again on node 4.
    cluster.nodes[2].kill9();
    cluster.wait_until(
        "group 1 re-replicated on node 4",
        Duration::from_secs(90),
        || {
            let s = shards(&cluster, 0);
            s.len() == 1
                && s[0].iter().copied().collect::<BTreeSet<_>>() == BTreeSet::from([1, 2, 4])
        },
    );
    let term = |c: &Cluster, i: usize| -> u64 {
        let info: String = redis::cmd("INFO")
            .arg("raft")
            .query(&mut c.nodes[i].conn())
            .unwrap();
        info.lines()
            .find_map(|l| l.strip_prefix("raft_group_1:"))
            .and_then(|l| l.split(',').find_map(|f| f.strip_prefix("term=")))
            .and_then(|t| t.parse().ok())
            .unwrap()
    };
    let before: Vec<u64> = [0, 1, 3].iter().map(|i| term(&cluster, *i)).collect();
    // Node 3 comes back with its old replica of group 1, which no leader
    // contacts any more: it campaigns, and every member refuses it.
    cluster.nodes[2].restart();
    std::thread::sleep(Duration::from_secs(4));
    let after: Vec<u64> = [0, 1, 3].iter().map(|i| term(&cluster, *i)).collect();
    assert_eq!(
        before, after,
        "a replica no longer in the group raised the term"
    );
    // The rebalancer then deletes the leftover replica.
    cluster.wait_until(
        "the leftover replica dropped",
        Duration::from_secs(30),
        || {
            let info: String = redis::cmd("INFO")
                .arg("raft")
                .query(&mut cluster.nodes[2].conn())
                .unwrap_or_default();
            info.contains("raft_groups:1\r\n")
        },
    );
    check_keys(&cluster, 200);
    // Removed for good: it may not come back, even with its data.
    cluster.nodes[2].kill9();
    let reply: String = redis::cmd("CLUSTER")
        .arg("FORGET")
        .arg(3)
        .query(&mut cluster.nodes[0].conn())
        .unwrap();
    assert_eq!(reply, "OK");
    cluster.wait_until("node 3 removed", Duration::from_secs(30), || {
        members(&cluster, 1).get(&3).map(String::as_str) == Some("removed")
    });
    cluster.nodes[2].respawn();
    let status = cluster.nodes[2].wait_exit(Duration::from_secs(30));
    assert!(!status.success());
    let log = cluster.nodes[2].log();
    assert!(
        log.contains("was removed from the cluster"),
        "no clear refusal:\n{log}"
    );
    check_keys(&cluster, 200);
}
