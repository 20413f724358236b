//! The elements of hashes and sets (a hash's fields, a set's members):
//! how they are stored, read whole, scanned and picked at random, and
//! [`Collection`], a hash or set as one command reads and changes it.
//!
//! An element is the sub-key `position | name` of its key (see
//! `seshat_kv::keys`), whose value is the field's value (empty for a set
//! member); `position` is [`position`]`(name)`, 8 bytes big-endian. The
//! elements of a key are therefore ordered by a fixed 64-bit hash of their
//! names, not by the names, and that order is what makes two things work
//! without any index besides the sub-keys themselves:
//!
//! - **Scan cursors keep Redis's guarantee.** An `HSCAN`/`SSCAN` cursor is
//!   the position of the next element to return (0: start, or done). A
//!   position means the same on every replica and after any restart,
//!   snapshot or leader change, and whatever is added or removed, every
//!   element not yet returned has a position at or after the cursor: a
//!   scan returns every element present for its whole duration, and never
//!   one twice. Elements sharing a position (a 64-bit collision) are
//!   returned by the same call, so a scan always advances. A scan that
//!   starts on a collection of at most [`SCAN_WHOLE_MAX_ELEMENTS`] gets it
//!   whole with cursor 0, as Redis does for its small encodings. (A cursor
//!   made of the names' first bytes would be neither: a million fields
//!   sharing a prefix would have to come back in one call.)
//! - **Random picks need no rank index.** Up to
//!   [`RANDOM_EXACT_MAX_ELEMENTS`] elements a pick is exactly uniform (by
//!   rank); above, it is the first element at or after a random position:
//!   positions are spread evenly whatever the names look like (common
//!   prefixes, numbers), so no name is favoured for its content, though an
//!   element's chance is its share of the position space before it.
//!
//! Writes take their randomness from [`Ctx::rng`], seeded by the log
//! entry, so `SPOP` removes the same members on every replica.

use std::collections::BTreeSet;

use bytes::Bytes;
use seshat_kv::{Kind, KvError, Record};
use seshat_protocol_resp::Frame;

use crate::args::{arg, glob_match, int, is};
use crate::exec::Ctx;
use crate::families::typed_record;
use crate::reply::{err, CmdError, CmdResult, SYNTAX};

/// Most elements one command may read whole, return or write (`HGETALL`,
/// `SMEMBERS`, set algebra and `…STORE`, picks with a count). Bounds a
/// reply's memory and, for writes, the work of one apply. Fixed rather
/// than configurable: it is checked at apply, where every replica must
/// decide the same way.
pub const MAX_ELEMENTS_PER_COMMAND: u64 = 1 << 20;

/// A scan that starts on a collection this small gets it whole.
pub const SCAN_WHOLE_MAX_ELEMENTS: u64 = 128;

/// Up to this many elements random picks are exactly uniform.
pub const RANDOM_EXACT_MAX_ELEMENTS: u64 = 1024;

/// Elements read per storage call when reading many.
const READ_STEP_ELEMENTS: usize = 1024;

/// Bytes of an element's position before its name.
pub const POSITION_BYTES: usize = 8;

/// The position of the element `name`: FNV-1a (64 bits) of the name, then
/// MurmurHash3's 64-bit finalizer so every bit depends on every byte.
/// Part of the on-disk format: never change it without bumping the format
/// version.
pub fn position(name: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = name
        .iter()
        .fold(OFFSET, |h, b| (h ^ u64::from(*b)).wrapping_mul(PRIME));
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// The stored form of element `name`: its position, then the name.
pub fn stored_name(name: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(POSITION_BYTES + name.len());
    out.extend_from_slice(&position(name).to_be_bytes());
    out.extend_from_slice(name);
    out
}

/// One element as read from storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    /// Its position (see the module docs).
    pub position: u64,
    /// The field or member.
    pub name: Bytes,
    /// The field's value (empty for a set member).
    pub value: Bytes,
}

impl Element {
    fn decode(stored: Bytes, value: Bytes) -> Result<Element, KvError> {
        let (pos, _) = stored
            .split_first_chunk::<POSITION_BYTES>()
            .ok_or_else(|| KvError::Corrupt("element sub-key shorter than its position".into()))?;
        Ok(Element {
            position: u64::from_be_bytes(*pos),
            name: stored.slice(POSITION_BYTES..),
            value,
        })
    }
}

