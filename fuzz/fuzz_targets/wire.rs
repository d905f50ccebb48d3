//! libFuzzer entry for the `wire` target; the body and its properties are in
//! `presenced_fuzz::wire` (src/lib.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| presenced_fuzz::wire(data));
