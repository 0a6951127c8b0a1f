//! Poster image: one keyframe decoded and encoded as JPEG, for `/snapshot.jpg`.
//!
//! Input is what the fMP4 path already holds: the SPS and PPS (as in avcC) and one IDR access
//! unit as stored in `mdat` (AVCC: each NAL unit preceded by a 4-byte big-endian length, the
//! `lengthSizeMinusOne = 3` that our avcC declares). This module rebuilds an Annex-B buffer
//! (start code + SPS, PPS, then the IDR's NAL units), decodes it with openh264, converts the
//! I420 picture to RGB and encodes a baseline JPEG.
//!
//! It is CPU work of tens of milliseconds at 1080p: the caller runs it off the live path
//! (`spawn_blocking`), at most once per keyframe and only when a client asks for the image.
//! Each call uses a fresh decoder, so a call depends on nothing but its arguments.

use openh264::decoder::Decoder;
use openh264::formats::YUVSource;

/// Annex-B start code put before each NAL unit.
const START_CODE: [u8; 4] = [0, 0, 0, 1];
/// Bytes of the NAL length prefix in the AVCC samples hlsd writes (avcC lengthSizeMinusOne = 3).
const AVCC_LENGTH_SIZE: usize = 4;

/// Why no JPEG could be made from a keyframe.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PosterError {
    #[error("poster: the {0} is empty")]
    EmptyParameterSet(&'static str),
    #[error("poster: the keyframe sample holds no NAL unit")]
    EmptyKeyframe,
    #[error("poster: keyframe sample is not AVCC: NAL length {len} at offset {offset} overruns its {total} bytes")]
    BadAvccLength {
        offset: usize,
        len: usize,
        total: usize,
    },
    #[error("poster: openh264 decoder could not be created: {0}")]
    DecoderInit(String),
    #[error("poster: openh264 could not decode the keyframe ({annexb_len} bytes of Annex B): {message}")]
    Decode { annexb_len: usize, message: String },
    #[error(
        "poster: openh264 returned no picture for the keyframe ({annexb_len} bytes of Annex B)"
    )]
    NoPicture { annexb_len: usize },
    #[error(
        "poster: decoded picture of {width}x{height} cannot be a JPEG (1 to 65535 pixels a side)"
    )]
    BadDimensions { width: usize, height: usize },
    #[error("poster: JPEG encoding of the {width}x{height} picture failed: {message}")]
    Jpeg {
        width: usize,
        height: usize,
        message: String,
    },
}

/// Decodes the keyframe `idr_avcc` (4-byte length-prefixed NAL units) with its `sps` and `pps`
/// (bare NAL units, no start code or length) and returns a JPEG of `quality` (1..=100, clamped).
pub fn encode_jpeg(
    sps: &[u8],
    pps: &[u8],
    idr_avcc: &[u8],
    quality: u8,
) -> Result<Vec<u8>, PosterError> {
    let annexb = to_annexb(sps, pps, idr_avcc)?;
    let (rgb, width, height) = decode_rgb(&annexb)?;
    let (w, h) = match (u16::try_from(width), u16::try_from(height)) {
        (Ok(w), Ok(h)) if w > 0 && h > 0 => (w, h),
        _ => return Err(PosterError::BadDimensions { width, height }),
    };
    let mut jpeg = Vec::with_capacity(rgb.len() / 10);
    jpeg_encoder::Encoder::new(&mut jpeg, quality.clamp(1, 100))
        .encode(&rgb, w, h, jpeg_encoder::ColorType::Rgb)
        .map_err(|e| PosterError::Jpeg {
            width,
            height,
            message: e.to_string(),
        })?;
    Ok(jpeg)
}

