//! Property tests: encode/decode round trips, robustness against arbitrary
//! input and incremental decoding at every split point.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::{Bytes, BytesMut};
use proptest::collection::vec;
use proptest::prelude::*;
use seshat_protocol_resp::{
    decode_frame, decode_request, decode_request_buf, encode, DecodeLimits, Frame, ProtocolVersion,
    Request, RequestDecoder,
};

/// Fragments that steer random input into the decoders' interesting paths.
const PROTOCOL_PIECES: &[&str] = &[
    "*", "$", "%", "~", ">", "=", "!", ",", "#", "(", "_", ":", "+", "-", "|", "1", "2", "-1", "0",
    "\r\n", "\r", "\n", "\"", "'", "\\x4", "\\", " ", "txt:", "get", "inf", "t", "\0",
];

fn limits() -> DecodeLimits {
    DecodeLimits::default()
}

fn any_bytes(max: usize) -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..max).prop_map(Bytes::from)
}

/// Text for line frames (simple strings, errors): no CR or LF.
fn line_bytes() -> impl Strategy<Value = Bytes> {
    vec(
        any::<u8>().prop_filter("no CR/LF", |b| *b != b'\r' && *b != b'\n'),
        0..24,
    )
    .prop_map(Bytes::from)
}

fn big_number() -> impl Strategy<Value = Bytes> {
    "-?[0-9]{1,40}".prop_map(Bytes::from)
}

fn finite_double() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>().prop_filter("finite", |d| d.is_finite()),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(0.0),
        -1e6..1e6f64,
    ]
}

fn resp2_leaf() -> impl Strategy<Value = Frame> {
    prop_oneof![
        line_bytes().prop_map(Frame::Simple),
        line_bytes().prop_map(Frame::Error),
        any::<i64>().prop_map(Frame::Integer),
        any_bytes(32).prop_map(Frame::Bulk),
        Just(Frame::Null),
        Just(Frame::NullArray),
    ]
}

/// RESP2 frames: every RESP2 type, nested.
fn resp2_frame() -> impl Strategy<Value = Frame> {
    resp2_leaf().prop_recursive(4, 64, 6, |inner| vec(inner, 0..6).prop_map(Frame::Array))
}

/// RESP3 frames: every type except `NullArray`, which RESP3 writes as `_`
/// and therefore decodes as `Null`.
fn resp3_frame() -> impl Strategy<Value = Frame> {
    let leaf = prop_oneof![
        line_bytes().prop_map(Frame::Simple),
        line_bytes().prop_map(Frame::Error),
        any::<i64>().prop_map(Frame::Integer),
        any_bytes(32).prop_map(Frame::Bulk),
        Just(Frame::Null),
        finite_double().prop_map(Frame::Double),
        any::<bool>().prop_map(Frame::Boolean),
        big_number().prop_map(Frame::BigNumber),
        (any::<[u8; 3]>(), any_bytes(32))
            .prop_map(|(format, text)| Frame::Verbatim { format, text }),
        any_bytes(32).prop_map(Frame::BlobError),
    ];
    leaf.prop_recursive(4, 64, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Frame::Array),
            vec(inner.clone(), 0..6).prop_map(Frame::Set),
            vec(inner.clone(), 0..6).prop_map(Frame::Push),
            vec((inner.clone(), inner), 0..4).prop_map(Frame::Map),
        ]
    })
}

fn to_wire(frame: &Frame, version: ProtocolVersion) -> BytesMut {
    let mut out = BytesMut::new();
    encode(frame, version, &mut out);
    out
}

fn request_args() -> impl Strategy<Value = Vec<Bytes>> {
    vec(any_bytes(40), 1..8)
}

fn encode_request(args: &[Bytes], out: &mut BytesMut) {
    Request::new(args.to_vec()).encode(out);
}

/// An inline command line made of safe tokens, for pipelines.
fn inline_line() -> impl Strategy<Value = (Vec<u8>, Vec<Bytes>)> {
    vec("[a-zA-Z0-9]{1,8}", 1..5).prop_map(|tokens| {
        let line = format!("{}\r\n", tokens.join(" ")).into_bytes();
        (line, tokens.into_iter().map(Bytes::from).collect())
    })
}

/// A pipeline of multibulk and inline requests, with skipped empties.
fn pipeline() -> impl Strategy<Value = (Vec<u8>, Vec<Vec<Bytes>>)> {
    let item = prop_oneof![
        request_args().prop_map(|args| {
            let mut out = BytesMut::new();
            encode_request(&args, &mut out);
            (out.to_vec(), Some(args))
        }),
        inline_line().prop_map(|(line, args)| (line, Some(args))),
        Just((b"\r\n".to_vec(), None)),
        Just((b"*0\r\n".to_vec(), None)),
    ];
    vec(item, 1..6).prop_map(|items| {
        let mut wire = Vec::new();
        let mut expected = Vec::new();
        for (bytes, args) in items {
            wire.extend_from_slice(&bytes);
            expected.extend(args);
        }
        (wire, expected)
    })
}

