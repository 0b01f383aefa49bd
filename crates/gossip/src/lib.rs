//! Gossip as a pure state machine (sans-IO): membership, dissemination, dedup, validation.
//!
//! This crate holds every rule of the gossip module and no I/O: it opens no socket, reads
//! no clock (time comes in as `now: Instant`, Unix time through [`Gossip::new`] and
//! [`Gossip::set_unix_time`]) and uses no randomness it was not handed (the RNG is seeded
//! from [`Config::rng_seed`]). The same code runs under tokio in `voidmesh-node` and under
//! a virtual clock in the tests of this crate.
//!
//! # Layout
//! - [`config`](Config): tunables and their defaults.
//! - `membership`: the bounded view of neighbours, HELLOs in flight, join candidates.
//! - `dissemination`: item ids, the bounded item cache with validation state, the seen-set.
//! - `subscriptions`: which local API client registered which data type.
//! - `pow`: the proof of work a peer presents to join ([`solve_pow`], [`verify_pow`]).
//! - `rate`: the per-peer token bucket that recognises floods.
//! - this file: [`Gossip`], which ties them together, and its inputs and outputs.
//!
//! # Rules
//! - **Joining costs work.** A peer enters the view only after a HELLO (or a WELCOME)
//!   whose proof of work is bound to its authenticated node id and to a timestamp within
//!   [`Config::pow_max_skew`] of our Unix time. Views are symmetric: an accepted HELLO
//!   puts each peer in the other's view.
//! - **Membership.** The view holds at most `max_connections` peers. Every
//!   `search_cooldown`, a node below `min_connections` sends HELLOs to candidates (learned
//!   from OFFERs and WELCOMEs, then known peers/bootstrappers) and a DISCOVERY to every
//!   neighbour, which answers with an OFFER of up to `offer_size` random view members.
//! - **Local items** (ANNOUNCE from an API client) are delivered at once to the *other*
//!   local subscribers of their data type and pushed to `degree` random neighbours.
//! - **Items from the network** are deduplicated by id (cache + seen-set). An item of a
//!   data type no local client registered is neither delivered nor forwarded: this node
//!   cannot validate it, and the spec forbids spreading what was not validated. Otherwise
//!   it is delivered to every local subscriber under one message id, and forwarded (one
//!   hop less, to `degree` random neighbours that are not known to have it) once **every**
//!   subscriber it was delivered to answered "valid". The first "invalid" drops it; so does
//!   a missing verdict after `validation_timeout`. A subscriber that disconnects before
//!   answering no longer counts; if none answered at all, the item is dropped.
//! - **Bad peers** are disconnected: an invalid proof, any message other than HELLO or
//!   WELCOME before joining, a flood beyond the token bucket, or a malformed message
//!   (reported by the driver through [`Gossip::handle_malformed`]).
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

mod config;
mod dissemination;
mod membership;
mod pow;
mod rate;
mod subscriptions;

pub use config::{Config, ConfigError};
pub use dissemination::{item_id, ItemId};
pub use pow::{leading_zero_bits, pow_hash, solve_pow, verify_pow, PowError};
pub use subscriptions::ClientId;
pub use voidmesh_proto::Proof;

use bytes::Bytes;
use dissemination::{Item, ItemCache, ItemState, SeenSet};
use membership::Membership;
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::collections::{BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::time::Instant;
use subscriptions::Subscriptions;
use tracing::{debug, trace, warn};
use voidmesh_proto::gossip_api::MAX_DATA_LEN;
use voidmesh_proto::{Contact, GossipPeerMessage, NodeId};

/// A message the driver must send to `to`. Gossip messages are one-way: nothing is
/// expected back on the same stream. If `to` is not connected, the driver connects first
/// (checking that the peer really is `to.id`); if that or the send fails, it reports
/// [`Gossip::peer_failed`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// The peer to send to.
    pub to: Contact,
    /// The message.
    pub message: GossipPeerMessage,
}

/// Why the state machine asks the driver to drop a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisconnectReason {
    /// Its proof of work is missing, too weak or not fresh.
    BadProof(PowError),
    /// It sent something other than HELLO or WELCOME without being in the view.
    NotJoined,
    /// It sent more messages than its token bucket allows.
    Flooding,
    /// It sent a message that could not be decoded.
    Malformed,
    /// It welcomed us, but our view is full, so we cannot keep it.
    ViewFull,
}