/// SPS, PPS and the sample's NAL units, each behind a 4-byte start code.
fn to_annexb(sps: &[u8], pps: &[u8], idr_avcc: &[u8]) -> Result<Vec<u8>, PosterError> {
    if sps.is_empty() {
        return Err(PosterError::EmptyParameterSet("SPS"));
    }
    if pps.is_empty() {
        return Err(PosterError::EmptyParameterSet("PPS"));
    }
    let mut out = Vec::with_capacity(sps.len() + pps.len() + idr_avcc.len() + 3 * START_CODE.len());
    for nal in [sps, pps] {
        out.extend_from_slice(&START_CODE);
        out.extend_from_slice(nal);
    }
    let mut offset = 0;
    let mut nals = 0;
    while offset < idr_avcc.len() {
        let overrun = |len| PosterError::BadAvccLength {
            offset,
            len,
            total: idr_avcc.len(),
        };
        let Some(prefix) = idr_avcc.get(offset..offset + AVCC_LENGTH_SIZE) else {
            return Err(overrun(AVCC_LENGTH_SIZE));
        };
        let len = u32::from_be_bytes(prefix.try_into().expect("4-byte slice")) as usize;
        let start = offset + AVCC_LENGTH_SIZE;
        let Some(nal) = start
            .checked_add(len)
            .and_then(|end| idr_avcc.get(start..end))
        else {
            return Err(overrun(len));
        };
        if !nal.is_empty() {
            out.extend_from_slice(&START_CODE);
            out.extend_from_slice(nal);
            nals += 1;
        }
        offset = start + len;
    }
    if nals == 0 {
        return Err(PosterError::EmptyKeyframe);
    }
    Ok(out)
}

/// Decodes one Annex-B keyframe to packed RGB; returns it with width and height.
fn decode_rgb(annexb: &[u8]) -> Result<(Vec<u8>, usize, usize), PosterError> {
    let annexb_len = annexb.len();
    let mut decoder = Decoder::new().map_err(|e| PosterError::DecoderInit(e.to_string()))?;
    let decode_error = |e: openh264::Error| PosterError::Decode {
        annexb_len,
        message: e.to_string(),
    };
    if let Some(picture) = decoder.decode(annexb).map_err(decode_error)? {
        return Ok(to_rgb(&picture));
    }
    // The picture may still sit in the decoder's reorder buffer.
    let pictures = decoder.flush_remaining().map_err(decode_error)?;
    pictures
        .last()
        .map(|p| to_rgb(p))
        .ok_or(PosterError::NoPicture { annexb_len })
}

fn to_rgb(picture: &openh264::decoder::DecodedYUV<'_>) -> (Vec<u8>, usize, usize) {
    let (width, height) = picture.dimensions();
    let mut rgb = vec![0; width * height * 3];
    picture.write_rgb8(&mut rgb);
    (rgb, width, height)
}

#[cfg(test)]
mod tests {
    use super::*;
    use openh264::encoder::Encoder;
    use openh264::formats::YUVBuffer;

    /// Splits an Annex-B stream into NAL units (3- or 4-byte start codes).
    fn annexb_nals(stream: &[u8]) -> Vec<&[u8]> {
        let mut starts = Vec::new();
        let mut i = 0;
        while i + 3 <= stream.len() {
            if stream[i..i + 3] == [0, 0, 1] {
                starts.push(i + 3);
                i += 3;
            } else {
                i += 1;
            }
        }
        starts
            .iter()
            .enumerate()
            .map(|(k, &s)| {
                let mut end = starts.get(k + 1).map_or(stream.len(), |&n| n - 3);
                // A 4-byte start code leaves one zero behind the previous NAL unit.
                while end > s && stream[end - 1] == 0 {
                    end -= 1;
                }
                &stream[s..end]
            })
            .collect()
    }

