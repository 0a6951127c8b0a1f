//! FLV tag bodies for RTMP publishing, as pure functions: the AVC sequence header
//! (AVCDecoderConfigurationRecord from SPS/PPS), AVC NALU packets from the AVCC frames the
//! pipeline already carries, the optional silent AAC track, `onMetaData`, and the mapping from
//! the 90 kHz media clock to RTMP's millisecond timestamps.
//!
//! Layouts (Adobe FLV spec v10.1, E.4.3.1 VIDEODATA / AVCVIDEOPACKET and E.4.2.1 AUDIODATA /
//! AACAUDIODATA); RTMP video and audio messages carry exactly these tag bodies:
//!
//! ```text
//! video: [FrameType<<4 | CodecID=7][AVCPacketType][CompositionTime i24][payload]
//!        FrameType 1 = key, 2 = inter; AVCPacketType 0 = sequence header, 1 = NALUs, 2 = end
//! audio: [SoundFormat=10<<4 | rate=3<<2 | 16-bit<<1 | stereo][AACPacketType][payload]
//! ```
//!
//! Composition time is the frame's PTS − DTS: 0 except for B-frames from MPEG-TS input.

use crate::media::{TrackInfo, TIMESCALE};
use bytes::{BufMut, Bytes, BytesMut};
use rml_rtmp::sessions::StreamMetadata;

/// FLV CodecID of AVC (H.264).
pub const VIDEO_CODEC_AVC: u32 = 7;
/// FLV SoundFormat of AAC.
pub const AUDIO_CODEC_AAC: u32 = 10;

const FRAME_KEY: u8 = 0x10;
const FRAME_INTER: u8 = 0x20;
const AVC_SEQUENCE_HEADER: u8 = 0;
const AVC_NALU: u8 = 1;
const AVC_END_OF_SEQUENCE: u8 = 2;

/// Builds the AVCDecoderConfigurationRecord (ISO/IEC 14496-15 §5.2.4.1) with 4-byte NAL lengths,
/// matching the AVCC frames of [`crate::media::Frame`].
pub fn avc_decoder_config(sps: &[u8], pps: &[u8]) -> Option<Bytes> {
    if sps.len() < 4
        || pps.is_empty()
        || sps.len() > u16::MAX as usize
        || pps.len() > u16::MAX as usize
    {
        return None;
    }
    let mut b = BytesMut::with_capacity(11 + sps.len() + pps.len());
    b.put_u8(1); // configurationVersion
    b.put_slice(&sps[1..4]); // AVCProfileIndication, profile_compatibility, AVCLevelIndication
    b.put_u8(0xFC | 3); // reserved, lengthSizeMinusOne = 3
    b.put_u8(0xE0 | 1); // reserved, numOfSequenceParameterSets = 1
    b.put_u16(sps.len() as u16);
    b.put_slice(sps);
    b.put_u8(1); // numOfPictureParameterSets
    b.put_u16(pps.len() as u16);
    b.put_slice(pps);
    Some(b.freeze())
}

fn video_header(b: &mut BytesMut, key: bool, packet_type: u8, composition_ms: i32) {
    b.put_u8(if key { FRAME_KEY } else { FRAME_INTER } | VIDEO_CODEC_AVC as u8);
    b.put_u8(packet_type);
    let c = composition_ms.clamp(-(1 << 23), (1 << 23) - 1) as u32;
    b.put_slice(&c.to_be_bytes()[1..]);
}

/// The AVC sequence header tag body; `None` if the SPS is too short to be one.
pub fn avc_sequence_header(info: &TrackInfo) -> Option<Bytes> {
    let record = avc_decoder_config(&info.sps, &info.pps)?;
    let mut b = BytesMut::with_capacity(5 + record.len());
    video_header(&mut b, true, AVC_SEQUENCE_HEADER, 0);
    b.put_slice(&record);
    Some(b.freeze())
}

/// One access unit (AVCC, 4-byte lengths) as an AVC NALU tag body; `cts` is its composition
/// offset in 90 kHz ticks (B-frames from MPEG-TS input; 0 otherwise), sent in milliseconds.
pub fn avc_nalu(avcc: &[u8], key: bool, cts: i32) -> Bytes {
    let mut b = BytesMut::with_capacity(5 + avcc.len());
    video_header(&mut b, key, AVC_NALU, cts.div_euclid(90));
    b.put_slice(avcc);
    b.freeze()
}

/// The AVC end-of-sequence tag body, sent before unpublishing.
pub fn avc_end_of_sequence() -> Bytes {
    let mut b = BytesMut::with_capacity(5);
    video_header(&mut b, true, AVC_END_OF_SEQUENCE, 0);
    b.freeze()
}

