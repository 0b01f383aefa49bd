//! The `voidmesh sim` command: flags, progress bars, and the summary line.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::adversary::Behaviour;
use crate::metrics::round4;
use crate::progress::Progress;
use crate::scenario::{JoinMode, Scenario};
use crate::sweep::Sweep;

/// Simulate a voidmesh network of many nodes in virtual time, driving the real Kademlia
/// state machine. Writes CSV files, SVG charts and `summary.json` into `--out` and prints
/// the summary as one JSON line. Flags override `--scenario`, which overrides defaults.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SimArgs {
    /// Scenario file (INI, keys = these flags' long names, e.g. `nodes = 10000`).
    #[arg(long, value_name = "FILE")]
    pub scenario: Option<PathBuf>,
    /// Directory for the CSV files, charts and summary.
    #[arg(long, short = 'o', default_value = "sim-out", value_name = "DIR")]
    pub out: PathBuf,
    /// Seed of every random choice [default: 1].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Network size [default: 1000].
    #[arg(long, short = 'n')]
    pub nodes: Option<usize>,
    /// Lookups of random keys from random honest nodes [default: 1000].
    #[arg(long)]
    pub lookups: Option<usize>,
    /// Records to PUT (each then fetched once with GET) [default: 100].
    #[arg(long)]
    pub records: Option<usize>,
    /// Bytes per record value [default: 128].
    #[arg(long)]
    pub value_size: Option<usize>,
    /// Replication asked for in each PUT [default: 20].
    #[arg(long)]
    pub replication: Option<u8>,
    /// Kademlia k [default: 20].
    #[arg(long)]
    pub k: Option<usize>,
    /// Kademlia alpha [default: 3].
    #[arg(long)]
    pub alpha: Option<usize>,
    /// Per-request timeout of the lookups, ms [default: 1000].
    #[arg(long)]
    pub request_timeout_ms: Option<u64>,
    /// Transport's hard limit per request, ms [default: 2 × request timeout].
    #[arg(long)]
    pub transport_timeout_ms: Option<u64>,
    /// Bound on a whole operation, ms [default: 10000].
    #[arg(long)]
    pub query_timeout_ms: Option<u64>,
    /// Record republish interval, s [default: 3600].
    #[arg(long)]
    pub republish_interval_s: Option<f64>,
    /// Bucket refresh interval, s [default: 3600].
    #[arg(long)]
    pub refresh_interval_s: Option<f64>,
    /// Disjoint paths of every lookup (S/Kademlia's d) [default: 3].
    #[arg(long, value_name = "D")]
    pub disjoint_paths: Option<usize>,
    /// Holders a GET hears from before it ends; the newest value wins [default: 3].
    #[arg(long, value_name = "Q")]
    pub read_quorum: Option<usize>,
    /// How nodes join [default: seeded].
    #[arg(long, value_enum)]
    pub join: Option<JoinMode>,
    /// Random joined nodes a newcomer is pre-seeded with [default: 8].
    #[arg(long)]
    pub join_seeds: Option<usize>,
    /// Virtual time between joins while building, ms [default: 10].
    #[arg(long)]
    pub join_interval_ms: Option<u64>,
    /// Virtual time between operation starts, ms [default: 10].
    #[arg(long)]
    pub op_interval_ms: Option<u64>,
    /// Length of the churn phase, virtual s [default: 0 = none].
    #[arg(long)]
    pub churn_duration_s: Option<f64>,
    /// Joins per virtual second during churn [default: 0].
    #[arg(long)]
    pub join_rate: Option<f64>,
    /// Departures per virtual second during churn [default: 0].
    #[arg(long)]
    pub leave_rate: Option<f64>,
    /// Share of departures that are crashes rather than graceful [default: 0.5].
    #[arg(long)]
    pub crash_fraction: Option<f64>,
    /// Virtual time between retrievability probes, s [default: 60].
    #[arg(long)]
    pub probe_interval_s: Option<f64>,
    /// Records fetched per probe [default: 100].
    #[arg(long)]
    pub probe_sample: Option<usize>,
    /// Share of adversarial nodes [default: 0].
    #[arg(long)]
    pub adversary_fraction: Option<f64>,
    /// What adversarial nodes do [default: drop-all].
    #[arg(long, value_enum)]
    pub adversary: Option<Behaviour>,
    /// Link latency: constant:MS, uniform:MIN:MAX or lognormal:MEDIAN:SIGMA
    /// [default: lognormal:40:0.5].
    #[arg(long)]
    pub latency: Option<String>,
    /// Per-message jitter as a share of the link latency [default: 0.1].
    #[arg(long)]
    pub jitter: Option<f64>,
    /// Probability that a message is lost [default: 0].
    #[arg(long)]
    pub loss: Option<f64>,
    /// Do not encode messages to count bytes (faster on huge runs).
    #[arg(long)]
    pub no_bytes: bool,
    /// Fail after this many events (0 = no cap) [default: 0].
    #[arg(long)]
    pub max_events: Option<u64>,
    /// Skip the Kademlia phases (e.g. for a gossip-only run).
    #[arg(long)]
    pub no_kad: bool,
    /// Gossip items to spread in a gossip run over the same network model [default: 0].
    #[arg(long)]
    pub gossip_items: Option<usize>,
    /// Gossip degree [default: 30].
    #[arg(long)]
    pub gossip_degree: Option<usize>,
    /// Proof-of-work bits for gossip joins [default: 8].
    #[arg(long)]
    pub gossip_pow_bits: Option<u8>,
    /// Virtual time for the gossip views to form after the last join, s [default: 60].
    #[arg(long)]
    pub gossip_warmup_s: Option<f64>,
    /// Virtual time after the last item before coverage is measured, s [default: 30].
    #[arg(long)]
    pub gossip_settle_s: Option<f64>,
    /// Bytes per gossip item [default: 64].
    #[arg(long)]
    pub gossip_item_size: Option<usize>,
    /// Sweep instead of one run: one run per adversary behaviour in this comma-separated
    /// list, per `--sweep-fractions` and per `--sweep-disjoint-paths` (the other flags set
    /// everything else). Writes `sweep.csv` and the chart `sweep.svg` into `--out`.
    #[arg(long, value_enum, value_delimiter = ',', value_name = "LIST")]
    pub sweep_adversaries: Vec<Behaviour>,
    /// Adversary fractions of a sweep, comma-separated [default: 0,0.1,0.2,0.3].
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    pub sweep_fractions: Vec<f64>,
    /// Disjoint paths (d) of a sweep, comma-separated [default: 1,3].
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    pub sweep_disjoint_paths: Vec<usize>,
    /// Skip drawing the SVG charts.
    #[arg(long)]
    pub no_charts: bool,
    /// No progress bars.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

