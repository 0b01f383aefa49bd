//! Sans-IO authenticated, encrypted datagrams for the one-socket overlay (issue 12).
//!
//! Pure code: no sockets, no clock reads, no unseeded randomness. The caller passes the
//! time (`now_us`, microseconds since the Unix epoch) and a 32-byte seed drawn from the
//! OS once per process; everything else is deterministic.
//!
//! # Construction (the NaCl `crypto_box` shape, as Tox's DHT packets use it)
//! - Each node's X25519 key pair is its Ed25519 hostkey read through the birational map
//!   (`SigningKey::to_scalar_bytes`, `VerifyingKey::to_montgomery`), so a contact's
//!   32-byte Ed25519 public key is all a sender needs: no handshake, no extra round trip.
//! - `shared = X25519(our secret, their public)`; refused if all zeros.
//!   `prk = HKDF-Extract(salt = "voidmesh datagram v1", shared)`;
//!   `key(A→B) = HKDF-Expand(prk, "voidmesh datagram key" || pkA || pkB, 32)` with the
//!   Ed25519 public keys as sent on the wire. One key per direction, cached per peer.
//! - XChaCha20-Poly1305 with a 24-byte nonce; the clear header is the associated data.
//!
//! # Layout (all integers big-endian)
//! | kind | bytes |
//! |---|---|
//! | request `0x11` | `kind u8 \| sender_pk [32] \| nonce [24] = counter u64 \| request_id u64 \| random [8] \| ciphertext \| tag [16]` |
//! | reply `0x12`, retry `0x13` | `kind u8 \| request_id u64 \| nonce [24] (random) \| ciphertext \| tag [16]` |
//!
//! Plaintext: `flags u8 | token [16] if flags & 1 | payload_len u16 if flags & 2 | payload
//! | zeros if flags & 2`. Flag 2 (padding) only in requests; a retry's plaintext is the
//! flags byte `0x01` and a token. The first byte always has 0x40 clear, so it never
//! looks like QUIC v1 (which always sets that bit) on a shared socket.
//!
//! The full specification and security argument are in docs/protocol.md
//! (section "Datagrams").
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod keys;
mod peers;
#[cfg(test)]
mod tests;
mod wire;

pub use keys::{Keys, PeerKey, NONCE_LEN, TAG_LEN, TOKEN_LEN};
pub use peers::REPLAY_WINDOW;
pub use wire::{
    DEFAULT_MAX_DATAGRAM, KIND_REPLY, KIND_REQUEST, KIND_RETRY, MAX_REPLY_PAYLOAD,
    MAX_REQUEST_PAYLOAD, QUIC_FIXED_BIT, REPLY_HEADER_LEN, REPLY_OVERHEAD, REQUEST_HEADER_LEN,
    REQUEST_OVERHEAD, RETRY_LEN,
};

use keys::{split_seed, AeadKey, TokenCheck, TokenMinter};
use peers::{PeerCache, ReplayVerdict};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use thiserror::Error;
use voidmesh_proto::NodeId;
use wire::{FLAG_PADDED, FLAG_TOKEN};

