//! `seshat dev-cluster`: N local nodes for development, each a child
//! process of this one, with data, pid and log under `DIR/node-i/`.
//! Ctrl-C (or SIGTERM) stops them all gracefully. When one node exits (a
//! crash, or `kill` while trying failover) the others keep serving; the
//! launcher says which node stopped, and SIGUSR1 restarts every stopped
//! node with its data.

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};

use crate::config::DevClusterArgs;

/// Most nodes the launcher starts.
pub const MAX_DEV_NODES: u16 = 9;

fn port(base: u16, i: u16, name: &str) -> anyhow::Result<u16> {
    base.checked_add(i - 1)
        .with_context(|| format!("{name} {base} + {} overflows the port range", i - 1))
}

/// How a launched node finds its cluster.
#[derive(Clone)]
enum Start {
    /// A member of the cluster this launcher creates: every node's
    /// `--initial-members`.
    Initial(String),
    /// A node joining a running cluster through this Raft address.
    Join(String),
}

/// The node numbers `dev-cluster --add` starts: after the highest
/// `node-i` directory under `dir`.
fn added_nodes(args: &DevClusterArgs) -> anyhow::Result<std::ops::RangeInclusive<u16>> {
    let mut highest = 0u16;
    if let Ok(entries) = std::fs::read_dir(&args.dir) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(i) = name
                .strip_prefix("node-")
                .and_then(|n| n.parse::<u16>().ok())
            {
                highest = highest.max(i);
            }
        }
    }
    if highest == 0 {
        bail!(
            "no cluster in {}: start one with `seshat dev-cluster --dir {}` first",
            args.dir.display(),
            args.dir.display()
        );
    }
    let last = highest + args.add;
    if last > MAX_DEV_NODES {
        bail!(
            "invalid setting add = {}: at most {MAX_DEV_NODES} nodes in all",
            args.add
        );
    }
    Ok(highest + 1..=last)
}

/// Runs the launcher until interrupted.
pub fn run(args: &DevClusterArgs) -> anyhow::Result<()> {
    if args.add > 0 {
        let numbers = added_nodes(args)?;
        let start = Start::Join(format!("127.0.0.1:{}", args.raft_port_base));
        return launch(args, numbers, start);
    }
    if args.nodes == 0 || args.nodes > MAX_DEV_NODES {
        bail!(
            "invalid setting nodes = {}: must be between 1 and {MAX_DEV_NODES}",
            args.nodes
        );
    }
    let mut members = String::new();
    for i in 1..=args.nodes {
        let raft = port(args.raft_port_base, i, "raft-port-base")?;
        let client = port(args.client_port_base, i, "client-port-base")?;
        if !members.is_empty() {
            members.push(',');
        }
        let _ = write!(members, "{i}=127.0.0.1:{raft}/127.0.0.1:{client}");
        if let Some(base) = args.tls_port_base {
            // Each node takes its TLS port from its own entry.
            let _ = write!(members, "/127.0.0.1:{}", port(base, i, "tls-port-base")?);
        }
    }
    launch(args, 1..=args.nodes, Start::Initial(members))
}

/// Starts nodes `numbers` and watches them until interrupted.
fn launch(
    args: &DevClusterArgs,
    numbers: std::ops::RangeInclusive<u16>,
    start: Start,
) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("cannot find the seshat executable")?;
    let mut children: Vec<(u16, Child)> = Vec::new();
    for i in numbers.clone() {
        match spawn_node(&exe, args, i, &start) {
            Ok(child) => children.push((i, child)),
            Err(e) => {
                stop_all(&mut children);
                return Err(e);
            }
        }
    }
    let launcher = Launcher {
        exe,
        start,
        pid: std::process::id(),
    };
    match &launcher.start {
        Start::Initial(_) => println!(
            "seshat dev-cluster: {} nodes, files under {}",
            numbers.len(),
            args.dir.display()
        ),
        Start::Join(via) => println!(
            "seshat dev-cluster: {} more nodes joining the cluster at {via}, files under {}",
            numbers.len(),
            args.dir.display()
        ),
    }
    for i in numbers {
        let tls = match args.tls_port_base {
            Some(base) => format!(", tls {}", port(base, i, "tls-port-base")?),
            None => String::new(),
        };
        println!(
            "  node {i}: redis-cli -c -p {}   (raft {}, http {}{tls}, log {})",
            port(args.client_port_base, i, "client-port-base")?,
            port(args.raft_port_base, i, "raft-port-base")?,
            port(args.http_port_base, i, "http-port-base")?,
            args.dir
                .join(format!("node-{i}"))
                .join("seshat.log")
                .display()
        );
    }
    println!(
        "Ctrl-C stops every node; if one stops, `kill -USR1 {}` restarts it.",
        launcher.pid
    );
    wait(args, &launcher, &mut children)
}

/// What restarting a node needs.
struct Launcher {
    exe: std::path::PathBuf,
    start: Start,
    pid: u32,
}

