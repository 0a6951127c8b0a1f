//! Playlist rendering: pure functions from a window [`Snapshot`] to playlist text.
//!
//! m3u8-rs 6 cannot write LL-HLS tags, so the media playlist is rendered here (tests parse it
//! back with m3u8-rs and compare with golden files). Tag order and values follow
//! shared/docs/ll-hls.md §1; the rule numbers below refer to it.

use super::window::{SegmentView, Snapshot};
use crate::media::TIMESCALE;
use std::fmt::Write;
use std::time::SystemTime;

/// URI names of media objects. All relative, so the stream works under any path prefix.
pub mod names {
    pub const MULTIVARIANT: &str = "stream.m3u8";
    pub const MEDIA: &str = "media.m3u8";
    pub fn init(run: &str, id: u32) -> String {
        format!("{run}-i{id}.mp4")
    }
    pub fn part(run: &str, global: u64) -> String {
        format!("{run}-p{global}.m4s")
    }
    pub fn segment(run: &str, msn: u64) -> String {
        format!("{run}-s{msn}.m4s")
    }
}

/// Seconds with 5 decimals (enough that part sums equal EXTINF to within 1e-5 s).
pub fn secs(ticks: u64) -> String {
    format!("{:.5}", ticks as f64 / TIMESCALE as f64)
}

/// `2026-11-22T15:11:47.123Z`
pub fn format_pdt(t: SystemTime) -> String {
    let dt = time::OffsetDateTime::from(t);
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    dt.format(&fmt).unwrap_or_default()
}

/// PART-HOLD-BACK in part targets (>= 3 required by Apple, rule 6).
pub const PART_HOLD_BACK_PARTS: u64 = 3;
/// CAN-SKIP-UNTIL in target durations (>= 6, rule 6).
pub const SKIP_UNTIL_TARGETS: u32 = 6;
/// Parts are listed for segments within this many target durations of the live edge (rule 12).
pub const PART_LIST_TARGETS: u32 = 3;

/// How many leading segments a delta update may skip (rule 9): those that end at least
/// CAN-SKIP-UNTIL before the end of the playlist.
pub fn skippable(snap: &Snapshot) -> usize {
    let Some(t) = snap.target_duration else { return 0 };
    let until = (t * SKIP_UNTIL_TARGETS) as u64 * TIMESCALE as u64;
    let total: u64 = snap.segments.iter().map(|s| s.duration).sum();
    let mut end = 0u64;
    let mut k = 0;
    for s in &snap.segments {
        end += s.duration;
        if !s.complete || total - end < until {
            break;
        }
        k += 1;
    }
    k
}

/// `uri` with the query `q` (a signed-URL token, `crate::http::auth`) appended; `q` may be empty.
pub fn with_query(uri: String, q: &str) -> String {
    match (q.is_empty(), uri.contains('?')) {
        (true, _) => uri,
        (false, false) => format!("{uri}?{q}"),
        (false, true) => format!("{uri}&{q}"),
    }
}

/// Renders the LL-HLS media playlist. `delta` requests an EXT-X-SKIP delta update.
/// Returns `None` while the snapshot is not ready.
pub fn render_media(snap: &Snapshot, delta: bool) -> Option<String> {
    render_media_q(snap, delta, "")
}

/// [`render_media`] with the query `q` appended to every URI (init, parts, segments, preload
/// hint), for signed URLs; `""` renders exactly what [`render_media`] does.
pub fn render_media_q(snap: &Snapshot, delta: bool, q: &str) -> Option<String> {
    let t = snap.target_duration?;
    let run = &snap.run_id;
    let skip = if delta && !snap.ended { skippable(snap) } else { 0 };
    let mut o = String::with_capacity(2048);
    o.push_str("#EXTM3U\n");
    let _ = writeln!(o, "#EXT-X-VERSION:{}", if skip > 0 { 9 } else { 6 });
    let _ = writeln!(o, "#EXT-X-TARGETDURATION:{t}");
    if snap.part_target > 0 {
        let _ = writeln!(
            o,
            "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,CAN-SKIP-UNTIL={:.1},PART-HOLD-BACK={}",
            (t * SKIP_UNTIL_TARGETS) as f64,
            secs(snap.part_target * PART_HOLD_BACK_PARTS)
        );
        let _ = writeln!(o, "#EXT-X-PART-INF:PART-TARGET={}", secs(snap.part_target));
    }
    let _ = writeln!(o, "#EXT-X-MEDIA-SEQUENCE:{}", snap.media_sequence());
    let _ = writeln!(o, "#EXT-X-DISCONTINUITY-SEQUENCE:{}", snap.discontinuity_sequence);
    o.push_str("#EXT-X-INDEPENDENT-SEGMENTS\n");
    if matches!(snap.awaiting_idr, Some((_, true))) {
        // A comment (RFC 8216 4.1: lines starting with '#' but not '#EXT' are ignored by players)
        // for whoever reads the playlist while the stream is stuck.
        o.push_str(NO_IDR_COMMENT);
    }
    if skip > 0 {
        let _ = writeln!(o, "#EXT-X-SKIP:SKIPPED-SEGMENTS={skip}");
    }
    // Parts are listed only near the live edge.
    let part_window = (t * PART_LIST_TARGETS) as u64 * TIMESCALE as u64;
    let mut from_end = 0u64;
    let list_parts_from = snap
        .segments
        .iter()
        .rposition(|s| {
            from_end += s.duration;
            from_end > part_window
        })
        .map(|i| i + 1)
        .unwrap_or(0);
    let mut init = None;
    for (i, seg) in snap.segments.iter().enumerate().skip(skip) {
        render_segment_q(&mut o, run, seg, i >= list_parts_from, &mut init, q);
    }
    if snap.ended {
        o.push_str("#EXT-X-ENDLIST\n");
    } else if snap.part_target > 0 {
        let _ = writeln!(o, "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"{}\"", with_query(names::part(run, snap.next_part), q));
    }
    Some(o)
}

