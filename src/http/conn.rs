//! Per-connection timeouts as an IO wrapper: [`GuardedIo`] sits between the TCP socket and
//! TLS/hyper and fails a read or write (which makes hyper drop the connection) when
//!
//! - no byte arrived within `first_byte` of the accept (covers hyper's HTTP/1-vs-2 sniff);
//! - the connection was idle for `idle`: no request being handled and no response being sent
//!   since the last response ended (or since the accept). Bytes read do not count as activity,
//!   so a client trickling a request header (slow loris) is closed like an idle one;
//! - a write has been pending (the client stopped reading) for `write`, or responses are being
//!   sent but neither a body yielded data nor a byte was written for `write` (e.g. HTTP/2 flow
//!   control stalled by the client; any byte written on the connection counts as progress).
//!
//! - idle, but the kernel still holds unsent response bytes: counted as a write timeout.
//!
//! A write timeout closes with a reset (SO_LINGER 0), so the kernel frees the unsent data at
//! once. A held request (blocking playlist, preload hint) sends nothing until its data exists: while
//! its handler runs nothing times out; only a pending write or a stalled body counts.
//! [`Activity`] is the state shared with the service (see [`RequestGuard`] and [`Tracked`]).

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// Timeouts of one connection.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub first_byte: Duration,
    pub idle: Duration,
    pub write: Duration,
}

/// Why a connection was timed out (the `reason` label of `hlsd_http_timeouts`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expired {
    FirstByte,
    /// The TLS handshake did not finish within the first-byte timeout.
    Handshake,
    /// Bytes arrived since the connection was last busy, but no complete request.
    Header,
    Idle,
    Write,
}

impl Expired {
    pub fn label(self) -> &'static str {
        match self {
            Expired::FirstByte => "first_byte",
            Expired::Handshake => "tls_handshake",
            Expired::Header => "header",
            Expired::Idle => "idle",
            Expired::Write => "write",
        }
    }
}

#[derive(Debug)]
struct State {
    /// Requests whose handler runs (may wait for data as long as it likes).
    handling: usize,
    /// Responses whose body is being sent (must make progress).
    sending: usize,
    /// Last time the connection stopped being busy (or the accept).
    idle_since: Instant,
    /// Last time a body yielded data (or a response started).
    progress: Instant,
    /// A byte was read since `idle_since`.
    read_since_idle: bool,
    any_read: bool,
    /// HTTP/2: the client's control frames arrive while idle, so "header" is never told apart.
    h2: bool,
    waker: Option<Waker>,
}

/// State shared by a connection's IO and its requests.
#[derive(Debug)]
pub struct Activity(Mutex<State>);

impl Activity {
    pub fn new() -> Arc<Activity> {
        let now = Instant::now();
        Arc::new(Activity(Mutex::new(State {
            handling: 0,
            sending: 0,
            idle_since: now,
            progress: now,
            read_since_idle: false,
            any_read: false,
            h2: false,
            waker: None,
        })))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The connection speaks HTTP/2 (ALPN; cleartext is detected from the preface).
    pub fn set_h2(&self) {
        self.lock().h2 = true;
    }

    /// A request's handler starts; the guard ends it (dropped, or turned into a [`Tracked`] body).
    pub fn request(self: &Arc<Self>) -> RequestGuard {
        let mut s = self.lock();
        s.handling += 1;
        s.read_since_idle = false;
        RequestGuard(Some(self.clone()))
    }

    /// Changes busy counters (restarting the idle clock if nothing is left) and wakes the IO
    /// to re-arm its timer for the deadline now in force.
    fn update(&self, f: impl FnOnce(&mut State)) {
        let mut s = self.lock();
        f(&mut s);
        if s.handling == 0 && s.sending == 0 {
            s.idle_since = Instant::now();
            s.read_since_idle = false;
        }
        if let Some(w) = s.waker.take() {
            w.wake();
        }
    }

    /// The earliest deadline now in force, with what expires then.
    fn deadline(&self, t: &Timeouts) -> Option<(Instant, Expired)> {
        let s = self.lock();
        if !s.any_read {
            let d = s.idle_since + t.first_byte.min(t.idle);
            if s.handling == 0 && s.sending == 0 {
                return Some((d, Expired::FirstByte));
            }
        }
        if s.sending > 0 {
            return Some((s.progress + t.write, Expired::Write));
        }
        if s.handling > 0 {
            return None;
        }
        let why = if s.read_since_idle && !s.h2 { Expired::Header } else { Expired::Idle };
        Some((s.idle_since + t.idle, why))
    }
}

/// One request's handler is running; see [`Activity::request`].
pub struct RequestGuard(Option<Arc<Activity>>);

impl RequestGuard {
    /// The handler produced a response: wrap its body so sending it must make progress.
    pub fn track<B>(mut self, body: B) -> Tracked<B> {
        let act = self.0.take().expect("guard used once");
        act.update(|s| {
            s.handling -= 1;
            s.sending += 1;
            s.progress = Instant::now();
        });
        Tracked { inner: body, act }
    }
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        if let Some(a) = self.0.take() {
            a.update(|s| s.handling -= 1);
        }
    }
}

/// A response body that records its progress in the connection's [`Activity`].
pub struct Tracked<B> {
    inner: B,
    act: Arc<Activity>,
}

impl<B> Drop for Tracked<B> {
    fn drop(&mut self) {
        self.act.update(|s| s.sending -= 1);
    }
}

