//! H.264 helpers: SPS → [`TrackInfo`], slice-header peeks, AVCC framing.
//!
//! Bytes come from sources as Annex-B; [`parser::AuParser`] (a push parser over h264-reader's
//! `AnnexBReader`) turns them into access units; this module holds the small pure helpers it and
//! the muxer share. SPS parsing itself is h264-reader's.

mod nal_sink;
pub mod parser;

use crate::media::{TrackInfo, TIMESCALE};
use bytes::{BufMut, Bytes, BytesMut};
use h264_reader::nal::sps::SeqParameterSet;
use h264_reader::rbsp::{BitRead, BitReader, ByteReader};

pub use parser::{AuParser, ParsedItem};

/// Errors from H.264 parsing. Messages say what was wrong with the input and what to do.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum H264Error {
    #[error("invalid SPS ({0}); the input is not a valid H.264 stream")]
    BadSps(String),
    #[error("SPS gives no frame rate (no VUI timing info); pass --framerate (e.g. --framerate 25)")]
    NoFrameRate,
    #[error(
        "the stream contains B-frames, which hlsd does not support; re-encode without them \
         (ffmpeg/x264: -bf 0 or -tune zerolatency; rpicam-vid never emits them)"
    )]
    BFrames,
    #[error(
        "no H.264 parameter sets (SPS/PPS) in the first {0} bytes: is this an Annex-B H.264 \
         elementary stream? (ffmpeg: -c:v libx264 -f h264; rpicam-vid: --codec h264 --inline)"
    )]
    NoSps(u64),
    #[error("unsupported H.264 stream: {0}")]
    Unsupported(String),
}

/// NAL unit types used here (ITU-T H.264 Table 7-1).
pub mod nal_type {
    pub const SLICE: u8 = 1;
    pub const IDR: u8 = 5;
    pub const SEI: u8 = 6;
    pub const SPS: u8 = 7;
    pub const PPS: u8 = 8;
    pub const AUD: u8 = 9;
    pub const END_SEQ: u8 = 10;
    pub const END_STREAM: u8 = 11;
}

/// Type of a NAL unit from its first byte.
pub fn nal_unit_type(nal: &[u8]) -> u8 {
    nal.first().map(|b| b & 0x1f).unwrap_or(0)
}

/// Parses an SPS (with its NAL header) into the muxer's [`TrackInfo`].
///
/// `frame_duration` overrides the VUI frame rate (in [`TIMESCALE`] ticks); without it the VUI
/// timing must be present.
pub fn track_info(sps: &[u8], pps: &[u8], frame_duration: Option<u32>) -> Result<TrackInfo, H264Error> {
    if sps.len() < 4 || nal_unit_type(sps) != nal_type::SPS {
        return Err(H264Error::BadSps("too short or not an SPS NAL unit".into()));
    }
    let parsed = SeqParameterSet::from_bits(BitReader::new(ByteReader::skipping_h264_header(sps)))
        .map_err(|e| H264Error::BadSps(format!("{e:?}")))?;
    let (width, height) = parsed
        .pixel_dimensions()
        .map_err(|e| H264Error::BadSps(format!("{e:?}")))?;
    // The init segment stores them in 16 bits; H.264 level 6.2 tops out near 16888 wide. Zero:
    // cropping that removes the whole picture.
    if width == 0 || height == 0 || width > MAX_DIMENSION || height > MAX_DIMENSION {
        return Err(H264Error::Unsupported(format!("{width}x{height} pictures (at most {MAX_DIMENSION} each way)")));
    }
    if parsed.chroma_info.chroma_format != h264_reader::nal::sps::ChromaFormat::YUV420 {
        return Err(H264Error::Unsupported(format!(
            "chroma format {:?}; browsers play 4:2:0 only (ffmpeg: -pix_fmt yuv420p)",
            parsed.chroma_info.chroma_format
        )));
    }
    let frame_duration = match frame_duration {
        Some(d) => d,
        None => vui_frame_duration(&parsed).ok_or(H264Error::NoFrameRate)?,
    };
    Ok(TrackInfo {
        sps: Bytes::copy_from_slice(sps),
        pps: Bytes::copy_from_slice(pps),
        width,
        height,
        profile_idc: sps[1],
        constraint_flags: sps[2],
        level_idc: sps[3],
        frame_duration,
    })
}

/// Largest picture width or height accepted from an SPS (and neither may be 0).
pub const MAX_DIMENSION: u32 = 16_384;

/// Nominal frame duration from the VUI timing info, if it is present and plausible (1–240 fps).
fn vui_frame_duration(sps: &SeqParameterSet) -> Option<u32> {
    let fps = sps.fps()?;
    if !(1.0..=240.0).contains(&fps) {
        return None;
    }
    Some(frame_duration_for_fps(fps))
}

