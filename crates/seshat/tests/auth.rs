//! Authentication (`--requirepass`, `AUTH`, `HELLO … AUTH`, `CONFIG SET
//! requirepass`) and protected mode, against real `seshat` processes:
//! raw RESP where the exact reply matters, the `redis` crate, redis-cli
//! and a 3-node cluster.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use common::{error, have_tool, Cluster, Raw, Server};
use seshat_protocol_resp::Frame;

const PASSWORD: &str = "s3cret-pw";
const NOAUTH: &str = "NOAUTH Authentication required.";
const WRONGPASS: &str = "WRONGPASS invalid username-password pair or user is disabled.";

/// A request for `decl` with as many filler arguments as its arity needs.
fn request_for(decl: &seshat_commands::Decl) -> Vec<String> {
    let mut args: Vec<String> = decl.name.split('|').map(str::to_string).collect();
    while args.len() < decl.arity.unsigned_abs() as usize {
        args.push("x".into());
    }
    args
}

#[test]
fn without_the_password_every_command_but_auth_hello_quit_gets_noauth() {
    let server = Server::start_with(&["--requirepass", PASSWORD]);
    let mut c = Raw::connect(server.port);
    let mut checked = 0;
    for decl in seshat_commands::all_with_subcommands() {
        if !decl.subcommands.is_empty() || ["auth", "hello", "quit"].contains(&decl.name) {
            continue;
        }
        let args = request_for(decl);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_eq!(c.call(&args), error(NOAUTH), "{args:?}");
        checked += 1;
    }
    assert!(checked > 150, "only {checked} commands checked");
    // Unknown commands and wrong arities are answered first, as in Redis.
    assert!(
        matches!(c.call(&["NOSUCHCOMMAND"]), Frame::Error(e) if e.starts_with(b"ERR unknown command"))
    );
    assert_eq!(
        c.call(&["GET"]),
        error("ERR wrong number of arguments for 'get' command")
    );
    // Nothing was written.
    let mut c = server.conn();
    let n: i64 = redis::cmd("DBSIZE").query(&mut c).unwrap();
    assert_eq!(n, 0);
}

#[test]
fn auth_with_the_wrong_password_keeps_the_connection_open() {
    let server = Server::start_with(&["--requirepass", PASSWORD]);
    let mut c = Raw::connect(server.port);
    assert_eq!(c.call(&["SET", "k", "v"]), error(NOAUTH));
    assert_eq!(c.call(&["AUTH", "wrong"]), error(WRONGPASS));
    assert_eq!(c.call(&["AUTH", "default", "wrong"]), error(WRONGPASS));
    assert_eq!(c.call(&["AUTH", "someone", PASSWORD]), error(WRONGPASS));
    assert_eq!(c.call(&["AUTH", "a", "b", "c"]), error("ERR syntax error"));
    assert_eq!(c.call(&["GET", "k"]), error(NOAUTH));
    assert_eq!(c.call(&["AUTH", PASSWORD]), Frame::ok());
    assert_eq!(c.call(&["SET", "k", "v"]), Frame::ok());
    // A failed AUTH later does not log the client out (Redis).
    assert_eq!(c.call(&["AUTH", "wrong"]), error(WRONGPASS));
    assert_eq!(c.call(&["GET", "k"]), Frame::bulk("v"));
    // QUIT needs no authentication.
    let mut q = Raw::connect(server.port);
    assert_eq!(q.call(&["QUIT"]), Frame::ok());
    assert_eq!(q.try_reply(), None);
}

