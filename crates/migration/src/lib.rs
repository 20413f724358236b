//! Seshat's resharding core: moving hash slots from one data group to
//! another, as pure state machines with no I/O, no Raft and no storage.
//!
//! Three pieces, each a value changed only by entries of a Raft log, so
//! every replica computes the same thing:
//!
//! - [`SystemTable`] — the system group's slot map, its version and the
//!   record of each migration in progress ([`SystemStep`]s);
//! - [`SlotTable`] — one data group's view of its slots and of the
//!   migration it takes part in ([`GroupStep`]s), which also decides what
//!   a client's command on a slot gets ([`SlotTable::decide`]);
//! - [`next_step`] — the coordinator: from the system record and what the
//!   two groups have applied, the next step to propose. It keeps no
//!   state, so the task running it on the system group's leader resumes
//!   after any crash from the records alone.
//!
//! [`copy`] cuts the source's frozen data into bounded chunks and keeps
//! the manifest (counts and an order-independent digest) that the target
//! checks before it serves.
//!
//! # The protocol
//!
//! Migration M moves slots S from group A to group B. Its id is allocated
//! by the system group when it records M, increasing and never reused.
//!
//! | # | log    | step                 | effect                                                   |
//! |---|--------|----------------------|----------------------------------------------------------|
//! | 1 | system | `Record(S, A→B)`     | M exists, `Active`; refused unless A owns S, the slot map is at the version the request saw, and neither A nor B is in another migration |
//! | 2 | B      | `ImportStart(M)`     | S `Importing` in B: hidden; leftovers of S deleted       |
//! | 3 | A      | `Freeze(M)`          | S `Frozen` in A: writes refused, reads served            |
//! | 4 | B      | `ImportChunk(M,seq)` | entries written; chunk `seq` taken only after `seq − 1`, a repeat ignored |
//! | 5 | A      | `HandOff(M)`         | S `HandedOff` in A: the commit point                     |
//! | 6 | B      | `ImportCommit(M,m)`  | B owns S, if what it received is exactly manifest m      |
//! | 7 | system | `Flip(M)`            | the slot map gives S to B; its version increases         |
//! | 8 | A      | `Drop(M)`            | A forgets S and deletes its entries                      |
//! | 9 | system | `Done(M, Completed)` | M finished                                               |
//!
//! Abort, allowed until the hand-off: system `Abort(M)` records the wish;
//! then A `Abort(M)` (S `Owned` again in A — or, if A never froze, a
//! record that M is over so a late `Freeze(M)` is ignored), B
//! `ImportAbort(M)` (copied entries deleted), system `Done(M, Aborted)`.
//! A's log is the arbiter between `HandOff(M)` and `Abort(M)`: whichever
//! A applies first wins, the other is refused, and the coordinator
//! follows what A did — so an abort asked for too late is simply not
//! honoured, and the migration completes.
//!
//! # What clients see
//!
//! | between steps | S in A    | S in B    | a command sent to A             | to B without `ASKING` | to B with `ASKING` |
//! |---------------|-----------|-----------|---------------------------------|-----------------------|--------------------|
//! | 1–2           | Owned     | NotOwned  | served                          | `MOVED A`             | `MOVED A`          |
//! | 2–3           | Owned     | Importing | served                          | `MOVED A`             | `TRYAGAIN`         |
//! | 3–5           | Frozen    | Importing | reads served, writes `TRYAGAIN` | `MOVED A`             | `TRYAGAIN`         |
//! | 5–6           | HandedOff | Importing | `ASK B`                         | `MOVED A`             | `TRYAGAIN`         |
//! | 6–8           | HandedOff | Owned     | `ASK B`                         | served                | served             |
//! | after 8       | NotOwned  | Owned     | `MOVED B`                       | served                | served             |
//!
//! Routing reads the system group's slot map first (so after the flip a
//! client is sent straight to B); the table's decision is checked again at
//! apply on every replica, so a write proposed before a freeze and
//! committed after it is refused alike everywhere. Between `HandOff` and
//! `ImportCommit` (two consecutive proposals) nobody serves S: B answers
//! an `ASKING` command `TRYAGAIN` until it has committed, because before
//! the commit it cannot tell a finished copy from a partial one, and a
//! client write there could be overwritten by a chunk.
//!
//! # What the coordinator waits for
//!
//! Each proposal waits for an observation that, once true, stays true:
//!
//! - `Freeze` once B is importing (so the freeze lasts only the copy);
//! - chunk `seq` once A is frozen (the copy is A's frozen data) and B has
//!   taken `seq − 1`;
//! - `HandOff` once B's received manifest equals A's (the copy is whole);
//! - `ImportCommit` once A has handed off;
//! - `Flip` once B has committed; `Drop` once the system group flipped;
//! - `ImportAbort` once A has aborted — never before: a `HandOff` still in
//!   flight could win in A's log, and then nobody would serve S;
//! - `Done` once both groups have finished.
//!
//! If A has handed off but its data no longer matches what B received
//! (its frozen data changed: a bug), the coordinator returns
//! [`Next::Stuck`] rather than propose a commit B would refuse.
//!
//! # Why each step is safe
//!
//! - **One server per slot.** A serves S until `HandOff` (reads only
//!   after `Freeze`); B serves S only after `ImportCommit`, which the
//!   coordinator proposes only once it has seen A handed off. A never
//!   serves S again after `HandOff` (it can no longer abort), so A and B
//!   never serve S at the same time.
//! - **No write lost.** A refuses writes from `Freeze` on; the copy is
//!   taken from A's data after the freeze, so it holds every write A
//!   acknowledged. `HandOff` is proposed only once B has received exactly
//!   the copy (its manifest equals the source's), and `ImportCommit`
//!   checks that again at apply.
//! - **No key resurrected.** A chunk applies only while B is importing:
//!   after the commit or an abort a late chunk is ignored, so it cannot
//!   overwrite a newer write or bring back a deleted key. `Drop`,
//!   `ImportAbort` and `ImportStart` delete whatever a group holds of
//!   slots it does not serve.
//! - **Source data kept until the flip.** `Drop` is proposed only after
//!   the system group applied `Flip`; until then A still holds S (if B's
//!   replicas all lost their data before the flip, an operator could still
//!   recover it from A).
//! - **Stale and repeated steps.** Every group step carries its migration
//!   whole; a group applies one migration at a time and remembers the
//!   last one it finished, so a step of an older or finished migration is
//!   ignored, a repeated step changes nothing, and a step that needs an
//!   earlier one first is refused. System steps are idempotent the same
//!   way. A step decided from an old observation is therefore harmless.
//! - **Crashes.** Each step is one log entry; the coordinator recomputes
//!   from the records, and the copy is fixed from the freeze on, so chunk
//!   `seq` is the same chunk whoever cuts it. The tables have versioned
//!   stored forms ([`SlotTable::encode`], [`SystemTable::encode`]) that
//!   a state machine writes in the same batch as the step's [`Effect`].
//!
//! # What the caller must do
//!
//! - Check [`SlotTable::decide`] at serve time, and again at apply for
//!   every write (expiry deletions and keyless writes such as `FLUSHALL`
//!   too); check a read after its ReadIndex barrier, against a state that
//!   has applied at least the read index, so a read that starts after the
//!   hand-off committed is answered `ASK`.
//! - Perform each step's [`Effect`] atomically with storing the table.
//! - Cut chunks from a source replica that has applied the freeze, in
//!   storage order, with [`copy::chunks`]; keep the system group one
//!   migration per group at a time (the tables refuse a second one).
//!
//! # Limits
//!
//! [`MAX_SLOT_RANGES`] ranges and [`MAX_SLOTS_PER_MIGRATION`] slots per
//! migration, [`MAX_CHUNK_ENTRIES`] entries and [`MAX_CHUNK_BYTES`] bytes
//! per chunk (checked when decoding and again at apply),
//! [`MAX_ACTIVE_MIGRATIONS`] in progress, [`MAX_FINISHED_KEPT`] outcomes
//! remembered. Decoding never panics: every length is checked
//! before anything is allocated.
//!
//! # Example
//!
//! ```
//! use seshat_migration::{
//!     next_step, GroupStep, Next, Observation, SlotMap, SlotRanges, SlotTable, SystemStep,
//!     SystemTable, SystemApplied,
//! };
//!
//! let map = SlotMap::even(&[1, 2])?;
//! let mut system = SystemTable::new(map.clone());
//! let (mut a, mut b) = (SlotTable::new(1, map.clone()), SlotTable::new(2, map));
//! let record = SystemStep::Record {
//!     slots: SlotRanges::new([(0, 99)])?,
//!     source: 1,
//!     target: 2,
//!     map_version: system.map_version(),
//! };
//! let Ok(SystemApplied::Recorded(id)) = system.apply(&record) else { unreachable!() };
//! // No data in the slots: the copy is empty.
//! let manifest = seshat_migration::copy::manifest([], seshat_migration::ChunkLimits::max())?;
//! while let Some(r) = system.migration(id).cloned() {
//!     let obs = Observation { record: &r, source: a.view(id), target: b.view(id), manifest: Some(manifest) };
//!     match next_step(&obs) {
//!         Next::System(step) => { system.apply(&step)?; }
//!         Next::Group(step) if step.group() == 1 => { a.apply(&step)?; }
//!         Next::Group(step) => { b.apply(&step)?; }
//!         other => panic!("unexpected {other:?}"),
//!     }
//! }
//! assert_eq!(system.map().owner(42), Some(2));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod codec;
mod coordinator;
pub mod copy;
mod slots;
mod step;
mod system;
mod table;

