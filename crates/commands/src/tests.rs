//! Tests over the whole table and over apply.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;

use bytes::Bytes;
use proptest::prelude::*;
use seshat_kv::{MemKv, Watch, Write, WriteBatch};
use seshat_protocol_resp::Frame;

use crate::{
    all, all_with_subcommands, apply_batch, prepare_write, resolve, GroupState, Handler, Route,
};

fn argv(args: &[&str]) -> Vec<Bytes> {
    args.iter()
        .map(|a| Bytes::copy_from_slice(a.as_bytes()))
        .collect()
}

fn err_text(args: &[&str]) -> String {
    match resolve(&argv(args)) {
        Err(e) => e.to_string(),
        Ok(d) => panic!("{args:?} resolved to {}", d.name),
    }
}

fn resolve_err(args: &[Bytes]) -> String {
    match resolve(args) {
        Err(e) => e.to_string(),
        Ok(d) => panic!("resolved to {}", d.name),
    }
}

/// Before authentication a client may only log in or leave: Redis 7.0
/// flags exactly these `no_auth`.
#[test]
fn only_auth_hello_and_quit_run_before_authentication() {
    let no_auth: Vec<&str> = all_with_subcommands()
        .filter(|d| d.flags.has(crate::Flags::NO_AUTH))
        .map(|d| d.name)
        .collect();
    assert_eq!(no_auth, ["quit", "auth", "hello"]);
}

/// Walks the whole table: a command that is not classified consistently
/// fails here, whatever family it is in.
#[test]
fn every_declaration_is_classified() {
    let mut names = HashSet::new();
    for decl in all_with_subcommands() {
        assert_eq!(decl.name, decl.name.to_ascii_lowercase());
        assert!(names.insert(decl.name), "duplicate {}", decl.name);
        assert_ne!(decl.arity, 0, "{}", decl.name);
        let has_keys = decl.keys.first > 0;
        let route = decl.route();
        // Anything that touches keys is a read (barrier) or a write (log).
        if has_keys && !matches!(route, Route::Server(_)) {
            assert!(
                matches!(route, Route::Read | Route::Write),
                "{} has keys but is neither a read nor a write",
                decl.name
            );
        }
        // A write always runs through a data handler (so it can be in the log).
        if decl.flags.has(crate::Flags::WRITE) {
            assert!(
                matches!(decl.handler, Handler::Data { .. }),
                "{}",
                decl.name
            );
        }
        // Readonly and write are exclusive.
        assert!(!(decl.flags.has(crate::Flags::WRITE) && decl.flags.has(crate::Flags::READONLY)));
        // Key positions fit the arity.
        if decl.arity > 0 && decl.keys.last > 0 {
            assert!(decl.keys.last < decl.arity, "{}", decl.name);
        }
        // Containers have subcommands and no flags of their own.
        if matches!(decl.handler, Handler::Container) {
            assert!(!decl.subcommands.is_empty(), "{}", decl.name);
        }
        for sub in decl.subcommands {
            assert_eq!(sub.name, format!("{}|{}", decl.name, sub.short_name()));
        }
    }
    assert!(all().count() > 60);
}

