//! Sorted sets: `ZADD ZRANGE ZRANK …`, set operations, pops, `ZSCAN`.
//!
//! Storage and walks are in [`store`] (a member's score in its element,
//! the (score, member) index, ranks found by walking from the nearer end),
//! range parsing in [`range`], `ZSCAN`'s cursor in [`scan`]. Replies follow
//! Redis 7.0: scores are doubles ([`Frame::Double`], `%.17g` text in
//! RESP2), `WITHSCORES` lists are [`Frame::Pairs`] (flat in RESP2, nested
//! in RESP3). The blocking commands (`BZPOPMIN`, `BZPOPMAX`, `BZMPOP`) are
//! not implemented.
//!
//! Limits: one command reads at most [`MAX_READ_MEMBERS`] members (walks
//! and replies) and writes or removes at most [`MAX_WRITE_MEMBERS`]
//! beyond its own arguments (`ZREMRANGEBY*`, `Z*STORE`, pops); past them
//! it answers an error and changes nothing.

mod range;
mod scan;
mod store;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use seshat_kv::Kind;
use seshat_protocol_resp::{double_text, Frame};

use crate::args::{arg, glob_match, int, is};
use crate::decl::{data, prepared, Decl, Flags, Group, Handler, KeySpec};
use crate::exec::Ctx;
use crate::reply::{err, wrong_type, CmdError, CmdResult, SYNTAX};

use range::{is_withscores, rank_range, score, score_arg, LexRange, ScoreRange};
use store::{
    member_score, normalize, short_index, too_many_read, too_many_written, Scored, Walk, ZSet,
};

/// Most members one command reads from storage or lists in its reply.
pub const MAX_READ_MEMBERS: usize = 1 << 20;
/// Most members one write adds, changes or removes beyond those named in
/// its arguments (it is one atomic apply batch on every replica).
pub const MAX_WRITE_MEMBERS: usize = 1 << 18;

const W: Flags = Flags::WRITE;
const WF: Flags = Flags::WRITE.with(Flags::FAST);
const WD: Flags = Flags::WRITE.with(Flags::DENYOOM);
const WDF: Flags = WD.with(Flags::FAST);
const R: Flags = Flags::READONLY;
const RF: Flags = Flags::READONLY.with(Flags::FAST);

const fn cmd(
    name: &'static str,
    arity: i32,
    flags: Flags,
    keys: KeySpec,
    docs: (&'static str, &'static str),
    handler: Handler,
) -> Decl {
    Decl::new(name, arity, flags, keys, Group::SortedSet, docs, handler)
}

const ONE: KeySpec = KeySpec::ONE;
/// `ZUNIONSTORE dst numkeys key …`: Redis reports the destination only.
/// `ZUNIONSTORE dst numkeys key …`: the destination, then `numkeys` keys.
const DST: KeySpec = KeySpec::ONE.numkeys_at(2);
/// `ZUNION numkeys key …`, `ZMPOP numkeys key …`: Redis reports no legacy
/// key positions (they depend on `numkeys`); Seshat reports the first key
/// and routes by all `numkeys` of them.
const AFTER_NUMKEYS: KeySpec = KeySpec::new(2, 2, 1).numkeys_at(1);

