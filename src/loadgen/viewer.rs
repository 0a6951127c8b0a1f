//! One simulated viewer. LL mode behaves like hls.js in low-latency mode: a playlist loop of
//! blocking reloads (`_HLS_msn`/`_HLS_part` of the next part, `_HLS_skip=YES` once it has a full
//! playlist and the server allows it) feeding a media loop that fetches the init segment once,
//! then the preload-hinted part and every newly listed part, in order. Over HTTP/1.1 the two
//! loops have a keep-alive connection each (a browser opens a second one); over HTTP/2 they share
//! one. Plain mode polls the playlist every target duration (half of it when unchanged) and
//! fetches each new whole segment. A part's lateness is its last byte's arrival minus its end in
//! PROGRAM-DATE-TIME terms, recorded when both are known, whichever comes first.

use super::client::Conn;
use super::playlist::{first_variant, parse_media, Media};
use super::{ErrKind, Mode, Settings, ViewerStats};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;

/// Parts queued for the media loop beyond which the viewer counts itself behind and drops them.
const MEDIA_QUEUE: usize = 64;
/// Arrival or end times kept waiting for their other half (older ones are dropped).
const PENDING_MAX: usize = 256;
/// Pause after an error before the viewer starts over (like a player's retry).
const RETRY_PAUSE: Duration = Duration::from_millis(200);

fn now_ms() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64() * 1000.0).unwrap_or(0.0)
}

/// Arrival times and end times of parts (by URI), matched whichever is known first.
#[derive(Default)]
struct Pending {
    arrived: HashMap<String, f64>,
    ends: HashMap<String, f64>,
}

impl Pending {
    fn arrived(&mut self, uri: &str, at: f64, stats: &Mutex<ViewerStats>, segment: bool) {
        match self.ends.remove(uri) {
            Some(end) => stats.lock().unwrap().lateness(at - end, segment),
            None => {
                if self.arrived.len() >= PENDING_MAX {
                    self.arrived.clear();
                }
                self.arrived.insert(uri.to_owned(), at);
            }
        }
    }
    fn ends(&mut self, uri: &str, end: f64, stats: &Mutex<ViewerStats>) {
        match self.arrived.remove(uri) {
            Some(at) => stats.lock().unwrap().lateness(at - end, false),
            None => {
                if self.ends.len() >= PENDING_MAX {
                    self.ends.clear();
                }
                self.ends.insert(uri.to_owned(), end);
            }
        }
    }
}

/// Runs one viewer until the task is dropped; starts over after each error.
pub async fn run(set: Arc<Settings>, stats: Arc<Mutex<ViewerStats>>) {
    let mut pl = Conn::new(set.addr, set.proto);
    loop {
        let r = match set.mode {
            Mode::Ll => ll(&set, &stats, &mut pl).await,
            Mode::Plain => plain(&set, &stats, &mut pl).await,
        };
        if let Err(e) = r {
            stats.lock().unwrap().error(e);
        }
        tokio::time::sleep(RETRY_PAUSE).await;
    }
}

async fn get(conn: &mut Conn, set: &Settings, stats: &Mutex<ViewerStats>, url: &url::Url) -> Result<bytes::Bytes, ErrKind> {
    let g = conn.get(url, set.timeout).await?;
    stats.lock().unwrap().request(g.wire_bytes);
    Ok(g.body)
}

/// The media playlist's URL and its first parse: the multivariant's first variant, followed.
async fn open(set: &Settings, stats: &Mutex<ViewerStats>, conn: &mut Conn) -> Result<(url::Url, Media), ErrKind> {
    let body = get(conn, set, stats, &set.url).await?;
    let text = std::str::from_utf8(&body).map_err(|_| ErrKind::Parse)?;
    let (media_url, text) = match first_variant(text) {
        Some(v) => {
            let u = set.url.join(v).map_err(|_| ErrKind::Parse)?;
            let b = get(conn, set, stats, &u).await?;
            (u, String::from_utf8(b.to_vec()).map_err(|_| ErrKind::Parse)?)
        }
        None => (set.url.clone(), text.to_owned()),
    };
    Ok((media_url, parse_media(&text).map_err(|_| ErrKind::Parse)?))
}

