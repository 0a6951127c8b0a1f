//! Restreaming to RTMP/RTMPS relays (YouTube Live, Twitch, nginx-rtmp) beside the HLS origin:
//! the same H.264, no re-encoding, one publishing connection per `--rtmp URL`.
//!
//! Per destination, two tasks:
//!
//! ```text
//! broadcast<SourceEvent> ─ pump (pump.rs) ─ bounded queue ─ writer (publish.rs) ─ conn.rs ─ relay
//!                           drops to the next IDR           connects, publishes, packages
//!                           when lagging/full/down          (flv.rs), retries with backoff
//! ```
//!
//! The pump (deciding with [`gate::Gate`]) only ever `try_send`s into the queue, so a slow or
//! dead relay costs that destination whole GOPs (with a warning and `hlsd_rtmp_frames_dropped_total`) and never
//! delays the segmenter or the other outputs. The writer starts each connection at an IDR
//! (sequence header + `onMetaData` first), timestamps from 0, and on any error reconnects
//! with exponential backoff and resumes at the next IDR. Stream keys appear nowhere: logs,
//! metrics and errors use [`RtmpUrl::masked`].

pub mod conn;
pub mod flv;
pub mod gate;
mod publish;
mod pump;
#[cfg(test)]
mod testutil;
pub mod url;

pub use url::{mask_urls, Destination, DestinationParser, RtmpUrl};

use crate::config::Config;
use crate::metrics::{self, RtmpDropLabels, RtmpLabels, RtmpStateLabels};
use gate::DropReason;
use prometheus_client::metrics::counter::Counter;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Frames queued per destination before GOPs are dropped: 8 s at 30 fps, enough to ride out
/// a short network hiccup without growing the relay's delay without bound.
pub const QUEUE_FRAMES: usize = 240;
/// First retry delay; doubled after each failure up to [`BACKOFF_MAX`].
pub const BACKOFF_START: Duration = Duration::from_millis(500);
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A connection that published this long resets the backoff.
const BACKOFF_RESET_AFTER: Duration = Duration::from_secs(30);

/// Audio sent along with the video.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum RtmpAudio {
    /// Video only.
    #[default]
    None,
    /// A silent AAC-LC track (44.1 kHz stereo), for ingest servers that expect audio.
    Silent,
}

/// Metrics and log identity of one destination.
struct Dest {
    url: RtmpUrl,
    /// Masked URL (plus `#n` if two destinations mask alike): the `destination` label.
    label: String,
    bytes: Counter,
    frames: Counter,
    reconnects: Counter,
    audio: RtmpAudio,
}

impl Dest {
    fn dropped(&self, reason: DropReason, n: u64) {
        metrics::get()
            .rtmp_frames_dropped
            .get_or_create(&RtmpDropLabels {
                destination: self.label.clone(),
                reason: reason.label(),
            })
            .inc_by(n);
    }

    fn set_state(&self, state: State) {
        for s in State::ALL {
            let g = metrics::get()
                .rtmp_state
                .get_or_create(&RtmpStateLabels {
                    destination: self.label.clone(),
                    state: s.label(),
                })
                .clone();
            g.set((s == state) as i64);
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Connecting,
    Publishing,
    Retrying,
    Stopped,
}

impl State {
    const ALL: [State; 4] = [
        State::Connecting,
        State::Publishing,
        State::Retrying,
        State::Stopped,
    ];
    fn label(self) -> &'static str {
        match self {
            State::Connecting => "connecting",
            State::Publishing => "publishing",
            State::Retrying => "retrying",
            State::Stopped => "stopped",
        }
    }
}

/// Starts one publisher per configured destination. Subscribes synchronously, so nothing the
/// source sends after this returns is missed.
pub fn spawn(cfg: &Config, inputs: &super::SinkInputs) -> anyhow::Result<Vec<JoinHandle<()>>> {
    if cfg.rtmp.is_empty() {
        return Ok(Vec::new());
    }
    let tls = conn::tls_connector();
    let mut handles = Vec::new();
    let mut labels: Vec<String> = Vec::new();
    for d in &cfg.rtmp {
        let mut label = d.url.masked();
        let same = labels
            .iter()
            .filter(|l| l.split(" #").next() == Some(label.as_str()))
            .count();
        if same > 0 {
            label = format!("{label} #{}", same + 1);
        }
        labels.push(label.clone());
        let m = metrics::get();
        let l = RtmpLabels {
            destination: label.clone(),
        };
        let dest = Arc::new(Dest {
            url: d.url.clone(),
            bytes: m.rtmp_bytes.get_or_create(&l).clone(),
            frames: m.rtmp_frames.get_or_create(&l).clone(),
            reconnects: m.rtmp_reconnects.get_or_create(&l).clone(),
            label,
            audio: cfg.rtmp_audio,
        });
        dest.set_state(State::Connecting);
        let (tx, rx) = mpsc::channel(QUEUE_FRAMES);
        let publishing = Arc::new(AtomicBool::new(false));
        let snapshots = inputs.snapshots.clone();
        let format = move || snapshots.borrow().info().cloned();
        tokio::spawn(pump::pump(
            dest.clone(),
            inputs.events.subscribe(),
            format,
            tx,
            publishing.clone(),
        ));
        handles.push(tokio::spawn(publish::writer(
            dest,
            rx,
            publishing,
            tls.clone(),
        )));
    }
    Ok(handles)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_from_cli_and_file() {
        let c = Config::load_from([
            "hlsd",
            "--rtmp",
            "rtmp://h/live/K1",
            "--rtmp",
            "rtmps://h2/app/K2",
        ])
        .unwrap();
        assert_eq!(c.rtmp.len(), 2);
        assert_eq!(c.rtmp[1].url.stream_key(), "K2");
        assert_eq!(c.rtmp_audio, RtmpAudio::None);
        assert!(
            !format!("{c:?}").contains("K1"),
            "Debug of the config masks stream keys"
        );

        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("hlsd.toml");
        std::fs::write(&p, "rtmp-audio = \"silent\"\n[[rtmp]]\nurl = \"rtmp://h/live/F1\"\n[[rtmp]]\nurl = \"rtmp://h/live/F2\"\n").unwrap();
        let c = Config::load_from(["hlsd", "--config", p.to_str().unwrap()]).unwrap();
        assert_eq!(
            c.rtmp
                .iter()
                .map(|d| d.url.stream_key())
                .collect::<Vec<_>>(),
            ["F1", "F2"]
        );
        assert_eq!(c.rtmp_audio, RtmpAudio::Silent);
        let c = Config::load_from([
            "hlsd",
            "--config",
            p.to_str().unwrap(),
            "--rtmp",
            "rtmp://h/live/C1",
        ])
        .unwrap();
        assert_eq!(
            c.rtmp.len(),
            1,
            "command line replaces the file's list, like every other option"
        );

        std::fs::write(&p, "[[rtmp]]\nurl = \"rtmp://h/SECRETKEY\"\n").unwrap();
        let e = Config::load_from(["hlsd", "--config", p.to_str().unwrap()])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("APP/STREAM-KEY") && !e.contains("SECRETKEY"),
            "{e}"
        );
        std::fs::write(&p, "[[rtmp]]\nurl = rtmp://h/live/SECRETKEY\n").unwrap();
        let e = Config::load_from(["hlsd", "--config", p.to_str().unwrap()])
            .unwrap_err()
            .to_string();
        assert!(
            !e.contains("SECRETKEY"),
            "TOML syntax errors quote the line: {e}"
        );
    }
}