/// The sorted set commands.
pub static COMMANDS: &[Decl] = &[
    cmd("zadd", -4, WDF, ONE, ("Add one or more members to a sorted set, or update its score if it already exists", "1.2.0"), prepared(zadd, prepare_zadd)),
    cmd("zincrby", 4, WDF, ONE, ("Increment the score of a member in a sorted set", "1.2.0"), prepared(zincrby, prepare_zincrby)),
    cmd("zrem", -3, WF, ONE, ("Remove one or more members from a sorted set", "1.2.0"), data(zrem)),
    cmd("zcard", 2, RF, ONE, ("Get the number of members in a sorted set", "1.2.0"), data(zcard)),
    cmd("zscore", 3, RF, ONE, ("Get the score associated with the given member in a sorted set", "1.2.0"), data(zscore)),
    cmd("zmscore", -3, RF, ONE, ("Get the score associated with the given members in a sorted set", "6.2.0"), data(zmscore)),
    cmd("zrank", 3, RF, ONE, ("Determine the index of a member in a sorted set", "2.0.0"), data(zrank)),
    cmd("zrevrank", 3, RF, ONE, ("Determine the index of a member in a sorted set, with scores ordered from high to low", "2.0.0"), data(zrevrank)),
    cmd("zcount", 4, RF, ONE, ("Count the members in a sorted set with scores within the given values", "2.0.0"), data(zcount)),
    cmd("zlexcount", 4, RF, ONE, ("Count the number of members in a sorted set between a given lexicographical range", "2.8.9"), data(zlexcount)),
    cmd("zrange", -4, R, ONE, ("Return a range of members in a sorted set", "1.2.0"), data(zrange)),
    cmd("zrangebyscore", -4, R, ONE, ("Return a range of members in a sorted set, by score", "1.0.5"), data(zrangebyscore)),
    cmd("zrevrangebyscore", -4, R, ONE, ("Return a range of members in a sorted set, by score, with scores ordered from high to low", "2.2.0"), data(zrevrangebyscore)),
    cmd("zrangebylex", -4, R, ONE, ("Return a range of members in a sorted set, by lexicographical range", "2.8.9"), data(zrangebylex)),
    cmd("zrevrangebylex", -4, R, ONE, ("Return a range of members in a sorted set, by lexicographical range, ordered from higher to lower strings.", "2.8.9"), data(zrevrangebylex)),
    cmd("zrevrange", -4, R, ONE, ("Return a range of members in a sorted set, by index, with scores ordered from high to low", "1.2.0"), data(zrevrange)),
    cmd("zrangestore", -5, WD, KeySpec::new(1, 2, 1), ("Store a range of members from sorted set into another key", "6.2.0"), prepared(zrangestore, prepare_zrangestore)),
    cmd("zpopmin", -2, WF, ONE, ("Remove and return members with the lowest scores in a sorted set", "5.0.0"), prepared(zpopmin, prepare_zpop)),
    cmd("zpopmax", -2, WF, ONE, ("Remove and return members with the highest scores in a sorted set", "5.0.0"), prepared(zpopmax, prepare_zpop)),
    cmd("zmpop", -4, W, AFTER_NUMKEYS, ("Remove and return members with scores in a sorted set", "7.0.0"), prepared(zmpop, prepare_zmpop)),
    cmd("zremrangebyrank", 4, W, ONE, ("Remove all members in a sorted set within the given indexes", "2.0.0"), prepared(zremrangebyrank, prepare_remrange)),
    cmd("zremrangebyscore", 4, W, ONE, ("Remove all members in a sorted set within the given scores", "1.2.0"), prepared(zremrangebyscore, prepare_remrange)),
    cmd("zremrangebylex", 4, W, ONE, ("Remove all members in a sorted set between the given lexicographical range", "2.8.9"), prepared(zremrangebylex, prepare_remrange)),
    cmd("zunionstore", -4, WD, DST, ("Add multiple sorted sets and store the resulting sorted set in a new key", "2.0.0"), prepared(zunionstore, prepare_setop_store)),
    cmd("zinterstore", -4, WD, DST, ("Intersect multiple sorted sets and store the resulting sorted set in a new key", "2.0.0"), prepared(zinterstore, prepare_setop_store)),
    cmd("zdiffstore", -4, WD, DST, ("Subtract multiple sorted sets and store the resulting sorted set in a new key", "6.2.0"), prepared(zdiffstore, prepare_setop_store)),
    cmd("zunion", -3, R, AFTER_NUMKEYS, ("Add multiple sorted sets", "6.2.0"), data(zunion)),
    cmd("zinter", -3, R, AFTER_NUMKEYS, ("Intersect multiple sorted sets", "6.2.0"), data(zinter)),
    cmd("zdiff", -3, R, AFTER_NUMKEYS, ("Subtract multiple sorted sets", "6.2.0"), data(zdiff)),
    cmd("zintercard", -3, R, AFTER_NUMKEYS, ("Intersect multiple sorted sets and return the cardinality of the result", "7.0.0"), data(zintercard)),
    cmd("zrandmember", -2, R, ONE, ("Get one or multiple random elements from a sorted set", "6.2.0"), data(zrandmember)),
    cmd("zscan", -3, R, ONE, ("Incrementally iterate sorted sets elements and associated scores", "2.8.0"), data(zscan)),
];

/// A leader-side check: the parse's error, or proposing as sent.
fn checked<T>(parsed: Result<T, CmdError>) -> Result<Option<Vec<Bytes>>, Frame> {
    parsed.map(|_| None).map_err(CmdError::into_frame)
}

fn double(score: f64) -> Frame {
    Frame::Double(normalize(score))
}

/// Members, with their scores as [`Frame::Pairs`] when `withscores` (an
/// empty reply is the same in every form: an empty array).
fn members_reply(members: Vec<Scored>, withscores: bool) -> Frame {
    if withscores && !members.is_empty() {
        Frame::Pairs(
            members
                .into_iter()
                .map(|m| (Frame::Bulk(m.member), double(m.score)))
                .collect(),
        )
    } else {
        Frame::Array(members.into_iter().map(|m| Frame::Bulk(m.member)).collect())
    }
}

/// A count as a reply integer.
fn integer(n: u64) -> Frame {
    Frame::Integer(i64::try_from(n).unwrap_or(i64::MAX))
}

/// A non-negative integer argument; `msg` for anything else (Redis's
/// `getPositiveLongFromObjectOrReply` with a message).
fn non_negative(text: &[u8], msg: &'static str) -> Result<u64, CmdError> {
    int(text)
        .ok()
        .and_then(|n| u64::try_from(n).ok())
        .ok_or_else(|| err(msg))
}

// ---------------------------------------------------------------- ZADD

/// `ZADD` options.
#[derive(Debug, Default, Clone, Copy)]
struct ZaddOpts {
    nx: bool,
    xx: bool,
    gt: bool,
    lt: bool,
    ch: bool,
    incr: bool,
}

/// `ZADD`'s (score, member) pairs.
type ScorePairs<'a> = Vec<(f64, &'a Bytes)>;

/// `ZADD key [NX|XX] [GT|LT] [CH] [INCR] score member …`; `ZINCRBY` is
/// the same with `INCR` (and its increment read where options may be,
/// as Redis does).
fn parse_zadd(args: &[Bytes], incr: bool) -> Result<(ZaddOpts, ScorePairs<'_>), CmdError> {
    let mut o = ZaddOpts {
        incr,
        ..ZaddOpts::default()
    };
    let mut i = 2;
    while let Some(opt) = args.get(i) {
        match () {
            _ if is(opt, "NX") => o.nx = true,
            _ if is(opt, "XX") => o.xx = true,
            _ if is(opt, "CH") => o.ch = true,
            _ if is(opt, "INCR") => o.incr = true,
            _ if is(opt, "GT") => o.gt = true,
            _ if is(opt, "LT") => o.lt = true,
            _ => break,
        }
        i += 1;
    }
    let pairs = args.get(i..).unwrap_or_default();
    if pairs.is_empty() || pairs.len() % 2 != 0 {
        return Err(err(SYNTAX));
    }
    if o.nx && o.xx {
        return Err(err(
            "ERR XX and NX options at the same time are not compatible",
        ));
    }
    if (o.nx && (o.gt || o.lt)) || (o.gt && o.lt) {
        return Err(err(
            "ERR GT, LT, and/or NX options at the same time are not compatible",
        ));
    }
    if o.incr && pairs.len() > 2 {
        return Err(err(
            "ERR INCR option supports a single increment-element pair",
        ));
    }
    let parsed = pairs
        .chunks_exact(2)
        .map(|p| match p {
            [s, m] => Ok((score(s)?, m)),
            _ => Err(err(SYNTAX)),
        })
        .collect::<Result<Vec<_>, CmdError>>()?;
    Ok((o, parsed))
}

