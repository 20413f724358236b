//! Sets: `SADD`, `SMEMBERS`, set algebra, random members (see
//! [`super::elements`] for how members are stored, scanned and picked at
//! random).
//!
//! The commands over several keys (`SINTER`, `SMOVE`, `…STORE`) take keys
//! of one slot in a cluster, like every multi-key command.

use std::collections::BTreeSet;

use bytes::Bytes;
use seshat_kv::Kind;
use seshat_protocol_resp::Frame;

use crate::args::{arg, int};
use crate::decl::{data, Decl, Flags, Group, Handler, KeySpec};
use crate::exec::Ctx;
use crate::families::elements::{
    check_elements, pick_count, pick_reply, scan_step, Collection, Element,
};
use crate::reply::{err, CmdError, CmdResult, SYNTAX};

const WDF: Flags = Flags::WRITE.with(Flags::DENYOOM).with(Flags::FAST);
const WD: Flags = Flags::WRITE.with(Flags::DENYOOM);
const WF: Flags = Flags::WRITE.with(Flags::FAST);
const RF: Flags = Flags::READONLY.with(Flags::FAST);
const R: Flags = Flags::READONLY;
const ONE: KeySpec = KeySpec::ONE;
const ALL: KeySpec = KeySpec::ALL;

const fn cmd(
    name: &'static str,
    arity: i32,
    flags: Flags,
    keys: KeySpec,
    docs: (&'static str, &'static str),
    handler: Handler,
) -> Decl {
    Decl::new(name, arity, flags, keys, Group::Set, docs, handler)
}

/// The set commands.
pub static COMMANDS: &[Decl] = &[
    cmd("sadd", -3, WDF, ONE, ("Adds one or more members to a set. Creates the key if it doesn't exist.", "1.0.0"), data(sadd)),
    cmd("srem", -3, WF, ONE, ("Removes one or more members from a set. Deletes the set if the last member was removed.", "1.0.0"), data(srem)),
    cmd("scard", 2, RF, ONE, ("Returns the number of members in a set.", "1.0.0"), data(scard)),
    cmd("sismember", 3, RF, ONE, ("Determines whether a member belongs to a set.", "1.0.0"), data(sismember)),
    cmd("smismember", -3, RF, ONE, ("Determines whether multiple members belong to a set.", "6.2.0"), data(smismember)),
    cmd("smembers", 2, R, ONE, ("Returns all members of a set.", "1.0.0"), data(smembers)),
    cmd("spop", -2, WF, ONE, ("Returns one or more random members from a set after removing them. Deletes the set if the last member was popped.", "1.0.0"), data(spop)),
    cmd("srandmember", -2, R, ONE, ("Get one or multiple random members from a set", "1.0.0"), data(srandmember)),
    cmd("smove", 4, WF, KeySpec::new(1, 2, 1), ("Moves a member from one set to another.", "1.0.0"), data(smove)),
    cmd("sinter", -2, R, ALL, ("Returns the intersect of multiple sets.", "1.0.0"), data(sinter)),
    // Redis declares the keys after `numkeys` (a movable key spec): the
    // range from the first key on is reported, routing takes exactly the
    // `numkeys` keys.
    cmd("sintercard", -3, R, KeySpec::new(2, -1, 1).numkeys_at(1), ("Returns the number of members of the intersect of multiple sets.", "7.0.0"), data(sintercard)),
    cmd("sunion", -2, R, ALL, ("Returns the union of multiple sets.", "1.0.0"), data(sunion)),
    cmd("sdiff", -2, R, ALL, ("Returns the difference of multiple sets.", "1.0.0"), data(sdiff)),
    cmd("sinterstore", -3, WD, ALL, ("Stores the intersect of multiple sets in a key.", "1.0.0"), data(sinterstore)),
    cmd("sunionstore", -3, WD, ALL, ("Stores the union of multiple sets in a key.", "1.0.0"), data(sunionstore)),
    cmd("sdiffstore", -3, WD, ALL, ("Stores the difference of multiple sets in a key.", "1.0.0"), data(sdiffstore)),
    cmd("sscan", -3, R, ONE, ("Iterates over members of a set.", "2.8.0"), data(sscan)),
];

/// The set at `key`.
fn open<'a>(ctx: &mut Ctx<'_>, key: &'a [u8]) -> Result<Collection<'a>, CmdError> {
    Collection::open(ctx, key, Kind::Set)
}

fn int_reply(n: u64) -> Frame {
    Frame::Integer(i64::try_from(n).unwrap_or(i64::MAX))
}

