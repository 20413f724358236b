//! RESP2/RESP3 frames and their encoder.
//!
//! [`Frame`] models every RESP3 type plus the RESP2 null array and Redis's
//! repeated pairs (nested in RESP3, flat in RESP2). [`encode`]
//! writes a frame in either dialect; in RESP2 the RESP3-only types are
//! downgraded exactly the way Redis downgrades its own replies.

use std::fmt::{self, Write as _};

use bytes::{BufMut, Bytes, BytesMut};

/// Which RESP dialect a connection speaks (switched by `HELLO`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ProtocolVersion {
    /// RESP2, the default for every new connection.
    #[default]
    Resp2,
    /// RESP3, negotiated with `HELLO 3`.
    Resp3,
}

impl ProtocolVersion {
    /// Maps a `HELLO` protocol version number (2 or 3) to a version.
    pub fn from_protover(protover: i64) -> Option<Self> {
        match protover {
            2 => Some(Self::Resp2),
            3 => Some(Self::Resp3),
            _ => None,
        }
    }

    /// The protocol version number as `HELLO` reports it.
    pub fn protover(self) -> i64 {
        match self {
            Self::Resp2 => 2,
            Self::Resp3 => 3,
        }
    }
}

/// One RESP value, RESP2 or RESP3. Strings are binary-safe [`Bytes`].
/// Serde support exists because openraft requires its apply results to be
/// serializable; replies never leave the node that applied them that way.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Frame {
    /// Simple string (`+OK`). CR and LF are replaced by spaces on encode.
    Simple(Bytes),
    /// Simple error (`-ERR ...`). CR and LF are replaced by spaces on encode.
    Error(Bytes),
    /// Signed 64-bit integer (`:42`).
    Integer(i64),
    /// Bulk string (`$3\r\nfoo`).
    Bulk(Bytes),
    /// Null: `$-1` in RESP2, `_` in RESP3.
    Null,
    /// RESP2 null array `*-1` (`_` in RESP3).
    NullArray,
    /// Array (`*N`).
    Array(Vec<Frame>),
    /// RESP3 map (`%N`); a flat array of 2N items in RESP2.
    Map(Vec<(Frame, Frame)>),
    /// RESP3 set (`~N`); an array in RESP2.
    Set(Vec<Frame>),
    /// Pairs that may repeat, Redis's shape for `HRANDFIELD … WITHVALUES`
    /// and `… WITHSCORES` replies: an array of two-element arrays in
    /// RESP3, a flat array of 2N items in RESP2. Not a wire type of its
    /// own (the decoder never produces it).
    Pairs(Vec<(Frame, Frame)>),
    /// RESP3 double (`,1.5`); a bulk string in RESP2. Printed as Redis 7.0
    /// does, with `%.17g` ([`double_text`]).
    Double(f64),
    /// RESP3 boolean (`#t`); the integer 1 or 0 in RESP2.
    Boolean(bool),
    /// RESP3 big number (`(123...`); a bulk string in RESP2.
    BigNumber(Bytes),
    /// RESP3 verbatim string (`=N\r\ntxt:...`); a bulk of `text` in RESP2.
    Verbatim {
        /// Three-byte format such as `txt` or `mkd`.
        format: [u8; 3],
        /// The text itself, without the `fmt:` prefix.
        text: Bytes,
    },
    /// RESP3 blob error (`!N`); a simple error in RESP2.
    BlobError(Bytes),
    /// RESP3 out-of-band push (`>N`); an array in RESP2.
    Push(Vec<Frame>),
}

impl Frame {
    /// The `+OK` reply.
    pub fn ok() -> Self {
        Self::Simple(Bytes::from_static(b"OK"))
    }

    /// The `+PONG` reply.
    pub fn pong() -> Self {
        Self::Simple(Bytes::from_static(b"PONG"))
    }

    /// A simple string reply.
    pub fn simple(text: impl Into<Bytes>) -> Self {
        Self::Simple(text.into())
    }

    /// A simple error reply; `msg` should start with an error code such as `ERR`.
    pub fn error(msg: impl Into<Bytes>) -> Self {
        Self::Error(msg.into())
    }

