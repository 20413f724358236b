//! `seshat admin …`: operator commands run against a live cluster over
//! the Redis protocol, as `redis-cli` would send them.
//!
//! - `seshat admin reshard --slots A-B … --to-shard G`: moves the slots to
//!   data group G in batches of `--batch-slots` (each batch one migration,
//!   so each freeze covers only its batch), waiting for each to finish.
//! - `seshat admin rebalance`: counts the keys of every slot and moves
//!   slots from the shards holding more than an even share of the keys to
//!   those holding fewer, until every shard is within 1% of it (on an
//!   empty cluster: 16384 / shards slots each, ±1).
//!
//! Both are resumable: they read the cluster's slot map from `CLUSTER
//! SHARDS` first and only move what is not where it should be, so running
//! one again after an interruption finishes the job.
//!
//! - `seshat admin nodes`: the cluster's nodes (`CLUSTER MEMBERS`) with
//!   their replicas and leaderships (`CLUSTER SHARDS`).
//! - `seshat admin decommission ID` / `remove ID` / `replace ID`: sets
//!   the node's state (`CLUSTER DECOMMISSION`, `CLUSTER FORGET`) and waits
//!   until the rebalancer has moved its replicas away.

use std::io::{Read, Write as _};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::BytesMut;
use seshat_common::CLUSTER_SLOTS;
use seshat_protocol_resp::{decode_frame, DecodeLimits, Frame};

use crate::config::{AdminArgs, AdminCommand, ConnectArgs};

/// Longest one migration may take before the tool gives up waiting (the
/// migration itself goes on).
const MIGRATION_WAIT: Duration = Duration::from_secs(600);

/// Runs an admin command; prints progress to standard output.
pub fn run(args: &AdminArgs) -> anyhow::Result<()> {
    match &args.command {
        AdminCommand::Reshard {
            connect,
            slots,
            to_shard,
            batch_slots,
        } => {
            let mut conn = Conn::open(connect)?;
            let mut wanted = Vec::new();
            for range in slots {
                wanted.extend(parse_range(range)?);
            }
            let owners = conn.owners()?;
            let moves: Vec<(u16, u32)> = wanted
                .into_iter()
                .filter(|s| owners[usize::from(*s)] != *to_shard)
                .map(|s| (s, owners[usize::from(s)]))
                .collect();
            let shards = owners.iter().copied().max().unwrap_or(0);
            if *to_shard == 0 || *to_shard > shards {
                bail!("no shard {to_shard}: the cluster has shards 1..={shards}");
            }
            move_slots(&mut conn, &moves, *to_shard, *batch_slots)
        }
        AdminCommand::Rebalance {
            connect,
            batch_slots,
        } => {
            let mut conn = Conn::open(connect)?;
            let owners = conn.owners()?;
            let counts = conn.key_counts(connect, &owners)?;
            let total: u64 = counts.iter().sum();
            let plan = if total == 0 {
                // No keys: even out the slots instead.
                rebalance_plan(&owners)
            } else {
                rebalance_by_keys(&owners, &counts)
            };
            if plan.is_empty() {
                println!("already balanced ({total} keys)");
                return Ok(());
            }
            for (target, slots) in plan {
                move_slots(&mut conn, &slots, target, *batch_slots)?;
            }
            Ok(())
        }
        AdminCommand::Nodes { connect } => {
            let mut conn = Conn::open(connect)?;
            let members = conn.members()?;
            println!("id  state            raft-addr              client-addr            replicas  leads");
            for m in &members {
                println!(
                    "{:<3} {:<16} {:<22} {:<22} {:<9} {}",
                    m.id, m.state, m.raft, m.client, m.replicas, m.leads
                );
            }
            Ok(())
        }
        AdminCommand::Decommission {
            connect,
            id,
            no_wait,
        } => change_state(connect, "DECOMMISSION", *id, *no_wait),
        AdminCommand::Remove {
            connect,
            id,
            no_wait,
        }
        | AdminCommand::Replace {
            connect,
            id,
            no_wait,
        } => change_state(connect, "FORGET", *id, *no_wait),
    }
}

