//! openraft's type configuration for Seshat.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A cluster member's addresses, as stored in the Raft membership so every
/// node can tell clients where the leader is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeshatNode {
    /// Internal gRPC address (`host:port`).
    pub raft_addr: String,
    /// Client RESP address (`host:port`) used in MOVED and CLUSTER replies.
    pub client_addr: String,
}

impl fmt::Display for SeshatNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.raft_addr, self.client_addr)
    }
}

openraft::declare_raft_types!(
    /// Seshat's openraft configuration: batches of client writes in, one
    /// RESP reply per write out.
    pub TypeConfig:
        D = seshat_kv::WriteBatch,
        R = Vec<seshat_protocol_resp::Frame>,
        Node = SeshatNode,
);

/// The Raft handle type used throughout Seshat.
pub type Raft = openraft::Raft<TypeConfig, crate::StateMachine>;
/// A log id of this configuration.
pub type LogId = openraft::alias::LogIdOf<TypeConfig>;
/// A vote of this configuration.
pub type Vote = openraft::alias::VoteOf<TypeConfig>;
/// A log entry of this configuration.
pub type Entry = openraft::alias::EntryOf<TypeConfig>;
/// Membership with its log id.
pub type StoredMembership = openraft::alias::StoredMembershipOf<TypeConfig>;
/// Membership config.
pub type Membership = openraft::Membership<u64, SeshatNode>;
/// Snapshot metadata.
pub type SnapshotMeta = openraft::alias::SnapshotMetaOf<TypeConfig>;
/// The leader id committed into log ids.
pub type CommittedLeaderId = openraft::alias::CommittedLeaderIdOf<TypeConfig>;
