//! What a Raft log entry of client writes carries: commands as the leader
//! made them deterministic (binary-safe argv with absolute times), the
//! entry's time and seed, and transactions with their `WATCH`ed keys.

use std::fmt;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use seshat_common::{LimitError, Limits};

/// A command's arguments, the name first.
pub type Argv = Vec<Bytes>;

/// The client writes of one log entry, applied in order, each with its own
/// reply. The leader batches concurrent writes this way so they share one
/// entry's costs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteBatch {
    /// The leader's clock when it proposed the entry (Unix ms); apply uses
    /// `max(now_ms, previous entry's time)`, so time never runs backwards.
    pub now_ms: u64,
    /// Seeds the entry's deterministic randomness.
    pub seed: u64,
    /// The writes, in order.
    pub writes: Vec<Write>,
}

/// One client write: a command, a transaction, or the leader's removal of
/// expired keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Write {
    /// One command.
    Command(Argv),
    /// `MULTI … EXEC`: all commands or none (a changed watched key).
    Transaction {
        /// Keys `WATCH`ed before `MULTI`, with what was observed.
        watches: Vec<Watch>,
        /// The queued commands.
        commands: Vec<Argv>,
    },
    /// Keys whose expiry the leader found due; each is removed only if it
    /// is still expired when the entry applies.
    ExpireKeys(Vec<Bytes>),
    /// A change to the ACL users, replicated so every node enforces the
    /// same rules.
    Acl(AclWrite),
    /// A change to the cluster's metadata (system group only).
    System(SystemWrite),
    /// One step of a slot migration in this data group's log
    /// (`seshat_migration::GroupStep`), applied to the group's slot table
    /// together with its effect on the data.
    Migration {
        /// The step, as `GroupStep::encode` wrote it.
        step: Bytes,
        /// The group's table before any migration
        /// (`SlotTable::new(group, map).encode()`), used only when the
        /// group has no stored table yet: the first step a group ever
        /// applies creates its table from it, later ones ignore it.
        initial: Bytes,
    },
}

/// A change to the cluster's metadata, kept by the system group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SystemWrite {
    /// Records the cluster's metadata once, at bootstrap: `cluster` (the
    /// layout: members, shards, replicas) and `slots` (the system table:
    /// the slot map, its version and the migrations in flight). A second
    /// bootstrap leaves the first in place.
    Bootstrap {
        /// The layout record.
        cluster: Bytes,
        /// The encoded system table.
        slots: Bytes,
    },
    /// One step of the system table (`seshat_migration::SystemStep`, as
    /// `SystemStep::encode` wrote it): record, abort, flip or finish a
    /// migration.
    Step(Bytes),
    /// Node `node` started for the first time with the data directory
    /// `instance`. The first record of a node stays: a node whose data
    /// directory was lost comes back with another instance, and is
    /// refused (it must not vote again under its old id).
    NodeBooted {
        /// The node id.
        node: u64,
        /// Its data directory's random id.
        instance: u64,
    },
    /// A change to the cluster's node directory (an encoded
    /// `seshat_commands::members::MemberOp`): a node joins, records its
    /// addresses, or changes state.
    Member(Bytes),
}

/// A change to the ACL users.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AclWrite {
    /// `ACL SETUSER name rules…`: all rules or none. `base` is applied
    /// first when the user does not exist yet (the leader's `default`
    /// user before any ACL write touched it, so the first change keeps
    /// the password the leader had).
    SetUser {
        /// The user.
        name: Bytes,
        /// Rules for a user that does not exist yet, before `rules`.
        base: Vec<Bytes>,
        /// The rules, in order.
        rules: Vec<Bytes>,
    },
    /// `ACL DELUSER name…` (never `default`).
    DelUser(Vec<Bytes>),
    /// `ACL LOAD` / `--aclfile`: these users replace all others (a
    /// `default` not among them falls back to the node's `requirepass`).
    Replace(Vec<UserDef>),
}

/// A user as an ACL file line defines it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserDef {
    /// The user.
    pub name: Bytes,
    /// Its rules, in order.
    pub rules: Vec<Bytes>,
}

/// A `WATCH`ed key and the modification index it had (`None`: absent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Watch {
    /// The key.
    pub key: Bytes,
    /// The key's modification index when watched, `None` if it did not
    /// exist then.
    pub mod_index: Option<u64>,
}

/// Largest migration step write: a chunk of at most 2 MiB of copied
/// entries (`seshat_migration::MAX_CHUNK_BYTES`), its migration, and the
/// table a group starts from (at most 16384 slot runs of 8 bytes).
pub const MAX_MIGRATION_WRITE_BYTES: usize = 2 * 1024 * 1024 + 256 * 1024;

