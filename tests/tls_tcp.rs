//! HTTPS (rustls, HTTP/2 by ALPN) and the `tcp://` source, each against real peers: curl as the
//! TLS client, ffmpeg as an encoder listening on TCP (like `rpicam-vid --listen`).

mod common;

use common::{client, get, rules, self_signed_cert, wait_for_msn, Hlsd};
use std::process::{Command, Stdio};

#[test]
fn https_serves_http2_with_the_configured_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed_cert(dir.path(), "localhost");
    let hlsd = Hlsd::start(&[
        "--width", "320", "--height", "240",
        "--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap(),
    ]);
    assert!(hlsd.base.starts_with("https://"), "{}", hlsd.base);
    let out = Command::new("curl")
        .args(["-sS", "--http2", "--cacert"])
        .arg(&cert)
        .args(["--resolve", &format!("localhost:{}:127.0.0.1", hlsd.port)])
        .args(["-w", "\n%{http_version} %{http_code}", "--max-time", "20"])
        .arg(format!("https://localhost:{}/media.m3u8?_HLS_msn=1", hlsd.port))
        .output()
        .expect("curl (infra/setup.sh --test installs it)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "curl failed: {}", String::from_utf8_lossy(&out.stderr));
    assert!(text.starts_with("#EXTM3U\n"), "{text}");
    assert!(text.ends_with("\n2 200"), "HTTP/2 over TLS expected: {text}");
    // Plain HTTP on the TLS port is refused, not served.
    let plain = Command::new("curl")
        .args(["-sS", "--max-time", "5", "-o", "/dev/null", "-w", "%{http_code}"])
        .arg(format!("http://127.0.0.1:{}/media.m3u8", hlsd.port))
        .output()
        .unwrap();
    assert_ne!(String::from_utf8_lossy(&plain.stdout), "200");
}

#[tokio::test]
async fn tcp_source_connects_to_a_listening_encoder() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut encoder = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-re", "-f", "lavfi"])
        .args(["-i", "testsrc2=size=320x240:rate=30", "-t", "30"])
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-bf", "0", "-g", "30"])
        .args(["-pix_fmt", "yuv420p", "-f", "h264"])
        .arg(format!("tcp://127.0.0.1:{port}?listen=1"))
        .stdout(Stdio::null())
        .spawn()
        .expect("ffmpeg");
    // hlsd retries the connection with backoff until ffmpeg listens.
    let hlsd = Hlsd::start(&["--source", &format!("tcp://127.0.0.1:{port}")]);
    let c = client();
    let pl = wait_for_msn(&c, &hlsd.base, 3).await;
    // Arrival-stamped: PDT follows the arrival clock, so allow encoder jitter.
    rules::assert_valid(&pl.text, &rules::Rules { pdt_tolerance: 0.5, ..Default::default() });
    assert!(pl.complete().count() >= 3);
    let info = get(&c, &hlsd.url("/stream.m3u8")).await.ok_text("multivariant");
    assert!(info.contains("RESOLUTION=320x240"), "{info}");
    let _ = encoder.kill();
    let _ = encoder.wait();
    // The encoder is gone: hlsd logs it and keeps serving (reconnecting in the background).
    assert!(hlsd.wait_stderr("restarting", std::time::Duration::from_secs(20)), "{}", hlsd.stderr());
    assert_eq!(get(&c, &hlsd.url("/healthz")).await.status, 200);
}
