//! `file:PATH`: an Annex-B or MPEG-TS file replayed as a live stream.
//!
//! Annex-B frames are stamped on the nominal frame grid (SPS VUI or `--framerate`); MPEG-TS
//! frames keep the file's own DTS/PTS spacing ([`super::ts`]). Unless `--no-pace`, each frame
//! is released no earlier than its media time after the start, so the file plays in real time.
//! With `--loop` the file restarts at its end and the timeline simply continues (every loop
//! starts with the file's first IDR; in a TS file the timestamps step back there, which is an
//! EXT-X-DISCONTINUITY).

use super::clock::GridClock;
use super::ingest::{Input, InputConfig, Stamping};
use super::{SourceConfig, SourceError};
use crate::media::SourceEvent;
use std::path::Path;
use std::time::{Instant, SystemTime};
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

pub async fn run(
    path: &Path,
    cfg: &SourceConfig,
    frame_duration: Option<u32>,
    tx: mpsc::Sender<SourceEvent>,
) -> Result<(), SourceError> {
    let name = format!("file:{}", path.display());
    let io = |err| SourceError::Io { source_name: name.clone(), err };
    let bad = |err| SourceError::Input { source_name: name.clone(), err };
    let start = Instant::now();
    let icfg = InputConfig { frame_duration, ts_program: cfg.ts_program, live: cfg.pace };
    let mut input = Input::new(icfg, Stamping::Grid(GridClock::new(SystemTime::now())));
    let mut first_dts = None;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let mut file = tokio::fs::File::open(path).await.map_err(io)?;
        let frames_before = input.frames();
        loop {
            let n = file.read(&mut buf).await.map_err(io)?;
            let res = if n == 0 { input.end(Instant::now()) } else { input.push(&buf[..n], Instant::now()) };
            res.map_err(bad)?;
            while let Some(ev) = input.next_event() {
                if let (SourceEvent::Frame(f), true) = (&ev, cfg.pace) {
                    let first = *first_dts.get_or_insert(f.dts);
                    let due = crate::media::ticks_to_duration(f.dts.saturating_sub(first));
                    tokio::time::sleep_until((start + due).into()).await;
                }
                if tx.send(ev).await.is_err() {
                    return Ok(());
                }
            }
            if n == 0 {
                break;
            }
        }
        if input.frames() == frames_before {
            return Err(match input.end_error() {
                Some(err) => bad(err),
                None => SourceError::Empty { source_name: name },
            });
        }
        if !cfg.looped {
            tracing::info!(source = %name, frames = input.frames(), "file ended");
            let _ = tx.send(SourceEvent::End).await;
            return Ok(());
        }
        tracing::debug!(source = %name, frames = input.frames(), "looping");
    }
}
