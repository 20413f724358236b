//! Strings: `GET SET …`, counters, ranges, `LCS`.

use bytes::{Bytes, BytesMut};
use seshat_kv::{Kind, Record};
use seshat_protocol_resp::Frame;

use crate::args::{arg, float, format_float, int, is};
use crate::decl::{data, prepared, Decl, Flags, Group, Handler, KeySpec};
use crate::exec::Ctx;
use crate::families::{string_record, string_value};
use crate::reply::{err, wrong_type, CmdError, CmdResult, OVERFLOW, STRING_TOO_LONG, SYNTAX};
use crate::MAX_STRING_BYTES;

const WD: Flags = Flags::WRITE.with(Flags::DENYOOM);
const WDF: Flags = WD.with(Flags::FAST);
const WF: Flags = Flags::WRITE.with(Flags::FAST);
const RF: Flags = Flags::READONLY.with(Flags::FAST);
const R: Flags = Flags::READONLY;

const fn cmd(
    name: &'static str,
    arity: i32,
    flags: Flags,
    keys: KeySpec,
    docs: (&'static str, &'static str),
    handler: Handler,
) -> Decl {
    Decl::new(name, arity, flags, keys, Group::String, docs, handler)
}

const ONE: KeySpec = KeySpec::ONE;

/// The string commands.
pub static COMMANDS: &[Decl] = &[
    cmd("get", 2, RF, ONE, ("Returns the string value of a key.", "1.0.0"), data(get)),
    cmd("set", -3, WD, ONE, ("Sets the string value of a key, ignoring its type. The key is created if it doesn't exist.", "1.0.0"), prepared(set, prepare_set)),
    cmd("setnx", 3, WDF, ONE, ("Set the string value of a key only when the key doesn't exist.", "1.0.0"), data(setnx)),
    cmd("setex", 4, WD, ONE, ("Sets the string value and expiration time of a key. Creates the key if it doesn't exist.", "2.0.0"), prepared(setex, prepare_setex)),
    cmd("psetex", 4, WD, ONE, ("Sets both string value and expiration time in milliseconds of a key. The key is created if it doesn't exist.", "2.6.0"), prepared(psetex, prepare_psetex)),
    cmd("getset", 3, WDF, ONE, ("Returns the previous string value of a key after setting it to a new value.", "1.0.0"), data(getset)),
    cmd("getdel", 2, WF, ONE, ("Returns the string value of a key after deleting the key.", "6.2.0"), data(getdel)),
    cmd("getex", -2, WF, ONE, ("Returns the string value of a key after setting its expiration time.", "6.2.0"), prepared(getex, prepare_getex)),
    cmd("mget", -2, RF, KeySpec::ALL, ("Atomically returns the string values of one or more keys.", "1.0.0"), data(mget)),
    cmd("mset", -3, WD, KeySpec::new(1, -1, 2), ("Atomically creates or modifies the string values of one or more keys.", "1.0.1"), prepared(mset, check_pairs)),
    cmd("msetnx", -3, WD, KeySpec::new(1, -1, 2), ("Atomically modifies the string values of one or more keys only when all keys don't exist.", "1.0.1"), prepared(msetnx, check_pairs)),
    cmd("append", 3, WDF, ONE, ("Appends a string to the value of a key. Creates the key if it doesn't exist.", "2.0.0"), data(append)),
    cmd("strlen", 2, RF, ONE, ("Returns the length of a string value.", "2.2.0"), data(strlen)),
    cmd("getrange", 4, R, ONE, ("Returns a substring of the string stored at a key.", "2.4.0"), data(getrange)),
    cmd("substr", 4, R, ONE, ("Returns a substring from a string value.", "1.0.0"), data(getrange)),
    cmd("setrange", 4, WD, ONE, ("Overwrites a part of a string value with another by an offset. Creates the key if it doesn't exist.", "2.2.0"), data(setrange)),
    cmd("incr", 2, WDF, ONE, ("Increments the integer value of a key by one. Uses 0 as initial value if the key doesn't exist.", "1.0.0"), data(incr)),
    cmd("decr", 2, WDF, ONE, ("Decrements the integer value of a key by one. Uses 0 as initial value if the key doesn't exist.", "1.0.0"), data(decr)),
    cmd("incrby", 3, WDF, ONE, ("Increments the integer value of a key by a number. Uses 0 as initial value if the key doesn't exist.", "1.0.0"), data(incrby)),
    cmd("decrby", 3, WDF, ONE, ("Decrements a number from the integer value of a key. Uses 0 as initial value if the key doesn't exist.", "1.0.0"), data(decrby)),
    cmd("incrbyfloat", 3, WDF, ONE, ("Increment the floating point value of a key by a number. Uses 0 as initial value if the key doesn't exist.", "2.6.0"), data(incrbyfloat)),
    cmd("lcs", -3, R, KeySpec::new(1, 2, 1), ("Finds the longest common substring.", "7.0.0"), data(lcs)),
];

