//! Unit tests of [`Gossip`], each named for the rule it checks.

use super::*;
use proptest::prelude::*;
use std::time::Duration;
use voidmesh_proto::Key;

const UNIX: u64 = 1_800_000_000;
const DIFFICULTY: u8 = 6;

fn contact(n: u8) -> Contact {
    Contact::unkeyed(
        Key([n; 32]),
        SocketAddr::from(([127, 0, 0, 1], 6000 + u16::from(n))),
    )
}

fn config() -> Config {
    Config {
        degree: 3,
        min_connections: 2,
        max_connections: 4,
        pow_difficulty: DIFFICULTY,
        pow_max_skew: Duration::from_secs(60),
        ..Config::default()
    }
}

fn proof_of(n: u8) -> Proof {
    solve_pow(&contact(n).id, UNIX, DIFFICULTY)
}

/// A proof for `n` that fails the difficulty check.
fn bad_proof_of(n: u8) -> Proof {
    (0u64..)
        .map(|nonce| Proof {
            timestamp: UNIX,
            nonce,
        })
        .find(|p| leading_zero_bits(&pow_hash(&contact(n).id, p.timestamp, p.nonce)) < 6)
        .unwrap()
}

struct Out {
    transmits: Vec<Transmit>,
    events: Vec<Event>,
}

impl Out {
    fn sent(&self, msg_type: u16) -> Vec<&Transmit> {
        self.transmits
            .iter()
            .filter(|t| t.message.msg_type() == msg_type)
            .collect()
    }

    fn deliveries(&self) -> Vec<(ClientId, u16, Bytes)> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Deliver {
                    client,
                    message_id,
                    data,
                    ..
                } => Some((*client, *message_id, data.clone())),
                _ => None,
            })
            .collect()
    }

    fn disconnects(&self) -> Vec<(NodeId, DisconnectReason)> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::DisconnectPeer { peer, reason } => Some((*peer, *reason)),
                _ => None,
            })
            .collect()
    }
}

fn drain(g: &mut Gossip) -> Out {
    let mut transmits = Vec::new();
    while let Some(t) = g.poll_transmit() {
        transmits.push(t);
    }
    let mut events = Vec::new();
    while let Some(e) = g.poll_event() {
        events.push(e);
    }
    Out { transmits, events }
}

/// Node 0 with a proof, no peers, outputs drained.
fn node_with(config: Config, t: Instant) -> Gossip {
    let mut g = Gossip::new(contact(0), config, t, UNIX);
    g.set_proof(t, proof_of(0));
    let _ = drain(&mut g);
    g
}

fn node(t: Instant) -> Gossip {
    node_with(config(), t)
}

fn hello(n: u8) -> GossipPeerMessage {
    GossipPeerMessage::Hello {
        proof: proof_of(n),
        listen_addr: contact(n).addr,
    }
}

/// Peer `n` joins `g` through a HELLO.
fn join(g: &mut Gossip, t: Instant, n: u8) -> Out {
    g.handle_message(t, contact(n), hello(n));
    drain(g)
}

fn announce(
    origin: u8,
    nonce: u64,
    hops_left: u8,
    data_type: u16,
    data: &'static [u8],
) -> GossipPeerMessage {
    GossipPeerMessage::Announce {
        origin: contact(origin).id,
        nonce,
        hops_left,
        data_type,
        data: Bytes::from_static(data),
    }
}

fn announce_targets(out: &Out) -> BTreeSet<NodeId> {
    out.sent(voidmesh_proto::gossip_msg::PEER_ANNOUNCE)
        .iter()
        .map(|t| t.to.id)
        .collect()
}

use voidmesh_proto::gossip_msg::{PEER_ANNOUNCE, PEER_DISCOVERY, PEER_HELLO};

// ---- joining and proof of work ----

