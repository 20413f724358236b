//! A group's keys over a [`RawKv`]: typed records, expiry, modification
//! indexes, the key count, scans. Commands see the data only through this.

use bytes::Bytes;
use seshat_common::CLUSTER_SLOTS;

use crate::keys::{self, MetaKey};
use crate::record::{Kind, Record};
use crate::user::UserRecord;
use crate::{KvError, RawKv};

/// Raw records read per step of a scan.
const SCAN_STEP_RECORDS: usize = 256;
/// Most records a `RANDOMKEY` looks at before giving up on a keyspace
/// full of expired keys.
const RANDOM_KEY_MAX_RECORDS: usize = 1024;

/// How many keys a group stores, and how many of them have an expiry
/// (both include expired keys not yet removed, as Redis counts them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Keys.
    pub keys: u64,
    /// Keys with an expiry.
    pub expiring: u64,
}

/// One group's keys as of one point in time (`now_ms`), optionally being
/// changed by the log entry at `mod_index`.
pub struct Keyspace<'a, K: RawKv + ?Sized> {
    kv: &'a mut K,
    group: u32,
    now_ms: u64,
    mod_index: u64,
    counts: Counts,
}

impl<'a, K: RawKv + ?Sized> Keyspace<'a, K> {
    /// The keyspace of `group` in `kv`, at time `now_ms`; writes stamp keys
    /// with `mod_index`; `counts` are the group's counts before them.
    pub fn new(kv: &'a mut K, group: u32, now_ms: u64, mod_index: u64, counts: Counts) -> Self {
        Self {
            kv,
            group,
            now_ms,
            mod_index,
            counts,
        }
    }

    /// The time keys are judged expired against.
    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    /// The number of keys (including expired ones not yet removed).
    pub fn key_count(&self) -> u64 {
        self.counts.keys
    }

    /// The key counts after the changes made so far.
    pub fn counts(&self) -> Counts {
        self.counts
    }

    /// The log index writes are stamped with.
    pub fn mod_index(&self) -> u64 {
        self.mod_index
    }

    fn raw_record(&mut self, meta_key: &[u8]) -> Result<Option<Record>, KvError> {
        self.kv.get(meta_key)?.map(Record::decode).transpose()
    }

    /// The live record of `key` (`None` if absent or expired).
    pub fn get(&mut self, key: &[u8]) -> Result<Option<Record>, KvError> {
        let now = self.now_ms;
        let mk = keys::meta_key(self.group, key);
        Ok(self.raw_record(&mk)?.filter(|r| !r.is_expired(now)))
    }

    /// Writes `record` for `key` as a new value: a composite value it
    /// replaces loses its elements. Stamped with this keyspace's
    /// `mod_index`; the expiry index and the counts follow.
    pub fn put(&mut self, key: &[u8], record: Record) -> Result<(), KvError> {
        let mk = keys::meta_key(self.group, key);
        let old = self.raw_record(&mk)?;
        if old.as_ref().is_some_and(|o| o.kind != Kind::String) {
            self.clear_elements(key)?;
        }
        self.write_meta(key, mk, old.as_ref(), record)
    }

    /// Writes new metadata for the live key `key` (a composite value's
    /// size, say, or an expiry), keeping its elements.
    pub fn update(&mut self, key: &[u8], record: Record) -> Result<(), KvError> {
        let mk = keys::meta_key(self.group, key);
        let old = self.raw_record(&mk)?;
        self.write_meta(key, mk, old.as_ref(), record)
    }

    fn write_meta(
        &mut self,
        key: &[u8],
        mk: Vec<u8>,
        old: Option<&Record>,
        mut record: Record,
    ) -> Result<(), KvError> {
        self.index_change(key, old, record.expire_at_ms)?;
        record.mod_index = self.mod_index;
        self.kv.put(mk, record.encode())
    }

