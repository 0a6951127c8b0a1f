//! Hostile clients against the real hlsd (README "Limits and timeouts"),
//! `attack_leaves_viewer_and_memory_alone`: 2,000 idle sockets, 500 slow-loris clients (one
//! header byte per second), 200 clients that request segments and never read (4 KiB receive
//! buffer) and garbage senders, each group from its own loopback addresses (127.0.x.y, under
//! the per-IP limit), reconnecting whenever hlsd closes them. Meanwhile an LL-HLS viewer on
//! 127.0.0.1 (blocking part reloads, every part fetched) must get every part, none later than
//! `MAX_LATENESS` after its end on the PROGRAM-DATE-TIME clock (testsrc stamps frames at
//! their capture time, so this includes encoding), and hlsd's peak RSS (VmHWM) must stay under
//! `MAX_RSS_KIB`. Then the attackers stop reconnecting but keep their sockets open: hlsd's
//! timeouts must bring `hlsd_http_connections` back to the baseline within `RELEASE_DEADLINE`.
//!
//! The single limits are tested one by one in tests/http_limits.rs.

mod common;
#[path = "hostile/util.rs"]
mod util;

use common::{client, get, media, rules, wait_for_msn, Hlsd};
use std::net::Ipv4Addr;
use util::{connect_from, metric, raise_nofile, serial, status_kib, wait_metric};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
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
    // Start spread over 2 s, so the groups' timeouts do not all fire in the same instant.
    tokio::time::sleep(Duration::from_millis(seed * 7919 % 2000)).await;
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

/// User + system CPU seconds of a process (/proc/PID/stat, clock ticks of 1/100 s).
fn cpu_secs(pid: u32) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/PID/stat");
    let after = &s[s.rfind(')').expect("comm") + 2..];
    let f: Vec<&str> = after.split(' ').collect();
    (f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap()) / 100.0
}

/// System-mode CPU seconds of a process.
fn sys_secs(pid: u32) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/PID/stat");
    let after = &s[s.rfind(')').expect("comm") + 2..];
    after.split(' ').nth(12).unwrap().parse::<f64>().unwrap() / 100.0
}

fn lowest_priority_for_this_thread() {
    // SAFETY: plain syscalls; on Linux a thread id selects just this thread.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, 19);
    }
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
    // Attackers on the internet do not share hlsd's CPU: here they run on their own runtime
    // whose threads have the lowest priority, the viewer and hlsd at the normal one.
    let attack_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .on_thread_start(lowest_priority_for_this_thread)
        .enable_all()
        .build()
        .unwrap();
    let arena = Arena { port: srv.port, seg: seg.clone(), stop: stop_rx.clone(), kept: kept.clone() };
    let mut groups = Vec::new();
    let mut tasks = Vec::new();
    for (kind, count, net, addrs) in plan {
        let g = Arc::new(Group::default());
        for i in 0..count {
            let src = Ipv4Addr::new(127, 0, net, 1 + (i % addrs as usize) as u8);
            tasks.push(attack_rt.spawn(attacker(kind, src, arena.clone(), g.clone(), i as u64)));
        }
        groups.push(g);
    }
    let started = Instant::now();
    let (cpu_before, sys_before) = (cpu_secs(srv.pid()), sys_secs(srv.pid()));
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
    let (hlsd_cpu, hlsd_sys) = (cpu_secs(srv.pid()) - cpu_before, sys_secs(srv.pid()) - sys_before);

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
        "attack {attack_secs:.1} s (hlsd used {hlsd_cpu:.1} s CPU, {hlsd_sys:.1} s of it in the kernel): {open} connections open after {ramp:?}, {during_open} at the end, at most {} sampled; viewer {} parts, lateness p50 {} ms p99 {} ms max {} ms; \
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
    attack_rt.shutdown_background();
    srv.assert_no_panic();
}
