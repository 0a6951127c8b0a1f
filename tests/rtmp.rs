//! Restreaming to RTMP, judged by software that is not ours: a real nginx with
//! libnginx-mod-rtmp started on a free loopback port, and ffprobe reading the stream back from
//! it (`rtmp://127.0.0.1:PORT/live/KEY`) and decoding it.
//!
//! - testsrc (with the silent AAC track, to two destinations) and the Raspberry Pi fixture:
//!   H.264 at the right size and frame rate, seconds of frames decoded without errors.
//! - nginx restarted mid-run: hlsd reconnects and the stream is readable again within seconds,
//!   while the HLS origin keeps publishing parts on time.
//! - bad destinations (refused, wrong app, garbage server, TLS to a plain server, a server
//!   that never answers): clear errors, retries, HLS unaffected, no crash.
//!
//! Stream keys are asserted absent from hlsd's log throughout.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const RTMP_MODULE: &str = "/usr/lib/nginx/modules/ngx_rtmp_module.so";
const STREAM_MODULE: &str = "/usr/lib/nginx/modules/ngx_stream_module.so";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A self-signed certificate for 127.0.0.1 (made once per test process): (cert, key).
fn test_cert() -> &'static (PathBuf, PathBuf) {
    static CERT: std::sync::OnceLock<(PathBuf, PathBuf)> = std::sync::OnceLock::new();
    CERT.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep();
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        let out = Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-days",
                "2",
            ])
            .args([
                "-subj",
                "/CN=127.0.0.1",
                "-addext",
                "subjectAltName=IP:127.0.0.1",
                "-addext",
                "basicConstraints=critical,CA:FALSE",
            ])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .expect("openssl is installed (infra/setup.sh --test)");
        assert!(
            out.status.success(),
            "openssl: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        (cert, key)
    })
}

/// Environment of every hlsd these tests start (set identically by every test before any
/// hlsd is spawned): a log without colours, so tests can look for `field=value`, and the test
/// certificate as the system trust store (rustls-native-certs honours SSL_CERT_FILE).
fn test_env() {
    std::env::set_var("NO_COLOR", "1");
    std::env::set_var("SSL_CERT_FILE", &test_cert().0);
}

/// An nginx-rtmp server in a temporary prefix, with a TLS front (nginx `stream` module,
/// [`test_cert`]) on `tls_port` for rtmps; killed on drop.
struct Nginx {
    dir: tempfile::TempDir,
    port: u16,
    tls_port: u16,
    child: Option<Child>,
}

impl Nginx {
    fn start() -> Nginx {
        assert!(
            Path::new(RTMP_MODULE).is_file()
                && Path::new(STREAM_MODULE).is_file()
                && Command::new("nginx").arg("-v").output().is_ok(),
            "nginx with {RTMP_MODULE} and {STREAM_MODULE} is needed: run infra/setup.sh --test \
             (Debian nginx, libnginx-mod-rtmp, libnginx-mod-stream)"
        );
        let mut n = Nginx {
            dir: tempfile::tempdir().unwrap(),
            port: free_port(),
            tls_port: free_port(),
            child: None,
        };
        n.launch();
        n
    }

