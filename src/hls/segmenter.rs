//! Segmenter: frames → CMAF parts and segments, cut on frame boundaries at IDRs.
//!
//! Input is the source's [`SourceEvent`] stream; output is a sequence of [`Output`] events for
//! the live window (`hls::window`) or the offline writer (`hls::vod`). Pure and synchronous.
//!
//! Rules it keeps (shared/docs/ll-hls.md): every segment starts with an IDR; every IDR starts a
//! part (so INDEPENDENT=YES means "starts with a sync sample"); no part is longer than the
//! advertised PART-TARGET, which is a whole number of nominal frames; tfdt is continuous across
//! parts, segments and discontinuities; a part is published the moment its last frame arrives,
//! taking the nominal frame duration for that last frame rather than waiting for the next one.
//!
//! Timestamps may jitter or jump (arrival-stamped sources). Inside a part a frame's duration is
//! the distance to the next frame, so small gaps are absorbed there; a part's first frame always
//! sits exactly at the previous part's end (continuity), and gaps that cannot be absorbed within
//! a segment target, or backwards jumps, are dropped from the media timeline (`offset`); the
//! next segment then starts with EXT-X-DISCONTINUITY, since its PDT (capture time) jumps.

use crate::fmp4::{self, MuxError, Sample};
use crate::media::{Frame, SourceEvent, TrackInfo, TIMESCALE};
use bytes::Bytes;
use std::time::{Instant, SystemTime};

/// Segmenter settings, in [`TIMESCALE`] ticks.
#[derive(Debug, Clone)]
pub struct SegmenterConfig {
    /// Configured segment target (cut at the first IDR at or after it).
    pub segment_target: u64,
    /// Configured part target (rounded down to whole frames).
    pub part_target: u64,
}

/// A segment without an IDR is ended after this many segment targets…
pub const MAX_SEGMENT_TARGETS: u64 = 4;
/// …but no sooner than this (ticks: 10 s), so short targets still allow a usual 2–5 s GOP.
pub const MIN_MAX_SEGMENT: u64 = 10 * TIMESCALE as u64;

/// Longest segment (ticks) for a segment target: `max(4 × target, 10 s)`. When no IDR arrives
/// by then the segment is ended, frames are dropped until the next IDR, and that segment starts
/// with EXT-X-DISCONTINUITY (memory stays bounded; the encoder's GOP is misconfigured).
pub fn max_segment(segment_target: u64) -> u64 {
    segment_target.saturating_mul(MAX_SEGMENT_TARGETS).max(MIN_MAX_SEGMENT)
}

/// What the segmenter produces.
#[derive(Debug, Clone)]
pub enum Output {
    /// A new init segment (first format, or a format change).
    Init { id: u32, data: Bytes, info: TrackInfo, part_target: u64 },
    /// A segment begins; its first part follows.
    SegmentStart { msn: u64, pdt: SystemTime, discontinuity: bool, init_id: u32 },
    /// A part of the open segment is complete.
    Part(PartOut),
    /// The open segment is complete.
    SegmentEnd { msn: u64, duration: u64 },
    /// No IDR arrived within [`max_segment`]: segment `msn` was ended at `secs` seconds and
    /// frames are dropped until the next IDR.
    IdrOverdue { msn: u64, secs: f64 },
    /// The stream ended.
    End,
}

/// A finished part.
#[derive(Debug, Clone)]
pub struct PartOut {
    pub msn: u64,
    /// Index of the part within its segment.
    pub index: u32,
    /// Run-wide part number (names the part's URI, so a preload hint stays valid across a cut).
    pub global: u64,
    pub data: Bytes,
    /// Duration in ticks.
    pub duration: u64,
    pub independent: bool,
    /// When the part's last frame finished arriving (for the origin-delay metric).
    pub last_arrived: Instant,
    pub frames: u32,
    /// The IDR access unit (AVCC) when the part starts with one (for `/snapshot.jpg`).
    pub keyframe: Option<Bytes>,
}

