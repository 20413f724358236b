//! A deterministic model of resharding: one system group and four data
//! groups, each a state table plus its data (key → value), driven by the
//! real tables and the real coordinator, with every step delivered late,
//! twice, out of order, never, or long after it was decided, client writes and
//! reads interleaved, and the coordinator "crashing" after every step (it
//! is a pure function called afresh each time; zombie coordinators also
//! act on observations they made long ago).
//!
//! After every event the checker asserts:
//!
//! 1. at most one group serves any command on a slot (reads included);
//! 2. a slot no migration is moving is served by exactly one group — the
//!    one the system group's slot map names, and every group's table
//!    agrees with the map about it;
//! 3. every key reads, from the group serving it, as its last
//!    acknowledged value (absent if deleted or never written): no write
//!    lost, no key resurrected; reads by clients see the same;
//! 4. a group holds data only in slots it owns, is freezing, handed off
//!    or imports (nothing left behind to come back to life);
//! 5. a source drops a slot's data only after the system group flipped;
//! 6. when the system group finishes a migration, both groups have
//!    finished it the same way; the coordinator never finds the records
//!    contradictory (`Stuck`); at the end every migration has finished.
//!
//! Broken variants (a source taking writes while frozen, a hand-off
//! before the copy is complete, a drop before the flip, a target serving
//! `ASKING` before its commit, an abort after the hand-off) must be caught.
//!
//! Every table also goes through its stored form now and then (a replica
//! restarting), and steps travel as their encoded bytes.
//!
//! `MIGRATION_MODEL_SEEDS=n` runs n seeds instead of the default.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use seshat_common::crc16_slot;
use seshat_migration::{
    copy, next_step, Access, Applied, ChunkEntry, ChunkLimits, Decision, Effect, GroupId,
    GroupStep, GroupView, Manifest, Migration, MigrationId, Next, Observation, Outcome, SlotMap,
    SlotRanges, SlotState, SlotTable, Status, SystemApplied, SystemMigration, SystemStep,
    SystemTable,
};

const GROUPS: [GroupId; 4] = [1, 2, 3, 4];
const TAGS: usize = 6;
const KEYS_PER_TAG: usize = 4;
const EVENTS: usize = 300;
const DRAIN_ROUNDS: usize = 200;
const MIGRATIONS_PER_SEED: usize = 8;
const HISTORY: usize = 64;
const ZOMBIE_MEMORY: usize = 16;
const DEFAULT_SEEDS: u64 = 3000;

/// SplitMix64: small, seeded, good enough to pick events.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn one_in(&mut self, n: u64) -> bool {
        self.next().is_multiple_of(n)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    Correct,
    /// The source's table lets writes through while frozen.
    WritesWhileFrozen,
    /// The coordinator hands off instead of copying, and commits whatever
    /// the target received.
    HandOffBeforeCopy,
    /// The coordinator drops the source's data before flipping.
    DropBeforeFlip,
    /// The target serves `ASKING` commands before its commit.
    TargetServesAsking,
    /// The coordinator honours an abort after the hand-off by aborting
    /// the target.
    AbortAfterHandOff,
}

#[derive(Debug, Clone)]
enum Msg {
    System(SystemStep),
    Group(GroupStep),
    Write {
        group: GroupId,
        key: Vec<u8>,
        value: Option<Vec<u8>>,
        asking: bool,
    },
}

/// What a coordinator saw once, kept so a zombie can act on it later.
#[derive(Clone)]
struct Memory {
    record: SystemMigration,
    source: GroupView,
    target: GroupView,
    manifest: Option<Manifest>,
    entries: Vec<ChunkEntry>,
}

#[derive(Default, Debug, Clone)]
struct Stats {
    events: u64,
    completed: u64,
    aborted: u64,
    acked_writes: u64,
    refused_at_apply: u64,
    try_again: u64,
    asks: u64,
    moved: u64,
    ignored_steps: u64,
    refused_steps: u64,
    reads_checked: u64,
    chunks_applied: u64,
    concurrent_events: u64,
}

