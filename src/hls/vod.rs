//! Offline mode (`hlsd segment INPUT.h264 OUTDIR/`): a VOD HLS stream written to disk as fast as
//! the machine allows, in constant memory.
//!
//! Reads the Annex-B or MPEG-TS file in fixed chunks through `source::ingest` (Annex-B frames
//! stamped on the nominal frame grid, TS frames with their own DTS/PTS), runs the same [`Segmenter`] as the live origin and writes each segment as soon as
//! it is complete (the concatenation of its parts), then the playlist. Every file is written to a
//! temporary name and renamed, so a crash never leaves a partial file under a final name.

use super::playlist::{names, render_vod};
use super::segmenter::{Output, Segmenter, SegmenterConfig};
use crate::media::{SourceEvent, TIMESCALE};
use crate::source::clock::GridClock;
use crate::source::ingest::{Input, InputConfig, InputError, Stamping};
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
    Input { path: PathBuf, err: InputError },
    #[error("{path}: no H.264 pictures found (is it an Annex-B .h264 or an MPEG-TS file?)")]
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

/// Temporary name beside `path` (same directory, so the rename is atomic).
fn tmp_path(path: &Path) -> PathBuf {
    path.with_extension(format!("{}.tmp", path.extension().and_then(|e| e.to_str()).unwrap_or("")))
}

/// Writes `data` to `path` atomically (temporary file in the same directory, fsync, rename).
pub fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let tmp = tmp_path(path);
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(data)?;
    f.sync_data()?;
    drop(f);
    std::fs::rename(&tmp, path)
}

/// A segment file being written part by part under a temporary name.
struct SegmentFile {
    tmp: PathBuf,
    path: PathBuf,
    file: std::io::BufWriter<std::fs::File>,
    bytes: u64,
}

impl SegmentFile {
    fn create(path: PathBuf) -> std::io::Result<Self> {
        let tmp = tmp_path(&path);
        let file = std::io::BufWriter::with_capacity(256 * 1024, std::fs::File::create(&tmp)?);
        Ok(SegmentFile { tmp, path, file, bytes: 0 })
    }

    fn write(&mut self, data: &[u8]) -> std::io::Result<()> {
        self.bytes += data.len() as u64;
        self.file.write_all(data)
    }

    /// Renames into place. Offline output is not fsynced file by file (that doubles the cost);
    /// the directory is synced once at the end, and a crash never leaves a partial file under a
    /// final name either way.
    fn finish(self) -> std::io::Result<(PathBuf, u64)> {
        self.file.into_inner().map_err(|e| e.into_error())?;
        std::fs::rename(&self.tmp, &self.path)?;
        Ok((self.path, self.bytes))
    }
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
    let icfg = InputConfig { frame_duration, ts_program: None, live: false };
    let mut parser = Input::new(icfg, Stamping::Grid(GridClock::new(SystemTime::now())));
    let mut seg = Segmenter::new(cfg.clone());
    let run = "vod";
    let mut outs = Vec::new();
    let mut current: Option<SegmentFile> = None;
    let mut listed: Vec<(u64, u64, bool, u32)> = Vec::new();
    let mut open: Option<(u64, bool, u32)> = None;
    let mut frames = 0u64;
    let mut bytes = 0u64;
    let mut buf = vec![0u8; 256 * 1024];
    let mut eof = false;
    let mut last_progress = Instant::now();
    let total = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut read_total = 0u64;
    while !eof {
        let n = file.read(&mut buf).map_err(rerr)?;
        let res = if n == 0 {
            eof = true;
            parser.end(Instant::now())
        } else {
            read_total += n as u64;
            parser.push(&buf[..n], Instant::now())
        };
        res.map_err(|err| VodError::Input { path: input.to_owned(), err })?;
        while let Some(ev) = parser.next_event() {
            frames += matches!(ev, SourceEvent::Frame(_)) as u64;
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
                    let p = outdir.join(names::segment(run, msn));
                    current = Some(SegmentFile::create(p.clone()).map_err(|e| werr(&p, e))?);
                }
                Output::Part(part) => {
                    if let Some(f) = current.as_mut() {
                        f.write(&part.data).map_err(|e| werr(&f.tmp, e))?;
                    }
                }
                Output::SegmentEnd { msn, duration } => {
                    if let Some(f) = current.take() {
                        let p = f.path.clone();
                        let (_, n) = f.finish().map_err(|e| werr(&p, e))?;
                        bytes += n;
                    }
                    let (_, disc, init) = open.take().unwrap_or((msn, false, 0));
                    listed.push((msn, duration, disc, init));
                }
                Output::IdrOverdue { .. } | Output::End => {}
            }
        }
        if last_progress.elapsed() > Duration::from_secs(2) {
            last_progress = Instant::now();
            tracing::info!(read_mb = read_total / 1_000_000, total_mb = total / 1_000_000, frames, "segmenting");
        }
    }
    if listed.is_empty() {
        return Err(match parser.end_error() {
            Some(err) => VodError::Input { path: input.to_owned(), err },
            None => VodError::Empty { path: input.to_owned() },
        });
    }
    let longest = listed.iter().map(|s| s.1).max().unwrap_or(0) as f64 / TIMESCALE as f64;
    let cfg_secs = cfg.segment_target as f64 / TIMESCALE as f64;
    let target = cfg_secs.ceil().max((longest - 0.001).ceil()).max(1.0) as u32;
    let p = outdir.join(names::MULTIVARIANT);
    write_atomic(&p, render_vod(target, &listed, run).as_bytes()).map_err(|e| werr(&p, e))?;
    // One fsync of the directory makes every rename durable.
    std::fs::File::open(outdir).and_then(|d| d.sync_all()).map_err(|e| werr(outdir, e))?;
    Ok(VodSummary { frames, segments: listed.len(), bytes, target_duration: target })
}
