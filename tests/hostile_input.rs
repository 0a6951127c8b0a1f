//! Hostile and broken input (README "Hostile and broken input"): endless bytes without a start
//! code, a 50 MB NAL unit, an encoder that sends one IDR only or none at all, a source that exits
//! at once in a loop, a silent source, paused/bursty input and a looped file. Each case checks
//! its documented behaviour, that hlsd does not panic, and that its peak RSS (VmHWM from
//! /proc/PID/status) stays under a documented bound.
//!
//! Large inputs are generated while they are written (a 1 MiB block repeated), so the test does
//! not hold them in memory either.

mod common;

use common::rules::{assert_valid, Rules};
use common::*;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

/// Peak RSS bound for every case here. hlsd's own baseline with a small stream is ~12 MiB (the
/// cases here peak at 12–30 MiB); the parser may hold one NAL unit of up to 16 MiB (twice, while
/// it is copied) plus one access unit of 16 MiB, and the window its segments. Without the limits
/// the 300 MB case peaked at 614 MiB and the 50 MB one at 158 MiB.
const RSS_BOUND_KIB: u64 = 96 * 1024;

/// A field of /proc/PID/status in KiB (VmHWM: peak resident set size).
fn proc_status_kib(pid: u32, key: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("hlsd is running");
    let line = s.lines().find(|l| l.starts_with(key)).unwrap_or_else(|| panic!("no {key} in status"));
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn assert_rss_bounded(srv: &Hlsd, case: &str) -> u64 {
    let hwm = proc_status_kib(srv.pid(), "VmHWM:");
    eprintln!("{case}: hlsd VmHWM {} KiB", hwm);
    assert!(hwm < RSS_BOUND_KIB, "{case}: peak RSS {hwm} KiB over the bound {RSS_BOUND_KIB} KiB");
    hwm
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).expect("hlsd is running").count()
}

/// Sum of the samples of a metric whose line starts with `prefix` (name and labels).
async fn metric(c: &reqwest::Client, srv: &Hlsd, prefix: &str) -> f64 {
    let text = get(c, &srv.url("/metrics")).await.ok_text("metrics");
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Writes `mib` MiB of a byte that is never zero (so no start code can appear).
fn write_no_start_code(w: &mut impl Write, mib: usize) -> std::io::Result<()> {
    let block = vec![0xa5u8; 1 << 20];
    for _ in 0..mib {
        w.write_all(&block)?;
    }
    Ok(())
}

fn small_stream(dir: &Path, name: &str, seconds: f64, extra: &[&str]) -> Vec<u8> {
    let p = dir.join(name);
    make_h264(&p, "320x240", seconds, extra);
    std::fs::read(&p).unwrap()
}

/// NAL unit types in an Annex-B buffer, in order.
fn nal_types(data: &[u8]) -> Vec<u8> {
    nal_units(data)
        .into_iter()
        .filter_map(|n| {
            let i = n.iter().position(|&b| b == 1)? + 1;
            n.get(i).map(|b| b & 0x1f)
        })
        .collect()
}

/// A valid stream, then 300 MB without a start code, then the stream again, on stdin. The
/// bytes after the last start code form one endless NAL unit: it is dropped once it passes
/// 16 MiB (counted, logged once), the picture it belonged to is dropped, and the second copy
/// plays from its IDR. `--idle-flush-ms 0` so no idle flush can end the NAL early.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdin_300_mb_without_a_start_code() {
    let dir = tempfile::tempdir().unwrap();
    let a = small_stream(dir.path(), "a.h264", 2.0, &[]);
    let (srv, mut stdin) = Hlsd::start_with_stdin(&["--source", "stdin", "--idle-flush-ms", "0"]);
    let w = std::thread::spawn(move || {
        stdin.write_all(&a)?;
        write_no_start_code(&mut stdin, 300)?;
        stdin.write_all(&a)
    });
    let c = client();
    let pl = wait_for_endlist(&c, &srv.base).await;
    w.join().unwrap().expect("hlsd read all input");
    let pl = assert_valid(&pl.text, &Rules::default());
    let groups = probe_playlist(&c, &srv.base, &pl, dir.path()).await;
    assert_eq!(groups.len(), 1);
    // 60 + 60 pictures less the one the garbage was appended to.
    assert_eq!(groups[0].1, 119, "{}", pl.text);
    assert_eq!(groups[0].0.frames, 119);
    let dropped = metric(&c, &srv, "hlsd_input_discarded_bytes_total{reason=\"nal_too_large\"}").await;
    assert!(dropped >= 299.0 * 1048576.0, "discarded bytes counted: {dropped}");
    let err = srv.stderr();
    assert_eq!(err.matches("larger than 16777216 bytes dropped").count(), 1, "logged once:\n{err}");
    assert_rss_bounded(&srv, "300 MB without a start code");
    srv.assert_no_panic();
}

