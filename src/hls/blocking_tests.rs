//! Blocking reload rules (ll-hls.md rule 8) on window snapshots, and the HTTP wait with paused
//! tokio time.

use super::*;
use crate::hls::playlist::tests::window_after;

fn d(msn: Option<u64>, part: Option<u32>) -> Directives {
    Directives { msn, part, skip: false }
}

#[test]
fn directives_parse() {
    assert_eq!(Directives::parse(Some("_HLS_msn=5&_HLS_part=2&x=1")).unwrap(), d(Some(5), Some(2)));
    assert!(Directives::parse(Some("_HLS_skip=YES")).unwrap().skip);
    assert!(Directives::parse(Some("_HLS_msn=abc")).is_err());
    for bad in ["_HLS_msn=-1", "_HLS_msn=+1", "_HLS_msn=", "_HLS_msn=99999999999999999999", "_HLS_msn=1&_HLS_part=4294967296", "_HLS_msn= 1"] {
        assert!(Directives::parse(Some(bad)).is_err(), "{bad}");
    }
    assert_eq!(Directives::parse(Some("_HLS_msn=18446744073709551615")).unwrap().msn, Some(u64::MAX));
    assert_eq!(Directives::parse(None).unwrap(), Directives::default());
}

#[test]
fn rules_8a_to_8e() {
    // 100 frames: segments 0..2 complete (L = 2), segment 3 open with 1 part (frames 90..95).
    let (_w, s) = window_after(100, None);
    assert_eq!(s.last_complete_msn(), Some(2));
    assert_eq!(decide(&s, &d(None, Some(1))), Decision::BadRequest("_HLS_part without _HLS_msn".into()));
    assert_eq!(decide(&s, &d(Some(2), None)), Decision::Ready, "8a: complete segment");
    assert_eq!(decide(&s, &d(Some(3), None)), Decision::Wait, "8a: open segment not complete");
    assert_eq!(decide(&s, &d(Some(4), None)), Decision::Wait, "8e: L+2 blocks");
    assert!(matches!(decide(&s, &d(Some(6), None)), Decision::BadRequest(_)), "8e: L+4 is 400");
    for huge in [1 << 63, u64::MAX] {
        assert!(matches!(decide(&s, &d(Some(huge), None)), Decision::BadRequest(_)), "8e: msn {huge} is 400, not held");
        assert!(matches!(decide(&s, &d(Some(huge), Some(0))), Decision::BadRequest(_)), "8e: msn {huge} is 400, not held");
    }
    assert_eq!(decide(&s, &d(Some(3), Some(0))), Decision::Ready, "8b: part exists");
    assert_eq!(decide(&s, &d(Some(3), Some(1))), Decision::Wait, "8b: next part");
    assert_eq!(decide(&s, &d(Some(2), Some(9))), Decision::Ready, "8b: past the last part of 2 = (3,0)");
    assert_eq!(decide(&s, &d(Some(0), Some(0))), Decision::Ready, "8c: old");
    assert!(matches!(decide(&s, &d(Some(3), Some(40))), Decision::BadRequest(_)), "8e: too many parts ahead");
    assert!(matches!(decide(&s, &d(Some(u64::MAX), None)), Decision::BadRequest(_)), "8e: no wrap at u64::MAX");
    assert!(matches!(decide(&s, &d(Some(u64::MAX), Some(0))), Decision::BadRequest(_)));
    assert!(matches!(decide(&s, &d(Some(4), Some(u32::MAX))), Decision::BadRequest(_)), "parts ahead of L+2");
    assert_eq!(decide(&s, &d(Some(4), Some(0))), Decision::Wait);
}

#[test]
fn ended_stream_ignores_directives() {
    let (mut w, _) = window_after(100, None);
    w.end();
    let s = w.snapshot();
    assert_eq!(decide(&s, &d(Some(5), Some(0))), Decision::Ready, "8g");
}

#[tokio::test(start_paused = true)]
async fn held_request_completes_when_the_part_arrives_and_times_out_with_503() {
    use crate::hls::segmenter::tests::{frame, info};
    use crate::hls::segmenter::{Segmenter, SegmenterConfig};
    use crate::hls::window::{Window, WindowConfig};
    use crate::http::handlers::{handle, HttpState};
    use crate::media::SourceEvent;
    use std::sync::Arc;

    let (mut w, rx) = Window::new(WindowConfig { segments: 6, segment_target: 1.0 }, "run".into());
    let mut seg = Segmenter::new(SegmenterConfig { segment_target: 90_000, part_target: 18_000 });
    let mut out = Vec::new();
    seg.push(SourceEvent::Format(info(3000)), &mut out).unwrap();
    let mut n = 0u64;
    let mut feed = |count: u64, w: &mut Window| {
        for _ in 0..count {
            seg.push(SourceEvent::Frame(frame(n, n * 3000, n % 30 == 0)), &mut out).unwrap();
            w.apply(&mut out, seg.next_global_part());
            n += 1;
        }
    };
    feed(36, &mut w); // segment 0 complete, segment 1 has one part
    let state = Arc::new(HttpState::new(rx, String::new(), crate::http::limits::HeldLimit::new(8)));
    let get = |uri: &str| {
        let state = state.clone();
        let req = http::Request::get(uri).body(()).unwrap();
        tokio::spawn(async move { handle(state, req).await.unwrap() })
    };
    // The next part (1,1) and the hinted part URI are held...
    let playlist = get("/media.m3u8?_HLS_msn=1&_HLS_part=1");
    let hinted = get("/run-p6.m4s");
    tokio::task::yield_now().await;
    assert!(!playlist.is_finished() && !hinted.is_finished());
    // ...and answered when the part is published.
    feed(6, &mut w);
    let r = playlist.await.unwrap();
    assert_eq!(r.status(), 200);
    let r = hinted.await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "public, max-age=31536000, immutable");
    // Nothing arrives: 503 after 3 target durations (paused time auto-advances).
    let start = tokio::time::Instant::now();
    let r = get("/media.m3u8?_HLS_msn=2").await.unwrap(); // L+2: held
    assert_eq!(r.status(), 503);
    assert_eq!(start.elapsed().as_secs(), 3);
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    // An unknown part number far ahead is 404 at once, not held.
    assert_eq!(get("/run-p99.m4s").await.unwrap().status(), 404);
}
