use super::*;
use crate::table::COMMAND_TABLE;

fn req(args: &[&str]) -> Request {
    Request::new(
        args.iter()
            .map(|a| Bytes::copy_from_slice(a.as_bytes()))
            .collect(),
    )
}

fn parse(args: &[&str]) -> Result<Command, CommandError> {
    parse_command(&req(args))
}

fn err(args: &[&str]) -> String {
    parse(args).unwrap_err().to_string()
}

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

#[test]
fn get_set_del_exists() {
    assert_eq!(parse(&["get", "k"]), Ok(Command::Get { key: b("k") }));
    assert_eq!(parse(&["GeT", "k"]), Ok(Command::Get { key: b("k") }));
    assert_eq!(
        parse(&["SET", "k", "v"]),
        Ok(Command::Set {
            key: b("k"),
            value: b("v"),
            condition: None,
            get: false
        })
    );
    assert_eq!(
        parse(&["del", "a", "b"]),
        Ok(Command::Del {
            keys: vec![b("a"), b("b")]
        })
    );
    assert_eq!(
        parse(&["EXISTS", "a"]),
        Ok(Command::Exists { keys: vec![b("a")] })
    );
}

#[test]
fn set_options() {
    let set = |condition, get| {
        Ok(Command::Set {
            key: b("k"),
            value: b("v"),
            condition,
            get,
        })
    };
    assert_eq!(
        parse(&["set", "k", "v", "nx"]),
        set(Some(SetCondition::Nx), false)
    );
    assert_eq!(
        parse(&["set", "k", "v", "XX", "get"]),
        set(Some(SetCondition::Xx), true)
    );
    assert_eq!(
        parse(&["set", "k", "v", "NX", "NX"]),
        set(Some(SetCondition::Nx), false)
    );
    assert_eq!(parse(&["set", "k", "v", "GET"]), set(None, true));
}

#[test]
fn set_errors() {
    assert_eq!(err(&["set", "k", "v", "NX", "XX"]), "ERR syntax error");
    assert_eq!(err(&["set", "k", "v", "XX", "NX"]), "ERR syntax error");
    assert_eq!(err(&["set", "k", "v", "bogus"]), "ERR syntax error");
    assert_eq!(err(&["set", "k", "v", "EX"]), "ERR syntax error");
    assert_eq!(
        err(&["set", "k", "v", "EX", "1", "PX", "1"]),
        "ERR syntax error"
    );
    assert_eq!(
        err(&["set", "k", "v", "KEEPTTL", "EX", "1"]),
        "ERR syntax error"
    );
    assert_eq!(
        err(&["set", "k", "v", "EX", "10", "bogus"]),
        "ERR syntax error"
    );
    for opts in [
        &["EX", "10"][..],
        &["px", "5"],
        &["EXAT", "1"],
        &["pxat", "1"],
        &["KEEPTTL"],
        &["NX", "EX", "1", "EX", "2"],
    ] {
        let mut args = vec!["set", "k", "v"];
        args.extend_from_slice(opts);
        assert_eq!(
            err(&args),
            "ERR SET expiry options are not supported",
            "{opts:?}"
        );
    }
    assert_eq!(
        err(&["set", "k"]),
        "ERR wrong number of arguments for 'set' command"
    );
}

