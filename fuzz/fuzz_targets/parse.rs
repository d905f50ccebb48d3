//! libFuzzer entry for the `parse` target; the body and its properties are in
//! `presenced_fuzz::parse` (src/lib.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| presenced_fuzz::parse(data));
