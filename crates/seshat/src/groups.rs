//! The node's Raft groups: one [`Node`] (a Raft replica with its
//! proposer, read confirmer and expiry sweep) per group this node holds —
//! the system group (id 0, on every initial member: the ACL users) and the
//! data groups the layout places here — and the routing of a request to
//! the group that serves its slot.
//!
//! A command's keys decide its slot ([`Groups::slot_for`], `-CROSSSLOT`
//! when a sharded cluster's command spans slots); the layout decides the
//! group; that group's replica here serves the command if it leads, else
//! answers `-MOVED` to the group's leader. A group this node holds no
//! replica of (a cluster larger than the replication factor) is answered
//! `-MOVED` to its leader as the node's peers report it
//! ([`run_leader_poller`]). Keyless commands that read or change the
//! whole keyspace (`DBSIZE`, `FLUSHALL`, `SCAN`, `KEYS`, `RANDOMKEY`) act
//! on the groups this node leads, as they act on one master of a Redis
//! Cluster.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use seshat_commands::Decl;
use seshat_common::crc16_slot;
use seshat_kv::Counts;
use seshat_raft::layout::SYSTEM_GROUP;
use seshat_raft::peer_tls::PeerTls;
use seshat_raft::StorageConfig;
use seshat_storage::Store;

use crate::config::Settings;
use crate::layout::Layout;
use crate::node::{Bootstrap, Node, ServeError};

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
    /// The layout's slot map: the bootstrap split, which routing follows
    /// until the system group's table has applied here.
    layout_map: seshat_migration::SlotMap,
    /// This data directory's random id (see [`crate::boot`]).
    pub instance: u64,
    /// The node's storage, to open and delete replicas while it runs.
    node_storage: seshat_raft::NodeStorage,
    /// How peers are dialled (for replicas started while the node runs).
    peer_tls: Option<PeerTls>,
    /// The Raft port's registry of served groups, once it is built.
    grpc: std::sync::OnceLock<seshat_raft::grpc_server::RaftGrpc>,
    /// Opening and dropping replicas, one at a time.
    replica_changes: tokio::sync::Mutex<()>,
    /// This node's replica of the system group (every node holds one).
    system: Arc<Node>,
    /// This node's replica of each group, in group id order: the system
    /// group first. Replicas come and go as the rebalancer moves them.
    nodes: RwLock<Vec<Arc<Node>>>,
    /// Every node's addresses: the flags', then the system group's
    /// directory as this node last read it ([`run_directory_refresh`]).
    directory: RwLock<crate::membership::Known>,
    /// The leaders of the data groups this node holds no replica of, as
    /// its peers last reported them.
    remote: RwLock<HashMap<u32, RemoteLeader>>,
    /// Why this node's layout is not the cluster's, once the system
    /// group's records say so ([`run_metadata_check`]): it then serves no
    /// data command.
    layout_conflict: std::sync::OnceLock<String>,
    /// Set once the cluster removed this node: it holds no replica and
    /// redirects every data command (`MOVED` to the slot's leader as its
    /// peers report it), so a client whose slot map still names it
    /// follows the redirect instead of getting an error.
    removed: std::sync::atomic::AtomicBool,
}

