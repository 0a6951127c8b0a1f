//! One V4L2 streaming session (open → negotiate → buffers → events), and the supervisor that
//! reopens the device with backoff after any error, forever.
//!
//! A session runs on a blocking thread (V4L2 calls block in poll/ioctl): each buffer is pushed
//! to an [`AuParser`] and flushed (V4L2 H.264 devices return one access unit per buffer), its
//! frames are stamped by the [`TimestampMapper`] and sent with `blocking_send`. The supervisor
//! logs why a session ended, sends [`SourceEvent::Discontinuity`] if it had produced frames (the
//! next segment then carries EXT-X-DISCONTINUITY), waits per [`Backoff`] and opens again.

use super::keyframe::{KeyframePolicy, KeyframeSetup};
use super::timestamp::{ClockSample, TimestampMapper};
use super::{Device, Opener, Request, V4l2Error};
use crate::h264::{frame_duration_for_fps, AuParser, ParsedItem};
use crate::media::{Frame, SourceEvent};
use crate::source::{Backoff, SourceConfig};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// How long one wait for a buffer lasts; between waits the session checks that the receiver
/// still exists, so shutdown never waits for a stalled device.
pub const POLL_SLICE: Duration = Duration::from_millis(250);

/// Session settings.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    /// Segment target in 90 kHz ticks (key frame policy).
    pub segment_target: u64,
    /// Frame rate override (`framerate`); else the negotiated rate.
    pub framerate: Option<f64>,
    /// No buffer for this long: the session fails and the device is reopened.
    pub stall_timeout: Duration,
}

impl SessionOptions {
    pub fn from_config(cfg: &SourceConfig) -> Self {
        SessionOptions {
            segment_target: crate::hls::segmenter::ticks(cfg.v4l2.segment_duration),
            framerate: cfg.framerate,
            stall_timeout: cfg.stall_timeout,
        }
    }
}

/// Why a session ended.
#[derive(Debug)]
pub enum Ended {
    /// The receiver is gone: stop for good.
    Closed,
    Failed(V4l2Error),
}

/// Counters of one session.
#[derive(Debug, Default, Clone)]
pub struct SessionStats {
    pub frames: u64,
    pub keyframe_requests: u64,
    pub corrupt_buffers: u64,
}

/// Streams from an opened device until it fails or `tx` closes (blocking).
pub fn run_session(
    dev: &mut dyn Device,
    name: &str,
    req: &Request,
    opts: &SessionOptions,
    tx: &mpsc::Sender<SourceEvent>,
    stats: &mut SessionStats,
) -> Ended {
    let neg = match dev.negotiate(req) {
        Ok(n) => n,
        Err(e) => return Ended::Failed(e),
    };
    for note in &neg.notes {
        tracing::warn!(source = name, "{note}");
    }
    let fps = opts
        .framerate
        .unwrap_or(if neg.fps() > 0.0 { neg.fps() } else { req.fps });
    let nominal = frame_duration_for_fps(fps);
    tracing::info!(
        source = name, route = ?neg.route, format = %neg.fourcc, width = neg.width, height = neg.height,
        fps = format!("{fps:.3}"), idr_interval = ?neg.gop_frames, force_keyframe = neg.can_force_keyframe,
        "V4L2 streaming"
    );
    let path = name.strip_prefix("v4l2:").unwrap_or(name).to_string();
    let mut parser = AuParser::new(Some(nominal));
    let mut mapper = TimestampMapper::new(nominal);
    let mut policy = KeyframePolicy::new(KeyframeSetup {
        target: opts.segment_target,
        nominal: nominal as u64,
        can_force: neg.can_force_keyframe,
        gop_frames: neg.gop_frames,
    });
    let mut idle = Duration::ZERO;
    let mut waiting_idr = 0u64;
    loop {
        if tx.is_closed() {
            return Ended::Closed;
        }
        let buf = match dev.next_buffer(POLL_SLICE) {
            Ok(Some(b)) => {
                idle = Duration::ZERO;
                b
            }
            Ok(None) => {
                idle += POLL_SLICE;
                if idle >= opts.stall_timeout {
                    return Ended::Failed(V4l2Error::Stalled { path, after: idle });
                }
                continue;
            }
            Err(e) => return Ended::Failed(e),
        };
        let now = ClockSample::now();
        let arrived = Instant::now();
        if buf.corrupt {
            // The frame is lost and with it the reference chain: start again at an IDR.
            stats.corrupt_buffers += 1;
            tracing::debug!(
                source = name,
                sequence = buf.sequence,
                "driver flagged a corrupt buffer; dropped"
            );
            if neg.can_force_keyframe {
                if let Err(e) = request(dev, name, stats) {
                    return Ended::Failed(e);
                }
            }
            continue;
        }
        let skipped = parser.skipped_before_start;
        if let Err(err) = parser.push(&buf.data).and_then(|_| parser.flush()) {
            return Ended::Failed(V4l2Error::H264 { path, err });
        }
        if parser.skipped_before_start > skipped && neg.can_force_keyframe {
            // Started mid-GOP: pictures are dropped until an IDR; ask for one (again each second).
            if waiting_idr % (fps.round() as u64).max(1) == 0 {
                if let Err(e) = request(dev, name, stats) {
                    return Ended::Failed(e);
                }
            }
            waiting_idr += 1;
        }
        while let Some(item) = parser.next_item() {
            let ev = match item {
                ParsedItem::Format(info) => SourceEvent::Format(info),
                ParsedItem::Au { data, idr } => {
                    let (dts, capture, _) = mapper.map(buf.timestamp, now, arrived);
                    stats.frames += 1;
                    if policy.on_frame(dts, idr) {
                        if let Err(e) = request(dev, name, stats) {
                            return Ended::Failed(e);
                        }
                    }
                    SourceEvent::Frame(Frame {
                        dts,
                        cts: 0,
                        capture,
                        data,
                        idr,
                        arrived,
                    })
                }
            };
            if tx.blocking_send(ev).is_err() {
                return Ended::Closed;
            }
        }
    }
}