#[test]
fn arity_errors_use_redis_names() {
    assert_eq!(
        err(&["GET"]),
        "ERR wrong number of arguments for 'get' command"
    );
    assert_eq!(
        err(&["get", "a", "b"]),
        "ERR wrong number of arguments for 'get' command"
    );
    assert_eq!(
        err(&["del"]),
        "ERR wrong number of arguments for 'del' command"
    );
    assert_eq!(
        err(&["ping", "a", "b"]),
        "ERR wrong number of arguments for 'ping' command"
    );
    assert_eq!(
        err(&["CLIENT"]),
        "ERR wrong number of arguments for 'client' command"
    );
    assert_eq!(
        err(&["client", "SETNAME"]),
        "ERR wrong number of arguments for 'client|setname' command"
    );
    assert_eq!(
        err(&["config", "set", "a"]),
        "ERR wrong number of arguments for 'config|set' command"
    );
    assert_eq!(err(&["config", "set", "a", "b", "c"]), "ERR syntax error");
    assert_eq!(
        err(&["cluster", "keyslot"]),
        "ERR wrong number of arguments for 'cluster|keyslot' command"
    );
    assert_eq!(
        err(&["dbsize", "x"]),
        "ERR wrong number of arguments for 'dbsize' command"
    );
}

#[test]
fn unknown_command_format() {
    assert_eq!(
        err(&["foo", "a", "b"]),
        "ERR unknown command 'foo', with args beginning with: 'a' 'b' "
    );
    assert_eq!(
        err(&["foo"]),
        "ERR unknown command 'foo', with args beginning with: "
    );
    assert_eq!(
        parse_command(&Request::new(vec![]))
            .unwrap_err()
            .to_string(),
        "ERR unknown command '', with args beginning with: "
    );
}

#[test]
fn unknown_command_truncates_like_redis() {
    let long = "x".repeat(200);
    let text = err(&[&long, &long, "next"]);
    let expected = format!(
        "ERR unknown command '{}', with args beginning with: '{}' ",
        "x".repeat(128),
        "x".repeat(128)
    );
    assert_eq!(text, expected);
    // 100 bytes listed so far ('...' plus space = 103), then room for 25.
    let text = err(&["foo", &"a".repeat(100), &"b".repeat(50), "c"]);
    let expected = format!(
        "ERR unknown command 'foo', with args beginning with: '{}' '{}' ",
        "a".repeat(100),
        "b".repeat(25)
    );
    assert_eq!(text, expected);
}

#[test]
fn unknown_command_is_sanitized_and_lossy() {
    let request = Request::new(vec![
        Bytes::from_static(b"f\xffo\r\n"),
        Bytes::from_static(b"a\nb"),
    ]);
    assert_eq!(
        parse_command(&request).unwrap_err().to_string(),
        "ERR unknown command 'f\u{fffd}o  ', with args beginning with: 'a b' "
    );
}

#[test]
fn unknown_subcommand_format() {
    assert_eq!(
        err(&["client", "xyz"]),
        "ERR unknown subcommand 'xyz'. Try CLIENT HELP."
    );
    assert_eq!(
        err(&["Config", "Rewrite"]),
        "ERR unknown subcommand 'Rewrite'. Try CONFIG HELP."
    );
    assert_eq!(
        err(&["command", "help"]),
        "ERR unknown subcommand 'help'. Try COMMAND HELP."
    );
}

#[test]
fn ping_echo_quit() {
    assert_eq!(parse(&["PING"]), Ok(Command::Ping { message: None }));
    assert_eq!(
        parse(&["ping", "hi"]),
        Ok(Command::Ping {
            message: Some(b("hi"))
        })
    );
    assert_eq!(
        parse(&["echo", "hi"]),
        Ok(Command::Echo { message: b("hi") })
    );
    assert_eq!(parse(&["quit"]), Ok(Command::Quit));
    assert_eq!(parse(&["quit", "extra"]), Ok(Command::Quit));
}

#[test]
fn select() {
    assert_eq!(parse(&["select", "0"]), Ok(Command::Select { db: 0 }));
    assert_eq!(err(&["select", "1"]), "ERR DB index is out of range");
    assert_eq!(err(&["select", "-1"]), "ERR DB index is out of range");
    assert_eq!(
        err(&["select", "x"]),
        "ERR value is not an integer or out of range"
    );
    assert_eq!(
        err(&["select", "2147483648"]),
        "ERR value is out of range, value must between -2147483648 and 2147483647"
    );
    assert_eq!(
        err(&["select", " 0"]),
        "ERR value is not an integer or out of range"
    );
}

