//! Segmenter tests with synthetic frames: cut rules, continuity, gaps, discontinuities.

use super::*;
use crate::h264::track_info;
use mp4_atom::{Decode, Moof};
use std::time::Duration;

/// SPS/PPS of a 320x240 stream (x264, Baseline, VUI 30 fps).
pub(crate) fn info(frame_duration: u32) -> TrackInfo {
    // Baseline 320x240 SPS without VUI, parsed by h264-reader.
    let sps = [0x67, 0x42, 0xc0, 0x0d, 0xd9, 0x01, 0x41, 0xfb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0xc0, 0xf1, 0x42, 0x99, 0x60];
    let pps = [0x68, 0xcb, 0x83, 0xcb, 0x20];
    track_info(&sps, &pps, Some(frame_duration)).expect("test SPS parses")
}

pub(crate) fn frame(n: u64, dts: u64, idr: bool) -> Frame {
    let nal: Vec<u8> = vec![if idr { 0x65 } else { 0x41 }, 0x88, n as u8, 7, 7, 7];
    Frame {
        dts,
        cts: 0,
        capture: SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000) + Duration::from_nanos(dts * 100_000 / 9),
        data: crate::h264::to_avcc([&nal[..]]),
        idr,
        arrived: Instant::now(),
    }
}

fn cfg() -> SegmenterConfig {
    SegmenterConfig { segment_target: 90_000, part_target: 18_000 }
}

/// Runs frames (dts, idr) through a segmenter and returns its outputs.
fn run(frames: impl IntoIterator<Item = (u64, bool)>, fd: u32, cfg: SegmenterConfig) -> Vec<Output> {
    let mut s = Segmenter::new(cfg);
    let mut out = Vec::new();
    s.push(SourceEvent::Format(info(fd)), &mut out).unwrap();
    for (n, (dts, idr)) in frames.into_iter().enumerate() {
        s.push(SourceEvent::Frame(frame(n as u64, dts, idr)), &mut out).unwrap();
    }
    s.push(SourceEvent::End, &mut out).unwrap();
    out
}

fn parts(out: &[Output]) -> Vec<&PartOut> {
    out.iter().filter_map(|o| if let Output::Part(p) = o { Some(p) } else { None }).collect()
}

fn moof(p: &PartOut) -> Moof {
    Moof::decode(&mut &p.data[..]).expect("part starts with a decodable moof")
}

/// Checks tfdt continuity, mfhd order, part durations vs trun, and the part-target bound.
fn check_invariants(out: &[Output], part_target: u64) {
    let mut next_tfdt = None;
    let mut last_seq = 0;
    for p in parts(out) {
        let m = moof(p);
        assert!(m.mfhd.sequence_number > last_seq, "mfhd increases");
        last_seq = m.mfhd.sequence_number;
        let traf = &m.traf[0];
        let tfdt = traf.tfdt.as_ref().unwrap().base_media_decode_time;
        if let Some(n) = next_tfdt {
            assert_eq!(tfdt, n, "tfdt continuous at part {}", p.global);
        }
        let durations: Vec<u32> = match &traf.trun[0].samples {
            mp4_atom::TrunSamples::Explicit(e) => e.iter().map(|s| s.duration.unwrap()).collect(),
            _ => panic!("explicit samples"),
        };
        let sum: u64 = durations.iter().map(|&d| d as u64).sum();
        assert_eq!(sum, p.duration, "trun durations sum to the part duration");
        assert!(p.duration <= part_target, "part {} is {} > {}", p.global, p.duration, part_target);
        next_tfdt = Some(tfdt + sum);
    }
}

#[test]
fn regular_30fps_one_second_gop() {
    let frames = (0..90u64).map(|n| (n * 3000, n % 30 == 0));
    let out = run(frames, 3000, cfg());
    check_invariants(&out, 18_000);
    let ps = parts(&out);
    assert_eq!(ps.len(), 15, "6 frames per 200 ms part");
    assert!(ps.iter().all(|p| p.frames == 6 && p.duration == 18_000));
    let indep: Vec<u32> = ps.iter().filter(|p| p.independent).map(|p| p.index).collect();
    assert_eq!(indep, vec![0, 0, 0], "each segment's first part is independent");
    let ends: Vec<u64> = out.iter().filter_map(|o| if let Output::SegmentEnd { duration, .. } = o { Some(*duration) } else { None }).collect();
    assert_eq!(ends, vec![90_000, 90_000, 90_000]);
    assert!(matches!(out.last(), Some(Output::End)));
}