impl Stats {
    fn add(&mut self, o: &Stats) {
        self.events += o.events;
        self.completed += o.completed;
        self.aborted += o.aborted;
        self.acked_writes += o.acked_writes;
        self.refused_at_apply += o.refused_at_apply;
        self.try_again += o.try_again;
        self.asks += o.asks;
        self.moved += o.moved;
        self.ignored_steps += o.ignored_steps;
        self.refused_steps += o.refused_steps;
        self.reads_checked += o.reads_checked;
        self.chunks_applied += o.chunks_applied;
        self.concurrent_events += o.concurrent_events;
    }
}

struct Group {
    table: SlotTable,
    data: BTreeMap<Vec<u8>, Vec<u8>>,
}

struct World {
    rng: Rng,
    variant: Variant,
    limits: ChunkLimits,
    system: SystemTable,
    groups: BTreeMap<GroupId, Group>,
    pool: Vec<Msg>,
    history: Vec<Msg>,
    zombies: Vec<Memory>,
    keys: Vec<Vec<u8>>,
    acked: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    relevant: BTreeSet<u16>,
    recorded: BTreeMap<MigrationId, Migration>,
    checked_done: BTreeSet<MigrationId>,
    requests: usize,
    next_value: u64,
    stats: Stats,
}

type Check = Result<(), String>;

fn slot_of(key: &[u8]) -> u16 {
    crc16_slot(key)
}

impl World {
    fn new(seed: u64, variant: Variant) -> Self {
        let mut rng = Rng(seed);
        let map = SlotMap::even(&GROUPS).expect("groups");
        let groups = GROUPS
            .iter()
            .map(|&g| {
                let table = SlotTable::new(g, map.clone());
                (
                    g,
                    Group {
                        table,
                        data: BTreeMap::new(),
                    },
                )
            })
            .collect();
        // Tags on random slots, so the groups' shares vary by seed; a few
        // tags share a neighbourhood so ranges cover several of them.
        let mut keys = Vec::new();
        let mut relevant = BTreeSet::new();
        for t in 0..TAGS {
            let tag = format!("t{}-{}", t, rng.next() % 100_000);
            for k in 0..KEYS_PER_TAG {
                let key = format!("{{{tag}}}k{k}").into_bytes();
                relevant.insert(slot_of(&key));
                keys.push(key);
            }
        }
        let limits = ChunkLimits::new(1 + rng.below(3), 64 + rng.below(64)).expect("limits");
        let mut world = World {
            rng,
            variant,
            limits,
            system: SystemTable::new(map),
            groups,
            pool: Vec::new(),
            history: Vec::new(),
            zombies: Vec::new(),
            keys,
            acked: BTreeMap::new(),
            relevant,
            recorded: BTreeMap::new(),
            checked_done: BTreeSet::new(),
            requests: 0,
            next_value: 0,
            stats: Stats::default(),
        };
        for key in world.keys.clone() {
            let value = if world.rng.one_in(4) {
                None
            } else {
                Some(world.fresh_value())
            };
            if let Some(v) = &value {
                let owner = world.system.map().owner(slot_of(&key)).expect("slot");
                world.group_mut(owner).data.insert(key.clone(), v.clone());
            }
            world.acked.insert(key, value);
        }
        world
    }

    fn fresh_value(&mut self) -> Vec<u8> {
        self.next_value += 1;
        format!("v{}", self.next_value).into_bytes()
    }

    fn group(&self, g: GroupId) -> &Group {
        self.groups.get(&g).expect("known group")
    }

    fn group_mut(&mut self, g: GroupId) -> &mut Group {
        self.groups.get_mut(&g).expect("known group")
    }

