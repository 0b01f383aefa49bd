//! The gossip module as a running service: a QUIC endpoint, the gossip driver task, and a
//! cloneable [`GossipHandle`] through which API connections (and the chat) use it.

mod driver;
pub mod known_peers;

use crate::socket::P2pSocket;
use bytes::Bytes;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use voidmesh_gossip::{ClientId, Gossip};
use voidmesh_net::overlay::OverlayConfig;
use voidmesh_net::{EndpointConfig, Identity, NetError};
use voidmesh_proto::frame::MAX_PEER_MESSAGE;
use voidmesh_proto::{Contact, NodeId};

/// ALPN protocol name of the gossip overlay.
pub const GOSSIP_ALPN: &[u8] = b"voidmesh-gossip/1";

/// Notifications queued for one client, at most (the byte bounds below come first for
/// items of more than 1 KiB).
pub const CLIENT_QUEUE: usize = 1024;

/// Bytes of item data one client may have waiting (queued in the module, and on its API
/// connection until written to the socket). A client that lets more wait does not read
/// its notifications: the module drops it (the API connection closes, with a log line).
pub const CLIENT_QUEUE_BYTES: usize = 1 << 20;

/// Bytes of item data all clients of a module together may have waiting; past this,
/// notifications are dropped (and logged) until clients catch up.
pub const ALL_CLIENTS_QUEUE_BYTES: usize = 64 << 20;

/// Bytes of notification data waiting for one client, and for all of a module's.
#[derive(Debug)]
pub(crate) struct Waiting {
    client: std::sync::atomic::AtomicUsize,
    all: Arc<std::sync::atomic::AtomicUsize>,
}

impl Waiting {
    /// Counts `bytes` more, unless that would pass a bound: `Err(true)` when it passes
    /// the client's own (drop the client), `Err(false)` when it passes the module's.
    pub(crate) fn add(&self, bytes: usize) -> Result<(), bool> {
        if self.client.load(Ordering::Relaxed) + bytes > CLIENT_QUEUE_BYTES {
            return Err(true);
        }
        if self.all.load(Ordering::Relaxed) + bytes > ALL_CLIENTS_QUEUE_BYTES {
            return Err(false);
        }
        self.client.fetch_add(bytes, Ordering::Relaxed);
        self.all.fetch_add(bytes, Ordering::Relaxed);
        Ok(())
    }

    /// `bytes` no longer wait (delivered, or never queued).
    pub(crate) fn release(&self, bytes: usize) {
        let bytes = bytes.min(self.client.load(Ordering::Relaxed));
        self.client.fetch_sub(bytes, Ordering::Relaxed);
        self.all.fetch_sub(bytes, Ordering::Relaxed);
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        let left = self.client.load(Ordering::Relaxed);
        self.all.fetch_sub(left, Ordering::Relaxed);
    }
}

/// The items delivered to one client, bounded in bytes ([`CLIENT_QUEUE_BYTES`]).
pub struct Notifications {
    rx: mpsc::Receiver<Notification>,
    waiting: Arc<Waiting>,
}

impl Notifications {
    /// The next item, no longer counted as waiting; `None` once the module has stopped
    /// or dropped this client for not reading.
    pub async fn recv(&mut self) -> Option<Notification> {
        let note = self.rx.recv().await?;
        self.waiting.release(note.data.len());
        Some(note)
    }

    /// The next item, still counted as waiting until [`release`](Self::release) is
    /// called for its bytes (an API connection releases them once written).
    pub async fn recv_held(&mut self) -> Option<Notification> {
        self.rx.recv().await
    }

    /// `bytes` of items taken with [`recv_held`](Self::recv_held) no longer wait.
    pub fn release(&self, bytes: usize) {
        self.waiting.release(bytes);
    }
}

/// An item delivered to a local client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// The id its validation refers to.
    pub message_id: u16,
    /// The item's data type.
    pub data_type: u16,
    /// The item.
    pub data: Bytes,
}