/// A group's leader as a peer holding one of its replicas reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RemoteLeader {
    term: u64,
    leader: Option<u64>,
    /// The group's voters as the reporting replica knows them.
    voters: Vec<u64>,
    /// When a peer last reported this term and leader.
    seen: Instant,
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
        let mut storage = StorageConfig::new(settings.data_dir.clone());
        storage.store_options.key_cache_bytes = settings.key_cache_bytes;
        let node_storage = seshat_raft::open_node_storage(&storage)
            .with_context(|| format!("cannot open storage in {}", settings.data_dir.display()))?;
        let store = node_storage.store().clone();
        let instance = crate::boot::instance(&store)?;
        let proxy = crate::proxy::Proxy::new(peer_tls.clone());
        // A node started with --join gets its id, the cluster's layout
        // and its members from the cluster (once; then from its data
        // directory).
        let (settings, layout) = match &settings.join {
            Some(_) => {
                let joined = crate::membership::join(&settings, &proxy, &store, instance).await?;
                let layout = Layout::open_joined(&store, &joined.layout)?;
                (Arc::new(joined.settings), layout)
            }
            None => {
                let members: Vec<u64> = settings.initial_members.keys().copied().collect();
                let fresh = !Layout::is_recorded(&store)?;
                if fresh && members.len() > 1 {
                    // Before any group runs: a lost data directory must not vote.
                    crate::boot::check_new_directory(&settings, &proxy, instance).await?;
                }
                let layout = Layout::open(&store, &members, settings.shards, settings.replicas)?;
                (settings, layout)
            }
        };
        crate::boot::check_not_removed(&settings, &proxy).await?;
        let layout_map = layout.slot_map()?;
        let hosted = crate::membership::Hosted::open(&store, &layout, settings.node_id)?;
        let directory = RwLock::new(crate::membership::Known::from_flags(&settings));
        let mut nodes = Vec::new();
        for (group, initial) in hosted.groups() {
            // Only a group this node has held since the cluster's start may
            // be initialised by it (a replica added later joins a group
            // that exists).
            let (initializer, replicas) = match (group, initial) {
                (SYSTEM_GROUP, true) => {
                    (system_preferred_leader(&layout), layout.members().to_vec())
                }
                (g, true) => layout
                    .group(g)
                    .map_or((0, Vec::new()), |l| (l.preferred, l.replicas.clone())),
                _ => (0, Vec::new()),
            };
            nodes.push(
                start_replica(
                    &settings,
                    &node_storage,
                    peer_tls.clone(),
                    group,
                    Bootstrap {
                        initializer,
                        replicas: &replicas,
                    },
                )
                .await?,
            );
        }
        let system = nodes
            .iter()
            .find(|n| n.group == SYSTEM_GROUP)
            .cloned()
            .context("this node holds no replica of the system group")?;
        let groups = Arc::new(Groups {
            settings,
            store,
            layout,
            layout_map,
            instance,
            node_storage,
            peer_tls: peer_tls.clone(),
            grpc: std::sync::OnceLock::new(),
            replica_changes: tokio::sync::Mutex::new(()),
            system,
            nodes: RwLock::new(nodes),
            directory,
            remote: RwLock::default(),
            layout_conflict: std::sync::OnceLock::new(),
            removed: std::sync::atomic::AtomicBool::new(false),
        });
        tokio::spawn(run_leader_balancer(Arc::downgrade(&groups)));
        tokio::spawn(run_metadata_check(Arc::downgrade(&groups)));
        tokio::spawn(run_leader_poller(Arc::downgrade(&groups), peer_tls));
        tokio::spawn(crate::membership::run_directory_refresh(
            Arc::downgrade(&groups),
            crate::proxy::Proxy::new(groups.peer_tls.clone()),
        ));
        Ok(groups)
    }

    /// Hands the Raft port's group registry to the node, so replicas
    /// opened or dropped later are served or no longer served.
    pub fn attach_grpc(&self, grpc: seshat_raft::grpc_server::RaftGrpc) {
        let _ = self.grpc.set(grpc);
    }

    /// Starts an empty replica of `group` on this node (recorded first,
    /// so a restart reopens it), to receive the group's log as a learner.
    /// A replica already here is left as it is. Returns whether one was
    /// started.
    pub async fn open_replica(&self, group: u32) -> anyhow::Result<bool> {
        let _one = self.replica_changes.lock().await;
        if self.get(group).is_some() {
            return Ok(false);
        }
        if group == SYSTEM_GROUP || self.layout.group(group).is_none() {
            anyhow::bail!("no data group {group} in this cluster");
        }
        crate::membership::Hosted::add(&self.store, group)?;
        let started = start_replica(
            &self.settings,
            &self.node_storage,
            self.peer_tls.clone(),
            group,
            Bootstrap {
                initializer: 0,
                replicas: &[],
            },
        )
        .await;
        let node = match started {
            Ok(node) => node,
            Err(e) => {
                // Not reopened at the next start either.
                let _ = crate::membership::Hosted::remove(&self.store, group);
                return Err(e);
            }
        };
        if let Some(grpc) = self.grpc.get() {
            if let Err(e) = grpc.add_group_with(group, node.raft.clone(), true) {
                node.shutdown().await;
                self.node_storage.close_group(group);
                let _ = crate::membership::Hosted::remove(&self.store, group);
                return Err(e.into());
            }
        }
        let mut nodes = self.nodes.write().unwrap_or_else(|p| p.into_inner());
        nodes.push(node);
        nodes.sort_by_key(|n| n.group);
        tracing::info!(group, "opened a replica of the group");
        Ok(true)
    }

    /// Deletes this node's replica of `group` (no longer a member of the
    /// group): it stops serving it, shuts its Raft down and deletes its
    /// log and data, keeping its vote ([`seshat_raft::NodeStorage::destroy_group`]).
    /// Returns whether there was one.
    pub async fn drop_replica(&self, group: u32) -> anyhow::Result<bool> {
        let _one = self.replica_changes.lock().await;
        if group == SYSTEM_GROUP {
            anyhow::bail!("the system group's replica is never dropped");
        }
        let Some(node) = self.get(group) else {
            return Ok(false);
        };
        // Forgotten first: a restart after this point does not reopen it.
        crate::membership::Hosted::remove(&self.store, group)?;
        if let Some(grpc) = self.grpc.get() {
            grpc.remove_group(group);
        }
        {
            let mut nodes = self.nodes.write().unwrap_or_else(|p| p.into_inner());
            nodes.retain(|n| n.group != group);
        }
        node.shutdown().await;
        drop(node);
        self.node_storage.close_group(group);
        let storage = self.node_storage.clone();
        tokio::task::spawn_blocking(move || storage.destroy_group(group))
            .await
            .context("the replica's deletion task failed")??;
        tracing::info!(group, "dropped this node's replica of the group");
        Ok(true)
    }

    /// Node `id`'s addresses as this node knows them.
    pub fn member(&self, id: u64) -> Option<crate::config::Member> {
        let known = self.directory.read().unwrap_or_else(|p| p.into_inner());
        known.member(id)
    }

    /// Every node this node knows of: id, addresses and state.
    pub fn known_nodes(&self) -> crate::membership::Known {
        self.directory
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Takes the system group's directory as read now.
    pub fn set_directory(&self, known: crate::membership::Known) {
        *self.directory.write().unwrap_or_else(|p| p.into_inner()) = known;
    }

    /// Every replica on this node, the system group's first.
    pub fn all(&self) -> Vec<Arc<Node>> {
        self.nodes.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The replicas of data groups on this node, in group id order.
    pub fn data(&self) -> Vec<Arc<Node>> {
        let nodes = self.nodes.read().unwrap_or_else(|p| p.into_inner());
        nodes
            .iter()
            .filter(|n| n.group != SYSTEM_GROUP)
            .cloned()
            .collect()
    }

    /// The replica whose figures stand for the node's (`INFO`, `ROLE`,
    /// the unlabelled metrics): the first data group's here, else the
    /// system group's.
    pub fn first(&self) -> Arc<Node> {
        let nodes = self.nodes.read().unwrap_or_else(|p| p.into_inner());
        nodes
            .iter()
            .find(|n| n.group != SYSTEM_GROUP)
            .unwrap_or(&self.system)
            .clone()
    }

    /// The replica of the system group (every node holds one).
    pub fn system(&self) -> &Arc<Node> {
        &self.system
    }

    /// The replica of the group that holds the ACL users: the system
    /// group, which every node holds.
    pub fn users_group(&self) -> &Arc<Node> {
        self.system()
    }

    /// The node leading `group` as far as this node knows: its replica's
    /// view for a group it holds, else what its peers last reported
    /// (within [`REMOTE_LEADER_TTL`]).
    pub fn leader_of(&self, group: u32) -> Option<u64> {
        if let Some(node) = self.get(group) {
            if node.core_problem().is_some() {
                return None;
            }
            use openraft::type_config::async_runtime::WatchReceiver;
            return node.raft.metrics().borrow_watched().current_leader;
        }
        let remote = self.remote.read().unwrap_or_else(|p| p.into_inner());
        remote
            .get(&group)
            .filter(|r| r.seen.elapsed() < REMOTE_LEADER_TTL)
            .and_then(|r| r.leader)
    }

    /// The voters of `group` as this node knows them: its replica's
    /// membership, else what its peers last reported (`None` if neither).
    pub fn voters_of(&self, group: u32) -> Option<Vec<u64>> {
        if let Some(node) = self.get(group) {
            use openraft::type_config::async_runtime::WatchReceiver;
            let metrics = node.raft.metrics();
            let m = metrics.borrow_watched();
            return Some(m.membership_config.membership().voter_ids().collect());
        }
        let remote = self.remote.read().unwrap_or_else(|p| p.into_inner());
        remote
            .get(&group)
            .filter(|r| !r.voters.is_empty())
            .map(|r| r.voters.clone())
    }

    /// The groups held elsewhere as last reported: id, term, leader and
    /// how long ago, in group order (for `INFO raft`).
    pub fn remote_leaders(&self) -> Vec<(u32, u64, Option<u64>, Duration)> {
        let remote = self.remote.read().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<_> = remote
            .iter()
            .map(|(g, r)| (*g, r.term, r.leader, r.seen.elapsed()))
            .collect();
        out.sort_unstable_by_key(|r| r.0);
        out
    }

    /// Takes a peer's report of the groups it holds: a report of a later
    /// term replaces an earlier one; the same term refreshes it (and
    /// fills in a leader learnt since).
    fn learn_leaders(&self, reported: &[seshat_raft::pb::GroupLeader]) {
        let now = Instant::now();
        let mut remote = self.remote.write().unwrap_or_else(|p| p.into_inner());
        for r in reported {
            if r.group == SYSTEM_GROUP || self.get(r.group).is_some() {
                continue;
            }
            let fresh = RemoteLeader {
                term: r.term,
                leader: r.leader,
                voters: r.voters.clone(),
                seen: now,
            };
            let current = remote
                .get(&r.group)
                .cloned()
                .filter(|e| e.seen.elapsed() < REMOTE_LEADER_TTL);
            if let Some(next) = merge_report(current, fresh) {
                remote.insert(r.group, next);
            }
        }
    }

    /// The replica of `group` on this node, if it holds one.
    pub fn get(&self, group: u32) -> Option<Arc<Node>> {
        if group == SYSTEM_GROUP {
            return Some(self.system.clone());
        }
        let nodes = self.nodes.read().unwrap_or_else(|p| p.into_inner());
        nodes.iter().find(|n| n.group == group).cloned()
    }

    /// The data group replicas this node leads.
    pub fn led(&self) -> Vec<Arc<Node>> {
        let mut led = self.data();
        led.retain(|n| n.raft.is_leader());
        led
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
            .iter()
            .map(|n| n.counts())
            .fold(Counts::default(), |a, b| Counts {
                keys: a.keys + b.keys,
                expiring: a.expiring + b.expiring,
            })
    }

    /// The system group's table (slot map, its version, migrations in
    /// progress) as this node's replica last applied it; `None` before the
    /// bootstrap record has applied here.
    pub fn system_table(&self) -> Option<Arc<seshat_migration::SystemTable>> {
        self.system().system_table.borrow().clone()
    }

    /// The group the slot map gives `slot` to: the system group's map as
    /// applied here, or the layout's before the bootstrap record has.
    pub fn slot_owner(&self, slot: u16) -> u32 {
        let recorded = self
            .system()
            .system_table
            .borrow()
            .as_deref()
            .and_then(|t| t.map().owner(slot));
        recorded.unwrap_or_else(|| self.layout.group_of(slot).id)
    }

    /// Runs `f` on the slot map routing follows (see [`Self::slot_owner`]).
    pub fn with_slot_map<R>(&self, f: impl FnOnce(&seshat_migration::SlotMap) -> R) -> R {
        match self.system_table() {
            Some(t) => f(t.map()),
            None => f(&self.layout_map),
        }
    }

    /// The replica serving `slot` here for `access`, or why this node
    /// cannot serve it. The slot map names the group; a group this node
    /// holds no replica of is answered `MOVED` to its leader (as its
    /// peers report it); a group that took part in a migration decides by
    /// its slot table: `TRYAGAIN` while the slot is frozen (writes) or
    /// its copy is not committed, `ASK` to the target after the hand-off,
    /// `MOVED` once it no longer owns the slot. A client that sent
    /// `ASKING` is served by the migration's target here once the target
    /// has committed the copy. The leader checks again after its read
    /// barrier (reads) or at apply (writes), so a decision made on an
    /// older table is never wrong, only redirected once more.
    pub fn serve(
        &self,
        slot: u16,
        access: seshat_migration::Access,
        asking: bool,
    ) -> Result<Arc<Node>, ServeError> {
        use seshat_migration::Decision;
        if self.removed.load(std::sync::atomic::Ordering::Acquire) {
            return Err(self.redirect(slot, self.slot_owner(slot), false));
        }
        if let Some(why) = self.layout_conflict.get() {
            return Err(ServeError::Stopped(why.clone()));
        }
        if asking {
            let target = self
                .system_table()
                .and_then(|t| t.migration_of(slot).map(|m| m.migration.target));
            if let Some(node) = target.and_then(|g| self.get(g)) {
                match node.table().map(|t| t.decide(slot, access, true)) {
                    Some(Decision::Serve) => return Ok(node),
                    Some(Decision::TryAgain) => return Err(ServeError::TryAgain(slot)),
                    // Not importing here (yet or any more): route by the map.
                    _ => {}
                }
            }
        }
        let group = self.slot_owner(slot);
        let Some(node) = self.get(group) else {
            return Err(self.redirect(slot, group, false));
        };
        // Borrowed, not cloned: this runs for every keyed command.
        let decision = node
            .slot_table
            .borrow()
            .as_deref()
            .map(|t| t.decide(slot, access, asking));
        match decision {
            None | Some(Decision::Serve) => Ok(node),
            Some(Decision::TryAgain) => Err(ServeError::TryAgain(slot)),
            Some(Decision::Ask(to)) => Err(self.redirect(slot, to, true)),
            // This node's map lags the group's table (the flip has not
            // applied here yet): serve from the new owner if it is here.
            Some(Decision::Moved(to)) => match self.get(to) {
                Some(owner)
                    if owner
                        .slot_table
                        .borrow()
                        .as_deref()
                        .is_some_and(|t| t.decide(slot, access, asking) == Decision::Serve) =>
                {
                    Ok(owner)
                }
                _ => Err(self.redirect(slot, to, false)),
            },
        }
    }

    /// `MOVED` (or `ASK`) `slot` to the leader of `group` as this node
    /// knows it, or `CLUSTERDOWN` when it knows none.
    pub fn redirect(&self, slot: u16, group: u32, ask: bool) -> ServeError {
        let leader = self.leader_of(group);
        let member = leader.and_then(|l| self.member(l));
        match (leader, member) {
            (Some(leader), Some(m)) => {
                let addr = m.client_addr.to_string();
                if ask {
                    ServeError::Ask { slot, leader, addr }
                } else {
                    ServeError::Moved { slot, leader, addr }
                }
            }
            _ => ServeError::NoLeader(format!("no leader of group {group} known to this node")),
        }
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

    /// The data groups this node leads that own slots, each with its
    /// first slot, in slot order.
    pub fn led_by_slot(&self) -> Vec<(u16, Arc<Node>)> {
        let runs = self.with_slot_map(seshat_migration::SlotMap::runs);
        let mut first: HashMap<u32, u16> = HashMap::new();
        for (start, _, group) in runs {
            first.entry(group).or_insert(start);
        }
        let mut led: Vec<(u16, Arc<Node>)> = self
            .led()
            .into_iter()
            .filter_map(|n| first.get(&n.group).map(|s| (*s, n)))
            .collect();
        led.sort_by_key(|(slot, _)| *slot);
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
        let applied = self.all().iter().map(|n| n.applied_now_ms()).max();
        crate::node::wall_clock_ms().max(applied.unwrap_or(0))
    }

    /// The system group's records as this node's replica has applied
    /// them: the layout text and the system table (slot map, version,
    /// migrations); `None` until the bootstrap record has applied here.
    pub fn system_records(
        &self,
    ) -> Result<Option<(Bytes, seshat_migration::SystemTable)>, seshat_kv::KvError> {
        self.read_system(seshat_commands::system::records)
    }

    /// The data directory the system group recorded node `node` first
    /// started with, as this node's replica has applied it.
    pub fn node_instance(&self, node: u64) -> Result<Option<u64>, seshat_kv::KvError> {
        self.read_system(|db| seshat_commands::system::node_instance(db, node))
    }

    /// Runs `read` on the system group's records as this node's replica
    /// has applied them.
    pub fn read_system<'s, R>(
        &'s self,
        read: impl FnOnce(&mut seshat_kv::Keyspace<'_, seshat_raft::state_machine::ReadView<'s>>) -> R,
    ) -> R {
        let mut view = seshat_raft::state_machine::ReadView::new(&self.store, SYSTEM_GROUP);
        let mut db = seshat_kv::Keyspace::new(&mut view, SYSTEM_GROUP, 0, 0, Counts::default());
        read(&mut db)
    }

    /// Stops serving data commands for `why` (the node's groups disagree
    /// with the cluster's records).
    pub fn refuse(&self, why: String) {
        let _ = self.layout_conflict.set(why);
    }

    /// The cluster removed this node: it redirects every data command from
    /// now on, and reports `why` as unhealthy.
    pub fn mark_removed(&self, why: String) {
        self.removed
            .store(true, std::sync::atomic::Ordering::Release);
        let _ = self.layout_conflict.set(why);
    }

    /// Why this node's layout differs from the cluster's, if the system
    /// group's records say it does.
    pub fn layout_conflict(&self) -> Option<&str> {
        self.layout_conflict.get().map(String::as_str)
    }

    /// Compares this node's layout with the one the system group recorded
    /// and the slot map with the recorded one; a difference stops the node
    /// serving data commands (its groups would serve other slots than the
    /// cluster's).
    fn check_metadata(&self, cluster: &[u8], table: &seshat_migration::SystemTable) {
        let mine = self.layout.record();
        let problem = if cluster != mine.as_bytes() {
            Some(format!(
                "this node was started as {mine:?} but the cluster was bootstrapped as {:?}: \
                 start it with the cluster's --initial-members, --shards and --replicas",
                String::from_utf8_lossy(cluster)
            ))
        } else if table.map_version() == 1 && &self.layout_map != table.map() {
            // Before any migration the recorded map is the layout's split.
            Some(
                "the cluster's first slot map differs from this node's layout; \
                 start it with the cluster's --initial-members, --shards and --replicas"
                    .to_string(),
            )
        } else {
            None
        };
        if let Some(p) = problem {
            tracing::error!(problem = %p, "refusing data commands");
            let _ = self.layout_conflict.set(p);
        }
    }

    /// Why some group's Raft core stopped, if one has.
    pub fn core_problem(&self) -> Option<String> {
        self.all()
            .iter()
            .find_map(|n| n.core_problem().map(|p| format!("group {}: {p}", n.group)))
    }

    /// Why some group's tasks stopped, if they have.
    pub fn task_problem(&self) -> Option<String> {
        self.all()
            .iter()
            .find_map(|n| n.task_problem().map(|p| format!("group {}: {p}", n.group)))
    }

    /// Waits until any group's Raft core stops and returns why.
    pub async fn core_stopped(&self) -> String {
        // Replicas come and go: the system group's (which never leaves) is
        // waited on, the others are looked at every few hundred ms (a
        // dropped replica is shut down on purpose and no longer listed).
        let system = Box::pin(self.system.core_stopped());
        let data = Box::pin(async {
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                if let Some(problem) = self.core_problem() {
                    return problem;
                }
            }
        });
        match futures::future::select(system, data).await {
            futures::future::Either::Left((reason, _)) => {
                format!("group {SYSTEM_GROUP}: {reason}")
            }
            futures::future::Either::Right((problem, _)) => problem,
        }
    }

    /// Hands over the leadership of every group this node leads.
    pub async fn hand_over_leadership(&self) {
        let nodes = self.all();
        futures::future::join_all(nodes.iter().map(|n| n.hand_over_leadership())).await;
    }

    /// Stops every group's Raft.
    pub async fn shutdown(&self) {
        let nodes = self.all();
        futures::future::join_all(nodes.iter().map(|n| n.shutdown())).await;
    }
}

