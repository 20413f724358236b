//! The chaos suite: real `seshat` processes in their own network
//! namespaces, real faults (kill -9, SIGSTOP, partitions and packet loss
//! with iptables), concurrent recorded clients, and every history checked:
//! registers for linearizability, `INCR` counters for lost or doubled
//! increments, lists (`RPUSH`/`LPOP`) for lost, duplicated or reordered
//! values, sets (`SADD`/`SREM`) for lost or resurrected members, keys with
//! a TTL for keeping it and expired keys for staying expired; replicas must
//! converge to identical data.
//!
//! Needs root (network namespaces, iptables). Without root every test says
//! it was skipped. Scenarios run one at a time.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod chaos_support;

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chaos_support::netns::{self, ChaosCluster};
use chaos_support::workload::{read_back_expiring, Keys, Workload, SHORT_TTL_MS};
use seshat_chaos::{
    acknowledged_writes_visible, check, check_counters, check_lists, check_sets,
    expired_keys_stay_expired, save_jsonl, ttls_kept, FinalCollections, FinalReads, Op, OpKind,
    Outcome,
};

/// Scenarios share the machine's two cores: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());
const CLIENTS: usize = 6;
/// After healing, the cluster must serve again within this bound.
const RECOVERY_BOUND: Duration = Duration::from_secs(5);

/// Runs `faults` against a 3-node cluster under load, then checks the
/// invariants. `tag` keeps each scenario's namespaces and subnet distinct.
fn scenario(name: &str, tag: u8, faults: impl FnOnce(&mut ChaosCluster)) {
    scenario_with(name, tag, 3, &[], faults);
}

/// [`scenario`] with `n` nodes and extra node flags.
fn scenario_with(
    name: &str,
    tag: u8,
    n: usize,
    extra: &[&str],
    faults: impl FnOnce(&mut ChaosCluster),
) {
    scenario_full(name, tag, n, extra, 0, faults);
}

/// [`scenario_with`] plus `pipelined` pipelining clients.
fn scenario_full(
    name: &str,
    tag: u8,
    n: usize,
    extra: &[&str],
    pipelined: usize,
    faults: impl FnOnce(&mut ChaosCluster),
) {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(why) = netns::unsupported() {
        assert!(
            std::env::var("CI").is_err(),
            "chaos tests must run in CI: {why}"
        );
        eprintln!("SKIPPED chaos scenario {name}: {why}");
        return;
    }
    netns::clear_stale();
    // SESHAT_CHAOS_SHARDS=N runs every scenario on N data groups (by hand:
    // CI runs the sharded scenario below and the rest unsharded).
    let shards = std::env::var("SESHAT_CHAOS_SHARDS").ok();
    let mut extra: Vec<&str> = extra.to_vec();
    if let Some(n) = shards.as_deref() {
        if !extra.contains(&"--shards") {
            extra.extend(["--shards", n]);
        }
    }
    let mut cluster = ChaosCluster::start(n, tag, &extra);
    let load = Workload::start_mixed(cluster.addrs(), CLIENTS, pipelined);
    std::thread::sleep(Duration::from_secs(1));
    faults(&mut cluster);
    // Heal everything: network, paused and stopped processes.
    cluster.net.heal();
    for node in cluster.nodes.iter_mut() {
        node.pause(false);
    }
    let healed = Instant::now();
    let leader = cluster.wait_for_leader(Duration::from_secs(30));
    let recovery = healed.elapsed();
    std::thread::sleep(Duration::from_secs(1));
    let (recorder, keys) = (load.recorder.clone(), load.keys.clone());
    let history = load.stop();
    let leader =
        leader.unwrap_or_else(|| panic!("{name}: no leader after healing\n{}", cluster.logs()));
    let finals = read_finals(&cluster, leader, &keys);
    read_back_expiring(&cluster.addrs(), &keys, &recorder, &history);
    report_and_check(name, &recorder.history(), &finals, &cluster);
    eprintln!("{name}: served again {recovery:?} after healing");
    assert!(
        recovery < RECOVERY_BOUND + Duration::from_secs(10),
        "{name}: took {recovery:?} to recover"
    );
    if let Err(digests) = cluster.converged(Duration::from_secs(20)) {
        panic!(
            "{name}: replicas did not converge: {digests:?}\n{}",
            cluster.logs()
        );
    }
}

