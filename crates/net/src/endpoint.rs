//! The QUIC endpoint: one UDP socket that both accepts and dials, a cache of live
//! connections by node id, and one stream per message.
//!
//! # Tasks
//! - the accept loop takes incoming connections and spawns one task per connection;
//! - a dial task per (address, attempt) makes the handshake once, however many requests
//!   wait for it, and then serves the connection;
//! - a connection task accepts the peer's streams (on connections either side opened)
//!   and spawns one short task per stream; when the connection ends it leaves the cache.
//!
//! Tasks hold the shared state, never the [`Endpoint`] handle: dropping the last handle
//! closes the quinn endpoint, every connection ends, and the tasks finish.
//!
//! # Protocols on one socket
//! One quinn endpoint can serve several protocols (the DHT, gossip and the chat when
//! their addresses are the same): [`Endpoint::add_protocol`] gives each its own ALPN,
//! connection cache and inbound channel. Incoming connections go to the protocol their
//! handshake chose; the quinn endpoint closes with the last protocol.

use crate::cache::{canonical, remote, Cache};
use crate::frame::{self, code, read_frame, read_frame_counted};
use crate::tls::{self, peer_key, peer_node_id, SERVER_NAME};
use crate::{EndpointConfig, Identity, Inbound, NetError, Responder, Response};
use bytes::Bytes;
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::timeout;
use tracing::{debug, trace, warn};
use voidmesh_proto::{NodeId, PublicKey, PEER_HEADER_LEN};

/// Capacity of the inbound message channel. A stream takes a place in it only once its
/// frame has fully arrived (the bytes still arriving count against [`ARRIVING_BYTES`]),
/// so a stream that sends nothing holds no place. When it is full, read frames wait and
/// further streams are not accepted, so peers run out of stream credit and wait, rather
/// than anything queueing without bound (at most [`MAX_REQUESTS_PER_CONNECTION`] +
/// [`MAX_ONE_WAY_PER_CONNECTION`] streams per connection, each for at most the request
/// timeout).
pub const INBOUND_QUEUE: usize = 4096;
/// Most concurrent requests (bidirectional streams) a peer may have open on one
/// connection; more wait for a slot. quinn keeps per-connection state for every allowed
/// stream, so this is kept small: at 256 a connection end costs about 65 KB, at 32 about
/// 34 KB.
pub const MAX_REQUESTS_PER_CONNECTION: u32 = 32;
/// Most concurrent one-way messages (unidirectional streams) per connection.
pub const MAX_ONE_WAY_PER_CONNECTION: u32 = 16;
/// Default of [`Endpoint::set_max_connections`].
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

/// A cloneable handle to a QUIC endpoint; the endpoint closes when the last handle drops
/// or on [`Endpoint::close`].
#[derive(Clone)]
pub struct Endpoint {
    /// Shared by all clones; its `Drop` closes the endpoint.
    handle: Arc<Handle>,
}

/// Owned only by [`Endpoint`] clones, so that its drop means "no handle is left".
struct Handle {
    /// The state the background tasks share.
    shared: Arc<Shared>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.close();
    }
}

/// What the protocols on one quinn endpoint share.
struct Base {
    /// The quinn endpoint (server and client on one socket).
    endpoint: quinn::Endpoint,
    /// The hostkey, for the TLS configs of protocols added later.
    identity: Identity,
    /// Our own node id; connections to it are never cached, and it breaks ties between
    /// two connections to the same peer.
    local_id: NodeId,
    /// The bound address, read once.
    local_addr: SocketAddr,
    /// The protocols served; an entry leaves when its protocol closes.
    protocols: Mutex<Vec<(Vec<u8>, Weak<Shared>)>>,
    /// Bytes of peers' frames still arriving, at most [`ARRIVING_BYTES`] (one permit a
    /// byte): what stalled or slow streams can make this socket hold.
    arriving: Arc<tokio::sync::Semaphore>,
}

/// Bytes of incoming frames being read at once on one socket, all peers together. A
/// stream holds permits only for bytes it sent, until its frame is complete (then the
/// bytes go to the inbound queue) or its deadline passes.
pub const ARRIVING_BYTES: usize = 16 << 20;

/// State of one protocol, shared by its handles and its background tasks.
struct Shared {
    /// The socket's endpoint and the other protocols on it.
    base: Arc<Base>,
    /// How this protocol dials (its ALPN).
    client_config: quinn::ClientConfig,
    /// Our own node id (the base's, copied for the hot paths).
    local_id: NodeId,
    /// The bound address (the base's).
    local_addr: SocketAddr,
    /// Limits and timeouts.
    config: EndpointConfig,
    /// Where inbound messages go.
    inbound: mpsc::Sender<Inbound>,
    /// Live connections by node id, address hints and dials in progress.
    cache: Mutex<Cache>,
    /// Set by [`Shared::close`]; no new dials after it.
    closed: AtomicBool,
    /// Soft limit on cached connections (see [`Endpoint::set_max_connections`]).
    max_connections: AtomicUsize,
}

/// Outcome of a dial, shared by every request that waited for it.
pub(crate) type DialResult = Result<(quinn::Connection, NodeId), DialFailure>;

/// Why a dial failed, cloneable so that every waiter gets it.
#[derive(Debug, Clone)]
pub(crate) enum DialFailure {
    /// No connection (unreachable, refused, reset).
    Connect(String),
    /// The handshake failed.
    Handshake(String),
    /// The handshake did not finish within the request timeout.
    Timeout,
    /// The endpoint was closed.
    Closed,
}

impl DialFailure {
    /// The error a waiter returns.
    fn into_error(self, addr: SocketAddr) -> NetError {
        match self {
            DialFailure::Connect(reason) => NetError::Connect { addr, reason },
            DialFailure::Handshake(reason) => NetError::Handshake { addr, reason },
            DialFailure::Timeout => NetError::Timeout,
            DialFailure::Closed => NetError::Closed,
        }
    }
}

impl Endpoint {
    /// Binds a UDP socket at `addr` and starts accepting peers. Inbound messages arrive on
    /// the returned channel.
    ///
    /// Must be called inside a tokio runtime.
    ///
    /// # Errors
    /// [`NetError::Config`] for unusable settings, [`NetError::Io`] if the socket cannot be
    /// bound or there is no runtime, [`NetError::Tls`] if the TLS setup fails.
    pub fn bind(
        identity: &Identity,
        addr: SocketAddr,
        config: EndpointConfig,
    ) -> Result<(Endpoint, mpsc::Receiver<Inbound>), NetError> {
        let socket = std::net::UdpSocket::bind(addr)?;
        enlarge_receive_buffer(&socket);
        Self::start(identity, Socket::Own(socket), config)
    }

