//! A data group's slot table: which slots it serves and where it stands
//! in a migration, changed only by [`GroupStep`]s applied from its own
//! log, and consulted for every command at serve time and at apply.

use seshat_common::CLUSTER_SLOTS;

use crate::codec::{DecodeError, Reader, Writer};
use crate::slots::{SlotMap, SlotRanges};
use crate::step::{
    outcome_tag, read_manifest, read_migration, write_manifest, write_migration, Chunk, GroupStep,
    Manifest, Migration, Outcome,
};
use crate::{GroupId, MigrationId, MAX_CHUNK_BYTES, MAX_CHUNK_ENTRIES};

/// Whether a command reads or writes (its declaration says which).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Reads only.
    Read,
    /// Writes (expiry deletions included).
    Write,
}

/// What a group does with a command on a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Run it.
    Serve,
    /// `-TRYAGAIN`: the slot is between owners for a moment (definite).
    TryAgain,
    /// `-ASK <slot> <leader of group>`: the slot has been handed to the
    /// group; send `ASKING` and the command there.
    Ask(GroupId),
    /// `-MOVED <slot> <leader of group>`: the slot is not served here;
    /// the group is where this group last knew it to be (the router
    /// prefers the system group's slot map when it is newer).
    Moved(GroupId),
}

/// The state of one slot in one group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotState {
    /// Served here.
    Owned,
    /// Not served here; `owner` is where this group last knew it to be.
    NotOwned {
        /// The owner this group knows of.
        owner: GroupId,
    },
    /// Source, frozen by migration `migration`: reads served, writes get
    /// `TRYAGAIN`.
    Frozen {
        /// The migration.
        migration: MigrationId,
    },
    /// Source, handed off by migration `migration` to `target`: every
    /// command gets `ASK target`. The data stays until `Drop`.
    HandedOff {
        /// The migration.
        migration: MigrationId,
        /// The group it was handed to.
        target: GroupId,
    },
    /// Target of migration `migration`, copy not committed: hidden.
    /// Without `ASKING` a command gets `MOVED source`; with it,
    /// `TRYAGAIN` (the source has handed off, or is about to, and the
    /// commit is the next step).
    Importing {
        /// The migration.
        migration: MigrationId,
        /// The group the slot comes from.
        source: GroupId,
    },
}

/// Where a group stands in one migration, as the coordinator sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupView {
    /// The group has applied no step of it.
    NotStarted,
    /// Source, frozen.
    Frozen,
    /// Source, handed off (the point of no return).
    HandedOff,
    /// Target, importing; what it has received so far.
    Importing(Manifest),
    /// The group has finished it: source dropped or target committed
    /// (`Completed`), or either abandoned it (`Aborted`).
    Finished(Outcome),
    /// The group has since started a later migration; this one is long
    /// finished (the system group only starts the next migration of a
    /// group after both groups finished the previous one).
    Superseded,
}

/// What the caller must do in the same apply batch as a step that
/// changed the table (the table and the data change atomically).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Nothing beyond storing the table.
    None,
    /// Write the chunk's entries (an `ImportChunk` applied).
    WriteChunk,
    /// Delete every entry in these slots (`Drop` at the source; at the
    /// target, `ImportAbort` and — against leftovers — `ImportStart`).
    DeleteSlots(SlotRanges),
}

/// The result of applying a step that was not refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// The step changed the table; perform the effect.
    Changed(Effect),
    /// The step was already applied, or belongs to a migration this
    /// group has finished: nothing changes (duplicates and stale steps).
    Ignored,
}