/// Opens `group`'s storage on this node and starts its replica.
async fn start_replica(
    settings: &Arc<Settings>,
    node_storage: &seshat_raft::NodeStorage,
    peer_tls: Option<PeerTls>,
    group: u32,
    bootstrap: Bootstrap<'_>,
) -> anyhow::Result<Arc<Node>> {
    let (log, sm) = node_storage
        .open_group(group)
        .with_context(|| format!("cannot open group {group}"))?;
    let started = Node::start(
        settings.clone(),
        group,
        node_storage.store().clone(),
        log,
        sm,
        peer_tls,
        bootstrap,
    )
    .await;
    if started.is_err() {
        node_storage.close_group(group);
    }
    started
}

/// What a node keeps of a group held elsewhere after a peer's `report`,
/// given what it knew (`current`, already dropped when older than
/// [`REMOTE_LEADER_TTL`]); `None`: keep `current` as it is.
fn merge_report(current: Option<RemoteLeader>, report: RemoteLeader) -> Option<RemoteLeader> {
    match current {
        // An earlier term, or another leader in the same term (which
        // Raft rules out): keep what is known.
        Some(e)
            if report.term < e.term
                || (report.term == e.term && e.leader.is_some() && e.leader != report.leader) =>
        {
            None
        }
        // The same term: refreshed, keeping a leader learnt before.
        Some(e) if report.term == e.term => Some(RemoteLeader {
            leader: report.leader.or(e.leader),
            // The leader's report knows the latest membership.
            voters: if report.leader.is_some() || e.voters.is_empty() {
                report.voters
            } else {
                e.voters
            },
            ..report
        }),
        // Nothing known, a stale report or a later term.
        _ => Some(report),
    }
}

