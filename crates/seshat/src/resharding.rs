//! Resharding on a running cluster: the coordinator task that drives each
//! migration the system group records through its steps
//! ([`seshat_migration`] decides them; this module observes the groups,
//! proposes the steps and carries the copy), the peer operations it runs
//! on the groups' leaders, and the admin commands (`CLUSTER
//! MIGRATESLOTS`, `CLUSTER GETSLOTMIGRATIONS`, `CLUSTER
//! CANCELSLOTMIGRATIONS`).
//!
//! **The coordinator** runs on every node and acts only while the node
//! leads the system group. Every [`TICK`] it takes the migrations in
//! progress from the system table as applied here and, for each, asks
//! the source's and the target's leaders where they stand (after a read
//! barrier, so the answer holds everything committed), lets
//! [`seshat_migration::next_step`] choose the one step to take, and
//! takes it: a system step is proposed to the system group here, a group
//! step to the group's leader, a chunk is cut from the frozen source by
//! its leader and proposed to the target. It keeps nothing that matters:
//! the manifest and where the last chunk ended are caches, so a new
//! system leader resumes any migration from the records alone.
//!
//! **Peer operations** travel on the Raft port's forward RPC as an
//! internal command, [`INTERNAL`], that only peers can send (a client's
//! command is resolved against the command table before anything is
//! forwarded, and this name is not in it). When this node leads the group
//! itself the operation runs here without the RPC.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use seshat_kv::{SystemWrite, Write};
use seshat_migration::{
    next_step, GroupStep, GroupView, Manifest, MigrationId, Next, Observation, Outcome, SlotRanges,
    SlotTable, Status, SystemStep, SystemTable,
};
use seshat_protocol_resp::Frame;
use seshat_raft::state_machine::ReadView;

use crate::node::{Node, ServeError};
use crate::shared::Shared;

/// The internal command of peer operations (see the module docs).
pub const INTERNAL: &str = "SESHAT.MIGRATION";

/// How often the coordinator looks at the migrations in progress when
/// none made progress.
pub const TICK: Duration = Duration::from_millis(20);

/// How long one peer operation may take.
const PEER_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest reply of a peer operation (a chunk step is at most
/// [`seshat_migration::MAX_CHUNK_BYTES`] plus its framing).
const MAX_PEER_REPLY_BYTES: usize = 2 * seshat_migration::MAX_CHUNK_BYTES;

const _: () = assert!(
    seshat_migration::MAX_CHUNK_BYTES + 128 * 1024 <= seshat_kv::MAX_MIGRATION_WRITE_BYTES,
    "a chunk step and its starting table must fit in one migration write"
);

/// What the coordinator last saw of each migration, for `CLUSTER
/// GETSLOTMIGRATIONS` and `INFO`.
#[derive(Debug, Default)]
pub struct Progress {
    /// Per migration in progress: the last step taken or why it waits.
    pub state: Mutex<HashMap<MigrationId, String>>,
    /// Steps proposed by this node's coordinator.
    pub steps: std::sync::atomic::AtomicU64,
    /// Chunks copied by this node's coordinator.
    pub chunks: std::sync::atomic::AtomicU64,
    /// Entries copied by this node's coordinator.
    pub entries: std::sync::atomic::AtomicU64,
    /// When this node's coordinator saw each migration's `Freeze` applied.
    frozen_at: Mutex<HashMap<MigrationId, std::time::Instant>>,
    /// How long writes to a migration's slots waited, `Freeze` to
    /// `ImportCommit` as this node's coordinator saw them (the latest
    /// [`MAX_FREEZES_KEPT`], in ms).
    freezes: Mutex<std::collections::VecDeque<u64>>,
}

/// Freeze durations kept for `INFO`.
const MAX_FREEZES_KEPT: usize = 1024;

impl Progress {
    fn note(&self, id: MigrationId, what: String) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.insert(id, what);
    }

    /// What the coordinator last noted of migration `id`.
    pub fn of(&self, id: MigrationId) -> Option<String> {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.get(&id).cloned()
    }

    fn forget_except(&self, active: &[MigrationId]) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.retain(|id, _| active.contains(id));
        let mut frozen = self.frozen_at.lock().unwrap_or_else(|p| p.into_inner());
        frozen.retain(|id, _| active.contains(id));
    }

    /// Notes a group step that changed its group: the start and the end
    /// of a freeze.
    fn step_taken(&self, step: &GroupStep) {
        let id = step.migration().id;
        let mut frozen = self.frozen_at.lock().unwrap_or_else(|p| p.into_inner());
        match step {
            GroupStep::Freeze(_) => {
                frozen.insert(id, std::time::Instant::now());
            }
            GroupStep::ImportCommit(..) | GroupStep::Abort(_) => {
                if let Some(at) = frozen.remove(&id) {
                    let ms = u64::try_from(at.elapsed().as_millis()).unwrap_or(u64::MAX);
                    let mut freezes = self.freezes.lock().unwrap_or_else(|p| p.into_inner());
                    if freezes.len() == MAX_FREEZES_KEPT {
                        freezes.pop_front();
                    }
                    freezes.push_back(ms);
                }
            }
            _ => {}
        }
    }

    /// The freeze durations measured (ms): count, p50, p99, max.
    pub fn freeze_summary(&self) -> (usize, u64, u64, u64) {
        let freezes = self.freezes.lock().unwrap_or_else(|p| p.into_inner());
        let mut sorted: Vec<u64> = freezes.iter().copied().collect();
        sorted.sort_unstable();
        let at = |q: usize| {
            sorted
                .get((sorted.len() * q / 100).min(sorted.len().saturating_sub(1)))
                .copied()
                .unwrap_or(0)
        };
        (
            sorted.len(),
            at(50),
            at(99),
            sorted.last().copied().unwrap_or(0),
        )
    }
}

