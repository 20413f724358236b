//! Connection commands, and the parsing of those the server runs.

use bytes::Bytes;
use seshat_protocol_resp::Frame;

use crate::args::{arg, int, is};
use crate::decl::{data, Decl, Flags, Group, Handler, KeySpec, ServerCmd};
use crate::exec::Ctx;
use crate::reply::{err, wrong_arity, CmdError, CmdResult};
use crate::table::echo;

const CONN_FAST: Flags = Flags::LOADING.with(Flags::STALE).with(Flags::FAST);
const HANDSHAKE: Flags = Flags::NOSCRIPT
    .with(Flags::LOADING)
    .with(Flags::STALE)
    .with(Flags::FAST)
    .with(Flags::NO_AUTH)
    .with(Flags::ALLOW_BUSY);
const CLIENT_SUB: Flags = Flags::NOSCRIPT.with(Flags::LOADING).with(Flags::STALE);

const fn conn(
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
        Group::Connection,
        docs,
        handler,
    )
}

const CLIENT_SUBCOMMANDS: &[Decl] = &[
    conn(
        "client|getname",
        2,
        CLIENT_SUB,
        ("Returns the name of the connection.", "2.6.9"),
        Handler::Server(ServerCmd::ClientGetName),
    ),
    conn(
        "client|id",
        2,
        CLIENT_SUB,
        ("Returns the unique client ID of the connection.", "5.0.0"),
        Handler::Server(ServerCmd::ClientId),
    ),
    conn(
        "client|info",
        2,
        CLIENT_SUB,
        ("Returns information about the connection.", "6.2.0"),
        Handler::Server(ServerCmd::ClientInfo),
    ),
    conn(
        "client|setinfo",
        4,
        CLIENT_SUB,
        (
            "Sets information specific to the client or connection.",
            "7.2.0",
        ),
        Handler::Server(ServerCmd::ClientSetInfo),
    ),
    conn(
        "client|setname",
        3,
        CLIENT_SUB,
        ("Sets the connection name.", "2.6.9"),
        Handler::Server(ServerCmd::ClientSetName),
    ),
];

/// The connection commands.
pub static COMMANDS: &[Decl] = &[
    conn(
        "ping",
        -1,
        Flags::FAST,
        ("Returns the server's liveliness response.", "1.0.0"),
        data(ping),
    ),
    conn(
        "echo",
        2,
        CONN_FAST,
        ("Returns the given string.", "1.0.0"),
        data(echo_cmd),
    ),
    conn(
        "quit",
        -1,
        HANDSHAKE,
        ("Closes the connection.", "1.0.0"),
        Handler::Server(ServerCmd::Quit),
    ),
    conn(
        "select",
        2,
        CONN_FAST,
        ("Changes the selected database.", "1.0.0"),
        Handler::Server(ServerCmd::Select),
    ),
    conn(
        "auth",
        -2,
        HANDSHAKE,
        ("Authenticates the connection.", "1.0.0"),
        Handler::Server(ServerCmd::Auth),
    ),
    conn(
        "hello",
        -1,
        HANDSHAKE,
        ("Handshakes with the Redis server.", "6.0.0"),
        Handler::Server(ServerCmd::Hello),
    ),
    Decl::container(
        "client",
        Group::Connection,
        ("A container for client connection commands.", "2.4.0"),
        CLIENT_SUBCOMMANDS,
    ),
];

fn ping(_ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    match args {
        [_] => Ok(Frame::pong()),
        [_, message] => Ok(Frame::Bulk(message.clone())),
        _ => Err(wrong_arity("ping")),
    }
}

fn echo_cmd(_ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    Ok(Frame::Bulk(arg(args, 1)?.clone()))
}

/// `SELECT index`: a 32-bit integer, and only database 0 exists.
pub fn parse_select(args: &[Bytes]) -> Result<(), CmdError> {
    let db = int(arg(args, 1)?)?;
    if i32::try_from(db).is_err() {
        return Err(err(format!(
            "ERR value is out of range, value must between {} and {}",
            i32::MIN,
            i32::MAX
        )));
    }
    if db != 0 {
        return Err(err("ERR DB index is out of range"));
    }
    Ok(())
}

/// A parsed `HELLO`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Hello {
    /// Requested protocol version, 2 or 3.
    pub protover: Option<i64>,
    /// New client name (validated).
    pub setname: Option<Bytes>,
    /// Username and password.
    pub auth: Option<(Bytes, Bytes)>,
}