/// Longest `decommission`/`remove` waits for the replicas to move.
const MEMBERSHIP_WAIT: Duration = Duration::from_secs(1800);

/// Sets node `id`'s state (`CLUSTER DECOMMISSION` or `FORGET`), then,
/// unless `no_wait`, waits until no shard lists it and (decommission) it
/// is removed, printing progress.
fn change_state(connect: &ConnectArgs, sub: &str, id: u64, no_wait: bool) -> anyhow::Result<()> {
    let mut conn = Conn::open(connect)?;
    match conn.call(&["CLUSTER".into(), sub.into(), id.to_string()])? {
        Frame::Error(e) => bail!("{}", String::from_utf8_lossy(&e)),
        _ => println!(
            "node {id}: {}",
            if sub == "FORGET" {
                "removed"
            } else {
                "decommissioning"
            }
        ),
    }
    if no_wait {
        return Ok(());
    }
    let started = Instant::now();
    let mut last = usize::MAX;
    loop {
        let (state, held) = conn
            .members()?
            .into_iter()
            .find(|m| m.id == id)
            .map(|m| (m.state, m.replicas))
            .unwrap_or_default();
        if held != last {
            println!(
                "node {id}: {state}, replicas left: {held} ({:.1} s)",
                started.elapsed().as_secs_f64()
            );
            last = held;
        }
        if held == 0 && state == "removed" {
            println!("node {id} holds nothing and is removed: it can be stopped");
            return Ok(());
        }
        if started.elapsed() > MEMBERSHIP_WAIT {
            bail!("node {id} still holds {held} replicas after {MEMBERSHIP_WAIT:?} (is there a node to move them to?)");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// One node of `CLUSTER MEMBERS`.
struct MemberRow {
    id: u64,
    state: String,
    raft: String,
    client: String,
    replicas: usize,
    leads: usize,
}

/// Moves `moves` (slot, current owner) to `target`, one migration per
/// batch of at most `batch` slots of one source.
fn move_slots(
    conn: &mut Conn,
    moves: &[(u16, u32)],
    target: u32,
    batch: usize,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let batch = batch.clamp(1, seshat_migration::MAX_SLOTS_PER_MIGRATION);
    let mut done = 0usize;
    for group in batches(moves, batch) {
        let ranges = runs(&group.slots);
        let mut cmd: Vec<String> =
            vec!["CLUSTER".into(), "MIGRATESLOTS".into(), "SLOTSRANGE".into()];
        for (a, b) in &ranges {
            cmd.push(a.to_string());
            cmd.push(b.to_string());
        }
        cmd.push("SHARD".into());
        cmd.push(target.to_string());
        let batch_started = Instant::now();
        let id = loop {
            match conn.call(&cmd)? {
                Frame::Integer(id) => break id,
                // Another migration of the same shard is finishing, or a
                // leader is changing: wait and ask again.
                Frame::Error(e) if retriable(&e) => std::thread::sleep(Duration::from_millis(100)),
                Frame::Error(e) => bail!("{}", String::from_utf8_lossy(&e)),
                other => bail!("unexpected reply {other:?}"),
            }
        };
        let outcome = conn.wait_finished(id)?;
        done += group.slots.len();
        println!(
            "migration {id}: {} slots from shard {} to shard {target}: {outcome} in {} ms ({done}/{} slots, {:.1} s)",
            group.slots.len(),
            group.source,
            batch_started.elapsed().as_millis(),
            moves.len(),
            started.elapsed().as_secs_f64(),
        );
        if outcome != "completed" {
            bail!("migration {id} {outcome}");
        }
    }
    Ok(())
}

fn retriable(e: &[u8]) -> bool {
    let text = String::from_utf8_lossy(e);
    text.contains("is in migration")
        || text.starts_with("CLUSTERDOWN")
        || text.starts_with("TIMEOUT")
        || text.contains("slot map is at version")
}

/// One migration's worth: slots of one source.
struct Batch {
    source: u32,
    slots: Vec<u16>,
}

fn batches(moves: &[(u16, u32)], size: usize) -> Vec<Batch> {
    let mut out: Vec<Batch> = Vec::new();
    for &(slot, source) in moves {
        match out.last_mut() {
            Some(b) if b.source == source && b.slots.len() < size => b.slots.push(slot),
            _ => out.push(Batch {
                source,
                slots: vec![slot],
            }),
        }
    }
    out
}

fn runs(slots: &[u16]) -> Vec<(u16, u16)> {
    let mut sorted = slots.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut out: Vec<(u16, u16)> = Vec::new();
    for s in sorted {
        match out.last_mut() {
            Some((_, end)) if *end + 1 == s => *end = s,
            _ => out.push((s, s)),
        }
    }
    out
}

/// `A-B` or `A`.
fn parse_range(text: &str) -> anyhow::Result<Vec<u16>> {
    let parse = |s: &str| -> anyhow::Result<u16> {
        let n: u16 = s
            .trim()
            .parse()
            .with_context(|| format!("bad slot {s:?}"))?;
        if n >= CLUSTER_SLOTS {
            bail!("slot {n} out of range (0..{CLUSTER_SLOTS})");
        }
        Ok(n)
    };
    let (a, b) = match text.split_once('-') {
        Some((a, b)) => (parse(a)?, parse(b)?),
        None => (parse(text)?, parse(text)?),
    };
    if a > b {
        bail!("bad range {text}: {a} > {b}");
    }
    Ok((a..=b).collect())
}

/// What to move where so every shard holds an even share of the slots:
/// per target, the slots (with their current owner) it takes.
fn rebalance_plan(owners: &[u32]) -> Vec<(u32, Vec<(u16, u32)>)> {
    let shards = owners.iter().copied().max().unwrap_or(0);
    if shards == 0 {
        return Vec::new();
    }
    let total = owners.len();
    let n = usize::try_from(shards).unwrap_or(1);
    // Shard g's share: the even split's, larger shares first.
    let share = |g: u32| total / n + usize::from(usize::try_from(g - 1).unwrap_or(0) < total % n);
    let mut held: Vec<Vec<u16>> = vec![Vec::new(); n + 1];
    for (slot, &g) in (0u16..).zip(owners) {
        if let Some(h) = held.get_mut(usize::try_from(g).unwrap_or(0)) {
            h.push(slot);
        }
    }
    // Surplus slots, taken from the end of each shard's holding.
    let mut surplus: Vec<(u16, u32)> = Vec::new();
    for g in 1..=shards {
        let h = &mut held[usize::try_from(g).unwrap_or(0)];
        while h.len() > share(g) {
            if let Some(s) = h.pop() {
                surplus.push((s, g));
            }
        }
    }
    surplus.sort_unstable();
    let mut plan = Vec::new();
    for g in 1..=shards {
        let need = share(g).saturating_sub(held[usize::try_from(g).unwrap_or(0)].len());
        if need == 0 {
            continue;
        }
        let take: Vec<(u16, u32)> = surplus.drain(..need.min(surplus.len())).collect();
        plan.push((g, take));
    }
    plan
}

/// What to move where so every shard holds about as many keys as the
/// others: per target, the slots (with their current owner) it takes.
/// Slots are taken from the top of each shard holding more than its share
/// and given to the shard furthest below its share, as long as the move
/// brings both closer to the share, until every shard is within 1% of it.
fn rebalance_by_keys(owners: &[u32], counts: &[u64]) -> Vec<(u32, Vec<(u16, u32)>)> {
    let shards = owners.iter().copied().max().unwrap_or(0);
    let n = usize::try_from(shards).unwrap_or(0);
    if n < 2 {
        return Vec::new();
    }
    let total: u64 = counts.iter().sum();
    let share = total / u64::try_from(n).unwrap_or(1);
    let mut keys = vec![0u64; n + 1];
    let mut held: Vec<Vec<u16>> = vec![Vec::new(); n + 1];
    for (slot, &g) in (0u16..).zip(owners) {
        let g = usize::try_from(g).unwrap_or(0);
        if g == 0 || g > n {
            continue;
        }
        keys[g] += counts.get(usize::from(slot)).copied().unwrap_or(0);
        held[g].push(slot);
    }
    // Within 1% of the share is balanced enough: moving slots costs
    // freezes.
    let tolerance = share / 100;
    let gap = |have: u64| have.abs_diff(share);
    let mut moves: std::collections::BTreeMap<u32, Vec<(u16, u32)>> = Default::default();
    for g in 1..=n {
        // From the highest slot down.
        while let Some(&slot) = held[g].last() {
            if keys[g] <= share + tolerance {
                break;
            }
            let Some(d) = (1..=n)
                .filter(|d| keys[*d] + tolerance < share)
                .min_by_key(|d| keys[*d])
            else {
                break;
            };
            let k = counts.get(usize::from(slot)).copied().unwrap_or(0);
            let before = gap(keys[g]).max(gap(keys[d]));
            let after = gap(keys[g] - k).max(gap(keys[d] + k));
            held[g].pop();
            if k == 0 || after >= before {
                // Empty, or too large to help: stays where it is.
                continue;
            }
            keys[g] -= k;
            keys[d] += k;
            let (source, target) = (u32::try_from(g).unwrap_or(0), u32::try_from(d).unwrap_or(0));
            moves.entry(target).or_default().push((slot, source));
        }
    }
    moves
        .into_iter()
        .map(|(target, mut slots)| {
            slots.sort_unstable_by_key(|(slot, source)| (*source, *slot));
            (target, slots)
        })
        .collect()
}

/// Connections per shard master counting keys.
const COUNT_CONNECTIONS_PER_MASTER: usize = 8;

/// `CLUSTER COUNTKEYSINSLOT` for each of `slots` on one connection,
/// pipelined.
fn count_slots(
    connect: &ConnectArgs,
    shard: u32,
    slots: &[u16],
) -> anyhow::Result<Vec<(u16, u64)>> {
    let mut conn = Conn::open(connect)?;
    let mut out = Vec::with_capacity(slots.len());
    for batch in slots.chunks(512) {
        let mut request = String::new();
        for slot in batch {
            let slot = slot.to_string();
            request.push_str(&format!(
                "*3\r\n$7\r\nCLUSTER\r\n$15\r\nCOUNTKEYSINSLOT\r\n${}\r\n{slot}\r\n",
                slot.len()
            ));
        }
        conn.stream.write_all(request.as_bytes())?;
        for slot in batch {
            match conn.read_reply()? {
                Frame::Integer(n) => out.push((*slot, u64::try_from(n).unwrap_or(0))),
                other => bail!("CLUSTER COUNTKEYSINSLOT {slot} on shard {shard}: {other:?}"),
            }
        }
    }
    Ok(out)
}

/// One connection to a node.
struct Conn {
    stream: TcpStream,
    buf: BytesMut,
}

impl Conn {
    /// `CLUSTER MEMBERS`.
    fn members(&mut self) -> anyhow::Result<Vec<MemberRow>> {
        let reply = self.call(&["CLUSTER".into(), "MEMBERS".into()])?;
        let Frame::Array(nodes) = reply else {
            bail!("unexpected CLUSTER MEMBERS reply {reply:?}");
        };
        let text = |f: &Frame| match f {
            Frame::Bulk(b) => String::from_utf8_lossy(b).into_owned(),
            Frame::Integer(i) => i.to_string(),
            other => format!("{other:?}"),
        };
        Ok(nodes
            .iter()
            .filter_map(|n| {
                let Frame::Array(fields) = n else { return None };
                let field = |name: &str| {
                    fields
                        .chunks(2)
                        .find(|kv| text(&kv[0]) == name)
                        .and_then(|kv| kv.get(1))
                        .map(text)
                        .unwrap_or_default()
                };
                Some(MemberRow {
                    id: field("id").parse().ok()?,
                    state: field("state"),
                    raft: field("raft-addr"),
                    client: field("client-addr"),
                    replicas: field("replicas").parse().unwrap_or(0),
                    leads: field("leads").parse().unwrap_or(0),
                })
            })
            .collect())
    }

    fn open(args: &ConnectArgs) -> anyhow::Result<Conn> {
        let addr = format!("{}:{}", args.host, args.port);
        let stream =
            TcpStream::connect(&addr).with_context(|| format!("cannot connect to {addr}"))?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut conn = Conn {
            stream,
            buf: BytesMut::new(),
        };
        if let Some(password) = &args.password {
            match conn.call(&["AUTH".to_string(), password.clone()])? {
                Frame::Simple(_) => {}
                other => bail!("AUTH failed: {other:?}"),
            }
        }
        Ok(conn)
    }

    fn call(&mut self, args: &[String]) -> anyhow::Result<Frame> {
        let mut out = format!("*{}\r\n", args.len());
        for a in args {
            out.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        self.stream.write_all(out.as_bytes())?;
        self.read_reply()
    }

    fn read_reply(&mut self) -> anyhow::Result<Frame> {
        let limits = DecodeLimits::default();
        loop {
            if let Some((frame, used)) = decode_frame(&self.buf, &limits)
                .map_err(|e| anyhow::anyhow!("bad reply from the server: {e}"))?
            {
                let _ = self.buf.split_to(used);
                return Ok(frame);
            }
            let mut chunk = [0u8; 16 * 1024];
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                bail!("the server closed the connection");
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// The owner (shard number) of every slot, from `CLUSTER SHARDS`
    /// (which lists shards 1, 2, … in order); 0 for a slot no shard
    /// lists.
    fn owners(&mut self) -> anyhow::Result<Vec<u32>> {
        let reply = self.call(&["CLUSTER".into(), "SHARDS".into()])?;
        let Frame::Array(shards) = reply else {
            bail!("unexpected CLUSTER SHARDS reply {reply:?}");
        };
        let mut owners = vec![0u32; usize::from(CLUSTER_SLOTS)];
        for (g, shard) in (1u32..).zip(shards) {
            let fields = match shard {
                Frame::Array(f) => f,
                Frame::Map(pairs) => pairs.into_iter().flat_map(|(k, v)| [k, v]).collect(),
                other => bail!("unexpected shard entry {other:?}"),
            };
            let mut it = fields.into_iter();
            while let Some(key) = it.next() {
                let value = it.next();
                if !matches!(&key, Frame::Bulk(k) if k.as_ref() == b"slots") {
                    continue;
                }
                let Some(Frame::Array(bounds)) = value else {
                    bail!("malformed slots of shard {g}");
                };
                for pair in bounds.chunks(2) {
                    let (Some(Frame::Integer(a)), Some(Frame::Integer(b))) =
                        (pair.first(), pair.get(1))
                    else {
                        bail!("malformed slot range of shard {g}");
                    };
                    for s in *a..=*b {
                        if let Some(o) = usize::try_from(s).ok().and_then(|s| owners.get_mut(s)) {
                            *o = g;
                        }
                    }
                }
            }
        }
        if owners.contains(&0) {
            bail!("some slots are listed by no shard (a shard without a leader?): try again");
        }
        Ok(owners)
    }

    /// The number of keys in every slot, from `CLUSTER COUNTKEYSINSLOT`
    /// sent (pipelined) to the master of each slot's shard as `CLUSTER
    /// SHARDS` names it.
    fn key_counts(&mut self, args: &ConnectArgs, owners: &[u32]) -> anyhow::Result<Vec<u64>> {
        let masters = self.masters()?;
        // Each count is a linearizable read: several connections per
        // master let their read barriers share rounds.
        let mut work: Vec<(ConnectArgs, u32, Vec<u16>)> = Vec::new();
        for (shard, (host, port)) in masters {
            let slots: Vec<u16> = (0u16..)
                .zip(owners)
                .filter(|(_, g)| **g == shard)
                .map(|(s, _)| s)
                .collect();
            let per = slots.len().div_ceil(COUNT_CONNECTIONS_PER_MASTER).max(1);
            for part in slots.chunks(per) {
                let connect = ConnectArgs {
                    host: host.clone(),
                    port,
                    password: args.password.clone(),
                };
                work.push((connect, shard, part.to_vec()));
            }
        }
        let threads: Vec<_> = work
            .into_iter()
            .map(|(connect, shard, slots)| {
                std::thread::spawn(move || count_slots(&connect, shard, &slots))
            })
            .collect();
        let mut counts = vec![0u64; owners.len()];
        for t in threads {
            let found = t
                .join()
                .map_err(|_| anyhow::anyhow!("a counting thread panicked"))??;
            for (slot, n) in found {
                counts[usize::from(slot)] = n;
            }
        }
        Ok(counts)
    }

    /// Each shard's master (client host and port), from `CLUSTER SHARDS`.
    fn masters(&mut self) -> anyhow::Result<Vec<(u32, (String, u16))>> {
        let reply = self.call(&["CLUSTER".into(), "SHARDS".into()])?;
        let Frame::Array(shards) = reply else {
            bail!("unexpected CLUSTER SHARDS reply {reply:?}");
        };
        let mut out = Vec::new();
        for (g, shard) in (1u32..).zip(shards) {
            let Some(Frame::Array(nodes)) = field(&shard, b"nodes") else {
                bail!("shard {g} lists no nodes");
            };
            let master = nodes.iter().find(
                |n| matches!(field(n, b"role"), Some(Frame::Bulk(r)) if r.as_ref() == b"master"),
            );
            let Some(master) = master else {
                bail!("shard {g} has no master (no leader?): try again");
            };
            let (Some(Frame::Bulk(ip)), Some(Frame::Integer(port))) =
                (field(master, b"ip"), field(master, b"port"))
            else {
                bail!("shard {g}'s master has no address");
            };
            let port = u16::try_from(port).map_err(|_| anyhow::anyhow!("bad port {port}"))?;
            out.push((g, (String::from_utf8_lossy(&ip).into_owned(), port)));
        }
        Ok(out)
    }

    /// Waits until migration `id` is finished; its outcome.
    fn wait_finished(&mut self, id: i64) -> anyhow::Result<String> {
        let deadline = Instant::now() + MIGRATION_WAIT;
        while Instant::now() < deadline {
            let reply = self.call(&["CLUSTER".into(), "GETSLOTMIGRATIONS".into()])?;
            if let Some(state) = migration_state(&reply, id) {
                if state == "completed" || state == "aborted" {
                    return Ok(state);
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!(
            "migration {id} did not finish within {} s",
            MIGRATION_WAIT.as_secs()
        )
    }
}

/// Field `name` of a map reply (RESP3) or a flat key-value array (RESP2).
fn field(entry: &Frame, name: &[u8]) -> Option<Frame> {
    match entry {
        Frame::Map(pairs) => pairs
            .iter()
            .find(|(k, _)| matches!(k, Frame::Bulk(b) if b.as_ref() == name))
            .map(|(_, v)| v.clone()),
        Frame::Array(items) => items
            .chunks(2)
            .find(|kv| matches!(&kv[0], Frame::Bulk(b) if b.as_ref() == name))
            .and_then(|kv| kv.get(1).cloned()),
        _ => None,
    }
}

/// The `state` of migration `id` in a `CLUSTER GETSLOTMIGRATIONS` reply.
fn migration_state(reply: &Frame, id: i64) -> Option<String> {
    let Frame::Array(entries) = reply else {
        return None;
    };
    for entry in entries {
        let fields: Vec<&Frame> = match entry {
            Frame::Array(f) => f.iter().collect(),
            Frame::Map(pairs) => pairs.iter().flat_map(|(k, v)| [k, v]).collect(),
            _ => continue,
        };
        let field = |name: &[u8]| {
            fields
                .chunks(2)
                .find(|kv| matches!(kv[0], Frame::Bulk(k) if k.as_ref() == name))
                .and_then(|kv| kv.get(1).copied())
        };
        if field(b"id") == Some(&Frame::Integer(id)) {
            if let Some(Frame::Bulk(s)) = field(b"state") {
                return Some(String::from_utf8_lossy(s).into_owned());
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rebalance_plan_evens_out_the_shards() {
        // Shard 1 holds everything of three.
        let owners = vec![1u32; 16384];
        let mut owners3 = owners.clone();
        owners3[16383] = 3;
        owners3[16382] = 2;
        let plan = rebalance_plan(&owners3);
        let mut after = owners3.clone();
        for (target, moves) in &plan {
            for (slot, from) in moves {
                assert_eq!(after[usize::from(*slot)], *from);
                after[usize::from(*slot)] = *target;
            }
        }
        for g in 1..=3u32 {
            let n = after.iter().filter(|o| **o == g).count();
            assert!((5461..=5462).contains(&n), "shard {g} holds {n}");
        }
        assert!(rebalance_plan(&after).is_empty());
    }

    #[test]
    fn a_key_rebalance_plan_brings_every_shard_near_its_share() {
        // Shard 1 holds 0..8191 with 10 keys each, shard 2 the rest with
        // 1 key each.
        let owners: Vec<u32> = (0..16384u32)
            .map(|s| if s < 8192 { 1 } else { 2 })
            .collect();
        let counts: Vec<u64> = (0..16384u64)
            .map(|s| if s < 8192 { 10 } else { 1 })
            .collect();
        let plan = rebalance_by_keys(&owners, &counts);
        let mut after = owners.clone();
        for (target, moves) in &plan {
            for (slot, from) in moves {
                assert_eq!(after[usize::from(*slot)], *from);
                after[usize::from(*slot)] = *target;
            }
        }
        let keys = |g: u32| -> u64 {
            (0..16384usize)
                .filter(|s| after[*s] == g)
                .map(|s| counts[s])
                .sum()
        };
        let (a, b) = (keys(1), keys(2));
        assert_eq!(a + b, 90112);
        assert!(a.abs_diff(b) <= 90112 / 100, "{a} vs {b}");
        assert!(rebalance_by_keys(&after, &counts).is_empty());
        // Balanced already, or one shard: nothing to do.
        assert!(rebalance_by_keys(&vec![1; 16384], &counts).is_empty());
    }

    #[test]
    fn batches_keep_one_source_and_a_size() {
        let moves: Vec<(u16, u32)> = (0..10).map(|s| (s, if s < 6 { 1 } else { 2 })).collect();
        let b = batches(&moves, 4);
        let shapes: Vec<(u32, usize)> = b.iter().map(|b| (b.source, b.slots.len())).collect();
        assert_eq!(shapes, vec![(1, 4), (1, 2), (2, 4)]);
        assert_eq!(runs(&[5, 1, 2, 3, 9]), vec![(1, 3), (5, 5), (9, 9)]);
        assert_eq!(parse_range("10-12").unwrap(), vec![10, 11, 12]);
        assert!(parse_range("12-10").is_err());
        assert!(parse_range("16384").is_err());
    }
}
