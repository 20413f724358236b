//! Keys in general: existence, type, renames, copies, expiry, iteration,
//! and the whole-keyspace commands `DBSIZE` and `FLUSHALL`.

use bytes::Bytes;
use seshat_kv::{Kind, Record};
use seshat_protocol_resp::Frame;

use crate::args::{arg, glob_match, int, is};
use crate::decl::{data, prepared, Decl, Flags, Group, Handler, KeySpec};
use crate::exec::Ctx;
use crate::reply::{err, CmdError, CmdResult, NO_SUCH_KEY, SYNTAX};

const W: Flags = Flags::WRITE;
const WF: Flags = Flags::WRITE.with(Flags::FAST);
const WD: Flags = Flags::WRITE.with(Flags::DENYOOM);
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
    Decl::new(name, arity, flags, keys, Group::Generic, docs, handler)
}

const ONE: KeySpec = KeySpec::ONE;
const ALL: KeySpec = KeySpec::ALL;
const TWO: KeySpec = KeySpec::new(1, 2, 1);
const NONE: KeySpec = KeySpec::NONE;

const OBJECT_SUBCOMMANDS: &[Decl] = &[
    cmd(
        "object|encoding",
        3,
        R,
        KeySpec::new(2, 2, 1),
        ("Returns the internal encoding of a Redis object.", "2.2.3"),
        data(object_encoding),
    ),
    cmd(
        "object|refcount",
        3,
        R,
        KeySpec::new(2, 2, 1),
        ("Returns the reference count of a value of a key.", "2.2.3"),
        data(object_refcount),
    ),
];

const MEMORY_SUBCOMMANDS: &[Decl] = &[Decl::new(
    "memory|usage",
    -3,
    R,
    KeySpec::new(2, 2, 1),
    Group::Server,
    ("Estimates the memory usage of a key.", "4.0.0"),
    data(memory_usage),
)];

/// The keyspace commands.
pub static COMMANDS: &[Decl] = &[
    cmd("del", -2, W, ALL, ("Deletes one or more keys.", "1.0.0"), data(del)),
    cmd("unlink", -2, WF, ALL, ("Asynchronously deletes one or more keys.", "4.0.0"), data(del)),
    cmd("exists", -2, RF, ALL, ("Determines whether one or more keys exist.", "1.0.0"), data(exists)),
    cmd("touch", -2, RF, ALL, ("Returns the number of existing keys out of those specified after updating the time they were last accessed.", "3.2.1"), data(exists)),
    cmd("type", 2, RF, ONE, ("Determines the type of value stored at a key.", "1.0.0"), data(key_type)),
    cmd("rename", 3, W, TWO, ("Renames a key and overwrites the destination.", "1.0.0"), data(rename)),
    cmd("renamenx", 3, WF, TWO, ("Renames a key only when the target key name doesn't exist.", "1.0.0"), data(renamenx)),
    cmd("copy", -3, WD, TWO, ("Copies the value of a key to a new key.", "6.2.0"), data(copy)),
    cmd("keys", 2, R, NONE, ("Returns all key names that match a pattern.", "1.0.0"), data(keys)).with_categories(&["@dangerous"]),
    cmd("scan", -2, R, NONE, ("Iterates over the key names in the database.", "2.8.0"), data(scan)),
    cmd("randomkey", 1, R, NONE, ("Returns a random key name from the database.", "1.0.0"), data(randomkey)),
    cmd("expire", -3, WF, ONE, ("Sets the expiration time of a key in seconds.", "1.0.0"), prepared(expire, prepare_expire)),
    cmd("pexpire", -3, WF, ONE, ("Sets the expiration time of a key in milliseconds.", "2.6.0"), prepared(pexpire, prepare_expire)),
    cmd("expireat", -3, WF, ONE, ("Sets the expiration time of a key to a Unix timestamp.", "1.2.0"), prepared(expireat, prepare_expire)),
    cmd("pexpireat", -3, WF, ONE, ("Sets the expiration time of a key to a Unix milliseconds timestamp.", "2.6.0"), data(pexpireat)),
    cmd("ttl", 2, RF, ONE, ("Returns the expiration time in seconds of a key.", "1.0.0"), data(ttl)),
    cmd("pttl", 2, RF, ONE, ("Returns the expiration time in milliseconds of a key.", "2.6.0"), data(pttl)),
    cmd("expiretime", 2, RF, ONE, ("Returns the expiration time of a key as a Unix timestamp.", "7.0.0"), data(expiretime)),
    cmd("pexpiretime", 2, RF, ONE, ("Returns the expiration time of a key as a Unix milliseconds timestamp.", "7.0.0"), data(pexpiretime)),
    cmd("persist", 2, WF, ONE, ("Removes the expiration time of a key.", "2.2.0"), data(persist)),
    Decl::container("object", Group::Generic, ("A container for object introspection commands.", "2.2.3"), OBJECT_SUBCOMMANDS),
    Decl::container("memory", Group::Server, ("A container for memory diagnostics commands.", "4.0.0"), MEMORY_SUBCOMMANDS),
    Decl::new("dbsize", 1, RF, NONE, Group::Server, ("Returns the number of keys in the database.", "1.0.0"), data(dbsize)).with_categories(&["@keyspace"]),
    Decl::new("flushall", -1, W, NONE, Group::Server, ("Removes all keys from all databases.", "1.0.0"), data(flush)).with_categories(&["@keyspace", "@dangerous"]),
    Decl::new("flushdb", -1, W, NONE, Group::Server, ("Remove all keys from the current database.", "1.0.0"), data(flush)).with_categories(&["@keyspace", "@dangerous"]),
];

