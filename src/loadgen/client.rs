//! One viewer's HTTP connection (hyper client, HTTP/1.1 keep-alive or HTTP/2 cleartext with
//! prior knowledge), reconnected on demand. Every request has a deadline covering connect,
//! headers and body; playlists are asked for with `Accept-Encoding: gzip` like a browser and
//! inflated here.

use super::{ErrKind, Proto};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::io::Read;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;

enum Sender {
    H1(hyper::client::conn::http1::SendRequest<Empty<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Empty<Bytes>>),
}

/// A response body and how many bytes came over the wire (before inflating).
pub struct Got {
    pub body: Bytes,
    pub wire_bytes: u64,
}

/// A lazily (re)connected client connection to one address.
pub struct Conn {
    addr: SocketAddr,
    proto: Proto,
    sender: Option<Sender>,
    /// Connections opened so far (the first included).
    pub connects: u64,
}

impl Conn {
    pub fn new(addr: SocketAddr, proto: Proto) -> Conn {
        Conn { addr, proto, sender: None, connects: 0 }
    }

    /// A second connection for the same viewer: over HTTP/2 the same connection (requests are
    /// multiplexed, as in a browser), over HTTP/1.1 a new one.
    pub fn sibling(&self) -> Conn {
        let sender = match &self.sender {
            Some(Sender::H2(s)) => Some(Sender::H2(s.clone())),
            _ => None,
        };
        Conn { addr: self.addr, proto: self.proto, sender, connects: 0 }
    }

    async fn connect(&mut self) -> Result<(), ErrKind> {
        let tcp = TcpStream::connect(self.addr).await.map_err(|_| ErrKind::Connect)?;
        let _ = tcp.set_nodelay(true);
        let io = TokioIo::new(tcp);
        self.connects += 1;
        self.sender = Some(match self.proto {
            Proto::H1 => {
                let (s, conn) = hyper::client::conn::http1::handshake(io).await.map_err(|_| ErrKind::Connect)?;
                tokio::spawn(conn);
                Sender::H1(s)
            }
            Proto::H2 => {
                let (s, conn) =
                    hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await.map_err(|_| ErrKind::Connect)?;
                tokio::spawn(conn);
                Sender::H2(s)
            }
        });
        Ok(())
    }

    /// GET `url` within `deadline`; a non-2xx status is an error of its own kind. On any error
    /// the connection is dropped, so the next request reconnects.
    pub async fn get(&mut self, url: &url::Url, deadline: Duration) -> Result<Got, ErrKind> {
        match tokio::time::timeout(deadline, self.get_inner(url)).await {
            Ok(Ok(g)) => Ok(g),
            Ok(Err(e)) => {
                self.sender = None;
                Err(e)
            }
            Err(_) => {
                self.sender = None;
                Err(ErrKind::Timeout)
            }
        }
    }

    async fn get_inner(&mut self, url: &url::Url) -> Result<Got, ErrKind> {
        let ready = match &self.sender {
            Some(Sender::H1(s)) => !s.is_closed(),
            Some(Sender::H2(s)) => !s.is_closed(),
            None => false,
        };
        if !ready {
            self.connect().await?;
        }
        let path = match url.query() {
            Some(q) => format!("{}?{}", url.path(), q),
            None => url.path().to_owned(),
        };
        let authority = match url.port() {
            Some(p) => format!("{}:{p}", url.host_str().unwrap_or("127.0.0.1")),
            None => url.host_str().unwrap_or("127.0.0.1").to_owned(),
        };
        let builder = http::Request::get(match self.proto {
            Proto::H1 => path,
            Proto::H2 => format!("http://{authority}{path}"),
        })
        .header(http::header::ACCEPT_ENCODING, "gzip, deflate, br");
        let builder = match self.proto {
            Proto::H1 => builder.header(http::header::HOST, authority),
            Proto::H2 => builder.version(http::Version::HTTP_2),
        };
        let req = builder.body(Empty::new()).map_err(|_| ErrKind::Protocol)?;
        let resp = match self.sender.as_mut() {
            Some(Sender::H1(s)) => {
                s.ready().await.map_err(|_| ErrKind::Protocol)?;
                s.send_request(req).await
            }
            Some(Sender::H2(s)) => {
                s.ready().await.map_err(|_| ErrKind::Protocol)?;
                s.send_request(req).await
            }
            None => return Err(ErrKind::Connect),
        }
        .map_err(|_| ErrKind::Protocol)?;
        let status = resp.status();
        let gzip = resp
            .headers()
            .get(http::header::CONTENT_ENCODING)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
        let body = resp.into_body().collect().await.map_err(|_| ErrKind::Body)?.to_bytes();
        if !status.is_success() {
            return Err(ErrKind::Status(status.as_u16()));
        }
        let wire_bytes = body.len() as u64;
        if !gzip {
            return Ok(Got { body, wire_bytes });
        }
        let mut out = Vec::with_capacity(body.len() * 4);
        flate2::read::GzDecoder::new(&body[..]).take(16 << 20).read_to_end(&mut out).map_err(|_| ErrKind::Body)?;
        Ok(Got { body: out.into(), wire_bytes })
    }
}
