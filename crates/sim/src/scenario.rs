//! A scenario: everything a run depends on. Same scenario (seed included), same output.
//!
//! Scenarios come from defaults, then an optional INI file (`key = value` lines, in a
//! `[scenario]` section or none), then command-line flags. The keys are the flags' long
//! names: `nodes = 10000`, `latency = lognormal:40:0.5`, `adversary = drop-all`, …
//! [`Scenario::to_ini`] writes the effective scenario back in the same form, so every
//! output directory says how to reproduce it.

use std::path::Path;
use std::time::Duration;

use crate::adversary::Behaviour;
use crate::network::{LatencyModel, MAX_NODES};

/// How a new node enters the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum JoinMode {
    /// `bootstrap` through one random already-joined honest node: the full protocol (self
    /// lookup, then a refresh lookup for every bucket farther away).
    Bootstrap,
    /// Pre-seed: the newcomer and `join-seeds` random joined nodes `add_contact` each
    /// other, then the newcomer runs the full `bootstrap`.
    Seeded,
    /// Pre-seed as in `seeded`, then only a self lookup (`find_node` of the own id). The
    /// cheapest way to build 100 000 nodes; buckets fill as traffic flows.
    Fast,
}

impl JoinMode {
    /// The name used on the command line and in scenario files.
    pub fn name(self) -> &'static str {
        match self {
            JoinMode::Bootstrap => "bootstrap",
            JoinMode::Seeded => "seeded",
            JoinMode::Fast => "fast",
        }
    }

    fn from_name(name: &str) -> Option<JoinMode> {
        [JoinMode::Bootstrap, JoinMode::Seeded, JoinMode::Fast]
            .into_iter()
            .find(|m| m.name() == name.trim())
    }
}

/// A scenario was inconsistent or could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// A key no scenario has.
    #[error("unknown scenario key {0:?}")]
    UnknownKey(String),
    /// A value that does not parse or is out of range for its key.
    #[error("bad value {value:?} for {key}: {reason}")]
    BadValue {
        /// The key.
        key: String,
        /// The value as written.
        value: String,
        /// What is expected instead.
        reason: String,
    },
    /// The scenario file could not be read or parsed as INI.
    #[error("cannot read scenario file {path}: {reason}")]
    File {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
}

/// Everything one simulation run depends on.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// Seeds every random choice: ids, latencies, losses, workload, adversaries.
    pub seed: u64,
    /// Nodes in the network once it is built.
    pub nodes: usize,
    /// Kademlia's k (bucket size, lookup width, reply size).
    pub k: usize,
    /// Kademlia's alpha (requests in flight per lookup).
    pub alpha: usize,
    /// Kademlia's per-request timeout (the lookup moves on after it).
    pub request_timeout: Duration,
    /// The transport's hard limit on one request, after which it reports a timeout;
    /// `None` means twice `request_timeout`, as the daemon does.
    pub transport_timeout: Option<Duration>,
    /// Kademlia's bound on a whole GET/PUT/lookup.
    pub query_timeout: Duration,
    /// Kademlia's record republish interval.
    pub republish_interval: Duration,
    /// Kademlia's bucket refresh interval.
    pub refresh_interval: Duration,
    /// Disjoint paths of every GET, PUT and FIND_NODE lookup (S/Kademlia's d).
    pub disjoint_paths: usize,
    /// Holders a GET hears from before it ends (the newest value among them wins).
    pub read_quorum: usize,
    /// How new nodes join.
    pub join: JoinMode,
    /// Random joined nodes a newcomer is pre-seeded with (modes `seeded` and `fast`).
    pub join_seeds: usize,
    /// Virtual time between two joins while the network is built.
    pub join_interval: Duration,
    /// Records stored (PUT) after the network is built, each GET once afterwards.
    pub records: usize,
    /// Bytes per record value.
    pub value_size: usize,
    /// Replication asked for in each PUT.
    pub replication: u8,
    /// Lookups (`find_node`) of random keys from random honest nodes.
    pub lookups: usize,
    /// Virtual time between the starts of two operations (PUT, GET, lookup).
    pub op_interval: Duration,
    /// How long the churn phase lasts (zero: no churn phase).
    pub churn_duration: Duration,
    /// New nodes per virtual second during churn (Poisson arrivals).
    pub join_rate: f64,
    /// Departures per virtual second during churn (Poisson arrivals).
    pub leave_rate: f64,
    /// Fraction of departures that are crashes (silent; requests time out); the others
    /// are graceful (requests fail at once as unreachable).
    pub crash_fraction: f64,
    /// Virtual time between two retrievability probes during churn.
    pub probe_interval: Duration,
    /// Records fetched per probe (random ones; all of them if there are fewer).
    pub probe_sample: usize,
    /// Fraction of nodes that are adversarial.
    pub adversary_fraction: f64,
    /// What the adversarial nodes do.
    pub adversary: Behaviour,
    /// Distribution of per-link one-way latency.
    pub latency: LatencyModel,
    /// Per-message jitter, as a fraction of the link latency.
    pub jitter: f64,
    /// Probability that one message is lost.
    pub loss: f64,
    /// Whether to encode every message to count bytes (costs a little time).
    pub measure_bytes: bool,
    /// Most events the whole run may process before it is declared a livelock (0: no cap).
    pub max_events: u64,
    /// Whether to run the Kademlia phases (build, put, lookup, churn).
    pub kad: bool,
    /// Gossip items to spread in a separate gossip run (0: no gossip run).
    pub gossip_items: usize,
    /// Gossip degree: neighbours each item is pushed to.
    pub gossip_degree: usize,
    /// Leading zero bits of the gossip proof of work (16 in the daemon; lower here to
    /// save CPU, the rules are the same).
    pub gossip_pow_bits: u8,
    /// Virtual time after the last gossip join for the views to form.
    pub gossip_warmup: Duration,
    /// Virtual time after the last announcement before coverage is measured.
    pub gossip_settle: Duration,
    /// Bytes per gossip item.
    pub gossip_item_size: usize,
}

