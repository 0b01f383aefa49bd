//! The task that owns one [`Gossip`] state machine and pumps it: API client commands,
//! one-way peer messages, send failures, proof-of-work results and its timer in; sends to
//! `net`, notifications to clients and peer disconnections out.
//!
//! Peer messages travel as datagrams on the module's one socket when they fit: each is a
//! request the receiver acknowledges with an empty reply (so a send that is not
//! acknowledged counts as a failed peer), and an empty request is a liveness check.
//! Messages too large for a datagram (big items) go as one-way QUIC streams on the same
//! port.

use super::{Command, Notification, Waiting};
use bytes::Bytes;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio::time::Instant as TokioInstant;
use tokio_util::sync::CancellationToken;
use voidmesh_gossip::{solve_pow, ClientId, Event, Gossip, Proof, Transmit};
use voidmesh_net::overlay::{DatagramRequest, Overlay, OverlayError, MAX_REQUEST_PAYLOAD};
use voidmesh_net::{Endpoint, Inbound};
use voidmesh_proto::{Contact, GossipPeerMessage, NodeId};

/// What finished outside the driver and must be fed back into it.
enum Feedback {
    /// Sending to this peer failed (unreachable, wrong id, connection lost).
    PeerFailed(NodeId),
    /// A proof of work was computed.
    Proof(Proof),
    /// Ids learned by connecting to known peer addresses.
    KnownPeers(Vec<Contact>),
}

/// Owns the state machine; see the module doc.
pub(super) struct Driver {
    gossip: Gossip,
    overlay: Overlay,
    endpoint: Endpoint,
    clients: HashMap<ClientId, (mpsc::Sender<Notification>, Arc<Waiting>)>,
    feedback_tx: mpsc::UnboundedSender<Feedback>,
    feedback_rx: mpsc::UnboundedReceiver<Feedback>,
}

fn now() -> std::time::Instant {
    TokioInstant::now().into_std()
}

impl Driver {
    pub(super) fn new(gossip: Gossip, overlay: Overlay, endpoint: Endpoint) -> Self {
        let (feedback_tx, feedback_rx) = mpsc::unbounded_channel();
        Driver {
            gossip,
            overlay,
            endpoint,
            clients: HashMap::new(),
            feedback_tx,
            feedback_rx,
        }
    }

