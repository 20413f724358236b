//! The RESP listeners: accept clients on the plain port and, if enabled,
//! the TLS port, up to `max_clients` on both together; run one
//! [`Connection`](crate::connection::Connection) task per client (a TLS
//! client's handshake runs in its task, never in the accept loop); on
//! shutdown stop accepting, let in-flight requests finish (bounded by a
//! grace period), then return.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use seshat_protocol_resp::{Frame, ProtocolVersion};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use crate::connection::Connection;
use crate::shared::Shared;
use crate::tls::{TlsContext, TLS_HANDSHAKE_TIMEOUT};

/// The TLS listener and the configuration it accepts with.
pub struct TlsListener {
    /// Bound to the client address' IP and the TLS port.
    pub listener: TcpListener,
    /// Certificates and client verification, reloadable.
    pub context: Arc<TlsContext>,
}

/// Redis's reply when `maxclients` is reached.
pub const MAX_CLIENTS_REPLY: &str = "ERR max number of clients reached";

/// Accepts clients until `shutdown` turns true, then drains connections.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsListener>,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let limit = Arc::new(Semaphore::new(shared.node.settings.max_clients));
    let mut tasks = JoinSet::new();
    loop {
        let (accepted, is_tls) = tokio::select! {
            r = listener.accept() => (r, false),
            r = accept_tls(tls.as_ref()) => (r, true),
            _ = shutdown.changed() => break,
        };
        let (socket, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: back off, keep going.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // Reap finished connection tasks so the set stays small.
        while tasks.try_join_next().is_some() {}
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            shared
                .stats
                .rejected_connections
                .fetch_add(1, Ordering::Relaxed);
            // A TLS client could not read a plain-text error.
            if !is_tls {
                tokio::spawn(refuse(socket));
            }
            continue;
        };
        let _ = socket.set_nodelay(true);
        set_keepalive(&socket, shared.node.settings.tcp_keepalive);
        shared
            .stats
            .total_connections
            .fetch_add(1, Ordering::Relaxed);
        let (shared, shutdown) = (shared.clone(), shutdown.clone());
        match &tls {
            Some(tls) if is_tls => {
                // The configuration in force at accept time: a reload
                // changes what later clients get.
                let acceptor = tls.context.acceptor();
                tasks.spawn(async move {
                    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(socket)).await
                    {
                        Ok(Ok(stream)) => {
                            Connection::new(stream, peer, true, shared, shutdown)
                                .run()
                                .await
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        }
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                    drop(permit);
                });
            }
            _ => {
                let conn = Connection::new(socket, peer, false, shared, shutdown);
                tasks.spawn(async move {
                    conn.run().await;
                    drop(permit);
                });
            }
        }
    }
    drop(listener);
    drop(tls);
    let grace = Duration::from_millis(crate::config::SHUTDOWN_GRACE_MS);
    if tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} })
        .await
        .is_err()
    {
        tracing::warn!("connections still busy after the shutdown grace period; closing them");
        tasks.abort_all();
    }
}

/// The next client on the TLS port; never, without one.
async fn accept_tls(
    tls: Option<&TlsListener>,
) -> std::io::Result<(TcpStream, std::net::SocketAddr)> {
    match tls {
        Some(tls) => tls.listener.accept().await,
        None => std::future::pending().await,
    }
}

async fn refuse(mut socket: TcpStream) {
    let mut out = BytesMut::new();
    Frame::error(MAX_CLIENTS_REPLY).encode(ProtocolVersion::Resp2, &mut out);
    let _ = socket.write_all(&out).await;
    let _ = socket.shutdown().await;
}

/// TCP keepalive as Redis sets it: the first probe after `idle`, then every
/// third of it, so a peer that vanished is noticed after about twice
/// `idle`. Zero leaves keepalive off.
fn set_keepalive(socket: &TcpStream, idle: Duration) {
    if idle.is_zero() {
        return;
    }
    let params = socket2::TcpKeepalive::new()
        .with_time(idle)
        .with_interval((idle / 3).max(Duration::from_secs(1)))
        .with_retries(3);
    if let Err(e) = socket2::SockRef::from(socket).set_tcp_keepalive(&params) {
        tracing::debug!(error = %e, "cannot set TCP keepalive");
    }
}
