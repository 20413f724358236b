//! The coordinator as a pure function: from the system group's record of
//! a migration and what the two groups have applied, the one step to
//! propose next.
//!
//! It keeps nothing between calls. The task on the system group's leader
//! calls [`next_step`], proposes the step, waits until it is applied (or
//! refused), observes again and repeats; after a crash or a change of
//! leader the new task starts from the records alone. Every decision rests
//! on facts that stay true once observed (a group's phase only moves
//! forward, the copy is fixed once the source is frozen), so a step
//! decided from an old observation, proposed late or twice, is still
//! right or is ignored by the group that applies it.

use crate::step::{GroupStep, Manifest, Outcome, SystemStep};
use crate::system::{Status, SystemMigration};
use crate::table::GroupView;

/// What the coordinator knows of one migration.
#[derive(Debug, Clone, Copy)]
pub struct Observation<'a> {
    /// The system group's record of it (a migration still in progress).
    pub record: &'a SystemMigration,
    /// The source group's applied table, `view(id)`.
    pub source: GroupView,
    /// The target group's applied table, `view(id)`.
    pub target: GroupView,
    /// The manifest of the source's data in the slots, computed by the
    /// caller from a source replica that has applied the freeze (`None`
    /// if not computed; asked for with [`Next::NeedManifest`]).
    pub manifest: Option<Manifest>,
}

/// What to do next for one migration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Propose this step to the system group.
    System(SystemStep),
    /// Propose this step to the group [`GroupStep::group`] names.
    Group(GroupStep),
    /// Cut chunk `seq` from the source's frozen data (see
    /// [`crate::copy::chunk_at`]) and propose it to the target as
    /// `ImportChunk`.
    SendChunk {
        /// The next chunk the target takes.
        seq: u64,
    },
    /// Compute the manifest of the source's frozen data and call again.
    /// A frozen source's data does not change until `Drop`, so the task
    /// may cache the manifest by migration id (a cache lost in a crash is
    /// simply computed again).
    NeedManifest,
    /// The observations contradict the protocol (a bug or lost state):
    /// propose nothing, report it to an operator.
    Stuck(&'static str),
}

/// The next step of a migration in progress. See the crate docs for the
/// protocol; the order is ImportStart → Freeze → chunks → HandOff →
/// ImportCommit → Flip → Drop → Done, or, on an abort before the hand-off,
/// Abort (source) → ImportAbort → Done.
pub fn next_step(obs: &Observation<'_>) -> Next {
    let m = &obs.record.migration;
    match obs.record.status {
        Status::Flipped => match (obs.source, obs.target) {
            (GroupView::HandedOff, GroupView::Finished(Outcome::Completed)) => {
                Next::Group(GroupStep::Drop(m.clone()))
            }
            (GroupView::Finished(Outcome::Completed), GroupView::Finished(Outcome::Completed)) => {
                Next::System(SystemStep::Done(m.id, Outcome::Completed))
            }
            _ => Next::Stuck("flipped, but the groups have not both completed the hand-off"),
        },
        Status::Active { abort_requested } => active(obs, abort_requested),
    }
}

