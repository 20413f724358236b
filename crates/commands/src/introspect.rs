//! `COMMAND` replies, built from the declarations.

use bytes::Bytes;
use seshat_protocol_resp::Frame;

use crate::decl::Decl;
use crate::reply::{err, CmdResult};
use crate::table;

/// The `COMMAND INFO` entry of one command, in Redis 7's 10-element shape:
/// name, arity, flags, first key, last key, step, ACL categories, tips,
/// key specs, subcommands.
pub fn info_frame(decl: &Decl) -> Frame {
    let flags = decl.flags.names().map(static_simple).collect();
    let categories = decl.categories().into_iter().map(static_simple).collect();
    let subcommands = if decl.subcommands.is_empty() {
        Frame::Set(Vec::new())
    } else {
        Frame::Array(decl.subcommands.iter().map(info_frame).collect())
    };
    Frame::Array(vec![
        static_bulk(decl.name),
        Frame::Integer(i64::from(decl.arity)),
        Frame::Set(flags),
        Frame::Integer(i64::from(decl.keys.first)),
        Frame::Integer(i64::from(decl.keys.last)),
        Frame::Integer(i64::from(decl.keys.step)),
        Frame::Set(categories),
        Frame::Set(Vec::new()),
        Frame::Set(Vec::new()),
        subcommands,
    ])
}

/// The `COMMAND DOCS` map of one command.
pub fn docs_frame(decl: &Decl) -> Frame {
    let mut docs = vec![
        (static_bulk("summary"), static_bulk(decl.summary)),
        (static_bulk("since"), static_bulk(decl.since)),
        (static_bulk("group"), static_bulk(decl.group.name())),
    ];
    if !decl.subcommands.is_empty() {
        let subs = decl.subcommands.iter().map(named_docs).collect();
        docs.push((static_bulk("subcommands"), Frame::Map(subs)));
    }
    Frame::Map(docs)
}

/// `COMMAND` / `COMMAND INFO [name ...]`: every command when `names` is
/// empty, else one entry per name (null when unknown).
pub fn info_reply(names: &[Bytes]) -> Frame {
    if names.is_empty() {
        return Frame::Array(table::all().map(info_frame).collect());
    }
    Frame::Array(
        names
            .iter()
            .map(|n| table::lookup_fullname(n).map_or(Frame::Null, info_frame))
            .collect(),
    )
}

/// `COMMAND DOCS [name ...]`.
pub fn docs_reply(names: &[Bytes]) -> Frame {
    if names.is_empty() {
        return Frame::Map(table::all().map(named_docs).collect());
    }
    Frame::Map(
        names
            .iter()
            .filter_map(|n| table::lookup_fullname(n))
            .map(named_docs)
            .collect(),
    )
}

/// `COMMAND LIST`: every command and subcommand full name.
pub fn list_reply() -> Frame {
    Frame::Array(
        table::all_with_subcommands()
            .map(|d| static_bulk(d.name))
            .collect(),
    )
}

/// `COMMAND GETKEYS command [arg ...]`.
pub fn getkeys_reply(argv: &[Bytes]) -> CmdResult {
    let decl = match argv.first().and_then(|n| table::lookup(n)) {
        None => return Err(err("ERR Invalid command specified")),
        Some(_) => table::resolve(argv)
            .map_err(|_| err("ERR Invalid number of arguments specified for command"))?,
    };
    let keys: Vec<Frame> = decl.key_args(argv).cloned().map(Frame::Bulk).collect();
    if keys.is_empty() {
        return Err(err("ERR The command has no key arguments"));
    }
    Ok(Frame::Array(keys))
}

fn named_docs(decl: &Decl) -> (Frame, Frame) {
    (static_bulk(decl.name), docs_frame(decl))
}

fn static_bulk(text: &'static str) -> Frame {
    Frame::Bulk(Bytes::from_static(text.as_bytes()))
}

fn static_simple(text: &'static str) -> Frame {
    Frame::Simple(Bytes::from_static(text.as_bytes()))
}
