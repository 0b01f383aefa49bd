//! The INI configuration file (`-c CONFIG`): parsing, defaults and precise errors.
//!
//! Parsing is done by `rust-ini`; this module only maps sections and keys to typed
//! settings. Every error names the file, the line and the key; unknown keys are warnings.
//! The full key reference is in the README.

use ini::Ini;
use std::collections::HashSet;
use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A configuration error: where it is and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The configuration file.
    pub file: PathBuf,
    /// 1-based line of the offending key or section, when there is one.
    pub line: Option<usize>,
    /// `section.key` (or `key` for top-level keys), when the error is about a key.
    pub key: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(key) = &self.key {
            write!(f, ": key `{key}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

/// The whole configuration of a peer.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from (for messages).
    pub path: PathBuf,
    /// `hostkey`: the PEM hostkey; `None` means "generate once under `data_dir`".
    pub hostkey: Option<PathBuf>,
    /// `data_dir`: where the node keeps its files.
    pub data_dir: PathBuf,
    /// The `[dht]` section, if present.
    pub dht: Option<DhtConfig>,
    /// The `[gossip]` section, if present.
    pub gossip: Option<GossipConfig>,
    /// The `[chat]` section, if present.
    pub chat: Option<ChatSection>,
    /// Unknown keys and other harmless oddities, to be logged as warnings.
    pub warnings: Vec<String>,
}

/// Settings of the DHT module (`[dht]`).
#[derive(Debug, Clone)]
pub struct DhtConfig {
    /// `p2p_address`: where other peers reach this DHT (QUIC/UDP).
    pub p2p_address: SocketAddr,
    /// `api_address`: where local clients connect (TCP).
    pub api_address: SocketAddr,
    /// `bootstrapper`: `host:port` of peers to join through; empty = start a new network.
    pub bootstrappers: Vec<String>,
    /// Kademlia tunables (`k`, `alpha`, `request_timeout`, ...).
    pub kad: voidmesh_kad::Config,
    /// `max_api_connections`: API clients served at once.
    pub max_api_connections: usize,
    /// `api_read_timeout` and `api_idle_timeout`: how long an API client may take.
    pub api_timeouts: ApiTimeouts,
}

/// How long a DHT API client may hold its connection without doing its part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiTimeouts {
    /// `api_read_timeout`: a frame whose first bytes arrived must be complete within
    /// this, or the connection is closed (a client sending a byte a second holds
    /// nothing for long).
    pub read: Duration,
    /// `api_idle_timeout`: a connection with no request and nothing in flight for this
    /// long is closed.
    pub idle: Duration,
}

impl Default for ApiTimeouts {
    /// 10 s to finish a frame, 5 min idle.
    fn default() -> ApiTimeouts {
        ApiTimeouts {
            read: Duration::from_secs(10),
            idle: Duration::from_secs(300),
        }
    }
}

/// Settings of the gossip module (`[gossip]`).
#[derive(Debug, Clone)]
pub struct GossipConfig {
    /// `p2p_address`: where other peers reach this gossip module.
    pub p2p_address: SocketAddr,
    /// `api_address`: where local clients connect.
    pub api_address: SocketAddr,
    /// `bootstrapper`: peers to join through.
    pub bootstrappers: Vec<String>,
    /// `known_peers`: further `host:port` peers to try when the view is short.
    pub known_peers: Vec<String>,
    /// The state machine's tunables (`cache_size`, `degree`, `min_connections`,
    /// `max_connections`, `search_cooldown`, `pow_difficulty`, ...).
    pub gossip: voidmesh_gossip::Config,
    /// `max_api_connections`: API clients served at once.
    pub max_api_connections: usize,
    /// `api_read_timeout`: a frame whose first bytes arrived must be complete within
    /// this.
    pub api_read_timeout: Duration,
}