#[test]
fn new_node_asks_for_a_proof_and_does_not_join_without_one() {
    let t = crate::test_support::epoch();
    let mut g = Gossip::new(contact(0), config(), t, UNIX);
    g.add_known_peers(t, &[contact(1)]);
    let out = drain(&mut g);
    assert_eq!(out.events, vec![Event::ProofNeeded { unix_secs: UNIX }]);
    assert!(out.transmits.is_empty());
    g.set_proof(t, proof_of(0));
    let out = drain(&mut g);
    assert_eq!(out.sent(PEER_HELLO).len(), 1);
    assert_eq!(out.transmits[0].to, contact(1));
}

#[test]
fn hello_with_valid_proof_joins_the_view_and_is_welcomed() {
    let t = crate::test_support::epoch();
    let mut g = node(t);
    let out = join(&mut g, t, 1);
    assert!(g.is_neighbour(&contact(1).id));
    assert!(out.events.contains(&Event::PeerJoined { peer: contact(1) }));
    match &out.transmits[..] {
        [Transmit {
            to,
            message:
                GossipPeerMessage::Welcome {
                    accepted: true,
                    proof,
                    listen_addr,
                    ..
                },
        }] => {
            assert_eq!(*to, contact(1));
            assert_eq!(*proof, proof_of(0));
            assert_eq!(*listen_addr, contact(0).addr);
        }
        other => panic!("unexpected transmits {other:?}"),
    }
}

#[test]
fn peer_without_valid_proof_is_refused_and_never_enters_the_view() {
    let t = crate::test_support::epoch();
    let mut g = node(t);
    g.handle_message(
        t,
        contact(1),
        GossipPeerMessage::Hello {
            proof: bad_proof_of(1),
            listen_addr: contact(1).addr,
        },
    );
    let out = drain(&mut g);
    assert_eq!(g.view_len(), 0);
    assert!(out.transmits.is_empty());
    assert!(matches!(
        out.disconnects()[..],
        [(_, DisconnectReason::BadProof(PowError::TooEasy { .. }))]
    ));
    assert_eq!(g.stats().peers_refused, 1);
}

#[test]
fn proof_made_for_another_id_is_refused() {
    let t = crate::test_support::epoch();
    let mut g = node(t);
    // Peer 2 presents peer 1's proof.
    g.handle_message(t, contact(2), hello(1));
    let out = drain(&mut g);
    // With 6 bits the stolen proof passes by chance with probability 1/64; these ids are
    // fixed, so the outcome is too.
    assert_eq!(g.view_len(), 0);
    assert_eq!(out.disconnects().len(), 1);
}

#[test]
fn stale_proof_is_refused() {
    let t = crate::test_support::epoch();
    let mut g = node(t);
    let later = t + Duration::from_secs(61);
    g.handle_message(later, contact(1), hello(1));
    let out = drain(&mut g);
    assert!(matches!(
        out.disconnects()[..],
        [(_, DisconnectReason::BadProof(PowError::NotFresh { .. }))]
    ));
    assert_eq!(g.view_len(), 0);
}

#[test]
fn welcome_with_invalid_proof_is_refused() {
    let t = crate::test_support::epoch();
    let mut g = node(t);
    g.add_known_peers(t, &[contact(1)]);
    let _ = drain(&mut g);
    g.handle_message(
        t,
        contact(1),
        GossipPeerMessage::Welcome {
            accepted: true,
            proof: bad_proof_of(1),
            listen_addr: contact(1).addr,
            contacts: vec![],
        },
    );
    let out = drain(&mut g);
    assert_eq!(g.view_len(), 0);
    assert_eq!(out.disconnects().len(), 1);
}

#[test]
fn accepted_welcome_joins_and_its_contacts_are_tried() {
    let t = crate::test_support::epoch();
    let mut g = node_with(
        Config {
            min_connections: 3,
            ..config()
        },
        t,
    );
    g.add_known_peers(t, &[contact(1)]);
    let _ = drain(&mut g);
    g.handle_message(
        t,
        contact(1),
        GossipPeerMessage::Welcome {
            accepted: true,
            proof: proof_of(1),
            listen_addr: contact(1).addr,
            contacts: vec![contact(2), contact(3), contact(0)],
        },
    );
    let out = drain(&mut g);
    assert!(g.is_neighbour(&contact(1).id));
    let hellos: BTreeSet<NodeId> = out.sent(PEER_HELLO).iter().map(|t| t.to.id).collect();
    assert_eq!(hellos, BTreeSet::from([contact(2).id, contact(3).id]));
}

