//! Lists: pushes and pops at both ends, indexes and ranges, edits in the
//! middle, moves between lists.
//!
//! # Layout
//!
//! A list is its metadata record, `composite(List, size, head, tail)`, and
//! one element record per element keyed by its *position*, a big-endian
//! `u64`: element `i` (0 = the head) is at position `head + i`, and `tail`
//! is one past the last, so `size == tail - head` always. A new list starts
//! in the middle of the `u64` space ([`START_POSITION`]), so pushes go both
//! ways (2^63 each before that end's space is exhausted, refused with an
//! error). Positions are contiguous: `LINDEX`, `LSET` and `LRANGE` find
//! their elements with one seek, pops touch only what they pop, and
//! `LTRIM` is at most two range deletes.
//!
//! # Edits in the middle
//!
//! `LINSERT` and `LREM` keep positions contiguous by moving the elements on
//! the cheaper side of the edit (toward the head or toward the tail). Their
//! work at apply is bounded: one such command reads at most
//! [`MAX_EDIT_ELEMENTS`] elements (its search plus the elements it moves)
//! and moves at most [`MAX_EDIT_BYTES`]. Beyond that it is refused with an
//! error before anything is written, the same way on every replica: edit
//! long lists near their ends (`LREM key 0 …` reads the whole list, so it
//! is refused on a longer list).
//!
//! # Replies
//!
//! A reply holds at most [`MAX_REPLY_ELEMENTS`] elements and
//! [`MAX_REPLY_BYTES`] of them; a command that would return more
//! (`LRANGE`, a pop with a count, `LPOS … COUNT 0`) answers an error
//! instead of building an unbounded buffer (a pop changes nothing then).
//!
//! The blocking variants (`BLPOP`, `BRPOP`, `BLMOVE`, `BRPOPLPUSH`,
//! `BLMPOP`) are not implemented.

use std::ops::ControlFlow;

use bytes::Bytes;
use seshat_kv::{Kind, KvError, Record};
use seshat_protocol_resp::Frame;

use crate::args::{arg, int, is};
use crate::decl::{data, prepared, Decl, Flags, Group, Handler, KeySpec};
use crate::exec::Ctx;
use crate::families::typed_record;
use crate::reply::{err, wrong_arity, CmdError, CmdResult, NO_SUCH_KEY, SYNTAX};

/// Most elements one reply may hold.
pub const MAX_REPLY_ELEMENTS: usize = 1 << 20;
/// Most bytes of elements one reply may hold.
pub const MAX_REPLY_BYTES: usize = 256 << 20;
/// Most elements one `LINSERT` or `LREM` may read at apply: its search for
/// the pivot or the matches, plus the elements it moves.
pub const MAX_EDIT_ELEMENTS: usize = 1 << 17;
/// Most bytes of elements one `LINSERT` or `LREM` may move at apply.
pub const MAX_EDIT_BYTES: usize = 64 << 20;
/// The position of a new list's first element: the middle of the space.
pub const START_POSITION: u64 = 1 << 63;
/// Elements read from storage per step of a walk along a list (at most
/// this many values are held at once by a walk).
const SCAN_STEP_ELEMENTS: usize = 128;
/// Up to this many elements removed at once are deleted one by one; more
/// take one range delete (many small range tombstones slow RocksDB reads).
const POINT_DELETES_MAX: u64 = 128;

const _: () = assert!(SCAN_STEP_ELEMENTS <= MAX_EDIT_ELEMENTS);
const _: () = assert!(MAX_EDIT_ELEMENTS <= MAX_REPLY_ELEMENTS);

const WDF: Flags = Flags::WRITE.with(Flags::DENYOOM).with(Flags::FAST);
const WD: Flags = Flags::WRITE.with(Flags::DENYOOM);
const WF: Flags = Flags::WRITE.with(Flags::FAST);
const W: Flags = Flags::WRITE;
const RF: Flags = Flags::READONLY.with(Flags::FAST);
const R: Flags = Flags::READONLY;

const ONE: KeySpec = KeySpec::ONE;
const TWO: KeySpec = KeySpec::new(1, 2, 1);

const fn cmd(
    name: &'static str,
    arity: i32,
    flags: Flags,
    keys: KeySpec,
    docs: (&'static str, &'static str),
    handler: Handler,
) -> Decl {
    Decl::new(name, arity, flags, keys, Group::List, docs, handler)
}