impl SimArgs {
    /// The scenario these arguments describe: defaults, then the file, then the flags.
    ///
    /// # Errors
    /// An unreadable scenario file, or a value that does not parse or fit.
    pub fn to_scenario(&self) -> Result<Scenario> {
        let mut s = Scenario::default();
        if let Some(path) = &self.scenario {
            s.apply_file(path)?;
        }
        let flags: [(&str, Option<String>); 39] = [
            ("seed", self.seed.map(|v| v.to_string())),
            ("nodes", self.nodes.map(|v| v.to_string())),
            ("lookups", self.lookups.map(|v| v.to_string())),
            ("records", self.records.map(|v| v.to_string())),
            ("value-size", self.value_size.map(|v| v.to_string())),
            ("replication", self.replication.map(|v| v.to_string())),
            ("k", self.k.map(|v| v.to_string())),
            ("alpha", self.alpha.map(|v| v.to_string())),
            (
                "request-timeout-ms",
                self.request_timeout_ms.map(|v| v.to_string()),
            ),
            (
                "transport-timeout-ms",
                self.transport_timeout_ms.map(|v| v.to_string()),
            ),
            (
                "query-timeout-ms",
                self.query_timeout_ms.map(|v| v.to_string()),
            ),
            (
                "republish-interval-s",
                self.republish_interval_s.map(|v| v.to_string()),
            ),
            (
                "refresh-interval-s",
                self.refresh_interval_s.map(|v| v.to_string()),
            ),
            ("disjoint-paths", self.disjoint_paths.map(|v| v.to_string())),
            ("read-quorum", self.read_quorum.map(|v| v.to_string())),
            ("join", self.join.map(|v| v.name().to_string())),
            ("join-seeds", self.join_seeds.map(|v| v.to_string())),
            (
                "join-interval-ms",
                self.join_interval_ms.map(|v| v.to_string()),
            ),
            ("op-interval-ms", self.op_interval_ms.map(|v| v.to_string())),
            (
                "churn-duration-s",
                self.churn_duration_s.map(|v| v.to_string()),
            ),
            ("join-rate", self.join_rate.map(|v| v.to_string())),
            ("leave-rate", self.leave_rate.map(|v| v.to_string())),
            ("crash-fraction", self.crash_fraction.map(|v| v.to_string())),
            (
                "probe-interval-s",
                self.probe_interval_s.map(|v| v.to_string()),
            ),
            ("probe-sample", self.probe_sample.map(|v| v.to_string())),
            (
                "adversary-fraction",
                self.adversary_fraction.map(|v| v.to_string()),
            ),
            ("adversary", self.adversary.map(|v| v.name().to_string())),
            ("latency", self.latency.clone()),
            ("jitter", self.jitter.map(|v| v.to_string())),
            ("loss", self.loss.map(|v| v.to_string())),
            ("measure-bytes", self.no_bytes.then(|| "false".to_string())),
            ("max-events", self.max_events.map(|v| v.to_string())),
            ("kad", self.no_kad.then(|| "false".to_string())),
            ("gossip-items", self.gossip_items.map(|v| v.to_string())),
            ("gossip-degree", self.gossip_degree.map(|v| v.to_string())),
            (
                "gossip-pow-bits",
                self.gossip_pow_bits.map(|v| v.to_string()),
            ),
            (
                "gossip-warmup-s",
                self.gossip_warmup_s.map(|v| v.to_string()),
            ),
            (
                "gossip-settle-s",
                self.gossip_settle_s.map(|v| v.to_string()),
            ),
            (
                "gossip-item-size",
                self.gossip_item_size.map(|v| v.to_string()),
            ),
        ];
        for (key, value) in flags {
            if let Some(value) = value {
                s.set(key, &value)?;
            }
        }
        s.validate()?;
        Ok(s)
    }
}

