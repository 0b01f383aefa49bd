//! Hundreds of nodes in one in-memory network under a virtual clock
//! ([`voidmesh_kad::testing::Network`]): bootstrap, lookups, PUT/GET, expiry and failures.
//!
//! Everything is seeded, so every run is the same run. Each test prints the figures it
//! measures (`cargo test -p voidmesh-kad --test network -- --nocapture`).

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use voidmesh_kad::testing::{Network, NodeState};
use voidmesh_kad::{Config, Event, QueryId, SignedRecord};
use voidmesh_proto::{Key, Version};

/// One-way latency of every message.
const LATENCY: Duration = Duration::from_millis(10);
/// Nodes in the large tests.
const NODES: usize = 300;

fn config() -> Config {
    Config::default()
}

/// The 300-node network, bootstrapped once and shared: each test forks its own copy.
fn network_300() -> Network {
    static NETWORK: OnceLock<(Network, Duration)> = OnceLock::new();
    let (net, took) = NETWORK.get_or_init(|| {
        let started = Instant::now();
        let net = bootstrapped(NODES, 1);
        (net, started.elapsed())
    });
    println!(
        "{NODES}-node bootstrap (once per run): {took:?} wall, {} messages ({:.0} per node)",
        net.messages_delivered(),
        net.messages_delivered() as f64 / NODES as f64
    );
    net.clone()
}

/// A network of `n` nodes that all joined through node 0, one after the other.
fn bootstrapped(n: usize, seed: u64) -> Network {
    // The one real timestamp: the virtual clock starts here and only moves by Durations.
    let epoch = Instant::now();
    let mut net = Network::with_nodes(n, &config(), seed, epoch, LATENCY);
    let first = net.command(0, |kad, now| kad.bootstrap(now, &[]));
    net.drive().expect("first bootstrap settles");
    assert!(matches!(
        net.take_event(0, first),
        Some(Event::BootstrapFinished { contacts: 0, .. })
    ));
    let seed_contact = net.contact(0);
    for i in 1..n {
        let query = net.command(i, |kad, now| kad.bootstrap(now, &[seed_contact]));
        net.drive().expect("bootstrap settles without livelock");
        assert!(
            matches!(
                net.take_event(i, query),
                Some(Event::BootstrapFinished { .. })
            ),
            "node {i} finished bootstrapping"
        );
    }
    net
}

/// The k ids nearest to `target` among the live nodes other than `except`, by brute force.
fn true_closest(net: &Network, target: &Key, except: usize, k: usize) -> Vec<Key> {
    let mut ids: Vec<Key> = (0..net.len())
        .filter(|&i| i != except && net.is_alive(i))
        .map(|i| net.contact(i).id)
        .collect();
    ids.sort_by_key(|id| target.distance(id));
    ids.truncate(k);
    ids
}

fn get(net: &mut Network, node: usize, key: Key) -> Option<Bytes> {
    let query = net.command(node, |kad, now| kad.get(now, key));
    net.drive().expect("get settles");
    match net.take_event(node, query) {
        Some(Event::GetFinished { value, .. }) => value,
        other => panic!("node {node}: expected GetFinished, got {other:?}"),
    }
}

fn put(net: &mut Network, node: usize, key: Key, ttl: Duration, replication: u8) -> (usize, bool) {
    let value = Bytes::from(key.0.to_vec());
    let query: QueryId = net.command(node, |kad, now| {
        kad.put(now, key, value, ttl, replication, Version(1))
    });
    net.drive().expect("put settles");
    match net.take_event(node, query) {
        Some(Event::PutFinished {
            stored_remote,
            stored_local,
            ..
        }) => (stored_remote, stored_local),
        other => panic!("node {node}: expected PutFinished, got {other:?}"),
    }
}