/// What is read once a run is over, through the leader.
struct Finals {
    /// Each register key's value.
    registers: FinalReads,
    /// Each counter key's value.
    counters: FinalReads,
    /// Each TTL register key's `PTTL`.
    pttls: BTreeMap<Vec<u8>, i64>,
    /// Each list key's elements (`LRANGE key 0 -1`).
    lists: FinalCollections,
    /// Each set key's members (`SMEMBERS key`).
    sets: FinalCollections,
}

fn read_finals(cluster: &ChaosCluster, mut leader: usize, keys: &Keys) -> Finals {
    let deadline = Instant::now() + Duration::from_secs(60);
    let target = &mut leader;
    Finals {
        registers: read_through_leader(cluster, target, deadline, &["GET"], &keys.registers()),
        counters: read_through_leader(cluster, target, deadline, &["GET"], &keys.counters()),
        pttls: read_through_leader(cluster, target, deadline, &["PTTL"], &keys.ttl_registers()),
        lists: read_through_leader(cluster, target, deadline, &LRANGE_ALL, &keys.lists()),
        sets: read_through_leader(cluster, target, deadline, &["SMEMBERS"], &keys.sets()),
    }
}

/// Reads a whole list: `LRANGE key 0 -1`.
const LRANGE_ALL: [&str; 3] = ["LRANGE", "0", "-1"];

/// Sends `command key args…` (`command` is the command's name, then the
/// arguments after the key) for each of `keys` through the leader
/// (`target`).
/// Leadership can move between finding the leader and reading (the node
/// then answers `MOVED` or `CLUSTERDOWN`, or the connection drops): a read
/// that fails is retried through whichever node leads then, until
/// `deadline`. Reads are linearizable wherever they are answered, so
/// retrying changes nothing the checkers rely on.
fn read_through_leader<T: redis::FromRedisValue>(
    cluster: &ChaosCluster,
    target: &mut usize,
    deadline: Instant,
    command: &[&str],
    keys: &[String],
) -> BTreeMap<Vec<u8>, T> {
    let [name, args @ ..] = command else {
        panic!("a command has a name");
    };
    let mut finals = BTreeMap::new();
    let mut last_error = String::new();
    'keys: for key in keys {
        loop {
            assert!(
                Instant::now() < deadline,
                "final reads never succeeded (last error: {last_error})\n{}",
                cluster.logs()
            );
            let addr = format!(
                "redis://{}:{}/",
                cluster.nodes[*target - 1].ip,
                netns::CLIENT_PORT
            );
            let read = redis::Client::open(addr)
                .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(5)))
                .and_then(|mut c| redis::cmd(name).arg(key).arg(args).query::<T>(&mut c));
            match read {
                Ok(v) => {
                    finals.insert(key.clone().into_bytes(), v);
                    continue 'keys;
                }
                Err(e) => {
                    last_error = e.to_string();
                    // On a sharded cluster the key's group may be led by
                    // another node than the first group's: follow MOVED.
                    let moved_to = e.redirect_node().and_then(|(addr, _)| {
                        let ip = addr.split(':').next()?;
                        cluster.nodes.iter().position(|n| n.ip == ip).map(|i| i + 1)
                    });
                    if let Some(node) = moved_to {
                        *target = node;
                        continue;
                    }
                    std::thread::sleep(Duration::from_millis(200));
                    *target = cluster
                        .wait_for_leader(Duration::from_secs(10))
                        .unwrap_or(*target);
                }
            }
        }
    }
    finals
}

/// Runs every checker on `history` and what was read after it; the
/// problems found, if any.
fn problems(history: &[Op], finals: &Finals) -> Option<String> {
    let registers = check(history);
    let found: Vec<String> = acknowledged_writes_visible(history, &finals.registers)
        .into_iter()
        .chain(
            check_counters(history, &finals.counters)
                .iter()
                .map(ToString::to_string),
        )
        .chain(
            check_lists(history, &finals.lists)
                .iter()
                .map(ToString::to_string),
        )
        .chain(
            check_sets(history, &finals.sets)
                .iter()
                .map(ToString::to_string),
        )
        .chain(
            expired_keys_stay_expired(history)
                .iter()
                .map(ToString::to_string),
        )
        .chain(
            ttls_kept(history, &finals.pttls)
                .iter()
                .map(ToString::to_string),
        )
        .collect();
    if registers.ok && found.is_empty() {
        return None;
    }
    Some(format!("{registers}\n{}", found.join("\n")))
}