    /// The table's decision, bent by the broken variants.
    fn decide(&self, g: GroupId, slot: u16, access: Access, asking: bool) -> Decision {
        let table = &self.group(g).table;
        match (self.variant, table.state(slot), access) {
            (Variant::WritesWhileFrozen, SlotState::Frozen { .. }, Access::Write) => {
                Decision::Serve
            }
            (Variant::TargetServesAsking, SlotState::Importing { .. }, _) if asking => {
                Decision::Serve
            }
            _ => table.decide(slot, access, asking),
        }
    }

    fn serves(&self, g: GroupId, slot: u16, access: Access) -> bool {
        [false, true]
            .into_iter()
            .any(|asking| self.decide(g, slot, access, asking) == Decision::Serve)
    }

    fn serves_anything(&self, g: GroupId, slot: u16) -> bool {
        self.serves(g, slot, Access::Read) || self.serves(g, slot, Access::Write)
    }

    // ---- events -------------------------------------------------------

    fn step(&mut self) -> Check {
        self.stats.events += 1;
        match self.rng.below(100) {
            0..=34 => self.deliver(),
            35..=49 => self.coordinate(),
            50..=52 => self.zombie(),
            53..=56 => self.replay(),
            57..=60 => self.request_migration(),
            61 => self.request_abort(),
            62 => self.restart(),
            63..=86 => self.client_write(),
            _ => self.client_read(),
        }
    }

    /// A replica restarts: every table is read back from its stored
    /// form, which must be the same table.
    fn restart(&mut self) -> Check {
        let system = SystemTable::decode(&self.system.encode()).map_err(|e| e.to_string())?;
        if system != self.system {
            return Err("the system table changed through its stored form".into());
        }
        for g in GROUPS {
            let table = &mut self.group_mut(g).table;
            let read = SlotTable::decode(&table.encode()).map_err(|e| e.to_string())?;
            if read != *table {
                return Err(format!("group {g}'s table changed through its stored form"));
            }
            *table = read;
        }
        self.system = system;
        Ok(())
    }

    fn propose(&mut self, msg: Msg) {
        if self.rng.one_in(4) {
            self.pool.push(msg.clone());
        }
        self.pool.push(msg);
    }

    fn deliver(&mut self) -> Check {
        if self.pool.is_empty() {
            return Ok(());
        }
        let i = self.rng.below(self.pool.len());
        if self.rng.one_in(20) {
            // Lost: a leader crashed before appending it, or the
            // coordinator crashed between deciding and proposing.
            self.pool.swap_remove(i);
            return Ok(());
        }
        let msg = if self.rng.one_in(8) {
            self.pool.get(i).cloned().expect("index in range")
        } else {
            self.pool.swap_remove(i)
        };
        self.apply(msg)
    }

    /// An old step delivered again, long after it was applied.
    fn replay(&mut self) -> Check {
        if self.history.is_empty() {
            return Ok(());
        }
        let i = self.rng.below(self.history.len());
        let msg = self.history.get(i).cloned().expect("index in range");
        self.apply(msg)
    }

    fn remember(&mut self, msg: &Msg) {
        if self.history.len() < HISTORY {
            self.history.push(msg.clone());
        } else {
            let i = self.rng.below(HISTORY);
            if let Some(slot) = self.history.get_mut(i) {
                *slot = msg.clone();
            }
        }
    }

