//! The merged result of a run: totals, rates, errors by kind and lateness percentiles
//! (nearest rank), as text for people and as JSON (`--json`) for bench scripts.

use super::{Args, Mode, Proto, ViewerStats};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};

/// Percentiles of lateness samples, milliseconds (negative: arrived before the PDT end).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Lateness {
    pub count: usize,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Lateness {
    fn of(mut v: Vec<f32>) -> Lateness {
        if v.is_empty() {
            return Lateness::default();
        }
        v.sort_by(f32::total_cmp);
        let rank = |q: f64| v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1] as f64;
        Lateness { count: v.len(), p50_ms: rank(0.50), p95_ms: rank(0.95), p99_ms: rank(0.99), max_ms: rank(1.0) }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub url: String,
    pub mode: Mode,
    pub http: Proto,
    pub viewers: usize,
    pub ramp_s: f64,
    /// Length of the measured window (after the ramp), seconds.
    pub seconds: f64,
    /// Requests completed in the measured window.
    pub requests: u64,
    /// Response body bytes as received (compressed playlists count compressed).
    pub bytes: u64,
    pub requests_per_s: f64,
    pub mbit_per_s: f64,
    /// Failed requests by kind, over the whole run (ramp included).
    pub errors: BTreeMap<String, u64>,
    pub errors_total: u64,
    pub viewers_with_errors: usize,
    /// Lateness of parts (LL mode): last byte arrival − part end in PROGRAM-DATE-TIME terms.
    pub part_lateness: Lateness,
    /// Same for whole segments (plain mode).
    pub segment_lateness: Lateness,
    pub dropped_samples: u64,
}

impl Report {
    pub(super) fn merge(args: &Args, seconds: f64, all: &[Arc<Mutex<ViewerStats>>]) -> Report {
        let (mut requests, mut bytes, mut dropped, mut with_errors) = (0, 0, 0, 0);
        let mut errors = BTreeMap::new();
        let (mut parts, mut segs) = (Vec::new(), Vec::new());
        for s in all {
            let s = s.lock().unwrap();
            requests += s.requests;
            bytes += s.bytes;
            dropped += s.dropped_samples;
            with_errors += usize::from(!s.errors.is_empty());
            for (k, v) in &s.errors {
                *errors.entry(k.clone()).or_insert(0) += v;
            }
            parts.extend_from_slice(&s.part_late_ms);
            segs.extend_from_slice(&s.segment_late_ms);
        }
        Report {
            url: args.url.clone(),
            mode: args.mode,
            http: args.http,
            viewers: args.viewers,
            ramp_s: args.ramp,
            seconds,
            requests,
            bytes,
            requests_per_s: requests as f64 / seconds,
            mbit_per_s: bytes as f64 * 8.0 / 1e6 / seconds,
            errors_total: errors.values().sum(),
            errors,
            viewers_with_errors: with_errors,
            part_lateness: Lateness::of(parts),
            segment_lateness: Lateness::of(segs),
            dropped_samples: dropped,
        }
    }

    pub fn json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}

impl fmt::Display for Lateness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.count == 0 {
            return write!(f, "no samples");
        }
        write!(
            f,
            "p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} samples)",
            self.p50_ms, self.p95_ms, self.p99_ms, self.max_ms, self.count
        )
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "target      {} ({:?}, {:?})", self.url, self.mode, self.http)?;
        writeln!(f, "viewers     {} (ramp {:.1} s, measured {:.1} s)", self.viewers, self.ramp_s, self.seconds)?;
        writeln!(f, "requests    {} ({:.0}/s)", self.requests, self.requests_per_s)?;
        writeln!(f, "received    {:.1} MB ({:.1} Mbit/s)", self.bytes as f64 / 1e6, self.mbit_per_s)?;
        write!(f, "errors      {}", self.errors_total)?;
        if self.errors_total > 0 {
            let kinds: Vec<_> = self.errors.iter().map(|(k, v)| format!("{k} {v}")).collect();
            write!(f, " ({}; {} viewers)", kinds.join(", "), self.viewers_with_errors)?;
        }
        writeln!(f)?;
        writeln!(f, "part late   {}", self.part_lateness)?;
        write!(f, "segment late {}", self.segment_lateness)
    }
}
