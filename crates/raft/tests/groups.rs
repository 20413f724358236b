//! Several Raft groups per node over real RocksDB and real tonic servers:
//! three in-process nodes, each hosting groups 1 and 2 in one database
//! behind one `RaftGrpc` server.
//!
//! Group 1's replica on node `n` is replica `n`; group 2's is `20 + n`,
//! so a request that reaches the right node but names the wrong replica is
//! told apart from one that reaches the right replica.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use openraft::type_config::async_runtime::WatchReceiver;
use openraft::SnapshotPolicy;
use seshat_kv::{keys, Write, WriteBatch};
use seshat_raft::grpc_server::RaftGrpc;
use seshat_raft::layout::GroupLayout;
use seshat_raft::network::Network;
use seshat_raft::pb;
use seshat_raft::pb::raft_service_client::RaftServiceClient;
use seshat_raft::route::Route;
use seshat_raft::state_machine::{state_digest, SmStats};
use seshat_raft::types::LogId;
use seshat_raft::{open_node_storage, GroupId, NodeStorage, Raft, SeshatNode, StorageConfig};
use tempfile::TempDir;
use tokio::net::TcpListener;

const GROUPS: [GroupId; 2] = [1, 2];
const WAIT: Duration = Duration::from_secs(30);

/// The replica id of `group` on node `node`.
fn replica(group: GroupId, node: u64) -> u64 {
    match group {
        1 => node,
        g => 10 * u64::from(g) + node,
    }
}

/// One group's replica on a node.
struct Replica {
    raft: Raft,
    stats: Arc<SmStats>,
}

struct TestNode {
    id: u64,
    addr: SocketAddr,
    storage: NodeStorage,
    grpc: RaftGrpc,
    groups: BTreeMap<GroupId, Replica>,
    server: tokio::task::JoinHandle<()>,
    _dir: TempDir,
}

fn raft_config() -> Arc<openraft::Config> {
    let config = openraft::Config {
        cluster_name: "groups-test".into(),
        heartbeat_interval: 100,
        election_timeout_min: 600,
        election_timeout_max: 1200,
        enable_pre_vote: Some(true),
        // Small enough that a follower left behind by 300 entries needs
        // a snapshot: the log up to each snapshot is purged at once.
        snapshot_policy: SnapshotPolicy::LogsSinceLast(100),
        max_in_snapshot_log_to_keep: 0,
        purge_batch_size: 1,
        ..Default::default()
    };
    Arc::new(config.validate().unwrap())
}

impl TestNode {
    async fn start(id: u64) -> Self {
        let dir = TempDir::new().unwrap();
        let config = StorageConfig::new(dir.path().to_path_buf());
        let storage = open_node_storage(&config).unwrap();
        let grpc = RaftGrpc::new(config.snapshot_dir());
        let mut groups = BTreeMap::new();
        for group in GROUPS {
            let (log, sm) = storage.open_group(group).unwrap();
            let stats = sm.stats();
            let raft = Raft::new(
                replica(group, id),
                raft_config(),
                Network::new(group),
                log,
                sm,
            )
            .await
            .unwrap();
            grpc.add_group(group, raft.clone()).unwrap();
            groups.insert(group, Replica { raft, stats });
        }
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let service = grpc.clone();
        let server = tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(service.into_server())
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
                .await
                .unwrap();
        });
        TestNode {
            id,
            addr,
            storage,
            grpc,
            groups,
            server,
            _dir: dir,
        }
    }

    fn raft(&self, group: GroupId) -> &Raft {
        &self.groups[&group].raft
    }

    /// The user keys of `group` in this node's database.
    fn keys_of(&self, group: GroupId) -> BTreeSet<String> {
        let layout = GroupLayout::new(group).unwrap();
        let (from, to) = layout.data_range();
        self.storage
            .store()
            .scan(layout.data_cf(), &from, &to, usize::MAX)
            .unwrap()
            .iter()
            .filter_map(|(k, _)| keys::parse_meta_key(group, k))
            .map(|m| String::from_utf8(m.key.to_vec()).unwrap())
            .collect()
    }

    /// Every key of the data family, whatever its group.
    fn all_data_keys(&self) -> usize {
        self.storage
            .store()
            .scan(seshat_storage::Cf::DataKv, &[], &[0xFF; 8], usize::MAX)
            .unwrap()
            .len()
    }

    async fn stop(self) {
        self.server.abort();
        for (_, r) in self.groups {
            let _ = r.raft.shutdown().await;
        }
    }
}

