//! Typed commands parsed from [`Request`]s, with Redis's error replies.
//!
//! Parsing only validates syntax; nothing is executed. The command name
//! and subcommand are looked up case-insensitively in
//! [`COMMAND_TABLE`](crate::COMMAND_TABLE), whose arity is checked before
//! the command-specific parser runs.

use bytes::Bytes;

use crate::decode::Request;
use crate::frame::Frame;
use crate::num::parse_i64;
use crate::table::{lookup_command, CommandSpec};

/// Redis truncates user input echoed in unknown-command errors to this
/// many bytes.
const ERROR_ECHO_MAX: usize = 128;

/// The `NX` / `XX` condition of `SET`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SetCondition {
    /// Only set if the key does not exist.
    Nx,
    /// Only set if the key already exists.
    Xx,
}

/// A parsed command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `GET key`
    Get {
        /// The key.
        key: Bytes,
    },
    /// `SET key value [NX|XX] [GET]`
    Set {
        /// The key.
        key: Bytes,
        /// The value.
        value: Bytes,
        /// `NX` or `XX`, if given.
        condition: Option<SetCondition>,
        /// `GET`: reply with the old value.
        get: bool,
    },
    /// `DEL key [key ...]`
    Del {
        /// The keys, at least one.
        keys: Vec<Bytes>,
    },
    /// `EXISTS key [key ...]`
    Exists {
        /// The keys, at least one.
        keys: Vec<Bytes>,
    },
    /// `PING [message]`
    Ping {
        /// Message to echo instead of `PONG`.
        message: Option<Bytes>,
    },
    /// `ECHO message`
    Echo {
        /// The message.
        message: Bytes,
    },
    /// `QUIT`
    Quit,
    /// `SELECT 0`; any other index is rejected while parsing.
    Select {
        /// The database index (always 0).
        db: i64,
    },
    /// `HELLO [protover [AUTH username password] [SETNAME clientname]]`
    Hello {
        /// Requested protocol version, 2 or 3.
        protover: Option<i64>,
        /// New client name, already validated.
        setname: Option<Bytes>,
        /// Username and password.
        auth: Option<(Bytes, Bytes)>,
    },
    /// `CLIENT SETNAME name` (name already validated; empty clears it).
    ClientSetName {
        /// The new name.
        name: Bytes,
    },
    /// `CLIENT GETNAME`
    ClientGetName,
    /// `CLIENT ID`
    ClientId,
    /// `CLIENT SETINFO LIB-NAME|LIB-VER value` (validated).
    ClientSetInfo {
        /// `lib-name` or `lib-ver`, as the client spelled it.
        attr: Bytes,
        /// The value.
        value: Bytes,
    },
    /// `CLIENT INFO`
    ClientInfo,
    /// `COMMAND LIST`
    CommandList,
    /// `COMMAND COUNT`
    CommandCount,
    /// `COMMAND DOCS [name ...]`; empty means all.
    CommandDocs {
        /// Requested command names.
        names: Vec<Bytes>,
    },
    /// `COMMAND` or `COMMAND INFO [name ...]`; empty means all.
    CommandInfo {
        /// Requested command names.
        names: Vec<Bytes>,
    },
    /// `INFO [section ...]`
    Info {
        /// Requested sections; empty means the default set.
        sections: Vec<Bytes>,
    },
    /// `DBSIZE`
    DbSize,
    /// `CONFIG GET pattern [pattern ...]`
    ConfigGet {
        /// Glob patterns of parameter names.
        patterns: Vec<Bytes>,
    },
    /// `CONFIG SET parameter value [parameter value ...]`
    ConfigSet {
        /// Parameter/value pairs, at least one.
        pairs: Vec<(Bytes, Bytes)>,
    },
    /// `FLUSHALL [ASYNC|SYNC]`
    FlushAll,
    /// `FLUSHDB [ASYNC|SYNC]`
    FlushDb,
    /// `CLUSTER SLOTS`
    ClusterSlots,
    /// `CLUSTER SHARDS`
    ClusterShards,
    /// `CLUSTER NODES`
    ClusterNodes,
    /// `CLUSTER INFO`
    ClusterInfo,
    /// `CLUSTER MYID`
    ClusterMyId,
    /// `CLUSTER KEYSLOT key`
    ClusterKeySlot {
        /// The key whose slot is asked for.
        key: Bytes,
    },
    /// `READONLY`
    ReadOnly,
    /// `READWRITE`
    ReadWrite,
}

