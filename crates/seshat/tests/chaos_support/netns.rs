//! Network namespaces, veth pairs, a bridge and iptables rules, created by
//! the test and removed on drop (and stale ones from earlier runs removed
//! at creation).
//!
//! Layout: namespace `<p>-br` holds bridge `br0`; node *i* lives in
//! namespace `<p>-n<i>` with address `10.<s>.0.<i>/24`; the test process
//! reaches the bridge through a veth with address `10.<s>.0.100`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Prefix of every namespace this harness creates.
pub const PREFIX: &str = "sxc";

fn run(args: &[&str]) -> Result<(), String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn run_ok(args: &[&str]) {
    if let Err(e) = run(args) {
        panic!("{e}");
    }
}

/// Why chaos tests cannot run here, if they cannot.
pub fn unsupported() -> Option<String> {
    let uid = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Some("not root (network namespaces and iptables need root)".into());
    }
    for tool in ["ip", "iptables"] {
        let found = Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {tool}"))
            .output();
        if !found.map(|o| o.status.success()).unwrap_or(false) {
            return Some(format!(
                "{tool} is not installed (scripts/deps.sh installs it)"
            ));
        }
    }
    if run(&["ip", "netns", "add", "sxc-probe"]).is_err() {
        return Some("cannot create network namespaces here".into());
    }
    let _ = run(&["ip", "netns", "del", "sxc-probe"]);
    None
}

/// The file recording which process owns the namespaces of `prefix`.
fn owner_file(prefix: &str) -> PathBuf {
    std::env::temp_dir().join(format!("seshat-chaos-{prefix}.pid"))
}

/// True when the namespaces of `prefix` belong to a process still running
/// (another test run), which must not be disturbed.
fn owned_by_live_process(prefix: &str) -> bool {
    std::fs::read_to_string(owner_file(prefix))
        .ok()
        .and_then(|p| p.trim().parse::<u32>().ok())
        .is_some_and(|pid| pid != std::process::id() && Path::new(&format!("/proc/{pid}")).exists())
}

/// The harness prefix (`sxc<tag>`) of a namespace or interface name.
fn prefix_of(name: &str) -> Option<&str> {
    let digits = name
        .strip_prefix(PREFIX)?
        .chars()
        .take_while(char::is_ascii_digit)
        .count();
    name.get(..PREFIX.len() + digits)
}

/// Removes namespaces and host veths left by earlier runs that died;
/// those of a run still in progress are left alone.
pub fn clear_stale() {
    let stale = |name: &str| prefix_of(name).is_some_and(|p| !owned_by_live_process(p));
    if let Ok(out) = Command::new("ip").args(["netns", "list"]).output() {
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let name = line.split_whitespace().next().unwrap_or("");
            if stale(name) {
                let _ = run(&["ip", "netns", "del", name]);
            }
        }
    }
    if let Ok(out) = Command::new("ip").args(["-o", "link", "show"]).output() {
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let name = line.split(':').nth(1).map(|s| s.trim()).unwrap_or("");
            let name = name.split('@').next().unwrap_or("");
            if stale(name) {
                let _ = run(&["ip", "link", "del", name]);
            }
        }
    }
}

/// A private network of `n` node namespaces.
pub struct Net {
    prefix: String,
    subnet: u8,
    n: usize,
}

