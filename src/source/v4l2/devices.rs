//! `hlsd devices`: the V4L2 video nodes of this machine, with their formats, sizes, frame rates
//! and encoder controls, and how to use each with hlsd. Rendering is a pure function of the
//! queried [`DeviceCaps`] (tested without devices); [`report`] queries the real nodes.

use super::controls;
use super::negotiate::{
    fps_text, ControlKind, DeviceCaps, DeviceKind, FormatCaps, FourCc, FrameRates,
};
use std::fmt::Write;

/// What `hlsd devices` prints when there are no video nodes at all.
pub const NO_DEVICES: &str = "no V4L2 video devices found (/dev/video* does not exist).\n\
Connect a USB camera, or enable the camera and its driver (Raspberry Pi legacy camera stack: \
`sudo modprobe bcm2835-v4l2`; Pi 4 and older also have the hardware encoder at /dev/video11), \
then run `hlsd devices` again. Without V4L2, use exec:rpicam-vid (see README).\n";

/// Queries every `/dev/video*` node and renders the list.
pub fn report() -> String {
    #[cfg(all(feature = "v4l2", target_os = "linux"))]
    {
        let nodes = super::hw::video_nodes();
        if nodes.is_empty() {
            return NO_DEVICES.to_string();
        }
        let found: Vec<Result<DeviceCaps, String>> = nodes
            .iter()
            .map(|p| super::hw::describe(p).map_err(|e| with_hint(&e.to_string())))
            .collect();
        render(&found)
    }
    #[cfg(not(all(feature = "v4l2", target_os = "linux")))]
    {
        format!("{}\n", super::V4l2Error::NotBuilt)
    }
}

/// Adds the usual fix to a permission error.
#[cfg_attr(not(all(feature = "v4l2", target_os = "linux")), allow(dead_code))]
fn with_hint(e: &str) -> String {
    if e.contains("Permission denied") {
        format!("{e} (add the user to the `video` group: sudo usermod -aG video $USER, then log in again)")
    } else {
        e.to_string()
    }
}

/// Renders queried nodes (or the error opening each).
pub fn render(nodes: &[Result<DeviceCaps, String>]) -> String {
    if nodes.is_empty() {
        return NO_DEVICES.to_string();
    }
    let mut s = String::new();
    let encoders: Vec<&DeviceCaps> = nodes
        .iter()
        .flatten()
        .filter(|d| d.kind == DeviceKind::Encoder)
        .collect();
    for n in nodes {
        let d = match n {
            Ok(d) => d,
            Err(e) => {
                let _ = writeln!(s, "{e}\n");
                continue;
            }
        };
        let what = match d.kind {
            DeviceKind::Camera => "camera",
            DeviceKind::Encoder => "memory-to-memory H.264 encoder",
            DeviceKind::Converter => "memory-to-memory converter (not used by hlsd)",
            DeviceKind::Other => "not a video capture node (metadata or output; not used by hlsd)",
        };
        let _ = writeln!(s, "{}: {} ({}): {what}", d.path, d.card, d.driver);
        match d.kind {
            DeviceKind::Camera => {
                let _ = writeln!(s, "  formats:");
                formats(&mut s, &d.capture_formats);
            }
            DeviceKind::Encoder => {
                let _ = writeln!(s, "  takes (OUTPUT queue):");
                formats(&mut s, &d.output_formats);
                let _ = writeln!(s, "  produces (CAPTURE queue):");
                formats(&mut s, &d.capture_formats);
            }
            _ => {
                let _ = writeln!(s);
                continue;
            }
        }
        let ctrls: Vec<_> = controls::ENCODER_CONTROLS
            .iter()
            .filter_map(|id| d.controls.iter().find(|c| c.id == *id))
            .collect();
        if ctrls.is_empty() {
            let _ = writeln!(s, "  encoder controls: none");
        } else {
            let _ = writeln!(s, "  encoder controls:");
        }
        for c in ctrls {
            let value = match c.kind {
                ControlKind::Integer => format!(
                    "{}..{} step {}, default {}",
                    c.min, c.max, c.step, c.default
                ),
                ControlKind::Boolean => format!(
                    "on/off, default {}",
                    if c.default != 0 { "on" } else { "off" }
                ),
                ControlKind::Button => "yes".to_string(),
                ControlKind::Menu => {
                    let items: Vec<&str> = c.menu.iter().map(|(_, n)| n.as_str()).collect();
                    let default = c
                        .menu
                        .iter()
                        .find(|(i, _)| *i == c.default)
                        .map(|(_, n)| n.as_str())
                        .unwrap_or("?");
                    format!("{} (default {default})", items.join(", "))
                }
                ControlKind::Other => "present".to_string(),
            };
            let ro = if c.read_only { " [read-only]" } else { "" };
            let _ = writeln!(s, "    {}: {value}{ro}", controls::name(c.id));
        }
        let has = |f: FourCc| d.capture_formats.iter().any(|x| x.fourcc == f);
        let raw = d
            .capture_formats
            .iter()
            .any(|x| super::negotiate::RAW_FORMATS.contains(&x.fourcc));
        let usage = match d.kind {
            DeviceKind::Encoder => format!(
                "  use: found automatically for raw cameras (or v4l2-encoder = \"{}\")",
                d.path
            ),
            _ if has(FourCc::H264) => format!(
                "  use: --source v4l2:{} (H.264 from the camera itself)",
                d.path
            ),
            _ if raw && !encoders.is_empty() => {
                format!(
                    "  use: --source v4l2:{} (raw frames encoded by {})",
                    d.path, encoders[0].path
                )
            }
            _ if raw => {
                "  use: raw frames only and no hardware H.264 encoder here (Pi 5: none exists); \
                         use exec: with a software encoder, e.g. rpicam-vid or ffmpeg"
                    .to_string()
            }
            _ => "  use: no H.264 or raw format hlsd can use".to_string(),
        };
        let _ = writeln!(s, "{usage}\n");
    }
    s
}

