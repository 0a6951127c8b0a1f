//! The playlist published to static storage: a pure function of what this output has stored.
//!
//! A static store cannot hold a request until the next part exists, so the published media
//! playlist is a standard live playlist (ll-hls.md rules 1–3, 14–17): whole segments with
//! EXT-X-PROGRAM-DATE-TIME, a sliding window (or, for recordings, an EVENT playlist), and
//! EXT-X-ENDLIST at the end. No CAN-BLOCK-RELOAD, no preload hint, no delta updates. With
//! `parts` the recent parts are listed too (EXT-X-PART-INF + PART-HOLD-BACK, rule 6), for
//! clients and CDNs that poll fast enough to profit from them. PART-HOLD-BACK is 3 parts plus one
//! target duration: without blocking reload hls.js reloads a changed playlist once per target
//! duration (`computeReloadInterval`), so a player held only 3 parts from the edge runs dry
//! between reloads and stalls; one more target duration covers the reload interval.
//!
//! Media sequence numbers are the output's own (one per published segment), not the origin's
//! MSN: when an outage made the output skip segments, numbering stays contiguous and the segment
//! after the gap carries EXT-X-DISCONTINUITY. URIs keep the origin's names
//! ([`names::segment`]), so the same URI means the same bytes everywhere.

use crate::hls::playlist::{render_segment, secs, PART_HOLD_BACK_PARTS, PART_LIST_TARGETS};
use crate::hls::window::SegmentView;
use crate::media::TIMESCALE;
use std::fmt::Write;
use std::sync::Arc;

/// What the published media playlist lists.
#[derive(Debug, Clone)]
pub struct StaticPlaylist<'a> {
    pub run: &'a str,
    pub target_duration: u32,
    /// PART-TARGET in ticks when parts are published.
    pub part_target: Option<u64>,
    /// Sequence number of `segments[0]`.
    pub media_sequence: u64,
    pub discontinuity_sequence: u64,
    /// EXT-X-PLAYLIST-TYPE:EVENT (a recording that keeps every segment).
    pub event: bool,
    pub ended: bool,
    /// Oldest first. `discontinuity` is as published (gaps included). With parts the last entry
    /// may be incomplete (only its stored parts).
    pub segments: &'a [Arc<SegmentView>],
}

/// Renders the media playlist.
pub fn render_static(p: &StaticPlaylist) -> String {
    let t = p.target_duration;
    let mut o = String::with_capacity(256 + 120 * p.segments.len());
    o.push_str("#EXTM3U\n#EXT-X-VERSION:6\n");
    let _ = writeln!(o, "#EXT-X-TARGETDURATION:{t}");
    if p.event {
        o.push_str("#EXT-X-PLAYLIST-TYPE:EVENT\n");
    }
    if let Some(pt) = p.part_target {
        let _ = writeln!(
            o,
            "#EXT-X-SERVER-CONTROL:PART-HOLD-BACK={}",
            secs(pt * PART_HOLD_BACK_PARTS + u64::from(t) * TIMESCALE as u64)
        );
        let _ = writeln!(o, "#EXT-X-PART-INF:PART-TARGET={}", secs(pt));
    }
    let _ = writeln!(o, "#EXT-X-MEDIA-SEQUENCE:{}", p.media_sequence);
    let _ = writeln!(
        o,
        "#EXT-X-DISCONTINUITY-SEQUENCE:{}",
        p.discontinuity_sequence
    );
    o.push_str("#EXT-X-INDEPENDENT-SEGMENTS\n");
    // Parts only for about the last 3 target durations (rule 12).
    let list_parts_from = match p.part_target {
        None => usize::MAX,
        Some(_) => {
            let window = (t * PART_LIST_TARGETS) as u64 * TIMESCALE as u64;
            let mut from_end = 0u64;
            p.segments
                .iter()
                .rposition(|s| {
                    from_end += s.duration;
                    from_end > window
                })
                .map(|i| i + 1)
                .unwrap_or(0)
        }
    };
    let mut init = None;
    for (i, seg) in p.segments.iter().enumerate() {
        render_segment(&mut o, p.run, seg, i >= list_parts_from, &mut init);
    }
    if p.ended {
        o.push_str("#EXT-X-ENDLIST\n");
    }
    o
}

