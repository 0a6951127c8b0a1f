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

pub mod copy;
pub mod queue;
pub mod sys;

use super::controls;
use super::negotiate::{self, DeviceCaps, DeviceKind, FourCc, Negotiated, Request, Route};
use super::{Buffer, Device, V4l2Error};
use copy::Layout;
use queue::Queue;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};
use sys::{BufType, Memory, PixFormat};
use v4l::capability::Flags as Cap;

/// Buffers per queue.
const BUFFERS: u32 = 4;
/// Coded buffer size asked of encoders (they may round it): room for a 1080p IDR.
const CODED_BUFFER: u32 = 1024 * 1024;

/// An open device node and what it offers.
pub struct Node {
    dev: v4l::Device,
    pub caps: DeviceCaps,
    mplane: bool,
}

impl Node {
    /// Opens `path` and queries its capabilities, formats and encoder controls.
    pub fn open(path: &Path) -> Result<Node, V4l2Error> {
        let p = path.display().to_string();
        let dev = v4l::Device::with_path(path).map_err(|err| match err.raw_os_error() {
            Some(libc::ENODEV) | Some(libc::ENXIO) => V4l2Error::Gone {
                path: p.clone(),
                err,
            },
            _ => V4l2Error::Open {
                path: p.clone(),
                err,
            },
        })?;
        let qc = dev
            .query_caps()
            .map_err(|e| V4l2Error::io(&p, "VIDIOC_QUERYCAP", e))?;
        let flags = qc.capabilities;
        let fd = dev.handle().fd();
        let m2m = flags.intersects(Cap::VIDEO_M2M | Cap::VIDEO_M2M_MPLANE);
        let mplane = flags.intersects(Cap::VIDEO_M2M_MPLANE | Cap::VIDEO_CAPTURE_MPLANE)
            && !flags.contains(Cap::VIDEO_CAPTURE);
        let has_capture = flags.intersects(Cap::VIDEO_CAPTURE | Cap::VIDEO_CAPTURE_MPLANE) || m2m;
        let capture_formats = if has_capture {
            sys::enum_formats(fd, BufType::capture(mplane))
                .map_err(|e| V4l2Error::io(&p, "VIDIOC_ENUM_FMT", e))?
        } else {
            Vec::new()
        };
        let output_formats = if m2m {
            sys::enum_formats(fd, BufType::output(mplane))
                .map_err(|e| V4l2Error::io(&p, "VIDIOC_ENUM_FMT", e))?
        } else {
            Vec::new()
        };
        let kind = if m2m {
            if capture_formats.iter().any(|f| f.fourcc == FourCc::H264) {
                DeviceKind::Encoder
            } else {
                DeviceKind::Converter
            }
        } else if has_capture && flags.contains(Cap::STREAMING) {
            DeviceKind::Camera
        } else {
            DeviceKind::Other
        };
        let controls = controls::ENCODER_CONTROLS
            .iter()
            .filter_map(|id| sys::query_control(fd, *id))
            .collect();
        let caps = DeviceCaps {
            path: p,
            driver: qc.driver,
            card: qc.card,
            kind,
            capture_formats,
            output_formats,
            controls,
        };
        Ok(Node { dev, caps, mplane })
    }

    fn fd(&self) -> i32 {
        self.dev.handle().fd()
    }
    fn path(&self) -> &str {
        &self.caps.path
    }

    /// Sets the planned controls one by one; a refused one becomes a note.
    fn apply_controls(&self, plan: &mut Negotiated) {
        for c in &plan.controls {
            let kind = self
                .caps
                .controls
                .iter()
                .find(|x| x.id == c.id)
                .map(|x| x.kind);
            let value = match kind {
                Some(negotiate::ControlKind::Boolean) => v4l::control::Value::Boolean(c.value != 0),
                _ => v4l::control::Value::Integer(c.value),
            };
            if let Err(e) = self.dev.set_control(v4l::Control { id: c.id, value }) {
                plan.notes.push(format!(
                    "{} refused {} = {}: {e}",
                    self.caps.label(),
                    controls::name(c.id),
                    c.value
                ));
            }
        }
    }

    fn force_keyframe(&self) -> Result<(), V4l2Error> {
        self.dev
            .set_control(v4l::Control {
                id: controls::FORCE_KEY_FRAME,
                value: v4l::control::Value::None,
            })
            .map_err(|e| V4l2Error::io(self.path(), "FORCE_KEY_FRAME", e))
    }
}

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