fn prepare_zadd(args: &[Bytes], _now_ms: u64) -> Result<Option<Vec<Bytes>>, Frame> {
    checked(parse_zadd(args, false))
}

fn prepare_zincrby(args: &[Bytes], _now_ms: u64) -> Result<Option<Vec<Bytes>>, Frame> {
    checked(parse_zadd(args, true))
}

fn zadd(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    zadd_generic(ctx, args, false)
}

fn zincrby(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    zadd_generic(ctx, args, true)
}

fn zadd_generic(ctx: &mut Ctx<'_>, args: &[Bytes], incr: bool) -> CmdResult {
    let (o, pairs) = parse_zadd(args, incr)?;
    let key = arg(args, 1)?;
    let (mut z, created) = match ZSet::load(ctx, key)? {
        Some(z) => (z, false),
        None if o.xx => return Ok(zadd_reply(o, 0, None)),
        None => (ZSet::create(ctx, key)?, true),
    };
    let (mut added, mut updated, mut last) = (0u64, 0u64, None);
    for (score, member) in pairs {
        let Some(current) = z.score(ctx, member)? else {
            if !o.xx {
                z.set(ctx, member, None, score)?;
                added += 1;
                last = Some(score);
            }
            continue;
        };
        if o.nx {
            continue;
        }
        let new = if o.incr { current + score } else { score };
        if new.is_nan() {
            return Err(err("ERR resulting score is not a number (NaN)"));
        }
        if (o.lt && new >= current) || (o.gt && new <= current) {
            continue;
        }
        last = Some(new);
        if new != current {
            z.set(ctx, member, Some(current), new)?;
            updated += 1;
        }
    }
    if created || added + updated > 0 {
        z.save(ctx)?;
    }
    let changed = if o.ch { added + updated } else { added };
    Ok(zadd_reply(o, changed, last))
}

/// `ZADD`'s count, or with `INCR` the new score (nil when not updated).
fn zadd_reply(o: ZaddOpts, changed: u64, last: Option<f64>) -> Frame {
    if o.incr {
        last.map_or(Frame::Null, double)
    } else {
        integer(changed)
    }
}

// ------------------------------------------------------- point commands

fn zrem(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let Some(mut z) = ZSet::load(ctx, arg(args, 1)?)? else {
        return Ok(Frame::Integer(0));
    };
    let mut removed = 0u64;
    for member in args.iter().skip(2) {
        if let Some(s) = z.score(ctx, member)? {
            z.remove(ctx, member, s)?;
            removed += 1;
            if z.size == 0 {
                break;
            }
        }
    }
    if removed > 0 {
        z.save(ctx)?;
    }
    Ok(integer(removed))
}

fn zcard(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    Ok(integer(
        ZSet::load(ctx, arg(args, 1)?)?.map_or(0, |z| z.size),
    ))
}

fn zscore(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let Some(z) = ZSet::load(ctx, arg(args, 1)?)? else {
        return Ok(Frame::Null);
    };
    Ok(z.score(ctx, arg(args, 2)?)?.map_or(Frame::Null, double))
}

fn zmscore(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let z = ZSet::load(ctx, arg(args, 1)?)?;
    let mut out = Vec::with_capacity(args.len().saturating_sub(2));
    for member in args.iter().skip(2) {
        out.push(match &z {
            Some(z) => z.score(ctx, member)?.map_or(Frame::Null, double),
            None => Frame::Null,
        });
    }
    Ok(Frame::Array(out))
}

fn zrank(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    rank_reply(ctx, args, false)
}

fn zrevrank(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    rank_reply(ctx, args, true)
}

fn rank_reply(ctx: &mut Ctx<'_>, args: &[Bytes], rev: bool) -> CmdResult {
    let member = arg(args, 2)?;
    let Some(z) = ZSet::load(ctx, arg(args, 1)?)? else {
        return Ok(Frame::Null);
    };
    let Some(s) = z.score(ctx, member)? else {
        return Ok(Frame::Null);
    };
    let rank = z.rank(ctx, member, s)?;
    Ok(integer(if rev {
        z.size.saturating_sub(1).saturating_sub(rank)
    } else {
        rank
    }))
}

fn zcount(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let range = ScoreRange::parse(arg(args, 2)?, arg(args, 3)?)?;
    let Some(z) = ZSet::load(ctx, arg(args, 1)?)? else {
        return Ok(Frame::Integer(0));
    };
    Ok(integer(match range.bounds() {
        None => 0,
        Some((None, None)) => z.size,
        Some((lo, hi)) => Walk::scores(&z.key, lo, hi, false).count(ctx)?,
    }))
}

fn zlexcount(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let range = LexRange::parse(arg(args, 2)?, arg(args, 3)?)?;
    let Some(z) = ZSet::load(ctx, arg(args, 1)?)? else {
        return Ok(Frame::Integer(0));
    };
    Ok(integer(match range.bounds() {
        None => 0,
        Some((None, None)) => z.size,
        Some((lo, hi)) => Walk::members(&z.key, lo, hi, false, Kind::ZSet).count(ctx)?,
    }))
}

// ----------------------------------------------------------------- ZRANGE

/// What a range is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum By {
    Rank,
    Score,
    Lex,
}

