//! Parser tests: real Pi captures and a tiny openh264 stream, fed with every chunking.

use super::*;
use crate::h264::avcc_nals;

fn fixture(name: &str) -> Vec<u8> {
    let dir = std::env::var("HLSD_FIXTURES")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/fixtures").to_string());
    std::fs::read(format!("{dir}/{name}")).unwrap_or_else(|e| panic!("fixture {name} in {dir}: {e}"))
}

/// A summary of parser output that is easy to compare: formats and (len, idr, first bytes).
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Item {
    Format(u32, u32, String, u32),
    Au(usize, bool, u64),
}

pub(super) fn digest(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf29ce484222325u64, |h, &x| (h ^ x as u64).wrapping_mul(0x100000001b3))
}

pub(super) fn parse_chunks<'a>(chunks: impl IntoIterator<Item = &'a [u8]>, fd: Option<u32>) -> Result<Vec<Item>, H264Error> {
    let mut p = AuParser::new(fd);
    let mut out = Vec::new();
    let mut drain = |p: &mut AuParser| {
        while let Some(i) = p.next_item() {
            out.push(match i {
                ParsedItem::Format(f) => Item::Format(f.width, f.height, f.codec_string(), f.frame_duration),
                ParsedItem::Au { data, idr } => Item::Au(data.len(), idr, digest(&data)),
            });
        }
    };
    for c in chunks {
        p.push(c)?;
        drain(&mut p);
    }
    p.flush()?;
    drain(&mut p);
    Ok(out)
}

pub(super) fn aus(items: &[Item]) -> usize {
    items.iter().filter(|i| matches!(i, Item::Au(..))).count()
}

pub(super) fn idrs(items: &[Item]) -> usize {
    items.iter().filter(|i| matches!(i, Item::Au(_, true, _))).count()
}

#[test]
fn pi_720p30_inline_capture() {
    let data = fixture("pi-720p30-inline.h264");
    let items = parse_chunks([&data[..]], None).unwrap();
    // SPS/PPS repeat before every IDR with the same bytes: one format only.
    assert_eq!(items[0], Item::Format(1280, 720, "avc1.640028".into(), 3000));
    assert_eq!(items.iter().filter(|i| matches!(i, Item::Format(..))).count(), 1);
    assert_eq!(aus(&items), 293);
    assert_eq!(idrs(&items), 5);
}

#[test]
fn pi_1080p25_capture_needs_framerate_and_parameter_sets_once_suffice() {
    let data = fixture("pi-1080p25-raspivid.h264");
    let err = parse_chunks([&data[..]], None).unwrap_err();
    assert_eq!(err, H264Error::NoFrameRate);
    assert!(err.to_string().contains("--framerate"));
    let items = parse_chunks([&data[..]], Some(3600)).unwrap();
    assert_eq!(items[0], Item::Format(1920, 1080, "avc1.640028".into(), 3600));
    assert_eq!(aus(&items), 116);
    assert_eq!(idrs(&items), 2);
}

#[test]
fn chunk_boundaries_do_not_matter_for_real_captures() {
    for (name, fd) in [("pi-720p30-inline.h264", None), ("pi-1080p25-raspivid.h264", Some(3600))] {
        let data = fixture(name);
        let whole = parse_chunks([&data[..]], fd).unwrap();
        for size in [3usize, 7, 188, 1000, 4096, 65536] {
            let got = parse_chunks(data.chunks(size), fd).unwrap();
            assert_eq!(got, whole, "{name} in chunks of {size}");
        }
        // Every split point of the parameter sets and the start of the first picture, on a
        // 24 KiB prefix (a truncated picture at the end is parsed the same either way).
        let head = &data[..24 * 1024];
        let whole_head = parse_chunks([head], fd).unwrap();
        assert_eq!(parse_chunks(head.chunks(1), fd).unwrap(), whole_head, "{name} byte by byte");
        for k in 0..2048 {
            let got = parse_chunks([&head[..k], &head[k..]], fd).unwrap();
            assert_eq!(got, whole_head, "{name} split at byte {k}");
        }
    }
}