fn get(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    Ok(string_value(ctx, arg(args, 1)?)?.map_or(Frame::Null, Frame::Bulk))
}

/// How a write sets a key's expiry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expiry {
    /// Keep the key's current expiry.
    Keep,
    /// Relative, in ms from the time the command runs.
    In(i64),
    /// Absolute Unix ms.
    At(i64),
}

impl Expiry {
    /// The absolute time at `now_ms`, or Redis's error for `cmd`.
    fn at(self, now_ms: u64, cmd: &str) -> Result<Option<u64>, CmdError> {
        let now = i64::try_from(now_ms).unwrap_or(i64::MAX);
        let at = match self {
            Expiry::Keep => return Ok(None),
            Expiry::In(ms) => ms.checked_add(now).ok_or_else(|| invalid_expire(cmd))?,
            Expiry::At(ms) => ms,
        };
        // A time at or before the epoch is already past; 0 means "no
        // expiry" on disk, so clamp to 1 ms.
        Ok(Some(u64::try_from(at).unwrap_or(0).max(1)))
    }
}

fn invalid_expire(cmd: &str) -> CmdError {
    err(format!("ERR invalid expire time in '{cmd}' command"))
}

/// Parses an expiry amount in `unit_ms` milliseconds as Redis does: a
/// positive integer whose product does not overflow.
fn expiry_amount(text: &[u8], unit_ms: i64, cmd: &str) -> Result<i64, CmdError> {
    let n = int(text)?;
    if n <= 0 {
        return Err(invalid_expire(cmd));
    }
    n.checked_mul(unit_ms).ok_or_else(|| invalid_expire(cmd))
}

/// The `EX/PX/EXAT/PXAT` option named `opt` with its value.
fn timed(opt: &[u8], value: &[u8], cmd: &str) -> Option<Result<Expiry, CmdError>> {
    let (unit, absolute) = if is(opt, "EX") {
        (1000, false)
    } else if is(opt, "PX") {
        (1, false)
    } else if is(opt, "EXAT") {
        (1000, true)
    } else if is(opt, "PXAT") {
        (1, true)
    } else {
        return None;
    };
    Some(expiry_amount(value, unit, cmd).map(|ms| {
        if absolute {
            Expiry::At(ms)
        } else {
            Expiry::In(ms)
        }
    }))
}

#[derive(Debug, Default)]
struct SetOpts {
    nx: bool,
    xx: bool,
    get: bool,
    expiry: Option<Expiry>,
}

/// `SET key value [NX|XX] [GET] [EX s|PX ms|EXAT s|PXAT ms|KEEPTTL]`, with
/// Redis's order of checks: all syntax first, then the expiry's value.
fn parse_set(args: &[Bytes]) -> Result<SetOpts, CmdError> {
    let mut o = SetOpts::default();
    let mut timed_opt: Option<(&Bytes, &Bytes)> = None;
    let mut keep = false;
    let mut i = 3;
    while let Some(opt) = args.get(i) {
        let next = args.get(i + 1);
        let no_expiry = timed_opt.is_none() && !keep;
        if is(opt, "NX") && !o.xx {
            o.nx = true;
        } else if is(opt, "XX") && !o.nx {
            o.xx = true;
        } else if is(opt, "GET") {
            o.get = true;
        } else if is(opt, "KEEPTTL") && timed_opt.is_none() {
            keep = true;
        } else if let (Some(value), true, true) = (
            next,
            no_expiry || timed_opt.is_some_and(|(o2, _)| o2.eq_ignore_ascii_case(opt)),
            ["EX", "PX", "EXAT", "PXAT"].iter().any(|k| is(opt, k)),
        ) {
            timed_opt = Some((opt, value));
            i += 1;
        } else {
            return Err(err(SYNTAX));
        }
        i += 1;
    }
    if keep {
        o.expiry = Some(Expiry::Keep);
    }
    if let Some((opt, value)) = timed_opt {
        if let Some(e) = timed(opt, value, "set") {
            o.expiry = Some(e?);
        }
    }
    Ok(o)
}

