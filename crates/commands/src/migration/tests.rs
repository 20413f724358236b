//! Migration steps through the real apply path: two data groups and the
//! system group in one store, every step an entry applied with
//! [`apply_group_batch`], chunks cut from the frozen source.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use seshat_common::crc16_slot;
use seshat_kv::keys::{self, SYSTEM_GROUP};
use seshat_kv::{Counts, Keyspace, MemKv, SystemWrite, Write, WriteBatch};
use seshat_migration::{
    next_step, GroupStep, GroupView, Manifest, MigrationId, Next, Observation, Outcome, SlotMap,
    SlotRanges, SlotTable, SystemStep, SystemTable,
};
use seshat_protocol_resp::Frame;

use super::*;
use crate::{apply_group_batch, resolve, run_read, GroupState};

const SOURCE: u32 = 1;
const TARGET: u32 = 2;

fn argv(words: &[&str]) -> Vec<Bytes> {
    words
        .iter()
        .map(|w| Bytes::copy_from_slice(w.as_bytes()))
        .collect()
}

fn cmd(words: &[&str]) -> Write {
    Write::Command(argv(words))
}

fn map() -> SlotMap {
    SlotMap::even(&[SOURCE, TARGET]).unwrap()
}

/// The system group and two data groups sharing one store, each with its
/// own replicated state.
struct World {
    kv: MemKv,
    states: BTreeMap<u32, GroupState>,
    index: u64,
}

impl World {
    fn new() -> Self {
        let mut w = Self {
            kv: MemKv::default(),
            states: BTreeMap::new(),
            index: 0,
        };
        let bootstrap = Write::System(SystemWrite::Bootstrap {
            cluster: Bytes::from_static(b"layout"),
            slots: Bytes::from(SystemTable::new(map()).encode()),
        });
        assert_eq!(
            w.apply(SYSTEM_GROUP, 0, vec![bootstrap]),
            [Frame::Integer(1)]
        );
        w
    }

    fn apply(&mut self, group: u32, now_ms: u64, writes: Vec<Write>) -> Vec<Frame> {
        self.index += 1;
        let batch = WriteBatch {
            now_ms,
            seed: self.index,
            writes,
        };
        let state = self.states.entry(group).or_default();
        apply_group_batch(group, &batch, self.index, &mut self.kv, state).unwrap()
    }

    fn run(&mut self, group: u32, now_ms: u64, words: &[&str]) -> Frame {
        self.apply(group, now_ms, vec![cmd(words)]).remove(0)
    }

    fn read(&mut self, group: u32, now_ms: u64, words: &[&str]) -> Frame {
        let args = argv(words);
        let decl = resolve(&args).unwrap();
        let counts = self.state(group).counts;
        run_read(decl, &args, group, &mut self.kv, now_ms, counts, 0).unwrap()
    }

    fn state(&mut self, group: u32) -> GroupState {
        self.states.entry(group).or_default().clone()
    }

    fn view(&mut self, group: u32, id: MigrationId) -> GroupView {
        self.state(group)
            .table
            .map_or(GroupView::NotStarted, |t| t.view(id))
    }

    fn system(&mut self) -> SystemTable {
        let mut db = Keyspace::new(&mut self.kv, SYSTEM_GROUP, 0, 0, Counts::default());
        load_system_table(&mut db).unwrap().unwrap()
    }

    fn stored_table(&mut self, group: u32) -> Option<SlotTable> {
        let mut db = Keyspace::new(&mut self.kv, group, 0, 0, Counts::default());
        load_table(&mut db).unwrap()
    }

    /// The counts as the records say: metadata and expiry entries.
    fn recount(&self, group: u32) -> Counts {
        let count = |pred: &dyn Fn(&[u8]) -> bool| self.kv.map.keys().filter(|k| pred(k)).count();
        Counts {
            keys: count(&|k| keys::parse_meta_key(group, k).is_some()) as u64,
            expiring: count(&|k| keys::parse_expiry_key(group, k).is_some()) as u64,
        }
    }

