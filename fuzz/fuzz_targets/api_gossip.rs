//! Fuzz target: Gossip API messages (500–503) from a local client. Decodes, and checks the
//! round trip of what decodes; see `voidmesh_proto::fuzz_checks::api_gossip`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| voidmesh_proto::fuzz_checks::api_gossip(data));
