//! Shared harness of the integration tests: start `hlsd` on a free port and stop it again (also
//! when a test fails), HTTP helpers, ffmpeg/ffprobe helpers, Annex-B splitting, and (in
//! [`rules`]) the LL-HLS rule checker for media playlists (shared/docs/ll-hls.md).
//!
//! Synchronisation is always on events: the "player at" line on stdout, lines on stderr, process
//! exit, or HTTP blocking reloads (`_HLS_msn`) — never on sleeps.

#![allow(dead_code)]

pub mod rules;

use bytes::Bytes;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How long hlsd may take to print its "player at" line.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// Upper bound of any single HTTP request (blocking reloads take at most 3 T).
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(20);

/// Directory of the camera captures (`HLSD_FIXTURES` overrides `../shared/fixtures`).
pub fn fixtures_dir() -> PathBuf {
    match std::env::var_os("HLSD_FIXTURES") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/fixtures")),
    }
}

/// Path of a fixture file; panics with a hint if it is missing.
pub fn fixture(name: &str) -> PathBuf {
    let p = fixtures_dir().join(name);
    assert!(
        p.is_file(),
        "fixture {} missing (set HLSD_FIXTURES to the fixtures directory)",
        p.display()
    );
    p
}

pub const FIXTURE_720P: &str = "pi-720p30-inline.h264";
pub const FIXTURE_1080P: &str = "pi-1080p25-raspivid.h264";
pub const FIXTURE_720P_FRAMES: u64 = 293;
pub const FIXTURE_1080P_FRAMES: u64 = 116;

/// Collected stderr of a child with a condition variable, so tests can wait for a log line.
#[derive(Default)]
struct Log {
    text: Mutex<(String, bool)>,
    cond: Condvar,
}

/// A running `hlsd` process. Dropping it kills the whole process group (hlsd and any encoder it
/// started), so a failing test never leaves stray processes.
pub struct Hlsd {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    pub port: u16,
    log: Arc<Log>,
    status: Option<ExitStatus>,
}

impl Hlsd {
    /// Starts `hlsd --listen 127.0.0.1:0 ARGS...` and waits for its "player at" line.
    pub fn start(args: &[&str]) -> Hlsd {
        match Hlsd::try_start(args, false) {
            Ok((h, _)) => h,
            Err(e) => panic!("hlsd did not start: {e}"),
        }
    }

    /// Like [`Hlsd::start`] with stdin piped (for `--source stdin`).
    pub fn start_with_stdin(args: &[&str]) -> (Hlsd, ChildStdin) {
        match Hlsd::try_start(args, true) {
            Ok((h, stdin)) => (h, stdin.expect("stdin piped")),
            Err(e) => panic!("hlsd did not start: {e}"),
        }
    }

