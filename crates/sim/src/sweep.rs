//! Sweeps: one scenario run over adversary behaviours, adversary fractions and numbers of
//! disjoint paths, to show how lookups hold up under attack (issue 5: d = 1 against the
//! default d = 3).
//!
//! Every point is a full, deterministic run ([`crate::run`]) of the base scenario with
//! three knobs changed; the seed stays the same, so all points share the network's ids,
//! the keys and who starts each operation (common random numbers), and differ only in who
//! is adversarial and in how lookups run. A fraction of 0 has no adversary, so it is run
//! once per `d` and shared by every behaviour's line.
//!
//! ```text
//! voidmesh sim --nodes 2000 --records 1000 --lookups 1000 \
//!     --sweep-adversaries fake-near-contacts,far-contacts,wrong-values \
//!     --sweep-fractions 0,0.1,0.2,0.3 --sweep-disjoint-paths 1,3 --out sweep
//! ```
//! writes `sweep.csv` (one row per point, see [`csv`]) and `sweep.svg` (GET and FIND_NODE
//! success against the adversary share, one line per behaviour and `d`).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::adversary::Behaviour;
use crate::metrics::{kind_stats, round4};
use crate::progress::NoProgress;
use crate::scenario::{Scenario, ScenarioError};
use crate::tracking::QueryKind;
use crate::{RunOutput, SimError};

/// What to sweep over; everything else comes from `base`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sweep {
    /// The scenario every point starts from.
    pub base: Scenario,
    /// Adversary behaviours, one line each.
    pub behaviours: Vec<Behaviour>,
    /// Shares of adversarial nodes (0 = an honest network).
    pub fractions: Vec<f64>,
    /// Numbers of disjoint paths.
    pub disjoint_paths: Vec<usize>,
}

/// The figures of one point of a sweep. Holds no wall time, so two sweeps with the same
/// seed give equal points.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepPoint {
    /// The adversaries' behaviour; `None` for an honest network (fraction 0).
    pub behaviour: Option<Behaviour>,
    /// Share of adversarial nodes.
    pub fraction: f64,
    /// Disjoint paths of every lookup.
    pub disjoint_paths: usize,
    /// Holders a GET heard from.
    pub read_quorum: usize,
    /// GETs that finished.
    pub gets: usize,
    /// GETs that returned the value that was put.
    pub gets_ok: usize,
    /// Mean requests per GET.
    pub get_requests_mean: f64,
    /// Median GET latency, virtual ms.
    pub get_p50_ms: f64,
    /// FIND_NODE lookups that finished.
    pub lookups: usize,
    /// Lookups that found the honest node nearest the target.
    pub lookups_ok: usize,
    /// Mean share of the true k closest (answering) nodes a lookup returned.
    pub lookup_overlap: f64,
    /// Mean requests per lookup.
    pub lookup_requests_mean: f64,
    /// PUTs that stored the record on at least one remote node.
    pub puts_ok: usize,
    /// PUTs that finished.
    pub puts: usize,
}

impl SweepPoint {
    /// The figures of one finished run.
    pub fn from_run(out: &RunOutput, behaviour: Option<Behaviour>) -> Self {
        let get = kind_stats(&out.queries, QueryKind::Get);
        let lookup = kind_stats(&out.queries, QueryKind::Lookup);
        let put = kind_stats(&out.queries, QueryKind::Put);
        SweepPoint {
            behaviour,
            fraction: out.scenario.adversary_fraction,
            disjoint_paths: out.scenario.disjoint_paths,
            read_quorum: out.scenario.read_quorum,
            gets: get.count,
            gets_ok: get.ok,
            get_requests_mean: get.requests_mean,
            get_p50_ms: get.latency_at(50.0),
            lookups: lookup.count,
            lookups_ok: lookup.ok,
            lookup_overlap: lookup.overlap,
            lookup_requests_mean: lookup.requests_mean,
            puts_ok: put.ok,
            puts: put.count,
        }
    }

    /// GET success in percent (100 when there were no GETs).
    pub fn get_success_pct(&self) -> f64 {
        pct(self.gets_ok, self.gets)
    }

    /// FIND_NODE success in percent (100 when there were no lookups).
    pub fn lookup_success_pct(&self) -> f64 {
        pct(self.lookups_ok, self.lookups)
    }

    /// The behaviour's name, or `none`.
    pub fn behaviour_name(&self) -> &'static str {
        self.behaviour.map_or("none", Behaviour::name)
    }
}

fn pct(ok: usize, n: usize) -> f64 {
    if n == 0 {
        100.0
    } else {
        100.0 * ok as f64 / n as f64
    }
}