/// `Ok` if one command may take `n` elements, else the refusal naming
/// [`MAX_ELEMENTS_PER_COMMAND`].
pub fn check_elements(n: u64) -> Result<(), CmdError> {
    if n > MAX_ELEMENTS_PER_COMMAND {
        return Err(err(format!(
            "ERR this command would take {n} elements, more than the {MAX_ELEMENTS_PER_COMMAND} one command may read, return or write; iterate with HSCAN/SSCAN instead"
        )));
    }
    Ok(())
}

/// A uniform index below `n` (> 0). The modulo bias, about n / 2^64, is
/// negligible for the counts it is used with (at most
/// [`MAX_ELEMENTS_PER_COMMAND`]).
fn uniform(ctx: &mut Ctx<'_>, n: u64) -> u64 {
    ctx.rng.next_u64() % n.max(1)
}

/// A hash or a set as one command sees it: its live record (none if
/// absent), its size as the command changes it, and whether anything
/// changed. [`Collection::save`] writes the new size (and stamps the key
/// modified, which `WATCH` sees) or deletes an emptied collection, as
/// Redis never keeps an empty one.
pub struct Collection<'k> {
    key: &'k [u8],
    kind: Kind,
    record: Option<Record>,
    size: u64,
    changed: bool,
}

impl<'k> Collection<'k> {
    /// `key` as a `kind` collection: empty if absent, `-WRONGTYPE` if it
    /// holds another type.
    pub fn open(ctx: &mut Ctx<'_>, key: &'k [u8], kind: Kind) -> Result<Self, CmdError> {
        let record = typed_record(ctx, key, kind)?;
        let size = match &record {
            Some(r) => r.composite_meta()?.0,
            None => 0,
        };
        Ok(Self {
            key,
            kind,
            record,
            size,
            changed: false,
        })
    }

    /// A new, empty `kind` collection in place of whatever `key` holds
    /// (its value and expiry go), for the `…STORE` commands.
    pub fn replace(ctx: &mut Ctx<'_>, key: &'k [u8], kind: Kind) -> Result<Self, CmdError> {
        let record = Record::composite(kind, 0, 0, 0);
        ctx.db.put(key, record.clone())?;
        Ok(Self {
            key,
            kind,
            record: Some(record),
            size: 0,
            changed: true,
        })
    }

    /// Whether the key exists (before this command changed it).
    pub fn exists(&self) -> bool {
        self.record.is_some()
    }

    /// The number of elements.
    pub fn len(&self) -> u64 {
        self.size
    }

    /// The value of element `name`.
    pub fn get(&self, ctx: &mut Ctx<'_>, name: &[u8]) -> Result<Option<Bytes>, CmdError> {
        if self.record.is_none() {
            return Ok(None);
        }
        Ok(ctx.db.element(self.key, &stored_name(name))?)
    }

    /// Whether element `name` is there.
    pub fn contains(&self, ctx: &mut Ctx<'_>, name: &[u8]) -> Result<bool, CmdError> {
        Ok(self.get(ctx, name)?.is_some())
    }

    /// Sets element `name` to `value` (creating the key if needed); true
    /// if the element is new.
    pub fn insert(
        &mut self,
        ctx: &mut Ctx<'_>,
        name: &[u8],
        value: &[u8],
    ) -> Result<bool, CmdError> {
        let new = !self.contains(ctx, name)?;
        self.write(ctx, name, value, new)?;
        Ok(new)
    }

    /// Adds element `name` with an empty value unless it is there (then
    /// nothing changes); true if it was added.
    pub fn add(&mut self, ctx: &mut Ctx<'_>, name: &[u8]) -> Result<bool, CmdError> {
        if self.contains(ctx, name)? {
            return Ok(false);
        }
        self.write(ctx, name, b"", true)?;
        Ok(true)
    }

    /// Adds element `name`, which the caller knows is absent (a collection
    /// being built by [`Collection::replace`] from distinct names).
    pub fn add_new(&mut self, ctx: &mut Ctx<'_>, name: &[u8]) -> Result<(), CmdError> {
        self.write(ctx, name, b"", true)
    }

    fn write(
        &mut self,
        ctx: &mut Ctx<'_>,
        name: &[u8],
        value: &[u8],
        new: bool,
    ) -> Result<(), CmdError> {
        self.create(ctx)?;
        ctx.db.put_element(self.key, &stored_name(name), value)?;
        if new {
            self.size = self.size.saturating_add(1);
        }
        self.changed = true;
        Ok(())
    }

