//! One module per family of commands, each with its `COMMANDS` list.

pub mod acl;
pub mod cluster;
pub mod connection;
pub(crate) mod elements;
pub mod hash;
pub mod keyspace;
pub mod list;
pub mod server;
pub mod set;
pub mod string;
pub mod txn;
pub mod zset;

use bytes::Bytes;
use seshat_kv::{Kind, Record};

use crate::exec::Ctx;
use crate::reply::{wrong_type, CmdError};

/// The live record of `key` if it holds a `kind` value, `None` if absent;
/// `-WRONGTYPE` for any other type.
pub(crate) fn typed_record(
    ctx: &mut Ctx<'_>,
    key: &[u8],
    kind: Kind,
) -> Result<Option<Record>, CmdError> {
    match ctx.db.get(key)? {
        Some(r) if r.kind != kind => Err(wrong_type()),
        other => Ok(other),
    }
}

/// The live string record of `key`, `None` if absent; `-WRONGTYPE` for
/// any other type.
pub(crate) fn string_record(ctx: &mut Ctx<'_>, key: &[u8]) -> Result<Option<Record>, CmdError> {
    typed_record(ctx, key, Kind::String)
}

/// The string value of `key`, `None` if absent; `-WRONGTYPE` otherwise.
pub(crate) fn string_value(ctx: &mut Ctx<'_>, key: &[u8]) -> Result<Option<Bytes>, CmdError> {
    Ok(string_record(ctx, key)?.map(|r| r.payload))
}