/// Writes `value` to `key` as a string with expiry `expire_at` (`None`
/// keeps none), deleting it instead when that time has already passed.
fn write_string(
    ctx: &mut Ctx<'_>,
    key: &[u8],
    value: Bytes,
    expire_at: Option<u64>,
) -> Result<(), CmdError> {
    let mut record = Record::string(value);
    record.expire_at_ms = expire_at.unwrap_or(0);
    if record.is_expired(ctx.now_ms()) {
        ctx.db.delete(key)?;
    } else {
        ctx.db.put(key, record)?;
    }
    Ok(())
}

fn set(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let o = parse_set(args)?;
    let (key, value) = (arg(args, 1)?, arg(args, 2)?);
    let old = ctx.db.get(key)?;
    let old_value = if o.get {
        match &old {
            Some(r) if r.kind != Kind::String => return Err(wrong_type()),
            Some(r) => Frame::Bulk(r.payload.clone()),
            None => Frame::Null,
        }
    } else {
        Frame::ok()
    };
    let exists = old.is_some();
    if (o.nx && exists) || (o.xx && !exists) {
        return Ok(if o.get { old_value } else { Frame::Null });
    }
    let expire_at = match o.expiry {
        Some(Expiry::Keep) => old.as_ref().map(|r| r.expire_at_ms).filter(|at| *at != 0),
        Some(e) => e.at(ctx.now_ms(), "set")?,
        None => None,
    };
    write_string(ctx, key, value.clone(), expire_at)?;
    Ok(old_value)
}

/// `SET`'s preparation: checks the syntax and makes `EX`/`PX` absolute
/// (`PXAT`), as Redis rewrites what it propagates.
fn prepare_set(args: &[Bytes], now_ms: u64) -> Result<Option<Vec<Bytes>>, Frame> {
    let o = parse_set(args).map_err(CmdError::into_frame)?;
    let Some(Expiry::In(ms)) = o.expiry else {
        return Ok(None);
    };
    let at = Expiry::In(ms)
        .at(now_ms, "set")
        .map_err(CmdError::into_frame)?
        .unwrap_or(1);
    let mut out: Vec<Bytes> = args.iter().take(3).cloned().collect();
    if o.nx {
        out.push(Bytes::from_static(b"NX"));
    }
    if o.xx {
        out.push(Bytes::from_static(b"XX"));
    }
    if o.get {
        out.push(Bytes::from_static(b"GET"));
    }
    out.push(Bytes::from_static(b"PXAT"));
    out.push(Bytes::from(at.to_string()));
    Ok(Some(out))
}

fn setnx(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let key = arg(args, 1)?;
    if ctx.db.get(key)?.is_some() {
        return Ok(Frame::Integer(0));
    }
    write_string(ctx, key, arg(args, 2)?.clone(), None)?;
    Ok(Frame::Integer(1))
}

/// `SETEX`/`PSETEX key amount value` at `unit_ms`.
fn set_with_expiry(ctx: &mut Ctx<'_>, args: &[Bytes], unit_ms: i64, name: &str) -> CmdResult {
    let amount = expiry_amount(arg(args, 2)?, unit_ms, name)?;
    let at = Expiry::In(amount).at(ctx.now_ms(), name)?;
    write_string(ctx, arg(args, 1)?, arg(args, 3)?.clone(), at)?;
    Ok(Frame::ok())
}

