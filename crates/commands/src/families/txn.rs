//! Transactions: `MULTI EXEC DISCARD WATCH UNWATCH`. The server keeps the
//! queue and watched keys per connection; `EXEC` becomes one log entry.

use crate::decl::{Decl, Flags, Group, Handler, KeySpec, ServerCmd};

const TXN: Flags = Flags::NOSCRIPT
    .with(Flags::LOADING)
    .with(Flags::STALE)
    .with(Flags::FAST)
    .with(Flags::ALLOW_BUSY);

const fn txn(
    name: &'static str,
    arity: i32,
    flags: Flags,
    keys: KeySpec,
    docs: (&'static str, &'static str),
    cmd: ServerCmd,
) -> Decl {
    Decl::new(
        name,
        arity,
        flags,
        keys,
        Group::Transactions,
        docs,
        Handler::Server(cmd),
    )
}

/// The transaction commands.
pub static COMMANDS: &[Decl] = &[
    txn(
        "multi",
        1,
        TXN.with(Flags::NO_MULTI),
        KeySpec::NONE,
        ("Starts a transaction.", "1.2.0"),
        ServerCmd::Multi,
    ),
    txn(
        "exec",
        1,
        Flags::NOSCRIPT
            .with(Flags::LOADING)
            .with(Flags::STALE)
            .with(Flags::ALLOW_BUSY),
        KeySpec::NONE,
        ("Executes all commands in a transaction.", "1.2.0"),
        ServerCmd::Exec,
    ),
    txn(
        "discard",
        1,
        TXN,
        KeySpec::NONE,
        ("Discards a transaction.", "2.0.0"),
        ServerCmd::Discard,
    ),
    txn(
        "watch",
        -2,
        TXN.with(Flags::NO_MULTI),
        KeySpec::ALL,
        (
            "Monitors changes to keys to determine the execution of a transaction.",
            "2.2.0",
        ),
        ServerCmd::Watch,
    ),
    txn(
        "unwatch",
        1,
        TXN,
        KeySpec::NONE,
        ("Forgets about watched keys of a transaction.", "2.2.0"),
        ServerCmd::Unwatch,
    ),
];
