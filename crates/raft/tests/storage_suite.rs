//! openraft's own storage conformance suite, run against Seshat's RocksDB
//! log store and state machine — for a group that shares its database
//! with a neighbour group.
//!
//! Every store the suite builds is one group of a node whose other group
//! already holds log entries, a vote and data: the suite's checks of an
//! empty store fail if any of the neighbour's records show through, and
//! when each test ends the neighbour's records must be exactly as they
//! were (nothing the tested group wrote, truncated or purged reached
//! them).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use openraft::storage::{IOFlushed, RaftLogStorage};
use openraft::testing::log::{StoreBuilder, Suite};
use openraft::type_config::TypeConfigExt;
use openraft::StorageError;
use seshat_raft::layout::{GroupLayout, StateName};
use seshat_raft::types::{CommittedLeaderId, Entry, LogId, Vote};
use seshat_raft::{
    open_node_storage, GroupId, LogStore, NodeStorage, StateMachine, StorageConfig, TypeConfig,
};
use seshat_storage::Store;
use tempfile::TempDir;

/// Builds the store of `group` on a node where `neighbour` is busy.
struct SharedDbBuilder {
    group: GroupId,
    neighbour: GroupId,
}

/// Every record of a group, per family: log, Raft state, data.
type Records = [Vec<(Vec<u8>, Vec<u8>)>; 3];

fn records_of(store: &Store, group: GroupId) -> Records {
    let g = GroupLayout::new(group).unwrap();
    let all = |cf, (from, to): (Vec<u8>, Vec<u8>)| store.scan(cf, &from, &to, usize::MAX).unwrap();
    // The state keys are `group | name`: the group's range in the
    // state family is the same as in the data family.
    [
        all(g.log_cf(), (g.log_key(0).to_vec(), g.log_end().to_vec())),
        all(g.state_cf(), g.data_range()),
        all(g.data_cf(), g.data_range()),
    ]
}

/// Keeps the node's directory, and on drop (after each test) checks that
/// the neighbour group's records are untouched.
struct Guard {
    node: NodeStorage,
    neighbour: GroupId,
    before: Records,
    _dir: TempDir,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let after = records_of(self.node.store(), self.neighbour);
        if !std::thread::panicking() {
            assert_eq!(
                after, self.before,
                "the tested group changed group {}'s records",
                self.neighbour
            );
        }
    }
}

fn entry(index: u64) -> Entry {
    Entry {
        log_id: LogId::new(
            CommittedLeaderId {
                term: 7,
                node_id: 9,
            },
            index,
        ),
        payload: openraft::EntryPayload::Blank,
    }
}

/// Gives `log`'s group a vote, a committed id and entries 0..50.
async fn make_busy(mut log: LogStore) {
    let mut vote = Vote::new(7, 9);
    vote.committed = true;
    log.save_vote(&vote).await.unwrap();
    let (tx, rx) = TypeConfig::oneshot();
    log.append((0..50).map(entry), IOFlushed::signal(tx))
        .await
        .unwrap();
    rx.await.unwrap().unwrap();
    log.save_committed(Some(entry(49).log_id)).await.unwrap();
}

fn storage_error(e: std::io::Error) -> StorageError<TypeConfig> {
    StorageError::read(TypeConfig::err_from_error(&e))
}

impl StoreBuilder<TypeConfig, LogStore, StateMachine, Guard> for SharedDbBuilder {
    async fn build(&self) -> Result<(Guard, LogStore, StateMachine), StorageError<TypeConfig>> {
        let dir = TempDir::new().map_err(storage_error)?;
        let node = open_node_storage(&StorageConfig::new(dir.path().to_path_buf()))
            .map_err(storage_error)?;
        let (neighbour_log, _neighbour_sm) =
            node.open_group(self.neighbour).map_err(storage_error)?;
        make_busy(neighbour_log).await;
        // The neighbour's data: a key in its range of the data family.
        let n = GroupLayout::new(self.neighbour).unwrap();
        let mut batch = seshat_storage::Batch::default();
        batch.put(
            n.data_cf(),
            &seshat_kv::keys::meta_key(self.neighbour, b"k"),
            b"v",
        );
        node.store().write(batch, true).unwrap();
        let before = records_of(node.store(), self.neighbour);
        assert!(
            before.iter().all(|r| !r.is_empty()),
            "the neighbour is busy"
        );
        assert!(before[1]
            .iter()
            .any(|(k, _)| *k == n.state_key(StateName::Vote)));
        let (log, sm) = node.open_group(self.group).map_err(storage_error)?;
        let guard = Guard {
            node,
            neighbour: self.neighbour,
            before,
            _dir: dir,
        };
        Ok((guard, log, sm))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openraft_storage_suite_passes_for_group_1_beside_group_2() {
    Suite::test_all(SharedDbBuilder {
        group: 1,
        neighbour: 2,
    })
    .await
    .expect("openraft storage suite");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openraft_storage_suite_passes_for_group_2_beside_group_1() {
    Suite::test_all(SharedDbBuilder {
        group: 2,
        neighbour: 1,
    })
    .await
    .expect("openraft storage suite");
}

/// The system group lives in other families; the suite holds there too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openraft_storage_suite_passes_for_the_system_group() {
    Suite::test_all(SharedDbBuilder {
        group: seshat_raft::SYSTEM_GROUP,
        neighbour: 1,
    })
    .await
    .expect("openraft storage suite");
}

/// A group cannot be opened twice on one node (two log stores of one
/// group would corrupt its log) until it is closed.
#[test]
fn a_group_is_opened_once() {
    let dir = TempDir::new().unwrap();
    let node = open_node_storage(&StorageConfig::new(dir.path().to_path_buf())).unwrap();
    let first = node.open_group(3).unwrap();
    let again = node.open_group(3).err().unwrap();
    assert_eq!(again.kind(), std::io::ErrorKind::AlreadyExists);
    assert_eq!(node.open_groups(), vec![3]);
    drop(first);
    node.close_group(3);
    assert!(node.open_group(3).is_ok());
    assert!(node
        .open_group(seshat_raft::layout::MAX_GROUP_ID + 1)
        .is_err());
}