/// Why a step was refused. Nothing changes; every replica refuses it
/// alike. The coordinator recomputes its next step from what it observes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The step belongs in another group's log.
    #[error("step for group {expected} applied in group {group}")]
    WrongGroup {
        /// The group that should apply it.
        expected: GroupId,
        /// This group.
        group: GroupId,
    },
    /// Another migration is in progress in this group.
    #[error("migration {current} is in progress in this group")]
    Busy {
        /// The migration in progress.
        current: MigrationId,
    },
    /// The step's description of the migration differs from the one
    /// this group applied first.
    #[error("migration {0} was started with other slots or groups")]
    Mismatch(MigrationId),
    /// Freeze of a slot this group does not serve.
    #[error("slot {0} is not served by the source")]
    NotOwned(u16),
    /// ImportStart of a slot this group already serves.
    #[error("slot {0} is already served by the target")]
    AlreadyOwned(u16),
    /// A step that needs an earlier one first (hand-off before freeze,
    /// drop before hand-off, a chunk before the import started).
    #[error("{step} is out of order: {phase}")]
    OutOfOrder {
        /// The step.
        step: &'static str,
        /// Where the group stands.
        phase: &'static str,
    },
    /// Abort after the hand-off: the migration can only go forward.
    #[error("migration {0} was handed off; it can no longer be aborted")]
    HandedOff(MigrationId),
    /// ImportAbort after the commit.
    #[error("migration {0} was committed; it can no longer be aborted")]
    Committed(MigrationId),
    /// A chunk after a gap; the chunks in between come first.
    #[error("chunk {got} arrived before chunk {expected}")]
    ChunkGap {
        /// The next chunk the target takes.
        expected: u64,
        /// The chunk received.
        got: u64,
    },
    /// A chunk with an entry outside the migrating slots.
    #[error("chunk entry in slot {0}, which is not migrating")]
    ChunkSlot(u16),
    /// A chunk over [`MAX_CHUNK_ENTRIES`] or [`MAX_CHUNK_BYTES`].
    #[error("chunk of {entries} entries / {bytes} bytes exceeds the limits")]
    ChunkTooLarge {
        /// Entries.
        entries: usize,
        /// Bytes.
        bytes: usize,
    },
    /// ImportCommit whose manifest is not what was received.
    #[error("copy mismatch: expected {expected:?}, received {received:?}")]
    ManifestMismatch {
        /// The source's manifest.
        expected: Manifest,
        /// What the target received.
        received: Manifest,
    },
}

/// Version of [`SlotTable::encode`]'s format.
pub const SLOT_TABLE_VERSION: u8 = 1;

/// The record kind byte of a stored slot table (after the version).
const SLOT_TABLE_KIND: u8 = 0x40;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    Frozen,
    HandedOff,
    Importing(Manifest),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Active {
    migration: Migration,
    phase: Phase,
}

/// The replicated slot table of one data group.
///
/// One migration at a time per group (the system group starts a group's
/// next migration only when both groups finished the previous one), so
/// a step for an older migration than the group's latest is stale, and
/// the table stays small: the owner of each slot, the migration in
/// progress and the last one finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotTable {
    group: GroupId,
    owners: SlotMap,
    current: Option<Active>,
    finished: Option<(MigrationId, Outcome)>,
}

impl SlotTable {
    /// The table of `group` at bootstrap, from the initial slot map.
    pub fn new(group: GroupId, map: SlotMap) -> Self {
        Self {
            group,
            owners: map,
            current: None,
            finished: None,
        }
    }

    /// The group this table belongs to.
    pub fn group(&self) -> GroupId {
        self.group
    }

    /// The slot map as this group knows it (exact for its own slots).
    pub fn owners(&self) -> &SlotMap {
        &self.owners
    }

    /// The migration in progress here, if any.
    pub fn current(&self) -> Option<&Migration> {
        self.current.as_ref().map(|a| &a.migration)
    }

    /// The last migration this group finished, and how.
    pub fn last_finished(&self) -> Option<(MigrationId, Outcome)> {
        self.finished
    }

    /// The state of `slot` here (`NotOwned` for a slot out of range).
    pub fn state(&self, slot: u16) -> SlotState {
        if let Some(active) = &self.current {
            let m = &active.migration;
            if m.slots.contains(slot) {
                return match &active.phase {
                    Phase::Frozen => SlotState::Frozen { migration: m.id },
                    Phase::HandedOff => SlotState::HandedOff {
                        migration: m.id,
                        target: m.target,
                    },
                    Phase::Importing(_) => SlotState::Importing {
                        migration: m.id,
                        source: m.source,
                    },
                };
            }
        }
        match self.owners.owner(slot) {
            Some(g) if g == self.group => SlotState::Owned,
            Some(owner) => SlotState::NotOwned { owner },
            None => SlotState::NotOwned { owner: self.group },
        }
    }

