//! Whole-network scenarios of the gossip state machine under a virtual clock: the checks
//! the issue asks for, run on the in-memory harness (the real-socket versions live with
//! the driver in `voidmesh-node`).

mod harness;

use harness::Net;
use std::time::Duration;
use voidmesh_gossip::{leading_zero_bits, pow_hash, Config, Proof};
use voidmesh_proto::gossip_msg::PEER_ANNOUNCE;

const TYPE: u16 = 7;
const OTHER_TYPE: u16 = 8;

fn small_config() -> Config {
    Config {
        degree: 3,
        min_connections: 2,
        max_connections: 4,
        search_cooldown: Duration::from_secs(2),
        pow_difficulty: 8,
        pow_max_skew: Duration::from_secs(300),
        ..Config::default()
    }
}

/// Three peers; 1 and 2 join through 0. Each peer's clients are `clients`.
fn three_peers(clients: &[(&[u16], Option<bool>)]) -> Net {
    let mut net = Net::new(small_config(), 3);
    for _ in 0..3 {
        net.add_node(clients);
    }
    net.know(1, &[0]);
    net.know(2, &[0]);
    net.run_for(Duration::from_secs(10));
    for i in 0..3 {
        assert_eq!(
            net.node(i).gossip.view_len(),
            2,
            "node {i} knows both others"
        );
    }
    net
}

#[test]
fn item_announced_at_peer_0_reaches_subscribers_of_peers_1_and_2() {
    let mut net = three_peers(&[(&[TYPE], Some(true)), (&[TYPE], Some(true))]);
    net.announce(0, 0, 0, TYPE, b"hello");
    let took = net.run_until(Duration::from_secs(5), |net| {
        net.receipts(TYPE, b"hello")
            .iter()
            .filter(|(node, _, _)| *node != 0)
            .all(|(_, _, n)| *n == 1)
    });
    net.run_for(Duration::from_secs(5));
    for (node, client, n) in net.receipts(TYPE, b"hello") {
        let expected = if node == 0 && client.0 == 0 { 0 } else { 1 };
        assert_eq!(n, expected, "node {node} client {client:?}");
    }
    assert!(took < Duration::from_secs(1), "took {took:?}");
}

#[test]
fn item_every_subscriber_marks_invalid_is_seen_once_and_goes_no_further() {
    let mut net = three_peers(&[(&[TYPE], Some(false)), (&[TYPE], Some(false))]);
    let id = net.announce(0, 0, 0, TYPE, b"bad");
    net.run_for(Duration::from_secs(15));
    for (node, client, n) in net.receipts(TYPE, b"bad") {
        let expected = if node == 0 && client.0 == 0 { 0 } else { 1 };
        assert_eq!(n, expected, "node {node} client {client:?}");
    }
    // Only the origin's own push: peers 1 and 2 never forwarded it.
    assert_eq!(net.announces_by_item[&id], 2);
    for i in 1..3 {
        let stats = net.node(i).gossip.stats();
        assert_eq!(stats.items_invalid, 1);
        assert_eq!(stats.announces_sent, 0);
    }
}

#[test]
fn client_without_registration_gets_nothing_while_registered_ones_get_it_once() {
    // Client 0 announces; client 1 registered TYPE; client 2 registered another type;
    // client 3 registered nothing.
    let mut net = three_peers(&[
        (&[], None),
        (&[TYPE], Some(true)),
        (&[OTHER_TYPE], Some(true)),
        (&[], None),
    ]);
    net.announce(0, 0, 0, TYPE, b"only-type-7");
    net.run_for(Duration::from_secs(10));
    for (node, client, n) in net.receipts(TYPE, b"only-type-7") {
        let expected = usize::from(client.0 == 1);
        assert_eq!(n, expected, "node {node} client {client:?}");
    }
    let stray: usize = net
        .alive()
        .iter()
        .flat_map(|i| net.node(*i).clients.iter())
        .filter(|c| c.id.0 != 1)
        .map(|c| c.received.len())
        .sum();
    assert_eq!(stray, 0);
}

#[test]
fn peer_with_invalid_proof_of_work_is_refused() {
    let mut net = three_peers(&[(&[TYPE], Some(true))]);
    // A forged proof: a nonce whose hash does not meet the difficulty (8 bits).
    let cheater = net.add_node_with(&[(&[TYPE], Some(true))], 0, Some(Proof::default()));
    let cheater_id = net.contact(cheater).id;
    let forged = (0u64..)
        .map(|nonce| Proof {
            timestamp: harness::UNIX_START + net.elapsed.as_secs(),
            nonce,
        })
        .find(|p| leading_zero_bits(&pow_hash(&cheater_id, p.timestamp, p.nonce)) < 8)
        .unwrap();
    let now = net.time;
    net.node_mut(cheater).gossip.set_proof(now, forged);
    net.know(cheater, &[0, 1, 2]);
    net.run_for(Duration::from_secs(20));
    for i in 0..3 {
        assert!(!net.node(i).gossip.is_neighbour(&cheater_id), "node {i}");
        assert_eq!(net.node(i).gossip.view_len(), 2);
    }
    assert_eq!(net.node(cheater).gossip.view_len(), 0);
    let refused: u64 = (0..3)
        .map(|i| net.node(i).gossip.stats().peers_refused)
        .sum();
    assert!(
        refused >= 3,
        "each peer refused it at least once ({refused})"
    );
    // Its items reach nobody.
    net.announce(cheater, 0, 0, TYPE, b"spam");
    net.run_for(Duration::from_secs(5));
    assert!(net.receipts(TYPE, b"spam").iter().all(|(_, _, n)| *n == 0));
}

