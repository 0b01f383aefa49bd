//! The chat on a real local network: 18 DHT + gossip nodes and chat peers on loopback QUIC,
//! driven through the same engine interface the UIs use.

use bytes::Bytes;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use tokio::time::{timeout, Instant};
use voidmesh_chat::event::Absence;
use voidmesh_chat::history::{Direction, History};
use voidmesh_chat::peer::ChatPeer;
use voidmesh_chat::presence::{directory_key, presence_key, Presence};
use voidmesh_chat::room::{room_data_type, sign_post};
use voidmesh_chat::tui::{Action, App};
use voidmesh_chat::{ChatUi, Command, Event, Handle, Target, UserKey};
use voidmesh_net::Identity;
use voidmesh_node::config::Config;
use voidmesh_node::service::{DhtService, GossipService};
use voidmesh_proto::dht_api::PutSignedStatus;

const WAIT: Duration = Duration::from_secs(30);

/// INI text of a loopback peer; with `chat`, a [chat] section too.
fn config(
    data_dir: &Path,
    bootstrap: Option<(SocketAddr, SocketAddr)>,
    chat: bool,
    gossip_max: usize,
) -> Config {
    let mut text = format!(
        "data_dir = {}\n[dht]\np2p_address = 127.0.0.1:0\napi_address = 127.0.0.1:0\n\
         id_difficulty = 0\n",
        data_dir.display()
    );
    if let Some((dht, _)) = bootstrap {
        text.push_str(&format!("bootstrapper = {dht}\n"));
    }
    text.push_str(
        "[gossip]\np2p_address = 127.0.0.1:0\napi_address = 127.0.0.1:0\n\
         pow_difficulty = 4\nsearch_cooldown = 300ms\n",
    );
    // Two neighbours when allowed, so that a peer meets more than its bootstrapper.
    let gossip_min = gossip_max.min(2);
    text.push_str(&format!(
        "min_connections = {gossip_min}\nmax_connections = {gossip_max}\n"
    ));
    if let Some((_, gossip)) = bootstrap {
        text.push_str(&format!("bootstrapper = {gossip}\n"));
    }
    if chat {
        text.push_str(
            "[chat]\np2p_address = 127.0.0.1:0\nmax_message_bytes = 1000\nrequest_timeout = 3s\n",
        );
    }
    Config::parse(Path::new("test.ini"), &text).unwrap()
}

/// A DHT + gossip node without a chat.
struct Node {
    dht: DhtService,
    gossip: GossipService,
}

async fn start_node(dir: &Path, bootstrap: Option<(SocketAddr, SocketAddr)>) -> Node {
    let config = config(dir, bootstrap, false, 12);
    let identity = Identity::generate();
    Node {
        dht: DhtService::start(&identity, config.require_dht().unwrap(), None)
            .await
            .unwrap(),
        gossip: GossipService::start(&identity, config.require_gossip().unwrap(), None)
            .await
            .unwrap(),
    }
}

/// A chat peer and its UI side.
struct User {
    peer: ChatPeer,
    ui: ChatUi,
    handle: Handle,
}

async fn start_user(name: &str, dir: &Path, bootstrap: (SocketAddr, SocketAddr)) -> User {
    start_user_with(name, dir, bootstrap, 12).await
}

/// [`start_user`] with at most `gossip_max` gossip neighbours.
async fn start_user_with(
    name: &str,
    dir: &Path,
    bootstrap: (SocketAddr, SocketAddr),
    gossip_max: usize,
) -> User {
    let config = config(dir, Some(bootstrap), true, gossip_max);
    let (peer, mut ui) = ChatPeer::start(name, &config, &Identity::generate())
        .await
        .unwrap();
    let handle = peer.handle().clone();
    let ready = next(&mut ui, |e| matches!(e, Event::Ready { .. })).await;
    assert!(matches!(ready, Event::Ready { me, .. } if me == handle));
    User { peer, ui, handle }
}

