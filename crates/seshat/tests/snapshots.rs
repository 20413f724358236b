//! Snapshots and log compaction on real clusters: a follower that missed
//! many writes catches up from a streamed snapshot, the log stays bounded,
//! and the caught-up node serves everything once it leads.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod common;

use std::time::{Duration, Instant};

use common::Cluster;
use redis::Value;

const KEYS: usize = 50_000;

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn field(node: &common::Server, name: &str) -> u64 {
    node.info_field(name)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_follower_far_behind_catches_up_by_snapshot_and_serves_every_key_after_leading() {
    let mut cluster = Cluster::start_with(
        3,
        &[
            // Small: concurrent and pipelined writes share log entries
            // (up to 1,024 writes each), so 50,000 writes make only a few
            // hundred entries.
            "--snapshot-every-entries",
            "20",
            "--log-tail-entries",
            "5",
        ],
    );
    let leader = cluster.wait_for_leader(Duration::from_secs(30));
    let lagger = (leader + 1) % 3;
    cluster.nodes[lagger].kill9();
    {
        let mut c = cluster.nodes[leader].conn();
        for batch in 0..KEYS / 1000 {
            let mut pipe = redis::pipe();
            for i in batch * 1000..(batch + 1) * 1000 {
                pipe.cmd("SET")
                    .arg(format!("key:{i}"))
                    .arg(format!("value-{i}"))
                    .ignore();
            }
            let _: () = pipe.query(&mut c).unwrap();
        }
        // Every type travels in the snapshot (and a key with a TTL).
        let mut pipe = redis::pipe();
        for i in 0..1000 {
            pipe.cmd("HSET")
                .arg("h")
                .arg(format!("f{i}"))
                .arg(i)
                .ignore();
            pipe.cmd("RPUSH").arg("l").arg(i).ignore();
            pipe.cmd("SADD").arg("s").arg(format!("m{i}")).ignore();
            pipe.cmd("ZADD")
                .arg("z")
                .arg(i)
                .arg(format!("m{i}"))
                .ignore();
        }
        pipe.cmd("SET")
            .arg("ttl")
            .arg("v")
            .arg("EX")
            .arg(3600)
            .ignore();
        let _: () = pipe.query(&mut c).unwrap();
    }
    // The log on the leader stays within a few snapshot intervals.
    // Snapshots are built in the background, so give the last one time.
    let deadline = Instant::now() + Duration::from_secs(30);
    let on_disk = loop {
        let on_disk = field(&cluster.nodes[leader], "raft_log_entries_on_disk");
        if on_disk < 100 || Instant::now() > deadline {
            break on_disk;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    eprintln!("leader log entries on disk after {KEYS} writes: {on_disk}");
    assert!(
        on_disk < 100,
        "log not compacted: {on_disk} entries on disk"
    );

    let leader_pid = cluster.nodes[leader].pid().unwrap();
    let leader_rss_before = rss_kib(leader_pid);
    let started = Instant::now();
    cluster.nodes[lagger].restart();
    let lagger_pid = cluster.nodes[lagger].pid().unwrap();
    let mut lagger_rss_max = 0;
    let mut leader_rss_max = 0;
    loop {
        lagger_rss_max = lagger_rss_max.max(rss_kib(lagger_pid));
        leader_rss_max = leader_rss_max.max(rss_kib(leader_pid));
        let target = field(&cluster.nodes[leader], "raft_applied_index");
        if field(&cluster.nodes[lagger], "raft_applied_index") == target {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "follower did not catch up:\n{}",
            cluster.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "caught up in {:?}; leader RSS {} -> max {} KiB; receiver max RSS {} KiB",
        started.elapsed(),
        leader_rss_before,
        leader_rss_max,
        lagger_rss_max
    );
    assert!(
        field(&cluster.nodes[lagger], "raft_snapshot_index") > 0,
        "no snapshot was installed"
    );
    assert!(
        cluster.nodes[lagger].log().contains("snapshot installed"),
        "the follower must catch up from a snapshot, not by replaying:\n{}",
        cluster.nodes[lagger].log()
    );

    // Regression: the installed snapshot must be kept under its
    // `<index>-<term>.snap` name, in its group's directory (transfers arrive as unique `.part` files),
    // or the node could not serve it to others once it leads.
    let snaps = cluster.nodes[lagger]
        .data_dir()
        .join("snapshots")
        .join(seshat_kv::keys::DATA_GROUP.to_string());
    let kept: Vec<String> = std::fs::read_dir(&snaps)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".snap"))
        .collect();
    assert_eq!(
        kept.len(),
        1,
        "snapshot files in {}: {kept:?}",
        snaps.display()
    );

    // The caught-up replica holds exactly what the leader holds: every
    // record of every type, the expiry index, the applied index.
    assert_eq!(
        digest(&cluster.nodes[lagger]),
        digest(&cluster.nodes[leader]),
        "replica digests differ after the snapshot install"
    );

    // Kill the old leader: the caught-up node and the third one serve all.
    cluster.nodes[leader].kill9();
    let new_leader = cluster.wait_for_leader(Duration::from_secs(30));
    let mut c = cluster.nodes[new_leader].conn();
    for batch in 0..KEYS / 1000 {
        let mut pipe = redis::pipe();
        for i in batch * 1000..(batch + 1) * 1000 {
            pipe.cmd("GET").arg(format!("key:{i}"));
        }
        let values: Vec<Value> = pipe.query(&mut c).unwrap();
        for (j, v) in values.iter().enumerate() {
            let i = batch * 1000 + j;
            assert_eq!(
                v,
                &Value::BulkString(format!("value-{i}").into_bytes()),
                "key:{i}"
            );
        }
    }
    let n: i64 = redis::cmd("DBSIZE").query(&mut c).unwrap();
    assert_eq!(n as usize, KEYS + 5);
    let hlen: i64 = redis::cmd("HLEN").arg("h").query(&mut c).unwrap();
    let hget: String = redis::cmd("HGET")
        .arg("h")
        .arg("f999")
        .query(&mut c)
        .unwrap();
    assert_eq!((hlen, hget.as_str()), (1000, "999"));
    let list: Vec<i64> = redis::cmd("LRANGE")
        .arg("l")
        .arg(0)
        .arg(-1)
        .query(&mut c)
        .unwrap();
    assert_eq!(list, (0..1000).collect::<Vec<i64>>());
    let scard: i64 = redis::cmd("SCARD").arg("s").query(&mut c).unwrap();
    let member: i64 = redis::cmd("SISMEMBER")
        .arg("s")
        .arg("m7")
        .query(&mut c)
        .unwrap();
    assert_eq!((scard, member), (1000, 1));
    let top: Vec<(String, f64)> = redis::cmd("ZRANGE")
        .arg("z")
        .arg(-2)
        .arg(-1)
        .arg("WITHSCORES")
        .query(&mut c)
        .unwrap();
    assert_eq!(
        top,
        vec![("m998".to_string(), 998.0), ("m999".to_string(), 999.0)]
    );
    let ttl: i64 = redis::cmd("TTL").arg("ttl").query(&mut c).unwrap();
    assert!((3000..=3600).contains(&ttl), "{ttl}");
}

/// The node's `storage_digest` (applied index, hash of every record, key
/// count).
fn digest(node: &common::Server) -> Option<String> {
    let mut c = redis::Client::open(node.url())
        .ok()?
        .get_connection_with_timeout(Duration::from_secs(2))
        .ok()?;
    let info: String = redis::cmd("INFO").arg("digest").query(&mut c).ok()?;
    info.lines()
        .find_map(|l| l.strip_prefix("storage_digest:"))
        .map(|v| v.trim().to_string())
}