#[test]
fn full_view_answers_hello_with_full_and_contacts() {
    let t = crate::test_support::epoch();
    let mut g = node(t);
    for n in 1..=4 {
        let _ = join(&mut g, t, n);
    }
    let out = join(&mut g, t, 5);
    assert_eq!(g.view_len(), 4);
    assert!(!g.is_neighbour(&contact(5).id));
    match &out.transmits[..] {
        [Transmit {
            message:
                GossipPeerMessage::Welcome {
                    accepted: false,
                    contacts,
                    ..
                },
            ..
        }] => assert_eq!(contacts.len(), 4),
        other => panic!("unexpected transmits {other:?}"),
    }
    assert_eq!(g.stats().hellos_refused_full, 1);
}

#[test]
fn message_before_joining_disconnects_the_peer() {
    let t = crate::test_support::epoch();
    let mut g = node(t);
    g.handle_message(t, contact(1), GossipPeerMessage::Discovery);
    let out = drain(&mut g);
    assert_eq!(
        out.disconnects(),
        vec![(contact(1).id, DisconnectReason::NotJoined)]
    );
    assert!(out.transmits.is_empty());
}

#[test]
fn message_from_a_peer_we_said_hello_to_is_ignored_not_punished() {
    let t = crate::test_support::epoch();
    let mut g = node(t);
    g.add_known_peers(t, &[contact(1)]);
    let _ = drain(&mut g);
    g.handle_message(t, contact(1), announce(1, 1, 3, 7, b"early"));
    let out = drain(&mut g);
    assert!(out.events.is_empty());
    assert!(out.transmits.is_empty());
}

#[test]
fn unanswered_hello_is_given_up_after_its_timeout() {
    let t = crate::test_support::epoch();
    let mut g = node(t);
    g.add_known_peers(t, &[contact(1)]);
    g.handle_timeout(t);
    let _ = drain(&mut g);
    assert_eq!(g.poll_timeout(), Some(t + Duration::from_secs(5)));
    g.handle_timeout(t + Duration::from_secs(5));
    // Not retried before search_cooldown.
    assert!(drain(&mut g).sent(PEER_HELLO).is_empty());
    g.handle_timeout(t + Duration::from_secs(10));
    assert_eq!(drain(&mut g).sent(PEER_HELLO).len(), 1);
}

#[test]
fn proof_is_renewed_after_half_its_window() {
    let t = crate::test_support::epoch();
    let mut g = node(t);
    g.handle_timeout(t + Duration::from_secs(20));
    assert!(drain(&mut g).events.is_empty());
    let later = t + Duration::from_secs(30);
    g.handle_timeout(later);
    assert_eq!(
        drain(&mut g).events,
        vec![Event::ProofNeeded {
            unix_secs: UNIX + 30
        }]
    );
    // Not asked again while the request is outstanding.
    g.handle_timeout(later + Duration::from_secs(10));
    assert!(drain(&mut g).events.is_empty());
}

// ---- membership upkeep ----

#[test]
fn discovery_is_answered_with_an_offer_of_other_members() {
    let t = crate::test_support::epoch();
    let mut g = node(t);
    for n in 1..=3 {
        let _ = join(&mut g, t, n);
    }
    g.handle_message(t, contact(1), GossipPeerMessage::Discovery);
    let out = drain(&mut g);
    match &out.transmits[..] {
        [Transmit {
            to,
            message: GossipPeerMessage::Offer { contacts },
        }] => {
            assert_eq!(*to, contact(1));
            let got: BTreeSet<NodeId> = contacts.iter().map(|c| c.id).collect();
            assert_eq!(got, BTreeSet::from([contact(2).id, contact(3).id]));
        }
        other => panic!("unexpected transmits {other:?}"),
    }
}

