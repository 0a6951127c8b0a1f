//! Bad input: random bytes, truncated files, streams without SPS/PPS, B-frames, a missing frame
//! rate and a resolution change. Each gives the documented behaviour — a file/stdin source that
//! cannot be used ends hlsd with exit code 1 and a message naming the fix; an exec source logs it
//! and restarts; a usable stream plays with the rules intact — and never a panic.

mod common;

use common::rules::{assert_valid, Rules};
use common::*;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

const EXIT_TIMEOUT: Duration = Duration::from_secs(15);

/// Runs a live hlsd on `source` that must fail: exit code 1, stderr naming `needles`, no panic.
fn assert_fails(source: &str, extra: &[&str], needles: &[&str]) -> String {
    let mut args = vec!["--listen", "127.0.0.1:0", "--source", source];
    args.extend_from_slice(extra);
    let (st, err) = Hlsd::run_to_exit(&args, EXIT_TIMEOUT);
    assert!(
        !err.contains("panicked"),
        "hlsd panicked on {source}:\n{err}"
    );
    assert_eq!(
        st.code(),
        Some(1),
        "{source}: exit status {st:?}; stderr:\n{err}"
    );
    let last = err
        .lines()
        .rev()
        .find(|l| l.starts_with("hlsd: "))
        .unwrap_or_else(|| panic!("{source}: no 'hlsd: ...' error line:\n{err}"));
    for n in needles {
        assert!(
            last.contains(n),
            "{source}: error line should mention {n:?}: {last}"
        );
    }
    last.to_string()
}

/// Feeds `data` to `hlsd --source stdin` (all at once) and returns (exit status, stderr).
fn stdin_fails(data: Vec<u8>, extra: &[&str], needles: &[&str]) {
    let mut args = vec!["--source", "stdin"];
    args.extend_from_slice(extra);
    let (mut srv, mut stdin) = Hlsd::start_with_stdin(&args);
    let w = std::thread::spawn(move || {
        let _ = stdin.write_all(&data);
    });
    let st = srv
        .wait_exit(EXIT_TIMEOUT)
        .unwrap_or_else(|| panic!("stdin: hlsd still running:\n{}", srv.stderr()));
    w.join().unwrap();
    let err = srv.stderr();
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(st.code(), Some(1), "stdin: exit status {st:?}:\n{err}");
    let last = err
        .lines()
        .rev()
        .find(|l| l.starts_with("hlsd: "))
        .unwrap_or_else(|| panic!("no error line:\n{err}"));
    for n in needles {
        assert!(
            last.contains(n),
            "stdin: error line should mention {n:?}: {last}"
        );
    }
}

fn write(dir: &Path, name: &str, data: &[u8]) -> String {
    let p = dir.join(name);
    std::fs::write(&p, data).unwrap();
    p.to_str().unwrap().to_string()
}

/// Annex-B stream without its SPS and PPS NAL units.
fn strip_parameter_sets(data: &[u8]) -> Vec<u8> {
    nal_units(data)
        .into_iter()
        .filter(|n| {
            let i = n.iter().position(|&b| b == 1).unwrap() + 1;
            !matches!(n.get(i).map(|b| b & 0x1f), Some(7) | Some(8))
        })
        .flat_map(|n| n.iter().copied())
        .collect()
}

