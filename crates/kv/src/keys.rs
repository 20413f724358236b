//! The one place that knows how user data is laid out in `data_kv`.
//!
//! Every record of a Raft group starts with the group id, so a group's
//! whole state is one contiguous range:
//!
//! ```text
//! metadata   group u32 | slot u16 | 0x00 | fnv32(key) u32 | key      → record
//! sub-keys   group u32 | slot u16 | 0x01 | keylen u32 | key | field  → value
//! scores     group u32 | slot u16 | 0x02 | keylen u32 | key | score | member → ""
//! expiry     group u32 | 0xFFFF   | expire_at_ms u64 | slot u16 | key → ""
//! users      group u32 | 0xFFFE   | user name → ACL user record
//! system     group u32 | 0xFFFD   | record name → cluster metadata (system group),
//!                                     or `slot-table` → the group's slot table (data groups)
//! ```
//!
//! A composite value's (hash, list, set, sorted set) elements are its
//! sub-keys: one contiguous range per key (the key length makes `a` and
//! `ab` distinct prefixes), so deleting the key is one range delete in the
//! apply batch, whatever its size. A sorted set also keeps a score index,
//! ordered by [`encode_score`].
//!
//! All integers are big-endian so byte order is numeric order. The slot
//! comes right after the group, so one slot range of one group is one
//! contiguous range (a migration's copy and drop are range operations).
//! Slots are below 16384, so `0xFFFF` in the slot position is a namespace
//! no slot reaches: the expiry index sorts after all slot data and is
//! ordered by time, so the leader finds due keys with one range scan.
//! `0xFFFE` holds the ACL users: inside the group's range (so snapshots,
//! the replica digest and a group's copy carry them), outside every slot
//! (so no key count, `SCAN`, `KEYS` or `RANDOMKEY` sees them), and spared
//! by `FLUSHALL` ([`flushable_ranges`]). `0xFFFD` holds the system
//! group's cluster records (the layout, the slot map) and, in a data group
//! that has taken part in a migration, its `slot-table` record (the slots
//! it owns, the migration in progress), likewise outside every slot and
//! spared by `FLUSHALL`, and carried by snapshots and restarts with the
//! data it governs. A migration copies a slot's records with the group
//! prefix taken off ([`parse_slot_record`]); the target rebuilds the
//! expiry index and the key count from the metadata records.
//!
//! Inside a slot, keys are ordered by a 32-bit FNV-1a hash of the key and
//! then the key. That order is what a `SCAN` cursor encodes: `slot << 32 |
//! hash` is a position that stays meaningful across restarts, snapshots and
//! leader changes, so a scan resumed anywhere returns every key that was
//! present the whole time.

use seshat_common::{crc16_slot, CLUSTER_SLOTS};

/// The Raft group of today's single data group.
pub const DATA_GROUP: u32 = 1;
/// The system group: the cluster's metadata (members, slot map, users).
pub const SYSTEM_GROUP: u32 = 0;
/// Tag after the slot of a metadata record.
pub const TAG_META: u8 = 0x00;
/// Tag after the slot of a composite value's sub-key record.
pub const TAG_SUBKEY: u8 = 0x01;
/// The slot-position value of the expiry index namespace.
pub const EXPIRY_NAMESPACE: u16 = 0xFFFF;
/// The slot-position value of the ACL users namespace.
pub const USERS_NAMESPACE: u16 = 0xFFFE;
/// The slot-position value of the system records namespace.
pub const SYSTEM_NAMESPACE: u16 = 0xFFFD;
/// Bytes of a metadata key before the user key.
pub const META_HEADER_BYTES: usize = 4 + 2 + 1 + 4;

/// FNV-1a, 32 bits: the in-slot order of keys. Part of the on-disk format:
/// never change it without bumping the format version.
pub fn key_hash(key: &[u8]) -> u32 {
    const OFFSET: u32 = 0x811c_9dc5;
    const PRIME: u32 = 0x0100_0193;
    key.iter()
        .fold(OFFSET, |h, b| (h ^ u32::from(*b)).wrapping_mul(PRIME))
}