/// The coordinator's caches, lost (harmlessly) with the leadership.
#[derive(Default)]
struct Caches {
    /// The frozen source's manifest, per migration.
    manifests: HashMap<MigrationId, Manifest>,
    /// Where the last chunk sent ended: (its seq, its last storage key).
    resume: HashMap<MigrationId, (u64, Bytes)>,
    /// When this coordinator first saw each migration's source frozen.
    frozen_seen: HashMap<MigrationId, std::time::Instant>,
}

/// A freeze that lasts longer than this (the target unreachable, a copy
/// far larger than a batch should be) is aborted while it still can be:
/// before the hand-off the source keeps the slots and serves them again.
pub const MAX_FREEZE: Duration = Duration::from_secs(30);

/// Drives the migrations in progress while this node leads the system
/// group (see the module docs). Ends when the server stops.
pub async fn run_coordinator(shared: Weak<Shared>) {
    let mut caches = Caches::default();
    loop {
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let progressed = coordinate_once(&shared, &mut caches).await;
        drop(shared);
        if !progressed {
            tokio::time::sleep(TICK).await;
        }
    }
}

/// One round over the migrations in progress; whether any step was taken.
async fn coordinate_once(shared: &Shared, caches: &mut Caches) -> bool {
    let groups = &shared.groups;
    if !groups.system().raft.is_leader() {
        *caches = Caches::default();
        return false;
    }
    let Some(table) = groups.system_table() else {
        return false;
    };
    let active: Vec<_> = table.active().cloned().collect();
    let ids: Vec<MigrationId> = active.iter().map(|m| m.migration.id).collect();
    caches.manifests.retain(|id, _| ids.contains(id));
    caches.resume.retain(|id, _| ids.contains(id));
    caches.frozen_seen.retain(|id, _| ids.contains(id));
    shared.progress.forget_except(&ids);
    let mut progressed = false;
    for record in &active {
        let id = record.migration.id;
        match drive(shared, &table, record, caches).await {
            Ok(Some(step)) => {
                // A step the group had already taken changes nothing: the
                // next look waits a tick, so a lagging view cannot spin.
                progressed |= step.ends_with("CHANGED") || step.starts_with("manifest");
                shared
                    .progress
                    .steps
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                shared.progress.note(id, step);
            }
            Ok(None) => {}
            Err(why) => {
                tracing::debug!(migration = id, %why, "migration waits");
                shared.progress.note(id, format!("waiting: {why}"));
            }
        }
    }
    progressed
}

