//! Lists through the whole apply path, against Redis's replies and a model.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;
use proptest::prelude::*;
use seshat_kv::keys::{self, DATA_GROUP};
use seshat_kv::{Counts, EntryRng, Keyspace, Kind, MemKv, RawKv, Record, Write, WriteBatch};
use seshat_protocol_resp::Frame;

use super::{Budget, List, MAX_EDIT_ELEMENTS, MAX_REPLY_ELEMENTS, START_POSITION};
use crate::{apply_batch, prepare_write, resolve, Ctx, GroupState};

fn argv(args: &[&str]) -> Vec<Bytes> {
    args.iter()
        .map(|a| Bytes::copy_from_slice(a.as_bytes()))
        .collect()
}

/// One replica: every command is applied as a log entry of its own.
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

    fn apply(&mut self, writes: Vec<Write>) -> Vec<Frame> {
        self.index += 1;
        let batch = WriteBatch {
            now_ms: 1_000,
            seed: self.index,
            writes,
        };
        apply_batch(&batch, self.index, &mut self.kv, &mut self.state).unwrap()
    }

    fn run(&mut self, args: &[&str]) -> Frame {
        self.apply(vec![Write::Command(argv(args))]).remove(0)
    }

    fn run_argv(&mut self, args: Vec<Bytes>) -> Frame {
        self.apply(vec![Write::Command(args)]).remove(0)
    }

    /// The stored element positions of `key`, and its (size, head, tail).
    fn stored(&mut self, key: &str) -> (Vec<u64>, Option<(u64, u64, u64)>) {
        let prefix = keys::subkey_prefix(DATA_GROUP, key.as_bytes());
        let positions = self
            .kv
            .map
            .keys()
            .filter_map(|k| k.strip_prefix(prefix.as_slice()))
            .map(|f| u64::from_be_bytes(f.try_into().unwrap()))
            .collect();
        let mut ks = Keyspace::new(&mut self.kv, DATA_GROUP, 1_000, 0, Counts::default());
        let meta = ks
            .get(key.as_bytes())
            .unwrap()
            .filter(|r| r.kind == Kind::List)
            .map(|r| r.composite_meta().unwrap());
        (positions, meta)
    }

    /// Every element of `key` is stored at a position in `[head, tail)`
    /// and nothing else is stored for it.
    fn assert_exact(&mut self, key: &str) {
        let (positions, meta) = self.stored(key);
        match meta {
            Some((size, head, tail)) => {
                assert_eq!(size, tail - head, "{key}");
                assert_eq!(positions, (head..tail).collect::<Vec<_>>(), "{key}");
            }
            None => assert!(positions.is_empty(), "{key}: elements of no list"),
        }
    }
}

fn bulk(s: &str) -> Frame {
    Frame::Bulk(Bytes::copy_from_slice(s.as_bytes()))
}

fn bulks(items: &[&str]) -> Frame {
    Frame::Array(items.iter().map(|s| bulk(s)).collect())
}

fn ints(items: &[i64]) -> Frame {
    Frame::Array(items.iter().map(|i| Frame::Integer(*i)).collect())
}

fn error(s: &str) -> Frame {
    Frame::error(s.to_string())
}

const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";

#[test]
fn pushes_pops_and_reads_follow_redis() {
    let mut r = Replica::new();
    assert_eq!(r.run(&["LPUSHX", "l", "a"]), Frame::Integer(0));
    assert_eq!(r.run(&["EXISTS", "l"]), Frame::Integer(0));
    assert_eq!(
        r.run(&["LPUSH", "l", "a", "b", "c", "d"]),
        Frame::Integer(4)
    );
    assert_eq!(
        r.run(&["RPUSH", "l", "0", "1", "2", "3"]),
        Frame::Integer(8)
    );
    assert_eq!(
        r.run(&["LRANGE", "l", "0", "-1"]),
        bulks(&["d", "c", "b", "a", "0", "1", "2", "3"])
    );
    assert_eq!(r.run(&["RPUSHX", "l", "x"]), Frame::Integer(9));
    assert_eq!(r.run(&["LLEN", "l"]), Frame::Integer(9));
    assert_eq!(r.run(&["LLEN", "nope"]), Frame::Integer(0));
    assert_eq!(r.run(&["LINDEX", "l", "0"]), bulk("d"));
    assert_eq!(r.run(&["LINDEX", "l", "-1"]), bulk("x"));
    assert_eq!(r.run(&["LINDEX", "l", "9"]), Frame::Null);
    assert_eq!(r.run(&["LINDEX", "l", "-10"]), Frame::Null);
    assert_eq!(r.run(&["LINDEX", "nope", "x"]), Frame::Null);
    assert_eq!(
        r.run(&["LINDEX", "l", "x"]),
        error("ERR value is not an integer or out of range")
    );
    assert_eq!(
        r.run(&["LRANGE", "l", "-3", "100"]),
        bulks(&["2", "3", "x"])
    );
    assert_eq!(r.run(&["LRANGE", "l", "5", "2"]), bulks(&[]));
    assert_eq!(r.run(&["LRANGE", "l", "-100", "0"]), bulks(&["d"]));
    assert_eq!(r.run(&["LRANGE", "l", "0", "-100"]), bulks(&[]));
    assert_eq!(
        r.run(&["LRANGE", "l", "0", "-9223372036854775808"]),
        bulks(&[])
    );
    assert_eq!(r.run(&["LRANGE", "nope", "0", "-1"]), bulks(&[]));
    assert_eq!(r.run(&["LPOP", "l"]), bulk("d"));
    assert_eq!(r.run(&["RPOP", "l"]), bulk("x"));
    assert_eq!(r.run(&["LPOP", "l", "2"]), bulks(&["c", "b"]));
    assert_eq!(r.run(&["RPOP", "l", "2"]), bulks(&["3", "2"]));
    assert_eq!(r.run(&["LPOP", "l", "0"]), bulks(&[]));
    assert_eq!(r.run(&["LPOP", "nope"]), Frame::Null);
    assert_eq!(r.run(&["LPOP", "nope", "0"]), Frame::NullArray);
    assert_eq!(
        r.run(&["LPOP", "l", "-1"]),
        error("ERR value is out of range, must be positive")
    );
    assert_eq!(
        r.run(&["LPOP", "l", "1", "1"]),
        error("ERR wrong number of arguments for 'lpop' command")
    );
    assert_eq!(r.run(&["RPOP", "l", "100"]), bulks(&["1", "0", "a"]));
    assert_eq!(r.run(&["EXISTS", "l"]), Frame::Integer(0));
    assert_eq!(r.state.counts.keys, 0);
    r.assert_exact("l");
}

