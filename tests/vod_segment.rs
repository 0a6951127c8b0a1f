//! `hlsd segment INPUT.h264 OUTDIR/`: offline VOD output (OUTDIR/stream.m3u8 with ENDLIST,
//! vod-i0.mp4, vod-sN.m4s) on both camera captures, checked with the playlist rules, the
//! fragments' trun boxes and ffprobe frame counts.

mod common;

use common::rules::{assert_valid, Rules};
use common::*;
use std::path::Path;
use std::time::Duration;

/// Runs `hlsd ARGS...` to completion.
fn hlsd(args: &[&str]) -> (std::process::ExitStatus, String) {
    Hlsd::run_to_exit(args, Duration::from_secs(60))
}

/// Checks an output directory: returns the segment durations.
fn check_vod(out: &Path, frames: u64, size: (u32, u32), target: u64) -> Vec<f64> {
    let text = std::fs::read_to_string(out.join("stream.m3u8")).expect("OUTDIR/stream.m3u8");
    let pl = assert_valid(
        &text,
        &Rules {
            live: false,
            ..Rules::default()
        },
    );
    assert!(pl.endlist, "{text}");
    assert_eq!(pl.playlist_type.as_deref(), Some("VOD"), "{text}");
    assert_eq!(pl.target, Some(target), "{text}");
    assert_eq!(pl.media_sequence, Some(0));
    assert!(
        pl.hints.is_empty()
            && pl
                .segments
                .iter()
                .all(|s| s.parts.is_empty() && s.complete())
    );
    assert_eq!(pl.segments[0].map.as_deref(), Some("vod-i0.mp4"));
    let mut data = std::fs::read(out.join("vod-i0.mp4")).unwrap();
    let mut samples = 0;
    for (i, s) in pl.segments.iter().enumerate() {
        let uri = s.uri.as_deref().unwrap();
        assert_eq!(uri, format!("vod-s{i}.m4s"), "segment names");
        let seg = std::fs::read(out.join(uri)).unwrap_or_else(|e| panic!("{uri}: {e}"));
        let (n, ticks) = fmp4_samples(&seg);
        assert!(
            (ticks as f64 / 90000.0 - s.extinf.unwrap()).abs() < 1e-4,
            "{uri}: trun {ticks} ticks vs EXTINF {:?}",
            s.extinf
        );
        samples += n;
        data.extend_from_slice(&seg);
    }
    // Nothing else (no temporary files) in OUTDIR.
    let mut names: Vec<String> = std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    let mut expect: Vec<String> = pl.segments.iter().map(|s| s.uri.clone().unwrap()).collect();
    expect.extend(["stream.m3u8".to_string(), "vod-i0.mp4".to_string()]);
    expect.sort();
    assert_eq!(names, expect, "files in OUTDIR");
    assert_eq!(samples, frames, "samples in the trun boxes");
    let probe = probe_bytes(
        out.parent().unwrap(),
        &format!("{}.mp4", out.file_name().unwrap().to_str().unwrap()),
        &data,
    );
    assert_eq!(probe.frames, frames, "decoded frames: {probe:?}");
    assert_eq!(probe.packets, frames);
    assert_eq!(
        (probe.codec.as_str(), probe.width, probe.height),
        ("h264", size.0, size.1)
    );
    assert_eq!(
        probe.keyframes,
        pl.segments.len() as u64,
        "every segment starts with an IDR"
    );
    pl.segments.iter().map(|s| s.extinf.unwrap()).collect()
}

#[test]
fn segment_720p_fixture() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out720");
    let input = fixture(FIXTURE_720P);
    let (st, err) = hlsd(&["segment", input.to_str().unwrap(), out.to_str().unwrap()]);
    assert!(st.success(), "{st:?}\n{err}");
    assert!(err.contains("293 frames"), "summary line: {err}");
    let d = check_vod(&out, FIXTURE_720P_FRAMES, (1280, 720), 2);
    assert_eq!(d.len(), 5, "{d:?}");
    assert!(
        d[..4].iter().all(|x| (x - 2.0).abs() < 1e-4) && (d[4] - 53.0 / 30.0).abs() < 1e-4,
        "{d:?}"
    );
}

#[test]
fn segment_1080p_fixture_needs_framerate() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out1080");
    let input = fixture(FIXTURE_1080P);
    let (st, err) = hlsd(&[
        "--framerate",
        "25",
        "segment",
        input.to_str().unwrap(),
        out.to_str().unwrap(),
    ]);
    assert!(st.success(), "{st:?}\n{err}");
    let d = check_vod(&out, FIXTURE_1080P_FRAMES, (1920, 1080), 3);
    // IDR every 60 frames at 25 fps: 2.4 s segments (the last 56 frames).
    assert_eq!(d.len(), 2, "{d:?}");
    assert!(
        (d[0] - 2.4).abs() < 1e-4 && (d[1] - 2.24).abs() < 1e-4,
        "{d:?}"
    );

    // Without --framerate: exit 1 naming the option, and no playlist written.
    let out2 = dir.path().join("no-rate");
    let (st, err) = hlsd(&["segment", input.to_str().unwrap(), out2.to_str().unwrap()]);
    assert_eq!(st.code(), Some(1), "{err}");
    assert!(
        err.contains("--framerate") && !err.contains("panicked"),
        "{err}"
    );
    assert!(!out2.join("stream.m3u8").exists());
}

