//! The running chat engine: one task that owns the sessions, rooms and presence, takes
//! [`Command`]s from the user interface, messages from the chat endpoint and room posts
//! from gossip, and reports [`Event`]s. Anything that waits on the network runs in its
//! own task and reports back, so the engine (and the UI) never waits on a slow peer.

use crate::command::{Command, Target};
use crate::event::{Absence, Event};
use crate::history::{Direction, Entry, History};
use crate::presence::{
    check_directory_entry, check_presence, directory_key, presence_key, Found, Presence,
};
use crate::room::{check_post, room_data_type, sign_post, ROOM_TYPES};
use crate::session::{self, Caller};
use crate::sessions::{Agreed, Session, Sessions};
use crate::user::{Handle, UserKey};
use bytes::Bytes;
use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};
use voidmesh_net::{Endpoint, Inbound, NetError};
use voidmesh_node::dht::DhtHandle;
use voidmesh_node::gossip::{GossipClient, GossipHandle, Notification};
use voidmesh_proto::chat_msg::{refusal, ChatMessage, SessionId};
use voidmesh_proto::NodeId;

/// ALPN protocol name of chat sessions.
pub const CHAT_ALPN: &[u8] = b"voidmesh-chat/1";

/// Chat settings (`[chat]` in the config file).
#[derive(Debug, Clone)]
pub struct ChatConfig {
    /// How often the presence record is published again while online.
    pub republish: Duration,
    /// How long a published presence record lives.
    pub presence_ttl: Duration,
    /// Longest text accepted or sent, in bytes.
    pub max_message_bytes: usize,
    /// How long a session request (open, text, end) may take before it fails.
    pub request_timeout: Duration,
    /// Nodes that store the presence record.
    pub replication: u8,
    /// Messages `/history` shows.
    pub history_limit: usize,
}

impl Default for ChatConfig {
    /// Republish every 5 minutes, TTL 15 minutes, 4096-byte texts, 5 s requests,
    /// replication 20, 50 history lines.
    fn default() -> Self {
        ChatConfig {
            republish: Duration::from_secs(300),
            presence_ttl: Duration::from_secs(900),
            max_message_bytes: 4096,
            request_timeout: Duration::from_secs(5),
            replication: 20,
            history_limit: 50,
        }
    }
}

/// The user interface's side of a running engine: requests go in, events come out.
pub struct ChatUi {
    /// Requests to the engine.
    pub commands: mpsc::Sender<Command>,
    /// Events from the engine; ends after [`Event::Stopped`].
    pub events: mpsc::Receiver<Event>,
}

/// What the engine is built from.
pub struct Parts {
    /// The user's key.
    pub user: UserKey,
    /// The name chosen for this session.
    pub name: String,
    /// The DHT (presence, lookups).
    pub dht: DhtHandle,
    /// The gossip module (rooms).
    pub gossip: GossipHandle,
    /// The chat endpoint (ALPN [`CHAT_ALPN`]) and its inbound messages.
    pub endpoint: Endpoint,
    /// Inbound chat messages of `endpoint`.
    pub inbound: mpsc::Receiver<Inbound>,
    /// The addresses published in the presence record.
    pub chat_addrs: Vec<SocketAddr>,
    /// The gossip address published in the presence record.
    pub gossip_addr: Option<SocketAddr>,
    /// The history database.
    pub history: History,
}

/// Events queued for the UI; the engine waits when the UI does not read.
const EVENT_QUEUE: usize = 1024;
/// How soon presence is published again when no remote node took it.
const PUBLISH_RETRY: Duration = Duration::from_secs(2);
/// Room posts remembered to drop repeats.
const SEEN_POSTS: usize = 4096;

