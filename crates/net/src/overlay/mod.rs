//! One UDP socket per node: authenticated, encrypted request/response datagrams for the
//! DHT (and, sharing the socket, QUIC for what needs a stream).
//!
//! A thin driver around the sans-IO [`Codec`](crate::datagram::Codec): one task reads the
//! socket and sorts each datagram by its first byte —
//! - QUIC packets (fixed bit 0x40 set) go to the quinn endpoint built on
//!   [`Overlay::quic_socket`], so QUIC connections use the same port;
//! - probes ([`probe`]) are answered with this node's public key;
//! - everything else is opened by the codec: requests go to the application on the
//!   channel [`Overlay::bind`] (or [`Overlay::subscribe`]) returns, each with a
//!   [`Replier`]; replies complete the
//!   [`Overlay::request`] waiting for them, retries (the peer wants an address token
//!   first) send the request again once.
//!
//! Several services may share the socket (the DHT and gossip when their addresses are the
//! same): each [`Overlay::subscribe`]s to the requests whose payload it accepts (its
//! message types). The socket closes once it has no user left: every service closed and
//! the QUIC endpoint on it (if any) gone.
//!
//! Per peer this node keeps only what the codec keeps (keys, a replay window and a token:
//! a few hundred bytes, evictable); per outstanding request, a waiter. No connection.

mod probe;
mod quic_side;

use crate::datagram::{self, Codec, Kind, PeerKey, ReplyTo};
use crate::Identity;
use bytes::Bytes;
use quic_side::{Packet, QuicSide};
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use thiserror::Error;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, Notify};
use tracing::{debug, trace};
use voidmesh_proto::{Contact, PublicKey};

pub use crate::datagram::{MAX_REPLY_PAYLOAD, MAX_REQUEST_PAYLOAD};

/// Largest datagram read from the socket (bigger ones are cut and fail to open).
const RECV_BUFFER: usize = 2048;

/// How often requests sent with [`Overlay::send_request`] are checked for a resend.
const TICK: Duration = Duration::from_millis(25);

/// How often (in ticks) abandoned requests are forgotten.
const SWEEP_EVERY_TICKS: u32 = 40;

/// Bounds of the wait before a request without reply is sent once more (3 × the smoothed
/// round trip, within these).
const MIN_RESEND: Duration = Duration::from_millis(100);
const MAX_RESEND: Duration = Duration::from_millis(500);

/// Settings of an [`Overlay`].
#[derive(Debug, Clone)]
pub struct OverlayConfig {
    /// How long a request waits for its reply.
    pub request_timeout: Duration,
    /// Requests from peers queued for the application; more are dropped (the peers time
    /// out and try others).
    pub inbound_queue: usize,
}

impl Default for OverlayConfig {
    fn default() -> OverlayConfig {
        OverlayConfig {
            request_timeout: Duration::from_secs(2),
            inbound_queue: 4096,
        }
    }
}

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum OverlayError {
    /// No reply in time.
    #[error("no reply in time")]
    Timeout,
    /// The payload does not fit one datagram; use a stream.
    #[error("payload of {0} bytes does not fit a datagram")]
    TooLarge(usize),
    /// The contact's public key is not a usable Ed25519 key.
    #[error("the contact's key is unusable")]
    BadKey,
    /// The overlay was closed.
    #[error("the overlay is closed")]
    Closed,
    /// The socket refused to send.
    #[error("send failed: {0}")]
    Io(String),
    /// The codec refused to seal the request.
    #[error("cannot seal: {0}")]
    Seal(datagram::DatagramError),
}

/// A request a peer sent us.
#[derive(Debug)]
pub struct DatagramRequest {
    /// The sender: its key (proved by the datagram's tag), id and source address.
    pub from: Contact,
    /// Whether the source address proved it receives our datagrams (an address token).
    pub address_validated: bool,
    /// The request's payload (one peer frame).
    pub payload: Bytes,
    /// Sends the one reply.
    pub replier: Replier,
}

