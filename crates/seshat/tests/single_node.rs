//! A real one-node `seshat` process, driven by the `redis` crate, raw RESP
//! bytes, redis-cli, redis-py and redis-benchmark.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::process::Command;

use common::{info_number, raw_roundtrip, read_available, read_exact_timeout, Server};
use redis::{RedisError, Value};

#[test]
fn set_get_del_exists_answer_as_redis_does() {
    let server = Server::start();
    let mut c = server.conn();
    let ok: String = redis::cmd("SET").arg("k").arg("v").query(&mut c).unwrap();
    assert_eq!(ok, "OK");
    let v: Option<String> = redis::cmd("GET").arg("k").query(&mut c).unwrap();
    assert_eq!(v.as_deref(), Some("v"));
    let missing: Option<String> = redis::cmd("GET").arg("nope").query(&mut c).unwrap();
    assert_eq!(missing, None);
    let n: i64 = redis::cmd("EXISTS")
        .arg("k")
        .arg("nope")
        .arg("k")
        .query(&mut c)
        .unwrap();
    assert_eq!(n, 2, "EXISTS counts repeated keys, like Redis");
    let n: i64 = redis::cmd("DEL")
        .arg("k")
        .arg("nope")
        .query(&mut c)
        .unwrap();
    assert_eq!(n, 1);
    let n: i64 = redis::cmd("DEL").arg("k").query(&mut c).unwrap();
    assert_eq!(n, 0);
    let n: i64 = redis::cmd("EXISTS").arg("k").query(&mut c).unwrap();
    assert_eq!(n, 0);
}

#[test]
fn raw_resp_replies_are_byte_exact() {
    let server = Server::start();
    let cases: &[(&[u8], &[u8])] = &[
        (b"PING\r\n", b"+PONG\r\n"),
        (b"*2\r\n$4\r\nPING\r\n$2\r\nhi\r\n", b"$2\r\nhi\r\n"),
        (b"*3\r\n$3\r\nSET\r\n$1\r\na\r\n$1\r\n1\r\n", b"+OK\r\n"),
        (b"*2\r\n$3\r\nGET\r\n$1\r\na\r\n", b"$1\r\n1\r\n"),
        (b"*2\r\n$3\r\nGET\r\n$1\r\nz\r\n", b"$-1\r\n"),
        (
            b"*1\r\n$3\r\nGET\r\n",
            b"-ERR wrong number of arguments for 'get' command\r\n",
        ),
        (
            b"*2\r\n$6\r\nFOOBAR\r\n$1\r\nx\r\n",
            b"-ERR unknown command 'FOOBAR', with args beginning with: 'x' \r\n",
        ),
        (b"*2\r\n$4\r\nECHO\r\n$3\r\nabc\r\n", b"$3\r\nabc\r\n"),
        (b"*2\r\n$6\r\nSELECT\r\n$1\r\n0\r\n", b"+OK\r\n"),
        (
            b"*2\r\n$6\r\nSELECT\r\n$1\r\n1\r\n",
            b"-ERR DB index is out of range\r\n",
        ),
        (b"*1\r\n$6\r\nDBSIZE\r\n", b":1\r\n"),
        (b"*3\r\n$3\r\nDEL\r\n$1\r\na\r\n$1\r\nb\r\n", b":1\r\n"),
    ];
    for (request, expected) in cases {
        // Exactly the expected length, then check nothing else follows:
        // "quiet for 500 ms" could cut a slow reply off on a loaded machine.
        let mut s = std::net::TcpStream::connect(("127.0.0.1", server.port)).unwrap();
        std::io::Write::write_all(&mut s, request).unwrap();
        let mut reply = read_exact_timeout(&mut s, expected.len());
        s.set_read_timeout(Some(std::time::Duration::from_millis(100)))
            .unwrap();
        reply.extend(read_available(&mut s).unwrap());
        assert_eq!(
            String::from_utf8_lossy(&reply),
            String::from_utf8_lossy(expected),
            "request {:?}",
            String::from_utf8_lossy(request)
        );
    }
}