/// A command the server rejects before executing it. `Display` is Redis's
/// reply text without the leading `-`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// Unknown command name.
    #[error("ERR unknown command '{name}', with args beginning with: {args}")]
    UnknownCommand {
        /// The name as sent (truncated, lossily decoded, CR/LF as spaces).
        name: String,
        /// The quoted leading arguments, Redis-formatted.
        args: String,
    },
    /// Unknown subcommand of a container command.
    #[error("ERR unknown subcommand '{subcommand}'. Try {container} HELP.")]
    UnknownSubcommand {
        /// The container command, upper-cased.
        container: String,
        /// The subcommand as sent.
        subcommand: String,
    },
    /// Wrong number of arguments.
    #[error("ERR wrong number of arguments for '{command}' command")]
    WrongArity {
        /// Full lower-case name, e.g. `get` or `client|setname`.
        command: &'static str,
    },
    /// An argument that should be an integer is not.
    #[error("ERR value is not an integer or out of range")]
    NotAnInteger,
    /// An integer argument outside the accepted range (Redis's wording,
    /// including its grammar).
    #[error("ERR value is out of range, value must between {min} and {max}")]
    OutOfRange {
        /// Smallest accepted value.
        min: i64,
        /// Largest accepted value.
        max: i64,
    },
    /// Malformed options.
    #[error("ERR syntax error")]
    Syntax,
    /// `SET` with `EX`, `PX`, `EXAT`, `PXAT` or `KEEPTTL`.
    #[error("ERR SET expiry options are not supported")]
    SetExpiryUnsupported,
    /// `SELECT` of a database other than 0.
    #[error("ERR DB index is out of range")]
    DbIndexOutOfRange,
    /// `HELLO` with a protocol version other than 2 or 3.
    #[error("NOPROTO unsupported protocol version")]
    UnsupportedProtocol,
    /// `HELLO` with a non-integer protocol version.
    #[error("ERR Protocol version is not an integer or out of range")]
    ProtocolVersionNotInteger,
    /// `HELLO` with an unknown or incomplete option.
    #[error("ERR Syntax error in HELLO option '{option}'")]
    HelloSyntax {
        /// The offending option.
        option: String,
    },
    /// A client name with bytes outside `!`..=`~`.
    #[error("ERR Client names cannot contain spaces, newlines or special characters.")]
    InvalidClientName,
    /// `CLIENT SETINFO` with an attribute other than `lib-name`/`lib-ver`.
    #[error("ERR Unrecognized option '{option}'")]
    UnrecognizedOption {
        /// The offending attribute.
        option: String,
    },
    /// `CLIENT SETINFO` value with bytes outside `!`..=`~`.
    #[error("ERR {attr} cannot contain spaces, newlines or special characters.")]
    InvalidClientAttr {
        /// The attribute as sent.
        attr: String,
    },
}

impl CommandError {
    /// The error reply for this error.
    pub fn to_frame(&self) -> Frame {
        Frame::Error(Bytes::from(self.to_string()))
    }
}

/// Parses a request into a [`Command`], or the error Redis would reply.
pub fn parse_command(req: &Request) -> Result<Command, CommandError> {
    let args = req.args.as_slice();
    let spec = resolve(args)?;
    if !spec.arity_ok(args.len()) {
        return Err(CommandError::WrongArity { command: spec.name });
    }
    build(Args { spec, args })
}

/// The first key of a command, used to route it to a cluster slot.
pub fn key_of(cmd: &Command) -> Option<&Bytes> {
    match cmd {
        Command::Get { key } | Command::Set { key, .. } => Some(key),
        Command::Del { keys } | Command::Exists { keys } => keys.first(),
        _ => None,
    }
}

/// Finds the spec of the command (or subcommand) `args` names.
fn resolve(args: &[Bytes]) -> Result<&'static CommandSpec, CommandError> {
    let Some(spec) = args.first().and_then(|name| lookup_command(name)) else {
        return Err(unknown_command(args));
    };
    match args.get(1) {
        Some(sub) if !spec.subcommands.is_empty() => spec
            .subcommand(sub)
            .ok_or_else(|| unknown_subcommand(spec, sub)),
        _ => Ok(spec),
    }
}

/// A request's arguments together with the spec they matched.
struct Args<'a> {
    spec: &'static CommandSpec,
    args: &'a [Bytes],
}

impl Args<'_> {
    /// The argument at `index`; arity was checked, so absence means a
    /// wrong number of arguments.
    fn get(&self, index: usize) -> Result<Bytes, CommandError> {
        self.args
            .get(index)
            .cloned()
            .ok_or(CommandError::WrongArity {
                command: self.spec.name,
            })
    }

    /// The arguments from `index` on.
    fn rest(&self, index: usize) -> Vec<Bytes> {
        self.args.get(index..).unwrap_or_default().to_vec()
    }

    fn len(&self) -> usize {
        self.args.len()
    }
}

