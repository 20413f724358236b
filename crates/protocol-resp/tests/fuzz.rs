//! Fuzzing in CI for the RESP decoders (issue 18, item 8): valid
//! pipelines after a fuzzer's edits, split at arbitrary points, under the
//! default limits and under tiny ones. Whatever comes in, the stateless
//! and the incremental decoder agree — the same requests in the same
//! order, then the same end (an error or "need more") — and nothing
//! decoded breaks a limit. `cargo fuzz` runs the same decoders longer
//! (`crates/protocol-resp/fuzz`).
//!
//! `SESHAT_FUZZ_CASES=n` runs n cases per property instead of the CI
//! default.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::{Bytes, BytesMut};
use proptest::collection::vec;
use proptest::prelude::*;
use seshat_protocol_resp::{
    decode_frame, decode_request, DecodeLimits, Request, RequestDecoder, ServerCodec,
};
use tokio_util::codec::Decoder;

fn cases(default: u32) -> u32 {
    std::env::var("SESHAT_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Limits small enough that generated input crosses every one of them.
const TINY: DecodeLimits = DecodeLimits {
    max_bulk_bytes: 16,
    max_array_len: 6,
    max_inline_bytes: 40,
    max_nesting_depth: 3,
};

/// Pieces a mutation splices in: type bytes, lengths at and around the
/// limits, line ends, quotes of inline commands.
const PIECES: &[&[u8]] = &[
    b"*",
    b"$",
    b"%",
    b"~",
    b">",
    b"\r\n",
    b"\r",
    b"\n",
    b"-1",
    b"0",
    b"6",
    b"7",
    b"16",
    b"17",
    b"40",
    b"99999999999999999999",
    b"-",
    b"\"",
    b"'",
    b"\\x",
    b" ",
    b"\0",
];

/// One request of a pipeline: multibulk (sometimes with a wrong length)
/// or inline, with quoting.
fn request_bytes() -> impl Strategy<Value = Vec<u8>> {
    let arg = vec(any::<u8>(), 0..20);
    prop_oneof![
        vec(arg, 1..8).prop_map(|args| {
            let mut out = BytesMut::new();
            Request::new(args.into_iter().map(Bytes::from).collect()).encode(&mut out);
            out.to_vec()
        }),
        vec("[a-zA-Z0-9\"' \\\\]{1,12}", 1..6).prop_map(|tokens| format!(
            "{}\r\n",
            tokens.join(" ")
        )
        .into_bytes()),
        Just(b"\r\n".to_vec()),
        Just(b"*0\r\n".to_vec()),
        Just(b"*-1\r\n".to_vec()),
    ]
}

/// A fuzzer's edit of a byte string.
#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Splice(usize, usize),
    Remove(usize, usize),
    Duplicate(usize, usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Mutation::Flip(at, bit)),
        (any::<usize>(), 0..PIECES.len()).prop_map(|(at, p)| Mutation::Splice(at, p)),
        (any::<usize>(), 1usize..8).prop_map(|(at, n)| Mutation::Remove(at, n)),
        (any::<usize>(), 1usize..24, any::<usize>())
            .prop_map(|(from, n, to)| Mutation::Duplicate(from, n, to)),
    ]
}

fn mutate(bytes: &mut Vec<u8>, m: &Mutation) {
    let pos = |at: usize, len: usize| at % (len + 1);
    match *m {
        Mutation::Flip(at, bit) => {
            if !bytes.is_empty() {
                let i = at % bytes.len();
                bytes[i] ^= 1 << bit;
            }
        }
        Mutation::Splice(at, p) => {
            let i = pos(at, bytes.len());
            bytes.splice(i..i, PIECES[p].iter().copied());
        }
        Mutation::Remove(at, n) => {
            let i = pos(at, bytes.len());
            let end = (i + n).min(bytes.len());
            bytes.drain(i..end);
        }
        Mutation::Duplicate(from, n, to) => {
            let i = pos(from, bytes.len());
            let copy = bytes[i..(i + n).min(bytes.len())].to_vec();
            let j = pos(to, bytes.len());
            bytes.splice(j..j, copy);
        }
    }
}