async fn ll(set: &Arc<Settings>, stats: &Arc<Mutex<ViewerStats>>, pl: &mut Conn) -> Result<(), ErrKind> {
    let (media_url, mut m) = open(set, stats, pl).await?;
    if !m.can_block {
        return Err(ErrKind::NotLowLatency);
    }
    let pending = Arc::new(Mutex::new(Pending::default()));
    let (tx, mut rx) = mpsc::channel::<url::Url>(MEDIA_QUEUE);
    // The media loop: its own connection over HTTP/1.1 (the playlist's is held by reloads).
    let media = {
        let (set, stats, pending) = (set.clone(), stats.clone(), pending.clone());
        let mut conn = pl.sibling();
        tokio::spawn(async move {
            while let Some(u) = rx.recv().await {
                match conn.get(&u, set.timeout).await {
                    Ok(g) => {
                        let at = now_ms();
                        stats.lock().unwrap().request(g.wire_bytes);
                        let name = u.path().rsplit('/').next().unwrap_or("");
                        pending.lock().unwrap().arrived(name, at, &stats, false);
                    }
                    Err(e) => stats.lock().unwrap().error(e),
                }
            }
        })
    };
    let _abort = AbortOnDrop(media);
    if let Some(map) = &m.map_uri {
        let _ = tx.try_send(media_url.join(map).map_err(|_| ErrKind::Parse)?);
    }
    // Parts already listed when joining are not fetched (hls.js starts near the live edge).
    let mut queued: HashSet<String> = m.parts.iter().map(|p| p.uri.clone()).collect();
    loop {
        for p in &m.parts {
            if let Some(end) = p.end_ms {
                pending.lock().unwrap().ends(&p.uri, end, stats);
            }
        }
        let listed = m.parts.iter().map(|p| &p.uri).chain(m.hint.iter());
        for uri in listed {
            if queued.insert(uri.clone()) && tx.try_send(media_url.join(uri).map_err(|_| ErrKind::Parse)?).is_err() {
                stats.lock().unwrap().error(ErrKind::Behind);
            }
        }
        let keep: HashSet<&String> = m.parts.iter().map(|p| &p.uri).chain(m.hint.iter()).collect();
        queued.retain(|u| keep.contains(u));
        if m.ended {
            return Ok(());
        }
        let mut next = media_url.clone();
        {
            let mut q = next.query_pairs_mut();
            q.append_pair("_HLS_msn", &m.open_msn.to_string()).append_pair("_HLS_part", &m.open_parts.to_string());
            if m.can_skip && set.skip {
                q.append_pair("_HLS_skip", "YES");
            }
        }
        let body = get(pl, set, stats, &next).await?;
        m = parse_media(std::str::from_utf8(&body).map_err(|_| ErrKind::Parse)?).map_err(|_| ErrKind::Parse)?;
    }
}

async fn plain(set: &Arc<Settings>, stats: &Arc<Mutex<ViewerStats>>, conn: &mut Conn) -> Result<(), ErrKind> {
    let (media_url, mut m) = open(set, stats, conn).await?;
    if let Some(map) = &m.map_uri {
        get(conn, set, stats, &media_url.join(map).map_err(|_| ErrKind::Parse)?).await?;
    }
    // Start with the newest complete segment, like a player joining the live edge.
    let mut last = m.segments.len().checked_sub(2).map(|i| m.segments[i].msn);
    let mut joining = true;
    loop {
        let mut changed = false;
        for s in &m.segments {
            if last.is_some_and(|l| s.msn <= l) {
                continue;
            }
            let u = media_url.join(&s.uri).map_err(|_| ErrKind::Parse)?;
            get(conn, set, stats, &u).await?;
            if let Some(end) = s.end_ms.filter(|_| !joining) {
                stats.lock().unwrap().lateness(now_ms() - end, true);
            }
            last = Some(s.msn);
            changed = true;
        }
        joining = false;
        if m.ended {
            return Ok(());
        }
        let t = m.target_duration.max(0.1);
        tokio::time::sleep(Duration::from_secs_f64(if changed { t } else { t / 2.0 })).await;
        let body = get(conn, set, stats, &media_url).await?;
        m = parse_media(std::str::from_utf8(&body).map_err(|_| ErrKind::Parse)?).map_err(|_| ErrKind::Parse)?;
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);
impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
