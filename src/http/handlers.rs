//! Request handling: route → response, with blocking playlist reload and held preload-hinted
//! part requests that wait on the live window's snapshots (no polling).
//!
//! Requests come from `http::server` (HTTP/1.1, h2c, or TLS); data comes from the window's
//! `watch` channel. Access control ([`super::auth`]) is checked before routing; every response
//! passes through [`finish`], which sets Content-Length and adds CORS headers (except on the
//! status routes `/metrics` and `/healthz`).

use super::body::Chunks;
use super::limits::HeldLimit;
use super::routes::Route;
use crate::hls::blocking::{decide, timeout_secs, Decision, Directives};
use super::auth::Access;
use crate::hls::playlist::{names, render_media, render_media_q, render_multivariant_to, with_query};
use crate::hls::window::Snapshot;
use crate::metrics::{self, HttpLabels};
use crate::policy::{self, content_type, Object, Playlist};
use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

pub type Resp = Response<Chunks>;

/// Shared state of the HTTP side.
pub struct HttpState {
    pub snapshots: watch::Receiver<Arc<Snapshot>>,
    /// Path prefix without trailing slash ("" for none).
    pub base: String,
    /// Last JPEG snapshot: (keyframe part number, image).
    pub jpeg: tokio::sync::Mutex<Option<(u64, Bytes)>>,
    /// Cap on held requests (`max-held-requests`).
    pub held: Arc<HeldLimit>,
    /// Signed URLs and basic auth (all off by default).
    pub access: Arc<Access>,
    /// Which routes this listener serves.
    pub serves: Serves,
}

/// Routes of a listener: `metrics-listen` splits `/metrics` and `/healthz` off the main one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Serves {
    Everything,
    /// Everything but `/metrics` and `/healthz` (404).
    Viewers,
    /// Only `/metrics` and `/healthz`.
    Status,
}

impl HttpState {
    /// State serving everything with no access control.
    pub fn new(snapshots: watch::Receiver<Arc<Snapshot>>, base: String, held: Arc<HeldLimit>) -> HttpState {
        HttpState { snapshots, base, jpeg: Default::default(), held, access: Default::default(), serves: Serves::Everything }
    }
}

/// Longest request target (path and query) served; longer ones get 414.
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// Largest sum of header names and values; larger requests get 431 (HTTP/1.1 heads beyond
/// `server::H1_MAX_BUF` and HTTP/2 header lists beyond `server::H2_MAX_HEADER_LIST` are
/// answered 431 by hyper / h2 before they get here).
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// Handles one request.
pub async fn handle<B>(state: Arc<HttpState>, req: Request<B>) -> Result<Resp, std::convert::Infallible> {
    let head = req.method() == Method::HEAD;
    let (route, resp) = route_request(&state, &req).await;
    let status = resp.status().as_u16();
    metrics::get().http_requests.get_or_create(&HttpLabels { route, status }).inc();
    let mut resp = finish(resp, !matches!(route, "metrics" | "healthz"));
    if head {
        let len = resp.body().len();
        *resp.body_mut() = Chunks::empty();
        resp.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    }
    Ok(resp)
}