/// Answers one request. Dropping it sends nothing (the requester times out).
#[derive(Debug)]
pub struct Replier {
    shared: Arc<Shared>,
    reply_to: ReplyTo,
}

impl Replier {
    /// The largest reply that goes out as is. A larger one is replaced by a retry (the
    /// requester's address is not validated yet) or refused ([`OverlayError::TooLarge`]).
    pub fn max_reply(&self) -> usize {
        MAX_REPLY_PAYLOAD
    }

    /// Seals and sends `payload` as the reply.
    ///
    /// # Errors
    /// [`OverlayError::TooLarge`] when it does not fit one datagram (nothing is sent),
    /// [`OverlayError::Io`] when the socket refuses it.
    pub fn send(self, payload: &[u8]) -> Result<(), OverlayError> {
        if payload.len() > MAX_REPLY_PAYLOAD {
            return Err(OverlayError::TooLarge(payload.len()));
        }
        let sealed = {
            let mut state = self.shared.state();
            state
                .codec
                .seal_reply(now_us(), &self.reply_to, payload)
                .map_err(OverlayError::Seal)?
        };
        if sealed.kind == Kind::Retry {
            trace!(to = %self.reply_to.addr(), "reply larger than the request to an unvalidated address: retry sent");
        }
        self.shared
            .sender
            .send_to(&sealed.datagram, self.reply_to.addr())
            .map(|_| ())
            .map_err(|e| OverlayError::Io(e.to_string()))
    }
}

/// Counters of what the receive loop saw.
#[derive(Debug, Default)]
struct Counters {
    refused: AtomicU64,
    inbound_dropped: AtomicU64,
}

/// What a request sent with [`Overlay::send_request`] came to.
#[derive(Debug)]
pub struct Answered {
    /// The caller's ticket for the request.
    pub ticket: u64,
    /// The reply's payload, or why the request cannot be answered.
    pub outcome: Result<Vec<u8>, OverlayError>,
}

/// Where a reply goes.
enum ReplySink {
    /// To one waiting [`Overlay::request`].
    Once(oneshot::Sender<Result<Vec<u8>, OverlayError>>),
    /// To a caller's channel, tagged with its ticket ([`Overlay::send_request`]).
    Channel {
        ticket: u64,
        answers: mpsc::UnboundedSender<Answered>,
        /// When the request is forgotten.
        deadline_us: u64,
        /// When it is sent once more if no reply came (`None` once done).
        resend_at_us: Option<u64>,
    },
}

impl ReplySink {
    fn deliver(self, outcome: Result<Vec<u8>, OverlayError>) {
        match self {
            ReplySink::Once(tx) => {
                let _ = tx.send(outcome);
            }
            ReplySink::Channel {
                ticket, answers, ..
            } => {
                let _ = answers.send(Answered { ticket, outcome });
            }
        }
    }

    /// Whether nobody will take the reply any more at `now_us`.
    fn abandoned(&self, now_us: u64) -> bool {
        match self {
            ReplySink::Once(tx) => tx.is_closed(),
            ReplySink::Channel {
                answers,
                deadline_us,
                ..
            } => answers.is_closed() || now_us >= *deadline_us,
        }
    }
}

/// A request waiting for its reply.
struct Waiter {
    reply: ReplySink,
    /// When the request was sealed (for the round-trip estimate).
    sent_us: u64,
    to: PeerKey,
    addr: SocketAddr,
    payload: Bytes,
    reply_room: usize,
    retried: bool,
}

struct State {
    codec: Codec,
    /// `(when, request id)` of requests sent with [`Overlay::send_request`] that are sent
    /// once more if still unanswered then; in sending order (nearly time order).
    resends: std::collections::VecDeque<(u64, u64)>,
    /// By the codec's request id (a retry moves a waiter to a new id).
    waiting: HashMap<u64, Waiter>,
    /// Probes by nonce: where they went and who waits.
    probes: HashMap<u64, (SocketAddr, oneshot::Sender<PublicKey>)>,
}