/// Nothing but bytes without a start code: after 8 MiB stdin ends hlsd with the "not H.264"
/// error (exit 1); memory stays flat while it reads.
#[test]
fn stdin_without_any_start_code_fails_with_bounded_memory() {
    let (mut srv, mut stdin) = Hlsd::start_with_stdin(&["--source", "stdin"]);
    let pid = srv.pid();
    let w = std::thread::spawn(move || {
        let mut peak = 0;
        for _ in 0..300 {
            if write_no_start_code(&mut stdin, 1).is_err() {
                break; // hlsd exited: EPIPE
            }
            if let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
                let kib = s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok());
                peak = peak.max(kib.unwrap_or(0));
            }
        }
        peak
    });
    let st = srv.wait_exit(Duration::from_secs(30)).expect("hlsd exits");
    let peak: u64 = w.join().unwrap();
    eprintln!("no start code at all: hlsd VmHWM {peak} KiB while reading");
    assert_eq!(st.code(), Some(1), "{}", srv.stderr());
    assert!(srv.stderr().contains("Annex-B H.264"), "{}", srv.stderr());
    assert!(peak > 0 && peak < RSS_BOUND_KIB, "{peak} KiB");
    srv.assert_no_panic();
}

/// A file with a 50 MB slice NAL unit between two copies of a stream (read 64 KiB at a time,
/// the NAL ended only by the next start code): the NAL is dropped, both copies are served whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_50_mb_nal_in_a_file_is_dropped_and_later_frames_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let a = small_stream(dir.path(), "a.h264", 2.0, &[]);
    let path = dir.path().join("big-nal.h264");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        f.write_all(&a).unwrap();
        // A P slice header (first_mb_in_slice 0), then 50 MiB of slice "data".
        f.write_all(&[0, 0, 0, 1, 0x41, 0x88]).unwrap();
        write_no_start_code(&mut f, 50).unwrap();
        f.write_all(&a).unwrap();
        f.flush().unwrap();
    }
    let srv = Hlsd::start(&["--source", &format!("file:{}", path.display()), "--no-pace"]);
    let c = client();
    let pl = wait_for_endlist(&c, &srv.base).await;
    let pl = assert_valid(&pl.text, &Rules::default());
    let groups = probe_playlist(&c, &srv.base, &pl, dir.path()).await;
    assert_eq!(groups.len(), 1);
    assert_eq!((groups[0].1, groups[0].0.frames), (120, 120), "{}", pl.text);
    let dropped = metric(&c, &srv, "hlsd_input_discarded_bytes_total{reason=\"nal_too_large\"}").await;
    assert!(dropped >= 50.0 * 1048576.0 - 65536.0, "{dropped}");
    assert_rss_bounded(&srv, "50 MB NAL in a file");
    srv.assert_no_panic();
}

/// x264 with an endless GOP: one IDR, then P frames only. The first segment is ended at the
/// maximum segment length (10 s for 1 s segments), the rest is dropped and counted, and the
/// error names the encoder option to fix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_whose_only_idr_is_the_first_frame() {
    let dir = tempfile::tempdir().unwrap();
    let only = small_stream(
        dir.path(),
        "one-idr.h264",
        25.0,
        &["-g", "100000", "-keyint_min", "100000", "-x264-params", "keyint=100000:min-keyint=100000:scenecut=0"],
    );
    assert_eq!(nal_types(&only).iter().filter(|&&t| t == 5).count(), 1, "the generated stream has one IDR");
    let f = dir.path().join("one-idr.h264");
    let srv = Hlsd::start(&["--source", &format!("file:{}", f.display()), "--no-pace"]);
    let c = client();
    let pl = wait_for_endlist(&c, &srv.base).await;
    let pl = assert_valid(&pl.text, &Rules::default());
    let segs: Vec<_> = pl.complete().collect();
    assert_eq!(segs.len(), 1, "{}", pl.text);
    assert!((segs[0].extinf.unwrap() - 10.0).abs() < 1e-3, "{}", pl.text);
    assert_eq!(pl.target, Some(10));
    assert!(pl.text.contains("# hlsd: no IDR") && pl.text.contains("--intra"), "the playlist says why: {}", pl.text);
    let groups = probe_playlist(&c, &srv.base, &pl, dir.path()).await;
    assert_eq!((groups[0].1, groups[0].0.frames), (300, 300));
    let dropped = metric(&c, &srv, "hlsd_frames_dropped_total{reason=\"idr_overdue\"}").await;
    assert_eq!(dropped, 450.0, "25 s at 30 fps less the 10 s served");
    let err = srv.stderr();
    assert!(err.contains("no IDR (keyframe) from the encoder") && err.contains("--intra"), "{err}");
    assert_rss_bounded(&srv, "one IDR only");
    srv.assert_no_panic();
}