    /// Like [`bind`](Self::bind), on a socket shared with the datagram overlay
    /// ([`crate::overlay::Overlay::quic_socket`]): QUIC uses the overlay's port.
    ///
    /// # Errors
    /// As [`bind`](Self::bind).
    pub fn bind_on(
        identity: &Identity,
        socket: Arc<dyn quinn::AsyncUdpSocket>,
        config: EndpointConfig,
    ) -> Result<(Endpoint, mpsc::Receiver<Inbound>), NetError> {
        Self::start(identity, Socket::Shared(socket), config)
    }

    fn start(
        identity: &Identity,
        socket: Socket,
        config: EndpointConfig,
    ) -> Result<(Endpoint, mpsc::Receiver<Inbound>), NetError> {
        // Checked first, so that a refused config leaves no socket behind.
        transport_config(&config)?;
        StreamSocket::start(identity, socket)?.add(config)
    }

    /// Serves one more protocol on this endpoint's socket, with its own ALPN, limits,
    /// connection cache and inbound channel. Peers dialing with that ALPN reach it; the
    /// socket closes when every protocol on it is closed.
    ///
    /// # Errors
    /// [`NetError::Config`] for unusable settings or an ALPN already served here,
    /// [`NetError::Tls`] if the TLS setup fails.
    pub fn add_protocol(
        &self,
        config: EndpointConfig,
    ) -> Result<(Endpoint, mpsc::Receiver<Inbound>), NetError> {
        self.handle.shared.base.add(config)
    }

    /// The bound address (with the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.handle.shared.local_addr
    }

    /// This endpoint's node id.
    pub fn node_id(&self) -> NodeId {
        self.handle.shared.local_id
    }

    /// Sends a request to `to` and waits for the reply. With `expect`, the peer must prove
    /// that id; without, its id is learned from the handshake.
    ///
    /// A live connection to the peer is reused, whichever side opened it; otherwise one is
    /// dialed (concurrent requests share the handshake). The whole exchange, dial included,
    /// is bounded by `request_timeout`. If a reused connection turns out to be dead, the
    /// request is sent once more on a fresh connection.
    ///
    /// # Errors
    /// [`NetError::Timeout`], [`NetError::WrongPeer`] (nothing was sent),
    /// [`NetError::Connect`], [`NetError::Handshake`], [`NetError::MessageTooLarge`] and
    /// [`NetError::Malformed`] (for `message` before sending, or the reply),
    /// [`NetError::NoReply`], [`NetError::Stream`], [`NetError::ConnectionLost`],
    /// [`NetError::Closed`].
    pub async fn request(
        &self,
        to: SocketAddr,
        expect: Option<NodeId>,
        message: Bytes,
    ) -> Result<Response, NetError> {
        let shared = &self.handle.shared;
        frame::check_outgoing(&message, shared.config.max_message_size)?;
        match timeout(
            shared.config.request_timeout,
            shared.request(to, expect, message),
        )
        .await
        {
            Ok(result) => result,
            Err(_) => Err(NetError::Timeout),
        }
    }

    /// Sends a one-way message (no reply).
    ///
    /// Returns the receiver's proved id once the message is handed to QUIC (written and the
    /// stream finished); QUIC then delivers it reliably unless the connection breaks.
    ///
    /// # Errors
    /// As [`Endpoint::request`], except those about the reply.
    pub async fn send(
        &self,
        to: SocketAddr,
        expect: Option<NodeId>,
        message: Bytes,
    ) -> Result<NodeId, NetError> {
        let shared = &self.handle.shared;
        frame::check_outgoing(&message, shared.config.max_message_size)?;
        match timeout(
            shared.config.request_timeout,
            shared.send(to, expect, message),
        )
        .await
        {
            Ok(result) => result,
            Err(_) => Err(NetError::Timeout),
        }
    }

    /// Number of open QUIC connections on the socket, every protocol on it counted (both
    /// directions, handshakes in progress and connections still draining included). With
    /// connection reuse this is at most one per peer and protocol, barring simultaneous
    /// first dials.
    pub fn connection_count(&self) -> usize {
        self.handle.shared.base.endpoint.open_connections()
    }

    /// Sets the soft limit on connections kept open ([`DEFAULT_MAX_CONNECTIONS`] by default).
    ///
    /// Each open connection costs about 34 KB (mostly quinn's per-connection state). When a
    /// new connection takes the count above `max`, the least recently used connections that
    /// have carried no request either way for `request_timeout` are closed (a request on
    /// the way when that happens is sent again on a new connection). Busy connections are
    /// never closed, so the count may stay above `max` while they are busy. Incoming
    /// connections are refused while twice `max` are open.
    pub fn set_max_connections(&self, max: usize) {
        self.handle
            .shared
            .max_connections
            .store(max.max(1), Ordering::Relaxed);
    }

    /// Whether no connection is cached (for tests).
    #[cfg(test)]
    pub(crate) fn handle_is_empty_for_tests(&self) -> bool {
        self.handle.shared.cache().is_empty()
    }

    /// Makes sure a connection to `to` exists (proving `expect` if given) and returns the
    /// peer's proved node id, without sending anything. Used to learn the id behind a
    /// bootstrap address.
    ///
    /// # Errors
    /// As [`Endpoint::request`], except those about messages.
    pub async fn connect(
        &self,
        to: SocketAddr,
        expect: Option<NodeId>,
    ) -> Result<PublicKey, NetError> {
        let shared = &self.handle.shared;
        match timeout(shared.config.request_timeout, shared.connection(to, expect)).await {
            Ok(result) => result.and_then(|(conn, _, _)| proved_key(&conn)),
            Err(_) => Err(NetError::Timeout),
        }
    }

    /// Closes the connection to `peer` (if any), e.g. because it misbehaved. A later
    /// request or incoming connection may connect again.
    pub fn disconnect(&self, peer: &NodeId) {
        let conn = self.handle.shared.cache().take(peer);
        if let Some(conn) = conn {
            conn.close(code::DISCONNECTED, b"disconnected");
        }
    }

    /// Closes every connection and the socket; later requests fail with
    /// [`NetError::Closed`] and the inbound channel ends once in-flight streams finish.
    pub fn close(&self) {
        self.handle.shared.close();
    }
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("local_addr", &self.handle.shared.local_addr)
            .field("node_id", &self.handle.shared.local_id)
            .finish_non_exhaustive()
    }
}

