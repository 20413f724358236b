//! Sorted set commands applied through [`crate::apply_batch`] on
//! [`MemKv`]: Redis's semantics command by command, a model-based
//! property test, replicas that agree, and `ZSCAN`'s guarantee.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use proptest::prelude::*;
use seshat_kv::keys::DATA_GROUP;
use seshat_kv::{Keyspace, Kind, MemKv, Write, WriteBatch};
use seshat_protocol_resp::Frame;

use crate::{apply_batch, GroupState};

/// One replica's state, applying one entry per call.
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

    /// `key`'s members as stored, checking the sorted set's invariants:
    /// the size is the number of elements, every element is in the score
    /// index with its score and nothing else is.
    fn stored(&mut self, key: &str) -> Option<BTreeMap<Vec<u8>, f64>> {
        let mut ks = Keyspace::new(&mut self.kv, DATA_GROUP, 1_000, 0, self.state.counts);
        let record = ks.get(key.as_bytes()).unwrap()?;
        assert_eq!(record.kind, Kind::ZSet, "{key}");
        let (size, _, _) = record.composite_meta().unwrap();
        let elements = ks
            .elements(key.as_bytes(), None, None, usize::MAX, false)
            .unwrap();
        let index = ks
            .scores(key.as_bytes(), None, None, usize::MAX, false)
            .unwrap();
        let members: BTreeMap<Vec<u8>, f64> = elements
            .iter()
            .map(|(m, v)| (m.to_vec(), f64::from_be_bytes(v[..].try_into().unwrap())))
            .collect();
        assert_eq!(size as usize, members.len(), "size of {key}");
        assert_eq!(index.len(), members.len(), "index of {key}");
        for (score, member) in &index {
            assert_eq!(members.get(&member[..]), Some(score), "{key} {member:?}");
        }
        assert!(size > 0, "an empty sorted set is deleted");
        Some(members)
    }
}

fn argv(args: &[&str]) -> Vec<Bytes> {
    args.iter()
        .map(|a| Bytes::copy_from_slice(a.as_bytes()))
        .collect()
}

fn bulk(s: &str) -> Frame {
    Frame::Bulk(Bytes::copy_from_slice(s.as_bytes()))
}

fn error(s: &str) -> Frame {
    Frame::error(s.to_string())
}

fn int(n: i64) -> Frame {
    Frame::Integer(n)
}

fn members(names: &[&str]) -> Frame {
    Frame::Array(names.iter().map(|n| bulk(n)).collect())
}

fn pairs(items: &[(&str, f64)]) -> Frame {
    Frame::Pairs(
        items
            .iter()
            .map(|(m, s)| (bulk(m), Frame::Double(*s)))
            .collect(),
    )
}

const SYNTAX: &str = "ERR syntax error";
const NOT_FLOAT: &str = "ERR value is not a valid float";
const NOT_INTEGER: &str = "ERR value is not an integer or out of range";

#[test]
fn zadd_options_follow_redis() {
    let mut r = Replica::new();
    assert_eq!(
        r.run(&["ZADD", "z", "10", "x", "20", "y", "30", "z"]),
        int(3)
    );
    assert_eq!(r.run(&["ZADD", "z", "1", "y"]), int(0));
    assert_eq!(
        r.run(&["ZRANGE", "z", "0", "-1"]),
        members(&["y", "x", "z"])
    );
    assert_eq!(r.run(&["ZADD", "z", "XX", "5", "new"]), int(0));
    assert_eq!(r.run(&["ZADD", "none", "XX", "5", "new"]), int(0));
    assert_eq!(r.run(&["EXISTS", "none"]), int(0));
    assert_eq!(r.run(&["ZADD", "z", "NX", "99", "x", "7", "w"]), int(1));
    assert_eq!(r.run(&["ZSCORE", "z", "x"]), Frame::Double(10.0));
    assert_eq!(
        r.run(&["ZADD", "z", "GT", "CH", "5", "x", "50", "z"]),
        int(1)
    );
    assert_eq!(
        r.run(&["ZADD", "z", "LT", "CH", "5", "x", "60", "z"]),
        int(1)
    );
    assert_eq!(
        r.run(&["ZADD", "z", "CH", "5", "x", "60", "z", "0", "v"]),
        int(2)
    );
    assert_eq!(
        r.run(&["ZADD", "z", "INCR", "2.5", "x"]),
        Frame::Double(7.5)
    );
    assert_eq!(r.run(&["ZADD", "z", "GT", "INCR", "-1", "x"]), Frame::Null);
    assert_eq!(
        r.run(&["ZADD", "z", "XX", "INCR", "1", "nope"]),
        Frame::Null
    );
    assert_eq!(r.run(&["ZINCRBY", "z", "-7.5", "x"]), Frame::Double(0.0));
    assert_eq!(r.run(&["ZINCRBY", "fresh", "3", "m"]), Frame::Double(3.0));
    for (cmd, e) in [
        (
            &["ZADD", "z", "XX", "NX", "1", "a"][..],
            "ERR XX and NX options at the same time are not compatible",
        ),
        (
            &["ZADD", "z", "GT", "LT", "1", "a"],
            "ERR GT, LT, and/or NX options at the same time are not compatible",
        ),
        (
            &["ZADD", "z", "NX", "GT", "1", "a"],
            "ERR GT, LT, and/or NX options at the same time are not compatible",
        ),
        (
            &["ZADD", "z", "INCR", "1", "a", "2", "b"],
            "ERR INCR option supports a single increment-element pair",
        ),
        (&["ZADD", "z", "1", "a", "2"], SYNTAX),
        (&["ZADD", "z", "nan", "a"], NOT_FLOAT),
        (&["ZADD", "z", "", "a"], NOT_FLOAT),
        (&["ZADD", "z", "1", "a", "2", "b", "3.x", "c"], NOT_FLOAT),
        (&["ZINCRBY", "z", "nx", "a"], SYNTAX),
    ] {
        assert_eq!(r.run(cmd), error(e), "{cmd:?}");
    }
    // An error changes nothing.
    assert_eq!(r.run(&["ZSCORE", "z", "a"]), Frame::Null);
    assert_eq!(
        r.run(&["ZINCRBY", "inf", "+inf", "m"]),
        Frame::Double(f64::INFINITY)
    );
    assert_eq!(
        r.run(&["ZINCRBY", "inf", "-inf", "m"]),
        error("ERR resulting score is not a number (NaN)")
    );
    assert_eq!(r.run(&["ZADD", "inf", "LT", "INCR", "1", "m"]), Frame::Null);
    assert_eq!(r.run(&["ZADD", "neg", "-0", "m"]), int(1));
    assert_eq!(r.run(&["ZSCORE", "neg", "m"]), Frame::Double(0.0));
    assert_eq!(r.run(&["SET", "s", "v"]), Frame::ok());
    assert_eq!(
        r.run(&["ZADD", "s", "1", "a"]),
        error(crate::reply::WRONGTYPE)
    );
    assert_eq!(r.run(&["ZADD", "s", "x", "a"]), error(NOT_FLOAT));
    r.stored("z").unwrap();
}