/// The next event that `pick` accepts (others are skipped), within [`WAIT`].
async fn next(ui: &mut ChatUi, pick: impl Fn(&Event) -> bool) -> Event {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match timeout(left, ui.events.recv()).await {
            Ok(Some(event)) if pick(&event) => return event,
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the engine stopped"),
            Err(_) => panic!("no matching event within {WAIT:?}"),
        }
    }
}

/// `/quit`, waits for the engine to stop, stops the peer.
async fn quit(user: User) {
    send(&user, Command::Quit).await;
    let mut ui = user.ui;
    next(&mut ui, |e| *e == Event::Stopped).await;
    user.peer.shutdown().await;
}

/// Stops a node.
async fn stop(node: Node) {
    node.gossip.shutdown().await;
    node.dht.shutdown().await;
}

async fn send(user: &User, command: Command) {
    user.ui.commands.send(command).await.unwrap();
}

/// One node that starts a network, and its (DHT, gossip) addresses to join through.
async fn seed_node(root: &Path) -> (Node, (SocketAddr, SocketAddr)) {
    let first = start_node(&root.join("n0"), None).await;
    let seed = (first.dht.p2p_addr(), first.gossip.p2p_addr());
    (first, seed)
}

/// 18 nodes, each joining through the first.
async fn network(root: &Path) -> (Vec<Node>, (SocketAddr, SocketAddr)) {
    let (first, seed) = seed_node(root).await;
    let mut nodes = vec![first];
    for i in 1..18 {
        nodes.push(start_node(&root.join(format!("n{i}")), Some(seed)).await);
    }
    (nodes, seed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_users_find_each_other_talk_end_and_sign_off() {
    let root = tempfile::tempdir().unwrap();
    let (nodes, seed) = network(root.path()).await;
    let alice_dir = root.path().join("alice");
    let mut alice = start_user("alice", &alice_dir, seed).await;
    let mut bob = start_user("bob", &root.path().join("bob"), seed).await;

    send(&alice, Command::Find(bob.handle.clone())).await;
    let found = next(&mut alice.ui, |e| {
        matches!(e, Event::Found { .. } | Event::NotFound { .. })
    })
    .await;
    assert!(
        matches!(&found, Event::Found { handle, addr } if *handle == bob.handle && *addr == bob.peer.chat_addr()),
        "{found}"
    );

    // alice opens a session; both sides see it.
    send(&alice, Command::Open(bob.handle.clone())).await;
    let opened = next(&mut alice.ui, |e| {
        matches!(e, Event::SessionOpened { .. } | Event::Failed { .. })
    })
    .await;
    assert_eq!(
        opened,
        Event::SessionOpened {
            peer: bob.handle.clone(),
            by_peer: false
        }
    );
    let seen = next(&mut bob.ui, |e| matches!(e, Event::SessionOpened { .. })).await;
    assert_eq!(
        seen,
        Event::SessionOpened {
            peer: alice.handle.clone(),
            by_peer: true
        }
    );

    // Both ways, acknowledged.
    let to_bob = Target::User(bob.handle.clone());
    send(
        &alice,
        Command::Send {
            to: to_bob.clone(),
            text: "hello bob".into(),
        },
    )
    .await;
    let delivered = next(&mut alice.ui, |e| {
        matches!(e, Event::Delivered { .. } | Event::Failed { .. })
    })
    .await;
    assert_eq!(
        delivered,
        Event::Delivered {
            to: to_bob.clone(),
            seq: 1
        }
    );
    let got = next(&mut bob.ui, |e| matches!(e, Event::Received { .. })).await;
    assert!(
        matches!(&got, Event::Received { from, text, .. } if *from == alice.handle && text == "hello bob")
    );
    send(
        &bob,
        Command::Send {
            to: Target::User(alice.handle.clone()),
            text: "hi alice".into(),
        },
    )
    .await;
    let got = next(&mut alice.ui, |e| matches!(e, Event::Received { .. })).await;
    assert!(
        matches!(&got, Event::Received { from, text, .. } if *from == bob.handle && text == "hi alice")
    );

    // Too long: refused with a clear error, nothing sent.
    send(
        &alice,
        Command::Send {
            to: to_bob.clone(),
            text: "x".repeat(1001),
        },
    )
    .await;
    let failed = next(&mut alice.ui, |e| {
        matches!(e, Event::Error(_) | Event::Sent { .. })
    })
    .await;
    assert!(
        matches!(&failed, Event::Error(reason) if reason.contains("1001 bytes, the limit is 1000")),
        "{failed}"
    );

    // alice ends; bob sees it ended by the peer.
    send(&alice, Command::End(bob.handle.clone())).await;
    let ended = next(&mut bob.ui, |e| matches!(e, Event::SessionEnded { .. })).await;
    assert_eq!(
        ended,
        Event::SessionEnded {
            peer: alice.handle.clone(),
            by_peer: true
        }
    );

    // alice quits: her tombstone makes the next lookup say she is gone.
    send(&alice, Command::Quit).await;
    next(&mut alice.ui, |e| *e == Event::Stopped).await;
    alice.peer.shutdown().await;
    send(&bob, Command::Find(alice.handle.clone())).await;
    let gone = next(&mut bob.ui, |e| {
        matches!(e, Event::Found { .. } | Event::NotFound { .. })
    })
    .await;
    assert_eq!(
        gone,
        Event::NotFound {
            handle: alice.handle.clone(),
            why: Absence::Gone
        }
    );

    // alice's history survived in SQLite; after a restart she is the same user.
    let history = History::open(&alice_dir).unwrap();
    let past = history.conversation(&to_bob.to_string(), 10).unwrap();
    let lines: Vec<(Direction, &str, &str)> = past
        .iter()
        .map(|e| (e.direction, e.text.as_str(), e.status.as_str()))
        .collect();
    assert_eq!(
        lines,
        vec![
            (Direction::Out, "hello bob", "delivered"),
            (Direction::In, "hi alice", "received")
        ]
    );
    drop(history);
    let mut again = start_user("alice", &alice_dir, seed).await;
    assert_eq!(again.handle, alice.handle);
    send(&again, Command::History(to_bob.clone())).await;
    let shown = next(&mut again.ui, |e| matches!(e, Event::History { .. })).await;
    assert!(
        matches!(&shown, Event::History { entries, .. } if entries.len() == 2),
        "{shown}"
    );
    // ... and bob, who did not see her come back, finds her again.
    send(&bob, Command::Find(alice.handle.clone())).await;
    let back = next(&mut bob.ui, |e| {
        matches!(e, Event::Found { .. } | Event::NotFound { .. })
    })
    .await;
    assert!(matches!(back, Event::Found { .. }), "{back}");

    for user in [again, bob] {
        quit(user).await;
    }
    for node in nodes {
        stop(node).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forged_presence_is_never_used() {
    let root = tempfile::tempdir().unwrap();
    let (nodes, seed) = network(root.path()).await;
    let alice = start_user("alice", &root.path().join("alice"), seed).await;
    let mut bob = start_user("bob", &root.path().join("bob"), seed).await;
    let dht = nodes[5].dht.handle();
    let pk = {
        // alice's key, as the directory holds it.
        let entry = dht
            .get(directory_key(&alice.handle))
            .await
            .unwrap()
            .unwrap();
        <[u8; 32]>::try_from(&entry[..]).unwrap()
    };
    let genuine = dht
        .get_signed(presence_key(&pk, "alice"))
        .await
        .unwrap()
        .unwrap();
    let mallory = UserKey::generate();
    let fake = Presence {
        online: true,
        node_id: nodes[5].dht.node_id(),
        chat_addrs: vec!["127.0.0.1:9".parse().unwrap()],
        gossip_addr: None,
    };

    // Under alice's key with a wrong signature: refused by the storing nodes.
    let mut bad_signature = fake
        .sign(&mallory, "alice", genuine.seq + 10, genuine.expiry)
        .unwrap();
    bad_signature.public_key = pk;
    assert_eq!(
        dht.put_signed(bad_signature, 20).await.unwrap(),
        PutSignedStatus::Invalid
    );
    // Signed by another key: it lives under another key, so alice's lookup never sees it.
    let other_key = fake
        .sign(&mallory, "alice", genuine.seq + 10, genuine.expiry)
        .unwrap();
    assert_eq!(
        dht.put_signed(other_key, 20).await.unwrap(),
        PutSignedStatus::Stored
    );
    // A replay of an older genuine record: refused.
    let mut older = genuine.clone();
    older.seq -= 1;
    assert!(dht.put_signed(older, 20).await.unwrap() != PutSignedStatus::Stored);
    send(&bob, Command::Find(alice.handle.clone())).await;
    let found = next(&mut bob.ui, |e| {
        matches!(e, Event::Found { .. } | Event::NotFound { .. })
    })
    .await;
    assert!(
        matches!(&found, Event::Found { addr, .. } if *addr == alice.peer.chat_addr()),
        "{found}"
    );

    // The directory entry pointed at mallory's key: reported, never used.
    dht.put(
        directory_key(&alice.handle),
        Bytes::copy_from_slice(&mallory.public_key()),
        Duration::from_secs(600),
        20,
    )
    .await
    .unwrap();
    send(&bob, Command::Find(alice.handle.clone())).await;
    let forged = next(&mut bob.ui, |e| {
        matches!(e, Event::Found { .. } | Event::NotFound { .. })
    })
    .await;
    assert!(
        matches!(
            &forged,
            Event::NotFound {
                why: Absence::NotAuthentic(_),
                ..
            }
        ),
        "{forged}"
    );

    for user in [alice, bob] {
        quit(user).await;
    }
    for node in nodes {
        stop(node).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_room_delivers_each_post_once_and_drops_forgeries() {
    let root = tempfile::tempdir().unwrap();
    // A star: the three members may have one gossip neighbour each, the relay, which is
    // not in the room. Every post has to cross it (every chat peer relays every room).
    let first = start_node(&root.path().join("n0"), None).await;
    let dht_seed = first.dht.p2p_addr();
    let relay = start_user(
        "relay",
        &root.path().join("relay"),
        (dht_seed, first.gossip.p2p_addr()),
    )
    .await;
    let seed = (dht_seed, relay.peer.gossip_addr());
    let mut alice = start_user_with("alice", &root.path().join("alice"), seed, 1).await;
    let mut bob = start_user_with("bob", &root.path().join("bob"), seed, 1).await;
    let mut carol = start_user_with("carol", &root.path().join("carol"), seed, 1).await;
    for user in [&mut alice, &mut bob, &mut carol] {
        send(user, Command::Join("lobby".into())).await;
        next(&mut user.ui, |e| *e == Event::Joined("lobby".into())).await;
    }
    let deadline = Instant::now() + WAIT;
    for user in [&alice, &bob, &carol] {
        loop {
            let view: Vec<_> = user
                .peer
                .gossip()
                .view()
                .await
                .unwrap()
                .iter()
                .map(|c| c.id)
                .collect();
            if view == [relay.peer.node_id()] {
                break;
            }
            assert!(Instant::now() < deadline, "{} sees {view:?}", user.handle);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    let lobby = Target::Room("lobby".into());
    let post = |text: &str| Command::Send {
        to: lobby.clone(),
        text: text.into(),
    };
    let is_room = |e: &Event| matches!(e, Event::RoomMessage { .. });
    send(&alice, post("one")).await;
    for user in [&mut bob, &mut carol] {
        let got = next(&mut user.ui, is_room).await;
        assert!(
            matches!(&got, Event::RoomMessage { room, from, text, .. }
            if room == "lobby" && *from == alice.handle && text == "one"),
            "{got}"
        );
    }

    // A forged post (alice's name and key, mallory's signature) from a raw gossip client.
    let mallory = UserKey::generate();
    let mut forged = sign_post(&mallory, "alice", "lobby", "forged", 1, 7);
    forged.author_key = UserKey::generate().public_key();
    let client = relay.peer.gossip().connect().await.unwrap();
    client
        .announce(0, room_data_type("lobby"), forged.encode())
        .await
        .unwrap();

    send(&alice, post("two")).await;
    for user in [&mut bob, &mut carol] {
        let got = next(&mut user.ui, is_room).await;
        assert!(
            matches!(&got, Event::RoomMessage { text, .. } if text == "two"),
            "{got}"
        );
    }
    // Exactly once each, and nothing forged, as the history shows.
    for dir in ["bob", "carol"] {
        let history = History::open(&root.path().join(dir)).unwrap();
        let texts: Vec<String> = history
            .conversation("#lobby", 10)
            .unwrap()
            .into_iter()
            .map(|e| e.text)
            .collect();
        assert_eq!(texts, vec!["one".to_string(), "two".to_string()], "{dir}");
    }

    let history = History::open(&root.path().join("relay")).unwrap();
    let shown = history.conversation("#lobby", 10).unwrap();
    assert!(shown.is_empty(), "the relay is not in the room");
    for user in [relay, alice, bob, carol] {
        quit(user).await;
    }
    stop(first).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_session_messages_are_refused_or_disconnected() {
    use voidmesh_chat::engine::CHAT_ALPN;
    use voidmesh_chat::session::{self, Caller};
    use voidmesh_net::{Endpoint, EndpointConfig};
    use voidmesh_proto::chat_msg::{refusal, ChatMessage};

    let root = tempfile::tempdir().unwrap();
    let (first, seed) = seed_node(root.path()).await;
    let mut alice = start_user("alice", &root.path().join("alice"), seed).await;
    let alice_key = {
        let entry = first
            .dht
            .handle()
            .get(directory_key(&alice.handle))
            .await
            .unwrap()
            .unwrap();
        <[u8; 32]>::try_from(&entry[..]).unwrap()
    };
    let identity = Identity::generate();
    let config = EndpointConfig {
        alpn: CHAT_ALPN.to_vec(),
        ..EndpointConfig::default()
    };
    let (raw, _inbound) =
        Endpoint::bind(&identity, "127.0.0.1:0".parse().unwrap(), config).unwrap();
    let to = alice.peer.chat_addr();
    let node = alice.peer.node_id();

    // A session opened properly by a hand-made client ...
    let mallory = UserKey::generate();
    let me = Caller {
        user: &mallory,
        name: "mallory",
        node: identity.node_id(),
    };
    let id = [4; 16];
    let open = session::open(&me, id, alice_key, "alice", &node);
    let reply = raw.request(to, Some(node), open.encode()).await.unwrap();
    assert!(matches!(
        ChatMessage::decode(&reply.message).unwrap(),
        ChatMessage::SessionAccept { .. }
    ));
    next(&mut alice.ui, |e| {
        matches!(e, Event::SessionOpened { by_peer: true, .. })
    })
    .await;
    // ... a line over alice's limit (1000 bytes here) is refused, with the reason.
    let long = ChatMessage::Text {
        session: id,
        seq: 1,
        sent_at_ms: 0,
        text: "y".repeat(1001),
    };
    let reply = raw.request(to, Some(node), long.encode()).await.unwrap();
    assert!(matches!(ChatMessage::decode(&reply.message).unwrap(),
        ChatMessage::Refused { code, reason } if code == refusal::TOO_LARGE && reason.contains("1000")));
    // A line for a session that does not exist is refused.
    let stray = ChatMessage::Text {
        session: [5; 16],
        seq: 1,
        sent_at_ms: 0,
        text: "hi".into(),
    };
    let reply = raw.request(to, Some(node), stray.encode()).await.unwrap();
    assert!(matches!(ChatMessage::decode(&reply.message).unwrap(),
        ChatMessage::Refused { code, .. } if code == refusal::NO_SESSION));
    // Garbage: no answer, the connection is closed.
    let garbage = bytes::Bytes::from_static(&[0, 0, 0, 8, 0x02, 0xbe, 1, 2]);
    assert!(raw.request(to, Some(node), garbage).await.is_err());
    // alice still works for everyone else.
    let ok = ChatMessage::Text {
        session: id,
        seq: 2,
        sent_at_ms: 0,
        text: "still here?".into(),
    };
    let reply = raw.request(to, Some(node), ok.encode()).await.unwrap();
    assert!(matches!(
        ChatMessage::decode(&reply.message).unwrap(),
        ChatMessage::Ack { seq: 2, .. }
    ));

    quit(alice).await;
    stop(first).await;
}

/// Reads events until `pick` accepts one; fails if the session with anyone ends first.
async fn next_while_open(ui: &mut ChatUi, pick: impl Fn(&Event) -> bool) -> Event {
    let event = next(ui, |e| pick(e) || matches!(e, Event::SessionEnded { .. })).await;
    assert!(
        !matches!(event, Event::SessionEnded { .. }),
        "the session ended: {event}"
    );
    event
}

/// `from` sends `text` in its open session with `to`: delivered, received, nothing ends.
async fn line(from: &mut User, to: &mut User, text: String) {
    let target = Target::User(to.handle.clone());
    send(
        from,
        Command::Send {
            to: target,
            text: text.clone(),
        },
    )
    .await;
    let outcome = next_while_open(&mut from.ui, |e| {
        matches!(e, Event::Delivered { .. } | Event::Failed { .. })
    })
    .await;
    assert!(matches!(outcome, Event::Delivered { .. }), "{outcome}");
    let got = next_while_open(&mut to.ui, |e| matches!(e, Event::Received { .. })).await;
    assert!(
        matches!(&got, Event::Received { text: t, .. } if *t == text),
        "{got}"
    );
}

/// Two users type `/chat` to each other at the same moment; five pairs, one after the
/// other: each pair gets one conversation in which lines go both ways (before, one side
/// could keep only the other's session id, and the first line failed with "no such
/// session"; the acceptance of an open can also reach the opener after the peer's
/// first line).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn both_opening_at_once_gives_one_working_session() {
    let root = tempfile::tempdir().unwrap();
    let (first, seed) = seed_node(root.path()).await;
    let mut users = Vec::new();
    for pair in 1..=5 {
        let dir = |name: &str| root.path().join(format!("{name}{pair}"));
        let mut alice = start_user("alice", &dir("alice"), seed).await;
        let mut bob = start_user("bob", &dir("bob"), seed).await;
        tokio::join!(
            send(&alice, Command::Open(bob.handle.clone())),
            send(&bob, Command::Open(alice.handle.clone()))
        );
        for user in [&mut alice, &mut bob] {
            let opened = next(&mut user.ui, |e| {
                matches!(e, Event::SessionOpened { .. } | Event::Failed { .. })
            })
            .await;
            assert!(matches!(opened, Event::SessionOpened { .. }), "{opened}");
        }
        line(&mut alice, &mut bob, format!("pair {pair}: alice to bob")).await;
        line(&mut bob, &mut alice, format!("pair {pair}: bob to alice")).await;
        line(&mut alice, &mut bob, format!("pair {pair}: alice again")).await;
        users.extend([alice, bob]);
    }
    let mut quitting = tokio::task::JoinSet::new();
    for user in users {
        quitting.spawn(quit(user));
    }
    while let Some(done) = quitting.join_next().await {
        done.unwrap();
    }
    stop(first).await;
}

/// bob leaves and comes back after the only configured bootstrapper is gone: the DHT
/// rejoins through its remembered contacts and the gossip module through the gossip
/// neighbours written down at the last session, so his room post still reaches alice.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restarted_peer_reaches_its_room_without_the_bootstrapper() {
    let root = tempfile::tempdir().unwrap();
    let (first, seed) = seed_node(root.path()).await;
    let mut alice = start_user("alice", &root.path().join("alice"), seed).await;
    let bob_dir = root.path().join("bob");
    let mut bob = start_user("bob", &bob_dir, seed).await;
    for user in [&mut alice, &mut bob] {
        send(user, Command::Join("lobby".into())).await;
        next(&mut user.ui, |e| *e == Event::Joined("lobby".into())).await;
    }
    // bob finds alice, which makes her gossip module one of his neighbours.
    send(&bob, Command::Find(alice.handle.clone())).await;
    next(&mut bob.ui, |e| matches!(e, Event::Found { .. })).await;
    let deadline = Instant::now() + WAIT;
    loop {
        let view = bob.peer.gossip().view().await.unwrap();
        if view.iter().any(|c| c.id == alice.peer.node_id()) {
            break;
        }
        assert!(Instant::now() < deadline, "bob never met alice: {view:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    quit(bob).await;
    stop(first).await;

    let mut bob = start_user("bob", &bob_dir, seed).await;
    send(&bob, Command::Join("lobby".into())).await;
    next(&mut bob.ui, |e| *e == Event::Joined("lobby".into())).await;
    let deadline = Instant::now() + WAIT;
    while !bob
        .peer
        .gossip()
        .view()
        .await
        .unwrap()
        .iter()
        .any(|c| c.id == alice.peer.node_id())
    {
        assert!(Instant::now() < deadline, "bob has no way back to alice");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    send(
        &bob,
        Command::Send {
            to: Target::Room("lobby".into()),
            text: "back again".into(),
        },
    )
    .await;
    let got = next(&mut alice.ui, |e| matches!(e, Event::RoomMessage { .. })).await;
    assert!(
        matches!(&got, Event::RoomMessage { from, text, .. } if *from == bob.handle && text == "back again"),
        "{got}"
    );
    quit(alice).await;
    quit(bob).await;
}

/// Feeds `user`'s events to `app` until one that `pick` accepts (which is fed too).
async fn drive(app: &mut App, user: &mut User, pick: impl Fn(&Event) -> bool) -> Event {
    let event = next(&mut user.ui, |_| true).await;
    app.on_event(event.clone());
    if pick(&event) {
        return event;
    }
    Box::pin(drive(app, user, pick)).await
}

/// Types `text` into `app` and Enter, and hands what it asks for to `user`'s engine.
async fn type_line(app: &mut App, user: &User, text: &str) {
    use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
    for c in text.chars() {
        app.on_key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE));
    }
    match app.on_key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE)) {
        Some(Action::Command(command)) => send(user, command).await,
        other => panic!("typing {text:?} gave {other:?}"),
    }
}

/// The three users: carol talks in #trio with dave; bob opens a session with
/// carol and writes; carol, her terminal UI driven by her real engine, types a reply
/// under his line. The reply reaches bob, never #trio; what she typed before switching
/// (Tab) went to #trio, where she saw it typed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reply_to_a_private_line_goes_to_its_sender_not_to_the_room() {
    let root = tempfile::tempdir().unwrap();
    let (nodes, seed) = network(root.path()).await;
    let mut bob = start_user("bob", &root.path().join("bob"), seed).await;
    let mut carol = start_user("carol", &root.path().join("carol"), seed).await;
    // dave's one gossip neighbour is carol (plain nodes do not relay room posts).
    let mut dave = start_user_with(
        "dave",
        &root.path().join("dave"),
        (seed.0, carol.peer.gossip_addr()),
        1,
    )
    .await;
    let mut app = App::new(carol.handle.clone());
    app.on_event(Event::Ready {
        me: carol.handle.clone(),
        addr: carol.peer.chat_addr(),
    });
    type_line(&mut app, &carol, "/join #trio").await;
    drive(&mut app, &mut carol, |e| matches!(e, Event::Joined(_))).await;
    send(&dave, Command::Join("trio".into())).await;
    next(&mut dave.ui, |e| matches!(e, Event::Joined(_))).await;
    let trio = Target::Room("trio".into());
    // Both in the room: a post of dave's reaches carol (the gossip view may need a moment).
    let deadline = Instant::now() + WAIT;
    loop {
        send(
            &dave,
            Command::Send {
                to: trio.clone(),
                text: "hello trio".into(),
            },
        )
        .await;
        let got = timeout(
            Duration::from_secs(2),
            drive(&mut app, &mut carol, |e| {
                matches!(e, Event::RoomMessage { .. })
            }),
        )
        .await;
        if got.is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "dave's post never reached carol");
    }

    send(&bob, Command::Open(carol.handle.clone())).await;
    next(&mut bob.ui, |e| matches!(e, Event::SessionOpened { .. })).await;
    send(
        &bob,
        Command::Send {
            to: Target::User(carol.handle.clone()),
            text: "lunch?".into(),
        },
    )
    .await;
    drive(&mut app, &mut carol, |e| {
        matches!(e, Event::Received { .. })
    })
    .await;
    let private = Target::User(bob.handle.clone());
    assert_eq!(
        app.current(),
        Some(&trio),
        "an incoming line does not take the target"
    );
    assert_eq!(app.unread(&private), 1);

    // Typed in #trio (where bob's line is not shown): it is a #trio post.
    type_line(&mut app, &carol, "back in a minute").await;
    let spread = drive(&mut app, &mut carol, |e| {
        matches!(e, Event::Spread { .. } | Event::Failed { .. })
    })
    .await;
    assert!(matches!(spread, Event::Spread { .. }), "{spread}");
    // Tab to bob, where his line is: the reply goes to him.
    app.on_key(crossterm::event::KeyEvent::new(
        crossterm::event::KeyCode::Tab,
        crossterm::event::KeyModifiers::NONE,
    ));
    assert_eq!(app.current(), Some(&private));
    type_line(&mut app, &carol, "yes, at noon").await;
    let delivered = drive(&mut app, &mut carol, |e| {
        matches!(e, Event::Delivered { .. } | Event::Failed { .. })
    })
    .await;
    assert!(
        matches!(&delivered, Event::Delivered { to, .. } if *to == private),
        "{delivered}"
    );
    let got = next(&mut bob.ui, |e| matches!(e, Event::Received { .. })).await;
    assert!(
        matches!(&got, Event::Received { text, .. } if text == "yes, at noon"),
        "{got}"
    );

    // dave saw carol's #trio line, never the reply.
    let mut room_lines = Vec::new();
    loop {
        let got = next(&mut dave.ui, |e| matches!(e, Event::RoomMessage { .. })).await;
        if let Event::RoomMessage { text, .. } = got {
            room_lines.push(text.clone());
            if text == "back in a minute" {
                break;
            }
        }
    }
    send(&dave, Command::History(trio.clone())).await;
    let history = next(&mut dave.ui, |e| matches!(e, Event::History { .. })).await;
    let Event::History { entries, .. } = history else {
        unreachable!()
    };
    assert!(
        entries.iter().all(|e| e.text != "yes, at noon"),
        "{room_lines:?}"
    );

    for user in [bob, carol, dave] {
        quit(user).await;
    }
    for node in nodes {
        stop(node).await;
    }
}

/// A room joined before a restart is joined again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rooms_are_joined_again_after_a_restart() {
    let root = tempfile::tempdir().unwrap();
    let (first, seed) = seed_node(root.path()).await;
    let dir = root.path().join("alice");
    let alice = start_user("alice", &dir, seed).await;
    send(&alice, Command::Join("rust".into())).await;
    send(&alice, Command::Join("go".into())).await;
    send(&alice, Command::Leave("go".into())).await;
    quit(alice).await;
    let config = config(&dir, Some(seed), true, 12);
    let (peer, mut ui) = ChatPeer::start("alice", &config, &Identity::generate())
        .await
        .unwrap();
    let joined = next(&mut ui, |e| matches!(e, Event::Joined(_))).await;
    assert_eq!(joined, Event::Joined("rust".into()));
    quit(User {
        handle: peer.handle().clone(),
        peer,
        ui,
    })
    .await;
    stop(first).await;
}