#[test]
fn arity_and_unknown_command_errors_are_redis_s() {
    assert_eq!(
        err_text(&["get"]),
        "ERR wrong number of arguments for 'get' command"
    );
    assert_eq!(
        err_text(&["GET", "a", "b"]),
        "ERR wrong number of arguments for 'get' command"
    );
    assert_eq!(
        err_text(&["client", "setname"]),
        "ERR wrong number of arguments for 'client|setname' command"
    );
    assert_eq!(
        err_text(&["config"]),
        "ERR wrong number of arguments for 'config' command"
    );
    assert_eq!(
        err_text(&["foo", "a", "b"]),
        "ERR unknown command 'foo', with args beginning with: 'a' 'b' "
    );
    assert_eq!(
        err_text(&[]),
        "ERR unknown command '', with args beginning with: "
    );
    assert_eq!(
        err_text(&["client", "xyz"]),
        "ERR unknown subcommand 'xyz'. Try CLIENT HELP."
    );
    let long = "x".repeat(200);
    assert_eq!(
        err_text(&[&long, &long, "next"]),
        format!(
            "ERR unknown command '{}', with args beginning with: '{}' ",
            "x".repeat(128),
            "x".repeat(128)
        )
    );
    let text = err_text(&["foo", &"a".repeat(100), &"b".repeat(50), "c"]);
    assert_eq!(
        text,
        format!(
            "ERR unknown command 'foo', with args beginning with: '{}' '{}' ",
            "a".repeat(100),
            "b".repeat(25)
        )
    );
    let sanitized = resolve_err(&[
        Bytes::from_static(b"f\xffo\r\n"),
        Bytes::from_static(b"a\nb"),
    ]);
    assert_eq!(
        sanitized,
        "ERR unknown command 'f\u{fffd}o  ', with args beginning with: 'a b' "
    );
    assert_eq!(resolve(&argv(&["GeT", "k"])).unwrap().name, "get");
    assert_eq!(crate::lookup(b"PeXpIrEtImE").unwrap().name, "pexpiretime");
    assert!(crate::lookup(&[b'g'; 33]).is_none());
    assert!(crate::lookup(b"").is_none());
    assert_eq!(
        resolve(&argv(&["OBJECT", "encoding", "k"])).unwrap().name,
        "object|encoding"
    );
}

/// Applies `cmds` one entry each at `now_ms`, returning the replies.
struct Replica {
    kv: MemKv,
    state: GroupState,
    index: u64,
}

impl Replica {
    fn new() -> Self {
        Self {
            kv: MemKv::default(),
            state: GroupState::default(),
            index: 0,
        }
    }

    fn apply(&mut self, now_ms: u64, writes: Vec<Write>) -> Vec<Frame> {
        self.index += 1;
        let batch = WriteBatch {
            now_ms,
            seed: self.index,
            writes,
        };
        apply_batch(&batch, self.index, &mut self.kv, &mut self.state).unwrap()
    }

    fn run(&mut self, now_ms: u64, args: &[&str]) -> Frame {
        self.apply(now_ms, vec![Write::Command(argv(args))])
            .remove(0)
    }
}

fn bulk(s: &str) -> Frame {
    Frame::Bulk(Bytes::copy_from_slice(s.as_bytes()))
}

fn error(s: &str) -> Frame {
    Frame::error(s.to_string())
}