/// One service's share of the peers' requests.
struct Route {
    /// Tells this service's requests by their payload.
    accepts: fn(&[u8]) -> bool,
    requests: mpsc::Sender<DatagramRequest>,
    /// Which [`Overlay::subscribe`] made it.
    service: u64,
}

struct Shared {
    socket: Arc<UdpSocket>,
    /// The services on the socket, asked in subscription order.
    routes: Mutex<Vec<Route>>,
    /// The last service number handed out (0: no service yet).
    services: AtomicU64,
    /// Where QUIC packets go; closed once the QUIC endpoint is gone.
    quic: mpsc::Sender<Packet>,
    /// Whether the QUIC side was handed out ([`Overlay::quic_socket`]).
    quic_taken: AtomicBool,
    /// The same socket, for sends that do not wait: a non-blocking `send_to` fails only
    /// when the kernel's buffer is full (tokio's `try_send_to` also fails until the
    /// reactor has seen the socket writable once).
    sender: std::net::UdpSocket,
    local_addr: SocketAddr,
    public_key: PublicKey,
    config: OverlayConfig,
    state: Mutex<State>,
    counters: Counters,
    closed: Notify,
    /// Smoothed round trip of answered requests, µs (0: none yet).
    srtt_us: AtomicU64,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// Whether the socket had users and has none left: no service, and no QUIC
    /// endpoint (or one that is gone).
    fn unused(&self) -> bool {
        let had_users =
            self.services.load(Ordering::Relaxed) > 0 || self.quic_taken.load(Ordering::Relaxed);
        let quic_gone = !self.quic_taken.load(Ordering::Relaxed) || self.quic.is_closed();
        had_users && quic_gone && self.routes().is_empty()
    }

    fn routes(&self) -> MutexGuard<'_, Vec<Route>> {
        // Every update is a single push or retain.
        self.routes.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Every update of the state is a single map operation or a codec call that
        // leaves the codec consistent; a panic elsewhere does not break it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The Unix time in microseconds, as the codec's freshness rules want it.
fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// A node's datagram overlay: a cloneable handle to its socket and codec.
#[derive(Clone, Debug)]
pub struct Overlay {
    shared: Arc<Shared>,
    quic: Arc<Mutex<Option<QuicSide>>>,
    /// The service this handle belongs to ([`Overlay::subscribe`]); `None` for the
    /// socket's own handle ([`Overlay::open`]).
    service: Option<u64>,
}

impl Overlay {
    /// Binds the UDP socket at `addr` and starts the receive loop. Returns the overlay and
    /// the channel of every peer request. Must be called inside a tokio runtime.
    ///
    /// # Errors
    /// When the socket cannot be bound.
    pub fn bind(
        identity: &Identity,
        addr: SocketAddr,
        config: OverlayConfig,
    ) -> std::io::Result<(Overlay, mpsc::Receiver<DatagramRequest>)> {
        Ok(Overlay::open(identity, addr, config)?.subscribe(|_| true))
    }