/// Observes migration `record` and takes its next step: `Some(what was
/// done)`, `None` when it is stuck, an error when a group could not be
/// reached or refused (tried again next round).
async fn drive(
    shared: &Shared,
    table: &SystemTable,
    record: &seshat_migration::SystemMigration,
    caches: &mut Caches,
) -> Result<Option<String>, String> {
    let id = record.migration.id;
    let mut record = record.clone();
    let mut source = group_view(shared, record.migration.source, id).await?;
    let mut target = group_view(shared, record.migration.target, id).await?;
    let mut last: Option<String> = None;
    // After a step a group applied (`CHANGED`), its new view is known
    // without asking: take the next step at once, so a freeze costs the
    // steps' own round trips and no observations between them. Anything
    // else (`IGNORED`, a refusal, a system step) ends the run: the next
    // round observes again.
    for _ in 0..MAX_STEPS_PER_LOOK {
        if let Some(step) = &last {
            // Each step as it is taken (`CLUSTER GETSLOTMIGRATIONS`).
            shared.progress.note(id, step.clone());
        }
        let m = record.migration.clone();
        if let Some(abort) = abort_if_frozen_too_long(shared, &record, source, caches).await? {
            return Ok(Some(abort));
        }
        let obs = Observation {
            record: &record,
            source,
            target,
            manifest: caches.manifests.get(&id).copied(),
        };
        match next_step(&obs) {
            Next::System(step) => {
                let reply = propose_system(shared, &step).await?;
                last = Some(format!("system {step:?}: {}", describe(&reply)));
                match shared
                    .groups
                    .system_table()
                    .and_then(|t| t.migration(id).cloned())
                {
                    Some(r) if changed(&reply) => record = r,
                    _ => break,
                }
            }
            Next::Group(step) => {
                let name = step.name();
                let group = step.group();
                let initial = SlotTable::new(group, table.map().clone()).encode();
                let reply = propose_group(shared, group, step.encode(), initial).await?;
                last = Some(format!("{name} on group {group}: {}", describe(&reply)));
                if !changed(&reply) {
                    break;
                }
                shared.progress.step_taken(&step);
                let Some(view) = view_after(&step) else {
                    break;
                };
                if group == m.source {
                    source = view;
                } else {
                    target = view;
                }
            }
            Next::NeedManifest => {
                let manifest = peer_manifest(shared, m.source, id).await?;
                caches.manifests.insert(id, manifest);
                last = Some(format!(
                    "manifest: {} chunks, {} entries",
                    manifest.chunks, manifest.entries
                ));
            }
            Next::SendChunk { seq } => {
                let resume = caches
                    .resume
                    .get(&id)
                    .filter(|(s, _)| s + 1 == seq)
                    .cloned();
                let Some((step, last_key)) = peer_chunk(shared, m.source, id, seq, resume).await?
                else {
                    return Err(format!("source has no chunk {seq}"));
                };
                let chunk = match GroupStep::decode(&step) {
                    Ok(GroupStep::ImportChunk(_, chunk)) => chunk,
                    _ => return Err("source sent something other than a chunk".into()),
                };
                let initial = SlotTable::new(m.target, table.map().clone()).encode();
                let reply = propose_group(shared, m.target, step.to_vec(), initial).await?;
                caches.resume.insert(id, (seq, last_key));
                let entries = chunk.entries.len();
                shared
                    .progress
                    .chunks
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                shared.progress.entries.fetch_add(
                    u64::try_from(entries).unwrap_or(u64::MAX),
                    std::sync::atomic::Ordering::Relaxed,
                );
                last = Some(format!(
                    "chunk {seq} ({entries} entries): {}",
                    describe(&reply)
                ));
                match target {
                    GroupView::Importing(mut received) if changed(&reply) => {
                        received.add(&chunk);
                        target = GroupView::Importing(received);
                    }
                    _ => break,
                }
            }
            Next::Stuck(why) => {
                tracing::warn!(migration = id, why, "migration stuck");
                shared.progress.note(id, format!("stuck: {why}"));
                return Ok(None);
            }
        }
    }
    Ok(last)
}

/// Most steps taken on one observation (a bound, not a target: a batch
/// normally takes a handful).
const MAX_STEPS_PER_LOOK: usize = 64;

fn changed(reply: &Frame) -> bool {
    matches!(reply, Frame::Simple(s) if s.as_ref() == b"CHANGED")
}

/// What a group's view becomes once `step` changed it (`None`: observe
/// it again; chunks are sent by [`Next::SendChunk`], which adds each to
/// the target's view itself).
fn view_after(step: &GroupStep) -> Option<GroupView> {
    Some(match step {
        GroupStep::Freeze(_) => GroupView::Frozen,
        GroupStep::HandOff(_) => GroupView::HandedOff,
        GroupStep::ImportStart(_) => GroupView::Importing(Manifest::default()),
        GroupStep::ImportChunk(..) => return None,
        GroupStep::ImportCommit(..) | GroupStep::Drop(_) => GroupView::Finished(Outcome::Completed),
        GroupStep::Abort(_) | GroupStep::ImportAbort(_) => GroupView::Finished(Outcome::Aborted),
    })
}

/// Proposes the abort of a migration whose source this coordinator has
/// seen frozen for longer than [`MAX_FREEZE`] (and not yet asked to
/// abort); what it did, if it did.
async fn abort_if_frozen_too_long(
    shared: &Shared,
    record: &seshat_migration::SystemMigration,
    source: GroupView,
    caches: &mut Caches,
) -> Result<Option<String>, String> {
    if source != GroupView::Frozen {
        return Ok(None);
    }
    let id = record.migration.id;
    let since = *caches
        .frozen_seen
        .entry(id)
        .or_insert_with(std::time::Instant::now);
    let asked = matches!(
        record.status,
        Status::Active {
            abort_requested: true
        }
    );
    if asked || since.elapsed() <= MAX_FREEZE {
        return Ok(None);
    }
    tracing::warn!(
        migration = id,
        "slots frozen for over {} s: aborting the migration",
        MAX_FREEZE.as_secs()
    );
    let reply = propose_system(shared, &SystemStep::Abort(id)).await?;
    Ok(Some(format!(
        "abort after a long freeze: {}",
        describe(&reply)
    )))
}

fn describe(frame: &Frame) -> String {
    match frame {
        Frame::Simple(s) | Frame::Error(s) | Frame::Bulk(s) => {
            String::from_utf8_lossy(s).into_owned()
        }
        Frame::Integer(n) => n.to_string(),
        other => format!("{other:?}"),
    }
}

