//! Restreaming to RTMP/RTMPS relays (YouTube Live, Twitch, nginx-rtmp) beside the HLS origin:
//! the same H.264, no re-encoding, one publishing connection per `--rtmp URL`.
//!
//! Per destination, two tasks:
//!
//! ```text
//! broadcast<SourceEvent> ─ pump (gate.rs) ─ bounded queue ─ writer ─ conn.rs ─ TCP/TLS ─ relay
//!                           drops to the next IDR           connects, publishes, flv.rs
//!                           when lagging/full/down          packaging, retries with backoff
//! ```
//!
//! The pump only ever `try_send`s into the queue, so a slow or dead relay costs that
//! destination whole GOPs (with a warning and `hlsd_rtmp_frames_dropped_total`) and never
//! delays the segmenter or the other outputs. The writer starts each connection at an IDR
//! (sequence header + `onMetaData` first), timestamps from 0, and on any error reconnects
//! with exponential backoff and resumes at the next IDR. Stream keys appear nowhere: logs,
//! metrics and errors use [`RtmpUrl::masked`].

pub mod conn;
pub mod flv;
pub mod gate;
pub mod url;

pub use url::{Destination, RtmpUrl};

use crate::config::Config;
use crate::media::SourceEvent;
use crate::metrics::{self, RtmpDropLabels, RtmpLabels, RtmpStateLabels};
use conn::Connection;
use gate::{DropReason, Gate, Item, Verdict};
use prometheus_client::metrics::counter::Counter;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, mpsc};
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

/// clap value parser for `--rtmp`: its errors never echo the URL (clap's default message
/// quotes the value, stream key included).
#[derive(Clone, Copy, Debug, Default)]
pub struct DestinationParser;

impl clap::builder::TypedValueParser for DestinationParser {
    type Value = Destination;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        _arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<Destination, clap::Error> {
        let s = value.to_str().ok_or_else(|| {
            clap::Error::raw(
                clap::error::ErrorKind::InvalidUtf8,
                "--rtmp: URL is not UTF-8\n",
            )
        })?;
        s.parse::<Destination>().map_err(|e| {
            clap::Error::raw(
                clap::error::ErrorKind::ValueValidation,
                format!("--rtmp: {e}\n"),
            )
            .with_cmd(cmd)
        })
    }
}

/// Replaces the stream key of every `rtmp://`/`rtmps://` URL in `text` (e.g. a config file
/// parse error quoting the offending line) with [`url::KEY_MASK`].
pub fn mask_urls(text: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while let Some(at) = lower[i..].find("rtmp").map(|p| p + i) {
        let scheme_end = if lower[at..].starts_with("rtmps://") {
            at + 8
        } else if lower[at..].starts_with("rtmp://") {
            at + 7
        } else {
            out.push_str(&text[i..at + 4]);
            i = at + 4;
            continue;
        };
        let end = text[scheme_end..]
            .find(|c: char| {
                c.is_whitespace() || matches!(c, '"' | '\'' | '`' | ',' | ']' | '}' | '>')
            })
            .map_or(text.len(), |p| p + scheme_end);
        let url = &text[at..end];
        out.push_str(&text[i..at]);
        match url.parse::<RtmpUrl>() {
            Ok(u) => out.push_str(&u.masked()),
            // Unparsable: keep the scheme and host at most.
            Err(_) => {
                let host_end = url[scheme_end - at..]
                    .find('/')
                    .map_or(url.len(), |p| p + scheme_end - at);
                out.push_str(&url[..host_end]);
                if host_end < url.len() {
                    out.push_str("/***");
                }
            }
        }
        i = end;
    }
    out.push_str(&text[i..]);
    out
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
        tokio::spawn(pump(
            dest.clone(),
            inputs.events.subscribe(),
            format,
            tx,
            publishing.clone(),
        ));
        handles.push(tokio::spawn(writer(dest, rx, publishing, tls.clone())));
    }
    Ok(handles)
}