/// The list commands.
pub static COMMANDS: &[Decl] = &[
    cmd("lpush", -3, WDF, ONE, ("Prepends one or more elements to a list. Creates the key if it doesn't exist.", "1.0.0"), data(lpush)),
    cmd("rpush", -3, WDF, ONE, ("Appends one or more elements to a list. Creates the key if it doesn't exist.", "1.0.0"), data(rpush)),
    cmd("lpushx", -3, WDF, ONE, ("Prepends one or more elements to a list only when the list exists.", "2.2.0"), data(lpushx)),
    cmd("rpushx", -3, WDF, ONE, ("Appends an element to a list only when the list exists.", "2.2.0"), data(rpushx)),
    cmd("lpop", -2, WF, ONE, ("Returns the first elements in a list after removing it. Deletes the list if the last element was popped.", "1.0.0"), prepared(lpop, check_pop)),
    cmd("rpop", -2, WF, ONE, ("Returns and removes the last elements of a list. Deletes the list if the last element was popped.", "1.0.0"), prepared(rpop, check_pop)),
    cmd("llen", 2, RF, ONE, ("Returns the length of a list.", "1.0.0"), data(llen)),
    cmd("lindex", 3, R, ONE, ("Returns an element from a list by its index.", "1.0.0"), data(lindex)),
    cmd("lset", 4, WD, ONE, ("Sets the value of an element in a list by its index.", "1.0.0"), data(lset)),
    cmd("lrange", 4, R, ONE, ("Returns a range of elements from a list.", "1.0.0"), data(lrange)),
    cmd("ltrim", 4, W, ONE, ("Removes elements from both ends a list. Deletes the list if all elements were trimmed.", "1.0.0"), prepared(ltrim, check_range)),
    cmd("lrem", 4, W, ONE, ("Removes elements from a list. Deletes the list if the last element was removed.", "1.0.0"), prepared(lrem, check_lrem)),
    cmd("linsert", 5, WD, ONE, ("Inserts an element before or after another element in a list.", "2.2.0"), prepared(linsert, check_linsert)),
    cmd("lpos", -3, R, ONE, ("Returns the index of matching elements in a list.", "6.0.6"), data(lpos)),
    cmd("lmove", 5, WD, TWO, ("Returns an element after popping it from one list and pushing it to another. Deletes the list if the last element was moved.", "6.2.0"), prepared(lmove, check_lmove)),
    cmd("rpoplpush", 3, WD, TWO, ("Returns the last element of a list after removing and pushing it to another list. Deletes the list if the last element was popped.", "1.2.0"), data(rpoplpush)),
    // Redis declares LMPOP's keys by `numkeys` (movable keys), which a
    // (first, last, step) triple cannot say: (0, 0, 0) as Redis reports,
    // with the keys after `numkeys` for routing.
    cmd("lmpop", -4, W, KeySpec::NONE.numkeys_at(1), ("Returns multiple elements from a list after removing them. Deletes the list if the last element was popped.", "7.0.0"), prepared(lmpop, check_lmpop)),
];

/// One end of a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The first element's end (`LEFT`).
    Head,
    /// The last element's end (`RIGHT`).
    Tail,
}

impl End {
    /// `LEFT` or `RIGHT`, any case.
    fn parse(text: &[u8]) -> Result<End, CmdError> {
        if is(text, "LEFT") {
            Ok(End::Head)
        } else if is(text, "RIGHT") {
            Ok(End::Tail)
        } else {
            Err(err(SYNTAX))
        }
    }
}

/// An element's field: its position, big-endian, so field order is list
/// order.
fn field(position: u64) -> [u8; 8] {
    position.to_be_bytes()
}

fn corrupt(what: String) -> CmdError {
    CmdError::Kv(KvError::Corrupt(what))
}

fn no_room() -> CmdError {
    err("ERR list position space exhausted at this end (2^63 pushes since the list was created)")
}

/// `-ERR` unless a reply of `n` elements fits [`MAX_REPLY_ELEMENTS`].
fn check_reply_len(n: u64) -> Result<(), CmdError> {
    if usize::try_from(n).is_ok_and(|n| n <= MAX_REPLY_ELEMENTS) {
        return Ok(());
    }
    Err(err(format!(
        "ERR reply would hold {n} elements, more than the {MAX_REPLY_ELEMENTS} Seshat returns at once; ask for fewer"
    )))
}

fn reply_too_large(max_bytes: usize) -> CmdError {
    err(format!(
        "ERR reply would hold more than {max_bytes} bytes, more than Seshat returns at once; ask for fewer elements"
    ))
}

/// A list as one command sees and changes it.
struct List<'k> {
    key: &'k [u8],
    /// The stored record, whose expiry is kept.
    record: Record,
    head: u64,
    tail: u64,
    /// Whether this command changed it (the metadata is then rewritten,
    /// which also marks the key modified for `WATCH`).
    changed: bool,
}

