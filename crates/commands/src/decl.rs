//! What is declared about a command, once, and what is derived from it.

use bytes::Bytes;
use seshat_protocol_resp::Frame;

use crate::exec::Ctx;
use crate::reply::CmdResult;

/// Command flags, as `COMMAND INFO` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flags(u32);

impl Flags {
    /// Changes data.
    pub const WRITE: Flags = Flags(1);
    /// Reads data and changes none.
    pub const READONLY: Flags = Flags(1 << 1);
    /// May use more memory (refused under memory pressure in Redis).
    pub const DENYOOM: Flags = Flags(1 << 2);
    /// Administrative.
    pub const ADMIN: Flags = Flags(1 << 3);
    /// Not allowed in scripts.
    pub const NOSCRIPT: Flags = Flags(1 << 4);
    /// Allowed while loading.
    pub const LOADING: Flags = Flags(1 << 5);
    /// Allowed on a stale replica.
    pub const STALE: Flags = Flags(1 << 6);
    /// O(1) or O(log N).
    pub const FAST: Flags = Flags(1 << 7);
    /// Allowed before authentication.
    pub const NO_AUTH: Flags = Flags(1 << 8);
    /// Allowed while a script is busy.
    pub const ALLOW_BUSY: Flags = Flags(1 << 9);
    /// Not allowed inside `MULTI` (answered at once instead of queued).
    pub const NO_MULTI: Flags = Flags(1 << 10);
    /// No flags.
    pub const NONE: Flags = Flags(0);

    const NAMES: [(Flags, &'static str); 11] = [
        (Flags::WRITE, "write"),
        (Flags::READONLY, "readonly"),
        (Flags::DENYOOM, "denyoom"),
        (Flags::ADMIN, "admin"),
        (Flags::NOSCRIPT, "noscript"),
        (Flags::LOADING, "loading"),
        (Flags::STALE, "stale"),
        (Flags::FAST, "fast"),
        (Flags::NO_AUTH, "no_auth"),
        (Flags::ALLOW_BUSY, "allow_busy"),
        (Flags::NO_MULTI, "no_multi"),
    ];

    /// Both sets of flags.
    pub const fn with(self, other: Flags) -> Flags {
        Flags(self.0 | other.0)
    }

    /// Whether every flag of `other` is set.
    pub const fn has(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }

    /// The flags' names in `COMMAND INFO` order.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        Flags::NAMES
            .into_iter()
            .filter(move |(f, _)| self.has(*f))
            .map(|(_, n)| n)
    }
}

/// Where a command's keys are: Redis's (first, last, step) triple, with
/// `last` negative counting from the end (-1 = the last argument), which
/// `COMMAND INFO` reports; plus, for commands whose keys follow a
/// `numkeys` argument (`ZUNIONSTORE dst numkeys k…`, `LMPOP numkeys k…`),
/// where that count is, so routing, `CROSSSLOT` and ACL key checks see
/// exactly the keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeySpec {
    /// Index of the first key (0 = no keys).
    pub first: i32,
    /// Index of the last key; negative counts from the end.
    pub last: i32,
    /// Step between keys.
    pub step: i32,
    /// Index of a `numkeys` argument followed by that many keys (0: none).
    /// The triple's keys before it are keys too (a destination).
    pub numkeys_at: usize,
}

impl KeySpec {
    /// No keys.
    pub const NONE: KeySpec = KeySpec::new(0, 0, 0);
    /// One key, the first argument.
    pub const ONE: KeySpec = KeySpec::new(1, 1, 1);
    /// Every argument is a key.
    pub const ALL: KeySpec = KeySpec::new(1, -1, 1);

    /// A key spec.
    pub const fn new(first: i32, last: i32, step: i32) -> Self {
        Self {
            first,
            last,
            step,
            numkeys_at: 0,
        }
    }

    /// The same spec, with `numkeys` keys after the `numkeys` argument at
    /// `at`.
    pub const fn numkeys_at(self, at: usize) -> Self {
        Self {
            numkeys_at: at,
            ..self
        }
    }