/// Parameter sets and P frames but no IDR at all, on stdin in real time: the playlist stays
/// 503; once the wait exceeds the maximum segment length the 503 body says the encoder sends no
/// IDR and names the fix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_without_any_idr_answers_503_naming_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let only = small_stream(
        dir.path(),
        "one-idr.h264",
        20.0,
        &["-g", "100000", "-keyint_min", "100000", "-x264-params", "keyint=100000:min-keyint=100000:scenecut=0"],
    );
    let no_idr: Vec<u8> = nal_units(&only)
        .into_iter()
        .filter(|n| {
            let i = n.iter().position(|&b| b == 1).unwrap() + 1;
            n.get(i).map(|b| b & 0x1f) != Some(5)
        })
        .flat_map(|n| n.iter().copied())
        .collect();
    let (srv, stdin) = Hlsd::start_with_stdin(&["--source", "stdin"]);
    let started = Instant::now();
    let _feed = feed_paced(no_idr, 30.0, stdin);
    let c = client();
    let deadline = started + Duration::from_secs(30);
    let body = loop {
        // Each request is held up to 6 s (no target duration yet), then answered 503.
        let r = get(&c, &srv.url("/media.m3u8")).await;
        assert_eq!(r.status, 503, "{:?}", r.text());
        assert_eq!(r.header("retry-after").as_deref(), Some("1"));
        let text = r.text();
        if text.contains("no IDR") {
            break text;
        }
        assert!(text.contains("not started yet"), "{text}");
        assert!(Instant::now() < deadline, "no 'no IDR' 503 body after 30 s");
    };
    assert!(started.elapsed() >= Duration::from_secs(10), "reported only after the 10 s grace");
    assert!(body.contains("rpicam-vid --intra") && body.contains("ffmpeg -g"), "{body}");
    assert!(srv.wait_stderr("no IDR (keyframe) to start from", Duration::from_secs(5)), "{}", srv.stderr());
    assert_rss_bounded(&srv, "no IDR at all");
    srv.assert_no_panic();
}

/// `exec:` whose command exits at once without output: restarted with exponential backoff
/// (0.5, 1, 2, 4 s, ... up to 10 s), one warning per attempt, no descriptor or child left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exec_source_that_exits_at_once_backs_off_without_leaks() {
    let srv = Hlsd::start(&["--source", "exec:true"]);
    let pid = srv.pid();
    let exited = |n: usize| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while srv.stderr().matches("encoder exited").count() < n {
            assert!(Instant::now() < deadline, "{}", srv.stderr());
            std::thread::sleep(Duration::from_millis(50)); // polling the log with a deadline
        }
    };
    let t0 = Instant::now();
    exited(2);
    let fds2 = open_fds(pid);
    exited(5);
    let took = t0.elapsed();
    let fds5 = open_fds(pid);
    assert_eq!(fds5, fds2, "descriptors leak across restarts");
    // Backoff: attempts 1..5 start at 0, 0.5, 1.5, 3.5 and 7.5 s.
    assert!(took >= Duration::from_secs(7), "restarts too fast: 5 in {took:?}");
    let err = srv.stderr();
    assert!(err.lines().count() < 60, "log volume {} lines for 5 attempts:\n{err}", err.lines().count());
    // No zombie children.
    let zombies = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("stat")).ok())
        .filter(|s| {
            let rest = &s[s.rfind(')').map(|i| i + 2).unwrap_or(0)..];
            let f: Vec<&str> = rest.split_whitespace().collect();
            f.len() > 1 && f[0] == "Z" && f[1] == pid.to_string()
        })
        .count();
    assert_eq!(zombies, 0);
    let h = get(&client(), &srv.url("/healthz")).await;
    assert_eq!(h.status, 200);
    assert_rss_bounded(&srv, "exec exits in a loop");
    srv.assert_no_panic();
}

