//! Hostile clients against the real hlsd (README "Limits and timeouts"):
//!
//! - `attack_leaves_viewer_and_memory_alone`: 2,000 idle sockets, 500 slow-loris clients (one
//!   header byte per second), 200 clients that request segments and never read (4 KiB receive
//!   buffer) and garbage senders, each group from its own loopback addresses (127.0.x.y, under
//!   the per-IP limit), reconnecting whenever hlsd closes them. Meanwhile an LL-HLS viewer on
//!   127.0.0.1 (blocking part reloads, every part fetched) must get every part, none later than
//!   `MAX_LATENESS` after its end on the PROGRAM-DATE-TIME clock (testsrc stamps frames at
//!   their capture time, so this includes encoding), and hlsd's peak RSS (VmHWM) must stay under
//!   `MAX_RSS_KIB`. Then the attackers stop reconnecting but keep their sockets open: hlsd's
//!   timeouts must bring `hlsd_http_connections` back to the baseline within `RELEASE_DEADLINE`.
//! - `per_ip_and_global_limits_reject_and_count`, `held_request_cap_answers_503`,
//!   `malformed_requests_get_exact_status`.
//!
//! The tests of this file run one at a time (they measure timing and memory).

mod common;

use common::{client, get, media, rules, wait_for_msn, Hlsd};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::watch;

/// A part counts as late when the viewer has its bytes more than this after the part's end.
const MAX_LATENESS: Duration = Duration::from_millis(1000);
/// hlsd's peak resident memory under the attack (idle it is ~20 MiB).
const MAX_RSS_KIB: u64 = 150 * 1024;
/// Timeouts of the hlsd under attack (short, so the test is quick).
const FIRST_BYTE: &str = "2";
const IDLE: &str = "3";
const WRITE: &str = "3";
/// After the attack stops, every slot must be free within this (the longest timeout is 3 s).
const RELEASE_DEADLINE: Duration = Duration::from_secs(20);
const ATTACK: Duration = Duration::from_secs(15);

static SERIAL: Mutex<()> = Mutex::new(());

/// Runs one test alone (the others of this file wait) on its own two-worker runtime.
fn serial<F: std::future::Future>(f: F) -> F::Output {
    let _one = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap().block_on(f)
}