    /// Everything a client can read of `key` at `now_ms`.
    fn dump(&mut self, group: u32, now_ms: u64, key: &str) -> Vec<Frame> {
        let kind = self.read(group, now_ms, &["TYPE", key]);
        let value = match &kind {
            Frame::Simple(t) if &t[..] == b"string" => self.read(group, now_ms, &["GET", key]),
            Frame::Simple(t) if &t[..] == b"hash" => self.read(group, now_ms, &["HGETALL", key]),
            Frame::Simple(t) if &t[..] == b"set" => self.read(group, now_ms, &["SMEMBERS", key]),
            Frame::Simple(t) if &t[..] == b"list" => {
                self.read(group, now_ms, &["LRANGE", key, "0", "-1"])
            }
            Frame::Simple(t) if &t[..] == b"zset" => {
                self.read(group, now_ms, &["ZRANGE", key, "0", "-1", "WITHSCORES"])
            }
            other => panic!("{key}: unexpected type {other:?}"),
        };
        let ttl = self.read(group, now_ms, &["PTTL", key]);
        vec![kind, value, ttl]
    }
}

/// `count` hash tags whose slots are distinct and owned by the source.
fn tags(count: usize, skip: &BTreeSet<u16>) -> Vec<(String, u16)> {
    let mut seen = skip.clone();
    (0..)
        .map(|i| format!("t{i}"))
        .filter_map(|t| {
            let slot = crc16_slot(t.as_bytes());
            (map().owner(slot) == Some(SOURCE) && seen.insert(slot)).then_some((t, slot))
        })
        .take(count)
        .collect()
}

fn group_step(step: &GroupStep) -> Write {
    Write::Migration {
        step: Bytes::from(step.encode()),
        initial: Bytes::from(SlotTable::new(step.group(), map()).encode()),
    }
}

fn system_step(step: &SystemStep) -> Write {
    Write::System(SystemWrite::Step(Bytes::from(step.encode())))
}

fn changed() -> Frame {
    Frame::simple("CHANGED")
}

const NOW: u64 = 1_000;
/// When `{short}` expires: during the migration.
const SHORT_EXPIRY: u64 = 5_000;
/// A time at which every key written here is alive.
const ALIVE: u64 = 2_000;
const LATER: u64 = 10_000;

/// Fields of the large hash: more entries than one chunk holds.
const HASH_FIELDS: usize = 5_000;

/// Keys in the moving slots (by tag) and in a staying slot.
struct Data {
    moving: Vec<String>,
    moving_expiring: BTreeSet<String>,
    staying: Vec<String>,
    slots: SlotRanges,
    moving_tags: [String; 2],
    staying_slot_tag: String,
}

fn load(w: &mut World) -> Data {
    let picked = tags(3, &BTreeSet::new());
    let [(m1, s1), (m2, s2), (st, _)] = [picked[0].clone(), picked[1].clone(), picked[2].clone()];
    let k = |tag: &str, name: &str| format!("{{{tag}}}{name}");
    let fields: Vec<String> = (0..HASH_FIELDS)
        .flat_map(|i| [format!("f{i}"), format!("v{i}")])
        .collect();
    let mut hset = vec!["HSET".to_string(), k(&m1, "h")];
    hset.extend(fields);
    let hset: Vec<&str> = hset.iter().map(String::as_str).collect();
    let writes = vec![
        cmd(&["SET", &k(&m1, "s"), "hello"]),
        cmd(&["SET", &k(&m1, "sx"), "soon", "PXAT", "1000000"]),
        cmd(&hset),
        cmd(&["SADD", &k(&m2, "set"), "a", "b", "c"]),
        cmd(&["ZADD", &k(&m2, "z"), "1", "a", "2.5", "b", "-3", "c"]),
        cmd(&["RPUSH", &k(&m2, "l"), "x", "y", "z"]),
        cmd(&["HSET", &k(&m2, "hx"), "f", "v"]),
        cmd(&["PEXPIREAT", &k(&m2, "hx"), "2000000"]),
        cmd(&[
            "SET",
            &k(&m2, "short"),
            "v",
            "PXAT",
            &SHORT_EXPIRY.to_string(),
        ]),
        cmd(&["SET", &k(&st, "k"), "stay", "PXAT", "3000000"]),
        cmd(&["HSET", &k(&st, "h"), "f", "v"]),
    ];
    for reply in w.apply(SOURCE, NOW, writes) {
        assert!(!matches!(reply, Frame::Error(_)), "{reply:?}");
    }
    Data {
        moving: ["s", "sx", "h"]
            .iter()
            .map(|n| k(&m1, n))
            .chain(["set", "z", "l", "hx", "short"].iter().map(|n| k(&m2, n)))
            .collect(),
        moving_expiring: [k(&m1, "sx"), k(&m2, "hx"), k(&m2, "short")]
            .into_iter()
            .collect(),
        staying: vec![k(&st, "k"), k(&st, "h")],
        slots: SlotRanges::new([(s1, s1), (s2, s2)]).unwrap(),
        moving_tags: [m1, m2],
        staying_slot_tag: st,
    }
}

