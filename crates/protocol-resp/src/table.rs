//! The static table of served commands and the `COMMAND` replies built
//! from it.
//!
//! Arity, flags and key positions are Redis 7's values; command parsing
//! checks arity against this table, so it is the one source of truth.

use bytes::Bytes;

use crate::frame::Frame;

/// Metadata of one command or subcommand, as `COMMAND INFO` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandSpec {
    /// Lower-case full name; subcommands are `parent|sub`.
    pub name: &'static str,
    /// Redis arity: `n` means exactly n arguments including the name,
    /// `-n` means at least n.
    pub arity: i32,
    /// Command flags in Redis's reply order (`write`, `readonly`, ...).
    pub flags: &'static [&'static str],
    /// Position of the first key, 0 for none.
    pub first_key: i32,
    /// Position of the last key, -1 for "up to the last argument".
    pub last_key: i32,
    /// Step between keys.
    pub step: i32,
    /// Subcommands of a container command.
    pub subcommands: &'static [CommandSpec],
    /// One-line summary for `COMMAND DOCS`.
    pub summary: &'static str,
    /// Redis version that introduced the command, for `COMMAND DOCS`.
    pub since: &'static str,
    /// Command group, for `COMMAND DOCS`.
    pub group: &'static str,
}

impl CommandSpec {
    /// A command without subcommands.
    const fn new(
        name: &'static str,
        arity: i32,
        flags: &'static [&'static str],
        keys: (i32, i32, i32),
        docs: (&'static str, &'static str, &'static str),
    ) -> Self {
        Self {
            name,
            arity,
            flags,
            first_key: keys.0,
            last_key: keys.1,
            step: keys.2,
            subcommands: &[],
            summary: docs.0,
            since: docs.1,
            group: docs.2,
        }
    }

    /// The same command with `subcommands`.
    const fn with_subcommands(self, subcommands: &'static [CommandSpec]) -> Self {
        Self {
            subcommands,
            ..self
        }
    }

    /// The last `|`-separated part of the name (`setname` for `client|setname`).
    pub fn short_name(&self) -> &'static str {
        match self.name.rsplit_once('|') {
            Some((_, short)) => short,
            None => self.name,
        }
    }

    /// Whether `argc` arguments (including the name(s)) satisfy the arity.
    pub fn arity_ok(&self, argc: usize) -> bool {
        let argc = i64::try_from(argc).unwrap_or(i64::MAX);
        let arity = i64::from(self.arity);
        if arity >= 0 {
            argc == arity
        } else {
            argc >= -arity
        }
    }

    /// Whether the command has `flag` (e.g. `"write"`).
    pub fn has_flag(&self, flag: &str) -> bool {
        self.flags.contains(&flag)
    }

    /// Finds a subcommand by its short name, case-insensitively.
    pub fn subcommand(&self, name: &[u8]) -> Option<&'static CommandSpec> {
        let subcommands: &'static [CommandSpec] = self.subcommands;
        subcommands
            .iter()
            .find(|sub| sub.short_name().as_bytes().eq_ignore_ascii_case(name))
    }
}

const NO_KEYS: (i32, i32, i32) = (0, 0, 0);
const ONE_KEY: (i32, i32, i32) = (1, 1, 1);
const ALL_KEYS: (i32, i32, i32) = (1, -1, 1);

const READ_FAST: &[&str] = &["readonly", "fast"];
const WRITE: &[&str] = &["write"];
const CONN_FAST: &[&str] = &["loading", "stale", "fast"];
const HANDSHAKE: &[&str] = &[
    "noscript",
    "loading",
    "stale",
    "fast",
    "no_auth",
    "allow_busy",
];
const CLIENT_SUB: &[&str] = &["noscript", "loading", "stale"];
const LOADING_STALE: &[&str] = &["loading", "stale"];
const CONFIG_SUB: &[&str] = &["admin", "noscript", "loading", "stale"];
const STALE: &[&str] = &["stale"];

