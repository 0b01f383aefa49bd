//! `voidmesh put` and `voidmesh get`: a small client of a node's VoidPhone DHT API
//! (docs/voidphone-api.md), for trying a node or a testnet by hand.

use anyhow::{Context, Result};
use bytes::Bytes;
use std::io::Write;
use std::time::Duration;
use voidmesh_node::client::DhtClient;
use voidmesh_node::config::resolve_addr;
use voidmesh_proto::Key;

/// How long `get` waits for the node's answer (a node bounds a GET by its `get_timeout`,
/// 10 s by default).
const GET_WAIT: Duration = Duration::from_secs(15);

/// A key as typed: 64 hex digits are the key itself; anything else is hashed (SHA-256),
/// so that `greeting` names the same key everywhere.
pub fn parse_key(text: &str) -> Key {
    if text.len() == 64 {
        if let Some(key) = Key::from_hex(text) {
            return key;
        }
    }
    use sha2::{Digest, Sha256};
    Key(Sha256::digest(text.as_bytes()).into())
}

async fn connect(api: &str) -> Result<DhtClient> {
    let addr = resolve_addr(api).map_err(|e| anyhow::anyhow!("--api: {e}"))?;
    DhtClient::connect(addr)
        .await
        .with_context(|| format!("connecting to the DHT API at {addr}"))
}

/// Sends a PUT of `value` under `key`; prints the key used.
pub async fn put(api: &str, key: &str, value: &str, ttl: u16, replication: u8) -> Result<()> {
    let key = parse_key(key);
    let mut client = connect(api).await?;
    client
        .put(
            key,
            Bytes::copy_from_slice(value.as_bytes()),
            ttl,
            replication,
        )
        .await
        .context("sending the PUT")?;
    println!("put {key}");
    Ok(())
}

/// GETs `key` and writes the value to stdout; "not found" is an error (exit status 1).
pub async fn get(api: &str, key: &str) -> Result<()> {
    let key = parse_key(key);
    let mut client = connect(api).await?;
    let value = tokio::time::timeout(GET_WAIT, client.get(key))
        .await
        .context("no answer from the node")?
        .context("GET")?;
    match value {
        Some(value) => {
            let mut out = std::io::stdout();
            out.write_all(&value)?;
            out.write_all(b"\n")?;
            Ok(())
        }
        None => anyhow::bail!("not found: {key}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_hex_or_hashed() {
        let hex = "00".repeat(32);
        assert_eq!(parse_key(&hex), Key([0; 32]));
        assert_eq!(parse_key("greeting"), parse_key("greeting"));
        assert_ne!(parse_key("greeting"), parse_key("greetings"));
    }
}
