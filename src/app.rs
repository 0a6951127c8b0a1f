//! Wiring: source → segmenter → live window → HTTP, and graceful shutdown.
//!
//! The source runs in its own task (or thread, for testsrc) and feeds a bounded channel; the
//! segmenter task owns the [`Window`] and publishes snapshots; the HTTP server reads them. On
//! shutdown the window is ended (playlists get EXT-X-ENDLIST, held requests are answered) before
//! connections are closed.

use crate::config::Config;
use crate::hls::segmenter::{ticks, Output, Segmenter, SegmenterConfig};
use crate::hls::window::{Window, WindowConfig};
use crate::http::handlers::{HttpState, Serves};
use crate::media::SourceEvent;
use crate::metrics::{self, ReasonLabels};
use crate::source::{self, SourceConfig, SourceSpec};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// Frames buffered between source and segmenter.
const SOURCE_QUEUE: usize = 64;
/// How long outputs may take to finish after shutdown.
const SINK_GRACE: Duration = Duration::from_secs(10);

/// A run id unique per process start: base-36 milliseconds since the epoch.
pub fn run_id() -> String {
    let mut n = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
    let mut s = Vec::new();
    while n > 0 {
        s.push(b"0123456789abcdefghijklmnopqrstuvwxyz"[(n % 36) as usize]);
        n /= 36;
    }
    s.reverse();
    String::from_utf8(s).unwrap_or_else(|_| "run".into())
}

/// Source settings from the config.
pub fn source_config(cfg: &Config) -> SourceConfig {
    SourceConfig {
        spec: cfg.source.parse::<SourceSpec>().unwrap_or(SourceSpec::Testsrc),
        framerate: cfg.framerate,
        ts_program: cfg.ts_program,
        pace: !cfg.no_pace,
        looped: cfg.looped,
        idle_flush: (cfg.idle_flush_ms > 0.0).then(|| Duration::from_secs_f64(cfg.idle_flush_ms / 1e3)),
        stall_timeout: Duration::from_secs_f64(cfg.stall_timeout),
        testsrc: source::testsrc::TestsrcConfig {
            width: cfg.width,
            height: cfg.height,
            fps: cfg.fps,
            idr_interval_frames: cfg.keyint,
            bitrate_bps: cfg.bitrate,
        },
        v4l2: source::v4l2::V4l2Config {
            width: cfg.width,
            height: cfg.height,
            fps: cfg.fps,
            bitrate: cfg.v4l2_bitrate,
            idr_interval: cfg.v4l2_idr_interval,
            profile: cfg.v4l2_profile.clone(),
            level: cfg.v4l2_level.clone(),
            repeat_headers: cfg.v4l2_repeat_headers,
            encoder: cfg.v4l2_encoder.clone(),
            segment_duration: cfg.segment_duration,
        },
    }
}

/// Segmenter settings from the config.
pub fn segmenter_config(cfg: &Config) -> SegmenterConfig {
    SegmenterConfig { segment_target: ticks(cfg.segment_duration), part_target: ticks(cfg.part_duration) }
}