    /// What to do with a command on `slot`: at serve time (with `asking`
    /// set if the client sent `ASKING` just before) and again at apply for
    /// a write (where `asking` does not matter: an importing slot serves
    /// nobody before its commit).
    ///
    /// | state       | read            | write           |
    /// |-------------|-----------------|-----------------|
    /// | Owned       | Serve           | Serve           |
    /// | NotOwned    | Moved(owner)    | Moved(owner)    |
    /// | Frozen      | Serve           | TryAgain        |
    /// | HandedOff   | Ask(target)     | Ask(target)     |
    /// | Importing   | ASKING ? TryAgain : Moved(source) (both) |
    pub fn decide(&self, slot: u16, access: Access, asking: bool) -> Decision {
        match self.state(slot) {
            SlotState::Owned => Decision::Serve,
            SlotState::NotOwned { owner } => Decision::Moved(owner),
            SlotState::Frozen { .. } => match access {
                Access::Read => Decision::Serve,
                Access::Write => Decision::TryAgain,
            },
            SlotState::HandedOff { target, .. } => Decision::Ask(target),
            SlotState::Importing { source, .. } => {
                if asking {
                    Decision::TryAgain
                } else {
                    Decision::Moved(source)
                }
            }
        }
    }

    /// Where this group stands in migration `id`.
    pub fn view(&self, id: MigrationId) -> GroupView {
        if let Some(active) = &self.current {
            let current = active.migration.id;
            if id == current {
                return match active.phase {
                    Phase::Frozen => GroupView::Frozen,
                    Phase::HandedOff => GroupView::HandedOff,
                    Phase::Importing(m) => GroupView::Importing(m),
                };
            }
            if id > current {
                return GroupView::NotStarted;
            }
            return match self.finished {
                Some((f, outcome)) if f == id => GroupView::Finished(outcome),
                _ => GroupView::Superseded,
            };
        }
        match self.finished {
            Some((f, outcome)) if f == id => GroupView::Finished(outcome),
            Some((f, _)) if f > id => GroupView::Superseded,
            _ => GroupView::NotStarted,
        }
    }

    /// Applies a step from this group's log. Idempotent (a step applied
    /// twice changes the table once) and monotonic (a step of a migration
    /// this group finished, or behind its phase, is `Ignored`; one that
    /// would need an earlier step is refused): the table only moves
    /// forward. Deterministic: every replica gets the same result.
    ///
    /// A refusal is an expected outcome, not a storage failure: the state
    /// machine answers the proposer with it and moves on.
    pub fn apply(&mut self, step: &GroupStep) -> Result<Applied, Refusal> {
        let result = self.apply_step(step);
        debug_assert_eq!(self.check(), Ok(()), "after {}", step.name());
        result
    }