#[test]
fn resp3_after_hello_3() {
    let server = Server::start();
    // HELLO 3 answers with a RESP3 map.
    let reply = raw_roundtrip(
        server.port,
        b"*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n*2\r\n$3\r\nGET\r\n$1\r\nx\r\n",
    )
    .unwrap();
    assert!(
        reply.starts_with(b"%"),
        "HELLO 3 must reply with a map: {:?}",
        String::from_utf8_lossy(&reply)
    );
    assert!(
        reply.ends_with(b"_\r\n"),
        "a missing key is RESP3 null: {:?}",
        String::from_utf8_lossy(&reply)
    );
    // The redis crate in RESP3 mode works end to end.
    let mut c = server.conn_resp3();
    let _: () = redis::cmd("SET").arg("r3").arg("v3").query(&mut c).unwrap();
    let v: Option<String> = redis::cmd("GET").arg("r3").query(&mut c).unwrap();
    assert_eq!(v.as_deref(), Some("v3"));
    let gone: Value = redis::cmd("GET").arg("missing").query(&mut c).unwrap();
    assert_eq!(gone, Value::Nil);
    let bad = raw_roundtrip(server.port, b"*2\r\n$5\r\nHELLO\r\n$1\r\n4\r\n").unwrap();
    assert_eq!(bad, b"-NOPROTO unsupported protocol version\r\n");
}

#[test]
fn binary_keys_and_values_round_trip() {
    let server = Server::start();
    let mut c = server.conn();
    let key: Vec<u8> = vec![0, 1, 2, b'\r', b'\n', 255, b' '];
    let value: Vec<u8> = (0..=255u8).collect();
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg(&value)
        .query(&mut c)
        .unwrap();
    let got: Vec<u8> = redis::cmd("GET").arg(&key).query(&mut c).unwrap();
    assert_eq!(got, value);
    let _: () = redis::cmd("SET")
        .arg("empty")
        .arg("")
        .query(&mut c)
        .unwrap();
    let got: Vec<u8> = redis::cmd("GET").arg("empty").query(&mut c).unwrap();
    assert!(got.is_empty());
}

#[test]
fn ten_thousand_pipelined_commands_answer_in_order() {
    let server = Server::start();
    let mut c = server.conn();
    let mut pipe = redis::pipe();
    for i in 0..5_000 {
        pipe.cmd("SET").arg(format!("p{i}")).arg(i);
        pipe.cmd("GET").arg(format!("p{i}"));
    }
    let replies: Vec<Value> = pipe.query(&mut c).unwrap();
    assert_eq!(replies.len(), 10_000);
    for (i, pair) in replies.chunks(2).enumerate() {
        assert_eq!(pair[0], Value::Okay, "SET #{i}");
        assert_eq!(
            pair[1],
            Value::BulkString(i.to_string().into_bytes()),
            "GET #{i} must see its SET"
        );
    }
    let n: i64 = redis::cmd("DBSIZE").query(&mut c).unwrap();
    assert_eq!(n, 5_000);
}

#[test]
fn oversized_values_and_keys_are_refused_and_the_connection_stays_usable() {
    let server = Server::start();
    let mut c = server.conn();
    let big = vec![b'x'; 100 * 1024];
    let err: RedisError = redis::cmd("SET")
        .arg("big")
        .arg(&big)
        .query::<()>(&mut c)
        .unwrap_err();
    assert_eq!(
        (err.code(), err.detail()),
        (Some("ERR"), Some("value too large")),
        "{err:?}"
    );
    let long_key = vec![b'k'; 257];
    let err: RedisError = redis::cmd("SET")
        .arg(&long_key)
        .arg("v")
        .query::<()>(&mut c)
        .unwrap_err();
    assert_eq!(
        (err.code(), err.detail()),
        (Some("ERR"), Some("key too large")),
        "{err:?}"
    );
    // Regression: the keys of one DEL are limited in total, so one log
    // entry never outgrows a replication message.
    let mut del = redis::cmd("DEL");
    for i in 0..400 {
        del.arg(format!("{i:0>250}"));
    }
    let err: RedisError = del.query::<i64>(&mut c).unwrap_err();
    assert_eq!(
        (err.code(), err.detail()),
        (Some("ERR"), Some("request too large")),
        "{err:?}"
    );
    // Same connection still works, and nothing was stored.
    let n: i64 = redis::cmd("EXISTS").arg("big").query(&mut c).unwrap();
    assert_eq!(n, 0);
    let _: () = redis::cmd("SET")
        .arg("small")
        .arg("ok")
        .query(&mut c)
        .unwrap();
    let exact = vec![b'y'; 64 * 1024];
    let _: () = redis::cmd("SET")
        .arg("exact")
        .arg(&exact)
        .query(&mut c)
        .unwrap();
    let got: Vec<u8> = redis::cmd("GET").arg("exact").query(&mut c).unwrap();
    assert_eq!(got.len(), 64 * 1024);
}