/// What the driver must act on, besides transmits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Write a GOSSIP NOTIFICATION to API client `client`. Emitted at most once per item
    /// and client; never for clients that did not register `data_type`, and never to the
    /// client that announced the item.
    Deliver {
        /// The API connection to write to.
        client: ClientId,
        /// The id its VALIDATION will refer to.
        message_id: u16,
        /// The item's data type.
        data_type: u16,
        /// The item.
        data: Bytes,
    },
    /// Close the connection to `peer`. The peer has already left the view (a
    /// [`Event::PeerLeft`] came first if it was in it). Not emitted for peers the driver
    /// reported with [`Gossip::peer_failed`].
    DisconnectPeer {
        /// The peer to drop.
        peer: NodeId,
        /// Why.
        reason: DisconnectReason,
    },
    /// `peer` entered the view (after a proof-checked HELLO or WELCOME).
    PeerJoined {
        /// Its id and listening address.
        peer: Contact,
    },
    /// `peer` left the view (failure reported by the driver, or dropped by us).
    PeerLeft {
        /// Its id.
        peer: NodeId,
    },
    /// This node needs a (new) proof of work for Unix time `unix_secs`: compute
    /// [`solve_pow`]`(local id, unix_secs, config.pow_difficulty)`, off the event loop if
    /// the difficulty is high, and hand it in with [`Gossip::set_proof`]. Emitted once by
    /// [`Gossip::new`], then again when the current proof has used half its freshness
    /// window; not repeated while a request is outstanding.
    ProofNeeded {
        /// The timestamp the proof should carry.
        unix_secs: u64,
    },
}

/// Counters of what this node did; all only ever grow.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Peer messages handed out through [`Gossip::poll_transmit`], all types.
    pub messages_sent: u64,
    /// PEER ANNOUNCE messages among them.
    pub announces_sent: u64,
    /// Items announced by local clients.
    pub items_announced: u64,
    /// Items received from peers for the first time.
    pub items_received: u64,
    /// Copies of items already known (dropped silently).
    pub duplicates: u64,
    /// NOTIFICATIONs asked for ([`Event::Deliver`]).
    pub deliveries: u64,
    /// Items from the network validated by every subscriber and forwarded.
    pub items_validated: u64,
    /// Items from the network a subscriber found invalid (never forwarded).
    pub items_invalid: u64,
    /// Items from the network with no complete verdict in time (never forwarded).
    pub items_unvalidated: u64,
    /// Items from the network of a type no local client registered (not forwarded).
    pub items_unsubscribed: u64,
    /// Items evicted from the full cache while still waiting for validation.
    pub items_evicted_pending: u64,
    /// Peers that entered the view.
    pub peers_joined: u64,
    /// Peers that left the view.
    pub peers_left: u64,
    /// Peers refused for an invalid proof of work.
    pub peers_refused: u64,
    /// Peers dropped for flooding.
    pub peers_flooding: u64,
    /// Peers dropped for malformed messages.
    pub peers_malformed: u64,
    /// Peers dropped for talking before joining.
    pub peers_not_joined: u64,
    /// HELLOs answered "view full".
    pub hellos_refused_full: u64,
}