    /// Starts hlsd; `Err` (with its stderr) if it exits or stays silent instead of listening.
    pub fn try_start(args: &[&str], stdin: bool) -> Result<(Hlsd, Option<ChildStdin>), String> {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_hlsd"));
        cmd.arg("--listen").arg("127.0.0.1:0").args(args);
        cmd.env(
            "HLSD_LOG",
            std::env::var("HLSD_LOG").unwrap_or_else(|_| "info".into()),
        );
        cmd.env_remove("HLSD_SOURCE")
            .env_remove("HLSD_CONFIG")
            .env_remove("HLSD_LISTEN");
        cmd.stdin(if stdin { Stdio::piped() } else { Stdio::null() });
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        // Own process group: Drop kills hlsd together with the encoders it spawned.
        cmd.process_group(0);
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", env!("CARGO_BIN_EXE_hlsd")))?;
        let stdin = child.stdin.take();
        let log = Arc::new(Log::default());
        {
            let log = log.clone();
            let mut err = child.stderr.take().unwrap();
            std::thread::spawn(move || {
                let mut buf = [0u8; 8192];
                loop {
                    match err.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            let mut g = log.text.lock().unwrap();
                            g.0.push_str(&String::from_utf8_lossy(&buf[..n]));
                            log.cond.notify_all();
                        }
                    }
                }
                log.text.lock().unwrap().1 = true;
                log.cond.notify_all();
            });
        }
        let (tx, rx) = mpsc::channel::<String>();
        {
            let out = child.stdout.take().unwrap();
            std::thread::spawn(move || {
                // Keep draining stdout for the whole life of the process.
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
        }
        let mut h = Hlsd {
            child,
            base: String::new(),
            port: 0,
            log,
            status: None,
        };
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    let found = ["http", "https"].into_iter().find_map(|scheme| {
                        let rest = line.strip_prefix(&format!("hlsd: player at {scheme}://127.0.0.1:"))?;
                        Some((scheme, rest.trim_end_matches('/').to_string()))
                    });
                    if let Some((scheme, rest)) = found {
                        // "PORT" or "PORT/BASE-PATH" (with `base-path`).
                        let (port, path) = rest.split_once('/').map_or((rest.as_str(), ""), |(p, b)| (p, b));
                        let port: u16 = port.parse().map_err(|_| format!("bad line {line:?}"))?;
                        h.port = port;
                        h.base = if path.is_empty() {
                            format!("{scheme}://127.0.0.1:{port}")
                        } else {
                            format!("{scheme}://127.0.0.1:{port}/{path}")
                        };
                        return Ok((h, stdin));
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let st = h.wait_exit(Duration::from_secs(10));
                    return Err(format!(
                        "hlsd exited ({st:?}) before listening; stderr:\n{}",
                        h.stderr()
                    ));
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    return Err(format!(
                        "no 'player at' line within {STARTUP_TIMEOUT:?}; stderr:\n{}",
                        h.stderr()
                    ));
                }
            }
        }
    }

    /// Runs hlsd to completion (for arguments that make it exit) and returns (status, stderr).
    pub fn run_to_exit(args: &[&str], timeout: Duration) -> (ExitStatus, String) {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_hlsd"));
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd.env("HLSD_LOG", "info").process_group(0);
        let child = cmd.spawn().expect("run hlsd");
        let mut h = Hlsd::adopt(child);
        let st = h.wait_exit(timeout).unwrap_or_else(|| {
            panic!(
                "hlsd {args:?} still running after {timeout:?}:\n{}",
                h.stderr()
            )
        });
        (st, h.stderr())
    }

    fn adopt(mut child: Child) -> Hlsd {
        let log = Arc::new(Log::default());
        let l2 = log.clone();
        let mut err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            let mut s = Vec::new();
            let _ = err.read_to_end(&mut s);
            let mut g = l2.text.lock().unwrap();
            g.0.push_str(&String::from_utf8_lossy(&s));
            g.1 = true;
            l2.cond.notify_all();
        });
        if let Some(mut out) = child.stdout.take() {
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut out, &mut std::io::sink());
            });
        }
        Hlsd {
            child,
            base: String::new(),
            port: 0,
            log,
            status: None,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// stderr so far.
    pub fn stderr(&self) -> String {
        self.log.text.lock().unwrap().0.clone()
    }

    /// Waits until stderr contains `needle` (true) or `timeout` passes / stderr closes (false).
    pub fn wait_stderr(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut g = self.log.text.lock().unwrap();
        loop {
            if g.0.contains(needle) {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if g.1 || left.is_zero() {
                return false;
            }
            g = self.log.cond.wait_timeout(g, left).unwrap().0;
        }
    }

    /// Sends SIGTERM to hlsd (graceful shutdown).
    pub fn terminate(&self) {
        let st = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(st.success(), "kill -TERM failed");
    }

    /// Waits for the process to exit: its stderr closing is the event, then it is reaped.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if let Some(st) = self.status {
            return Some(st);
        }
        let deadline = Instant::now() + timeout;
        {
            let mut g = self.log.text.lock().unwrap();
            while !g.1 {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return None;
                }
                g = self.log.cond.wait_timeout(g, left).unwrap().0;
            }
        }
        // stderr closed: the process is exiting (or closed stderr, then wait is bounded below).
        loop {
            match self.child.try_wait() {
                Ok(Some(st)) => {
                    self.status = Some(st);
                    return Some(st);
                }
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                _ => return None,
            }
        }
    }

    /// Panics if hlsd reported a panic on stderr.
    pub fn assert_no_panic(&self) {
        let e = self.stderr();
        assert!(!e.contains("panicked"), "hlsd panicked:\n{e}");
    }
}