impl<'k> List<'k> {
    /// The live list at `key`, `None` if absent; `-WRONGTYPE` for another
    /// type.
    fn load(ctx: &mut Ctx<'_>, key: &'k [u8]) -> Result<Option<Self>, CmdError> {
        let Some(record) = typed_record(ctx, key, Kind::List)? else {
            return Ok(None);
        };
        let (size, head, tail) = record.composite_meta()?;
        if head >= tail || tail - head != size {
            return Err(corrupt(format!(
                "list metadata: size {size}, head {head}, tail {tail}"
            )));
        }
        Ok(Some(List {
            key,
            record,
            head,
            tail,
            changed: false,
        }))
    }

    /// A new empty list at `key`. Its metadata is stored at once, so that it
    /// replaces an expired value there (and that value's elements) before
    /// any element is written; [`List::save`] deletes it if it stays empty.
    fn create(ctx: &mut Ctx<'_>, key: &'k [u8]) -> Result<Self, CmdError> {
        let record = Record::composite(Kind::List, 0, START_POSITION, START_POSITION);
        ctx.db.put(key, record.clone())?;
        Ok(List {
            key,
            record,
            head: START_POSITION,
            tail: START_POSITION,
            changed: true,
        })
    }

    fn len(&self) -> u64 {
        self.tail - self.head
    }

    /// Writes the metadata back if this command changed the list; an
    /// emptied list is deleted, as Redis never keeps empty lists.
    fn save(self, ctx: &mut Ctx<'_>) -> Result<(), CmdError> {
        if !self.changed {
            return Ok(());
        }
        if self.len() == 0 {
            ctx.db.delete(self.key)?;
        } else {
            let record = self
                .record
                .with_composite_meta(self.len(), self.head, self.tail);
            ctx.db.update(self.key, record)?;
        }
        Ok(())
    }

    /// The index (from the head) that Redis's `index` names (negative
    /// counts from the tail), if it is inside the list.
    fn index(&self, index: i64) -> Option<u64> {
        let len = i128::from(self.len());
        let i = i128::from(index);
        let i = if i < 0 { len + i } else { i };
        (0..len)
            .contains(&i)
            .then(|| u64::try_from(i).ok())
            .flatten()
    }

    /// Redis's inclusive `start..=stop` range (negative indexes count from
    /// the tail) clamped to the list, as `[from, to)` indexes; empty when
    /// it selects nothing.
    fn range(&self, start: i64, stop: i64) -> (u64, u64) {
        let len = i128::from(self.len());
        let norm = |i: i64| {
            let i = i128::from(i);
            if i < 0 {
                len + i
            } else {
                i
            }
        };
        let start = norm(start).max(0);
        let stop = norm(stop).min(len - 1);
        if start > stop {
            return (0, 0);
        }
        let to_u64 = |i: i128| u64::try_from(i).unwrap_or(0);
        (to_u64(start), to_u64(stop + 1))
    }

    /// Room for `n` more elements at `end`, checked before any is written.
    fn check_room(&self, end: End, n: usize) -> Result<(), CmdError> {
        let n = u64::try_from(n).unwrap_or(u64::MAX);
        let room = match end {
            End::Head => self.head.checked_sub(n).is_some(),
            End::Tail => self.tail.checked_add(n).is_some(),
        };
        if room {
            Ok(())
        } else {
            Err(no_room())
        }
    }

    fn push(&mut self, ctx: &mut Ctx<'_>, end: End, value: &[u8]) -> Result<(), CmdError> {
        let position = match end {
            End::Head => {
                self.head = self.head.checked_sub(1).ok_or_else(no_room)?;
                self.head
            }
            End::Tail => {
                let position = self.tail;
                self.tail = position.checked_add(1).ok_or_else(no_room)?;
                position
            }
        };
        ctx.db.put_element(self.key, &field(position), value)?;
        self.changed = true;
        Ok(())
    }

    /// Sets the element at `index` (inside the list).
    fn set(&mut self, ctx: &mut Ctx<'_>, index: u64, value: &[u8]) -> Result<(), CmdError> {
        ctx.db
            .put_element(self.key, &field(self.head + index), value)?;
        self.changed = true;
        Ok(())
    }

    /// The element at `index` (inside the list).
    fn get(&self, ctx: &mut Ctx<'_>, index: u64) -> Result<Bytes, CmdError> {
        let position = self.head + index;
        ctx.db
            .element(self.key, &field(position))?
            .ok_or_else(|| corrupt(format!("list element at position {position} is missing")))
    }

