//! The route to H.264: the camera's own H264 format, or (raw cameras) a raw format the camera
//! offers and the M2M encoder takes. A node that is no camera, or a camera with no way to H.264,
//! is an error naming what it offers and the way out.

use super::caps::{DeviceCaps, DeviceKind, FormatCaps, FourCc, RAW_FORMATS};
use super::Route;
use crate::source::v4l2::V4l2Error;

/// Chooses the route, the camera's format and the device that encodes (the camera itself for
/// [`Route::Direct`]).
pub(super) fn choose<'a>(
    camera: &'a DeviceCaps,
    encoder: Option<&'a DeviceCaps>,
) -> Result<(Route, &'a FormatCaps, &'a DeviceCaps), V4l2Error> {
    let unsupported = |msg: String| V4l2Error::Unsupported {
        path: camera.path.clone(),
        msg,
    };
    match camera.kind {
        DeviceKind::Camera => {}
        DeviceKind::Encoder => {
            return Err(unsupported(format!(
                "{} is a memory-to-memory H.264 encoder, not a camera: give the camera's node \
                 (e.g. v4l2:/dev/video0); hlsd finds the encoder itself (or set v4l2-encoder)",
                camera.label()
            )))
        }
        _ => {
            return Err(unsupported(format!(
                "{} has no video capture queue (not a camera); `hlsd devices` lists the cameras",
                camera.label()
            )))
        }
    }
    Ok(if let Some(f) = camera.format(FourCc::H264) {
        (Route::Direct, f, camera)
    } else {
        let raw: Vec<&FormatCaps> = RAW_FORMATS
            .iter()
            .filter_map(|r| camera.format(*r))
            .collect();
        if raw.is_empty() {
            return Err(unsupported(format!(
                "{} offers no H.264 and no raw format an encoder takes (it offers {}; hlsd needs \
                 H264, or NV12/YU12/YUYV plus an M2M H.264 encoder)",
                camera.label(),
                camera.format_list()
            )));
        }
        let Some(enc) = encoder else {
            return Err(unsupported(format!(
                "{} gives raw frames only ({}) and no V4L2 memory-to-memory H.264 encoder was found \
                 (the Pi 4 and older have one at /dev/video11; set v4l2-encoder if it is elsewhere). \
                 A Pi 5 has no hardware H.264 encoder: use exec:rpicam-vid (software encoding)",
                camera.label(),
                camera.format_list()
            )));
        };
        if enc.format(FourCc::H264).is_none() {
            return Err(V4l2Error::Unsupported {
                path: enc.path.clone(),
                msg: format!(
                    "{} does not produce H.264 (it produces {})",
                    enc.label(),
                    enc.format_list()
                ),
            });
        }
        let takes = |f: FourCc| {
            enc.output_formats.is_empty() || enc.output_formats.iter().any(|o| o.fourcc == f)
        };
        let Some(f) = raw.iter().find(|f| takes(f.fourcc)) else {
            let enc_in: Vec<String> = enc
                .output_formats
                .iter()
                .map(|f| f.fourcc.to_string())
                .collect();
            return Err(unsupported(format!(
                "no raw format in common between {} ({}) and the encoder {} ({})",
                camera.label(),
                camera.format_list(),
                enc.label(),
                enc_in.join(", ")
            )));
        };
        (Route::ViaEncoder, *f, enc)
    })
}
