//! The input side: new inits, segments and parts from the live window's snapshots become
//! records and put requests; beyond the queue bound the oldest waiting segments are dropped.

use super::jobs::Target;
use super::state::{Grave, InitRec, Obj, Publisher, SegRec};
use crate::hls::playlist::names;
use crate::hls::window::{SegmentView, Snapshot};
use crate::sink::storage::config::Retention;
use crate::sink::storage::store::Body;
use std::sync::Arc;
use tokio::time::Instant;

impl Publisher {
    /// Takes new inits, segments (and parts) from a window snapshot.
    pub fn ingest(&mut self, snap: &Arc<Snapshot>, now: Instant) {
        if snap.run_id != self.run {
            self.run = snap.run_id.clone();
        }
        if self.target_duration.is_none() {
            self.target_duration = snap.target_duration;
        }
        if snap.part_target > 0 {
            self.part_target = snap.part_target;
        }
        self.latest = Some(snap.clone());
        for init in &snap.inits {
            if !self.inits.contains_key(&init.id) {
                let name = names::init(&self.run, init.id);
                self.inits.insert(
                    init.id,
                    InitRec {
                        obj: Obj::new(name),
                        body: vec![init.data.clone()],
                    },
                );
            }
        }
        for seg in snap.retired.iter().chain(snap.segments.iter()) {
            self.ingest_segment(seg, now);
        }
        if snap.ended && self.ending_since.is_none() {
            self.ending_since = Some(now);
        }
        self.enforce_queue();
        self.advance(now);
    }

    /// The window is gone without ending (shutdown path): finish like an end.
    pub fn source_closed(&mut self, now: Instant) {
        if self.ending_since.is_none() {
            self.ending_since = Some(now);
        }
        self.advance(now);
    }

    pub(super) fn ingest_segment(&mut self, seg: &Arc<SegmentView>, now: Instant) {
        let next = *self.next_msn.get_or_insert(seg.msn);
        if seg.msn < next {
            return;
        }
        if !seg.complete && !self.cfg.parts {
            return;
        }
        if !self.pending.contains_key(&seg.msn) {
            if seg.msn > next {
                // The window moved on without us seeing these (should not happen: we read
                // every snapshot promptly); publish across the gap.
                self.gap_next = true;
            }
            let rec = SegRec {
                view: seg.clone(),
                complete: false,
                completed_at: None,
                seg: Obj::new(names::segment(&self.run, seg.msn)),
                parts: Vec::new(),
                gap_before: std::mem::take(&mut self.gap_next),
            };
            self.pending.insert(seg.msn, rec);
        }
        let parts_mode = self.cfg.parts;
        let run = self.run.clone();
        let rec = self.pending.get_mut(&seg.msn).expect("just inserted");
        rec.view = seg.clone();
        let mut new_jobs = Vec::new();
        if parts_mode {
            while rec.parts.len() < seg.parts.len() {
                let p = &seg.parts[rec.parts.len()];
                let mut o = Obj::new(names::part(&run, p.global));
                o.busy = true;
                new_jobs.push((
                    o.name.clone(),
                    vec![p.data.clone()],
                    Target::Part(seg.msn, p.global),
                ));
                rec.parts.push(o);
            }
        }
        if seg.complete && !rec.complete {
            rec.complete = true;
            rec.completed_at = Some(now);
            rec.seg.busy = true;
            let body: Body = seg.parts.iter().map(|p| p.data.clone()).collect();
            new_jobs.push((rec.seg.name.clone(), body, Target::Segment(seg.msn)));
            self.next_msn = Some(seg.msn + 1);
        }
        for (name, body, target) in new_jobs {
            self.enqueue_media(name, body, target);
        }
    }

    /// Drops the oldest waiting segments beyond the queue bound.
    pub(super) fn enforce_queue(&mut self) {
        loop {
            let waiting = self.pending.values().filter(|r| r.complete).count();
            self.m
                .queue_depth
                .get_or_create(&self.labels)
                .set(waiting as i64);
            if waiting <= self.cfg.queue {
                return;
            }
            let victim = self
                .pending
                .iter()
                .find(|(_, r)| {
                    r.complete && !r.seg.in_flight && !r.parts.iter().any(|p| p.in_flight)
                })
                .map(|(msn, _)| *msn);
            let Some(msn) = victim else { return };
            self.drop_segment(msn);
        }
    }

    pub(super) fn drop_segment(&mut self, msn: u64) {
        let Some(rec) = self.pending.remove(&msn) else {
            return;
        };
        let key = self.key(&rec.seg.name);
        tracing::warn!(output = %self.cfg.label, key = %key, msn,
            "store is behind: dropping the oldest waiting segment (the published stream gets a discontinuity)");
        self.m.dropped_segments.get_or_create(&self.labels).inc();
        // Forget its queued requests; objects that may exist (parts, a put that timed out
        // late) are deleted like any removed segment.
        self.work.retain(
            |_, j| !matches!(j.target, Target::Segment(m) | Target::Part(m, _) if m == msn),
        );
        match self.pending.range_mut(msn + 1..).next() {
            Some((_, next)) => next.gap_before = true,
            None => self.gap_next = true,
        }
        let mut names: Vec<String> = rec
            .parts
            .iter()
            .filter(|p| p.stored.is_some())
            .map(|p| p.name.clone())
            .collect();
        if rec.seg.stored.is_some() {
            names.push(rec.seg.name.clone());
        }
        self.version += 1;
        if self.tail.is_some_and(|(m, _)| m == msn) {
            self.tail = None;
        }
        if !names.is_empty() && self.cfg.retention == Retention::Window {
            self.graveyard.push_back(Grave {
                names,
                after_version: self.version,
                due: None,
            });
        }
    }
}
