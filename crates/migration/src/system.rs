//! The system group's side: the cluster's slot map, its version, and
//! the record of every migration in progress, changed only by
//! [`SystemStep`]s applied from the system group's log.

use std::collections::{BTreeMap, BTreeSet};

use crate::codec::{DecodeError, Reader, Writer};
use crate::slots::SlotMap;
use crate::step::{outcome_tag, read_migration, read_outcome, write_migration};
use crate::step::{Migration, Outcome, SystemStep};
use crate::{GroupId, MigrationId, MAX_ACTIVE_MIGRATIONS, MAX_FINISHED_KEPT};

/// Version of [`SystemTable::encode`]'s format.
pub const SYSTEM_TABLE_VERSION: u8 = 1;

/// The record kind byte of a stored system table (after the version).
const SYSTEM_TABLE_KIND: u8 = 0x41;

/// Where a recorded migration stands in the system group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Recorded, slot map unchanged. `abort_requested`: an `Abort` was
    /// applied; it takes effect only if the source has not handed off
    /// (the source's log decides which came first).
    Active {
        /// Whether an abort was asked for.
        abort_requested: bool,
    },
    /// The slot map gives the slots to the target; the source drops them
    /// next.
    Flipped,
}

/// A migration as the system group records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemMigration {
    /// What moves where.
    pub migration: Migration,
    /// How far it has gone.
    pub status: Status,
}

/// The result of a system step that was not refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SystemApplied {
    /// `Record` started migration `id`.
    Recorded(MigrationId),
    /// The step changed the record.
    Changed,
    /// Already applied, or about a finished migration: nothing changes.
    Ignored,
}

/// Why a system step was refused; nothing changes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SystemRefusal {
    /// `Record` against an older slot map.
    #[error("slot map is at version {current}, the request saw {requested}")]
    MapVersion {
        /// The map's version.
        current: u64,
        /// The version the request was made against.
        requested: u64,
    },
    /// `Record` from a group to itself.
    #[error("a migration needs two different groups")]
    SameGroup,
    /// `Record` of a slot the source does not own.
    #[error("slot {slot} belongs to group {owner}, not to the source")]
    NotOwned {
        /// The slot.
        slot: u16,
        /// Its owner.
        owner: GroupId,
    },
    /// `Record` while a group is already migrating.
    #[error("group {group} is in migration {migration}")]
    GroupBusy {
        /// The busy group.
        group: GroupId,
        /// Its migration.
        migration: MigrationId,
    },
    /// More than [`MAX_ACTIVE_MIGRATIONS`] at once.
    #[error("{MAX_ACTIVE_MIGRATIONS} migrations are already in progress")]
    TooMany,
    /// No migration with this id was ever recorded.
    #[error("no migration {0}")]
    Unknown(MigrationId),
    /// `Abort` or `Done(Aborted)` after the flip or the completion.
    #[error("migration {0} has completed; it cannot be aborted")]
    Completed(MigrationId),
    /// `Flip` or `Done(Completed)` of an aborted migration.
    #[error("migration {0} was aborted")]
    Aborted(MigrationId),
    /// `Done` before its time: `Completed` before the flip, `Aborted`
    /// without an abort asked for.
    #[error("migration {0} cannot finish as {1:?} yet")]
    NotReady(MigrationId, Outcome),
}

/// The migration part of the system group's replicated state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemTable {
    map: SlotMap,
    map_version: u64,
    last_id: MigrationId,
    active: BTreeMap<MigrationId, SystemMigration>,
    finished: BTreeMap<MigrationId, Outcome>,
}

impl SystemTable {
    /// The table at bootstrap, with the initial slot map at version 1.
    pub fn new(map: SlotMap) -> Self {
        Self {
            map,
            map_version: 1,
            last_id: 0,
            active: BTreeMap::new(),
            finished: BTreeMap::new(),
        }
    }

    /// The cluster's slot map.
    pub fn map(&self) -> &SlotMap {
        &self.map
    }

    /// Increases with every flip.
    pub fn map_version(&self) -> u64 {
        self.map_version
    }

    /// The migrations in progress, oldest first: what the coordinator
    /// drives.
    pub fn active(&self) -> impl Iterator<Item = &SystemMigration> {
        self.active.values()
    }

    /// Migration `id` if it is in progress.
    pub fn migration(&self, id: MigrationId) -> Option<&SystemMigration> {
        self.active.get(&id)
    }

    /// The migration in progress that moves `slot`, if any. Routing uses
    /// it for a command sent with `ASKING`: such a command goes to the
    /// migration's target group (which serves it once it has committed).
    pub fn migration_of(&self, slot: u16) -> Option<&SystemMigration> {
        self.active
            .values()
            .find(|r| r.migration.slots.contains(slot))
    }