    /// Keeps the key count and the expiry index in step with `key`'s
    /// metadata record changing from `old` to one expiring at
    /// `expire_at_ms` (0: none).
    fn index_change(
        &mut self,
        key: &[u8],
        old: Option<&Record>,
        expire_at_ms: u64,
    ) -> Result<(), KvError> {
        let old_expiry = match old {
            None => {
                self.counts.keys = self.counts.keys.saturating_add(1);
                0
            }
            Some(old) => old.expire_at_ms,
        };
        if old_expiry != expire_at_ms {
            if old_expiry != 0 {
                self.kv
                    .delete(keys::expiry_key(self.group, old_expiry, key))?;
                self.counts.expiring = self.counts.expiring.saturating_sub(1);
            }
            if expire_at_ms != 0 {
                self.kv
                    .put(keys::expiry_key(self.group, expire_at_ms, key), Vec::new())?;
                self.counts.expiring = self.counts.expiring.saturating_add(1);
            }
        }
        Ok(())
    }

    /// Writes a record copied from another group's slot (a migration
    /// chunk's entry): `key` is its storage key without the group prefix
    /// (`slot | tag | …`, see [`keys::parse_slot_record`]), `value` is
    /// stored as it is, except that a metadata record's modification index
    /// becomes this write's (an index of this group's log, as `WATCH`
    /// compares them). What this group derives from a metadata record
    /// follows, as if the key had been written here: the key count and
    /// the expiry index. A key that
    /// does not parse, or metadata that does not decode, is
    /// [`KvError::Corrupt`] (the caller checks a chunk before applying it).
    pub fn import_record(&mut self, key: &[u8], value: &[u8]) -> Result<(), KvError> {
        let parsed = keys::parse_slot_record(key)
            .ok_or_else(|| KvError::Corrupt("imported record with a malformed key".into()))?;
        let mut full = self.group.to_be_bytes().to_vec();
        full.extend_from_slice(key);
        if parsed.meta {
            let mut record = Record::decode(Bytes::copy_from_slice(value))?;
            let old = self.raw_record(&full)?;
            self.index_change(parsed.key, old.as_ref(), record.expire_at_ms)?;
            // Modification indexes are this group's log indexes: the
            // source's would be compared with this log's by `WATCH`.
            record.mod_index = self.mod_index;
            return self.kv.put(full, record.encode());
        }
        self.kv.put(full, value.to_vec())
    }

    /// Removes every record of the slots `first..=last` (metadata,
    /// elements, scores: one range delete), after walking their metadata
    /// records in bounded pages to take their keys out of the expiry index
    /// and the counts. What a migration's `Drop` (and a target's abort)
    /// does.
    pub fn delete_slots(&mut self, first: u16, last: u16) -> Result<(), KvError> {
        let (start, end) = keys::slots_between(self.group, first, last);
        let mut from = start.clone();
        loop {
            let rows = self.kv.scan(&from, &end, SCAN_STEP_RECORDS)?;
            let full = rows.len() == SCAN_STEP_RECORDS;
            let mut jump = None;
            for (raw, value) in &rows {
                if let Some(mk) = keys::parse_meta_key(self.group, raw) {
                    let record = Record::decode(value.clone())?;
                    self.forget(mk.key, &record)?;
                    continue;
                }
                // Metadata sorts first in a slot: the rest of this slot
                // is elements. Jump to the next slot.
                let slot = raw
                    .get(4..6)
                    .and_then(|s| <[u8; 2]>::try_from(s).ok())
                    .map(u16::from_be_bytes)
                    .ok_or_else(|| KvError::Corrupt("short data key".into()))?;
                jump = Some(keys::slot_start(self.group, slot.saturating_add(1)));
                break;
            }
            // Each step moves forward: past an element's slot, or past
            // the last row of a full page.
            from = match (jump, full, rows.last()) {
                (Some(next), _, _) => next,
                (None, true, Some((last, _))) => after(last),
                _ => break,
            };
        }
        self.kv.delete_range(start, end)
    }

