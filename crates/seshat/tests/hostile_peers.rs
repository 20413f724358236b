//! Regression tests for issues 18 and 17: forged node-to-node messages, sent with
//! the generated gRPC client to real `seshat` processes, are refused before
//! they reach openraft, and the cluster goes on electing leaders and
//! serving writes.
//!
//! Before the fix, one snapshot whose last log id had a higher term than
//! the vote it came with tripped an `assert!` in openraft on each node it
//! was sent to (two of them took a 3-node cluster down), and one
//! AppendEntries with term 2^64−1 made every node adopt that term, after
//! which no election could succeed.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod common;

use std::time::Duration;

use common::{get, info_u64, runtime, set, Cluster};
use prost::Message;
use seshat_raft::pb;
use seshat_raft::pb::raft_service_client::RaftServiceClient;
use seshat_raft::route::Route;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

/// A client of node `node_id`'s replica of the data group, as a peer
/// dials it (every request names the group and the replica).
async fn raft_client(
    port: u16,
    node_id: u64,
) -> RaftServiceClient<InterceptedService<Channel, Route>> {
    let channel = Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let route = Route::new(seshat_kv::keys::DATA_GROUP, node_id);
    RaftServiceClient::with_interceptor(channel, route)
}

/// The cluster still serves writes, and elects a new leader when the
/// current one stops (an election runs `term + 1`, which a term near
/// `u64::MAX` broke), which then serves writes too.
fn assert_cluster_still_elects_and_serves(cluster: &mut Cluster) {
    let leader = cluster.wait_for_leader(Duration::from_secs(30));
    set(cluster, leader, "after-forgery", "1");
    let status = cluster.nodes[leader].terminate();
    assert!(status.success(), "leader exited with {status}");
    let next = cluster.wait_for_leader(Duration::from_secs(30));
    assert_ne!(next, leader);
    set(cluster, next, "after-election", "2");
    assert_eq!(get(cluster, next, "after-forgery").as_deref(), Some("1"));
}

fn assert_refused(what: &str, node: usize, result: Result<impl std::fmt::Debug, tonic::Status>) {
    match result {
        Err(s) if s.code() == tonic::Code::InvalidArgument => {
            eprintln!("node {node} refused {what}: {}", s.message());
        }
        other => panic!("node {node} did not refuse {what}: {other:?}"),
    }
}

fn log_id(term: u64, leader_node_id: u64, index: u64) -> pb::LogId {
    pb::LogId {
        term,
        leader_node_id,
        index,
    }
}

/// The cluster's membership as a peer would announce it.
fn membership(cluster: &Cluster) -> pb::Membership {
    pb::Membership {
        configs: vec![pb::NodeIdSet {
            node_ids: cluster.nodes.iter().map(|n| n.node_id).collect(),
        }],
        nodes: cluster
            .nodes
            .iter()
            .map(|n| {
                (
                    n.node_id,
                    pb::Node {
                        raft_addr: format!("127.0.0.1:{}", n.raft_port),
                        client_addr: format!("127.0.0.1:{}", n.port),
                    },
                )
            })
            .collect(),
    }
}

/// The chunks of a well-formed, empty snapshot announced with `vote` and
/// `last`: the file's header agrees with the announcement, so only the
/// relation between `last` and `vote` is wrong.
fn snapshot_stream(
    vote: pb::Vote,
    last: pb::LogId,
    membership: pb::Membership,
) -> Vec<pb::SnapshotChunk> {
    let membership_log_id = log_id(0, 1, 0);
    // The current record version: a snapshot in an old format would be
    // refused for that alone and prove nothing.
    let version = seshat_raft::codec::RECORD_VERSION;
    let header = pb::SnapshotHeader {
        version,
        snapshot_id: format!("{:020}-{:020}", last.index, last.term),
        applied: Some(pb::AppliedRecord {
            version,
            last_applied: Some(last),
            membership_log_id: Some(membership_log_id),
            membership: Some(membership.clone()),
            key_count: 0,
            last_now_ms: 0,
            expiring_count: 0,
        }),
        // The data group's: a snapshot of another group would be refused
        // for that alone.
        group: seshat_kv::keys::DATA_GROUP,
    };
    let file = header.encode_length_delimited_to_vec();
    let start = pb::SnapshotStart {
        vote: Some(vote),
        last_log_id: Some(last),
        membership_log_id: Some(membership_log_id),
        membership: Some(membership),
        size_bytes: file.len() as u64,
    };
    vec![
        pb::SnapshotChunk {
            payload: Some(pb::snapshot_chunk::Payload::Start(start)),
        },
        pb::SnapshotChunk {
            payload: Some(pb::snapshot_chunk::Payload::Data(file.into())),
        },
    ]
}

