//! Collects NAL units from h264-reader's `NalAccumulator` for [`super::parser::AuParser`],
//! enforcing the NAL size limit while a NAL unit is still arriving.
//!
//! h264-reader calls [`AccumulatedNalHandler::nal`] with the NAL unit so far on every push,
//! complete or not; returning `Ignore` stops it buffering that NAL unit until the next start
//! code. A NAL unit over the limit is therefore never held whole: its place is marked with
//! [`NalOut::Dropped`] and the parser decides what else to drop.

use super::slice_header_peek;
use bytes::Bytes;
use h264_reader::nal::{Nal, RefNal};
use h264_reader::push::{AccumulatedNalHandler, NalInterest};
use std::io::BufRead;

/// What the accumulator handed over: a complete NAL unit, or the place of one that was dropped
/// for its size.
pub(super) enum NalOut {
    /// AVCC-framed (4-byte big-endian length, then the NAL unit), so a one-slice picture needs
    /// no further copy.
    Nal(Bytes),
    /// An oversized NAL unit of this type was dropped here; `new_picture` if it was a slice
    /// that starts a picture (`first_mb_in_slice == 0`).
    Dropped { nal_type: u8, new_picture: bool },
}

/// Collects complete NAL units from h264-reader's accumulator. h264-reader calls
/// [`AccumulatedNalHandler::nal`] with the NAL so far on every push, complete or not; returning
/// `Ignore` stops it buffering that NAL until the next start code.
pub(super) struct NalSink {
    pub(super) nals: Vec<NalOut>,
    pub(super) max_nal: usize,
    /// The NAL unit being received was dropped and has not ended yet.
    pub(super) discarding: bool,
    /// Bytes of dropped NAL units seen so far (the part buffered before the limit).
    pub(super) discarded: u64,
}

impl NalSink {
    pub(super) fn new(max_nal: usize) -> Self {
        NalSink { nals: Vec::new(), max_nal, discarding: false, discarded: 0 }
    }
}

impl AccumulatedNalHandler for NalSink {
    fn nal(&mut self, nal: RefNal<'_>) -> NalInterest {
        // A call after a dropped NAL is always for a new one.
        self.discarding = false;
        let complete = nal.is_complete();
        let mut buf = Vec::new();
        let mut head = Vec::with_capacity(16);
        let mut len = 0usize;
        let mut r = nal.reader();
        while let Ok(chunk) = r.fill_buf() {
            if chunk.is_empty() {
                break;
            }
            let n = chunk.len();
            if head.len() < 16 {
                head.extend_from_slice(&chunk[..n.min(16 - head.len())]);
            }
            len += n;
            if complete && len <= self.max_nal {
                if buf.is_empty() {
                    buf.extend_from_slice(&[0; 4]);
                }
                buf.extend_from_slice(chunk);
            }
            r.consume(n);
        }
        if len > self.max_nal {
            let nal_type = nal_type_of(&head);
            let new_picture = slice_header_peek(&head).is_some_and(|(first_mb, _)| first_mb == 0);
            self.nals.push(NalOut::Dropped { nal_type, new_picture });
            self.discarded += len as u64;
            self.discarding = !complete;
            return NalInterest::Ignore;
        }
        if complete && len > 0 {
            let n = len as u32;
            buf[..4].copy_from_slice(&n.to_be_bytes());
            self.nals.push(NalOut::Nal(Bytes::from(buf)));
        }
        NalInterest::Buffer
    }
}

fn nal_type_of(nal: &[u8]) -> u8 {
    nal.first().map(|b| b & 0x1f).unwrap_or(0)
}