#[test]
fn zadd_keeps_the_expiry_and_replaces_an_expired_value() {
    let mut r = Replica::new();
    r.run(&["ZADD", "z", "1", "a", "2", "b"]);
    assert_eq!(r.run(&["PEXPIREAT", "z", "5000"]), int(1));
    r.run(&["ZADD", "z", "3", "c"]);
    assert_eq!(r.run(&["PEXPIRETIME", "z"]), int(5000));
    // Once expired, a new sorted set of the same name starts empty.
    assert_eq!(r.run(&["PEXPIREAT", "z", "1"]), int(1));
    assert_eq!(r.run(&["ZADD", "z", "9", "n"]), int(1));
    assert_eq!(r.run(&["ZRANGE", "z", "0", "-1"]), members(&["n"]));
    assert_eq!(r.stored("z").unwrap().len(), 1);
}

/// Regression: `EXPIRE`-family commands and `PERSIST` rewrote the key's
/// record as a new value, which dropped a sorted set's members.
#[test]
fn expire_and_persist_keep_a_sorted_sets_members() {
    let mut r = Replica::new();
    r.run(&["ZADD", "z", "1", "a", "2", "b"]);
    assert_eq!(r.run(&["PEXPIRE", "z", "100000"]), int(1));
    assert_eq!(r.stored("z").unwrap().len(), 2);
    assert_eq!(r.run(&["PERSIST", "z"]), int(1));
    assert_eq!(r.stored("z").unwrap().len(), 2);
    assert_eq!(r.run(&["ZRANGE", "z", "0", "-1"]), members(&["a", "b"]));
}

#[test]
fn zrem_zcard_zscore_zmscore() {
    let mut r = Replica::new();
    r.run(&["ZADD", "z", "1", "a", "2", "b", "3", "c"]);
    assert_eq!(r.run(&["ZCARD", "z"]), int(3));
    assert_eq!(r.run(&["ZCARD", "nope"]), int(0));
    assert_eq!(r.run(&["ZREM", "z", "a", "x", "a"]), int(1));
    assert_eq!(
        r.run(&["ZMSCORE", "z", "b", "x", "c"]),
        Frame::Array(vec![Frame::Double(2.0), Frame::Null, Frame::Double(3.0)])
    );
    assert_eq!(
        r.run(&["ZMSCORE", "nope", "b"]),
        Frame::Array(vec![Frame::Null])
    );
    assert_eq!(r.run(&["ZREM", "z", "b", "c", "d"]), int(2));
    assert_eq!(r.run(&["EXISTS", "z"]), int(0));
    assert_eq!(r.state.counts.keys, 0);
    assert!(r.kv.map.is_empty(), "{:?}", r.kv.map);
}

fn abc(r: &mut Replica) {
    r.run(&[
        "ZADD", "z", "1", "a", "2", "b", "3", "c", "4", "d", "5", "e", "6", "f", "7", "g",
    ]);
}

#[test]
fn ranks_and_rank_ranges_cross_walk_chunks() {
    let mut r = Replica::new();
    abc(&mut r);
    for (i, m) in ["a", "b", "c", "d", "e", "f", "g"].iter().enumerate() {
        assert_eq!(r.run(&["ZRANK", "z", m]), int(i as i64));
        assert_eq!(r.run(&["ZREVRANK", "z", m]), int(6 - i as i64));
    }
    assert_eq!(r.run(&["ZRANK", "z", "x"]), Frame::Null);
    assert_eq!(r.run(&["ZRANK", "x", "x"]), Frame::Null);
    assert_eq!(
        r.run(&["ZRANGE", "z", "0", "-1"]),
        members(&["a", "b", "c", "d", "e", "f", "g"])
    );
    assert_eq!(
        r.run(&["ZRANGE", "z", "1", "2", "WITHSCORES"]),
        pairs(&[("b", 2.0), ("c", 3.0)])
    );
    assert_eq!(r.run(&["ZRANGE", "z", "-2", "-1"]), members(&["f", "g"]));
    assert_eq!(r.run(&["ZRANGE", "z", "5", "100"]), members(&["f", "g"]));
    assert_eq!(r.run(&["ZRANGE", "z", "3", "1"]), members(&[]));
    assert_eq!(r.run(&["ZREVRANGE", "z", "0", "1"]), members(&["g", "f"]));
    assert_eq!(
        r.run(&["ZRANGE", "z", "0", "1", "REV"]),
        members(&["g", "f"])
    );
    assert_eq!(
        r.run(&["ZREVRANGE", "z", "5", "-1", "WITHSCORES"]),
        pairs(&[("b", 2.0), ("a", 1.0)])
    );
    assert_eq!(r.run(&["ZRANGE", "nope", "0", "-1"]), members(&[]));
    assert_eq!(
        r.run(&["ZRANGE", "z", "0", "1", "LIMIT", "0", "1"]),
        error(
            "ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX"
        )
    );
    assert_eq!(r.run(&["ZRANGE", "z", "a", "1"]), error(NOT_INTEGER));
    assert_eq!(
        r.run(&["ZRANGE", "z", "0", "1", "REV", "REV"]),
        error(SYNTAX)
    );
    assert_eq!(r.run(&["ZREVRANGE", "z", "0", "1", "REV"]), error(SYNTAX));
}

#[test]
fn score_ranges_follow_redis() {
    let mut r = Replica::new();
    abc(&mut r);
    assert_eq!(
        r.run(&["ZRANGEBYSCORE", "z", "2", "4"]),
        members(&["b", "c", "d"])
    );
    assert_eq!(r.run(&["ZRANGEBYSCORE", "z", "(2", "(4"]), members(&["c"]));
    assert_eq!(
        r.run(&["ZRANGEBYSCORE", "z", "-inf", "+inf", "LIMIT", "2", "3"]),
        members(&["c", "d", "e"])
    );
    assert_eq!(
        r.run(&["ZRANGEBYSCORE", "z", "-inf", "+inf", "LIMIT", "5", "-1"]),
        members(&["f", "g"])
    );
    assert_eq!(
        r.run(&["ZRANGEBYSCORE", "z", "-inf", "+inf", "LIMIT", "-1", "2"]),
        members(&[])
    );
    assert_eq!(
        r.run(&["ZRANGEBYSCORE", "z", "-inf", "+inf", "LIMIT", "1", "0"]),
        members(&[])
    );
    assert_eq!(
        r.run(&["ZREVRANGEBYSCORE", "z", "4", "2", "WITHSCORES"]),
        pairs(&[("d", 4.0), ("c", 3.0), ("b", 2.0)])
    );
    assert_eq!(
        r.run(&["ZREVRANGEBYSCORE", "z", "(4", "2", "LIMIT", "1", "5"]),
        members(&["b"])
    );
    assert_eq!(
        r.run(&["ZRANGE", "z", "(6", "+inf", "BYSCORE"]),
        members(&["g"])
    );
    assert_eq!(
        r.run(&["ZRANGE", "z", "+inf", "(6", "BYSCORE", "REV", "WITHSCORES"]),
        pairs(&[("g", 7.0)])
    );
    assert_eq!(r.run(&["ZRANGEBYSCORE", "z", "4", "2"]), members(&[]));
    assert_eq!(r.run(&["ZCOUNT", "z", "(1", "3"]), int(2));
    assert_eq!(r.run(&["ZCOUNT", "z", "-inf", "+inf"]), int(7));
    assert_eq!(r.run(&["ZCOUNT", "z", "(-inf", "(+inf"]), int(7));
    assert_eq!(r.run(&["ZCOUNT", "nope", "1", "2"]), int(0));
    for cmd in [
        &["ZRANGEBYSCORE", "z", "str", "1"][..],
        &["ZRANGEBYSCORE", "z", "1", "NaN"],
        &["ZCOUNT", "z", "1", "x"],
        &["ZREMRANGEBYSCORE", "z", "(", "x"],
    ] {
        assert_eq!(
            r.run(cmd),
            error("ERR min or max is not a float"),
            "{cmd:?}"
        );
    }
    assert_eq!(
        r.run(&["ZRANGEBYSCORE", "z", "1", "2", "BYSCORE"]),
        error(SYNTAX)
    );
    assert_eq!(
        r.run(&["ZRANGEBYSCORE", "z", "1", "2", "LIMIT", "1"]),
        error(SYNTAX)
    );
}