/// Runs `voidmesh sim`: simulates, writes the output directory, prints the summary line.
///
/// # Errors
/// A bad scenario, a simulation that livelocks or does not finish, or an unwritable
/// output directory.
pub fn run_cli(args: SimArgs) -> Result<()> {
    let scenario = args.to_scenario()?;
    if let Some(sweep) = args.to_sweep(&scenario)? {
        return run_sweep(&args, &sweep);
    }
    let mut bars = Bars::new(args.quiet);
    let started = Instant::now();
    let output = crate::run(&scenario, &mut bars).context("simulation failed")?;
    let sim_wall = started.elapsed();
    let mut summary = crate::report::write(&args.out, &output, !args.no_charts)?;
    let timing = serde_json::json!({
        "sim_wall_s": round4(sim_wall.as_secs_f64()),
        "total_wall_s": round4(started.elapsed().as_secs_f64()),
        "peak_rss_mb": peak_rss_mb().map(round4),
        "events_per_s": round4(output.counters.events as f64 / sim_wall.max(Duration::from_micros(1)).as_secs_f64()),
    });
    std::fs::write(args.out.join("timing.json"), format!("{timing}\n"))
        .with_context(|| format!("writing {}", args.out.join("timing.json").display()))?;
    if let (Some(map), Some(t)) = (summary.as_object_mut(), timing.as_object()) {
        for (k, v) in t {
            map.insert(k.clone(), v.clone());
        }
        map.insert("out".into(), args.out.display().to_string().into());
    }
    println!("{summary}");
    Ok(())
}

impl SimArgs {
    /// The sweep the `--sweep-*` flags ask for around `base`, or `None` without
    /// `--sweep-adversaries`.
    ///
    /// # Errors
    /// `--sweep-fractions` or `--sweep-disjoint-paths` without `--sweep-adversaries`.
    pub fn to_sweep(&self, base: &Scenario) -> Result<Option<Sweep>> {
        if self.sweep_adversaries.is_empty() {
            if !self.sweep_fractions.is_empty() || !self.sweep_disjoint_paths.is_empty() {
                anyhow::bail!("a sweep needs --sweep-adversaries");
            }
            return Ok(None);
        }
        let or = |given: &[f64], default: &[f64]| {
            if given.is_empty() {
                default.to_vec()
            } else {
                given.to_vec()
            }
        };
        Ok(Some(Sweep {
            base: base.clone(),
            behaviours: self.sweep_adversaries.clone(),
            fractions: or(&self.sweep_fractions, &[0.0, 0.1, 0.2, 0.3]),
            disjoint_paths: if self.sweep_disjoint_paths.is_empty() {
                vec![1, 3]
            } else {
                self.sweep_disjoint_paths.clone()
            },
        }))
    }
}