impl Drop for Hlsd {
    fn drop(&mut self) {
        // Kill the whole process group we created (hlsd and its encoders), then reap hlsd.
        let pgid = self.child.id();
        let _ = Command::new("kill")
            .arg("-KILL")
            .arg("--")
            .arg(format!("-{pgid}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
        let e = self.stderr();
        if std::thread::panicking() {
            // Show what the server logged around the failure.
            let lines: Vec<&str> = e.lines().collect();
            let tail = lines[lines.len().saturating_sub(40)..].join("\n");
            eprintln!("--- last hlsd stderr lines (pid {pgid}) ---\n{tail}\n---");
        } else {
            assert!(!e.contains("panicked"), "hlsd panicked:\n{e}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP

/// Installs rustls' ring provider for reqwest (its rustls feature, for tests/proxies.rs, has no
/// provider of its own; building any client without one panics). Idempotent.
pub fn tls_provider() {
    let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
}

/// HTTP/1.1 client with a per-request timeout (no automatic decompression: tests see the bytes).
pub fn client() -> reqwest::Client {
    tls_provider();
    reqwest::Client::builder()
        .http1_only()
        .timeout(HTTP_TIMEOUT)
        .build()
        .unwrap()
}

/// HTTP/2 cleartext client (prior knowledge).
pub fn h2_client() -> reqwest::Client {
    tls_provider();
    reqwest::Client::builder()
        .http2_prior_knowledge()
        .timeout(HTTP_TIMEOUT)
        .build()
        .unwrap()
}

/// A complete response.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Bytes,
    pub version: reqwest::Version,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap_or("<non-ascii>").to_string())
    }
    pub fn text(&self) -> String {
        String::from_utf8(self.body.to_vec()).expect("UTF-8 body")
    }
    /// Asserts status 200 and returns the body as text.
    pub fn ok_text(&self, what: &str) -> String {
        assert_eq!(
            self.status,
            200,
            "{what}: status {} body {:?}",
            self.status,
            String::from_utf8_lossy(&self.body)
        );
        self.text()
    }
}

pub async fn get(c: &reqwest::Client, url: &str) -> Resp {
    get_with(c, url, &[]).await
}

pub async fn get_with(c: &reqwest::Client, url: &str, headers: &[(&str, &str)]) -> Resp {
    let mut rb = c.get(url);
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    let r = rb.send().await.unwrap_or_else(|e| {
        let hint = if e.is_connect() || format!("{e:?}").contains("IncompleteMessage") {
            "\n(connection refused/closed: hlsd is no longer running. After a file or stdin source ends \
                 the server must keep serving the ended playlist; see its stderr below)"
        } else {
            ""
        };
        panic!("GET {url}: {e:?}{hint}")
    });
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let version = r.version();
    let body = r
        .bytes()
        .await
        .unwrap_or_else(|e| panic!("GET {url} body: {e}"));
    Resp {
        status,
        headers,
        body,
        version,
    }
}

/// Fetches the media playlist with a query ("" for none), asserting 200.
pub async fn media(c: &reqwest::Client, base: &str, query: &str) -> String {
    let url = if query.is_empty() {
        format!("{base}/media.m3u8")
    } else {
        format!("{base}/media.m3u8?{query}")
    };
    get(c, &url).await.ok_text(&url)
}

/// Blocks (with `_HLS_msn` reloads, at most two segments ahead each) until segment `msn` is
/// complete; returns that playlist. Event-driven: the server answers when the segment exists.
pub async fn wait_for_msn(c: &reqwest::Client, base: &str, msn: u64) -> rules::MediaPlaylist {
    let mut pl = rules::MediaPlaylist::parse(&media(c, base, "").await);
    loop {
        if pl.endlist || pl.last_complete_msn().is_some_and(|l| l >= msn) {
            return pl;
        }
        let ask = match pl.last_complete_msn() {
            Some(l) => msn.min(l + 2),
            None => msn.min(1),
        };
        pl = rules::MediaPlaylist::parse(&media(c, base, &format!("_HLS_msn={ask}")).await);
    }
}

/// Reloads the playlist (blocking on the next segment) until it carries EXT-X-ENDLIST.
pub async fn wait_for_endlist(c: &reqwest::Client, base: &str) -> rules::MediaPlaylist {
    let mut pl = rules::MediaPlaylist::parse(&media(c, base, "").await);
    let mut n = 0;
    while !pl.endlist {
        n += 1;
        assert!(n < 1000, "no ENDLIST after {n} reloads:\n{}", pl.text);
        let next = pl.last_complete_msn().map(|l| l + 1).unwrap_or(0);
        pl = rules::MediaPlaylist::parse(&media(c, base, &format!("_HLS_msn={next}")).await);
    }
    pl
}

/// Resolves a playlist URI against the server base (all hlsd URIs are relative names).
pub fn resolve(base: &str, uri: &str) -> String {
    assert!(
        !uri.contains("://") && !uri.starts_with('/'),
        "URI {uri} is not relative"
    );
    format!("{base}/{uri}")
}

/// Downloads init + the given URIs and concatenates them.
pub async fn download_concat(c: &reqwest::Client, base: &str, uris: &[String]) -> Vec<u8> {
    let mut out = Vec::new();
    for u in uris {
        let r = get(c, &resolve(base, u)).await;
        assert_eq!(
            r.status,
            200,
            "GET {u}: {} {:?}",
            r.status,
            String::from_utf8_lossy(&r.body)
        );
        out.extend_from_slice(&r.body);
    }
    out
}

// ---------------------------------------------------------------------------------------------
// ffmpeg / ffprobe

/// Runs ffmpeg with `-y -hide_banner -loglevel error ARGS`, asserting success.
pub fn ffmpeg(args: &[&str]) {
    let out = Command::new("ffmpeg")
        .args(["-y", "-hide_banner", "-loglevel", "error", "-nostdin"])
        .args(args)
        .output()
        .expect("ffmpeg is installed");
    assert!(
        out.status.success(),
        "ffmpeg {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Encodes `seconds` of testsrc2 at `size` (WxH) and 30 fps into an Annex-B file with libx264,
/// IDR every 30 frames, no B-frames unless `extra` says otherwise (later options win).
pub fn make_h264(path: &Path, size: &str, seconds: f64, extra: &[&str]) {
    let src = format!("testsrc2=size={size}:rate=30");
    let t = format!("{seconds}");
    let mut args = vec![
        "-f",
        "lavfi",
        "-i",
        &src,
        "-t",
        &t,
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-bf",
        "0",
        "-g",
        "30",
        "-keyint_min",
        "30",
        "-sc_threshold",
        "0",
        "-pix_fmt",
        "yuv420p",
    ];
    args.extend_from_slice(extra);
    let p = path.to_str().unwrap();
    args.extend_from_slice(&["-f", "h264", p]);
    ffmpeg(&args);
}

/// What ffprobe says about the first video stream of a file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Probe {
    pub codec: String,
    pub width: u32,
    pub height: u32,
    /// Decoded frames (`-count_frames`).
    pub frames: u64,
    /// Demuxed packets (`-count_packets`).
    pub packets: u64,
    /// Key-frame packets.
    pub keyframes: u64,
    /// Packet pts in seconds, in decode order.
    pub pts: Vec<f64>,
    /// ffprobe's stderr (decode errors).
    pub errors: String,
}

/// Probes a file: decodes every frame and lists the packets.
pub fn ffprobe(path: &Path) -> Probe {
    let p = path.to_str().unwrap();
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-count_frames",
            "-count_packets",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=nb_read_frames,nb_read_packets,width,height,codec_name:packet=pts_time,flags",
            "-of",
            "default=noprint_wrappers=1",
            p,
        ])
        .output()
        .expect("ffprobe is installed");
    assert!(
        out.status.success(),
        "ffprobe {p} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut pr = Probe {
        errors: String::from_utf8_lossy(&out.stderr).into_owned(),
        ..Default::default()
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        match k {
            "codec_name" => pr.codec = v.to_string(),
            "width" => pr.width = v.parse().unwrap_or(0),
            "height" => pr.height = v.parse().unwrap_or(0),
            "nb_read_frames" => pr.frames = v.parse().unwrap_or(0),
            "nb_read_packets" => pr.packets = v.parse().unwrap_or(0),
            "pts_time" => pr.pts.push(v.parse().unwrap_or(f64::NAN)),
            "flags" => pr.keyframes += v.starts_with('K') as u64,
            _ => {}
        }
    }
    pr
}

/// Writes bytes to a file in `dir` and probes it.
pub fn probe_bytes(dir: &Path, name: &str, data: &[u8]) -> Probe {
    let p = dir.join(name);
    std::fs::write(&p, data).unwrap();
    ffprobe(&p)
}

// ---------------------------------------------------------------------------------------------
// Annex-B

/// NAL units of an Annex-B buffer: (offset of the start code, offset of the NAL header).
pub fn nal_offsets(data: &[u8]) -> Vec<(usize, usize)> {
    let mut v = Vec::new();
    let mut i = 0;
    while i + 3 <= data.len() {
        if data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 {
            let sc = if i > 0 && data[i - 1] == 0 { i - 1 } else { i };
            v.push((sc, i + 3));
            i += 3;
        } else {
            i += 1;
        }
    }
    v
}

/// NAL units of an Annex-B buffer, each with its start code.
pub fn nal_units(data: &[u8]) -> Vec<&[u8]> {
    let offs = nal_offsets(data);
    offs.iter()
        .enumerate()
        .map(|(k, &(sc, _))| {
            let end = offs.get(k + 1).map(|o| o.0).unwrap_or(data.len());
            &data[sc..end]
        })
        .collect()
}

fn nal_header(nal_with_sc: &[u8]) -> (u8, Option<u8>) {
    let i = nal_with_sc.iter().position(|&b| b == 1).unwrap() + 1;
    (
        nal_with_sc.get(i).map(|b| b & 0x1f).unwrap_or(0),
        nal_with_sc.get(i + 1).copied(),
    )
}

/// Splits an Annex-B stream into access units (each with the parameter sets / SEI that precede
/// its picture), assuming one slice per picture or `first_mb_in_slice` starting a picture.
pub fn access_units(data: &[u8]) -> Vec<&[u8]> {
    let nals = nal_units(data);
    let mut aus = Vec::new();
    let mut start: Option<usize> = None; // byte offset where the current AU began
    let mut has_pic = false;
    let base = data.as_ptr() as usize;
    for n in nals {
        let off = n.as_ptr() as usize - base;
        let (t, b1) = nal_header(n);
        let first_mb0 = b1.map(|b| b & 0x80 != 0).unwrap_or(false);
        let begins_new = match t {
            1 | 5 => has_pic && first_mb0,
            6..=9 | 14..=18 => has_pic,
            _ => false,
        };
        if begins_new {
            aus.push(&data[start.unwrap()..off]);
            start = Some(off);
            has_pic = false;
        }
        if start.is_none() {
            start = Some(off);
        }
        if t == 1 || t == 5 {
            has_pic = true;
        }
    }
    if let Some(s) = start {
        if has_pic {
            aus.push(&data[s..]);
        }
    }
    aus
}

/// Writes an Annex-B stream into `w` one access unit at a time at `fps` (like a camera encoder
/// does), then closes it. Runs on its own thread; returns the number of access units written.
pub fn feed_paced(
    data: Vec<u8>,
    fps: f64,
    w: impl std::io::Write + Send + 'static,
) -> std::thread::JoinHandle<usize> {
    feed_scheduled(data, move |i| Duration::from_secs_f64(i as f64 / fps), w)
}

/// Like [`feed_paced`] with access unit `i` due at `due(i)` after the start (jitter, stalls and
/// bursts are schedules too). A whole access unit is written with one `write_all`.
pub fn feed_scheduled(
    data: Vec<u8>,
    due: impl Fn(usize) -> Duration + Send + 'static,
    mut w: impl std::io::Write + Send + 'static,
) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        let aus = access_units(&data);
        let start = Instant::now();
        let mut sent = 0;
        for (i, au) in aus.iter().enumerate() {
            if let Some(d) = (start + due(i)).checked_duration_since(Instant::now()) {
                std::thread::sleep(d); // pacing of the producer, not synchronisation
            }
            if w.write_all(au).and_then(|_| w.flush()).is_err() {
                break;
            }
            sent += 1;
        }
        sent
    })
}

