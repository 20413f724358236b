//! The server-wide bound on memory held for clients (Redis's
//! `maxmemory-clients`): each connection's input buffer, the requests it
//! decoded but has not answered yet (look-ahead, writes in flight, an open
//! `MULTI` queue) and its unsent replies are counted in one total. Past the
//! bound the largest clients are disconnected — one at a time, largest
//! first, until what the others hold fits — with a log line and a metric;
//! every other client is unaffected.
//!
//! Accounting is push-based: a connection reports its usage when it
//! changes (the codec after every read, the connection between requests),
//! so a client blocked in the middle of an unfinished request is counted
//! while it uploads. The report that takes the total past the bound picks
//! the victims there and then (no task to wait for while the others go on
//! reading); a victim's memory counts as freed from that moment, so each
//! victim is picked once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use seshat_protocol_resp::{CodecError, Frame, Request, ServerCodec};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::codec::{Decoder, Encoder};

/// Default bound on memory held for all clients together: 512 MiB.
pub const DEFAULT_MAXMEMORY_CLIENTS: usize = 512 * 1024 * 1024;

/// The registry of connected clients' memory.
#[derive(Debug)]
pub struct ClientMemory {
    /// Bound on `total`; 0 means none.
    limit: usize,
    total: AtomicUsize,
    clients: Mutex<HashMap<u64, Arc<ClientUsage>>>,
    evicted: AtomicU64,
    /// Bytes of clients marked for disconnection and not gone yet.
    doomed: AtomicUsize,
    started: Instant,
}

/// One client's share of [`ClientMemory`].
#[derive(Debug)]
pub struct ClientUsage {
    id: u64,
    /// Bytes allocated for the input buffer (set by the codec).
    input: AtomicUsize,
    /// Bytes of decoded requests not yet answered and of unsent replies
    /// (set by the connection).
    held: AtomicUsize,
    /// Milliseconds since [`ClientMemory::started`] of the last read or
    /// write on the socket.
    last_io_ms: AtomicU64,
    /// A request is being served (not idle, however long it takes).
    busy: AtomicBool,
    evict: AtomicBool,
    /// What it held when marked (counted in the registry's `doomed`).
    doomed_bytes: AtomicUsize,
    evicted: Notify,
    registry: Arc<ClientMemory>,
}

