//! Helpers shared by unit tests across modules: the real camera captures of
//! `../shared/fixtures/` (or `HLSD_FIXTURES`), synthetic frames and a filled live window.
//! A missing fixture fails the test that needs it, naming the path and the variable, rather
//! than letting it pass without checking anything.

use crate::hls::segmenter::{Output, Segmenter, SegmenterConfig};
use crate::hls::window::{Snapshot, Window, WindowConfig};
use crate::media::{Frame, SourceEvent, TrackInfo};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// The fixture directory: `HLSD_FIXTURES`, else `../shared/fixtures` beside the repository.
pub fn fixtures_dir() -> PathBuf {
    std::env::var_os("HLSD_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/fixtures")))
}

/// The bytes of fixture `name`; panics if it cannot be read.
pub fn fixture(name: &str) -> Vec<u8> {
    let path = fixtures_dir().join(name);
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "fixture {} cannot be read ({e}); set HLSD_FIXTURES to the directory of the camera captures",
            path.display()
        )
    })
}

/// Track format of a 320x240 Baseline stream (an x264 SPS without VUI) at `frame_duration` ticks.
pub fn info(frame_duration: u32) -> TrackInfo {
    // Baseline 320x240 SPS without VUI, parsed by h264-reader.
    let sps = [0x67, 0x42, 0xc0, 0x0d, 0xd9, 0x01, 0x41, 0xfb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0xc0, 0xf1, 0x42, 0x99, 0x60];
    let pps = [0x68, 0xcb, 0x83, 0xcb, 0x20];
    crate::h264::track_info(&sps, &pps, Some(frame_duration)).expect("test SPS parses")
}

/// Synthetic frame `n` (a one-NAL access unit) at `dts`, an IDR if `idr`.
pub fn frame(n: u64, dts: u64, idr: bool) -> Frame {
    let nal: Vec<u8> = vec![if idr { 0x65 } else { 0x41 }, 0x88, n as u8, 7, 7, 7];
    Frame {
        dts,
        cts: 0,
        capture: SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000) + Duration::from_nanos(dts * 100_000 / 9),
        data: crate::h264::to_avcc([&nal[..]]),
        idr,
        arrived: Instant::now(),
    }
}

/// A window after `frames` synthetic frames at 30 fps (IDR every 30), 1 s segments, 0.2 s parts,
/// with a discontinuity before frame `discontinuity_at`.
pub fn window_after(frames: u64, discontinuity_at: Option<u64>) -> (Window, Arc<Snapshot>) {
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

#[cfg(test)]
mod tests {
    #[test]
    fn missing_fixture_fails_loudly() {
        let r = std::panic::catch_unwind(|| super::fixture("no-such-capture.h264"));
        let msg = *r.unwrap_err().downcast::<String>().unwrap();
        assert!(msg.contains("no-such-capture.h264") && msg.contains("HLSD_FIXTURES"), "{msg}");
    }
}