/// A QUIC endpoint's socket before (and beside) its protocols: what
/// [`StreamSocket::add`] adds protocols to, each an [`Endpoint`] of its own.
#[derive(Clone)]
pub struct StreamSocket {
    base: Arc<Base>,
}

impl StreamSocket {
    /// Starts a quinn endpoint on a socket shared with the datagram overlay
    /// ([`crate::overlay::Overlay::quic_socket`]), serving no protocol yet. Must be
    /// called inside a tokio runtime.
    ///
    /// # Errors
    /// [`NetError::Io`] if there is no runtime.
    pub fn bind_on(
        identity: &Identity,
        socket: Arc<dyn quinn::AsyncUdpSocket>,
    ) -> Result<StreamSocket, NetError> {
        StreamSocket::start(identity, Socket::Shared(socket))
    }

    fn start(identity: &Identity, socket: Socket) -> Result<StreamSocket, NetError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            NetError::Io(std::io::Error::other(
                "Endpoint::bind must be called inside a tokio runtime",
            ))
        })?;
        let quinn_runtime = quinn::default_runtime()
            .ok_or_else(|| NetError::Io(std::io::Error::other("no async runtime for quinn")))?;
        // A restarted node answers its old connections with a stateless reset (see
        // `RandomCids`), so peers drop them at once instead of reusing a dead connection.
        let mut quinn_config = quinn::EndpointConfig::new(tls::reset_key(identity));
        quinn_config.cid_generator(|| Box::new(RandomCids));
        // Every QUIC packet keeps the fixed bit: on a shared socket it is what tells QUIC
        // from the overlay's datagrams.
        quinn_config.grease_quic_bit(false);
        // The server config comes with the first protocol (`Base::add`).
        let endpoint = match socket {
            Socket::Own(socket) => quinn::Endpoint::new(quinn_config, None, socket, quinn_runtime)?,
            Socket::Shared(socket) => quinn::Endpoint::new_with_abstract_socket(
                quinn_config,
                None,
                socket,
                quinn_runtime,
            )?,
        };
        let local_addr = endpoint.local_addr()?;
        let base = Arc::new(Base {
            endpoint,
            identity: identity.clone(),
            local_id: identity.node_id(),
            local_addr,
            protocols: Mutex::new(Vec::new()),
            arriving: Arc::new(tokio::sync::Semaphore::new(ARRIVING_BYTES)),
        });
        runtime.spawn(accept_loop(base.clone()));
        debug!(%local_addr, id = ?identity.node_id(), "endpoint bound");
        Ok(StreamSocket { base })
    }

    /// Serves a protocol on this socket (see [`Endpoint::add_protocol`]). When the first
    /// protocol's settings are refused, the socket is closed again.
    ///
    /// # Errors
    /// As [`Endpoint::add_protocol`].
    pub fn add(
        &self,
        config: EndpointConfig,
    ) -> Result<(Endpoint, mpsc::Receiver<Inbound>), NetError> {
        let added = self.base.add(config);
        if added.is_err() && self.base.protocols().is_empty() {
            self.base.endpoint.close(code::CLOSED, b"endpoint closed");
        }
        added
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.base.local_addr
    }
}

impl std::fmt::Debug for StreamSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamSocket")
            .field("local_addr", &self.base.local_addr)
            .finish_non_exhaustive()
    }
}

/// QUIC transport settings: bounded streams and windows, the configured idle timeout.
fn transport_config(config: &EndpointConfig) -> Result<quinn::TransportConfig, NetError> {
    let bad = |what: &str| NetError::Config(what.to_owned());
    if config.alpn.is_empty() || config.alpn.len() > 255 {
        return Err(bad("alpn must be 1 to 255 bytes"));
    }
    if config.max_message_size < PEER_HEADER_LEN || config.max_message_size > u32::MAX as usize {
        return Err(bad("max_message_size must be between 6 and 2^32-1"));
    }
    if config.request_timeout.is_zero() {
        return Err(bad("request_timeout must be positive"));
    }
    let idle = quinn::IdleTimeout::try_from(config.idle_timeout)
        .map_err(|_| bad("idle_timeout is too long"))?;
    if config.idle_timeout.is_zero() {
        return Err(bad("idle_timeout must be positive"));
    }
    // One stream must be able to carry a whole message without waiting for window
    // updates; the connection window allows two at once. These bound what a peer can make
    // us buffer per connection; they are not allocated up front.
    let stream_window = (config.max_message_size as u64).max(64 * 1024);
    let conn_window = (stream_window * 2).min(u32::MAX as u64);
    // Before the first RTT sample, loss recovery waits about three initial RTTs. quinn's
    // internet default (333 ms) would let one lost handshake packet eat a whole 1 s
    // request timeout, so the guess scales with the timeout instead.
    let initial_rtt =
        (config.request_timeout / 10).clamp(Duration::from_millis(10), Duration::from_millis(333));
    let mut t = quinn::TransportConfig::default();
    // No path-MTU discovery: peer messages are small, and its probes (padded datagrams of
    // up to 1452 bytes, each parsed as a run of one-byte PADDING frames) cost a fifth of
    // a connection's CPU (docs/benchmarks.md, "QUIC handshakes"). Datagrams stay at
    // QUIC's 1200-byte minimum, which every path carries.
    t.max_concurrent_bidi_streams(MAX_REQUESTS_PER_CONNECTION.into())
        .max_concurrent_uni_streams(MAX_ONE_WAY_PER_CONNECTION.into())
        .max_idle_timeout(Some(idle))
        .keep_alive_interval(None)
        .initial_rtt(initial_rtt)
        .stream_receive_window(varint(stream_window))
        .receive_window(varint(conn_window))
        .send_window(conn_window)
        .datagram_receive_buffer_size(None)
        .crypto_buffer_size(16 * 1024)
        .mtu_discovery_config(None);
    Ok(t)
}

/// Bytes of socket receive buffer asked for: enough for bursts of handshakes when many
/// endpoints share a few cores. The kernel may grant less (`net.core.rmem_max`).
const SOCKET_RECEIVE_BUFFER: usize = 1024 * 1024;