/// A parsed range and its options.
#[derive(Debug, Clone)]
enum Range {
    Rank(i64, i64),
    Score(ScoreRange),
    Lex(LexRange),
}

/// A parsed `ZRANGE`-family request.
#[derive(Debug, Clone)]
struct RangeQuery {
    key: Bytes,
    range: Range,
    rev: bool,
    withscores: bool,
    offset: i64,
    /// `LIMIT`'s count; negative: no limit.
    limit: i64,
}

/// Redis's `zrangeGenericCommand` parsing: `args[src]` is the source key,
/// then min, max and options. `by`/`rev` are fixed by the legacy commands
/// (`None`: chosen by `BYSCORE`/`BYLEX`/`REV`); `store` (`ZRANGESTORE`)
/// refuses `WITHSCORES`.
fn parse_range(
    args: &[Bytes],
    src: usize,
    store: bool,
    by: Option<By>,
    rev: Option<bool>,
) -> Result<RangeQuery, CmdError> {
    let (mut by_opt, mut rev_opt) = (by, rev);
    let (mut withscores, mut offset, mut limit) = (false, 0i64, -1i64);
    let mut j = src + 3;
    while let Some(a) = args.get(j) {
        let left = args.len() - j - 1;
        if !store && is_withscores(a) {
            withscores = true;
        } else if is(a, "LIMIT") && left >= 2 {
            offset = int(arg(args, j + 1)?)?;
            limit = int(arg(args, j + 2)?)?;
            j += 2;
        } else if rev_opt.is_none() && is(a, "REV") {
            rev_opt = Some(true);
        } else if by_opt.is_none() && is(a, "BYLEX") {
            by_opt = Some(By::Lex);
        } else if by_opt.is_none() && is(a, "BYSCORE") {
            by_opt = Some(By::Score);
        } else {
            return Err(err(SYNTAX));
        }
        j += 1;
    }
    let by = by_opt.unwrap_or(By::Rank);
    let rev = rev_opt.unwrap_or(false);
    if limit != -1 && by == By::Rank {
        return Err(err(
            "ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX",
        ));
    }
    if withscores && by == By::Lex {
        return Err(err(
            "ERR syntax error, WITHSCORES not supported in combination with BYLEX",
        ));
    }
    let (mut min, mut max) = (arg(args, src + 1)?, arg(args, src + 2)?);
    if rev && by != By::Rank {
        std::mem::swap(&mut min, &mut max);
    }
    let range = match by {
        By::Rank => Range::Rank(int(min)?, int(max)?),
        By::Score => Range::Score(ScoreRange::parse(min, max)?),
        By::Lex => Range::Lex(LexRange::parse(min, max)?),
    };
    Ok(RangeQuery {
        key: arg(args, src)?.clone(),
        range,
        rev,
        withscores,
        offset,
        limit,
    })
}

/// The members `q` selects from `z`, in reply order.
fn run_range(ctx: &mut Ctx<'_>, z: &ZSet, q: &RangeQuery) -> Result<Vec<Scored>, CmdError> {
    let mut walk = match &q.range {
        Range::Rank(start, end) => {
            let Some((s, e)) = rank_range(*start, *end, z.size) else {
                return Ok(Vec::new());
            };
            if !q.rev {
                return z.by_rank(ctx, s, e);
            }
            let top = z.size - 1;
            let mut v = z.by_rank(ctx, top - e, top - s)?;
            v.reverse();
            return Ok(v);
        }
        Range::Score(r) => match r.bounds() {
            Some((lo, hi)) => Walk::scores(&z.key, lo, hi, q.rev),
            None => return Ok(Vec::new()),
        },
        Range::Lex(r) => match r.bounds() {
            Some((lo, hi)) => Walk::members(&z.key, lo, hi, q.rev, Kind::ZSet),
            None => return Ok(Vec::new()),
        },
    };
    // A negative offset selects nothing, a negative limit everything.
    let Ok(offset) = u64::try_from(q.offset) else {
        return Ok(Vec::new());
    };
    if offset >= z.size {
        return Ok(Vec::new());
    }
    walk.skip(ctx, offset)?;
    walk.take(ctx, u64::try_from(q.limit).unwrap_or(u64::MAX))
}

/// A `ZRANGE`-family read.
fn range_reply(ctx: &mut Ctx<'_>, q: &RangeQuery) -> CmdResult {
    let Some(z) = ZSet::load(ctx, &q.key)? else {
        return Ok(Frame::Array(Vec::new()));
    };
    let members = run_range(ctx, &z, q)?;
    Ok(members_reply(members, q.withscores))
}

fn zrange(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    range_reply(ctx, &parse_range(args, 1, false, None, None)?)
}

fn zrangebyscore(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    range_reply(
        ctx,
        &parse_range(args, 1, false, Some(By::Score), Some(false))?,
    )
}

fn zrevrangebyscore(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    range_reply(
        ctx,
        &parse_range(args, 1, false, Some(By::Score), Some(true))?,
    )
}

fn zrangebylex(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    range_reply(
        ctx,
        &parse_range(args, 1, false, Some(By::Lex), Some(false))?,
    )
}

fn zrevrangebylex(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    range_reply(
        ctx,
        &parse_range(args, 1, false, Some(By::Lex), Some(true))?,
    )
}

fn zrevrange(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    range_reply(
        ctx,
        &parse_range(args, 1, false, Some(By::Rank), Some(true))?,
    )
}

fn prepare_zrangestore(args: &[Bytes], _now_ms: u64) -> Result<Option<Vec<Bytes>>, Frame> {
    checked(parse_range(args, 2, true, None, None))
}

