//! libFuzzer entry for `hlsd::fuzzing::sps` (the harness body lives in the library so the
//! `tests/fuzz_smoke.rs` smoke test runs the same code).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hlsd::fuzzing::sps(data));
