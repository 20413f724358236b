//! An in-memory copy of recently used records of one column family, so a
//! point read is a hash lookup instead of a RocksDB memtable (skiplist) or
//! block search.
//!
//! The cache is never a source of truth: every entry is exactly what
//! RocksDB holds for its key (a value, or `None` for "absent"), and every
//! [`Store::write`](crate::Store::write) that changes a cached key updates
//! the entry after the write reaches RocksDB. Only keys the owner calls
//! cacheable are kept (Seshat: the metadata records of user keys), and a
//! range delete clears the cached keys it may cover.
//!
//! Readers may run on other threads than writers. Two counters per key
//! group (the first four bytes of the key: Seshat's Raft group) make a
//! lookup safe without holding a lock across the RocksDB read:
//! `begun` goes up before a write of that group reaches RocksDB, `ended`
//! after the cache was updated (writers of one group hold its lock from
//! before `begun` to after `ended`, so the cache takes their effects in
//! RocksDB's order). A reader notes `begun` when it starts,
//! and only if no write of the group is in progress (`begun == ended`):
//!
//! - a cached entry is used only if `begun` is still the noted value after
//!   the lookup: no write began since, so the entry is what RocksDB held
//!   when the reader started (and what a RocksDB snapshot taken after the
//!   note holds);
//! - a value read from RocksDB is inserted only if, under the entry's
//!   shard lock, `begun` is still the noted value: a write that begins
//!   later updates the entry under the same lock, after the insert.
//!
//! Memory is bounded: each shard holds at most its share of the byte
//! budget (keys, values and a fixed overhead per entry; a record larger
//! than a sixteenth of the share is not kept); beyond, about an eighth of
//! the shard's entries are dropped, picked by their position in the table,
//! until it fits.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use bytes::Bytes;

/// Shards of the table (each its own lock).
const SHARDS: usize = 16;
/// Counter pairs for key groups (a key's group picks one by its id).
pub(crate) const GROUP_SLOTS: usize = 64;
/// Largest entry kept, as a share of a shard's budget (1/16).
const LARGEST_ENTRY_SHARE: usize = 16;
/// Bytes charged per entry beyond its key and value: the table slot,
/// the boxed key's and the value's headers.
pub const ENTRY_OVERHEAD_BYTES: usize = 64;

/// Which keys the cache holds, and which range deletes can touch them.
#[derive(Debug, Clone, Copy)]
pub struct KeyCacheRules {
    /// Whether `key` is one the cache keeps.
    pub cacheable: fn(&[u8]) -> bool,
    /// Whether `[from, to)` may hold a cacheable key (if not, a range
    /// delete of it leaves the cache alone).
    pub range_may_hold: fn(&[u8], &[u8]) -> bool,
}

/// Counters of one key group's writes.
#[derive(Default)]
struct GroupClock {
    begun: AtomicU64,
    ended: AtomicU64,
    /// Held from before a write reaches RocksDB until the cache has its
    /// effect: two writers of one group (none today: a group has one
    /// state machine) update the cache in RocksDB's order.
    writer: Mutex<()>,
}

/// A write in progress (see [`KeyCache::begin_write`]); dropping it ends
/// the write.
pub struct WriteGuard<'a> {
    cache: &'a KeyCache,
    slots: Vec<usize>,
    _held: Vec<std::sync::MutexGuard<'a, ()>>,
}

impl Drop for WriteGuard<'_> {
    fn drop(&mut self) {
        for &slot in &self.slots {
            self.cache.clocks[slot].ended.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// The tables' hash: fast on short keys, seeded per process (keys are
/// chosen by clients).
type Hash = foldhash::fast::RandomState;

#[derive(Default)]
struct Shard {
    map: HashMap<Box<[u8]>, Option<Bytes>, Hash>,
    bytes: usize,
    hits: u64,
    misses: u64,
    /// Which eighth of the entries the next eviction drops.
    evict_round: usize,
}

/// What a reader noted when it started (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadMark {
    slot: usize,
    begun: u64,
}

impl ReadMark {
    /// The counter slot of the key group the mark was taken for.
    pub fn group_slot(self) -> usize {
        self.slot
    }
}

/// Figures for INFO.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeyCacheStats {
    /// Entries held.
    pub entries: u64,
    /// Bytes charged for them.
    pub bytes: u64,
    /// The budget.
    pub max_bytes: u64,
    /// Lookups answered from the cache.
    pub hits: u64,
    /// Lookups that went to RocksDB.
    pub misses: u64,
}