/// Members as a RESP3 set (an array in RESP2), as Redis replies to
/// `SMEMBERS`, `SINTER`, `SPOP … count`, ….
fn set_reply(members: impl IntoIterator<Item = Bytes>) -> Frame {
    Frame::Set(members.into_iter().map(Frame::Bulk).collect())
}

fn sadd(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let mut set = open(ctx, arg(args, 1)?)?;
    let mut added = 0u64;
    for member in args.iter().skip(2) {
        if set.add(ctx, member)? {
            added += 1;
        }
    }
    set.save(ctx)?;
    Ok(int_reply(added))
}

fn srem(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let mut set = open(ctx, arg(args, 1)?)?;
    let mut removed = 0u64;
    for member in args.iter().skip(2) {
        if set.remove(ctx, member)? {
            removed += 1;
        }
    }
    set.save(ctx)?;
    Ok(int_reply(removed))
}

fn scard(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    Ok(int_reply(open(ctx, arg(args, 1)?)?.len()))
}

fn sismember(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let set = open(ctx, arg(args, 1)?)?;
    Ok(Frame::Integer(i64::from(set.contains(ctx, arg(args, 2)?)?)))
}

fn smismember(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let set = open(ctx, arg(args, 1)?)?;
    let mut out = Vec::with_capacity(args.len().saturating_sub(2));
    for member in args.iter().skip(2) {
        out.push(Frame::Integer(i64::from(set.contains(ctx, member)?)));
    }
    Ok(Frame::Array(out))
}

fn smembers(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let set = open(ctx, arg(args, 1)?)?;
    Ok(set_reply(set.all(ctx)?.into_iter().map(|e| e.name)))
}

/// `SPOP key [count]`: removes random members, the same ones on every
/// replica (the entry's seeded randomness).
fn spop(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    if args.len() > 3 {
        return Err(err(SYNTAX));
    }
    let count = match args.get(2) {
        Some(text) => Some(positive_count(text)?),
        None => None,
    };
    let mut set = open(ctx, arg(args, 1)?)?;
    let picked = match count {
        None => match set.random(ctx)? {
            Some(e) => vec![e],
            None => return Ok(Frame::Null),
        },
        Some(0) => return Ok(set_reply([])),
        Some(n) => set.random_distinct(ctx, n)?,
    };
    for e in &picked {
        set.remove(ctx, &e.name)?;
    }
    set.save(ctx)?;
    let mut names = picked.into_iter().map(|e| e.name);
    Ok(match count {
        None => names.next().map_or(Frame::Null, Frame::Bulk),
        Some(_) => set_reply(names),
    })
}

/// A count Redis reads with `getPositiveLongFromObjectOrReply`.
fn positive_count(text: &[u8]) -> Result<u64, CmdError> {
    let n = int(text)?;
    u64::try_from(n).map_err(|_| err("ERR value is out of range, must be positive"))
}

/// `SRANDMEMBER key [count]`: a negative count allows repeats, a positive
/// one returns distinct members.
fn srandmember(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    if args.len() > 3 {
        return Err(err(SYNTAX));
    }
    let Some(count) = args.get(2) else {
        let set = open(ctx, arg(args, 1)?)?;
        return Ok(set
            .random(ctx)?
            .map_or(Frame::Null, |e| Frame::Bulk(e.name)));
    };
    let count = pick_count(count)?;
    let set = open(ctx, arg(args, 1)?)?;
    if !set.exists() || count == 0 {
        return Ok(Frame::Array(Vec::new()));
    }
    let picked = if count < 0 || count == 1 {
        set.random_with_repeats(ctx, count.unsigned_abs())?
    } else {
        set.random_distinct(ctx, count.unsigned_abs())?
    };
    Ok(pick_reply(picked, false))
}

fn smove(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let (src_key, dst_key, member) = (arg(args, 1)?, arg(args, 2)?, arg(args, 3)?);
    let mut src = open(ctx, src_key)?;
    if !src.exists() {
        return Ok(Frame::Integer(0));
    }
    let mut dst = open(ctx, dst_key)?;
    if src_key == dst_key {
        return Ok(Frame::Integer(i64::from(src.contains(ctx, member)?)));
    }
    if !src.remove(ctx, member)? {
        return Ok(Frame::Integer(0));
    }
    src.save(ctx)?;
    dst.add(ctx, member)?;
    dst.save(ctx)?;
    Ok(Frame::Integer(1))
}

