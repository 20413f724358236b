//! Seshat's Redis commands.
//!
//! Each command is **declared once** ([`Decl`]): name, arity, flags, key
//! positions, group, summary and handler, in its family's module
//! (`families/string.rs`, `families/keyspace.rs`, …). Everything else is
//! derived from the declaration: name and arity errors ([`resolve`]),
//! `COMMAND` replies ([`introspect`]), where a request goes
//! ([`Decl::route`]: proposed through the log, read after a barrier, pure,
//! or run by the server), whether a proxying follower forwards it, the
//! keys that route it to a slot, the limits on them, and metric labels.
//!
//! Writes are replicated as their arguments ([`seshat_kv::Write`]) after
//! the leader made them deterministic ([`prepare_write`]); every replica
//! runs them through the same handlers in [`apply_batch`], at the entry's
//! time and with its seed.
//!
//! ```
//! use bytes::Bytes;
//! use seshat_commands::{apply_batch, GroupState};
//! use seshat_kv::{MemKv, Write, WriteBatch};
//! use seshat_protocol_resp::Frame;
//!
//! let argv = |a: &[&str]| a.iter().map(|s| Bytes::copy_from_slice(s.as_bytes())).collect();
//! let batch = WriteBatch {
//!     now_ms: 1_000,
//!     seed: 7,
//!     writes: vec![Write::Command(argv(&["SET", "k", "1"])), Write::Command(argv(&["INCR", "k"]))],
//! };
//! let (mut kv, mut state) = (MemKv::default(), GroupState::default());
//! let replies = apply_batch(&batch, 1, &mut kv, &mut state)?;
//! assert_eq!(replies, vec![Frame::ok(), Frame::Integer(2)]);
//! # Ok::<(), seshat_commands::ApplyError>(())
//! ```

pub mod acl;
mod args;
mod decl;
mod exec;
pub mod families;
pub mod introspect;
pub mod members;
pub mod migration;
mod reply;
pub mod system;
mod table;

pub use args::glob_match;
pub use decl::{
    DataFn, Decl, Flags, Group, Handler, KeySpec, PrepareFn, Route, ServerCmd, ACL_CATEGORIES,
};
pub use exec::{
    apply_batch, apply_group_batch, batch_may_take_long, prepare_write, run_read, ApplyError, Ctx,
    GroupState, NoData,
};
pub use families::connection::{
    parse_auth, parse_client_setinfo, parse_hello, parse_select, valid_client_name, ClientAttr,
    Hello,
};
pub use reply::{err, CmdError, CmdResult};
pub use table::{
    all, all_with_subcommands, count, echo, lookup, lookup_fullname, resolve, unknown_command,
};

/// Longest string value a command may build (`APPEND`, `SETRANGE`), in
/// bytes. Fixed rather than configurable: it is checked at apply, where
/// every replica must decide the same way.
pub const MAX_STRING_BYTES: usize = 16 * 1024 * 1024;

#[cfg(test)]
mod tests;