#[test]
fn lex_ranges_follow_redis() {
    let mut r = Replica::new();
    r.run(&[
        "ZADD", "l", "0", "alpha", "0", "bar", "0", "cool", "0", "down", "0", "elephant", "0",
        "foo", "0", "great", "0", "hill", "0", "omega",
    ]);
    assert_eq!(
        r.run(&["ZRANGEBYLEX", "l", "-", "[cool"]),
        members(&["alpha", "bar", "cool"])
    );
    assert_eq!(
        r.run(&["ZRANGEBYLEX", "l", "[bar", "(down"]),
        members(&["bar", "cool"])
    );
    assert_eq!(
        r.run(&["ZRANGEBYLEX", "l", "(great", "+"]),
        members(&["hill", "omega"])
    );
    assert_eq!(
        r.run(&["ZREVRANGEBYLEX", "l", "[elez", "[cool"]),
        members(&["elephant", "down", "cool"])
    );
    assert_eq!(
        r.run(&["ZREVRANGEBYLEX", "l", "+", "-", "LIMIT", "1", "2"]),
        members(&["hill", "great"])
    );
    assert_eq!(
        r.run(&["ZRANGE", "l", "[d", "[f", "BYLEX", "LIMIT", "1", "-1"]),
        members(&["elephant"])
    );
    assert_eq!(r.run(&["ZLEXCOUNT", "l", "-", "+"]), int(9));
    assert_eq!(r.run(&["ZLEXCOUNT", "l", "[b", "(d"]), int(2));
    assert_eq!(r.run(&["ZLEXCOUNT", "l", "+", "-"]), int(0));
    assert_eq!(r.run(&["ZRANGEBYLEX", "l", "[z", "[a"]), members(&[]));
    for cmd in [
        &["ZRANGEBYLEX", "l", "a", "[b"][..],
        &["ZLEXCOUNT", "l", "[a", "+x"],
        &["ZREMRANGEBYLEX", "l", "-x", "+"],
    ] {
        assert_eq!(
            r.run(cmd),
            error("ERR min or max not valid string range item"),
            "{cmd:?}"
        );
    }
    assert_eq!(
        r.run(&["ZRANGEBYLEX", "l", "-", "+", "WITHSCORES"]),
        error("ERR syntax error, WITHSCORES not supported in combination with BYLEX")
    );
    assert_eq!(r.run(&["ZREMRANGEBYLEX", "l", "[alpha", "(cool"]), int(2));
    assert_eq!(r.run(&["ZREMRANGEBYLEX", "l", "-", "+"]), int(7));
    assert_eq!(r.run(&["EXISTS", "l"]), int(0));
}

#[test]
fn zremrange_by_rank_and_score() {
    let mut r = Replica::new();
    abc(&mut r);
    assert_eq!(r.run(&["ZREMRANGEBYRANK", "z", "-2", "-1"]), int(2));
    assert_eq!(r.run(&["ZREMRANGEBYRANK", "z", "3", "1"]), int(0));
    assert_eq!(r.run(&["ZREMRANGEBYSCORE", "z", "(1", "3"]), int(2));
    assert_eq!(
        r.run(&["ZRANGE", "z", "0", "-1"]),
        members(&["a", "d", "e"])
    );
    assert_eq!(
        r.run(&["ZREMRANGEBYRANK", "z", "x", "1"]),
        error(NOT_INTEGER)
    );
    assert_eq!(r.run(&["ZREMRANGEBYRANK", "nope", "0", "1"]), int(0));
    assert_eq!(r.run(&["ZREMRANGEBYRANK", "z", "0", "-1"]), int(3));
    assert_eq!(r.run(&["EXISTS", "z"]), int(0));
}

#[test]
fn zrangestore_stores_or_deletes() {
    let mut r = Replica::new();
    abc(&mut r);
    r.run(&["SET", "dst", "string"]);
    assert_eq!(r.run(&["ZRANGESTORE", "dst", "z", "0", "1"]), int(2));
    assert_eq!(
        r.run(&["ZRANGE", "dst", "0", "-1", "WITHSCORES"]),
        pairs(&[("a", 1.0), ("b", 2.0)])
    );
    assert_eq!(
        r.run(&[
            "ZRANGESTORE",
            "dst",
            "z",
            "5",
            "+inf",
            "BYSCORE",
            "LIMIT",
            "1",
            "1"
        ]),
        int(1)
    );
    assert_eq!(r.run(&["ZRANGE", "dst", "0", "-1"]), members(&["f"]));
    assert_eq!(
        r.run(&["ZRANGESTORE", "dst", "z", "[b", "[c", "BYLEX", "REV"]),
        int(0)
    );
    assert_eq!(
        r.run(&["ZRANGESTORE", "dst", "z", "[c", "[b", "BYLEX", "REV"]),
        int(2)
    );
    assert_eq!(r.run(&["ZRANGESTORE", "dst", "nope", "0", "-1"]), int(0));
    assert_eq!(r.run(&["EXISTS", "dst"]), int(0));
    assert_eq!(
        r.run(&["ZRANGESTORE", "dst", "z", "0", "-1", "WITHSCORES"]),
        error(SYNTAX)
    );
    assert_eq!(r.run(&["ZRANGESTORE", "z", "z", "1", "2"]), int(2));
    assert_eq!(r.run(&["ZRANGE", "z", "0", "-1"]), members(&["b", "c"]));
    r.stored("z").unwrap();
}