#[test]
fn garbage_gets_a_protocol_error_and_a_closed_connection_while_others_continue() {
    let server = Server::start();
    let mut other = server.conn();
    let _: () = redis::cmd("SET")
        .arg("before")
        .arg("1")
        .query(&mut other)
        .unwrap();

    let mut s = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    s.write_all(b"*1\r\n$abc\r\n").unwrap();
    let reply = read_exact_timeout(
        &mut s,
        b"-ERR Protocol error: invalid bulk length\r\n".len(),
    );
    assert_eq!(
        String::from_utf8_lossy(&reply),
        "-ERR Protocol error: invalid bulk length\r\n"
    );
    // Then the server closes the connection.
    let rest = read_available(&mut s).unwrap();
    assert!(
        rest.is_empty(),
        "nothing after the protocol error: {rest:?}"
    );

    let mut s = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    s.write_all(b"*99999999999\r\n").unwrap();
    let reply = read_available(&mut s).unwrap();
    assert!(
        String::from_utf8_lossy(&reply).starts_with("-ERR Protocol error"),
        "{reply:?}"
    );

    let v: String = redis::cmd("GET").arg("before").query(&mut other).unwrap();
    assert_eq!(v, "1");
}

#[test]
fn acknowledged_writes_survive_kill_9() {
    let mut server = Server::start();
    {
        let mut c = server.conn();
        for i in 0..500 {
            let _: () = redis::cmd("SET")
                .arg(format!("dur{i}"))
                .arg(format!("v{i}"))
                .query(&mut c)
                .unwrap();
        }
        let n: i64 = redis::cmd("DEL").arg("dur7").query(&mut c).unwrap();
        assert_eq!(n, 1);
    }
    server.kill9();
    server.restart();
    let mut c = server.conn();
    for i in 0..500 {
        let v: Option<String> = redis::cmd("GET")
            .arg(format!("dur{i}"))
            .query(&mut c)
            .unwrap();
        let expected = if i == 7 { None } else { Some(format!("v{i}")) };
        assert_eq!(v, expected, "key dur{i} after kill -9 and restart");
    }
    let n: i64 = redis::cmd("DBSIZE").query(&mut c).unwrap();
    assert_eq!(n, 499);
}

#[test]
fn sigterm_shuts_down_cleanly_and_data_is_back_after_restart() {
    let mut server = Server::start();
    {
        let mut c = server.conn();
        let _: () = redis::cmd("SET").arg("t").arg("1").query(&mut c).unwrap();
    }
    let status = server.terminate();
    assert!(status.success(), "exit status {status}:\n{}", server.log());
    assert!(server.log().contains("stopped"), "{}", server.log());
    server.restart();
    let mut c = server.conn();
    let v: String = redis::cmd("GET").arg("t").query(&mut c).unwrap();
    assert_eq!(v, "1");
}

