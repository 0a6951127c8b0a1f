//! The live origin with the built-in test source: LL-HLS playlist rules over many reloads,
//! blocking reload, delta updates, preload-hinted part requests, HTTP headers (content types,
//! caching, CORS, gzip, h2c), ffprobe of init + parts, and graceful shutdown (ENDLIST).
//!
//! One server (320x240 testsrc, window 8) is shared by all assertions; the test follows the
//! stream with hls.js-style part reloads until the window has slid (~10 s).

mod common;

use common::rules::{assert_valid, MediaPlaylist, Rules, Tracker};
use common::*;
use std::io::Read;
use std::time::{Duration, Instant};

const PLAYLIST_CT: &str = "application/vnd.apple.mpegurl";

fn assert_cors(r: &Resp, what: &str) {
    assert_eq!(
        r.header("access-control-allow-origin").as_deref(),
        Some("*"),
        "{what}: CORS header missing: {:?}",
        r.headers
    );
}

fn assert_error(r: &Resp, status: u16, what: &str) {
    assert_eq!(
        r.status,
        status,
        "{what}: body {:?}",
        String::from_utf8_lossy(&r.body)
    );
    assert_cors(r, what);
    assert_eq!(
        r.header("cache-control").as_deref(),
        Some("no-store"),
        "{what}: errors must not be cached"
    );
}

fn assert_immutable(r: &Resp, ct: &str, what: &str) {
    assert_eq!(r.status, 200, "{what}");
    assert_eq!(
        r.header("content-type").as_deref(),
        Some(ct),
        "{what}: content type"
    );
    let cc = r.header("cache-control").unwrap_or_default();
    assert!(
        cc.contains("immutable") && cc.contains("max-age="),
        "{what}: Cache-Control {cc:?}"
    );
    assert_cors(r, what);
    assert_eq!(
        r.header("content-length")
            .and_then(|l| l.parse::<usize>().ok()),
        Some(r.body.len()),
        "{what}: Content-Length"
    );
}

fn max_age(cc: &str) -> Option<u64> {
    cc.split(',')
        .find_map(|d| d.trim().strip_prefix("max-age="))
        .and_then(|v| v.parse().ok())
}

