//! Hashes: `HSET`, `HGET`, … over a key's fields (see [`super::elements`]
//! for how fields are stored, scanned and picked at random).

use bytes::Bytes;
use seshat_kv::Kind;
use seshat_protocol_resp::Frame;

use crate::args::{arg, format_float, int, is, parse_float};
use crate::decl::{data, prepared, Decl, Flags, Group, Handler, KeySpec};
use crate::exec::Ctx;
use crate::families::elements::{pick_count, pick_reply, scan_step, Collection};
use crate::reply::{err, wrong_arity, CmdError, CmdResult, NOT_FLOAT, OVERFLOW, SYNTAX};

const WDF: Flags = Flags::WRITE.with(Flags::DENYOOM).with(Flags::FAST);
const WF: Flags = Flags::WRITE.with(Flags::FAST);
const RF: Flags = Flags::READONLY.with(Flags::FAST);
const R: Flags = Flags::READONLY;
const ONE: KeySpec = KeySpec::ONE;

const fn cmd(
    name: &'static str,
    arity: i32,
    flags: Flags,
    docs: (&'static str, &'static str),
    handler: Handler,
) -> Decl {
    Decl::new(name, arity, flags, ONE, Group::Hash, docs, handler)
}

/// The hash commands.
pub static COMMANDS: &[Decl] = &[
    cmd("hset", -4, WDF, ("Creates or modifies the value of a field in a hash.", "2.0.0"), prepared(hset, check_field_pairs)),
    cmd("hmset", -4, WDF, ("Sets the values of multiple fields.", "2.0.0"), prepared(hset, check_field_pairs)),
    cmd("hsetnx", 4, WDF, ("Sets the value of a field in a hash only when the field doesn't exist.", "2.0.0"), data(hsetnx)),
    cmd("hget", 3, RF, ("Returns the value of a field in a hash.", "2.0.0"), data(hget)),
    cmd("hmget", -3, RF, ("Returns the values of all fields in a hash.", "2.0.0"), data(hmget)),
    cmd("hdel", -3, WF, ("Deletes one or more fields and their values from a hash. Deletes the hash if no fields remain.", "2.0.0"), data(hdel)),
    cmd("hlen", 2, RF, ("Returns the number of fields in a hash.", "2.0.0"), data(hlen)),
    cmd("hstrlen", 3, RF, ("Returns the length of the value of a field.", "3.2.0"), data(hstrlen)),
    cmd("hexists", 3, RF, ("Determines whether a field exists in a hash.", "2.0.0"), data(hexists)),
    cmd("hkeys", 2, R, ("Returns all fields in a hash.", "2.0.0"), data(hkeys)),
    cmd("hvals", 2, R, ("Returns all values in a hash.", "2.0.0"), data(hvals)),
    cmd("hgetall", 2, R, ("Returns all fields and values in a hash.", "2.0.0"), data(hgetall)),
    cmd("hincrby", 4, WDF, ("Increments the integer value of a field in a hash by a number. Uses 0 as initial value if the field doesn't exist.", "2.0.0"), data(hincrby)),
    cmd("hincrbyfloat", 4, WDF, ("Increments the floating point value of a field by a number. Uses 0 as initial value if the field doesn't exist.", "2.6.0"), data(hincrbyfloat)),
    cmd("hrandfield", -2, R, ("Returns one or more random fields from a hash.", "6.2.0"), data(hrandfield)),
    cmd("hscan", -3, R, ("Iterates over fields and values of a hash.", "2.8.0"), data(hscan)),
];

/// The hash at `args[1]`.
fn open<'a>(ctx: &mut Ctx<'_>, args: &'a [Bytes]) -> Result<Collection<'a>, CmdError> {
    Collection::open(ctx, arg(args, 1)?, Kind::Hash)
}

fn len_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// `HSET`/`HMSET` need field/value pairs: Redis answers an arity error
/// naming the command.
fn field_pairs(args: &[Bytes]) -> Result<&[Bytes], CmdError> {
    if args.len() % 2 == 1 {
        let name = args
            .first()
            .map(|n| String::from_utf8_lossy(n).to_ascii_lowercase())
            .unwrap_or_default();
        return Err(wrong_arity(&name));
    }
    Ok(args.get(2..).unwrap_or_default())
}