/// Starts the engine; it publishes presence, then reports [`Event::Ready`].
///
/// # Errors
/// [`crate::ChatError::Start`] when the gossip module has stopped.
pub async fn start(parts: Parts, config: ChatConfig) -> Result<ChatUi, crate::ChatError> {
    let gossip_client = parts
        .gossip
        .connect()
        .await
        .map_err(|e| crate::ChatError::Start(e.to_string()))?;
    // Every chat peer relays every room: gossip forwards only the data types a local client
    // validates, so taking them all (and checking each post's signature) lets posts cross
    // peers that are not in the room. Only joined rooms are shown.
    gossip_client
        .notify_range(ROOM_TYPES)
        .await
        .map_err(|e| crate::ChatError::Start(e.to_string()))?;
    let (command_tx, command_rx) = mpsc::channel(64);
    let (event_tx, event_rx) = mpsc::channel(EVENT_QUEUE);
    let (done_tx, done_rx) = mpsc::channel(256);
    let me = Handle::new(&parts.name, &parts.user.public_key());
    let engine = Engine {
        me,
        node: parts.endpoint.node_id(),
        user: parts.user,
        name: parts.name,
        dht: parts.dht,
        gossip: parts.gossip,
        gossip_client,
        endpoint: parts.endpoint,
        chat_addrs: parts.chat_addrs,
        gossip_addr: parts.gossip_addr,
        history: parts.history,
        config,
        events: event_tx,
        done: done_tx,
        sessions: Sessions::default(),
        rooms: HashSet::new(),
        seen_posts: HashSet::new(),
        seen_order: VecDeque::new(),
        presence_seq: 0,
        ready: false,
        retry_pending: false,
    };
    tokio::spawn(engine.run(command_rx, parts.inbound, done_rx));
    Ok(ChatUi {
        commands: command_tx,
        events: event_rx,
    })
}

/// Results of the tasks the engine spawns.
enum Done {
    Published {
        result: Result<bool, String>,
    },
    /// Time to publish presence again after a publication no remote node took.
    RetryPublish,
    Looked {
        handle: Handle,
        result: Result<Found, Absence>,
        then_open: bool,
    },
    Opened {
        handle: Handle,
        id: SessionId,
        result: Result<Session, String>,
    },
    Sent {
        to: Handle,
        seq: u64,
        result: Result<(), SendFailure>,
    },
}

/// Why a text was not delivered.
enum SendFailure {
    /// The peer does not know the session any more.
    NoSession,
    /// Anything else.
    Other(String),
}

struct Engine {
    me: Handle,
    node: NodeId,
    user: UserKey,
    name: String,
    dht: DhtHandle,
    gossip: GossipHandle,
    gossip_client: GossipClient,
    endpoint: Endpoint,
    chat_addrs: Vec<SocketAddr>,
    gossip_addr: Option<SocketAddr>,
    history: History,
    config: ChatConfig,
    events: mpsc::Sender<Event>,
    done: mpsc::Sender<Done>,
    sessions: Sessions,
    rooms: HashSet<String>,
    seen_posts: HashSet<([u8; 32], u64)>,
    seen_order: VecDeque<([u8; 32], u64)>,
    presence_seq: u64,
    ready: bool,
    /// A [`Done::RetryPublish`] is on its way.
    retry_pending: bool,
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Engine {
    async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut inbound: mpsc::Receiver<Inbound>,
        mut done: mpsc::Receiver<Done>,
    ) {
        self.publish_presence(true);
        let mut republish = tokio::time::interval(self.config.republish);
        republish.tick().await;
        loop {
            tokio::select! {
                command = commands.recv() => match command {
                    Some(Command::Quit) | None => break,
                    Some(command) => self.on_command(command).await,
                },
                Some(msg) = inbound.recv() => self.on_inbound(msg).await,
                Some(item) = self.gossip_client.notifications.recv() => self.on_room_item(item).await,
                Some(result) = done.recv() => self.on_done(result).await,
                _ = republish.tick() => self.publish_presence(true),
            }
        }
        self.quit().await;
    }

    async fn emit(&self, event: Event) {
        let _ = self.events.send(event).await;
    }