    /// Binds the UDP socket at `addr` for services to [`subscribe`](Self::subscribe) to.
    /// Peer requests are dropped until one does. Must be called inside a tokio runtime.
    ///
    /// # Errors
    /// When the socket cannot be bound.
    pub fn open(
        identity: &Identity,
        addr: SocketAddr,
        config: OverlayConfig,
    ) -> std::io::Result<Overlay> {
        let std_socket = std::net::UdpSocket::bind(addr)?;
        // Bursts (a lookup's answers, a join) must not overflow the kernel's queue.
        crate::endpoint::enlarge_receive_buffer(&std_socket);
        std_socket.set_nonblocking(true)?;
        let sender = std_socket.try_clone()?;
        let socket = Arc::new(UdpSocket::from_std(std_socket)?);
        let local_addr = socket.local_addr()?;
        let mut seed = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut seed);
        let codec_config = datagram::Config {
            request_timeout_us: u64::try_from(config.request_timeout.as_micros())
                .unwrap_or(u64::MAX),
            ..datagram::Config::default()
        };
        let codec = Codec::new(identity.signing_key(), seed, codec_config);
        let (quic, quic_tx) = QuicSide::new(socket.clone());
        let shared = Arc::new(Shared {
            socket,
            routes: Mutex::new(Vec::new()),
            services: AtomicU64::new(0),
            quic: quic_tx,
            quic_taken: AtomicBool::new(false),
            sender,
            local_addr,
            public_key: identity.public_key(),
            config,
            state: Mutex::new(State {
                codec,
                resends: std::collections::VecDeque::new(),
                waiting: HashMap::new(),
                probes: HashMap::new(),
            }),
            counters: Counters::default(),
            closed: Notify::new(),
            srtt_us: AtomicU64::new(0),
        });
        tokio::spawn(receive_loop(shared.clone()));
        debug!(%local_addr, "overlay socket bound");
        Ok(Overlay {
            shared,
            quic: Arc::new(Mutex::new(Some(quic))),
            service: None,
        })
    }

    /// Starts a service on this socket: the peer requests whose payload `accepts` (and
    /// no earlier service took) come on the returned channel, and the returned handle's
    /// [`close`](Self::close) ends only this service. The socket closes with the last.
    pub fn subscribe(
        &self,
        accepts: fn(&[u8]) -> bool,
    ) -> (Overlay, mpsc::Receiver<DatagramRequest>) {
        let (tx, rx) = mpsc::channel(self.shared.config.inbound_queue.max(1));
        let service = self.shared.services.fetch_add(1, Ordering::Relaxed) + 1;
        self.shared.routes().push(Route {
            accepts,
            requests: tx,
            service,
        });
        let handle = Overlay {
            shared: self.shared.clone(),
            quic: self.quic.clone(),
            service: Some(service),
        };
        (handle, rx)
    }

