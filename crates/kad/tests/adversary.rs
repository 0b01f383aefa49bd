//! Lookups under attack: how GET success changes with the share of adversarial nodes and
//! the number of disjoint lookup paths (S/Kademlia's d), in the in-memory network
//! ([`voidmesh_kad::testing::Network`] with [`Adversary`] nodes).
//!
//! The full table behind docs/robustness.md ("Disjoint lookups") is an ignored test, best
//! run in release mode:
//! `cargo test --release -p voidmesh-kad --test adversary -- --ignored --nocapture`.
//! It prints CSV. The quick test below checks the headline result on a smaller network.
//!
//! # The experiment
//! `NODES` nodes join honestly (so the adversaries sit in everybody's routing table, as
//! they would after a quiet infiltration). Then a share of them, drawn at random, turns
//! adversarial. Honest nodes PUT `KEYS` values (replication `REPLICATION`), and honest
//! nodes chosen at random GET each of them `GETS_PER_KEY` times. A GET succeeds if it
//! returns the value that was put. Both the PUT and the GET run their lookups over `d`
//! paths; everything else is the default configuration.

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use voidmesh_kad::testing::{Adversary, Network, NodeState};
use voidmesh_kad::{Config, Event};
use voidmesh_proto::{Key, SignedRecord, Version};

/// One-way latency of every message.
const LATENCY: Duration = Duration::from_millis(10);
/// Values put per scenario.
const KEYS: usize = 30;
/// GETs of each value.
const GETS_PER_KEY: usize = 10;
/// Replication of each PUT.
const REPLICATION: u8 = 10;

/// What one scenario measured.
#[derive(Debug, Clone, Copy)]
struct Outcome {
    gets: usize,
    found: usize,
    /// Lookup requests sent by the getters, per GET.
    requests_per_get: f64,
    /// Mean virtual time of a GET.
    mean_get: Duration,
}

impl Outcome {
    fn success(&self) -> f64 {
        100.0 * self.found as f64 / self.gets as f64
    }
}

/// `n` nodes that joined through node 0, one after the other, all running `config`.
fn bootstrapped(n: usize, config: &Config, seed: u64) -> Network {
    let epoch = Instant::now();
    let mut net = Network::with_nodes(n, config, seed, epoch, LATENCY);
    let _ = net.command(0, |kad, now| kad.bootstrap(now, &[]));
    net.drive().expect("first bootstrap settles");
    let seed_contact = net.contact(0);
    for i in 1..n {
        let _ = net.command(i, |kad, now| kad.bootstrap(now, &[seed_contact]));
        net.drive().expect("bootstrap settles");
    }
    net
}

/// Turns `fraction` of the nodes (never node 0) into `behaviour`; returns the honest ones.
fn corrupt(net: &mut Network, fraction: f64, behaviour: Adversary, seed: u64) -> Vec<usize> {
    let mut rng = StdRng::seed_from_u64(seed);
    let bad = (fraction * net.len() as f64).round() as usize;
    let mut chosen = 0;
    while chosen < bad {
        let i = rng.gen_range(1..net.len());
        if net.adversary(i).is_none() {
            net.set_adversary(i, Some(behaviour));
            chosen += 1;
        }
    }
    if behaviour == Adversary::FakeContacts {
        // Made-up addresses time out, as connection attempts to nowhere do.
        net.set_unknown_peers(NodeState::Silent);
    }
    (0..net.len())
        .filter(|&i| net.adversary(i).is_none())
        .collect()
}

/// Puts and gets plain values from honest nodes; see the module doc.
fn measure_plain(net: &mut Network, honest: &[usize], seed: u64) -> Outcome {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut values: Vec<(Key, Bytes)> = Vec::new();
    for n in 0..KEYS {
        let key = Key(rng.gen());
        let value = Bytes::from(format!("value {n}"));
        let from = honest[rng.gen_range(0..honest.len())];
        let version = Version::new(net.unix_time() * 1000, n as u16);
        let v = value.clone();
        let _ = net.command(from, |kad, now| {
            kad.put(now, key, v, Duration::from_secs(3600), REPLICATION, version)
        });
        net.drive().expect("put settles");
        values.push((key, value));
    }
    let mut outcome = Outcome {
        gets: 0,
        found: 0,
        requests_per_get: 0.0,
        mean_get: Duration::ZERO,
    };
    let (mut requests, mut time) = (0u64, Duration::ZERO);
    for (key, value) in &values {
        for _ in 0..GETS_PER_KEY {
            let getter = honest[rng.gen_range(0..honest.len())];
            let before = net.kad(getter).stats().lookup_requests;
            let start = net.now();
            let query = net.command(getter, |kad, now| kad.get(now, *key));
            net.drive().expect("get settles");
            let Some((at, Event::GetFinished { value: got, .. })) =
                net.take_timed_event(getter, query)
            else {
                panic!("GET from {getter} did not finish");
            };
            outcome.gets += 1;
            outcome.found += usize::from(got.as_ref() == Some(value));
            requests += net.kad(getter).stats().lookup_requests - before;
            time += at - start;
        }
    }
    outcome.requests_per_get = requests as f64 / outcome.gets as f64;
    outcome.mean_get = time / outcome.gets as u32;
    outcome
}

