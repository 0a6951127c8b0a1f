//! MPEG-TS input end to end: transport streams made by ffmpeg (testsrc2 + a sine tone, x264 with
//! and without B-frames, AAC) through stdin, file, tcp and udp. The HLS output must pass the
//! LL-HLS rules, decode with ffprobe to the input's frame count, start every segment with an
//! IDR, and (B-frames) decode frame-exact in display order against the input (`framemd5`).
//! Bad input (random packets, PTS jumps, audio only, no PAT/PMT) has its documented outcome.
//! Audio is not muxed yet: the AAC track of the input is ignored, the video still served.

mod common;

use common::rules::{assert_valid, Rules};
use common::*;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

/// `secs` of 320x240 testsrc2 at 30 fps (IDR every 30 frames) + a 1 kHz tone (AAC 48 kHz,
/// `channels`) as MPEG-TS; `bf` B-frames.
fn make_ts(path: &Path, secs: u32, bf: u32, channels: u32) {
    let t = secs.to_string();
    let bf = bf.to_string();
    let ac = channels.to_string();
    ffmpeg(&[
        "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30",
        "-f", "lavfi", "-i", "sine=frequency=1000:sample_rate=48000",
        "-t", &t, "-c:v", "libx264", "-preset", "ultrafast", "-bf", &bf, "-g", "30", "-keyint_min", "30",
        "-sc_threshold", "0", "-pix_fmt", "yuv420p", "-c:a", "aac", "-ac", &ac, "-ar", "48000",
        "-f", "mpegts", path.to_str().unwrap(),
    ]);
}

/// The md5 column of `ffmpeg -f framemd5` of the first video stream, in display order.
fn framemd5(path: &Path) -> Vec<String> {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-i", path.to_str().unwrap(), "-map", "0:v:0", "-f", "framemd5", "-"])
        .output()
        .expect("ffmpeg is installed");
    assert!(out.status.success(), "framemd5 {path:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit(',').next().map(|s| s.trim().to_string()))
        .collect()
}

/// Follows the stream to its end (every playlist checked), probes the output, and compares
/// it frame by frame with the input. Returns the playlist text.
async fn check_vod_like(srv: &Hlsd, input: &Path, frames: u64) -> String {
    let c = client();
    let f = follow(&c, &srv.base, &Rules::default(), |_| false, 3000).await;
    let pl = assert_valid(&f.last.text, &Rules::default());
    assert!(pl.endlist, "{}", pl.text);
    let dir = tempfile::tempdir().unwrap();
    let groups = probe_playlist(&c, &srv.base, &pl, dir.path()).await;
    assert_eq!(groups.len(), 1, "{}", pl.text);
    let (probe, samples, segments) = &groups[0];
    assert_eq!((*samples, probe.frames), (frames, frames), "{probe:?}");
    assert_eq!(probe.keyframes, *segments as u64, "one IDR at the start of every segment");
    assert_eq!((probe.codec.as_str(), probe.width, probe.height), ("h264", 320, 240));
    // Frame-exact in display order (B-frames reordered by the composition offsets).
    let mut uris = vec![pl.segments[0].map.clone().unwrap()];
    uris.extend(pl.complete().map(|s| s.uri.clone().unwrap()));
    let out = dir.path().join("out.mp4");
    std::fs::write(&out, download_concat(&c, &srv.base, &uris).await).unwrap();
    let (want, got) = (framemd5(input), framemd5(&out));
    assert_eq!(want.len() as u64, frames);
    assert!(want == got, "decoded frames differ from the input's ({} vs {})", want.len(), got.len());
    srv.assert_no_panic();
    pl.text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ts_file_with_b_frames_is_frame_exact() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("bf3.ts");
    make_ts(&input, 4, 3, 2);
    let srv = Hlsd::start(&["--source", &format!("file:{}", input.display()), "--no-pace"]);
    check_vod_like(&srv, &input, 120).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ts_on_stdin_is_not_annex_b() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("bf0.ts");
    make_ts(&input, 4, 0, 1);
    let (srv, mut stdin) = Hlsd::start_with_stdin(&["--source", "stdin"]);
    let data = std::fs::read(&input).unwrap();
    let feeder = std::thread::spawn(move || {
        for c in data.chunks(188 * 7) {
            stdin.write_all(c).unwrap();
        }
    });
    let text = check_vod_like(&srv, &input, 120).await;
    feeder.join().unwrap();
    assert!(srv.stderr().contains("input is MPEG-TS"), "{}", srv.stderr());
    // The mono AAC track is recognised (and reported as not muxed).
    let log = srv.stderr();
    assert!(log.contains("MPEG-TS audio found") && log.contains("mp4a.40.2") && log.contains("sample_rate=48000") && log.contains("channels=1"), "{log}");
    assert!(!text.contains("B-frames"));
}

/// tcp: an ffmpeg listening at real time speed; udp: ffmpeg sending datagrams to hlsd.
/// Live: followed for three complete segments, each passing the rules and decoding.
async fn live(kind: &str) {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let (url, source) = match kind {
        "tcp" => (format!("tcp://127.0.0.1:{port}?listen=1"), format!("tcp://127.0.0.1:{port}")),
        _ => (format!("udp://127.0.0.1:{port}?pkt_size=1316"), format!("udp://127.0.0.1:{port}")),
    };
    let mut enc = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-re", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30",
            "-f", "lavfi", "-i", "sine=frequency=1000:sample_rate=48000", "-t", "6", "-c:v", "libx264", "-preset", "ultrafast",
            "-tune", "zerolatency", "-bf", "0", "-g", "30", "-pix_fmt", "yuv420p", "-c:a", "aac", "-f", "mpegts", &url])
        .stdin(Stdio::null())
        .spawn()
        .expect("ffmpeg is installed");
    let srv = Hlsd::start(&["--source", &source, "--segment-duration", "1"]);
    let c = client();
    let rules = Rules { pdt_tolerance: 0.3, ..Rules::default() };
    let f = follow(&c, &srv.base, &rules, |pl| pl.complete().count() >= 3, 3000).await;
    let dir = tempfile::tempdir().unwrap();
    let groups = probe_playlist(&c, &srv.base, &f.last, dir.path()).await;
    let (probe, samples, segments) = &groups[0];
    assert!(*segments >= 3);
    assert_eq!(probe.frames, *samples, "{probe:?}");
    assert_eq!(probe.keyframes, *segments as u64);
    srv.assert_no_panic();
    let _ = enc.kill();
    let _ = enc.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ts_over_tcp() {
    live("tcp").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ts_over_udp() {
    live("udp").await;
}

/// Bad TS input never panics: random bytes with a sync byte every 188 end with a clear error.
#[test]
fn random_packets_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("junk.ts");
    let mut junk = pseudo_random(188 * 2000, 7);
    for p in junk.chunks_mut(188) {
        p[0] = 0x47;
        p[3] &= 0x3f; // not scrambled
    }
    std::fs::write(&path, &junk).unwrap();
    let (status, stderr) = Hlsd::run_to_exit(&["--source", &format!("file:{}", path.display()), "--no-pace"], std::time::Duration::from_secs(20));
    assert!(!status.success());
    assert!(stderr.contains("MPEG-TS input") && !stderr.contains("panicked"), "{stderr}");
}

