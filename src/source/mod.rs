//! Sources: where H.264 comes from. Each yields [`SourceEvent`]s (format, frames with capture
//! timestamps, discontinuities) into a bounded channel read by the segmenter task.
//!
//! - `testsrc`: built-in pattern + clock, encoded in-process with openh264 ([`testsrc`]).
//! - `file:PATH`: an Annex-B file, paced in real time (or not, `--no-pace`), optionally looped.
//! - `stdin`, `exec:COMMAND`, `tcp://HOST:PORT`: live byte streams, stamped on arrival
//!   ([`stream`]); `exec` and `tcp` restart/reconnect with backoff and mark a discontinuity.
//! - `udp://HOST:PORT`: MPEG-TS datagrams, unicast or multicast ([`udp`]).
//! - Byte streams and files may hold raw Annex-B H.264 or MPEG-TS, told apart by [`ingest`];
//!   MPEG-TS brings the encoder's PTS/DTS and B-frames ([`ts`]).
//! - `v4l2:/dev/videoN`: H.264 straight from a V4L2 camera or through an M2M hardware encoder,
//!   stamped with the driver's capture timestamps ([`v4l2`]).

pub mod clock;
pub mod file;
pub mod ingest;
pub mod reader;
pub mod stderr;
pub mod stream;
pub mod testsrc;
pub mod ts;
pub mod udp;
pub mod v4l2;

use ingest::InputError;
use crate::media::SourceEvent;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;
use tokio::sync::mpsc;

/// A parsed `--source` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceSpec {
    Testsrc,
    Stdin,
    File(PathBuf),
    /// Masked in `Debug`/`Display` (the command may hold passwords or keys).
    Exec(crate::secret::Masked),
    Tcp(String),
    /// `udp://HOST:PORT`: MPEG-TS over UDP (a multicast HOST is joined).
    Udp(String),
    /// `v4l2:/dev/videoN`: a V4L2 camera.
    V4l2(PathBuf),
}

impl FromStr for SourceSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s == "testsrc" {
            Ok(SourceSpec::Testsrc)
        } else if s == "stdin" || s == "-" {
            Ok(SourceSpec::Stdin)
        } else if let Some(p) = s.strip_prefix("file:") {
            Ok(SourceSpec::File(PathBuf::from(p)))
        } else if let Some(c) = s.strip_prefix("exec:") {
            if c.trim().is_empty() {
                return Err("exec: needs a command, e.g. exec:rpicam-vid -t 0 --inline -o -".into());
            }
            Ok(SourceSpec::Exec(c.into()))
        } else if let Some(a) = s.strip_prefix("tcp://") {
            if !a.contains(':') {
                return Err(format!("tcp://{a}: needs HOST:PORT, e.g. tcp://raspberrypi.local:8888"));
            }
            Ok(SourceSpec::Tcp(a.to_string()))
        } else if let Some(a) = s.strip_prefix("udp://") {
            if a.parse::<std::net::SocketAddr>().is_err() {
                return Err(format!("udp://{a}: needs IP:PORT to listen on, e.g. udp://0.0.0.0:5000 or udp://239.0.0.1:5000 (multicast)"));
            }
            Ok(SourceSpec::Udp(a.to_string()))
        } else if let Some(p) = s.strip_prefix("v4l2:") {
            if !p.starts_with('/') {
                return Err(format!("v4l2:{p}: needs a device path, e.g. v4l2:/dev/video0 (`hlsd devices` lists them)"));
            }
            Ok(SourceSpec::V4l2(PathBuf::from(p)))
        } else {
            Err(format!(
                "unknown source '{}': use testsrc, stdin, file:PATH, exec:COMMAND, tcp://HOST:PORT, udp://IP:PORT or v4l2:/dev/videoN",
                crate::secret::mask(s)
            ))
        }
    }
}

