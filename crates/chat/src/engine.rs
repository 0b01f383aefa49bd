//! The running chat engine: one task that owns the sessions, rooms and presence, takes
//! [`Command`]s from the user interface, messages from the chat endpoint and room posts
//! from gossip, and reports [`Event`]s. Anything that waits on the network runs in its
//! own task and reports back, so the engine (and the UI) never waits on a slow peer.
//!
//! Presence is published once the node has joined a network (the header meanwhile says
//! `joining`, then `alone` while no bootstrapper answers). Every session's peer is probed
//! (see [`crate::liveness`]), so a dead peer shows as gone without anyone sending. Lines
//! to a user with no session open one and wait in a queue until it is open.

use crate::clock::now_ms as unix_ms;
use crate::command::{Command, Target};
use crate::event::{Absence, Event, NetState};
use crate::history::{Direction, Entry, History};
use crate::liveness::{Change, Liveness};
use crate::presence::{
    check_directory_entry, check_presence, directory_key, presence_key, Found, Presence,
};
use crate::room::{check_post, room_data_type, sign_post, ROOM_TYPES};
use crate::session::{self, Caller};
use crate::sessions::{Agreed, Session, Sessions};
use crate::user::{Handle, UserKey};
use bytes::Bytes;
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
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
    /// A session's peer silent for longer than this is shown as gone (it is probed every
    /// third of it).
    pub liveness: Duration,
    /// Nodes that store the presence record.
    pub replication: u8,
    /// Messages `/history` shows.
    pub history_limit: usize,
}

/// Default of [`ChatConfig::liveness`].
pub const DEFAULT_LIVENESS: Duration = Duration::from_secs(3);

