//! The Redis protocol (RESP2 and RESP3) for Seshat.
//!
//! This crate does no I/O. It provides:
//!
//! - [`Frame`], every RESP2/RESP3 value, and [`encode`], which writes a frame
//!   in either [`ProtocolVersion`] (RESP3-only types are downgraded for
//!   RESP2 the way Redis does);
//! - two decoders returning `Ok(None)` on incomplete input:
//!   [`decode_frame`] (any RESP2/RESP3 frame, for clients and tests) and
//!   [`decode_request`] / [`decode_request_buf`] / [`RequestDecoder`]
//!   (what a Redis server accepts: multibulk or inline commands);
//! - [`ServerCodec`], a `tokio_util` codec combining the request decoder with
//!   a per-client buffer limit and a switchable reply version;
//! - [`parse_i64`], Redis's strict integer parsing;
//! - [`crc16_slot`], Redis Cluster's key slot with hash tags.
//!
//! Every length read from the wire is checked against [`DecodeLimits`]
//! before it is used. Keys and values are binary-safe [`bytes::Bytes`].
//!
//! ```
//! use bytes::BytesMut;
//! use seshat_protocol_resp::{
//!     decode_request, encode, DecodeLimits, Frame, ProtocolVersion,
//! };
//!
//! let wire = b"*2\r\n$3\r\nGET\r\n$5\r\nmykey\r\n";
//! let (request, used) = decode_request(wire, &DecodeLimits::default())?
//!     .expect("a complete request");
//! assert_eq!(used, wire.len());
//! assert_eq!(request.args, vec!["GET", "mykey"]);
//!
//! let mut out = BytesMut::new();
//! encode(&Frame::Null, ProtocolVersion::Resp2, &mut out);
//! assert_eq!(&out[..], b"$-1\r\n");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod codec;
mod decode;
mod error;
mod frame;
mod inline;
mod num;

pub use codec::{CodecError, ServerCodec, DEFAULT_MAX_CLIENT_BUFFER_BYTES};
pub use decode::{
    decode_frame, decode_request, decode_request_buf, DecodeLimits, Request, RequestDecoder,
    DEFAULT_MAX_ARRAY_LEN, DEFAULT_MAX_BULK_BYTES, DEFAULT_MAX_INLINE_BYTES,
    DEFAULT_MAX_NESTING_DEPTH, MAX_ARRAY_LEN_CEILING, MAX_BULK_BYTES_CEILING,
    MAX_INLINE_BYTES_CEILING, MAX_NESTING_DEPTH_CEILING, MAX_PREALLOC_ITEMS,
    UNAUTHENTICATED_MAX_ARRAY_LEN, UNAUTHENTICATED_MAX_BULK_BYTES,
};
pub use error::{LimitsError, ProtocolError};
pub use frame::{double_text, encode, Frame, ProtocolVersion};
pub use num::parse_i64;
pub use seshat_common::{crc16, crc16_slot, hash_tag, CLUSTER_SLOTS};
