//! libFuzzer entry for the `compose` target; the body and its properties are in
//! `presenced_fuzz::compose` (src/lib.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| presenced_fuzz::compose(data));