/// A reply that is a refusal becomes an error (tried again next round).
fn accepted(frame: Frame) -> Result<Frame, String> {
    match frame {
        Frame::Error(e) => Err(String::from_utf8_lossy(&e).into_owned()),
        other => Ok(other),
    }
}

/// Proposes a system step on this node's system replica (the coordinator
/// runs only while it leads).
async fn propose_system(shared: &Shared, step: &SystemStep) -> Result<Frame, String> {
    let write = Write::System(SystemWrite::Step(Bytes::from(step.encode())));
    let reply = shared
        .groups
        .system()
        .write(write, 0)
        .await
        .map_err(|e| e.to_string())?;
    accepted(reply)
}

/// The operations a coordinator asks of a group's leader.
enum Op {
    View(MigrationId),
    Manifest(MigrationId),
    Chunk {
        id: MigrationId,
        seq: u64,
        resume: Option<(u64, Bytes)>,
    },
    Propose {
        step: Vec<u8>,
        initial: Vec<u8>,
    },
}

impl Op {
    fn args(&self, group: u32) -> Vec<Bytes> {
        let mut args = vec![Bytes::from_static(INTERNAL.as_bytes())];
        let num = |n: u64| Bytes::from(n.to_string());
        match self {
            Op::View(id) => args.extend([Bytes::from_static(b"VIEW"), num(group.into()), num(*id)]),
            Op::Manifest(id) => {
                args.extend([Bytes::from_static(b"MANIFEST"), num(group.into()), num(*id)])
            }
            Op::Chunk { id, seq, resume } => {
                args.extend([
                    Bytes::from_static(b"CHUNK"),
                    num(group.into()),
                    num(*id),
                    num(*seq),
                ]);
                if let Some((s, key)) = resume {
                    args.extend([num(*s), key.clone()]);
                }
            }
            Op::Propose { step, initial } => args.extend([
                Bytes::from_static(b"PROPOSE"),
                num(group.into()),
                Bytes::from(step.clone()),
                Bytes::from(initial.clone()),
            ]),
        }
        args
    }

    fn parse(args: &[Bytes]) -> Result<(u32, Op), String> {
        let text = |i: usize| -> Result<&str, String> {
            args.get(i)
                .and_then(|a| std::str::from_utf8(a).ok())
                .ok_or_else(|| format!("argument {i} missing or not text"))
        };
        let num = |i: usize| -> Result<u64, String> {
            text(i)?
                .parse::<u64>()
                .map_err(|_| format!("argument {i} is not a number"))
        };
        let group = u32::try_from(num(2)?).map_err(|_| "group out of range".to_string())?;
        let op = match text(1)?.to_ascii_uppercase().as_str() {
            "VIEW" => Op::View(num(3)?),
            "MANIFEST" => Op::Manifest(num(3)?),
            "CHUNK" => Op::Chunk {
                id: num(3)?,
                seq: num(4)?,
                resume: match args.get(6) {
                    Some(key) => Some((num(5)?, key.clone())),
                    None => None,
                },
            },
            "PROPOSE" => Op::Propose {
                step: args.get(3).ok_or("step missing")?.to_vec(),
                initial: args.get(4).ok_or("initial table missing")?.to_vec(),
            },
            other => return Err(format!("unknown operation {other}")),
        };
        Ok((group, op))
    }
}

/// Runs `op` on `group`'s leader: here if this node leads it, else on the
/// leader its peers report, over the forward RPC.
async fn on_leader(shared: &Shared, group: u32, op: Op) -> Result<Frame, String> {
    let groups = &shared.groups;
    if let Some(node) = groups.get(group) {
        if node.raft.is_leader() {
            return accepted(run_op(shared, &node, op).await);
        }
    }
    let leader = groups
        .leader_of(group)
        .ok_or_else(|| format!("no leader of group {group} known"))?;
    let member = shared
        .settings
        .initial_members
        .get(&leader)
        .ok_or_else(|| format!("leader {leader} of group {group} is not a member"))?;
    let reply = shared
        .proxy
        .call(
            &member.raft_addr.to_string(),
            &op.args(group),
            PEER_TIMEOUT,
            MAX_PEER_REPLY_BYTES,
        )
        .await
        .map_err(|e| e.to_string())?;
    accepted(reply)
}

async fn group_view(shared: &Shared, group: u32, id: MigrationId) -> Result<GroupView, String> {
    view_from_frame(&on_leader(shared, group, Op::View(id)).await?)
}

async fn peer_manifest(shared: &Shared, group: u32, id: MigrationId) -> Result<Manifest, String> {
    match on_leader(shared, group, Op::Manifest(id)).await? {
        Frame::Array(items) => manifest_from_frames(&items),
        other => Err(format!("unexpected manifest reply {other:?}")),
    }
}