/// stdin that goes silent (default 12 s, longer than `--stall-timeout`; HLSD_SILENCE_SECS=60 for
/// the full case), then resumes: stdin is never restarted; during the silence the playlist is
/// served unchanged and blocking reloads answer 503 after their hold time; afterwards the
/// stream continues, tfdt continuous, PROGRAM-DATE-TIME jumping by the silence (capture time)
/// at the next segment, which therefore carries EXT-X-DISCONTINUITY.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_stdin_resumes_without_restart() {
    let silence: u64 = std::env::var("HLSD_SILENCE_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(12);
    let dir = tempfile::tempdir().unwrap();
    let a = small_stream(dir.path(), "a.h264", 2.0, &[]);
    let data = [a.clone(), a].concat();
    let (srv, stdin) = Hlsd::start_with_stdin(&["--source", "stdin", "--stall-timeout", "1"]);
    let gap = Duration::from_secs(silence);
    let feed = feed_scheduled(
        data,
        move |i| Duration::from_secs_f64(i as f64 / 30.0) + if i >= 60 { gap } else { Duration::ZERO },
        stdin,
    );
    let c = client();
    let before = wait_for_msn(&c, &srv.base, 0).await;
    // Wait into the silence: the 2 s of the first copy are out.
    std::thread::sleep(Duration::from_secs(3)); // the silence under test, not synchronisation
    let during = assert_valid(&media(&c, &srv.base, "").await, &Rules::default());
    let next = during.last_complete_msn().unwrap() + 2;
    let held = get(&c, &srv.url(&format!("/media.m3u8?_HLS_msn={next}"))).await;
    assert_eq!(held.status, 503, "{}", held.text());
    assert!(held.text().contains("did not arrive in time"), "{}", held.text());
    assert_eq!(get(&c, &srv.url("/healthz")).await.status, 200);
    let pl = endlist_through_503(&c, &srv, Duration::from_secs(silence + 30)).await;
    assert_eq!(feed.join().unwrap(), 120);
    let pl = assert_valid(&pl.text, &Rules::default());
    // The silence is dropped from the media timeline (tfdt continuous); PDT keeps it, so the
    // segment after it (the second copy's first IDR) carries EXT-X-DISCONTINUITY.
    let segs: Vec<_> = pl.complete().collect();
    let disc: Vec<usize> = (0..segs.len()).filter(|&i| segs[i].discontinuity).collect();
    assert_eq!(disc, vec![2], "{}", pl.text);
    let jump = segs[2].pdt_ms.unwrap() - segs[1].pdt_ms.unwrap() - (segs[1].extinf.unwrap() * 1000.0).round() as i64;
    assert!(jump >= (silence as i64 - 1) * 1000, "PDT jumps by the silence: {jump} ms\n{}", pl.text);
    check_continuity(&c, &srv, &pl, false).await;
    let groups = probe_playlist(&c, &srv.base, &pl, dir.path()).await;
    assert_eq!(groups[0].1, 120);
    assert!(!srv.stderr().contains("restarting"), "{}", srv.stderr());
    assert!(before.segments.len() <= pl.segments.len());
    assert_rss_bounded(&srv, "silent stdin");
    srv.assert_no_panic();
}

/// exec that writes a stream and then stays silent: after `--stall-timeout` it is restarted,
/// and the second run follows an EXT-X-DISCONTINUITY.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_exec_is_restarted_after_the_stall_timeout() {
    let dir = tempfile::tempdir().unwrap();
    small_stream(dir.path(), "a.h264", 2.0, &[]);
    let f = dir.path().join("a.h264");
    let cmd = format!("exec:cat {}; exec sleep 600", f.display());
    let srv = Hlsd::start(&["--source", &cmd, "--stall-timeout", "2"]);
    assert!(srv.wait_stderr("no data received in time; restarting", Duration::from_secs(20)), "{}", srv.stderr());
    let c = client();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let pl = assert_valid(&media(&c, &srv.base, "").await, &Rules::default());
        if pl.complete().any(|s| s.discontinuity) {
            break;
        }
        assert!(Instant::now() < deadline, "no discontinuity after the restart:\n{}", pl.text);
        let next = pl.last_complete_msn().map(|m| m + 1).unwrap_or(0);
        let _ = get(&c, &srv.url(&format!("/media.m3u8?_HLS_msn={next}"))).await;
    }
    assert_rss_bounded(&srv, "silent exec");
    srv.assert_no_panic();
}

