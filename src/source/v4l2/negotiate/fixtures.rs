//! Capabilities of real devices, written down for tests (negotiation, `hlsd devices`, the
//! session): the Pi's legacy camera, a UVC H.264 webcam, a raw USB camera with the Pi 4's
//! encoder, and a typical request.

use super::*;
use crate::source::v4l2::controls;

fn menu(id: u32, items: &[i64], default: i64) -> ControlCaps {
    ControlCaps {
        id,
        name: controls::name(id).into(),
        kind: ControlKind::Menu,
        min: items[0],
        max: *items.last().unwrap(),
        step: 1,
        default,
        menu: items.iter().map(|i| (*i, format!("#{i}"))).collect(),
        read_only: false,
    }
}
fn int(id: u32, min: i64, max: i64, step: u64) -> ControlCaps {
    ControlCaps {
        id,
        name: controls::name(id).into(),
        kind: ControlKind::Integer,
        min,
        max,
        step,
        default: min,
        menu: vec![],
        read_only: false,
    }
}
fn button(id: u32) -> ControlCaps {
    ControlCaps {
        id,
        name: "force".into(),
        kind: ControlKind::Button,
        min: 0,
        max: 0,
        step: 0,
        default: 0,
        menu: vec![],
        read_only: false,
    }
}
fn discrete(sizes: &[(u32, u32)], fps: &[u32]) -> Vec<SizeCaps> {
    sizes
        .iter()
        .map(|&(width, height)| SizeCaps {
            size: FrameSize::Discrete { width, height },
            rates: FrameRates::Discrete(fps.iter().map(|f| Interval { num: 1, den: *f }).collect()),
        })
        .collect()
}

/// The encoder controls the Broadcom firmware offers (legacy camera driver and bcm2835-codec).
fn broadcom_encoder_controls() -> Vec<ControlCaps> {
    vec![
        int(controls::BITRATE, 25_000, 25_000_000, 25_000),
        int(controls::H264_I_PERIOD, 0, 2_147_483_647, 1),
        menu(controls::H264_PROFILE, &[0, 1, 2, 4], 4),
        menu(
            controls::H264_LEVEL,
            &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13],
            11,
        ),
        ControlCaps {
            kind: ControlKind::Boolean,
            ..int(controls::REPEAT_SEQ_HEADER, 0, 1, 1)
        },
    ]
}

/// The Pi's legacy camera driver: H264 among others, stepwise sizes, encoder controls.
pub(crate) fn bcm2835_v4l2() -> DeviceCaps {
    let step = vec![SizeCaps {
        size: FrameSize::Stepwise {
            min_width: 32,
            max_width: 2592,
            step_width: 2,
            min_height: 32,
            max_height: 1944,
            step_height: 2,
        },
        rates: FrameRates::Range {
            min_fps: 1.0,
            max_fps: 90.0,
        },
    }];
    let f = |c: FourCc| FormatCaps {
        fourcc: c,
        description: String::new(),
        sizes: step.clone(),
    };
    DeviceCaps {
        path: "/dev/video0".into(),
        driver: "bm2835 mmal".into(),
        card: "mmal service 16.1".into(),
        kind: DeviceKind::Camera,
        capture_formats: vec![
            f(FourCc::YU12),
            f(FourCc::YUYV),
            f(FourCc::H264),
            f(FourCc::NV12),
        ],
        output_formats: vec![],
        controls: broadcom_encoder_controls(),
    }
}

/// A UVC webcam with a raw and an H.264 format and no encoder controls.
pub(crate) fn uvc_h264() -> DeviceCaps {
    DeviceCaps {
        path: "/dev/video2".into(),
        driver: "uvcvideo".into(),
        card: "HD Pro Webcam C920".into(),
        kind: DeviceKind::Camera,
        capture_formats: vec![
            FormatCaps {
                fourcc: FourCc::YUYV,
                description: "YUYV 4:2:2".into(),
                sizes: discrete(&[(640, 480)], &[30]),
            },
            FormatCaps {
                fourcc: FourCc::H264,
                description: "H.264".into(),
                sizes: discrete(&[(640, 480), (1280, 720), (1920, 1080)], &[30, 24, 15]),
            },
        ],
        output_formats: vec![],
        controls: vec![],
    }
}

/// A raw-only USB camera and the Pi 4's bcm2835-codec encoder.
pub(crate) fn raw_cam_and_codec() -> (DeviceCaps, DeviceCaps) {
    let cam = DeviceCaps {
        path: "/dev/video0".into(),
        driver: "uvcvideo".into(),
        card: "USB2.0 Camera".into(),
        kind: DeviceKind::Camera,
        capture_formats: vec![
            FormatCaps {
                fourcc: FourCc(*b"MJPG"),
                description: "Motion-JPEG".into(),
                sizes: discrete(&[(1280, 720)], &[30]),
            },
            FormatCaps {
                fourcc: FourCc::YUYV,
                description: "YUYV 4:2:2".into(),
                sizes: discrete(&[(640, 480), (1280, 720)], &[30, 10]),
            },
        ],
        output_formats: vec![],
        controls: vec![],
    };
    let anysize = vec![SizeCaps {
        size: FrameSize::Stepwise {
            min_width: 32,
            max_width: 1920,
            step_width: 2,
            min_height: 32,
            max_height: 1920,
            step_height: 2,
        },
        rates: FrameRates::Unknown,
    }];
    let f = |c: FourCc| FormatCaps {
        fourcc: c,
        description: String::new(),
        sizes: anysize.clone(),
    };
    let enc = DeviceCaps {
        path: "/dev/video11".into(),
        driver: "bcm2835-codec".into(),
        card: "bcm2835-codec-encode".into(),
        kind: DeviceKind::Encoder,
        capture_formats: vec![f(FourCc::H264)],
        output_formats: vec![
            f(FourCc::YU12),
            f(FourCc::NV12),
            f(FourCc::YUYV),
            f(FourCc(*b"RGB3")),
        ],
        controls: broadcom_encoder_controls()
            .into_iter()
            .chain([button(controls::FORCE_KEY_FRAME)])
            .collect(),
    };
    (cam, enc)
}

pub(crate) fn request() -> Request {
    Request {
        width: 1280,
        height: 720,
        fps: 30.0,
        bitrate: Some(2_000_000),
        idr_interval: 30,
        idr_interval_explicit: false,
        profile: Some(4),
        level: Some(11),
        repeat_headers: true,
    }
}
