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
        // A peer's internal operation (resharding, boot records): never a
        // client's command, since a follower resolves a client's command
        // against the command table before forwarding it, and these names
        // are not in it.
        let internal = args.first().and_then(|name| {
            [
                crate::resharding::INTERNAL,
                crate::boot::INTERNAL,
                crate::membership::INTERNAL,
            ]
            .into_iter()
            .find(|i| name.eq_ignore_ascii_case(i.as_bytes()))
        });
        if let Some(internal) = internal {
            let shared = self.shared.clone();
            let frame = self
                .client_runtime
                .spawn(async move {
                    if internal == crate::boot::INTERNAL {
                        crate::boot::serve_internal(&shared, &args).await
                    } else if internal == crate::membership::INTERNAL {
                        crate::membership::serve_replica(&shared, &args).await
                    } else {
                        crate::resharding::serve_internal(&shared, &args).await
                    }
                })
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