/// The cache of one column family.
pub struct KeyCache {
    rules: KeyCacheRules,
    shards: Vec<Mutex<Shard>>,
    /// Picks a key's shard.
    hash: Hash,
    clocks: Vec<GroupClock>,
    shard_budget: usize,
    max_bytes: usize,
}

impl KeyCache {
    /// A cache of at most `max_bytes`.
    pub fn new(max_bytes: usize, rules: KeyCacheRules) -> Self {
        Self {
            rules,
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hash: Hash::default(),
            clocks: (0..GROUP_SLOTS).map(|_| GroupClock::default()).collect(),
            shard_budget: max_bytes / SHARDS,
            max_bytes,
        }
    }

    /// Whether the cache keeps `key`.
    pub fn cacheable(&self, key: &[u8]) -> bool {
        (self.rules.cacheable)(key)
    }

    /// The counter slot of `key`'s group (its first four bytes).
    pub fn group_slot(key: &[u8]) -> usize {
        let group = key
            .get(..4)
            .and_then(|g| <[u8; 4]>::try_from(g).ok())
            .map_or(0, u32::from_be_bytes);
        group as usize % GROUP_SLOTS
    }

    fn shard(&self, key: &[u8]) -> std::sync::MutexGuard<'_, Shard> {
        let i = (self.hash.hash_one(key) >> 32) as usize % SHARDS;
        match self.shards[i].lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Notes the start of a read of `key`'s group; `None` while a write of
    /// that group is in progress (the read then bypasses the cache).
    pub fn mark(&self, key: &[u8]) -> Option<ReadMark> {
        let slot = Self::group_slot(key);
        let clock = &self.clocks[slot];
        let begun = clock.begun.load(Ordering::SeqCst);
        (clock.ended.load(Ordering::SeqCst) == begun).then_some(ReadMark { slot, begun })
    }

    fn unchanged(&self, mark: ReadMark) -> bool {
        self.clocks[mark.slot].begun.load(Ordering::SeqCst) == mark.begun
    }

    /// The cached record of `key` (`Some(None)`: known absent), if it is
    /// cached and no write of its group began since `mark`.
    pub fn lookup(&self, key: &[u8], mark: ReadMark) -> Option<Option<Bytes>> {
        let mut shard = self.shard(key);
        let found = shard.map.get(key).cloned().filter(|_| self.unchanged(mark));
        if found.is_some() {
            shard.hits += 1;
        } else {
            shard.misses += 1;
        }
        found
    }

    /// The record of `key`: the cached one if no write of its group began
    /// since `mark`, else what `read` (a RocksDB read made after `mark`)
    /// returns, which is then kept on the same condition.
    pub fn read_through<E>(
        &self,
        key: &[u8],
        mark: ReadMark,
        read: impl FnOnce() -> Result<Option<Bytes>, E>,
    ) -> Result<Option<Bytes>, E> {
        if let Some(found) = self.lookup(key, mark) {
            return Ok(found);
        }
        let value = read()?;
        self.fill(key, value.clone(), mark);
        Ok(value)
    }

    /// Keeps `value`, read from RocksDB after `mark`, unless a write of
    /// the key's group began since.
    pub fn fill(&self, key: &[u8], value: Option<Bytes>, mark: ReadMark) {
        if !self.cacheable(key) {
            return;
        }
        let mut shard = self.shard(key);
        if !self.unchanged(mark) {
            return;
        }
        self.put_locked(&mut shard, key.into(), value);
    }

