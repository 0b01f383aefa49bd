//! The task that owns one [`Kademlia`] state machine and pumps it: inputs from the API
//! (commands), from peers (inbound requests), from finished outbound requests, and from
//! its one timer; outputs to `net` (transmits), to waiting callers (events), and the
//! store changes to the disk and to the API's read path ([`LocalReads`]).

use super::reads::{Copy, LocalReads, Rank};
use super::transport::{reply_by_datagram, InFlight, Outcome, Transport};
use super::Command;
use crate::storage::{unix_ms, Completion, Storage, StoredRecord, StoredSigned};
use bytes::Bytes;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant as TokioInstant;
use tokio_util::sync::CancellationToken;
use voidmesh_kad::{Event, Kademlia, QueryId, RequestFailure, RequestId, StoreChange, Transmit};
use voidmesh_net::overlay::DatagramRequest;
use voidmesh_net::Inbound;
use voidmesh_proto::dht_api::PutSignedStatus;
use voidmesh_proto::signed::SignedRecord;
use voidmesh_proto::{Contact, KadMessage};

/// How often the routing table's contacts are written to disk (when they changed).
const CONTACT_SNAPSHOT_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// How often the state machine is told the Unix time (for signed records' expiry).
const UNIX_TIME_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// Most commands handled in one turn of the driver's loop before its outputs are drained
/// and the other inputs get a look in.
const COMMAND_BATCH: usize = 64;

/// What finished outside the driver and must be fed back into it.
enum Feedback {
    /// The outcome of one transmitted request.
    Response(RequestId, Result<KadMessage, RequestFailure>),
    /// The ids learned by pinging bootstrap addresses (unreachable ones are left out).
    SeedsResolved(
        Vec<Contact>,
        oneshot::Sender<Result<usize, super::BootstrapError>>,
    ),
}

/// Callers waiting for the end of an operation, by query.
#[derive(Default)]
struct Waiting {
    gets: HashMap<QueryId, oneshot::Sender<Option<(Bytes, Rank)>>>,
    signed_gets: HashMap<QueryId, oneshot::Sender<Option<SignedRecord>>>,
    signed_puts: HashMap<QueryId, oneshot::Sender<PutSignedStatus>>,
    puts: HashMap<QueryId, oneshot::Sender<super::PutReport>>,
    finds: HashMap<QueryId, oneshot::Sender<Vec<Contact>>>,
    bootstraps: HashMap<QueryId, oneshot::Sender<Result<usize, super::BootstrapError>>>,
}

/// The answers to the driver's datagram requests ([`InFlight`]).
pub(super) type Answers = mpsc::UnboundedReceiver<voidmesh_net::overlay::Answered>;

/// Owns the state machine; see the module doc.
pub(super) struct Driver {
    kad: Kademlia,
    transport: Transport,
    /// Datagram requests in flight (their answers come on the channel `run` reads).
    in_flight: InFlight,
    /// Durable copies of records and contacts (absent for in-memory test networks).
    storage: Option<Storage>,
    /// The records held, published for the API connections after every turn.
    reads: Arc<LocalReads>,
    /// Contacts as last written to disk, to skip rewriting an unchanged table.
    saved_contacts: Vec<Contact>,
    feedback_tx: mpsc::UnboundedSender<Feedback>,
    feedback_rx: mpsc::UnboundedReceiver<Feedback>,
    waiting: Waiting,
}

fn now() -> std::time::Instant {
    TokioInstant::now().into_std()
}

impl Driver {
    pub(super) fn new(
        kad: Kademlia,
        transport: Transport,
        storage: Option<Storage>,
        reads: Arc<LocalReads>,
    ) -> (Self, Answers) {
        let (feedback_tx, feedback_rx) = mpsc::unbounded_channel();
        let (in_flight, answers) = InFlight::new(kad.config().request_timeout * 4);
        // Records restored from disk before the driver started.
        for (key, record) in kad.records() {
            reads.publish(*key, Some(Copy::of(record, None)));
        }
        for (signed, record) in kad.signed_records() {
            reads.publish(signed.key(), Some(Copy::of(record, Some(signed))));
        }
        reads.set_local_is_final(kad.contact_count() == 0 || kad.config().read_quorum <= 1);
        let driver = Driver {
            in_flight,
            kad,
            transport,
            storage,
            reads,
            saved_contacts: Vec::new(),
            feedback_tx,
            feedback_rx,
            waiting: Waiting::default(),
        };
        (driver, answers)
    }

