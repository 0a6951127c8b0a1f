//! Timestamps of MPEG-TS input: the encoder's 33-bit PTS/DTS (90 kHz, the same clock as
//! [`crate::media::TIMESCALE`]) unwrapped and mapped onto hlsd's media timeline and wall clock.
//!
//! The first frame anchors the mapping: media time 0 is its DTS, and its capture time (the
//! EXT-X-PROGRAM-DATE-TIME) is the wall clock when it arrived. Later frames keep the encoder's
//! spacing exactly. A DTS that steps back, jumps forward by more than [`MAX_JUMP`], or follows a
//! packet with the discontinuity indicator re-anchors the mapping: media time continues one frame
//! after the last, capture time restarts from the wall clock (live) or one frame after the last
//! (offline), and the source marks a discontinuity (EXT-X-DISCONTINUITY in the playlist).

use crate::media::TIMESCALE;
use std::time::SystemTime;

/// PTS/DTS are 33-bit counters: they wrap every 2^33 ticks (26.5 h).
const WRAP: i64 = 1 << 33;
/// A forward DTS step longer than this is a jump (encoder restart, splice), not lost frames.
pub const MAX_JUMP: i64 = 5 * TIMESCALE as i64;

/// Where one frame lands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    /// Media-timeline DTS in ticks (strictly increasing).
    pub dts: u64,
    /// PTS − DTS in ticks (the composition offset; positive with B-frames).
    pub cts: i32,
    pub capture: SystemTime,
    /// Why the mapping was re-anchored at this frame, if it was.
    pub reanchored: Option<&'static str>,
}

#[derive(Debug, Clone, Copy)]
struct Anchor {
    /// Unwrapped input DTS at the anchor.
    input: i64,
    /// Media DTS at the anchor.
    media: u64,
    wall: SystemTime,
}

/// The PTS/DTS mapper. See module docs.
#[derive(Debug)]
pub struct TsClock {
    /// Last raw (33-bit) DTS and its unwrapped value.
    last: Option<(u64, i64)>,
    anchor: Option<Anchor>,
    last_media: u64,
    last_capture: SystemTime,
    nominal: u64,
    /// Re-anchor capture time from the wall clock (live sources) or from the media timeline.
    live: bool,
    /// The next frame follows a TS discontinuity indicator.
    marked: bool,
    /// Re-anchors so far.
    pub reanchors: u64,
}

/// The signed difference `a − b` of two 33-bit timestamps, taking the shorter way round.
pub fn diff33(a: u64, b: u64) -> i64 {
    let d = (a as i64 - b as i64).rem_euclid(WRAP);
    if d >= WRAP / 2 {
        d - WRAP
    } else {
        d
    }
}

impl TsClock {
    pub fn new(live: bool) -> Self {
        TsClock {
            last: None,
            anchor: None,
            last_media: 0,
            last_capture: SystemTime::UNIX_EPOCH,
            nominal: 3000,
            live,
            marked: false,
            reanchors: 0,
        }
    }

    /// Nominal frame duration (ticks), used to step over a re-anchor.
    pub fn set_nominal(&mut self, ticks: u32) {
        self.nominal = u64::from(ticks.max(1));
    }

    /// The next frame follows a discontinuity indicator in the transport stream.
    pub fn mark_discontinuity(&mut self) {
        self.marked = true;
    }

    /// Maps a frame's raw DTS and PTS (33 bits each); `now` is the wall clock at its arrival.
    pub fn stamp(&mut self, dts: u64, pts: u64, now: SystemTime) -> Stamp {
        let dts = dts & (WRAP as u64 - 1);
        let pts = pts & (WRAP as u64 - 1);
        let unwrapped = match self.last {
            None => dts as i64,
            Some((raw, u)) => u + diff33(dts, raw),
        };
        let cts = diff33(pts, dts).clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32;
        let mut reanchored = None;
        let anchor = match (self.anchor, self.last) {
            (None, _) | (_, None) => Anchor { input: unwrapped, media: 0, wall: now },
            (Some(a), Some((_, last_u))) => {
                let step = unwrapped - last_u;
                let why = if std::mem::take(&mut self.marked) {
                    Some("discontinuity indicator")
                } else if step <= 0 {
                    Some("timestamps stepped back")
                } else if step > MAX_JUMP {
                    Some("timestamps jumped forward")
                } else {
                    None
                };
                match why {
                    None => a,
                    Some(why) => {
                        reanchored = Some(why);
                        self.reanchors += 1;
                        let media = self.last_media + self.nominal;
                        let step = crate::media::ticks_to_duration(self.nominal);
                        let wall = if self.live { now.max(self.last_capture + step) } else { self.last_capture + step };
                        Anchor { input: unwrapped, media, wall }
                    }
                }
            }
        };
        self.anchor = Some(anchor);
        self.last = Some((dts, unwrapped));
        let since = (unwrapped - anchor.input).max(0) as u64;
        let media = anchor.media + since;
        let capture = anchor.wall + crate::media::ticks_to_duration(since);
        self.last_media = media;
        self.last_capture = capture;
        Stamp { dts: media, cts, capture, reanchored }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn wraps_keep_spacing_and_jumps_reanchor() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let mut c = TsClock::new(false);
        let near_wrap = (1u64 << 33) - 4500;
        let s = c.stamp(near_wrap, near_wrap + 6000, t0);
        assert_eq!((s.dts, s.cts, s.capture, s.reanchored), (0, 6000, t0, None));
        // Across the 33-bit wrap: spacing kept, PTS across the wrap before DTS.
        let s = c.stamp(near_wrap + 3000, 1500 + 3000, t0);
        assert_eq!((s.dts, s.cts), (3000, 6000 - 3000 + 3000));
        let s = c.stamp(1500, 1500, t0);
        assert_eq!((s.dts, s.reanchored), (6000, None));
        assert_eq!(s.capture, t0 + Duration::from_nanos(6000 * 1_000_000_000 / 90_000));
        // A 60 s jump forward: re-anchored one frame on.
        let s = c.stamp(1500 + 60 * 90_000, 1500 + 60 * 90_000, t0);
        assert_eq!((s.dts, s.reanchored), (9000, Some("timestamps jumped forward")));
        // A step back.
        let s = c.stamp(100, 100, t0);
        assert_eq!((s.dts, s.reanchored), (12000, Some("timestamps stepped back")));
        let s = c.stamp(3100, 3100, t0);
        assert_eq!((s.dts, s.reanchored), (15000, None));
        c.mark_discontinuity();
        let s = c.stamp(6100, 6100, t0);
        assert_eq!((s.dts, s.reanchored), (18000, Some("discontinuity indicator")));
        assert_eq!(c.reanchors, 3);
        assert_eq!(diff33(0, (1 << 33) - 1), 1);
        assert_eq!(diff33((1 << 33) - 1, 0), -1);
    }
}
