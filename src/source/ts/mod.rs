//! MPEG-TS input (ISO/IEC 13818-1): transport stream bytes → H.264 access units with the
//! encoder's own timestamps, as [`SourceEvent`]s.
//!
//! Bytes come from a byte-stream source once [`crate::source::ingest`] has recognised the 0x47
//! sync pattern (or from `udp://`, which is always TS). [`sync`] finds and keeps packet
//! alignment, [`demux`] (mpeg2ts-reader) reads PAT/PMT and reassembles the PES packets of the
//! selected streams, each video PES goes through the same Annex-B access-unit parser as raw
//! H.264 (`h264::AuParser`, here with B slices allowed) and [`clock`] maps its DTS/PTS to the
//! media timeline and wall clock. Output goes to the segmenter like any source's.
//!
//! Damage is survived: lost sync is re-found (bytes counted), a continuity-counter error drops
//! the damaged PES and, for video, the pictures up to the next IDR (counted in
//! `hlsd_ts_continuity_errors_total`). Content hlsd cannot use is refused by name: no H.264 in
//! the program (HEVC, MPEG-2 video, ...), scrambled packets, or no PAT/PMT at all. Audio other
//! than ADTS AAC is logged once and ignored (the video is still served).

pub mod adts;
pub mod clock;
pub mod demux;
pub mod sync;

use crate::h264::{AuParser, H264Error, ParsedItem};
use crate::media::{Frame, SourceEvent};
use crate::metrics::ReasonLabels;
use demux::{Kind, TsCtx};
use mpeg2ts_reader::demultiplex::Demultiplex;
use std::collections::VecDeque;
use std::time::{Instant, SystemTime};

/// Input read without finding a PMT with H.264 video before it is refused (8 MiB, as for
/// Annex-B input without parameter sets).
const NO_VIDEO_LIMIT: u64 = 8 * 1024 * 1024;
/// Scrambled packets on the selected program before anything was decoded: the stream is
/// encrypted (conditional access), not damaged.
const SCRAMBLED_LIMIT: u64 = 64;

/// Why a transport stream cannot be used. Messages name what was found and what to do.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TsError {
    #[error(
        "the MPEG-TS program has no H.264 video (found: {found}); hlsd needs H.264 (stream type \
         0x1b): re-encode with ffmpeg -c:v libx264 (or h264_v4l2m2m), or rpicam-vid --codec libav \
         --libav-video-codec h264"
    )]
    NoVideo { found: String },
    #[error("MPEG-TS program {want} not in the stream (programs found: {found}); check --ts-program")]
    NoProgram { want: u16, found: String },
    #[error(
        "no PAT/PMT with an H.264 stream in the first {0} bytes of MPEG-TS input: is it a complete \
         transport stream (ffmpeg -f mpegts)?"
    )]
    NoPmt(u64),
    #[error(
        "the MPEG-TS packets are scrambled (encrypted, transport_scrambling_control != 0): hlsd \
         cannot decrypt them; feed it the clear stream"
    )]
    Scrambled,
    #[error("{0}")]
    H264(#[from] H264Error),
}

/// Human name of a PMT stream type (for errors and logs).
pub fn stream_type_name(t: u8) -> String {
    let name = match t {
        0x01 => "MPEG-1 video",
        0x02 => "MPEG-2 video",
        0x03 | 0x04 => "MPEG audio (MP2/MP3)",
        0x06 => "private data (often AC-3, E-AC-3, Opus or subtitles)",
        0x0f => "AAC (ADTS)",
        0x10 => "MPEG-4 Part 2 video",
        0x11 => "AAC (LATM)",
        0x15 => "timed metadata (ID3)",
        0x1b => "H.264",
        0x24 => "HEVC (H.265)",
        0x81 => "AC-3",
        0x87 => "E-AC-3",
        _ => "unknown",
    };
    format!("{name} (stream type {t:#04x})")
}

/// The MPEG-TS push parser. See the module docs.
pub struct TsIngest {
    sync: sync::Aligner,
    demux: Demultiplex<TsCtx>,
    ctx: TsCtx,
    want_program: Option<u16>,
    au: AuParser,
    clock: clock::TsClock,
    out: VecDeque<SourceEvent>,
    bytes: u64,
    /// Frames handed out.
    pub frames: u64,
    /// Drop pictures until the next IDR (start, or after damage).
    wait_idr: bool,
    /// Unsupported streams of the program already reported.
    reported_others: usize,
    cc_reported: u64,
    /// Audio PES packets seen (audio is not muxed yet).
    pub audio_packets: u64,
    /// Nominal frame duration of the current format (ticks).
    clock_nominal: u32,
    /// Configuration of the AAC stream, once its first frame was read.
    pub audio: Option<adts::AacConfig>,
}