    /// The indexes of the keys in `args` (the command name at 0). A
    /// malformed `numkeys` gives no keys after it: the command itself then
    /// refuses the arguments.
    pub fn key_positions(self, args: &[Bytes]) -> impl Iterator<Item = usize> + '_ {
        let at = self.numkeys_at;
        let fixed = self
            .positions(args.len())
            .filter(move |i| at == 0 || *i < at);
        let counted = match args.get(at).filter(|_| at > 0) {
            Some(n) => std::str::from_utf8(n)
                .ok()
                .and_then(|n| n.parse::<usize>().ok())
                .filter(|n| at.saturating_add(*n) < args.len())
                .map_or(0..0, |n| at + 1..at + 1 + n),
            None => 0..0,
        };
        fixed.chain(counted)
    }

    /// The indexes of the keys in `argc` arguments.
    pub fn positions(self, argc: usize) -> impl Iterator<Item = usize> {
        let argc = i64::try_from(argc).unwrap_or(i64::MAX);
        let first = i64::from(self.first);
        let last = if self.last < 0 {
            argc + i64::from(self.last)
        } else {
            i64::from(self.last).min(argc - 1)
        };
        let step = usize::try_from(self.step.max(1)).unwrap_or(1);
        let range = if first <= 0 || last < first {
            0..0
        } else {
            usize::try_from(first).unwrap_or(0)..usize::try_from(last + 1).unwrap_or(0)
        };
        range.step_by(step)
    }
}

/// A command that runs over the keyspace: in Raft apply for writes and
/// inside transactions, on a read view after a read barrier for reads,
/// with no data at all for pure commands like `PING`.
pub type DataFn = fn(&mut Ctx<'_>, &[Bytes]) -> CmdResult;

/// The leader's preparation of a write before it is proposed: checks the
/// syntax (so a malformed write costs no log entry) and rewrites relative
/// times as absolute ones at `now_ms`. `Ok(None)` keeps the arguments.
pub type PrepareFn = fn(&[Bytes], u64) -> Result<Option<Vec<Bytes>>, Frame>;

/// Commands the server runs itself because they need the connection or
/// the node. The server matches on this exhaustively, so a new one cannot
/// be left unhandled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServerCmd {
    /// `QUIT`
    Quit,
    /// `SELECT`
    Select,
    /// `HELLO`
    Hello,
    /// `AUTH`
    Auth,
    /// `CLIENT GETNAME`
    ClientGetName,
    /// `CLIENT ID`
    ClientId,
    /// `CLIENT INFO`
    ClientInfo,
    /// `CLIENT SETINFO`
    ClientSetInfo,
    /// `CLIENT SETNAME`
    ClientSetName,
    /// `INFO`
    Info,
    /// `CONFIG GET`
    ConfigGet,
    /// `CONFIG SET`
    ConfigSet,
    /// `CONFIG RESETSTAT`
    ConfigResetStat,
    /// `CLUSTER INFO`
    ClusterInfo,
    /// `CLUSTER MYID`
    ClusterMyId,
    /// `CLUSTER NODES`
    ClusterNodes,
    /// `CLUSTER SHARDS`
    ClusterShards,
    /// `CLUSTER SLOTS`
    ClusterSlots,
    /// `CLUSTER MIGRATESLOTS`
    ClusterMigrateSlots,
    /// `CLUSTER GETSLOTMIGRATIONS`
    ClusterGetSlotMigrations,
    /// `CLUSTER CANCELSLOTMIGRATIONS`
    ClusterCancelSlotMigrations,
    /// `CLUSTER MEMBERS`
    ClusterMembers,
    /// `CLUSTER DECOMMISSION id`
    ClusterDecommission,
    /// `CLUSTER FORGET id`
    ClusterForget,
    /// `READONLY`
    ReadOnly,
    /// `READWRITE`
    ReadWrite,
    /// `ASKING`
    Asking,
    /// `MULTI`
    Multi,
    /// `EXEC`
    Exec,
    /// `DISCARD`
    Discard,
    /// `WATCH`
    Watch,
    /// `UNWATCH`
    Unwatch,
    /// `ACL SETUSER`
    AclSetUser,
    /// `ACL DELUSER`
    AclDelUser,
    /// `ACL GETUSER`
    AclGetUser,
    /// `ACL LIST`
    AclList,
    /// `ACL USERS`
    AclUsers,
    /// `ACL WHOAMI`
    AclWhoAmI,
    /// `ACL CAT`
    AclCat,
    /// `ACL DRYRUN`
    AclDryRun,
    /// `ACL GENPASS`
    AclGenPass,
    /// `ACL LOAD`
    AclLoad,
    /// `ACL SAVE`
    AclSave,
    /// `ACL LOG`
    AclLog,
    /// `ACL HELP`
    AclHelp,
}

