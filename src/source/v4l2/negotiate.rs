//! Negotiation: what the configuration asks for ([`Request`]) against what a camera (and, for raw
//! cameras, an M2M encoder) offers ([`DeviceCaps`]) → what to set up ([`Negotiated`]).
//!
//! Pure: the hardware code queries the devices into [`DeviceCaps`], calls [`plan`], applies the
//! result and appends what the driver changed. A request the device cannot meet is not fatal:
//! hlsd takes the nearest size and frame rate and the device's default for a control, and says
//! so in a note naming what the device does support. Only a camera with no way to H.264 (no
//! H264 format, and no raw format plus M2M encoder) is an error.

use super::controls::{self, level_name, profile_name};
use super::V4l2Error;
use std::fmt;

/// A V4L2 pixel format code.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct FourCc(pub [u8; 4]);

impl FourCc {
    pub const H264: FourCc = FourCc(*b"H264");
    pub const NV12: FourCc = FourCc(*b"NV12");
    pub const YU12: FourCc = FourCc(*b"YU12");
    pub const YUYV: FourCc = FourCc(*b"YUYV");

    pub fn from_u32(v: u32) -> Self {
        FourCc(v.to_le_bytes())
    }
    pub fn to_u32(self) -> u32 {
        u32::from_le_bytes(self.0)
    }
}

impl fmt::Display for FourCc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            let c = if b.is_ascii_graphic() || b == b' ' {
                b as char
            } else {
                '?'
            };
            write!(f, "{c}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for FourCc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Raw formats hlsd can hand to an M2M encoder, in order of preference (4:2:0 first: encoders
/// convert 4:2:2 YUYV themselves, which costs them time).
pub const RAW_FORMATS: [FourCc; 3] = [FourCc::NV12, FourCc::YU12, FourCc::YUYV];

/// What kind of device a node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceKind {
    /// Has a video capture queue (camera, capture card).
    Camera,
    /// Memory-to-memory device whose CAPTURE queue offers H.264 (a stateful encoder).
    Encoder,
    /// Another memory-to-memory device (decoder, scaler, ISP).
    Converter,
    /// Metadata, output-only or other nodes.
    #[default]
    Other,
}

/// A frame interval (seconds per frame as a fraction), as V4L2 keeps frame rates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interval {
    pub num: u32,
    pub den: u32,
}

impl Interval {
    pub fn fps(&self) -> f64 {
        if self.num == 0 {
            0.0
        } else {
            self.den as f64 / self.num as f64
        }
    }
    /// The interval of a frame rate (1/fps, or 1000/(fps×1000) for fractional rates).
    pub fn from_fps(fps: f64) -> Self {
        if (fps - fps.round()).abs() < 1e-6 {
            Interval {
                num: 1,
                den: fps.round().max(1.0) as u32,
            }
        } else {
            Interval {
                num: 1000,
                den: (fps * 1000.0).round().max(1.0) as u32,
            }
        }
    }
}

/// Frame sizes of a format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameSize {
    Discrete {
        width: u32,
        height: u32,
    },
    Stepwise {
        min_width: u32,
        max_width: u32,
        step_width: u32,
        min_height: u32,
        max_height: u32,
        step_height: u32,
    },
}

/// Frame rates of a format at one size.
#[derive(Debug, Clone, PartialEq)]
pub enum FrameRates {
    /// Not enumerated (M2M devices, some drivers): whatever is set is taken.
    Unknown,
    Discrete(Vec<Interval>),
    Range {
        min_fps: f64,
        max_fps: f64,
    },
}

/// One size of a format and its frame rates.
#[derive(Debug, Clone, PartialEq)]
pub struct SizeCaps {
    pub size: FrameSize,
    pub rates: FrameRates,
}

/// One pixel format of a queue.
#[derive(Debug, Clone, PartialEq)]
pub struct FormatCaps {
    pub fourcc: FourCc,
    pub description: String,
    pub sizes: Vec<SizeCaps>,
}

/// Type of a control.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlKind {
    Integer,
    Boolean,
    Menu,
    Button,
    Other,
}

/// One control of a device.
#[derive(Debug, Clone, PartialEq)]
pub struct ControlCaps {
    pub id: u32,
    pub name: String,
    pub kind: ControlKind,
    pub min: i64,
    pub max: i64,
    pub step: u64,
    pub default: i64,
    /// Menu items (index, name).
    pub menu: Vec<(i64, String)>,
    /// Disabled or read-only: cannot be set.
    pub read_only: bool,
}