/// A silent AAC-LC track (44.1 kHz stereo): for ingest servers that want audio (YouTube may
/// refuse or warn about video-only streams) when the camera has none.
pub mod silent_aac {
    use super::*;

    pub const SAMPLE_RATE: u32 = 44_100;
    /// Samples per AAC frame.
    pub const FRAME_SAMPLES: u32 = 1024;
    /// AudioSpecificConfig: object type 2 (LC), frequency index 4 (44100), 2 channels.
    pub const AUDIO_SPECIFIC_CONFIG: [u8; 2] = [0x12, 0x10];
    /// One raw AAC-LC frame of digital silence (a CPE with zero spectra), as ffmpeg's encoder
    /// produces for anullsrc at 44.1 kHz stereo.
    pub const SILENT_FRAME: [u8; 6] = [0x21, 0x10, 0x04, 0x60, 0x8c, 0x1c];
    /// SoundFormat 10 (AAC), SoundRate 3 (44 kHz), SoundSize 1 (16-bit), SoundType 1 (stereo).
    const HEADER: u8 = 0xAF;

    /// The AAC sequence header tag body.
    pub fn sequence_header() -> Bytes {
        let mut b = BytesMut::with_capacity(4);
        b.put_u8(HEADER);
        b.put_u8(0);
        b.put_slice(&AUDIO_SPECIFIC_CONFIG);
        b.freeze()
    }

    /// One silent AAC frame tag body.
    pub fn frame() -> Bytes {
        let mut b = BytesMut::with_capacity(2 + SILENT_FRAME.len());
        b.put_u8(HEADER);
        b.put_u8(1);
        b.put_slice(&SILENT_FRAME);
        b.freeze()
    }

    /// Timestamp (ms) of frame `n` counted from `base_ms`.
    pub fn timestamp(base_ms: u32, n: u64) -> u32 {
        base_ms.wrapping_add((n * FRAME_SAMPLES as u64 * 1000 / SAMPLE_RATE as u64) as u32)
    }
}

/// `onMetaData` for a track (sent with `@setDataFrame`, which relays keep for late viewers).
pub fn metadata(info: &TrackInfo, silent_audio: bool) -> StreamMetadata {
    let mut m = StreamMetadata::new();
    m.video_width = Some(info.width);
    m.video_height = Some(info.height);
    m.video_codec_id = Some(VIDEO_CODEC_AVC);
    m.video_frame_rate = Some(info.frame_rate() as f32);
    m.encoder = Some(concat!("hlsd ", env!("CARGO_PKG_VERSION")).to_string());
    if silent_audio {
        m.audio_codec_id = Some(AUDIO_CODEC_AAC);
        m.audio_sample_rate = Some(silent_aac::SAMPLE_RATE);
        m.audio_channels = Some(2);
        m.audio_is_stereo = Some(true);
    }
    m
}

/// A timeline break larger than this (or any step backwards) is bridged instead of followed.
const MAX_GAP_TICKS: u64 = 10 * TIMESCALE as u64;

/// Maps 90 kHz decode timestamps to RTMP milliseconds, starting at 0 on each connection.
///
/// RTMP timestamps must not go backwards; after a source discontinuity (encoder restart, file
/// loop, reconnect) the new timeline is joined one frame after the last timestamp sent.
#[derive(Debug, Default, Clone)]
pub struct Clock {
    /// (dts, ms) of the current timeline's first frame.
    origin: Option<(u64, u32)>,
    /// (dts, ms) of the last frame mapped.
    last: Option<(u64, u32)>,
}

impl Clock {
    /// Timestamp in ms for a frame; `rebase` forces a new timeline (after a discontinuity).
    pub fn map(&mut self, dts: u64, frame_duration: u32, rebase: bool) -> u32 {
        let ms = match (self.origin, self.last) {
            (Some((odts, oms)), Some((ldts, lms))) => {
                if rebase || dts <= ldts || dts - ldts > MAX_GAP_TICKS {
                    let step = ticks_to_ms(frame_duration as u64).max(1);
                    let ms = lms.wrapping_add(step);
                    self.origin = Some((dts, ms));
                    ms
                } else {
                    let ms = oms.wrapping_add(ticks_to_ms(dts - odts));
                    // Never repeat a timestamp (frame rates above 1000 fps only).
                    if ms == lms {
                        ms.wrapping_add(1)
                    } else {
                        ms
                    }
                }
            }
            _ => {
                self.origin = Some((dts, 0));
                0
            }
        };
        self.last = Some((dts, ms));
        ms
    }