/// Builds the command for a resolved, arity-checked spec.
fn build(a: Args<'_>) -> Result<Command, CommandError> {
    use Command as C;
    Ok(match a.spec.name {
        "get" => C::Get { key: a.get(1)? },
        "set" => return parse_set(&a),
        "del" => C::Del { keys: a.rest(1) },
        "exists" => C::Exists { keys: a.rest(1) },
        "ping" => return parse_ping(&a),
        "echo" => C::Echo { message: a.get(1)? },
        "quit" => C::Quit,
        "select" => return parse_select(&a),
        "hello" => return parse_hello(&a),
        "client|setname" => C::ClientSetName {
            name: valid_client_name(a.get(2)?)?,
        },
        "client|getname" => C::ClientGetName,
        "client|id" => C::ClientId,
        "client|setinfo" => return parse_client_setinfo(&a),
        "client|info" => C::ClientInfo,
        "command" => C::CommandInfo { names: Vec::new() },
        "command|count" => C::CommandCount,
        "command|docs" => C::CommandDocs { names: a.rest(2) },
        "command|info" => C::CommandInfo { names: a.rest(2) },
        "command|list" if a.len() == 2 => C::CommandList,
        "command|list" => return Err(CommandError::Syntax),
        "info" => C::Info {
            sections: a.rest(1),
        },
        "dbsize" => C::DbSize,
        "config|get" => C::ConfigGet {
            patterns: a.rest(2),
        },
        "config|set" => return parse_config_set(&a),
        "flushall" => flush_mode(&a).map(|()| C::FlushAll)?,
        "flushdb" => flush_mode(&a).map(|()| C::FlushDb)?,
        "cluster|slots" => C::ClusterSlots,
        "cluster|shards" => C::ClusterShards,
        "cluster|nodes" => C::ClusterNodes,
        "cluster|info" => C::ClusterInfo,
        "cluster|myid" => C::ClusterMyId,
        "cluster|keyslot" => C::ClusterKeySlot { key: a.get(2)? },
        "readonly" => C::ReadOnly,
        "readwrite" => C::ReadWrite,
        _ => return Err(unknown_command(a.args)),
    })
}

/// `SET` expiry options, tracked only to reproduce Redis's syntax rules.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Expiry {
    KeepTtl,
    Ex,
    Px,
    ExAt,
    PxAt,
}

/// Parses `SET key value [NX|XX] [GET] [EX s|PX ms|EXAT t|PXAT t|KEEPTTL]`.
/// Syntax is checked as Redis does; well-formed expiry options are then
/// rejected as unsupported.
fn parse_set(a: &Args<'_>) -> Result<Command, CommandError> {
    let (key, value) = (a.get(1)?, a.get(2)?);
    let mut condition = None;
    let mut get = false;
    let mut expiry = None;
    let mut index = 3;
    while let Some(opt) = a.args.get(index) {
        let has_value = index + 1 < a.len();
        let compatible = |kind: Expiry| expiry.is_none_or(|seen| seen == kind);
        if is(opt, "NX") && condition != Some(SetCondition::Xx) {
            condition = Some(SetCondition::Nx);
        } else if is(opt, "XX") && condition != Some(SetCondition::Nx) {
            condition = Some(SetCondition::Xx);
        } else if is(opt, "GET") {
            get = true;
        } else if is(opt, "KEEPTTL") && compatible(Expiry::KeepTtl) {
            expiry = Some(Expiry::KeepTtl);
        } else {
            match timed_expiry(opt) {
                Some(kind) if has_value && compatible(kind) => {
                    expiry = Some(kind);
                    index += 1;
                }
                _ => return Err(CommandError::Syntax),
            }
        }
        index += 1;
    }
    if expiry.is_some() {
        return Err(CommandError::SetExpiryUnsupported);
    }
    Ok(Command::Set {
        key,
        value,
        condition,
        get,
    })
}

/// The expiry option that takes a time argument, if `opt` is one.
fn timed_expiry(opt: &[u8]) -> Option<Expiry> {
    [
        ("EX", Expiry::Ex),
        ("PX", Expiry::Px),
        ("EXAT", Expiry::ExAt),
        ("PXAT", Expiry::PxAt),
    ]
    .into_iter()
    .find_map(|(name, kind)| is(opt, name).then_some(kind))
}

fn parse_ping(a: &Args<'_>) -> Result<Command, CommandError> {
    if a.len() > 2 {
        return Err(CommandError::WrongArity {
            command: a.spec.name,
        });
    }
    Ok(Command::Ping {
        message: a.args.get(1).cloned(),
    })
}

