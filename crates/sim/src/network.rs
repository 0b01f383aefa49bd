//! The virtual network: addresses, per-link latency and packet loss.
//!
//! # Addresses
//! Node number `i` listens on `a.b.c.1:4000` with `a.b.c` = 128 + `i` as a 24-bit number,
//! so the transport finds the node behind a contact from its address alone, as a real one
//! would, and every node has a /24 of its own: the routing table's per-subnet limit (made
//! against one operator filling a bucket from one address block) does not bind honest
//! nodes, as in a real network whose peers are spread over the Internet. Addresses in
//! `10.0.0.0/8` belong to nobody (adversaries hand them out).
//!
//! # Latency
//! Each link (an unordered pair of nodes) has a one-way base latency drawn once from the
//! [`LatencyModel`]: the draw is a hash of the run's seed and the two node numbers, so it
//! costs no memory and is the same in both directions and in every run with that seed.
//! Each message adds a jitter of up to `jitter` times the base, from the network's RNG.

use rand::rngs::StdRng;
use rand::Rng;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

/// The port every simulated node listens on.
pub const NODE_PORT: u16 = 4000;

/// Most nodes the address plan can name: one /24 each in `128.0.0.0/1` (23 bits).
pub const MAX_NODES: usize = 1 << 23;

/// The address of node number `index` (which must be below [`MAX_NODES`]): the first
/// host of the `index`-th /24 of `128.0.0.0/1`.
pub fn addr_of(index: u32) -> SocketAddr {
    let [_, a, b, c] = index.to_be_bytes();
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(128 | a, b, c, 1)), NODE_PORT)
}

/// The node number listening at `addr`, or `None` if no node could be there.
pub fn index_of(addr: &SocketAddr) -> Option<u32> {
    match addr.ip() {
        IpAddr::V4(ip) if addr.port() == NODE_PORT => {
            let [a, b, c, host] = ip.octets();
            (a >= 128 && host == 1).then(|| u32::from_be_bytes([0, a & 0x7f, b, c]))
        }
        _ => None,
    }
}

/// An address in `10.0.0.0/8`, where no simulated node listens.
pub fn unreachable_addr(rng: &mut StdRng) -> SocketAddr {
    let host: [u8; 3] = rng.gen();
    let port: u16 = rng.gen_range(1024..u16::MAX);
    SocketAddr::new(
        IpAddr::V4(Ipv4Addr::new(10, host[0], host[1], host[2])),
        port,
    )
}

/// How one-way link latencies are distributed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LatencyModel {
    /// Every link has the same latency.
    Constant(Duration),
    /// Uniform between the two bounds.
    Uniform(Duration, Duration),
    /// Log-normal with the given median and shape `sigma` (a wide-area model: most links
    /// near the median, a long tail of slow ones).
    LogNormal {
        /// The median one-way latency.
        median: Duration,
        /// Standard deviation of the latency's natural logarithm.
        sigma: f64,
    },
}

impl Default for LatencyModel {
    /// A wide-area network: median 40 ms one way, sigma 0.5 (p99 about 130 ms).
    fn default() -> Self {
        LatencyModel::LogNormal {
            median: Duration::from_millis(40),
            sigma: 0.5,
        }
    }
}

/// Why a latency model did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad latency model {0:?}: expected constant:MS, uniform:MIN_MS:MAX_MS or lognormal:MEDIAN_MS:SIGMA")]
pub struct ParseLatencyError(String);

impl FromStr for LatencyModel {
    type Err = ParseLatencyError;

    /// Parses `constant:20`, `uniform:10:100` or `lognormal:40:0.5` (times in ms).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseLatencyError(s.to_string());
        let ms = |v: &str| -> Result<Duration, ParseLatencyError> {
            let x: f64 = v.trim().parse().map_err(|_| err())?;
            if x.is_finite() && (0.0..=3_600_000.0).contains(&x) {
                Ok(Duration::from_secs_f64(x / 1000.0))
            } else {
                Err(err())
            }
        };
        let parts: Vec<&str> = s.trim().split(':').collect();
        match parts.as_slice() {
            ["constant", v] => Ok(LatencyModel::Constant(ms(v)?)),
            ["uniform", lo, hi] => {
                let (lo, hi) = (ms(lo)?, ms(hi)?);
                if lo > hi {
                    return Err(err());
                }
                Ok(LatencyModel::Uniform(lo, hi))
            }
            ["lognormal", median, sigma] => {
                let sigma: f64 = sigma.trim().parse().map_err(|_| err())?;
                if !(sigma.is_finite() && (0.0..=5.0).contains(&sigma)) {
                    return Err(err());
                }
                Ok(LatencyModel::LogNormal {
                    median: ms(median)?,
                    sigma,
                })
            }
            _ => Err(err()),
        }
    }
}

impl fmt::Display for LatencyModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |d: &Duration| d.as_secs_f64() * 1000.0;
        match self {
            LatencyModel::Constant(d) => write!(f, "constant:{}", ms(d)),
            LatencyModel::Uniform(lo, hi) => write!(f, "uniform:{}:{}", ms(lo), ms(hi)),
            LatencyModel::LogNormal { median, sigma } => {
                write!(f, "lognormal:{}:{}", ms(median), sigma)
            }
        }
    }
}