#[test]
fn hello() {
    assert_eq!(
        parse(&["hello"]),
        Ok(Command::Hello {
            protover: None,
            setname: None,
            auth: None
        })
    );
    assert_eq!(
        parse(&["HELLO", "3", "auth", "u", "p", "setname", "app"]),
        Ok(Command::Hello {
            protover: Some(3),
            setname: Some(b("app")),
            auth: Some((b("u"), b("p")))
        })
    );
    assert_eq!(err(&["hello", "4"]), "NOPROTO unsupported protocol version");
    assert_eq!(err(&["hello", "1"]), "NOPROTO unsupported protocol version");
    assert_eq!(
        err(&["hello", "x"]),
        "ERR Protocol version is not an integer or out of range"
    );
    assert_eq!(
        err(&["hello", "3", "AUTH", "u"]),
        "ERR Syntax error in HELLO option 'AUTH'"
    );
    assert_eq!(
        err(&["hello", "3", "setname"]),
        "ERR Syntax error in HELLO option 'setname'"
    );
    assert_eq!(
        err(&["hello", "3", "bogus"]),
        "ERR Syntax error in HELLO option 'bogus'"
    );
    assert_eq!(
        err(&["hello", "3", "setname", "a b"]),
        "ERR Client names cannot contain spaces, newlines or special characters."
    );
}

#[test]
fn client_subcommands() {
    assert_eq!(
        parse(&["client", "setname", "app"]),
        Ok(Command::ClientSetName { name: b("app") })
    );
    assert_eq!(
        parse(&["CLIENT", "SETNAME", ""]),
        Ok(Command::ClientSetName { name: b("") })
    );
    assert_eq!(
        err(&["client", "setname", "a\u{e9}"]),
        "ERR Client names cannot contain spaces, newlines or special characters."
    );
    assert_eq!(parse(&["client", "getname"]), Ok(Command::ClientGetName));
    assert_eq!(parse(&["client", "ID"]), Ok(Command::ClientId));
    assert_eq!(parse(&["client", "info"]), Ok(Command::ClientInfo));
    assert_eq!(
        parse(&["client", "setinfo", "LIB-NAME", "redis-py"]),
        Ok(Command::ClientSetInfo {
            attr: b("LIB-NAME"),
            value: b("redis-py")
        })
    );
    assert_eq!(
        err(&["client", "setinfo", "color", "x"]),
        "ERR Unrecognized option 'color'"
    );
    assert_eq!(
        err(&["client", "setinfo", "lib-ver", "1 2"]),
        "ERR lib-ver cannot contain spaces, newlines or special characters."
    );
}

#[test]
fn command_subcommands() {
    assert_eq!(
        parse(&["COMMAND"]),
        Ok(Command::CommandInfo { names: vec![] })
    );
    assert_eq!(parse(&["command", "count"]), Ok(Command::CommandCount));
    assert_eq!(parse(&["command", "list"]), Ok(Command::CommandList));
    assert_eq!(err(&["command", "list", "filterby"]), "ERR syntax error");
    assert_eq!(
        parse(&["command", "docs"]),
        Ok(Command::CommandDocs { names: vec![] })
    );
    assert_eq!(
        parse(&["command", "docs", "get"]),
        Ok(Command::CommandDocs {
            names: vec![b("get")]
        })
    );
    assert_eq!(
        parse(&["command", "INFO", "get", "set"]),
        Ok(Command::CommandInfo {
            names: vec![b("get"), b("set")]
        })
    );
}