    /// The bound address (with the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local_addr
    }

    /// This node's public key.
    pub fn public_key(&self) -> PublicKey {
        self.shared.public_key
    }

    /// The socket a quinn endpoint can use to share this port (QUIC packets are told apart
    /// by their first byte). Available once; `None` after.
    pub fn quic_socket(&self) -> Option<Arc<dyn quinn::AsyncUdpSocket>> {
        let side = self.quic.lock().unwrap_or_else(|e| e.into_inner()).take()?;
        self.shared.quic_taken.store(true, Ordering::Relaxed);
        Some(Arc::new(side))
    }

    /// Sends `payload` to the node owning `to` at `addr` and waits for its reply (bounded
    /// by the configured request timeout). `reply_room` is the reply size to make room
    /// for on a first contact (see [`Codec::seal_request`]); 0 for small replies.
    ///
    /// # Errors
    /// See [`OverlayError`].
    pub async fn request(
        &self,
        to: &PublicKey,
        addr: SocketAddr,
        payload: Bytes,
        reply_room: usize,
    ) -> Result<Vec<u8>, OverlayError> {
        if payload.len() > MAX_REQUEST_PAYLOAD {
            return Err(OverlayError::TooLarge(payload.len()));
        }
        let peer = PeerKey::from_bytes(&to.0).map_err(|_| OverlayError::BadKey)?;
        let deadline = tokio::time::Instant::now() + self.shared.config.request_timeout;
        let first = self.send_one(&peer, addr, &payload, reply_room).await?;
        // A datagram lost is lost: if no reply comes within a few round trips, the request
        // goes once more (sealed anew, as a copy would be refused as a replay). Either
        // copy's reply completes it.
        let resend = tokio::time::sleep(self.resend_after());
        tokio::pin!(resend);
        let mut replies = vec![first];
        let mut resent = false;
        loop {
            let any_reply = futures_select_first(&mut replies);
            tokio::select! {
                outcome = any_reply => match outcome {
                    Some(result) => return result,
                    None => return Err(OverlayError::Closed),
                },
                _ = &mut resend, if !resent => {
                    resent = true;
                    if let Ok(rx) = self.send_one(&peer, addr, &payload, reply_room).await {
                        replies.push(rx);
                    }
                }
                // The waiters are swept (and the codec told) by the receive loop.
                _ = tokio::time::sleep_until(deadline) => return Err(OverlayError::Timeout),
            }
        }
    }

    /// Sends `payload` to the node owning `to` at `addr` without waiting: the reply (or
    /// why there will be none) comes on `answers` tagged with `ticket`. Nothing comes if
    /// no reply arrives within the request timeout: the caller keeps its own deadline.
    /// Unanswered after a few round trips, the request is sent once more, as
    /// [`request`](Self::request) does; a reply to either copy may come (a second one
    /// for the same ticket is for the caller to ignore).
    ///
    /// No task and no await per request: this is what a driver with many requests in
    /// flight uses.
    ///
    /// # Errors
    /// As [`request`](Self::request), at once, for what cannot be sent.
    pub fn send_request(
        &self,
        ticket: u64,
        to: &PublicKey,
        addr: SocketAddr,
        payload: Bytes,
        reply_room: usize,
        answers: &mpsc::UnboundedSender<Answered>,
    ) -> Result<(), OverlayError> {
        if payload.len() > MAX_REQUEST_PAYLOAD {
            return Err(OverlayError::TooLarge(payload.len()));
        }
        let peer = PeerKey::from_bytes(&to.0).map_err(|_| OverlayError::BadKey)?;
        let now = now_us();
        let timeout_us =
            u64::try_from(self.shared.config.request_timeout.as_micros()).unwrap_or(u64::MAX);
        // Sent again before half the timeout at the latest, so the copy has time to land.
        let resend_us = u64::try_from(self.resend_after().as_micros())
            .unwrap_or(u64::MAX)
            .min(timeout_us / 2);
        let datagram = {
            let mut state = self.shared.state();
            let sealed = state
                .codec
                .seal_request(now, &peer, &payload, reply_room)
                .map_err(OverlayError::Seal)?;
            let resend_at = now.saturating_add(resend_us);
            state.resends.push_back((resend_at, sealed.request_id));
            state.waiting.insert(
                sealed.request_id,
                Waiter {
                    reply: ReplySink::Channel {
                        ticket,
                        answers: answers.clone(),
                        deadline_us: now.saturating_add(timeout_us),
                        resend_at_us: Some(resend_at),
                    },
                    sent_us: now,
                    to: peer,
                    addr,
                    payload,
                    reply_room,
                    retried: false,
                },
            );
            sealed.datagram
        };
        self.shared
            .sender
            .send_to(&datagram, addr)
            .map(|_| ())
            .map_err(|e| OverlayError::Io(e.to_string()))
    }

    /// Seals `payload` for `peer`, registers its waiter and sends it.
    async fn send_one(
        &self,
        peer: &PeerKey,
        addr: SocketAddr,
        payload: &Bytes,
        reply_room: usize,
    ) -> Result<oneshot::Receiver<Result<Vec<u8>, OverlayError>>, OverlayError> {
        let (tx, rx) = oneshot::channel();
        let datagram = {
            let mut state = self.shared.state();
            let now = now_us();
            let sealed = state
                .codec
                .seal_request(now, peer, payload, reply_room)
                .map_err(OverlayError::Seal)?;
            state.waiting.insert(
                sealed.request_id,
                Waiter {
                    reply: ReplySink::Once(tx),
                    sent_us: now,
                    to: peer.clone(),
                    addr,
                    payload: payload.clone(),
                    reply_room,
                    retried: false,
                },
            );
            sealed.datagram
        };
        self.shared
            .socket
            .send_to(&datagram, addr)
            .await
            .map_err(|e| OverlayError::Io(e.to_string()))?;
        Ok(rx)
    }

    /// How long to wait for a reply before sending a request once more.
    fn resend_after(&self) -> Duration {
        match self.shared.srtt_us.load(Ordering::Relaxed) {
            // No round trip measured yet: wait the longest.
            0 => MAX_RESEND,
            srtt => Duration::from_micros(srtt.saturating_mul(3)).clamp(MIN_RESEND, MAX_RESEND),
        }
    }

    /// Asks `addr` which public key answers there (a claim, to be proved by an
    /// authenticated request; see [`probe`]).
    ///
    /// # Errors
    /// [`OverlayError::Timeout`], [`OverlayError::Io`].
    pub async fn probe(&self, addr: SocketAddr) -> Result<PublicKey, OverlayError> {
        let nonce: u64 = rand::random();
        let (tx, rx) = oneshot::channel();
        self.shared.state().probes.insert(nonce, (addr, tx));
        let result = async {
            self.shared
                .socket
                .send_to(&probe::probe(nonce), addr)
                .await
                .map_err(|e| OverlayError::Io(e.to_string()))?;
            match tokio::time::timeout(self.shared.config.request_timeout, rx).await {
                Ok(Ok(key)) => Ok(key),
                Ok(Err(_)) => Err(OverlayError::Closed),
                Err(_) => Err(OverlayError::Timeout),
            }
        }
        .await;
        self.shared.state().probes.remove(&nonce);
        result
    }

    /// Marks `key` as a peer whose cached state is evicted last (e.g. a routing-table
    /// contact), or not.
    pub fn set_protected(&self, key: &PublicKey, protected: bool) {
        if let Ok(peer) = PeerKey::from_bytes(&key.0) {
            let _ = self.shared.state().codec.set_protected(&peer, protected);
        }
    }

    /// Datagrams refused so far (unauthenticated, replayed, stale, malformed) and peer
    /// requests dropped because the application was behind.
    pub fn refused(&self) -> (u64, u64) {
        let c = &self.shared.counters;
        (
            c.refused.load(Ordering::Relaxed),
            c.inbound_dropped.load(Ordering::Relaxed),
        )
    }

    /// Number of peers whose keys the codec caches.
    pub fn cached_peers(&self) -> usize {
        self.shared.state().codec.peer_count()
    }

    /// Ends this handle's service. The socket's own handle ([`Overlay::open`]), or the
    /// last user of the socket (see the module doc), stops the receive loop, and waiting
    /// requests fail with [`OverlayError::Closed`].
    pub fn close(&self) {
        if let Some(service) = self.service {
            self.shared.routes().retain(|r| r.service != service);
        }
        if self.service.is_none() || self.shared.unused() {
            self.shared.closed.notify_one();
        }
    }
}

