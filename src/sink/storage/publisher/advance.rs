//! The decisions after every change: re-put what the current epoch has not confirmed, verify
//! published segments after a failure, move stored segments to the published list in MSN
//! order, trim the window, and delete what left the playlist once its grace period passed.

use super::jobs::{Op, Prio, Target};
use super::state::{Grave, PubRec, Publisher};
use crate::hls::window::{PartView, SegmentView};
use crate::media::TIMESCALE;
use crate::policy::Object;
use crate::sink::storage::config::Retention;
use crate::sink::storage::store::Meta;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

impl Publisher {
    /// Publishes what became ready, trims the window, and queues the requests that are needed.
    pub(super) fn advance(&mut self, now: Instant) {
        let epoch = self.epoch;
        // Inits: re-put any that is not confirmed in this epoch and still needed.
        let needed_inits: Vec<u32> = self.needed_inits();
        for id in needed_inits {
            let r = self.inits.get_mut(&id).expect("needed init is known");
            if !r.obj.confirmed(epoch) && !r.obj.busy {
                r.obj.busy = true;
                let body = r.body.clone();
                let name = r.obj.name.clone();
                let meta = Meta::of(Object::Init);
                self.enqueue(Prio::Init, name, Op::Put(body, meta), Target::Init(id), 0);
            }
        }
        // Pending objects stored in an older epoch: put again (still held in memory).
        let mut reput = Vec::new();
        for (msn, r) in self.pending.iter_mut() {
            for (i, p) in r.parts.iter_mut().enumerate() {
                if p.stored.is_some_and(|s| s != epoch) && !p.busy {
                    p.busy = true;
                    reput.push((
                        p.name.clone(),
                        vec![r.view.parts[i].data.clone()],
                        Target::Part(*msn, r.view.parts[i].global),
                    ));
                }
            }
            if r.complete && r.seg.stored.is_some_and(|s| s != epoch) && !r.seg.busy {
                r.seg.busy = true;
                reput.push((
                    r.seg.name.clone(),
                    r.view.parts.iter().map(|p| p.data.clone()).collect(),
                    Target::Segment(*msn),
                ));
            }
        }
        for (name, body, target) in reput {
            self.enqueue_media(name, body, target);
        }
        // Published segments near the edge: verify with HEAD after a failure.
        let verify_from = self.published.len().saturating_sub(self.cfg.window.max(10));
        let mut heads = Vec::new();
        for p in self.published.iter_mut().skip(verify_from) {
            if p.epoch != epoch && p.verify_epoch != epoch {
                p.verify_epoch = epoch;
                p.outstanding = p.names.clone();
                heads.extend(p.names.iter().map(|n| (n.clone(), p.seq)));
            }
        }
        for (name, seq) in heads {
            self.enqueue(Prio::Verify, name, Op::Exists, Target::Verify(seq), 0);
        }
        self.publish_ready();
        self.trim();
        if self.ending_since.is_some() && self.pending.is_empty() && !self.ended_rendered {
            self.ended_rendered = true;
            self.version += 1;
        }
        self.schedule_playlists();
        self.schedule_deletes(now);
    }

    /// Moves pending segments that are stored (with their init) to the published list, in order.
    pub(super) fn publish_ready(&mut self) {
        let epoch = self.epoch;
        while let Some((&msn, r)) = self.pending.iter().next() {
            let ready = r.complete
                && r.seg.confirmed(epoch)
                && r.parts.iter().all(|p| p.confirmed(epoch))
                && self.init_ok(r.view.init_id);
            if !ready {
                break;
            }
            let r = self.pending.remove(&msn).expect("present");
            let mut view = skeleton(&r.view, self.cfg.parts);
            Arc::make_mut(&mut view).discontinuity = r.view.discontinuity || r.gap_before;
            let mut names = vec![r.seg.name.clone()];
            names.extend(r.parts.iter().map(|p| p.name.clone()));
            self.published.push_back(PubRec {
                seq: self.next_seq,
                view,
                names,
                epoch,
                verify_epoch: epoch,
                outstanding: Vec::new(),
            });
            self.next_seq += 1;
            self.version += 1;
            if self.tail.is_some_and(|(m, _)| m == msn) {
                self.tail = None;
            }
        }
        // Parts mode: the stored prefix of the next segment's parts is listed too.
        if self.cfg.parts {
            let tail = self.pending.iter().next().and_then(|(&msn, r)| {
                let n = r.parts.iter().take_while(|p| p.confirmed(epoch)).count();
                (n > 0 && self.init_ok(r.view.init_id)).then_some((msn, n))
            });
            // Never list fewer parts than already published for the same segment.
            if tail.is_some_and(|t| self.tail.is_none_or(|old| old.0 != t.0 || t.1 > old.1)) {
                self.tail = tail;
                self.version += 1;
            }
        }
    }

    pub(super) fn trim(&mut self) {
        if self.cfg.retention != Retention::Window {
            return;
        }
        if self.published.len() > self.cfg.window {
            self.version += 1;
            while self.published.len() > self.cfg.window {
                self.remove_head();
            }
        }
        // Inits no segment refers to any more (after a format change).
        let used = self.needed_inits();
        let newest = self.inits.keys().next_back().copied();
        let unused: Vec<u32> = self
            .inits
            .keys()
            .copied()
            .filter(|id| !used.contains(id) && Some(*id) != newest)
            .collect();
        for id in unused {
            if let Some(r) = self.inits.remove(&id) {
                self.graveyard.push_back(Grave {
                    names: vec![r.obj.name],
                    after_version: self.version,
                    due: None,
                });
            }
        }
    }

    /// Removes the first published segment; its objects go to the graveyard, to be deleted once
    /// the current version of the playlist (which must no longer list it) is stored.
    pub(super) fn remove_head(&mut self) {
        let Some(old) = self.published.pop_front() else {
            return;
        };
        if old.view.discontinuity {
            self.discontinuity_sequence += 1;
        }
        if self.cfg.retention == Retention::Window {
            self.graveyard.push_back(Grave {
                names: old.names,
                after_version: self.version,
                due: None,
            });
        }
    }

    pub(super) fn grace(&self) -> Duration {
        let t = self.target_duration.unwrap_or(1) as u64;
        let listed: u64 = self.published.iter().map(|p| p.view.duration).sum();
        Duration::from_micros(listed * 1_000_000 / TIMESCALE as u64) + Duration::from_secs(t)
    }

    pub(super) fn schedule_deletes(&mut self, now: Instant) {
        while self
            .graveyard
            .front()
            .is_some_and(|g| g.due.is_some_and(|d| d <= now))
        {
            let g = self.graveyard.pop_front().expect("front");
            for name in g.names {
                self.enqueue(Prio::Delete, name, Op::Delete, Target::Delete, 0);
            }
        }
        // Keep the doomed list bounded through a long outage (deletes are best effort).
        while self.graveyard.len() > 10_000 {
            self.graveyard.pop_front();
        }
    }
}

/// A copy of a segment's view without the media (what the playlist needs).
pub(super) fn skeleton(v: &SegmentView, keep_parts: bool) -> Arc<SegmentView> {
    let parts = if keep_parts {
        v.parts
            .iter()
            .map(|p| PartView {
                data: bytes::Bytes::new(),
                ..p.clone()
            })
            .collect()
    } else {
        Vec::new()
    };
    Arc::new(SegmentView {
        msn: v.msn,
        pdt: v.pdt,
        discontinuity: v.discontinuity,
        init_id: v.init_id,
        parts,
        duration: v.duration,
        complete: v.complete,
    })
}
