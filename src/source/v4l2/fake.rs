//! A fake V4L2 H.264 device for tests: replays `pi-720p30-inline.h264` (a real Pi capture) as
//! the buffers a V4L2 H.264 device returns, one access unit per buffer (SPS/PPS in the IDR's
//! buffer), stamped with CLOCK_MONOTONIC times at 30 fps starting now.
//!
//! It negotiates with [`negotiate::plan`] over the capabilities it is given, honours key frame
//! requests (after a configurable delay) by jumping to the fixture's next IDR (the stream stays
//! decodable: an IDR starts afresh), and can inject corrupt buffers, stalls and an unplug. At the
//! end of its frames it reports the device gone, like a USB unplug.

use super::negotiate::{self, DeviceCaps, Negotiated, Request};
use super::timestamp::monotonic_now;
use super::{Buffer, Device, V4l2Error};
use crate::h264::{nal_type, nal_unit_type, slice_header_peek};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// Frames in the fixture.
pub const FIXTURE_FRAMES: usize = 293;
const FRAME: Duration = Duration::from_nanos(1_000_000_000 / 30);

/// The fixture split into access units (Annex-B bytes, IDR flag).
fn fixture_aus() -> &'static [(Vec<u8>, bool)] {
    static AUS: OnceLock<Vec<(Vec<u8>, bool)>> = OnceLock::new();
    AUS.get_or_init(|| {
        split_access_units(&crate::testutil::fixture("pi-720p30-inline.h264"))
    })
}

/// Splits Annex-B into access units: a new one starts at an AUD/SPS/PPS/SEI or at a slice with
/// `first_mb_in_slice == 0` once the current one holds a picture.
pub fn split_access_units(data: &[u8]) -> Vec<(Vec<u8>, bool)> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= data.len() {
        if data[i..i + 3] == [0, 0, 1] {
            let from = if i > 0 && data[i - 1] == 0 { i - 1 } else { i };
            starts.push((from, i + 3));
            i += 3;
        } else {
            i += 1;
        }
    }
    let mut aus = Vec::new();
    let (mut cur_start, mut has_pic, mut idr) = (0usize, false, false);
    for (k, &(from, nal)) in starts.iter().enumerate() {
        let end = starts.get(k + 1).map(|s| s.0).unwrap_or(data.len());
        let t = nal_unit_type(&data[nal..end]);
        let is_slice = t == nal_type::SLICE || t == nal_type::IDR;
        let begins = match t {
            nal_type::AUD | nal_type::SPS | nal_type::PPS | nal_type::SEI => true,
            _ if is_slice => slice_header_peek(&data[nal..end]).is_some_and(|(mb, _)| mb == 0),
            _ => false,
        };
        if begins && has_pic {
            aus.push((data[cur_start..from].to_vec(), idr));
            cur_start = from;
            has_pic = false;
            idr = false;
        }
        if is_slice {
            has_pic = true;
            idr |= t == nal_type::IDR;
        }
    }
    if has_pic {
        aus.push((data[cur_start..].to_vec(), idr));
    }
    aus
}

/// The timestamp of frame `n` of a fake starting at `base`.
pub fn timestamp_of(base: Duration, n: usize) -> Duration {
    base + FRAME * n as u32
}

/// What a fake saw (shared with the test).
#[derive(Debug, Default)]
pub struct FakeLog {
    /// Index of the next frame when each key frame request came.
    pub requests: Vec<usize>,
    pub negotiated: Vec<Negotiated>,
}

/// The fake device; see the module docs.
pub struct FakeDevice {
    camera: DeviceCaps,
    encoder: Option<DeviceCaps>,
    log: Arc<Mutex<FakeLog>>,
    base: Duration,
    /// Next fixture AU.
    pos: usize,
    /// Frames delivered.
    emitted: usize,
    total: usize,
    honour: Option<usize>,
    forced_at: Option<usize>,
    corrupt: Vec<usize>,
    stall_after: Option<usize>,
    fail_after: Option<usize>,
    started: bool,
}

