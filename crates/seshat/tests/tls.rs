//! TLS on the client port and the HTTP port, against real processes:
//! `redis-cli --tls`, the `redis` crate over rustls and redis-py
//! `ssl=True`; a plain client on the TLS port; client certificates;
//! certificate reload by SIGHUP and by `CONFIG SET`; an expired
//! certificate refused until a valid one is reloaded; a 3-node cluster
//! whose redirects send TLS clients to TLS ports; `/health` and
//! `/metrics` over HTTPS (`--http-tls yes`) with a rustls client and, if
//! installed, curl. Certificates are made by the `openssl` CLI in a temp
//! directory.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::pki::Pki;
use common::{free_port, have_tool, https_get, redis_py_available, Cluster, Server};

fn tools_present() -> bool {
    have_tool("openssl") && have_tool("redis-cli")
}

/// Starts one node with a TLS port and `flags` (certificate flags included).
fn tls_server(flags: &[String]) -> Server {
    let tls_port = free_port();
    let mut args = vec!["--tls-port".to_string(), tls_port.to_string()];
    args.extend(flags.iter().cloned());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut s = Server::start_with(&args);
    s.tls_port = Some(tls_port);
    s
}

/// `redis-cli --tls` with `tls_args` (CA, certificates) and the command;
/// (succeeded, stdout + stderr).
fn redis_cli_tls(port: u16, tls_args: &[String], cmd: &[&str]) -> (bool, String) {
    let out = Command::new("redis-cli")
        .args(["--tls", "-h", "127.0.0.1", "-p", &port.to_string()])
        .args(tls_args)
        .args(cmd)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text.trim().to_string())
}

/// A `redis` crate client over TLS trusting `ca`, with an optional client
/// certificate.
fn tls_client(port: u16, ca: &Path, client: Option<(&Path, &Path)>) -> redis::Client {
    let client_tls = client.map(|(cert, key)| redis::ClientTlsConfig {
        client_cert: std::fs::read(cert).unwrap(),
        client_key: std::fs::read(key).unwrap(),
    });
    redis::Client::build_with_tls(
        format!("rediss://127.0.0.1:{port}/"),
        redis::TlsCertificates {
            client_tls,
            root_cert: Some(std::fs::read(ca).unwrap()),
        },
    )
    .unwrap()
}

fn connect(client: &redis::Client) -> redis::RedisResult<redis::Connection> {
    client.get_connection_with_timeout(Duration::from_secs(5))
}

#[test]
fn tls_port_serves_redis_cli_and_the_redis_crate_beside_the_plain_port() {
    if !tools_present() {
        return;
    }
    let pki = Pki::standard();
    let s = tls_server(&pki.server_flags());
    let tls_port = s.tls_port.unwrap();
    let ca = vec!["--cacert".to_string(), pki.s("ca.crt")];

    let (ok, out) = redis_cli_tls(tls_port, &ca, &["PING"]);
    assert!(ok && out == "PONG", "{out}\n{}", s.log());
    let (_, out) = redis_cli_tls(tls_port, &ca, &["SET", "greeting", "hello"]);
    assert_eq!(out, "OK");

    let client = tls_client(tls_port, &pki.path("ca.crt"), None);
    let mut c = connect(&client).expect("TLS connection with the redis crate");
    let v: String = redis::cmd("GET").arg("greeting").query(&mut c).unwrap();
    assert_eq!(v, "hello");
    // A big pipelined exchange crosses many TLS records both ways.
    let big = "x".repeat(60_000);
    let mut pipe = redis::pipe();
    for i in 0..200 {
        pipe.cmd("SET").arg(format!("k{i}")).arg(&big).ignore();
    }
    pipe.cmd("DBSIZE");
    let (n,): (i64,) = pipe.query(&mut c).unwrap();
    assert_eq!(n, 201);

    // The plain port is unchanged, and sees the same data.
    let mut plain = s.conn();
    let v: String = redis::cmd("GET").arg("greeting").query(&mut plain).unwrap();
    assert_eq!(v, "hello");
    let cfg: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("tls-*")
        .query(&mut plain)
        .unwrap();
    let port_at = cfg.iter().position(|k| k == "tls-port").unwrap();
    assert_eq!(cfg[port_at + 1], tls_port.to_string());
    let auth_at = cfg.iter().position(|k| k == "tls-auth-clients").unwrap();
    assert_eq!(cfg[auth_at + 1], "no");
}