#[test]
fn edits_follow_redis_and_keep_positions_exact() {
    let mut r = Replica::new();
    r.run(&["RPUSH", "l", "a", "b", "c", "d"]);
    assert_eq!(
        r.run(&["LINSERT", "l", "BEFORE", "c", "zz"]),
        Frame::Integer(5)
    );
    assert_eq!(
        r.run(&["LINSERT", "l", "after", "c", "yy"]),
        Frame::Integer(6)
    );
    assert_eq!(
        r.run(&["LINSERT", "l", "AFTER", "d", "dd"]),
        Frame::Integer(7)
    );
    assert_eq!(
        r.run(&["LINSERT", "l", "BEFORE", "a", "aa"]),
        Frame::Integer(8)
    );
    assert_eq!(
        r.run(&["LINSERT", "l", "BEFORE", "bad", "x"]),
        Frame::Integer(-1)
    );
    assert_eq!(
        r.run(&["LINSERT", "nope", "BEFORE", "a", "x"]),
        Frame::Integer(0)
    );
    assert_eq!(
        r.run(&["LINSERT", "l", "aft3r", "a", "x"]),
        error("ERR syntax error")
    );
    assert_eq!(
        r.run(&["LRANGE", "l", "0", "-1"]),
        bulks(&["aa", "a", "b", "zz", "c", "yy", "d", "dd"])
    );
    r.assert_exact("l");
    assert_eq!(r.run(&["LSET", "l", "1", "A"]), Frame::ok());
    assert_eq!(r.run(&["LSET", "l", "-1", "DD"]), Frame::ok());
    assert_eq!(
        r.run(&["LSET", "l", "8", "x"]),
        error("ERR index out of range")
    );
    assert_eq!(r.run(&["LSET", "nope", "0", "x"]), error("ERR no such key"));
    assert_eq!(r.run(&["LINDEX", "l", "1"]), bulk("A"));
    assert_eq!(r.run(&["LINDEX", "l", "7"]), bulk("DD"));

    r.run(&["DEL", "l"]);
    r.run(&["RPUSH", "l", "x", "a", "x", "b", "x", "c", "x"]);
    assert_eq!(r.run(&["LREM", "l", "1", "x"]), Frame::Integer(1));
    assert_eq!(r.run(&["LREM", "l", "-1", "x"]), Frame::Integer(1));
    assert_eq!(
        r.run(&["LRANGE", "l", "0", "-1"]),
        bulks(&["a", "x", "b", "x", "c"])
    );
    r.assert_exact("l");
    assert_eq!(r.run(&["LREM", "l", "0", "x"]), Frame::Integer(2));
    assert_eq!(r.run(&["LRANGE", "l", "0", "-1"]), bulks(&["a", "b", "c"]));
    r.assert_exact("l");
    assert_eq!(r.run(&["LREM", "l", "0", "nope"]), Frame::Integer(0));
    assert_eq!(r.run(&["LREM", "nope", "0", "a"]), Frame::Integer(0));
    assert_eq!(
        r.run(&["LREM", "l", "x", "a"]),
        error("ERR value is not an integer or out of range")
    );

    assert_eq!(r.run(&["LTRIM", "l", "1", "-1"]), Frame::ok());
    assert_eq!(r.run(&["LRANGE", "l", "0", "-1"]), bulks(&["b", "c"]));
    assert_eq!(r.run(&["LTRIM", "l", "0", "-3"]), Frame::ok());
    assert_eq!(r.run(&["EXISTS", "l"]), Frame::Integer(0));
    assert_eq!(r.run(&["LTRIM", "nope", "0", "1"]), Frame::ok());
    r.assert_exact("l");

    r.run(&["RPUSH", "l", "x", "x"]);
    assert_eq!(r.run(&["LREM", "l", "0", "x"]), Frame::Integer(2));
    assert_eq!(r.run(&["EXISTS", "l"]), Frame::Integer(0));
    r.assert_exact("l");
}