/// What a device node offers.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeviceCaps {
    pub path: String,
    pub driver: String,
    pub card: String,
    pub kind: DeviceKind,
    /// Formats the node produces: a camera's capture formats, an encoder's coded formats.
    pub capture_formats: Vec<FormatCaps>,
    /// Formats an M2M node takes in (its OUTPUT queue).
    pub output_formats: Vec<FormatCaps>,
    pub controls: Vec<ControlCaps>,
}

impl DeviceCaps {
    /// A usable (settable) control.
    pub fn control(&self, id: u32) -> Option<&ControlCaps> {
        self.controls.iter().find(|c| c.id == id && !c.read_only)
    }

    /// "card (driver) at path", for messages.
    pub fn label(&self) -> String {
        format!("{} ({}) at {}", self.card, self.driver, self.path)
    }

    fn format(&self, f: FourCc) -> Option<&FormatCaps> {
        self.capture_formats.iter().find(|c| c.fourcc == f)
    }

    fn format_list(&self) -> String {
        if self.capture_formats.is_empty() {
            return "none".into();
        }
        self.capture_formats
            .iter()
            .map(|f| f.fourcc.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

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
    let mut notes = Vec::new();
    let (route, fmt, enc) = if let Some(f) = camera.format(FourCc::H264) {
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
    };

    let (width, height, size) = choose_size(fmt, req, camera, &mut notes);
    let interval = choose_rate(
        size.map(|s| &s.rates),
        req.fps,
        fmt.fourcc,
        width,
        height,
        camera,
        &mut notes,
    );
    let mut controls = Vec::new();
    let who = enc.label();

    if let Some(b) = req.bitrate {
        match enc.control(controls::BITRATE) {
            Some(c) => controls.push(SetControl {
                id: c.id,
                value: clamp(c, b as i64, "bitrate", "bit/s", &who, &mut notes),
            }),
            None => notes.push(format!(
                "{who} has no settable {}; its own bitrate is used",
                controls::name(controls::BITRATE)
            )),
        }
    }
    let gop_control = enc
        .control(controls::H264_I_PERIOD)
        .or_else(|| enc.control(controls::GOP_SIZE));
    let gop_frames = match gop_control {
        Some(c) => {
            let v = clamp(
                c,
                req.idr_interval as i64,
                "IDR interval",
                "frames",
                &who,
                &mut notes,
            );
            controls.push(SetControl { id: c.id, value: v });
            Some(v.max(0) as u32)
        }
        None => {
            if req.idr_interval_explicit {
                notes.push(format!(
                    "{who} has no IDR interval control (V4L2_CID_MPEG_VIDEO_H264_I_PERIOD or GOP_SIZE); \
                     v4l2-idr-interval {} cannot be applied",
                    req.idr_interval
                ));
            }
            None
        }
    };
    for (want, id, what, name) in [
        (
            req.profile,
            controls::H264_PROFILE,
            "profile",
            profile_name as fn(i64) -> String,
        ),
        (
            req.level,
            controls::H264_LEVEL,
            "level",
            level_name as fn(i64) -> String,
        ),
    ] {
        let Some(want) = want else { continue };
        match enc.control(id) {
            Some(c) if c.menu.is_empty() || c.menu.iter().any(|(i, _)| *i == want) => {
                controls.push(SetControl { id, value: want })
            }
            Some(c) => {
                notes.push(format!(
                "H.264 {what} {} is not offered by {who} (it offers {}); its default ({}) is used",
                name(want),
                c.menu.iter().map(|(i, _)| name(*i)).collect::<Vec<_>>().join(", "),
                name(c.default)
            ))
            }
            None => notes.push(format!(
                "{who} has no settable {}; its default is used",
                controls::name(id)
            )),
        }
    }
    if let Some(c) = enc.control(controls::REPEAT_SEQ_HEADER) {
        controls.push(SetControl {
            id: c.id,
            value: req.repeat_headers as i64,
        });
    }
    let can_force_keyframe = enc
        .control(controls::FORCE_KEY_FRAME)
        .is_some_and(|c| c.kind == ControlKind::Button);
    if gop_frames.is_none() && !can_force_keyframe {
        notes.push(format!(
            "{who} has neither an IDR interval control nor FORCE_KEY_FRAME: segments start at the \
             camera's own key frames, however far apart"
        ));
    }
    Ok(Negotiated {
        route,
        fourcc: fmt.fourcc,
        width,
        height,
        interval,
        controls,
        can_force_keyframe,
        gop_frames,
        notes,
    })
}

/// Clamps `want` into the control's range (and step), noting a change.
fn clamp(
    c: &ControlCaps,
    want: i64,
    what: &str,
    unit: &str,
    who: &str,
    notes: &mut Vec<String>,
) -> i64 {
    let mut v = want.clamp(c.min, c.max.max(c.min));
    if c.step > 1 {
        v = c.min + (v - c.min) / c.step as i64 * c.step as i64;
    }
    if v != want {
        notes.push(format!(
            "{what} {want} {unit} is outside what {who} supports ({}..={} step {}); using {v}",
            c.min, c.max, c.step
        ));
    }
    v
}

/// Picks the offered size nearest to the request (exact if offered).
fn choose_size<'a>(
    fmt: &'a FormatCaps,
    req: &Request,
    cam: &DeviceCaps,
    notes: &mut Vec<String>,
) -> (u32, u32, Option<&'a SizeCaps>) {
    let fit = |min: u32, max: u32, step: u32, want: u32| {
        let v = want.clamp(min, max.max(min));
        let step = step.max(1);
        min + (v - min) / step * step
    };
    let candidates = fmt.sizes.iter().map(|s| {
        let (w, h) = match s.size {
            FrameSize::Discrete { width, height } => (width, height),
            FrameSize::Stepwise {
                min_width,
                max_width,
                step_width,
                min_height,
                max_height,
                step_height,
            } => (
                fit(min_width, max_width, step_width, req.width),
                fit(min_height, max_height, step_height, req.height),
            ),
        };
        (w, h, s)
    });
    let Some((w, h, s)) =
        candidates.min_by_key(|(w, h, _)| w.abs_diff(req.width) + h.abs_diff(req.height))
    else {
        return (req.width, req.height, None); // not enumerated: the driver adjusts on S_FMT
    };
    if (w, h) != (req.width, req.height) {
        notes.push(format!(
            "{}x{} is not offered in {} by {} (it offers {}); using {w}x{h}",
            req.width,
            req.height,
            fmt.fourcc,
            cam.label(),
            size_list(fmt)
        ));
    }
    (w, h, Some(s))
}

fn size_list(fmt: &FormatCaps) -> String {
    fmt.sizes
        .iter()
        .map(|s| match s.size {
            FrameSize::Discrete { width, height } => format!("{width}x{height}"),
            FrameSize::Stepwise {
                min_width,
                max_width,
                min_height,
                max_height,
                ..
            } => {
                format!("{min_width}x{min_height} to {max_width}x{max_height}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Picks the offered frame rate nearest to the request (exact if offered).
fn choose_rate(
    rates: Option<&FrameRates>,
    fps: f64,
    f: FourCc,
    w: u32,
    h: u32,
    cam: &DeviceCaps,
    notes: &mut Vec<String>,
) -> Interval {
    let want = Interval::from_fps(fps);
    let (got, offered) = match rates {
        None | Some(FrameRates::Unknown) => return want,
        Some(FrameRates::Discrete(list)) if list.is_empty() => return want,
        Some(FrameRates::Discrete(list)) => {
            let best = *list
                .iter()
                .min_by(|a, b| (a.fps() - fps).abs().total_cmp(&(b.fps() - fps).abs()))
                .expect("non-empty");
            let offered = list
                .iter()
                .map(|i| fmt_fps(i.fps()))
                .collect::<Vec<_>>()
                .join(", ");
            (best, offered)
        }
        Some(FrameRates::Range { min_fps, max_fps }) => (
            Interval::from_fps(fps.clamp(*min_fps, max_fps.max(*min_fps))),
            format!("{}..{}", fmt_fps(*min_fps), fmt_fps(*max_fps)),
        ),
    };
    if (got.fps() - fps).abs() > 0.01 {
        notes.push(format!(
            "{} fps is not offered for {f} {w}x{h} by {} (it offers {offered} fps); using {}",
            fmt_fps(fps),
            cam.label(),
            fmt_fps(got.fps())
        ));
    }
    got
}

fn fmt_fps(f: f64) -> String {
    if (f - f.round()).abs() < 0.005 {
        format!("{}", f.round())
    } else {
        format!("{f:.2}")
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

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
                rates: FrameRates::Discrete(
                    fps.iter().map(|f| Interval { num: 1, den: *f }).collect(),
                ),
            })
            .collect()
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
            controls: vec![
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
            ],
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
            controls: vec![
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
                button(controls::FORCE_KEY_FRAME),
            ],
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
}
