//! V4L2 buffer timestamps → media time (dts, 90 kHz) and wall-clock capture time.
//!
//! Drivers stamp buffers with CLOCK_MONOTONIC (`V4L2_BUF_FLAG_TIMESTAMP_MONOTONIC`; UVC takes the
//! time the first USB packet of the frame arrived, bcm2835 the sensor's start of frame; M2M
//! encoders copy the timestamp of the raw frame, which hlsd sets from the camera's buffer). The
//! dts is the distance to the session's first buffer; the capture time is the timestamp plus the
//! REALTIME−MONOTONIC offset. The offset is sampled at the first buffer and re-sampled every
//! [`RESYNC_EVERY`]: a Pi has no RTC and its wall clock steps when NTP syncs after boot, so a
//! change of more than [`STEP_LIMIT`] is adopted (logged) and later PROGRAM-DATE-TIMEs are true.
//!
//! A buffer without a timestamp, or with one that is not within [`PLAUSIBLE`] of "now" (a driver
//! using another clock), switches the session to arrival time: the [`ArrivalClock`] that byte
//! streams use.

use crate::media::TIMESCALE;
use crate::source::clock::ArrivalClock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How often the REALTIME−MONOTONIC offset is re-sampled.
pub const RESYNC_EVERY: Duration = Duration::from_secs(10);
/// A wall-clock step larger than this is adopted.
pub const STEP_LIMIT: Duration = Duration::from_millis(500);
/// A buffer timestamp further than this from "now" is not taken as a capture time.
pub const PLAUSIBLE: Duration = Duration::from_secs(5);

/// One simultaneous reading of CLOCK_MONOTONIC and CLOCK_REALTIME.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockSample {
    /// CLOCK_MONOTONIC.
    pub mono: Duration,
    /// CLOCK_REALTIME in nanoseconds since the Unix epoch.
    pub wall_ns: i128,
}

impl ClockSample {
    /// REALTIME − MONOTONIC in nanoseconds.
    fn offset(&self) -> i128 {
        self.wall_ns - self.mono.as_nanos() as i128
    }

    /// Reads both clocks now (REALTIME between two MONOTONIC reads, their midpoint kept).
    pub fn now() -> Self {
        let a = monotonic_now();
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as i128)
            .unwrap_or(0);
        let b = monotonic_now();
        ClockSample {
            mono: a + (b.saturating_sub(a)) / 2,
            wall_ns: wall,
        }
    }
}

/// CLOCK_MONOTONIC now, the clock of V4L2 buffer timestamps.
pub fn monotonic_now() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    Duration::new(
        ts.tv_sec.max(0) as u64,
        ts.tv_nsec.clamp(0, 999_999_999) as u32,
    )
}

/// What the mapper used for a frame (for logs and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Basis {
    /// The driver's capture timestamp.
    Capture,
    /// Arrival time (no usable driver timestamp).
    Arrival,
}

/// Maps one session's buffer timestamps; see the module docs.
#[derive(Debug)]
pub struct TimestampMapper {
    nominal: u64,
    origin: Option<Duration>,
    offset: Option<i128>,
    synced_at: Duration,
    last_dts: Option<u64>,
    arrival: Option<ArrivalClock>,
    /// Wall-clock steps adopted.
    pub steps: u64,
}

impl TimestampMapper {
    /// `nominal`: frame duration in ticks (used in arrival mode).
    pub fn new(nominal: u32) -> Self {
        TimestampMapper {
            nominal: nominal.max(1) as u64,
            origin: None,
            offset: None,
            synced_at: Duration::ZERO,
            last_dts: None,
            arrival: None,
            steps: 0,
        }
    }