/// Reads the socket until the overlay closes (see the module doc).
async fn receive_loop(shared: Arc<Shared>) {
    let mut buf = vec![0u8; RECV_BUFFER];
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut ticks = 0u32;
    loop {
        let (len, from) = tokio::select! {
            biased;
            _ = shared.closed.notified() => break,
            received = shared.socket.recv_from(&mut buf) => match received {
                Ok(got) => got,
                Err(e) => {
                    // ICMP errors surface here on Linux (e.g. port unreachable): not fatal.
                    trace!(error = %e, "receive error");
                    continue;
                }
            },
            _ = tick.tick() => {
                resend_due(&shared);
                ticks += 1;
                if ticks.is_multiple_of(SWEEP_EVERY_TICKS) {
                    sweep_abandoned(&shared);
                }
                if shared.unused() {
                    break;
                }
                continue;
            }
        };
        let Some(datagram) = buf.get(..len) else {
            continue;
        };
        match datagram.first() {
            None => {}
            Some(b) if b & datagram::QUIC_FIXED_BIT != 0 => {
                let packet = Packet {
                    from,
                    bytes: datagram.to_vec(),
                };
                if shared.quic.try_send(packet).is_err() {
                    trace!(%from, "QUIC queue full (or no QUIC endpoint): packet dropped");
                }
            }
            Some(&probe::KIND_PROBE) => {
                if let Some(nonce) = probe::parse_probe(datagram) {
                    let reply = probe::probe_reply(nonce, &shared.public_key);
                    let _ = shared.sender.send_to(&reply, from);
                }
            }
            Some(&probe::KIND_PROBE_REPLY) => on_probe_reply(&shared, from, datagram),
            Some(_) => on_datagram(&shared, from, datagram),
        }
    }
    // Fail every waiter at once.
    let mut state = shared.state();
    state.waiting.clear();
    state.probes.clear();
    debug!(local_addr = %shared.local_addr, "overlay receive loop ended");
}