impl ClientMemory {
    /// A registry bounding the total at `limit` bytes (0: unbounded).
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            limit,
            total: AtomicUsize::new(0),
            clients: Mutex::new(HashMap::new()),
            evicted: AtomicU64::new(0),
            doomed: AtomicUsize::new(0),
            started: Instant::now(),
        })
    }

    /// The bound in bytes (0: none).
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Bytes held for all clients now.
    pub fn total(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }

    /// Clients disconnected for memory since start.
    pub fn evicted(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }

    /// The largest input buffer of one client now.
    pub fn largest_input(&self) -> usize {
        self.lock()
            .values()
            .map(|c| c.input.load(Ordering::Relaxed))
            .max()
            .unwrap_or(0)
    }

    /// Registers a new client.
    pub fn register(self: &Arc<Self>, id: u64) -> Arc<ClientUsage> {
        let usage = Arc::new(ClientUsage {
            id,
            input: AtomicUsize::new(0),
            held: AtomicUsize::new(0),
            last_io_ms: AtomicU64::new(self.now_ms()),
            busy: AtomicBool::new(false),
            evict: AtomicBool::new(false),
            doomed_bytes: AtomicUsize::new(0),
            evicted: Notify::new(),
            registry: self.clone(),
        });
        self.lock().insert(id, usage.clone());
        usage
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<ClientUsage>>> {
        // A panic while holding this lock cannot leave the map half
        // updated (single inserts and removes), so a poisoned lock is
        // still usable.
        self.clients.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn add(&self, old: usize, new: usize) {
        if new > old {
            let total = self.total.fetch_add(new - old, Ordering::Relaxed) + (new - old);
            if self.limit > 0
                && total.saturating_sub(self.doomed.load(Ordering::Relaxed)) > self.limit
            {
                self.evict_over_limit();
            }
        } else if old > new {
            self.total.fetch_sub(old - new, Ordering::Relaxed);
        }
    }

    /// Marks the largest clients for disconnection until the memory of
    /// those not yet marked fits under the bound. Returns how many it
    /// marked.
    pub fn evict_over_limit(&self) -> usize {
        if self.limit == 0 {
            return 0;
        }
        // One chooser at a time; the next one sees the bytes this one
        // doomed.
        let map = self.lock();
        let mut clients: Vec<(usize, &Arc<ClientUsage>)> = map
            .values()
            .filter(|c| !c.evict.load(Ordering::Relaxed))
            .map(|c| (c.bytes(), c))
            .collect();
        // Memory of clients already marked is about to be freed.
        let mut remaining: usize = clients.iter().map(|(b, _)| *b).sum();
        if remaining <= self.limit {
            return 0;
        }
        clients.sort_unstable_by_key(|c| std::cmp::Reverse(c.0));
        let mut doomed = Vec::new();
        for (bytes, client) in clients {
            if remaining <= self.limit {
                break;
            }
            client.evict.store(true, Ordering::Relaxed);
            client.doomed_bytes.store(bytes, Ordering::Relaxed);
            self.doomed.fetch_add(bytes, Ordering::Relaxed);
            remaining = remaining.saturating_sub(bytes);
            self.evicted.fetch_add(1, Ordering::Relaxed);
            doomed.push((bytes, client.clone()));
        }
        drop(map);
        // Logged and woken after the lock is released.
        for (bytes, client) in &doomed {
            tracing::warn!(
                client = client.id,
                bytes,
                total = self.total(),
                limit = self.limit,
                "client memory over maxmemory-clients: disconnecting the largest client"
            );
            client.evicted.notify_one();
        }
        doomed.len()
    }
}

impl ClientUsage {
    /// Bytes this client holds now.
    pub fn bytes(&self) -> usize {
        self.input
            .load(Ordering::Relaxed)
            .saturating_add(self.held.load(Ordering::Relaxed))
    }

    /// Sets the bytes allocated for the input buffer.
    pub fn set_input(&self, bytes: usize) {
        let old = self.input.swap(bytes, Ordering::Relaxed);
        if old != bytes {
            self.registry.add(old, bytes);
        }
    }

    /// Sets the bytes of unanswered requests and unsent replies.
    pub fn set_held(&self, bytes: usize) {
        let old = self.held.swap(bytes, Ordering::Relaxed);
        if old != bytes {
            self.registry.add(old, bytes);
        }
    }

    /// Notes I/O on the socket (for the idle timeout).
    pub fn touch(&self) {
        self.last_io_ms
            .store(self.registry.now_ms(), Ordering::Relaxed);
    }

    /// Marks whether a request is being served: a client waiting for its
    /// reply (a write waiting on Raft, say) is not idle.
    pub fn set_busy(&self, busy: bool) {
        if !busy {
            self.touch();
        }
        self.busy.store(busy, Ordering::Relaxed);
    }

    /// Completes when this client was chosen for disconnection.
    pub async fn evicted(&self) {
        loop {
            let notified = self.evicted.notified();
            if self.evict.load(Ordering::Relaxed) {
                return;
            }
            notified.await;
        }
    }

    /// Completes when no byte was read or written and no request was
    /// being served for `timeout`; never when `timeout` is zero.
    pub async fn idle(&self, timeout: Duration) {
        if timeout.is_zero() {
            return std::future::pending().await;
        }
        let limit = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        loop {
            let idle = if self.busy.load(Ordering::Relaxed) {
                0
            } else {
                self.registry
                    .now_ms()
                    .saturating_sub(self.last_io_ms.load(Ordering::Relaxed))
            };
            if idle >= limit {
                return;
            }
            tokio::time::sleep(Duration::from_millis(limit - idle)).await;
        }
    }
}

/// Removes a client from the registry when its connection ends and
/// subtracts what it held. (A codec that outlives it can still report, but
/// nothing reads a closed connection's socket.)
#[derive(Debug)]
pub struct Registration(pub Arc<ClientUsage>);

impl Drop for Registration {
    fn drop(&mut self) {
        let usage = &self.0;
        usage.set_input(0);
        usage.set_held(0);
        usage.registry.lock().remove(&usage.id);
        let doomed = usage.doomed_bytes.swap(0, Ordering::Relaxed);
        usage.registry.doomed.fetch_sub(doomed, Ordering::Relaxed);
    }
}

/// [`ServerCodec`] reporting the input buffer's allocation and socket
/// activity to the client's [`ClientUsage`] after every read.
#[derive(Debug)]
pub struct MeteredCodec {
    inner: ServerCodec,
    usage: Arc<ClientUsage>,
    /// The largest input buffer seen since the connection last released
    /// it. A buffer's `capacity()` shrinks as requests are split off the
    /// front while its allocation stays, so the peak is what is reported.
    peak: usize,
}

impl MeteredCodec {
    /// Wraps `inner`.
    pub fn new(inner: ServerCodec, usage: Arc<ClientUsage>) -> Self {
        Self {
            inner,
            usage,
            peak: 0,
        }
    }

    /// The peak input buffer reported.
    pub fn peak(&self) -> usize {
        self.peak
    }

    /// The connection replaced its input buffer with a small one.
    pub fn released(&mut self, capacity: usize) {
        self.peak = capacity;
        self.usage.set_input(capacity);
    }

    fn observe(&mut self, capacity: usize) {
        self.peak = self.peak.max(capacity);
        self.usage.set_input(self.peak);
    }

    /// The wrapped codec.
    pub fn inner_mut(&mut self) -> &mut ServerCodec {
        &mut self.inner
    }
}

impl Decoder for MeteredCodec {
    type Item = Request;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Request>, CodecError> {
        self.observe(src.capacity());
        let result = self.inner.decode(src);
        self.usage.touch();
        result
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Request>, CodecError> {
        self.observe(src.capacity());
        self.inner.decode_eof(src)
    }
}

impl Encoder<Frame> for MeteredCodec {
    type Error = CodecError;

    fn encode(&mut self, item: Frame, dst: &mut BytesMut) -> Result<(), CodecError> {
        // Activity on the way out is noted by the connection, which marks
        // itself not busy (touching the clock) before every reply it feeds.
        self.inner.encode(item, dst)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn totals_follow_every_client_and_drop_with_it() {
        let mem = ClientMemory::new(0);
        let a = Registration(mem.register(1));
        let b = Registration(mem.register(2));
        a.0.set_input(100);
        a.0.set_held(50);
        b.0.set_input(10);
        assert_eq!(mem.total(), 160);
        assert_eq!(mem.largest_input(), 100);
        a.0.set_input(20);
        assert_eq!(mem.total(), 80);
        drop(a);
        assert_eq!(mem.total(), 10);
        drop(b);
        assert_eq!(mem.total(), 0);
    }

    #[test]
    fn largest_clients_are_evicted_until_the_rest_fit() {
        let mem = ClientMemory::new(1000);
        let clients: Vec<_> = (1..=5).map(|id| Registration(mem.register(id))).collect();
        // 100 + 200 + 300 + 400 fit a bound of 1000; the report that
        // takes the total past it dooms the largest clients until the
        // rest fit.
        for (i, c) in clients.iter().take(4).enumerate() {
            c.0.set_input((i + 1) * 100);
        }
        assert_eq!(mem.evicted(), 0);
        clients[4].0.set_held(250);
        clients[1].0.set_input(700);
        // 100 + 700 + 300 + 400 + 250 = 1750: the 700 and the 400 go.
        let marked = |clients: &[Registration]| -> Vec<u64> {
            clients
                .iter()
                .filter(|c| c.0.evict.load(Ordering::Relaxed))
                .map(|c| c.0.id)
                .collect()
        };
        assert_eq!(marked(&clients), vec![2, 4]);
        assert_eq!(mem.evicted(), 2);
        // Until they are gone their memory counts as freed: growth that
        // still fits dooms nobody else, and nothing is over.
        clients[0].0.set_input(150);
        assert_eq!(mem.evict_over_limit(), 0);
        assert_eq!(mem.evicted(), 2);
        // Once gone, their bytes leave both the total and the doomed sum.
        let mut clients = clients;
        clients.remove(3);
        clients.remove(1);
        assert_eq!(mem.total(), 150 + 300 + 250);
        assert_eq!(mem.doomed.load(Ordering::Relaxed), 0);
        // Growth past the bound again dooms the largest of the rest.
        clients[1].0.set_input(900);
        assert_eq!(marked(&clients), vec![3]);
    }

    #[test]
    fn no_bound_evicts_nobody() {
        let mem = ClientMemory::new(0);
        let c = Registration(mem.register(1));
        c.0.set_input(usize::MAX / 2);
        assert_eq!(mem.evict_over_limit(), 0);
    }

    #[tokio::test]
    async fn an_evicted_client_is_woken_even_if_it_was_not_waiting() {
        let mem = ClientMemory::new(10);
        let c = Registration(mem.register(1));
        c.0.set_input(11);
        assert_eq!(mem.evicted(), 1);
        // Marked before anyone waited: the wait completes at once.
        tokio::time::timeout(Duration::from_secs(5), c.0.evicted())
            .await
            .expect("evicted() completes for a marked client");
    }

    #[tokio::test]
    async fn idle_completes_after_the_timeout_without_io_and_never_when_off() {
        let mem = ClientMemory::new(0);
        let c = Registration(mem.register(1));
        tokio::time::timeout(Duration::from_secs(10), c.0.idle(Duration::from_millis(50)))
            .await
            .expect("an idle client times out");
        c.0.set_busy(true);
        let busy = c.0.idle(Duration::from_millis(20));
        tokio::pin!(busy);
        assert!(
            tokio::time::timeout(Duration::from_millis(200), busy.as_mut())
                .await
                .is_err(),
            "a client being served is not idle"
        );
        c.0.set_busy(false);
        tokio::time::timeout(Duration::from_secs(10), busy)
            .await
            .expect("idle again once served");
        let off = c.0.idle(Duration::ZERO);
        tokio::pin!(off);
        assert!(futures::poll!(off.as_mut()).is_pending());
    }
}