/// Arrival-stamped input that arrives in bursts (a 1.5 s pause, then a second of frames at
/// once): the playlist stays valid, tfdt continuous, PDT non-decreasing, every frame served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bursty_stdin_keeps_a_valid_timeline() {
    let dir = tempfile::tempdir().unwrap();
    let a = small_stream(dir.path(), "a.h264", 3.0, &[]);
    let (srv, stdin) = Hlsd::start_with_stdin(&["--source", "stdin"]);
    let feed = feed_scheduled(
        a,
        |i| match i {
            0..30 => Duration::from_secs_f64(i as f64 / 30.0),
            30..60 => Duration::from_millis(2500),
            _ => Duration::from_millis(2500) + Duration::from_secs_f64((i - 60) as f64 / 30.0),
        },
        stdin,
    );
    let c = client();
    let pl = wait_for_endlist(&c, &srv.base).await;
    assert_eq!(feed.join().unwrap(), 90);
    let pl = assert_valid(&pl.text, &Rules::default());
    check_continuity(&c, &srv, &pl, false).await;
    // The 1.5 s pause is longer than the segment target: dropped from media time, so PDT jumps
    // at the next segment, which says so with EXT-X-DISCONTINUITY.
    let disc: Vec<u64> = pl.complete().filter(|s| s.discontinuity).map(|s| s.msn).collect();
    assert_eq!(disc.len(), 1, "{}", pl.text);
    let groups = probe_playlist(&c, &srv.base, &pl, dir.path()).await;
    assert_eq!(groups.iter().map(|g| g.1).sum::<u64>(), 90);
    srv.assert_no_panic();
}

/// A looped file (paced): PROGRAM-DATE-TIME advances exactly by EXTINF and tfdt by the
/// segment's samples across the loop points; no discontinuity.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_looped_file_keeps_pdt_and_tfdt_continuous() {
    let dir = tempfile::tempdir().unwrap();
    small_stream(dir.path(), "a.h264", 1.0, &[]);
    let f = dir.path().join("a.h264");
    let srv = Hlsd::start(&["--source", &format!("file:{}", f.display()), "--loop"]);
    let c = client();
    let pl = wait_for_msn(&c, &srv.base, 4).await;
    let pl = assert_valid(&pl.text, &Rules::default());
    assert!(pl.segments.iter().all(|s| !s.discontinuity), "{}", pl.text);
    check_continuity(&c, &srv, &pl, true).await;
    srv.assert_no_panic();
}

/// Follows the playlist with blocking reloads to EXT-X-ENDLIST, taking the 503s of a silent
/// source in its stride (bounded by `limit`).
async fn endlist_through_503(c: &reqwest::Client, srv: &Hlsd, limit: Duration) -> common::rules::MediaPlaylist {
    let deadline = Instant::now() + limit;
    let mut next = 0;
    loop {
        assert!(Instant::now() < deadline, "no ENDLIST within {limit:?}");
        let r = get(c, &srv.url(&format!("/media.m3u8?_HLS_msn={next}"))).await;
        if r.status == 503 {
            continue;
        }
        let pl = common::rules::MediaPlaylist::parse(&r.ok_text("media playlist"));
        if pl.endlist {
            return pl;
        }
        next = pl.last_complete_msn().map(|m| m + 1).unwrap_or(0);
    }
}

/// tfdt of each complete segment equals the previous one's tfdt plus its samples; PDT is
/// non-decreasing, and with `exact_pdt` advances by EXTINF (to the millisecond).
async fn check_continuity(c: &reqwest::Client, srv: &Hlsd, pl: &common::rules::MediaPlaylist, exact_pdt: bool) {
    let segs: Vec<_> = pl.complete().collect();
    assert!(segs.len() >= 3, "{}", pl.text);
    let mut prev: Option<(u64, u64, i64, f64)> = None;
    for s in segs {
        let body = get(c, &resolve(&srv.base, s.uri.as_ref().unwrap())).await;
        assert_eq!(body.status, 200);
        let fr = fmp4_fragments(&body.body);
        let (tfdt, pdt) = (fr.tfdt[0], s.pdt_ms.unwrap());
        if let Some((ptfdt, pticks, ppdt, pinf)) = prev {
            assert_eq!(tfdt, ptfdt + pticks, "tfdt continuity at msn {}\n{}", s.msn, pl.text);
            assert!(pdt >= ppdt, "PDT goes back at msn {}", s.msn);
            if exact_pdt {
                assert!((pdt - ppdt - (pinf * 1000.0).round() as i64).abs() <= 1, "PDT step at msn {}\n{}", s.msn, pl.text);
            }
        }
        prev = Some((tfdt, fr.ticks, pdt, s.extinf.unwrap()));
    }
}