fn del(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let mut removed = 0;
    for key in args.iter().skip(1) {
        if ctx.db.delete(key)? {
            removed += 1;
        }
    }
    Ok(Frame::Integer(removed))
}

fn exists(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let mut n = 0;
    for key in args.iter().skip(1) {
        if ctx.db.get(key)?.is_some() {
            n += 1;
        }
    }
    Ok(Frame::Integer(n))
}

fn key_type(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let name = ctx
        .db
        .get(arg(args, 1)?)?
        .map_or("none", |r| r.kind.type_name());
    Ok(Frame::simple(name))
}

/// Moves `src` to `dst` (keeping the expiry); false if `nx` and `dst`
/// exists. `-ERR no such key` when `src` does not exist.
fn move_key(ctx: &mut Ctx<'_>, args: &[Bytes], nx: bool) -> Result<bool, CmdError> {
    let (src, dst) = (arg(args, 1)?, arg(args, 2)?);
    let Some(record) = ctx.db.get(src)? else {
        return Err(err(NO_SUCH_KEY));
    };
    if src == dst {
        return Ok(!nx);
    }
    if nx && ctx.db.get(dst)?.is_some() {
        return Ok(false);
    }
    copy_value(ctx, src, dst, record)?;
    ctx.db.delete(src)?;
    Ok(true)
}

/// Writes `record` (the value of `src`) as `dst`'s new value, with a
/// composite value's elements.
/// Most elements `RENAME`/`COPY` copy in one apply (every replica copies
/// them into one batch): a larger value is refused before anything is
/// written.
pub const MAX_COPY_ELEMENTS: u64 = 1 << 20;

fn copy_value(ctx: &mut Ctx<'_>, src: &[u8], dst: &[u8], record: Record) -> Result<(), CmdError> {
    let composite = record.kind != Kind::String;
    if composite && record.composite_meta()?.0 > MAX_COPY_ELEMENTS {
        return Err(err(format!(
            "ERR this value has more than {MAX_COPY_ELEMENTS} elements; Seshat copies at most that many in one command"
        )));
    }
    ctx.db.put(dst, record)?;
    if composite {
        ctx.db.copy_elements(src, dst)?;
    }
    Ok(())
}

fn rename(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    move_key(ctx, args, false)?;
    Ok(Frame::ok())
}

fn renamenx(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    Ok(Frame::Integer(i64::from(move_key(ctx, args, true)?)))
}

fn copy(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let (src, dst) = (arg(args, 1)?, arg(args, 2)?);
    let mut replace = false;
    let mut i = 3;
    while let Some(opt) = args.get(i) {
        if is(opt, "REPLACE") {
            replace = true;
        } else if let (true, Some(db)) = (is(opt, "DB"), args.get(i + 1)) {
            if int(db)? != 0 {
                return Err(err("ERR DB index is out of range"));
            }
            i += 1;
        } else {
            return Err(err(SYNTAX));
        }
        i += 1;
    }
    if src == dst {
        return Err(err("ERR source and destination objects are the same"));
    }
    let Some(record) = ctx.db.get(src)? else {
        return Ok(Frame::Integer(0));
    };
    if !replace && ctx.db.get(dst)?.is_some() {
        return Ok(Frame::Integer(0));
    }
    copy_value(ctx, src, dst, record)?;
    Ok(Frame::Integer(1))
}

