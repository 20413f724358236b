//! Fuzzes every decoder with the same input: frames re-encode to what
//! decodes again, and the stateless and incremental request decoders
//! (the latter fed in two pieces, cut where the first byte says) return
//! the same requests and end alike. The CI equivalent is
//! `tests/fuzz.rs`.
//!
//! Run with `cargo +nightly fuzz run decode` from `crates/protocol-resp`.

#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use seshat_protocol_resp::{
    decode_frame, decode_request, encode, DecodeLimits, ProtocolVersion, RequestDecoder,
};

/// Small enough that fuzzed input crosses every limit.
const TINY: DecodeLimits = DecodeLimits {
    max_bulk_bytes: 16,
    max_array_len: 6,
    max_inline_bytes: 40,
    max_nesting_depth: 3,
};

fuzz_target!(|data: &[u8]| {
    let Some((&cut, wire)) = data.split_first() else {
        return;
    };
    let limits = if cut & 1 == 0 {
        DecodeLimits::default()
    } else {
        TINY
    };

    // Frames: anything decoded must re-encode and decode to the same bytes.
    if let Ok(Some((frame, used))) = decode_frame(wire, &limits) {
        assert!(used <= wire.len());
        let mut again = BytesMut::new();
        encode(&frame, ProtocolVersion::Resp3, &mut again);
        let decoded = decode_frame(&again, &DecodeLimits::default());
        assert!(matches!(decoded, Ok(Some((_, n))) if n == again.len()));
    }

    // Requests: stateless over the whole input...
    let mut whole: Vec<Vec<Bytes>> = Vec::new();
    let mut pos = 0;
    let whole_failed = loop {
        match decode_request(&wire[pos..], &limits) {
            Ok(Some((request, used))) => {
                assert!(used > 0 && pos + used <= wire.len());
                assert!(!request.args.is_empty());
                whole.push(request.args);
                pos += used;
            }
            Ok(None) => break false,
            Err(_) => break true,
        }
    };

    // ...and incremental, in two pieces: the same requests, the same end.
    let split = usize::from(cut) * wire.len() / 255;
    let mut decoder = RequestDecoder::new(limits);
    let mut buf = BytesMut::new();
    let mut pieces: Vec<Vec<Bytes>> = Vec::new();
    let mut pieces_failed = false;
    'feed: for piece in [&wire[..split], &wire[split..]] {
        buf.extend_from_slice(piece);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(request)) => pieces.push(request.args),
                Ok(None) => break,
                Err(_) => {
                    pieces_failed = true;
                    break 'feed;
                }
            }
        }
    }
    assert_eq!(pieces, whole);
    assert_eq!(pieces_failed, whole_failed);
});
