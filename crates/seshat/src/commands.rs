//! Executes parsed commands. Writes become [`Operation`]s that go through
//! Raft ([`as_write`]); everything else is answered here ([`execute`]).

use bytes::Bytes;
use seshat_kv::{OpResult, Operation, SetCondition};
use seshat_protocol_resp::{self as resp, crc16_slot, Command, Frame, ProtocolVersion};

use crate::cluster;
use crate::connection::ClientState;
use crate::info;
use crate::server::Shared;

/// What the connection does with a command's result.
pub enum Outcome {
    /// Send this reply.
    Reply(Frame),
    /// Send this reply, encoded in the new protocol version.
    ReplyThenSwitch(Frame, ProtocolVersion),
    /// Send this reply, then close the connection (`QUIT`).
    Close(Frame),
}

/// The slot of a key, as Redis Cluster computes it.
fn slot(key: &[u8]) -> u16 {
    crc16_slot(key)
}

/// If `command` changes data, the operation to propose and the slot used
/// in a MOVED reply.
pub fn as_write(command: &Command) -> Option<(Operation, u16)> {
    match command {
        Command::Set {
            key,
            value,
            condition,
            get,
        } => Some((
            Operation::Set {
                key: key.clone(),
                value: value.clone(),
                condition: condition.map(|c| match c {
                    resp::SetCondition::Nx => SetCondition::IfAbsent,
                    resp::SetCondition::Xx => SetCondition::IfPresent,
                }),
                return_old: *get,
            },
            slot(key),
        )),
        Command::Del { keys } => Some((
            Operation::Del { keys: keys.clone() },
            keys.first().map_or(0, |k| slot(k)),
        )),
        Command::FlushAll | Command::FlushDb => Some((Operation::FlushAll, 0)),
        _ => None,
    }
}

/// The name under which a command is counted in `/metrics`.
pub fn metric_name(command: &Command) -> &'static str {
    match command {
        Command::Get { .. } => "get",
        Command::Set { .. } => "set",
        Command::Del { .. } => "del",
        Command::Exists { .. } => "exists",
        Command::Ping { .. } => "ping",
        Command::FlushAll | Command::FlushDb => "flushall",
        Command::Info { .. } => "info",
        _ => "other",
    }
}

/// The RESP reply for an applied operation.
pub fn op_result_frame(result: OpResult) -> Frame {
    match result {
        OpResult::Ok => Frame::ok(),
        OpResult::Nil => Frame::Null,
        OpResult::Value(v) => Frame::Bulk(v),
        OpResult::Integer(n) => Frame::Integer(n),
        // Batches are formed and split inside the node; a client's write
        // always gets its own result.
        OpResult::Batch(_) => Frame::error("ERR internal error: unexpected batch result"),
    }
}

fn error(e: impl ToString) -> Frame {
    Frame::error(e.to_string())
}

/// Whether `command` reads data and so needs a read barrier.
pub fn is_linearizable_read(command: &Command) -> bool {
    matches!(
        command,
        Command::Get { .. } | Command::Exists { .. } | Command::DbSize
    )
}

/// The slot a read's `MOVED` names.
pub fn read_slot(command: &Command) -> u16 {
    match command {
        Command::Get { key } => slot(key),
        Command::Exists { keys } => keys.first().map_or(0, |k| slot(k)),
        _ => 0,
    }
}

