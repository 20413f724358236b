//! The leader's side of proxy mode: runs commands forwarded by followers
//! through the normal command path and returns the encoded reply.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use seshat_commands::Route;
use seshat_protocol_resp::{self as resp, Frame, ProtocolVersion};
use seshat_raft::grpc_server::ForwardHandler;

use crate::commands;
use crate::session::ClientState;
use crate::shared::Shared;

/// Runs forwarded commands on the leader.
pub struct LeaderExecutor {
    /// The leader's server state.
    pub shared: Arc<Shared>,
    /// The client runtime: forwarded commands run there, like the
    /// leader's own clients' commands, not on the Raft runtime whose
    /// server received them (heartbeats must not wait behind them).
    pub client_runtime: tokio::runtime::Handle,
}

#[tonic::async_trait]
impl ForwardHandler for LeaderExecutor {
    async fn forward(&self, args: Vec<Bytes>, protover: u32) -> Bytes {
        let version =
            ProtocolVersion::from_protover(i64::from(protover)).unwrap_or(ProtocolVersion::Resp2);
        if args
            .first()
            .is_some_and(|a| a.eq_ignore_ascii_case(crate::resharding::INTERNAL.as_bytes()))
        {
            // A peer's resharding operation: never a client's command
            // (a follower resolves a client's command before forwarding
            // it, and this name is not in the command table).
            let shared = self.shared.clone();
            let frame = self
                .client_runtime
                .spawn(async move { crate::resharding::serve_internal(&shared, &args).await })
                .await
                .unwrap_or_else(|e| Frame::error(format!("ERR peer operation failed: {e}")));
            let mut out = BytesMut::new();
            resp::encode(&frame, ProtocolVersion::Resp2, &mut out);
            return out.freeze();
        }
        if args
            .first()
            .is_some_and(|a| a.eq_ignore_ascii_case(crate::boot::INTERNAL.as_bytes()))
        {
            // A peer's boot-record query (never a client's command, as above).
            let shared = self.shared.clone();
            let frame = self
                .client_runtime
                .spawn(async move { crate::boot::serve_internal(&shared, &args).await })
                .await
                .unwrap_or_else(|e| Frame::error(format!("ERR peer operation failed: {e}")));
            let mut out = BytesMut::new();
            resp::encode(&frame, ProtocolVersion::Resp2, &mut out);
            return out.freeze();
        }
        let frame = match seshat_commands::resolve(&args) {
            Err(e) => e.into_frame(),
            Ok(decl) => match decl.route() {
                Route::Write | Route::Read => {
                    // The follower authenticated its client before
                    // forwarding.
                    // The follower also checked its user's ACL rules.
                    let superuser = crate::auth::Identity {
                        user: std::sync::Arc::new(seshat_commands::acl::User::default_user(None)),
                        name: Bytes::from_static(crate::auth::DEFAULT_USER),
                        created_index: 0,
                    };
                    let mut client =
                        ClientState::new(0, SocketAddr::from(([0, 0, 0, 0], 0)), true, superuser);
                    client.version = version;
                    let shared = self.shared.clone();
                    self.client_runtime
                        .spawn(
                            async move { commands::run_data(decl, args, &client, &shared).await },
                        )
                        .await
                        .unwrap_or_else(|e| {
                            Frame::error(format!("ERR forwarded command failed: {e}"))
                        })
                }
                Route::Pure | Route::Server(_) => Frame::error("ERR command cannot be forwarded"),
            },
        };
        let mut out = BytesMut::new();
        resp::encode(&frame, version, &mut out);
        out.freeze()
    }
}
