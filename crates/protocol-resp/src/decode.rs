//! No-I/O decoders: full RESP2/RESP3 frames and server requests.
//!
//! Every length read from the wire is checked against [`DecodeLimits`]
//! before it is used for arithmetic or allocation, and pre-allocation is
//! capped at [`MAX_PREALLOC_ITEMS`] whatever the announced count.
//! All decoders return `Ok(None)` when the input is an incomplete prefix.

use std::ops::Range;

use bytes::{Buf, Bytes, BytesMut};

use crate::error::{LimitsError, ProtocolError};
use crate::frame::Frame;
use crate::inline::split_args;
use crate::num::parse_i64;

/// Default largest bulk string: 1 MiB. Larger than the store's 64 KiB value
/// limit so that over-large values get a friendly command error instead of
/// a protocol error.
pub const DEFAULT_MAX_BULK_BYTES: usize = 1024 * 1024;
/// Default largest array/multibulk element count (Redis's historic limit).
pub const DEFAULT_MAX_ARRAY_LEN: usize = 1024 * 1024;
/// Default largest inline command line or length line: 64 KiB, Redis's
/// `PROTO_INLINE_MAX_SIZE`.
pub const DEFAULT_MAX_INLINE_BYTES: usize = 64 * 1024;
/// Default deepest aggregate nesting accepted by [`decode_frame`].
pub const DEFAULT_MAX_NESTING_DEPTH: usize = 32;

/// Hard ceiling for `max_bulk_bytes` (Redis's default `proto-max-bulk-len`).
pub const MAX_BULK_BYTES_CEILING: usize = 512 * 1024 * 1024;
/// Hard ceiling for `max_array_len` (Redis's `INT_MAX`).
pub const MAX_ARRAY_LEN_CEILING: usize = i32::MAX as usize;
/// Hard ceiling for `max_inline_bytes`.
pub const MAX_INLINE_BYTES_CEILING: usize = 512 * 1024 * 1024;
/// Hard ceiling for `max_nesting_depth`; the frame decoder recurses once
/// per level, so this also bounds its stack use even if the configured
/// limit was never validated.
pub const MAX_NESTING_DEPTH_CEILING: usize = 256;
/// Most elements reserved up front for any announced count.
pub const MAX_PREALLOC_ITEMS: usize = 1024;
/// Largest multibulk count a client that must still authenticate may
/// announce (Redis's: `AUTH user pass` and `HELLO 3 AUTH user pass SETNAME
/// n` fit), so an unauthenticated client cannot make the server reserve or
/// buffer much.
pub const UNAUTHENTICATED_MAX_ARRAY_LEN: usize = 10;
/// Largest bulk argument such a client may send (Redis's 16 KiB).
pub const UNAUTHENTICATED_MAX_BULK_BYTES: usize = 16 * 1024;

/// Bounds on what the decoders accept from the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Largest bulk string (`$`, `!`, `=`) payload in bytes.
    pub max_bulk_bytes: usize,
    /// Largest element count of an array, set, push or multibulk request
    /// (pairs for a map).
    pub max_array_len: usize,
    /// Longest line: inline command, length line or simple string.
    pub max_inline_bytes: usize,
    /// Deepest aggregate nesting in [`decode_frame`].
    pub max_nesting_depth: usize,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self {
            max_bulk_bytes: DEFAULT_MAX_BULK_BYTES,
            max_array_len: DEFAULT_MAX_ARRAY_LEN,
            max_inline_bytes: DEFAULT_MAX_INLINE_BYTES,
            max_nesting_depth: DEFAULT_MAX_NESTING_DEPTH,
        }
    }
}

impl DecodeLimits {
    /// Checks that every limit is non-zero and within its ceiling.
    pub fn validate(&self) -> Result<(), LimitsError> {
        check_limit(
            "max_bulk_bytes",
            self.max_bulk_bytes,
            MAX_BULK_BYTES_CEILING,
        )?;
        check_limit("max_array_len", self.max_array_len, MAX_ARRAY_LEN_CEILING)?;
        check_limit(
            "max_inline_bytes",
            self.max_inline_bytes,
            MAX_INLINE_BYTES_CEILING,
        )?;
        check_limit(
            "max_nesting_depth",
            self.max_nesting_depth,
            MAX_NESTING_DEPTH_CEILING,
        )
    }