/// The metadata key of user key `key` in `group`.
pub fn meta_key(group: u32, key: &[u8]) -> Vec<u8> {
    let slot = crc16_slot(key);
    let mut k = Vec::with_capacity(META_HEADER_BYTES + key.len());
    k.extend_from_slice(&group.to_be_bytes());
    k.extend_from_slice(&slot.to_be_bytes());
    k.push(TAG_META);
    k.extend_from_slice(&key_hash(key).to_be_bytes());
    k.extend_from_slice(key);
    k
}

/// A decoded metadata key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetaKey<'a> {
    /// The key's slot.
    pub slot: u16,
    /// The key's in-slot hash.
    pub hash: u32,
    /// The user key.
    pub key: &'a [u8],
}

/// Splits a raw key of `group` into its parts if it is a metadata key.
pub fn parse_meta_key(group: u32, raw: &[u8]) -> Option<MetaKey<'_>> {
    let (g, rest) = raw.split_first_chunk::<4>()?;
    if u32::from_be_bytes(*g) != group {
        return None;
    }
    let (slot, rest) = rest.split_first_chunk::<2>()?;
    let (tag, rest) = rest.split_first()?;
    let (hash, key) = rest.split_first_chunk::<4>()?;
    let slot = u16::from_be_bytes(*slot);
    (*tag == TAG_META && slot < CLUSTER_SLOTS).then_some(MetaKey {
        slot,
        hash: u32::from_be_bytes(*hash),
        key,
    })
}

/// Whether `raw` is the metadata key of a user key, of any group: the
/// records a node's key cache keeps (a `SET` reads and writes one, a `GET`
/// reads one).
pub fn is_meta_key(raw: &[u8]) -> bool {
    raw.len() >= META_HEADER_BYTES
        && raw[6] == TAG_META
        && u16::from_be_bytes([raw[4], raw[5]]) < CLUSTER_SLOTS
}

/// Whether the range `[from, to)` may hold a metadata key. A range whose
/// bounds share group, slot and a tag other than [`TAG_META`] (a composite
/// value's elements, its scores) holds none: every key between them has
/// the same first seven bytes.
pub fn range_may_hold_meta(from: &[u8], to: &[u8]) -> bool {
    match (from.get(..7), to.get(..7)) {
        (Some(a), Some(b)) => a != b || a[6] == TAG_META,
        _ => true,
    }
}

/// The first metadata key at or after in-slot position (`slot`, `hash`).
pub fn meta_position(group: u32, slot: u16, hash: u32) -> Vec<u8> {
    let mut k = Vec::with_capacity(META_HEADER_BYTES);
    k.extend_from_slice(&group.to_be_bytes());
    k.extend_from_slice(&slot.to_be_bytes());
    k.push(TAG_META);
    k.extend_from_slice(&hash.to_be_bytes());
    k
}

/// The end (exclusive) of `slot`'s metadata records.
pub fn meta_slot_end(group: u32, slot: u16) -> Vec<u8> {
    let mut k = Vec::with_capacity(7);
    k.extend_from_slice(&group.to_be_bytes());
    k.extend_from_slice(&slot.to_be_bytes());
    k.push(TAG_META + 1);
    k
}

/// Tag after the slot of a sorted set's score index records.
pub const TAG_SCORE: u8 = 0x02;

fn element_prefix(group: u32, tag: u8, key: &[u8]) -> Vec<u8> {
    let len = u32::try_from(key.len()).unwrap_or(u32::MAX);
    let mut k = Vec::with_capacity(4 + 2 + 1 + 4 + key.len() + 16);
    k.extend_from_slice(&group.to_be_bytes());
    k.extend_from_slice(&crc16_slot(key).to_be_bytes());
    k.push(tag);
    k.extend_from_slice(&len.to_be_bytes());
    k.extend_from_slice(key);
    k
}