#[test]
fn pops_follow_redis() {
    let mut r = Replica::new();
    r.run(&["ZADD", "z", "0", "a", "1", "b", "2", "c", "3", "d"]);
    assert_eq!(
        r.run(&["ZPOPMIN", "z"]),
        Frame::Array(vec![bulk("a"), Frame::Double(0.0)])
    );
    assert_eq!(
        r.run(&["ZPOPMAX", "z", "2"]),
        pairs(&[("d", 3.0), ("c", 2.0)])
    );
    assert_eq!(r.run(&["ZPOPMAX", "z", "0"]), Frame::Array(vec![]));
    assert_eq!(
        r.run(&["ZPOPMIN", "z", "-1"]),
        error("ERR value is out of range, must be positive")
    );
    assert_eq!(r.run(&["ZPOPMIN", "z", "1", "2"]), error(SYNTAX));
    assert_eq!(r.run(&["ZPOPMIN", "z", "10"]), pairs(&[("b", 1.0)]));
    assert_eq!(r.run(&["EXISTS", "z"]), int(0));
    assert_eq!(r.run(&["ZPOPMIN", "z"]), Frame::Array(vec![]));
    assert_eq!(r.run(&["ZPOPMIN", "z", "3"]), Frame::Array(vec![]));
    r.run(&["SET", "s", "v"]);
    assert_eq!(
        r.run(&["ZPOPMIN", "s", "0"]),
        error(crate::reply::WRONGTYPE)
    );

    r.run(&["ZADD", "z2", "1", "a", "2", "b", "3", "c"]);
    assert_eq!(
        r.run(&["ZMPOP", "2", "nope", "z2", "MIN"]),
        Frame::Array(vec![
            bulk("z2"),
            Frame::Array(vec![Frame::Array(vec![bulk("a"), Frame::Double(1.0)])])
        ])
    );
    assert_eq!(
        r.run(&["ZMPOP", "1", "z2", "MAX", "COUNT", "10"]),
        Frame::Array(vec![
            bulk("z2"),
            Frame::Array(vec![
                Frame::Array(vec![bulk("c"), Frame::Double(3.0)]),
                Frame::Array(vec![bulk("b"), Frame::Double(2.0)]),
            ])
        ])
    );
    assert_eq!(r.run(&["ZMPOP", "1", "z2", "MIN"]), Frame::NullArray);
    assert_eq!(
        r.run(&["ZMPOP", "2", "nope", "s", "MIN"]),
        error(crate::reply::WRONGTYPE)
    );
    for (cmd, e) in [
        (
            &["ZMPOP", "0", "z", "MIN"][..],
            "ERR numkeys should be greater than 0",
        ),
        (
            &["ZMPOP", "a", "z", "MIN"],
            "ERR numkeys should be greater than 0",
        ),
        (&["ZMPOP", "1", "z", "bad"], SYNTAX),
        (&["ZMPOP", "1", "z", "MAX", "MIN"], SYNTAX),
        (&["ZMPOP", "1", "z", "COUNT"], SYNTAX),
        (&["ZMPOP", "5", "z", "MIN"], SYNTAX),
        (
            &["ZMPOP", "1", "z", "MAX", "COUNT", "1", "COUNT", "2"],
            SYNTAX,
        ),
        (
            &["ZMPOP", "1", "z", "MIN", "COUNT", "0"],
            "ERR count should be greater than 0",
        ),
        (
            &["ZMPOP", "1", "z", "MIN", "COUNT", "a"],
            "ERR count should be greater than 0",
        ),
        (&["ZMPOP", "9223372036854775807", "z", "MIN"], SYNTAX),
    ] {
        assert_eq!(r.run(cmd), error(e), "{cmd:?}");
    }
}

#[test]
fn set_operations_follow_redis() {
    let mut r = Replica::new();
    r.run(&["ZADD", "a", "1", "x", "2", "y", "3", "z"]);
    r.run(&["ZADD", "b", "10", "y", "20", "z", "30", "w"]);
    assert_eq!(r.run(&["ZUNIONSTORE", "u", "2", "a", "b"]), int(4));
    assert_eq!(
        r.run(&["ZRANGE", "u", "0", "-1", "WITHSCORES"]),
        pairs(&[("x", 1.0), ("y", 12.0), ("z", 23.0), ("w", 30.0)])
    );
    assert_eq!(
        r.run(&[
            "ZUNION",
            "2",
            "a",
            "b",
            "WEIGHTS",
            "2",
            "3",
            "AGGREGATE",
            "MAX",
            "WITHSCORES"
        ]),
        pairs(&[("x", 2.0), ("y", 30.0), ("z", 60.0), ("w", 90.0)])
    );
    assert_eq!(
        r.run(&["ZINTER", "2", "a", "b", "AGGREGATE", "MIN", "WITHSCORES"]),
        pairs(&[("y", 2.0), ("z", 3.0)])
    );
    assert_eq!(r.run(&["ZINTERSTORE", "i", "3", "a", "b", "nope"]), int(0));
    assert_eq!(r.run(&["ZINTERCARD", "2", "a", "b"]), int(2));
    assert_eq!(r.run(&["ZINTERCARD", "2", "a", "b", "LIMIT", "1"]), int(1));
    assert_eq!(
        r.run(&["ZINTERCARD", "2", "a", "b", "LIMIT", "-1"]),
        error("ERR LIMIT can't be negative")
    );
    assert_eq!(
        r.run(&["ZDIFF", "2", "a", "b", "WITHSCORES"]),
        pairs(&[("x", 1.0)])
    );
    assert_eq!(r.run(&["ZDIFFSTORE", "d", "1", "a"]), int(3));
    assert_eq!(r.run(&["ZDIFF", "2", "a", "a"]), members(&[]));
    assert_eq!(
        r.run(&["ZUNION", "2", "a", "b", "WEIGHTS", "1", "nan"]),
        error("ERR weight value is not a float")
    );
    assert_eq!(
        r.run(&["ZUNION", "2", "a", "b", "WEIGHTS", "1"]),
        error(SYNTAX)
    );
    assert_eq!(
        r.run(&["ZUNION", "2", "a", "b", "AGGREGATE", "avg"]),
        error(SYNTAX)
    );
    assert_eq!(
        r.run(&["ZDIFF", "2", "a", "b", "AGGREGATE", "MIN"]),
        error(SYNTAX)
    );
    assert_eq!(
        r.run(&["ZUNIONSTORE", "u", "2", "a", "b", "WITHSCORES"]),
        error(SYNTAX)
    );
    assert_eq!(r.run(&["ZUNION", "3", "a", "b"]), error(SYNTAX));
    assert_eq!(
        r.run(&["ZUNION", "0", "a"]),
        error("ERR at least 1 input key is needed for 'zunion' command")
    );
    assert_eq!(
        r.run(&["ZINTERSTORE", "d", "0", "a"]),
        error("ERR at least 1 input key is needed for 'zinterstore' command")
    );
    r.run(&["SET", "s", "v"]);
    assert_eq!(
        r.run(&["ZUNION", "2", "a", "s", "WEIGHTS", "x"]),
        error(crate::reply::WRONGTYPE)
    );
    // inf - inf sums to 0, and 0 * inf weighs 0.
    r.run(&["ZADD", "p", "+inf", "m"]);
    r.run(&["ZADD", "n", "-inf", "m"]);
    assert_eq!(
        r.run(&["ZUNION", "2", "p", "n", "WITHSCORES"]),
        pairs(&[("m", 0.0)])
    );
    assert_eq!(
        r.run(&["ZUNION", "1", "p", "WEIGHTS", "0", "WITHSCORES"]),
        pairs(&[("m", 0.0)])
    );
    // The destination may be an input.
    assert_eq!(r.run(&["ZUNIONSTORE", "a", "2", "a", "b"]), int(4));
    assert_eq!(r.run(&["ZSCORE", "a", "z"]), Frame::Double(23.0));
    assert_eq!(r.run(&["ZINTERSTORE", "a", "2", "a", "nope"]), int(0));
    assert_eq!(r.run(&["EXISTS", "a"]), int(0));
    r.stored("u").unwrap();
}

#[test]
fn plain_sets_are_inputs_with_score_one() {
    let mut r = Replica::new();
    r.run(&["ZADD", "z", "5", "a", "7", "b"]);
    // A plain set, made by the sets family.
    r.run(&["SADD", "s", "a", "c"]);
    assert_eq!(
        r.run(&["ZUNION", "2", "z", "s", "WEIGHTS", "1", "3", "WITHSCORES"]),
        pairs(&[("c", 3.0), ("b", 7.0), ("a", 8.0)])
    );
    assert_eq!(
        r.run(&["ZINTER", "2", "s", "z", "WITHSCORES"]),
        pairs(&[("a", 6.0)])
    );
    assert_eq!(
        r.run(&["ZDIFF", "2", "s", "z", "WITHSCORES"]),
        pairs(&[("c", 1.0)])
    );
    assert_eq!(
        r.run(&["ZRANGE", "s", "0", "-1"]),
        error(crate::reply::WRONGTYPE)
    );
}

