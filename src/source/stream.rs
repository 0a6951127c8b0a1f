//! Live byte-stream sources: stdin, `exec:COMMAND` (a child encoder process) and
//! `tcp://HOST:PORT` (an encoder listening on TCP).
//!
//! Bytes are read, parsed and stamped by [`reader::pump`] on a thread of its own (see there for
//! how a frame is completed as soon as the encoder has written it). `exec` and `tcp` restart/reconnect with
//! [`Backoff`] and send a discontinuity, and also after `stall_timeout` without data.

use super::reader::{self, Ended, ReaderConfig};
use super::{Backoff, SourceConfig, SourceError};
use crate::media::SourceEvent;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Runs the blocking reader on its own thread until the input ends.
pub(super) async fn pump<R: Read + AsRawFd + Send + 'static>(
    input: R,
    name: &str,
    cfg: &SourceConfig,
    frame_duration: Option<u32>,
    tx: &mpsc::Sender<SourceEvent>,
) -> Ended {
    let rcfg = ReaderConfig {
        idle_flush: cfg.idle_flush,
        stall_timeout: cfg.stall_timeout,
        frame_duration,
        name: name.to_string(),
        ts_program: cfg.ts_program,
        ts: false,
    };
    let tx = tx.clone();
    match tokio::task::spawn_blocking(move || reader::pump(input, &rcfg, &tx)).await {
        Ok(ended) => ended,
        Err(e) => Ended::Io(std::io::Error::other(format!("reader thread failed: {e}"))),
    }
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
    match pump(std::io::stdin(), "stdin", &cfg, frame_duration, &tx).await {
        Ended::Eof | Ended::Closed | Ended::Stalled => {
            let _ = tx.send(SourceEvent::End).await;
            Ok(())
        }
        Ended::Empty => Err(SourceError::Empty { source_name: name }),
        Ended::Io(err) => Err(SourceError::Io { source_name: name, err }),
        Ended::Input(err) => Err(SourceError::Input { source_name: name, err }),
    }
}

/// Logs how an attempt ended; returns false when the source must stop.
pub(super) fn report(name: &str, ended: &Ended) -> bool {
    match ended {
        Ended::Closed => return false,
        Ended::Eof => tracing::warn!(source = name, "input ended; restarting"),
        Ended::Empty => tracing::warn!(source = name, "input ended without any H.264 picture; restarting"),
        Ended::Stalled => tracing::warn!(source = name, "no data received in time; restarting"),
        Ended::Io(e) => tracing::warn!(source = name, error = %e, "read failed; restarting"),
        Ended::Input(e) => tracing::error!(source = name, error = %e, "bad input; restarting"),
    }
    true
}

/// `exec:COMMAND`: runs `sh -c COMMAND`, reads stdout, logs stderr ([`super::stderr`]), restarts
/// with backoff. The command is only ever printed masked ([`crate::secret::mask`]).
pub async fn run_exec(
    cmd: &str,
    cfg: &SourceConfig,
    frame_duration: Option<u32>,
    tx: mpsc::Sender<SourceEvent>,
) -> Result<(), SourceError> {
    let mut backoff = Backoff::default();
    let mut attempt = 0u64;
    let shown = crate::secret::mask(cmd);
    let name = format!("exec:{shown}");
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
                tracing::info!(command = %shown, pid = child.id(), attempt, "encoder started");
                if let Some(err) = child.stderr.take() {
                    tokio::spawn(super::stderr::log_lines(err, child.id()));
                }
                let out = child.stdout.take().expect("stdout is piped");
                let ended = match out.into_owned_fd() {
                    Ok(fd) => pump(std::fs::File::from(fd), &name, cfg, frame_duration, &tx).await,
                    Err(e) => Ended::Io(e),
                };
                let _ = child.start_kill();
                match tokio::time::timeout(Duration::from_secs(5), child.wait()).await {
                    Ok(Ok(status)) => tracing::info!(command = %shown, %status, "encoder exited"),
                    _ => tracing::warn!(command = %shown, "encoder did not exit after kill"),
                }
                ended
            }
        };
        if !report(&name, &ended) {
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
                tracing::info!(addr, "connected to encoder");
                match sock.into_std() {
                    Ok(sock) => pump(sock, &format!("tcp://{addr}"), cfg, frame_duration, &tx).await,
                    Err(e) => Ended::Io(e),
                }
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