    /// The table's invariants: a migration in progress is newer than the
    /// last one finished and has this group on the side its phase implies;
    /// a source still owns the slots it freezes or has handed off, a target
    /// owns none of those it imports. [`SlotTable::decode`] checks them;
    /// `apply` asserts them in debug builds.
    pub fn check(&self) -> Result<(), &'static str> {
        let Some(active) = &self.current else {
            return Ok(());
        };
        let m = &active.migration;
        if matches!(self.finished, Some((f, _)) if m.id <= f) {
            return Err("migration in progress older than the last finished");
        }
        let (side, owns) = match active.phase {
            Phase::Frozen | Phase::HandedOff => {
                (m.source, self.owners.all_owned_by(&m.slots, self.group))
            }
            Phase::Importing(_) => (m.target, self.owners.none_owned_by(&m.slots, self.group)),
        };
        if side != self.group {
            return Err("migration in progress of another group");
        }
        if !owns {
            return Err("slot ownership contradicts the migration's phase");
        }
        Ok(())
    }

    fn apply_step(&mut self, step: &GroupStep) -> Result<Applied, Refusal> {
        let expected = step.group();
        if expected != self.group {
            return Err(Refusal::WrongGroup {
                expected,
                group: self.group,
            });
        }
        let m = step.migration();
        match &self.current {
            Some(active) if m.id < active.migration.id => Ok(Applied::Ignored),
            Some(active) if m.id > active.migration.id => Err(Refusal::Busy {
                current: active.migration.id,
            }),
            Some(active) if active.migration != *m => Err(Refusal::Mismatch(m.id)),
            Some(_) => self.apply_current(step),
            None => match self.finished {
                Some((f, _)) if m.id <= f => Ok(Applied::Ignored),
                _ => self.apply_new(step),
            },
        }
    }

    /// A step of a migration newer than any this group has seen.
    fn apply_new(&mut self, step: &GroupStep) -> Result<Applied, Refusal> {
        match step {
            GroupStep::Freeze(m) => {
                if let Some(s) = m
                    .slots
                    .slots()
                    .find(|&s| self.owners.owner(s) != Some(self.group))
                {
                    return Err(Refusal::NotOwned(s));
                }
                self.start(m, Phase::Frozen);
                Ok(Applied::Changed(Effect::None))
            }
            GroupStep::ImportStart(m) => {
                if let Some(s) = m
                    .slots
                    .slots()
                    .find(|&s| self.owners.owner(s) == Some(self.group))
                {
                    return Err(Refusal::AlreadyOwned(s));
                }
                self.start(m, Phase::Importing(Manifest::default()));
                // Nothing of a slot this group does not serve should be
                // here; deleting makes sure no leftover comes back to life.
                Ok(Applied::Changed(Effect::DeleteSlots(m.slots.clone())))
            }
            // Abandoned before this group applied anything: remember it,
            // so a late Freeze or ImportStart of it is ignored.
            GroupStep::Abort(m) | GroupStep::ImportAbort(m) => {
                self.finished = Some((m.id, Outcome::Aborted));
                Ok(Applied::Changed(Effect::None))
            }
            GroupStep::HandOff(_)
            | GroupStep::Drop(_)
            | GroupStep::ImportChunk(..)
            | GroupStep::ImportCommit(..) => Err(Refusal::OutOfOrder {
                step: step.name(),
                phase: "not started",
            }),
        }
    }

    /// A step of the migration in progress (its description matches).
    fn apply_current(&mut self, step: &GroupStep) -> Result<Applied, Refusal> {
        let Some(active) = self.current.as_mut() else {
            return Err(Refusal::OutOfOrder {
                step: step.name(),
                phase: "not started",
            });
        };
        let id = active.migration.id;
        match (&mut active.phase, step) {
            (Phase::Frozen, GroupStep::Freeze(_)) => Ok(Applied::Ignored),
            (Phase::Frozen, GroupStep::HandOff(_)) => {
                active.phase = Phase::HandedOff;
                Ok(Applied::Changed(Effect::None))
            }
            (Phase::Frozen, GroupStep::Abort(_)) => {
                self.finish(Outcome::Aborted);
                Ok(Applied::Changed(Effect::None))
            }
            (Phase::Frozen, GroupStep::Drop(_)) => Err(Refusal::OutOfOrder {
                step: "Drop",
                phase: "frozen, not handed off",
            }),
            (Phase::HandedOff, GroupStep::Freeze(_) | GroupStep::HandOff(_)) => {
                Ok(Applied::Ignored)
            }
            (Phase::HandedOff, GroupStep::Abort(_)) => Err(Refusal::HandedOff(id)),
            (Phase::HandedOff, GroupStep::Drop(m)) => {
                let slots = m.slots.clone();
                self.owners.assign(&slots, m.target);
                self.finish(Outcome::Completed);
                Ok(Applied::Changed(Effect::DeleteSlots(slots)))
            }
            (Phase::Importing(_), GroupStep::ImportStart(_)) => Ok(Applied::Ignored),
            (Phase::Importing(received), GroupStep::ImportChunk(m, chunk)) => {
                check_chunk(&m.slots, chunk)?;
                if chunk.seq < received.chunks {
                    return Ok(Applied::Ignored);
                }
                if chunk.seq > received.chunks {
                    return Err(Refusal::ChunkGap {
                        expected: received.chunks,
                        got: chunk.seq,
                    });
                }
                received.add(chunk);
                Ok(Applied::Changed(Effect::WriteChunk))
            }
            (Phase::Importing(received), GroupStep::ImportCommit(m, expected)) => {
                if received != expected {
                    return Err(Refusal::ManifestMismatch {
                        expected: *expected,
                        received: *received,
                    });
                }
                let slots = m.slots.clone();
                self.owners.assign(&slots, self.group);
                self.finish(Outcome::Completed);
                Ok(Applied::Changed(Effect::None))
            }
            (Phase::Importing(_), GroupStep::ImportAbort(m)) => {
                let slots = m.slots.clone();
                self.finish(Outcome::Aborted);
                Ok(Applied::Changed(Effect::DeleteSlots(slots)))
            }
            // A source step in a target's table or the reverse cannot
            // reach here: the step's group is this one, and a migration's
            // source and target differ.
            (phase, step) => Err(Refusal::OutOfOrder {
                step: step.name(),
                phase: match phase {
                    Phase::Frozen => "frozen",
                    Phase::HandedOff => "handed off",
                    Phase::Importing(_) => "importing",
                },
            }),
        }
    }

    fn start(&mut self, m: &Migration, phase: Phase) {
        self.current = Some(Active {
            migration: m.clone(),
            phase,
        });
    }

    fn finish(&mut self, outcome: Outcome) {
        if let Some(active) = self.current.take() {
            self.finished = Some((active.migration.id, outcome));
        }
    }

    /// The stored form, versioned:
    ///
    /// ```text
    /// version u8 | 0x40 | group u32 | runs u32 | (first u16 | last u16 | owner u32)*
    ///   | phase u8 (0 none, 1 frozen, 2 handed off, 3 importing) [migration [manifest]]
    ///   | finished u8 (0 none, 1 completed, 2 aborted) [id u64]
    /// ```
    ///
    /// The group's state machine keeps it beside the data it governs,
    /// writes it in the same batch as each step's [`Effect`], and carries
    /// it in snapshots.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new(SLOT_TABLE_VERSION, SLOT_TABLE_KIND);
        w.u32(self.group);
        w.map(&self.owners);
        match &self.current {
            None => w.u8(0),
            Some(active) => {
                w.u8(match active.phase {
                    Phase::Frozen => 1,
                    Phase::HandedOff => 2,
                    Phase::Importing(_) => 3,
                });
                write_migration(&mut w, &active.migration);
                if let Phase::Importing(received) = &active.phase {
                    write_manifest(&mut w, received);
                }
            }
        }
        match self.finished {
            None => w.u8(0),
            Some((id, outcome)) => {
                w.u8(outcome_tag(outcome));
                w.u64(id);
            }
        }
        w.out
    }

    /// Reads a table written by [`SlotTable::encode`]. Refuses another
    /// version, a map that does not cover every slot once, a table that
    /// fails [`SlotTable::check`], and trailing bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let kind = r.header(SLOT_TABLE_VERSION)?;
        if kind != SLOT_TABLE_KIND {
            return Err(DecodeError::Tag {
                what: "slot table kind",
                tag: kind,
            });
        }
        let group = r.u32("group")?;
        let owners = r.map()?;
        let current = match r.u8("phase")? {
            0 => None,
            tag @ 1..=3 => {
                let migration = read_migration(&mut r)?;
                let phase = match tag {
                    1 => Phase::Frozen,
                    2 => Phase::HandedOff,
                    _ => Phase::Importing(read_manifest(&mut r)?),
                };
                Some(Active { migration, phase })
            }
            tag => return Err(DecodeError::Tag { what: "phase", tag }),
        };
        let finished = match r.u8("finished")? {
            0 => None,
            1 => Some((r.u64("finished id")?, Outcome::Completed)),
            2 => Some((r.u64("finished id")?, Outcome::Aborted)),
            tag => {
                return Err(DecodeError::Tag {
                    what: "finished",
                    tag,
                })
            }
        };
        r.finish()?;
        let table = Self {
            group,
            owners,
            current,
            finished,
        };
        table.check().map_err(DecodeError::Invalid)?;
        Ok(table)
    }
}

