//! A whole chat peer in one process, as `voidmesh chat` runs it: the DHT module (presence,
//! lookups), the gossip module (rooms), the chat endpoint (sessions) and the engine, all
//! under one hostkey and one data directory.

use crate::engine::{self, ChatConfig, ChatUi, Parts, CHAT_ALPN};
use crate::history::History;
use crate::user::{check_name, Handle, UserKey};
use crate::ChatError;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::Path;
use std::time::Duration;
use tracing::info;
use voidmesh_net::overlay::OverlayConfig;
use voidmesh_net::{EndpointConfig, Identity};
use voidmesh_node::config::Config;
use voidmesh_node::service::{DhtService, GossipService};
use voidmesh_node::socket::P2pSockets;

/// Chat connections carrying no session close after this long; a session's connection
/// never idles, its peer being probed (see [`crate::liveness`]).
const CHAT_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// The handle user `name` has with the user key under `data_dir` (created if missing),
/// for showing it before the peer has started.
///
/// # Errors
/// [`ChatError::BadHandle`] for a bad name, [`ChatError::UserKey`].
pub fn handle_for(name: &str, data_dir: &Path) -> Result<Handle, ChatError> {
    check_name(name)?;
    let user = UserKey::load_or_create(data_dir)?;
    Ok(Handle::new(name, &user.public_key()))
}

/// A running chat peer.
pub struct ChatPeer {
    dht: DhtService,
    gossip: GossipService,
    me: Handle,
    chat_addr: SocketAddr,
}

impl ChatPeer {
    /// Starts every part for user `name` from `config` (which must have `[dht]`,
    /// `[gossip]` and `[chat]` sections) with hostkey `identity`, and returns the UI's
    /// side of the engine at once (sockets bound, nothing waited for). Presence is
    /// published once the DHT has joined; [`crate::Event::Ready`] follows.
    ///
    /// # Errors
    /// [`ChatError::Start`] (missing sections, addresses that cannot be bound),
    /// [`ChatError::BadHandle`] for a bad name, [`ChatError::UserKey`],
    /// [`ChatError::History`].
    pub async fn start(
        name: &str,
        config: &Config,
        identity: &Identity,
    ) -> Result<(ChatPeer, ChatUi), ChatError> {
        check_name(name)?;
        let start_error = |e: &dyn std::fmt::Display| ChatError::Start(e.to_string());
        let dht_config = config.require_dht().map_err(|e| start_error(&e))?;
        let gossip_config = config.require_gossip().map_err(|e| start_error(&e))?;
        let chat_section = config.chat.as_ref().ok_or_else(|| {
            ChatError::Start(format!(
                "{}: the [chat] section is missing",
                config.path.display()
            ))
        })?;
        let user = UserKey::load_or_create(&config.data_dir)?;
        let history = History::open(&config.data_dir)?;
        let me = Handle::new(name, &user.public_key());

        // Sections that name the same p2p_address share its socket.
        let sockets = P2pSockets::new();
        let dht = DhtService::start_with(identity, dht_config, Some(&config.data_dir), &sockets)
            .await
            .map_err(|e| start_error(&e))?;
        // With the data directory, rooms find the network again through the gossip
        // neighbours of the last session when every configured bootstrapper is gone.
        let gossip =
            GossipService::start_with(identity, gossip_config, Some(&config.data_dir), &sockets)
                .await
                .map_err(|e| start_error(&e))?;
        let chat_config = ChatConfig {
            republish: chat_section.presence_republish,
            presence_ttl: chat_section.presence_ttl,
            max_message_bytes: chat_section.max_message_bytes,
            request_timeout: chat_section.request_timeout,
            liveness: chat_section.liveness,
            replication: dht_config.kad.k.min(usize::from(u8::MAX)) as u8,
            ..ChatConfig::default()
        };
        let endpoint_config = EndpointConfig {
            alpn: CHAT_ALPN.to_vec(),
            request_timeout: chat_config.request_timeout,
            max_message_size: chat_config.max_message_bytes + 1024,
            idle_timeout: CHAT_IDLE_TIMEOUT,
        };
        let (endpoint, inbound) = sockets
            .bind(
                "chat",
                identity,
                chat_section.p2p_address,
                OverlayConfig::default(),
            )
            .map_err(|e| start_error(&e))?
            .streams(endpoint_config)
            .map_err(|e| {
                ChatError::Start(format!("chat address {}: {e}", chat_section.p2p_address))
            })?;
        drop(sockets);

        // The address others dial: the bound one, or for a wildcard the advertised IP.
        let toward = first_addr(&dht_config.bootstrappers);
        let advertise = |bound: SocketAddr| -> SocketAddr {
            if !bound.ip().is_unspecified() {
                return bound;
            }
            // With nothing to go by, the wildcard is published: finders then take the IP
            // the DHT knows for this node (see the engine's lookup).
            match chat_section
                .advertise_address
                .or_else(|| toward.and_then(outward_ip))
            {
                Some(ip) => SocketAddr::new(ip, bound.port()),
                None => bound,
            }
        };
        let chat_addr = advertise(endpoint.local_addr());
        let gossip_addr = advertise(gossip.p2p_addr());

        let remembered = dht.remembered_contacts() > 0;
        let expect_peers = !dht_config.bootstrappers.is_empty() || remembered;
        let ui = engine::start(
            Parts {
                user,
                name: name.to_owned(),
                dht: dht.handle(),
                gossip: gossip.handle(),
                endpoint,
                inbound,
                chat_addrs: vec![chat_addr],
                gossip_addr: Some(gossip_addr),
                history,
                expect_peers,
            },
            chat_config,
        )
        .await?;
        info!(%me, chat = %chat_addr, dht = %dht.p2p_addr(), gossip = %gossip.p2p_addr(), "chat peer running");
        Ok((
            ChatPeer {
                dht,
                gossip,
                me,
                chat_addr,
            },
            ui,
        ))
    }

    /// Our handle.
    pub fn handle(&self) -> &Handle {
        &self.me
    }

    /// The chat address published in presence.
    pub fn chat_addr(&self) -> SocketAddr {
        self.chat_addr
    }

    /// Where the DHT module listens for peers.
    pub fn dht_addr(&self) -> SocketAddr {
        self.dht.p2p_addr()
    }

    /// Where the gossip module listens for peers.
    pub fn gossip_addr(&self) -> SocketAddr {
        self.gossip.p2p_addr()
    }

    /// This peer's node id (the same for its DHT, gossip and chat endpoints).
    pub fn node_id(&self) -> voidmesh_proto::NodeId {
        self.dht.node_id()
    }

    /// The gossip module (for its view and statistics).
    pub fn gossip(&self) -> voidmesh_node::gossip::GossipHandle {
        self.gossip.handle()
    }

    /// Stops the modules (call after the engine reported [`crate::Event::Stopped`]).
    pub async fn shutdown(self) {
        self.gossip.shutdown().await;
        self.dht.shutdown().await;
    }
}

/// The first bootstrapper that parses as an address.
fn first_addr(entries: &[String]) -> Option<SocketAddr> {
    entries.iter().find_map(|e| e.parse().ok())
}

/// The local IP the system would use to reach `toward`: a UDP socket is "connected",
/// which only picks a route and sends nothing.
fn outward_ip(toward: SocketAddr) -> Option<IpAddr> {
    let bind: SocketAddr = if toward.is_ipv4() {
        "0.0.0.0:0".parse().ok()?
    } else {
        "[::]:0".parse().ok()?
    };
    let socket = UdpSocket::bind(bind).ok()?;
    socket.connect(toward).ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_unspecified()).then_some(ip)
}