    fn apply(&mut self, msg: Msg) -> Check {
        match msg {
            Msg::System(step) => {
                self.remember(&Msg::System(step.clone()));
                let step = through_bytes(&step, SystemStep::encode, SystemStep::decode)?;
                match self.system.apply(&step) {
                    Ok(SystemApplied::Recorded(id)) => {
                        let m = self
                            .system
                            .migration(id)
                            .expect("recorded")
                            .migration
                            .clone();
                        self.relevant.extend(m.slots.slots());
                        self.recorded.insert(id, m);
                    }
                    Ok(SystemApplied::Ignored) => self.stats.ignored_steps += 1,
                    Ok(SystemApplied::Changed) => {}
                    Err(_) => self.stats.refused_steps += 1,
                }
                Ok(())
            }
            Msg::Group(step) => {
                self.remember(&Msg::Group(step.clone()));
                let step = through_bytes(&step, GroupStep::encode, GroupStep::decode)?;
                self.apply_group(step)
            }
            Msg::Write {
                group,
                key,
                value,
                asking,
            } => {
                // Ownership is checked again at apply.
                if self.decide(group, slot_of(&key), Access::Write, asking) != Decision::Serve {
                    self.stats.refused_at_apply += 1;
                    return Ok(());
                }
                let data = &mut self.group_mut(group).data;
                match &value {
                    Some(v) => data.insert(key.clone(), v.clone()),
                    None => data.remove(&key),
                };
                self.acked.insert(key, value);
                self.stats.acked_writes += 1;
                Ok(())
            }
        }
    }

    fn apply_group(&mut self, step: GroupStep) -> Check {
        let g = step.group();
        let result = self.group_mut(g).table.apply(&step);
        match result {
            Ok(Applied::Changed(effect)) => {
                if let GroupStep::Drop(m) = &step {
                    let flipped = match self.system.migration(m.id) {
                        Some(r) => r.status == Status::Flipped,
                        None => self.system.outcome(m.id) == Some(Outcome::Completed),
                    };
                    if !flipped {
                        return Err(format!(
                            "group {g} dropped the data of migration {} before the flip",
                            m.id
                        ));
                    }
                }
                if effect == Effect::WriteChunk {
                    self.stats.chunks_applied += 1;
                }
                let data = &mut self.group_mut(g).data;
                match effect {
                    Effect::None => {}
                    Effect::WriteChunk => {
                        if let GroupStep::ImportChunk(_, chunk) = &step {
                            for e in &chunk.entries {
                                data.insert(e.key.clone(), e.value.clone());
                            }
                        }
                    }
                    Effect::DeleteSlots(slots) => data.retain(|k, _| !slots.contains(slot_of(k))),
                }
            }
            Ok(Applied::Ignored) => self.stats.ignored_steps += 1,
            Err(_) => self.stats.refused_steps += 1,
        }
        Ok(())
    }

    /// The source's entries in the migrating slots, in storage order.
    fn entries(&self, m: &Migration) -> Vec<ChunkEntry> {
        self.group(m.source)
            .data
            .iter()
            .filter(|(k, _)| m.slots.contains(slot_of(k)))
            .map(|(k, v)| ChunkEntry {
                slot: slot_of(k),
                key: k.clone(),
                value: v.clone(),
            })
            .collect()
    }

    /// A coordinator started afresh: reads the records, proposes one
    /// step per migration in progress, and is forgotten.
    fn coordinate(&mut self) -> Check {
        let records: Vec<SystemMigration> = self.system.active().cloned().collect();
        for record in records {
            let m = &record.migration;
            let source = self.group(m.source).table.view(m.id);
            let target = self.group(m.target).table.view(m.id);
            let frozen = matches!(source, GroupView::Frozen | GroupView::HandedOff);
            let entries = if frozen { self.entries(m) } else { Vec::new() };
            let manifest = if frozen {
                Some(copy::manifest(entries.clone(), self.limits).map_err(|e| e.to_string())?)
            } else {
                None
            };
            let memory = Memory {
                record: record.clone(),
                source,
                target,
                manifest,
                entries,
            };
            if self.zombies.len() < ZOMBIE_MEMORY {
                self.zombies.push(memory.clone());
            } else {
                let i = self.rng.below(ZOMBIE_MEMORY);
                if let Some(z) = self.zombies.get_mut(i) {
                    *z = memory.clone();
                }
            }
            self.act(&memory)?;
        }
        Ok(())
    }