/// Comment line in the media playlist while the segmenter waits for an IDR after ending a segment
/// at the maximum length (the encoder sends none): says what to fix.
pub const NO_IDR_COMMENT: &str = "# hlsd: no IDR (keyframe) from the encoder within the maximum segment length: new frames \
     are dropped until the next IDR. Set the encoder's IDR interval (rpicam-vid --intra 30, ffmpeg -g 30) and disable \
     intra refresh.\n";

/// One segment: DISCONTINUITY, MAP (when the init changes), PDT, its parts (if `parts` or open), EXTINF + URI.
pub fn render_segment(o: &mut String, run: &str, seg: &SegmentView, parts: bool, init: &mut Option<u32>) {
    render_segment_q(o, run, seg, parts, init, "")
}

/// [`render_segment`] with the query `q` appended to its URIs.
pub fn render_segment_q(o: &mut String, run: &str, seg: &SegmentView, parts: bool, init: &mut Option<u32>, q: &str) {
    if seg.discontinuity {
        o.push_str("#EXT-X-DISCONTINUITY\n");
    }
    if *init != Some(seg.init_id) {
        let _ = writeln!(o, "#EXT-X-MAP:URI=\"{}\"", with_query(names::init(run, seg.init_id), q));
        *init = Some(seg.init_id);
    }
    let _ = writeln!(o, "#EXT-X-PROGRAM-DATE-TIME:{}", format_pdt(seg.pdt));
    if parts || !seg.complete {
        for p in &seg.parts {
            let _ = writeln!(
                o,
                "#EXT-X-PART:DURATION={},URI=\"{}\"{}",
                secs(p.duration),
                with_query(names::part(run, p.global), q),
                if p.independent { ",INDEPENDENT=YES" } else { "" }
            );
        }
    }
    if seg.complete {
        let _ = writeln!(o, "#EXTINF:{},", secs(seg.duration));
        let _ = writeln!(o, "{}", with_query(names::segment(run, seg.msn), q));
    }
}

/// Renders the multivariant playlist (one variant) naming `media.m3u8`. `None` until the
/// format is known.
pub fn render_multivariant(snap: &Snapshot) -> Option<String> {
    render_multivariant_to(snap, names::MEDIA)
}

/// Renders the multivariant playlist naming `media_uri` (the origin adds `?run=ID`, so that
/// blocking-reload URLs, which caches keep for 6 T, never repeat across restarts).
pub fn render_multivariant_to(snap: &Snapshot, media_uri: &str) -> Option<String> {
    let info = snap.info()?;
    let (avg, peak) = snap.bandwidth();
    // Before the first segment completes, estimate from the first parts.
    let peak = if peak == 0 { 2_000_000 } else { peak };
    let avg = if avg == 0 { peak } else { avg };
    let mut o = String::with_capacity(256);
    o.push_str("#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-INDEPENDENT-SEGMENTS\n");
    let _ = writeln!(
        o,
        "#EXT-X-STREAM-INF:BANDWIDTH={peak},AVERAGE-BANDWIDTH={avg},CODECS=\"{}\",RESOLUTION={}x{},FRAME-RATE={:.3}",
        info.codec_string(),
        info.width,
        info.height,
        info.frame_rate()
    );
    let _ = writeln!(o, "{media_uri}");
    Some(o)
}

/// Renders a VOD playlist (offline `hlsd segment`): all segments, no parts, ENDLIST.
pub fn render_vod(target: u32, segments: &[(u64, u64, bool, u32)], run: &str) -> String {
    let mut o = String::new();
    o.push_str("#EXTM3U\n#EXT-X-VERSION:6\n");
    let _ = writeln!(o, "#EXT-X-TARGETDURATION:{target}");
    o.push_str("#EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-MEDIA-SEQUENCE:0\n#EXT-X-INDEPENDENT-SEGMENTS\n");
    let mut init = None;
    for &(msn, duration, disc, init_id) in segments {
        if disc {
            o.push_str("#EXT-X-DISCONTINUITY\n");
        }
        if init != Some(init_id) {
            let _ = writeln!(o, "#EXT-X-MAP:URI=\"{}\"", names::init(run, init_id));
            init = Some(init_id);
        }
        let _ = writeln!(o, "#EXTINF:{},", secs(duration));
        let _ = writeln!(o, "{}", names::segment(run, msn));
    }
    o.push_str("#EXT-X-ENDLIST\n");
    o
}

#[cfg(test)]
#[path = "playlist_tests.rs"]
pub(crate) mod tests;
