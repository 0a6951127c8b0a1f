//! The V4L2 codec controls hlsd uses, and the menu values of H.264 profile and level.
//!
//! IDs and menu indices are the kernel's (include/uapi/linux/v4l2-controls.h, "Codec class");
//! they are spelled out here so the negotiation logic builds and is tested without the bindings.
//! A test in `hw` checks them against the generated bindings when the `v4l2` feature is on.

/// `V4L2_CID_CODEC_BASE`: codec class (0x00990000) | 0x900.
const BASE: u32 = 0x0099_0900;

/// Bitrate in bits per second.
pub const BITRATE: u32 = BASE + 207;
/// Rate control: 0 VBR, 1 CBR, 2 CQ.
pub const BITRATE_MODE: u32 = BASE + 206;
/// GOP size in frames (generic; H264_I_PERIOD is preferred for H.264).
pub const GOP_SIZE: u32 = BASE + 203;
/// Repeat SPS/PPS before every IDR.
pub const REPEAT_SEQ_HEADER: u32 = BASE + 226;
/// Button: make the next frame queued a key frame.
pub const FORCE_KEY_FRAME: u32 = BASE + 229;
/// Period between I-frames (IDR on every encoder hlsd knows of) in frames.
pub const H264_I_PERIOD: u32 = BASE + 358;
/// Menu: `V4L2_MPEG_VIDEO_H264_LEVEL_*`.
pub const H264_LEVEL: u32 = BASE + 359;
/// Menu: `V4L2_MPEG_VIDEO_H264_PROFILE_*`.
pub const H264_PROFILE: u32 = BASE + 363;

/// Name of one of the controls above, for messages.
pub fn name(id: u32) -> &'static str {
    match id {
        BITRATE => "bitrate (V4L2_CID_MPEG_VIDEO_BITRATE)",
        BITRATE_MODE => "bitrate mode (V4L2_CID_MPEG_VIDEO_BITRATE_MODE)",
        GOP_SIZE => "GOP size (V4L2_CID_MPEG_VIDEO_GOP_SIZE)",
        REPEAT_SEQ_HEADER => "repeat SPS/PPS (V4L2_CID_MPEG_VIDEO_REPEAT_SEQ_HEADER)",
        FORCE_KEY_FRAME => "force key frame (V4L2_CID_MPEG_VIDEO_FORCE_KEY_FRAME)",
        H264_I_PERIOD => "IDR interval (V4L2_CID_MPEG_VIDEO_H264_I_PERIOD)",
        H264_LEVEL => "H.264 level (V4L2_CID_MPEG_VIDEO_H264_LEVEL)",
        H264_PROFILE => "H.264 profile (V4L2_CID_MPEG_VIDEO_H264_PROFILE)",
        _ => "control",
    }
}

/// The encoder controls listed by `hlsd devices`.
pub const ENCODER_CONTROLS: [u32; 8] = [
    BITRATE,
    BITRATE_MODE,
    H264_I_PERIOD,
    GOP_SIZE,
    H264_PROFILE,
    H264_LEVEL,
    REPEAT_SEQ_HEADER,
    FORCE_KEY_FRAME,
];

/// `V4L2_MPEG_VIDEO_H264_PROFILE_*` menu indices by config name.
const PROFILES: [(&str, i64); 5] = [
    ("baseline", 0),
    ("constrained-baseline", 1),
    ("main", 2),
    ("extended", 3),
    ("high", 4),
];

/// `V4L2_MPEG_VIDEO_H264_LEVEL_*` menu indices by level name (1b is index 1).
const LEVELS: [(&str, i64); 20] = [
    ("1", 0),
    ("1b", 1),
    ("1.1", 2),
    ("1.2", 3),
    ("1.3", 4),
    ("2", 5),
    ("2.1", 6),
    ("2.2", 7),
    ("3", 8),
    ("3.1", 9),
    ("3.2", 10),
    ("4", 11),
    ("4.1", 12),
    ("4.2", 13),
    ("5", 14),
    ("5.1", 15),
    ("5.2", 16),
    ("6", 17),
    ("6.1", 18),
    ("6.2", 19),
];

/// Parses `v4l2-profile` (`baseline`, `constrained-baseline`, `main`, `extended`, `high`).
pub fn parse_profile(s: &str) -> Result<i64, String> {
    let s = s.trim().to_ascii_lowercase().replace(['_', ' '], "-");
    lookup(&PROFILES, &s, &s, "profile")
}

/// Parses `v4l2-level` (`3.1`, `4`, `4.0`, `4.2`, `1b`, ...).
pub fn parse_level(s: &str) -> Result<i64, String> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_suffix(".0").unwrap_or(&t);
    lookup(&LEVELS, t, s, "level")
}

/// The menu index named `name` in `table`; the error shows `given` and lists the names.
fn lookup(table: &[(&str, i64)], name: &str, given: &str, what: &str) -> Result<i64, String> {
    table
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| *v)
        .ok_or_else(|| {
            let names: Vec<&str> = table.iter().map(|(n, _)| *n).collect();
            format!(
                "'{given}' is not an H.264 {what}: use one of {}",
                names.join(", ")
            )
        })
}

/// Config name of a profile menu index.
pub fn profile_name(v: i64) -> String {
    name_of(&PROFILES, v)
}

/// Level name of a level menu index.
pub fn level_name(v: i64) -> String {
    name_of(&LEVELS, v)
}

/// The name of menu index `v` in `table` (`#v` if it has none).
fn name_of(table: &[(&str, i64)], v: i64) -> String {
    table
        .iter()
        .find(|(_, i)| *i == v)
        .map(|(n, _)| n.to_string())
        .unwrap_or_else(|| format!("#{v}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_and_level_names() {
        assert_eq!(parse_profile("High"), Ok(4));
        assert_eq!(parse_profile("constrained_baseline"), Ok(1));
        assert!(parse_profile("high10")
            .unwrap_err()
            .contains("baseline, constrained-baseline"));
        assert_eq!(parse_level("4.0"), Ok(11));
        assert_eq!(parse_level("4"), Ok(11));
        assert_eq!(parse_level("3.1"), Ok(9));
        assert_eq!(parse_level("1b"), Ok(1));
        assert!(parse_level("4.3").unwrap_err().contains("4.2"));
        assert_eq!(level_name(13), "4.2");
        assert_eq!(profile_name(2), "main");
        // Spot checks against the kernel header values.
        assert_eq!(BITRATE, 0x009909cf);
        assert_eq!(FORCE_KEY_FRAME, 0x009909e5);
        assert_eq!(H264_I_PERIOD, 0x00990a66);
        assert_eq!(H264_PROFILE, 0x00990a6b);
    }
}
