//! Property tests of the encodings: every step and table round-trips,
//! and no bytes — arbitrary, truncated or mutated — make a decoder panic.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use proptest::prelude::*;
use seshat_migration::{
    Chunk, ChunkEntry, GroupStep, Manifest, Migration, Outcome, SlotMap, SlotRanges, SlotTable,
    SystemStep, SystemTable,
};

fn slots() -> impl Strategy<Value = SlotRanges> {
    prop::collection::vec((0u16..16384, 0u16..64), 1..8).prop_map(|rs| {
        SlotRanges::new(
            rs.into_iter()
                .map(|(s, len)| (s, s.saturating_add(len).min(16383))),
        )
        .unwrap()
    })
}

fn migration() -> impl Strategy<Value = Migration> {
    (any::<u64>(), slots(), 1u32..5, 1u32..5).prop_map(|(id, slots, source, d)| Migration {
        id,
        slots,
        source,
        target: source + d,
    })
}

fn manifest() -> impl Strategy<Value = Manifest> {
    (any::<u64>(), any::<u64>(), any::<u64>()).prop_map(|(chunks, entries, digest)| Manifest {
        chunks,
        entries,
        digest,
    })
}

fn chunk() -> impl Strategy<Value = Chunk> {
    let entry = (
        any::<u16>(),
        prop::collection::vec(any::<u8>(), 0..16),
        prop::collection::vec(any::<u8>(), 0..32),
    )
        .prop_map(|(slot, key, value)| ChunkEntry { slot, key, value });
    (any::<u64>(), prop::collection::vec(entry, 0..6))
        .prop_map(|(seq, entries)| Chunk { seq, entries })
}

fn group_step() -> impl Strategy<Value = GroupStep> {
    (migration(), 0u8..8, chunk(), manifest()).prop_map(|(m, kind, chunk, manifest)| match kind {
        0 => GroupStep::Freeze(m),
        1 => GroupStep::HandOff(m),
        2 => GroupStep::Abort(m),
        3 => GroupStep::Drop(m),
        4 => GroupStep::ImportStart(m),
        5 => GroupStep::ImportChunk(m, chunk),
        6 => GroupStep::ImportCommit(m, manifest),
        _ => GroupStep::ImportAbort(m),
    })
}

fn system_step() -> impl Strategy<Value = SystemStep> {
    (slots(), 1u32..5, 1u32..5, any::<u64>(), 0u8..5).prop_map(|(slots, source, d, n, kind)| {
        match kind {
            0 => SystemStep::Record {
                slots,
                source,
                target: source + d,
                map_version: n,
            },
            1 => SystemStep::Abort(n),
            2 => SystemStep::Flip(n),
            3 => SystemStep::Done(n, Outcome::Completed),
            _ => SystemStep::Done(n, Outcome::Aborted),
        }
    })
}

/// Every decoder over `bytes`, for the no-panic properties.
fn decode_all(bytes: &[u8]) {
    let _ = GroupStep::decode(bytes);
    let _ = SystemStep::decode(bytes);
    let _ = SlotTable::decode(bytes);
    let _ = SystemTable::decode(bytes);
}

/// Tables in a few states, encoded.
fn table_bytes() -> Vec<Vec<u8>> {
    let map = SlotMap::even(&[1, 2, 3]).unwrap();
    let mut system = SystemTable::new(map.clone());
    let mut a = SlotTable::new(1, map.clone());
    let mut b = SlotTable::new(2, map);
    let record = SystemStep::Record {
        slots: SlotRanges::new([(0, 10), (20, 30)]).unwrap(),
        source: 1,
        target: 2,
        map_version: 1,
    };
    system.apply(&record).unwrap();
    let m = system.migration(1).unwrap().migration.clone();
    b.apply(&GroupStep::ImportStart(m.clone())).unwrap();
    a.apply(&GroupStep::Freeze(m)).unwrap();
    vec![system.encode(), a.encode(), b.encode()]
}

proptest! {
    #[test]
    fn group_steps_round_trip(step in group_step()) {
        prop_assert_eq!(GroupStep::decode(&step.encode()), Ok(step));
    }

    #[test]
    fn system_steps_round_trip(step in system_step()) {
        prop_assert_eq!(SystemStep::decode(&step.encode()), Ok(step));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        decode_all(&bytes);
        // With a valid version byte, so the decoders get past it.
        let mut versioned = vec![1u8];
        versioned.extend_from_slice(&bytes);
        decode_all(&versioned);
    }

    #[test]
    fn mutated_encodings_never_panic(
        step in group_step(),
        system in system_step(),
        table in 0usize..3,
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        cut in any::<prop::sample::Index>(),
    ) {
        let tables = table_bytes();
        for mut bytes in [step.encode(), system.encode(), tables[table].clone()] {
            let i = at.index(bytes.len());
            bytes[i] = byte;
            decode_all(&bytes);
            let c = cut.index(bytes.len());
            decode_all(&bytes[..c]);
        }
    }
}
