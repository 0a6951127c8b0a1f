//! Harnesses for the H.264 input path: Annex-B bytes → access units ([`AuParser`]), and
//! SPS/PPS → [`TrackInfo`] → init segment, slice-header peeks, AVCC iteration.

use super::{header, Rng};
use crate::fmp4::init_segment;
use crate::h264::parser::{MAX_AU_BYTES, MAX_NAL_BYTES};
use crate::h264::{avcc_nals, nal_type, slice_header_peek, track_info, AuParser, H264Error, ParsedItem};
use crate::hls::segmenter::{Segmenter, SegmenterConfig};
use crate::hls::window::{Window, WindowConfig};
use crate::media::{Frame, SourceEvent, TrackInfo};
use std::time::{Duration, Instant, SystemTime};

/// What one pass of the parser over an input gave.
struct Pass {
    items: Vec<ParsedItem>,
    error: Option<H264Error>,
}

/// How a pass feeds the parser.
enum Feed {
    /// One `push` of everything, then `flush`.
    Whole,
    /// Pushes of pseudo-random sizes (1 byte up to ~4 KiB), then `flush`.
    Chunked(Rng),
    /// Like `Chunked`, with a `flush` after some chunks (a source whose input pauses mid-NAL),
    /// carrying on after errors.
    Flushing(Rng),
}

/// Size limits of a pass: largest NAL unit and access unit.
#[derive(Clone, Copy)]
struct Limits {
    nal: usize,
    au: usize,
}

fn pass(stream: &[u8], frame_duration: Option<u32>, limits: Limits, mut feed: Feed) -> Pass {
    let mut p = AuParser::with_limits(frame_duration, limits.nal, limits.au);
    let mut items = Vec::new();
    let mut error = None;
    let mut pos = 0;
    let drain = |p: &mut AuParser, items: &mut Vec<ParsedItem>| items.extend(std::iter::from_fn(|| p.next_item()));
    while pos < stream.len() {
        let n = match &mut feed {
            Feed::Whole => stream.len(),
            Feed::Chunked(r) | Feed::Flushing(r) => {
                let bits = r.below(13);
                1 + r.below(1 << bits) as usize
            }
        }
        .min(stream.len() - pos);
        let res = p.push(&stream[pos..pos + n]);
        pos += n;
        drain(&mut p, &mut items);
        if let Feed::Flushing(r) = &mut feed {
            if r.below(4) == 0 {
                let _ = p.flush();
                drain(&mut p, &mut items);
            }
            continue; // errors are not fatal here: the parser must stay usable
        }
        if let Err(e) = res {
            error = Some(e);
            break;
        }
    }
    if error.is_none() {
        error = p.flush().err();
        drain(&mut p, &mut items);
    }
    if let Some(f) = p.format() {
        assert!(f.width > 0 && f.height > 0);
    }
    let _ = p.end_error();
    Pass { items, error }
}

/// Checks what every output of the parser must satisfy, for any input.
fn check_items(items: &[ParsedItem], input_len: usize, limits: Limits) {
    let mut format_seen = false;
    let mut want_idr = false;
    let mut au_bytes = 0usize;
    for item in items {
        match item {
            ParsedItem::Format(info) => {
                check_info(info);
                format_seen = true;
                want_idr = true;
            }
            ParsedItem::Au { data, idr } => {
                assert!(format_seen, "an access unit before any format");
                assert!(!want_idr || *idr, "the first access unit of a format is not an IDR");
                want_idr = false;
                let mut covered = 0;
                let mut has_idr = false;
                for nal in avcc_nals(data) {
                    covered += 4 + nal.len();
                    assert!(!nal.is_empty() && nal[0] & 0x80 == 0, "empty NAL or forbidden bit in an AU");
                    assert!(nal.len() <= limits.nal, "{}-byte NAL unit passed the {}-byte limit", nal.len(), limits.nal);
                    let t = nal[0] & 0x1f;
                    assert!(t == nal_type::SLICE || t == nal_type::IDR, "non-VCL NAL type {t} in an AU");
                    has_idr |= t == nal_type::IDR;
                }
                assert_eq!(covered, data.len(), "AU is not whole AVCC");
                assert!(covered > 0, "empty AU");
                assert!(data.len() <= limits.au, "{}-byte AU passed the {}-byte limit", data.len(), limits.au);
                assert_eq!(has_idr, *idr, "idr flag disagrees with the NAL types");
                au_bytes += data.len();
            }
        }
    }
    // Each NAL unit (>= 1 byte) came after a start code of >= 3 bytes and gets a 4-byte length.
    assert!(au_bytes <= 2 * input_len + 8, "{au_bytes} bytes of AUs out of {input_len} bytes in");
}

