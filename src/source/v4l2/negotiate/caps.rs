//! What a device node offers, as plain data ([`DeviceCaps`]: kind, formats, sizes, frame rates,
//! controls), filled by the hardware code (`hw`) or by test fixtures, and how sizes and frame
//! rates are written in messages and in `hlsd devices` (one formatter for each).

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

    /// The capture format `f`, if offered.
    pub(super) fn format(&self, f: FourCc) -> Option<&FormatCaps> {
        self.capture_formats.iter().find(|c| c.fourcc == f)
    }

    /// The capture formats' codes, for messages ("none" if there is none).
    pub(super) fn format_list(&self) -> String {
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

impl fmt::Display for FrameSize {
    /// `WxH`, or `WxH to WxH` for a stepwise range.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            FrameSize::Discrete { width, height } => write!(f, "{width}x{height}"),
            FrameSize::Stepwise {
                min_width,
                max_width,
                min_height,
                max_height,
                ..
            } => write!(f, "{min_width}x{min_height} to {max_width}x{max_height}"),
        }
    }
}

/// A frame rate for messages: whole rates without decimals, others with two.
pub fn fps_text(f: f64) -> String {
    if (f - f.round()).abs() < 0.005 {
        format!("{}", f.round())
    } else {
        format!("{f:.2}")
    }
}