/// URIs a media playlist names (init segments, segments, parts): what must exist before it is
/// published.
pub fn named_objects(p: &StaticPlaylist) -> Vec<String> {
    render_static(p)
        .lines()
        .filter_map(|l| {
            if let Some(rest) = l
                .strip_prefix("#EXT-X-MAP:URI=\"")
                .or_else(|| l.strip_prefix("#EXT-X-PART:DURATION="))
            {
                let uri = rest.split("URI=\"").last().unwrap_or(rest);
                return uri.split('"').next().map(str::to_string);
            }
            (!l.starts_with('#') && !l.is_empty()).then(|| l.to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hls::playlist::names;
    use crate::hls::window::PartView;
    use bytes::Bytes;
    use std::time::{Duration, UNIX_EPOCH};

    const T: u64 = TIMESCALE as u64;

    fn seg(msn: u64, disc: bool, init_id: u32, parts: usize, complete: bool) -> Arc<SegmentView> {
        let parts: Vec<PartView> = (0..parts)
            .map(|i| PartView {
                global: msn * 5 + i as u64,
                duration: T / 5,
                independent: i == 0,
                data: Bytes::new(),
            })
            .collect();
        Arc::new(SegmentView {
            msn,
            pdt: UNIX_EPOCH + Duration::from_secs(1_790_000_000 + msn),
            discontinuity: disc,
            init_id,
            duration: parts.iter().map(|p| p.duration).sum(),
            parts,
            complete,
        })
    }

    #[test]
    fn sliding_window_with_gap() {
        let segs = [
            seg(7, false, 0, 5, true),
            seg(8, false, 0, 5, true),
            seg(11, true, 0, 5, true),
        ];
        let p = StaticPlaylist {
            run: "r1",
            target_duration: 1,
            part_target: None,
            media_sequence: 3,
            discontinuity_sequence: 1,
            event: false,
            ended: false,
            segments: &segs,
        };
        let want = "#EXTM3U
#EXT-X-VERSION:6
#EXT-X-TARGETDURATION:1
#EXT-X-MEDIA-SEQUENCE:3
#EXT-X-DISCONTINUITY-SEQUENCE:1
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-MAP:URI=\"r1-i0.mp4\"
#EXT-X-PROGRAM-DATE-TIME:2026-09-21T14:13:27.000Z
#EXTINF:1.00000,
r1-s7.m4s
#EXT-X-PROGRAM-DATE-TIME:2026-09-21T14:13:28.000Z
#EXTINF:1.00000,
r1-s8.m4s
#EXT-X-DISCONTINUITY
#EXT-X-PROGRAM-DATE-TIME:2026-09-21T14:13:31.000Z
#EXTINF:1.00000,
r1-s11.m4s
";
        assert_eq!(render_static(&p), want);
        assert_eq!(
            named_objects(&p),
            ["r1-i0.mp4", "r1-s7.m4s", "r1-s8.m4s", "r1-s11.m4s"]
        );
        // The playlist parses with an independent parser.
        let parsed = m3u8_rs::parse_media_playlist_res(want.as_bytes()).unwrap();
        assert_eq!(parsed.media_sequence, 3);
        assert_eq!(parsed.segments.len(), 3);
        assert!(parsed.segments[2].discontinuity);
    }

    #[test]
    fn ended_event_recording_with_format_change() {
        let segs = [seg(0, false, 0, 5, true), seg(1, true, 1, 5, true)];
        let p = StaticPlaylist {
            run: "r1",
            target_duration: 1,
            part_target: None,
            media_sequence: 0,
            discontinuity_sequence: 0,
            event: true,
            ended: true,
            segments: &segs,
        };
        let want = "#EXTM3U
#EXT-X-VERSION:6
#EXT-X-TARGETDURATION:1
#EXT-X-PLAYLIST-TYPE:EVENT
#EXT-X-MEDIA-SEQUENCE:0
#EXT-X-DISCONTINUITY-SEQUENCE:0
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-MAP:URI=\"r1-i0.mp4\"
#EXT-X-PROGRAM-DATE-TIME:2026-09-21T14:13:20.000Z
#EXTINF:1.00000,
r1-s0.m4s
#EXT-X-DISCONTINUITY
#EXT-X-MAP:URI=\"r1-i1.mp4\"
#EXT-X-PROGRAM-DATE-TIME:2026-09-21T14:13:21.000Z
#EXTINF:1.00000,
r1-s1.m4s
#EXT-X-ENDLIST
";
        assert_eq!(render_static(&p), want);
        let parsed = m3u8_rs::parse_media_playlist_res(want.as_bytes()).unwrap();
        assert!(parsed.end_list);
        assert_eq!(
            parsed.playlist_type,
            Some(m3u8_rs::MediaPlaylistType::Event)
        );
    }

    #[test]
    fn parts_near_the_edge_and_an_open_segment() {
        let segs = [
            seg(1, false, 0, 5, true),
            seg(2, false, 0, 5, true),
            seg(3, false, 0, 5, true),
            seg(4, false, 0, 5, true),
            seg(5, false, 0, 2, false),
        ];
        let p = StaticPlaylist {
            run: "r",
            target_duration: 1,
            part_target: Some(T / 5),
            media_sequence: 1,
            discontinuity_sequence: 0,
            event: false,
            ended: false,
            segments: &segs,
        };
        let text = render_static(&p);
        assert!(text.contains("#EXT-X-SERVER-CONTROL:PART-HOLD-BACK=1.60000\n#EXT-X-PART-INF:PART-TARGET=0.20000\n"), "{text}");
        assert!(
            !text.contains("CAN-BLOCK-RELOAD") && !text.contains("PRELOAD-HINT"),
            "{text}"
        );
        // 3 T of parts: segments 3, 4 and the open 5; none for 1 and 2.
        assert!(
            !text.contains("r-p5.m4s") && !text.contains("r-p14.m4s"),
            "{text}"
        );
        assert!(
            text.contains("#EXT-X-PART:DURATION=0.20000,URI=\"r-p15.m4s\",INDEPENDENT=YES\n"),
            "{text}"
        );
        assert!(
            text.ends_with("#EXT-X-PART:DURATION=0.20000,URI=\"r-p26.m4s\"\n"),
            "{text}"
        );
        let named = named_objects(&p);
        assert_eq!(named.len(), 1 + 4 + 2 * 5 + 2, "{named:?}");
        assert!(
            named.contains(&"r-p26.m4s".to_string()) && named.contains(&"r-s4.m4s".to_string())
        );
        assert_eq!(names::part("r", 26), "r-p26.m4s");
    }
}
