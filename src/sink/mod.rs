//! Outputs beside the HTTP origin: each sink gets the live window's snapshots (complete
//! segments, playlists) and/or the source's events (frames, formats, discontinuities).
//!
//! Sinks never block the live path: snapshots come through a `watch` channel (a slow sink just
//! sees a later snapshot), events through a bounded `broadcast` channel (a slow sink is told how
//! many events it lost and must resynchronise, e.g. at the next IDR).
//! On shutdown the window publishes a final snapshot with `ended` set; sinks finish their work
//! (final playlist with EXT-X-ENDLIST) and return, and `app` waits for them for a bounded time.

pub mod rtmp;
pub mod storage;

use crate::config::Config;
use crate::hls::window::Snapshot;
use crate::media::SourceEvent;
use std::sync::Arc;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

/// Events buffered per sink before a slow one starts losing them.
pub const EVENT_BUFFER: usize = 512;

/// What a sink can read.
#[derive(Clone)]
pub struct SinkInputs {
    pub snapshots: watch::Receiver<Arc<Snapshot>>,
    pub events: broadcast::Sender<SourceEvent>,
}

/// Starts every configured sink. Errors are configuration errors (reported before serving).
pub fn spawn_all(cfg: &Config, inputs: &SinkInputs) -> anyhow::Result<Vec<JoinHandle<()>>> {
    let mut handles = rtmp::spawn(cfg, inputs)?;
    handles.extend(storage::spawn(cfg, inputs)?);
    Ok(handles)
}
