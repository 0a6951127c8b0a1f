//! The event side of one destination: decides, for each source event, whether it goes into the
//! destination's bounded queue, and keeps the queue decodable when something has to be dropped.
//!
//! Every drop (broadcast lag, full queue, destination down) drops up to the next IDR, so the
//! relay never receives a P-frame whose reference it did not get: whole (remainders of) GOPs
//! are dropped, never single frames in the middle. [`pump`] runs the gate between the source's
//! broadcast channel and the destination's queue, and never waits on either side's consumer.

use super::{conn, Dest, QUEUE_FRAMES};
use crate::media::{Frame, SourceEvent, TrackInfo};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, mpsc};

/// What the network writer receives.
#[derive(Debug)]
pub enum Item {
    /// A frame with the format it belongs to; `discontinuity` if the timeline broke before it.
    Frame {
        frame: Frame,
        info: Arc<TrackInfo>,
        discontinuity: bool,
    },
    /// The source ended: unpublish and stop.
    End,
}

/// Why frames were not sent (the `reason` label of `hlsd_rtmp_frames_dropped_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The reader fell behind the broadcast channel (the process is starved of CPU).
    Lagged,
    /// The destination's queue is full: the relay or the network is slower than the stream.
    QueueFull,
    /// Waiting for an IDR after a drop, a (re)connect or a format change.
    WaitingIdr,
    /// The destination is not publishing (connecting, or waiting to retry).
    Disconnected,
}

impl DropReason {
    pub fn label(self) -> &'static str {
        match self {
            DropReason::Lagged => "lagged",
            DropReason::QueueFull => "queue_full",
            DropReason::WaitingIdr => "waiting_for_idr",
            DropReason::Disconnected => "disconnected",
        }
    }
}

/// The decision for one event.
#[derive(Debug)]
pub enum Verdict {
    Enqueue(Item),
    Drop(DropReason),
    /// Bookkeeping only (format, discontinuity).
    Nothing,
}

/// Per-destination filter state.
#[derive(Debug)]
pub struct Gate {
    info: Option<Arc<TrackInfo>>,
    need_idr: bool,
    discontinuity: bool,
}

impl Default for Gate {
    fn default() -> Self {
        Gate {
            info: None,
            need_idr: true,
            discontinuity: false,
        }
    }
}

impl Gate {
    /// Decides about `ev`; `publishing` says whether the writer is connected and wants frames.
    pub fn on_event(&mut self, ev: SourceEvent, publishing: bool) -> Verdict {
        match ev {
            SourceEvent::Format(info) => {
                self.set_format(info);
                Verdict::Nothing
            }
            SourceEvent::Discontinuity { .. } => {
                self.discontinuity = true;
                self.need_idr = true;
                Verdict::Nothing
            }
            SourceEvent::End => Verdict::Enqueue(Item::End),
            SourceEvent::Frame(frame) => {
                if !publishing {
                    self.need_idr = true;
                    return Verdict::Drop(DropReason::Disconnected);
                }
                let Some(info) = self.info.clone() else {
                    return Verdict::Drop(DropReason::WaitingIdr);
                };
                if self.need_idr && !frame.idr {
                    return Verdict::Drop(DropReason::WaitingIdr);
                }
                self.need_idr = false;
                let discontinuity = std::mem::take(&mut self.discontinuity);
                Verdict::Enqueue(Item::Frame {
                    frame,
                    info,
                    discontinuity,
                })
            }
        }
    }

    /// Takes `info` as the current format (from a Format event, or from the live window after
    /// a lag may have swallowed one); a change waits for the next IDR.
    pub fn set_format(&mut self, info: TrackInfo) {
        if self.info.as_deref() != Some(&info) {
            self.info = Some(Arc::new(info));
            self.need_idr = true;
        }
    }

    /// Events were lost (broadcast lag) or a frame could not be queued: resume at the next IDR.
    pub fn resync(&mut self) {
        self.need_idr = true;
    }

    /// True while frames are being dropped up to the next IDR.
    pub fn waiting_for_idr(&self) -> bool {
        self.need_idr
    }
}

/// Moves events from the broadcast channel into the destination's queue; never waits on it.
/// `format` tells the current stream format (the live window's), for when a lag lost the
/// Format event.
pub(super) async fn pump(
    dest: Arc<Dest>,
    mut events: broadcast::Receiver<SourceEvent>,
    format: impl Fn() -> Option<crate::media::TrackInfo>,
    tx: mpsc::Sender<Item>,
    publishing: Arc<AtomicBool>,
) {
    let mut gate = Gate::default();
    let (mut lag_warn, mut full_warn) = (Throttle::default(), Throttle::default());
    loop {
        let ev = match events.recv().await {
            Ok(ev) => ev,
            Err(broadcast::error::RecvError::Lagged(n)) => {
                if let Some(events) = lag_warn.hit(n) {
                    tracing::warn!(destination = %dest.label, events,
                        "rtmp: fell behind the source (CPU starved?); dropping until the next IDR");
                }
                dest.dropped(DropReason::Lagged, n);
                if let Some(info) = format() {
                    gate.set_format(info);
                }
                gate.resync();
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => break,
        };
        match gate.on_event(ev, publishing.load(Ordering::Acquire)) {
            Verdict::Nothing => {}
            Verdict::Drop(reason) => dest.dropped(reason, 1),
            Verdict::Enqueue(Item::End) => {
                let _ = tokio::time::timeout(conn::CLOSE_TIMEOUT, tx.send(Item::End)).await;
                break;
            }
            Verdict::Enqueue(item) => match tx.try_send(item) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    if let Some(times) = full_warn.hit(1) {
                        tracing::warn!(destination = %dest.label, queue = QUEUE_FRAMES, times,
                            "rtmp: relay too slow, queue full; dropping frames until the next IDR");
                    }
                    dest.dropped(DropReason::QueueFull, 1);
                    gate.resync();
                }
                Err(mpsc::error::TrySendError::Closed(_)) => break,
            },
        }
    }
}

