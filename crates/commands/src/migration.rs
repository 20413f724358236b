//! Resharding in the log: applying [`seshat_migration`]'s steps to a
//! group's replicated state, checking slot ownership at apply, and reading
//! a frozen source's slots for the copy.
//!
//! - A data group keeps its [`SlotTable`] as its system record
//!   [`TABLE_RECORD`] (inside the group's range, outside every slot: the
//!   snapshot, the replica digest and a restart carry it, `FLUSHALL`
//!   spares it). A group that never took part in a migration has none
//!   and serves every slot it is sent, as before.
//! - [`seshat_kv::Write::Migration`] applies a [`GroupStep`]: the table
//!   changes and its [`Effect`] on the data happen in one apply batch.
//!   A chunk's entries are written with what is derived from them (the
//!   key count, the expiry index) rebuilt; dropped slots leave no record
//!   and no expiry entry behind.
//! - [`seshat_kv::SystemWrite::Step`] applies a [`SystemStep`] to the
//!   system group's [`SystemTable`] (the [`SLOTS_RECORD`]).
//! - Every write checks, at apply, that its keys' slots are served here
//!   ([`refuse_write`]): a write proposed before a freeze and committed
//!   after it is refused alike on every replica with [`tryagain`].
//! - [`cut_chunk`] and [`manifest`] read a frozen source (on its leader,
//!   after a read barrier) exactly as [`copy::chunks`] cuts it, in bounded
//!   pages.
//!
//! Everything here is deterministic and total: a step that does not
//! decode, belongs to another group or is refused by the table changes
//! nothing and gets an error reply; only a storage failure (or corrupt
//! stored data) is an [`ApplyError`](crate::ApplyError).

use std::sync::Arc;

use bytes::Bytes;
use seshat_common::crc16_slot;
use seshat_kv::keys::{self, SYSTEM_GROUP};
use seshat_kv::{Keyspace, KvError, RawKv, Record};
use seshat_migration::copy::{self, ChunkLimits, CopyError};
use seshat_migration::{
    Access, Applied, Chunk, ChunkEntry, Decision, Effect, GroupStep, Manifest, SlotRanges,
    SlotTable, SystemApplied, SystemStep, SystemTable,
};
use seshat_protocol_resp::Frame;

use crate::system::SLOTS_RECORD;
use crate::table::resolve;

/// Name of a data group's system record holding its [`SlotTable`]
/// ([`SlotTable::encode`]).
pub const TABLE_RECORD: &[u8] = b"slot-table";

/// The error code of a write refused because its slot is moving (the
/// first word of [`tryagain`]'s reply; Redis Cluster's code, which
/// cluster clients retry on).
pub const TRYAGAIN_PREFIX: &str = "TRYAGAIN";

/// Records read per step when walking a frozen source's slots.
const COPY_PAGE_RECORDS: usize = 256;

/// The reply to a write this group does not serve now: `slot` is moving
/// between shards (`None`: a keyless write, such as `FLUSHALL`, while a
/// migration is in progress). Definite: the write was not executed.
pub fn tryagain(slot: Option<u16>) -> Frame {
    match slot {
        Some(slot) => Frame::error(format!(
            "{TRYAGAIN_PREFIX} slot {slot} is moving between shards; retry"
        )),
        None => Frame::error(format!(
            "{TRYAGAIN_PREFIX} a slot migration is in progress on this shard; retry"
        )),
    }
}

/// The group's stored slot table, `None` if it never took part in a
/// migration. A record that does not decode is [`KvError::Corrupt`].
pub fn load_table<K: RawKv + ?Sized>(
    db: &mut Keyspace<'_, K>,
) -> Result<Option<SlotTable>, KvError> {
    db.system_record(TABLE_RECORD)?
        .map(|raw| {
            SlotTable::decode(&raw).map_err(|e| KvError::Corrupt(format!("stored slot table: {e}")))
        })
        .transpose()
}

/// The system group's stored [`SystemTable`] (`None` in a data group or
/// before the bootstrap). A record that does not decode is
/// [`KvError::Corrupt`].
pub fn load_system_table<K: RawKv + ?Sized>(
    db: &mut Keyspace<'_, K>,
) -> Result<Option<SystemTable>, KvError> {
    if db.group() != SYSTEM_GROUP {
        return Ok(None);
    }
    db.system_record(SLOTS_RECORD)?
        .map(|raw| {
            SystemTable::decode(&raw)
                .map_err(|e| KvError::Corrupt(format!("stored system table: {e}")))
        })
        .transpose()
}