#[test]
fn plain_client_on_the_tls_port_is_dropped_and_the_server_keeps_serving() {
    if !tools_present() {
        return;
    }
    let pki = Pki::standard();
    let s = tls_server(&pki.server_flags());
    let tls_port = s.tls_port.unwrap();
    for _ in 0..3 {
        // Not a TLS ClientHello: the handshake fails and the socket closes
        // without a RESP reply.
        let reply = common::raw_roundtrip(tls_port, b"PING\r\n").unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&reply).contains("PONG"),
            "{reply:?}"
        );
    }
    // A client that connects and never speaks only holds a slot until the
    // handshake deadline; meanwhile others are served.
    let _silent = std::net::TcpStream::connect(("127.0.0.1", tls_port)).unwrap();
    let ca = vec!["--cacert".to_string(), pki.s("ca.crt")];
    let (ok, out) = redis_cli_tls(tls_port, &ca, &["PING"]);
    assert!(ok && out == "PONG", "{out}");
    assert_eq!(
        common::raw_roundtrip(s.port, b"PING\r\n").unwrap(),
        b"+PONG\r\n"
    );
    // A TLS client that does not trust the server's CA fails cleanly too.
    let other = Pki::new();
    other.ca("stranger");
    let client = tls_client(tls_port, &other.path("stranger.crt"), None);
    assert!(connect(&client).is_err());
    let (ok, out) = redis_cli_tls(tls_port, &ca, &["PING"]);
    assert!(ok && out == "PONG", "{out}");
}

#[test]
fn client_certificates_are_required_when_a_ca_is_given() {
    if !tools_present() {
        return;
    }
    let pki = Pki::standard();
    let mut flags = pki.server_flags();
    flags.extend(["--tls-ca-cert-file".into(), pki.s("ca.crt")]);
    let s = tls_server(&flags);
    let tls_port = s.tls_port.unwrap();
    let ca = vec!["--cacert".to_string(), pki.s("ca.crt")];

    // Default `tls-auth-clients yes`: no certificate, no service.
    let (ok, out) = redis_cli_tls(tls_port, &ca, &["PING"]);
    assert!(
        !(ok && out == "PONG"),
        "served without a client cert: {out}"
    );
    let client = tls_client(tls_port, &pki.path("ca.crt"), None);
    let refused = connect(&client).and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
    assert!(refused.is_err(), "{refused:?}");

    // A certificate signed by another CA is refused as well.
    pki.ca("other-ca");
    pki.leaf("other-ca", "intruder");
    let client = tls_client(
        tls_port,
        &pki.path("ca.crt"),
        Some((&pki.path("intruder.crt"), &pki.path("intruder.key"))),
    );
    let refused = connect(&client).and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
    assert!(refused.is_err(), "{refused:?}");

    // With the CA's client certificate: served.
    let mut with_cert = ca.clone();
    with_cert.extend([
        "--cert".into(),
        pki.s("client.crt"),
        "--key".into(),
        pki.s("client.key"),
    ]);
    let (ok, out) = redis_cli_tls(tls_port, &with_cert, &["PING"]);
    assert!(ok && out == "PONG", "{out}\n{}", s.log());
    let client = tls_client(
        tls_port,
        &pki.path("ca.crt"),
        Some((&pki.path("client.crt"), &pki.path("client.key"))),
    );
    let pong: String = redis::cmd("PING")
        .query(&mut connect(&client).unwrap())
        .unwrap();
    assert_eq!(pong, "PONG");
    drop(s);

    // `optional`: no certificate is fine, a bad one is not.
    flags.extend(["--tls-auth-clients".into(), "optional".into()]);
    let s = tls_server(&flags);
    let tls_port = s.tls_port.unwrap();
    let (ok, out) = redis_cli_tls(tls_port, &ca, &["PING"]);
    assert!(ok && out == "PONG", "{out}");
    let client = tls_client(
        tls_port,
        &pki.path("ca.crt"),
        Some((&pki.path("intruder.crt"), &pki.path("intruder.key"))),
    );
    let refused = connect(&client).and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
    assert!(refused.is_err(), "{refused:?}");
}

