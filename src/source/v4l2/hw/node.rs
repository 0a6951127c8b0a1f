//! One open V4L2 node ([`Node`]): its capabilities queried into [`DeviceCaps`], the planned
//! controls applied (a refused one becomes a note), FORCE_KEY_FRAME, and the capture format and
//! frame rate set with what the driver changed noted in the plan.

use super::sys::{self, BufType, PixFormat};
use crate::source::v4l2::controls;
use crate::source::v4l2::negotiate::{self, DeviceCaps, DeviceKind, FourCc, Negotiated};
use crate::source::v4l2::V4l2Error;
use std::path::Path;
use v4l::capability::Flags as Cap;

/// An open device node and what it offers.
pub struct Node {
    pub(super) dev: v4l::Device,
    pub caps: DeviceCaps,
    pub(super) mplane: bool,
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

    pub(super) fn fd(&self) -> i32 {
        self.dev.handle().fd()
    }
    pub(super) fn path(&self) -> &str {
        &self.caps.path
    }

    /// Sets the planned controls one by one; a refused one becomes a note.
    pub(super) fn apply_controls(&self, plan: &mut Negotiated) {
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

    pub(super) fn force_keyframe(&self) -> Result<(), V4l2Error> {
        self.dev
            .set_control(v4l::Control {
                id: controls::FORCE_KEY_FRAME,
                value: v4l::control::Value::None,
            })
            .map_err(|e| V4l2Error::io(self.path(), "FORCE_KEY_FRAME", e))
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

impl Node {
    /// Sets `fourcc` at the planned size on queue `t`, then the planned frame rate; what the
    /// driver changed is noted in `plan`. Returns the format the driver set.
    pub(super) fn set_capture(
        &self,
        t: BufType,
        fourcc: FourCc,
        plan: &mut Negotiated,
    ) -> Result<PixFormat, V4l2Error> {
        let want = PixFormat {
            fourcc,
            width: plan.width,
            height: plan.height,
            bytesperline: 0,
            sizeimage: 0,
        };
        let got = sys::set_format(self.fd(), t, want)
            .map_err(|e| V4l2Error::io(self.path(), "VIDIOC_S_FMT", e))?;
        check_format(self, &want, &got, plan)?;
        set_rate(self, t, plan)?;
        Ok(got)
    }
}
