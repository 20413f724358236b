use super::*;
use crate::frame::ProtocolVersion;

fn limits() -> DecodeLimits {
    DecodeLimits::default()
}

fn small_limits() -> DecodeLimits {
    DecodeLimits {
        max_bulk_bytes: 8,
        max_array_len: 4,
        max_inline_bytes: 16,
        max_nesting_depth: 2,
    }
}

fn frame(input: &[u8]) -> Result<Option<(Frame, usize)>, ProtocolError> {
    decode_frame(input, &limits())
}

fn frame_ok(input: &[u8]) -> Frame {
    let (f, used) = frame(input).unwrap().unwrap();
    assert_eq!(used, input.len(), "{input:?}");
    f
}

fn frame_err(input: &[u8]) -> ProtocolError {
    frame(input).unwrap_err()
}

fn args(list: &[&str]) -> Vec<Bytes> {
    list.iter()
        .map(|s| Bytes::copy_from_slice(s.as_bytes()))
        .collect()
}

fn request(input: &[u8]) -> Result<Option<(Request, usize)>, ProtocolError> {
    decode_request(input, &limits())
}

fn request_ok(input: &[u8]) -> (Vec<Bytes>, usize) {
    let (req, used) = request(input).unwrap().unwrap();
    (req.args, used)
}

fn request_err(input: &[u8]) -> String {
    request(input).unwrap_err().to_string()
}

// --- limits ---------------------------------------------------------------

#[test]
fn default_limits_are_valid_and_named() {
    let l = DecodeLimits::default();
    assert_eq!(l.max_bulk_bytes, 1024 * 1024);
    assert_eq!(l.max_array_len, 1_048_576);
    assert_eq!(l.max_inline_bytes, 64 * 1024);
    assert_eq!(l.max_nesting_depth, 32);
    assert_eq!(l.validate(), Ok(()));
}

#[test]
fn validate_names_the_bad_field() {
    let zero = DecodeLimits {
        max_array_len: 0,
        ..limits()
    };
    assert_eq!(
        zero.validate(),
        Err(LimitsError::Zero {
            name: "max_array_len"
        })
    );
    let deep = DecodeLimits {
        max_nesting_depth: 10_000,
        ..limits()
    };
    assert_eq!(
        deep.validate(),
        Err(LimitsError::TooLarge {
            name: "max_nesting_depth",
            value: 10_000,
            max: MAX_NESTING_DEPTH_CEILING
        })
    );
    for l in [
        DecodeLimits {
            max_bulk_bytes: 0,
            ..limits()
        },
        DecodeLimits {
            max_inline_bytes: 0,
            ..limits()
        },
        DecodeLimits {
            max_nesting_depth: 0,
            ..limits()
        },
        DecodeLimits {
            max_bulk_bytes: MAX_BULK_BYTES_CEILING + 1,
            ..limits()
        },
    ] {
        assert!(l.validate().is_err(), "{l:?}");
    }
}

// --- frames ---------------------------------------------------------------

#[test]
fn decodes_every_frame_type() {
    assert_eq!(frame_ok(b"+OK\r\n"), Frame::ok());
    assert_eq!(frame_ok(b"-ERR x\r\n"), Frame::error("ERR x"));
    assert_eq!(frame_ok(b":-12\r\n"), Frame::Integer(-12));
    assert_eq!(frame_ok(b"$3\r\nf\0o\r\n"), Frame::bulk(&b"f\0o"[..]));
    assert_eq!(frame_ok(b"$0\r\n\r\n"), Frame::bulk(""));
    assert_eq!(frame_ok(b"$-1\r\n"), Frame::Null);
    assert_eq!(frame_ok(b"_\r\n"), Frame::Null);
    assert_eq!(frame_ok(b"*-1\r\n"), Frame::NullArray);
    assert_eq!(frame_ok(b"*0\r\n"), Frame::Array(vec![]));
    assert_eq!(
        frame_ok(b"*2\r\n:1\r\n*1\r\n+a\r\n"),
        Frame::Array(vec![
            Frame::Integer(1),
            Frame::Array(vec![Frame::simple("a")])
        ])
    );
    assert_eq!(
        frame_ok(b"%1\r\n+k\r\n#t\r\n"),
        Frame::Map(vec![(Frame::simple("k"), Frame::Boolean(true))])
    );
    assert_eq!(
        frame_ok(b"~1\r\n#f\r\n"),
        Frame::Set(vec![Frame::Boolean(false)])
    );
    assert_eq!(
        frame_ok(b">1\r\n:1\r\n"),
        Frame::Push(vec![Frame::Integer(1)])
    );
    assert_eq!(frame_ok(b",1.5\r\n"), Frame::Double(1.5));
    assert_eq!(frame_ok(b",-inf\r\n"), Frame::Double(f64::NEG_INFINITY));
    assert_eq!(frame_ok(b",1e300\r\n"), Frame::Double(1e300));
    assert!(matches!(frame_ok(b",nan\r\n"), Frame::Double(d) if d.is_nan()));
    assert_eq!(
        frame_ok(b"(-123\r\n"),
        Frame::BigNumber(Bytes::from_static(b"-123"))
    );
    assert_eq!(
        frame_ok(b"=6\r\nmkd:hi\r\n"),
        Frame::Verbatim {
            format: *b"mkd",
            text: Bytes::from_static(b"hi")
        }
    );
    assert_eq!(
        frame_ok(b"!3\r\nERR\r\n"),
        Frame::BlobError(Bytes::from_static(b"ERR"))
    );
}

