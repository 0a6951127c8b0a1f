//! Unit tests: the store suite on memory and disk, and the publisher driven by a real live
//! window against a [`MemoryStore`] that checks, at every put and delete, that the published
//! playlist never names a missing object and that its media sequence never goes back.

use super::config::Retention;
use super::metrics::StorageMetrics;
use super::publisher::{run, PublisherConfig};
use super::store::{conformance, DiskStore, MemoryStore, Meta, Store};
use crate::hls::segmenter::{Output, PartOut};
use crate::hls::window::{Window, WindowConfig};
use crate::media::{TrackInfo, TIMESCALE};
use bytes::Bytes;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

#[tokio::test]
async fn memory_store_passes_the_suite() {
    conformance::run(&MemoryStore::new(), "suite/").await;
}

#[tokio::test]
async fn disk_store_passes_the_suite_and_cleans_temporaries() {
    let dir = tempfile::tempdir().unwrap();
    let store = DiskStore::new(dir.path(), true);
    conformance::run(&store, "suite/").await;
    // A crash leaves only dot-files, which are never listed and are removed at start.
    std::fs::create_dir_all(dir.path().join("x")).unwrap();
    std::fs::write(dir.path().join("x/.r-s1.m4s.1-0.hlsd-tmp"), b"partial").unwrap();
    assert_eq!(store.list("x/").await.unwrap(), Vec::<String>::new());
    assert_eq!(store.remove_temporaries("x/").unwrap(), 1);
    assert_eq!(std::fs::read_dir(dir.path().join("x")).unwrap().count(), 0);
}

fn info() -> TrackInfo {
    TrackInfo {
        sps: Bytes::from_static(&[0x67, 0x42, 0xc0, 0x1e]),
        pps: Bytes::from_static(&[0x68, 0xce]),
        width: 320,
        height: 240,
        profile_idc: 0x42,
        constraint_flags: 0xc0,
        level_idc: 0x1e,
        frame_duration: TIMESCALE / 25,
    }
}

const PARTS: u64 = 5;

/// A synthetic live window: 1 s segments of five 0.2 s parts.
struct Live {
    window: Window,
    msn: u64,
    global: u64,
    t0: SystemTime,
}

impl Live {
    fn new(
        segments: usize,
    ) -> (
        Live,
        tokio::sync::watch::Receiver<Arc<crate::hls::window::Snapshot>>,
    ) {
        let (mut window, rx) = Window::new(
            WindowConfig {
                segments,
                segment_target: 1.0,
            },
            "run".into(),
        );
        let mut outs = vec![Output::Init {
            id: 0,
            data: Bytes::from_static(b"init"),
            info: info(),
            part_target: TIMESCALE as u64 / PARTS,
        }];
        window.apply(&mut outs, 0);
        (
            Live {
                window,
                msn: 0,
                global: 0,
                t0: SystemTime::now(),
            },
            rx,
        )
    }

    /// Adds one complete segment, a part every `part_ms` (paused test time).
    async fn segment(&mut self, part_ms: u64) {
        let msn = self.msn;
        let mut outs = vec![Output::SegmentStart {
            msn,
            pdt: self.t0 + Duration::from_secs(msn),
            discontinuity: false,
            init_id: 0,
        }];
        for i in 0..PARTS {
            outs.push(Output::Part(PartOut {
                msn,
                index: i as u32,
                global: self.global,
                data: Bytes::from(format!("s{msn}p{i};")),
                duration: TIMESCALE as u64 / PARTS,
                independent: i == 0,
                last_arrived: std::time::Instant::now(),
                frames: 5,
                keyframe: None,
            }));
            self.global += 1;
            self.window.apply(&mut outs, self.global);
            tick(part_ms).await;
        }
        outs.push(Output::SegmentEnd {
            msn,
            duration: TIMESCALE as u64,
        });
        self.window.apply(&mut outs, self.global);
        self.msn += 1;
        tick(20).await;
    }
}

