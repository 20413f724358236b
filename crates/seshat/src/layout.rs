//! Which data groups a cluster has, which slots each serves and which
//! nodes hold its replicas.
//!
//! The layout is a pure function of the bootstrap flags — the initial
//! members, `--shards` and `--replicas` — which every initial node is
//! given identically:
//!
//! * the 16384 slots are split into `shards` contiguous ranges, as even as
//!   integers allow (group `g`, from 1, gets `[(g-1)·S/N, g·S/N)`);
//! * group `g` is replicated on `replicas` nodes (all of them when the
//!   cluster has fewer): the members in id order, starting at the
//!   `(g-1) mod nodes`-th, wrapping around. That node is the group's
//!   *preferred leader*, so with every node up each node leads about
//!   `shards / nodes` groups and holds about `shards · replicas / nodes`
//!   replicas. A node learns the leaders of groups it holds no replica of
//!   from its peers ([`crate::groups`]).
//!
//! The first start records the bootstrap parameters in the node's
//! `system_data`; a restart with other `--shards`, `--replicas` or other
//! members is refused with a message saying what the data directory was
//! created with, so a node never silently changes which slots its groups
//! serve or where their replicas are.

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
const LAYOUT_VERSION: &str = "layout-v2";

/// Replicas of each group of a new sharded cluster without `--replicas`
/// (all nodes when there are fewer). A one-group cluster without it
/// replicates its group on every node, up to [`MAX_REPLICAS`]: the
/// one-group cluster of Phase 1, whose five nodes survive two failures.
pub const DEFAULT_REPLICAS: u32 = 3;
/// Most replicas a group may have: every replica is a voter.
pub const MAX_REPLICAS: u32 = 7;

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
    /// The replica that should lead it when it is up (see the module
    /// documentation).
    pub preferred: u64,
}