/// Deterministic pseudo-random bytes (xorshift), so failures reproduce.
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// fMP4

/// Iterates the boxes of an ISO-BMFF buffer: (type, payload).
pub fn boxes(mut data: &[u8]) -> Vec<([u8; 4], &[u8])> {
    let mut out = Vec::new();
    while data.len() >= 8 {
        let size = u32::from_be_bytes(data[0..4].try_into().unwrap()) as u64;
        let ty: [u8; 4] = data[4..8].try_into().unwrap();
        let (hdr, size) = match size {
            0 => (8, data.len() as u64),
            1 if data.len() >= 16 => (16, u64::from_be_bytes(data[8..16].try_into().unwrap())),
            s => (8, s),
        };
        if size < hdr as u64 || size > data.len() as u64 {
            panic!(
                "bad box {:?} size {size} with {} bytes left",
                String::from_utf8_lossy(&ty),
                data.len()
            );
        }
        out.push((ty, &data[hdr..size as usize]));
        data = &data[size as usize..];
    }
    assert!(
        data.is_empty(),
        "{} trailing bytes after the last box",
        data.len()
    );
    out
}

/// Samples and their total duration (ticks) in the moof boxes of fragments (parts/segments),
/// from tfhd defaults and trun entries.
pub fn fmp4_samples(data: &[u8]) -> (u64, u64) {
    let f = fmp4_fragments(data);
    (f.sync.len() as u64, f.ticks)
}