/// Why a datagram could not be sealed or opened.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DatagramError {
    /// The first byte has the QUIC fixed bit (0x40) set: hand it to the QUIC endpoint.
    #[error("not an overlay datagram (QUIC fixed bit set)")]
    NotDatagram,
    /// The first byte is not a kind this version knows.
    #[error("unknown datagram kind {0:#04x}")]
    UnknownKind(u8),
    /// Shorter than the smallest datagram of its kind (or empty).
    #[error("truncated datagram")]
    Truncated,
    /// The public key is not a canonical, non-weak Ed25519 point.
    #[error("unusable public key")]
    BadPublicKey,
    /// A datagram carrying our own public key as its sender.
    #[error("datagram claims to come from this node")]
    FromSelf,
    /// The request's counter is older than the freshness window.
    #[error("stale request (counter {counter} µs, now {now} µs)")]
    Stale {
        /// The sender's counter.
        counter: u64,
        /// Our clock.
        now: u64,
    },
    /// The request's counter is further ahead of our clock than the allowed skew.
    #[error("request from the future (counter {counter} µs, now {now} µs)")]
    FromFuture {
        /// The sender's counter.
        counter: u64,
        /// Our clock.
        now: u64,
    },
    /// The request's counter was already accepted from this sender, or is below its
    /// replay window.
    #[error("replayed request")]
    Replayed,
    /// The tag does not verify: wrong key, altered bytes, or a forged sender.
    #[error("datagram failed authentication")]
    Unauthenticated,
    /// The plaintext is not `flags | [token] | [len] | payload | [padding]`.
    #[error("malformed datagram body")]
    Malformed,
    /// A reply or retry whose request id is not outstanding (answered already, expired,
    /// forgotten, or never sent).
    #[error("reply to no outstanding request")]
    UnknownRequest,
    /// The datagram would exceed the configured maximum size.
    #[error("datagram of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// The size it would have.
        len: usize,
        /// The configured limit.
        max: usize,
    },
    /// [`Config::max_outstanding`] requests are awaiting replies.
    #[error("too many outstanding requests")]
    TooManyOutstanding,
}

/// Limits and windows of a [`Codec`]. All times in microseconds.
#[derive(Debug, Clone)]
pub struct Config {
    /// Most peers whose keys and replay windows are cached (about 300 bytes each plus
    /// map overhead).
    pub max_peers: usize,
    /// Most requests awaiting a reply (about 200 bytes each).
    pub max_outstanding: usize,
    /// An outstanding request is forgotten this long after it was sealed.
    pub request_timeout_us: u64,
    /// A request whose counter is older than this (against our clock) is stale.
    pub max_age_us: u64,
    /// A request whose counter is further ahead of our clock than this is refused.
    pub max_ahead_us: u64,
    /// Length of an address-token epoch; a token is valid in the epoch it was minted and
    /// the next one.
    pub token_epoch_us: u64,
    /// Largest datagram sealed.
    pub max_datagram: usize,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            max_peers: 4096,
            max_outstanding: 4096,
            request_timeout_us: 10_000_000,
            max_age_us: 60_000_000,
            max_ahead_us: 60_000_000,
            token_epoch_us: 600_000_000,
            max_datagram: DEFAULT_MAX_DATAGRAM,
        }
    }
}

/// What a datagram is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A request; answer it with [`Codec::seal_reply`] and [`Opened::reply_to`].
    Request,
    /// The reply to one of our requests.
    Reply,
    /// The peer would not send a reply larger than our request to an address it has not
    /// validated; it sent a token instead (now stored). Seal the request again.
    Retry,
}

/// A datagram that authenticated.
#[derive(Debug, Clone)]
pub struct Opened {
    /// Request, reply or retry.
    pub kind: Kind,
    /// The sender: its public key and node id, proved by the tag.
    pub peer: PeerKey,
    /// For a request, its id; for a reply or retry, the id of our request it answers.
    pub request_id: u64,
    /// The payload (empty for a retry).
    pub payload: Vec<u8>,
    /// For a request: it carried a valid token for its source address and key, so the
    /// address has proved it receives our datagrams. False for replies and retries.
    pub address_validated: bool,
    /// For a request, what [`Codec::seal_reply`] needs to answer it.
    pub reply_to: Option<ReplyTo>,
}

/// How to answer one request: the requester's key and address, the request id, how
/// large the request was and whether its address is validated.
#[derive(Clone)]
pub struct ReplyTo {
    /// The requester.
    peer: PeerKey,
    /// Ours → requester.
    send: AeadKey,
    /// Where the request came from.
    addr: SocketAddr,
    /// The request id to echo.
    request_id: u64,
    /// Size of the request datagram.
    request_len: usize,
    /// What its token was worth.
    token: TokenCheck,
}

