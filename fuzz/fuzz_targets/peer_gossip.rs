//! Fuzz target: gossip peer messages (504–509). Decodes, and checks the
//! round trip of what decodes; see `voidmesh_proto::fuzz_checks::peer_gossip`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| voidmesh_proto::fuzz_checks::peer_gossip(data));