/// A tiny stream (64x64, 8 frames, IDR every 4) from openh264, as Annex-B.
pub(super) fn tiny_stream() -> Vec<u8> {
    use openh264::encoder::{Encoder, EncoderConfig};
    use openh264::formats::YUVBuffer;
    use openh264::OpenH264API;
    let cfg = EncoderConfig::new();
    let mut enc = Encoder::with_api_config(OpenH264API::from_source(), cfg).unwrap();
    let mut out = Vec::new();
    for n in 0..8u8 {
        let mut yuv = vec![128u8; 64 * 64 * 3 / 2];
        for (i, v) in yuv.iter_mut().take(64 * 64).enumerate() {
            *v = (i as u8).wrapping_add(n.wrapping_mul(9));
        }
        if n % 4 == 0 {
            enc.force_intra_frame();
        }
        let buf = YUVBuffer::from_vec(yuv, 64, 64);
        enc.encode(&buf).unwrap().write_vec(&mut out);
    }
    out
}

#[test]
fn every_split_point_of_a_small_stream() {
    let data = tiny_stream();
    let whole = parse_chunks([&data[..]], Some(3000)).unwrap();
    assert_eq!(aus(&whole), 8);
    assert_eq!(idrs(&whole), 2);
    for k in 0..=data.len() {
        let got = parse_chunks([&data[..k], &data[k..]], Some(3000)).unwrap();
        assert_eq!(got, whole, "split at byte {k} of {}", data.len());
    }
    for k in (0..data.len()).step_by(7) {
        let m = (k + data.len()) / 2;
        let got = parse_chunks([&data[..k], &data[k..m], &data[m..]], Some(3000)).unwrap();
        assert_eq!(got, whole, "three-way split at {k},{m}");
    }
}

#[test]
fn flush_completes_a_frame_without_the_next_start_code() {
    let data = fixture("pi-720p30-inline.h264");
    let mut p = AuParser::new(None);
    // Find where the second picture starts: push exactly the first picture, then flush.
    let whole = parse_chunks([&data[..]], None).unwrap();
    let Item::Au(first_len, true, _) = whole[1] else { panic!("{:?}", whole[1]) };
    let mut pushed = 0;
    let mut got = None;
    for c in data.chunks(512) {
        p.push(c).unwrap();
        pushed += c.len();
        while let Some(i) = p.next_item() {
            if let ParsedItem::Au { data, .. } = i {
                got = Some(data);
            }
        }
        if got.is_some() {
            break;
        }
        if pushed > first_len + 64 {
            p.flush().unwrap();
        }
    }
    let au = got.expect("an access unit");
    assert_eq!(au.len(), first_len);
    assert!(avcc_nals(&au).all(|n| matches!(n[0] & 0x1f, 1 | 5)));
}

#[test]
fn garbage_and_truncation_never_panic() {
    // Random bytes: nothing comes out, no error until the no-SPS limit.
    let mut x = 0x1234_5678u32;
    let noise: Vec<u8> = (0..200_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect();
    let items = parse_chunks(noise.chunks(4096), Some(3000)).unwrap();
    assert_eq!(aus(&items), 0);
    // Beyond the limit, a clear error.
    let mut p = AuParser::new(Some(3000));
    let mut err = None;
    for _ in 0..60 {
        if let Err(e) = p.push(&noise) {
            err = Some(e);
            break;
        }
    }
    assert!(matches!(err, Some(H264Error::NoSps(_))), "{err:?}");
    // A capture cut at arbitrary points parses its complete pictures without panicking.
    let data = fixture("pi-720p30-inline.h264");
    for cut in [5, 40, 1001, 50_000, 700_001] {
        let _ = parse_chunks([&data[..cut]], None).unwrap();
    }
    // Pictures without any SPS/PPS are dropped, not muxed.
    let no_ps: Vec<u8> = strip_parameter_sets(&data);
    let items = parse_chunks([&no_ps[..]], None).unwrap();
    assert_eq!(aus(&items), 0);
}

fn strip_parameter_sets(data: &[u8]) -> Vec<u8> {
    // Split on 00 00 01 and drop NAL types 7 and 8.
    let mut out = Vec::new();
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= data.len() {
        if data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 {
            starts.push(i + 3);
            i += 3;
        } else {
            i += 1;
        }
    }
    for (j, &s) in starts.iter().enumerate() {
        let end = starts.get(j + 1).map(|&n| n - 3).unwrap_or(data.len());
        if s < data.len() && !matches!(data[s] & 0x1f, 7 | 8) {
            out.extend_from_slice(&[0, 0, 0, 1]);
            out.extend_from_slice(&data[s..end]);
        }
    }
    out
}