impl Default for Scenario {
    fn default() -> Self {
        Scenario {
            seed: 1,
            nodes: 1000,
            k: 20,
            alpha: 3,
            request_timeout: Duration::from_secs(1),
            transport_timeout: None,
            query_timeout: Duration::from_secs(10),
            republish_interval: Duration::from_secs(3600),
            refresh_interval: Duration::from_secs(3600),
            disjoint_paths: voidmesh_kad::Config::default().disjoint_paths,
            read_quorum: voidmesh_kad::Config::default().read_quorum,
            join: JoinMode::Seeded,
            join_seeds: 8,
            join_interval: Duration::from_millis(10),
            records: 100,
            value_size: 128,
            replication: 20,
            lookups: 1000,
            op_interval: Duration::from_millis(10),
            churn_duration: Duration::ZERO,
            join_rate: 0.0,
            leave_rate: 0.0,
            crash_fraction: 0.5,
            probe_interval: Duration::from_secs(60),
            probe_sample: 100,
            adversary_fraction: 0.0,
            adversary: Behaviour::DropAll,
            latency: LatencyModel::default(),
            jitter: 0.1,
            loss: 0.0,
            measure_bytes: true,
            max_events: 0,
            kad: true,
            gossip_items: 0,
            gossip_degree: 30,
            gossip_pow_bits: 8,
            gossip_warmup: Duration::from_secs(60),
            gossip_settle: Duration::from_secs(30),
            gossip_item_size: 64,
        }
    }
}

fn bad(key: &str, value: &str, reason: &str) -> ScenarioError {
    ScenarioError::BadValue {
        key: key.to_string(),
        value: value.to_string(),
        reason: reason.to_string(),
    }
}

fn parse_num<T: std::str::FromStr>(key: &str, value: &str) -> Result<T, ScenarioError> {
    value
        .trim()
        .parse()
        .map_err(|_| bad(key, value, "a number"))
}

fn parse_fraction(key: &str, value: &str) -> Result<f64, ScenarioError> {
    let x: f64 = parse_num(key, value)?;
    if (0.0..=1.0).contains(&x) {
        Ok(x)
    } else {
        Err(bad(key, value, "a fraction between 0 and 1"))
    }
}

fn parse_rate(key: &str, value: &str) -> Result<f64, ScenarioError> {
    let x: f64 = parse_num(key, value)?;
    if x.is_finite() && x >= 0.0 {
        Ok(x)
    } else {
        Err(bad(key, value, "a non-negative rate"))
    }
}

fn parse_ms(key: &str, value: &str) -> Result<Duration, ScenarioError> {
    let x: u64 = parse_num(key, value)?;
    Ok(Duration::from_millis(x))
}

fn parse_s(key: &str, value: &str) -> Result<Duration, ScenarioError> {
    let x: f64 = parse_num(key, value)?;
    if x.is_finite() && (0.0..=1e9).contains(&x) {
        Ok(Duration::from_secs_f64(x))
    } else {
        Err(bad(key, value, "seconds"))
    }
}

fn parse_bool(key: &str, value: &str) -> Result<bool, ScenarioError> {
    match value.trim() {
        "true" | "yes" | "1" | "on" => Ok(true),
        "false" | "no" | "0" | "off" => Ok(false),
        _ => Err(bad(key, value, "true or false")),
    }
}

