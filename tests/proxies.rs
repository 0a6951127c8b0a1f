//! hlsd behind the real proxies of `infra/`, started by the test from those files with ports and
//! paths substituted: nginx (`infra/nginx/hlsd-cache.conf`: TLS + HTTP/2, cache, collapsing, the
//! `/cam` prefix), Varnish (`infra/varnish/hlsd.vcl`) and Caddy (`infra/caddy/Caddyfile`, TLS
//! front without a cache: 100 viewers through it must see no error, and all their requests
//! reach hlsd).
//!
//! Through each: the multivariant playlist over the proxy's protocol with CORS from one layer,
//! a blocking playlist reload and a held preload-hinted part. Then simulated LL-HLS viewers
//! (blocking reload of the next part, then that part, like hls.js) through the caches: from
//! hlsd's own `/metrics`, every part reaches hlsd at most once per cache and blocking playlist
//! requests at most once per (msn, part) key; no viewer sees an error; part lateness at the
//! viewers (arrival − the part's end on the PROGRAM-DATE-TIME clock) is printed, and for
//! Varnish its p99 must stay under one part duration. nginx's cache-lock waiters re-check on a
//! 500 ms timer, so nginx's lateness is only reported (README "Behind a proxy or CDN").
//!
//! Needs nginx, varnish and caddy (`infra/setup.sh --test`); fails loudly without them.

mod common;

use common::{self_signed_cert, Hlsd};
use std::collections::{BTreeMap, HashSet};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const REPO: &str = env!("CARGO_MANIFEST_DIR");
/// Viewers and how long they watch (the README's numbers; `HLSD_PROXY_VIEWERS` to change).
const VIEWERS: usize = 200;
const WATCH: Duration = Duration::from_secs(10);
const PART_MS: f64 = 200.0;

/// A proxy process in its own process group; dropping it ends the group (no strays).
struct Proc {
    child: Child,
    name: &'static str,
    log: PathBuf,
}