/// Waits until a new connection trusting `ca` succeeds.
fn wait_until_trusted(port: u16, ca: &Path) -> redis::Connection {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let client = tls_client(port, ca, None);
        if let Ok(mut c) = connect(&client) {
            if redis::cmd("PING").query::<String>(&mut c).is_ok() {
                return c;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no TLS connection trusting {}",
            ca.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn certificates_reload_on_sighup_and_config_set_without_dropping_clients() {
    if !tools_present() {
        return;
    }
    let pki = Pki::standard();
    pki.ca("ca2");
    pki.leaf("ca2", "server2");
    pki.ca("ca3");
    pki.leaf("ca3", "server3");
    // The node serves files at fixed paths, replaced in place.
    let live_crt = pki.path("live.crt");
    let live_key = pki.path("live.key");
    std::fs::copy(pki.path("server.crt"), &live_crt).unwrap();
    std::fs::copy(pki.path("server.key"), &live_key).unwrap();
    let flags = vec![
        "--tls-cert-file".to_string(),
        live_crt.display().to_string(),
        "--tls-key-file".into(),
        live_key.display().to_string(),
    ];
    let s = tls_server(&flags);
    let tls_port = s.tls_port.unwrap();
    let mut old = wait_until_trusted(tls_port, &pki.path("ca.crt"));
    redis::cmd("SET")
        .arg("k")
        .arg("before")
        .query::<()>(&mut old)
        .unwrap();

    // SIGHUP after replacing the files: new connections get the new
    // certificate, the old connection goes on.
    std::fs::copy(pki.path("server2.crt"), &live_crt).unwrap();
    std::fs::copy(pki.path("server2.key"), &live_key).unwrap();
    common::signal(s.pid().unwrap(), "HUP");
    let mut new = wait_until_trusted(tls_port, &pki.path("ca2.crt"));
    assert!(connect(&tls_client(tls_port, &pki.path("ca.crt"), None)).is_err());
    let v: String = redis::cmd("GET").arg("k").query(&mut old).unwrap();
    assert_eq!(v, "before");
    let v: String = redis::cmd("GET").arg("k").query(&mut new).unwrap();
    assert_eq!(v, "before");
    assert!(s
        .log()
        .contains("TLS certificate, key and CA files reloaded"));

    // A key that does not match the certificate is refused; the previous
    // configuration keeps serving.
    std::fs::copy(pki.path("server3.key"), &live_key).unwrap();
    common::signal(s.pid().unwrap(), "HUP");
    let err = redis::cmd("CONFIG")
        .arg("SET")
        .arg("tls-key-file")
        .arg(pki.s("server3.key"))
        .query::<()>(&mut new)
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("Unable to update TLS configuration"),
        "{err}"
    );
    wait_until_trusted(tls_port, &pki.path("ca2.crt"));

    // CONFIG SET both files: applied together.
    redis::cmd("CONFIG")
        .arg("SET")
        .arg("tls-cert-file")
        .arg(pki.s("server3.crt"))
        .arg("tls-key-file")
        .arg(pki.s("server3.key"))
        .query::<()>(&mut new)
        .unwrap();
    wait_until_trusted(tls_port, &pki.path("ca3.crt"));
    let cert: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("tls-cert-file")
        .query(&mut new)
        .unwrap();
    assert_eq!(
        cert,
        vec!["tls-cert-file".to_string(), pki.s("server3.crt")]
    );
    let v: String = redis::cmd("GET").arg("k").query(&mut old).unwrap();
    assert_eq!(v, "before");
}

#[test]
fn tls_cluster_redirects_tls_clients_to_tls_ports() {
    if !tools_present() {
        return;
    }
    let pki = Pki::standard();
    let flags = pki.server_flags();
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let cluster = Cluster::start_tls(3, &flags);
    let leader = cluster.wait_for_leader(Duration::from_secs(30));
    let leader_tls = cluster.nodes[leader].tls_port.unwrap();
    let ca = vec!["--cacert".to_string(), pki.s("ca.crt")];

    // A follower answers a TLS client with the leader's TLS port, a plain
    // client with its plain port.
    let follower = (leader + 1) % 3;
    let f = &cluster.nodes[follower];
    let (_, moved) = redis_cli_tls(f.tls_port.unwrap(), &ca, &["SET", "k", "v"]);
    assert!(
        moved.ends_with(&format!("127.0.0.1:{leader_tls}")),
        "{moved}"
    );
    let plain = common::raw_roundtrip(f.port, b"SET k v\r\n").unwrap();
    let plain = String::from_utf8_lossy(&plain);
    assert!(
        plain.contains(&format!("127.0.0.1:{}", cluster.nodes[leader].port)),
        "{plain}"
    );
    let (_, slots) = redis_cli_tls(f.tls_port.unwrap(), &ca, &["CLUSTER", "SLOTS"]);
    for n in &cluster.nodes {
        assert!(slots.contains(&n.tls_port.unwrap().to_string()), "{slots}");
    }
    let (_, nodes) = redis_cli_tls(f.tls_port.unwrap(), &ca, &["CLUSTER", "NODES"]);
    assert!(
        nodes.contains(&format!("127.0.0.1:{leader_tls}@")),
        "{nodes}"
    );

    // `redis-cli --tls -c` works through every node.
    for (i, n) in cluster.nodes.iter().enumerate() {
        let port = n.tls_port.unwrap();
        let mut c = vec!["-c".to_string()];
        c.extend(ca.iter().cloned());
        let key = format!("key-{i}");
        let (ok, out) = redis_cli_tls(port, &c, &["SET", &key, &format!("v{i}")]);
        assert!(ok && out == "OK", "node {i}: {out}\n{}", cluster.logs());
        let (_, out) = redis_cli_tls(port, &c, &["GET", &key]);
        assert_eq!(out, format!("v{i}"), "node {i}");
    }

    if redis_py_available() {
        let script = format!(
            r#"
import redis
from redis.cluster import RedisCluster
ca = "{ca}"
r = redis.Redis(host="127.0.0.1", port={leader_tls}, ssl=True, ssl_ca_certs=ca)
assert r.ping()
r.set("py", "tls")
assert r.get("py") == b"tls"
rc = RedisCluster(host="127.0.0.1", port={follower_tls}, ssl=True, ssl_ca_certs=ca)
rc.set("py-cluster", "ok")
assert rc.get("py-cluster") == b"ok"
for n in rc.get_nodes():
    assert n.port in ({ports}), n.port
print("ok")
"#,
            ca = pki.s("ca.crt"),
            follower_tls = f.tls_port.unwrap(),
            ports = cluster
                .nodes
                .iter()
                .map(|n| n.tls_port.unwrap().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        );
        let out = Command::new("python3")
            .args(["-c", &script])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "redis-py over TLS: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn bad_tls_files_stop_the_start_with_a_message() {
    if !tools_present() {
        return;
    }
    let pki = Pki::standard();
    let flags = [
        "--tls-port".to_string(),
        free_port().to_string(),
        "--tls-cert-file".into(),
        pki.s("server.crt"),
        "--tls-key-file".into(),
        pki.s("client.key"),
    ];
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let mut s = Server::spawn_with(&flags);
    let status = s.wait_exit(Duration::from_secs(30));
    assert!(!status.success());
    let log = s.log();
    assert!(log.contains("tls-cert-file"), "{log}");
}

/// Whether curl is here for the checks that use it (optional: the rustls
/// client covers the same ground).
fn curl_present() -> bool {
    let found = Command::new("curl")
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        eprintln!("SKIPPED (curl part only): curl is not installed");
    }
    found
}

/// `curl -sS` with `args` and the URL; (succeeded, stdout + stderr).
fn curl(args: &[String], url: &str) -> (bool, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .args(args)
        .arg(url)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text.trim().to_string())
}

/// Starts one node with `--http-tls yes` and `flags`.
fn https_server(flags: &[String]) -> Server {
    let mut args = vec!["--http-tls".to_string(), "yes".into()];
    args.extend(flags.iter().cloned());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Server::start_with(&args)
}

/// Waits until `/health` over HTTPS trusting `ca` answers 200.
fn wait_until_https_trusted(port: u16, ca: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let last = https_get(port, "/health", ca, None);
        if matches!(&last, Ok((200, _))) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no HTTPS trusting {}: {last:?}",
            ca.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn https_serves_health_and_metrics_and_drops_plain_http() {
    if !tools_present() {
        return;
    }
    let pki = Pki::standard();
    pki.ca("ca2");
    pki.leaf("ca2", "server2");
    let mut s = https_server(&pki.server_flags());
    let http = s.http_port;
    let ca = pki.path("ca.crt");

    let (status, body) = https_get(http, "/health", &ca, None).unwrap();
    assert_eq!((status, body.as_str()), (200, "ok\n"), "{}", s.log());
    let (status, body) = https_get(http, "/metrics", &ca, None).unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("raft_term{node_id=\"1\"}"), "{body}");
    assert_eq!(https_get(http, "/ready", &ca, None).unwrap().0, 200);
    // The server's certificate is checked: a client trusting another CA
    // refuses it.
    let refused = https_get(http, "/health", &pki.path("ca2.crt"), None);
    assert!(refused.is_err(), "{refused:?}");

    // Plain HTTP on the HTTPS port gets no HTTP response, and the port
    // goes on serving; so does a client that connects and never speaks.
    for _ in 0..3 {
        let reply =
            common::raw_roundtrip(http, b"GET /health HTTP/1.0\r\n\r\n").unwrap_or_default();
        let reply = String::from_utf8_lossy(&reply);
        assert!(!reply.contains("HTTP/1."), "{reply:?}");
    }
    let silent = std::net::TcpStream::connect(("127.0.0.1", http)).unwrap();
    let started = Instant::now();
    assert_eq!(https_get(http, "/health", &ca, None).unwrap().0, 200);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "HTTPS waited behind a silent handshake"
    );
    if curl_present() {
        let url = format!("https://localhost:{http}/health");
        let (ok, out) = curl(&["--cacert".into(), pki.s("ca.crt")], &url);
        assert!(ok && out == "ok", "{out}");
        let (ok, out) = curl(&[], &format!("http://127.0.0.1:{http}/health"));
        assert!(!ok, "plain HTTP on the HTTPS port answered: {out}");
    }

    // No TLS client port: only HTTPS serves the files, and CONFIG SET
    // reloads them for it.
    let mut plain = s.conn();
    let cfg: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("tls-port")
        .query(&mut plain)
        .unwrap();
    assert_eq!(cfg, ["tls-port", "0"]);
    redis::cmd("CONFIG")
        .arg("SET")
        .arg("tls-cert-file")
        .arg(pki.s("server2.crt"))
        .arg("tls-key-file")
        .arg(pki.s("server2.key"))
        .query::<()>(&mut plain)
        .unwrap();
    wait_until_https_trusted(http, &pki.path("ca2.crt"));
    assert!(https_get(http, "/health", &ca, None).is_err());

    // Shutdown is not held up by the handshake still pending.
    let started = Instant::now();
    assert!(s.terminate().success(), "{}", s.log());
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "shutdown took {:?}",
        started.elapsed()
    );
    drop(silent);
}