/// What a migration's run records for the checks.
#[derive(Default)]
struct Run {
    chunks: u64,
    cut: Manifest,
    source_manifest: Option<Manifest>,
    received: Option<Manifest>,
    frozen_checked: bool,
}

/// Drives migration `id` to its end with the coordinator, every step
/// applied as an entry; `frozen` runs once while the source is frozen
/// and the target importing.
fn drive(
    w: &mut World,
    id: MigrationId,
    slots: &SlotRanges,
    mut frozen: impl FnMut(&mut World),
) -> Run {
    let mut run = Run::default();
    let mut last_cut: Option<(u64, Vec<u8>)> = None;
    for _ in 0..64 {
        let Some(record) = w.system().migration(id).cloned() else {
            return run;
        };
        let (source, target) = (w.view(SOURCE, id), w.view(TARGET, id));
        if source == GroupView::Frozen && !run.frozen_checked {
            run.frozen_checked = true;
            frozen(w);
        }
        let obs = Observation {
            record: &record,
            source,
            target,
            manifest: run.source_manifest,
        };
        match next_step(&obs) {
            Next::System(step) => {
                let reply = w.apply(SYSTEM_GROUP, LATER, vec![system_step(&step)]);
                assert_eq!(reply, [changed()], "{step:?}");
            }
            Next::Group(step) => {
                if let (GroupStep::ImportCommit(..), GroupView::Importing(m)) = (&step, target) {
                    run.received = Some(m);
                }
                if let GroupStep::HandOff(_) = step {
                    // Past the last chunk: nothing, from the start or resumed.
                    assert_eq!(
                        cut_chunk(&mut w.kv, SOURCE, slots, run.chunks, None).unwrap(),
                        None
                    );
                    let resume = last_cut.as_ref().map(|(s, k)| (*s, k.as_slice()));
                    assert_eq!(
                        cut_chunk(&mut w.kv, SOURCE, slots, run.chunks, resume).unwrap(),
                        None
                    );
                }
                let reply = w.apply(step.group(), LATER, vec![group_step(&step)]);
                assert_eq!(reply, [changed()], "{}", step.name());
            }
            Next::SendChunk { seq } => {
                let (chunk, last) = cut_chunk(&mut w.kv, SOURCE, slots, seq, None)
                    .unwrap()
                    .unwrap();
                let resume = last_cut.as_ref().map(|(s, k)| (*s, k.as_slice()));
                let resumed = cut_chunk(&mut w.kv, SOURCE, slots, seq, resume)
                    .unwrap()
                    .unwrap();
                assert_eq!((&chunk, &last), (&resumed.0, &resumed.1), "chunk {seq}");
                assert_eq!(chunk.seq, seq);
                assert_eq!(
                    last,
                    [
                        &SOURCE.to_be_bytes()[..],
                        &chunk.entries.last().unwrap().key
                    ]
                    .concat()
                );
                run.chunks += 1;
                run.cut.add(&chunk);
                last_cut = Some((seq, last));
                let m = record.migration.clone();
                let reply = w.apply(
                    TARGET,
                    LATER,
                    vec![group_step(&GroupStep::ImportChunk(m, chunk))],
                );
                assert_eq!(reply, [changed()], "chunk {seq}");
            }
            Next::NeedManifest => {
                run.source_manifest = Some(manifest(&mut w.kv, SOURCE, slots).unwrap());
            }
            Next::Stuck(why) => panic!("stuck: {why}"),
        }
    }
    panic!("migration {id} did not finish");
}