    /// Removes element `name`; true if it was there.
    pub fn remove(&mut self, ctx: &mut Ctx<'_>, name: &[u8]) -> Result<bool, CmdError> {
        if !self.contains(ctx, name)? {
            return Ok(false);
        }
        ctx.db.delete_element(self.key, &stored_name(name))?;
        self.size = self.size.saturating_sub(1);
        self.changed = true;
        Ok(true)
    }

    /// Writes what the command changed: the new size, or the key's
    /// removal once it is empty. Nothing if nothing changed.
    pub fn save(self, ctx: &mut Ctx<'_>) -> Result<(), CmdError> {
        match self.record {
            Some(_) if !self.changed => {}
            Some(_) if self.size == 0 => {
                ctx.db.delete(self.key)?;
            }
            Some(r) => ctx
                .db
                .update(self.key, r.with_composite_meta(self.size, 0, 0))?,
            None => {}
        }
        Ok(())
    }

    /// Makes sure the key exists. A new key's record is written before its
    /// first element: writing it clears whatever elements an expired value
    /// under the same name left behind.
    fn create(&mut self, ctx: &mut Ctx<'_>) -> Result<(), CmdError> {
        if self.record.is_none() {
            let record = Record::composite(self.kind, 0, 0, 0);
            ctx.db.put(self.key, record.clone())?;
            self.record = Some(record);
        }
        Ok(())
    }

    /// Up to `limit` elements from position `from` on, in order.
    fn read(&self, ctx: &mut Ctx<'_>, from: &[u8], limit: usize) -> Result<Vec<Element>, CmdError> {
        if self.record.is_none() {
            return Ok(Vec::new());
        }
        let rows = ctx.db.elements(self.key, Some(from), None, limit, false)?;
        rows.into_iter()
            .map(|(k, v)| Element::decode(k, v).map_err(CmdError::from))
            .collect()
    }

    /// Up to `limit` elements from position `from` on, in order, read in
    /// steps.
    fn read_many(
        &self,
        ctx: &mut Ctx<'_>,
        from: u64,
        limit: usize,
    ) -> Result<Vec<Element>, CmdError> {
        let mut out = Vec::new();
        let mut next = from.to_be_bytes().to_vec();
        while out.len() < limit {
            let step = READ_STEP_ELEMENTS.min(limit - out.len());
            let batch = self.read(ctx, &next, step)?;
            let full = batch.len() == step;
            if let Some(last) = batch.last() {
                next = after(last);
            }
            out.extend(batch);
            if !full {
                break;
            }
        }
        Ok(out)
    }

    /// Every element, in position order; refused above
    /// [`MAX_ELEMENTS_PER_COMMAND`].
    pub fn all(&self, ctx: &mut Ctx<'_>) -> Result<Vec<Element>, CmdError> {
        check_elements(self.size)?;
        let limit = usize::try_from(self.size).unwrap_or(usize::MAX);
        self.read_many(ctx, 0, limit)
    }

    /// One step of a scan from `cursor`: about `count` elements and the
    /// cursor to resume from (0 when done). See the module docs.
    pub fn scan(
        &self,
        ctx: &mut Ctx<'_>,
        cursor: u64,
        count: usize,
    ) -> Result<(u64, Vec<Element>), CmdError> {
        if cursor == 0 && self.size <= SCAN_WHOLE_MAX_ELEMENTS {
            return Ok((0, self.all(ctx)?));
        }
        let count = count.clamp(
            1,
            usize::try_from(MAX_ELEMENTS_PER_COMMAND).unwrap_or(usize::MAX),
        );
        let mut out = self.read_many(ctx, cursor, count.saturating_add(1))?;
        let Some(next) = out.get(count).map(|e| e.position) else {
            return Ok((0, out));
        };
        out.truncate(count);
        let Some(last) = out.last() else {
            return Ok((next, out));
        };
        if next != last.position {
            return Ok((next, out));
        }
        // The next element shares the last one's position: take every
        // element at that position, so the cursor moves past it.
        let (last, mut from) = (last.position, after(last));
        loop {
            let batch = self.read(ctx, &from, READ_STEP_ELEMENTS)?;
            let full = batch.len() == READ_STEP_ELEMENTS;
            for e in batch {
                if e.position != last {
                    return Ok((e.position, out));
                }
                from = after(&e);
                out.push(e);
            }
            if !full {
                return Ok((0, out));
            }
        }
    }