/// A chunk's limits and slots, checked at apply on every replica (the
/// decoder checks the limits too; a step built in memory is checked here).
fn check_chunk(slots: &SlotRanges, chunk: &Chunk) -> Result<(), Refusal> {
    let bytes = chunk.size();
    if chunk.entries.len() > MAX_CHUNK_ENTRIES || bytes > MAX_CHUNK_BYTES {
        return Err(Refusal::ChunkTooLarge {
            entries: chunk.entries.len(),
            bytes,
        });
    }
    match chunk.entries.iter().find(|e| !slots.contains(e.slot)) {
        Some(e) => Err(Refusal::ChunkSlot(e.slot)),
        None => Ok(()),
    }
}

// The table is indexed by u16 slots below CLUSTER_SLOTS.
const _: () = assert!(CLUSTER_SLOTS > 0 && (CLUSTER_SLOTS as u32) <= u16::MAX as u32 + 1);

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::step::ChunkEntry;

    fn setup() -> (SlotTable, SlotTable, Migration) {
        let map = SlotMap::even(&[1, 2]).unwrap();
        let m = Migration {
            id: 1,
            slots: SlotRanges::new([(0, 9)]).unwrap(),
            source: 1,
            target: 2,
        };
        (SlotTable::new(1, map.clone()), SlotTable::new(2, map), m)
    }

    fn chunk(seq: u64, slot: u16) -> Chunk {
        Chunk {
            seq,
            entries: vec![ChunkEntry {
                slot,
                key: vec![b'k', seq as u8],
                value: b"v".to_vec(),
            }],
        }
    }

    #[test]
    fn a_migration_walks_through_every_decision() {
        let (mut a, mut b, m) = setup();
        let r = Access::Read;
        let w = Access::Write;
        assert_eq!(a.decide(5, w, false), Decision::Serve);
        assert_eq!(b.decide(5, w, false), Decision::Moved(1));

        b.apply(&GroupStep::ImportStart(m.clone())).unwrap();
        assert_eq!(b.decide(5, r, false), Decision::Moved(1));
        assert_eq!(b.decide(5, w, true), Decision::TryAgain);

        a.apply(&GroupStep::Freeze(m.clone())).unwrap();
        assert_eq!(a.decide(5, r, false), Decision::Serve);
        assert_eq!(a.decide(5, w, false), Decision::TryAgain);
        assert_eq!(
            a.decide(10, w, false),
            Decision::Serve,
            "other slots unaffected"
        );

        let c0 = chunk(0, 3);
        assert_eq!(
            b.apply(&GroupStep::ImportChunk(m.clone(), c0.clone())),
            Ok(Applied::Changed(Effect::WriteChunk))
        );
        assert_eq!(
            b.apply(&GroupStep::ImportChunk(m.clone(), c0.clone())),
            Ok(Applied::Ignored),
            "deduplicated by seq"
        );
        assert!(matches!(
            b.apply(&GroupStep::ImportChunk(m.clone(), chunk(2, 3))),
            Err(Refusal::ChunkGap {
                expected: 1,
                got: 2
            })
        ));
        assert_eq!(
            b.apply(&GroupStep::ImportChunk(m.clone(), chunk(1, 50))),
            Err(Refusal::ChunkSlot(50))
        );

        a.apply(&GroupStep::HandOff(m.clone())).unwrap();
        assert_eq!(a.decide(5, r, false), Decision::Ask(2));
        assert_eq!(
            a.apply(&GroupStep::Abort(m.clone())),
            Err(Refusal::HandedOff(1))
        );

        let mut expected = Manifest::default();
        expected.add(&c0);
        let wrong = Manifest {
            entries: 9,
            ..expected
        };
        assert!(matches!(
            b.apply(&GroupStep::ImportCommit(m.clone(), wrong)),
            Err(Refusal::ManifestMismatch { .. })
        ));
        b.apply(&GroupStep::ImportCommit(m.clone(), expected))
            .unwrap();
        assert_eq!(b.decide(5, w, false), Decision::Serve);
        assert_eq!(b.decide(5, w, true), Decision::Serve);
        assert_eq!(
            b.apply(&GroupStep::ImportChunk(m.clone(), chunk(1, 3))),
            Ok(Applied::Ignored),
            "a late chunk after the commit changes nothing"
        );
        assert_eq!(
            b.apply(&GroupStep::ImportAbort(m.clone())),
            Ok(Applied::Ignored)
        );

        assert_eq!(
            a.apply(&GroupStep::Drop(m.clone())),
            Ok(Applied::Changed(Effect::DeleteSlots(m.slots.clone())))
        );
        assert_eq!(a.decide(5, r, false), Decision::Moved(2));
        assert_eq!(a.apply(&GroupStep::Freeze(m.clone())), Ok(Applied::Ignored));
        assert_eq!(a.view(1), GroupView::Finished(Outcome::Completed));
        assert_eq!(b.view(1), GroupView::Finished(Outcome::Completed));
        assert_eq!(a.view(2), GroupView::NotStarted);
    }

    #[test]
    fn an_abort_before_anything_is_remembered() {
        let (mut a, mut b, m) = setup();
        assert_eq!(
            a.apply(&GroupStep::Abort(m.clone())),
            Ok(Applied::Changed(Effect::None))
        );
        assert_eq!(a.apply(&GroupStep::Freeze(m.clone())), Ok(Applied::Ignored));
        assert_eq!(a.decide(5, Access::Write, false), Decision::Serve);
        b.apply(&GroupStep::ImportAbort(m.clone())).unwrap();
        assert_eq!(
            b.apply(&GroupStep::ImportStart(m.clone())),
            Ok(Applied::Ignored)
        );
        assert_eq!(b.view(1), GroupView::Finished(Outcome::Aborted));
    }

    #[test]
    fn out_of_order_wrong_group_and_busy_steps_are_refused() {
        let (mut a, mut b, m) = setup();
        assert!(matches!(
            a.apply(&GroupStep::HandOff(m.clone())),
            Err(Refusal::OutOfOrder { .. })
        ));
        assert!(matches!(
            a.apply(&GroupStep::ImportStart(m.clone())),
            Err(Refusal::WrongGroup { .. })
        ));
        assert_eq!(
            b.apply(&GroupStep::Freeze(m.clone())),
            Err(Refusal::WrongGroup {
                expected: 1,
                group: 2
            })
        );
        a.apply(&GroupStep::Freeze(m.clone())).unwrap();
        assert!(matches!(
            a.apply(&GroupStep::Drop(m.clone())),
            Err(Refusal::OutOfOrder { .. })
        ));
        let later = Migration { id: 2, ..m.clone() };
        assert_eq!(
            a.apply(&GroupStep::Freeze(later)),
            Err(Refusal::Busy { current: 1 })
        );
        let other = Migration {
            slots: SlotRanges::single(1).unwrap(),
            ..m.clone()
        };
        assert_eq!(
            a.apply(&GroupStep::HandOff(other)),
            Err(Refusal::Mismatch(1))
        );
        let not_owned = Migration {
            id: 3,
            slots: SlotRanges::single(9000).unwrap(),
            ..m
        };
        let (mut fresh, _, _) = setup();
        assert_eq!(
            fresh.apply(&GroupStep::Freeze(not_owned)),
            Err(Refusal::NotOwned(9000))
        );
    }

    #[test]
    fn a_table_round_trips_in_every_phase_and_bad_bytes_are_refused() {
        let (mut a, mut b, m) = setup();
        let mut seen = Vec::new();
        let mut keep = |t: &SlotTable| {
            assert_eq!(SlotTable::decode(&t.encode()).as_ref(), Ok(t));
            seen.push(t.encode());
        };
        keep(&a);
        a.apply(&GroupStep::Freeze(m.clone())).unwrap();
        keep(&a);
        a.apply(&GroupStep::HandOff(m.clone())).unwrap();
        keep(&a);
        b.apply(&GroupStep::ImportStart(m.clone())).unwrap();
        b.apply(&GroupStep::ImportChunk(m.clone(), chunk(0, 1)))
            .unwrap();
        keep(&b);
        b.apply(&GroupStep::ImportAbort(m.clone())).unwrap();
        keep(&b);
        a.apply(&GroupStep::Drop(m)).unwrap();
        keep(&a);
        for bytes in seen {
            for cut in 0..bytes.len() {
                assert!(SlotTable::decode(&bytes[..cut]).is_err());
            }
            let mut other = bytes.clone();
            other[1] = 0x41;
            assert!(SlotTable::decode(&other).is_err());
        }
        // A frozen migration in a table of a group that is not its source.
        let (mut a, _, m) = setup();
        a.apply(&GroupStep::Freeze(m)).unwrap();
        let mut bytes = a.encode();
        bytes[2..6].copy_from_slice(&2u32.to_be_bytes());
        assert_eq!(
            SlotTable::decode(&bytes),
            Err(DecodeError::Invalid(
                "migration in progress of another group"
            ))
        );
    }
}