    fn caller(&self) -> Caller<'_> {
        Caller {
            user: &self.user,
            name: &self.name,
            node: self.node,
        }
    }

    /// Publishes the presence record (online, or a tombstone) and the directory entry
    /// in a task; the outcome comes back as [`Done::Published`].
    fn publish_presence(&mut self, online: bool) {
        let Some(publishing) = self.publishing(online) else {
            return;
        };
        let done = self.done.clone();
        tokio::spawn(async move {
            let result = publishing.await;
            let _ = done.send(Done::Published { result }).await;
        });
    }

    /// The work of publishing a freshly signed presence record (online, or a tombstone)
    /// and the directory entry; `Ok(true)` once a remote node holds the entry.
    fn publishing(
        &mut self,
        online: bool,
    ) -> Option<impl std::future::Future<Output = Result<bool, String>> + Send + 'static> {
        let record = self.presence_record(online)?;
        let dht = self.dht.clone();
        let directory = directory_key(&self.me);
        let entry = Bytes::copy_from_slice(&self.user.public_key());
        let (ttl, replication) = (self.config.presence_ttl, self.config.replication);
        Some(async move { publish(&dht, record, directory, entry, ttl, replication).await })
    }

    /// Tells the peer of `session` that it ended; best effort, the answer does not matter.
    fn say_end(&self, session: &Session) -> impl std::future::Future<Output = ()> + Send + 'static {
        let endpoint = self.endpoint.clone();
        let (addr, node) = (session.addr, session.node);
        let message = ChatMessage::SessionEnd {
            session: session.id,
        }
        .encode();
        async move {
            let _ = endpoint.request(addr, Some(node), message).await;
        }
    }

    /// A freshly signed presence record with a sequence number above every earlier one
    /// (wall-clock milliseconds, so it also rises across restarts).
    fn presence_record(&mut self, online: bool) -> Option<voidmesh_proto::SignedRecord> {
        self.presence_seq = unix_ms().max(self.presence_seq + 1);
        let presence = Presence {
            online,
            node_id: self.node,
            chat_addrs: self.chat_addrs.clone(),
            gossip_addr: self.gossip_addr,
        };
        // Rounded up to the next whole second: the record never lives less than asked.
        let ttl_ms = u64::try_from(self.config.presence_ttl.as_millis()).unwrap_or(u64::MAX);
        let expiry = unix_ms().saturating_add(ttl_ms.max(1000)).div_ceil(1000);
        match presence.sign(&self.user, &self.name, self.presence_seq, expiry) {
            Ok(record) => Some(record),
            Err(e) => {
                warn!(error = %e, "cannot sign presence");
                None
            }
        }
    }

    async fn on_command(&mut self, command: Command) {
        match command {
            Command::Find(handle) => self.look_up(handle, false),
            Command::Open(handle) => {
                if self.sessions.is_open(&handle) {
                    self.emit(Event::Info(format!(
                        "a session with {handle} is open already"
                    )))
                    .await;
                } else {
                    self.look_up(handle, true);
                }
            }
            Command::Send { to, text } => self.send(to, text).await,
            Command::End(handle) => self.end(&handle).await,
            Command::Sessions => {
                let sessions = self.sessions.peers();
                let mut rooms: Vec<String> = self.rooms.iter().cloned().collect();
                rooms.sort();
                self.emit(Event::Sessions { sessions, rooms }).await;
            }
            Command::History(target) => {
                let event = match self
                    .history
                    .conversation(&target.to_string(), self.config.history_limit)
                {
                    Ok(entries) => Event::History { target, entries },
                    Err(e) => Event::Error(e.to_string()),
                };
                self.emit(event).await;
            }
            Command::Join(room) => {
                self.rooms.insert(room.clone());
                self.emit(Event::Joined(room)).await;
            }
            Command::Leave(room) => {
                // Posts of the room still arrive and are relayed (see `start`), unshown.
                if self.rooms.remove(&room) {
                    self.emit(Event::Left(room)).await;
                } else {
                    self.emit(Event::Error(format!("not in #{room}"))).await;
                }
            }
            Command::Quit => {}
        }
    }

    /// Looks `handle` up in a task; with `then_open`, a session follows if found.
    fn look_up(&self, handle: Handle, then_open: bool) {
        let dht = self.dht.clone();
        let done = self.done.clone();
        tokio::spawn(async move {
            let result = find(&dht, &handle).await;
            let _ = done
                .send(Done::Looked {
                    handle,
                    result,
                    then_open,
                })
                .await;
        });
    }

    async fn send(&mut self, to: Target, text: String) {
        if text.len() > self.config.max_message_bytes {
            let reason = format!(
                "message too long: {} bytes, the limit is {}",
                text.len(),
                self.config.max_message_bytes
            );
            self.emit(Event::Failed { to, seq: 0, reason }).await;
            return;
        }
        match to {
            Target::Room(room) => self.post(room, text).await,
            Target::User(handle) => {
                let Some(session) = self.sessions.get_mut(&handle) else {
                    self.emit(Event::Error(format!(
                        "no session with {handle}: /chat {handle} first"
                    )))
                    .await;
                    return;
                };
                session.sent += 1;
                let seq = session.sent;
                let sent_at_ms = unix_ms();
                let message = ChatMessage::Text {
                    session: session.id,
                    seq,
                    sent_at_ms,
                    text: text.clone(),
                };
                let (addr, node, id) = (session.addr, session.node, session.id);
                self.store(
                    Direction::Out,
                    &Target::User(handle.clone()),
                    &self.me.to_string(),
                    sent_at_ms,
                    &text,
                    "sent",
                    Some(&local_ref(&id, seq)),
                );
                self.emit(Event::Sent {
                    to: Target::User(handle.clone()),
                    seq,
                    text,
                })
                .await;
                let endpoint = self.endpoint.clone();
                let done = self.done.clone();
                let timeout = self.config.request_timeout;
                tokio::spawn(async move {
                    let result = deliver(&endpoint, addr, node, message, id, seq, timeout).await;
                    let _ = done
                        .send(Done::Sent {
                            to: handle,
                            seq,
                            result,
                        })
                        .await;
                });
            }
        }
    }

    async fn post(&mut self, room: String, text: String) {
        if !self.rooms.contains(&room) {
            self.emit(Event::Error(format!("not in #{room}: /join #{room} first")))
                .await;
            return;
        }
        let sent_at_ms = unix_ms();
        let post = sign_post(
            &self.user,
            &self.name,
            &room,
            &text,
            sent_at_ms,
            rand::random(),
        );
        self.remember_post(post.author_key, post.nonce);
        let target = Target::Room(room.clone());
        self.store(
            Direction::Out,
            &target,
            &self.me.to_string(),
            sent_at_ms,
            &text,
            "delivered",
            None,
        );
        self.emit(Event::Sent {
            to: target.clone(),
            seq: post.nonce,
            text,
        })
        .await;
        let outcome = self
            .gossip_client
            .announce(0, room_data_type(&room), post.encode())
            .await;
        match outcome {
            Ok(()) => {
                self.emit(Event::Delivered {
                    to: target,
                    seq: post.nonce,
                })
                .await
            }
            Err(e) => {
                self.emit(Event::Failed {
                    to: target,
                    seq: post.nonce,
                    reason: e.to_string(),
                })
                .await
            }
        }
    }

    /// Remembers a post; false if it was seen before.
    fn remember_post(&mut self, author: [u8; 32], nonce: u64) -> bool {
        if !self.seen_posts.insert((author, nonce)) {
            return false;
        }
        self.seen_order.push_back((author, nonce));
        if self.seen_order.len() > SEEN_POSTS {
            if let Some(old) = self.seen_order.pop_front() {
                self.seen_posts.remove(&old);
            }
        }
        true
    }

    async fn end(&mut self, handle: &Handle) {
        let Some(session) = self.sessions.end(handle) else {
            self.emit(Event::Error(format!("no session with {handle}")))
                .await;
            return;
        };
        tokio::spawn(self.say_end(&session));
        self.emit(Event::SessionEnded {
            peer: handle.clone(),
            by_peer: false,
        })
        .await;
    }

    #[allow(clippy::too_many_arguments)]
    fn store(
        &self,
        direction: Direction,
        conversation: &Target,
        author: &str,
        at_ms: u64,
        text: &str,
        status: &str,
        local_ref: Option<&str>,
    ) {
        let entry = Entry {
            direction,
            conversation: conversation.to_string(),
            author: author.to_owned(),
            at_ms,
            text: text.to_owned(),
            status: status.to_owned(),
        };
        if let Err(e) = self.history.add(&entry, local_ref) {
            warn!(error = %e, "cannot store a message in the history");
        }
    }

    async fn on_done(&mut self, done: Done) {
        match done {
            Done::Published { result } => match result {
                Ok(replicated) if !self.ready => {
                    self.retry_unless(replicated);
                    self.ready = true;
                    let addr = self
                        .chat_addrs
                        .first()
                        .copied()
                        .unwrap_or_else(|| self.endpoint.local_addr());
                    self.emit(Event::Ready {
                        me: self.me.clone(),
                        addr,
                    })
                    .await;
                }
                Ok(replicated) => {
                    self.retry_unless(replicated);
                    debug!(replicated, "presence republished");
                }
                Err(e) => {
                    warn!(error = %e, "presence not published");
                    self.emit(Event::Error(format!("presence not published: {e}")))
                        .await;
                }
            },
            Done::RetryPublish => {
                self.retry_pending = false;
                self.publish_presence(true);
            }
            Done::Looked {
                handle,
                result,
                then_open,
            } => match result {
                Ok(found) => {
                    if let Some(gossip_addr) = found.presence.gossip_addr {
                        // Everyone we find is a candidate gossip neighbour for rooms.
                        let _ = self.gossip.add_known_peers(vec![gossip_addr]).await;
                    }
                    let addr = found.presence.chat_addrs[0];
                    if then_open {
                        self.open(handle, found);
                    } else {
                        self.emit(Event::Found { handle, addr }).await;
                    }
                }
                Err(why) => {
                    if then_open {
                        self.emit(Event::Failed {
                            to: Target::User(handle.clone()),
                            seq: 0,
                            reason: format!("cannot open a session: {why}"),
                        })
                        .await;
                    }
                    self.emit(Event::NotFound { handle, why }).await;
                }
            },
            Done::Opened { handle, id, result } => match result {
                Ok(opened) => {
                    self.sessions.withdraw(&id);
                    let agreed =
                        self.sessions
                            .agreed(handle.clone(), opened.id, opened.node, opened.addr);
                    // Joined: the peer opened one at the same moment, already shown.
                    if agreed == Agreed::New {
                        self.emit(Event::SessionOpened {
                            peer: handle,
                            by_peer: false,
                        })
                        .await;
                    }
                }
                Err(reason) => {
                    self.sessions.withdraw(&id);
                    self.emit(Event::Failed {
                        to: Target::User(handle),
                        seq: 0,
                        reason: format!("cannot open a session: {reason}"),
                    })
                    .await
                }
            },
            Done::Sent { to, seq, result } => {
                let id = self.sessions.current_id(&to);
                let reference = id.map(|id| local_ref(&id, seq));
                let target = Target::User(to.clone());
                match result {
                    Ok(()) => {
                        if let Some(r) = &reference {
                            let _ = self.history.set_status(r, "delivered");
                        }
                        self.emit(Event::Delivered { to: target, seq }).await;
                    }
                    Err(failure) => {
                        if let Some(r) = &reference {
                            let _ = self.history.set_status(r, "failed");
                        }
                        let gone = matches!(failure, SendFailure::NoSession);
                        let reason = match failure {
                            SendFailure::NoSession => "the peer has no such session".to_owned(),
                            SendFailure::Other(reason) => reason,
                        };
                        self.emit(Event::Failed {
                            to: target,
                            seq,
                            reason,
                        })
                        .await;
                        if gone && self.sessions.end(&to).is_some() {
                            self.emit(Event::SessionEnded {
                                peer: to,
                                by_peer: true,
                            })
                            .await;
                        }
                    }
                }
            }
        }
    }

    /// Until presence reached another node (the first peer of a network is alone when it
    /// starts), publishes again every [`PUBLISH_RETRY`] rather than every `republish`.
    fn retry_unless(&mut self, replicated: bool) {
        if replicated || self.retry_pending {
            return;
        }
        self.retry_pending = true;
        let done = self.done.clone();
        tokio::spawn(async move {
            tokio::time::sleep(PUBLISH_RETRY).await;
            let _ = done.send(Done::RetryPublish).await;
        });
    }

    /// Opens a session with a user just found, in a task.
    fn open(&mut self, handle: Handle, found: Found) {
        let id: SessionId = rand::random();
        let node = found.presence.node_id;
        let addr = found.presence.chat_addrs[0];
        self.sessions.offer(handle.clone(), id, node, addr);
        let message = session::open(&self.caller(), id, found.public_key, &handle.name, &node);
        let endpoint = self.endpoint.clone();
        let done = self.done.clone();
        let (user, name, me_node) = (self.user.clone(), self.name.clone(), self.node);
        let timeout = self.config.request_timeout;
        tokio::spawn(async move {
            let result = match tokio::time::timeout(
                timeout,
                endpoint.request(addr, Some(node), message.encode()),
            )
            .await
            {
                Err(_) => Err("no answer".to_owned()),
                Ok(Err(e)) => Err(e.to_string()),
                Ok(Ok(response)) => ChatMessage::decode(&response.message)
                    .map_err(|e| format!("malformed answer: {e}"))
                    .and_then(|reply| {
                        let me = Caller {
                            user: &user,
                            name: &name,
                            node: me_node,
                        };
                        session::check_accept(
                            &reply,
                            &id,
                            &handle,
                            &found.public_key,
                            &response.from,
                            &me,
                        )
                    })
                    .map(|()| Session {
                        id,
                        node,
                        addr,
                        sent: 0,
                    }),
            };
            let _ = done.send(Done::Opened { handle, id, result }).await;
        });
    }

    async fn on_inbound(&mut self, inbound: Inbound) {
        let Inbound {
            from,
            addr,
            message,
            reply,
            ..
        } = inbound;
        let msg = match ChatMessage::decode(&message) {
            Ok(msg) => msg,
            Err(e) => {
                info!(peer = %from, error = %e, "malformed chat message: disconnecting the peer");
                self.endpoint.disconnect(&from);
                return;
            }
        };
        let Some(reply) = reply else {
            info!(peer = %from, "one-way chat message: disconnecting the peer");
            self.endpoint.disconnect(&from);
            return;
        };
        let refuse = |code: u16, reason: String| ChatMessage::Refused { code, reason }.encode();
        match msg {
            ChatMessage::SessionOpen { session: id, .. } => {
                match session::check_open(&msg, &from, &self.caller()) {
                    Ok((peer, _key)) => {
                        reply.send(session::accept(&self.caller(), id, &from).encode());
                        // Joined: we opened one at the same moment; it is one session.
                        if self.sessions.agreed(peer.clone(), id, from, addr) == Agreed::New {
                            self.emit(Event::SessionOpened {
                                peer,
                                by_peer: true,
                            })
                            .await;
                        }
                    }
                    Err((code, reason)) => {
                        info!(peer = %from, %reason, "session refused");
                        reply.send(refuse(code, reason));
                    }
                }
            }
            ChatMessage::Text {
                session: id,
                seq,
                sent_at_ms,
                text,
            } => {
                let Some(peer) = self.session_peer(&id, &from).await else {
                    reply.send(refuse(refusal::NO_SESSION, "no such session".into()));
                    return;
                };
                if text.len() > self.config.max_message_bytes {
                    reply.send(refuse(
                        refusal::TOO_LARGE,
                        format!(
                            "message too long: the limit is {} bytes",
                            self.config.max_message_bytes
                        ),
                    ));
                    return;
                }
                reply.send(ChatMessage::Ack { session: id, seq }.encode());
                let conversation = Target::User(peer.clone());
                self.store(
                    Direction::In,
                    &conversation,
                    &peer.to_string(),
                    sent_at_ms,
                    &text,
                    "received",
                    None,
                );
                self.emit(Event::Received {
                    from: peer,
                    sent_at_ms,
                    text,
                })
                .await;
            }
            ChatMessage::SessionEnd { session: id } => {
                reply.send(
                    ChatMessage::Ack {
                        session: id,
                        seq: 0,
                    }
                    .encode(),
                );
                if let Some(peer) = self.session_peer(&id, &from).await {
                    self.sessions.end(&peer);
                    self.emit(Event::SessionEnded {
                        peer,
                        by_peer: true,
                    })
                    .await;
                }
            }
            ChatMessage::SessionAccept { .. }
            | ChatMessage::Ack { .. }
            | ChatMessage::Refused { .. } => {
                info!(peer = %from, "a reply sent as a request: disconnecting the peer");
                drop(reply);
                self.endpoint.disconnect(&from);
            }
        }
    }

    /// The peer of session `id` if `from` may use it: an open session's id, or the id
    /// of an open we sent that the peer evidently accepted (its acceptance may still be
    /// on the way to us; the session opens now).
    async fn session_peer(&mut self, id: &SessionId, from: &NodeId) -> Option<Handle> {
        if let Some(peer) = self.sessions.peer_of(id, from) {
            return Some(peer);
        }
        let (peer, agreed) = self.sessions.accepted_offer(id, from)?;
        if agreed == Agreed::New {
            self.emit(Event::SessionOpened {
                peer: peer.clone(),
                by_peer: false,
            })
            .await;
        }
        Some(peer)
    }

    async fn on_room_item(&mut self, item: Notification) {
        let checked = voidmesh_proto::RoomPost::decode(&item.data)
            .map_err(|e| e.to_string())
            .and_then(|post| check_post(&post).map(|author| (post, author)));
        let valid = checked.is_ok();
        // Every subscriber's verdict gates forwarding: a forgery stops here.
        let _ = self.gossip_client.validate(item.message_id, valid).await;
        let (post, author) = match checked {
            Ok(ok) => ok,
            Err(reason) => {
                info!(%reason, "dropped a room post");
                return;
            }
        };
        if room_data_type(&post.room) != item.data_type
            || !self.rooms.contains(&post.room)
            || !self.remember_post(post.author_key, post.nonce)
        {
            return;
        }
        let target = Target::Room(post.room.clone());
        self.store(
            Direction::In,
            &target,
            &author.to_string(),
            post.sent_at_ms,
            &post.text,
            "received",
            None,
        );
        self.emit(Event::RoomMessage {
            room: post.room,
            from: author,
            sent_at_ms: post.sent_at_ms,
            text: post.text,
        })
        .await;
    }

    /// Ends every session, replaces presence by a tombstone, reports [`Event::Stopped`].
    async fn quit(mut self) {
        let mut ends = tokio::task::JoinSet::new();
        for session in self.sessions.end_all() {
            ends.spawn(self.say_end(&session));
        }
        let _ = tokio::time::timeout(self.config.request_timeout, ends.join_all()).await;
        // The directory entry goes out again with the tombstone, so that a finder reaches
        // the tombstone even if the entry never left this node.
        if let Some(withdrawing) = self.publishing(false) {
            let outcome = tokio::time::timeout(Duration::from_secs(10), withdrawing).await;
            match outcome {
                Ok(Ok(replicated)) => info!(replicated, "presence withdrawn"),
                Ok(Err(e)) => warn!(error = %e, "presence not withdrawn"),
                Err(_) => warn!("presence not withdrawn in time"),
            }
        }
        self.endpoint.close();
        let _ = self.events.send(Event::Stopped).await;
    }
}

