//! Unit tests of the node as a whole: one node driven by hand, its peers played by the test.

use super::*;
use crate::routing::PING_IF_SILENT_FOR;
use crate::test_support::epoch;
use std::net::SocketAddr;
use voidmesh_proto::SignedRecordError;

fn id(n: u8) -> Key {
    let mut raw = [0u8; 32];
    raw[0] = n;
    raw[31] = n;
    Key(raw)
}

fn contact(n: u8) -> Contact {
    Contact::unkeyed(id(n), SocketAddr::from(([10, 0, 0, n], 4000)))
}

/// The defaults, except: one lookup path, a read quorum of 1 (the first value found
/// ends a GET) and no subnet limit (every test contact lives in 10.0.0.0/24), so the
/// basic rules can be checked one request at a time. The tests of those features set
/// them explicitly.
fn config() -> Config {
    Config {
        rng_seed: 42,
        disjoint_paths: 1,
        read_quorum: 1,
        max_per_subnet: 0,
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
            value: Some(Bytes::from_static(b"v")),
            signed: None,
            version: Some(Version(1)),
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
            value: None,
            signed: None,
            version: None,
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
    let me = Contact::unkeyed(id(0), SocketAddr::from(([10, 0, 0, 0], 1)));
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
        ttl_ms: ttl_secs.saturating_mul(1000),
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
            ttl_ms: 60_000,
            version: Version(1)
        }
    );
}

#[test]
fn ttl_handed_on_is_never_shortened_by_rounding() {
    let now = epoch();
    let mut kad = node(now);
    let key = Key([7; 32]);
    let one_second = KadMessage::Store {
        key,
        value: Bytes::from_static(b"v"),
        ttl_ms: 1000,
        replication: 1,
        version: Version(1),
    };
    let _ = kad.handle_request(now, contact(1), one_second);
    let ttl_at = |kad: &mut Kademlia, at| match kad.handle_request(
        at,
        contact(2),
        KadMessage::FindValue { key },
    ) {
        KadMessage::FoundValue { ttl_ms, .. } => Some(ttl_ms),
        _ => None,
    };
    // A one-second record read after 0.3 s still has 0.7 s; 0.5 µs before it expires it
    // still has 1 ms (rounded up), and at its expiry it is gone.
    assert_eq!(
        ttl_at(&mut kad, now + Duration::from_millis(300)),
        Some(700)
    );
    assert_eq!(
        ttl_at(&mut kad, now + Duration::from_nanos(999_999_500)),
        Some(1)
    );
    assert_eq!(ttl_at(&mut kad, now + secs(1)), None);
}

#[test]
fn store_changes_tell_what_to_persist() {
    use crate::{Removal, StoreChange};
    let now = epoch();
    let mut kad = Kademlia::new(
        id(0),
        Config {
            max_records: 1,
            ..config()
        },
        now,
    );
    let (a, b) = (Key([1; 32]), Key([2; 32]));
    let _ = kad.handle_request(now, contact(1), store(a, b"a", 10, 1));
    // The same record again with the same expiry changes nothing.
    let _ = kad.handle_request(now, contact(1), store(a, b"a", 10, 1));
    // A longer-lived record evicts the one expiring sooner.
    let _ = kad.handle_request(now, contact(1), store(b, b"b", 100, 1));
    let changes: Vec<StoreChange> = std::iter::from_fn(|| kad.poll_store_change()).collect();
    assert_eq!(
        changes,
        vec![
            StoreChange::Held(a),
            StoreChange::Removed(a, Removal::Evicted),
            StoreChange::Held(b),
        ]
    );
    kad.handle_timeout(now + secs(100));
    assert_eq!(
        kad.poll_store_change(),
        Some(StoreChange::Removed(b, Removal::Expired))
    );
    assert!(kad.held(&b).is_none());
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
    assert!(matches!(
        reply,
        KadMessage::FoundValue { ttl_ms: 10_000, .. }
    ));
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
            ttl_ms: 60_000,
            version: Version(1),
        })
    };
    kad.handle_response(now, sent[0].request, found());
    assert_eq!(
        events(&mut kad),
        vec![Event::GetFinished {
            query,
            key,
            value: Some(Bytes::from_static(b"v")),
            signed: None,
            version: Some(Version(1)),
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
            value: None,
            signed: None,
            version: None,
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
            value: None,
            signed: None,
            version: None,
        }]
    );
}

