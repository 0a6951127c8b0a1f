//! Push parser: Annex-B bytes in any chunking → access units (AVCC) and format changes.
//!
//! Bytes come from a byte-stream source (file, stdin, exec, tcp); h264-reader's `AnnexBReader`
//! finds NAL boundaries, and this module groups NAL units into access units following
//! ITU-T H.264 7.4.1.2.3: an AU ends before an AUD, SPS, PPS, SEI or NAL types 14–18, or before
//! a slice with `first_mb_in_slice == 0`, once the current AU holds a picture. Output goes to the
//! timestamping stage of the source (`source::bytes`).
//!
//! A NAL unit is normally ended by the next start code, which arrives with the *next* frame. To
//! avoid a frame of delay, the source calls [`AuParser::flush`] when its input goes idle (the
//! encoder wrote a whole frame and paused), which ends the pending NAL and AU at once.

use super::{nal_type, slice_header_peek, track_info, H264Error, SLICE_TYPE_B};
use crate::media::TrackInfo;
use bytes::Bytes;
use h264_reader::annexb::AnnexBReader;
use h264_reader::nal::{Nal, RefNal};
use h264_reader::push::{AccumulatedNalHandler, NalAccumulator, NalInterest};
use std::collections::VecDeque;
use std::io::BufRead;

/// How many bytes may pass without parameter sets before the input is declared not H.264.
const NO_SPS_LIMIT: u64 = 8 * 1024 * 1024;

/// Output of the parser.
#[derive(Debug, Clone)]
pub enum ParsedItem {
    /// New stream configuration (first SPS/PPS, or a change).
    Format(TrackInfo),
    /// One access unit: VCL NAL units in AVCC form.
    Au { data: Bytes, idr: bool },
}

/// Collects complete NAL units from h264-reader's accumulator, each already framed for AVCC
/// (4-byte big-endian length, then the NAL unit), so a one-slice picture needs no further copy.
#[derive(Default)]
struct NalSink {
    nals: Vec<Bytes>,
}

impl AccumulatedNalHandler for NalSink {
    fn nal(&mut self, nal: RefNal<'_>) -> NalInterest {
        if nal.is_complete() {
            let mut buf = vec![0u8; 4];
            let mut r = nal.reader();
            while let Ok(chunk) = r.fill_buf() {
                if chunk.is_empty() {
                    break;
                }
                buf.extend_from_slice(chunk);
                let n = chunk.len();
                r.consume(n);
            }
            let len = (buf.len() - 4) as u32;
            if len > 0 {
                buf[..4].copy_from_slice(&len.to_be_bytes());
                self.nals.push(Bytes::from(buf));
            }
        }
        NalInterest::Buffer
    }
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
    /// NAL units with a forbidden bit or unknown layout, ignored.
    pub bad_nals: u64,
    started: bool,
    /// An error found while finishing an AU, reported by the next push/flush.
    pending_error: Option<H264Error>,
}

impl AuParser {
    /// `frame_duration` (ticks) overrides the frame rate of the SPS VUI.
    pub fn new(frame_duration: Option<u32>) -> Self {
        AuParser {
            reader: AnnexBReader::accumulate(NalSink::default()),
            vcl: Vec::new(),
            idr: false,
            sps: None,
            pps: None,
            format: None,
            frame_duration,
            out: VecDeque::new(),
            bytes_seen: 0,
            skipped_before_start: 0,
            bad_nals: 0,
            started: false,
            pending_error: None,
        }
    }

    /// Feeds bytes; complete items become available from [`AuParser::next_item`].
    pub fn push(&mut self, chunk: &[u8]) -> Result<(), H264Error> {
        self.bytes_seen += chunk.len() as u64;
        self.reader.push(chunk);
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

    /// The current stream format, once known.
    pub fn format(&self) -> Option<&TrackInfo> {
        self.format.as_ref()
    }

    fn take_nals(&mut self) -> Result<(), H264Error> {
        let nals = std::mem::take(&mut self.reader.nal_handler_mut().nals);
        for nal in nals {
            self.on_nal(nal)?;
        }
        Ok(())
    }

    /// Handles one AVCC-framed NAL unit (`framed[4..]` is the NAL unit).
    fn on_nal(&mut self, framed: Bytes) -> Result<(), H264Error> {
        let nal = framed.slice(4..);
        if nal[0] & 0x80 != 0 {
            self.bad_nals += 1;
            return Ok(());
        }
        let t = nal[0] & 0x1f;
        match t {
            nal_type::SLICE | nal_type::IDR => {
                let Some((first_mb, slice_type)) = slice_header_peek(&nal) else {
                    self.bad_nals += 1;
                    return Ok(());
                };
                if slice_type == SLICE_TYPE_B {
                    return Err(H264Error::BFrames);
                }
                if first_mb == 0 {
                    self.finish_au();
                }
                self.idr |= t == nal_type::IDR;
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
        if self.vcl.is_empty() {
            return;
        }
        let vcl = std::mem::take(&mut self.vcl);
        let idr = std::mem::replace(&mut self.idr, false);
        if let (Some(sps), Some(pps)) = (&self.sps, &self.pps) {
            let changed = match &self.format {
                Some(f) => f.sps != sps || f.pps != pps,
                None => true,
            };
            if changed {
                match track_info(sps, pps, self.frame_duration) {
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

#[cfg(test)]
#[path = "parser_tests.rs"]
mod tests;
