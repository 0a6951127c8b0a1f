//! Built-in test source: a synthetic camera that needs no external input.
//!
//! A dedicated OS thread paints a moving test pattern with a large UTC clock (see `testsrc/draw.rs`),
//! encodes it with OpenH264 and sends [`SourceEvent`]s to the segmenter in real time: one
//! `Format` before the first frame (again only if the encoder's SPS/PPS ever change), then one
//! `Frame` per picture. Frame `n` has `dts = round(n * 90000 / fps)` and is released no earlier
//! than `start + n / fps`, so the stream behaves like a live camera. The clock drawn into each
//! picture is its `capture` time, which lets a viewer read glass-to-glass latency off the screen.
//!
//! OpenH264 hands out Annex-B NAL units with start codes; they are converted to AVCC here and
//! the parameter sets are moved into [`TrackInfo`]. IDRs are forced every `idr_interval_frames`
//! frames (scene-change detection and frame skipping are off) so that segment cuts line up exactly.
//! The library's own messages go through `tracing` (`testsrc/log.rs`), not straight to stderr.

mod draw;
mod log;

use crate::media::{Frame, SourceEvent, TrackInfo, TIMESCALE};
use bytes::Bytes;
use openh264::encoder::{
    BitRate, Complexity, Encoder, EncoderConfig, FrameRate, IntraFramePeriod, RateControlMode,
    UsageType, VuiConfig,
};
use openh264::formats::YUVSlices;
use openh264::{OpenH264API, Timestamp};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::mpsc::Sender;

/// Test source settings.
#[derive(Debug, Clone)]
pub struct TestsrcConfig {
    /// Picture width in pixels: even, 16..=3840.
    pub width: u32,
    /// Picture height in pixels: even, 16..=2160 (or up to 3840 in portrait).
    pub height: u32,
    /// Frames per second, 1..=120; frame durations are rounded to whole 90 kHz ticks.
    pub fps: u32,
    /// Distance between IDR frames; every IDR starts a possible segment.
    pub idr_interval_frames: u32,
    /// Encoder target bitrate (the simple pattern usually needs less).
    pub bitrate_bps: u32,
}

/// Why the test source could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TestsrcError {
    #[error(
        "test source size {width}x{height} is not supported: width and height must be even, at least 16, \
         and fit 3840x2160 (or 2160x3840); choose another testsrc width/height"
    )]
    Size { width: u32, height: u32 },
    #[error("test source frame rate {0} is not supported: set testsrc fps between 1 and 120")]
    Fps(u32),
    #[error("test source IDR interval must be at least 1 frame; set testsrc idr_interval_frames (e.g. equal to fps)")]
    IdrInterval,
    #[error(
        "test source bitrate {0} bit/s is not supported: set testsrc bitrate_bps between 10000 and 100000000"
    )]
    Bitrate(u32),
    #[error("OpenH264 encoder failed at frame {frame}: {source}; check the testsrc settings")]
    Encoder { frame: u64, source: openh264::Error },
    #[error("OpenH264 produced its first frame without an SPS and a PPS; this is an encoder bug, report it")]
    MissingParameterSets,
    #[error("cannot parse the SPS produced by OpenH264 ({0}); this is an encoder or parser bug, report it")]
    BadSps(String),
    #[error("cannot start the test source thread: {0}")]
    Spawn(#[source] std::io::Error),
}

/// Spawns a dedicated OS thread that encodes frames in real time and sends
/// SourceEvent::Format once (before the first frame) and then SourceEvent::Frame for every frame,
/// paced against the wall clock (frame n is sent no earlier than start + n/fps). Stops when `tx` is closed
/// (blocking_send fails) or `stop` becomes true.
///
/// The first frame is encoded before this returns, so encoder and SPS problems are reported here;
/// that takes a few milliseconds of the caller's thread. `stop` is checked once per frame; a
/// `blocking_send` waiting on a full channel is only ended by the receiver draining or closing.
pub fn spawn(
    cfg: TestsrcConfig,
    tx: Sender<SourceEvent>,
    stop: Arc<AtomicBool>,
) -> Result<JoinHandle<()>, TestsrcError> {
    let mut gen = Generator::new(cfg.clone())?;
    let start = Instant::now();
    let first = gen.next(SystemTime::now())?;
    let info = first
        .format
        .as_ref()
        .ok_or(TestsrcError::MissingParameterSets)?;
    tracing::info!(
        width = cfg.width,
        height = cfg.height,
        fps = cfg.fps,
        bitrate_bps = cfg.bitrate_bps,
        idr_interval_frames = cfg.idr_interval_frames,
        codec = %info.codec_string(),
        "test source started"
    );
    std::thread::Builder::new()
        .name("hlsd-testsrc".into())
        .spawn(move || run(gen, first, start, &tx, &stop))
        .map_err(TestsrcError::Spawn)
}