#[test]
fn repeated_failures_remove_a_contact_not_heard_from_for_a_while() {
    let now = epoch();
    let mut kad = node(now);
    kad.add_contact(now, contact(1));
    let later = now + crate::routing::STALE_AFTER;
    for _ in 0..crate::routing::MAX_FAILURES {
        let _ = kad.find_node(later, id(1));
        let sent = transmits(&mut kad);
        kad.handle_response(later, sent[0].request, Err(RequestFailure::Unreachable));
    }
    assert!(kad.contacts().is_empty());
}

#[test]
fn a_contact_that_failed_during_a_partition_is_asked_again() {
    let now = epoch();
    let mut kad = node(now);
    kad.add_contact(now, contact(1));
    for _ in 0..3 {
        let _ = kad.find_node(now, id(9));
        let sent = transmits(&mut kad);
        kad.handle_response(now, sent[0].request, Err(RequestFailure::Timeout));
    }
    // The only contact, failed three times in a row: still known, so a lookup after the
    // partition heals reaches it.
    assert_eq!(kad.contacts(), vec![contact(1)]);
    let _ = kad.find_node(now + secs(5), id(9));
    assert_eq!(transmits(&mut kad).len(), 1);
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
    // The publisher keeps its copy from the start (read-your-writes), though it is far.
    assert_eq!(kad.local_value(now, &key), Some(Bytes::from_static(b"v")));
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
                ttl_ms: 60_000,
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
    assert_eq!(
        kad.record_count(),
        1,
        "the publisher's own copy, not a replica"
    );
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
            KadMessage::Store {
                ttl_ms: 3_600_000,
                ..
            }
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

// ----- hardening: id puzzle, subnet limit, rate limit, answer checks -----

/// A contact in 10.0.0.0/24 whose id does (or does not) solve the puzzle at `difficulty`.
fn puzzle_contact(difficulty: u8, solves: bool, skip: usize) -> Contact {
    (1..=255u8)
        .map(contact)
        .filter(|c| voidmesh_proto::id_puzzle_ok(&c.id, difficulty) == solves)
        .nth(skip)
        .expect("enough ids")
}

#[test]
fn request_from_an_id_failing_the_puzzle_gets_error_403_and_is_not_added() {
    let now = epoch();
    let mut kad = Kademlia::new(
        id(0),
        Config {
            id_difficulty: 3,
            ..config()
        },
        now,
    );
    let bad = puzzle_contact(3, false, 0);
    let reply = kad.handle_request(now, bad, KadMessage::FindNode { target: id(1) });
    assert!(matches!(reply, KadMessage::Error { code: 403, .. }));
    assert!(kad.contacts().is_empty());
    assert_eq!(kad.stats().puzzle_refused, 1);
    let good = puzzle_contact(3, true, 0);
    let reply = kad.handle_request(now, good, KadMessage::Ping);
    assert_eq!(reply, KadMessage::Pong);
    assert_eq!(kad.contacts(), vec![good]);
}

#[test]
fn contacts_failing_the_puzzle_are_neither_added_nor_queried() {
    let now = epoch();
    let mut kad = Kademlia::new(
        id(0),
        Config {
            id_difficulty: 3,
            ..config()
        },
        now,
    );
    let good = puzzle_contact(3, true, 0);
    let bad = puzzle_contact(3, false, 0);
    kad.add_contact(now, bad);
    kad.add_contact(now, good);
    assert_eq!(kad.contacts(), vec![good]);
    let _ = kad.find_node(now, id(7));
    let sent = transmits(&mut kad);
    assert_eq!(sent.len(), 1);
    // The only peer names one failing and one solving contact: only the latter is asked.
    let other_bad = puzzle_contact(3, false, 1);
    let other_good = puzzle_contact(3, true, 1);
    kad.handle_response(
        now,
        sent[0].request,
        Ok(KadMessage::FindNodeReply {
            contacts: vec![other_bad, other_good],
        }),
    );
    let asked: Vec<Contact> = transmits(&mut kad).into_iter().map(|t| t.to).collect();
    assert_eq!(asked, vec![other_good]);
    assert!(!kad.contacts().contains(&other_bad));
}

#[test]
fn subnet_limit_keeps_a_third_contact_of_one_24_out_of_a_bucket() {
    let now = epoch();
    let mut kad = Kademlia::new(
        id(0),
        Config {
            max_per_subnet: 2,
            ..config()
        },
        now,
    );
    // 0x80.., 0x81.., 0x82.. share bucket 255 and 10.0.0.0/24.
    for n in [0x80, 0x81, 0x82] {
        let _ = kad.handle_request(now, contact(n), KadMessage::Ping);
    }
    assert_eq!(kad.contacts(), vec![contact(0x80), contact(0x81)]);
}

#[test]
fn requests_over_the_peer_rate_get_error_429() {
    let now = epoch();
    let mut kad = Kademlia::new(
        id(0),
        Config {
            peer_rate: 2,
            peer_burst: 3,
            ..config()
        },
        now,
    );
    for _ in 0..3 {
        assert_eq!(
            kad.handle_request(now, contact(1), KadMessage::Ping),
            KadMessage::Pong
        );
    }
    assert!(matches!(
        kad.handle_request(now, contact(1), KadMessage::Ping),
        KadMessage::Error { code: 429, .. }
    ));
    // Others are not affected; the peer itself may go on at its rate.
    assert_eq!(
        kad.handle_request(now, contact(2), KadMessage::Ping),
        KadMessage::Pong
    );
    let later = now + Duration::from_millis(500);
    assert_eq!(
        kad.handle_request(later, contact(1), KadMessage::Ping),
        KadMessage::Pong
    );
    assert_eq!(kad.stats().rate_limited, 1);
}

#[test]
fn answer_from_a_peer_that_was_not_asked_is_ignored() {
    let now = epoch();
    let mut kad = node(now);
    kad.add_contact(now, contact(1));
    let query = kad.find_node(now, id(1));
    let sent = transmits(&mut kad);
    // Node 2 answers request 0, which went to node 1: ignored, the request stays open.
    kad.handle_response_from(
        now,
        sent[0].request,
        id(2),
        Ok(KadMessage::FindNodeReply {
            contacts: vec![contact(3)],
        }),
    );
    assert!(transmits(&mut kad).is_empty());
    assert!(events(&mut kad).is_empty());
    assert_eq!(kad.pending_requests(), 1);
    assert_eq!(kad.stats().invalid_answers, 1);
    // The real answer still counts, once.
    kad.handle_response_from(
        now,
        sent[0].request,
        id(1),
        Ok(KadMessage::FindNodeReply { contacts: vec![] }),
    );
    kad.handle_response_from(
        now,
        sent[0].request,
        id(1),
        Ok(KadMessage::FindNodeReply {
            contacts: vec![contact(4)],
        }),
    );
    assert_eq!(
        events(&mut kad),
        vec![Event::FindNodeFinished {
            query,
            target: id(1),
            closest: vec![contact(1)]
        }]
    );
}

#[test]
fn lookups_run_disjoint_paths_each_with_alpha_in_flight() {
    let now = epoch();
    let mut kad = Kademlia::new(
        id(0),
        Config {
            disjoint_paths: 3,
            ..config()
        },
        now,
    );
    for n in 1..=12 {
        kad.add_contact(now, contact(n));
    }
    let _ = kad.find_node(now, id(1));
    let sent = transmits(&mut kad);
    assert_eq!(sent.len(), 9, "3 paths × alpha 3");
    let mut ids: Vec<Key> = sent.iter().map(|t| t.to.id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 9, "nobody asked twice");
    // Bootstrap lookups keep one path.
    let _ = kad.bootstrap(now, &[]);
    assert_eq!(transmits(&mut kad).len(), 3);
}

// ----- versioned records: read quorum, newest wins, read repair -----

const UNIX: u64 = 1_800_000_000;

fn quorum_node(now: Instant, quorum: usize) -> Kademlia {
    let mut kad = Kademlia::new(
        id(0),
        Config {
            read_quorum: quorum,
            ..config()
        },
        now,
    );
    kad.set_unix_time(now, UNIX);
    kad
}

fn found(value: &'static [u8], version: u64) -> Result<KadMessage, RequestFailure> {
    Ok(KadMessage::FoundValue {
        value: Bytes::from_static(value),
        ttl_ms: 600_000,
        version: Version(version),
    })
}

#[test]
fn get_waits_for_the_read_quorum_and_returns_the_newest() {
    let now = epoch();
    let mut kad = quorum_node(now, 3);
    for n in 1..=3 {
        kad.add_contact(now, contact(n));
    }
    let key = id(2);
    let query = kad.get(now, key);
    let sent = transmits(&mut kad);
    assert_eq!(sent.len(), 3);
    kad.handle_response(now, sent[0].request, found(b"old", 1));
    kad.handle_response(now, sent[1].request, found(b"new", 2));
    assert!(
        events(&mut kad).is_empty(),
        "two holders are not a quorum of 3"
    );
    kad.handle_response(now, sent[2].request, found(b"old", 1));
    assert_eq!(
        events(&mut kad),
        vec![Event::GetFinished {
            query,
            key,
            value: Some(Bytes::from_static(b"new")),
            signed: None,
            version: Some(Version(2)),
        }]
    );
    // Read repair: both holders of version 1 get version 2.
    let repairs = transmits(&mut kad);
    let mut to: Vec<Contact> = repairs.iter().map(|t| t.to).collect();
    to.sort_by_key(|c| c.id);
    let mut stale = vec![sent[0].to, sent[2].to];
    stale.sort_by_key(|c| c.id);
    assert_eq!(to, stale);
    for t in &repairs {
        assert!(matches!(
            &t.message,
            KadMessage::Store { version: Version(2), value, ttl_ms: 600_000, .. } if value == &Bytes::from_static(b"new")
        ));
    }
    assert_eq!(kad.stats().read_repairs, 2);
}

#[test]
fn a_stale_local_copy_does_not_win_and_is_repaired() {
    let now = epoch();
    let mut kad = quorum_node(now, 2);
    kad.add_contact(now, contact(1));
    let key = id(1);
    let _ = kad.handle_request(now, contact(1), store(key, b"old", 600, 1));
    assert_eq!(kad.local_value(now, &key), Some(Bytes::from_static(b"old")));
    let query = kad.get(now, key);
    let sent = transmits(&mut kad);
    assert_eq!(sent.len(), 1, "the local copy alone does not answer");
    kad.handle_response(now, sent[0].request, found(b"new", 2));
    assert_eq!(
        events(&mut kad),
        vec![Event::GetFinished {
            query,
            key,
            value: Some(Bytes::from_static(b"new")),
            signed: None,
            version: Some(Version(2)),
        }]
    );
    assert_eq!(kad.local_value(now, &key), Some(Bytes::from_static(b"new")));
}

#[test]
fn read_quorum_of_one_answers_from_the_local_copy() {
    let now = epoch();
    let mut kad = quorum_node(now, 1);
    kad.add_contact(now, contact(1));
    let key = id(1);
    let _ = kad.handle_request(now, contact(1), store(key, b"mine", 600, 1));
    let query = kad.get(now, key);
    assert!(transmits(&mut kad).is_empty());
    assert_eq!(
        events(&mut kad),
        vec![Event::GetFinished {
            query,
            key,
            value: Some(Bytes::from_static(b"mine")),
            signed: None,
            version: Some(Version(1)),
        }]
    );
}

#[test]
fn read_repair_reaches_empty_nodes_nearer_than_a_holder_only() {
    let now = epoch();
    let mut kad = quorum_node(now, 5);
    // Key 0x10..10: contacts 0x10 and 0x11 are nearer to it than 0x14 and 0x40.
    for n in [0x10, 0x11, 0x14, 0x40] {
        kad.add_contact(now, contact(n));
    }
    let key = id(0x10);
    let _ = kad.get(now, key);
    let mut repairs = Vec::new();
    for _ in 0..5 {
        for t in transmits(&mut kad) {
            match t.message {
                KadMessage::FindValue { .. } => {
                    let reply = if t.to == contact(0x14) {
                        found(b"v", 3)
                    } else {
                        Ok(KadMessage::ValueNotFound { contacts: vec![] })
                    };
                    kad.handle_response(now, t.request, reply);
                }
                KadMessage::Store { .. } => repairs.push(t.to),
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    repairs.sort_by_key(|c| c.id);
    assert_eq!(repairs, vec![contact(0x10), contact(0x11)]);
}

#[test]
fn store_with_a_version_from_the_future_is_refused() {
    let now = epoch();
    let mut kad = quorum_node(now, 1);
    let key = Key([5; 32]);
    let in_an_hour = Version::new((UNIX + 3600) * 1000, 0);
    assert_eq!(
        kad.handle_request(
            now,
            contact(1),
            KadMessage::Store {
                key,
                value: Bytes::from_static(b"pinned"),
                ttl_ms: 60_000,
                replication: 1,
                version: in_an_hour,
            }
        ),
        KadMessage::StoreReply { key, stored: false }
    );
    let in_a_minute = Version::new((UNIX + 60) * 1000, 0);
    assert!(matches!(
        kad.handle_request(
            now,
            contact(1),
            KadMessage::Store {
                key,
                value: Bytes::from_static(b"fine"),
                ttl_ms: 60_000,
                replication: 1,
                version: in_a_minute,
            }
        ),
        KadMessage::StoreReply { stored: true, .. }
    ));
}

#[test]
fn found_value_with_a_version_from_the_future_is_ignored() {
    let now = epoch();
    let mut kad = quorum_node(now, 1);
    kad.add_contact(now, contact(1));
    kad.add_contact(now, contact(2));
    let key = id(1);
    let query = kad.get(now, key);
    let sent = transmits(&mut kad);
    kad.handle_response(now, sent[0].request, found(b"forged", u64::MAX));
    assert!(events(&mut kad).is_empty());
    kad.handle_response(now, sent[1].request, found(b"real", 1));
    assert_eq!(
        events(&mut kad),
        vec![Event::GetFinished {
            query,
            key,
            value: Some(Bytes::from_static(b"real")),
            signed: None,
            version: Some(Version(1)),
        }]
    );
    assert_eq!(kad.stats().invalid_answers, 1);
}

// ----- signed records -----

fn signer(n: u8) -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[n; 32])
}

fn signed(seq: u64, value: &'static [u8]) -> SignedRecord {
    SignedRecord::sign(
        &signer(1),
        Bytes::from_static(b"salt"),
        seq,
        UNIX + 3600,
        Bytes::from_static(value),
    )
    .unwrap()
}

fn store_signed(record: &SignedRecord) -> KadMessage {
    KadMessage::StoreSigned {
        record: record.clone(),
        replication: 3,
    }
}

fn stored(reply: KadMessage) -> bool {
    match reply {
        KadMessage::StoreReply { stored, .. } => stored,
        other => panic!("expected STORE_REPLY, got {other:?}"),
    }
}

#[test]
fn signed_record_is_kept_and_served_as_found_signed() {
    let now = epoch();
    let mut kad = quorum_node(now, 1);
    let record = signed(1, b"v1");
    let key = record.key();
    assert_eq!(
        kad.handle_request(now, contact(1), store_signed(&record)),
        KadMessage::StoreReply { key, stored: true }
    );
    assert_eq!(
        kad.handle_request(now, contact(2), KadMessage::FindValue { key }),
        KadMessage::FoundSigned { record }
    );
    assert_eq!(kad.signed_records().count(), 1);
    assert_eq!(kad.records().count(), 0);
}

#[test]
fn signed_record_with_a_bad_signature_is_refused() {
    let now = epoch();
    let mut kad = quorum_node(now, 1);
    let mut record = signed(1, b"v1");
    record.value = Bytes::from_static(b"tampered");
    assert!(!stored(kad.handle_request(
        now,
        contact(1),
        store_signed(&record)
    )));
    let mut record = signed(1, b"v1");
    record.signature[10] ^= 0x40;
    assert!(!stored(kad.handle_request(
        now,
        contact(1),
        store_signed(&record)
    )));
    assert_eq!(kad.record_count(), 0);
}

#[test]
fn signed_record_lower_or_equal_sequence_is_refused_identical_is_idempotent() {
    let now = epoch();
    let mut kad = quorum_node(now, 1);
    let v5 = signed(5, b"five");
    assert!(stored(kad.handle_request(
        now,
        contact(1),
        store_signed(&v5)
    )));
    // Replays of older sequence numbers are refused...
    assert!(!stored(kad.handle_request(
        now,
        contact(1),
        store_signed(&signed(4, b"four"))
    )));
    // ...so is another record with the same sequence number...
    assert!(!stored(kad.handle_request(
        now,
        contact(1),
        store_signed(&signed(5, b"other"))
    )));
    // ...while the same record again is fine.
    assert!(stored(kad.handle_request(
        now,
        contact(1),
        store_signed(&v5)
    )));
    assert!(stored(kad.handle_request(
        now,
        contact(1),
        store_signed(&signed(6, b"six"))
    )));
    let KadMessage::FoundSigned { record } =
        kad.handle_request(now, contact(1), KadMessage::FindValue { key: v5.key() })
    else {
        panic!("expected FOUND_SIGNED");
    };
    assert_eq!(record.seq, 6);
}

#[test]
fn expired_signed_record_is_refused_and_held_ones_expire() {
    let now = epoch();
    let mut kad = quorum_node(now, 1);
    let old = SignedRecord::sign(&signer(1), Bytes::new(), 1, UNIX, Bytes::new()).unwrap();
    assert!(!stored(kad.handle_request(
        now,
        contact(1),
        store_signed(&old)
    )));
    let short = SignedRecord::sign(&signer(1), Bytes::new(), 2, UNIX + 10, Bytes::new()).unwrap();
    assert!(stored(kad.handle_request(
        now,
        contact(1),
        store_signed(&short)
    )));
    kad.handle_timeout(now + secs(10));
    assert_eq!(kad.record_count(), 0);
}

#[test]
fn signed_record_is_refused_before_the_unix_time_is_known() {
    let now = epoch();
    let mut kad = node(now);
    assert!(!stored(kad.handle_request(
        now,
        contact(1),
        store_signed(&signed(1, b"v"))
    )));
    assert!(matches!(
        kad.put_signed(now, signed(1, b"v"), 3),
        Err(SignedRejection::NoUnixTime)
    ));
    kad.set_unix_time(now, UNIX);
    assert!(stored(kad.handle_request(
        now,
        contact(1),
        store_signed(&signed(1, b"v"))
    )));
}

#[test]
fn plain_store_cannot_shadow_a_signed_record_but_signed_replaces_plain() {
    let now = epoch();
    let mut kad = quorum_node(now, 1);
    let record = signed(1, b"owner's");
    let key = record.key();
    // A squatter's plain record first: the owner's signed record still takes the key.
    let _ = kad.handle_request(now, contact(1), store(key, b"squatter", 600, 9));
    assert!(stored(kad.handle_request(
        now,
        contact(1),
        store_signed(&record)
    )));
    assert!(!stored(kad.handle_request(
        now,
        contact(1),
        store(key, b"squatter", 600, u64::from(u16::MAX))
    )));
    assert_eq!(
        kad.local_value(now, &key),
        Some(Bytes::from_static(b"owner's"))
    );
}

#[test]
fn put_signed_stores_with_store_signed_and_refuses_forgeries() {
    let now = epoch();
    let mut kad = quorum_node(now, 1);
    kad.add_contact(now, contact(1));
    let mut forged = signed(1, b"v");
    forged.seq = 2;
    assert!(matches!(
        kad.put_signed(now, forged, 3),
        Err(SignedRejection::Invalid(SignedRecordError::BadSignature))
    ));
    assert!(transmits(&mut kad).is_empty());
    let record = signed(1, b"v");
    let put = kad.put_signed(now, record.clone(), 3).unwrap();
    let mut stores = Vec::new();
    for _ in 0..5 {
        for t in transmits(&mut kad) {
            match t.message {
                KadMessage::FindNode { .. } => kad.handle_response(
                    now,
                    t.request,
                    Ok(KadMessage::FindNodeReply { contacts: vec![] }),
                ),
                KadMessage::StoreSigned { .. } => stores.push(t),
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    assert_eq!(stores.len(), 1);
    assert_eq!(
        stores[0].message,
        KadMessage::StoreSigned {
            record: record.clone(),
            replication: 3
        }
    );
    kad.handle_response(
        now,
        stores[0].request,
        Ok(KadMessage::StoreReply {
            key: record.key(),
            stored: true,
        }),
    );
    assert!(events(&mut kad).iter().any(|e| matches!(
        e,
        Event::PutFinished { query, stored_remote: 1, .. } if *query == put
    )));
}

#[test]
fn get_signed_rejects_forged_and_mismatched_records_and_keeps_the_highest_sequence() {
    let now = epoch();
    let mut kad = Kademlia::new(
        id(0),
        Config {
            read_quorum: 3,
            alpha: 5,
            ..config()
        },
        now,
    );
    kad.set_unix_time(now, UNIX);
    for n in 1..=5 {
        kad.add_contact(now, contact(n));
    }
    let v1 = signed(1, b"one");
    let v2 = signed(2, b"two");
    let key = v1.key();
    let query = kad.get_signed(now, key);
    let sent = transmits(&mut kad);
    assert_eq!(sent.len(), 5);
    let mut forged = v2.clone();
    forged.seq = 99;
    let other_key = SignedRecord::sign(
        &signer(2),
        Bytes::from_static(b"salt"),
        50,
        UNIX + 60,
        Bytes::new(),
    )
    .unwrap();
    let answers = [
        KadMessage::FoundSigned { record: forged },
        KadMessage::FoundSigned { record: other_key },
        KadMessage::FoundSigned { record: v1.clone() },
        KadMessage::FoundSigned { record: v2.clone() },
        KadMessage::FoundSigned { record: v1.clone() },
    ];
    for (t, answer) in sent.iter().zip(answers) {
        kad.handle_response(now, t.request, Ok(answer));
    }
    assert_eq!(
        events(&mut kad),
        vec![Event::GetFinished {
            query,
            key,
            value: Some(v2.value.clone()),
            signed: Some(v2.clone()),
            version: Some(Version(2)),
        }]
    );
    assert_eq!(kad.stats().invalid_answers, 2);
    // The two holders of seq 1 get seq 2.
    let repairs: Vec<Transmit> = transmits(&mut kad)
        .into_iter()
        .filter(|t| matches!(&t.message, KadMessage::StoreSigned { record, .. } if *record == v2))
        .collect();
    assert_eq!(repairs.len(), 2);
}

#[test]
fn restore_signed_checks_the_record_like_a_store_signed() {
    let now = epoch();
    let mut kad = node(now);
    let record = signed(3, b"kept");
    // Without the Unix time the expiry cannot be checked.
    assert_eq!(
        kad.restore_signed(now, record.clone(), 3, true),
        StoreOutcome::RefusedInvalid
    );
    kad.set_unix_time(now, UNIX);
    assert_eq!(
        kad.restore_signed(now, record.clone(), 3, true),
        StoreOutcome::Stored
    );
    let (held, local) = kad.signed_records().next().unwrap();
    assert_eq!(held, &record);
    assert!(local.publisher);
    let mut forged = signed(4, b"forged");
    forged.seq = 5;
    assert_eq!(
        kad.restore_signed(now, forged, 3, true),
        StoreOutcome::RefusedInvalid
    );
    let expired = SignedRecord::sign(&signer(1), Bytes::new(), 9, UNIX, Bytes::new()).unwrap();
    assert_eq!(
        kad.restore_signed(now, expired, 3, true),
        StoreOutcome::RefusedExpired
    );
    assert_eq!(kad.record_count(), 1);
}

#[test]
fn rate_limited_requests_do_not_count_as_heard_from() {
    let now = epoch();
    let mut kad = Kademlia::new(
        id(0),
        Config {
            peer_rate: 1,
            peer_burst: 1,
            ..config()
        },
        now,
    );
    // 0x80.. and 0x81.. share bucket 255; the most recently heard from is last.
    kad.add_contact(now, contact(0x80));
    kad.add_contact(now, contact(0x81));
    let _ = kad.handle_request(now, contact(0x80), KadMessage::Ping);
    let _ = kad.handle_request(now, contact(0x81), KadMessage::Ping);
    assert_eq!(kad.contacts(), vec![contact(0x80), contact(0x81)]);
    // Over its limit, 0x80 gets ERROR 429 and does not move to the tail.
    assert!(matches!(
        kad.handle_request(now, contact(0x80), KadMessage::Ping),
        KadMessage::Error { code: 429, .. }
    ));
    assert_eq!(kad.contacts(), vec![contact(0x80), contact(0x81)]);
}