async fn peer_chunk(
    shared: &Shared,
    group: u32,
    id: MigrationId,
    seq: u64,
    resume: Option<(u64, Bytes)>,
) -> Result<Option<(Bytes, Bytes)>, String> {
    match on_leader(shared, group, Op::Chunk { id, seq, resume }).await? {
        Frame::Null | Frame::NullArray => Ok(None),
        Frame::Array(items) => match <[Frame; 2]>::try_from(items) {
            Ok([Frame::Bulk(step), Frame::Bulk(last)]) => Ok(Some((step, last))),
            _ => Err("malformed chunk reply".into()),
        },
        other => Err(format!("unexpected chunk reply {other:?}")),
    }
}

async fn propose_group(
    shared: &Shared,
    group: u32,
    step: Vec<u8>,
    initial: Vec<u8>,
) -> Result<Frame, String> {
    on_leader(shared, group, Op::Propose { step, initial }).await
}

/// Serves a peer's [`INTERNAL`] command (the forward RPC's handler calls
/// this before resolving a command name).
pub async fn serve_internal(shared: &Shared, args: &[Bytes]) -> Frame {
    if args
        .get(1)
        .is_some_and(|a| a.eq_ignore_ascii_case(b"SYSTEM"))
    {
        return serve_system_step(shared, args).await;
    }
    let (group, op) = match Op::parse(args) {
        Ok(parsed) => parsed,
        Err(e) => return Frame::error(format!("ERR {INTERNAL}: {e}")),
    };
    let Some(node) = shared.groups.get(group) else {
        return Frame::error(format!("ERR group {group} is not held by this node"));
    };
    run_op(shared, &node, op).await
}

/// Runs `op` on this node's replica of its group (which must lead it).
async fn run_op(shared: &Shared, node: &Arc<Node>, op: Op) -> Frame {
    let to_frame = |e: ServeError| e.to_frame(&shared.settings, false);
    match op {
        Op::Propose { step, initial } => {
            let write = Write::Migration {
                step: Bytes::from(step),
                initial: Bytes::from(initial),
            };
            node.write(write, 0).await.unwrap_or_else(to_frame)
        }
        Op::View(id) => {
            if let Err(e) = node.read_barrier(0).await {
                return to_frame(e);
            }
            let view = node.table().map_or(GroupView::NotStarted, |t| t.view(id));
            view_to_frame(view)
        }
        Op::Manifest(id) => {
            let slots = match frozen_slots(node, id).await {
                Ok(slots) => slots,
                Err(e) => return e,
            };
            let (store, group) = (node.store.clone(), node.group);
            let result = tokio::task::spawn_blocking(move || {
                let mut view = ReadView::new(&store, group);
                seshat_commands::migration::manifest(&mut view, group, &slots)
            })
            .await;
            match result {
                Ok(Ok(m)) => Frame::Array(manifest_to_frames(m)),
                Ok(Err(e)) => Frame::error(format!("ERR cannot compute the manifest: {e}")),
                Err(e) => Frame::error(format!("ERR manifest task failed: {e}")),
            }
        }
        Op::Chunk { id, seq, resume } => {
            let slots = match frozen_slots(node, id).await {
                Ok(slots) => slots,
                Err(e) => return e,
            };
            let Some(migration) = node.table().and_then(|t| t.current().cloned()) else {
                return Frame::error("ERR no migration in progress here");
            };
            let (store, group) = (node.store.clone(), node.group);
            let result = tokio::task::spawn_blocking(move || {
                let mut view = ReadView::new(&store, group);
                let resume = resume.as_ref().map(|(s, k)| (*s, &k[..]));
                seshat_commands::migration::cut_chunk(&mut view, group, &slots, seq, resume)
            })
            .await;
            match result {
                Ok(Ok(Some((chunk, last)))) => {
                    let step = GroupStep::ImportChunk(migration, chunk).encode();
                    Frame::Array(vec![
                        Frame::Bulk(Bytes::from(step)),
                        Frame::Bulk(Bytes::from(last)),
                    ])
                }
                Ok(Ok(None)) => Frame::Null,
                Ok(Err(e)) => Frame::error(format!("ERR cannot cut chunk {seq}: {e}")),
                Err(e) => Frame::error(format!("ERR chunk task failed: {e}")),
            }
        }
    }
}

/// The slots of migration `id` once this replica (after a read barrier)
/// is its frozen (or handed-off) source: the copy is cut only from data
/// that can no longer change.
async fn frozen_slots(node: &Node, id: MigrationId) -> Result<SlotRanges, Frame> {
    if let Err(e) = node.read_barrier(0).await {
        return Err(Frame::error(e.to_string()));
    }
    let table = node
        .table()
        .ok_or_else(|| Frame::error("ERR this group takes part in no migration"))?;
    match (table.view(id), table.current()) {
        (GroupView::Frozen | GroupView::HandedOff, Some(m)) if m.id == id => Ok(m.slots.clone()),
        (view, _) => Err(Frame::error(format!(
            "ERR migration {id} is not frozen here ({view:?})"
        ))),
    }
}