#[test]
fn random_bytes() {
    let dir = tempfile::tempdir().unwrap();
    // Plain noise (no start codes): not H.264 at all.
    let noise = pseudo_random(300_000, 1);
    let f = write(dir.path(), "noise.bin", &noise);
    assert_fails(&format!("file:{f}"), &["--no-pace"], &["H.264"]);
    let empty = write(dir.path(), "empty.h264", b"");
    assert_fails(&format!("file:{empty}"), &["--no-pace"], &["H.264"]);
    // Noise cut into "NAL units" by start codes: random NAL types, SPS that do not parse,
    // slice headers with any slice type. Whatever it decides, it is an error, not a panic.
    for seed in 2..8u64 {
        let mut v = Vec::new();
        for (i, chunk) in pseudo_random(200_000, seed).chunks(700).enumerate() {
            v.extend_from_slice(&[0, 0, 0, 1]);
            // Keep the forbidden bit clear in half of them so they are not simply skipped.
            let mut c = chunk.to_vec();
            if i % 2 == 0 {
                c[0] &= 0x7f;
            }
            v.extend_from_slice(&c);
        }
        let f = write(dir.path(), &format!("nals{seed}.h264"), &v);
        assert_fails(&format!("file:{f}"), &["--no-pace"], &[]);
    }
    // Same on stdin.
    stdin_fails(pseudo_random(300_000, 9), &[], &["H.264"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_bytes_exec_restarts_without_panic() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "noise.bin", &pseudo_random(100_000, 3));
    let srv = Hlsd::start(&["--source", &format!("exec:cat {f}")]);
    // The encoder "exits" after each noise dump: it is restarted (0.5 s, then 1 s backoff).
    assert!(
        srv.wait_stderr("restarting", Duration::from_secs(20)),
        "{}",
        srv.stderr()
    );
    let c = client();
    let h = get(&c, &srv.url("/healthz")).await;
    assert_eq!(h.status, 200);
    assert!(h.text().contains("\"stream\":\"starting\""), "{}", h.text());
    let n = srv.stderr().matches("encoder started").count();
    assert!(n >= 1, "{}", srv.stderr());
    srv.assert_no_panic();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_file() {
    let dir = tempfile::tempdir().unwrap();
    let full = std::fs::read(fixture(FIXTURE_720P)).unwrap();
    // Cut in the middle of a frame (not at a start code).
    let mut cut = 500_000;
    while full[cut..cut + 3] == [0, 0, 1] || full[cut - 1..cut + 2] == [0, 0, 1] {
        cut += 1;
    }
    let data = &full[..cut];
    let aus = access_units(data).len() as u64;
    assert!(aus > 60 && aus < FIXTURE_720P_FRAMES, "{aus}");
    let f = write(dir.path(), "cut.h264", data);
    let srv = Hlsd::start(&["--source", &format!("file:{f}"), "--no-pace"]);
    let c = client();
    let pl = wait_for_endlist(&c, &srv.base).await;
    let pl = assert_valid(&pl.text, &Rules::default());
    let groups = probe_playlist(&c, &srv.base, &pl, dir.path()).await;
    assert_eq!(groups.len(), 1);
    let (probe, samples, _) = &groups[0];
    // Every complete frame, and the cut one as the last sample.
    assert_eq!(*samples, aus, "{pl:?}", pl = pl.text);
    assert!(probe.frames + 1 >= aus && probe.frames <= aus, "{probe:?}");
    assert_eq!((probe.width, probe.height), (1280, 720));
    // Still serving after the end.
    let h = get(&c, &srv.url("/healthz")).await;
    assert!(h.text().contains("\"stream\":\"ended\""), "{}", h.text());
    srv.assert_no_panic();

    // Cut inside the very first SPS: no picture at all.
    let f = write(dir.path(), "cut-sps.h264", &full[..10]);
    assert_fails(&format!("file:{f}"), &["--no-pace"], &["H.264"]);
}

#[test]
fn no_sps_is_an_error_naming_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("ok.h264");
    make_h264(&src, "320x240", 2.0, &[]);
    let stripped = strip_parameter_sets(&std::fs::read(&src).unwrap());
    let f = write(dir.path(), "nosps.h264", &stripped);
    // Documented: the message names the missing parameter sets and how to get them.
    assert_fails(&format!("file:{f}"), &["--no-pace"], &["SPS"]);
    stdin_fails(stripped, &[], &["SPS"]);
}

/// A stream joined mid-way (no SPS/PPS before the first pictures) starts at the first IDR that
/// has parameter sets; the frames before it are dropped, not an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pictures_before_the_first_sps_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.h264");
    let b = dir.path().join("b.h264");
    make_h264(&a, "320x240", 1.0, &[]);
    make_h264(&b, "320x240", 2.0, &[]);
    let mut data = strip_parameter_sets(&std::fs::read(&a).unwrap());
    data.extend_from_slice(&std::fs::read(&b).unwrap());
    let f = write(dir.path(), "joined.h264", &data);
    let srv = Hlsd::start(&["--source", &format!("file:{f}"), "--no-pace"]);
    let c = client();
    let pl = wait_for_endlist(&c, &srv.base).await;
    let pl = assert_valid(&pl.text, &Rules::default());
    let groups = probe_playlist(&c, &srv.base, &pl, dir.path()).await;
    assert_eq!(groups.len(), 1);
    assert_eq!(
        groups[0].1, 60,
        "only the 60 frames after the first SPS/PPS"
    );
    assert_eq!(groups[0].0.frames, 60);
    srv.assert_no_panic();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b_frames_are_refused_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("bf.h264");
    make_h264(&src, "320x240", 2.0, &["-bf", "2", "-preset", "medium"]);
    let data = std::fs::read(&src).unwrap();
    let spec = format!("file:{}", src.display());
    assert_fails(&spec, &["--no-pace"], &["B-frames", "-bf 0"]);
    assert_fails(&spec, &[], &["B-frames", "-bf 0"]);
    stdin_fails(data, &[], &["B-frames", "-bf 0"]);
    // exec: logged with the fix, and the encoder is restarted.
    let srv = Hlsd::start(&["--source", &format!("exec:cat {}", src.display())]);
    assert!(
        srv.wait_stderr("-bf 0", Duration::from_secs(20)),
        "exec with B-frames:\n{}",
        srv.stderr()
    );
    assert!(
        srv.wait_stderr("restarting", Duration::from_secs(20)),
        "{}",
        srv.stderr()
    );
    let h = get(&client(), &srv.url("/healthz")).await;
    assert_eq!(h.status, 200);
    srv.assert_no_panic();
}

