//! File descriptors (issue 18, item 5): a node started under a low
//! `RLIMIT_NOFILE` keeps the descriptors its storage needs, whatever
//! its clients do. Each node runs under prlimit(1).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{have_tool, Server};

/// The open-file limit of the starved node: RocksDB (256 tables + 32)
/// and the node's own reserve (48) leave 176 of them for clients.
const NOFILE: u64 = 512;

/// Connects an idle client and sends PING; its one-line reply, or what a
/// client that gets none sees (within 500 ms).
fn idle_client(port: u16) -> (TcpStream, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    s.write_all(b"PING\r\n").unwrap();
    let mut reply = Vec::new();
    let mut byte = [0u8; 1];
    while !reply.ends_with(b"\r\n") {
        match s.read(&mut byte) {
            Ok(1) => reply.push(byte[0]),
            Ok(_) => {
                return (
                    s,
                    format!("<closed after {:?}>", String::from_utf8_lossy(&reply)),
                )
            }
            Err(e) => return (s, format!("<{e}>")),
        }
    }
    (s, String::from_utf8_lossy(&reply).into_owned())
}

fn max_clients(conn: &mut redis::Connection) -> usize {
    let info: String = redis::cmd("INFO").arg("clients").query(conn).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("maxclients:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// Regression (issue 18): under `nofile` 512 with the default
/// `--max-clients` 10000, 600 idle clients took every descriptor; the next
/// snapshot (or WAL rotation) failed with "Too many open files", the Raft
/// core stopped and every later write failed, even after the clients
/// left. Now the node lowers max clients to what fits beside storage's
/// reserve: the excess clients get Redis's max-clients error, and writes
/// that make RocksDB and the snapshotter open files keep succeeding.
#[test]
fn idle_clients_cannot_starve_rocksdb_of_file_descriptors() {
    if !have_tool("prlimit") {
        return;
    }
    let mut server =
        Server::spawn_with_nofile(Some((NOFILE, NOFILE)), &["--snapshot-every-entries", "200"]);
    server.wait_ready();
    let mut writer = server.conn();

    let mut idle = Vec::new();
    let mut refused = 0;
    let mut other = Vec::new();
    for _ in 0..600 {
        let (socket, reply) = idle_client(server.port);
        match reply.as_str() {
            "+PONG\r\n" => idle.push(socket),
            "-ERR max number of clients reached\r\n" => refused += 1,
            _ => other.push(reply),
        }
    }

    // 1,200 writes of 60 KB: memtables fill and flush (new WAL and table
    // files) and six snapshots are written, all while the clients stay.
    let value = vec![b'x'; 60_000];
    for i in 0..1_200 {
        let done: redis::RedisResult<()> = redis::cmd("SET")
            .arg(format!("k{i}"))
            .arg(&value)
            .query(&mut writer);
        if let Err(e) = done {
            panic!(
                "write {i} failed with {} idle clients: {e}\n{}",
                idle.len(),
                server.log()
            );
        }
    }

    assert!(
        other.is_empty(),
        "clients got neither PONG nor the max-clients error: {:?}",
        &other[..other.len().min(3)]
    );
    assert!(refused > 0, "every one of 600 clients was admitted");
    let limit = max_clients(&mut writer);
    assert_eq!(
        idle.len() + 1,
        limit,
        "admitted clients (+ the writer) vs maxclients"
    );
    assert!(
        limit < 512,
        "maxclients {limit} does not fit under nofile {NOFILE}"
    );
    let config: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("maxclients")
        .query(&mut writer)
        .unwrap();
    assert_eq!(config, ["maxclients".to_string(), limit.to_string()]);
    let log = server.log();
    assert!(
        log.contains("serving at most") && log.contains("ulimit -n"),
        "no warning naming the fix:\n{log}"
    );

    // The clients leave; the node still serves (it was never poisoned).
    drop(idle);
    drop(writer);
    // (Their slots free up as the node sees them close.)
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut c = loop {
        let written = redis::Client::open(server.url())
            .unwrap()
            .get_connection()
            .and_then(|mut c| {
                redis::cmd("SET")
                    .arg("after")
                    .arg("1")
                    .query::<()>(&mut c)
                    .map(|()| c)
            });
        match written {
            Ok(c) => break c,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => panic!("cannot write after the clients left: {e}"),
        }
    };
    let n: usize = redis::cmd("DBSIZE").query(&mut c).unwrap();
    assert_eq!(n, 1_201);
    assert!(server.is_running());
}

/// A soft limit below what the node needs is raised up to the hard limit,
/// so `--max-clients` is kept whole.
#[test]
fn a_low_soft_open_file_limit_is_raised_to_fit_max_clients() {
    if !have_tool("prlimit") {
        return;
    }
    let mut server = Server::spawn_with_nofile(Some((NOFILE, 20_000)), &[]);
    server.wait_ready();
    assert_eq!(max_clients(&mut server.conn()), 10_000);
    let limits =
        std::fs::read_to_string(format!("/proc/{}/limits", server.pid().unwrap())).unwrap();
    let soft: u64 = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .unwrap()
        .parse()
        .unwrap();
    assert!(soft > 10_000, "soft limit {soft} was not raised:\n{limits}");
}

/// A limit that leaves no room for even a handful of clients stops the
/// start with a message saying what to raise it to.
#[test]
fn a_node_refuses_to_start_when_the_open_file_limit_fits_no_clients() {
    if !have_tool("prlimit") {
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let mut child = Command::new("prlimit")
        .args(["--nofile=300:300", "--", env!("CARGO_BIN_EXE_seshat")])
        .args(["--client-addr", "127.0.0.1:0", "--raft-addr", "127.0.0.1:0"])
        .args(["--http-addr", "127.0.0.1:0", "--data-dir"])
        .arg(data.path().join("data"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the node started under nofile 300");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("open-file limit (300) is too low") && err.contains("ulimit -n"),
        "{err}"
    );
}