fn on_probe_reply(shared: &Shared, from: SocketAddr, datagram: &[u8]) {
    let Some((nonce, key)) = probe::parse_probe_reply(datagram) else {
        return;
    };
    let mut state = shared.state();
    // Only from the address probed.
    if state.probes.get(&nonce).is_some_and(|(to, _)| *to == from) {
        if let Some((_, tx)) = state.probes.remove(&nonce) {
            let _ = tx.send(key);
        }
    }
}

/// Opens one overlay datagram and hands it on.
fn on_datagram(shared: &Arc<Shared>, from: SocketAddr, datagram: &[u8]) {
    let now = now_us();
    let mut state = shared.state();
    let opened = match state.codec.open(now, from, datagram) {
        Ok(opened) => opened,
        Err(e) => {
            shared.counters.refused.fetch_add(1, Ordering::Relaxed);
            trace!(%from, error = %e, "datagram refused");
            return;
        }
    };
    match opened.kind {
        Kind::Request => {
            drop(state);
            let Some(reply_to) = opened.reply_to else {
                return;
            };
            let request = DatagramRequest {
                from: Contact::new(PublicKey(opened.peer.to_bytes()), from),
                address_validated: opened.address_validated,
                payload: Bytes::from(opened.payload),
                replier: Replier {
                    shared: shared.clone(),
                    reply_to,
                },
            };
            let routes = shared.routes();
            let route = routes.iter().find(|r| (r.accepts)(&request.payload));
            if route.is_none_or(|r| r.requests.try_send(request).is_err()) {
                shared
                    .counters
                    .inbound_dropped
                    .fetch_add(1, Ordering::Relaxed);
                trace!(%from, "inbound queue full (or no service for it): request dropped");
            }
        }
        Kind::Reply => {
            if let Some(waiter) = state.waiting.remove(&opened.request_id) {
                note_round_trip(shared, now.saturating_sub(waiter.sent_us));
                waiter.reply.deliver(Ok(opened.payload));
            }
        }
        Kind::Retry => {
            let Some(waiter) = state.waiting.remove(&opened.request_id) else {
                return;
            };
            if waiter.retried || waiter.reply.abandoned(now) {
                return;
            }
            // The codec now holds the peer's token: the request goes again, once.
            let sealed =
                state
                    .codec
                    .seal_request(now, &waiter.to, &waiter.payload, waiter.reply_room);
            match sealed {
                Ok(sealed) => {
                    let addr = waiter.addr;
                    state.waiting.insert(
                        sealed.request_id,
                        Waiter {
                            retried: true,
                            sent_us: now,
                            ..waiter
                        },
                    );
                    drop(state);
                    let _ = shared.sender.send_to(&sealed.datagram, addr);
                }
                Err(e) => {
                    waiter.reply.deliver(Err(OverlayError::Seal(e)));
                }
            }
        }
    }
}

