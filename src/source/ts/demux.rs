//! The MPEG-TS demultiplexer proper: mpeg2ts-reader's PAT/PMT handling and PES reassembly,
//! with hlsd's stream selection and limits.
//!
//! Packets come from [`super::sync`] (aligned, sync-checked, unscrambled); complete PES packets
//! of the selected streams leave through [`TsCtx::out`] to [`super::TsIngest`]. Selection: the
//! program `--ts-program` names (else the first in the PAT), in it the first H.264 stream
//! (stream_type 0x1b) and the first ADTS AAC stream (0x0f). Every other stream type found is
//! recorded so that a stream without usable video can be refused by name.
//!
//! A PES packet larger than [`MAX_PES_BYTES`] is dropped as it arrives (counted). A PES packet
//! ends at the next packet of its PID with payload_unit_start_indicator, or (video) when the
//! source's input goes idle ([`TsCtx::flush_video`]), so a frame is not held back until the next.

use bytes::{Bytes, BytesMut};
use mpeg2ts_reader::demultiplex::{self, FilterChangeset, FilterRequest};
use mpeg2ts_reader::pes::{self, PesContents, PtsDts};
use mpeg2ts_reader::{packet_filter_switch, StreamType};
use std::collections::VecDeque;

/// Largest PES packet kept (one access unit; same bound as the Annex-B parser's access units).
pub const MAX_PES_BYTES: usize = crate::h264::parser::MAX_AU_BYTES;

/// Which selected stream a PES packet belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Video,
    Audio,
}

/// One complete PES packet of a selected stream.
#[derive(Debug, Clone)]
pub struct Pes {
    pub kind: Kind,
    /// 33-bit PTS (90 kHz), if present.
    pub pts: Option<u64>,
    /// 33-bit DTS, if present (else equal to the PTS).
    pub dts: Option<u64>,
    /// The PES payload; empty marks a continuity error on the stream at this point.
    pub data: Bytes,
}

packet_filter_switch! {
    TsFilter<TsCtx> {
        Pes: pes::PesPacketFilter<TsCtx, EsConsumer>,
        Pat: demultiplex::PatPacketFilter<TsCtx>,
        Pmt: demultiplex::PmtPacketFilter<TsCtx>,
        Null: demultiplex::NullPacketFilter<TsCtx>,
    }
}

/// The demultiplexing context: selection state and the output queue.
pub struct TsCtx {
    changeset: FilterChangeset<TsFilter>,
    /// Program to pick (`--ts-program`), else the first one the PAT lists.
    want_program: Option<u16>,
    pub program: Option<u16>,
    /// Program numbers the PAT listed.
    pub programs_seen: Vec<u16>,
    pub video_pid: Option<u16>,
    pub audio_pid: Option<u16>,
    /// Stream types in the selected program's PMT that are not used (type, PID).
    pub other_streams: Vec<(u8, u16)>,
    /// A PMT of the selected program has been read.
    pub pmt_seen: bool,
    pub out: VecDeque<Pes>,
    /// Continuity-counter errors on the selected streams.
    pub cc_errors: u64,
    /// Bytes dropped from oversized PES packets.
    pub oversized_bytes: u64,
    /// Video PES packets that continued after an idle flush had completed them.
    pub video_cut: u64,
    /// The video PES being received (kept here so an idle input can complete it).
    video_partial: Option<Partial>,
}

struct Partial {
    pts: Option<u64>,
    dts: Option<u64>,
    data: BytesMut,
    dropped: bool,
}

impl demultiplex::DemuxContext for TsCtx {
    type F = TsFilter;

    fn filter_changeset(&mut self) -> &mut FilterChangeset<TsFilter> {
        &mut self.changeset
    }

    fn construct(&mut self, req: FilterRequest<'_, '_>) -> TsFilter {
        match req {
            FilterRequest::ByPid(mpeg2ts_reader::psi::pat::PAT_PID) => TsFilter::Pat(demultiplex::PatPacketFilter::default()),
            FilterRequest::ByPid(_) | FilterRequest::Nit { .. } => TsFilter::Null(demultiplex::NullPacketFilter::default()),
            FilterRequest::Pmt { pid, program_number } => {
                if !self.programs_seen.contains(&program_number) && self.programs_seen.len() < 64 {
                    self.programs_seen.push(program_number);
                }
                let pick = match (self.want_program, self.program) {
                    (Some(want), _) => want == program_number,
                    (None, None) => true,
                    (None, Some(p)) => p == program_number,
                };
                if pick {
                    self.program = Some(program_number);
                    TsFilter::Pmt(demultiplex::PmtPacketFilter::new(pid, program_number))
                } else {
                    TsFilter::Null(demultiplex::NullPacketFilter::default())
                }
            }
            FilterRequest::ByStream { stream_type, stream_info, .. } => {
                self.pmt_seen = true;
                let pid = u16::from(stream_info.elementary_pid());
                let kind = match stream_type {
                    StreamType::H264 if self.video_pid.is_none_or(|v| v == pid) => {
                        self.video_pid = Some(pid);
                        Some(Kind::Video)
                    }
                    StreamType::ADTS if self.audio_pid.is_none_or(|a| a == pid) => {
                        self.audio_pid = Some(pid);
                        Some(Kind::Audio)
                    }
                    other => {
                        if self.other_streams.len() < 32 && !self.other_streams.contains(&(other.0, pid)) {
                            self.other_streams.push((other.0, pid));
                        }
                        None
                    }
                };
                match kind {
                    Some(kind) => TsFilter::Pes(pes::PesPacketFilter::new(EsConsumer { kind, partial: None })),
                    None => TsFilter::Null(demultiplex::NullPacketFilter::default()),
                }
            }
        }
    }
}

