//! Whole modules as the binary runs them: overlay node + API server + joining.

mod dht;
mod gossip;

pub use dht::DhtService;
pub use gossip::GossipService;

use crate::NodeError;
use std::net::{SocketAddr, TcpListener};

/// Binds a non-blocking API listener (for
/// [`spawn_on_api_thread`](crate::api::server::spawn_on_api_thread)), naming `what` in
/// the error.
fn bind_api(what: &'static str, addr: SocketAddr) -> Result<(TcpListener, SocketAddr), NodeError> {
    let bind_error = |e: std::io::Error| NodeError::Bind {
        what,
        addr,
        reason: e.to_string(),
    };
    let listener = TcpListener::bind(addr).map_err(bind_error)?;
    listener.set_nonblocking(true).map_err(bind_error)?;
    let local = listener.local_addr().map_err(bind_error)?;
    if !local.ip().is_loopback() {
        tracing::warn!(
            api = %local,
            "{what} listens beyond this machine and has no authentication: anyone who can reach it can use this node"
        );
    }
    Ok((listener, local))
}

/// Resolves `host:port` entries; names that do not resolve are logged and skipped.
async fn resolve_all(entries: &[String]) -> Vec<SocketAddr> {
    let mut addrs = Vec::new();
    for entry in entries {
        match tokio::net::lookup_host(entry.as_str()).await {
            Ok(found) => addrs.extend(found),
            Err(e) => tracing::warn!(peer = %entry, error = %e, "cannot resolve"),
        }
    }
    addrs
}