    /// A bulk string reply.
    pub fn bulk(data: impl Into<Bytes>) -> Self {
        Self::Bulk(data.into())
    }

    /// An integer reply.
    pub fn integer(n: i64) -> Self {
        Self::Integer(n)
    }

    /// An array reply.
    pub fn array(items: Vec<Frame>) -> Self {
        Self::Array(items)
    }

    /// A verbatim string with the `txt` format.
    pub fn verbatim_text(text: impl Into<Bytes>) -> Self {
        Self::Verbatim {
            format: *b"txt",
            text: text.into(),
        }
    }

    /// Appends the wire form of this frame to `out`; see [`encode`].
    pub fn encode(&self, version: ProtocolVersion, out: &mut BytesMut) {
        encode(self, version, out);
    }

    /// Returns the wire form of this frame as a fresh buffer.
    pub fn to_bytes(&self, version: ProtocolVersion) -> Bytes {
        let mut out = BytesMut::new();
        encode(self, version, &mut out);
        out.freeze()
    }
}

/// Appends the wire form of `frame` in `version` to `out`.
///
/// In RESP2 the RESP3-only types are downgraded as Redis does: `Null` →
/// `$-1`, `Map` → flat array, `Set`/`Push` → array, `Boolean` → `:1`/`:0`,
/// `Double`/`BigNumber` → bulk string, `Verbatim` → bulk of its text,
/// `BlobError` → simple error and `Pairs` → flat array. In RESP3 both nulls
/// are written as `_`.
pub fn encode(frame: &Frame, version: ProtocolVersion, out: &mut BytesMut) {
    let resp3 = version == ProtocolVersion::Resp3;
    match frame {
        Frame::Simple(text) => put_line(out, b'+', text),
        Frame::Error(text) => put_line(out, b'-', text),
        Frame::Integer(n) => put_integer_line(out, b':', *n),
        Frame::Bulk(data) => put_blob(out, b'$', data),
        Frame::Null if resp3 => out.put_slice(b"_\r\n"),
        Frame::Null => out.put_slice(b"$-1\r\n"),
        Frame::NullArray if resp3 => out.put_slice(b"_\r\n"),
        Frame::NullArray => out.put_slice(b"*-1\r\n"),
        Frame::Array(items) => put_aggregate(out, b'*', items, version),
        Frame::Map(pairs) => encode_map(pairs, version, out),
        Frame::Pairs(pairs) => encode_pairs(pairs, version, out),
        Frame::Set(items) => put_aggregate(out, if resp3 { b'~' } else { b'*' }, items, version),
        Frame::Push(items) => put_aggregate(out, if resp3 { b'>' } else { b'*' }, items, version),
        Frame::Double(d) => encode_double(*d, resp3, out),
        Frame::Boolean(b) if resp3 => out.put_slice(if *b { b"#t\r\n" } else { b"#f\r\n" }),
        Frame::Boolean(b) => put_integer_line(out, b':', i64::from(*b)),
        Frame::BigNumber(n) if resp3 => put_line(out, b'(', n),
        Frame::BigNumber(n) => put_blob(out, b'$', n),
        Frame::Verbatim { format, text } if resp3 => encode_verbatim(format, text, out),
        Frame::Verbatim { text, .. } => put_blob(out, b'$', text),
        Frame::BlobError(text) if resp3 => put_blob(out, b'!', text),
        Frame::BlobError(text) => put_line(out, b'-', text),
    }
}