/// How often a node looks for groups whose leadership it should hand to
/// their preferred leader.
const BALANCE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);
/// Most entries a preferred leader may lag behind and still be handed the
/// leadership (it must win the election the transfer starts).
const BALANCE_MAX_LAG: u64 = 16;

/// How often a node looks for the system group's records until it has
/// seen them.
const METADATA_POLL_INTERVAL: Duration = Duration::from_millis(200);

/// Records the cluster's metadata in the system group and checks this
/// node against it: until the system group's records have applied on this
/// node, the node proposes the bootstrap record whenever it leads the
/// system group (the layout is the same on every correctly started node,
/// and only the first record applies); once they have, it compares them
/// with its own layout ([`Groups::check_metadata`]) and stops.
pub async fn run_metadata_check(groups: std::sync::Weak<Groups>) {
    let mut tick = tokio::time::interval(METADATA_POLL_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(groups) = groups.upgrade() else {
            return;
        };
        match groups.system_records() {
            Ok(Some((cluster, table))) => {
                groups.check_metadata(&cluster, &table);
                return;
            }
            Ok(None) => {}
            Err(e) => {
                tracing::error!(error = %e, "cannot read the system group's records");
                return;
            }
        }
        let system = groups.system().clone();
        if !system.raft.is_leader() {
            continue;
        }
        let slots = match groups.layout.slot_map() {
            Ok(map) => seshat_migration::SystemTable::new(map).encode(),
            Err(e) => {
                tracing::error!(error = %e, "cannot record the cluster's metadata");
                return;
            }
        };
        let write = seshat_kv::Write::System(seshat_kv::SystemWrite::Bootstrap {
            cluster: Bytes::from(groups.layout.record()),
            slots: Bytes::from(slots),
        });
        drop(groups);
        match system.write(write, 0).await {
            Ok(seshat_protocol_resp::Frame::Error(e)) => {
                tracing::error!(error = %String::from_utf8_lossy(&e), "cluster metadata refused");
                return;
            }
            Ok(_) => tracing::info!("cluster metadata recorded in the system group"),
            // Lost leadership or a timeout: look again at the next tick.
            Err(e) => tracing::debug!(error = %e, "cluster metadata not recorded yet"),
        }
    }
}