/// One gossip node's whole protocol state.
///
/// # Calling convention
/// - (A) getters: [`local_id`](Self::local_id), [`view`](Self::view),
///   [`stats`](Self::stats), [`item_sends`](Self::item_sends), ...
/// - (B) inputs: [`handle_message`](Self::handle_message) (a message from a peer whose id
///   the transport verified), [`handle_malformed`](Self::handle_malformed),
///   [`peer_failed`](Self::peer_failed), [`handle_timeout`](Self::handle_timeout).
/// - (C) commands: from the driver ([`set_proof`](Self::set_proof),
///   [`set_unix_time`](Self::set_unix_time), [`set_listen_addr`](Self::set_listen_addr),
///   [`add_known_peers`](Self::add_known_peers)) and from API clients
///   ([`client_notify`](Self::client_notify), [`client_announce`](Self::client_announce),
///   [`client_validation`](Self::client_validation),
///   [`client_disconnected`](Self::client_disconnected)).
/// - (D) outputs: after every (B) or (C) call, drain
///   [`poll_transmit`](Self::poll_transmit) until `None`, then
///   [`poll_event`](Self::poll_event) until `None`, then sleep until
///   [`poll_timeout`](Self::poll_timeout) and call `handle_timeout`.
///
/// Every input takes `now`, which must never go backwards. A `handle_timeout` before the
/// deadline is harmless: it only does what is due.
pub struct Gossip {
    /// This node's id and the address where it accepts gossip connections.
    local: Contact,
    /// Tunables, sanitized.
    config: Config,
    /// The only source of randomness (peer choice).
    rng: StdRng,
    /// `(instant, unix seconds)` from the driver: Unix time at any `now` is extrapolated.
    unix_anchor: (Instant, u64),
    /// The proof of work presented in our HELLOs and WELCOMEs; none until the driver
    /// hands one in (no joining before that).
    proof: Option<Proof>,
    /// True while a [`Event::ProofNeeded`] is unanswered.
    proof_requested: bool,
    /// The view, HELLOs in flight and join candidates.
    membership: Membership,
    /// Recent items and their validation state.
    items: ItemCache,
    /// Ids of items seen recently, cached or not.
    seen: SeenSet,
    /// Local API clients' registrations.
    subscriptions: Subscriptions,
    /// The next nonce of a locally announced item.
    next_nonce: u64,
    /// Where the search for a free NOTIFICATION message id starts.
    next_message_id: u16,
    /// When the next maintenance round (view refill, expiry, proof renewal) is due.
    next_tick: Instant,
    /// Neighbours are asked for peers at most once per `search_cooldown`.
    next_discovery: Instant,
    /// Messages waiting for [`poll_transmit`](Self::poll_transmit).
    transmits: VecDeque<Transmit>,
    /// Events waiting for [`poll_event`](Self::poll_event).
    events: VecDeque<Event>,
    /// Counters.
    stats: Stats,
}

/// How a verdict or a departure settles a pending item.
enum Settle {
    /// Still waiting for other subscribers.
    Wait,
    /// Every remaining subscriber said valid: forward it.
    Forward,
    /// Drop it and never forward it.
    Drop,
}

impl Gossip {
    /// A node with an empty view. `local` is this node's id and gossip listening address;
    /// `unix_secs` is the Unix time at `now` (the only wall-clock reading the machine gets,
    /// see [`set_unix_time`](Self::set_unix_time)). Out-of-range config values are forced
    /// into range (see [`Config::validate`]). Emits [`Event::ProofNeeded`].
    pub fn new(local: Contact, config: Config, now: Instant, unix_secs: u64) -> Self {
        let config = config.sanitized();
        let mut gossip = Gossip {
            local,
            rng: StdRng::seed_from_u64(config.rng_seed),
            unix_anchor: (now, unix_secs),
            proof: None,
            proof_requested: false,
            membership: Membership::new(local.id, config.max_candidates),
            items: ItemCache::new(config.cache_size),
            seen: SeenSet::new(config.seen_ttl, config.max_seen),
            subscriptions: Subscriptions::default(),
            // Nonces continue across restarts: a later start has a larger Unix time.
            next_nonce: unix_secs << 32,
            next_message_id: 1,
            next_tick: now,
            next_discovery: now,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: Stats::default(),
            config,
        };
        gossip.request_proof(now);
        gossip
    }

    // ---- (A) getters ----

    /// This node's id.
    pub fn local_id(&self) -> NodeId {
        self.local.id
    }

    /// This node's id and gossip listening address.
    pub fn local_contact(&self) -> Contact {
        self.local
    }

    /// The configuration in use (sanitized).
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The neighbours in the view, in id order.
    pub fn view(&self) -> Vec<Contact> {
        self.membership.contacts()
    }

    /// Number of neighbours in the view.
    pub fn view_len(&self) -> usize {
        self.membership.len()
    }

    /// True if `peer` is in the view.
    pub fn is_neighbour(&self, peer: &NodeId) -> bool {
        self.membership.is_member(peer)
    }

