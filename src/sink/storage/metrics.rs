//! Metrics of the storage outputs, registered into the process registry by `crate::metrics`.
//! Every series carries the output's label (`s3://bucket/prefix/` or `dir:/path`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutputLabels {
    pub output: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub output: String,
    /// put, head, delete
    pub op: &'static str,
    /// ok, failed, retried (an attempt after a failure of the same object)
    pub result: &'static str,
}

pub struct StorageMetrics {
    pub requests: Family<RequestLabels, Counter>,
    pub dropped_segments: Family<OutputLabels, Counter>,
    pub queue_depth: Family<OutputLabels, Gauge>,
    pub bytes: Family<OutputLabels, Counter>,
    /// Duration of successful puts.
    pub upload_seconds: Histogram,
    /// Segment complete in the live window → segment object stored.
    pub segment_delay_seconds: Histogram,
}

impl Default for StorageMetrics {
    fn default() -> Self {
        let buckets = [
            0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ];
        StorageMetrics {
            requests: Family::default(),
            dropped_segments: Family::default(),
            queue_depth: Family::default(),
            bytes: Family::default(),
            upload_seconds: Histogram::new(buckets),
            segment_delay_seconds: Histogram::new(buckets),
        }
    }
}

impl StorageMetrics {
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "storage_requests",
            "Store requests of the outputs by operation and result",
            self.requests.clone(),
        );
        r.register(
            "storage_dropped_segments",
            "Segments dropped because the store fell behind",
            self.dropped_segments.clone(),
        );
        r.register(
            "storage_queue_depth",
            "Segments waiting to be stored",
            self.queue_depth.clone(),
        );
        r.register("storage_bytes", "Bytes stored", self.bytes.clone());
        r.register(
            "storage_upload_seconds",
            "Duration of successful uploads",
            self.upload_seconds.clone(),
        );
        r.register(
            "storage_segment_delay_seconds",
            "Delay from a segment completing to its object being stored",
            self.segment_delay_seconds.clone(),
        );
    }
}