#[test]
fn lookups_converge_to_the_true_k_closest() {
    let mut net = network_300();
    let mut rng = StdRng::seed_from_u64(99);
    let lookups = 100;
    let (mut requests, mut round_trips) = (0u64, 0.0f64);
    let mut worst_overlap = usize::MAX;
    for _ in 0..lookups {
        let node = rng.gen_range(0..NODES);
        let target = Key(rng.gen());
        let before = net.kad(node).stats().lookup_requests;
        let start = net.now();
        let query = net.command(node, |kad, now| kad.find_node(now, target));
        net.drive().expect("lookup settles");
        let Some((at, Event::FindNodeFinished { closest, .. })) = net.take_timed_event(node, query)
        else {
            panic!("lookup from node {node} did not finish");
        };
        requests += net.kad(node).stats().lookup_requests - before;
        round_trips += (at - start).as_secs_f64() / (2.0 * LATENCY.as_secs_f64());
        let truth = true_closest(&net, &target, node, 20);
        let overlap = closest.iter().filter(|c| truth.contains(&c.id)).count();
        worst_overlap = worst_overlap.min(overlap);
        assert!(
            overlap >= 19,
            "lookup from {node} found {overlap}/20 of the true closest"
        );
    }
    let tables: Vec<usize> = (0..NODES).map(|i| net.kad(i).contacts().len()).collect();
    println!(
        "{NODES} nodes, {lookups} lookups: worst overlap {worst_overlap}/20, mean {:.1} requests, \
         mean {:.1} round trips; table sizes {}..{} (mean {:.0})",
        requests as f64 / lookups as f64,
        round_trips / lookups as f64,
        tables.iter().min().unwrap_or(&0),
        tables.iter().max().unwrap_or(&0),
        tables.iter().sum::<usize>() as f64 / NODES as f64,
    );
}

#[test]
fn value_put_from_one_node_is_found_from_every_other() {
    let mut net = network_300();
    let key = Key([0x42; 32]);
    let (remote, local) = put(&mut net, 17, key, Duration::from_secs(3600), 20);
    assert!(
        remote + usize::from(local) >= 19,
        "stored on {remote} remote nodes (local: {local})"
    );
    let start = net.now();
    let mut hops = 0.0;
    for node in 0..NODES {
        let query = net.command(node, |kad, now| kad.get(now, key));
        let get_start = net.now();
        net.drive().expect("get settles");
        let Some((at, Event::GetFinished { value, .. })) = net.take_timed_event(node, query) else {
            panic!("no GetFinished on node {node}");
        };
        assert_eq!(
            value,
            Some(Bytes::from(key.0.to_vec())),
            "GET from node {node}"
        );
        hops += (at - get_start).as_secs_f64() / (2.0 * LATENCY.as_secs_f64());
    }
    println!(
        "GET of one key from all {NODES} nodes: mean {:.2} round trips, {:?} virtual in all",
        hops / NODES as f64,
        net.now() - start
    );
}

#[test]
fn newer_version_is_what_every_node_reads() {
    let mut net = bootstrapped(100, 8);
    let key = Key([0x5a; 32]);
    let put_version = |net: &mut Network, from: usize, value: &'static [u8], version: u64| {
        let query = net.command(from, |kad, now| {
            let ttl = Duration::from_secs(3600);
            kad.put(
                now,
                key,
                Bytes::from_static(value),
                ttl,
                5,
                Version(version),
            )
        });
        net.drive().expect("put settles");
        net.take_event(from, query)
    };
    put_version(&mut net, 1, b"old", 1);
    // Everybody reads the old value once (no GET may leave a stale copy behind)...
    for node in 0..net.len() {
        assert_eq!(get(&mut net, node, key), Some(Bytes::from_static(b"old")));
    }
    // ...then a newer version from another node replaces it everywhere, and a late
    // STORE of the old version changes nothing.
    put_version(&mut net, 2, b"new", 2);
    put_version(&mut net, 3, b"old", 1);
    for node in 0..net.len() {
        assert_eq!(
            get(&mut net, node, key),
            Some(Bytes::from_static(b"new")),
            "node {node}"
        );
    }
}

#[test]
fn nodes_bootstrapping_all_at_once_still_converge() {
    let epoch = Instant::now();
    let n = 100;
    let mut net = Network::with_nodes(n, &config(), 9, epoch, LATENCY);
    let _ = net.command(0, |kad, now| kad.bootstrap(now, &[]));
    let seed_contact = net.contact(0);
    for i in 1..n {
        let _ = net.command(i, |kad, now| kad.bootstrap(now, &[seed_contact]));
    }
    net.drive().expect("concurrent bootstrap settles");
    let mut rng = StdRng::seed_from_u64(9);
    for _ in 0..30 {
        let node = rng.gen_range(0..n);
        let target = Key(rng.gen());
        let query = net.command(node, |kad, now| kad.find_node(now, target));
        net.drive().expect("lookup settles");
        let Some(Event::FindNodeFinished { closest, .. }) = net.take_event(node, query) else {
            panic!("lookup from node {node} did not finish");
        };
        let truth = true_closest(&net, &target, node, 20);
        let overlap = closest.iter().filter(|c| truth.contains(&c.id)).count();
        assert!(overlap >= 19, "lookup from {node}: {overlap}/20");
    }
}

