//! Test support: real `seshat` processes on free loopback ports.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub mod pki;

/// How long a node may take to start answering PING.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Ports handed out by [`free_port`]: below Linux's ephemeral range
/// (32768–60999), so the kernel never gives one to an outgoing connection.
const PORT_RANGE: std::ops::Range<u32> = 20_000..32_000;

/// A free TCP port on 127.0.0.1 (bound then released), never the same
/// twice in one test process. Regression: ports from the ephemeral range
/// (`bind :0`) could be taken by another test's client connection while a
/// killed node was down, and its restart on the same port then failed.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let span = PORT_RANGE.end - PORT_RANGE.start;
    // Test binaries run one after another, but spread them anyway.
    let offset = (std::process::id() % 97) * 120;
    for _ in 0..span {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = PORT_RANGE.start + (offset + n) % span;
        let port = u16::try_from(port).expect("port range fits u16");
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {PORT_RANGE:?}");
}

/// A `seshat` process with its own data directory.
pub struct Server {
    child: Option<Child>,
    pub node_id: u64,
    pub initial_members: Option<String>,
    pub port: u16,
    pub raft_port: u16,
    pub http_port: u16,
    /// The TLS client port, when the node serves TLS (it takes it from its
    /// `--initial-members` entry, or from a `--tls-port` in `extra_args`).
    pub tls_port: Option<u16>,
    pub dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    pub extra_args: Vec<String>,
    /// `RLIMIT_NOFILE` (soft, hard) to run under, set by prlimit(1).
    pub nofile: Option<(u64, u64)>,
    /// The Raft address it joins through (`--join`), for a node that
    /// joined a running cluster.
    pub join: Option<String>,
}

impl Server {
    /// Starts a one-node server in a fresh temporary directory.
    pub fn start() -> Server {
        Self::start_with(&[])
    }

    /// Starts a one-node server with extra flags.
    pub fn start_with(extra: &[&str]) -> Server {
        let mut s = Self::spawn_with(extra);
        s.wait_ready();
        s
    }

    /// Spawns a one-node server in a fresh directory without waiting for
    /// it to answer.
    pub fn spawn_with(extra: &[&str]) -> Server {
        Self::spawn_with_nofile(None, extra)
    }

    /// Spawns a one-node server under the open-file limit `nofile` (soft,
    /// hard) without waiting for it to answer.
    pub fn spawn_with_nofile(nofile: Option<(u64, u64)>, extra: &[&str]) -> Server {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().to_path_buf();
        let mut s = Server {
            child: None,
            node_id: 1,
            initial_members: None,
            port: free_port(),
            raft_port: free_port(),
            http_port: free_port(),
            tls_port: None,
            dir,
            _tmp: Some(tmp),
            extra_args: extra.iter().map(|s| s.to_string()).collect(),
            nofile,
            join: None,
        };
        s.spawn();
        s
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("seshat.log"))
            .expect("log file");
        let mut cmd = match self.nofile {
            // prlimit execs the server: the child's pid is the server's.
            Some((soft, hard)) => {
                let mut c = Command::new("prlimit");
                c.arg(format!("--nofile={soft}:{hard}"))
                    .arg("--")
                    .arg(env!("CARGO_BIN_EXE_seshat"));
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_seshat")),
        };
        if let Some(members) = &self.initial_members {
            cmd.arg("--node-id")
                .arg(self.node_id.to_string())
                .arg("--initial-members")
                .arg(members);
        }
        if let Some(join) = &self.join {
            cmd.arg("--join").arg(join);
        }
        let child = cmd
            .arg("--client-addr")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--raft-addr")
            .arg(format!("127.0.0.1:{}", self.raft_port))
            .arg("--http-addr")
            .arg(format!("127.0.0.1:{}", self.http_port))
            .arg("--data-dir")
            .arg(self.data_dir())
            .args(&self.extra_args)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn seshat");
        self.child = Some(child);
    }

