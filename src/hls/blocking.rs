//! Blocking playlist reload rules (HLS draft-pantos-hls-rfc8216bis §6.2.5.2; ll-hls.md rule 8).
//!
//! Pure decisions over a [`Snapshot`]; the HTTP layer awaits new snapshots while the decision is
//! [`Decision::Wait`] and answers 503 after [`timeout_secs`].

use super::window::Snapshot;
use crate::media::TIMESCALE;

/// Delivery directives of a playlist request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Directives {
    pub msn: Option<u64>,
    pub part: Option<u32>,
    pub skip: bool,
}

impl Directives {
    /// Parses `_HLS_msn`, `_HLS_part`, `_HLS_skip` from a query string. Unknown parameters are
    /// ignored (cache-busters); malformed values of known ones are an error.
    pub fn parse(query: Option<&str>) -> Result<Directives, String> {
        // Decimal digits only ("+1", "-1", " 1" and values beyond the type are malformed).
        fn num<T: std::str::FromStr>(v: &str) -> Option<T> {
            if v.is_empty() || v.len() > 20 || !v.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            v.parse().ok()
        }
        let mut d = Directives::default();
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let shown: String = v.chars().take(32).collect();
            match k {
                "_HLS_msn" => d.msn = Some(num(v).ok_or_else(|| format!("_HLS_msn={shown} is not a media sequence number"))?),
                "_HLS_part" => d.part = Some(num(v).ok_or_else(|| format!("_HLS_part={shown} is not a part index"))?),
                "_HLS_skip" => d.skip = matches!(v, "YES" | "v2"),
                _ => {}
            }
        }
        Ok(d)
    }

    pub fn is_blocking(&self) -> bool {
        self.msn.is_some()
    }
}

/// What to do with a playlist request now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Answer with the current playlist.
    Ready,
    /// Hold the request until the window changes.
    Wait,
    /// 400 Bad Request with this reason.
    BadRequest(String),
}

/// Decides a request against a snapshot.
pub fn decide(snap: &Snapshot, d: &Directives) -> Decision {
    let Some(m) = d.msn else {
        if d.part.is_some() {
            return Decision::BadRequest("_HLS_part without _HLS_msn".into()); // rule 8d
        }
        return if snap.ready() || snap.ended { Decision::Ready } else { Decision::Wait };
    };
    if snap.ended {
        return Decision::Ready; // rule 8g
    }
    if !snap.ready() {
        return Decision::Wait;
    }
    // L = last complete segment; the open one is L+1 = next (u64 throughout: no wrap).
    let next = snap.segments.last().map(|s| if s.complete { s.msn + 1 } else { s.msn }).unwrap_or(0);
    if m > next.saturating_add(1) {
        let last = next.checked_sub(1).map_or("none".to_string(), |l| l.to_string());
        return Decision::BadRequest(format!(
            "_HLS_msn={m} is more than two segments ahead of the last complete segment ({last})"
        )); // rule 8e
    }
    match d.part {
        None => {
            if snap.segments.iter().any(|s| s.complete && s.msn >= m) {
                Decision::Ready // 8a, 8c
            } else {
                Decision::Wait
            }
        }
        Some(n) => {
            let max_ahead = (3 * TIMESCALE as u64).div_ceil(snap.part_target.max(1));
            let open = snap.segments.last().filter(|s| !s.complete);
            let listed = open.filter(|s| s.msn == m).map_or(0, |s| s.parts.len() as u64);
            if m >= next && n as u64 > listed + max_ahead {
                return Decision::BadRequest(format!(
                    "_HLS_part={n} is more than {max_ahead} parts beyond the last part of segment {m}"
                ));
            }
            let satisfied = snap.segments.iter().any(|s| {
                (s.msn == m && s.parts.len() > n as usize) || (s.msn > m && !s.parts.is_empty())
            }) || snap.segments.first().is_some_and(|s| s.msn > m);
            if satisfied {
                Decision::Ready // 8b, 8c
            } else {
                Decision::Wait
            }
        }
    }
}

/// How long a blocked request may wait before 503 (3 × target duration, rule 8f).
pub fn timeout_secs(snap: &Snapshot) -> f64 {
    3.0 * snap.target_duration.unwrap_or(2) as f64
}

#[cfg(test)]
#[path = "blocking_tests.rs"]
mod tests;