fn zrangestore(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let q = parse_range(args, 2, true, None, None)?;
    let members = match ZSet::load(ctx, &q.key)? {
        Some(z) => run_range(ctx, &z, &q)?,
        None => Vec::new(),
    };
    Ok(integer(ZSet::store(ctx, arg(args, 1)?, &members)?))
}

// ------------------------------------------------------------ ZREMRANGE

/// The range of a `ZREMRANGEBY*` command, parsed before the key is read.
fn parse_remrange(args: &[Bytes]) -> Result<Range, CmdError> {
    let name = arg(args, 0)?;
    let (min, max) = (arg(args, 2)?, arg(args, 3)?);
    Ok(if is(name, "ZREMRANGEBYRANK") {
        Range::Rank(int(min)?, int(max)?)
    } else if is(name, "ZREMRANGEBYSCORE") {
        Range::Score(ScoreRange::parse(min, max)?)
    } else {
        Range::Lex(LexRange::parse(min, max)?)
    })
}

fn prepare_remrange(args: &[Bytes], _now_ms: u64) -> Result<Option<Vec<Bytes>>, Frame> {
    checked(parse_remrange(args))
}

fn zremrangebyrank(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    zremrange(ctx, args)
}

fn zremrangebyscore(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    zremrange(ctx, args)
}

fn zremrangebylex(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    zremrange(ctx, args)
}

fn zremrange(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let range = parse_remrange(args)?;
    let Some(mut z) = ZSet::load(ctx, arg(args, 1)?)? else {
        return Ok(Frame::Integer(0));
    };
    let bound = MAX_WRITE_MEMBERS as u64 + 1;
    let doomed = match range {
        Range::Rank(start, end) => match rank_range(start, end, z.size) {
            Some((s, e)) if e - s >= MAX_WRITE_MEMBERS as u64 => return Err(too_many_written()),
            Some((s, e)) => z.by_rank(ctx, s, e)?,
            None => Vec::new(),
        },
        Range::Score(r) => match r.bounds() {
            Some((lo, hi)) => Walk::scores(&z.key, lo, hi, false).take(ctx, bound)?,
            None => Vec::new(),
        },
        Range::Lex(r) => match r.bounds() {
            Some((lo, hi)) => Walk::members(&z.key, lo, hi, false, Kind::ZSet).take(ctx, bound)?,
            None => Vec::new(),
        },
    };
    if doomed.len() > MAX_WRITE_MEMBERS {
        return Err(too_many_written());
    }
    for m in &doomed {
        z.remove(ctx, &m.member, m.score)?;
    }
    if !doomed.is_empty() {
        z.save(ctx)?;
    }
    Ok(integer(doomed.len() as u64))
}

// ------------------------------------------------------------------- pops

/// Removes and returns up to `count` members of `z` from the lowest (or,
/// `max`, the highest) score.
fn pop(ctx: &mut Ctx<'_>, z: &mut ZSet, count: u64, max: bool) -> Result<Vec<Scored>, CmdError> {
    let n = count.min(z.size);
    if n > MAX_WRITE_MEMBERS as u64 {
        return Err(too_many_written());
    }
    let popped = Walk::all(&z.key, max).take(ctx, n)?;
    for m in &popped {
        z.remove(ctx, &m.member, m.score)?;
    }
    if !popped.is_empty() {
        z.save(ctx)?;
    }
    Ok(popped)
}

/// `ZPOPMIN/ZPOPMAX key [count]`: the count, if given.
fn parse_zpop(args: &[Bytes]) -> Result<Option<u64>, CmdError> {
    match args {
        [_, _] => Ok(None),
        [_, _, count] => Ok(Some(non_negative(
            count,
            "ERR value is out of range, must be positive",
        )?)),
        _ => Err(err(SYNTAX)),
    }
}

fn prepare_zpop(args: &[Bytes], _now_ms: u64) -> Result<Option<Vec<Bytes>>, Frame> {
    checked(parse_zpop(args))
}

fn zpopmin(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    zpop(ctx, args, false)
}

fn zpopmax(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    zpop(ctx, args, true)
}

fn zpop(ctx: &mut Ctx<'_>, args: &[Bytes], max: bool) -> CmdResult {
    let count = parse_zpop(args)?;
    let Some(mut z) = ZSet::load(ctx, arg(args, 1)?)? else {
        return Ok(Frame::Array(Vec::new()));
    };
    if count == Some(0) {
        return Ok(Frame::Array(Vec::new()));
    }
    let popped = pop(ctx, &mut z, count.unwrap_or(1), max)?;
    if count.is_some() {
        return Ok(members_reply(popped, true));
    }
    // Without a count: one flat [member, score] in both protocols.
    Ok(Frame::Array(
        popped
            .into_iter()
            .flat_map(|m| [Frame::Bulk(m.member), double(m.score)])
            .collect(),
    ))
}

/// `ZMPOP numkeys key … MIN|MAX [COUNT count]`: (keys, max, count).
fn parse_zmpop(args: &[Bytes]) -> Result<(&[Bytes], bool, u64), CmdError> {
    const NUMKEYS: &str = "ERR numkeys should be greater than 0";
    let numkeys = int(arg(args, 1)?).map_err(|_| err(NUMKEYS))?;
    let numkeys = usize::try_from(numkeys)
        .ok()
        .filter(|n| *n >= 1)
        .ok_or_else(|| err(NUMKEYS))?;
    let where_at = numkeys.checked_add(2).ok_or_else(|| err(SYNTAX))?;
    let max = match args.get(where_at) {
        Some(w) if is(w, "MIN") => false,
        Some(w) if is(w, "MAX") => true,
        _ => return Err(err(SYNTAX)),
    };
    let mut count = None;
    let mut j = where_at + 1;
    while let Some(opt) = args.get(j) {
        match args.get(j + 1) {
            Some(value) if count.is_none() && is(opt, "COUNT") => {
                let n = non_negative(value, "ERR count should be greater than 0")?;
                if n == 0 {
                    return Err(err("ERR count should be greater than 0"));
                }
                count = Some(n);
                j += 2;
            }
            _ => return Err(err(SYNTAX)),
        }
    }
    let keys = args.get(2..where_at).unwrap_or_default();
    Ok((keys, max, count.unwrap_or(1)))
}