/// The reply that refuses the write `argv` at apply because `table` does
/// not let this group serve one of its keys' slots (or, for a keyless
/// write, because a migration is in progress); `None` when it may run.
/// Without a table (a group that never took part in a migration) every
/// write runs. A command that does not resolve is left to the caller.
pub fn refuse_write(table: Option<&SlotTable>, argv: &[Bytes]) -> Option<Frame> {
    let table = table?;
    let decl = resolve(argv).ok()?;
    let mut keys = decl.key_args(argv).peekable();
    if keys.peek().is_none() {
        return table.current().is_some().then(|| tryagain(None));
    }
    keys.map(|key| crc16_slot(key))
        .find(|&slot| !serves(table, slot))
        .map(|slot| tryagain(Some(slot)))
}

/// Whether `table` (if any) lets this group write `key`: what an expiry
/// deletion checks.
pub fn serves_key(table: Option<&SlotTable>, key: &[u8]) -> bool {
    table.is_none_or(|t| serves(t, crc16_slot(key)))
}

fn serves(table: &SlotTable, slot: u16) -> bool {
    table.decide(slot, Access::Write, false) == Decision::Serve
}

/// Applies a [`GroupStep`] from the group's log (`step`, with the
/// group's `initial` table for its first step ever) to `table` and to the
/// data in `db`, in the caller's batch. Replies `+CHANGED`, `+IGNORED`, or
/// an error (and nothing changes) for a step that does not decode,
/// belongs to another group, or that the table refuses.
pub(crate) fn apply_step<K: RawKv + ?Sized>(
    db: &mut Keyspace<'_, K>,
    table: &mut Option<Arc<SlotTable>>,
    step: &[u8],
    initial: &[u8],
) -> Result<Frame, KvError> {
    let group = db.group();
    let step = match GroupStep::decode(step) {
        Ok(step) => step,
        Err(e) => return Ok(unreadable(e)),
    };
    if step.group() != group {
        return Ok(refused(format!(
            "step for group {} applied in group {group}",
            step.group()
        )));
    }
    if let GroupStep::ImportChunk(_, chunk) = &step {
        if let Err(why) = check_entries(chunk) {
            return Ok(unreadable(why));
        }
    }
    let mut next = match table.as_deref() {
        Some(t) => t.clone(),
        None => match SlotTable::decode(initial) {
            Ok(t) if t.group() == group => t,
            Ok(t) => {
                return Ok(refused(format!(
                    "initial table of group {} applied in group {group}",
                    t.group()
                )))
            }
            Err(e) => return Ok(unreadable(format!("initial table: {e}"))),
        },
    };
    let effect = match next.apply(&step) {
        Ok(Applied::Changed(effect)) => effect,
        Ok(Applied::Ignored) => return Ok(Frame::simple("IGNORED")),
        Err(refusal) => return Ok(refused(refusal)),
    };
    match (effect, &step) {
        (Effect::None, _) => {}
        (Effect::WriteChunk, GroupStep::ImportChunk(_, chunk)) => {
            for entry in &chunk.entries {
                db.import_record(&entry.key, &entry.value)?;
            }
        }
        (Effect::WriteChunk, _) => {
            return Err(KvError::Corrupt(format!(
                "slot table asked to write a chunk for {}",
                step.name()
            )))
        }
        (Effect::DeleteSlots(slots), _) => {
            for range in slots.ranges() {
                db.delete_slots(range.start, range.end)?;
            }
        }
    }
    db.put_system_record(TABLE_RECORD, &next.encode())?;
    *table = Some(Arc::new(next));
    Ok(Frame::simple("CHANGED"))
}

/// Checks every entry of a chunk before anything is applied: its key is
/// a data record of its slot ([`keys::parse_slot_record`]) and a
/// metadata record decodes, so a bad chunk is refused whole.
fn check_entries(chunk: &Chunk) -> Result<(), String> {
    for (i, entry) in chunk.entries.iter().enumerate() {
        let bad = |why: &str| format!("chunk {} entry {i}: {why}", chunk.seq);
        let parsed = keys::parse_slot_record(&entry.key).ok_or_else(|| bad("malformed key"))?;
        if parsed.slot != entry.slot {
            return Err(bad("key outside its slot"));
        }
        if parsed.meta {
            Record::decode(Bytes::copy_from_slice(&entry.value))
                .map_err(|e| bad(&e.to_string()))?;
        }
    }
    Ok(())
}

