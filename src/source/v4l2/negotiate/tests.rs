//! Negotiation against the fixtures' devices: exact matches, nearest sizes and rates, clamped
//! controls, and the errors that name the way out.

use super::fixtures::{bcm2835_v4l2, raw_cam_and_codec, request, uvc_h264};
use super::*;
use crate::source::v4l2::controls;

#[test]
fn legacy_pi_camera_gives_h264_directly_with_all_controls() {
    let n = plan(&request(), &bcm2835_v4l2(), None).unwrap();
    assert_eq!(
        (n.route, n.fourcc, n.width, n.height, n.fps()),
        (Route::Direct, FourCc::H264, 1280, 720, 30.0)
    );
    assert_eq!(
        n.controls,
        vec![
            SetControl {
                id: controls::BITRATE,
                value: 2_000_000
            },
            SetControl {
                id: controls::H264_I_PERIOD,
                value: 30
            },
            SetControl {
                id: controls::H264_PROFILE,
                value: 4
            },
            SetControl {
                id: controls::H264_LEVEL,
                value: 11
            },
            SetControl {
                id: controls::REPEAT_SEQ_HEADER,
                value: 1
            },
        ]
    );
    assert_eq!(n.gop_frames, Some(30));
    assert!(!n.can_force_keyframe);
    assert!(n.notes.is_empty(), "{:?}", n.notes);
}

#[test]
fn uvc_h264_camera_reports_what_it_lacks() {
    let mut req = request();
    req.width = 1024;
    req.height = 768;
    req.fps = 25.0;
    let n = plan(&req, &uvc_h264(), None).unwrap();
    assert_eq!((n.route, n.width, n.height), (Route::Direct, 1280, 720));
    assert_eq!(n.interval, Interval { num: 1, den: 24 });
    assert!(n.controls.is_empty());
    let all = n.notes.join("\n");
    for want in [
        "1024x768 is not offered in H264 by HD Pro Webcam C920 (uvcvideo) at /dev/video2 (it offers 640x480, 1280x720, 1920x1080); using 1280x720",
        "25 fps is not offered for H264 1280x720",
        "(it offers 30, 24, 15 fps); using 24",
        "no settable bitrate",
        "H.264 profile (V4L2_CID_MPEG_VIDEO_H264_PROFILE)",
        "neither an IDR interval control nor FORCE_KEY_FRAME",
    ] {
        assert!(all.contains(want), "missing {want:?} in:\n{all}");
    }
}

#[test]
fn raw_camera_goes_through_the_m2m_encoder() {
    let (cam, enc) = raw_cam_and_codec();
    let mut req = request();
    req.bitrate = Some(40_000_000);
    req.profile = Some(3); // extended: not offered
    let n = plan(&req, &cam, Some(&enc)).unwrap();
    assert_eq!(
        (n.route, n.fourcc, n.width, n.height, n.fps()),
        (Route::ViaEncoder, FourCc::YUYV, 1280, 720, 30.0)
    );
    assert!(n.can_force_keyframe);
    assert!(n.controls.contains(&SetControl {
        id: controls::BITRATE,
        value: 25_000_000
    }));
    assert!(!n.controls.iter().any(|c| c.id == controls::H264_PROFILE));
    let all = n.notes.join("\n");
    assert!(all.contains("bitrate 40000000 bit/s is outside what bcm2835-codec-encode (bcm2835-codec) at /dev/video11 supports (25000..=25000000 step 25000); using 25000000"), "{all}");
    assert!(all.contains("H.264 profile extended is not offered by bcm2835-codec-encode (bcm2835-codec) at /dev/video11 (it offers baseline, constrained-baseline, main, high); its default (high) is used"), "{all}");

    // Without an encoder (a Pi 5): a clear error naming the way out.
    let e = plan(&req, &cam, None).unwrap_err().to_string();
    assert!(
        e.contains("raw frames only (MJPG, YUYV)")
            && e.contains("Pi 5")
            && e.contains("exec:rpicam-vid"),
        "{e}"
    );
    // The encoder's node given as the camera.
    let e = plan(&req, &enc, None).unwrap_err().to_string();
    assert!(
        e.contains("memory-to-memory H.264 encoder, not a camera"),
        "{e}"
    );
    // A camera with neither H.264 nor raw.
    let mjpg = DeviceCaps {
        capture_formats: vec![cam.capture_formats[0].clone()],
        ..cam.clone()
    };
    let e = plan(&req, &mjpg, Some(&enc)).unwrap_err().to_string();
    assert!(
        e.contains("offers no H.264 and no raw format") && e.contains("it offers MJPG"),
        "{e}"
    );
}

#[test]
fn stepwise_sizes_and_ranges_snap() {
    let mut req = request();
    req.width = 1283;
    req.height = 4000;
    req.fps = 120.0;
    req.idr_interval = 60;
    req.idr_interval_explicit = true;
    let n = plan(&req, &bcm2835_v4l2(), None).unwrap();
    assert_eq!((n.width, n.height, n.fps()), (1282, 1944, 90.0));
    assert_eq!(n.gop_frames, Some(60));
    assert_eq!(n.notes.len(), 2, "{:?}", n.notes);
    assert_eq!(
        Interval::from_fps(29.97),
        Interval {
            num: 1000,
            den: 29970
        }
    );
}