/// Runs a sweep: one JSON line per point as it finishes, then `sweep.csv` and `sweep.svg`
/// in `--out` and a last line naming them.
fn run_sweep(args: &SimArgs, sweep: &Sweep) -> Result<()> {
    let total = sweep.scenarios()?.len();
    let started = Instant::now();
    let mut n = 0;
    let points = sweep
        .run(&mut |p, wall| {
            n += 1;
            if !args.quiet {
                eprintln!(
                    "sweep {n}/{total}: {} {} % d = {}: GET {:.1} %, FIND_NODE {:.1} % ({:.1} s)",
                    p.behaviour_name(),
                    round4(p.fraction * 100.0),
                    p.disjoint_paths,
                    p.get_success_pct(),
                    p.lookup_success_pct(),
                    wall.as_secs_f64()
                );
            }
            let line = serde_json::json!({
                "sweep_point": n,
                "behaviour": p.behaviour_name(),
                "adversary_fraction": p.fraction,
                "disjoint_paths": p.disjoint_paths,
                "read_quorum": p.read_quorum,
                "gets": p.gets,
                "get_success_pct": round4(p.get_success_pct()),
                "get_requests_mean": round4(p.get_requests_mean),
                "lookups": p.lookups,
                "lookup_success_pct": round4(p.lookup_success_pct()),
                "lookup_k_overlap": round4(p.lookup_overlap),
                "wall_s": round4(wall.as_secs_f64()),
            });
            println!("{line}");
        })
        .context("sweep failed")?;
    crate::sweep::write(&args.out, sweep, &points, !args.no_charts)?;
    let line = serde_json::json!({
        "sweep_points": points.len(),
        "csv": args.out.join("sweep.csv").display().to_string(),
        "chart": (!args.no_charts).then(|| args.out.join("sweep.svg").display().to_string()),
        "total_wall_s": round4(started.elapsed().as_secs_f64()),
        "peak_rss_mb": peak_rss_mb().map(round4),
    });
    println!("{line}");
    Ok(())
}

/// The process's peak resident set (VmHWM) in MB, on Linux.
pub fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// indicatif bars on stderr; hidden when stderr is not a terminal or `--quiet`.
struct Bars {
    /// Draw nothing at all.
    hidden: bool,
    /// The current phase's bar.
    bar: Option<ProgressBar>,
}

impl Bars {
    fn new(quiet: bool) -> Self {
        Bars {
            hidden: quiet || !std::io::stderr().is_terminal(),
            bar: None,
        }
    }
}

impl Progress for Bars {
    fn phase(&mut self, name: &'static str, total: u64) {
        let target = if self.hidden {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        };
        let bar = ProgressBar::with_draw_target(Some(total), target);
        let style = ProgressStyle::with_template(
            "{prefix:>7} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} (eta {eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar.set_prefix(name);
        self.bar = Some(bar);
    }

    fn update(&mut self, position: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(position);
        }
    }

    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cmd {
        #[command(flatten)]
        sim: SimArgs,
    }

    #[test]
    fn flags_override_defaults() {
        let cmd = Cmd::parse_from([
            "sim",
            "--nodes",
            "300",
            "--adversary",
            "fake-contacts",
            "--adversary-fraction",
            "0.2",
            "--latency",
            "constant:5",
            "--join",
            "fast",
            "--no-bytes",
        ]);
        let s = cmd.sim.to_scenario().unwrap();
        assert_eq!(s.nodes, 300);
        assert_eq!(s.adversary, Behaviour::FakeContacts);
        assert_eq!(s.adversary_fraction, 0.2);
        assert_eq!(s.join, JoinMode::Fast);
        assert!(!s.measure_bytes);
        assert_eq!(s.latency.to_string(), "constant:5");
    }

    #[test]
    fn sweep_flags_make_a_sweep() {
        let cmd = Cmd::parse_from([
            "sim",
            "--disjoint-paths",
            "2",
            "--read-quorum",
            "1",
            "--sweep-adversaries",
            "fake-near-contacts,wrong-values",
            "--sweep-fractions",
            "0,0.2",
        ]);
        let s = cmd.sim.to_scenario().unwrap();
        assert_eq!((s.disjoint_paths, s.read_quorum), (2, 1));
        let sweep = cmd.sim.to_sweep(&s).unwrap().unwrap();
        assert_eq!(
            sweep.behaviours,
            [Behaviour::FakeNearContacts, Behaviour::WrongValues]
        );
        assert_eq!(sweep.fractions, [0.0, 0.2]);
        assert_eq!(sweep.disjoint_paths, [1, 3]);
        let cmd = Cmd::parse_from(["sim", "--sweep-fractions", "0.1"]);
        assert!(cmd.sim.to_sweep(&s).is_err());
        let cmd = Cmd::parse_from(["sim"]);
        assert!(cmd.sim.to_sweep(&s).unwrap().is_none());
    }

    #[test]
    fn bad_flag_values_are_errors() {
        let cmd = Cmd::parse_from(["sim", "--latency", "sometimes"]);
        assert!(cmd.sim.to_scenario().is_err());
        let cmd = Cmd::parse_from(["sim", "--loss", "2"]);
        assert!(cmd.sim.to_scenario().is_err());
    }
}