/// Commands the driver accepts.
pub(crate) enum Command {
    Connect {
        client: ClientId,
        deliveries: mpsc::Sender<Notification>,
        waiting: Arc<Waiting>,
    },
    Notify {
        client: ClientId,
        data_types: std::ops::RangeInclusive<u16>,
    },
    Announce {
        client: ClientId,
        ttl: u8,
        data_type: u16,
        data: Bytes,
    },
    Validation {
        client: ClientId,
        message_id: u16,
        valid: bool,
    },
    Disconnect {
        client: ClientId,
    },
    KnownPeers {
        addrs: Vec<SocketAddr>,
    },
    View {
        reply: tokio::sync::oneshot::Sender<Vec<Contact>>,
    },
    Stats {
        reply: tokio::sync::oneshot::Sender<voidmesh_gossip::Stats>,
    },
}

/// The gossip service stopped.
#[derive(Debug, Clone, Copy, thiserror::Error, PartialEq, Eq)]
#[error("the gossip service has stopped")]
pub struct Stopped;

/// A cloneable handle to a running gossip module.
#[derive(Clone)]
pub struct GossipHandle {
    commands: mpsc::Sender<Command>,
    next_client: Arc<AtomicU64>,
    /// Bytes waiting for all clients (see [`ALL_CLIENTS_QUEUE_BYTES`]).
    all_waiting: Arc<std::sync::atomic::AtomicUsize>,
}

/// One local client of the gossip module (an API connection, or the chat). Dropping it
/// ends its registrations.
pub struct GossipClient {
    id: ClientId,
    handle: GossipHandle,
    /// Items of the registered types, in arrival order.
    pub notifications: Notifications,
}

impl GossipHandle {
    /// Registers a new local client.
    ///
    /// # Errors
    /// [`Stopped`] if the service is shutting down.
    pub async fn connect(&self) -> Result<GossipClient, Stopped> {
        let id = ClientId(self.next_client.fetch_add(1, Ordering::Relaxed));
        let (tx, rx) = mpsc::channel(CLIENT_QUEUE);
        let waiting = Arc::new(Waiting {
            client: std::sync::atomic::AtomicUsize::new(0),
            all: self.all_waiting.clone(),
        });
        self.command(Command::Connect {
            client: id,
            deliveries: tx,
            waiting: waiting.clone(),
        })
        .await?;
        Ok(GossipClient {
            id,
            handle: self.clone(),
            notifications: Notifications { rx, waiting },
        })
    }

    async fn command(&self, command: Command) -> Result<(), Stopped> {
        self.commands.send(command).await.map_err(|_| Stopped)
    }

    /// Offers peers at `addrs` (ids learned by connecting) as neighbours.
    ///
    /// # Errors
    /// [`Stopped`] if the service is shutting down.
    pub async fn add_known_peers(&self, addrs: Vec<SocketAddr>) -> Result<(), Stopped> {
        self.command(Command::KnownPeers { addrs }).await
    }

    /// The current neighbours.
    ///
    /// # Errors
    /// [`Stopped`] if the service is shutting down.
    pub async fn view(&self) -> Result<Vec<Contact>, Stopped> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.command(Command::View { reply }).await?;
        rx.await.map_err(|_| Stopped)
    }

    /// The state machine's counters (messages sent, items delivered, ...).
    ///
    /// # Errors
    /// [`Stopped`] if the service is shutting down.
    pub async fn stats(&self) -> Result<voidmesh_gossip::Stats, Stopped> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.command(Command::Stats { reply }).await?;
        rx.await.map_err(|_| Stopped)
    }
}

impl GossipClient {
    /// GOSSIP NOTIFY: deliver items of `data_type` to this client from now on.
    ///
    /// # Errors
    /// [`Stopped`] if the service is shutting down.
    pub async fn notify(&self, data_type: u16) -> Result<(), Stopped> {
        self.notify_range(data_type..=data_type).await
    }

    /// GOSSIP NOTIFY for every type in `data_types`, in one command (the chat relays
    /// every room type).
    ///
    /// # Errors
    /// [`Stopped`] if the service is shutting down.
    pub async fn notify_range(
        &self,
        data_types: std::ops::RangeInclusive<u16>,
    ) -> Result<(), Stopped> {
        self.handle
            .command(Command::Notify {
                client: self.id,
                data_types,
            })
            .await
    }

