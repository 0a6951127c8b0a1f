//! Playlist rendering: golden files (set UPDATE_GOLDEN=1 to rewrite them after a deliberate
//! change) and a parse-back with m3u8-rs, an independent parser.

use super::*;
use crate::hls::segmenter::tests::{frame, info};
use crate::hls::segmenter::{Output, Segmenter, SegmenterConfig};
use crate::hls::window::{Window, WindowConfig};
use crate::media::SourceEvent;
use std::sync::Arc;

/// A window after `frames` frames at 30 fps, IDR every 30 frames, 1 s / 200 ms targets.
pub(crate) fn window_after(frames: u64, discontinuity_at: Option<u64>) -> (Window, Arc<Snapshot>) {
    let (mut w, _rx) = Window::new(WindowConfig { segments: 6, segment_target: 1.0 }, "run".into());
    let mut s = Segmenter::new(SegmenterConfig { segment_target: 90_000, part_target: 18_000 });
    let mut out: Vec<Output> = Vec::new();
    s.push(SourceEvent::Format(info(3000)), &mut out).unwrap();
    for n in 0..frames {
        if Some(n) == discontinuity_at {
            s.push(SourceEvent::Discontinuity { reason: "test".into() }, &mut out).unwrap();
        }
        s.push(SourceEvent::Frame(frame(n, n * 3000, n % 30 == 0)), &mut out).unwrap();
        w.apply(&mut out, s.next_global_part());
    }
    let snap = w.snapshot();
    (w, snap)
}

fn golden(name: &str, actual: &str) {
    let path = format!("{}/tests/golden/{name}", env!("CARGO_MANIFEST_DIR"));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e} (run with UPDATE_GOLDEN=1)"));
    assert_eq!(actual, expected, "{name} differs from the golden file");
}

fn parse_back(text: &str) -> m3u8_rs::MediaPlaylist {
    match m3u8_rs::parse_playlist_res(text.as_bytes()) {
        Ok(m3u8_rs::Playlist::MediaPlaylist(p)) => p,
        other => panic!("m3u8-rs could not parse the media playlist: {other:?}\n{text}"),
    }
}

#[test]
fn live_playlist_golden() {
    // 8.5 segments: the window lists 6 complete + the open one.
    let (_w, snap) = window_after(255, None);
    let text = render_media(&snap, false).unwrap();
    golden("live.m3u8", &text);
    let p = parse_back(&text);
    assert_eq!(p.target_duration, 1);
    assert_eq!(p.media_sequence, 2);
    assert_eq!(p.segments.len(), 6, "m3u8-rs lists complete segments");
    assert!(p.segments.iter().all(|s| (s.duration - 1.0).abs() < 1e-6));
    assert!(p.segments.iter().all(|s| s.program_date_time.is_some()));
}

#[test]
fn delta_playlist_golden() {
    // A longer window so that segments older than 6 T exist.
    let (mut w, _rx) = Window::new(WindowConfig { segments: 10, segment_target: 1.0 }, "run".into());
    let mut s = Segmenter::new(SegmenterConfig { segment_target: 90_000, part_target: 18_000 });
    let mut out = Vec::new();
    s.push(SourceEvent::Format(info(3000)), &mut out).unwrap();
    for n in 0..400 {
        s.push(SourceEvent::Frame(frame(n, n * 3000, n % 30 == 0)), &mut out).unwrap();
        w.apply(&mut out, s.next_global_part());
    }
    let snap = w.snapshot();
    assert_eq!(skippable(&snap), 4, "10 listed + open; those ending >= 6 s before the end");
    let text = render_media(&snap, true).unwrap();
    golden("delta.m3u8", &text);
    assert!(text.contains("#EXT-X-VERSION:9\n"));
    let skip_at = text.find("#EXT-X-SKIP:SKIPPED-SEGMENTS=4").expect("skip tag");
    assert!(text.find("#EXT-X-MEDIA-SEQUENCE:3").unwrap() < skip_at, "MEDIA-SEQUENCE before SKIP");
    // The full playlist of the same snapshot lists the skipped segments.
    let full = render_media(&snap, false).unwrap();
    assert!(full.contains("run-s3.m4s") && !text.contains("run-s3.m4s") && text.contains("run-s7.m4s"));
}

