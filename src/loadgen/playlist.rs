//! The little of a media playlist a viewer needs: server control (blocking reload, skip), the
//! init segment, complete segments and parts with their end time in PROGRAM-DATE-TIME terms,
//! the preload hint, and the next (MSN, part) to ask a blocking reload for. Full and delta
//! (`EXT-X-SKIP`) playlists; anything unknown is ignored, as a player would.

use super::LoadError;

/// A complete segment or a part, with its end in Unix milliseconds when a PDT tag dates it.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub msn: u64,
    pub uri: String,
    pub end_ms: Option<f64>,
}

/// A parsed media playlist.
#[derive(Debug, Default)]
pub struct Media {
    pub target_duration: f64,
    pub can_block: bool,
    pub can_skip: bool,
    pub ended: bool,
    pub map_uri: Option<String>,
    /// Complete segments (those with an `EXTINF`), oldest first; skipped ones are not listed.
    pub segments: Vec<Item>,
    /// Every listed part, oldest first.
    pub parts: Vec<Item>,
    pub hint: Option<String>,
    /// MSN of the segment after the last complete one (the open one, when it has parts).
    pub open_msn: u64,
    /// Parts listed for `open_msn`.
    pub open_parts: u64,
}

/// Unix milliseconds of an ISO 8601 / RFC 3339 date-time.
fn pdt_ms(s: &str) -> Option<f64> {
    let t = time::OffsetDateTime::parse(s.trim(), &time::format_description::well_known::Rfc3339).ok()?;
    Some(t.unix_timestamp_nanos() as f64 / 1e6)
}

/// Value of `KEY=` in an attribute list (quoted or not).
fn attr<'a>(list: &'a str, key: &str) -> Option<&'a str> {
    let mut rest = list;
    while !rest.is_empty() {
        let eq = rest.find('=')?;
        let k = rest[..eq].trim_start_matches(',').trim();
        let v = &rest[eq + 1..];
        let (val, tail) = if let Some(q) = v.strip_prefix('"') {
            let end = q.find('"')?;
            (&q[..end], &q[end + 1..])
        } else {
            let end = v.find(',').unwrap_or(v.len());
            (&v[..end], &v[end..])
        };
        if k == key {
            return Some(val);
        }
        rest = tail.trim_start_matches(',');
    }
    None
}

/// Parses a media playlist.
pub fn parse_media(text: &str) -> Result<Media, LoadError> {
    if !text.starts_with("#EXTM3U") {
        return Err(LoadError::Parse("playlist does not start with #EXTM3U".into()));
    }
    let mut m = Media::default();
    let mut msn = 0u64;
    let mut clock: Option<f64> = None; // start of the current segment, Unix ms
    let mut part_clock: Option<f64> = None; // end of the last part of the current segment
    let mut extinf: Option<f64> = None;
    let mut open_parts = 0u64;
    for line in text.lines().map(str::trim) {
        if let Some(v) = line.strip_prefix("#EXT-X-TARGETDURATION:") {
            m.target_duration = v.parse().unwrap_or(0.0);
        } else if let Some(v) = line.strip_prefix("#EXT-X-MEDIA-SEQUENCE:") {
            msn = v.parse().map_err(|_| LoadError::Parse(format!("bad media sequence {v:?}")))?;
        } else if let Some(v) = line.strip_prefix("#EXT-X-SERVER-CONTROL:") {
            m.can_block = attr(v, "CAN-BLOCK-RELOAD") == Some("YES");
            m.can_skip = attr(v, "CAN-SKIP-UNTIL").is_some();
        } else if let Some(v) = line.strip_prefix("#EXT-X-SKIP:") {
            msn += attr(v, "SKIPPED-SEGMENTS").and_then(|n| n.parse().ok()).unwrap_or(0);
        } else if let Some(v) = line.strip_prefix("#EXT-X-MAP:") {
            m.map_uri = attr(v, "URI").map(str::to_owned);
        } else if let Some(v) = line.strip_prefix("#EXT-X-PROGRAM-DATE-TIME:") {
            clock = pdt_ms(v);
            part_clock = clock;
        } else if let Some(v) = line.strip_prefix("#EXT-X-PART:") {
            let dur: f64 = attr(v, "DURATION").and_then(|d| d.parse().ok()).unwrap_or(0.0);
            part_clock = part_clock.map(|c| c + dur * 1000.0);
            if let Some(uri) = attr(v, "URI") {
                m.parts.push(Item { msn, uri: uri.to_owned(), end_ms: part_clock });
            }
            open_parts += 1;
        } else if let Some(v) = line.strip_prefix("#EXTINF:") {
            extinf = v.split(',').next().and_then(|d| d.trim().parse().ok());
        } else if let Some(v) = line.strip_prefix("#EXT-X-PRELOAD-HINT:") {
            if attr(v, "TYPE") == Some("PART") {
                m.hint = attr(v, "URI").map(str::to_owned);
            }
        } else if line == "#EXT-X-ENDLIST" {
            m.ended = true;
        } else if !line.is_empty() && !line.starts_with('#') {
            let end = clock.zip(extinf).map(|(c, d)| c + d * 1000.0);
            m.segments.push(Item { msn, uri: line.to_owned(), end_ms: end });
            msn += 1;
            clock = end;
            part_clock = end;
            extinf = None;
            open_parts = 0;
        }
    }
    m.open_msn = msn;
    m.open_parts = open_parts;
    Ok(m)
}

