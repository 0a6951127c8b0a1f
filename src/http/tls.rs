//! HTTPS: the rustls acceptor and its certificate, reloaded without dropping connections.
//!
//! The acceptor's `ServerConfig` resolves the certificate through [`Reloadable`], which holds the
//! current `CertifiedKey` behind a lock; [`TlsFiles::reload`] swaps it. New handshakes get the new
//! certificate, established connections keep theirs. Reloads happen on SIGHUP (app.rs) and when the
//! files' modification time, size or inode change (polled every [`POLL`]); a reload that fails
//! (unreadable files, a key that does not match the certificate, a file half-written) keeps the
//! current certificate, logs the error and counts `hlsd_tls_reloads_total{result="error"}`.

use super::HttpError;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;

/// How often the certificate files are checked for changes.
pub const POLL: Duration = Duration::from_secs(2);

/// Loads a rustls acceptor from PEM files; ALPN offers h2 and http/1.1. (No reloading: see [`TlsFiles`].)
pub fn tls_acceptor(cert: &Path, key: &Path) -> Result<tokio_rustls::TlsAcceptor, HttpError> {
    Ok(TlsFiles::load(cert, key)?.acceptor())
}

/// The current certificate, as rustls asks for it on every handshake.
#[derive(Debug)]
struct Reloadable(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for Reloadable {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.read().unwrap_or_else(|e| e.into_inner()).clone())
    }
}

/// What identifies a file's version: modification time, size, inode.
type Stamp = Option<(Option<SystemTime>, u64, u64)>;

fn stamp(p: &Path) -> Stamp {
    std::fs::metadata(p).ok().map(|m| (m.modified().ok(), m.len(), m.ino()))
}

/// The certificate and key files behind an acceptor.
pub struct TlsFiles {
    cert: PathBuf,
    key: PathBuf,
    current: Arc<Reloadable>,
    acceptor: tokio_rustls::TlsAcceptor,
    /// Stamps of the files when last loaded (or tried).
    seen: Mutex<(Stamp, Stamp)>,
}

fn read_pair(cert: &Path, key: &Path) -> Result<CertifiedKey, HttpError> {
    let read = |p: &Path| std::fs::read(p).map_err(|err| HttpError::TlsRead { path: p.display().to_string(), err });
    let cert_pem = read(cert)?;
    let key_pem = read(key)?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut &cert_pem[..]).filter_map(Result::ok).collect();
    if certs.is_empty() {
        return Err(HttpError::TlsEmpty { path: cert.display().to_string(), what: "PEM certificate" });
    }
    let key_der = rustls_pemfile::private_key(&mut &key_pem[..])
        .ok()
        .flatten()
        .ok_or_else(|| HttpError::TlsEmpty { path: key.display().to_string(), what: "PEM private key" })?;
    let provider = tokio_rustls::rustls::crypto::ring::default_provider();
    CertifiedKey::from_der(certs, key_der, &provider).map_err(|e| HttpError::Tls(e.to_string()))
}

impl TlsFiles {
    /// Loads both files (errors if they are unusable).
    pub fn load(cert: &Path, key: &Path) -> Result<Arc<TlsFiles>, HttpError> {
        let seen = (stamp(cert), stamp(key));
        let current = Arc::new(Reloadable(RwLock::new(Arc::new(read_pair(cert, key)?))));
        let mut cfg = tokio_rustls::rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_cert_resolver(current.clone());
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(TlsFiles {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            current,
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(cfg)),
            seen: Mutex::new(seen),
        }))
    }

    /// The acceptor (its certificate follows reloads).
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        self.acceptor.clone()
    }

    /// Reloads if the files changed since the last attempt, or always with `force` (SIGHUP).
    /// Returns whether a new certificate is in use; on failure the old one stays.
    pub fn reload(&self, force: bool) -> bool {
        let now = (stamp(&self.cert), stamp(&self.key));
        {
            let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            if !force && *seen == now {
                return false;
            }
            *seen = now;
        }
        let m = crate::metrics::get();
        match read_pair(&self.cert, &self.key) {
            Ok(ck) => {
                *self.current.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(ck);
                m.tls_reloads.get_or_create(&crate::metrics::ResultLabels { result: "ok" }).inc();
                tracing::info!(cert = %self.cert.display(), "TLS certificate reloaded; new connections use it");
                true
            }
            Err(e) => {
                m.tls_reloads.get_or_create(&crate::metrics::ResultLabels { result: "error" }).inc();
                tracing::error!(error = %e, "TLS certificate reload failed; keeping the current certificate");
                false
            }
        }
    }

    /// Polls the files every [`POLL`] and reloads when they change (runs until dropped).
    pub async fn watch_files(self: Arc<Self>) {
        let mut tick = tokio::time::interval(POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let me = self.clone();
            // Reading the files blocks briefly; keep it off the async workers.
            let _ = tokio::task::spawn_blocking(move || me.reload(false)).await;
        }
    }
}