/// Camera → encoder OUTPUT → encoder CAPTURE.
struct Pipeline {
    // Field order = drop order: the encoder's queues release the DMABUFs before the exported
    // fds close. (Each queue holds its device's fd open itself.)
    coded: Queue,
    raw_in: Queue,
    cam: Queue,
    /// DMABUF fds of the camera buffers (zero-copy mode).
    exported: Vec<OwnedFd>,
    /// Encoder OUTPUT slots free to fill (copy mode) / camera buffers held by the encoder.
    free_slots: Vec<u32>,
    zero_copy: bool,
    fourcc: FourCc,
    width: u32,
    height: u32,
    cam_layout: Layout,
    enc_layout: Layout,
    keyframe_pending: bool,
    dropped: u64,
    cam_path: String,
    encoder: Node,
}

/// The real device; see the module docs.
pub struct HwDevice {
    camera: Node,
    encoder_path: Option<std::path::PathBuf>,
    route: Option<Streaming>,
}

impl HwDevice {
    fn start_direct(&mut self, plan: &mut Negotiated) -> Result<Streaming, V4l2Error> {
        let cam = &self.camera;
        let t = BufType::capture(cam.mplane);
        let want = PixFormat {
            fourcc: FourCc::H264,
            width: plan.width,
            height: plan.height,
            bytesperline: 0,
            sizeimage: 0,
        };
        let got = sys::set_format(cam.fd(), t, want)
            .map_err(|e| V4l2Error::io(cam.path(), "VIDIOC_S_FMT", e))?;
        check_format(cam, &want, &got, plan)?;
        set_rate(cam, t, plan)?;
        cam.apply_controls(plan);
        let mut queue = Queue::new(cam.dev.handle(), cam.path(), t, Memory::Mmap, BUFFERS)?;
        for i in 0..queue.count() {
            queue.queue(i, 0, None, None)?;
        }
        queue.start()?;
        Ok(Streaming::Direct { queue })
    }

    fn start_via_encoder(
        &mut self,
        plan: &mut Negotiated,
        encoder: Node,
    ) -> Result<Streaming, V4l2Error> {
        let cam = &self.camera;
        let ct = BufType::capture(cam.mplane);
        let want = PixFormat {
            fourcc: plan.fourcc,
            width: plan.width,
            height: plan.height,
            bytesperline: 0,
            sizeimage: 0,
        };
        let raw = sys::set_format(cam.fd(), ct, want)
            .map_err(|e| V4l2Error::io(cam.path(), "VIDIOC_S_FMT", e))?;
        check_format(cam, &want, &raw, plan)?;
        set_rate(cam, ct, plan)?;

        // Encoder: coded format first, then the raw format with the camera's pitch.
        let (et_cap, et_out) = (
            BufType::capture(encoder.mplane),
            BufType::output(encoder.mplane),
        );
        let coded = PixFormat {
            fourcc: FourCc::H264,
            width: raw.width,
            height: raw.height,
            bytesperline: 0,
            sizeimage: CODED_BUFFER,
        };
        sys::set_format(encoder.fd(), et_cap, coded)
            .map_err(|e| V4l2Error::io(encoder.path(), "VIDIOC_S_FMT (CAPTURE)", e))?;
        let enc_raw = sys::set_format(encoder.fd(), et_out, raw)
            .map_err(|e| V4l2Error::io(encoder.path(), "VIDIOC_S_FMT (OUTPUT)", e))?;
        if enc_raw.fourcc != raw.fourcc
            || enc_raw.width != raw.width
            || enc_raw.height != raw.height
        {
            return Err(V4l2Error::Unsupported {
                path: encoder.path().into(),
                msg: format!(
                    "the encoder does not take {} {}x{} (it set {} {}x{})",
                    raw.fourcc,
                    raw.width,
                    raw.height,
                    enc_raw.fourcc,
                    enc_raw.width,
                    enc_raw.height
                ),
            });
        }
        if let Ok(Some(i)) = sys::set_interval(encoder.fd(), et_out, plan.interval) {
            if i != plan.interval {
                tracing::debug!(
                    encoder = encoder.path(),
                    fps = i.fps(),
                    "encoder frame rate adjusted"
                );
            }
        }
        encoder.apply_controls(plan);

        let cam_layout = Layout::of(raw.fourcc, raw.height, raw.bytesperline, raw.sizeimage);
        let enc_layout = Layout::of(
            raw.fourcc,
            raw.height,
            enc_raw.bytesperline,
            enc_raw.sizeimage,
        );
        let mut cam_q = Queue::new(cam.dev.handle(), cam.path(), ct, Memory::Mmap, BUFFERS)?;
        // Zero copy: the encoder reads the camera's buffers through DMABUF.
        let mut zero_copy = None;
        if cam_layout == enc_layout && enc_raw.sizeimage <= raw.sizeimage {
            let exported: Result<Vec<OwnedFd>, _> =
                (0..cam_q.count()).map(|i| cam_q.export(i)).collect();
            match exported {
                Ok(fds) => match Queue::new(
                    encoder.dev.handle(),
                    encoder.path(),
                    et_out,
                    Memory::Dmabuf,
                    cam_q.count(),
                ) {
                    Ok(q) if q.count() >= cam_q.count() => zero_copy = Some((q, fds)),
                    Ok(_) => tracing::info!(
                        "encoder has fewer DMABUF slots than camera buffers; copying frames"
                    ),
                    Err(e) => {
                        tracing::info!(error = %e, "encoder does not import DMABUF; copying frames")
                    }
                },
                Err(e) => tracing::info!(error = %e, "camera cannot export DMABUF; copying frames"),
            }
        } else {
            tracing::info!(camera = ?cam_layout, encoder = ?enc_layout, "camera and encoder lay frames out differently; copying frames");
        }
        let (raw_in, exported, free_slots, zc) = match zero_copy {
            Some((q, fds)) => (q, fds, Vec::new(), true),
            None => {
                let q = Queue::new(
                    encoder.dev.handle(),
                    encoder.path(),
                    et_out,
                    Memory::Mmap,
                    BUFFERS,
                )?;
                let free = (0..q.count()).collect();
                (q, Vec::new(), free, false)
            }
        };
        let mut coded_q = Queue::new(
            encoder.dev.handle(),
            encoder.path(),
            et_cap,
            Memory::Mmap,
            BUFFERS,
        )?;
        for i in 0..coded_q.count() {
            coded_q.queue(i, 0, None, None)?;
        }
        let mut raw_in = raw_in;
        raw_in.start()?;
        coded_q.start()?;
        for i in 0..cam_q.count() {
            cam_q.queue(i, 0, None, None)?;
        }
        cam_q.start()?;
        tracing::info!(camera = cam.path(), encoder = encoder.path(), zero_copy = zc, format = %raw.fourcc, "V4L2 M2M encoder pipeline started");
        Ok(Streaming::ViaEncoder(Box::new(Pipeline {
            coded: coded_q,
            raw_in,
            cam: cam_q,
            exported,
            free_slots,
            zero_copy: zc,
            fourcc: raw.fourcc,
            width: raw.width,
            height: raw.height,
            cam_layout,
            enc_layout,
            keyframe_pending: false,
            dropped: 0,
            cam_path: cam.path().to_string(),
            encoder,
        })))
    }
}