impl<B: Body<Data = Bytes> + Unpin> Body for Tracked<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(Some(_)) = &r {
            this.act.lock().progress = Instant::now();
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// What [`GuardedIo`] needs of a socket beyond reading and writing.
pub trait Socket {
    /// Bytes written but not yet acknowledged by the peer (the kernel's send queue).
    fn unsent(&self) -> usize;
    /// Makes the coming close a reset, so the kernel drops the unsent data at once instead of
    /// keeping it for a peer that does not read.
    fn abort_on_close(&self);
}

impl Socket for tokio::net::TcpStream {
    #[cfg(target_os = "linux")]
    fn unsent(&self) -> usize {
        use std::os::fd::AsRawFd;
        let mut n: libc::c_int = 0;
        // SAFETY: SIOCOUTQ (= TIOCOUTQ) writes one int to the pointer we pass, on our socket.
        let rc = unsafe { libc::ioctl(self.as_raw_fd(), libc::TIOCOUTQ, &mut n) };
        if rc == 0 { n.max(0) as usize } else { 0 }
    }
    #[cfg(not(target_os = "linux"))]
    fn unsent(&self) -> usize {
        0
    }

    fn abort_on_close(&self) {
        use std::os::fd::AsRawFd;
        let l = libc::linger { l_onoff: 1, l_linger: 0 };
        // SAFETY: setsockopt reads `l` (its size is passed) on a socket we own.
        unsafe {
            libc::setsockopt(
                self.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&l as *const libc::linger).cast(),
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            );
        }
    }
}

impl Socket for tokio::io::DuplexStream {
    fn unsent(&self) -> usize {
        0
    }
    fn abort_on_close(&self) {}
}

/// The socket with the connection's timeouts; see the module docs.
pub struct GuardedIo<T> {
    inner: T,
    act: Arc<Activity>,
    t: Timeouts,
    /// Armed for the activity deadline (polled by reads).
    timer: Pin<Box<Sleep>>,
    /// When the oldest still-pending write started.
    write_pending: Option<Instant>,
    write_timer: Pin<Box<Sleep>>,
    on_expire: fn(Expired),
}

impl<T: Socket> GuardedIo<T> {
    /// `on_expire` runs once when a timeout closes the connection (metrics, log).
    pub fn new(inner: T, act: Arc<Activity>, t: Timeouts, on_expire: fn(Expired)) -> Self {
        let now = Instant::now();
        GuardedIo {
            inner,
            act,
            t,
            timer: Box::pin(tokio::time::sleep_until(now + t.first_byte)),
            write_pending: None,
            write_timer: Box::pin(tokio::time::sleep_until(now + t.write)),
            on_expire,
        }
    }

    fn expired(&self, why: Expired) -> io::Error {
        // Idle with our response still in the kernel's send queue: the client stopped reading.
        let why = match why {
            Expired::Idle | Expired::Header if self.inner.unsent() > 0 => Expired::Write,
            w => w,
        };
        if why == Expired::Write {
            self.inner.abort_on_close();
        }
        (self.on_expire)(why);
        io::Error::new(io::ErrorKind::TimedOut, format!("connection timed out ({})", why.label()))
    }

    /// Checks the activity deadline while a read is pending; arms the timer for the next one.
    fn check_activity(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        if let Some(since) = self.write_pending {
            // The write timer bounds the connection now (also if no write is retried).
            if Instant::now() >= since + self.t.write {
                return Err(self.expired(Expired::Write));
            }
            return Ok(());
        }
        loop {
            {
                let mut s = self.act.lock();
                if s.waker.as_ref().is_none_or(|w| !w.will_wake(cx.waker())) {
                    s.waker = Some(cx.waker().clone());
                }
            }
            let Some((at, why)) = self.act.deadline(&self.t) else {
                return Ok(()); // a handler runs: its end wakes us through `Activity::update`
            };
            if Instant::now() >= at {
                return Err(self.expired(why));
            }
            if self.timer.deadline() != at {
                self.timer.as_mut().reset(at);
            }
            if self.timer.as_mut().poll(cx).is_pending() {
                return Ok(());
            }
        }
    }

    /// Bytes written are progress of the responses being sent (a slow reader of a big chunk).
    fn wrote(&self, r: &Poll<io::Result<usize>>) {
        if let Poll::Ready(Ok(n)) = r {
            if *n > 0 {
                self.act.lock().progress = Instant::now();
            }
        }
    }

    /// Tracks a write-side poll result: a write pending for `write` fails.
    fn write_result<R>(&mut self, cx: &mut Context<'_>, r: Poll<io::Result<R>>) -> Poll<io::Result<R>> {
        if r.is_ready() {
            self.write_pending = None;
            return r;
        }
        let now = Instant::now();
        let since = *self.write_pending.get_or_insert_with(|| {
            self.write_timer.as_mut().reset(now + self.t.write);
            now
        });
        if now >= since + self.t.write || self.write_timer.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(self.expired(Expired::Write)));
        }
        Poll::Pending
    }
}

impl<T: AsyncRead + Socket + Unpin> AsyncRead for GuardedIo<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    let mut s = this.act.lock();
                    if !s.any_read && buf.filled()[before..].starts_with(b"PRI * HTTP/2") {
                        s.h2 = true;
                    }
                    s.any_read = true;
                    s.read_since_idle = true;
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => match this.check_activity(cx) {
                Ok(()) => Poll::Pending,
                Err(e) => Poll::Ready(Err(e)),
            },
        }
    }
}

impl<T: AsyncWrite + Socket + Unpin> AsyncWrite for GuardedIo<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.wrote(&r);
        this.write_result(cx, r)
    }

    fn poll_write_vectored(self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.wrote(&r);
        this.write_result(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_flush(cx) {
            // A flush moves no bytes (a no-op on TCP): it does not end a pending write.
            Poll::Ready(r) => Poll::Ready(r),
            Poll::Pending => this.write_result(cx, Poll::Pending),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.write_result(cx, r)
    }
}

#[cfg(test)]
#[path = "conn_tests.rs"]
mod tests;
