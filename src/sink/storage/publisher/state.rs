//! What a publisher knows: the records of inits, pending and published segments, objects waiting
//! to be deleted, the playlist versions stored, the epoch and the job tables ([`Publisher`]).
//! No I/O here: the other files of `publisher` change this state.

use super::jobs::{Job, Prio, Target};
use super::PublisherConfig;
use crate::hls::window::{SegmentView, Snapshot};
use crate::sink::storage::metrics::{OutputLabels, StorageMetrics};
use crate::sink::storage::store::Body;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use tokio::time::Instant;

#[derive(Debug, Default)]
pub(super) struct Obj {
    pub(super) name: String,
    /// Epoch in which it was last confirmed stored.
    pub(super) stored: Option<u64>,
    /// A put is queued or in flight.
    pub(super) busy: bool,
    pub(super) in_flight: bool,
}

impl Obj {
    pub(super) fn new(name: String) -> Self {
        Obj {
            name,
            ..Default::default()
        }
    }
    pub(super) fn confirmed(&self, epoch: u64) -> bool {
        self.stored == Some(epoch)
    }
}

pub(super) struct InitRec {
    pub(super) obj: Obj,
    pub(super) body: Body,
}

/// A segment seen in the window and not yet published.
pub(super) struct SegRec {
    /// The window's view (holds the media until published).
    pub(super) view: Arc<SegmentView>,
    pub(super) complete: bool,
    pub(super) completed_at: Option<Instant>,
    pub(super) seg: Obj,
    /// Parts mode: one per part of `view`.
    pub(super) parts: Vec<Obj>,
    /// Segments before this one were dropped: publish with a discontinuity.
    pub(super) gap_before: bool,
}

/// A published segment (metadata only).
pub(super) struct PubRec {
    pub(super) seq: u64,
    pub(super) view: Arc<SegmentView>,
    pub(super) names: Vec<String>,
    /// Epoch in which all of `names` were last confirmed.
    pub(super) epoch: u64,
    /// Epoch of the current verification round and the names it still waits for.
    pub(super) verify_epoch: u64,
    pub(super) outstanding: Vec<String>,
}

/// Objects to delete once the playlist `after_version` (which no longer names them) is stored.
pub(super) struct Grave {
    pub(super) names: Vec<String>,
    pub(super) after_version: u64,
    pub(super) due: Option<Instant>,
}

/// The state machine of one output.
pub struct Publisher {
    pub(super) cfg: PublisherConfig,
    pub(super) m: Arc<StorageMetrics>,
    pub(super) labels: OutputLabels,
    pub(super) run: String,
    pub(super) target_duration: Option<u32>,
    pub(super) part_target: u64,
    pub(super) latest: Option<Arc<Snapshot>>,

    pub(super) inits: BTreeMap<u32, InitRec>,
    pub(super) pending: BTreeMap<u64, SegRec>,
    /// Next MSN to take from the window.
    pub(super) next_msn: Option<u64>,
    /// The next segment ingested follows a gap.
    pub(super) gap_next: bool,
    pub(super) published: VecDeque<PubRec>,
    pub(super) next_seq: u64,
    pub(super) discontinuity_sequence: u64,
    pub(super) graveyard: VecDeque<Grave>,

    /// Bumped on every change of what the media playlist lists.
    pub(super) version: u64,
    /// Tail shown in the last render (msn, parts) — parts mode.
    pub(super) tail: Option<(u64, usize)>,
    pub(super) media_stored: Option<(u64, u64)>,
    pub(super) media_busy: bool,
    pub(super) mv_stored: Option<(String, u64, u64)>,
    pub(super) mv_busy: bool,

    pub(super) epoch: u64,
    pub(super) failures_in_row: u32,
    pub(super) not_before: Option<Instant>,
    pub(super) rng: u64,

    pub(super) work: BTreeMap<(Prio, u64), Job>,
    pub(super) in_flight: HashMap<u64, Job>,
    pub(super) next_job: u64,

    pub(super) ending_since: Option<Instant>,
    pub(super) ended_rendered: bool,
    pub(super) gave_up: bool,
}

impl Publisher {
    pub fn new(cfg: PublisherConfig, metrics: Arc<StorageMetrics>) -> Self {
        let labels = OutputLabels {
            output: cfg.label.clone(),
        };
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        Publisher {
            cfg,
            m: metrics,
            labels,
            run: String::new(),
            target_duration: None,
            part_target: 0,
            latest: None,
            inits: BTreeMap::new(),
            pending: BTreeMap::new(),
            next_msn: None,
            gap_next: false,
            published: VecDeque::new(),
            next_seq: 0,
            discontinuity_sequence: 0,
            graveyard: VecDeque::new(),
            version: 0,
            tail: None,
            media_stored: None,
            media_busy: false,
            mv_stored: None,
            mv_busy: false,
            epoch: 0,
            failures_in_row: 0,
            not_before: None,
            rng: seed | 1,
            work: BTreeMap::new(),
            in_flight: HashMap::new(),
            next_job: 0,
            ending_since: None,
            ended_rendered: false,
            gave_up: false,
        }
    }

    pub(super) fn key(&self, name: &str) -> String {
        format!("{}{name}", self.cfg.prefix)
    }

    /// Full store key of a job.
    pub fn job_key(&self, job: &Job) -> String {
        self.key(&job.name)
    }

    /// True when the output has nothing more to do after the end (or gave up).
    pub fn finished(&mut self, now: Instant) -> bool {
        let Some(since) = self.ending_since else {
            return false;
        };
        let nothing_published =
            self.published.is_empty() && self.pending.is_empty() && self.media_stored.is_none();
        let done = self.pending.is_empty()
            && self.ended_rendered
            && self.media_stored == Some((self.version, self.epoch))
            && self.mv_stored.as_ref().is_some_and(|m| m.2 == self.epoch)
            && !self.mv_busy
            && !self
                .in_flight
                .values()
                .any(|j| !matches!(j.target, Target::Delete));
        if done || (nothing_published && self.target_duration.is_none()) {
            return true;
        }
        if now >= since + self.cfg.finish_timeout {
            if !self.gave_up {
                self.gave_up = true;
                tracing::warn!(output = %self.cfg.label, waiting = self.pending.len(),
                    "the stream ended but the store did not take the final playlist in time; giving up");
            }
            return true;
        }
        false
    }

    /// Published segments (seq, msn) — tests.
    pub fn published(&self) -> Vec<(u64, u64)> {
        self.published.iter().map(|p| (p.seq, p.view.msn)).collect()
    }

    pub(super) fn needed_inits(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = self.published.iter().map(|p| p.view.init_id).collect();
        ids.extend(self.pending.values().map(|r| r.view.init_id));
        ids.sort_unstable();
        ids.dedup();
        ids.retain(|id| self.inits.contains_key(id));
        ids
    }

    pub(super) fn init_ok(&self, id: u32) -> bool {
        self.inits
            .get(&id)
            .is_some_and(|r| r.obj.confirmed(self.epoch))
    }
}
