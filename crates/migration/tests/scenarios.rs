//! Scripted scenarios: the races the protocol is built around, step by
//! step, with the real tables and coordinator.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use std::collections::BTreeMap;

use seshat_common::crc16_slot;
use seshat_migration::{
    copy, next_step, Access, Applied, ChunkEntry, ChunkLimits, Decision, Effect, GroupStep,
    GroupView, Migration, Next, Observation, Outcome, Refusal, SlotMap, SlotRanges, SlotTable,
    SystemApplied, SystemStep, SystemTable,
};

/// A system group and groups 1 (source) and 2 (target), with data.
struct Cluster {
    system: SystemTable,
    a: SlotTable,
    b: SlotTable,
    a_data: BTreeMap<Vec<u8>, Vec<u8>>,
    b_data: BTreeMap<Vec<u8>, Vec<u8>>,
    limits: ChunkLimits,
}

const KEY: &[u8] = b"{x}key";

impl Cluster {
    /// Migration 1 of `KEY`'s slot from group 1 to group 2, recorded; the
    /// source holds `KEY` = "old".
    fn new() -> (Self, Migration) {
        let slot = crc16_slot(KEY);
        let mut owners = SlotMap::even(&[1, 2]).unwrap();
        if owners.owner(slot) != Some(1) {
            // Keep the scenario's direction whatever the slot.
            owners = SlotMap::even(&[2, 1]).unwrap();
        }
        let mut system = SystemTable::new(owners.clone());
        let record = SystemStep::Record {
            slots: SlotRanges::single(slot).unwrap(),
            source: 1,
            target: 2,
            map_version: 1,
        };
        assert_eq!(system.apply(&record), Ok(SystemApplied::Recorded(1)));
        let m = system.migration(1).unwrap().migration.clone();
        let mut a_data = BTreeMap::new();
        a_data.insert(KEY.to_vec(), b"old".to_vec());
        let cluster = Cluster {
            system,
            a: SlotTable::new(1, owners.clone()),
            b: SlotTable::new(2, owners),
            a_data,
            b_data: BTreeMap::new(),
            limits: ChunkLimits::new(1, 100).unwrap(),
        };
        (cluster, m)
    }

    fn entries(&self, m: &Migration) -> Vec<ChunkEntry> {
        self.a_data
            .iter()
            .filter(|(k, _)| m.slots.contains(crc16_slot(k)))
            .map(|(k, v)| ChunkEntry {
                slot: crc16_slot(k),
                key: k.clone(),
                value: v.clone(),
            })
            .collect()
    }

    /// What the coordinator would propose now.
    fn next(&self, id: u64) -> Next {
        let record = self.system.migration(id).expect("in progress");
        let manifest = matches!(self.a.view(id), GroupView::Frozen | GroupView::HandedOff)
            .then(|| copy::manifest(self.entries(&record.migration), self.limits).unwrap());
        next_step(&Observation {
            record,
            source: self.a.view(id),
            target: self.b.view(id),
            manifest,
        })
    }

    /// Applies a group step and its effect on the data.
    fn apply(&mut self, step: &GroupStep) -> Result<Applied, Refusal> {
        let (table, data) = if step.group() == 1 {
            (&mut self.a, &mut self.a_data)
        } else {
            (&mut self.b, &mut self.b_data)
        };
        let applied = table.apply(step)?;
        match (&applied, step) {
            (Applied::Changed(Effect::WriteChunk), GroupStep::ImportChunk(_, chunk)) => {
                for e in &chunk.entries {
                    data.insert(e.key.clone(), e.value.clone());
                }
            }
            (Applied::Changed(Effect::DeleteSlots(slots)), _) => {
                data.retain(|k, _| !slots.contains(crc16_slot(k)));
            }
            _ => {}
        }
        Ok(applied)
    }

    /// Follows the coordinator until it proposes something other than a
    /// group step or a chunk, and returns that.
    fn run(&mut self, id: u64) -> Next {
        loop {
            match self.next(id) {
                Next::Group(step) => {
                    self.apply(&step).unwrap();
                }
                Next::SendChunk { seq } => {
                    let m = self.system.migration(id).unwrap().migration.clone();
                    let chunk = copy::chunk_at(self.entries(&m), self.limits, seq)
                        .unwrap()
                        .unwrap();
                    self.apply(&GroupStep::ImportChunk(m, chunk)).unwrap();
                }
                other => return other,
            }
        }
    }
}

