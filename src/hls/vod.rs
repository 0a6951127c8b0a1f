//! Offline mode (`hlsd segment INPUT.h264 OUTDIR/`): a VOD HLS stream written to disk as fast as
//! the machine allows, in constant memory.
//!
//! Reads the Annex-B file in fixed chunks through `h264::AuParser`, stamps frames on the nominal
//! frame grid, runs the same [`Segmenter`] as the live origin and writes each segment as soon as
//! it is complete (the concatenation of its parts), then the playlist. Every file is written to a
//! temporary name and renamed, so a crash never leaves a partial file under a final name.

use super::playlist::{names, render_vod};
use super::segmenter::{Output, Segmenter, SegmenterConfig};
use crate::h264::{AuParser, H264Error, ParsedItem};
use crate::media::{SourceEvent, TIMESCALE};
use crate::source::clock::GridClock;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

/// Errors of the offline segmenter; each names the file involved.
#[derive(Debug, thiserror::Error)]
pub enum VodError {
    #[error("cannot read {path}: {err}")]
    Read { path: PathBuf, err: std::io::Error },
    #[error("cannot write {path}: {err}")]
    Write { path: PathBuf, err: std::io::Error },
    #[error("{path}: {err}")]
    H264 { path: PathBuf, err: H264Error },
    #[error("{path}: no H.264 pictures found (is it an Annex-B .h264 file?)")]
    Empty { path: PathBuf },
    #[error("muxing failed: {0}")]
    Mux(#[from] crate::fmp4::MuxError),
}

/// Summary of an offline run.
#[derive(Debug, Clone)]
pub struct VodSummary {
    pub frames: u64,
    pub segments: usize,
    pub bytes: u64,
    pub target_duration: u32,
}

/// Writes `data` to `path` atomically (temporary file in the same directory, fsync, rename).
pub fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!(
        "{}.tmp",
        path.extension().and_then(|e| e.to_str()).unwrap_or("")
    ));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(data)?;
    f.sync_data()?;
    drop(f);
    std::fs::rename(&tmp, path)
}

/// Segments `input` into `outdir`. `frame_duration` overrides the SPS frame rate (ticks).
pub fn segment_file(
    input: &Path,
    outdir: &Path,
    cfg: SegmenterConfig,
    frame_duration: Option<u32>,
) -> Result<VodSummary, VodError> {
    let rerr = |err| VodError::Read { path: input.to_owned(), err };
    let werr = |path: &Path, err| VodError::Write { path: path.to_owned(), err };
    std::fs::create_dir_all(outdir).map_err(|e| werr(outdir, e))?;
    let mut file = std::fs::File::open(input).map_err(rerr)?;
    let mut parser = AuParser::new(frame_duration);
    let mut seg = Segmenter::new(cfg.clone());
    let run = "vod";
    let mut outs = Vec::new();
    let mut current: Vec<u8> = Vec::new();
    let mut listed: Vec<(u64, u64, bool, u32)> = Vec::new();
    let mut open: Option<(u64, bool, u32)> = None;
    let mut frames = 0u64;
    let mut bytes = 0u64;
    let mut clock = GridClock::new(SystemTime::now());
    let mut buf = vec![0u8; 256 * 1024];
    let mut eof = false;
    let mut last_progress = Instant::now();
    let total = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut read_total = 0u64;
    while !eof {
        let n = file.read(&mut buf).map_err(rerr)?;
        let res = if n == 0 {
            eof = true;
            parser.flush()
        } else {
            read_total += n as u64;
            parser.push(&buf[..n])
        };
        res.map_err(|err| VodError::H264 { path: input.to_owned(), err })?;
        while let Some(item) = parser.next_item() {
            frames += matches!(item, ParsedItem::Au { .. }) as u64;
            let ev = clock.event(item);
            seg.push(ev, &mut outs)?;
        }
        if eof {
            seg.push(SourceEvent::End, &mut outs)?;
        }
        for o in outs.drain(..) {
            match o {
                Output::Init { id, data, .. } => {
                    let p = outdir.join(names::init(run, id));
                    write_atomic(&p, &data).map_err(|e| werr(&p, e))?;
                }
                Output::SegmentStart { msn, discontinuity, init_id, .. } => {
                    open = Some((msn, discontinuity, init_id));
                    current.clear();
                }
                Output::Part(p) => current.extend_from_slice(&p.data),
                Output::SegmentEnd { msn, duration } => {
                    let p = outdir.join(names::segment(run, msn));
                    write_atomic(&p, &current).map_err(|e| werr(&p, e))?;
                    bytes += current.len() as u64;
                    let (_, disc, init) = open.take().unwrap_or((msn, false, 0));
                    listed.push((msn, duration, disc, init));
                }
                Output::End => {}
            }
        }
        if last_progress.elapsed() > Duration::from_secs(2) {
            last_progress = Instant::now();
            tracing::info!(read_mb = read_total / 1_000_000, total_mb = total / 1_000_000, frames, "segmenting");
        }
    }
    if listed.is_empty() {
        return Err(VodError::Empty { path: input.to_owned() });
    }
    let longest = listed.iter().map(|s| s.1).max().unwrap_or(0) as f64 / TIMESCALE as f64;
    let cfg_secs = cfg.segment_target as f64 / TIMESCALE as f64;
    let target = cfg_secs.ceil().max((longest - 0.001).ceil()).max(1.0) as u32;
    let p = outdir.join(names::MULTIVARIANT);
    write_atomic(&p, render_vod(target, &listed, run).as_bytes()).map_err(|e| werr(&p, e))?;
    Ok(VodSummary { frames, segments: listed.len(), bytes, target_duration: target })
}