/// The test process holds thousands of sockets: raise its own open-file soft limit.
fn raise_nofile(need: u64) {
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

fn status_kib(pid: u32, key: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/PID/status");
    s.lines()
        .find_map(|l| l.strip_prefix(key)?.trim().strip_suffix("kB")?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{key} not in /proc/{pid}/status"))
}

/// Client without connection reuse (so its own connection is not left open at hlsd).
fn fresh_client() -> reqwest::Client {
    reqwest::Client::builder().http1_only().pool_max_idle_per_host(0).timeout(common::HTTP_TIMEOUT).build().unwrap()
}

/// Sum of a metric's samples whose line starts with `prefix` (name, or name{labels}).
async fn metric(base: &str, prefix: &str) -> f64 {
    let text = get(&fresh_client(), &format!("{base}/metrics")).await.ok_text("metrics");
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.strip_prefix(prefix).is_some_and(|r| r.starts_with(' ') || r.starts_with('{') || prefix.ends_with('}')))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .fold(0.0, |a, b| a + b)
}

/// Polls `metric` until `ok` holds; panics after `deadline`. Returns (value, time taken).
async fn wait_metric(base: &str, prefix: &str, deadline: Duration, ok: impl Fn(f64) -> bool) -> (f64, Duration) {
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

async fn connect_from(src: Ipv4Addr, port: u16, rcvbuf: Option<u32>) -> std::io::Result<TcpStream> {
    let s = TcpSocket::new_v4()?;
    if let Some(b) = rcvbuf {
        s.set_recv_buffer_size(b)?;
    }
    s.bind(SocketAddr::new(IpAddr::V4(src), 0))?;
    s.connect(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)).await
}

#[derive(Clone, Copy)]
enum Kind {
    Idle,
    SlowLoris,
    NonReader,
    Garbage,
}

/// Counters of one attacker group.
#[derive(Default)]
struct Group {
    connects: AtomicU64,
    closed_by_server: AtomicU64,
    failed_connects: AtomicU64,
}

/// One attacker: connects, misbehaves until hlsd closes it, reconnects; once `stop` is set it
/// keeps its last socket open (in `kept`) without touching it.
/// What every attacker shares: hlsd's port, the segment to ask for, the stop signal and where
/// to keep sockets at the stop.
#[derive(Clone)]
struct Arena {
    port: u16,
    seg: Arc<Mutex<String>>,
    stop: watch::Receiver<bool>,
    kept: Arc<Mutex<Vec<TcpStream>>>,
}

async fn attacker(kind: Kind, src: Ipv4Addr, a: Arena, g: Arc<Group>, seed: u64) {
    let Arena { port, seg, mut stop, kept } = a;
    let mut round = 0u64;
    while !*stop.borrow() {
        round += 1;
        let rcv = matches!(kind, Kind::NonReader).then_some(4096);
        let mut s = match connect_from(src, port, rcv).await {
            Ok(s) => s,
            Err(_) => {
                g.failed_connects.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        g.connects.fetch_add(1, Ordering::Relaxed);
        let closed = match kind {
            Kind::Idle => {
                let mut b = [0u8; 64];
                tokio::select! {
                    _ = s.read(&mut b) => true,
                    _ = stop.changed() => false,
                }
            }
            Kind::SlowLoris => {
                let head = b"GET /media.m3u8 HTTP/1.1\r\nHost: x\r\nX-Slow: ";
                let mut i = 0usize;
                let mut b = [0u8; 64];
                loop {
                    let byte = if i < head.len() { head[i] } else { b'a' };
                    i += 1;
                    if s.write_all(&[byte]).await.is_err() {
                        break true;
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = s.read(&mut b) => break true,
                        _ = stop.changed() => break false,
                    }
                }
            }
            Kind::NonReader => {
                let uri = seg.lock().unwrap().clone();
                let req = format!("GET /{uri} HTTP/1.1\r\nHost: x\r\n\r\n").repeat(32);
                if s.write_all(req.as_bytes()).await.is_err() {
                    true
                } else {
                    // Never read; a write after hlsd closed the socket fails (reset).
                    loop {
                        tokio::select! {
                            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                            _ = stop.changed() => break false,
                        }
                        match s.try_write(b"\r\n") {
                            Err(e) if e.kind() != std::io::ErrorKind::WouldBlock => break true,
                            _ => {}
                        }
                    }
                }
            }
            Kind::Garbage => {
                let mut junk = common::pseudo_random(4096, seed ^ round);
                if round % 2 == 0 {
                    junk.splice(0..0, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".iter().copied());
                }
                let _ = s.write_all(&junk).await;
                let mut b = [0u8; 4096];
                loop {
                    tokio::select! {
                        r = s.read(&mut b) => match r { Ok(0) | Err(_) => break true, Ok(_) => {} },
                        _ = stop.changed() => break false,
                    }
                }
            }
        };
        if closed {
            g.closed_by_server.fetch_add(1, Ordering::Relaxed);
            if matches!(kind, Kind::Garbage) {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        } else {
            kept.lock().unwrap().push(s);
        }
    }
}

/// What the viewer measured.
struct Viewed {
    parts: u64,
    lateness_ms: Vec<i64>,
}

/// An LL-HLS viewer: blocking part reloads, every new part fetched; checks that part numbers
/// have no gaps. Publishes the newest complete segment URI for the non-readers.
async fn viewer(base: String, seg: Arc<Mutex<String>>, until: Instant) -> Viewed {
    let c = client();
    let mut pl = rules::MediaPlaylist::parse(&media(&c, &base, "").await);
    // Parts listed before the viewer came are not timed.
    let mut last: Option<u64> = pl.parts().last().and_then(|p| rules::part_number(&p.2.uri));
    let mut v = Viewed { parts: 0, lateness_ms: Vec::new() };
    while Instant::now() < until {
        let (m, n) = pl.next_part_position();
        pl = rules::MediaPlaylist::parse(&media(&c, &base, &format!("_HLS_msn={m}&_HLS_part={n}")).await);
        let answered = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as f64;
        assert!(pl.has_part_or_later(m, n), "_HLS_msn={m}&_HLS_part={n} answered without it:\n{}", pl.text);
        if let Some(u) = pl.complete().last().and_then(|s| s.uri.clone()) {
            *seg.lock().unwrap() = u;
        }
        for s in &pl.segments {
            let pdt = s.pdt_ms.expect("segment without PROGRAM-DATE-TIME");
            let mut end = pdt as f64;
            for p in &s.parts {
                end += p.duration * 1000.0;
                let num = rules::part_number(&p.uri).expect("part number");
                if last.is_some_and(|l| num <= l) {
                    continue;
                }
                if let Some(l) = last {
                    assert_eq!(num, l + 1, "the viewer missed parts {}..{num}", l + 1);
                }
                let r = get(&c, &common::resolve(&base, &p.uri)).await;
                assert_eq!(r.status, 200, "part {}", p.uri);
                assert!(!r.body.is_empty());
                let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as f64;
                {
                    if now - end > 300.0 {
                        eprintln!("late part {num}: {:.0} ms (reload answered {:.0} ms after its end)", now - end, answered - end);
                    }
                    v.lateness_ms.push((now - end).round() as i64);
                    v.parts += 1;
                }
                last = Some(num);
            }
        }
    }
    v
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[test]
fn attack_leaves_viewer_and_memory_alone() {
    serial(attack_leaves())
}

async fn attack_leaves() {
    raise_nofile(4096);
    let srv = Hlsd::start(&[
        "--source", "testsrc", "--width", "640", "--height", "360", "--bitrate", "2000000",
        "--http-first-byte-timeout", FIRST_BYTE, "--http-timeout", IDLE, "--http-write-timeout", WRITE,
        "--max-connections", "6000", "--max-connections-per-ip", "64",
    ]);
    let base = srv.base.clone();
    let c = client();
    let pl = wait_for_msn(&c, &base, 2).await;
    drop(c);
    let seg = Arc::new(Mutex::new(pl.complete().last().unwrap().uri.clone().unwrap()));
    // Baseline: only our own metrics request is open.
    let (baseline, _) = wait_metric(&base, "hlsd_http_connections", Duration::from_secs(10), |v| v <= 1.0).await;
    let rss_before = status_kib(srv.pid(), "VmRSS:");

    let (stop_tx, stop_rx) = watch::channel(false);
    let kept = Arc::new(Mutex::new(Vec::new()));
    // (kind, count, first source address 127.0.X.1, addresses): ≤ 50 per address < 64.
    let plan = [(Kind::Idle, 2000, 1u8, 40u8), (Kind::SlowLoris, 500, 2, 10), (Kind::NonReader, 200, 3, 5), (Kind::Garbage, 20, 4, 2)];
    let arena = Arena { port: srv.port, seg: seg.clone(), stop: stop_rx.clone(), kept: kept.clone() };
    let mut groups = Vec::new();
    let mut tasks = Vec::new();
    for (kind, count, net, addrs) in plan {
        let g = Arc::new(Group::default());
        for i in 0..count {
            let src = Ipv4Addr::new(127, 0, net, 1 + (i % addrs as usize) as u8);
            tasks.push(tokio::spawn(attacker(kind, src, arena.clone(), g.clone(), i as u64)));
        }
        groups.push(g);
    }
    let started = Instant::now();
    let peak = Arc::new(AtomicU64::new(0));
    let opened = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (peak, pid, opened, base2) = (peak.clone(), srv.pid(), opened.clone(), base.clone());
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            while !*stop.borrow() {
                peak.fetch_max(status_kib(pid, "VmRSS:"), Ordering::Relaxed);
                opened.fetch_max(metric(&base2, "hlsd_http_connections").await as u64, Ordering::Relaxed);
                tokio::select! { _ = tokio::time::sleep(Duration::from_millis(250)) => {}, _ = stop.changed() => {} }
            }
        })
    };
    // Let the attack ramp up, check it is really there, then watch while it goes on.
    let (open, ramp) = wait_metric(&base, "hlsd_http_connections", Duration::from_secs(15), |v| v >= 2000.0).await;
    let viewed = tokio::spawn(viewer(base.clone(), seg.clone(), started + ATTACK)).await.unwrap();
    let during_open = metric(&base, "hlsd_http_connections").await;
    let _ = stop_tx.send(true);
    for t in tasks {
        t.await.unwrap();
    }
    sampler.await.unwrap();
    let attack_secs = started.elapsed().as_secs_f64();

    // Every slot comes back while the attackers still hold their sockets.
    let (after, released) = wait_metric(&base, "hlsd_http_connections", RELEASE_DEADLINE, |v| v <= baseline).await;
    let rss_after = status_kib(srv.pid(), "VmRSS:");
    let hwm = status_kib(srv.pid(), "VmHWM:");
    let kept_sockets = kept.lock().unwrap().len();

    let mut late = viewed.lateness_ms.clone();
    late.sort_unstable();
    let timeouts = |r: &'static str| {
        let base = base.clone();
        async move { metric(&base, &format!("hlsd_http_timeouts_total{{reason=\"{r}\"}}")).await }
    };
    let (t_first, t_header, t_write) = (timeouts("first_byte").await, timeouts("header").await, timeouts("write").await);
    let names = ["idle", "slow-loris", "non-reader", "garbage"];
    for (g, name) in groups.iter().zip(names) {
        eprintln!(
            "{name}: {} connects, {} closed by hlsd, {} failed connects",
            g.connects.load(Ordering::Relaxed),
            g.closed_by_server.load(Ordering::Relaxed),
            g.failed_connects.load(Ordering::Relaxed)
        );
    }
    eprintln!(
        "attack {attack_secs:.1} s: {open} connections open after {ramp:?}, {during_open} at the end, at most {} sampled; viewer {} parts, lateness p50 {} ms p99 {} ms max {} ms; \
         RSS before {} KiB, peak sampled {} KiB, after {} KiB, VmHWM {} KiB; slots back to {after} (baseline {baseline}) \
         {:.2} s after the stop ({kept_sockets} attacker sockets still open); timeouts first_byte {t_first} header {t_header} write {t_write}",
        opened.load(Ordering::Relaxed),
        viewed.parts,
        percentile(&late, 0.5),
        percentile(&late, 0.99),
        late.last().unwrap(),
        rss_before,
        peak.load(Ordering::Relaxed),
        rss_after,
        hwm,
        released.as_secs_f64(),
    );
    let expected_parts = (ATTACK.as_secs_f64() / 0.2 * 0.5) as u64;
    assert!(viewed.parts >= expected_parts, "viewer got {} parts, expected at least {expected_parts}", viewed.parts);
    assert!(
        *late.last().unwrap() <= MAX_LATENESS.as_millis() as i64,
        "a part reached the viewer {} ms after its end (bound {MAX_LATENESS:?})",
        late.last().unwrap()
    );
    assert!(hwm < MAX_RSS_KIB, "hlsd VmHWM {hwm} KiB >= {MAX_RSS_KIB} KiB");
    assert!(t_first > 0.0 && t_header > 0.0 && t_write > 0.0, "every kind of timeout fired");
    for (g, name) in groups.iter().zip(names) {
        assert!(g.closed_by_server.load(Ordering::Relaxed) > 0, "hlsd never closed a {name} client");
    }
    assert!(kept_sockets > 0, "attackers kept sockets open for the release check");
    drop(kept);
    srv.assert_no_panic();
}

#[test]
fn per_ip_and_global_limits_reject_and_count() {
    serial(per_ip())
}

async fn per_ip() {
    raise_nofile(1000);
    let srv = Hlsd::start(&[
        "--source", "testsrc", "--width", "320", "--height", "180",
        "--http-first-byte-timeout", "60", "--max-connections", "60", "--max-connections-per-ip", "10",
    ]);
    let base = srv.base.clone();
    assert_eq!(metric(&base, "hlsd_http_max_connections").await, 60.0);
    // Connections hlsd closed at once read EOF (or a reset) within 300 ms; admitted ones stay
    // open and silent. Checked concurrently; the sockets stay open.
    async fn closed_count(socks: &mut Vec<TcpStream>) -> usize {
        let mut set = tokio::task::JoinSet::new();
        for mut s in socks.drain(..) {
            set.spawn(async move {
                let mut b = [0u8; 16];
                let r = tokio::time::timeout(Duration::from_millis(300), s.read(&mut b)).await;
                if let Ok(r) = &r {
                    assert!(matches!(r, Ok(0) | Err(_)), "hlsd sent bytes to a silent client: {r:?}");
                }
                (s, r.is_ok())
            });
        }
        let mut n = 0;
        while let Some(j) = set.join_next().await {
            let (s, closed) = j.unwrap();
            n += closed as usize;
            socks.push(s);
        }
        n
    }
    let host = Ipv4Addr::new(127, 0, 9, 1);
    let mut one_host = Vec::new();
    for _ in 0..15 {
        one_host.push(connect_from(host, srv.port, None).await.unwrap());
    }
    assert_eq!(closed_count(&mut one_host).await, 5, "5 of 15 over the per-IP limit of 10");
    wait_metric(&base, "hlsd_http_rejected_connections_total{reason=\"per_ip\"}", Duration::from_secs(5), |v| v == 5.0).await;
    // A trusted proxy address (127.0.0.1, the default) is exempt.
    let mut proxy = Vec::new();
    for _ in 0..20 {
        proxy.push(connect_from(Ipv4Addr::LOCALHOST, srv.port, None).await.unwrap());
    }
    assert_eq!(closed_count(&mut proxy).await, 0, "trusted proxy connections are not limited per IP");
    // 30 open; 40 more from 8 hosts (5 each) exceed the global limit of 60.
    let mut many = Vec::new();
    for i in 0..40u8 {
        many.push(connect_from(Ipv4Addr::new(127, 0, 10, 1 + i % 8), srv.port, None).await.unwrap());
    }
    let rejected = closed_count(&mut many).await;
    assert!((10..=12).contains(&rejected), "{rejected} of 40 rejected at the global limit (30 + 40 > 60)");
    drop(proxy);
    let (v, _) = wait_metric(&base, "hlsd_http_rejected_connections_total{reason=\"max_connections\"}", Duration::from_secs(5), |v| v >= 10.0).await;
    assert_eq!(v, rejected as f64);
    assert_eq!(metric(&base, "hlsd_http_rejected_connections_total{reason=\"per_ip\"}").await, 5.0);
    srv.assert_no_panic();
}

#[test]
fn held_request_cap_answers_503() {
    serial(held_request())
}

async fn held_request() {
    let srv = Hlsd::start(&["--source", "testsrc", "--width", "320", "--height", "180", "--max-held-requests", "4"]);
    let base = srv.base.clone();
    let c = client();
    let pl = wait_for_msn(&c, &base, 1).await;
    let ahead = pl.last_complete_msn().unwrap() + 2;
    let url = format!("{base}/media.m3u8?_HLS_msn={ahead}");
    let held: Vec<_> = (0..4)
        .map(|_| {
            let (c, url) = (c.clone(), url.clone());
            tokio::spawn(async move { get(&c, &url).await })
        })
        .collect();
    wait_metric(&base, "hlsd_http_blocked_requests", Duration::from_secs(5), |v| v == 4.0).await;
    let r = get(&c, &url).await;
    assert_eq!(r.status, 503, "{:?}", r.text());
    assert_eq!(r.header("retry-after").as_deref(), Some("1"));
    assert_eq!(r.header("cache-control").as_deref(), Some("no-store"));
    let hint = pl.part_hint().expect("preload hint");
    let r = get(&c, &common::resolve(&base, &hint)).await;
    assert!(r.status == 503 || r.status == 200, "a hinted part is held (503 while full) or already there");
    assert!(metric(&base, "hlsd_http_held_rejected_total").await >= 1.0);
    for h in held {
        assert_eq!(h.await.unwrap().status, 200);
    }
    // Slots are free again: a held request is accepted.
    let pl = rules::MediaPlaylist::parse(&media(&c, &base, "").await);
    let next = pl.last_complete_msn().unwrap() + 1;
    assert_eq!(get(&c, &format!("{base}/media.m3u8?_HLS_msn={next}")).await.status, 200);
    srv.assert_no_panic();
}

/// Sends raw bytes, returns (status, head) of the response.
async fn raw(port: u16, req: &[u8]) -> (u16, String) {
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

#[test]
fn malformed_requests_get_exact_status() {
    serial(malformed_requests())
}

async fn malformed_requests() {
    let srv = Hlsd::start(&["--source", "testsrc", "--width", "320", "--height", "180"]);
    wait_for_msn(&client(), &srv.base, 1).await;
    let get_req = |target: &str| format!("GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").into_bytes();
    let long_uri = format!("/media.m3u8?x={}", "a".repeat(10_000));
    let cases: Vec<(String, u16)> = vec![
        ("/media.m3u8?_HLS_msn=abc".into(), 400),
        ("/media.m3u8?_HLS_msn=".into(), 400),
        ("/media.m3u8?_HLS_msn=99999999999999999999999".into(), 400),
        ("/media.m3u8?_HLS_msn=18446744073709551615".into(), 400),
        ("/media.m3u8?_HLS_msn=-1".into(), 400),
        ("/media.m3u8?_HLS_msn=+1".into(), 400),
        ("/media.m3u8?_HLS_part=1".into(), 400),
        ("/media.m3u8?_HLS_msn=1&_HLS_part=-1".into(), 400),
        ("/media.m3u8?_HLS_msn=1&_HLS_part=4294967296".into(), 400),
        ("/media.m3u8?_HLS_msn=1&_HLS_part=4294967295".into(), 200),
        ("/../etc/passwd".into(), 400),
        ("/%2e%2e/etc/passwd".into(), 400),
        ("/%2E%2E%2Fetc%2Fpasswd".into(), 400),
        ("/..%2fmedia.m3u8".into(), 400),
        ("/x%5c..%5cmedia.m3u8".into(), 400),
        ("/nothing-here".into(), 404),
        (long_uri, 414),
        ("/media.m3u8".into(), 200),
    ];
    for (target, want) in &cases {
        let (got, head) = raw(srv.port, &get_req(target)).await;
        let shown: String = target.chars().take(60).collect();
        assert_eq!(got, *want, "GET {shown}: {head}");
        if got >= 400 {
            assert!(head.to_ascii_lowercase().contains("cache-control: no-store"), "GET {shown}: {head}");
        }
    }
    let big = |n: usize| format!("GET /media.m3u8 HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "a".repeat(n)).into_bytes();
    assert_eq!(raw(srv.port, &big(20_000)).await.0, 431, "20 KB header (hlsd's limit)");
    assert_eq!(raw(srv.port, &big(100_000)).await.0, 431, "100 KB header (hyper's buffer)");
    let many: String = (0..120).map(|i| format!("X-H{i}: v\r\n")).collect();
    assert_eq!(raw(srv.port, format!("GET / HTTP/1.1\r\nHost: x\r\n{many}\r\n").as_bytes()).await.0, 431, "120 headers");
    for m in ["POST", "PUT", "DELETE", "PATCH", "TRACE", "FOO"] {
        let (got, head) = raw(srv.port, format!("{m} /media.m3u8 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n").as_bytes()).await;
        assert_eq!(got, 405, "{m}: {head}");
        assert!(head.to_ascii_lowercase().contains("allow: get, head, options"), "{m}: {head}");
    }
    assert!(metric(&srv.base, "hlsd_http_requests_total{route=\"invalid\",status=\"400\"}").await >= 5.0);
    srv.assert_no_panic();
}

#[test]
fn tls_handshake_and_http2_idle_time_out() {
    serial(tls_and_h2())
}

async fn tls_and_h2() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let st = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl (infra/setup.sh --test installs it)");
    assert!(st.success());
    let limits = ["--http-first-byte-timeout", "1", "--http-timeout", "2", "--width", "320", "--height", "180"];
    let tls = Hlsd::start(&[&limits[..], &["--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap()]].concat());
    // Closed within (timeout, timeout + 3 s): silent socket, and a TLS record header without the rest.
    async fn closed_after(port: u16, send: &[u8]) -> Duration {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        s.write_all(send).await.unwrap();
        let start = Instant::now();
        let mut b = [0u8; 64];
        let r = tokio::time::timeout(Duration::from_secs(10), s.read(&mut b)).await.expect("hlsd closes the socket");
        assert!(matches!(r, Ok(0) | Err(_)), "{r:?}");
        start.elapsed()
    }
    for send in [&b""[..], &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01][..]] {
        let took = closed_after(tls.port, send).await;
        assert!(took >= Duration::from_millis(900) && took < Duration::from_secs(4), "{send:?}: closed after {took:?}");
    }
    let out = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "10", "--cacert"])
        .arg(&cert)
        .args(["--resolve", &format!("localhost:{}:127.0.0.1", tls.port)])
        .arg(format!("https://localhost:{}/metrics", tls.port))
        .output()
        .expect("curl (infra/setup.sh --test installs it)");
    let text = String::from_utf8_lossy(&out.stdout);
    for reason in ["first_byte", "tls_handshake"] {
        let line = format!("hlsd_http_timeouts_total{{reason=\"{reason}\"}} 1\n");
        assert!(text.contains(&line), "no {line:?} in HTTPS /metrics: {text}");
    }
    drop(tls);

    // HTTP/2 cleartext: requests work, oversized header lists get 431, an idle connection is
    // closed after http-timeout although h2 keeps exchanging frames.
    let srv = Hlsd::start(&limits);
    let h2 = common::h2_client();
    let r = get(&h2, &srv.url("/media.m3u8")).await;
    assert_eq!((r.status, r.version), (200, reqwest::Version::HTTP_2));
    let big = "a".repeat(20_000);
    let r = h2.get(srv.url("/media.m3u8")).header("x-big", &big).send().await.unwrap();
    assert_eq!(r.status(), 431);
    let huge = "a".repeat(100_000);
    match h2.get(srv.url("/media.m3u8")).header("x-big", &huge).send().await {
        Ok(r) => assert_eq!(r.status(), 431, "header list beyond the HTTP/2 limit"),
        Err(e) => eprintln!("100 KB header list refused by h2: {e}"),
    }
    let (_, took) = wait_metric(&srv.base, "hlsd_http_timeouts_total{reason=\"idle\"}", Duration::from_secs(10), |v| v >= 1.0).await;
    eprintln!("idle HTTP/2 connection closed; seen {took:?} after the last request");
    wait_metric(&srv.base, "hlsd_http_connections", Duration::from_secs(5), |v| v <= 1.0).await;
    let r = get(&h2, &srv.url("/media.m3u8")).await;
    assert_eq!(r.status, 200, "the client reconnects after an idle close");
    srv.assert_no_panic();
}
