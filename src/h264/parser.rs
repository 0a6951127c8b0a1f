//! Push parser: Annex-B bytes in any chunking → access units (AVCC) and format changes.
//!
//! Bytes come from a byte-stream source (file, stdin, exec, tcp); h264-reader's `AnnexBReader`
//! finds NAL boundaries, and this module groups NAL units into access units following
//! ITU-T H.264 7.4.1.2.3: an AU ends before an AUD, SPS, PPS, SEI or NAL types 14–18, or before
//! a slice with `first_mb_in_slice == 0`, once the current AU holds a picture. Output goes to the
//! timestamping stage of the source (`source::reader` for live byte streams, `source::file`).
//!
//! A NAL unit is normally ended by the next start code, which arrives with the *next* frame. To
//! avoid a frame of delay, the source calls [`AuParser::flush`] when its input goes idle (the
//! encoder wrote a whole frame and paused), which ends the pending NAL and AU at once.
//!
//! Memory is bounded for any input: a NAL unit over [`MAX_NAL_BYTES`] is dropped while it
//! arrives (`nal_sink`), an access unit over [`MAX_AU_BYTES`] when it passes the limit; both are
//! counted, logged at most once a minute, and decoding resumes at the next IDR.

use super::nal_sink::{NalOut, NalSink};
use super::{nal_type, slice_header_peek, track_info, H264Error, SLICE_TYPE_B};
use crate::media::TrackInfo;
use bytes::Bytes;
use h264_reader::annexb::AnnexBReader;
use h264_reader::push::NalAccumulator;
use crate::metrics::ReasonLabels;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How many bytes may pass without parameter sets before the input is declared not H.264.
const NO_SPS_LIMIT: u64 = 8 * 1024 * 1024;

/// Largest NAL unit kept (16 MiB: a 4K intra frame at very high quality is a few MiB). A longer
/// one — garbage without start codes, a corrupt pipe — is dropped as it arrives (h264-reader
/// stops buffering it), counted, and parsing resumes at the next start code.
pub const MAX_NAL_BYTES: usize = 16 * 1024 * 1024;
/// Largest access unit kept (all slices of one picture); a larger one is dropped the same way.
pub const MAX_AU_BYTES: usize = 16 * 1024 * 1024;
/// Pictures without an IDR, once parameter sets are known, after which the parser logs that
/// the encoder sends no IDR (10 s of frames).
const NO_IDR_WARN_TICKS: u64 = 10 * crate::media::TIMESCALE as u64;
/// Minimum time between two "oversized input dropped" log lines of one parser.
const DISCARD_LOG_INTERVAL: Duration = Duration::from_secs(60);

/// Output of the parser.
#[derive(Debug, Clone)]
pub enum ParsedItem {
    /// New stream configuration (first SPS/PPS, or a change).
    Format(TrackInfo),
    /// One access unit: VCL NAL units in AVCC form.
    Au { data: Bytes, idr: bool },
}

/// The access-unit push parser. See the module docs.
pub struct AuParser {
    reader: AnnexBReader<NalAccumulator<NalSink>>,
    /// VCL NAL units of the AU being assembled, AVCC-framed.
    vcl: Vec<Bytes>,
    idr: bool,
    sps: Option<Bytes>,
    pps: Option<Bytes>,
    format: Option<TrackInfo>,
    frame_duration: Option<u32>,
    out: VecDeque<ParsedItem>,
    bytes_seen: u64,
    /// Pictures dropped because no parameter sets or IDR had been seen yet.
    pub skipped_before_start: u64,
    started: bool,
    /// An error found while finishing an AU, reported by the next push/flush.
    pending_error: Option<H264Error>,
    max_au: usize,
    /// Bytes in `vcl`.
    vcl_bytes: usize,
    /// The AU being received was dropped (too large, or it lost a slice): skip its other slices.
    au_dropped: bool,
    /// NAL units and access units dropped for their size.
    pub oversized: u64,
    last_discard_log: Option<Instant>,
    warned_no_idr: bool,
    /// Accept B slices (MPEG-TS input, where PTS/DTS give the composition offsets).
    allow_b: bool,
    /// Frame duration used when the SPS has no VUI timing and none was configured.
    fallback_frame_duration: Option<u32>,
}

impl AuParser {
    /// `frame_duration` (ticks) overrides the frame rate of the SPS VUI.
    pub fn new(frame_duration: Option<u32>) -> Self {
        Self::with_limits(frame_duration, MAX_NAL_BYTES, MAX_AU_BYTES)
    }