/// Settings of the chat (`[chat]`), read by `voidmesh chat`.
#[derive(Debug, Clone)]
pub struct ChatSection {
    /// `p2p_address`: where other chat peers open sessions with this one (QUIC/UDP).
    pub p2p_address: SocketAddr,
    /// `advertise_address`: the IP published in the presence record when `p2p_address`
    /// is a wildcard; `None` means "the interface that routes to the bootstrappers".
    pub advertise_address: Option<std::net::IpAddr>,
    /// `presence_republish`: how often presence is published again (default 5 min).
    pub presence_republish: Duration,
    /// `presence_ttl`: how long a presence record lives (default 15 min).
    pub presence_ttl: Duration,
    /// `max_message_bytes`: longest text sent or accepted (default 4096).
    pub max_message_bytes: usize,
    /// `request_timeout`: how long opening a session or sending a line may take (5 s).
    pub request_timeout: Duration,
    /// `liveness`: a session's peer silent this long is shown as gone (default 3 s).
    pub liveness: Duration,
}

const TOP_KEYS: &[&str] = &["hostkey", "data_dir"];
const DHT_KEYS: &[&str] = &[
    "p2p_address",
    "api_address",
    "bootstrapper",
    "k",
    "alpha",
    "request_timeout",
    "get_timeout",
    "max_ttl",
    "max_replication",
    "refresh_interval",
    "republish_interval",
    "max_records",
    "max_record_bytes",
    "id_difficulty",
    "disjoint_paths",
    "max_per_subnet",
    "peer_rate",
    "read_quorum",
    "max_api_connections",
    "api_read_timeout",
    "api_idle_timeout",
];
const GOSSIP_KEYS: &[&str] = &[
    "p2p_address",
    "api_address",
    "bootstrapper",
    "cache_size",
    "degree",
    "min_connections",
    "max_connections",
    "search_cooldown",
    "known_peers",
    "pow_difficulty",
    "max_ttl",
    "validation_timeout",
    "max_api_connections",
    "api_read_timeout",
];
const CHAT_KEYS: &[&str] = &[
    "p2p_address",
    "advertise_address",
    "presence_republish",
    "presence_ttl",
    "liveness",
    "max_message_bytes",
    "request_timeout",
];

/// The per-user default data directory: `$XDG_DATA_HOME/voidmesh` or
/// `~/.local/share/voidmesh`, else `./voidmesh-data`.
pub fn default_data_dir() -> PathBuf {
    dirs::data_dir()
        .map(|d| d.join("voidmesh"))
        .unwrap_or_else(|| PathBuf::from("voidmesh-data"))
}

impl Config {
    /// Reads and checks the file at `path`.
    ///
    /// # Errors
    /// A [`ConfigError`] naming file, line and key for unreadable files, syntax errors,
    /// malformed values and missing required keys.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_owned(),
            line: None,
            key: None,
            message: format!("cannot read the file: {e}"),
        })?;
        Config::parse(path, &text)
    }

    /// Parses configuration `text`; `path` is only used in messages and to resolve
    /// relative paths.
    ///
    /// # Errors
    /// As [`Config::load`].
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        if let Some((line, message)) = first_malformed_line(text) {
            return Err(ConfigError {
                file: path.to_owned(),
                line: Some(line),
                key: None,
                message,
            });
        }
        let ini = Ini::load_from_str(text).map_err(|e| ConfigError {
            file: path.to_owned(),
            line: Some(e.line),
            key: None,
            message: format!("syntax error: {}", e.msg),
        })?;
        let doc = Doc {
            path,
            text,
            ini: &ini,
        };
        let mut warnings = Vec::new();
        for (section, props) in ini.iter() {
            let known: &[&str] = match section {
                None => TOP_KEYS,
                Some("dht") => DHT_KEYS,
                Some("gossip") => GOSSIP_KEYS,
                Some("chat") => CHAT_KEYS,
                Some(other) => {
                    warnings.push(format!(
                        "{}:{}: unknown section [{other}] ignored",
                        path.display(),
                        doc.line_of_section(other).unwrap_or(0)
                    ));
                    continue;
                }
            };
            let known: HashSet<&str> = known.iter().copied().collect();
            for (key, _) in props.iter() {
                if !known.contains(key) {
                    let line = doc.line_of(section, key).unwrap_or(0);
                    let name = qualified(section, key);
                    warnings.push(format!(
                        "{}:{line}: unknown key `{name}` ignored",
                        path.display()
                    ));
                }
            }
        }
        let base = path.parent().unwrap_or(Path::new("."));
        let hostkey = doc.get(None, "hostkey").map(|v| base.join(v));
        let data_dir = doc
            .get(None, "data_dir")
            .map(|v| base.join(v))
            .unwrap_or_else(default_data_dir);
        let dht = if ini.section(Some("dht")).is_some() {
            Some(doc.dht()?)
        } else {
            None
        };
        let gossip = if ini.section(Some("gossip")).is_some() {
            Some(doc.gossip()?)
        } else {
            None
        };
        let chat = if ini.section(Some("chat")).is_some() {
            Some(doc.chat()?)
        } else {
            None
        };
        Ok(Config {
            path: path.to_owned(),
            hostkey,
            data_dir,
            dht,
            gossip,
            chat,
            warnings,
        })
    }

    /// The `[dht]` section, or an error saying the file lacks it.
    ///
    /// # Errors
    /// When there is no `[dht]` section.
    pub fn require_dht(&self) -> Result<&DhtConfig, ConfigError> {
        self.dht.as_ref().ok_or_else(|| self.missing_section("dht"))
    }

    /// The `[gossip]` section, or an error saying the file lacks it.
    ///
    /// # Errors
    /// When there is no `[gossip]` section.
    pub fn require_gossip(&self) -> Result<&GossipConfig, ConfigError> {
        self.gossip
            .as_ref()
            .ok_or_else(|| self.missing_section("gossip"))
    }

    fn missing_section(&self, name: &str) -> ConfigError {
        ConfigError {
            file: self.path.clone(),
            line: None,
            key: None,
            message: format!("the [{name}] section is missing"),
        }
    }
}