    /// The first element at or after position `at`, wrapping around.
    fn at_or_after(&self, ctx: &mut Ctx<'_>, at: u64) -> Result<Option<Element>, CmdError> {
        let found = self.read(ctx, &at.to_be_bytes(), 1)?.pop();
        match found {
            Some(e) => Ok(Some(e)),
            None => Ok(self.read(ctx, &[], 1)?.pop()),
        }
    }

    /// Whether picks read the whole collection (exactly uniform) rather
    /// than seek random positions.
    fn picks_by_rank(&self) -> bool {
        self.size <= RANDOM_EXACT_MAX_ELEMENTS
    }

    /// One random element (`None` if empty).
    pub fn random(&self, ctx: &mut Ctx<'_>) -> Result<Option<Element>, CmdError> {
        if self.size == 0 {
            return Ok(None);
        }
        if self.picks_by_rank() {
            let rank = uniform(ctx, self.size);
            let limit = usize::try_from(rank)
                .unwrap_or(usize::MAX)
                .saturating_add(1);
            return Ok(self.read_many(ctx, 0, limit)?.pop());
        }
        let at = ctx.rng.next_u64();
        self.at_or_after(ctx, at)
    }

    /// `count` random elements, repeats allowed (`SRANDMEMBER key -n`).
    pub fn random_with_repeats(
        &self,
        ctx: &mut Ctx<'_>,
        count: u64,
    ) -> Result<Vec<Element>, CmdError> {
        check_elements(count)?;
        if self.size == 0 || count == 0 {
            return Ok(Vec::new());
        }
        let n = usize::try_from(count).unwrap_or(usize::MAX);
        let mut out = Vec::with_capacity(n);
        if self.picks_by_rank() {
            let all = self.all(ctx)?;
            for _ in 0..n {
                let i = usize::try_from(uniform(ctx, self.size)).unwrap_or(0);
                out.extend(all.get(i).cloned());
            }
            return Ok(out);
        }
        for _ in 0..n {
            let at = ctx.rng.next_u64();
            out.extend(self.at_or_after(ctx, at)?);
        }
        Ok(out)
    }

    /// `count` distinct random elements, or every element if there are no
    /// more (`SRANDMEMBER key n`, `SPOP key n`), in random order.
    pub fn random_distinct(&self, ctx: &mut Ctx<'_>, count: u64) -> Result<Vec<Element>, CmdError> {
        if count >= self.size {
            return self.all(ctx);
        }
        check_elements(count)?;
        let n = usize::try_from(count).unwrap_or(usize::MAX);
        // Redis copies the whole collection when it is at most three times
        // the count: picking by rank is then both uniform and cheap.
        if self.picks_by_rank()
            || (count.saturating_mul(3) > self.size && self.size <= MAX_ELEMENTS_PER_COMMAND)
        {
            let mut all = self.all(ctx)?;
            let len = all.len();
            for i in 0..n.min(len) {
                let rest = u64::try_from(len - i).unwrap_or(u64::MAX);
                let j = i + usize::try_from(uniform(ctx, rest)).unwrap_or(0);
                all.swap(i, j);
            }
            all.truncate(n);
            return Ok(all);
        }
        self.random_distinct_by_position(ctx, n)
    }

    /// `n` distinct elements (fewer than the size) of a big collection:
    /// random positions first, then, should repeats keep coming, the
    /// elements after one random position.
    fn random_distinct_by_position(
        &self,
        ctx: &mut Ctx<'_>,
        n: usize,
    ) -> Result<Vec<Element>, CmdError> {
        let mut seen = BTreeSet::new();
        let mut out = Vec::with_capacity(n);
        let mut keep = |e: Element, out: &mut Vec<Element>| {
            if seen.insert(e.name.clone()) {
                out.push(e);
            }
        };
        for _ in 0..n.saturating_mul(2) {
            if out.len() == n {
                return Ok(out);
            }
            let at = ctx.rng.next_u64();
            if let Some(e) = self.at_or_after(ctx, at)? {
                keep(e, &mut out);
            }
        }
        let start = ctx.rng.next_u64();
        let mut from = start.to_be_bytes().to_vec();
        let mut wrapped = false;
        while out.len() < n {
            let batch = self.read(ctx, &from, READ_STEP_ELEMENTS)?;
            let full = batch.len() == READ_STEP_ELEMENTS;
            if let Some(last) = batch.last() {
                from = after(last);
            }
            for e in batch {
                if wrapped && e.position >= start {
                    return Ok(out);
                }
                if out.len() < n {
                    keep(e, &mut out);
                }
            }
            if !full {
                if wrapped {
                    break;
                }
                wrapped = true;
                from = Vec::new();
            }
        }
        Ok(out)
    }
}

