//! When to ask a V4L2 encoder for a key frame (`V4L2_CID_MPEG_VIDEO_FORCE_KEY_FRAME`).
//!
//! The segmenter cuts a segment at the first IDR at or after the segment target (precisely: an
//! IDR at `d` with `d + nominal/2 >= target` since the segment start). hlsd first asks the encoder
//! for an IDR interval of `fps × segment-duration` frames (`V4L2_CID_MPEG_VIDEO_H264_I_PERIOD` or
//! `GOP_SIZE`), so normally every segment is exactly one GOP and no request is sent. Requests are
//! the fallback, sent when the device can force key frames and:
//!
//! - a session starts (open, or reopen after an error) with a frame that is not an IDR: the
//!   segmenter drops frames until an IDR, so one is asked for at once;
//! - the next frame would reach the segment target since the segment started, and the encoder's
//!   GOP is unknown or longer than the target (no GOP control, or it was clamped);
//! - the encoder ignored its GOP setting: nothing by 1.5 × the target (safety net).
//!
//! An IDR that arrives too early to cut a segment does not restart the count (it mirrors the
//! segmenter's rule), and an early IDR is worse than a late one (the segment would last two
//! GOPs), so a request is sent for the *next* frame; the delay between request and IDR is
//! measured and later requests are sent that many frames sooner.

/// What the policy knows about the encoder.
#[derive(Debug, Clone, Copy)]
pub struct KeyframeSetup {
    /// Segment target in ticks.
    pub target: u64,
    /// Nominal frame duration in ticks.
    pub nominal: u64,
    /// The device accepts FORCE_KEY_FRAME.
    pub can_force: bool,
    /// The IDR interval in frames the encoder was set to, if it has such a control.
    pub gop_frames: Option<u32>,
}

/// Longest request delay (frames) the policy compensates for.
const MAX_LEAD: u64 = 5;

/// The key frame request policy; see the module docs.
#[derive(Debug)]
pub struct KeyframePolicy {
    setup: KeyframeSetup,
    /// Request when the next frame is this far (ticks) from the segment start.
    force_after: u64,
    seg_start: Option<u64>,
    /// dts of the last frame when the outstanding request was sent.
    requested_at: Option<u64>,
    /// Frames between a request and the IDR, beyond the next frame (learned).
    lead: u64,
    /// Requests sent.
    pub requests: u64,
}

impl KeyframePolicy {
    pub fn new(setup: KeyframeSetup) -> Self {
        let gop_fits = setup
            .gop_frames
            .is_some_and(|g| g as u64 * setup.nominal <= setup.target + setup.nominal / 2);
        let force_after = if gop_fits {
            setup.target + setup.target / 2
        } else {
            setup.target
        };
        KeyframePolicy {
            setup,
            force_after,
            seg_start: None,
            requested_at: None,
            lead: 0,
            requests: 0,
        }
    }

    /// Whether requests are made only as a safety net (the encoder's GOP fits the target).
    pub fn gop_fits(&self) -> bool {
        self.force_after > self.setup.target
    }

    /// Frames a request takes to show, beyond the next frame (as learned).
    pub fn lead(&self) -> u64 {
        self.lead
    }

    /// Called for every frame handed on; true if a key frame should be requested now.
    pub fn on_frame(&mut self, dts: u64, idr: bool) -> bool {
        let KeyframeSetup {
            target,
            nominal,
            can_force,
            ..
        } = self.setup;
        if idr {
            if let Some(at) = self.requested_at.take() {
                let frames = dts.saturating_sub(at) / nominal.max(1);
                if (1..=MAX_LEAD + 1).contains(&frames) {
                    self.lead = frames - 1;
                }
            }
            match self.seg_start {
                Some(s) if dts.saturating_sub(s) + nominal / 2 < target => {} // too early to cut
                _ => self.seg_start = Some(dts),
            }
            return false;
        }
        if !can_force {
            return false;
        }
        let Some(start) = self.seg_start else {
            // No IDR yet this session: ask once, and again if it got lost.
            return self.request(dts, target);
        };
        let next = dts + nominal * (1 + self.lead);
        if next.saturating_sub(start) + nominal / 2 >= self.force_after {
            return self.request(dts, target);
        }
        false
    }

