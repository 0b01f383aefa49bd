//! Writes a run's results: CSV files, the scenario, the summary and the charts.
//!
//! # Files
//! | file | one row per |
//! |---|---|
//! | `summary.json` | the run (the same line is printed on stdout) |
//! | `scenario.ini` | the effective scenario; `--scenario` on it reproduces the run |
//! | `queries.csv` | measured operation (lookup, put, get, probe) |
//! | `hops.csv` | hop count, with the number of lookups/gets/probes that took it |
//! | `messages.csv` | request count, with the number of lookups/gets/probes that sent it |
//! | `latency.csv` | percentile of virtual latency, per kind |
//! | `retrievability.csv` | probe round during churn |
//! | `phases.csv` | phase, with its virtual start and end |
//! | `gossip.csv` | gossip item: coverage, messages, time to 50/95/100 % |
//! | `gossip_spread.csv` | instant after announcement, with the mean coverage then |
//!
//! Charts (SVG): `hops.svg`, `messages.svg`, `latency.svg`, `retrievability.svg`,
//! `gossip.svg`.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;

use anyhow::{Context, Result};
use serde_json::Value;

use crate::chart;
use crate::gossip::GossipOutput;
use crate::metrics::{kind_stats, summary, KindStats, PERCENTILES};
use crate::tracking::{Outcome, QueryKind};
use crate::RunOutput;

/// The kinds that go into the per-kind tables, in column order.
const KINDS: [QueryKind; 3] = [QueryKind::Lookup, QueryKind::Get, QueryKind::Probe];

/// Writes every output file into `dir` (created if missing); returns the summary.
///
/// # Errors
/// When a file cannot be written or a chart cannot be drawn.
pub fn write(dir: &Path, out: &RunOutput, charts: bool) -> Result<Value> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let save = |name: &str, text: String| -> Result<()> {
        let path = dir.join(name);
        fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
    };
    let stats: Vec<KindStats> = KINDS.iter().map(|&k| kind_stats(&out.queries, k)).collect();
    let summary = summary(out);
    save("summary.json", format!("{summary}\n"))?;
    save("scenario.ini", out.scenario.to_ini())?;
    save("queries.csv", queries_csv(out))?;
    save("hops.csv", histogram_csv("hops", &stats, |s| &s.hops))?;
    save(
        "messages.csv",
        histogram_csv("requests", &stats, |s| &s.requests),
    )?;
    save("latency.csv", latency_csv(&stats))?;
    save("retrievability.csv", retrievability_csv(out))?;
    save("phases.csv", phases_csv(out))?;
    if let Some(g) = &out.gossip {
        save("gossip.csv", gossip_csv(g))?;
        save("gossip_spread.csv", spread_csv(g))?;
    }
    if charts {
        chart::all(dir, out, &stats)?;
    }
    Ok(summary)
}

fn queries_csv(out: &RunOutput) -> String {
    let mut s = String::from(
        "index,kind,node,start_ms,latency_ms,requests,stores,bytes,hops,rounds,ok,found_closest,k_overlap,value_found,stored_remote\n",
    );
    for (i, q) in out.queries.iter().enumerate() {
        let (ok, closest, overlap, found, stored) = match q.outcome {
            Outcome::Pending | Outcome::Aborted => continue,
            Outcome::Lookup {
                found_closest,
                overlap,
                ..
            } => (
                found_closest,
                found_closest.to_string(),
                overlap.to_string(),
                String::new(),
                String::new(),
            ),
            Outcome::Get { found, correct } => (
                correct,
                String::new(),
                String::new(),
                found.to_string(),
                String::new(),
            ),
            Outcome::Put { stored_remote, .. } => (
                stored_remote > 0,
                String::new(),
                String::new(),
                String::new(),
                stored_remote.to_string(),
            ),
        };
        let latency = q.latency().map_or(0.0, |l| l.as_secs_f64() * 1000.0);
        let hops = q.hops.map_or(String::new(), |h| h.to_string());
        let _ = writeln!(
            s,
            "{i},{},{},{:.3},{:.3},{},{},{},{hops},{},{ok},{closest},{overlap},{found},{stored}",
            q.kind.name(),
            q.node,
            q.started.as_secs_f64() * 1000.0,
            latency,
            q.requests,
            q.stores,
            q.bytes,
            q.rounds,
        );
    }
    s
}

fn histogram_csv(
    unit: &str,
    stats: &[KindStats],
    hist: impl Fn(&KindStats) -> &Vec<u64>,
) -> String {
    let mut s = format!("{unit},lookup,get,probe\n");
    let len = stats.iter().map(|k| hist(k).len()).max().unwrap_or(0);
    for i in 0..len {
        let _ = write!(s, "{i}");
        for k in stats {
            let _ = write!(s, ",{}", hist(k).get(i).copied().unwrap_or(0));
        }
        s.push('\n');
    }
    s
}

fn latency_csv(stats: &[KindStats]) -> String {
    let mut s = String::from("percentile,lookup_ms,get_ms,probe_ms\n");
    for p in PERCENTILES {
        let _ = write!(s, "{p}");
        for k in stats {
            let _ = write!(s, ",{:.3}", k.latency_at(p));
        }
        s.push('\n');
    }
    s
}

fn retrievability_csv(out: &RunOutput) -> String {
    let mut s = String::from("t_s,alive,started,finished,retrieved,fraction\n");
    for p in &out.probes {
        let fraction = if p.finished == 0 {
            0.0
        } else {
            f64::from(p.retrieved) / f64::from(p.finished)
        };
        let _ = writeln!(
            s,
            "{:.3},{},{},{},{},{:.4}",
            p.at.as_secs_f64(),
            p.alive,
            p.started,
            p.finished,
            p.retrieved,
            fraction
        );
    }
    s
}

fn phases_csv(out: &RunOutput) -> String {
    let mut s = String::from("phase,start_s,end_s\n");
    for p in &out.phases {
        let _ = writeln!(
            s,
            "{},{:.3},{:.3}",
            p.name,
            p.start.as_secs_f64(),
            p.end.as_secs_f64()
        );
    }
    s
}

fn gossip_csv(g: &GossipOutput) -> String {
    let ms = |d: Option<std::time::Duration>| {
        d.map_or(String::new(), |d| {
            format!("{:.3}", d.as_secs_f64() * 1000.0)
        })
    };
    let mut s = String::from(
        "item,origin,announced_s,alive,reached,coverage,messages,t50_ms,t95_ms,t100_ms\n",
    );
    for (i, item) in g.items.iter().enumerate() {
        let _ = writeln!(
            s,
            "{i},{},{:.3},{},{},{:.4},{},{},{},{}",
            item.origin,
            item.announced.as_secs_f64(),
            item.alive,
            item.deliveries.len(),
            item.coverage(),
            item.messages,
            ms(item.time_to(0.5)),
            ms(item.time_to(0.95)),
            ms(item.time_to(1.0)),
        );
    }
    s
}

/// Points of the mean coverage curve: 100 steps up to the last delivery.
pub fn spread_points(g: &GossipOutput) -> Vec<(f64, f64)> {
    let end = g.last_delivery().max(std::time::Duration::from_millis(1));
    (0..=100)
        .map(|i| {
            let t = end.mul_f64(f64::from(i) / 100.0);
            (t.as_secs_f64() * 1000.0, g.coverage_at(t))
        })
        .collect()
}

fn spread_csv(g: &GossipOutput) -> String {
    let mut s = String::from("t_ms,mean_coverage\n");
    for (t, c) in spread_points(g) {
        let _ = writeln!(s, "{t:.3},{c:.4}");
    }
    s
}