impl Default for ChatConfig {
    /// Republish every 5 minutes, TTL 15 minutes, 4096-byte texts, 5 s requests, peers
    /// gone after 3 s of silence, replication 20, 50 history lines.
    fn default() -> Self {
        ChatConfig {
            republish: Duration::from_secs(300),
            presence_ttl: Duration::from_secs(900),
            max_message_bytes: 4096,
            request_timeout: Duration::from_secs(5),
            liveness: DEFAULT_LIVENESS,
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
    /// Longest line the engine sends, in bytes (the UIs check before sending).
    pub max_message_bytes: usize,
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
    /// Whether there is a network to join (bootstrappers or remembered contacts); without,
    /// this is the first peer of a new network and is ready at once.
    pub expect_peers: bool,
}

/// Events queued for the UI; the engine waits when the UI does not read.
const EVENT_QUEUE: usize = 1024;
/// How soon presence is published again when no remote node took it.
const PUBLISH_RETRY: Duration = Duration::from_secs(2);
/// Room posts remembered to drop repeats.
const SEEN_POSTS: usize = 4096;
/// How often the number of peers is looked at while joining, and once joined.
const NET_POLL_JOINING: Duration = Duration::from_millis(100);
const NET_POLL_JOINED: Duration = Duration::from_secs(2);
/// With no peer after this long, the header says `alone` rather than `joining`.
const ALONE_AFTER: Duration = Duration::from_millis(500);
/// Bound on telling peers that their sessions end, when quitting.
const QUIT_ENDS_WAIT: Duration = Duration::from_secs(2);
/// Bound on publishing the tombstone, when quitting.
const QUIT_TOMBSTONE_WAIT: Duration = Duration::from_secs(5);
/// Lines queued for one user while a session with them opens.
const MAX_QUEUED: usize = 64;

/// Starts the engine; it joins, publishes presence, then reports [`Event::Ready`].
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
    let max_message_bytes = config.max_message_bytes;
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
        alive: HashMap::new(),
        opening: HashMap::new(),
        rooms: HashSet::new(),
        seen_posts: HashSet::new(),
        seen_order: VecDeque::new(),
        presence_seq: 0,
        ready: false,
        publishing: false,
        retry_pending: false,
        expect_peers: parts.expect_peers,
        started: Instant::now(),
        network: None,
    };
    tokio::spawn(engine.run(command_rx, parts.inbound, done_rx));
    Ok(ChatUi {
        commands: command_tx,
        events: event_rx,
        max_message_bytes,
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
    Probed {
        peer: Handle,
        id: SessionId,
        result: Result<(), SendFailure>,
    },
    /// The probe of a session `/chat` was given for, with what the lookup found.
    Verified {
        handle: Handle,
        id: SessionId,
        found: Box<Found>,
        result: Result<(), SendFailure>,
    },
}

/// Why a text (or a probe) was not delivered.
enum SendFailure {
    /// The peer does not know the session any more.
    NoSession,
    /// No answer in time.
    NoAnswer,
    /// Anything else.
    Other(String),
}

/// A line waiting for its session to open.
struct Queued {
    seq: u64,
    at_ms: u64,
    text: String,
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
    /// The liveness of each open session's peer.
    alive: HashMap<Handle, Liveness>,
    /// Users a session is being opened with, and the lines waiting for it.
    opening: HashMap<Handle, Vec<Queued>>,
    rooms: HashSet<String>,
    seen_posts: HashSet<([u8; 32], u64)>,
    seen_order: VecDeque<([u8; 32], u64)>,
    presence_seq: u64,
    /// Presence has been published once ([`Event::Ready`] was sent).
    ready: bool,
    /// The first publication is on its way.
    publishing: bool,
    /// A [`Done::RetryPublish`] is on its way.
    retry_pending: bool,
    expect_peers: bool,
    started: Instant,
    /// The network state last reported.
    network: Option<(NetState, usize)>,
}

impl Engine {
    async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut inbound: mpsc::Receiver<Inbound>,
        mut done: mpsc::Receiver<Done>,
    ) {
        self.rejoin_rooms().await;
        self.check_network().await;
        let mut republish = tokio::time::interval(self.config.republish);
        republish.tick().await;
        let mut heartbeat = tokio::time::interval(Liveness::probe_interval(self.config.liveness));
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut net_poll = tokio::time::interval(NET_POLL_JOINING);
        net_poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                command = commands.recv() => match command {
                    Some(Command::Quit) | None => break,
                    Some(command) => self.on_command(command).await,
                },
                Some(msg) = inbound.recv() => self.on_inbound(msg).await,
                Some(item) = self.gossip_client.notifications.recv() => self.on_room_item(item).await,
                Some(result) = done.recv() => self.on_done(result).await,
                _ = republish.tick(), if self.ready => self.publish_presence(true),
                _ = heartbeat.tick() => self.check_liveness().await,
                _ = net_poll.tick() => {
                    let was_joined = self.network.is_some_and(|(s, _)| s == NetState::Joined);
                    self.check_network().await;
                    let joined = self.network.is_some_and(|(s, _)| s == NetState::Joined);
                    if joined != was_joined {
                        let every = if joined { NET_POLL_JOINED } else { NET_POLL_JOINING };
                        net_poll = tokio::time::interval(every);
                        net_poll.tick().await;
                    }
                }
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

    /// Joins the rooms joined when the chat last ran.
    async fn rejoin_rooms(&mut self) {
        match self.history.rooms() {
            Ok(rooms) => {
                for room in rooms {
                    self.rooms.insert(room.clone());
                    self.emit(Event::Joined(room)).await;
                }
            }
            Err(e) => warn!(error = %e, "cannot read the rooms joined before"),
        }
    }

    /// Looks at the number of peers: reports changes, and publishes presence for the
    /// first time once there is a network to publish in.
    async fn check_network(&mut self) {
        let peers = self.dht.contacts().await.map(|c| c.len()).unwrap_or(0);
        let state = network_state(
            self.expect_peers,
            peers,
            self.started.elapsed() >= ALONE_AFTER,
        );
        if self.network != Some((state, peers)) {
            if self.network.map(|(s, _)| s) != Some(state) {
                info!(state = state.word(), peers, "network");
            }
            self.network = Some((state, peers));
            self.emit(Event::Network { state, peers }).await;
        }
        if !self.ready && !self.publishing && matches!(state, NetState::Joined | NetState::First) {
            self.publishing = true;
            self.publish_presence(true);
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
            Command::Open(handle) => self.open_with(handle).await,
            Command::Send { to, text } => self.send(to, text).await,
            Command::End(handle) => self.end(&handle).await,
            Command::Sessions => {
                let (mut sessions, mut gone) = (Vec::new(), Vec::new());
                for peer in self.sessions.peers() {
                    if self.alive.get(&peer).is_some_and(Liveness::is_gone) {
                        gone.push(peer);
                    } else {
                        sessions.push(peer);
                    }
                }
                sessions.sort();
                gone.sort();
                let mut rooms: Vec<String> = self.rooms.iter().cloned().collect();
                rooms.sort();
                self.emit(Event::Sessions {
                    sessions,
                    gone,
                    rooms,
                })
                .await;
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
                if let Err(e) = self.history.set_joined(&room, true) {
                    warn!(error = %e, "cannot remember a joined room");
                }
                self.rooms.insert(room.clone());
                self.emit(Event::Joined(room)).await;
            }
            Command::Leave(room) => {
                // Posts of the room still arrive and are relayed (see `start`), unshown.
                if self.rooms.remove(&room) {
                    if let Err(e) = self.history.set_joined(&room, false) {
                        warn!(error = %e, "cannot forget a left room");
                    }
                    self.emit(Event::Left(room)).await;
                } else {
                    self.emit(Event::Error(format!("not in #{room}"))).await;
                }
            }
            Command::Quit => {}
        }
    }

    /// `/chat`: a session with a live peer is kept; otherwise (none, or its peer is
    /// gone) the user is looked up and a session opened.
    async fn open_with(&mut self, handle: Handle) {
        let gone = self.alive.get(&handle).is_some_and(Liveness::is_gone);
        if self.sessions.is_open(&handle) && !gone {
            // Looked up again all the same: if the presence names another address or
            // node, the peer restarted or moved, and the session is opened afresh.
            self.look_up(handle, true);
            return;
        }
        if self.opening.contains_key(&handle) {
            self.emit(Event::Info(format!(
                "a session with {handle} is being opened"
            )))
            .await;
            return;
        }
        self.opening.insert(handle.clone(), Vec::new());
        self.look_up(handle, true);
    }

    /// Looks `handle` up in a task; with `then_open`, a session follows if found, else
    /// the peer's chat endpoint is asked whether it is there.
    fn look_up(&self, handle: Handle, then_open: bool) {
        let dht = self.dht.clone();
        let done = self.done.clone();
        let endpoint = self.endpoint.clone();
        let bound = self.config.liveness;
        tokio::spawn(async move {
            let mut result = find(&dht, &handle).await;
            if let (Ok(found), false) = (&result, then_open) {
                if let Err(why) = answers(&endpoint, found, bound).await {
                    result = Err(why);
                }
            }
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
                "not sent: the line is {} bytes, the limit is {}",
                text.len(),
                self.config.max_message_bytes
            );
            self.emit(Event::Error(reason)).await;
            return;
        }
        let handle = match to {
            Target::Room(room) => return self.post(room, text).await,
            Target::User(handle) => handle,
        };
        if !self.sessions.is_open(&handle) || self.opening.contains_key(&handle) {
            return self.queue(handle, text).await;
        }
        let gone = self
            .alive
            .get(&handle)
            .filter(|l| l.is_gone())
            .map(|l| l.silent_for(Instant::now()).as_secs_f64());
        let Some(session) = self.sessions.get_mut(&handle) else {
            return;
        };
        session.sent += 1;
        let seq = session.sent;
        let sent_at_ms = unix_ms();
        let (addr, node, id) = (session.addr, session.node, session.id);
        let target = Target::User(handle.clone());
        self.emit(Event::Sent {
            to: target.clone(),
            seq,
            at_ms: sent_at_ms,
            text: text.clone(),
        })
        .await;
        if let Some(silent) = gone {
            self.store(Direction::Out, &target, sent_at_ms, &text, "failed", None);
            let reason = format!(
                "not sent: {handle} is not answering (silent for {silent:.0} s); /chat {handle} to try again"
            );
            info!(peer = %handle, "line not sent: the peer is gone");
            self.emit(Event::Failed {
                to: target,
                seq,
                reason,
            })
            .await;
            return;
        }
        self.deliver_line(handle, (addr, node, id), seq, sent_at_ms, text);
    }

    /// Sends one line of an open session in a task; [`Done::Sent`] reports.
    fn deliver_line(
        &self,
        handle: Handle,
        (addr, node, id): (SocketAddr, NodeId, SessionId),
        seq: u64,
        sent_at_ms: u64,
        text: String,
    ) {
        let target = Target::User(handle.clone());
        self.store(
            Direction::Out,
            &target,
            sent_at_ms,
            &text,
            "sent",
            Some(&local_ref(&id, seq)),
        );
        let message = ChatMessage::Text {
            session: id,
            seq,
            sent_at_ms,
            text,
        };
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

    /// A line to a user with no session: it waits while one opens (opened here if need be).
    async fn queue(&mut self, handle: Handle, text: String) {
        let target = Target::User(handle.clone());
        if !self.opening.contains_key(&handle) {
            self.opening.insert(handle.clone(), Vec::new());
            self.look_up(handle.clone(), true);
            self.emit(Event::Info(format!(
                "opening a session with {handle}; the line goes out once it is open"
            )))
            .await;
        }
        let Some(queue) = self.opening.get_mut(&handle) else {
            return;
        };
        if queue.len() >= MAX_QUEUED {
            self.emit(Event::Error(format!(
                "not sent: {MAX_QUEUED} lines already wait for the session with {handle}"
            )))
            .await;
            return;
        }
        let seq = queue.len() as u64 + 1;
        let at_ms = unix_ms();
        queue.push(Queued {
            seq,
            at_ms,
            text: text.clone(),
        });
        self.emit(Event::Sent {
            to: target,
            seq,
            at_ms,
            text,
        })
        .await;
    }

    /// The session with `handle` is open: the lines queued for it go out.
    fn flush(&mut self, handle: &Handle) {
        let Some(queue) = self.opening.remove(handle) else {
            return;
        };
        for line in queue {
            let Some(session) = self.sessions.get_mut(handle) else {
                return;
            };
            session.sent = session.sent.max(line.seq);
            let parts = (session.addr, session.node, session.id);
            self.deliver_line(handle.clone(), parts, line.seq, line.at_ms, line.text);
        }
    }

    /// The session could not be opened: the lines queued for it fail.
    async fn fail_queue(&mut self, handle: &Handle, reason: &str) {
        let Some(queue) = self.opening.remove(handle) else {
            return;
        };
        let target = Target::User(handle.clone());
        for line in queue {
            self.store(
                Direction::Out,
                &target,
                line.at_ms,
                &line.text,
                "failed",
                None,
            );
            self.emit(Event::Failed {
                to: target.clone(),
                seq: line.seq,
                reason: format!("not sent: {reason}"),
            })
            .await;
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
        self.emit(Event::Sent {
            to: target.clone(),
            seq: post.nonce,
            at_ms: sent_at_ms,
            text: text.clone(),
        })
        .await;
        let neighbours = self.gossip.view().await.map(|v| v.len()).unwrap_or(0);
        if neighbours == 0 {
            self.store(Direction::Out, &target, sent_at_ms, &text, "failed", None);
            self.emit(Event::Failed {
                to: target,
                seq: post.nonce,
                reason: "nobody to pass it to: no gossip neighbours yet".into(),
            })
            .await;
            return;
        }
        let outcome = self
            .gossip_client
            .announce(0, room_data_type(&room), post.encode())
            .await;
        let status = if outcome.is_ok() { "spread" } else { "failed" };
        self.store(Direction::Out, &target, sent_at_ms, &text, status, None);
        match outcome {
            Ok(()) => {
                self.emit(Event::Spread {
                    room,
                    seq: post.nonce,
                    neighbours,
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
        if self.opening.contains_key(handle) && !self.sessions.is_open(handle) {
            self.fail_queue(handle, "the session was ended before it opened")
                .await;
            self.emit(Event::SessionEnded {
                peer: handle.clone(),
                by_peer: false,
            })
            .await;
            return;
        }
        let Some(session) = self.close(handle) else {
            self.emit(Event::Error(format!("no session with {handle}")))
                .await;
            return;
        };
        info!(peer = %handle, "session ended by us");
        let endpoint = self.endpoint.clone();
        let node = session.node;
        let saying = self.say_end(&session);
        // The connection goes with the session: a later session dials afresh.
        tokio::spawn(async move {
            saying.await;
            endpoint.disconnect(&node);
        });
        self.emit(Event::SessionEnded {
            peer: handle.clone(),
            by_peer: false,
        })
        .await;
    }

    /// Forgets the session with `handle` (and its liveness).
    fn close(&mut self, handle: &Handle) -> Option<Session> {
        self.alive.remove(handle);
        self.sessions.end(handle)
    }

    /// A session was agreed with `peer` (either side opened it).
    async fn opened(&mut self, peer: Handle, agreed: Agreed, by_peer: bool) {
        self.alive
            .entry(peer.clone())
            .or_insert_with(|| Liveness::new(self.config.liveness, Instant::now()))
            .heard(Instant::now());
        if agreed == Agreed::New {
            info!(%peer, by_peer, "session opened");
            self.emit(Event::SessionOpened {
                peer: peer.clone(),
                by_peer,
            })
            .await;
        }
        self.flush(&peer);
    }

    /// Something came from the peer of `peer`'s session: it is alive.
    async fn heard(&mut self, peer: &Handle) {
        let change = self
            .alive
            .get_mut(peer)
            .and_then(|l| l.heard(Instant::now()));
        if change == Some(Change::Back) {
            info!(%peer, "peer answers again");
            self.emit(Event::PeerBack { peer: peer.clone() }).await;
        }
    }

    /// The heartbeat: probes every session's peer and reports the ones that went silent.
    async fn check_liveness(&mut self) {
        let now = Instant::now();
        let mut gone = Vec::new();
        let mut probes = Vec::new();
        for (peer, liveness) in &mut self.alive {
            let (probe, change) = liveness.tick(now);
            if change == Some(Change::Gone) {
                gone.push((peer.clone(), liveness.silent_for(now)));
            }
            if probe {
                probes.push(peer.clone());
            }
        }
        for (peer, silent) in gone {
            warn!(%peer, silent_ms = silent.as_millis() as u64, "peer not answering: gone");
            if let Some(session) = self.sessions.get_mut(&peer) {
                // The cached connection may be dead: the next probe dials afresh.
                self.endpoint.disconnect(&session.node);
            }
            self.emit(Event::PeerGone {
                peer,
                silent_ms: silent.as_millis() as u64,
            })
            .await;
        }
        for peer in probes {
            self.probe(peer);
        }
    }

    /// `/chat` for a session that looks open: probed at once, and opened afresh unless
    /// the peer still knows it (it may have restarted moments ago).
    fn verify(&mut self, handle: Handle, found: Found) {
        let Some(session) = self.sessions.get_mut(&handle) else {
            return self.open(handle, found);
        };
        let (addr, node, id) = (session.addr, session.node, session.id);
        let endpoint = self.endpoint.clone();
        let done = self.done.clone();
        let bound = self.config.liveness;
        tokio::spawn(async move {
            let result = deliver(&endpoint, addr, node, probe_message(id), id, 0, bound).await;
            let _ = done
                .send(Done::Verified {
                    handle,
                    id,
                    found: Box::new(found),
                    result,
                })
                .await;
        });
    }

    /// Sends one probe on `peer`'s session in a task; [`Done::Probed`] reports.
    fn probe(&mut self, peer: Handle) {
        let Some(session) = self.sessions.get_mut(&peer) else {
            return;
        };
        let (addr, node, id) = (session.addr, session.node, session.id);
        let message = probe_message(id);
        let endpoint = self.endpoint.clone();
        let done = self.done.clone();
        let bound = self.config.liveness;
        tokio::spawn(async move {
            let result = deliver(&endpoint, addr, node, message, id, 0, bound).await;
            let _ = done.send(Done::Probed { peer, id, result }).await;
        });
    }

    #[allow(clippy::too_many_arguments)]
    fn store(
        &self,
        direction: Direction,
        conversation: &Target,
        at_ms: u64,
        text: &str,
        status: &str,
        local_ref: Option<&str>,
    ) {
        let author = match direction {
            Direction::Out => self.me.to_string(),
            Direction::In => String::new(),
        };
        self.store_from(
            direction,
            conversation,
            &author,
            at_ms,
            text,
            status,
            local_ref,
        );
    }

    #[allow(clippy::too_many_arguments)]
    fn store_from(
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
            Done::Published { result } => self.on_published(result).await,
            Done::RetryPublish => {
                self.retry_pending = false;
                self.publish_presence(true);
            }
            Done::Looked {
                handle,
                result,
                then_open,
            } => self.on_looked(handle, result, then_open).await,
            Done::Opened { handle, id, result } => match result {
                Ok(opened) => {
                    self.sessions.withdraw(&id);
                    let agreed =
                        self.sessions
                            .agreed(handle.clone(), opened.id, opened.node, opened.addr);
                    // Joined: the peer opened one at the same moment, already shown.
                    self.opened(handle, agreed, false).await;
                }
                Err(reason) => {
                    self.sessions.withdraw(&id);
                    if self.sessions.is_open(&handle) {
                        // The peer opened one meanwhile; the queue went out on it.
                        return;
                    }
                    warn!(peer = %handle, %reason, "cannot open a session");
                    let reason = format!("cannot open a session: {reason}");
                    self.fail_queue(&handle, &reason).await;
                    self.emit(Event::Failed {
                        to: Target::User(handle),
                        seq: 0,
                        reason,
                    })
                    .await
                }
            },
            Done::Sent { to, seq, result } => self.on_sent(to, seq, result).await,
            Done::Verified {
                handle,
                id,
                found,
                result,
            } => {
                if self.sessions.current_id(&handle) != Some(id) {
                    return;
                }
                if result.is_ok() {
                    self.heard(&handle).await;
                    self.flush(&handle);
                    return self
                        .emit(Event::Info(format!(
                            "a session with {handle} is open already"
                        )))
                        .await;
                }
                info!(peer = %handle, "the open session does not answer: a new one");
                self.replace_session(handle, *found).await;
            }
            Done::Probed { peer, id, result } => {
                if let Some(l) = self.alive.get_mut(&peer) {
                    l.probe_done();
                }
                if self.sessions.current_id(&peer) != Some(id) {
                    return; // the session changed meanwhile
                }
                match result {
                    Ok(()) => self.heard(&peer).await,
                    Err(SendFailure::NoSession) => {
                        warn!(%peer, "the peer no longer knows the session (it restarted?)");
                        self.close(&peer);
                        self.emit(Event::Info(format!(
                            "{peer} no longer knows this session (restarted?): /chat {peer} to open a new one"
                        )))
                        .await;
                        self.emit(Event::SessionEnded {
                            peer,
                            by_peer: true,
                        })
                        .await;
                    }
                    Err(SendFailure::NoAnswer | SendFailure::Other(_)) => {}
                }
            }
        }
    }

    async fn on_published(&mut self, result: Result<bool, String>) {
        match result {
            Ok(replicated) if !self.ready => {
                self.retry_unless(replicated);
                self.ready = true;
                let addr = self
                    .chat_addrs
                    .first()
                    .copied()
                    .unwrap_or_else(|| self.endpoint.local_addr());
                info!(me = %self.me, replicated, "presence published: ready");
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
                self.publishing = false;
                self.emit(Event::Error(format!("presence not published: {e}")))
                    .await;
            }
        }
    }

    async fn on_looked(&mut self, handle: Handle, result: Result<Found, Absence>, then_open: bool) {
        match result {
            Ok(found) => {
                if let Some(gossip_addr) = found.presence.gossip_addr {
                    // Everyone we find is a candidate gossip neighbour for rooms.
                    let _ = self.gossip.add_known_peers(vec![gossip_addr]).await;
                }
                let addr = found.presence.chat_addrs[0];
                if !then_open {
                    return self.emit(Event::Found { handle, addr }).await;
                }
                let node = found.presence.node_id;
                let same = self
                    .sessions
                    .get_mut(&handle)
                    .map(|s| (s.node, s.addr) == (node, addr));
                let gone = self.alive.get(&handle).is_some_and(Liveness::is_gone);
                match same {
                    Some(true) if !gone => self.verify(handle, found),
                    Some(_) => {
                        // The peer restarted or moved: the old session cannot be used.
                        info!(peer = %handle, "the peer restarted or moved: a new session");
                        self.replace_session(handle, found).await;
                    }
                    None => self.open(handle, found),
                }
            }
            Err(why) => {
                if then_open {
                    let reason = format!("cannot open a session: {why}");
                    self.fail_queue(&handle, &reason).await;
                    self.emit(Event::Failed {
                        to: Target::User(handle.clone()),
                        seq: 0,
                        reason,
                    })
                    .await;
                }
                self.emit(Event::NotFound { handle, why }).await;
            }
        }
    }

    async fn on_sent(&mut self, to: Handle, seq: u64, result: Result<(), SendFailure>) {
        let id = self.sessions.current_id(&to);
        let reference = id.map(|id| local_ref(&id, seq));
        let target = Target::User(to.clone());
        let status = if result.is_ok() {
            "delivered"
        } else {
            "failed"
        };
        if let Some(r) = &reference {
            let _ = self.history.set_status(r, status);
        }
        let failure = match result {
            Ok(()) => {
                self.heard(&to).await;
                return self.emit(Event::Delivered { to: target, seq }).await;
            }
            Err(failure) => failure,
        };
        let reason = match &failure {
            SendFailure::NoSession => "the peer has no such session".to_owned(),
            SendFailure::NoAnswer => {
                // The connection may be dead: the next attempt dials afresh.
                if let Some(session) = self.sessions.get_mut(&to) {
                    self.endpoint.disconnect(&session.node);
                }
                format!("no answer within {:?}", self.config.request_timeout)
            }
            SendFailure::Other(reason) => reason.clone(),
        };
        warn!(peer = %to, seq, %reason, "line not delivered");
        self.emit(Event::Failed {
            to: target,
            seq,
            reason,
        })
        .await;
        if matches!(failure, SendFailure::NoSession) && self.close(&to).is_some() {
            self.emit(Event::SessionEnded {
                peer: to,
                by_peer: true,
            })
            .await;
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
    /// The session with `handle` can no longer be used (its peer is silent, restarted or
    /// moved): it ends, its connection too, and a new one is opened to `found`.
    async fn replace_session(&mut self, handle: Handle, found: Found) {
        if let Some(old) = self.close(&handle) {
            self.endpoint.disconnect(&old.node);
        }
        self.opening.entry(handle.clone()).or_default();
        self.emit(Event::SessionEnded {
            peer: handle.clone(),
            by_peer: true,
        })
        .await;
        self.open(handle, found);
    }

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
                Err(_) | Ok(Err(NetError::Timeout)) => {
                    endpoint.disconnect(&node);
                    Err(format!("no answer within {timeout:?}"))
                }
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
                        // A session with another node of this user (it restarted): over.
                        let moved = self
                            .sessions
                            .get_mut(&peer)
                            .is_some_and(|s| s.node != from || s.addr != addr);
                        if moved {
                            self.alive.remove(&peer);
                        }
                        // Joined: we opened one at the same moment; it is one session.
                        let agreed = self.sessions.agreed(peer.clone(), id, from, addr);
                        self.opened(peer, agreed, true).await;
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
                self.heard(&peer).await;
                if seq == 0 {
                    // A probe (see `crate::liveness`): answered, neither shown nor stored.
                    reply.send(ChatMessage::Ack { session: id, seq }.encode());
                    return;
                }
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
                self.store_from(
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
                    info!(%peer, "session ended by the peer");
                    self.close(&peer);
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
        self.opened(peer.clone(), agreed, false).await;
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
        self.store_from(
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

    /// Ends every session, replaces presence by a tombstone, closes the history, then
    /// reports [`Event::Stopped`]. Each step is bounded, so a dead network cannot hold
    /// the exit up for long.
    async fn quit(mut self) {
        let mut ends = tokio::task::JoinSet::new();
        for session in self.sessions.end_all() {
            ends.spawn(self.say_end(&session));
        }
        let _ = tokio::time::timeout(QUIT_ENDS_WAIT, ends.join_all()).await;
        // The directory entry goes out again with the tombstone, so that a finder reaches
        // the tombstone even if the entry never left this node.
        if let Some(withdrawing) = self.publishing(false) {
            let outcome = tokio::time::timeout(QUIT_TOMBSTONE_WAIT, withdrawing).await;
            match outcome {
                Ok(Ok(replicated)) => info!(replicated, "presence withdrawn"),
                Ok(Err(e)) => warn!(error = %e, "presence not withdrawn"),
                Err(_) => warn!("presence not withdrawn in time"),
            }
        }
        self.endpoint.close();
        let events = self.events.clone();
        // The history database closes here (its journal is written back).
        drop(self);
        let _ = events.send(Event::Stopped).await;
    }
}

/// The network state for `peers` known DHT peers: without anything to join, the first
/// peer of a network; else joined once a peer is known, `alone` when none is after a
/// moment (`waited`), `joining` before.
pub fn network_state(expect_peers: bool, peers: usize, waited: bool) -> NetState {
    match (peers > 0, expect_peers, waited) {
        (true, _, _) => NetState::Joined,
        (false, false, _) => NetState::First,
        (false, true, true) => NetState::Alone,
        (false, true, false) => NetState::Joining,
    }
}

/// A probe of session `id`: a TEXT with counter 0 and no text (counters of lines start
/// at 1). The peer acknowledges it if it knows the session, else refuses it.
fn probe_message(id: SessionId) -> ChatMessage {
    ChatMessage::Text {
        session: id,
        seq: 0,
        sent_at_ms: unix_ms(),
        text: String::new(),
    }
}

/// Whether the chat endpoint named by `found` answers (a probe of a session it cannot
/// know; any answer will do), within `bound`.
async fn answers(endpoint: &Endpoint, found: &Found, bound: Duration) -> Result<(), Absence> {
    let addr = found.presence.chat_addrs[0];
    let node = found.presence.node_id;
    let probe = probe_message(rand::random()).encode();
    match tokio::time::timeout(bound, endpoint.request(addr, Some(node), probe)).await {
        Ok(Ok(_)) => Ok(()),
        outcome => {
            if matches!(outcome, Err(_) | Ok(Err(NetError::Timeout))) {
                endpoint.disconnect(&node);
            }
            let published = crate::clock::stamp(&crate::clock::local(found.seq));
            Err(Absence::NotAnswering(format!(
                "presence published {published}, but nobody answers at {addr} (crashed or offline?)"
            )))
        }
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
        Err(_) | Ok(Err(NetError::Timeout)) => return Err(SendFailure::NoAnswer),
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
