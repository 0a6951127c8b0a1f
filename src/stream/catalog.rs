//! The set of streams being served, as the HTTP layer reads it.
//!
//! `app` publishes an `Arc<Catalog>` through a `watch` channel and replaces it whole when a
//! reload adds, removes or restarts streams; a stream that did not change keeps its
//! `Arc<StreamEntry>` (and with it its poster cache), so its viewers notice nothing. Each
//! rendition's live window state comes from its own pipeline's `watch` channel.

use crate::hls::window::Snapshot;
use bytes::Bytes;
use std::sync::Arc;
use tokio::sync::watch;

/// How streams map to URLs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// No `[[stream]]` tables: the one stream is served at the root (`/stream.m3u8`, `/`).
    Root,
    /// `[[stream]]` tables: each stream under its name (`/NAME/stream.m3u8`, `/NAME/`); `/` is
    /// the index page.
    Named,
}

/// Every stream being served, in configuration order.
#[derive(Debug)]
pub struct Catalog {
    pub layout: Layout,
    pub streams: Vec<Arc<StreamEntry>>,
}

/// One stream: its renditions (the first is the default one) and its poster cache.
#[derive(Debug)]
pub struct StreamEntry {
    /// URL-safe, unique; the implicit stream of the root layout is named [`DEFAULT_STREAM`].
    pub name: String,
    pub renditions: Vec<RenditionEntry>,
    /// Last poster (`/snapshot.jpg`) made from the first rendition: (keyframe part number, JPEG).
    pub poster: tokio::sync::Mutex<Option<(u64, Bytes)>>,
}

/// One rendition of a stream: an encoder's output with its own live window.
#[derive(Debug, Clone)]
pub struct RenditionEntry {
    /// URL-safe, unique within the stream.
    pub name: String,
    pub snapshots: watch::Receiver<Arc<Snapshot>>,
}

/// Name of the implicit stream when no `[[stream]]` tables are configured (metrics, logs).
pub const DEFAULT_STREAM: &str = "default";

impl Catalog {
    /// The stream named `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<StreamEntry>> {
        self.streams.iter().find(|s| s.name == name)
    }

    /// A root-layout catalog of one stream with one rendition (tests, `hlsd` without streams).
    pub fn single(snapshots: watch::Receiver<Arc<Snapshot>>) -> Catalog {
        Catalog {
            layout: Layout::Root,
            streams: vec![Arc::new(StreamEntry::new(
                DEFAULT_STREAM.to_string(),
                vec![RenditionEntry { name: DEFAULT_STREAM.to_string(), snapshots }],
            ))],
        }
    }
}

impl StreamEntry {
    pub fn new(name: String, renditions: Vec<RenditionEntry>) -> StreamEntry {
        StreamEntry { name, renditions, poster: Default::default() }
    }
}
