//! What a byte stream holds: raw Annex-B H.264 or MPEG-TS, told apart from its first bytes, and
//! the parser for each behind one interface for the byte-stream sources (`reader`, `file`) and
//! `hlsd segment`.
//!
//! Detection: input that begins with an Annex-B start code (`00 00 01` / `00 00 00 01`) is
//! Annex-B at once; otherwise the first [`ts::DETECT_BYTES`] bytes are examined for the MPEG-TS
//! sync pattern (0x47 every 188 bytes, four times, at any offset, so a stream joined mid-packet
//! is recognised too). Anything else is parsed as Annex-B, which then reports what is missing.
//! An input that is known to be TS (`udp://`) skips detection.

use super::clock::{ArrivalClock, GridClock};
use super::ts::{self, TsError, TsIngest};
use crate::h264::{AuParser, H264Error, ParsedItem};
use crate::media::SourceEvent;
use std::time::Instant;

/// Errors of either input format.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum InputError {
    #[error(transparent)]
    H264(#[from] H264Error),
    #[error("MPEG-TS input: {0}")]
    Ts(#[from] TsError),
}

/// How Annex-B frames are stamped (they carry no timestamps).
pub enum Stamping {
    /// Arrival time snapped to the frame grid (live byte streams).
    Arrival(ArrivalClock),
    /// The nominal frame grid (files, offline).
    Grid(GridClock),
}

/// Settings for the input parser.
#[derive(Debug, Clone, Copy)]
pub struct InputConfig {
    /// `--framerate` as a frame duration in ticks.
    pub frame_duration: Option<u32>,
    /// `--ts-program`.
    pub ts_program: Option<u16>,
    /// Live input (capture times of TS re-anchor from the wall clock).
    pub live: bool,
}

enum State {
    Detect(Vec<u8>),
    AnnexB(Box<AuParser>),
    Ts(Box<TsIngest>),
}

/// The format-detecting parser. See the module docs.
pub struct Input {
    state: State,
    cfg: InputConfig,
    stamping: Stamping,
    out: std::collections::VecDeque<SourceEvent>,
    frames: u64,
}

impl Input {
    pub fn new(cfg: InputConfig, stamping: Stamping) -> Self {
        Input { state: State::Detect(Vec::new()), cfg, stamping, out: Default::default(), frames: 0 }
    }

    /// An input known to be MPEG-TS.
    pub fn ts(cfg: InputConfig, stamping: Stamping) -> Self {
        let mut i = Self::new(cfg, stamping);
        i.state = State::Ts(Box::new(TsIngest::new(cfg.frame_duration, cfg.ts_program, cfg.live)));
        i
    }

    /// True once the input was recognised as MPEG-TS.
    pub fn is_ts(&self) -> bool {
        matches!(self.state, State::Ts(_))
    }

    /// True once the input was recognised as Annex-B.
    pub fn is_annexb(&self) -> bool {
        matches!(self.state, State::AnnexB(_))
    }

    /// Frames handed out so far.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Frames cut short by an idle flush (TS: a PES continued after it was completed).
    pub fn cut_frames(&self) -> u64 {
        match &self.state {
            State::Ts(t) => t.cut_frames(),
            _ => 0,
        }
    }

    /// Feeds bytes that arrived at `arrived`.
    pub fn push(&mut self, chunk: &[u8], arrived: Instant) -> Result<(), InputError> {
        if let State::Detect(held) = &mut self.state {
            held.extend_from_slice(chunk);
            return match self.choose(false) {
                Some(held) => self.feed(&held, arrived),
                None => Ok(()),
            };
        }
        self.feed(chunk, arrived)
    }

    /// Chooses the format once enough bytes are held (or with `force`, at an idle or the end),
    /// returning the held bytes to parse.
    fn choose(&mut self, force: bool) -> Option<Vec<u8>> {
        let State::Detect(held) = &self.state else { return None };
        let start_code = held.starts_with(&[0, 0, 1]) || held.starts_with(&[0, 0, 0, 1]);
        if !(start_code || force || held.len() >= ts::DETECT_BYTES) {
            return None;
        }
        let next = if !start_code && ts::looks_like_ts(held) {
            tracing::info!("input is MPEG-TS");
            State::Ts(Box::new(TsIngest::new(self.cfg.frame_duration, self.cfg.ts_program, self.cfg.live)))
        } else {
            State::AnnexB(Box::new(AuParser::new(self.cfg.frame_duration)))
        };
        match std::mem::replace(&mut self.state, next) {
            State::Detect(held) => Some(held),
            _ => None,
        }
    }

    fn feed(&mut self, chunk: &[u8], arrived: Instant) -> Result<(), InputError> {
        let r = match &mut self.state {
            State::Detect(_) => Ok(()),
            State::AnnexB(p) => p.push(chunk).map_err(InputError::from),
            State::Ts(t) => t.push(chunk, arrived).map_err(InputError::from),
        };
        self.collect(arrived);
        r
    }

    /// The input went idle, or ended: completes what is pending.
    pub fn flush(&mut self, arrived: Instant) -> Result<(), InputError> {
        if let State::Detect(held) = &self.state {
            // An idle input that began with 0x47 may still be TS: wait for more.
            if held.first() == Some(&0x47) && held.len() < ts::DETECT_BYTES {
                return Ok(());
            }
            if let Some(held) = self.choose(true) {
                self.feed(&held, arrived)?;
            }
        }
        let r = match &mut self.state {
            State::Detect(_) => Ok(()),
            State::AnnexB(p) => p.flush().map_err(InputError::from),
            State::Ts(t) => t.flush(arrived).map_err(InputError::from),
        };
        self.collect(arrived);
        r
    }

    /// The input ended: decides the format whatever is held, then completes what is pending.
    pub fn end(&mut self, arrived: Instant) -> Result<(), InputError> {
        if let Some(held) = self.choose(true) {
            self.feed(&held, arrived)?;
        }
        self.flush(arrived)
    }

    pub fn next_event(&mut self) -> Option<SourceEvent> {
        self.out.pop_front()
    }

    /// At the end of an input without frames: the error that explains why, if any.
    pub fn end_error(&self) -> Option<InputError> {
        match &self.state {
            State::Detect(_) => None,
            State::AnnexB(p) => p.end_error().map(InputError::from),
            State::Ts(t) => t.end_error().map(InputError::from),
        }
    }

    fn collect(&mut self, arrived: Instant) {
        match &mut self.state {
            State::Detect(_) => {}
            State::AnnexB(p) => {
                while let Some(item) = p.next_item() {
                    let ev = match &mut self.stamping {
                        Stamping::Grid(g) => g.event(item),
                        Stamping::Arrival(clock) => arrival_event(clock, item, arrived),
                    };
                    self.frames += u64::from(matches!(ev, SourceEvent::Frame(_)));
                    self.out.push_back(ev);
                }
            }
            State::Ts(t) => {
                while let Some(ev) = t.next_event() {
                    self.frames += u64::from(matches!(ev, SourceEvent::Frame(_)));
                    self.out.push_back(ev);
                }
            }
        }
    }
}

/// Stamps an Annex-B item on arrival.
fn arrival_event(clock: &mut ArrivalClock, item: ParsedItem, arrived: Instant) -> SourceEvent {
    match item {
        ParsedItem::Format(info) => {
            clock.set_nominal(info.frame_duration);
            SourceEvent::Format(info)
        }
        ParsedItem::Au { data, idr } => {
            let (dts, capture) = clock.stamp(arrived);
            SourceEvent::Frame(crate::media::Frame { dts, cts: 0, capture, data, idr, arrived })
        }
    }
}
