//! The gossip neighbours of the last run, kept in `data_dir/gossip_peers` (one address
//! per line), so that a restarted module finds the network again through them when its
//! configured bootstrappers are gone — as the DHT does with its remembered contacts.
//! [`crate::service::GossipService`] loads them at start, offers them with the
//! bootstrappers, and writes the current view every [`SAVE_EVERY`] and at shutdown.

use crate::gossip::GossipHandle;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tracing::{debug, warn};

/// File name under the data directory.
pub const FILE: &str = "gossip_peers";
/// How often the running module writes its current neighbours down.
pub const SAVE_EVERY: Duration = Duration::from_secs(30);
/// Most addresses kept.
const MAX_PEERS: usize = 64;

fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(FILE)
}

/// The remembered addresses; none if the file is missing. Lines that are not socket
/// addresses are skipped with a warning (the file is ours, but a person may edit it).
pub fn load(data_dir: &Path) -> Vec<SocketAddr> {
    let text = match std::fs::read_to_string(path(data_dir)) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            warn!(error = %e, "remembered gossip peers unreadable");
            return Vec::new();
        }
    };
    let mut peers = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        match line.parse() {
            Ok(addr) if peers.len() < MAX_PEERS => peers.push(addr),
            Ok(_) => break,
            Err(_) => warn!(line = n + 1, "{FILE}: not an address, skipped"),
        }
    }
    peers
}

/// Writes `peers` down, replacing the file in one rename so a crash leaves the old or
/// the new list, never half of one. An empty list leaves the file alone: a module that
/// lost its neighbours keeps the last ones it had.
pub fn save(data_dir: &Path, peers: &[SocketAddr]) -> std::io::Result<()> {
    if peers.is_empty() {
        return Ok(());
    }
    let text: String = peers
        .iter()
        .take(MAX_PEERS)
        .map(|addr| format!("{addr}\n"))
        .collect();
    let tmp = data_dir.join(format!("{FILE}.tmp"));
    std::fs::write(&tmp, text)?;
    std::fs::rename(tmp, path(data_dir))
}

/// Writes the current neighbours of `gossip` down now; false if the module has stopped.
pub async fn save_view(data_dir: &Path, gossip: &GossipHandle) -> bool {
    let Ok(view) = gossip.view().await else {
        return false;
    };
    let peers: Vec<SocketAddr> = view.into_iter().map(|c| c.addr).collect();
    match save(data_dir, &peers) {
        Ok(()) => debug!(peers = peers.len(), "gossip peers remembered"),
        Err(e) => warn!(error = %e, "gossip peers not remembered"),
    }
    true
}

/// Writes the neighbours down every [`SAVE_EVERY`] until the gossip module stops.
pub async fn keep_saving(data_dir: PathBuf, gossip: GossipHandle) {
    let mut tick = tokio::time::interval(SAVE_EVERY);
    tick.tick().await;
    loop {
        tick.tick().await;
        if !save_view(&data_dir, &gossip).await {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_peers_load_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let peers: Vec<SocketAddr> = vec![
            "10.0.0.1:7001".parse().unwrap(),
            "[2001:db8::1]:7001".parse().unwrap(),
        ];
        save(dir.path(), &peers).unwrap();
        assert_eq!(load(dir.path()), peers);
    }

    #[test]
    fn missing_file_means_none_and_an_empty_view_keeps_the_last_list() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load(dir.path()).is_empty());
        let peers = vec!["10.0.0.1:7001".parse().unwrap()];
        save(dir.path(), &peers).unwrap();
        save(dir.path(), &[]).unwrap();
        assert_eq!(load(dir.path()), peers);
    }

    #[test]
    fn bad_lines_are_skipped_and_the_list_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let mut text = String::from("not an address\n\n10.0.0.1:7001\n");
        for port in 0..100 {
            text.push_str(&format!("10.0.0.2:{port}\n"));
        }
        std::fs::write(dir.path().join(FILE), text).unwrap();
        let peers = load(dir.path());
        assert_eq!(peers.len(), MAX_PEERS);
        assert_eq!(peers[0], "10.0.0.1:7001".parse().unwrap());
    }
}
