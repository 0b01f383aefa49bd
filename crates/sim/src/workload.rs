//! The workload: the phases of a run and the actions they schedule.
//!
//! 1. **build**: `nodes` nodes join, one every `join-interval`, each through random nodes
//!    that already joined (see [`JoinMode`](crate::scenario::JoinMode)).
//! 2. **put**: `records` records (random 32-byte keys, random values) are stored from
//!    random honest nodes.
//! 3. **lookup**: `lookups` lookups of random keys from random honest nodes, and a GET of
//!    every record from a random honest node other than its writer, side by side.
//! 4. **churn** (if `churn-duration-s` > 0): Poisson joins and departures; every
//!    `probe-interval-s` a probe fetches a sample of the records that were stored.
//!
//! 5. **gossip** (if `gossip-items` > 0): a separate run of the gossip state machine, see
//!    [`crate::gossip`].
//!
//! Each phase drives the world until its operations are over, bounded by a virtual
//! deadline: a phase that does not end in time fails the run instead of spinning.

use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use voidmesh_proto::Key;

use crate::adversary::Behaviour;
use crate::network::mix64;
use crate::progress::Progress;
use crate::scenario::Scenario;
use crate::tracking::Outcome;
use crate::world::{Action, Stepped, World};
use crate::{RunOutput, SimError};

/// How often (in events) the progress display is updated.
const PROGRESS_EVERY: u64 = 4096;

/// How long past its last scheduled action a phase may run before it counts as stuck.
const PHASE_GRACE: Duration = Duration::from_secs(3600);

/// One stored record.
#[derive(Debug, Clone)]
struct Record {
    /// Its key.
    key: Key,
    /// Its value.
    value: Bytes,
    /// The node that stored it.
    writer: u32,
    /// Whether the PUT put it anywhere.
    stored: bool,
    /// The PUT's query index.
    put_query: Option<u32>,
}

/// One retrievability probe round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeRow {
    /// Virtual time since the churn phase started.
    pub at: Duration,
    /// Nodes in the network when the probe started.
    pub alive: usize,
    /// GETs started.
    pub started: u32,
    /// GETs that finished (the others were aborted by their node leaving).
    pub finished: u32,
    /// GETs that returned the right value.
    pub retrieved: u32,
}

/// Virtual start and end of one phase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhaseTime {
    /// The phase's name.
    pub name: &'static str,
    /// When it started.
    pub start: Duration,
    /// When its last operation ended.
    pub end: Duration,
}

/// Runs one scenario to its end.
struct Workload<'p> {
    /// The scenario.
    scenario: Scenario,
    /// The network.
    world: World,
    /// Keys, values, lookup targets and probe samples. Separate streams keep the workload
    /// the same when only the network's behaviour changes (common random numbers).
    rng_keys: StdRng,
    /// Which node starts each operation.
    rng_nodes: StdRng,
    /// Churn: arrival times, who leaves, crash or not, whether newcomers are adversarial.
    rng_churn: StdRng,
    /// Which of the initial nodes are adversarial.
    rng_adversaries: StdRng,
    /// Records stored in the put phase.
    records: Vec<Record>,
    /// Probe rounds.
    probes: Vec<ProbeRow>,
    /// When the churn phase started.
    churn_start: Duration,
    /// When it ends.
    churn_end: Duration,
    /// Phase timings.
    phases: Vec<PhaseTime>,
    /// Where progress goes.
    progress: &'p mut dyn Progress,
}