    fn put_locked(&self, shard: &mut Shard, key: Box<[u8]>, value: Option<Bytes>) {
        let cost = key.len() + value.as_ref().map_or(0, Bytes::len) + ENTRY_OVERHEAD_BYTES;
        // Large records are not kept: a shard then always holds enough
        // entries for an eviction pass to bring it under its budget.
        if cost > self.shard_budget / LARGEST_ENTRY_SHARE {
            if let Some(old) = shard.map.remove(&key) {
                shard.bytes -= charge(&key, &old);
            }
            return;
        }
        if let Some(old) = shard.map.insert(key.clone(), value) {
            shard.bytes -= charge(&key, &old);
        }
        shard.bytes += cost;
        while shard.bytes > self.shard_budget && !shard.map.is_empty() {
            Self::evict(shard);
        }
    }

    /// Drops about an eighth of the shard's entries (at least one).
    fn evict(shard: &mut Shard) {
        let round = shard.evict_round;
        shard.evict_round = (round + 1) % 8;
        let mut i = 0usize;
        let mut freed = 0usize;
        shard.map.retain(|k, v| {
            i += 1;
            let keep = i % 8 != round;
            if !keep {
                freed += charge(k, v);
            }
            keep
        });
        if freed == 0 {
            let first = shard.map.keys().next().cloned();
            if let Some(k) = first {
                if let Some(v) = shard.map.remove(&k) {
                    freed += charge(&k, &v);
                }
            }
        }
        shard.bytes -= freed;
    }

    /// A write of the keys of the groups in counter slots `slots` is
    /// about to reach RocksDB: the cache must have its effect before the
    /// returned guard is dropped. Writers of the same groups wait for
    /// each other.
    pub fn begin_write(&self, slots: &[usize]) -> WriteGuard<'_> {
        let mut slots = slots.to_vec();
        // One order for every writer: no two wait for each other's locks.
        slots.sort_unstable();
        slots.dedup();
        let held = slots
            .iter()
            .map(|&slot| {
                let guard = match self.clocks[slot].writer.lock() {
                    Ok(g) => g,
                    Err(p) => p.into_inner(),
                };
                self.clocks[slot].begun.fetch_add(1, Ordering::SeqCst);
                guard
            })
            .collect();
        WriteGuard {
            cache: self,
            slots,
            _held: held,
        }
    }

    /// After a write reached RocksDB: `key` now holds `value`.
    pub fn written(&self, key: Vec<u8>, value: Option<Bytes>) {
        if !self.cacheable(&key) {
            return;
        }
        let mut shard = self.shard(&key);
        self.put_locked(&mut shard, key.into_boxed_slice(), value);
    }

    /// After a range delete reached RocksDB: forgets the cached keys in
    /// `[from, to)`.
    pub fn cleared(&self, from: &[u8], to: &[u8]) {
        if !(self.rules.range_may_hold)(from, to) {
            return;
        }
        for shard in &self.shards {
            let mut shard = match shard.lock() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            let mut freed = 0usize;
            shard.map.retain(|k, v| {
                let inside = k.as_ref() >= from && k.as_ref() < to;
                if inside {
                    freed += charge(k, v);
                }
                !inside
            });
            shard.bytes -= freed;
        }
    }

    /// Forgets everything (after a failed write, whose effect on RocksDB
    /// is unknown to the cache).
    pub fn clear(&self) {
        for shard in &self.shards {
            let mut shard = match shard.lock() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            shard.map.clear();
            shard.bytes = 0;
        }
    }

    /// Current figures.
    pub fn stats(&self) -> KeyCacheStats {
        let mut s = KeyCacheStats {
            max_bytes: self.max_bytes as u64,
            ..KeyCacheStats::default()
        };
        for shard in &self.shards {
            let shard = match shard.lock() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            s.entries += shard.map.len() as u64;
            s.bytes += shard.bytes as u64;
            s.hits += shard.hits;
            s.misses += shard.misses;
        }
        s
    }
}