/// Frame duration in ticks for a frame rate (rounded to the nearest tick).
pub fn frame_duration_for_fps(fps: f64) -> u32 {
    (TIMESCALE as f64 / fps).round().max(1.0) as u32
}

/// Peeks a slice NAL's header: `(first_mb_in_slice, slice_type % 5)`.
/// Returns `None` when the header cannot be read (truncated or corrupt NAL).
pub fn slice_header_peek(nal: &[u8]) -> Option<(u32, u32)> {
    let mut r = BitReader::new(ByteReader::skipping_h264_header(nal));
    let first_mb = r.read_ue("first_mb_in_slice").ok()?;
    let slice_type = r.read_ue("slice_type").ok()?;
    Some((first_mb, slice_type % 5))
}

/// `slice_type % 5` of B slices.
pub const SLICE_TYPE_B: u32 = 1;

/// Appends NAL units in AVCC form (4-byte big-endian length prefix each).
pub fn to_avcc<'a>(nals: impl IntoIterator<Item = &'a [u8]>) -> Bytes {
    let nals: Vec<&[u8]> = nals.into_iter().collect();
    let mut out = BytesMut::with_capacity(nals.iter().map(|n| n.len() + 4).sum());
    for n in nals {
        out.put_u32(n.len() as u32);
        out.put_slice(n);
    }
    out.freeze()
}

/// Iterates the NAL units of an AVCC buffer (stops at the first inconsistent length).
pub fn avcc_nals(mut data: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        if data.len() < 4 {
            return None;
        }
        let len = u32::from_be_bytes([data[0], data[1], data[2], data[3]]) as usize;
        if data.len() < 4 + len {
            return None;
        }
        let nal = &data[4..4 + len];
        data = &data[4 + len..];
        Some(nal)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first SPS and PPS of `pi-720p30-inline.h264` (a real Pi capture; ffprobe reports
    /// 1280x720, High, level 4.0, 30 fps), written down so that this test needs no file.
    const PI_720P_SPS: &str = "27640028ac2b402802dd08000003000800000301e7250001312c0002faf37bdc03c489a8";
    const PI_720P_PPS: &str = "28ee025cb0";

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    #[test]
    fn codec_string_and_avcc_round_trip() {
        let info = track_info(&unhex(PI_720P_SPS), &unhex(PI_720P_PPS), None).unwrap();
        assert_eq!(info.codec_string(), "avc1.640028");
        assert_eq!((info.width, info.height, info.frame_duration), (1280, 720, 3000), "VUI timing: 30 fps");
        assert_eq!((info.profile_idc, info.constraint_flags, info.level_idc), (0x64, 0x00, 0x28));
        assert_eq!(&info.pps[..], &unhex(PI_720P_PPS)[..]);
        let data = to_avcc([&[0x65u8, 1, 2][..], &[0x41u8, 9][..]]);
        let nals: Vec<&[u8]> = avcc_nals(&data).collect();
        assert_eq!(nals, vec![&[0x65u8, 1, 2][..], &[0x41u8, 9][..]]);
        assert_eq!(frame_duration_for_fps(30.0), 3000);
        assert_eq!(frame_duration_for_fps(29.97), 3003);
        assert_eq!(frame_duration_for_fps(25.0), 3600);
    }

    #[test]
    fn bad_sps_is_an_error_not_a_panic() {
        assert!(matches!(track_info(&[0x67, 0xff], &[0x68], None), Err(H264Error::BadSps(_))));
        assert!(track_info(&[0x67, 0xff, 0xff, 0xff, 0xff, 0xff], &[0x68], None).is_err());
        assert!(slice_header_peek(&[0x65]).is_none());
        // Found by fuzzing: 32x65536 was accepted and written as 32x0 into the init segment.
        assert!(matches!(track_info(&[0x67, 0x00, 0x64, 0xfd, 0xfd, 0x00, 0x08, 0x00, 0x64], &[0x68], Some(3000)), Err(H264Error::Unsupported(_))));
        // ... and one cropped to nothing.
        assert!(matches!(track_info(&[0x67, 0x39, 0x39, 0x39, 0x39, 0x35, 0x36, 0xe4, 0x32], &[0x68], Some(3000)), Err(H264Error::Unsupported(_))));
        // first_mb_in_slice = 0 (bit '1'), slice_type = 7 (I, '0001000') => 2
        assert_eq!(slice_header_peek(&[0x65, 0b1000_1000, 0]), Some((0, 2)));
    }
}