impl std::fmt::Display for SourceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SourceSpec::Testsrc => write!(f, "testsrc"),
            SourceSpec::Stdin => write!(f, "stdin"),
            SourceSpec::File(p) => write!(f, "file:{}", p.display()),
            SourceSpec::Exec(c) => write!(f, "exec:{c}"),
            SourceSpec::Tcp(a) => write!(f, "tcp://{a}"),
            SourceSpec::Udp(a) => write!(f, "udp://{a}"),
            SourceSpec::V4l2(p) => write!(f, "v4l2:{}", p.display()),
        }
    }
}

/// Errors that stop a source for good. Messages name the source.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("source {source_name}: {err}")]
    Input { source_name: String, err: InputError },
    #[error("source {source_name}: {err}")]
    Io { source_name: String, err: std::io::Error },
    #[error("source {source_name}: no H.264 pictures in the input (is it an Annex-B H.264 stream?)")]
    Empty { source_name: String },
    #[error("testsrc: {0}")]
    Testsrc(#[from] testsrc::TestsrcError),
}

/// Source settings (from the config).
#[derive(Debug, Clone)]
pub struct SourceConfig {
    pub spec: SourceSpec,
    /// Frame rate override (`--framerate`), else SPS VUI timing.
    pub framerate: Option<f64>,
    /// Pace files in real time.
    pub pace: bool,
    /// Loop files.
    pub looped: bool,
    /// Input idle time after which the pending access unit is taken as complete (`None`: only
    /// the next start code completes it).
    pub idle_flush: Option<Duration>,
    /// Restart/reconnect after this long without data from exec/tcp.
    pub stall_timeout: Duration,
    pub testsrc: testsrc::TestsrcConfig,
    /// `v4l2:` request (size, rate, encoder controls).
    pub v4l2: v4l2::V4l2Config,
    /// MPEG-TS program number to use (`--ts-program`); `None`: the first in the PAT.
    pub ts_program: Option<u16>,
}

/// Runs the configured source until it ends, fails fatally or the receiver is dropped.
pub async fn run(cfg: SourceConfig, tx: mpsc::Sender<SourceEvent>) -> Result<(), SourceError> {
    let frame_duration = cfg.framerate.map(crate::h264::frame_duration_for_fps);
    match cfg.spec.clone() {
        SourceSpec::Testsrc => {
            let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let handle = testsrc::spawn(cfg.testsrc.clone(), tx.clone(), stop.clone())?;
            // The thread ends when the channel closes; wait for that without blocking the runtime.
            let _guard = StopOnDrop(stop);
            tx.closed().await;
            let _ = tokio::task::spawn_blocking(move || handle.join()).await;
            Ok(())
        }
        SourceSpec::File(path) => file::run(&path, &cfg, frame_duration, tx).await,
        SourceSpec::Stdin => stream::run_stdin(&cfg, frame_duration, tx).await,
        SourceSpec::Exec(cmd) => stream::run_exec(&cmd, &cfg, frame_duration, tx).await,
        SourceSpec::Tcp(addr) => stream::run_tcp(&addr, &cfg, frame_duration, tx).await,
        SourceSpec::Udp(addr) => udp::run(&addr, &cfg, frame_duration, tx).await,
        SourceSpec::V4l2(path) => v4l2::run(&path, &cfg, tx).await,
    }
}

struct StopOnDrop(std::sync::Arc<std::sync::atomic::AtomicBool>);
impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Exponential backoff for restarts: 0.5 s doubling to 10 s, reset after a healthy run.
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { next: Duration::from_millis(500) }
    }
}

impl Backoff {
    /// Delay before the next attempt; `ran_for` is how long the last attempt lasted.
    pub fn delay(&mut self, ran_for: Duration) -> Duration {
        if ran_for > Duration::from_secs(30) {
            self.next = Duration::from_millis(500);
        }
        let d = self.next;
        self.next = (self.next * 2).min(Duration::from_secs(10));
        d
    }
}
