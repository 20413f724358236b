//! Operator-facing behaviour on real clusters: /metrics, /health, /ready,
//! JSON logs, and leadership handover on SIGTERM.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod common;

use std::time::{Duration, Instant};

use common::{http_get, Cluster, Server};

fn metric(body: &str, name: &str) -> Option<f64> {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// `requests_total{command="set",status="ok"}` of any node.
fn set_ok_count(body: &str) -> f64 {
    body.lines()
        .find(|l| l.starts_with("requests_total{") && l.contains("command=\"set\",status=\"ok\""))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn metrics_count_requests_and_follow_the_leader() {
    let mut cluster = Cluster::start(3);
    let leader = cluster.wait_for_leader(Duration::from_secs(30));
    let http = cluster.nodes[leader].http_port;
    let (status, before) = http_get(http, "/metrics");
    assert_eq!(status, 200);
    assert_eq!(metric(&before, "raft_is_leader"), Some(1.0), "{before}");
    let sets_before = set_ok_count(&before);
    let mut c = cluster.nodes[leader].conn();
    for i in 0..25 {
        let _: () = redis::cmd("SET")
            .arg(format!("m{i}"))
            .arg(i)
            .query(&mut c)
            .unwrap();
    }
    let (_, after) = http_get(http, "/metrics");
    let sets_after = set_ok_count(&after);
    assert_eq!(sets_after - sets_before, 25.0, "{after}");
    assert!(
        metric(&after, "storage_num_keys").unwrap_or(0.0) >= 25.0,
        "{after}"
    );
    for line in [
        "raft_term",
        "raft_commit_index",
        "raft_applied_index",
        "raft_log_size_bytes",
        "storage_db_size_bytes",
        "cluster_nodes_healthy",
        "requests_in_flight",
        "request_duration_seconds_bucket",
    ] {
        assert!(after.contains(line), "{line} missing from /metrics");
    }
    // After a failover, another node reports raft_is_leader 1.
    cluster.nodes[leader].kill9();
    let new_leader = cluster.wait_for_leader(Duration::from_secs(30));
    let (_, body) = http_get(cluster.nodes[new_leader].http_port, "/metrics");
    assert_eq!(metric(&body, "raft_is_leader"), Some(1.0));
    for (i, node) in cluster.nodes.iter().enumerate() {
        if i != leader && i != new_leader {
            let (_, body) = http_get(node.http_port, "/metrics");
            assert_eq!(metric(&body, "raft_is_leader"), Some(0.0));
        }
    }
}

#[test]
fn health_turns_503_without_quorum_and_back_to_200() {
    let mut cluster = Cluster::start(3);
    let leader = cluster.wait_for_leader(Duration::from_secs(30));
    let http = cluster.nodes[leader].http_port;
    assert_eq!(http_get(http, "/health").0, 200);
    assert_eq!(http_get(http, "/ready").0, 200);
    let others: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    for i in &others {
        cluster.nodes[*i].kill9();
    }
    wait_until(
        "/health 503 without quorum",
        Duration::from_secs(15),
        || http_get(http, "/health").0 == 503,
    );
    let (_, why) = http_get(http, "/health");
    eprintln!("/health without quorum: {why}");
    for i in &others {
        cluster.nodes[*i].restart();
    }
    wait_until(
        "/health 200 after quorum returns",
        Duration::from_secs(30),
        || {
            cluster
                .nodes
                .iter()
                .any(|n| http_get(n.http_port, "/health").0 == 200)
        },
    );
}

#[test]
fn sigterm_on_the_leader_hands_over_leadership_without_an_election_timeout() {
    let mut cluster = Cluster::start(3);
    let leader = cluster.wait_for_leader(Duration::from_secs(30));
    let term_before: u64 = cluster.nodes[leader]
        .info_field("raft_term")
        .unwrap()
        .parse()
        .unwrap();
    {
        let mut c = cluster.nodes[leader].conn();
        let _: () = redis::cmd("SET")
            .arg("handover")
            .arg("1")
            .query(&mut c)
            .unwrap();
    }
    let started = Instant::now();
    let status = cluster.nodes[leader].terminate();
    assert!(status.success(), "{status}");
    let log = cluster.nodes[leader].log();
    assert!(log.contains("leadership handed over"), "{log}");
    let new_leader = cluster.wait_for_leader(Duration::from_secs(10));
    eprintln!("leader stopped and replaced after {:?}", started.elapsed());
    let term_after: u64 = cluster.nodes[new_leader]
        .info_field("raft_term")
        .unwrap()
        .parse()
        .unwrap();
    // One election (the handover) is expected; a busy machine can add a
    // spurious one, so the handover log line above is what is required.
    assert!(term_after > term_before, "a new term after the handover");
    eprintln!("terms: {term_before} -> {term_after}");
    let mut c = cluster.nodes[new_leader].conn();
    let v: String = redis::cmd("GET").arg("handover").query(&mut c).unwrap();
    assert_eq!(v, "1");
}

#[test]
fn json_logs_are_one_object_per_line() {
    let mut server = Server::start_with(&["--log-format", "json"]);
    let _ = server.terminate();
    let log = server.log();
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty());
    for line in lines {
        assert!(
            line.starts_with('{') && line.ends_with('}'),
            "not JSON: {line}"
        );
        assert!(line.contains("\"level\""), "{line}");
    }
}

/// Issue 18: a Raft core that stops is never hidden. A panicked core left
/// its metrics as they were, so `/health` kept answering 200 and the
/// process stayed up answering every command with an error; now
/// `/health`, `/ready` and `INFO` say the core stopped, and the process
/// exits non-zero after a grace period so its supervisor restarts it.
///
/// The trigger is the state the old term bug left on disk: a stored vote
/// of term `u64::MAX`. The node's first election computes `term + 1`,
/// which wraps, and openraft panics — a stop no peer-input check can
/// prevent, since it comes from the node's own disk.
#[test]
fn issue_18_stopped_raft_core_fails_health_and_exits() {
    use openraft::storage::RaftLogStorage;

    let mut server = Server::start();
    {
        let mut c = server.conn();
        let _: () = redis::cmd("SET").arg("k").arg("v").query(&mut c).unwrap();
    }
    assert!(server.terminate().success());
    {
        let storage = seshat_raft::StorageConfig::new(server.data_dir());
        let (_store, mut log, _sm) = seshat_raft::open_storage(&storage).unwrap();
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(log.save_vote(&seshat_raft::types::Vote::new(u64::MAX, 1)))
            .unwrap();
    }
    server.restart();
    let http = server.http_port;
    wait_until(
        "/health to report the stopped core",
        Duration::from_secs(30),
        || {
            let (status, body) = http_get(http, "/health");
            status == 503 && body.contains("raft stopped: panicked")
        },
    );
    let (status, body) = http_get(http, "/ready");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("raft stopped"), "{body}");
    assert_eq!(server.info_field("raft_core").as_deref(), Some("stopped"));
    assert_eq!(server.info_field("raft_role").as_deref(), Some("Shutdown"));
    let mut c = server.conn();
    let err = redis::cmd("GET")
        .arg("k")
        .query::<Option<String>>(&mut c)
        .unwrap_err();
    assert!(err.to_string().contains("raft stopped"), "{err}");
    // The grace period is 5 s; allow for a slow machine.
    let status = server.wait_exit(Duration::from_secs(30));
    assert!(!status.success(), "exit status {status}");
    let log = server.log();
    assert!(log.contains("exiting so that it is restarted"), "{log}");
}

