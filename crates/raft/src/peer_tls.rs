//! Mutual TLS on the node-to-node (Raft/gRPC) port.
//!
//! With a [`PeerTls`], the gRPC server completes a handshake only with a
//! peer whose certificate chains to the cluster CA — a peer without one
//! cannot send a single Raft, snapshot or forwarded request — and every
//! connection this node opens to a peer (Raft RPCs, snapshot streams,
//! forwarded commands) presents this node's certificate and accepts only a
//! server whose certificate chains to the same CA.
//!
//! **Server names.** Peers are dialled by the IP addresses of
//! `--initial-members`, which change when a node moves; a client therefore
//! does not check the address but asks every peer for one cluster-wide
//! name, [`PEER_SERVER_NAME`]. Every node certificate must carry it as a
//! DNS subject alternative name, and (if it has an extended key usage at
//! all) both `serverAuth` and `clientAuth`, since each node is a server
//! and a client. The CA is what admits a node: it must sign node
//! certificates only (a cluster CA, not one shared with clients), and a
//! certificate does not say which node it belongs to.
//!
//! The TLS stack is tonic's, over rustls with the `ring` provider (the one
//! the client port uses; no aws-lc-rs, no system root store).
//!
//! ```
//! use seshat_raft::peer_tls::{peer_endpoint, PEER_SERVER_NAME};
//! // Without TLS, a plain HTTP/2 endpoint.
//! let e = peer_endpoint("127.0.0.1:7001", None).unwrap();
//! assert_eq!(e.uri().scheme_str(), Some("http"));
//! assert_eq!(PEER_SERVER_NAME, "seshat-node");
//! ```

use std::time::Duration;

use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity, ServerTlsConfig};

use crate::network::CONNECT_TIMEOUT;

/// The name every node's certificate carries (as a DNS subject alternative
/// name) and every node asks its peers for, whatever address it dials.
pub const PEER_SERVER_NAME: &str = "seshat-node";

/// Longest a peer may take to complete the TLS handshake, on either side.
/// The server handshakes each connection in a task of its own, so a peer
/// that connects and stays silent holds only that task until then.
pub const PEER_TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// This node's certificate and key, and the cluster CA, as PEM.
#[derive(Clone)]
pub struct PeerTls {
    identity: Identity,
    ca: Certificate,
}

impl std::fmt::Debug for PeerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("PeerTls").finish_non_exhaustive()
    }
}

impl PeerTls {
    /// The node's certificate chain (leaf first) and private key, and the
    /// CA certificates peers must chain to, all PEM. They are not checked
    /// here: the caller checks them (the `seshat` binary does at start-up),
    /// and tonic refuses what does not parse when the server or a client is
    /// built.
    pub fn from_pem(cert_chain: Vec<u8>, key: Vec<u8>, ca: Vec<u8>) -> PeerTls {
        PeerTls {
            identity: Identity::from_pem(cert_chain, key),
            ca: Certificate::from_pem(ca),
        }
    }

    /// The server side: this node's identity; a client certificate signed
    /// by the CA is required.
    pub fn server_config(&self) -> ServerTlsConfig {
        ServerTlsConfig::new()
            .identity(self.identity.clone())
            .client_ca_root(self.ca.clone())
            .client_auth_optional(false)
            .timeout(PEER_TLS_HANDSHAKE_TIMEOUT)
    }

    /// The client side: trusts the CA only, asks for [`PEER_SERVER_NAME`],
    /// presents this node's identity.
    pub fn client_config(&self) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .ca_certificate(self.ca.clone())
            .identity(self.identity.clone())
            .domain_name(PEER_SERVER_NAME)
            .timeout(PEER_TLS_HANDSHAKE_TIMEOUT)
    }
}

/// An endpoint (not yet connected) for the peer whose Raft port is `addr`
/// (`host:port`): plain HTTP/2, or mutual TLS with `tls`. Raft clients and
/// the proxy's forwarding clients are both built from it, so no connection
/// to a peer ever skips TLS when it is on.
pub fn peer_endpoint(
    addr: &str,
    tls: Option<&PeerTls>,
) -> Result<Endpoint, tonic::transport::Error> {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let endpoint = Endpoint::from_shared(format!("{scheme}://{addr}"))?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true);
    match tls {
        Some(tls) => endpoint.tls_config(tls.client_config()),
        None => Ok(endpoint),
    }
}
