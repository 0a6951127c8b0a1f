//! Helpers of the hostile-client tests (tests/hostile_clients.rs, tests/http_limits.rs):
//! one test at a time, open-file limit, /proc memory, /metrics reading, connecting from another
//! loopback address, raw HTTP/1.1 requests.

#![allow(dead_code)]

use crate::common::{self, get};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

static SERIAL: Mutex<()> = Mutex::new(());

/// Runs one test alone (the others of this file wait) on its own two-worker runtime.
pub fn serial<F: std::future::Future>(f: F) -> F::Output {
    let _one = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap().block_on(f)
}

/// The test process holds thousands of sockets: raise its own open-file soft limit.
pub fn raise_nofile(need: u64) {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: plain syscalls on a local struct.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    lim.rlim_cur = lim.rlim_max;
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) }, 0);
    #[allow(clippy::unnecessary_cast)] // rlim_t is 32 bits on 32-bit ARM
    let soft = lim.rlim_cur as u64;
    assert!(
        soft >= need,
        "open-file hard limit {} < {need}: raise it (ulimit -Hn / LimitNOFILE) to run this test",
        lim.rlim_cur
    );
}

pub fn status_kib(pid: u32, key: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/PID/status");
    s.lines()
        .find_map(|l| l.strip_prefix(key)?.trim().strip_suffix("kB")?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{key} not in /proc/{pid}/status"))
}

/// Client without connection reuse (so its own connection is not left open at hlsd).
pub fn fresh_client() -> reqwest::Client {
    common::tls_provider();
    reqwest::Client::builder().http1_only().pool_max_idle_per_host(0).timeout(common::HTTP_TIMEOUT).build().unwrap()
}

/// Sum of a metric's samples whose line starts with `prefix` (name, or name{labels}).
pub async fn metric(base: &str, prefix: &str) -> f64 {
    let text = get(&fresh_client(), &format!("{base}/metrics")).await.ok_text("metrics");
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.strip_prefix(prefix).is_some_and(|r| r.starts_with(' ') || r.starts_with('{') || prefix.ends_with('}')))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .fold(0.0, |a, b| a + b)
}

/// Polls `metric` until `ok` holds; panics after `deadline`. Returns (value, time taken).
pub async fn wait_metric(base: &str, prefix: &str, deadline: Duration, ok: impl Fn(f64) -> bool) -> (f64, Duration) {
    let start = Instant::now();
    loop {
        let v = metric(base, prefix).await;
        if ok(v) {
            return (v, start.elapsed());
        }
        assert!(start.elapsed() < deadline, "{prefix} = {v} after {deadline:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn connect_from(src: Ipv4Addr, port: u16, rcvbuf: Option<u32>) -> std::io::Result<TcpStream> {
    let s = TcpSocket::new_v4()?;
    if let Some(b) = rcvbuf {
        s.set_recv_buffer_size(b)?;
    }
    s.bind(SocketAddr::new(IpAddr::V4(src), 0))?;
    s.connect(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)).await
}

/// Sends raw bytes, returns (status, head) of the response.
pub async fn raw(port: u16, req: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(req).await.unwrap();
    let mut buf = Vec::new();
    let mut b = [0u8; 4096];
    let head = loop {
        let n = tokio::time::timeout(common::HTTP_TIMEOUT, s.read(&mut b)).await.expect("response in time").unwrap_or(0);
        if n == 0 {
            break String::from_utf8_lossy(&buf).to_string();
        }
        buf.extend_from_slice(&b[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break String::from_utf8_lossy(&buf[..end]).to_string();
        }
    };
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("no status in {head:?}"));
    (status, head)
}