fn charge(key: &[u8], value: &Option<Bytes>) -> usize {
    key.len() + value.as_ref().map_or(0, Bytes::len) + ENTRY_OVERHEAD_BYTES
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn all(_: &[u8]) -> bool {
        true
    }
    fn any_range(_: &[u8], _: &[u8]) -> bool {
        true
    }
    const RULES: KeyCacheRules = KeyCacheRules {
        cacheable: all,
        range_may_hold: any_range,
    };

    fn key(group: u32, name: &str) -> Vec<u8> {
        let mut k = group.to_be_bytes().to_vec();
        k.extend_from_slice(name.as_bytes());
        k
    }

    #[test]
    fn a_fill_after_a_write_began_is_refused() {
        let cache = KeyCache::new(1 << 20, RULES);
        let k = key(1, "a");
        let mark = cache.mark(&k).unwrap();
        let slot = KeyCache::group_slot(&k);
        let write = cache.begin_write(&[slot]);
        // A read that started before the write must not cache what it read.
        cache.fill(&k, Some(Bytes::from_static(b"old")), mark);
        assert!(cache.mark(&k).is_none(), "no reads through while writing");
        cache.written(k.clone(), Some(Bytes::from_static(b"new")));
        drop(write);
        let mark = cache.mark(&k).unwrap();
        assert_eq!(
            cache.lookup(&k, mark),
            Some(Some(Bytes::from_static(b"new")))
        );
        // A lookup whose group was written since its mark is not used.
        drop(cache.begin_write(&[slot]));
        assert_eq!(cache.lookup(&k, mark), None);
    }

    #[test]
    fn other_groups_are_not_held_up() {
        let cache = KeyCache::new(1 << 20, RULES);
        let a = key(1, "a");
        let b = key(2, "b");
        let _write = cache.begin_write(&[KeyCache::group_slot(&a)]);
        let mark = cache.mark(&b).unwrap();
        cache.fill(&b, None, mark);
        assert_eq!(cache.lookup(&b, mark), Some(None));
    }

    #[test]
    fn range_deletes_forget_what_they_cover() {
        let cache = KeyCache::new(1 << 20, RULES);
        for name in ["a", "b", "c"] {
            cache.written(key(1, name), Some(Bytes::from_static(b"v")));
        }
        cache.cleared(&key(1, "b"), &key(1, "c"));
        let mark = cache.mark(&key(1, "a")).unwrap();
        assert!(cache.lookup(&key(1, "a"), mark).is_some());
        assert!(cache.lookup(&key(1, "b"), mark).is_none());
        assert!(cache.lookup(&key(1, "c"), mark).is_some());
    }

    #[test]
    fn the_budget_holds() {
        let budget = 64 * 1024;
        let cache = KeyCache::new(budget, RULES);
        for i in 0..10_000 {
            cache.written(key(1, &format!("k{i}")), Some(Bytes::from(vec![0u8; 100])));
        }
        let s = cache.stats();
        assert!(s.bytes <= budget as u64, "{s:?}");
        assert!(s.entries > 0);
        // Too big to keep: not kept, and an older copy is dropped.
        let k = key(1, "big");
        cache.written(k.clone(), Some(Bytes::from_static(b"small")));
        cache.written(k.clone(), Some(Bytes::from(vec![0u8; budget / 64])));
        let mark = cache.mark(&k).unwrap();
        assert_eq!(cache.lookup(&k, mark), None);
        // Entries as large as allowed: the budget still holds.
        let cache = KeyCache::new(budget, RULES);
        let largest = budget / SHARDS / LARGEST_ENTRY_SHARE - ENTRY_OVERHEAD_BYTES - 16;
        for i in 0..1000 {
            cache.written(
                key(1, &format!("k{i:06}")),
                Some(Bytes::from(vec![0u8; largest])),
            );
            assert!(cache.stats().bytes <= budget as u64);
        }
    }
}
