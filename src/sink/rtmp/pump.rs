//! The task between the source's broadcast channel and one destination's bounded queue: runs
//! the destination's [`Gate`] on every event and only ever `try_send`s, so it never waits on
//! the writer; drops are counted by reason and warned about at most every [`WARN_EVERY`].

use super::gate::{DropReason, Gate, Item, Verdict};
use super::{conn, Dest, QUEUE_FRAMES};
use crate::media::SourceEvent;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, mpsc};

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
    use crate::sink::rtmp::testutil::{frame, info};
    use crate::sink::rtmp::RtmpAudio;

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
