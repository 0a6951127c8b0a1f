//! Live byte-stream sources: stdin, `exec:COMMAND` (a child encoder process) and
//! `tcp://HOST:PORT` (an encoder listening on TCP).
//!
//! Bytes → [`AuParser`] → [`ArrivalClock`] → [`SourceEvent`]s. When the input goes idle for
//! `idle_flush` the pending access unit is completed at once (see `h264::parser`), so a frame is
//! forwarded as soon as the encoder has written it. `exec` and `tcp` restart/reconnect with
//! [`Backoff`] and send a discontinuity, and also after `stall_timeout` without data.

use super::clock::ArrivalClock;
use super::{Backoff, SourceConfig, SourceError};
use crate::h264::{AuParser, H264Error, ParsedItem};
use crate::media::{Frame, SourceEvent};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::sync::mpsc;

/// Why a stream attempt ended.
enum Ended {
    /// Input closed (EOF).
    Eof,
    /// No data for `stall_timeout`.
    Stalled,
    /// The receiver is gone: stop for good.
    Closed,
    Io(std::io::Error),
    H264(H264Error),
}

/// Pumps one byte stream into `tx` until it ends.
async fn pump<R: AsyncRead + Unpin>(
    mut reader: R,
    cfg: &SourceConfig,
    frame_duration: Option<u32>,
    tx: &mpsc::Sender<SourceEvent>,
) -> Ended {
    let mut parser = AuParser::new(frame_duration);
    let mut clock = ArrivalClock::new(frame_duration.unwrap_or(3000));
    let mut buf = vec![0u8; 64 * 1024];
    let mut unflushed = false;
    let mut last_read = Instant::now();
    loop {
        let wait = match (unflushed, cfg.idle_flush) {
            (true, Some(idle)) => idle,
            _ => cfg.stall_timeout,
        };
        let res = tokio::time::timeout(wait, reader.read(&mut buf)).await;
        let step = match res {
            Ok(Ok(0)) => {
                let r = parser.flush();
                if let Err(e) = r.and(Ok(())) {
                    return Ended::H264(e);
                }
                if !forward(&mut parser, &mut clock, last_read, tx).await {
                    return Ended::Closed;
                }
                return Ended::Eof;
            }
            Ok(Ok(n)) => {
                last_read = Instant::now();
                unflushed = true;
                parser.push(&buf[..n])
            }
            Ok(Err(e)) => return Ended::Io(e),
            Err(_) if unflushed && cfg.idle_flush.is_some() => {
                unflushed = false;
                parser.flush()
            }
            Err(_) => return Ended::Stalled,
        };
        if let Err(e) = step {
            return Ended::H264(e);
        }
        if !forward(&mut parser, &mut clock, last_read, tx).await {
            return Ended::Closed;
        }
    }
}

/// Sends parsed items; false if the receiver is gone.
async fn forward(
    parser: &mut AuParser,
    clock: &mut ArrivalClock,
    arrived: Instant,
    tx: &mpsc::Sender<SourceEvent>,
) -> bool {
    while let Some(item) = parser.next_item() {
        let ev = match item {
            ParsedItem::Format(info) => {
                clock.set_nominal(info.frame_duration);
                SourceEvent::Format(info)
            }
            ParsedItem::Au { data, idr } => {
                let (dts, capture) = clock.stamp(arrived);
                SourceEvent::Frame(Frame { dts, capture, data, idr, arrived })
            }
        };
        if tx.send(ev).await.is_err() {
            return false;
        }
    }
    true
}

/// stdin: one attempt; EOF ends the stream.
pub async fn run_stdin(
    cfg: &SourceConfig,
    frame_duration: Option<u32>,
    tx: mpsc::Sender<SourceEvent>,
) -> Result<(), SourceError> {
    let name = "stdin".to_string();
    let mut cfg = cfg.clone();
    cfg.stall_timeout = Duration::from_secs(24 * 3600); // a pipe may legitimately pause
    match pump(tokio::io::stdin(), &cfg, frame_duration, &tx).await {
        Ended::Eof | Ended::Closed | Ended::Stalled => {
            let _ = tx.send(SourceEvent::End).await;
            Ok(())
        }
        Ended::Io(err) => Err(SourceError::Io { source_name: name, err }),
        Ended::H264(err) => Err(SourceError::H264 { source_name: name, err }),
    }
}

/// Logs how an attempt ended; returns false when the source must stop.
fn report(name: &str, ended: &Ended) -> bool {
    match ended {
        Ended::Closed => return false,
        Ended::Eof => tracing::warn!(source = name, "input ended; restarting"),
        Ended::Stalled => tracing::warn!(source = name, "no data received in time; restarting"),
        Ended::Io(e) => tracing::warn!(source = name, error = %e, "read failed; restarting"),
        Ended::H264(e) => tracing::error!(source = name, error = %e, "bad input; restarting"),
    }
    true
}

/// `exec:COMMAND`: runs `sh -c COMMAND`, reads stdout, logs stderr, restarts with backoff.
pub async fn run_exec(
    cmd: &str,
    cfg: &SourceConfig,
    frame_duration: Option<u32>,
    tx: mpsc::Sender<SourceEvent>,
) -> Result<(), SourceError> {
    let mut backoff = Backoff::default();
    let mut attempt = 0u64;
    loop {
        attempt += 1;
        let started = Instant::now();
        let child = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn();
        let ended = match child {
            Err(e) => Ended::Io(e),
            Ok(mut child) => {
                tracing::info!(command = cmd, pid = child.id(), attempt, "encoder started");
                if let Some(err) = child.stderr.take() {
                    tokio::spawn(async move {
                        let mut lines = BufReader::new(err).lines();
                        while let Ok(Some(line)) = lines.next_line().await {
                            tracing::info!(target: "hlsd::encoder", "{line}");
                        }
                    });
                }
                let out = child.stdout.take().expect("stdout is piped");
                let ended = pump(out, cfg, frame_duration, &tx).await;
                let _ = child.start_kill();
                match tokio::time::timeout(Duration::from_secs(5), child.wait()).await {
                    Ok(Ok(status)) => tracing::info!(command = cmd, %status, "encoder exited"),
                    _ => tracing::warn!(command = cmd, "encoder did not exit after kill"),
                }
                ended
            }
        };
        if !report(&format!("exec:{cmd}"), &ended) {
            return Ok(());
        }
        if tx.send(SourceEvent::Discontinuity { reason: "encoder restart".into() }).await.is_err() {
            return Ok(());
        }
        tokio::time::sleep(backoff.delay(started.elapsed())).await;
    }
}

/// `tcp://HOST:PORT`: connects (10 s timeout), reads, reconnects with backoff.
pub async fn run_tcp(
    addr: &str,
    cfg: &SourceConfig,
    frame_duration: Option<u32>,
    tx: mpsc::Sender<SourceEvent>,
) -> Result<(), SourceError> {
    let mut backoff = Backoff::default();
    loop {
        let started = Instant::now();
        let ended = match tokio::time::timeout(Duration::from_secs(10), tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(sock)) => {
                let _ = sock.set_nodelay(true);
                tracing::info!(addr, "connected to encoder");
                pump(sock, cfg, frame_duration, &tx).await
            }
            Ok(Err(e)) => Ended::Io(e),
            Err(_) => Ended::Io(std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out")),
        };
        if !report(&format!("tcp://{addr}"), &ended) {
            return Ok(());
        }
        if tx.send(SourceEvent::Discontinuity { reason: "reconnect".into() }).await.is_err() {
            return Ok(());
        }
        tokio::time::sleep(backoff.delay(started.elapsed())).await;
    }
}