    /// The elements at indexes `[from, to)` (inside the list), from the
    /// tail end when `rev`, in one read: the caller bounds `to - from`.
    fn read(
        &self,
        ctx: &mut Ctx<'_>,
        from: u64,
        to: u64,
        rev: bool,
    ) -> Result<Vec<Bytes>, CmdError> {
        let want = usize::try_from(to - from).unwrap_or(usize::MAX);
        let (a, b) = (field(self.head + from), field(self.head + to));
        let rows = ctx.db.elements(self.key, Some(&a), Some(&b), want, rev)?;
        if rows.len() != want {
            return Err(corrupt(format!(
                "list holds {} of the {want} elements its metadata promises in [{from}, {to})",
                rows.len()
            )));
        }
        Ok(rows.into_iter().map(|(_, v)| v).collect())
    }

    /// The elements at indexes `[from, to)` for a reply, from the tail end
    /// when `rev`: `-ERR` past [`MAX_REPLY_ELEMENTS`] elements or
    /// `max_bytes` bytes.
    fn read_reply(
        &self,
        ctx: &mut Ctx<'_>,
        from: u64,
        to: u64,
        rev: bool,
        max_bytes: usize,
    ) -> Result<Vec<Bytes>, CmdError> {
        check_reply_len(to - from)?;
        let (mut out, mut budget) = (Vec::new(), max_bytes);
        self.walk(ctx, from, to, rev, |_, value| {
            budget = budget
                .checked_sub(value.len())
                .ok_or_else(|| reply_too_large(max_bytes))?;
            out.push(value);
            Ok(ControlFlow::Continue(()))
        })?;
        Ok(out)
    }

    /// Calls `visit(index, element)` for the elements at indexes `[from,
    /// to)`, from `from` up, or with `rev` from `to - 1` down, until it
    /// breaks; reads [`SCAN_STEP_ELEMENTS`] at a time.
    fn walk(
        &self,
        ctx: &mut Ctx<'_>,
        from: u64,
        to: u64,
        rev: bool,
        mut visit: impl FnMut(u64, Bytes) -> Result<ControlFlow<()>, CmdError>,
    ) -> Result<(), CmdError> {
        let step = SCAN_STEP_ELEMENTS as u64;
        let (mut lo, mut hi) = (from, to);
        while lo < hi {
            let n = (hi - lo).min(step);
            let (a, b) = if rev { (hi - n, hi) } else { (lo, lo + n) };
            for (i, value) in (0..).zip(self.read(ctx, a, b, rev)?) {
                let index = if rev { b - 1 - i } else { a + i };
                if visit(index, value)?.is_break() {
                    return Ok(());
                }
            }
            if rev {
                hi = a;
            } else {
                lo = b;
            }
        }
        Ok(())
    }

    /// Deletes the elements at positions `[from, to)` (no metadata change).
    fn delete_positions(&self, ctx: &mut Ctx<'_>, from: u64, to: u64) -> Result<(), CmdError> {
        if to.saturating_sub(from) <= POINT_DELETES_MAX {
            for position in from..to {
                ctx.db.delete_element(self.key, &field(position))?;
            }
        } else {
            ctx.db.delete_elements(self.key, &field(from), &field(to))?;
        }
        Ok(())
    }

    /// Removes up to `count` elements at `end` and returns them in the
    /// order they were popped.
    fn pop(&mut self, ctx: &mut Ctx<'_>, end: End, count: u64) -> Result<Vec<Bytes>, CmdError> {
        let (n, len) = (count.min(self.len()), self.len());
        let (from, to) = match end {
            End::Head => (0, n),
            End::Tail => (len - n, len),
        };
        let values = self.read_reply(ctx, from, to, end == End::Tail, MAX_REPLY_BYTES)?;
        self.remove_end(ctx, end, n)?;
        Ok(values)
    }

    /// Drops `n` (at most the length) elements at `end` without reading
    /// them.
    fn remove_end(&mut self, ctx: &mut Ctx<'_>, end: End, n: u64) -> Result<(), CmdError> {
        if n == 0 {
            return Ok(());
        }
        let (from, to) = match end {
            End::Head => (self.head, self.head + n),
            End::Tail => (self.tail - n, self.tail),
        };
        self.delete_positions(ctx, from, to)?;
        match end {
            End::Head => self.head = to,
            End::Tail => self.tail = from,
        }
        self.changed = true;
        Ok(())
    }
}