#[test]
fn lpos_follows_redis() {
    let mut r = Replica::new();
    r.run(&["RPUSH", "l", "a", "b", "c", "1", "2", "3", "c", "c"]);
    assert_eq!(r.run(&["LPOS", "l", "a"]), Frame::Integer(0));
    assert_eq!(r.run(&["LPOS", "l", "c"]), Frame::Integer(2));
    assert_eq!(r.run(&["LPOS", "l", "c", "RANK", "2"]), Frame::Integer(6));
    assert_eq!(r.run(&["LPOS", "l", "c", "RANK", "4"]), Frame::Null);
    assert_eq!(r.run(&["LPOS", "l", "c", "RANK", "-1"]), Frame::Integer(7));
    assert_eq!(r.run(&["LPOS", "l", "c", "COUNT", "0"]), ints(&[2, 6, 7]));
    assert_eq!(
        r.run(&["LPOS", "l", "c", "COUNT", "2", "RANK", "-1"]),
        ints(&[7, 6])
    );
    assert_eq!(
        r.run(&["LPOS", "l", "c", "COUNT", "0", "MAXLEN", "3", "RANK", "-1"]),
        ints(&[7, 6])
    );
    assert_eq!(
        r.run(&["LPOS", "l", "c", "COUNT", "0", "MAXLEN", "1"]),
        ints(&[])
    );
    assert_eq!(r.run(&["LPOS", "nope", "c", "COUNT", "0"]), ints(&[]));
    assert_eq!(r.run(&["LPOS", "nope", "c"]), Frame::Null);
    assert_eq!(
        r.run(&["LPOS", "l", "c", "RANK", "0"]),
        error("ERR RANK can't be zero: use 1 to start from the first match, 2 from the second ... or use negative to start from the end of the list")
    );
    assert_eq!(
        r.run(&["LPOS", "l", "c", "COUNT", "-1"]),
        error("ERR COUNT can't be negative")
    );
    assert_eq!(
        r.run(&["LPOS", "l", "c", "MAXLEN", "x"]),
        error("ERR MAXLEN can't be negative")
    );
    assert_eq!(
        r.run(&["LPOS", "l", "c", "COUNT"]),
        error("ERR syntax error")
    );
    assert_eq!(
        r.run(&["LPOS", "l", "c", "RANK", "-9223372036854775808"]),
        Frame::Null
    );
}

#[test]
fn moves_follow_redis() {
    let mut r = Replica::new();
    r.run(&["RPUSH", "src", "a", "b", "c"]);
    assert_eq!(r.run(&["RPOPLPUSH", "src", "dst"]), bulk("c"));
    assert_eq!(r.run(&["LMOVE", "src", "dst", "LEFT", "RIGHT"]), bulk("a"));
    assert_eq!(r.run(&["LRANGE", "dst", "0", "-1"]), bulks(&["c", "a"]));
    // The same list: a rotation.
    assert_eq!(r.run(&["LMOVE", "dst", "dst", "LEFT", "RIGHT"]), bulk("c"));
    assert_eq!(r.run(&["LRANGE", "dst", "0", "-1"]), bulks(&["a", "c"]));
    assert_eq!(r.run(&["RPOPLPUSH", "src", "src"]), bulk("b"));
    assert_eq!(r.run(&["LRANGE", "src", "0", "-1"]), bulks(&["b"]));
    r.assert_exact("src");
    assert_eq!(r.run(&["RPOPLPUSH", "src", "dst"]), bulk("b"));
    assert_eq!(r.run(&["EXISTS", "src"]), Frame::Integer(0));
    assert_eq!(r.run(&["RPOPLPUSH", "nope", "dst"]), Frame::Null);
    assert_eq!(
        r.run(&["LMOVE", "dst", "x", "UP", "LEFT"]),
        error("ERR syntax error")
    );
    r.run(&["SET", "s", "v"]);
    // A missing source answers nil whatever the destination holds.
    assert_eq!(r.run(&["RPOPLPUSH", "nope", "s"]), Frame::Null);
    assert_eq!(r.run(&["RPOPLPUSH", "dst", "s"]), error(WRONGTYPE));
    assert_eq!(r.run(&["RPOPLPUSH", "s", "dst"]), error(WRONGTYPE));
    assert_eq!(r.run(&["LLEN", "dst"]), Frame::Integer(3));
    r.assert_exact("dst");
}