#[test]
fn get_for_an_absent_key_yields_none() {
    let mut net = bootstrapped(100, 3);
    for node in [0, 10, 99] {
        assert_eq!(get(&mut net, node, Key([0xab; 32])), None);
    }
}

#[test]
fn record_with_short_ttl_is_gone_after_it_expired() {
    let mut net = bootstrapped(100, 4);
    let key = Key([0x17; 32]);
    put(&mut net, 5, key, Duration::from_secs(30), 5);
    assert!(get(&mut net, 50, key).is_some());
    net.run_for(Duration::from_secs(31))
        .expect("expiry settles without livelock");
    let held: usize = (0..net.len()).map(|i| net.kad(i).record_count()).sum();
    assert_eq!(held, 0, "records left after expiry");
    for node in [5, 50, 77] {
        assert_eq!(get(&mut net, node, key), None);
    }
}

/// Puts 20 values with replication 8, takes a third of the nodes down in `state`, then
/// GETs every value from a spread of the live nodes. Returns (GETs, mean virtual GET time).
fn values_survive_a_third_of_the_nodes_failing(state: NodeState, seed: u64) -> (usize, Duration) {
    let mut net = network_300();
    let mut rng = StdRng::seed_from_u64(seed);
    let keys: Vec<Key> = (0..20).map(|_| Key(rng.gen())).collect();
    for key in &keys {
        let from = rng.gen_range(0..NODES);
        put(&mut net, from, *key, Duration::from_secs(3600), 8);
    }
    let mut down = 0;
    while down < NODES / 3 {
        let i = rng.gen_range(0..NODES);
        if net.is_alive(i) {
            net.set_state(i, state);
            down += 1;
        }
    }
    let alive: Vec<usize> = (0..NODES).filter(|&i| net.is_alive(i)).collect();
    let mut gets = 0;
    let start = net.now();
    for (n, key) in keys.iter().enumerate() {
        for getter in alive.iter().skip(n).step_by(25) {
            let value = get(&mut net, *getter, *key);
            assert_eq!(
                value,
                Some(Bytes::from(key.0.to_vec())),
                "key {n} from node {getter}"
            );
            gets += 1;
        }
    }
    (gets, (net.now() - start) / gets as u32)
}

#[test]
fn values_survive_a_third_of_the_nodes_failing_loudly() {
    let (gets, mean) = values_survive_a_third_of_the_nodes_failing(NodeState::Unreachable, 5);
    println!("unreachable third: {gets} GETs all found, mean {mean:?} virtual each");
}

#[test]
fn values_survive_a_third_of_the_nodes_failing_silently() {
    let (gets, mean) = values_survive_a_third_of_the_nodes_failing(NodeState::Silent, 7);
    println!("silent third: {gets} GETs all found, mean {mean:?} virtual each");
    assert!(
        mean < config().query_timeout,
        "GETs finished well before the deadline"
    );
}

#[test]
fn replicas_republish_to_live_nodes_when_holders_fail() {
    let mut net = bootstrapped(60, 6);
    let key = Key([0x99; 32]);
    put(&mut net, 3, key, Duration::from_secs(6 * 3600), 4);
    // The publisher (node 3) keeps its own copy besides the 4 replicas.
    let holders: Vec<usize> = (0..net.len())
        .filter(|&i| i != 3 && net.kad(i).record_count() > 0)
        .collect();
    assert_eq!(holders.len(), 4, "replication 4");
    // Half of the holders go down; within a republish interval the survivors store the
    // record on other nodes again.
    for &h in &holders[..2] {
        net.set_alive(h, false);
    }
    net.run_for(Duration::from_secs(3600 + 60))
        .expect("republish settles");
    let live_holders = (0..net.len())
        .filter(|&i| net.is_alive(i) && net.kad(i).record_count() > 0)
        .count();
    assert!(
        live_holders >= 3,
        "after republishing, {live_holders} live nodes hold the record"
    );
    assert!(get(&mut net, 40, key).is_some());
}

/// A version as a node would make it at the network's current wall-clock time.
fn version_now(net: &Network, tie_break: u16) -> Version {
    Version::new(net.unix_time() * 1000, tie_break)
}

