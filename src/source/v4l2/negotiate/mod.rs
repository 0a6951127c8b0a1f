//! Negotiation: what the configuration asks for ([`Request`]) against what a camera (and, for raw
//! cameras, an M2M encoder) offers ([`DeviceCaps`]) → what to set up ([`Negotiated`]).
//!
//! Pure: the hardware code queries the devices into [`DeviceCaps`], calls [`plan`], applies the
//! result and appends what the driver changed. A request the device cannot meet is not fatal:
//! hlsd takes the nearest size and frame rate and the device's default for a control, and says
//! so in a note naming what the device does support. Only a camera with no way to H.264 (no
//! H264 format, and no raw format plus M2M encoder) is an error.
//!
//! Files: [`caps`] (what a device offers), [`route`] (how H.264 is obtained), [`mode`] (frame
//! size and rate), [`encoding`] (the encoder's controls).

mod caps;
mod encoding;
mod mode;
mod route;

#[cfg(test)]
pub(crate) mod fixtures;
#[cfg(test)]
mod tests;

pub use caps::{
    fps_text, ControlCaps, ControlKind, DeviceCaps, DeviceKind, FormatCaps, FourCc, FrameRates,
    FrameSize, Interval, SizeCaps, RAW_FORMATS,
};

use super::V4l2Error;

/// What the configuration asks of the device.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub width: u32,
    pub height: u32,
    pub fps: f64,
    /// Bits per second; None keeps the device's default.
    pub bitrate: Option<u32>,
    /// IDR interval in frames.
    pub idr_interval: u32,
    /// The IDR interval was configured (not derived from fps × segment duration).
    pub idr_interval_explicit: bool,
    /// `V4L2_MPEG_VIDEO_H264_PROFILE_*` index.
    pub profile: Option<i64>,
    /// `V4L2_MPEG_VIDEO_H264_LEVEL_*` index.
    pub level: Option<i64>,
    pub repeat_headers: bool,
}

/// How H.264 is obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// The camera delivers H.264 itself.
    Direct,
    /// Raw frames from the camera go through an M2M encoder.
    ViaEncoder,
}

/// A control value to set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SetControl {
    pub id: u32,
    pub value: i64,
}

/// The outcome of negotiation (planned, then updated with what the driver applied).
#[derive(Debug, Clone, PartialEq)]
pub struct Negotiated {
    pub route: Route,
    /// The camera's capture format (H264, or the raw format fed to the encoder).
    pub fourcc: FourCc,
    pub width: u32,
    pub height: u32,
    pub interval: Interval,
    /// Controls for the encoding device (the camera for `Direct`, the encoder otherwise).
    pub controls: Vec<SetControl>,
    /// The encoding device accepts FORCE_KEY_FRAME.
    pub can_force_keyframe: bool,
    /// The IDR interval (frames) the encoder is set to, if it has such a control.
    pub gop_frames: Option<u32>,
    /// What differs from the request, each naming what the device supports.
    pub notes: Vec<String>,
}

impl Negotiated {
    pub fn fps(&self) -> f64 {
        self.interval.fps()
    }
}

/// Plans the setup of `camera` (and `encoder` for raw cameras) for `req`.
pub fn plan(
    req: &Request,
    camera: &DeviceCaps,
    encoder: Option<&DeviceCaps>,
) -> Result<Negotiated, V4l2Error> {
    let (route, fmt, enc) = route::choose(camera, encoder)?;
    let mut notes = Vec::new();
    let (width, height, size) = mode::choose_size(fmt, req, camera, &mut notes);
    let interval = mode::choose_rate(
        size.map(|s| &s.rates),
        req.fps,
        fmt.fourcc,
        width,
        height,
        camera,
        &mut notes,
    );
    let encoding = encoding::choose(req, enc, &mut notes);
    Ok(Negotiated {
        route,
        fourcc: fmt.fourcc,
        width,
        height,
        interval,
        controls: encoding.controls,
        can_force_keyframe: encoding.can_force_keyframe,
        gop_frames: encoding.gop_frames,
        notes,
    })
}