fn check_info(info: &TrackInfo) {
    assert!(info.width > 0 && info.height > 0, "zero dimension");
    assert!(info.frame_duration > 0, "zero frame duration");
    assert_eq!(info.sps.first().map(|b| b & 0x1f), Some(nal_type::SPS));
    assert!(info.codec_string().starts_with("avc1.") && info.codec_string().len() == 11);
}

fn same_item(a: &ParsedItem, b: &ParsedItem) -> bool {
    match (a, b) {
        (ParsedItem::Format(x), ParsedItem::Format(y)) => x == y,
        (ParsedItem::Au { data: d1, idr: i1 }, ParsedItem::Au { data: d2, idr: i2 }) => d1 == d2 && i1 == i2,
        _ => false,
    }
}

/// Annex-B → access units. Input: 4 header bytes (bit 0 of byte 0: a `--framerate` override;
/// bit 1: small size limits from bytes 1 and 2, so the drop paths run on small inputs; bytes
/// 0..4: the chunking seed), then the byte stream.
///
/// Properties: no panic; every AU is whole AVCC of slice NAL units with a truthful IDR flag,
/// within the size limits,
/// preceded by a format and, after each format, starting with an IDR; output bytes bounded by
/// input bytes; the same items whatever the chunking of the same bytes (up to the first error,
/// where the longer output extends the shorter); parser usable after flushes mid-NAL and errors;
/// the segmenter and window accept what the parser gives.
pub fn au_parser(data: &[u8]) {
    let (h, stream) = header::<4>(data);
    let fd = (h[0] & 1 == 1).then_some(3000);
    let seed = u64::from(u32::from_le_bytes(h));
    // (at least 64 bytes: a dropped NAL's type and first_mb come from its first 16 bytes)
    let limits = if h[0] & 2 == 2 {
        Limits { nal: 64 + usize::from(h[1]) * 16, au: 64 + usize::from(h[2]) * 64 }
    } else {
        Limits { nal: MAX_NAL_BYTES, au: MAX_AU_BYTES }
    };
    let whole = pass(stream, fd, limits, Feed::Whole);
    check_items(&whole.items, stream.len(), limits);
    let chunked = pass(stream, fd, limits, Feed::Chunked(Rng::new(seed)));
    check_items(&chunked.items, stream.len(), limits);
    if whole.error.is_none() && chunked.error.is_none() {
        assert_eq!(whole.items.len(), chunked.items.len(), "chunking changed the number of items");
    } else {
        assert!(
            whole.error.is_some() && chunked.error.is_some(),
            "chunking changed whether the input fails: {:?} vs {:?}",
            whole.error,
            chunked.error
        );
    }
    for (i, (a, b)) in whole.items.iter().zip(&chunked.items).enumerate() {
        assert!(same_item(a, b), "item {i} differs between whole and chunked input: {a:?} vs {b:?}");
    }
    let flushing = pass(stream, fd, limits, Feed::Flushing(Rng::new(seed.rotate_left(17))));
    check_items(&flushing.items, stream.len(), limits);
    segment(&whole.items);
}

