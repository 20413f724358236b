//! The node's data groups: one [`Node`] (a Raft replica with its proposer,
//! read confirmer and expiry sweep) per group this node holds, and the
//! routing of a request to the group that serves its slot.
//!
//! A command's keys decide its slot ([`Groups::slot_for`], `-CROSSSLOT`
//! when a sharded cluster's command spans slots); the layout decides the
//! group; that group's replica here serves the command if it leads, else
//! answers `-MOVED` to the group's leader. Keyless commands that read or
//! change the whole keyspace (`DBSIZE`, `FLUSHALL`, `SCAN`, `KEYS`,
//! `RANDOMKEY`) act on the groups this node leads, as they act on one
//! master of a Redis Cluster.

use std::ops::RangeInclusive;
use std::sync::Arc;

use anyhow::Context;
use bytes::Bytes;
use seshat_commands::Decl;
use seshat_common::crc16_slot;
use seshat_kv::Counts;
use seshat_raft::peer_tls::PeerTls;
use seshat_raft::StorageConfig;
use seshat_storage::Store;

use crate::config::Settings;
use crate::layout::Layout;
use crate::node::{Node, ServeError};

/// The reply to a command whose keys are in different slots.
pub const CROSSSLOT: &str = "CROSSSLOT Keys in request don't hash to the same slot";

/// The node's groups.
pub struct Groups {
    /// The validated settings.
    pub settings: Arc<Settings>,
    /// The node's database (every group's log, state and data).
    pub store: Store,
    /// Which group serves which slots.
    pub layout: Layout,
    /// This node's replica of each group, in group id order.
    nodes: Vec<Arc<Node>>,
}

impl Groups {
    /// Opens storage, checks (or records) the layout and starts a replica
    /// of every group this node holds.
    pub async fn start(
        settings: Arc<Settings>,
        peer_tls: Option<PeerTls>,
    ) -> anyhow::Result<Arc<Groups>> {
        std::fs::create_dir_all(&settings.data_dir)
            .with_context(|| format!("cannot create data dir {}", settings.data_dir.display()))?;
        let storage = StorageConfig::new(settings.data_dir.clone());
        let node_storage = seshat_raft::open_node_storage(&storage)
            .with_context(|| format!("cannot open storage in {}", settings.data_dir.display()))?;
        let store = node_storage.store().clone();
        let members: Vec<u64> = settings.initial_members.keys().copied().collect();
        let layout = Layout::open(&store, &members, settings.shards)?;
        let mut nodes = Vec::new();
        for group in layout.groups_of(settings.node_id) {
            let (log, sm) = node_storage
                .open_group(group.id)
                .with_context(|| format!("cannot open group {}", group.id))?;
            nodes.push(
                Node::start(
                    settings.clone(),
                    group.id,
                    store.clone(),
                    log,
                    sm,
                    peer_tls.clone(),
                    preferred_leader(&layout, group.id).unwrap_or(settings.node_id),
                )
                .await?,
            );
        }
        if nodes.is_empty() {
            anyhow::bail!("this node holds no replica of any group");
        }
        let groups = Arc::new(Groups {
            settings,
            store,
            layout,
            nodes,
        });
        tokio::spawn(run_leader_balancer(Arc::downgrade(&groups)));
        Ok(groups)
    }

    /// Every replica on this node.
    pub fn all(&self) -> &[Arc<Node>] {
        &self.nodes
    }

    /// The replica of the first group (the node-wide figures of a
    /// one-group cluster).
    pub fn first(&self) -> &Arc<Node> {
        // `start` refuses a node without replicas.
        &self.nodes[0]
    }

    /// The replica of the group that holds the ACL users: the first data
    /// group (it serves slot 0) until the system group holds them. Every
    /// node holds every group for now, so every node has it.
    pub fn users_group(&self) -> &Arc<Node> {
        self.get(seshat_kv::keys::DATA_GROUP)
            .unwrap_or_else(|| self.first())
    }

    /// The replica of `group` on this node, if it holds one.
    pub fn get(&self, group: u32) -> Option<&Arc<Node>> {
        self.nodes.iter().find(|n| n.group == group)
    }

    /// The replicas this node leads.
    pub fn led(&self) -> impl Iterator<Item = &Arc<Node>> {
        self.nodes.iter().filter(|n| n.raft.is_leader())
    }

    /// The keys `DBSIZE` and `INFO keyspace` count: every key of an
    /// unsharded cluster (a follower knows them too, as a Redis replica
    /// does); on a sharded one, the keys of the groups this node leads, as
    /// one Redis Cluster master counts its own slots.
    pub fn keyspace_counts(&self) -> Counts {
        if !self.layout.is_sharded() {
            return self.first().counts();
        }
        self.led()
            .map(|n| n.counts())
            .fold(Counts::default(), |a, b| Counts {
                keys: a.keys + b.keys,
                expiring: a.expiring + b.expiring,
            })
    }

    /// The replica serving `slot` here, or why this node cannot serve it.
    pub fn for_slot(&self, slot: u16) -> Result<&Arc<Node>, ServeError> {
        let group = self.layout.group_of(slot).id;
        self.get(group)
            .ok_or_else(|| ServeError::NoLeader(format!("no replica of group {group} here")))
    }

