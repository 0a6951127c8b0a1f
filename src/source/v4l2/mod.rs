//! `v4l2:/dev/videoN`: H.264 from the kernel's V4L2 interface, no helper process.
//!
//! Two routes, chosen by what the camera offers ([`negotiate`]):
//!
//! - **Direct**: the camera delivers `H264` itself (UVC H.264 webcams, the Pi's legacy
//!   `bcm2835-v4l2` camera driver). One mmap'd capture queue; the camera's codec controls.
//! - **Via an M2M encoder**: the camera gives raw NV12/YU12/YUYV and a stateful memory-to-memory
//!   encoder (the Pi 4's `bcm2835-codec` at /dev/video11) turns it into H.264. Camera buffers are
//!   handed to the encoder as DMABUFs when both drivers allow it (no copy), else copied once.
//!
//! Either way a [`Device`] yields one access unit per buffer with its CLOCK_MONOTONIC capture
//! timestamp. [`session`] feeds each buffer to [`crate::h264::AuParser`] (push then flush: Format
//! events and AVCC come from there), stamps frames with [`timestamp::TimestampMapper`] (dts at
//! 90 kHz, wall-clock capture time → PROGRAM-DATE-TIME), asks for key frames per
//! [`keyframe::KeyframePolicy`], and on any device error or unplug reopens with
//! [`Backoff`](crate::source::Backoff), marking a discontinuity; it never gives up. The hardware
//! side (`hw`, cargo feature `v4l2`, on by default on Linux) is the only part that needs a
//! device; the rest is tested against a fake that replays the Pi capture fixtures as V4L2
//! buffers.

pub mod controls;
pub mod devices;
#[cfg(test)]
mod fake;
#[cfg(all(feature = "v4l2", target_os = "linux"))]
pub mod hw;
pub mod keyframe;
pub mod negotiate;
pub mod session;
pub mod timestamp;

pub use negotiate::{DeviceCaps, Negotiated, Request};

use super::{SourceConfig, SourceError};
use crate::h264::H264Error;
use crate::media::SourceEvent;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::mpsc;

/// `v4l2-*` settings (from the config).
#[derive(Debug, Clone)]
pub struct V4l2Config {
    /// Requested size and frame rate (the config's `width`, `height`, `fps`).
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    /// Encoder bitrate in bit/s; None keeps the device's default.
    pub bitrate: Option<u32>,
    /// IDR interval in frames; None: fps × segment duration (one GOP per segment).
    pub idr_interval: Option<u32>,
    /// H.264 profile name (`baseline`, `main`, `high`, ...).
    pub profile: Option<String>,
    /// H.264 level (`4`, `4.1`, ...).
    pub level: Option<String>,
    /// Ask the encoder to repeat SPS/PPS before every IDR.
    pub repeat_headers: bool,
    /// M2M encoder node for raw cameras; None: the first one found.
    pub encoder: Option<PathBuf>,
    /// Segment target in seconds (key frame policy).
    pub segment_duration: f64,
}

impl Default for V4l2Config {
    fn default() -> Self {
        V4l2Config {
            width: 1280,
            height: 720,
            fps: 30,
            bitrate: None,
            idr_interval: None,
            profile: None,
            level: None,
            repeat_headers: true,
            encoder: None,
            segment_duration: 1.0,
        }
    }
}

impl V4l2Config {
    /// The device request; profile/level names were checked by `Config::validate`.
    pub fn request(&self) -> Result<Request, String> {
        let auto_gop = (self.fps as f64 * self.segment_duration).round().max(1.0) as u32;
        Ok(Request {
            width: self.width,
            height: self.height,
            fps: self.fps as f64,
            bitrate: self.bitrate,
            idr_interval: self.idr_interval.unwrap_or(auto_gop),
            idr_interval_explicit: self.idr_interval.is_some(),
            profile: self
                .profile
                .as_deref()
                .map(controls::parse_profile)
                .transpose()?,
            level: self
                .level
                .as_deref()
                .map(controls::parse_level)
                .transpose()?,
            repeat_headers: self.repeat_headers,
        })
    }
}

/// Errors of a V4L2 device; each names the device node. All of them end a session, after which
/// the device is reopened with backoff.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum V4l2Error {
    #[error("{path}: cannot open: {err}")]
    Open { path: String, err: std::io::Error },
    #[error("{path}: the device disappeared (unplugged?): {err}")]
    Gone { path: String, err: std::io::Error },
    #[error("{path}: {op} failed: {err}")]
    Io {
        path: String,
        op: &'static str,
        err: std::io::Error,
    },
    #[error("{path}: no frame for {} s", .after.as_secs_f64())]
    Stalled { path: String, after: Duration },
    #[error("{path}: {msg}")]
    Unsupported { path: String, msg: String },
    #[error("{path}: {err}")]
    H264 { path: String, err: H264Error },
    #[error(
        "this hlsd was built without V4L2 support (cargo feature `v4l2`, Linux only); rebuild \
         with default features (needs clang and libclang-dev: infra/setup.sh installs them)"
    )]
    NotBuilt,
}

