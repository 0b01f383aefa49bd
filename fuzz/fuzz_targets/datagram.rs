//! Fuzz target: overlay datagrams. Opens the input as a datagram, then as altered copies
//! of valid requests and replies, and checks that nothing panics and no altered datagram
//! is accepted; see `voidmesh_net::datagram::fuzz_open`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| voidmesh_net::datagram::fuzz_open(data));