fn unreadable(why: impl std::fmt::Display) -> Frame {
    Frame::error(format!("ERR unreadable migration step: {why}"))
}

fn refused(why: impl std::fmt::Display) -> Frame {
    Frame::error(format!("ERR migration step refused: {why}"))
}

/// Applies a [`SystemStep`] to the system group's stored table. Replies
/// `:id` for a recorded migration, `+CHANGED`, `+IGNORED`, or an error
/// (and nothing changes). The caller has checked that this is the system
/// group.
pub(crate) fn apply_system_step<K: RawKv + ?Sized>(
    db: &mut Keyspace<'_, K>,
    step: &[u8],
) -> Result<Frame, KvError> {
    let step = match SystemStep::decode(step) {
        Ok(step) => step,
        Err(e) => return Ok(Frame::error(format!("ERR unreadable system step: {e}"))),
    };
    let Some(mut table) = load_system_table(db)? else {
        return Ok(Frame::error(
            "ERR system step refused: the cluster has no system table yet (not bootstrapped)",
        ));
    };
    let reply = match table.apply(&step) {
        Ok(SystemApplied::Recorded(id)) => Frame::Integer(i64::try_from(id).unwrap_or(i64::MAX)),
        Ok(SystemApplied::Changed) => Frame::simple("CHANGED"),
        Ok(SystemApplied::Ignored) => return Ok(Frame::simple("IGNORED")),
        Err(refusal) => return Ok(Frame::error(format!("ERR system step refused: {refusal}"))),
    };
    db.put_system_record(SLOTS_RECORD, &table.encode())?;
    Ok(reply)
}

/// Why a frozen source's slots could not be read for the copy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CopyReadError {
    /// The store failed or holds a malformed key.
    #[error(transparent)]
    Kv(#[from] KvError),
    /// An entry is larger than a chunk may be.
    #[error(transparent)]
    Copy(#[from] CopyError),
}

/// Chunk `seq` of the copy of `slots` from `group`'s data in `kv` (a
/// frozen source's replica that has applied the freeze), exactly as
/// [`copy::chunks`] with [`ChunkLimits::max`] cuts every record under
/// `group | slot` of those slots in storage order (keys without the
/// group prefix), with the full storage key of its last entry; `None`
/// when `seq` is past the end.
///
/// `resume = Some((seq - 1, last key of chunk seq - 1))` starts right
/// after that key instead of cutting again from the start: the same
/// chunk, since frozen data does not change (a `resume` that is not for
/// `seq - 1`, or whose key is outside the slots, is ignored). Reads in
/// pages of a few hundred records, never a whole slot range at once.
pub fn cut_chunk(
    kv: &mut dyn RawKv,
    group: u32,
    slots: &SlotRanges,
    seq: u64,
    resume: Option<(u64, &[u8])>,
) -> Result<Option<(Chunk, Vec<u8>)>, CopyReadError> {
    let start = resume
        .filter(|(prev, _)| prev.checked_add(1) == Some(seq))
        .and_then(|(_, key)| key_in(group, slots, key).then(|| after(key)));
    let (skip, from) = match start {
        Some(from) => (0, Some(from)),
        None => (seq, None),
    };
    let mut entries = Entries::new(kv, group, slots, from);
    let mut cut = Ok(None);
    for chunk in copy::chunks(entries.by_ref(), ChunkLimits::max()) {
        match chunk {
            Ok(chunk) if chunk.seq == skip => {
                cut = Ok(Some(chunk));
                break;
            }
            Ok(_) => {}
            Err(e) => {
                cut = Err(e);
                break;
            }
        }
    }
    // A storage error first: it ended the entries early, so whatever was
    // cut is short.
    entries.finish()?;
    let Some(mut chunk) = cut? else {
        return Ok(None);
    };
    chunk.seq = seq;
    let last = chunk.entries.last().map(|e| full_key(group, &e.key));
    Ok(last.map(|last| (chunk, last)))
}

/// The manifest of the whole copy of `slots` from `group`'s data in
/// `kv`: what [`cut_chunk`]'s chunks add up to ([`Manifest::add`] over
/// each), and what [`copy::manifest`] gives for no entries when the
/// slots are empty.
pub fn manifest(
    kv: &mut dyn RawKv,
    group: u32,
    slots: &SlotRanges,
) -> Result<Manifest, CopyReadError> {
    let mut entries = Entries::new(kv, group, slots, None);
    let manifest = copy::manifest(entries.by_ref(), ChunkLimits::max());
    entries.finish()?;
    Ok(manifest?)
}

/// Whether the storage key `key` is a record of one of `slots` in
/// `group`.
fn key_in(group: u32, slots: &SlotRanges, key: &[u8]) -> bool {
    let Some((g, rest)) = key.split_first_chunk::<4>() else {
        return false;
    };
    let Some((slot, _)) = rest.split_first_chunk::<2>() else {
        return false;
    };
    u32::from_be_bytes(*g) == group && slots.contains(u16::from_be_bytes(*slot))
}

fn full_key(group: u32, key: &[u8]) -> Vec<u8> {
    let mut k = group.to_be_bytes().to_vec();
    k.extend_from_slice(key);
    k
}

/// The smallest key after `key`.
fn after(key: &[u8]) -> Vec<u8> {
    let mut k = key.to_vec();
    k.push(0);
    k
}

/// The records of a group's slots in storage order, as chunk entries,
/// read a page at a time. [`copy::chunks`] takes plain entries, so a
/// storage error ends the walk and is kept for [`Entries::finish`].
struct Entries<'a> {
    kv: &'a mut dyn RawKv,
    group: u32,
    /// The ranges not started yet, as storage bounds, last first.
    ranges: Vec<(Vec<u8>, Vec<u8>)>,
    /// Where the current range continues, and its end.
    current: Option<(Vec<u8>, Vec<u8>)>,
    page: std::vec::IntoIter<(Bytes, Bytes)>,
    error: Option<KvError>,
}