fn manifest_to_frames(m: Manifest) -> Vec<Frame> {
    let int = |n: u64| Frame::Integer(i64::from_ne_bytes(n.to_ne_bytes()));
    vec![int(m.chunks), int(m.entries), int(m.digest)]
}

fn manifest_from_frames(items: &[Frame]) -> Result<Manifest, String> {
    let int = |f: &Frame| match f {
        Frame::Integer(n) => Ok(u64::from_ne_bytes(n.to_ne_bytes())),
        _ => Err("manifest field is not an integer".to_string()),
    };
    match items {
        [c, e, d] => Ok(Manifest {
            chunks: int(c)?,
            entries: int(e)?,
            digest: int(d)?,
        }),
        _ => Err("manifest of the wrong length".into()),
    }
}

fn view_to_frame(view: GroupView) -> Frame {
    let (name, manifest) = match view {
        GroupView::NotStarted => ("not-started", None),
        GroupView::Frozen => ("frozen", None),
        GroupView::HandedOff => ("handed-off", None),
        GroupView::Importing(m) => ("importing", Some(m)),
        GroupView::Finished(Outcome::Completed) => ("completed", None),
        GroupView::Finished(Outcome::Aborted) => ("aborted", None),
        GroupView::Superseded => ("superseded", None),
    };
    let mut items = vec![Frame::bulk(name)];
    if let Some(m) = manifest {
        items.extend(manifest_to_frames(m));
    }
    Frame::Array(items)
}

fn view_from_frame(frame: &Frame) -> Result<GroupView, String> {
    let Frame::Array(items) = frame else {
        return Err(format!("unexpected view reply {frame:?}"));
    };
    let Some(Frame::Bulk(name)) = items.first() else {
        return Err("view reply without a name".into());
    };
    Ok(match &name[..] {
        b"not-started" => GroupView::NotStarted,
        b"frozen" => GroupView::Frozen,
        b"handed-off" => GroupView::HandedOff,
        b"importing" => GroupView::Importing(manifest_from_frames(&items[1..])?),
        b"completed" => GroupView::Finished(Outcome::Completed),
        b"aborted" => GroupView::Finished(Outcome::Aborted),
        b"superseded" => GroupView::Superseded,
        other => return Err(format!("unknown view {:?}", String::from_utf8_lossy(other))),
    })
}

/// `CLUSTER MIGRATESLOTS SLOTSRANGE first last [first last …] SHARD g`:
/// records a migration of the slots (all of one group today) to data
/// group `g` in the system group; the coordinator does the rest. Replies
/// the migration's id.
pub async fn migrate_slots(shared: &Shared, args: &[Bytes]) -> Frame {
    let request = match parse_migrate(args) {
        Ok(r) => r,
        Err(e) => return Frame::error(format!("ERR {e}")),
    };
    let (ranges, target) = request;
    let groups = &shared.groups;
    if groups.layout.group(target).is_none() {
        return Frame::error(format!(
            "ERR no shard {target}: shards are 1..={}",
            groups.layout.groups().len()
        ));
    }
    let Some(table) = groups.system_table() else {
        return Frame::error("CLUSTERDOWN the cluster's slot map has not reached this node yet");
    };
    let slots = match SlotRanges::new(ranges) {
        Ok(s) => s,
        Err(e) => return Frame::error(format!("ERR {e}")),
    };
    let first = slots.slots().next().unwrap_or(0);
    let Some(source) = table.map().owner(first) else {
        return Frame::error("ERR slot out of range");
    };
    if !table.map().all_owned_by(&slots, source) {
        return Frame::error(
            "ERR the slots belong to more than one shard: move each shard's slots separately",
        );
    }
    if source == target {
        return Frame::error(format!("ERR the slots already belong to shard {target}"));
    }
    let step = SystemStep::Record {
        slots,
        source,
        target,
        map_version: table.map_version(),
    };
    system_step_anywhere(shared, &step).await
}

type MigrateRequest = (Vec<(u16, u16)>, u32);