/// How often a node asks its peers which nodes lead the data groups it
/// holds no replica of.
const LEADER_POLL_INTERVAL: Duration = Duration::from_millis(500);
/// How long a peer has to answer.
const LEADER_POLL_TIMEOUT: Duration = Duration::from_secs(1);
/// A remote group's leader not confirmed by any peer for this long is
/// no longer used (`CLUSTERDOWN` for its slots until one reports again).
const REMOTE_LEADER_TTL: Duration = Duration::from_secs(5);

/// The data group `group`'s preferred leader (see [`crate::layout`]).
pub fn preferred_leader(layout: &Layout, group: u32) -> Option<u64> {
    layout.group(group).map(|g| g.preferred)
}

/// The node that initialises the system group: the lowest id, which is
/// also the first data group's preferred leader (afterwards the system
/// group follows that group's leader, see [`balance_target`]).
fn system_preferred_leader(layout: &Layout) -> u64 {
    layout.members().first().copied().unwrap_or(1)
}

/// Learns the leaders of the data groups this node holds no replica of:
/// every [`LEADER_POLL_INTERVAL`] it asks each peer it knows (the `Leaders`
/// RPC of the Raft port) which node leads the groups it holds, and keeps
/// the answer of the latest term. Peers come from the node directory, so
/// nodes that joined since the start are asked too, and replicas that
/// moved are found where they are now.
pub async fn run_leader_poller(groups: std::sync::Weak<Groups>, tls: Option<PeerTls>) {
    use seshat_raft::pb::raft_service_client::RaftServiceClient;
    type Client = RaftServiceClient<tonic::transport::Channel>;
    let mut clients: HashMap<String, Client> = HashMap::new();
    let mut tick = tokio::time::interval(LEADER_POLL_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let peers: Vec<String> = {
            let Some(groups) = groups.upgrade() else {
                return;
            };
            let held_everywhere = groups
                .layout
                .groups()
                .iter()
                .all(|g| groups.get(g.id).is_some());
            if held_everywhere {
                continue;
            }
            let me = groups.settings.node_id;
            groups
                .known_nodes()
                .peers(me)
                .map(|m| m.raft_addr.to_string())
                .collect()
        };
        clients.retain(|addr, _| peers.contains(addr));
        for addr in &peers {
            if clients.contains_key(addr) {
                continue;
            }
            match seshat_raft::peer_tls::peer_endpoint(addr, tls.as_ref()) {
                Ok(endpoint) => {
                    clients.insert(
                        addr.to_string(),
                        RaftServiceClient::new(endpoint.connect_lazy()),
                    );
                }
                Err(e) => tracing::warn!(%addr, error = %e, "cannot ask this peer for leaders"),
            }
        }
        let asks = clients.values().map(|c| {
            let mut c = c.clone();
            async move {
                tokio::time::timeout(
                    LEADER_POLL_TIMEOUT,
                    c.leaders(seshat_raft::pb::LeadersRequest {}),
                )
                .await
            }
        });
        let answers = futures::future::join_all(asks).await;
        let Some(groups) = groups.upgrade() else {
            return;
        };
        for answer in answers {
            if let Ok(Ok(reply)) = answer {
                groups.learn_leaders(&reply.into_inner().groups);
            }
        }
    }
}