/// What the moof boxes of a run of fragments say.
#[derive(Debug, Clone, Default)]
pub struct Fragments {
    /// Total sample duration in ticks.
    pub ticks: u64,
    /// Per sample: is it a sync sample (sample_is_non_sync_sample clear)?
    pub sync: Vec<bool>,
    /// mfhd sequence numbers.
    pub sequence: Vec<u32>,
    /// tfdt base media decode times.
    pub tfdt: Vec<u64>,
}

/// Parses moof/mfhd/traf/tfhd/tfdt/trun of fragments (parts or segments).
pub fn fmp4_fragments(data: &[u8]) -> Fragments {
    let be32 = |b: &[u8], o: usize| u32::from_be_bytes(b[o..o + 4].try_into().unwrap()) as u64;
    let mut out = Fragments::default();
    for (ty, moof) in boxes(data) {
        if &ty != b"moof" {
            continue;
        }
        for (ty, child) in boxes(moof) {
            if &ty == b"mfhd" {
                out.sequence.push(be32(child, 4) as u32);
            }
            if &ty != b"traf" {
                continue;
            }
            let (mut default_duration, mut default_flags) = (0, 0);
            for (ty, b) in boxes(child) {
                let version = b[0];
                let flags = be32(b, 0) & 0xff_ffff;
                match &ty {
                    b"tfhd" => {
                        let mut o = 8;
                        if flags & 0x01 != 0 {
                            o += 8;
                        }
                        if flags & 0x02 != 0 {
                            o += 4;
                        }
                        if flags & 0x08 != 0 {
                            default_duration = be32(b, o);
                            o += 4;
                        }
                        if flags & 0x10 != 0 {
                            o += 4;
                        }
                        if flags & 0x20 != 0 {
                            default_flags = be32(b, o);
                        }
                    }
                    b"tfdt" => {
                        let t = if version == 1 {
                            u64::from_be_bytes(b[4..12].try_into().unwrap())
                        } else {
                            be32(b, 4)
                        };
                        out.tfdt.push(t);
                    }
                    b"trun" => {
                        let n = be32(b, 4) as usize;
                        let mut o = 8;
                        if flags & 0x01 != 0 {
                            o += 4;
                        }
                        let first_flags = if flags & 0x04 != 0 {
                            o += 4;
                            Some(be32(b, o - 4))
                        } else {
                            None
                        };
                        for i in 0..n {
                            let mut sf = if i == 0 {
                                first_flags.unwrap_or(default_flags)
                            } else {
                                default_flags
                            };
                            let mut dur = default_duration;
                            if flags & 0x100 != 0 {
                                dur = be32(b, o);
                                o += 4;
                            }
                            if flags & 0x200 != 0 {
                                o += 4;
                            }
                            if flags & 0x400 != 0 {
                                sf = be32(b, o);
                                o += 4;
                            }
                            if flags & 0x800 != 0 {
                                o += 4;
                            }
                            out.ticks += dur;
                            out.sync.push(sf & 0x0001_0000 == 0);
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Following a live stream like a player

/// What [`follow`] saw.
pub struct Followed {
    pub tracker: rules::Tracker,
    pub last: rules::MediaPlaylist,
    /// Hinted parts fetched right after each reload that later completed with 200.
    pub hints_ok: usize,
    /// Hinted parts answered 404 because the stream ended before publishing them.
    pub hints_never_published: usize,
}

/// Follows the stream with hls.js-style blocking part reloads (`_HLS_msn`/`_HLS_part` of the
/// next part), checking every playlist with `rules` and the reload [`rules::Tracker`], and asking
/// for each preload-hinted part right after reading the playlist. Stops at ENDLIST or when
/// `stop` says so; then checks every held hint request (200 with the part's bytes, or 404 only
/// for a part the ended stream never published).
pub async fn follow(
    c: &reqwest::Client,
    base: &str,
    r: &rules::Rules,
    mut stop: impl FnMut(&rules::MediaPlaylist) -> bool,
    max_reloads: usize,
) -> Followed {
    let mut tr = rules::Tracker::new();
    let mut pl = rules::assert_valid(&media(c, base, "").await, r);
    tr.observe(&pl);
    let mut hints = Vec::new();
    while !pl.endlist && !stop(&pl) {
        assert!(
            tr.reloads < max_reloads,
            "{max_reloads} reloads without the stop condition:\n{}",
            pl.text
        );
        let (m, n) = pl.next_part_position();
        let text = media(c, base, &format!("_HLS_msn={m}&_HLS_part={n}")).await;
        let new = rules::assert_valid(&text, r);
        assert!(
            new.endlist || new.has_part_or_later(m, n),
            "rule 8b: _HLS_msn={m}&_HLS_part={n} answered without it:\n{text}"
        );
        tr.observe(&new);
        pl = new;
        if let Some(h) = pl.part_hint() {
            let (c2, url) = (c.clone(), resolve(base, &h));
            hints.push((h, tokio::spawn(async move { get(&c2, &url).await })));
        }
    }
    let (mut ok, mut never) = (0, 0);
    for (uri, h) in hints {
        let held = h.await.unwrap();
        if held.status == 404 {
            let now = rules::MediaPlaylist::parse(&media(c, base, "").await);
            assert!(
                now.endlist && !now.parts().iter().any(|p| p.2.uri == uri),
                "hinted part {uri} answered 404 but the stream did not end without it"
            );
            never += 1;
            continue;
        }
        assert_eq!(
            held.status,
            200,
            "held hinted part {uri}: {:?}",
            String::from_utf8_lossy(&held.body)
        );
        assert_eq!(
            held.header("content-type").as_deref(),
            Some("video/iso.segment")
        );
        let later = get(c, &resolve(base, &uri)).await;
        assert!(
            later.status == 200 && later.body == held.body,
            "hinted part {uri}: held response differs from a later GET"
        );
        ok += 1;
    }
    Followed {
        tracker: tr,
        last: pl,
        hints_ok: ok,
        hints_never_published: never,
    }
}

/// Downloads init + every complete segment of a playlist and probes the result, one file per
/// init segment (a format change starts a new group). Also checks that the fragments' trun
/// durations match EXTINF / part DURATION and that each segment whose parts are listed equals
/// the concatenation of those parts. Returns (probe, trun samples, segments) per group.
pub async fn probe_playlist(
    c: &reqwest::Client,
    base: &str,
    pl: &rules::MediaPlaylist,
    dir: &Path,
) -> Vec<(Probe, u64, usize)> {
    let mut groups: Vec<(String, Vec<u8>, u64, usize)> = Vec::new();
    for s in pl.complete() {
        let map = s.map.clone().expect("segment without EXT-X-MAP");
        if groups.last().map(|g| &g.0) != Some(&map) {
            assert!(
                groups.is_empty() || s.discontinuity,
                "init changes at {} without a discontinuity",
                s.msn
            );
            let init = get(c, &resolve(base, &map)).await;
            assert_eq!(init.status, 200, "{map}");
            assert_eq!(init.header("content-type").as_deref(), Some("video/mp4"));
            groups.push((map, init.body.to_vec(), 0, 0));
        }
        let seg = get(c, &resolve(base, s.uri.as_ref().unwrap())).await;
        assert_eq!(seg.status, 200, "{:?}", s.uri);
        let frags = fmp4_fragments(&seg.body);
        let (n, ticks) = (frags.sync.len() as u64, frags.ticks);
        assert_eq!(
            frags.sync.first(),
            Some(&true),
            "rule 11: segment {} does not start with a sync sample",
            s.msn
        );
        assert!(
            frags.sequence.windows(2).all(|w| w[1] > w[0]),
            "mfhd sequence not increasing: {:?}",
            frags.sequence
        );
        let extinf = s.extinf.unwrap();
        assert!(
            (ticks as f64 / 90000.0 - extinf).abs() < 1e-4,
            "segment {}: trun durations {ticks} ticks vs EXTINF {extinf}",
            s.msn
        );
        if !s.parts.is_empty() {
            let mut cat = Vec::new();
            for p in &s.parts {
                let b = get(c, &resolve(base, &p.uri)).await;
                assert_eq!(b.status, 200, "{}", p.uri);
                let f = fmp4_fragments(&b.body);
                let t = f.ticks;
                assert!(
                    (t as f64 / 90000.0 - p.duration).abs() < 1e-4,
                    "part {}: trun {t} ticks vs DURATION {}",
                    p.uri,
                    p.duration
                );
                // Rule 11 / fMP4: INDEPENDENT=YES exactly when the part starts with a sync
                // sample, and every part holding a sync sample is marked.
                assert_eq!(
                    p.independent,
                    f.sync.first() == Some(&true),
                    "part {}: INDEPENDENT vs sync flags {:?}",
                    p.uri,
                    f.sync
                );
                assert!(
                    p.independent || !f.sync.contains(&true),
                    "part {} holds a sync sample but lacks INDEPENDENT=YES",
                    p.uri
                );
                cat.extend_from_slice(&b.body);
            }
            assert!(
                cat == seg.body[..],
                "segment {} differs from the concatenation of its parts",
                s.msn
            );
        }
        let g = groups.last_mut().unwrap();
        g.1.extend_from_slice(&seg.body);
        g.2 += n;
        g.3 += 1;
    }
    groups
        .into_iter()
        .enumerate()
        .map(|(i, (_, data, n, segs))| (probe_bytes(dir, &format!("group{i}.mp4"), &data), n, segs))
        .collect()
}

/// A throwaway self-signed certificate (EC P-256, CN = `name`, valid 1 day) and its key:
/// `DIR/NAME.crt`, `DIR/NAME.key`.
pub fn self_signed_cert(dir: &std::path::Path, name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let (cert, key) = (dir.join(format!("{name}.crt")), dir.join(format!("{name}.key")));
    let st = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1"])
        .args(["-subj", &format!("/CN={name}"), "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl (infra/setup.sh --test installs it)");
    assert!(st.success(), "openssl could not make a certificate");
    (cert, key)
}