fn setex(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    set_with_expiry(ctx, args, 1000, "setex")
}

fn psetex(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    set_with_expiry(ctx, args, 1, "psetex")
}

/// `SETEX`/`PSETEX` become `SET key value PXAT t`.
fn prepare_timed_set(
    args: &[Bytes],
    now_ms: u64,
    unit_ms: i64,
    name: &str,
) -> Result<Option<Vec<Bytes>>, Frame> {
    let amount = arg(args, 2)
        .and_then(|a| expiry_amount(a, unit_ms, name))
        .and_then(|ms| Expiry::In(ms).at(now_ms, name))
        .map_err(CmdError::into_frame)?
        .unwrap_or(1);
    let (Some(key), Some(value)) = (args.get(1), args.get(3)) else {
        return Ok(None);
    };
    Ok(Some(vec![
        Bytes::from_static(b"SET"),
        key.clone(),
        value.clone(),
        Bytes::from_static(b"PXAT"),
        Bytes::from(at_text(amount)),
    ]))
}

fn at_text(at: u64) -> String {
    at.to_string()
}

fn prepare_setex(args: &[Bytes], now_ms: u64) -> Result<Option<Vec<Bytes>>, Frame> {
    prepare_timed_set(args, now_ms, 1000, "setex")
}

fn prepare_psetex(args: &[Bytes], now_ms: u64) -> Result<Option<Vec<Bytes>>, Frame> {
    prepare_timed_set(args, now_ms, 1, "psetex")
}

fn getset(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let key = arg(args, 1)?;
    let old = string_value(ctx, key)?;
    write_string(ctx, key, arg(args, 2)?.clone(), None)?;
    Ok(old.map_or(Frame::Null, Frame::Bulk))
}

fn getdel(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let key = arg(args, 1)?;
    let Some(old) = string_value(ctx, key)? else {
        return Ok(Frame::Null);
    };
    ctx.db.delete(key)?;
    Ok(Frame::Bulk(old))
}

/// What `GETEX` does to the expiry.
enum GetExOp {
    Nothing,
    Persist,
    Set(Expiry),
}

fn parse_getex(args: &[Bytes]) -> Result<GetExOp, CmdError> {
    let mut op = GetExOp::Nothing;
    let mut i = 2;
    while let Some(opt) = args.get(i) {
        let first = matches!(op, GetExOp::Nothing);
        if is(opt, "PERSIST") && first {
            op = GetExOp::Persist;
        } else if let (Some(value), true) = (args.get(i + 1), first) {
            match timed(opt, value, "getex") {
                Some(e) => op = GetExOp::Set(e?),
                None => return Err(err(SYNTAX)),
            }
            i += 1;
        } else {
            return Err(err(SYNTAX));
        }
        i += 1;
    }
    Ok(op)
}

fn getex(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let op = parse_getex(args)?;
    let key = arg(args, 1)?;
    let Some(record) = string_record(ctx, key)? else {
        return Ok(Frame::Null);
    };
    let value = record.payload.clone();
    match op {
        GetExOp::Nothing => {}
        GetExOp::Persist if record.expire_at_ms == 0 => {}
        GetExOp::Persist => write_string(ctx, key, record.payload, None)?,
        GetExOp::Set(e) => {
            let at = e.at(ctx.now_ms(), "getex")?;
            write_string(ctx, key, record.payload, at)?;
        }
    }
    Ok(Frame::Bulk(value))
}

/// `GETEX … EX/PX` becomes `GETEX … PXAT`.
fn prepare_getex(args: &[Bytes], now_ms: u64) -> Result<Option<Vec<Bytes>>, Frame> {
    match parse_getex(args).map_err(CmdError::into_frame)? {
        GetExOp::Set(e @ Expiry::In(_)) => {
            let at = e
                .at(now_ms, "getex")
                .map_err(CmdError::into_frame)?
                .unwrap_or(1);
            let key = arg(args, 1).map_err(CmdError::into_frame)?;
            Ok(Some(vec![
                Bytes::from_static(b"GETEX"),
                key.clone(),
                Bytes::from_static(b"PXAT"),
                Bytes::from(at_text(at)),
            ]))
        }
        _ => Ok(None),
    }
}

