//! Timestamps for sources that carry none (stdin, exec, tcp): the arrival clock snapped to the
//! nominal frame duration, re-anchored when it drifts by more than one frame.
//!
//! Frames arriving on time get `previous + nominal`, so encoder jitter never reaches the media
//! timeline; a frame that arrives more than a frame early or late re-anchors the timeline to its
//! arrival time, so media time stays true to capture time across dropped frames, stalls and
//! clock-rate mismatches. A burst (frames queued upstream) is spread at no less than half a
//! frame apart. The capture wall-clock time (EXT-X-PROGRAM-DATE-TIME) is the wall clock at the
//! first frame plus the frame's media time, so it advances exactly with EXTINF and jumps only
//! where media time re-anchors.

use crate::h264::ParsedItem;
use crate::media::{Frame, SourceEvent, TIMESCALE};
use std::time::{Instant, SystemTime};

/// Arrival-based frame stamper. See module docs.
#[derive(Debug)]
pub struct ArrivalClock {
    nominal: u64,
    origin: Option<(Instant, SystemTime)>,
    last: Option<u64>,
    /// Number of re-anchors so far (exported as a metric).
    pub reanchors: u64,
    stamped: u64,
}

impl ArrivalClock {
    pub fn new(nominal_ticks: u32) -> Self {
        ArrivalClock { nominal: nominal_ticks.max(1) as u64, origin: None, last: None, reanchors: 0, stamped: 0 }
    }

    /// Frames stamped so far.
    pub fn frames(&self) -> u64 {
        self.stamped
    }

    /// Changes the nominal frame duration (new SPS).
    pub fn set_nominal(&mut self, nominal_ticks: u32) {
        self.nominal = nominal_ticks.max(1) as u64;
    }

    /// Stamps a frame whose last byte arrived at `at`: returns (dts, capture wall-clock time).
    pub fn stamp(&mut self, at: Instant) -> (u64, SystemTime) {
        let (origin, wall) = *self.origin.get_or_insert((at, SystemTime::now()));
        let since = at.saturating_duration_since(origin);
        let arrival = (since.as_nanos() * TIMESCALE as u128 / 1_000_000_000) as u64;
        let dts = match self.last {
            None => arrival,
            Some(last) => {
                let expected = last + self.nominal;
                if arrival.abs_diff(expected) > self.nominal {
                    self.reanchors += 1;
                    arrival.max(last + self.nominal / 2)
                } else {
                    expected
                }
            }
        };
        self.last = Some(dts);
        self.stamped += 1;
        // Capture time follows the media timeline (within a frame of arrival on a steady input;
        // ahead of it while a burst is spread out), so PROGRAM-DATE-TIME advances with EXTINF.
        (dts, wall + crate::media::ticks_to_duration(dts))
    }
}

/// Stamps parsed access units on the nominal frame grid (file sources, offline segmenting):
/// frame n has dts n × nominal and capture time `start + dts`.
#[derive(Debug)]
pub struct GridClock {
    start: SystemTime,
    dts: u64,
    nominal: u64,
}

impl GridClock {
    pub fn new(start: SystemTime) -> Self {
        GridClock { start, dts: 0, nominal: 3000 }
    }

    /// Media time of the next frame since the start.
    pub fn next_offset(&self) -> std::time::Duration {
        // Not `dts × 1e9 / TIMESCALE` in u64: that overflows after 57 h of `--loop`.
        crate::media::ticks_to_duration(self.dts)
    }

    /// Turns a parser item into a source event, advancing the grid for frames.
    pub fn event(&mut self, item: ParsedItem) -> SourceEvent {
        match item {
            ParsedItem::Format(info) => {
                self.nominal = info.frame_duration as u64;
                SourceEvent::Format(info)
            }
            ParsedItem::Au { data, idr } => {
                let f = Frame { dts: self.dts, cts: 0, capture: self.start + self.next_offset(), data, idr, arrived: Instant::now() };
                self.dts += self.nominal;
                SourceEvent::Frame(f)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn jitter_is_snapped_and_drift_reanchors() {
        let mut c = ArrivalClock::new(3000); // 30 fps
        let t0 = Instant::now();
        let ms = |m: u64| t0 + Duration::from_millis(m);
        assert_eq!(c.stamp(ms(0)).0, 0);
        assert_eq!(c.stamp(ms(40)).0, 3000); // 7 ms late: snapped
        assert_eq!(c.stamp(ms(60)).0, 6000); // 7 ms early: snapped
        assert_eq!(c.reanchors, 0);
        // A 200 ms stall: re-anchored to arrival.
        let (dts, _) = c.stamp(ms(300));
        assert_eq!(dts, 27000);
        assert_eq!(c.reanchors, 1);
        assert_eq!(c.stamp(ms(333)).0, 30000);
        // A burst (frames queued upstream): never goes backwards, at least half a frame apart.
        let (d1, _) = c.stamp(ms(334));
        let (d2, _) = c.stamp(ms(335));
        assert!(d1 > 30000 && d2 > d1);
    }

    /// Uptimes at which the clocks are checked: 60 h (past the old u64 overflow at ~57 h of
    /// `ticks × 1e9`), 30 days and a year.
    const UPTIMES: [Duration; 3] =
        [Duration::from_secs(60 * 3600), Duration::from_secs(30 * 86_400), Duration::from_secs(365 * 86_400)];

    #[test]
    fn grid_clock_paces_correctly_after_long_uptimes() {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        for up in UPTIMES {
            let mut c = GridClock::new(start);
            let ticks = up.as_secs() * TIMESCALE as u64;
            c.dts = ticks;
            // The pacing deadline is exactly the uptime, not a wrapped product.
            assert_eq!(c.next_offset(), up, "{up:?}");
            let SourceEvent::Frame(f) = c.event(ParsedItem::Au { data: Default::default(), idr: true }) else { panic!() };
            assert_eq!(f.dts, ticks);
            assert_eq!(f.capture, start + up);
            assert_eq!(c.next_offset(), up + Duration::from_nanos(33_333_333), "one 30 fps frame later");
        }
        // The largest dts still converts (no overflow anywhere in u64).
        assert_eq!(crate::media::ticks_to_duration(u64::MAX).as_secs(), u64::MAX / TIMESCALE as u64);
    }

    #[test]
    fn arrival_clock_stays_exact_after_long_uptimes() {
        for up in UPTIMES {
            let mut c = ArrivalClock::new(3000);
            let t0 = Instant::now();
            let (_, wall0) = c.stamp(t0);
            // The input pauses for `up` (a long gap re-anchors), then frames arrive on time.
            let (dts, wall) = c.stamp(t0 + up);
            assert_eq!(dts, up.as_secs() * TIMESCALE as u64);
            assert_eq!(wall, wall0 + up);
            for k in 1..=90u64 {
                let jitter = Duration::from_millis(k % 3);
                let (d, _) = c.stamp(t0 + up + Duration::from_nanos(k * 33_333_333) + jitter);
                assert_eq!(d, dts + k * 3000, "{up:?} frame {k}");
            }
            assert_eq!(c.reanchors, 1);
        }
    }
}