/// Fails if the driver picked another format; notes a changed size.
fn check_format(
    node: &Node,
    want: &PixFormat,
    got: &PixFormat,
    plan: &mut Negotiated,
) -> Result<(), V4l2Error> {
    if got.fourcc != want.fourcc {
        return Err(V4l2Error::Unsupported {
            path: node.path().into(),
            msg: format!(
                "asked for {} but the driver set {}",
                want.fourcc, got.fourcc
            ),
        });
    }
    if (got.width, got.height) != (want.width, want.height) {
        plan.notes.push(format!(
            "{} set {}x{} instead of {}x{}",
            node.caps.label(),
            got.width,
            got.height,
            want.width,
            want.height
        ));
        plan.width = got.width;
        plan.height = got.height;
    }
    Ok(())
}

/// Sets the camera's frame interval; notes what the driver chose.
fn set_rate(node: &Node, t: BufType, plan: &mut Negotiated) -> Result<(), V4l2Error> {
    match sys::set_interval(node.fd(), t, plan.interval)
        .map_err(|e| V4l2Error::io(node.path(), "VIDIOC_S_PARM", e))?
    {
        Some(got) if (got.fps() - plan.interval.fps()).abs() > 0.01 => {
            plan.notes.push(format!(
                "{} runs at {:.2} fps instead of {:.2}",
                node.caps.label(),
                got.fps(),
                plan.interval.fps()
            ));
            plan.interval = got;
        }
        _ => {}
    }
    Ok(())
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
            (Route::Direct, _) => self.start_direct(&mut plan)?,
            (Route::ViaEncoder, Some(enc)) => self.start_via_encoder(&mut plan, enc)?,
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
            Some(Streaming::Direct { queue }) => next_direct(queue, self.camera.path(), timeout),
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

/// Copies a dequeued H.264 buffer out and requeues it.
fn take_coded(q: &Queue, info: &sys::BufInfo) -> Result<Buffer, V4l2Error> {
    use v4l::v4l_sys::{V4L2_BUF_FLAG_ERROR, V4L2_BUF_FLAG_KEYFRAME};
    let buf = Buffer {
        data: q
            .data(info.index, info.bytesused as usize)
            .get(info.data_offset as usize..)
            .unwrap_or(&[])
            .to_vec(),
        timestamp: queue::buffer_timestamp(info),
        keyframe: info.flags & V4L2_BUF_FLAG_KEYFRAME != 0,
        corrupt: info.flags & V4L2_BUF_FLAG_ERROR != 0,
        sequence: info.sequence,
    };
    q.queue(info.index, 0, None, None)?;
    Ok(buf)
}

fn next_direct(q: &mut Queue, path: &str, timeout: Duration) -> Result<Option<Buffer>, V4l2Error> {
    if let Some(info) = q.dequeue()? {
        return take_coded(q, &info).map(Some);
    }
    let rev = sys::poll(&[(q.fd(), libc::POLLIN)], timeout.as_millis() as i32)
        .map_err(|e| V4l2Error::io(path, "poll", e))?;
    if rev[0] & (libc::POLLERR | libc::POLLHUP) != 0 && rev[0] & libc::POLLIN == 0 {
        // A dequeue reports the real error (ENODEV after an unplug).
        q.dequeue()?;
        return Err(V4l2Error::Gone {
            path: path.into(),
            err: std::io::Error::other("poll: POLLERR"),
        });
    }
    match q.dequeue()? {
        Some(info) => take_coded(q, &info).map(Some),
        None => Ok(None),
    }
}

impl Pipeline {
    /// Moves frames camera → encoder until an encoded one is out or `timeout` passes.
    fn next(&mut self, timeout: Duration) -> Result<Option<Buffer>, V4l2Error> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(info) = self.coded.dequeue()? {
                return take_coded(&self.coded, &info).map(Some);
            }
            // Raw frames the encoder is done with.
            while let Some(done) = self.raw_in.dequeue()? {
                if self.zero_copy {
                    self.cam.queue(done.index, 0, None, None)?;
                } else {
                    self.free_slots.push(done.index);
                }
            }
            if let Some(frame) = self.cam.dequeue()? {
                self.feed(frame)?;
                continue;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            let (cam_fd, enc_fd) = (self.cam.fd(), self.coded.fd());
            let rev = sys::poll(
                &[
                    (cam_fd, libc::POLLIN),
                    (enc_fd, libc::POLLIN | libc::POLLOUT),
                ],
                left.as_millis().max(1) as i32,
            )
            .map_err(|e| V4l2Error::io(self.encoder.path(), "poll", e))?;
            // POLLERR without data: a dequeue reports the real error (ENODEV after an unplug).
            if rev[0] & libc::POLLERR != 0 && rev[0] & libc::POLLIN == 0 {
                self.cam.dequeue()?;
                return Err(V4l2Error::Gone {
                    path: self.cam_path.clone(),
                    err: std::io::Error::other("poll: POLLERR"),
                });
            }
            if rev[1] & libc::POLLERR != 0 && rev[1] & (libc::POLLIN | libc::POLLOUT) == 0 {
                self.coded.dequeue()?;
                return Err(V4l2Error::Gone {
                    path: self.encoder.path().into(),
                    err: std::io::Error::other("poll: POLLERR"),
                });
            }
        }
    }

    /// Hands one camera frame to the encoder (dropping it if the encoder has no free slot).
    fn feed(&mut self, frame: sys::BufInfo) -> Result<(), V4l2Error> {
        let ts =
            queue::buffer_timestamp(&frame).or_else(|| Some(super::timestamp::monotonic_now()));
        if frame.flags & v4l::v4l_sys::V4L2_BUF_FLAG_ERROR != 0 {
            return self.cam.queue(frame.index, 0, None, None);
        }
        let slot = if self.zero_copy {
            Some(frame.index)
        } else {
            self.free_slots.pop()
        };
        let Some(slot) = slot else {
            self.dropped += 1;
            if self.dropped.is_power_of_two() {
                tracing::warn!(
                    dropped = self.dropped,
                    "encoder busy: camera frames dropped"
                );
            }
            return self.cam.queue(frame.index, 0, None, None);
        };
        if std::mem::take(&mut self.keyframe_pending) {
            // Applies to the next OUTPUT buffer queued: this frame.
            self.encoder.force_keyframe()?;
        }
        if self.zero_copy {
            let fd = self.exported[frame.index as usize].as_raw_fd();
            let len = self.cam.length(frame.index) as u32;
            self.raw_in
                .queue(slot, frame.bytesused, ts, Some((fd, len)))?;
        } else {
            let (f, w, h, sl, dl) = (
                self.fourcc,
                self.width,
                self.height,
                self.cam_layout,
                self.enc_layout,
            );
            let src = self.cam.data(frame.index, frame.bytesused as usize);
            let used = copy::copy_frame(f, w, h, src, sl, self.raw_in.data_mut(slot), dl);
            self.cam.queue(frame.index, 0, None, None)?;
            self.raw_in.queue(slot, used as u32, ts, None)?;
        }
        Ok(())
    }
}

/// Queries one node for `hlsd devices`.
pub fn describe(path: &Path) -> Result<DeviceCaps, V4l2Error> {
    Node::open(path).map(|n| n.caps)
}
