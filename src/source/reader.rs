//! The byte-stream reader of live sources, on its own thread: waits for input with `ppoll`
//! (microsecond timeouts; tokio's timer has 1 ms ticks and overshoots by about a tick, which was
//! most of the origin's delay), parses access units and stamps them on arrival.
//!
//! Frame completion: a NAL unit normally ends at the next start code, which comes with the next
//! frame. Encoders write a frame at a time, so when the input has been silent for the idle-flush
//! time the pending frame is taken as complete. If the next bytes then do not begin with a start
//! code, the writer had paused inside a frame: that is counted, logged, and the idle time for this
//! input doubles (up to [`MAX_IDLE`]), so a bursty network link settles on a safe value. The
//! same holds for MPEG-TS input (`source::ingest` tells the formats apart), where the idle flush
//! completes the video PES being received.

use super::clock::ArrivalClock;
use super::ingest::{Input, InputConfig, InputError, Stamping};
use crate::media::SourceEvent;
use std::io::{ErrorKind, Read};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Upper bound of the adaptive idle-flush time.
pub const MAX_IDLE: Duration = Duration::from_millis(50);
/// How often a silent input checks whether the pipeline is still there.
const CHECK: Duration = Duration::from_millis(250);

/// Why a stream attempt ended.
#[derive(Debug)]
pub enum Ended {
    /// Input closed (EOF).
    Eof,
    /// Input closed without a single picture.
    Empty,
    /// No data for the stall timeout.
    Stalled,
    /// The receiver is gone: stop for good.
    Closed,
    Io(std::io::Error),
    Input(InputError),
}

/// Reader settings.
#[derive(Debug, Clone)]
pub struct ReaderConfig {
    pub idle_flush: Option<Duration>,
    pub stall_timeout: Duration,
    pub frame_duration: Option<u32>,
    /// Names the input in logs.
    pub name: String,
    /// `--ts-program`.
    pub ts_program: Option<u16>,
    /// The input is MPEG-TS (skip detection).
    pub ts: bool,
}

/// Waits until `fd` is readable or `timeout` passes; true if readable (or hung up).
fn wait_readable(fd: BorrowedFd<'_>, timeout: Duration) -> std::io::Result<bool> {
    let mut pfd = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: one valid pollfd for the duration of the call; null sigmask.
    let r = unsafe { libc::ppoll(&mut pfd, 1, &ts, std::ptr::null()) };
    match r {
        -1 => {
            let e = std::io::Error::last_os_error();
            if e.kind() == ErrorKind::Interrupted {
                Ok(false)
            } else {
                Err(e)
            }
        }
        0 => Ok(false),
        _ => Ok(true),
    }
}