#[test]
fn snapshots_compact_the_log_and_restart_restores_everything() {
    let mut server = Server::start_with(&[
        "--snapshot-every-entries",
        "200",
        "--log-tail-entries",
        "50",
    ]);
    {
        // One write at a time, so each is its own log entry (concurrent
        // writes would share entries and make fewer of them).
        let mut c = server.conn();
        for i in 0..1_000 {
            let _: () = redis::cmd("SET")
                .arg(format!("s{i}"))
                .arg(i)
                .query(&mut c)
                .unwrap();
        }
    }
    // Snapshots are built in the background; wait until one is visible.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let mut c = server.conn();
        let info: String = redis::cmd("INFO").arg("raft").query(&mut c).unwrap();
        let field = |name: &str| -> u64 {
            info.lines()
                .find_map(|l| l.strip_prefix(&format!("{name}:")))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0)
        };
        if field("raft_snapshot_index") >= 800 && field("raft_log_entries_on_disk") < 700 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no compaction:\n{info}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    server.kill9();
    server.restart();
    let mut c = server.conn();
    for i in (0..1_000).step_by(37) {
        let v: i64 = redis::cmd("GET")
            .arg(format!("s{i}"))
            .query(&mut c)
            .unwrap();
        assert_eq!(v, i);
    }
    let n: i64 = redis::cmd("DBSIZE").query(&mut c).unwrap();
    assert_eq!(n, 1_000);
}

#[test]
fn max_clients_is_enforced_with_redis_wording() {
    let server = Server::start_with(&["--max-clients", "2"]);
    let _a = server.conn();
    let _b = server.conn();
    let reply = raw_roundtrip(server.port, b"PING\r\n").unwrap();
    assert_eq!(
        String::from_utf8_lossy(&reply),
        "-ERR max number of clients reached\r\n"
    );
}

#[test]
fn flushall_goes_through_raft_and_empties_the_store() {
    let mut server = Server::start();
    let mut c = server.conn();
    for i in 0..10 {
        let _: () = redis::cmd("SET")
            .arg(format!("f{i}"))
            .arg(i)
            .query(&mut c)
            .unwrap();
    }
    let _: () = redis::cmd("FLUSHALL").query(&mut c).unwrap();
    let n: i64 = redis::cmd("DBSIZE").query(&mut c).unwrap();
    assert_eq!(n, 0);
    drop(c);
    server.kill9();
    server.restart();
    let mut c = server.conn();
    let n: i64 = redis::cmd("EXISTS").arg("f3").query(&mut c).unwrap();
    assert_eq!(n, 0);
}

#[test]
fn a_bad_setting_is_refused_at_start_with_its_name() {
    let out = Command::new(env!("CARGO_BIN_EXE_seshat"))
        .args(["--client-addr", "not-an-address"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("client-addr") && err.contains("not-an-address"),
        "{err}"
    );
}

#[test]
fn info_and_cluster_introspection() {
    let server = Server::start();
    let mut c = server.conn();
    let info: String = redis::cmd("INFO").query(&mut c).unwrap();
    for section in [
        "# Server",
        "# Clients",
        "# Stats",
        "# Replication",
        "# Raft",
        "# Keyspace",
    ] {
        assert!(info.contains(section), "missing {section}:\n{info}");
    }
    assert!(info.contains("role:master"), "{info}");
    let slot: i64 = redis::cmd("CLUSTER")
        .arg("KEYSLOT")
        .arg("foo")
        .query(&mut c)
        .unwrap();
    assert_eq!(slot, 12182);
    let slots: Value = redis::cmd("CLUSTER").arg("SLOTS").query(&mut c).unwrap();
    let text = format!("{slots:?}");
    assert!(text.contains(&server.port.to_string()), "{text}");
    let count: i64 = redis::cmd("COMMAND").arg("COUNT").query(&mut c).unwrap();
    let all: Vec<Value> = redis::cmd("COMMAND").query(&mut c).unwrap();
    assert_eq!(count as usize, all.len());
    for name in [
        "get", "set", "del", "exists", "ping", "hello", "cluster", "info",
    ] {
        let info: Vec<Value> = redis::cmd("COMMAND")
            .arg("INFO")
            .arg(name)
            .query(&mut c)
            .unwrap();
        assert!(
            matches!(&info[..], [Value::Array(_)]),
            "COMMAND INFO {name}: {info:?}"
        );
    }
}

#[test]
fn redis_cli_works_from_the_command_line() {
    if !common::have_tool("redis-cli") {
        return;
    }
    let server = Server::start();
    let port = server.port.to_string();
    let run = |args: &[&str]| -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &port])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim_end().to_string()
    };
    assert_eq!(run(&["PING"]), "PONG");
    assert_eq!(run(&["SET", "cli", "hello world"]), "OK");
    assert_eq!(run(&["GET", "cli"]), "hello world");
    assert_eq!(run(&["EXISTS", "cli"]), "1");
    assert_eq!(run(&["DEL", "cli"]), "1");
    assert_eq!(run(&["GET", "cli"]), "");
    let err = run(&["GET"]);
    assert_eq!(err, "ERR wrong number of arguments for 'get' command");
}

