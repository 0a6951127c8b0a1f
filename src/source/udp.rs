//! `udp://IP:PORT`: MPEG-TS in UDP datagrams (ffmpeg `-f mpegts udp://...`, GStreamer
//! `udpsink`, OBS, hardware encoders), unicast or multicast.
//!
//! The socket listens on IP:PORT; a multicast IP (224.0.0.0/4, ff00::/8) is bound on the
//! wildcard address of the port and joined on the default interface. Datagrams are read by the
//! same reader thread as the other byte streams ([`super::reader::pump`], input known to be TS),
//! each datagram a chunk of at most 64 KiB (whole TS packets, usually 7 × 188 bytes). The kernel
//! receive buffer is set to [`RECV_BUFFER`] so a scheduling hiccup does not drop datagrams;
//! beyond it they are dropped by the kernel (the loss shows as continuity-counter errors). With
//! no datagram for `--stall-timeout` the socket is re-bound after a backoff and the timeline gets
//! a discontinuity, as for `tcp://`.

use super::reader::Ended;
use super::stream::report;
use super::{Backoff, SourceConfig, SourceError};
use crate::media::SourceEvent;
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::time::Instant;
use tokio::sync::mpsc;

/// Kernel receive buffer requested for the socket (4 MiB: about 1 s of a 30 Mbit/s stream).
pub const RECV_BUFFER: usize = 4 * 1024 * 1024;

/// A datagram socket read as a byte stream.
struct Datagrams(UdpSocket);

impl Read for Datagrams {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            match self.0.recv(buf) {
                // An empty datagram is not the end of the stream.
                Ok(0) => continue,
                other => return other,
            }
        }
    }
}

impl AsRawFd for Datagrams {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

/// Binds (and joins, for multicast) the socket for `addr`.
pub fn bind(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let sock = match addr.ip() {
        IpAddr::V4(g) if g.is_multicast() => {
            let s = UdpSocket::bind(SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), addr.port()))?;
            s.join_multicast_v4(&g, &Ipv4Addr::UNSPECIFIED)?;
            s
        }
        IpAddr::V6(g) if g.is_multicast() => {
            let s = UdpSocket::bind(SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), addr.port()))?;
            s.join_multicast_v6(&g, 0)?;
            s
        }
        _ => UdpSocket::bind(addr)?,
    };
    let size = RECV_BUFFER as libc::c_int;
    // SAFETY: a valid socket fd and a c_int option value of the stated size.
    let r = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            &size as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r != 0 {
        tracing::warn!(error = %std::io::Error::last_os_error(), "udp: could not set the receive buffer size");
    }
    Ok(sock)
}

/// Listens on `addr` until the receiver is gone; re-binds after a stall or an error.
pub async fn run(
    addr: &str,
    cfg: &SourceConfig,
    frame_duration: Option<u32>,
    tx: mpsc::Sender<SourceEvent>,
) -> Result<(), SourceError> {
    let name = format!("udp://{addr}");
    let sockaddr: SocketAddr = addr.parse().map_err(|e| SourceError::Io {
        source_name: name.clone(),
        err: std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{e}")),
    })?;
    let mut backoff = Backoff::default();
    loop {
        let started = Instant::now();
        let ended = match bind(sockaddr) {
            Ok(sock) => {
                tracing::info!(addr, "listening for MPEG-TS over UDP");
                let rcfg = super::reader::ReaderConfig {
                    idle_flush: cfg.idle_flush,
                    stall_timeout: cfg.stall_timeout,
                    frame_duration,
                    name: name.clone(),
                    ts_program: cfg.ts_program,
                    ts: true,
                };
                let tx2 = tx.clone();
                let input = Datagrams(sock);
                match tokio::task::spawn_blocking(move || super::reader::pump(input, &rcfg, &tx2)).await {
                    Ok(e) => e,
                    Err(e) => Ended::Io(std::io::Error::other(format!("reader thread failed: {e}"))),
                }
            }
            Err(e) => Ended::Io(e),
        };
        if !report(&name, &ended) {
            return Ok(());
        }
        if tx.send(SourceEvent::Discontinuity { reason: "udp input restarted".into() }).await.is_err() {
            return Ok(());
        }
        tokio::time::sleep(backoff.delay(started.elapsed())).await;
    }
}