#[test]
fn strings_follow_redis() {
    let mut r = Replica::new();
    assert_eq!(r.run(0, &["SET", "k", "v"]), Frame::ok());
    assert_eq!(r.run(0, &["GET", "k"]), bulk("v"));
    assert_eq!(r.run(0, &["SET", "k", "w", "NX"]), Frame::Null);
    assert_eq!(r.run(0, &["SET", "k", "w", "XX", "GET"]), bulk("v"));
    assert_eq!(
        r.run(0, &["SET", "k", "w", "NX", "XX"]),
        error("ERR syntax error")
    );
    assert_eq!(
        r.run(0, &["SET", "k", "w", "EX", "0"]),
        error("ERR invalid expire time in 'set' command")
    );
    assert_eq!(
        r.run(0, &["SET", "k", "w", "EX", "x"]),
        error("ERR value is not an integer or out of range")
    );
    assert_eq!(r.run(0, &["APPEND", "k", "xy"]), Frame::Integer(3));
    assert_eq!(r.run(0, &["STRLEN", "k"]), Frame::Integer(3));
    assert_eq!(r.run(0, &["GETRANGE", "k", "1", "-1"]), bulk("xy"));
    assert_eq!(r.run(0, &["SETRANGE", "k", "5", "z"]), Frame::Integer(6));
    assert_eq!(
        r.run(0, &["GET", "k"]),
        Frame::Bulk(Bytes::from_static(b"wxy\0\0z"))
    );
    assert_eq!(r.run(0, &["INCR", "n"]), Frame::Integer(1));
    assert_eq!(r.run(0, &["INCRBY", "n", "41"]), Frame::Integer(42));
    assert_eq!(
        r.run(0, &["DECRBY", "n", "-9223372036854775808"]),
        error("ERR decrement would overflow")
    );
    assert_eq!(r.run(0, &["SET", "n", "9223372036854775807"]), Frame::ok());
    assert_eq!(
        r.run(0, &["INCR", "n"]),
        error("ERR increment or decrement would overflow")
    );
    assert_eq!(
        r.run(0, &["INCR", "k"]),
        error("ERR value is not an integer or out of range")
    );
    assert_eq!(r.run(0, &["INCRBYFLOAT", "f", "1.5"]), bulk("1.5"));
    assert_eq!(r.run(0, &["INCRBYFLOAT", "f", "1.5"]), bulk("3"));
    assert_eq!(r.run(0, &["MSET", "a", "1", "b", "2"]), Frame::ok());
    assert_eq!(
        r.run(0, &["MGET", "a", "nope", "b"]),
        Frame::Array(vec![bulk("1"), Frame::Null, bulk("2")])
    );
    assert_eq!(r.run(0, &["MSETNX", "a", "x", "c", "3"]), Frame::Integer(0));
    assert_eq!(
        r.run(0, &["MSET", "a", "1", "b"]),
        error("ERR wrong number of arguments for 'mset' command")
    );
    assert_eq!(r.run(0, &["GETDEL", "a"]), bulk("1"));
    assert_eq!(r.run(0, &["EXISTS", "a", "b", "b"]), Frame::Integer(2));
    assert_eq!(r.run(0, &["SET", "s1", "ohmytext"]), Frame::ok());
    assert_eq!(r.run(0, &["SET", "s2", "mynewtext"]), Frame::ok());
    assert_eq!(r.run(0, &["LCS", "s1", "s2"]), bulk("mytext"));
    assert_eq!(r.run(0, &["LCS", "s1", "s2", "LEN"]), Frame::Integer(6));
}

#[test]
fn expiry_uses_the_entry_time() {
    let mut r = Replica::new();
    assert_eq!(r.run(1_000, &["SET", "k", "v", "PX", "100"]), Frame::ok());
    assert_eq!(r.run(1_050, &["PTTL", "k"]), Frame::Integer(50));
    assert_eq!(r.run(1_050, &["TTL", "k"]), Frame::Integer(0));
    assert_eq!(r.run(1_099, &["GET", "k"]), bulk("v"));
    assert_eq!(r.run(1_100, &["GET", "k"]), Frame::Null);
    assert_eq!(r.run(1_100, &["EXISTS", "k"]), Frame::Integer(0));
    // Time never runs backwards: an entry with an older clock still sees
    // the key as expired.
    assert_eq!(r.run(500, &["GET", "k"]), Frame::Null);
    assert_eq!(r.run(2_000, &["SET", "k", "v"]), Frame::ok());
    assert_eq!(
        r.run(2_000, &["EXPIRE", "k", "10", "XX"]),
        Frame::Integer(0)
    );
    assert_eq!(
        r.run(2_000, &["EXPIRE", "k", "10", "NX"]),
        Frame::Integer(1)
    );
    assert_eq!(r.run(2_000, &["EXPIRE", "k", "5", "GT"]), Frame::Integer(0));
    assert_eq!(r.run(2_000, &["EXPIRE", "k", "5", "LT"]), Frame::Integer(1));
    assert_eq!(r.run(2_000, &["PEXPIRETIME", "k"]), Frame::Integer(7_000));
    assert_eq!(r.run(2_000, &["PERSIST", "k"]), Frame::Integer(1));
    assert_eq!(r.run(2_000, &["TTL", "k"]), Frame::Integer(-1));
    assert_eq!(r.run(2_000, &["TTL", "nope"]), Frame::Integer(-2));
    assert_eq!(r.run(2_000, &["EXPIRE", "k", "-1"]), Frame::Integer(1));
    assert_eq!(r.run(2_000, &["EXISTS", "k"]), Frame::Integer(0));
    assert_eq!(r.state.counts.keys, 0);
}