    /// Stamps a buffer: `ts` is its CLOCK_MONOTONIC timestamp (None if the driver gave none),
    /// `now` a clock reading taken when it was dequeued and `arrived` the same moment as an
    /// [`Instant`]. Returns (dts, capture time, basis); dts strictly increases.
    pub fn map(
        &mut self,
        ts: Option<Duration>,
        now: ClockSample,
        arrived: Instant,
    ) -> (u64, SystemTime, Basis) {
        if self.arrival.is_none() && self.origin.is_none() {
            match ts {
                Some(t) if t.abs_diff(now.mono) <= PLAUSIBLE => {}
                Some(t) => {
                    tracing::warn!(
                        buffer_ts = ?t, monotonic_now = ?now.mono,
                        "V4L2 buffer timestamps are not CLOCK_MONOTONIC capture times; stamping frames on arrival"
                    );
                    self.arrival = Some(ArrivalClock::new(self.nominal as u32));
                }
                None => {
                    tracing::info!(
                        "the device gives no buffer timestamps; stamping frames on arrival"
                    );
                    self.arrival = Some(ArrivalClock::new(self.nominal as u32));
                }
            }
        }
        if let Some(clock) = &mut self.arrival {
            let (dts, wall) = clock.stamp(arrived);
            return (dts, wall, Basis::Arrival);
        }
        // Capture mode: a missing timestamp mid-session takes the arrival time on the same clock.
        let t = ts.unwrap_or(now.mono);
        let origin = *self.origin.get_or_insert(t);
        match self.offset {
            None => {
                self.offset = Some(now.offset());
                self.synced_at = now.mono;
            }
            Some(old) if now.mono.saturating_sub(self.synced_at) >= RESYNC_EVERY => {
                let new = now.offset();
                self.synced_at = now.mono;
                if (new - old).unsigned_abs() > STEP_LIMIT.as_nanos() {
                    self.steps += 1;
                    tracing::warn!(
                        step_ms = ((new - old) / 1_000_000) as i64,
                        "the wall clock stepped (NTP sync?); PROGRAM-DATE-TIME follows it from now on"
                    );
                    self.offset = Some(new);
                }
            }
            Some(_) => {}
        }
        let since = t.saturating_sub(origin);
        let mut dts = ((since.as_nanos() * TIMESCALE as u128 + 500_000_000) / 1_000_000_000) as u64;
        if let Some(last) = self.last_dts {
            if dts <= last {
                dts = last + 1;
            }
        }
        self.last_dts = Some(dts);
        let wall_ns = t.as_nanos() as i128 + self.offset.unwrap_or(0);
        let capture = if wall_ns >= 0 {
            UNIX_EPOCH + Duration::from_nanos(wall_ns as u64)
        } else {
            UNIX_EPOCH
        };
        (dts, capture, Basis::Capture)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(mono_ms: u64, wall_ms: i128) -> ClockSample {
        ClockSample {
            mono: Duration::from_millis(mono_ms),
            wall_ns: wall_ms * 1_000_000,
        }
    }

    #[test]
    fn capture_timestamps_give_dts_and_wall_clock() {
        let mut m = TimestampMapper::new(3000);
        let t0 = Instant::now();
        // Monotonic 1000 s ↔ wall 1_700_000_000 s; the frame was captured 40 ms before dequeue.
        let wall0: i128 = 1_700_000_000_000;
        let (d, c, b) = m.map(
            Some(Duration::from_millis(1_000_000 - 40)),
            sample(1_000_000, wall0),
            t0,
        );
        assert_eq!((d, b), (0, Basis::Capture));
        assert_eq!(c, UNIX_EPOCH + Duration::from_millis((wall0 - 40) as u64));
        // 33.367 ms later (jitter kept: these are real capture times).
        let (d, c, _) = m.map(
            Some(Duration::from_micros(1_000_000_000 - 40_000 + 33_367)),
            sample(1_000_034, wall0 + 34),
            t0,
        );
        assert_eq!(d, 3003);
        assert_eq!(
            c,
            UNIX_EPOCH + Duration::from_micros(((wall0 - 40) * 1000 + 33_367) as u64)
        );
        // A repeated timestamp still advances.
        let (d2, _, _) = m.map(
            Some(Duration::from_micros(1_000_000_000 - 40_000 + 33_367)),
            sample(1_000_050, wall0 + 50),
            t0,
        );
        assert_eq!(d2, 3004);
    }

    #[test]
    fn wall_clock_step_is_adopted_after_resync() {
        let mut m = TimestampMapper::new(3000);
        let t0 = Instant::now();
        let (_, c, _) = m.map(Some(Duration::from_secs(100)), sample(100_000, 5_000), t0);
        assert_eq!(c, UNIX_EPOCH + Duration::from_secs(5));
        // 5 s later NTP moved the wall clock 1 hour ahead: not re-sampled yet.
        let (_, c, _) = m.map(
            Some(Duration::from_secs(105)),
            sample(105_000, 3_600_000 + 10_000),
            t0,
        );
        assert_eq!(c, UNIX_EPOCH + Duration::from_secs(10));
        // 10 s after the first sample: adopted.
        let (d, c, _) = m.map(
            Some(Duration::from_secs(110)),
            sample(110_000, 3_600_000 + 15_000),
            t0,
        );
        assert_eq!(c, UNIX_EPOCH + Duration::from_secs(3600 + 15));
        assert_eq!(d, 10 * 90_000, "media time is unaffected by the wall clock");
        assert_eq!(m.steps, 1);
        // Small drift (< STEP_LIMIT) is not a step.
        let (_, c, _) = m.map(
            Some(Duration::from_secs(121)),
            sample(121_000, 3_600_000 + 26_100),
            t0,
        );
        assert_eq!(c, UNIX_EPOCH + Duration::from_secs(3600 + 26));
    }

    #[test]
    fn implausible_or_missing_timestamps_fall_back_to_arrival() {
        let t0 = Instant::now();
        let mut m = TimestampMapper::new(3000);
        // A timestamp an hour away from the monotonic clock (another clock base).
        let (d, _, b) = m.map(Some(Duration::from_secs(3600)), sample(10_000_000, 0), t0);
        assert_eq!((d, b), (0, Basis::Arrival));
        let (d, _, b) = m.map(
            Some(Duration::from_secs(3600)),
            sample(10_000_033, 0),
            t0 + Duration::from_millis(33),
        );
        assert_eq!((d, b), (3000, Basis::Arrival));

        let mut m = TimestampMapper::new(3000);
        let (_, _, b) = m.map(None, sample(10_000, 0), t0);
        assert_eq!(b, Basis::Arrival);
    }

    #[test]
    fn monotonic_now_matches_instant_pace() {
        let a = monotonic_now();
        std::thread::sleep(Duration::from_millis(20));
        let b = monotonic_now();
        assert!(b - a >= Duration::from_millis(20) && b - a < Duration::from_secs(2));
        let s = ClockSample::now();
        assert!(s.wall_ns > 1_600_000_000_000_000_000);
    }
}