    /// Counters of what this node did.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// PEER ANNOUNCE messages this node sent for item `id`, while the item is cached.
    pub fn item_sends(&self, id: &ItemId) -> Option<u32> {
        self.items.get(id).map(|item| item.sends)
    }

    /// Items in the cache (at most `cache_size`).
    pub fn cached_items(&self) -> usize {
        self.items.len()
    }

    /// Item ids in the seen-set (at most `max_seen`).
    pub fn seen_items(&self) -> usize {
        self.seen.len()
    }

    /// Items waiting for local validation.
    pub fn pending_validations(&self) -> usize {
        self.items.pending_len()
    }

    /// True once a proof of work was handed in.
    pub fn has_proof(&self) -> bool {
        self.proof.is_some()
    }

    /// The Unix time (seconds) at `now`, extrapolated from the last reading handed in.
    pub fn unix_time(&self, now: Instant) -> u64 {
        let (at, unix) = self.unix_anchor;
        unix.saturating_add(now.saturating_duration_since(at).as_secs())
    }

    // ---- (C) commands from the driver ----

    /// A fresh wall-clock reading: `unix_secs` is the Unix time at `now`. Optional; the
    /// driver may call it now and then to correct drift between its monotonic and wall
    /// clocks.
    pub fn set_unix_time(&mut self, now: Instant, unix_secs: u64) {
        self.unix_anchor = (now, unix_secs);
    }

    /// This node's proof of work (answer to [`Event::ProofNeeded`]). It is used as it is,
    /// even if it does not meet this node's own difficulty (a warning is logged): peers
    /// judge it. Starts joining if the view is short.
    pub fn set_proof(&mut self, now: Instant, proof: Proof) {
        if let Err(e) = verify_pow(
            &self.local.id,
            &proof,
            self.config.pow_difficulty,
            self.unix_time(now),
            self.config.pow_max_skew.as_secs(),
        ) {
            warn!(error = %e, "own proof of work would not pass our own check");
        }
        self.proof = Some(proof);
        self.proof_requested = false;
        self.refill(now);
    }

    /// The address where this node now accepts gossip connections; every neighbour is
    /// told with a PEER INFO.
    pub fn set_listen_addr(&mut self, now: Instant, addr: SocketAddr) {
        let _ = now;
        self.local.addr = addr;
        for peer in self.membership.contacts() {
            self.send(peer, GossipPeerMessage::Info { listen_addr: addr });
        }
    }

    /// Known peers and bootstrappers (ids already learned by the transport). They are
    /// kept (at most `max_candidates`) and tried when the view is short and no other
    /// candidate is left; joining starts at once if the view is short.
    pub fn add_known_peers(&mut self, now: Instant, peers: &[Contact]) {
        for peer in peers {
            self.membership.add_known(*peer);
        }
        self.refill(now);
    }

    // ---- (C) commands from API clients ----

    /// GOSSIP NOTIFY: `client` wants every item of `data_type` from now on.
    pub fn client_notify(&mut self, now: Instant, client: ClientId, data_type: u16) {
        let _ = now;
        self.subscriptions.add(client, data_type);
    }

    /// GOSSIP ANNOUNCE: spread `data` of `data_type`. `ttl` is the number of hops it may
    /// travel (0: `max_ttl`; larger values are capped at `max_ttl`). The item is delivered
    /// at once to the other local subscribers of `data_type` and pushed to `degree` random
    /// neighbours without waiting for any validation. Returns the item's id, or `None` if
    /// `data` is larger than a NOTIFICATION can carry.
    pub fn client_announce(
        &mut self,
        now: Instant,
        client: ClientId,
        ttl: u8,
        data_type: u16,
        data: Bytes,
    ) -> Option<ItemId> {
        if data.len() > MAX_DATA_LEN {
            debug!(len = data.len(), "announce too large, dropped");
            return None;
        }
        let nonce = self.next_nonce;
        self.next_nonce = self.next_nonce.wrapping_add(1);
        let origin = self.local.id;
        let id = item_id(&origin, data_type, nonce, &data);
        self.seen.insert(now, id);
        self.stats.items_announced += 1;
        let hops = if ttl == 0 {
            self.config.max_ttl
        } else {
            ttl.min(self.config.max_ttl)
        };
        let mut others = self.subscriptions.subscribers(data_type);
        others.remove(&client);
        if !others.is_empty() {
            let message_id = self.alloc_message_id();
            for other in others {
                self.deliver(other, message_id, data_type, data.clone());
            }
        }
        let item = Item {
            id,
            origin,
            nonce,
            data_type,
            data,
            hops,
            state: ItemState::Spread,
            peers: BTreeSet::new(),
            sends: 0,
        };
        self.cache(item);
        self.forward(&id);
        Some(id)
    }