impl TsIngest {
    /// `frame_duration` overrides the SPS frame rate (`--framerate`); `live` chooses how capture
    /// time re-anchors ([`clock`]).
    pub fn new(frame_duration: Option<u32>, program: Option<u16>, live: bool) -> Self {
        let mut ctx = TsCtx::new(program);
        let demux = Demultiplex::new(&mut ctx);
        TsIngest {
            sync: sync::Aligner::default(),
            demux,
            ctx,
            want_program: program,
            au: AuParser::for_container(frame_duration, 3000),
            clock: clock::TsClock::new(live),
            out: VecDeque::new(),
            bytes: 0,
            frames: 0,
            wait_idr: true,
            reported_others: 0,
            cc_reported: 0,
            audio_packets: 0,
            clock_nominal: 3000,
            audio: None,
        }
    }

    /// Feeds bytes that arrived at `arrived`; events become available from [`Self::next_event`].
    pub fn push(&mut self, chunk: &[u8], arrived: Instant) -> Result<(), TsError> {
        self.bytes += chunk.len() as u64;
        let pids = (self.ctx.video_pid, self.ctx.audio_pid);
        let batch = self.sync.push(chunk, pids);
        if batch.video_discontinuity {
            self.clock.mark_discontinuity();
        }
        if !batch.packets.is_empty() {
            self.demux.push(&mut self.ctx, &batch.packets);
        }
        self.drain(arrived)?;
        self.check()
    }

    /// The input went idle: the video PES being received is complete.
    pub fn flush(&mut self, arrived: Instant) -> Result<(), TsError> {
        self.ctx.flush_video();
        self.drain(arrived)
    }

    /// Video PES packets that continued after [`Self::flush`] completed them.
    pub fn cut_frames(&self) -> u64 {
        self.ctx.video_cut
    }

    pub fn next_event(&mut self) -> Option<SourceEvent> {
        self.out.pop_front()
    }

    /// At the end of an input that produced no frames: why.
    pub fn end_error(&self) -> Option<TsError> {
        if self.frames > 0 {
            return None;
        }
        if let Err(e) = self.check() {
            return Some(e);
        }
        if let Some(e) = self.au.end_error() {
            return Some(e.into());
        }
        Some(match (self.ctx.pmt_seen, self.ctx.video_pid) {
            (true, None) => TsError::NoVideo { found: self.found() },
            (true, Some(_)) => return None,
            _ => TsError::NoPmt(self.bytes),
        })
    }

    fn found(&self) -> String {
        let mut names: Vec<String> = self.ctx.other_streams.iter().map(|(t, pid)| format!("{} on PID {pid}", stream_type_name(*t))).collect();
        if self.ctx.audio_pid.is_some() {
            names.push("AAC (ADTS)".into());
        }
        if names.is_empty() {
            "no streams".into()
        } else {
            names.join(", ")
        }
    }

    /// Errors that stop the input, and one-time reports of ignored streams.
    fn check(&self) -> Result<(), TsError> {
        if let Some(want) = self.want_program {
            if !self.ctx.programs_seen.is_empty() && !self.ctx.programs_seen.contains(&want) {
                let found = self.ctx.programs_seen.iter().map(u16::to_string).collect::<Vec<_>>().join(", ");
                return Err(TsError::NoProgram { want, found });
            }
        }
        if self.ctx.pmt_seen && self.ctx.video_pid.is_none() {
            return Err(TsError::NoVideo { found: self.found() });
        }
        if self.frames == 0 && self.sync.scrambled >= SCRAMBLED_LIMIT {
            return Err(TsError::Scrambled);
        }
        if self.frames == 0 && self.bytes > NO_VIDEO_LIMIT && self.ctx.video_pid.is_none() {
            return Err(TsError::NoPmt(self.bytes));
        }
        Ok(())
    }