fn gunzip(b: &[u8]) -> String {
    let mut s = String::new();
    flate2::read::GzDecoder::new(b)
        .read_to_string(&mut s)
        .expect("valid gzip body");
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn testsrc_live_ll_hls() {
    let mut srv = Hlsd::start(&[
        "--source",
        "testsrc",
        "--width",
        "320",
        "--height",
        "240",
        "--bitrate",
        "300000",
        "--window",
        "8",
    ]);
    let base = srv.base.clone();
    let c = client();
    let rules = Rules::default();
    let mut tr = Tracker::new();

    // The first (non-blocking) request waits until the stream is ready.
    let r = get(&c, &format!("{base}/media.m3u8")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type").as_deref(), Some(PLAYLIST_CT));
    let mut pl = assert_valid(&r.text(), &rules);
    tr.observe(&pl);
    let t = pl.target.unwrap();
    assert_eq!(t, 1, "1 s segments with IDR every 30 frames at 30 fps");
    let p = pl.part_target.unwrap();
    assert!(
        (p - 0.2).abs() < 1e-9,
        "PART-TARGET {p}: 0.2 s is exactly 6 frames at 30 fps"
    );
    let first_part = pl
        .parts()
        .first()
        .map(|x| x.2.uri.clone())
        .expect("a part is listed");
    let first_map = pl.segments[0].map.clone().unwrap();

    let mut hint_fetches = Vec::new();
    let mut blocking_done = false;
    let mut delta_done = false;
    let started = Instant::now();
    loop {
        // hls.js-style reload: block until the next part exists.
        let (m, n) = pl.next_part_position();
        let q = format!("_HLS_msn={m}&_HLS_part={n}");
        let r = get(&c, &format!("{base}/media.m3u8?{q}")).await;
        assert_eq!(r.status, 200, "{q}: {:?}", String::from_utf8_lossy(&r.body));
        let cc = r.header("cache-control").unwrap_or_default();
        assert_eq!(
            max_age(&cc),
            Some(6 * t),
            "blocking playlist Cache-Control {cc:?} (6 T)"
        );
        let new = assert_valid(&r.text(), &rules);
        assert!(
            new.has_part_or_later(m, n),
            "rule 8b: {q} answered without that part:\n{}",
            new.text
        );
        tr.observe(&new);
        pl = new;

        // Preload hint: ask for the hinted part right away; it is held until published.
        if let Some(h) = pl.part_hint() {
            let (c2, url) = (c.clone(), resolve(&base, &h));
            hint_fetches.push((h, tokio::spawn(async move { get(&c2, &url).await })));
        }

        let complete = pl.complete().count();
        if !blocking_done && complete >= 2 {
            blocking_checks(&c, &base, &mut tr, &rules).await;
            pl = tr.last().unwrap().clone();
            blocking_done = true;
        }
        if !delta_done && complete >= 8 {
            delta_checks(&c, &base, &tr, &rules).await;
            delta_done = true;
        }
        if delta_done && pl.media_sequence.unwrap() >= 1 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "window did not slide in 60 s:\n{}",
            pl.text
        );
    }
    assert!(tr.reloads >= 20, "only {} reloads", tr.reloads);
    assert!(
        tr.hints_confirmed >= 15,
        "only {} preload hints confirmed by later playlists",
        tr.hints_confirmed
    );

    eprintln!(
        "testsrc: {} reloads checked, {} preload hints confirmed, {} hinted parts fetched",
        tr.reloads,
        tr.hints_confirmed,
        hint_fetches.len()
    );
    // Rule 8c: an MSN older than the window is answered at once with the whole playlist.
    for q in [
        "_HLS_msn=0",
        "_HLS_msn=0&_HLS_part=0",
        "_HLS_msn=0&_HLS_part=99",
    ] {
        let text = media(&c, &base, q).await;
        let old = assert_valid(&text, &rules);
        assert!(
            old.media_sequence.unwrap() >= 1 && old.skipped.is_none(),
            "{q}: {text}"
        );
        tr.observe(&old);
    }
    // Rules 12/18: the segment and the parts that left the playlist are still downloadable.
    let s0 = pl.segments[0]
        .uri
        .clone()
        .unwrap()
        .replace(&format!("-s{}.m4s", pl.segments[0].msn), "-s0.m4s");
    assert!(
        !pl.complete().any(|s| s.msn == 0),
        "segment 0 should have left the window"
    );
    let r0 = get(&c, &resolve(&base, &s0)).await;
    assert_immutable(&r0, "video/iso.segment", "retired segment 0");
    let rp0 = get(&c, &resolve(&base, &first_part)).await;
    assert_immutable(&rp0, "video/iso.segment", "first part (no longer listed)");
    let init0 = get(&c, &resolve(&base, &first_map)).await;
    assert_immutable(&init0, "video/mp4", "init segment");
    let mut whole = init0.body.to_vec();
    whole.extend_from_slice(&r0.body);
    let dir = tempfile::tempdir().unwrap();
    let probe = probe_bytes(dir.path(), "s0.mp4", &whole);
    assert_eq!(
        (probe.codec.as_str(), probe.width, probe.height),
        ("h264", 320, 240),
        "{probe:?}"
    );
    assert_eq!(probe.frames, 30, "segment 0 = 1 s at 30 fps: {probe:?}");

    // Held preload-hint requests: all 200, same bytes as a later GET of the part.
    let n_hints = hint_fetches.len();
    for (uri, h) in hint_fetches {
        let held = h.await.unwrap();
        assert_immutable(
            &held,
            "video/iso.segment",
            &format!("held hinted part {uri}"),
        );
        let later = get(&c, &resolve(&base, &uri)).await;
        assert_eq!(later.status, 200, "{uri}");
        assert!(
            held.body == later.body,
            "hinted part {uri}: held response differs from a later GET"
        );
    }
    assert!(n_hints >= 15, "{n_hints} hinted parts fetched");

    http_checks(&c, &base, &tr).await;
    ffprobe_checks(&c, &base, tr.last().unwrap(), dir.path()).await;
    shutdown_check(&c, &mut srv, &tr, &rules).await;
}

/// Rule 8: blocking reload directives.
async fn blocking_checks(c: &reqwest::Client, base: &str, tr: &mut Tracker, rules: &Rules) {
    let now = MediaPlaylist::parse(&media(c, base, "").await);
    let l = now.last_complete_msn().expect("a complete segment");
    // 8e: more than two segments ahead -> 400 at once.
    for q in [
        format!("_HLS_msn={}", l + 4),
        format!("_HLS_msn={}&_HLS_part=0", l + 4),
    ] {
        let r = get(c, &format!("{base}/media.m3u8?{q}")).await;
        assert_error(&r, 400, &q);
    }
    // 8d: _HLS_part without _HLS_msn -> 400; malformed values -> 400.
    for q in ["_HLS_part=1", "_HLS_msn=abc", "_HLS_msn=1&_HLS_part=-1"] {
        let r = get(c, &format!("{base}/media.m3u8?{q}")).await;
        assert_error(&r, 400, q);
    }
    // 8e: a part far beyond the last listed one (more than 3/P parts) -> 400.
    // (If segment m completes meanwhile, (m, n+40) means (m+1, 0) and 200 is right too.)
    let fresh = MediaPlaylist::parse(
        &media(c, base, &{
            let (m, n) = now.next_part_position();
            format!("_HLS_msn={m}&_HLS_part={n}")
        })
        .await,
    );
    if let Some(open) = fresh.segments.last().filter(|s| !s.complete()) {
        let q = format!("_HLS_msn={}&_HLS_part={}", open.msn, open.parts.len() + 40);
        let r = get(c, &format!("{base}/media.m3u8?{q}")).await;
        if r.status == 200 {
            let pl = MediaPlaylist::parse(&r.text());
            assert!(
                pl.complete().any(|s| s.msn == open.msn),
                "{q}: 200 but segment {} is not complete:\n{}",
                open.msn,
                pl.text
            );
        } else {
            assert_error(&r, 400, &q);
        }
    }
    // Unknown query parameters are ignored (cache busters).
    let text = media(c, base, "cb=123").await;
    tr.observe(&assert_valid(&text, rules));

    // 8a: L+2 blocks until segment L+2 is complete, then answers with a playlist holding it.
    let latest = MediaPlaylist::parse(&media(c, base, "").await);
    let l = latest.last_complete_msn().unwrap();
    let target = l + 2;
    assert!(latest.complete().all(|s| s.msn < target));
    let text = media(c, base, &format!("_HLS_msn={target}")).await;
    let got = assert_valid(&text, rules);
    assert!(
        got.complete().any(|s| s.msn == target),
        "_HLS_msn={target} answered without segment {target}:\n{text}"
    );
    tr.observe(&got);
    // 8b: the next part, then the part after the open segment's last one.
    let (m, n) = got.next_part_position();
    let text = media(c, base, &format!("_HLS_msn={m}&_HLS_part={n}")).await;
    let got = assert_valid(&text, rules);
    assert!(
        got.has_part_or_later(m, n),
        "_HLS_msn={m}&_HLS_part={n}:\n{text}"
    );
    tr.observe(&got);
    // 8c: already satisfied -> the current playlist.
    let text = media(c, base, &format!("_HLS_msn={l}")).await;
    tr.observe(&assert_valid(&text, rules));
}

/// Rule 9: delta updates.
async fn delta_checks(c: &reqwest::Client, base: &str, tr: &Tracker, rules: &Rules) {
    for attempt in 0..10 {
        let full1 = MediaPlaylist::parse(&media(c, base, "").await);
        let (m, n) = full1.next_part_position();
        let delta_text = media(c, base, "_HLS_skip=YES").await;
        let blocking_delta = media(
            c,
            base,
            &format!("_HLS_msn={m}&_HLS_part={n}&_HLS_skip=YES"),
        )
        .await;
        let v2 = media(c, base, "_HLS_skip=v2").await;
        let full2 = MediaPlaylist::parse(&media(c, base, "").await);
        if full1.media_sequence != full2.media_sequence
            || full1.last_complete_msn() != full2.last_complete_msn()
        {
            assert!(attempt < 9, "the window kept moving during delta checks");
            continue; // a segment completed in between: compare again
        }
        for text in [&delta_text, &blocking_delta, &v2] {
            let d = assert_valid(text, rules);
            let k = d.skipped.unwrap_or_else(|| {
                panic!(
                    "rule 9: no EXT-X-SKIP in a delta update with {} s listed:\n{text}\nfull:\n{}",
                    full1.listed_duration(),
                    full1.text
                )
            });
            assert!(k >= 1);
            assert!(d.version.unwrap() >= 9, "rule 9: version {:?}", d.version);
            assert_eq!(
                d.media_sequence, full1.media_sequence,
                "rule 9: MEDIA-SEQUENCE must stay unchanged"
            );
            assert_eq!(
                d.discontinuity_sequence, full1.discontinuity_sequence,
                "rule 9: DISCONTINUITY-SEQUENCE unchanged"
            );
            // The first listed MSN is MEDIA-SEQUENCE + k: the URIs agree with the full playlist.
            for s in d.complete() {
                let f = full2.segment(s.msn).unwrap_or_else(|| {
                    panic!("delta lists MSN {} unknown to the full playlist", s.msn)
                });
                assert_eq!(f.uri, s.uri, "delta MSN {} numbering", s.msn);
            }
            let v = tr.consistency(&d);
            assert!(
                v.is_empty(),
                "delta update disagrees with earlier reloads: {v:?}\n{text}"
            );
            assert!(d.segments.len() + k as usize >= full1.segments.len());
        }
        return;
    }
}

/// HTTP: content types, caching, CORS, gzip, 404s, h2c, health, metrics.
async fn http_checks(c: &reqwest::Client, base: &str, tr: &Tracker) {
    let pl = tr.last().unwrap();
    let t = pl.target.unwrap();

    // Multivariant playlist.
    let r = get(c, &format!("{base}/stream.m3u8")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type").as_deref(), Some(PLAYLIST_CT));
    assert_cors(&r, "multivariant");
    match m3u8_rs::parse_playlist_res(&r.body) {
        Ok(m3u8_rs::Playlist::MasterPlaylist(m)) => {
            assert_eq!(m.variants.len(), 1, "{}", r.text());
            let v = &m.variants[0];
            // The run id in the query keeps blocking-reload URLs unique per run.
            assert!(v.uri.starts_with("media.m3u8?run="), "{}", v.uri);
            assert!(v.bandwidth > 0);
            assert!(
                v.codecs.as_deref().unwrap_or("").starts_with("avc1."),
                "CODECS {:?}",
                v.codecs
            );
            let res = v.resolution.unwrap();
            assert_eq!((res.width, res.height), (320, 240));
            assert!((v.frame_rate.unwrap() - 30.0).abs() < 0.01);
        }
        other => panic!("multivariant playlist: {other:?}\n{}", r.text()),
    }

    // Media playlist: identity and gzip.
    let r = get(c, &format!("{base}/media.m3u8")).await;
    assert_eq!(r.header("content-type").as_deref(), Some(PLAYLIST_CT));
    assert!(
        r.header("content-encoding").is_none(),
        "gzip without Accept-Encoding"
    );
    let cc = r.header("cache-control").unwrap_or_default();
    assert!(
        cc == "no-cache" || max_age(&cc).is_some_and(|a| a as f64 <= t as f64 / 2.0),
        "non-blocking playlist Cache-Control {cc:?} (<= T/2)"
    );
    assert!(
        r.header("vary")
            .unwrap_or_default()
            .to_ascii_lowercase()
            .contains("accept-encoding"),
        "Vary: {:?}",
        r.headers
    );
    assert_cors(&r, "media playlist");
    for (path, what) in [
        ("/media.m3u8", "media"),
        ("/stream.m3u8", "multivariant"),
        ("/media.m3u8?_HLS_skip=YES", "delta"),
    ] {
        let r = get_with(
            c,
            &format!("{base}{path}"),
            &[("accept-encoding", "gzip, deflate")],
        )
        .await;
        assert_eq!(r.status, 200);
        assert_eq!(
            r.header("content-encoding").as_deref(),
            Some("gzip"),
            "{what}: no gzip"
        );
        assert!(
            r.header("vary")
                .unwrap_or_default()
                .to_ascii_lowercase()
                .contains("accept-encoding"),
            "{what}: Vary"
        );
        let text = gunzip(&r.body);
        assert!(
            text.starts_with("#EXTM3U\n"),
            "{what}: gunzipped body {text:?}"
        );
        if what != "multivariant" {
            assert_valid(&text, &Rules::default());
        }
    }
    let r = get_with(
        c,
        &format!("{base}/media.m3u8"),
        &[("accept-encoding", "gzip;q=0, identity")],
    )
    .await;
    assert!(
        r.header("content-encoding").is_none(),
        "gzip;q=0 must not get gzip"
    );
    assert!(r.text().starts_with("#EXTM3U\n"));

    // 404s: unknown path, a part that is neither published nor hinted, another run's object.
    let hint = pl.part_hint().unwrap();
    let g = common::rules::part_number(&hint).unwrap();
    let future = hint.replace(&format!("-p{g}.m4s"), &format!("-p{}.m4s", g + 50));
    for path in [
        "/nope.txt".to_string(),
        "/a/b/media.m3u8".into(),
        format!("/{future}"),
        "/zzzzzz-p1.m4s".into(),
        format!("/{}", hint.replace(".m4s", ".mp4")),
    ] {
        let r = get(c, &format!("{base}{path}")).await;
        assert_error(&r, 404, &path);
    }
    // Method not allowed keeps CORS too; the CORS preflight is answered.
    let r = c.post(format!("{base}/media.m3u8")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 405);
    assert_eq!(
        r.headers()
            .get("access-control-allow-origin")
            .map(|v| v.to_str().unwrap()),
        Some("*")
    );
    let r = c
        .request(reqwest::Method::OPTIONS, format!("{base}/media.m3u8"))
        .header("origin", "http://example.com")
        .header("access-control-request-method", "GET")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "preflight {}", r.status());
    assert_eq!(
        r.headers()
            .get("access-control-allow-origin")
            .map(|v| v.to_str().unwrap()),
        Some("*")
    );
    // Preflight only for served paths: anything else is 404 whatever the method.
    let r = c
        .request(reqwest::Method::OPTIONS, format!("{base}/no-such-thing.txt"))
        .header("origin", "http://example.com")
        .header("access-control-request-method", "GET")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);

    // Health and metrics.
    let r = get(c, &format!("{base}/healthz")).await;
    assert_eq!(r.status, 200);
    assert!(r.text().contains("\"stream\":\"live\""), "{}", r.text());
    let r = get(c, &format!("{base}/metrics")).await;
    assert_eq!(r.status, 200);
    assert!(r.text().contains("hlsd_parts"), "{}", r.text());

    // The player page.
    let r = get(c, &format!("{base}/")).await;
    assert_eq!(r.status, 200);
    assert!(r
        .header("content-type")
        .unwrap_or_default()
        .starts_with("text/html"));

    // h2c with prior knowledge on the same port: playlist, blocking reload, part.
    let h2 = h2_client();
    let r = get(&h2, &format!("{base}/media.m3u8")).await;
    assert_eq!(r.version, reqwest::Version::HTTP_2);
    let now = assert_valid(&r.text(), &Rules::default());
    let (m, n) = now.next_part_position();
    let r = get(
        &h2,
        &format!("{base}/media.m3u8?_HLS_msn={m}&_HLS_part={n}"),
    )
    .await;
    assert_eq!((r.status, r.version), (200, reqwest::Version::HTTP_2));
    let got = assert_valid(&r.text(), &Rules::default());
    assert!(got.has_part_or_later(m, n));
    let part = &got.parts().last().unwrap().2.uri;
    let r = get(&h2, &resolve(base, part)).await;
    assert_eq!(r.version, reqwest::Version::HTTP_2);
    assert_immutable(&r, "video/iso.segment", "part over h2");
    let r1 = get(c, &resolve(base, part)).await;
    assert!(r1.body == r.body, "h2 and h1 bodies of {part} differ");
}

