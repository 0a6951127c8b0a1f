//! Each source kind end to end: file (both camera captures), stdin (both captures, written at
//! camera speed) and exec (an ffmpeg encoder that exits and is restarted). Every playlist a
//! player-like client reloads is checked against the LL-HLS rules; at the end init + segments
//! (and parts) decode with ffprobe to the expected frame count.

mod common;

use common::rules::{assert_valid, MediaPlaylist, Rules};
use common::*;

/// Checks the ended playlist of a whole-file stream: frame count, size, ENDLIST behaviour.
/// `target` is the TARGETDURATION range: exact for files; arrival-stamped input may make the
/// first segment slightly longer, which may round the target up.
async fn check_ended(
    c: &reqwest::Client,
    srv: &Hlsd,
    pl: &MediaPlaylist,
    frames: u64,
    size: (u32, u32),
    target: (u64, u64),
    segments: usize,
) {
    let base = &srv.base;
    assert!(pl.endlist, "{}", pl.text);
    assert!(
        pl.target
            .is_some_and(|t| (target.0..=target.1).contains(&t)),
        "TARGETDURATION {:?} not in {target:?}:\n{}",
        pl.target,
        pl.text
    );
    assert_eq!(pl.media_sequence, Some(0), "the whole file fits the window");
    assert_eq!(pl.complete().count(), segments, "segments:\n{}", pl.text);
    assert!(pl.hints.is_empty());
    // The server keeps serving after the end: same playlist, blocking directives ignored (8g),
    // no delta update, health says ended.
    let again = media(c, base, "").await;
    assert_eq!(again, pl.text, "an ended playlist must not change");
    for q in ["_HLS_msn=1000", "_HLS_msn=0&_HLS_part=500", "_HLS_skip=YES"] {
        let text = media(c, base, q).await;
        assert_eq!(text, pl.text, "{q} on an ended stream");
    }
    let h = get(c, &format!("{base}/healthz")).await;
    assert!(h.text().contains("\"stream\":\"ended\""), "{}", h.text());
    let dir = tempfile::tempdir().unwrap();
    let groups = probe_playlist(c, base, pl, dir.path()).await;
    assert_eq!(groups.len(), 1);
    let (probe, samples, _) = &groups[0];
    assert_eq!(*samples, frames, "samples in the segments' trun boxes");
    assert_eq!(probe.packets, frames, "{probe:?}");
    assert_eq!(probe.frames, frames, "decoded frames: {probe:?}");
    assert_eq!(
        (probe.codec.as_str(), probe.width, probe.height),
        ("h264", size.0, size.1)
    );
    assert_eq!(
        probe.keyframes, segments as u64,
        "one IDR at the start of every segment"
    );
    srv.assert_no_panic();
}

/// 720p capture (SPS/PPS before every IDR, IDR every 60 frames = 2 s) in real time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_720p_real_time() {
    let path = fixture(FIXTURE_720P);
    let srv = Hlsd::start(&["--source", &format!("file:{}", path.display())]);
    let c = client();
    let f = follow(&c, &srv.base, &Rules::default(), |_| false, 2000).await;
    assert!(f.tracker.reloads >= 15, "{} reloads", f.tracker.reloads);
    assert!(
        f.hints_ok >= 15 && f.tracker.hints_confirmed >= 15,
        "hints ok {} confirmed {}",
        f.hints_ok,
        f.tracker.hints_confirmed
    );
    assert!(f.hints_never_published <= 1);
    let pl = &f.last;
    // 60-frame GOPs: segments of exactly 2 s (60 frames), the last one 53 frames.
    let d: Vec<f64> = pl.complete().map(|s| s.extinf.unwrap()).collect();
    assert_eq!(d.len(), 5, "{d:?}");
    for x in &d[..4] {
        assert!((x - 2.0).abs() < 1e-4, "{d:?}");
    }
    assert!((d[4] - 53.0 / 30.0).abs() < 1e-4, "{d:?}");
    check_ended(&c, &srv, pl, FIXTURE_720P_FRAMES, (1280, 720), (2, 2), 5).await;
}