pub use codec::DecodeError;
pub use coordinator::{next_step, Next, Observation};
pub use copy::{ChunkLimits, CopyError};
pub use slots::{SlotError, SlotMap, SlotRange, SlotRanges};
pub use step::{
    Chunk, ChunkEntry, GroupStep, Manifest, Migration, Outcome, Side, SystemStep,
    ENTRY_FRAMING_BYTES, STEP_VERSION,
};
pub use system::{
    Status, SystemApplied, SystemMigration, SystemRefusal, SystemTable, SYSTEM_TABLE_VERSION,
};
pub use table::{
    Access, Applied, Decision, Effect, GroupView, Refusal, SlotState, SlotTable, SLOT_TABLE_VERSION,
};

/// A data group's id (the same numbering as the binary's layout; the
/// system group, 0, never owns slots).
pub type GroupId = u32;

/// A migration's id, allocated by the system group: increasing, never
/// reused, 0 never allocated.
pub type MigrationId = u64;

/// Most ranges in one migration's set of slots (after merging adjacent
/// ones): bounds every step's size.
pub const MAX_SLOT_RANGES: usize = 256;

/// Most slots one migration moves (a quarter of the key space): moving
/// more is several migrations, so no freeze covers too much at once.
pub const MAX_SLOTS_PER_MIGRATION: usize = 4096;

