//! Turns a run's raw records into figures: rates, means, histograms and percentiles.
//!
//! Everything here is a pure function of [`RunOutput`], so two runs with the same seed
//! give the same figures to the last digit.

use hdrhistogram::Histogram;
use serde_json::{json, Value};

use crate::gossip::GossipOutput;
use crate::tracking::{Outcome, QueryKind, QueryRecord};
use crate::RunOutput;

/// Percentiles written to the latency distribution.
pub const PERCENTILES: [f64; 16] = [
    0.0, 1.0, 5.0, 10.0, 20.0, 25.0, 50.0, 75.0, 80.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.99, 100.0,
];

/// Figures about one kind of query.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KindStats {
    /// Queries of this kind that finished (aborted ones excluded).
    pub count: usize,
    /// Queries that succeeded (lookup: found the true closest node; GET: right value;
    /// PUT: stored on at least one remote node).
    pub ok: usize,
    /// Lookup only: mean fraction of the true k closest that were found.
    pub overlap: f64,
    /// GET only: queries that got some value, right or wrong.
    pub found: usize,
    /// Hop count per query that has one, index = hops.
    pub hops: Vec<u64>,
    /// Requests (FIND_*) per query, index = requests.
    pub requests: Vec<u64>,
    /// Mean requests per query.
    pub requests_mean: f64,
    /// Mean STOREs per query (PUT).
    pub stores_mean: f64,
    /// Mean bytes per query, both directions.
    pub bytes_mean: f64,
    /// Latency in virtual milliseconds at each of [`PERCENTILES`].
    pub latency_ms: Vec<(f64, f64)>,
}

impl KindStats {
    /// Share of successful queries (1.0 when there were none).
    pub fn ok_rate(&self) -> f64 {
        if self.count == 0 {
            1.0
        } else {
            self.ok as f64 / self.count as f64
        }
    }

    /// Mean hop count over the queries that have one.
    pub fn hops_mean(&self) -> f64 {
        let n: u64 = self.hops.iter().sum();
        if n == 0 {
            return 0.0;
        }
        let total: u64 = self
            .hops
            .iter()
            .enumerate()
            .map(|(h, c)| h as u64 * c)
            .sum();
        total as f64 / n as f64
    }

    /// The latency at percentile `p` (one of [`PERCENTILES`]).
    pub fn latency_at(&self, p: f64) -> f64 {
        self.latency_ms
            .iter()
            .find(|(q, _)| *q == p)
            .map_or(0.0, |(_, v)| *v)
    }
}

fn bump(hist: &mut Vec<u64>, at: usize) {
    if hist.len() <= at {
        hist.resize(at + 1, 0);
    }
    hist[at] += 1;
}

/// Computes the figures of all finished queries of `kind`.
pub fn kind_stats(queries: &[QueryRecord], kind: QueryKind) -> KindStats {
    let mut s = KindStats::default();
    // Microseconds, up to an hour, three significant digits.
    let mut latency = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).ok();
    let (mut overlap_sum, mut req_sum, mut store_sum, mut byte_sum) = (0.0, 0u64, 0u64, 0u64);
    for q in queries.iter().filter(|q| q.kind == kind) {
        let ok = match &q.outcome {
            Outcome::Pending | Outcome::Aborted => continue,
            Outcome::Lookup {
                found_closest,
                overlap,
                truth,
            } => {
                overlap_sum += if *truth == 0 {
                    1.0
                } else {
                    f64::from(*overlap) / f64::from(*truth)
                };
                *found_closest
            }
            Outcome::Get { found, correct } => {
                s.found += usize::from(*found);
                *correct
            }
            Outcome::Put { stored_remote, .. } => *stored_remote > 0,
        };
        s.count += 1;
        s.ok += usize::from(ok);
        if let Some(h) = q.hops {
            bump(&mut s.hops, h as usize);
        }
        bump(&mut s.requests, q.requests as usize);
        req_sum += u64::from(q.requests);
        store_sum += u64::from(q.stores);
        byte_sum += q.bytes;
        if let (Some(h), Some(l)) = (latency.as_mut(), q.latency()) {
            // Saturates at the histogram's top instead of failing.
            h.saturating_record((l.as_micros() as u64).max(1));
        }
    }
    if s.count > 0 {
        let n = s.count as f64;
        s.overlap = overlap_sum / n;
        s.requests_mean = req_sum as f64 / n;
        s.stores_mean = store_sum as f64 / n;
        s.bytes_mean = byte_sum as f64 / n;
    }
    s.latency_ms = PERCENTILES
        .iter()
        .copied()
        .map(|p| {
            let v = match latency.as_ref() {
                Some(h) if s.count > 0 => h.value_at_quantile(p / 100.0) as f64 / 1000.0,
                _ => 0.0,
            };
            (p, v)
        })
        .collect();
    s
}

/// Rounds to four decimals, so summaries stay readable.
pub fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

fn mean(v: &[usize]) -> f64 {
    if v.is_empty() {
        0.0
    } else {
        v.iter().sum::<usize>() as f64 / v.len() as f64
    }
}