#[test]
fn lmpop_follows_redis() {
    let mut r = Replica::new();
    r.run(&["RPUSH", "a", "1", "2", "3"]);
    assert_eq!(
        r.run(&["LMPOP", "2", "nope", "a", "LEFT"]),
        Frame::Array(vec![bulk("a"), bulks(&["1"])])
    );
    assert_eq!(
        r.run(&["LMPOP", "1", "a", "RIGHT", "COUNT", "10"]),
        Frame::Array(vec![bulk("a"), bulks(&["3", "2"])])
    );
    assert_eq!(r.run(&["LMPOP", "1", "a", "LEFT"]), Frame::NullArray);
    for (args, e) in [
        (
            &["LMPOP", "0", "a", "LEFT"][..],
            "ERR numkeys should be greater than 0",
        ),
        (
            &["LMPOP", "x", "a", "LEFT"],
            "ERR numkeys should be greater than 0",
        ),
        (&["LMPOP", "2", "a", "LEFT"], "ERR syntax error"),
        (&["LMPOP", "1", "a", "UP"], "ERR syntax error"),
        (&["LMPOP", "1", "a", "LEFT", "COUNT"], "ERR syntax error"),
        (
            &["LMPOP", "1", "a", "LEFT", "COUNT", "1", "COUNT", "2"],
            "ERR syntax error",
        ),
        (
            &["LMPOP", "1", "a", "LEFT", "COUNT", "0"],
            "ERR count should be greater than 0",
        ),
        (
            &["LMPOP", "1", "a", "LEFT", "COUNT", "0", "x"],
            "ERR count should be greater than 0",
        ),
        (
            &["LMPOP", "9223372036854775807", "a", "LEFT"],
            "ERR syntax error",
        ),
    ] {
        assert_eq!(r.run(args), error(e), "{args:?}");
    }
    r.run(&["SET", "s", "v"]);
    assert_eq!(
        r.run(&["LMPOP", "2", "nope", "s", "LEFT"]),
        error(WRONGTYPE)
    );
}

#[test]
fn other_types_are_refused_and_lists_are_refused_elsewhere() {
    let mut r = Replica::new();
    r.run(&["SET", "s", "v"]);
    for args in [
        &["LPUSH", "s", "a"][..],
        &["RPUSHX", "s", "a"],
        &["LPOP", "s"],
        &["LLEN", "s"],
        &["LINDEX", "s", "0"],
        &["LSET", "s", "0", "a"],
        &["LRANGE", "s", "0", "1"],
        &["LTRIM", "s", "0", "1"],
        &["LREM", "s", "0", "a"],
        &["LINSERT", "s", "BEFORE", "a", "b"],
        &["LPOS", "s", "a"],
    ] {
        assert_eq!(r.run(args), error(WRONGTYPE), "{args:?}");
    }
    r.run(&["RPUSH", "l", "a"]);
    assert_eq!(r.run(&["GET", "l"]), error(WRONGTYPE));
    assert_eq!(r.run(&["TYPE", "l"]), Frame::simple("list"));
    assert_eq!(r.run(&["OBJECT", "ENCODING", "l"]), bulk("quicklist"));
    // Overwriting a list with a string drops its elements.
    r.run(&["SET", "l", "v"]);
    r.assert_exact("l");
}

#[test]
fn a_list_keeps_its_expiry_and_an_expired_one_is_replaced_whole() {
    let mut r = Replica::new();
    r.run(&["RPUSH", "l", "a", "b"]);
    r.run(&["PEXPIREAT", "l", "5000"]);
    r.run(&["RPUSH", "l", "c"]);
    r.run(&["LSET", "l", "0", "A"]);
    assert_eq!(r.run(&["PEXPIRETIME", "l"]), Frame::Integer(5000));
    r.run(&["PEXPIREAT", "l", "1"]);
    // Expired (not yet removed): absent, and a push starts a new list
    // without the old elements.
    assert_eq!(r.run(&["LLEN", "l"]), Frame::Integer(0));
    assert_eq!(r.run(&["LPUSH", "l", "x"]), Frame::Integer(1));
    assert_eq!(r.run(&["LRANGE", "l", "0", "-1"]), bulks(&["x"]));
    assert_eq!(r.run(&["PTTL", "l"]), Frame::Integer(-1));
    r.assert_exact("l");
    // RENAME and COPY carry the elements.
    assert_eq!(r.run(&["COPY", "l", "c"]), Frame::Integer(1));
    assert_eq!(r.run(&["RENAME", "l", "m"]), Frame::ok());
    assert_eq!(r.run(&["LRANGE", "c", "0", "-1"]), bulks(&["x"]));
    assert_eq!(r.run(&["RPUSH", "m", "y"]), Frame::Integer(2));
    assert_eq!(r.run(&["LRANGE", "m", "0", "-1"]), bulks(&["x", "y"]));
    r.assert_exact("l");
    r.assert_exact("m");
}

