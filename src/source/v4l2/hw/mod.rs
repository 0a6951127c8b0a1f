//! The real V4L2 devices, over the `v4l` crate (device nodes, capabilities, controls) and its
//! generated `v4l_sys` bindings ([`sys`]: formats, buffer queues).
//!
//! [`HwDevice`] is a camera, plus for raw cameras an M2M encoder:
//!
//! - **Direct** (camera delivers H264): S_FMT, S_PARM, codec controls on the camera, 4 MMAP
//!   buffers; each dequeued buffer is copied out (the compressed frame, tens of kB) and requeued.
//! - **Via encoder** (V4L2 stateful encoder interface, kernel doc `dev-encoder`): the encoder's
//!   CAPTURE queue gets H264 first, then its OUTPUT queue the camera's raw format, size and pitch;
//!   S_PARM on OUTPUT sets the frame rate; controls on the encoder. Camera buffers are exported
//!   (EXPBUF) and queued to the encoder's OUTPUT queue as DMABUFs when the layouts agree, so the
//!   picture is never copied by the CPU; otherwise each frame is copied once into an MMAP OUTPUT
//!   buffer ([`copy::copy_frame`]). The raw frame's timestamp is set on the OUTPUT buffer and the
//!   encoder copies it to the H.264 buffer (`V4L2_BUF_FLAG_TIMESTAMP_COPY`). A key frame request
//!   sets FORCE_KEY_FRAME right before the next raw frame is queued, so it applies to that frame.
//!
//! Not run on real hardware by the authors: see the README's V4L2 section.
//!
//! Files: [`node`] (one open node: capabilities, controls, format), [`direct`] and
//! [`pipeline`] (the two routes), [`queue`] (buffer queues), [`copy`] (frame copies between
//! layouts), [`sys`] (the ioctls `v4l` does not wrap).

pub mod copy;
mod direct;
mod node;
mod pipeline;
pub mod queue;
pub mod sys;

pub use node::Node;

use super::negotiate::{self, DeviceCaps, DeviceKind, FourCc, Negotiated, Request, Route};
use super::{Buffer, Device, V4l2Error};
use pipeline::Pipeline;
use queue::Queue;
use std::path::Path;
use std::time::Duration;

/// Buffers per queue.
const BUFFERS: u32 = 4;
/// Coded buffer size asked of encoders (they may round it): room for a 1080p IDR.
const CODED_BUFFER: u32 = 1024 * 1024;

/// Lists `/dev/video*` nodes, sorted by number.
pub fn video_nodes() -> Vec<std::path::PathBuf> {
    let mut nodes: Vec<_> = v4l::context::enum_devices()
        .into_iter()
        .map(|n| n.path().to_path_buf())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n["video".len()..].parse::<u32>().is_ok())
        })
        .collect();
    nodes.sort_by_key(|p| {
        p.to_str()
            .and_then(|s| s.trim_start_matches("/dev/video").parse::<u32>().ok())
    });
    nodes
}

/// Opens the camera at `path` (and, for raw cameras, finds the encoder when negotiating).
pub fn open(path: &Path, encoder: Option<&Path>) -> Result<Box<dyn Device>, V4l2Error> {
    let camera = Node::open(path)?;
    Ok(Box::new(HwDevice {
        camera,
        encoder_path: encoder.map(Path::to_path_buf),
        route: None,
    }))
}

/// Finds the first M2M H.264 encoder (the Pi 4's is /dev/video11).
fn find_encoder(skip: &str) -> Option<Node> {
    video_nodes()
        .into_iter()
        .filter(|p| p.to_str() != Some(skip))
        .filter_map(|p| Node::open(&p).ok())
        .find(|n| n.caps.kind == DeviceKind::Encoder)
}

/// A camera (and encoder) set up and streaming.
enum Streaming {
    Direct { queue: Queue },
    ViaEncoder(Box<Pipeline>),
}
/// The real device; see the module docs.
pub struct HwDevice {
    camera: Node,
    encoder_path: Option<std::path::PathBuf>,
    route: Option<Streaming>,
}

impl Device for HwDevice {
    fn negotiate(&mut self, req: &Request) -> Result<Negotiated, V4l2Error> {
        self.route = None;
        let needs_encoder = !self
            .camera
            .caps
            .capture_formats
            .iter()
            .any(|f| f.fourcc == FourCc::H264);
        let encoder = if needs_encoder {
            match &self.encoder_path {
                Some(p) => Some(Node::open(p)?),
                None => find_encoder(self.camera.path()),
            }
        } else {
            None
        };
        let mut plan = negotiate::plan(req, &self.camera.caps, encoder.as_ref().map(|e| &e.caps))?;
        let streaming = match (plan.route, encoder) {
            (Route::Direct, _) => Streaming::Direct {
                queue: direct::start(&self.camera, &mut plan)?,
            },
            (Route::ViaEncoder, Some(enc)) => {
                Streaming::ViaEncoder(Pipeline::start(&self.camera, &mut plan, enc)?)
            }
            (Route::ViaEncoder, None) => unreachable!("plan() needs an encoder for this route"),
        };
        self.route = Some(streaming);
        Ok(plan)
    }

    fn next_buffer(&mut self, timeout: Duration) -> Result<Option<Buffer>, V4l2Error> {
        match self.route.as_mut() {
            None => Err(V4l2Error::Unsupported {
                path: self.camera.path().into(),
                msg: "not streaming".into(),
            }),
            Some(Streaming::Direct { queue }) => direct::next(queue, self.camera.path(), timeout),
            Some(Streaming::ViaEncoder(p)) => p.next(timeout),
        }
    }

    fn request_keyframe(&mut self) -> Result<(), V4l2Error> {
        match self.route.as_mut() {
            Some(Streaming::ViaEncoder(p)) => {
                p.keyframe_pending = true;
                Ok(())
            }
            _ => self.camera.force_keyframe(),
        }
    }
}

/// Queries one node for `hlsd devices`.
pub fn describe(path: &Path) -> Result<DeviceCaps, V4l2Error> {
    Node::open(path).map(|n| n.caps)
}