    /// Runs until `shutdown` fires or every command sender and the inbound channel close.
    pub(super) async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut answers: Answers,
        mut datagrams: mpsc::Receiver<DatagramRequest>,
        mut inbound: mpsc::Receiver<Inbound>,
        shutdown: CancellationToken,
    ) {
        let far_future = || TokioInstant::now() + std::time::Duration::from_secs(3600);
        let timer = tokio::time::sleep_until(far_future());
        tokio::pin!(timer);
        let mut clock = tokio::time::interval(UNIX_TIME_EVERY);
        clock.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut forget = tokio::time::interval(std::time::Duration::from_secs(5));
        forget.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut snapshot = tokio::time::interval(CONTACT_SNAPSHOT_EVERY);
        snapshot.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Created once: a fresh `cancelled()` per turn would register a waiter every time.
        let cancelled = shutdown.cancelled();
        tokio::pin!(cancelled);
        loop {
            let deadline = self
                .kad
                .poll_timeout()
                .map(TokioInstant::from_std)
                .unwrap_or_else(far_future);
            if timer.deadline() != deadline {
                timer.as_mut().reset(deadline);
            }
            tokio::select! {
                biased;
                _ = &mut cancelled => break,
                Some(answer) = answers.recv() => {
                    self.on_answer(answer);
                    // Take the answers already there in the same turn.
                    for _ in 1..COMMAND_BATCH {
                        let Ok(answer) = answers.try_recv() else { break };
                        self.on_answer(answer);
                    }
                }
                Some(feedback) = self.feedback_rx.recv() => self.on_feedback(feedback),
                Some(request) = datagrams.recv() => self.on_datagram(request),
                Some(request) = inbound.recv() => self.on_inbound(request),
                command = commands.recv() => match command {
                    Some(command) => {
                        self.on_command(command);
                        // Take the commands already queued in the same turn (API clients
                        // send many at once): one pass through the loop for all of them.
                        for _ in 1..COMMAND_BATCH {
                            let Ok(command) = commands.try_recv() else { break };
                            self.on_command(command);
                        }
                    }
                    None => break,
                },
                _ = &mut timer => self.kad.handle_timeout(now()),
                _ = snapshot.tick(), if self.storage.is_some() => self.save_contacts(),
                _ = forget.tick() => self.in_flight.forget_old(),
                _ = clock.tick() => self.kad.set_unix_time_ms(now(), unix_ms()),
            }
            self.drain();
        }
        self.save_contacts();
        self.transport.close();
    }

    fn on_command(&mut self, command: Command) {
        let now = now();
        match command {
            Command::Get { key, reply } => {
                let query = self.kad.get(now, key);
                self.waiting.gets.insert(query, reply);
            }
            Command::Put {
                key,
                value,
                ttl,
                replication,
                version,
                reply,
            } => {
                let query = self.kad.put(now, key, value, ttl, replication, version);
                // The state machine decided what it holds; once that is published, the
                // connection's note of the PUT is not needed for read-your-writes.
                self.apply_store_changes(now);
                self.reads.forget_put(&key, (false, version));
                if let Some(reply) = reply {
                    self.waiting.puts.insert(query, reply);
                }
            }
            Command::FindNode { target, reply } => {
                let query = self.kad.find_node(now, target);
                self.waiting.finds.insert(query, reply);
            }
            Command::Bootstrap { addrs, reply } => self.resolve_seeds(addrs, reply),
            Command::Contacts { reply } => {
                let _ = reply.send(self.kad.contacts());
            }
            Command::GetSigned { key, reply } => {
                let query = self.kad.get_signed(now, key);
                self.waiting.signed_gets.insert(query, reply);
            }
            Command::PutSigned {
                record,
                replication,
                reply,
            } => match self.kad.put_signed(now, record, replication) {
                Ok(query) => {
                    self.waiting.signed_puts.insert(query, reply);
                }
                Err(e) => {
                    tracing::debug!(error = %e, "signed record refused");
                    let _ = reply.send(PutSignedStatus::Invalid);
                }
            },
        }
    }

    /// Pings each bootstrap address without an expected id, learning the ids from the
    /// handshakes, then feeds the answering ones to `Kademlia::bootstrap`.
    fn resolve_seeds(
        &mut self,
        addrs: Vec<SocketAddr>,
        reply: oneshot::Sender<Result<usize, super::BootstrapError>>,
    ) {
        let transport = self.transport.clone();
        let feedback = self.feedback_tx.clone();
        tokio::spawn(async move {
            let pings = addrs.iter().map(|&addr| transport.resolve(addr));
            let seeds: Vec<Contact> = futures::future::join_all(pings)
                .await
                .into_iter()
                .flatten()
                .collect();
            let _ = feedback.send(Feedback::SeedsResolved(seeds, reply));
        });
    }

    fn on_feedback(&mut self, feedback: Feedback) {
        match feedback {
            Feedback::Response(request, outcome) => {
                self.kad.handle_response(now(), request, outcome)
            }
            Feedback::SeedsResolved(seeds, reply) => {
                if seeds.is_empty() {
                    let _ = reply.send(Err(super::BootstrapError::NoPeerAnswered));
                    return;
                }
                let query = self.kad.bootstrap(now(), &seeds);
                self.waiting.bootstraps.insert(query, reply);
            }
        }
    }

    /// A request that came as a datagram: answered the same way as one on a stream.
    fn on_datagram(&mut self, request: DatagramRequest) {
        let message = match KadMessage::decode(&request.payload) {
            Ok(message) => message,
            Err(e) => {
                tracing::debug!(peer = %request.from.id, error = %e, "malformed request dropped");
                return;
            }
        };
        let replier = request.replier;
        self.answer(request.from, message, move |reply| {
            reply_by_datagram(replier, &reply)
        });
    }

    fn on_inbound(&mut self, inbound: Inbound) {
        let Some(responder) = inbound.reply else {
            tracing::debug!(peer = %inbound.from, "one-way message on the DHT endpoint ignored");
            return;
        };
        let request = match KadMessage::decode(&inbound.message) {
            Ok(request) => request,
            Err(e) => {
                // Dropping the responder resets the stream: the peer learns nothing more.
                tracing::debug!(peer = %inbound.from, error = %e, "malformed request dropped");
                return;
            }
        };
        let from = Contact::new(inbound.key, inbound.addr);
        self.answer(from, request, move |reply| responder.send(reply.encode()));
    }

    /// Serves `request` from `from` and hands the reply to `respond` — once what a STORE
    /// changed is durable.
    fn answer(
        &mut self,
        from: Contact,
        request: KadMessage,
        respond: impl FnOnce(KadMessage) + Send + 'static,
    ) {
        let now = now();
        let reply = self.kad.handle_request(now, from, request);
        self.apply_store_changes(now);
        match (&self.storage, reply) {
            (Some(storage), KadMessage::StoreReply { key, stored: true }) => {
                storage.barrier(Box::new(move |ok| {
                    respond(KadMessage::StoreReply { key, stored: ok })
                }));
            }
            (_, reply) => respond(reply),
        }
    }

    /// Writes what the state machine's store changed to the read path and the disk.
    fn apply_store_changes(&mut self, now: std::time::Instant) {
        while let Some(change) = self.kad.poll_store_change() {
            let key = change.key();
            let held = match change {
                StoreChange::Held(_) => self.kad.held(&key).filter(|(r, _)| r.expires > now),
                StoreChange::Removed(..) => None,
            };
            self.reads
                .publish(key, held.map(|(record, signed)| Copy::of(record, signed)));
            let Some(storage) = &self.storage else {
                continue;
            };
            match held {
                Some((record, None)) => {
                    let left = record.expires.saturating_duration_since(now);
                    storage.put_record(
                        StoredRecord {
                            key,
                            value: record.value.clone(),
                            version: record.version,
                            expires_unix_ms: unix_ms().saturating_add(left.as_millis() as u64),
                            replication: record.replication,
                            publisher: record.publisher,
                        },
                        None,
                    );
                }
                Some((record, Some(signed))) => storage.put_signed(
                    StoredSigned {
                        record: signed.clone(),
                        replication: record.replication,
                        publisher: record.publisher,
                    },
                    None,
                ),
                None => storage.remove(key),
            }
        }
    }

    /// Hands every pending transmit to `net` and every finished operation to its caller.
    fn drain(&mut self) {
        self.apply_store_changes(now());
        let alone = self.kad.contact_count() == 0;
        self.reads
            .set_local_is_final(alone || self.kad.config().read_quorum <= 1);
        while let Some(transmit) = self.kad.poll_transmit() {
            self.send(transmit);
        }
        while let Some(event) = self.kad.poll_event() {
            self.deliver(event);
        }
    }

    /// Sends one request: as a datagram (no task; the answer comes on the answers
    /// channel), or over a stream in a task of its own when it does not fit.
    fn send(&mut self, transmit: Transmit) {
        match self.in_flight.send(
            &self.transport,
            transmit.request,
            transmit.to,
            &transmit.message,
        ) {
            Ok(None) => {}
            Ok(Some(failure)) => {
                let _ = self
                    .feedback_tx
                    .send(Feedback::Response(transmit.request, Err(failure)));
            }
            Err(bytes) => self.send_over_stream(transmit.request, transmit.to, bytes),
        }
    }

    fn send_over_stream(&self, request: RequestId, to: Contact, bytes: Bytes) {
        let transport = self.transport.clone();
        let feedback = self.feedback_tx.clone();
        tokio::spawn(async move {
            let outcome = transport.request_over_stream(to, bytes).await;
            let _ = feedback.send(Feedback::Response(request, outcome));
        });
    }

    fn on_answer(&mut self, answer: voidmesh_net::overlay::Answered) {
        match self.in_flight.on_answer(answer) {
            Outcome::Done(request, outcome) => {
                if let Err(failure) = &outcome {
                    tracing::debug!(?request, ?failure, "request failed");
                }
                self.kad.handle_response(now(), request, outcome);
            }
            Outcome::OverStream(request, to, bytes) => self.send_over_stream(request, to, bytes),
            Outcome::Stale => {}
        }
    }

    /// Writes the routing table's contacts to disk if they changed since last time.
    fn save_contacts(&mut self) {
        self.save_contacts_then(None);
    }

    /// Like [`Self::save_contacts`]; `done` runs once the contacts are durable (at once
    /// if there is nothing to write).
    fn save_contacts_then(&mut self, done: Option<Completion>) {
        let Some(storage) = &self.storage else {
            if let Some(done) = done {
                done(true);
            }
            return;
        };
        let mut contacts = self.kad.contacts();
        contacts.sort_by_key(|c| c.id);
        if contacts != self.saved_contacts || done.is_some() {
            let count = contacts.len();
            // Logged once durable: tests (and people) read it as "on disk now".
            let logged: Completion = Box::new(move |ok| {
                if ok {
                    tracing::debug!(count, "contacts saved");
                } else {
                    tracing::warn!(count, "contacts could not be saved");
                }
                if let Some(done) = done {
                    done(ok);
                }
            });
            storage.save_contacts(contacts.clone(), Some(logged));
            self.saved_contacts = contacts;
        }
    }

    fn deliver(&mut self, event: Event) {
        match event {
            Event::GetFinished {
                query,
                value,
                signed,
                version,
                ..
            } => {
                if let Some(reply) = self.waiting.gets.remove(&query) {
                    let rank = (signed.is_some(), version.unwrap_or_default());
                    let _ = reply.send(value.map(|v| (v, rank)));
                } else if let Some(reply) = self.waiting.signed_gets.remove(&query) {
                    let _ = reply.send(signed);
                }
            }
            Event::PutFinished {
                query,
                key,
                stored_remote,
                stored_local,
            } => {
                tracing::debug!(%key, stored_remote, stored_local, "PUT done");
                if let Some(reply) = self.waiting.signed_puts.remove(&query) {
                    let status = if stored_remote > 0 || stored_local {
                        PutSignedStatus::Stored
                    } else {
                        PutSignedStatus::NotStored
                    };
                    let _ = reply.send(status);
                }
                if let Some(reply) = self.waiting.puts.remove(&query) {
                    let _ = reply.send(super::PutReport {
                        stored_remote,
                        stored_local,
                    });
                }
            }
            Event::FindNodeFinished { query, closest, .. } => {
                if let Some(reply) = self.waiting.finds.remove(&query) {
                    let _ = reply.send(closest);
                }
            }
            Event::BootstrapFinished { query, contacts } => {
                if let Some(reply) = self.waiting.bootstraps.remove(&query) {
                    // Report the join only once the contacts that allow rejoining without
                    // the bootstrapper are on disk.
                    self.save_contacts_then(Some(Box::new(move |_| {
                        let _ = reply.send(Ok(contacts));
                    })));
                }
            }
        }
    }
}