/// Puts one signed record per key from honest owners and gets them back with
/// `get_signed`; a GET succeeds if it returns the owner's record.
fn measure_signed(net: &mut Network, honest: &[usize], seed: u64) -> Outcome {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut records: Vec<SignedRecord> = Vec::new();
    for n in 0..KEYS {
        let owner = ed25519_dalek::SigningKey::from_bytes(&rng.gen());
        let record = SignedRecord::sign(
            &owner,
            Bytes::from_static(b"presence"),
            1,
            net.unix_time() + 3600,
            Bytes::from(format!("value {n}")),
        )
        .expect("valid lengths");
        let from = honest[rng.gen_range(0..honest.len())];
        let r = record.clone();
        let _ = net
            .command(from, |kad, now| kad.put_signed(now, r, REPLICATION))
            .expect("valid record");
        net.drive().expect("put settles");
        records.push(record);
    }
    let mut outcome = Outcome {
        gets: 0,
        found: 0,
        requests_per_get: 0.0,
        mean_get: Duration::ZERO,
    };
    let (mut requests, mut time) = (0u64, Duration::ZERO);
    for record in &records {
        for _ in 0..GETS_PER_KEY {
            let getter = honest[rng.gen_range(0..honest.len())];
            let before = net.kad(getter).stats().lookup_requests;
            let start = net.now();
            let query = net.command(getter, |kad, now| kad.get_signed(now, record.key()));
            net.drive().expect("get settles");
            let Some((at, Event::GetFinished { signed, .. })) = net.take_timed_event(getter, query)
            else {
                panic!("GET from {getter} did not finish");
            };
            outcome.gets += 1;
            outcome.found += usize::from(signed.as_ref() == Some(record));
            requests += net.kad(getter).stats().lookup_requests - before;
            time += at - start;
        }
    }
    outcome.requests_per_get = requests as f64 / outcome.gets as f64;
    outcome.mean_get = time / outcome.gets as u32;
    outcome
}

/// FIND_NODE from honest nodes: the share of the honest nodes among the true k closest
/// (of all nodes) that the lookup returned (in %, as `success`; `found`/`gets` summed over
/// the lookups), and the requests per lookup.
fn measure_find_node(net: &mut Network, honest: &[usize], seed: u64) -> Outcome {
    let mut rng = StdRng::seed_from_u64(seed);
    let k = net.kad(0).config().k;
    let lookups = 50;
    let (mut found, mut wanted, mut requests, mut time) = (0usize, 0usize, 0u64, Duration::ZERO);
    for _ in 0..lookups {
        let node = honest[rng.gen_range(0..honest.len())];
        let target = Key(rng.gen());
        let before = net.kad(node).stats().lookup_requests;
        let start = net.now();
        let query = net.command(node, |kad, now| kad.find_node(now, target));
        net.drive().expect("lookup settles");
        let Some((at, Event::FindNodeFinished { closest, .. })) = net.take_timed_event(node, query)
        else {
            panic!("lookup from {node} did not finish");
        };
        let mut truth: Vec<usize> = (0..net.len()).filter(|&i| i != node).collect();
        truth.sort_by_key(|&i| target.distance(&net.contact(i).id));
        truth.truncate(k);
        let truth: Vec<Key> = truth
            .into_iter()
            .filter(|&i| net.adversary(i).is_none())
            .map(|i| net.contact(i).id)
            .collect();
        wanted += truth.len();
        found += closest.iter().filter(|c| truth.contains(&c.id)).count();
        requests += net.kad(node).stats().lookup_requests - before;
        time += at - start;
    }
    Outcome {
        gets: wanted,
        found,
        requests_per_get: requests as f64 / lookups as f64,
        mean_get: time / lookups as u32,
    }
}

fn config(d: usize) -> Config {
    Config {
        disjoint_paths: d,
        ..Config::default()
    }
}

/// Runs one scenario on a fork of `base`.
fn scenario(
    base: &Network,
    behaviour: Adversary,
    fraction: f64,
    seed: u64,
    signed: bool,
) -> Outcome {
    let mut net = base.clone();
    let honest = corrupt(&mut net, fraction, behaviour, seed);
    if signed {
        measure_signed(&mut net, &honest, seed)
    } else {
        measure_plain(&mut net, &honest, seed)
    }
}

