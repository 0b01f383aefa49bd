//! End-to-end scenarios: the real Kademlia under the simulator, checked for determinism,
//! correctness and robustness.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use voidmesh_sim::{report, run, Behaviour, JoinMode, NoProgress, RunOutput, Scenario};

/// A scenario that stays fast in debug builds: `fast` joins (the full bootstrap has its
/// own test) and no byte counting (the determinism test counts bytes).
fn scenario(nodes: usize, lookups: usize, records: usize) -> Scenario {
    Scenario {
        nodes,
        lookups,
        records,
        seed: 42,
        join: JoinMode::Fast,
        measure_bytes: false,
        ..Scenario::default()
    }
}

fn simulate(s: &Scenario) -> (RunOutput, Value) {
    let out = run(s, &mut NoProgress).expect("simulation runs");
    let summary = voidmesh_sim::metrics::summary(&out);
    eprintln!("{summary}");
    (out, summary)
}

fn f(summary: &Value, key: &str) -> f64 {
    summary[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} missing"))
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("voidmesh-sim-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn files(dir: &PathBuf) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn same_seed_gives_byte_identical_output() {
    let s = Scenario {
        churn_duration: Duration::from_secs(120),
        join_rate: 0.1,
        leave_rate: 0.1,
        probe_interval: Duration::from_secs(30),
        probe_sample: 10,
        loss: 0.02,
        adversary_fraction: 0.1,
        measure_bytes: true,
        gossip_items: 3,
        gossip_warmup: Duration::from_secs(20),
        ..scenario(120, 40, 10)
    };
    let (a, b) = (temp_dir("det-a"), temp_dir("det-b"));
    for dir in [&a, &b] {
        let out = run(&s, &mut NoProgress).unwrap();
        report::write(dir, &out, true).unwrap();
    }
    let (fa, fb) = (files(&a), files(&b));
    assert!(
        fa.len() >= 10,
        "expected all output files, got {}",
        fa.len()
    );
    assert_eq!(
        fa.iter().map(|f| &f.0).collect::<Vec<_>>(),
        fb.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    for ((name, x), (_, y)) in fa.iter().zip(&fb) {
        assert!(x == y, "{name} differs between two runs with the same seed");
    }
    // A different seed is a different run.
    let other = run(&Scenario { seed: 43, ..s }, &mut NoProgress).unwrap();
    let c = temp_dir("det-c");
    report::write(&c, &other, false).unwrap();
    assert_ne!(
        std::fs::read(a.join("queries.csv")).unwrap(),
        std::fs::read(c.join("queries.csv")).unwrap()
    );
    for dir in [a, b, c] {
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[test]
fn honest_network_of_500_finds_the_true_closest() {
    let (out, sum) = simulate(&scenario(500, 100, 20));
    assert_eq!(sum["lookups"], 100);
    assert!(f(&sum, "lookup_success") >= 0.99, "{sum}");
    assert!(f(&sum, "lookup_k_overlap") >= 0.95, "{sum}");
    assert_eq!(f(&sum, "get_ok"), 1.0, "{sum}");
    assert_eq!(f(&sum, "put_ok"), 1.0, "{sum}");
    let hops = f(&sum, "lookup_hops_mean");
    assert!((1.0..6.0).contains(&hops), "{sum}");
    assert!(out.counters.requests > 0);
}

#[test]
fn thirty_percent_drop_all_adversaries_terminate_with_high_success() {
    let s = Scenario {
        adversary_fraction: 0.3,
        adversary: Behaviour::DropAll,
        ..scenario(300, 100, 20)
    };
    let (_, sum) = simulate(&s);
    assert_eq!(sum["lookups"], 100);
    assert!(f(&sum, "lookup_success") >= 0.9, "{sum}");
    assert!(f(&sum, "get_ok") >= 0.9, "{sum}");
}

#[test]
fn every_adversary_behaviour_terminates() {
    for behaviour in [
        Behaviour::FarContacts,
        Behaviour::FakeContacts,
        Behaviour::FakeNearContacts,
        Behaviour::WrongValues,
    ] {
        let s = Scenario {
            adversary_fraction: 0.2,
            adversary: behaviour,
            ..scenario(100, 30, 10)
        };
        let (_, sum) = simulate(&s);
        assert_eq!(sum["lookups"], 30, "{behaviour:?}");
        assert_eq!(sum["gets"], 10, "{behaviour:?}");
    }
}

#[test]
fn churn_reports_retrievability_over_time() {
    let s = Scenario {
        churn_duration: Duration::from_secs(600),
        join_rate: 0.1,
        leave_rate: 0.1,
        crash_fraction: 0.5,
        probe_interval: Duration::from_secs(60),
        probe_sample: 20,
        ..scenario(150, 10, 20)
    };
    let (out, sum) = simulate(&s);
    assert_eq!(out.probes.len(), 11);
    assert!(out.counters.departures > 30, "{sum}");
    assert!(out.probes.iter().all(|p| p.started > 0));
    assert!(f(&sum, "retrievable_first") >= 0.95, "{sum}");
    let last = f(&sum, "retrievable_last");
    assert!((0.0..=1.0).contains(&last), "{sum}");
}

#[test]
fn lossy_network_still_works() {
    // 10 % loss per message fails about 19 % of requests; a lookup has no retries, so
    // the true closest node is missed whenever its answer is lost. GETs still succeed.
    let s = Scenario {
        loss: 0.1,
        ..scenario(150, 50, 10)
    };
    let (out, sum) = simulate(&s);
    assert!(out.counters.lost > 0);
    assert!(f(&sum, "lookup_success") >= 0.6, "{sum}");
    assert!(f(&sum, "get_ok") >= 0.9, "{sum}");
}

#[test]
fn full_bootstrap_joins_everyone() {
    for join in [JoinMode::Bootstrap, JoinMode::Seeded] {
        let s = Scenario {
            join,
            ..scenario(60, 30, 5)
        };
        let (out, sum) = simulate(&s);
        assert_eq!(out.alive_at_end, 60);
        assert!(f(&sum, "lookup_success") >= 0.95, "{join:?}: {sum}");
    }
}

#[test]
fn cli_writes_the_output_directory() {
    let dir = temp_dir("cli");
    let args = voidmesh_sim::SimArgs {
        out: dir.clone(),
        nodes: Some(60),
        lookups: Some(20),
        records: Some(5),
        quiet: true,
        ..Default::default()
    };
    voidmesh_sim::run_cli(args).unwrap();
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["nodes"], 60);
    for name in [
        "queries.csv",
        "hops.csv",
        "latency.csv",
        "hops.svg",
        "scenario.ini",
        "timing.json",
    ] {
        assert!(dir.join(name).exists(), "{name} missing");
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn gossip_items_reach_every_node() {
    let s = Scenario {
        kad: false,
        gossip_items: 10,
        ..scenario(200, 0, 0)
    };
    let (out, sum) = simulate(&s);
    let g = out.gossip.as_ref().expect("a gossip run");
    assert_eq!(g.items.len(), 10);
    assert!(f(&sum, "gossip_coverage_mean") >= 0.99, "{sum}");
    let per_item = f(&sum, "gossip_msgs_per_item");
    assert!(
        per_item >= 199.0,
        "every node but the origin gets at least one copy: {sum}"
    );
    assert!(f(&sum, "gossip_view_mean") >= 8.0, "{sum}");
}

#[test]
fn event_budget_stops_a_run_instead_of_spinning() {
    let s = Scenario {
        max_events: 2_000,
        ..scenario(100, 10, 2)
    };
    match run(&s, &mut NoProgress) {
        Err(voidmesh_sim::SimError::EventBudget(2_000)) => {}
        other => panic!(
            "expected the event budget to stop the run, got {:?}",
            other.map(|_| ())
        ),
    }
}

#[test]
fn invalid_scenario_is_refused_before_running() {
    let s = Scenario {
        nodes: 0,
        ..Scenario::default()
    };
    assert!(matches!(
        run(&s, &mut NoProgress),
        Err(voidmesh_sim::SimError::Scenario(_))
    ));
}

#[test]
fn disjoint_paths_knob_takes_effect_deterministically() {
    let sweep = voidmesh_sim::sweep::Sweep {
        base: scenario(200, 60, 30),
        behaviours: vec![Behaviour::FakeNearContacts],
        fractions: vec![0.3],
        disjoint_paths: vec![1, 3],
    };
    let first = sweep.run(&mut |_, _| {}).unwrap();
    let again = sweep.run(&mut |_, _| {}).unwrap();
    assert_eq!(first, again, "same seed, same sweep");
    let csv = voidmesh_sim::sweep::csv(200, &first);
    eprintln!("{csv}");
    assert_eq!(csv, voidmesh_sim::sweep::csv(200, &again));
    let (d1, d3) = (&first[0], &first[1]);
    assert_eq!((d1.disjoint_paths, d3.disjoint_paths), (1, 3));
    assert_eq!((d1.gets, d1.lookups), (30, 60));
    // Three paths ask more nodes per lookup than one: the knob reached every node's
    // Kademlia. (Per GET, d = 1 may ask more: its one path waits out made-up contacts.)
    assert!(
        d3.lookup_requests_mean > d1.lookup_requests_mean,
        "d = 1: {d1:?}\nd = 3: {d3:?}"
    );
    let dir = temp_dir("sweep");
    voidmesh_sim::sweep::write(&dir, &sweep, &first, true).unwrap();
    assert!(std::fs::read_to_string(dir.join("sweep.svg"))
        .unwrap()
        .contains("fake-near-contacts, d = 3"));
    let _ = std::fs::remove_dir_all(dir);
}