/// What one middle edit (`LINSERT`, `LREM`) may still read and move; see
/// [`MAX_EDIT_ELEMENTS`] and [`MAX_EDIT_BYTES`].
struct Budget {
    command: &'static str,
    elements: usize,
    bytes: usize,
}

impl Budget {
    fn new(command: &'static str) -> Self {
        Budget {
            command,
            elements: MAX_EDIT_ELEMENTS,
            bytes: MAX_EDIT_BYTES,
        }
    }

    /// Counts one element read.
    fn read(&mut self) -> Result<(), CmdError> {
        self.elements = self.elements.checked_sub(1).ok_or_else(|| {
            err(format!(
                "ERR {} would read more than {MAX_EDIT_ELEMENTS} elements of this list, Seshat's bound on one command's work; edit long lists near their ends",
                self.command
            ))
        })?;
        Ok(())
    }

    /// Counts `len` bytes of an element to move.
    fn keep(&mut self, len: usize) -> Result<(), CmdError> {
        self.bytes = self.bytes.checked_sub(len).ok_or_else(|| {
            err(format!(
                "ERR {} would move more than {MAX_EDIT_BYTES} bytes of this list, Seshat's bound on one command's work; edit long lists near their ends",
                self.command
            ))
        })?;
        Ok(())
    }

    /// The elements at indexes `[from, to)` of `list` except those in
    /// `skip` (sorted), in order, counted against the budget.
    fn collect(
        &mut self,
        ctx: &mut Ctx<'_>,
        list: &List<'_>,
        from: u64,
        to: u64,
        skip: &[u64],
    ) -> Result<Vec<Bytes>, CmdError> {
        let mut out = Vec::new();
        list.walk(ctx, from, to, false, |i, value| {
            self.read()?;
            if skip.binary_search(&i).is_err() {
                self.keep(value.len())?;
                out.push(value);
            }
            Ok(ControlFlow::Continue(()))
        })?;
        Ok(out)
    }
}

fn integer(n: u64) -> Frame {
    Frame::Integer(i64::try_from(n).unwrap_or(i64::MAX))
}

fn bulks(values: Vec<Bytes>) -> Frame {
    Frame::Array(values.into_iter().map(Frame::Bulk).collect())
}

// ---- pushes ----

/// `LPUSH`/`RPUSH`/`LPUSHX`/`RPUSHX key element …`; `existing`: only if
/// the list exists.
fn push(ctx: &mut Ctx<'_>, args: &[Bytes], end: End, existing: bool) -> CmdResult {
    let key = arg(args, 1)?;
    let values = args.get(2..).unwrap_or_default();
    let mut list = match List::load(ctx, key)? {
        Some(list) => list,
        None if existing => return Ok(Frame::Integer(0)),
        None => List::create(ctx, key)?,
    };
    list.check_room(end, values.len())?;
    for value in values {
        list.push(ctx, end, value)?;
    }
    let len = list.len();
    list.save(ctx)?;
    Ok(integer(len))
}

fn lpush(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    push(ctx, args, End::Head, false)
}

fn rpush(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    push(ctx, args, End::Tail, false)
}

fn lpushx(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    push(ctx, args, End::Head, true)
}

fn rpushx(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    push(ctx, args, End::Tail, true)
}

// ---- pops ----

/// `LPOP`/`RPOP key [count]`'s count: `None` without one.
fn parse_pop(args: &[Bytes]) -> Result<Option<u64>, CmdError> {
    match args.len() {
        2 => Ok(None),
        3 => non_negative(arg(args, 2)?, "ERR value is out of range, must be positive").map(Some),
        _ => Err(wrong_arity(
            &String::from_utf8_lossy(arg(args, 0)?).to_ascii_lowercase(),
        )),
    }
}

/// A non-negative integer; `message` for anything else (Redis's
/// `getPositiveLongFromObjectOrReply` with a message).
fn non_negative(text: &[u8], message: &'static str) -> Result<u64, CmdError> {
    int(text)
        .ok()
        .and_then(|n| u64::try_from(n).ok())
        .ok_or_else(|| err(message))
}

/// An integer of at least 1; `message` for anything else.
fn positive(text: &[u8], message: &'static str) -> Result<u64, CmdError> {
    non_negative(text, message)
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| err(message))
}

fn pop(ctx: &mut Ctx<'_>, args: &[Bytes], end: End) -> CmdResult {
    let count = parse_pop(args)?;
    let Some(mut list) = List::load(ctx, arg(args, 1)?)? else {
        return Ok(if count.is_some() {
            Frame::NullArray
        } else {
            Frame::Null
        });
    };
    let reply = match count {
        None => {
            let value = list.pop(ctx, end, 1)?.pop();
            value.map_or(Frame::Null, Frame::Bulk)
        }
        Some(n) => bulks(list.pop(ctx, end, n)?),
    };
    list.save(ctx)?;
    Ok(reply)
}