fn qualified(section: Option<&str>, key: &str) -> String {
    match section {
        Some(s) => format!("{s}.{key}"),
        None => key.to_owned(),
    }
}

/// A parsed file plus its text, to find the line a key is on.
struct Doc<'a> {
    path: &'a Path,
    text: &'a str,
    ini: &'a Ini,
}

impl Doc<'_> {
    fn get(&self, section: Option<&str>, key: &str) -> Option<&str> {
        self.ini.get_from(section, key).map(str::trim)
    }

    /// 1-based line on which `key` is set in `section` (the last one, as the parser keeps
    /// the last value).
    fn line_of(&self, section: Option<&str>, key: &str) -> Option<usize> {
        let mut current: Option<String> = None;
        let mut found = None;
        for (i, raw) in self.text.lines().enumerate() {
            let line = raw.trim();
            if let Some(rest) = line.strip_prefix('[') {
                current = rest.split(']').next().map(|s| s.trim().to_owned());
                continue;
            }
            if current.as_deref() != section {
                continue;
            }
            if let Some((k, _)) = line.split_once('=') {
                if k.trim() == key {
                    found = Some(i + 1);
                }
            }
        }
        found
    }

    fn line_of_section(&self, name: &str) -> Option<usize> {
        self.text
            .lines()
            .position(|l| {
                l.trim()
                    .strip_prefix('[')
                    .and_then(|r| r.split(']').next())
                    .map(str::trim)
                    == Some(name)
            })
            .map(|i| i + 1)
    }

    fn error(&self, section: Option<&str>, key: &str, message: String) -> ConfigError {
        let line = self
            .line_of(section, key)
            .or_else(|| section.and_then(|s| self.line_of_section(s)));
        ConfigError {
            file: self.path.to_owned(),
            line,
            key: Some(qualified(section, key)),
            message,
        }
    }

    fn required_addr(&self, section: &str, key: &str) -> Result<SocketAddr, ConfigError> {
        let value = self
            .get(Some(section), key)
            .ok_or_else(|| self.error(Some(section), key, "required key is missing".into()))?;
        resolve_addr(value).map_err(|m| self.error(Some(section), key, m))
    }

    fn list(&self, section: &str, key: &str) -> Result<Vec<String>, ConfigError> {
        let Some(value) = self.get(Some(section), key) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            check_host_port(item).map_err(|m| self.error(Some(section), key, m))?;
            out.push(item.to_owned());
        }
        Ok(out)
    }

    fn number<T>(
        &self,
        section: &str,
        key: &str,
        default: T,
        range: std::ops::RangeInclusive<T>,
    ) -> Result<T, ConfigError>
    where
        T: std::str::FromStr + PartialOrd + fmt::Display + Copy,
    {
        let Some(value) = self.get(Some(section), key) else {
            return Ok(default);
        };
        let n: T = value
            .parse()
            .map_err(|_| self.error(Some(section), key, format!("`{value}` is not a number")))?;
        if !range.contains(&n) {
            return Err(self.error(
                Some(section),
                key,
                format!("{n} is out of range ({} to {})", range.start(), range.end()),
            ));
        }
        Ok(n)
    }

    fn duration(
        &self,
        section: &str,
        key: &str,
        default: Duration,
    ) -> Result<Duration, ConfigError> {
        let Some(value) = self.get(Some(section), key) else {
            return Ok(default);
        };
        let d = humantime::parse_duration(value).map_err(|e| {
            self.error(
                Some(section),
                key,
                format!("`{value}` is not a duration like 500ms, 10s or 1h: {e}"),
            )
        })?;
        if d.is_zero() {
            return Err(self.error(Some(section), key, "must be longer than zero".into()));
        }
        Ok(d)
    }

    fn dht(&self) -> Result<DhtConfig, ConfigError> {
        let s = "dht";
        let defaults = voidmesh_kad::Config::default();
        let k = self.number(s, "k", defaults.k, 1..=255)?;
        let kad = voidmesh_kad::Config {
            k,
            alpha: self.number(s, "alpha", defaults.alpha, 1..=64)?,
            request_timeout: self.duration(s, "request_timeout", defaults.request_timeout)?,
            query_timeout: self.duration(s, "get_timeout", defaults.query_timeout)?,
            max_ttl: self.duration(s, "max_ttl", defaults.max_ttl)?,
            max_replication: self.number(s, "max_replication", k.min(255) as u8, 1..=255)?,
            refresh_interval: self.duration(s, "refresh_interval", defaults.refresh_interval)?,
            republish_interval: self.duration(
                s,
                "republish_interval",
                defaults.republish_interval,
            )?,
            max_records: self.number(s, "max_records", defaults.max_records, 1..=100_000_000)?,
            max_record_bytes: self.number(
                s,
                "max_record_bytes",
                defaults.max_record_bytes,
                1024..=usize::MAX,
            )?,
            // Identities cost work by default (the library default, for tests, is 0).
            id_difficulty: self.number(
                s,
                "id_difficulty",
                voidmesh_kad::RECOMMENDED_ID_DIFFICULTY,
                0..=32,
            )?,
            disjoint_paths: self.number(s, "disjoint_paths", defaults.disjoint_paths, 1..=16)?,
            max_per_subnet: self.number(s, "max_per_subnet", defaults.max_per_subnet, 0..=255)?,
            peer_rate: self.number(s, "peer_rate", defaults.peer_rate, 0..=1_000_000)?,
            read_quorum: self.number(s, "read_quorum", defaults.read_quorum, 1..=255)?,
            rng_seed: rand::random(),
            ..defaults
        };
        Ok(DhtConfig {
            p2p_address: self.required_addr(s, "p2p_address")?,
            api_address: self.required_addr(s, "api_address")?,
            bootstrappers: self.list(s, "bootstrapper")?,
            kad,
            max_api_connections: self.number(s, "max_api_connections", 4096, 1..=1_000_000)?,
            api_timeouts: ApiTimeouts {
                read: self.duration(s, "api_read_timeout", ApiTimeouts::default().read)?,
                idle: self.duration(s, "api_idle_timeout", ApiTimeouts::default().idle)?,
            },
        })
    }

    fn gossip(&self) -> Result<GossipConfig, ConfigError> {
        let s = "gossip";
        let d = voidmesh_gossip::Config::default();
        let min_connections = self.number(s, "min_connections", d.min_connections, 1..=10_000)?;
        let max_connections = self.number(s, "max_connections", d.max_connections, 1..=10_000)?;
        if max_connections < min_connections {
            return Err(self.error(
                Some(s),
                "max_connections",
                format!("must be at least min_connections ({min_connections})"),
            ));
        }
        let gossip = voidmesh_gossip::Config {
            cache_size: self.number(s, "cache_size", d.cache_size, 1..=1_000_000)?,
            degree: self.number(s, "degree", d.degree, 1..=10_000)?,
            min_connections,
            max_connections,
            search_cooldown: self.duration(s, "search_cooldown", d.search_cooldown)?,
            max_ttl: self.number(s, "max_ttl", d.max_ttl, 1..=255)?,
            pow_difficulty: self.number(s, "pow_difficulty", d.pow_difficulty, 0..=64)?,
            validation_timeout: self.duration(s, "validation_timeout", d.validation_timeout)?,
            rng_seed: rand::random(),
            ..d
        };
        Ok(GossipConfig {
            p2p_address: self.required_addr(s, "p2p_address")?,
            api_address: self.required_addr(s, "api_address")?,
            bootstrappers: self.list(s, "bootstrapper")?,
            known_peers: self.list(s, "known_peers")?,
            gossip,
            max_api_connections: self.number(s, "max_api_connections", 4096, 1..=1_000_000)?,
            api_read_timeout: self.duration(s, "api_read_timeout", ApiTimeouts::default().read)?,
        })
    }
}