impl V4l2Error {
    /// Classifies an I/O error of `op` on `path`: ENODEV/ENXIO/ENOENT mean the device went away.
    pub fn io(path: &str, op: &'static str, err: std::io::Error) -> Self {
        match err.raw_os_error() {
            Some(libc::ENODEV) | Some(libc::ENXIO) | Some(libc::ENOENT) => V4l2Error::Gone {
                path: path.into(),
                err,
            },
            _ => V4l2Error::Io {
                path: path.into(),
                op,
                err,
            },
        }
    }
}

/// One dequeued buffer of H.264 (one access unit, as V4L2 H.264 devices deliver them).
#[derive(Debug, Clone)]
pub struct Buffer {
    pub data: Vec<u8>,
    /// CLOCK_MONOTONIC capture time; None if the driver gives none (`TIMESTAMP_UNKNOWN`, zero).
    pub timestamp: Option<Duration>,
    /// `V4L2_BUF_FLAG_KEYFRAME`.
    pub keyframe: bool,
    /// `V4L2_BUF_FLAG_ERROR`: the driver says the data is corrupt.
    pub corrupt: bool,
    /// The driver's frame counter.
    pub sequence: u32,
}

/// A V4L2 H.264 source: a camera with its own encoder, or a raw camera plus an M2M encoder.
pub trait Device: Send {
    /// Sets formats, frame rate and encoder controls for `req` and starts streaming. Returns
    /// what was applied, with notes on what differs from the request.
    fn negotiate(&mut self, req: &Request) -> Result<Negotiated, V4l2Error>;
    /// The next buffer of H.264, or None if none came within `timeout`.
    fn next_buffer(&mut self, timeout: Duration) -> Result<Option<Buffer>, V4l2Error>;
    /// Makes the next frame the encoder starts an IDR (`V4L2_CID_MPEG_VIDEO_FORCE_KEY_FRAME`).
    fn request_keyframe(&mut self) -> Result<(), V4l2Error>;
}

/// Opens a device for one session.
pub type Opener = std::sync::Arc<dyn Fn() -> Result<Box<dyn Device>, V4l2Error> + Send + Sync>;

/// Runs `v4l2:PATH` until the receiver is dropped; device errors are retried forever.
pub async fn run(
    path: &Path,
    cfg: &SourceConfig,
    tx: mpsc::Sender<SourceEvent>,
) -> Result<(), SourceError> {
    let name = format!("v4l2:{}", path.display());
    let req = cfg.v4l2.request().map_err(|msg| SourceError::Io {
        source_name: name.clone(),
        err: std::io::Error::other(msg),
    })?;
    let opener = opener(path, &cfg.v4l2);
    let opts = session::SessionOptions::from_config(cfg);
    session::supervise(name, opener, req, opts, tx).await;
    Ok(())
}

#[cfg(all(feature = "v4l2", target_os = "linux"))]
fn opener(path: &Path, cfg: &V4l2Config) -> Opener {
    let path = path.to_path_buf();
    let encoder = cfg.encoder.clone();
    std::sync::Arc::new(move || hw::open(&path, encoder.as_deref()))
}

#[cfg(not(all(feature = "v4l2", target_os = "linux")))]
fn opener(_path: &Path, _cfg: &V4l2Config) -> Opener {
    std::sync::Arc::new(|| Err(V4l2Error::NotBuilt))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_from_config() {
        let c = V4l2Config {
            segment_duration: 2.0,
            fps: 25,
            profile: Some("high".into()),
            level: Some("4.1".into()),
            ..Default::default()
        };
        let r = c.request().unwrap();
        assert_eq!(
            (r.idr_interval, r.idr_interval_explicit, r.profile, r.level),
            (50, false, Some(4), Some(12))
        );
        let r = V4l2Config {
            idr_interval: Some(15),
            ..c.clone()
        }
        .request()
        .unwrap();
        assert_eq!((r.idr_interval, r.idr_interval_explicit), (15, true));
        assert!(V4l2Config {
            profile: Some("ultra".into()),
            ..c
        }
        .request()
        .is_err());
        let e = V4l2Error::io(
            "/dev/video0",
            "VIDIOC_DQBUF",
            std::io::Error::from_raw_os_error(libc::ENODEV),
        );
        assert!(matches!(e, V4l2Error::Gone { .. }));
        assert_eq!(
            e.to_string(),
            "/dev/video0: the device disappeared (unplugged?): No such device (os error 19)"
        );
    }
}
