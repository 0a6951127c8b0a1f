//! Fixtures shared by the RTMP sink's unit tests: a small track format and frames.

use crate::media::{Frame, SourceEvent, TrackInfo};
use bytes::Bytes;
use std::time::{Instant, SystemTime};

pub(crate) fn info(w: u32) -> TrackInfo {
    TrackInfo {
        sps: Bytes::from_static(&[0x67, 0x42, 0xc0, 0x1e]),
        pps: Bytes::from_static(&[0x68, 0xce]),
        width: w,
        height: 240,
        profile_idc: 0x42,
        constraint_flags: 0xc0,
        level_idc: 0x1e,
        frame_duration: 3000,
    }
}

pub(crate) fn frame(n: u64, idr: bool) -> SourceEvent {
    SourceEvent::Frame(Frame {
        dts: n * 3000,
        cts: 0,
        capture: SystemTime::now(),
        data: Bytes::new(),
        idr,
        arrived: Instant::now(),
    })
}