/// `HELLO [protover [AUTH user pass] [SETNAME name]]`, checked in Redis's
/// order: version first, then options left to right.
pub fn parse_hello(args: &[Bytes]) -> Result<Hello, CmdError> {
    let mut hello = Hello::default();
    if let Some(text) = args.get(1) {
        let version = seshat_protocol_resp::parse_i64(text)
            .ok_or_else(|| err("ERR Protocol version is not an integer or out of range"))?;
        if !(2..=3).contains(&version) {
            return Err(err("NOPROTO unsupported protocol version"));
        }
        hello.protover = Some(version);
    }
    let mut i = 2;
    while let Some(opt) = args.get(i) {
        let more = args.len() - 1 - i;
        if is(opt, "AUTH") && more >= 2 {
            hello.auth = Some((arg(args, i + 1)?.clone(), arg(args, i + 2)?.clone()));
            i += 3;
        } else if is(opt, "SETNAME") && more >= 1 {
            hello.setname = Some(valid_client_name(arg(args, i + 1)?.clone())?);
            i += 2;
        } else {
            return Err(err(format!(
                "ERR Syntax error in HELLO option '{}'",
                echo(opt)
            )));
        }
    }
    Ok(hello)
}

/// `AUTH [username] password`: the user (`None` in the one-argument
/// form, which names the default user) and the password. More than two
/// arguments is a syntax error, as in Redis.
pub fn parse_auth(args: &[Bytes]) -> Result<(Option<&Bytes>, &Bytes), CmdError> {
    match args {
        [_, password] => Ok((None, password)),
        [_, user, password] => Ok((Some(user), password)),
        [] | [_] => Err(wrong_arity("auth")),
        _ => Err(err("ERR syntax error")),
    }
}

/// Client names may be empty or consist of bytes `!`..=`~`.
pub fn valid_client_name(name: Bytes) -> Result<Bytes, CmdError> {
    if is_client_attr(&name) {
        Ok(name)
    } else {
        Err(err(
            "ERR Client names cannot contain spaces, newlines or special characters.",
        ))
    }
}

/// Which `CLIENT SETINFO` attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAttr {
    /// `LIB-NAME`
    LibName,
    /// `LIB-VER`
    LibVer,
}

/// `CLIENT SETINFO LIB-NAME|LIB-VER value`.
pub fn parse_client_setinfo(args: &[Bytes]) -> Result<(ClientAttr, Bytes), CmdError> {
    let (attr, value) = (arg(args, 2)?, arg(args, 3)?);
    let which = if is(attr, "lib-name") {
        ClientAttr::LibName
    } else if is(attr, "lib-ver") {
        ClientAttr::LibVer
    } else {
        return Err(err(format!("ERR Unrecognized option '{}'", echo(attr))));
    };
    if !is_client_attr(value) {
        return Err(err(format!(
            "ERR {} cannot contain spaces, newlines or special characters.",
            echo(attr)
        )));
    }
    Ok((which, value.clone()))
}

/// Redis's `validateClientAttr`: only printable ASCII without spaces.
fn is_client_attr(value: &[u8]) -> bool {
    value.iter().all(|b| (b'!'..=b'~').contains(b))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn argv(parts: &[&str]) -> Vec<Bytes> {
        parts
            .iter()
            .map(|p| Bytes::copy_from_slice(p.as_bytes()))
            .collect()
    }

    #[test]
    fn auth_takes_a_password_and_an_optional_user() {
        let one = argv(&["AUTH", "pw"]);
        assert_eq!(parse_auth(&one).unwrap(), (None, &one[1]));
        let two = argv(&["AUTH", "default", "pw"]);
        assert_eq!(parse_auth(&two).unwrap(), (Some(&two[1]), &two[2]));
        let three = argv(&["AUTH", "a", "b", "c"]);
        assert_eq!(
            parse_auth(&three).unwrap_err().into_frame(),
            Frame::error("ERR syntax error")
        );
    }

    #[test]
    fn hello_auth_needs_user_and_password() {
        let hello = parse_hello(&argv(&["HELLO", "3", "AUTH", "default", "pw"])).unwrap();
        assert_eq!(
            hello.auth,
            Some((Bytes::from_static(b"default"), Bytes::from_static(b"pw")))
        );
        let e = parse_hello(&argv(&["HELLO", "3", "AUTH", "pw"])).unwrap_err();
        assert_eq!(
            e.into_frame(),
            Frame::error("ERR Syntax error in HELLO option 'AUTH'")
        );
    }
}