impl std::fmt::Debug for ReplyTo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplyTo")
            .field("peer", &self.peer)
            .field("addr", &self.addr)
            .field("request_id", &self.request_id)
            .field("request_len", &self.request_len)
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

impl ReplyTo {
    /// The address the request came from, where the reply goes.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Size of the request datagram: the most an unvalidated address may be sent back.
    pub fn request_len(&self) -> usize {
        self.request_len
    }
}

/// A sealed request.
#[derive(Debug, Clone)]
pub struct SealedRequest {
    /// The id its reply will carry ([`Opened::request_id`]).
    pub request_id: u64,
    /// The bytes to send.
    pub datagram: Vec<u8>,
}

/// A sealed answer to a request.
#[derive(Debug, Clone)]
pub struct SealedReply {
    /// [`Kind::Reply`], or [`Kind::Retry`] when the reply would have been larger than the
    /// request and the address is not validated (the payload was not sent).
    pub kind: Kind,
    /// The bytes to send.
    pub datagram: Vec<u8>,
}

/// One request awaiting its reply.
#[derive(Debug)]
struct Pending {
    /// Whom it went to.
    peer: PeerKey,
    /// Ours → peer (to re-create the peer entry without a DH if it was evicted).
    send: AeadKey,
    /// Peer → ours.
    recv: AeadKey,
    /// When it expires.
    deadline: u64,
}

/// The datagram codec of one node: its keys, token secret, nonce generator, the bounded
/// peer cache and the outstanding requests.
#[derive(Debug)]
pub struct Codec {
    /// Our key pair.
    keys: Keys,
    /// Address tokens.
    tokens: TokenMinter,
    /// Nonce randomness and request ids.
    rng: ChaCha20Rng,
    /// Keys, replay windows and tokens by peer.
    peers: PeerCache,
    /// Outstanding requests by id.
    pending: HashMap<u64, Pending>,
    /// `(deadline, id)` in sealing order, for expiry (entries may be stale).
    pending_order: VecDeque<(u64, u64)>,
    /// Last request counter used.
    last_counter: u64,
    /// Limits.
    config: Config,
}

impl Codec {
    /// A codec for the node with hostkey `key`. `seed` must be 32 fresh random bytes
    /// (from the OS in production): it keys the address tokens and the nonce generator.
    pub fn new(key: &ed25519_dalek::SigningKey, seed: [u8; 32], config: Config) -> Codec {
        let (token_key, rng_seed) = split_seed(&seed);
        Codec {
            keys: Keys::new(key),
            tokens: TokenMinter::new(token_key, config.token_epoch_us),
            rng: ChaCha20Rng::from_seed(rng_seed),
            peers: PeerCache::new(config.max_peers),
            pending: HashMap::new(),
            pending_order: VecDeque::new(),
            last_counter: 0,
            config,
        }
    }

    /// Our public key and node id.
    pub fn local(&self) -> &PeerKey {
        self.keys.public()
    }

    /// Our node id.
    pub fn node_id(&self) -> NodeId {
        self.keys.public().node_id()
    }

    /// Number of peers cached.
    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    /// Peers evicted from the cache so far.
    pub fn evictions(&self) -> u64 {
        self.peers.evictions()
    }

    /// Whether `peer`'s state is cached.
    pub fn is_cached(&self, peer: &PeerKey) -> bool {
        self.peers.peek(peer.as_bytes()).is_some()
    }

    /// Number of requests awaiting a reply.
    pub fn outstanding(&self) -> usize {
        self.pending.len()
    }

    /// Marks `peer` as protected (e.g. a routing-table contact) or not. Protected peers
    /// are evicted only when every cached peer is protected. Computes the pair keys now
    /// if the peer is not cached.
    ///
    /// # Errors
    /// [`DatagramError::BadPublicKey`] or [`DatagramError::FromSelf`].
    pub fn set_protected(&mut self, peer: &PeerKey, protected: bool) -> Result<(), DatagramError> {
        self.ensure_peer(peer)?;
        self.peers.set_protected(peer.as_bytes(), protected);
        Ok(())
    }