/// Asks for a larger UDP receive buffer than the OS default, so that bursts are not
/// dropped while the endpoint's task waits for a core; best effort.
pub(crate) fn enlarge_receive_buffer(socket: &std::net::UdpSocket) {
    let state = match quinn::udp::UdpSocketState::new(socket.into()) {
        Ok(state) => state,
        Err(e) => {
            debug!(error = %e, "cannot inspect the UDP socket");
            return;
        }
    };
    let current = state.recv_buffer_size(socket.into()).unwrap_or(0);
    if current < SOCKET_RECEIVE_BUFFER {
        if let Err(e) = state.set_recv_buffer_size(socket.into(), SOCKET_RECEIVE_BUFFER) {
            debug!(error = %e, "cannot enlarge the UDP receive buffer");
        }
    }
}

/// A `VarInt` from a value known to be below 2^32.
fn varint(v: u64) -> quinn::VarInt {
    quinn::VarInt::from_u32(u32::try_from(v).unwrap_or(u32::MAX))
}

impl Shared {
    /// The cache, even if a panicking thread poisoned its lock (the map stays consistent:
    /// every update is a single insert or remove).
    fn cache(&self) -> MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Closes this protocol's connections and forgets them; the last protocol on the
    /// socket closes the quinn endpoint.
    fn close(&self) {
        if !self.closed.swap(true, Ordering::SeqCst) {
            debug!(local_addr = %self.local_addr, "endpoint closing");
            for conn in self.cache().clear() {
                conn.close(code::CLOSED, b"endpoint closed");
            }
            if self.base.remove(&self.config.alpn) == 0 {
                self.base.endpoint.close(code::CLOSED, b"endpoint closed");
            }
        }
    }

    /// A connection to `to` (proving `expect` if given): a live cached one, or the result
    /// of a dial shared with concurrent callers. The flag says whether it was reused.
    async fn connection(
        self: &Arc<Self>,
        to: SocketAddr,
        expect: Option<NodeId>,
    ) -> Result<(quinn::Connection, NodeId, bool), NetError> {
        let to = canonical(to);
        let mut rx = {
            let mut cache = self.cache();
            if self.closed.load(Ordering::SeqCst) {
                return Err(NetError::Closed);
            }
            if let Some((conn, id)) = cache.live(to, expect, Instant::now()) {
                return Ok((conn, id, true));
            }
            // Another node holds a live connection from that address: no need to dial
            // to find out that it is not the one expected.
            if let (Some(expected), Some(actual)) = (expect, cache.proved_at(to)) {
                if expected != actual {
                    return Err(NetError::WrongPeer {
                        addr: to,
                        expected,
                        actual,
                    });
                }
            }
            match cache.dial_in_progress(to) {
                Some(rx) => rx,
                None => {
                    let (tx, rx) = watch::channel(None);
                    cache.start_dial(to, rx.clone());
                    tokio::spawn(dial(self.clone(), to, tx));
                    rx
                }
            }
        };
        let outcome = match rx.wait_for(Option::is_some).await {
            Ok(done) => done.clone(),
            // The dial task ended without a result: the runtime is shutting down.
            Err(_) => Some(Err(DialFailure::Closed)),
        };
        match outcome {
            Some(Ok((conn, actual))) => match expect {
                Some(expected) if expected != actual => Err(NetError::WrongPeer {
                    addr: to,
                    expected,
                    actual,
                }),
                _ => Ok((conn, actual, false)),
            },
            Some(Err(failure)) => Err(failure.into_error(to)),
            None => Err(NetError::Closed),
        }
    }

    /// [`Endpoint::request`] without the timeout.
    async fn request(
        self: &Arc<Self>,
        to: SocketAddr,
        expect: Option<NodeId>,
        message: Bytes,
    ) -> Result<Response, NetError> {
        let (conn, from, reused) = self.connection(to, expect).await?;
        let max = self.config.max_message_size;
        let message = match exchange(&conn, message, max).await {
            Err(Retry::Stale(message)) if reused => {
                debug!(%to, peer = ?from, "cached connection was dead; dialing again");
                self.cache().forget(from, &conn);
                let (conn, from, _) = self.connection(to, expect).await?;
                let message = exchange(&conn, message, max)
                    .await
                    .map_err(Retry::into_error)?;
                let key = proved_key(&conn)?;
                return Ok(Response { from, key, message });
            }
            result => result.map_err(Retry::into_error)?,
        };
        let key = proved_key(&conn)?;
        Ok(Response { from, key, message })
    }

    /// [`Endpoint::send`] without the timeout.
    async fn send(
        self: &Arc<Self>,
        to: SocketAddr,
        expect: Option<NodeId>,
        message: Bytes,
    ) -> Result<NodeId, NetError> {
        let (conn, from, reused) = self.connection(to, expect).await?;
        match send_one_way(&conn, message).await {
            Err(Retry::Stale(message)) if reused => {
                debug!(%to, peer = ?from, "cached connection was dead; dialing again");
                self.cache().forget(from, &conn);
                let (conn, from, _) = self.connection(to, expect).await?;
                send_one_way(&conn, message)
                    .await
                    .map(|()| from)
                    .map_err(Retry::into_error)
            }
            result => result.map(|()| from).map_err(Retry::into_error),
        }
    }

    /// Puts an established connection in the cache (unless it is to ourselves), then
    /// closes idle connections above the limit.
    fn register(&self, cache: &mut Cache, conn: &quinn::Connection, peer: NodeId, outbound: bool) {
        if peer == self.local_id || self.closed.load(Ordering::SeqCst) {
            return;
        }
        let now = Instant::now();
        let tie = (outbound, self.local_id < peer);
        cache.insert(conn.clone(), peer, tie, self.config.request_timeout, now);
        let max = self.max_connections.load(Ordering::Relaxed);
        for evicted in cache.evict_idle(max, self.config.request_timeout, now) {
            trace!(peer = ?evicted.remote_address(), "closing an idle connection (limit {max})");
            evicted.close(code::EVICTED, b"idle connection evicted");
        }
    }
}

/// Why one attempt at sending failed.
enum Retry {
    /// The connection was already dead when the stream was opened, or the peer evicted
    /// it: nothing reached the peer's application, so the message may be sent again.
    Stale(Bytes),
    /// Any other failure.
    Failed(NetError),
}