/// The prefix of every sub-key of `key`.
pub fn subkey_prefix(group: u32, key: &[u8]) -> Vec<u8> {
    element_prefix(group, TAG_SUBKEY, key)
}

/// The sub-key of `key`'s element `field`.
pub fn subkey(group: u32, key: &[u8], field: &[u8]) -> Vec<u8> {
    let mut k = subkey_prefix(group, key);
    k.extend_from_slice(field);
    k
}

/// The prefix of every score index record of `key`.
pub fn score_prefix(group: u32, key: &[u8]) -> Vec<u8> {
    element_prefix(group, TAG_SCORE, key)
}

/// The score index record of `member` with `score` in `key`.
pub fn score_key(group: u32, key: &[u8], score: f64, member: &[u8]) -> Vec<u8> {
    let mut k = score_prefix(group, key);
    k.extend_from_slice(&encode_score(score));
    k.extend_from_slice(member);
    k
}

/// The smallest key after every key that starts with `prefix` (`None`
/// only for an all-`0xFF` prefix, which no record prefix is).
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if let Some(next) = last.checked_add(1) {
            end.push(next);
            return Some(end);
        }
    }
    None
}

/// An `f64` as 8 bytes whose byte order is the numbers' order (`-0.0` is
/// stored as `0.0`; NaN never reaches storage).
pub fn encode_score(score: f64) -> [u8; 8] {
    let score = if score == 0.0 { 0.0 } else { score };
    let bits = score.to_bits();
    let ordered = if bits >> 63 == 1 {
        !bits
    } else {
        bits | (1 << 63)
    };
    ordered.to_be_bytes()
}

/// The inverse of [`encode_score`].
pub fn decode_score(bytes: [u8; 8]) -> f64 {
    let ordered = u64::from_be_bytes(bytes);
    let bits = if ordered >> 63 == 1 {
        ordered & !(1 << 63)
    } else {
        !ordered
    };
    f64::from_bits(bits)
}

/// The expiry index key of `key` expiring at `expire_at_ms`.
pub fn expiry_key(group: u32, expire_at_ms: u64, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(4 + 2 + 8 + 2 + key.len());
    k.extend_from_slice(&group.to_be_bytes());
    k.extend_from_slice(&EXPIRY_NAMESPACE.to_be_bytes());
    k.extend_from_slice(&expire_at_ms.to_be_bytes());
    k.extend_from_slice(&crc16_slot(key).to_be_bytes());
    k.extend_from_slice(key);
    k
}

/// The start of the expiry index of `group`.
pub fn expiry_start(group: u32) -> Vec<u8> {
    let mut k = group.to_be_bytes().to_vec();
    k.extend_from_slice(&EXPIRY_NAMESPACE.to_be_bytes());
    k
}

/// The end (exclusive) of the expiry entries due at or before `now_ms`.
pub fn expiry_due_end(group: u32, now_ms: u64) -> Vec<u8> {
    let mut k = expiry_start(group);
    k.extend_from_slice(&now_ms.saturating_add(1).to_be_bytes());
    k
}

/// Splits an expiry index key into its time and user key.
pub fn parse_expiry_key(group: u32, raw: &[u8]) -> Option<(u64, &[u8])> {
    let (g, rest) = raw.split_first_chunk::<4>()?;
    let (ns, rest) = rest.split_first_chunk::<2>()?;
    if u32::from_be_bytes(*g) != group || u16::from_be_bytes(*ns) != EXPIRY_NAMESPACE {
        return None;
    }
    let (at, rest) = rest.split_first_chunk::<8>()?;
    let (_slot, key) = rest.split_first_chunk::<2>()?;
    Some((u64::from_be_bytes(*at), key))
}

/// The record of ACL user `name` in `group`.
pub fn user_key(group: u32, name: &[u8]) -> Vec<u8> {
    let mut k = users_range(group).0;
    k.extend_from_slice(name);
    k
}