fn keys(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let pattern = arg(args, 1)?;
    let all = pattern.as_ref() == b"*";
    let mut out = Vec::new();
    let mut cursor = 0;
    loop {
        let (next, found) = ctx.db.scan(cursor, 1024, |key, _| {
            all || glob_match(pattern, key, false)
        })?;
        out.extend(found.into_iter().map(Frame::Bulk));
        if next == 0 {
            return Ok(Frame::Array(out));
        }
        cursor = next;
    }
}

fn scan(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let cursor = std::str::from_utf8(arg(args, 1)?)
        .ok()
        .and_then(|c| c.parse::<u64>().ok())
        .ok_or_else(|| err("ERR invalid cursor"))?;
    let (mut pattern, mut count, mut kind) = (None, 10usize, None);
    let mut i = 2;
    while let Some(opt) = args.get(i) {
        let value = args.get(i + 1).ok_or_else(|| err(SYNTAX))?;
        if is(opt, "COUNT") {
            let n = int(value)?;
            if n < 1 {
                return Err(err(SYNTAX));
            }
            count = usize::try_from(n).unwrap_or(usize::MAX).min(MAX_SCAN_COUNT);
        } else if is(opt, "MATCH") {
            pattern = Some(value.clone());
        } else if is(opt, "TYPE") {
            kind = Some(value.clone());
        } else {
            return Err(err(SYNTAX));
        }
        i += 2;
    }
    let (next, found) = ctx.db.scan(cursor, count, |key, record| {
        pattern
            .as_ref()
            .is_none_or(|p| p.as_ref() == b"*" || glob_match(p, key, false))
            && kind.as_ref().is_none_or(|t| is(t, record.kind.type_name()))
    })?;
    Ok(Frame::Array(vec![
        Frame::Bulk(Bytes::from(next.to_string())),
        Frame::Array(found.into_iter().map(Frame::Bulk).collect()),
    ]))
}

/// Most keys one `SCAN` step examines, whatever `COUNT` asks.
const MAX_SCAN_COUNT: usize = 100_000;

fn randomkey(ctx: &mut Ctx<'_>, _args: &[Bytes]) -> CmdResult {
    let seed = ctx.rng.next_u64();
    Ok(ctx.db.random_key(seed)?.map_or(Frame::Null, Frame::Bulk))
}

/// `EXPIRE`-family options.
#[derive(Default)]
struct ExpireFlags {
    nx: bool,
    xx: bool,
    gt: bool,
    lt: bool,
}

fn parse_expire_flags(args: &[Bytes]) -> Result<ExpireFlags, CmdError> {
    let mut f = ExpireFlags::default();
    for opt in args.iter().skip(3) {
        if is(opt, "NX") {
            f.nx = true;
        } else if is(opt, "XX") {
            f.xx = true;
        } else if is(opt, "GT") {
            f.gt = true;
        } else if is(opt, "LT") {
            f.lt = true;
        } else {
            return Err(err(format!(
                "ERR Unsupported option {}",
                String::from_utf8_lossy(opt)
            )));
        }
    }
    if f.nx && (f.xx || f.gt || f.lt) {
        return Err(err(
            "ERR NX and XX, GT or LT options at the same time are not compatible",
        ));
    }
    if f.gt && f.lt {
        return Err(err(
            "ERR GT and LT options at the same time are not compatible",
        ));
    }
    Ok(f)
}

/// The absolute expiry (Unix ms) an `EXPIRE`-family command asks for:
/// `args[2]` in `unit_ms`, plus `base_ms` for relative forms.
fn expire_at(args: &[Bytes], unit_ms: i64, base_ms: Option<u64>) -> Result<i64, CmdError> {
    let name = args
        .first()
        .map(|n| String::from_utf8_lossy(n).to_ascii_lowercase())
        .unwrap_or_default();
    let invalid = || err(format!("ERR invalid expire time in '{name}' command"));
    let when = int(arg(args, 2)?)?;
    let when = when.checked_mul(unit_ms).ok_or_else(invalid)?;
    match base_ms {
        None => Ok(when),
        Some(base) => when
            .checked_add(i64::try_from(base).unwrap_or(i64::MAX))
            .ok_or_else(invalid),
    }
}