    fn nesting_limit(&self) -> usize {
        self.max_nesting_depth.min(MAX_NESTING_DEPTH_CEILING)
    }
}

fn check_limit(name: &'static str, value: usize, max: usize) -> Result<(), LimitsError> {
    if value == 0 {
        Err(LimitsError::Zero { name })
    } else if value > max {
        Err(LimitsError::TooLarge { name, value, max })
    } else {
        Ok(())
    }
}

/// A command as a server receives it: `args[0]` is the command name.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Request {
    /// The command name followed by its arguments; never empty when produced
    /// by a decoder.
    pub args: Vec<Bytes>,
}

impl Request {
    /// Builds a request from its arguments.
    pub fn new(args: Vec<Bytes>) -> Self {
        Self { args }
    }

    /// The command name, if any.
    pub fn name(&self) -> Option<&Bytes> {
        self.args.first()
    }

    /// Appends the request as a RESP multibulk of bulk strings, the way a
    /// client sends it.
    pub fn encode(&self, out: &mut BytesMut) {
        let items = self.args.iter().cloned().map(Frame::Bulk).collect();
        Frame::Array(items).encode(crate::ProtocolVersion::Resp2, out);
    }
}

// ---------------------------------------------------------------------------
// Line scanning shared by both decoders.
// ---------------------------------------------------------------------------

/// Why a line could not be returned.
enum LineStop {
    /// No terminator yet; more bytes may complete the line.
    Incomplete,
    /// The line is already longer than allowed.
    TooLong,
}

/// Remembers how far the search for the terminator of the line starting at
/// `line_start` has got, so that a resumed search does not rescan bytes.
/// Only valid while the buffer is appended to, never consumed.
#[derive(Debug, Clone, Copy, Default)]
struct ScanHint {
    line_start: usize,
    scanned_to: usize,
}

impl ScanHint {
    fn resume_point(&self, start: usize) -> usize {
        if self.line_start == start {
            self.scanned_to.max(start)
        } else {
            start
        }
    }
}

/// Finds the CR ending the line that starts at `start`, whose content may be
/// at most `max_len` bytes. The byte after the CR is guaranteed to exist;
/// callers check that it is LF.
fn find_cr(
    buf: &[u8],
    start: usize,
    max_len: usize,
    hint: &mut ScanHint,
) -> Result<usize, LineStop> {
    find_terminator(buf, start, max_len, b'\r', hint).and_then(|cr| {
        if cr + 1 < buf.len() {
            Ok(cr)
        } else {
            *hint = ScanHint {
                line_start: start,
                scanned_to: cr,
            };
            Err(LineStop::Incomplete)
        }
    })
}

/// Finds the first `terminator` within `max_len + 1` bytes of `start`.
fn find_terminator(
    buf: &[u8],
    start: usize,
    max_len: usize,
    terminator: u8,
    hint: &mut ScanHint,
) -> Result<usize, LineStop> {
    let window_end = start
        .saturating_add(max_len)
        .saturating_add(1)
        .min(buf.len());
    let from = hint.resume_point(start).min(window_end);
    let window = buf.get(from..window_end).unwrap_or_default();
    if let Some(offset) = window.iter().position(|&b| b == terminator) {
        return Ok(from + offset);
    }
    if buf.len().saturating_sub(start) > max_len {
        Err(LineStop::TooLong)
    } else {
        *hint = ScanHint {
            line_start: start,
            scanned_to: window_end,
        };
        Err(LineStop::Incomplete)
    }
}

fn has_lf_after(buf: &[u8], cr: usize) -> bool {
    buf.get(cr + 1) == Some(&b'\n')
}

/// Parses a length line's digits: `Ok(None)` for exactly `-1`.
fn parse_length(
    digits: &[u8],
    max: usize,
    invalid: ProtocolError,
) -> Result<Option<usize>, ProtocolError> {
    match parse_i64(digits) {
        Some(-1) => Ok(None),
        Some(n) => usize::try_from(n)
            .ok()
            .filter(|&len| len <= max)
            .map(Some)
            .ok_or(invalid),
        None => Err(invalid),
    }
}

