//! Fuzz target: the INI config parser, `voidmesh_node::config::Config::parse`, on
//! arbitrary UTF-8 text. It must return Ok or Err, never panic; the same check replays
//! the corpus in `crates/node/tests/fuzz_corpus_config.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;
use voidmesh_node::config::Config;

fuzz_target!(|data: &[u8]| {
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
});