fn formats(s: &mut String, list: &[FormatCaps]) {
    if list.is_empty() {
        let _ = writeln!(s, "    none");
    }
    for f in list {
        let sizes: Vec<String> = f
            .sizes
            .iter()
            .map(|z| {
                let size = z.size.to_string();
                match &z.rates {
                    FrameRates::Unknown => size,
                    FrameRates::Discrete(l) => {
                        let r: Vec<String> = l.iter().map(|i| fps_text(i.fps())).collect();
                        format!("{size} @ {} fps", r.join("/"))
                    }
                    FrameRates::Range { min_fps, max_fps } => {
                        format!("{size} @ {}-{} fps", fps_text(*min_fps), fps_text(*max_fps))
                    }
                }
            })
            .collect();
        let desc = if f.description.is_empty() {
            String::new()
        } else {
            format!(" ({})", f.description)
        };
        let sizes = if sizes.is_empty() {
            "sizes not listed by the driver".to_string()
        } else {
            sizes.join(", ")
        };
        let _ = writeln!(s, "    {}{desc}: {sizes}", f.fourcc);
    }
}

#[cfg(test)]
mod tests {
    use super::super::negotiate::fixtures::{bcm2835_v4l2, raw_cam_and_codec, uvc_h264};
    use super::*;

    #[test]
    fn no_devices_says_so() {
        assert_eq!(render(&[]), NO_DEVICES);
        assert!(NO_DEVICES.starts_with("no V4L2 video devices found (/dev/video* does not exist)"));
    }

    #[test]
    fn lists_formats_controls_and_usage() {
        let (cam, enc) = raw_cam_and_codec();
        let meta = DeviceCaps {
            path: "/dev/video3".into(),
            driver: "uvcvideo".into(),
            card: "C920".into(),
            ..Default::default()
        };
        let out = render(&[
            Ok(bcm2835_v4l2()),
            Ok(uvc_h264()),
            Ok(meta),
            Ok(cam),
            Ok(enc),
            Err("/dev/video9: cannot open: Permission denied".into()),
        ]);
        for want in [
            "/dev/video0: mmal service 16.1 (bm2835 mmal): camera",
            "    H264: 32x32 to 2592x1944 @ 1-90 fps",
            "    bitrate (V4L2_CID_MPEG_VIDEO_BITRATE): 25000..25000000 step 25000, default 25000",
            "    H.264 profile (V4L2_CID_MPEG_VIDEO_H264_PROFILE): #0, #1, #2, #4 (default #4)",
            "    repeat SPS/PPS (V4L2_CID_MPEG_VIDEO_REPEAT_SEQ_HEADER): on/off, default off",
            "  use: --source v4l2:/dev/video0 (H.264 from the camera itself)",
            "    H264 (H.264): 640x480 @ 30/24/15 fps, 1280x720 @ 30/24/15 fps, 1920x1080 @ 30/24/15 fps",
            "/dev/video2: HD Pro Webcam C920 (uvcvideo): camera",
            "  encoder controls: none",
            "/dev/video3: C920 (uvcvideo): not a video capture node",
            "  use: --source v4l2:/dev/video0 (raw frames encoded by /dev/video11)",
            "/dev/video11: bcm2835-codec-encode (bcm2835-codec): memory-to-memory H.264 encoder",
            "  takes (OUTPUT queue):\n    YU12: 32x32 to 1920x1920",
            "    force key frame (V4L2_CID_MPEG_VIDEO_FORCE_KEY_FRAME): yes",
            "  use: found automatically for raw cameras (or v4l2-encoder = \"/dev/video11\")",
            "/dev/video9: cannot open: Permission denied",
        ] {
            assert!(out.contains(want), "missing {want:?} in:\n{out}");
        }
        // A raw camera with no encoder on the machine (a Pi 5).
        let (cam, _) = raw_cam_and_codec();
        let out = render(&[Ok(cam)]);
        assert!(
            out.contains("no hardware H.264 encoder here (Pi 5: none exists)"),
            "{out}"
        );
        assert!(with_hint("x: Permission denied").contains("video` group"));
    }
}
