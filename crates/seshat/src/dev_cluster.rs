//! `seshat dev-cluster`: N local nodes for development, each a child
//! process of this one, with data, pid and log under `DIR/node-i/`.
//! Ctrl-C (or SIGTERM) stops them all gracefully.

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

/// Runs the launcher until interrupted.
pub fn run(args: &DevClusterArgs) -> anyhow::Result<()> {
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
    }
    let exe = std::env::current_exe().context("cannot find the seshat executable")?;
    let mut children: Vec<(u16, Child)> = Vec::new();
    for i in 1..=args.nodes {
        match spawn_node(&exe, args, i, &members) {
            Ok(child) => children.push((i, child)),
            Err(e) => {
                stop_all(&mut children);
                return Err(e);
            }
        }
    }
    println!(
        "seshat dev-cluster: {} nodes, files under {}",
        args.nodes,
        args.dir.display()
    );
    for i in 1..=args.nodes {
        println!(
            "  node {i}: redis-cli -c -p {}   (raft {}, http {}, log {})",
            port(args.client_port_base, i, "client-port-base")?,
            port(args.raft_port_base, i, "raft-port-base")?,
            port(args.http_port_base, i, "http-port-base")?,
            args.dir
                .join(format!("node-{i}"))
                .join("seshat.log")
                .display()
        );
    }
    println!("Ctrl-C stops every node.");
    wait(&mut children)
}

fn spawn_node(exe: &Path, args: &DevClusterArgs, i: u16, members: &str) -> anyhow::Result<Child> {
    let dir = args.dir.join(format!("node-{i}"));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("seshat.log"))
        .with_context(|| format!("cannot open log in {}", dir.display()))?;
    let err_log = log.try_clone().context("cannot duplicate log handle")?;
    let child = Command::new(exe)
        .arg("--node-id")
        .arg(i.to_string())
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
        .arg("--initial-members")
        .arg(members)
        .args(&args.node_args)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err_log)
        .spawn()
        .with_context(|| format!("cannot start node {i}"))?;
    std::fs::write(dir.join("pid"), format!("{}\n", child.id()))
        .with_context(|| format!("cannot write pid of node {i}"))?;
    Ok(child)
}

fn wait(children: &mut Vec<(u16, Child)>) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let stop = runtime.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tokio::select! {
                _ = term.recv() => return Ok::<_, std::io::Error>(None),
                _ = int.recv() => return Ok(None),
                _ = tick.tick() => {
                    for (i, child) in children.iter_mut() {
                        if let Ok(Some(status)) = child.try_wait() {
                            return Ok(Some((*i, status)));
                        }
                    }
                }
            }
        }
    })?;
    if let Some((i, status)) = stop {
        eprintln!("node {i} exited ({status}); stopping the others");
    }
    stop_all(children);
    Ok(())
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