/// Refuses odd field/value lists before they cost a log entry.
fn check_field_pairs(args: &[Bytes], _now_ms: u64) -> Result<Option<Vec<Bytes>>, Frame> {
    field_pairs(args).map_err(CmdError::into_frame)?;
    Ok(None)
}

fn hset(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let pairs = field_pairs(args)?;
    let mut hash = open(ctx, args)?;
    let mut created = 0u64;
    for pair in pairs.chunks_exact(2) {
        if let [field, value] = pair {
            if hash.insert(ctx, field, value)? {
                created += 1;
            }
        }
    }
    hash.save(ctx)?;
    let hmset = args.first().is_some_and(|n| is(n, "hmset"));
    Ok(if hmset {
        Frame::ok()
    } else {
        Frame::Integer(len_i64(created))
    })
}

fn hsetnx(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let (field, value) = (arg(args, 2)?, arg(args, 3)?);
    let mut hash = open(ctx, args)?;
    if hash.contains(ctx, field)? {
        return Ok(Frame::Integer(0));
    }
    hash.insert(ctx, field, value)?;
    hash.save(ctx)?;
    Ok(Frame::Integer(1))
}

fn hget(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let hash = open(ctx, args)?;
    Ok(hash
        .get(ctx, arg(args, 2)?)?
        .map_or(Frame::Null, Frame::Bulk))
}

fn hmget(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let hash = open(ctx, args)?;
    let mut out = Vec::with_capacity(args.len().saturating_sub(2));
    for field in args.iter().skip(2) {
        out.push(hash.get(ctx, field)?.map_or(Frame::Null, Frame::Bulk));
    }
    Ok(Frame::Array(out))
}

fn hdel(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let mut hash = open(ctx, args)?;
    let mut deleted = 0u64;
    for field in args.iter().skip(2) {
        if hash.remove(ctx, field)? {
            deleted += 1;
        }
    }
    hash.save(ctx)?;
    Ok(Frame::Integer(len_i64(deleted)))
}

fn hlen(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    Ok(Frame::Integer(len_i64(open(ctx, args)?.len())))
}

fn hstrlen(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let hash = open(ctx, args)?;
    let len = hash.get(ctx, arg(args, 2)?)?.map_or(0, |v| v.len());
    Ok(Frame::Integer(i64::try_from(len).unwrap_or(i64::MAX)))
}

fn hexists(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let hash = open(ctx, args)?;
    Ok(Frame::Integer(i64::from(
        hash.contains(ctx, arg(args, 2)?)?,
    )))
}

fn hkeys(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let hash = open(ctx, args)?;
    let all = hash.all(ctx)?;
    Ok(Frame::Array(
        all.into_iter().map(|e| Frame::Bulk(e.name)).collect(),
    ))
}

fn hvals(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let hash = open(ctx, args)?;
    let all = hash.all(ctx)?;
    Ok(Frame::Array(
        all.into_iter().map(|e| Frame::Bulk(e.value)).collect(),
    ))
}

fn hgetall(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let hash = open(ctx, args)?;
    let all = hash.all(ctx)?;
    Ok(Frame::Map(
        all.into_iter()
            .map(|e| (Frame::Bulk(e.name), Frame::Bulk(e.value)))
            .collect(),
    ))
}

fn hincrby(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let delta = int(arg(args, 3)?)?;
    let field = arg(args, 2)?;
    let mut hash = open(ctx, args)?;
    let current = match hash.get(ctx, field)? {
        Some(v) => int(&v).map_err(|_| err("ERR hash value is not an integer"))?,
        None => 0,
    };
    let next = current.checked_add(delta).ok_or_else(|| err(OVERFLOW))?;
    hash.insert(ctx, field, next.to_string().as_bytes())?;
    hash.save(ctx)?;
    Ok(Frame::Integer(next))
}

fn hincrbyfloat(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let delta = parse_float(arg(args, 3)?).ok_or_else(|| err(NOT_FLOAT))?;
    if delta.is_infinite() {
        return Err(err("ERR value is NaN or Infinity"));
    }
    let field = arg(args, 2)?;
    let mut hash = open(ctx, args)?;
    let current = match hash.get(ctx, field)? {
        Some(v) => parse_float(&v).ok_or_else(|| err("ERR hash value is not a float"))?,
        None => 0.0,
    };
    let next = current + delta;
    if !next.is_finite() {
        return Err(err("ERR increment would produce NaN or Infinity"));
    }
    let text = Bytes::from(format_float(next));
    hash.insert(ctx, field, &text)?;
    hash.save(ctx)?;
    Ok(Frame::Bulk(text))
}

