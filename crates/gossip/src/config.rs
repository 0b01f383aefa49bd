//! Tunables of one gossip node, with the defaults the README documents.

use std::time::Duration;
use thiserror::Error;

/// Tunables of one gossip node. The first four follow the VoidPhone config keys
/// (`cache_size`, `degree`) and the membership keys of the gossip seed
/// (`min_connections`, `max_connections`, `search_cooldown`).
#[derive(Debug, Clone)]
pub struct Config {
    /// Most items kept at once: items waiting for their validation and items recently
    /// spread (so that a late copy is recognised and its sender not sent the item back).
    /// The oldest item is evicted first. (VoidPhone `cache_size`, default 50.)
    pub cache_size: usize,
    /// How many view members each item is pushed to (all of them, if fewer).
    /// (VoidPhone `degree`, default 30.)
    pub degree: usize,
    /// Below this many view members the node looks for more peers (default 8).
    pub min_connections: usize,
    /// The view never holds more members than this; a HELLO beyond it is answered
    /// "full" (default 40).
    pub max_connections: usize,
    /// How often the node checks its view and, when below `min_connections`, asks its
    /// neighbours for peers and tries known peers (default 10 s).
    pub search_cooldown: Duration,
    /// Most contacts sent in one OFFER or WELCOME (default 16).
    pub offer_size: usize,
    /// Most contacts remembered as candidates to join (from offers, welcomes) (default 256).
    pub max_candidates: usize,
    /// How long a HELLO may go unanswered before it is given up (default 5 s).
    pub hello_timeout: Duration,
    /// Hop bound of an item announced with TTL 0 ("no limit"), and the cap of every other
    /// TTL and every received hop budget (default 16).
    pub max_ttl: u8,
    /// How long an item id is remembered after it was first seen (default 10 min).
    pub seen_ttl: Duration,
    /// Most item ids remembered; the oldest is forgotten first (default 10 000).
    pub max_seen: usize,
    /// How long local subscribers have to validate an item from the network before it is
    /// dropped without being forwarded (default 10 s).
    pub validation_timeout: Duration,
    /// Leading zero bits a joining peer's proof of work must have (default 16).
    pub pow_difficulty: u8,
    /// How far a proof's timestamp may be from this node's Unix time (default 300 s).
    pub pow_max_skew: Duration,
    /// Messages per second a view member may send on average (default 200).
    pub peer_rate: u32,
    /// Messages a view member may send in a burst above the rate (default 400).
    pub peer_burst: u32,
    /// Seed of the RNG used to pick peers and item nonces.
    pub rng_seed: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            cache_size: 50,
            degree: 30,
            min_connections: 8,
            max_connections: 40,
            search_cooldown: Duration::from_secs(10),
            offer_size: 16,
            max_candidates: 256,
            hello_timeout: Duration::from_secs(5),
            max_ttl: 16,
            seen_ttl: Duration::from_secs(600),
            max_seen: 10_000,
            validation_timeout: Duration::from_secs(10),
            pow_difficulty: 16,
            pow_max_skew: Duration::from_secs(300),
            peer_rate: 200,
            peer_burst: 400,
            rng_seed: 0,
        }
    }
}

/// Why a configuration cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConfigError {
    /// A value that must be at least 1 is 0.
    #[error("`{0}` must be at least 1")]
    Zero(&'static str),
    /// `min_connections` exceeds `max_connections`.
    #[error("min_connections ({min}) exceeds max_connections ({max})")]
    MinAboveMax {
        /// The configured minimum.
        min: usize,
        /// The configured maximum.
        max: usize,
    },
    /// `cache_size` above 65535: message ids are 16 bits and must not collide.
    #[error("cache_size {0} exceeds 65535")]
    CacheTooLarge(usize),
    /// `pow_difficulty` above 64 cannot be solved in practice.
    #[error("pow_difficulty {0} exceeds 64")]
    DifficultyTooHigh(u8),
}

impl Config {
    /// Checks the values a driver read from a config file.
    ///
    /// # Errors
    /// The first [`ConfigError`] found.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let at_least_one = [
            ("cache_size", self.cache_size),
            ("degree", self.degree),
            ("max_connections", self.max_connections),
            ("max_ttl", usize::from(self.max_ttl)),
            ("max_seen", self.max_seen),
            ("peer_rate", self.peer_rate as usize),
            ("peer_burst", self.peer_burst as usize),
        ];
        for (name, value) in at_least_one {
            if value == 0 {
                return Err(ConfigError::Zero(name));
            }
        }
        if self.min_connections > self.max_connections {
            return Err(ConfigError::MinAboveMax {
                min: self.min_connections,
                max: self.max_connections,
            });
        }
        if self.cache_size > usize::from(u16::MAX) {
            return Err(ConfigError::CacheTooLarge(self.cache_size));
        }
        if self.pow_difficulty > 64 {
            return Err(ConfigError::DifficultyTooHigh(self.pow_difficulty));
        }
        Ok(())
    }

    /// The same configuration with every value forced into its valid range (used by
    /// [`crate::Gossip::new`], which cannot fail).
    pub(crate) fn sanitized(mut self) -> Config {
        self.cache_size = self.cache_size.clamp(1, usize::from(u16::MAX));
        self.degree = self.degree.max(1);
        self.max_connections = self.max_connections.max(1);
        self.min_connections = self.min_connections.min(self.max_connections);
        self.max_ttl = self.max_ttl.max(1);
        self.max_seen = self.max_seen.max(1);
        self.peer_rate = self.peer_rate.max(1);
        self.peer_burst = self.peer_burst.max(1);
        self.pow_difficulty = self.pow_difficulty.min(64);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert_eq!(Config::default().validate(), Ok(()));
    }

    #[test]
    fn min_above_max_is_refused() {
        let c = Config {
            min_connections: 5,
            max_connections: 4,
            ..Config::default()
        };
        assert_eq!(
            c.validate(),
            Err(ConfigError::MinAboveMax { min: 5, max: 4 })
        );
        assert_eq!(c.sanitized().min_connections, 4);
    }

    #[test]
    fn zero_degree_is_refused_and_sanitized_to_one() {
        let c = Config {
            degree: 0,
            ..Config::default()
        };
        assert_eq!(c.validate(), Err(ConfigError::Zero("degree")));
        assert_eq!(c.sanitized().degree, 1);
    }

    #[test]
    fn cache_larger_than_message_id_space_is_refused() {
        let c = Config {
            cache_size: 70_000,
            ..Config::default()
        };
        assert_eq!(c.validate(), Err(ConfigError::CacheTooLarge(70_000)));
        assert_eq!(c.sanitized().cache_size, 65535);
    }
}