    /// Forgets an outstanding request (the caller gave up on it); a later reply to it
    /// is refused. Returns whether it was outstanding.
    pub fn forget_request(&mut self, request_id: u64) -> bool {
        self.pending.remove(&request_id).is_some()
    }

    /// Drops outstanding requests whose timeout has passed at `now_us`.
    pub fn expire(&mut self, now_us: u64) {
        // A burst of requests leaves the maps at their largest; give the room back.
        if self.pending.capacity() > 64 && self.pending.len() * 4 < self.pending.capacity() {
            self.pending.shrink_to(self.pending.len() * 2);
        }
        if self.pending_order.capacity() > 64
            && self.pending_order.len() * 4 < self.pending_order.capacity()
        {
            self.pending_order.shrink_to(self.pending_order.len() * 2);
        }
        while let Some(&(deadline, id)) = self.pending_order.front() {
            let live = self.pending.get(&id).map(|p| p.deadline);
            match live {
                Some(d) if d > now_us && d == deadline => break,
                Some(d) if d <= now_us => {
                    self.pending.remove(&id);
                }
                _ => {}
            }
            self.pending_order.pop_front();
        }
    }

    /// Seals a request to `to`. The destination address plays no part: the peer's token
    /// is bound to our address as the peer sees it, so it stays valid if the peer moves.
    ///
    /// If we hold no usable token from `to`, the request is padded so that a reply with
    /// `reply_room` payload bytes (and a token) is no larger than it (capped at
    /// [`Config::max_datagram`]): the peer can then answer at once instead of sending a
    /// [`Kind::Retry`]. Pass 0 for requests whose reply is small.
    ///
    /// # Errors
    /// [`DatagramError::TooLarge`], [`DatagramError::TooManyOutstanding`],
    /// [`DatagramError::FromSelf`].
    pub fn seal_request(
        &mut self,
        now_us: u64,
        to: &PeerKey,
        payload: &[u8],
        reply_room: usize,
    ) -> Result<SealedRequest, DatagramError> {
        if self.pending.len() >= self.config.max_outstanding {
            self.expire(now_us);
            if self.pending.len() >= self.config.max_outstanding {
                return Err(DatagramError::TooManyOutstanding);
            }
        }
        let epoch = self.config.token_epoch_us;
        let max = self.config.max_datagram;
        let peer = self.ensure_peer(to)?;
        let token = peer
            .token
            .filter(|(_, at)| now_us < at.saturating_add(epoch))
            .map(|(t, _)| t);
        let (send, recv) = (peer.send.clone(), peer.recv.clone());

        let mut plain = Vec::with_capacity(payload.len() + TOKEN_LEN + 3);
        let mut flags = 0;
        if token.is_some() {
            flags |= FLAG_TOKEN;
        }
        let bare = REQUEST_OVERHEAD + payload.len() + if token.is_some() { TOKEN_LEN } else { 0 };
        let want = if token.is_none() && reply_room > 0 {
            (REPLY_OVERHEAD + TOKEN_LEN)
                .saturating_add(reply_room)
                .min(max)
        } else {
            0
        };
        let pad = want > bare;
        if pad {
            flags |= FLAG_PADDED;
        }
        plain.push(flags);
        if let Some(t) = token {
            plain.extend_from_slice(&t);
        }
        if pad {
            let len = u16::try_from(payload.len())
                .map_err(|_| DatagramError::TooLarge { len: bare, max })?;
            plain.extend_from_slice(&len.to_be_bytes());
        }
        plain.extend_from_slice(payload);
        let total = (bare + if pad { 2 } else { 0 }).max(want);
        if total > max {
            return Err(DatagramError::TooLarge { len: total, max });
        }
        plain.resize(total - REQUEST_HEADER_LEN - TAG_LEN, 0);

        let counter = now_us.max(self.last_counter.saturating_add(1));
        self.last_counter = counter;
        let request_id = loop {
            let id = self.rng.next_u64();
            if !self.pending.contains_key(&id) {
                break id;
            }
        };
        let mut nonce = [0u8; NONCE_LEN];
        nonce[..8].copy_from_slice(&counter.to_be_bytes());
        nonce[8..16].copy_from_slice(&request_id.to_be_bytes());
        self.rng.fill_bytes(&mut nonce[16..]);

        let mut datagram = Vec::with_capacity(total);
        datagram.push(KIND_REQUEST);
        datagram.extend_from_slice(self.keys.public().as_bytes());
        datagram.extend_from_slice(&nonce);
        let sealed = send.seal(&nonce, &datagram, &plain);
        datagram.extend_from_slice(&sealed);

        let deadline = now_us.saturating_add(self.config.request_timeout_us);
        self.pending.insert(
            request_id,
            Pending {
                peer: to.clone(),
                send,
                recv,
                deadline,
            },
        );
        self.pending_order.push_back((deadline, request_id));
        Ok(SealedRequest {
            request_id,
            datagram,
        })
    }