    /// The last timestamp handed out, if any.
    pub fn last_ms(&self) -> Option<u32> {
        self.last.map(|l| l.1)
    }
}

fn ticks_to_ms(ticks: u64) -> u32 {
    ((ticks * 1000 + TIMESCALE as u64 / 2) / TIMESCALE as u64) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> TrackInfo {
        TrackInfo {
            sps: Bytes::from_static(&[0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9]),
            pps: Bytes::from_static(&[0x68, 0xeb, 0xe3]),
            width: 1280,
            height: 720,
            profile_idc: 0x64,
            constraint_flags: 0,
            level_idc: 0x1f,
            frame_duration: 3000,
        }
    }

    #[test]
    fn sequence_header_layout() {
        let b = avc_sequence_header(&info()).unwrap();
        assert_eq!(
            &b[..],
            &[
                0x17, 0, 0, 0, 0, // key | AVC, sequence header, cts 0
                1, 0x64, 0x00, 0x1f, 0xff,
                0xe1, // version, profile, compat, level, 4-byte lengths, 1 SPS
                0, 6, 0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9, // SPS
                1, 0, 3, 0x68, 0xeb, 0xe3, // 1 PPS
            ][..]
        );
        let mut short = info();
        short.sps = Bytes::from_static(&[0x67, 0x64]);
        assert!(avc_sequence_header(&short).is_none());
    }

    #[test]
    fn nalu_packets() {
        let au = crate::h264::to_avcc([&[0x65u8, 0x88, 0x84][..]]);
        let b = avc_nalu(&au, true, 0);
        assert_eq!(&b[..5], &[0x17, 1, 0, 0, 0]);
        assert_eq!(&b[5..], &au[..]);
        assert_eq!(&avc_nalu(&au, false, 0)[..5], &[0x27, 1, 0, 0, 0]);
        assert_eq!(&avc_end_of_sequence()[..], &[0x17, 2, 0, 0, 0]);
        let mut x = BytesMut::new();
        video_header(&mut x, false, AVC_NALU, -1);
        assert_eq!(
            &x[..],
            &[0x27, 1, 0xff, 0xff, 0xff],
            "composition time is a signed 24-bit value"
        );
    }

    #[test]
    fn silent_aac_packets() {
        assert_eq!(&silent_aac::sequence_header()[..], &[0xaf, 0, 0x12, 0x10]);
        assert_eq!(&silent_aac::frame()[..2], &[0xaf, 1]);
        assert_eq!(silent_aac::timestamp(100, 0), 100);
        assert_eq!(silent_aac::timestamp(0, 1), 23);
        assert_eq!(
            silent_aac::timestamp(0, 441),
            10_240,
            "441 frames = 451584 samples = 10.24 s"
        );
    }

    #[test]
    fn metadata_fields() {
        let m = metadata(&info(), false);
        assert_eq!(
            (m.video_width, m.video_height, m.video_codec_id),
            (Some(1280), Some(720), Some(7))
        );
        assert_eq!(m.video_frame_rate, Some(30.0));
        assert_eq!(m.audio_codec_id, None);
        assert_eq!(metadata(&info(), true).audio_codec_id, Some(10));
    }

    #[test]
    fn clock_maps_90khz_to_ms_and_bridges_breaks() {
        let mut c = Clock::default();
        let base = 1_000_000_u64;
        let got: Vec<u32> = (0..4)
            .map(|i| c.map(base + i * 3000, 3000, false))
            .collect();
        assert_eq!(got, [0, 33, 67, 100], "30 fps, starting at 0");
        // A dropped GOP leaves a gap that is kept (real time passed).
        assert_eq!(c.map(base + 10 * 3000, 3000, false), 333);
        // Backwards (file loop): joined one frame later.
        assert_eq!(c.map(5, 3000, false), 366);
        assert_eq!(c.map(3005, 3000, false), 399);
        // Forward jump beyond 10 s: bridged too.
        assert_eq!(c.map(3005 + 3600 * 90_000, 3000, false), 432);
        // Explicit discontinuity.
        assert_eq!(c.map(3005 + 3600 * 90_000 + 3000, 3000, true), 465);
        assert_eq!(c.last_ms(), Some(465));
        // 25 fps and 29.97 fps stay on the millisecond grid without drift.
        let mut c = Clock::default();
        assert_eq!(
            (0..=25).map(|i| c.map(i * 3600, 3600, false)).last(),
            Some(1000)
        );
        let mut c = Clock::default();
        assert_eq!(
            (0..=30).map(|i| c.map(i * 3003, 3003, false)).last(),
            Some(1001)
        );
    }
}