/// Regression: `EXPIRE`/`PERSIST` rewrote the metadata with `put`, which
/// drops a composite value's elements (found by the snapshot test).
#[test]
fn expire_and_persist_keep_a_lists_elements() {
    let mut r = Replica::new();
    r.run(&["RPUSH", "l", "a", "b"]);
    assert_eq!(r.run(&["EXPIRE", "l", "100"]), Frame::Integer(1));
    assert_eq!(r.run(&["LRANGE", "l", "0", "-1"]), bulks(&["a", "b"]));
    assert_eq!(r.run(&["PERSIST", "l"]), Frame::Integer(1));
    assert_eq!(r.run(&["LRANGE", "l", "0", "-1"]), bulks(&["a", "b"]));
    r.assert_exact("l");
}

#[test]
fn watch_sees_every_change_and_no_other() {
    use seshat_kv::Watch;
    let mut r = Replica::new();
    r.run(&["RPUSH", "l", "a", "b"]);
    let tx = |mod_index| Write::Transaction {
        watches: vec![Watch {
            key: Bytes::from_static(b"l"),
            mod_index: Some(mod_index),
        }],
        commands: vec![argv(&["LLEN", "l"])],
    };
    let seen = r.index;
    // Reads and no-op writes leave the key unmodified.
    r.run(&["LRANGE", "l", "0", "-1"]);
    r.run(&["LREM", "l", "0", "zz"]);
    r.run(&["LINSERT", "l", "BEFORE", "zz", "x"]);
    assert_eq!(
        r.apply(vec![tx(seen)]),
        vec![Frame::Array(vec![Frame::Integer(2)])]
    );
    r.run(&["LSET", "l", "0", "A"]);
    assert_eq!(r.apply(vec![tx(seen)]), vec![Frame::NullArray]);
}

#[test]
fn large_replies_and_large_edits_are_refused_before_any_change() {
    let mut r = Replica::new();
    // A list whose metadata claims more elements than a reply may hold:
    // the limit answers before anything is read.
    let n = MAX_REPLY_ELEMENTS as u64 + 1;
    let mut ks = Keyspace::new(&mut r.kv, DATA_GROUP, 0, 1, Counts::default());
    ks.put(
        b"big",
        Record::composite(Kind::List, n, START_POSITION, START_POSITION + n),
    )
    .unwrap();
    r.state.counts = ks.counts();
    let too_many = error(&format!(
        "ERR reply would hold {n} elements, more than the {MAX_REPLY_ELEMENTS} Seshat returns at once; ask for fewer"
    ));
    assert_eq!(r.run(&["LRANGE", "big", "0", "-1"]), too_many);
    assert_eq!(r.run(&["LPOP", "big", &n.to_string()]), too_many);

    // A real list one element longer than an edit may read.
    let len = MAX_EDIT_ELEMENTS + 1;
    for chunk in 0..len.div_ceil(1000) {
        let mut args = argv(&["RPUSH", "e"]);
        let upto = ((chunk + 1) * 1000).min(len);
        args.extend((chunk * 1000..upto).map(|i| Bytes::from(i.to_string())));
        r.run_argv(args);
    }
    let last = (len - 1).to_string();
    assert_eq!(
        r.run(&["LREM", "e", "0", "1"]),
        error(&format!("ERR LREM would read more than {MAX_EDIT_ELEMENTS} elements of this list, Seshat's bound on one command's work; edit long lists near their ends"))
    );
    assert_eq!(
        r.run(&["LINSERT", "e", "AFTER", &last, "x"]),
        error(&format!("ERR LINSERT would read more than {MAX_EDIT_ELEMENTS} elements of this list, Seshat's bound on one command's work; edit long lists near their ends"))
    );
    assert_eq!(r.run(&["LLEN", "e"]), Frame::Integer(len as i64));
    // Near the ends they work, and move only the near side.
    assert_eq!(r.run(&["LREM", "e", "-1", &last]), Frame::Integer(1));
    assert_eq!(
        r.run(&["LINSERT", "e", "AFTER", "2", "x"]),
        Frame::Integer(len as i64)
    );
    assert_eq!(
        r.run(&["LRANGE", "e", "0", "4"]),
        bulks(&["0", "1", "2", "x", "3"])
    );
    assert_eq!(r.run(&["LREM", "e", "1", "1"]), Frame::Integer(1));
    assert_eq!(r.run(&["LRANGE", "e", "0", "2"]), bulks(&["0", "2", "x"]));
    r.assert_exact("e");
    // LTRIM of almost everything is two range deletes.
    assert_eq!(r.run(&["LTRIM", "e", "5", "9"]), Frame::ok());
    assert_eq!(r.run(&["LRANGE", "e", "0", "0"]), bulks(&["5"]));
    r.assert_exact("e");
}

