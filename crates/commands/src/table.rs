//! The command table: every family's declarations, looked up by name, and
//! request resolution (unknown command, unknown subcommand, arity).

use std::collections::HashMap;
use std::sync::LazyLock;

use bytes::Bytes;

use crate::decl::Decl;
use crate::families;
use crate::reply::{err, wrong_arity, CmdError};

/// Every family's top-level declarations. A new family adds one line here;
/// a new command adds one line to its family's list.
pub static FAMILIES: &[&[Decl]] = &[
    families::string::COMMANDS,
    families::keyspace::COMMANDS,
    families::connection::COMMANDS,
    families::server::COMMANDS,
    families::txn::COMMANDS,
    families::cluster::COMMANDS,
    families::hash::COMMANDS,
    families::list::COMMANDS,
    families::set::COMMANDS,
    families::zset::COMMANDS,
    families::acl::COMMANDS,
];

static BY_NAME: LazyLock<HashMap<&'static str, &'static Decl>> = LazyLock::new(|| {
    FAMILIES
        .iter()
        .flat_map(|family| family.iter())
        .map(|decl| (decl.name, decl))
        .collect()
});

/// Redis truncates user input echoed in errors to this many bytes.
const ERROR_ECHO_MAX: usize = 128;
/// Longest command name looked up (longer ones are unknown).
const MAX_NAME_BYTES: usize = 32;

/// Every top-level declaration.
pub fn all() -> impl Iterator<Item = &'static Decl> {
    FAMILIES.iter().flat_map(|family| family.iter())
}

/// Every declaration, subcommands after their container.
pub fn all_with_subcommands() -> impl Iterator<Item = &'static Decl> {
    all().flat_map(|d| std::iter::once(d).chain(d.subcommands.iter()))
}

/// Number of top-level commands (`COMMAND COUNT`).
pub fn count() -> usize {
    BY_NAME.len()
}

/// A top-level command by name, case-insensitively.
pub fn lookup(name: &[u8]) -> Option<&'static Decl> {
    // Lower-case into a stack buffer: this runs for every request.
    let mut buf = [0u8; MAX_NAME_BYTES];
    let lower = buf.get_mut(..name.len())?;
    lower.copy_from_slice(name);
    lower.make_ascii_lowercase();
    let name = std::str::from_utf8(lower).ok()?;
    BY_NAME.get(name).copied()
}

/// A command by full name (`get`, `client|setname`), case-insensitively.
pub fn lookup_fullname(name: &[u8]) -> Option<&'static Decl> {
    match name.iter().position(|&b| b == b'|') {
        Some(bar) => {
            let parent = lookup(name.get(..bar)?)?;
            subcommand(parent, name.get(bar + 1..)?)
        }
        None => lookup(name),
    }
}

fn subcommand(parent: &'static Decl, name: &[u8]) -> Option<&'static Decl> {
    let subs: &'static [Decl] = parent.subcommands;
    subs.iter()
        .find(|sub| sub.short_name().as_bytes().eq_ignore_ascii_case(name))
}

/// The declaration a request names, with Redis's errors for an unknown
/// command or subcommand and a wrong number of arguments.
pub fn resolve(args: &[Bytes]) -> Result<&'static Decl, CmdError> {
    let Some(decl) = args.first().and_then(|name| lookup(name)) else {
        return Err(unknown_command(args));
    };
    let decl = match args.get(1) {
        Some(sub) if !decl.subcommands.is_empty() => {
            subcommand(decl, sub).ok_or_else(|| unknown_subcommand(decl, sub))?
        }
        _ => decl,
    };
    if !decl.arity_ok(args.len()) {
        return Err(wrong_arity(decl.name));
    }
    Ok(decl)
}

/// User input as echoed in an error: at most [`ERROR_ECHO_MAX`] bytes,
/// lossily decoded, CR/LF replaced by spaces (as Redis does).
pub fn echo(arg: &[u8]) -> String {
    printable(arg.get(..ERROR_ECHO_MAX).unwrap_or(arg))
}

fn printable(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).replace(['\r', '\n'], " ")
}

/// Redis 7's unknown-command error: the name, then each argument quoted and
/// followed by a space, until 128 bytes of arguments have been listed.
pub fn unknown_command(args: &[Bytes]) -> CmdError {
    let name = args.first().map(|n| echo(n)).unwrap_or_default();
    let mut listed = Vec::new();
    for arg in args.iter().skip(1) {
        let Some(room) = ERROR_ECHO_MAX.checked_sub(listed.len()).filter(|r| *r > 0) else {
            break;
        };
        listed.push(b'\'');
        listed.extend_from_slice(arg.get(..room).unwrap_or(arg));
        listed.extend_from_slice(b"' ");
    }
    err(format!(
        "ERR unknown command '{name}', with args beginning with: {}",
        printable(&listed)
    ))
}

fn unknown_subcommand(container: &Decl, sub: &[u8]) -> CmdError {
    err(format!(
        "ERR unknown subcommand '{}'. Try {} HELP.",
        echo(sub),
        container.name.to_ascii_uppercase()
    ))
}