/// Writes `prefix`, `text` with CR/LF replaced by spaces, and CRLF.
///
/// Replacing line breaks keeps user-supplied text (echoed in error
/// messages) from injecting extra replies, as Redis does.
fn put_line(out: &mut BytesMut, prefix: u8, text: &[u8]) {
    out.reserve(text.len().saturating_add(3));
    out.put_u8(prefix);
    if text.iter().any(|&b| b == b'\r' || b == b'\n') {
        out.extend(
            text.iter()
                .map(|&b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
        );
    } else {
        out.put_slice(text);
    }
    out.put_slice(b"\r\n");
}

/// Writes a length-prefixed blob: `prefix`, length, CRLF, data, CRLF.
fn put_blob(out: &mut BytesMut, prefix: u8, data: &[u8]) {
    put_length_line(out, prefix, data.len());
    out.reserve(data.len().saturating_add(2));
    out.put_slice(data);
    out.put_slice(b"\r\n");
}

/// Writes an aggregate header and then each item.
fn put_aggregate(out: &mut BytesMut, prefix: u8, items: &[Frame], version: ProtocolVersion) {
    put_length_line(out, prefix, items.len());
    for item in items {
        encode(item, version, out);
    }
}

/// Writes a map as `%N` (RESP3) or as a flat `*2N` array (RESP2).
fn encode_map(pairs: &[(Frame, Frame)], version: ProtocolVersion, out: &mut BytesMut) {
    match version {
        ProtocolVersion::Resp3 => put_length_line(out, b'%', pairs.len()),
        ProtocolVersion::Resp2 => put_length_line(out, b'*', pairs.len().saturating_mul(2)),
    }
    for (key, value) in pairs {
        encode(key, version, out);
        encode(value, version, out);
    }
}

/// Writes pairs as `*N` of `*2` arrays (RESP3) or one flat `*2N` array
/// (RESP2).
fn encode_pairs(pairs: &[(Frame, Frame)], version: ProtocolVersion, out: &mut BytesMut) {
    let resp3 = version == ProtocolVersion::Resp3;
    let len = if resp3 {
        pairs.len()
    } else {
        pairs.len().saturating_mul(2)
    };
    put_length_line(out, b'*', len);
    for (first, second) in pairs {
        if resp3 {
            out.put_slice(b"*2\r\n");
        }
        encode(first, version, out);
        encode(second, version, out);
    }
}

/// A double's text as Redis 7.0 prints it (see [`Frame::Double`]): `%.17g`,
/// `inf` or `-inf` — for replies that carry a score as a plain bulk string
/// (`ZSCAN`).
pub fn double_text(d: f64) -> Bytes {
    Bytes::copy_from_slice(DoubleText::new(d).as_bytes())
}

/// Writes a double as `,text` (RESP3) or as a bulk string (RESP2).
fn encode_double(d: f64, resp3: bool, out: &mut BytesMut) {
    let text = DoubleText::new(d);
    if resp3 {
        put_line(out, b',', text.as_bytes());
    } else {
        put_blob(out, b'$', text.as_bytes());
    }
}

/// Writes `=len\r\nfmt:text\r\n`.
fn encode_verbatim(format: &[u8; 3], text: &[u8], out: &mut BytesMut) {
    put_length_line(out, b'=', text.len().saturating_add(4));
    out.reserve(text.len().saturating_add(6));
    out.put_slice(format);
    out.put_u8(b':');
    out.put_slice(text);
    out.put_slice(b"\r\n");
}

/// Writes `prefix`, a non-negative length and CRLF.
fn put_length_line(out: &mut BytesMut, prefix: u8, len: usize) {
    out.put_u8(prefix);
    put_u64(out, u64::try_from(len).unwrap_or(u64::MAX));
    out.put_slice(b"\r\n");
}

/// Writes `prefix`, a signed integer and CRLF.
fn put_integer_line(out: &mut BytesMut, prefix: u8, n: i64) {
    out.put_u8(prefix);
    if n < 0 {
        out.put_u8(b'-');
    }
    put_u64(out, n.unsigned_abs());
    out.put_slice(b"\r\n");
}

/// Writes the decimal digits of `n` without allocating.
fn put_u64(out: &mut BytesMut, mut n: u64) {
    // u64::MAX has 20 decimal digits.
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start = start.saturating_sub(1);
        if let Some(slot) = digits.get_mut(start) {
            // `n % 10` is below 10, so the cast cannot truncate.
            *slot = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 || start == 0 {
            break;
        }
    }
    out.put_slice(digits.get(start..).unwrap_or_default());
}

/// A double's RESP text as Redis 7.0 writes it (`addReplyDouble`): `inf`,
/// `-inf`, `nan`, or C's `%.17g` — 17 significant digits (so it always
/// reads back as the same value), trailing zeros dropped, exponent form
/// below 1e-4 and from 1e17. Formatted on the stack.
struct DoubleText {
    buf: [u8; 48],
    len: usize,
}

/// Significant digits of `%.17g`.
const DOUBLE_DIGITS: usize = 17;

impl DoubleText {
    fn new(d: f64) -> Self {
        let mut text = Self {
            buf: [0; 48],
            len: 0,
        };
        // Writes cannot fail: the longest text, `-d.dddddddddddddddde-308`,
        // is 24 bytes.
        let _ = if d.is_nan() {
            text.write_str("nan")
        } else if d.is_infinite() {
            text.write_str(if d > 0.0 { "inf" } else { "-inf" })
        } else {
            text.write_g17(d)
        };
        text
    }

    /// `%.17g` of a finite `d`, from Rust's exactly rounded `{:.16e}`.
    fn write_g17(&mut self, d: f64) -> fmt::Result {
        let mut sci = DoubleText {
            buf: [0; 48],
            len: 0,
        };
        write!(sci, "{d:.16e}")?;
        let sci = sci.as_bytes();
        let (negative, sci) = match sci.split_first() {
            Some((b'-', rest)) => (true, rest),
            _ => (false, sci),
        };
        let e_at = sci.iter().position(|&b| b == b'e').ok_or(fmt::Error)?;
        let (mantissa, exp) = sci.split_at(e_at);
        let exp: i32 = std::str::from_utf8(exp.get(1..).unwrap_or_default())
            .map_err(|_| fmt::Error)?
            .parse()
            .map_err(|_| fmt::Error)?;
        let mut digits = [b'0'; DOUBLE_DIGITS];
        for (n, &b) in mantissa.iter().filter(|b| b.is_ascii_digit()).enumerate() {
            *digits.get_mut(n).ok_or(fmt::Error)? = b;
        }
        if negative {
            self.write_str("-")?;
        }
        let digit = |i: usize| char::from(digits.get(i).copied().unwrap_or(b'0'));
        // The digits that matter: trailing zeros are dropped.
        let significant = digits.iter().rposition(|&b| b != b'0').map_or(1, |i| i + 1);
        if !(-4..DOUBLE_DIGITS as i32).contains(&exp) {
            self.write_char(digit(0))?;
            if significant > 1 {
                self.write_char('.')?;
                (1..significant).try_for_each(|i| self.write_char(digit(i)))?;
            }
            let sign = if exp < 0 { '-' } else { '+' };
            return write!(self, "e{sign}{:02}", exp.unsigned_abs());
        }
        if exp < 0 {
            self.write_str("0.")?;
            (1..exp.unsigned_abs()).try_for_each(|_| self.write_char('0'))?;
            return (0..significant).try_for_each(|i| self.write_char(digit(i)));
        }
        // 0 <= exp < 17: `exp + 1` integer digits, then the fraction.
        let int_digits = exp.unsigned_abs() as usize + 1;
        (0..int_digits).try_for_each(|i| self.write_char(digit(i)))?;
        if significant > int_digits {
            self.write_char('.')?;
            (int_digits..significant).try_for_each(|i| self.write_char(digit(i)))?;
        }
        Ok(())
    }

    fn as_bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or_default()
    }
}