/// What the observer saw.
#[derive(Default, Debug)]
struct Seen {
    playlists: Vec<String>,
    /// media sequence → URI of the first segment, across all published playlists.
    uri_of_seq: BTreeMap<u64, String>,
    last_seq: Option<u64>,
    deletes: Vec<String>,
}

/// URIs named by a playlist.
fn named(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| {
            if l.starts_with("#EXT-X-MAP:") || l.starts_with("#EXT-X-PART:") {
                return l
                    .split("URI=\"")
                    .nth(1)
                    .and_then(|r| r.split('"').next())
                    .map(str::to_string);
            }
            (!l.starts_with('#') && !l.is_empty()).then(|| l.to_string())
        })
        .collect()
}

fn media_sequence(text: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:"))
        .unwrap()
        .parse()
        .unwrap()
}

/// A store whose every change is checked against the published playlist.
fn checked_store(prefix: &'static str) -> (MemoryStore, Arc<Mutex<Seen>>) {
    let store = MemoryStore::new();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let s2 = seen.clone();
    store.observe(Arc::new(
        move |op: &str, key: &str, objects: &BTreeMap<String, (Bytes, Meta)>| {
            let mut seen = s2.lock().unwrap();
            let media_key = format!("{prefix}media.m3u8");
            if op == "put" && key == media_key {
                let text = String::from_utf8(objects[key].0.to_vec()).unwrap();
                for uri in named(&text) {
                    assert!(
                        objects.contains_key(&format!("{prefix}{uri}")),
                        "playlist names {uri}, not in the store:\n{text}"
                    );
                }
                let seq = media_sequence(&text);
                if let Some(last) = seen.last_seq {
                    assert!(
                        seq >= last,
                        "MEDIA-SEQUENCE went back from {last} to {seq}:\n{text}"
                    );
                }
                seen.last_seq = Some(seq);
                let segs: Vec<String> = text
                    .lines()
                    .filter(|l| l.ends_with(".m4s") && !l.starts_with('#'))
                    .map(str::to_string)
                    .collect();
                for (i, uri) in segs.iter().enumerate() {
                    let prev = seen.uri_of_seq.insert(seq + i as u64, uri.clone());
                    assert!(
                        prev.as_ref().is_none_or(|p| p == uri),
                        "sequence {} changed URI from {prev:?} to {uri}",
                        seq + i as u64
                    );
                }
                seen.playlists.push(text);
            }
            if op == "put" && key == format!("{prefix}stream.m3u8") {
                assert!(
                    objects.contains_key(&media_key),
                    "multivariant before the media playlist"
                );
            }
            if op == "delete" {
                if let Some((pl, _)) = objects.get(&media_key) {
                    let text = String::from_utf8(pl.to_vec()).unwrap();
                    let name = key.strip_prefix(prefix).unwrap();
                    assert!(
                        !named(&text).iter().any(|u| u == name),
                        "deleted {key} while the playlist names it:\n{text}"
                    );
                }
                seen.deletes.push(key.to_string());
            }
        },
    ));
    (store, seen)
}

fn cfg(window: usize) -> PublisherConfig {
    let mut c = PublisherConfig::new("test".into(), "p/".into(), window);
    c.backoff_min = Duration::from_millis(100);
    c.backoff_max = Duration::from_millis(800);
    c
}