#[test]
fn https_requires_a_client_certificate_from_the_ca_like_the_tls_port() {
    if !tools_present() {
        return;
    }
    let pki = Pki::standard();
    pki.ca("other-ca");
    pki.leaf("other-ca", "intruder");
    let mut flags = pki.server_flags();
    flags.extend(["--tls-ca-cert-file".into(), pki.s("ca.crt")]);
    flags.extend(["--tls-port".into(), free_port().to_string()]);
    let s = https_server(&flags);
    let http = s.http_port;
    let ca = pki.path("ca.crt");
    let client = (pki.path("client.crt"), pki.path("client.key"));
    let intruder = (pki.path("intruder.crt"), pki.path("intruder.key"));

    let refused = https_get(http, "/metrics", &ca, None);
    assert!(
        refused.is_err(),
        "served without a client cert: {refused:?}"
    );
    let refused = https_get(http, "/metrics", &ca, Some((&intruder.0, &intruder.1)));
    assert!(refused.is_err(), "served another CA's cert: {refused:?}");
    let (status, body) = https_get(http, "/metrics", &ca, Some((&client.0, &client.1))).unwrap();
    assert_eq!(status, 200, "{}", s.log());
    assert!(body.contains("raft_term"), "{body}");
    if curl_present() {
        let url = format!("https://localhost:{http}/health");
        let ca_arg = vec!["--cacert".to_string(), pki.s("ca.crt")];
        let (ok, out) = curl(&ca_arg, &url);
        assert!(!ok, "served curl without a client cert: {out}");
        let mut with_cert = ca_arg.clone();
        with_cert.extend([
            "--cert".into(),
            pki.s("client.crt"),
            "--key".into(),
            pki.s("client.key"),
        ]);
        let (ok, out) = curl(&with_cert, &url);
        assert!(ok && out == "ok", "{out}");
    }
}

