//! The route through an M2M encoder (V4L2 stateful encoder interface, kernel doc
//! `dev-encoder`) for cameras that give raw frames: the encoder's CAPTURE queue gets H264 first,
//! then its OUTPUT queue the camera's raw format, size and pitch; S_PARM on OUTPUT sets the
//! frame rate; controls on the encoder. Camera buffers are exported (EXPBUF) and queued to the
//! encoder's OUTPUT queue as DMABUFs when the layouts agree (zero copy); otherwise each frame is
//! copied once into an MMAP OUTPUT buffer ([`copy::copy_frame`]). A key frame request sets
//! FORCE_KEY_FRAME right before the next raw frame is queued, so it applies to that frame.

use super::copy::{self, Layout};
use super::direct::take_coded;
use super::node::Node;
use super::queue::{self, Queue};
use super::sys::{self, BufType, Memory, PixFormat};
use super::{BUFFERS, CODED_BUFFER};
use crate::source::v4l2::negotiate::{FourCc, Negotiated};
use crate::source::v4l2::{Buffer, V4l2Error};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

/// Camera → encoder OUTPUT → encoder CAPTURE.
pub(super) struct Pipeline {
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
    pub(super) keyframe_pending: bool,
    dropped: u64,
    cam_path: String,
    encoder: Node,
}

impl Pipeline {
    /// Sets up camera → encoder and starts streaming on all three queues.
    pub(super) fn start(
        cam: &Node,
        plan: &mut Negotiated,
        encoder: Node,
    ) -> Result<Box<Pipeline>, V4l2Error> {
        let ct = BufType::capture(cam.mplane);
        let raw = cam.set_capture(ct, plan.fourcc, plan)?;

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
        Ok(Box::new(Pipeline {
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
        }))
    }

    /// Moves frames camera → encoder until an encoded one is out or `timeout` passes.
    pub(super) fn next(&mut self, timeout: Duration) -> Result<Option<Buffer>, V4l2Error> {
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
        let ts = queue::buffer_timestamp(&frame)
            .or_else(|| Some(crate::source::v4l2::timestamp::monotonic_now()));
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