#[test]
fn redis_cli_interactive_session() {
    if !common::have_tool("redis-cli") {
        return;
    }
    let server = Server::start();
    let mut child = Command::new("redis-cli")
        .args(["-p", &server.port.to_string()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"SET i 1\nGET i\nEXISTS i\nDEL i\nGET i\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text.lines().collect::<Vec<_>>(),
        vec!["OK", "1", "1", "1", ""],
        "{text}"
    );
}

#[test]
fn redis_py_default_resp3_and_resp2() {
    if !common::redis_py_available() {
        return;
    }
    let server = Server::start();
    let script = format!(
        r#"
import redis
for proto in (3, 2):
    r = redis.Redis(host="127.0.0.1", port={port}, protocol=proto)
    assert r.ping() is True
    assert r.set("py", b"\x00bin") is True
    assert r.get("py") == b"\x00bin"
    assert r.exists("py") == 1
    assert r.delete("py") == 1
    assert r.get("py") is None
r = redis.Redis(host="127.0.0.1", port={port})
assert r.connection_pool.connection_kwargs.get("protocol") in (None, 3, "3"), r.connection_pool.connection_kwargs
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

#[test]
fn redis_benchmark_completes_without_errors() {
    if !common::have_tool("redis-benchmark") {
        return;
    }
    let server = Server::start();
    let out = Command::new("redis-benchmark")
        .args([
            "-p",
            &server.port.to_string(),
            "-t",
            "set,get,incr,mset,ping",
            "-n",
            "20000",
            "-q",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        !stdout.to_lowercase().contains("error") && !stderr.to_lowercase().contains("error"),
        "{stdout}\n{stderr}"
    );
    for test in ["SET", "GET", "INCR", "MSET", "PING"] {
        assert!(stdout.contains(test), "{test} missing from:\n{stdout}");
    }
    // INCR's counter reached every increment (redis-benchmark uses one
    // key, `counter:__rand_int__` without -r).
    let mut c = server.conn();
    let counter: i64 = redis::cmd("GET")
        .arg("counter:__rand_int__")
        .query(&mut c)
        .unwrap();
    assert_eq!(counter, 20_000);
}

/// Regression (issue 18 item 9): a node started alone answered PONG before
/// it had elected itself, so a script that waited for PONG and then wrote
/// got CLUSTERDOWN (on a restart the election waits a timeout).
#[test]
fn a_lone_node_answers_pong_only_once_it_takes_writes() {
    for round in 0..6 {
        // Even rounds: a first start; odd rounds: a restart of it.
        let mut server = Server::spawn_with(&[]);
        if round % 2 == 1 {
            server.wait_ready();
            server.terminate();
            server.respawn();
        }
        // Like a start-up script: PING until PONG, then write at once.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let mut conn = loop {
            assert!(
                std::time::Instant::now() < deadline,
                "no PONG:\n{}",
                server.log()
            );
            let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", server.port)) else {
                std::thread::sleep(std::time::Duration::from_millis(2));
                continue;
            };
            s.write_all(b"PING\r\n").unwrap();
            if common::read_exact_timeout(&mut s, 7) == b"+PONG\r\n" {
                break s;
            }
        };
        conn.write_all(format!("SET round {round}\r\n").as_bytes())
            .unwrap();
        let reply = common::read_exact_timeout(&mut conn, 5);
        assert_eq!(String::from_utf8_lossy(&reply), "+OK\r\n", "round {round}");
    }
}

/// Issue 13's acceptance: redis-benchmark's data type workloads complete
/// with no error.
#[test]
fn redis_benchmark_runs_the_data_type_workloads() {
    if !common::have_tool("redis-benchmark") {
        return;
    }
    let server = Server::start();
    let out = Command::new("redis-benchmark")
        .args(["-p", &server.port.to_string()])
        .args(["-t", "lpush,lpop,sadd,hset,spop,zadd,lrange_100"])
        .args(["-n", "5000", "-q"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        !stdout.to_lowercase().contains("error") && !stderr.to_lowercase().contains("error"),
        "{stdout}\n{stderr}"
    );
    for test in [
        "LPUSH",
        "LPOP",
        "SADD",
        "HSET",
        "SPOP",
        "ZADD",
        "LRANGE_100",
    ] {
        assert!(stdout.contains(test), "{test} missing from:\n{stdout}");
    }
}

/// Issue 18 item 9: the first start of a node logged an openraft WARN ("A
/// message will be ignored because Leader vote changed …") that asks
/// nothing of anyone; a first start and a first write log no warning.
#[test]
fn a_first_start_logs_no_warning() {
    let server = Server::start();
    let mut conn = server.conn();
    let () = redis::cmd("SET")
        .arg("k")
        .arg("v")
        .query(&mut conn)
        .unwrap();
    let log = server.log();
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
        .collect();
    assert!(
        warnings.is_empty(),
        "a first start warned:\n{}",
        warnings.join("\n")
    );
}

/// The key cache answers repeated reads, follows overwrites, deletes and
/// FLUSHALL, and can be turned off.
#[test]
fn the_key_cache_serves_reads_and_follows_every_change() {
    let server = Server::start_with(&["--key-cache-bytes", "1mb"]);
    let mut c = server.conn();
    assert_eq!(
        info_number(&mut c, "storage", "key_cache_max_bytes"),
        1024 * 1024
    );
    let _: () = redis::cmd("SET").arg("k").arg("v1").query(&mut c).unwrap();
    let hits = info_number(&mut c, "storage", "key_cache_hits");
    for _ in 0..3 {
        let v: String = redis::cmd("GET").arg("k").query(&mut c).unwrap();
        assert_eq!(v, "v1");
    }
    assert!(info_number(&mut c, "storage", "key_cache_hits") >= hits + 3);
    assert!(info_number(&mut c, "storage", "key_cache_entries") >= 1);
    let _: () = redis::cmd("SET").arg("k").arg("v2").query(&mut c).unwrap();
    let v: String = redis::cmd("GET").arg("k").query(&mut c).unwrap();
    assert_eq!(v, "v2");
    let _: () = redis::cmd("DEL").arg("k").query(&mut c).unwrap();
    let v: Option<String> = redis::cmd("GET").arg("k").query(&mut c).unwrap();
    assert_eq!(v, None);
    let _: () = redis::cmd("SET").arg("k").arg("v3").query(&mut c).unwrap();
    let _: () = redis::cmd("HSET")
        .arg("h")
        .arg("f")
        .arg("x")
        .query(&mut c)
        .unwrap();
    let _: () = redis::cmd("FLUSHALL").query(&mut c).unwrap();
    let v: Option<String> = redis::cmd("GET").arg("k").query(&mut c).unwrap();
    assert_eq!(v, None);
    let t: String = redis::cmd("TYPE").arg("h").query(&mut c).unwrap();
    assert_eq!(t, "none");
    // Many more keys than 1 MiB holds: the budget holds, values stay right.
    for i in 0..20_000 {
        let _: () = redis::cmd("SET")
            .arg(format!("key:{i}"))
            .arg(format!("value:{i}"))
            .query(&mut c)
            .unwrap();
    }
    assert!(info_number(&mut c, "storage", "key_cache_bytes") <= 1024 * 1024);
    for i in (0..20_000).step_by(997) {
        let v: String = redis::cmd("GET")
            .arg(format!("key:{i}"))
            .query(&mut c)
            .unwrap();
        assert_eq!(v, format!("value:{i}"));
    }
    drop(c);
    let off = Server::start_with(&["--key-cache-bytes", "0"]);
    let mut c = off.conn();
    let _: () = redis::cmd("SET").arg("k").arg("v").query(&mut c).unwrap();
    let v: String = redis::cmd("GET").arg("k").query(&mut c).unwrap();
    assert_eq!(v, "v");
    assert_eq!(info_number(&mut c, "storage", "key_cache_max_bytes"), 0);
    assert_eq!(info_number(&mut c, "storage", "key_cache_hits"), 0);
}
