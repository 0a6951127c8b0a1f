//! `hlsd-load`: a viewer load generator for benches and tests (issue 13). N viewers
//! ([`viewer`]) ramp up evenly over `--ramp` seconds, then are measured for `--duration`
//! seconds and stopped; only loopback targets are accepted. Counters and lateness samples are
//! kept per viewer (no shared lock on the request path) and merged into a [`Report`] at the
//! end. Any playlist URL works (a proxy's path prefix, a multivariant or a media playlist):
//! every other URL is resolved from the playlists' relative URIs.

mod client;
pub mod playlist;
mod report;
mod viewer;

pub use report::{Lateness, Report};

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Lateness samples kept per viewer and kind (beyond it they are not recorded; counted).
const SAMPLES_PER_VIEWER: usize = 1 << 16;

/// Errors that stop a run before it starts.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("bad target URL {0}")]
    Target(String),
    #[error("refusing non-loopback target {0}: hlsd-load only loads this machine")]
    NotLoopback(String),
    #[error("cannot resolve {0}: {1}")]
    Resolve(String, std::io::Error),
    #[error("bad playlist: {0}")]
    Parse(String),
    #[error("{0}")]
    Settings(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// LL-HLS like hls.js: blocking reloads, every part, preload hints.
    Ll,
    /// Poll the playlist, fetch whole segments.
    Plain,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
pub enum Proto {
    /// HTTP/1.1 keep-alive (two connections per LL viewer, one per plain viewer).
    #[value(name = "1")]
    #[serde(rename = "http/1.1")]
    H1,
    /// HTTP/2 cleartext with prior knowledge (one connection per viewer).
    #[value(name = "2")]
    #[serde(rename = "h2c")]
    H2,
}

/// Command line of `hlsd-load`.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "hlsd-load", about = "Simulate N HLS viewers of a loopback origin and report throughput, errors and lateness")]
pub struct Args {
    /// Playlist URL (multivariant or media), e.g. http://127.0.0.1:8080/stream.m3u8
    pub url: String,
    /// Simulated viewers.
    #[arg(short = 'n', long, default_value_t = 10)]
    pub viewers: usize,
    /// ll (hls.js low-latency mode) or plain (poll playlist, whole segments).
    #[arg(long, value_enum, default_value_t = Mode::Ll)]
    pub mode: Mode,
    /// HTTP version: 1 (HTTP/1.1 keep-alive) or 2 (h2c, prior knowledge).
    #[arg(long, value_enum, default_value_t = Proto::H1)]
    pub http: Proto,
    /// Seconds over which viewers start, evenly spaced (not measured).
    #[arg(long, default_value_t = 2.0)]
    pub ramp: f64,
    /// Seconds measured after the ramp; then every viewer stops.
    #[arg(short = 'd', long, default_value_t = 10.0)]
    pub duration: f64,
    /// Deadline of each request (connect, headers, body), seconds.
    #[arg(long, default_value_t = 10.0)]
    pub timeout: f64,
    /// Do not ask for delta playlists (_HLS_skip=YES) even where allowed.
    #[arg(long)]
    pub no_skip: bool,
    /// Tokio worker threads of the generator.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Print the report as one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// What every viewer shares (read-only).
pub struct Settings {
    pub url: url::Url,
    pub addr: SocketAddr,
    pub mode: Mode,
    pub proto: Proto,
    pub timeout: Duration,
    pub skip: bool,
}

/// Why a request failed (the report counts them by [`ErrKind::name`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrKind {
    Connect,
    Timeout,
    Protocol,
    Body,
    Status(u16),
    Parse,
    NotLowLatency,
    /// The media loop had more than its queue of parts waiting (the viewer fell behind).
    Behind,
}

impl ErrKind {
    pub fn name(self) -> String {
        match self {
            ErrKind::Connect => "connect".into(),
            ErrKind::Timeout => "timeout".into(),
            ErrKind::Protocol => "protocol".into(),
            ErrKind::Body => "body".into(),
            ErrKind::Status(s) => format!("http_{s}"),
            ErrKind::Parse => "parse".into(),
            ErrKind::NotLowLatency => "not_low_latency".into(),
            ErrKind::Behind => "behind".into(),
        }
    }
}

/// One viewer's counters; requests, bytes and lateness count only while measuring, errors always.
pub struct ViewerStats {
    measuring: Arc<AtomicBool>,
    pub requests: u64,
    pub bytes: u64,
    pub errors: BTreeMap<String, u64>,
    pub part_late_ms: Vec<f32>,
    pub segment_late_ms: Vec<f32>,
    pub dropped_samples: u64,
}

impl ViewerStats {
    fn new(measuring: Arc<AtomicBool>) -> ViewerStats {
        ViewerStats {
            measuring,
            requests: 0,
            bytes: 0,
            errors: BTreeMap::new(),
            part_late_ms: Vec::new(),
            segment_late_ms: Vec::new(),
            dropped_samples: 0,
        }
    }
    fn on(&self) -> bool {
        self.measuring.load(Ordering::Relaxed)
    }
    pub fn request(&mut self, bytes: u64) {
        if self.on() {
            self.requests += 1;
            self.bytes += bytes;
        }
    }
    pub fn error(&mut self, e: ErrKind) {
        *self.errors.entry(e.name()).or_default() += 1;
    }
    pub fn lateness(&mut self, ms: f64, segment: bool) {
        if !self.on() {
            return;
        }
        let v = if segment { &mut self.segment_late_ms } else { &mut self.part_late_ms };
        if v.len() < SAMPLES_PER_VIEWER {
            v.push(ms as f32);
        } else {
            self.dropped_samples += 1;
        }
    }
}

/// Checks the target (loopback only) and resolves its address.
pub async fn settings(args: &Args) -> Result<Settings, LoadError> {
    let url = url::Url::parse(&args.url).map_err(|e| LoadError::Target(format!("{}: {e}", args.url)))?;
    if url.scheme() != "http" {
        return Err(LoadError::Target(format!("{}: only http:// is supported", args.url)));
    }
    let host = url.host_str().ok_or_else(|| LoadError::Target(args.url.clone()))?.to_owned();
    let port = url.port_or_known_default().unwrap_or(80);
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<SocketAddr> =
        tokio::net::lookup_host((bare, port)).await.map_err(|e| LoadError::Resolve(host.clone(), e))?.collect();
    let addr = *addrs.first().ok_or_else(|| LoadError::Target(args.url.clone()))?;
    if !addrs.iter().all(|a| a.ip().is_loopback()) {
        return Err(LoadError::NotLoopback(host));
    }
    if args.viewers == 0 || !(args.duration > 0.0 && args.ramp >= 0.0 && args.timeout > 0.0) {
        return Err(LoadError::Settings("need --viewers >= 1, --duration > 0, --ramp >= 0, --timeout > 0".into()));
    }
    Ok(Settings {
        url,
        addr,
        mode: args.mode,
        proto: args.http,
        timeout: Duration::from_secs_f64(args.timeout),
        skip: !args.no_skip,
    })
}

/// Runs the whole load (ramp, measured duration, stop) and returns the merged report.
pub async fn run(args: &Args) -> Result<Report, LoadError> {
    let set = Arc::new(settings(args).await?);
    let measuring = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let ramp = Duration::from_secs_f64(args.ramp);
    let mut all = Vec::with_capacity(args.viewers);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..args.viewers {
        let at = start + ramp.mul_f64(i as f64 / args.viewers as f64);
        tokio::time::sleep_until(at.into()).await;
        let stats = Arc::new(Mutex::new(ViewerStats::new(measuring.clone())));
        all.push(stats.clone());
        tasks.spawn(viewer::run(set.clone(), stats));
    }
    tokio::time::sleep_until((start + ramp).into()).await;
    measuring.store(true, Ordering::Relaxed);
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(args.duration)).await;
    measuring.store(false, Ordering::Relaxed);
    let seconds = t0.elapsed().as_secs_f64();
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    Ok(Report::merge(args, seconds, &all))
}