/// A pipeline of requests after up to five edits.
fn mutated_pipeline() -> impl Strategy<Value = Vec<u8>> {
    (vec(request_bytes(), 1..6), vec(mutation(), 0..6)).prop_map(|(requests, edits)| {
        let mut wire = requests.concat();
        for m in &edits {
            mutate(&mut wire, m);
        }
        wire
    })
}

/// How decoding a whole input ended.
#[derive(Debug, PartialEq, Eq)]
enum End {
    NeedMore,
    Error,
}

/// The stateless decoder over the whole input.
fn one_shot(wire: &[u8], limits: &DecodeLimits) -> (Vec<Vec<Bytes>>, End) {
    let mut pos = 0;
    let mut out = Vec::new();
    loop {
        match decode_request(&wire[pos..], limits) {
            Ok(Some((req, used))) => {
                assert!(used > 0 && pos + used <= wire.len());
                out.push(req.args);
                pos += used;
            }
            Ok(None) => return (out, End::NeedMore),
            Err(_) => return (out, End::Error),
        }
    }
}

/// The incremental decoder fed `wire` in pieces ending at `cuts`.
fn incremental(wire: &[u8], cuts: &[usize], limits: &DecodeLimits) -> (Vec<Vec<Bytes>>, End) {
    let mut decoder = RequestDecoder::new(*limits);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut fed = 0;
    let mut ends: Vec<usize> = cuts.iter().map(|c| c % (wire.len() + 1)).collect();
    ends.sort_unstable();
    ends.push(wire.len());
    for end in ends {
        if end < fed {
            continue;
        }
        buf.extend_from_slice(&wire[fed..end]);
        fed = end;
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(req)) => out.push(req.args),
                Ok(None) => break,
                Err(_) => return (out, End::Error),
            }
        }
    }
    (out, End::NeedMore)
}

fn assert_within(limits: &DecodeLimits, args: &[Bytes]) {
    assert!(!args.is_empty(), "an empty request was returned");
    assert!(args.len() <= limits.max_array_len.max(limits.max_inline_bytes));
    for a in args {
        assert!(
            a.len() <= limits.max_bulk_bytes.max(limits.max_inline_bytes),
            "argument of {} bytes",
            a.len()
        );
    }
}

fn check(wire: &[u8], cuts: &[usize], limits: &DecodeLimits) -> Result<(), TestCaseError> {
    let whole = one_shot(wire, limits);
    let pieces = incremental(wire, cuts, limits);
    prop_assert_eq!(
        &pieces,
        &whole,
        "incremental vs one-shot on {:?}",
        Bytes::copy_from_slice(wire)
    );
    for args in &whole.0 {
        assert_within(limits, args);
    }
    let _ = decode_frame(wire, limits);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(32_768)))]

    #[test]
    fn mutated_pipelines_decode_alike_whole_and_in_pieces(
        wire in mutated_pipeline(),
        cuts in vec(any::<usize>(), 0..6),
    ) {
        check(&wire, &cuts, &DecodeLimits::default())?;
    }

    #[test]
    fn mutated_pipelines_respect_tiny_limits(
        wire in mutated_pipeline(),
        cuts in vec(any::<usize>(), 0..6),
    ) {
        check(&wire, &cuts, &TINY)?;
    }

    /// The per-client buffer limit holds whatever is sent: an incomplete
    /// request never leaves more buffered than allowed without an error.
    #[test]
    fn server_codec_never_buffers_past_its_limit(
        wire in mutated_pipeline(),
        cuts in vec(any::<usize>(), 0..6),
    ) {
        const MAX_BUFFERED_BYTES: usize = 24;
        let mut codec = ServerCodec::new(TINY, MAX_BUFFERED_BYTES);
        let mut buf = BytesMut::new();
        let mut ends: Vec<usize> = cuts.iter().map(|c| c % (wire.len() + 1)).collect();
        ends.sort_unstable();
        ends.push(wire.len());
        let mut fed = 0;
        'feed: for end in ends {
            if end < fed {
                continue;
            }
            buf.extend_from_slice(&wire[fed..end]);
            fed = end;
            loop {
                match codec.decode(&mut buf) {
                    Ok(Some(req)) => assert_within(&TINY, &req.args),
                    Ok(None) => {
                        prop_assert!(buf.len() <= MAX_BUFFERED_BYTES);
                        break;
                    }
                    Err(_) => break 'feed,
                }
            }
        }
    }
}