impl Scenario {
    /// Sets one key from its text form (the flag's long name; `_` and `-` are the same).
    ///
    /// # Errors
    /// [`ScenarioError::UnknownKey`] or [`ScenarioError::BadValue`].
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ScenarioError> {
        let name = key.trim().replace('_', "-");
        let key = name.as_str();
        match key {
            "seed" => self.seed = parse_num(key, value)?,
            "nodes" => self.nodes = parse_num(key, value)?,
            "k" => self.k = parse_num(key, value)?,
            "alpha" => self.alpha = parse_num(key, value)?,
            "request-timeout-ms" => self.request_timeout = parse_ms(key, value)?,
            "transport-timeout-ms" => self.transport_timeout = Some(parse_ms(key, value)?),
            "query-timeout-ms" => self.query_timeout = parse_ms(key, value)?,
            "republish-interval-s" => self.republish_interval = parse_s(key, value)?,
            "refresh-interval-s" => self.refresh_interval = parse_s(key, value)?,
            "disjoint-paths" => self.disjoint_paths = parse_num(key, value)?,
            "read-quorum" => self.read_quorum = parse_num(key, value)?,
            "join" => {
                self.join = JoinMode::from_name(value)
                    .ok_or_else(|| bad(key, value, "bootstrap, seeded or fast"))?
            }
            "join-seeds" => self.join_seeds = parse_num(key, value)?,
            "join-interval-ms" => self.join_interval = parse_ms(key, value)?,
            "records" => self.records = parse_num(key, value)?,
            "value-size" => self.value_size = parse_num(key, value)?,
            "replication" => self.replication = parse_num(key, value)?,
            "lookups" => self.lookups = parse_num(key, value)?,
            "op-interval-ms" => self.op_interval = parse_ms(key, value)?,
            "churn-duration-s" => self.churn_duration = parse_s(key, value)?,
            "join-rate" => self.join_rate = parse_rate(key, value)?,
            "leave-rate" => self.leave_rate = parse_rate(key, value)?,
            "crash-fraction" => self.crash_fraction = parse_fraction(key, value)?,
            "probe-interval-s" => self.probe_interval = parse_s(key, value)?,
            "probe-sample" => self.probe_sample = parse_num(key, value)?,
            "adversary-fraction" => self.adversary_fraction = parse_fraction(key, value)?,
            "adversary" => {
                self.adversary = Behaviour::from_name(value).ok_or_else(|| {
                    bad(
                        key,
                        value,
                        "drop-all, far-contacts, fake-contacts, fake-near-contacts or wrong-values",
                    )
                })?
            }
            "latency" => {
                self.latency = value
                    .parse()
                    .map_err(|e: crate::network::ParseLatencyError| {
                        bad(key, value, &e.to_string())
                    })?
            }
            "jitter" => self.jitter = parse_rate(key, value)?,
            "loss" => self.loss = parse_fraction(key, value)?,
            "measure-bytes" => self.measure_bytes = parse_bool(key, value)?,
            "max-events" => self.max_events = parse_num(key, value)?,
            "kad" => self.kad = parse_bool(key, value)?,
            "gossip-items" => self.gossip_items = parse_num(key, value)?,
            "gossip-degree" => self.gossip_degree = parse_num(key, value)?,
            "gossip-pow-bits" => self.gossip_pow_bits = parse_num(key, value)?,
            "gossip-warmup-s" => self.gossip_warmup = parse_s(key, value)?,
            "gossip-settle-s" => self.gossip_settle = parse_s(key, value)?,
            "gossip-item-size" => self.gossip_item_size = parse_num(key, value)?,
            _ => return Err(ScenarioError::UnknownKey(key.to_string())),
        }
        Ok(())
    }