impl Retry {
    /// The error to report when no retry is made.
    fn into_error(self) -> NetError {
        match self {
            Retry::Stale(_) => NetError::ConnectionLost("connection closed".to_owned()),
            Retry::Failed(e) => e,
        }
    }
}

/// One request on `conn`: open a stream, write the frame and FIN, read the reply frame.
async fn exchange(conn: &quinn::Connection, message: Bytes, max: usize) -> Result<Bytes, Retry> {
    let (mut send, mut recv) = match conn.open_bi().await {
        Ok(streams) => streams,
        Err(_) => return Err(Retry::Stale(message)),
    };
    if conn.close_reason().is_some() {
        return Err(Retry::Stale(message));
    }
    let outcome = async {
        send.write_chunk(message.clone())
            .await
            .map_err(frame::write_error)?;
        send.finish().map_err(|e| NetError::Stream(e.to_string()))?;
        read_frame(&mut recv, max).await
    };
    match outcome.await {
        Ok(reply) => Ok(reply),
        Err(_) if evicted_by_peer(conn) => Err(Retry::Stale(message)),
        Err(e) => Err(Retry::Failed(e)),
    }
}

/// One one-way message on `conn`: open a unidirectional stream, write the frame and FIN.
async fn send_one_way(conn: &quinn::Connection, message: Bytes) -> Result<(), Retry> {
    let mut send = match conn.open_uni().await {
        Ok(send) => send,
        Err(_) => return Err(Retry::Stale(message)),
    };
    if conn.close_reason().is_some() {
        return Err(Retry::Stale(message));
    }
    let outcome = match send.write_chunk(message.clone()).await {
        Ok(()) => send.finish().map_err(|e| NetError::Stream(e.to_string())),
        Err(e) => Err(frame::write_error(e)),
    };
    match outcome {
        Ok(()) => Ok(()),
        Err(_) if evicted_by_peer(conn) => Err(Retry::Stale(message)),
        Err(e) => Err(Retry::Failed(e)),
    }
}

/// Whether the peer closed `conn` because it was idle (see `Cache::evict_idle`), or
/// answered with a stateless reset (it restarted and has no state for the connection):
/// either way it discards whatever arrives, so a message in flight was not processed and
/// may be sent again.
fn evicted_by_peer(conn: &quinn::Connection) -> bool {
    matches!(
        conn.close_reason(),
        Some(quinn::ConnectionError::ApplicationClosed(close)) if close.error_code == code::EVICTED
    ) || matches!(conn.close_reason(), Some(quinn::ConnectionError::Reset))
}

/// Random connection ids of 8 bytes that are not checked on arrival (quinn's default
/// generator checks them against a key chosen at each start). A restarted node thus
/// answers packets of its earlier run's connections with a stateless reset, valid since
/// the reset key comes from the hostkey, and the peer drops the dead connection at once.
/// Reset answers are rate-limited by quinn and smaller than the packet that caused them.
struct RandomCids;

impl quinn::ConnectionIdGenerator for RandomCids {
    fn generate_cid(&mut self) -> quinn::ConnectionId {
        let bytes: [u8; 8] = rand::random();
        quinn::ConnectionId::new(&bytes)
    }

    fn cid_len(&self) -> usize {
        8
    }

    fn cid_lifetime(&self) -> Option<Duration> {
        None
    }
}

/// Dials `to`, publishes the outcome to everyone waiting, then serves the connection.
async fn dial(shared: Arc<Shared>, to: SocketAddr, tx: watch::Sender<Option<DialResult>>) {
    let result = establish(&shared, to).await;
    {
        let mut cache = shared.cache();
        cache.end_dial(to);
        if let Ok((conn, peer)) = &result {
            shared.register(&mut cache, conn, *peer, true);
        }
    }
    tx.send_replace(Some(result.clone()));
    drop(tx);
    match result {
        Ok((conn, peer)) => serve(shared, conn, peer).await,
        Err(failure) => debug!(%to, ?failure, "dial failed"),
    }
}

/// Connects and handshakes with `to`, bounded by the request timeout.
async fn establish(shared: &Shared, to: SocketAddr) -> DialResult {
    let connecting = shared
        .base
        .endpoint
        .connect_with(shared.client_config.clone(), to, SERVER_NAME)
        .map_err(|e| match e {
            quinn::ConnectError::EndpointStopping => DialFailure::Closed,
            other => DialFailure::Connect(other.to_string()),
        })?;
    let conn = match timeout(shared.config.request_timeout, connecting).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => return Err(handshake_failure(e)),
        Err(_) => return Err(DialFailure::Timeout),
    };
    match peer_node_id(&conn) {
        Some(peer) => {
            trace!(%to, ?peer, "connected");
            Ok((conn, peer))
        }
        None => {
            conn.close(code::BAD_IDENTITY, b"no usable certificate");
            Err(DialFailure::Handshake(
                "the peer presented no usable certificate".to_owned(),
            ))
        }
    }
}

/// Where an endpoint's packets go.
enum Socket {
    /// A UDP socket of its own.
    Own(std::net::UdpSocket),
    /// The datagram overlay's socket.
    Shared(Arc<dyn quinn::AsyncUdpSocket>),
}

/// The public key `conn`'s peer proved (every accepted connection has one).
fn proved_key(conn: &quinn::Connection) -> Result<PublicKey, NetError> {
    peer_key(conn).ok_or_else(|| NetError::Handshake {
        addr: conn.remote_address(),
        reason: "the peer presented no usable certificate".into(),
    })
}

/// Classifies a connection error seen during the handshake.
fn handshake_failure(e: quinn::ConnectionError) -> DialFailure {
    match e {
        quinn::ConnectionError::TransportError(_)
        | quinn::ConnectionError::ConnectionClosed(_)
        | quinn::ConnectionError::VersionMismatch => DialFailure::Handshake(e.to_string()),
        quinn::ConnectionError::LocallyClosed => DialFailure::Closed,
        other => DialFailure::Connect(other.to_string()),
    }
}

/// Accepts incoming connections until the endpoint closes.
async fn accept_loop(base: Arc<Base>) {
    while let Some(incoming) = base.endpoint.accept().await {
        let max = base.max_connections();
        if base.endpoint.open_connections() >= max.saturating_mul(2) {
            debug!(remote = %incoming.remote_address(), "too many connections; refused");
            incoming.refuse();
            continue;
        }
        tokio::spawn(accept_one(base.clone(), incoming));
    }
    debug!(local_addr = %base.local_addr, "accept loop ended");
}