/// Checks that `len` payload bytes and a CRLF follow `start`; returns the
/// payload range and the position after the CRLF.
fn blob_range(
    buf: &[u8],
    start: usize,
    len: usize,
) -> Result<Option<(Range<usize>, usize)>, ProtocolError> {
    let end = start
        .checked_add(len)
        .ok_or(ProtocolError::InvalidBulkLength)?;
    let next = end.checked_add(2).ok_or(ProtocolError::InvalidBulkLength)?;
    if buf.len() < next {
        return Ok(None);
    }
    if buf.get(end..next) != Some(&b"\r\n"[..]) {
        return Err(ProtocolError::MissingBulkTerminator);
    }
    Ok(Some((start..end, next)))
}

// ---------------------------------------------------------------------------
// Full RESP2/RESP3 frame decoder.
// ---------------------------------------------------------------------------

/// Why frame decoding stopped.
enum Stop {
    Incomplete,
    Error(ProtocolError),
}

impl From<ProtocolError> for Stop {
    fn from(e: ProtocolError) -> Self {
        Self::Error(e)
    }
}

type Step<T> = Result<T, Stop>;

/// Decodes one RESP2 or RESP3 frame from the start of `buf`.
///
/// Returns the frame and the number of bytes it used, `Ok(None)` if `buf`
/// is an incomplete prefix, or an error for malformed or over-limit input.
/// `$-1` decodes to [`Frame::Null`], `*-1` to [`Frame::NullArray`];
/// attributes (`|`) and streamed strings are rejected.
pub fn decode_frame(
    buf: &[u8],
    limits: &DecodeLimits,
) -> Result<Option<(Frame, usize)>, ProtocolError> {
    let decoder = FrameDecoder { buf, limits };
    match decoder.frame(0, 0) {
        Ok(decoded) => Ok(Some(decoded)),
        Err(Stop::Incomplete) => Ok(None),
        Err(Stop::Error(e)) => Err(e),
    }
}

struct FrameDecoder<'a> {
    buf: &'a [u8],
    limits: &'a DecodeLimits,
}