fn report_and_check(name: &str, history: &[Op], finals: &Finals, cluster: &ChaosCluster) {
    let count = |f: fn(&Outcome) -> bool| history.iter().filter(|o| f(&o.outcome)).count();
    let ok = count(|o| matches!(o, Outcome::Ok(_)));
    let fail = count(|o| matches!(o, Outcome::Fail));
    let unknown = count(|o| matches!(o, Outcome::Unknown));
    let served = |o: &&Op| matches!(o.outcome, Outcome::Ok(_));
    let acked_incrs = history
        .iter()
        .filter(served)
        .filter(|o| o.kind == OpKind::Incr)
        .count();
    let short_lived: HashSet<&[u8]> = history
        .iter()
        .filter(|o| o.kind.ttl_ms() == Some(SHORT_TTL_MS))
        .map(|o| o.key.as_slice())
        .collect();
    let expiry_reads = history
        .iter()
        .filter(served)
        .filter(|o| o.kind == OpKind::Read && short_lived.contains(o.key.as_slice()))
        .count();
    eprintln!(
        "{name}: {} ops: {ok} ok, {fail} failed, {unknown} indeterminate; \
         {acked_incrs} INCRs acknowledged, counters {}; {}; {}; {} short-lived keys, \
         {expiry_reads} reads of them served; PTTLs {:?}",
        history.len(),
        describe_counters(&finals.counters),
        describe_collections(history, "list", is_list_op, &finals.lists),
        describe_collections(history, "set", is_set_op, &finals.sets),
        short_lived.len(),
        finals.pttls.values().collect::<Vec<_>>(),
    );
    assert!(ok > 0, "{name}: no operation succeeded\n{}", cluster.logs());
    if let Some(problems) = problems(history, finals) {
        let path = std::env::temp_dir().join(format!("seshat-chaos-{name}.jsonl"));
        let _ = save_jsonl(history, &path);
        panic!(
            "{name}: consistency violation (history saved to {})\n{problems}\n{}",
            path.display(),
            cluster.logs()
        );
    }
}

