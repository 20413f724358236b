//! Runs commands for a connection: data commands through the node (a
//! write proposed through the log, a read after a barrier, a pure command
//! at once), and the commands the server answers itself, matched
//! exhaustively on [`ServerCmd`] so a new one cannot be left unhandled.

use bytes::Bytes;
use seshat_commands::{self as cmds, ClientAttr, Decl, NoData, Route, ServerCmd};
use seshat_common::{LimitError, Limits};
use seshat_kv::keys::DATA_GROUP;
use seshat_kv::Write;
use seshat_protocol_resp::{self as resp, Frame, ProtocolVersion};

use crate::auth::{self, PasswordDigest};
use crate::cluster;
use crate::info;
use crate::node::{wall_clock_ms, Node, ServeError};
use crate::session::ClientState;
use crate::shared::Shared;
use std::sync::Arc;

/// What the connection does with a command's result.
pub enum Outcome {
    /// Send this reply.
    Reply(Frame),
    /// Send this reply, encoded in the new protocol version.
    ReplyThenSwitch(Frame, ProtocolVersion),
    /// Send this reply, then close the connection (`QUIT`).
    Close(Frame),
}

/// Longest a command waits for its slot's migration step to pass
/// ([`route_patiently`]) before it is answered `-TRYAGAIN`.
pub const MAX_TRYAGAIN_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// The replica a data command runs on here and the slot it routes by
/// (see [`Groups::slot_for`](crate::groups::Groups::slot_for) and
/// [`Groups::serve`](crate::groups::Groups::serve); `asking`: the client
/// sent `ASKING` before this command), waiting while the slot is frozen
/// for a migration (or its
/// new shard has not committed the copy yet) — up to
/// [`MAX_TRYAGAIN_WAIT`], re-routing every few milliseconds — so a
/// client sees a slower reply (then served, or redirected with `ASK` or
/// `MOVED`) instead of a `-TRYAGAIN` it must retry. Cluster clients give
/// up after a few hundred milliseconds of `TRYAGAIN` (redis-py: 16 tries,
/// the first half without a pause); a freeze lasts about as long.
pub async fn route_patiently(
    decl: &Decl,
    args: &[Bytes],
    shared: &Shared,
    asking: bool,
) -> Result<(Arc<Node>, u16), ServeError> {
    let slot = shared.groups.slot_for(decl, args)?;
    let node = serve_patiently(shared, slot, access_of(decl), asking).await?;
    Ok((node, slot))
}

/// How long a command has waited out `TRYAGAIN`: the clock starts at the
/// first refusal, so a command never refused reads no clock for it.
#[derive(Default)]
pub struct Patience(Option<std::time::Instant>);

impl Patience {
    /// Whether the command may wait and try again (within
    /// [`MAX_TRYAGAIN_WAIT`] of its first refusal).
    pub fn lasts(&mut self) -> bool {
        self.0.get_or_insert_with(std::time::Instant::now).elapsed() < MAX_TRYAGAIN_WAIT
    }
}

