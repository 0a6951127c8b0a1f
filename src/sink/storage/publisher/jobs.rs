//! Store requests: what a [`Job`] is, the prioritised work queue, which jobs start now (at most
//! `concurrency` besides the playlists; one at a time while probing a failed store), retries
//! and the backoff schedule.

use super::state::{Obj, Publisher};
use crate::policy::Object;
use crate::sink::storage::store::{Body, Meta, StoreError};
use std::time::Duration;
use tokio::time::Instant;

/// A store request to run.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: u64,
    /// Object name under the prefix.
    pub name: String,
    pub op: Op,
    /// Epoch when the request was issued.
    pub(super) epoch: u64,
    pub(super) attempts: u32,
    pub(super) target: Target,
}

#[derive(Debug, Clone)]
pub enum Op {
    Put(Body, Meta),
    Exists,
    Delete,
}

impl Op {
    pub(super) fn label(&self) -> &'static str {
        match self {
            Op::Put(..) => "put",
            Op::Exists => "head",
            Op::Delete => "delete",
        }
    }
}

/// What a request's result updates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Target {
    Init(u32),
    Segment(u64),
    Part(u64, u64),
    /// HEAD of a published segment's object (its sequence number).
    Verify(u64),
    Delete,
    Media {
        version: u64,
    },
    Multivariant,
}

/// The result of a job.
#[derive(Debug)]
pub enum Outcome {
    Put(Result<(), StoreError>),
    Exists(Result<bool, StoreError>),
    Delete(Result<(), StoreError>),
}

impl Outcome {
    pub(super) fn error(&self) -> Option<&StoreError> {
        match self {
            Outcome::Put(Err(e)) | Outcome::Exists(Err(e)) | Outcome::Delete(Err(e)) => Some(e),
            _ => None,
        }
    }
}

/// Priority classes; lower runs first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Prio {
    Init,
    Media,
    Verify,
    Delete,
}

impl Publisher {
    /// Queues the put of a part or a segment (its metadata follows from the target).
    pub(super) fn enqueue_media(&mut self, name: String, body: Body, target: Target) {
        let object = match target {
            Target::Part(..) => Object::Part,
            _ => Object::Segment,
        };
        self.enqueue(
            Prio::Media,
            name,
            Op::Put(body, Meta::of(object)),
            target,
            0,
        );
    }

    pub(super) fn enqueue(
        &mut self,
        prio: Prio,
        name: String,
        op: Op,
        target: Target,
        attempts: u32,
    ) {
        self.next_job += 1;
        let job = Job {
            id: self.next_job,
            name,
            op,
            epoch: self.epoch,
            attempts,
            target,
        };
        self.work.insert((prio, self.next_job), job);
    }

    /// Jobs to start now (marked in flight).
    pub fn start(&mut self, now: Instant) -> Vec<Job> {
        let mut out = Vec::new();
        if self.not_before.is_some_and(|t| t > now) {
            return out;
        }
        let puts_waiting = self.work.keys().any(|(p, _)| *p < Prio::Delete);
        // Playlists do not count against the bound: they are small and gate everything.
        let keys: Vec<(Prio, u64)> = self.work.keys().copied().collect();
        let mut running = self
            .in_flight
            .values()
            .filter(|j| !matches!(j.target, Target::Media { .. } | Target::Multivariant))
            .count();
        for k in keys {
            let is_playlist = matches!(
                self.work[&k].target,
                Target::Media { .. } | Target::Multivariant
            );
            if !is_playlist && running >= self.cfg.concurrency {
                continue;
            }
            if k.0 == Prio::Delete && puts_waiting {
                break;
            }
            let mut job = self.work.remove(&k).expect("listed");
            if !is_playlist {
                running += 1;
            }
            if job.attempts > 0 {
                self.m
                    .requests
                    .get_or_create(&self.req_labels(job.op.label(), "retried"))
                    .inc();
            }
            job.epoch = self.epoch;
            self.mark_in_flight(job.target);
            self.in_flight.insert(job.id, job.clone());
            out.push(job);
            if self.not_before.is_some() {
                // Probing a store that failed: one request at a time until one succeeds.
                break;
            }
        }
        out
    }

