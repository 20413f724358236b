//! Running commands: a whole log entry at apply ([`apply_batch`]), a read
//! on a read view ([`run_read`]), and the leader's preparation of a write
//! ([`prepare_write`]).

use std::sync::Arc;

use bytes::Bytes;
use seshat_kv::keys::DATA_GROUP;
use seshat_kv::{Counts, EntryRng, Keyspace, KvError, RawKv, Write, WriteBatch};
use seshat_migration::SlotTable;
use seshat_protocol_resp::Frame;

use crate::decl::{Decl, Handler};
use crate::migration;
use crate::reply::{CmdError, CmdResult};
use crate::table::resolve;

/// What a command sees while it runs: the keyspace (at the entry's time,
/// or the read's), the write's deterministic randomness, and the group's
/// key count.
pub struct Ctx<'a> {
    /// The group's keys.
    pub db: Keyspace<'a, dyn RawKv + 'a>,
    /// Randomness: seeded by the entry in apply, anything for reads.
    pub rng: EntryRng,
}

impl Ctx<'_> {
    /// The time the command runs at (Unix ms).
    pub fn now_ms(&self) -> u64 {
        self.db.now_ms()
    }
}

/// A group's replicated state besides its keys, carried from entry to
/// entry: the counts and time are persisted with the applied index, the
/// slot table as the group's [`migration::TABLE_RECORD`] (this is the
/// copy apply checks against, loaded with [`migration::load_table`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupState {
    /// Number of keys, and of keys with an expiry.
    pub counts: Counts,
    /// The time of the last applied write entry: entries never run earlier.
    pub last_now_ms: u64,
    /// The group's slot table; `None` for a group that never took part
    /// in a migration (it serves every key it is sent).
    pub table: Option<Arc<SlotTable>>,
}

/// An entry this node cannot apply. Every replica meets the same entry, so
/// this stops the node (and says why) rather than letting it diverge.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// The store failed.
    #[error(transparent)]
    Kv(#[from] KvError),
    /// The entry holds a command this binary does not know or cannot run
    /// in the log: a newer binary wrote it, or the log is corrupt.
    #[error("log entry {index} holds command {name:?}, which this binary cannot execute; run a Seshat version that knows it")]
    UnknownCommand {
        /// The entry's index.
        index: u64,
        /// The command name (lossy).
        name: String,
    },
}

/// Applies one entry's writes to `kv` and returns one reply per write.
/// Deterministic: the replies and the new state depend only on the entry,
/// its index and the state before it.
/// Whether applying `batch` may take long (see [`Decl::may_take_long`]):
/// the state machine then runs it where it cannot delay heartbeats.
pub fn batch_may_take_long(batch: &WriteBatch) -> bool {
    let long = |argv: &[Bytes]| resolve(argv).is_ok_and(|decl| decl.may_take_long(argv));
    batch.writes.iter().any(|write| match write {
        Write::Command(argv) => long(argv),
        Write::Transaction { commands, .. } => commands.iter().any(|c| long(c)),
        Write::ExpireKeys(keys) => keys.len() > 32,
        // A chunk may be megabytes, and a drop walks whole slots.
        Write::Migration { .. } => true,
        Write::Acl(_) | Write::System(_) => false,
    })
}

pub fn apply_batch<K: RawKv>(
    batch: &WriteBatch,
    index: u64,
    kv: &mut K,
    state: &mut GroupState,
) -> Result<Vec<Frame>, ApplyError> {
    apply_group_batch(DATA_GROUP, batch, index, kv, state)
}

/// [`apply_batch`] for the Raft group `group`: every record it reads or
/// writes lies in `group`'s key range ([`seshat_kv::keys::group_range`]).
pub fn apply_group_batch<K: RawKv>(
    group: u32,
    batch: &WriteBatch,
    index: u64,
    kv: &mut K,
    state: &mut GroupState,
) -> Result<Vec<Frame>, ApplyError> {
    let now_ms = batch.now_ms.max(state.last_now_ms);
    let mut ctx = Ctx {
        db: Keyspace::new(kv as &mut dyn RawKv, group, now_ms, index, state.counts),
        rng: EntryRng::new(batch.seed, 0),
    };
    let mut replies = Vec::with_capacity(batch.writes.len());
    for (position, write) in batch.writes.iter().enumerate() {
        ctx.rng = EntryRng::new(batch.seed, position as u64);
        replies.push(apply_write(&mut ctx, &mut state.table, write, index)?);
    }
    state.counts = ctx.db.counts();
    state.last_now_ms = now_ms;
    Ok(replies)
}