    /// Takes `key`, whose metadata record is `record`, out of the expiry
    /// index and the counts (its records are deleted by the caller).
    fn forget(&mut self, key: &[u8], record: &Record) -> Result<(), KvError> {
        if record.expire_at_ms != 0 {
            self.kv
                .delete(keys::expiry_key(self.group, record.expire_at_ms, key))?;
            self.counts.expiring = self.counts.expiring.saturating_sub(1);
        }
        self.counts.keys = self.counts.keys.saturating_sub(1);
        Ok(())
    }

    /// Removes `key`; true if it existed and had not expired.
    pub fn delete(&mut self, key: &[u8]) -> Result<bool, KvError> {
        let mk = keys::meta_key(self.group, key);
        let Some(old) = self.raw_record(&mk)? else {
            return Ok(false);
        };
        if old.expire_at_ms != 0 {
            self.kv
                .delete(keys::expiry_key(self.group, old.expire_at_ms, key))?;
            self.counts.expiring = self.counts.expiring.saturating_sub(1);
        }
        if old.kind != Kind::String {
            self.clear_elements(key)?;
        }
        self.kv.delete(mk)?;
        self.counts.keys = self.counts.keys.saturating_sub(1);
        Ok(!old.is_expired(self.now_ms))
    }

    /// Removes every element (sub-key and score record) of `key`: two
    /// range deletes, whatever the size.
    fn clear_elements(&mut self, key: &[u8]) -> Result<(), KvError> {
        for prefix in [
            keys::subkey_prefix(self.group, key),
            keys::score_prefix(self.group, key),
        ] {
            let end = end_of(&prefix)?;
            self.kv.delete_range(prefix, end)?;
        }
        Ok(())
    }

    /// The value of `key`'s element `field`.
    pub fn element(&mut self, key: &[u8], field: &[u8]) -> Result<Option<Bytes>, KvError> {
        self.kv.get(&keys::subkey(self.group, key, field))
    }

    /// Sets `key`'s element `field` (the caller keeps the size in the
    /// metadata record).
    pub fn put_element(&mut self, key: &[u8], field: &[u8], value: &[u8]) -> Result<(), KvError> {
        self.kv
            .put(keys::subkey(self.group, key, field), value.to_vec())
    }

    /// Removes `key`'s element `field`.
    pub fn delete_element(&mut self, key: &[u8], field: &[u8]) -> Result<(), KvError> {
        self.kv.delete(keys::subkey(self.group, key, field))
    }

    /// Removes `key`'s elements with `from <= field < to`: one range
    /// delete, whatever their number (the caller keeps the size).
    pub fn delete_elements(&mut self, key: &[u8], from: &[u8], to: &[u8]) -> Result<(), KvError> {
        self.kv.delete_range(
            keys::subkey(self.group, key, from),
            keys::subkey(self.group, key, to),
        )
    }

    /// Up to `limit` of `key`'s elements with `from <= field < to` (`None`:
    /// unbounded), as (field, value), ascending or (`rev`) descending.
    pub fn elements(
        &mut self,
        key: &[u8],
        from: Option<&[u8]>,
        to: Option<&[u8]>,
        limit: usize,
        rev: bool,
    ) -> Result<Vec<(Bytes, Bytes)>, KvError> {
        let prefix = keys::subkey_prefix(self.group, key);
        self.range_below(&prefix, from, to, limit, rev)
    }

    /// Adds `member` with `score` to `key`'s score index.
    pub fn put_score(&mut self, key: &[u8], score: f64, member: &[u8]) -> Result<(), KvError> {
        self.kv
            .put(keys::score_key(self.group, key, score, member), Vec::new())
    }

    /// Removes `member` with `score` from `key`'s score index.
    pub fn delete_score(&mut self, key: &[u8], score: f64, member: &[u8]) -> Result<(), KvError> {
        self.kv
            .delete(keys::score_key(self.group, key, score, member))
    }

