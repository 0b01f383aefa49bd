//! Fuzz target: the INI config parser, `voidmesh_node::config::Config::parse`, on
//! arbitrary UTF-8 text. It must return Ok or Err, never panic; see
//! `voidmesh_node::fuzz_checks::config`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| voidmesh_node::fuzz_checks::config(data));
