//! Prometheus metrics, served as text at `/metrics`.
//!
//! One process-wide [`Metrics`] (the pipeline has one stream); updated by the segmenter task,
//! sources and HTTP handlers, encoded on request by prometheus-client.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::OnceLock;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub route: &'static str,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
}

/// One RTMP destination, by its masked URL (the stream key never appears).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RtmpLabels {
    pub destination: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RtmpStateLabels {
    pub destination: String,
    pub state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RtmpDropLabels {
    pub destination: String,
    pub reason: &'static str,
}

/// All metrics of the process.
pub struct Metrics {
    registry: Registry,
    pub frames: Counter,
    pub frames_dropped: Family<ReasonLabels, Counter>,
    pub parts: Counter,
    pub segments: Counter,
    pub media_bytes: Counter,
    pub discontinuities: Counter,
    pub overlong_segments: Counter,
    /// Frames completed by the idle flush that turned out to continue (writer paused mid-frame).
    pub idle_flush_truncations: Counter,
    /// MPEG-TS continuity-counter errors on the selected streams (src/source/ts).
    pub ts_continuity_errors: Counter,
    /// Input bytes dropped by the parser's size limits, by reason.
    pub input_discarded_bytes: Family<ReasonLabels, Counter>,
    /// Encoder stderr lines cut at 1 KiB (`truncated`) or not logged (`rate`), src/source/stderr.rs.
    pub encoder_stderr_dropped: Family<ReasonLabels, Counter>,
    pub http_requests: Family<HttpLabels, Counter>,
    /// Requests refused by access control (src/http/auth.rs), by reason.
    pub http_denied: Family<ReasonLabels, Counter>,
    /// TLS certificate reloads (src/http/tls.rs), by result.
    pub tls_reloads: Family<ResultLabels, Counter>,
    pub http_blocked: Gauge,
    pub http_connections: Gauge,
    /// Effective global connection limit (README "Limits and timeouts").
    pub http_max_connections: Gauge,
    /// Connections closed by a per-connection timeout, by reason.
    pub http_timeouts: Family<ReasonLabels, Counter>,
    /// Connections closed at accept because a limit was reached, by reason.
    pub http_rejected: Family<ReasonLabels, Counter>,
    /// Requests answered 503 because `max-held-requests` requests were already held.
    pub http_held_rejected: Counter,
    /// Last byte of a frame read → its part readable in the window.
    pub origin_delay: Histogram,
    /// RTMP restreaming (src/sink/rtmp): 1 for the destination's current state, 0 for the others.
    pub rtmp_state: Family<RtmpStateLabels, Gauge>,
    pub rtmp_reconnects: Family<RtmpLabels, Counter>,
    pub rtmp_bytes: Family<RtmpLabels, Counter>,
    pub rtmp_frames: Family<RtmpLabels, Counter>,
    pub rtmp_frames_dropped: Family<RtmpDropLabels, Counter>,
    /// Disk/S3 outputs (src/sink/storage).
    pub storage: std::sync::Arc<crate::sink::storage::metrics::StorageMetrics>,
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("hlsd");
        let m = Metrics {
            frames: Counter::default(),
            frames_dropped: Family::default(),
            parts: Counter::default(),
            segments: Counter::default(),
            media_bytes: Counter::default(),
            discontinuities: Counter::default(),
            overlong_segments: Counter::default(),
            idle_flush_truncations: Counter::default(),
            ts_continuity_errors: Counter::default(),
            input_discarded_bytes: Family::default(),
            encoder_stderr_dropped: Family::default(),
            http_requests: Family::default(),
            http_denied: Family::default(),
            tls_reloads: Family::default(),
            http_blocked: Gauge::default(),
            http_connections: Gauge::default(),
            http_max_connections: Gauge::default(),
            http_timeouts: Family::default(),
            http_rejected: Family::default(),
            http_held_rejected: Counter::default(),
            origin_delay: Histogram::new(
                [0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003, 0.004, 0.005, 0.0075, 0.01, 0.02, 0.05, 0.1, 0.25],
            ),
            rtmp_state: Family::default(),
            rtmp_reconnects: Family::default(),
            rtmp_bytes: Family::default(),
            rtmp_frames: Family::default(),
            rtmp_frames_dropped: Family::default(),
            storage: Default::default(),
            registry: Registry::default(),
        };
        registry.register("frames", "Frames received from the source", m.frames.clone());
        registry.register("frames_dropped", "Frames dropped, by reason", m.frames_dropped.clone());
        registry.register("parts", "CMAF parts published", m.parts.clone());
        registry.register("segments", "Segments completed", m.segments.clone());
        registry.register("media_bytes", "Bytes of parts published", m.media_bytes.clone());
        registry.register("discontinuities", "Source restarts and format changes", m.discontinuities.clone());
        registry.register("overlong_segments", "Segments longer than TARGETDURATION", m.overlong_segments.clone());
        registry.register(
            "idle_flush_truncations",
            "Frames completed on input silence that turned out to continue",
            m.idle_flush_truncations.clone(),
        );
        registry.register(
            "ts_continuity_errors",
            "MPEG-TS continuity-counter errors (lost packets) on the selected streams",
            m.ts_continuity_errors.clone(),
        );
        registry.register(
            "input_discarded_bytes",
            "Input bytes dropped by the parser's size limits (NAL unit / access unit), by reason",
            m.input_discarded_bytes.clone(),
        );
        registry.register(
            "encoder_stderr_dropped",
            "Encoder stderr lines cut (truncated) or not logged (rate)",
            m.encoder_stderr_dropped.clone(),
        );
        registry.register("http_requests", "HTTP responses by route and status", m.http_requests.clone());
        registry.register("http_denied", "Requests refused by access control, by reason", m.http_denied.clone());
        registry.register("tls_reloads", "TLS certificate reloads, by result (ok, error)", m.tls_reloads.clone());
        registry.register("http_blocked_requests", "Requests currently held (blocking reload, preload hint)", m.http_blocked.clone());
        registry.register("http_connections", "Open client connections", m.http_connections.clone());
        registry.register("http_max_connections", "Effective limit of open client connections", m.http_max_connections.clone());
        registry.register("http_timeouts", "Connections closed by a timeout, by reason", m.http_timeouts.clone());
        registry.register(
            "http_rejected_connections",
            "Connections closed at accept because a limit was reached, by reason",
            m.http_rejected.clone(),
        );
        registry.register(
            "http_held_rejected",
            "Blocking/preload requests answered 503 because max-held-requests were held",
            m.http_held_rejected.clone(),
        );
        registry.register(
            "origin_delay_seconds",
            "Delay from a frame's last byte read to its part being readable",
            m.origin_delay.clone(),
        );
        registry.register("rtmp_state", "RTMP destination state (1 = current)", m.rtmp_state.clone());
        registry.register("rtmp_reconnects", "RTMP connection failures followed by a retry", m.rtmp_reconnects.clone());
        registry.register("rtmp_bytes", "Bytes sent to the RTMP destination", m.rtmp_bytes.clone());
        registry.register("rtmp_frames", "Video frames sent to the RTMP destination", m.rtmp_frames.clone());
        registry.register("rtmp_frames_dropped", "Video frames not sent to the RTMP destination, by reason", m.rtmp_frames_dropped.clone());
        m.storage.register(&mut registry);
        Metrics { registry, ..m }
    }

    /// Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut s = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut s, &self.registry);
        s
    }
}

/// The process-wide metrics.
pub fn get() -> &'static Metrics {
    static M: OnceLock<Metrics> = OnceLock::new();
    M.get_or_init(Metrics::new)
}