impl TsCtx {
    pub fn new(want_program: Option<u16>) -> Self {
        TsCtx {
            changeset: FilterChangeset::default(),
            want_program,
            program: None,
            programs_seen: Vec::new(),
            video_pid: None,
            audio_pid: None,
            other_streams: Vec::new(),
            pmt_seen: false,
            out: VecDeque::new(),
            cc_errors: 0,
            oversized_bytes: 0,
            video_cut: 0,
            video_partial: None,
        }
    }

    /// Completes the video PES being received (the input went idle after a whole frame).
    pub fn flush_video(&mut self) {
        if let Some(p) = self.video_partial.take() {
            self.emit(Kind::Video, p);
        }
    }

    fn emit(&mut self, kind: Kind, p: Partial) {
        if p.dropped || p.data.is_empty() {
            return;
        }
        self.out.push_back(Pes { kind, pts: p.pts, dts: p.dts.or(p.pts), data: p.data.freeze() });
    }
}

/// Reassembles the PES packets of one selected stream. Video keeps its partial packet in the
/// context (see [`TsCtx::flush_video`]); audio in the consumer.
pub struct EsConsumer {
    kind: Kind,
    partial: Option<Partial>,
}

impl EsConsumer {
    fn slot<'a>(&'a mut self, ctx: &'a mut TsCtx) -> &'a mut Option<Partial> {
        match self.kind {
            Kind::Video => &mut ctx.video_partial,
            Kind::Audio => &mut self.partial,
        }
    }

    fn append(&mut self, ctx: &mut TsCtx, data: &[u8]) {
        let mut oversized = 0;
        let Some(p) = self.slot(ctx).as_mut() else {
            // The rest of a video PES that an idle flush already completed: the writer paused
            // inside a frame.
            if self.kind == Kind::Video {
                ctx.video_cut += 1;
            }
            return;
        };
        if p.dropped {
            oversized = data.len();
        } else if p.data.len() + data.len() > MAX_PES_BYTES {
            oversized = p.data.len() + data.len();
            p.dropped = true;
            p.data = BytesMut::new();
        } else {
            p.data.extend_from_slice(data);
        }
        ctx.oversized_bytes += oversized as u64;
    }

    fn finish(&mut self, ctx: &mut TsCtx) {
        if let Some(p) = self.slot(ctx).take() {
            ctx.emit(self.kind, p);
        }
    }
}

impl pes::ElementaryStreamConsumer<TsCtx> for EsConsumer {
    fn start_stream(&mut self, _ctx: &mut TsCtx) {}

    fn begin_packet(&mut self, ctx: &mut TsCtx, header: pes::PesHeader<'_>) {
        // A packet still open here had unbounded length (or a short one): it ends now.
        self.finish(ctx);
        let (pts, dts, payload) = match header.contents() {
            PesContents::Parsed(Some(parsed)) => {
                let (pts, dts) = match parsed.pts_dts() {
                    Ok(PtsDts::PtsOnly(Ok(p))) => (Some(p.value()), None),
                    Ok(PtsDts::Both { pts: Ok(p), dts: Ok(d) }) => (Some(p.value()), Some(d.value())),
                    _ => (None, None),
                };
                (pts, dts, parsed.payload())
            }
            PesContents::Parsed(None) => (None, None, &[][..]),
            PesContents::Payload(p) => (None, None, p),
        };
        *self.slot(ctx) = Some(Partial {
            pts,
            dts,
            data: BytesMut::with_capacity(payload.len().max(4096)),
            dropped: false,
        });
        self.append(ctx, payload);
    }

    fn continue_packet(&mut self, ctx: &mut TsCtx, data: &[u8]) {
        self.append(ctx, data);
    }

    fn end_packet(&mut self, ctx: &mut TsCtx) {
        self.finish(ctx);
    }

    fn continuity_error(&mut self, ctx: &mut TsCtx) {
        // The PES being received lost a packet: drop it (mpeg2ts-reader ignores the rest of it).
        ctx.cc_errors += 1;
        *self.slot(ctx) = None;
        // An empty PES in the queue marks the damage in order (see `Pes::data`).
        ctx.out.push_back(Pes { kind: self.kind, pts: None, dts: None, data: Bytes::new() });
    }
}
