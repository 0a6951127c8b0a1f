//! The live window: the parts and segments a client can fetch, published as immutable snapshots.
//!
//! Fed by the segmenter task with [`Output`] events; read by the HTTP handlers and the disk/S3
//! outputs (`sink::storage`) through a `tokio::sync::watch` channel of `Arc<Snapshot>`, so a blocked playlist or
//! preload-hinted part request simply awaits the next snapshot — no polling. Every snapshot is
//! self-contained: parts hold refcounted `Bytes`, completed segments are shared `Arc`s.
//!
//! Retention (ll-hls.md rules 12, 16, 18): `window` segments are listed; segments that leave the
//! playlist stay downloadable for as many more (at least 3 target durations) in `retired`.

use super::segmenter::{max_segment, ticks, Output, PartOut};
use crate::media::{TrackInfo, TIMESCALE};
use bytes::Bytes;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::watch;

/// One part as listed in the playlist and served.
#[derive(Debug, Clone)]
pub struct PartView {
    pub global: u64,
    pub duration: u64,
    pub independent: bool,
    pub data: Bytes,
}

/// One segment (possibly still open).
#[derive(Debug, Clone)]
pub struct SegmentView {
    pub msn: u64,
    pub pdt: SystemTime,
    pub discontinuity: bool,
    pub init_id: u32,
    pub parts: Vec<PartView>,
    /// Sum of part durations (ticks).
    pub duration: u64,
    pub complete: bool,
}

impl SegmentView {
    /// Whole-segment size in bytes.
    pub fn len(&self) -> usize {
        self.parts.iter().map(|p| p.data.len()).sum()
    }

    /// True while the segment has no media.
    pub fn is_empty(&self) -> bool {
        self.parts.iter().all(|p| p.data.is_empty())
    }
}

/// An init segment.
#[derive(Debug, Clone)]
pub struct InitView {
    pub id: u32,
    pub data: Bytes,
    pub info: TrackInfo,
}

/// The newest keyframe, kept for `/snapshot.jpg` (decoded only on request).
#[derive(Debug, Clone)]
pub struct Keyframe {
    /// Run-wide number of the part it starts (identifies the keyframe).
    pub part: u64,
    pub sps: Bytes,
    pub pps: Bytes,
    /// The IDR access unit, AVCC.
    pub data: Bytes,
}

/// Immutable state of the stream at one instant. Rendering caches live here.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Unique per process run; prefixes every media URI so caches never mix runs.
    pub run_id: String,
    /// TARGETDURATION in whole seconds; `None` until known (then the playlist is not ready).
    pub target_duration: Option<u32>,
    /// PART-TARGET in ticks.
    pub part_target: u64,
    /// Listed segments, oldest first; the last may be open.
    pub segments: Vec<Arc<SegmentView>>,
    /// Segments no longer listed but still downloadable.
    pub retired: Vec<Arc<SegmentView>>,
    pub inits: Vec<InitView>,
    /// EXT-X-DISCONTINUITY-SEQUENCE of the first listed segment.
    pub discontinuity_sequence: u64,
    /// Run-wide number of the next part (preload hint).
    pub next_part: u64,
    pub ended: bool,
    pub keyframe: Option<Arc<Keyframe>>,
    /// Set while pictures arrive but none can start a segment: since when, and whether a segment
    /// was already ended for want of an IDR (see [`Snapshot::idr_problem`]).
    pub awaiting_idr: Option<(Instant, bool)>,
    /// How long the first IDR may take before that is reported (the segmenter's maximum segment).
    pub idr_grace: Duration,
    /// Bumped on every change.
    pub version: u64,
    /// Lazily rendered playlists: [plain, delta] × [identity, gzip].
    pub(crate) rendered: [OnceLock<Bytes>; 4],
}

impl Snapshot {
    /// MSN of the first listed segment.
    pub fn media_sequence(&self) -> u64 {
        self.segments.first().map(|s| s.msn).unwrap_or(0)
    }

    /// The current format (of the newest init segment).
    pub fn info(&self) -> Option<&TrackInfo> {
        self.inits.last().map(|i| &i.info)
    }

    /// True once a playlist can be rendered (target known and at least one part).
    pub fn ready(&self) -> bool {
        self.target_duration.is_some() && self.segments.iter().any(|s| !s.parts.is_empty())
    }

    /// MSN of the last complete segment.
    pub fn last_complete_msn(&self) -> Option<u64> {
        self.segments.iter().rev().find(|s| s.complete).map(|s| s.msn)
    }

    /// Finds a part by run-wide number among listed and retired segments.
    pub fn part(&self, global: u64) -> Option<&PartView> {
        self.all_segments()
            .flat_map(|s| s.parts.iter())
            .find(|p| p.global == global)
    }