    /// A coordinator that crashed long ago acts on what it saw then.
    fn zombie(&mut self) -> Check {
        if self.zombies.is_empty() {
            return Ok(());
        }
        let i = self.rng.below(self.zombies.len());
        let memory = self.zombies.get(i).cloned().expect("index in range");
        self.act(&memory)
    }

    fn act(&mut self, memory: &Memory) -> Check {
        let obs = Observation {
            record: &memory.record,
            source: memory.source,
            target: memory.target,
            manifest: memory.manifest,
        };
        let m = &memory.record.migration;
        for next in self.tamper(next_step(&obs), &obs) {
            match next {
                Next::System(step) => self.propose(Msg::System(step)),
                Next::Group(step) => self.propose(Msg::Group(step)),
                Next::SendChunk { seq } => {
                    // A copier may pipeline a few chunks ahead.
                    for ahead in 0..1 + self.rng.below(3) as u64 {
                        let chunk =
                            copy::chunk_at(memory.entries.clone(), self.limits, seq + ahead)
                                .map_err(|e| e.to_string())?;
                        if let Some(chunk) = chunk {
                            self.propose(Msg::Group(GroupStep::ImportChunk(m.clone(), chunk)));
                        }
                    }
                }
                Next::NeedManifest => {
                    return Err("the coordinator asked for a manifest it was given".into())
                }
                Next::Stuck(why) => {
                    return Err(format!("coordinator stuck on migration {}: {why}", m.id))
                }
            }
        }
        Ok(())
    }

    /// The broken coordinators.
    fn tamper(&self, next: Next, obs: &Observation<'_>) -> Vec<Next> {
        let m = obs.record.migration.clone();
        let abort_requested = obs.record.status
            == Status::Active {
                abort_requested: true,
            };
        match self.variant {
            Variant::HandOffBeforeCopy => match (obs.source, obs.target, next) {
                // Commits whatever the target received...
                (GroupView::HandedOff, GroupView::Importing(received), _) => {
                    vec![Next::Group(GroupStep::ImportCommit(m, received))]
                }
                // ...after handing off instead of copying.
                (_, _, Next::SendChunk { .. }) => vec![Next::Group(GroupStep::HandOff(m))],
                (_, _, next) => vec![next],
            },
            Variant::DropBeforeFlip => match next {
                flip @ Next::System(SystemStep::Flip(_)) => {
                    vec![Next::Group(GroupStep::Drop(m)), flip]
                }
                next => vec![next],
            },
            Variant::AbortAfterHandOff => match next {
                Next::Group(GroupStep::ImportCommit(..)) if abort_requested => {
                    vec![Next::Group(GroupStep::ImportAbort(m))]
                }
                next => vec![next],
            },
            Variant::Correct | Variant::WritesWhileFrozen | Variant::TargetServesAsking => {
                vec![next]
            }
        }
    }

    fn request_migration(&mut self) -> Check {
        if self.requests >= MIGRATIONS_PER_SEED {
            return Ok(());
        }
        self.requests += 1;
        let source = GROUPS[self.rng.below(GROUPS.len())];
        let target = GROUPS[(GROUPS.iter().position(|&g| g == source).expect("listed")
            + 1
            + self.rng.below(GROUPS.len() - 1))
            % GROUPS.len()];
        let map = self.system.map().clone();
        let owned: Vec<u16> = self
            .keys
            .iter()
            .map(|k| slot_of(k))
            .filter(|&s| map.owner(s) == Some(source))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut ranges: Vec<(u16, u16)> = owned
            .iter()
            .filter(|_| self.rng.one_in(2))
            .map(|&s| (s, s))
            .collect();
        if ranges.is_empty() {
            // Sometimes a slot with no keys: an empty copy.
            let random = self.rng.below(16384) as u16;
            let slot = Some(random)
                .filter(|&s| map.owner(s) == Some(source))
                .or(owned.first().copied());
            ranges.extend(slot.map(|s| (s, s)));
        }
        // Widen one range over neighbours the source owns.
        if let Some(&(s, _)) = ranges.first() {
            let end = s.saturating_add(self.rng.below(4) as u16).min(16383);
            if (s..=end).all(|x| map.owner(x) == Some(source)) {
                ranges.push((s, end));
            }
        }
        let Ok(slots) = SlotRanges::new(ranges) else {
            return Ok(());
        };
        let step = SystemStep::Record {
            slots,
            source,
            target,
            map_version: self.system.map_version(),
        };
        self.propose(Msg::System(step));
        Ok(())
    }