/// [`Groups::serve`](crate::groups::Groups::serve), waiting while the
/// slot is frozen (see [`route_patiently`]).
pub async fn serve_patiently(
    shared: &Shared,
    slot: u16,
    access: seshat_migration::Access,
    asking: bool,
) -> Result<Arc<Node>, ServeError> {
    let mut patience = Patience::default();
    loop {
        match shared.groups.serve(slot, access, asking) {
            Err(ServeError::TryAgain(_)) if patience.lasts() => {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            other => return other,
        }
    }
}

fn access_of(decl: &Decl) -> seshat_migration::Access {
    if decl.route() == Route::Write {
        seshat_migration::Access::Write
    } else {
        seshat_migration::Access::Read
    }
}

/// The size limits on a write's arguments: every key at most
/// `max_key_bytes`, every other argument at most `max_value_bytes`.
/// (The whole write's size is checked when it is proposed.)
pub fn check_write_limits(decl: &Decl, args: &[Bytes], limits: &Limits) -> Result<(), LimitError> {
    let mut keys = decl.keys.key_positions(args).peekable();
    for (i, arg) in args.iter().enumerate().skip(1) {
        if keys.peek() == Some(&i) {
            keys.next();
            limits.check_key(arg)?;
        } else {
            limits.check_value(arg)?;
        }
    }
    Ok(())
}

/// The leader's form of a write: limits checked, relative times made
/// absolute at `now_ms` (the clock of the group it goes to,
/// [`Node::now_ms`]).
pub fn prepare(
    decl: &Decl,
    args: Vec<Bytes>,
    shared: &Shared,
    now_ms: u64,
) -> Result<Vec<Bytes>, Frame> {
    check_write_limits(decl, &args, &shared.settings.limits)
        .map_err(|e| Frame::error(e.to_string()))?;
    cmds::prepare_write(decl, args, now_ms)
}

fn error(e: impl ToString) -> Frame {
    Frame::error(e.to_string())
}

/// Runs a data command (write, read or pure) and waits for its reply.
pub async fn run_data(
    decl: &'static Decl,
    args: Vec<Bytes>,
    client: &ClientState,
    shared: &Shared,
) -> Frame {
    if matches!(decl.route(), Route::Pure) {
        return run_pure(decl, &args);
    }
    if shared.groups.fans_out(decl) {
        return run_keyless(decl, args, shared, client.tls).await;
    }
    let mut patience = Patience::default();
    loop {
        let (node, slot) = match route_patiently(decl, &args, shared, client.asking).await {
            Ok(routed) => routed,
            Err(e) => return e.to_frame(&shared.settings, client.tls),
        };
        let frame = match decl.route() {
            Route::Write => {
                let prepared = match prepare(decl, args.clone(), shared, node.now_ms()) {
                    Ok(a) => a,
                    Err(frame) => return frame,
                };
                node.write(Write::Command(prepared), slot)
                    .await
                    .unwrap_or_else(|e| e.to_frame(&shared.settings, client.tls))
            }
            Route::Read => node
                .read(
                    decl,
                    &args,
                    slot,
                    client.confirmed(node.group),
                    Some(client.asking),
                )
                .await
                .unwrap_or_else(|e| e.to_frame(&shared.settings, client.tls)),
            Route::Pure => run_pure(decl, &args),
            Route::Server(_) => Frame::error("ERR internal error: not a data command"),
        };
        // Refused because the slot froze (or moved) between routing and
        // apply: definite, nothing ran, so route it again — the client of
        // a proxying node follows no redirect.
        match &frame {
            Frame::Error(e) if e.starts_with(b"TRYAGAIN") && patience.lasts() => {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            _ => return frame,
        }
    }
}

/// Runs a keyless data command (`DBSIZE`, `KEYS`, `SCAN`, `RANDOMKEY`,
/// `FLUSHALL`, `FLUSHDB`) of a sharded cluster on every group this node
/// leads, as one Redis Cluster master runs it on its own slots, and
/// merges the replies. `SCAN`'s cursor is a slot-and-hash position, so a
/// scan walks the led groups in slot order: when one group's walk ends,
/// the cursor moves to the next led group's first slot.
pub async fn run_keyless(
    decl: &'static Decl,
    args: Vec<Bytes>,
    shared: &Shared,
    tls: bool,
) -> Frame {
    let led = shared.groups.led_by_slot();
    let to_frame = |e: ServeError| e.to_frame(&shared.settings, tls);
    if decl.route() == Route::Write {
        if led.is_empty() {
            return Frame::error("READONLY You can't write against a read only replica.");
        }
        let args = match prepare(decl, args, shared, shared.groups.now_ms()) {
            Ok(a) => a,
            Err(frame) => return frame,
        };
        let writes = led
            .iter()
            .map(|(first, node)| node.write(Write::Command(args.clone()), *first));
        let replies = futures::future::join_all(writes).await;
        return replies
            .into_iter()
            .map(|r| r.unwrap_or_else(to_frame))
            .find(|f| matches!(f, Frame::Error(_)))
            .unwrap_or_else(Frame::ok);
    }
    if decl.name == "scan" {
        return scan_led(decl, args, shared, &led, to_frame).await;
    }
    let mut replies = Vec::with_capacity(led.len());
    for (first, node) in &led {
        match node.read(decl, &args, *first, false, None).await {
            Ok(Frame::Error(e)) => return Frame::Error(e),
            Ok(frame) => replies.push(served_keys_only(node, decl.name, frame)),
            Err(e) => return to_frame(e),
        }
    }
    merge_keyless(decl.name, replies)
}

/// A group's `KEYS`, `SCAN` or `RANDOMKEY` reply without the keys it is
/// importing (copied in, the copy not committed yet): until the commit
/// the source lists them, so a key is never missing from the masters'
/// replies taken together. From the commit to the source's drop both
/// list it (listed twice, never lost). Other replies, and those of a
/// group that never took part in a migration, are left alone.
fn served_keys_only(node: &Node, name: &str, frame: Frame) -> Frame {
    let Some(table) = node.table() else {
        return frame;
    };
    let serves = |key: &[u8]| {
        !matches!(
            table.decide(
                seshat_common::crc16_slot(key),
                seshat_migration::Access::Read,
                false,
            ),
            seshat_migration::Decision::Moved(_)
        )
    };
    match (name, frame) {
        ("keys", Frame::Array(keys)) => Frame::Array(
            keys.into_iter()
                .filter(|k| !matches!(k, Frame::Bulk(b) if !serves(b)))
                .collect(),
        ),
        ("randomkey", Frame::Bulk(key)) if !serves(&key) => Frame::Null,
        (_, frame) => frame,
    }
}

/// Merges the led groups' replies to one keyless read.
fn merge_keyless(name: &str, replies: Vec<Frame>) -> Frame {
    match name {
        "dbsize" | "cluster|countkeysinslot" => Frame::Integer(
            replies
                .iter()
                .map(|f| match f {
                    Frame::Integer(n) => *n,
                    _ => 0,
                })
                .sum(),
        ),
        "randomkey" => {
            // Any group's random key, the group picked at random.
            let found: Vec<Frame> = replies
                .into_iter()
                .filter(|f| !matches!(f, Frame::Null))
                .collect();
            let pick = usize::try_from(wall_clock_ms()).unwrap_or(0) % found.len().max(1);
            found.into_iter().nth(pick).unwrap_or(Frame::Null)
        }
        // KEYS, CLUSTER GETKEYSINSLOT: the arrays joined.
        _ => Frame::Array(
            replies
                .into_iter()
                .flat_map(|f| match f {
                    Frame::Array(items) => items,
                    other => vec![other],
                })
                .collect(),
        ),
    }
}

/// `SCAN` over the led groups in slot order (see [`run_keyless`]): the
/// cursor's slot names the group whose walk it continues (its owner, or
/// the first led group whose slots start after it); a group is entered
/// at its first slot, so its slots before the cursor are done, and when
/// its walk ends the cursor moves to the next led group's first slot.
async fn scan_led(
    decl: &'static Decl,
    args: Vec<Bytes>,
    shared: &Shared,
    led: &[(u16, Arc<Node>)],
    to_frame: impl Fn(ServeError) -> Frame,
) -> Frame {
    let Some(cursor) = args
        .get(1)
        .and_then(|c| std::str::from_utf8(c).ok())
        .and_then(|c| c.parse::<u64>().ok())
    else {
        return Frame::error("ERR invalid cursor");
    };
    let slot = u16::try_from(cursor >> 32).unwrap_or(u16::MAX);
    let owner = shared.groups.slot_owner(slot);
    let Some(at) = led
        .iter()
        .position(|(_, n)| n.group == owner)
        .or_else(|| led.iter().position(|(first, _)| *first >= slot))
    else {
        return Frame::Array(vec![Frame::bulk("0"), Frame::Array(vec![])]);
    };
    let (first, node) = &led[at];
    let reply = match node.read(decl, &args, *first, false, None).await {
        Ok(frame) => frame,
        Err(e) => return to_frame(e),
    };
    let Frame::Array(mut parts) = reply else {
        return reply;
    };
    if let Some(keys) = parts.get_mut(1) {
        *keys = served_keys_only(node, "keys", std::mem::replace(keys, Frame::Null));
    }
    let done = matches!(parts.first(), Some(Frame::Bulk(c)) if c.as_ref() == b"0");
    if let (true, Some((next, _))) = (done, led.get(at + 1)) {
        parts[0] = Frame::bulk((u64::from(*next) << 32).to_string());
    }
    Frame::Array(parts)
}

/// Runs a command that touches no data, at this node's clock.
pub fn run_pure(decl: &Decl, args: &[Bytes]) -> Frame {
    let now = wall_clock_ms();
    cmds::run_read(
        decl,
        args,
        DATA_GROUP,
        &mut NoData,
        now,
        Default::default(),
        now,
    )
    .unwrap_or_else(error)
}

/// Runs a command the server answers itself. Transaction commands are run
/// by the connection, which owns the queue and the pipeline.
pub fn execute_server(
    cmd: ServerCmd,
    args: &[Bytes],
    client: &mut ClientState,
    shared: &Shared,
) -> Outcome {
    let frame = match cmd {
        ServerCmd::Quit => return Outcome::Close(Frame::ok()),
        ServerCmd::Select => match cmds::parse_select(args) {
            Ok(()) => Frame::ok(),
            Err(e) => e.into_frame(),
        },
        ServerCmd::Hello => return hello(args, client, shared),
        ServerCmd::Auth => auth(args, client, shared),
        ServerCmd::ClientSetName => match args.get(2).cloned().map(cmds::valid_client_name) {
            Some(Ok(name)) => {
                client.name = if name.is_empty() { None } else { Some(name) };
                Frame::ok()
            }
            Some(Err(e)) => e.into_frame(),
            None => Frame::error("ERR wrong number of arguments for 'client|setname' command"),
        },
        ServerCmd::ClientGetName => client.name.clone().map_or(Frame::Null, Frame::Bulk),
        ServerCmd::ClientId => Frame::Integer(i64::try_from(client.id).unwrap_or(i64::MAX)),
        ServerCmd::ClientSetInfo => match cmds::parse_client_setinfo(args) {
            Ok((ClientAttr::LibName, v)) => {
                client.lib_name = Some(v);
                Frame::ok()
            }
            Ok((ClientAttr::LibVer, v)) => {
                client.lib_ver = Some(v);
                Frame::ok()
            }
            Err(e) => e.into_frame(),
        },
        ServerCmd::ClientInfo => Frame::verbatim_text(client_info_line(client)),
        ServerCmd::Info => {
            Frame::verbatim_text(info::render(args.get(1..).unwrap_or_default(), shared))
        }
        ServerCmd::ConfigGet => config_get(args.get(2..).unwrap_or_default(), shared),
        ServerCmd::ConfigSet => config_set(args.get(2..).unwrap_or_default(), shared),
        ServerCmd::ConfigResetStat => Frame::ok(),
        ServerCmd::ClusterMyId => Frame::bulk(cluster::node_name(shared.settings.node_id)),
        ServerCmd::ClusterInfo => Frame::verbatim_text(cluster::info(&shared.groups)),
        ServerCmd::ClusterSlots => cluster::slots(&shared.groups, client.tls),
        ServerCmd::ClusterGetSlotMigrations => crate::resharding::get_slot_migrations(shared),
        ServerCmd::ClusterMembers => crate::membership::members(shared),
        ServerCmd::ClusterMigrateSlots
        | ServerCmd::ClusterCancelSlotMigrations
        | ServerCmd::ClusterDecommission
        | ServerCmd::ClusterForget => {
            Frame::error("ERR internal error: slot migrations are run by the connection")
        }
        ServerCmd::ClusterShards => cluster::shards(&shared.groups, client.tls),
        ServerCmd::ClusterNodes => Frame::verbatim_text(cluster::nodes(&shared.groups, client.tls)),
        ServerCmd::ReadOnly | ServerCmd::ReadWrite => Frame::ok(),
        ServerCmd::Asking => {
            client.asking = true;
            Frame::ok()
        }
        ServerCmd::Multi
        | ServerCmd::Exec
        | ServerCmd::Discard
        | ServerCmd::Watch
        | ServerCmd::Unwatch => {
            Frame::error("ERR internal error: transaction commands are run by the connection")
        }
        ServerCmd::AclSetUser
        | ServerCmd::AclDelUser
        | ServerCmd::AclLoad
        | ServerCmd::AclGetUser
        | ServerCmd::AclList
        | ServerCmd::AclUsers
        | ServerCmd::AclWhoAmI
        | ServerCmd::AclCat
        | ServerCmd::AclDryRun
        | ServerCmd::AclGenPass
        | ServerCmd::AclSave
        | ServerCmd::AclLog
        | ServerCmd::AclHelp => crate::acl::execute(cmd, args, client, shared),
    };
    Outcome::Reply(frame)
}

fn hello(args: &[Bytes], client: &mut ClientState, shared: &Shared) -> Outcome {
    let hello = match cmds::parse_hello(args) {
        Ok(h) => h,
        Err(e) => return Outcome::Reply(e.into_frame()),
    };
    let version = match hello.protover {
        None => client.version,
        Some(v) => match ProtocolVersion::from_protover(v) {
            Some(version) => version,
            None => return Outcome::Reply(Frame::error("NOPROTO unsupported protocol version")),
        },
    };
    if let Some((user, password)) = &hello.auth {
        if !log_in(user, password, client, shared) {
            return Outcome::Reply(Frame::error(auth::WRONGPASS));
        }
    }
    if shared.auth.must_authenticate(client.authenticated) {
        return Outcome::Reply(Frame::error(auth::HELLO_NOAUTH));
    }
    if let Some(name) = hello.setname {
        client.name = if name.is_empty() { None } else { Some(name) };
    }
    let role = if !shared.groups.led().is_empty() {
        "master"
    } else {
        "replica"
    };
    let reply = Frame::Map(vec![
        (Frame::bulk("server"), Frame::bulk("redis")),
        (
            Frame::bulk("version"),
            Frame::bulk(info::REDIS_COMPAT_VERSION),
        ),
        (Frame::bulk("proto"), Frame::Integer(version.protover())),
        (
            Frame::bulk("id"),
            Frame::Integer(i64::try_from(client.id).unwrap_or(i64::MAX)),
        ),
        (Frame::bulk("mode"), Frame::bulk("cluster")),
        (Frame::bulk("role"), Frame::bulk(role)),
        (Frame::bulk("modules"), Frame::Array(vec![])),
    ]);
    Outcome::ReplyThenSwitch(reply, version)
}

/// `AUTH [user] password`. The one-argument form names the default user
/// and is refused when no password is set (Redis's wording).
fn auth(args: &[Bytes], client: &mut ClientState, shared: &Shared) -> Frame {
    let (user, password) = match cmds::parse_auth(args) {
        Ok(parsed) => parsed,
        Err(e) => return e.into_frame(),
    };
    if user.is_none() && shared.auth.default_user(&shared.auth.users()).nopass() {
        return Frame::error(auth::AUTH_WITHOUT_PASSWORD);
    }
    let user = user.map_or(auth::DEFAULT_USER, |u| u.as_ref());
    if log_in(user, password, client, shared) {
        Frame::ok()
    } else {
        Frame::error(auth::WRONGPASS)
    }
}

/// Checks the credentials; on success the client is authenticated as
/// that user, on failure the attempt is logged (and counted by
/// [`auth::Auth::check`]).
fn log_in(user: &[u8], password: &[u8], client: &mut ClientState, shared: &Shared) -> bool {
    if let Some(identity) = shared.auth.check(user, password) {
        client.authenticated = true;
        client.identity = identity;
        return true;
    }
    tracing::warn!(
        client = client.id,
        peer = %client.peer,
        user = %String::from_utf8_lossy(user.get(..LOGGED_USER_BYTES).unwrap_or(user)),
        "authentication failed"
    );
    false
}

/// Most bytes of a user name a failed attempt logs.
const LOGGED_USER_BYTES: usize = 64;

fn client_info_line(client: &ClientState) -> String {
    let lossy = |b: &Option<Bytes>| {
        b.as_ref()
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default()
    };
    let multi = client.multi.as_ref().map_or(-1, |m| m.queued.len() as i64);
    format!(
        "id={} addr={} name={} db=0 multi={} watch={} user={} resp={} lib-name={} lib-ver={}\n",
        client.id,
        client.peer,
        lossy(&client.name),
        multi,
        client.watches.len(),
        String::from_utf8_lossy(&client.identity.name),
        client.version.protover(),
        lossy(&client.lib_name),
        lossy(&client.lib_ver),
    )
}

/// The parameters `CONFIG GET` reports, with their values.
fn config_table(shared: &Shared) -> Vec<(&'static str, String)> {
    let s = &shared.settings;
    vec![
        ("save", String::new()),
        ("appendonly", "yes".into()),
        ("appendfsync", "always".into()),
        ("databases", "1".into()),
        ("maxclients", s.max_clients.to_string()),
        ("cluster-enabled", "yes".into()),
        ("port", s.client_addr.port().to_string()),
        ("bind", s.client_addr.ip().to_string()),
        ("dir", s.data_dir.display().to_string()),
        (
            "proto-max-bulk-len",
            resp::DEFAULT_MAX_BULK_BYTES.to_string(),
        ),
        ("timeout", s.client_timeout.as_secs().to_string()),
        ("tcp-keepalive", s.tcp_keepalive.as_secs().to_string()),
        ("maxmemory-clients", s.maxmemory_clients.to_string()),
        (
            "protected-mode",
            if s.protected_mode { "yes" } else { "no" }.into(),
        ),
        (
            "client-query-buffer-limit",
            resp::DEFAULT_MAX_CLIENT_BUFFER_BYTES.to_string(),
        ),
    ]
    .into_iter()
    .chain(tls_config(shared))
    .chain(ENCODING_KNOBS.iter().map(|(n, v, _)| (*n, v.to_string())))
    .collect()
}

/// The `tls-*` parameters, as Redis names them (`tls-port` 0: TLS off).
fn tls_config(shared: &Shared) -> Vec<(&'static str, String)> {
    let port = shared
        .settings
        .tls
        .as_ref()
        .and_then(|t| t.addr)
        .map_or(0, |a| a.port());
    let files = shared.tls.as_ref().map(|t| t.files());
    let path =
        |p: Option<&std::path::PathBuf>| p.map(|p| p.display().to_string()).unwrap_or_default();
    vec![
        ("tls-port", port.to_string()),
        ("tls-cert-file", path(files.as_ref().map(|f| &f.cert_file))),
        ("tls-key-file", path(files.as_ref().map(|f| &f.key_file))),
        (
            "tls-ca-cert-file",
            path(files.as_ref().and_then(|f| f.ca_cert_file.as_ref())),
        ),
        (
            "tls-auth-clients",
            files.map_or("no", |f| f.auth_clients.as_str()).to_string(),
        ),
    ]
}

/// The TLS files `CONFIG SET` may change while serving. Setting any of
/// them (even to its current value) re-reads all three, as in Redis.
const TLS_FILE_PARAMS: [&str; 3] = ["tls-cert-file", "tls-key-file", "tls-ca-cert-file"];

/// `CONFIG SET tls-cert-file …` and friends: loads the files and, if they
/// load, accepts new TLS connections with them.
fn config_set_tls(changes: &[(&'static str, Bytes)], shared: &Shared) -> Frame {
    use std::os::unix::ffi::OsStrExt;
    let first = changes.first().map_or("tls-cert-file", |(n, _)| *n);
    let failed = |why: String| {
        Frame::error(format!(
            "ERR CONFIG SET failed (possibly related to argument '{first}') - {}",
            why.replace(['\r', '\n'], " ")
        ))
    };
    let Some(tls) = &shared.tls else {
        return failed("TLS is off; start the node with --tls-port or --http-tls yes".into());
    };
    let mut files = tls.files();
    for (name, value) in changes {
        let path = std::path::PathBuf::from(std::ffi::OsStr::from_bytes(value));
        match *name {
            "tls-cert-file" => files.cert_file = path,
            "tls-key-file" => files.key_file = path,
            _ => files.ca_cert_file = (!value.is_empty()).then_some(path),
        }
    }
    match tls.replace(files) {
        Ok(()) => {
            tracing::info!("CONFIG SET: TLS certificate, key and CA files reloaded");
            Frame::ok()
        }
        Err(e) => {
            tracing::error!(
                error = format!("{e:#}"),
                "CONFIG SET: TLS files not reloaded; the previous ones stay in force"
            );
            failed(format!("Unable to update TLS configuration: {e:#}"))
        }
    }
}

/// Redis's encoding knobs of data types, with Redis's default and valid
/// range. Seshat has one storage layout per type, so `CONFIG SET` accepts
/// any valid value for them and ignores it (test suites set them).
const ENCODING_KNOBS: &[(&str, &str, std::ops::RangeInclusive<i64>)] = &[
    (
        "list-max-listpack-size",
        "-2",
        i32::MIN as i64..=i32::MAX as i64,
    ),
    (
        "list-max-ziplist-size",
        "-2",
        i32::MIN as i64..=i32::MAX as i64,
    ),
    ("list-compress-depth", "0", 0..=i32::MAX as i64),
    ("hash-max-listpack-entries", "128", 0..=i64::MAX),
    ("hash-max-listpack-value", "64", 0..=i64::MAX),
    ("hash-max-ziplist-entries", "128", 0..=i64::MAX),
    ("hash-max-ziplist-value", "64", 0..=i64::MAX),
    ("set-max-intset-entries", "512", 0..=i64::MAX),
    ("zset-max-ziplist-entries", "128", 0..=i64::MAX),
    ("zset-max-ziplist-value", "64", 0..=i64::MAX),
    ("zset-max-listpack-entries", "128", 0..=i64::MAX),
    ("zset-max-listpack-value", "64", 0..=i64::MAX),
];

fn config_get(patterns: &[Bytes], shared: &Shared) -> Frame {
    let mut pairs = Vec::new();
    for (name, value) in config_table(shared) {
        if patterns
            .iter()
            .any(|p| cmds::glob_match(p, name.as_bytes(), true))
        {
            pairs.push((Frame::bulk(name), Frame::bulk(value)));
        }
    }
    Frame::Map(pairs)
}

/// `CONFIG SET`: `requirepass` changes this node's password (empty: none;
/// refused if protected mode would then refuse the client address); any
/// other parameter may be set to the value it already has (so test suites
/// and clients that restate settings work), an ignored encoding knob to
/// any non-negative integer; anything else is refused, since the rest of
/// Seshat's settings are fixed at start. Nothing changes unless every
/// pair is accepted.
fn config_set(pairs: &[Bytes], shared: &Shared) -> Frame {
    if pairs.is_empty() || !pairs.len().is_multiple_of(2) {
        return Frame::error("ERR syntax error");
    }
    let table = config_table(shared);
    let mut new_password = None;
    let mut tls_changes = Vec::new();
    for pair in pairs.chunks_exact(2) {
        let [name, value] = pair else {
            return Frame::error("ERR syntax error");
        };
        if name.eq_ignore_ascii_case(b"requirepass") {
            if shared.auth.default_replicated() {
                return Frame::error(auth::REQUIREPASS_REPLICATED);
            }
            new_password = Some(PasswordDigest::of(value));
            continue;
        }
        if let Some(n) = TLS_FILE_PARAMS
            .iter()
            .find(|n| name.eq_ignore_ascii_case(n.as_bytes()))
        {
            tls_changes.push((*n, value.clone()));
            continue;
        }
        let knob = ENCODING_KNOBS
            .iter()
            .find(|(n, ..)| name.eq_ignore_ascii_case(n.as_bytes()));
        if let Some((n, _, range)) = knob {
            match resp::parse_i64(value) {
                Some(v) if range.contains(&v) => continue,
                _ => {
                    return Frame::error(format!(
                        "ERR CONFIG SET failed (possibly related to argument '{n}') - argument must be an integer between {} and {} inclusive",
                        range.start(),
                        range.end()
                    ))
                }
            }
        }
        let current = table
            .iter()
            .find(|(n, _)| name.eq_ignore_ascii_case(n.as_bytes()));
        match current {
            Some((_, v)) if v.as_bytes() == value.as_ref() => {}
            Some((n, _)) => {
                return Frame::error(format!(
                    "ERR CONFIG SET failed (possibly related to argument '{n}') - Seshat's settings are fixed at start; restart the node with the new value"
                ))
            }
            None => {
                return Frame::error(format!(
                    "ERR Unknown option or number of arguments for CONFIG SET - '{}'",
                    cmds::echo(name)
                ))
            }
        }
    }
    // Every check before any change, so a refused CONFIG SET changes
    // nothing.
    if let Some(password) = new_password {
        let s = &shared.settings;
        if let Some(why) =
            auth::protected_mode_refusal(s.client_addr, password.is_some(), s.protected_mode)
        {
            return Frame::error(format!(
                "ERR CONFIG SET failed (possibly related to argument 'requirepass') - {why}"
            ));
        }
    }
    if !tls_changes.is_empty() {
        let reply = config_set_tls(&tls_changes, shared);
        if matches!(reply, Frame::Error(_)) {
            return reply;
        }
    }
    if let Some(password) = new_password {
        shared.auth.set_password(password);
        tracing::info!(
            password_set = password.is_some(),
            "requirepass changed by CONFIG SET"
        );
    }
    Frame::ok()
}