/// Moves events from the broadcast channel into the destination's queue; never waits on it.
/// `format` tells the current stream format (the live window's), for when a lag lost the
/// Format event.
async fn pump(
    dest: Arc<Dest>,
    mut events: broadcast::Receiver<SourceEvent>,
    format: impl Fn() -> Option<crate::media::TrackInfo>,
    tx: mpsc::Sender<Item>,
    publishing: Arc<AtomicBool>,
) {
    let mut gate = Gate::default();
    // Frames dropped in the current episode of a slow relay (warned once when it starts).
    let mut dropping: u64 = 0;
    loop {
        let ev = match events.recv().await {
            Ok(ev) => ev,
            Err(broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(destination = %dest.label, events = n, "rtmp: fell behind the source; dropping until the next IDR");
                dest.dropped(DropReason::Lagged, n);
                if let Some(info) = format() {
                    gate.set_format(info);
                }
                gate.resync();
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => break,
        };
        match gate.on_event(ev, publishing.load(Ordering::Acquire)) {
            Verdict::Nothing => {}
            Verdict::Drop(reason) => {
                dest.dropped(reason, 1);
                if dropping > 0 {
                    dropping += 1;
                }
            }
            Verdict::Enqueue(Item::End) => {
                let _ = tokio::time::timeout(conn::CLOSE_TIMEOUT, tx.send(Item::End)).await;
                break;
            }
            Verdict::Enqueue(item) => match tx.try_send(item) {
                Ok(()) => {
                    if dropping > 0 {
                        tracing::info!(destination = %dest.label, frames = dropping, "rtmp: relay caught up; resumed at an IDR");
                        dropping = 0;
                    }
                }
                Err(mpsc::error::TrySendError::Full(_)) => {
                    if dropping == 0 {
                        tracing::warn!(destination = %dest.label, queue = QUEUE_FRAMES,
                            "rtmp: relay too slow, queue full; dropping frames until the next IDR");
                    }
                    dropping += 1;
                    dest.dropped(DropReason::QueueFull, 1);
                    gate.resync();
                }
                Err(mpsc::error::TrySendError::Closed(_)) => break,
            },
        }
    }
}

/// Why a publishing session ended.
enum Ended {
    /// The source ended or hlsd is shutting down: stop for good.
    Finished,
    Failed(conn::ConnError),
}

/// Connects, publishes, and reconnects with backoff until the queue closes.
async fn writer(
    dest: Arc<Dest>,
    mut queue: mpsc::Receiver<Item>,
    publishing: Arc<AtomicBool>,
    tls: tokio_rustls::TlsConnector,
) {
    let mut backoff = BACKOFF_START;
    let mut attempt: u64 = 0;
    loop {
        attempt += 1;
        dest.set_state(State::Connecting);
        tracing::debug!(destination = %dest.label, attempt, "rtmp: connecting");
        let Some(opened) = unless_ended(&dest, &mut queue, Connection::open(&dest.url, &tls)).await
        else {
            dest.set_state(State::Stopped);
            return;
        };
        let result = match opened {
            Ok(c) => {
                // What was queued belongs to an earlier connection: start afresh at the next IDR.
                let mut stale = 0;
                while let Ok(item) = queue.try_recv() {
                    match item {
                        Item::Frame { .. } => stale += 1,
                        Item::End => {
                            c.close(None).await;
                            dest.set_state(State::Stopped);
                            return;
                        }
                    }
                }
                dest.dropped(DropReason::Disconnected, stale);
                dest.set_state(State::Publishing);
                tracing::info!(destination = %dest.label, reconnects = dest.reconnects.get(), "rtmp: publishing; starting at the next IDR");
                publishing.store(true, Ordering::Release);
                let started = Instant::now();
                let r = stream(&dest, c, &mut queue).await;
                publishing.store(false, Ordering::Release);
                if started.elapsed() >= BACKOFF_RESET_AFTER {
                    backoff = BACKOFF_START;
                }
                r
            }
            Err(e) => Ended::Failed(e),
        };
        let e = match result {
            Ended::Finished => {
                dest.set_state(State::Stopped);
                tracing::info!(destination = %dest.label, "rtmp: stream ended; unpublished");
                return;
            }
            Ended::Failed(e) => e,
        };
        dest.set_state(State::Retrying);
        dest.reconnects.inc();
        tracing::warn!(destination = %dest.label, attempt, error = %e, retry_in = ?backoff, "rtmp: destination failed; will retry");
        if unless_ended(&dest, &mut queue, tokio::time::sleep(backoff))
            .await
            .is_none()
        {
            dest.set_state(State::Stopped);
            return;
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// Runs `fut` while watching the queue: `None` as soon as the source ends or hlsd shuts down.
/// Frames still queued from a failed connection are dropped meanwhile (the pump queues none
/// while not publishing).
async fn unless_ended<T>(
    dest: &Dest,
    queue: &mut mpsc::Receiver<Item>,
    fut: impl std::future::Future<Output = T>,
) -> Option<T> {
    tokio::pin!(fut);
    loop {
        tokio::select! {
            r = &mut fut => return Some(r),
            item = queue.recv() => match item {
                None | Some(Item::End) => return None,
                Some(Item::Frame { .. }) => dest.dropped(DropReason::Disconnected, 1),
            },
        }
    }
}

/// Sends queued frames on an open connection until the queue ends or the connection fails.
async fn stream(dest: &Dest, mut c: Connection, queue: &mut mpsc::Receiver<Item>) -> Ended {
    let mut clock = flv::Clock::default();
    let mut sent_info: Option<Arc<crate::media::TrackInfo>> = None;
    let audio = dest.audio == RtmpAudio::Silent;
    // Silent audio: frames sent so far and the timestamp they count from.
    let mut audio_frames: u64 = 0;
    let mut audio_base: u32 = 0;
    let mut reported = c.bytes_sent;
    let result: Result<(), conn::ConnError> = async {
        loop {
            let item = tokio::select! {
                item = queue.recv() => item,
                r = c.serve_inbound() => {
                    r?;
                    continue;
                }
            };
            let (frame, info, discontinuity) = match item {
                None | Some(Item::End) => return Ok(()),
                Some(Item::Frame { frame, info, discontinuity }) => (frame, info, discontinuity),
            };
            if sent_info.as_ref().is_none_or(|s| !Arc::ptr_eq(s, &info) && **s != *info) {
                if !frame.idr {
                    dest.dropped(DropReason::WaitingIdr, 1);
                    continue;
                }
                let Some(header) = flv::avc_sequence_header(&info) else {
                    tracing::error!(destination = %dest.label, "rtmp: SPS too short for an AVC sequence header; frame dropped");
                    dest.dropped(DropReason::WaitingIdr, 1);
                    continue;
                };
                let ts = clock.last_ms().map_or(0, |t| t + 1);
                c.send_metadata(&flv::metadata(&info, audio)).await?;
                c.send_video(header, ts).await?;
                if audio && sent_info.is_none() {
                    c.send_audio(flv::silent_aac::sequence_header(), ts).await?;
                }
                sent_info = Some(info.clone());
            }
            let ts = clock.map(frame.dts, info.frame_duration, discontinuity);
            if audio {
                if audio_frames == 0 || discontinuity {
                    // (Re)align the audio clock with the video.
                    audio_base = ts;
                    audio_frames = 0;
                }
                while flv::silent_aac::timestamp(audio_base, audio_frames) <= ts {
                    c.send_audio(flv::silent_aac::frame(), flv::silent_aac::timestamp(audio_base, audio_frames)).await?;
                    audio_frames += 1;
                }
            }
            c.send_video(flv::avc_nalu(&frame.data, frame.idr), ts).await?;
            dest.frames.inc();
            dest.bytes.inc_by(c.bytes_sent - reported);
            reported = c.bytes_sent;
        }
    }
    .await;
    dest.bytes.inc_by(c.bytes_sent - reported);
    match result {
        Ok(()) => {
            let eos = clock.last_ms().map(|t| (flv::avc_end_of_sequence(), t));
            c.close(eos).await;
            Ended::Finished
        }
        Err(e) => Ended::Failed(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_urls_in_text() {
        let t = "TOML parse error at line 2\n2 | url = \"rtmp://a.rtmp.youtube.com/live2/SECRET-KEY\n  |       ^";
        let m = mask_urls(t);
        assert!(!m.contains("SECRET"), "{m}");
        assert!(m.contains("rtmp://a.rtmp.youtube.com/live2/***"), "{m}");
        assert_eq!(
            mask_urls("RTMPS://h:444/app/K1, rtmp://h/K2 rtmpx"),
            "rtmps://h:444/app/***, rtmp://h/*** rtmpx"
        );
        assert_eq!(mask_urls("no urls here"), "no urls here");
    }

    fn test_dest(label: &str) -> Arc<Dest> {
        let m = metrics::get();
        let l = RtmpLabels {
            destination: label.into(),
        };
        Arc::new(Dest {
            url: "rtmp://h/live/k".parse().unwrap(),
            label: label.into(),
            bytes: m.rtmp_bytes.get_or_create(&l).clone(),
            frames: m.rtmp_frames.get_or_create(&l).clone(),
            reconnects: m.rtmp_reconnects.get_or_create(&l).clone(),
            audio: RtmpAudio::None,
        })
    }

    fn dropped(label: &str, reason: DropReason) -> u64 {
        metrics::get()
            .rtmp_frames_dropped
            .get_or_create(&RtmpDropLabels {
                destination: label.into(),
                reason: reason.label(),
            })
            .get()
    }

    fn info() -> crate::media::TrackInfo {
        crate::media::TrackInfo {
            sps: bytes::Bytes::from_static(&[0x67, 0x42, 0xc0, 0x1e]),
            pps: bytes::Bytes::from_static(&[0x68, 0xce]),
            width: 320,
            height: 240,
            profile_idc: 0x42,
            constraint_flags: 0xc0,
            level_idc: 0x1e,
            frame_duration: 3000,
        }
    }

    fn frame(n: u64) -> SourceEvent {
        SourceEvent::Frame(crate::media::Frame {
            dts: n * 3000,
            capture: std::time::SystemTime::now(),
            data: bytes::Bytes::new(),
            idr: n % 4 == 0,
            arrived: Instant::now(),
        })
    }

    fn frame_no(item: Option<Item>) -> Option<u64> {
        match item {
            Some(Item::Frame { frame, .. }) => Some(frame.dts / 3000),
            _ => None,
        }
    }

    /// Lets the pump run (current-thread runtime) until `done`, bounded.
    async fn until(done: impl Fn() -> bool) {
        for _ in 0..1000 {
            if done() {
                return;
            }
            tokio::task::yield_now().await;
        }
        panic!("pump did not get there");
    }

    /// A relay that stops reading: the queue fills, the rest of each GOP is dropped (counted),
    /// the source side never waits, and sending resumes at the first IDR once there is room.
    #[tokio::test]
    async fn slow_relay_costs_whole_gops() {
        let label = "test://slow";
        let dest = test_dest(label);
        let (ev_tx, ev_rx) = broadcast::channel(64);
        let (tx, mut rx) = mpsc::channel(4);
        let pump = tokio::spawn(pump(
            dest,
            ev_rx,
            || None,
            tx,
            Arc::new(AtomicBool::new(true)),
        ));
        ev_tx.send(SourceEvent::Format(info())).unwrap();
        for n in 0..12 {
            ev_tx.send(frame(n)).unwrap(); // GOPs of 4: IDRs at 0, 4, 8
        }
        until(|| dropped(label, DropReason::WaitingIdr) == 6).await;
        assert_eq!(
            dropped(label, DropReason::QueueFull),
            2,
            "IDRs 4 and 8 found the queue full"
        );
        let first: Vec<_> = (0..4).map(|_| frame_no(rx.try_recv().ok())).collect();
        assert_eq!(first, [Some(0), Some(1), Some(2), Some(3)]);
        for n in 12..14 {
            ev_tx.send(frame(n)).unwrap();
        }
        drop(ev_tx);
        pump.await.unwrap();
        assert_eq!(
            frame_no(rx.recv().await),
            Some(12),
            "resumes at the next IDR"
        );
        assert_eq!(frame_no(rx.recv().await), Some(13));
        assert!(
            rx.recv().await.is_none(),
            "the queue closes with the source"
        );
    }

    /// A reader that falls behind the broadcast channel resynchronises at the next IDR, with
    /// the format from the live window if the lag swallowed the Format event.
    #[tokio::test]
    async fn lagging_reader_resumes_at_an_idr() {
        let label = "test://lagged";
        let (ev_tx, ev_rx) = broadcast::channel(4);
        let (tx, mut rx) = mpsc::channel(16);
        ev_tx.send(SourceEvent::Format(info())).unwrap();
        for n in 0..10 {
            ev_tx.send(frame(n)).unwrap(); // overflows the channel before the pump runs
        }
        drop(ev_tx);
        pump(
            test_dest(label),
            ev_rx,
            || Some(info()),
            tx,
            Arc::new(AtomicBool::new(true)),
        )
        .await;
        assert_eq!(
            dropped(label, DropReason::Lagged),
            7,
            "Format and frames 0-5 were lost"
        );
        assert_eq!(
            dropped(label, DropReason::WaitingIdr),
            2,
            "frames 6 and 7 precede the next IDR"
        );
        match rx.try_recv() {
            Ok(Item::Frame { frame, info: i, .. }) => {
                assert_eq!((frame.dts / 3000, i.width), (8, 320))
            }
            other => panic!("expected IDR 8 with the window's format, got {other:?}"),
        }
        assert_eq!(frame_no(rx.try_recv().ok()), Some(9));
    }

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