    /// GOSSIP VALIDATION from `client` for `message_id`. Ignored unless the message id
    /// names an item still waiting for this client's verdict.
    pub fn client_validation(
        &mut self,
        now: Instant,
        client: ClientId,
        message_id: u16,
        valid: bool,
    ) {
        let _ = now;
        let Some(id) = self.items.pending_item(message_id) else {
            trace!(message_id, "validation for an unknown message id ignored");
            return;
        };
        let settle = match self.items.get_mut(&id).map(|item| &mut item.state) {
            Some(ItemState::Pending {
                awaiting,
                valid: valid_count,
                ..
            }) => {
                if !awaiting.remove(&client) {
                    trace!(message_id, "validation from a client not asked ignored");
                    return;
                }
                if !valid {
                    Settle::Drop
                } else {
                    *valid_count += 1;
                    if awaiting.is_empty() {
                        Settle::Forward
                    } else {
                        Settle::Wait
                    }
                }
            }
            _ => return,
        };
        match settle {
            Settle::Wait => {}
            Settle::Forward => self.spread_validated(&id),
            Settle::Drop => {
                debug!(?id, "item found invalid; not forwarded");
                self.items.settle(&id, ItemState::Dropped);
                self.stats.items_invalid += 1;
            }
        }
    }

    /// The API connection of `client` closed: its registrations end, and it no longer
    /// counts as a validator of pending items. Nothing else changes.
    pub fn client_disconnected(&mut self, now: Instant, client: ClientId) {
        let _ = now;
        self.subscriptions.remove_client(client);
        for id in self.items.pending_ids() {
            let settle = match self.items.get_mut(&id).map(|item| &mut item.state) {
                Some(ItemState::Pending {
                    awaiting, valid, ..
                }) => {
                    if !awaiting.remove(&client) || !awaiting.is_empty() {
                        Settle::Wait
                    } else if *valid > 0 {
                        Settle::Forward
                    } else {
                        Settle::Drop
                    }
                }
                _ => Settle::Wait,
            };
            match settle {
                Settle::Wait => {}
                Settle::Forward => self.spread_validated(&id),
                Settle::Drop => {
                    self.items.settle(&id, ItemState::Dropped);
                    self.stats.items_unvalidated += 1;
                }
            }
        }
    }

    // ---- (B) inputs ----

    /// A message from peer `from`, whose id the transport authenticated (`from.addr` is
    /// where the message came from). Unsolicited or out-of-place messages are handled as
    /// the crate doc says; none of them can make the machine panic or grow without bound.
    pub fn handle_message(&mut self, now: Instant, from: Contact, msg: GossipPeerMessage) {
        if from.id == self.local.id {
            return;
        }
        let member = self.membership.is_member(&from.id);
        if member
            && !self.membership.take_token(
                &from.id,
                now,
                self.config.peer_rate,
                self.config.peer_burst,
            )
        {
            debug!(peer = ?from.id, "peer floods; dropped");
            self.stats.peers_flooding += 1;
            self.drop_peer(from.id, DisconnectReason::Flooding);
            return;
        }
        match msg {
            GossipPeerMessage::Hello { proof, listen_addr } => {
                self.on_hello(now, from, proof, listen_addr)
            }
            GossipPeerMessage::Welcome {
                accepted,
                proof,
                listen_addr,
                contacts,
            } => self.on_welcome(now, from, accepted, proof, listen_addr, &contacts),
            other if !member => {
                if self.membership.is_pending(&from.id) {
                    // It may have accepted our HELLO and sent this before its WELCOME
                    // reached us (one stream per message: no order between them).
                    trace!(peer = ?from.id, "message before WELCOME ignored");
                } else {
                    debug!(peer = ?from.id, msg_type = other.msg_type(), "message from a peer not in the view");
                    self.stats.peers_not_joined += 1;
                    self.drop_peer(from.id, DisconnectReason::NotJoined);
                }
            }
            GossipPeerMessage::Announce {
                origin,
                nonce,
                hops_left,
                data_type,
                data,
            } => self.on_announce(now, from.id, origin, nonce, hops_left, data_type, data),
            GossipPeerMessage::Discovery => {
                let contacts =
                    self.membership
                        .sample(&mut self.rng, self.config.offer_size, |id| *id == from.id);
                if let Some(to) = self.neighbour(&from.id) {
                    self.send(to, GossipPeerMessage::Offer { contacts });
                }
            }
            GossipPeerMessage::Offer { contacts } => {
                for c in contacts.into_iter().take(self.config.offer_size.max(1)) {
                    self.membership.add_candidate(&mut self.rng, c);
                }
                self.refill(now);
            }
            GossipPeerMessage::Info { listen_addr } => {
                // A move is believed only from the new address itself.
                if listen_addr == from.addr {
                    self.membership.update_addr(&from.id, listen_addr)
                } else {
                    note_claimed_addr(&from, listen_addr);
                }
            }
        }
    }

