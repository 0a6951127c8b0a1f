//! One output's publisher: turns the live window's snapshots into store operations, in an order
//! that keeps the published stream consistent whatever the store does.
//!
//! [`Publisher`] is the state machine (no I/O: it is told what happened and says which requests
//! to start); [`run`] drives it with a [`Store`], at most `concurrency` requests at a time.
//!
//! Guarantees (README "Publishing to disk and S3"):
//! - An object is named by a playlist only once this publisher has seen it stored *in the
//!   current epoch*. Every failed request starts a new epoch, because a store that failed may
//!   have lost data (a restarted server without persistence). Afterwards, objects not yet
//!   published are put again (their bytes are still held), published segments are checked with
//!   HEAD, and any that vanished are dropped from the head of the playlist.
//! - Segments are published in MSN order; a playlist is re-rendered only when what it lists
//!   changed, and puts of the same playlist never overlap, so a late response cannot bring back
//!   an older version.
//! - Objects that left the playlist are deleted only after the playlist without them was stored
//!   and a grace period (the playlist's duration plus one target duration) has passed.
//! - While the store is unreachable, requests back off exponentially with jitter (one schedule
//!   for the whole output, so recovery is noticed within `backoff_max`); at most `queue`
//!   complete segments wait, the oldest are dropped beyond that (warning, metric), and the first
//!   segment published after a gap carries EXT-X-DISCONTINUITY.

use super::config::Retention;
use super::metrics::{OutputLabels, RequestLabels, StorageMetrics};
use super::playlist::{render_static, StaticPlaylist};
use super::store::{Body, Meta, Store, StoreError};
use crate::hls::playlist::{names, render_multivariant};
use crate::hls::window::{SegmentView, Snapshot};
use crate::http::routes::cache;
use crate::media::TIMESCALE;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

pub const CT_PLAYLIST: &str = "application/vnd.apple.mpegurl";
pub const CT_INIT: &str = "video/mp4";
pub const CT_SEGMENT: &str = "video/iso.segment";

/// Settings of one publisher.
#[derive(Debug, Clone)]
pub struct PublisherConfig {
    /// For logs and metric labels.
    pub label: String,
    /// Key prefix, empty or ending in `/`.
    pub prefix: String,
    pub retention: Retention,
    /// Publish LL-HLS parts too.
    pub parts: bool,
    /// Segments listed with [`Retention::Window`].
    pub window: usize,
    pub concurrency: usize,
    /// Complete segments that may wait for the store.
    pub queue: usize,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// After the stream ended: how long to try to publish the final playlist.
    pub finish_timeout: Duration,
}

impl PublisherConfig {
    pub fn new(label: String, prefix: String, window: usize) -> Self {
        PublisherConfig {
            label,
            prefix,
            retention: Retention::Window,
            parts: false,
            window,
            concurrency: super::config::DEFAULT_CONCURRENCY,
            queue: super::config::DEFAULT_QUEUE,
            backoff_min: Duration::from_millis(200),
            backoff_max: Duration::from_secs(4),
            finish_timeout: Duration::from_secs(8),
        }
    }
}

/// A store request to run.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: u64,
    /// Object name under the prefix.
    pub name: String,
    pub op: Op,
    /// Epoch when the request was issued.
    epoch: u64,
    attempts: u32,
    target: Target,
}

#[derive(Debug, Clone)]
pub enum Op {
    Put(Body, Meta),
    Exists,
    Delete,
}

impl Op {
    fn label(&self) -> &'static str {
        match self {
            Op::Put(..) => "put",
            Op::Exists => "head",
            Op::Delete => "delete",
        }
    }
}

/// What a request's result updates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
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
    fn error(&self) -> Option<&StoreError> {
        match self {
            Outcome::Put(Err(e)) | Outcome::Exists(Err(e)) | Outcome::Delete(Err(e)) => Some(e),
            _ => None,
        }
    }
}

/// Priority classes; lower runs first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Prio {
    Init,
    Media,
    Verify,
    Delete,
}

#[derive(Debug, Default)]
struct Obj {
    name: String,
    /// Epoch in which it was last confirmed stored.
    stored: Option<u64>,
    /// A put is queued or in flight.
    busy: bool,
    in_flight: bool,
}