impl Doc<'_> {
    fn chat(&self) -> Result<ChatSection, ConfigError> {
        let s = "chat";
        let advertise_address = match self.get(Some(s), "advertise_address") {
            None => None,
            Some(value) => Some(value.parse().map_err(|_| {
                self.error(
                    Some(s),
                    "advertise_address",
                    format!("`{value}` is not an IP address"),
                )
            })?),
        };
        Ok(ChatSection {
            p2p_address: self.required_addr(s, "p2p_address")?,
            advertise_address,
            presence_republish: self.duration(s, "presence_republish", Duration::from_secs(300))?,
            presence_ttl: self.duration(s, "presence_ttl", Duration::from_secs(900))?,
            max_message_bytes: self.number(s, "max_message_bytes", 4096, 1..=60_000)?,
            request_timeout: self.duration(s, "request_timeout", Duration::from_secs(5))?,
            liveness: self.duration(s, "liveness", Duration::from_secs(3))?,
        })
    }
}

/// Checks the shape `host:port` or `[v6]:port` without resolving.
fn check_host_port(value: &str) -> Result<(), String> {
    let (host, port) = value
        .rsplit_once(':')
        .ok_or_else(|| format!("`{value}` is not host:port"))?;
    if host.is_empty() {
        return Err(format!("`{value}` has no host"));
    }
    port.parse::<u16>()
        .map_err(|_| format!("`{value}` has no valid port"))?;
    Ok(())
}

