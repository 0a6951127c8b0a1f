//! fMP4/CMAF muxing: the init segment (ftyp+moov) and fragments (moof+mdat).
//!
//! Pure functions: `hls::segmenter` hands in a [`TrackInfo`] or a run of samples and gets bytes
//! back, which the live window serves as parts and segments. Box structures are the `mp4-atom`
//! crate's (see README: chosen over `mp4` because it encodes fragmented boxes — moof, traf, trun,
//! tfdt — and avcC with its High-profile extension, which `mp4` 0.14 cannot write).
//! Rules followed are those of `shared/docs/ll-hls.md` §4: one traf and one trun per moof,
//! `default-base-is-moof`, tfdt version 1, sync flags 0x02000000 / non-sync 0x01010000. With
//! B-frames (MPEG-TS input) samples are in decode order and trun carries composition offsets.

use crate::media::{TrackInfo, TIMESCALE};
use bytes::{BufMut, Bytes, BytesMut};
use mp4_atom::{
    Avc1, Avcc, Dinf, Dref, Encode, Ftyp, Hdlr, Matrix, Mdhd, Mfhd, Moof, Mvex,
    Mvhd, Stbl, Stco, Stsc, Stsd, Stsz, Stts, Tfdt, Tfhd, Tkhd, Traf, Trex, Trun, TrunEntry, TrunSamples, Url, Visual, Vmhd,
};

/// The one track's id.
pub const TRACK_ID: u32 = 1;
/// Sample flags of a sync sample (depends_on = 2: does not depend on others).
pub const SYNC_FLAGS: u32 = 0x0200_0000;
/// Sample flags of a non-sync sample (depends_on = 1, is_non_sync).
pub const NON_SYNC_FLAGS: u32 = 0x0101_0000;

/// Errors from box encoding; these indicate a bug or absurd input sizes.
#[derive(Debug, thiserror::Error)]
pub enum MuxError {
    #[error("fMP4 box encoding failed: {0}")]
    Encode(String),
}

fn enc(e: mp4_atom::Error) -> MuxError {
    MuxError::Encode(e.to_string())
}

/// One sample (an access unit) of a fragment.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Duration in [`TIMESCALE`] ticks.
    pub duration: u32,
    /// AVCC data (length-prefixed NAL units).
    pub data: Bytes,
    pub sync: bool,
    /// Composition offset (PTS − DTS, ticks); non-zero only with B-frames (MPEG-TS input).
    pub cts: i32,
}

/// Writes the init segment for a track: `ftyp` then `moov` (mvhd, trak, mvex), no samples.
pub fn init_segment(info: &TrackInfo) -> Result<Bytes, MuxError> {
    let ftyp = Ftyp {
        major_brand: b"iso6".into(),
        minor_version: 0,
        compatible_brands: vec![b"iso6".into(), b"cmfc".into(), b"mp41".into(), b"avc1".into()],
    };
    let avcc = Avcc::new(&info.sps, &info.pps).map_err(enc)?;
    let avc1 = Avc1 {
        visual: Visual {
            data_reference_index: 1,
            width: info.width as u16,
            height: info.height as u16,
            horizresolution: 72.into(),
            vertresolution: 72.into(),
            frame_count: 1,
            compressor: "hlsd".into(),
            depth: 24,
        },
        avcc,
        ..Default::default()
    };
    let mvhd = Mvhd {
        timescale: 1000,
        rate: 1.into(),
        volume: 1.into(),
        matrix: Matrix::default(),
        next_track_id: TRACK_ID + 1,
        ..Default::default()
    };
    let tkhd = Tkhd {
        track_id: TRACK_ID,
        enabled: true,
        in_movie: true,
        matrix: Matrix::default(),
        width: (info.width as u16).into(),
        height: (info.height as u16).into(),
        ..Default::default()
    };
    let mdhd = Mdhd { timescale: TIMESCALE, language: "und".into(), ..Default::default() };
    let hdlr = Hdlr { handler: b"vide".into(), name: "hlsd video".into() };
    let dinf = Dinf { dref: Dref { entries: vec![Url::default().into()] } };
    let stbl = Stbl {
        stsd: Stsd { codecs: vec![avc1.into()] },
        stts: Stts::default(),
        stsc: Stsc::default(),
        stsz: Stsz::default(),
        stco: Some(Stco::default()),
        ..Default::default()
    };
    let mvex = Mvex {
        mehd: None,
        trex: vec![Trex {
            track_id: TRACK_ID,
            default_sample_description_index: 1,
            default_sample_duration: 0,
            default_sample_size: 0,
            default_sample_flags: NON_SYNC_FLAGS,
        }],
    };
    let mut buf = Vec::with_capacity(1024);
    ftyp.encode(&mut buf).map_err(enc)?;
    // mp4-atom's container encoders write required children before optional ones (moov: mvhd,
    // mvex, trak; minf: dinf, stbl, vmhd), which strict parsers reject. The containers are
    // written here in ISO/IEC 14496-12 order instead; the leaf boxes stay mp4-atom's.
    container(&mut buf, b"moov", |b| {
        mvhd.encode(b).map_err(enc)?;
        container(b, b"trak", |b| {
            tkhd.encode(b).map_err(enc)?;
            container(b, b"mdia", |b| {
                mdhd.encode(b).map_err(enc)?;
                hdlr.encode(b).map_err(enc)?;
                container(b, b"minf", |b| {
                    Vmhd::default().encode(b).map_err(enc)?;
                    dinf.encode(b).map_err(enc)?;
                    stbl.encode(b).map_err(enc)
                })
            })
        })?;
        mvex.encode(b).map_err(enc)
    })?;
    Ok(Bytes::from(buf))
}

