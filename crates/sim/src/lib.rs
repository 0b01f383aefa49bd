//! A deterministic discrete-event simulator for voidmesh.
//!
//! It drives the real [`voidmesh_kad::Kademlia`] (and [`voidmesh_gossip::Gossip`]) state
//! machines — the same code the daemon runs under tokio — for thousands to hundreds of thousands of nodes in one thread, in
//! virtual time, over a virtual network with configurable latency, loss, churn and
//! adversarial nodes. Same scenario and seed, same output, byte for byte.
//!
//! # Layout
//! - [`clock`], [`queue`]: virtual time and the event queue (quinn's `Pair`, scaled up).
//! - [`network`]: addresses, per-link latency, loss.
//! - [`adversary`]: how adversarial nodes answer.
//! - [`members`]: sets of nodes to pick from at random.
//! - [`world`]: the nodes, the message passing and the drive loop.
//! - [`tracking`]: which request belongs to which operation; hop counts.
//! - [`wire_size`]: message sizes without encoding.
//! - [`workload`]: the phases of a run (build, put, lookup, churn).
//! - [`gossip`]: the gossip run (the real `voidmesh_gossip::Gossip` on every node).
//! - [`scenario`]: every knob, from defaults, an INI file and flags.
//! - [`metrics`], [`report`], [`chart`]: figures, CSV files, SVG charts.
//! - [`sweep`]: many runs over adversary shares and disjoint paths, one chart.
//! - [`cli`]: the `voidmesh sim` subcommand ([`SimArgs`], [`run_cli`]).
//!
//! # Running
//! ```text
//! voidmesh sim --nodes 10000 --out sim-10k                 # build, PUT, GET, lookups
//! voidmesh sim --nodes 100000 --join fast --out sim-100k   # the fast way to build 100k
//! voidmesh sim --nodes 10000 --join fast --adversary drop-all --adversary-fraction 0.3
//! voidmesh sim --nodes 10000 --churn-duration-s 1800 --join-rate 2 --leave-rate 2
//! voidmesh sim --nodes 10000 --no-kad --gossip-items 20     # gossip coverage
//! voidmesh sim --scenario my.ini --seed 7                   # flags override the file
//! voidmesh sim --nodes 2000 --sweep-adversaries fake-near-contacts,wrong-values \
//!     --sweep-fractions 0,0.1,0.2,0.3 --sweep-disjoint-paths 1,3   # see [`sweep`]
//! ```
//! Without the binary: `cargo run --release -p voidmesh-sim --example sim -- <flags>`.
//! Each run writes `summary.json`, CSV files and SVG charts into `--out` (see
//! [`report`]) and prints the summary, plus wall time and peak RSS, as one JSON line.
//!
//! # Determinism
//! The only source of randomness is the scenario's seed: node ids, latencies, losses,
//! keys, initiators, churn and adversaries each draw from their own seeded `StdRng`, and
//! each node's Kademlia gets a seed derived from it. Separate streams also mean that two
//! scenarios differing only in, say, the republish interval see the same keys, the same
//! departures at the same instants and the same lookup targets. Events due at the same virtual instant run
//! in the order they were scheduled. The wall clock is read once, as the epoch of
//! virtual time, and never again by the simulation.
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod adversary;
pub mod chart;
pub mod cli;
pub mod clock;
pub mod gossip;
pub mod members;
pub mod metrics;
pub mod network;
pub mod progress;
pub mod queue;
pub mod report;
pub mod scenario;
pub mod sweep;
pub mod tracking;
pub mod transport;
pub mod wire_size;
pub mod workload;
pub mod world;

use std::time::Duration;

pub use adversary::Behaviour;
pub use cli::{run_cli, SimArgs};
pub use progress::{NoProgress, Progress};
pub use scenario::{JoinMode, Scenario, ScenarioError};
pub use workload::run;

/// Why a simulation could not complete.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The scenario is invalid.
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    /// Too many events at one virtual instant: something reschedules itself forever.
    #[error("livelock: {events} events at virtual time {at:?} without time moving on")]
    Livelock {
        /// The virtual instant that never ends.
        at: Duration,
        /// Events handled there.
        events: u64,
    },
    /// The scenario's cap on events was reached.
    #[error("event budget of {0} events exhausted")]
    EventBudget(u64),
    /// A phase's operations did not all end by its virtual deadline.
    #[error(
        "phase {phase} not finished by virtual time {deadline:?}: {pending} operations pending"
    )]
    Stuck {
        /// The phase.
        phase: &'static str,
        /// Its deadline.
        deadline: Duration,
        /// Joins and queries still running.
        pending: usize,
    },
    /// No honest joined node is left to start an operation.
    #[error("no honest node left to start an operation")]
    NoHonestNode,
}

/// Everything a run measured; [`report::write`] turns it into files.
#[derive(Debug, Clone)]
pub struct RunOutput {
    /// The scenario that ran.
    pub scenario: Scenario,
    /// Every measured operation.
    pub queries: Vec<tracking::QueryRecord>,
    /// Network-wide totals.
    pub counters: world::Counters,
    /// Retrievability probe rounds (churn phase).
    pub probes: Vec<workload::ProbeRow>,
    /// Virtual start and end of each phase.
    pub phases: Vec<workload::PhaseTime>,
    /// Nodes in the network at the end.
    pub alive_at_end: usize,
    /// Records held per live node at the end.
    pub records_held: Vec<usize>,
    /// Routing-table size per live node at the end.
    pub contacts: Vec<usize>,
    /// Records whose PUT stored them somewhere.
    pub records_stored: usize,
    /// The gossip run, if the scenario has one.
    pub gossip: Option<gossip::GossipOutput>,
}