/// Summary fields of a gossip run.
fn gossip_fields(g: &GossipOutput) -> Vec<(&'static str, Value)> {
    let n = g.items.len().max(1) as f64;
    let coverage: Vec<f64> = g.items.iter().map(|i| i.coverage()).collect();
    let msgs: u64 = g.items.iter().map(|i| i.messages).sum();
    let t95: Vec<f64> = g
        .items
        .iter()
        .filter_map(|i| i.time_to(0.95))
        .map(|d| d.as_secs_f64() * 1000.0)
        .collect();
    let reached95 = t95.len();
    let t95_mean = if t95.is_empty() {
        0.0
    } else {
        t95.iter().sum::<f64>() / t95.len() as f64
    };
    vec![
        ("gossip_items", json!(g.items.len())),
        (
            "gossip_coverage_mean",
            json!(round4(coverage.iter().sum::<f64>() / n)),
        ),
        (
            "gossip_coverage_min",
            json!(round4(coverage.iter().copied().fold(1.0, f64::min))),
        ),
        ("gossip_msgs_per_item", json!(round4(msgs as f64 / n))),
        ("gossip_items_reaching_95", json!(reached95)),
        ("gossip_t95_ms_mean", json!(round4(t95_mean))),
        ("gossip_view_mean", json!(round4(mean(&g.view_sizes)))),
        (
            "gossip_messages_total",
            json!(g.messages_by_type.iter().sum::<u64>()),
        ),
        ("gossip_disconnects", json!(g.disconnects)),
        ("gossip_events", json!(g.events)),
    ]
}

/// The one-line summary of a run, as JSON. Deterministic: holds no wall time.
pub fn summary(out: &RunOutput) -> Value {
    let s = &out.scenario;
    let lookup = kind_stats(&out.queries, QueryKind::Lookup);
    let get = kind_stats(&out.queries, QueryKind::Get);
    let put = kind_stats(&out.queries, QueryKind::Put);
    let phase = |name: &str| {
        out.phases
            .iter()
            .find(|p| p.name == name)
            .map_or(0.0, |p| round4((p.end - p.start).as_secs_f64()))
    };
    let fractions: Vec<f64> = out
        .probes
        .iter()
        .filter(|p| p.finished > 0)
        .map(|p| f64::from(p.retrieved) / f64::from(p.finished))
        .collect();
    let c = &out.counters;
    let fields: Vec<(&'static str, Value)> = vec![
        ("sim", json!("voidmesh-sim")),
        ("seed", json!(s.seed)),
        ("nodes", json!(s.nodes)),
        ("k", json!(s.k)),
        ("alpha", json!(s.alpha)),
        ("disjoint_paths", json!(s.disjoint_paths)),
        ("read_quorum", json!(s.read_quorum)),
        ("join", json!(s.join.name())),
        ("latency", json!(s.latency.to_string())),
        ("loss", json!(s.loss)),
        ("adversary", json!(s.adversary.name())),
        ("adversary_fraction", json!(s.adversary_fraction)),
        ("build_virtual_s", json!(phase("build"))),
        ("lookups", json!(lookup.count)),
        ("lookup_success", json!(round4(lookup.ok_rate()))),
        ("lookup_k_overlap", json!(round4(lookup.overlap))),
        ("lookup_hops_mean", json!(round4(lookup.hops_mean()))),
        ("lookup_msgs_mean", json!(round4(lookup.requests_mean))),
        ("lookup_bytes_mean", json!(round4(lookup.bytes_mean))),
        ("lookup_p50_ms", json!(round4(lookup.latency_at(50.0)))),
        ("lookup_p99_ms", json!(round4(lookup.latency_at(99.0)))),
        ("puts", json!(put.count)),
        ("put_ok", json!(round4(put.ok_rate()))),
        (
            "put_msgs_mean",
            json!(round4(put.requests_mean + put.stores_mean)),
        ),
        ("gets", json!(get.count)),
        ("get_ok", json!(round4(get.ok_rate()))),
        ("get_found", json!(get.found)),
        ("get_hops_mean", json!(round4(get.hops_mean()))),
        ("get_msgs_mean", json!(round4(get.requests_mean))),
        ("get_p50_ms", json!(round4(get.latency_at(50.0)))),
        ("get_p99_ms", json!(round4(get.latency_at(99.0)))),
        ("churn_s", json!(round4(s.churn_duration.as_secs_f64()))),
        ("probes", json!(out.probes.len())),
        (
            "retrievable_first",
            json!(round4(fractions.first().copied().unwrap_or(1.0))),
        ),
        (
            "retrievable_last",
            json!(round4(fractions.last().copied().unwrap_or(1.0))),
        ),
        (
            "retrievable_min",
            json!(round4(fractions.iter().copied().fold(1.0, f64::min))),
        ),
        ("alive_at_end", json!(out.alive_at_end)),
        ("departures", json!(c.departures)),
        ("requests_total", json!(c.requests)),
        ("bytes_total", json!(c.bytes)),
        ("lost", json!(c.lost)),
        ("timeouts", json!(c.timeouts)),
        ("unreachable", json!(c.unreachable)),
        ("events", json!(c.events)),
        ("contacts_mean", json!(round4(mean(&out.contacts)))),
        ("records_held_mean", json!(round4(mean(&out.records_held)))),
        ("records_stored", json!(out.records_stored)),
    ];
    let mut fields = fields;
    if let Some(g) = &out.gossip {
        fields.extend(gossip_fields(g));
    }
    Value::Object(
        fields
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use voidmesh_proto::Key;

    #[test]
    fn stats_skip_aborted_and_count_successes() {
        let mut qs = Vec::new();
        for i in 0..4u32 {
            let mut q = QueryRecord::new(
                QueryKind::Lookup,
                i,
                Key([0; 32]),
                Duration::ZERO,
                None,
                None,
            );
            if i == 3 {
                q.abort(Duration::from_millis(1));
            } else {
                q.finish_lookup(
                    Duration::from_millis(10 * u64::from(i + 1)),
                    &[],
                    &[Key([1; 32])],
                    Some(Key([1; 32])),
                );
            }
            qs.push(q);
        }
        let s = kind_stats(&qs, QueryKind::Lookup);
        assert_eq!(s.count, 3);
        assert_eq!(s.ok, 0);
        assert!((s.latency_at(100.0) - 30.0).abs() < 0.1);
        assert_eq!(kind_stats(&qs, QueryKind::Get).count, 0);
    }
}
