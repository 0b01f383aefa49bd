//! Which hostkey a node uses: the configured file, or one generated once under data_dir.

use crate::config::Config;
use crate::NodeError;
use voidmesh_kad::RECOMMENDED_ID_DIFFICULTY;
use voidmesh_net::Identity;
use voidmesh_proto::id::id_puzzle_ok;

/// File name of the generated hostkey inside `data_dir`.
pub const GENERATED_HOSTKEY: &str = "hostkey.pem";

/// Loads the hostkey named by `hostkey`, or — when the key is absent — the one generated
/// under `data_dir`, creating it on first use.
///
/// # Errors
/// [`NodeError::Identity`] when the configured file is missing or not a valid key, or the
/// generated one cannot be written.
pub fn load_or_create(config: &Config) -> Result<Identity, NodeError> {
    let difficulty = config.dht.as_ref().map_or(0, |d| d.kad.id_difficulty);
    let check = |identity: Identity, path: &std::path::Path| {
        if id_puzzle_ok(&identity.node_id(), difficulty) {
            Ok(identity)
        } else {
            Err(NodeError::Identity(format!(
                "{}: node id {} does not meet id_difficulty {difficulty} (peers would refuse it); \
                 make one with `voidmesh keygen --id-difficulty {difficulty} PATH`",
                path.display(),
                identity.node_id()
            )))
        }
    };
    if let Some(path) = &config.hostkey {
        let identity = Identity::load(path).map_err(|e| NodeError::Identity(e.to_string()))?;
        return check(identity, path);
    }
    let path = config.data_dir.join(GENERATED_HOSTKEY);
    if path.exists() {
        let identity = Identity::load(&path).map_err(|e| NodeError::Identity(e.to_string()))?;
        if id_puzzle_ok(&identity.node_id(), difficulty) {
            return Ok(identity);
        }
        // A key this node generated itself under an easier puzzle (an older default):
        // replaced by one that meets it, the old one kept beside it.
        let aside = path.with_extension("pem.below-puzzle");
        std::fs::rename(&path, &aside).map_err(|e| {
            NodeError::Identity(format!("cannot move {} aside: {e}", path.display()))
        })?;
        tracing::warn!(
            old = %aside.display(),
            old_node_id = %identity.node_id(),
            "the generated hostkey does not meet id_difficulty {difficulty}; generating a new one (this node's id changes)"
        );
    }
    crate::private::private_dir(&config.data_dir).map_err(|e| {
        NodeError::Storage(format!(
            "cannot create data_dir {}: {e}",
            config.data_dir.display()
        ))
    })?;
    let identity = generate_with_puzzle(difficulty.max(RECOMMENDED_ID_DIFFICULTY), |_| {});
    identity
        .save(&path)
        .map_err(|e| NodeError::Identity(e.to_string()))?;
    tracing::info!(path = %path.display(), node_id = %identity.node_id(), "generated a new hostkey");
    Ok(identity)
}

/// Generates hostkeys until one's node id solves the S/Kademlia static puzzle
/// (SHA-256(node id) starts with `difficulty` zero bits); `progress` is told the number of
/// keys tried so far every 256 tries. Expect about 2^difficulty tries.
pub fn generate_with_puzzle(difficulty: u8, mut progress: impl FnMut(u64)) -> Identity {
    let mut tries = 0u64;
    loop {
        let identity = Identity::generate();
        tries += 1;
        if id_puzzle_ok(&identity.node_id(), difficulty) {
            progress(tries);
            return identity;
        }
        if tries.is_multiple_of(256) {
            progress(tries);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_key_solves_the_puzzle() {
        let identity = generate_with_puzzle(6, |_| {});
        assert!(id_puzzle_ok(&identity.node_id(), 6));
    }

    /// Identities cost work by default: a config that does not say gets the recommended
    /// puzzle, and a key generated earlier under an easier one is replaced.
    #[test]
    fn by_default_a_generated_hostkey_meets_the_recommended_puzzle() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "data_dir = {}\n[dht]\np2p_address = 127.0.0.1:0\napi_address = 127.0.0.1:0\n",
            dir.path().join("data").display()
        );
        let config = Config::parse(&dir.path().join("node.ini"), &text).unwrap();
        let difficulty = config.dht.as_ref().unwrap().kad.id_difficulty;
        assert_eq!(difficulty, RECOMMENDED_ID_DIFFICULTY);
        assert!(difficulty >= 15, "about a second of mining");
        // An old key below the puzzle, as an earlier default generated it.
        let old = (0..)
            .map(|_| Identity::generate())
            .find(|i| !id_puzzle_ok(&i.node_id(), difficulty))
            .unwrap();
        std::fs::create_dir_all(&config.data_dir).unwrap();
        old.save(&config.data_dir.join(GENERATED_HOSTKEY)).unwrap();
        let identity = load_or_create(&config).unwrap();
        assert!(id_puzzle_ok(&identity.node_id(), difficulty));
        assert_ne!(identity.node_id(), old.node_id());
        assert!(config.data_dir.join("hostkey.pem.below-puzzle").exists());
        // Reused on the next start.
        assert_eq!(
            load_or_create(&config).unwrap().node_id(),
            identity.node_id()
        );
    }
}