    /// GOSSIP ANNOUNCE: spread `data` (ttl 0 = the module's bound).
    ///
    /// # Errors
    /// [`Stopped`] if the service is shutting down.
    pub async fn announce(&self, ttl: u8, data_type: u16, data: Bytes) -> Result<(), Stopped> {
        self.handle
            .command(Command::Announce {
                client: self.id,
                ttl,
                data_type,
                data,
            })
            .await
    }

    /// GOSSIP VALIDATION: the verdict on a notification.
    ///
    /// # Errors
    /// [`Stopped`] if the service is shutting down.
    pub async fn validate(&self, message_id: u16, valid: bool) -> Result<(), Stopped> {
        self.handle
            .command(Command::Validation {
                client: self.id,
                message_id,
                valid,
            })
            .await
    }
}

impl Drop for GossipClient {
    fn drop(&mut self) {
        let id = self.id;
        let commands = self.handle.commands.clone();
        // Best effort: if the driver's queue is full, send from a task.
        if let Err(mpsc::error::TrySendError::Full(cmd)) =
            commands.try_send(Command::Disconnect { client: id })
        {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    let _ = commands.send(cmd).await;
                });
            }
        }
    }
}

/// Unix time in seconds, for proofs of work.
fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A running gossip node (overlay endpoint + driver task), without its API server.
pub struct GossipNode {
    handle: GossipHandle,
    node_id: NodeId,
    p2p_addr: SocketAddr,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

impl GossipNode {
    /// Binds the overlay endpoint and starts the driver.
    ///
    /// # Errors
    /// When the endpoint cannot be bound.
    pub fn start(
        identity: &Identity,
        p2p_address: SocketAddr,
        config: voidmesh_gossip::Config,
    ) -> Result<GossipNode, NetError> {
        let socket = P2pSocket::bind(identity, p2p_address, Self::overlay_config())
            .map_err(|e| NetError::Io(std::io::Error::other(e)))?;
        Self::start_on(identity, &socket, config)
    }

    /// The overlay settings gossip asks for when it binds the socket.
    pub fn overlay_config() -> OverlayConfig {
        OverlayConfig {
            request_timeout: Duration::from_secs(2),
            ..OverlayConfig::default()
        }
    }

    /// Like [`start`](Self::start), on a socket that other modules may share (gossip
    /// takes the empty requests and those of its own message types, and speaks its own
    /// ALPN).
    ///
    /// # Errors
    /// When gossip's QUIC protocol cannot be added to the socket.
    pub fn start_on(
        identity: &Identity,
        socket: &P2pSocket,
        config: voidmesh_gossip::Config,
    ) -> Result<GossipNode, NetError> {
        let net_config = EndpointConfig {
            alpn: GOSSIP_ALPN.to_vec(),
            // Bounds a send (dial included); a neighbour slower than this counts as gone.
            request_timeout: Duration::from_secs(2),
            max_message_size: MAX_PEER_MESSAGE,
            idle_timeout: Duration::from_secs(120),
        };
        let (overlay, datagrams) = socket.overlay(voidmesh_proto::gossip_msg::is_gossip_request);
        let (endpoint, inbound) = socket.streams(net_config)?;
        let p2p_addr = overlay.local_addr();
        let node_id = identity.node_id();
        let local = Contact::new(identity.public_key(), p2p_addr);
        let state = Gossip::new(
            local,
            config,
            tokio::time::Instant::now().into_std(),
            unix_secs(),
        );
        let (commands_tx, commands_rx) = mpsc::channel(4096);
        let shutdown = CancellationToken::new();
        let driver = driver::Driver::new(state, overlay, endpoint);
        let task = tokio::spawn(driver.run(commands_rx, datagrams, inbound, shutdown.clone()));
        Ok(GossipNode {
            handle: GossipHandle {
                commands: commands_tx,
                next_client: Arc::new(AtomicU64::new(1)),
                all_waiting: Arc::default(),
            },
            node_id,
            p2p_addr,
            shutdown,
            task,
        })
    }

    /// A handle for clients.
    pub fn handle(&self) -> GossipHandle {
        self.handle.clone()
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// The bound overlay address.
    pub fn p2p_addr(&self) -> SocketAddr {
        self.p2p_addr
    }

    /// Stops the driver and closes the endpoint.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        let _ = self.task.await;
    }
}
