//! Shared vocabulary of the pipeline: what a source hands to the segmenter.
//!
//! Data comes from `source/*` (testsrc, byte streams parsed by `h264::AuParser`) as
//! [`SourceEvent`]s and goes to `hls::Segmenter`, which turns frames into CMAF parts.
//! Time is kept in a 90 kHz media clock ([`TIMESCALE`]), the usual MPEG clock, so that every
//! common frame rate (25, 30, 29.97, 60) has an integral frame duration.

use bytes::Bytes;
use std::time::{Duration, SystemTime};

/// Media timescale used in every track (ticks per second).
pub const TIMESCALE: u32 = 90_000;

/// Wall-clock length of `ticks` media ticks, exact to the nanosecond for any u64 (whole seconds
/// and the remainder are converted apart, so no product can overflow; `ticks × 1e9` would after
/// 57 hours).
pub fn ticks_to_duration(ticks: u64) -> Duration {
    rate_to_duration(ticks, u64::from(TIMESCALE))
}

/// Length of `n` periods of a `per_second` clock (frames at a frame rate, ticks at a timescale),
/// without overflow for any `n`.
pub fn rate_to_duration(n: u64, per_second: u64) -> Duration {
    let per_second = per_second.max(1);
    Duration::from_secs(n / per_second) + Duration::from_nanos((n % per_second) * 1_000_000_000 / per_second)
}

/// Everything the muxer and playlists need to know about one H.264 stream configuration.
/// A change of any field mid-stream means a new init segment and a discontinuity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackInfo {
    /// SPS NAL unit without start code.
    pub sps: Bytes,
    /// PPS NAL unit without start code.
    pub pps: Bytes,
    pub width: u32,
    pub height: u32,
    pub profile_idc: u8,
    pub constraint_flags: u8,
    pub level_idc: u8,
    /// Nominal frame duration in [`TIMESCALE`] ticks (from VUI timing, configuration or the source).
    pub frame_duration: u32,
}

impl TrackInfo {
    /// RFC 6381 codec string, e.g. `avc1.640028`.
    pub fn codec_string(&self) -> String {
        format!(
            "avc1.{:02X}{:02X}{:02X}",
            self.profile_idc, self.constraint_flags, self.level_idc
        )
    }

    /// Nominal frame rate in frames per second.
    pub fn frame_rate(&self) -> f64 {
        TIMESCALE as f64 / self.frame_duration as f64
    }
}

/// One access unit (a coded picture) ready for muxing.
#[derive(Debug, Clone)]
pub struct Frame {
    /// Decode timestamp in [`TIMESCALE`] ticks, strictly increasing within one timeline.
    pub dts: u64,
    /// Composition offset (PTS − DTS) in ticks: 0 without B-frames (every source but MPEG-TS).
    pub cts: i32,
    /// Wall-clock capture time (becomes EXT-X-PROGRAM-DATE-TIME).
    pub capture: SystemTime,
    /// The access unit in AVCC form: each NAL unit prefixed by its 4-byte big-endian length.
    /// Parameter sets and AUDs are not included (they live in the init segment).
    pub data: Bytes,
    /// True if the access unit holds an IDR picture.
    pub idr: bool,
    /// Monotonic instant at which the last byte of this frame was read (for delay metrics).
    pub arrived: std::time::Instant,
}

/// What sources emit.
#[derive(Debug, Clone)]
pub enum SourceEvent {
    /// Stream configuration; sent before the first frame and whenever SPS/PPS change.
    Format(TrackInfo),
    /// A frame of the current format.
    Frame(Frame),
    /// The timeline broke (encoder restart, reconnect): the next segment gets EXT-X-DISCONTINUITY.
    Discontinuity { reason: String },
    /// The source reached its end (file without loop, stdin closed).
    End,
}