#[test]
fn a_reply_is_bounded_in_bytes_too() {
    let mut r = Replica::new();
    r.run(&["RPUSH", "l", "aaaa", "bbbb", "cccc"]);
    let counts = r.state.counts;
    let mut ctx = Ctx {
        db: Keyspace::new(&mut r.kv as &mut dyn RawKv, DATA_GROUP, 1_000, 0, counts),
        rng: EntryRng::new(0, 0),
    };
    let list = List::load(&mut ctx, b"l").unwrap().unwrap();
    let all = list.read_reply(&mut ctx, 0, 3, true, 12).unwrap();
    assert_eq!(all, ["cccc", "bbbb", "aaaa"]);
    let e = list.read_reply(&mut ctx, 0, 3, false, 11).unwrap_err();
    assert!(e.to_string().contains("more than 11 bytes"), "{e}");
}

#[test]
fn the_edit_budget_counts_reads_and_moved_bytes() {
    let mut budget = Budget::new("LREM");
    budget.elements = 2;
    budget.bytes = 10;
    budget.read().unwrap();
    budget.read().unwrap();
    assert!(budget.read().is_err());
    budget.keep(10).unwrap();
    let e = budget.keep(1).unwrap_err();
    assert!(e.to_string().contains("LREM would move more than"), "{e}");
}

#[test]
fn malformed_writes_are_refused_before_proposal() {
    for (args, e) in [
        (
            &["LPOP", "k", "x"][..],
            "ERR value is out of range, must be positive",
        ),
        (
            &["RPOP", "k", "1", "2"],
            "ERR wrong number of arguments for 'rpop' command",
        ),
        (
            &["LTRIM", "k", "a", "1"],
            "ERR value is not an integer or out of range",
        ),
        (
            &["LREM", "k", "a", "x"],
            "ERR value is not an integer or out of range",
        ),
        (&["LINSERT", "k", "NEAR", "a", "b"], "ERR syntax error"),
        (&["LMOVE", "a", "b", "LEFT", "UP"], "ERR syntax error"),
        (
            &["LMPOP", "1", "a", "LEFT", "COUNT", "-1"],
            "ERR count should be greater than 0",
        ),
    ] {
        let decl = resolve(&argv(args)).unwrap();
        assert_eq!(
            prepare_write(decl, argv(args), 0),
            Err(error(e)),
            "{args:?}"
        );
    }
    let ok = argv(&["LPOP", "k", "3"]);
    let decl = resolve(&ok).unwrap();
    assert_eq!(prepare_write(decl, ok.clone(), 0), Ok(ok));
}

// ---- the model ----

/// What a key holds in the model.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    List(VecDeque<String>),
    Str,
}

#[derive(Default)]
struct Model {
    keys: BTreeMap<String, Value>,
    /// Keys with an expiry (far in the future: they never expire here).
    expiring: std::collections::BTreeSet<String>,
}

fn norm(i: i64, len: usize) -> i64 {
    if i < 0 {
        len as i64 + i
    } else {
        i
    }
}

impl Model {
    /// The list at `key`: `Err` for a string, empty when absent.
    fn list(&self, key: &str) -> Result<VecDeque<String>, Frame> {
        match self.keys.get(key) {
            Some(Value::Str) => Err(error(WRONGTYPE)),
            Some(Value::List(l)) => Ok(l.clone()),
            None => Ok(VecDeque::new()),
        }
    }

    fn store(&mut self, key: &str, list: VecDeque<String>) {
        if list.is_empty() {
            self.keys.remove(key);
            self.expiring.remove(key);
        } else {
            self.keys.insert(key.to_string(), Value::List(list));
        }
    }

    fn run(&mut self, c: &[String]) -> Frame {
        match self.try_run(c) {
            Ok(f) | Err(f) => f,
        }
    }