impl Sweep {
    /// The points to run, in order: for each `d`, the honest network (if a fraction is
    /// 0), then each behaviour at each non-zero fraction.
    ///
    /// # Errors
    /// A resulting scenario that does not validate, or an empty list.
    pub fn scenarios(&self) -> Result<Vec<(Option<Behaviour>, Scenario)>, ScenarioError> {
        let empty = |key: &str| ScenarioError::BadValue {
            key: key.to_string(),
            value: String::new(),
            reason: "at least one value".to_string(),
        };
        if self.behaviours.is_empty() {
            return Err(empty("sweep-adversaries"));
        }
        if self.fractions.is_empty() {
            return Err(empty("sweep-fractions"));
        }
        if self.disjoint_paths.is_empty() {
            return Err(empty("sweep-disjoint-paths"));
        }
        let mut out = Vec::new();
        for &d in &self.disjoint_paths {
            if self.fractions.contains(&0.0) {
                let s = Scenario {
                    disjoint_paths: d,
                    adversary_fraction: 0.0,
                    ..self.base.clone()
                };
                s.validate()?;
                out.push((None, s));
            }
            for &b in &self.behaviours {
                for &f in self.fractions.iter().filter(|&&f| f != 0.0) {
                    let s = Scenario {
                        disjoint_paths: d,
                        adversary: b,
                        adversary_fraction: f,
                        ..self.base.clone()
                    };
                    s.validate()?;
                    out.push((Some(b), s));
                }
            }
        }
        Ok(out)
    }

    /// Runs every point; `done` hears of each as it finishes, with its wall time.
    ///
    /// # Errors
    /// An invalid scenario, or a run that fails.
    pub fn run(
        &self,
        done: &mut dyn FnMut(&SweepPoint, Duration),
    ) -> Result<Vec<SweepPoint>, SimError> {
        let mut points = Vec::new();
        for (behaviour, scenario) in self.scenarios()? {
            let started = Instant::now();
            let out = crate::run(&scenario, &mut NoProgress)?;
            let point = SweepPoint::from_run(&out, behaviour);
            done(&point, started.elapsed());
            points.push(point);
        }
        Ok(points)
    }
}

/// The points as CSV: `nodes,behaviour,adversaries_pct,d,read_quorum,gets,get_success_pct,
/// get_requests_mean,get_p50_ms,lookups,lookup_success_pct,lookup_k_overlap,
/// lookup_requests_mean,puts_ok_pct`.
pub fn csv(nodes: usize, points: &[SweepPoint]) -> String {
    let mut out = String::from(
        "nodes,behaviour,adversaries_pct,d,read_quorum,gets,get_success_pct,get_requests_mean,\
         get_p50_ms,lookups,lookup_success_pct,lookup_k_overlap,lookup_requests_mean,puts_ok_pct\n",
    );
    for p in points {
        out.push_str(&format!(
            "{nodes},{},{},{},{},{},{:.1},{:.1},{:.0},{},{:.1},{:.3},{:.1},{:.1}\n",
            p.behaviour_name(),
            round4(p.fraction * 100.0),
            p.disjoint_paths,
            p.read_quorum,
            p.gets,
            p.get_success_pct(),
            p.get_requests_mean,
            p.get_p50_ms,
            p.lookups,
            p.lookup_success_pct(),
            p.lookup_overlap,
            p.lookup_requests_mean,
            pct(p.puts_ok, p.puts),
        ));
    }
    out
}

/// Writes `sweep.csv`, `scenario.ini` (the base scenario) and, with `charts`, `sweep.svg`
/// into `dir`.
///
/// # Errors
/// When the directory or a file cannot be written.
pub fn write(dir: &Path, sweep: &Sweep, points: &[SweepPoint], charts: bool) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let file = |name: &str| dir.join(name);
    std::fs::write(file("sweep.csv"), csv(sweep.base.nodes, points))
        .with_context(|| format!("writing {}", file("sweep.csv").display()))?;
    std::fs::write(file("scenario.ini"), sweep.base.to_ini())
        .with_context(|| format!("writing {}", file("scenario.ini").display()))?;
    if charts {
        let title = format!(
            "Lookups under attack, {} nodes: d = {}",
            sweep.base.nodes,
            sweep
                .disjoint_paths
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(" vs ")
        );
        crate::chart::sweep(&file("sweep.svg"), &title, points)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_honest_point_per_d_then_every_behaviour_and_fraction() {
        let sweep = Sweep {
            base: Scenario::default(),
            behaviours: vec![Behaviour::FakeNearContacts, Behaviour::WrongValues],
            fractions: vec![0.0, 0.1, 0.3],
            disjoint_paths: vec![1, 3],
        };
        let points = sweep.scenarios().unwrap();
        assert_eq!(points.len(), 2 * (1 + 2 * 2));
        assert_eq!(points[0].0, None);
        assert_eq!(points[0].1.adversary_fraction, 0.0);
        assert_eq!(points[0].1.disjoint_paths, 1);
        assert_eq!(points[1].0, Some(Behaviour::FakeNearContacts));
        assert_eq!(points[1].1.adversary_fraction, 0.1);
        assert_eq!(points[5].1.disjoint_paths, 3);
        assert!(points.iter().all(|(_, s)| s.seed == sweep.base.seed));
    }

    #[test]
    fn empty_lists_and_bad_values_are_refused() {
        let sweep = Sweep {
            base: Scenario::default(),
            behaviours: vec![Behaviour::DropAll],
            fractions: vec![0.1],
            disjoint_paths: vec![],
        };
        assert!(sweep.scenarios().is_err());
        let sweep = Sweep {
            disjoint_paths: vec![0],
            ..sweep
        };
        assert!(sweep.scenarios().is_err());
        let sweep = Sweep {
            disjoint_paths: vec![1],
            fractions: vec![1.0],
            ..sweep
        };
        assert!(sweep.scenarios().is_err());
    }
}