    /// Peer `peer` sent bytes that do not decode as a gossip message (or an oversized
    /// frame): it leaves the view and the driver is told to disconnect it.
    pub fn handle_malformed(&mut self, now: Instant, peer: NodeId) {
        self.stats.peers_malformed += 1;
        self.drop_peer(peer, DisconnectReason::Malformed);
        self.refill(now);
    }

    /// The connection to `peer` failed or closed, or a send to it failed: it leaves the
    /// view (and the HELLOs in flight). If the view is now short, joining starts at once.
    pub fn peer_failed(&mut self, now: Instant, peer: NodeId) {
        self.membership.end_hello(&peer);
        if self.membership.remove(&peer) {
            self.stats.peers_left += 1;
            self.events.push_back(Event::PeerLeft { peer });
        }
        self.refill(now);
    }

    /// Does what is due at `now`: drops items whose validation is late, gives up HELLOs
    /// without answer, and every `search_cooldown` runs maintenance (view refill, seen-set
    /// expiry, proof renewal).
    pub fn handle_timeout(&mut self, now: Instant) {
        for id in self.items.expired(now) {
            debug!(?id, "no verdict in time; item dropped");
            self.items.settle(&id, ItemState::Dropped);
            self.stats.items_unvalidated += 1;
        }
        for peer in self.membership.expire_hellos(now) {
            debug!(?peer, "HELLO unanswered; given up");
        }
        if now >= self.next_tick {
            self.next_tick = now + self.config.search_cooldown;
            self.seen.expire(now);
            self.membership.expire_tried(now);
            if let Some(proof) = self.proof {
                let half_window = self.config.pow_max_skew.as_secs() / 2;
                if self.unix_time(now) >= proof.timestamp.saturating_add(half_window) {
                    self.request_proof(now);
                }
            }
            self.refill(now);
        }
    }

    // ---- (D) outputs ----

    /// The next message to send.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event to act on.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next be called: the earliest of
    /// the next maintenance round, validation deadline and HELLO deadline.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            Some(self.next_tick),
            self.items.next_deadline(),
            self.membership.next_hello_deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    // ---- private: membership ----

    fn request_proof(&mut self, now: Instant) {
        if !self.proof_requested {
            self.proof_requested = true;
            self.events.push_back(Event::ProofNeeded {
                unix_secs: self.unix_time(now),
            });
        }
    }

    fn check_proof(&self, now: Instant, peer: &NodeId, proof: &Proof) -> Result<(), PowError> {
        verify_pow(
            peer,
            proof,
            self.config.pow_difficulty,
            self.unix_time(now),
            self.config.pow_max_skew.as_secs(),
        )
    }