#[test]
fn missing_frame_rate_names_the_option() {
    // The 1080p capture has no VUI timing: without --framerate hlsd cannot time it.
    let f = fixture(FIXTURE_1080P);
    assert_fails(
        &format!("file:{}", f.display()),
        &["--no-pace"],
        &["--framerate"],
    );
}

/// A resolution change mid-stream: a new init segment, EXT-X-DISCONTINUITY and a new EXT-X-MAP;
/// both halves decode at their own size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolution_change_is_a_discontinuity_with_a_new_init() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.h264");
    let b = dir.path().join("b.h264");
    make_h264(&a, "320x240", 2.0, &[]);
    make_h264(&b, "480x272", 2.0, &[]);
    let mut data = std::fs::read(&a).unwrap();
    data.extend_from_slice(&std::fs::read(&b).unwrap());
    let f = write(dir.path(), "change.h264", &data);
    let srv = Hlsd::start(&["--source", &format!("file:{f}"), "--no-pace"]);
    let c = client();
    let pl = wait_for_endlist(&c, &srv.base).await;
    let pl = assert_valid(&pl.text, &Rules::default());
    let segs: Vec<_> = pl.complete().collect();
    assert_eq!(segs.len(), 4, "{}", pl.text);
    assert!(!segs[0].discontinuity && !segs[1].discontinuity && !segs[3].discontinuity);
    assert!(
        segs[2].discontinuity && segs[2].map_here,
        "the new format needs DISCONTINUITY and a new MAP:\n{}",
        pl.text
    );
    assert_ne!(segs[2].map, segs[1].map);
    assert_eq!(segs[3].map, segs[2].map);
    assert_eq!(pl.discontinuity_sequence, Some(0));
    let groups = probe_playlist(&c, &srv.base, &pl, dir.path()).await;
    assert_eq!(groups.len(), 2);
    for ((probe, samples, n), size) in groups.iter().zip([(320, 240), (480, 272)]) {
        assert_eq!((probe.width, probe.height), size, "{probe:?}");
        assert_eq!((*samples, probe.frames, *n), (60, 60, 2), "{probe:?}");
    }
    // The multivariant playlist describes the current format.
    let mv = get(&c, &srv.url("/stream.m3u8"))
        .await
        .ok_text("multivariant");
    assert!(mv.contains("RESOLUTION=480x272"), "{mv}");
    srv.assert_no_panic();
}