#[test]
fn part_is_published_with_its_last_frame_not_the_next() {
    let mut s = Segmenter::new(cfg());
    let mut out = Vec::new();
    s.push(SourceEvent::Format(info(3000)), &mut out).unwrap();
    for n in 0..6u64 {
        s.push(SourceEvent::Frame(frame(n, n * 3000, n == 0)), &mut out).unwrap();
    }
    assert_eq!(parts(&out).len(), 1, "published on the 6th frame, before the 7th arrives");
    assert_eq!(s.next_global_part(), 1);
}

#[test]
fn long_gop_gives_long_segments_cut_at_idr_only() {
    // 25 fps, IDR every 60 frames (the raspivid capture): 2.4 s segments, 5-frame parts.
    let frames = (0..180u64).map(|n| (n * 3600, n % 60 == 0));
    let out = run(frames, 3600, cfg());
    check_invariants(&out, 18_000);
    let ends: Vec<u64> = out.iter().filter_map(|o| if let Output::SegmentEnd { duration, .. } = o { Some(*duration) } else { None }).collect();
    assert_eq!(ends, vec![216_000, 216_000, 216_000]);
    // Every segment starts with an IDR part.
    let ps = parts(&out);
    assert!(ps.iter().filter(|p| p.index == 0).all(|p| p.independent));
}

#[test]
fn part_target_rounds_down_to_whole_frames() {
    // 24 fps (3750 ticks): 200 ms holds 4 whole frames, so PART-TARGET is 166.7 ms.
    let s = {
        let mut s = Segmenter::new(cfg());
        s.push(SourceEvent::Format(info(3750)), &mut Vec::new()).unwrap();
        s
    };
    assert_eq!(s.part_target(), 15_000);
}

#[test]
fn jitter_and_gaps_keep_tfdt_continuous_and_parts_bounded() {
    // Frames with a missing frame every 7th and a 400 ms stall once.
    let mut dts = 0;
    let mut frames = Vec::new();
    for n in 0..120u64 {
        dts += if n % 7 == 6 { 6000 } else { 3000 };
        if n == 50 {
            dts += 36_000;
        }
        frames.push((dts, n % 30 == 0));
    }
    let out = run(frames, 3000, cfg());
    check_invariants(&out, 18_000);
    // The media timeline still covers (nearly) the real elapsed time: gaps were absorbed
    // inside parts (a 400 ms stall is beyond one part and is dropped instead).
    let total: u64 = parts(&out).iter().map(|p| p.duration).sum();
    assert!(total >= dts - 36_000 - 120_000 && total <= dts + 3000, "total {total} vs dts span {dts}");
}

#[test]
fn discontinuity_and_format_change_start_a_new_segment_at_an_idr() {
    let mut s = Segmenter::new(cfg());
    let mut out = Vec::new();
    s.push(SourceEvent::Format(info(3000)), &mut out).unwrap();
    for n in 0..40u64 {
        s.push(SourceEvent::Frame(frame(n, n * 3000, n % 30 == 0)), &mut out).unwrap();
    }
    s.push(SourceEvent::Discontinuity { reason: "test".into() }, &mut out).unwrap();
    // Non-IDR frames after a restart are dropped until an IDR.
    s.push(SourceEvent::Frame(frame(0, 5, false)), &mut out).unwrap();
    assert_eq!(s.stats.frames_dropped_waiting_idr, 1);
    for n in 0..10u64 {
        s.push(SourceEvent::Frame(frame(n, 1000 + n * 3000, n == 0)), &mut out).unwrap();
    }
    // A format change: new init and another discontinuity.
    s.push(SourceEvent::Format(info(3600)), &mut out).unwrap();
    for n in 0..10u64 {
        s.push(SourceEvent::Frame(frame(n, n * 3600, n == 0)), &mut out).unwrap();
    }
    s.push(SourceEvent::End, &mut out).unwrap();
    check_invariants(&out, 18_000);
    let starts: Vec<(u64, bool, u32)> = out
        .iter()
        .filter_map(|o| if let Output::SegmentStart { msn, discontinuity, init_id, .. } = o { Some((*msn, *discontinuity, *init_id)) } else { None })
        .collect();
    assert_eq!(starts, vec![(0, false, 0), (1, false, 0), (2, true, 0), (3, true, 1)]);
    let inits = out.iter().filter(|o| matches!(o, Output::Init { .. })).count();
    assert_eq!(inits, 2);
}

