//! Smoke test of the load generator `hlsd-load` (src/loadgen, benches/README.md): a few
//! viewers for a few seconds against hlsd on port 0, behind a path prefix (`--base-path`), in
//! LL mode over HTTP/1.1 and HTTP/2 and in plain mode. Each run must finish without a failed
//! request and must have measured lateness (so the PROGRAM-DATE-TIME matching of parts and
//! segments works); a non-loopback target is refused.

mod common;

use common::{fixture, Hlsd, FIXTURE_720P};
use std::process::Command;

/// Runs `hlsd-load ARGS --json` and returns its report.
fn load(args: &[&str]) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_hlsd-load")).args(args).arg("--json").output().expect("run hlsd-load");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "hlsd-load failed: {}\n{stdout}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("bad JSON ({e}): {stdout}"))
}

fn assert_clean(r: &serde_json::Value, lateness: &str) {
    assert_eq!(r["errors_total"], 0, "errors: {r}");
    assert!(r["requests"].as_u64().unwrap() > 0, "{r}");
    let l = &r[lateness];
    assert!(l["count"].as_u64().unwrap() > 0, "no {lateness} measured: {r}");
    // Not a performance bound: a part or segment matched to the wrong PDT would be off by seconds.
    assert!(l["max_ms"].as_f64().unwrap().abs() < 5000.0, "implausible {lateness}: {r}");
}

#[test]
fn viewers_ll_h1_h2_and_plain_through_a_path_prefix() {
    let src = format!("file:{}", fixture(FIXTURE_720P).display());
    let h = Hlsd::start(&["--source", &src, "--loop", "--base-path", "/cam"]);
    let url = format!("{}/stream.m3u8", h.base);
    assert!(url.contains("/cam/"), "{url}");

    let r = load(&[&url, "-n", "4", "--ramp", "0.5", "-d", "3"]);
    assert_clean(&r, "part_lateness");
    // Every part is fetched: about 5 parts/s per viewer at 0.2 s parts (generous lower bound).
    let parts = r["part_lateness"]["count"].as_u64().unwrap();
    assert!(parts >= 4 * 5, "only {parts} parts measured: {r}");

    let r = load(&[&url, "-n", "3", "--ramp", "0.3", "-d", "3", "--http", "2"]);
    assert_clean(&r, "part_lateness");
    assert_eq!(r["http"], "h2c");

    let r = load(&[&url, "-n", "3", "--ramp", "0.3", "-d", "4", "--mode", "plain"]);
    assert_clean(&r, "segment_lateness");
    assert_eq!(r["part_lateness"]["count"], 0, "plain mode fetched parts: {r}");
    h.assert_no_panic();
}

#[test]
fn refuses_non_loopback_targets() {
    let out = Command::new(env!("CARGO_BIN_EXE_hlsd-load")).args(["http://192.0.2.1:8080/stream.m3u8", "-d", "1"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("non-loopback"), "{out:?}");
}