impl fmt::Write for DoubleText {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len.checked_add(s.len()).ok_or(fmt::Error)?;
        let dst = self.buf.get_mut(self.len..end).ok_or(fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn wire(frame: &Frame, version: ProtocolVersion) -> Vec<u8> {
        frame.to_bytes(version).to_vec()
    }

    fn both(frame: &Frame) -> (Vec<u8>, Vec<u8>) {
        (
            wire(frame, ProtocolVersion::Resp2),
            wire(frame, ProtocolVersion::Resp3),
        )
    }

    #[test]
    fn scalars_encode_identically_in_both_versions() {
        let cases: Vec<(Frame, &[u8])> = vec![
            (Frame::ok(), b"+OK\r\n"),
            (Frame::pong(), b"+PONG\r\n"),
            (Frame::error("ERR bad"), b"-ERR bad\r\n"),
            (Frame::integer(0), b":0\r\n"),
            (Frame::integer(-42), b":-42\r\n"),
            (Frame::integer(i64::MIN), b":-9223372036854775808\r\n"),
            (Frame::integer(i64::MAX), b":9223372036854775807\r\n"),
            (Frame::bulk("foo"), b"$3\r\nfoo\r\n"),
            (Frame::bulk(""), b"$0\r\n\r\n"),
            (
                Frame::array(vec![Frame::integer(1), Frame::bulk("a")]),
                b"*2\r\n:1\r\n$1\r\na\r\n",
            ),
            (Frame::array(vec![]), b"*0\r\n"),
        ];
        for (frame, expected) in cases {
            let (r2, r3) = both(&frame);
            assert_eq!(r2, expected, "{frame:?}");
            assert_eq!(r3, expected, "{frame:?}");
        }
    }

    #[test]
    fn nulls() {
        assert_eq!(both(&Frame::Null), (b"$-1\r\n".to_vec(), b"_\r\n".to_vec()));
        assert_eq!(
            both(&Frame::NullArray),
            (b"*-1\r\n".to_vec(), b"_\r\n".to_vec())
        );
    }

    #[test]
    fn map_is_flattened_in_resp2() {
        let map = Frame::Map(vec![(Frame::bulk("k"), Frame::integer(1))]);
        let (r2, r3) = both(&map);
        assert_eq!(r2, b"*2\r\n$1\r\nk\r\n:1\r\n");
        assert_eq!(r3, b"%1\r\n$1\r\nk\r\n:1\r\n");
    }

    #[test]
    fn pairs_nest_in_resp3_and_flatten_in_resp2() {
        let pairs = Frame::Pairs(vec![
            (Frame::bulk("a"), Frame::bulk("1")),
            (Frame::bulk("a"), Frame::bulk("1")),
        ]);
        let (r2, r3) = both(&pairs);
        assert_eq!(r2, b"*4\r\n$1\r\na\r\n$1\r\n1\r\n$1\r\na\r\n$1\r\n1\r\n");
        assert_eq!(
            r3,
            b"*2\r\n*2\r\n$1\r\na\r\n$1\r\n1\r\n*2\r\n$1\r\na\r\n$1\r\n1\r\n"
        );
        assert_eq!(
            both(&Frame::Pairs(vec![])),
            (b"*0\r\n".to_vec(), b"*0\r\n".to_vec())
        );
    }

    #[test]
    fn set_and_push_become_arrays_in_resp2() {
        let set = Frame::Set(vec![Frame::simple("a")]);
        assert_eq!(
            both(&set),
            (b"*1\r\n+a\r\n".to_vec(), b"~1\r\n+a\r\n".to_vec())
        );
        let push = Frame::Push(vec![Frame::simple("a")]);
        assert_eq!(
            both(&push),
            (b"*1\r\n+a\r\n".to_vec(), b">1\r\n+a\r\n".to_vec())
        );
    }

    #[test]
    fn boolean() {
        assert_eq!(
            both(&Frame::Boolean(true)),
            (b":1\r\n".to_vec(), b"#t\r\n".to_vec())
        );
        assert_eq!(
            both(&Frame::Boolean(false)),
            (b":0\r\n".to_vec(), b"#f\r\n".to_vec())
        );
    }

    #[test]
    fn double() {
        assert_eq!(
            both(&Frame::Double(1.5)),
            (b"$3\r\n1.5\r\n".to_vec(), b",1.5\r\n".to_vec())
        );
        assert_eq!(
            wire(&Frame::Double(f64::INFINITY), ProtocolVersion::Resp3),
            b",inf\r\n"
        );
        assert_eq!(
            wire(&Frame::Double(f64::NEG_INFINITY), ProtocolVersion::Resp3),
            b",-inf\r\n"
        );
        assert_eq!(
            wire(&Frame::Double(f64::NAN), ProtocolVersion::Resp3),
            b",nan\r\n"
        );
        assert_eq!(
            wire(&Frame::Double(f64::MIN_POSITIVE), ProtocolVersion::Resp3),
            b",2.2250738585072014e-308\r\n"
        );
    }

    /// Redis 7.0 prints doubles with `%.17g`; expected texts from C's printf.
    #[test]
    fn doubles_print_like_percent_17g() {
        let cases: &[(f64, &str)] = &[
            (1.1, "1.1000000000000001"),
            (0.1, "0.10000000000000001"),
            (1e17, "1e+17"),
            (1e16, "10000000000000000"),
            (123456789012345678.0, "1.2345678901234568e+17"),
            (1e-5, "1.0000000000000001e-05"),
            (0.0001, "0.0001"),
            (1.5, "1.5"),
            (3.0, "3"),
            (0.0, "0"),
            (-0.0, "-0"),
            (1e300, "1.0000000000000001e+300"),
            (5e-324, "4.9406564584124654e-324"),
            (-2.5, "-2.5"),
            (0.00012345, "0.00012344999999999999"),
            (1.0 / 3.0, "0.33333333333333331"),
            (17179869185.5, "17179869185.5"),
            (9007199254740992.0, "9007199254740992"),
            (f64::MAX, "1.7976931348623157e+308"),
            (-1e-300, "-1e-300"),
        ];
        for (d, text) in cases {
            assert_eq!(DoubleText::new(*d).as_bytes(), text.as_bytes(), "{d:?}");
        }
    }

    #[test]
    fn pairs_of_scores_carry_doubles() {
        let pairs = Frame::Pairs(vec![(Frame::bulk("a"), Frame::Double(1.5))]);
        assert_eq!(
            both(&pairs),
            (
                b"*2\r\n$1\r\na\r\n$3\r\n1.5\r\n".to_vec(),
                b"*1\r\n*2\r\n$1\r\na\r\n,1.5\r\n".to_vec()
            )
        );
        assert_eq!(
            both(&Frame::Pairs(vec![])),
            (b"*0\r\n".to_vec(), b"*0\r\n".to_vec())
        );
    }

    #[test]
    fn big_number() {
        let n = Frame::BigNumber(Bytes::from_static(b"-12345678901234567890"));
        assert_eq!(
            both(&n),
            (
                b"$21\r\n-12345678901234567890\r\n".to_vec(),
                b"(-12345678901234567890\r\n".to_vec()
            )
        );
    }

    #[test]
    fn verbatim() {
        let v = Frame::verbatim_text("hi");
        assert_eq!(
            both(&v),
            (b"$2\r\nhi\r\n".to_vec(), b"=6\r\ntxt:hi\r\n".to_vec())
        );
    }

    #[test]
    fn blob_error() {
        let e = Frame::BlobError(Bytes::from_static(b"ERR x\r\ny"));
        assert_eq!(
            both(&e),
            (b"-ERR x  y\r\n".to_vec(), b"!8\r\nERR x\r\ny\r\n".to_vec())
        );
    }

    #[test]
    fn line_frames_cannot_inject_replies() {
        let e = Frame::error("ERR a\r\n+OK");
        assert_eq!(wire(&e, ProtocolVersion::Resp2), b"-ERR a  +OK\r\n");
        let s = Frame::simple("a\nb");
        assert_eq!(wire(&s, ProtocolVersion::Resp3), b"+a b\r\n");
    }

    #[test]
    fn protover_mapping() {
        assert_eq!(
            ProtocolVersion::from_protover(2),
            Some(ProtocolVersion::Resp2)
        );
        assert_eq!(
            ProtocolVersion::from_protover(3),
            Some(ProtocolVersion::Resp3)
        );
        assert_eq!(ProtocolVersion::from_protover(4), None);
        assert_eq!(ProtocolVersion::Resp3.protover(), 3);
        assert_eq!(ProtocolVersion::default(), ProtocolVersion::Resp2);
    }

    #[test]
    fn put_u64_formats_all_digit_counts() {
        let mut n = 1u64;
        for _ in 0..19 {
            let mut out = BytesMut::new();
            put_u64(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
            n *= 10;
        }
        let mut out = BytesMut::new();
        put_u64(&mut out, u64::MAX);
        assert_eq!(out, u64::MAX.to_string().as_bytes());
    }
}