/// `HRANDFIELD key [count [WITHVALUES]]`: a negative count allows
/// repeats, a positive one returns distinct fields.
fn hrandfield(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let Some(count) = args.get(2) else {
        let hash = open(ctx, args)?;
        return Ok(hash
            .random(ctx)?
            .map_or(Frame::Null, |e| Frame::Bulk(e.name)));
    };
    let count = pick_count(count)?;
    let values = match args.get(3) {
        None => false,
        Some(opt) if args.len() == 4 && is(opt, "WITHVALUES") => true,
        Some(_) => return Err(err(SYNTAX)),
    };
    if values && !(-(i64::MAX / 2)..=i64::MAX / 2).contains(&count) {
        return Err(err("ERR value is out of range"));
    }
    let hash = open(ctx, args)?;
    if !hash.exists() || count == 0 {
        return Ok(Frame::Array(Vec::new()));
    }
    let picked = if count < 0 || count == 1 {
        hash.random_with_repeats(ctx, count.unsigned_abs())?
    } else {
        hash.random_distinct(ctx, count.unsigned_abs())?
    };
    Ok(pick_reply(picked, values))
}

fn hscan(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    scan_step(ctx, args, Kind::Hash, |e, out| {
        out.push(Frame::Bulk(e.name));
        out.push(Frame::Bulk(e.value));
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::elements::testing::{bulk, error, sorted, Replica};
    use super::*;

    const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";

    #[test]
    fn hashes_answer_as_redis_does() {
        let mut r = Replica::default();
        assert_eq!(r.run(&["HSET", "h", "a", "1", "b", "2"]), Frame::Integer(2));
        assert_eq!(r.run(&["HSET", "h", "a", "x", "c", "3"]), Frame::Integer(1));
        assert_eq!(r.run(&["HMSET", "h", "d", "4"]), Frame::ok());
        assert_eq!(
            r.run(&["HSET", "h", "a", "1", "b"]),
            error("ERR wrong number of arguments for 'hset' command")
        );
        assert_eq!(
            r.run(&["HMSET", "h", "a", "1", "b"]),
            error("ERR wrong number of arguments for 'hmset' command")
        );
        assert_eq!(r.run(&["HGET", "h", "a"]), bulk("x"));
        assert_eq!(r.run(&["HGET", "h", "zz"]), Frame::Null);
        assert_eq!(r.run(&["HGET", "nope", "a"]), Frame::Null);
        assert_eq!(
            r.run(&["HMGET", "h", "a", "zz", "b"]),
            Frame::Array(vec![bulk("x"), Frame::Null, bulk("2")])
        );
        assert_eq!(
            r.run(&["HMGET", "nope", "a"]),
            Frame::Array(vec![Frame::Null])
        );
        assert_eq!(r.run(&["HLEN", "h"]), Frame::Integer(4));
        assert_eq!(r.run(&["HLEN", "nope"]), Frame::Integer(0));
        assert_eq!(r.run(&["HSTRLEN", "h", "a"]), Frame::Integer(1));
        assert_eq!(r.run(&["HSTRLEN", "h", "zz"]), Frame::Integer(0));
        assert_eq!(r.run(&["HEXISTS", "h", "b"]), Frame::Integer(1));
        assert_eq!(r.run(&["HEXISTS", "h", "zz"]), Frame::Integer(0));
        assert_eq!(r.run(&["HSETNX", "h", "a", "y"]), Frame::Integer(0));
        assert_eq!(r.run(&["HSETNX", "h", "e", "5"]), Frame::Integer(1));
        assert_eq!(sorted(&r.run(&["HKEYS", "h"])), ["a", "b", "c", "d", "e"]);
        assert_eq!(sorted(&r.run(&["HVALS", "h"])), ["2", "3", "4", "5", "x"]);
        let Frame::Map(all) = r.run(&["HGETALL", "h"]) else {
            panic!("HGETALL is a map")
        };
        assert_eq!(all.len(), 5);
        assert!(all.contains(&(bulk("a"), bulk("x"))));
        assert_eq!(r.run(&["HGETALL", "nope"]), Frame::Map(vec![]));
        assert_eq!(r.run(&["HKEYS", "nope"]), Frame::Array(vec![]));
        assert_eq!(
            r.run(&["HDEL", "h", "a", "a", "zz", "b"]),
            Frame::Integer(2)
        );
        assert_eq!(r.run(&["HDEL", "nope", "a"]), Frame::Integer(0));
        // The last field takes the key with it.
        assert_eq!(r.run(&["HDEL", "h", "c", "d", "e"]), Frame::Integer(3));
        assert_eq!(r.run(&["EXISTS", "h"]), Frame::Integer(0));
        assert_eq!(r.state.counts.keys, 0);
        assert!(r.kv.map.is_empty(), "{:?}", r.kv.map);
        // Every command refuses another type.
        r.run(&["SET", "s", "v"]);
        for cmd in [
            &["HSET", "s", "a", "1"][..],
            &["HGET", "s", "a"],
            &["HMGET", "s", "a"],
            &["HDEL", "s", "a"],
            &["HLEN", "s"],
            &["HGETALL", "s"],
            &["HINCRBY", "s", "a", "1"],
            &["HRANDFIELD", "s"],
            &["HSCAN", "s", "0"],
        ] {
            assert_eq!(r.run(cmd), error(WRONGTYPE), "{cmd:?}");
        }
        assert_eq!(r.run(&["TYPE", "s"]), Frame::simple("string"));
        r.run(&["HSET", "h2", "f", "v"]);
        assert_eq!(r.run(&["TYPE", "h2"]), Frame::simple("hash"));
        assert_eq!(r.run(&["GET", "h2"]), error(WRONGTYPE));
    }

    #[test]
    fn counters_in_fields() {
        let mut r = Replica::default();
        assert_eq!(r.run(&["HINCRBY", "h", "n", "5"]), Frame::Integer(5));
        assert_eq!(r.run(&["HINCRBY", "h", "n", "-7"]), Frame::Integer(-2));
        assert_eq!(
            r.run(&["HINCRBY", "h", "n", "x"]),
            error("ERR value is not an integer or out of range")
        );
        r.run(&[
            "HSET",
            "h",
            "big",
            "9223372036854775807",
            "s",
            " 1",
            "z",
            "1\x002",
        ]);
        assert_eq!(
            r.run(&["HINCRBY", "h", "big", "1"]),
            error("ERR increment or decrement would overflow")
        );
        assert_eq!(
            r.run(&["HINCRBY", "h", "s", "1"]),
            error("ERR hash value is not an integer")
        );
        assert_eq!(r.run(&["HINCRBYFLOAT", "h", "f", "1.23"]), bulk("1.23"));
        assert_eq!(r.run(&["HINCRBYFLOAT", "h", "f", "0.77"]), bulk("2"));
        assert_eq!(r.run(&["HINCRBYFLOAT", "h", "f", "-0.1"]), bulk("1.9"));
        assert_eq!(r.run(&["HINCRBYFLOAT", "h", "n", "1.5"]), bulk("-0.5"));
        assert_eq!(
            r.run(&["HINCRBYFLOAT", "h", "s", "1"]),
            error("ERR hash value is not a float")
        );
        assert_eq!(
            r.run(&["HINCRBYFLOAT", "h", "z", "1"]),
            error("ERR hash value is not a float")
        );
        assert_eq!(
            r.run(&["HINCRBYFLOAT", "h", "f", "abc"]),
            error("ERR value is not a valid float")
        );
        assert_eq!(
            r.run(&["HINCRBYFLOAT", "new", "f", "+inf"]),
            error("ERR value is NaN or Infinity")
        );
        assert_eq!(r.run(&["EXISTS", "new"]), Frame::Integer(0));
        r.run(&["HSET", "h", "max", "1.7e308"]);
        assert_eq!(
            r.run(&["HINCRBYFLOAT", "h", "max", "1.7e308"]),
            error("ERR increment would produce NaN or Infinity")
        );
    }

    #[test]
    fn random_fields() {
        let mut r = Replica::default();
        assert_eq!(r.run(&["HRANDFIELD", "h"]), Frame::Null);
        assert_eq!(r.run(&["HRANDFIELD", "h", "3"]), Frame::Array(vec![]));
        r.run(&["HSET", "h", "a", "1", "b", "2", "c", "3"]);
        let Frame::Bulk(one) = r.run(&["HRANDFIELD", "h"]) else {
            panic!()
        };
        assert!([&b"a"[..], b"b", b"c"].contains(&&one[..]));
        assert_eq!(r.run(&["HRANDFIELD", "h", "0"]), Frame::Array(vec![]));
        assert_eq!(sorted(&r.run(&["HRANDFIELD", "h", "5"])), ["a", "b", "c"]);
        assert_eq!(sorted(&r.run(&["HRANDFIELD", "h", "-5"])).len(), 5);
        let Frame::Pairs(pairs) = r.run(&["HRANDFIELD", "h", "-7", "WITHVALUES"]) else {
            panic!("WITHVALUES gives pairs")
        };
        assert_eq!(pairs.len(), 7);
        for (f, v) in pairs {
            assert_eq!(
                r.run(&["HGET", "h", &String::from_utf8_lossy(&frame_bytes(&f))]),
                v
            );
        }
        let Frame::Pairs(two) = r.run(&["HRANDFIELD", "h", "2", "withvalues"]) else {
            panic!()
        };
        assert_eq!(two.len(), 2);
        assert_ne!(two[0].0, two[1].0);
        assert_eq!(
            r.run(&["HRANDFIELD", "h", "1", "x"]),
            error("ERR syntax error")
        );
        assert_eq!(
            r.run(&["HRANDFIELD", "h", "-9223372036854775808"]),
            error("ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807")
        );
        assert_eq!(
            r.run(&["HRANDFIELD", "h", "-9223372036854770000", "WITHVALUES"]),
            error("ERR value is out of range")
        );
    }

    fn frame_bytes(f: &Frame) -> Bytes {
        match f {
            Frame::Bulk(b) => b.clone(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn hscan_returns_fields_with_values() {
        let mut r = Replica::default();
        assert_eq!(
            r.run(&["HSCAN", "h", "0"]),
            Frame::Array(vec![bulk("0"), Frame::Array(vec![])])
        );
        assert_eq!(r.run(&["HSCAN", "h", "x"]), error("ERR invalid cursor"));
        let mut cmd = vec!["HSET".to_string(), "h".into()];
        for i in 0..500 {
            cmd.push(format!("f{i}"));
            cmd.push(format!("v{i}"));
        }
        r.run(&cmd);
        let mut cursor = "0".to_string();
        let mut found = std::collections::BTreeMap::new();
        loop {
            let Frame::Array(parts) =
                r.run(&["HSCAN", "h", &cursor, "COUNT", "37", "MATCH", "f1*"])
            else {
                panic!()
            };
            let (Frame::Bulk(next), Frame::Array(items)) = (&parts[0], &parts[1]) else {
                panic!()
            };
            for pair in items.chunks(2) {
                found.insert(frame_bytes(&pair[0]), frame_bytes(&pair[1]));
            }
            cursor = String::from_utf8(next.to_vec()).unwrap();
            if cursor == "0" {
                break;
            }
        }
        // f1, f10..f19, f100..f199
        assert_eq!(found.len(), 111);
        assert_eq!(found.get(&b"f123"[..]), Some(&Bytes::from_static(b"v123")));
        assert_eq!(
            r.run(&["HSCAN", "h", "0", "COUNT", "0"]),
            error("ERR syntax error")
        );
        assert_eq!(
            r.run(&["HSCAN", "h", "0", "TYPE", "hash"]),
            error("ERR syntax error")
        );
    }

    #[test]
    fn writes_stamp_the_key_for_watch_and_keep_its_expiry() {
        let mut r = Replica::default();
        r.run(&["HSET", "h", "a", "1"]);
        r.run(&["PEXPIREAT", "h", "1000000"]);
        let before = r.index;
        r.run(&["HSET", "h", "a", "1"]);
        assert_eq!(r.run(&["PEXPIRETIME", "h"]), Frame::Integer(1_000_000));
        // Overwriting a field with the same value is a change (Redis
        // signals it), a no-op HDEL is not.
        let stamp = |r: &mut Replica| {
            let mut ctx = crate::exec::Ctx {
                db: seshat_kv::Keyspace::new(
                    &mut r.kv,
                    seshat_kv::keys::DATA_GROUP,
                    0,
                    0,
                    r.state.counts,
                ),
                rng: seshat_kv::EntryRng::new(0, 0),
            };
            ctx.db.get(b"h").unwrap().unwrap().mod_index
        };
        assert!(stamp(&mut r) > before);
        let now = stamp(&mut r);
        r.run(&["HDEL", "h", "zz"]);
        assert_eq!(stamp(&mut r), now);
    }
}
