//! HTTP limits against the real hlsd (README "Limits and timeouts"): the per-IP and global
//! connection limits reject and count, the held-request cap answers 503, malformed requests get
//! their exact status, TLS clients that stall before or during the handshake are closed after
//! the first-byte timeout, and HTTP/2 connections have header-list limits and an idle timeout.
//! The attack under load is tests/hostile_clients.rs.

mod common;
#[path = "hostile/util.rs"]
mod util;

use common::{client, get, media, rules, self_signed_cert, wait_for_msn, Hlsd};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use util::{connect_from, metric, raise_nofile, raw, serial, wait_metric};

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
    let (cert, key) = self_signed_cert(dir.path(), "localhost");
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
