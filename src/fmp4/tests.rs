//! Box writer tests: parse the output back and check the CMAF rules of ll-hls.md §4.

use super::*;
use crate::testutil::info;
use mp4_atom::{Any, Decode};

#[test]
fn init_segment_structure() {
    let data = init_segment(&info(3000)).unwrap();
    let buf = &mut &data[..];
    let ftyp = match Any::decode(buf).unwrap() {
        Any::Ftyp(f) => f,
        other => panic!("ftyp first, got {other:?}"),
    };
    assert_eq!(ftyp.major_brand, b"iso6".into());
    let moov = match Any::decode(buf).unwrap() {
        Any::Moov(m) => m,
        other => panic!("moov second, got {other:?}"),
    };
    assert!(buf.is_empty(), "nothing after moov");
    assert_eq!(moov.mvhd.duration, 0);
    let trak = &moov.trak[0];
    assert_eq!(trak.tkhd.track_id, TRACK_ID);
    assert_eq!(trak.mdia.mdhd.timescale, TIMESCALE);
    let stbl = &trak.mdia.minf.stbl;
    assert!(stbl.stts.entries.is_empty());
    assert!(matches!(stbl.stsz.samples, mp4_atom::StszSamples::Identical { count: 0, .. } | mp4_atom::StszSamples::Different { .. }));
    let mvex = moov.mvex.as_ref().expect("mvex");
    assert_eq!(mvex.trex.len(), 1);
    match &stbl.stsd.codecs[0] {
        mp4_atom::Codec::Avc1(avc1) => {
            assert_eq!((avc1.visual.width, avc1.visual.height), (320, 240));
            assert_eq!(avc1.avcc.sequence_parameter_sets[0][..], info(3000).sps[..]);
            assert_eq!(avc1.avcc.length_size, 4);
        }
        other => panic!("avc1 expected, got {other:?}"),
    }
}

#[test]
fn fragment_offsets_flags_and_payload() {
    let s = |d: &[u8], sync| Sample { duration: 3000, data: Bytes::copy_from_slice(d), sync, cts: 0 };
    let samples = [s(&[0, 0, 0, 2, 0x65, 1], true), s(&[0, 0, 0, 1, 0x41], false), s(&[0, 0, 0, 1, 0x41], false)];
    let data = fragment(7, 123_456_789_012, &samples).unwrap();
    let buf = &mut &data[..];
    let moof = match Any::decode(buf).unwrap() {
        Any::Moof(m) => m,
        other => panic!("moof first, got {other:?}"),
    };
    let moof_len = data.len() - buf.len();
    assert_eq!(moof.mfhd.sequence_number, 7);
    assert_eq!(moof.traf.len(), 1);
    let traf = &moof.traf[0];
    assert!(traf.tfhd.default_base_is_moof && traf.tfhd.base_data_offset.is_none());
    assert_eq!(traf.tfdt.as_ref().unwrap().base_media_decode_time, 123_456_789_012);
    assert_eq!(traf.trun.len(), 1);
    let trun = &traf.trun[0];
    let off = trun.data_offset.unwrap() as usize;
    assert_eq!(off, moof_len + 8, "data offset points just past the mdat header");
    assert_eq!(&data[moof_len + 4..moof_len + 8], b"mdat");
    assert_eq!(&data[off..], &[0, 0, 0, 2, 0x65, 1, 0, 0, 0, 1, 0x41, 0, 0, 0, 1, 0x41][..]);
    let entries = match &trun.samples {
        mp4_atom::TrunSamples::Explicit(e) => e.clone(),
        _ => panic!("explicit"),
    };
    assert_eq!(entries.len(), 3);
    assert_eq!(entries[0].flags, Some(SYNC_FLAGS));
    assert_eq!(traf.tfhd.default_sample_flags, Some(NON_SYNC_FLAGS));
    // A sync sample after the first forces explicit flags on every sample.
    let data = fragment(8, 0, &[samples[1].clone(), samples[0].clone()]).unwrap();
    let moof = match Any::decode(&mut &data[..]).unwrap() {
        Any::Moof(m) => m,
        _ => unreachable!(),
    };
    let flags: Vec<Option<u32>> = match &moof.traf[0].trun[0].samples {
        mp4_atom::TrunSamples::Explicit(e) => e.iter().map(|s| s.flags).collect(),
        _ => panic!(),
    };
    assert_eq!(flags, vec![Some(NON_SYNC_FLAGS), Some(SYNC_FLAGS)]);
}

/// Child box types of a container body, in the order they are written.
fn children(mut body: &[u8]) -> Vec<String> {
    let mut kinds = Vec::new();
    while body.len() >= 8 {
        let size = u32::from_be_bytes(body[..4].try_into().unwrap()) as usize;
        assert!(size >= 8 && size <= body.len(), "box size {size} inconsistent");
        kinds.push(String::from_utf8_lossy(&body[4..8]).into_owned());
        body = &body[size..];
    }
    assert!(body.is_empty(), "trailing bytes after the last box");
    kinds
}

/// The body of the first child box of type `kind`.
fn child<'a>(mut body: &'a [u8], kind: &str) -> &'a [u8] {
    while body.len() >= 8 {
        let size = u32::from_be_bytes(body[..4].try_into().unwrap()) as usize;
        if &body[4..8] == kind.as_bytes() {
            return &body[8..size];
        }
        body = &body[size..];
    }
    panic!("no {kind} box")
}

/// ISO/IEC 14496-12 box order, checked on the written bytes by a walk independent of mp4-atom:
/// moov holds mvhd, trak, mvex; trak holds tkhd, mdia; mdia mdhd, hdlr, minf; minf vmhd, dinf, stbl.
#[test]
fn init_segment_box_order_follows_iso_14496_12() {
    let data = init_segment(&info(3000)).unwrap();
    assert_eq!(children(&data), ["ftyp", "moov"]);
    let moov = child(&data, "moov");
    assert_eq!(children(moov), ["mvhd", "trak", "mvex"]);
    let trak = child(moov, "trak");
    assert_eq!(children(trak), ["tkhd", "mdia"]);
    let mdia = child(trak, "mdia");
    assert_eq!(children(mdia), ["mdhd", "hdlr", "minf"]);
    let minf = child(mdia, "minf");
    assert_eq!(children(minf), ["vmhd", "dinf", "stbl"]);
    assert_eq!(children(child(minf, "stbl")), ["stsd", "stts", "stsc", "stsz", "stco"]);
    // mp4-atom (strict in tests) decodes it to the same structure it would have written.
    let moov = match Any::decode(&mut &data[children_len(&data, 0)..]).unwrap() {
        Any::Moov(m) => m,
        other => panic!("moov expected, got {other:?}"),
    };
    assert!(moov.trak[0].mdia.minf.vmhd.is_some() && moov.mvex.is_some());
}

/// Byte length of the first `n + 1` top-level boxes.
fn children_len(data: &[u8], n: usize) -> usize {
    let mut off = 0;
    for _ in 0..=n {
        off += u32::from_be_bytes(data[off..off + 4].try_into().unwrap()) as usize;
    }
    off
}