/// Completes one incoming handshake, hands the connection to the protocol it chose,
/// which caches and serves it.
async fn accept_one(base: Arc<Base>, incoming: quinn::Incoming) {
    let remote = incoming.remote_address();
    let conn = match timeout(base.handshake_timeout(), incoming).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => {
            debug!(%remote, error = %e, "incoming handshake failed");
            return;
        }
        Err(_) => {
            debug!(%remote, "incoming handshake timed out");
            return;
        }
    };
    let Some(shared) = negotiated_alpn(&conn).and_then(|alpn| base.protocol(&alpn)) else {
        // The server only offers ALPNs it serves; this one closed meanwhile.
        conn.close(code::CLOSED, b"protocol closed");
        return;
    };
    let Some(peer) = peer_node_id(&conn) else {
        conn.close(code::BAD_IDENTITY, b"no usable certificate");
        return;
    };
    trace!(%remote, ?peer, "accepted");
    shared.register(&mut shared.cache(), &conn, peer, false);
    serve(shared, conn, peer).await;
}

/// The ALPN the handshake of `conn` settled on.
fn negotiated_alpn(conn: &quinn::Connection) -> Option<Vec<u8>> {
    conn.handshake_data()?
        .downcast::<quinn::crypto::rustls::HandshakeData>()
        .ok()?
        .protocol
}

impl Base {
    /// Adds a protocol (see [`Endpoint::add_protocol`]).
    fn add(
        self: &Arc<Self>,
        config: EndpointConfig,
    ) -> Result<(Endpoint, mpsc::Receiver<Inbound>), NetError> {
        let transport = Arc::new(transport_config(&config)?);
        let tls = tls::configs(&self.identity, &[config.alpn.as_slice()])?;
        let client_crypto = QuicClientConfig::try_from(tls.client)
            .map_err(|e| NetError::Tls(format!("client config: {e}")))?;
        let mut client_config = quinn::ClientConfig::new(Arc::new(client_crypto));
        client_config.transport_config(transport);
        let (tx, rx) = mpsc::channel(INBOUND_QUEUE);
        let shared = Arc::new(Shared {
            base: self.clone(),
            client_config,
            local_id: self.local_id,
            local_addr: self.local_addr,
            config,
            inbound: tx,
            cache: Mutex::new(Cache::default()),
            closed: AtomicBool::new(false),
            max_connections: AtomicUsize::new(DEFAULT_MAX_CONNECTIONS),
        });
        {
            let mut protocols = self.protocols();
            protocols.retain(|(_, p)| p.strong_count() > 0);
            if protocols
                .iter()
                .any(|(alpn, _)| *alpn == shared.config.alpn)
            {
                return Err(NetError::Config(format!(
                    "ALPN {:?} is already served on {}",
                    String::from_utf8_lossy(&shared.config.alpn),
                    self.local_addr
                )));
            }
            let mut configs: Vec<EndpointConfig> = protocols
                .iter()
                .filter_map(|(_, p)| p.upgrade().map(|p| p.config.clone()))
                .collect();
            configs.push(shared.config.clone());
            let refs: Vec<&EndpointConfig> = configs.iter().collect();
            self.endpoint
                .set_server_config(Some(server_config(&self.identity, &refs)?));
            protocols.push((shared.config.alpn.clone(), Arc::downgrade(&shared)));
        }
        Ok((
            Endpoint {
                handle: Arc::new(Handle { shared }),
            },
            rx,
        ))
    }

    fn protocols(&self) -> MutexGuard<'_, Vec<(Vec<u8>, Weak<Shared>)>> {
        // Every update is a single push, retain or remove.
        self.protocols.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The open protocol speaking `alpn`.
    fn protocol(&self, alpn: &[u8]) -> Option<Arc<Shared>> {
        self.protocols()
            .iter()
            .find(|(a, _)| a == alpn)
            .and_then(|(_, p)| p.upgrade())
            .filter(|p| !p.closed.load(Ordering::SeqCst))
    }

    /// Forgets the protocol speaking `alpn`; returns how many are left.
    fn remove(&self, alpn: &[u8]) -> usize {
        let mut protocols = self.protocols();
        protocols.retain(|(a, p)| a != alpn && p.strong_count() > 0);
        protocols.len()
    }

    /// The soft connection limit of the socket: the largest of its protocols'.
    fn max_connections(&self) -> usize {
        self.protocols()
            .iter()
            .filter_map(|(_, p)| p.upgrade())
            .map(|p| p.max_connections.load(Ordering::Relaxed))
            .max()
            .unwrap_or(DEFAULT_MAX_CONNECTIONS)
    }

    /// How long an incoming handshake may take: the longest request timeout served.
    fn handshake_timeout(&self) -> Duration {
        self.protocols()
            .iter()
            .filter_map(|(_, p)| p.upgrade())
            .map(|p| p.config.request_timeout)
            .max()
            .unwrap_or(Duration::from_secs(1))
    }
}

/// The server side of every protocol in `configs`: their ALPNs, and transport limits
/// large enough for each (the largest message, the longest idle timeout).
fn server_config(
    identity: &Identity,
    configs: &[&EndpointConfig],
) -> Result<quinn::ServerConfig, NetError> {
    let alpns: Vec<&[u8]> = configs.iter().map(|c| c.alpn.as_slice()).collect();
    let mut merged = (*configs
        .first()
        .ok_or_else(|| NetError::Config("no protocol".into()))?)
    .clone();
    for c in configs {
        merged.max_message_size = merged.max_message_size.max(c.max_message_size);
        merged.idle_timeout = merged.idle_timeout.max(c.idle_timeout);
        merged.request_timeout = merged.request_timeout.max(c.request_timeout);
    }
    let transport = Arc::new(transport_config(&merged)?);
    let tls = tls::configs(identity, &alpns)?;
    let server_crypto = QuicServerConfig::try_from(tls.server)
        .map_err(|e| NetError::Tls(format!("server config: {e}")))?;
    let mut server_config = quinn::ServerConfig::with_crypto(Arc::new(server_crypto));
    server_config.transport_config(transport);
    Ok(server_config)
}

