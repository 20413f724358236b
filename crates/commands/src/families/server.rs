//! Server commands: `COMMAND …` (answered from the table), `INFO`,
//! `CONFIG`, `TIME`.

use bytes::Bytes;
use seshat_protocol_resp::Frame;

use crate::decl::{data, Decl, Flags, Group, Handler, KeySpec, ServerCmd};
use crate::exec::Ctx;
use crate::introspect;
use crate::reply::{err, CmdResult, SYNTAX};
use crate::table;

const LOADING_STALE: Flags = Flags::LOADING.with(Flags::STALE);
const CONFIG_SUB: Flags = Flags::ADMIN
    .with(Flags::NOSCRIPT)
    .with(Flags::LOADING)
    .with(Flags::STALE);

const fn srv(
    name: &'static str,
    arity: i32,
    flags: Flags,
    docs: (&'static str, &'static str),
    handler: Handler,
) -> Decl {
    Decl::new(
        name,
        arity,
        flags,
        KeySpec::NONE,
        Group::Server,
        docs,
        handler,
    )
}

const COMMAND_SUBCOMMANDS: &[Decl] = &[
    srv(
        "command|count",
        2,
        LOADING_STALE,
        ("Returns a count of commands.", "2.8.13"),
        data(command_count),
    ),
    srv(
        "command|docs",
        -2,
        LOADING_STALE,
        (
            "Returns documentary information about one, multiple or all commands.",
            "7.0.0",
        ),
        data(command_docs),
    ),
    srv(
        "command|getkeys",
        -3,
        LOADING_STALE,
        (
            "Extracts the key names from an arbitrary command.",
            "2.8.13",
        ),
        data(command_getkeys),
    ),
    srv(
        "command|info",
        -2,
        LOADING_STALE,
        (
            "Returns information about one, multiple or all commands.",
            "2.8.13",
        ),
        data(command_info),
    ),
    srv(
        "command|list",
        -2,
        LOADING_STALE,
        ("Returns a list of command names.", "7.0.0"),
        data(command_list),
    ),
];

const CONFIG_SUBCOMMANDS: &[Decl] = &[
    srv(
        "config|get",
        -3,
        CONFIG_SUB,
        (
            "Returns the effective values of configuration parameters.",
            "2.0.0",
        ),
        Handler::Server(ServerCmd::ConfigGet),
    ),
    srv(
        "config|resetstat",
        2,
        CONFIG_SUB,
        ("Resets the server's statistics.", "2.0.0"),
        Handler::Server(ServerCmd::ConfigResetStat),
    ),
    srv(
        "config|set",
        -4,
        CONFIG_SUB,
        ("Sets configuration parameters in-flight.", "2.0.0"),
        Handler::Server(ServerCmd::ConfigSet),
    ),
];

const FUNCTION_SUBCOMMANDS: &[Decl] = &[Decl::new(
    "function|flush",
    -2,
    Flags::NOSCRIPT,
    KeySpec::NONE,
    Group::Scripting,
    ("Deletes all library and functions.", "7.0.0"),
    data(function_flush),
)];

/// The server commands.
pub static COMMANDS: &[Decl] = &[
    srv(
        "command",
        -1,
        LOADING_STALE,
        ("Returns detailed information about all commands.", "2.8.13"),
        data(command_all),
    )
    .with_subcommands(COMMAND_SUBCOMMANDS),
    srv(
        "info",
        -1,
        LOADING_STALE,
        (
            "Returns information and statistics about the server.",
            "1.0.0",
        ),
        Handler::Server(ServerCmd::Info),
    )
    .with_categories(&["@dangerous"]),
    Decl::container(
        "config",
        Group::Server,
        ("A container for server configuration commands.", "2.0.0"),
        CONFIG_SUBCOMMANDS,
    ),
    Decl::container(
        "function",
        Group::Scripting,
        ("A container for function commands.", "7.0.0"),
        FUNCTION_SUBCOMMANDS,
    ),
    srv(
        "time",
        1,
        LOADING_STALE.with(Flags::FAST),
        ("Returns the server time.", "2.6.0"),
        data(time),
    ),
];

fn command_all(_ctx: &mut Ctx<'_>, _args: &[Bytes]) -> CmdResult {
    Ok(introspect::info_reply(&[]))
}

fn command_count(_ctx: &mut Ctx<'_>, _args: &[Bytes]) -> CmdResult {
    Ok(Frame::Integer(i64::try_from(table::count()).unwrap_or(0)))
}

fn command_docs(_ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    Ok(introspect::docs_reply(args.get(2..).unwrap_or_default()))
}

fn command_info(_ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    Ok(introspect::info_reply(args.get(2..).unwrap_or_default()))
}

fn command_list(_ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    if args.len() != 2 {
        return Err(err(SYNTAX));
    }
    Ok(introspect::list_reply())
}

fn command_getkeys(_ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    introspect::getkeys_reply(args.get(2..).unwrap_or_default())
}

fn time(ctx: &mut Ctx<'_>, _args: &[Bytes]) -> CmdResult {
    let now = ctx.now_ms();
    Ok(Frame::Array(vec![
        Frame::Bulk(Bytes::from((now / 1000).to_string())),
        Frame::Bulk(Bytes::from(((now % 1000) * 1000).to_string())),
    ]))
}

/// `FUNCTION FLUSH [ASYNC|SYNC]`: Seshat has no functions, so there is
/// nothing to delete (test harnesses and tools call it to reset a server).
fn function_flush(_ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    match args {
        [_, _] => Ok(Frame::ok()),
        [_, _, mode] if crate::args::is(mode, "ASYNC") || crate::args::is(mode, "SYNC") => {
            Ok(Frame::ok())
        }
        _ => Err(err(SYNTAX)),
    }
}