/// The history reference of a sent text.
fn local_ref(session: &SessionId, seq: u64) -> String {
    format!("{}/{seq}", hex::encode(session))
}

/// Stores the presence record and the directory entry; `Ok(true)` once a remote node
/// holds the entry (`Ok(false)`: only this node does, e.g. it is alone so far).
async fn publish(
    dht: &DhtHandle,
    record: voidmesh_proto::SignedRecord,
    directory: voidmesh_proto::Key,
    entry: Bytes,
    ttl: Duration,
    replication: u8,
) -> Result<bool, String> {
    use voidmesh_proto::dht_api::PutSignedStatus;
    let status = dht
        .put_signed(record, replication)
        .await
        .map_err(|e| e.to_string())?;
    if status != PutSignedStatus::Stored {
        return Err(format!("presence record not stored: {status:?}"));
    }
    let report = dht
        .put(directory, entry, ttl, replication)
        .await
        .map_err(|e| e.to_string())?;
    Ok(report.stored_remote > 0)
}

/// Looks `handle` up: directory entry, then the presence record it leads to.
async fn find(dht: &DhtHandle, handle: &Handle) -> Result<Found, Absence> {
    let stopped = |_| Absence::NotAuthentic("the DHT has stopped".into());
    let entry = dht.get(directory_key(handle)).await.map_err(stopped)?;
    let public_key = check_directory_entry(handle, entry.as_ref())?;
    let record = dht
        .get_signed(presence_key(&public_key, &handle.name))
        .await
        .map_err(stopped)?;
    let mut found = check_presence(handle, &public_key, record.as_ref(), unix_ms() / 1000)?;
    fill_in_host(dht, &mut found.presence).await?;
    Ok(found)
}