/// The paced loop: sends `first` (frame 0, encoded at `start`), then one frame per 1/fps.
fn run(
    mut gen: Generator,
    first: Encoded,
    mut start: Instant,
    tx: &Sender<SourceEvent>,
    stop: &AtomicBool,
) {
    let fps = u64::from(gen.cfg.fps);
    let frame_time = Duration::from_nanos(1_000_000_000 / fps);
    // Frames are "captured" at their scheduled time, so PROGRAM-DATE-TIME advances exactly with
    // media time even when encoding runs late on a loaded machine (the delay then shows up as
    // latency, which is what a viewer experiences).
    let origin = start;
    let wall_origin = SystemTime::now() - start.elapsed();
    let mut encoded = first;
    let mut last_warn: Option<Instant> = None;
    let mut encode_total = Duration::ZERO;
    loop {
        let events = encoded.format.take().map(SourceEvent::Format).into_iter();
        for event in events.chain(encoded.frame.take().map(SourceEvent::Frame)) {
            if tx.blocking_send(event).is_err() {
                tracing::info!("test source stopped: receiver closed");
                return;
            }
        }
        let n = gen.n;
        let deadline = start + crate::media::rate_to_duration(n, fps);
        let now = Instant::now();
        if let Some(sleep) = deadline.checked_duration_since(now) {
            std::thread::sleep(sleep);
        } else {
            let lag = now - deadline;
            let rebase = lag > Duration::from_secs(1);
            if lag > 2 * frame_time
                && last_warn.is_none_or(|t| t.elapsed() > Duration::from_secs(5))
            {
                tracing::warn!(
                    frame = n,
                    lag_ms = lag.as_millis() as u64,
                    rebase,
                    "test source is behind real time (slow encoder or full channel)"
                );
                last_warn = Some(now);
            }
            if rebase {
                // Don't burst a backlog of frames: continue at real-time pace from now, and
                // move media time along with the clock.
                start += lag;
                gen.dts_offset += (lag.as_nanos() * u128::from(TIMESCALE) / 1_000_000_000) as u64;
            }
        }
        if stop.load(Ordering::Relaxed) {
            tracing::info!("test source stopped");
            return;
        }
        let began = Instant::now();
        let scheduled = start + crate::media::rate_to_duration(n, fps);
        encoded = match gen.next(wall_origin + (scheduled - origin)) {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(error = %e, "test source stopped");
                return;
            }
        };
        encode_total += began.elapsed();
        if n % (10 * fps) == 0 {
            let avg_ms = encode_total.as_secs_f64() * 1000.0 / (10 * fps) as f64;
            tracing::debug!(frame = n, avg_ms, "test source paint+encode time per frame");
            encode_total = Duration::ZERO;
        }
    }
}

/// Output of one [`Generator::next`] step.
struct Encoded {
    /// New stream format, when the parameter sets appeared or changed with this frame.
    format: Option<TrackInfo>,
    /// `None` if the encoder skipped the picture (should not happen: frame skipping is off).
    frame: Option<Frame>,
}

/// Paints and encodes frames one at a time, without pacing.
struct Generator {
    cfg: TestsrcConfig,
    encoder: Encoder,
    picture: draw::Picture,
    frame_duration: u32,
    track: Option<TrackInfo>,
    /// Index of the next frame.
    n: u64,
    last_len: usize,
    /// Added to the frame grid after the source skipped ahead (fell more than 1 s behind).
    dts_offset: u64,
}

impl Generator {
    fn new(cfg: TestsrcConfig) -> Result<Self, TestsrcError> {
        validate(&cfg)?;
        let config = EncoderConfig::new()
            .bitrate(BitRate::from_bps(cfg.bitrate_bps))
            .max_frame_rate(FrameRate::from_hz(cfg.fps as f32))
            .rate_control_mode(RateControlMode::Bitrate)
            .usage_type(UsageType::CameraVideoRealTime)
            .skip_frames(false)
            .scene_change_detect(false)
            .intra_frame_period(IntraFramePeriod::from_num_frames(cfg.idr_interval_frames))
            .complexity(Complexity::Low)
            .num_threads(1)
            .vui(VuiConfig::bt709());
        let mut encoder = Encoder::with_api_config(OpenH264API::from_source(), config)
            .map_err(|source| TestsrcError::Encoder { frame: 0, source })?;
        log::route_to_tracing(&mut encoder);
        Ok(Self {
            picture: draw::Picture::new(cfg.width as usize, cfg.height as usize),
            frame_duration: (TIMESCALE + cfg.fps / 2) / cfg.fps,
            cfg,
            encoder,
            track: None,
            n: 0,
            last_len: 0,
            dts_offset: 0,
        })
    }