#[test]
fn expired_keys_are_removed_only_if_still_expired() {
    let mut r = Replica::new();
    r.run(0, &["SET", "a", "1", "PXAT", "10"]);
    r.run(0, &["SET", "b", "1", "PXAT", "10"]);
    r.run(20, &["SET", "b", "2"]);
    let removed = r.apply(
        20,
        vec![Write::ExpireKeys(vec![
            Bytes::from_static(b"a"),
            Bytes::from_static(b"b"),
        ])],
    );
    assert_eq!(removed, vec![Frame::Integer(1)]);
    assert_eq!(r.run(20, &["GET", "b"]), bulk("2"));
    assert_eq!(r.state.counts.keys, 1);
}

#[test]
fn watch_aborts_exec_when_the_key_changed() {
    let mut r = Replica::new();
    r.run(0, &["SET", "k", "1"]);
    let observed = r.index;
    let tx = |mod_index| Write::Transaction {
        watches: vec![Watch {
            key: Bytes::from_static(b"k"),
            mod_index,
        }],
        commands: vec![argv(&["INCR", "k"]), argv(&["GET", "k"])],
    };
    assert_eq!(
        r.apply(0, vec![tx(Some(observed))]),
        vec![Frame::Array(vec![Frame::Integer(2), bulk("2")])]
    );
    // The EXEC above changed the key: a transaction watching the old
    // index is aborted.
    assert_eq!(r.apply(0, vec![tx(Some(observed))]), vec![Frame::NullArray]);
    // Watching an absent key that now exists aborts too; an error inside
    // a transaction is that command's reply only.
    assert_eq!(r.apply(0, vec![tx(None)]), vec![Frame::NullArray]);
    let mixed = Write::Transaction {
        watches: vec![],
        commands: vec![
            argv(&["SET", "s", "x"]),
            argv(&["INCR", "s"]),
            argv(&["GET", "s"]),
        ],
    };
    assert_eq!(
        r.apply(0, vec![mixed]),
        vec![Frame::Array(vec![
            Frame::ok(),
            error("ERR value is not an integer or out of range"),
            bulk("x")
        ])]
    );
}

#[test]
fn unknown_commands_in_the_log_stop_apply() {
    let mut kv = MemKv::default();
    let mut state = GroupState::default();
    let batch = WriteBatch {
        now_ms: 0,
        seed: 0,
        writes: vec![Write::Command(argv(&["FUTURECMD", "k"]))],
    };
    let e = apply_batch(&batch, 9, &mut kv, &mut state).unwrap_err();
    assert!(e.to_string().contains("FUTURECMD"), "{e}");
    let server = WriteBatch {
        now_ms: 0,
        seed: 0,
        writes: vec![Write::Command(argv(&["MULTI"]))],
    };
    assert!(apply_batch(&server, 9, &mut kv, &mut state).is_err());
}

