//! An encoder's stderr, logged under `hlsd::encoder`: bounded lines, a rate limit, secrets masked.
//!
//! `\n` and `\r` both end a line (ffmpeg rewrites its progress line with `\r`, so a `\n`-only
//! reader would grow one "line" forever). A line keeps at most [`MAX_LINE`] bytes; the rest of it is
//! discarded and counted (`hlsd_encoder_stderr_dropped_total{reason="truncated"}`, in lines). At most
//! [`BURST`] lines are logged at once and [`PER_SEC`] a second after that; lines over the limit are
//! counted (`reason="rate"`) and a summary line says how many were dropped. Every logged line goes
//! through [`crate::secret::mask`].

use crate::metrics::{self, ReasonLabels};
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Bytes of one stderr line that are kept (the rest is discarded).
pub const MAX_LINE: usize = 1024;
/// Lines logged in a burst before the rate limit applies.
pub const BURST: f64 = 50.0;
/// Lines logged per second under sustained output.
pub const PER_SEC: f64 = 10.0;

/// Splits a byte stream into bounded lines.
#[derive(Debug, Default)]
pub struct LineSplitter {
    line: Vec<u8>,
    /// The current line is over [`MAX_LINE`] and its rest is being discarded.
    truncated: bool,
}

impl LineSplitter {
    /// Feeds bytes; calls `emit(line, truncated)` for every complete non-empty line.
    pub fn push(&mut self, mut data: &[u8], mut emit: impl FnMut(&[u8], bool)) {
        while !data.is_empty() {
            match data.iter().position(|&b| b == b'\n' || b == b'\r') {
                Some(end) => {
                    self.take(&data[..end]);
                    self.finish(&mut emit);
                    data = &data[end + 1..];
                }
                None => {
                    self.take(data);
                    data = &[];
                }
            }
        }
    }

    /// Ends the input: a last line without a line end is emitted.
    pub fn end(&mut self, mut emit: impl FnMut(&[u8], bool)) {
        self.finish(&mut emit);
    }

    fn take(&mut self, bytes: &[u8]) {
        let room = MAX_LINE - self.line.len();
        if bytes.len() > room {
            self.truncated = true;
        }
        self.line.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    fn finish(&mut self, emit: &mut impl FnMut(&[u8], bool)) {
        if !self.line.iter().all(u8::is_ascii_whitespace) {
            emit(&self.line, self.truncated);
        }
        self.line.clear();
        self.truncated = false;
    }
}

/// A token bucket: [`BURST`] lines, refilled at [`PER_SEC`].
#[derive(Debug)]
pub struct RateLimit {
    tokens: f64,
    last: Instant,
    /// Lines refused since the last summary.
    pub dropped: u64,
}

impl RateLimit {
    pub fn new(now: Instant) -> RateLimit {
        RateLimit { tokens: BURST, last: now, dropped: 0 }
    }

    /// Whether a line may be logged at `now`.
    pub fn allow(&mut self, now: Instant) -> bool {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * PER_SEC).min(BURST);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            self.dropped += 1;
            false
        }
    }
}

/// Reads `err` to its end, logging each line (masked, bounded, rate-limited).
pub async fn log_lines<R: AsyncRead + Unpin>(mut err: R, pid: Option<u32>) {
    let m = metrics::get();
    let mut split = LineSplitter::default();
    let mut limit = RateLimit::new(Instant::now());
    let mut buf = vec![0u8; 4096];
    let mut emit = |line: &[u8], truncated: bool| {
        if truncated {
            m.encoder_stderr_dropped.get_or_create(&ReasonLabels { reason: "truncated" }).inc();
        }
        if !limit.allow(Instant::now()) {
            m.encoder_stderr_dropped.get_or_create(&ReasonLabels { reason: "rate" }).inc();
            return;
        }
        if limit.dropped > 0 {
            tracing::warn!(target: "hlsd::encoder", pid, dropped = limit.dropped,
                "encoder stderr lines dropped (more than {PER_SEC} lines/s)");
            limit.dropped = 0;
        }
        let text = crate::secret::mask(String::from_utf8_lossy(line).trim_end());
        if truncated {
            tracing::info!(target: "hlsd::encoder", pid, "{text} [line cut at {MAX_LINE} bytes]");
        } else {
            tracing::info!(target: "hlsd::encoder", pid, "{text}");
        }
    };
    loop {
        match err.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => split.push(&buf[..n], &mut emit),
        }
    }
    split.end(&mut emit);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn lines(chunks: &[&[u8]]) -> Vec<(String, bool)> {
        let mut s = LineSplitter::default();
        let mut out = Vec::new();
        for c in chunks {
            s.push(c, |l, t| out.push((String::from_utf8_lossy(l).into_owned(), t)));
        }
        s.end(|l, t| out.push((String::from_utf8_lossy(l).into_owned(), t)));
        out
    }

    #[test]
    fn cr_and_lf_end_lines_across_chunks() {
        let got = lines(&[b"frame=  1 fps=0\rframe=  2", b" fps=30\r", b"done\r\n", b"\n\nlast"]);
        let want = ["frame=  1 fps=0", "frame=  2 fps=30", "done", "last"];
        assert_eq!(got.iter().map(|(l, _)| l.as_str()).collect::<Vec<_>>(), want);
        assert!(got.iter().all(|(_, t)| !t));
    }

    #[test]
    fn long_lines_are_cut_and_the_rest_discarded() {
        let big = vec![b'x'; 10 * MAX_LINE];
        let got = lines(&[&big, &big, b"\nnext\n"]);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].0.len(), MAX_LINE);
        assert!(got[0].1, "marked truncated");
        assert_eq!(got[1], ("next".to_string(), false));
        // A 1 MB line without any line end never holds more than MAX_LINE bytes.
        let mut s = LineSplitter::default();
        for _ in 0..1000 {
            s.push(&[b'y'; 1024], |_, _| panic!("no line end yet"));
            assert!(s.line.len() <= MAX_LINE);
        }
    }

    #[test]
    fn rate_limit_allows_a_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut r = RateLimit::new(t0);
        let burst = (0..1000).filter(|_| r.allow(t0)).count();
        assert_eq!(burst, BURST as usize);
        assert_eq!(r.dropped, 1000 - BURST as u64);
        // 10 s later: 10 s × PER_SEC more (bounded by BURST).
        let later = t0 + Duration::from_secs(10);
        let more = (0..1000).filter(|_| r.allow(later)).count();
        assert_eq!(more, (10.0 * PER_SEC).min(BURST) as usize);
    }
}
