//! Micro-benchmarks of a write's per-entry costs outside RocksDB and the
//! network: the log entry codec ([`seshat_raft::codec`]), command
//! resolution, and applying a write to an in-memory keyspace.
//!
//! `cargo bench -p seshat-raft --bench codec` (add `-- --quick` for a short
//! run). Groups: `codec/*`, `kv/*`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use openraft::EntryPayload;
use seshat_commands::{apply_batch, resolve, GroupState};
use seshat_common::Limits;
use seshat_kv::{MemKv, Write, WriteBatch};
use seshat_protocol_resp::Frame;
use seshat_raft::codec::{decode_entry, encode_entry};
use seshat_raft::types::{CommittedLeaderId, Entry, LogId};

/// A plain `SET` of a 16-byte key and a 64-byte value.
fn set_argv() -> Vec<Bytes> {
    vec![
        Bytes::from_static(b"SET"),
        Bytes::from_static(b"key:000000000123"),
        Bytes::from(vec![b'v'; 64]),
    ]
}

fn set_op() -> WriteBatch {
    WriteBatch {
        now_ms: 1,
        seed: 2,
        writes: vec![Write::Command(set_argv())],
    }
}

/// The log entry a leader appends for [`set_op`].
fn set_entry() -> Entry {
    Entry {
        log_id: LogId::new(
            CommittedLeaderId {
                term: 7,
                node_id: 1,
            },
            1_234_567,
        ),
        payload: EntryPayload::Normal(set_op()),
    }
}

fn codec(c: &mut Criterion) {
    let entry = set_entry();
    let bytes = encode_entry(&entry);
    assert_eq!(decode_entry(&bytes).expect("decodes"), entry);

    let mut group = c.benchmark_group("codec");
    group.throughput(Throughput::Bytes(bytes.len() as u64));
    group.bench_function("encode_entry_set_16b_64b", |b| {
        b.iter(|| black_box(encode_entry(black_box(&entry))));
    });
    group.bench_function("decode_entry_set_16b_64b", |b| {
        b.iter(|| black_box(decode_entry(black_box(&bytes)).expect("decodes")));
    });
    group.finish();
}

fn kv(c: &mut Criterion) {
    let op = set_op();
    let argv = set_argv();
    let limits = Limits::default();
    op.writes[0].check_size(&limits).expect("within limits");

    let mut group = c.benchmark_group("kv");
    group.bench_function("resolve_and_size_set", |b| {
        b.iter(|| {
            black_box(resolve(black_box(&argv)).expect("known"));
            black_box(op.writes[0].check_size(&limits))
        });
    });
    // Overwrites the same key, so the map holds one entry throughout.
    group.bench_function("apply_set_memkv", |b| {
        let (mut kv, mut state) = (MemKv::default(), GroupState::default());
        b.iter(|| {
            let result = apply_batch(black_box(&op), 3, &mut kv, &mut state).expect("applies");
            debug_assert_eq!(result, vec![Frame::ok()]);
            black_box(result)
        });
    });
    group.finish();
}

criterion_group!(benches, codec, kv);
criterion_main!(benches);