/// The headline: with 30 % of the nodes answering lookups with made-up contacts nearer
/// the target than any real node, three disjoint paths find clearly more values than one;
/// and an id puzzle takes the attack's teeth out even for one path, since made-up ids do
/// not solve it.
#[test]
fn disjoint_paths_and_the_id_puzzle_resist_fake_contacts() {
    let nodes = 150;
    let run = |config: Config| {
        scenario(
            &bootstrapped(nodes, &config, 21),
            Adversary::FakeContacts,
            0.3,
            5,
            false,
        )
    };
    let one = run(config(1));
    let three = run(config(3));
    let puzzle = run(Config {
        id_difficulty: 8,
        ..config(1)
    });
    println!(
        "fake contacts 30 %, {nodes} nodes: d=1 {:.1} % ({:.1} requests/GET), \
         d=3 {:.1} % ({:.1} requests/GET), d=1 with an 8-bit id puzzle {:.1} %",
        one.success(),
        one.requests_per_get,
        three.success(),
        three.requests_per_get,
        puzzle.success()
    );
    assert!(
        three.success() >= one.success() + 10.0,
        "d=3 found {:.1} %, d=1 {:.1} %",
        three.success(),
        one.success()
    );
    assert!(
        three.success() >= 95.0,
        "d=3 found {:.1} %",
        three.success()
    );
    assert_eq!(
        puzzle.found, puzzle.gets,
        "with the puzzle every GET succeeds"
    );
}

/// Forged answers never win: with a third of the nodes answering every FIND_VALUE with a
/// forged signed record (or a plain value from the future), every GET still returns the
/// real record.
#[test]
fn forged_answers_never_win() {
    let base = bootstrapped(100, &config(3), 22);
    let signed = scenario(&base, Adversary::ForgedSigned, 0.3, 6, true);
    assert_eq!(signed.found, signed.gets, "forged signed records won");
    let plain = scenario(&base, Adversary::WrongValue, 0.3, 6, false);
    assert_eq!(plain.found, plain.gets, "values from the future won");
}

/// The table of docs/robustness.md: every behaviour × 10/20/30 % × d = 1..4, as CSV.
#[test]
#[ignore = "takes minutes; run in release mode to regenerate docs/robustness.md"]
fn disjoint_lookups_table() {
    let nodes: usize = std::env::var("ADVERSARY_NODES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let paths = [1usize, 2, 3, 4];
    let bases: HashMap<usize, Network> = paths
        .iter()
        .map(|&d| (d, bootstrapped(nodes, &config(d), 31)))
        .collect();
    println!("nodes,behaviour,adversaries_pct,d,gets,success_pct,requests_per_get,mean_get_ms");
    let print = |behaviour: &str, pct: u32, d: usize, o: Outcome| {
        println!(
            "{nodes},{behaviour},{pct},{d},{},{:.1},{:.1},{:.0}",
            o.gets,
            o.success(),
            o.requests_per_get,
            o.mean_get.as_secs_f64() * 1000.0
        );
    };
    for d in paths {
        print(
            "none",
            0,
            d,
            scenario(&bases[&d], Adversary::Drop, 0.0, 7, false),
        );
    }
    // The cost before this change: one path, the first value ends the GET.
    let first_value = Config {
        read_quorum: 1,
        ..config(1)
    };
    let base = bootstrapped(nodes, &first_value, 31);
    print(
        "none (read_quorum 1)",
        0,
        1,
        scenario(&base, Adversary::Drop, 0.0, 7, false),
    );
    let behaviours = [
        ("drop", Adversary::Drop),
        ("fake-contacts", Adversary::FakeContacts),
        ("eclipse", Adversary::Eclipse),
    ];
    for (name, behaviour) in behaviours {
        for pct in [10u32, 20, 30] {
            for d in paths {
                let o = scenario(&bases[&d], behaviour, f64::from(pct) / 100.0, 7, false);
                print(name, pct, d, o);
            }
        }
    }
    for (name, behaviour, pct) in [
        ("find-node: none", Adversary::Drop, 0u32),
        ("find-node: fake-contacts", Adversary::FakeContacts, 30),
        ("find-node: eclipse", Adversary::Eclipse, 30),
    ] {
        for d in paths {
            let mut net = bases[&d].clone();
            let honest = corrupt(&mut net, f64::from(pct) / 100.0, behaviour, 7);
            print(name, pct, d, measure_find_node(&mut net, &honest, 7));
        }
    }
    // Made-up ids do not solve the id puzzle: with one, the attack is void even for d = 1.
    let puzzle = |d| Config {
        id_difficulty: 8,
        ..config(d)
    };
    for d in [1usize, 3] {
        let base = bootstrapped(nodes, &puzzle(d), 31);
        for pct in [10u32, 20, 30] {
            let o = scenario(
                &base,
                Adversary::FakeContacts,
                f64::from(pct) / 100.0,
                7,
                false,
            );
            print("fake-contacts (id puzzle 8 bits)", pct, d, o);
        }
        let mut net = base.clone();
        let honest = corrupt(&mut net, 0.3, Adversary::FakeContacts, 7);
        let o = measure_find_node(&mut net, &honest, 7);
        print("find-node: fake-contacts (id puzzle 8 bits)", 30, d, o);
    }
    for (name, behaviour, signed) in [
        ("wrong-value", Adversary::WrongValue, false),
        ("forged-signed", Adversary::ForgedSigned, true),
    ] {
        for pct in [10u32, 20, 30] {
            for d in [1usize, 3] {
                let o = scenario(&bases[&d], behaviour, f64::from(pct) / 100.0, 7, signed);
                print(name, pct, d, o);
            }
        }
    }
}