/// ffprobe: init + the parts of complete segments decode to the right number of frames; a whole
/// segment is the concatenation of its parts.
async fn ffprobe_checks(
    c: &reqwest::Client,
    base: &str,
    pl: &MediaPlaylist,
    dir: &std::path::Path,
) {
    let segs: Vec<_> = pl.complete().filter(|s| !s.parts.is_empty()).collect();
    assert!(
        segs.len() >= 2,
        "need complete segments with parts listed:\n{}",
        pl.text
    );
    let map = segs[0].map.clone().unwrap();
    let mut uris = vec![map.clone()];
    let mut seconds = 0.0;
    for s in &segs {
        let parts: Vec<String> = s.parts.iter().map(|p| p.uri.clone()).collect();
        let cat = download_concat(c, base, &parts).await;
        let whole = get(c, &resolve(base, s.uri.as_ref().unwrap())).await;
        assert_immutable(&whole, "video/iso.segment", "segment");
        assert!(
            whole.body[..] == cat[..],
            "segment {} differs from the concatenation of its parts",
            s.msn
        );
        uris.extend(parts);
        seconds += s.parts_sum();
    }
    let data = download_concat(c, base, &uris).await;
    let probe = probe_bytes(dir, "parts.mp4", &data);
    let expect = (seconds * 30.0).round() as u64;
    assert_eq!(
        probe.frames, expect,
        "{} s of parts at 30 fps: {probe:?}",
        seconds
    );
    assert_eq!(probe.packets, expect);
    assert_eq!(
        (probe.codec.as_str(), probe.width, probe.height),
        ("h264", 320, 240)
    );
    assert_eq!(
        probe.keyframes,
        segs.len() as u64,
        "one IDR per segment (testsrc keyint 30)"
    );
    for w in probe.pts.windows(2) {
        let d = w[1] - w[0];
        assert!(
            (d - 1.0 / 30.0).abs() < 0.002,
            "pts step {d} (tfdt continuity across parts/segments): {:?}",
            probe.pts
        );
    }
    assert!(
        probe.errors.trim().is_empty(),
        "decode errors: {}",
        probe.errors
    );
}

