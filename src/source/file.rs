//! `file:PATH`: an Annex-B file replayed as a live stream.
//!
//! Frames are stamped on the nominal frame grid (SPS VUI or `--framerate`) and, unless
//! `--no-pace`, released no earlier than their media time after the start, so the file plays in
//! real time. With `--loop` the file restarts at its end and the timeline simply continues
//! (every loop starts with the file's first IDR).

use super::{SourceConfig, SourceError};
use crate::h264::{AuParser, ParsedItem};
use super::clock::GridClock;
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
    let start = Instant::now();
    let mut clock = GridClock::new(SystemTime::now());
    let mut frames = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let mut file = tokio::fs::File::open(path).await.map_err(io)?;
        let mut parser = AuParser::new(frame_duration);
        let frames_before = frames;
        loop {
            let n = file.read(&mut buf).await.map_err(io)?;
            let res = if n == 0 { parser.flush() } else { parser.push(&buf[..n]) };
            res.map_err(|err| SourceError::H264 { source_name: name.clone(), err })?;
            while let Some(item) = parser.next_item() {
                if let ParsedItem::Au { .. } = item {
                    frames += 1;
                    if cfg.pace {
                        tokio::time::sleep_until((start + clock.next_offset()).into()).await;
                    }
                }
                let ev = clock.event(item);
                if tx.send(ev).await.is_err() {
                    return Ok(());
                }
            }
            if n == 0 {
                break;
            }
        }
        if frames == frames_before {
            return Err(match parser.end_error() {
                Some(err) => SourceError::H264 { source_name: name, err },
                None => SourceError::Empty { source_name: name },
            });
        }
        if !cfg.looped {
            tracing::info!(source = %name, frames, "file ended");
            let _ = tx.send(SourceEvent::End).await;
            return Ok(());
        }
        tracing::debug!(source = %name, frames, "looping");
    }
}
