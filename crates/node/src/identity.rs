//! Which hostkey a node uses: the configured file, or one generated once under data_dir.

use crate::config::Config;
use crate::NodeError;
use voidmesh_net::Identity;

/// File name of the generated hostkey inside `data_dir`.
pub const GENERATED_HOSTKEY: &str = "hostkey.pem";

/// Loads the hostkey named by `hostkey`, or — when the key is absent — the one generated
/// under `data_dir`, creating it on first use.
///
/// # Errors
/// [`NodeError::Identity`] when the configured file is missing or not a valid key, or the
/// generated one cannot be written.
pub fn load_or_create(config: &Config) -> Result<Identity, NodeError> {
    if let Some(path) = &config.hostkey {
        return Identity::load(path).map_err(|e| NodeError::Identity(e.to_string()));
    }
    let path = config.data_dir.join(GENERATED_HOSTKEY);
    if path.exists() {
        return Identity::load(&path).map_err(|e| NodeError::Identity(e.to_string()));
    }
    std::fs::create_dir_all(&config.data_dir).map_err(|e| {
        NodeError::Identity(format!(
            "cannot create data_dir {}: {e}",
            config.data_dir.display()
        ))
    })?;
    let identity = Identity::generate();
    identity
        .save(&path)
        .map_err(|e| NodeError::Identity(e.to_string()))?;
    tracing::info!(path = %path.display(), node_id = %identity.node_id(), "generated a new hostkey");
    Ok(identity)
}
