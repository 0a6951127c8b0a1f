//! Size-limit tests: oversized NAL units and access units are dropped as they arrive, counted,
//! and parsing resumes at the next start code (decoding at the next IDR).

use super::tests::{aus, idrs, parse_chunks, tiny_stream, Item};
use super::*;

/// Byte offsets of the NAL units (after their start codes) and their types.
fn nal_starts(data: &[u8]) -> Vec<(usize, u8)> {
    let mut v = Vec::new();
    for i in 0..data.len().saturating_sub(3) {
        if data[i..i + 3] == [0, 0, 1] {
            v.push((i + 3, data[i + 3] & 0x1f));
        }
    }
    v
}

/// A NAL unit of `len` bytes after its start code with no zero byte inside (so no start code).
fn big_nal(header: u8, len: usize) -> Vec<u8> {
    let mut v = vec![0, 0, 0, 1, header, 0x88];
    v.resize(4 + len, 0x5a);
    v
}

fn discarded(reason: &'static str) -> u64 {
    crate::metrics::get().input_discarded_bytes.get_or_create(&crate::metrics::ReasonLabels { reason }).get()
}

#[test]
fn oversized_non_vcl_nal_is_dropped_and_the_stream_continues() {
    let data = tiny_stream();
    let whole = parse_chunks([&data[..]], Some(3000)).unwrap();
    // A 3 MiB filler-type NAL between two copies of the stream, limit 1 MiB, fed in 64 KiB reads.
    let mut input = data.clone();
    input.extend_from_slice(&big_nal(0x0c, 3 << 20));
    input.extend_from_slice(&data);
    let before = discarded("nal_too_large");
    let mut p = AuParser::with_limits(Some(3000), 1 << 20, 1 << 20);
    let mut n = 0;
    for c in input.chunks(64 * 1024) {
        p.push(c).unwrap();
        while let Some(i) = p.next_item() {
            n += matches!(i, ParsedItem::Au { .. }) as usize;
        }
    }
    p.flush().unwrap();
    while let Some(i) = p.next_item() {
        n += matches!(i, ParsedItem::Au { .. }) as usize;
    }
    assert_eq!(n, 2 * aus(&whole), "every picture of both copies");
    assert_eq!(p.oversized, 1);
    let d = discarded("nal_too_large") - before;
    assert!(((3 << 20) - 64 * 1024..=(3 << 20) + 64 * 1024).contains(&d), "counted to within a read: {d}");
}

#[test]
fn oversized_slice_drops_its_picture_and_decoding_resumes_at_the_next_idr() {
    let data = tiny_stream();
    let whole = parse_chunks([&data[..]], Some(3000)).unwrap();
    assert_eq!((aus(&whole), idrs(&whole)), (8, 2));
    // Replace nothing, insert: a 2 MiB P slice (first_mb_in_slice 0: header bits '1') right
    // before the first P picture. Pictures 1–3 then reference a lost picture: dropped until the
    // IDR of picture 4.
    let first_p = nal_starts(&data).into_iter().find(|&(_, t)| t == 1).unwrap().0 - 4;
    let mut input = data[..first_p].to_vec();
    input.extend_from_slice(&big_nal(0x41, 2 << 20));
    input.extend_from_slice(&data[first_p..]);
    let mut p = AuParser::with_limits(Some(3000), 1 << 20, 1 << 20);
    let items = parse_chunks_with(&mut p, input.chunks(50_000));
    let expected: Vec<&Item> = whole.iter().enumerate().filter(|(i, _)| !(2..=4).contains(i)).map(|(_, x)| x).collect();
    assert_eq!(items.iter().collect::<Vec<_>>(), expected, "format, picture 0, pictures 4..7");
    assert!(p.skipped_before_start >= 3);
}

#[test]
fn oversized_access_unit_is_dropped() {
    let data = tiny_stream();
    let whole = parse_chunks([&data[..]], Some(3000)).unwrap();
    // An AU limit smaller than the IDR pictures but larger than the P pictures: the IDRs go,
    // and with them everything (P pictures need their IDR).
    let Item::Au(idr_len, true, _) = whole[1] else { panic!() };
    let before = discarded("au_too_large");
    let mut p = AuParser::with_limits(Some(3000), MAX_NAL_BYTES, idr_len - 1);
    let items = parse_chunks_with(&mut p, [&data[..]]);
    assert_eq!(aus(&items), 0, "{items:?}");
    assert_eq!(p.oversized, 2, "both IDR pictures");
    assert!(discarded("au_too_large") > before);
}

/// 64 MiB after a start code without any further start code, at a 16 MiB limit: nothing is
/// kept, and the next start code is found again.
#[test]
fn a_start_code_followed_by_endless_bytes_is_bounded() {
    let data = tiny_stream();
    let mut p = AuParser::new(Some(3000));
    p.push(&data).unwrap();
    p.push(&[0, 0, 0, 1, 0x41, 0x88]).unwrap();
    let chunk = vec![0xffu8; 1 << 20];
    for _ in 0..64 {
        p.push(&chunk).unwrap();
    }
    assert_eq!(p.oversized, 1);
    p.push(&data).unwrap();
    p.flush().unwrap();
    let mut n = 0;
    while let Some(i) = p.next_item() {
        n += matches!(i, ParsedItem::Au { .. }) as usize;
    }
    // First copy: all 8 (the last one ends at the big NAL's start code); the big NAL is a new
    // picture and is dropped; second copy: from its IDR on, all 8.
    assert_eq!(n, 16);
}

fn parse_chunks_with<'a>(p: &mut AuParser, chunks: impl IntoIterator<Item = &'a [u8]>) -> Vec<Item> {
    let mut out = Vec::new();
    let mut drain = |p: &mut AuParser| {
        while let Some(i) = p.next_item() {
            out.push(match i {
                ParsedItem::Format(f) => Item::Format(f.width, f.height, f.codec_string(), f.frame_duration),
                ParsedItem::Au { data, idr } => Item::Au(data.len(), idr, super::tests::digest(&data)),
            });
        }
    };
    for c in chunks {
        p.push(c).unwrap();
        drain(p);
    }
    p.flush().unwrap();
    drain(p);
    out
}