impl Obj {
    fn new(name: String) -> Self {
        Obj {
            name,
            ..Default::default()
        }
    }
    fn confirmed(&self, epoch: u64) -> bool {
        self.stored == Some(epoch)
    }
}

struct InitRec {
    obj: Obj,
    body: Body,
}

/// A segment seen in the window and not yet published.
struct SegRec {
    /// The window's view (holds the media until published).
    view: Arc<SegmentView>,
    complete: bool,
    completed_at: Option<Instant>,
    seg: Obj,
    /// Parts mode: one per part of `view`.
    parts: Vec<Obj>,
    /// Segments before this one were dropped: publish with a discontinuity.
    gap_before: bool,
}

/// A published segment (metadata only).
struct PubRec {
    seq: u64,
    view: Arc<SegmentView>,
    names: Vec<String>,
    /// Epoch in which all of `names` were last confirmed.
    epoch: u64,
    /// Epoch of the current verification round and the names it still waits for.
    verify_epoch: u64,
    outstanding: Vec<String>,
}

/// Objects to delete once the playlist `after_version` (which no longer names them) is stored.
struct Grave {
    names: Vec<String>,
    after_version: u64,
    due: Option<Instant>,
}

/// The state machine of one output.
pub struct Publisher {
    cfg: PublisherConfig,
    m: Arc<StorageMetrics>,
    labels: OutputLabels,
    run: String,
    target_duration: Option<u32>,
    part_target: u64,
    latest: Option<Arc<Snapshot>>,

    inits: BTreeMap<u32, InitRec>,
    pending: BTreeMap<u64, SegRec>,
    /// Next MSN to take from the window.
    next_msn: Option<u64>,
    /// The next segment ingested follows a gap.
    gap_next: bool,
    published: VecDeque<PubRec>,
    next_seq: u64,
    discontinuity_sequence: u64,
    graveyard: VecDeque<Grave>,

    /// Bumped on every change of what the media playlist lists.
    version: u64,
    /// Tail shown in the last render (msn, parts) — parts mode.
    tail: Option<(u64, usize)>,
    media_stored: Option<(u64, u64)>,
    media_busy: bool,
    mv_stored: Option<(String, u64, u64)>,
    mv_busy: bool,

    epoch: u64,
    failures_in_row: u32,
    not_before: Option<Instant>,
    rng: u64,

    work: BTreeMap<(Prio, u64), Job>,
    in_flight: HashMap<u64, Job>,
    next_job: u64,

    ending_since: Option<Instant>,
    ended_rendered: bool,
    gave_up: bool,
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

    fn key(&self, name: &str) -> String {
        format!("{}{name}", self.cfg.prefix)
    }

    /// Full store key of a job.
    pub fn job_key(&self, job: &Job) -> String {
        self.key(&job.name)
    }

    fn enqueue(&mut self, prio: Prio, name: String, op: Op, target: Target, attempts: u32) {
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

    // -----------------------------------------------------------------------------------------
    // Input

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

    fn ingest_segment(&mut self, seg: &Arc<SegmentView>, now: Instant) {
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
            let meta = Meta {
                content_type: CT_SEGMENT,
                cache_control: cache::IMMUTABLE.into(),
            };
            self.enqueue(Prio::Media, name, Op::Put(body, meta), target, 0);
        }
    }

