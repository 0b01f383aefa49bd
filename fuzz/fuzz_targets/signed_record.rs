//! Fuzz target: signed records in their wire form. Decodes, and checks the
//! round trip of what decodes; see `voidmesh_proto::fuzz_checks::signed_record`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| voidmesh_proto::fuzz_checks::signed_record(data));
