//! HTTPS on the HTTP port (`--http-tls yes`): an [`axum::serve::Listener`]
//! that hands axum only connections whose TLS handshake completed.
//!
//! The handshakes run in tasks of their own, off the loop that accepts,
//! under [`TLS_HANDSHAKE_TIMEOUT`] and at most
//! [`HTTPS_HANDSHAKES_IN_FLIGHT`] at once (further connections wait in the
//! listen backlog): a client that connects and never speaks, or speaks
//! plain HTTP, is dropped without holding up anyone else. Each handshake
//! uses the [`TlsContext`] configuration in force when its connection was
//! accepted, so a reload (SIGHUP, `CONFIG SET tls-cert-file …`) applies to
//! the next connection, as on the TLS client port.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;
use tokio_rustls::server::TlsStream;

use crate::server::accept_backoff;
use crate::tls::{TlsContext, TLS_HANDSHAKE_TIMEOUT};

/// TLS handshakes on the HTTP port running at one time. Scrapers and
/// probes make a few connections at a time; past this, connections wait
/// in the backlog until a handshake finishes or times out.
pub const HTTPS_HANDSHAKES_IN_FLIGHT: usize = 64;

/// Connections whose handshake completed, waiting for axum to take them.
const HANDSHAKEN_QUEUE: usize = 16;

/// The HTTPS listener. Dropping it (axum does once a graceful shutdown
/// begins) stops accepting and aborts the handshakes under way.
pub struct TlsIncoming {
    handshaken: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local_addr: SocketAddr,
    accepting: tokio::task::AbortHandle,
}

impl TlsIncoming {
    /// Accepts on `listener`, handshaking with `context`'s configuration.
    pub fn new(listener: TcpListener, context: Arc<TlsContext>) -> std::io::Result<TlsIncoming> {
        let local_addr = listener.local_addr()?;
        let (tx, handshaken) = mpsc::channel(HANDSHAKEN_QUEUE);
        let accepting = tokio::spawn(accept_and_handshake(listener, context, tx)).abort_handle();
        Ok(TlsIncoming {
            handshaken,
            local_addr,
            accepting,
        })
    }
}

impl Drop for TlsIncoming {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

impl axum::serve::Listener for TlsIncoming {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.handshaken.recv().await {
            Some(connection) => connection,
            // The accepting task ended: it only does when aborted, that
            // is after this listener was dropped. Accept nothing more.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local_addr)
    }
}

/// Accepts connections and runs each one's handshake in a task of its
/// own; completed ones go to `handshaken`. Runs until aborted (its
/// handshake tasks, held in a `JoinSet`, are aborted with it).
async fn accept_and_handshake(
    listener: TcpListener,
    context: Arc<TlsContext>,
    handshaken: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    let slots = Arc::new(Semaphore::new(HTTPS_HANDSHAKES_IN_FLIGHT));
    let mut handshakes = JoinSet::new();
    let mut backoff = None;
    loop {
        // Never closed, so this only waits.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let (socket, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: the connection
                // waits in the backlog; retrying at once would spin.
                let pause = accept_backoff(backoff);
                if backoff.is_none() {
                    tracing::warn!(error = %e, "HTTPS accept failed; retrying with backoff");
                }
                backoff = Some(pause);
                tokio::time::sleep(pause).await;
                continue;
            }
        };
        backoff = None;
        while handshakes.try_join_next().is_some() {}
        let _ = socket.set_nodelay(true);
        // The configuration in force now: a reload changes what later
        // connections get.
        let acceptor = context.acceptor();
        let handshaken = handshaken.clone();
        handshakes.spawn(async move {
            let outcome =
                tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(socket)).await;
            drop(slot);
            match outcome {
                Ok(Ok(stream)) => {
                    // Fails only once the listener is gone (shutdown).
                    let _ = handshaken.send((stream, peer)).await;
                }
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "HTTPS handshake failed"),
                Err(_) => tracing::debug!(%peer, "HTTPS handshake timed out"),
            }
        });
    }
}