    /// The server's log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("seshat.log")).unwrap_or_default()
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// True while the process runs.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// INFO's `name:value` field, if the node answers.
    pub fn info_field(&self, name: &str) -> Option<String> {
        let mut c = redis::Client::open(self.url())
            .ok()?
            .get_connection_with_timeout(Duration::from_secs(2))
            .ok()?;
        let info: String = redis::cmd("INFO").arg("raft").query(&mut c).ok()?;
        info.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .map(|v| v.trim().to_string())
    }

    /// Waits until the server answers PING.
    pub fn wait_ready(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("seshat exited during start ({status}):\n{}", self.log());
                }
            }
            if let Ok(reply) = raw_roundtrip(self.port, b"PING\r\n") {
                // With --requirepass an unauthenticated PING is refused,
                // which says as much: the node serves clients.
                if reply == b"+PONG\r\n" || reply.starts_with(b"-NOAUTH") {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "seshat did not answer PING in time:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `kill -9`: no chance to flush anything.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        signal(child.id(), "TERM");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "seshat ignored SIGTERM:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the process to exit by itself, up to `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("seshat still running after {timeout:?}:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts the process again without waiting for it to answer.
    pub fn respawn(&mut self) {
        assert!(self.child.is_none(), "stop the server first");
        self.spawn();
    }

    /// Starts the process again on the same ports and data directory.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop the server first");
        self.spawn();
        self.wait_ready();
    }

    /// The client URL, with the password when the node was started with
    /// `--requirepass` (so helpers such as [`Server::conn`] authenticate).
    pub fn url(&self) -> String {
        match self.password() {
            Some(p) => format!("redis://:{p}@127.0.0.1:{}/", self.port),
            None => self.url_without_password(),
        }
    }

    /// The client URL without credentials.
    pub fn url_without_password(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The `--requirepass` this node was started with, if any.
    pub fn password(&self) -> Option<&str> {
        let args = &self.extra_args;
        args.iter().enumerate().find_map(|(i, a)| match a.as_str() {
            "--requirepass" => args.get(i + 1).map(String::as_str),
            _ => a.strip_prefix("--requirepass="),
        })
    }

    /// A synchronous redis-crate connection (RESP2).
    pub fn conn(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .expect("client")
            .get_connection()
            .expect("connect")
    }

    /// A synchronous redis-crate connection speaking RESP3.
    pub fn conn_resp3(&self) -> redis::Connection {
        redis::Client::open(format!("{}?protocol=resp3", self.url()))
            .expect("client")
            .get_connection()
            .expect("connect")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A plain HTTP/1.0 GET to 127.0.0.1:`port`; returns (status, body).
#[allow(dead_code)] // not every test binary reads HTTP
pub fn http_get(port: u16, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    http_response(&text)
}

/// The status and body of an HTTP/1 response (status 0 if it is none).
fn http_response(text: &str) -> (u16, String) {
    let status = text
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// An HTTPS/1.0 GET to 127.0.0.1:`port` (rustls, server name
/// `localhost`) trusting the CA certificates in `ca`, presenting the
/// client certificate and key `client` if given; (status, body), or why
/// the connection failed (handshake refused, certificate not trusted…).
#[allow(dead_code)] // not every test binary reads HTTPS
pub fn https_get(
    port: u16,
    path: &str,
    ca: &Path,
    client: Option<(&Path, &Path)>,
) -> Result<(u16, String), String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    let config = match client {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                CertificateDer::pem_file_iter(cert)
                    .unwrap()
                    .collect::<Result<Vec<_>, _>>()
                    .unwrap(),
                PrivateKeyDer::from_pem_file(key).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    let name = ServerName::try_from("localhost").unwrap();
    let tls = rustls::ClientConnection::new(std::sync::Arc::new(config), name).unwrap();
    let socket = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut stream = rustls::StreamOwned::new(tls, socket);
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").map_err(|e| e.to_string())?;
    let mut text = Vec::new();
    // A server that closes without close_notify still sent its response.
    if let Err(e) = stream.read_to_end(&mut text) {
        if text.is_empty() {
            return Err(e.to_string());
        }
    }
    let text = String::from_utf8_lossy(&text);
    match http_response(&text) {
        (0, _) => Err(format!("not an HTTP response: {text:?}")),
        response => Ok(response),
    }
}

/// Sends `signal` (e.g. "TERM") to `pid` with kill(1).
pub fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal} {pid} failed");
}

/// Writes `request` to a new connection and reads the reply until the
/// server pauses (200 ms) or closes.
pub fn raw_roundtrip(port: u16, request: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_millis(500)))?;
    s.write_all(request)?;
    read_available(&mut s)
}

/// Reads until the peer closes or is quiet for the read timeout.
pub fn read_available(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Ok(out),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return Ok(out)
            }
            // A signal reached the test process (another test's child
            // exiting, for one): read again.
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Reads exactly `n` bytes (or fails after 10 s).
pub fn read_exact_timeout(s: &mut TcpStream, n: usize) -> Vec<u8> {
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut out = vec![0u8; n];
    s.read_exact(&mut out).expect("read reply");
    out
}

/// True when `tool` is on PATH. In CI a missing tool is a failure; on a
/// developer machine the test says it was skipped.
pub fn have_tool(tool: &str) -> bool {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !found {
        assert!(
            std::env::var("CI").is_err(),
            "{tool} is required in CI (scripts/deps.sh installs it)"
        );
        eprintln!("SKIPPED: {tool} is not installed (run scripts/deps.sh)");
    }
    found
}

/// Path helper for readability.
/// Whether python3 with redis-py is here; outside CI its absence skips a
/// test with a message, in CI it fails the test.
pub fn redis_py_available() -> bool {
    if !have_tool("python3") {
        return false;
    }
    let ok = Command::new("python3")
        .args(["-c", "import redis"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(std::env::var("CI").is_err(), "redis-py is required in CI");
        eprintln!("SKIPPED: redis-py not installed");
    }
    ok
}

pub fn exists(p: &Path) -> bool {
    p.exists()
}

/// A cluster of real `seshat` processes on loopback.
pub struct Cluster {
    pub nodes: Vec<Server>,
}

impl Cluster {
    /// Starts `n` nodes bootstrapped with the same `--initial-members`.
    pub fn start(n: usize) -> Cluster {
        Self::start_with(n, &[])
    }

    /// Starts `n` nodes with extra flags on every node.
    pub fn start_with(n: usize, extra: &[&str]) -> Cluster {
        Self::start_members(n, extra, false)
    }

    /// Starts `n` nodes, node `i` (from 0) with `extra` plus
    /// `only(i)`: a cluster whose nodes were not all started alike.
    pub fn start_with_each(
        n: usize,
        extra: &[&str],
        only: impl Fn(usize) -> Vec<String>,
    ) -> Cluster {
        Self::start_members_each(n, extra, false, only)
    }

    /// Starts `n` nodes, each with a TLS client port listed in
    /// `--initial-members` (`ID=RAFT/CLIENT/TLS`); `extra` must give the
    /// certificate flags.
    pub fn start_tls(n: usize, extra: &[&str]) -> Cluster {
        Self::start_members(n, extra, true)
    }

    fn start_members(n: usize, extra: &[&str], tls: bool) -> Cluster {
        Self::start_members_each(n, extra, tls, |_| Vec::new())
    }

    fn start_members_each(
        n: usize,
        extra: &[&str],
        tls: bool,
        only: impl Fn(usize) -> Vec<String>,
    ) -> Cluster {
        let mut nodes: Vec<Server> = (1..=n)
            .map(|i| {
                let tmp = tempfile::tempdir().expect("tempdir");
                Server {
                    child: None,
                    node_id: i as u64,
                    initial_members: None,
                    port: free_port(),
                    raft_port: free_port(),
                    http_port: free_port(),
                    tls_port: tls.then(free_port),
                    dir: tmp.path().to_path_buf(),
                    _tmp: Some(tmp),
                    extra_args: extra
                        .iter()
                        .map(|s| s.to_string())
                        .chain(only(i - 1))
                        .collect(),
                    nofile: None,
                    join: None,
                }
            })
            .collect();
        let members = nodes
            .iter()
            .map(|s| {
                let tls = s
                    .tls_port
                    .map(|p| format!("/127.0.0.1:{p}"))
                    .unwrap_or_default();
                format!(
                    "{}=127.0.0.1:{}/127.0.0.1:{}{tls}",
                    s.node_id, s.raft_port, s.port
                )
            })
            .collect::<Vec<_>>()
            .join(",");
        for s in nodes.iter_mut() {
            s.initial_members = Some(members.clone());
            s.spawn();
        }
        for s in nodes.iter_mut() {
            s.wait_ready();
        }
        let cluster = Cluster { nodes };
        if extra.contains(&"--shards") {
            // Groups lead on different nodes, some nodes hold no replica
            // of the first: wait for every slot to be served instead.
            cluster.wait_cluster_ok(Duration::from_secs(30));
        } else {
            cluster.wait_for_leader(Duration::from_secs(30));
        }
        cluster
    }

    /// Starts a new node that joins the cluster through node `via`'s Raft
    /// address (`--join`), waits until it answers and learns the id the
    /// cluster gave it. Returns its index in `nodes`.
    pub fn join(&mut self, via: usize, extra: &[&str]) -> usize {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut s = Server {
            child: None,
            node_id: 0,
            initial_members: None,
            port: free_port(),
            raft_port: free_port(),
            http_port: free_port(),
            tls_port: None,
            dir: tmp.path().to_path_buf(),
            _tmp: Some(tmp),
            extra_args: extra.iter().map(|s| s.to_string()).collect(),
            nofile: None,
            join: Some(format!("127.0.0.1:{}", self.nodes[via].raft_port)),
        };
        s.spawn();
        s.wait_ready();
        let name: String = redis::cmd("CLUSTER")
            .arg("MYID")
            .query(&mut s.conn())
            .expect("CLUSTER MYID");
        s.node_id = u64::from_str_radix(&name, 16).expect("a node name is its id in hex");
        self.nodes.push(s);
        self.nodes.len() - 1
    }

    /// Polls `done` every 50 ms until it holds; after `timeout` fails
    /// naming `what`, with every node's log.
    pub fn wait_until(&self, what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + timeout;
        while !done() {
            assert!(
                Instant::now() < deadline,
                "{what}: not within {timeout:?}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until `CLUSTER INFO` on every running node says every slot is
    /// served.
    pub fn wait_cluster_ok(&self, timeout: Duration) {
        self.wait_until("every slot served on every node", timeout, || {
            self.nodes.iter().filter(|n| n.is_running()).all(|n| {
                redis::cmd("CLUSTER")
                    .arg("INFO")
                    .query::<String>(&mut n.conn())
                    .is_ok_and(|i| i.contains("cluster_state:ok"))
            })
        });
    }

    /// The index of the node every running node agrees leads, waiting up to
    /// `timeout`.
    pub fn wait_for_leader(&self, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(i) = self.agreed_leader() {
                return i;
            }
            assert!(
                Instant::now() < deadline,
                "no agreed leader within {timeout:?}:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The leader index if every running node names the same leader and
    /// that node says it leads.
    pub fn agreed_leader(&self) -> Option<usize> {
        let mut leader: Option<u64> = None;
        for s in self.nodes.iter().filter(|s| s.is_running()) {
            let l: u64 = s.info_field("raft_leader_id")?.parse().ok()?;
            if leader.is_some_and(|x| x != l) {
                return None;
            }
            leader = Some(l);
        }
        let idx = self.nodes.iter().position(|s| Some(s.node_id) == leader)?;
        let node = &self.nodes[idx];
        (node.is_running() && node.info_field("raft_role").as_deref() == Some("Leader"))
            .then_some(idx)
    }

    /// Every node's log, for failure messages.
    pub fn logs(&self) -> String {
        // Whole logs kept for a post-mortem when asked.
        if let Ok(dir) = std::env::var("SESHAT_TEST_LOG_DIR") {
            let _ = std::fs::create_dir_all(&dir);
            for s in &self.nodes {
                let _ = std::fs::write(
                    format!("{dir}/{}-node-{}.log", std::process::id(), s.node_id),
                    s.log(),
                );
            }
        }
        self.nodes
            .iter()
            .map(|s| format!("---- node {} ----\n{}", s.node_id, tail(&s.log(), 40)))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A current-thread tokio runtime for tests that drive async clients.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A numeric field of `INFO <section>` on `conn`.
pub fn info_number(conn: &mut redis::Connection, section: &str, field: &str) -> u64 {
    let text: String = redis::cmd("INFO").arg(section).query(conn).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("INFO {section} has no {field}:\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

/// Node `i`'s numeric `INFO raft` field.
pub fn info_u64(cluster: &Cluster, i: usize, field: &str) -> u64 {
    cluster.nodes[i]
        .info_field(field)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("node {i} has no {field}:\n{}", cluster.logs()))
}

/// `SET key value` on node `i`.
pub fn set(cluster: &Cluster, i: usize, key: &str, value: &str) {
    let mut c = cluster.nodes[i].conn();
    let _: () = redis::cmd("SET")
        .arg(key)
        .arg(value)
        .query(&mut c)
        .unwrap_or_else(|e| panic!("SET on node {i}: {e}\n{}", cluster.logs()));
}

/// `GET key` on node `i`.
pub fn get(cluster: &Cluster, i: usize, key: &str) -> Option<String> {
    let mut c = cluster.nodes[i].conn();
    redis::cmd("GET")
        .arg(key)
        .query(&mut c)
        .unwrap_or_else(|e| panic!("GET on node {i}: {e}\n{}", cluster.logs()))
}

/// A RESP connection that sends commands and decodes one reply each.
pub struct Raw {
    pub stream: TcpStream,
    buf: bytes::BytesMut,
}

impl Raw {
    pub fn connect(port: u16) -> Raw {
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Raw {
            stream,
            buf: bytes::BytesMut::new(),
        }
    }

    pub fn call(&mut self, args: &[&str]) -> seshat_protocol_resp::Frame {
        self.send(args).unwrap();
        self.reply()
    }

    fn send(&mut self, args: &[&str]) -> std::io::Result<()> {
        let mut out = format!("*{}\r\n", args.len());
        for a in args {
            out.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        self.stream.write_all(out.as_bytes())
    }

    /// Sends `args` and returns the reply; `None` if the server closed the
    /// connection instead.
    pub fn try_reply_after(&mut self, args: &[&str]) -> Option<seshat_protocol_resp::Frame> {
        self.send(args).ok()?;
        self.try_reply()
    }

    /// The next reply; `None` once the server closed the connection.
    pub fn try_reply(&mut self) -> Option<seshat_protocol_resp::Frame> {
        loop {
            if let Some((frame, used)) = seshat_protocol_resp::decode_frame(
                &self.buf,
                &seshat_protocol_resp::DecodeLimits::default(),
            )
            .unwrap()
            {
                let _ = self.buf.split_to(used);
                return Some(frame);
            }
            let mut chunk = [0u8; 4096];
            let n = match self.stream.read(&mut chunk) {
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return None,
                other => other.unwrap(),
            };
            if n == 0 {
                return None;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    pub fn reply(&mut self) -> seshat_protocol_resp::Frame {
        self.try_reply().expect("the server closed the connection")
    }
}

/// An error reply with `text`.
pub fn error(text: &str) -> seshat_protocol_resp::Frame {
    seshat_protocol_resp::Frame::error(bytes::Bytes::copy_from_slice(text.as_bytes()))
}

/// A `redis` crate cluster client seeded with `seeds` (`redis://…` URLs),
/// retrying redirects and elections.
pub fn cluster_client(seeds: Vec<String>) -> redis::cluster::ClusterConnection {
    redis::cluster::ClusterClient::builder(seeds)
        .retries(40)
        .connection_timeout(Duration::from_secs(2))
        .response_timeout(Duration::from_secs(5))
        .build()
        .unwrap()
        .get_connection()
        .unwrap()
}
