//! The event side of one destination: decides, for each source event, whether it goes into the
//! destination's bounded queue, and keeps the queue decodable when something has to be dropped.
//!
//! Every drop (broadcast lag, full queue, destination down) drops up to the next IDR, so the
//! relay never receives a P-frame whose reference it did not get: whole (remainders of) GOPs
//! are dropped, never single frames in the middle. [`Gate`] is the pure decision; the task that
//! runs it between the source's broadcast channel and the destination's queue is
//! [`super::pump`].

use crate::media::{Frame, SourceEvent, TrackInfo};
use std::sync::Arc;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::rtmp::testutil::{frame, info};

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
}