    /// A parser with other size limits (tests).
    pub fn with_limits(frame_duration: Option<u32>, max_nal: usize, max_au: usize) -> Self {
        AuParser {
            reader: AnnexBReader::accumulate(NalSink::new(max_nal)),
            vcl: Vec::new(),
            idr: false,
            sps: None,
            pps: None,
            format: None,
            frame_duration,
            out: VecDeque::new(),
            bytes_seen: 0,
            skipped_before_start: 0,
            started: false,
            pending_error: None,
            max_au,
            vcl_bytes: 0,
            au_dropped: false,
            oversized: 0,
            last_discard_log: None,
            warned_no_idr: false,
            allow_b: false,
            fallback_frame_duration: None,
        }
    }

    /// A parser for access units whose timestamps come from a container (MPEG-TS): B slices are
    /// accepted, and an SPS without VUI timing gets `fallback` ticks as nominal frame duration
    /// (the container's DTS give the real spacing).
    pub fn for_container(frame_duration: Option<u32>, fallback: u32) -> Self {
        let mut p = Self::new(frame_duration);
        p.allow_b = true;
        p.fallback_frame_duration = Some(fallback);
        p
    }

    /// Feeds bytes; complete items become available from [`AuParser::next_item`].
    pub fn push(&mut self, chunk: &[u8]) -> Result<(), H264Error> {
        self.bytes_seen += chunk.len() as u64;
        self.reader.push(chunk);
        if self.reader.nal_handler_mut().discarding {
            // The dropped NAL unit goes on past this chunk (counted to within one chunk).
            self.reader.nal_handler_mut().discarded += chunk.len() as u64;
        }
        self.take_nals()?;
        if let Some(e) = self.pending_error.take() {
            return Err(e);
        }
        if self.format.is_none() && self.bytes_seen > NO_SPS_LIMIT {
            return Err(H264Error::NoSps(self.bytes_seen));
        }
        Ok(())
    }