#[test]
fn short_view_asks_neighbours_for_peers_and_dials_the_offered() {
    let t = crate::test_support::epoch();
    let mut g = node(t);
    let _ = join(&mut g, t, 1);
    g.handle_timeout(t + Duration::from_secs(10));
    let out = drain(&mut g);
    assert_eq!(out.sent(PEER_DISCOVERY).len(), 1);
    g.handle_message(
        t + Duration::from_secs(10),
        contact(1),
        GossipPeerMessage::Offer {
            contacts: vec![contact(5)],
        },
    );
    let out = drain(&mut g);
    assert_eq!(out.sent(PEER_HELLO)[0].to, contact(5));
}

#[test]
fn full_view_does_not_search() {
    let t = crate::test_support::epoch();
    let mut g = node(t);
    let _ = join(&mut g, t, 1);
    let _ = join(&mut g, t, 2);
    g.handle_timeout(t + Duration::from_secs(10));
    assert!(drain(&mut g).transmits.is_empty());
}

#[test]
fn failed_peer_leaves_the_view_and_refill_starts() {
    let t = crate::test_support::epoch();
    let mut g = node(t);
    g.add_known_peers(t, &[contact(9)]);
    let _ = drain(&mut g);
    let _ = join(&mut g, t, 1);
    let _ = join(&mut g, t, 2);
    let later = t + Duration::from_secs(11);
    g.handle_timeout(later);
    let _ = drain(&mut g);
    g.peer_failed(later, contact(2).id);
    let out = drain(&mut g);
    assert!(!g.is_neighbour(&contact(2).id));
    assert!(out.events.contains(&Event::PeerLeft {
        peer: contact(2).id
    }));
    assert_eq!(out.sent(PEER_HELLO)[0].to, contact(9));
    assert_eq!(out.sent(PEER_DISCOVERY)[0].to, contact(1));
}

#[test]
fn flooding_peer_is_disconnected() {
    let t = crate::test_support::epoch();
    let mut g = node_with(
        Config {
            peer_rate: 1,
            peer_burst: 5,
            ..config()
        },
        t,
    );
    let _ = join(&mut g, t, 1);
    for _ in 0..5 {
        g.handle_message(t, contact(1), GossipPeerMessage::Discovery);
    }
    assert!(drain(&mut g).disconnects().is_empty());
    g.handle_message(t, contact(1), GossipPeerMessage::Discovery);
    let out = drain(&mut g);
    assert_eq!(
        out.disconnects(),
        vec![(contact(1).id, DisconnectReason::Flooding)]
    );
    assert!(!g.is_neighbour(&contact(1).id));
}

#[test]
fn malformed_traffic_disconnects_the_peer() {
    let t = crate::test_support::epoch();
    let mut g = node(t);
    let _ = join(&mut g, t, 1);
    g.handle_malformed(t, contact(1).id);
    let out = drain(&mut g);
    assert_eq!(
        out.disconnects(),
        vec![(contact(1).id, DisconnectReason::Malformed)]
    );
    assert_eq!(g.view_len(), 0);
}

#[test]
fn info_from_the_new_address_updates_the_neighbours_address() {
    let t = crate::test_support::epoch();
    let mut g = node(t);
    let _ = join(&mut g, t, 1);
    let addr: SocketAddr = "10.1.1.1:99".parse().unwrap();
    let moved = Contact { addr, ..contact(1) };
    g.handle_message(t, moved, GossipPeerMessage::Info { listen_addr: addr });
    assert_eq!(g.view()[0].addr, addr);
}