fn active(obs: &Observation<'_>, abort_requested: bool) -> Next {
    let m = &obs.record.migration;
    match obs.source {
        // Past the point of no return: only forward.
        GroupView::HandedOff => match obs.target {
            GroupView::Importing(received) => match obs.manifest {
                Some(expected) if received == expected => {
                    Next::Group(GroupStep::ImportCommit(m.clone(), expected))
                }
                // The hand-off followed a complete copy; if the copy now
                // differs, the source's frozen data changed. The target
                // would refuse the commit; say so instead of looping.
                Some(_) => Next::Stuck("handed off, but the copy differs from the source"),
                None => Next::NeedManifest,
            },
            GroupView::Finished(Outcome::Completed) => Next::System(SystemStep::Flip(m.id)),
            _ => Next::Stuck("source handed off, target neither importing nor committed"),
        },
        GroupView::Finished(Outcome::Aborted) => match obs.target {
            GroupView::NotStarted | GroupView::Importing(_) => {
                Next::Group(GroupStep::ImportAbort(m.clone()))
            }
            GroupView::Finished(Outcome::Aborted) if abort_requested => {
                Next::System(SystemStep::Done(m.id, Outcome::Aborted))
            }
            _ => Next::Stuck("source aborted, target committed or abort not recorded"),
        },
        GroupView::NotStarted | GroupView::Frozen if abort_requested => {
            Next::Group(GroupStep::Abort(m.clone()))
        }
        GroupView::NotStarted => match obs.target {
            GroupView::NotStarted => Next::Group(GroupStep::ImportStart(m.clone())),
            GroupView::Importing(_) => Next::Group(GroupStep::Freeze(m.clone())),
            _ => Next::Stuck("source not started, target finished"),
        },
        GroupView::Frozen => match (obs.target, obs.manifest) {
            (GroupView::Importing(_), None) => Next::NeedManifest,
            (GroupView::Importing(received), Some(expected)) => copy(obs, received, expected),
            _ => Next::Stuck("source frozen, target not importing"),
        },
        GroupView::Finished(Outcome::Completed) => Next::Stuck("source dropped before the flip"),
        GroupView::Superseded => Next::Stuck("source has moved on to a later migration"),
        GroupView::Importing(_) => Next::Stuck("source is importing its own migration"),
    }
}