#[test]
fn zrandmember_follows_redis() {
    let mut r = Replica::new();
    let all = ["a", "b", "c", "d", "e", "f", "g"];
    abc(&mut r);
    let Frame::Bulk(one) = r.run(&["ZRANDMEMBER", "z"]) else {
        panic!()
    };
    assert!(all.contains(&std::str::from_utf8(&one).unwrap()));
    assert_eq!(r.run(&["ZRANDMEMBER", "nope"]), Frame::Null);
    assert_eq!(r.run(&["ZRANDMEMBER", "nope", "5"]), members(&[]));
    assert_eq!(r.run(&["ZRANDMEMBER", "z", "0"]), members(&[]));
    for _ in 0..20 {
        let Frame::Array(got) = r.run(&["ZRANDMEMBER", "z", "4"]) else {
            panic!()
        };
        let names: BTreeSet<Vec<u8>> = got
            .iter()
            .map(|f| match f {
                Frame::Bulk(b) => b.to_vec(),
                _ => panic!(),
            })
            .collect();
        assert_eq!(names.len(), 4, "distinct");
        let Frame::Array(rep) = r.run(&["ZRANDMEMBER", "z", "-20"]) else {
            panic!()
        };
        assert_eq!(rep.len(), 20);
        let Frame::Pairs(p) = r.run(&["ZRANDMEMBER", "z", "-3", "WITHSCORES"]) else {
            panic!()
        };
        for (m, s) in p {
            let (Frame::Bulk(m), Frame::Double(s)) = (m, s) else {
                panic!()
            };
            let i = all.iter().position(|x| x.as_bytes() == &m[..]).unwrap();
            assert_eq!(s, (i + 1) as f64);
        }
    }
    assert_eq!(r.run(&["ZRANDMEMBER", "z", "100"]), members(&all));
    assert_eq!(r.run(&["ZRANDMEMBER", "z", "-9223372036854775808"]), error("ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807"));
    assert_eq!(
        r.run(&["ZRANDMEMBER", "z", "-9223372036854770000", "WITHSCORES"]),
        error("ERR value is out of range")
    );
    assert_eq!(r.run(&["ZRANDMEMBER", "z", "1", "SCORES"]), error(SYNTAX));
    assert_eq!(r.run(&["ZRANDMEMBER", "z", "x"]), error(NOT_INTEGER));
}

#[test]
fn zscan_returns_members_with_scores() {
    let mut r = Replica::new();
    abc(&mut r);
    let mut seen = BTreeMap::new();
    let mut cursor = "0".to_string();
    loop {
        let Frame::Array(reply) = r.run(&["ZSCAN", "z", &cursor, "COUNT", "2"]) else {
            panic!()
        };
        let [Frame::Bulk(next), Frame::Array(items)] = &reply[..] else {
            panic!()
        };
        for pair in items.chunks(2) {
            let [Frame::Bulk(m), Frame::Bulk(s)] = pair else {
                panic!()
            };
            seen.insert(m.to_vec(), s.to_vec());
        }
        cursor = String::from_utf8(next.to_vec()).unwrap();
        if cursor == "0" {
            break;
        }
    }
    assert_eq!(seen.len(), 7);
    assert_eq!(seen[&b"g"[..]], b"7".to_vec());
    let Frame::Array(m) = r.run(&["ZSCAN", "z", "0", "MATCH", "[ab]", "COUNT", "100"]) else {
        panic!()
    };
    assert_eq!(
        m[1],
        Frame::Array(vec![bulk("a"), bulk("1"), bulk("b"), bulk("2")])
    );
    assert_eq!(
        r.run(&["ZSCAN", "nope", "0", "COUNT", "0"]),
        Frame::Array(vec![bulk("0"), members(&[])])
    );
    assert_eq!(r.run(&["ZSCAN", "z", "0", "COUNT", "0"]), error(SYNTAX));
    assert_eq!(r.run(&["ZSCAN", "z", "0", "TYPE", "zset"]), error(SYNTAX));
    assert_eq!(r.run(&["ZSCAN", "z", "-1"]), error("ERR invalid cursor"));
}

#[test]
fn writes_past_the_bound_are_refused_whole() {
    let mut r = Replica::new();
    let n = super::MAX_WRITE_MEMBERS + 1;
    let mut cmd = vec!["ZADD".to_string(), "big".to_string()];
    for i in 0..n {
        cmd.push("1".into());
        cmd.push(format!("m{i}"));
    }
    let cmd: Vec<Bytes> = cmd.into_iter().map(Bytes::from).collect();
    assert_eq!(r.apply(vec![Write::Command(cmd)]), vec![int(n as i64)]);
    let refused = error(&format!("ERR this command would write or remove more than {} sorted set members; Seshat bounds the work of one write (split it)", super::MAX_WRITE_MEMBERS));
    assert_eq!(r.run(&["ZREMRANGEBYRANK", "big", "0", "-1"]), refused);
    assert_eq!(r.run(&["ZREMRANGEBYSCORE", "big", "-inf", "+inf"]), refused);
    assert_eq!(r.run(&["ZPOPMIN", "big", "1000000"]), refused);
    assert_eq!(r.run(&["ZUNIONSTORE", "copy", "1", "big"]), refused);
    assert_eq!(r.run(&["ZCARD", "big"]), int(n as i64));
    assert_eq!(
        r.run(&["ZREMRANGEBYRANK", "big", "0", "-2"]),
        int(n as i64 - 1)
    );
    assert_eq!(r.run(&["DEL", "big"]), int(1));
    assert!(r.kv.map.is_empty());
}

// ------------------------------------------------------------ model test

/// A command of the model test.
#[derive(Debug, Clone)]
enum Op {
    Zadd {
        key: usize,
        flags: Vec<&'static str>,
        pairs: Vec<(f64, usize)>,
    },
    Zincrby {
        key: usize,
        by: f64,
        member: usize,
    },
    Zrem {
        key: usize,
        members: Vec<usize>,
    },
    Zscore {
        key: usize,
        member: usize,
    },
    Zrank {
        key: usize,
        member: usize,
        rev: bool,
    },
    Zcard {
        key: usize,
    },
    Zcount {
        key: usize,
        range: (f64, bool, f64, bool),
    },
    Zrange {
        key: usize,
        start: i64,
        stop: i64,
        rev: bool,
        withscores: bool,
    },
    ByScore {
        key: usize,
        range: (f64, bool, f64, bool),
        rev: bool,
        limit: Option<(i64, i64)>,
        withscores: bool,
    },
    ByLex {
        key: usize,
        min: String,
        max: String,
        rev: bool,
    },
    Pop {
        key: usize,
        max: bool,
        count: Option<u64>,
    },
    RemRank {
        key: usize,
        start: i64,
        stop: i64,
    },
    RemScore {
        key: usize,
        range: (f64, bool, f64, bool),
    },
    Store {
        op: &'static str,
        dst: usize,
        srcs: Vec<usize>,
        agg: &'static str,
    },
    Del {
        key: usize,
    },
    Expire {
        key: usize,
    },
    Persist {
        key: usize,
    },
}

const KEYS: [&str; 3] = ["k0", "k1", "k2"];
const MEMBERS: [&str; 8] = ["a", "ab", "b", "ba", "c", "d", "e", "f"];