/// Reads `input` until it ends, sending events to `tx`. Blocking: run it on its own thread.
pub fn pump<R: Read + AsRawFd>(mut input: R, cfg: &ReaderConfig, tx: &mpsc::Sender<SourceEvent>) -> Ended {
    let clock = ArrivalClock::new(cfg.frame_duration.unwrap_or(3000));
    let icfg = InputConfig { frame_duration: cfg.frame_duration, ts_program: cfg.ts_program, live: true };
    let mut parser = if cfg.ts { Input::ts(icfg, Stamping::Arrival(clock)) } else { Input::new(icfg, Stamping::Arrival(clock)) };
    let mut buf = vec![0u8; 64 * 1024];
    let mut idle = cfg.idle_flush;
    let mut unflushed = false;
    let mut just_flushed = false;
    let mut last_read = Instant::now();
    loop {
        let wait = match (unflushed, idle) {
            (true, Some(idle)) => idle,
            _ => CHECK.min(cfg.stall_timeout),
        };
        // SAFETY: `input` owns the fd and outlives the borrow.
        let fd = unsafe { BorrowedFd::borrow_raw(input.as_raw_fd()) };
        match wait_readable(fd, wait) {
            Err(e) => return Ended::Io(e),
            Ok(false) => {
                if unflushed && idle.is_some() {
                    unflushed = false;
                    just_flushed = true;
                    if let Err(e) = parser.flush(last_read) {
                        return Ended::Input(e);
                    }
                    if !forward(&mut parser, tx) {
                        return Ended::Closed;
                    }
                } else if tx.is_closed() {
                    return Ended::Closed;
                } else if last_read.elapsed() >= cfg.stall_timeout {
                    return Ended::Stalled;
                }
                continue;
            }
            Ok(true) => {}
        }
        let n = match input.read(&mut buf) {
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => continue,
            Err(e) => return Ended::Io(e),
        };
        if n == 0 {
            let r = parser.end(last_read);
            let sent = forward(&mut parser, tx);
            return match (r, sent) {
                (Err(e), _) => Ended::Input(e),
                (_, false) => Ended::Closed,
                _ if parser.frames() > 0 => Ended::Eof,
                _ => parser.end_error().map(Ended::Input).unwrap_or(Ended::Empty),
            };
        }
        last_read = Instant::now();
        let cut_before = parser.cut_frames();
        let annexb_cut = parser.is_annexb() && just_flushed && n >= 2 && buf[..2] != [0, 0];
        just_flushed = false;
        unflushed = true;
        if let Err(e) = parser.push(&buf[..n], last_read) {
            return Ended::Input(e);
        }
        if annexb_cut || parser.cut_frames() > cut_before {
            // The flushed frame was cut short: the writer paused mid-frame.
            crate::metrics::get().idle_flush_truncations.inc();
            let next = idle.map(|d| (d * 2).min(MAX_IDLE));
            tracing::warn!(source = %cfg.name, idle_flush_ms = next.map(|d| d.as_secs_f64() * 1e3),
                "input paused inside a frame; a frame was cut short; waiting longer before completing frames");
            idle = next;
        }
        if !forward(&mut parser, tx) {
            return Ended::Closed;
        }
    }
}

/// Sends parsed events; false if the receiver is gone.
fn forward(parser: &mut Input, tx: &mpsc::Sender<SourceEvent>) -> bool {
    while let Some(ev) = parser.next_event() {
        if tx.blocking_send(ev).is_err() {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn pipe_frames_complete_on_idle_and_truncation_backs_off() {
        let (r, mut w) = std::os::unix::net::UnixStream::pair().unwrap();
        let (tx, mut rx) = mpsc::channel(64);
        let cfg = ReaderConfig {
            idle_flush: Some(Duration::from_millis(2)),
            stall_timeout: Duration::from_secs(5),
            frame_duration: Some(3000),
            name: "test".into(),
            ts_program: None,
            ts: false,
        };
        let t = std::thread::spawn(move || pump(r, &cfg, &tx));
        // SPS/PPS/IDR of a tiny stream, written as one frame: it must come out without a
        // following start code.
        let sps = [0u8, 0, 0, 1, 0x67, 0x42, 0xc0, 0x0d, 0xd9, 0x01, 0x41, 0xfb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0xc0, 0xf1, 0x42, 0x99, 0x60];
        let pps = [0u8, 0, 0, 1, 0x68, 0xcb, 0x83, 0xcb, 0x20];
        let idr = [0u8, 0, 0, 1, 0x65, 0x88, 0x84, 0x21, 0x43];
        w.write_all(&[&sps[..], &pps[..], &idr[..]].concat()).unwrap();
        let mut got = Vec::new();
        while got.len() < 2 {
            got.push(rx.blocking_recv().unwrap());
        }
        assert!(matches!(got[0], SourceEvent::Format(_)));
        assert!(matches!(&got[1], SourceEvent::Frame(f) if f.idr && f.data.len() == 4 + 5));
        // A frame written in two halves with a pause longer than the idle time: counted.
        let before = crate::metrics::get().idle_flush_truncations.get();
        w.write_all(&[0, 0, 0, 1, 0x41, 0x9a]).unwrap();
        std::thread::sleep(Duration::from_millis(30)); // the writer's pause under test
        w.write_all(&[0x21, 0x43, 0x55]).unwrap();
        w.write_all(&[0, 0, 0, 1, 0x41, 0x9a, 0x02]).unwrap();
        w.shutdown(std::net::Shutdown::Write).unwrap();
        assert!(matches!(t.join().unwrap(), Ended::Eof));
        assert_eq!(crate::metrics::get().idle_flush_truncations.get(), before + 1);
    }
}