/// Runs a command that does not go through the Raft log.
pub async fn execute(command: Command, client: &mut ClientState, shared: &Shared) -> Outcome {
    let node = &shared.node;
    let frame = match command {
        Command::Get { key } => match node.get(&key, slot(&key), client.read_confirmed).await {
            Ok(Some(v)) => Frame::Bulk(v),
            Ok(None) => Frame::Null,
            Err(e) => error(e),
        },
        Command::Exists { keys } => {
            let s = keys.first().map_or(0, |k| slot(k));
            match node.exists(&keys, s, client.read_confirmed).await {
                Ok(n) => Frame::Integer(n),
                Err(e) => error(e),
            }
        }
        Command::DbSize => match node.dbsize(client.read_confirmed).await {
            Ok(n) => Frame::Integer(i64::try_from(n).unwrap_or(i64::MAX)),
            Err(e) => error(e),
        },
        Command::Ping { message: None } => Frame::pong(),
        Command::Ping { message: Some(m) } => Frame::Bulk(m),
        Command::Echo { message } => Frame::Bulk(message),
        Command::Quit => return Outcome::Close(Frame::ok()),
        Command::Select { db: 0 } => Frame::ok(),
        Command::Select { .. } => Frame::error("ERR DB index is out of range"),
        Command::Hello {
            protover,
            setname,
            auth: _,
        } => return hello(protover, setname, client, shared),
        Command::ClientSetName { name } => {
            if name.iter().any(|b| *b <= b' ' || *b > b'~') {
                Frame::error(
                    "ERR Client names cannot contain spaces, newlines or special characters.",
                )
            } else {
                client.name = if name.is_empty() { None } else { Some(name) };
                Frame::ok()
            }
        }
        Command::ClientGetName => client.name.clone().map_or(Frame::Null, Frame::Bulk),
        Command::ClientId => Frame::Integer(i64::try_from(client.id).unwrap_or(i64::MAX)),
        Command::ClientSetInfo { attr, value } => client_setinfo(client, &attr, value),
        Command::ClientInfo => Frame::verbatim_text(client_info_line(client)),
        Command::CommandCount => Frame::Integer(i64::try_from(resp::command_count()).unwrap_or(0)),
        Command::CommandList => resp::command_list_reply(),
        Command::CommandInfo { names } => resp::command_info_reply(&names),
        Command::CommandDocs { names } => resp::command_docs_reply(&names),
        Command::Info { sections } => Frame::verbatim_text(info::render(&sections, client, shared)),
        Command::ConfigGet { patterns } => config_get(&patterns, shared),
        Command::ClusterKeySlot { key } => Frame::Integer(i64::from(slot(&key))),
        Command::ClusterMyId => Frame::bulk(cluster::node_name(node.settings.node_id)),
        Command::ClusterInfo => Frame::verbatim_text(cluster::info(node)),
        Command::ClusterSlots => cluster::slots(node),
        Command::ClusterShards => cluster::shards(node),
        Command::ClusterNodes => Frame::verbatim_text(cluster::nodes(node)),
        Command::ReadOnly | Command::ReadWrite => Frame::ok(),
        Command::ConfigSet { .. } => {
            Frame::error("ERR CONFIG SET is not supported; restart the node with new settings")
        }
        // Writes never reach here (see `as_write`); answer sanely anyway.
        other => match as_write(&other) {
            Some((op, s)) => match node.write(op, s).await {
                Ok(r) => op_result_frame(r),
                Err(e) => error(e),
            },
            None => Frame::error("ERR command not supported"),
        },
    };
    Outcome::Reply(frame)
}

fn hello(
    protover: Option<i64>,
    setname: Option<Bytes>,
    client: &mut ClientState,
    shared: &Shared,
) -> Outcome {
    let version = match protover {
        None => client.version,
        Some(v) => match ProtocolVersion::from_protover(v) {
            Some(version) => version,
            None => return Outcome::Reply(Frame::error("NOPROTO unsupported protocol version")),
        },
    };
    if let Some(name) = setname {
        client.name = Some(name);
    }
    let node = &shared.node;
    let role = if node.raft.is_leader() {
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

fn client_setinfo(client: &mut ClientState, attr: &[u8], value: Bytes) -> Frame {
    if value.iter().any(|b| *b < b'!' || *b > b'~') {
        return Frame::error(
            "ERR lib-name and lib-ver cannot contain spaces, newlines or special characters.",
        );
    }
    if attr.eq_ignore_ascii_case(b"lib-name") {
        client.lib_name = Some(value);
    } else if attr.eq_ignore_ascii_case(b"lib-ver") {
        client.lib_ver = Some(value);
    } else {
        return Frame::error(format!(
            "ERR Unrecognized option '{}'",
            String::from_utf8_lossy(attr)
        ));
    }
    Frame::ok()
}

fn client_info_line(client: &ClientState) -> String {
    let lossy = |b: &Option<Bytes>| {
        b.as_ref()
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default()
    };
    format!(
        "id={} addr={} name={} db=0 resp={} lib-name={} lib-ver={}\n",
        client.id,
        client.peer,
        lossy(&client.name),
        client.version.protover(),
        lossy(&client.lib_name),
        lossy(&client.lib_ver),
    )
}

/// Redis-style glob match supporting `*`, `?` and literal bytes,
/// case-insensitive like CONFIG GET.
pub fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0usize, 0usize);
    let (mut star, mut mark) = (None, 0usize);
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some(p);
                mark = t;
                p += 1;
            }
            Some(&c) if c == b'?' || c.eq_ignore_ascii_case(&text[t]) => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some(s) => {
                    p = s + 1;
                    mark += 1;
                    t = mark;
                }
                None => return false,
            },
        }
    }
    pattern[p.min(pattern.len())..].iter().all(|c| *c == b'*')
}

fn config_get(patterns: &[Bytes], shared: &Shared) -> Frame {
    let s = &shared.node.settings;
    let table: Vec<(&str, String)> = vec![
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
        ("timeout", "0".into()),
    ];
    let mut pairs = Vec::new();
    for (name, value) in &table {
        if patterns.iter().any(|p| glob_match(p, name.as_bytes())) {
            pairs.push((Frame::bulk(*name), Frame::bulk(value.clone())));
        }
    }
    Frame::Map(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_matches_like_redis() {
        assert!(glob_match(b"*", b"save"));
        assert!(glob_match(b"app*", b"appendonly"));
        assert!(glob_match(b"SAVE", b"save"));
        assert!(glob_match(b"s?ve", b"save"));
        assert!(!glob_match(b"app", b"appendonly"));
        assert!(!glob_match(b"x*", b"save"));
        assert!(glob_match(b"*only", b"appendonly"));
    }
}