    fn drain(&mut self, arrived: Instant) -> Result<(), TsError> {
        self.report();
        let wall = SystemTime::now() - arrived.elapsed();
        while let Some(pes) = self.ctx.out.pop_front() {
            match pes.kind {
                Kind::Audio => self.on_audio(&pes.data),
                Kind::Video => {
                    if pes.data.is_empty() {
                        // Packets were lost: later pictures may refer to the dropped one.
                        self.wait_idr = true;
                        continue;
                    }
                    let Some(dts) = pes.dts else {
                        // No timestamp: cannot be placed on the timeline.
                        discard("ts_no_timestamp", pes.data.len());
                        continue;
                    };
                    let pts = pes.pts.unwrap_or(dts);
                    self.au.push(&pes.data)?;
                    self.au.flush()?;
                    // A PES normally holds one access unit; further ones (allowed, rare) follow
                    // one nominal frame apart.
                    let mut k = 0;
                    while let Some(item) = self.au.next_item() {
                        let step = k * u64::from(self.clock_nominal);
                        k += u64::from(matches!(item, ParsedItem::Au { .. }));
                        self.on_item(item, dts + step, pts + step, wall, arrived);
                    }
                }
            }
        }
        Ok(())
    }

    fn on_item(&mut self, item: ParsedItem, dts: u64, pts: u64, wall: SystemTime, arrived: Instant) {
        match item {
            ParsedItem::Format(info) => {
                self.clock.set_nominal(info.frame_duration);
                self.clock_nominal = info.frame_duration;
                self.out.push_back(SourceEvent::Format(info));
            }
            ParsedItem::Au { data, idr } => {
                if self.wait_idr && !idr {
                    discard("ts_waiting_idr", data.len());
                    return;
                }
                self.wait_idr = false;
                let s = self.clock.stamp(dts, pts, wall);
                if let Some(reason) = s.reanchored {
                    tracing::warn!(reason, "MPEG-TS timestamps re-anchored (EXT-X-DISCONTINUITY)");
                    self.out.push_back(SourceEvent::Discontinuity { reason: format!("MPEG-TS: {reason}") });
                }
                self.frames += 1;
                self.out.push_back(SourceEvent::Frame(Frame { dts: s.dts, cts: s.cts, capture: s.capture, data, idr, arrived }));
            }
        }
    }

    /// Counts audio PES packets and reports the AAC configuration of the first one (once).
    fn on_audio(&mut self, data: &[u8]) {
        if data.is_empty() {
            return; // a continuity-error marker
        }
        self.audio_packets += 1;
        if self.audio_packets > 1 {
            return;
        }
        match adts::parse(data) {
            Ok((f, _)) => {
                self.audio = Some(f.config);
                tracing::info!(codec = %f.config.codec_string(), sample_rate = f.config.sample_rate(), channels = f.config.channels,
                    "MPEG-TS audio found; audio is not muxed yet: the stream is served without sound");
            }
            Err(e) => tracing::warn!(error = %e, "MPEG-TS audio stream (AAC ADTS) unreadable; ignored"),
        }
    }

    /// Logs newly found unused streams and counts new continuity errors.
    fn report(&mut self) {
        let m = crate::metrics::get();
        let new_cc = self.ctx.cc_errors - self.cc_reported;
        if new_cc > 0 {
            m.ts_continuity_errors.inc_by(new_cc);
            if self.cc_reported == 0 {
                tracing::warn!("MPEG-TS continuity-counter error: packets were lost; the damaged PES is dropped (counted in hlsd_ts_continuity_errors_total, logged once)");
            }
            self.cc_reported = self.ctx.cc_errors;
        }
        let lost = std::mem::take(&mut self.sync.lost_bytes) + std::mem::take(&mut self.ctx.oversized_bytes);
        if lost > 0 {
            discard("ts_sync_lost", lost as usize);
        }
        for (t, pid) in &self.ctx.other_streams[self.reported_others..] {
            tracing::warn!(pid, stream_type = t, "MPEG-TS stream ignored: {} (hlsd uses the first H.264 and AAC ADTS streams; for audio use AAC: ffmpeg -c:a aac, rpicam-vid --audio-codec aac)", stream_type_name(*t));
        }
        self.reported_others = self.ctx.other_streams.len();
    }
}

fn discard(reason: &'static str, bytes: usize) {
    crate::metrics::get().input_discarded_bytes.get_or_create(&ReasonLabels { reason }).inc_by(bytes as u64);
}

/// True if `data` looks like a transport stream: 0x47 at a fixed 188-byte stride, four times, at
/// some offset in the first packet's length.
pub fn looks_like_ts(data: &[u8]) -> bool {
    (0..188.min(data.len())).any(|i| (0..4).all(|k| data.get(i + k * 188) == Some(&0x47)))
}

/// Bytes needed before [`looks_like_ts`] can answer.
pub const DETECT_BYTES: usize = 188 * 4 + 187;

#[cfg(test)]
mod tests;
