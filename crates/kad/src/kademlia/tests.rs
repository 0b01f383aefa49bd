//! Unit tests of the node as a whole: one node driven by hand, its peers played by the test.

use super::*;
use crate::routing::PING_IF_SILENT_FOR;
use crate::test_support::epoch;
use std::net::SocketAddr;

fn id(n: u8) -> Key {
    let mut raw = [0u8; 32];
    raw[0] = n;
    raw[31] = n;
    Key(raw)
}

fn contact(n: u8) -> Contact {
    Contact {
        id: id(n),
        addr: SocketAddr::from(([10, 0, 0, n], 4000)),
    }
}

fn config() -> Config {
    Config {
        rng_seed: 42,
        ..Config::default()
    }
}

/// A node with id 0 (so contact `n` lands in bucket `255 - n.leading_zeros()`).
fn node(now: Instant) -> Kademlia {
    Kademlia::new(id(0), config(), now)
}

fn transmits(kad: &mut Kademlia) -> Vec<Transmit> {
    std::iter::from_fn(|| kad.poll_transmit()).collect()
}

fn events(kad: &mut Kademlia) -> Vec<Event> {
    std::iter::from_fn(|| kad.poll_event()).collect()
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

#[test]
fn restored_record_is_served_and_listed() {
    let now = epoch();
    let mut kad = node(now);
    let key = Key([4; 32]);
    let record = Record {
        value: Bytes::from_static(b"kept"),
        version: Version(3),
        expires: now + secs(1_000_000),
        replication: 0,
        publisher: true,
    };
    assert_eq!(kad.restore_record(now, key, record), StoreOutcome::Stored);
    let (k, held) = kad.records().next().unwrap();
    assert_eq!(*k, key);
    assert_eq!(held.replication, 1);
    assert!(held.expires <= now + kad.config().max_ttl);
    let reply = kad.handle_request(now, contact(1), KadMessage::FindValue { key });
    assert!(matches!(
        reply,
        KadMessage::FoundValue {
            version: Version(3),
            ..
        }
    ));
}

#[test]
fn huge_configured_durations_do_not_panic() {
    let now = epoch();
    let mut kad = Kademlia::new(
        id(0),
        Config {
            request_timeout: Duration::MAX,
            query_timeout: Duration::MAX,
            max_ttl: Duration::MAX,
            refresh_interval: Duration::MAX,
            republish_interval: Duration::MAX,
            ..config()
        },
        now,
    );
    kad.add_contact(now, contact(1));
    let _ = kad.put(
        now,
        Key([1; 32]),
        Bytes::new(),
        Duration::MAX,
        3,
        Version(1),
    );
    let _ = kad.handle_request(now, contact(1), store(Key([2; 32]), b"v", u32::MAX, 1));
    let _ = transmits(&mut kad);
    kad.handle_timeout(now + secs(3600));
    assert!(kad.poll_timeout().is_some());
}

#[test]
fn zero_k_and_alpha_are_taken_as_one() {
    let now = epoch();
    let mut kad = Kademlia::new(
        id(0),
        Config {
            k: 0,
            alpha: 0,
            max_replication: 0,
            ..config()
        },
        now,
    );
    kad.add_contact(now, contact(1));
    let _ = kad.find_node(now, id(1));
    assert_eq!(transmits(&mut kad).len(), 1);
}

#[test]
fn bootstrap_without_seeds_finishes_at_once() {
    let now = epoch();
    let mut kad = node(now);
    let query = kad.bootstrap(now, &[]);
    assert!(transmits(&mut kad).is_empty());
    assert_eq!(
        events(&mut kad),
        vec![Event::BootstrapFinished { query, contacts: 0 }]
    );
    assert_eq!(kad.active_queries(), 0);
}

#[test]
fn single_node_put_is_kept_locally_and_get_answers_without_network() {
    let now = epoch();
    let mut kad = node(now);
    let key = Key([9; 32]);
    let put = kad.put(now, key, Bytes::from_static(b"v"), secs(60), 3, Version(1));
    assert_eq!(
        events(&mut kad),
        vec![Event::PutFinished {
            query: put,
            key,
            stored_remote: 0,
            stored_local: true
        }]
    );
    let get = kad.get(now, key);
    assert!(transmits(&mut kad).is_empty());
    assert_eq!(
        events(&mut kad),
        vec![Event::GetFinished {
            query: get,
            key,
            value: Some(Bytes::from_static(b"v"))
        }]
    );
}

#[test]
fn get_with_nobody_to_ask_fails_at_once() {
    let now = epoch();
    let mut kad = node(now);
    let get = kad.get(now, Key([9; 32]));
    assert_eq!(
        events(&mut kad),
        vec![Event::GetFinished {
            query: get,
            key: Key([9; 32]),
            value: None
        }]
    );
}

#[test]
fn ping_gets_pong_and_reply_types_get_an_error() {
    let now = epoch();
    let mut kad = node(now);
    assert_eq!(
        kad.handle_request(now, contact(1), KadMessage::Ping),
        KadMessage::Pong
    );
    match kad.handle_request(now, contact(1), KadMessage::Pong) {
        KadMessage::Error { code, .. } => assert_eq!(code, 1),
        other => panic!("expected an error, got {other:?}"),
    }
}

#[test]
fn every_request_offers_the_sender_to_the_table() {
    let now = epoch();
    let mut kad = node(now);
    let _ = kad.handle_request(now, contact(1), KadMessage::Ping);
    let _ = kad.handle_request(now, contact(2), KadMessage::FindValue { key: Key([1; 32]) });
    let mut ids: Vec<Key> = kad.contacts().iter().map(|c| c.id).collect();
    ids.sort();
    assert_eq!(ids, vec![id(1), id(2)]);
}

#[test]
fn should_not_add_self_from_a_request() {
    let now = epoch();
    let mut kad = node(now);
    let me = Contact {
        id: id(0),
        addr: SocketAddr::from(([10, 0, 0, 0], 1)),
    };
    let _ = kad.handle_request(now, me, KadMessage::Ping);
    assert!(kad.contacts().is_empty());
}

#[test]
fn find_node_returns_closest_without_the_requester() {
    let now = epoch();
    let mut kad = node(now);
    for n in 1..=30 {
        kad.add_contact(now, contact(n));
    }
    let reply = kad.handle_request(now, contact(5), KadMessage::FindNode { target: id(4) });
    let KadMessage::FindNodeReply { contacts } = reply else {
        panic!("expected FIND_NODE_REPLY");
    };
    assert_eq!(contacts.len(), 20);
    assert_eq!(contacts[0].id, id(4));
    assert!(contacts.iter().all(|c| c.id != id(5)));
}

fn store(key: Key, value: &'static [u8], ttl_secs: u32, version: u64) -> KadMessage {
    KadMessage::Store {
        key,
        value: Bytes::from_static(value),
        ttl_secs,
        replication: 3,
        version: Version(version),
    }
}

#[test]
fn stored_value_is_found_with_remaining_ttl() {
    let now = epoch();
    let mut kad = node(now);
    let key = Key([7; 32]);
    assert_eq!(
        kad.handle_request(now, contact(1), store(key, b"v", 100, 1)),
        KadMessage::StoreReply { key, stored: true }
    );
    assert_eq!(
        kad.handle_request(now + secs(40), contact(2), KadMessage::FindValue { key }),
        KadMessage::FoundValue {
            value: Bytes::from_static(b"v"),
            ttl_secs: 60,
            version: Version(1)
        }
    );
}

#[test]
fn older_version_does_not_replace_newer_over_the_wire() {
    let now = epoch();
    let mut kad = node(now);
    let key = Key([7; 32]);
    let _ = kad.handle_request(now, contact(1), store(key, b"new", 100, 5));
    assert_eq!(
        kad.handle_request(now, contact(1), store(key, b"old", 100, 4)),
        KadMessage::StoreReply { key, stored: false }
    );
    // The same version again is accepted (idempotent).
    assert_eq!(
        kad.handle_request(now, contact(1), store(key, b"new", 100, 5)),
        KadMessage::StoreReply { key, stored: true }
    );
    let KadMessage::FoundValue { value, .. } =
        kad.handle_request(now, contact(1), KadMessage::FindValue { key })
    else {
        panic!("expected the value");
    };
    assert_eq!(value, Bytes::from_static(b"new"));
}

#[test]
fn store_ttl_is_clamped_to_max_ttl() {
    let now = epoch();
    let mut kad = Kademlia::new(
        id(0),
        Config {
            max_ttl: secs(10),
            ..config()
        },
        now,
    );
    let key = Key([7; 32]);
    let _ = kad.handle_request(now, contact(1), store(key, b"v", u32::MAX, 1));
    let reply = kad.handle_request(now, contact(1), KadMessage::FindValue { key });
    assert!(matches!(reply, KadMessage::FoundValue { ttl_secs: 10, .. }));
}

#[test]
fn expired_record_is_dropped_by_handle_timeout() {
    let now = epoch();
    let mut kad = node(now);
    let key = Key([7; 32]);
    let _ = kad.handle_request(now, contact(1), store(key, b"v", 5, 1));
    assert_eq!(kad.record_count(), 1);
    assert_eq!(kad.poll_timeout(), Some(now + secs(5)));
    kad.handle_timeout(now + secs(4));
    assert_eq!(kad.record_count(), 1);
    kad.handle_timeout(now + secs(5));
    assert_eq!(kad.record_count(), 0);
    let reply = kad.handle_request(now + secs(5), contact(1), KadMessage::FindValue { key });
    assert!(matches!(reply, KadMessage::ValueNotFound { .. }));
}

#[test]
fn lookup_respects_alpha_and_timeouts_free_slots() {
    let now = epoch();
    let mut kad = node(now);
    for n in 1..=10 {
        kad.add_contact(now, contact(n));
    }
    let _ = kad.find_node(now, id(1));
    assert_eq!(transmits(&mut kad).len(), 3);
    // Early: nothing happens.
    kad.handle_timeout(now + secs(1) - Duration::from_millis(1));
    assert!(transmits(&mut kad).is_empty());
    // Past the request deadline the three stop counting and three more go out.
    assert_eq!(kad.poll_timeout(), Some(now + secs(1)));
    kad.handle_timeout(now + secs(1));
    assert_eq!(transmits(&mut kad).len(), 3);
}

#[test]
fn handle_timeout_before_any_deadline_does_nothing() {
    let now = epoch();
    let mut kad = node(now);
    kad.add_contact(now, contact(1));
    let _ = kad.get(now, Key([3; 32]));
    let _ = transmits(&mut kad);
    let before = (kad.pending_requests(), kad.active_queries());
    kad.handle_timeout(now);
    kad.handle_timeout(now + Duration::from_millis(999));
    assert!(transmits(&mut kad).is_empty());
    assert!(events(&mut kad).is_empty());
    assert_eq!((kad.pending_requests(), kad.active_queries()), before);
}

#[test]
fn late_answer_is_used_while_the_lookup_runs() {
    let now = epoch();
    let mut kad = Kademlia::new(
        id(0),
        Config {
            alpha: 1,
            ..config()
        },
        now,
    );
    kad.add_contact(now, contact(1));
    kad.add_contact(now, contact(2));
    let _ = kad.find_node(now, id(1));
    let first = transmits(&mut kad);
    assert_eq!(first[0].to, contact(1));
    // Past the deadline the slot goes to the next peer.
    kad.handle_timeout(now + secs(1));
    let second = transmits(&mut kad);
    assert_eq!(second[0].to, contact(2));
    // The late answer still brings in a new candidate, asked once the slot frees.
    kad.handle_response(
        now + secs(1),
        first[0].request,
        Ok(KadMessage::FindNodeReply {
            contacts: vec![contact(3)],
        }),
    );
    kad.handle_response(
        now + secs(1),
        second[0].request,
        Ok(KadMessage::FindNodeReply { contacts: vec![] }),
    );
    let third = transmits(&mut kad);
    assert_eq!(third.len(), 1);
    assert_eq!(third[0].to, contact(3));
}

#[test]
fn late_answer_of_a_finished_lookup_only_notes_liveness() {
    let now = epoch();
    let mut kad = node(now);
    // Both in bucket 255, 0x80 the older.
    kad.add_contact(now, contact(0x80));
    kad.add_contact(now, contact(0x81));
    let query = kad.find_node(now, id(0x80));
    let first = transmits(&mut kad);
    assert_eq!(first.len(), 2);
    assert_eq!(first[0].to, contact(0x80));
    // Both deadlines pass: with nobody left to ask, the lookup ends empty.
    kad.handle_timeout(now + secs(1));
    assert_eq!(
        events(&mut kad),
        vec![Event::FindNodeFinished {
            query,
            target: id(0x80),
            closest: vec![]
        }]
    );
    // A late answer is dropped (no new request, no event) but the sender is alive:
    // it moves to the tail of its bucket.
    kad.handle_response(
        now + secs(2),
        first[0].request,
        Ok(KadMessage::FindNodeReply { contacts: vec![] }),
    );
    assert!(events(&mut kad).is_empty());
    assert!(transmits(&mut kad).is_empty());
    assert_eq!(kad.contacts(), vec![contact(0x81), contact(0x80)]);
}

#[test]
fn late_answer_is_ignored_after_get_finished() {
    let now = epoch();
    let mut kad = node(now);
    for n in 1..=3 {
        kad.add_contact(now, contact(n));
    }
    let key = Key([1; 32]);
    let query = kad.get(now, key);
    let sent = transmits(&mut kad);
    assert_eq!(sent.len(), 3);
    let found = || {
        Ok(KadMessage::FoundValue {
            value: Bytes::from_static(b"v"),
            ttl_secs: 60,
            version: Version(1),
        })
    };
    kad.handle_response(now, sent[0].request, found());
    assert_eq!(
        events(&mut kad),
        vec![Event::GetFinished {
            query,
            key,
            value: Some(Bytes::from_static(b"v"))
        }]
    );
    kad.handle_response(now, sent[1].request, found());
    kad.handle_response(now, sent[1].request, found());
    kad.handle_response(now, RequestId(9999), found());
    assert!(events(&mut kad).is_empty());
}

#[test]
fn get_fails_when_query_deadline_passes() {
    let now = epoch();
    let mut kad = Kademlia::new(
        id(0),
        Config {
            request_timeout: secs(60),
            query_timeout: secs(10),
            ..config()
        },
        now,
    );
    kad.add_contact(now, contact(1));
    let key = Key([1; 32]);
    let query = kad.get(now, key);
    let _ = transmits(&mut kad);
    assert_eq!(kad.poll_timeout(), Some(now + secs(10)));
    kad.handle_timeout(now + secs(10));
    assert_eq!(
        events(&mut kad),
        vec![Event::GetFinished {
            query,
            key,
            value: None
        }]
    );
}

#[test]
fn wrong_reply_type_counts_as_failure() {
    let now = epoch();
    let mut kad = node(now);
    kad.add_contact(now, contact(1));
    let key = Key([1; 32]);
    let query = kad.get(now, key);
    let sent = transmits(&mut kad);
    kad.handle_response(now, sent[0].request, Ok(KadMessage::Pong));
    assert_eq!(
        events(&mut kad),
        vec![Event::GetFinished {
            query,
            key,
            value: None
        }]
    );
}

#[test]
fn repeated_failures_remove_a_contact() {
    let now = epoch();
    let mut kad = node(now);
    kad.add_contact(now, contact(1));
    for _ in 0..crate::routing::MAX_FAILURES {
        let _ = kad.find_node(now, id(1));
        let sent = transmits(&mut kad);
        kad.handle_response(now, sent[0].request, Err(RequestFailure::Unreachable));
    }
    assert!(kad.contacts().is_empty());
}

#[test]
fn full_bucket_pings_oldest_and_evicts_it_when_the_ping_fails() {
    let now = epoch();
    let mut kad = Kademlia::new(id(0), Config { k: 2, ..config() }, now);
    // 0x80.. and 0x81.. share bucket 255.
    kad.add_contact(now, contact(0x80));
    kad.add_contact(now, contact(0x81));
    let later = now + PING_IF_SILENT_FOR;
    let _ = kad.handle_request(later, contact(0x82), KadMessage::Ping);
    let sent = transmits(&mut kad);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].to, contact(0x80));
    assert_eq!(sent[0].message, KadMessage::Ping);
    // Not evicted before the ping fails.
    assert!(kad.contacts().contains(&contact(0x80)));
    kad.handle_response(later, sent[0].request, Err(RequestFailure::Timeout));
    let contacts = kad.contacts();
    assert!(!contacts.contains(&contact(0x80)));
    assert!(contacts.contains(&contact(0x82)));
}