fn score_text(s: f64) -> String {
    if s == f64::INFINITY {
        "+inf".into()
    } else if s == f64::NEG_INFINITY {
        "-inf".into()
    } else {
        s.to_string()
    }
}

fn range_args(r: (f64, bool, f64, bool)) -> [String; 2] {
    let end = |v: f64, ex: bool| format!("{}{}", if ex { "(" } else { "" }, score_text(v));
    [end(r.0, r.1), end(r.2, r.3)]
}

impl Op {
    fn argv(&self) -> Vec<String> {
        let k = |i: &usize| KEYS[*i].to_string();
        let m = |i: &usize| MEMBERS[*i].to_string();
        let mut v: Vec<String> = match self {
            Op::Zadd { key, flags, pairs } => {
                let mut v = vec!["ZADD".into(), k(key)];
                v.extend(flags.iter().map(|f| f.to_string()));
                for (s, mem) in pairs {
                    v.push(score_text(*s));
                    v.push(m(mem));
                }
                v
            }
            Op::Zincrby { key, by, member } => {
                vec!["ZINCRBY".into(), k(key), score_text(*by), m(member)]
            }
            Op::Zrem { key, members } => {
                let mut v = vec!["ZREM".into(), k(key)];
                v.extend(members.iter().map(m));
                v
            }
            Op::Zscore { key, member } => vec!["ZSCORE".into(), k(key), m(member)],
            Op::Zrank { key, member, rev } => vec![
                if *rev { "ZREVRANK" } else { "ZRANK" }.into(),
                k(key),
                m(member),
            ],
            Op::Zcard { key } => vec!["ZCARD".into(), k(key)],
            Op::Zcount { key, range } => {
                let [a, b] = range_args(*range);
                vec!["ZCOUNT".into(), k(key), a, b]
            }
            Op::Zrange {
                key,
                start,
                stop,
                rev,
                withscores,
            } => {
                let mut v = vec!["ZRANGE".into(), k(key), start.to_string(), stop.to_string()];
                if *rev {
                    v.push("REV".into());
                }
                if *withscores {
                    v.push("WITHSCORES".into());
                }
                v
            }
            Op::ByScore {
                key,
                range,
                rev,
                limit,
                withscores,
            } => {
                let [a, b] = range_args(*range);
                let (a, b) = if *rev { (b, a) } else { (a, b) };
                let mut v = vec![
                    if *rev {
                        "ZREVRANGEBYSCORE"
                    } else {
                        "ZRANGEBYSCORE"
                    }
                    .into(),
                    k(key),
                    a,
                    b,
                ];
                if let Some((o, c)) = limit {
                    v.extend(["LIMIT".into(), o.to_string(), c.to_string()]);
                }
                if *withscores {
                    v.push("WITHSCORES".into());
                }
                v
            }
            Op::ByLex { key, min, max, rev } => {
                if *rev {
                    vec![
                        "ZRANGE".into(),
                        k(key),
                        max.clone(),
                        min.clone(),
                        "BYLEX".into(),
                        "REV".into(),
                    ]
                } else {
                    vec![
                        "ZRANGE".into(),
                        k(key),
                        min.clone(),
                        max.clone(),
                        "BYLEX".into(),
                    ]
                }
            }
            Op::Pop { key, max, count } => {
                let mut v = vec![if *max { "ZPOPMAX" } else { "ZPOPMIN" }.into(), k(key)];
                v.extend(count.map(|c| c.to_string()));
                v
            }
            Op::RemRank { key, start, stop } => vec![
                "ZREMRANGEBYRANK".into(),
                k(key),
                start.to_string(),
                stop.to_string(),
            ],
            Op::RemScore { key, range } => {
                let [a, b] = range_args(*range);
                vec!["ZREMRANGEBYSCORE".into(), k(key), a, b]
            }
            Op::Store { op, dst, srcs, agg } => {
                let mut v = vec![op.to_string(), k(dst), srcs.len().to_string()];
                v.extend(srcs.iter().map(k));
                if *op != "ZDIFFSTORE" {
                    v.extend(["AGGREGATE".into(), agg.to_string()]);
                }
                v
            }
            Op::Del { key } => vec!["DEL".into(), k(key)],
            Op::Expire { key } => vec!["PEXPIRE".into(), k(key), "100000000".into()],
            Op::Persist { key } => vec!["PERSIST".into(), k(key)],
        };
        v.shrink_to_fit();
        v
    }
}

type Set = BTreeMap<Vec<u8>, f64>;

/// The model: plain maps of member → score, and which keys have an
/// expiry (never reached).
#[derive(Debug, Default, Clone)]
struct Model {
    sets: BTreeMap<usize, Set>,
    expiring: BTreeSet<usize>,
}