/// The sets at `keys`, `None` for absent ones; `-WRONGTYPE` if any key
/// holds another type (checked for every key, in order, as Redis does).
fn open_all<'a>(
    ctx: &mut Ctx<'_>,
    keys: &'a [Bytes],
) -> Result<Vec<Option<Collection<'a>>>, CmdError> {
    let mut out = Vec::with_capacity(keys.len());
    for key in keys {
        let set = open(ctx, key)?;
        out.push(set.exists().then_some(set));
    }
    Ok(out)
}

/// The members in every set at `keys`: the smallest set's members that
/// every other set holds, stopping at `limit` (0: no limit). Reads the
/// smallest set whole and probes the others.
fn intersection(ctx: &mut Ctx<'_>, keys: &[Bytes], limit: u64) -> Result<Vec<Bytes>, CmdError> {
    let sets = open_all(ctx, keys)?;
    let Some(mut sets) = sets.into_iter().collect::<Option<Vec<_>>>() else {
        // An absent key is an empty set.
        return Ok(Vec::new());
    };
    sets.sort_by_key(|s| s.len());
    let Some((smallest, others)) = sets.split_first() else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for e in smallest.all(ctx)? {
        let mut everywhere = true;
        for other in others {
            if !other.contains(ctx, &e.name)? {
                everywhere = false;
                break;
            }
        }
        if everywhere {
            out.push(e.name);
            if limit != 0 && u64::try_from(out.len()).is_ok_and(|n| n >= limit) {
                break;
            }
        }
    }
    Ok(out)
}

/// The members of every set at `keys`; refused when the sets hold more
/// than [`check_elements`] allows together.
fn union(ctx: &mut Ctx<'_>, keys: &[Bytes]) -> Result<BTreeSet<Bytes>, CmdError> {
    let sets = open_all(ctx, keys)?;
    let total = sets
        .iter()
        .flatten()
        .fold(0u64, |n, s| n.saturating_add(s.len()));
    check_elements(total)?;
    let mut out = BTreeSet::new();
    for set in sets.iter().flatten() {
        out.extend(set.all(ctx)?.into_iter().map(|e| e.name));
    }
    Ok(out)
}