/// SIGTERM: a held blocking request is answered with an ENDLIST playlist; exit status 0.
async fn shutdown_check(c: &reqwest::Client, srv: &mut Hlsd, tr: &Tracker, rules: &Rules) {
    let base = srv.base.clone();
    let now = MediaPlaylist::parse(&media(c, &base, "").await);
    let target = now.last_complete_msn().unwrap() + 2;
    async fn blocked(c: &reqwest::Client, base: &str) -> f64 {
        let m = get(c, &format!("{base}/metrics")).await.text();
        m.lines()
            .find_map(|l| l.strip_prefix("hlsd_http_blocked_requests "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    }
    assert_eq!(
        blocked(c, &base).await,
        0.0,
        "no request should be held now"
    );
    let (c2, url) = (c.clone(), format!("{base}/media.m3u8?_HLS_msn={target}"));
    let held = tokio::spawn(async move { get(&c2, &url).await });
    // Wait (event: the server's gauge) until the request is held, then stop the server.
    let deadline = Instant::now() + Duration::from_secs(10);
    while blocked(c, &base).await < 1.0 {
        assert!(Instant::now() < deadline, "request never held");
        tokio::task::yield_now().await;
    }
    srv.terminate();
    let r = held.await.unwrap();
    assert_eq!(
        r.status,
        200,
        "held request at shutdown: {:?}",
        String::from_utf8_lossy(&r.body)
    );
    let end = assert_valid(&r.text(), rules);
    assert!(
        end.endlist,
        "SIGTERM: playlist must end with EXT-X-ENDLIST:\n{}",
        end.text
    );
    assert!(end.hints.is_empty());
    let v = tr.consistency(&end);
    assert!(v.is_empty(), "{v:?}");
    let st = tokio::task::block_in_place(|| srv.wait_exit(Duration::from_secs(15)))
        .expect("hlsd exits after SIGTERM");
    assert!(
        st.success(),
        "exit status after SIGTERM: {st:?}\n{}",
        srv.stderr()
    );
    srv.assert_no_panic();
}

/// An encoder keyframe interval that divides the segment duration (as --segment-duration's help
/// recommends): IDR every 15 frames (0.5 s), 1 s segments, 0.2 s parts. Every part keeps rule 4
/// (>= 85 % of PART-TARGET unless INDEPENDENT or the last of its segment), every part holding
/// an IDR is INDEPENDENT and starts with it, and TARGETDURATION stays 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn testsrc_keyint_dividing_the_segment() {
    let srv = Hlsd::start(&[
        "--source",
        "testsrc",
        "--width",
        "320",
        "--height",
        "240",
        "--bitrate",
        "300000",
        "--keyint",
        "15",
    ]);
    let c = client();
    let f = follow(
        &c,
        &srv.base,
        &Rules::default(),
        |pl| pl.complete().count() >= 3,
        500,
    )
    .await;
    let pl = &f.last;
    assert_eq!(pl.target, Some(1), "{}", pl.text);
    let dir = tempfile::tempdir().unwrap();
    let groups = probe_playlist(&c, &srv.base, pl, dir.path()).await;
    let (probe, samples, segs) = &groups[0];
    assert_eq!(probe.frames, *samples);
    assert!(*segs >= 3);
    assert_eq!(
        probe.keyframes * 15,
        *samples,
        "an IDR every 15 frames: {probe:?}"
    );
    srv.assert_no_panic();
}
