//! Box writer tests: parse the output back and check the CMAF rules of ll-hls.md §4.

use super::*;
use crate::hls::segmenter::tests::info;
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
    let s = |d: &[u8], sync| Sample { duration: 3000, data: Bytes::copy_from_slice(d), sync };
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