/// Runs the live origin on `listener` until `shutdown` resolves or a file/stdin source fails.
pub async fn run(cfg: Config, listener: TcpListener, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let run = run_id();
    let (mut window, snapshots) = Window::new(
        WindowConfig { segments: cfg.window, segment_target: cfg.segment_duration },
        run.clone(),
    );
    let tls_files = match (&cfg.tls_cert, &cfg.tls_key) {
        (Some(c), Some(k)) => Some(crate::http::tls::TlsFiles::load(c, k)?),
        _ => None,
    };
    let tls = tls_files.as_ref().map(|f| f.acceptor());
    if let Some(f) = &tls_files {
        tokio::spawn(f.clone().watch_files());
    }
    spawn_sighup(tls_files);
    let secret = |s: &Option<crate::secret::Secret>| s.as_ref().map(|s| s.expose().to_string());
    let access = Arc::new(crate::http::auth::Access::new(
        secret(&cfg.access_secret).as_deref(),
        secret(&cfg.basic_auth).as_deref(),
        secret(&cfg.metrics_auth).as_deref(),
    ));
    let held = crate::http::limits::HeldLimit::new(cfg.max_held_requests);
    let mut state = HttpState::new(snapshots, cfg.base().to_string(), held.clone());
    state.access = access.clone();
    let status_state = cfg.metrics_listen.map(|_| {
        state.serves = Serves::Viewers;
        let mut s = HttpState::new(state.snapshots.clone(), state.base.clone(), held);
        s.access = access;
        s.serves = Serves::Status;
        Arc::new(s)
    });
    let state = Arc::new(state);
    let status_listener = match cfg.metrics_listen {
        Some(a) => Some(crate::http::limits::listen(a).map_err(|e| anyhow::anyhow!("cannot listen on metrics-listen {a}: {e}"))?),
        None => None,
    };
    let limits = Arc::new(crate::http::HttpLimits::from_config(&cfg));

    let (events, _) = tokio::sync::broadcast::channel::<SourceEvent>(crate::sink::EVENT_BUFFER);
    let sinks = crate::sink::spawn_all(
        &cfg,
        &crate::sink::SinkInputs { snapshots: state.snapshots.clone(), events: events.clone() },
    )?;

    let (tx, mut rx) = mpsc::channel::<SourceEvent>(SOURCE_QUEUE);
    let src_cfg = source_config(&cfg);
    let src_name = src_cfg.spec.to_string();
    let source_task = tokio::spawn(source::run(src_cfg, tx));

    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let seg_cfg = segmenter_config(&cfg);
    let segmenter_task = tokio::spawn(async move {
        let mut seg = Segmenter::new(seg_cfg);
        let mut outs = Vec::new();
        let m = metrics::get();
        loop {
            let ev = tokio::select! {
                ev = rx.recv() => ev,
                _ = stop_rx.changed() => None,
            };
            let Some(ev) = ev else { break };
            match &ev {
                SourceEvent::Frame(_) => {
                    m.frames.inc();
                }
                SourceEvent::Discontinuity { reason } => {
                    tracing::warn!(reason, "discontinuity");
                    m.discontinuities.inc();
                }
                SourceEvent::Format(info) => tracing::info!(
                    width = info.width, height = info.height, codec = %info.codec_string(),
                    fps = format!("{:.3}", info.frame_rate()), "stream format"
                ),
                SourceEvent::End => tracing::info!("source ended; playlist gets EXT-X-ENDLIST"),
            }
            if events.receiver_count() > 0 {
                let _ = events.send(ev.clone());
            }
            let dropped_before = seg.stats.frames_dropped_waiting_idr;
            let overdue_before = seg.stats.frames_dropped_idr_overdue;
            if let Err(e) = seg.push(ev, &mut outs) {
                tracing::error!(error = %e, "muxing failed; frame dropped");
                m.frames_dropped.get_or_create(&ReasonLabels { reason: "mux_error" }).inc();
            }
            let dropped = seg.stats.frames_dropped_waiting_idr - dropped_before;
            if dropped > 0 {
                m.frames_dropped.get_or_create(&ReasonLabels { reason: "waiting_for_idr" }).inc_by(dropped);
            }
            let overdue = seg.stats.frames_dropped_idr_overdue - overdue_before;
            if overdue > 0 {
                m.frames_dropped.get_or_create(&ReasonLabels { reason: "idr_overdue" }).inc_by(overdue);
            }
            let parts: Vec<_> = outs
                .iter()
                .filter_map(|o| if let Output::Part(p) = o { Some((p.last_arrived, p.data.len())) } else { None })
                .collect();
            let segments = outs.iter().filter(|o| matches!(o, Output::SegmentEnd { .. })).count();
            window.apply(&mut outs, seg.next_global_part());
            for (arrived, len) in parts {
                m.origin_delay.observe(arrived.elapsed().as_secs_f64());
                m.parts.inc();
                m.media_bytes.inc_by(len as u64);
            }
            m.segments.inc_by(segments as u64);
            let overlong = window.overlong;
            if overlong > m.overlong_segments.get() {
                m.overlong_segments.inc_by(overlong - m.overlong_segments.get());
            }
        }
        window.end();
        window
    });

    let addr = listener.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let host = if addr.ip().is_unspecified() { "127.0.0.1".to_string() } else { addr.ip().to_string() };
    let host = if host.contains(':') { format!("[{host}]") } else { host };
    println!("hlsd: player at {scheme}://{host}:{}{}/", addr.port(), cfg.base());
    if addr.ip().is_unspecified() {
        if let Ok(name) = std::fs::read_to_string("/etc/hostname") {
            println!("hlsd: on your network: {scheme}://{}.local:{}{}/", name.trim(), addr.port(), cfg.base());
        }
    }
    tracing::info!(%addr, source = %src_name, run = %run, segment = cfg.segment_duration,
        part = cfg.part_duration, window = cfg.window, "hlsd listening");

    // Shutdown when asked, or when the source fails for good.
    let (fail_tx, fail_rx) = tokio::sync::oneshot::channel::<anyhow::Error>();
    let watch_source = tokio::spawn(async move {
        match source_task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                let _ = fail_tx.send(anyhow::Error::new(e));
            }
            Err(e) if e.is_panic() => {
                let _ = fail_tx.send(anyhow::anyhow!("source task panicked"));
            }
            Err(_) => {}
        }
    });
    let mut failure = None;
    let stop = async {
        tokio::select! {
            _ = shutdown => {}
            Ok(e) = fail_rx => failure = Some(e),
        }
        tracing::info!("shutting down: ending the playlist");
        let _ = stop_tx.send(true);
    };
    let grace = Duration::from_secs(2);
    // metrics-listen: a second listener serving only /metrics and /healthz (plain HTTP).
    let status_server = status_listener.zip(status_state).map(|(l, st)| {
        if let Ok(a) = l.local_addr() {
            tracing::info!(addr = %a, "metrics and healthz listening");
        }
        let mut stopped = stop_tx.subscribe();
        let status_limits = limits.clone();
        tokio::spawn(crate::http::serve(l, st, None, status_limits, async move { let _ = stopped.changed().await; }, grace))
    });
    crate::http::serve(listener, state, tls, limits, stop, grace).await;
    if let Some(h) = status_server {
        let _ = h.await;
    }
    watch_source.abort();
    let _ = segmenter_task.await;
    // Let outputs publish their final state (EXT-X-ENDLIST), within bounds.
    for h in sinks {
        if tokio::time::timeout(SINK_GRACE, h).await.is_err() {
            tracing::warn!("an output did not finish within {SINK_GRACE:?} of shutdown");
        }
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// SIGHUP reloads what can be reloaded without a restart: today the TLS certificate.
fn spawn_sighup(tls: Option<Arc<crate::http::tls::TlsFiles>>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hup) = signal(SignalKind::hangup()) else { return };
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                match &tls {
                    Some(t) => {
                        tracing::info!("SIGHUP: reloading the TLS certificate");
                        let t = t.clone();
                        let _ = tokio::task::spawn_blocking(move || t.reload(true)).await;
                    }
                    None => tracing::info!("SIGHUP: nothing to reload"),
                }
            }
        });
    }
}