    fn on_hello(&mut self, now: Instant, from: Contact, proof: Proof, listen_addr: SocketAddr) {
        let peer = from.id;
        if let Err(e) = self.check_proof(now, &peer, &proof) {
            debug!(?peer, error = %e, "HELLO with an invalid proof of work; refused");
            self.stats.peers_refused += 1;
            self.drop_peer(peer, DisconnectReason::BadProof(e));
            return;
        }
        let Some(own_proof) = self.proof else {
            // Without our own proof the peer could not accept our WELCOME; it will retry.
            trace!(?peer, "HELLO before we have a proof of work; ignored");
            return;
        };
        // Dialled back where it was heard from, never where it says (it could name any
        // address, and make this node send there).
        note_claimed_addr(&from, listen_addr);
        let contact = from;
        let accepted = if self.membership.is_member(&peer) {
            self.membership.update_addr(&peer, from.addr);
            true
        } else if self.membership.len() < self.config.max_connections {
            self.join(now, contact);
            true
        } else {
            self.stats.hellos_refused_full += 1;
            false
        };
        let contacts = self
            .membership
            .sample(&mut self.rng, self.config.offer_size, |id| *id == peer);
        self.send(
            contact,
            GossipPeerMessage::Welcome {
                accepted,
                proof: own_proof,
                listen_addr: self.local.addr,
                contacts,
            },
        );
    }

    fn on_welcome(
        &mut self,
        now: Instant,
        from: Contact,
        accepted: bool,
        proof: Proof,
        listen_addr: SocketAddr,
        contacts: &[Contact],
    ) {
        let peer = from.id;
        self.membership.end_hello(&peer);
        if let Err(e) = self.check_proof(now, &peer, &proof) {
            debug!(?peer, error = %e, "WELCOME with an invalid proof of work; refused");
            self.stats.peers_refused += 1;
            self.drop_peer(peer, DisconnectReason::BadProof(e));
            return;
        }
        for c in contacts.iter().take(self.config.offer_size.max(1)) {
            self.membership.add_candidate(&mut self.rng, *c);
        }
        note_claimed_addr(&from, listen_addr);
        let contact = from;
        if accepted {
            if self.membership.is_member(&peer) {
                self.membership.update_addr(&peer, from.addr);
            } else if self.membership.len() < self.config.max_connections {
                self.join(now, contact);
            } else {
                // It keeps us in its view; it must learn that we do not keep it.
                self.drop_peer(peer, DisconnectReason::ViewFull);
            }
        } else if self.membership.remove(&peer) {
            self.stats.peers_left += 1;
            self.events.push_back(Event::PeerLeft { peer });
        }
        self.refill(now);
    }

    fn join(&mut self, now: Instant, contact: Contact) {
        if self
            .membership
            .add_member(now, contact, self.config.peer_burst)
        {
            debug!(peer = ?contact.id, "peer joined the view");
            self.stats.peers_joined += 1;
            self.events.push_back(Event::PeerJoined { peer: contact });
        }
    }

    /// Removes `peer` from the view and asks the driver to disconnect it.
    fn drop_peer(&mut self, peer: NodeId, reason: DisconnectReason) {
        self.membership.end_hello(&peer);
        if self.membership.remove(&peer) {
            self.stats.peers_left += 1;
            self.events.push_back(Event::PeerLeft { peer });
        }
        self.events
            .push_back(Event::DisconnectPeer { peer, reason });
    }

    /// When the view (with HELLOs in flight) is below `min_connections`: HELLO to as many
    /// candidates as are missing, and once per `search_cooldown` a DISCOVERY to every
    /// neighbour.
    fn refill(&mut self, now: Instant) {
        let Some(proof) = self.proof else {
            return;
        };
        let have = self.membership.len() + self.membership.pending_len();
        let Some(missing) = self.config.min_connections.checked_sub(have) else {
            return;
        };
        if missing == 0 {
            return;
        }
        let targets = self
            .membership
            .pick_join_targets(&mut self.rng, now, missing);
        for target in targets {
            self.membership.begin_hello(
                target,
                now + self.config.hello_timeout,
                now + self.config.search_cooldown,
            );
            self.send(
                target,
                GossipPeerMessage::Hello {
                    proof,
                    listen_addr: self.local.addr,
                },
            );
        }
        if self.membership.len() < self.config.min_connections && now >= self.next_discovery {
            self.next_discovery = now + self.config.search_cooldown;
            for peer in self.membership.contacts() {
                self.send(peer, GossipPeerMessage::Discovery);
            }
        }
    }