struct Pending {
    out_dts: u64,
    duration: u64,
    frame: Frame,
}

/// Counters a caller may export.
#[derive(Debug, Default, Clone)]
pub struct SegmenterStats {
    pub frames_dropped_waiting_idr: u64,
    /// Frames dropped after a segment was ended for want of an IDR ([`Output::IdrOverdue`]).
    pub frames_dropped_idr_overdue: u64,
    /// Segments ended at [`max_segment`] without an IDR.
    pub idr_overdue_cuts: u64,
}

/// The segmenter state machine. See module docs.
pub struct Segmenter {
    cfg: SegmenterConfig,
    info: Option<TrackInfo>,
    nominal: u64,
    part_target: u64,
    init_id: u32,
    next_init_id: u32,
    mfhd_seq: u32,
    next_msn: u64,
    open: Option<OpenSegment>,
    pending: Vec<Pending>,
    part_end: u64,
    offset: i64,
    rebase: bool,
    wait_idr: bool,
    discontinuity: bool,
    global_part: u64,
    max_segment: u64,
    /// Waiting for an IDR after an [`Output::IdrOverdue`] cut.
    overdue: bool,
    /// A gap was dropped from the media timeline in the open segment (see `on_frame`).
    timeline_jump: bool,
    pub stats: SegmenterStats,
}

struct OpenSegment {
    msn: u64,
    start: u64,
    parts: u32,
    /// Frames in its published parts.
    frames: u64,
}

impl Segmenter {
    pub fn new(cfg: SegmenterConfig) -> Self {
        Segmenter {
            max_segment: max_segment(cfg.segment_target),
            cfg,
            info: None,
            nominal: 3000,
            part_target: 0,
            init_id: 0,
            next_init_id: 0,
            mfhd_seq: 0,
            next_msn: 0,
            open: None,
            pending: Vec::new(),
            part_end: 0,
            offset: 0,
            rebase: true,
            wait_idr: true,
            discontinuity: false,
            global_part: 0,
            overdue: false,
            timeline_jump: false,
            stats: SegmenterStats::default(),
        }
    }

    /// Advertised PART-TARGET in ticks (known after the first format).
    pub fn part_target(&self) -> u64 {
        self.part_target
    }

    /// Processes one source event, appending outputs to `out`.
    pub fn push(&mut self, ev: SourceEvent, out: &mut Vec<Output>) -> Result<(), MuxError> {
        match ev {
            SourceEvent::Format(info) => self.on_format(info, out)?,
            SourceEvent::Frame(f) => self.on_frame(f, out)?,
            SourceEvent::Discontinuity { .. } => self.break_timeline(out)?,
            SourceEvent::End => {
                self.close_segment(out)?;
                out.push(Output::End);
            }
        }
        Ok(())
    }

    fn on_format(&mut self, info: TrackInfo, out: &mut Vec<Output>) -> Result<(), MuxError> {
        if self.info.as_ref() == Some(&info) {
            return Ok(());
        }
        if self.info.is_some() {
            self.break_timeline(out)?;
        }
        self.nominal = info.frame_duration.max(1) as u64;
        if self.part_target == 0 {
            self.part_target = (self.cfg.part_target / self.nominal).max(1) * self.nominal;
        }
        self.init_id = self.next_init_id;
        self.next_init_id += 1;
        let data = fmp4::init_segment(&info)?;
        out.push(Output::Init { id: self.init_id, data, info: info.clone(), part_target: self.part_target });
        self.info = Some(info);
        Ok(())
    }

    /// Ends the open segment; the next one starts at an IDR with EXT-X-DISCONTINUITY.
    fn break_timeline(&mut self, out: &mut Vec<Output>) -> Result<(), MuxError> {
        self.close_segment(out)?;
        self.wait_idr = true;
        self.rebase = true;
        self.discontinuity = self.next_msn > 0;
        Ok(())
    }