    /// Applies every `key = value` of an INI file (the `[scenario]` section and any keys
    /// before the first section).
    ///
    /// # Errors
    /// [`ScenarioError::File`] if it cannot be read, else as [`set`](Self::set).
    pub fn apply_file(&mut self, path: &Path) -> Result<(), ScenarioError> {
        let ini = ini::Ini::load_from_file(path).map_err(|e| ScenarioError::File {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        for (section, props) in ini.iter() {
            match section {
                None | Some("scenario") => {
                    for (k, v) in props.iter() {
                        self.set(k, v)?;
                    }
                }
                Some(other) => {
                    return Err(ScenarioError::File {
                        path: path.display().to_string(),
                        reason: format!("unknown section [{other}]; use [scenario]"),
                    })
                }
            }
        }
        Ok(())
    }

    /// Checks that the values fit together.
    ///
    /// # Errors
    /// [`ScenarioError::BadValue`] naming the first offending key.
    pub fn validate(&self) -> Result<(), ScenarioError> {
        let check = |ok: bool, key: &str, value: String, reason: &str| {
            if ok {
                Ok(())
            } else {
                Err(bad(key, &value, reason))
            }
        };
        check(
            (1..=MAX_NODES / 2).contains(&self.nodes),
            "nodes",
            self.nodes.to_string(),
            &format!("between 1 and {}", MAX_NODES / 2),
        )?;
        check(
            (1..=255).contains(&self.k),
            "k",
            self.k.to_string(),
            "1 to 255",
        )?;
        check(
            self.alpha >= 1,
            "alpha",
            self.alpha.to_string(),
            "at least 1",
        )?;
        check(
            (1..=self.k).contains(&self.disjoint_paths),
            "disjoint-paths",
            self.disjoint_paths.to_string(),
            "between 1 and k",
        )?;
        check(
            self.read_quorum >= 1,
            "read-quorum",
            self.read_quorum.to_string(),
            "at least 1",
        )?;
        check(
            self.replication >= 1,
            "replication",
            self.replication.to_string(),
            "at least 1",
        )?;
        check(
            self.value_size <= voidmesh_proto::dht_api::MAX_VALUE_LEN,
            "value-size",
            self.value_size.to_string(),
            "at most the protocol's value limit",
        )?;
        check(
            !self.request_timeout.is_zero(),
            "request-timeout-ms",
            "0".into(),
            "positive",
        )?;
        check(
            self.churn_duration.is_zero() || !self.probe_interval.is_zero(),
            "probe-interval-s",
            "0".into(),
            "positive when there is churn",
        )?;
        check(
            self.gossip_pow_bits <= 24,
            "gossip-pow-bits",
            self.gossip_pow_bits.to_string(),
            "at most 24 (every node solves one proof)",
        )?;
        check(
            (8..=voidmesh_proto::gossip_api::MAX_DATA_LEN).contains(&self.gossip_item_size),
            "gossip-item-size",
            self.gossip_item_size.to_string(),
            "between 8 and the protocol's item limit",
        )?;
        check(
            self.gossip_degree >= 1,
            "gossip-degree",
            self.gossip_degree.to_string(),
            "at least 1",
        )?;
        check(
            self.adversary_fraction < 1.0,
            "adversary-fraction",
            self.adversary_fraction.to_string(),
            "below 1 (someone has to be honest)",
        )?;
        Ok(())
    }

    /// The transport's hard limit on one request.
    pub fn transport_timeout(&self) -> Duration {
        self.transport_timeout.unwrap_or(self.request_timeout * 2)
    }

    /// The Kademlia configuration of node number `index`.
    pub fn kad_config(&self, index: u32) -> voidmesh_kad::Config {
        voidmesh_kad::Config {
            k: self.k,
            alpha: self.alpha,
            request_timeout: self.request_timeout,
            query_timeout: self.query_timeout,
            max_replication: self.k.min(255) as u8,
            refresh_interval: self.refresh_interval,
            republish_interval: self.republish_interval,
            disjoint_paths: self.disjoint_paths,
            read_quorum: self.read_quorum,
            rng_seed: crate::network::mix64(self.seed ^ u64::from(index).rotate_left(32)),
            ..voidmesh_kad::Config::default()
        }
    }

    /// The effective scenario as an INI file that [`apply_file`](Self::apply_file) reads
    /// back to the same scenario.
    pub fn to_ini(&self) -> String {
        let ms = |d: Duration| d.as_millis().to_string();
        let s = |d: Duration| d.as_secs_f64().to_string();
        let mut lines = vec![
            ("seed", self.seed.to_string()),
            ("nodes", self.nodes.to_string()),
            ("k", self.k.to_string()),
            ("alpha", self.alpha.to_string()),
            ("request-timeout-ms", ms(self.request_timeout)),
        ];
        if let Some(t) = self.transport_timeout {
            lines.push(("transport-timeout-ms", ms(t)));
        }
        lines.extend([
            ("query-timeout-ms", ms(self.query_timeout)),
            ("republish-interval-s", s(self.republish_interval)),
            ("refresh-interval-s", s(self.refresh_interval)),
            ("disjoint-paths", self.disjoint_paths.to_string()),
            ("read-quorum", self.read_quorum.to_string()),
            ("join", self.join.name().to_string()),
            ("join-seeds", self.join_seeds.to_string()),
            ("join-interval-ms", ms(self.join_interval)),
            ("records", self.records.to_string()),
            ("value-size", self.value_size.to_string()),
            ("replication", self.replication.to_string()),
            ("lookups", self.lookups.to_string()),
            ("op-interval-ms", ms(self.op_interval)),
            ("churn-duration-s", s(self.churn_duration)),
            ("join-rate", self.join_rate.to_string()),
            ("leave-rate", self.leave_rate.to_string()),
            ("crash-fraction", self.crash_fraction.to_string()),
            ("probe-interval-s", s(self.probe_interval)),
            ("probe-sample", self.probe_sample.to_string()),
            ("adversary-fraction", self.adversary_fraction.to_string()),
            ("adversary", self.adversary.name().to_string()),
            ("latency", self.latency.to_string()),
            ("jitter", self.jitter.to_string()),
            ("loss", self.loss.to_string()),
            ("measure-bytes", self.measure_bytes.to_string()),
            ("max-events", self.max_events.to_string()),
            ("kad", self.kad.to_string()),
            ("gossip-items", self.gossip_items.to_string()),
            ("gossip-degree", self.gossip_degree.to_string()),
            ("gossip-pow-bits", self.gossip_pow_bits.to_string()),
            ("gossip-warmup-s", s(self.gossip_warmup)),
            ("gossip-settle-s", s(self.gossip_settle)),
            ("gossip-item-size", self.gossip_item_size.to_string()),
        ]);
        let mut out = String::from("[scenario]\n");
        for (k, v) in lines {
            out.push_str(&format!("{k} = {v}\n"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ini_round_trips_to_the_same_scenario() {
        let mut s = Scenario::default();
        s.set("nodes", "1234").unwrap();
        s.set("latency", "uniform:5:15").unwrap();
        s.set("adversary", "fake-contacts").unwrap();
        s.set("adversary_fraction", "0.2").unwrap();
        s.set("churn-duration-s", "90.5").unwrap();
        s.set("join", "fast").unwrap();
        s.set("transport-timeout-ms", "1500").unwrap();
        s.set("kad", "false").unwrap();
        s.set("gossip-items", "12").unwrap();
        s.set("gossip-warmup-s", "15").unwrap();
        s.set("disjoint-paths", "1").unwrap();
        s.set("read_quorum", "2").unwrap();
        let dir = std::env::temp_dir().join(format!("voidmesh-sim-ini-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.ini");
        std::fs::write(&path, s.to_ini()).unwrap();
        let mut back = Scenario::default();
        back.apply_file(&path).unwrap();
        assert_eq!(back, s);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        let mut s = Scenario::default();
        assert!(matches!(
            s.set("nodez", "1"),
            Err(ScenarioError::UnknownKey(_))
        ));
        assert!(matches!(
            s.set("loss", "1.5"),
            Err(ScenarioError::BadValue { .. })
        ));
        assert!(matches!(
            s.set("nodes", "many"),
            Err(ScenarioError::BadValue { .. })
        ));
        assert!(matches!(
            s.set("adversary", "evil"),
            Err(ScenarioError::BadValue { .. })
        ));
    }

    #[test]
    fn validation_catches_inconsistent_values() {
        let mut s = Scenario::default();
        assert!(s.validate().is_ok());
        s.nodes = 0;
        assert!(s.validate().is_err());
        let mut s = Scenario {
            adversary_fraction: 1.0,
            ..Scenario::default()
        };
        assert!(s.validate().is_err());
        s.adversary_fraction = 0.5;
        assert!(s.validate().is_ok());
    }

    #[test]
    fn disjoint_paths_and_read_quorum_reach_the_kad_config() {
        let mut s = Scenario::default();
        let kad = voidmesh_kad::Config::default();
        assert_eq!(s.kad_config(0).disjoint_paths, kad.disjoint_paths);
        assert_eq!(s.kad_config(0).read_quorum, kad.read_quorum);
        s.set("disjoint-paths", "1").unwrap();
        s.set("read-quorum", "1").unwrap();
        assert_eq!(s.kad_config(7).disjoint_paths, 1);
        assert_eq!(s.kad_config(7).read_quorum, 1);
        s.disjoint_paths = 0;
        assert!(s.validate().is_err());
        s.disjoint_paths = 21;
        assert!(s.validate().is_err());
        s.disjoint_paths = 3;
        s.read_quorum = 0;
        assert!(s.validate().is_err());
    }

    #[test]
    fn transport_timeout_defaults_to_twice_the_request_timeout() {
        let s = Scenario::default();
        assert_eq!(s.transport_timeout(), Duration::from_secs(2));
    }
}