    /// Starts nginx (again, after [`Nginx::kill`]: same port and prefix) and waits until it listens.
    fn launch(&mut self) {
        let d = self.dir.path();
        std::fs::create_dir_all(d.join("logs")).unwrap();
        let (cert, key) = test_cert();
        let conf = format!(
            "load_module {RTMP_MODULE};\n\
             load_module {STREAM_MODULE};\n\
             daemon off;\n\
             master_process off;\n\
             error_log stderr warn;\n\
             pid {pid};\n\
             events {{ worker_connections 128; }}\n\
             rtmp {{\n  server {{\n    listen 127.0.0.1:{port};\n    chunk_size 4096;\n\
             \x20   application live {{ live on; wait_key on; }}\n  }}\n}}\n\
             stream {{\n  server {{\n    listen 127.0.0.1:{tls_port} ssl;\n\
             \x20   ssl_certificate {cert};\n    ssl_certificate_key {key};\n\
             \x20   proxy_pass 127.0.0.1:{port};\n  }}\n}}\n",
            pid = d.join("nginx.pid").display(),
            port = self.port,
            tls_port = self.tls_port,
            cert = cert.display(),
            key = key.display(),
        );
        std::fs::write(d.join("nginx.conf"), conf).unwrap();
        let child = Command::new("nginx")
            .arg("-e")
            .arg("stderr")
            .arg("-p")
            .arg(d)
            .arg("-c")
            .arg(d.join("nginx.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("run nginx");
        self.child = Some(child);
        // No readiness event from nginx: poll its port, bounded.
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok()
                && TcpStream::connect(("127.0.0.1", self.tls_port)).is_ok()
            {
                return;
            }
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("nginx exited ({st}) instead of listening on {}", self.port);
            }
            assert!(
                Instant::now() < deadline,
                "nginx not listening on {} after 15 s",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn url(&self, app: &str, key: &str) -> String {
        format!("rtmp://127.0.0.1:{}/{app}/{key}", self.port)
    }

    fn masked(&self, app: &str) -> String {
        format!("rtmp://127.0.0.1:{}/{app}/***", self.port)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs a command with a deadline (killed after it); `None` on timeout.
fn run_with_deadline(cmd: &mut Command, timeout: Duration) -> Option<Output> {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(timeout) {
        Ok(out) => Some(out.expect("wait")),
        Err(_) => {
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg(pid.to_string())
                .status();
            let _ = rx.recv_timeout(Duration::from_secs(5));
            None
        }
    }
}

/// What ffprobe saw reading (and decoding) an RTMP stream.
#[derive(Debug, Default)]
struct Probe {
    video: Vec<Vec<(String, String)>>,
    audio: Vec<Vec<(String, String)>>,
    video_stream: Option<Vec<(String, String)>>,
    audio_stream: Option<Vec<(String, String)>>,
    stderr: String,
}

fn fields(line: &str) -> Vec<(String, String)> {
    line.split('|')
        .skip(1)
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn field<'a>(f: &'a [(String, String)], k: &str) -> &'a str {
    f.iter()
        .find(|(a, _)| a == k)
        .map(|(_, v)| v.as_str())
        .unwrap_or("")
}

impl Probe {
    fn video_pts(&self) -> Vec<f64> {
        self.video
            .iter()
            .filter_map(|f| field(f, "pts_time").parse().ok())
            .collect()
    }
    fn vstream(&self, k: &str) -> String {
        self.video_stream
            .as_deref()
            .map(|s| field(s, k).to_string())
            .unwrap_or_default()
    }
}

/// Plays `url` from nginx with ffprobe, decoding every video frame of `seconds` of stream.
/// nginx holds a player of a not-yet-published stream until a publisher comes, so this also
/// waits for the stream to appear (up to `timeout`).
fn probe(url: &str, seconds: f64, timeout: Duration) -> Option<Probe> {
    probe_streams(url, seconds, "v", timeout)
}

/// [`probe`] of the streams `select` ("v", "a"; "" for all). The interval counts from the first
/// packet of the selected streams: nginx (`wait_key on`) holds video back until a keyframe
/// while audio flows at once.
fn probe_streams(url: &str, seconds: f64, select: &str, timeout: Duration) -> Option<Probe> {
    let mut cmd = Command::new("ffprobe");
    // RTMP's FLV header announces audio and video: without a shorter analysis ffprobe waits
    // 5 s for an audio stream of a video-only publisher.
    cmd.args(["-analyzeduration", "1000000"]);
    if !select.is_empty() {
        cmd.args(["-select_streams", select]);
    }
    let out = run_with_deadline(
        cmd.args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_type,codec_name,width,height,r_frame_rate,avg_frame_rate,sample_rate,channels:\
             frame=media_type,pts_time,key_frame,width,height",
            "-read_intervals",
            &format!("%+{seconds}"),
            "-of",
            "compact",
            url,
        ]),
        timeout,
    )?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let mut p = Probe {
        stderr: String::from_utf8_lossy(&out.stderr).to_string(),
        ..Default::default()
    };
    assert!(
        out.status.success(),
        "ffprobe {url} failed: {}\n{}",
        out.status,
        p.stderr
    );
    for line in text.lines() {
        let f = fields(line);
        match (
            line.split('|').next(),
            field(&f, "media_type"),
            field(&f, "codec_type"),
        ) {
            (Some("frame"), "video", _) => p.video.push(f),
            (Some("frame"), "audio", _) => p.audio.push(f),
            (Some("stream"), _, "video") => p.video_stream = Some(f),
            (Some("stream"), _, "audio") => p.audio_stream = Some(f),
            _ => {}
        }
    }
    Some(p)
}

/// Asserts H.264 at `w`x`h`, 30 fps, at least `min_frames` decoded frames without errors,
/// starting with a keyframe, 1/30 s apart.
fn assert_video(p: &Probe, w: u32, h: u32, min_frames: usize, what: &str) {
    assert_video_at(p, w, h, 30, min_frames, what)
}

/// [`assert_video`] at `fps`.
fn assert_video_at(p: &Probe, w: u32, h: u32, fps: u32, min_frames: usize, what: &str) {
    assert!(
        p.stderr.trim().is_empty(),
        "{what}: decoder errors:\n{}",
        p.stderr
    );
    assert_eq!(p.vstream("codec_name"), "h264", "{what}: {p:?}");
    assert_eq!(
        (p.vstream("width"), p.vstream("height")),
        (w.to_string(), h.to_string()),
        "{what}"
    );
    assert_eq!(
        p.vstream("avg_frame_rate"),
        format!("{fps}/1"),
        "{what}: onMetaData framerate"
    );
    assert!(
        p.video.len() >= min_frames,
        "{what}: only {} frames decoded",
        p.video.len()
    );
    assert_eq!(
        field(&p.video[0], "key_frame"),
        "1",
        "{what}: the first frame a player gets is a keyframe"
    );
    for f in &p.video {
        assert_eq!(
            (field(f, "width"), field(f, "height")),
            (w.to_string().as_str(), h.to_string().as_str()),
            "{what}: decoded size"
        );
    }
    let pts = p.video_pts();
    let mut steps: Vec<f64> = pts.windows(2).map(|x| x[1] - x[0]).collect();
    assert!(
        steps.iter().all(|&s| s > 0.0),
        "{what}: timestamps not increasing: {pts:?}"
    );
    steps.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let median = steps[steps.len() / 2];
    assert!(
        (median - 1.0 / fps as f64).abs() < 0.002,
        "{what}: median frame step {median} s, not 1/{fps}"
    );
    let span = pts.last().unwrap() - pts[0];
    let rate = (pts.len() - 1) as f64 / span;
    assert!(
        (rate - fps as f64).abs() < 1.0,
        "{what}: {rate:.2} fps over {span:.2} s"
    );
}

fn assert_no_key(h: &Hlsd, keys: &[&str]) {
    let e = h.stderr();
    for k in keys {
        assert!(!e.contains(k), "stream key {k} appears in hlsd's log:\n{e}");
    }
}

async fn metrics(c: &reqwest::Client, h: &Hlsd) -> String {
    get(c, &h.url("/metrics")).await.ok_text("/metrics")
}

fn metric(text: &str, name: &str, labels: &str) -> Option<f64> {
    let prefix = format!("{name}{{{labels}}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}

const TESTSRC: [&str; 10] = [
    "--source",
    "testsrc",
    "--width",
    "320",
    "--height",
    "240",
    "--bitrate",
    "300000",
    "--keyint",
    "30",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_testsrc_and_fixture_to_nginx() {
    test_env();
    let ngx = Nginx::start();
    let (k1, k2, k3) = ("testsrc-SECRETKEY1", "tls-SECRETKEY2", "fixture-SECRETKEY3");
    let (u1, u2, u3) = (
        ngx.url("live", k1),
        ngx.url("live", k2),
        ngx.url("live", k3),
    );
    // The second destination goes through nginx's TLS front: rtmps, verified against test_cert.
    let u2_tls = format!("rtmps://127.0.0.1:{}/live/{k2}", ngx.tls_port);

    let mut args = TESTSRC.to_vec();
    args.extend([
        "--rtmp",
        u1.as_str(),
        "--rtmp",
        u2_tls.as_str(),
        "--rtmp-audio",
        "silent",
    ]);
    let a = Hlsd::start(&args);
    let fixture = fixture(FIXTURE_720P);
    let src = format!("file:{}", fixture.display());
    let b = Hlsd::start(&["--source", src.as_str(), "--loop", "--rtmp", u3.as_str()]);

    // testsrc with the silent AAC track.
    let p = probe(&u1, 3.0, Duration::from_secs(30)).expect("ffprobe testsrc within 30 s");
    assert_video(&p, 320, 240, 80, "testsrc");
    let p = probe_streams(&u1, 2.0, "a", Duration::from_secs(20)).expect("ffprobe testsrc audio");
    assert!(
        p.stderr.trim().is_empty(),
        "AAC decoder errors:\n{}",
        p.stderr
    );
    let astream = p
        .audio_stream
        .as_deref()
        .expect("an audio stream (--rtmp-audio silent)");
    assert_eq!(
        (
            field(astream, "codec_name"),
            field(astream, "sample_rate"),
            field(astream, "channels")
        ),
        ("aac", "44100", "2")
    );
    assert!(
        p.audio.len() >= 80,
        "{} AAC frames decoded in 2 s (44100/1024 = 43 per s)",
        p.audio.len()
    );

    // The second destination of the same hlsd, published over rtmps.
    let p = probe(&u2, 1.0, Duration::from_secs(20)).expect("ffprobe of the rtmps destination");
    assert_video(&p, 320, 240, 20, "rtmps destination");

    // The Raspberry Pi capture, video only.
    let p = probe(&u3, 3.0, Duration::from_secs(30)).expect("ffprobe fixture within 30 s");
    assert_video(&p, 1280, 720, 80, "fixture");
    let p = probe_streams(&u3, 0.5, "", Duration::from_secs(20)).expect("ffprobe fixture streams");
    assert!(
        p.audio_stream.is_none() && p.video_stream.is_some(),
        "video only unless asked for: {p:?}"
    );

    // HLS is served all along; metrics per destination use the masked URL.
    let c = client();
    for h in [&a, &b] {
        assert!(
            wait_for_msn(&c, &h.base, 2)
                .await
                .last_complete_msn()
                .unwrap()
                >= 2
        );
    }
    let m = metrics(&c, &a).await;
    let d1 = ngx.masked("live");
    let d2 = format!("rtmps://127.0.0.1:{}/live/***", ngx.tls_port);
    for d in [&d1, &d2] {
        let l = format!("destination=\"{d}\"");
        assert_eq!(
            metric(&m, "hlsd_rtmp_state", &format!("{l},state=\"publishing\"")),
            Some(1.0),
            "{d}:\n{m}"
        );
        assert_eq!(
            metric(&m, "hlsd_rtmp_state", &format!("{l},state=\"retrying\"")),
            Some(0.0),
            "{d}"
        );
        assert!(
            metric(&m, "hlsd_rtmp_bytes_total", &l).unwrap_or(0.0) > 50_000.0,
            "{d}: bytes sent\n{m}"
        );
        assert!(
            metric(&m, "hlsd_rtmp_frames_total", &l).unwrap_or(0.0) >= 60.0,
            "{d}: frames sent\n{m}"
        );
        assert_eq!(
            metric(&m, "hlsd_rtmp_reconnects_total", &l),
            Some(0.0),
            "{d}"
        );
    }
    assert!(!m.contains("SECRETKEY"), "stream key in /metrics");
    assert!(
        a.stderr().contains(&format!(
            "rtmp: publishing; starting at the next IDR destination={d1}"
        )),
        "{}",
        a.stderr()
    );
    assert_no_key(&a, &[k1, k2]);
    assert_no_key(&b, &[k3]);
    assert!(
        !b.stderr().contains("dropping"),
        "no frames dropped on loopback:\n{}",
        b.stderr()
    );

    // Graceful shutdown unpublishes (nginx would otherwise only notice the closed socket).
    a.terminate();
    b.terminate();
    let (mut a, mut b) = (a, b);
    for h in [&mut a, &mut b] {
        assert!(
            h.wait_exit(Duration::from_secs(15))
                .is_some_and(|s| s.success()),
            "clean exit:\n{}",
            h.stderr()
        );
        assert!(
            h.stderr().contains("rtmp: stream ended; unpublished"),
            "{}",
            h.stderr()
        );
    }
}

/// Follows the live playlist part by part with blocking reloads until `stop`, returning the
/// longest wait for a new part and the number of parts seen.
async fn follow_parts(base: String, stop: tokio::sync::watch::Receiver<bool>) -> (Duration, usize) {
    let c = client();
    let mut pl = common::rules::MediaPlaylist::parse(&media(&c, &base, "").await);
    let mut longest = Duration::ZERO;
    let mut parts = 0;
    while !*stop.borrow() {
        let (m, n) = pl.next_part_position();
        let t = Instant::now();
        pl = common::rules::MediaPlaylist::parse(
            &media(&c, &base, &format!("_HLS_msn={m}&_HLS_part={n}")).await,
        );
        longest = longest.max(t.elapsed());
        parts += 1;
    }
    (longest, parts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_after_nginx_restart() {
    test_env();
    let mut ngx = Nginx::start();
    let key = "restart-SECRETKEY4";
    let url = ngx.url("live", key);
    let mut args = TESTSRC.to_vec();
    args.extend(["--rtmp", url.as_str()]);
    let h = Hlsd::start(&args);
    let p = probe(&url, 1.0, Duration::from_secs(30)).expect("stream readable before the restart");
    assert_video(&p, 320, 240, 20, "before restart");

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let follower = tokio::spawn(follow_parts(h.base.clone(), stop_rx));

    ngx.kill();
    let lost = tokio::task::block_in_place(|| {
        h.wait_stderr(
            "rtmp: destination failed; will retry",
            Duration::from_secs(15),
        )
    });
    assert!(
        lost,
        "hlsd did not notice nginx going away:\n{}",
        h.stderr()
    );
    ngx.launch();
    let restarted = Instant::now();
    let p = tokio::task::block_in_place(|| probe(&url, 1.0, Duration::from_secs(30)))
        .expect("stream readable after the restart");
    let back = restarted.elapsed();
    assert_video(&p, 320, 240, 20, "after restart");
    assert!(
        back < Duration::from_secs(8),
        "stream readable again only after {back:?}"
    );

    stop_tx.send(true).unwrap();
    let (longest, parts) = follower.await.unwrap();
    assert!(parts >= 5, "HLS published only {parts} parts meanwhile");
    assert!(
        longest < Duration::from_secs(1),
        "a blocking reload waited {longest:?} for a 0.2 s part: the origin stalled"
    );

    let m = metrics(&client(), &h).await;
    let l = format!("destination=\"{}\"", ngx.masked("live"));
    assert!(
        metric(&m, "hlsd_rtmp_reconnects_total", &l).unwrap_or(0.0) >= 1.0,
        "{m}"
    );
    assert_eq!(
        metric(&m, "hlsd_rtmp_state", &format!("{l},state=\"publishing\"")),
        Some(1.0),
        "{m}"
    );
    assert!(
        metric(
            &m,
            "hlsd_rtmp_frames_dropped_total",
            &format!("{l},reason=\"disconnected\"")
        )
        .unwrap_or(0.0)
            > 0.0,
        "{m}"
    );
    assert_no_key(&h, &[key]);
    let log = h.stderr();
    eprintln!(
        "{}",
        log.lines()
            .filter(|l| l.contains("rtmp:"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    eprintln!("rtmp: readable again {back:?} after nginx came back; longest HLS part wait {longest:?} over {parts} parts");
}

/// A TCP server that answers every connection with garbage and closes; reports each accept.
fn garbage_server() -> (u16, mpsc::Receiver<()>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { break };
            // Read the client's whole C0+C1 first, so the answer is not lost to a reset.
            let mut buf = [0u8; 1537];
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let _ = s.read_exact(&mut buf);
            let _ = s.write_all(
                b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\nthis is not rtmp",
            );
            if tx.send(()).is_err() {
                break;
            }
        }
    });
    (port, rx)
}

/// A TCP server that accepts and then never says anything.
fn silent_server() -> (u16, std::sync::Arc<std::sync::Mutex<Vec<TcpStream>>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let held = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let h2 = held.clone();
    std::thread::spawn(move || {
        for s in l.incoming().map_while(Result::ok) {
            h2.lock().unwrap().push(s);
        }
    });
    (port, held)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_destinations_retry_without_crashing() {
    test_env();
    let ngx = Nginx::start();
    let refused_port = free_port(); // bound and released: nothing listens there
    let (garbage_port, accepts) = garbage_server();
    let (silent_port, _held) = silent_server();
    let cases: Vec<(String, String, &str)> = vec![
        (
            format!("rtmp://127.0.0.1:{refused_port}/live/SECRETKEY5"),
            format!("rtmp://127.0.0.1:{refused_port}/live/***"),
            "Connection refused",
        ),
        (
            ngx.url("nope", "SECRETKEY6"),
            ngx.masked("nope"),
            "wrong application name",
        ),
        (
            format!("rtmp://127.0.0.1:{garbage_port}/live/SECRETKEY7"),
            format!("rtmp://127.0.0.1:{garbage_port}/live/***"),
            "RTMP handshake failed",
        ),
        // TLS to the plain RTMP port: nginx-rtmp waits for 1537 handshake bytes, TLS for an answer.
        (
            format!("rtmps://127.0.0.1:{}/live/SECRETKEY8", ngx.port),
            format!("rtmps://127.0.0.1:{}/live/***", ngx.port),
            "TLS",
        ),
        (
            format!("rtmp://127.0.0.1:{silent_port}/live/SECRETKEY9"),
            format!("rtmp://127.0.0.1:{silent_port}/live/***"),
            "timed out",
        ),
    ];
    let mut args = TESTSRC.to_vec();
    for (u, _, _) in &cases {
        args.extend(["--rtmp", u.as_str()]);
    }
    let good = ngx.url("live", "good-SECRETKEY0");
    args.extend(["--rtmp", good.as_str()]);
    let h = Hlsd::start(&args);

    // The good destination is unaffected by the bad ones.
    let p = probe(&good, 1.0, Duration::from_secs(30)).expect("good destination readable");
    assert_video(&p, 320, 240, 20, "good destination beside bad ones");

    // Each bad one: a clear error, then retries (attempt 2 follows after the first backoff; the
    // silent server takes the whole setup timeout per attempt, so one failure is enough there).
    let all = tokio::task::block_in_place(|| {
        for (_, masked, why) in &cases {
            let n = if *why == "timed out" { 1 } else { 2 };
            let second = format!(
                "rtmp: destination failed; will retry destination={masked} attempt={n} error="
            );
            assert!(
                h.wait_stderr(&second, Duration::from_secs(20)),
                "{masked}: no failed attempt {n}:\n{}",
                h.stderr()
            );
            let line = h
                .stderr()
                .lines()
                .find(|l| l.contains(&second))
                .unwrap_or_default()
                .to_string();
            assert!(line.contains(why), "{masked}: expected {why:?} in {line}");
        }
        assert!(
            accepts.recv_timeout(Duration::from_secs(5)).is_ok()
                && accepts.recv_timeout(Duration::from_secs(5)).is_ok()
        );
        h.stderr()
    });
    eprintln!(
        "{}",
        all.lines()
            .filter(|l| l.contains("will retry"))
            .collect::<Vec<_>>()
            .join("\n")
    );

    // HLS and the process are fine.
    let c = client();
    let pl = wait_for_msn(&c, &h.base, 3).await;
    assert!(!pl.endlist);
    let m = metrics(&c, &h).await;
    for (_, masked, why) in &cases {
        let l = format!("destination=\"{masked}\"");
        let n = if *why == "timed out" { 1.0 } else { 2.0 };
        assert!(
            metric(&m, "hlsd_rtmp_reconnects_total", &l).unwrap_or(0.0) >= n,
            "{masked}:\n{m}"
        );
        assert_eq!(
            metric(&m, "hlsd_rtmp_state", &format!("{l},state=\"publishing\"")),
            Some(0.0),
            "{masked}"
        );
    }
    h.assert_no_panic();
    assert_no_key(&h, &["SECRETKEY"]);
}

/// `--rtmp` errors name the problem without echoing the key; config files may hold the URLs.
#[test]
fn bad_urls_are_rejected_at_startup_without_showing_the_key() {
    let (st, err) = Hlsd::run_to_exit(
        &["--rtmp", "rtmp://example.com/SECRETKEY"],
        Duration::from_secs(20),
    );
    assert!(!st.success());
    assert!(err.contains("APP/STREAM-KEY"), "{err}");
    assert!(!err.contains("SECRETKEY"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let p: PathBuf = dir.path().join("hlsd.toml");
    std::fs::write(
        &p,
        "[[rtmp]]\nurl = \"http://example.com/live/SECRETKEY\"\n",
    )
    .unwrap();
    let (st, err) = Hlsd::run_to_exit(&["--config", p.to_str().unwrap()], Duration::from_secs(20));
    assert!(!st.success());
    assert!(
        err.contains("rtmp://") && !err.contains("SECRETKEY"),
        "{err}"
    );

    // HLSD_RTMP: parsed like the flag, and never echoed by --help or errors.
    let hlsd = |env: &str, args: &[&str]| {
        let out = run_with_deadline(
            Command::new(env!("CARGO_BIN_EXE_hlsd"))
                .args(args)
                .env("HLSD_RTMP", env),
            Duration::from_secs(20),
        )
        .expect("hlsd exits");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status, text)
    };
    let (st, text) = hlsd(
        "rtmp://h/live/SECRETKEY rtmps://h2/app/SECRETKEY2",
        &["--help"],
    );
    assert!(
        st.success() && text.contains("HLSD_RTMP") && !text.contains("SECRETKEY"),
        "{text}"
    );
    let (st, text) = hlsd("rtmp://h/live/k rtmp://h2/SECRETKEY", &["--window", "3"]);
    assert!(
        !st.success() && text.contains("APP/STREAM-KEY") && !text.contains("SECRETKEY"),
        "{text}"
    );
}

/// An RTMP server (rml_rtmp's server session) that accepts `connect` and `publish` and then
/// never reads again, like a relay whose uplink died without closing the connection. Reports
/// each accepted publish.
fn stalled_relay() -> (u16, mpsc::Receiver<()>) {
    use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
    use rml_rtmp::sessions::{
        ServerSession, ServerSessionConfig, ServerSessionEvent, ServerSessionResult,
    };
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for s in l.incoming().map_while(Result::ok) {
            let tx = tx.clone();
            std::thread::spawn(move || -> Option<()> {
                let mut s = s;
                let mut hs = Handshake::new(PeerType::Server);
                let mut buf = vec![0u8; 64 * 1024];
                let mut input = loop {
                    let n = s.read(&mut buf).ok().filter(|&n| n > 0)?;
                    match hs.process_bytes(&buf[..n]).ok()? {
                        HandshakeProcessResult::InProgress { response_bytes } => {
                            s.write_all(&response_bytes).ok()?
                        }
                        HandshakeProcessResult::Completed {
                            response_bytes,
                            remaining_bytes,
                        } => {
                            s.write_all(&response_bytes).ok()?;
                            break remaining_bytes;
                        }
                    }
                };
                let (mut session, initial) = ServerSession::new(ServerSessionConfig::new()).ok()?;
                let mut out = initial;
                loop {
                    out.extend(session.handle_input(&input).ok()?);
                    let mut published = false;
                    while !out.is_empty() {
                        for r in std::mem::take(&mut out) {
                            match r {
                                ServerSessionResult::OutboundResponse(p) => {
                                    s.write_all(&p.bytes).ok()?
                                }
                                ServerSessionResult::RaisedEvent(
                                    ServerSessionEvent::ConnectionRequested { request_id, .. },
                                ) => out.extend(session.accept_request(request_id).ok()?),
                                ServerSessionResult::RaisedEvent(
                                    ServerSessionEvent::PublishStreamRequested {
                                        request_id, ..
                                    },
                                ) => {
                                    out.extend(session.accept_request(request_id).ok()?);
                                    published = true;
                                }
                                _ => {}
                            }
                        }
                    }
                    if published {
                        let _ = tx.send(());
                        // Stall: keep the connection open and read nothing, until the test ends.
                        loop {
                            std::thread::park();
                        }
                    }
                    let n = s.read(&mut buf).ok().filter(|&n| n > 0)?;
                    input = buf[..n].to_vec();
                }
            });
        }
    });
    (port, rx)
}

/// A relay that stops reading: its queue overflows (whole GOPs dropped, warned, counted), the
/// stalled write times out and hlsd reconnects, while HLS and another destination carry on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_relay_costs_gops_then_the_connection_not_the_others() {
    test_env();
    let ngx = Nginx::start();
    let (port, published) = stalled_relay();
    let stalled = format!("rtmp://127.0.0.1:{port}/live/SECRETKEYS");
    let stalled_masked = format!("rtmp://127.0.0.1:{port}/live/***");
    let good = ngx.url("live", "good-SECRETKEYG");
    // The 1080p capture at 25 fps (~4.7 Mbit/s) fills the stalled connection's socket buffers
    // within seconds.
    let src = format!("file:{}", fixture(FIXTURE_1080P).display());
    let h = Hlsd::start(&[
        "--source",
        src.as_str(),
        "--loop",
        "--framerate",
        "25",
        "--segment-duration",
        "2.4",
        "--rtmp",
        stalled.as_str(),
        "--rtmp",
        good.as_str(),
    ]);
    tokio::task::block_in_place(|| published.recv_timeout(Duration::from_secs(30)))
        .expect("hlsd published to the relay");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let follower = tokio::spawn(follow_parts(h.base.clone(), stop_rx));

    let full = format!("rtmp: relay too slow, queue full; dropping frames until the next IDR destination={stalled_masked}");
    assert!(
        tokio::task::block_in_place(|| h.wait_stderr(&full, Duration::from_secs(40))),
        "no queue-full warning:\n{}",
        h.stderr()
    );
    // The other destination is unaffected meanwhile.
    let p = tokio::task::block_in_place(|| probe(&good, 2.0, Duration::from_secs(30)))
        .expect("good destination readable");
    assert_video_at(
        &p,
        1920,
        1080,
        25,
        40,
        "good destination beside a stalled one",
    );
    let timeout =
        format!("destination={stalled_masked} attempt=1 error=timed out writing to the server");
    assert!(
        tokio::task::block_in_place(|| h.wait_stderr(&timeout, Duration::from_secs(30))),
        "no write timeout:\n{}",
        h.stderr()
    );
    tokio::task::block_in_place(|| published.recv_timeout(Duration::from_secs(15)))
        .expect("hlsd reconnected to the relay");

    stop_tx.send(true).unwrap();
    let (longest, parts) = follower.await.unwrap();
    assert!(parts >= 20, "HLS published only {parts} parts meanwhile");
    assert!(
        longest < Duration::from_secs(1),
        "a blocking reload waited {longest:?} for a 0.2 s part: the origin stalled"
    );
    let m = metrics(&client(), &h).await;
    let (ls, lg) = (
        format!("destination=\"{stalled_masked}\""),
        format!("destination=\"{}\"", ngx.masked("live")),
    );
    assert!(
        metric(
            &m,
            "hlsd_rtmp_frames_dropped_total",
            &format!("{ls},reason=\"queue_full\"")
        )
        .unwrap_or(0.0)
            >= 1.0,
        "{m}"
    );
    assert!(
        metric(&m, "hlsd_rtmp_reconnects_total", &ls).unwrap_or(0.0) >= 1.0,
        "{m}"
    );
    assert_eq!(
        metric(&m, "hlsd_rtmp_reconnects_total", &lg),
        Some(0.0),
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            "hlsd_rtmp_frames_dropped_total",
            &format!("{lg},reason=\"queue_full\"")
        ),
        None,
        "{m}"
    );
    assert_no_key(&h, &["SECRETKEY"]);
}