    pub(super) fn mark_in_flight(&mut self, target: Target) {
        if let Some(o) = self.obj_mut(target) {
            o.in_flight = true;
        }
    }

    /// When [`Publisher::start`] may have something new without any input (then call
    /// [`Publisher::wake`]).
    pub fn next_wakeup(&self, now: Instant) -> Option<Instant> {
        let retry = self
            .not_before
            .filter(|t| *t > now && !self.work.is_empty());
        let delete = self
            .graveyard
            .front()
            .and_then(|g| g.due)
            .map(|d| d.max(now + Duration::from_millis(1)));
        let finish = self.ending_since.map(|t| t + self.cfg.finish_timeout);
        [retry, delete, finish].into_iter().flatten().min()
    }

    /// Time passed: deletes may be due.
    pub fn wake(&mut self, now: Instant) {
        self.schedule_deletes(now);
    }

    pub(super) fn clear_in_flight(&mut self, job: &Job) {
        match job.target {
            Target::Init(id) => {
                if let Some(r) = self.inits.get_mut(&id) {
                    r.obj.in_flight = false;
                    r.obj.busy = false;
                }
            }
            Target::Segment(msn) => {
                if let Some(r) = self.pending.get_mut(&msn) {
                    r.seg.in_flight = false;
                    r.seg.busy = false;
                }
            }
            Target::Part(msn, g) => {
                if let Some(p) = self.pending.get_mut(&msn).and_then(|r| {
                    r.parts
                        .iter_mut()
                        .find(|p| p.name.ends_with(&format!("-p{g}.m4s")))
                }) {
                    p.in_flight = false;
                    p.busy = false;
                }
            }
            Target::Media { .. } => self.media_busy = false,
            Target::Multivariant => self.mv_busy = false,
            Target::Verify(_) | Target::Delete => {}
        }
    }

    /// Puts the job back (it keeps its bytes) if what it was for still exists.
    pub(super) fn retry(&mut self, mut job: Job) {
        job.attempts += 1;
        let (prio, alive) = match job.target {
            Target::Init(id) => (Prio::Init, self.inits.contains_key(&id)),
            Target::Segment(msn) | Target::Part(msn, _) => {
                (Prio::Media, self.pending.contains_key(&msn))
            }
            Target::Verify(seq) => (Prio::Verify, self.published.iter().any(|p| p.seq == seq)),
            Target::Delete => (Prio::Delete, true),
            // Playlists are re-rendered from the current state instead.
            Target::Media { .. } | Target::Multivariant => (Prio::Init, false),
        };
        if let Target::Verify(_) = job.target {
            return; // verified again from scratch in the new epoch
        }
        if !alive {
            return;
        }
        self.set_busy(job.target, true);
        self.next_job += 1;
        job.id = self.next_job;
        self.work.insert((prio, job.id), job);
    }

    /// The stored object a job targets (init, segment or part), if it is still tracked.
    pub(super) fn obj_mut(&mut self, target: Target) -> Option<&mut Obj> {
        match target {
            Target::Init(id) => self.inits.get_mut(&id).map(|r| &mut r.obj),
            Target::Segment(msn) => self.pending.get_mut(&msn).map(|r| &mut r.seg),
            Target::Part(msn, g) => {
                let suffix = format!("-p{g}.m4s");
                self.pending
                    .get_mut(&msn)
                    .and_then(|r| r.parts.iter_mut().find(|p| p.name.ends_with(&suffix)))
            }
            _ => None,
        }
    }

    pub(super) fn set_busy(&mut self, target: Target, busy: bool) {
        if let Some(o) = self.obj_mut(target) {
            o.busy = busy;
        }
    }

    pub(super) fn backoff(&mut self) -> Duration {
        let exp = self
            .cfg
            .backoff_min
            .saturating_mul(1u32 << self.failures_in_row.min(16).saturating_sub(1));
        let cap = exp.min(self.cfg.backoff_max);
        // Full jitter between half and all of it (xorshift; no need for a crypto RNG).
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let frac = 0.5 + (self.rng % 1000) as f64 / 2000.0;
        cap.mul_f64(frac)
    }
}