impl FrameDecoder<'_> {
    /// Decodes the frame at `pos`, enclosed by `depth` aggregates.
    fn frame(&self, pos: usize, depth: usize) -> Step<(Frame, usize)> {
        let kind = *self.buf.get(pos).ok_or(Stop::Incomplete)?;
        let body = pos + 1;
        match kind {
            b'+' => self.text_line(body, Frame::Simple),
            b'-' => self.text_line(body, Frame::Error),
            b'(' => self.big_number(body),
            b':' => self.integer(body),
            b',' => self.double(body),
            b'#' => self.boolean(body),
            b'_' => self.null(body),
            b'$' => self.bulk(body),
            b'!' => self.blob_error(body),
            b'=' => self.verbatim(body),
            b'*' => self.array(body, depth),
            b'~' => self.aggregate(body, depth).map(|(v, n)| (Frame::Set(v), n)),
            b'>' => self
                .aggregate(body, depth)
                .map(|(v, n)| (Frame::Push(v), n)),
            b'%' => self.map(body, depth),
            b'|' => Err(ProtocolError::AttributesNotSupported.into()),
            byte => Err(ProtocolError::InvalidFrameType { byte }.into()),
        }
    }

    /// Reads a CRLF line; returns its content and the position after it.
    fn line(&self, start: usize, too_long: ProtocolError) -> Step<(&[u8], usize)> {
        let cr = match find_cr(
            self.buf,
            start,
            self.limits.max_inline_bytes,
            &mut ScanHint::default(),
        ) {
            Ok(cr) => cr,
            Err(LineStop::Incomplete) => return Err(Stop::Incomplete),
            Err(LineStop::TooLong) => return Err(too_long.into()),
        };
        if !has_lf_after(self.buf, cr) {
            return Err(ProtocolError::InvalidLineTerminator.into());
        }
        Ok((self.buf.get(start..cr).unwrap_or_default(), cr + 2))
    }

    fn text_line(&self, start: usize, make: fn(Bytes) -> Frame) -> Step<(Frame, usize)> {
        let (text, next) = self.line(start, ProtocolError::LineTooLong)?;
        Ok((make(Bytes::copy_from_slice(text)), next))
    }

    fn integer(&self, start: usize) -> Step<(Frame, usize)> {
        let (text, next) = self.line(start, ProtocolError::InvalidInteger)?;
        let n = parse_i64(text).ok_or(ProtocolError::InvalidInteger)?;
        Ok((Frame::Integer(n), next))
    }

    fn double(&self, start: usize) -> Step<(Frame, usize)> {
        let (text, next) = self.line(start, ProtocolError::InvalidDouble)?;
        let d = std::str::from_utf8(text)
            .ok()
            .and_then(|s| s.parse::<f64>().ok())
            .ok_or(ProtocolError::InvalidDouble)?;
        Ok((Frame::Double(d), next))
    }

    fn boolean(&self, start: usize) -> Step<(Frame, usize)> {
        let (text, next) = self.line(start, ProtocolError::InvalidBoolean)?;
        match text {
            b"t" => Ok((Frame::Boolean(true), next)),
            b"f" => Ok((Frame::Boolean(false), next)),
            _ => Err(ProtocolError::InvalidBoolean.into()),
        }
    }

    fn big_number(&self, start: usize) -> Step<(Frame, usize)> {
        let (text, next) = self.line(start, ProtocolError::LineTooLong)?;
        let digits = match text.split_first() {
            Some((b'-' | b'+', rest)) => rest,
            _ => text,
        };
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
            return Err(ProtocolError::InvalidBigNumber.into());
        }
        Ok((Frame::BigNumber(Bytes::copy_from_slice(text)), next))
    }

    fn null(&self, start: usize) -> Step<(Frame, usize)> {
        let (text, next) = self.line(start, ProtocolError::InvalidNull)?;
        if !text.is_empty() {
            return Err(ProtocolError::InvalidNull.into());
        }
        Ok((Frame::Null, next))
    }

    /// Reads a blob length line; `None` for `-1`.
    fn blob_len(&self, start: usize) -> Step<(Option<usize>, usize)> {
        let (digits, next) = self.line(start, ProtocolError::TooBigBulkCount)?;
        let len = parse_length(
            digits,
            self.limits.max_bulk_bytes,
            ProtocolError::InvalidBulkLength,
        )?;
        Ok((len, next))
    }

    /// Reads a blob's payload of `len` bytes at `start`.
    fn blob_data(&self, start: usize, len: usize) -> Step<(&[u8], usize)> {
        let (range, next) = blob_range(self.buf, start, len)?.ok_or(Stop::Incomplete)?;
        Ok((self.buf.get(range).unwrap_or_default(), next))
    }

    /// Reads a blob that may not be null.
    fn required_blob(&self, start: usize) -> Step<(&[u8], usize)> {
        let (len, data_start) = self.blob_len(start)?;
        let len = len.ok_or(ProtocolError::InvalidBulkLength)?;
        self.blob_data(data_start, len)
    }

    fn bulk(&self, start: usize) -> Step<(Frame, usize)> {
        match self.blob_len(start)? {
            (None, next) => Ok((Frame::Null, next)),
            (Some(len), data_start) => {
                let (data, next) = self.blob_data(data_start, len)?;
                Ok((Frame::Bulk(Bytes::copy_from_slice(data)), next))
            }
        }
    }

    fn blob_error(&self, start: usize) -> Step<(Frame, usize)> {
        let (data, next) = self.required_blob(start)?;
        Ok((Frame::BlobError(Bytes::copy_from_slice(data)), next))
    }

    fn verbatim(&self, start: usize) -> Step<(Frame, usize)> {
        let (data, next) = self.required_blob(start)?;
        match data {
            [a, b, c, b':', text @ ..] => Ok((
                Frame::Verbatim {
                    format: [*a, *b, *c],
                    text: Bytes::copy_from_slice(text),
                },
                next,
            )),
            _ => Err(ProtocolError::InvalidVerbatim.into()),
        }
    }

    /// Reads an aggregate count line; `None` for `-1`.
    fn count(&self, start: usize, depth: usize) -> Step<(Option<usize>, usize)> {
        let (digits, next) = self.line(start, ProtocolError::TooBigMultibulkCount)?;
        let count = parse_length(
            digits,
            self.limits.max_array_len,
            ProtocolError::InvalidMultibulkLength,
        )?;
        let limit = self.limits.nesting_limit();
        if depth >= limit {
            return Err(ProtocolError::NestingTooDeep { limit }.into());
        }
        Ok((count, next))
    }

    fn array(&self, start: usize, depth: usize) -> Step<(Frame, usize)> {
        match self.count(start, depth)? {
            (None, next) => Ok((Frame::NullArray, next)),
            (Some(count), items_start) => {
                let (items, next) = self.items(count, items_start, depth + 1)?;
                Ok((Frame::Array(items), next))
            }
        }
    }

    /// A set or push: like an array, but `-1` is invalid.
    fn aggregate(&self, start: usize, depth: usize) -> Step<(Vec<Frame>, usize)> {
        let (count, items_start) = self.count(start, depth)?;
        let count = count.ok_or(ProtocolError::InvalidMultibulkLength)?;
        self.items(count, items_start, depth + 1)
    }

    fn items(&self, count: usize, mut pos: usize, depth: usize) -> Step<(Vec<Frame>, usize)> {
        let mut items = Vec::with_capacity(count.min(MAX_PREALLOC_ITEMS));
        for _ in 0..count {
            let (item, next) = self.frame(pos, depth)?;
            items.push(item);
            pos = next;
        }
        Ok((items, pos))
    }

    fn map(&self, start: usize, depth: usize) -> Step<(Frame, usize)> {
        let (count, mut pos) = self.count(start, depth)?;
        let count = count.ok_or(ProtocolError::InvalidMultibulkLength)?;
        let mut pairs = Vec::with_capacity(count.min(MAX_PREALLOC_ITEMS));
        for _ in 0..count {
            let (key, after_key) = self.frame(pos, depth + 1)?;
            let (value, after_value) = self.frame(after_key, depth + 1)?;
            pairs.push((key, value));
            pos = after_value;
        }
        Ok((Frame::Map(pairs), pos))
    }
}