/// A data command's handler without preparation.
pub const fn data(run: DataFn) -> Handler {
    Handler::Data { run, prepare: None }
}

/// A write's handler with its leader-side preparation.
pub const fn prepared(run: DataFn, prepare: PrepareFn) -> Handler {
    Handler::Data {
        run,
        prepare: Some(prepare),
    }
}

/// How a command runs.
#[derive(Clone, Copy)]
pub enum Handler {
    /// Over the keyspace (see [`DataFn`]).
    Data {
        /// Executes the command.
        run: DataFn,
        /// Leader-side preparation of a write, if it needs one.
        prepare: Option<PrepareFn>,
    },
    /// Needs the connection or the node: the server runs it.
    Server(ServerCmd),
    /// A container whose subcommands are the commands (`CONFIG`, `CLIENT`).
    Container,
}

/// Where a request goes, derived from its declaration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Proposed through the Raft log and executed at apply.
    Write,
    /// Executed on the leader after a linearizable read barrier.
    Read,
    /// Executed over no data (`PING`, `COMMAND INFO`): anywhere, at once.
    Pure,
    /// Run by the server itself (connection, transactions, node state).
    Server(ServerCmd),
}

/// Everything known about one command or subcommand.
#[derive(Clone, Copy)]
pub struct Decl {
    /// Lower-case full name; subcommands are `parent|sub`.
    pub name: &'static str,
    /// Redis arity: `n` exactly n arguments including the name(s), `-n` at
    /// least n.
    pub arity: i32,
    /// Flags.
    pub flags: Flags,
    /// Key positions.
    pub keys: KeySpec,
    /// Command group for `COMMAND DOCS` and the ACL category it implies.
    pub group: Group,
    /// One-line summary.
    pub summary: &'static str,
    /// Redis version that introduced it.
    pub since: &'static str,
    /// How it runs.
    pub handler: Handler,
    /// Subcommands of a container.
    pub subcommands: &'static [Decl],
    /// ACL categories Redis gives the command besides those its group and
    /// flags imply (`@dangerous` for `KEYS`, `@keyspace` for `FLUSHALL`).
    pub extra_categories: &'static [&'static str],
}

/// Redis's command groups (`COMMAND DOCS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    /// Strings.
    String,
    /// Keys in general.
    Generic,
    /// Connection.
    Connection,
    /// Server.
    Server,
    /// Transactions.
    Transactions,
    /// Cluster.
    Cluster,
    /// Scripting and functions.
    Scripting,
    /// Hashes.
    Hash,
    /// Lists.
    List,
    /// Sets.
    Set,
    /// Sorted sets.
    SortedSet,
}

impl Group {
    /// The group's name in `COMMAND DOCS`.
    pub fn name(self) -> &'static str {
        match self {
            Group::String => "string",
            Group::Generic => "generic",
            Group::Connection => "connection",
            Group::Server => "server",
            Group::Transactions => "transactions",
            Group::Cluster => "cluster",
            Group::Scripting => "scripting",
            Group::Hash => "hash",
            Group::List => "list",
            Group::Set => "set",
            Group::SortedSet => "sorted-set",
        }
    }

    /// The ACL category the group implies.
    fn category(self) -> Option<&'static str> {
        match self {
            Group::String => Some("@string"),
            Group::Generic => Some("@keyspace"),
            Group::Connection => Some("@connection"),
            Group::Transactions => Some("@transaction"),
            Group::Scripting => Some("@scripting"),
            Group::Hash => Some("@hash"),
            Group::List => Some("@list"),
            Group::Set => Some("@set"),
            Group::SortedSet => Some("@sortedset"),
            Group::Server | Group::Cluster => None,
        }
    }
}