#[test]
fn abort_and_hand_off_race_and_the_source_decides() {
    for abort_first in [true, false] {
        let (mut c, m) = Cluster::new();
        // Copy until the coordinator proposes the hand-off...
        let hand_off = loop {
            match c.next(1) {
                Next::Group(GroupStep::HandOff(m)) => break GroupStep::HandOff(m),
                Next::Group(step) => {
                    c.apply(&step).unwrap();
                }
                Next::SendChunk { seq } => {
                    let chunk = copy::chunk_at(c.entries(&m), c.limits, seq)
                        .unwrap()
                        .unwrap();
                    c.apply(&GroupStep::ImportChunk(m.clone(), chunk)).unwrap();
                }
                other => panic!("unexpected {other:?}"),
            }
        };
        // ...while an operator aborts, and the coordinator (restarted)
        // proposes the source's abort.
        c.system.apply(&SystemStep::Abort(1)).unwrap();
        let abort = match c.next(1) {
            Next::Group(step @ GroupStep::Abort(_)) => step,
            other => panic!("expected the source's abort, got {other:?}"),
        };
        // Both reach the source's log; the first wins.
        let (first, second) = if abort_first {
            (&abort, &hand_off)
        } else {
            (&hand_off, &abort)
        };
        c.apply(first).unwrap();
        let lost = c.apply(second);
        if abort_first {
            assert_eq!(lost, Ok(Applied::Ignored), "a hand-off after the abort");
        } else {
            assert_eq!(
                lost,
                Err(Refusal::HandedOff(1)),
                "an abort after the hand-off"
            );
        }
        // The coordinator follows the source to the end.
        let Next::System(done) = c.run(1) else {
            panic!("expected a system step")
        };
        let outcome = if abort_first {
            assert_eq!(done, SystemStep::Done(1, Outcome::Aborted));
            Outcome::Aborted
        } else {
            // After the hand-off only forward: commit, flip, drop, done.
            assert_eq!(done, SystemStep::Flip(1));
            c.system.apply(&done).unwrap();
            let Next::System(done) = c.run(1) else {
                panic!("expected Done")
            };
            assert_eq!(done, SystemStep::Done(1, Outcome::Completed));
            Outcome::Completed
        };
        c.system.apply(&SystemStep::Done(1, outcome)).unwrap();
        assert_eq!(c.system.outcome(1), Some(outcome));
        let slot = crc16_slot(KEY);
        let (serving, data) = match outcome {
            Outcome::Aborted => (&c.a, &c.a_data),
            Outcome::Completed => (&c.b, &c.b_data),
        };
        assert_eq!(serving.decide(slot, Access::Write, false), Decision::Serve);
        assert_eq!(data.get(KEY).map(Vec::as_slice), Some(&b"old"[..]));
        assert!(
            c.a_data.len() + c.b_data.len() == 1,
            "the other group kept nothing"
        );
    }
}

#[test]
fn a_write_proposed_before_the_freeze_and_applied_after_it_is_refused() {
    let (mut c, m) = Cluster::new();
    let slot = crc16_slot(KEY);
    // Served when proposed...
    assert_eq!(c.a.decide(slot, Access::Write, false), Decision::Serve);
    c.apply(&GroupStep::ImportStart(m.clone())).unwrap();
    c.apply(&GroupStep::Freeze(m)).unwrap();
    // ...refused at apply, identically on every replica.
    assert_eq!(c.a.decide(slot, Access::Write, false), Decision::TryAgain);
    assert_eq!(c.a.decide(slot, Access::Read, false), Decision::Serve);
}

#[test]
fn a_late_chunk_after_the_commit_does_not_bring_back_a_deleted_key() {
    let (mut c, m) = Cluster::new();
    let slot = crc16_slot(KEY);
    c.apply(&GroupStep::ImportStart(m.clone())).unwrap();
    c.apply(&GroupStep::Freeze(m.clone())).unwrap();
    let chunk = copy::chunk_at(c.entries(&m), c.limits, 0).unwrap().unwrap();
    let late = GroupStep::ImportChunk(m.clone(), chunk);
    c.apply(&late).unwrap();
    assert_eq!(c.run(1), Next::System(SystemStep::Flip(1)));
    // The target serves the slot; a client deletes the key there.
    assert_eq!(c.b.decide(slot, Access::Write, false), Decision::Serve);
    c.b_data.remove(KEY);
    // The copy's first chunk arrives again, late.
    assert_eq!(c.apply(&late), Ok(Applied::Ignored));
    assert_eq!(c.b_data.get(KEY), None);
}