fn mget(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let mut out = Vec::with_capacity(args.len().saturating_sub(1));
    for key in args.iter().skip(1) {
        out.push(match ctx.db.get(key)? {
            Some(r) if r.kind == Kind::String => Frame::Bulk(r.payload),
            _ => Frame::Null,
        });
    }
    Ok(Frame::Array(out))
}

/// `MSET`/`MSETNX` need key/value pairs.
fn check_pairs(args: &[Bytes], _now_ms: u64) -> Result<Option<Vec<Bytes>>, Frame> {
    pairs_ok(args).map_err(CmdError::into_frame)?;
    Ok(None)
}

fn pairs_ok(args: &[Bytes]) -> Result<(), CmdError> {
    if args.len().is_multiple_of(2) {
        let name = args
            .first()
            .map(|n| String::from_utf8_lossy(n).to_ascii_lowercase())
            .unwrap_or_default();
        return Err(crate::reply::wrong_arity(&name));
    }
    Ok(())
}

fn mset(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    pairs_ok(args)?;
    for pair in args.get(1..).unwrap_or_default().chunks_exact(2) {
        if let [key, value] = pair {
            write_string(ctx, key, value.clone(), None)?;
        }
    }
    Ok(Frame::ok())
}

fn msetnx(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    pairs_ok(args)?;
    let pairs = args.get(1..).unwrap_or_default();
    for key in pairs.iter().step_by(2) {
        if ctx.db.get(key)?.is_some() {
            return Ok(Frame::Integer(0));
        }
    }
    for pair in pairs.chunks_exact(2) {
        if let [key, value] = pair {
            write_string(ctx, key, value.clone(), None)?;
        }
    }
    Ok(Frame::Integer(1))
}

/// Writes a string's new bytes keeping the key's expiry; `in_place`
/// marks it changed in place (Redis's `raw` encoding).
fn update_string(
    ctx: &mut Ctx<'_>,
    key: &[u8],
    old: Option<Record>,
    value: Bytes,
    in_place: bool,
) -> Result<(), CmdError> {
    let mut record = Record::string(value);
    record.expire_at_ms = old.map_or(0, |r| r.expire_at_ms);
    record.raw = in_place;
    if record.is_expired(ctx.now_ms()) {
        ctx.db.delete(key)?;
    } else {
        ctx.db.put(key, record)?;
    }
    Ok(())
}

fn append(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let (key, tail) = (arg(args, 1)?, arg(args, 2)?);
    let old = string_record(ctx, key)?;
    let head = old.as_ref().map(|r| r.payload.clone()).unwrap_or_default();
    let len = head.len().saturating_add(tail.len());
    if len > MAX_STRING_BYTES {
        return Err(err(STRING_TOO_LONG));
    }
    let mut value = BytesMut::with_capacity(len);
    value.extend_from_slice(&head);
    value.extend_from_slice(tail);
    update_string(ctx, key, old, value.freeze(), true)?;
    Ok(Frame::Integer(len_i64(len)))
}

fn len_i64(len: usize) -> i64 {
    i64::try_from(len).unwrap_or(i64::MAX)
}

fn strlen(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let len = string_value(ctx, arg(args, 1)?)?.map_or(0, |v| v.len());
    Ok(Frame::Integer(len_i64(len)))
}

/// Redis's `GETRANGE` index arithmetic: negative from the end, clamped.
fn range_of(len: usize, start: i64, end: i64) -> Option<(usize, usize)> {
    let len = i64::try_from(len).ok()?;
    if start < 0 && end < 0 && start > end {
        return None;
    }
    let start = if start < 0 {
        (len + start).max(0)
    } else {
        start
    };
    let end = if end < 0 { (len + end).max(0) } else { end };
    let end = end.min(len - 1);
    if start > end || len == 0 {
        return None;
    }
    Some((usize::try_from(start).ok()?, usize::try_from(end).ok()?))
}

fn getrange(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let (start, end) = (int(arg(args, 2)?)?, int(arg(args, 3)?)?);
    let value = string_value(ctx, arg(args, 1)?)?.unwrap_or_default();
    Ok(Frame::Bulk(match range_of(value.len(), start, end) {
        Some((s, e)) => value.slice(s..=e),
        None => Bytes::new(),
    }))
}

