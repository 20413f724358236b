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
use tokio::io::{AsyncReadExt, AsyncWriteExt};
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

/// First pause after a failed accept (out of descriptors, say): the
/// connection stays in the backlog, so retrying at once would spin.
pub const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(5);
/// Longest pause between accept attempts while they keep failing.
pub const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// The pause after a failed accept that followed a pause of `previous`
/// (`None` after a success): doubling from [`ACCEPT_BACKOFF_MIN`] up to
/// [`ACCEPT_BACKOFF_MAX`].
pub fn accept_backoff(previous: Option<Duration>) -> Duration {
    previous.map_or(ACCEPT_BACKOFF_MIN, |p| {
        p.saturating_mul(2).min(ACCEPT_BACKOFF_MAX)
    })
}

/// Accepts clients until `shutdown` turns true, then drains connections.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsListener>,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let limit = Arc::new(Semaphore::new(shared.settings.max_clients));
    let refusals = Arc::new(Semaphore::new(REFUSALS_IN_FLIGHT));
    let mut tasks = JoinSet::new();
    let mut backoff = None;
    loop {
        let (accepted, is_tls) = tokio::select! {
            r = listener.accept() => (r, false),
            r = accept_tls(tls.as_ref()) => (r, true),
            _ = shutdown.changed() => break,
        };
        let (socket, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: back off (the
                // connection waits in the backlog), keep going.
                let pause = accept_backoff(backoff);
                if backoff.is_none() {
                    tracing::warn!(error = %e, "accept failed; retrying with backoff");
                }
                backoff = Some(pause);
                tokio::select! {
                    () = tokio::time::sleep(pause) => continue,
                    _ = shutdown.changed() => break,
                }
            }
        };
        backoff = None;
        // Reap finished connection tasks so the set stays small.
        while tasks.try_join_next().is_some() {}
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            shared
                .stats
                .rejected_connections
                .fetch_add(1, Ordering::Relaxed);
            // A TLS client could not read a plain-text error.
            if !is_tls {
                refuse(socket, &refusals);
            }
            continue;
        };
        let _ = socket.set_nodelay(true);
        set_keepalive(&socket, shared.settings.tcp_keepalive);
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

/// Clients being refused at one time (each holds a descriptor while it
/// gets its reply; counted in the descriptors reserved at start).
pub const REFUSALS_IN_FLIGHT: usize = 16;
/// How long a refused client's input is drained before its socket is
/// closed: closing with unread input would reset the connection, and the
/// client could lose the reply.
const REFUSAL_DRAIN: Duration = Duration::from_millis(100);

/// Answers a client over the limit with [`MAX_CLIENTS_REPLY`] and closes
/// it. At most [`REFUSALS_IN_FLIGHT`] do so gracefully at once; beyond,
/// the reply is written if the socket takes it and the socket closed at
/// once, so a flood of clients never holds more descriptors.
fn refuse(socket: TcpStream, refusals: &Arc<Semaphore>) {
    let mut reply = BytesMut::new();
    Frame::error(MAX_CLIENTS_REPLY).encode(ProtocolVersion::Resp2, &mut reply);
    let Ok(slot) = refusals.clone().try_acquire_owned() else {
        let _ = socket.try_write(&reply);
        return;
    };
    tokio::spawn(async move {
        let mut socket = socket;
        if socket.write_all(&reply).await.is_ok() && socket.shutdown().await.is_ok() {
            let mut sink = [0u8; 1024];
            let _ = tokio::time::timeout(REFUSAL_DRAIN, async {
                while matches!(socket.read(&mut sink).await, Ok(n) if n > 0) {}
            })
            .await;
        }
        drop(slot);
    });
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_accepts_back_off_exponentially_up_to_a_cap() {
        let mut pauses = Vec::new();
        let mut backoff = None;
        for _ in 0..12 {
            let pause = accept_backoff(backoff);
            pauses.push(pause.as_millis());
            backoff = Some(pause);
        }
        assert_eq!(
            pauses,
            [5, 10, 20, 40, 80, 160, 320, 640, 1000, 1000, 1000, 1000]
        );
        // A success starts over.
        assert_eq!(accept_backoff(None), ACCEPT_BACKOFF_MIN);
    }
}
