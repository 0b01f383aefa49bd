//! The TCP listener shared by the API servers: a connection limit, accept backoff, one
//! task per connection, and shutdown on a cancellation token (mini-redis `server.rs`).
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
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Handle;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
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

/// Runs [`serve`] for `listener` (bound, non-blocking) on the process' API thread.
pub fn spawn_on_api_thread<H, F>(
    listener: std::net::TcpListener,
    max_connections: usize,
    shutdown: CancellationToken,
    handler: H,
) -> JoinHandle<()>
where
    H: Fn(TcpStream, SocketAddr, CancellationToken) -> F + Send + 'static,
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
/// in its own task; at most `max_connections` are served at once (the others wait in the
/// kernel's backlog). Returns after every connection task has finished.
pub async fn serve<H, F>(
    listener: TcpListener,
    max_connections: usize,
    shutdown: CancellationToken,
    handler: H,
) where
    H: Fn(TcpStream, SocketAddr, CancellationToken) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    let limit = Arc::new(Semaphore::new(max_connections));
    let tasks = TaskTracker::new();
    let mut backoff = Duration::from_millis(10);
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            permit = limit.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff = Duration::from_millis(10);
                let _ = stream.set_nodelay(true);
                let conn = handler(stream, peer, shutdown.child_token());
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