    /// Up to `limit` (score, member) pairs of `key`'s score index from
    /// position `from` (inclusive) to `to` (exclusive), each a (score,
    /// member) position (`None`: unbounded; a member of `b""` is the first
    /// at that score), ascending or (`rev`) descending.
    pub fn scores(
        &mut self,
        key: &[u8],
        from: Option<(f64, &[u8])>,
        to: Option<(f64, &[u8])>,
        limit: usize,
        rev: bool,
    ) -> Result<Vec<(f64, Bytes)>, KvError> {
        let prefix = keys::score_prefix(self.group, key);
        let pos = |p: (f64, &[u8])| {
            let mut v = keys::encode_score(p.0).to_vec();
            v.extend_from_slice(p.1);
            v
        };
        let (from, to) = (from.map(pos), to.map(pos));
        let rows = self.range_below(&prefix, from.as_deref(), to.as_deref(), limit, rev)?;
        rows.into_iter()
            .map(|(rest, _)| {
                let (score, member) = rest
                    .split_first_chunk::<8>()
                    .ok_or_else(|| KvError::Corrupt("short score index record".into()))?;
                let _ = member;
                Ok((keys::decode_score(*score), rest.slice(8..)))
            })
            .collect()
    }

    /// Copies every element (and score record) of `src` to `dst`, which
    /// has none (it was just put as a new value).
    pub fn copy_elements(&mut self, src: &[u8], dst: &[u8]) -> Result<(), KvError> {
        for (src_prefix, dst_prefix) in [
            (
                keys::subkey_prefix(self.group, src),
                keys::subkey_prefix(self.group, dst),
            ),
            (
                keys::score_prefix(self.group, src),
                keys::score_prefix(self.group, dst),
            ),
        ] {
            let end = end_of(&src_prefix)?;
            let mut from = src_prefix.clone();
            loop {
                let rows = self.kv.scan(&from, &end, SCAN_STEP_RECORDS)?;
                let full = rows.len() == SCAN_STEP_RECORDS;
                for (k, v) in &rows {
                    let rest = k.get(src_prefix.len()..).unwrap_or_default();
                    let mut to = dst_prefix.clone();
                    to.extend_from_slice(rest);
                    self.kv.put(to, v.to_vec())?;
                }
                match (full, rows.last()) {
                    (true, Some((last, _))) => from = after(last),
                    _ => break,
                }
            }
        }
        Ok(())
    }

    /// Rows under `prefix` between the suffixes `from` (inclusive) and `to`
    /// (exclusive), with the prefix stripped from the keys.
    fn range_below(
        &mut self,
        prefix: &[u8],
        from: Option<&[u8]>,
        to: Option<&[u8]>,
        limit: usize,
        rev: bool,
    ) -> Result<Vec<(Bytes, Bytes)>, KvError> {
        let bound = |suffix: &[u8]| {
            let mut k = prefix.to_vec();
            k.extend_from_slice(suffix);
            k
        };
        let start = from.map_or_else(|| prefix.to_vec(), bound);
        let end = match to {
            Some(t) => bound(t),
            None => end_of(prefix)?,
        };
        let rows = if rev {
            self.kv.scan_rev(&start, &end, limit)?
        } else {
            self.kv.scan(&start, &end, limit)?
        };
        Ok(rows
            .into_iter()
            .map(|(k, v)| (k.slice(prefix.len().min(k.len())..), v))
            .collect())
    }

    /// Removes `key` if it has expired by now; true if it was removed.
    pub fn remove_if_expired(&mut self, key: &[u8]) -> Result<bool, KvError> {
        let mk = keys::meta_key(self.group, key);
        match self.raw_record(&mk)? {
            Some(r) if r.is_expired(self.now_ms) => self.delete(key).map(|_| true),
            _ => Ok(false),
        }
    }

    /// Removes every key of the group (its ACL users stay, as in Redis).
    pub fn clear(&mut self) -> Result<(), KvError> {
        for (start, end) in keys::flushable_ranges(self.group) {
            self.kv.delete_range(start, end)?;
        }
        self.counts = Counts::default();
        Ok(())
    }

