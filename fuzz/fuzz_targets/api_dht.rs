//! Fuzz target: DHT API messages (650–657) from a local client. Decodes, and checks the
//! round trip of what decodes; see `voidmesh_proto::fuzz_checks::api_dht`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| voidmesh_proto::fuzz_checks::api_dht(data));