fn ordered(set: &Set) -> Vec<(Vec<u8>, f64)> {
    let mut v: Vec<(Vec<u8>, f64)> = set.iter().map(|(m, s)| (m.clone(), *s)).collect();
    v.sort_by(|a, b| a.1.total_cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
    v
}

fn in_range(s: f64, r: (f64, bool, f64, bool)) -> bool {
    let lo = if r.1 { s > r.0 } else { s >= r.0 };
    let hi = if r.3 { s < r.2 } else { s <= r.2 };
    lo && hi
}

fn reply(items: Vec<(Vec<u8>, f64)>, withscores: bool) -> Frame {
    if withscores && !items.is_empty() {
        Frame::Pairs(
            items
                .into_iter()
                .map(|(m, s)| (Frame::Bulk(m.into()), Frame::Double(s)))
                .collect(),
        )
    } else {
        Frame::Array(
            items
                .into_iter()
                .map(|(m, _)| Frame::Bulk(m.into()))
                .collect(),
        )
    }
}

/// Redis's rank normalization, restated.
fn model_ranks(start: i64, stop: i64, len: usize) -> Option<(usize, usize)> {
    let len = len as i64;
    let s = if start < 0 {
        (len + start).max(0)
    } else {
        start
    };
    let e = if stop < 0 {
        len + stop
    } else {
        stop.min(len - 1)
    };
    (s <= e && s < len).then_some((s as usize, e as usize))
}

fn lex_ok(m: &[u8], min: &str, max: &str) -> bool {
    let above = match min.as_bytes() {
        b"-" => true,
        b"+" => false,
        [b'[', rest @ ..] => m >= rest,
        [b'(', rest @ ..] => m > rest,
        _ => unreachable!(),
    };
    let below = match max.as_bytes() {
        b"+" => true,
        b"-" => false,
        [b'[', rest @ ..] => m <= rest,
        [b'(', rest @ ..] => m < rest,
        _ => unreachable!(),
    };
    above && below
}

impl Model {
    fn set(&mut self, key: usize) -> &mut Set {
        self.sets.entry(key).or_default()
    }

    fn tidy(&mut self) {
        self.sets.retain(|_, s| !s.is_empty());
        let sets = &self.sets;
        self.expiring.retain(|k| sets.contains_key(k));
    }

    fn apply(&mut self, op: &Op) -> Frame {
        let out = self.run(op);
        self.tidy();
        out
    }

    fn run(&mut self, op: &Op) -> Frame {
        let m = |i: &usize| MEMBERS[*i].as_bytes().to_vec();
        match op {
            Op::Zadd { key, flags, pairs } => {
                let has = |f: &str| flags.contains(&f);
                let (nx, xx, gt, lt, ch, incr) = (
                    has("NX"),
                    has("XX"),
                    has("GT"),
                    has("LT"),
                    has("CH"),
                    has("INCR"),
                );
                if nx && xx {
                    return error("ERR XX and NX options at the same time are not compatible");
                }
                if (nx && (gt || lt)) || (gt && lt) {
                    return error(
                        "ERR GT, LT, and/or NX options at the same time are not compatible",
                    );
                }
                if incr && pairs.len() > 1 {
                    return error("ERR INCR option supports a single increment-element pair");
                }
                let set = self.set(*key);
                let (mut added, mut changed, mut last) = (0, 0, None);
                for (s, mem) in pairs {
                    match set.get(&m(mem)).copied() {
                        None if xx => {}
                        None => {
                            set.insert(m(mem), *s);
                            added += 1;
                            last = Some(*s);
                        }
                        Some(_) if nx => {}
                        Some(cur) => {
                            let new = if incr { cur + s } else { *s };
                            if new.is_nan() {
                                return error("ERR resulting score is not a number (NaN)");
                            }
                            if (lt && new >= cur) || (gt && new <= cur) {
                                continue;
                            }
                            last = Some(new);
                            if new != cur {
                                set.insert(m(mem), new);
                                changed += 1;
                            }
                        }
                    }
                }
                if incr {
                    last.map_or(Frame::Null, Frame::Double)
                } else {
                    int(if ch { added + changed } else { added })
                }
            }
            Op::Zincrby { key, by, member } => self.run(&Op::Zadd {
                key: *key,
                flags: vec!["INCR"],
                pairs: vec![(*by, *member)],
            }),
            Op::Zrem { key, members } => {
                let set = self.set(*key);
                int(members
                    .iter()
                    .filter(|x| set.remove(&m(x)).is_some())
                    .count() as i64)
            }
            Op::Zscore { key, member } => self
                .set(*key)
                .get(&m(member))
                .map_or(Frame::Null, |s| Frame::Double(*s)),
            Op::Zrank { key, member, rev } => {
                let v = ordered(self.set(*key));
                match v.iter().position(|(x, _)| *x == m(member)) {
                    Some(i) if *rev => int((v.len() - 1 - i) as i64),
                    Some(i) => int(i as i64),
                    None => Frame::Null,
                }
            }
            Op::Zcard { key } => int(self.set(*key).len() as i64),
            Op::Zcount { key, range } => int(self
                .set(*key)
                .values()
                .filter(|s| in_range(**s, *range))
                .count() as i64),
            Op::Zrange {
                key,
                start,
                stop,
                rev,
                withscores,
            } => {
                let mut v = ordered(self.set(*key));
                if *rev {
                    v.reverse();
                }
                let Some((s, e)) = model_ranks(*start, *stop, v.len()) else {
                    return reply(vec![], *withscores);
                };
                reply(v[s..=e].to_vec(), *withscores)
            }
            Op::ByScore {
                key,
                range,
                rev,
                limit,
                withscores,
            } => {
                let mut v: Vec<_> = ordered(self.set(*key))
                    .into_iter()
                    .filter(|(_, s)| in_range(*s, *range))
                    .collect();
                if *rev {
                    v.reverse();
                }
                let v = match limit {
                    Some((o, _)) if *o < 0 => vec![],
                    Some((o, c)) => v
                        .into_iter()
                        .skip(*o as usize)
                        .take(if *c < 0 { usize::MAX } else { *c as usize })
                        .collect(),
                    None => v,
                };
                reply(v, *withscores)
            }
            Op::ByLex { key, min, max, rev } => {
                let mut v: Vec<_> = self
                    .set(*key)
                    .iter()
                    .filter(|(x, _)| lex_ok(x, min, max))
                    .map(|(x, s)| (x.clone(), *s))
                    .collect();
                if *rev {
                    v.reverse();
                }
                reply(v, false)
            }
            Op::Pop { key, max, count } => {
                let mut v = ordered(self.set(*key));
                if *max {
                    v.reverse();
                }
                let n = count.unwrap_or(1) as usize;
                let popped: Vec<_> = v.into_iter().take(n).collect();
                let set = self.set(*key);
                for (x, _) in &popped {
                    set.remove(x);
                }
                match count {
                    None => Frame::Array(
                        popped
                            .into_iter()
                            .flat_map(|(x, s)| [Frame::Bulk(x.into()), Frame::Double(s)])
                            .collect(),
                    ),
                    Some(_) => reply(popped, true),
                }
            }
            Op::RemRank { key, start, stop } => {
                let v = ordered(self.set(*key));
                let Some((s, e)) = model_ranks(*start, *stop, v.len()) else {
                    return int(0);
                };
                let set = self.set(*key);
                for (x, _) in &v[s..=e] {
                    set.remove(x);
                }
                int((e - s + 1) as i64)
            }
            Op::RemScore { key, range } => {
                let set = self.set(*key);
                let before = set.len();
                set.retain(|_, s| !in_range(*s, *range));
                int((before - set.len()) as i64)
            }
            Op::Store { op, dst, srcs, agg } => {
                let mut inputs: Vec<Set> = srcs
                    .iter()
                    .map(|k| self.sets.get(k).cloned().unwrap_or_default())
                    .collect();
                if *op != "ZDIFFSTORE" {
                    // Redis combines union and intersection inputs from the
                    // smallest (which matters for inf - inf); ties keep
                    // their order.
                    inputs.sort_by_key(|s| s.len());
                }
                let combine = |a: f64, b: f64| match *agg {
                    "SUM" => {
                        let s = a + b;
                        if s.is_nan() {
                            0.0
                        } else {
                            s
                        }
                    }
                    "MIN" => a.min(b),
                    _ => a.max(b),
                };
                let mut out = Set::new();
                match *op {
                    "ZUNIONSTORE" => {
                        for input in &inputs {
                            for (x, s) in input {
                                let v = out.get(x).map_or(*s, |a| combine(*a, *s));
                                out.insert(x.clone(), v);
                            }
                        }
                    }
                    "ZINTERSTORE" => {
                        if let Some((first, rest)) = inputs.split_first() {
                            for (x, s) in first {
                                if rest.iter().all(|r| r.contains_key(x)) {
                                    let v = rest.iter().fold(*s, |a, r| combine(a, r[x]));
                                    out.insert(x.clone(), v);
                                }
                            }
                        }
                    }
                    _ => {
                        if let Some((first, rest)) = inputs.split_first() {
                            for (x, s) in first {
                                if !rest.iter().any(|r| r.contains_key(x)) {
                                    out.insert(x.clone(), *s);
                                }
                            }
                        }
                    }
                }
                let n = out.len();
                self.sets.insert(*dst, out);
                self.expiring.remove(dst);
                int(n as i64)
            }
            Op::Del { key } => int(i64::from(
                self.sets.remove(key).is_some_and(|s| !s.is_empty()),
            )),
            Op::Expire { key } => {
                let exists = self.sets.get(key).is_some_and(|s| !s.is_empty());
                if exists {
                    self.expiring.insert(*key);
                }
                int(i64::from(exists))
            }
            Op::Persist { key } => int(i64::from(self.expiring.remove(key))),
        }
    }
}

fn arb_score() -> impl Strategy<Value = f64> {
    prop_oneof![
        8 => (-3i32..4).prop_map(f64::from),
        1 => Just(0.5),
        1 => Just(f64::INFINITY),
        1 => Just(f64::NEG_INFINITY),
    ]
}

fn arb_range() -> impl Strategy<Value = (f64, bool, f64, bool)> {
    (arb_score(), any::<bool>(), arb_score(), any::<bool>())
}

fn arb_lex() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("-".to_string()),
        Just("+".to_string()),
        (
            prop::sample::select(vec!["[", "("]),
            prop::sample::select(vec!["", "a", "ab", "b", "bb", "c", "f", "g"])
        )
            .prop_map(|(p, m)| format!("{p}{m}")),
    ]
}

