//! Command results and Redis's error texts.

use std::borrow::Cow;

use seshat_kv::KvError;
use seshat_protocol_resp::Frame;

/// Why a command did not produce its normal reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CmdError {
    /// An error reply for the client (the text after `-`); the command
    /// had no effect.
    #[error("{0}")]
    Reply(Cow<'static, str>),
    /// The store failed or holds corrupt data: not a client error; the
    /// node stops applying.
    #[error(transparent)]
    Kv(#[from] KvError),
}

/// A command's outcome.
pub type CmdResult = Result<Frame, CmdError>;

/// An error reply.
pub fn err(text: impl Into<Cow<'static, str>>) -> CmdError {
    CmdError::Reply(text.into())
}

/// `-WRONGTYPE`.
pub const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";
/// An argument that should be an integer is not.
pub const NOT_INTEGER: &str = "ERR value is not an integer or out of range";
/// An argument that should be a float is not.
pub const NOT_FLOAT: &str = "ERR value is not a valid float";
/// Malformed options.
pub const SYNTAX: &str = "ERR syntax error";
/// `INCR` family overflow.
pub const OVERFLOW: &str = "ERR increment or decrement would overflow";
/// A string would exceed [`crate::MAX_STRING_BYTES`].
pub const STRING_TOO_LONG: &str = "ERR string exceeds maximum allowed size (proto-max-bulk-len)";
/// A key that must exist does not.
pub const NO_SUCH_KEY: &str = "ERR no such key";

/// The wrong-type error.
pub fn wrong_type() -> CmdError {
    err(WRONGTYPE)
}

/// Redis's arity error for the command `name`.
pub fn wrong_arity(name: &str) -> CmdError {
    err(format!(
        "ERR wrong number of arguments for '{name}' command"
    ))
}

impl CmdError {
    /// The error as a reply frame (storage failures included, for paths
    /// where they must be reported rather than stop the node).
    pub fn into_frame(self) -> Frame {
        match self {
            CmdError::Reply(text) => Frame::Error(bytes::Bytes::from(text.into_owned())),
            CmdError::Kv(e) => Frame::error(format!("ERR {e}")),
        }
    }
}