    /// The group this keyspace is of.
    pub fn group(&self) -> u32 {
        self.group
    }

    /// The group's system record `name` (the system group's cluster
    /// metadata).
    pub fn system_record(&mut self, name: &[u8]) -> Result<Option<Bytes>, KvError> {
        self.kv.get(&keys::system_key(self.group, name))
    }

    /// Writes the group's system record `name`.
    pub fn put_system_record(&mut self, name: &[u8], value: &[u8]) -> Result<(), KvError> {
        self.kv
            .put(keys::system_key(self.group, name), value.to_vec())
    }

    /// ACL user `name`'s record.
    pub fn user(&mut self, name: &[u8]) -> Result<Option<UserRecord>, KvError> {
        self.kv
            .get(&keys::user_key(self.group, name))?
            .map(UserRecord::decode)
            .transpose()
    }

    /// Writes ACL user `name`'s record.
    pub fn put_user(&mut self, name: &[u8], record: &UserRecord) -> Result<(), KvError> {
        self.kv
            .put(keys::user_key(self.group, name), record.encode())
    }

    /// Removes ACL user `name`; true if it existed.
    pub fn delete_user(&mut self, name: &[u8]) -> Result<bool, KvError> {
        let key = keys::user_key(self.group, name);
        let existed = self.kv.get(&key)?.is_some();
        if existed {
            self.kv.delete(key)?;
        }
        Ok(existed)
    }

    /// Up to `limit` ACL users, by name.
    pub fn users(&mut self, limit: usize) -> Result<Vec<(Bytes, UserRecord)>, KvError> {
        users_in(self.kv, self.group, limit)
    }

    /// Removes every ACL user.
    pub fn clear_users(&mut self) -> Result<(), KvError> {
        let (start, end) = keys::users_range(self.group);
        self.kv.delete_range(start, end)
    }

    /// Up to `limit` keys whose expiry is due by now, oldest first.
    pub fn due_keys(&mut self, limit: usize) -> Result<Vec<Bytes>, KvError> {
        let start = keys::expiry_start(self.group);
        let end = keys::expiry_due_end(self.group, self.now_ms);
        let mut out = Vec::new();
        for (raw, _) in self.kv.scan(&start, &end, limit)? {
            let (_, key) = keys::parse_expiry_key(self.group, &raw)
                .ok_or_else(|| KvError::Corrupt("malformed expiry index key".into()))?;
            out.push(Bytes::copy_from_slice(key));
        }
        Ok(out)
    }

    /// One step of a `SCAN`: examines about `count` keys from `cursor` on
    /// and returns the live ones `keep` accepts, with the cursor to resume
    /// from (0 when the scan is complete). Keys with one in-slot hash are
    /// always examined together, so a resumed scan never loops.
    pub fn scan(
        &mut self,
        cursor: u64,
        count: usize,
        mut keep: impl FnMut(&[u8], &Record) -> bool,
    ) -> Result<(u64, Vec<Bytes>), KvError> {
        let mut out = Vec::new();
        let Some((slot, hash)) = split_cursor(cursor) else {
            return Ok((0, out));
        };
        let mut examined = 0usize;
        let mut last: Option<(u16, u32)> = None;
        let mut walk = MetaWalk::new(self.group, slot, hash);
        while let Some((raw, value)) = walk.next(self.kv)? {
            let mk = parse_meta(self.group, &raw)?;
            let here = (mk.slot, mk.hash);
            if examined >= count.max(1) && last != Some(here) {
                return Ok((join_cursor(mk.slot, mk.hash), out));
            }
            examined += 1;
            last = Some(here);
            let record = Record::decode(value)?;
            if !record.is_expired(self.now_ms) && keep(mk.key, &record) {
                out.push(Bytes::copy_from_slice(mk.key));
            }
        }
        Ok((0, out))
    }