    /// Seals the answer to a request. To an address that did not prove it receives our
    /// datagrams, the answer is never larger than the request: if the reply would be,
    /// a [`Kind::Retry`] carrying only a token goes instead. A reply to an unvalidated
    /// (or previous-epoch) address carries a fresh token.
    ///
    /// # Errors
    /// [`DatagramError::TooLarge`] if the reply exceeds [`Config::max_datagram`].
    pub fn seal_reply(
        &mut self,
        now_us: u64,
        to: &ReplyTo,
        payload: &[u8],
    ) -> Result<SealedReply, DatagramError> {
        let token =
            (to.token != TokenCheck::Current).then(|| self.tokens.mint(now_us, &to.peer, to.addr));
        let len = REPLY_OVERHEAD + payload.len() + if token.is_some() { TOKEN_LEN } else { 0 };
        let max = self.config.max_datagram;
        if len > max {
            return Err(DatagramError::TooLarge { len, max });
        }
        let (kind, payload) = if to.token == TokenCheck::Invalid && len > to.request_len {
            (Kind::Retry, &[][..])
        } else {
            (Kind::Reply, payload)
        };
        let mut plain = Vec::with_capacity(1 + TOKEN_LEN + payload.len());
        plain.push(if token.is_some() { FLAG_TOKEN } else { 0 });
        if let Some(t) = token {
            plain.extend_from_slice(&t);
        }
        plain.extend_from_slice(payload);
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill_bytes(&mut nonce);
        let mut datagram = Vec::with_capacity(REPLY_HEADER_LEN + plain.len() + TAG_LEN);
        datagram.push(match kind {
            Kind::Retry => KIND_RETRY,
            _ => KIND_REPLY,
        });
        datagram.extend_from_slice(&to.request_id.to_be_bytes());
        datagram.extend_from_slice(&nonce);
        let sealed = to.send.seal(&nonce, &datagram, &plain);
        datagram.extend_from_slice(&sealed);
        Ok(SealedReply { kind, datagram })
    }

    /// Opens a datagram that arrived from `from` at `now_us`.
    ///
    /// A request is accepted at most once per sender while its state is cached, and only
    /// within the freshness window; a reply or retry only once, and only for an
    /// outstanding request. Nothing is changed by a datagram that fails.
    ///
    /// The caller must send nothing back for an error: only [`Codec::seal_reply`] for
    /// an opened request.
    ///
    /// # Errors
    /// Every [`DatagramError`] variant except `TooLarge` and `TooManyOutstanding`.
    pub fn open(
        &mut self,
        now_us: u64,
        from: SocketAddr,
        datagram: &[u8],
    ) -> Result<Opened, DatagramError> {
        let &kind = datagram.first().ok_or(DatagramError::Truncated)?;
        if kind & QUIC_FIXED_BIT != 0 {
            return Err(DatagramError::NotDatagram);
        }
        match kind {
            KIND_REQUEST => self.open_request(now_us, from, datagram),
            KIND_REPLY | KIND_RETRY => self.open_reply(now_us, kind, datagram),
            other => Err(DatagramError::UnknownKind(other)),
        }
    }