/// Issue 18: a snapshot whose last log id has a higher term than the
/// leader's vote it is sent with. openraft asserts a leader never holds
/// such a log id; each node that received one panicked.
#[test]
fn issue_18_forged_snapshot_beyond_its_vote_is_refused() {
    let mut cluster = Cluster::start(3);
    let leader = cluster.wait_for_leader(Duration::from_secs(30));
    set(&cluster, leader, "before-forgery", "0");
    let term = info_u64(&cluster, leader, "raft_term");
    let leader_id = cluster.nodes[leader].node_id;
    // The current leader's own vote, so every node accepts it as is.
    let vote = pb::Vote {
        term,
        node_id: leader_id,
        committed: true,
    };
    let beyond = log_id(term + 1, leader_id, 1_000_000);
    let rt = runtime();
    for (i, node) in cluster.nodes.iter().enumerate() {
        let chunks = snapshot_stream(vote, beyond, membership(&cluster));
        let result = rt.block_on(async {
            let mut c = raft_client(node.raft_port, node.node_id).await;
            c.install_snapshot(futures::stream::iter(chunks)).await
        });
        assert_refused("a snapshot beyond its vote", i, result);
    }
    assert_cluster_still_elects_and_serves(&mut cluster);
    let next = cluster.wait_for_leader(Duration::from_secs(5));
    assert_eq!(get(&cluster, next, "before-forgery").as_deref(), Some("0"));
}

/// Issue 18: requests carrying term 2^64−1. An AppendEntries with it was
/// adopted (and persisted) by every node; the next election's `term + 1`
/// wrapped, and no leader was ever elected again.
#[test]
fn issue_18_term_u64_max_is_refused_and_never_adopted() {
    let mut cluster = Cluster::start(3);
    let leader = cluster.wait_for_leader(Duration::from_secs(30));
    let term_before = info_u64(&cluster, leader, "raft_term");
    let absurd_leader = pb::Vote {
        term: u64::MAX,
        node_id: 9,
        committed: true,
    };
    let append = pb::AppendEntriesRequest {
        vote: Some(absurd_leader),
        prev_log_id: None,
        entries: vec![],
        leader_commit: None,
    };
    let vote = pb::VoteRequest {
        vote: Some(pb::Vote {
            committed: false,
            ..absurd_leader
        }),
        last_log_id: Some(log_id(u64::MAX - 1, 9, u64::MAX)),
        leadership_transfer: true,
    };
    let transfer = pb::TransferLeaderRequest {
        from_leader: Some(absurd_leader),
        to_node_id: 9,
        last_log_id: None,
    };
    let rt = runtime();
    for (i, node) in cluster.nodes.iter().enumerate() {
        rt.block_on(async {
            let mut c = raft_client(node.raft_port, node.node_id).await;
            assert_refused("append", i, c.append_entries(append.clone()).await);
            // The pipelined form: the stream ends with the refusal.
            let replies = c
                .stream_append(futures::stream::iter(vec![append.clone()]))
                .await;
            let first = match replies {
                Ok(r) => {
                    let mut r = r.into_inner();
                    r.message().await.map(|m| m.expect("a reply"))
                }
                Err(s) => Err(s),
            };
            assert_refused("stream append", i, first);
            assert_refused("vote", i, c.vote(vote).await);
            assert_refused("pre-vote", i, c.pre_vote(vote).await);
            assert_refused("transfer", i, c.transfer_leader(transfer).await);
        });
    }
    for i in 0..cluster.nodes.len() {
        let term = info_u64(&cluster, i, "raft_term");
        // A few real elections may happen meanwhile; nothing more.
        assert!(
            term <= term_before + 10,
            "node {i} adopted term {term} (was {term_before})"
        );
    }
    assert_cluster_still_elects_and_serves(&mut cluster);
}

/// Issue 17: a member that is not the leader announces itself leader of a
/// later term and sends a snapshot. openraft would adopt that vote and
/// replace the receiver's state with the snapshot (a follower lost its
/// data, the leader stepped down); the snapshot is refused because it
/// does not come from the leader the receiver follows.
#[test]
fn a_forged_snapshot_from_a_non_leader_is_refused() {
    let cluster = Cluster::start(3);
    let leader = cluster.wait_for_leader(Duration::from_secs(30));
    set(&cluster, leader, "before-forgery", "0");
    let term = info_u64(&cluster, leader, "raft_term");
    let leader_id = cluster.nodes[leader].node_id;
    let pretender = (leader + 1) % 3;
    // A leader's vote of the next term, for a node no election chose.
    let vote = pb::Vote {
        term: term + 1,
        node_id: cluster.nodes[pretender].node_id,
        committed: true,
    };
    let last = log_id(term, leader_id, 1_000_000);
    let rt = runtime();
    for (i, node) in cluster.nodes.iter().enumerate() {
        if i == pretender {
            continue;
        }
        let chunks = snapshot_stream(vote, last, membership(&cluster));
        let result = rt.block_on(async {
            let mut c = raft_client(node.raft_port, node.node_id).await;
            c.install_snapshot(futures::stream::iter(chunks)).await
        });
        assert_refused("a snapshot from a non-leader", i, result);
    }
    for i in 0..cluster.nodes.len() {
        assert_eq!(info_u64(&cluster, i, "raft_term"), term, "node {i}'s term");
        assert_eq!(
            info_u64(&cluster, i, "raft_leader_id"),
            leader_id,
            "node {i}'s leader"
        );
    }
    assert_eq!(
        get(&cluster, leader, "before-forgery").as_deref(),
        Some("0")
    );
}