impl<'a> Entries<'a> {
    /// The walk over `slots`, from the storage key `from` if given
    /// (ranges wholly before it are skipped).
    fn new(kv: &'a mut dyn RawKv, group: u32, slots: &SlotRanges, from: Option<Vec<u8>>) -> Self {
        let mut ranges: Vec<(Vec<u8>, Vec<u8>)> = slots
            .ranges()
            .iter()
            .map(|r| keys::slots_between(group, r.start, r.end))
            .filter(|(_, end)| from.as_ref().is_none_or(|f| f < end))
            .rev()
            .collect();
        if let (Some(from), Some((start, _))) = (from, ranges.last_mut()) {
            if *start < from {
                *start = from;
            }
        }
        Self {
            kv,
            group,
            ranges,
            current: None,
            page: Vec::new().into_iter(),
            error: None,
        }
    }

    /// The storage error that ended the walk, if one did.
    fn finish(self) -> Result<(), KvError> {
        self.error.map_or(Ok(()), Err)
    }

    /// Reads the next page; false when every range is done.
    fn refill(&mut self) -> Result<bool, KvError> {
        loop {
            let Some((from, end)) = self.current.take().or_else(|| self.ranges.pop()) else {
                return Ok(false);
            };
            let rows = self.kv.scan(&from, &end, COPY_PAGE_RECORDS)?;
            if rows.len() == COPY_PAGE_RECORDS {
                if let Some((last, _)) = rows.last() {
                    self.current = Some((after(last), end));
                }
            }
            if !rows.is_empty() {
                self.page = rows.into_iter();
                return Ok(true);
            }
        }
    }

    fn entry(&self, raw: &[u8], value: Bytes) -> Result<ChunkEntry, KvError> {
        let malformed = || KvError::Corrupt("malformed data key in a copied slot".into());
        let (g, rest) = raw.split_first_chunk::<4>().ok_or_else(malformed)?;
        let (slot, _) = rest.split_first_chunk::<2>().ok_or_else(malformed)?;
        if u32::from_be_bytes(*g) != self.group {
            return Err(malformed());
        }
        Ok(ChunkEntry {
            slot: u16::from_be_bytes(*slot),
            key: rest.to_vec(),
            value: value.to_vec(),
        })
    }
}

impl Iterator for Entries<'_> {
    type Item = ChunkEntry;

    fn next(&mut self) -> Option<ChunkEntry> {
        if self.error.is_some() {
            return None;
        }
        loop {
            if let Some((raw, value)) = self.page.next() {
                return match self.entry(&raw, value) {
                    Ok(entry) => Some(entry),
                    Err(e) => {
                        self.error = Some(e);
                        None
                    }
                };
            }
            match self.refill() {
                Ok(true) => {}
                Ok(false) => return None,
                Err(e) => {
                    self.error = Some(e);
                    return None;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
