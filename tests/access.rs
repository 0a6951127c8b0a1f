//! Access control and secrets against the real hlsd: signed URLs (accepted; expired, forged and
//! other-path ones 403), a native-player-style client (plain GETs following the URIs inside the
//! playlists, no cookies or custom headers) that ffprobe can decode, basic auth, `metrics-listen`,
//! no CORS on `/metrics`, and no secret in stderr, `/metrics`, `/healthz` or responses.

mod common;

use common::{client, get, get_with, probe_bytes, resolve, rules::MediaPlaylist, self_signed_cert, Hlsd};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const ACCESS: &str = "ACCESS-SECRET-0123456789";
const SECRETS: &[&str] =
    &[ACCESS, "STREAMKEY-SECRET", "S3-SECRET", "ENDPOINT-SECRET", "EXEC-SECRET", "BASIC-SECRET", "METRICS-SECRET"];

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn config(dir: &std::path::Path, text: &str) -> String {
    let p = dir.join("hlsd.toml");
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_string()
}

fn assert_no_secret(what: &str, text: &str) {
    for s in SECRETS {
        assert!(!text.contains(s), "{what} holds the secret {s}:\n{text}");
    }
}

/// URIs of a media playlist: URI="…" attributes and URI lines.
fn uris(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines() {
        if let Some(at) = line.find("URI=\"") {
            out.push(line[at + 5..].split('"').next().unwrap().to_string());
        } else if !line.starts_with('#') && !line.is_empty() {
            out.push(line.to_string());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_urls_let_a_native_player_play_and_nothing_else_in() {
    let dir = tempfile::tempdir().unwrap();
    // Every kind of secret hlsd holds, from the config file (never the command line): the access
    // secret, an RTMP stream key (unreachable ingest: it retries and logs), S3 credentials
    // (unreachable store) and an exec command whose command line and stderr hold a password.
    let cfg = config(
        dir.path(),
        &format!(
            "access-secret = \"{ACCESS}\"\n\
             source = \"exec:HLSD_PASSWORD=EXEC-SECRET; echo 'open rtsp://admin:EXEC-SECRET@cam/ token=EXEC-SECRET' >&2; \
             exec ffmpeg -hide_banner -nostats -loglevel error -re -f lavfi -i testsrc2=size=320x240:rate=30 \
             -c:v libx264 -preset ultrafast -tune zerolatency -g 30 -bf 0 -f h264 -\"\n\
             [[rtmp]]\nurl = \"rtmp://127.0.0.1:9/live/STREAMKEY-SECRET\"\n\
             [[output]]\nurl = \"s3://bucket/cam\"\nendpoint = \"http://u:ENDPOINT-SECRET@127.0.0.1:9\"\naccess-key-id = \"AKID\"\n\
             secret-access-key = \"S3-SECRET\"\n"
        ),
    );
    let hlsd = Hlsd::start(&["--config", &cfg]);
    let c = client();

    // Without a token: 403 everywhere a viewer goes; the status routes are not viewer routes.
    for path in ["/stream.m3u8", "/media.m3u8", "/snapshot.jpg"] {
        let r = get(&c, &hlsd.url(path)).await;
        assert_eq!(r.status, 403, "{path} without a token: {}", r.status);
    }
    // The player page and its scripts are public: they hold no media.
    for path in ["/", "/player.js"] {
        assert_eq!(get(&c, &hlsd.url(path)).await.status, 200, "{path}");
    }
    // `hlsd sign` mints the URL (the secret comes from the same config file).
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hlsd"))
        .args(["--config", &cfg, "sign", "--prefix", "/", "--expires", "1h"])
        .env_remove("HLSD_ACCESS_SECRET")
        .output()
        .unwrap();
    assert!(out.status.success(), "hlsd sign: {}", String::from_utf8_lossy(&out.stderr));
    let printed = String::from_utf8(out.stdout).unwrap();
    let first = printed.lines().next().unwrap();
    assert!(first.starts_with("http://127.0.0.1:8080/stream.m3u8?expires="), "{printed}");
    assert!(!printed.contains(ACCESS), "{printed}");
    let token = first.split_once('?').unwrap().1.to_string();

    // The native player: GET the multivariant playlist, then only URIs found inside playlists.
    let mv = get(&c, &format!("{}/stream.m3u8?{token}", hlsd.base)).await.ok_text("signed multivariant");
    let media_uri = mv.lines().find(|l| l.starts_with("media.m3u8")).expect("variant URI").to_string();
    assert!(media_uri.contains(&token), "{media_uri}");
    let mut pl = MediaPlaylist::parse(&get(&c, &resolve(&hlsd.base, &media_uri)).await.ok_text("media"));
    while pl.complete().count() < 2 {
        // Blocking reload on the hinted part: the player appends _HLS_msn/_HLS_part to the URI.
        let last = pl.segments.last().expect("a segment");
        let (msn, part) = if last.complete() { (last.msn + 1, 0) } else { (last.msn, last.parts.len()) };
        let url = format!("{}&_HLS_msn={msn}&_HLS_part={part}", resolve(&hlsd.base, &media_uri));
        pl = MediaPlaylist::parse(&get(&c, &url).await.ok_text("blocking reload"));
    }
    let all = uris(&pl.text);
    assert!(all.len() > 5, "{}", pl.text);
    for u in &all {
        assert!(u.ends_with(&token), "URI without the token: {u}\n{}", pl.text);
    }
    assert!(pl.text.contains("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=") && pl.text.contains(&token));
    // init + the parts of a complete segment, and init + that segment, decode.
    let seg = pl.complete().last().unwrap().clone();
    let init = get(&c, &resolve(&hlsd.base, seg.map.as_ref().expect("MAP"))).await;
    assert_eq!(init.status, 200);
    let mut parts = init.body.to_vec();
    for p in &seg.parts {
        let r = get(&c, &resolve(&hlsd.base, &p.uri)).await;
        assert_eq!(r.status, 200, "{}", p.uri);
        parts.extend_from_slice(&r.body);
    }
    let mut whole = init.body.to_vec();
    let r = get(&c, &resolve(&hlsd.base, seg.uri.as_ref().unwrap())).await;
    assert_eq!(r.status, 200);
    whole.extend_from_slice(&r.body);
    for (name, data) in [("parts.mp4", &parts), ("segment.mp4", &whole)] {
        let pr = probe_bytes(dir.path(), name, data);
        assert!(pr.frames >= 25 && pr.width == 320 && pr.errors.is_empty(), "{name}: {pr:?}");
    }

    // Expired, forged and other-path tokens: 403 (the blocking-reload parameters do not help).
    let secret = ACCESS.as_bytes();
    let part_path = &seg.parts[0].uri.split('?').next().unwrap().to_string();
    for (why, q, path) in [
        ("expired", hlsd::http::auth::sign(secret, "/", now() - 10), "/stream.m3u8".to_string()),
        ("forged", hlsd::http::auth::sign(b"not-the-secret-0123456", "/", now() + 100), "/stream.m3u8".into()),
        ("other path", hlsd::http::auth::sign(secret, "/stream.m3u8", now() + 100), "/media.m3u8?_HLS_msn=1".into()),
        ("other path", hlsd::http::auth::sign(secret, "/stream", now() + 100), "/stream.m3u8".into()),
        ("tampered", token.replacen("expires=", "expires=9", 1), format!("/{part_path}")),
    ] {
        let sep = if path.contains('?') { '&' } else { '?' };
        let r = get(&c, &format!("{}{path}{sep}{q}", hlsd.base)).await;
        assert_eq!(r.status, 403, "{why}: {path} {}", r.text());
    }
    let ok = hlsd::http::auth::sign(secret, "/stream.m3u8", now() + 100);
    assert_eq!(get(&c, &format!("{}/stream.m3u8?{ok}", hlsd.base)).await.status, 200, "exact-path token");

    // Status routes: open here (no metrics-auth), but never readable cross-origin.
    let signed = get(&c, &format!("{}/stream.m3u8?{token}", hlsd.base)).await;
    assert_eq!(signed.header("access-control-allow-origin").as_deref(), Some("*"));
    for path in ["/metrics", "/healthz"] {
        let r = get_with(&c, &hlsd.url(path), &[("Origin", "https://evil.example")]).await;
        assert_eq!(r.status, 200, "{path}");
        assert!(r.header("access-control-allow-origin").is_none(), "{path} has CORS");
        assert_no_secret(path, &r.text());
    }
    let metrics = get(&c, &hlsd.url("/metrics")).await.text();
    assert!(metrics.contains("hlsd_http_denied_total{reason=\"expired\"} 1"), "{metrics}");
    assert!(metrics.contains("hlsd_http_denied_total{reason=\"forged\"}"), "{metrics}");
    // The RTMP sink and the S3 output have tried and failed by now, and logged it.
    assert!(hlsd.wait_stderr("rtmp://127.0.0.1:9/live/***", Duration::from_secs(20)), "{}", hlsd.stderr());
    assert!(hlsd.wait_stderr("open rtsp://admin:***@cam/ token=***", Duration::from_secs(5)), "{}", hlsd.stderr());
    assert!(hlsd.wait_stderr("store request failed", Duration::from_secs(20)), "{}", hlsd.stderr());
    assert_no_secret("stderr", &hlsd.stderr());
    hlsd.assert_no_panic();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_and_a_separate_metrics_listener() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        "basic-auth = \"viewer:BASIC-SECRET\"\nmetrics-listen = \"127.0.0.1:0\"\nmetrics-auth = \"prom:METRICS-SECRET\"\n\
         width = 320\nheight = 240\n",
    );
    let hlsd = Hlsd::start(&["--config", &cfg]);
    let c = client();
    let basic = |up: &str| format!("Basic {}", base64_encode(up.as_bytes()));
    let r = get(&c, &hlsd.url("/stream.m3u8")).await;
    assert_eq!(r.status, 401);
    assert!(r.header("www-authenticate").is_some_and(|v| v.starts_with("Basic realm=")), "{:?}", r.headers);
    let r = get_with(&c, &hlsd.url("/stream.m3u8"), &[("Authorization", &basic("viewer:wrong"))]).await;
    assert_eq!(r.status, 401);
    let r = get_with(&c, &hlsd.url("/stream.m3u8"), &[("Authorization", &basic("viewer:BASIC-SECRET"))]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    // The main port no longer serves the status routes, whatever the credentials.
    for path in ["/metrics", "/healthz"] {
        let r = get_with(&c, &hlsd.url(path), &[("Authorization", &basic("viewer:BASIC-SECRET"))]).await;
        assert_eq!(r.status, 404, "{path} on the main port");
    }
    let line_start = "metrics and healthz listening";
    assert!(hlsd.wait_stderr(line_start, Duration::from_secs(10)), "{}", hlsd.stderr());
    let log = hlsd.stderr();
    let after = log.split(line_start).nth(1).unwrap().split("127.0.0.1:").nth(1).unwrap();
    let port: String = after.chars().take_while(|c| c.is_ascii_digit()).collect();
    let m = format!("http://127.0.0.1:{port}");
    assert_eq!(get(&c, &format!("{m}/metrics")).await.status, 401);
    assert_eq!(get_with(&c, &format!("{m}/metrics"), &[("Authorization", &basic("viewer:BASIC-SECRET"))]).await.status, 401);
    for path in ["/metrics", "/healthz"] {
        let r = get_with(&c, &format!("{m}{path}"), &[("Authorization", &basic("prom:METRICS-SECRET"))]).await;
        assert_eq!(r.status, 200, "{path} on metrics-listen");
        assert!(r.header("access-control-allow-origin").is_none());
        assert_no_secret(path, &r.text());
    }
    let r = get_with(&c, &format!("{m}/stream.m3u8"), &[("Authorization", &basic("prom:METRICS-SECRET"))]).await;
    assert_eq!(r.status, 404, "metrics-listen serves nothing else");
    assert_no_secret("stderr", &hlsd.stderr());
    hlsd.assert_no_panic();
}

fn base64_encode(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b)
}

// ---------------------------------------------------------------------------------------------
// TLS certificate reload

mod tls {
    use std::sync::Arc;
    use tokio_rustls::rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use tokio_rustls::rustls::crypto::{ring, verify_tls12_signature, verify_tls13_signature, CryptoProvider};
    use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use tokio_rustls::rustls::{ClientConfig, DigitallySignedStruct, Error, SignatureScheme};

    /// Accepts any certificate (checking handshake signatures): the test compares it itself.
    #[derive(Debug)]
    struct AnyCert(Arc<CryptoProvider>);

    impl ServerCertVerifier for AnyCert {
        fn verify_server_cert(
            &self,
            _: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: UnixTime,
        ) -> Result<ServerCertVerified, Error> {
            Ok(ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(&self, m: &[u8], c: &CertificateDer<'_>, d: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, Error> {
            verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
        }
        fn verify_tls13_signature(&self, m: &[u8], c: &CertificateDer<'_>, d: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, Error> {
            verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
        }
        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }

    pub type Conn = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

    /// A TLS connection offering only h2; returns it and the server's certificate (DER).
    pub async fn connect(port: u16) -> (Conn, Vec<u8>) {
        let provider = Arc::new(ring::default_provider());
        let mut cfg = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
            .with_no_client_auth();
        cfg.alpn_protocols = vec![b"h2".to_vec()];
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg)).connect(name, tcp).await.unwrap();
        let cert = tls.get_ref().1.peer_certificates().unwrap()[0].to_vec();
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        (tls, cert)
    }

    /// DER of the first certificate of a PEM file.
    pub fn der(pem: &std::path::Path) -> Vec<u8> {
        let bytes = std::fs::read(pem).unwrap();
        let first = rustls_pemfile::certs(&mut &bytes[..]).next().unwrap().unwrap().to_vec();
        first
    }
}

/// An HTTP/2 client connection on `conn`.
async fn h2(conn: tls::Conn) -> hyper::client::conn::http2::SendRequest<http_body_util::Empty<bytes::Bytes>> {
    let (send, driver) = hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), hyper_util::rt::TokioIo::new(conn))
        .await
        .unwrap();
    tokio::spawn(driver);
    send
}