impl FakeDevice {
    pub fn new(camera: DeviceCaps, encoder: Option<DeviceCaps>, log: Arc<Mutex<FakeLog>>) -> Self {
        FakeDevice {
            camera,
            encoder,
            log,
            base: monotonic_now(),
            pos: 0,
            emitted: 0,
            total: FIXTURE_FRAMES,
            honour: None,
            forced_at: None,
            corrupt: Vec::new(),
            stall_after: None,
            fail_after: None,
            started: false,
        }
    }
    /// Honours key frame requests `delay` frames after the next one.
    pub fn honour_keyframes(mut self, delay: usize) -> Self {
        self.honour = Some(delay);
        self
    }
    /// Starts replaying at fixture frame `n` (mid-GOP).
    pub fn start_at(mut self, n: usize) -> Self {
        self.pos = n;
        self
    }
    /// Flags these frames corrupt (`V4L2_BUF_FLAG_ERROR`).
    pub fn corrupt(mut self, frames: &[usize]) -> Self {
        self.corrupt = frames.to_vec();
        self
    }
    /// Delivers nothing after `n` frames.
    pub fn stall_after(mut self, n: usize) -> Self {
        self.stall_after = Some(n);
        self
    }
    /// Reports the device gone (ENODEV) after `n` frames.
    pub fn fail_after(mut self, n: usize) -> Self {
        self.fail_after = Some(n);
        self
    }
    pub fn first_timestamp(&self) -> Duration {
        self.base
    }
}

impl Device for FakeDevice {
    fn negotiate(&mut self, req: &Request) -> Result<Negotiated, V4l2Error> {
        let n = negotiate::plan(req, &self.camera, self.encoder.as_ref())?;
        self.log.lock().unwrap().negotiated.push(n.clone());
        self.started = true;
        Ok(n)
    }

    fn next_buffer(&mut self, _timeout: Duration) -> Result<Option<Buffer>, V4l2Error> {
        assert!(self.started, "next_buffer before negotiate");
        let gone = |what: &str| V4l2Error::Gone {
            path: self.camera.path.clone(),
            err: std::io::Error::other(what.to_string()),
        };
        if self.fail_after == Some(self.emitted) {
            return Err(gone("unplugged"));
        }
        if self.stall_after.is_some_and(|n| self.emitted >= n) {
            return Ok(None);
        }
        if self.emitted >= self.total {
            return Err(gone("end of the fake's frames"));
        }
        let aus = fixture_aus();
        if self.forced_at == Some(self.emitted) {
            self.forced_at = None;
            self.pos = (self.pos..aus.len()).find(|&i| aus[i].1).unwrap_or(0);
        }
        let (data, idr) = &aus[self.pos % aus.len()];
        let buf = Buffer {
            data: data.clone(),
            timestamp: Some(timestamp_of(self.base, self.emitted)),
            keyframe: *idr,
            corrupt: self.corrupt.contains(&self.emitted),
            sequence: self.emitted as u32,
        };
        self.pos = (self.pos + 1) % aus.len();
        self.emitted += 1;
        Ok(Some(buf))
    }

    fn request_keyframe(&mut self) -> Result<(), V4l2Error> {
        self.log.lock().unwrap().requests.push(self.emitted);
        if let (Some(delay), None) = (self.honour, self.forced_at) {
            self.forced_at = Some(self.emitted + delay);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixture_splits_into_its_frames() {
        let aus = fixture_aus();
        assert_eq!(aus.len(), FIXTURE_FRAMES);
        let idrs: Vec<usize> = aus
            .iter()
            .enumerate()
            .filter(|(_, a)| a.1)
            .map(|(i, _)| i)
            .collect();
        assert_eq!(idrs, vec![0, 60, 120, 180, 240]);
        // SPS and PPS travel in the IDR's buffer, as V4L2 encoders with repeat-headers send them.
        assert_eq!(nal_unit_type(&aus[60].0[4..]), nal_type::SPS);
    }
}