    fn request_abort(&mut self) -> Check {
        let active: Vec<MigrationId> = self.system.active().map(|r| r.migration.id).collect();
        if !active.is_empty() {
            let id = active[self.rng.below(active.len())];
            self.propose(Msg::System(SystemStep::Abort(id)));
        }
        Ok(())
    }

    /// A client follows redirects from the group the slot map names (or,
    /// now and then, from a random group, even with `ASKING`) and, if
    /// served, proposes there. The write is acknowledged when applied.
    fn route(&mut self, slot: u16, access: Access) -> Option<(GroupId, bool)> {
        let (mut g, mut asking) = if self.rng.one_in(10) {
            (GROUPS[self.rng.below(GROUPS.len())], self.rng.one_in(2))
        } else {
            (self.system.map().owner(slot).expect("slot"), false)
        };
        for _ in 0..5 {
            match self.decide(g, slot, access, asking) {
                Decision::Serve => return Some((g, asking)),
                Decision::TryAgain => {
                    self.stats.try_again += 1;
                    return None;
                }
                Decision::Ask(to) => {
                    self.stats.asks += 1;
                    (g, asking) = (to, true);
                }
                Decision::Moved(to) => {
                    self.stats.moved += 1;
                    (g, asking) = (to, false);
                }
            }
        }
        None
    }

    fn client_write(&mut self) -> Check {
        let key = self.keys[self.rng.below(self.keys.len())].clone();
        let value = if self.rng.one_in(5) {
            None
        } else {
            Some(self.fresh_value())
        };
        if let Some((group, asking)) = self.route(slot_of(&key), Access::Write) {
            self.pool.push(Msg::Write {
                group,
                key,
                value,
                asking,
            });
        }
        Ok(())
    }

    fn client_read(&mut self) -> Check {
        let key = self.keys[self.rng.below(self.keys.len())].clone();
        if let Some((g, _)) = self.route(slot_of(&key), Access::Read) {
            self.stats.reads_checked += 1;
            let got = self.group(g).data.get(&key);
            let want = self.acked.get(&key).and_then(Option::as_ref);
            if got != want {
                return Err(format!(
                    "read of {} at group {g} gave {:?}, last acknowledged {:?}",
                    String::from_utf8_lossy(&key),
                    got.map(|v| String::from_utf8_lossy(v).into_owned()),
                    want.map(|v| String::from_utf8_lossy(v).into_owned())
                ));
            }
        }
        Ok(())
    }

    // ---- invariants ---------------------------------------------------

    fn check(&mut self) -> Check {
        self.system.check()?;
        for g in GROUPS {
            self.group(g).table.check()?;
        }
        if self.system.active().nth(1).is_some() {
            self.stats.concurrent_events += 1;
        }
        self.check_slots()?;
        self.check_data()?;
        self.check_finished()
    }

    fn in_flight(&self, slot: u16) -> bool {
        self.system
            .active()
            .any(|r| r.migration.slots.contains(slot))
    }

    /// Invariants 1 and 2 on the slots the run touches.
    fn check_slots(&self) -> Check {
        for &slot in &self.relevant {
            self.check_slot(slot)?;
        }
        Ok(())
    }