const CLIENT_SUBCOMMANDS: &[CommandSpec] = &[
    CommandSpec::new(
        "client|getname",
        2,
        CLIENT_SUB,
        NO_KEYS,
        ("Returns the name of the connection.", "2.6.9", "connection"),
    ),
    CommandSpec::new(
        "client|id",
        2,
        CLIENT_SUB,
        NO_KEYS,
        (
            "Returns the unique client ID of the connection.",
            "5.0.0",
            "connection",
        ),
    ),
    CommandSpec::new(
        "client|info",
        2,
        CLIENT_SUB,
        NO_KEYS,
        (
            "Returns information about the connection.",
            "6.2.0",
            "connection",
        ),
    ),
    CommandSpec::new(
        "client|setinfo",
        4,
        CLIENT_SUB,
        NO_KEYS,
        (
            "Sets information specific to the client or connection.",
            "7.2.0",
            "connection",
        ),
    ),
    CommandSpec::new(
        "client|setname",
        3,
        CLIENT_SUB,
        NO_KEYS,
        ("Sets the connection name.", "2.6.9", "connection"),
    ),
];

const COMMAND_SUBCOMMANDS: &[CommandSpec] = &[
    CommandSpec::new(
        "command|count",
        2,
        LOADING_STALE,
        NO_KEYS,
        ("Returns a count of commands.", "2.8.13", "server"),
    ),
    CommandSpec::new(
        "command|docs",
        -2,
        LOADING_STALE,
        NO_KEYS,
        (
            "Returns documentary information about one, multiple or all commands.",
            "7.0.0",
            "server",
        ),
    ),
    CommandSpec::new(
        "command|info",
        -2,
        LOADING_STALE,
        NO_KEYS,
        (
            "Returns information about one, multiple or all commands.",
            "2.8.13",
            "server",
        ),
    ),
    CommandSpec::new(
        "command|list",
        -2,
        LOADING_STALE,
        NO_KEYS,
        ("Returns a list of command names.", "7.0.0", "server"),
    ),
];

const CONFIG_SUBCOMMANDS: &[CommandSpec] = &[
    CommandSpec::new(
        "config|get",
        -3,
        CONFIG_SUB,
        NO_KEYS,
        (
            "Returns the effective values of configuration parameters.",
            "2.0.0",
            "server",
        ),
    ),
    CommandSpec::new(
        "config|set",
        -4,
        CONFIG_SUB,
        NO_KEYS,
        (
            "Sets configuration parameters in-flight.",
            "2.0.0",
            "server",
        ),
    ),
];

const CLUSTER_SUBCOMMANDS: &[CommandSpec] = &[
    CommandSpec::new(
        "cluster|info",
        2,
        STALE,
        NO_KEYS,
        (
            "Returns information about the state of a node.",
            "3.0.0",
            "cluster",
        ),
    ),
    CommandSpec::new(
        "cluster|keyslot",
        3,
        STALE,
        NO_KEYS,
        ("Returns the hash slot for a key.", "3.0.0", "cluster"),
    ),
    CommandSpec::new(
        "cluster|myid",
        2,
        STALE,
        NO_KEYS,
        ("Returns the ID of a node.", "3.0.0", "cluster"),
    ),
    CommandSpec::new(
        "cluster|nodes",
        2,
        STALE,
        NO_KEYS,
        (
            "Returns the cluster configuration for a node.",
            "3.0.0",
            "cluster",
        ),
    ),
    CommandSpec::new(
        "cluster|shards",
        2,
        LOADING_STALE,
        NO_KEYS,
        (
            "Returns the mapping of cluster slots to shards.",
            "7.0.0",
            "cluster",
        ),
    ),
    CommandSpec::new(
        "cluster|slots",
        2,
        LOADING_STALE,
        NO_KEYS,
        (
            "Returns the mapping of cluster slots to nodes.",
            "3.0.0",
            "cluster",
        ),
    ),
];

