//! Fuzz target: chat session messages (700–709) and room posts. Decodes, and checks the
//! round trip of what decodes; see `voidmesh_proto::fuzz_checks::peer_chat`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| voidmesh_proto::fuzz_checks::peer_chat(data));