/// The range `[start, end)` of `group`'s ACL user records.
pub fn users_range(group: u32) -> (Vec<u8>, Vec<u8>) {
    let mut start = group.to_be_bytes().to_vec();
    start.extend_from_slice(&USERS_NAMESPACE.to_be_bytes());
    let mut end = group.to_be_bytes().to_vec();
    end.extend_from_slice(&EXPIRY_NAMESPACE.to_be_bytes());
    (start, end)
}

/// The user name of an ACL user record key of `group`.
pub fn parse_user_key(group: u32, raw: &[u8]) -> Option<&[u8]> {
    let (g, rest) = raw.split_first_chunk::<4>()?;
    let (ns, name) = rest.split_first_chunk::<2>()?;
    (u32::from_be_bytes(*g) == group && u16::from_be_bytes(*ns) == USERS_NAMESPACE).then_some(name)
}

/// The key of `group`'s system record `name`.
pub fn system_key(group: u32, name: &[u8]) -> Vec<u8> {
    let mut k = group.to_be_bytes().to_vec();
    k.extend_from_slice(&SYSTEM_NAMESPACE.to_be_bytes());
    k.extend_from_slice(name);
    k
}

/// The ranges `FLUSHALL` clears: the whole group but its system records
/// and ACL users (which sit side by side, `0xFFFD..0xFFFF`).
pub fn flushable_ranges(group: u32) -> [(Vec<u8>, Vec<u8>); 2] {
    let (start, end) = group_range(group);
    let (_, users_end) = users_range(group);
    let mut kept_start = group.to_be_bytes().to_vec();
    kept_start.extend_from_slice(&SYSTEM_NAMESPACE.to_be_bytes());
    [(start, kept_start), (users_end, end)]
}

/// The range `[start, end)` holding every record of `group`.
pub fn group_range(group: u32) -> (Vec<u8>, Vec<u8>) {
    let start = group.to_be_bytes().to_vec();
    let end = match group.checked_add(1) {
        Some(next) => next.to_be_bytes().to_vec(),
        None => vec![0xFF; 5],
    };
    (start, end)
}

/// The first key of `slot`'s records in `group` (`slot` may be
/// [`CLUSTER_SLOTS`]: the end of the last slot).
pub fn slot_start(group: u32, slot: u16) -> Vec<u8> {
    let mut k = group.to_be_bytes().to_vec();
    k.extend_from_slice(&slot.to_be_bytes());
    k
}

/// The range `[start, end)` of every record (metadata, sub-keys, scores)
/// of the slots `first..=last` of `group`: one range per contiguous run
/// of slots, which a migration copies and drops whole.
pub fn slots_between(group: u32, first: u16, last: u16) -> (Vec<u8>, Vec<u8>) {
    (
        slot_start(group, first),
        slot_start(group, last.saturating_add(1)),
    )
}

/// A data record's key within its group (the group prefix taken off), as
/// a migration carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotRecordKey<'a> {
    /// The record's slot.
    pub slot: u16,
    /// The user key it belongs to.
    pub key: &'a [u8],
    /// Whether it is the key's metadata record (else one of its elements).
    pub meta: bool,
}

/// Splits a group-relative data key (`slot | tag | …`, the layout above
/// without the group prefix) into its slot and user key, checking that it
/// is where this module would put it: a known tag, the user key hashing
/// to the slot, a metadata key's in-slot hash matching its key. `None`
/// for anything else.
pub fn parse_slot_record(raw: &[u8]) -> Option<SlotRecordKey<'_>> {
    let (slot, rest) = raw.split_first_chunk::<2>()?;
    let slot = u16::from_be_bytes(*slot);
    let (tag, rest) = rest.split_first()?;
    let (key, meta) = match *tag {
        TAG_META => {
            let (hash, key) = rest.split_first_chunk::<4>()?;
            (u32::from_be_bytes(*hash) == key_hash(key)).then_some((key, true))?
        }
        TAG_SUBKEY | TAG_SCORE => {
            let (len, rest) = rest.split_first_chunk::<4>()?;
            let len = usize::try_from(u32::from_be_bytes(*len)).ok()?;
            (rest.get(..len)?, false)
        }
        _ => return None,
    };
    (slot < CLUSTER_SLOTS && crc16_slot(key) == slot).then_some(SlotRecordKey { slot, key, meta })
}