    /// Runs until `shutdown` fires or every handle is gone.
    pub(super) async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut datagrams: mpsc::Receiver<DatagramRequest>,
        mut inbound: mpsc::Receiver<Inbound>,
        shutdown: CancellationToken,
    ) {
        let far_future = || TokioInstant::now() + std::time::Duration::from_secs(3600);
        let timer = tokio::time::sleep_until(far_future());
        tokio::pin!(timer);
        let mut liveness = tokio::time::interval(self.gossip.config().search_cooldown);
        liveness.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // `Gossip::new` already asked for a proof of work.
        self.drain();
        loop {
            let deadline = self
                .gossip
                .poll_timeout()
                .map(TokioInstant::from_std)
                .unwrap_or_else(far_future);
            if timer.deadline() != deadline {
                timer.as_mut().reset(deadline);
            }
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                Some(feedback) = self.feedback_rx.recv() => self.on_feedback(feedback),
                Some(request) = datagrams.recv() => self.on_datagram(request),
                Some(message) = inbound.recv() => self.on_inbound(message),
                command = commands.recv() => match command {
                    Some(command) => self.on_command(command),
                    None => break,
                },
                _ = &mut timer => self.gossip.handle_timeout(now()),
                _ = liveness.tick() => self.check_neighbours(),
            }
            self.drain();
        }
        self.endpoint.close();
        self.overlay.close();
    }

    /// Forgets a local client the module will not feed any more: its channel closes, so
    /// its API connection ends.
    fn drop_client(&mut self, client: ClientId, why: &str) {
        tracing::warn!(?client, "dropping a gossip API client: {why}");
        self.clients.remove(&client);
        self.gossip.client_disconnected(now(), client);
    }

    fn on_command(&mut self, command: Command) {
        let now = now();
        match command {
            Command::Connect {
                client,
                deliveries,
                waiting,
            } => {
                self.clients.insert(client, (deliveries, waiting));
            }
            Command::Notify { client, data_types } => {
                for data_type in data_types {
                    self.gossip.client_notify(now, client, data_type);
                }
            }
            Command::Announce {
                client,
                ttl,
                data_type,
                data,
            } => {
                let _ = self
                    .gossip
                    .client_announce(now, client, ttl, data_type, data);
            }
            Command::Validation {
                client,
                message_id,
                valid,
            } => self
                .gossip
                .client_validation(now, client, message_id, valid),
            Command::Disconnect { client } => {
                self.clients.remove(&client);
                self.gossip.client_disconnected(now, client);
            }
            Command::KnownPeers { addrs } => self.learn_ids(addrs),
            Command::View { reply } => {
                let _ = reply.send(self.gossip.view());
            }
            Command::Stats { reply } => {
                let _ = reply.send(self.gossip.stats().clone());
            }
        }
    }

    /// Asks each address which key answers there and proves it with a liveness check
    /// sealed for that key, then offers the answering peers to the state machine.
    fn learn_ids(&self, addrs: Vec<SocketAddr>) {
        let overlay = self.overlay.clone();
        let feedback = self.feedback_tx.clone();
        tokio::spawn(async move {
            let attempts = addrs.into_iter().map(|addr| {
                let overlay = overlay.clone();
                async move {
                    let proved = async {
                        let key = overlay.probe(addr).await?;
                        overlay.request(&key, addr, Bytes::new(), 0).await?;
                        Ok::<_, OverlayError>(Contact::new(key, addr))
                    };
                    match proved.await {
                        Ok(contact) => Some(contact),
                        Err(e) => {
                            tracing::warn!(%addr, error = %e, "gossip peer unreachable");
                            None
                        }
                    }
                }
            });
            let found: Vec<Contact> = futures::future::join_all(attempts)
                .await
                .into_iter()
                .flatten()
                .collect();
            let _ = feedback.send(Feedback::KnownPeers(found));
        });
    }

    /// Confirms every neighbour is still reachable (an empty request, answered with an
    /// empty reply); a neighbour that does not answer is reported as failed, so departures
    /// are noticed even when no item is being sent.
    fn check_neighbours(&self) {
        for peer in self.gossip.view() {
            let overlay = self.overlay.clone();
            let feedback = self.feedback_tx.clone();
            tokio::spawn(async move {
                if let Err(e) = overlay.request(&peer.key, peer.addr, Bytes::new(), 0).await {
                    tracing::debug!(peer = %peer.id, error = %e, "neighbour unreachable");
                    let _ = feedback.send(Feedback::PeerFailed(peer.id));
                }
            });
        }
    }

    fn on_feedback(&mut self, feedback: Feedback) {
        let now = now();
        match feedback {
            Feedback::PeerFailed(peer) => self.gossip.peer_failed(now, peer),
            Feedback::Proof(proof) => self.gossip.set_proof(now, proof),
            Feedback::KnownPeers(contacts) => self.gossip.add_known_peers(now, &contacts),
        }
    }

    /// A datagram from a peer: an empty one is a liveness check; any other is one gossip
    /// message. Both are acknowledged with an empty reply (a malformed one is not).
    fn on_datagram(&mut self, request: DatagramRequest) {
        let now = now();
        if request.payload.is_empty() {
            let _ = request.replier.send(&[]);
            return;
        }
        match GossipPeerMessage::decode(&request.payload) {
            Ok(message) => {
                let _ = request.replier.send(&[]);
                self.gossip.handle_message(now, request.from, message);
            }
            Err(e) => {
                tracing::debug!(peer = %request.from.id, error = %e, "malformed gossip datagram");
                self.gossip.handle_malformed(now, request.from.id);
            }
        }
    }

    fn on_inbound(&mut self, inbound: Inbound) {
        let now = now();
        if inbound.reply.is_some() {
            // Gossip is one-way only; a request on this endpoint is a protocol violation.
            self.gossip.handle_malformed(now, inbound.from);
            return;
        }
        match GossipPeerMessage::decode(&inbound.message) {
            Ok(message) => {
                let from = Contact::new(inbound.key, inbound.addr);
                self.gossip.handle_message(now, from, message);
            }
            Err(e) => {
                tracing::debug!(peer = %inbound.from, error = %e, "malformed gossip message");
                self.gossip.handle_malformed(now, inbound.from);
            }
        }
    }

    fn drain(&mut self) {
        while let Some(transmit) = self.gossip.poll_transmit() {
            self.send(transmit);
        }
        while let Some(event) = self.gossip.poll_event() {
            self.on_event(event);
        }
    }

    fn send(&self, transmit: Transmit) {
        let overlay = self.overlay.clone();
        let endpoint = self.endpoint.clone();
        let feedback = self.feedback_tx.clone();
        tokio::spawn(async move {
            let to = transmit.to;
            let bytes = transmit.message.encode();
            let outcome = if bytes.len() <= MAX_REQUEST_PAYLOAD {
                overlay
                    .request(&to.key, to.addr, bytes, 0)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            } else {
                endpoint
                    .send(to.addr, Some(to.id), bytes)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            };
            if let Err(e) = outcome {
                tracing::debug!(peer = %to.id, error = %e, "gossip send failed");
                let _ = feedback.send(Feedback::PeerFailed(to.id));
            }
        });
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::Deliver {
                client,
                message_id,
                data_type,
                data,
            } => {
                let Some((queue, waiting)) = self.clients.get(&client) else {
                    return;
                };
                let len = data.len();
                let note = Notification {
                    message_id,
                    data_type,
                    data,
                };
                match waiting.add(len) {
                    Ok(()) => match queue.try_send(note) {
                        Ok(()) => {}
                        Err(_) => {
                            waiting.release(len);
                            self.drop_client(client, "its queue is full");
                        }
                    },
                    Err(true) => self.drop_client(client, "it does not read its notifications"),
                    Err(false) => tracing::warn!(
                        ?client,
                        "all clients together have too much waiting; notification dropped"
                    ),
                }
            }
            Event::DisconnectPeer { peer, reason } => {
                tracing::info!(%peer, ?reason, "dropping gossip peer");
                self.endpoint.disconnect(&peer);
            }
            Event::PeerJoined { peer } => tracing::debug!(peer = %peer.id, "neighbour joined"),
            Event::PeerLeft { peer } => tracing::debug!(%peer, "neighbour left"),
            Event::ProofNeeded { unix_secs } => {
                let id = self.gossip.local_id();
                let difficulty = self.gossip.config().pow_difficulty;
                let feedback = self.feedback_tx.clone();
                // Solving may take a while at real difficulties: keep it off the event loop.
                tokio::task::spawn_blocking(move || {
                    let proof = solve_pow(&id, unix_secs, difficulty);
                    let _ = feedback.send(Feedback::Proof(proof));
                });
            }
        }
    }
}
