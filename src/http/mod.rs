//! The HTTP origin: HTTP/1.1, HTTP/2 cleartext with prior knowledge, or TLS with ALPN (the
//! reloading acceptor in [`tls`]); the snapshot endpoint lives here.
//!
//! Connections come from a `TcpListener` the caller bound (tests bind port 0) and are served by
//! [`server::serve`] under the limits of [`limits::HttpLimits`] and the per-connection timeouts
//! of [`conn`]; requests go to [`handlers::handle`], which reads the live window through a
//! `watch` receiver.

pub mod assets;
pub mod auth;
pub mod body;
pub mod conn;
pub mod handlers;
pub mod limits;
pub mod routes;
pub mod server;
pub mod tls;

pub use limits::HttpLimits;
pub use server::serve;
pub use tls::tls_acceptor;

use handlers::{HttpState, Resp};

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
            let res = tokio::task::spawn_blocking(move || crate::poster::encode_jpeg(&k.sps, &k.pps, &k.data, 80)).await;
            match res {
                Ok(Ok(j)) => {
                    let j = bytes::Bytes::from(j);
                    *cached = Some((kf.part, j.clone()));
                    j
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "snapshot failed");
                    return handlers::unavailable("poster image failed; see the server log\n");
                }
                Err(_) => return handlers::unavailable("snapshot failed\n"),
            }
        }
    };
    let mut r = handlers::bytes_response(jpeg, "image/jpeg");
    handlers::set(&mut r, header::CACHE_CONTROL, "public, max-age=1");
    r
}
