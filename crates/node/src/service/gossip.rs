//! A gossip module as `voidmesh gossip` runs it: overlay node, API server, and the job
//! that offers the bootstrappers, known peers and the neighbours remembered from the last
//! run ([`known_peers`]) as neighbours.

use super::{bind_api, resolve_all};
use crate::api;
use crate::config::GossipConfig;
use crate::gossip::{known_peers, GossipHandle, GossipNode};
use crate::socket::P2pSockets;
use crate::NodeError;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use voidmesh_net::Identity;
use voidmesh_proto::NodeId;

/// A running gossip module: peers reach it on `p2p_addr`, clients on `api_addr`.
pub struct GossipService {
    node: GossipNode,
    api_addr: SocketAddr,
    shutdown: CancellationToken,
    api_task: JoinHandle<()>,
    join_task: JoinHandle<()>,
    /// With a data directory: where the neighbours are remembered, and the task that
    /// writes them down now and then.
    remembering: Option<(PathBuf, JoinHandle<()>)>,
}

impl GossipService {
    /// Binds both addresses and starts serving; joining goes on in the background. With
    /// `data_dir`, the neighbours of the last run are offered too and the current ones
    /// are remembered there; without, nothing is written.
    ///
    /// # Errors
    /// [`NodeError::Bind`] when an address cannot be bound.
    pub async fn start(
        identity: &Identity,
        config: &GossipConfig,
        data_dir: Option<&Path>,
    ) -> Result<GossipService, NodeError> {
        Self::start_with(identity, config, data_dir, &P2pSockets::new()).await
    }

    /// Like [`start`](Self::start), with the peer socket from `sockets`: shared with the
    /// other modules of the process that name the same address.
    ///
    /// # Errors
    /// As [`start`](Self::start).
    pub async fn start_with(
        identity: &Identity,
        config: &GossipConfig,
        data_dir: Option<&Path>,
        sockets: &P2pSockets,
    ) -> Result<GossipService, NodeError> {
        let (listener, api_addr) = bind_api("gossip API", config.api_address)?;
        let socket = sockets.bind(
            "gossip overlay",
            identity,
            config.p2p_address,
            GossipNode::overlay_config(),
        )?;
        let node = GossipNode::start_on(identity, &socket, config.gossip.clone()).map_err(|e| {
            NodeError::Bind {
                what: "gossip overlay",
                addr: config.p2p_address,
                reason: e.to_string(),
            }
        })?;
        let shutdown = CancellationToken::new();
        let handle = node.handle();
        let read_timeout = config.api_read_timeout;
        let api_task = api::server::spawn_on_api_thread(
            listener,
            config.max_api_connections,
            shutdown.clone(),
            move |stream, peer, slot| {
                api::gossip::handle_connection(stream, peer, handle.clone(), read_timeout, slot)
            },
        );
        let mut peers = config.bootstrappers.clone();
        peers.extend(config.known_peers.iter().cloned());
        if let Some(dir) = data_dir {
            let remembered = known_peers::load(dir);
            if !remembered.is_empty() {
                tracing::info!(
                    peers = remembered.len(),
                    "offering the gossip peers of the last run"
                );
            }
            peers.extend(remembered.iter().map(SocketAddr::to_string));
        }
        let remembering = data_dir.map(|dir| {
            let task = tokio::spawn(known_peers::keep_saving(dir.to_owned(), node.handle()));
            (dir.to_owned(), task)
        });
        let join_task = tokio::spawn(offer_peers(
            node.handle(),
            peers,
            config.gossip.search_cooldown,
            shutdown.clone(),
        ));
        tracing::info!(
            node_id = %node.node_id(),
            p2p = %node.p2p_addr(),
            api = %api_addr,
            "gossip module running"
        );
        Ok(GossipService {
            node,
            api_addr,
            shutdown,
            api_task,
            join_task,
            remembering,
        })
    }

    /// A handle to the module.
    pub fn handle(&self) -> GossipHandle {
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

    /// Stops accepting clients, lets open connections end, writes the neighbours down
    /// (with a data directory), stops the node.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        self.join_task.abort();
        if let Some((dir, task)) = self.remembering {
            task.abort();
            let _ = known_peers::save_view(&dir, &self.node.handle()).await;
        }
        let _ = self.api_task.await;
        self.node.shutdown().await;
    }
}

/// Offers the configured peers until the view holds someone, then whenever it empties.
/// The state machine itself refills from them and from its neighbours' offers.
async fn offer_peers(
    gossip: GossipHandle,
    peers: Vec<String>,
    cooldown: Duration,
    shutdown: CancellationToken,
) {
    if peers.is_empty() {
        tracing::info!("no gossip bootstrapper configured: waiting for peers to join us");
        return;
    }
    loop {
        let empty = gossip.view().await.map(|v| v.is_empty()).unwrap_or(false);
        if empty {
            let addrs = resolve_all(&peers).await;
            if gossip.add_known_peers(addrs).await.is_err() {
                return;
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(cooldown) => {}
        }
    }
}