    /// Finds a complete segment by MSN.
    pub fn segment(&self, msn: u64) -> Option<&Arc<SegmentView>> {
        self.all_segments().find(|s| s.msn == msn && s.complete)
    }

    pub fn init(&self, id: u32) -> Option<&InitView> {
        self.inits.iter().find(|i| i.id == id)
    }

    fn all_segments(&self) -> impl Iterator<Item = &Arc<SegmentView>> {
        self.retired.iter().chain(self.segments.iter())
    }

    /// When the encoder sends no IDR — the first one is later than [`Snapshot::idr_grace`], or a
    /// segment was ended at the maximum length — the explanation for a 503, naming the fix.
    pub fn idr_problem(&self) -> Option<String> {
        let (since, overdue) = self.awaiting_idr?;
        let waited = since.elapsed();
        if !overdue && waited < self.idr_grace {
            return None;
        }
        let what = if overdue { "since the last segment" } else { "since the stream started" };
        Some(format!(
            "no IDR (keyframe) from the encoder for {:.0} s {what}: nothing new can be played. Set the \
             encoder's IDR interval to about the frame rate x segment duration (rpicam-vid --intra 30, \
             ffmpeg -g 30) and disable intra refresh.\n",
            waited.as_secs_f64() + if overdue { self.idr_grace.as_secs_f64() } else { 0.0 }
        ))
    }

    /// Average bitrate of the listed complete segments, bits per second.
    pub fn bandwidth(&self) -> (u64, u64) {
        let (bytes, ticks, peak) = self.segments.iter().filter(|s| s.complete && s.duration > 0).fold(
            (0u64, 0u64, 0u64),
            |(b, t, p), s| {
                let rate = s.len() as u64 * 8 * TIMESCALE as u64 / s.duration;
                (b + s.len() as u64, t + s.duration, p.max(rate))
            },
        );
        let avg = (bytes * 8 * TIMESCALE as u64).checked_div(ticks).unwrap_or(0);
        (avg, peak)
    }
}

/// Window settings.
#[derive(Debug, Clone)]
pub struct WindowConfig {
    /// Segments listed in the playlist (>= 6 for Apple clients).
    pub segments: usize,
    /// Configured segment target in seconds (TARGETDURATION is at least its ceiling).
    pub segment_target: f64,
}

/// Owner side of the live window (one per stream, driven by the segmenter task).
pub struct Window {
    cfg: WindowConfig,
    state: Snapshot,
    open: Option<SegmentView>,
    tx: watch::Sender<Arc<Snapshot>>,
    /// Segments whose EXTINF rounds above TARGETDURATION (encoder GOP too long).
    pub overlong: u64,
}

impl Window {
    pub fn new(cfg: WindowConfig, run_id: String) -> (Self, watch::Receiver<Arc<Snapshot>>) {
        let idr_grace = Duration::from_secs_f64(max_segment(ticks(cfg.segment_target)) as f64 / TIMESCALE as f64);
        let state = Snapshot { run_id, idr_grace, ..Default::default() };
        let (tx, rx) = watch::channel(Arc::new(state.clone_shallow()));
        (Window { cfg, state, open: None, tx, overlong: 0 }, rx)
    }

    /// Applies segmenter outputs and publishes one new snapshot.
    pub fn apply(&mut self, outputs: &mut Vec<Output>, next_part: u64) {
        if outputs.is_empty() {
            return;
        }
        for o in outputs.drain(..) {
            self.apply_one(o);
        }
        self.state.next_part = next_part;
        self.publish();
    }

    fn apply_one(&mut self, o: Output) {
        match o {
            Output::Init { id, data, info, part_target } => {
                self.state.part_target = part_target;
                self.state.inits.push(InitView { id, data, info });
                // Keep inits still referenced by listed or retired segments, plus the newest.
                let used: Vec<u32> = self.state.all_segments().map(|s| s.init_id).collect();
                let newest = id;
                self.state.inits.retain(|i| i.id == newest || used.contains(&i.id));
                if self.open.is_none() && self.state.segments.is_empty() && self.state.awaiting_idr.is_none() {
                    self.state.awaiting_idr = Some((Instant::now(), false));
                }
            }
            Output::IdrOverdue { .. } => self.state.awaiting_idr = Some((Instant::now(), true)),
            Output::SegmentStart { msn, pdt, discontinuity, init_id } => {
                self.state.awaiting_idr = None;
                self.open = Some(SegmentView {
                    msn,
                    pdt,
                    discontinuity,
                    init_id,
                    parts: Vec::new(),
                    duration: 0,
                    complete: false,
                });
            }
            Output::Part(p) => self.add_part(p),
            Output::SegmentEnd { msn, duration } => self.end_segment(msn, duration),
            Output::End => self.state.ended = true,
        }
    }

