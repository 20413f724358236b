//! What survives a crash now that the state machine writes without the
//! RocksDB WAL (the Raft log is its WAL): the applied state is durable
//! only once flushed, so a log purge must flush it first. These tests
//! close the database the way a crash would (unlogged writes dropped, not
//! flushed at close) and check that every entry is either durably applied
//! or still in the log.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use bytes::Bytes;
use futures::stream;
use openraft::storage::{IOFlushed, RaftLogReader, RaftLogStorage, RaftStateMachine};
use openraft::type_config::TypeConfigExt;
use seshat_kv::{Write, WriteBatch};
use seshat_raft::layout::GroupLayout;
use seshat_raft::types::{CommittedLeaderId, Entry, LogId};
use seshat_raft::{open_node_storage, LogStore, StateMachine, StorageConfig, TypeConfig};
use tempfile::TempDir;

const GROUP: u32 = 1;

fn log_id(index: u64) -> LogId {
    LogId::new(
        CommittedLeaderId {
            term: 1,
            node_id: 1,
        },
        index,
    )
}

/// Entry `index`: `SET k<index> v<index>`.
fn entry(index: u64) -> Entry {
    let argv = ["SET", &format!("k{index}"), &format!("v{index}")]
        .iter()
        .map(|w| Bytes::copy_from_slice(w.as_bytes()))
        .collect();
    Entry {
        log_id: log_id(index),
        payload: openraft::EntryPayload::Normal(WriteBatch {
            now_ms: 1_000 + index,
            seed: index,
            writes: vec![Write::Command(argv)],
        }),
    }
}

/// Appends entries `from..=to` (durably) and applies them.
async fn append_and_apply(log: &mut LogStore, sm: &mut StateMachine, from: u64, to: u64) {
    let (tx, rx) = TypeConfig::oneshot();
    log.append((from..=to).map(entry), IOFlushed::signal(tx))
        .await
        .unwrap();
    rx.await.unwrap().unwrap();
    let entries = (from..=to).map(|i| Ok((entry(i), None)));
    sm.apply(stream::iter(entries)).await.unwrap();
}

fn has_key(node: &seshat_raft::NodeStorage, index: u64) -> bool {
    let key = seshat_kv::keys::meta_key(GROUP, format!("k{index}").as_bytes());
    let cf = GroupLayout::new(GROUP).unwrap().data_cf();
    node.store().get(cf, &key).unwrap().is_some()
}

/// A purge flushes the applied state before it removes the entries that
/// produced it: after a crash right after the purge (and more applies
/// that were never flushed), the applied index covers everything purged,
/// the log holds every entry after it, and the data matches the applied
/// index exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_a_purge_loses_no_entry_that_the_log_no_longer_holds() {
    let dir = TempDir::new().unwrap();
    let config = StorageConfig::new(dir.path().to_path_buf());
    {
        let mut crashing = config.clone();
        crashing.store_options.lose_unlogged_writes_on_close = true;
        let node = open_node_storage(&crashing).unwrap();
        let (mut log, mut sm) = node.open_group(GROUP).unwrap();
        append_and_apply(&mut log, &mut sm, 1, 20).await;
        log.purge(log_id(15)).await.unwrap();
        // Applied after the purge's flush, never flushed: a crash loses
        // them, and the log must still hold them.
        append_and_apply(&mut log, &mut sm, 21, 30).await;
        drop((log, sm));
        node.close_group(GROUP);
    }
    let node = open_node_storage(&config).unwrap();
    let (mut log, mut sm) = node.open_group(GROUP).unwrap();
    let (applied, _) = sm.applied_state().await.unwrap();
    let applied = applied
        .expect("the purge made the applied state durable")
        .index;
    assert!(applied >= 15, "applied {applied}: purged entries were lost");
    assert!(
        applied < 30,
        "applied {applied}: the crash was not simulated (unflushed applies survived)"
    );
    let state = log.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id.map(|id| id.index), Some(15));
    assert_eq!(state.last_log_id.map(|id| id.index), Some(30));
    // Everything after the applied index can be re-applied from the log.
    let rest = log.try_get_log_entries(applied + 1..31).await.unwrap();
    assert_eq!(rest.len() as u64, 30 - applied);
    // The data is exactly that of the applied prefix.
    for i in 1..=30 {
        assert_eq!(
            has_key(&node, i),
            i <= applied,
            "key k{i}, applied {applied}"
        );
    }
}