fn lpop(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    pop(ctx, args, End::Head)
}

fn rpop(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    pop(ctx, args, End::Tail)
}

/// A write's preparation that only checks its syntax.
fn syntax<T>(parsed: Result<T, CmdError>) -> Result<Option<Vec<Bytes>>, Frame> {
    parsed.map(|_| None).map_err(CmdError::into_frame)
}

fn check_pop(args: &[Bytes], _now_ms: u64) -> Result<Option<Vec<Bytes>>, Frame> {
    syntax(parse_pop(args))
}

/// `LMPOP numkeys key … LEFT|RIGHT [COUNT count]`: the keys, the end and
/// the count.
fn parse_lmpop(args: &[Bytes]) -> Result<(&[Bytes], End, u64), CmdError> {
    const NUMKEYS: &str = "ERR numkeys should be greater than 0";
    let numkeys = positive(arg(args, 1)?, NUMKEYS)?;
    let where_at = usize::try_from(numkeys)
        .ok()
        .and_then(|n| n.checked_add(2))
        .filter(|i| *i < args.len())
        .ok_or_else(|| err(SYNTAX))?;
    let keys = args.get(2..where_at).unwrap_or_default();
    let end = End::parse(arg(args, where_at)?)?;
    let mut count = None;
    let mut rest = args.get(where_at + 1..).unwrap_or_default();
    while let Some((opt, tail)) = rest.split_first() {
        match tail.split_first() {
            Some((value, tail)) if count.is_none() && is(opt, "COUNT") => {
                count = Some(positive(value, "ERR count should be greater than 0")?);
                rest = tail;
            }
            _ => return Err(err(SYNTAX)),
        }
    }
    Ok((keys, end, count.unwrap_or(1)))
}

fn lmpop(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let (keys, end, count) = parse_lmpop(args)?;
    for key in keys {
        if let Some(mut list) = List::load(ctx, key)? {
            let values = list.pop(ctx, end, count)?;
            list.save(ctx)?;
            return Ok(Frame::Array(vec![Frame::Bulk(key.clone()), bulks(values)]));
        }
    }
    Ok(Frame::NullArray)
}

fn check_lmpop(args: &[Bytes], _now_ms: u64) -> Result<Option<Vec<Bytes>>, Frame> {
    syntax(parse_lmpop(args))
}

// ---- reads ----

fn llen(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let len = List::load(ctx, arg(args, 1)?)?.map_or(0, |l| l.len());
    Ok(integer(len))
}

fn lindex(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let Some(list) = List::load(ctx, arg(args, 1)?)? else {
        return Ok(Frame::Null);
    };
    match list.index(int(arg(args, 2)?)?) {
        Some(i) => Ok(Frame::Bulk(list.get(ctx, i)?)),
        None => Ok(Frame::Null),
    }
}

/// `LRANGE`/`LTRIM key start stop`'s indexes.
fn parse_range(args: &[Bytes]) -> Result<(i64, i64), CmdError> {
    Ok((int(arg(args, 2)?)?, int(arg(args, 3)?)?))
}

fn lrange(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let (start, stop) = parse_range(args)?;
    let Some(list) = List::load(ctx, arg(args, 1)?)? else {
        return Ok(Frame::Array(Vec::new()));
    };
    let (from, to) = list.range(start, stop);
    Ok(bulks(list.read_reply(
        ctx,
        from,
        to,
        false,
        MAX_REPLY_BYTES,
    )?))
}

/// `LPOS key element [RANK r] [COUNT n] [MAXLEN m]`.
struct LposOpts {
    rank: i64,
    count: Option<u64>,
    maxlen: u64,
}

fn parse_lpos(args: &[Bytes]) -> Result<LposOpts, CmdError> {
    let mut o = LposOpts {
        rank: 1,
        count: None,
        maxlen: 0,
    };
    let mut rest = args.get(3..).unwrap_or_default();
    while let [opt, value, tail @ ..] = rest {
        if is(opt, "RANK") {
            o.rank = int(value)?;
            if o.rank == 0 {
                return Err(err("ERR RANK can't be zero: use 1 to start from the first match, 2 from the second ... or use negative to start from the end of the list"));
            }
        } else if is(opt, "COUNT") {
            o.count = Some(non_negative(value, "ERR COUNT can't be negative")?);
        } else if is(opt, "MAXLEN") {
            o.maxlen = non_negative(value, "ERR MAXLEN can't be negative")?;
        } else {
            return Err(err(SYNTAX));
        }
        rest = tail;
    }
    if rest.is_empty() {
        Ok(o)
    } else {
        Err(err(SYNTAX))
    }
}