/// Most entries in one `ImportChunk`.
pub const MAX_CHUNK_ENTRIES: usize = 4096;

/// Most bytes (keys, values and [`ENTRY_FRAMING_BYTES`] each) in one
/// `ImportChunk`: well under tonic's 4 MiB message limit, and above the
/// largest entry a group accepts (a 1 MiB value and a 64 KiB key).
pub const MAX_CHUNK_BYTES: usize = 2 * 1024 * 1024;

/// Most migrations in progress at once in the cluster.
pub const MAX_ACTIVE_MIGRATIONS: usize = 64;

/// How many finished migrations the system group remembers the outcome of.
pub const MAX_FINISHED_KEPT: usize = 64;

const _: () = assert!(
    MAX_CHUNK_BYTES
        >= seshat_common::MAX_VALUE_BYTES_CEILING
            + seshat_common::MAX_KEY_BYTES_CEILING
            + seshat_common::KEY_FRAMING_BYTES
            + ENTRY_FRAMING_BYTES,
    "the largest entry a group accepts must fit in one chunk"
);
const _: () = assert!(MAX_SLOT_RANGES <= u16::MAX as usize);
const _: () = assert!(MAX_SLOT_RANGES <= MAX_SLOTS_PER_MIGRATION);
const _: () = assert!(MAX_SLOTS_PER_MIGRATION <= seshat_common::CLUSTER_SLOTS as usize);
const _: () = assert!(MAX_CHUNK_ENTRIES <= u32::MAX as usize);
