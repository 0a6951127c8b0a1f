//! Harness for what a client sends: request line, path and query, headers, through the real
//! request handler ([`handle`]) against a live and an ended window, plus round-trips of the
//! route and directive syntax and the blocking-reload decision rules.

use super::{header, Rng};
use crate::h264::track_info;
use crate::hls::blocking::{decide, Decision, Directives};
use crate::hls::playlist::names;
use crate::hls::segmenter::{Segmenter, SegmenterConfig};
use crate::hls::window::{Snapshot, Window, WindowConfig};
use crate::http::handlers::{handle, HttpState};
use crate::http::routes::Route;
use crate::media::{Frame, SourceEvent};
use http::{header as h, Method, Request, StatusCode};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

const RUN: &str = "k3x";

/// The request handler's world: a window after `frames` frames of a 320x240 30 fps stream
/// (1 s segments, 0.2 s parts), optionally ended. The window itself is dropped, so a request
/// that would be held is answered at once (as if its wait had timed out): no input can make
/// the harness sleep.
fn state(frames: u64, ended: bool, base: &str) -> Arc<HttpState> {
    let (mut w, rx) = Window::new(WindowConfig { segments: 6, segment_target: 1.0 }, RUN.into());
    let mut s = Segmenter::new(SegmenterConfig { segment_target: 90_000, part_target: 18_000 });
    let sps = [0x67, 0x42, 0xc0, 0x0d, 0xd9, 0x01, 0x41, 0xfb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0xc0, 0xf1, 0x42, 0x99, 0x60];
    let info = track_info(&sps, &[0x68, 0xcb, 0x83, 0xcb, 0x20], Some(3000)).expect("built-in SPS parses");
    let mut out = Vec::new();
    s.push(SourceEvent::Format(info), &mut out).expect("format");
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    for n in 0..frames {
        let idr = n % 30 == 0;
        let nal = [if idr { 0x65 } else { 0x41 }, 0x88, n as u8, 7, 7, 7];
        let frame = Frame {
            dts: n * 3000,
            cts: 0,
            capture: t0 + Duration::from_millis(n * 100 / 3),
            data: crate::h264::to_avcc([&nal[..]]),
            idr,
            arrived: Instant::now(),
        };
        s.push(SourceEvent::Frame(frame), &mut out).expect("frame");
        w.apply(&mut out, s.next_global_part());
    }
    if ended {
        w.end();
    }
    Arc::new(HttpState::new(rx, base.into(), crate::http::limits::HeldLimit::new(64)))
}

thread_local! {
    static RT: tokio::runtime::Runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    /// [live, ended] × [no base path, base path].
    static STATES: [Arc<HttpState>; 4] =
        [state(100, false, ""), state(100, true, ""), state(100, false, "/cams/x"), state(100, true, "/cams/x")];
}