#[test]
fn peer_whose_clock_is_off_by_more_than_the_skew_is_refused() {
    let mut net = three_peers(&[(&[TYPE], Some(true))]);
    let late = net.add_node_with(&[(&[TYPE], Some(true))], -3600, None);
    net.know(late, &[0]);
    net.run_for(Duration::from_secs(20));
    assert_eq!(net.node(late).gossip.view_len(), 0);
    assert!(net.node(0).gossip.stats().peers_refused >= 1);
}

fn hundred_config() -> Config {
    Config {
        degree: 8,
        min_connections: 6,
        max_connections: 12,
        search_cooldown: Duration::from_secs(2),
        pow_difficulty: 8,
        ..Config::default()
    }
}

/// 100 peers, all joining through peer 0, each with one validating subscriber.
/// (With degree 6 instead of 8, 1 of 4950 deliveries was missed over 10 seeds × 5 items:
/// push gossip with a degree below the view size is probabilistic.)
/// Also returns how long until every view reached `min_connections`.
fn hundred_peers() -> (Net, Duration) {
    let mut net = Net::new(hundred_config(), 100);
    for _ in 0..100 {
        net.add_node(&[(&[TYPE], Some(true))]);
    }
    for i in 1..100 {
        net.know(i, &[0]);
    }
    let joined = net.run_until(Duration::from_secs(120), |net| {
        net.alive()
            .iter()
            .all(|i| net.node(*i).gossip.view_len() >= 6)
    });
    net.run_for(Duration::from_secs(10));
    (net, joined)
}

fn spread(net: &mut Net, from: usize, data: &[u8]) -> (Duration, u64) {
    let start = net.time;
    let id = net.announce(from, 0, 0, TYPE, data);
    let alive = net.alive();
    net.run_until(Duration::from_secs(30), |net| {
        let receipts = net.receipts(TYPE, data);
        alive
            .iter()
            .filter(|i| **i != from)
            .all(|i| receipts.iter().any(|(node, _, n)| node == i && *n == 1))
    });
    let last = net.last_arrival(TYPE, data).expect("delivered");
    // Let it settle, then count every PEER ANNOUNCE the item cost.
    net.run_for(Duration::from_secs(15));
    for (node, _, n) in net.receipts(TYPE, data) {
        let expected = usize::from(node != from);
        assert_eq!(n, expected, "node {node} received it {n} times");
    }
    (last - start, net.announces_by_item[&id])
}

#[test]
fn hundred_peers_item_reaches_every_subscriber() {
    let (mut net, joined) = hundred_peers();
    println!("100 peers joined through peer 0: every view >= min_connections after {joined:?}");
    let views: Vec<usize> = net
        .alive()
        .iter()
        .map(|i| net.node(*i).gossip.view_len())
        .collect();
    assert!(views.iter().all(|v| (6..=12).contains(v)), "{views:?}");
    let (took, messages) = spread(&mut net, 42, b"to everyone");
    println!(
        "100 peers, degree 8, views 6..12: last subscriber after {took:?} (virtual, 10-20 ms \
         links), {messages} PEER ANNOUNCE messages for the item"
    );
    assert!(took < Duration::from_secs(2), "took {took:?}");
    // Each peer forwards at most `degree` times: at most 100 × 8.
    assert!(messages <= 800, "{messages} messages");
    assert_eq!(net.sent_by_type[&PEER_ANNOUNCE], messages);
}

#[test]
fn after_20_of_100_peers_stop_views_refill_and_new_items_reach_every_survivor() {
    let (mut net, _) = hundred_peers();
    // Stop 20 peers, peer 0 (everyone's bootstrapper) among them.
    for i in (0..100).step_by(5) {
        net.stop(i, Duration::from_secs(1));
    }
    assert_eq!(net.alive().len(), 80);
    let refill = net.run_until(Duration::from_secs(60), |net| {
        let alive = net.alive();
        alive.iter().all(|i| {
            let view = net.node(*i).gossip.view();
            view.len() >= 6
                && view
                    .iter()
                    .all(|c| alive.iter().any(|j| net.contact(*j).id == c.id))
        })
    });
    println!("80 survivors back at >= min_connections views after {refill:?}");
    for i in net.alive() {
        let view = net.node(i).gossip.view();
        assert!(view.len() >= 6, "node {i} has {} neighbours", view.len());
        assert!(view
            .iter()
            .all(|c| net.alive().iter().any(|j| net.contact(*j).id == c.id)));
    }
    let (took, messages) = spread(&mut net, 41, b"after the churn");
    println!("80 survivors: last subscriber after {took:?}, {messages} PEER ANNOUNCE messages");
}