async fn route_request<B>(state: &HttpState, req: &Request<B>) -> (&'static str, Resp) {
    let uri_len = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if uri_len > MAX_URI_BYTES {
        let msg = format!("request target of {uri_len} bytes exceeds {MAX_URI_BYTES}\n");
        return ("invalid", plain(StatusCode::URI_TOO_LONG, &msg));
    }
    let header_bytes: usize = req.headers().iter().map(|(k, v)| k.as_str().len() + v.len()).sum();
    if header_bytes > MAX_HEADER_BYTES {
        let msg = format!("request headers of {header_bytes} bytes exceed {MAX_HEADER_BYTES}\n");
        return ("invalid", plain(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, &msg));
    }
    match *req.method() {
        Method::GET | Method::HEAD | Method::OPTIONS => {}
        _ => {
            let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD are served\n");
            r.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD, OPTIONS"));
            return ("other", r);
        }
    }
    let path = req.uri().path();
    if super::routes::is_traversal(path) {
        return ("invalid", bad_request("the path holds a dot segment or an encoded '.', '/' or '\\'"));
    }
    let rest = strip_base(path, &state.base);
    let run = state.snapshots.borrow().run_id.clone();
    let Some(route) = Route::parse(rest, &run) else {
        return ("unknown", not_found(path));
    };
    let status_route = matches!(route, Route::Health | Route::Metrics);
    let listed = match state.serves {
        Serves::Everything => true,
        Serves::Viewers => !status_route,
        Serves::Status => status_route,
    };
    if !listed {
        return ("unknown", not_found(path));
    }
    if req.method() == Method::OPTIONS {
        // CORS preflight, for known routes only (an unknown asset name is 404 like its GET). The
        // status routes answer without CORS headers (see `handle`), so browsers refuse them.
        if matches!(&route, Route::Asset(n) if super::assets::lookup(n).is_none()) {
            return ("unknown", not_found(path));
        }
        let mut r = plain(StatusCode::NO_CONTENT, "");
        let h = r.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, HEAD, OPTIONS"));
        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("*"));
        h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("86400"));
        return (if status_route { route.label() } else { "preflight" }, r);
    }
    // The player page and its scripts hold no media and are the same for everyone: public.
    let public = matches!(route, Route::Asset(_));
    let token = match if public { Ok(String::new()) } else { super::auth::guard(state, req, rest, status_route) } {
        Ok(t) => t,
        Err((e, challenge)) => return (route.label(), super::auth::denied(&e, challenge)),
    };
    let gzip = accepts_gzip(req.headers());
    let resp = match &route {
        Route::Asset(name) => match super::assets::lookup(name) {
            Some(a) => {
                let mut r = bytes_response(Bytes::from_static(a.body), a.content_type);
                // Revalidated on every load: page, script and style change together on upgrade.
                set(&mut r, header::CACHE_CONTROL, "no-cache");
                r
            }
            None => not_found(path),
        },
        Route::Multivariant => multivariant(state, gzip, &token).await,
        Route::Media => media_playlist(state, req.uri().query(), gzip, &token).await,
        Route::Init(id) => {
            let snap = state.snapshots.borrow().clone();
            match snap.init(*id) {
                Some(i) => media(i.data.clone(), Object::Init),
                None => not_found(path),
            }
        }
        Route::Part(g) => part(state, *g, path).await,
        Route::Segment(msn) => {
            let snap = state.snapshots.borrow().clone();
            match snap.segment(*msn) {
                Some(s) => media(Chunks::new(s.parts.iter().map(|p| p.data.clone())), Object::Segment),
                None => not_found(path),
            }
        }
        Route::Snapshot => super::snapshot_jpg(state).await,
        Route::Health => health(state),
        Route::Metrics => {
            let mut r = bytes_response(Bytes::from(metrics::get().encode()), "text/plain; version=0.0.4; charset=utf-8");
            set(&mut r, header::CACHE_CONTROL, policy::NO_STORE);
            r
        }
    };
    (route.label(), resp)
}

/// Removes the base path if the request carries it (a proxy that keeps the prefix); requests
/// without it are served as they are (a proxy that strips it).
fn strip_base<'a>(path: &'a str, base: &str) -> &'a str {
    if base.is_empty() {
        return path;
    }
    match path.strip_prefix(base) {
        Some("") => "/",
        Some(rest) if rest.starts_with('/') => rest,
        _ => path,
    }
}