/// The node that should lead `group` now: on a sharded cluster a data
/// group's preferred leader; the system group follows the leader of the
/// first data group (which serves slot 0), so `ACL` writes, which
/// redirect with slot 0, go where slot 0's keys go. `None`: leave the
/// leadership where it is (the data group of an unsharded cluster stays
/// with whichever node won its last election, as in Phase 1).
fn balance_target(groups: &Groups, group: u32) -> Option<u64> {
    if group == SYSTEM_GROUP {
        let first = seshat_kv::keys::DATA_GROUP;
        return groups
            .leader_of(first)
            .or_else(|| preferred_leader(&groups.layout, first));
    }
    if !groups.layout.is_sharded() {
        return None;
    }
    // A group whose replicas have moved has no preferred leader any more:
    // the rebalancer spreads its leadership (see `crate::membership`). Nor
    // is a node being decommissioned (or removed) a leader to hand to.
    let voters = groups.voters_of(group).unwrap_or_default();
    preferred_leader(&groups.layout, group)
        .filter(|_| groups.layout.placed_as_bootstrapped(group, &voters))
        .filter(|p| {
            groups.known_nodes().state(*p) == Some(seshat_commands::members::NodeState::Active)
        })
}

/// Leader balancing: a node that leads a group whose target leader
/// ([`balance_target`]) is another node — up, a voter, and caught up with
/// the log — hands the leadership over. On a sharded cluster leaders thus
/// spread after the first elections and move back when a node returns
/// from a restart. Every node runs it for the groups it leads; nothing is
/// coordinated.
pub async fn run_leader_balancer(groups: std::sync::Weak<Groups>) {
    let mut tick = tokio::time::interval(BALANCE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(groups) = groups.upgrade() else {
            return;
        };
        for node in groups.all().iter().filter(|n| n.raft.is_leader()) {
            let Some(target) = balance_target(&groups, node.group) else {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_report_replaces_an_earlier_term_and_refreshes_the_same_one() {
        let at = Instant::now();
        let r = |term, leader| RemoteLeader {
            term,
            leader,
            voters: Vec::new(),
            seen: at,
        };
        // Nothing known yet: taken as it is, even without a leader.
        assert_eq!(merge_report(None, r(3, None)), Some(r(3, None)));
        // A later term replaces, an earlier one is ignored.
        assert_eq!(
            merge_report(Some(r(3, Some(1))), r(4, None)),
            Some(r(4, None))
        );
        assert_eq!(merge_report(Some(r(4, Some(2))), r(3, Some(1))), None);
        // The same term fills in or confirms the leader; a replica that
        // has not heard of it yet does not erase it.
        assert_eq!(
            merge_report(Some(r(4, None)), r(4, Some(2))),
            Some(r(4, Some(2)))
        );
        assert_eq!(
            merge_report(Some(r(4, Some(2))), r(4, Some(2))),
            Some(r(4, Some(2)))
        );
        assert_eq!(merge_report(Some(r(4, Some(2))), r(4, None)), None);
        assert_eq!(merge_report(Some(r(4, Some(2))), r(4, Some(3))), None);
    }
}
