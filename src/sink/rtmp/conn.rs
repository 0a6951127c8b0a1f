//! One RTMP publishing connection: TCP (or TLS for rtmps), the RTMP handshake, then
//! `connect` → `createStream` → `publish` through rml_rtmp's [`ClientSession`], and from then
//! on sending tag bodies as RTMP video/audio messages.
//!
//! rml_rtmp is sans-IO: it turns requests into packets and incoming bytes into events and
//! replies. The socket's read half is drained by a small task into a channel so that the
//! writer can wait for the queue and for server messages (acknowledgements, pings, errors) at
//! once; every network step has a timeout, so a dead peer turns into an error, never a hang.

use super::url::RtmpUrl;
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{
    ClientSession, ClientSessionConfig, ClientSessionError, ClientSessionEvent,
    ClientSessionResult, PublishRequestType, StreamMetadata,
};
use rml_rtmp::time::RtmpTimestamp;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_rustls::rustls;

/// TCP connect (per resolved address) and TLS handshake limit.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// RTMP handshake + connect + createStream + publish limit.
pub const SETUP_TIMEOUT: Duration = Duration::from_secs(10);
/// One packet write limit: a peer that accepts nothing for this long is taken as dead. Longer
/// than the queue (`QUEUE_FRAMES`, 8 s at 30 fps), so a congested link first costs GOPs and only
/// a link that stays stuck costs the connection.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(15);
/// Time allowed for unpublishing politely on shutdown.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a connection failed; shown with the masked destination.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    #[error("cannot resolve {host}: {err}")]
    Resolve { host: String, err: std::io::Error },
    #[error("cannot connect to {addr}: {err}")]
    Connect { addr: String, err: std::io::Error },
    #[error("TLS: {0}")]
    Tls(String),
    #[error("timed out {0}")]
    Timeout(&'static str),
    #[error("RTMP handshake failed (is this an RTMP server?): {0}")]
    Handshake(String),
    #[error("server rejected connect to app {app:?}: {description}")]
    Rejected { app: String, description: String },
    #[error("server refused to publish: {0}")]
    PublishRefused(String),
    #[error("RTMP protocol error: {0}")]
    Protocol(#[from] ClientSessionError),
    #[error("server closed the connection{0}")]
    Closed(&'static str),
    #[error("network error: {0}")]
    Io(#[from] std::io::Error),
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}
type BoxStream = Box<dyn Stream>;

/// Root certificates for rtmps: the system store (which honours `SSL_CERT_FILE` and
/// `SSL_CERT_DIR`) plus Mozilla's roots from `webpki-roots`.
pub fn tls_connector() -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let native = rustls_native_certs::load_native_certs();
    let (added, _) = roots.add_parsable_certificates(native.certs);
    tracing::debug!(system_roots = added, "rtmps trust roots loaded");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
}

async fn timed<T, E: Into<ConnError>>(
    d: Duration,
    what: &'static str,
    f: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, ConnError> {
    match tokio::time::timeout(d, f).await {
        Ok(r) => r.map_err(Into::into),
        Err(_) => Err(ConnError::Timeout(what)),
    }
}

async fn open_stream(
    url: &RtmpUrl,
    tls: &tokio_rustls::TlsConnector,
) -> Result<BoxStream, ConnError> {
    let addrs: Vec<_> = timed(CONNECT_TIMEOUT, "resolving the host", async {
        tokio::net::lookup_host((url.host.as_str(), url.port))
            .await
            .map_err(|err| ConnError::Resolve {
                host: url.host.clone(),
                err,
            })
    })
    .await?
    .collect();
    let mut last = ConnError::Resolve {
        host: url.host.clone(),
        err: std::io::ErrorKind::NotFound.into(),
    };
    let mut tcp = None;
    for addr in addrs {
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => {
                tcp = Some(s);
                break;
            }
            Ok(Err(err)) => {
                last = ConnError::Connect {
                    addr: addr.to_string(),
                    err,
                }
            }
            Err(_) => last = ConnError::Timeout("connecting"),
        }
    }
    let tcp = tcp.ok_or(last)?;
    let _ = tcp.set_nodelay(true);
    if !url.tls {
        return Ok(Box::new(tcp));
    }
    let name = rustls::pki_types::ServerName::try_from(url.host.clone())
        .map_err(|e| ConnError::Tls(e.to_string()))?;
    let s = timed(CONNECT_TIMEOUT, "in the TLS handshake", async {
        tls.connect(name, tcp)
            .await
            .map_err(|e| ConnError::Tls(e.to_string()))
    })
    .await?;
    Ok(Box::new(s))
}

/// A publishing RTMP connection.
pub struct Connection {
    writer: WriteHalf<BoxStream>,
    inbound: mpsc::Receiver<std::io::Result<Vec<u8>>>,
    reader: JoinHandle<()>,
    session: ClientSession,
    /// Bytes written to the socket so far (before TLS).
    pub bytes_sent: u64,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

fn spawn_reader(
    mut r: ReadHalf<BoxStream>,
) -> (mpsc::Receiver<std::io::Result<Vec<u8>>>, JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(16);
    let h = tokio::spawn(async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match r.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => {
                    if tx.send(Ok(buf[..n].to_vec())).await.is_err() {
                        break;
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    break;
                }
            }
        }
    });
    (rx, h)
}

/// onStatus codes that end a publishing attempt.
fn is_failure_code(code: &str) -> bool {
    [
        "Failed",
        "BadName",
        "Rejected",
        "Error",
        "Unauthorized",
        "Denied",
        "Closed",
    ]
    .iter()
    .any(|w| code.contains(w))
}

impl Connection {
    /// Connects and publishes `url`'s stream key; returns once the server answered
    /// `NetStream.Publish.Start`.
    pub async fn open(
        url: &RtmpUrl,
        tls: &tokio_rustls::TlsConnector,
    ) -> Result<Connection, ConnError> {
        let stream = open_stream(url, tls).await?;
        match tokio::time::timeout(SETUP_TIMEOUT, Connection::setup(stream, url)).await {
            Ok(r) => r,
            Err(_) => Err(ConnError::Timeout(
                "waiting for the server's handshake/connect/publish answer",
            )),
        }
    }

    async fn setup(mut stream: BoxStream, url: &RtmpUrl) -> Result<Connection, ConnError> {
        let mut hs = Handshake::new(PeerType::Client);
        let p0p1 = hs
            .generate_outbound_p0_and_p1()
            .map_err(|e| ConnError::Handshake(e.to_string()))?;
        stream.write_all(&p0p1).await?;
        let mut sent = p0p1.len() as u64;
        let mut buf = vec![0u8; 8192];
        let leftover = loop {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                return Err(ConnError::Closed(" during the RTMP handshake"));
            }
            match hs
                .process_bytes(&buf[..n])
                .map_err(|e| ConnError::Handshake(e.to_string()))?
            {
                HandshakeProcessResult::InProgress { response_bytes } => {
                    stream.write_all(&response_bytes).await?;
                    sent += response_bytes.len() as u64;
                }
                HandshakeProcessResult::Completed {
                    response_bytes,
                    remaining_bytes,
                } => {
                    stream.write_all(&response_bytes).await?;
                    sent += response_bytes.len() as u64;
                    break remaining_bytes;
                }
            }
        };
        stream.flush().await?;

        let mut config = ClientSessionConfig::new();
        config.tc_url = Some(url.tc_url());
        config.flash_version = "FMLE/3.0 (compatible; hlsd)".into();
        let (session, initial) = ClientSession::new(config)?;
        let (r, writer) = tokio::io::split(stream);
        let (inbound, reader) = spawn_reader(r);
        let mut c = Connection {
            writer,
            inbound,
            reader,
            session,
            bytes_sent: sent,
        };
        c.send_results(initial).await?;
        if !leftover.is_empty() {
            let results = c.session.handle_input(&leftover)?;
            c.handle_results(results, Stage::Connecting, &url.app)
                .await?;
        }

        let req = c.session.request_connection(url.app.clone())?;
        c.send_results(vec![req]).await?;
        c.wait_for(Stage::Connecting, &url.app).await?;
        let req = c
            .session
            .request_publishing(url.stream_key().to_string(), PublishRequestType::Live)?;
        c.send_results(vec![req]).await?;
        c.wait_for(Stage::Publishing, &url.app).await?;
        Ok(c)
    }

    async fn wait_for(&mut self, stage: Stage, app: &str) -> Result<(), ConnError> {
        loop {
            let bytes = match self.inbound.recv().await {
                Some(Ok(b)) => b,
                Some(Err(e)) => return Err(e.into()),
                None => {
                    return Err(ConnError::Closed(match stage {
                        Stage::Connecting => " after connect (wrong application name?)",
                        _ => " after publish (stream key refused or already in use?)",
                    }))
                }
            };
            let results = self.session.handle_input(&bytes)?;
            if self.handle_results(results, stage, app).await? {
                return Ok(());
            }
        }
    }

    /// Sends outbound packets and checks events; true once `stage` is reached.
    async fn handle_results(
        &mut self,
        results: Vec<ClientSessionResult>,
        stage: Stage,
        app: &str,
    ) -> Result<bool, ConnError> {
        let mut reached = false;
        for r in results {
            match r {
                ClientSessionResult::OutboundResponse(p) => self.write(&p.bytes).await?,
                ClientSessionResult::RaisedEvent(ev) => match ev {
                    ClientSessionEvent::ConnectionRequestAccepted => {
                        reached |= stage == Stage::Connecting
                    }
                    ClientSessionEvent::PublishRequestAccepted => {
                        reached |= stage == Stage::Publishing
                    }
                    ClientSessionEvent::ConnectionRequestRejected { description } => {
                        return Err(ConnError::Rejected {
                            app: app.to_string(),
                            description,
                        })
                    }
                    ClientSessionEvent::UnhandleableOnStatusCode { code }
                        if is_failure_code(&code) =>
                    {
                        return Err(ConnError::PublishRefused(code))
                    }
                    other => tracing::debug!(event = ?other, "rtmp server event"),
                },
                ClientSessionResult::UnhandleableMessageReceived(_) => {}
            }
        }
        self.writer.flush().await?;
        Ok(reached)
    }

    async fn send_results(&mut self, results: Vec<ClientSessionResult>) -> Result<(), ConnError> {
        for r in results {
            if let ClientSessionResult::OutboundResponse(p) = r {
                self.write(&p.bytes).await?;
            }
        }
        self.writer.flush().await?;
        Ok(())
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), ConnError> {
        timed(
            WRITE_TIMEOUT,
            "writing to the server (network stalled?)",
            self.writer.write_all(bytes),
        )
        .await?;
        self.bytes_sent += bytes.len() as u64;
        Ok(())
    }

    /// Sends `onMetaData` (`@setDataFrame`).
    pub async fn send_metadata(&mut self, m: &StreamMetadata) -> Result<(), ConnError> {
        let r = self.session.publish_metadata(m)?;
        self.send_results(vec![r]).await
    }

    /// Sends one FLV video tag body at `ts` ms.
    pub async fn send_video(&mut self, body: bytes::Bytes, ts: u32) -> Result<(), ConnError> {
        let r = self
            .session
            .publish_video_data(body, RtmpTimestamp::new(ts), false)?;
        self.send_results(vec![r]).await
    }

    /// Sends one FLV audio tag body at `ts` ms.
    pub async fn send_audio(&mut self, body: bytes::Bytes, ts: u32) -> Result<(), ConnError> {
        let r = self
            .session
            .publish_audio_data(body, RtmpTimestamp::new(ts), false)?;
        self.send_results(vec![r]).await
    }

    /// Waits for bytes from the server. Cancel-safe (use it in `select!` beside the frame
    /// queue); hand the result to [`Connection::answer_inbound`], which is not.
    pub async fn recv_inbound(&mut self) -> Option<std::io::Result<Vec<u8>>> {
        self.inbound.recv().await
    }

    /// Processes what [`Connection::recv_inbound`] returned: answers acknowledgements and pings;
    /// errors when the server closed the connection or sent a failure status. Must run to
    /// completion (a write cut short would corrupt the RTMP chunk stream).
    pub async fn answer_inbound(
        &mut self,
        got: Option<std::io::Result<Vec<u8>>>,
    ) -> Result<(), ConnError> {
        let bytes = match got {
            Some(Ok(b)) => b,
            Some(Err(e)) => return Err(e.into()),
            None => return Err(ConnError::Closed("")),
        };
        let results = self.session.handle_input(&bytes)?;
        self.handle_results(results, Stage::Streaming, "")
            .await
            .map(|_| ())
    }

    /// Unpublishes and closes the connection, within [`CLOSE_TIMEOUT`].
    pub async fn close(mut self, end_of_sequence: Option<(bytes::Bytes, u32)>) {
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
            if let Some((body, ts)) = end_of_sequence {
                self.send_video(body, ts).await?;
            }
            let r = self.session.stop_publishing()?;
            self.send_results(r).await?;
            self.writer.shutdown().await?;
            Ok::<_, ConnError>(())
        })
        .await;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Connecting,
    Publishing,
    Streaming,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_codes() {
        assert!(is_failure_code("NetStream.Publish.BadName"));
        assert!(is_failure_code("NetStream.Publish.Failed"));
        assert!(!is_failure_code("NetStream.Publish.Start"));
        assert!(!is_failure_code("NetStream.Play.PublishNotify"));
    }
}