/// A peer listening on a wildcard address with nothing to tell it its own IP (the first
/// peer of a network) publishes the wildcard; its IP is then the one the DHT knows for its
/// node id (as its peers see it).
async fn fill_in_host(dht: &DhtHandle, presence: &mut Presence) -> Result<(), Absence> {
    let unspecified = presence.chat_addrs.iter().any(|a| a.ip().is_unspecified())
        || presence
            .gossip_addr
            .is_some_and(|a| a.ip().is_unspecified());
    if !unspecified {
        return Ok(());
    }
    let contacts = dht
        .find_node(presence.node_id)
        .await
        .map_err(|_| Absence::NotAuthentic("the DHT has stopped".into()))?;
    let ip = contacts
        .iter()
        .find(|c| c.id == presence.node_id)
        .map(|c| c.addr.ip())
        .ok_or_else(|| Absence::NotAuthentic("its address is unknown to the DHT".into()))?;
    let fix = |addr: &mut SocketAddr| {
        if addr.ip().is_unspecified() {
            addr.set_ip(ip);
        }
    };
    presence.chat_addrs.iter_mut().for_each(fix);
    if let Some(addr) = presence.gossip_addr.as_mut() {
        fix(addr);
    }
    Ok(())
}

/// Sends a text and waits for its acknowledgement.
async fn deliver(
    endpoint: &Endpoint,
    addr: SocketAddr,
    node: NodeId,
    message: ChatMessage,
    session: SessionId,
    seq: u64,
    timeout: Duration,
) -> Result<(), SendFailure> {
    let response = match tokio::time::timeout(
        timeout,
        endpoint.request(addr, Some(node), message.encode()),
    )
    .await
    {
        Err(_) => return Err(SendFailure::Other("no answer".into())),
        Ok(Err(NetError::Timeout)) => return Err(SendFailure::Other("no answer".into())),
        Ok(Err(e)) => return Err(SendFailure::Other(e.to_string())),
        Ok(Ok(response)) => response,
    };
    match ChatMessage::decode(&response.message) {
        Ok(ChatMessage::Ack { session: s, seq: n }) if s == session && n == seq => Ok(()),
        Ok(ChatMessage::Refused { code, .. }) if code == refusal::NO_SESSION => {
            Err(SendFailure::NoSession)
        }
        Ok(ChatMessage::Refused { reason, .. }) => {
            Err(SendFailure::Other(format!("refused: {reason}")))
        }
        Ok(_) => Err(SendFailure::Other("unexpected answer".into())),
        Err(e) => Err(SendFailure::Other(format!("malformed answer: {e}"))),
    }
}