#[test]
fn auth_with_the_default_user_and_hello_auth_log_in() {
    let server = Server::start_with(&["--requirepass", PASSWORD]);
    let mut c = Raw::connect(server.port);
    assert_eq!(c.call(&["AUTH", "default", PASSWORD]), Frame::ok());
    assert_eq!(c.call(&["SET", "k", "v"]), Frame::ok());

    let mut h = Raw::connect(server.port);
    let Frame::Error(e) = h.call(&["HELLO", "3"]) else {
        panic!("HELLO without AUTH must be refused");
    };
    assert!(e.starts_with(b"NOAUTH HELLO must be called with the client already authenticated"));
    assert_eq!(
        h.call(&["HELLO", "3", "AUTH", "default", "wrong"]),
        error(WRONGPASS)
    );
    let Frame::Map(fields) = h.call(&["HELLO", "3", "AUTH", "default", PASSWORD]) else {
        panic!("HELLO 3 answers a map");
    };
    assert!(fields.contains(&(Frame::bulk("proto"), Frame::Integer(3))));
    assert_eq!(h.call(&["GET", "k"]), Frame::bulk("v"));

    // The redis crate sends HELLO 3 AUTH for a RESP3 URL with a password.
    let url = format!(
        "redis://default:{PASSWORD}@127.0.0.1:{}/?protocol=resp3",
        server.port
    );
    let mut r = redis::Client::open(url).unwrap().get_connection().unwrap();
    let v: String = redis::cmd("GET").arg("k").query(&mut r).unwrap();
    assert_eq!(v, "v");
}

#[test]
fn without_a_password_auth_says_none_is_configured() {
    let server = Server::start();
    let mut c = Raw::connect(server.port);
    assert_eq!(
        c.call(&["AUTH", "foo"]),
        error("ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?")
    );
    // As Redis's nopass default user: any password for `default`.
    assert_eq!(c.call(&["AUTH", "default", "anything"]), Frame::ok());
    assert_eq!(c.call(&["AUTH", "nobody", "anything"]), error(WRONGPASS));
    assert!(matches!(
        c.call(&["HELLO", "3", "AUTH", "default", "x"]),
        Frame::Map(_)
    ));
}

#[test]
fn config_set_requirepass_changes_the_password_at_run_time() {
    let server = Server::start();
    let mut old = Raw::connect(server.port);
    assert_eq!(old.call(&["SET", "k", "v"]), Frame::ok());
    assert_eq!(
        old.call(&["CONFIG", "SET", "requirepass", "first"]),
        Frame::ok()
    );
    // Connections made before the password stay authenticated.
    assert_eq!(old.call(&["GET", "k"]), Frame::bulk("v"));
    let mut new = Raw::connect(server.port);
    assert_eq!(new.call(&["GET", "k"]), error(NOAUTH));
    assert_eq!(new.call(&["AUTH", "first"]), Frame::ok());
    assert_eq!(
        new.call(&["CONFIG", "SET", "requirepass", "second"]),
        Frame::ok()
    );
    let mut third = Raw::connect(server.port);
    assert_eq!(third.call(&["AUTH", "first"]), error(WRONGPASS));
    assert_eq!(third.call(&["AUTH", "second"]), Frame::ok());
    // The password is not shown; protected-mode is.
    assert_eq!(
        third.call(&["CONFIG", "GET", "requirepass"]),
        Frame::Array(vec![])
    );
    // An empty password removes it: even a connection that never
    // authenticated may now run commands.
    let mut waiting = Raw::connect(server.port);
    assert_eq!(waiting.call(&["GET", "k"]), error(NOAUTH));
    assert_eq!(
        third.call(&["CONFIG", "SET", "requirepass", ""]),
        Frame::ok()
    );
    assert_eq!(waiting.call(&["GET", "k"]), Frame::bulk("v"));
}

#[test]
fn unauthenticated_clients_may_only_send_small_requests() {
    let server = Server::start_with(&["--requirepass", PASSWORD]);
    for (request, reply) in [
        (
            &b"*100\r\n"[..],
            "ERR Protocol error: unauthenticated multibulk length",
        ),
        (
            &b"*1\r\n$100000000\r\n"[..],
            "ERR Protocol error: unauthenticated bulk length",
        ),
    ] {
        let mut c = Raw::connect(server.port);
        c.stream.write_all(request).unwrap();
        assert_eq!(c.reply(), error(reply));
        assert_eq!(c.try_reply(), None, "the connection is closed");
    }
    // Once authenticated, the usual limits.
    let mut c = Raw::connect(server.port);
    assert_eq!(c.call(&["AUTH", PASSWORD]), Frame::ok());
    let big = "x".repeat(20_000);
    assert_eq!(c.call(&["SET", "big", &big]), Frame::ok());
    let keys: Vec<String> = (0..20).map(|i| format!("k{i}")).collect();
    let mut args = vec!["DEL"];
    args.extend(keys.iter().map(String::as_str));
    assert_eq!(c.call(&args), Frame::Integer(0));
}