fn record(w: &mut World, slots: &SlotRanges) -> MigrationId {
    let step = SystemStep::Record {
        slots: slots.clone(),
        source: SOURCE,
        target: TARGET,
        map_version: w.system().map_version(),
    };
    match &w.apply(SYSTEM_GROUP, NOW, vec![system_step(&step)])[..] {
        [Frame::Integer(id)] => u64::try_from(*id).unwrap(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_migration_moves_values_ttls_and_counts_and_drops_the_source() {
    let mut w = World::new();
    let data = load(&mut w);
    let before: Vec<Vec<Frame>> = data
        .moving
        .iter()
        .map(|k| w.dump(SOURCE, ALIVE, k))
        .collect();
    let staying_before: Vec<Vec<Frame>> = data
        .staying
        .iter()
        .map(|k| w.dump(SOURCE, ALIVE, k))
        .collect();
    let id = record(&mut w, &data.slots);
    let [m1, _] = data.moving_tags.clone();
    let frozen_key = format!("{{{m1}}}s");
    let frozen_slot = crc16_slot(frozen_key.as_bytes());
    let staying_key = format!("{{{}}}k", data.staying_slot_tag);
    let new_key = format!("{{{}}}new", data.staying_slot_tag);
    let short_key = data
        .moving_expiring
        .iter()
        .find(|k| k.ends_with("short"))
        .unwrap()
        .clone();
    let run = drive(&mut w, id, &data.slots, |w| {
        // A write to a frozen slot: refused at apply, nothing changes.
        let kv = w.kv.clone();
        let tryagain_frozen = tryagain(Some(frozen_slot));
        assert_eq!(
            w.run(SOURCE, LATER, &["SET", &frozen_key, "new"]),
            tryagain_frozen
        );
        assert_eq!(w.run(SOURCE, LATER, &["DEL", &frozen_key]), tryagain_frozen);
        // A transaction touching it is refused whole.
        let tx = Write::Transaction {
            watches: vec![],
            commands: vec![
                argv(&["SET", &staying_key, "changed"]),
                argv(&["SET", &frozen_key, "x"]),
            ],
        };
        assert_eq!(
            w.apply(SOURCE, LATER, vec![tx]),
            vec![tryagain_frozen.clone()]
        );
        // FLUSHALL during a migration, on either side.
        assert_eq!(w.run(SOURCE, LATER, &["FLUSHALL"]), tryagain(None));
        assert_eq!(w.run(TARGET, LATER, &["FLUSHDB"]), tryagain(None));
        // The target serves nothing of the slots before its commit.
        assert_eq!(
            w.run(TARGET, LATER, &["SET", &frozen_key, "x"]),
            tryagain_frozen
        );
        // An expiry deletion in a frozen slot waits: the key stays.
        let expire = Write::ExpireKeys(vec![Bytes::from(short_key.clone())]);
        assert_eq!(w.apply(SOURCE, LATER, vec![expire]), [Frame::Integer(0)]);
        assert_eq!(w.kv, kv, "refused writes changed the store");
        // Reads of a frozen slot are served; writes elsewhere too.
        assert_eq!(
            w.read(SOURCE, ALIVE, &["GET", &frozen_key]),
            Frame::Bulk(Bytes::from("hello"))
        );
        assert_eq!(w.run(SOURCE, LATER, &["SET", &new_key, "1"]), Frame::ok());
    });
    assert!(run.frozen_checked);
    assert!(
        run.chunks >= 2,
        "the copy must span chunks to test resuming: {}",
        run.chunks
    );
    assert_eq!(run.source_manifest, Some(run.cut));
    assert_eq!(run.received, Some(run.cut));
    // Eight metadata records; the hashes' fields, the set's members, the
    // sorted set's members and scores, the list's elements.
    assert_eq!(
        run.cut.entries as usize,
        8 + HASH_FIELDS + 1 + 3 + 3 * 2 + 3
    );

    // The target holds every moved key as the source had it.
    let after: Vec<Vec<Frame>> = data
        .moving
        .iter()
        .map(|k| w.dump(TARGET, ALIVE, k))
        .collect();
    assert_eq!(after, before);
    let staying_after: Vec<Vec<Frame>> = data
        .staying
        .iter()
        .map(|k| w.dump(SOURCE, ALIVE, k))
        .collect();
    assert_eq!(staying_after, staying_before);

    // Counts on both sides match the records and what moved.
    let (source, target) = (w.state(SOURCE), w.state(TARGET));
    assert_eq!(source.counts, w.recount(SOURCE));
    assert_eq!(target.counts, w.recount(TARGET));
    let moved = Counts {
        keys: data.moving.len() as u64,
        expiring: data.moving_expiring.len() as u64,
    };
    assert_eq!(target.counts, moved);
    // The two staying keys, and the one written during the freeze.
    assert_eq!(
        source.counts,
        Counts {
            keys: 3,
            expiring: 1
        }
    );

    // The target's expiry sweep finds the moved expiring keys.
    let mut db = Keyspace::new(&mut w.kv, TARGET, u64::MAX - 1, 0, target.counts);
    let due: BTreeSet<String> = db
        .due_keys(100)
        .unwrap()
        .into_iter()
        .map(|k| String::from_utf8(k.to_vec()).unwrap())
        .collect();
    assert_eq!(due, data.moving_expiring);

    // The source keeps nothing of the moved slots.
    let leftovers: Vec<&Vec<u8>> =
        w.kv.map
            .keys()
            .filter(|k| {
                let slot_of = |raw: &[u8]| u16::from_be_bytes([raw[4], raw[5]]);
                let in_group = k.starts_with(&SOURCE.to_be_bytes());
                let data_record = in_group && slot_of(k) < seshat_common::CLUSTER_SLOTS;
                let moved_record = data_record && data.slots.contains(slot_of(k));
                let moved_expiry = keys::parse_expiry_key(SOURCE, k)
                    .is_some_and(|(_, key)| data.slots.contains(crc16_slot(key)));
                moved_record || moved_expiry
            })
            .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // Both tables and the slot map agree the slots moved.
    for group in [SOURCE, TARGET] {
        let table = w.state(group).table.unwrap();
        assert_eq!(table.last_finished(), Some((id, Outcome::Completed)));
        assert_eq!(Some(&*table), w.stored_table(group).as_ref());
        assert_eq!(table.owners().owner(frozen_slot), Some(TARGET));
    }
    assert_eq!(w.system().map().owner(frozen_slot), Some(TARGET));
    assert_eq!(w.system().outcome(id), Some(Outcome::Completed));

    // Afterwards: the target takes writes, the source sends them on.
    assert_eq!(
        w.run(TARGET, LATER, &["SET", &frozen_key, "new"]),
        Frame::ok()
    );
    assert_eq!(
        w.run(SOURCE, LATER, &["SET", &frozen_key, "x"]),
        tryagain(Some(frozen_slot))
    );
    // With no migration in progress FLUSHALL runs, and spares the table.
    assert_eq!(w.run(SOURCE, LATER, &["FLUSHALL"]), Frame::ok());
    assert_eq!(w.state(SOURCE).counts, Counts::default());
    assert!(w.stored_table(SOURCE).is_some());
}

#[test]
fn a_group_without_a_table_applies_everything_as_before() {
    let mut w = World::new();
    let slot = crc16_slot(b"k");
    // Keys of any slot, FLUSHALL and expiry deletions all run.
    assert_eq!(
        w.run(TARGET, NOW, &["SET", "k", "v", "PXAT", "1500"]),
        Frame::ok()
    );
    assert_eq!(w.run(TARGET, NOW, &["SET", "j", "v"]), Frame::ok());
    let expire = Write::ExpireKeys(vec![Bytes::from_static(b"k")]);
    assert_eq!(w.apply(TARGET, ALIVE, vec![expire]), [Frame::Integer(1)]);
    assert_eq!(w.run(TARGET, ALIVE, &["FLUSHALL"]), Frame::ok());
    assert_eq!(w.state(TARGET).table, None);
    assert_eq!(w.stored_table(TARGET), None);

    // A step that is not this group's, or does not decode, or comes out
    // of order, changes nothing and creates no table.
    let m = seshat_migration::Migration {
        id: 1,
        slots: SlotRanges::single(slot).unwrap(),
        source: SOURCE,
        target: TARGET,
    };
    let kv = w.kv.clone();
    let wrong_group = w.apply(
        SOURCE,
        ALIVE,
        vec![group_step(&GroupStep::ImportStart(m.clone()))],
    );
    assert!(
        matches!(&wrong_group[0], Frame::Error(e) if e.starts_with(b"ERR migration step refused: step for group 2")),
        "{wrong_group:?}"
    );
    let garbage = Write::Migration {
        step: Bytes::from_static(b"\x01garbage"),
        initial: Bytes::new(),
    };
    let unreadable = w.apply(TARGET, ALIVE, vec![garbage]);
    assert!(
        matches!(&unreadable[0], Frame::Error(e) if e.starts_with(b"ERR unreadable migration step: ")),
        "{unreadable:?}"
    );
    let early = w.apply(
        TARGET,
        ALIVE,
        vec![group_step(&GroupStep::ImportCommit(
            m.clone(),
            Manifest::default(),
        ))],
    );
    assert!(
        matches!(&early[0], Frame::Error(e) if e.starts_with(b"ERR migration step refused: ")),
        "{early:?}"
    );
    let wrong_initial = Write::Migration {
        step: Bytes::from(GroupStep::ImportStart(m.clone()).encode()),
        initial: Bytes::from(SlotTable::new(SOURCE, map()).encode()),
    };
    let refused = w.apply(TARGET, ALIVE, vec![wrong_initial]);
    assert!(
        matches!(&refused[0], Frame::Error(e) if e.starts_with(b"ERR migration step refused: initial table of group 1")),
        "{refused:?}"
    );
    assert_eq!(w.kv, kv);
    assert_eq!(w.state(TARGET).table, None);
    assert_eq!(w.state(SOURCE).table, None);

    // A repeated step is ignored.
    let start = group_step(&GroupStep::ImportStart(m));
    assert_eq!(w.apply(TARGET, ALIVE, vec![start.clone()]), [changed()]);
    assert_eq!(
        w.apply(TARGET, ALIVE, vec![start]),
        [Frame::simple("IGNORED")]
    );
}

#[test]
fn a_chunk_with_a_bad_entry_is_refused_whole() {
    let mut w = World::new();
    let slot = crc16_slot(b"k");
    let m = seshat_migration::Migration {
        id: 1,
        slots: SlotRanges::single(slot).unwrap(),
        source: SOURCE,
        target: TARGET,
    };
    assert_eq!(
        w.apply(
            TARGET,
            NOW,
            vec![group_step(&GroupStep::ImportStart(m.clone()))]
        ),
        [changed()]
    );
    let good = seshat_migration::ChunkEntry {
        slot,
        key: keys::meta_key(0, b"k")[4..].to_vec(),
        value: seshat_kv::Record::string(Bytes::from_static(b"v")).encode(),
    };
    let other_slot = seshat_migration::ChunkEntry {
        slot,
        key: keys::meta_key(0, b"j")[4..].to_vec(),
        ..good.clone()
    };
    let bad_record = seshat_migration::ChunkEntry {
        value: b"\xffnot a record".to_vec(),
        ..good.clone()
    };
    let kv = w.kv.clone();
    let table = w.state(TARGET).table;
    for bad in [other_slot, bad_record] {
        let chunk = seshat_migration::Chunk {
            seq: 0,
            entries: vec![good.clone(), bad],
        };
        let reply = w.apply(
            TARGET,
            NOW,
            vec![group_step(&GroupStep::ImportChunk(m.clone(), chunk))],
        );
        assert!(
            matches!(&reply[0], Frame::Error(e) if e.starts_with(b"ERR unreadable migration step: chunk 0 entry 1")),
            "{reply:?}"
        );
    }
    assert_eq!(w.kv, kv);
    assert_eq!(w.state(TARGET).table, table);
    let chunk = seshat_migration::Chunk {
        seq: 0,
        entries: vec![good],
    };
    assert_eq!(
        w.apply(
            TARGET,
            NOW,
            vec![group_step(&GroupStep::ImportChunk(m, chunk))]
        ),
        [changed()]
    );
    assert_eq!(
        w.state(TARGET).counts,
        Counts {
            keys: 1,
            expiring: 0
        }
    );
}

#[test]
fn system_steps_record_flip_and_finish_a_migration() {
    let mut w = World::new();
    let slots = SlotRanges::new([(0, 9)]).unwrap();
    let id = record(&mut w, &slots);
    assert_eq!(id, 1);
    let busy = SystemStep::Record {
        slots: SlotRanges::new([(10, 19)]).unwrap(),
        source: SOURCE,
        target: TARGET,
        map_version: 1,
    };
    let reply = w.apply(SYSTEM_GROUP, NOW, vec![system_step(&busy)]);
    assert!(
        matches!(&reply[0], Frame::Error(e) if e.starts_with(b"ERR system step refused: ")),
        "{reply:?}"
    );
    let early = w.apply(
        SYSTEM_GROUP,
        NOW,
        vec![system_step(&SystemStep::Done(id, Outcome::Completed))],
    );
    assert!(
        matches!(&early[0], Frame::Error(e) if e.starts_with(b"ERR system step refused: ")),
        "{early:?}"
    );
    assert_eq!(w.system().active().count(), 1);
    assert_eq!(
        w.apply(SYSTEM_GROUP, NOW, vec![system_step(&SystemStep::Flip(id))]),
        [changed()]
    );
    assert_eq!(
        w.apply(SYSTEM_GROUP, NOW, vec![system_step(&SystemStep::Flip(id))]),
        [Frame::simple("IGNORED")]
    );
    assert_eq!(w.system().map().owner(5), Some(TARGET));
    assert_eq!(w.system().map_version(), 2);
    assert_eq!(
        w.apply(
            SYSTEM_GROUP,
            NOW,
            vec![system_step(&SystemStep::Done(id, Outcome::Completed))]
        ),
        [changed()]
    );
    assert_eq!(w.system().outcome(id), Some(Outcome::Completed));
    assert_eq!(w.system().active().count(), 0);

    // Unreadable steps, steps on a data group, and steps before the
    // bootstrap change nothing.
    let garbage = Write::System(SystemWrite::Step(Bytes::from_static(b"\x01\x02")));
    let reply = w.apply(SYSTEM_GROUP, NOW, vec![garbage]);
    assert!(
        matches!(&reply[0], Frame::Error(e) if e.starts_with(b"ERR unreadable system step: ")),
        "{reply:?}"
    );
    let on_data = w.apply(SOURCE, NOW, vec![system_step(&SystemStep::Flip(id))]);
    assert!(matches!(&on_data[0], Frame::Error(_)), "{on_data:?}");
    let mut fresh = World {
        kv: MemKv::default(),
        states: BTreeMap::new(),
        index: 0,
    };
    let reply = fresh.apply(SYSTEM_GROUP, NOW, vec![system_step(&SystemStep::Flip(id))]);
    assert!(
        matches!(&reply[0], Frame::Error(e) if e.starts_with(b"ERR system step refused: ")),
        "{reply:?}"
    );
    assert!(fresh.kv.map.is_empty());
}

#[test]
fn an_empty_copy_has_the_manifest_of_no_entries() {
    let mut kv = MemKv::default();
    let slots = SlotRanges::new([(0, 100), (200, 300)]).unwrap();
    let empty = copy::manifest([], ChunkLimits::max()).unwrap();
    assert_eq!(manifest(&mut kv, SOURCE, &slots).unwrap(), empty);
    assert_eq!(cut_chunk(&mut kv, SOURCE, &slots, 0, None).unwrap(), None);
}

#[test]
fn the_copy_is_every_record_of_the_slots_in_storage_order() {
    // Records of other groups, other slots and the expiry index around
    // the copied slots are left out; a resumed cut is the same chunk.
    let mut w = World::new();
    let picked = tags(4, &BTreeSet::new());
    for (tag, _) in &picked {
        for i in 0..300 {
            let key = format!("{{{tag}}}{i}");
            assert_eq!(
                w.run(SOURCE, NOW, &["SET", &key, "v", "PXAT", "9000"]),
                Frame::ok()
            );
            assert_eq!(w.run(TARGET, NOW, &["SADD", &key, "m"]), Frame::Integer(1));
        }
    }
    let slots = SlotRanges::new([(picked[0].1, picked[0].1), (picked[2].1, picked[2].1)]).unwrap();
    let expected: Vec<seshat_migration::ChunkEntry> = w
        .kv
        .map
        .iter()
        .filter(|(k, _)| {
            k.starts_with(&SOURCE.to_be_bytes()) && slots.contains(u16::from_be_bytes([k[4], k[5]]))
        })
        .map(|(k, v)| seshat_migration::ChunkEntry {
            slot: u16::from_be_bytes([k[4], k[5]]),
            key: k[4..].to_vec(),
            value: v.to_vec(),
        })
        .collect();
    assert_eq!(expected.len(), 600);
    let limits = ChunkLimits::max();
    let all: Vec<_> = copy::chunks(expected.clone(), limits)
        .map(Result::unwrap)
        .collect();
    let (chunk, last) = cut_chunk(&mut w.kv, SOURCE, &slots, 0, None)
        .unwrap()
        .unwrap();
    assert_eq!(vec![chunk], all);
    // A resume key that is not for the previous chunk is ignored.
    let (again, _) = cut_chunk(&mut w.kv, SOURCE, &slots, 0, Some((5, &last)))
        .unwrap()
        .unwrap();
    assert_eq!(vec![again], all);
    assert_eq!(
        cut_chunk(&mut w.kv, SOURCE, &slots, 1, Some((0, &last))).unwrap(),
        None
    );
    assert_eq!(
        manifest(&mut w.kv, SOURCE, &slots).unwrap(),
        copy::manifest(expected, limits).unwrap()
    );
}

proptest::proptest! {
    /// Whatever bytes an entry carries as a step and an initial table,
    /// apply replies with an error (or ignores it) and changes nothing.
    #[test]
    fn arbitrary_steps_change_nothing(
        step in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
        initial in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
        system in proptest::prelude::any::<bool>(),
    ) {
        let mut w = World::new();
        let kv = w.kv.clone();
        let write = if system {
            Write::System(SystemWrite::Step(Bytes::from(step)))
        } else {
            Write::Migration { step: Bytes::from(step), initial: Bytes::from(initial) }
        };
        let group = if system { SYSTEM_GROUP } else { SOURCE };
        let reply = w.apply(group, NOW, vec![write]);
        proptest::prop_assert!(matches!(&reply[..], [Frame::Error(_)]), "{:?}", reply);
        proptest::prop_assert_eq!(&w.kv, &kv);
        proptest::prop_assert_eq!(w.state(group).table, None);
    }
}