/// Three consecutive free ports (a dev-cluster base), taken from the
/// test port allocator so no other port it hands out overlaps them.
fn free_port_run() -> u16 {
    loop {
        let (a, b, c) = (
            common::free_port(),
            common::free_port(),
            common::free_port(),
        );
        if b == a + 1 && c == a + 2 {
            return a;
        }
    }
}

fn answers_ping(port: u16) -> bool {
    common::raw_roundtrip(port, b"PING\r\n").is_ok_and(|r| r == b"+PONG\r\n")
}

/// Regression (issue 18 item 9): `seshat dev-cluster` stopped every node
/// when one died, so trying failover by killing the leader lost the whole
/// cluster. Now the others keep serving, the launcher says which node
/// stopped, and SIGUSR1 restarts it.
#[test]
fn dev_cluster_keeps_serving_when_a_node_dies_and_restarts_it_on_request() {
    let tmp = tempfile::tempdir().unwrap();
    let (client, raft, http) = (free_port_run(), free_port_run(), free_port_run());
    let out = std::fs::File::create(tmp.path().join("launcher.out")).unwrap();
    let err = std::fs::File::create(tmp.path().join("launcher.err")).unwrap();
    let mut launcher = std::process::Command::new(env!("CARGO_BIN_EXE_seshat"))
        .arg("dev-cluster")
        .args(["--nodes", "3", "--dir"])
        .arg(tmp.path().join("cluster"))
        .args(["--client-port-base", &client.to_string()])
        .args(["--raft-port-base", &raft.to_string()])
        .args(["--http-port-base", &http.to_string()])
        .stdin(std::process::Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap();
    let ports: Vec<u16> = (0..3).map(|i| client + i).collect();
    wait_until("every node answers PING", Duration::from_secs(60), || {
        ports.iter().all(|p| answers_ping(*p))
    });
    let pid_of = |i: u16| -> u32 {
        let text =
            std::fs::read_to_string(tmp.path().join(format!("cluster/node-{i}/pid"))).unwrap();
        text.trim().parse().unwrap()
    };
    let old_pid = pid_of(1);
    common::signal(old_pid, "KILL");
    let err_log = || std::fs::read_to_string(tmp.path().join("launcher.err")).unwrap_or_default();
    wait_until(
        "the launcher reports node 1",
        Duration::from_secs(20),
        || err_log().contains("node 1 exited"),
    );
    assert!(
        launcher.try_wait().unwrap().is_none(),
        "the launcher keeps running"
    );
    // The two others elect a leader and take writes.
    wait_until(
        "a write on the surviving nodes",
        Duration::from_secs(30),
        || {
            ports[1..].iter().any(|p| {
                common::raw_roundtrip(*p, b"SET after-kill 1\r\n").is_ok_and(|r| r == b"+OK\r\n")
            })
        },
    );
    common::signal(launcher.id(), "USR1");
    wait_until("node 1 restarted", Duration::from_secs(60), || {
        answers_ping(ports[0]) && pid_of(1) != old_pid
    });
    common::signal(launcher.id(), "TERM");
    let deadline = Instant::now() + Duration::from_secs(30);
    while launcher.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the launcher ignored SIGTERM");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        ports.iter().all(|p| !answers_ping(*p)),
        "every node stopped"
    );
}