impl Net {
    /// Creates the namespaces, bridge and links.
    pub fn create(n: usize, tag: u8) -> Net {
        let prefix = format!("{PREFIX}{tag}");
        assert!(
            !owned_by_live_process(&prefix),
            "namespaces {prefix}-* are in use by another run"
        );
        // Leftovers of a dead run with the same tag.
        for ns in ["br".to_string()]
            .into_iter()
            .chain((1..=9).map(|i| format!("n{i}")))
        {
            let _ = run(&["ip", "netns", "del", &format!("{prefix}-{ns}")]);
        }
        let _ = run(&["ip", "link", "del", &format!("{prefix}h")]);
        let _ = std::fs::write(owner_file(&prefix), std::process::id().to_string());
        let subnet = 200u8.wrapping_add(tag);
        let net = Net { prefix, subnet, n };
        let br = net.bridge_ns();
        run_ok(&["ip", "netns", "add", &br]);
        run_ok(&["ip", "netns", "exec", &br, "ip", "link", "set", "lo", "up"]);
        run_ok(&[
            "ip", "netns", "exec", &br, "ip", "link", "add", "br0", "type", "bridge",
        ]);
        run_ok(&["ip", "netns", "exec", &br, "ip", "link", "set", "br0", "up"]);
        for i in 1..=n {
            let ns = net.node_ns(i);
            let (a, b) = (
                format!("{}v{i}a", net.prefix),
                format!("{}v{i}b", net.prefix),
            );
            run_ok(&["ip", "netns", "add", &ns]);
            run_ok(&["ip", "netns", "exec", &ns, "ip", "link", "set", "lo", "up"]);
            run_ok(&["ip", "link", "add", &a, "type", "veth", "peer", "name", &b]);
            run_ok(&["ip", "link", "set", &a, "netns", &ns]);
            run_ok(&["ip", "link", "set", &b, "netns", &br]);
            run_ok(&[
                "ip", "netns", "exec", &br, "ip", "link", "set", &b, "master", "br0", "up",
            ]);
            let addr = format!("{}/24", net.ip(i));
            run_ok(&[
                "ip", "netns", "exec", &ns, "ip", "addr", "add", &addr, "dev", &a,
            ]);
            run_ok(&["ip", "netns", "exec", &ns, "ip", "link", "set", &a, "up"]);
        }
        let (h, hb) = (format!("{}h", net.prefix), format!("{}hb", net.prefix));
        run_ok(&["ip", "link", "add", &h, "type", "veth", "peer", "name", &hb]);
        run_ok(&["ip", "link", "set", &hb, "netns", &br]);
        run_ok(&[
            "ip", "netns", "exec", &br, "ip", "link", "set", &hb, "master", "br0", "up",
        ]);
        run_ok(&[
            "ip",
            "addr",
            "add",
            &format!("10.{}.0.100/24", net.subnet),
            "dev",
            &h,
        ]);
        run_ok(&["ip", "link", "set", &h, "up"]);
        net
    }

    fn bridge_ns(&self) -> String {
        format!("{}-br", self.prefix)
    }

    /// Namespace of node `i` (1-based).
    pub fn node_ns(&self, i: usize) -> String {
        format!("{}-n{i}", self.prefix)
    }

    /// Address of node `i`.
    pub fn ip(&self, i: usize) -> String {
        format!("10.{}.0.{i}", self.subnet)
    }

    /// Drops traffic between node `i` and each node in `others`, both ways.
    pub fn cut(&self, i: usize, others: &[usize]) {
        for &o in others {
            self.drop_one_way(i, o);
            self.drop_one_way(o, i);
        }
    }

    /// Node `from` no longer receives packets from node `src`.
    pub fn drop_one_way(&self, from: usize, src: usize) {
        let ns = self.node_ns(from);
        run_ok(&[
            "ip",
            "netns",
            "exec",
            &ns,
            "iptables",
            "-A",
            "INPUT",
            "-s",
            &self.ip(src),
            "-j",
            "DROP",
        ]);
    }

    /// Splits the nodes into `groups` that cannot talk to each other.
    pub fn partition(&self, groups: &[&[usize]]) {
        for (gi, g) in groups.iter().enumerate() {
            for (hi, h) in groups.iter().enumerate() {
                if gi != hi {
                    for &a in g.iter() {
                        for &b in h.iter() {
                            self.drop_one_way(a, b);
                        }
                    }
                }
            }
        }
    }

    /// Drops a random `percent` of packets arriving at every node.
    pub fn loss(&self, percent: u32) {
        let p = format!("{:.2}", f64::from(percent) / 100.0);
        for i in 1..=self.n {
            let ns = self.node_ns(i);
            run_ok(&[
                "ip",
                "netns",
                "exec",
                &ns,
                "iptables",
                "-A",
                "INPUT",
                "-m",
                "statistic",
                "--mode",
                "random",
                "--probability",
                &p,
                "-j",
                "DROP",
            ]);
        }
    }