/// Every command the server understands, with Redis 7's metadata.
pub static COMMAND_TABLE: &[CommandSpec] = &[
    CommandSpec::new("get", 2, READ_FAST, ONE_KEY, ("Returns the string value of a key.", "1.0.0", "string")),
    CommandSpec::new("set", -3, &["write", "denyoom"], ONE_KEY, ("Sets the string value of a key, ignoring its type. The key is created if it doesn't exist.", "1.0.0", "string")),
    CommandSpec::new("del", -2, WRITE, ALL_KEYS, ("Deletes one or more keys.", "1.0.0", "generic")),
    CommandSpec::new("exists", -2, READ_FAST, ALL_KEYS, ("Determines whether one or more keys exist.", "1.0.0", "generic")),
    CommandSpec::new("ping", -1, &["fast"], NO_KEYS, ("Returns the server's liveliness response.", "1.0.0", "connection")),
    CommandSpec::new("echo", 2, CONN_FAST, NO_KEYS, ("Returns the given string.", "1.0.0", "connection")),
    CommandSpec::new("quit", -1, HANDSHAKE, NO_KEYS, ("Closes the connection.", "1.0.0", "connection")),
    CommandSpec::new("select", 2, CONN_FAST, NO_KEYS, ("Changes the selected database.", "1.0.0", "connection")),
    CommandSpec::new("hello", -1, HANDSHAKE, NO_KEYS, ("Handshakes with the Redis server.", "6.0.0", "connection")),
    CommandSpec::new("client", -2, &[], NO_KEYS, ("A container for client connection commands.", "2.4.0", "connection"))
        .with_subcommands(CLIENT_SUBCOMMANDS),
    CommandSpec::new("command", -1, LOADING_STALE, NO_KEYS, ("Returns detailed information about all commands.", "2.8.13", "server"))
        .with_subcommands(COMMAND_SUBCOMMANDS),
    CommandSpec::new("info", -1, LOADING_STALE, NO_KEYS, ("Returns information and statistics about the server.", "1.0.0", "server")),
    CommandSpec::new("dbsize", 1, READ_FAST, NO_KEYS, ("Returns the number of keys in the database.", "1.0.0", "server")),
    CommandSpec::new("config", -2, &[], NO_KEYS, ("A container for server configuration commands.", "2.0.0", "server"))
        .with_subcommands(CONFIG_SUBCOMMANDS),
    CommandSpec::new("flushall", -1, WRITE, NO_KEYS, ("Removes all keys from all databases.", "1.0.0", "server")),
    CommandSpec::new("flushdb", -1, WRITE, NO_KEYS, ("Remove all keys from the current database.", "1.0.0", "server")),
    CommandSpec::new("cluster", -2, &[], NO_KEYS, ("A container for Redis Cluster commands.", "3.0.0", "cluster"))
        .with_subcommands(CLUSTER_SUBCOMMANDS),
    CommandSpec::new("readonly", 1, CONN_FAST, NO_KEYS, ("Enables read-only queries for a connection to a Redis Cluster replica node.", "3.0.0", "cluster")),
    CommandSpec::new("readwrite", 1, CONN_FAST, NO_KEYS, ("Enables read-write queries for a connection to a Redis Cluster replica node.", "3.0.0", "cluster")),
];

/// Finds a top-level command by name, case-insensitively.
pub fn lookup_command(name: &[u8]) -> Option<&'static CommandSpec> {
    COMMAND_TABLE
        .iter()
        .find(|spec| spec.name.as_bytes().eq_ignore_ascii_case(name))
}

/// Finds a command by full name (`get`, `client|setname`), case-insensitively,
/// as `COMMAND INFO` and `COMMAND DOCS` accept them.
pub fn lookup_command_by_fullname(name: &[u8]) -> Option<&'static CommandSpec> {
    match name.iter().position(|&b| b == b'|') {
        Some(bar) => {
            let parent = lookup_command(name.get(..bar)?)?;
            parent.subcommand(name.get(bar + 1..)?)
        }
        None => lookup_command(name),
    }
}

/// Number of top-level commands, the `COMMAND COUNT` reply.
pub fn command_count() -> usize {
    COMMAND_TABLE.len()
}