    fn check_slot(&self, slot: u16) -> Check {
        let servers: Vec<GroupId> = GROUPS
            .into_iter()
            .filter(|&g| self.serves_anything(g, slot))
            .collect();
        if servers.len() > 1 {
            return Err(format!(
                "slot {slot} is served by groups {servers:?} at once"
            ));
        }
        if !self.in_flight(slot) {
            let owner = self.system.map().owner(slot).expect("slot");
            let writers: Vec<GroupId> = GROUPS
                .into_iter()
                .filter(|&g| self.serves(g, slot, Access::Write))
                .collect();
            if writers != [owner] {
                return Err(format!(
                    "slot {slot}: no migration moves it, the map says group {owner}, \
                     groups {writers:?} serve it"
                ));
            }
            for g in GROUPS {
                let owns = self.group(g).table.state(slot) == SlotState::Owned;
                if owns != (g == owner) {
                    return Err(format!(
                        "slot {slot}: group {g}'s table disagrees with the map (owner {owner})"
                    ));
                }
            }
        }
        Ok(())
    }

    /// Invariants 3 and 4.
    fn check_data(&self) -> Check {
        for (key, want) in &self.acked {
            let slot = slot_of(key);
            let Some(g) = GROUPS
                .into_iter()
                .find(|&g| self.serves(g, slot, Access::Read))
            else {
                continue;
            };
            let got = self.group(g).data.get(key);
            if got != want.as_ref() {
                return Err(format!(
                    "key {} at group {g} (serving slot {slot}) is {:?}, last acknowledged {:?}",
                    String::from_utf8_lossy(key),
                    got.map(|v| String::from_utf8_lossy(v).into_owned()),
                    want.as_ref()
                        .map(|v| String::from_utf8_lossy(v).into_owned())
                ));
            }
        }
        for g in GROUPS {
            let group = self.group(g);
            for key in group.data.keys() {
                let slot = slot_of(key);
                if let SlotState::NotOwned { .. } = group.table.state(slot) {
                    return Err(format!(
                        "group {g} holds {} in slot {slot}, which it does not serve",
                        String::from_utf8_lossy(key)
                    ));
                }
            }
        }
        Ok(())
    }

    /// Invariant 6: a migration the system group finished is finished
    /// the same way in both groups.
    fn check_finished(&mut self) -> Check {
        let finished: Vec<(MigrationId, Outcome, Migration)> = self
            .recorded
            .iter()
            .filter(|(id, _)| !self.checked_done.contains(id))
            .filter_map(|(id, m)| self.system.outcome(*id).map(|o| (*id, o, m.clone())))
            .collect();
        for (id, outcome, m) in finished {
            for g in [m.source, m.target] {
                let view = self.group(g).table.view(id);
                if view != GroupView::Finished(outcome) && view != GroupView::Superseded {
                    return Err(format!(
                        "system finished migration {id} as {outcome:?}, group {g} is at {view:?}"
                    ));
                }
            }
            match outcome {
                Outcome::Completed => self.stats.completed += 1,
                Outcome::Aborted => self.stats.aborted += 1,
            }
            self.checked_done.insert(id);
        }
        Ok(())
    }

    /// No more clients or requests: the coordinator and the network run
    /// until every migration has finished.
    fn drain(&mut self) -> Check {
        for _ in 0..DRAIN_ROUNDS {
            if self.system.active().next().is_none() && self.pool.is_empty() {
                break;
            }
            self.coordinate()?;
            while !self.pool.is_empty() {
                self.deliver()?;
                self.check()?;
            }
        }
        if let Some(r) = self.system.active().next() {
            return Err(format!(
                "migration {} did not finish: {:?}",
                r.migration.id, r.status
            ));
        }
        self.check()?;
        // Every slot, not only the ones the run touched.
        for slot in 0..16384u16 {
            let owner = self.system.map().owner(slot).expect("slot");
            for g in GROUPS {
                let serves = self.decide(g, slot, Access::Write, false) == Decision::Serve;
                if serves != (g == owner) {
                    return Err(format!(
                        "at the end, slot {slot}: group {g} disagrees with the map"
                    ));
                }
            }
        }
        Ok(())
    }
}