    /// [`Codec::open`] for a request.
    fn open_request(
        &mut self,
        now_us: u64,
        from: SocketAddr,
        datagram: &[u8],
    ) -> Result<Opened, DatagramError> {
        let h = wire::parse_request(datagram)?;
        if h.sender == *self.keys.public().as_bytes() {
            return Err(DatagramError::FromSelf);
        }
        if h.counter < now_us.saturating_sub(self.config.max_age_us) {
            return Err(DatagramError::Stale {
                counter: h.counter,
                now: now_us,
            });
        }
        if h.counter > now_us.saturating_add(self.config.max_ahead_us) {
            return Err(DatagramError::FromFuture {
                counter: h.counter,
                now: now_us,
            });
        }
        let (plain, peer_key, send) = match self.peers.peek(&h.sender) {
            Some(peer) => {
                if peer.window.check(h.counter) != ReplayVerdict::Fresh {
                    return Err(DatagramError::Replayed);
                }
                let plain = peer.recv.open(&h.nonce, h.aad, h.sealed)?;
                let (key, send) = (peer.key.clone(), peer.send.clone());
                if let Some(p) = self.peers.get_mut(&h.sender) {
                    p.window.record(h.counter);
                }
                (plain, key, send)
            }
            None => {
                let key = PeerKey::from_bytes(&h.sender)?;
                let (send, recv) = self.keys.pair_keys(&key)?;
                let plain = recv.open(&h.nonce, h.aad, h.sealed)?;
                let peer = self.peers.insert(key.clone(), send.clone(), recv);
                peer.window.record(h.counter);
                (plain, key, send)
            }
        };
        let body = wire::parse_body(&plain, true)?;
        let token = self
            .tokens
            .check(now_us, &peer_key, from, body.token.as_ref());
        let payload = plain.get(body.payload).unwrap_or_default().to_vec();
        Ok(Opened {
            kind: Kind::Request,
            request_id: h.request_id,
            payload,
            address_validated: token != TokenCheck::Invalid,
            reply_to: Some(ReplyTo {
                peer: peer_key.clone(),
                send,
                addr: from,
                request_id: h.request_id,
                request_len: datagram.len(),
                token,
            }),
            peer: peer_key,
        })
    }

    /// [`Codec::open`] for a reply or retry.
    fn open_reply(
        &mut self,
        now_us: u64,
        kind: u8,
        datagram: &[u8],
    ) -> Result<Opened, DatagramError> {
        let h = wire::parse_reply(datagram)?;
        let pending = self
            .pending
            .get(&h.request_id)
            .ok_or(DatagramError::UnknownRequest)?;
        if pending.deadline <= now_us {
            self.pending.remove(&h.request_id);
            return Err(DatagramError::UnknownRequest);
        }
        let plain = pending.recv.open(&h.nonce, h.aad, h.sealed)?;
        let body = wire::parse_body(&plain, false)?;
        let retry = kind == KIND_RETRY;
        if retry && (body.token.is_none() || !body.payload.is_empty()) {
            return Err(DatagramError::Malformed);
        }
        let Some(pending) = self.pending.remove(&h.request_id) else {
            return Err(DatagramError::UnknownRequest);
        };
        if let Some(token) = body.token {
            let bytes = *pending.peer.as_bytes();
            if self.peers.peek(&bytes).is_none() {
                self.peers.insert(
                    pending.peer.clone(),
                    pending.send.clone(),
                    pending.recv.clone(),
                );
            }
            if let Some(p) = self.peers.get_mut(&bytes) {
                p.token = Some((token, now_us));
            }
        }
        let payload = plain.get(body.payload).unwrap_or_default().to_vec();
        Ok(Opened {
            kind: if retry { Kind::Retry } else { Kind::Reply },
            peer: pending.peer,
            request_id: h.request_id,
            payload,
            address_validated: false,
            reply_to: None,
        })
    }

