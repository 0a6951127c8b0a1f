//! Publishing the live stream as files: to a local directory (for nginx, Caddy or any static
//! server) and to S3-compatible object storage (AWS S3, MinIO, R2, B2, Garage, Ceph RGW...), so
//! a CDN can carry audiences a Pi cannot.
//!
//! Data comes from the live window's snapshots (`SinkInputs::snapshots`); each output runs one
//! [`publisher`] task that uploads init segments, whole segments (optionally parts) and then the
//! playlists that name them, into a [`store::Store`]. Nothing here can slow the live path or the
//! HTTP origin: a slow store only makes its publisher see later snapshots, and its queue is
//! bounded.
//!
//! - [`config`]: `--output dir:PATH | s3://BUCKET/PREFIX`, `[[output]]` tables.
//! - [`store`]: the `Store` trait; memory, disk and S3 implementations; the shared test suite.
//! - [`publisher`]: ordering, retries, retention, the published playlist's consistency.
//! - [`playlist`]: the static media playlist (pure, golden-tested).

pub mod config;
pub mod metrics;
pub mod playlist;
pub mod publisher;
pub mod store;

use crate::config::Config;
use config::{OutputSpec, Target};
use publisher::PublisherConfig;
use std::sync::Arc;
use store::{DiskStore, S3Store};
use tokio::task::JoinHandle;

/// Errors setting an output up (reported before serving).
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("output {label}: {msg}")]
    Setup { label: String, msg: String },
}

/// Starts one publisher per configured output.
pub fn spawn(cfg: &Config, inputs: &super::SinkInputs) -> Result<Vec<JoinHandle<()>>, OutputError> {
    let metrics = storage_metrics();
    let mut handles = Vec::new();
    for entry in &cfg.output {
        let spec = &entry.0;
        let label = spec.label();
        let err = |msg: String| OutputError::Setup {
            label: label.clone(),
            msg: crate::secret::mask(&msg),
        };
        let target = spec.target().map_err(err)?;
        let pcfg = publisher_config(spec, &label, cfg.window);
        let snapshots = inputs.snapshots.clone();
        match target {
            Target::Dir { path, prefix } => {
                std::fs::create_dir_all(path.join(&prefix))
                    .map_err(|e| err(format!("cannot create {}: {e}", path.display())))?;
                let store = DiskStore::new(path, spec.fsync.unwrap_or(true));
                match store.remove_temporaries(&prefix) {
                    Ok(0) => {}
                    Ok(n) => {
                        tracing::info!(output = %label, files = n, "removed temporary files left by an earlier crash")
                    }
                    Err(e) => {
                        return Err(err(format!("cannot clean {}: {e}", store.root().display())))
                    }
                }
                tracing::info!(output = %label, retention = ?pcfg.retention, parts = pcfg.parts, "publishing to a directory");
                handles.push(tokio::spawn(publisher::run(
                    Arc::new(store),
                    PublisherConfig { prefix, ..pcfg },
                    metrics.clone(),
                    snapshots,
                )));
            }
            Target::S3 { bucket, prefix } => {
                let settings = spec.s3_settings(&bucket, cfg.s3_endpoint.as_deref());
                let store = S3Store::new(&settings).map_err(|e| err(e.to_string()))?;
                tracing::info!(output = %label, endpoint = %crate::secret::mask(settings.endpoint.as_deref().unwrap_or("AWS")),
                    path_style = settings.path_style, retention = ?pcfg.retention, parts = pcfg.parts, "publishing to S3");
                handles.push(tokio::spawn(publisher::run(
                    Arc::new(store),
                    PublisherConfig { prefix, ..pcfg },
                    metrics.clone(),
                    snapshots,
                )));
            }
        }
    }
    Ok(handles)
}

fn publisher_config(spec: &OutputSpec, label: &str, window: usize) -> PublisherConfig {
    let mut p = PublisherConfig::new(label.to_string(), String::new(), window);
    p.retention = spec.retention();
    p.parts = spec.parts.unwrap_or(false);
    p.concurrency = spec.concurrency();
    p.queue = spec.queue();
    p
}

/// The process-wide storage metrics (registered in `crate::metrics`).
pub fn storage_metrics() -> Arc<metrics::StorageMetrics> {
    crate::metrics::get().storage.clone()
}

#[cfg(test)]
mod tests;