/// Accepts the peer's streams on `conn` until it closes, then drops it from the cache.
async fn serve(shared: Arc<Shared>, conn: quinn::Connection, peer: NodeId) {
    let addr = remote(&conn);
    let Some(key) = peer_key(&conn) else {
        conn.close(code::BAD_IDENTITY, b"no usable certificate");
        return;
    };
    // Streams of this connection being served at once: until one ends, no further
    // stream is accepted, so quinn gives the peer no more stream credit (backpressure).
    let slots = Arc::new(tokio::sync::Semaphore::new(
        (MAX_REQUESTS_PER_CONNECTION + MAX_ONE_WAY_PER_CONNECTION) as usize,
    ));
    let reason = loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            break quinn::ConnectionError::LocallyClosed;
        };
        tokio::select! {
            bi = conn.accept_bi() => match bi {
                Ok((send, recv)) => {
                    shared.cache().touch(peer, &conn, Instant::now());
                    let work = handle_request(shared.clone(), (peer, key), addr, send, recv);
                    tokio::spawn(async move {
                        work.await;
                        drop(slot);
                    });
                }
                Err(e) => break e,
            },
            uni = conn.accept_uni() => match uni {
                Ok(recv) => {
                    shared.cache().touch(peer, &conn, Instant::now());
                    let work = handle_message(shared.clone(), (peer, key), addr, recv);
                    tokio::spawn(async move {
                        work.await;
                        drop(slot);
                    });
                }
                Err(e) => break e,
            },
        }
    };
    trace!(%addr, ?peer, %reason, "connection ended");
    shared.cache().forget(peer, &conn);
}

/// Refuses a stream whose frame could not be read.
fn refuse(send: Option<&mut quinn::SendStream>, recv: &mut quinn::RecvStream, error: &NetError) {
    let c = match error {
        NetError::MessageTooLarge { .. } => code::TOO_LARGE,
        _ => code::MALFORMED,
    };
    let _ = recv.stop(c);
    if let Some(send) = send {
        let _ = send.reset(c);
    }
}

/// Serves one request stream: read the frame, hand it to the application, write the reply.
/// Bounded by the request timeout (the requester gives up then anyway).
async fn handle_request(
    shared: Arc<Shared>,
    from: (NodeId, PublicKey),
    addr: SocketAddr,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
) {
    let limit = shared.config.request_timeout;
    let work = answer(&shared, from, addr, &mut send, &mut recv);
    if timeout(limit, work).await.is_err() {
        trace!(%addr, "request not answered in time");
        let _ = recv.stop(code::NO_REPLY);
        let _ = send.reset(code::NO_REPLY);
    }
}

/// The body of [`handle_request`].
async fn answer(
    shared: &Shared,
    (from, key): (NodeId, PublicKey),
    addr: SocketAddr,
    send: &mut quinn::SendStream,
    recv: &mut quinn::RecvStream,
) {
    let max = shared.config.max_message_size;
    // The frame first, counted against the socket's budget of bytes arriving: a stream
    // that sends nothing holds no slot of the inbound queue (shared by every peer).
    let (message, arriving) = match read_frame_counted(recv, max, Some(&shared.base.arriving)).await
    {
        Ok(read) => read,
        Err(error) => {
            debug!(%addr, %error, "refused a request");
            refuse(Some(send), recv, &error);
            return;
        }
    };
    // Then room in the inbound queue: while the application is behind, further streams
    // wait here, and the peer runs out of stream credit (backpressure).
    let Ok(permit) = shared.inbound.reserve().await else {
        let _ = send.reset(code::NO_REPLY);
        return;
    };
    let (tx, rx) = oneshot::channel();
    permit.send(Inbound {
        from,
        key,
        addr,
        message,
        reply: Some(Responder { tx }),
    });
    drop(arriving);
    match rx.await {
        Ok(reply) => match frame::check_outgoing(&reply, max) {
            Ok(()) => {
                if send.write_chunk(reply).await.is_ok() {
                    let _ = send.finish();
                }
            }
            Err(error) => {
                warn!(%addr, %error, "reply not sent");
                let _ = send.reset(code::NO_REPLY);
            }
        },
        Err(_) => {
            let _ = send.reset(code::NO_REPLY);
        }
    }
}

/// Serves one one-way stream: read the frame and hand it to the application.
async fn handle_message(
    shared: Arc<Shared>,
    (from, key): (NodeId, PublicKey),
    addr: SocketAddr,
    mut recv: quinn::RecvStream,
) {
    let limit: Duration = shared.config.request_timeout;
    let max = shared.config.max_message_size;
    let work = async {
        // As for requests: the frame first, then room in the queue.
        match read_frame_counted(&mut recv, max, Some(&shared.base.arriving)).await {
            Ok((message, arriving)) => {
                if let Ok(permit) = shared.inbound.reserve().await {
                    drop(arriving);
                    permit.send(Inbound {
                        from,
                        key,
                        addr,
                        message,
                        reply: None,
                    });
                }
            }
            Err(error) => {
                debug!(%addr, %error, "refused a message");
                refuse(None, &mut recv, &error);
            }
        }
    };
    if timeout(limit, work).await.is_err() {
        trace!(%addr, "one-way message not taken in time; dropped");
        let _ = recv.stop(code::NO_REPLY);
    }
}

#[cfg(test)]
mod tests {
    //! Raw streams that the public API would never produce.

    use super::*;

    fn config(request_timeout: Duration) -> EndpointConfig {
        EndpointConfig {
            alpn: b"voidmesh-test".to_vec(),
            request_timeout,
            max_message_size: 1024,
            idle_timeout: Duration::from_secs(30),
        }
    }

    /// A client endpoint with a raw connection to a fresh server, and the server's
    /// inbound channel.
    async fn raw_pair(
        request_timeout: Duration,
    ) -> (
        Endpoint,
        quinn::Connection,
        Endpoint,
        mpsc::Receiver<Inbound>,
    ) {
        let local = "127.0.0.1:0".parse().unwrap();
        let (client, _) =
            Endpoint::bind(&Identity::generate(), local, config(request_timeout)).unwrap();
        let (server, rx) =
            Endpoint::bind(&Identity::generate(), local, config(request_timeout)).unwrap();
        let (conn, _, _) = client
            .handle
            .shared
            .connection(server.local_addr(), None)
            .await
            .unwrap();
        (client, conn, server, rx)
    }

