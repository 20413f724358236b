//! Which data groups a cluster has, which slots each serves and which
//! nodes hold its replicas.
//!
//! Until the system group owns this metadata (issue 14), the layout is a
//! pure function of the bootstrap flags — the initial members and
//! `--shards` — which every initial node is given identically:
//!
//! * the 16384 slots are split into `shards` contiguous ranges, as even as
//!   integers allow (group `g`, from 1, gets `[(g-1)·S/N, g·S/N)`);
//! * every node holds a replica of every group. DESIGN.md's replication
//!   factor of 3 on larger clusters needs every node to learn the leaders
//!   of groups it does not hold (for `MOVED` and `CLUSTER` replies), which
//!   the system group will provide; until then a 5-node cluster replicates
//!   each group 5 times.
//!
//! The first start records the bootstrap parameters in the node's
//! `system_data`; a restart with other `--shards` or other members is
//! refused with a message saying what the data directory was created with,
//! so a node never silently changes which slots its groups serve.

use std::fmt;
use std::ops::RangeInclusive;

use seshat_common::CLUSTER_SLOTS;
use seshat_storage::{Batch, Cf, Store};

/// Most data groups a cluster may have: each costs a Raft instance per
/// replica, a proposer and a read confirmer per node, and splits batching.
pub const MAX_SHARDS: u32 = 16;

/// Key of the recorded bootstrap parameters in `system_data`.
const KEY_LAYOUT: &[u8] = b"layout";
/// Version of the recorded layout's text.
const LAYOUT_VERSION: &str = "layout-v1";

/// The number of data groups of a new cluster without `--shards`.
/// DESIGN.md asks for one per node on three or more nodes; until replicas
/// are placed on three nodes of larger clusters (every node holds every
/// group for now) and the N-shard path is measured against the one-group
/// path, a new cluster keeps one group unless asked (see
/// `docs/architecture.md`, Shards).
pub const DEFAULT_SHARDS: u32 = 1;

/// One data group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupLayout {
    /// The group id (data groups start at 1).
    pub id: u32,
    /// The slots it serves.
    pub slots: RangeInclusive<u16>,
    /// The node ids holding its replicas, ascending.
    pub replicas: Vec<u64>,
}

/// The cluster's data groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    groups: Vec<GroupLayout>,
    members: Vec<u64>,
}

/// Why a layout cannot be built or reopened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayoutError(pub String);

impl fmt::Display for LayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for LayoutError {}

impl Layout {
    /// The layout of a cluster bootstrapped with `members` (node ids) and
    /// `shards` data groups.
    pub fn bootstrap(members: &[u64], shards: u32) -> Result<Layout, LayoutError> {
        let mut members = members.to_vec();
        members.sort_unstable();
        members.dedup();
        if members.is_empty() {
            return Err(LayoutError("a cluster needs at least one node".into()));
        }
        if shards == 0 || shards > MAX_SHARDS {
            return Err(LayoutError(format!(
                "shards must be between 1 and {MAX_SHARDS}, not {shards}"
            )));
        }
        let total = u32::from(CLUSTER_SLOTS);
        let groups = (0..shards)
            .map(|i| {
                // `i * total / shards` ≤ total, and total fits a u16 minus one
                // after the `- 1`: the conversions cannot fail.
                let first = u16::try_from(i * total / shards).unwrap_or(0);
                let last = u16::try_from((i + 1) * total / shards - 1).unwrap_or(CLUSTER_SLOTS - 1);
                GroupLayout {
                    id: i + 1,
                    slots: first..=last,
                    replicas: members.clone(),
                }
            })
            .collect();
        Ok(Layout { groups, members })
    }

    /// Group `id`, if the layout has it.
    pub fn group(&self, id: u32) -> Option<&GroupLayout> {
        self.groups.iter().find(|g| g.id == id)
    }

    /// The group serving `slot`.
    pub fn group_of(&self, slot: u16) -> &GroupLayout {
        let i = self
            .groups
            .partition_point(|g| *g.slots.end() < slot)
            .min(self.groups.len() - 1);
        &self.groups[i]
    }

    /// Whether the cluster has more than one data group (commands must
    /// then keep their keys in one slot).
    pub fn is_sharded(&self) -> bool {
        self.groups.len() > 1
    }

    /// The groups `node` holds a replica of.
    pub fn groups_of(&self, node: u64) -> impl Iterator<Item = &GroupLayout> {
        self.groups
            .iter()
            .filter(move |g| g.replicas.contains(&node))
    }

    /// The recorded form: the bootstrap parameters it is a function of.
    fn record(&self) -> String {
        let members: Vec<String> = self.members.iter().map(u64::to_string).collect();
        format!(
            "{LAYOUT_VERSION} shards={} members={}",
            self.groups.len(),
            members.join(",")
        )
    }

    /// Parses [`Layout::record`]'s text.
    fn from_record(text: &str) -> Result<Layout, LayoutError> {
        let bad = || LayoutError(format!("unreadable recorded layout {text:?}"));
        let mut parts = text.split(' ');
        if parts.next() != Some(LAYOUT_VERSION) {
            return Err(LayoutError(format!(
                "recorded layout {text:?} is not in format {LAYOUT_VERSION}"
            )));
        }
        let shards = parts
            .next()
            .and_then(|p| p.strip_prefix("shards="))
            .and_then(|n| n.parse().ok())
            .ok_or_else(bad)?;
        let members = parts
            .next()
            .and_then(|p| p.strip_prefix("members="))
            .ok_or_else(bad)?
            .split(',')
            .map(|id| id.parse().map_err(|_| bad()))
            .collect::<Result<Vec<u64>, _>>()?;
        Layout::bootstrap(&members, shards)
    }