/// The `COMMAND INFO` entry of one command, in Redis 7's 10-element shape:
/// name, arity, flags, first key, last key, step, ACL categories, tips,
/// key specs, subcommands.
pub fn command_info_frame(spec: &CommandSpec) -> Frame {
    let flags = spec
        .flags
        .iter()
        .map(|flag| Frame::Simple(Bytes::from_static(flag.as_bytes())))
        .collect();
    let subcommands = if spec.subcommands.is_empty() {
        Frame::Set(Vec::new())
    } else {
        Frame::Array(spec.subcommands.iter().map(command_info_frame).collect())
    };
    Frame::Array(vec![
        Frame::Bulk(Bytes::from_static(spec.name.as_bytes())),
        Frame::Integer(i64::from(spec.arity)),
        Frame::Set(flags),
        Frame::Integer(i64::from(spec.first_key)),
        Frame::Integer(i64::from(spec.last_key)),
        Frame::Integer(i64::from(spec.step)),
        Frame::Set(Vec::new()),
        Frame::Set(Vec::new()),
        Frame::Set(Vec::new()),
        subcommands,
    ])
}

/// The `COMMAND DOCS` map of one command: `summary`, `since`, `group` and,
/// for containers, `subcommands` (a map of full name to docs).
pub fn command_docs_frame(spec: &CommandSpec) -> Frame {
    let mut docs = vec![
        (static_bulk("summary"), static_bulk(spec.summary)),
        (static_bulk("since"), static_bulk(spec.since)),
        (static_bulk("group"), static_bulk(spec.group)),
    ];
    if !spec.subcommands.is_empty() {
        let subs = spec.subcommands.iter().map(named_docs).collect();
        docs.push((static_bulk("subcommands"), Frame::Map(subs)));
    }
    Frame::Map(docs)
}

/// The `COMMAND` / `COMMAND INFO [name ...]` reply: every command when
/// `names` is empty, else one entry per name (null when unknown).
pub fn command_info_reply(names: &[Bytes]) -> Frame {
    if names.is_empty() {
        return Frame::Array(COMMAND_TABLE.iter().map(command_info_frame).collect());
    }
    Frame::Array(
        names
            .iter()
            .map(|name| lookup_command_by_fullname(name).map_or(Frame::Null, command_info_frame))
            .collect(),
    )
}

/// The `COMMAND DOCS [name ...]` reply: a map of full name to docs for
/// every command when `names` is empty, else for each known name.
pub fn command_docs_reply(names: &[Bytes]) -> Frame {
    if names.is_empty() {
        return Frame::Map(COMMAND_TABLE.iter().map(named_docs).collect());
    }
    Frame::Map(
        names
            .iter()
            .filter_map(|name| lookup_command_by_fullname(name))
            .map(named_docs)
            .collect(),
    )
}

/// The `COMMAND LIST` reply: every command and subcommand full name.
pub fn command_list_reply() -> Frame {
    let names = COMMAND_TABLE
        .iter()
        .flat_map(|spec| std::iter::once(spec).chain(spec.subcommands.iter()))
        .map(|spec| static_bulk(spec.name))
        .collect();
    Frame::Array(names)
}

fn named_docs(spec: &CommandSpec) -> (Frame, Frame) {
    (static_bulk(spec.name), command_docs_frame(spec))
}