/// The cluster's data groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    groups: Vec<GroupLayout>,
    members: Vec<u64>,
    /// The replication factor asked for (groups have fewer replicas when
    /// the cluster has fewer nodes).
    replicas: u32,
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
    /// The layout of a cluster bootstrapped with `members` (node ids),
    /// `shards` data groups and `replicas` replicas per group.
    pub fn bootstrap(members: &[u64], shards: u32, replicas: u32) -> Result<Layout, LayoutError> {
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
        if replicas == 0 || replicas > MAX_REPLICAS {
            return Err(LayoutError(format!(
                "replicas must be between 1 and {MAX_REPLICAS}, not {replicas}"
            )));
        }
        let n = members.len();
        let per_group = (replicas as usize).min(n);
        let total = u32::from(CLUSTER_SLOTS);
        let groups = (0..shards)
            .map(|i| {
                // `i * total / shards` ≤ total, and total fits a u16 minus one
                // after the `- 1`: the conversions cannot fail.
                let first = u16::try_from(i * total / shards).unwrap_or(0);
                let last = u16::try_from((i + 1) * total / shards - 1).unwrap_or(CLUSTER_SLOTS - 1);
                let start = i as usize % n;
                let mut holders: Vec<u64> =
                    (0..per_group).map(|k| members[(start + k) % n]).collect();
                holders.sort_unstable();
                GroupLayout {
                    id: i + 1,
                    slots: first..=last,
                    replicas: holders,
                    preferred: members[start],
                }
            })
            .collect();
        Ok(Layout {
            groups,
            members,
            replicas,
        })
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

    /// Every data group, in id (and slot) order.
    pub fn groups(&self) -> &[GroupLayout] {
        &self.groups
    }

    /// Whether data group `group`'s voters are still those it was placed
    /// on at bootstrap (in any order): only then does its preferred leader
    /// apply.
    pub fn placed_as_bootstrapped(&self, group: u32, voters: &[u64]) -> bool {
        let Some(g) = self.group(group) else {
            return false;
        };
        let mut voters = voters.to_vec();
        voters.sort_unstable();
        voters.dedup();
        voters == g.replicas
    }

    /// The replication factor the cluster was bootstrapped with.
    pub fn replicas(&self) -> u32 {
        self.replicas
    }

    /// The cluster's initial members, ascending.
    pub fn members(&self) -> &[u64] {
        &self.members
    }

    /// The slot map this layout starts with, as the system group records
    /// it.
    pub fn slot_map(&self) -> Result<seshat_migration::SlotMap, LayoutError> {
        let ids: Vec<u32> = self.groups.iter().map(|g| g.id).collect();
        seshat_migration::SlotMap::even(&ids)
            .map_err(|e| LayoutError(format!("cannot build the slot map: {e}")))
    }

    /// The groups `node` holds a replica of.
    pub fn groups_of(&self, node: u64) -> impl Iterator<Item = &GroupLayout> {
        self.groups
            .iter()
            .filter(move |g| g.replicas.contains(&node))
    }

    /// The recorded form: the bootstrap parameters it is a function of.
    pub fn record(&self) -> String {
        let members: Vec<String> = self.members.iter().map(u64::to_string).collect();
        format!(
            "{LAYOUT_VERSION} shards={} replicas={} members={}",
            self.groups.len(),
            self.replicas,
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
        let replicas = parts
            .next()
            .and_then(|p| p.strip_prefix("replicas="))
            .and_then(|n| n.parse().ok())
            .ok_or_else(bad)?;
        let members = parts
            .next()
            .and_then(|p| p.strip_prefix("members="))
            .ok_or_else(bad)?
            .split(',')
            .map(|id| id.parse().map_err(|_| bad()))
            .collect::<Result<Vec<u64>, _>>()?;
        Layout::bootstrap(&members, shards, replicas)
    }

    /// The layout of a node that joined a running cluster: the cluster's
    /// (`text`, its recorded form as the system group holds it), recorded
    /// in the data directory on the first start; afterwards the recorded
    /// one.
    pub fn open_joined(store: &Store, text: &str) -> anyhow::Result<Layout> {
        let recorded = store
            .get(Cf::SystemData, KEY_LAYOUT)
            .map_err(|e| anyhow::anyhow!("cannot read the recorded layout: {e}"))?;
        if let Some(bytes) = recorded {
            return Ok(Layout::from_record(&String::from_utf8_lossy(&bytes))?);
        }
        let layout = Layout::from_record(text)?;
        layout.write_record(store)?;
        Ok(layout)
    }

    /// Records this layout in the data directory (synced).
    fn write_record(&self, store: &Store) -> anyhow::Result<()> {
        let mut batch = Batch::default();
        batch.put(Cf::SystemData, KEY_LAYOUT, self.record().as_bytes());
        store
            .write(batch, true)
            .map_err(|e| anyhow::anyhow!("cannot record the layout: {e}"))
    }

    /// Whether `store` holds a recorded layout (the data directory was
    /// used before).
    pub fn is_recorded(store: &Store) -> anyhow::Result<bool> {
        Ok(store
            .get(Cf::SystemData, KEY_LAYOUT)
            .map_err(|e| anyhow::anyhow!("cannot read the recorded layout: {e}"))?
            .is_some())
    }

    /// The layout this node runs: the one its data directory recorded at
    /// its first start, checked against the flags; on a first start, the
    /// flags' layout, recorded. `shards` and `replicas` are `None` when
    /// the flag was not given (a restart then keeps the recorded value).
    pub fn open(
        store: &Store,
        members: &[u64],
        shards: Option<u32>,
        replicas: Option<u32>,
    ) -> anyhow::Result<Layout> {
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
            if let Some(n) = replicas {
                if n != layout.replicas {
                    anyhow::bail!(
                        "this data directory belongs to a cluster bootstrapped with --replicas {}, \
                         not {n}: the replication factor cannot change by restarting (leave \
                         --replicas out, or give {})",
                        layout.replicas,
                        layout.replicas
                    );
                }
            }
            return Ok(layout);
        }
        let shards = shards.unwrap_or(DEFAULT_SHARDS);
        let replicas = replicas.unwrap_or(if shards > 1 {
            DEFAULT_REPLICAS
        } else {
            MAX_REPLICAS
        });
        let layout = Layout::bootstrap(members, shards, replicas)?;
        layout.write_record(store)?;
        Ok(layout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_split_evenly_and_cover_everything_once() {
        for shards in 1..=MAX_SHARDS {
            let layout = Layout::bootstrap(&[1, 2, 3], shards, 3).unwrap();
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
    fn small_clusters_hold_every_group_on_every_node() {
        let layout = Layout::bootstrap(&[3, 1, 2], 5, 3).unwrap();
        assert!(layout.groups.iter().all(|g| g.replicas == [1, 2, 3]));
        let layout = Layout::bootstrap(&[5, 1, 4, 2, 3], 5, 5).unwrap();
        assert!(layout.groups.iter().all(|g| g.replicas == [1, 2, 3, 4, 5]));
        assert_eq!(layout.groups_of(4).count(), 5);
        let preferred: Vec<u64> = layout.groups.iter().map(|g| g.preferred).collect();
        assert_eq!(preferred, [1, 2, 3, 4, 5]);
    }

    #[test]
    fn larger_clusters_place_each_group_on_three_consecutive_nodes() {
        let layout = Layout::bootstrap(&[5, 1, 4, 2, 3], 5, 3).unwrap();
        let replicas: Vec<&[u64]> = layout.groups.iter().map(|g| &g.replicas[..]).collect();
        assert_eq!(
            replicas,
            [
                &[1, 2, 3][..],
                &[2, 3, 4],
                &[3, 4, 5],
                &[1, 4, 5],
                &[1, 2, 5]
            ]
        );
        for g in &layout.groups {
            assert!(g.replicas.contains(&g.preferred));
        }
        // Every node holds three groups and is the preferred leader of one.
        for node in 1..=5 {
            assert_eq!(layout.groups_of(node).count(), 3);
            assert_eq!(
                layout.groups.iter().filter(|g| g.preferred == node).count(),
                1
            );
        }
        // A multiple of the node count: still even.
        let layout = Layout::bootstrap(&[1, 2, 3, 4, 5], 10, 3).unwrap();
        assert!((1..=5).all(|n| layout.groups_of(n).count() == 6));
        // Otherwise the first nodes take the remainder's turns.
        let layout = Layout::bootstrap(&[1, 2, 3, 4, 5, 6, 7], 16, 3).unwrap();
        let held: Vec<usize> = (1..=7).map(|n| layout.groups_of(n).count()).collect();
        assert_eq!(held, [7, 8, 8, 7, 6, 6, 6]);
    }

    #[test]
    fn the_recorded_slot_map_is_the_layouts() {
        for shards in 1..=MAX_SHARDS {
            let layout = Layout::bootstrap(&[1, 2, 3], shards, 3).unwrap();
            let runs: Vec<(u16, u16, u32)> = layout
                .groups
                .iter()
                .map(|g| (*g.slots.start(), *g.slots.end(), g.id))
                .collect();
            assert_eq!(layout.slot_map().unwrap().runs(), runs, "shards={shards}");
        }
    }

    #[test]
    fn bad_shard_counts_are_refused() {
        assert!(Layout::bootstrap(&[1], 0, 3).is_err());
        assert!(Layout::bootstrap(&[1], MAX_SHARDS + 1, 3).is_err());
        assert!(Layout::bootstrap(&[], 1, 3).is_err());
        assert!(Layout::bootstrap(&[1], 1, 0).is_err());
        assert!(Layout::bootstrap(&[1], 1, MAX_REPLICAS + 1).is_err());
    }

    #[test]
    fn the_record_round_trips() {
        let layout = Layout::bootstrap(&[3, 1, 2, 4], 4, 3).unwrap();
        assert_eq!(Layout::from_record(&layout.record()).unwrap(), layout);
        assert!(Layout::from_record("layout-v1 shards=1 members=1").is_err());
        assert!(Layout::from_record("layout-v2 shards=x replicas=3 members=1").is_err());
        assert!(Layout::from_record("layout-v2 shards=1 members=1").is_err());
    }

    #[test]
    fn a_restart_keeps_the_recorded_layout_and_refuses_other_flags() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &Default::default()).unwrap();
        // Without the flag a new cluster gets the default.
        let other = tempfile::tempdir().unwrap();
        let fresh = Store::open(other.path(), &Default::default()).unwrap();
        let default = Layout::open(&fresh, &[1, 2, 3, 4, 5], None, None).unwrap();
        assert_eq!(default.groups.len(), DEFAULT_SHARDS as usize);
        assert_eq!(default.groups[0].replicas, [1, 2, 3, 4, 5]);
        let other = tempfile::tempdir().unwrap();
        let fresh = Store::open(other.path(), &Default::default()).unwrap();
        let sharded = Layout::open(&fresh, &[1, 2, 3, 4, 5], Some(5), None).unwrap();
        assert_eq!(sharded.replicas, DEFAULT_REPLICAS);
        let first = Layout::open(&store, &[1, 2, 3], Some(2), Some(5)).unwrap();
        assert_eq!(first.groups.len(), 2);
        assert_eq!(Layout::open(&store, &[1, 2, 3], None, None).unwrap(), first);
        assert_eq!(
            Layout::open(&store, &[3, 2, 1], Some(2), Some(5)).unwrap(),
            first
        );
        let err = Layout::open(&store, &[1, 2, 3], Some(3), None).unwrap_err();
        assert!(err.to_string().contains("--shards 2"), "{err}");
        let err = Layout::open(&store, &[1, 2, 3], None, Some(3)).unwrap_err();
        assert!(err.to_string().contains("--replicas 5"), "{err}");
        let err = Layout::open(&store, &[1, 2], None, None).unwrap_err();
        assert!(err.to_string().contains("members [1, 2, 3]"), "{err}");
    }
}