fn setrange(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let key = arg(args, 1)?;
    let offset = int(arg(args, 2)?)?;
    let patch = arg(args, 3)?;
    let offset = usize::try_from(offset).map_err(|_| err("ERR offset is out of range"))?;
    let old = string_record(ctx, key)?;
    let current = old.as_ref().map(|r| r.payload.clone()).unwrap_or_default();
    if patch.is_empty() {
        return Ok(Frame::Integer(len_i64(current.len())));
    }
    let end = offset.saturating_add(patch.len());
    if end > MAX_STRING_BYTES {
        return Err(err(STRING_TOO_LONG));
    }
    let mut value = BytesMut::from(&current[..]);
    if value.len() < end {
        value.resize(end, 0);
    }
    if let Some(dst) = value.get_mut(offset..end) {
        dst.copy_from_slice(patch);
    }
    let len = value.len();
    update_string(ctx, key, old, value.freeze(), true)?;
    Ok(Frame::Integer(len_i64(len)))
}

/// Adds `delta` to the integer at `key`.
fn add(ctx: &mut Ctx<'_>, key: &[u8], delta: i64) -> CmdResult {
    let old = string_record(ctx, key)?;
    let current = match &old {
        Some(r) => parse_stored_int(&r.payload)?,
        None => 0,
    };
    let next = current.checked_add(delta).ok_or_else(|| err(OVERFLOW))?;
    update_string(ctx, key, old, Bytes::from(next.to_string()), false)?;
    Ok(Frame::Integer(next))
}

fn parse_stored_int(value: &[u8]) -> Result<i64, CmdError> {
    int(value)
}

fn incr(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    add(ctx, arg(args, 1)?, 1)
}

fn decr(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    add(ctx, arg(args, 1)?, -1)
}

fn incrby(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let delta = int(arg(args, 2)?)?;
    add(ctx, arg(args, 1)?, delta)
}

fn decrby(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let delta = int(arg(args, 2)?)?;
    let delta = delta
        .checked_neg()
        .ok_or_else(|| err("ERR decrement would overflow"))?;
    add(ctx, arg(args, 1)?, delta)
}

fn incrbyfloat(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let key = arg(args, 1)?;
    let old = string_record(ctx, key)?;
    let current = match &old {
        Some(r) => float(&r.payload)?,
        None => 0.0,
    };
    let delta = float(arg(args, 2)?)?;
    let next = current + delta;
    if !next.is_finite() {
        return Err(err("ERR increment would produce NaN or Infinity"));
    }
    let text = Bytes::from(format_float(next));
    update_string(ctx, key, old, text.clone(), false)?;
    Ok(Frame::Bulk(text))
}

/// Most cells of the `LCS` dynamic-programming table (bounds its memory).
const LCS_MAX_CELLS: usize = 64 * 1024 * 1024;