/// Long uptimes (60 h, 30 days, a year): the segmenter's run-wide state is set to what it would
/// be after that long (media time, MSN, part numbers, mfhd near or past the u32 wrap), and the
/// next segments must continue it exactly: tfdt (64-bit, version 1), MSN and part numbers as
/// u64, mfhd strictly increasing except for the documented wrap to 1.
#[test]
fn long_uptimes_keep_tfdt_msn_and_mfhd_in_range() {
    for days in [2.5f64, 30.0, 365.0] {
        let ticks = (days * 86_400.0) as u64 * TIMESCALE as u64;
        let mut s = Segmenter::new(cfg());
        let mut out = Vec::new();
        s.push(SourceEvent::Format(info(3000)), &mut out).unwrap();
        // State after `days` at 1 s segments and 5 parts per segment.
        let segs = ticks / 90_000;
        s.part_end = ticks;
        s.next_msn = segs;
        s.global_part = segs * 5;
        s.mfhd_seq = u32::MAX - 3;
        s.rebase = true;
        out.clear();
        // The source's own dts is far past ours (an arrival clock started earlier): rebased.
        let src0 = ticks * 2 + 12_345;
        for n in 0..90u64 {
            s.push(SourceEvent::Frame(frame(n, src0 + n * 3000, n % 30 == 0)), &mut out).unwrap();
        }
        let msns: Vec<u64> = out.iter().filter_map(|o| if let Output::SegmentStart { msn, .. } = o { Some(*msn) } else { None }).collect();
        assert_eq!(msns, vec![segs, segs + 1, segs + 2], "{days} days");
        let ps = parts(&out);
        let mut tfdt = ticks;
        let mut seqs = Vec::new();
        for (i, p) in ps.iter().enumerate() {
            assert_eq!(p.global, segs * 5 + i as u64);
            let m = moof(p);
            assert_eq!(m.traf[0].tfdt.as_ref().unwrap().base_media_decode_time, tfdt, "{days} days part {i}");
            // tfdt must be written as version 1 (64-bit): full box version byte after the size/type.
            let tfdt_at = p.data.windows(4).position(|w| w == b"tfdt").unwrap();
            assert_eq!(p.data[tfdt_at + 4], 1, "tfdt version 1");
            tfdt += p.duration;
            seqs.push(m.mfhd.sequence_number);
        }
        assert!(tfdt > u32::MAX as u64, "past 32-bit media time");
        // mfhd: u32::MAX-2, u32::MAX-1, u32::MAX, then wraps to 1, 2, ... (never 0).
        assert_eq!(&seqs[..5], &[u32::MAX - 2, u32::MAX - 1, u32::MAX, 1, 2]);
        assert!(seqs.iter().all(|&q| q != 0));
    }
}

/// An encoder that sends one IDR and then only P frames: the segment is ended at
/// `max_segment` (10 s for a 1 s target), frames are dropped (counted) until the next IDR, which
/// starts a segment with EXT-X-DISCONTINUITY; no segment exceeds the maximum.
#[test]
fn no_idr_ends_the_segment_at_the_maximum_and_drops_until_the_next() {
    assert_eq!(max_segment(90_000), 10 * 90_000);
    assert_eq!(max_segment(6 * 90_000), 24 * 90_000);
    // 30 s of frames with an IDR only at 0 and at 20 s.
    let frames = (0..900u64).map(|n| (n * 3000, n == 0 || n == 600));
    let mut s = Segmenter::new(cfg());
    let mut out = Vec::new();
    s.push(SourceEvent::Format(info(3000)), &mut out).unwrap();
    for (n, (dts, idr)) in frames.enumerate() {
        s.push(SourceEvent::Frame(frame(n as u64, dts, idr)), &mut out).unwrap();
    }
    s.push(SourceEvent::End, &mut out).unwrap();
    let ends: Vec<u64> = out.iter().filter_map(|o| if let Output::SegmentEnd { duration, .. } = o { Some(*duration) } else { None }).collect();
    assert_eq!(ends, vec![10 * 90_000, 10 * 90_000], "10 s, then the 10 s from the IDR at 20 s");
    let overdue: Vec<_> = out.iter().filter(|o| matches!(o, Output::IdrOverdue { .. })).collect();
    assert_eq!(overdue.len(), 1, "one per overdue episode");
    let starts: Vec<bool> = out.iter().filter_map(|o| if let Output::SegmentStart { discontinuity, .. } = o { Some(*discontinuity) } else { None }).collect();
    assert_eq!(starts, vec![false, true]);
    assert_eq!(s.stats.idr_overdue_cuts, 1);
    assert_eq!(s.stats.frames_dropped_idr_overdue, 300, "frames 300..600 dropped");
    check_invariants(&out, s.part_target());
}

