//! The accept loop: connection limits (global, per client address with trusted-proxy
//! exemptions), protocol limits of HTTP/1.1 and HTTP/2, the TLS handshake under the first-byte
//! timeout, per-connection timeouts ([`super::conn`]), and graceful shutdown.
//!
//! A connection over a limit is accepted and closed at once (no response: the bytes may be TLS
//! or HTTP/2), so the listen backlog never fills with connections nobody serves.

use super::conn::{Activity, Expired, GuardedIo};
use super::handlers::{self, HttpState};
use super::limits::{HttpLimits, RateLimited};
use crate::metrics::{self, ReasonLabels};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// HTTP/2: concurrent streams per connection.
pub const H2_MAX_STREAMS: u32 = 100;
/// HTTP/2: largest header list (decoded) per request.
pub const H2_MAX_HEADER_LIST: u32 = 64 * 1024;
/// HTTP/2: streams reset by the client before the server answered, per connection (rapid reset).
pub const H2_MAX_PENDING_RESETS: usize = 20;
/// HTTP/2: streams the server may reset because of client errors, per connection.
pub const H2_MAX_LOCAL_RESETS: usize = 256;
/// HTTP/2 receive windows (hlsd reads no request bodies): per stream and per connection.
pub const H2_STREAM_WINDOW: u32 = 64 * 1024;
pub const H2_CONN_WINDOW: u32 = 256 * 1024;
/// HTTP/2: response bytes buffered per stream beyond the client's window.
pub const H2_SEND_BUF: usize = 256 * 1024;
/// HTTP/1.1: read buffer, i.e. the largest request head (hyper answers 431 beyond it).
pub const H1_MAX_BUF: usize = 64 * 1024;

static REJECT_LOG: RateLimited = RateLimited::new(Duration::from_secs(10));
static TIMEOUT_LOG: RateLimited = RateLimited::new(Duration::from_secs(10));

fn reject(reason: &'static str, peer: std::net::SocketAddr) {
    metrics::get().http_rejected.get_or_create(&ReasonLabels { reason }).inc();
    if let Some(suppressed) = REJECT_LOG.due() {
        tracing::warn!(%peer, reason, suppressed, "connection rejected: limit reached (hlsd_http_rejected_connections)");
    }
}

fn timed_out(why: Expired) {
    metrics::get().http_timeouts.get_or_create(&ReasonLabels { reason: why.label() }).inc();
    if let Some(suppressed) = TIMEOUT_LOG.due() {
        tracing::info!(reason = why.label(), suppressed, "connection timed out (hlsd_http_timeouts)");
    }
}

fn builder(limits: &HttpLimits) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        // Backstop only: GuardedIo closes a connection that trickles its header first.
        .header_read_timeout(limits.timeouts.idle * 2)
        .max_buf_size(H1_MAX_BUF)
        .keep_alive(true);
    b.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(H2_MAX_STREAMS)
        .max_header_list_size(H2_MAX_HEADER_LIST)
        .max_pending_accept_reset_streams(H2_MAX_PENDING_RESETS)
        .max_local_error_reset_streams(H2_MAX_LOCAL_RESETS)
        .initial_stream_window_size(H2_STREAM_WINDOW)
        .initial_connection_window_size(H2_CONN_WINDOW)
        .max_send_buf_size(H2_SEND_BUF);
    b
}

/// Serves until `shutdown` resolves, then lets open requests finish for up to `grace`.
pub async fn serve(
    listener: TcpListener,
    state: Arc<HttpState>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    limits: Arc<HttpLimits>,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) {
    let builder = Arc::new(builder(&limits));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (sock, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE/ENFILE (descriptors exhausted elsewhere) or a reset before accept.
                    metrics::get().http_rejected.get_or_create(&ReasonLabels { reason: "accept_error" }).inc();
                    if let Some(suppressed) = REJECT_LOG.due() {
                        tracing::warn!(error = %e, suppressed, "accept failed");
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let Ok(permit) = limits.slots.clone().try_acquire_owned() else {
            reject("max_connections", peer);
            continue;
        };
        let trusted = limits.trusted.iter().any(|t| t.to_canonical() == peer.ip().to_canonical());
        let ip_guard = if limits.per_ip == 0 || trusted {
            None
        } else {
            match limits.per_ip_open.try_acquire(peer.ip(), limits.per_ip) {
                Some(g) => Some(g),
                None => {
                    reject("per_ip", peer);
                    continue;
                }
            }
        };
        let _ = sock.set_nodelay(true);
        let act = Activity::new();
        let svc = {
            let (state, act) = (state.clone(), act.clone());
            service_fn(move |req| {
                let (state, guard) = (state.clone(), act.request());
                async move {
                    let resp = handlers::handle(state, req).await?;
                    Ok::<_, std::convert::Infallible>(resp.map(|b| guard.track(b)))
                }
            })
        };
        let io = GuardedIo::new(sock, act.clone(), limits.timeouts, timed_out);
        let (builder, watcher, tls) = (builder.clone(), graceful.watcher(), tls.clone());
        let handshake = limits.timeouts.first_byte;
        tokio::spawn(async move {
            let _slot = (permit, ip_guard);
            let m = metrics::get();
            m.http_connections.inc();
            let res = match tls {
                None => watcher.watch(builder.serve_connection(TokioIo::new(io), svc).into_owned()).await,
                Some(acc) => match tokio::time::timeout(handshake, acc.accept(io)).await {
                    Ok(Ok(s)) => {
                        if s.get_ref().1.alpn_protocol() == Some(b"h2") {
                            act.set_h2();
                        }
                        watcher.watch(builder.serve_connection(TokioIo::new(s), svc).into_owned()).await
                    }
                    Ok(Err(e)) => Err(e.into()),
                    Err(_) => {
                        timed_out(Expired::Handshake);
                        Err("TLS handshake timed out".into())
                    }
                },
            };
            if let Err(e) = res {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
            m.http_connections.dec();
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(grace) => tracing::info!("closing connections still open after the grace period"),
    }
}