/// Framing bytes counted per argument when sizing a write.
pub const ARG_FRAMING_BYTES: usize = 8;

/// Bytes `args` count for when sizing a write: each argument's length plus
/// [`ARG_FRAMING_BYTES`].
pub fn args_size(args: &[Bytes]) -> usize {
    args.iter().map(|x| x.len() + ARG_FRAMING_BYTES).sum()
}

impl Write {
    /// About how many bytes this write takes in a log entry.
    pub fn encoded_size_hint(&self) -> usize {
        let argv = |a: &Argv| args_size(a) + 4;
        match self {
            Write::Command(a) => argv(a),
            Write::Transaction { watches, commands } => {
                commands.iter().map(argv).sum::<usize>()
                    + watches.iter().map(|w| w.key.len() + 16).sum::<usize>()
                    + 8
            }
            Write::ExpireKeys(keys) => keys.iter().map(|k| k.len() + ARG_FRAMING_BYTES).sum(),
            Write::Acl(AclWrite::SetUser { name, base, rules }) => {
                name.len() + args_size(base) + args_size(rules) + 16
            }
            Write::Acl(AclWrite::DelUser(names)) => args_size(names) + 8,
            Write::Acl(AclWrite::Replace(users)) => users
                .iter()
                .map(|u| u.name.len() + args_size(&u.rules) + 8)
                .sum::<usize>()
                .saturating_add(8),
            Write::System(SystemWrite::Bootstrap { cluster, slots }) => {
                cluster.len() + slots.len() + 16
            }
            Write::System(SystemWrite::Step(step)) => step.len() + 8,
            Write::System(SystemWrite::NodeBooted { .. }) => 24,
            Write::System(SystemWrite::Member(op)) => op.len() + 8,
            Write::Migration { step, initial } => step.len() + initial.len() + 16,
        }
    }

    /// Refuses a write larger than one log entry may be: every write must
    /// fit the replication sizing, which assumes no entry is larger than
    /// the largest key plus the largest value plus framing.
    ///
    /// A migration step is the exception: its chunk of copied entries is
    /// bounded by the cluster-wide [`MAX_MIGRATION_WRITE_BYTES`], not by
    /// this node's request limit (every coordinator must cut the same
    /// chunks), and replication is sized for it.
    pub fn check_size(&self, limits: &Limits) -> Result<(), LimitError> {
        let max = match self {
            Write::Migration { .. } => MAX_MIGRATION_WRITE_BYTES,
            _ => limits.max_request_bytes(),
        };
        if self.encoded_size_hint() > max {
            return Err(LimitError::RequestTooLarge);
        }
        Ok(())
    }
}

impl fmt::Display for WriteBatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} writes at {} ms", self.writes.len(), self.now_ms)
    }
}

/// Deterministic randomness for one write: the same on every replica.
#[derive(Debug, Clone)]
pub struct EntryRng {
    state: u64,
}

impl EntryRng {
    /// The generator of write `position` in an entry with `seed`.
    pub fn new(seed: u64, position: u64) -> Self {
        Self {
            state: seed ^ position.wrapping_mul(0x9E37_79B9_7F4A_7C15),
        }
    }

    /// The next 64 random bits (SplitMix64).
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oversized_writes_are_refused() {
        let limits = Limits::default();
        let big = Bytes::from(vec![0u8; limits.max_request_bytes()]);
        let w = Write::Command(vec![
            Bytes::from_static(b"SET"),
            Bytes::from_static(b"k"),
            big,
        ]);
        assert_eq!(w.check_size(&limits), Err(LimitError::RequestTooLarge));
        // Regression: a DEL of a million empty keys still takes room.
        let empties = Write::Command(vec![Bytes::new(); 1_000_000]);
        assert_eq!(
            empties.check_size(&limits),
            Err(LimitError::RequestTooLarge)
        );
        let ok = Write::Command(vec![
            Bytes::from_static(b"SET"),
            Bytes::from_static(b"k"),
            Bytes::from_static(b"v"),
        ]);
        assert_eq!(ok.check_size(&limits), Ok(()));
    }

    #[test]
    fn rng_depends_on_seed_and_position_only() {
        let a: Vec<u64> = (0..4).map(|_| EntryRng::new(1, 2).next_u64()).collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]));
        assert_ne!(
            EntryRng::new(1, 2).next_u64(),
            EntryRng::new(1, 3).next_u64()
        );
    }
}