/// Source frozen, target importing: send the next chunk, hand off once
/// the target has exactly the source's copy, abort if it cannot have.
fn copy(obs: &Observation<'_>, received: Manifest, expected: Manifest) -> Next {
    let m = &obs.record.migration;
    if received == expected {
        return Next::Group(GroupStep::HandOff(m.clone()));
    }
    if received.chunks < expected.chunks {
        return Next::SendChunk {
            seq: received.chunks,
        };
    }
    // Every chunk arrived and the copy still differs: the frozen data
    // changed, or a chunk was cut differently. Nothing was handed off, so
    // abandon the migration rather than move a wrong copy.
    Next::System(SystemStep::Abort(m.id))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::slots::SlotRanges;
    use crate::step::Migration;

    fn record(status: Status) -> SystemMigration {
        SystemMigration {
            migration: Migration {
                id: 4,
                slots: SlotRanges::single(1).unwrap(),
                source: 1,
                target: 2,
            },
            status,
        }
    }

    fn next(
        status: Status,
        source: GroupView,
        target: GroupView,
        manifest: Option<Manifest>,
    ) -> Next {
        next_step(&Observation {
            record: &record(status),
            source,
            target,
            manifest,
        })
    }

    #[test]
    fn an_abort_after_the_hand_off_goes_forward() {
        let aborting = Status::Active {
            abort_requested: true,
        };
        let manifest = Manifest::default();
        assert!(matches!(
            next(
                aborting,
                GroupView::HandedOff,
                GroupView::Importing(manifest),
                Some(manifest)
            ),
            Next::Group(GroupStep::ImportCommit(..))
        ));
        assert!(matches!(
            next(
                aborting,
                GroupView::Frozen,
                GroupView::Importing(manifest),
                Some(manifest)
            ),
            Next::Group(GroupStep::Abort(_))
        ));
    }

    #[test]
    fn a_wrong_copy_is_abandoned_before_the_hand_off() {
        let active = Status::Active {
            abort_requested: false,
        };
        let expected = Manifest {
            chunks: 2,
            entries: 5,
            digest: 7,
        };
        let partial = Manifest {
            chunks: 1,
            entries: 3,
            digest: 1,
        };
        assert_eq!(
            next(
                active,
                GroupView::Frozen,
                GroupView::Importing(partial),
                Some(expected)
            ),
            Next::SendChunk { seq: 1 }
        );
        let wrong = Manifest {
            digest: 8,
            ..expected
        };
        assert_eq!(
            next(
                active,
                GroupView::Frozen,
                GroupView::Importing(wrong),
                Some(expected)
            ),
            Next::System(SystemStep::Abort(4))
        );
        assert_eq!(
            next(active, GroupView::Frozen, GroupView::Importing(wrong), None),
            Next::NeedManifest
        );
    }

    /// Every combination of record and views: the coordinator proposes a
    /// step only when what it waits for has been observed (the crate
    /// docs' list), and never both abandons and completes.
    #[test]
    fn every_proposal_waits_for_what_makes_it_safe() {
        let expected = Manifest {
            chunks: 2,
            entries: 3,
            digest: 4,
        };
        let partial = Manifest {
            chunks: 1,
            entries: 1,
            digest: 1,
        };
        let wrong = Manifest {
            digest: 5,
            ..expected
        };
        let views = [
            GroupView::NotStarted,
            GroupView::Frozen,
            GroupView::HandedOff,
            GroupView::Importing(Manifest::default()),
            GroupView::Importing(partial),
            GroupView::Importing(expected),
            GroupView::Importing(wrong),
            GroupView::Finished(Outcome::Completed),
            GroupView::Finished(Outcome::Aborted),
            GroupView::Superseded,
        ];
        let statuses = [
            Status::Active {
                abort_requested: false,
            },
            Status::Active {
                abort_requested: true,
            },
            Status::Flipped,
        ];
        let mut proposals = 0;
        for status in statuses {
            for source in views {
                for target in views {
                    for manifest in [None, Some(expected)] {
                        let next = next(status, source, target, manifest);
                        let ok = match &next {
                            Next::Group(GroupStep::ImportStart(_)) => {
                                source == GroupView::NotStarted && target == GroupView::NotStarted
                            }
                            Next::Group(GroupStep::Freeze(_)) => {
                                matches!(target, GroupView::Importing(_))
                            }
                            Next::SendChunk { .. } => source == GroupView::Frozen,
                            Next::Group(GroupStep::HandOff(_)) => {
                                source == GroupView::Frozen
                                    && target == GroupView::Importing(expected)
                                    && manifest == Some(expected)
                            }
                            Next::Group(GroupStep::ImportCommit(_, m)) => {
                                source == GroupView::HandedOff && target == GroupView::Importing(*m)
                            }
                            Next::System(SystemStep::Flip(_)) => {
                                source == GroupView::HandedOff
                                    && target == GroupView::Finished(Outcome::Completed)
                            }
                            Next::Group(GroupStep::Drop(_)) => status == Status::Flipped,
                            Next::Group(GroupStep::Abort(_)) => {
                                matches!(source, GroupView::NotStarted | GroupView::Frozen)
                                    && status
                                        == Status::Active {
                                            abort_requested: true,
                                        }
                            }
                            Next::Group(GroupStep::ImportAbort(_)) => {
                                source == GroupView::Finished(Outcome::Aborted)
                            }
                            Next::System(SystemStep::Abort(_)) => source == GroupView::Frozen,
                            Next::System(SystemStep::Done(_, Outcome::Completed)) => {
                                status == Status::Flipped
                                    && source == GroupView::Finished(Outcome::Completed)
                                    && target == GroupView::Finished(Outcome::Completed)
                            }
                            Next::System(SystemStep::Done(_, Outcome::Aborted)) => {
                                source == GroupView::Finished(Outcome::Aborted)
                                    && target == GroupView::Finished(Outcome::Aborted)
                            }
                            Next::NeedManifest => manifest.is_none(),
                            Next::Stuck(_) => true,
                            // Chunks go through SendChunk; records come from operators.
                            Next::Group(GroupStep::ImportChunk(..))
                            | Next::System(SystemStep::Record { .. }) => false,
                        };
                        assert!(
                            ok,
                            "{status:?} {source:?} {target:?} {manifest:?} → {next:?}"
                        );
                        if !matches!(next, Next::Stuck(_) | Next::NeedManifest) {
                            proposals += 1;
                        }
                    }
                }
            }
        }
        assert!(proposals > 0);
    }
}
