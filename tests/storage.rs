//! Disk and S3 outputs, end to end: the real hlsd binary publishing testsrc to a real
//! S3-compatible server process (moto's standalone server, installed by `infra/setup.sh --test`)
//! and to a directory. What is judged comes from outside our code: objects fetched over plain
//! HTTP (headers as a CDN would see them), listings from the server's ListObjectsV2, media
//! decoded by ffprobe, boxes walked by the test harness.
//!
//! Synchronisation: hlsd's "player at" line, its exit, and bounded polling of the store with
//! deadlines (a store has no event to wait for). The outage length in the fault test is the
//! scenario itself, not a synchronisation sleep.

mod common;

use common::{boxes, probe_bytes, Hlsd};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a store may take to show what a test waits for.
const STORE_DEADLINE: Duration = Duration::from_secs(40);

// ---------------------------------------------------------------------------------------------
// The S3 server

/// moto's S3 server on a loopback port, killed (with its process group) on drop.
struct Moto {
    child: Option<Child>,
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Moto {
    fn start() -> Moto {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        let mut m = Moto {
            child: None,
            port,
            log: dir.path().join("moto.log"),
            _dir: dir,
        };
        m.spawn();
        m
    }

    fn spawn(&mut self) {
        let log = std::fs::File::create(&self.log).unwrap();
        let child = Command::new("python3")
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect("python3 runs");
        self.child = Some(child);
        // Ready when it answers (no event to wait for: bounded polling).
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "moto server exited ({st}); install it with infra/setup.sh --test\n{}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "moto did not listen on {} within 30 s",
                self.port
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Creates a bucket that anyone may read (as one behind a CDN).
    async fn bucket(&self, name: &str) {
        let c = common::client();
        let r = c
            .put(format!("{}/{name}", self.endpoint()))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "create bucket: {}", r.status());
        let policy = format!(
            r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::{name}/*"}}]}}"#
        );
        let r = c
            .put(format!("{}/{name}?policy", self.endpoint()))
            .header("content-type", "application/json")
            .body(policy)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "bucket policy: {}", r.status());
    }

    /// Keys under `prefix` (ListObjectsV2, all pages).
    async fn list(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let c = common::client();
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut url = format!("{}/{bucket}?list-type=2&prefix={prefix}", self.endpoint());
            if let Some(t) = &token {
                url.push_str(&format!("&continuation-token={t}"));
            }
            let body = c.get(&url).send().await.unwrap().text().await.unwrap();
            keys.extend(xml_values(&body, "Key"));
            token = xml_values(&body, "NextContinuationToken")
                .into_iter()
                .next();
            if token.is_none() {
                break;
            }
        }
        keys.sort();
        keys
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", c.id())])
                .status();
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.kill();
    }
}

fn xml_values(xml: &str, tag: &str) -> Vec<String> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    xml.split(&open)
        .skip(1)
        .filter_map(|s| s.split(&close).next())
        .map(str::to_string)
        .collect()
}

/// The same AWS credentials for every test (moto accepts any).
fn aws_env() {
    // SAFETY-free in edition 2021; every test sets the same values.
    std::env::set_var("AWS_ACCESS_KEY_ID", "hlsd-test");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "hlsd-test-secret");
    std::env::set_var("AWS_REGION", "us-east-1");
}

// ---------------------------------------------------------------------------------------------
// Reading a published stream back, wherever it is

/// Fetches objects of a published stream: from S3 over HTTP or from a directory.
enum Origin<'a> {
    S3 {
        endpoint: String,
        bucket: &'a str,
        prefix: &'a str,
    },
    Dir(PathBuf),
}

struct Object {
    body: Vec<u8>,
    content_type: Option<String>,
    cache_control: Option<String>,
}

impl Origin<'_> {
    async fn get(&self, name: &str) -> Option<Object> {
        match self {
            Origin::S3 {
                endpoint,
                bucket,
                prefix,
            } => {
                let r = common::get(
                    &common::client(),
                    &format!("{endpoint}/{bucket}/{prefix}{name}"),
                )
                .await;
                (r.status == 200).then(|| Object {
                    content_type: r.header("content-type"),
                    cache_control: r.header("cache-control"),
                    body: r.body.to_vec(),
                })
            }
            Origin::Dir(dir) => std::fs::read(dir.join(name)).ok().map(|body| Object {
                body,
                content_type: None,
                cache_control: None,
            }),
        }
    }

    async fn text(&self, name: &str) -> Option<String> {
        self.get(name)
            .await
            .map(|o| String::from_utf8(o.body).expect("UTF-8 playlist"))
    }
}

/// A published media playlist, parsed by hand (tags the checks need).
#[derive(Debug, Clone)]
struct Published {
    text: String,
    media_sequence: u64,
    segments: Vec<String>,
    maps: Vec<String>,
    parts: Vec<String>,
    endlist: bool,
}

impl Published {
    fn parse(text: &str) -> Published {
        assert!(
            text.starts_with("#EXTM3U\n") && text.ends_with('\n'),
            "not a whole playlist:\n{text}"
        );
        let uri = |l: &str| {
            l.split("URI=\"")
                .nth(1)
                .and_then(|r| r.split('"').next())
                .unwrap()
                .to_string()
        };
        let mut p = Published {
            text: text.into(),
            media_sequence: 0,
            segments: vec![],
            maps: vec![],
            parts: vec![],
            endlist: false,
        };
        for l in text.lines() {
            if let Some(v) = l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:") {
                p.media_sequence = v.parse().unwrap();
            } else if l.starts_with("#EXT-X-MAP:") {
                p.maps.push(uri(l));
            } else if l.starts_with("#EXT-X-PART:") {
                p.parts.push(uri(l));
            } else if l == "#EXT-X-ENDLIST" {
                p.endlist = true;
            } else if !l.starts_with('#') && !l.is_empty() {
                p.segments.push(l.to_string());
            }
        }
        // m3u8-rs, an independent parser, agrees.
        let parsed = m3u8_rs::parse_media_playlist_res(text.as_bytes())
            .unwrap_or_else(|e| panic!("m3u8-rs: {e:?}\n{text}"));
        assert_eq!(parsed.media_sequence, p.media_sequence);
        assert_eq!(parsed.segments.len(), p.segments.len());
        assert!(text.contains("#EXT-X-PROGRAM-DATE-TIME:"), "{text}");
        assert!(
            !text.contains("CAN-BLOCK-RELOAD") && !text.contains("PRELOAD-HINT"),
            "static storage cannot block:\n{text}"
        );
        p
    }

    fn msn(uri: &str) -> u64 {
        uri.rsplit("-s")
            .next()
            .unwrap()
            .trim_end_matches(".m4s")
            .parse()
            .unwrap()
    }
}

/// Checks a finished stream: playlists, every named object with its headers, decodable media.
/// Returns the final media playlist.
async fn check_published(origin: &Origin<'_>, scratch: &Path, what: &str) -> Published {
    let s3 = matches!(origin, Origin::S3 { .. });
    let mv = origin
        .get("stream.m3u8")
        .await
        .unwrap_or_else(|| panic!("{what}: no stream.m3u8"));
    let mv_text = String::from_utf8(mv.body.clone()).unwrap();
    assert!(
        mv_text.contains("#EXT-X-STREAM-INF:") && mv_text.ends_with("\nmedia.m3u8\n"),
        "{what}:\n{mv_text}"
    );
    assert!(mv_text.contains("RESOLUTION=320x240"), "{what}:\n{mv_text}");
    let media = origin
        .get("media.m3u8")
        .await
        .unwrap_or_else(|| panic!("{what}: no media.m3u8"));
    let pl = Published::parse(&String::from_utf8(media.body.clone()).unwrap());
    assert!(
        pl.endlist,
        "{what}: clean shutdown ends the playlist:\n{}",
        pl.text
    );
    if s3 {
        for o in [&mv, &media] {
            assert_eq!(
                o.content_type.as_deref(),
                Some("application/vnd.apple.mpegurl"),
                "{what}"
            );
        }
        assert_eq!(
            media.cache_control.as_deref(),
            Some("public, max-age=60"),
            "{what}: ended playlist"
        );
        let cc = mv.cache_control.as_deref().unwrap_or_default();
        assert!(
            cc == "no-cache" || cc.starts_with("public, max-age="),
            "{what}: {cc}"
        );
    }
    assert!(!pl.segments.is_empty(), "{what}: no segments:\n{}", pl.text);
    let mut bytes = Vec::new();
    let mut last_map = None;
    for uri in pl
        .maps
        .iter()
        .chain(pl.parts.iter())
        .chain(pl.segments.iter())
    {
        let o = origin
            .get(uri)
            .await
            .unwrap_or_else(|| panic!("{what}: {uri} is named but missing:\n{}", pl.text));
        boxes(&o.body); // whole boxes only
        if s3 {
            let want = if uri.ends_with(".mp4") {
                "video/mp4"
            } else {
                "video/iso.segment"
            };
            assert_eq!(o.content_type.as_deref(), Some(want), "{what}: {uri}");
            assert_eq!(
                o.cache_control.as_deref(),
                Some("public, max-age=31536000, immutable"),
                "{what}: {uri}"
            );
        }
        if uri.ends_with(".mp4") {
            last_map = Some(o.body);
        } else if pl.segments.contains(uri) {
            if bytes.is_empty() {
                bytes.extend_from_slice(last_map.as_ref().unwrap());
            }
            bytes.extend_from_slice(&o.body);
        }
    }
    let probe = probe_bytes(
        scratch,
        &format!("{}.mp4", what.replace(['/', ':', ' '], "_")),
        &bytes,
    );
    assert_eq!(
        (probe.codec.as_str(), probe.width, probe.height),
        ("h264", 320, 240),
        "{what}: {probe:?}"
    );
    // (the last segment is cut short by the shutdown)
    let full = pl.segments.len() as u64 - 1;
    assert!(
        probe.frames >= 29 * full,
        "{what}: {} frames for {} segments",
        probe.frames,
        pl.segments.len()
    );
    assert!(
        probe.errors.trim().is_empty(),
        "{what}: ffprobe: {}",
        probe.errors
    );
    pl
}

/// Polls `f` until it returns Some or the deadline passes.
async fn until<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    mut f: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + STORE_DEADLINE;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn stop(mut h: Hlsd) -> String {
    h.terminate();
    let st = h
        .wait_exit(Duration::from_secs(30))
        .expect("hlsd exits after SIGTERM");
    assert!(st.success(), "hlsd exit {st:?}:\n{}", h.stderr());
    h.stderr()
}

fn write_config(dir: &Path, text: &str) -> String {
    let p = dir.join("hlsd.toml");
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_string()
}

// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn s3_store_passes_the_store_suite() {
    aws_env();
    let moto = Moto::start();
    moto.bucket("suite").await;
    let store = hlsd::sink::storage::store::S3Store::new(&hlsd::sink::storage::store::S3Settings {
        bucket: "suite".into(),
        endpoint: Some(moto.endpoint()),
        path_style: true,
        ..Default::default()
    })
    .unwrap();
    hlsd::sink::storage::store::conformance::run(&store, "conformance/").await;
}

/// Three outputs in one run: S3 sliding window (command line), S3 recording with parts and a
/// directory (config file).
#[tokio::test]
async fn testsrc_published_to_s3_and_disk_matches_retention() {
    aws_env();
    let moto = Moto::start();
    moto.bucket("live").await;
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("www");
    let cfg = write_config(
        tmp.path(),
        &format!(
            "window = 6\nwidth = 320\nheight = 240\ns3-endpoint = \"{}\"\n\
             [[output]]\nurl = \"s3://live/cams/birdbox\"\n\
             [[output]]\nbucket = \"live\"\nprefix = \"rec\"\nretention = \"all\"\nparts = true\n\
             access-key-id = \"from-file\"\nsecret-access-key = \"not-to-be-logged\"\n\
             [[output]]\ndir = \"{}\"\nprefix = \"cams/birdbox\"\n",
            moto.endpoint(),
            out.display()
        ),
    );
    let h = Hlsd::start(&["--config", &cfg]);
    let live = Origin::S3 {
        endpoint: moto.endpoint(),
        bucket: "live",
        prefix: "cams/birdbox/",
    };
    // Run until the window slid by a few segments.
    until("a slid window in S3", || async {
        let t = live.text("media.m3u8").await?;
        (Published::parse(&t).media_sequence >= 10).then_some(())
    })
    .await;
    let log = stop(h);
    assert!(
        !log.contains("not-to-be-logged"),
        "a secret reached the log"
    );
    assert!(
        log.contains("output finished output=s3://live/cams/birdbox/")
            || log.contains("output finished"),
        "{log}"
    );

    // Sliding window: the listed segments, plus at most the removed ones still in their grace
    // period (playlist duration + 1 T), never older ones.
    let pl = check_published(&live, tmp.path(), "s3 window").await;
    assert_eq!(pl.segments.len(), 6, "{}", pl.text);
    let first = Published::msn(&pl.segments[0]);
    let keys = moto.list("live", "cams/birdbox/").await;
    let segs: Vec<u64> = keys
        .iter()
        .filter(|k| k.ends_with(".m4s"))
        .map(|k| Published::msn(k))
        .collect();
    for s in &pl.segments {
        assert!(keys.contains(&format!("cams/birdbox/{s}")));
    }
    // Grace: 6 listed seconds + 1 T, so at most 7 removed segments remain.
    assert!(
        segs.iter().all(|m| *m + 8 >= first),
        "old segments kept: {segs:?}, first listed {first}"
    );
    assert!(!segs.contains(&0), "segment 0 was not deleted: {keys:?}");
    assert_eq!(
        keys.iter().filter(|k| k.ends_with(".mp4")).count(),
        1,
        "{keys:?}"
    );

    // Recording: every segment from the first, an EVENT playlist that ended.
    let rec = Origin::S3 {
        endpoint: moto.endpoint(),
        bucket: "live",
        prefix: "rec/",
    };
    let pl = check_published(&rec, tmp.path(), "s3 recording").await;
    assert!(
        pl.text.contains("#EXT-X-PLAYLIST-TYPE:EVENT\n") && pl.media_sequence == 0,
        "{}",
        pl.text
    );
    assert!(pl.segments.len() >= 9, "{}", pl.text);
    assert!(
        pl.text.contains("#EXT-X-PART-INF:PART-TARGET="),
        "{}",
        pl.text
    );
    let keys = moto.list("live", "rec/").await;
    let segs: Vec<String> = keys
        .iter()
        .filter(|k| k.contains("-s"))
        .map(|k| k.trim_start_matches("rec/").to_string())
        .collect();
    assert_eq!(
        segs.len(),
        pl.segments.len(),
        "recording keeps exactly the listed segments: {keys:?}"
    );
    assert!(
        keys.iter().filter(|k| k.contains("-p")).count() >= 5 * pl.segments.len() - 5,
        "parts kept: {keys:?}"
    );

    // Directory: the same stream; nothing but final names.
    let dir = Origin::Dir(out.join("cams/birdbox"));
    let pl = check_published(&dir, tmp.path(), "dir").await;
    assert_eq!(pl.segments.len(), 6);
    for e in std::fs::read_dir(out.join("cams/birdbox")).unwrap() {
        let n = e.unwrap().file_name().into_string().unwrap();
        assert!(
            !n.starts_with('.'),
            "temporary file {n} left after a clean exit"
        );
    }
}

/// The store goes away for a while (process killed, restarted empty): hlsd keeps serving,
/// counts and logs the failures, drops what it cannot hold, and publishes a consistent
/// playlist again.
#[tokio::test]
async fn s3_outage_and_restart_keep_the_origin_serving_and_the_store_consistent() {
    aws_env();
    let mut moto = Moto::start();
    moto.bucket("live").await;
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write_config(
        tmp.path(),
        &format!("window = 6\nwidth = 320\nheight = 240\n[[output]]\nurl = \"s3://live/cam\"\nendpoint = \"{}\"\nqueue = 3\n", moto.endpoint()),
    );
    let h = Hlsd::start(&["--config", &cfg]);
    let origin = Origin::S3 {
        endpoint: moto.endpoint(),
        bucket: "live",
        prefix: "cam/",
    };
    let mut sequences = Vec::new();
    let before = until("3 published segments", || async {
        let p = Published::parse(&origin.text("media.m3u8").await?);
        (p.segments.len() >= 3).then_some(p)
    })
    .await;
    sequences.push(before.media_sequence);

    moto.kill();
    let down = Instant::now();
    // While the store is down the local origin serves live, blocking reloads included.
    let c = common::client();
    let pl = common::wait_for_msn(&c, &h.base, 2).await;
    let last = pl.last_complete_msn().unwrap();
    let next = common::wait_for_msn(&c, &h.base, last + 3).await;
    assert!(next.last_complete_msn().unwrap() >= last + 3);
    assert!(
        h.wait_stderr("store request failed", Duration::from_secs(20)),
        "no failure logged:\n{}",
        h.stderr()
    );
    let log = strip_ansi(&h.stderr());
    let line = log
        .lines()
        .find(|l| l.contains("store request failed"))
        .unwrap();
    assert!(
        line.contains("key=cam/"),
        "the log names the object: {line}"
    );
    // The outage lasts 8 s (the scenario), longer than the queue of 3 segments.
    tokio::time::sleep(Duration::from_secs(8).saturating_sub(down.elapsed())).await;
    let metrics = common::get(&c, &h.url("/metrics")).await.text();
    let failed: f64 = metric(
        &metrics,
        "hlsd_storage_requests_total{",
        "result=\"failed\"",
    );
    let dropped: f64 = metric(&metrics, "hlsd_storage_dropped_segments_total{", "");
    assert!(
        failed >= 1.0 && dropped >= 1.0,
        "failed {failed}, dropped {dropped}:\n{metrics}"
    );

    // Back, empty (moto keeps nothing): the bucket is recreated as an operator would.
    moto.spawn();
    moto.bucket("live").await;
    let after = until("a playlist published after the restart", || async {
        let p = Published::parse(&origin.text("media.m3u8").await?);
        (p.segments.len() >= 2).then_some(p)
    })
    .await;
    sequences.push(after.media_sequence);
    assert!(
        after.media_sequence > before.media_sequence,
        "before {}, after {}",
        before.media_sequence,
        after.media_sequence
    );
    assert!(Published::msn(&after.segments[0]) > Published::msn(before.segments.last().unwrap()));
    let log = stop(h);
    assert!(log.contains("store reachable again"), "{log}");
    assert!(log.contains("dropping the oldest waiting segment"), "{log}");
    let fin = check_published(&origin, tmp.path(), "s3 after outage").await;
    sequences.push(fin.media_sequence);
    assert!(
        sequences.windows(2).all(|w| w[0] <= w[1]),
        "media sequence went back: {sequences:?}"
    );
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c == '\x1b' {
            for c in it.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn metric(text: &str, prefix: &str, contains: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix) && l.contains(contains))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// SIGKILL while writing: every file under a final name is whole.
#[tokio::test]
async fn disk_output_killed_mid_run_leaves_no_partial_file() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("www");
    let spec = format!("dir:{}", out.display());
    let mut h = Hlsd::start(&[
        "--width",
        "320",
        "--height",
        "240",
        "--bitrate",
        "4000000",
        "--window",
        "6",
        "--output",
        &spec,
    ]);
    let origin = Origin::Dir(out.clone());
    until("4 segments on disk", || async {
        let p = Published::parse(&origin.text("media.m3u8").await?);
        (p.segments.len() >= 4).then_some(())
    })
    .await;
    let st = Command::new("kill")
        .args(["-KILL", &h.pid().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    h.wait_exit(Duration::from_secs(10)).expect("killed");
    let mut finals = 0;
    for e in std::fs::read_dir(&out).unwrap() {
        let name = e.unwrap().file_name().into_string().unwrap();
        if name.starts_with('.') {
            assert!(name.ends_with(".hlsd-tmp"), "unexpected file {name}");
            continue;
        }
        finals += 1;
        let data = std::fs::read(out.join(&name)).unwrap();
        if name.ends_with(".m3u8") {
            let text = String::from_utf8(data).unwrap();
            if name == "media.m3u8" {
                let p = Published::parse(&text);
                for u in p.maps.iter().chain(&p.segments) {
                    assert!(out.join(u).is_file(), "{u} named but missing");
                }
            } else {
                assert!(text.ends_with("media.m3u8\n"), "{name}: {text}");
            }
        } else {
            boxes(&data); // panics on a truncated box
        }
    }
    assert!(finals >= 6, "{finals} files");
    // A restart removes what a crash left behind before it publishes again.
    std::fs::write(out.join(".x-s1.m4s.1-0.hlsd-tmp"), b"partial").unwrap();
    let h = Hlsd::start(&[
        "--width", "320", "--height", "240", "--window", "6", "--output", &spec,
    ]);
    let left: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(
        !left.iter().any(|n| n == ".x-s1.m4s.1-0.hlsd-tmp"),
        "{left:?}"
    );
    drop(h);
}
