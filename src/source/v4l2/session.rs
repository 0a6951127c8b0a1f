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
mod tests {
    use super::super::fake::{self, FakeDevice, FakeLog};
    use super::super::negotiate::fixtures::{bcm2835_v4l2, raw_cam_and_codec, request, uvc_h264};
    use super::*;
    use crate::hls::segmenter::{Output, Segmenter, SegmenterConfig};
    use crate::media::TIMESCALE;
    use std::sync::{Arc, Mutex};
    use std::time::{SystemTime, UNIX_EPOCH};

    fn opts() -> SessionOptions {
        SessionOptions {
            segment_target: 90_000,
            framerate: None,
            stall_timeout: Duration::from_secs(2),
        }
    }

    /// Runs one session to its end on a thread; returns the events and how it ended.
    fn one_session(
        mut dev: FakeDevice,
        opts: SessionOptions,
    ) -> (Vec<SourceEvent>, Ended, SessionStats) {
        let (tx, mut rx) = mpsc::channel(100_000);
        let mut stats = SessionStats::default();
        let ended = run_session(
            &mut dev,
            "v4l2:/dev/video0",
            &request(),
            &opts,
            &tx,
            &mut stats,
        );
        drop(tx);
        let mut events = Vec::new();
        while let Ok(ev) = rx.try_recv() {
            events.push(ev);
        }
        (events, ended, stats)
    }

    fn frames(events: &[SourceEvent]) -> Vec<&Frame> {
        events
            .iter()
            .filter_map(|e| {
                if let SourceEvent::Frame(f) = e {
                    Some(f)
                } else {
                    None
                }
            })
            .collect()
    }

    /// Segment durations (ticks) the segmenter makes of `events`.
    fn segment_durations(events: Vec<SourceEvent>) -> Vec<u64> {
        let mut seg = Segmenter::new(SegmenterConfig {
            segment_target: 90_000,
            part_target: 18_000,
        });
        let mut out = Vec::new();
        for ev in events {
            seg.push(ev, &mut out).unwrap();
        }
        seg.push(SourceEvent::End, &mut out).unwrap();
        out.iter()
            .filter_map(|o| {
                if let Output::SegmentEnd { duration, .. } = o {
                    Some(*duration)
                } else {
                    None
                }
            })
            .collect()
    }

    #[test]
    fn fixture_replays_as_frames_with_capture_times() {
        let log = Arc::new(Mutex::new(FakeLog::default()));
        let dev = FakeDevice::new(uvc_h264(), None, log.clone());
        let base = dev.first_timestamp();
        let (events, ended, stats) = one_session(dev, opts());
        assert!(
            matches!(ended, Ended::Failed(V4l2Error::Gone { .. })),
            "{ended:?}"
        );
        let SourceEvent::Format(info) = &events[0] else {
            panic!("first event {:?}", events[0])
        };
        assert_eq!(
            (info.width, info.height, info.frame_duration),
            (1280, 720, 3000)
        );
        let fr = frames(&events);
        assert_eq!(fr.len(), fake::FIXTURE_FRAMES);
        assert_eq!(stats.frames as usize, fake::FIXTURE_FRAMES);
        assert_eq!(fr.iter().filter(|f| f.idr).count(), 5);
        // 30 fps capture timestamps: dts on the 90 kHz grid, capture time = timestamp + offset.
        let offset = fr[0].capture.duration_since(UNIX_EPOCH).unwrap().as_nanos() as i128
            - base.as_nanos() as i128;
        for (n, f) in fr.iter().enumerate() {
            assert_eq!(f.dts, n as u64 * 3000);
            let ts = fake::timestamp_of(base, n);
            let want = UNIX_EPOCH + Duration::from_nanos((ts.as_nanos() as i128 + offset) as u64);
            assert!(
                f.capture
                    .duration_since(want)
                    .unwrap_or_else(|e| e.duration())
                    < Duration::from_micros(2)
            );
        }
        // The wall clock is REALTIME at capture: within a second of now.
        let age = SystemTime::now()
            .duration_since(fr[0].capture)
            .unwrap_or_else(|e| e.duration());
        assert!(age < Duration::from_secs(2), "{age:?}");
        assert!(
            log.lock().unwrap().requests.is_empty(),
            "a UVC camera without FORCE_KEY_FRAME is never asked"
        );
    }

    #[test]
    fn keyframe_requests_cut_one_second_segments_from_two_second_gops() {
        // The fixture's GOP is 60 frames (2 s). The M2M encoder can force key frames.
        let (cam, enc) = raw_cam_and_codec();
        let mut enc = enc;
        enc.controls
            .retain(|c| c.id != super::super::controls::H264_I_PERIOD);
        let log = Arc::new(Mutex::new(FakeLog::default()));
        let dev = FakeDevice::new(cam, Some(enc), log.clone()).honour_keyframes(0);
        let (events, _, stats) = one_session(dev, opts());
        let durations = segment_durations(events);
        assert!(durations.len() >= 8, "{durations:?}");
        let (last, full) = durations.split_last().unwrap();
        assert!(full.iter().all(|d| *d == TIMESCALE as u64), "{durations:?}");
        assert!(*last <= TIMESCALE as u64);
        assert_eq!(
            stats.keyframe_requests as usize,
            log.lock().unwrap().requests.len()
        );

        // A device that honours requests two frames late: the delay is learned after the first.
        let (cam, enc) = raw_cam_and_codec();
        let mut enc = enc;
        enc.controls
            .retain(|c| c.id != super::super::controls::H264_I_PERIOD);
        let dev = FakeDevice::new(cam, Some(enc), Arc::default()).honour_keyframes(2);
        let durations = segment_durations(one_session(dev, opts()).0);
        assert_eq!(durations[0], 32 * 3000, "{durations:?}");
        assert!(
            durations[1..durations.len() - 1]
                .iter()
                .all(|d| *d == 90_000),
            "{durations:?}"
        );
    }