/// Folds one round-trip sample into the smoothed estimate (RFC 6298's 1/8 gain).
fn note_round_trip(shared: &Shared, sample_us: u64) {
    let old = shared.srtt_us.load(Ordering::Relaxed);
    let new = if old == 0 {
        sample_us
    } else {
        (old * 7 + sample_us) / 8
    };
    shared.srtt_us.store(new.max(1), Ordering::Relaxed);
}

/// The first of several pending replies, `None` when all their senders are gone.
async fn futures_select_first(
    replies: &mut [oneshot::Receiver<Result<Vec<u8>, OverlayError>>],
) -> Option<Result<Vec<u8>, OverlayError>> {
    std::future::poll_fn(|cx| {
        let mut open = 0;
        for rx in replies.iter_mut() {
            if rx.is_terminated() {
                continue;
            }
            match std::pin::Pin::new(&mut *rx).poll(cx) {
                std::task::Poll::Ready(Ok(result)) => return std::task::Poll::Ready(Some(result)),
                std::task::Poll::Ready(Err(_)) => {}
                std::task::Poll::Pending => open += 1,
            }
        }
        if open == 0 {
            std::task::Poll::Ready(None)
        } else {
            std::task::Poll::Pending
        }
    })
    .await
}

/// Sends once more the requests of [`Overlay::send_request`] still unanswered at their
/// resend time (a reply to either copy completes them).
fn resend_due(shared: &Shared) {
    let now = now_us();
    let mut out = Vec::new();
    {
        let mut state = shared.state();
        while let Some(&(at, id)) = state.resends.front() {
            if at > now {
                break;
            }
            state.resends.pop_front();
            let Some(waiter) = state.waiting.get_mut(&id) else {
                continue; // answered, or forgotten
            };
            let ReplySink::Channel {
                ticket,
                answers,
                deadline_us,
                resend_at_us,
            } = &mut waiter.reply
            else {
                continue;
            };
            if resend_at_us.take().is_none() || answers.is_closed() || now >= *deadline_us {
                continue;
            }
            let copy = ReplySink::Channel {
                ticket: *ticket,
                answers: answers.clone(),
                deadline_us: *deadline_us,
                resend_at_us: None,
            };
            let (to, addr, payload, room) = (
                waiter.to.clone(),
                waiter.addr,
                waiter.payload.clone(),
                waiter.reply_room,
            );
            if let Ok(sealed) = state.codec.seal_request(now, &to, &payload, room) {
                state.waiting.insert(
                    sealed.request_id,
                    Waiter {
                        reply: copy,
                        sent_us: now,
                        to,
                        addr,
                        payload,
                        reply_room: room,
                        retried: false,
                    },
                );
                out.push((sealed.datagram, addr));
            }
        }
        if state.resends.capacity() > 64 && state.resends.len() * 4 < state.resends.capacity() {
            let room = state.resends.len() * 2;
            state.resends.shrink_to(room);
        }
    }
    for (datagram, addr) in out {
        let _ = shared.sender.send_to(&datagram, addr);
    }
}

/// Forgets requests whose caller gave up, and what the codec no longer needs.
fn sweep_abandoned(shared: &Shared) {
    let now = now_us();
    let mut state = shared.state();
    let abandoned: Vec<u64> = state
        .waiting
        .iter()
        .filter(|(_, w)| w.reply.abandoned(now))
        .map(|(id, _)| *id)
        .collect();
    for id in abandoned {
        state.waiting.remove(&id);
        state.codec.forget_request(id);
    }
    if state.waiting.capacity() > 64 && state.waiting.len() * 4 < state.waiting.capacity() {
        let room = state.waiting.len() * 2;
        state.waiting.shrink_to(room);
    }
    state.codec.expire(now_us());
}

#[cfg(test)]
mod tests;