#[test]
fn discontinuity_playlist_golden() {
    let (_w, snap) = window_after(100, Some(50));
    let text = render_media(&snap, false).unwrap();
    golden("discontinuity.m3u8", &text);
    let p = parse_back(&text);
    assert!(p.segments.iter().any(|s| s.discontinuity));
}

#[test]
fn stuck_without_idr_playlist_says_so_in_a_comment() {
    let (mut w, snap) = window_after(75, None);
    let text = render_media(&snap, false).unwrap();
    assert!(!text.contains("# hlsd:"), "{text}");
    w.apply(&mut vec![Output::IdrOverdue { msn: 2, secs: 10.0 }], 0);
    let stuck = w.snapshot();
    let text = render_media(&stuck, false).unwrap();
    assert!(text.contains(NO_IDR_COMMENT) && NO_IDR_COMMENT.contains("--intra"), "{text}");
    let p = parse_back(&text);
    assert_eq!(p.segments.len(), parse_back(&render_media(&snap, false).unwrap()).segments.len());
}

#[test]
fn ended_playlist_has_endlist_and_no_hint() {
    let (mut w, _) = window_after(75, None);
    w.end();
    let text = render_media(&w.snapshot(), false).unwrap();
    assert!(text.ends_with("#EXT-X-ENDLIST\n"));
    assert!(!text.contains("PRELOAD-HINT"));
    assert!(parse_back(&text).end_list);
}

#[test]
fn multivariant_golden() {
    let (_w, snap) = window_after(100, None);
    let text = render_multivariant(&snap).unwrap();
    // Bandwidth depends on the synthetic payload; the rest is fixed.
    assert!(text.starts_with("#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-INDEPENDENT-SEGMENTS\n#EXT-X-STREAM-INF:BANDWIDTH="));
    assert!(text.contains("CODECS=\"avc1.42C00D\",RESOLUTION=320x240,FRAME-RATE=30.000\nmedia.m3u8\n"));
    match m3u8_rs::parse_playlist_res(text.as_bytes()) {
        Ok(m3u8_rs::Playlist::MasterPlaylist(m)) => {
            assert_eq!(m.variants.len(), 1);
            assert_eq!(m.variants[0].uri, "media.m3u8");
            assert!(m.variants[0].bandwidth > 0);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn vod_playlist_golden() {
    let text = render_vod(3, &[(0, 216_000, false, 0), (1, 201_600, false, 0), (2, 90_000, true, 1)], "vod");
    golden("vod.m3u8", &text);
    assert!(parse_back(&text).end_list);
}

#[test]
fn signed_playlists_carry_the_token_on_every_uri() {
    let (_w, snap) = window_after(255, None);
    let q = "expires=1800000000&prefix=/&sig=abc_-DEF";
    let plain = render_media(&snap, false).unwrap();
    let text = render_media_q(&snap, false, q).unwrap();
    assert_eq!(text.replace(&format!("?{q}"), ""), plain, "only the queries differ");
    let mut uris = 0;
    for line in text.lines() {
        let uri = if let Some(at) = line.find("URI=\"") {
            line[at + 5..].split('"').next().unwrap()
        } else if !line.starts_with('#') {
            line
        } else {
            continue;
        };
        assert!(uri.ends_with(&format!("?{q}")), "{line}");
        uris += 1;
    }
    assert!(uris >= 20 && text.contains("#EXT-X-PRELOAD-HINT") && text.contains("#EXT-X-MAP"), "{text}");
    // Delta updates too; the multivariant playlist's media URI already has a query.
    assert!(render_media_q(&snap, true, q).unwrap().lines().filter(|l| l.contains(".m4s")).all(|l| l.contains(q)));
    assert_eq!(with_query("media.m3u8?run=x".into(), q), format!("media.m3u8?run=x&{q}"));
    assert_eq!(with_query("a.m4s".into(), ""), "a.m4s");
    parse_back(&text);
}
