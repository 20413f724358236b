//! Fuzzes every decoder and the command parser with the same input.
//!
//! Run with `cargo +nightly fuzz run decode` from `crates/protocol-resp`.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use seshat_protocol_resp::{
    decode_frame, decode_request, encode, DecodeLimits, ProtocolVersion,
    RequestDecoder,
};

fuzz_target!(|data: &[u8]| {
    let limits = DecodeLimits::default();

    // Frames: anything decoded must re-encode and decode to the same bytes.
    if let Ok(Some((frame, used))) = decode_frame(data, &limits) {
        assert!(used <= data.len());
        let mut wire = BytesMut::new();
        encode(&frame, ProtocolVersion::Resp3, &mut wire);
        let again = decode_frame(&wire, &limits);
        assert!(matches!(again, Ok(Some((_, n))) if n == wire.len()));
    }

    // Stateless request decoding over the whole pipeline.
    let mut pos = 0;
    while let Some(rest) = data.get(pos..) {
        match decode_request(rest, &limits) {
            Ok(Some((request, used))) => {
                assert!(used > 0 && used <= rest.len());
                pos += used;
            }
            Ok(None) | Err(_) => break,
        }
    }

    // Incremental decoding, fed in two halves, must not panic either.
    let mut decoder = RequestDecoder::new(limits);
    let split = data.len() / 2;
    let mut buf = BytesMut::from(data.get(..split).unwrap_or_default());
    while let Ok(Some(request)) = decoder.decode(&mut buf) {
    }
    buf.extend_from_slice(data.get(split..).unwrap_or_default());
    while let Ok(Some(request)) = decoder.decode(&mut buf) {
    }
});