    /// The first live key at or after position `seed` (wrapping around),
    /// or `None` if there is none among the first records looked at.
    pub fn random_key(&mut self, seed: u64) -> Result<Option<Bytes>, KvError> {
        let slot = u16::try_from((seed >> 32) % u64::from(CLUSTER_SLOTS)).unwrap_or(0);
        let hash = seed as u32;
        let mut looked = 0usize;
        for (from_slot, from_hash) in [(slot, hash), (0, 0)] {
            let mut walk = MetaWalk::new(self.group, from_slot, from_hash);
            while let Some((raw, value)) = walk.next(self.kv)? {
                looked += 1;
                if looked > RANDOM_KEY_MAX_RECORDS {
                    return Ok(None);
                }
                let mk = parse_meta(self.group, &raw)?;
                if !Record::decode(value)?.is_expired(self.now_ms) {
                    return Ok(Some(Bytes::copy_from_slice(mk.key)));
                }
            }
        }
        Ok(None)
    }
}

/// Up to `limit` ACL users of `group` in `kv`, by name.
pub fn users_in<K: RawKv + ?Sized>(
    kv: &mut K,
    group: u32,
    limit: usize,
) -> Result<Vec<(Bytes, UserRecord)>, KvError> {
    let (start, end) = keys::users_range(group);
    let mut out = Vec::new();
    for (raw, value) in kv.scan(&start, &end, limit)? {
        let name = keys::parse_user_key(group, &raw)
            .ok_or_else(|| KvError::Corrupt("malformed ACL user key".into()))?;
        out.push((Bytes::copy_from_slice(name), UserRecord::decode(value)?));
    }
    Ok(out)
}

fn parse_meta(group: u32, raw: &[u8]) -> Result<MetaKey<'_>, KvError> {
    keys::parse_meta_key(group, raw)
        .ok_or_else(|| KvError::Corrupt("malformed metadata key".into()))
}

/// The (slot, hash) position a `SCAN` cursor names; `None` past the end.
fn split_cursor(cursor: u64) -> Option<(u16, u32)> {
    let slot = u16::try_from(cursor >> 32).ok()?;
    (slot < CLUSTER_SLOTS).then_some((slot, cursor as u32))
}

fn join_cursor(slot: u16, hash: u32) -> u64 {
    (u64::from(slot) << 32) | u64::from(hash)
}

/// Walks a group's metadata records in order from a position, skipping
/// each slot's sub-key records.
struct MetaWalk {
    group: u32,
    next_from: Option<Vec<u8>>,
    slot: u16,
    buffered: std::vec::IntoIter<(Bytes, Bytes)>,
}

impl MetaWalk {
    fn new(group: u32, slot: u16, hash: u32) -> Self {
        Self {
            group,
            next_from: Some(keys::meta_position(group, slot, hash)),
            slot,
            buffered: Vec::new().into_iter(),
        }
    }

    fn next<K: RawKv + ?Sized>(&mut self, kv: &mut K) -> Result<Option<(Bytes, Bytes)>, KvError> {
        loop {
            if let Some(item) = self.buffered.next() {
                return Ok(Some(item));
            }
            let Some(from) = self.next_from.take() else {
                return Ok(None);
            };
            // Read the rest of the current slot's metadata.
            let end = keys::meta_slot_end(self.group, self.slot);
            let batch = kv.scan(&from, &end, SCAN_STEP_RECORDS)?;
            if batch.len() == SCAN_STEP_RECORDS {
                self.next_from = batch.last().map(|(k, _)| after(k));
            } else {
                // This slot is done; find the next slot with any record.
                self.next_from = self.next_slot_start(kv)?;
            }
            self.buffered = batch.into_iter();
        }
    }

