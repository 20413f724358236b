//! A `tokio_util` codec for the server side of a RESP connection.

use bytes::BytesMut;
use tokio_util::codec::{Decoder, Encoder};

use crate::decode::{DecodeLimits, Request, RequestDecoder};
use crate::error::ProtocolError;
use crate::frame::{encode, Frame, ProtocolVersion};

/// Default per-client limit on buffered, not yet decoded input: 64 MiB.
pub const DEFAULT_MAX_CLIENT_BUFFER_BYTES: usize = 64 * 1024 * 1024;

/// Errors of [`ServerCodec`].
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The client sent malformed or over-limit input.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// The underlying transport failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// Decodes [`Request`]s and encodes [`Frame`] replies in the connection's
/// negotiated [`ProtocolVersion`].
///
/// Decoding is incremental (see [`RequestDecoder`]); if an incomplete
/// request leaves more than `max_buffered_bytes` buffered, decoding fails
/// with [`ProtocolError::ClientBufferExceeded`].
#[derive(Debug, Clone)]
pub struct ServerCodec {
    decoder: RequestDecoder,
    max_buffered_bytes: usize,
    version: ProtocolVersion,
}

impl Default for ServerCodec {
    fn default() -> Self {
        Self::new(DecodeLimits::default(), DEFAULT_MAX_CLIENT_BUFFER_BYTES)
    }
}

impl ServerCodec {
    /// A RESP2 codec enforcing `limits` and the per-client buffer limit.
    pub fn new(limits: DecodeLimits, max_buffered_bytes: usize) -> Self {
        Self {
            decoder: RequestDecoder::new(limits),
            max_buffered_bytes,
            version: ProtocolVersion::Resp2,
        }
    }

    /// The protocol version replies are encoded in.
    pub fn version(&self) -> ProtocolVersion {
        self.version
    }

    /// Switches the reply encoding, e.g. to RESP3 after `HELLO 3`.
    pub fn set_version(&mut self, version: ProtocolVersion) {
        self.version = version;
    }

    /// Whether the client must still authenticate (tighter decode bounds,
    /// see [`RequestDecoder::set_unauthenticated`]).
    pub fn set_unauthenticated(&mut self, unauthenticated: bool) {
        self.decoder.set_unauthenticated(unauthenticated);
    }

    /// The decode limits in force.
    pub fn limits(&self) -> &DecodeLimits {
        self.decoder.limits()
    }

    /// The per-client buffer limit in bytes.
    pub fn max_buffered_bytes(&self) -> usize {
        self.max_buffered_bytes
    }
}

impl Decoder for ServerCodec {
    type Item = Request;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Request>, CodecError> {
        match self.decoder.decode(src)? {
            Some(request) => Ok(Some(request)),
            None if src.len() > self.max_buffered_bytes => {
                Err(ProtocolError::ClientBufferExceeded {
                    limit: self.max_buffered_bytes,
                }
                .into())
            }
            None => Ok(None),
        }
    }
}

impl Encoder<Frame> for ServerCodec {
    type Error = CodecError;

    fn encode(&mut self, item: Frame, dst: &mut BytesMut) -> Result<(), CodecError> {
        encode(&item, self.version, dst);
        Ok(())
    }
}

impl Encoder<&Frame> for ServerCodec {
    type Error = CodecError;

    fn encode(&mut self, item: &Frame, dst: &mut BytesMut) -> Result<(), CodecError> {
        encode(item, self.version, dst);
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use bytes::Bytes;

    use super::*;

    #[test]
    fn decodes_pipelined_requests() {
        let mut codec = ServerCodec::default();
        let mut buf = BytesMut::from(&b"PING\r\n*2\r\n$4\r\nECHO\r\n$1\r\nx\r\n*1\r\n$4\r\nPI"[..]);
        let first = codec.decode(&mut buf).unwrap().unwrap();
        assert_eq!(first.args, vec![Bytes::from_static(b"PING")]);
        let second = codec.decode(&mut buf).unwrap().unwrap();
        assert_eq!(
            second.args,
            vec![Bytes::from_static(b"ECHO"), Bytes::from_static(b"x")]
        );
        assert!(codec.decode(&mut buf).unwrap().is_none());
        buf.extend_from_slice(b"NG\r\n");
        let third = codec.decode(&mut buf).unwrap().unwrap();
        assert_eq!(third.args, vec![Bytes::from_static(b"PING")]);
        assert!(buf.is_empty());
    }

    #[test]
    fn protocol_errors_are_wrapped() {
        let mut codec = ServerCodec::default();
        let mut buf = BytesMut::from(&b"*x\r\n"[..]);
        let err = codec.decode(&mut buf).unwrap_err();
        assert!(matches!(
            err,
            CodecError::Protocol(ProtocolError::InvalidMultibulkLength)
        ));
        assert_eq!(err.to_string(), "Protocol error: invalid multibulk length");
    }

    #[test]
    fn buffer_limit_applies_to_incomplete_requests_only() {
        let mut codec = ServerCodec::new(DecodeLimits::default(), 16);
        let mut buf = BytesMut::from(&b"*1\r\n$20\r\n0123456789012345678"[..]);
        let err = codec.decode(&mut buf).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Protocol error: client query buffer exceeds limit"
        );

        let mut codec = ServerCodec::new(DecodeLimits::default(), 16);
        let mut buf = BytesMut::from(&b"*1\r\n$20\r\n01234567890123456789\r\n"[..]);
        assert!(codec.decode(&mut buf).unwrap().is_some());
    }

    #[test]
    fn encoder_follows_the_negotiated_version() {
        let mut codec = ServerCodec::default();
        let mut out = BytesMut::new();
        codec.encode(Frame::Null, &mut out).unwrap();
        assert_eq!(codec.version(), ProtocolVersion::Resp2);
        codec.set_version(ProtocolVersion::Resp3);
        codec.encode(&Frame::Null, &mut out).unwrap();
        assert_eq!(&out[..], b"$-1\r\n_\r\n");
    }

    #[test]
    fn accessors() {
        let codec = ServerCodec::default();
        assert_eq!(codec.max_buffered_bytes(), DEFAULT_MAX_CLIENT_BUFFER_BYTES);
        assert_eq!(codec.limits(), &DecodeLimits::default());
    }

    #[test]
    fn io_errors_convert() {
        let err = CodecError::from(std::io::Error::other("boom"));
        assert_eq!(err.to_string(), "I/O error: boom");
    }
}
