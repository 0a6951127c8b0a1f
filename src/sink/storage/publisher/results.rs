//! Applying what a store request returned: a failure starts a new epoch and the backoff; a
//! success confirms the object in the request's epoch, schedules deletes after a playlist put,
//! and a HEAD that finds a published object missing cuts the playlist's head.

use super::jobs::{Job, Op, Outcome, Target};
use super::state::{Grave, Publisher};
use crate::sink::storage::config::Retention;
use crate::sink::storage::metrics::RequestLabels;
use std::time::Duration;
use tokio::time::Instant;

impl Publisher {
    /// Applies the result of a finished job.
    pub fn complete(&mut self, id: u64, outcome: Outcome, took: Duration, now: Instant) {
        let Some(job) = self.in_flight.remove(&id) else {
            return;
        };
        let key = self.key(&job.name);
        let op = job.op.label();
        self.clear_in_flight(&job);
        if let Some(e) = outcome.error() {
            self.m
                .requests
                .get_or_create(&self.req_labels(op, "failed"))
                .inc();
            self.epoch += 1;
            self.failures_in_row += 1;
            let backoff = self.backoff();
            self.not_before = Some(now + backoff);
            if self.failures_in_row == 1 || self.failures_in_row % 20 == 0 {
                tracing::warn!(output = %self.cfg.label, key = %key, op, error = %e, failures = self.failures_in_row,
                    retry_in_ms = backoff.as_millis() as u64, "store request failed; retrying with backoff");
            } else {
                tracing::debug!(output = %self.cfg.label, key = %key, op, error = %e, "store request failed");
            }
            self.media_stored = None;
            self.mv_stored = None;
            self.retry(job);
            self.advance(now);
            return;
        }
        if self.failures_in_row > 0 {
            tracing::info!(output = %self.cfg.label, key = %key, after_failures = self.failures_in_row,
                "store reachable again; re-checking what the playlist names before publishing it");
        }
        self.failures_in_row = 0;
        self.not_before = None;
        self.m
            .requests
            .get_or_create(&self.req_labels(op, "ok"))
            .inc();
        match (&job.op, outcome) {
            (Op::Put(body, _), _) => {
                let bytes: usize = body.iter().map(|b| b.len()).sum();
                self.m
                    .bytes
                    .get_or_create(&self.labels)
                    .inc_by(bytes as u64);
                self.m.upload_seconds.observe(took.as_secs_f64());
                tracing::debug!(output = %self.cfg.label, key = %key, bytes, ms = took.as_millis() as u64, "stored");
                self.put_done(&job, now);
            }
            (Op::Exists, Outcome::Exists(Ok(exists))) => {
                if let Target::Verify(seq) = job.target {
                    self.verify_done(seq, &job, exists);
                }
            }
            _ => {}
        }
        self.advance(now);
    }

    pub(super) fn req_labels(&self, op: &'static str, result: &'static str) -> RequestLabels {
        RequestLabels {
            output: self.cfg.label.clone(),
            op,
            result,
        }
    }

    pub(super) fn put_done(&mut self, job: &Job, now: Instant) {
        let e = job.epoch;
        match job.target {
            Target::Init(id) => {
                if let Some(r) = self.inits.get_mut(&id) {
                    r.obj.stored = Some(e);
                }
            }
            Target::Segment(msn) => {
                if let Some(r) = self.pending.get_mut(&msn) {
                    r.seg.stored = Some(e);
                    if let Some(t) = r.completed_at.take() {
                        self.m
                            .segment_delay_seconds
                            .observe(now.saturating_duration_since(t).as_secs_f64());
                    }
                } else if self.cfg.retention == Retention::Window {
                    // Dropped while in flight: an orphan.
                    self.graveyard.push_back(Grave {
                        names: vec![job.name.clone()],
                        after_version: 0,
                        due: Some(now),
                    });
                }
            }
            Target::Part(msn, g) => {
                let suffix = format!("-p{g}.m4s");
                if let Some(p) = self
                    .pending
                    .get_mut(&msn)
                    .and_then(|r| r.parts.iter_mut().find(|p| p.name.ends_with(&suffix)))
                {
                    p.stored = Some(e);
                }
            }
            Target::Media { version } => {
                self.media_stored = Some((version, e));
                let grace = self.grace();
                for g in self.graveyard.iter_mut() {
                    if g.due.is_none() && g.after_version <= version {
                        g.due = Some(now + grace);
                    }
                }
            }
            Target::Multivariant => {}
            Target::Verify(_) | Target::Delete => {}
        }
    }

    pub(super) fn verify_done(&mut self, seq: u64, job: &Job, exists: bool) {
        let Some(i) = self.published.iter().position(|p| p.seq == seq) else {
            return;
        };
        if exists {
            let p = &mut self.published[i];
            if p.verify_epoch == job.epoch {
                p.outstanding.retain(|n| *n != job.name);
                if p.outstanding.is_empty() {
                    p.epoch = job.epoch;
                }
            }
            return;
        }
        // Lost (the store forgot it): cut the playlist's head through this segment.
        tracing::warn!(output = %self.cfg.label, key = %self.key(&job.name),
            "a published object is missing from the store; dropping it and older segments from the playlist");
        self.version += 1;
        for _ in 0..=i {
            self.remove_head();
        }
    }
}