/// Writes a plain container box: its children, in the order `body` writes them, behind a
/// 32-bit size and the four-character `kind`.
fn container(
    buf: &mut Vec<u8>,
    kind: &[u8; 4],
    body: impl FnOnce(&mut Vec<u8>) -> Result<(), MuxError>,
) -> Result<(), MuxError> {
    let start = buf.len();
    buf.extend_from_slice(&[0, 0, 0, 0]);
    buf.extend_from_slice(kind);
    body(buf)?;
    let size = u32::try_from(buf.len() - start).map_err(|_| MuxError::Encode("box over 4 GiB".into()))?;
    buf[start..start + 4].copy_from_slice(&size.to_be_bytes());
    Ok(())
}

/// Writes one fragment (`moof` + `mdat`) holding `samples`, starting at `base_dts`.
///
/// `sequence` is the mfhd sequence number (strictly increasing across the run).
pub fn fragment(sequence: u32, base_dts: u64, samples: &[Sample]) -> Result<Bytes, MuxError> {
    let explicit_flags = samples.iter().skip(1).any(|s| s.sync);
    // Composition offsets only when some sample has one (trun version 1, signed, when any is
    // negative; mp4-atom picks the version), so B-frame-free output keeps its bytes.
    let with_cts = samples.iter().any(|s| s.cts != 0);
    let entries = samples
        .iter()
        .enumerate()
        .map(|(i, s)| TrunEntry {
            duration: Some(s.duration),
            size: Some(s.data.len() as u32),
            flags: if i == 0 || explicit_flags {
                Some(if s.sync { SYNC_FLAGS } else { NON_SYNC_FLAGS })
            } else {
                None
            },
            cts: with_cts.then_some(i64::from(s.cts)),
        })
        .collect();
    let mut moof = Moof {
        mfhd: Mfhd {
            sequence_number: sequence,
        },
        traf: vec![Traf {
            tfhd: Tfhd {
                track_id: TRACK_ID,
                default_sample_flags: Some(NON_SYNC_FLAGS),
                default_base_is_moof: true,
                ..Default::default()
            },
            tfdt: Some(Tfdt {
                base_media_decode_time: base_dts,
            }),
            trun: vec![Trun {
                data_offset: Some(0),
                samples: TrunSamples::Explicit(entries),
            }],
            ..Default::default()
        }],
    };
    // The data offset counts from the start of moof to the first sample byte in mdat; moof's size
    // does not depend on the offset's value, so encode once to measure.
    let mut head = Vec::with_capacity(256);
    moof.encode(&mut head).map_err(enc)?;
    moof.traf[0].trun[0].data_offset = Some(head.len() as i32 + 8);
    head.clear();
    moof.encode(&mut head).map_err(enc)?;

    let payload: usize = samples.iter().map(|s| s.data.len()).sum();
    let mut out = BytesMut::with_capacity(head.len() + 8 + payload);
    out.put_slice(&head);
    out.put_u32((payload + 8) as u32);
    out.put_slice(b"mdat");
    for s in samples {
        out.put_slice(&s.data);
    }
    Ok(out.freeze())
}

#[cfg(test)]
mod tests;
