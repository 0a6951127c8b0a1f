//! The HTTP origin: HTTP/1.1, HTTP/2 cleartext with prior knowledge, or TLS with ALPN; the TLS
//! acceptor and the snapshot endpoint live here.
//!
//! Connections come from a `TcpListener` the caller bound (tests bind port 0) and are served by
//! [`server::serve`] under the limits of [`limits::HttpLimits`] and the per-connection timeouts
//! of [`conn`]; requests go to [`handlers::handle`], which reads the live window through a
//! `watch` receiver.

pub mod assets;
pub mod body;
pub mod conn;
pub mod handlers;
pub mod limits;
pub mod routes;
pub mod server;

pub use limits::HttpLimits;
pub use server::serve;

use handlers::{HttpState, Resp};
use std::path::Path;
use std::sync::Arc;

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

/// Loads a rustls acceptor from PEM files; ALPN offers h2 and http/1.1.
pub fn tls_acceptor(cert: &Path, key: &Path) -> Result<tokio_rustls::TlsAcceptor, HttpError> {
    let read = |p: &Path| {
        std::fs::read(p).map_err(|err| HttpError::TlsRead { path: p.display().to_string(), err })
    };
    let cert_pem = read(cert)?;
    let key_pem = read(key)?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut &cert_pem[..]).filter_map(Result::ok).collect();
    if certs.is_empty() {
        return Err(HttpError::TlsEmpty { path: cert.display().to_string(), what: "PEM certificate" });
    }
    let key = rustls_pemfile::private_key(&mut &key_pem[..])
        .ok()
        .flatten()
        .ok_or_else(|| HttpError::TlsEmpty { path: key.display().to_string(), what: "PEM private key" })?;
    let mut cfg = tokio_rustls::rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| HttpError::Tls(e.to_string()))?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(cfg)))
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