    fn on_frame(&mut self, f: Frame, out: &mut Vec<Output>) -> Result<(), MuxError> {
        if !f.idr && !self.wait_idr {
            self.check_overdue(out)?;
        }
        if self.info.is_none() || (self.wait_idr && !f.idr) {
            if self.overdue {
                self.stats.frames_dropped_idr_overdue += 1;
            } else {
                self.stats.frames_dropped_waiting_idr += 1;
            }
            return Ok(());
        }
        self.overdue = false;
        if self.rebase {
            self.offset = f.dts as i64 - self.part_end as i64;
            self.rebase = false;
        }
        let mut out_dts = (f.dts as i64 - self.offset).max(0) as u64;

        // Settle the previous frame's duration now that its successor is known.
        if let Some(last) = self.pending.last() {
            let before: u64 = self.pending[..self.pending.len() - 1].iter().map(|p| p.duration).sum();
            let mut dur = out_dts.saturating_sub(last.out_dts);
            if dur == 0 {
                // Non-increasing timestamps: place the frame one nominal duration later.
                dur = self.nominal;
                out_dts = last.out_dts + dur;
                self.offset = f.dts as i64 - out_dts as i64;
            }
            if before + dur + self.nominal > self.part_target {
                // The new frame does not fit in this part: close it now.
                // Fill the part to PART-TARGET exactly (parts shorter than 0.85 × PART-TARGET
                // break Apple clients); the rest of the gap moves to the next part.
                let fit = self.part_target.saturating_sub(before).max(1);
                self.pending.last_mut().unwrap().duration = fit;
                self.publish_part(out)?;
            } else {
                self.pending.last_mut().unwrap().duration = dur;
            }
        }

        if f.idr {
            // Cut at an IDR once the segment reaches its target in media time, or holds half
            // the target in frames: that keeps a keyframe interval shorter than the target from
            // leaving a short part mid-segment, and a burst of late frames (compressed in media
            // time) from merging two GOPs.
            let seg = self.open.as_ref().map(|s| (self.open_duration(s), s.frames + self.pending.len() as u64));
            match seg {
                Some((d, n))
                    if d + self.nominal / 2 >= self.cfg.segment_target
                        || 2 * n * self.nominal >= self.cfg.segment_target =>
                {
                    self.close_segment(out)?
                }
                Some(_) => self.publish_part(out)?,
                None => {}
            }
        }
        // A gap longer than a segment target (or a step back) before this frame is dropped from
        // the media timeline below, but capture time (PDT) keeps it: when that moves PDT by more
        // than a part against EXTINF, the segment in which PDT jumps gets EXT-X-DISCONTINUITY
        // (this one if the frame starts it, else the next).
        let gap = out_dts as i64 - self.part_end as i64;
        let dropped = self.pending.is_empty() && (gap < 0 || gap as u64 > self.cfg.segment_target);
        let jump = dropped && gap.unsigned_abs() > self.part_target.min(self.cfg.segment_target);
        let opening = self.open.is_none();
        if opening {
            // Only reached with an IDR (wait_idr or a cut at an IDR).
            let msn = self.next_msn;
            self.next_msn += 1;
            self.open = Some(OpenSegment { msn, start: self.part_end, parts: 0, frames: 0 });
            out.push(Output::SegmentStart {
                msn,
                pdt: f.capture,
                discontinuity: std::mem::take(&mut self.discontinuity) | std::mem::take(&mut self.timeline_jump) | jump,
                init_id: self.init_id,
            });
            self.wait_idr = false;
        }
        if self.pending.is_empty() && out_dts != self.part_end {
            if dropped {
                self.offset += gap;
                self.timeline_jump |= jump && !opening;
            }
            out_dts = self.part_end;
        }
        self.pending.push(Pending { out_dts, duration: self.nominal, frame: f });
        let total: u64 = self.pending.iter().map(|p| p.duration).sum();
        if total + self.nominal > self.part_target {
            // No further frame fits: the last one fills the part to PART-TARGET.
            let fill = self.part_target.saturating_sub(total - self.nominal);
            self.pending.last_mut().unwrap().duration = fill.max(1);
            self.publish_part(out)?;
        }
        Ok(())
    }