fn static_bulk(text: &'static str) -> Frame {
    Frame::Bulk(Bytes::from_static(text.as_bytes()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::frame::ProtocolVersion;

    #[test]
    fn redis_metadata() {
        let get = lookup_command(b"GET").unwrap();
        assert_eq!(
            (get.arity, get.flags, get.first_key, get.last_key, get.step),
            (2, READ_FAST, 1, 1, 1)
        );
        let set = lookup_command(b"set").unwrap();
        assert_eq!(
            (set.arity, set.flags, set.first_key, set.last_key, set.step),
            (-3, &["write", "denyoom"][..], 1, 1, 1)
        );
        let del = lookup_command(b"del").unwrap();
        assert_eq!(
            (del.arity, del.flags, del.first_key, del.last_key, del.step),
            (-2, WRITE, 1, -1, 1)
        );
        let exists = lookup_command(b"exists").unwrap();
        assert_eq!(
            (exists.arity, exists.first_key, exists.last_key),
            (-2, 1, -1)
        );
        let ping = lookup_command(b"ping").unwrap();
        assert_eq!(
            (ping.arity, ping.flags, ping.first_key),
            (-1, &["fast"][..], 0)
        );
        assert!(lookup_command(b"nope").is_none());
    }

    #[test]
    fn names_are_lowercase_unique_and_subcommands_prefixed() {
        let mut seen = std::collections::HashSet::new();
        for spec in COMMAND_TABLE {
            assert_eq!(spec.name, spec.name.to_ascii_lowercase());
            assert!(seen.insert(spec.name), "duplicate {}", spec.name);
            assert_ne!(spec.arity, 0);
            for sub in spec.subcommands {
                assert_eq!(sub.name, format!("{}|{}", spec.name, sub.short_name()));
                assert!(sub.subcommands.is_empty());
            }
        }
    }

    #[test]
    fn arity() {
        let get = lookup_command(b"get").unwrap();
        assert!(get.arity_ok(2));
        assert!(!get.arity_ok(1) && !get.arity_ok(3));
        let del = lookup_command(b"del").unwrap();
        assert!(!del.arity_ok(1));
        assert!(del.arity_ok(2) && del.arity_ok(100));
    }

    #[test]
    fn fullname_lookup() {
        assert_eq!(
            lookup_command_by_fullname(b"CLIENT|SetName").unwrap().name,
            "client|setname"
        );
        assert_eq!(lookup_command_by_fullname(b"get").unwrap().name, "get");
        assert!(lookup_command_by_fullname(b"client|nope").is_none());
        assert!(lookup_command_by_fullname(b"get|x").is_none());
        assert!(lookup_command_by_fullname(b"|").is_none());
        assert!(!lookup_command(b"client").unwrap().has_flag("write"));
        assert!(lookup_command(b"set").unwrap().has_flag("write"));
    }

    #[test]
    fn info_frame_shape() {
        let get = command_info_frame(lookup_command(b"get").unwrap());
        let expected = b"*10\r\n$3\r\nget\r\n:2\r\n*2\r\n+readonly\r\n+fast\r\n:1\r\n:1\r\n:1\r\n*0\r\n*0\r\n*0\r\n*0\r\n";
        assert_eq!(get.to_bytes(ProtocolVersion::Resp2), &expected[..]);
        let Frame::Array(client) = command_info_frame(lookup_command(b"client").unwrap()) else {
            panic!("not an array");
        };
        let Some(Frame::Array(subs)) = client.get(9) else {
            panic!("no subcommands");
        };
        assert_eq!(subs.len(), CLIENT_SUBCOMMANDS.len());
    }

    #[test]
    fn info_reply() {
        let Frame::Array(all) = command_info_reply(&[]) else {
            panic!()
        };
        assert_eq!(all.len(), command_count());
        let some = command_info_reply(&[Bytes::from_static(b"GET"), Bytes::from_static(b"nope")]);
        let Frame::Array(some) = some else { panic!() };
        assert_eq!(some.len(), 2);
        assert_eq!(some[1], Frame::Null);
    }

    #[test]
    fn docs_reply_is_what_redis_cli_expects() {
        let Frame::Map(all) = command_docs_reply(&[]) else {
            panic!()
        };
        assert_eq!(all.len(), command_count());
        for (name, docs) in &all {
            assert!(matches!(name, Frame::Bulk(_)));
            let Frame::Map(fields) = docs else { panic!() };
            let keys: Vec<_> = fields.iter().map(|(k, _)| k.clone()).collect();
            assert_eq!(
                &keys[..3],
                &[
                    static_bulk("summary"),
                    static_bulk("since"),
                    static_bulk("group")
                ]
            );
            assert!(fields
                .iter()
                .all(|(_, v)| matches!(v, Frame::Bulk(_) | Frame::Map(_))));
        }
        let Frame::Map(some) = command_docs_reply(&[
            Bytes::from_static(b"nope"),
            Bytes::from_static(b"config|get"),
        ]) else {
            panic!()
        };
        assert_eq!(some.len(), 1);
        assert_eq!(some[0].0, static_bulk("config|get"));
    }

    #[test]
    fn list_reply_includes_subcommands() {
        let Frame::Array(names) = command_list_reply() else {
            panic!()
        };
        assert!(names.contains(&static_bulk("client|setname")));
        assert!(names.contains(&static_bulk("get")));
        let expected: usize = COMMAND_TABLE.iter().map(|s| 1 + s.subcommands.len()).sum();
        assert_eq!(names.len(), expected);
    }
}