    fn neighbour(&self, id: &NodeId) -> Option<Contact> {
        self.membership.contacts().into_iter().find(|c| c.id == *id)
    }

    // ---- private: dissemination ----

    #[allow(clippy::too_many_arguments)]
    fn on_announce(
        &mut self,
        now: Instant,
        from: NodeId,
        origin: NodeId,
        nonce: u64,
        hops_left: u8,
        data_type: u16,
        data: Bytes,
    ) {
        let id = item_id(&origin, data_type, nonce, &data);
        if let Some(item) = self.items.get_mut(&id) {
            item.peers.insert(from);
            self.stats.duplicates += 1;
            return;
        }
        if origin == self.local.id || !self.seen.insert(now, id) {
            // Our own item, or one already handled and no longer cached.
            self.stats.duplicates += 1;
            return;
        }
        self.stats.items_received += 1;
        let subscribers = self.subscriptions.subscribers(data_type);
        if subscribers.is_empty() {
            trace!(
                ?id,
                data_type,
                "no local subscriber; not delivered, not forwarded"
            );
            self.stats.items_unsubscribed += 1;
            return;
        }
        let message_id = self.alloc_message_id();
        for client in &subscribers {
            self.deliver(*client, message_id, data_type, data.clone());
        }
        let item = Item {
            id,
            origin,
            nonce,
            data_type,
            data,
            hops: hops_left.min(self.config.max_ttl),
            state: ItemState::Pending {
                message_id,
                awaiting: subscribers,
                valid: 0,
                deadline: now + self.config.validation_timeout,
            },
            peers: BTreeSet::from([from]),
            sends: 0,
        };
        self.cache(item);
    }

    fn cache(&mut self, item: Item) {
        if let Some(evicted) = self.items.insert(item) {
            if matches!(evicted.state, ItemState::Pending { .. }) {
                debug!(id = ?evicted.id, "cache full; item evicted before validation");
                self.stats.items_evicted_pending += 1;
            }
        }
    }

    fn deliver(&mut self, client: ClientId, message_id: u16, data_type: u16, data: Bytes) {
        self.stats.deliveries += 1;
        self.events.push_back(Event::Deliver {
            client,
            message_id,
            data_type,
            data,
        });
    }

    fn spread_validated(&mut self, id: &ItemId) {
        self.items.settle(id, ItemState::Spread);
        self.stats.items_validated += 1;
        self.forward(id);
    }

    /// Pushes a cached item, one hop less, to `degree` random neighbours not known to
    /// have it (and not its origin). Does nothing if it has no hop left.
    fn forward(&mut self, id: &ItemId) {
        let Some(item) = self.items.get(id) else {
            return;
        };
        if item.hops == 0 {
            return;
        }
        let targets = self
            .membership
            .sample(&mut self.rng, self.config.degree, |p| {
                item.peers.contains(p) || *p == item.origin
            });
        let message = GossipPeerMessage::Announce {
            origin: item.origin,
            nonce: item.nonce,
            hops_left: item.hops - 1,
            data_type: item.data_type,
            data: item.data.clone(),
        };
        if let Some(item) = self.items.get_mut(id) {
            item.peers.extend(targets.iter().map(|c| c.id));
            item.sends = item.sends.saturating_add(targets.len() as u32);
        }
        for to in targets {
            self.stats.announces_sent += 1;
            self.send(to, message.clone());
        }
    }

    /// A NOTIFICATION message id not used by any pending item.
    fn alloc_message_id(&mut self) -> u16 {
        // Terminates: at most cache_size <= 65535 ids are in use.
        loop {
            let id = self.next_message_id;
            self.next_message_id = id.wrapping_add(1);
            if !self.items.message_id_in_use(id) {
                return id;
            }
        }
    }

    fn send(&mut self, to: Contact, message: GossipPeerMessage) {
        self.stats.messages_sent += 1;
        self.transmits.push_back(Transmit { to, message });
    }
}

#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tests;

/// Logs a listening address a peer claims that is not the one it was heard from (the
/// claim is not used: see `on_hello`).
fn note_claimed_addr(from: &Contact, claimed: SocketAddr) {
    if claimed != from.addr {
        debug!(peer = ?from.id, %claimed, heard_from = %from.addr, "claimed listening address ignored");
    }
}