/// 1080p capture (no VUI timing: --framerate 25; IDR every 60 frames = 2.4 s) as fast as possible.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_1080p_no_pace() {
    let path = fixture(FIXTURE_1080P);
    let srv = Hlsd::start(&[
        "--source",
        &format!("file:{}", path.display()),
        "--framerate",
        "25",
        "--no-pace",
    ]);
    let c = client();
    let pl = wait_for_endlist(&c, &srv.base).await;
    let pl = assert_valid(&pl.text, &Rules::default());
    assert!(
        (pl.part_target.unwrap() - 0.2).abs() < 1e-9,
        "PART-TARGET is 5 frames at 25 fps"
    );
    let d: Vec<f64> = pl.complete().map(|s| s.extinf.unwrap()).collect();
    assert_eq!(d.len(), 2);
    assert!(
        (d[0] - 2.4).abs() < 1e-4 && (d[1] - 56.0 / 25.0).abs() < 1e-4,
        "{d:?}"
    );
    check_ended(&c, &srv, &pl, FIXTURE_1080P_FRAMES, (1920, 1080), (3, 3), 2).await;
}

/// Feeds a capture into `--source stdin` at camera speed and follows the live stream.
async fn stdin_capture(
    name: &str,
    fps: f64,
    extra: &[&str],
    frames: u64,
    size: (u32, u32),
    target: u64,
    segments: usize,
) {
    let data = std::fs::read(fixture(name)).unwrap();
    let mut args = vec!["--source", "stdin"];
    args.extend_from_slice(extra);
    let (srv, stdin) = Hlsd::start_with_stdin(&args);
    let aus = access_units(&data).len() as u64;
    assert_eq!(aus, frames, "test's own Annex-B splitter");
    let feeder = feed_paced(data, fps, stdin);
    let c = client();
    // Arrival-stamped: PDT follows arrival, allow more jitter on a loaded machine.
    let rules = Rules {
        pdt_tolerance: 0.3,
        ..Rules::default()
    };
    let f = follow(&c, &srv.base, &rules, |_| false, 2000).await;
    assert_eq!(feeder.join().unwrap() as u64, frames);
    assert!(f.tracker.reloads >= 10, "{} reloads", f.tracker.reloads);
    assert!(f.hints_ok >= 10, "{} held hints completed", f.hints_ok);
    check_ended(
        &c,
        &srv,
        &f.last,
        frames,
        size,
        (target, target + 1),
        segments,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdin_720p() {
    stdin_capture(
        FIXTURE_720P,
        30.0,
        &[],
        FIXTURE_720P_FRAMES,
        (1280, 720),
        2,
        5,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdin_1080p() {
    stdin_capture(
        FIXTURE_1080P,
        25.0,
        &["--framerate", "25"],
        FIXTURE_1080P_FRAMES,
        (1920, 1080),
        3,
        2,
    )
    .await;
}

/// A live encoder: `{secs}` of 320x240 at 30 fps in real time, IDR every 30 frames, no
/// B-frames, each frame written as soon as it is encoded.
const FFMPEG_LIVE: &str = "ffmpeg -hide_banner -loglevel error -nostdin -re -f lavfi -i testsrc2=size=320x240:rate=30 \
    -t {secs} -c:v libx264 -preset ultrafast -tune zerolatency -bf 0 -g 30 -keyint_min 30 -sc_threshold 0 \
    -pix_fmt yuv420p -flush_packets 1 -f h264 -";

/// exec: an ffmpeg encoder that ends after 2.5 s; hlsd restarts it and marks the restart with
/// EXT-X-DISCONTINUITY.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_ffmpeg_restart_is_a_discontinuity() {
    let cmd = format!("exec:exec {}", FFMPEG_LIVE.replace("{secs}", "2.5"));
    let srv = Hlsd::start(&["--source", &cmd]);
    let c = client();
    let rules = Rules {
        pdt_tolerance: 0.3,
        ..Rules::default()
    };
    // Follow until two complete segments after the first discontinuity are listed.
    let after_disc = |pl: &MediaPlaylist| {
        let i = pl.segments.iter().position(|s| s.discontinuity);
        i.is_some_and(|i| pl.segments[i..].iter().filter(|s| s.complete()).count() >= 2)
    };
    let f = follow(&c, &srv.base, &rules, after_disc, 500).await;
    let pl = &f.last;
    assert!(!pl.endlist, "exec sources restart instead of ending");
    assert!(f.hints_ok >= 10, "{} held hints completed", f.hints_ok);
    let i = pl.segments.iter().position(|s| s.discontinuity).unwrap();
    let disc = &pl.segments[i];
    assert!(i > 0, "the first segment cannot be a discontinuity");
    assert!(
        disc.pdt.is_some(),
        "rule 14: PDT on the DISCONTINUITY segment"
    );
    assert_eq!(
        disc.map, pl.segments[0].map,
        "same encoder settings: same init segment"
    );
    assert_eq!(
        pl.discontinuity_sequence,
        Some(0),
        "the discontinuity is still in the window"
    );
    // 75 frames per run with an IDR every 30: segments of 30, 30 and 15 frames.
    let dir = tempfile::tempdir().unwrap();
    let groups = probe_playlist(&c, &srv.base, pl, dir.path()).await;
    assert_eq!(groups.len(), 1);
    let (probe, samples, segs) = &groups[0];
    assert_eq!(
        probe.frames, *samples,
        "every muxed frame decodes: {probe:?}"
    );
    assert_eq!(
        probe.keyframes, *segs as u64,
        "one IDR per segment: {probe:?}"
    );
    let before: Vec<u64> = {
        let mut v = Vec::new();
        for s in pl.segments[..i].iter() {
            let seg = get(&c, &resolve(&srv.base, s.uri.as_ref().unwrap())).await;
            v.push(fmp4_samples(&seg.body).0);
        }
        v
    };
    assert_eq!(
        before,
        vec![30, 30, 15],
        "frames per segment of the first encoder run"
    );
    for s in pl.segments[i..].iter().filter(|s| s.complete()) {
        let seg = get(&c, &resolve(&srv.base, s.uri.as_ref().unwrap())).await;
        assert_eq!(
            fmp4_samples(&seg.body).0,
            30,
            "segment {} of the second run",
            s.msn
        );
    }
    assert!(srv.stderr().contains("restarting"), "{}", srv.stderr());
    srv.assert_no_panic();
}

/// stdin with the timing hiccups of a real link (Wi-Fi, a busy Pi): frames arrive up to 100 ms
/// late (pseudo-random, the same every run), so some come in bursts, and once a 150 ms stall. Timestamps
/// are taken on arrival, so this is where the segmenter must still keep every part within
/// 85-100 % of PART-TARGET (rule 4), PDT close to EXTINF (rule 14) and every frame.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdin_jitter_keeps_part_rules() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("in.h264");
    make_h264(&src, "320x240", 6.0, &[]);
    let data = std::fs::read(&src).unwrap();
    let frames = access_units(&data).len() as u64;
    assert_eq!(frames, 180);
    let (srv, stdin) = Hlsd::start_with_stdin(&["--source", "stdin"]);
    let jitter = pseudo_random(180, 7);
    let due = move |i: usize| {
        let mut t = i as f64 / 30.0 + (jitter[i] as f64 / 255.0) * 0.1;
        if (40..45).contains(&i) {
            t = t.max(40.0 / 30.0 + 0.15);
        }
        std::time::Duration::from_secs_f64(t)
    };
    let feeder = feed_scheduled(data, due, stdin);
    let c = client();
    let rules = Rules {
        pdt_tolerance: 0.3,
        ..Rules::default()
    };
    let f = follow(&c, &srv.base, &rules, |_| false, 1000).await;
    assert_eq!(feeder.join().unwrap() as u64, frames);
    check_ended(&c, &srv, &f.last, frames, (320, 240), (1, 2), 6).await;
}

/// An encoder that stalls: blocked playlist and preload-hint requests that cannot be answered
/// within 3 target durations get 503 (rule 8f) with Retry-After, no-store and CORS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_exec_source_answers_503_after_3t() {
    // 45 frames at camera speed, then silence (no restart within the test: --stall-timeout 60).
    let cmd = format!(
        "exec:{}; exec sleep 60",
        FFMPEG_LIVE.replace("{secs}", "1.5")
    );
    let srv = Hlsd::start(&["--source", &cmd, "--stall-timeout", "60"]);
    let c = client();
    // Frames 30..41 make parts 0 and 1 of segment 1; frames 42..44 never fill part 2.
    let text = media(&c, &srv.base, "_HLS_msn=1&_HLS_part=1").await;
    let pl = assert_valid(
        &text,
        &Rules {
            pdt_tolerance: 0.3,
            ..Rules::default()
        },
    );
    assert_eq!(pl.next_part_position(), (1, 2), "{text}");
    let hint = pl.part_hint().unwrap();
    let (c2, url) = (c.clone(), resolve(&srv.base, &hint));
    let held_part = tokio::spawn(async move { get(&c2, &url).await });
    let (c3, url) = (c.clone(), srv.url("/media.m3u8?_HLS_msn=1&_HLS_part=2"));
    let held_pl = tokio::spawn(async move { get(&c3, &url).await });
    let r = get(&c, &srv.url("/media.m3u8?_HLS_msn=2")).await;
    for (r, what) in [
        (r, "_HLS_msn=2"),
        (held_pl.await.unwrap(), "_HLS_msn=1&_HLS_part=2"),
        (held_part.await.unwrap(), "hinted part"),
    ] {
        assert_eq!(
            r.status,
            503,
            "{what}: {:?}",
            String::from_utf8_lossy(&r.body)
        );
        assert_eq!(
            r.header("cache-control").as_deref(),
            Some("no-store"),
            "{what}"
        );
        assert_eq!(
            r.header("access-control-allow-origin").as_deref(),
            Some("*"),
            "{what}"
        );
        assert!(r.header("retry-after").is_some(), "{what}: Retry-After");
    }
    // The server is still serving the stream it has.
    let now = assert_valid(
        &media(&c, &srv.base, "").await,
        &Rules {
            pdt_tolerance: 0.3,
            ..Rules::default()
        },
    );
    assert_eq!(now.next_part_position(), (1, 2));
    srv.assert_no_panic();
}

/// stdin from an encoder that buffered its first frames during start-up (common: the first
/// frames come out together) and then runs at camera speed: with an IDR every 30 frames at
/// 30 fps and 1 s segments, segments are still cut at every IDR (30 frames, TARGETDURATION 1)
/// and parts keep rule 4.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdin_startup_burst_still_cuts_at_each_idr() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("in.h264");
    make_h264(&src, "320x240", 3.0, &[]);
    let data = std::fs::read(&src).unwrap();
    assert_eq!(access_units(&data).len(), 90);
    let (srv, stdin) = Hlsd::start_with_stdin(&["--source", "stdin"]);
    // Frames 0..9 at once after 0.3 s, then one every 1/30 s on the original schedule.
    let due = |i: usize| std::time::Duration::from_secs_f64((i as f64 / 30.0).max(0.3));
    let feeder = feed_scheduled(data, due, stdin);
    let c = client();
    let rules = Rules {
        pdt_tolerance: 0.3,
        ..Rules::default()
    };
    let f = follow(&c, &srv.base, &rules, |_| false, 1000).await;
    assert_eq!(feeder.join().unwrap(), 90);
    let pl = &f.last;
    let mut per_segment = Vec::new();
    for s in pl.complete() {
        let seg = get(&c, &resolve(&srv.base, s.uri.as_ref().unwrap())).await;
        per_segment.push(fmp4_samples(&seg.body).0);
    }
    assert_eq!(
        per_segment,
        vec![30, 30, 30],
        "frames per segment (an IDR every 30 frames):\n{}",
        pl.text
    );
    assert_eq!(pl.target, Some(1), "TARGETDURATION:\n{}", pl.text);
    check_ended(&c, &srv, pl, 90, (320, 240), (1, 1), 3).await;
}