/// Sends a key frame request; only a vanished device ends the session.
fn request(dev: &mut dyn Device, name: &str, stats: &mut SessionStats) -> Result<(), V4l2Error> {
    match dev.request_keyframe() {
        Ok(()) => {
            stats.keyframe_requests += 1;
            tracing::debug!(source = name, "key frame requested");
            Ok(())
        }
        Err(e @ V4l2Error::Gone { .. }) => Err(e),
        Err(e) => {
            tracing::warn!(source = name, error = %e, "key frame request failed");
            Ok(())
        }
    }
}

/// Opens and streams, reopening with backoff after every failure, until `tx` closes.
pub async fn supervise(
    name: String,
    open: Opener,
    req: Request,
    opts: SessionOptions,
    tx: mpsc::Sender<SourceEvent>,
) {
    let mut backoff = Backoff::default();
    let mut attempt = 0u64;
    loop {
        attempt += 1;
        let started = Instant::now();
        let (open2, req2, opts2, tx2, name2) = (
            open.clone(),
            req.clone(),
            opts.clone(),
            tx.clone(),
            name.clone(),
        );
        let joined = tokio::task::spawn_blocking(move || {
            let mut stats = SessionStats::default();
            let ended = match open2() {
                Ok(mut dev) => run_session(dev.as_mut(), &name2, &req2, &opts2, &tx2, &mut stats),
                Err(e) => Ended::Failed(e),
            };
            (ended, stats)
        })
        .await;
        let (ended, stats) = joined.unwrap_or_else(|e| {
            let msg = if e.is_panic() {
                "the device thread panicked"
            } else {
                "the device thread was cancelled"
            };
            let path = name.strip_prefix("v4l2:").unwrap_or(&name).to_string();
            (
                Ended::Failed(V4l2Error::Io {
                    path,
                    op: "streaming",
                    err: std::io::Error::other(msg),
                }),
                SessionStats::default(),
            )
        });
        match ended {
            Ended::Closed => return,
            Ended::Failed(e) if stats.frames == 0 => tracing::warn!(
                source = %name, error = %e, attempt, "V4L2 device not streaming; retrying"
            ),
            Ended::Failed(e) => tracing::warn!(
                source = %name, error = %e, attempt, frames = stats.frames,
                keyframe_requests = stats.keyframe_requests, "V4L2 device stopped; reopening"
            ),
        }
        if stats.frames > 0
            && tx
                .send(SourceEvent::Discontinuity {
                    reason: "v4l2 device reopened".into(),
                })
                .await
                .is_err()
        {
            return;
        }
        let delay = backoff.delay(started.elapsed());
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = tx.closed() => return,
        }
    }
}

#[cfg(test)]
mod tests;