/// Resolves `host:port` (IPv4, `[IPv6]:port` or a host name) to one socket address.
pub fn resolve_addr(value: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = value.parse::<SocketAddr>() {
        return Ok(addr);
    }
    check_host_port(value)?;
    value
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve `{value}`: {e}"))?
        .next()
        .ok_or_else(|| format!("`{value}` resolves to no address"))
}

/// The first line (1-based) that the INI parser would refuse, with a message naming what
/// is wrong, so that a mistake is reported where it is and in words (the parser reports
/// the end of the file, in terms of its own state).
fn first_malformed_line(text: &str) -> Option<(usize, String)> {
    for (n, raw) in text.lines().enumerate() {
        // Inline comments start with `#` or `;` (as the parser is configured).
        let line = raw.split(['#', ';']).next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        if line.starts_with('[') {
            if !line.ends_with(']') {
                return Some((n + 1, format!("section header `{line}` has no closing `]`")));
            }
            continue;
        }
        // Without `=`, the parser takes the first `:` as the separator; a "key" with a
        // space in it means the `=` was forgotten (`p2p_address 127.0.0.1:7000`).
        let key = match line.split_once('=') {
            Some(_) => None,
            None => Some(line.split_once(':').map_or(line, |(key, _)| key).trim()),
        };
        if key.is_some_and(|key| key == line || key.contains(char::is_whitespace)) {
            return Some((
                n + 1,
                format!("`{line}` is not a setting: write `key = value`"),
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("/etc/voidmesh.ini"), text)
    }

    #[test]
    fn spec_example_parses_with_inline_comments() {
        let cfg = parse(
            "hostkey = /path/to/hostkey.pem      # top level\n\n[dht]\n\
             p2p_address = 127.0.0.1:6501         # where other peers reach this DHT\n\
             api_address = 127.0.0.1:7401\n\n[gossip]\ncache_size = 50\ndegree = 30\n\
             bootstrapper = 127.0.0.1:6001\np2p_address = 127.0.0.1:6001\napi_address = 127.0.0.1:7001\n",
        )
        .unwrap();
        assert_eq!(cfg.hostkey, Some(PathBuf::from("/path/to/hostkey.pem")));
        let dht = cfg.require_dht().unwrap();
        assert_eq!(dht.p2p_address, "127.0.0.1:6501".parse().unwrap());
        assert_eq!(dht.kad.k, 20);
        assert!(dht.bootstrappers.is_empty());
        let gossip = cfg.require_gossip().unwrap();
        assert_eq!(gossip.bootstrappers, vec!["127.0.0.1:6001".to_string()]);
        assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
    }

    #[test]
    fn syntax_mistakes_are_reported_on_their_line_in_words() {
        for (text, line, words) in [
            ("[dht\np2p_address = 127.0.0.1:0\n", 1, "no closing `]`"),
            (
                "[dht]\np2p_address 127.0.0.1:7000\n",
                2,
                "write `key = value`",
            ),
            (
                "[dht]\np2p_address = 127.0.0.1:0\njustakey\n",
                3,
                "write `key = value`",
            ),
        ] {
            let err = Config::parse(Path::new("c.ini"), text).unwrap_err();
            assert_eq!(err.line, Some(line), "{text:?}: {err}");
            assert!(err.to_string().contains(words), "{text:?}: {err}");
            assert!(!err.to_string().contains("Some("), "no debug text: {err}");
        }
    }

    #[test]
    fn bad_value_names_file_line_and_key() {
        let err = parse("[dht]\np2p_address = 127.0.0.1:1\napi_address = 127.0.0.1:2\nk = lots\n")
            .unwrap_err();
        assert_eq!(err.line, Some(4));
        assert_eq!(err.key.as_deref(), Some("dht.k"));
        assert!(
            err.to_string()
                .starts_with("/etc/voidmesh.ini:4: key `dht.k`"),
            "{err}"
        );
    }

    #[test]
    fn missing_required_key_is_an_error() {
        let err = parse("[dht]\np2p_address = 127.0.0.1:1\n").unwrap_err();
        assert_eq!(err.key.as_deref(), Some("dht.api_address"));
        assert_eq!(err.line, Some(1));
    }

    #[test]
    fn unknown_key_is_a_warning() {
        let cfg =
            parse("[dht]\np2p_address = 127.0.0.1:1\napi_address = 127.0.0.1:2\ncolour = blue\n")
                .unwrap();
        assert_eq!(cfg.warnings.len(), 1);
        assert!(cfg.warnings[0].contains(":4: unknown key `dht.colour`"));
    }

    #[test]
    fn bootstrapper_list_and_durations() {
        let cfg = parse(
            "[dht]\np2p_address = 127.0.0.1:1\napi_address = [::1]:2\n\
             bootstrapper = 10.0.0.1:5, host.example:6\nrequest_timeout = 250ms\nmax_ttl = 2h\n",
        )
        .unwrap();
        let dht = cfg.require_dht().unwrap();
        assert_eq!(dht.bootstrappers.len(), 2);
        assert_eq!(dht.kad.request_timeout, Duration::from_millis(250));
        assert_eq!(dht.kad.max_ttl, Duration::from_secs(7200));
        assert_eq!(dht.api_address, "[::1]:2".parse().unwrap());
    }

    #[test]
    fn malformed_address_and_syntax_errors_are_reported() {
        let err = parse("[dht]\np2p_address = nowhere\napi_address = 127.0.0.1:2\n").unwrap_err();
        assert_eq!(err.line, Some(2));
        let err = parse("[dht\np2p_address = 1\n").unwrap_err();
        assert!(err.message.contains("closing `]`"), "{err}");
        assert_eq!(err.line, Some(1));
        let err = parse(
            "[dht]\np2p_address = 127.0.0.1:1\napi_address = 127.0.0.1:2\nbootstrapper = a:b\n",
        )
        .unwrap_err();
        assert_eq!(err.key.as_deref(), Some("dht.bootstrapper"));
    }
}