/// A step as the log stores it: encoded, then read back.
fn through_bytes<T, E>(
    step: &T,
    encode: fn(&T) -> Vec<u8>,
    decode: fn(&[u8]) -> Result<T, E>,
) -> Result<T, String>
where
    T: PartialEq + std::fmt::Debug,
    E: std::fmt::Display,
{
    let read = decode(&encode(step)).map_err(|e| format!("{step:?} does not decode: {e}"))?;
    if read != *step {
        return Err(format!("{step:?} decodes as {read:?}"));
    }
    Ok(read)
}

fn run(seed: u64, variant: Variant) -> Result<Stats, String> {
    let mut world = World::new(seed, variant);
    let fail = |event: u64, e: String| format!("seed {seed} ({variant:?}), event {event}: {e}");
    world.check().map_err(|e| fail(0, e))?;
    for _ in 0..EVENTS {
        world
            .step()
            .map_err(|e| fail(world.stats.events, e.clone()))?;
        world.check().map_err(|e| fail(world.stats.events, e))?;
    }
    world.drain().map_err(|e| fail(world.stats.events, e))?;
    Ok(world.stats)
}

fn seeds() -> u64 {
    std::env::var("MIGRATION_MODEL_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_SEEDS)
}

#[test]
fn migrations_survive_duplicated_reordered_and_stale_steps_and_crashes() {
    let started = Instant::now();
    let mut total = Stats::default();
    let n = seeds();
    for seed in 0..n {
        match run(seed, Variant::Correct) {
            Ok(stats) => total.add(&stats),
            Err(e) => panic!("{e}"),
        }
    }
    eprintln!("{n} seeds in {:?}: {total:?}", started.elapsed());
    // The runs must reach the interesting places, or they prove little.
    assert!(
        total.completed > n / 2,
        "too few completed migrations: {total:?}"
    );
    assert!(
        total.aborted > n / 10,
        "too few aborted migrations: {total:?}"
    );
    assert!(
        total.refused_at_apply > 0,
        "no write was refused at apply: {total:?}"
    );
    assert!(
        total.asks > 0 && total.try_again > 0 && total.moved > 0,
        "{total:?}"
    );
    assert!(
        total.ignored_steps > 0 && total.refused_steps > 0,
        "{total:?}"
    );
}

/// Runs seeds of a broken variant until one fails; the failure must be
/// one of those expected.
fn caught(variant: Variant, expected: &[&str]) {
    for seed in 0..seeds() {
        if let Err(e) = run(seed, variant) {
            assert!(
                expected.iter().any(|x| e.contains(x)),
                "{variant:?} caught, but not as expected: {e}"
            );
            eprintln!("{variant:?} caught: {e}");
            return;
        }
    }
    panic!("{variant:?} was never caught");
}

#[test]
fn a_source_taking_writes_while_frozen_is_caught() {
    // A write after the copy changes the source's manifest: the target's
    // commit check refuses the copy (the coordinator reports it stuck), or
    // the write is lost if it lands after the commit check was passed.
    caught(
        Variant::WritesWhileFrozen,
        &["last acknowledged", "copy differs"],
    );
}

#[test]
fn a_hand_off_before_the_copy_is_complete_is_caught() {
    caught(Variant::HandOffBeforeCopy, &["last acknowledged"]);
}

#[test]
fn a_drop_before_the_flip_is_caught() {
    caught(Variant::DropBeforeFlip, &["before the flip"]);
}

#[test]
fn a_target_serving_asking_before_its_commit_is_caught() {
    caught(Variant::TargetServesAsking, &["at once"]);
}

#[test]
fn an_abort_after_the_hand_off_is_caught() {
    caught(Variant::AbortAfterHandOff, &["stuck"]);
}