fn prepare_zmpop(args: &[Bytes], _now_ms: u64) -> Result<Option<Vec<Bytes>>, Frame> {
    checked(parse_zmpop(args))
}

fn zmpop(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let (keys, max, count) = parse_zmpop(args)?;
    for key in keys {
        // The first key that exists is popped (or is the wrong type).
        let Some(mut z) = ZSet::load(ctx, key)? else {
            continue;
        };
        let popped = pop(ctx, &mut z, count, max)?;
        let pairs = popped
            .into_iter()
            .map(|m| Frame::Array(vec![Frame::Bulk(m.member), double(m.score)]))
            .collect();
        return Ok(Frame::Array(vec![
            Frame::Bulk(key.clone()),
            Frame::Array(pairs),
        ]));
    }
    Ok(Frame::NullArray)
}

// --------------------------------------------------------- set operations

/// Which set operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SetOp {
    Union,
    Inter,
    Diff,
}

/// How scores of one member in several inputs combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Aggregate {
    Sum,
    Min,
    Max,
}

impl Aggregate {
    /// Redis's `zunionInterAggregate`: a sum of `inf` and `-inf` is 0.
    fn apply(self, acc: f64, value: f64) -> f64 {
        match self {
            Aggregate::Sum => {
                let s = acc + value;
                if s.is_nan() {
                    0.0
                } else {
                    s
                }
            }
            Aggregate::Min => {
                if value < acc {
                    value
                } else {
                    acc
                }
            }
            Aggregate::Max => {
                if value > acc {
                    value
                } else {
                    acc
                }
            }
        }
    }
}

/// `weight * score`, with Redis's convention that NaN (`0 * inf`) is 0.
fn weighted(weight: f64, score: f64) -> f64 {
    let s = weight * score;
    if s.is_nan() {
        0.0
    } else {
        s
    }
}

/// One input of a set operation: a sorted set, a set (members score 1)
/// or an absent key (empty).
#[derive(Debug, Clone)]
struct Source {
    key: Bytes,
    kind: Option<Kind>,
    size: u64,
    weight: f64,
}

impl Source {
    fn score(&self, ctx: &mut Ctx<'_>, member: &[u8]) -> Result<Option<f64>, CmdError> {
        match self.kind {
            Some(kind) => member_score(ctx, &self.key, kind, member),
            None => Ok(None),
        }
    }

    fn walk(&self) -> Walk {
        Walk::members(
            &self.key,
            None,
            None,
            false,
            self.kind.unwrap_or(Kind::ZSet),
        )
    }
}

/// A parsed set operation.
#[derive(Debug, Clone)]
struct SetOpQuery {
    op: SetOp,
    sources: Vec<Source>,
    aggregate: Aggregate,
    withscores: bool,
    /// `ZINTERCARD`'s `LIMIT` (0: none).
    limit: u64,
}

/// The number of input keys at `args[at]`, checked as Redis does before
/// any key is read. `name` is the command's name for the error.
fn numkeys(args: &[Bytes], at: usize, name: &str) -> Result<usize, CmdError> {
    let n = int(arg(args, at)?)?;
    if n < 1 {
        return Err(err(format!(
            "ERR at least 1 input key is needed for '{name}' command"
        )));
    }
    let available = args.len().saturating_sub(at + 1);
    usize::try_from(n)
        .ok()
        .filter(|n| *n <= available)
        .ok_or_else(|| err(SYNTAX))
}

fn prepare_setop_store(args: &[Bytes], _now_ms: u64) -> Result<Option<Vec<Bytes>>, Frame> {
    let name =
        String::from_utf8_lossy(arg(args, 0).map_err(CmdError::into_frame)?).to_ascii_lowercase();
    checked(numkeys(args, 2, &name))
}

/// Parses a set operation whose `numkeys` is at `args[at]`: the keys are
/// read (and type-checked) before the options, as Redis does.
fn parse_setop(
    ctx: &mut Ctx<'_>,
    args: &[Bytes],
    at: usize,
    op: SetOp,
    name: &str,
    store: bool,
    card: bool,
) -> Result<SetOpQuery, CmdError> {
    let n = numkeys(args, at, name)?;
    let mut sources = Vec::with_capacity(n);
    for key in args.get(at + 1..at + 1 + n).unwrap_or_default() {
        let (kind, size) = match ctx.db.get(key)? {
            None => (None, 0),
            Some(r) if matches!(r.kind, Kind::ZSet | Kind::Set) => {
                (Some(r.kind), r.composite_meta()?.0)
            }
            Some(_) => return Err(wrong_type()),
        };
        sources.push(Source {
            key: key.clone(),
            kind,
            size,
            weight: 1.0,
        });
    }
    let mut q = SetOpQuery {
        op,
        sources,
        aggregate: Aggregate::Sum,
        withscores: false,
        limit: 0,
    };
    let mut j = at + 1 + n;
    while let Some(opt) = args.get(j) {
        let remaining = args.len() - j;
        let scored = op != SetOp::Diff && !card;
        if scored && remaining > n && is(opt, "WEIGHTS") {
            for (i, source) in q.sources.iter_mut().enumerate() {
                source.weight =
                    score_arg(arg(args, j + 1 + i)?, "ERR weight value is not a float")?;
            }
            j += 1 + n;
        } else if scored && remaining >= 2 && is(opt, "AGGREGATE") {
            let how = arg(args, j + 1)?;
            q.aggregate = match () {
                _ if is(how, "SUM") => Aggregate::Sum,
                _ if is(how, "MIN") => Aggregate::Min,
                _ if is(how, "MAX") => Aggregate::Max,
                _ => return Err(err(SYNTAX)),
            };
            j += 2;
        } else if !store && !card && is(opt, "WITHSCORES") {
            q.withscores = true;
            j += 1;
        } else if card && remaining >= 2 && is(opt, "LIMIT") {
            q.limit = non_negative(arg(args, j + 1)?, "ERR LIMIT can't be negative")?;
            j += 2;
        } else {
            return Err(err(SYNTAX));
        }
    }
    Ok(q)
}