    fn try_run(&mut self, c: &[String]) -> Result<Frame, Frame> {
        let s = |i: usize| c[i].as_str();
        let num = |i: usize| c[i].parse::<i64>().unwrap();
        let key = s(1);
        match s(0) {
            "LPUSH" | "RPUSH" | "LPUSHX" | "RPUSHX" => {
                let mut l = self.list(key)?;
                if s(0).ends_with('X') && l.is_empty() {
                    return Ok(Frame::Integer(0));
                }
                for v in &c[2..] {
                    if s(0).starts_with('L') {
                        l.push_front(v.clone());
                    } else {
                        l.push_back(v.clone());
                    }
                }
                let n = l.len();
                self.store(key, l);
                Ok(Frame::Integer(n as i64))
            }
            "LPOP" | "RPOP" => {
                let count = (c.len() == 3).then(|| num(2) as usize);
                if !self.keys.contains_key(key) {
                    self.list(key)?;
                    return Ok(if count.is_some() {
                        Frame::NullArray
                    } else {
                        Frame::Null
                    });
                }
                let mut l = self.list(key)?;
                let mut out = Vec::new();
                for _ in 0..count.unwrap_or(1) {
                    let v = if s(0) == "LPOP" {
                        l.pop_front()
                    } else {
                        l.pop_back()
                    };
                    match v {
                        Some(v) => out.push(bulk(&v)),
                        None => break,
                    }
                }
                self.store(key, l);
                Ok(match count {
                    Some(_) => Frame::Array(out),
                    None => out.pop().unwrap(),
                })
            }
            "LLEN" => Ok(Frame::Integer(self.list(key)?.len() as i64)),
            "LINDEX" => {
                let l = self.list(key)?;
                let i = norm(num(2), l.len());
                Ok(usize::try_from(i)
                    .ok()
                    .and_then(|i| l.get(i))
                    .map_or(Frame::Null, |v| bulk(v)))
            }
            "LSET" => {
                if !self.keys.contains_key(key) {
                    return Err(error("ERR no such key"));
                }
                let mut l = self.list(key)?;
                let i = norm(num(2), l.len());
                match usize::try_from(i).ok().and_then(|i| l.get_mut(i)) {
                    Some(v) => *v = c[3].clone(),
                    None => return Err(error("ERR index out of range")),
                }
                self.store(key, l);
                Ok(Frame::ok())
            }
            "LRANGE" | "LTRIM" => {
                let l = self.list(key)?;
                let len = l.len();
                let start = norm(num(2), len).max(0);
                let stop = norm(num(3), len).min(len as i64 - 1);
                let kept: VecDeque<String> = if start > stop {
                    VecDeque::new()
                } else {
                    l.range(start as usize..=stop as usize).cloned().collect()
                };
                if s(0) == "LRANGE" {
                    return Ok(Frame::Array(kept.iter().map(|v| bulk(v)).collect()));
                }
                if self.keys.contains_key(key) {
                    self.store(key, kept);
                }
                Ok(Frame::ok())
            }
            "LREM" => {
                let mut l: Vec<String> = self.list(key)?.into();
                let count = num(2);
                let mut removed = 0;
                let wanted = count.unsigned_abs() as usize;
                let order: Vec<usize> = if count < 0 {
                    (0..l.len()).rev().collect()
                } else {
                    (0..l.len()).collect()
                };
                let mut drop = Vec::new();
                for i in order {
                    if l[i] == c[3] && (wanted == 0 || removed < wanted) {
                        drop.push(i);
                        removed += 1;
                    }
                }
                drop.sort_unstable();
                for i in drop.into_iter().rev() {
                    l.remove(i);
                }
                self.store(key, l.into());
                Ok(Frame::Integer(removed as i64))
            }
            "LINSERT" => {
                let mut l = self.list(key)?;
                if l.is_empty() {
                    return Ok(Frame::Integer(0));
                }
                let Some(p) = l.iter().position(|v| *v == c[3]) else {
                    return Ok(Frame::Integer(-1));
                };
                l.insert(if s(2) == "BEFORE" { p } else { p + 1 }, c[4].clone());
                let n = l.len();
                self.store(key, l);
                Ok(Frame::Integer(n as i64))
            }
            "LPOS" => {
                let l = self.list(key)?;
                let mut hits: Vec<i64> = (0..l.len())
                    .filter(|i| l[*i] == c[2])
                    .map(|i| i as i64)
                    .collect();
                let rank = num(4);
                if rank < 0 {
                    hits.reverse();
                }
                let first = (rank.unsigned_abs() - 1) as usize;
                Ok(hits.get(first).map_or(Frame::Null, |i| Frame::Integer(*i)))
            }
            "LMOVE" => {
                let dst = s(2);
                let mut from = self.list(key)?;
                let Some(v) = (if s(3) == "LEFT" {
                    from.front()
                } else {
                    from.back()
                })
                .cloned() else {
                    return Ok(Frame::Null);
                };
                self.list(dst)?;
                if s(3) == "LEFT" {
                    from.pop_front();
                } else {
                    from.pop_back();
                }
                // The same list is a rotation: never empty in between, so
                // it keeps its TTL (as Redis's LMOVE does).
                if dst == key {
                    if s(4) == "LEFT" {
                        from.push_front(v.clone());
                    } else {
                        from.push_back(v.clone());
                    }
                    self.store(key, from);
                    return Ok(bulk(&v));
                }
                self.store(key, from);
                let mut to = self.list(dst)?;
                if s(4) == "LEFT" {
                    to.push_front(v.clone());
                } else {
                    to.push_back(v.clone());
                }
                self.store(dst, to);
                Ok(bulk(&v))
            }
            "LMPOP" => {
                let keys = &c[2..4];
                for k in keys {
                    let l = self.list(k)?;
                    if l.is_empty() {
                        continue;
                    }
                    let pop = if s(4) == "LEFT" { "LPOP" } else { "RPOP" };
                    let popped = self.run(&[pop.into(), k.clone(), c[6].clone()]);
                    return Ok(Frame::Array(vec![bulk(k), popped]));
                }
                Ok(Frame::NullArray)
            }
            "DEL" => {
                self.expiring.remove(key);
                Ok(Frame::Integer(self.keys.remove(key).is_some() as i64))
            }
            "PEXPIRE" => {
                let exists = self.keys.contains_key(key);
                if exists {
                    self.expiring.insert(key.to_string());
                }
                Ok(Frame::Integer(exists as i64))
            }
            "PERSIST" => Ok(Frame::Integer(self.expiring.remove(key) as i64)),
            "SET" => {
                self.keys.insert(key.to_string(), Value::Str);
                Ok(Frame::ok())
            }
            other => panic!("model has no {other}"),
        }
    }
}