    /// How migration `id` ended, if it ended among the last
    /// [`MAX_FINISHED_KEPT`].
    pub fn outcome(&self, id: MigrationId) -> Option<Outcome> {
        self.finished.get(&id).copied()
    }

    /// The last id allocated.
    pub fn last_id(&self) -> MigrationId {
        self.last_id
    }

    /// Applies a step from the system group's log: idempotent and
    /// monotonic like the data groups' steps, deterministic on every
    /// replica.
    pub fn apply(&mut self, step: &SystemStep) -> Result<SystemApplied, SystemRefusal> {
        let result = self.apply_step(step);
        debug_assert_eq!(self.check(), Ok(()), "after {step:?}");
        result
    }

    /// The table's invariants: ids of migrations in progress and finished
    /// are allocated, distinct and within the limits; no group is in two
    /// migrations; the slot map gives a migration's slots to its source
    /// until the flip and to its target after. [`SystemTable::decode`]
    /// checks them; `apply` asserts them in debug builds.
    pub fn check(&self) -> Result<(), &'static str> {
        if self.active.len() > MAX_ACTIVE_MIGRATIONS || self.finished.len() > MAX_FINISHED_KEPT {
            return Err("more migrations than the limits");
        }
        let mut busy = BTreeSet::new();
        for (&id, record) in &self.active {
            let m = &record.migration;
            if id != m.id || id == 0 || id > self.last_id {
                return Err("migration id not allocated");
            }
            if m.source == m.target {
                return Err("migration from a group to itself");
            }
            if !busy.insert(m.source) || !busy.insert(m.target) {
                return Err("a group in two migrations");
            }
            let owner = match record.status {
                Status::Active { .. } => m.source,
                Status::Flipped => m.target,
            };
            if !self.map.all_owned_by(&m.slots, owner) {
                return Err("slot map contradicts a migration's status");
            }
        }
        if self
            .finished
            .keys()
            .any(|&id| id == 0 || id > self.last_id || self.active.contains_key(&id))
        {
            return Err("finished migration id");
        }
        Ok(())
    }

    fn apply_step(&mut self, step: &SystemStep) -> Result<SystemApplied, SystemRefusal> {
        match step {
            SystemStep::Record {
                slots,
                source,
                target,
                map_version,
            } => {
                if *map_version != self.map_version {
                    return Err(SystemRefusal::MapVersion {
                        current: self.map_version,
                        requested: *map_version,
                    });
                }
                if source == target {
                    return Err(SystemRefusal::SameGroup);
                }
                for slot in slots.slots() {
                    let owner = self.map.owner(slot).unwrap_or(*source);
                    if owner != *source {
                        return Err(SystemRefusal::NotOwned { slot, owner });
                    }
                }
                if let Some(busy) = self.active.values().find_map(|r| {
                    let m = &r.migration;
                    [m.source, m.target]
                        .into_iter()
                        .find(|g| g == source || g == target)
                        .map(|group| (group, m.id))
                }) {
                    return Err(SystemRefusal::GroupBusy {
                        group: busy.0,
                        migration: busy.1,
                    });
                }
                if self.active.len() >= MAX_ACTIVE_MIGRATIONS {
                    return Err(SystemRefusal::TooMany);
                }
                let id = self.last_id.checked_add(1).ok_or(SystemRefusal::TooMany)?;
                self.last_id = id;
                let migration = Migration {
                    id,
                    slots: slots.clone(),
                    source: *source,
                    target: *target,
                };
                self.active.insert(
                    migration.id,
                    SystemMigration {
                        migration,
                        status: Status::Active {
                            abort_requested: false,
                        },
                    },
                );
                Ok(SystemApplied::Recorded(self.last_id))
            }
            SystemStep::Abort(id) => self.abort(*id),
            SystemStep::Flip(id) => self.flip(*id),
            SystemStep::Done(id, outcome) => self.done(*id, *outcome),
        }
    }

    /// `Ignored` for a finished migration with outcome `ok`, the refusal
    /// `other` if it finished the other way, `Unknown` if never recorded.
    fn settled(
        &self,
        id: MigrationId,
        ok: Outcome,
        other: SystemRefusal,
    ) -> Result<SystemApplied, SystemRefusal> {
        match self.finished.get(&id) {
            Some(o) if *o == ok => Ok(SystemApplied::Ignored),
            Some(_) => Err(other),
            None if id > self.last_id || id == 0 => Err(SystemRefusal::Unknown(id)),
            // Finished so long ago its outcome was forgotten.
            None => Ok(SystemApplied::Ignored),
        }
    }

    fn abort(&mut self, id: MigrationId) -> Result<SystemApplied, SystemRefusal> {
        let Some(record) = self.active.get_mut(&id) else {
            return self.settled(id, Outcome::Aborted, SystemRefusal::Completed(id));
        };
        match record.status {
            Status::Active {
                abort_requested: true,
            } => Ok(SystemApplied::Ignored),
            Status::Active {
                abort_requested: false,
            } => {
                record.status = Status::Active {
                    abort_requested: true,
                };
                Ok(SystemApplied::Changed)
            }
            Status::Flipped => Err(SystemRefusal::Completed(id)),
        }
    }

    fn flip(&mut self, id: MigrationId) -> Result<SystemApplied, SystemRefusal> {
        let Some(record) = self.active.get_mut(&id) else {
            return self.settled(id, Outcome::Completed, SystemRefusal::Aborted(id));
        };
        match record.status {
            Status::Flipped => Ok(SystemApplied::Ignored),
            // Even with an abort asked for: the coordinator flips only
            // once the target committed, which means the source handed
            // off first and the abort came too late.
            Status::Active { .. } => {
                record.status = Status::Flipped;
                self.map
                    .assign(&record.migration.slots, record.migration.target);
                self.map_version = self.map_version.saturating_add(1);
                Ok(SystemApplied::Changed)
            }
        }
    }

    fn done(&mut self, id: MigrationId, outcome: Outcome) -> Result<SystemApplied, SystemRefusal> {
        let Some(record) = self.active.get(&id) else {
            let other = match outcome {
                Outcome::Completed => SystemRefusal::Aborted(id),
                Outcome::Aborted => SystemRefusal::Completed(id),
            };
            return self.settled(id, outcome, other);
        };
        let ready = matches!(
            (record.status, outcome),
            (Status::Flipped, Outcome::Completed)
                | (
                    Status::Active {
                        abort_requested: true
                    },
                    Outcome::Aborted
                )
        );
        if !ready {
            return Err(SystemRefusal::NotReady(id, outcome));
        }
        self.active.remove(&id);
        self.finished.insert(id, outcome);
        while self.finished.len() > MAX_FINISHED_KEPT {
            self.finished.pop_first();
        }
        Ok(SystemApplied::Changed)
    }

    /// The stored form, versioned:
    ///
    /// ```text
    /// version u8 | 0x41 | map_version u64 | last_id u64
    ///   | runs u32 | (first u16 | last u16 | owner u32)*
    ///   | active u32 | (migration | status u8 (0 active, 1 abort asked, 2 flipped))*
    ///   | finished u32 | (id u64 | outcome u8)*
    /// ```
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new(SYSTEM_TABLE_VERSION, SYSTEM_TABLE_KIND);
        w.u64(self.map_version);
        w.u64(self.last_id);
        w.map(&self.map);
        // Both at most their limits, far below u32::MAX.
        w.u32(u32::try_from(self.active.len()).unwrap_or(u32::MAX));
        for record in self.active.values() {
            write_migration(&mut w, &record.migration);
            w.u8(match record.status {
                Status::Active {
                    abort_requested: false,
                } => 0,
                Status::Active {
                    abort_requested: true,
                } => 1,
                Status::Flipped => 2,
            });
        }
        w.u32(u32::try_from(self.finished.len()).unwrap_or(u32::MAX));
        for (&id, &outcome) in &self.finished {
            w.u64(id);
            w.u8(outcome_tag(outcome));
        }
        w.out
    }

    /// Reads a table written by [`SystemTable::encode`]. Refuses another
    /// version, more migrations than the limits, an id repeated, a table
    /// that fails [`SystemTable::check`], and trailing bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let kind = r.header(SYSTEM_TABLE_VERSION)?;
        if kind != SYSTEM_TABLE_KIND {
            return Err(DecodeError::Tag {
                what: "system table kind",
                tag: kind,
            });
        }
        let map_version = r.u64("map version")?;
        let last_id = r.u64("last id")?;
        let map = r.map()?;
        let mut active = BTreeMap::new();
        for _ in 0..r.count("active migrations", MAX_ACTIVE_MIGRATIONS)? {
            let migration = read_migration(&mut r)?;
            let status = match r.u8("status")? {
                0 => Status::Active {
                    abort_requested: false,
                },
                1 => Status::Active {
                    abort_requested: true,
                },
                2 => Status::Flipped,
                tag => {
                    return Err(DecodeError::Tag {
                        what: "status",
                        tag,
                    })
                }
            };
            let id = migration.id;
            if active
                .insert(id, SystemMigration { migration, status })
                .is_some()
            {
                return Err(DecodeError::Invalid("migration recorded twice"));
            }
        }
        let mut finished = BTreeMap::new();
        for _ in 0..r.count("finished migrations", MAX_FINISHED_KEPT)? {
            let id = r.u64("migration id")?;
            let outcome = read_outcome(&mut r)?;
            if finished.insert(id, outcome).is_some() {
                return Err(DecodeError::Invalid("migration finished twice"));
            }
        }
        r.finish()?;
        let table = Self {
            map,
            map_version,
            last_id,
            active,
            finished,
        };
        table.check().map_err(DecodeError::Invalid)?;
        Ok(table)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::slots::SlotRanges;

    fn record(t: &SystemTable, slot: u16, source: GroupId, target: GroupId) -> SystemStep {
        SystemStep::Record {
            slots: SlotRanges::single(slot).unwrap(),
            source,
            target,
            map_version: t.map_version(),
        }
    }

    #[test]
    fn record_flip_done() {
        let mut t = SystemTable::new(SlotMap::even(&[1, 2, 3]).unwrap());
        let r = record(&t, 0, 1, 2);
        assert_eq!(t.apply(&r), Ok(SystemApplied::Recorded(1)));
        assert_eq!(t.migration_of(0).map(|r| r.migration.target), Some(2));
        assert!(t.migration_of(1).is_none());
        assert!(matches!(t.apply(&r), Err(SystemRefusal::GroupBusy { .. })));
        assert!(matches!(
            t.apply(&record(&t, 6000, 2, 3)),
            Err(SystemRefusal::GroupBusy { group: 2, .. })
        ));
        assert_eq!(
            t.apply(&SystemStep::Done(1, Outcome::Completed)),
            Err(SystemRefusal::NotReady(1, Outcome::Completed))
        );
        assert_eq!(t.apply(&SystemStep::Flip(1)), Ok(SystemApplied::Changed));
        assert_eq!(t.apply(&SystemStep::Flip(1)), Ok(SystemApplied::Ignored));
        assert_eq!(t.map().owner(0), Some(2));
        assert_eq!(t.map_version(), 2);
        assert_eq!(
            t.apply(&SystemStep::Abort(1)),
            Err(SystemRefusal::Completed(1))
        );
        assert_eq!(
            t.apply(&SystemStep::Done(1, Outcome::Completed)),
            Ok(SystemApplied::Changed)
        );
        assert_eq!(
            t.apply(&SystemStep::Done(1, Outcome::Completed)),
            Ok(SystemApplied::Ignored)
        );
        assert_eq!(t.apply(&SystemStep::Flip(1)), Ok(SystemApplied::Ignored));
        assert_eq!(t.outcome(1), Some(Outcome::Completed));
        assert!(
            matches!(t.apply(&r), Err(SystemRefusal::MapVersion { .. })),
            "a retried request"
        );
        assert_eq!(
            t.apply(&SystemStep::Flip(9)),
            Err(SystemRefusal::Unknown(9))
        );
    }

    #[test]
    fn a_table_round_trips_and_bad_bytes_are_refused() {
        let mut t = SystemTable::new(SlotMap::even(&[1, 2, 3]).unwrap());
        assert_eq!(SystemTable::decode(&t.encode()), Ok(t.clone()));
        t.apply(&record(&t, 0, 1, 2)).unwrap();
        t.apply(&SystemStep::Flip(1)).unwrap();
        t.apply(&SystemStep::Done(1, Outcome::Completed)).unwrap();
        t.apply(&record(&t, 6000, 2, 3)).unwrap();
        t.apply(&SystemStep::Abort(2)).unwrap();
        t.apply(&record(&t, 1, 1, 3)).unwrap_err();
        let bytes = t.encode();
        assert_eq!(SystemTable::decode(&bytes), Ok(t));
        for cut in 0..bytes.len() {
            assert!(SystemTable::decode(&bytes[..cut]).is_err());
        }
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert_eq!(
            SystemTable::decode(&trailing),
            Err(DecodeError::Trailing(1))
        );
    }

    #[test]
    fn abort_then_done() {
        let mut t = SystemTable::new(SlotMap::even(&[1, 2]).unwrap());
        t.apply(&record(&t, 0, 1, 2)).unwrap();
        assert_eq!(
            t.apply(&SystemStep::Done(1, Outcome::Aborted)),
            Err(SystemRefusal::NotReady(1, Outcome::Aborted))
        );
        assert_eq!(t.apply(&SystemStep::Abort(1)), Ok(SystemApplied::Changed));
        assert_eq!(t.apply(&SystemStep::Abort(1)), Ok(SystemApplied::Ignored));
        assert_eq!(
            t.apply(&SystemStep::Done(1, Outcome::Aborted)),
            Ok(SystemApplied::Changed)
        );
        assert_eq!(
            t.apply(&SystemStep::Flip(1)),
            Err(SystemRefusal::Aborted(1))
        );
        assert_eq!(t.map().owner(0), Some(1));
        assert!(matches!(
            t.apply(&record(&t, 9000, 1, 2)),
            Err(SystemRefusal::NotOwned {
                slot: 9000,
                owner: 2
            })
        ));
    }
}
