//! A DHT module as `voidmesh dht` runs it: overlay node, API server and the job that
//! joins the network through the configured bootstrappers.

use super::{bind_api, resolve_all};
use crate::api;
use crate::config::DhtConfig;
use crate::dht::{BootstrapError, DhtHandle, DhtNode};
use crate::socket::P2pSockets;
use crate::NodeError;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use voidmesh_net::Identity;
use voidmesh_proto::NodeId;

/// A running DHT module: peers reach it on `p2p_addr`, clients on `api_addr`.
pub struct DhtService {
    node: DhtNode,
    api_addr: SocketAddr,
    shutdown: CancellationToken,
    api_task: JoinHandle<()>,
    join_task: JoinHandle<()>,
}

impl DhtService {
    /// Binds both addresses and starts serving; joining the network through
    /// `config.bootstrappers` goes on in the background (retried until one answers).
    ///
    /// # Errors
    /// [`NodeError::Bind`] when an address cannot be bound.
    ///
    /// With `data_dir`, records and routing contacts persist there (see
    /// [`DhtNode::start`]).
    pub async fn start(
        identity: &Identity,
        config: &DhtConfig,
        data_dir: Option<&Path>,
    ) -> Result<DhtService, NodeError> {
        Self::start_with(identity, config, data_dir, &P2pSockets::new()).await
    }

    /// Like [`start`](Self::start), with the peer socket from `sockets`: shared with the
    /// other modules of the process that name the same address.
    ///
    /// # Errors
    /// As [`start`](Self::start).
    pub async fn start_with(
        identity: &Identity,
        config: &DhtConfig,
        data_dir: Option<&Path>,
        sockets: &P2pSockets,
    ) -> Result<DhtService, NodeError> {
        let (listener, api_addr) = bind_api("DHT API", config.api_address)?;
        let socket = sockets.bind(
            "DHT overlay",
            identity,
            config.p2p_address,
            DhtNode::overlay_config(&config.kad),
        )?;
        let node = DhtNode::start_on(identity, &socket, config.kad.clone(), data_dir)?;
        // Remembered contacts make the node independent of any one bootstrapper.
        let mut peers = config.bootstrappers.clone();
        peers.extend(
            node.remembered_contacts()
                .iter()
                .map(|c| c.addr.to_string()),
        );
        let shutdown = CancellationToken::new();
        let handle = node.handle();
        let timeouts = config.api_timeouts;
        let permits = api::dht::get_permits();
        let api_task = api::server::spawn_on_api_thread(
            listener,
            config.max_api_connections,
            shutdown.clone(),
            move |stream, peer, slot| {
                let permits = permits.clone();
                api::dht::handle_connection(stream, peer, handle.clone(), timeouts, permits, slot)
            },
        );
        let join_task = tokio::spawn(join_network(node.handle(), peers, shutdown.clone()));
        tracing::info!(
            node_id = %node.node_id(),
            p2p = %node.p2p_addr(),
            api = %api_addr,
            "DHT module running"
        );
        Ok(DhtService {
            node,
            api_addr,
            shutdown,
            api_task,
            join_task,
        })
    }

    /// How many contacts were remembered from the last run (and are tried like
    /// bootstrappers).
    pub fn remembered_contacts(&self) -> usize {
        self.node.remembered_contacts().len()
    }

    /// A handle to the DHT.
    pub fn handle(&self) -> DhtHandle {
        self.node.handle()
    }

    /// Where API clients connect.
    pub fn api_addr(&self) -> SocketAddr {
        self.api_addr
    }

    /// Where peers connect.
    pub fn p2p_addr(&self) -> SocketAddr {
        self.node.p2p_addr()
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.node.node_id()
    }

    /// Stops accepting clients, lets open connections end, stops the node.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        self.join_task.abort();
        let _ = self.api_task.await;
        self.node.shutdown().await;
    }
}

/// Resolves the bootstrappers and joins through them, retrying with backoff until one
/// answers. Nothing to do for the first node of a network.
async fn join_network(dht: DhtHandle, bootstrappers: Vec<String>, shutdown: CancellationToken) {
    if bootstrappers.is_empty() {
        tracing::info!("no bootstrapper configured: starting a new network");
        return;
    }
    let mut backoff = Duration::from_secs(1);
    loop {
        match joined(dht.bootstrap(resolve_all(&bootstrappers).await).await) {
            Ok(contacts) => {
                tracing::info!(contacts, "joined the network");
                return;
            }
            Err(reason) => tracing::warn!("joining failed: {reason}; retrying in {backoff:?}"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(60));
    }
}

/// Whether a bootstrap made this node part of the network: it must have answered and
/// left at least one contact. None means every peer that answered refused this node
/// (ERROR 403 for the id puzzle, 429 for the rate limit) or knew nobody, so the join is
/// tried again rather than reported done.
fn joined(outcome: Result<usize, BootstrapError>) -> Result<usize, String> {
    match outcome {
        Ok(0) => Err(
            "the bootstrappers answered but took this node into no routing \
                      table (refused: id puzzle or rate limit?)"
                .into(),
        ),
        Ok(contacts) => Ok(contacts),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_join_that_leaves_no_contact_is_not_a_join() {
        assert!(joined(Ok(0)).unwrap_err().contains("refused"));
        assert_eq!(joined(Ok(3)), Ok(3));
        assert!(joined(Err(BootstrapError::NoPeerAnswered)).is_err());
    }
}
