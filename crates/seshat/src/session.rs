//! What the server knows about one client connection: its name, protocol,
//! and transaction state. Commands see the connection only through this.

use std::net::SocketAddr;

use bytes::Bytes;
use seshat_commands::Decl;
use seshat_kv::Watch;
use seshat_protocol_resp::ProtocolVersion;

use crate::auth::Identity;

/// Per-client state that commands read and change.
#[derive(Debug)]
pub struct ClientState {
    /// `CLIENT ID`.
    pub id: u64,
    /// `CLIENT SETNAME`.
    pub name: Option<Bytes>,
    /// Reply protocol (RESP3 after `HELLO 3`).
    pub version: ProtocolVersion,
    /// `CLIENT SETINFO lib-name`.
    pub lib_name: Option<Bytes>,
    /// `CLIENT SETINFO lib-ver`.
    pub lib_ver: Option<Bytes>,
    /// The peer's address.
    pub peer: SocketAddr,
    /// Connected to the TLS port: redirects and `CLUSTER` replies name
    /// TLS addresses.
    pub tls: bool,
    /// The command being run was received before a read barrier that has
    /// since succeeded: a read needs no barrier of its own.
    pub read_confirmed: bool,
    /// The group whose read barrier `read_confirmed` speaks of.
    pub confirmed_group: Option<u32>,
    /// The client sent `ASKING` just before the command being run: it is
    /// following an `-ASK` redirect (reset after every other command).
    pub asking: bool,
    /// Commands queued since `MULTI`, if a transaction is open.
    pub multi: Option<Multi>,
    /// Keys `WATCH`ed, with what was observed, until `EXEC`/`UNWATCH`.
    pub watches: Vec<Watch>,
    /// The groups `watches` were read from. Modification indexes are
    /// indexes of one group's log: an `EXEC` that lands on another group
    /// (the slot moved between shards since the `WATCH`) cannot compare
    /// them and aborts.
    pub watched_groups: Vec<u32>,
    /// Logged in: connected while no password was set, or `AUTH`
    /// succeeded. Never taken back (as in Redis, a later password or a
    /// failed `AUTH` leaves it).
    pub authenticated: bool,
    /// The user the connection runs as (`default` until `AUTH`).
    pub identity: Identity,
}

impl ClientState {
    /// Whether the command being run needs no read barrier of its own on
    /// `group`: a shared barrier of that group covers it.
    pub fn confirmed(&self, group: u32) -> bool {
        self.read_confirmed && self.confirmed_group == Some(group)
    }

    /// A new connection's state, as `identity`; `authenticated` when no
    /// password is required.
    pub fn new(id: u64, peer: SocketAddr, authenticated: bool, identity: Identity) -> Self {
        Self {
            id,
            name: None,
            version: ProtocolVersion::Resp2,
            lib_name: None,
            lib_ver: None,
            peer,
            tls: false,
            read_confirmed: false,
            confirmed_group: None,
            asking: false,
            watched_groups: Vec::new(),
            multi: None,
            watches: Vec::new(),
            authenticated,
            identity,
        }
    }
}

/// An open transaction.
#[derive(Debug, Default)]
pub struct Multi {
    /// The queued commands, in order.
    pub queued: Vec<(&'static Decl, Vec<Bytes>)>,
    /// A command was refused while queueing: `EXEC` will abort.
    pub dirty: bool,
    /// Bytes of arguments queued, checked against the largest write.
    pub bytes: usize,
}

/// Most commands one transaction may queue.
pub const MAX_QUEUED_COMMANDS: usize = 10_000;