#[test]
fn relative_times_are_made_absolute_before_proposal() {
    let set = resolve(&argv(&["SET", "k", "v", "EX", "10", "GET"])).unwrap();
    let out = prepare_write(set, argv(&["SET", "k", "v", "EX", "10", "GET"]), 5_000).unwrap();
    assert_eq!(out, argv(&["SET", "k", "v", "GET", "PXAT", "15000"]));
    let setex = resolve(&argv(&["SETEX", "k", "1", "v"])).unwrap();
    assert_eq!(
        prepare_write(setex, argv(&["SETEX", "k", "1", "v"]), 5).unwrap(),
        argv(&["SET", "k", "v", "PXAT", "1005"])
    );
    let bad = prepare_write(setex, argv(&["SETEX", "k", "0", "v"]), 5).unwrap_err();
    assert_eq!(bad, error("ERR invalid expire time in 'setex' command"));
    let getex = resolve(&argv(&["GETEX", "k", "PX", "7"])).unwrap();
    assert_eq!(
        prepare_write(getex, argv(&["GETEX", "k", "PX", "7"]), 1).unwrap(),
        argv(&["GETEX", "k", "PXAT", "8"])
    );
    // Already absolute: unchanged.
    let plain = argv(&["SET", "k", "v", "PXAT", "99"]);
    assert_eq!(prepare_write(set, plain.clone(), 5).unwrap(), plain);
}

fn arb_write() -> impl Strategy<Value = Write> {
    let key = prop::sample::select(vec!["a", "b", "c"]);
    let cmd = prop_oneof![
        (key.clone(), 0u32..5).prop_map(|(k, v)| vec!["SET".to_string(), k.into(), v.to_string()]),
        (key.clone(), 1u32..50).prop_map(|(k, ms)| vec![
            "SET".to_string(),
            k.into(),
            "x".into(),
            "PX".into(),
            ms.to_string()
        ]),
        key.clone().prop_map(|k| vec!["INCR".to_string(), k.into()]),
        key.clone().prop_map(|k| vec!["DEL".to_string(), k.into()]),
        key.clone()
            .prop_map(|k| vec!["APPEND".to_string(), k.into(), "z".into()]),
        (key.clone(), 1u32..50).prop_map(|(k, s)| vec![
            "PEXPIRE".to_string(),
            k.into(),
            s.to_string()
        ]),
        key.clone()
            .prop_map(|k| vec!["GETDEL".to_string(), k.into()]),
        Just(vec!["RANDOMKEY".to_string()]),
        Just(vec!["FLUSHALL".to_string()]),
    ];
    let to_argv = |c: Vec<String>| c.into_iter().map(Bytes::from).collect::<Vec<_>>();
    prop_oneof![
        6 => cmd.clone().prop_map(move |c| Write::Command(to_argv(c))),
        1 => (prop::collection::vec(cmd, 1..4), key.clone(), prop::option::of(0u64..20)).prop_map(move |(cs, k, m)| Write::Transaction {
            watches: vec![Watch { key: Bytes::from(k), mod_index: m }],
            commands: cs.into_iter().map(to_argv).collect(),
        }),
        1 => prop::collection::vec(key, 1..3).prop_map(|ks| Write::ExpireKeys(ks.into_iter().map(Bytes::from).collect())),
    ]
}

proptest! {
    /// Replicas applying the same entries end in the same state with the
    /// same replies — with expiry, randomness and transactions.
    #[test]
    fn replicas_agree(entries in prop::collection::vec((0u64..100, prop::collection::vec(arb_write(), 1..5)), 1..30)) {
        let (mut a, mut b) = (Replica::new(), Replica::new());
        for (now, writes) in entries {
            let ra = a.apply(now, writes.clone());
            let rb = b.apply(now, writes);
            prop_assert_eq!(ra, rb);
        }
        prop_assert_eq!(&a.kv, &b.kv);
        prop_assert_eq!(&a.state, &b.state);
        // The key count matches the records actually stored.
        let metas = a.kv.map.keys().filter(|k| seshat_kv::keys::parse_meta_key(1, k).is_some()).count();
        prop_assert_eq!(a.state.counts.keys, metas as u64);
        let expiring = a.kv.map.keys().filter(|k| seshat_kv::keys::parse_expiry_key(1, k).is_some()).count();
        prop_assert_eq!(a.state.counts.expiring, expiring as u64);
    }
}