    /// Removes every fault rule.
    pub fn heal(&self) {
        for i in 1..=self.n {
            let ns = self.node_ns(i);
            run_ok(&["ip", "netns", "exec", &ns, "iptables", "-F"]);
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for i in 1..=self.n {
            let _ = run(&["ip", "netns", "del", &self.node_ns(i)]);
        }
        let _ = run(&["ip", "netns", "del", &self.bridge_ns()]);
        let _ = run(&["ip", "link", "del", &format!("{}h", self.prefix)]);
        let _ = std::fs::remove_file(owner_file(&self.prefix));
    }
}

/// A `seshat` process inside a node namespace.
pub struct NodeProc {
    /// The node's place (1-based): its namespace, address and directory.
    pub id: usize,
    /// The id the cluster knows it by: `id` until it is replaced by a
    /// node that joined on its address ([`NodeProc::rejoin`]).
    pub node_id: usize,
    /// The Raft address it joins through, once it has been replaced.
    join: Option<String>,
    pub ip: String,
    pub ns: String,
    pub dir: PathBuf,
    pub members: String,
    child: Option<Child>,
    stopped: bool,
    extra: Vec<String>,
}

/// The cluster under test.
pub struct ChaosCluster {
    pub net: Net,
    pub nodes: Vec<NodeProc>,
    _tmp: tempfile::TempDir,
}

pub const CLIENT_PORT: u16 = 6379;

impl ChaosCluster {
    /// Starts `n` nodes, one per namespace.
    pub fn start(n: usize, tag: u8, extra: &[&str]) -> ChaosCluster {
        let net = Net::create(n, tag);
        let tmp = tempfile::tempdir().unwrap();
        let members = (1..=n)
            .map(|i| format!("{i}={ip}:7379/{ip}:{CLIENT_PORT}", ip = net.ip(i)))
            .collect::<Vec<_>>()
            .join(",");
        let mut nodes: Vec<NodeProc> = (1..=n)
            .map(|i| NodeProc {
                id: i,
                node_id: i,
                join: None,
                ip: net.ip(i),
                ns: net.node_ns(i),
                dir: tmp.path().join(format!("node-{i}")),
                members: members.clone(),
                child: None,
                stopped: false,
                extra: Vec::new(),
            })
            .collect();
        for node in nodes.iter_mut() {
            node.spawn(extra);
        }
        let cluster = ChaosCluster {
            net,
            nodes,
            _tmp: tmp,
        };
        cluster
            .wait_for_leader(Duration::from_secs(30))
            .expect("no leader at start");
        cluster
    }

    /// The 1-based id of the node every reachable node names as leader and
    /// that says it leads.
    pub fn leader(&self) -> Option<usize> {
        let mut agreed = None;
        for node in self
            .nodes
            .iter()
            .filter(|n| n.child.is_some() && !n.stopped)
        {
            let id: usize = node.info_field("raft_leader_id")?.parse().ok()?;
            if agreed.is_some_and(|a| a != id) {
                return None;
            }
            agreed = Some(id);
        }
        let id = agreed?;
        let node = self.nodes.iter().find(|n| n.node_id == id)?;
        (node.info_field("raft_role").as_deref() == Some("Leader")).then_some(node.id)
    }

    /// Waits for [`Self::leader`].
    pub fn wait_for_leader(&self, timeout: Duration) -> Option<usize> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(l) = self.leader() {
                return Some(l);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    }

    /// Node `i` (1-based).
    pub fn node(&mut self, i: usize) -> &mut NodeProc {
        &mut self.nodes[i - 1]
    }

    /// Client addresses of all nodes.
    pub fn addrs(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("{}:{CLIENT_PORT}", n.ip))
            .collect()
    }

