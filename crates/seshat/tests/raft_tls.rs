//! Mutual TLS between nodes (issue 17, item 4), against real processes: a
//! 3-node cluster whose Raft ports speak only mutual TLS elects, forwards
//! commands (proxy mode) and fails over; a rogue process that speaks gRPC
//! to a Raft port without a certificate, or with one from another CA, is
//! refused at the handshake — no request reaches a handler — and the
//! cluster never notices. Certificates are made by the `openssl` CLI.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::pki::Pki;
use common::{get, have_tool, info_u64, runtime, set, Cluster, Server};
use seshat_kv::keys::DATA_GROUP;
use seshat_raft::pb;
use seshat_raft::pb::raft_service_client::RaftServiceClient;
use seshat_raft::peer_tls::{peer_endpoint, PeerTls, PEER_SERVER_NAME};
use seshat_raft::route::Route;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

/// A cluster CA `cluster-ca` and the node certificate `node` it signs
/// (shared by the nodes here; each node may as well have its own).
fn cluster_pki() -> Pki {
    let pki = Pki::new();
    pki.ca("cluster-ca");
    pki.node("cluster-ca", "node");
    pki
}

fn mtls_flags(pki: &Pki) -> Vec<String> {
    vec![
        "--raft-tls-cert-file".into(),
        pki.s("node.crt"),
        "--raft-tls-key-file".into(),
        pki.s("node.key"),
        "--raft-tls-ca-cert-file".into(),
        pki.s("cluster-ca.crt"),
    ]
}

fn start_mtls_cluster(pki: &Pki, extra: &[&str]) -> Cluster {
    let mut flags = mtls_flags(pki);
    flags.extend(extra.iter().map(|s| s.to_string()));
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    Cluster::start_with(3, &flags)
}

/// A client whose requests name the data group and a replica, as a
/// peer's do.
type RaftClient = RaftServiceClient<InterceptedService<Channel, Route>>;

/// A client of replica `target` of the data group behind `endpoint`.
fn client(endpoint: Endpoint, target: u64) -> RaftClient {
    let channel = endpoint.timeout(Duration::from_secs(5)).connect_lazy();
    RaftServiceClient::with_interceptor(channel, Route::new(DATA_GROUP, target))
}

/// A client that speaks plain gRPC (HTTP/2 without TLS) to `port`.
fn plain_client(port: u16, target: u64) -> RaftClient {
    client(
        Endpoint::from_shared(format!("http://127.0.0.1:{port}")).unwrap(),
        target,
    )
}

/// A client that trusts the cluster CA but has no certificate of its own.
fn tls_client_without_certificate(pki: &Pki, port: u16, target: u64) -> RaftClient {
    let ca = Certificate::from_pem(std::fs::read(pki.path("cluster-ca.crt")).unwrap());
    let tls = ClientTlsConfig::new()
        .ca_certificate(ca)
        .domain_name(PEER_SERVER_NAME);
    let endpoint = Endpoint::from_shared(format!("https://127.0.0.1:{port}"))
        .unwrap()
        .tls_config(tls)
        .unwrap();
    client(endpoint, target)
}

/// A client presenting `NAME.crt` and trusting the cluster CA, as a node
/// dials its peers.
fn tls_client_as(pki: &Pki, name: &str, port: u16, target: u64) -> RaftClient {
    let read = |f: &str| std::fs::read(pki.path(f)).unwrap();
    let tls = PeerTls::from_pem(
        read(&format!("{name}.crt")),
        read(&format!("{name}.key")),
        read("cluster-ca.crt"),
    );
    client(
        peer_endpoint(&format!("127.0.0.1:{port}"), Some(&tls)).unwrap(),
        target,
    )
}

/// Requests a protocol-following node would act on had they come from a
/// peer: node 9 claims leadership (append), asks for votes, announces a
/// snapshot, all at a term far ahead; and a forwarded `SET`.
struct Forgeries {
    append: pb::AppendEntriesRequest,
    vote: pb::VoteRequest,
    snapshot_start: pb::SnapshotStart,
    forward: pb::ForwardRequest,
}