impl SetOpQuery {
    /// The result, in index order (score, member).
    fn run(&self, ctx: &mut Ctx<'_>) -> Result<Vec<Scored>, CmdError> {
        let mut out = match self.op {
            SetOp::Union => self.union(ctx)?,
            SetOp::Inter => self.inter(ctx, u64::MAX)?,
            SetOp::Diff => self.diff(ctx)?,
        };
        out.sort_by(Scored::index_cmp);
        Ok(out)
    }

    /// The inputs from the smallest, as Redis orders them for union and
    /// intersection.
    fn by_size(&self) -> Vec<&Source> {
        let mut v: Vec<&Source> = self.sources.iter().collect();
        v.sort_by_key(|s| s.size);
        v
    }

    fn union(&self, ctx: &mut Ctx<'_>) -> Result<Vec<Scored>, CmdError> {
        let total = self
            .sources
            .iter()
            .map(|s| s.size)
            .fold(0u64, u64::saturating_add);
        if total > MAX_READ_MEMBERS as u64 {
            return Err(too_many_read());
        }
        let mut acc: BTreeMap<Bytes, f64> = BTreeMap::new();
        for source in self.by_size() {
            if source.size == 0 {
                continue;
            }
            let mut walk = source.walk();
            loop {
                let rows = walk.next(ctx, store::WALK_CHUNK)?;
                if rows.is_empty() {
                    break;
                }
                for m in rows {
                    let s = weighted(source.weight, m.score);
                    acc.entry(m.member)
                        .and_modify(|a| *a = self.aggregate.apply(*a, s))
                        .or_insert(s);
                }
            }
        }
        Ok(acc
            .into_iter()
            .map(|(member, s)| Scored {
                member,
                score: normalize(s),
            })
            .collect())
    }

    /// The intersection, stopping after `limit` members.
    fn inter(&self, ctx: &mut Ctx<'_>, limit: u64) -> Result<Vec<Scored>, CmdError> {
        let order = self.by_size();
        let Some((first, others)) = order.split_first() else {
            return Ok(Vec::new());
        };
        if first.size == 0 {
            return Ok(Vec::new());
        }
        if first.size > MAX_READ_MEMBERS as u64 {
            return Err(too_many_read());
        }
        let mut out = Vec::new();
        let mut walk = first.walk();
        loop {
            let rows = walk.next(ctx, store::WALK_CHUNK)?;
            if rows.is_empty() {
                return Ok(out);
            }
            for m in rows {
                let Some(s) = self.combined(ctx, first, others, &m)? else {
                    continue;
                };
                out.push(Scored {
                    member: m.member,
                    score: normalize(s),
                });
                if out.len() as u64 >= limit {
                    return Ok(out);
                }
            }
        }
    }

    /// `m`'s (from `first`) aggregated score if every other input has it.
    fn combined(
        &self,
        ctx: &mut Ctx<'_>,
        first: &Source,
        others: &[&Source],
        m: &Scored,
    ) -> Result<Option<f64>, CmdError> {
        let mut acc = weighted(first.weight, m.score);
        for other in others {
            match other.score(ctx, &m.member)? {
                Some(s) => acc = self.aggregate.apply(acc, weighted(other.weight, s)),
                None => return Ok(None),
            }
        }
        Ok(Some(acc))
    }

    fn diff(&self, ctx: &mut Ctx<'_>) -> Result<Vec<Scored>, CmdError> {
        let Some((first, others)) = self.sources.split_first() else {
            return Ok(Vec::new());
        };
        if first.size == 0 {
            return Ok(Vec::new());
        }
        if first.size > MAX_READ_MEMBERS as u64 {
            return Err(too_many_read());
        }
        let mut out = Vec::new();
        let mut walk = first.walk();
        loop {
            let rows = walk.next(ctx, store::WALK_CHUNK)?;
            if rows.is_empty() {
                return Ok(out);
            }
            'member: for m in rows {
                for other in others {
                    if other.score(ctx, &m.member)?.is_some() {
                        continue 'member;
                    }
                }
                out.push(m);
            }
        }
    }
}

fn setop_store(ctx: &mut Ctx<'_>, args: &[Bytes], op: SetOp, name: &str) -> CmdResult {
    let q = parse_setop(ctx, args, 2, op, name, true, false)?;
    let members = q.run(ctx)?;
    Ok(integer(ZSet::store(ctx, arg(args, 1)?, &members)?))
}

fn setop_reply(ctx: &mut Ctx<'_>, args: &[Bytes], op: SetOp, name: &str) -> CmdResult {
    let q = parse_setop(ctx, args, 1, op, name, false, false)?;
    let members = q.run(ctx)?;
    Ok(members_reply(members, q.withscores))
}

fn zunionstore(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    setop_store(ctx, args, SetOp::Union, "zunionstore")
}

fn zinterstore(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    setop_store(ctx, args, SetOp::Inter, "zinterstore")
}

fn zdiffstore(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    setop_store(ctx, args, SetOp::Diff, "zdiffstore")
}

fn zunion(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    setop_reply(ctx, args, SetOp::Union, "zunion")
}