fn spawn_node(exe: &Path, args: &DevClusterArgs, i: u16, start: &Start) -> anyhow::Result<Child> {
    let dir = args.dir.join(format!("node-{i}"));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("seshat.log"))
        .with_context(|| format!("cannot open log in {}", dir.display()))?;
    let err_log = log.try_clone().context("cannot duplicate log handle")?;
    let mut command = Command::new(exe);
    match start {
        Start::Initial(members) => command
            .arg("--node-id")
            .arg(i.to_string())
            .arg("--initial-members")
            .arg(members),
        Start::Join(via) => command.arg("--join").arg(via),
    };
    if let (Start::Join(_), Some(base)) = (start, args.tls_port_base) {
        command.arg(format!("--tls-port={}", port(base, i, "tls-port-base")?));
    }
    let child = command
        .arg("--client-addr")
        .arg(format!(
            "127.0.0.1:{}",
            port(args.client_port_base, i, "client-port-base")?
        ))
        .arg("--raft-addr")
        .arg(format!(
            "127.0.0.1:{}",
            port(args.raft_port_base, i, "raft-port-base")?
        ))
        .arg("--http-addr")
        .arg(format!(
            "127.0.0.1:{}",
            port(args.http_port_base, i, "http-port-base")?
        ))
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args(args.shards.map(|n| format!("--shards={n}")))
        .args(args.replicas.map(|n| format!("--replicas={n}")))
        .args(&args.node_args)
        .envs(raft_worker_threads_env(args.nodes))
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err_log)
        .spawn()
        .with_context(|| format!("cannot start node {i}"))?;
    std::fs::write(dir.join("pid"), format!("{}\n", child.id()))
        .with_context(|| format!("cannot write pid of node {i}"))?;
    Ok(child)
}

/// `SESHAT_RAFT_WORKER_THREADS=1` for every node when `nodes` nodes with
/// the default Raft workers would outnumber this machine's cores (three
/// nodes on two cores: one worker each costs less CPU per request, see
/// BENCHMARKS.md); nothing when the cores suffice or when the variable is
/// set already. A `--raft-worker-threads` among the node flags wins
/// over either.
fn raft_worker_threads_env(nodes: u16) -> Option<(&'static str, String)> {
    const VAR: &str = "SESHAT_RAFT_WORKER_THREADS";
    if std::env::var_os(VAR).is_some() {
        return None;
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let wanted = usize::from(nodes).saturating_mul(crate::config::DEFAULT_RAFT_WORKER_THREADS);
    (wanted > cores).then(|| (VAR, "1".to_string()))
}

/// Watches the nodes until SIGINT/SIGTERM: a node that exits is reported
/// once and left stopped (the others keep serving); SIGUSR1 restarts the
/// stopped ones.
fn wait(
    args: &DevClusterArgs,
    launcher: &Launcher,
    children: &mut Vec<(u16, Child)>,
) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let mut stopped: Vec<u16> = Vec::new();
    runtime.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let mut usr1 = signal(SignalKind::user_defined1())?;
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tokio::select! {
                _ = term.recv() => return Ok::<_, anyhow::Error>(()),
                _ = int.recv() => return Ok(()),
                _ = usr1.recv() => restart_stopped(args, launcher, children, &mut stopped),
                _ = tick.tick() => reap(children, &mut stopped, launcher.pid),
            }
        }
    })?;
    stop_all(children);
    Ok(())
}

/// Reports nodes that exited since the last look and forgets their process.
fn reap(children: &mut Vec<(u16, Child)>, stopped: &mut Vec<u16>, launcher_pid: u32) {
    children.retain_mut(|(i, child)| match child.try_wait() {
        Ok(Some(status)) => {
            eprintln!(
                "node {i} exited ({status}); the other nodes keep serving. \
                 `kill -USR1 {launcher_pid}` restarts it (its log is node-{i}/seshat.log)"
            );
            stopped.push(*i);
            false
        }
        _ => true,
    });
}

/// Starts every stopped node again on its ports and data.
fn restart_stopped(
    args: &DevClusterArgs,
    launcher: &Launcher,
    children: &mut Vec<(u16, Child)>,
    stopped: &mut Vec<u16>,
) {
    for i in std::mem::take(stopped) {
        match spawn_node(&launcher.exe, args, i, &launcher.start) {
            Ok(child) => {
                println!("node {i} restarted (pid {})", child.id());
                children.push((i, child));
            }
            Err(e) => {
                eprintln!("node {i} could not be restarted: {e:#}");
                stopped.push(i);
            }
        }
    }
}

fn stop_all(children: &mut Vec<(u16, Child)>) {
    for (_, child) in children.iter() {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
    }
    for (i, child) in children.iter_mut() {
        match child.wait() {
            Ok(status) => println!("node {i} stopped ({status})"),
            Err(e) => eprintln!("node {i}: {e}"),
        }
    }
    children.clear();
}