impl Proc {
    fn start(name: &'static str, cmd: &mut Command, log: PathBuf) -> Proc {
        let out = std::fs::File::create(&log).unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({e}): run infra/setup.sh --test"));
        Proc { child, name, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until `port` accepts connections (bounded), failing with the process's log.
    fn wait_port(&mut self, port: u16) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return;
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!("{} exited ({st}):\n{}", self.name, self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("{} did not listen on {port}:\n{}", self.name, self.log());
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let pg = format!("-{}", self.child.id());
        let quiet = |sig: &str| {
            let _ = Command::new("kill")
                .args([sig, "--", &pg])
                .stderr(Stdio::null())
                .status();
        };
        quiet("-TERM");
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        quiet("-KILL");
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn render(template: &str, subs: &[(&str, &str)]) -> String {
    let mut t = std::fs::read_to_string(Path::new(REPO).join(template)).unwrap();
    for (k, v) in subs {
        t = t.replace(k, v);
    }
    assert!(
        !t.contains("@HLSD") && !t.contains("@PREFIX@"),
        "unfilled placeholder in {template}"
    );
    t
}

/// nginx from infra/nginx/hlsd-cache.conf (one process: `master_process off`).
fn start_nginx(dir: &Path, hlsd_port: u16) -> (Proc, u16) {
    let port = free_port();
    let (cert, key) = self_signed_cert(dir, "nginx");
    let site = render(
        "infra/nginx/hlsd-cache.conf",
        &[
            ("@LISTEN@", &format!("127.0.0.1:{port}")),
            ("@CERT@", cert.to_str().unwrap()),
            ("@KEY@", key.to_str().unwrap()),
            ("@HLSD@", &format!("127.0.0.1:{hlsd_port}")),
            ("@CACHE@", dir.join("cache").to_str().unwrap()),
            ("@PREFIX@", "/cam"),
        ],
    );
    std::fs::write(dir.join("hlsd.conf"), site).unwrap();
    let d = dir.display();
    let main = format!(
        "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\n\
         error_log {d}/error.log warn;\nevents {{ worker_connections 4096; }}\nhttp {{\n\
         access_log off;\nclient_body_temp_path {d}/t-body;\nproxy_temp_path {d}/t-proxy;\n\
         fastcgi_temp_path {d}/t-fcgi;\nuwsgi_temp_path {d}/t-uwsgi;\nscgi_temp_path {d}/t-scgi;\n\
         include {d}/hlsd.conf;\n}}\n"
    );
    std::fs::write(dir.join("nginx.conf"), main).unwrap();
    let mut p = Proc::start(
        "nginx",
        Command::new("nginx")
            .arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(dir.join("nginx.conf")),
        dir.join("nginx.out"),
    );
    p.wait_port(port);
    (p, port)
}

/// varnishd from infra/varnish/hlsd.vcl, in the foreground, with its own work directory.
fn start_varnish(dir: &Path, hlsd_port: u16) -> (Proc, u16) {
    let port = free_port();
    let vcl = render(
        "infra/varnish/hlsd.vcl",
        &[
            ("@HLSD_HOST@", "127.0.0.1"),
            ("@HLSD_PORT@", &hlsd_port.to_string()),
            ("@PREFIX@", "/cam"),
        ],
    );
    std::fs::write(dir.join("hlsd.vcl"), vcl).unwrap();
    let mut p = Proc::start(
        "varnishd",
        Command::new("varnishd")
            .arg("-F")
            .args(["-a", &format!("127.0.0.1:{port}")])
            .arg("-n")
            .arg(dir.join("varnish"))
            .arg("-f")
            .arg(dir.join("hlsd.vcl"))
            .args(["-s", "malloc,64m", "-T", "none"]),
        dir.join("varnish.out"),
    );
    p.wait_port(port);
    (p, port)
}

/// caddy from infra/caddy/Caddyfile with a self-signed certificate (no ACME in tests).
fn start_caddy(dir: &Path, upstream_port: u16) -> (Proc, u16) {
    let port = free_port();
    let (cert, key) = self_signed_cert(dir, "caddy");
    let mut p = Proc::start(
        "caddy",
        Command::new("caddy")
            .args(["run", "--adapter", "caddyfile", "--config"])
            .arg(Path::new(REPO).join("infra/caddy/Caddyfile"))
            .env("HOME", dir)
            .env("XDG_DATA_HOME", dir)
            .env("XDG_CONFIG_HOME", dir)
            .env("HLSD_SITE", format!("https://127.0.0.1:{port}"))
            .env("HLSD_TLS", format!("{} {}", cert.display(), key.display()))
            .env("HLSD_UPSTREAM", format!("127.0.0.1:{upstream_port}"))
            .env("HLSD_PREFIX", "/cam")
            .env("HLSD_CADDY_ADMIN", "off")
            .env("HLSD_HTTP_PORT", free_port().to_string()),
        dir.join("caddy.out"),
    );
    p.wait_port(port);
    (p, port)
}

fn tls_client() -> reqwest::Client {
    common::tls_provider();
    reqwest::Client::builder()
        .use_rustls_tls()
        .danger_accept_invalid_certs(true)
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap()
}

fn plain_client() -> reqwest::Client {
    common::tls_provider();
    reqwest::Client::builder()
        .http1_only()
        .pool_max_idle_per_host(1024)
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap()
}

/// hlsd's request counters by route (all statuses).
async fn origin_counts(hlsd: &Hlsd) -> BTreeMap<String, u64> {
    let text = common::get(&common::client(), &hlsd.url("/metrics"))
        .await
        .ok_text("metrics");
    let mut m = BTreeMap::new();
    for l in text
        .lines()
        .filter(|l| l.starts_with("hlsd_http_requests_total{"))
    {
        let route = l.split("route=\"").nth(1).and_then(|r| r.split('"').next());
        let n = l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok());
        if let (Some(r), Some(n)) = (route, n) {
            *m.entry(r.to_string()).or_insert(0) += n as u64;
        }
    }
    m
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// The end of a media playlist, parsed cheaply (viewers parse thousands of them a second): the
/// last three segments with their parts.
struct Lite {
    segs: Vec<LiteSeg>,
    hint: Option<String>,
}

struct LiteSeg {
    msn: u64,
    pdt_ms: Option<i64>,
    parts: Vec<(f64, String)>,
    complete: bool,
}

fn lite(text: &str) -> Lite {
    let mut segs: Vec<LiteSeg> = Vec::new();
    let mut hint = None;
    let mut msn = 0;
    let mut cur = LiteSeg {
        msn: 0,
        pdt_ms: None,
        parts: vec![],
        complete: false,
    };
    let quoted = |l: &str| {
        l.split("URI=\"")
            .nth(1)
            .and_then(|u| u.split('"').next())
            .map(str::to_string)
    };
    for l in text.lines() {
        if let Some(v) = l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:") {
            msn = v.trim().parse().unwrap();
            cur.msn = msn;
        } else if let Some(v) = l.strip_prefix("#EXT-X-PROGRAM-DATE-TIME:") {
            cur.pdt_ms = common::rules::parse_pdt(v.trim());
        } else if let Some(v) = l.strip_prefix("#EXT-X-PART:DURATION=") {
            let d: f64 = v.split(',').next().unwrap().parse().unwrap();
            cur.parts.push((d, quoted(l).unwrap()));
        } else if l.starts_with("#EXT-X-PRELOAD-HINT:") {
            hint = quoted(l);
        } else if !l.is_empty() && !l.starts_with('#') {
            cur.complete = true;
            msn += 1;
            let next = LiteSeg {
                msn,
                pdt_ms: None,
                parts: vec![],
                complete: false,
            };
            segs.push(std::mem::replace(&mut cur, next));
            if segs.len() > 3 {
                segs.remove(0);
            }
        }
    }
    if !cur.parts.is_empty() {
        segs.push(cur);
    }
    Lite { segs, hint }
}

/// The next blocking-reload key after this playlist (hls.js: the part after the last listed).
fn next_key(pl: &Lite) -> (u64, usize) {
    let last = pl.segs.last().expect("a segment");
    if last.complete {
        (last.msn + 1, 0)
    } else {
        (last.msn, last.parts.len())
    }
}

/// The part a blocking reload for (m, p) asked for: part p of m, or (m+1, 0) when m ended with
/// fewer parts (rule 8b).
fn part_at(pl: &Lite, m: u64, p: usize) -> Option<(&LiteSeg, usize)> {
    let s = pl.segs.iter().find(|s| s.msn == m)?;
    if s.parts.len() > p {
        return Some((s, p));
    }
    if !s.complete {
        return None;
    }
    let next = pl.segs.iter().find(|s| s.msn == m + 1)?;
    (!next.parts.is_empty()).then_some((next, 0))
}

/// The media playlist URL through a proxy (the multivariant playlist names it with `?run=`).
async fn media_url(c: &reqwest::Client, base: &str) -> String {
    let mv = common::get(c, &format!("{base}/stream.m3u8"))
        .await
        .ok_text("stream.m3u8");
    let uri = mv
        .lines()
        .find(|l| !l.starts_with('#') && !l.is_empty())
        .expect("media URI");
    format!("{base}/{uri}")
}

/// Through a proxy: HTTP version, CORS once, a blocking reload and a held preload-hinted part.
async fn basic_checks(c: &reqwest::Client, base: &str, want: reqwest::Version) {
    let r = common::get(c, &format!("{base}/stream.m3u8")).await;
    assert_eq!(r.status, 200, "{base}/stream.m3u8");
    assert_eq!(r.version, want, "protocol to viewers");
    let acao: Vec<_> = r
        .headers
        .get_all("access-control-allow-origin")
        .iter()
        .collect();
    assert_eq!(acao.len(), 1, "CORS set at exactly one layer: {acao:?}");
    assert_eq!(acao[0], "*");
    let media = media_url(c, base).await;
    let pl = lite(&common::get(c, &media).await.ok_text("media"));
    let (m, p) = next_key(&pl);
    // A held blocking reload and the preload-hinted part, both at once through the proxy.
    let hint = pl.hint.clone().expect("PRELOAD-HINT");
    let t0 = Instant::now();
    let (blocking_url, hint_url) = (
        format!("{media}&_HLS_msn={m}&_HLS_part={p}"),
        format!("{base}/{hint}"),
    );
    let (blocking, part) = tokio::join!(common::get(c, &blocking_url), common::get(c, &hint_url));
    let held = t0.elapsed();
    let text = blocking.ok_text("blocking reload");
    let after = lite(&text);
    let (seg, idx) =
        part_at(&after, m, p).unwrap_or_else(|| panic!("part ({m},{p}) listed:\n{text}"));
    assert_eq!(
        seg.parts[idx].1, hint,
        "the hinted part is the one that followed"
    );
    assert_eq!(part.status, 200, "held preload-hinted part");
    assert_eq!(
        part.header("content-length")
            .map(|l| l.parse::<usize>().unwrap()),
        Some(part.body.len())
    );
    assert!(
        common::boxes(&part.body).iter().any(|(t, _)| t == b"moof"),
        "the part is a fragment"
    );
    assert!(held < Duration::from_secs(3), "held for {held:?}");
}

#[derive(Default)]
struct Load {
    requests: u64,
    errors: Vec<String>,
    lateness_ms: Vec<i64>,
    keys: HashSet<(u64, usize)>,
    parts: HashSet<String>,
}

/// `n` LL-HLS viewers for `WATCH`: blocking reload of the next part, then that part.
async fn viewers(clients: &[reqwest::Client], base: &str, n: usize) -> Load {
    let load = Arc::new(Mutex::new(Load::default()));
    let media = media_url(&clients[0], base).await;
    let end = Instant::now() + WATCH;
    let mut tasks = Vec::new();
    for i in 0..n {
        let c = clients[i % clients.len()].clone();
        let (media, base, load) = (media.clone(), base.to_string(), load.clone());
        tasks.push(tokio::spawn(async move {
            // Viewers join over the first second, like an audience arriving.
            tokio::time::sleep(Duration::from_millis((i as u64 * 1000) / n as u64)).await;
            let mut url = media.clone();
            while Instant::now() < end {
                let r = c.get(&url).send().await;
                let text = match r {
                    Ok(r) if r.status() == 200 => r.text().await.unwrap_or_default(),
                    Ok(r) => {
                        load.lock()
                            .unwrap()
                            .errors
                            .push(format!("{url}: {}", r.status()));
                        return;
                    }
                    Err(e) => {
                        load.lock().unwrap().errors.push(format!("{url}: {e}"));
                        return;
                    }
                };
                let pl = lite(&text);
                let (m, p) = next_key(&pl);
                // The part the blocking reload asked for (the first answer: the newest part).
                let asked = url.split("_HLS_msn=").nth(1).map(|q| {
                    let msn: u64 = q.split('&').next().unwrap().parse().unwrap();
                    let part: usize = q.split("_HLS_part=").nth(1).unwrap().parse().unwrap();
                    (msn, part)
                });
                let target = asked.or_else(|| {
                    let s = pl.segs.iter().rev().find(|s| !s.parts.is_empty())?;
                    Some((s.msn, s.parts.len() - 1))
                });
                let mut fetched = None;
                if let Some((am, ap)) = target {
                    if let Some((s, ap)) = part_at(&pl, am, ap) {
                        let end_ms = s.pdt_ms.unwrap()
                            + (s.parts[..=ap].iter().map(|x| x.0).sum::<f64>() * 1000.0) as i64;
                        let uri = s.parts[ap].1.clone();
                        let r = c.get(format!("{base}/{uri}")).send().await;
                        let ok = match r {
                            Ok(r) if r.status() == 200 => {
                                r.bytes().await.map(|_| ()).map_err(|e| e.to_string())
                            }
                            Ok(r) => Err(r.status().to_string()),
                            Err(e) => Err(e.to_string()),
                        };
                        match ok {
                            Ok(()) => fetched = Some((end_ms, uri)),
                            Err(e) => load.lock().unwrap().errors.push(format!("{uri}: {e}")),
                        }
                    }
                }
                let mut l = load.lock().unwrap();
                l.requests += 1 + u64::from(fetched.is_some());
                if let Some((end_ms, uri)) = fetched {
                    if asked.is_some() {
                        l.lateness_ms.push(now_ms() - end_ms);
                    }
                    l.parts.insert(uri);
                }
                l.keys.insert((m, p));
                drop(l);
                url = format!("{media}&_HLS_msn={m}&_HLS_part={p}");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    Arc::try_unwrap(load).ok().unwrap().into_inner().unwrap()
}

fn pct(sorted: &[i64], p: f64) -> i64 {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// Runs the viewers through a cache and checks hlsd's side; returns p99 lateness (ms).
async fn collapse(name: &str, hlsd: &Hlsd, clients: &[reqwest::Client], base: &str) -> i64 {
    let n = std::env::var("HLSD_PROXY_VIEWERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(VIEWERS);
    let before = origin_counts(hlsd).await;
    let load = viewers(clients, base, n).await;
    let after = origin_counts(hlsd).await;
    let d = |r: &str| after.get(r).copied().unwrap_or(0) - before.get(r).copied().unwrap_or(0);
    let origin: u64 = after.values().sum::<u64>() - before.values().sum::<u64>();
    let mut late = load.lateness_ms.clone();
    late.sort_unstable();
    assert!(
        load.errors.is_empty(),
        "{name}: viewer errors: {:?}",
        &load.errors[..load.errors.len().min(10)]
    );
    assert!(
        late.len() > n,
        "{name}: too few parts measured ({})",
        late.len()
    );
    let (p50, p99, max) = (pct(&late, 0.5), pct(&late, 0.99), *late.last().unwrap());
    println!(
        "{name}: {n} viewers, {} s: {} viewer requests, {origin} at hlsd (media {}, part {}, other {}): \
         ratio {:.0}:1; part lateness p50 {p50} ms, p99 {p99} ms, max {max} ms",
        WATCH.as_secs(),
        load.requests,
        d("media"),
        d("part"),
        origin - d("media") - d("part") - 2,
        load.requests as f64 / origin.max(1) as f64,
    );
    // Each part from hlsd at most once per cache (they are immutable), and each blocking key
    // at most once; each viewer's first, plain, playlist load reaches hlsd too (at T = 1 it is
    // `no-cache`: T/2 rounds to 0 s). The metrics scrapes are the 2 "other" requests.
    assert!(
        d("part") <= load.parts.len() as u64,
        "{name}: {} part requests at hlsd for {} distinct parts",
        d("part"),
        load.parts.len()
    );
    assert!(
        d("media") <= load.keys.len() as u64 + n as u64,
        "{name}: {} media playlist requests at hlsd for {} distinct keys and {n} first loads",
        d("media"),
        load.keys.len()
    );
    p99
}

fn tempdir() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    // varnishd's worker user and nginx's must be able to reach the files.
    std::fs::set_permissions(
        d.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_varnish_and_caddy_in_front_of_hlsd() {
    let hlsd = Hlsd::start(&["--width", "320", "--height", "180", "--bitrate", "300000"]);
    let dir = tempdir();
    let (nginx, np) = start_nginx(dir.path(), hlsd.port);
    let (varnish, vp) = start_varnish(dir.path(), hlsd.port);
    let (caddy, cp) = start_caddy(dir.path(), hlsd.port);
    common::wait_for_msn(&common::client(), &hlsd.base, 2).await;

    let tls = tls_client();
    let nginx_base = format!("https://127.0.0.1:{np}/cam");
    let varnish_base = format!("http://127.0.0.1:{vp}/cam");
    let caddy_base = format!("https://127.0.0.1:{cp}/cam");
    basic_checks(&tls, &nginx_base, reqwest::Version::HTTP_2).await;
    basic_checks(&plain_client(), &varnish_base, reqwest::Version::HTTP_11).await;
    basic_checks(&tls, &caddy_base, reqwest::Version::HTTP_2).await;
    // Status routes are not served to viewers through any of them.
    for base in [&nginx_base, &caddy_base] {
        assert_eq!(
            common::get(&tls, &format!("{base}/metrics")).await.status,
            404
        );
    }
    assert_eq!(
        common::get(&plain_client(), &format!("{varnish_base}/metrics"))
            .await
            .status,
        404
    );

    // Collapsing: viewers over 20 HTTP/2 connections to nginx, HTTP/1.1 connections to Varnish.
    let nginx_clients: Vec<_> = (0..20).map(|_| tls_client()).collect();
    let nginx_p99 = collapse("nginx", &hlsd, &nginx_clients, &nginx_base).await;
    let varnish_p99 = collapse("varnish", &hlsd, &[plain_client()], &varnish_base).await;
    println!(
        "p99 part lateness: nginx {nginx_p99} ms, varnish {varnish_p99} ms (part {PART_MS} ms)"
    );
    assert!(
        (varnish_p99 as f64) < PART_MS,
        "varnish: p99 part lateness {varnish_p99} ms is more than a part"
    );
    // Caddy has no cache: every viewer request reaches hlsd; it must still serve them all over
    // TLS + HTTP/2 without errors (100 viewers over 10 connections).
    let caddy_clients: Vec<_> = (0..10).map(|_| tls_client()).collect();
    let before = origin_counts(&hlsd).await;
    let load = viewers(&caddy_clients, &caddy_base, 100).await;
    let origin: u64 =
        origin_counts(&hlsd).await.values().sum::<u64>() - before.values().sum::<u64>();
    let mut late = load.lateness_ms.clone();
    late.sort_unstable();
    assert!(
        load.errors.is_empty(),
        "caddy: viewer errors: {:?}",
        &load.errors[..load.errors.len().min(10)]
    );
    assert!(!late.is_empty(), "caddy: no part measured");
    println!(
        "caddy (no cache): 100 viewers, {} viewer requests, {origin} at hlsd; part lateness p50 {} ms, p99 {} ms",
        load.requests,
        pct(&late, 0.5),
        pct(&late, 0.99)
    );
    assert!(
        origin >= load.requests,
        "caddy has no cache: every request reaches hlsd"
    );
    drop((nginx, varnish, caddy));
    hlsd.assert_no_panic();
}