    /// The layout this node runs: the one its data directory recorded at
    /// its first start, checked against the flags; on a first start, the
    /// flags' layout, recorded. `shards` is `None` when the flag was not
    /// given (a restart then keeps the recorded count).
    pub fn open(store: &Store, members: &[u64], shards: Option<u32>) -> anyhow::Result<Layout> {
        let recorded = store
            .get(Cf::SystemData, KEY_LAYOUT)
            .map_err(|e| anyhow::anyhow!("cannot read the recorded layout: {e}"))?;
        if let Some(bytes) = recorded {
            let text = String::from_utf8_lossy(&bytes).into_owned();
            let layout = Layout::from_record(&text)?;
            let mut flagged = members.to_vec();
            flagged.sort_unstable();
            flagged.dedup();
            if flagged != layout.members {
                anyhow::bail!(
                    "this data directory belongs to a cluster bootstrapped with members {:?}, \
                     not {flagged:?}: start the node with the --initial-members it was created with",
                    layout.members
                );
            }
            if let Some(n) = shards {
                if n as usize != layout.groups.len() {
                    anyhow::bail!(
                        "this data directory belongs to a cluster bootstrapped with --shards {}, \
                         not {n}: the number of shards cannot change by restarting (leave \
                         --shards out, or give {})",
                        layout.groups.len(),
                        layout.groups.len()
                    );
                }
            }
            return Ok(layout);
        }
        let layout = Layout::bootstrap(members, shards.unwrap_or(DEFAULT_SHARDS))?;
        let mut batch = Batch::default();
        batch.put(Cf::SystemData, KEY_LAYOUT, layout.record().as_bytes());
        store
            .write(batch, true)
            .map_err(|e| anyhow::anyhow!("cannot record the layout: {e}"))?;
        Ok(layout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_split_evenly_and_cover_everything_once() {
        for shards in 1..=MAX_SHARDS {
            let layout = Layout::bootstrap(&[1, 2, 3], shards).unwrap();
            let mut next = 0u32;
            for g in &layout.groups {
                assert_eq!(u32::from(*g.slots.start()), next, "shards={shards}");
                let size = u32::from(*g.slots.end()) - u32::from(*g.slots.start()) + 1;
                let even = u32::from(CLUSTER_SLOTS) / shards;
                assert!(
                    size == even || size == even + 1,
                    "shards={shards} size={size}"
                );
                next = u32::from(*g.slots.end()) + 1;
            }
            assert_eq!(next, u32::from(CLUSTER_SLOTS));
            for slot in [0, 1, 5460, 5461, 8191, 8192, 16383] {
                assert!(layout.group_of(slot).slots.contains(&slot));
            }
        }
    }

    #[test]
    fn every_node_holds_every_group() {
        let layout = Layout::bootstrap(&[5, 1, 4, 2, 3], 5).unwrap();
        assert!(layout.groups.iter().all(|g| g.replicas == [1, 2, 3, 4, 5]));
        assert_eq!(layout.groups_of(4).count(), 5);
    }

    #[test]
    fn bad_shard_counts_are_refused() {
        assert!(Layout::bootstrap(&[1], 0).is_err());
        assert!(Layout::bootstrap(&[1], MAX_SHARDS + 1).is_err());
        assert!(Layout::bootstrap(&[], 1).is_err());
    }

    #[test]
    fn the_record_round_trips() {
        let layout = Layout::bootstrap(&[3, 1, 2], 4).unwrap();
        assert_eq!(Layout::from_record(&layout.record()).unwrap(), layout);
        assert!(Layout::from_record("layout-v0 shards=1 members=1").is_err());
        assert!(Layout::from_record("layout-v1 shards=x members=1").is_err());
    }

    #[test]
    fn a_restart_keeps_the_recorded_layout_and_refuses_other_flags() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &Default::default()).unwrap();
        // Without the flag a new cluster gets the default.
        let other = tempfile::tempdir().unwrap();
        let fresh = Store::open(other.path(), &Default::default()).unwrap();
        let default = Layout::open(&fresh, &[1, 2, 3], None).unwrap();
        assert_eq!(default.groups.len(), DEFAULT_SHARDS as usize);
        let first = Layout::open(&store, &[1, 2, 3], Some(2)).unwrap();
        assert_eq!(first.groups.len(), 2);
        assert_eq!(Layout::open(&store, &[1, 2, 3], None).unwrap(), first);
        assert_eq!(Layout::open(&store, &[3, 2, 1], Some(2)).unwrap(), first);
        let err = Layout::open(&store, &[1, 2, 3], Some(3)).unwrap_err();
        assert!(err.to_string().contains("--shards 2"), "{err}");
        let err = Layout::open(&store, &[1, 2], None).unwrap_err();
        assert!(err.to_string().contains("members [1, 2, 3]"), "{err}");
    }
}
