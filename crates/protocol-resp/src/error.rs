//! Wire-level errors.
//!
//! The `Display` text of [`ProtocolError`] is Redis's own wording without
//! the `ERR ` prefix the server adds (see [`ProtocolError::to_frame`]).

use bytes::Bytes;

use crate::frame::Frame;

/// A malformed or over-limit byte stream. After one of these the
/// connection is out of sync and should be closed after replying.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// A multibulk/aggregate count that is not an integer or exceeds the limit.
    #[error("Protocol error: invalid multibulk length")]
    InvalidMultibulkLength,
    /// A bulk length that is not an integer, negative or exceeds the limit.
    #[error("Protocol error: invalid bulk length")]
    InvalidBulkLength,
    /// A multibulk count over the bound for clients that must still
    /// authenticate.
    #[error("Protocol error: unauthenticated multibulk length")]
    UnauthenticatedMultibulkLength,
    /// A bulk length over the bound for clients that must still
    /// authenticate.
    #[error("Protocol error: unauthenticated bulk length")]
    UnauthenticatedBulkLength,
    /// A multibulk request element that does not start with `$`.
    #[error("Protocol error: expected '$', got '{}'", printable(*.got))]
    ExpectedBulk {
        /// The byte found instead of `$`.
        got: u8,
    },
    /// An inline request line longer than the inline limit.
    #[error("Protocol error: too big inline request")]
    TooBigInlineRequest,
    /// An inline request with an unterminated quote.
    #[error("Protocol error: unbalanced quotes in request")]
    UnbalancedQuotes,
    /// A `*N` count line longer than the inline limit.
    #[error("Protocol error: too big mbulk count string")]
    TooBigMultibulkCount,
    /// A `$N` length line longer than the inline limit.
    #[error("Protocol error: too big bulk count string")]
    TooBigBulkCount,
    /// Bulk data not followed by CRLF.
    #[error("Protocol error: bulk data is not terminated by CRLF")]
    MissingBulkTerminator,
    /// A CR that is not followed by LF.
    #[error("Protocol error: line is not terminated by CRLF")]
    InvalidLineTerminator,
    /// A simple-string style line longer than the inline limit.
    #[error("Protocol error: too big line")]
    LineTooLong,
    /// A frame starting with an unknown type byte.
    #[error("Protocol error: invalid frame type byte '{}'", printable(*.byte))]
    InvalidFrameType {
        /// The unknown type byte.
        byte: u8,
    },
    /// Aggregates nested deeper than the nesting limit.
    #[error("Protocol error: nesting too deep (limit {limit})")]
    NestingTooDeep {
        /// The nesting limit that was exceeded.
        limit: usize,
    },
    /// A `:` frame that is not a 64-bit integer.
    #[error("Protocol error: invalid integer")]
    InvalidInteger,
    /// A `,` frame that is not a double.
    #[error("Protocol error: invalid double")]
    InvalidDouble,
    /// A `#` frame that is neither `t` nor `f`.
    #[error("Protocol error: invalid boolean")]
    InvalidBoolean,
    /// A `(` frame that is not a decimal integer.
    #[error("Protocol error: invalid big number")]
    InvalidBigNumber,
    /// A `=` frame without a `fmt:` prefix.
    #[error("Protocol error: invalid verbatim string")]
    InvalidVerbatim,
    /// A `_` frame with content.
    #[error("Protocol error: invalid null")]
    InvalidNull,
    /// RESP3 attributes (`|`), which are not supported.
    #[error("Protocol error: attributes are not supported")]
    AttributesNotSupported,
    /// The client's unparsed input exceeds its buffer limit.
    #[error("Protocol error: client query buffer exceeds limit")]
    ClientBufferExceeded {
        /// The per-client buffer limit in bytes.
        limit: usize,
    },
}

impl ProtocolError {
    /// The error reply a server sends for this error: `-ERR <text>`.
    pub fn to_frame(&self) -> Frame {
        Frame::Error(Bytes::from(format!("ERR {self}")))
    }
}

/// Shows a byte the way Redis's `%c` would, but keeps the text valid
/// UTF-8 on one line: CR/LF become spaces, other non-printables `?`.
fn printable(byte: u8) -> char {
    match byte {
        b'\r' | b'\n' => ' ',
        b' '..=b'~' => char::from(byte),
        _ => '?',
    }
}

/// An invalid [`DecodeLimits`](crate::DecodeLimits) value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitsError {
    /// A limit set to zero.
    #[error("{name} must be greater than zero")]
    Zero {
        /// The field name.
        name: &'static str,
    },
    /// A limit above its ceiling.
    #[error("{name} must be at most {max}, got {value}")]
    TooLarge {
        /// The field name.
        name: &'static str,
        /// The configured value.
        value: usize,
        /// The largest accepted value.
        max: usize,
    },
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn redis_wording() {
        let cases = [
            (
                ProtocolError::InvalidMultibulkLength,
                "Protocol error: invalid multibulk length",
            ),
            (
                ProtocolError::InvalidBulkLength,
                "Protocol error: invalid bulk length",
            ),
            (
                ProtocolError::UnauthenticatedMultibulkLength,
                "Protocol error: unauthenticated multibulk length",
            ),
            (
                ProtocolError::UnauthenticatedBulkLength,
                "Protocol error: unauthenticated bulk length",
            ),
            (
                ProtocolError::ExpectedBulk { got: b'x' },
                "Protocol error: expected '$', got 'x'",
            ),
            (
                ProtocolError::ExpectedBulk { got: b'\r' },
                "Protocol error: expected '$', got ' '",
            ),
            (
                ProtocolError::ExpectedBulk { got: 0xff },
                "Protocol error: expected '$', got '?'",
            ),
            (
                ProtocolError::TooBigInlineRequest,
                "Protocol error: too big inline request",
            ),
            (
                ProtocolError::UnbalancedQuotes,
                "Protocol error: unbalanced quotes in request",
            ),
            (
                ProtocolError::TooBigMultibulkCount,
                "Protocol error: too big mbulk count string",
            ),
            (
                ProtocolError::TooBigBulkCount,
                "Protocol error: too big bulk count string",
            ),
            (
                ProtocolError::InvalidFrameType { byte: b'x' },
                "Protocol error: invalid frame type byte 'x'",
            ),
            (
                ProtocolError::ClientBufferExceeded { limit: 1 },
                "Protocol error: client query buffer exceeds limit",
            ),
        ];
        for (err, text) in cases {
            assert_eq!(err.to_string(), text);
        }
    }

    #[test]
    fn to_frame_adds_err_prefix() {
        assert_eq!(
            ProtocolError::InvalidBulkLength.to_frame(),
            Frame::error("ERR Protocol error: invalid bulk length")
        );
    }

    #[test]
    fn limits_error_names_the_field() {
        let e = LimitsError::Zero {
            name: "max_bulk_bytes",
        };
        assert_eq!(e.to_string(), "max_bulk_bytes must be greater than zero");
        let e = LimitsError::TooLarge {
            name: "max_nesting_depth",
            value: 1000,
            max: 256,
        };
        assert_eq!(
            e.to_string(),
            "max_nesting_depth must be at most 256, got 1000"
        );
    }
}
