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
        return check(identity, &path);
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
}