fn put_value(net: &mut Network, from: usize, key: Key, value: &'static [u8], version: Version) {
    let query = net.command(from, |kad, now| {
        kad.put(
            now,
            key,
            Bytes::from_static(value),
            Duration::from_secs(3600),
            5,
            version,
        )
    });
    net.drive().expect("put settles");
    assert!(matches!(
        net.take_event(from, query),
        Some(Event::PutFinished { .. })
    ));
}

#[test]
fn two_puts_from_different_nodes_every_get_returns_the_later() {
    let mut net = bootstrapped(100, 11);
    let key = Key([0x3c; 32]);
    let version = version_now(&net, 1);
    put_value(&mut net, 10, key, b"first", version);
    net.run_for(Duration::from_secs(2)).expect("time passes");
    let version = version_now(&net, 2);
    put_value(&mut net, 20, key, b"second", version);
    for node in 0..net.len() {
        assert_eq!(
            get(&mut net, node, key),
            Some(Bytes::from_static(b"second")),
            "node {node}"
        );
    }
    // Nobody holds the first value any more.
    let now = net.now();
    for node in 0..net.len() {
        assert_ne!(
            net.kad(node).local_value(now, &key),
            Some(Bytes::from_static(b"first")),
            "node {node} still holds the first value"
        );
    }
}

/// Node `h`, nearest to the key, holds version 1, misses version 2 while partitioned,
/// comes back and rejoins. Returns the network, the key and `h`.
fn holder_misses_an_update(seed: u64) -> (Network, Key, usize) {
    let mut net = bootstrapped(100, seed);
    let h = 42;
    // The key is h's own id: h is the node nearest to it.
    let key = net.contact(h).id;
    let version = version_now(&net, 1);
    put_value(&mut net, 1, key, b"v1", version);
    assert_eq!(
        net.kad(h).local_value(net.now(), &key),
        Some(Bytes::from_static(b"v1"))
    );
    net.set_alive(h, false);
    net.run_for(Duration::from_secs(5)).expect("time passes");
    let version = version_now(&net, 2);
    put_value(&mut net, 2, key, b"v2", version);
    net.set_alive(h, true);
    assert_eq!(
        net.kad(h).local_value(net.now(), &key),
        Some(Bytes::from_static(b"v1")),
        "h missed the update"
    );
    // Back online, h rejoins through a node it knows.
    let seed_contact = net.contact(0);
    let query = net.command(h, |kad, now| kad.bootstrap(now, &[seed_contact]));
    net.drive().expect("rejoin settles");
    assert!(net.take_event(h, query).is_some());
    (net, key, h)
}

#[test]
fn partitioned_holder_reads_the_newer_value_and_repairs_its_own_copy() {
    let (mut net, key, h) = holder_misses_an_update(12);
    assert_eq!(get(&mut net, h, key), Some(Bytes::from_static(b"v2")));
    assert_eq!(
        net.kad(h).local_value(net.now(), &key),
        Some(Bytes::from_static(b"v2"))
    );
}

#[test]
fn partitioned_holder_is_repaired_by_the_next_get_of_another_node() {
    let (mut net, key, h) = holder_misses_an_update(13);
    let holder = net.contact(h).id;
    // A node that knows h as the nearest to the key asks it in its first round.
    let getter = (0..net.len())
        .find(|&g| {
            g != h && net.kad(g).closest_contacts(&key, 1).first().map(|c| c.id) == Some(holder)
        })
        .expect("some node knows h as nearest");
    assert_eq!(get(&mut net, getter, key), Some(Bytes::from_static(b"v2")));
    net.drive().expect("repair settles");
    assert_eq!(
        net.kad(h).local_value(net.now(), &key),
        Some(Bytes::from_static(b"v2")),
        "the stale holder was repaired"
    );
    assert!(net.kad(getter).stats().read_repairs >= 1);
}

fn owner_key(n: u8) -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[n; 32])
}

fn sign(net: &Network, seq: u64, value: &'static [u8]) -> SignedRecord {
    SignedRecord::sign(
        &owner_key(1),
        Bytes::from_static(b"presence"),
        seq,
        net.unix_time() + 3600,
        Bytes::from_static(value),
    )
    .expect("valid lengths")
}

fn put_signed(net: &mut Network, from: usize, record: SignedRecord) -> usize {
    let query = net
        .command(from, |kad, now| kad.put_signed(now, record, 5))
        .expect("the record checks out");
    net.drive().expect("put settles");
    match net.take_event(from, query) {
        Some(Event::PutFinished {
            stored_remote,
            stored_local,
            ..
        }) => stored_remote + usize::from(stored_local),
        other => panic!("expected PutFinished, got {other:?}"),
    }
}