// ---------------------------------------------------------------------------
// Server request decoder.
// ---------------------------------------------------------------------------

/// A multibulk request whose header has been read.
#[derive(Debug, Clone)]
struct PartialMultibulk {
    /// Arguments still to read.
    remaining: usize,
    /// Ranges of the arguments read so far.
    args: Vec<Range<usize>>,
    /// Where the next argument starts.
    pos: usize,
}

/// What one decoding step found at the start of the buffer.
enum Parsed {
    /// An empty inline line or a `*0`/`*-1` header: consume and go on.
    Skip(usize),
    /// An inline command (arguments already unescaped) and its length.
    Inline(Vec<Bytes>, usize),
    /// A multibulk command: argument ranges and total length.
    Multibulk(Vec<Range<usize>>, usize),
}

/// Resumable decoder state: the partial multibulk and the line scan hint.
#[derive(Debug, Clone, Default)]
struct RequestState {
    multibulk: Option<PartialMultibulk>,
    hint: ScanHint,
}

/// Decodes one request the way a Redis server does, skipping empty inline
/// lines and `*0`/`*-1` headers (their bytes are included in the count).
///
/// A buffer starting with `*` is a multibulk of `$len` bulk strings;
/// anything else is an inline command split like Redis's `sdssplitargs`.
/// Arguments are copied out of `buf`; [`decode_request_buf`] avoids that.
pub fn decode_request(
    buf: &[u8],
    limits: &DecodeLimits,
) -> Result<Option<(Request, usize)>, ProtocolError> {
    let mut offset = 0;
    loop {
        let rest = buf.get(offset..).unwrap_or_default();
        let mut state = RequestState::default();
        match step(&mut state, rest, limits, false)? {
            None => return Ok(None),
            Some(Parsed::Skip(len)) => offset += len,
            Some(Parsed::Inline(args, len)) => return Ok(Some((Request { args }, offset + len))),
            Some(Parsed::Multibulk(ranges, len)) => {
                let args = ranges
                    .into_iter()
                    .map(|range| rest.get(range).map(Bytes::copy_from_slice))
                    .collect::<Option<Vec<_>>>()
                    .ok_or(ProtocolError::InvalidBulkLength)?;
                return Ok(Some((Request { args }, offset + len)));
            }
        }
    }
}

/// Like [`decode_request`], but consumes the request from `buf` and returns
/// arguments that share `buf`'s memory instead of copying them. Skipped
/// empty commands are consumed even when `Ok(None)` is returned.
pub fn decode_request_buf(
    buf: &mut BytesMut,
    limits: &DecodeLimits,
) -> Result<Option<Request>, ProtocolError> {
    RequestDecoder::new(*limits).decode(buf)
}