    /// The cached state of `peer`, created (one X25519) if absent.
    fn ensure_peer(&mut self, peer: &PeerKey) -> Result<&mut peers::Peer, DatagramError> {
        if peer.as_bytes() == self.keys.public().as_bytes() {
            return Err(DatagramError::FromSelf);
        }
        if self.peers.peek(peer.as_bytes()).is_none() {
            let (send, recv) = self.keys.pair_keys(peer)?;
            return Ok(self.peers.insert(peer.clone(), send, recv));
        }
        self.peers
            .get_mut(peer.as_bytes())
            .ok_or(DatagramError::BadPublicKey)
    }
}

/// Whether a datagram on the shared socket belongs to this layer (first byte has the
/// QUIC fixed bit clear) rather than to QUIC.
pub fn is_overlay_datagram(datagram: &[u8]) -> bool {
    datagram.first().is_some_and(|b| b & QUIC_FIXED_BIT == 0)
}

/// Decoder check for the fuzz crate: opens `data` as it is, then as flipped variants of
/// a valid request and reply, and asserts that nothing panics and that no altered
/// datagram is accepted.
pub fn fuzz_open(data: &[u8]) {
    use ed25519_dalek::SigningKey;
    let now = 1_800_000_000_000_000u64;
    let addr = SocketAddr::from(([192, 0, 2, 1], 4000));
    let a_key = SigningKey::from_bytes(&[1; 32]);
    let b_key = SigningKey::from_bytes(&[2; 32]);
    let mut a = Codec::new(&a_key, [3; 32], Config::default());
    let mut b = Codec::new(&b_key, [4; 32], Config::default());
    let _ = b.open(now, addr, data);

    // A valid request from a to b with `data` as payload, then `data` as an XOR mask.
    let b_pub = b.local().clone();
    let payload = data
        .get(..data.len().min(MAX_REQUEST_PAYLOAD))
        .unwrap_or_default();
    let Ok(req) = a.seal_request(now, &b_pub, payload, 0) else {
        return;
    };
    let (altered, changed) = mutate(&req.datagram, data);
    if changed {
        assert!(
            b.open(now, addr, &altered).is_err(),
            "altered request accepted"
        );
    }
    let Ok(opened) = b.open(now, addr, &req.datagram) else {
        panic!("valid request refused");
    };
    let Some(reply_to) = opened.reply_to else {
        panic!("request without reply_to");
    };
    let Ok(reply) = b.seal_reply(now, &reply_to, payload) else {
        return;
    };
    let (altered, changed) = mutate(&reply.datagram, data);
    if changed {
        assert!(
            a.open(now, addr, &altered).is_err(),
            "altered reply accepted"
        );
    }
    assert!(
        a.open(now, addr, &reply.datagram).is_ok(),
        "valid reply refused"
    );
}

/// `datagram` XORed with `mask` (as far as both go), then cut by `mask[0] % 4` bytes;
/// and whether that changed it.
fn mutate(datagram: &[u8], mask: &[u8]) -> (Vec<u8>, bool) {
    let mut out = datagram.to_vec();
    let mut changed = false;
    for (byte, m) in out.iter_mut().zip(mask) {
        *byte ^= m;
        changed |= *m != 0;
    }
    let cut = mask.first().map_or(0, |&n| usize::from(n % 4));
    out.truncate(out.len().saturating_sub(cut));
    (out, changed || cut > 0)
}