    /// Ends the pending NAL unit and access unit (input idle or finished).
    pub fn flush(&mut self) -> Result<(), H264Error> {
        self.reader.reset();
        self.reader.nal_handler_mut().discarding = false;
        self.take_nals()?;
        self.finish_au();
        match self.pending_error.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Next parsed item, if any.
    pub fn next_item(&mut self) -> Option<ParsedItem> {
        self.out.pop_front()
    }

    /// At the end of an input that produced no pictures: the error that explains why, if the
    /// input had pictures but never the parameter sets needed to decode them.
    pub fn end_error(&self) -> Option<H264Error> {
        (self.format.is_none() && self.skipped_before_start > 0).then_some(H264Error::NoSps(self.bytes_seen))
    }

    /// The current stream format, once known (the fuzzing harness checks it).
    pub fn format(&self) -> Option<&TrackInfo> {
        self.format.as_ref()
    }

    fn take_nals(&mut self) -> Result<(), H264Error> {
        let sink = self.reader.nal_handler_mut();
        let nals = std::mem::take(&mut sink.nals);
        let discarded = std::mem::take(&mut sink.discarded);
        if discarded > 0 {
            crate::metrics::get().input_discarded_bytes.get_or_create(&ReasonLabels { reason: "nal_too_large" }).inc_by(discarded);
        }
        for nal in nals {
            match nal {
                NalOut::Nal(framed) => self.on_nal(framed)?,
                NalOut::Dropped { nal_type, new_picture } => {
                    self.oversized += 1;
                    let limit = self.reader.nal_handler_mut().max_nal;
                    self.log_discard("NAL unit", limit, nal_type);
                    if (1..=5).contains(&nal_type) {
                        // A picture lost a slice: drop it and what depends on it (until an IDR).
                        if new_picture {
                            self.finish_au();
                        }
                        self.drop_au("picture_lost_slice");
                    }
                }
            }
        }
        Ok(())
    }

    /// Drops the access unit being assembled; decoding restarts at the next IDR.
    fn drop_au(&mut self, reason: &'static str) {
        if self.vcl_bytes > 0 {
            crate::metrics::get().input_discarded_bytes.get_or_create(&ReasonLabels { reason }).inc_by(self.vcl_bytes as u64);
        }
        self.vcl.clear();
        self.vcl_bytes = 0;
        self.idr = false;
        self.au_dropped = true;
        self.started = false;
    }

    /// Logs a size-limit drop: the first at once, then at most one line per minute.
    fn log_discard(&mut self, what: &str, limit: usize, nal_type: u8) {
        let now = Instant::now();
        if self.last_discard_log.is_some_and(|t| now.duration_since(t) < DISCARD_LOG_INTERVAL) {
            return;
        }
        self.last_discard_log = Some(now);
        tracing::warn!(limit_bytes = limit, nal_type, dropped_so_far = self.oversized,
            "input: {what} larger than {limit} bytes dropped (not H.264, or a corrupt stream); \
             resuming at the next start code / IDR");
    }

    /// Handles one AVCC-framed NAL unit (`framed[4..]` is the NAL unit).
    fn on_nal(&mut self, framed: Bytes) -> Result<(), H264Error> {
        let nal = framed.slice(4..);
        if nal[0] & 0x80 != 0 {
            malformed(&nal);
            return Ok(());
        }
        let t = nal[0] & 0x1f;
        match t {
            nal_type::SLICE | nal_type::IDR => {
                let Some((first_mb, slice_type)) = slice_header_peek(&nal) else {
                    malformed(&nal);
                    return Ok(());
                };
                if slice_type == SLICE_TYPE_B && !self.allow_b {
                    return Err(H264Error::BFrames);
                }
                if first_mb == 0 {
                    self.finish_au();
                }
                if self.au_dropped {
                    return Ok(());
                }
                if self.vcl_bytes + framed.len() > self.max_au {
                    self.vcl_bytes += framed.len();
                    self.oversized += 1;
                    self.log_discard("access unit", self.max_au, t);
                    self.drop_au("au_too_large");
                    return Ok(());
                }
                self.idr |= t == nal_type::IDR;
                self.vcl_bytes += framed.len();
                self.vcl.push(framed);
            }
            nal_type::SPS => {
                self.finish_au();
                self.sps = Some(nal);
            }
            nal_type::PPS => {
                self.finish_au();
                self.pps = Some(nal);
            }
            nal_type::AUD | nal_type::SEI | 14..=18 => self.finish_au(),
            nal_type::END_SEQ | nal_type::END_STREAM => self.finish_au(),
            _ => {}
        }
        Ok(())
    }

    /// Emits the AU being assembled (if it holds a picture), preceded by a Format item when the
    /// parameter sets changed.
    fn finish_au(&mut self) {
        self.au_dropped = false;
        if self.vcl.is_empty() {
            return;
        }
        self.vcl_bytes = 0;
        let vcl = std::mem::take(&mut self.vcl);
        let idr = std::mem::replace(&mut self.idr, false);
        if let (Some(sps), Some(pps)) = (&self.sps, &self.pps) {
            let changed = match &self.format {
                Some(f) => f.sps != sps || f.pps != pps,
                None => true,
            };
            if changed {
                let info = match (track_info(sps, pps, self.frame_duration), self.fallback_frame_duration) {
                    (Err(H264Error::NoFrameRate), Some(d)) => track_info(sps, pps, Some(d)),
                    (r, _) => r,
                };
                match info {
                    Ok(info) => {
                        self.format = Some(info.clone());
                        self.started = false;
                        self.out.push_back(ParsedItem::Format(info));
                    }
                    Err(e) => {
                        // Keep the previous format (if any); a bad SPS is reported by dropping
                        // pictures until a good one arrives.
                        tracing::warn!(error = %e, "ignoring unusable SPS");
                        self.sps = self.format.as_ref().map(|f| f.sps.clone());
                        if self.format.is_none() {
                            self.pending_error = Some(e);
                        }
                    }
                }
            }
        }
        if self.format.is_none() || !(self.started || idr) {
            self.skipped_before_start += 1;
            self.warn_no_idr();
            return;
        }
        self.started = true;
        let data = match <[Bytes; 1]>::try_from(vcl) {
            Ok([one]) => one,
            Err(many) => many.concat().into(),
        };
        self.out.push_back(ParsedItem::Au { data, idr });
    }
}

impl AuParser {
    /// Logs once when pictures keep coming without the IDR needed to start decoding them.
    fn warn_no_idr(&mut self) {
        let Some(f) = &self.format else { return };
        if self.warned_no_idr || self.skipped_before_start * u64::from(f.frame_duration) < NO_IDR_WARN_TICKS {
            return;
        }
        self.warned_no_idr = true;
        tracing::error!(pictures = self.skipped_before_start,
            "the encoder has sent pictures for 10 s but no IDR (keyframe) to start from: nothing can be \
             played; set the encoder's IDR interval (rpicam-vid --intra 30, ffmpeg -g 30) and disable \
             intra refresh");
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod limits_tests;

/// A NAL unit with the forbidden bit set or a slice header that cannot be read: ignored, and
/// its bytes counted (`hlsd_input_discarded_bytes_total{reason="malformed_nal"}`).
fn malformed(nal: &[u8]) {
    crate::metrics::get().input_discarded_bytes.get_or_create(&ReasonLabels { reason: "malformed_nal" }).inc_by(nal.len() as u64);
}