    fn add_part(&mut self, p: PartOut) {
        let Some(open) = self.open.as_mut() else { return };
        if let (Some(data), Some(init)) = (p.keyframe, self.state.inits.last()) {
            self.state.keyframe = Some(Arc::new(Keyframe {
                part: p.global,
                sps: init.info.sps.clone(),
                pps: init.info.pps.clone(),
                data,
            }));
        }
        open.duration += p.duration;
        open.parts.push(PartView { global: p.global, duration: p.duration, independent: p.independent, data: p.data });
        self.sync_open();
    }

    /// Mirrors the open segment into the snapshot's last listed entry.
    fn sync_open(&mut self) {
        let Some(open) = self.open.as_ref() else { return };
        let view = Arc::new(open.clone());
        match self.state.segments.last_mut() {
            Some(last) if last.msn == open.msn => *last = view,
            _ => self.state.segments.push(view),
        }
    }

    fn end_segment(&mut self, msn: u64, duration: u64) {
        let Some(mut open) = self.open.take() else { return };
        debug_assert_eq!(open.msn, msn);
        open.complete = true;
        open.duration = duration;
        let secs = duration as f64 / TIMESCALE as f64;
        let target = match self.state.target_duration {
            Some(t) => t,
            None => {
                let t = self.cfg.segment_target.ceil().max((secs - 0.001).ceil()).max(1.0) as u32;
                if secs > self.cfg.segment_target + 0.5 {
                    tracing::warn!(
                        segment_secs = secs,
                        target = self.cfg.segment_target,
                        "the encoder's IDR interval is longer than the segment target: segments \
                         are cut at IDRs, so they will be ~{secs:.2} s and TARGETDURATION is {t}; \
                         set the encoder's keyframe interval to the frame rate × segment target \
                         (rpicam-vid --intra N, ffmpeg -g N) for shorter segments and lower latency"
                    );
                }
                self.state.target_duration = Some(t);
                t
            }
        };
        if secs.round() > target as f64 {
            self.overlong += 1;
            tracing::warn!(msn, segment_secs = secs, target, "segment longer than TARGETDURATION: encoder IDR interval grew");
        }
        self.replace_open(open);
        self.trim();
    }

    /// Replaces the open segment's mirror in the snapshot with its final form (dropped if empty).
    fn replace_open(&mut self, seg: SegmentView) {
        if self.state.segments.last().is_some_and(|last| last.msn == seg.msn) {
            self.state.segments.pop();
        }
        if !seg.parts.is_empty() {
            self.state.segments.push(Arc::new(seg));
        }
    }

    fn trim(&mut self) {
        let complete = self.state.segments.iter().filter(|s| s.complete).count();
        let mut excess = complete.saturating_sub(self.cfg.segments);
        while excess > 0 {
            let old = self.state.segments.remove(0);
            // DISCONTINUITY-SEQUENCE counts the discontinuity tags that left the playlist.
            if old.discontinuity {
                self.state.discontinuity_sequence += 1;
            }
            self.state.retired.push(old);
            excess -= 1;
        }
        let keep = self.cfg.segments.max(4);
        let over = self.state.retired.len().saturating_sub(keep);
        self.state.retired.drain(..over);
    }

    fn publish(&mut self) {
        self.state.version += 1;
        let _ = self.tx.send_replace(Arc::new(self.state.clone_shallow()));
    }

    /// Marks the stream ended (graceful shutdown): playlists get EXT-X-ENDLIST.
    pub fn end(&mut self) {
        if let Some(open) = self.open.take() {
            let d = open.duration;
            let msn = open.msn;
            self.open = Some(open);
            self.end_segment(msn, d);
        }
        self.state.ended = true;
        self.publish();
    }

    /// Current snapshot (owner side).
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.tx.borrow().clone()
    }
}

impl Snapshot {
    /// A copy sharing all media (cheap: `Arc`s and `Bytes`), with empty render caches.
    fn clone_shallow(&self) -> Snapshot {
        Snapshot {
            run_id: self.run_id.clone(),
            target_duration: self.target_duration,
            part_target: self.part_target,
            segments: self.segments.clone(),
            retired: self.retired.clone(),
            inits: self.inits.clone(),
            discontinuity_sequence: self.discontinuity_sequence,
            next_part: self.next_part,
            ended: self.ended,
            keyframe: self.keyframe.clone(),
            awaiting_idr: self.awaiting_idr,
            idr_grace: self.idr_grace,
            version: self.version,
            rendered: Default::default(),
        }
    }
}