    /// SPS, PPS and the AVCC sample of the first IDR access unit in an Annex-B stream.
    fn first_keyframe(stream: &[u8]) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
        let (mut sps, mut pps, mut idr) = (None, None, Vec::new());
        for nal in annexb_nals(stream) {
            match nal[0] & 0x1f {
                7 if sps.is_none() => sps = Some(nal.to_vec()),
                8 if pps.is_none() => pps = Some(nal.to_vec()),
                5 => {
                    idr.extend_from_slice(&(nal.len() as u32).to_be_bytes());
                    idr.extend_from_slice(nal);
                }
                _ if !idr.is_empty() => break,
                _ => {}
            }
        }
        (sps.expect("SPS"), pps.expect("PPS"), idr)
    }

    /// (width, height) from the JPEG's SOF0 segment, walking the marker segments.
    fn jpeg_dimensions(jpeg: &[u8]) -> (u16, u16) {
        assert_eq!(&jpeg[..2], &[0xFF, 0xD8], "SOI");
        let mut i = 2;
        while i + 4 <= jpeg.len() {
            assert_eq!(jpeg[i], 0xFF, "marker at {i}");
            let marker = jpeg[i + 1];
            let len = u16::from_be_bytes([jpeg[i + 2], jpeg[i + 3]]) as usize;
            if marker == 0xC0 {
                let h = u16::from_be_bytes([jpeg[i + 5], jpeg[i + 6]]);
                let w = u16::from_be_bytes([jpeg[i + 7], jpeg[i + 8]]);
                return (w, h);
            }
            i += 2 + len;
        }
        panic!("no SOF0 marker");
    }

    fn encoded_test_frame(width: usize, height: usize) -> Vec<u8> {
        let mut rgb = vec![0u8; width * height * 3];
        for (i, px) in rgb.chunks_mut(3).enumerate() {
            let (x, y) = (i % width, i / width);
            px.copy_from_slice(&[(x * 255 / width) as u8, (y * 255 / height) as u8, 128]);
        }
        let yuv =
            YUVBuffer::from_rgb8_source(openh264::formats::RgbSliceU8::new(&rgb, (width, height)));
        let mut encoder = Encoder::new().expect("openh264 encoder");
        encoder.encode(&yuv).expect("encode").to_vec()
    }

    #[test]
    fn keyframe_from_openh264_becomes_jpeg_of_same_size() {
        let stream = encoded_test_frame(320, 240);
        let (sps, pps, idr) = first_keyframe(&stream);
        assert!(!idr.is_empty(), "openh264's first frame is an IDR");
        let jpeg = encode_jpeg(&sps, &pps, &idr, 80).expect("snapshot");
        assert_eq!(&jpeg[..3], &[0xFF, 0xD8, 0xFF]);
        assert_eq!(&jpeg[jpeg.len() - 2..], &[0xFF, 0xD9], "EOI");
        assert_eq!(jpeg_dimensions(&jpeg), (320, 240));
    }

    /// The Pi's 1080p stream is coded as 1088 lines with cropping: the poster must be 1080.
    #[test]
    fn pi_1080p_fixture_keyframe_is_cropped_to_1080() {
        let stream = crate::testutil::fixture("pi-1080p25-raspivid.h264");
        let (sps, pps, idr) = first_keyframe(&stream);
        let jpeg = encode_jpeg(&sps, &pps, &idr, 75).expect("snapshot of the Pi fixture");
        assert_eq!(jpeg_dimensions(&jpeg), (1920, 1080));
    }

    #[test]
    fn malformed_input_is_a_clear_error() {
        assert_eq!(
            encode_jpeg(&[], &[0x68], &[0, 0, 0, 1, 0x65], 80),
            Err(PosterError::EmptyParameterSet("SPS"))
        );
        assert_eq!(
            encode_jpeg(&[0x67], &[], &[0, 0, 0, 1, 0x65], 80),
            Err(PosterError::EmptyParameterSet("PPS"))
        );
        assert_eq!(
            encode_jpeg(&[0x67], &[0x68], &[], 80),
            Err(PosterError::EmptyKeyframe)
        );
        let err = encode_jpeg(&[0x67], &[0x68], &[0, 0, 0, 9, 0x65], 80).unwrap_err();
        assert_eq!(
            err,
            PosterError::BadAvccLength {
                offset: 0,
                len: 9,
                total: 5
            }
        );
        assert!(err.to_string().contains("overruns"), "{err}");
        // Annex-B instead of AVCC: the "length" 0x00000001 fits, then 0x65 0x88.. is a huge length.
        let err = encode_jpeg(
            &[0x67],
            &[0x68],
            &[0, 0, 0, 1, 0x65, 0x88, 0x84, 0x00, 0x10],
            80,
        )
        .unwrap_err();
        assert!(
            matches!(err, PosterError::BadAvccLength { offset: 5, .. }),
            "{err:?}"
        );
    }

    #[test]
    fn garbage_keyframe_does_not_panic() {
        let stream = encoded_test_frame(64, 64);
        let (sps, pps, _) = first_keyframe(&stream);
        let garbage = [0, 0, 0, 4, 0x65, 0xFF, 0x00, 0xFF];
        // Whatever openh264 makes of it, the result is an error or a JPEG, never a crash.
        if let Ok(jpeg) = encode_jpeg(&sps, &pps, &garbage, 50) {
            assert_eq!(&jpeg[..2], &[0xFF, 0xD8]);
        }
    }
}