/// The attack: a peer names someone else's address as its own, so that the node sends
/// its gossip there.
#[test]
fn a_claimed_address_other_than_the_one_heard_from_is_never_dialled() {
    let t = crate::test_support::epoch();
    let mut g = node(t);
    let _ = join(&mut g, t, 1);
    let victim: SocketAddr = "10.9.9.9:53".parse().unwrap();
    g.handle_message(
        t,
        contact(1),
        GossipPeerMessage::Info {
            listen_addr: victim,
        },
    );
    assert_eq!(
        g.view()[0].addr,
        contact(1).addr,
        "INFO from elsewhere ignored"
    );
    g.handle_message(
        t,
        contact(2),
        GossipPeerMessage::Hello {
            proof: proof_of(2),
            listen_addr: victim,
        },
    );
    let out = drain(&mut g);
    assert!(
        out.transmits.iter().all(|tx| tx.to.addr != victim),
        "nothing is sent to the claimed address"
    );
    assert!(g.view().iter().all(|c| c.addr != victim));
}

#[test]
fn new_listen_address_is_told_to_every_neighbour() {
    let t = crate::test_support::epoch();
    let mut g = node(t);
    let _ = join(&mut g, t, 1);
    let _ = join(&mut g, t, 2);
    let addr: SocketAddr = "10.1.1.1:99".parse().unwrap();
    g.set_listen_addr(t, addr);
    let out = drain(&mut g);
    assert_eq!(out.transmits.len(), 2);
    assert!(out
        .transmits
        .iter()
        .all(|t| t.message == GossipPeerMessage::Info { listen_addr: addr }));
}

// ---- dissemination ----

#[test]
fn local_item_reaches_other_local_subscribers_but_not_the_announcer() {
    let t = crate::test_support::epoch();
    let mut g = node(t);
    g.client_notify(t, ClientId(1), 7);
    g.client_notify(t, ClientId(2), 7);
    g.client_notify(t, ClientId(3), 8);
    g.client_announce(t, ClientId(1), 0, 7, Bytes::from_static(b"x"));
    let out = drain(&mut g);
    let got: Vec<ClientId> = out.deliveries().iter().map(|d| d.0).collect();
    assert_eq!(got, vec![ClientId(2)]);
}

