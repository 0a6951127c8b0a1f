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
    pub http_requests: Family<HttpLabels, Counter>,
    pub http_blocked: Gauge,
    pub http_connections: Gauge,
    /// Last byte of a frame read → its part readable in the window.
    pub origin_delay: Histogram,
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
            http_requests: Family::default(),
            http_blocked: Gauge::default(),
            http_connections: Gauge::default(),
            origin_delay: Histogram::new(
                [0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25].into_iter(),
            ),
            registry: Registry::default(),
        };
        registry.register("frames", "Frames received from the source", m.frames.clone());
        registry.register("frames_dropped", "Frames dropped, by reason", m.frames_dropped.clone());
        registry.register("parts", "CMAF parts published", m.parts.clone());
        registry.register("segments", "Segments completed", m.segments.clone());
        registry.register("media_bytes", "Bytes of parts published", m.media_bytes.clone());
        registry.register("discontinuities", "Source restarts and format changes", m.discontinuities.clone());
        registry.register("overlong_segments", "Segments longer than TARGETDURATION", m.overlong_segments.clone());
        registry.register("http_requests", "HTTP responses by route and status", m.http_requests.clone());
        registry.register("http_blocked_requests", "Requests currently held (blocking reload, preload hint)", m.http_blocked.clone());
        registry.register("http_connections", "Open client connections", m.http_connections.clone());
        registry.register(
            "origin_delay_seconds",
            "Delay from a frame's last byte read to its part being readable",
            m.origin_delay.clone(),
        );
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
