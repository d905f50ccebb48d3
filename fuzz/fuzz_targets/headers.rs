//! libFuzzer entry for the `headers` target; the body and its properties are in
//! `presenced_fuzz::headers` (src/lib.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| presenced_fuzz::headers(data));
