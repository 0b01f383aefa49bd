//! The TCP listener shared by the API servers: a connection limit, accept backoff, one
//! task per connection, and shutdown on a cancellation token (mini-redis `server.rs`).
//! At the limit, a new client takes the slot of the connection idle the longest (each
//! connection says when it is idle through its [`Slot`]), so idle connections cannot
//! lock clients out.
//!
//! Every API server of a process runs on one thread of its own ([`spawn_on_api_thread`]):
//! a current-thread runtime polls connections in the order the kernel reports them
//! ready, which is the order their bytes arrived. So a PUT a client wrote on one
//! connection is read before a GET it wrote afterwards on another, and the GET sees it
//! (read-your-writes across connections). A multi-threaded runtime does not keep that
//! order: it runs the task woken last first (its LIFO slot), and its workers run side by
//! side. Like redis, one thread also serves the API without taking the overlay's
//! workers; requests that need the network wait on the DHT driver, not on this thread.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Handle;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The process' API thread (started on first use, lives as long as the process).
fn api_thread() -> &'static Handle {
    static API: OnceLock<Handle> = OnceLock::new();
    API.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("voidmesh-api".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build();
                match runtime {
                    Ok(runtime) => {
                        let _ = tx.send(Some(runtime.handle().clone()));
                        runtime.block_on(std::future::pending::<()>());
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "cannot build the API runtime");
                        let _ = tx.send(None);
                    }
                }
            })
            .ok()
            .and_then(|_| rx.recv().ok().flatten())
            // Without a thread of its own the API runs where it was started from.
            .unwrap_or_else(Handle::current)
    })
}

/// A connection's place among those served: whether it is idle, and the token that ends
/// it (at shutdown, or when a new client takes its slot).
#[derive(Debug)]
pub struct Slot {
    state: Arc<SlotState>,
    epoch: Instant,
}

#[derive(Debug)]
struct SlotState {
    /// Since when the connection has been idle, in ms after the server's epoch;
    /// `u64::MAX` while it is busy.
    idle_since_ms: AtomicU64,
    stop: CancellationToken,
}

impl Slot {
    /// Fires when the connection should close: shutdown, or its slot was given away.
    pub fn stop(&self) -> &CancellationToken {
        &self.state.stop
    }

    /// Marks the connection idle since `since` (no request in flight, nothing to write,
    /// nothing expected from it), or busy with `None`. Only idle connections give way.
    pub fn set_idle_since(&self, since: Option<Instant>) {
        let ms = match since {
            Some(t) => u64::try_from(t.saturating_duration_since(self.epoch).as_millis())
                .unwrap_or(u64::MAX - 1),
            None => u64::MAX,
        };
        self.state.idle_since_ms.store(ms, Ordering::Relaxed);
    }
}

/// The slots of the connections being served.
struct Slots {
    epoch: Instant,
    live: Vec<Weak<SlotState>>,
}

impl Slots {
    /// A slot for a connection accepted now (idle until it says otherwise).
    fn open(&mut self, stop: CancellationToken) -> Slot {
        let state = Arc::new(SlotState {
            idle_since_ms: AtomicU64::new(0),
            stop,
        });
        let slot = Slot {
            state,
            epoch: self.epoch,
        };
        slot.set_idle_since(Some(Instant::now()));
        self.live.retain(|s| s.strong_count() > 0);
        self.live.push(Arc::downgrade(&slot.state));
        slot
    }

    /// Ends the connection idle the longest; whether there was one.
    fn evict_oldest_idle(&mut self) -> bool {
        self.live.retain(|s| s.strong_count() > 0);
        let oldest = self
            .live
            .iter()
            .filter_map(Weak::upgrade)
            .filter(|s| !s.stop.is_cancelled())
            .filter(|s| s.idle_since_ms.load(Ordering::Relaxed) != u64::MAX)
            .min_by_key(|s| s.idle_since_ms.load(Ordering::Relaxed));
        match oldest {
            Some(state) => {
                state.stop.cancel();
                true
            }
            None => false,
        }
    }
}

/// Runs [`serve`] for `listener` (bound, non-blocking) on the process' API thread.
pub fn spawn_on_api_thread<H, F>(
    listener: std::net::TcpListener,
    max_connections: usize,
    shutdown: CancellationToken,
    handler: H,
) -> JoinHandle<()>
where
    H: Fn(TcpStream, SocketAddr, Slot) -> F + Send + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    api_thread().spawn(async move {
        match TcpListener::from_std(listener) {
            Ok(listener) => serve(listener, max_connections, shutdown, handler).await,
            Err(e) => tracing::error!(error = %e, "API listener unusable"),
        }
    })
}

/// Accepts connections on `listener` until `shutdown` fires, serving each with `handler`
/// in its own task; at most `max_connections` are served at once. At the limit a new
/// client ends the connection idle the longest and takes its slot; while every
/// connection is busy, new clients wait in the kernel's backlog. Returns after every
/// connection task has finished.
pub async fn serve<H, F>(
    listener: TcpListener,
    max_connections: usize,
    shutdown: CancellationToken,
    handler: H,
) where
    H: Fn(TcpStream, SocketAddr, Slot) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    let limit = Arc::new(Semaphore::new(max_connections.max(1)));
    let tasks = TaskTracker::new();
    let mut slots = Slots {
        epoch: Instant::now(),
        live: Vec::new(),
    };
    let mut backoff = Duration::from_millis(10);
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff = Duration::from_millis(10);
                let permit = match limit.clone().try_acquire_owned() {
                    Ok(permit) => permit,
                    Err(_) => {
                        if slots.evict_oldest_idle() {
                            tracing::debug!(%peer, "connection limit: the longest idle connection gives way");
                        }
                        tokio::select! {
                            _ = shutdown.cancelled() => break,
                            permit = limit.clone().acquire_owned() => match permit {
                                Ok(p) => p,
                                Err(_) => break,
                            },
                        }
                    }
                };
                let _ = stream.set_nodelay(true);
                let conn = handler(stream, peer, slots.open(shutdown.child_token()));
                tasks.spawn(async move {
                    conn.await;
                    drop(permit);
                });
            }
            Err(e) => {
                // Out of file descriptors and the like: wait, then try again.
                tracing::warn!(error = %e, "accept failed; retrying in {backoff:?}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
    tasks.close();
    tasks.wait().await;
}
