//! One V4L2 buffer queue (single- or multi-planar with one plane): MMAP buffers mapped into
//! hlsd, or DMABUF slots filled with another device's exported buffers (zero copy between a
//! camera and an M2M encoder). Dropping the queue stops streaming, unmaps and frees the buffers,
//! ignoring errors: after an unplug every call fails with ENODEV and that is expected.

use super::super::V4l2Error;
use super::sys::{self, BufInfo, BufType, Memory};
use std::os::fd::OwnedFd;
use std::os::raw::c_int;
use std::sync::Arc;
use std::time::Duration;

struct Mapping {
    ptr: *mut u8,
    len: usize,
}

/// A buffer queue of one device; see the module docs.
pub struct Queue {
    /// Keeps the device fd open while the queue exists.
    handle: Arc<v4l::device::Handle>,
    path: String,
    pub t: BufType,
    pub memory: Memory,
    maps: Vec<Mapping>,
    count: u32,
    streaming: bool,
}

// SAFETY: the mappings are owned by the queue and only touched through &self/&mut self; the
// queue moves between threads as a whole (one session thread at a time).
unsafe impl Send for Queue {}

impl Queue {
    /// REQBUFS `count` buffers of `memory`; MMAP buffers are mapped.
    pub fn new(
        handle: Arc<v4l::device::Handle>,
        path: &str,
        t: BufType,
        memory: Memory,
        count: u32,
    ) -> Result<Queue, V4l2Error> {
        let fd = handle.fd();
        let count = sys::request_buffers(fd, t, memory, count)
            .map_err(|e| V4l2Error::io(path, "VIDIOC_REQBUFS", e))?;
        if count == 0 {
            return Err(V4l2Error::Unsupported {
                path: path.into(),
                msg: "the driver granted no buffers".into(),
            });
        }
        let mut q = Queue {
            handle,
            path: path.into(),
            t,
            memory,
            maps: Vec::new(),
            count,
            streaming: false,
        };
        if memory == Memory::Mmap {
            for i in 0..count {
                let info = sys::query_buffer(fd, t, i)
                    .map_err(|e| V4l2Error::io(path, "VIDIOC_QUERYBUF", e))?;
                // SAFETY: maps the driver's buffer at the offset QUERYBUF gave; unmapped in Drop.
                let ptr = unsafe {
                    libc::mmap(
                        std::ptr::null_mut(),
                        info.length as usize,
                        libc::PROT_READ | libc::PROT_WRITE,
                        libc::MAP_SHARED,
                        fd,
                        info.offset as libc::off_t,
                    )
                };
                if ptr == libc::MAP_FAILED {
                    return Err(V4l2Error::io(path, "mmap", std::io::Error::last_os_error()));
                }
                q.maps.push(Mapping {
                    ptr: ptr as *mut u8,
                    len: info.length as usize,
                });
            }
        }
        Ok(q)
    }

    pub fn fd(&self) -> c_int {
        self.handle.fd()
    }
    pub fn count(&self) -> u32 {
        self.count
    }
    /// Length of MMAP buffer `i` (0 for DMABUF slots).
    pub fn length(&self, i: u32) -> usize {
        self.maps.get(i as usize).map(|m| m.len).unwrap_or(0)
    }

    /// The first `len` bytes of MMAP buffer `i`.
    pub fn data(&self, i: u32, len: usize) -> &[u8] {
        let m = &self.maps[i as usize];
        // SAFETY: the mapping is live for the queue's lifetime; len is clamped to it.
        unsafe { std::slice::from_raw_parts(m.ptr, len.min(m.len)) }
    }

    /// MMAP buffer `i`, writable (an OUTPUT buffer hlsd fills).
    pub fn data_mut(&mut self, i: u32) -> &mut [u8] {
        let m = &self.maps[i as usize];
        // SAFETY: as above; &mut self guarantees exclusive access from hlsd's side, and the
        // buffer is not queued to the driver while hlsd writes it.
        unsafe { std::slice::from_raw_parts_mut(m.ptr, m.len) }
    }

    /// QBUF: `bytesused` matters for OUTPUT queues; `timestamp` is copied to the encoded frame.
    pub fn queue(
        &self,
        i: u32,
        bytesused: u32,
        timestamp: Option<Duration>,
        dmabuf: Option<(c_int, u32)>,
    ) -> Result<(), V4l2Error> {
        let ts = timestamp
            .map(|t| (t.as_secs() as i64, t.subsec_micros() as i64))
            .unwrap_or((0, 0));
        let length = match dmabuf {
            Some((_, len)) => len,
            None => self.length(i) as u32,
        };
        let info = BufInfo {
            index: i,
            bytesused,
            timestamp: ts,
            length,
            ..Default::default()
        };
        sys::queue_buffer(self.fd(), self.t, self.memory, info, dmabuf.map(|d| d.0))
            .map_err(|e| V4l2Error::io(&self.path, "VIDIOC_QBUF", e))
    }

    /// DQBUF without blocking.
    pub fn dequeue(&self) -> Result<Option<BufInfo>, V4l2Error> {
        sys::dequeue_buffer(self.fd(), self.t, self.memory)
            .map_err(|e| V4l2Error::io(&self.path, "VIDIOC_DQBUF", e))
    }

    /// EXPBUF: buffer `i` as a DMABUF fd.
    pub fn export(&self, i: u32) -> Result<OwnedFd, V4l2Error> {
        sys::export_buffer(self.fd(), self.t, i)
            .map_err(|e| V4l2Error::io(&self.path, "VIDIOC_EXPBUF", e))
    }

    pub fn start(&mut self) -> Result<(), V4l2Error> {
        sys::stream(self.fd(), self.t, true)
            .map_err(|e| V4l2Error::io(&self.path, "VIDIOC_STREAMON", e))?;
        self.streaming = true;
        Ok(())
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        let fd = self.fd();
        if self.streaming {
            let _ = sys::stream(fd, self.t, false);
        }
        for m in self.maps.drain(..) {
            // SAFETY: unmapping exactly what `new` mapped.
            unsafe { libc::munmap(m.ptr as *mut libc::c_void, m.len) };
        }
        let _ = sys::request_buffers(fd, self.t, self.memory, 0);
    }
}

/// The CLOCK_MONOTONIC timestamp of a dequeued buffer, if the driver gave a usable one
/// (monotonic or copied from the raw frame, and not zero).
pub fn buffer_timestamp(info: &BufInfo) -> Option<Duration> {
    use v4l::v4l_sys::{
        V4L2_BUF_FLAG_TIMESTAMP_COPY, V4L2_BUF_FLAG_TIMESTAMP_MASK,
        V4L2_BUF_FLAG_TIMESTAMP_MONOTONIC,
    };
    let kind = info.flags & V4L2_BUF_FLAG_TIMESTAMP_MASK;
    let (s, us) = info.timestamp;
    let usable = kind == V4L2_BUF_FLAG_TIMESTAMP_MONOTONIC || kind == V4L2_BUF_FLAG_TIMESTAMP_COPY;
    (usable && (s > 0 || us > 0) && s >= 0 && (0..1_000_000).contains(&us))
        .then(|| Duration::new(s as u64, us as u32 * 1000))
}