/// An incremental request decoder for one connection.
///
/// Unlike [`decode_request_buf`] it remembers a partially received
/// multibulk and how far it has scanned for line ends, so a large request
/// arriving in many small reads is parsed in linear time. Between calls the
/// caller may only append to the buffer (as `tokio_util`'s `FramedRead`
/// does). Arguments share the buffer's memory.
#[derive(Debug, Clone, Default)]
pub struct RequestDecoder {
    limits: DecodeLimits,
    state: RequestState,
    /// The client must still authenticate: the tighter
    /// `UNAUTHENTICATED_*` bounds apply too.
    unauthenticated: bool,
}

impl RequestDecoder {
    /// A decoder enforcing `limits`.
    pub fn new(limits: DecodeLimits) -> Self {
        Self {
            limits,
            state: RequestState::default(),
            unauthenticated: false,
        }
    }

    /// The limits this decoder enforces.
    pub fn limits(&self) -> &DecodeLimits {
        &self.limits
    }

    /// Whether the client must still authenticate: while it must, a
    /// multibulk of more than [`UNAUTHENTICATED_MAX_ARRAY_LEN`] arguments or
    /// an argument of more than [`UNAUTHENTICATED_MAX_BULK_BYTES`] is a
    /// protocol error, as in Redis. Takes effect from the next request.
    pub fn set_unauthenticated(&mut self, unauthenticated: bool) {
        self.unauthenticated = unauthenticated;
    }

    /// Decodes the next request from `buf`, consuming its bytes. Returns
    /// `Ok(None)` when more bytes are needed. After an error the stream is
    /// out of sync and the connection should be closed.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Request>, ProtocolError> {
        loop {
            let parsed = match step(&mut self.state, buf, &self.limits, self.unauthenticated) {
                Ok(Some(parsed)) => parsed,
                Ok(None) => return Ok(None),
                Err(e) => {
                    self.state = RequestState::default();
                    return Err(e);
                }
            };
            self.state = RequestState::default();
            match parsed {
                Parsed::Skip(len) => consume(buf, len)?,
                Parsed::Inline(args, len) => {
                    consume(buf, len)?;
                    return Ok(Some(Request { args }));
                }
                Parsed::Multibulk(ranges, len) => {
                    return take_multibulk(buf, ranges, len).map(Some)
                }
            }
        }
    }
}

/// Drops `len` bytes from the front of `buf`.
fn consume(buf: &mut BytesMut, len: usize) -> Result<(), ProtocolError> {
    if len > buf.len() {
        // Unreachable: the parser only reports bytes it has seen.
        return Err(ProtocolError::InvalidBulkLength);
    }
    buf.advance(len);
    Ok(())
}

/// Splits a complete multibulk off `buf` and slices its arguments.
fn take_multibulk(
    buf: &mut BytesMut,
    ranges: Vec<Range<usize>>,
    len: usize,
) -> Result<Request, ProtocolError> {
    if len > buf.len() {
        // Unreachable: the parser only reports bytes it has seen.
        return Err(ProtocolError::InvalidBulkLength);
    }
    let frozen = buf.split_to(len).freeze();
    let args = ranges
        .into_iter()
        .map(|r| (r.start <= r.end && r.end <= frozen.len()).then(|| frozen.slice(r)))
        .collect::<Option<Vec<_>>>()
        .ok_or(ProtocolError::InvalidBulkLength)?;
    Ok(Request { args })
}

/// Parses what starts `buf`, resuming from `state`.
fn step(
    state: &mut RequestState,
    buf: &[u8],
    limits: &DecodeLimits,
    unauthenticated: bool,
) -> Result<Option<Parsed>, ProtocolError> {
    if state.multibulk.is_none() {
        let Some(&first) = buf.first() else {
            return Ok(None);
        };
        if first != b'*' {
            return inline_request(buf, limits, &mut state.hint);
        }
        match multibulk_header(buf, limits, unauthenticated, &mut state.hint)? {
            None => return Ok(None),
            Some((0, len)) => return Ok(Some(Parsed::Skip(len))),
            Some((count, pos)) => {
                state.multibulk = Some(PartialMultibulk {
                    remaining: count,
                    args: Vec::with_capacity(count.min(MAX_PREALLOC_ITEMS)),
                    pos,
                });
            }
        }
    }
    multibulk_args(state, buf, limits, unauthenticated)
}

