//! The network side of one destination: connect, publish, send the queued frames as FLV tags,
//! and on failure retry with exponential backoff, resuming at the next IDR.
//!
//! Each connection starts afresh: what was queued for an earlier one is dropped, timestamps
//! start at 0, and the first frame sent is an IDR preceded by `onMetaData` and the AVC sequence
//! header (and the AAC one with silent audio). The pump (pump.rs) only queues frames while
//! [`writer`] says it is publishing.

use super::conn::{self, Connection};
use super::gate::{DropReason, Item};
use super::{flv, Dest, RtmpAudio, State, BACKOFF_MAX, BACKOFF_RESET_AFTER, BACKOFF_START};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc;

/// Why a publishing session ended.
enum Ended {
    /// The source ended or hlsd is shutting down: stop for good.
    Finished,
    Failed(conn::ConnError),
}

/// Connects, publishes, and reconnects with backoff until the queue closes.
pub(super) async fn writer(
    dest: Arc<Dest>,
    mut queue: mpsc::Receiver<Item>,
    publishing: Arc<AtomicBool>,
    tls: tokio_rustls::TlsConnector,
) {
    let mut backoff = BACKOFF_START;
    let mut attempt: u64 = 0;
    loop {
        attempt += 1;
        dest.set_state(State::Connecting);
        tracing::debug!(destination = %dest.label, attempt, "rtmp: connecting");
        let Some(opened) = unless_ended(&dest, &mut queue, Connection::open(&dest.url, &tls)).await
        else {
            dest.set_state(State::Stopped);
            return;
        };
        let result = match opened {
            Ok(c) => {
                // What was queued belongs to an earlier connection: start afresh at the next IDR.
                let mut stale = 0;
                while let Ok(item) = queue.try_recv() {
                    match item {
                        Item::Frame { .. } => stale += 1,
                        Item::End => {
                            c.close(None).await;
                            dest.set_state(State::Stopped);
                            return;
                        }
                    }
                }
                dest.dropped(DropReason::Disconnected, stale);
                // Attempts are counted from the last connection that published.
                attempt = 1;
                dest.set_state(State::Publishing);
                tracing::info!(destination = %dest.label, reconnects = dest.reconnects.get(), "rtmp: publishing; starting at the next IDR");
                publishing.store(true, Ordering::Release);
                let started = Instant::now();
                let r = stream(&dest, c, &mut queue).await;
                publishing.store(false, Ordering::Release);
                if started.elapsed() >= BACKOFF_RESET_AFTER {
                    backoff = BACKOFF_START;
                }
                r
            }
            Err(e) => Ended::Failed(e),
        };
        let e = match result {
            Ended::Finished => {
                dest.set_state(State::Stopped);
                tracing::info!(destination = %dest.label, "rtmp: stream ended; unpublished");
                return;
            }
            Ended::Failed(e) => e,
        };
        dest.set_state(State::Retrying);
        dest.reconnects.inc();
        tracing::warn!(destination = %dest.label, attempt, error = %e, retry_in = ?backoff, "rtmp: destination failed; will retry");
        if unless_ended(&dest, &mut queue, tokio::time::sleep(backoff))
            .await
            .is_none()
        {
            dest.set_state(State::Stopped);
            return;
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// Runs `fut` while watching the queue: `None` as soon as the source ends or hlsd shuts down.
/// Frames still queued from a failed connection are dropped meanwhile (the pump queues none
/// while not publishing).
async fn unless_ended<T>(
    dest: &Dest,
    queue: &mut mpsc::Receiver<Item>,
    fut: impl std::future::Future<Output = T>,
) -> Option<T> {
    tokio::pin!(fut);
    loop {
        tokio::select! {
            r = &mut fut => return Some(r),
            item = queue.recv() => match item {
                None | Some(Item::End) => return None,
                Some(Item::Frame { .. }) => dest.dropped(DropReason::Disconnected, 1),
            },
        }
    }
}

/// Sends queued frames on an open connection until the queue ends or the connection fails.
async fn stream(dest: &Dest, mut c: Connection, queue: &mut mpsc::Receiver<Item>) -> Ended {
    let mut clock = flv::Clock::default();
    let mut sent_info: Option<Arc<crate::media::TrackInfo>> = None;
    let audio = dest.audio == RtmpAudio::Silent;
    // Silent audio: frames sent so far and the timestamp they count from.
    let mut audio_frames: u64 = 0;
    let mut audio_base: u32 = 0;
    let mut reported = c.bytes_sent;
    let result: Result<(), conn::ConnError> = async {
        loop {
            // Only the receives race; whatever wins is then handled to completion.
            let item = tokio::select! {
                item = queue.recv() => item,
                got = c.recv_inbound() => {
                    c.answer_inbound(got).await?;
                    continue;
                }
            };
            let (frame, info, discontinuity) = match item {
                None | Some(Item::End) => return Ok(()),
                Some(Item::Frame { frame, info, discontinuity }) => (frame, info, discontinuity),
            };
            if sent_info.as_ref().is_none_or(|s| !Arc::ptr_eq(s, &info) && **s != *info) {
                if !frame.idr {
                    dest.dropped(DropReason::WaitingIdr, 1);
                    continue;
                }
                let Some(header) = flv::avc_sequence_header(&info) else {
                    tracing::error!(destination = %dest.label, "rtmp: SPS too short for an AVC sequence header; frame dropped");
                    dest.dropped(DropReason::WaitingIdr, 1);
                    continue;
                };
                let ts = clock.last_ms().map_or(0, |t| t + 1);
                c.send_metadata(&flv::metadata(&info, audio)).await?;
                c.send_video(header, ts).await?;
                if audio && sent_info.is_none() {
                    c.send_audio(flv::silent_aac::sequence_header(), ts).await?;
                }
                sent_info = Some(info.clone());
            }
            let ts = clock.map(frame.dts, info.frame_duration, discontinuity);
            if audio {
                if audio_frames == 0 || discontinuity {
                    // (Re)align the audio clock with the video.
                    audio_base = ts;
                    audio_frames = 0;
                }
                while flv::silent_aac::timestamp(audio_base, audio_frames) <= ts {
                    c.send_audio(flv::silent_aac::frame(), flv::silent_aac::timestamp(audio_base, audio_frames)).await?;
                    audio_frames += 1;
                }
            }
            c.send_video(flv::avc_nalu(&frame.data, frame.idr, frame.cts), ts).await?;
            dest.frames.inc();
            dest.bytes.inc_by(c.bytes_sent - reported);
            reported = c.bytes_sent;
        }
    }
    .await;
    dest.bytes.inc_by(c.bytes_sent - reported);
    match result {
        Ok(()) => {
            let eos = clock.last_ms().map(|t| (flv::avc_end_of_sequence(), t));
            c.close(eos).await;
            Ended::Finished
        }
        Err(e) => Ended::Failed(e),
    }
}
