//! Request handling: route → response, with blocking playlist reload and held preload-hinted
//! part requests that wait on the live window's snapshots (no polling).
//!
//! Requests come from `http::server` (HTTP/1.1, h2c, or TLS); data comes from the window's
//! `watch` channel. Every response passes through [`finish`], which adds CORS headers.

use super::body::Chunks;
use super::routes::{cache, Route};
use crate::hls::blocking::{decide, timeout_secs, Decision, Directives};
use crate::hls::playlist::{names, render_media, render_multivariant_to};
use crate::hls::window::Snapshot;
use crate::metrics::{self, HttpLabels};
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
}

/// Handles one request.
pub async fn handle<B>(state: Arc<HttpState>, req: Request<B>) -> Result<Resp, std::convert::Infallible> {
    let head = req.method() == Method::HEAD;
    let (route, resp) = route_request(&state, &req).await;
    let status = resp.status().as_u16();
    metrics::get().http_requests.get_or_create(&HttpLabels { route, status }).inc();
    let mut resp = finish(resp);
    if head {
        let len = resp.body().len();
        *resp.body_mut() = Chunks::empty();
        resp.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    }
    Ok(resp)
}

async fn route_request<B>(state: &HttpState, req: &Request<B>) -> (&'static str, Resp) {
    match *req.method() {
        Method::GET | Method::HEAD => {}
        Method::OPTIONS => {
            let mut r = plain(StatusCode::NO_CONTENT, "");
            let h = r.headers_mut();
            h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, HEAD, OPTIONS"));
            h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("*"));
            h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("86400"));
            return ("preflight", r);
        }
        _ => {
            let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD are served\n");
            r.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD, OPTIONS"));
            return ("other", r);
        }
    }
    let path = req.uri().path();
    let rest = strip_base(path, &state.base);
    let run = state.snapshots.borrow().run_id.clone();
    let Some(route) = Route::parse(rest, &run) else {
        return ("unknown", not_found(path));
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
        Route::Multivariant => multivariant(state, gzip).await,
        Route::Media => media_playlist(state, req.uri().query(), gzip).await,
        Route::Init(id) => {
            let snap = state.snapshots.borrow().clone();
            match snap.init(*id) {
                Some(i) => immutable(i.data.clone(), "video/mp4"),
                None => not_found(path),
            }
        }
        Route::Part(g) => part(state, *g, path).await,
        Route::Segment(msn) => {
            let snap = state.snapshots.borrow().clone();
            match snap.segment(*msn) {
                Some(s) => immutable_chunks(Chunks::new(s.parts.iter().map(|p| p.data.clone())), "video/iso.segment"),
                None => not_found(path),
            }
        }
        Route::Snapshot => super::snapshot_jpg(state).await,
        Route::Health => health(state),
        Route::Metrics => {
            let mut r = bytes_response(Bytes::from(metrics::get().encode()), "text/plain; version=0.0.4; charset=utf-8");
            set(&mut r, header::CACHE_CONTROL, cache::NO_STORE);
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

/// Waits until `f` returns `Some` for a snapshot, or `timeout` passes (then `None`).
async fn wait_for<R>(
    state: &HttpState,
    timeout: Duration,
    mut f: impl FnMut(&Arc<Snapshot>) -> Option<R>,
) -> Option<R> {
    let mut rx = state.snapshots.clone();
    let deadline = tokio::time::Instant::now() + timeout;
    let _held = Held::new();
    loop {
        let snap = rx.borrow_and_update().clone();
        if let Some(r) = f(&snap) {
            return Some(r);
        }
        match tokio::time::timeout_at(deadline, rx.changed()).await {
            Ok(Ok(())) => continue,
            _ => return None,
        }
    }
}

/// Counts held requests in the `http_blocked_requests` gauge.
struct Held;
impl Held {
    fn new() -> Held {
        metrics::get().http_blocked.inc();
        Held
    }
}
impl Drop for Held {
    fn drop(&mut self) {
        metrics::get().http_blocked.dec();
    }
}

fn hold_timeout(snap: &Snapshot) -> Duration {
    Duration::from_secs_f64(timeout_secs(snap))
}

async fn multivariant(state: &HttpState, gzip: bool) -> Resp {
    let timeout = hold_timeout(&state.snapshots.borrow());
    let Some(snap) = wait_for(state, timeout, |s| s.info().is_some().then(|| s.clone())).await else {
        return unavailable("the stream has not started yet; retry shortly\n");
    };
    let text = render_multivariant_to(&snap, &format!("{}?run={}", names::MEDIA, snap.run_id)).unwrap_or_default();
    let mut r = playlist_response(Bytes::from(text), gzip);
    let t = snap.target_duration.unwrap_or(1);
    set(&mut r, header::CACHE_CONTROL, &cache::live_playlist(t));
    r
}

async fn media_playlist(state: &HttpState, query: Option<&str>, gzip: bool) -> Resp {
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
        Some(Ok(s)) => s,
        Some(Err(m)) => return bad_request(&m),
        None if d.is_blocking() => return not_ready(state, "the requested segment/part did not arrive in time (source stalled?)\n"),
        None => return not_ready(state, "the stream has not started yet; retry shortly\n"),
    };
    if snap.target_duration.is_none() {
        // Ended before the first segment was complete: there is no playlist to give.
        return unavailable("the stream ended before its first segment\n");
    }
    let idx = (d.skip as usize) * 2 + gzip as usize;
    let body = snap.rendered[idx]
        .get_or_init(|| {
            let text = Bytes::from(render_media(&snap, d.skip).unwrap_or_default());
            if gzip { gzip_bytes(&text) } else { text }
        })
        .clone();
    let mut r = bytes_response(body, "application/vnd.apple.mpegurl");
    playlist_headers(&mut r, gzip);
    let t = snap.target_duration.unwrap_or(1);
    let cc = if snap.ended {
        cache::ENDED_PLAYLIST.to_string()
    } else if d.is_blocking() {
        cache::blocking_playlist(t)
    } else {
        cache::live_playlist(t)
    };
    set(&mut r, header::CACHE_CONTROL, &cc);
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
        Some(Some(data)) => immutable(data, "video/iso.segment"),
        Some(None) => not_found(path),
        None => unavailable("the hinted part did not arrive in time (source stalled?)\n"),
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
    set(&mut r, header::CACHE_CONTROL, cache::NO_STORE);
    r
}

fn gzip_bytes(b: &[u8]) -> Bytes {
    let mut e = flate2::write::GzEncoder::new(Vec::with_capacity(b.len() / 3), flate2::Compression::fast());
    let _ = e.write_all(b);
    Bytes::from(e.finish().unwrap_or_default())
}

fn playlist_response(text: Bytes, gzip: bool) -> Resp {
    let body = if gzip { gzip_bytes(&text) } else { text };
    let mut r = bytes_response(body, "application/vnd.apple.mpegurl");
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

fn immutable(data: Bytes, content_type: &'static str) -> Resp {
    immutable_chunks(Chunks::from(data), content_type)
}

fn immutable_chunks(body: Chunks, content_type: &'static str) -> Resp {
    let mut r = Response::new(body);
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static(cache::IMMUTABLE));
    r
}

pub(super) fn plain(status: StatusCode, msg: &str) -> Resp {
    let mut r = Response::new(Chunks::from(msg.to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static(cache::NO_STORE));
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

/// Adds the headers every response carries (CORS for any origin; hls.js reads `Age`).
fn finish(mut r: Resp) -> Resp {
    let h = r.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static("Age, Content-Length, Date"));
    if r.status() != StatusCode::NO_CONTENT {
        let len = r.body().len();
        r.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    }
    r
}