    /// Paints frame `self.n` showing `capture`, encodes it and converts it to AVCC.
    fn next(&mut self, capture: SystemTime) -> Result<Encoded, TestsrcError> {
        let (n, fps) = (self.n, u64::from(self.cfg.fps));
        self.n += 1;
        self.picture.paint(n, self.cfg.fps, capture);
        let (w, h) = (self.cfg.width as usize, self.cfg.height as usize);
        let yuv = YUVSlices::new(
            (&self.picture.y, &self.picture.u, &self.picture.v),
            (w, h),
            (w, w / 2, w / 2),
        );
        if n % u64::from(self.cfg.idr_interval_frames) == 0 {
            self.encoder.force_intra_frame();
        }
        let stream = self
            .encoder
            .encode_at(&yuv, Timestamp::from_millis(n * 1000 / fps))
            .map_err(|source| TestsrcError::Encoder { frame: n, source })?;

        let mut data = Vec::with_capacity(self.last_len + self.last_len / 4 + 64);
        let (mut sps, mut pps, mut idr) = (None, None, false);
        for layer in (0..stream.num_layers()).filter_map(|i| stream.layer(i)) {
            for nal in (0..layer.nal_count())
                .filter_map(|i| layer.nal_unit(i))
                .map(strip_start_code)
            {
                match nal.first().map(|b| b & 0x1f) {
                    Some(t @ (1 | 5)) => {
                        idr |= t == 5;
                        data.extend_from_slice(&(nal.len() as u32).to_be_bytes());
                        data.extend_from_slice(nal);
                    }
                    // Only with IDRs; copied because `nal_unit` borrows from the layer.
                    Some(7) => sps = Some(nal.to_vec()),
                    Some(8) => pps = Some(nal.to_vec()),
                    _ => {} // SEI, AUD, SVC prefix: not carried in CMAF samples
                }
            }
        }
        let mut format = None;
        if let (Some(sps), Some(pps)) = (sps, pps) {
            if self
                .track
                .as_ref()
                .is_none_or(|t| t.sps != sps || t.pps != pps)
            {
                let info = track_info(&sps, &pps, self.frame_duration)?;
                self.track = Some(info.clone());
                format = Some(info);
            }
        }
        if self.track.is_none() {
            return Err(TestsrcError::MissingParameterSets);
        }
        if data.is_empty() {
            tracing::warn!(
                frame = n,
                "OpenH264 skipped a picture; its timestamp stays empty"
            );
            return Ok(Encoded {
                format,
                frame: None,
            });
        }
        self.last_len = data.len();
        let frame = Frame {
            dts: dts(n, self.cfg.fps) + self.dts_offset,
            cts: 0,
            capture,
            data: Bytes::from(data),
            idr,
            arrived: Instant::now(),
        };
        Ok(Encoded {
            format,
            frame: Some(frame),
        })
    }
}

fn validate(cfg: &TestsrcConfig) -> Result<(), TestsrcError> {
    let (w, h) = (cfg.width, cfg.height);
    if w % 2 != 0 || h % 2 != 0 || w.min(h) < 16 || w.max(h) > 3840 || w.min(h) > 2160 {
        return Err(TestsrcError::Size {
            width: w,
            height: h,
        });
    }
    if !(1..=120).contains(&cfg.fps) {
        return Err(TestsrcError::Fps(cfg.fps));
    }
    if cfg.idr_interval_frames == 0 {
        return Err(TestsrcError::IdrInterval);
    }
    if !(10_000..=100_000_000).contains(&cfg.bitrate_bps) {
        return Err(TestsrcError::Bitrate(cfg.bitrate_bps));
    }
    Ok(())
}

/// Decode timestamp of frame `n`: `n * 90000 / fps`, rounded to the nearest tick.
fn dts(n: u64, fps: u32) -> u64 {
    let fps = u64::from(fps);
    (n * u64::from(TIMESCALE) + fps / 2) / fps
}

/// Removes a leading Annex-B start code (`00 00 01` or `00 00 00 01`) if present.
fn strip_start_code(nal: &[u8]) -> &[u8] {
    let zeros = nal.iter().take_while(|&&b| b == 0).count();
    if zeros >= 2 && nal.get(zeros) == Some(&1) {
        &nal[zeros + 1..]
    } else {
        nal
    }
}

/// Builds the track description from an SPS and a PPS (NAL units without start code).
fn track_info(sps: &[u8], pps: &[u8], frame_duration: u32) -> Result<TrackInfo, TestsrcError> {
    crate::h264::track_info(sps, pps, Some(frame_duration)).map_err(|e| TestsrcError::BadSps(e.to_string()))
}

#[cfg(test)]
mod tests;
