//! Harness for the MPEG-TS input path: transport stream bytes → [`TsIngest`] (sync, PAT/PMT,
//! PES reassembly, timestamps) → [`Segmenter`] → fragments with composition offsets.
//!
//! Properties beyond "no panic, no hang": within one timeline the frames' DTS strictly
//! increase, events stay bounded by the input, and every fragment the segmenter makes of them
//! encodes.

use super::Rng;
use crate::hls::segmenter::{Output, Segmenter, SegmenterConfig};
use crate::media::SourceEvent;
use crate::source::ts::TsIngest;
use std::time::Instant;

/// One pass over `data`, pushed in pseudo-random chunks (seeded by the input) with idle flushes.
pub fn ts_demux(data: &[u8]) {
    let mut r = Rng::new(data.iter().take(64).fold(0u64, |h, &b| h.wrapping_mul(31).wrapping_add(u64::from(b))));
    let mut t = TsIngest::new(None, None, r.below(2) == 0);
    let mut seg = Segmenter::new(SegmenterConfig { segment_target: 90_000, part_target: 18_000 });
    let mut outs: Vec<Output> = Vec::new();
    let mut pos = 0;
    let mut last_dts: Option<u64> = None;
    let mut events = 0usize;
    while pos < data.len() {
        let bits = r.below(12);
        let n = (1 + r.below(1 << bits) as usize).min(data.len() - pos);
        let res = t.push(&data[pos..pos + n], Instant::now());
        pos += n;
        if r.below(3) == 0 {
            let _ = t.flush(Instant::now());
        }
        while let Some(ev) = t.next_event() {
            events += 1;
            if let SourceEvent::Frame(f) = &ev {
                if let Some(l) = last_dts {
                    assert!(f.dts > l, "DTS not increasing: {} after {l}", f.dts);
                }
                last_dts = Some(f.dts);
            }
            seg.push(ev, &mut outs).expect("fragments encode");
            outs.clear();
        }
        if res.is_err() {
            break; // a refused stream stays refused; the caller restarts the source
        }
    }
    // Every frame takes at least 5 bytes of input; a format or discontinuity comes with one.
    assert!(events <= data.len(), "{events} events from {} bytes", data.len());
    let _ = t.end_error();
}
