//! One output's publisher: turns the live window's snapshots into store operations, in an order
//! that keeps the published stream consistent whatever the store does.
//!
//! [`Publisher`] is the state machine (no I/O: it is told what happened and says which requests
//! to start); [`run`] drives it with a [`Store`], at most `concurrency` requests at a time.
//!
//! Guarantees (README "Publishing to disk and S3"):
//! - An object is named by a playlist only once this publisher has seen it stored *in the
//!   current epoch*. Every failed request starts a new epoch, because a store that failed may
//!   have lost data (a restarted server without persistence). Afterwards, objects not yet
//!   published are put again (their bytes are still held), published segments are checked with
//!   HEAD, and any that vanished are dropped from the head of the playlist.
//! - Segments are published in MSN order; a playlist is re-rendered only when what it lists
//!   changed, and puts of the same playlist never overlap, so a late response cannot bring back
//!   an older version.
//! - Objects that left the playlist are deleted only after the playlist without them was stored
//!   and a grace period (the playlist's duration plus one target duration) has passed.
//! - While the store is unreachable, requests back off exponentially with jitter (one schedule
//!   for the whole output, so recovery is noticed within `backoff_max`); at most `queue`
//!   complete segments wait, the oldest are dropped beyond that (warning, metric), and the first
//!   segment published after a gap carries EXT-X-DISCONTINUITY.
//!
//! Files, by role: [`state`] (what the publisher knows about each object), [`ingest`] (taking
//! snapshots in, bounding the queue), [`jobs`] (store requests: queueing, starting, retrying,
//! backoff), [`results`] (applying what a request returned), [`advance`] (what becomes
//! published, trimmed and deleted), [`playlists`] (when the playlists are rendered and put);
//! this file holds the settings and the driver loop, [`run`].

mod advance;
mod ingest;
mod jobs;
mod playlists;
mod results;
mod state;

pub use jobs::{Job, Op, Outcome};
pub use state::Publisher;

use super::config::Retention;
use super::metrics::StorageMetrics;
use super::store::Store;
use crate::hls::window::Snapshot;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// Settings of one publisher.
#[derive(Debug, Clone)]
pub struct PublisherConfig {
    /// For logs and metric labels.
    pub label: String,
    /// Key prefix, empty or ending in `/`.
    pub prefix: String,
    pub retention: Retention,
    /// Publish LL-HLS parts too.
    pub parts: bool,
    /// Segments listed with [`Retention::Window`].
    pub window: usize,
    pub concurrency: usize,
    /// Complete segments that may wait for the store.
    pub queue: usize,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// After the stream ended: how long to try to publish the final playlist.
    pub finish_timeout: Duration,
}

impl PublisherConfig {
    pub fn new(label: String, prefix: String, window: usize) -> Self {
        PublisherConfig {
            label,
            prefix,
            retention: Retention::Window,
            parts: false,
            window,
            concurrency: super::config::DEFAULT_CONCURRENCY,
            queue: super::config::DEFAULT_QUEUE,
            backoff_min: Duration::from_millis(200),
            backoff_max: Duration::from_secs(4),
            finish_timeout: Duration::from_secs(8),
        }
    }
}

/// Drives a publisher with `store` until the stream ended and the final playlist is published.
pub async fn run<S: Store>(
    store: Arc<S>,
    cfg: PublisherConfig,
    metrics: Arc<StorageMetrics>,
    mut snapshots: watch::Receiver<Arc<Snapshot>>,
) {
    let label = cfg.label.clone();
    let mut p = Publisher::new(cfg, metrics);
    let mut jobs: JoinSet<(u64, Outcome, Duration)> = JoinSet::new();
    let first = snapshots.borrow_and_update().clone();
    p.ingest(&first, Instant::now());
    let mut open = true;
    loop {
        let now = Instant::now();
        for job in p.start(now) {
            let key = p.job_key(&job);
            let store = store.clone();
            jobs.spawn(async move {
                let t0 = Instant::now();
                let out = match job.op {
                    Op::Put(body, meta) => Outcome::Put(store.put(&key, body, &meta).await),
                    Op::Exists => Outcome::Exists(store.exists(&key).await),
                    Op::Delete => Outcome::Delete(store.delete(&key).await),
                };
                (job.id, out, t0.elapsed())
            });
        }
        if p.finished(Instant::now()) {
            break;
        }
        let wake = p.next_wakeup(Instant::now());
        tokio::select! {
            r = snapshots.changed(), if open => match r {
                Ok(()) => {
                    let s = snapshots.borrow_and_update().clone();
                    p.ingest(&s, Instant::now());
                }
                Err(_) => {
                    open = false;
                    p.source_closed(Instant::now());
                }
            },
            Some(r) = jobs.join_next(), if !jobs.is_empty() => match r {
                Ok((id, out, took)) => p.complete(id, out, took, Instant::now()),
                Err(e) => tracing::error!(output = %label, error = %e, "store request task failed"),
            },
            _ = tokio::time::sleep_until(wake.unwrap_or_else(Instant::now)), if wake.is_some() => p.wake(Instant::now()),
        }
    }
    tracing::info!(output = %label, "output finished");
}