/// Feeds parsed items through the segmenter and window (30 fps timestamps) and renders the
/// playlist: garbage that the parser lets through must not break the muxer.
fn segment(items: &[ParsedItem]) {
    let (mut w, _rx) = Window::new(WindowConfig { segments: 6, segment_target: 1.0 }, "fz".into());
    let mut s = Segmenter::new(SegmenterConfig { segment_target: 90_000, part_target: 18_000 });
    let mut out = Vec::new();
    let (mut dts, mut fd) = (0u64, 3000u64);
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    for item in items {
        let ev = match item {
            ParsedItem::Format(info) => {
                fd = u64::from(info.frame_duration);
                SourceEvent::Format(info.clone())
            }
            ParsedItem::Au { data, idr } => {
                dts += fd;
                let capture = t0 + Duration::from_micros(dts * 100 / 9);
                SourceEvent::Frame(Frame { dts, cts: 0, capture, data: data.clone(), idr: *idr, arrived: Instant::now() })
            }
        };
        if s.push(ev, &mut out).is_err() {
            return;
        }
        w.apply(&mut out, s.next_global_part());
    }
    let _ = s.push(SourceEvent::End, &mut out);
    w.apply(&mut out, s.next_global_part());
    let snap = w.snapshot();
    let _ = crate::hls::playlist::render_media(&snap, false);
    let _ = crate::hls::playlist::render_media(&snap, true);
    let _ = crate::hls::playlist::render_multivariant(&snap);
}

/// SPS/PPS handling. Input: byte 0 = options (bit 0: frame-duration override; bit 1: take the
/// SPS as given instead of prefixing the SPS NAL header 0x67; bits 2..: where the PPS starts),
/// then the SPS (and PPS) bytes.
///
/// Properties: no panic; an accepted SPS gives nonzero dimensions and frame duration, an init
/// segment that parses back (mp4-atom) with those dimensions, and a well-formed codec string.
/// Also peeks the bytes as slice headers and iterates them as AVCC.
pub fn sps(data: &[u8]) {
    let (h, rest) = header::<1>(data);
    let fd = (h[0] & 1 == 1).then_some(3600);
    let mut sps = if h[0] & 2 == 0 { vec![0x67] } else { Vec::new() };
    let cut = (usize::from(h[0] >> 2) * rest.len() / 64).min(rest.len());
    sps.extend_from_slice(&rest[..rest.len() - cut]);
    let pps: Vec<u8> = std::iter::once(0x68).chain(rest[rest.len() - cut..].iter().copied()).collect();
    if let Ok(info) = track_info(&sps, &pps, fd) {
        check_info(&info);
        check_init(&info);
    }
    for prefix in [nal_type::IDR | 0x60, nal_type::SLICE | 0x40] {
        let nal: Vec<u8> = std::iter::once(prefix).chain(rest.iter().copied()).collect();
        if let Some((_, slice_type)) = slice_header_peek(&nal) {
            assert!(slice_type < 5);
        }
    }
    let total: usize = avcc_nals(rest).map(|n| n.len() + 4).sum();
    assert!(total <= rest.len());
}

/// The init segment of an accepted SPS must be writable and read back with its dimensions
/// (an SPS the muxer cannot represent must be refused by `track_info`, not written wrong).
fn check_init(info: &TrackInfo) {
    use mp4_atom::{Any, Decode};
    let data = init_segment(info).unwrap_or_else(|e| panic!("accepted SPS but no init segment: {e}"));
    let buf = &mut &data[..];
    assert!(matches!(Any::decode(buf), Ok(Any::Ftyp(_))), "init does not start with ftyp");
    let moov = match Any::decode(buf) {
        Ok(Any::Moov(m)) => m,
        other => panic!("init has no moov: {other:?}"),
    };
    let codec = &moov.trak[0].mdia.minf.stbl.stsd.codecs[0];
    match codec {
        mp4_atom::Codec::Avc1(avc1) => assert_eq!(
            (u32::from(avc1.visual.width), u32::from(avc1.visual.height)),
            (info.width, info.height),
            "init segment dimensions differ from the SPS"
        ),
        other => panic!("avc1 expected, got {other:?}"),
    }
}