#[test]
fn full_bucket_keeps_oldest_when_it_answers_the_ping() {
    let now = epoch();
    let mut kad = Kademlia::new(id(0), Config { k: 2, ..config() }, now);
    kad.add_contact(now, contact(0x80));
    kad.add_contact(now, contact(0x81));
    let later = now + PING_IF_SILENT_FOR;
    let _ = kad.handle_request(later, contact(0x82), KadMessage::Ping);
    let sent = transmits(&mut kad);
    kad.handle_response(later, sent[0].request, Ok(KadMessage::Pong));
    let contacts = kad.contacts();
    assert!(contacts.contains(&contact(0x80)));
    assert!(!contacts.contains(&contact(0x82)));
}

#[test]
fn unanswered_ping_evicts_at_its_deadline() {
    let now = epoch();
    let mut kad = Kademlia::new(id(0), Config { k: 1, ..config() }, now);
    kad.add_contact(now, contact(0x80));
    let later = now + PING_IF_SILENT_FOR;
    let _ = kad.handle_request(later, contact(0x81), KadMessage::Ping);
    assert_eq!(transmits(&mut kad).len(), 1);
    kad.handle_timeout(later + secs(1));
    assert_eq!(kad.contacts(), vec![contact(0x81)]);
}

#[test]
fn put_stores_on_the_replication_closest() {
    let now = epoch();
    let mut kad = node(now);
    for n in 1..=10 {
        kad.add_contact(now, contact(n));
    }
    // Key 0x05..05: contacts 5, 4, 6, 7, ... are the closest; the local id 0 is far.
    let key = id(5);
    let put = kad.put(now, key, Bytes::from_static(b"v"), secs(60), 3, Version(1));
    // Answer every lookup request with nothing new until STOREs appear.
    let mut stores = Vec::new();
    for _ in 0..10 {
        for t in transmits(&mut kad) {
            match t.message {
                KadMessage::FindNode { .. } => kad.handle_response(
                    now,
                    t.request,
                    Ok(KadMessage::FindNodeReply { contacts: vec![] }),
                ),
                KadMessage::Store { .. } => stores.push(t),
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    let mut targets: Vec<Key> = stores.iter().map(|t| t.to.id).collect();
    let mut expect: Vec<Key> = (1..=10).map(id).collect();
    expect.sort_by_key(|c| key.distance(c));
    expect.truncate(3);
    targets.sort_by_key(|c| key.distance(c));
    assert_eq!(targets, expect);
    for (i, t) in stores.iter().enumerate() {
        assert!(matches!(
            t.message,
            KadMessage::Store {
                ttl_secs: 60,
                replication: 3,
                ..
            }
        ));
        kad.handle_response(
            now,
            t.request,
            Ok(KadMessage::StoreReply {
                key,
                stored: i != 0,
            }),
        );
    }
    assert_eq!(
        events(&mut kad),
        vec![Event::PutFinished {
            query: put,
            key,
            stored_remote: 2,
            stored_local: false
        }]
    );
    assert_eq!(kad.record_count(), 0);
}

#[test]
fn put_replication_is_clamped() {
    let now = epoch();
    let mut kad = node(now);
    for n in 1..=30 {
        kad.add_contact(now, contact(n));
    }
    for (asked, expected) in [(0u8, 1usize), (255, 20)] {
        // Every contact is nearer to 0x1f.. than the local id 0, so no local copy.
        let _ = kad.put(now, id(0x1f), Bytes::new(), secs(60), asked, Version(1));
        let mut stores = 0;
        for _ in 0..20 {
            for t in transmits(&mut kad) {
                match t.message {
                    KadMessage::FindNode { .. } => kad.handle_response(
                        now,
                        t.request,
                        Ok(KadMessage::FindNodeReply { contacts: vec![] }),
                    ),
                    _ => stores += 1,
                }
            }
        }
        assert_eq!(stores, expected);
    }
}

#[test]
fn replica_is_republished_to_the_closest_known() {
    let now = epoch();
    let mut kad = node(now);
    for n in 1..=5 {
        kad.add_contact(now, contact(n));
    }
    let key = id(3);
    let _ = kad.handle_request(now, contact(1), store(key, b"v", 7200, 1));
    let hour = kad.config().republish_interval;
    assert!(kad.poll_timeout().is_some_and(|t| t <= now + hour));
    kad.handle_timeout(now + hour);
    let stores: Vec<Transmit> = transmits(&mut kad)
        .into_iter()
        .filter(|t| matches!(t.message, KadMessage::Store { .. }))
        .collect();
    assert_eq!(stores.len(), 3);
    for t in &stores {
        assert!(matches!(
            t.message,
            KadMessage::Store { ttl_secs: 3600, .. }
        ));
    }
}

#[test]
fn stale_buckets_are_refreshed() {
    let now = epoch();
    let mut kad = node(now);
    kad.add_contact(now, contact(0x80));
    let interval = kad.config().refresh_interval;
    assert_eq!(kad.poll_timeout(), Some(now + interval));
    kad.handle_timeout(now + interval);
    let sent = transmits(&mut kad);
    assert!(!sent.is_empty());
    assert!(sent
        .iter()
        .all(|t| matches!(t.message, KadMessage::FindNode { .. })));
    assert!(kad.poll_timeout().is_some_and(|t| t > now + interval));
}

#[test]
fn rng_seed_makes_runs_repeatable() {
    let run = || {
        let now = epoch();
        let mut kad = node(now);
        kad.add_contact(now, contact(0x80));
        kad.add_contact(now, contact(0x01));
        kad.handle_timeout(now + kad.config().refresh_interval);
        transmits(&mut kad)
            .into_iter()
            .map(|t| t.message)
            .collect::<Vec<_>>()
    };
    assert_eq!(run(), run());
}
