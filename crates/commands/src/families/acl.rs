//! `ACL …`: users and their permissions (the rules are in [`crate::acl`];
//! the server runs these, since they need the connection, the node's user
//! table or the log).

use crate::decl::{Decl, Flags, Group, Handler, KeySpec, ServerCmd};

const ADMIN: Flags = Flags::ADMIN
    .with(Flags::NOSCRIPT)
    .with(Flags::LOADING)
    .with(Flags::STALE);
const PLAIN: Flags = Flags::NOSCRIPT.with(Flags::LOADING).with(Flags::STALE);

const fn acl(
    name: &'static str,
    arity: i32,
    flags: Flags,
    docs: (&'static str, &'static str),
    cmd: ServerCmd,
) -> Decl {
    Decl::new(
        name,
        arity,
        flags,
        KeySpec::NONE,
        Group::Server,
        docs,
        Handler::Server(cmd),
    )
}

const ACL_SUBCOMMANDS: &[Decl] = &[
    acl(
        "acl|cat",
        -2,
        PLAIN,
        (
            "Lists the ACL categories, or the commands inside a category.",
            "6.0.0",
        ),
        ServerCmd::AclCat,
    ),
    acl(
        "acl|deluser",
        -3,
        ADMIN,
        (
            "Deletes ACL users, and terminates their connections.",
            "6.0.0",
        ),
        ServerCmd::AclDelUser,
    ),
    acl(
        "acl|dryrun",
        -4,
        ADMIN,
        (
            "Simulates the execution of a command by a user, without executing the command.",
            "7.0.0",
        ),
        ServerCmd::AclDryRun,
    ),
    acl(
        "acl|genpass",
        -2,
        PLAIN,
        (
            "Generates a pseudorandom, secure password that can be used to identify ACL users.",
            "6.0.0",
        ),
        ServerCmd::AclGenPass,
    ),
    acl(
        "acl|getuser",
        3,
        ADMIN,
        ("Lists the ACL rules of a user.", "6.0.0"),
        ServerCmd::AclGetUser,
    ),
    acl(
        "acl|help",
        2,
        Flags::LOADING.with(Flags::STALE),
        (
            "Returns helpful text about the different subcommands.",
            "6.0.0",
        ),
        ServerCmd::AclHelp,
    ),
    acl(
        "acl|list",
        2,
        ADMIN,
        ("Dumps the effective rules in ACL file format.", "6.0.0"),
        ServerCmd::AclList,
    ),
    acl(
        "acl|load",
        2,
        ADMIN,
        ("Reloads the rules from the configured ACL file.", "6.0.0"),
        ServerCmd::AclLoad,
    ),
    acl(
        "acl|log",
        -2,
        ADMIN,
        (
            "Lists recent security events generated due to ACL rules.",
            "6.0.0",
        ),
        ServerCmd::AclLog,
    ),
    acl(
        "acl|save",
        2,
        ADMIN,
        (
            "Saves the effective ACL rules in the configured ACL file.",
            "6.0.0",
        ),
        ServerCmd::AclSave,
    ),
    acl(
        "acl|setuser",
        -3,
        ADMIN,
        ("Creates and modifies an ACL user and its rules.", "6.0.0"),
        ServerCmd::AclSetUser,
    ),
    acl(
        "acl|users",
        2,
        ADMIN,
        ("Lists all ACL users.", "6.0.0"),
        ServerCmd::AclUsers,
    ),
    acl(
        "acl|whoami",
        2,
        PLAIN,
        (
            "Returns the authenticated username of the current connection.",
            "6.0.0",
        ),
        ServerCmd::AclWhoAmI,
    ),
];

/// The `ACL` container.
pub static COMMANDS: &[Decl] = &[Decl::container(
    "acl",
    Group::Server,
    ("A container for Access List Control commands.", "6.0.0"),
    ACL_SUBCOMMANDS,
)];