impl std::fmt::Debug for Decl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decl")
            .field("name", &self.name)
            .field("arity", &self.arity)
            .field("flags", &self.flags)
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

impl Decl {
    /// A command with no subcommands.
    pub const fn new(
        name: &'static str,
        arity: i32,
        flags: Flags,
        keys: KeySpec,
        group: Group,
        docs: (&'static str, &'static str),
        handler: Handler,
    ) -> Self {
        Self {
            name,
            arity,
            flags,
            keys,
            group,
            summary: docs.0,
            since: docs.1,
            handler,
            subcommands: &[],
            extra_categories: &[],
        }
    }

    /// A container of `subcommands`.
    pub const fn container(
        name: &'static str,
        group: Group,
        docs: (&'static str, &'static str),
        subcommands: &'static [Decl],
    ) -> Self {
        Self {
            name,
            arity: -2,
            flags: Flags::NONE,
            keys: KeySpec::NONE,
            group,
            summary: docs.0,
            since: docs.1,
            handler: Handler::Container,
            subcommands,
            extra_categories: &[],
        }
    }

    /// The same declaration in more ACL categories than its group and
    /// flags imply (each `@name`, one of Redis's categories).
    pub const fn with_categories(self, extra_categories: &'static [&'static str]) -> Self {
        Self {
            extra_categories,
            ..self
        }
    }

    /// The same declaration with subcommands (a container that also runs
    /// on its own, like `COMMAND`).
    pub const fn with_subcommands(self, subcommands: &'static [Decl]) -> Self {
        Self {
            subcommands,
            ..self
        }
    }

    /// The part after `|` of a subcommand's name.
    pub fn short_name(&self) -> &'static str {
        match self.name.rsplit_once('|') {
            Some((_, short)) => short,
            None => self.name,
        }
    }

    /// Whether `argc` arguments satisfy the arity.
    pub fn arity_ok(&self, argc: usize) -> bool {
        let argc = i64::try_from(argc).unwrap_or(i64::MAX);
        let arity = i64::from(self.arity);
        if arity >= 0 {
            argc == arity
        } else {
            argc >= -arity
        }
    }

    /// Whether one request of this command may run long enough to hold up
    /// other work on its thread, so it must not run on an async worker
    /// (heartbeats wait behind it): a command Redis does not flag `fast`
    /// (its cost grows with the data it reads or changes) outside the
    /// string group (whose commands are bounded by their arguments); a
    /// request with many arguments (`EXISTS`, `MGET`, `DEL` of a million
    /// keys); a fast pop given a count.
    pub fn may_take_long(&self, argv: &[bytes::Bytes]) -> bool {
        const MANY_ARGS: usize = 32;
        const COUNTED_POPS: &[&str] = &["lpop", "rpop", "spop", "zpopmin", "zpopmax"];
        argv.len() > MANY_ARGS
            || (!self.flags.has(Flags::FAST) && self.group != Group::String)
            || (argv.len() > 2 && COUNTED_POPS.contains(&self.name))
    }

    /// Where requests of this command go. Exhaustive over the handler and
    /// flags, so a new command cannot fall through unclassified.
    pub fn route(&self) -> Route {
        match self.handler {
            Handler::Data { .. } if self.flags.has(Flags::WRITE) => Route::Write,
            Handler::Data { .. } if self.flags.has(Flags::READONLY) => Route::Read,
            Handler::Data { .. } => Route::Pure,
            Handler::Server(cmd) => Route::Server(cmd),
            // Never reached with a subcommand missing: arity -2 requires
            // one, and resolution picks it.
            Handler::Container => Route::Pure,
        }
    }

    /// Whether a follower in proxy mode forwards this command to the
    /// leader: everything that reads or writes data.
    pub fn is_forwarded(&self) -> bool {
        matches!(self.route(), Route::Write | Route::Read)
    }

    /// The keys among `args`.
    pub fn key_args<'a>(&self, args: &'a [Bytes]) -> impl Iterator<Item = &'a Bytes> + 'a {
        self.keys
            .key_positions(args)
            .filter_map(move |i| args.get(i))
    }

    /// ACL categories, in Redis's order ([`ACL_CATEGORIES`]): the
    /// group's, those the flags imply (as Redis derives them) and the
    /// declared extras.
    pub fn categories(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        out.extend(self.group.category());
        out.extend(self.extra_categories.iter().copied());
        if self.flags.has(Flags::WRITE) {
            out.push("@write");
        }
        if self.flags.has(Flags::READONLY) {
            out.push("@read");
        }
        if self.flags.has(Flags::ADMIN) {
            out.extend(["@admin", "@dangerous"]);
        }
        out.push(if self.flags.has(Flags::FAST) {
            "@fast"
        } else {
            "@slow"
        });
        let rank = |c: &&str| {
            ACL_CATEGORIES
                .iter()
                .position(|k| Some(*k) == c.strip_prefix('@'))
                .unwrap_or(ACL_CATEGORIES.len())
        };
        out.sort_by_key(rank);
        out.dedup();
        out
    }
}