/// Where a read resumes after `e`.
fn after(e: &Element) -> Vec<u8> {
    let mut k = Vec::with_capacity(POSITION_BYTES + e.name.len() + 1);
    k.extend_from_slice(&e.position.to_be_bytes());
    k.extend_from_slice(&e.name);
    k.push(0);
    k
}

/// Redis's `hash-max-listpack-entries` default.
const LISTPACK_MAX_ENTRIES: u64 = 128;
/// Redis's `hash-max-listpack-value` default, in bytes.
const LISTPACK_MAX_VALUE_BYTES: usize = 64;
/// Redis's `set-max-intset-entries` default.
const INTSET_MAX_ENTRIES: u64 = 512;

/// The encoding `OBJECT ENCODING` reports for the hash or set at `key`:
/// what Redis 7.0 would use for a value built from these elements with
/// its default thresholds (Seshat stores every size alike): a hash is a
/// `listpack` up to 128 fields of at most 64-byte fields and values, a
/// set an `intset` up to 512 integer members, else a `hashtable`. Reads
/// at most those 128 or 512 elements.
pub fn redis_encoding(ctx: &mut Ctx<'_>, key: &[u8], kind: Kind) -> Result<&'static str, CmdError> {
    let collection = Collection::open(ctx, key, kind)?;
    let compact = match kind {
        Kind::Set if collection.len() <= INTSET_MAX_ENTRIES => {
            collection.all(ctx)?.iter().all(|e| int(&e.name).is_ok())
        }
        Kind::Hash if collection.len() <= LISTPACK_MAX_ENTRIES => {
            collection.all(ctx)?.iter().all(|e| {
                e.name.len() <= LISTPACK_MAX_VALUE_BYTES
                    && e.value.len() <= LISTPACK_MAX_VALUE_BYTES
            })
        }
        _ => false,
    };
    Ok(match (kind, compact) {
        (Kind::Set, true) => "intset",
        (Kind::Hash, true) => "listpack",
        _ => "hashtable",
    })
}

/// A scan cursor as Redis reads it (a decimal `u64`).
pub fn parse_cursor(arg: &[u8]) -> Result<u64, CmdError> {
    std::str::from_utf8(arg)
        .ok()
        .and_then(|c| c.parse::<u64>().ok())
        .ok_or_else(|| err("ERR invalid cursor"))
}

/// Redis's bound on a random-pick count (`-LONG_MAX..=LONG_MAX`).
pub fn pick_count(text: &[u8]) -> Result<i64, CmdError> {
    let n = int(text)?;
    if n == i64::MIN {
        return Err(err(format!(
            "ERR value is out of range, value must between {} and {}",
            -i64::MAX,
            i64::MAX
        )));
    }
    Ok(n)
}

/// Elements as a random-pick reply: names, or (`values`) name/value
/// pairs (nested in RESP3, flat in RESP2, as Redis replies).
pub fn pick_reply(picked: Vec<Element>, values: bool) -> Frame {
    if values {
        Frame::Pairs(
            picked
                .into_iter()
                .map(|e| (Frame::Bulk(e.name), Frame::Bulk(e.value)))
                .collect(),
        )
    } else {
        Frame::Array(picked.into_iter().map(|e| Frame::Bulk(e.name)).collect())
    }
}

/// `HSCAN`/`SSCAN` options: `MATCH pattern`, `COUNT n`.
pub struct ScanOpts {
    /// Only names matching this glob (`None`: all).
    pub pattern: Option<Bytes>,
    /// About how many elements to examine.
    pub count: usize,
}

/// Parses the options after `KEY CURSOR`, with Redis's errors.
pub fn scan_opts(args: &[Bytes]) -> Result<ScanOpts, CmdError> {
    let mut opts = ScanOpts {
        pattern: None,
        count: 10,
    };
    let mut i = 3;
    while let Some(opt) = args.get(i) {
        let value = args.get(i + 1).ok_or_else(|| err(SYNTAX))?;
        if is(opt, "COUNT") {
            let n = int(value)?;
            if n < 1 {
                return Err(err(SYNTAX));
            }
            opts.count = usize::try_from(n).unwrap_or(usize::MAX);
        } else if is(opt, "MATCH") {
            opts.pattern = (value.as_ref() != b"*").then(|| value.clone());
        } else {
            return Err(err(SYNTAX));
        }
        i += 2;
    }
    Ok(opts)
}

/// One `HSCAN`/`SSCAN` step over the `kind` collection at `args[1]`:
/// `[cursor, items]`, each element giving `item(element)`'s frames.
pub fn scan_step(
    ctx: &mut Ctx<'_>,
    args: &[Bytes],
    kind: Kind,
    item: fn(Element, &mut Vec<Frame>),
) -> CmdResult {
    let cursor = parse_cursor(arg(args, 2)?)?;
    let collection = Collection::open(ctx, arg(args, 1)?, kind)?;
    let opts = scan_opts(args)?;
    let (next, found) = if collection.exists() {
        collection.scan(ctx, cursor, opts.count)?
    } else {
        (0, Vec::new())
    };
    let mut items = Vec::new();
    for e in found {
        if opts
            .pattern
            .as_ref()
            .is_none_or(|p| glob_match(p, &e.name, false))
        {
            item(e, &mut items);
        }
    }
    Ok(Frame::Array(vec![
        Frame::Bulk(Bytes::from(next.to_string())),
        Frame::Array(items),
    ]))
}

/// Test support shared by the hash and set tests: one replica applying
/// writes as log entries and running reads on its store.
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
pub(crate) mod testing {
    use bytes::Bytes;
    use seshat_kv::{MemKv, Write, WriteBatch};
    use seshat_protocol_resp::Frame;

    use crate::{apply_batch, resolve, run_read, GroupState, Route};

    /// One replica's store and state.
    #[derive(Debug, Default, Clone, PartialEq)]
    pub struct Replica {
        pub kv: MemKv,
        pub state: GroupState,
        pub index: u64,
    }

    pub fn argv<S: AsRef<[u8]>>(args: &[S]) -> Vec<Bytes> {
        args.iter()
            .map(|a| Bytes::copy_from_slice(a.as_ref()))
            .collect()
    }

    pub fn bulk(s: &str) -> Frame {
        Frame::Bulk(Bytes::copy_from_slice(s.as_bytes()))
    }

    pub fn error(s: &str) -> Frame {
        Frame::error(s.to_string())
    }

    /// The bulk strings of an array or set reply, sorted.
    pub fn sorted(frame: &Frame) -> Vec<String> {
        let items = match frame {
            Frame::Array(items) | Frame::Set(items) => items,
            other => panic!("not a list: {other:?}"),
        };
        let mut out: Vec<String> = items
            .iter()
            .map(|f| match f {
                Frame::Bulk(b) => String::from_utf8_lossy(b).into_owned(),
                other => panic!("not a bulk: {other:?}"),
            })
            .collect();
        out.sort();
        out
    }

    impl Replica {
        /// Writes go through `apply_batch` as one log entry (seeded by its
        /// index); reads run on the store.
        pub fn run<S: AsRef<[u8]>>(&mut self, args: &[S]) -> Frame {
            let args = argv(args);
            self.index += 1;
            match resolve(&args) {
                Ok(decl) if decl.route() != Route::Write => run_read(
                    decl,
                    &args,
                    seshat_kv::keys::DATA_GROUP,
                    &mut self.kv,
                    0,
                    self.state.counts,
                    self.index,
                )
                .unwrap(),
                _ => {
                    let batch = WriteBatch {
                        now_ms: 0,
                        seed: self.index,
                        writes: vec![Write::Command(args)],
                    };
                    apply_batch(&batch, self.index, &mut self.kv, &mut self.state)
                        .unwrap()
                        .remove(0)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::testing::{sorted, Replica};
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    #[test]
    fn positions_are_the_documented_function() {
        // Fixed vectors: the position is part of the on-disk format.
        assert_eq!(position(b""), 0xefd0_1f60_ba99_2926);
        assert_eq!(position(b"a"), 0x82a2_a958_a9be_ce5b);
        assert_eq!(position(b"field"), 0x1f34_f4d6_2626_7e5a);
    }

    /// Runs one `SSCAN` step, returning the next cursor and the members.
    fn sscan(r: &mut Replica, cursor: u64, count: usize) -> (u64, Vec<String>) {
        let reply = r.run(&[
            "SSCAN",
            "s",
            &cursor.to_string(),
            "COUNT",
            &count.to_string(),
        ]);
        let Frame::Array(parts) = reply else {
            panic!("{reply:?}")
        };
        let Some(Frame::Bulk(next)) = parts.first() else {
            panic!("{parts:?}")
        };
        let next = std::str::from_utf8(next).unwrap().parse().unwrap();
        (next, sorted(&parts[1]))
    }

    proptest! {
        /// A scan returns every member present for its whole duration,
        /// never one twice, and ends, whatever is added or removed
        /// between its steps.
        #[test]
        fn scans_return_every_member_present_throughout(
            initial in prop::collection::btree_set("[a-z]{1,4}", 1..300),
            steps in prop::collection::vec((1usize..40, prop::collection::vec(("[a-z]{1,4}", any::<bool>()), 0..6)), 1..400),
        ) {
            let mut r = Replica::default();
            let mut add = vec!["SADD".to_string(), "s".into()];
            add.extend(initial.iter().cloned());
            r.run(&add);
            let mut removed = std::collections::BTreeSet::new();
            let mut seen: BTreeMap<String, usize> = BTreeMap::new();
            let mut cursor = 0;
            let mut rounds = 0;
            for (count, changes) in steps.iter().cycle() {
                let (next, members) = sscan(&mut r, cursor, *count);
                for m in members {
                    *seen.entry(m).or_default() += 1;
                }
                rounds += 1;
                prop_assert!(rounds <= initial.len() + 400 + 2, "scan does not end");
                if next == 0 {
                    break;
                }
                cursor = next;
                for (name, is_add) in changes {
                    if *is_add {
                        r.run(&["SADD", "s", name]);
                    } else if r.run(&["SREM", "s", name]) == Frame::Integer(1) {
                        removed.insert(name.clone());
                    }
                }
            }
            for m in initial.iter().filter(|m| !removed.contains(*m)) {
                prop_assert!(seen.contains_key(m), "{} never returned", m);
            }
            prop_assert!(seen.values().all(|n| *n == 1), "returned twice: {:?}", seen);
        }
    }

    /// Elements sharing a position (a 64-bit collision, made here by
    /// writing sub-keys by hand) come back from one step, so the cursor
    /// moves past them.
    #[test]
    fn a_scan_step_takes_every_element_at_its_last_position() {
        let mut r = Replica::default();
        let mut add = vec!["SADD".to_string(), "s".into()];
        add.extend((0..200).map(|i| format!("m{i}")));
        r.run(&add);
        let at: u64 = 1 << 40;
        {
            let mut ks = seshat_kv::Keyspace::new(
                &mut r.kv,
                seshat_kv::keys::DATA_GROUP,
                0,
                0,
                r.state.counts,
            );
            for name in ["x", "y", "z"] {
                let mut stored = at.to_be_bytes().to_vec();
                stored.extend_from_slice(name.as_bytes());
                ks.put_element(b"s", &stored, b"").unwrap();
            }
        }
        let (next, members) = sscan(&mut r, at, 1);
        assert_eq!(members, ["x", "y", "z"]);
        assert!(next > at);
        let (_, more) = sscan(&mut r, at + 1, 1);
        assert_eq!(more.len(), 1);
        assert!(more[0].starts_with('m'));
    }

    #[test]
    fn encodings_and_sizes_are_reported_as_redis_would() {
        let mut r = Replica::default();
        let encoding = |r: &mut Replica, key: &str| r.run(&["OBJECT", "ENCODING", key]);
        r.run(&["SADD", "ints", "1", "-2", "30"]);
        assert_eq!(encoding(&mut r, "ints"), Frame::bulk("intset"));
        r.run(&["SADD", "ints", "x"]);
        assert_eq!(encoding(&mut r, "ints"), Frame::bulk("hashtable"));
        r.run(&["HSET", "h", "f", "v"]);
        assert_eq!(encoding(&mut r, "h"), Frame::bulk("listpack"));
        r.run(&["HSET", "h", "long", &"v".repeat(65)]);
        assert_eq!(encoding(&mut r, "h"), Frame::bulk("hashtable"));
        let mut many = vec!["SADD".to_string(), "big".into()];
        many.extend((0..513).map(|i| i.to_string()));
        r.run(&many);
        assert_eq!(encoding(&mut r, "big"), Frame::bulk("hashtable"));
        let Frame::Integer(small) = r.run(&["MEMORY", "USAGE", "ints"]) else {
            panic!()
        };
        let Frame::Integer(big) = r.run(&["MEMORY", "USAGE", "big", "SAMPLES", "0"]) else {
            panic!()
        };
        assert!(0 < small && small < big, "{small} {big}");
        assert_eq!(r.run(&["MEMORY", "USAGE", "nope"]), Frame::Null);
        assert_eq!(
            r.run(&["MEMORY", "USAGE", "big", "SAMPLES", "-1"]),
            Frame::error("ERR syntax error")
        );
    }

    /// Chi-square of `picks` over `n` equally likely outcomes.
    fn chi_square(picks: &[String], n: usize) -> f64 {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for p in picks {
            *counts.entry(p).or_default() += 1;
        }
        assert_eq!(counts.len(), n, "every member is picked");
        let expected = picks.len() as f64 / n as f64;
        counts
            .values()
            .map(|c| (*c as f64 - expected).powi(2) / expected)
            .sum()
    }

    #[test]
    fn small_collections_are_picked_uniformly() {
        let mut r = Replica::default();
        r.run(&[
            "SADD",
            "s",
            "1",
            "5",
            "10",
            "50",
            "125",
            "MARY",
            "PATRICIA",
            "LINDA",
            "BARBARA",
            "ELIZABETH",
        ]);
        for _ in 0..20 {
            let picks = sorted(&r.run(&["SRANDMEMBER", "s", "-1000"]));
            assert_eq!(picks.len(), 1000);
            // df = 9: 40 has a probability of 0.00001 (Redis's bound).
            assert!(chi_square(&picks, 10) < 40.0);
            let distinct = sorted(&r.run(&["SRANDMEMBER", "s", "8"]));
            assert_eq!(distinct.len(), 8);
            assert!(distinct.windows(2).all(|w| w[0] != w[1]));
        }
    }

    #[test]
    fn big_collections_are_picked_by_position() {
        let mut r = Replica::default();
        let n = RANDOM_EXACT_MAX_ELEMENTS as usize * 3;
        let mut add = vec!["SADD".to_string(), "s".into()];
        add.extend((0..n).map(|i| format!("m{i}")));
        r.run(&add);
        let picks = sorted(&r.run(&["SRANDMEMBER", "s", "-5000"]));
        assert_eq!(picks.len(), 5000);
        let distinct: std::collections::BTreeSet<_> = picks.iter().collect();
        assert!(
            distinct.len() > n / 2,
            "picks spread over the set: {}",
            distinct.len()
        );
        // Distinct picks, both below and above a third of the size.
        for count in [100, n / 2, n - 1] {
            let picked = sorted(&r.run(&["SRANDMEMBER", "s", &count.to_string()]));
            assert_eq!(picked.len(), count);
            assert!(picked.windows(2).all(|w| w[0] != w[1]));
        }
        // Popping more than there is empties the set.
        let popped = sorted(&r.run(&["SPOP", "s", "100"]));
        assert_eq!(popped.len(), 100);
        assert_eq!(r.run(&["SCARD", "s"]), Frame::Integer(n as i64 - 100));
        assert_eq!(
            sorted(&r.run(&["SPOP", "s", &n.to_string()])).len(),
            n - 100
        );
        assert_eq!(r.run(&["EXISTS", "s"]), Frame::Integer(0));
        assert_eq!(r.state.counts.keys, 0);
        assert!(r.kv.map.is_empty());
    }

    #[test]
    fn a_scan_of_a_small_collection_is_one_step() {
        let mut r = Replica::default();
        r.run(&["SADD", "s", "a", "b", "c"]);
        assert_eq!(
            sscan(&mut r, 0, 1),
            (0, vec!["a".into(), "b".into(), "c".into()])
        );
        assert_eq!(parse_cursor(b"x"), Err(err("ERR invalid cursor")));
        assert_eq!(
            parse_cursor(b"18446744073709551616"),
            Err(err("ERR invalid cursor"))
        );
        assert_eq!(parse_cursor(b"18446744073709551615"), Ok(u64::MAX));
    }
}