#[test]
fn segment_bad_inputs_fail_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o");
    let o = out.to_str().unwrap();
    // Missing input: the message names the file.
    let (st, err) = hlsd(&["segment", "/nonexistent/in.h264", o]);
    assert_eq!(st.code(), Some(1), "{err}");
    assert!(err.contains("/nonexistent/in.h264"), "{err}");
    // Not H.264.
    let noise = dir.path().join("noise.h264");
    std::fs::write(&noise, pseudo_random(100_000, 5)).unwrap();
    let (st, err) = hlsd(&["segment", noise.to_str().unwrap(), o]);
    assert_eq!(st.code(), Some(1), "{err}");
    assert!(err.contains("H.264") && !err.contains("panicked"), "{err}");
    // B-frames.
    let bf = dir.path().join("bf.h264");
    make_h264(&bf, "320x240", 1.0, &["-bf", "2", "-preset", "medium"]);
    let (st, err) = hlsd(&["segment", bf.to_str().unwrap(), o]);
    assert_eq!(st.code(), Some(1), "{err}");
    assert!(err.contains("-bf 0") && !err.contains("panicked"), "{err}");
    assert!(
        !out.join("stream.m3u8").exists(),
        "no playlist for failed input"
    );
}

/// A generated stream with a resolution change: DISCONTINUITY and a second init segment.
#[test]
fn segment_resolution_change() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.h264");
    let b = dir.path().join("b.h264");
    make_h264(&a, "320x240", 1.0, &[]);
    make_h264(&b, "480x272", 1.0, &[]);
    let mut data = std::fs::read(&a).unwrap();
    data.extend_from_slice(&std::fs::read(&b).unwrap());
    let input = dir.path().join("ab.h264");
    std::fs::write(&input, data).unwrap();
    let out = dir.path().join("out");
    let (st, err) = hlsd(&["segment", input.to_str().unwrap(), out.to_str().unwrap()]);
    assert!(st.success(), "{err}");
    let text = std::fs::read_to_string(out.join("stream.m3u8")).unwrap();
    let pl = assert_valid(
        &text,
        &Rules {
            live: false,
            ..Rules::default()
        },
    );
    assert_eq!(pl.segments.len(), 2, "{text}");
    assert!(
        pl.segments[1].discontinuity && pl.segments[1].map.as_deref() == Some("vod-i1.mp4"),
        "{text}"
    );
    for (s, size) in pl.segments.iter().zip([(320, 240), (480, 272)]) {
        let mut d = std::fs::read(out.join(s.map.as_ref().unwrap())).unwrap();
        d.extend_from_slice(&std::fs::read(out.join(s.uri.as_ref().unwrap())).unwrap());
        let p = probe_bytes(dir.path(), &format!("{}.mp4", s.msn), &d);
        assert_eq!((p.width, p.height, p.frames), (size.0, size.1, 30), "{p:?}");
    }
}

/// The init segment's boxes are in ISO/IEC 14496-12 order (moov: mvhd, trak, mvex; minf: vmhd,
/// dinf, stbl), as read by two parsers that are not ours: ffprobe's mov demuxer (its trace log
/// lists every box with its parent in reading order) and mp4-atom in strict mode.
#[test]
fn init_segment_box_order_is_iso_14496_12_for_independent_parsers() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let input = fixture(FIXTURE_720P);
    let (st, err) = hlsd(&["segment", input.to_str().unwrap(), out.to_str().unwrap()]);
    assert!(st.success(), "{err}");
    let init = out.join("vod-i0.mp4");
    let trace = std::process::Command::new("ffprobe")
        .args(["-v", "trace", "-show_streams", init.to_str().unwrap()])
        .output()
        .expect("ffprobe is installed");
    assert!(trace.status.success(), "{}", String::from_utf8_lossy(&trace.stderr));
    let log = String::from_utf8_lossy(&trace.stderr);
    let children = |parent: &str| -> Vec<String> {
        let key = format!("parent:'{parent}'");
        log.lines()
            .filter(|l| l.contains(&key))
            .filter_map(|l| Some(l.split("type:'").nth(1)?[..4].to_string()))
            .collect()
    };
    assert_eq!(children("root"), ["ftyp", "moov"]);
    assert_eq!(children("moov"), ["mvhd", "trak", "mvex"]);
    assert_eq!(children("trak"), ["tkhd", "mdia"]);
    assert_eq!(children("mdia"), ["mdhd", "hdlr", "minf"]);
    assert_eq!(children("minf"), ["vmhd", "dinf", "stbl"]);
    let streams = String::from_utf8_lossy(&trace.stdout);
    assert!(streams.contains("codec_name=h264") && streams.contains("width=1280"), "{streams}");
    // mp4-atom, strict (an unexpected or misplaced child is an error), decodes both boxes.
    use mp4_atom::{Any, Decode};
    let data = std::fs::read(&init).unwrap();
    let buf = &mut &data[..];
    assert!(matches!(Any::decode(buf).unwrap(), Any::Ftyp(_)));
    match Any::decode(buf).unwrap() {
        Any::Moov(m) => {
            assert!(m.mvex.is_some() && m.trak[0].mdia.minf.vmhd.is_some());
            assert_eq!(m.trak[0].tkhd.width.integer(), 1280);
        }
        other => panic!("moov expected, got {other:?}"),
    }
    assert!(buf.is_empty());
}