/// Runs `scenario` and returns everything measured.
///
/// # Errors
/// An invalid scenario, a livelock, or a phase that does not finish.
pub fn run(scenario: &Scenario, progress: &mut dyn Progress) -> Result<RunOutput, SimError> {
    scenario.validate()?;
    let mut w = Workload {
        world: World::new(scenario, Instant::now()),
        rng_keys: StdRng::seed_from_u64(mix64(scenario.seed ^ 0x6b65_7973)),
        rng_nodes: StdRng::seed_from_u64(mix64(scenario.seed ^ 0x6e6f_6465)),
        rng_churn: StdRng::seed_from_u64(mix64(scenario.seed ^ 0x6368_7572)),
        rng_adversaries: StdRng::seed_from_u64(mix64(scenario.seed ^ 0x6164_7673)),
        scenario: scenario.clone(),
        records: Vec::new(),
        probes: Vec::new(),
        churn_start: Duration::ZERO,
        churn_end: Duration::ZERO,
        phases: Vec::new(),
        progress,
    };
    if scenario.kad {
        w.build()?;
        w.put()?;
        w.lookup()?;
        w.churn()?;
    }
    let gossip = if scenario.gossip_items > 0 {
        Some(crate::gossip::run(scenario, w.progress)?)
    } else {
        None
    };
    Ok(RunOutput {
        scenario: w.scenario,
        queries: w.world.queries().to_vec(),
        counters: w.world.counters().clone(),
        probes: w.probes,
        phases: w.phases,
        alive_at_end: w.world.alive().len(),
        records_held: w.world.record_counts(),
        contacts: w.world.contact_counts(),
        records_stored: w.records.iter().filter(|r| r.stored).count(),
        gossip,
    })
}

