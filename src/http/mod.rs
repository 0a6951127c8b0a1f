//! The HTTP origin: accept loop (HTTP/1.1, HTTP/2 cleartext with prior knowledge, or TLS with
//! ALPN), per-connection timeouts, graceful shutdown, and the snapshot endpoint.
//!
//! Connections come from a `TcpListener` the caller bound (tests bind port 0); requests go to
//! [`handlers::handle`], which reads the live window through a `watch` receiver.

pub mod assets;
pub mod auth;
pub mod body;
pub mod handlers;
pub mod routes;
pub mod tls;

pub use tls::tls_acceptor;

use handlers::{HttpState, Resp};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// Most concurrent client connections; further ones wait in the accept queue.
pub const MAX_CONNECTIONS: usize = 4096;

/// Errors setting up the server.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("TLS: cannot read {path}: {err}")]
    TlsRead { path: String, err: std::io::Error },
    #[error("TLS: {path} holds no {what}")]
    TlsEmpty { path: String, what: &'static str },
    #[error("TLS: certificate/key rejected: {0}")]
    Tls(String),
}

/// Serves until `shutdown` resolves, then lets open requests finish for up to `grace`.
pub async fn serve(
    listener: TcpListener,
    state: Arc<HttpState>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    timeout: Duration,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(timeout)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(timeout / 2))
        .keep_alive_timeout(timeout)
        .max_concurrent_streams(256);
    let builder = Arc::new(builder);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => p.expect("semaphore never closes"),
            _ = &mut shutdown => break,
        };
        let (sock, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = sock.set_nodelay(true);
        let state = state.clone();
        let svc = service_fn(move |req| handlers::handle(state.clone(), req));
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let tls = tls.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let m = crate::metrics::get();
            m.http_connections.inc();
            let res = match tls {
                None => watcher.watch(builder.serve_connection(TokioIo::new(sock), svc).into_owned()).await,
                Some(acc) => match tokio::time::timeout(timeout, acc.accept(sock)).await {
                    Ok(Ok(s)) => watcher.watch(builder.serve_connection(TokioIo::new(s), svc).into_owned()).await,
                    Ok(Err(e)) => Err(e.into()),
                    Err(_) => Err("TLS handshake timed out".into()),
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

/// `/snapshot.jpg`: the newest keyframe as JPEG, decoded on request at most once per keyframe.
pub(crate) async fn snapshot_jpg(state: &HttpState) -> Resp {
    use http::header;
    let Some(kf) = state.snapshots.borrow().keyframe.clone() else {
        return handlers::unavailable("no keyframe yet; retry shortly\n");
    };
    // Holding the lock while decoding makes concurrent requests share one decode.
    let mut cached = state.jpeg.lock().await;
    let jpeg = match cached.as_ref() {
        Some((part, jpeg)) if *part == kf.part => jpeg.clone(),
        _ => {
            let k = kf.clone();
            let res = tokio::task::spawn_blocking(move || crate::snapshot::encode_jpeg(&k.sps, &k.pps, &k.data, 80)).await;
            match res {
                Ok(Ok(j)) => {
                    let j = bytes::Bytes::from(j);
                    *cached = Some((kf.part, j.clone()));
                    j
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "snapshot failed");
                    return handlers::unavailable("snapshot failed; see the server log\n");
                }
                Err(_) => return handlers::unavailable("snapshot failed\n"),
            }
        }
    };
    let mut r = handlers::bytes_response(jpeg, "image/jpeg");
    handlers::set(&mut r, header::CACHE_CONTROL, "public, max-age=1");
    r
}