    /// Drops the oldest waiting segments beyond the queue bound.
    fn enforce_queue(&mut self) {
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

    fn drop_segment(&mut self, msn: u64) {
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

    // -----------------------------------------------------------------------------------------
    // Results

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

    fn req_labels(&self, op: &'static str, result: &'static str) -> RequestLabels {
        RequestLabels {
            output: self.cfg.label.clone(),
            op,
            result,
        }
    }

    fn clear_in_flight(&mut self, job: &Job) {
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
    fn retry(&mut self, mut job: Job) {
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
    fn obj_mut(&mut self, target: Target) -> Option<&mut Obj> {
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

    fn set_busy(&mut self, target: Target, busy: bool) {
        if let Some(o) = self.obj_mut(target) {
            o.busy = busy;
        }
    }

    fn put_done(&mut self, job: &Job, now: Instant) {
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

    fn verify_done(&mut self, seq: u64, job: &Job, exists: bool) {
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

    /// Removes the first published segment; its objects go to the graveyard, to be deleted once
    /// the current version of the playlist (which must no longer list it) is stored.
    fn remove_head(&mut self) {
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

    // -----------------------------------------------------------------------------------------
    // Decisions

    /// Publishes what became ready, trims the window, and queues the requests that are needed.
    fn advance(&mut self, now: Instant) {
        let epoch = self.epoch;
        // Inits: re-put any that is not confirmed in this epoch and still needed.
        let needed_inits: Vec<u32> = self.needed_inits();
        for id in needed_inits {
            let r = self.inits.get_mut(&id).expect("needed init is known");
            if !r.obj.confirmed(epoch) && !r.obj.busy {
                r.obj.busy = true;
                let body = r.body.clone();
                let name = r.obj.name.clone();
                let meta = Meta {
                    content_type: CT_INIT,
                    cache_control: cache::IMMUTABLE.into(),
                };
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
            let meta = Meta {
                content_type: CT_SEGMENT,
                cache_control: cache::IMMUTABLE.into(),
            };
            self.enqueue(Prio::Media, name, Op::Put(body, meta), target, 0);
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

    fn needed_inits(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = self.published.iter().map(|p| p.view.init_id).collect();
        ids.extend(self.pending.values().map(|r| r.view.init_id));
        ids.sort_unstable();
        ids.dedup();
        ids.retain(|id| self.inits.contains_key(id));
        ids
    }

    fn init_ok(&self, id: u32) -> bool {
        self.inits
            .get(&id)
            .is_some_and(|r| r.obj.confirmed(self.epoch))
    }

    /// Moves pending segments that are stored (with their init) to the published list, in order.
    fn publish_ready(&mut self) {
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

    fn trim(&mut self) {
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

    /// The media playlist as it would be published now, with the objects it names confirmed?
    fn media_state(&self) -> Option<(StaticPlaylist<'_>, Vec<Arc<SegmentView>>)> {
        let t = self.target_duration?;
        let mut segs: Vec<Arc<SegmentView>> =
            self.published.iter().map(|p| p.view.clone()).collect();
        if let Some((msn, n)) = self.tail {
            let r = self.pending.get(&msn)?;
            let mut v = skeleton(&r.view, true);
            let m = Arc::make_mut(&mut v);
            m.parts.truncate(n);
            m.complete = false;
            m.duration = m.parts.iter().map(|p| p.duration).sum();
            m.discontinuity = r.view.discontinuity || r.gap_before;
            segs.push(v);
        }
        if segs.is_empty() {
            return None;
        }
        let p = StaticPlaylist {
            run: &self.run,
            target_duration: t,
            part_target: (self.cfg.parts && self.part_target > 0).then_some(self.part_target),
            media_sequence: self
                .published
                .front()
                .map(|p| p.seq)
                .unwrap_or(self.next_seq),
            discontinuity_sequence: self.discontinuity_sequence,
            event: self.cfg.retention == Retention::All,
            ended: self.ended_rendered,
            segments: &[],
        };
        Some((p, segs))
    }

    /// Whether everything the current media playlist names is confirmed in this epoch.
    fn media_publishable(&self) -> bool {
        let e = self.epoch;
        let verify_from = self.published.len().saturating_sub(self.cfg.window.max(10));
        self.published
            .iter()
            .skip(verify_from)
            .all(|p| p.epoch == e)
            && self
                .published
                .iter()
                .map(|p| p.view.init_id)
                .all(|id| self.init_ok(id))
    }

    fn schedule_playlists(&mut self) {
        if self.media_busy || self.mv_busy {
            return;
        }
        let Some(t) = self.target_duration else {
            return;
        };
        let version = self.version;
        let media_current = self.media_stored == Some((version, self.epoch));
        if !media_current {
            if !self.media_publishable() {
                return;
            }
            let Some((p, segs)) = self.media_state() else {
                return;
            };
            let text = render_static(&StaticPlaylist {
                segments: &segs,
                ..p
            });
            let cc = if self.ended_rendered {
                cache::ENDED_PLAYLIST.to_string()
            } else if self.cfg.parts {
                "no-cache".to_string()
            } else {
                cache::live_playlist(t)
            };
            let meta = Meta {
                content_type: CT_PLAYLIST,
                cache_control: cc,
            };
            self.media_busy = true;
            self.enqueue(
                Prio::Init,
                names::MEDIA.into(),
                Op::Put(vec![text.into()], meta),
                Target::Media { version },
                0,
            );
            return;
        }
        // The multivariant playlist names the media playlist: only once that exists.
        let Some(snap) = self.latest.clone() else {
            return;
        };
        let Some(text) = render_multivariant(&snap) else {
            return;
        };
        let peak = snap.bandwidth().1;
        let shape = strip_bandwidth(&text);
        let stale = match &self.mv_stored {
            None => true,
            Some((s, p, e)) => *s != shape || *e != self.epoch || peak > p + p / 10,
        };
        if stale {
            let meta = Meta {
                content_type: CT_PLAYLIST,
                cache_control: cache::live_playlist(t),
            };
            self.mv_busy = true;
            self.mv_stored = Some((shape, peak, self.epoch));
            self.enqueue(
                Prio::Init,
                names::MULTIVARIANT.into(),
                Op::Put(vec![text.into()], meta),
                Target::Multivariant,
                0,
            );
        }
    }

    fn grace(&self) -> Duration {
        let t = self.target_duration.unwrap_or(1) as u64;
        let listed: u64 = self.published.iter().map(|p| p.view.duration).sum();
        Duration::from_micros(listed * 1_000_000 / TIMESCALE as u64) + Duration::from_secs(t)
    }

    fn schedule_deletes(&mut self, now: Instant) {
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

    fn backoff(&mut self) -> Duration {
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

    // -----------------------------------------------------------------------------------------
    // Output

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

    fn mark_in_flight(&mut self, target: Target) {
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
}

/// A copy of a segment's view without the media (what the playlist needs).
fn skeleton(v: &SegmentView, keep_parts: bool) -> Arc<SegmentView> {
    let parts = if keep_parts {
        v.parts
            .iter()
            .map(|p| crate::hls::window::PartView {
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

/// The multivariant playlist without its BANDWIDTH values (what must be republished when it
/// changes).
fn strip_bandwidth(text: &str) -> String {
    text.split(',')
        .filter(|a| !a.contains("BANDWIDTH="))
        .collect::<Vec<_>>()
        .join(",")
}

// ---------------------------------------------------------------------------------------------

/// Drives a publisher with `store` until the stream ended and the final playlist is published.
pub async fn run<S: Store>(
    store: Arc<S>,
    cfg: PublisherConfig,
    metrics: Arc<StorageMetrics>,
    mut snapshots: watch::Receiver<Arc<Snapshot>>,
) {
    let label = cfg.label.clone();
    let mut p = Publisher::new(cfg, metrics);
    let mut jobs: JoinSet<(u64, Outcome, Duration)> = JoinSet::new();
    let first = snapshots.borrow_and_update().clone();
    p.ingest(&first, Instant::now());
    let mut open = true;
    loop {
        let now = Instant::now();
        for job in p.start(now) {
            let key = p.job_key(&job);
            let store = store.clone();
            jobs.spawn(async move {
                let t0 = Instant::now();
                let out = match job.op {
                    Op::Put(body, meta) => Outcome::Put(store.put(&key, body, &meta).await),
                    Op::Exists => Outcome::Exists(store.exists(&key).await),
                    Op::Delete => Outcome::Delete(store.delete(&key).await),
                };
                (job.id, out, t0.elapsed())
            });
        }
        if p.finished(Instant::now()) {
            break;
        }
        let wake = p.next_wakeup(Instant::now());
        tokio::select! {
            r = snapshots.changed(), if open => match r {
                Ok(()) => {
                    let s = snapshots.borrow_and_update().clone();
                    p.ingest(&s, Instant::now());
                }
                Err(_) => {
                    open = false;
                    p.source_closed(Instant::now());
                }
            },
            Some(r) = jobs.join_next(), if !jobs.is_empty() => match r {
                Ok((id, out, took)) => p.complete(id, out, took, Instant::now()),
                Err(e) => tracing::error!(output = %label, error = %e, "store request task failed"),
            },
            _ = tokio::time::sleep_until(wake.unwrap_or_else(Instant::now)), if wake.is_some() => p.wake(Instant::now()),
        }
    }
    tracing::info!(output = %label, "output finished");
}