fn zinter(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    setop_reply(ctx, args, SetOp::Inter, "zinter")
}

fn zdiff(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    setop_reply(ctx, args, SetOp::Diff, "zdiff")
}

fn zintercard(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let q = parse_setop(ctx, args, 1, SetOp::Inter, "zintercard", false, true)?;
    let limit = if q.limit == 0 { u64::MAX } else { q.limit };
    Ok(integer(q.inter(ctx, limit)?.len() as u64))
}

// ------------------------------------------------------------ ZRANDMEMBER

/// `ZRANDMEMBER`'s count range: ±`i64::MAX`.
const RANDMEMBER_RANGE: &str =
    "ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807";

fn zrandmember(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let key = arg(args, 1)?;
    if let Some(count) = args.get(2) {
        let n = int(count)?;
        if n == i64::MIN {
            return Err(err(RANDMEMBER_RANGE));
        }
        let withscores = match args.get(3..).unwrap_or_default() {
            [] => false,
            [w] if is_withscores(w) => true,
            _ => return Err(err(SYNTAX)),
        };
        if withscores && !(-(i64::MAX / 2)..=i64::MAX / 2).contains(&n) {
            return Err(err("ERR value is out of range"));
        }
        return random_members(ctx, key, n, withscores);
    }
    let Some(z) = ZSet::load(ctx, key)? else {
        return Ok(Frame::Null);
    };
    let rank = ctx.rng.next_u64() % z.size.max(1);
    let member = z.at_ranks(ctx, &[rank])?.pop().ok_or_else(short_index)?;
    Ok(Frame::Bulk(member.member))
}

/// `ZRANDMEMBER key count`: `count` distinct members (the whole set when
/// it has no more), or with a negative count that many picks with
/// repetition.
fn random_members(ctx: &mut Ctx<'_>, key: &Bytes, n: i64, withscores: bool) -> CmdResult {
    let Some(z) = ZSet::load(ctx, key)? else {
        return Ok(Frame::Array(Vec::new()));
    };
    let wanted = n.unsigned_abs();
    if n == 0 {
        return Ok(Frame::Array(Vec::new()));
    }
    if n > 0 && wanted >= z.size {
        return Ok(members_reply(
            Walk::all(&z.key, false).rest(ctx)?,
            withscores,
        ));
    }
    if wanted > MAX_READ_MEMBERS as u64 {
        return Err(too_many_read());
    }
    let picked = if n < 0 {
        let picks: Vec<u64> = (0..wanted).map(|_| ctx.rng.next_u64() % z.size).collect();
        let distinct: Vec<u64> = picks
            .iter()
            .copied()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let found = z.at_ranks(ctx, &distinct)?;
        picks
            .iter()
            .map(|r| {
                distinct
                    .binary_search(r)
                    .ok()
                    .and_then(|i| found.get(i).cloned())
                    .ok_or_else(short_index)
            })
            .collect::<Result<Vec<_>, CmdError>>()?
    } else {
        let ranks: Vec<u64> = sample(ctx, z.size, wanted).into_iter().collect();
        let mut found = z.at_ranks(ctx, &ranks)?;
        shuffle(ctx, &mut found);
        found
    };
    Ok(members_reply(picked, withscores))
}

/// `k` distinct numbers below `n` (Floyd's algorithm), from the command's
/// deterministic randomness.
fn sample(ctx: &mut Ctx<'_>, n: u64, k: u64) -> BTreeSet<u64> {
    let mut chosen = BTreeSet::new();
    for j in n - k..n {
        let t = ctx.rng.next_u64() % (j + 1);
        if !chosen.insert(t) {
            chosen.insert(j);
        }
    }
    chosen
}

/// Fisher–Yates, from the command's deterministic randomness.
fn shuffle<T>(ctx: &mut Ctx<'_>, items: &mut [T]) {
    for i in (1..items.len()).rev() {
        let j = usize::try_from(ctx.rng.next_u64() % (i as u64 + 1)).unwrap_or(0);
        items.swap(i, j);
    }
}

// ------------------------------------------------------------------ ZSCAN

fn zscan(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let cursor = std::str::from_utf8(arg(args, 2)?)
        .ok()
        .and_then(|c| c.parse::<u64>().ok())
        .ok_or_else(|| err("ERR invalid cursor"))?;
    let Some(z) = ZSet::load(ctx, arg(args, 1)?)? else {
        return Ok(scan_reply(0, Vec::new()));
    };
    let (mut pattern, mut count) = (None, 10usize);
    let mut i = 3;
    while let Some(opt) = args.get(i) {
        let value = args.get(i + 1).ok_or_else(|| err(SYNTAX))?;
        if is(opt, "COUNT") {
            let n = int(value)?;
            if n < 1 {
                return Err(err(SYNTAX));
            }
            count = usize::try_from(n)
                .unwrap_or(usize::MAX)
                .min(MAX_READ_MEMBERS);
        } else if is(opt, "MATCH") {
            pattern = Some(value.clone()).filter(|p| p.as_ref() != b"*");
        } else {
            return Err(err(SYNTAX));
        }
        i += 2;
    }
    let (next, members) = scan::step(ctx, &z, cursor, count)?;
    let items = members
        .into_iter()
        .filter(|m| {
            pattern
                .as_ref()
                .is_none_or(|p| glob_match(p, &m.member, false))
        })
        .flat_map(|m| [Frame::Bulk(m.member), Frame::Bulk(double_text(m.score))])
        .collect();
    Ok(scan_reply(next, items))
}

fn scan_reply(cursor: u64, items: Vec<Frame>) -> Frame {
    Frame::Array(vec![
        Frame::Bulk(Bytes::from(cursor.to_string())),
        Frame::Array(items),
    ])
}