fn accepts_gzip(h: &http::HeaderMap) -> bool {
    h.get_all(header::ACCEPT_ENCODING).iter().filter_map(|v| v.to_str().ok()).any(|v| {
        v.split(',').any(|t| {
            let mut it = t.trim().split(';');
            let coding = it.next().unwrap_or("").trim();
            let q0 = it.any(|p| matches!(p.trim(), "q=0" | "q=0.0" | "q=0.00" | "q=0.000"));
            (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !q0
        })
    })
}

/// Outcome of [`wait_for`].
enum Waited<R> {
    Ready(R),
    TimedOut,
    /// `max-held-requests` requests are already held.
    Full,
}

/// Waits until `f` returns `Some` for a snapshot, or `timeout` passes. A request that has to
/// wait takes one of the `max-held-requests` slots first.
async fn wait_for<R>(state: &HttpState, timeout: Duration, mut f: impl FnMut(&Arc<Snapshot>) -> Option<R>) -> Waited<R> {
    let mut rx = state.snapshots.clone();
    if let Some(r) = f(&rx.borrow_and_update().clone()) {
        return Waited::Ready(r);
    }
    let Some(_slot) = state.held.try_hold() else {
        metrics::get().http_held_rejected.inc();
        if let Some(suppressed) = HELD_LOG.due() {
            tracing::warn!(suppressed, "held-request limit reached: answering 503 (hlsd_http_held_rejected; see max-held-requests)");
        }
        return Waited::Full;
    };
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match tokio::time::timeout_at(deadline, rx.changed()).await {
            Ok(Ok(())) => {}
            _ => return Waited::TimedOut,
        }
        if let Some(r) = f(&rx.borrow_and_update().clone()) {
            return Waited::Ready(r);
        }
    }
}

static HELD_LOG: super::limits::RateLimited = super::limits::RateLimited::new(Duration::from_secs(10));

/// 503 for a request that would be held while the held-request cap is reached.
fn held_full() -> Resp {
    unavailable("too many requests are waiting for the live edge; retry shortly\n")
}

fn hold_timeout(snap: &Snapshot) -> Duration {
    Duration::from_secs_f64(timeout_secs(snap))
}

async fn multivariant(state: &HttpState, gzip: bool, token: &str) -> Resp {
    let timeout = hold_timeout(&state.snapshots.borrow());
    let snap = match wait_for(state, timeout, |s| s.info().is_some().then(|| s.clone())).await {
        Waited::Ready(s) => s,
        Waited::TimedOut => return unavailable("the stream has not started yet; retry shortly\n"),
        Waited::Full => return held_full(),
    };
    let media = with_query(format!("{}?run={}", names::MEDIA, snap.run_id), token);
    let text = render_multivariant_to(&snap, &media).unwrap_or_default();
    let mut r = playlist_response(Bytes::from(text), gzip);
    let t = snap.target_duration.unwrap_or(1);
    set(&mut r, header::CACHE_CONTROL, &Object::Playlist(Playlist::Live { target: t }).cache_control());
    r
}

async fn media_playlist(state: &HttpState, query: Option<&str>, gzip: bool, token: &str) -> Resp {
    let d = match Directives::parse(query) {
        Ok(d) => d,
        Err(msg) => return bad_request(&msg),
    };
    let timeout = hold_timeout(&state.snapshots.borrow());
    let outcome = wait_for(state, timeout, |s| match decide(s, &d) {
        Decision::Ready => Some(Ok(s.clone())),
        Decision::BadRequest(m) => Some(Err(m)),
        Decision::Wait => None,
    })
    .await;
    let snap = match outcome {
        Waited::Ready(Ok(s)) => s,
        Waited::Ready(Err(m)) => return bad_request(&m),
        Waited::Full => return held_full(),
        Waited::TimedOut if d.is_blocking() => return not_ready(state, "the requested segment/part did not arrive in time (source stalled?)\n"),
        Waited::TimedOut => return not_ready(state, "the stream has not started yet; retry shortly\n"),
    };
    if snap.target_duration.is_none() {
        // Ended before the first segment was complete: there is no playlist to give.
        return unavailable("the stream ended before its first segment\n");
    }
    let idx = (d.skip as usize) * 2 + gzip as usize;
    let body = if token.is_empty() {
        snap.rendered[idx]
            .get_or_init(|| {
                let text = Bytes::from(render_media(&snap, d.skip).unwrap_or_default());
                if gzip { gzip_bytes(&text) } else { text }
            })
            .clone()
    } else {
        // Signed: the viewer's token goes into every URI, so this rendering is not shared.
        let text = Bytes::from(render_media_q(&snap, d.skip, token).unwrap_or_default());
        if gzip { gzip_bytes(&text) } else { text }
    };
    let mut r = bytes_response(body, content_type::PLAYLIST);
    playlist_headers(&mut r, gzip);
    let t = snap.target_duration.unwrap_or(1);
    let kind = if snap.ended {
        Playlist::Ended
    } else if d.is_blocking() {
        Playlist::Blocking { target: t }
    } else {
        Playlist::Live { target: t }
    };
    set(&mut r, header::CACHE_CONTROL, &Object::Playlist(kind).cache_control());
    r
}