    /// Sends `bytes` as a request and returns how the server ended the reply stream.
    async fn raw_request(conn: &quinn::Connection, bytes: &[u8], fin: bool) -> quinn::ReadError {
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        send.write_all(bytes).await.unwrap();
        if fin {
            send.finish().unwrap();
        }
        match recv.read_to_end(4096).await {
            Err(quinn::ReadToEndError::Read(e)) => e,
            other => panic!("expected a reset, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_size_field_below_the_header_resets_the_stream() {
        let (_c, conn, _s, mut rx) = raw_pair(Duration::from_secs(2)).await;
        let err = raw_request(&conn, &[0, 0, 0, 3, 2, 148], true).await;
        assert!(
            matches!(err, quinn::ReadError::Reset(c) if c == code::MALFORMED),
            "{err:?}"
        );
        assert!(rx.try_recv().is_err());
    }

    #[tokio::test]
    async fn a_size_field_above_the_limit_resets_the_stream_before_reading_the_body() {
        let (_c, conn, _s, mut rx) = raw_pair(Duration::from_secs(2)).await;
        let header = [0, 0, 0x10, 0, 2, 148]; // 1 MiB declared, nothing sent after it
        let err = raw_request(&conn, &header, false).await;
        assert!(
            matches!(err, quinn::ReadError::Reset(c) if c == code::TOO_LARGE),
            "{err:?}"
        );
        assert!(rx.try_recv().is_err());
    }

    #[tokio::test]
    async fn bytes_after_the_frame_reset_the_stream() {
        let (_c, conn, _s, mut rx) = raw_pair(Duration::from_secs(2)).await;
        let err = raw_request(&conn, &[0, 0, 0, 6, 2, 148, 0xff], true).await;
        assert!(
            matches!(err, quinn::ReadError::Reset(c) if c == code::MALFORMED),
            "{err:?}"
        );
        assert!(rx.try_recv().is_err());
    }

    #[tokio::test]
    async fn a_stream_ending_inside_the_frame_resets_it() {
        let (_c, conn, _s, mut rx) = raw_pair(Duration::from_secs(2)).await;
        let err = raw_request(&conn, &[0, 0, 0, 20, 2, 148, 1, 2], true).await;
        assert!(
            matches!(err, quinn::ReadError::Reset(c) if c == code::MALFORMED),
            "{err:?}"
        );
        assert!(rx.try_recv().is_err());
    }

    #[tokio::test]
    async fn a_peer_stalling_mid_frame_is_cut_off_after_the_request_timeout() {
        let timeout = Duration::from_millis(300);
        let (client, conn, server, mut rx) = raw_pair(timeout).await;
        let start = Instant::now();
        let stalled = tokio::spawn({
            let conn = conn.clone();
            async move { raw_request(&conn, &[0, 0, 0, 100, 2, 148, 1, 2, 3], false).await }
        });
        // Meanwhile, the connection serves complete requests.
        let serve = tokio::spawn(async move {
            let inbound = rx.recv().await.unwrap();
            inbound
                .reply
                .unwrap()
                .send(Bytes::from_static(&[0, 0, 0, 6, 2, 158]));
            rx
        });
        let reply = client
            .request(
                server.local_addr(),
                None,
                Bytes::from_static(&[0, 0, 0, 6, 2, 148]),
            )
            .await
            .unwrap();
        assert_eq!(&reply.message[..], &[0, 0, 0, 6, 2, 158]);
        let err = stalled.await.unwrap();
        assert!(
            matches!(err, quinn::ReadError::Reset(c) if c == code::NO_REPLY),
            "{err:?}"
        );
        let took = start.elapsed();
        assert!(
            took >= timeout && took < timeout + Duration::from_secs(1),
            "{took:?}"
        );
        let mut rx = serve.await.unwrap();
        assert!(
            rx.try_recv().is_err(),
            "the partial frame was never delivered"
        );
    }

    #[tokio::test]
    async fn an_oversized_one_way_message_is_stopped() {
        let (_c, conn, _s, mut rx) = raw_pair(Duration::from_secs(2)).await;
        let mut send = conn.open_uni().await.unwrap();
        send.write_all(&[0, 0, 0x10, 0, 1, 248]).await.unwrap();
        let stopped = tokio::time::timeout(Duration::from_secs(5), send.stopped())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stopped, Some(code::TOO_LARGE));
        assert!(rx.try_recv().is_err());
    }

    /// The attack: more streams than the inbound queue has places, each sending two
    /// bytes of a header and then nothing. Before, each took a place before its bytes
    /// came, so honest requests waited for them to time out.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stalled_streams_hold_no_place_in_the_inbound_queue() {
        let local: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let (server, mut rx) =
            Endpoint::bind(&Identity::generate(), local, config(Duration::from_secs(3))).unwrap();
        tokio::spawn(async move {
            while let Some(message) = rx.recv().await {
                if let Some(reply) = message.reply {
                    reply.send(message.message);
                }
            }
        });
        let per_connection = MAX_REQUESTS_PER_CONNECTION as usize;
        let mut attackers = Vec::new();
        let mut clients = Vec::new();
        for _ in 0..INBOUND_QUEUE / per_connection + 2 {
            let (client, _) =
                Endpoint::bind(&Identity::generate(), local, config(Duration::from_secs(3)))
                    .unwrap();
            let (conn, _, _) = client
                .handle
                .shared
                .connection(server.local_addr(), None)
                .await
                .unwrap();
            for _ in 0..per_connection {
                let (mut send, recv) = conn.open_bi().await.unwrap();
                send.write_all(&[0, 0]).await.unwrap();
                attackers.push((send, recv));
            }
            clients.push(client);
        }
        let (honest, _) =
            Endpoint::bind(&Identity::generate(), local, config(Duration::from_secs(3))).unwrap();
        let mut message = vec![0, 0, 0, 10, 0, 1];
        message.extend_from_slice(b"ping");
        for round in 0..20 {
            let started = Instant::now();
            let reply = honest
                .request(server.local_addr(), None, Bytes::from(message.clone()))
                .await
                .unwrap_or_else(|e| panic!("round {round}: {e}"));
            assert_eq!(&reply.message[..], &message[..]);
            assert!(
                started.elapsed() < Duration::from_millis(500),
                "round {round} took {:?}",
                started.elapsed()
            );
        }
        drop((attackers, clients));
    }
}