/// URI of the first variant of a multivariant playlist, or `None` for a media playlist.
pub fn first_variant(text: &str) -> Option<&str> {
    let mut lines = text.lines().map(str::trim);
    while let Some(l) = lines.next() {
        if l.starts_with("#EXT-X-STREAM-INF") {
            return lines.find(|l| !l.is_empty() && !l.starts_with('#'));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const LL: &str = "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.6,CAN-SKIP-UNTIL=6.0\n\
#EXT-X-PART-INF:PART-TARGET=0.2\n#EXT-X-MEDIA-SEQUENCE:4\n#EXT-X-MAP:URI=\"r-i0.mp4\"\n\
#EXT-X-PROGRAM-DATE-TIME:2026-12-02T04:16:15.000Z\n#EXT-X-PART:DURATION=0.5,URI=\"r-p0.m4s\",INDEPENDENT=YES\n\
#EXT-X-PART:DURATION=0.5,URI=\"r-p1.m4s\"\n#EXTINF:1.0,\nr-s4.m4s\n\
#EXT-X-PART:DURATION=0.25,URI=\"r-p2.m4s\",INDEPENDENT=YES\n#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"r-p3.m4s\"\n";

    #[test]
    fn parts_segments_and_their_pdt_ends() {
        let m = parse_media(LL).unwrap();
        let t0 = pdt_ms("2026-12-02T04:16:15.000Z").unwrap();
        assert!(m.can_block && m.can_skip && !m.ended);
        assert_eq!(m.map_uri.as_deref(), Some("r-i0.mp4"));
        assert_eq!(m.segments, vec![Item { msn: 4, uri: "r-s4.m4s".into(), end_ms: Some(t0 + 1000.0) }]);
        let ends: Vec<_> = m.parts.iter().map(|p| (p.msn, p.end_ms.unwrap() - t0)).collect();
        assert_eq!(ends, vec![(4, 500.0), (4, 1000.0), (5, 1250.0)]);
        assert_eq!((m.open_msn, m.open_parts, m.hint.as_deref()), (5, 1, Some("r-p3.m4s")));
    }

    #[test]
    fn delta_playlist_counts_skipped_segments() {
        let text = "#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:10\n#EXT-X-SKIP:SKIPPED-SEGMENTS=3\n#EXTINF:1.0,\na.m4s\n";
        let m = parse_media(text).unwrap();
        assert_eq!((m.segments[0].msn, m.segments[0].end_ms, m.open_msn), (13, None, 14));
    }

    #[test]
    fn variant_and_garbage() {
        assert_eq!(first_variant("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nmedia.m3u8?run=x\n"), Some("media.m3u8?run=x"));
        assert_eq!(first_variant(LL), None);
        assert!(parse_media("<html>").is_err());
    }
}