/// Reads an inline command line.
fn inline_request(
    buf: &[u8],
    limits: &DecodeLimits,
    hint: &mut ScanHint,
) -> Result<Option<Parsed>, ProtocolError> {
    let lf = match find_terminator(buf, 0, limits.max_inline_bytes, b'\n', hint) {
        Ok(lf) => lf,
        Err(LineStop::Incomplete) => return Ok(None),
        Err(LineStop::TooLong) => return Err(ProtocolError::TooBigInlineRequest),
    };
    let end = match lf.checked_sub(1) {
        Some(cr) if buf.get(cr) == Some(&b'\r') => cr,
        _ => lf,
    };
    let args =
        split_args(buf.get(..end).unwrap_or_default()).ok_or(ProtocolError::UnbalancedQuotes)?;
    let len = lf + 1;
    Ok(Some(if args.is_empty() {
        Parsed::Skip(len)
    } else {
        Parsed::Inline(args, len)
    }))
}

/// Reads `*N\r\n`; returns the count (0 for any N <= 0) and its length.
fn multibulk_header(
    buf: &[u8],
    limits: &DecodeLimits,
    unauthenticated: bool,
    hint: &mut ScanHint,
) -> Result<Option<(usize, usize)>, ProtocolError> {
    let cr = match find_cr(buf, 0, limits.max_inline_bytes, hint) {
        Ok(cr) => cr,
        Err(LineStop::Incomplete) => return Ok(None),
        Err(LineStop::TooLong) => return Err(ProtocolError::TooBigMultibulkCount),
    };
    let count = buf
        .get(1..cr)
        .and_then(parse_i64)
        .filter(|_| has_lf_after(buf, cr))
        .ok_or(ProtocolError::InvalidMultibulkLength)?;
    let count = usize::try_from(count).unwrap_or(0);
    // The tighter bound first, so it is what such a client is told.
    if unauthenticated && count > UNAUTHENTICATED_MAX_ARRAY_LEN {
        return Err(ProtocolError::UnauthenticatedMultibulkLength);
    }
    if count > limits.max_array_len {
        return Err(ProtocolError::InvalidMultibulkLength);
    }
    Ok(Some((count, cr + 2)))
}

/// Reads the remaining bulk arguments of the current multibulk.
fn multibulk_args(
    state: &mut RequestState,
    buf: &[u8],
    limits: &DecodeLimits,
    unauthenticated: bool,
) -> Result<Option<Parsed>, ProtocolError> {
    let RequestState { multibulk, hint } = state;
    let Some(partial) = multibulk.as_mut() else {
        return Ok(None);
    };
    while partial.remaining > 0 {
        let Some((range, next)) = bulk_arg(buf, partial.pos, limits, unauthenticated, hint)? else {
            return Ok(None);
        };
        partial.args.push(range);
        partial.pos = next;
        partial.remaining -= 1;
    }
    Ok(multibulk
        .take()
        .map(|done| Parsed::Multibulk(done.args, done.pos)))
}

/// Reads one `$len\r\n<data>\r\n` argument at `pos`.
fn bulk_arg(
    buf: &[u8],
    pos: usize,
    limits: &DecodeLimits,
    unauthenticated: bool,
    hint: &mut ScanHint,
) -> Result<Option<(Range<usize>, usize)>, ProtocolError> {
    let cr = match find_cr(buf, pos, limits.max_inline_bytes, hint) {
        Ok(cr) => cr,
        Err(LineStop::Incomplete) => return Ok(None),
        Err(LineStop::TooLong) => return Err(ProtocolError::TooBigBulkCount),
    };
    match buf.get(pos) {
        Some(b'$') => {}
        Some(&got) => return Err(ProtocolError::ExpectedBulk { got }),
        None => return Ok(None),
    }
    let len = buf
        .get(pos + 1..cr)
        .and_then(parse_i64)
        .and_then(|n| usize::try_from(n).ok())
        .filter(|_| has_lf_after(buf, cr))
        .ok_or(ProtocolError::InvalidBulkLength)?;
    // The tighter bound first, so it is what such a client is told.
    if unauthenticated && len > UNAUTHENTICATED_MAX_BULK_BYTES {
        return Err(ProtocolError::UnauthenticatedBulkLength);
    }
    if len > limits.max_bulk_bytes {
        return Err(ProtocolError::InvalidBulkLength);
    }
    blob_range(buf, cr + 2, len)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