fn get_signed(net: &mut Network, node: usize, key: Key) -> Option<SignedRecord> {
    let query = net.command(node, |kad, now| kad.get_signed(now, key));
    net.drive().expect("get settles");
    match net.take_event(node, query) {
        Some(Event::GetFinished { signed, .. }) => signed,
        other => panic!("node {node}: expected GetFinished, got {other:?}"),
    }
}

#[test]
fn signed_record_updates_reach_every_node_and_forgeries_are_refused_everywhere() {
    let mut net = bootstrapped(100, 14);
    let v1 = sign(&net, 1, b"online at 10.1.2.3");
    let key = v1.key();
    assert_eq!(put_signed(&mut net, 7, v1.clone()), 5);
    let v2 = sign(&net, 2, b"online at 10.9.9.9");
    assert_eq!(put_signed(&mut net, 7, v2.clone()), 5);
    let holders: Vec<usize> = (0..net.len())
        .filter(|&i| net.kad(i).signed_records().any(|(r, _)| r.key() == key))
        .collect();
    assert!(holders.len() >= 5);

    // A replay of the older record is refused by every holder.
    assert_eq!(put_signed(&mut net, 60, v1.clone()), 0, "replay stored");
    // A forged record (valid for none of the checks) sent straight to every holder, by a
    // node that skips its own checks, is refused too: bad signature, and a record for
    // another key signed by the attacker's own key under the owner's salt.
    let mut bad_signature = v2.clone();
    bad_signature.seq = 3;
    bad_signature.value = Bytes::from_static(b"mallory");
    let other_key = SignedRecord::sign(
        &owner_key(66),
        v2.salt.clone(),
        4,
        v2.expiry,
        Bytes::from_static(b"mallory"),
    )
    .expect("valid lengths");
    let attacker = net.contact(60);
    for &h in &holders {
        for forged in [&bad_signature, &v1] {
            let reply = net.command(h, |kad, now| {
                kad.handle_request(
                    now,
                    attacker,
                    voidmesh_proto::KadMessage::StoreSigned {
                        record: forged.clone(),
                        replication: 5,
                    },
                )
            });
            assert!(
                matches!(
                    reply,
                    voidmesh_proto::KadMessage::StoreReply { stored: false, .. }
                ),
                "holder {h} took a forged record"
            );
        }
        let _ = net.command(h, |kad, now| {
            kad.handle_request(
                now,
                attacker,
                voidmesh_proto::KadMessage::StoreSigned {
                    record: other_key.clone(),
                    replication: 5,
                },
            )
        });
    }
    net.drive().expect("settles");
    for node in 0..net.len() {
        assert_eq!(
            get_signed(&mut net, node, key),
            Some(v2.clone()),
            "node {node}"
        );
        // A plain GET of the key reads the signed value too.
        assert_eq!(
            get(&mut net, node, key),
            Some(v2.value.clone()),
            "node {node}"
        );
    }
}

#[test]
fn ids_failing_the_puzzle_never_enter_a_routing_table() {
    let epoch = Instant::now();
    let config = Config {
        id_difficulty: 6,
        ..config()
    };
    let mut net = Network::with_nodes(40, &config, 15, epoch, LATENCY);
    // A Sybil with a cheap id joins too.
    let sybil_id = (0u8..)
        .map(|n| Key([n; 32]))
        .find(|id| !voidmesh_proto::id_puzzle_ok(id, 6))
        .expect("a failing id");
    let sybil = net.add_node(sybil_id, config.clone());
    let _ = net.command(0, |kad, now| kad.bootstrap(now, &[]));
    net.drive().expect("settles");
    let seed_contact = net.contact(0);
    for i in 1..net.len() {
        let _ = net.command(i, |kad, now| kad.bootstrap(now, &[seed_contact]));
        net.drive().expect("bootstrap settles");
    }
    for i in 0..net.len() {
        let contacts = net.kad(i).contacts();
        assert!(
            contacts
                .iter()
                .all(|c| voidmesh_proto::id_puzzle_ok(&c.id, 6)),
            "node {i} holds an id failing the puzzle"
        );
        if i != sybil {
            assert!(
                contacts.len() >= 10,
                "node {i} knows {} nodes",
                contacts.len()
            );
        }
    }
    assert!(net.kad(0).stats().puzzle_refused > 0);
    // The Sybil learns nobody: every node refused to talk to it.
    assert!(net.kad(sybil).contacts().len() <= 1);
}