#[test]
fn frame_reports_bytes_used_and_ignores_trailing_bytes() {
    assert_eq!(
        frame(b":1\r\n:2\r\n").unwrap(),
        Some((Frame::Integer(1), 4))
    );
}

#[test]
fn every_prefix_of_a_frame_is_incomplete() {
    let wire = b"*3\r\n$3\r\nfoo\r\n%1\r\n+a\r\n,2.5\r\n=5\r\ntxt:x\r\n";
    for end in 0..wire.len() {
        assert_eq!(frame(&wire[..end]), Ok(None), "prefix {end}");
    }
    assert!(frame(wire).unwrap().is_some());
}

#[test]
fn frame_errors() {
    use ProtocolError as E;
    let cases: Vec<(&[u8], ProtocolError)> = vec![
        (b"x\r\n", E::InvalidFrameType { byte: b'x' }),
        (b"|1\r\n+a\r\n+b\r\n+c\r\n", E::AttributesNotSupported),
        (b":1x\r\n", E::InvalidInteger),
        (b":\r\n", E::InvalidInteger),
        (b",abc\r\n", E::InvalidDouble),
        (b"#x\r\n", E::InvalidBoolean),
        (b"(12a\r\n", E::InvalidBigNumber),
        (b"(\r\n", E::InvalidBigNumber),
        (b"_x\r\n", E::InvalidNull),
        (b"=2\r\nab\r\n", E::InvalidVerbatim),
        (b"=4\r\nabcd\r\n", E::InvalidVerbatim),
        (b"$-2\r\n", E::InvalidBulkLength),
        (b"$x\r\n", E::InvalidBulkLength),
        (b"$?\r\n", E::InvalidBulkLength),
        (b"!-1\r\n", E::InvalidBulkLength),
        (b"=-1\r\n", E::InvalidBulkLength),
        (b"*-2\r\n", E::InvalidMultibulkLength),
        (b"~-1\r\n", E::InvalidMultibulkLength),
        (b">-1\r\n", E::InvalidMultibulkLength),
        (b"%-1\r\n", E::InvalidMultibulkLength),
        (b"$1\r\nab\r\n", E::MissingBulkTerminator),
        (b"+a\rb\n", E::InvalidLineTerminator),
    ];
    for (input, expected) in cases {
        assert_eq!(
            frame_err(input),
            expected,
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn frame_limits() {
    use ProtocolError as E;
    let l = small_limits();
    let dec = |input: &[u8]| decode_frame(input, &l);
    assert_eq!(dec(b"$9\r\n"), Err(E::InvalidBulkLength));
    assert!(dec(b"$8\r\n12345678\r\n").unwrap().is_some());
    assert_eq!(dec(b"*5\r\n"), Err(E::InvalidMultibulkLength));
    assert_eq!(dec(b"%5\r\n"), Err(E::InvalidMultibulkLength));
    assert_eq!(
        dec(b"*1\r\n*1\r\n*1\r\n:1\r\n"),
        Err(E::NestingTooDeep { limit: 2 })
    );
    assert!(dec(b"*1\r\n*1\r\n:1\r\n").unwrap().is_some());
    assert_eq!(dec(&[b'+'; 40]), Err(E::LineTooLong));
    assert_eq!(dec(&[b'$'; 40]), Err(E::TooBigBulkCount));
    assert_eq!(dec(&[b'*'; 40]), Err(E::TooBigMultibulkCount));
}

#[test]
fn unvalidated_huge_nesting_limit_is_clamped() {
    let l = DecodeLimits {
        max_nesting_depth: usize::MAX,
        ..limits()
    };
    let mut wire = Vec::new();
    for _ in 0..=MAX_NESTING_DEPTH_CEILING {
        wire.extend_from_slice(b"*1\r\n");
    }
    wire.extend_from_slice(b":1\r\n");
    assert_eq!(
        decode_frame(&wire, &l),
        Err(ProtocolError::NestingTooDeep {
            limit: MAX_NESTING_DEPTH_CEILING
        })
    );
}

#[test]
fn huge_announced_counts_do_not_preallocate() {
    // Would abort on allocation failure if the count were trusted.
    assert_eq!(frame(b"*1048576\r\n"), Ok(None));
    assert_eq!(request(b"*1048576\r\n$1\r\na\r\n"), Ok(None));
}

// --- requests -------------------------------------------------------------

#[test]
fn multibulk_request() {
    let (a, used) = request_ok(b"*2\r\n$3\r\nGET\r\n$3\r\nk\r\n\r\n");
    assert_eq!(
        a,
        vec![Bytes::from_static(b"GET"), Bytes::from_static(b"k\r\n")]
    );
    assert_eq!(used, 22);
}

#[test]
fn inline_request() {
    assert_eq!(request_ok(b"PING\r\n"), (args(&["PING"]), 6));
    assert_eq!(request_ok(b"PING\n"), (args(&["PING"]), 5));
    assert_eq!(
        request_ok(b"set \"a b\" 'c'\r\n+"),
        (args(&["set", "a b", "c"]), 15)
    );
    assert_eq!(request_ok(b"echo \"\\x41\"\n"), (args(&["echo", "A"]), 12));
}

#[test]
fn empty_commands_are_skipped() {
    assert_eq!(request_ok(b"\r\n\n  \r\nPING\r\n"), (args(&["PING"]), 13));
    assert_eq!(
        request_ok(b"*0\r\n*-1\r\n*-7\r\nPING\r\n"),
        (args(&["PING"]), 20)
    );
    assert_eq!(request(b"\r\n*0\r\n"), Ok(None));
}

#[test]
fn request_prefixes_are_incomplete() {
    for wire in [&b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"[..], b"GET k\r\n"] {
        for end in 0..wire.len() {
            assert_eq!(request(&wire[..end]), Ok(None), "prefix {end} of {wire:?}");
        }
    }
}

#[test]
fn request_errors() {
    let cases: Vec<(&[u8], &str)> = vec![
        (b"*x\r\n", "Protocol error: invalid multibulk length"),
        (b"*\r\n", "Protocol error: invalid multibulk length"),
        (b"*1048577\r\n", "Protocol error: invalid multibulk length"),
        (b"*1\rx", "Protocol error: invalid multibulk length"),
        (b"*1\r\n$-1\r\n", "Protocol error: invalid bulk length"),
        (b"*1\r\n$x\r\n", "Protocol error: invalid bulk length"),
        (b"*1\r\n$1048577\r\n", "Protocol error: invalid bulk length"),
        (b"*1\r\n$1\rx", "Protocol error: invalid bulk length"),
        (b"*1\r\nx3\r\n", "Protocol error: expected '$', got 'x'"),
        (b"*1\r\n:3\r\n", "Protocol error: expected '$', got ':'"),
        (b"*1\r\n\r\n", "Protocol error: expected '$', got ' '"),
        (
            b"SET \"a\r\n",
            "Protocol error: unbalanced quotes in request",
        ),
        (
            b"SET 'a\r\n",
            "Protocol error: unbalanced quotes in request",
        ),
        (
            b"*1\r\n$1\r\nab\r\n",
            "Protocol error: bulk data is not terminated by CRLF",
        ),
    ];
    for (input, expected) in cases {
        assert_eq!(
            request_err(input),
            expected,
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn lines_without_terminator_fail_once_over_the_limit() {
    let l = small_limits();
    let dec = |input: &[u8]| decode_request(input, &l).map_err(|e| e.to_string());
    assert_eq!(dec(&[b'a'; 16]), Ok(None));
    assert_eq!(
        dec(&[b'a'; 17]),
        Err("Protocol error: too big inline request".into())
    );
    let mut mbulk = b"*".to_vec();
    mbulk.extend_from_slice(&[b'1'; 16]);
    assert_eq!(
        dec(&mbulk),
        Err("Protocol error: too big mbulk count string".into())
    );
    let mut bulk = b"*1\r\n$".to_vec();
    bulk.extend_from_slice(&[b'1'; 16]);
    assert_eq!(
        dec(&bulk),
        Err("Protocol error: too big bulk count string".into())
    );
    assert_eq!(
        dec(b"*5\r\n").map_err(|e| e.to_string()),
        Err("Protocol error: invalid multibulk length".into())
    );
    assert_eq!(
        dec(b"*1\r\n$9\r\n"),
        Err("Protocol error: invalid bulk length".into())
    );
}

#[test]
fn decode_request_buf_consumes_and_shares_memory() {
    let mut buf =
        BytesMut::from(&b"\r\n*2\r\n$4\r\nECHO\r\n$2\r\nhi\r\nPING\r\n*1\r\n$4\r\nPI"[..]);
    let first = decode_request_buf(&mut buf, &limits()).unwrap().unwrap();
    assert_eq!(first.args, args(&["ECHO", "hi"]));
    let second = decode_request_buf(&mut buf, &limits()).unwrap().unwrap();
    assert_eq!(second.args, args(&["PING"]));
    assert_eq!(decode_request_buf(&mut buf, &limits()), Ok(None));
    assert_eq!(&buf[..], b"*1\r\n$4\r\nPI");
}

#[test]
fn request_decoder_resumes_byte_by_byte() {
    let wire = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nv\r\nv!\r\n\r\nGET k\r\n*0\r\n";
    let mut decoder = RequestDecoder::new(limits());
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for &byte in wire {
        buf.extend_from_slice(&[byte]);
        while let Some(req) = decoder.decode(&mut buf).unwrap() {
            out.push(req.args);
        }
    }
    assert_eq!(
        out,
        vec![args(&["SET", "k", "v\r\nv!"]), args(&["GET", "k"])]
    );
    assert!(buf.is_empty());
}

#[test]
fn request_decoder_reports_over_long_line_while_resuming() {
    let mut decoder = RequestDecoder::new(small_limits());
    let mut buf = BytesMut::new();
    for _ in 0..16 {
        buf.extend_from_slice(b"a");
        assert_eq!(decoder.decode(&mut buf), Ok(None));
    }
    buf.extend_from_slice(b"a");
    assert_eq!(
        decoder.decode(&mut buf),
        Err(ProtocolError::TooBigInlineRequest)
    );
}

#[test]
fn request_encode_round_trips() {
    let req = Request::new(args(&["SET", "k", ""]));
    let mut buf = BytesMut::new();
    req.encode(&mut buf);
    assert_eq!(&buf[..], b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n");
    assert_eq!(
        decode_request(&buf, &limits()).unwrap(),
        Some((req.clone(), buf.len()))
    );
    assert_eq!(req.name(), Some(&Bytes::from_static(b"SET")));
    let frame = decode_frame(&buf, &limits()).unwrap().unwrap().0;
    assert_eq!(frame.to_bytes(ProtocolVersion::Resp2), buf.freeze());
}

#[test]
fn unauthenticated_clients_get_tighter_bounds() {
    let mut decoder = RequestDecoder::new(limits());
    decoder.set_unauthenticated(true);
    // AUTH with a user fits, as does the longest HELLO.
    let mut buf = BytesMut::from(&b"*3\r\n$4\r\nAUTH\r\n$1\r\nu\r\n$1\r\np\r\n"[..]);
    assert_eq!(
        decoder.decode(&mut buf).unwrap().unwrap().args,
        args(&["AUTH", "u", "p"])
    );
    let mut buf = BytesMut::from(&b"*11\r\n"[..]);
    assert_eq!(
        decoder.decode(&mut buf).unwrap_err(),
        ProtocolError::UnauthenticatedMultibulkLength
    );
    let mut buf = BytesMut::from(&b"*1\r\n$16385\r\n"[..]);
    assert_eq!(
        decoder.decode(&mut buf).unwrap_err(),
        ProtocolError::UnauthenticatedBulkLength
    );
    // An invalid length is still reported as such.
    let mut buf = BytesMut::from(&b"*1\r\n$-5\r\n"[..]);
    assert_eq!(
        decoder.decode(&mut buf).unwrap_err(),
        ProtocolError::InvalidBulkLength
    );
    // Once authenticated, the usual limits.
    decoder.set_unauthenticated(false);
    let mut buf = BytesMut::from(&b"*11\r\n"[..]);
    assert!(decoder.decode(&mut buf).unwrap().is_none());
}