fn apply_write(
    ctx: &mut Ctx<'_>,
    table: &mut Option<Arc<SlotTable>>,
    write: &Write,
    index: u64,
) -> Result<Frame, ApplyError> {
    // Slot ownership is checked here, on every replica, from the group's
    // own table: a write proposed before a freeze and committed after it
    // is refused alike everywhere.
    let owned = table.as_deref();
    match write {
        Write::Command(argv) => match migration::refuse_write(owned, argv) {
            Some(refused) => Ok(refused),
            None => apply_command(ctx, argv, index),
        },
        Write::Transaction { watches, commands } => {
            if let Some(refused) = commands
                .iter()
                .find_map(|argv| migration::refuse_write(owned, argv))
            {
                return Ok(refused);
            }
            for watch in watches {
                let now = ctx.db.get(&watch.key)?.map(|r| r.mod_index);
                if now != watch.mod_index {
                    return Ok(Frame::NullArray);
                }
            }
            let mut replies = Vec::with_capacity(commands.len());
            for argv in commands {
                replies.push(apply_command(ctx, argv, index)?);
            }
            Ok(Frame::Array(replies))
        }
        Write::ExpireKeys(keys) => {
            let mut removed = 0i64;
            for key in keys.iter().filter(|k| migration::serves_key(owned, k)) {
                if ctx.db.remove_if_expired(key)? {
                    removed += 1;
                }
            }
            Ok(Frame::Integer(removed))
        }
        Write::Acl(acl) => Ok(crate::acl::apply(ctx, acl, index)?),
        Write::System(system) => Ok(crate::system::apply(&mut ctx.db, system)?),
        Write::Migration { step, initial } => {
            Ok(migration::apply_step(&mut ctx.db, table, step, initial)?)
        }
    }
}

fn apply_command(ctx: &mut Ctx<'_>, argv: &[Bytes], index: u64) -> Result<Frame, ApplyError> {
    let unknown = || ApplyError::UnknownCommand {
        index,
        name: argv
            .first()
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .unwrap_or_default(),
    };
    let decl = match resolve(argv) {
        Ok(decl) => decl,
        // The leader checks names and arity before proposing; an entry
        // with an unknown name came from a newer binary.
        Err(_) => return Err(unknown()),
    };
    match decl.handler {
        Handler::Data { run, .. } => finish(run(ctx, argv)),
        Handler::Server(_) | Handler::Container => Err(unknown()),
    }
}

/// A handler's result as a reply; a storage failure stays an error.
fn finish(result: CmdResult) -> Result<Frame, ApplyError> {
    match result {
        Ok(frame) => Ok(frame),
        Err(CmdError::Reply(text)) => Ok(Frame::Error(Bytes::from(text.into_owned()))),
        Err(CmdError::Kv(e)) => Err(ApplyError::Kv(e)),
    }
}

/// Runs a read (or pure) command on `group`'s data in `view` at time
/// `now_ms`; a write through the view fails with [`KvError::ReadOnly`].
pub fn run_read<K: RawKv>(
    decl: &Decl,
    argv: &[Bytes],
    group: u32,
    view: &mut K,
    now_ms: u64,
    counts: Counts,
    seed: u64,
) -> Result<Frame, KvError> {
    let Handler::Data { run, .. } = decl.handler else {
        return Ok(Frame::error("ERR internal error: not a data command"));
    };
    let mut ctx = Ctx {
        db: Keyspace::new(view as &mut dyn RawKv, group, now_ms, 0, counts),
        rng: EntryRng::new(seed, 0),
    };
    match run(&mut ctx, argv) {
        Ok(frame) => Ok(frame),
        Err(CmdError::Reply(text)) => Ok(Frame::Error(Bytes::from(text.into_owned()))),
        Err(CmdError::Kv(e)) => Err(e),
    }
}

/// The leader's preparation of a write at `now_ms`: the arguments to
/// propose (relative times made absolute), or the error reply that makes
/// proposing pointless.
pub fn prepare_write(decl: &Decl, argv: Vec<Bytes>, now_ms: u64) -> Result<Vec<Bytes>, Frame> {
    match decl.handler {
        Handler::Data {
            prepare: Some(prepare),
            ..
        } => Ok(prepare(&argv, now_ms)?.unwrap_or(argv)),
        _ => Ok(argv),
    }
}

/// A read-only [`RawKv`] that has nothing: pure commands run on it.
pub struct NoData;

impl RawKv for NoData {
    fn get(&mut self, _: &[u8]) -> Result<Option<Bytes>, KvError> {
        Ok(None)
    }
    fn put(&mut self, _: Vec<u8>, _: Vec<u8>) -> Result<(), KvError> {
        Err(KvError::ReadOnly)
    }
    fn delete(&mut self, _: Vec<u8>) -> Result<(), KvError> {
        Err(KvError::ReadOnly)
    }
    fn delete_range(&mut self, _: Vec<u8>, _: Vec<u8>) -> Result<(), KvError> {
        Err(KvError::ReadOnly)
    }
    fn scan(&mut self, _: &[u8], _: &[u8], _: usize) -> Result<Vec<(Bytes, Bytes)>, KvError> {
        Ok(Vec::new())
    }
    fn scan_rev(&mut self, _: &[u8], _: &[u8], _: usize) -> Result<Vec<(Bytes, Bytes)>, KvError> {
        Ok(Vec::new())
    }
}