/// The range of every slot's metadata and sub-keys of `group` (not the
/// expiry index).
pub fn slots_range(group: u32) -> (Vec<u8>, Vec<u8>) {
    let mut end = group.to_be_bytes().to_vec();
    end.extend_from_slice(&CLUSTER_SLOTS.to_be_bytes());
    (group.to_be_bytes().to_vec(), end)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_key_cache_rules_know_metadata_keys_and_element_ranges() {
        let meta = meta_key(3, b"user");
        assert!(is_meta_key(&meta));
        assert!(!is_meta_key(&subkey(3, b"user", b"field")));
        assert!(!is_meta_key(&expiry_key(3, 42, b"user")));
        assert!(!is_meta_key(&user_key(3, b"alice")));
        assert!(!is_meta_key(&system_key(3, b"slot-table")));
        // A composite value's elements and scores: no metadata inside.
        for prefix in [subkey_prefix(3, b"user"), score_prefix(3, b"user")] {
            let end = prefix_end(&prefix).unwrap();
            assert!(!range_may_hold_meta(&prefix, &end));
        }
        // Slots, whole groups, FLUSHALL's ranges: they may.
        let (from, to) = slots_between(3, 10, 20);
        assert!(range_may_hold_meta(&from, &to));
        let (from, to) = group_range(3);
        assert!(range_may_hold_meta(&from, &to));
        for (from, to) in flushable_ranges(3) {
            assert!(range_may_hold_meta(&from, &to));
        }
        let end = meta_slot_end(3, 7);
        assert!(range_may_hold_meta(&meta_position(3, 7, 0), &end));
    }

    #[test]
    fn meta_key_round_trips_and_sorts_by_slot_then_hash() {
        let k = meta_key(DATA_GROUP, b"foo");
        let parsed = parse_meta_key(DATA_GROUP, &k).unwrap();
        assert_eq!(parsed.key, b"foo");
        assert_eq!(parsed.slot, 12182);
        assert_eq!(parsed.hash, key_hash(b"foo"));
        assert!(parse_meta_key(2, &k).is_none());
        assert!(meta_position(DATA_GROUP, 12182, 0) <= k);
        assert!(k < meta_slot_end(DATA_GROUP, 12182));
        let (start, end) = group_range(DATA_GROUP);
        assert!(start <= k && k < end);
        let (s0, s1) = slots_range(DATA_GROUP);
        assert!(s0 <= k && k < s1);
    }

    #[test]
    fn expiry_keys_sort_by_time_after_all_slots() {
        let a = expiry_key(DATA_GROUP, 5, b"zzz");
        let b = expiry_key(DATA_GROUP, 6, b"aaa");
        assert!(a < b);
        assert!(meta_key(DATA_GROUP, b"x") < a);
        assert!(a < expiry_due_end(DATA_GROUP, 5));
        assert!(b >= expiry_due_end(DATA_GROUP, 5));
        assert_eq!(parse_expiry_key(DATA_GROUP, &b), Some((6, &b"aaa"[..])));
        let (_, end) = group_range(DATA_GROUP);
        assert!(b < end);
        assert!(parse_meta_key(DATA_GROUP, &a).is_none());
    }

    #[test]
    fn element_prefixes_separate_keys_and_scores_sort_numerically() {
        let a = subkey_prefix(DATA_GROUP, b"a");
        let ab = subkey(DATA_GROUP, b"ab", b"");
        let end = prefix_end(&a).unwrap();
        assert!(
            !(a <= ab && ab < end),
            "key ab's elements are outside a's range"
        );
        assert!(subkey(DATA_GROUP, b"a", b"\xff\xff") < end);
        let scores = [
            f64::NEG_INFINITY,
            -1e300,
            -2.5,
            -0.0,
            0.0,
            1e-300,
            3.0,
            f64::INFINITY,
        ];
        for pair in scores.windows(2) {
            assert!(encode_score(pair[0]) <= encode_score(pair[1]), "{pair:?}");
        }
        for s in scores {
            assert_eq!(
                decode_score(encode_score(s)),
                if s == 0.0 { 0.0 } else { s }
            );
        }
        assert_eq!(prefix_end(&[1, 0xFF]), Some(vec![2]));
    }

    #[test]
    fn users_sit_between_the_slots_and_the_expiry_index() {
        let u = user_key(DATA_GROUP, b"alice");
        assert_eq!(parse_user_key(DATA_GROUP, &u), Some(&b"alice"[..]));
        assert!(parse_user_key(2, &u).is_none());
        assert!(parse_meta_key(DATA_GROUP, &u).is_none());
        assert!(parse_expiry_key(DATA_GROUP, &u).is_none());
        let (_, slots_end) = slots_range(DATA_GROUP);
        assert!(slots_end <= u && u < expiry_start(DATA_GROUP));
        let (start, end) = group_range(DATA_GROUP);
        assert!(start <= u && u < end);
        let (users_start, users_end) = users_range(DATA_GROUP);
        assert!(users_start <= u && u < users_end);
        for (from, to) in flushable_ranges(DATA_GROUP) {
            assert!(!(from <= u && u < to), "FLUSHALL must spare users");
        }
        let [(a, b), (c, d)] = flushable_ranges(DATA_GROUP);
        assert!(a <= meta_key(DATA_GROUP, b"k") && meta_key(DATA_GROUP, b"k") < b);
        let e = expiry_key(DATA_GROUP, 1, b"k");
        assert!(c <= e && e < d);
    }

    #[test]
    fn slot_records_parse_without_their_group_and_only_where_they_belong() {
        let slot = crc16_slot(b"k");
        for (raw, meta) in [
            (meta_key(7, b"k"), true),
            (subkey(7, b"k", b"field"), false),
            (score_key(7, b"k", 1.5, b"member"), false),
        ] {
            let parsed = parse_slot_record(&raw[4..]).unwrap();
            assert_eq!(
                parsed,
                SlotRecordKey {
                    slot,
                    key: b"k",
                    meta
                }
            );
            let (start, end) = slots_between(7, slot, slot);
            assert!(start <= raw && raw < end);
        }
        // Another slot's prefix, a wrong in-slot hash, a length past the
        // end, an unknown tag, the expiry index: not slot records.
        let mut moved = meta_key(7, b"k")[4..].to_vec();
        moved[..2].copy_from_slice(&(slot ^ 1).to_be_bytes());
        let mut bad_hash = meta_key(7, b"k")[4..].to_vec();
        bad_hash[3] ^= 1;
        let mut long = subkey(7, b"k", b"")[4..].to_vec();
        long[6] = 9;
        let mut tag = subkey(7, b"k", b"")[4..].to_vec();
        tag[2] = 3;
        for raw in [
            moved,
            bad_hash,
            long,
            tag,
            expiry_key(7, 1, b"k")[4..].to_vec(),
            vec![],
        ] {
            assert_eq!(parse_slot_record(&raw), None, "{raw:?}");
        }
    }

    #[test]
    fn fnv_is_the_documented_function() {
        // FNV-1a 32 test vectors.
        assert_eq!(key_hash(b""), 0x811c_9dc5);
        assert_eq!(key_hash(b"a"), 0xe40c_292c);
        assert_eq!(key_hash(b"foobar"), 0xbf9c_f968);
    }
}