async fn h2_get(send: &mut hyper::client::conn::http2::SendRequest<http_body_util::Empty<bytes::Bytes>>, port: u16, path: &str) -> u16 {
    let req = http::Request::get(format!("https://localhost:{port}{path}")).body(http_body_util::Empty::new()).unwrap();
    let r = tokio::time::timeout(common::HTTP_TIMEOUT, send.send_request(req)).await.expect("h2 request timed out").unwrap();
    r.status().as_u16()
}

/// Replaces the live files by rename (as certbot and most deploy tools do).
fn install(from: &(std::path::PathBuf, std::path::PathBuf), to: &(std::path::PathBuf, std::path::PathBuf)) {
    for (f, t) in [(&from.0, &to.0), (&from.1, &to.1)] {
        let tmp = t.with_extension("tmp");
        std::fs::copy(f, &tmp).unwrap();
        std::fs::rename(&tmp, t).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_certificate_reloads_on_sighup_and_file_change_without_dropping_connections() {
    let dir = tempfile::tempdir().unwrap();
    let a = self_signed_cert(dir.path(), "a");
    let b = self_signed_cert(dir.path(), "b");
    let live = (dir.path().join("live.crt"), dir.path().join("live.key"));
    install(&a, &live);
    let hlsd = Hlsd::start(&[
        "--width", "320", "--height", "240",
        "--tls-cert", live.0.to_str().unwrap(), "--tls-key", live.1.to_str().unwrap(),
    ]);
    let (conn_a, cert) = tls::connect(hlsd.port).await;
    assert_eq!(cert, tls::der(&a.0), "starts with A");
    let mut old = h2(conn_a).await;
    assert_eq!(h2_get(&mut old, hlsd.port, "/healthz").await, 200);

    // Waits (bounded) until stderr after byte `from` holds `needle`.
    let logged_after = |from: usize, needle: &str| {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !hlsd.stderr()[from..].contains(needle) {
            assert!(std::time::Instant::now() < deadline, "no {needle:?} after byte {from}:\n{}", hlsd.stderr());
            hlsd.wait_stderr("\u{0}", Duration::from_millis(100));
        }
    };
    // B + SIGHUP: the signal's reload (always logged after its own line) installs B.
    install(&b, &live);
    assert_eq!(unsafe { libc::kill(hlsd.pid() as i32, libc::SIGHUP) }, 0);
    assert!(hlsd.wait_stderr("SIGHUP: reloading the TLS certificate", Duration::from_secs(10)));
    let at = hlsd.stderr().find("SIGHUP: reloading").unwrap();
    logged_after(at, "TLS certificate reloaded");
    let (conn_b, cert) = tls::connect(hlsd.port).await;
    assert_eq!(cert, tls::der(&b.0), "new handshakes see B");
    assert_eq!(h2_get(&mut old, hlsd.port, "/healthz").await, 200, "the connection made with A still works");
    assert_eq!(h2_get(&mut old, hlsd.port, "/stream.m3u8").await, 200);
    drop(conn_b);

    // A bad certificate file: the reload fails, the current certificate (B) stays.
    let before = hlsd.stderr().len();
    let tmp = dir.path().join("garbage.tmp");
    std::fs::write(&tmp, b"-----BEGIN CERTIFICATE-----\ngarbage\n").unwrap();
    std::fs::rename(&tmp, &live.0).unwrap();
    logged_after(before, "TLS certificate reload failed; keeping the current certificate");
    assert_eq!(tls::connect(hlsd.port).await.1, tls::der(&b.0), "still B after a failed reload");

    // A again, by file change only (no signal): new handshakes see A within a few polls.
    let before = hlsd.stderr().len();
    install(&a, &live);
    logged_after(before, "TLS certificate reloaded");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while tls::connect(hlsd.port).await.1 != tls::der(&a.0) {
        assert!(std::time::Instant::now() < deadline, "A not served after the file change:\n{}", hlsd.stderr());
        hlsd.wait_stderr("\u{0}", Duration::from_millis(100));
    }
    assert_eq!(hlsd.stderr().matches("SIGHUP:").count(), 1, "one signal only");
    assert_eq!(h2_get(&mut old, hlsd.port, "/healthz").await, 200, "still the same old connection");
    hlsd.assert_no_panic();
}

/// The fenced block of `lang` that follows `marker` in the README.
fn readme_block(marker: &str, lang: &str) -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let at = readme.find(marker).unwrap_or_else(|| panic!("README has no {marker:?}"));
    let open = format!("```{lang}\n");
    let start = readme[at..].find(&open).map(|i| at + i + open.len()).expect("code block");
    let end = readme[start..].find("```").map(|i| start + i).expect("end of code block");
    readme[start..end].to_string()
}

/// README "Validating at the edge (nginx)": its njs script and nginx configuration, run by a real
/// nginx (Debian's libnginx-mod-http-js) in front of hlsd, pass what hlsd signed and refuse the
/// rest themselves (nginx's own 403 page), before hlsd sees the request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_njs_recipe_validates_signed_urls_at_nginx() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &format!("access-secret = \"{ACCESS}\"\nbase-path = \"/cams/birdbox\"\nwidth = 320\nheight = 240\n"));
    let hlsd = Hlsd::start(&["--config", &cfg]);
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let script = dir.path().join("hlsd_auth.js");
    std::fs::write(&script, readme_block("Validating at the edge (nginx)", "js")).unwrap();
    let d = dir.path().display();
    let conf = readme_block("Validating at the edge (nginx)", "nginx")
        .replace("modules/ngx_http_js_module.so", "/usr/lib/nginx/modules/ngx_http_js_module.so")
        .replace("/etc/nginx/hlsd_auth.js", &script.display().to_string())
        .replace("127.0.0.1:8080", &format!("127.0.0.1:{}", hlsd.port))
        .replace(
            "http {",
            &format!("http {{\n    access_log off;\n    client_body_temp_path {d}; proxy_temp_path {d}; fastcgi_temp_path {d}; uwsgi_temp_path {d}; scgi_temp_path {d};"),
        )
        .replace("server {", &format!("server {{\n        listen 127.0.0.1:{port};"));
    assert!(conf.contains(&format!("listen 127.0.0.1:{port}")) && conf.contains("js_set"), "{conf}");
    // One process (no master), so killing it leaves no worker behind, as in tests/rtmp.rs.
    let conf = format!("{conf}\npid {d}/nginx.pid;\ndaemon off;\nmaster_process off;\nevents {{}}\n");
    std::fs::write(dir.path().join("nginx.conf"), &conf).unwrap();
    let mut nginx = Reaped(std::process::Command::new("nginx")
        .args(["-e", "stderr", "-p"])
        .arg(dir.path())
        .arg("-c")
        .arg(dir.path().join("nginx.conf"))
        .env("HLSD_ACCESS_SECRET", ACCESS)
        .stdin(std::process::Stdio::null())
        .spawn()
        .expect("nginx (infra/setup.sh --test installs it with libnginx-mod-http-js)"));
    // nginx gives no readiness event: poll its port, bounded.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(nginx.0.try_wait().unwrap().is_none(), "nginx exited: see its stderr above\n{conf}");
        assert!(std::time::Instant::now() < deadline, "nginx did not listen on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let c = client();
    let edge = format!("http://127.0.0.1:{port}/cams/birdbox");
    let secret = ACCESS.as_bytes();
    // Signed by hlsd's rules: through nginx to hlsd and back, and the playlist URIs carry it.
    let token = hlsd::http::auth::sign(secret, "/cams/birdbox/", now() + 600);
    let r = get(&c, &format!("{edge}/stream.m3u8?{token}")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let media = r.text().lines().find(|l| l.starts_with("media.m3u8")).expect("media URI").to_string();
    assert!(media.contains(&token), "{media}");
    let r = get(&c, &format!("{edge}/{media}&_HLS_msn=1")).await;
    assert_eq!(r.status, 200, "blocking reload through nginx: {}", r.text());
    let init = uris(&r.text()).into_iter().find(|u| u.contains("-i")).expect("init URI");
    assert_eq!(get(&c, &format!("{edge}/{init}")).await.status, 200);
    // Refused by nginx itself (its HTML page), whatever is wrong with the link.
    for (what, query) in [
        ("unsigned", String::new()),
        ("expired", hlsd::http::auth::sign(secret, "/cams/birdbox/", now() - 10)),
        ("forged", hlsd::http::auth::sign(b"not-the-secret-0123456", "/cams/birdbox/", now() + 600)),
        ("other path", hlsd::http::auth::sign(secret, "/cams/other/", now() + 600)),
        ("prefix boundary", hlsd::http::auth::sign(secret, "/cams/bird", now() + 600)),
    ] {
        let r = get(&c, &format!("{edge}/stream.m3u8?{query}")).await;
        assert_eq!(r.status, 403, "{what}: {}", r.text());
        assert!(r.text().contains("<center>nginx"), "{what}: refused by hlsd, not nginx: {}", r.text());
    }
}

/// A child process killed and reaped when dropped (also when the test fails).
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
