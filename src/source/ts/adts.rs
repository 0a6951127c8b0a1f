//! ADTS (ISO/IEC 14496-3 1.A.2), the framing of AAC in MPEG-TS: each audio PES holds one or
//! more ADTS frames, a 7-byte header (9 with CRC) followed by one raw AAC frame of 1024 samples.
//!
//! [`AacConfig`] is what a CMAF `mp4a` sample entry needs (its esds carries the 2-byte
//! AudioSpecificConfig built by [`AacConfig::audio_specific_config`]). hlsd reads the AAC
//! stream's configuration and logs it; muxing the frames is not done yet (README "MPEG-TS and
//! audio").

/// Sampling frequencies by `sampling_frequency_index` (ISO/IEC 14496-3 Table 1.18).
const RATES: [u32; 13] = [96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350];

/// The stream configuration an ADTS header gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AacConfig {
    /// MPEG-4 audio object type (2 = AAC-LC).
    pub object_type: u8,
    pub frequency_index: u8,
    /// channel_configuration (1 = mono, 2 = stereo, ...; 0 = given in the stream).
    pub channels: u8,
}

impl AacConfig {
    pub fn sample_rate(&self) -> u32 {
        RATES[usize::from(self.frequency_index)]
    }

    /// The AudioSpecificConfig for an esds: object type (5 bits), frequency index (4),
    /// channel configuration (4), and GASpecificConfig's three zero flags.
    pub fn audio_specific_config(&self) -> [u8; 2] {
        let v = u16::from(self.object_type) << 11 | u16::from(self.frequency_index) << 7 | u16::from(self.channels) << 3;
        v.to_be_bytes()
    }

    /// RFC 6381 codec string, e.g. `mp4a.40.2`.
    pub fn codec_string(&self) -> String {
        format!("mp4a.40.{}", self.object_type)
    }
}

/// Why bytes are not an ADTS frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdtsError {
    #[error("no ADTS sync word")]
    NoSync,
    #[error("ADTS header truncated or frame_length {0} out of range")]
    Length(usize),
    #[error("reserved sampling frequency index {0}")]
    Frequency(u8),
}

/// One ADTS frame: its configuration and raw AAC payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdtsFrame<'a> {
    pub config: AacConfig,
    pub payload: &'a [u8],
}

/// Parses the ADTS frame at the start of `data`; returns it and the bytes it took.
pub fn parse(data: &[u8]) -> Result<(AdtsFrame<'_>, usize), AdtsError> {
    if data.len() < 7 {
        return Err(AdtsError::Length(data.len()));
    }
    if data[0] != 0xff || data[1] & 0xf0 != 0xf0 {
        return Err(AdtsError::NoSync);
    }
    let protection_absent = data[1] & 1 == 1;
    let object_type = (data[2] >> 6) + 1;
    let frequency_index = (data[2] >> 2) & 0x0f;
    if usize::from(frequency_index) >= RATES.len() {
        return Err(AdtsError::Frequency(frequency_index));
    }
    let channels = (data[2] & 1) << 2 | data[3] >> 6;
    let len = usize::from(data[3] & 3) << 11 | usize::from(data[4]) << 3 | usize::from(data[5] >> 5);
    let header = if protection_absent { 7 } else { 9 };
    if len < header || len > data.len() {
        return Err(AdtsError::Length(len));
    }
    let config = AacConfig { object_type, frequency_index, channels };
    Ok((AdtsFrame { config, payload: &data[header..len] }, len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_fields_and_audio_specific_config() {
        // AAC-LC, 48 kHz (index 3), stereo, no CRC, frame_length 10 (7 + 3 payload bytes).
        let len = 10usize;
        let frame = [0xff, 0xf1, (1 << 6) | (3 << 2), (2 << 6) | (len >> 11) as u8, (len >> 3) as u8, ((len & 7) << 5) as u8 | 0x1f, 0xfc, 1, 2, 3];
        let (f, used) = parse(&frame).unwrap();
        assert_eq!(used, 10);
        assert_eq!(f.payload, &[1, 2, 3]);
        assert_eq!(f.config, AacConfig { object_type: 2, frequency_index: 3, channels: 2 });
        assert_eq!((f.config.sample_rate(), f.config.codec_string()), (48000, "mp4a.40.2".to_string()));
        // ffmpeg's AudioSpecificConfig for 48 kHz stereo AAC-LC is 11 90.
        assert_eq!(f.config.audio_specific_config(), [0x11, 0x90]);
        assert_eq!(parse(&frame[..9]), Err(AdtsError::Length(10)));
        assert_eq!(parse(&[0u8; 9]), Err(AdtsError::NoSync));
        let mut bad = frame;
        bad[2] = (1 << 6) | (15 << 2);
        assert_eq!(parse(&bad), Err(AdtsError::Frequency(15)));
    }
}
