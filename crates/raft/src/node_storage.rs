//! A node's storage for every Raft group it hosts: one RocksDB opened
//! once (and its on-disk format checked), one log sync thread and one
//! entry-cache budget, shared by the groups' log stores and state
//! machines.
//!
//! ```no_run
//! use seshat_raft::{open_node_storage, StorageConfig, SYSTEM_GROUP};
//! let node = open_node_storage(&StorageConfig::new("/tmp/seshat-demo".into()))?;
//! let (system_log, system_sm) = node.open_group(SYSTEM_GROUP)?;
//! let (data_log, data_sm) = node.open_group(1)?;
//! # Ok::<(), std::io::Error>(())
//! ```

use std::collections::BTreeSet;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use seshat_storage::Store;

use crate::layout::{GroupId, GroupLayout, StateName};
use crate::log_store::{LogStore, NodeLog};
use crate::state_machine::{StateMachine, StorageConfig};

/// The storage of one node, shared by its groups. Cheap to clone.
#[derive(Clone)]
pub struct NodeStorage {
    store: Store,
    config: StorageConfig,
    log: NodeLog,
    /// Groups with a log store and state machine out.
    open: Arc<Mutex<BTreeSet<GroupId>>>,
}

/// Opens the node's database, checks its on-disk format
/// ([`crate::DATA_FORMAT_VERSION`]; another format is refused with a
/// message that says so) and starts the node's log sync thread.
pub fn open_node_storage(config: &StorageConfig) -> io::Result<NodeStorage> {
    let store = Store::open(&config.db_dir(), &config.store_options).map_err(io::Error::other)?;
    crate::check_format(&store, &config.data_dir)?;
    let log = NodeLog::start(store.clone(), config.log_cache)?;
    Ok(NodeStorage {
        store,
        config: config.clone(),
        log,
        open: Arc::default(),
    })
}

impl NodeStorage {
    /// The node's database.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Where the node keeps its files.
    pub fn config(&self) -> &StorageConfig {
        &self.config
    }

    /// The snapshot directory of `group`.
    pub fn snapshot_dir(&self, group: GroupId) -> io::Result<PathBuf> {
        Ok(self.config.group_snapshot_dir(GroupLayout::new(group)?))
    }

    /// The log store and state machine of `group` (its records under its
    /// id in the families of [`crate::layout`], its snapshots in
    /// [`Self::snapshot_dir`]). A snapshot install a crash interrupted is
    /// finished first, and unfinished incoming transfers are removed.
    ///
    /// Errors: a group id above [`crate::layout::MAX_GROUP_ID`], a group
    /// already open (two log stores of one group would corrupt its log;
    /// [`Self::close_group`] first), or what storage reports.
    pub fn open_group(&self, group: GroupId) -> io::Result<(LogStore, StateMachine)> {
        let layout = GroupLayout::new(group)?;
        let mut open = self
            .open
            .lock()
            .map_err(|_| io::Error::other("group registry lock poisoned"))?;
        if open.contains(&group) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("group {group} is already open on this node"),
            ));
        }
        let sm = StateMachine::open(
            self.store.clone(),
            layout,
            self.config.group_snapshot_dir(layout),
        )?;
        let log = self.log.group(layout);
        open.insert(group);
        Ok((log, sm))
    }

    /// Marks `group` closed: its cached log entries are dropped and it may
    /// be opened again. The caller must have shut down the group's Raft
    /// (nothing may use its log store or state machine any more).
    pub fn close_group(&self, group: GroupId) {
        self.log.forget(group);
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.remove(&group);
    }

    /// Deletes this node's replica of `group`: its log, its data, its
    /// snapshots and every Raft state record **but the vote**, in one
    /// synced batch. The vote stays as the replica's tombstone: if the
    /// group ever takes a replica on this node again, the new one starts
    /// from the term and vote the old one promised, so it can never vote
    /// twice in one term (the reason openraft warns against reusing a
    /// node id). The group must be closed ([`Self::close_group`]) and its
    /// Raft shut down; a group still open is refused.
    pub fn destroy_group(&self, group: GroupId) -> io::Result<()> {
        let layout = GroupLayout::new(group)?;
        {
            let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
            if open.contains(&group) {
                return Err(io::Error::other(format!(
                    "group {group} is still open on this node"
                )));
            }
        }
        let mut batch = seshat_storage::Batch::default();
        batch.delete_range(layout.log_cf(), &layout.log_key(0), &layout.log_end());
        let (from, to) = layout.data_range();
        batch.delete_range(layout.data_cf(), &from, &to);
        for name in [
            StateName::LastPurged,
            StateName::Committed,
            StateName::Applied,
            StateName::Installing,
        ] {
            batch.delete(layout.state_cf(), &layout.state_key(name));
        }
        self.store.write(batch, true).map_err(io::Error::other)?;
        let dir = self.config.group_snapshot_dir(layout);
        match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// The groups open now.
    pub fn open_groups(&self) -> Vec<GroupId> {
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.iter().copied().collect()
    }
}