    #[test]
    fn without_force_key_frame_segments_follow_the_gop() {
        let dev = FakeDevice::new(bcm2835_v4l2(), None, Arc::default());
        let durations = segment_durations(one_session(dev, opts()).0);
        // IDRs every 60 frames: 2 s segments (the window warns about it).
        assert!(
            durations[..durations.len() - 1]
                .iter()
                .all(|d| *d == 180_000),
            "{durations:?}"
        );
    }

    #[test]
    fn session_that_starts_mid_gop_asks_for_an_idr_at_once() {
        let log = Arc::new(Mutex::new(FakeLog::default()));
        let (cam, enc) = raw_cam_and_codec();
        let dev = FakeDevice::new(cam, Some(enc), log.clone())
            .start_at(10)
            .honour_keyframes(0);
        let (events, _, _) = one_session(dev, opts());
        let fr = frames(&events);
        // The first buffer (a P-frame) is dropped by the parser; the next one is the forced IDR.
        assert!(fr[0].idr);
        assert_eq!(fr.len(), fake::FIXTURE_FRAMES - 1);
        assert_eq!(log.lock().unwrap().requests.first(), Some(&1));
    }

    #[test]
    fn corrupt_buffers_are_dropped_and_stalls_end_the_session() {
        let (cam, enc) = raw_cam_and_codec();
        let log = Arc::new(Mutex::new(FakeLog::default()));
        let dev = FakeDevice::new(cam, Some(enc), log.clone())
            .corrupt(&[5])
            .stall_after(20);
        let (events, ended, stats) = one_session(
            dev,
            SessionOptions {
                stall_timeout: Duration::from_secs(1),
                ..opts()
            },
        );
        assert_eq!(stats.corrupt_buffers, 1);
        assert_eq!(frames(&events).len(), 19);
        assert!(
            log.lock().unwrap().requests.contains(&6),
            "an IDR is asked for after a lost frame"
        );
        match ended {
            Ended::Failed(e @ V4l2Error::Stalled { .. }) => {
                assert_eq!(e.to_string(), "/dev/video0: no frame for 1 s")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn negotiation_failure_ends_the_session() {
        let (cam, _) = raw_cam_and_codec();
        let (events, ended, _) = one_session(FakeDevice::new(cam, None, Arc::default()), opts());
        assert!(events.is_empty());
        assert!(
            matches!(ended, Ended::Failed(V4l2Error::Unsupported { .. })),
            "{ended:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn unplugged_device_is_reopened_with_a_discontinuity() {
        // Session 1: 45 frames, then unplugged. Opens 2 and 3: no device. Session 4: streams.
        let opens = Arc::new(Mutex::new(0u32));
        let log = Arc::new(Mutex::new(FakeLog::default()));
        let (o, l) = (opens.clone(), log.clone());
        let opener: Opener = Arc::new(move || {
            let n = {
                let mut g = o.lock().unwrap();
                *g += 1;
                *g
            };
            match n {
                1 => Ok(
                    Box::new(FakeDevice::new(uvc_h264(), None, l.clone()).fail_after(45))
                        as Box<dyn Device>,
                ),
                2 | 3 => Err(V4l2Error::Open {
                    path: "/dev/video0".into(),
                    err: std::io::Error::from_raw_os_error(libc::ENOENT),
                }),
                _ => Ok(Box::new(FakeDevice::new(uvc_h264(), None, l.clone())) as Box<dyn Device>),
            }
        });
        let (tx, mut rx) = mpsc::channel(8);
        let sup = tokio::spawn(supervise(
            "v4l2:/dev/video0".into(),
            opener,
            request(),
            opts(),
            tx,
        ));
        let mut events = Vec::new();
        while frames(&events).len() < 100 {
            events.push(
                rx.recv()
                    .await
                    .expect("the supervisor never stops by itself"),
            );
        }
        drop(rx);
        tokio::time::timeout(Duration::from_secs(60), sup)
            .await
            .expect("stops once the receiver is gone")
            .unwrap();
        assert_eq!(*opens.lock().unwrap(), 4);
        let disc: Vec<usize> = events
            .iter()
            .enumerate()
            .filter_map(|(i, e)| matches!(e, SourceEvent::Discontinuity { .. }).then_some(i))
            .collect();
        assert_eq!(
            disc.len(),
            1,
            "one discontinuity for the unplug, none per failed reopen"
        );
        assert_eq!(frames(&events[..disc[0]]).len(), 45);
        // The second session starts a new timeline with a fresh Format.
        let after = &events[disc[0] + 1..];
        assert!(matches!(after[0], SourceEvent::Format(_)));
        assert_eq!(frames(after)[0].dts, 0);
        // Through the segmenter: the reopened stream gets EXT-X-DISCONTINUITY.
        let mut seg = Segmenter::new(SegmenterConfig {
            segment_target: 90_000,
            part_target: 18_000,
        });
        let mut out = Vec::new();
        for ev in events {
            seg.push(ev, &mut out).unwrap();
        }
        let starts: Vec<bool> = out
            .iter()
            .filter_map(|o| {
                if let Output::SegmentStart { discontinuity, .. } = o {
                    Some(*discontinuity)
                } else {
                    None
                }
            })
            .collect();
        assert_eq!(starts.iter().filter(|d| **d).count(), 1, "{starts:?}");
    }
}