/// A gap longer than the segment target is dropped from the media timeline (tfdt stays
/// continuous) while capture time keeps it, so the segment where PDT jumps is marked
/// EXT-X-DISCONTINUITY: the segment the gap starts (at an IDR), or the next one (mid-GOP).
#[test]
fn gaps_over_the_target_mark_the_segment_where_pdt_jumps() {
    let starts = |frames: Vec<(u64, bool)>| -> Vec<bool> {
        let out = run(frames, 3000, cfg());
        check_invariants(&out, 18_000);
        out.iter().filter_map(|o| if let Output::SegmentStart { discontinuity, .. } = o { Some(*discontinuity) } else { None }).collect()
    };
    let gap = 3 * 90_000;
    // 3 s pause just before the IDR of frame 30.
    let at_idr = (0..90u64).map(|n| (n * 3000 + if n >= 30 { gap } else { 0 }, n % 30 == 0)).collect();
    assert_eq!(starts(at_idr), vec![false, true, false]);
    // 3 s pause before frame 40 (mid-GOP): the next segment (frame 60) is marked.
    let mid = (0..90u64).map(|n| (n * 3000 + if n >= 40 { gap } else { 0 }, n % 30 == 0)).collect();
    assert_eq!(starts(mid), vec![false, false, true]);
    // A gap under the target is absorbed: no discontinuity.
    let small = (0..90u64).map(|n| (n * 3000 + if n >= 40 { 30_000 } else { 0 }, n % 30 == 0)).collect();
    assert_eq!(starts(small), vec![false, false, false]);
}

/// After a year of uptime the live playlist still renders: MEDIA-SEQUENCE, part numbers and
/// PROGRAM-DATE-TIME carry the large values, and m3u8-rs parses it back.
#[test]
fn a_year_of_uptime_renders_a_valid_playlist() {
    use crate::hls::window::{Window, WindowConfig};
    let year = 365 * 86_400 * TIMESCALE as u64;
    let (mut w, _rx) = Window::new(WindowConfig { segments: 6, segment_target: 1.0 }, "run".into());
    let mut s = Segmenter::new(cfg());
    let mut out = Vec::new();
    s.push(SourceEvent::Format(info(3000)), &mut out).unwrap();
    w.apply(&mut out, s.next_global_part());
    let segs = year / 90_000;
    s.part_end = year;
    s.next_msn = segs;
    s.global_part = segs * 5;
    for n in 0..240u64 {
        s.push(SourceEvent::Frame(frame(n, year + n * 3000, n % 30 == 0)), &mut out).unwrap();
        w.apply(&mut out, s.next_global_part());
    }
    let snap = w.snapshot();
    let text = crate::hls::playlist::render_media(&snap, false).unwrap();
    assert!(text.contains(&format!("#EXT-X-MEDIA-SEQUENCE:{}", segs + 1)), "{text}");
    assert!(text.contains(&format!("-p{}.m4s", segs * 5 + 39)), "{text}");
    // frame()'s capture clock starts at 2027-01-15T08:00:00Z; a year of media time later:
    assert!(text.contains("#EXT-X-PROGRAM-DATE-TIME:2028-01-15T08:00:01.000Z"), "{text}");
    let p = match m3u8_rs::parse_playlist_res(text.as_bytes()) {
        Ok(m3u8_rs::Playlist::MediaPlaylist(p)) => p,
        other => panic!("{other:?}\n{text}"),
    };
    assert_eq!(p.media_sequence, segs + 1);
    assert_eq!(p.segments.len(), 6);
}