fn lpos(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let o = parse_lpos(args)?;
    let element = arg(args, 2)?;
    let Some(list) = List::load(ctx, arg(args, 1)?)? else {
        return Ok(if o.count.is_some() {
            Frame::Array(Vec::new())
        } else {
            Frame::Null
        });
    };
    let rev = o.rank < 0;
    let rank = o.rank.unsigned_abs();
    let len = list.len();
    let scanned = if o.maxlen == 0 {
        len
    } else {
        o.maxlen.min(len)
    };
    let (from, to) = if rev {
        (len - scanned, len)
    } else {
        (0, scanned)
    };
    // COUNT 0: every match; no COUNT: the first (one index, not an array).
    let wanted = o.count.unwrap_or(1);
    let (mut matches, mut found) = (0u64, Vec::new());
    list.walk(ctx, from, to, rev, |index, value| {
        if value != *element {
            return Ok(ControlFlow::Continue(()));
        }
        matches += 1;
        if matches < rank {
            return Ok(ControlFlow::Continue(()));
        }
        found.push(integer(index));
        check_reply_len(found.len() as u64)?;
        if wanted != 0 && found.len() as u64 >= wanted {
            return Ok(ControlFlow::Break(()));
        }
        Ok(ControlFlow::Continue(()))
    })?;
    Ok(match o.count {
        Some(_) => Frame::Array(found),
        None => found.pop().unwrap_or(Frame::Null),
    })
}

// ---- changes in place ----

fn lset(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let Some(mut list) = List::load(ctx, arg(args, 1)?)? else {
        return Err(err(NO_SUCH_KEY));
    };
    let Some(index) = list.index(int(arg(args, 2)?)?) else {
        return Err(err("ERR index out of range"));
    };
    list.set(ctx, index, arg(args, 3)?)?;
    list.save(ctx)?;
    Ok(Frame::ok())
}

fn ltrim(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let (start, stop) = parse_range(args)?;
    let Some(mut list) = List::load(ctx, arg(args, 1)?)? else {
        return Ok(Frame::ok());
    };
    let (from, to) = list.range(start, stop);
    let len = list.len();
    let (before, after) = if from == to {
        (len, 0)
    } else {
        (from, len - to)
    };
    list.remove_end(ctx, End::Tail, after)?;
    list.remove_end(ctx, End::Head, before)?;
    list.save(ctx)?;
    Ok(Frame::ok())
}

fn check_range(args: &[Bytes], _now_ms: u64) -> Result<Option<Vec<Bytes>>, Frame> {
    syntax(parse_range(args))
}

/// `LREM key count element`: remove the first `count` matches from the
/// head (negative: from the tail; 0: all). The matches are found, then the
/// elements on the cheaper side of them are moved to close the gaps.
fn lrem(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let count = int(arg(args, 2)?)?;
    let element = arg(args, 3)?;
    let Some(mut list) = List::load(ctx, arg(args, 1)?)? else {
        return Ok(Frame::Integer(0));
    };
    let mut budget = Budget::new("LREM");
    let (rev, wanted) = (count < 0, count.unsigned_abs());
    let mut removed = Vec::new();
    list.walk(ctx, 0, list.len(), rev, |index, value| {
        budget.read()?;
        if value == *element {
            removed.push(index);
            if wanted != 0 && removed.len() as u64 >= wanted {
                return Ok(ControlFlow::Break(()));
            }
        }
        Ok(ControlFlow::Continue(()))
    })?;
    if rev {
        removed.reverse();
    }
    let (Some(&first), Some(&last)) = (removed.first(), removed.last()) else {
        return Ok(Frame::Integer(0));
    };
    let (len, r) = (list.len(), removed.len() as u64);
    if r < len {
        // Kept elements that must move: after `first` (to close the gaps
        // toward the head) or before `last` (toward the tail).
        if len - first - r <= last + 1 - r {
            let kept = budget.collect(ctx, &list, first, len, &removed)?;
            for (i, value) in (first..).zip(kept) {
                list.set(ctx, i, &value)?;
            }
            list.remove_end(ctx, End::Tail, r)?;
        } else {
            let kept = budget.collect(ctx, &list, 0, last, &removed)?;
            list.remove_end(ctx, End::Head, r)?;
            for (i, value) in (0..).zip(kept) {
                list.set(ctx, i, &value)?;
            }
        }
    } else {
        // Every element matched: nothing to move, the key goes.
        list.remove_end(ctx, End::Tail, r)?;
    }
    list.save(ctx)?;
    Ok(integer(r))
}