fn arb_op() -> impl Strategy<Value = Op> {
    let key = 0usize..KEYS.len();
    let member = 0usize..MEMBERS.len();
    let flags = prop::sample::subsequence(vec!["NX", "XX", "GT", "LT", "CH", "INCR"], 0..3);
    prop_oneof![
        6 => (key.clone(), flags, prop::collection::vec((arb_score(), member.clone()), 1..4)).prop_map(|(key, flags, pairs)| Op::Zadd { key, flags, pairs }),
        2 => (key.clone(), arb_score(), member.clone()).prop_map(|(key, by, member)| Op::Zincrby { key, by, member }),
        2 => (key.clone(), prop::collection::vec(member.clone(), 1..3)).prop_map(|(key, members)| Op::Zrem { key, members }),
        1 => (key.clone(), member.clone()).prop_map(|(key, member)| Op::Zscore { key, member }),
        2 => (key.clone(), member.clone(), any::<bool>()).prop_map(|(key, member, rev)| Op::Zrank { key, member, rev }),
        1 => key.clone().prop_map(|key| Op::Zcard { key }),
        1 => (key.clone(), arb_range()).prop_map(|(key, range)| Op::Zcount { key, range }),
        2 => (key.clone(), -9i64..9, -9i64..9, any::<bool>(), any::<bool>()).prop_map(|(key, start, stop, rev, withscores)| Op::Zrange { key, start, stop, rev, withscores }),
        2 => (key.clone(), arb_range(), any::<bool>(), prop::option::of((-1i64..4, -1i64..4)), any::<bool>()).prop_map(|(key, range, rev, limit, withscores)| Op::ByScore { key, range, rev, limit, withscores }),
        2 => (key.clone(), arb_lex(), arb_lex(), any::<bool>()).prop_map(|(key, min, max, rev)| Op::ByLex { key, min, max, rev }),
        2 => (key.clone(), any::<bool>(), prop::option::of(0u64..4)).prop_map(|(key, max, count)| Op::Pop { key, max, count }),
        1 => (key.clone(), -5i64..5, -5i64..5).prop_map(|(key, start, stop)| Op::RemRank { key, start, stop }),
        1 => (key.clone(), arb_range()).prop_map(|(key, range)| Op::RemScore { key, range }),
        1 => (prop::sample::select(vec!["ZUNIONSTORE", "ZINTERSTORE", "ZDIFFSTORE"]), key.clone(), prop::collection::vec(key.clone(), 1..4), prop::sample::select(vec!["SUM", "MIN", "MAX"])).prop_map(|(op, dst, srcs, agg)| Op::Store { op, dst, srcs, agg }),
        1 => key.clone().prop_map(|key| Op::Del { key }),
        1 => key.clone().prop_map(|key| Op::Expire { key }),
        1 => key.prop_map(|key| Op::Persist { key }),
    ]
}

fn write(op: &Op) -> Write {
    Write::Command(op.argv().into_iter().map(Bytes::from).collect())
}

proptest! {
    /// Every command's reply is the model's, and the stored sets (elements,
    /// index and size together) are the model's sets after each one.
    #[test]
    fn commands_match_a_model(ops in prop::collection::vec(arb_op(), 1..60)) {
        let mut r = Replica::new();
        let mut model = Model::default();
        for op in &ops {
            let got = r.apply(vec![write(op)]).remove(0);
            let want = model.apply(op);
            prop_assert_eq!(&got, &want, "{:?}", op.argv());
            for (i, key) in KEYS.iter().enumerate() {
                prop_assert_eq!(r.stored(key), model.sets.get(&i).cloned(), "{} after {:?}", key, op.argv());
            }
            prop_assert_eq!(r.state.counts.expiring, model.expiring.len() as u64);
        }
        prop_assert_eq!(r.state.counts.keys, model.sets.len() as u64);
    }

    /// Replicas applying the same entries (random batching, randomness
    /// included) reply alike and end in identical stores; batching does
    /// not change replies.
    #[test]
    fn replicas_agree(ops in prop::collection::vec(arb_op(), 1..40), cuts in prop::collection::vec(1usize..4, 1..40), counts in prop::collection::vec(-4i64..5, 1..8)) {
        let mut ops: Vec<Write> = ops.iter().map(write).collect();
        for (i, c) in counts.iter().enumerate() {
            let mut v = vec!["ZRANDMEMBER".to_string(), KEYS[i % KEYS.len()].to_string(), c.to_string()];
            if i % 2 == 0 { v.push("WITHSCORES".into()); }
            ops.insert((i * 7) % (ops.len() + 1), Write::Command(v.into_iter().map(Bytes::from).collect()));
        }
        let mut batches = Vec::new();
        let mut rest = &ops[..];
        for cut in cuts.iter().cycle() {
            if rest.is_empty() { break; }
            let (now, later) = rest.split_at((*cut).min(rest.len()));
            batches.push(now.to_vec());
            rest = later;
        }
        let (mut a, mut b) = (Replica::new(), Replica::new());
        for batch in &batches {
            prop_assert_eq!(a.apply(batch.clone()), b.apply(batch.clone()));
        }
        prop_assert_eq!(&a.kv, &b.kv);
        prop_assert_eq!(a.state, b.state);
    }

    /// `ZSCAN` returns every member present for the whole scan, whatever
    /// COUNT and whatever is added, removed or rescored between steps —
    /// including members sharing long prefixes, and a shrinking shared
    /// prefix — and the scan ends.
    #[test]
    fn zscan_returns_every_member_present_throughout(
        initial in prop::collection::btree_set("(user:0000[0-9]{0,3}|[a-c]{0,4})", 0..60),
        changes in prop::collection::vec(("(user:0000[0-9]{0,3}|[a-c]{0,4}|zz)", any::<bool>()), 0..40),
        count in 1usize..12,
    ) {
        let mut r = Replica::new();
        for m in &initial {
            r.run(&["ZADD", "s", "1", m]);
        }
        let mut present_throughout: BTreeSet<String> = initial.clone();
        let mut seen = BTreeSet::new();
        let mut cursor = "0".to_string();
        let mut changes = changes.into_iter();
        for step in 0.. {
            prop_assert!(step < 2_000, "the scan ends");
            let Frame::Array(reply) = r.run(&["ZSCAN", "s", &cursor, "COUNT", &count.to_string()]) else { panic!() };
            let [Frame::Bulk(next), Frame::Array(items)] = &reply[..] else { panic!() };
            for pair in items.chunks(2) {
                let Frame::Bulk(m) = &pair[0] else { panic!() };
                seen.insert(String::from_utf8(m.to_vec()).unwrap());
            }
            cursor = String::from_utf8(next.to_vec()).unwrap();
            if cursor == "0" { break; }
            if let Some((m, add)) = changes.next() {
                if add {
                    r.run(&["ZINCRBY", "s", "1", &m]);
                } else {
                    r.run(&["ZREM", "s", &m]);
                    present_throughout.remove(&m);
                }
            }
        }
        prop_assert!(present_throughout.is_subset(&seen), "missed {:?}", present_throughout.difference(&seen).collect::<Vec<_>>());
    }
}