/// The members of the first set at `keys` that no other set holds. Reads
/// the first set whole and probes the others.
fn difference(ctx: &mut Ctx<'_>, keys: &[Bytes]) -> Result<Vec<Bytes>, CmdError> {
    let sets = open_all(ctx, keys)?;
    let Some((Some(first), others)) = sets.split_first() else {
        return Ok(Vec::new());
    };
    let first_key = keys.first();
    if keys.iter().skip(1).any(|k| Some(k) == first_key) {
        // A set minus itself.
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for e in first.all(ctx)? {
        let mut elsewhere = false;
        for other in others.iter().flatten() {
            if other.contains(ctx, &e.name)? {
                elsewhere = true;
                break;
            }
        }
        if !elsewhere {
            out.push(e.name);
        }
    }
    Ok(out)
}

fn sinter(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    Ok(set_reply(intersection(
        ctx,
        args.get(1..).unwrap_or_default(),
        0,
    )?))
}

/// `SINTERCARD numkeys key [key …] [LIMIT limit]`.
fn sintercard(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let numkeys_error = || err("ERR numkeys should be greater than 0");
    let numkeys = int(arg(args, 1)?).map_err(|_| numkeys_error())?;
    let numkeys = usize::try_from(numkeys)
        .ok()
        .filter(|n| *n >= 1)
        .ok_or_else(numkeys_error)?;
    if numkeys > args.len().saturating_sub(2) {
        return Err(err(
            "ERR Number of keys can't be greater than number of args",
        ));
    }
    let keys = args.get(2..2 + numkeys).unwrap_or_default();
    let mut limit = 0u64;
    let mut i = 2 + numkeys;
    while let Some(opt) = args.get(i) {
        match args.get(i + 1) {
            Some(value) if crate::args::is(opt, "LIMIT") => {
                limit = int(value)
                    .ok()
                    .and_then(|n| u64::try_from(n).ok())
                    .ok_or_else(|| err("ERR LIMIT can't be negative"))?;
                i += 2;
            }
            _ => return Err(err(SYNTAX)),
        }
    }
    let found = intersection(ctx, keys, limit)?.len();
    Ok(int_reply(u64::try_from(found).unwrap_or(u64::MAX)))
}

fn sunion(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    Ok(set_reply(union(ctx, args.get(1..).unwrap_or_default())?))
}

fn sdiff(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    Ok(set_reply(difference(
        ctx,
        args.get(1..).unwrap_or_default(),
    )?))
}

/// Writes `members` as the set at `dst` in place of whatever it holds
/// (its expiry goes too); an empty result deletes `dst`. Replies with the
/// new size.
fn store(ctx: &mut Ctx<'_>, dst: &[u8], members: Vec<Bytes>) -> CmdResult {
    if members.is_empty() {
        ctx.db.delete(dst)?;
        return Ok(Frame::Integer(0));
    }
    // The members are distinct, and at most as many as one command may
    // read (the sources were checked).
    let mut set = Collection::replace(ctx, dst, Kind::Set)?;
    for member in &members {
        set.add_new(ctx, member)?;
    }
    let size = set.len();
    set.save(ctx)?;
    Ok(int_reply(size))
}

/// The destination and source keys of a `…STORE` command.
fn store_keys(args: &[Bytes]) -> Result<(&Bytes, &[Bytes]), CmdError> {
    Ok((arg(args, 1)?, args.get(2..).unwrap_or_default()))
}

fn sinterstore(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let (dst, keys) = store_keys(args)?;
    let members = intersection(ctx, keys, 0)?;
    store(ctx, dst, members)
}

fn sunionstore(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let (dst, keys) = store_keys(args)?;
    let members = union(ctx, keys)?.into_iter().collect();
    store(ctx, dst, members)
}

fn sdiffstore(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let (dst, keys) = store_keys(args)?;
    let members = difference(ctx, keys)?;
    store(ctx, dst, members)
}

fn sscan(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    scan_step(ctx, args, Kind::Set, |e: Element, out| {
        out.push(Frame::Bulk(e.name))
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use proptest::prelude::*;
    use seshat_kv::Write;

    use super::super::elements::testing::{argv, bulk, error, sorted, Replica};
    use super::*;

    const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";

    #[test]
    fn sets_answer_as_redis_does() {
        let mut r = Replica::default();
        assert_eq!(r.run(&["SADD", "s", "a", "b", "a"]), Frame::Integer(2));
        assert_eq!(r.run(&["SADD", "s", "b", "c"]), Frame::Integer(1));
        assert_eq!(r.run(&["SCARD", "s"]), Frame::Integer(3));
        assert_eq!(r.run(&["SCARD", "nope"]), Frame::Integer(0));
        assert_eq!(r.run(&["SISMEMBER", "s", "a"]), Frame::Integer(1));
        assert_eq!(r.run(&["SISMEMBER", "s", "z"]), Frame::Integer(0));
        assert_eq!(
            r.run(&["SMISMEMBER", "s", "z", "a"]),
            Frame::Array(vec![Frame::Integer(0), Frame::Integer(1)])
        );
        assert_eq!(
            r.run(&["SMISMEMBER", "nope", "a"]),
            Frame::Array(vec![Frame::Integer(0)])
        );
        assert!(matches!(r.run(&["SMEMBERS", "s"]), Frame::Set(_)));
        assert_eq!(sorted(&r.run(&["SMEMBERS", "s"])), ["a", "b", "c"]);
        assert_eq!(r.run(&["SMEMBERS", "nope"]), Frame::Set(vec![]));
        assert_eq!(r.run(&["SREM", "s", "a", "z"]), Frame::Integer(1));
        assert_eq!(r.run(&["SREM", "nope", "a"]), Frame::Integer(0));
        assert_eq!(r.run(&["SREM", "s", "b", "c", "d"]), Frame::Integer(2));
        assert_eq!(r.run(&["EXISTS", "s"]), Frame::Integer(0));
        assert!(r.kv.map.is_empty());
        r.run(&["SET", "str", "v"]);
        for cmd in [
            &["SADD", "str", "a"][..],
            &["SREM", "str", "a"],
            &["SCARD", "str"],
            &["SISMEMBER", "str", "a"],
            &["SMISMEMBER", "str", "a"],
            &["SMEMBERS", "str"],
            &["SPOP", "str"],
            &["SRANDMEMBER", "str"],
            &["SINTER", "str"],
            &["SUNION", "str"],
            &["SDIFF", "str"],
            &["SSCAN", "str", "0"],
        ] {
            assert_eq!(r.run(cmd), error(WRONGTYPE), "{cmd:?}");
        }
    }

    #[test]
    fn pops_and_random_members() {
        let mut r = Replica::default();
        assert_eq!(r.run(&["SPOP", "s"]), Frame::Null);
        assert_eq!(r.run(&["SPOP", "s", "3"]), Frame::Set(vec![]));
        assert_eq!(r.run(&["SRANDMEMBER", "s"]), Frame::Null);
        assert_eq!(r.run(&["SRANDMEMBER", "s", "3"]), Frame::Array(vec![]));
        assert_eq!(
            r.run(&["SPOP", "s", "-1"]),
            error("ERR value is out of range, must be positive")
        );
        assert_eq!(r.run(&["SPOP", "s", "1", "2"]), error("ERR syntax error"));
        assert_eq!(
            r.run(&["SRANDMEMBER", "s", "1", "2"]),
            error("ERR syntax error")
        );
        r.run(&["SADD", "s", "a", "b", "c", "d", "e"]);
        assert_eq!(r.run(&["SPOP", "s", "0"]), Frame::Set(vec![]));
        let mut popped = sorted(&r.run(&["SPOP", "s", "2"]));
        let Frame::Bulk(one) = r.run(&["SPOP", "s"]) else {
            panic!()
        };
        popped.push(String::from_utf8(one.to_vec()).unwrap());
        assert_eq!(r.run(&["SCARD", "s"]), Frame::Integer(2));
        let rest = sorted(&r.run(&["SRANDMEMBER", "s", "10"]));
        assert_eq!(rest, sorted(&r.run(&["SMEMBERS", "s"])));
        popped.extend(rest);
        popped.sort();
        assert_eq!(popped, ["a", "b", "c", "d", "e"]);
        assert_eq!(sorted(&r.run(&["SRANDMEMBER", "s", "-6"])).len(), 6);
        assert_eq!(sorted(&r.run(&["SPOP", "s", "9"])).len(), 2);
        assert_eq!(r.run(&["EXISTS", "s"]), Frame::Integer(0));
    }

    #[test]
    fn spop_picks_the_same_members_on_every_replica() {
        let (mut a, mut b) = (Replica::default(), Replica::default());
        let members: Vec<String> = (0..2000).map(|i| i.to_string()).collect();
        let mut add = vec!["SADD".to_string(), "s".into()];
        add.extend(members);
        for r in [&mut a, &mut b] {
            r.run(&add);
        }
        for cmd in [
            &["SPOP", "s"][..],
            &["SPOP", "s", "7"],
            &["SPOP", "s", "1500"],
        ] {
            assert_eq!(a.run(cmd), b.run(cmd));
        }
        assert_eq!(a, b);
    }

    #[test]
    fn set_algebra() {
        let mut r = Replica::default();
        r.run(&["SADD", "a", "1", "2", "3", "4"]);
        r.run(&["SADD", "b", "3", "4", "5"]);
        r.run(&["SADD", "c", "4", "6"]);
        assert_eq!(sorted(&r.run(&["SINTER", "a", "b"])), ["3", "4"]);
        assert_eq!(sorted(&r.run(&["SINTER", "a", "b", "c"])), ["4"]);
        assert_eq!(r.run(&["SINTER", "a", "nope"]), Frame::Set(vec![]));
        assert_eq!(
            sorted(&r.run(&["SUNION", "a", "nope", "c"])),
            ["1", "2", "3", "4", "6"]
        );
        assert_eq!(sorted(&r.run(&["SDIFF", "a", "b", "nope"])), ["1", "2"]);
        assert_eq!(r.run(&["SDIFF", "a", "a"]), Frame::Set(vec![]));
        assert_eq!(r.run(&["SDIFF", "nope", "a"]), Frame::Set(vec![]));
        assert_eq!(r.run(&["SINTERCARD", "2", "a", "b"]), Frame::Integer(2));
        assert_eq!(
            r.run(&["SINTERCARD", "2", "a", "b", "LIMIT", "1"]),
            Frame::Integer(1)
        );
        assert_eq!(
            r.run(&["SINTERCARD", "2", "a", "b", "LIMIT", "0"]),
            Frame::Integer(2)
        );
        for (cmd, text) in [
            (
                &["SINTERCARD", "0", "a"][..],
                "ERR numkeys should be greater than 0",
            ),
            (
                &["SINTERCARD", "x", "a"],
                "ERR numkeys should be greater than 0",
            ),
            (
                &["SINTERCARD", "3", "a", "b"],
                "ERR Number of keys can't be greater than number of args",
            ),
            (&["SINTERCARD", "1", "a", "b"], "ERR syntax error"),
            (&["SINTERCARD", "1", "a", "LIMIT"], "ERR syntax error"),
            (
                &["SINTERCARD", "1", "a", "LIMIT", "-1"],
                "ERR LIMIT can't be negative",
            ),
            (
                &["SINTERCARD", "1", "a", "LIMIT", "x"],
                "ERR LIMIT can't be negative",
            ),
        ] {
            assert_eq!(r.run(cmd), error(text), "{cmd:?}");
        }
        // Stores replace the destination, whatever it held, and its TTL.
        r.run(&["SET", "d", "x", "PX", "100000"]);
        assert_eq!(r.run(&["SUNIONSTORE", "d", "a", "b"]), Frame::Integer(5));
        assert_eq!(r.run(&["TTL", "d"]), Frame::Integer(-1));
        assert_eq!(r.run(&["SINTERSTORE", "d", "d", "c"]), Frame::Integer(1));
        assert_eq!(sorted(&r.run(&["SMEMBERS", "d"])), ["4"]);
        assert_eq!(r.run(&["SDIFFSTORE", "d", "a", "b"]), Frame::Integer(2));
        assert_eq!(sorted(&r.run(&["SMEMBERS", "d"])), ["1", "2"]);
        // An empty result deletes the destination.
        assert_eq!(r.run(&["SINTERSTORE", "d", "a", "nope"]), Frame::Integer(0));
        assert_eq!(r.run(&["EXISTS", "d"]), Frame::Integer(0));
        r.run(&["SET", "str", "v"]);
        assert_eq!(r.run(&["SINTER", "nope", "str"]), error(WRONGTYPE));
        assert_eq!(r.run(&["SINTERSTORE", "d", "a", "str"]), error(WRONGTYPE));
        // A string destination is simply replaced.
        assert_eq!(r.run(&["SUNIONSTORE", "str", "c"]), Frame::Integer(2));
        assert_eq!(r.run(&["TYPE", "str"]), Frame::simple("set"));
    }

    #[test]
    fn smove_moves_one_member() {
        let mut r = Replica::default();
        r.run(&["SADD", "a", "x", "y"]);
        r.run(&["SET", "str", "v"]);
        assert_eq!(r.run(&["SMOVE", "nope", "str", "x"]), Frame::Integer(0));
        assert_eq!(r.run(&["SMOVE", "a", "str", "x"]), error(WRONGTYPE));
        assert_eq!(r.run(&["SMOVE", "str", "a", "x"]), error(WRONGTYPE));
        assert_eq!(r.run(&["SMOVE", "a", "a", "x"]), Frame::Integer(1));
        assert_eq!(r.run(&["SMOVE", "a", "a", "z"]), Frame::Integer(0));
        assert_eq!(r.run(&["SMOVE", "a", "b", "z"]), Frame::Integer(0));
        assert_eq!(r.run(&["SMOVE", "a", "b", "x"]), Frame::Integer(1));
        assert_eq!(r.run(&["SMOVE", "a", "b", "y"]), Frame::Integer(1));
        assert_eq!(r.run(&["EXISTS", "a"]), Frame::Integer(0));
        assert_eq!(sorted(&r.run(&["SMEMBERS", "b"])), ["x", "y"]);
    }

    #[test]
    fn an_expired_collection_leaves_nothing_behind() {
        let mut r = Replica::default();
        r.run(&["SADD", "k", "a", "b"]);
        r.run(&["PEXPIREAT", "k", "1"]);
        // Time 0 < 1 in the replica; move time on with an entry at 10.
        let batch = seshat_kv::WriteBatch {
            now_ms: 10,
            seed: 0,
            writes: vec![Write::Command(argv(&["HSET", "k", "f", "v"]))],
        };
        r.index += 1;
        crate::apply_batch(&batch, r.index, &mut r.kv, &mut r.state).unwrap();
        let Frame::Map(all) = r.run(&["HGETALL", "k"]) else {
            panic!()
        };
        assert_eq!(all, vec![(bulk("f"), bulk("v"))]);
        assert_eq!(r.run(&["HLEN", "k"]), Frame::Integer(1));
    }

    /// What a key holds in the model.
    #[derive(Debug, Clone, PartialEq)]
    enum Value {
        Hash(BTreeMap<String, String>),
        Set(BTreeSet<String>),
        Str,
    }

    /// A model of the hash and set commands: a map of values.
    #[derive(Default)]
    struct Model(BTreeMap<String, Value>);

    impl Model {
        fn set(&self, k: &str) -> Result<BTreeSet<String>, Frame> {
            match self.0.get(k) {
                None => Ok(BTreeSet::new()),
                Some(Value::Set(s)) => Ok(s.clone()),
                Some(_) => Err(error(WRONGTYPE)),
            }
        }

        fn hash(&self, k: &str) -> Result<BTreeMap<String, String>, Frame> {
            match self.0.get(k) {
                None => Ok(BTreeMap::new()),
                Some(Value::Hash(h)) => Ok(h.clone()),
                Some(_) => Err(error(WRONGTYPE)),
            }
        }

        fn put(&mut self, k: &str, v: Value) {
            let empty = matches!(&v, Value::Hash(h) if h.is_empty())
                || matches!(&v, Value::Set(s) if s.is_empty());
            if empty {
                self.0.remove(k);
            } else {
                self.0.insert(k.to_string(), v);
            }
        }

        fn members(s: BTreeSet<String>) -> Frame {
            Frame::Set(s.iter().map(|m| bulk(m)).collect())
        }

        /// The reply the model expects; `None` for random replies, which
        /// it learns from (`SPOP`).
        fn apply(&mut self, cmd: &[String], reply: &Frame) -> Option<Frame> {
            let a = |i: usize| cmd[i].as_str();
            let out = (|| -> Result<Frame, Frame> {
                Ok(match a(0) {
                    "HSET" => {
                        let mut h = self.hash(a(1))?;
                        let new = h.insert(a(2).into(), a(3).into()).is_none();
                        self.put(a(1), Value::Hash(h));
                        Frame::Integer(i64::from(new))
                    }
                    "HDEL" => {
                        let mut h = self.hash(a(1))?;
                        let gone = h.remove(a(2)).is_some();
                        self.put(a(1), Value::Hash(h));
                        Frame::Integer(i64::from(gone))
                    }
                    "HGET" => self.hash(a(1))?.get(a(2)).map_or(Frame::Null, |v| bulk(v)),
                    "HLEN" => Frame::Integer(self.hash(a(1))?.len() as i64),
                    "HINCRBY" => {
                        let mut h = self.hash(a(1))?;
                        let n = match h.get(a(2)) {
                            Some(v) => v
                                .parse::<i64>()
                                .map_err(|_| error("ERR hash value is not an integer"))?,
                            None => 0,
                        } + a(3).parse::<i64>().unwrap();
                        h.insert(a(2).into(), n.to_string());
                        self.put(a(1), Value::Hash(h));
                        Frame::Integer(n)
                    }
                    "HGETALL" => Frame::Map(
                        self.hash(a(1))?
                            .iter()
                            .map(|(f, v)| (bulk(f), bulk(v)))
                            .collect(),
                    ),
                    "SADD" => {
                        let mut s = self.set(a(1))?;
                        let new = s.insert(a(2).into());
                        self.put(a(1), Value::Set(s));
                        Frame::Integer(i64::from(new))
                    }
                    "SREM" => {
                        let mut s = self.set(a(1))?;
                        let gone = s.remove(a(2));
                        self.put(a(1), Value::Set(s));
                        Frame::Integer(i64::from(gone))
                    }
                    "SCARD" => Frame::Integer(self.set(a(1))?.len() as i64),
                    "SISMEMBER" => Frame::Integer(i64::from(self.set(a(1))?.contains(a(2)))),
                    "SMEMBERS" => Self::members(self.set(a(1))?),
                    "SMOVE" => {
                        let mut src = match self.0.get(a(1)) {
                            None => return Ok(Frame::Integer(0)),
                            _ => self.set(a(1))?,
                        };
                        let mut dst = self.set(a(2))?;
                        if a(1) == a(2) {
                            return Ok(Frame::Integer(i64::from(src.contains(a(3)))));
                        }
                        if !src.remove(a(3)) {
                            return Ok(Frame::Integer(0));
                        }
                        dst.insert(a(3).into());
                        self.put(a(1), Value::Set(src));
                        self.put(a(2), Value::Set(dst));
                        Frame::Integer(1)
                    }
                    op @ ("SINTERSTORE" | "SUNIONSTORE" | "SDIFFSTORE") => {
                        let (x, y) = (self.set(a(2))?, self.set(a(3))?);
                        let result: BTreeSet<String> = match op {
                            "SINTERSTORE" => x.intersection(&y).cloned().collect(),
                            "SUNIONSTORE" => x.union(&y).cloned().collect(),
                            _ => x.difference(&y).cloned().collect(),
                        };
                        let n = result.len() as i64;
                        self.0.remove(a(1));
                        self.put(a(1), Value::Set(result));
                        Frame::Integer(n)
                    }
                    "SPOP" => {
                        let mut s = self.set(a(1))?;
                        if let Frame::Bulk(m) = reply {
                            assert!(
                                s.remove(&*String::from_utf8_lossy(m)),
                                "popped a non-member"
                            );
                            self.put(a(1), Value::Set(s));
                        } else {
                            assert!(s.is_empty(), "{reply:?}");
                        }
                        return Err(reply.clone());
                    }
                    "DEL" => Frame::Integer(i64::from(self.0.remove(a(1)).is_some())),
                    "SET" => {
                        self.0.insert(a(1).into(), Value::Str);
                        Frame::ok()
                    }
                    other => panic!("model lacks {other}"),
                })
            })();
            Some(out.unwrap_or_else(|e| e))
        }
    }

    /// Sorts the items of a map or set reply (their order is the store's).
    fn normalized(frame: Frame) -> Frame {
        match frame {
            Frame::Set(mut items) => {
                items.sort_by_key(|f| format!("{f:?}"));
                Frame::Set(items)
            }
            Frame::Map(mut pairs) => {
                pairs.sort_by_key(|p| format!("{p:?}"));
                Frame::Map(pairs)
            }
            other => other,
        }
    }

    fn arb_command() -> impl Strategy<Value = Vec<String>> {
        let key = prop::sample::select(vec!["a", "b", "c"]);
        let name = prop::sample::select(vec!["x", "y", "z", "w", "1"]);
        let cmd = |parts: Vec<&str>| parts.into_iter().map(String::from).collect::<Vec<_>>();
        prop_oneof![
            (key.clone(), name.clone(), name.clone())
                .prop_map(move |(k, f, v)| cmd(vec!["HSET", k, f, v])),
            (key.clone(), name.clone()).prop_map(move |(k, f)| cmd(vec!["HDEL", k, f])),
            (key.clone(), name.clone()).prop_map(move |(k, f)| cmd(vec!["HGET", k, f])),
            key.clone().prop_map(move |k| cmd(vec!["HLEN", k])),
            (key.clone(), name.clone(), -3i64..4).prop_map(move |(k, f, n)| vec![
                "HINCRBY".into(),
                k.into(),
                f.into(),
                n.to_string()
            ]),
            key.clone().prop_map(move |k| cmd(vec!["HGETALL", k])),
            (key.clone(), name.clone()).prop_map(move |(k, m)| cmd(vec!["SADD", k, m])),
            (key.clone(), name.clone()).prop_map(move |(k, m)| cmd(vec!["SREM", k, m])),
            key.clone().prop_map(move |k| cmd(vec!["SCARD", k])),
            (key.clone(), name.clone()).prop_map(move |(k, m)| cmd(vec!["SISMEMBER", k, m])),
            key.clone().prop_map(move |k| cmd(vec!["SMEMBERS", k])),
            (key.clone(), key.clone(), name.clone())
                .prop_map(move |(s, d, m)| cmd(vec!["SMOVE", s, d, m])),
            (
                prop::sample::select(vec!["SINTERSTORE", "SUNIONSTORE", "SDIFFSTORE"]),
                key.clone(),
                key.clone(),
                key.clone()
            )
                .prop_map(move |(op, d, x, y)| cmd(vec![op, d, x, y])),
            key.clone().prop_map(move |k| cmd(vec!["SPOP", k])),
            key.clone().prop_map(move |k| cmd(vec!["DEL", k])),
            key.prop_map(move |k| cmd(vec!["SET", k, "v"])),
        ]
    }

    proptest! {
        /// Two replicas applying the same commands agree on every reply
        /// and end with the same store; both match the model, and the key
        /// count matches the records stored.
        #[test]
        fn replicas_agree_and_match_the_model(cmds in prop::collection::vec(arb_command(), 1..120)) {
            let (mut x, mut y) = (Replica::default(), Replica::default());
            let mut model = Model::default();
            for cmd in &cmds {
                let (rx, ry) = (x.run(cmd), y.run(cmd));
                prop_assert_eq!(&rx, &ry, "{:?}", cmd);
                let expected = model.apply(cmd, &rx).map(normalized);
                prop_assert_eq!(Some(normalized(rx)), expected, "{:?}", cmd);
            }
            prop_assert_eq!(&x, &y);
            let metas = x.kv.map.keys().filter(|k| seshat_kv::keys::parse_meta_key(1, k).is_some()).count();
            prop_assert_eq!(x.state.counts.keys, metas as u64);
            prop_assert_eq!(metas, model.0.len());
        }
    }
}