    /// Sends a request unless one is outstanding (one that got no IDR within `retry` is retried).
    fn request(&mut self, dts: u64, retry: u64) -> bool {
        if let Some(at) = self.requested_at {
            if dts.saturating_sub(at) < retry {
                return false;
            }
        }
        self.requested_at = Some(dts);
        self.requests += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const F: u64 = 3000; // 30 fps
    const T: u64 = 90_000; // 1 s segments

    /// Drives a policy over an encoder whose natural IDRs come every `gop` frames and that honours
    /// a request `delay` frames after the next one; returns the frame numbers of IDRs.
    fn simulate(
        setup: KeyframeSetup,
        gop: u64,
        delay: u64,
        frames: u64,
    ) -> (Vec<u64>, KeyframePolicy) {
        let mut p = KeyframePolicy::new(setup);
        let mut idrs = Vec::new();
        let mut since_idr = 0;
        let mut forced_at: Option<u64> = None;
        for n in 0..frames {
            let idr = n == 0 || since_idr == gop || forced_at == Some(n);
            if idr {
                idrs.push(n);
                since_idr = 0;
                forced_at = None;
            }
            since_idr += 1;
            if p.on_frame(n * F, idr) && forced_at.is_none() {
                forced_at = Some(n + 1 + delay);
            }
        }
        (idrs, p)
    }

    #[test]
    fn long_gop_is_cut_every_segment() {
        let setup = KeyframeSetup {
            target: T,
            nominal: F,
            can_force: true,
            gop_frames: None,
        };
        let (idrs, p) = simulate(setup, 60, 0, 149);
        assert_eq!(idrs, vec![0, 30, 60, 90, 120]);
        assert_eq!(p.requests, 4);
    }

    #[test]
    fn request_delay_is_learned() {
        let setup = KeyframeSetup {
            target: T,
            nominal: F,
            can_force: true,
            gop_frames: Some(250),
        };
        let (idrs, p) = simulate(setup, 250, 2, 200);
        // The first forced IDR is two frames late; after that they land on the target.
        assert_eq!(idrs, vec![0, 32, 62, 92, 122, 152, 182]);
        assert_eq!(p.lead(), 2);
    }

    #[test]
    fn fitting_gop_needs_no_requests() {
        let setup = KeyframeSetup {
            target: T,
            nominal: F,
            can_force: true,
            gop_frames: Some(30),
        };
        let (idrs, p) = simulate(setup, 30, 0, 300);
        assert_eq!(idrs.len(), 10);
        assert_eq!(p.requests, 0);
        assert!(p.gop_fits());
        // The safety net: the encoder ignores its GOP setting (natural GOP 120).
        let (idrs, _) = simulate(setup, 120, 0, 200);
        assert_eq!(idrs, vec![0, 45, 90, 135, 180]);
    }

    #[test]
    fn start_without_idr_asks_at_once_and_early_idr_does_not_reset() {
        let setup = KeyframeSetup {
            target: T,
            nominal: F,
            can_force: true,
            gop_frames: None,
        };
        let mut p = KeyframePolicy::new(setup);
        assert!(p.on_frame(0, false), "first frame not an IDR: ask");
        assert!(!p.on_frame(F, false), "one request outstanding");
        assert!(!p.on_frame(2 * F, true));
        assert_eq!(p.lead(), 1, "the IDR came one frame after the next");
        // An IDR 10 frames later is too early to cut: the count goes on from frame 2.
        assert!(!p.on_frame(12 * F, true));
        let asked: Vec<u64> = (13..40).filter(|n| p.on_frame(n * F, false)).collect();
        assert_eq!(
            asked,
            vec![30],
            "so that frame 32, 1 s after frame 2, is the IDR"
        );
        // Without FORCE_KEY_FRAME nothing is ever asked.
        let mut p = KeyframePolicy::new(KeyframeSetup {
            can_force: false,
            ..setup
        });
        assert!((0..100).all(|n| !p.on_frame(n * F, n % 60 == 0)));
    }
}