/// Timestamps that jump forward (+100 s) and back (to 0) between three spliced transport
/// streams: each jump is an EXT-X-DISCONTINUITY, every playlist passes the rules, all segments
/// decode. The splices also break the continuity counters: the PES before a CC error may be
/// cut, so it is dropped (at most one frame per splice).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pts_jumps_are_discontinuities() {
    let dir = tempfile::tempdir().unwrap();
    let mut all = Vec::new();
    for (i, offset) in ["0", "100", "0"].iter().enumerate() {
        let p = dir.path().join(format!("part{i}.ts"));
        ffmpeg(&["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30", "-t", "2", "-c:v", "libx264", "-preset", "ultrafast",
            "-bf", "0", "-g", "30", "-pix_fmt", "yuv420p", "-output_ts_offset", offset, "-f", "mpegts", p.to_str().unwrap()]);
        all.extend(std::fs::read(&p).unwrap());
    }
    let input = dir.path().join("spliced.ts");
    std::fs::write(&input, &all).unwrap();
    let srv = Hlsd::start(&["--source", &format!("file:{}", input.display()), "--no-pace"]);
    let c = client();
    let f = follow(&c, &srv.base, &Rules::default(), |_| false, 3000).await;
    let pl = assert_valid(&f.last.text, &Rules::default());
    assert!(pl.endlist);
    let discs = pl.complete().filter(|s| s.discontinuity).count();
    assert_eq!(discs, 2, "{}", pl.text);
    let groups = probe_playlist(&c, &srv.base, &pl, dir.path()).await;
    let (probe, samples, _) = &groups[0];
    assert_eq!(probe.frames, *samples);
    assert!((177..=180).contains(samples), "{samples} frames of 180");
    assert!(srv.stderr().contains("re-anchored"), "{}", srv.stderr());
    srv.assert_no_panic();
}

/// Audio without any video stream: refused at once, naming what was found.
#[test]
fn audio_only_ts_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("audio.ts");
    ffmpeg(&["-f", "lavfi", "-i", "sine=sample_rate=48000", "-t", "10", "-c:a", "aac", "-f", "mpegts", p.to_str().unwrap()]);
    let (status, stderr) = Hlsd::run_to_exit(&["--source", &format!("file:{}", p.display()), "--no-pace"], std::time::Duration::from_secs(20));
    assert!(!status.success());
    assert!(stderr.contains("no H.264 video") && stderr.contains("AAC (ADTS)"), "{stderr}");
}

/// A transport stream whose PAT and PMT packets were removed: an error at its end, not a hang.
#[test]
fn missing_pmt_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("v.ts");
    make_ts(&p, 1, 0, 1);
    let data = std::fs::read(&p).unwrap();
    let stripped: Vec<u8> = data
        .chunks(188)
        .filter(|pk| {
            let pid = u16::from(pk[1] & 0x1f) << 8 | u16::from(pk[2]);
            pid != 0 && pid != 0x1000 // PAT, and ffmpeg's PMT PID
        })
        .flatten()
        .copied()
        .collect();
    assert!(stripped.len() < data.len());
    std::fs::write(&p, &stripped).unwrap();
    let (status, stderr) = Hlsd::run_to_exit(&["--source", &format!("file:{}", p.display()), "--no-pace"], std::time::Duration::from_secs(20));
    assert!(!status.success());
    assert!(stderr.contains("no PAT/PMT"), "{stderr}");
}

/// `hlsd segment IN.ts OUT/`: a VOD stream of the transport stream's video, frame-exact with
/// B-frames.
#[test]
fn segment_command_reads_ts() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.ts");
    make_ts(&input, 3, 3, 2);
    let out = dir.path().join("vod");
    let (status, stderr) = Hlsd::run_to_exit(&["segment", input.to_str().unwrap(), out.to_str().unwrap()], std::time::Duration::from_secs(60));
    assert!(status.success(), "{stderr}");
    let playlist = out.join("stream.m3u8");
    let probe = ffprobe(&playlist);
    assert_eq!(probe.frames, 90, "{probe:?}");
    assert_eq!(framemd5(&input), framemd5(&playlist));
}