    /// Whether `decl` is a keyless data command that a sharded cluster runs
    /// on every group this node leads ([`crate::commands::run_keyless`]).
    pub fn fans_out(&self, decl: &Decl) -> bool {
        self.layout.is_sharded()
            && decl.keys == seshat_commands::KeySpec::NONE
            && matches!(
                decl.route(),
                seshat_commands::Route::Read | seshat_commands::Route::Write
            )
    }

    /// The groups this node leads with their slots, in slot order.
    pub fn led_by_slot(&self) -> Vec<(RangeInclusive<u16>, &Arc<Node>)> {
        let mut led: Vec<(RangeInclusive<u16>, &Arc<Node>)> = self
            .led()
            .filter_map(|n| self.layout.group(n.group).map(|g| (g.slots.clone(), n)))
            .collect();
        led.sort_by_key(|(slots, _)| *slots.start());
        led
    }

    /// The slot a request routes by: its keys' slot (all keys must share
    /// one on a sharded cluster, `-CROSSSLOT` otherwise), 0 without keys.
    pub fn slot_for(&self, decl: &Decl, args: &[Bytes]) -> Result<u16, ServeError> {
        let mut keys = decl.key_args(args);
        let Some(first) = keys.next() else {
            return Ok(0);
        };
        let slot = crc16_slot(first);
        if self.layout.is_sharded() && keys.any(|k| crc16_slot(k) != slot) {
            return Err(ServeError::CrossSlot);
        }
        Ok(slot)
    }

    /// The time reads judge expiry against (see [`Node::now_ms`]): this
    /// node's clock, never behind any group's last applied entry.
    pub fn now_ms(&self) -> u64 {
        let applied = self.nodes.iter().map(|n| n.applied_now_ms()).max();
        crate::node::wall_clock_ms().max(applied.unwrap_or(0))
    }

    /// Why some group's Raft core stopped, if one has.
    pub fn core_problem(&self) -> Option<String> {
        self.nodes
            .iter()
            .find_map(|n| n.core_problem().map(|p| format!("group {}: {p}", n.group)))
    }

    /// Why some group's tasks stopped, if they have.
    pub fn task_problem(&self) -> Option<String> {
        self.nodes
            .iter()
            .find_map(|n| n.task_problem().map(|p| format!("group {}: {p}", n.group)))
    }

    /// Waits until any group's Raft core stops and returns why.
    pub async fn core_stopped(&self) -> String {
        let waits = self.nodes.iter().map(|n| {
            let group = n.group;
            Box::pin(async move { format!("group {group}: {}", n.core_stopped().await) })
        });
        futures::future::select_all(waits).await.0
    }

    /// Hands over the leadership of every group this node leads.
    pub async fn hand_over_leadership(&self) {
        futures::future::join_all(self.nodes.iter().map(|n| n.hand_over_leadership())).await;
    }

    /// Stops every group's Raft.
    pub async fn shutdown(&self) {
        futures::future::join_all(self.nodes.iter().map(|n| n.shutdown())).await;
    }
}

/// How often a node looks for groups whose leadership it should hand to
/// their preferred leader.
const BALANCE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);
/// Most entries a preferred leader may lag behind and still be handed the
/// leadership (it must win the election the transfer starts).
const BALANCE_MAX_LAG: u64 = 16;

/// The node that should lead `group` when it is up: the replicas take
/// turns by group id, so with every node up each leads about
/// groups / nodes of them.
pub fn preferred_leader(layout: &Layout, group: u32) -> Option<u64> {
    let g = layout.group(group)?;
    let n = g.replicas.len().max(1);
    g.replicas
        .get((group as usize).saturating_sub(1) % n)
        .copied()
}

/// Leader balancing on a sharded cluster: a node that leads a group whose
/// preferred leader is another node — up, a voter, and caught up with the
/// log — hands the leadership over. Leaders thus spread after the first
/// elections and move back when a node returns from a restart. Every
/// node runs it for the groups it leads; nothing is coordinated.
pub async fn run_leader_balancer(groups: std::sync::Weak<Groups>) {
    let mut tick = tokio::time::interval(BALANCE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(groups) = groups.upgrade() else {
            return;
        };
        if !groups.layout.is_sharded() {
            return;
        }
        for node in groups.led() {
            let Some(target) = preferred_leader(&groups.layout, node.group) else {
                continue;
            };
            let m = node.metrics();
            if target == m.id || m.current_leader != Some(m.id) {
                continue;
            }
            let is_voter = m
                .membership_config
                .membership()
                .voter_ids()
                .any(|v| v == target);
            let last = m.last_log_index.unwrap_or(0);
            let matched = m
                .replication
                .as_ref()
                .and_then(|r| r.get(&target).cloned().flatten())
                .map(|l| l.index);
            let caught_up = matched.is_some_and(|i| i + BALANCE_MAX_LAG >= last);
            // Heard from within an election timeout: a stopped node's
            // match index stays where it was while nothing is written.
            let alive = {
                use openraft::type_config::async_runtime::Instant as _;
                m.heartbeat
                    .as_ref()
                    .and_then(|h| h.get(&target).cloned().flatten())
                    .is_some_and(|at| {
                        at.elapsed().as_millis() < u128::from(groups.settings.election_timeout_ms.0)
                    })
            };
            if !is_voter || !caught_up || !alive {
                continue;
            }
            tracing::info!(
                group = node.group,
                term = m.current_term,
                to = target,
                "handing group leadership to its preferred leader"
            );
            if let Err(e) = node.raft.trigger().transfer_leader(target).await {
                tracing::warn!(group = node.group, error = %e, "leadership transfer failed");
            }
        }
    }
}