#[test]
fn server_commands() {
    assert_eq!(parse(&["info"]), Ok(Command::Info { sections: vec![] }));
    assert_eq!(
        parse(&["info", "server", "keyspace"]),
        Ok(Command::Info {
            sections: vec![b("server"), b("keyspace")]
        })
    );
    assert_eq!(parse(&["dbsize"]), Ok(Command::DbSize));
    assert_eq!(
        parse(&["config", "get", "maxmemory", "*"]),
        Ok(Command::ConfigGet {
            patterns: vec![b("maxmemory"), b("*")]
        })
    );
    assert_eq!(
        parse(&["config", "set", "a", "1", "b", "2"]),
        Ok(Command::ConfigSet {
            pairs: vec![(b("a"), b("1")), (b("b"), b("2"))]
        })
    );
    assert_eq!(parse(&["flushall"]), Ok(Command::FlushAll));
    assert_eq!(parse(&["FLUSHALL", "async"]), Ok(Command::FlushAll));
    assert_eq!(parse(&["flushdb", "SYNC"]), Ok(Command::FlushDb));
    assert_eq!(err(&["flushdb", "now"]), "ERR syntax error");
    assert_eq!(err(&["flushall", "sync", "async"]), "ERR syntax error");
}

#[test]
fn cluster_commands() {
    assert_eq!(parse(&["cluster", "slots"]), Ok(Command::ClusterSlots));
    assert_eq!(parse(&["cluster", "SHARDS"]), Ok(Command::ClusterShards));
    assert_eq!(parse(&["cluster", "nodes"]), Ok(Command::ClusterNodes));
    assert_eq!(parse(&["cluster", "info"]), Ok(Command::ClusterInfo));
    assert_eq!(parse(&["cluster", "myid"]), Ok(Command::ClusterMyId));
    assert_eq!(
        parse(&["cluster", "keyslot", "foo"]),
        Ok(Command::ClusterKeySlot { key: b("foo") })
    );
    assert_eq!(parse(&["readonly"]), Ok(Command::ReadOnly));
    assert_eq!(parse(&["READWRITE"]), Ok(Command::ReadWrite));
}

/// Every table entry must have a parser: with its minimal arguments it may
/// fail for command-specific reasons, but never as an unknown command.
#[test]
fn every_table_entry_is_parsed() {
    for spec in COMMAND_TABLE {
        for entry in std::iter::once(spec).chain(spec.subcommands) {
            let minimal = usize::try_from(entry.arity.unsigned_abs()).unwrap();
            if !entry.subcommands.is_empty() && minimal > 1 {
                continue; // only reachable through its subcommands
            }
            let mut args: Vec<String> = entry.name.split('|').map(str::to_owned).collect();
            while args.len() < minimal {
                args.push(if entry.name == "select" {
                    "0".into()
                } else {
                    "a".into()
                });
            }
            let request = Request::new(args.iter().map(|a| Bytes::from(a.clone())).collect());
            let result = parse_command(&request);
            assert!(
                !matches!(
                    result,
                    Err(CommandError::UnknownCommand { .. }
                        | CommandError::UnknownSubcommand { .. })
                ),
                "{}: {result:?}",
                entry.name
            );
            if !matches!(entry.name, "client|setinfo" | "config|set") {
                assert!(result.is_ok(), "{}: {result:?}", entry.name);
            }
        }
    }
}

#[test]
fn key_of_returns_the_first_key() {
    assert_eq!(key_of(&parse(&["get", "k"]).unwrap()), Some(&b("k")));
    assert_eq!(key_of(&parse(&["set", "k", "v"]).unwrap()), Some(&b("k")));
    assert_eq!(key_of(&parse(&["del", "a", "b"]).unwrap()), Some(&b("a")));
    assert_eq!(key_of(&parse(&["exists", "x"]).unwrap()), Some(&b("x")));
    assert_eq!(key_of(&parse(&["ping"]).unwrap()), None);
    assert_eq!(key_of(&parse(&["cluster", "keyslot", "k"]).unwrap()), None);
}

#[test]
fn error_frames() {
    let e = parse(&["get"]).unwrap_err();
    assert_eq!(
        e.to_frame(),
        Frame::error("ERR wrong number of arguments for 'get' command")
    );
}