/// `c0=12 c1=9 c2=nil`.
fn describe_counters(counters: &FinalReads) -> String {
    counters
        .iter()
        .map(|(k, v)| {
            let v = v.as_deref().map_or("nil".into(), String::from_utf8_lossy);
            format!("{}={v}", String::from_utf8_lossy(k))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn is_list_op(kind: &OpKind) -> bool {
    matches!(kind, OpKind::RPush(_) | OpKind::LPop)
}

fn is_set_op(kind: &OpKind) -> bool {
    matches!(kind, OpKind::SAdd(_) | OpKind::SRem(_))
}

/// `412 list ops (380 acknowledged, 12 indeterminate), final lengths l0=3 l1=0`.
fn describe_collections(
    history: &[Op],
    what: &str,
    selected: fn(&OpKind) -> bool,
    finals: &FinalCollections,
) -> String {
    let ops: Vec<&Op> = history.iter().filter(|o| selected(&o.kind)).collect();
    let acked = ops
        .iter()
        .filter(|o| matches!(o.outcome, Outcome::Ok(_)))
        .count();
    let unknown = ops.iter().filter(|o| o.outcome == Outcome::Unknown).count();
    let sizes: Vec<String> = finals
        .iter()
        .map(|(k, v)| format!("{}={}", String::from_utf8_lossy(k), v.len()))
        .collect();
    format!(
        "{} {what} ops ({acked} acknowledged, {unknown} indeterminate), final sizes {}",
        ops.len(),
        sizes.join(" ")
    )
}

fn leader_of(cluster: &ChaosCluster) -> usize {
    cluster
        .wait_for_leader(Duration::from_secs(30))
        .expect("leader")
}

#[test]
fn chaos_01_kill_the_leader_repeatedly() {
    scenario("kill-leader", 1, |c| {
        for _ in 0..3 {
            let l = leader_of(c);
            c.node(l).kill9();
            std::thread::sleep(Duration::from_secs(2));
            c.node(l).restart();
            std::thread::sleep(Duration::from_secs(2));
        }
    });
}

#[test]
fn chaos_02_kill_a_follower() {
    scenario("kill-follower", 2, |c| {
        let l = leader_of(c);
        let f = l % 3 + 1;
        c.node(f).kill9();
        std::thread::sleep(Duration::from_secs(3));
        c.node(f).restart();
        std::thread::sleep(Duration::from_secs(2));
    });
}

#[test]
fn chaos_03_kill_every_node_and_restart_all() {
    scenario("kill-all", 3, |c| {
        for i in 1..=3 {
            c.node(i).kill9();
        }
        std::thread::sleep(Duration::from_secs(1));
        for i in 1..=3 {
            c.node(i).restart();
        }
        std::thread::sleep(Duration::from_secs(3));
    });
}

#[test]
fn chaos_04_isolate_the_leader_in_a_minority() {
    scenario("isolate-leader", 4, |c| {
        let l = leader_of(c);
        let others: Vec<usize> = (1..=3).filter(|i| *i != l).collect();
        c.net.cut(l, &others);
        std::thread::sleep(Duration::from_secs(5));
    });
}

#[test]
fn chaos_05_majority_minority_split_with_clients_on_both_sides() {
    scenario_with("split-5", 5, 5, &[], |c| {
        let l = leader_of(c);
        // The leader and one follower on the minority side.
        let buddy = l % 5 + 1;
        let minority = [l, buddy];
        let majority: Vec<usize> = (1..=5).filter(|i| !minority.contains(i)).collect();
        c.net.partition(&[&minority, &majority]);
        std::thread::sleep(Duration::from_secs(5));
    });
}

#[test]
fn chaos_06_bridge_partition() {
    // Node b sees both sides; a and c cannot see each other.
    scenario("bridge", 6, |c| {
        let l = leader_of(c);
        let a = l;
        let b = l % 3 + 1;
        let cc = b % 3 + 1;
        c.net.cut(a, &[cc]);
        std::thread::sleep(Duration::from_secs(5));
        let _ = b;
    });
}

#[test]
fn chaos_07_one_way_partition() {
    // The leader stops hearing from the followers, but they still hear it.
    scenario("one-way", 7, |c| {
        let l = leader_of(c);
        for o in (1..=3).filter(|i| *i != l) {
            c.net.drop_one_way(l, o);
        }
        std::thread::sleep(Duration::from_secs(5));
    });
}

#[test]
fn chaos_08_pause_the_leader_beyond_the_election_timeout() {
    scenario("pause-leader", 8, |c| {
        let l = leader_of(c);
        c.node(l).pause(true);
        std::thread::sleep(Duration::from_secs(3));
        c.node(l).pause(false);
        std::thread::sleep(Duration::from_secs(2));
    });
}

#[test]
fn chaos_09_flapping_partitions() {
    scenario("flapping", 9, |c| {
        for round in 0..4 {
            let isolated = round % 3 + 1;
            let others: Vec<usize> = (1..=3).filter(|i| *i != isolated).collect();
            c.net.cut(isolated, &others);
            std::thread::sleep(Duration::from_millis(1500));
            c.net.heal();
            std::thread::sleep(Duration::from_millis(1000));
        }
    });
}

#[test]
fn chaos_10_twenty_percent_packet_loss() {
    scenario("packet-loss", 10, |c| {
        c.net.loss(20);
        std::thread::sleep(Duration::from_secs(6));
    });
}

#[test]
fn chaos_11_follower_behind_the_compaction_point_catches_up_by_snapshot() {
    let extra = [
        "--snapshot-every-entries",
        "100",
        "--log-tail-entries",
        "20",
    ];
    scenario_with("behind-compaction", 11, 3, &extra, |c| {
        let l = leader_of(c);
        let f = l % 3 + 1;
        let others: Vec<usize> = (1..=3).filter(|i| *i != f).collect();
        c.net.cut(f, &others);
        // Under load the log passes several snapshot intervals meanwhile.
        std::thread::sleep(Duration::from_secs(6));
        c.net.heal();
        std::thread::sleep(Duration::from_secs(3));
        let installed = c
            .node(f)
            .info_field("raft_snapshot_index")
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        assert!(
            installed > 0,
            "the partitioned follower should have a snapshot\n{}",
            c.logs()
        );
    });
}

#[test]
fn chaos_12_rolling_restart() {
    scenario("rolling-restart", 12, |c| {
        for i in 1..=3 {
            c.node(i).kill9();
            std::thread::sleep(Duration::from_millis(500));
            c.node(i).restart();
            std::thread::sleep(Duration::from_secs(2));
        }
    });
}

#[test]
fn chaos_13_reads_right_after_an_election() {
    scenario("reads-after-election", 13, |c| {
        for _ in 0..3 {
            let l = leader_of(c);
            // SIGSTOP instead of kill: the old leader comes back still
            // believing it leads, and must not serve a stale read.
            c.node(l).pause(true);
            let _ = c.wait_for_leader(Duration::from_secs(10));
            c.node(l).pause(false);
            std::thread::sleep(Duration::from_millis(1500));
        }
    });
}

/// Three data groups on three nodes: leaders spread over the nodes, so a
/// kill or a partition takes some groups' leaders and not others'. The
/// same invariants hold for every key of every group, and every group's
/// replicas converge (per-group digests).
#[test]
fn chaos_15_sharded_kills_and_partitions() {
    scenario_with("sharded", 15, 3, &["--shards", "3"], |c| {
        // Let leader balancing spread the groups first.
        std::thread::sleep(Duration::from_secs(3));
        let l = leader_of(c);
        c.node(l).kill9();
        std::thread::sleep(Duration::from_secs(3));
        c.node(l).restart();
        std::thread::sleep(Duration::from_secs(3));
        let l = leader_of(c);
        let others: Vec<usize> = (1..=3).filter(|i| *i != l).collect();
        c.net.partition(&[&[l], &others]);
        std::thread::sleep(Duration::from_secs(4));
        c.net.heal();
        std::thread::sleep(Duration::from_secs(2));
        let f = l % 3 + 1;
        c.node(f).pause(true);
        std::thread::sleep(Duration::from_secs(3));
        c.node(f).pause(false);
    });
}

/// Five nodes, five data groups of three replicas each: a node holds
/// three groups and learns who leads the other two from its peers, so a
/// client's MOVED from any node must lead to a live leader. A kill, a
/// partition that leaves some groups' majorities on each side, and a
/// paused node; every group's replicas converge.
#[test]
fn chaos_16_five_nodes_three_replicas_per_group() {
    scenario_with("replicas-3", 16, 5, &["--shards", "5"], |c| {
        std::thread::sleep(Duration::from_secs(3));
        c.node(1).kill9();
        std::thread::sleep(Duration::from_secs(3));
        c.node(1).restart();
        std::thread::sleep(Duration::from_secs(3));
        // Groups {3,4,5} and {1,4,5} keep a majority on the small side,
        // the others on the large one.
        c.net.partition(&[&[4, 5], &[1, 2, 3]]);
        std::thread::sleep(Duration::from_secs(4));
        c.net.heal();
        std::thread::sleep(Duration::from_secs(2));
        c.node(3).pause(true);
        std::thread::sleep(Duration::from_secs(3));
        c.node(3).pause(false);
    });
}

/// The migration nemesis: a thread that keeps moving slot ranges between
/// shards (`CLUSTER MIGRATESLOTS` sent to whichever node answers), each
/// move waited for until it completes or aborts, while the faults happen.
struct Migrations {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    handle: Option<std::thread::JoinHandle<(u32, u32)>>,
}

impl Migrations {
    /// Moves `slots` (first, last) back and forth between shards `a` and
    /// `b` of the cluster at `addrs`.
    fn start(addrs: Vec<String>, slots: (u16, u16), a: u32, b: u32) -> Migrations {
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopping = stop.clone();
        let handle = std::thread::spawn(move || {
            let (mut completed, mut aborted) = (0u32, 0u32);
            let mut to = b;
            let mut turn = 0usize;
            let mut call = |args: &[String]| -> Option<redis::Value> {
                turn += 1;
                let addr = format!("redis://{}/", addrs[turn % addrs.len()]);
                let mut c = redis::Client::open(addr)
                    .ok()?
                    .get_connection_with_timeout(Duration::from_secs(2))
                    .ok()?;
                c.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
                let mut cmd = redis::cmd("CLUSTER");
                for a in args {
                    cmd.arg(a);
                }
                cmd.query::<redis::Value>(&mut c)
                    .map_err(|e| e.to_string())
                    .ok()
            };
            while !stopping.load(Ordering::Acquire) {
                let request: Vec<String> = [
                    "MIGRATESLOTS".to_string(),
                    "SLOTSRANGE".to_string(),
                    slots.0.to_string(),
                    slots.1.to_string(),
                    "SHARD".to_string(),
                    to.to_string(),
                ]
                .to_vec();
                let Some(redis::Value::Int(id)) = call(&request) else {
                    // Refused (the slots are already there: an earlier
                    // request went through) or unreachable: try the other
                    // way after a pause.
                    to = if to == a { b } else { a };
                    std::thread::sleep(Duration::from_millis(200));
                    continue;
                };
                // Wait for it to end, whatever the faults (the nemesis
                // stops only between migrations).
                let deadline = Instant::now() + Duration::from_secs(90);
                let outcome = loop {
                    std::thread::sleep(Duration::from_millis(50));
                    let status = call(&["GETSLOTMIGRATIONS".to_string()]);
                    match status.and_then(|v| migration_state(&v, id)).as_deref() {
                        Some("completed") => break Some(true),
                        Some("aborted") => break Some(false),
                        _ if Instant::now() > deadline => break None,
                        _ => {}
                    }
                };
                match outcome {
                    Some(true) => {
                        completed += 1;
                        to = if to == a { b } else { a };
                    }
                    Some(false) => aborted += 1,
                    None => panic!("migration {id} neither completed nor aborted within 90 s"),
                }
            }
            (completed, aborted)
        });
        Migrations {
            stop,
            handle: Some(handle),
        }
    }

    /// Stops after the migration in progress ends: (completed, aborted).
    fn stop(mut self) -> (u32, u32) {
        self.stop.store(true, std::sync::atomic::Ordering::Release);
        self.handle
            .take()
            .map(|h| h.join().unwrap())
            .unwrap_or((0, 0))
    }
}

/// The `state` of migration `id` in a `CLUSTER GETSLOTMIGRATIONS` reply.
fn migration_state(reply: &redis::Value, id: i64) -> Option<String> {
    let redis::Value::Array(entries) = reply else {
        return None;
    };
    entries.iter().find_map(|e| {
        let fields: Vec<&redis::Value> = match e {
            redis::Value::Array(f) => f.iter().collect(),
            redis::Value::Map(pairs) => pairs.iter().flat_map(|(k, v)| [k, v]).collect(),
            _ => return None,
        };
        let get = |name: &[u8]| {
            fields
                .chunks(2)
                .find(|kv| matches!(kv[0], redis::Value::BulkString(k) if k == name))
                .and_then(|kv| kv.get(1).copied())
        };
        match (get(b"id"), get(b"state")) {
            (Some(redis::Value::Int(n)), Some(redis::Value::BulkString(s))) if *n == id => {
                Some(String::from_utf8_lossy(s).into_owned())
            }
            _ => None,
        }
    })
}

#[test]
fn chaos_17_slots_move_between_shards_during_faults() {
    scenario_with("migrations", 17, 3, &["--shards", "3"], |c| {
        let moves = Migrations::start(c.addrs(), (0, 3000), 1, 2);
        std::thread::sleep(Duration::from_secs(3));
        c.node(1).kill9();
        std::thread::sleep(Duration::from_secs(2));
        c.node(1).restart();
        std::thread::sleep(Duration::from_secs(3));
        c.net.partition(&[&[2], &[1, 3]]);
        std::thread::sleep(Duration::from_secs(3));
        c.net.heal();
        std::thread::sleep(Duration::from_secs(2));
        c.node(3).pause(true);
        std::thread::sleep(Duration::from_secs(2));
        c.node(3).pause(false);
        std::thread::sleep(Duration::from_secs(2));
        let (completed, aborted) = moves.stop();
        eprintln!("migrations: {completed} completed, {aborted} aborted during the faults");
        assert!(completed > 0, "no migration completed");
    });
}

/// Membership nemesis: nodes are replaced (a wiped disk, a new node on
/// the same address joining the running cluster, the old id removed)
/// while the cluster is killed, partitioned and paused around the
/// rebalancer's replica moves. Every history stays linearizable and every
/// group's replicas agree at the end.
#[test]
fn chaos_18_nodes_are_replaced_during_faults() {
    scenario_with(
        "membership",
        18,
        4,
        &["--shards", "2", "--replicas", "3"],
        |c| {
            let via = c.node(1).raft_addr();
            c.node(4).rejoin(&via);
            assert_eq!(c.node(4).node_id, 5, "the replacement gets a new id");
            std::thread::sleep(Duration::from_secs(2));
            c.node(1).kill9();
            std::thread::sleep(Duration::from_secs(2));
            c.node(1).restart();
            std::thread::sleep(Duration::from_secs(4));
            let via = c.node(2).raft_addr();
            c.node(3).rejoin(&via);
            assert_eq!(c.node(3).node_id, 6, "the replacement gets a new id");
            std::thread::sleep(Duration::from_secs(2));
            c.net.partition(&[&[2], &[1, 3, 4]]);
            std::thread::sleep(Duration::from_secs(3));
            c.net.heal();
            std::thread::sleep(Duration::from_secs(3));
            c.node(4).pause(true);
            std::thread::sleep(Duration::from_secs(2));
            c.node(4).pause(false);
            std::thread::sleep(Duration::from_secs(4));
        },
    );
}

#[test]
fn chaos_14_pipelining_clients_reconnect_through_faults() {
    scenario_full("pipelines", 14, 3, &[], 3, |c| {
        for _ in 0..2 {
            let l = leader_of(c);
            c.node(l).kill9();
            std::thread::sleep(Duration::from_secs(2));
            c.node(l).restart();
            std::thread::sleep(Duration::from_secs(1));
            let l = leader_of(c);
            let others: Vec<usize> = (1..=3).filter(|i| *i != l).collect();
            c.net.cut(l, &others);
            std::thread::sleep(Duration::from_secs(2));
            c.net.heal();
            std::thread::sleep(Duration::from_secs(1));
        }
    });
}

/// Resident memory of a process, in KiB.
fn rss_kib(pid: Option<u32>) -> u64 {
    pid.and_then(|p| std::fs::read_to_string(format!("/proc/{p}/status")).ok())
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// The soak: random faults, one after another, under load, for
/// `SESHAT_CHAOS_SOAK_SECS` seconds (default 3600). Each fault window uses
/// fresh keys, so its history is checked on its own as soon as it ends.
/// Prints a report (and writes it to `$TMPDIR/seshat-soak-report.txt`).
///
/// Run it with: `cargo test --release -p seshat --test chaos -- --ignored soak --nocapture`
#[test]
#[ignore = "an hour long; run explicitly"]
fn soak() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(why) = netns::unsupported() {
        eprintln!("SKIPPED soak: {why}");
        return;
    }
    let secs: u64 = std::env::var("SESHAT_CHAOS_SOAK_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3600);
    netns::clear_stale();
    let extra = [
        "--snapshot-every-entries",
        "2000",
        "--log-tail-entries",
        "200",
    ];
    let mut cluster = ChaosCluster::start(3, 42, &extra);
    let started = Instant::now();
    let mut report = vec![format!(
        "soak: {secs} s, 3 nodes, {CLIENTS} clients + 2 pipelining clients, random faults"
    )];
    let mut totals = [0usize; 3];
    // Per node: RSS (MiB) after the first window, after the last, min, max.
    let mut rss_seen = [(0u64, 0u64, u64::MAX, 0u64); 3];
    let mut availability_min = 100.0f64;
    let mut violations = 0usize;
    let mut rng = 0x2545_F491_4F6C_DD1Du64;
    let mut window = 0u64;
    let faults = [
        "kill-leader",
        "kill-follower",
        "isolate-leader",
        "pause-leader",
        "packet-loss",
        "flap",
        "kill-all",
    ];
    while started.elapsed() < Duration::from_secs(secs) {
        window += 1;
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let fault = faults[(rng % faults.len() as u64) as usize];
        let load = Workload::start_on(cluster.addrs(), CLIENTS, 2, &format!("w{window}-"));
        let (recorder, keys) = (load.recorder.clone(), load.keys.clone());
        std::thread::sleep(Duration::from_secs(2));
        let leader = cluster
            .wait_for_leader(Duration::from_secs(30))
            .unwrap_or(1);
        let follower = leader % 3 + 1;
        match fault {
            "kill-leader" => {
                cluster.node(leader).kill9();
                std::thread::sleep(Duration::from_secs(4));
                cluster.node(leader).restart();
            }
            "kill-follower" => {
                cluster.node(follower).kill9();
                std::thread::sleep(Duration::from_secs(4));
                cluster.node(follower).restart();
            }
            "isolate-leader" => {
                let others: Vec<usize> = (1..=3).filter(|i| *i != leader).collect();
                cluster.net.cut(leader, &others);
                std::thread::sleep(Duration::from_secs(5));
            }
            "pause-leader" => {
                cluster.node(leader).pause(true);
                std::thread::sleep(Duration::from_secs(3));
                cluster.node(leader).pause(false);
            }
            "packet-loss" => {
                cluster.net.loss(20);
                std::thread::sleep(Duration::from_secs(5));
            }
            "flap" => {
                for _ in 0..3 {
                    cluster.net.cut(follower, &[leader]);
                    std::thread::sleep(Duration::from_millis(1200));
                    cluster.net.heal();
                    std::thread::sleep(Duration::from_millis(800));
                }
            }
            _ => {
                for i in 1..=3 {
                    cluster.node(i).kill9();
                }
                for i in 1..=3 {
                    cluster.node(i).restart();
                }
            }
        }
        cluster.net.heal();
        let healed = Instant::now();
        let new_leader = cluster.wait_for_leader(Duration::from_secs(60));
        let recovery = healed.elapsed();
        std::thread::sleep(Duration::from_secs(2));
        let history = load.stop();
        let Some(new_leader) = new_leader else {
            panic!(
                "window {window} ({fault}): no leader after healing\n{}",
                cluster.logs()
            );
        };
        let finals = read_finals(&cluster, new_leader, &keys);
        read_back_expiring(&cluster.addrs(), &keys, &recorder, &history);
        let history = recorder.history();
        let ok = history
            .iter()
            .filter(|o| matches!(o.outcome, Outcome::Ok(_)))
            .count();
        let fail = history
            .iter()
            .filter(|o| matches!(o.outcome, Outcome::Fail))
            .count();
        let unknown = history.len() - ok - fail;
        totals[0] += ok;
        totals[1] += fail;
        totals[2] += unknown;
        if let Some(problems) = problems(&history, &finals) {
            violations += 1;
            let path = std::env::temp_dir().join(format!("seshat-soak-window-{window}.jsonl"));
            let _ = save_jsonl(&history, &path);
            report.push(format!(
                "VIOLATION in window {window} ({fault}), history in {}:\n{problems}",
                path.display(),
            ));
        }
        let rss_now: Vec<u64> = cluster
            .nodes
            .iter()
            .map(|n| rss_kib(n.pid()) / 1024)
            .collect();
        for (i, r) in rss_now.iter().enumerate() {
            let (first, last, lo, hi) = &mut rss_seen[i];
            if *first == 0 {
                *first = *r;
            }
            *last = *r;
            if *r > 0 {
                *lo = (*lo).min(*r);
            }
            *hi = (*hi).max(*r);
        }
        let rss: Vec<String> = rss_now.iter().map(u64::to_string).collect();
        let line = format!(
            "t={:>5}s window {window:>4} {fault:<15} ops {:>6} ok {:>6} fail {:>5} unknown {:>4} availability {:>5.1}% recovered in {:>6.0?} rss MiB [{}]",
            started.elapsed().as_secs(),
            history.len(),
            ok,
            fail,
            unknown,
            100.0 * ok as f64 / history.len().max(1) as f64,
            recovery,
            rss.join(", ")
        );
        availability_min = availability_min.min(100.0 * ok as f64 / history.len().max(1) as f64);
        eprintln!("{line}");
        report.push(line);
    }
    for (i, (first, last, lo, hi)) in rss_seen.iter().enumerate() {
        report.push(format!(
            "node {} rss MiB: start {first}, end {last}, min {lo}, max {hi}",
            i + 1
        ));
    }
    report.push(format!(
        "lowest availability in a fault window: {availability_min:.1}%"
    ));
    if let Err(d) = cluster.converged(Duration::from_secs(30)) {
        report.push(format!("replicas did not converge: {d:?}"));
        violations += 1;
    }
    report.push(format!(
        "total: {} ops: {} ok, {} failed (definite), {} indeterminate; {} windows; violations: {violations}",
        totals.iter().sum::<usize>(),
        totals[0],
        totals[1],
        totals[2],
        window
    ));
    let text = report.join("\n");
    let _ = std::fs::write(std::env::temp_dir().join("seshat-soak-report.txt"), &text);
    eprintln!("{text}");
    assert_eq!(violations, 0, "{text}");
}