    /// Waits until every running node reports the same applied index and
    /// state digest for each group it holds (a node of a cluster larger
    /// than the replication factor holds some groups only); returns the
    /// digests seen if they never agree.
    pub fn converged(&self, timeout: Duration) -> Result<String, Vec<String>> {
        let deadline = Instant::now() + timeout;
        loop {
            let digests: Vec<String> = self
                .nodes
                .iter()
                .filter(|n| n.child.is_some())
                .map(|n| n.digest().unwrap_or_else(|| "unreachable".into()))
                .collect();
            if digests_agree(&digests) {
                return Ok(digests[0].clone());
            }
            if Instant::now() > deadline {
                return Err(digests);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Every node's log tail, for failure reports.
    pub fn logs(&self) -> String {
        self.nodes
            .iter()
            .map(|n| {
                let log = std::fs::read_to_string(n.dir.join("seshat.log")).unwrap_or_default();
                let lines: Vec<&str> = log.lines().collect();
                format!(
                    "---- node {} ----\n{}",
                    n.id,
                    lines[lines.len().saturating_sub(30)..].join("\n")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl NodeProc {
    fn spawn(&mut self, extra: &[&str]) {
        std::fs::create_dir_all(&self.dir).unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("seshat.log"))
            .unwrap();
        // A soak can run a copy of the binary (SESHAT_CHAOS_BIN), so that
        // rebuilding meanwhile does not change what restarted nodes run.
        let bin = std::env::var("SESHAT_CHAOS_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_seshat").to_string());
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.ns, &bin]);
        match &self.join {
            Some(via) => command.args(["--join", via]),
            None => command
                .args(["--node-id", &self.id.to_string()])
                .args(["--initial-members", &self.members]),
        };
        let child = command
            .args(["--client-addr", &format!("{}:{CLIENT_PORT}", self.ip)])
            .args(["--raft-addr", &format!("{}:7379", self.ip)])
            .args(["--http-addr", &format!("{}:9090", self.ip)])
            .arg("--data-dir")
            .arg(self.dir.join("data"))
            .args(["--request-timeout-ms", "2000"])
            // Its client address is on the test's private bridge, not
            // loopback, and the workload does not authenticate.
            .args(["--protected-mode", "no"])
            .args(extra)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        self.stopped = false;
        self.extra = extra.iter().map(|s| s.to_string()).collect();
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `kill -9`.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the process again with the same data.
    pub fn restart(&mut self) {
        assert!(self.child.is_none());
        let extra: Vec<String> = self.extra.clone();
        let refs: Vec<&str> = extra.iter().map(String::as_str).collect();
        self.spawn(&refs);
    }

    /// Replaces this node by a new one on the same address, as after a
    /// dead disk: kill -9, delete its data directory, start it with an
    /// empty one and `--join` through `via` (a Raft address). The cluster
    /// gives it a new id (and removes the old one); waits until it
    /// answers and learns that id.
    pub fn rejoin(&mut self, via: &str) {
        self.kill9();
        let _ = std::fs::remove_dir_all(self.dir.join("data"));
        self.join = Some(via.to_string());
        let extra: Vec<String> = self.extra.clone();
        let refs: Vec<&str> = extra.iter().map(String::as_str).collect();
        self.spawn(&refs);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let id = redis::Client::open(format!("redis://{}:{CLIENT_PORT}/", self.ip))
                .ok()
                .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(1)).ok())
                .and_then(|mut c| {
                    redis::cmd("CLUSTER")
                        .arg("MYID")
                        .query::<String>(&mut c)
                        .ok()
                })
                .and_then(|name| usize::from_str_radix(&name, 16).ok());
            if let Some(id) = id {
                self.node_id = id;
                return;
            }
            assert!(
                Instant::now() < deadline,
                "node {} did not join again in time",
                self.id
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The node's Raft address.
    pub fn raft_addr(&self) -> String {
        format!("{}:7379", self.ip)
    }

    /// SIGSTOP / SIGCONT.
    pub fn pause(&mut self, paused: bool) {
        if let Some(c) = &self.child {
            // `ip netns exec` execs the binary, so the pid is seshat's.
            let sig = if paused { "-STOP" } else { "-CONT" };
            let _ = Command::new("kill")
                .args([sig, &c.id().to_string()])
                .status();
            self.stopped = paused;
        }
    }

    /// INFO field, via the node's client port.
    pub fn info_field(&self, name: &str) -> Option<String> {
        let section = if name.starts_with("storage_digest") {
            "digest"
        } else {
            "raft"
        };
        let client = redis::Client::open(format!("redis://{}:{CLIENT_PORT}/", self.ip)).ok()?;
        let mut c = client
            .get_connection_with_timeout(Duration::from_secs(1))
            .ok()?;
        c.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        let info: String = redis::cmd("INFO").arg(section).query(&mut c).ok()?;
        info.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .map(|v| v.trim().to_string())
    }

    /// `applied_index:hash:keys` of each of the node's groups (one group
    /// unless sharded), as one string.
    pub fn digest(&self) -> Option<String> {
        let client = redis::Client::open(format!("redis://{}:{CLIENT_PORT}/", self.ip)).ok()?;
        let mut c = client
            .get_connection_with_timeout(Duration::from_secs(1))
            .ok()?;
        c.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        let info: String = redis::cmd("INFO").arg("digest").query(&mut c).ok()?;
        let lines: Vec<&str> = info
            .lines()
            .filter(|l| l.starts_with("storage_digest"))
            .map(str::trim)
            .collect();
        (!lines.is_empty()).then(|| lines.join(" "))
    }

    pub fn log_path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        self.pause(false);
        self.kill9();
    }
}

/// Whether every node's digest lines agree group by group: each
/// `storage_digest_group_<id>:…` line is the same on every node that has
/// it. Without per-group lines (one group), the one `storage_digest`
/// line must be the same everywhere. An unreachable node never agrees.
fn digests_agree(digests: &[String]) -> bool {
    if digests.is_empty() || digests.iter().any(|d| d == "unreachable") {
        return false;
    }
    let sharded = digests.iter().any(|d| d.contains("storage_digest_group_"));
    let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
    for d in digests {
        for line in d.split(' ') {
            let (name, value) = line.split_once(':').unwrap_or((line, ""));
            if sharded && !name.starts_with("storage_digest_group_") {
                continue;
            }
            if *seen.entry(name).or_insert(value) != value {
                return false;
            }
        }
    }
    true
}