/// Sets `key`'s expiry to `at` (Unix ms) under `flags`; 1 if set.
fn set_expiry(ctx: &mut Ctx<'_>, args: &[Bytes], at: i64) -> CmdResult {
    let flags = parse_expire_flags(args)?;
    let key = arg(args, 1)?;
    let Some(mut record) = ctx.db.get(key)? else {
        return Ok(Frame::Integer(0));
    };
    let current = record.expire_at_ms;
    let at_u = u64::try_from(at).unwrap_or(0);
    let refused = (flags.nx && current != 0)
        || (flags.xx && current == 0)
        || (flags.gt && (current == 0 || at_u <= current))
        || (flags.lt && current != 0 && at_u >= current);
    if refused {
        return Ok(Frame::Integer(0));
    }
    if at_u <= ctx.now_ms() {
        ctx.db.delete(key)?;
    } else {
        record.expire_at_ms = at_u;
        // `update`, not `put`: a composite value keeps its elements.
        ctx.db.update(key, record)?;
    }
    Ok(Frame::Integer(1))
}

fn expire(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    parse_expire_flags(args)?;
    let at = expire_at(args, 1000, Some(ctx.now_ms()))?;
    set_expiry(ctx, args, at)
}

fn pexpire(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    parse_expire_flags(args)?;
    let at = expire_at(args, 1, Some(ctx.now_ms()))?;
    set_expiry(ctx, args, at)
}

fn expireat(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    parse_expire_flags(args)?;
    let at = expire_at(args, 1000, None)?;
    set_expiry(ctx, args, at)
}

fn pexpireat(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    parse_expire_flags(args)?;
    let at = expire_at(args, 1, None)?;
    set_expiry(ctx, args, at)
}

/// `EXPIRE`/`PEXPIRE`/`EXPIREAT` become `PEXPIREAT key ms [flags]` at
/// `now_ms`, so every replica sets the same deadline.
fn prepare_expire(args: &[Bytes], now_ms: u64) -> Result<Option<Vec<Bytes>>, Frame> {
    let name = args
        .first()
        .map(|n| n.to_ascii_lowercase())
        .unwrap_or_default();
    let (unit, base) = match &name[..] {
        b"expire" => (1000, Some(now_ms)),
        b"pexpire" => (1, Some(now_ms)),
        b"expireat" => (1000, None),
        _ => return Ok(None),
    };
    parse_expire_flags(args).map_err(CmdError::into_frame)?;
    let at = expire_at(args, unit, base).map_err(CmdError::into_frame)?;
    let mut out = vec![Bytes::from_static(b"PEXPIREAT")];
    out.extend(args.get(1).cloned());
    out.push(Bytes::from(at.to_string()));
    out.extend(args.iter().skip(3).cloned());
    Ok(Some(out))
}