/// Redis's ACL categories, in Redis's order (`ACL CAT`, `COMMAND INFO`).
pub const ACL_CATEGORIES: [&str; 21] = [
    "keyspace",
    "read",
    "write",
    "set",
    "sortedset",
    "list",
    "hash",
    "string",
    "bitmap",
    "hyperloglog",
    "geo",
    "stream",
    "pubsub",
    "admin",
    "fast",
    "slow",
    "blocking",
    "dangerous",
    "connection",
    "transaction",
    "scripting",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_positions_follow_redis() {
        let all: Vec<usize> = KeySpec::ALL.positions(4).collect();
        assert_eq!(all, vec![1, 2, 3]);
        let mset: Vec<usize> = KeySpec::new(1, -1, 2).positions(5).collect();
        assert_eq!(mset, vec![1, 3]);
        let one: Vec<usize> = KeySpec::ONE.positions(3).collect();
        assert_eq!(one, vec![1]);
        assert_eq!(KeySpec::NONE.positions(3).count(), 0);
        assert_eq!(KeySpec::ONE.positions(1).count(), 0);
        let obj: Vec<usize> = KeySpec::new(2, 2, 1).positions(3).collect();
        assert_eq!(obj, vec![2]);
    }

    fn argv(words: &str) -> Vec<Bytes> {
        words
            .split(' ')
            .map(|w| Bytes::copy_from_slice(w.as_bytes()))
            .collect()
    }

    #[test]
    fn numkeys_specs_give_exactly_the_counted_keys() {
        let store = KeySpec::ONE.numkeys_at(2);
        let args = argv("zunionstore d 2 a b WEIGHTS 1 2");
        assert_eq!(store.key_positions(&args).collect::<Vec<_>>(), [1, 3, 4]);
        let after = KeySpec::new(2, 2, 1).numkeys_at(1);
        let args = argv("zunion 3 a b c WITHSCORES");
        assert_eq!(after.key_positions(&args).collect::<Vec<_>>(), [2, 3, 4]);
        let card = KeySpec::new(2, -1, 1).numkeys_at(1);
        let args = argv("sintercard 2 a b LIMIT 5");
        assert_eq!(card.key_positions(&args).collect::<Vec<_>>(), [2, 3]);
        // A count that is not a number, or runs past the arguments, names
        // no keys after it (the command refuses it).
        for bad in ["zunion x a b", "zunion 5 a b", "zunion -1 a"] {
            assert_eq!(after.key_positions(&argv(bad)).count(), 0, "{bad}");
        }
        assert_eq!(
            store
                .key_positions(&argv("zunionstore d x a"))
                .collect::<Vec<_>>(),
            [1]
        );
        // Specs without numkeys are unchanged.
        let args = argv("mset a 1 b 2");
        assert_eq!(
            KeySpec::new(1, -1, 2)
                .key_positions(&args)
                .collect::<Vec<_>>(),
            [1, 3]
        );
    }
}