#[test]
fn http_tls_without_certificate_files_refuses_to_start() {
    let mut s = Server::spawn_with(&["--http-tls", "yes"]);
    let status = s.wait_exit(Duration::from_secs(30));
    assert!(!status.success());
    let log = s.log();
    assert!(
        log.contains("invalid setting http-tls = yes: needs tls-cert-file and tls-key-file"),
        "{log}"
    );
}

#[test]
fn an_expired_certificate_is_refused_until_a_valid_one_is_reloaded() {
    if !tools_present() {
        return;
    }
    let pki = Pki::standard();
    pki.expired_leaf("ca", "expired");
    let live_crt = pki.path("live.crt");
    let live_key = pki.path("live.key");
    std::fs::copy(pki.path("expired.crt"), &live_crt).unwrap();
    std::fs::copy(pki.path("expired.key"), &live_key).unwrap();
    let flags = vec![
        "--tls-cert-file".to_string(),
        live_crt.display().to_string(),
        "--tls-key-file".into(),
        live_key.display().to_string(),
        "--http-tls".into(),
        "yes".into(),
    ];
    let s = tls_server(&flags);
    let tls_port = s.tls_port.unwrap();
    let http = s.http_port;
    let ca = pki.path("ca.crt");
    let ca_arg = vec!["--cacert".to_string(), pki.s("ca.crt")];

    // Same CA, same names: only the dates are wrong, and every client
    // refuses the handshake.
    let (ok, out) = redis_cli_tls(tls_port, &ca_arg, &["PING"]);
    assert!(!(ok && out == "PONG"), "redis-cli took it: {out}");
    let err = connect(&tls_client(tls_port, &ca, None))
        .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
        .unwrap_err()
        .to_string();
    assert!(err.to_lowercase().contains("expired"), "{err}");
    let err = https_get(http, "/health", &ca, None).unwrap_err();
    assert!(err.to_lowercase().contains("expired"), "{err}");
    if curl_present() {
        let (ok, out) = curl(&ca_arg, &format!("https://localhost:{http}/health"));
        assert!(!ok && out.contains("expired"), "{out}");
    }
    // The node goes on serving plain clients.
    assert_eq!(
        common::raw_roundtrip(s.port, b"PING\r\n").unwrap(),
        b"+PONG\r\n"
    );

    // A valid certificate in place of the files, then SIGHUP: served on
    // both TLS listeners.
    std::fs::copy(pki.path("server.crt"), &live_crt).unwrap();
    std::fs::copy(pki.path("server.key"), &live_key).unwrap();
    common::signal(s.pid().unwrap(), "HUP");
    wait_until_trusted(tls_port, &ca);
    let (ok, out) = redis_cli_tls(tls_port, &ca_arg, &["PING"]);
    assert!(ok && out == "PONG", "{out}");
    wait_until_https_trusted(http, &ca);
    let (status, body) = https_get(http, "/metrics", &ca, None).unwrap();
    assert!(status == 200 && body.contains("raft_term"), "{body}");
}
