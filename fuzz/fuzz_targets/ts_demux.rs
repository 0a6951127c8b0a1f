//! libFuzzer entry for `hlsd::fuzzing::ts_demux` (the harness body lives in the library so the
//! `tests/fuzz_smoke.rs` smoke test runs the same code).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hlsd::fuzzing::ts_demux(data));