impl LatencyModel {
    /// A latency from two independent uniforms in `[0, 1)`.
    fn sample(&self, u1: f64, u2: f64) -> Duration {
        match *self {
            LatencyModel::Constant(d) => d,
            LatencyModel::Uniform(lo, hi) => lo + (hi - lo).mul_f64(u1),
            LatencyModel::LogNormal { median, sigma } => {
                // Box–Muller: a standard normal from two uniforms; 1 - u1 is in (0, 1].
                let z = (-2.0 * (1.0 - u1).ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
                let factor = (sigma * z).exp().min(1000.0);
                median.mul_f64(factor)
            }
        }
    }
}

/// SplitMix64's finaliser: a fast, well-mixed hash of one 64-bit word.
pub fn mix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A uniform float in `[0, 1)` from 64 random bits.
fn unit(bits: u64) -> f64 {
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

/// The links between nodes: latency and loss.
#[derive(Debug, Clone)]
pub struct Network {
    /// How base latencies are distributed.
    model: LatencyModel,
    /// Each message's extra delay is uniform in `[0, jitter × base)`.
    jitter: f64,
    /// Probability that one message (a request or a reply) is lost.
    loss: f64,
    /// Salt for the per-link hash, derived from the run's seed.
    salt: u64,
}

impl Network {
    /// A network with the given model, jitter fraction, loss probability and seed.
    pub fn new(model: LatencyModel, jitter: f64, loss: f64, seed: u64) -> Self {
        Network {
            model,
            jitter: jitter.clamp(0.0, 10.0),
            loss: loss.clamp(0.0, 1.0),
            salt: mix64(seed ^ 0x6c69_6e6b_6c61_7465),
        }
    }

    /// The fixed one-way latency of the link between `a` and `b` (symmetric).
    pub fn link_latency(&self, a: u32, b: u32) -> Duration {
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        let h1 = mix64(self.salt ^ (u64::from(lo) << 32 | u64::from(hi)));
        let h2 = mix64(h1 ^ self.salt);
        self.model.sample(unit(h1), unit(h2))
    }

    /// The delay of one message from `a` to `b`: the link's latency plus jitter.
    pub fn delay(&self, a: u32, b: u32, rng: &mut StdRng) -> Duration {
        let base = self.link_latency(a, b);
        if self.jitter > 0.0 {
            base + base.mul_f64(self.jitter * rng.gen::<f64>())
        } else {
            base
        }
    }

    /// Whether one message is lost.
    pub fn lost(&self, rng: &mut StdRng) -> bool {
        self.loss > 0.0 && rng.gen::<f64>() < self.loss
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn addresses_round_trip() {
        for i in [0u32, 1, 255, 256, 65_535, 100_000, (MAX_NODES - 1) as u32] {
            assert_eq!(index_of(&addr_of(i)), Some(i));
            assert!(!addr_of(i).ip().is_loopback());
        }
        let mut rng = StdRng::seed_from_u64(1);
        assert_eq!(index_of(&unreachable_addr(&mut rng)), None);
    }

    #[test]
    fn latency_models_parse_and_print() {
        for s in ["constant:20", "uniform:10:100", "lognormal:40:0.5"] {
            let m: LatencyModel = s.parse().unwrap();
            assert_eq!(m.to_string(), s);
        }
        for bad in [
            "",
            "constant",
            "uniform:100:10",
            "lognormal:40:-1",
            "weird:1",
            "constant:x",
        ] {
            assert!(bad.parse::<LatencyModel>().is_err(), "{bad}");
        }
    }

    #[test]
    fn link_latency_is_symmetric_and_stable() {
        let net = Network::new(LatencyModel::default(), 0.0, 0.0, 7);
        let again = Network::new(LatencyModel::default(), 0.0, 0.0, 7);
        assert_eq!(net.link_latency(3, 9), net.link_latency(9, 3));
        assert_eq!(net.link_latency(3, 9), again.link_latency(3, 9));
    }

    #[test]
    fn lognormal_median_is_about_right() {
        let net = Network::new(LatencyModel::default(), 0.0, 0.0, 1);
        let mut v: Vec<Duration> = (0..2001).map(|i| net.link_latency(i, i + 5000)).collect();
        v.sort();
        let median = v[1000].as_secs_f64() * 1000.0;
        assert!((35.0..45.0).contains(&median), "median {median} ms");
    }

    #[test]
    fn uniform_stays_in_bounds() {
        let m = LatencyModel::Uniform(Duration::from_millis(10), Duration::from_millis(20));
        let net = Network::new(m, 0.0, 0.0, 1);
        for i in 0..1000 {
            let d = net.link_latency(i, i + 1);
            assert!(d >= Duration::from_millis(10) && d <= Duration::from_millis(20));
        }
    }

    #[test]
    fn loss_rate_matches() {
        let net = Network::new(LatencyModel::default(), 0.0, 0.25, 1);
        let mut rng = StdRng::seed_from_u64(3);
        let lost = (0..10_000).filter(|_| net.lost(&mut rng)).count();
        assert!((2_300..2_700).contains(&lost), "{lost}");
    }
}