/// `TTL`-family reply: -2 absent, -1 no expiry, else `f(expire_at, now)`.
fn ttl_reply(ctx: &mut Ctx<'_>, args: &[Bytes], f: fn(u64, u64) -> i64) -> CmdResult {
    let now = ctx.now_ms();
    Ok(Frame::Integer(match ctx.db.get(arg(args, 1)?)? {
        None => -2,
        Some(r) if r.expire_at_ms == 0 => -1,
        Some(r) => f(r.expire_at_ms, now).max(0),
    }))
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn ttl(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    ttl_reply(ctx, args, |at, now| {
        to_i64(at.saturating_sub(now)).saturating_add(500) / 1000
    })
}

fn pttl(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    ttl_reply(ctx, args, |at, now| to_i64(at.saturating_sub(now)))
}

fn expiretime(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    ttl_reply(ctx, args, |at, _| (to_i64(at).saturating_add(500)) / 1000)
}

fn pexpiretime(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    ttl_reply(ctx, args, |at, _| to_i64(at))
}

fn persist(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let key = arg(args, 1)?;
    match ctx.db.get(key)? {
        Some(mut r) if r.expire_at_ms != 0 => {
            r.expire_at_ms = 0;
            ctx.db.update(key, r)?;
            Ok(Frame::Integer(1))
        }
        _ => Ok(Frame::Integer(0)),
    }
}

/// Redis's longest `embstr` string.
const EMBSTR_MAX_BYTES: usize = 44;

fn object_encoding(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let key = arg(args, 2)?;
    let Some(record) = ctx.db.get(key)? else {
        return Ok(Frame::Null);
    };
    let name = match record.kind {
        Kind::String if record.raw => "raw",
        Kind::String if record.payload.len() <= 20 && int(&record.payload).is_ok() => "int",
        Kind::String if record.payload.len() <= EMBSTR_MAX_BYTES => "embstr",
        Kind::String => "raw",
        Kind::Hash | Kind::Set => super::elements::redis_encoding(ctx, key, record.kind)?,
        Kind::List => "quicklist",
        Kind::ZSet => "skiplist",
    };
    Ok(Frame::bulk(name))
}

/// Elements `MEMORY USAGE` samples by default (Redis's default).
const MEMORY_SAMPLES_DEFAULT: usize = 5;

/// `MEMORY USAGE key [SAMPLES n]`: the bytes the key takes in storage, an
/// estimate: its metadata record, plus for a composite value its size
/// times the mean size of up to `n` of its elements (0: all of them, up
/// to the most one command may read).
fn memory_usage(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let key = arg(args, 2)?;
    let mut samples = MEMORY_SAMPLES_DEFAULT;
    let mut i = 3;
    while let Some(opt) = args.get(i) {
        match args.get(i + 1) {
            Some(n) if is(opt, "SAMPLES") => {
                let n = usize::try_from(int(n)?).map_err(|_| err(SYNTAX))?;
                samples = if n == 0 { usize::MAX } else { n };
                i += 2;
            }
            _ => return Err(err(SYNTAX)),
        }
    }
    let Some(record) = ctx.db.get(key)? else {
        return Ok(Frame::Null);
    };
    let meta = key.len() + record.encode().len();
    let elements = if record.kind == Kind::String {
        0
    } else {
        let (size, _, _) = record.composite_meta()?;
        let sample = ctx
            .db
            .elements(key, None, None, samples.min(MEMORY_SAMPLES_MAX), false)?;
        let bytes: usize = sample
            .iter()
            .map(|(k, v)| key.len() + k.len() + v.len())
            .sum();
        let mean = u64::try_from(bytes / sample.len().max(1)).unwrap_or(u64::MAX);
        mean.saturating_mul(size)
    };
    Ok(Frame::Integer(to_i64(
        u64::try_from(meta)
            .unwrap_or(u64::MAX)
            .saturating_add(elements),
    )))
}

/// Most elements `MEMORY USAGE` reads.
const MEMORY_SAMPLES_MAX: usize = 1 << 20;

/// `OBJECT REFCOUNT`: Seshat never shares a value between keys, so an
/// existing key's value has exactly one reference.
fn object_refcount(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    Ok(match ctx.db.get(arg(args, 2)?)? {
        Some(_) => Frame::Integer(1),
        None => Frame::Null,
    })
}

fn dbsize(ctx: &mut Ctx<'_>, _args: &[Bytes]) -> CmdResult {
    Ok(Frame::Integer(to_i64(ctx.db.key_count())))
}

fn flush(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    match args {
        [_] => {}
        [_, mode] if is(mode, "ASYNC") || is(mode, "SYNC") => {}
        _ => return Err(err(SYNTAX)),
    }
    ctx.db.clear()?;
    Ok(Frame::ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn expire_is_rewritten_as_an_absolute_pexpireat() {
        let args = vec![b("EXPIRE"), b("k"), b("10"), b("NX")];
        let out = prepare_expire(&args, 1_000).unwrap().unwrap();
        assert_eq!(out, vec![b("PEXPIREAT"), b("k"), b("11000"), b("NX")]);
        let bad = vec![b("EXPIRE"), b("k"), b("10"), b("NX"), b("XX")];
        assert!(prepare_expire(&bad, 0).is_err());
        let huge = vec![b("EXPIRE"), b("k"), b("9223372036854775807")];
        assert_eq!(
            prepare_expire(&huge, 0).unwrap_err(),
            Frame::error("ERR invalid expire time in 'expire' command")
        );
    }
}
