//! The properties the `config` and `pem` fuzz targets (`fuzz/fuzz_targets/`) check on
//! every input, shared with the test that replays their committed corpora
//! (`tests/fuzz_corpus.rs`). Each check panics when a property fails, which is
//! what the fuzzer reports as a crash. The wire-format targets live in
//! `voidmesh_proto::fuzz_checks`.

use crate::config::Config;
use std::path::Path;
use voidmesh_net::Identity;

/// The INI config parser on arbitrary UTF-8 text: it returns Ok or Err, never panics,
/// and an accepted gossip section keeps `min_connections <= max_connections`.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::parse(Path::new("/fuzz/voidmesh.ini"), text) {
        Ok(config) => {
            if let Some(gossip) = &config.gossip {
                assert!(gossip.gossip.min_connections <= gossip.gossip.max_connections);
            }
            let _ = format!("{config:?}");
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
}

/// The hostkey loader on arbitrary UTF-8 text: a key it accepts is written back as PEM
/// and loads again as the same key.
pub fn pem(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(identity) = Identity::from_pkcs8_pem(text) {
        let again = Identity::from_pkcs8_pem(&identity.to_pkcs8_pem())
            .expect("a written hostkey loads again");
        assert_eq!(again.node_id(), identity.node_id());
        assert_eq!(
            again.signing_key().to_bytes(),
            identity.signing_key().to_bytes()
        );
    }
}