impl Workload<'_> {
    fn build(&mut self) -> Result<(), SimError> {
        let start = self.world.now();
        let n = self.scenario.nodes;
        // Exactly round(fraction × n) adversaries, never node 0 (the network's first node).
        let bad = ((self.scenario.adversary_fraction * n as f64).round() as usize).min(n - 1);
        let mut adversarial = vec![false; n];
        if bad > 0 {
            for i in rand::seq::index::sample(&mut self.rng_adversaries, n - 1, bad) {
                adversarial[i + 1] = true;
            }
        }
        let mut last = start;
        for (i, &is_bad) in adversarial.iter().enumerate() {
            let node = self
                .world
                .add_node(is_bad.then_some(self.scenario.adversary));
            let at = start + self.scenario.join_interval * i as u32;
            self.world.schedule(at, Action::Join(node));
            last = at;
        }
        self.progress.phase("build", n as u64);
        let deadline = last + PHASE_GRACE;
        self.drive(
            "build",
            deadline,
            |w| w.world.counters().joins_done as usize >= n && w.world.joining() == 0,
            |w| w.world.counters().joins_done,
        )?;
        self.phases.push(PhaseTime {
            name: "build",
            start,
            end: self.world.now(),
        });
        Ok(())
    }

    fn put(&mut self) -> Result<(), SimError> {
        let start = self.world.now();
        for r in 0..self.scenario.records {
            let mut value = vec![0u8; self.scenario.value_size];
            self.rng_keys.fill(&mut value[..]);
            self.records.push(Record {
                key: Key(self.rng_keys.gen()),
                value: Bytes::from(value),
                writer: u32::MAX,
                stored: false,
                put_query: None,
            });
            let at = start + self.scenario.op_interval * r as u32;
            self.world.schedule(at, Action::Put(r as u32));
        }
        let total = self.scenario.records as u64;
        let deadline = start + self.scenario.op_interval * total as u32 + PHASE_GRACE;
        self.progress.phase("put", total);
        let first = self.world.queries().len();
        self.drive(
            "put",
            deadline,
            |w| w.world.queries().len() >= first + w.scenario.records && w.world.running() == 0,
            |w| (w.world.queries().len() - first - w.world.running()) as u64,
        )?;
        let queries = self.world.queries();
        for r in &mut self.records {
            let outcome = r
                .put_query
                .and_then(|q| queries.get(q as usize))
                .map(|q| &q.outcome);
            if let Some(Outcome::Put {
                stored_remote,
                stored_local,
            }) = outcome
            {
                r.stored = *stored_remote > 0 || *stored_local;
            }
        }
        self.phases.push(PhaseTime {
            name: "put",
            start,
            end: self.world.now(),
        });
        Ok(())
    }

    fn lookup(&mut self) -> Result<(), SimError> {
        let start = self.world.now();
        let ops = self.scenario.lookups.max(self.records.len());
        for i in 0..self.scenario.lookups {
            let at = start + self.scenario.op_interval * i as u32;
            self.world.schedule(at, Action::Lookup);
        }
        for r in 0..self.records.len() {
            let at = start + self.scenario.op_interval * r as u32;
            self.world.schedule(at, Action::Get(r as u32));
        }
        let total = self.scenario.lookups + self.records.len();
        let first = self.world.queries().len();
        let deadline = start + self.scenario.op_interval * ops as u32 + PHASE_GRACE;
        self.progress.phase("lookup", total as u64);
        self.drive(
            "lookup",
            deadline,
            |w| w.world.queries().len() >= first + total && w.world.running() == 0,
            |w| (w.world.queries().len() - first - w.world.running()) as u64,
        )?;
        self.phases.push(PhaseTime {
            name: "lookup",
            start,
            end: self.world.now(),
        });
        Ok(())
    }

    fn churn(&mut self) -> Result<(), SimError> {
        if self.scenario.churn_duration.is_zero() {
            return Ok(());
        }
        let start = self.world.now();
        self.churn_start = start;
        self.churn_end = start + self.scenario.churn_duration;
        let rounds = (self.scenario.churn_duration.as_secs_f64()
            / self.scenario.probe_interval.as_secs_f64())
        .floor() as u32;
        for p in 0..=rounds {
            self.world
                .schedule(start + self.scenario.probe_interval * p, Action::Probe(p));
        }
        if let Some(at) = self.next_arrival(start, self.scenario.join_rate) {
            self.world.schedule(at, Action::ChurnJoin);
        }
        if let Some(at) = self.next_arrival(start, self.scenario.leave_rate) {
            self.world.schedule(at, Action::ChurnLeave);
        }
        let end = self.churn_end;
        let deadline = end + PHASE_GRACE;
        let total_ms = self.scenario.churn_duration.as_millis() as u64;
        self.progress.phase("churn", total_ms);
        self.drive(
            "churn",
            deadline,
            |w| w.world.now() >= end && w.world.running() == 0 && w.probes.len() > rounds as usize,
            |w| w.world.now().saturating_sub(start).as_millis() as u64,
        )?;
        self.phases.push(PhaseTime {
            name: "churn",
            start,
            end: self.world.now(),
        });
        Ok(())
    }

    /// The next Poisson arrival after `after` at `rate` per second, if inside the churn
    /// phase.
    fn next_arrival(&mut self, after: Duration, rate: f64) -> Option<Duration> {
        if rate <= 0.0 {
            return None;
        }
        let u: f64 = self.rng_churn.gen();
        let gap = Duration::from_secs_f64((-(1.0 - u).ln() / rate).min(1e9));
        let at = after + gap;
        (at < self.churn_end).then_some(at)
    }

    /// Steps the world until `done`, carrying out due actions.
    fn drive(
        &mut self,
        phase: &'static str,
        deadline: Duration,
        done: impl Fn(&Self) -> bool,
        position: impl Fn(&Self) -> u64,
    ) -> Result<(), SimError> {
        let mut since_progress = 0u64;
        while !done(self) {
            if self.world.now() > deadline {
                return Err(SimError::Stuck {
                    phase,
                    deadline,
                    pending: self.world.running() + self.world.joining(),
                });
            }
            match self.world.step()? {
                Stepped::Idle => {
                    return Err(SimError::Stuck {
                        phase,
                        deadline: self.world.now(),
                        pending: self.world.running() + self.world.joining(),
                    })
                }
                Stepped::Event => {}
                Stepped::Action(action) => self.act(action)?,
            }
            for q in self.world.take_finished() {
                self.on_finished(q);
            }
            since_progress += 1;
            if since_progress >= PROGRESS_EVERY {
                since_progress = 0;
                self.progress.update(position(self));
            }
        }
        self.progress.update(position(self));
        self.progress.finish();
        Ok(())
    }

    fn on_finished(&mut self, query: u32) {
        let q = &self.world.queries()[query as usize];
        let Some(p) = q.probe else { return };
        let row = &mut self.probes[p as usize];
        match q.outcome {
            Outcome::Get { correct, .. } => {
                row.finished += 1;
                row.retrieved += u32::from(correct);
            }
            Outcome::Aborted | Outcome::Pending => {}
            _ => row.finished += 1,
        }
    }

    fn honest_node(&mut self, not: Option<u32>) -> Result<u32, SimError> {
        let pick = match not {
            Some(n) => self
                .world
                .joined_honest()
                .pick_other(&mut self.rng_nodes, n),
            None => self.world.joined_honest().pick(&mut self.rng_nodes),
        };
        pick.or_else(|| self.world.joined_honest().pick(&mut self.rng_nodes))
            .ok_or(SimError::NoHonestNode)
    }

    fn act(&mut self, action: Action) -> Result<(), SimError> {
        match action {
            Action::Join(node) => self.world.join(node),
            Action::ChurnJoin => {
                let bad = self.rng_churn.gen::<f64>() < self.scenario.adversary_fraction;
                let behaviour: Option<Behaviour> = bad.then_some(self.scenario.adversary);
                let node = self.world.add_node(behaviour);
                self.world.join(node);
                let now = self.world.now();
                if let Some(at) = self.next_arrival(now, self.scenario.join_rate) {
                    self.world.schedule(at, Action::ChurnJoin);
                }
            }
            Action::ChurnLeave => {
                // Keep at least two honest nodes so probes have somewhere to start.
                if let Some(node) = self.world.alive().pick(&mut self.rng_churn) {
                    let crash = self.rng_churn.gen::<f64>() < self.scenario.crash_fraction;
                    let honest = self.world.joined_honest();
                    if !(honest.contains(node) && honest.len() <= 2) {
                        self.world.depart(node, crash);
                    }
                }
                let now = self.world.now();
                if let Some(at) = self.next_arrival(now, self.scenario.leave_rate) {
                    self.world.schedule(at, Action::ChurnLeave);
                }
            }
            Action::Put(r) => {
                let node = self.honest_node(None)?;
                let rec = &mut self.records[r as usize];
                rec.writer = node;
                let (key, value) = (rec.key, rec.value.clone());
                let query = self.world.start_put(node, key, value);
                self.records[r as usize].put_query = query;
            }
            Action::Get(r) => {
                let writer = self.records[r as usize].writer;
                let node = self.honest_node(Some(writer))?;
                let rec = &self.records[r as usize];
                let (key, value) = (rec.key, rec.value.clone());
                self.world.start_get(node, key, value, None);
            }
            Action::Lookup => {
                let node = self.honest_node(None)?;
                let target = Key(self.rng_keys.gen());
                self.world.start_lookup(node, target);
            }
            Action::Probe(p) => {
                let stored: Vec<usize> = (0..self.records.len())
                    .filter(|&i| self.records[i].stored)
                    .collect();
                let amount = self.scenario.probe_sample.min(stored.len());
                let picks = rand::seq::index::sample(&mut self.rng_keys, stored.len(), amount);
                self.probes.push(ProbeRow {
                    at: self.world.now().saturating_sub(self.churn_start),
                    alive: self.world.alive().len(),
                    started: 0,
                    finished: 0,
                    retrieved: 0,
                });
                for i in picks {
                    let rec = &self.records[stored[i]];
                    let (key, value) = (rec.key, rec.value.clone());
                    let node = self.honest_node(None)?;
                    if self.world.start_get(node, key, value, Some(p)).is_some() {
                        self.probes[p as usize].started += 1;
                    }
                }
            }
        }
        Ok(())
    }
}