fn parse_migrate(args: &[Bytes]) -> Result<MigrateRequest, String> {
    let upper = |i: usize| args.get(i).map(|a| a.to_ascii_uppercase());
    if upper(2).as_deref() != Some(b"SLOTSRANGE".as_slice()) {
        return Err(
            "syntax: CLUSTER MIGRATESLOTS SLOTSRANGE first last [first last ...] SHARD id".into(),
        );
    }
    let num = |a: &Bytes| -> Result<u64, String> {
        std::str::from_utf8(a)
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| format!("'{}' is not a number", String::from_utf8_lossy(a)))
    };
    let rest = args.get(3..).unwrap_or_default();
    let shard_at = rest
        .iter()
        .position(|a| a.eq_ignore_ascii_case(b"SHARD"))
        .ok_or("SHARD id missing")?;
    let (pairs, tail) = rest.split_at(shard_at);
    if pairs.is_empty() || pairs.len() % 2 != 0 || tail.len() != 2 {
        return Err(
            "syntax: CLUSTER MIGRATESLOTS SLOTSRANGE first last [first last ...] SHARD id".into(),
        );
    }
    let slot = |a: &Bytes| -> Result<u16, String> {
        u16::try_from(num(a)?)
            .ok()
            .filter(|s| *s < seshat_common::CLUSTER_SLOTS)
            .ok_or_else(|| "Invalid or out of range slot".to_string())
    };
    let mut ranges = Vec::with_capacity(pairs.len() / 2);
    for pair in pairs.chunks(2) {
        let (first, last) = (slot(&pair[0])?, slot(&pair[1])?);
        if first > last {
            return Err(format!(
                "start slot {first} is greater than end slot {last}"
            ));
        }
        ranges.push((first, last));
    }
    let shard = shard_id(&tail[1])?;
    Ok((ranges, shard))
}

/// A shard named by its number (data groups are numbered from 1, in
/// slot order at bootstrap).
fn shard_id(arg: &Bytes) -> Result<u32, String> {
    let text = std::str::from_utf8(arg).map_err(|_| "bad shard id".to_string())?;
    text.parse::<u32>()
        .map_err(|_| format!("shard id '{text}' is not a number"))
}

/// Proposes a system step on the system group's leader, wherever it is.
async fn system_step_anywhere(shared: &Shared, step: &SystemStep) -> Frame {
    let groups = &shared.groups;
    if groups.system().raft.is_leader() {
        return propose_system(shared, step)
            .await
            .unwrap_or_else(|e| Frame::error(with_code(e)));
    }
    let args = vec![
        Bytes::from_static(INTERNAL.as_bytes()),
        Bytes::from_static(b"SYSTEM"),
        Bytes::from_static(b"0"),
        Bytes::from(step.encode()),
    ];
    let Some(leader) = groups.leader_of(seshat_raft::layout::SYSTEM_GROUP) else {
        return Frame::error("CLUSTERDOWN the system group has no leader");
    };
    let Some(member) = shared.groups.member(leader) else {
        return Frame::error("CLUSTERDOWN the system group's leader is unknown");
    };
    match shared
        .proxy
        .call(
            &member.raft_addr.to_string(),
            &args,
            PEER_TIMEOUT,
            MAX_PEER_REPLY_BYTES,
        )
        .await
    {
        Ok(frame) => frame,
        Err(e) => Frame::error(e.to_string()),
    }
}

fn with_code(e: String) -> String {
    if e.split_whitespace()
        .next()
        .is_some_and(|w| w.chars().all(|c| c.is_ascii_uppercase()))
    {
        e
    } else {
        format!("ERR {e}")
    }
}

/// Serves the `SYSTEM` peer operation: a system step proposed here, this
/// node leading the system group.
async fn serve_system_step(shared: &Shared, args: &[Bytes]) -> Frame {
    let Some(step) = args.get(3).and_then(|b| SystemStep::decode(b).ok()) else {
        return Frame::error("ERR unreadable system step");
    };
    propose_system(shared, &step)
        .await
        .unwrap_or_else(|e| Frame::error(with_code(e)))
}

/// `CLUSTER GETSLOTMIGRATIONS`: the migrations in progress as this node's
/// system replica has applied them, then the last ones finished.
pub fn get_slot_migrations(shared: &Shared) -> Frame {
    let Some(table) = shared.groups.system_table() else {
        return Frame::Array(vec![]);
    };
    let mut out = Vec::new();
    for record in table.active() {
        let m = &record.migration;
        let status = match record.status {
            Status::Active {
                abort_requested: false,
            } => "in-progress",
            Status::Active {
                abort_requested: true,
            } => "aborting",
            Status::Flipped => "flipped",
        };
        out.push(migration_entry(
            m.id,
            &m.slots,
            m.source,
            m.target,
            status,
            shared.progress.of(m.id),
        ));
    }
    let last = table.last_id();
    for id in last.saturating_sub(15).max(1)..=last {
        if let Some(outcome) = table.outcome(id) {
            let status = match outcome {
                Outcome::Completed => "completed",
                Outcome::Aborted => "aborted",
            };
            out.push(Frame::Map(vec![
                (Frame::bulk("id"), Frame::Integer(id_int(id))),
                (Frame::bulk("state"), Frame::bulk(status)),
            ]));
        }
    }
    Frame::Array(out)
}

fn id_int(id: MigrationId) -> i64 {
    i64::try_from(id).unwrap_or(i64::MAX)
}