    /// Ends the open segment if one more frame would take it past [`max_segment`] (no IDR came).
    fn check_overdue(&mut self, out: &mut Vec<Output>) -> Result<(), MuxError> {
        let Some(open) = self.open.as_ref() else { return Ok(()) };
        let duration = self.open_duration(open);
        if duration + self.nominal <= self.max_segment {
            return Ok(());
        }
        let msn = open.msn;
        let secs = duration as f64 / TIMESCALE as f64;
        tracing::error!(msn, segment_secs = secs, max_secs = self.max_segment as f64 / TIMESCALE as f64,
            "no IDR (keyframe) from the encoder for {secs:.1} s: segment ended, frames are dropped until \
             the next IDR; set the encoder's IDR interval to the frame rate × segment duration \
             (rpicam-vid --intra 30, ffmpeg -g 30) and disable intra refresh");
        self.break_timeline(out)?;
        self.overdue = true;
        self.stats.idr_overdue_cuts += 1;
        out.push(Output::IdrOverdue { msn, secs });
        Ok(())
    }

    fn open_duration(&self, s: &OpenSegment) -> u64 {
        let pending: u64 = self.pending.iter().map(|p| p.duration).sum();
        self.part_end + pending - s.start
    }

    fn publish_part(&mut self, out: &mut Vec<Output>) -> Result<(), MuxError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let Some(open) = self.open.as_mut() else {
            self.pending.clear();
            return Ok(());
        };
        let base = self.pending[0].out_dts;
        let samples: Vec<Sample> = self
            .pending
            .iter()
            .map(|p| Sample { duration: p.duration as u32, data: p.frame.data.clone(), sync: p.frame.idr, cts: p.frame.cts })
            .collect();
        // u32 (ISO/IEC 14496-12 mfhd): at 30 parts/s it wraps after 4.5 years; it then restarts
        // at 1 (0 is not a valid sequence number). Players use it only to order fragments of one
        // file, and every part here is fetched on its own.
        self.mfhd_seq = self.mfhd_seq.checked_add(1).unwrap_or(1);
        let data = fmp4::fragment(self.mfhd_seq, base, &samples)?;
        let duration: u64 = self.pending.iter().map(|p| p.duration).sum();
        let part = PartOut {
            msn: open.msn,
            index: open.parts,
            global: self.global_part,
            data,
            duration,
            independent: self.pending[0].frame.idr,
            last_arrived: self.pending.last().unwrap().frame.arrived,
            frames: self.pending.len() as u32,
            keyframe: self.pending[0].frame.idr.then(|| self.pending[0].frame.data.clone()),
        };
        open.parts += 1;
        open.frames += self.pending.len() as u64;
        self.global_part += 1;
        self.part_end = base + duration;
        self.pending.clear();
        out.push(Output::Part(part));
        Ok(())
    }

    fn close_segment(&mut self, out: &mut Vec<Output>) -> Result<(), MuxError> {
        self.publish_part(out)?;
        if let Some(s) = self.open.take() {
            let duration = self.part_end - s.start;
            out.push(Output::SegmentEnd { msn: s.msn, duration });
        }
        Ok(())
    }

    /// The next part's run-wide number (for EXT-X-PRELOAD-HINT).
    pub fn next_global_part(&self) -> u64 {
        self.global_part
    }
}

/// Seconds → ticks.
pub fn ticks(secs: f64) -> u64 {
    (secs * TIMESCALE as f64).round() as u64
}

#[cfg(test)]
mod tests;