/// `SELECT index`: the index must be a 32-bit integer, and only 0 exists.
fn parse_select(a: &Args<'_>) -> Result<Command, CommandError> {
    let db = parse_i64(&a.get(1)?).ok_or(CommandError::NotAnInteger)?;
    if i32::try_from(db).is_err() {
        return Err(CommandError::OutOfRange {
            min: i32::MIN.into(),
            max: i32::MAX.into(),
        });
    }
    if db != 0 {
        return Err(CommandError::DbIndexOutOfRange);
    }
    Ok(Command::Select { db })
}

/// `HELLO [protover [AUTH user pass] [SETNAME name]]`, checked in Redis's
/// order: version first, then options left to right.
fn parse_hello(a: &Args<'_>) -> Result<Command, CommandError> {
    let protover = match a.args.get(1) {
        Some(text) => {
            let version = parse_i64(text).ok_or(CommandError::ProtocolVersionNotInteger)?;
            if !(2..=3).contains(&version) {
                return Err(CommandError::UnsupportedProtocol);
            }
            Some(version)
        }
        None => None,
    };
    let (mut setname, mut auth) = (None, None);
    let mut index = 2;
    while let Some(opt) = a.args.get(index) {
        let more = a.len() - 1 - index;
        if is(opt, "AUTH") && more >= 2 {
            auth = Some((a.get(index + 1)?, a.get(index + 2)?));
            index += 3;
        } else if is(opt, "SETNAME") && more >= 1 {
            setname = Some(valid_client_name(a.get(index + 1)?)?);
            index += 2;
        } else {
            return Err(CommandError::HelloSyntax { option: echo(opt) });
        }
    }
    Ok(Command::Hello {
        protover,
        setname,
        auth,
    })
}

/// `CLIENT SETINFO LIB-NAME|LIB-VER value`.
fn parse_client_setinfo(a: &Args<'_>) -> Result<Command, CommandError> {
    let (attr, value) = (a.get(2)?, a.get(3)?);
    if !is(&attr, "lib-name") && !is(&attr, "lib-ver") {
        return Err(CommandError::UnrecognizedOption {
            option: echo(&attr),
        });
    }
    if !is_client_attr(&value) {
        return Err(CommandError::InvalidClientAttr { attr: echo(&attr) });
    }
    Ok(Command::ClientSetInfo { attr, value })
}

/// `CONFIG SET param value [param value ...]`: a missing value is a syntax
/// error, as in Redis.
fn parse_config_set(a: &Args<'_>) -> Result<Command, CommandError> {
    let rest = a.args.get(2..).unwrap_or_default();
    if rest.is_empty() || rest.len() % 2 != 0 {
        return Err(CommandError::Syntax);
    }
    let pairs = rest
        .chunks_exact(2)
        .filter_map(|pair| match pair {
            [param, value] => Some((param.clone(), value.clone())),
            _ => None,
        })
        .collect();
    Ok(Command::ConfigSet { pairs })
}

/// `FLUSHALL`/`FLUSHDB` accept only an optional `ASYNC` or `SYNC`.
fn flush_mode(a: &Args<'_>) -> Result<(), CommandError> {
    match a.args {
        [_] => Ok(()),
        [_, mode] if is(mode, "ASYNC") || is(mode, "SYNC") => Ok(()),
        _ => Err(CommandError::Syntax),
    }
}

/// Client names may be empty or consist of bytes `!`..=`~`.
fn valid_client_name(name: Bytes) -> Result<Bytes, CommandError> {
    if is_client_attr(&name) {
        Ok(name)
    } else {
        Err(CommandError::InvalidClientName)
    }
}

/// Redis's `validateClientAttr`: only printable ASCII without spaces.
fn is_client_attr(value: &[u8]) -> bool {
    value.iter().all(|b| (b'!'..=b'~').contains(b))
}

/// Case-insensitive comparison with an option keyword.
fn is(arg: &[u8], keyword: &str) -> bool {
    arg.eq_ignore_ascii_case(keyword.as_bytes())
}

/// User input as echoed in an error: at most [`ERROR_ECHO_MAX`] bytes,
/// lossily decoded, CR/LF replaced by spaces (as Redis does).
fn echo(arg: &[u8]) -> String {
    printable(arg.get(..ERROR_ECHO_MAX).unwrap_or(arg))
}

fn printable(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).replace(['\r', '\n'], " ")
}

/// Redis 7's unknown-command error: the name, then each argument quoted and
/// followed by a space, until 128 bytes of arguments have been listed.
fn unknown_command(args: &[Bytes]) -> CommandError {
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
    CommandError::UnknownCommand {
        name,
        args: printable(&listed),
    }
}

fn unknown_subcommand(container: &CommandSpec, sub: &[u8]) -> CommandError {
    CommandError::UnknownSubcommand {
        container: container.name.to_ascii_uppercase(),
        subcommand: echo(sub),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