/// Input: 12 header bytes (byte 0: method, window and base path; bytes 1..12 feed the
/// round-trip checks), then the request target, then `Name: value` header lines.
///
/// Properties: no panic; only the statuses hlsd documents (200, 204, 400, 404, 405, 503 with
/// Retry-After); `Content-Length` equals the body; a malformed directive is a 400 on the media
/// playlist; every media URI hlsd writes parses back to its route; directives round-trip; an
/// `_HLS_msn` more than two segments ahead is a 400 (rule 8e) whatever its size.
pub fn http_request(data: &[u8]) {
    let (hd, rest) = header::<12>(data);
    round_trips(&hd);
    let text = String::from_utf8_lossy(rest);
    let mut lines = text.split('\n');
    let target = lines.next().unwrap_or("").trim_end_matches('\r');
    // Route and directive parsing on arbitrary text, beyond what `Uri` accepts.
    let _ = Route::parse(target, RUN);
    let query = target.split_once('?').map(|(_, q)| q);
    let directives = Directives::parse(query);
    STATES.with(|s| {
        for st in s {
            if let Ok(d) = &directives {
                check_decision(&st.snapshots.borrow(), d);
            }
        }
    });
    let method = match hd[0] & 3 {
        0 => Method::GET,
        1 => Method::HEAD,
        2 => Method::OPTIONS,
        _ => Method::from_bytes(lines.clone().next().unwrap_or("").as_bytes()).unwrap_or(Method::POST),
    };
    let Ok(uri) = http::Uri::try_from(target) else { return };
    // /snapshot.jpg decodes the (here synthetic) keyframe with openh264 on each request.
    if uri.path().contains("snapshot.jpg") {
        return;
    }
    let mut req = Request::builder().method(method.clone()).uri(uri.clone());
    for line in lines.take(32) {
        if let Some((k, v)) = line.split_once(':') {
            if let (Ok(k), Ok(v)) = (h::HeaderName::from_bytes(k.trim().as_bytes()), h::HeaderValue::from_str(v.trim())) {
                req = req.header(k, v);
            }
        }
    }
    let Ok(req) = req.body(()) else { return };
    let st = STATES.with(|s| s[usize::from(hd[0] >> 2 & 3)].clone());
    let resp = RT.with(|rt| rt.block_on(async { handle(st.clone(), req).await }));
    let Ok(resp) = resp;
    let status = resp.status();
    assert!(
        [StatusCode::OK, StatusCode::NO_CONTENT, StatusCode::BAD_REQUEST, StatusCode::NOT_FOUND, StatusCode::METHOD_NOT_ALLOWED, StatusCode::SERVICE_UNAVAILABLE]
            .contains(&status),
        "undocumented status {status} for {method} {uri}"
    );
    if status == StatusCode::SERVICE_UNAVAILABLE {
        assert!(resp.headers().contains_key(h::RETRY_AFTER), "503 without Retry-After");
    }
    let body_len = resp.body().len();
    if method == Method::HEAD {
        assert_eq!(body_len, 0, "HEAD with a body");
    } else if status != StatusCode::NO_CONTENT {
        let cl = resp.headers().get(h::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
        assert_eq!(cl, Some(body_len), "Content-Length differs from the body");
    }
    assert!(body_len < 4 << 20, "{body_len}-byte response");
    let media = uri.path().ends_with("/media.m3u8") && !uri.path()[..uri.path().len() - 11].contains('/');
    // (the handler sees the URI's query: without a #fragment)
    if (method == Method::GET || method == Method::HEAD) && media && Directives::parse(uri.query()).is_err() {
        assert_eq!(status, StatusCode::BAD_REQUEST, "malformed directives {:?} answered {status}", uri.query());
    }
}

/// Rule 8e in exact arithmetic: a blocking request more than two segments past the last complete
/// one is refused, not held.
fn check_decision(snap: &Snapshot, d: &Directives) {
    let decision = decide(snap, d);
    let Some(m) = d.msn else { return };
    if snap.ended || !snap.ready() {
        return;
    }
    let next = snap.segments.last().map(|s| if s.complete { s.msn + 1 } else { s.msn }).unwrap_or(0);
    if i128::from(m) > i128::from(next) + 1 {
        assert!(matches!(decision, Decision::BadRequest(_)), "_HLS_msn={m} (next segment {next}) gave {decision:?}");
    }
}

/// URIs hlsd writes parse back to their routes; directives written parse back.
fn round_trips(hd: &[u8; 12]) {
    let mut r = Rng::new(u64::from_le_bytes(hd[1..9].try_into().expect("8 bytes")));
    let n = r.next_u64() >> r.below(64);
    let run: String = (0..1 + r.below(13)).map(|_| char::from(b"0123456789abcdefghijklmnopqrstuvwxyz"[r.below(36) as usize])).collect();
    let (uri, route) = match hd[9] % 3 {
        0 => (names::init(&run, n as u32), Route::Init(n as u32)),
        1 => (names::part(&run, n), Route::Part(n)),
        _ => (names::segment(&run, n), Route::Segment(n)),
    };
    assert_eq!(Route::parse(&format!("/{uri}"), &run), Some(route), "{uri} with run {run}");
    let part = u32::from_le_bytes([hd[10], hd[11], hd[9], 0]) >> (hd[9] % 24);
    let want = Directives { msn: Some(n), part: (hd[10] & 1 == 1).then_some(part), skip: hd[11] & 1 == 1 };
    let mut q = format!("_HLS_msn={n}");
    if let Some(p) = want.part {
        q.push_str(&format!("&_HLS_part={p}"));
    }
    if want.skip {
        q.push_str("&_HLS_skip=YES");
    }
    assert_eq!(Directives::parse(Some(&q)), Ok(want), "{q}");
}