fn check_lrem(args: &[Bytes], _now_ms: u64) -> Result<Option<Vec<Bytes>>, Frame> {
    syntax(arg(args, 2).and_then(|c| int(c)))
}

/// `LINSERT key BEFORE|AFTER pivot element`'s side: true for `BEFORE`.
fn parse_linsert(args: &[Bytes]) -> Result<bool, CmdError> {
    let side = arg(args, 2)?;
    if is(side, "BEFORE") {
        Ok(true)
    } else if is(side, "AFTER") {
        Ok(false)
    } else {
        Err(err(SYNTAX))
    }
}

/// `LINSERT`: the pivot is searched from the head; the elements on the
/// cheaper side of the insertion point move one position outward.
fn linsert(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let before = parse_linsert(args)?;
    let (pivot, element) = (arg(args, 3)?, arg(args, 4)?);
    let Some(mut list) = List::load(ctx, arg(args, 1)?)? else {
        return Ok(Frame::Integer(0));
    };
    let mut budget = Budget::new("LINSERT");
    let mut found = None;
    let len = list.len();
    list.walk(ctx, 0, len, false, |index, value| {
        budget.read()?;
        if value == *pivot {
            found = Some(index);
            return Ok(ControlFlow::Break(()));
        }
        Ok(ControlFlow::Continue(()))
    })?;
    let Some(pivot_at) = found else {
        return Ok(Frame::Integer(-1));
    };
    // The new element's index in the new list.
    let at = if before { pivot_at } else { pivot_at + 1 };
    if at <= len - at {
        list.check_room(End::Head, 1)?;
        let moved = budget.collect(ctx, &list, 0, at, &[])?;
        list.head -= 1;
        for (i, value) in (0..).zip(moved) {
            list.set(ctx, i, &value)?;
        }
    } else {
        list.check_room(End::Tail, 1)?;
        let moved = budget.collect(ctx, &list, at, len, &[])?;
        list.tail += 1;
        for (i, value) in (at + 1..).zip(moved) {
            list.set(ctx, i, &value)?;
        }
    }
    list.set(ctx, at, element)?;
    let len = list.len();
    list.save(ctx)?;
    Ok(integer(len))
}

fn check_linsert(args: &[Bytes], _now_ms: u64) -> Result<Option<Vec<Bytes>>, Frame> {
    syntax(parse_linsert(args))
}

// ---- moves between lists ----

/// Pops at `from` of `args[1]` and pushes at `to` of `args[2]` (the same
/// list when the keys are equal); nil when the source is absent.
fn move_element(ctx: &mut Ctx<'_>, args: &[Bytes], from: End, to: End) -> CmdResult {
    let (src_key, dst_key) = (arg(args, 1)?, arg(args, 2)?);
    let Some(mut src) = List::load(ctx, src_key)? else {
        return Ok(Frame::Null);
    };
    if src_key == dst_key {
        src.check_room(to, 1)?;
        let value = src.pop(ctx, from, 1)?.pop().unwrap_or_default();
        src.push(ctx, to, &value)?;
        src.save(ctx)?;
        return Ok(Frame::Bulk(value));
    }
    // The destination's type is checked before anything changes.
    let dst = List::load(ctx, dst_key)?;
    if let Some(dst) = &dst {
        dst.check_room(to, 1)?;
    }
    let value = src.pop(ctx, from, 1)?.pop().unwrap_or_default();
    src.save(ctx)?;
    let mut dst = match dst {
        Some(dst) => dst,
        None => List::create(ctx, dst_key)?,
    };
    dst.push(ctx, to, &value)?;
    dst.save(ctx)?;
    Ok(Frame::Bulk(value))
}

fn parse_lmove(args: &[Bytes]) -> Result<(End, End), CmdError> {
    Ok((End::parse(arg(args, 3)?)?, End::parse(arg(args, 4)?)?))
}

fn lmove(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let (from, to) = parse_lmove(args)?;
    move_element(ctx, args, from, to)
}

fn check_lmove(args: &[Bytes], _now_ms: u64) -> Result<Option<Vec<Bytes>>, Frame> {
    syntax(parse_lmove(args))
}

fn rpoplpush(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    move_element(ctx, args, End::Tail, End::Head)
}

#[cfg(test)]
mod tests;