fn lcs(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let (mut want_len, mut want_idx, mut with_match_len) = (false, false, false);
    let mut min_match = 0i64;
    let mut i = 3;
    while let Some(opt) = args.get(i) {
        if is(opt, "LEN") {
            want_len = true;
        } else if is(opt, "IDX") {
            want_idx = true;
        } else if is(opt, "WITHMATCHLEN") {
            with_match_len = true;
        } else if is(opt, "MINMATCHLEN") {
            let Some(v) = args.get(i + 1) else {
                return Err(err(SYNTAX));
            };
            min_match = int(v)?.max(0);
            i += 1;
        } else {
            return Err(err(SYNTAX));
        }
        i += 1;
    }
    if want_len && want_idx {
        return Err(err(
            "ERR If you want both the length and indexes, please just use IDX.",
        ));
    }
    let a = lcs_input(ctx, arg(args, 1)?)?;
    let b = lcs_input(ctx, arg(args, 2)?)?;
    let cells = (a.len() + 1).saturating_mul(b.len() + 1);
    if cells > LCS_MAX_CELLS {
        return Err(err(
            "ERR Insufficient memory, transient memory for LCS exceeds proto-max-bulk-len",
        ));
    }
    let table = lcs_table(&a, &b);
    let width = b.len() + 1;
    let at = |i: usize, j: usize| table.get(i * width + j).copied().unwrap_or(0);
    let total = at(a.len(), b.len());
    if want_len {
        return Ok(Frame::Integer(i64::from(total)));
    }
    // Walk back from the end collecting the common string and its ranges.
    let mut common = vec![0u8; total as usize];
    let mut idx = common.len();
    let (mut i, mut j) = (a.len(), b.len());
    let mut matches = Vec::new();
    let mut run: Option<((usize, usize), (usize, usize))> = None;
    while i > 0 && j > 0 {
        let (ai, bj) = (a.get(i - 1), b.get(j - 1));
        if ai == bj {
            idx -= 1;
            if let (Some(slot), Some(c)) = (common.get_mut(idx), ai) {
                *slot = *c;
            }
            run = match run {
                Some(((a_start, a_end), (b_start, b_end))) if a_start == i && b_start == j => {
                    Some(((i - 1, a_end), (j - 1, b_end)))
                }
                other => {
                    if let Some(r) = other {
                        matches.push(r);
                    }
                    Some(((i - 1, i - 1), (j - 1, j - 1)))
                }
            };
            i -= 1;
            j -= 1;
        } else if at(i - 1, j) > at(i, j - 1) {
            i -= 1;
        } else {
            j -= 1;
        }
    }
    if let Some(r) = run {
        matches.push(r);
    }
    if !want_idx {
        return Ok(Frame::Bulk(Bytes::from(common)));
    }
    let as_i64 = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
    let items = matches
        .into_iter()
        .filter(|((s, e), _)| as_i64(e - s + 1) >= min_match)
        .map(|((a_s, a_e), (b_s, b_e))| {
            let mut m = vec![
                Frame::Array(vec![
                    Frame::Integer(as_i64(a_s)),
                    Frame::Integer(as_i64(a_e)),
                ]),
                Frame::Array(vec![
                    Frame::Integer(as_i64(b_s)),
                    Frame::Integer(as_i64(b_e)),
                ]),
            ];
            if with_match_len {
                m.push(Frame::Integer(as_i64(a_e - a_s + 1)));
            }
            Frame::Array(m)
        })
        .collect();
    Ok(Frame::Map(vec![
        (Frame::bulk("matches"), Frame::Array(items)),
        (Frame::bulk("len"), Frame::Integer(i64::from(total))),
    ]))
}

fn lcs_input(ctx: &mut Ctx<'_>, key: &[u8]) -> Result<Bytes, CmdError> {
    match ctx.db.get(key)? {
        Some(r) if r.kind == Kind::String => Ok(r.payload),
        Some(_) => Err(err("ERR The specified keys must contain string values")),
        None => Ok(Bytes::new()),
    }
}

/// The LCS lengths table, row-major `(a.len()+1) × (b.len()+1)`.
fn lcs_table(a: &[u8], b: &[u8]) -> Vec<u32> {
    let width = b.len() + 1;
    let mut t = vec![0u32; (a.len() + 1) * width];
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let v = if a.get(i - 1) == b.get(j - 1) {
                t.get((i - 1) * width + j - 1).copied().unwrap_or(0) + 1
            } else {
                let up = t.get((i - 1) * width + j).copied().unwrap_or(0);
                let left = t.get(i * width + j - 1).copied().unwrap_or(0);
                up.max(left)
            };
            if let Some(cell) = t.get_mut(i * width + j) {
                *cell = v;
            }
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn getrange_indexes_like_redis() {
        assert_eq!(range_of(5, 0, -1), Some((0, 4)));
        assert_eq!(range_of(5, -3, -1), Some((2, 4)));
        assert_eq!(range_of(5, 3, 1), None);
        assert_eq!(range_of(5, -1, -5), None);
        assert_eq!(range_of(0, 0, -1), None);
        assert_eq!(range_of(5, 0, 100), Some((0, 4)));
        assert_eq!(range_of(5, -100, 2), Some((0, 2)));
    }
}