fn migration_entry(
    id: MigrationId,
    slots: &SlotRanges,
    source: u32,
    target: u32,
    state: &str,
    last_step: Option<String>,
) -> Frame {
    let ranges: Vec<Frame> = slots
        .ranges()
        .iter()
        .map(|r| Frame::bulk(format!("{}-{}", r.start, r.end)))
        .collect();
    Frame::Map(vec![
        (Frame::bulk("id"), Frame::Integer(id_int(id))),
        (Frame::bulk("state"), Frame::bulk(state.to_string())),
        (Frame::bulk("slots"), Frame::Array(ranges)),
        (
            Frame::bulk("source-shard"),
            Frame::Integer(i64::from(source)),
        ),
        (
            Frame::bulk("target-shard"),
            Frame::Integer(i64::from(target)),
        ),
        (
            Frame::bulk("last-step"),
            Frame::bulk(last_step.unwrap_or_default()),
        ),
    ])
}

/// `CLUSTER CANCELSLOTMIGRATIONS`: asks every migration in progress to
/// abort. A migration past its hand-off completes anyway (the source's
/// log decides); replies how many aborts were recorded.
pub async fn cancel_slot_migrations(shared: &Shared) -> Frame {
    let Some(table) = shared.groups.system_table() else {
        return Frame::Integer(0);
    };
    let ids: Vec<MigrationId> = table.active().map(|m| m.migration.id).collect();
    let mut recorded = 0;
    for id in ids {
        match system_step_anywhere(shared, &SystemStep::Abort(id)).await {
            Frame::Error(e) => return Frame::Error(e),
            _ => recorded += 1,
        }
    }
    Frame::Integer(recorded)
}

/// `INFO` lines of the resharding section.
pub fn info(shared: &Shared) -> String {
    use std::sync::atomic::Ordering::Relaxed;
    let table = shared.groups.system_table();
    let active = table.as_ref().map_or(0, |t| t.active().count());
    let last = table.as_ref().map_or(0, |t| t.last_id());
    let (freezes, p50, p99, max) = shared.progress.freeze_summary();
    format!(
        "migrations_in_progress:{active}\r\nmigrations_last_id:{last}\r\n\
         migration_steps_coordinated:{}\r\nmigration_chunks_copied:{}\r\nmigration_entries_copied:{}\r\n\
         migration_freezes_measured:{freezes}\r\nmigration_freeze_ms_p50:{p50}\r\n\
         migration_freeze_ms_p99:{p99}\r\nmigration_freeze_ms_max:{max}\r\n",
        shared.progress.steps.load(Relaxed),
        shared.progress.chunks.load(Relaxed),
        shared.progress.entries.load(Relaxed),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_and_manifests_survive_their_wire_form() {
        let m = Manifest {
            chunks: 3,
            entries: 9000,
            digest: u64::MAX - 5,
        };
        for view in [
            GroupView::NotStarted,
            GroupView::Frozen,
            GroupView::HandedOff,
            GroupView::Importing(m),
            GroupView::Finished(Outcome::Completed),
            GroupView::Finished(Outcome::Aborted),
            GroupView::Superseded,
        ] {
            assert_eq!(view_from_frame(&view_to_frame(view)), Ok(view));
        }
        assert!(view_from_frame(&Frame::bulk("frozen")).is_err());
        assert!(view_from_frame(&Frame::Array(vec![Frame::bulk("importing")])).is_err());
    }

    #[test]
    fn peer_operations_parse_what_they_print() {
        let ops = [
            Op::View(7),
            Op::Manifest(8),
            Op::Chunk {
                id: 9,
                seq: 4,
                resume: Some((3, Bytes::from_static(b"\x00\x01key"))),
            },
            Op::Chunk {
                id: 9,
                seq: 0,
                resume: None,
            },
            Op::Propose {
                step: vec![1, 2, 3],
                initial: vec![4],
            },
        ];
        for op in ops {
            let args = op.args(5);
            let (group, parsed) = Op::parse(&args).unwrap();
            assert_eq!(group, 5);
            assert_eq!(parsed.args(5), args);
        }
        assert!(Op::parse(&[Bytes::from_static(INTERNAL.as_bytes())]).is_err());
    }

    #[test]
    fn migrate_slots_arguments() {
        let args = |s: &str| -> Vec<Bytes> {
            s.split_whitespace()
                .map(|w| Bytes::from(w.to_string()))
                .collect()
        };
        assert_eq!(
            parse_migrate(&args(
                "CLUSTER MIGRATESLOTS SLOTSRANGE 0 99 200 300 SHARD 2"
            )),
            Ok((vec![(0, 99), (200, 300)], 2))
        );
        for bad in [
            "CLUSTER MIGRATESLOTS SLOTSRANGE 0 SHARD 2",
            "CLUSTER MIGRATESLOTS SLOTSRANGE 5 1 SHARD 2",
            "CLUSTER MIGRATESLOTS SLOTSRANGE 0 16384 SHARD 2",
            "CLUSTER MIGRATESLOTS SLOTSRANGE 0 1",
            "CLUSTER MIGRATESLOTS RANGE 0 1 SHARD 2",
            "CLUSTER MIGRATESLOTS SLOTSRANGE 0 1 SHARD",
        ] {
            assert!(parse_migrate(&args(bad)).is_err(), "{bad}");
        }
    }
}
