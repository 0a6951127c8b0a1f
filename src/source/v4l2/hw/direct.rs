//! The direct route: the camera delivers H.264 itself. S_FMT, S_PARM and the codec controls on
//! the camera, [`BUFFERS`] MMAP buffers; each dequeued buffer is copied out (the compressed
//! frame, tens of kB) and requeued at once.

use super::node::Node;
use super::queue::{self, Queue};
use super::sys::{self, BufType, Memory};
use super::BUFFERS;
use crate::source::v4l2::negotiate::{FourCc, Negotiated};
use crate::source::v4l2::{Buffer, V4l2Error};
use std::time::Duration;

/// Sets the camera up for H.264 and starts streaming.
pub(super) fn start(cam: &Node, plan: &mut Negotiated) -> Result<Queue, V4l2Error> {
    let t = BufType::capture(cam.mplane);
    cam.set_capture(t, FourCc::H264, plan)?;
    cam.apply_controls(plan);
    let mut queue = Queue::new(cam.dev.handle(), cam.path(), t, Memory::Mmap, BUFFERS)?;
    for i in 0..queue.count() {
        queue.queue(i, 0, None, None)?;
    }
    queue.start()?;
    Ok(queue)
}

/// Copies a dequeued H.264 buffer out and requeues it.
pub(super) fn take_coded(q: &Queue, info: &sys::BufInfo) -> Result<Buffer, V4l2Error> {
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

pub(super) fn next(
    q: &mut Queue,
    path: &str,
    timeout: Duration,
) -> Result<Option<Buffer>, V4l2Error> {
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