    /// The metadata start of the next slot after `self.slot` that has any
    /// record, found with one seek.
    fn next_slot_start<K: RawKv + ?Sized>(
        &mut self,
        kv: &mut K,
    ) -> Result<Option<Vec<u8>>, KvError> {
        let Some(next) = self.slot.checked_add(1).filter(|s| *s < CLUSTER_SLOTS) else {
            return Ok(None);
        };
        let from = keys::meta_position(self.group, next, 0);
        let (_, end) = keys::slots_range(self.group);
        let Some((raw, _)) = kv.scan(&from[..6], &end, 1)?.into_iter().next() else {
            return Ok(None);
        };
        let slot = raw
            .get(4..6)
            .and_then(|s| <[u8; 2]>::try_from(s).ok())
            .map(u16::from_be_bytes)
            .ok_or_else(|| KvError::Corrupt("short data key".into()))?;
        self.slot = slot;
        Ok(Some(keys::meta_position(self.group, slot, 0)))
    }
}

/// The end of the range of keys starting with `prefix`.
fn end_of(prefix: &[u8]) -> Result<Vec<u8>, KvError> {
    keys::prefix_end(prefix).ok_or_else(|| KvError::Corrupt("unbounded element prefix".into()))
}

/// The smallest key after `key`.
fn after(key: &[u8]) -> Vec<u8> {
    let mut k = key.to_vec();
    k.push(0);
    k
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::keys::DATA_GROUP;
    use crate::MemKv;
    use proptest::prelude::*;

    fn ks(kv: &mut MemKv, now: u64) -> Keyspace<'_, MemKv> {
        let count = |pred: fn(&[u8]) -> bool| kv.map.keys().filter(|k| pred(k)).count() as u64;
        let counts = Counts {
            keys: count(|k| keys::parse_meta_key(DATA_GROUP, k).is_some()),
            expiring: count(|k| keys::parse_expiry_key(DATA_GROUP, k).is_some()),
        };
        Keyspace::new(kv, DATA_GROUP, now, 7, counts)
    }

    #[test]
    fn expiry_hides_keys_and_the_index_follows_the_record() {
        let mut kv = MemKv::default();
        let mut s = ks(&mut kv, 100);
        let mut r = Record::string(Bytes::from_static(b"v"));
        r.expire_at_ms = 150;
        s.put(b"k", r.clone()).unwrap();
        assert_eq!(s.get(b"k").unwrap().unwrap().mod_index, 7);
        assert!(s.due_keys(10).unwrap().is_empty());
        assert_eq!(
            s.counts(),
            Counts {
                keys: 1,
                expiring: 1
            }
        );
        let mut later = ks(&mut kv, 150);
        assert_eq!(later.get(b"k").unwrap(), None);
        assert_eq!(later.due_keys(10).unwrap(), vec![Bytes::from_static(b"k")]);
        // Overwriting without expiry removes the index entry.
        later
            .put(b"k", Record::string(Bytes::from_static(b"w")))
            .unwrap();
        assert!(later.due_keys(10).unwrap().is_empty());
        assert_eq!(later.key_count(), 1);
        assert!(later.delete(b"k").unwrap());
        assert_eq!(later.key_count(), 0);
        assert!(kv.map.is_empty());
    }

    #[test]
    fn deleting_an_expired_key_reports_absent() {
        let mut kv = MemKv::default();
        let mut r = Record::string(Bytes::from_static(b"v"));
        r.expire_at_ms = 10;
        ks(&mut kv, 0).put(b"k", r).unwrap();
        let mut s = ks(&mut kv, 20);
        assert!(s.remove_if_expired(b"k").unwrap());
        assert!(!s.delete(b"k").unwrap());
        assert!(kv.map.is_empty());
    }

    proptest! {
        /// Every key present for the whole scan is returned, whatever COUNT,
        /// and a scan always ends.
        #[test]
        fn scan_returns_every_key(names in prop::collection::btree_set("[a-z]{0,6}", 0..200), count in 1usize..50) {
            let mut kv = MemKv::default();
            let mut s = ks(&mut kv, 0);
            for n in &names {
                s.put(n.as_bytes(), Record::string(Bytes::new())).unwrap();
            }
            let mut seen = std::collections::BTreeSet::new();
            let mut cursor = 0;
            let mut steps = 0;
            loop {
                let (next, keys) = s.scan(cursor, count, |_, _| true).unwrap();
                seen.extend(keys.into_iter().map(|k| String::from_utf8(k.to_vec()).unwrap()));
                steps += 1;
                prop_assert!(steps <= names.len() + 2);
                if next == 0 { break; }
                cursor = next;
            }
            prop_assert_eq!(seen, names);
        }
    }

    #[test]
    fn composite_values_lose_their_elements_when_replaced_or_deleted() {
        let mut kv = MemKv::default();
        let mut s = ks(&mut kv, 0);
        s.put(b"h", Record::composite(Kind::Hash, 2, 0, 0)).unwrap();
        s.put_element(b"h", b"f1", b"v1").unwrap();
        s.put_element(b"h", b"f2", b"v2").unwrap();
        s.put(b"hh", Record::composite(Kind::Hash, 1, 0, 0))
            .unwrap();
        s.put_element(b"hh", b"f1", b"other").unwrap();
        let all = s.elements(b"h", None, None, 10, false).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(
            s.elements(b"h", Some(b"f2"), None, 10, false)
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            s.elements(b"h", None, None, 10, true).unwrap()[0].0,
            Bytes::from_static(b"f2")
        );
        // Copy, then replace the original by a string: its elements go.
        s.put(b"c", Record::composite(Kind::Hash, 2, 0, 0)).unwrap();
        s.copy_elements(b"h", b"c").unwrap();
        s.put(b"h", Record::string(Bytes::from_static(b"x")))
            .unwrap();
        assert_eq!(s.element(b"h", b"f1").unwrap(), None);
        assert_eq!(
            s.element(b"c", b"f1").unwrap(),
            Some(Bytes::from_static(b"v1"))
        );
        assert_eq!(
            s.element(b"hh", b"f1").unwrap(),
            Some(Bytes::from_static(b"other"))
        );
        assert!(s.delete(b"c").unwrap());
        assert!(s.delete(b"hh").unwrap());
        assert!(s.delete(b"h").unwrap());
        assert!(kv.map.is_empty(), "{:?}", kv.map);
    }

    #[test]
    fn scores_come_back_in_numeric_order_both_ways() {
        let mut kv = MemKv::default();
        let mut s = ks(&mut kv, 0);
        s.put(b"z", Record::composite(Kind::ZSet, 4, 0, 0)).unwrap();
        for (score, m) in [(2.0, "b"), (-1.5, "a"), (2.0, "c"), (10.0, "d")] {
            s.put_score(b"z", score, m.as_bytes()).unwrap();
        }
        let up: Vec<(f64, Bytes)> = s.scores(b"z", None, None, 10, false).unwrap();
        let names: Vec<&[u8]> = up.iter().map(|(_, m)| m.as_ref()).collect();
        assert_eq!(names, vec![&b"a"[..], b"b", b"c", b"d"]);
        assert_eq!(up[0].0, -1.5);
        let mid = s
            .scores(b"z", Some((2.0, b"")), Some((10.0, b"")), 10, true)
            .unwrap();
        assert_eq!(
            mid,
            vec![
                (2.0, Bytes::from_static(b"c")),
                (2.0, Bytes::from_static(b"b"))
            ]
        );
        s.delete_score(b"z", 2.0, b"b").unwrap();
        assert_eq!(s.scores(b"z", None, None, 10, false).unwrap().len(), 3);
    }

    #[test]
    fn random_key_finds_a_live_key() {
        let mut kv = MemKv::default();
        let mut s = ks(&mut kv, 0);
        assert_eq!(s.random_key(12345).unwrap(), None);
        s.put(b"a", Record::string(Bytes::new())).unwrap();
        for seed in [0, 1 << 40, u64::MAX] {
            assert_eq!(s.random_key(seed).unwrap(), Some(Bytes::from_static(b"a")));
        }
    }
}