fn forgeries(term: u64) -> Forgeries {
    let rogue_leader = pb::Vote {
        term: term + 100,
        node_id: 9,
        committed: true,
    };
    Forgeries {
        append: pb::AppendEntriesRequest {
            vote: Some(rogue_leader),
            prev_log_id: None,
            entries: vec![],
            leader_commit: None,
        },
        vote: pb::VoteRequest {
            vote: Some(pb::Vote {
                committed: false,
                ..rogue_leader
            }),
            last_log_id: Some(pb::LogId {
                term: term + 100,
                leader_node_id: 9,
                index: 1_000_000,
            }),
            leadership_transfer: true,
        },
        snapshot_start: pb::SnapshotStart {
            vote: Some(rogue_leader),
            last_log_id: None,
            membership_log_id: None,
            membership: None,
            size_bytes: 0,
        },
        forward: pb::ForwardRequest {
            args: vec!["SET".into(), "rogue".into(), "1".into()],
            protover: 2,
        },
    }
}

/// The request never reached a handler: the status was made by this
/// client's own transport (the connection failed or was closed), not
/// received from the server. (A handler answers a forged request with
/// `InvalidArgument`, or acts on it.)
fn assert_transport_refused<T: std::fmt::Debug>(what: &str, result: Result<T, tonic::Status>) {
    match result {
        Err(s)
            if std::error::Error::source(&s).is_some_and(|e| e.is::<tonic::transport::Error>()) =>
        {
            eprintln!("{what}: refused by the transport: {s}");
        }
        other => panic!("{what}: expected a transport error, got {other:?}"),
    }
}

/// Sends every forgery to `c` and checks that each fails in the transport.
async fn send_forgeries(what: &str, c: &mut RaftClient, f: &Forgeries) {
    assert_transport_refused(
        &format!("{what}: append"),
        c.append_entries(f.append.clone()).await,
    );
    assert_transport_refused(
        &format!("{what}: stream append"),
        c.stream_append(futures::stream::iter(vec![f.append.clone()]))
            .await,
    );
    assert_transport_refused(&format!("{what}: vote"), c.vote(f.vote).await);
    assert_transport_refused(&format!("{what}: pre-vote"), c.pre_vote(f.vote).await);
    let chunks = vec![pb::SnapshotChunk {
        payload: Some(pb::snapshot_chunk::Payload::Start(f.snapshot_start.clone())),
    }];
    assert_transport_refused(
        &format!("{what}: snapshot"),
        c.install_snapshot(futures::stream::iter(chunks)).await,
    );
    assert_transport_refused(
        &format!("{what}: forward"),
        c.forward(f.forward.clone()).await,
    );
}

/// Every node still names `leader` at `term`, and the forged `SET` left
/// no trace.
fn assert_cluster_never_noticed(cluster: &Cluster, leader: usize, term: u64) {
    let leader_id = cluster.nodes[leader].node_id;
    for i in 0..cluster.nodes.len() {
        assert_eq!(info_u64(cluster, i, "raft_term"), term, "node {i}'s term");
        assert_eq!(
            info_u64(cluster, i, "raft_leader_id"),
            leader_id,
            "node {i}'s leader"
        );
    }
    assert_eq!(get(cluster, leader, "rogue"), None);
    set(cluster, leader, "after-rogue", "ok");
}

#[test]
fn a_cluster_with_raft_mtls_elects_and_serves() {
    if !have_tool("openssl") {
        eprintln!("skipped: openssl not installed");
        return;
    }
    let pki = cluster_pki();
    // Proxy mode: a follower forwards commands over the same mutual TLS.
    let mut cluster = start_mtls_cluster(&pki, &["--follower-mode", "proxy"]);
    let leader = cluster.wait_for_leader(Duration::from_secs(30));
    let follower = (leader + 1) % 3;
    set(&cluster, leader, "k1", "v1");
    set(&cluster, follower, "k2", "v2");
    assert_eq!(get(&cluster, follower, "k1").as_deref(), Some("v1"));
    assert_eq!(get(&cluster, leader, "k2").as_deref(), Some("v2"));

    // Failover: the survivors elect a leader over mutual TLS; it has what
    // the old leader committed.
    let status = cluster.nodes[leader].terminate();
    assert!(status.success(), "leader exited with {status}");
    let next = cluster.wait_for_leader(Duration::from_secs(30));
    assert_ne!(next, leader);
    assert_eq!(get(&cluster, next, "k1").as_deref(), Some("v1"));
    assert_eq!(get(&cluster, next, "k2").as_deref(), Some("v2"));
    set(&cluster, next, "k3", "v3");
    let other = (0..3).find(|&i| i != leader && i != next).unwrap();
    assert_eq!(get(&cluster, other, "k3").as_deref(), Some("v3"));
}