struct Cluster {
    nodes: Vec<TestNode>,
}

impl Cluster {
    /// Three nodes; each group initialised on a different node, so their
    /// first leaders (most likely) differ.
    async fn start() -> Self {
        let mut nodes = Vec::new();
        for id in 1..=3 {
            nodes.push(TestNode::start(id).await);
        }
        let cluster = Cluster { nodes };
        for (i, group) in GROUPS.into_iter().enumerate() {
            let members: BTreeMap<u64, SeshatNode> = cluster
                .nodes
                .iter()
                .map(|n| {
                    let node = SeshatNode {
                        raft_addr: n.addr.to_string(),
                        client_addr: "127.0.0.1:1".into(),
                    };
                    (replica(group, n.id), node)
                })
                .collect();
            cluster.nodes[i]
                .raft(group)
                .initialize(members)
                .await
                .unwrap();
        }
        cluster
    }

    /// The node leading `group`: of the replicas that say they lead, the
    /// one of the latest term.
    async fn leader(&self, group: GroupId) -> usize {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let leader = (0..self.nodes.len())
                .map(|i| (i, metrics(self.nodes[i].raft(group))))
                .filter(|(_, m)| m.state == openraft::ServerState::Leader)
                .max_by_key(|(_, m)| m.current_term)
                .map(|(i, _)| i);
            if let Some(i) = leader {
                return i;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "group {group} has no leader"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `SET key value` in `group`, retried (through a leader change) until
    /// it commits.
    async fn set(&self, group: GroupId, key: &str, value: &str) -> LogId {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let leader = self.leader(group).await;
            let batch = WriteBatch {
                now_ms: 1,
                seed: 0,
                writes: vec![Write::Command(vec![
                    Bytes::from_static(b"SET"),
                    Bytes::from(key.to_string()),
                    Bytes::from(value.to_string()),
                ])],
            };
            match self.nodes[leader].raft(group).client_write(batch).await {
                Ok(r) => return r.log_id,
                Err(e) => {
                    assert!(tokio::time::Instant::now() < deadline, "SET {key}: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    /// Waits until the replicas of `group` on `nodes` applied `id`.
    async fn applied(&self, group: GroupId, nodes: &[usize], id: LogId) {
        for &i in nodes {
            self.nodes[i]
                .raft(group)
                .wait(Some(WAIT))
                .applied_index_at_least(Some(id.index), "applied")
                .await
                .unwrap();
        }
    }

    async fn stop(self) {
        for n in self.nodes {
            n.stop().await;
        }
    }
}

fn metrics(raft: &Raft) -> openraft::RaftMetrics<seshat_raft::TypeConfig> {
    let watch = raft.metrics();
    let m = watch.borrow_watched().clone();
    m
}

fn set_of(keys: &[&str]) -> BTreeSet<String> {
    keys.iter().map(|k| k.to_string()).collect()
}

/// Both groups elect and commit on their own, each group's data lands in
/// its own range only, and a group a node stops serving leaves the
/// other group of that node alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_groups_elect_and_commit_independently_over_one_server_per_node() {
    let cluster = Cluster::start().await;
    let one = cluster.set(1, "one", "1").await;
    let two = cluster.set(2, "two", "2").await;
    cluster.applied(1, &[0, 1, 2], one).await;
    cluster.applied(2, &[0, 1, 2], two).await;
    for n in &cluster.nodes {
        assert_eq!(n.keys_of(1), set_of(&["one"]), "node {}", n.id);
        assert_eq!(n.keys_of(2), set_of(&["two"]), "node {}", n.id);
        // One metadata record per key and nothing outside the groups.
        assert_eq!(n.all_data_keys(), 2, "node {}", n.id);
        assert_eq!(n.grpc.groups(), vec![1, 2]);
        // Each group has its own log: group 2's entries are not in
        // group 1's, whatever their indexes.
        assert_eq!(metrics(n.raft(1)).id, n.id);
        assert_eq!(metrics(n.raft(2)).id, replica(2, n.id));
    }
    // A follower of group 1 stops serving it: group 1 goes on with two
    // replicas, group 2 with all three — that node's included.
    let cut = (cluster.leader(1).await + 1) % 3;
    let others: Vec<usize> = (0..3).filter(|i| *i != cut).collect();
    let removed = cluster.nodes[cut].grpc.remove_group(1).unwrap();
    assert_eq!(*removed.node_id(), cluster.nodes[cut].id);
    assert_eq!(cluster.nodes[cut].grpc.groups(), vec![2]);
    let one = cluster.set(1, "one-b", "1").await;
    let two = cluster.set(2, "two-b", "2").await;
    cluster.applied(1, &others, one).await;
    cluster.applied(2, &[0, 1, 2], two).await;
    assert_eq!(cluster.nodes[cut].keys_of(2), set_of(&["two", "two-b"]));
    assert_eq!(cluster.nodes[cut].keys_of(1), set_of(&["one"]));
    for i in others {
        assert_eq!(cluster.nodes[i].keys_of(1), set_of(&["one", "one-b"]));
    }
    cluster.stop().await;
}

/// A replica of group 2 that fell behind a purged log catches up by a
/// snapshot over the shared server, while group 1's replica on the same
/// node, in the same database, is untouched by it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_replica_catches_up_group_2_by_snapshot_and_group_1_is_untouched() {
    let cluster = Cluster::start().await;
    let one = cluster.set(1, "one", "1").await;
    cluster.applied(1, &[0, 1, 2], one).await;
    cluster
        .applied(2, &[0, 1, 2], cluster.set(2, "first", "x").await)
        .await;
    // A follower stops hearing group 2: the leader's RPCs get `not_found`.
    let lagging = (cluster.leader(2).await + 1) % 3;
    let raft2 = cluster.nodes[lagging].grpc.remove_group(2).unwrap();
    let mut last = None;
    for i in 0..300 {
        last = Some(cluster.set(2, &format!("k{i}"), "v").await);
    }
    let last = last.unwrap();
    let leader = cluster.leader(2).await;
    assert_ne!(leader, lagging, "the cut-off replica cannot lead");
    cluster.nodes[leader]
        .raft(2)
        .wait(Some(WAIT))
        .metrics(
            |m| m.purged.is_some_and(|p| p.index >= 200),
            "the leader purged its log past the lagging replica",
        )
        .await
        .unwrap();
    let node = &cluster.nodes[lagging];
    let group1_before = state_digest(node.storage.store(), 1).unwrap();
    let stats1 = &node.groups[&1].stats;
    let stats2 = &node.groups[&2].stats;
    assert_eq!(
        stats2
            .snapshots_installed
            .load(std::sync::atomic::Ordering::Acquire),
        0
    );
    // Served again: the leader can only send a snapshot.
    node.grpc.add_group(2, raft2).unwrap();
    node.raft(2)
        .wait(Some(WAIT))
        .applied_index_at_least(Some(last.index), "caught up")
        .await
        .unwrap();
    assert!(
        stats2
            .snapshots_installed
            .load(std::sync::atomic::Ordering::Acquire)
            >= 1,
        "caught up by a snapshot"
    );
    assert_eq!(
        stats1
            .snapshots_installed
            .load(std::sync::atomic::Ordering::Acquire),
        0
    );
    assert_eq!(node.keys_of(2).len(), 301);
    assert_eq!(node.keys_of(1), set_of(&["one"]));
    assert_eq!(
        state_digest(node.storage.store(), 1).unwrap(),
        group1_before
    );
    // The snapshot went to group 2's directory, none to group 1's.
    let dir = |g: GroupId| node.storage.snapshot_dir(g).unwrap();
    assert!(seshat_raft::snapshot::newest_snapshot(&dir(2))
        .unwrap()
        .is_some());
    assert!(seshat_raft::snapshot::newest_snapshot(&dir(1))
        .unwrap()
        .is_none());
    // And both groups still commit everywhere.
    let one = cluster.set(1, "after", "1").await;
    let two = cluster.set(2, "after", "2").await;
    cluster.applied(1, &[0, 1, 2], one).await;
    cluster.applied(2, &[0, 1, 2], two).await;
    cluster.stop().await;
}

type Client = RaftServiceClient<
    tonic::service::interceptor::InterceptedService<tonic::transport::Channel, Route>,
>;

async fn client(addr: SocketAddr, route: Route) -> Client {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    RaftServiceClient::with_interceptor(channel, route)
}

/// Every Raft RPC a peer can send, well-formed for a follower of
/// replica 1's leadership in term 1, each answered or refused with a
/// status.
async fn send_every_rpc(c: &mut Client) -> Vec<(&'static str, tonic::Status)> {
    let vote = pb::Vote {
        term: 1,
        node_id: 1,
        committed: true,
    };
    let append = pb::AppendEntriesRequest {
        vote: Some(vote),
        prev_log_id: None,
        entries: vec![],
        leader_commit: None,
    };
    let candidate = pb::VoteRequest {
        vote: Some(pb::Vote {
            committed: false,
            ..vote
        }),
        last_log_id: None,
        leadership_transfer: false,
    };
    let start = pb::SnapshotChunk {
        payload: Some(pb::snapshot_chunk::Payload::Start(pb::SnapshotStart {
            vote: Some(vote),
            last_log_id: None,
            membership_log_id: None,
            membership: None,
            size_bytes: 0,
        })),
    };
    let transfer = pb::TransferLeaderRequest {
        from_leader: Some(vote),
        to_node_id: 2,
        last_log_id: None,
    };
    let mut out = Vec::new();
    let mut keep = |what, r: Result<(), tonic::Status>| {
        if let Err(s) = r {
            out.push((what, s));
        }
    };
    keep("append", c.append_entries(append.clone()).await.map(|_| ()));
    let stream = c.stream_append(futures::stream::iter(vec![append])).await;
    let first = match stream {
        Ok(r) => r.into_inner().message().await.map(|_| ()),
        Err(s) => Err(s),
    };
    keep("stream append", first);
    keep("vote", c.vote(candidate).await.map(|_| ()));
    keep("pre-vote", c.pre_vote(candidate).await.map(|_| ()));
    keep(
        "snapshot",
        c.install_snapshot(futures::stream::iter(vec![start]))
            .await
            .map(|_| ()),
    );
    keep("transfer", c.transfer_leader(transfer).await.map(|_| ()));
    out
}

/// A request for a group the node does not serve gets `not_found`, one
/// for another replica than the node's `failed_precondition`, one naming
/// no group `invalid_argument` — for every Raft RPC — and the Raft cores
/// of both groups keep running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misrouted_requests_are_refused_and_the_cores_keep_running() {
    let cluster = Cluster::start().await;
    let one = cluster.set(1, "one", "1").await;
    let two = cluster.set(2, "two", "2").await;
    cluster.applied(1, &[0, 1, 2], one).await;
    cluster.applied(2, &[0, 1, 2], two).await;
    let node = &cluster.nodes[1];
    let cases = [
        (Route::new(7, 2), tonic::Code::NotFound, "not served"),
        // Group 2's replica on node 2 is 22, not 2.
        (
            Route::new(2, 2),
            tonic::Code::FailedPrecondition,
            "replica 22",
        ),
        (
            Route::new(1, 3),
            tonic::Code::FailedPrecondition,
            "replica 2",
        ),
    ];
    for (route, code, says) in cases {
        let mut c = client(node.addr, route).await;
        let refused = send_every_rpc(&mut c).await;
        assert_eq!(refused.len(), 6, "{route:?}: {refused:?}");
        for (what, status) in refused {
            assert_eq!(status.code(), code, "{route:?} {what}: {status}");
            assert!(status.message().contains(says), "{what}: {status}");
        }
    }
    // No route at all.
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", node.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut bare = RaftServiceClient::new(channel);
    let status = bare
        .vote(pb::VoteRequest {
            vote: Some(pb::Vote {
                term: 1,
                node_id: 1,
                committed: false,
            }),
            last_log_id: None,
            leadership_transfer: false,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status}");
    assert!(status.message().contains("seshat-group"), "{status}");
    // The node's forwarded-command RPC is node-level: no route needed
    // (this server has no handler for it).
    let status = bare
        .forward(pb::ForwardRequest {
            args: vec![Bytes::from_static(b"PING")],
            protover: 2,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unimplemented, "{status}");
    // The right route reaches the replica (and its own checks).
    let mut right = client(node.addr, Route::new(2, 22)).await;
    let absurd = pb::VoteRequest {
        vote: Some(pb::Vote {
            term: u64::MAX,
            node_id: 21,
            committed: false,
        }),
        last_log_id: None,
        leadership_transfer: false,
    };
    let status = right.vote(absurd).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status}");
    assert!(status.message().contains("term"), "{status}");
    // Both groups still elect and commit, on every node.
    for n in &cluster.nodes {
        for g in GROUPS {
            assert!(metrics(n.raft(g)).running_state.is_ok());
        }
    }
    let one = cluster.set(1, "after", "1").await;
    let two = cluster.set(2, "after", "2").await;
    cluster.applied(1, &[0, 1, 2], one).await;
    cluster.applied(2, &[0, 1, 2], two).await;
    cluster.stop().await;
}
