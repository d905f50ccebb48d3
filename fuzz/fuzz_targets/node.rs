//! libFuzzer entry for the `node` target; the harness and its properties are in
//! `presenced_fuzz::node` (src/node.rs). Run it in a loopback-only network namespace
//! (see README.md).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| presenced_fuzz::node(data));