#[test]
fn a_peer_without_a_certificate_is_refused_and_the_cluster_never_notices() {
    if !have_tool("openssl") {
        eprintln!("skipped: openssl not installed");
        return;
    }
    let pki = cluster_pki();
    let cluster = start_mtls_cluster(&pki, &[]);
    let leader = cluster.wait_for_leader(Duration::from_secs(30));
    let term = info_u64(&cluster, leader, "raft_term");
    let f = forgeries(term);
    let rt = runtime();
    for (i, node) in cluster.nodes.iter().enumerate() {
        rt.block_on(async {
            let mut plain = plain_client(node.raft_port, node.node_id);
            send_forgeries(&format!("node {i}, plain gRPC"), &mut plain, &f).await;
            let mut anonymous = tls_client_without_certificate(&pki, node.raft_port, node.node_id);
            send_forgeries(
                &format!("node {i}, TLS without a certificate"),
                &mut anonymous,
                &f,
            )
            .await;
        });
    }
    assert_cluster_never_noticed(&cluster, leader, term);
}

#[test]
fn a_peer_with_a_certificate_from_another_ca_is_refused() {
    if !have_tool("openssl") {
        eprintln!("skipped: openssl not installed");
        return;
    }
    let pki = cluster_pki();
    // Right name, right usages, wrong CA.
    pki.ca("rogue-ca");
    pki.node("rogue-ca", "rogue");
    let cluster = start_mtls_cluster(&pki, &[]);
    let leader = cluster.wait_for_leader(Duration::from_secs(30));
    let term = info_u64(&cluster, leader, "raft_term");
    let f = forgeries(term);
    let rt = runtime();
    for (i, node) in cluster.nodes.iter().enumerate() {
        rt.block_on(async {
            let mut rogue = tls_client_as(&pki, "rogue", node.raft_port, node.node_id);
            send_forgeries(&format!("node {i}, another CA"), &mut rogue, &f).await;
            // The same client with the cluster's certificate is let in (and
            // its absurd vote refused by the handler): the CA made the
            // difference.
            let mut member = tls_client_as(&pki, "node", node.raft_port, node.node_id);
            let absurd = pb::VoteRequest {
                vote: Some(pb::Vote {
                    term: u64::MAX,
                    node_id: 9,
                    committed: false,
                }),
                last_log_id: None,
                leadership_transfer: false,
            };
            match member.vote(absurd).await {
                Err(s) if s.code() == tonic::Code::InvalidArgument => {}
                other => panic!("node {i}: a member's absurd vote: {other:?}"),
            }
        });
    }
    assert_cluster_never_noticed(&cluster, leader, term);
}

/// A certificate peers would refuse (no `seshat-node` name, here) stops
/// the start with a message, instead of a cluster that never elects.
#[test]
fn a_node_certificate_peers_would_refuse_stops_the_start() {
    if !have_tool("openssl") {
        eprintln!("skipped: openssl not installed");
        return;
    }
    let pki = cluster_pki();
    pki.leaf("cluster-ca", "unnamed");
    let flags = [
        "--raft-tls-cert-file".to_string(),
        pki.s("unnamed.crt"),
        "--raft-tls-key-file".into(),
        pki.s("unnamed.key"),
        "--raft-tls-ca-cert-file".into(),
        pki.s("cluster-ca.crt"),
    ];
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let mut s = Server::spawn_with(&flags);
    let status = s.wait_exit(Duration::from_secs(30));
    assert!(!status.success());
    let log = s.log();
    assert!(
        log.contains("raft-tls-cert-file") && log.contains("seshat-node"),
        "{log}"
    );
}