async fn tick(ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

fn text(store: &MemoryStore, key: &str) -> String {
    String::from_utf8(
        store
            .object(key)
            .unwrap_or_else(|| panic!("{key} missing"))
            .0
            .to_vec(),
    )
    .unwrap()
}

#[tokio::test(start_paused = true)]
async fn sliding_window_publishes_in_order_and_deletes_after_grace() {
    let (store, seen) = checked_store("p/");
    let (mut live, rx) = Live::new(6);
    let task = tokio::spawn(run(
        Arc::new(store.clone()),
        cfg(6),
        Arc::new(StorageMetrics::default()),
        rx,
    ));
    for _ in 0..20 {
        live.segment(200).await;
    }
    let pl = text(&store, "p/media.m3u8");
    assert!(pl.contains("#EXT-X-MEDIA-SEQUENCE:14\n"), "{pl}");
    assert_eq!(named(&pl).len(), 7, "init + 6 segments:\n{pl}");
    // Removed segments are deleted after the grace period (6 s listed + 1 T), never before.
    let segs: Vec<String> = store
        .keys()
        .into_iter()
        .filter(|k| k.contains("-s"))
        .collect();
    assert!(segs.len() <= 6 + 8, "{segs:?}");
    assert!(!store.keys().contains(&"p/run-s0.m4s".to_string()));
    assert!(seen
        .lock()
        .unwrap()
        .deletes
        .contains(&"p/run-s0.m4s".to_string()));
    // Object metadata per type.
    let (_, m) = store.object("p/run-s19.m4s").unwrap();
    assert_eq!(
        (m.content_type, m.cache_control.as_str()),
        ("video/iso.segment", "public, max-age=31536000, immutable")
    );
    let (_, m) = store.object("p/run-i0.mp4").unwrap();
    assert_eq!(m.content_type, "video/mp4");
    let (_, m) = store.object("p/media.m3u8").unwrap();
    assert_eq!(
        (m.content_type, m.cache_control.as_str()),
        ("application/vnd.apple.mpegurl", "no-cache")
    );
    let mv = text(&store, "p/stream.m3u8");
    assert!(
        mv.contains("RESOLUTION=320x240") && mv.ends_with("media.m3u8\n"),
        "{mv}"
    );
    // The segment's bytes are its parts, concatenated.
    assert_eq!(
        store.object("p/run-s19.m4s").unwrap().0,
        Bytes::from("s19p0;s19p1;s19p2;s19p3;s19p4;")
    );

    live.window.end();
    tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .unwrap()
        .unwrap();
    let pl = text(&store, "p/media.m3u8");
    assert!(pl.ends_with("#EXT-X-ENDLIST\n"), "{pl}");
    assert_eq!(
        store.object("p/media.m3u8").unwrap().1.cache_control,
        "public, max-age=60"
    );
    assert!(!pl.contains("#EXT-X-PLAYLIST-TYPE"), "{pl}");
}

#[tokio::test(start_paused = true)]
async fn recording_keeps_everything_and_ends_as_event_with_endlist() {
    let (store, seen) = checked_store("p/");
    let (mut live, rx) = Live::new(6);
    let mut c = cfg(6);
    c.retention = Retention::All;
    let task = tokio::spawn(run(
        Arc::new(store.clone()),
        c,
        Arc::new(StorageMetrics::default()),
        rx,
    ));
    for _ in 0..12 {
        live.segment(200).await;
    }
    live.window.end();
    tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .unwrap()
        .unwrap();
    let pl = text(&store, "p/media.m3u8");
    assert!(
        pl.contains("#EXT-X-PLAYLIST-TYPE:EVENT\n#EXT-X-MEDIA-SEQUENCE:0\n")
            && pl.ends_with("#EXT-X-ENDLIST\n"),
        "{pl}"
    );
    assert_eq!(named(&pl).len(), 13, "{pl}");
    assert_eq!(store.keys().iter().filter(|k| k.contains("-s")).count(), 12);
    assert!(seen.lock().unwrap().deletes.is_empty());
}

#[tokio::test(start_paused = true)]
async fn outage_drops_the_oldest_and_resumes_with_a_discontinuity() {
    let (store, seen) = checked_store("p/");
    let (mut live, rx) = Live::new(6);
    let mut c = cfg(6);
    c.queue = 3;
    let metrics = Arc::new(StorageMetrics::default());
    let task = tokio::spawn(run(Arc::new(store.clone()), c, metrics.clone(), rx));
    for _ in 0..3 {
        live.segment(200).await;
    }
    assert!(text(&store, "p/media.m3u8").contains("run-s2.m4s"));
    store.set_failing(true);
    for _ in 0..8 {
        live.segment(200).await;
    }
    // Segments 3..=10 waited; only the newest 3 are kept.
    let dropped = metrics
        .dropped_segments
        .get_or_create(&super::metrics::OutputLabels {
            output: "test".into(),
        })
        .get();
    assert_eq!(dropped, 5);
    store.set_failing(false);
    for _ in 0..3 {
        live.segment(200).await;
    }
    live.window.end();
    tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .unwrap()
        .unwrap();
    let pl = text(&store, "p/media.m3u8");
    let segs: Vec<String> = named(&pl)
        .into_iter()
        .filter(|u| u.contains("-s"))
        .collect();
    assert_eq!(
        segs,
        [
            "run-s8.m4s",
            "run-s9.m4s",
            "run-s10.m4s",
            "run-s11.m4s",
            "run-s12.m4s",
            "run-s13.m4s"
        ]
        .map(String::from)
    );
    assert!(
        pl.contains("#EXT-X-MEDIA-SEQUENCE:3\n"),
        "own sequence numbers stay contiguous:\n{pl}"
    );
    assert!(pl.ends_with("#EXT-X-ENDLIST\n"));
    // The first playlist after the outage went on from segment 2 to 8 across a discontinuity.
    let seen = seen.lock().unwrap();
    assert!(
        seen.playlists
            .iter()
            .any(|p| p.contains("run-s2.m4s\n#EXT-X-DISCONTINUITY\n#EXT-X-PROGRAM-DATE-TIME:")),
        "{:?}",
        seen.playlists.last()
    );
}

#[tokio::test(start_paused = true)]
async fn a_store_that_lost_its_data_gets_init_and_a_consistent_playlist_again() {
    let (store, seen) = checked_store("p/");
    let (mut live, rx) = Live::new(6);
    let task = tokio::spawn(run(
        Arc::new(store.clone()),
        cfg(6),
        Arc::new(StorageMetrics::default()),
        rx,
    ));
    for _ in 0..4 {
        live.segment(200).await;
    }
    // Restarted without persistence: down for a while, then empty.
    store.set_failing(true);
    store.wipe();
    for _ in 0..2 {
        live.segment(200).await;
    }
    store.set_failing(false);
    for _ in 0..3 {
        live.segment(200).await;
    }
    live.window.end();
    tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .unwrap()
        .unwrap();
    let pl = text(&store, "p/media.m3u8");
    for uri in named(&pl) {
        assert!(
            store.object(&format!("p/{uri}")).is_some(),
            "{uri} missing:\n{pl}"
        );
    }
    assert!(named(&pl).contains(&"run-i0.mp4".to_string()));
    assert!(media_sequence(&pl) >= 4, "{pl}");
    assert!(store.object("p/stream.m3u8").is_some());
    assert!(seen.lock().unwrap().playlists.len() > 4);
}

#[tokio::test(start_paused = true)]
async fn parts_mode_lists_stored_parts_only() {
    let (store, seen) = checked_store("p/");
    let (mut live, rx) = Live::new(6);
    let mut c = cfg(6);
    c.parts = true;
    let task = tokio::spawn(run(
        Arc::new(store.clone()),
        c,
        Arc::new(StorageMetrics::default()),
        rx,
    ));
    for _ in 0..8 {
        live.segment(200).await;
    }
    let pl = text(&store, "p/media.m3u8");
    assert!(
        pl.contains("#EXT-X-PART-INF:PART-TARGET=0.20000")
            && pl.contains("#EXT-X-PART:DURATION=0.20000,URI=\"run-p39.m4s\""),
        "{pl}"
    );
    assert!(store.object("p/run-p39.m4s").is_some());
    live.window.end();
    tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .unwrap()
        .unwrap();
    // No live playlist ends in a segment line (hls.js would stop with levelParsingError).
    for p in seen.lock().unwrap().playlists.iter() {
        let last = p.trim_end().lines().last().unwrap_or("");
        assert!(
            p.contains("#EXT-X-ENDLIST") || last.starts_with("#EXT-X-PART:"),
            "live parts playlist ends in {last:?}:\n{p}"
        );
    }
    // Some playlist showed an open segment's parts before its EXTINF.
    assert!(seen
        .lock()
        .unwrap()
        .playlists
        .iter()
        .any(|p| p.trim_end().ends_with(".m4s\"") || p.trim_end().ends_with("INDEPENDENT=YES")));
}