fn arb_command() -> impl Strategy<Value = Vec<String>> {
    let key = prop::sample::select(vec!["a", "b", "s"]);
    let elem = prop::sample::select(vec!["x", "y", "z"]);
    let end = prop::sample::select(vec!["LEFT", "RIGHT"]);
    let idx = -5i64..5;
    let s = |v: &str| v.to_string();
    prop_oneof![
        3 => (prop::sample::select(vec!["LPUSH", "RPUSH", "LPUSHX", "RPUSHX"]), key.clone(), prop::collection::vec(elem.clone(), 1..4))
            .prop_map(move |(c, k, vs)| [s(c), s(k)].into_iter().chain(vs.into_iter().map(s)).collect()),
        2 => (prop::sample::select(vec!["LPOP", "RPOP"]), key.clone(), prop::option::of(0u8..4))
            .prop_map(move |(c, k, n)| [s(c), s(k)].into_iter().chain(n.map(|n| n.to_string())).collect()),
        1 => key.clone().prop_map(move |k| vec![s("LLEN"), s(k)]),
        1 => (key.clone(), idx.clone()).prop_map(move |(k, i)| vec![s("LINDEX"), s(k), i.to_string()]),
        1 => (key.clone(), idx.clone(), elem.clone()).prop_map(move |(k, i, e)| vec![s("LSET"), s(k), i.to_string(), s(e)]),
        1 => (key.clone(), idx.clone(), idx.clone()).prop_map(move |(k, a, b)| vec![s("LRANGE"), s(k), a.to_string(), b.to_string()]),
        1 => (key.clone(), idx.clone(), idx.clone()).prop_map(move |(k, a, b)| vec![s("LTRIM"), s(k), a.to_string(), b.to_string()]),
        2 => (key.clone(), -3i64..3, elem.clone()).prop_map(move |(k, n, e)| vec![s("LREM"), s(k), n.to_string(), s(e)]),
        2 => (key.clone(), prop::sample::select(vec!["BEFORE", "AFTER"]), elem.clone(), elem.clone())
            .prop_map(move |(k, w, p, e)| vec![s("LINSERT"), s(k), s(w), s(p), s(e)]),
        1 => (key.clone(), elem.clone(), prop::sample::select(vec![-2i64, -1, 1, 2]))
            .prop_map(move |(k, e, r)| vec![s("LPOS"), s(k), s(e), s("RANK"), r.to_string()]),
        2 => (key.clone(), key.clone(), end.clone(), end.clone())
            .prop_map(move |(a, b, f, t)| vec![s("LMOVE"), s(a), s(b), s(f), s(t)]),
        1 => (key.clone(), key.clone(), end, 1u8..4)
            .prop_map(move |(a, b, w, n)| vec![s("LMPOP"), s("2"), s(a), s(b), s(w), s("COUNT"), n.to_string()]),
        1 => key.clone().prop_filter("lists only", |k| *k != "s").prop_map(move |k| vec![s("DEL"), s(k)]),
        1 => (prop::sample::select(vec!["PEXPIRE", "PERSIST"]), key.prop_filter("lists only", |k| *k != "s"))
            .prop_map(move |(c, k)| if c == "PEXPIRE" { vec![s(c), s(k), s("1000000")] } else { vec![s(c), s(k)] }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Random list commands (several per log entry) give the same replies
    /// and the same state on two replicas, match a `VecDeque` model, and
    /// leave exactly `[head, tail)` stored for every list.
    #[test]
    fn lists_match_the_model_on_every_replica(
        entries in prop::collection::vec(prop::collection::vec(arb_command(), 1..4), 1..40)
    ) {
        let (mut a, mut b) = (Replica::new(), Replica::new());
        let mut model = Model::default();
        for replica in [&mut a, &mut b] {
            replica.run(&["SET", "s", "v"]);
        }
        model.run(&["SET".into(), "s".into()]);
        for entry in entries {
            let writes: Vec<Write> = entry
                .iter()
                .map(|c| Write::Command(c.iter().map(|s| Bytes::from(s.clone())).collect()))
                .collect();
            let ra = a.apply(writes.clone());
            let rb = b.apply(writes);
            prop_assert_eq!(&ra, &rb);
            for (c, got) in entry.iter().zip(&ra) {
                prop_assert_eq!(got, &model.run(c), "{:?}", c);
            }
        }
        prop_assert_eq!(&a.kv, &b.kv);
        prop_assert_eq!(&a.state, &b.state);
        prop_assert_eq!(a.state.counts.keys, model.keys.len() as u64);
        for key in ["a", "b"] {
            a.assert_exact(key);
            let want = match model.keys.get(key) {
                Some(Value::List(l)) => Frame::Array(l.iter().map(|v| bulk(v)).collect()),
                _ => Frame::Array(vec![]),
            };
            prop_assert_eq!(a.run(&["LRANGE", key, "0", "-1"]), want);
        }
    }
}