#[test]
fn failed_attempts_are_counted_in_metrics_and_info() {
    let server = Server::start_with(&["--requirepass", PASSWORD]);
    let mut c = Raw::connect(server.port);
    for _ in 0..3 {
        assert_eq!(c.call(&["AUTH", "nope"]), error(WRONGPASS));
    }
    assert_eq!(
        c.call(&["HELLO", "2", "AUTH", "default", "nope"]),
        error(WRONGPASS)
    );
    assert_eq!(c.call(&["AUTH", PASSWORD]), Frame::ok());
    let mut http = TcpStream::connect(("127.0.0.1", server.http_port)).unwrap();
    write!(http, "GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
    let mut body = String::new();
    http.read_to_string(&mut body).unwrap();
    assert!(
        body.contains("auth_failures_total{node_id=\"1\"} 4"),
        "{body}"
    );
    let Frame::Bulk(info) = c.call(&["INFO", "stats"]) else {
        panic!("INFO answers text");
    };
    assert!(String::from_utf8_lossy(&info).contains("acl_access_denied_auth:4"));
    assert!(server.log().contains("authentication failed"));
    assert!(
        !server.log().contains(PASSWORD),
        "the password is never logged"
    );
}

#[test]
fn redis_cli_authenticates_with_dash_a() {
    if !have_tool("redis-cli") {
        return;
    }
    let server = Server::start_with(&["--requirepass", PASSWORD]);
    let port = server.port.to_string();
    let cli = |extra: &[&str]| {
        let out = Command::new("redis-cli")
            .args(["-p", &port, "--no-auth-warning"])
            .args(extra)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(cli(&["SET", "k", "v"]), NOAUTH);
    assert_eq!(cli(&["-a", "wrong", "SET", "k", "v"]), NOAUTH);
    assert_eq!(cli(&["-a", PASSWORD, "SET", "k", "v"]), "OK");
    assert_eq!(
        cli(&["--user", "default", "--pass", PASSWORD, "GET", "k"]),
        "v"
    );
    assert_eq!(cli(&["-a", PASSWORD, "-3", "GET", "k"]), "v");
}

/// Runs `seshat` with its client port on 0.0.0.0 and `extra`; `Ok` with
/// the process (and its data directory) once it answers on loopback,
/// `Err` with its stderr if it exits first.
fn start_open(
    port: u16,
    extra: &[&str],
) -> Result<(std::process::Child, tempfile::TempDir), String> {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_seshat"))
        .args(["--client-addr", &format!("0.0.0.0:{port}")])
        .args(["--raft-addr", &format!("127.0.0.1:{}", common::free_port())])
        .args(["--http-addr", &format!("127.0.0.1:{}", common::free_port())])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(extra)
        .env_remove("SESHAT_REQUIREPASS")
        .env_remove("SESHAT_PROTECTED_MODE")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + common::START_TIMEOUT;
    loop {
        if child.try_wait().unwrap().is_some() {
            let mut err = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            return Err(err);
        }
        if let Ok(reply) = common::raw_roundtrip(port, b"PING\r\n") {
            if reply == b"+PONG\r\n" || reply.starts_with(b"-NOAUTH") {
                return Ok((child, dir));
            }
        }
        assert!(std::time::Instant::now() < deadline, "no answer on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn protected_mode_refuses_an_open_address_without_a_password() {
    let port = common::free_port();
    let err = start_open(port, &[]).expect_err("protected mode must refuse 0.0.0.0");
    assert!(err.contains("protected mode"), "{err}");
    for way_out in [
        &format!("--client-addr 127.0.0.1:{port}")[..],
        "--requirepass",
        "--protected-mode no",
    ] {
        assert!(err.contains(way_out), "{err}");
    }
    // A password, or protected mode turned off, lets it start.
    let (mut node, _dir) = start_open(port, &["--requirepass", PASSWORD]).unwrap();
    let mut c = Raw::connect(port);
    assert_eq!(c.call(&["PING"]), error(NOAUTH));
    assert_eq!(c.call(&["AUTH", PASSWORD]), Frame::ok());
    // Removing the password at run time would leave it open: refused.
    let Frame::Error(e) = c.call(&["CONFIG", "SET", "requirepass", ""]) else {
        panic!("protected mode must refuse to drop the password");
    };
    assert!(e.starts_with(
        b"ERR CONFIG SET failed (possibly related to argument 'requirepass') - protected mode"
    ));
    assert_eq!(c.call(&["PING"]), Frame::simple("PONG"));
    node.kill().unwrap();
    node.wait().unwrap();

    let port = common::free_port();
    let (mut node, _dir) = start_open(port, &["--protected-mode", "no"]).unwrap();
    let mut c = Raw::connect(port);
    assert_eq!(c.call(&["PING"]), Frame::simple("PONG"));
    assert_eq!(
        c.call(&["CONFIG", "GET", "protected-mode"]),
        Frame::Array(vec![Frame::bulk("protected-mode"), Frame::bulk("no")])
    );
    node.kill().unwrap();
    node.wait().unwrap();
}

#[test]
fn a_cluster_with_a_password_redirects_clients_that_authenticate_again() {
    let cluster = Cluster::start_with(3, &["--requirepass", PASSWORD]);
    let leader = cluster.wait_for_leader(Duration::from_secs(30));
    let follower = &cluster.nodes[(leader + 1) % 3];

    // By hand: AUTH on the follower, MOVED, AUTH again on the leader.
    let mut c = Raw::connect(follower.port);
    assert_eq!(c.call(&["SET", "k", "v"]), error(NOAUTH));
    assert_eq!(c.call(&["AUTH", PASSWORD]), Frame::ok());
    let Frame::Error(moved) = c.call(&["SET", "k", "v"]) else {
        panic!("a follower redirects");
    };
    let moved = String::from_utf8_lossy(&moved).into_owned();
    let target = moved.rsplit(' ').next().unwrap();
    assert!(moved.starts_with("MOVED "), "{moved}");
    let port: u16 = target.rsplit(':').next().unwrap().parse().unwrap();
    assert_eq!(port, cluster.nodes[leader].port);
    let mut l = Raw::connect(port);
    assert_eq!(l.call(&["SET", "k", "v"]), error(NOAUTH));
    assert_eq!(l.call(&["AUTH", PASSWORD]), Frame::ok());
    assert_eq!(l.call(&["SET", "k", "v"]), Frame::ok());

    // The redis crate's cluster client, given the password, follows MOVED
    // and authenticates on every node it connects to.
    let client = redis::cluster::ClusterClientBuilder::new(vec![follower.url_without_password()])
        .password(PASSWORD.to_string())
        .build()
        .unwrap();
    let mut cc = client.get_connection().unwrap();
    for i in 0..20 {
        let _: () = redis::cmd("SET")
            .arg(format!("key{i}"))
            .arg(i)
            .query(&mut cc)
            .unwrap();
    }
    let v: i64 = redis::cmd("GET").arg("key7").query(&mut cc).unwrap();
    assert_eq!(v, 7);
    // Without the password it gets nowhere.
    let anonymous =
        redis::cluster::ClusterClient::new(vec![follower.url_without_password()]).unwrap();
    assert!(anonymous.get_connection().is_err());
}

#[test]
fn a_proxying_follower_forwards_only_authenticated_commands() {
    let cluster = Cluster::start_with(3, &["--requirepass", PASSWORD, "--follower-mode", "proxy"]);
    let leader = cluster.wait_for_leader(Duration::from_secs(30));
    let follower = &cluster.nodes[(leader + 1) % 3];
    let mut c = Raw::connect(follower.port);
    assert_eq!(c.call(&["SET", "k", "v"]), error(NOAUTH));
    assert_eq!(c.call(&["AUTH", PASSWORD]), Frame::ok());
    assert_eq!(c.call(&["SET", "k", "v"]), Frame::ok());
    assert_eq!(c.call(&["GET", "k"]), Frame::bulk("v"));
}