async fn part(state: &HttpState, global: u64, path: &str) -> Resp {
    let timeout = hold_timeout(&state.snapshots.borrow());
    // A published part is answered at once; the hinted (next) part is held until it is complete.
    let found = wait_for(state, timeout, |s| {
        if let Some(p) = s.part(global) {
            Some(Some(p.data.clone()))
        } else if global != s.next_part || s.ended {
            Some(None)
        } else {
            None
        }
    })
    .await;
    match found {
        Waited::Ready(Some(data)) => media(data, Object::Part),
        Waited::Ready(None) => not_found(path),
        Waited::Full => held_full(),
        Waited::TimedOut => unavailable("the hinted part did not arrive in time (source stalled?)\n"),
    }
}

fn health(state: &HttpState) -> Resp {
    let snap = state.snapshots.borrow().clone();
    let stream = if snap.ended { "ended" } else if snap.ready() { "live" } else { "starting" };
    let body = format!(
        "{{\"status\":\"ok\",\"stream\":\"{stream}\",\"media_sequence\":{},\"next_part\":{}}}\n",
        snap.media_sequence(),
        snap.next_part
    );
    let mut r = bytes_response(Bytes::from(body), "application/json");
    set(&mut r, header::CACHE_CONTROL, policy::NO_STORE);
    r
}

fn gzip_bytes(b: &[u8]) -> Bytes {
    let mut e = flate2::write::GzEncoder::new(Vec::with_capacity(b.len() / 3), flate2::Compression::fast());
    let _ = e.write_all(b);
    Bytes::from(e.finish().unwrap_or_default())
}

fn playlist_response(text: Bytes, gzip: bool) -> Resp {
    let body = if gzip { gzip_bytes(&text) } else { text };
    let mut r = bytes_response(body, content_type::PLAYLIST);
    playlist_headers(&mut r, gzip);
    r
}

fn playlist_headers(r: &mut Resp, gzip: bool) {
    if gzip {
        set(r, header::CONTENT_ENCODING, "gzip");
    }
    set(r, header::VARY, "Accept-Encoding");
}

pub(super) fn set(r: &mut Resp, name: header::HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        r.headers_mut().insert(name, v);
    }
}

pub(super) fn bytes_response(body: Bytes, content_type: &'static str) -> Resp {
    let mut r = Response::new(Chunks::from(body));
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// A media object (init, part, segment): its Content-Type and Cache-Control from [`policy`].
fn media(body: impl Into<Chunks>, object: Object) -> Resp {
    let mut r = Response::new(body.into());
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(object.content_type()));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static(policy::IMMUTABLE));
    r
}

pub(super) fn plain(status: StatusCode, msg: &str) -> Resp {
    let mut r = Response::new(Chunks::from(msg.to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static(policy::NO_STORE));
    r
}

fn not_found(path: &str) -> Resp {
    let shown: String = path.chars().take(200).collect();
    plain(StatusCode::NOT_FOUND, &format!("not found: {shown}\n"))
}

fn bad_request(msg: &str) -> Resp {
    plain(StatusCode::BAD_REQUEST, &format!("bad request: {msg}\n"))
}

/// 503 for a playlist that is not there (yet): says why when the encoder sends no IDR.
fn not_ready(state: &HttpState, otherwise: &str) -> Resp {
    let problem = state.snapshots.borrow().idr_problem();
    unavailable(problem.as_deref().unwrap_or(otherwise))
}

pub(super) fn unavailable(msg: &str) -> Resp {
    let mut r = plain(StatusCode::SERVICE_UNAVAILABLE, msg);
    r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

/// Adds the headers every response carries: with `cors`, CORS for any origin (hls.js reads
/// `Age`); `/metrics` and `/healthz` get none, so other sites' pages cannot read them.
fn finish(mut r: Resp, cors: bool) -> Resp {
    if cors {
        let h = r.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
        h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static("Age, Content-Length, Date"));
    }
    if r.status() != StatusCode::NO_CONTENT {
        let len = r.body().len();
        r.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    }
    r
}
