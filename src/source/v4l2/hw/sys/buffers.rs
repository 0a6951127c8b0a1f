//! V4L2 buffer ioctls: requesting, querying, queueing, dequeueing and exporting buffers of a
//! queue (single- and multi-planar), stream on/off, and poll over several device fds.

#![allow(non_upper_case_globals)]

use super::{ioctl, zeroed, BufType};
use std::io;
use std::os::raw::c_int;
use v4l::v4l2::vidioc;
use v4l::v4l_sys::*;

/// Memory of a queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Memory {
    Mmap,
    Dmabuf,
}

impl Memory {
    fn raw(self) -> u32 {
        match self {
            Memory::Mmap => v4l2_memory_V4L2_MEMORY_MMAP,
            Memory::Dmabuf => v4l2_memory_V4L2_MEMORY_DMABUF,
        }
    }
}

/// VIDIOC_REQBUFS; returns the count granted.
pub fn request_buffers(fd: c_int, t: BufType, memory: Memory, count: u32) -> io::Result<u32> {
    let mut r: v4l2_requestbuffers = zeroed();
    r.count = count;
    r.type_ = t.0;
    r.memory = memory.raw();
    // SAFETY: VIDIOC_REQBUFS takes a v4l2_requestbuffers.
    unsafe { ioctl(fd, vidioc::VIDIOC_REQBUFS, &mut r) }?;
    Ok(r.count)
}

/// A buffer as queued or dequeued.
#[derive(Debug, Clone, Copy, Default)]
pub struct BufInfo {
    pub index: u32,
    pub bytesused: u32,
    pub flags: u32,
    /// timeval as (seconds, microseconds).
    pub timestamp: (i64, i64),
    pub sequence: u32,
    /// Length of the buffer (plane 0).
    pub length: u32,
    /// mmap offset (MMAP) of plane 0.
    pub offset: u32,
    /// Where the payload starts in the plane (multi-planar drivers may put a header first).
    pub data_offset: u32,
}

/// Builds a v4l2_buffer (with one plane for multi-planar queues) and runs `req` on it.
fn buffer_ioctl(
    fd: c_int,
    req: vidioc::_IOC_TYPE,
    t: BufType,
    memory: Memory,
    info: &mut BufInfo,
    dmabuf_fd: Option<c_int>,
) -> io::Result<()> {
    let mut b: v4l2_buffer = zeroed();
    let mut plane: v4l2_plane = zeroed();
    b.index = info.index;
    b.type_ = t.0;
    b.memory = memory.raw();
    b.bytesused = info.bytesused;
    b.flags = info.flags;
    b.field = v4l2_field_V4L2_FIELD_NONE;
    b.timestamp.tv_sec = info.timestamp.0 as _;
    b.timestamp.tv_usec = info.timestamp.1 as _;
    if t.is_mplane() {
        plane.bytesused = info.bytesused;
        plane.length = info.length;
        if let Some(dfd) = dmabuf_fd {
            plane.m.fd = dfd;
        }
        b.length = 1;
        b.m.planes = &mut plane;
    } else {
        b.length = info.length;
        if let Some(dfd) = dmabuf_fd {
            b.m.fd = dfd;
        }
    }
    // SAFETY: `b` is a v4l2_buffer; for multi-planar queues its plane pointer refers to `plane`,
    // which outlives the call.
    unsafe { ioctl(fd, req, &mut b) }?;
    info.index = b.index;
    info.flags = b.flags;
    // time_t is 32 bits on armhf: the casts are not no-ops everywhere.
    #[allow(clippy::unnecessary_cast)]
    {
        info.timestamp = (b.timestamp.tv_sec as i64, b.timestamp.tv_usec as i64);
    }
    info.sequence = b.sequence;
    // SAFETY: reading the union members the ioctl filled for this memory type.
    unsafe {
        if t.is_mplane() {
            info.bytesused = plane.bytesused;
            info.data_offset = plane.data_offset.min(plane.bytesused);
            info.length = plane.length;
            info.offset = if memory == Memory::Mmap {
                plane.m.mem_offset
            } else {
                0
            };
        } else {
            info.bytesused = b.bytesused;
            info.length = b.length;
            info.offset = if memory == Memory::Mmap {
                b.m.offset
            } else {
                0
            };
        }
    }
    Ok(())
}

pub fn query_buffer(fd: c_int, t: BufType, index: u32) -> io::Result<BufInfo> {
    let mut info = BufInfo {
        index,
        ..Default::default()
    };
    buffer_ioctl(
        fd,
        vidioc::VIDIOC_QUERYBUF,
        t,
        Memory::Mmap,
        &mut info,
        None,
    )?;
    Ok(info)
}

pub fn queue_buffer(
    fd: c_int,
    t: BufType,
    memory: Memory,
    mut info: BufInfo,
    dmabuf_fd: Option<c_int>,
) -> io::Result<()> {
    buffer_ioctl(fd, vidioc::VIDIOC_QBUF, t, memory, &mut info, dmabuf_fd)
}

/// VIDIOC_DQBUF on a non-blocking fd: None if no buffer is ready.
pub fn dequeue_buffer(fd: c_int, t: BufType, memory: Memory) -> io::Result<Option<BufInfo>> {
    let mut info = BufInfo::default();
    match buffer_ioctl(fd, vidioc::VIDIOC_DQBUF, t, memory, &mut info, None) {
        Ok(()) => Ok(Some(info)),
        Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => Ok(None),
        Err(e) => Err(e),
    }
}

/// VIDIOC_EXPBUF: a DMABUF fd for an MMAP buffer (plane 0).
pub fn export_buffer(fd: c_int, t: BufType, index: u32) -> io::Result<std::os::fd::OwnedFd> {
    let mut e: v4l2_exportbuffer = zeroed();
    e.type_ = t.0;
    e.index = index;
    e.plane = 0;
    e.flags = (libc::O_RDWR | libc::O_CLOEXEC) as u32;
    // SAFETY: VIDIOC_EXPBUF takes a v4l2_exportbuffer; the fd it returns is ours to own.
    unsafe {
        ioctl(fd, vidioc::VIDIOC_EXPBUF, &mut e)?;
        Ok(std::os::fd::FromRawFd::from_raw_fd(e.fd))
    }
}

pub fn stream(fd: c_int, t: BufType, on: bool) -> io::Result<()> {
    let mut ty = t.0 as c_int;
    let req = if on {
        vidioc::VIDIOC_STREAMON
    } else {
        vidioc::VIDIOC_STREAMOFF
    };
    // SAFETY: VIDIOC_STREAMON/OFF take the buffer type as an int.
    unsafe { ioctl(fd, req, &mut ty) }
}

/// poll(2) on several fds; returns their revents (all zero on timeout).
pub fn poll(fds: &[(c_int, i16)], timeout_ms: i32) -> io::Result<Vec<i16>> {
    let mut p: Vec<libc::pollfd> = fds
        .iter()
        .map(|&(fd, events)| libc::pollfd {
            fd,
            events,
            revents: 0,
        })
        .collect();
    loop {
        // SAFETY: `p` is a valid array of pollfd of the given length.
        let r = unsafe { libc::poll(p.as_mut_ptr(), p.len() as libc::nfds_t, timeout_ms) };
        if r >= 0 {
            return Ok(p.iter().map(|x| x.revents).collect());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}