/// Repeated warnings (a relay too slow for every GOP) are logged at most every this often.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// Rate limit of a repeated warning: the first occurrence is logged at once, later ones at most
/// every [`WARN_EVERY`], with the number of occurrences since the last log. (The metrics count
/// every drop.)
#[derive(Default)]
struct Throttle {
    last: Option<Instant>,
    pending: u64,
}

impl Throttle {
    fn hit(&mut self, n: u64) -> Option<u64> {
        self.pending += n;
        if self.last.is_some_and(|t| t.elapsed() < WARN_EVERY) {
            return None;
        }
        self.last = Some(Instant::now());
        Some(std::mem::take(&mut self.pending))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{self, RtmpDropLabels, RtmpLabels};
    use crate::sink::rtmp::RtmpAudio;
    use bytes::Bytes;
    use std::time::{Instant, SystemTime};

    fn info(w: u32) -> TrackInfo {
        TrackInfo {
            sps: Bytes::from_static(&[0x67, 0x42, 0xc0, 0x1e]),
            pps: Bytes::from_static(&[0x68, 0xce]),
            width: w,
            height: 240,
            profile_idc: 0x42,
            constraint_flags: 0xc0,
            level_idc: 0x1e,
            frame_duration: 3000,
        }
    }

    fn frame(n: u64, idr: bool) -> SourceEvent {
        SourceEvent::Frame(Frame {
            dts: n * 3000,
            capture: SystemTime::now(),
            data: Bytes::new(),
            idr,
            arrived: Instant::now(),
        })
    }

    /// Runs events through a gate; returns "F<n>" for each enqueued frame (n = dts/3000) and the drop reasons.
    fn run(g: &mut Gate, evs: Vec<(SourceEvent, bool)>) -> Vec<String> {
        evs.into_iter()
            .filter_map(|(ev, publishing)| match g.on_event(ev, publishing) {
                Verdict::Enqueue(Item::Frame {
                    frame,
                    discontinuity,
                    ..
                }) => Some(format!(
                    "F{}{}",
                    frame.dts / 3000,
                    if discontinuity { "d" } else { "" }
                )),
                Verdict::Enqueue(Item::End) => Some("End".into()),
                Verdict::Drop(r) => Some(r.label().to_string()),
                Verdict::Nothing => None,
            })
            .collect()
    }

    #[test]
    fn starts_at_the_first_idr_after_connecting() {
        let mut g = Gate::default();
        let out = run(
            &mut g,
            vec![
                (frame(0, true), true), // no format yet
                (SourceEvent::Format(info(320)), true),
                (frame(1, false), false),
                (frame(2, true), false), // not publishing yet
                (frame(3, false), true), // publishing, but mid-GOP
                (frame(4, true), true),
                (frame(5, false), true),
            ],
        );
        assert_eq!(
            out,
            [
                "waiting_for_idr",
                "disconnected",
                "disconnected",
                "waiting_for_idr",
                "F4",
                "F5"
            ]
        );
    }

    #[test]
    fn resync_drops_the_rest_of_the_gop() {
        let mut g = Gate::default();
        run(
            &mut g,
            vec![
                (SourceEvent::Format(info(320)), true),
                (frame(0, true), true),
            ],
        );
        g.resync();
        assert!(g.waiting_for_idr());
        let out = run(
            &mut g,
            vec![
                (frame(1, false), true),
                (frame(2, false), true),
                (frame(3, true), true),
                (frame(4, false), true),
            ],
        );
        assert_eq!(out, ["waiting_for_idr", "waiting_for_idr", "F3", "F4"]);
        assert!(!g.waiting_for_idr());
    }

    #[test]
    fn format_change_and_discontinuity() {
        let mut g = Gate::default();
        let out = run(
            &mut g,
            vec![
                (SourceEvent::Format(info(320)), true),
                (frame(0, true), true),
                (SourceEvent::Format(info(320)), true), // same format repeated: no resync
                (frame(1, false), true),
                (
                    SourceEvent::Discontinuity {
                        reason: "restart".into(),
                    },
                    true,
                ),
                (frame(2, false), true),
                (frame(3, true), true),
                (SourceEvent::Format(info(640)), true),
                (frame(4, false), true),
                (frame(5, true), true),
                (SourceEvent::End, true),
            ],
        );
        assert_eq!(
            out,
            [
                "F0",
                "F1",
                "waiting_for_idr",
                "F3d",
                "waiting_for_idr",
                "F5",
                "End"
            ]
        );
    }

    fn test_dest(label: &str) -> Arc<Dest> {
        let m = metrics::get();
        let l = RtmpLabels {
            destination: label.into(),
        };
        Arc::new(Dest {
            url: "rtmp://h/live/k".parse().unwrap(),
            label: label.into(),
            bytes: m.rtmp_bytes.get_or_create(&l).clone(),
            frames: m.rtmp_frames.get_or_create(&l).clone(),
            reconnects: m.rtmp_reconnects.get_or_create(&l).clone(),
            audio: RtmpAudio::None,
        })
    }

    fn dropped(label: &str, reason: DropReason) -> u64 {
        metrics::get()
            .rtmp_frames_dropped
            .get_or_create(&RtmpDropLabels {
                destination: label.into(),
                reason: reason.label(),
            })
            .get()
    }

    /// Frame `n` of a stream with an IDR every 4 frames.
    fn gop4_frame(n: u64) -> SourceEvent {
        frame(n, n % 4 == 0)
    }

    fn frame_no(item: Option<Item>) -> Option<u64> {
        match item {
            Some(Item::Frame { frame, .. }) => Some(frame.dts / 3000),
            _ => None,
        }
    }

    /// Lets the pump run (current-thread runtime) until `done`, bounded.
    async fn until(done: impl Fn() -> bool) {
        for _ in 0..1000 {
            if done() {
                return;
            }
            tokio::task::yield_now().await;
        }
        panic!("pump did not get there");
    }

    /// A relay that stops reading: the queue fills, the rest of each GOP is dropped (counted),
    /// the source side never waits, and sending resumes at the first IDR once there is room.
    #[tokio::test]
    async fn slow_relay_costs_whole_gops() {
        let label = "test://slow";
        let dest = test_dest(label);
        let (ev_tx, ev_rx) = broadcast::channel(64);
        let (tx, mut rx) = mpsc::channel(4);
        let pump = tokio::spawn(pump(
            dest,
            ev_rx,
            || None,
            tx,
            Arc::new(AtomicBool::new(true)),
        ));
        ev_tx.send(SourceEvent::Format(info(320))).unwrap();
        for n in 0..12 {
            ev_tx.send(gop4_frame(n)).unwrap(); // GOPs of 4: IDRs at 0, 4, 8
        }
        until(|| dropped(label, DropReason::WaitingIdr) == 6).await;
        assert_eq!(
            dropped(label, DropReason::QueueFull),
            2,
            "IDRs 4 and 8 found the queue full"
        );
        let first: Vec<_> = (0..4).map(|_| frame_no(rx.try_recv().ok())).collect();
        assert_eq!(first, [Some(0), Some(1), Some(2), Some(3)]);
        for n in 12..14 {
            ev_tx.send(gop4_frame(n)).unwrap();
        }
        drop(ev_tx);
        pump.await.unwrap();
        assert_eq!(
            frame_no(rx.recv().await),
            Some(12),
            "resumes at the next IDR"
        );
        assert_eq!(frame_no(rx.recv().await), Some(13));
        assert!(
            rx.recv().await.is_none(),
            "the queue closes with the source"
        );
    }

    /// A reader that falls behind the broadcast channel resynchronises at the next IDR, with
    /// the format from the live window if the lag swallowed the Format event.
    #[tokio::test]
    async fn lagging_reader_resumes_at_an_idr() {
        let label = "test://lagged";
        let (ev_tx, ev_rx) = broadcast::channel(4);
        let (tx, mut rx) = mpsc::channel(16);
        ev_tx.send(SourceEvent::Format(info(320))).unwrap();
        for n in 0..10 {
            ev_tx.send(gop4_frame(n)).unwrap(); // overflows the channel before the pump runs
        }
        drop(ev_tx);
        pump(
            test_dest(label),
            ev_rx,
            || Some(info(320)),
            tx,
            Arc::new(AtomicBool::new(true)),
        )
        .await;
        assert_eq!(
            dropped(label, DropReason::Lagged),
            7,
            "Format and frames 0-5 were lost"
        );
        assert_eq!(
            dropped(label, DropReason::WaitingIdr),
            2,
            "frames 6 and 7 precede the next IDR"
        );
        match rx.try_recv() {
            Ok(Item::Frame { frame, info: i, .. }) => {
                assert_eq!((frame.dts / 3000, i.width), (8, 320))
            }
            other => panic!("expected IDR 8 with the window's format, got {other:?}"),
        }
        assert_eq!(frame_no(rx.try_recv().ok()), Some(9));
    }

    #[test]
    fn throttle_logs_first_then_summarises() {
        let mut t = Throttle::default();
        assert_eq!(t.hit(3), Some(3));
        assert_eq!(t.hit(1), None);
        assert_eq!(t.hit(2), None);
        t.last = Instant::now().checked_sub(WARN_EVERY);
        assert_eq!(t.hit(1), Some(4), "occurrences since the last log");
    }
}
