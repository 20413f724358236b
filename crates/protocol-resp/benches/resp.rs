//! Micro-benchmarks of the RESP hot path: decoding requests with
//! [`ServerCodec`], encoding replies and parsing commands.
//!
//! `cargo bench -p seshat-protocol-resp --bench resp` (add `-- --quick` for
//! a short run). Groups: `decode/*`, `encode/*`, `dispatch/*`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use seshat_protocol_resp::{Frame, ProtocolVersion, Request, ServerCodec};
use tokio_util::codec::{Decoder, Encoder};

/// Key used by the single-request benchmarks.
const KEY: &[u8] = b"key:000123";
/// Requests in the pipelined buffer.
const PIPELINE: usize = 16;

/// A 64-byte value.
fn value_64() -> Bytes {
    Bytes::from(vec![b'v'; 64])
}

/// `args` as a client sends them: a RESP2 multibulk of bulk strings.
fn multibulk(args: &[&[u8]]) -> BytesMut {
    let mut out = BytesMut::new();
    Request::new(args.iter().map(|a| Bytes::copy_from_slice(a)).collect()).encode(&mut out);
    out
}

/// Decodes one request from a fresh codec, checking it used the whole input.
fn decode_one(wire: &[u8]) -> Request {
    let mut buf = BytesMut::from(wire);
    let request = ServerCodec::default()
        .decode(&mut buf)
        .expect("valid request")
        .expect("complete request");
    assert!(buf.is_empty(), "one request per buffer");
    request
}

fn decode(c: &mut Criterion) {
    let value = value_64();
    let set = multibulk(&[b"SET", KEY, &value]);
    let get = multibulk(&[b"GET", KEY]);
    let mut pipeline = BytesMut::new();
    for i in 0..PIPELINE {
        let key = format!("key:{i:06}");
        pipeline.extend_from_slice(&multibulk(&[b"SET", key.as_bytes(), &value]));
    }
    let inline_ping: &[u8] = b"PING\r\n";
    let inline_set: &[u8] = b"SET k v\r\n";

    // The inputs decode to what the names say.
    assert_eq!(decode_one(&set).args.len(), 3);
    assert_eq!(decode_one(&get).args.len(), 2);
    assert_eq!(
        decode_one(inline_ping).args,
        vec![Bytes::from_static(b"PING")]
    );
    assert_eq!(decode_one(inline_set).args.len(), 3);

    let mut group = c.benchmark_group("decode");
    let cases: [(&str, &[u8]); 4] = [
        ("set_64b", &set),
        ("get", &get),
        ("inline_ping", inline_ping),
        ("inline_set", inline_set),
    ];
    for (name, wire) in cases {
        group.throughput(Throughput::Bytes(wire.len() as u64));
        group.bench_function(name, |b| {
            let mut codec = ServerCodec::default();
            b.iter_batched_ref(
                || BytesMut::from(wire),
                |buf| {
                    // Dropped inside the timing, like the pipeline's requests.
                    black_box(codec.decode(buf).expect("valid request"));
                },
                BatchSize::SmallInput,
            );
        });
    }

    // All 16 requests out of one read buffer, as after one socket read.
    group.throughput(Throughput::Elements(PIPELINE as u64));
    group.bench_function("pipeline_16_set", |b| {
        let mut codec = ServerCodec::default();
        b.iter_batched_ref(
            || BytesMut::from(&pipeline[..]),
            |buf| {
                let mut n = 0;
                while let Some(request) = codec.decode(buf).expect("valid pipeline") {
                    black_box(request);
                    n += 1;
                }
                assert_eq!(n, PIPELINE);
            },
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

fn encode(c: &mut Criterion) {
    let cases = [
        ("ok", Frame::ok()),
        ("bulk_64b", Frame::Bulk(value_64())),
        ("null", Frame::Null),
    ];
    let versions = [
        ("resp2", ProtocolVersion::Resp2),
        ("resp3", ProtocolVersion::Resp3),
    ];

    let mut group = c.benchmark_group("encode");
    for (name, frame) in &cases {
        for (suffix, version) in versions {
            let mut codec = ServerCodec::default();
            codec.set_version(version);
            let mut out = BytesMut::with_capacity(256);
            codec.encode(frame, &mut out).expect("encodes");
            group.throughput(Throughput::Bytes(out.len() as u64));
            group.bench_function(format!("{name}_{suffix}"), |b| {
                b.iter(|| {
                    // Reuses the write buffer, as a connection does.
                    out.clear();
                    codec.encode(black_box(frame), &mut out).expect("encodes");
                    black_box(&out);
                });
            });
        }
    }
    group.finish();
}

criterion_group!(benches, decode, encode);
criterion_main!(benches);
