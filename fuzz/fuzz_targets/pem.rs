//! Fuzz target: the hostkey loader, `voidmesh_net::Identity::from_pkcs8_pem`, on arbitrary
//! UTF-8 text. A key it accepts must survive `to_pkcs8_pem` and load again as the same
//! key; see `voidmesh_node::fuzz_checks::pem`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| voidmesh_node::fuzz_checks::pem(data));