#[test]
fn local_item_is_pushed_at_once_to_degree_neighbours() {
    let t = crate::test_support::epoch();
    let mut g = node(t);
    for n in 1..=4 {
        let _ = join(&mut g, t, n);
    }
    let id = g
        .client_announce(t, ClientId(1), 0, 7, Bytes::from_static(b"x"))
        .unwrap();
    let out = drain(&mut g);
    let sent = out.sent(PEER_ANNOUNCE);
    assert_eq!(sent.len(), 3);
    assert_eq!(announce_targets(&out).len(), 3);
    assert_eq!(g.item_sends(&id), Some(3));
    match &sent[0].message {
        GossipPeerMessage::Announce {
            origin, hops_left, ..
        } => {
            assert_eq!(*origin, contact(0).id);
            assert_eq!(*hops_left, 15, "ttl 0 means max_ttl (16) hops");
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn local_item_goes_to_all_neighbours_when_fewer_than_degree() {
    let t = crate::test_support::epoch();
    let mut g = node(t);
    let _ = join(&mut g, t, 1);
    g.client_announce(t, ClientId(1), 2, 7, Bytes::from_static(b"x"));
    let out = drain(&mut g);
    assert_eq!(announce_targets(&out), BTreeSet::from([contact(1).id]));
}

#[test]
fn ttl_one_reaches_neighbours_with_no_hop_left() {
    let t = crate::test_support::epoch();
    let mut g = node(t);
    let _ = join(&mut g, t, 1);
    g.client_announce(t, ClientId(1), 1, 7, Bytes::from_static(b"x"));
    let out = drain(&mut g);
    assert!(matches!(
        out.sent(PEER_ANNOUNCE)[0].message,
        GossipPeerMessage::Announce { hops_left: 0, .. }
    ));
}

#[test]
fn item_of_a_type_nobody_registered_is_neither_delivered_nor_forwarded() {
    let t = crate::test_support::epoch();
    let mut g = node(t);
    let _ = join(&mut g, t, 1);
    let _ = join(&mut g, t, 2);
    g.client_notify(t, ClientId(1), 8);
    g.handle_message(t, contact(1), announce(9, 1, 5, 7, b"x"));
    let out = drain(&mut g);
    assert!(out.events.is_empty());
    assert!(out.transmits.is_empty());
    assert_eq!(g.stats().items_unsubscribed, 1);
}

#[test]
fn item_is_forwarded_only_after_every_subscriber_validated_it() {
    let t = crate::test_support::epoch();
    let mut g = node(t);
    for n in 1..=3 {
        let _ = join(&mut g, t, n);
    }
    g.client_notify(t, ClientId(1), 7);
    g.client_notify(t, ClientId(2), 7);
    g.handle_message(t, contact(1), announce(9, 1, 5, 7, b"x"));
    let out = drain(&mut g);
    let deliveries = out.deliveries();
    assert_eq!(deliveries.len(), 2);
    assert_eq!(deliveries[0].1, deliveries[1].1, "one message id per item");
    assert!(
        out.transmits.is_empty(),
        "nothing forwarded before validation"
    );
    let mid = deliveries[0].1;
    g.client_validation(t, ClientId(1), mid, true);
    assert!(
        drain(&mut g).transmits.is_empty(),
        "one verdict is not enough"
    );
    g.client_validation(t, ClientId(2), mid, true);
    let out = drain(&mut g);
    assert_eq!(
        announce_targets(&out),
        BTreeSet::from([contact(2).id, contact(3).id]),
        "forwarded to every neighbour but the sender"
    );
    assert!(matches!(
        out.transmits[0].message,
        GossipPeerMessage::Announce { hops_left: 4, .. }
    ));
    assert_eq!(g.stats().items_validated, 1);
}

#[test]
fn one_invalid_verdict_drops_the_item_for_good() {
    let t = crate::test_support::epoch();
    let mut g = node(t);
    let _ = join(&mut g, t, 1);
    let _ = join(&mut g, t, 2);
    g.client_notify(t, ClientId(1), 7);
    g.client_notify(t, ClientId(2), 7);
    g.handle_message(t, contact(1), announce(9, 1, 5, 7, b"x"));
    let mid = drain(&mut g).deliveries()[0].1;
    g.client_validation(t, ClientId(1), mid, false);
    g.client_validation(t, ClientId(2), mid, true);
    assert!(drain(&mut g).transmits.is_empty());
    // A copy from another neighbour is not delivered again.
    g.handle_message(t, contact(2), announce(9, 1, 5, 7, b"x"));
    let out = drain(&mut g);
    assert!(out.events.is_empty() && out.transmits.is_empty());
    assert_eq!(g.stats().items_invalid, 1);
}

#[test]
fn item_without_verdict_in_time_is_dropped() {
    let t = crate::test_support::epoch();
    let mut g = node(t);
    let _ = join(&mut g, t, 1);
    let _ = join(&mut g, t, 2);
    g.client_notify(t, ClientId(1), 7);
    g.handle_message(t, contact(1), announce(9, 1, 5, 7, b"x"));
    let mid = drain(&mut g).deliveries()[0].1;
    let deadline = t + Duration::from_secs(10);
    g.handle_timeout(deadline);
    assert_eq!(g.pending_validations(), 0);
    g.client_validation(deadline, ClientId(1), mid, true);
    assert!(drain(&mut g).sent(PEER_ANNOUNCE).is_empty());
    assert_eq!(g.stats().items_unvalidated, 1);
}

#[test]
fn duplicate_is_delivered_once_and_never_sent_back_to_its_senders() {
    let t = crate::test_support::epoch();
    let mut g = node(t);
    for n in 1..=3 {
        let _ = join(&mut g, t, n);
    }
    g.client_notify(t, ClientId(1), 7);
    g.handle_message(t, contact(1), announce(9, 1, 5, 7, b"x"));
    g.handle_message(t, contact(2), announce(9, 1, 5, 7, b"x"));
    let out = drain(&mut g);
    assert_eq!(out.deliveries().len(), 1);
    g.client_validation(t, ClientId(1), out.deliveries()[0].1, true);
    let out = drain(&mut g);
    assert_eq!(announce_targets(&out), BTreeSet::from([contact(3).id]));
    assert_eq!(g.stats().duplicates, 1);
}

#[test]
fn item_with_no_hop_left_is_delivered_but_not_forwarded() {
    let t = crate::test_support::epoch();
    let mut g = node(t);
    let _ = join(&mut g, t, 1);
    let _ = join(&mut g, t, 2);
    g.client_notify(t, ClientId(1), 7);
    g.handle_message(t, contact(1), announce(9, 1, 0, 7, b"x"));
    let mid = drain(&mut g).deliveries()[0].1;
    g.client_validation(t, ClientId(1), mid, true);
    assert!(drain(&mut g).transmits.is_empty());
}

#[test]
fn received_hop_budget_is_capped_at_max_ttl() {
    let t = crate::test_support::epoch();
    let mut g = node(t);
    let _ = join(&mut g, t, 1);
    let _ = join(&mut g, t, 2);
    g.client_notify(t, ClientId(1), 7);
    g.handle_message(t, contact(1), announce(9, 1, 255, 7, b"x"));
    let mid = drain(&mut g).deliveries()[0].1;
    g.client_validation(t, ClientId(1), mid, true);
    assert!(matches!(
        drain(&mut g).transmits[0].message,
        GossipPeerMessage::Announce { hops_left: 15, .. }
    ));
}

#[test]
fn validation_for_an_unknown_message_id_is_ignored() {
    let t = crate::test_support::epoch();
    let mut g = node(t);
    let _ = join(&mut g, t, 1);
    g.client_validation(t, ClientId(1), 4242, true);
    g.client_validation(t, ClientId(1), 4242, false);
    let out = drain(&mut g);
    assert!(out.events.is_empty() && out.transmits.is_empty());
}

#[test]
fn validation_from_a_client_not_asked_is_ignored() {
    let t = crate::test_support::epoch();
    let mut g = node(t);
    let _ = join(&mut g, t, 1);
    let _ = join(&mut g, t, 2);
    g.client_notify(t, ClientId(1), 7);
    g.handle_message(t, contact(1), announce(9, 1, 5, 7, b"x"));
    let mid = drain(&mut g).deliveries()[0].1;
    g.client_validation(t, ClientId(5), mid, false);
    g.client_validation(t, ClientId(1), mid, true);
    assert_eq!(drain(&mut g).sent(PEER_ANNOUNCE).len(), 1);
}

#[test]
fn client_that_vanishes_drops_its_registrations_and_nothing_else() {
    let t = crate::test_support::epoch();
    let mut g = node(t);
    let _ = join(&mut g, t, 1);
    let _ = join(&mut g, t, 2);
    g.client_notify(t, ClientId(1), 7);
    g.client_notify(t, ClientId(2), 7);
    g.handle_message(t, contact(1), announce(9, 1, 5, 7, b"x"));
    let mid = drain(&mut g).deliveries()[0].1;
    g.client_validation(t, ClientId(2), mid, true);
    g.client_disconnected(t, ClientId(1));
    // The item had a valid verdict from the remaining subscriber: it goes on.
    assert_eq!(drain(&mut g).sent(PEER_ANNOUNCE).len(), 1);
    assert_eq!(g.view_len(), 2);
    // Client 1 gets nothing more; client 2 still does.
    g.handle_message(t, contact(1), announce(9, 2, 5, 7, b"y"));
    let got: Vec<ClientId> = drain(&mut g).deliveries().iter().map(|d| d.0).collect();
    assert_eq!(got, vec![ClientId(2)]);
}

#[test]
fn item_whose_only_subscriber_vanished_unanswered_is_dropped() {
    let t = crate::test_support::epoch();
    let mut g = node(t);
    let _ = join(&mut g, t, 1);
    let _ = join(&mut g, t, 2);
    g.client_notify(t, ClientId(1), 7);
    g.handle_message(t, contact(1), announce(9, 1, 5, 7, b"x"));
    let _ = drain(&mut g);
    g.client_disconnected(t, ClientId(1));
    assert!(drain(&mut g).transmits.is_empty());
    assert_eq!(g.pending_validations(), 0);
}

#[test]
fn own_items_coming_back_are_not_delivered_again() {
    let t = crate::test_support::epoch();
    let mut g = node(t);
    let _ = join(&mut g, t, 1);
    g.client_notify(t, ClientId(2), 7);
    let _ = g.client_announce(t, ClientId(1), 0, 7, Bytes::from_static(b"x"));
    let sent = drain(&mut g).sent(PEER_ANNOUNCE)[0].message.clone();
    g.handle_message(t, contact(1), sent);
    assert!(drain(&mut g).events.is_empty());
}

#[test]
fn pending_items_never_share_a_message_id() {
    let t = crate::test_support::epoch();
    let mut g = node_with(
        Config {
            cache_size: 300,
            ..config()
        },
        t,
    );
    let _ = join(&mut g, t, 1);
    g.client_notify(t, ClientId(1), 7);
    let mut ids = BTreeSet::new();
    for nonce in 0..300 {
        g.handle_message(
            t,
            contact(1),
            GossipPeerMessage::Announce {
                origin: contact(9).id,
                nonce,
                hops_left: 1,
                data_type: 7,
                data: Bytes::new(),
            },
        );
        let out = drain(&mut g);
        assert!(out.disconnects().is_empty());
        for d in out.deliveries() {
            assert!(ids.insert(d.1), "message id {} reused", d.1);
        }
    }
    assert_eq!(ids.len(), 300);
}

#[test]
fn poll_timeout_is_the_earliest_deadline() {
    let t = crate::test_support::epoch();
    let mut g = node(t);
    g.handle_timeout(t);
    let _ = drain(&mut g);
    assert_eq!(g.poll_timeout(), Some(t + Duration::from_secs(10)));
    let _ = join(&mut g, t, 1);
    g.client_notify(t, ClientId(1), 7);
    let later = t + Duration::from_secs(3);
    g.handle_message(later, contact(1), announce(9, 1, 5, 7, b"x"));
    assert_eq!(g.poll_timeout(), Some(t + Duration::from_secs(10)));
    g.handle_timeout(t + Duration::from_secs(10));
    assert_eq!(g.poll_timeout(), Some(later + Duration::from_secs(10)));
}

proptest! {
    /// Whatever arrives, the cache, the seen-set and the pending validations stay bounded.
    #[test]
    fn memory_stays_bounded_under_any_traffic(
        steps in proptest::collection::vec(
            (any::<u8>(), 0u16..4, any::<u8>(), 0u8..3, any::<bool>(), 0u64..3),
            1..300,
        )
    ) {
        let t0 = crate::test_support::epoch();
        let mut g = node_with(Config { cache_size: 8, max_seen: 20, peer_burst: 10_000, ..config() }, t0);
        let _ = join(&mut g, t0, 1);
        let _ = join(&mut g, t0, 2);
        g.client_notify(t0, ClientId(1), 1);
        g.client_notify(t0, ClientId(2), 2);
        let mut now = t0;
        let mut mids = Vec::new();
        for (nonce, data_type, hops, action, valid, dt) in steps {
            now += Duration::from_secs(dt);
            match action {
                0 => g.handle_message(now, contact(1), announce(9, u64::from(nonce), hops, data_type, b"d")),
                1 => {
                    if let Some(mid) = mids.pop() {
                        g.client_validation(now, ClientId(u64::from(data_type % 3)), mid, valid);
                    }
                }
                _ => g.handle_timeout(now),
            }
            let out = drain(&mut g);
            mids.extend(out.deliveries().iter().map(|d| d.1));
            prop_assert!(g.cached_items() <= 8);
            prop_assert!(g.seen_items() <= 20);
            prop_assert!(g.pending_validations() <= g.cached_items());
        }
    }
}