/// Decodes everything in `wire` with the stateless decoder.
fn decode_all(wire: &[u8]) -> (Vec<Vec<Bytes>>, usize) {
    let mut pos = 0;
    let mut out = Vec::new();
    while let Some((req, used)) = decode_request(&wire[pos..], &limits()).unwrap() {
        out.push(req.args);
        pos += used;
    }
    (out, pos)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn resp3_round_trip(frame in resp3_frame()) {
        let wire = to_wire(&frame, ProtocolVersion::Resp3);
        let decoded = decode_frame(&wire, &limits()).unwrap();
        prop_assert_eq!(decoded, Some((frame, wire.len())));
    }

    #[test]
    fn resp2_round_trip(frame in resp2_frame()) {
        let wire = to_wire(&frame, ProtocolVersion::Resp2);
        let decoded = decode_frame(&wire, &limits()).unwrap();
        prop_assert_eq!(decoded, Some((frame, wire.len())));
    }

    #[test]
    fn resp3_frames_downgrade_to_decodable_resp2(frame in resp3_frame()) {
        let wire = to_wire(&frame, ProtocolVersion::Resp2);
        let (decoded, used) = decode_frame(&wire, &limits()).unwrap().unwrap();
        prop_assert_eq!(used, wire.len());
        prop_assert_eq!(to_wire(&decoded, ProtocolVersion::Resp2), wire);
    }

    #[test]
    fn frame_prefixes_are_incomplete(frame in resp3_frame()) {
        let wire = to_wire(&frame, ProtocolVersion::Resp3);
        for end in 0..wire.len() {
            prop_assert_eq!(decode_frame(&wire[..end], &limits()), Ok(None));
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(input in vec(any::<u8>(), 0..256)) {
        let _ = decode_frame(&input, &limits());
        if let Ok(Some((req, used))) = decode_request(&input, &limits()) {
            prop_assert!(used <= input.len());
            prop_assert!(!req.args.is_empty());
        }
        let mut buf = BytesMut::from(&input[..]);
        while let Ok(Some(req)) = decode_request_buf(&mut buf, &limits()) {
            prop_assert!(!req.args.is_empty());
        }
    }

    #[test]
    fn protocol_shaped_bytes_never_panic(
        parts in vec(proptest::sample::select(PROTOCOL_PIECES), 0..64)
    ) {
        let input: Vec<u8> = parts.concat().into_bytes();
        // Whatever decodes re-encodes to something that decodes completely.
        if let Ok(Some((frame, used))) = decode_frame(&input, &limits()) {
            prop_assert!(used <= input.len());
            let wire = to_wire(&frame, ProtocolVersion::Resp3);
            let again = decode_frame(&wire, &limits()).unwrap().unwrap();
            prop_assert_eq!(again.1, wire.len());
        }
        if let Ok(Some((req, _))) = decode_request(&input, &limits()) {
            prop_assert!(!req.args.is_empty());
        }
    }

    #[test]
    fn pipelines_decode_at_every_split((wire, expected) in pipeline()) {
        let (all, used) = decode_all(&wire);
        prop_assert_eq!(&all, &expected);
        // Trailing empty commands are only consumed once something follows.
        prop_assert!(used <= wire.len());

        for split in 0..=wire.len() {
            // Stateless: requests wholly inside the prefix decode, then None.
            let (prefix_reqs, prefix_used) = decode_all(&wire[..split]);
            prop_assert!(prefix_reqs.len() <= expected.len());
            prop_assert_eq!(&prefix_reqs[..], &expected[..prefix_reqs.len()]);
            prop_assert!(prefix_used <= split);

            // Incremental: feed the prefix, then the rest.
            let mut decoder = RequestDecoder::new(limits());
            let mut buf = BytesMut::from(&wire[..split]);
            let mut got = Vec::new();
            while let Some(req) = decoder.decode(&mut buf).unwrap() {
                got.push(req.args);
            }
            buf.extend_from_slice(&wire[split..]);
            while let Some(req) = decoder.decode(&mut buf).unwrap() {
                got.push(req.args);
            }
            prop_assert_eq!(&got, &expected);
            prop_assert!(buf.is_empty());
        }
    }

    #[test]
    fn multibulk_request_round_trips(args in request_args()) {
        let mut wire = BytesMut::new();
        encode_request(&args, &mut wire);
        let decoded = decode_request(&wire, &limits()).unwrap();
        prop_assert_eq!(decoded, Some((Request::new(args.clone()), wire.len())));
        let mut buf = wire.clone();
        prop_assert_eq!(decode_request_buf(&mut buf, &limits()).unwrap(), Some(Request::new(args)));
        prop_assert!(buf.is_empty());
    }
}
