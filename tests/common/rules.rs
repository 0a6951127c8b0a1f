//! LL-HLS rule checker for media playlists: the rules of shared/docs/ll-hls.md that can be
//! checked from playlist text (one playlist: [`check`]; a series of reloads: [`Tracker`]).
//! Rule numbers in messages refer to that document ("R4" = §1 rule 4).
//!
//! The parser here is deliberately independent of hlsd's renderer and tolerant: it never panics,
//! it records structural problems as violations instead. m3u8-rs must accept every playlist too
//! ([`m3u8_cross_check`]).

use std::collections::BTreeMap;

/// An attribute list: (name, value, was-quoted), in order.
pub type Attrs = Vec<(String, String, bool)>;

pub fn attr<'a>(a: &'a Attrs, name: &str) -> Option<&'a str> {
    a.iter()
        .find(|(k, _, _)| k == name)
        .map(|(_, v, _)| v.as_str())
}

/// Parses an attribute list (`A=1,B="x,y",C=YES`). Errors on malformed lists.
pub fn parse_attrs(s: &str) -> Result<Attrs, String> {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let eq = s[i..]
            .find('=')
            .ok_or_else(|| format!("attribute without '=' in {s:?}"))?
            + i;
        let name = &s[i..eq];
        if name.is_empty()
            || !name
                .bytes()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == b'-')
        {
            return Err(format!("bad attribute name {name:?} in {s:?}"));
        }
        i = eq + 1;
        let (value, quoted) = if b.get(i) == Some(&b'"') {
            let end = s[i + 1..]
                .find('"')
                .ok_or_else(|| format!("unterminated quoted string in {s:?}"))?
                + i
                + 1;
            let v = s[i + 1..end].to_string();
            i = end + 1;
            (v, true)
        } else {
            let end = s[i..].find(',').map(|e| e + i).unwrap_or(b.len());
            let v = s[i..end].to_string();
            i = end;
            (v, false)
        };
        out.push((name.to_string(), value, quoted));
        if i < b.len() {
            if b[i] != b',' {
                return Err(format!("expected ',' after attribute {name} in {s:?}"));
            }
            i += 1;
            if i == b.len() {
                return Err(format!("trailing ',' in {s:?}"));
            }
        }
    }
    Ok(out)
}

#[derive(Debug, Clone, PartialEq)]
pub struct Part {
    pub uri: String,
    pub duration: f64,
    pub independent: bool,
    pub gap: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub msn: u64,
    /// URI line; `None` for the open segment (parts only) at the end of a live playlist.
    pub uri: Option<String>,
    pub extinf: Option<f64>,
    pub parts: Vec<Part>,
    /// Raw EXT-X-PROGRAM-DATE-TIME value and its epoch milliseconds.
    pub pdt: Option<String>,
    pub pdt_ms: Option<i64>,
    pub discontinuity: bool,
    /// EXT-X-MAP URI in effect for this segment.
    pub map: Option<String>,
    /// An EXT-X-MAP tag appears right before this segment.
    pub map_here: bool,
}

impl Segment {
    pub fn complete(&self) -> bool {
        self.uri.is_some()
    }
    pub fn parts_sum(&self) -> f64 {
        self.parts.iter().map(|p| p.duration).sum()
    }
}

/// A parsed media playlist.
#[derive(Debug, Clone, Default)]
pub struct MediaPlaylist {
    pub text: String,
    pub version: Option<u32>,
    pub target: Option<u64>,
    pub part_target: Option<f64>,
    pub part_inf_raw: Option<String>,
    pub server_control: Option<Attrs>,
    pub server_control_raw: Option<String>,
    pub media_sequence: Option<u64>,
    pub discontinuity_sequence: Option<u64>,
    pub independent_segments: bool,
    pub skipped: Option<u64>,
    pub segments: Vec<Segment>,
    pub hints: Vec<Attrs>,
    pub endlist: bool,
    pub playlist_type: Option<String>,
    /// Structural violations found while parsing.
    pub errors: Vec<String>,
}

/// Tags that may appear at most once in a media playlist (R1).
const SINGLETONS: &[&str] = &[
    "#EXT-X-VERSION",
    "#EXT-X-TARGETDURATION",
    "#EXT-X-MEDIA-SEQUENCE",
    "#EXT-X-DISCONTINUITY-SEQUENCE",
    "#EXT-X-ENDLIST",
    "#EXT-X-PLAYLIST-TYPE",
    "#EXT-X-I-FRAMES-ONLY",
    "#EXT-X-PART-INF",
    "#EXT-X-SERVER-CONTROL",
    "#EXT-X-INDEPENDENT-SEGMENTS",
    "#EXT-X-START",
    "#EXT-X-SKIP",
];

/// Multivariant-only tags that must not appear in a media playlist (R1).
const MULTIVARIANT_TAGS: &[&str] = &[
    "#EXT-X-STREAM-INF",
    "#EXT-X-I-FRAME-STREAM-INF",
    "#EXT-X-MEDIA",
    "#EXT-X-SESSION-DATA",
];

/// Parses `YYYY-MM-DDThh:mm:ss.sss` + `Z` or `±hh:mm` into epoch milliseconds (R14 format:
/// millisecond precision and a zone are required).
pub fn parse_pdt(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 24 {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        if t.bytes().all(|c| c.is_ascii_digit()) {
            t.parse().ok()
        } else {
            None
        }
    };
    if b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
        || b[19] != b'.'
    {
        return None;
    }
    let (y, mo, d, h, mi, se, ms) = (
        num(0..4)?,
        num(5..7)?,
        num(8..10)?,
        num(11..13)?,
        num(14..16)?,
        num(17..19)?,
        num(20..23)?,
    );
    let zone = &s[23..];
    let offset_min = if zone == "Z" {
        0
    } else if zone.len() == 6
        && (zone.starts_with('+') || zone.starts_with('-'))
        && &zone[3..4] == ":"
    {
        let v = num(24..26)? * 60 + num(27..29)?;
        if zone.starts_with('-') {
            -v
        } else {
            v
        }
    } else {
        return None;
    };
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    // Days from civil (Howard Hinnant).
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    Some(((days * 86400 + h * 3600 + mi * 60 + se) - offset_min * 60) * 1000 + ms)
}

impl MediaPlaylist {
    /// Parses playlist text. Never panics; problems go to `errors`.
    pub fn parse(text: &str) -> MediaPlaylist {
        let mut pl = MediaPlaylist {
            text: text.to_string(),
            ..Default::default()
        };
        let err = |pl: &mut MediaPlaylist, m: String| pl.errors.push(m);
        if text.starts_with('\u{feff}') {
            err(&mut pl, "R1: playlist starts with a BOM".into());
        }
        let mut lines = text.lines();
        if lines.next() != Some("#EXTM3U") {
            err(&mut pl, "R1: first line is not #EXTM3U".into());
        }
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        let mut seen_segment_line = false; // a media segment tag or URI has appeared
        let mut media_sequence_line: Option<usize> = None;
        // State of the segment being assembled.
        let mut cur = Segment {
            msn: 0,
            uri: None,
            extinf: None,
            parts: vec![],
            pdt: None,
            pdt_ms: None,
            discontinuity: false,
            map: None,
            map_here: false,
        };
        let mut cur_started = false;
        let mut map: Option<String> = None;
        let mut segs: Vec<Segment> = Vec::new();
        for (ln, line) in text.lines().enumerate().skip(1) {
            let line = line.trim_end_matches('\r');
            if line.is_empty() {
                continue;
            }
            if !line.starts_with('#') {
                // URI line: completes the segment.
                if cur.extinf.is_none() {
                    err(
                        &mut pl,
                        format!("R5: URI {line} without a preceding EXTINF"),
                    );
                }
                cur.uri = Some(line.to_string());
                cur.map = map.clone();
                segs.push(std::mem::replace(
                    &mut cur,
                    Segment {
                        msn: 0,
                        uri: None,
                        extinf: None,
                        parts: vec![],
                        pdt: None,
                        pdt_ms: None,
                        discontinuity: false,
                        map: None,
                        map_here: false,
                    },
                ));
                cur_started = false;
                seen_segment_line = true;
                continue;
            }
            if !line.starts_with("#EXT") {
                continue; // comment
            }
            let (tag, value) = match line.split_once(':') {
                Some((t, v)) => (t, Some(v)),
                None => (line, None),
            };
            *counts.entry(tag.to_string()).or_default() += 1;
            if MULTIVARIANT_TAGS.contains(&tag) {
                err(
                    &mut pl,
                    format!("R1: multivariant tag {tag} in a media playlist"),
                );
            }
            let attrs = |pl: &mut MediaPlaylist| -> Attrs {
                match parse_attrs(value.unwrap_or("")) {
                    Ok(a) => {
                        let mut names: Vec<&str> = a.iter().map(|x| x.0.as_str()).collect();
                        names.sort_unstable();
                        if names.windows(2).any(|w| w[0] == w[1]) {
                            pl.errors.push(format!("R1: duplicate attribute in {line}"));
                        }
                        a
                    }
                    Err(e) => {
                        pl.errors.push(format!("R1: {tag}: {e}"));
                        Vec::new()
                    }
                }
            };
            let is_header = matches!(
                tag,
                "#EXT-X-VERSION"
                    | "#EXT-X-TARGETDURATION"
                    | "#EXT-X-MEDIA-SEQUENCE"
                    | "#EXT-X-DISCONTINUITY-SEQUENCE"
                    | "#EXT-X-PLAYLIST-TYPE"
                    | "#EXT-X-PART-INF"
                    | "#EXT-X-SERVER-CONTROL"
                    | "#EXT-X-I-FRAMES-ONLY"
            );
            if is_header && (seen_segment_line || cur_started) {
                err(
                    &mut pl,
                    format!("R16/17: {tag} after the first media segment"),
                );
            }
            match tag {
                "#EXT-X-VERSION" => pl.version = value.and_then(|v| v.parse().ok()),
                "#EXT-X-TARGETDURATION" => match value.map(|v| (v, v.parse::<u64>())) {
                    Some((_, Ok(t))) => pl.target = Some(t),
                    other => err(
                        &mut pl,
                        format!("R3: TARGETDURATION {other:?} is not a decimal integer"),
                    ),
                },
                "#EXT-X-MEDIA-SEQUENCE" => {
                    pl.media_sequence = value.and_then(|v| v.parse().ok());
                    media_sequence_line = Some(ln);
                }
                "#EXT-X-DISCONTINUITY-SEQUENCE" => {
                    pl.discontinuity_sequence = value.and_then(|v| v.parse().ok())
                }
                "#EXT-X-INDEPENDENT-SEGMENTS" => pl.independent_segments = true,
                "#EXT-X-ENDLIST" => pl.endlist = true,
                "#EXT-X-PLAYLIST-TYPE" => pl.playlist_type = value.map(str::to_string),
                "#EXT-X-PART-INF" => {
                    let a = attrs(&mut pl);
                    pl.part_target = attr(&a, "PART-TARGET").and_then(|v| v.parse().ok());
                    if pl.part_target.is_none() {
                        err(&mut pl, format!("R4: {line} has no valid PART-TARGET"));
                    }
                    pl.part_inf_raw = value.map(str::to_string);
                }
                "#EXT-X-SERVER-CONTROL" => {
                    pl.server_control = Some(attrs(&mut pl));
                    pl.server_control_raw = value.map(str::to_string);
                }
                "#EXT-X-SKIP" => {
                    let a = attrs(&mut pl);
                    pl.skipped = attr(&a, "SKIPPED-SEGMENTS").and_then(|v| v.parse().ok());
                    if pl.skipped.is_none() {
                        err(&mut pl, format!("R9: {line} has no valid SKIPPED-SEGMENTS"));
                    }
                    if media_sequence_line.is_none() {
                        err(&mut pl, "R9: EXT-X-SKIP before EXT-X-MEDIA-SEQUENCE".into());
                    }
                    if seen_segment_line || cur_started {
                        err(&mut pl, "R9: EXT-X-SKIP after a media segment".into());
                    }
                }
                "#EXT-X-PRELOAD-HINT" => {
                    let a = attrs(&mut pl);
                    pl.hints.push(a);
                }
                "#EXT-X-MAP" => {
                    if !cur.parts.is_empty() {
                        err(
                            &mut pl,
                            format!(
                                "R5: EXT-X-MAP after an EXT-X-PART of the same segment: {line}"
                            ),
                        );
                    }
                    let a = attrs(&mut pl);
                    match attr(&a, "URI") {
                        Some(u) => map = Some(u.to_string()),
                        None => err(&mut pl, format!("R15: {line} has no URI")),
                    }
                    cur.map_here = true;
                    cur_started = true;
                }
                "#EXT-X-DISCONTINUITY" => {
                    if !cur.parts.is_empty() {
                        err(
                            &mut pl,
                            "R5: EXT-X-DISCONTINUITY after an EXT-X-PART of the same segment"
                                .into(),
                        );
                    }
                    cur.discontinuity = true;
                    cur_started = true;
                }
                "#EXT-X-PROGRAM-DATE-TIME" => {
                    if !cur.parts.is_empty() {
                        err(
                            &mut pl,
                            "R5: EXT-X-PROGRAM-DATE-TIME after an EXT-X-PART of the same segment"
                                .into(),
                        );
                    }
                    let v = value.unwrap_or("");
                    cur.pdt = Some(v.to_string());
                    cur.pdt_ms = parse_pdt(v);
                    if cur.pdt_ms.is_none() {
                        err(&mut pl, format!("R14: PROGRAM-DATE-TIME {v:?} is not YYYY-MM-DDThh:mm:ss.sss with a zone"));
                    }
                    cur_started = true;
                }
                "#EXT-X-PART" => {
                    let a = attrs(&mut pl);
                    let duration = attr(&a, "DURATION").and_then(|v| v.parse::<f64>().ok());
                    let uri = attr(&a, "URI");
                    if duration.is_none() || uri.is_none() {
                        err(&mut pl, format!("R4: {line} lacks DURATION or URI"));
                    }
                    cur.parts.push(Part {
                        uri: uri.unwrap_or("").to_string(),
                        duration: duration.unwrap_or(0.0),
                        independent: attr(&a, "INDEPENDENT") == Some("YES"),
                        gap: attr(&a, "GAP") == Some("YES"),
                    });
                    if cur.map.is_none() {
                        cur.map = map.clone();
                    }
                    cur_started = true;
                }
                "#EXTINF" => {
                    let v = value.unwrap_or("");
                    let d = v.split(',').next().unwrap_or("");
                    match d.parse::<f64>() {
                        Ok(d) if d >= 0.0 => cur.extinf = Some(d),
                        _ => err(&mut pl, format!("EXTINF {v:?} is not a duration")),
                    }
                    cur_started = true;
                }
                "#EXT-X-KEY" | "#EXT-X-BYTERANGE" | "#EXT-X-GAP" | "#EXT-X-BITRATE"
                | "#EXT-X-DATERANGE" => {
                    cur_started = true;
                }
                _ => {}
            }
        }
        if cur_started {
            if cur.extinf.is_some() {
                err(&mut pl, "R5: EXTINF without a URI line at the end".into());
            }
            if cur.parts.is_empty() {
                // Only tags (e.g. a PDT with no part yet): not a segment.
                if cur.pdt.is_some() || cur.discontinuity {
                    err(
                        &mut pl,
                        "R5: segment tags at the end with no part or URI".into(),
                    );
                }
            } else {
                cur.map = map.clone();
                segs.push(cur);
            }
        }
        for (tag, n) in &counts {
            if *n > 1 && SINGLETONS.contains(&tag.as_str()) {
                pl.errors.push(format!("R1: {tag} appears {n} times"));
            }
        }
        if counts.get("#EXT-X-VERSION").copied().unwrap_or(0) != 1 {
            pl.errors.push("R1: not exactly one EXT-X-VERSION".into());
        }
        let first = pl.media_sequence.unwrap_or(0) + pl.skipped.unwrap_or(0);
        for (i, s) in segs.iter_mut().enumerate() {
            s.msn = first + i as u64;
        }
        pl.segments = segs;
        pl
    }

    pub fn complete(&self) -> impl Iterator<Item = &Segment> {
        self.segments.iter().filter(|s| s.complete())
    }

    pub fn last_complete_msn(&self) -> Option<u64> {
        self.complete().last().map(|s| s.msn)
    }

    pub fn segment(&self, msn: u64) -> Option<&Segment> {
        self.segments.iter().find(|s| s.msn == msn)
    }

    /// The PART preload hint URI.
    pub fn part_hint(&self) -> Option<String> {
        self.hints
            .iter()
            .find(|h| attr(h, "TYPE") == Some("PART"))
            .and_then(|h| attr(h, "URI"))
            .map(str::to_string)
    }

    /// All listed parts in order with their (msn, index).
    pub fn parts(&self) -> Vec<(u64, usize, &Part)> {
        self.segments
            .iter()
            .flat_map(|s| s.parts.iter().enumerate().map(move |(i, p)| (s.msn, i, p)))
            .collect()
    }

    /// Where hls.js would ask next: (msn, part) of the part after the last listed one.
    pub fn next_part_position(&self) -> (u64, usize) {
        match self.segments.last() {
            Some(s) if !s.complete() => (s.msn, s.parts.len()),
            Some(s) => (s.msn + 1, 0),
            None => (self.media_sequence.unwrap_or(0), 0),
        }
    }

    /// True if part (msn, n) or a later one is listed (rule 8b).
    pub fn has_part_or_later(&self, msn: u64, n: usize) -> bool {
        self.segments.iter().any(|s| {
            (s.msn == msn && (s.parts.len() > n || (s.complete() && s.parts.is_empty() && n == 0)))
                || (s.msn > msn)
        })
    }

    pub fn sc(&self, name: &str) -> Option<&str> {
        self.server_control.as_ref().and_then(|a| attr(a, name))
    }

    pub fn sc_f64(&self, name: &str) -> Option<f64> {
        self.sc(name).and_then(|v| v.parse().ok())
    }

    /// Duration of the listed media: complete segments plus the open segment's parts.
    pub fn listed_duration(&self) -> f64 {
        self.segments
            .iter()
            .map(|s| s.extinf.unwrap_or_else(|| s.parts_sum()))
            .sum()
    }
}

/// Options of the single-playlist checks.
#[derive(Debug, Clone)]
pub struct Rules {
    /// Largest allowed |PDT[n+1] - PDT[n] - EXTINF[n]| in seconds (R14).
    pub pdt_tolerance: f64,
    /// A live sliding-window playlist (no PLAYLIST-TYPE; blocking reload and parts expected).
    pub live: bool,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            pdt_tolerance: 0.25,
            live: true,
        }
    }
}

/// Rounds seconds to microseconds for exact comparisons of decimal attribute values.
fn us(s: f64) -> i64 {
    (s * 1e6).round() as i64
}

/// hlsd names parts `{run}-p{G}.m4s`; returns G.
pub fn part_number(uri: &str) -> Option<u64> {
    let (_, rest) = uri.rsplit_once("-p")?;
    rest.strip_suffix(".m4s")?.parse().ok()
}

/// Checks one media playlist; returns the violations (empty = all rules hold).
pub fn check(pl: &MediaPlaylist, r: &Rules) -> Vec<String> {
    let mut v = pl.errors.clone();
    let t = pl.target;
    // R2: version.
    let ver = pl.version.unwrap_or(1);
    if pl
        .segments
        .iter()
        .any(|s| s.extinf.is_some_and(|d| d.fract() != 0.0))
        && ver < 3
    {
        v.push(format!("R2: float EXTINF needs VERSION >= 3 (has {ver})"));
    }
    if pl.segments.iter().any(|s| s.map_here) && ver < 6 {
        v.push(format!("R2: EXT-X-MAP needs VERSION >= 6 (has {ver})"));
    }
    if pl.skipped.is_some() && ver < 9 {
        v.push(format!("R2/R9: EXT-X-SKIP needs VERSION >= 9 (has {ver})"));
    }
    // R3: target duration.
    match t {
        None => v.push("R3: no EXT-X-TARGETDURATION".into()),
        Some(0) => v.push("R3: TARGETDURATION is 0".into()),
        Some(t) => {
            for s in pl.complete() {
                let d = s.extinf.unwrap();
                if d >= t as f64 + 0.5 {
                    v.push(format!(
                        "R3: segment {} EXTINF {d} rounds above TARGETDURATION {t}",
                        s.msn
                    ));
                }
            }
            let open: f64 = pl
                .segments
                .iter()
                .filter(|s| !s.complete())
                .map(|s| s.parts_sum())
                .sum();
            if open >= t as f64 + 0.5 {
                v.push(format!(
                    "R3: open segment already {open} s > TARGETDURATION {t}"
                ));
            }
        }
    }
    // R4: parts.
    let any_part = pl.segments.iter().any(|s| !s.parts.is_empty());
    if any_part && pl.part_target.is_none() {
        v.push("R4: EXT-X-PART without EXT-X-PART-INF".into());
    }
    if let Some(p) = pl.part_target {
        if p <= 0.0 {
            v.push(format!("R4: PART-TARGET {p} <= 0"));
        }
        for s in &pl.segments {
            for (i, part) in s.parts.iter().enumerate() {
                if us(part.duration) > us(p) {
                    v.push(format!(
                        "R4: part {} of segment {} ({}) lasts {} > PART-TARGET {p}",
                        i, s.msn, part.uri, part.duration
                    ));
                }
                if part.duration <= 0.0 {
                    v.push(format!(
                        "R4: part {} has duration {}",
                        part.uri, part.duration
                    ));
                }
                let last_of_parent = i + 1 == s.parts.len() && s.complete();
                let last_listed_open = i + 1 == s.parts.len() && !s.complete();
                let before_gap = s.parts.get(i + 1).is_some_and(|n| n.gap);
                let exempt = part.independent
                    || part.gap
                    || before_gap
                    || last_of_parent
                    || last_listed_open;
                if !exempt && part.duration < 0.85 * p - 1e-6 {
                    v.push(format!(
                        "R4: part {} of segment {} ({}) lasts {} < 0.85 x PART-TARGET {p}",
                        i, s.msn, part.uri, part.duration
                    ));
                }
            }
        }
    }
    // R5: parts add up to EXTINF.
    for s in pl.complete() {
        if !s.parts.is_empty() {
            let sum = s.parts_sum();
            let d = s.extinf.unwrap();
            if (sum - d).abs() > 0.001 {
                v.push(format!(
                    "R5: segment {} parts sum to {sum:.5} but EXTINF is {d}",
                    s.msn
                ));
            }
        }
    }
    // R6/R7: server control.
    if let Some(p) = pl.part_target {
        match pl.sc_f64("PART-HOLD-BACK") {
            None => v.push("R6: PART-INF without SERVER-CONTROL PART-HOLD-BACK".into()),
            Some(phb) => {
                if us(phb) < us(3.0 * p) {
                    v.push(format!("R6: PART-HOLD-BACK {phb} < 3 x PART-TARGET {p}"));
                }
            }
        }
    }
    if let (Some(hb), Some(t)) = (pl.sc_f64("HOLD-BACK"), t) {
        if hb < 3.0 * t as f64 {
            v.push(format!("R6: HOLD-BACK {hb} < 3 x TARGETDURATION {t}"));
        }
    }
    if let Some(t) = t {
        match (pl.sc("CAN-SKIP-UNTIL"), pl.sc_f64("CAN-SKIP-UNTIL")) {
            (Some(raw), None) => v.push(format!("R6: CAN-SKIP-UNTIL {raw:?} is not a number")),
            (_, Some(csu)) if csu < 6.0 * t as f64 => {
                v.push(format!("R6: CAN-SKIP-UNTIL {csu} < 6 x TARGETDURATION {t}"))
            }
            _ => {}
        }
    }
    if pl.sc("CAN-SKIP-DATERANGES").is_some() && pl.sc("CAN-SKIP-UNTIL").is_none() {
        v.push("R6: CAN-SKIP-DATERANGES without CAN-SKIP-UNTIL".into());
    }
    if r.live && !pl.endlist && pl.sc("CAN-BLOCK-RELOAD") != Some("YES") {
        v.push("R7: live playlist without CAN-BLOCK-RELOAD=YES".into());
    }
    // R9: delta update.
    if let Some(k) = pl.skipped {
        match pl.sc_f64("CAN-SKIP-UNTIL") {
            None => v.push("R9: EXT-X-SKIP without CAN-SKIP-UNTIL".into()),
            Some(csu) => {
                if k == 0 {
                    v.push("R9: EXT-X-SKIP:SKIPPED-SEGMENTS=0".into());
                }
                // The last skipped segment ends where the listed media begins: it must end at
                // least CAN-SKIP-UNTIL before the end of the playlist.
                let listed = pl.listed_duration();
                if listed + 1e-6 < csu {
                    v.push(format!("R9: skipped segments end only {listed:.3} s (< CAN-SKIP-UNTIL {csu}) before the end"));
                }
            }
        }
        if pl.endlist {
            v.push("R9: delta update of an ended playlist".into());
        }
    }
    // R10: preload hints.
    let mut by_type: BTreeMap<String, usize> = BTreeMap::new();
    for h in &pl.hints {
        let ty = attr(h, "TYPE").unwrap_or("");
        *by_type.entry(ty.to_string()).or_default() += 1;
        if !matches!(ty, "PART" | "MAP") {
            v.push(format!("R10: PRELOAD-HINT TYPE {ty:?} is not PART or MAP"));
        }
        if attr(h, "URI").is_none() {
            v.push("R10: PRELOAD-HINT without URI".into());
        }
        if let Some(bs) = attr(h, "BYTERANGE-START") {
            if bs.parse::<u64>().is_err() {
                v.push(format!("R10: BYTERANGE-START {bs:?}"));
            }
        }
    }
    for (ty, n) in by_type {
        if n > 1 {
            v.push(format!("R10: {n} PRELOAD-HINTs of TYPE {ty}"));
        }
    }
    if pl.endlist && !pl.hints.is_empty() {
        v.push("R10: PRELOAD-HINT in a playlist with ENDLIST".into());
    }
    let parts = pl.parts();
    if r.live && !pl.endlist && !parts.is_empty() {
        match pl.part_hint() {
            None => v.push("R10: live playlist with parts but no TYPE=PART preload hint".into()),
            Some(h) => {
                if parts.iter().any(|(_, _, p)| p.uri == h) {
                    v.push(format!("R10: hinted part {h} is already listed"));
                }
                // hlsd numbers parts run-wide: the hint must name the part after the last one.
                if let (Some(hn), Some(ln)) =
                    (part_number(&h), part_number(&parts.last().unwrap().2.uri))
                {
                    if hn != ln + 1 {
                        v.push(format!(
                            "R10: hint {h} is not the part after the last listed part {}",
                            parts.last().unwrap().2.uri
                        ));
                    }
                }
            }
        }
    }
    // Part URIs unique; run-wide numbers consecutive.
    for w in parts.windows(2) {
        if let (Some(a), Some(b)) = (part_number(&w[0].2.uri), part_number(&w[1].2.uri)) {
            if b != a + 1 {
                v.push(format!(
                    "parts {} and {} are not consecutive",
                    w[0].2.uri, w[1].2.uri
                ));
            }
        }
    }
    // R11: every segment starts with an independent part.
    for s in &pl.segments {
        if let Some(first) = s.parts.first() {
            if !first.independent {
                v.push(format!(
                    "R11: first part {} of segment {} lacks INDEPENDENT=YES",
                    first.uri, s.msn
                ));
            }
        }
    }
    // R12: parts only near the live edge (SHOULD): none on segments starting > 4T before the end.
    if let Some(t) = t {
        let mut from_end = 0.0;
        for s in pl.segments.iter().rev() {
            from_end += s.extinf.unwrap_or_else(|| s.parts_sum());
            if !s.parts.is_empty() && from_end > 4.0 * t as f64 + 1e-6 {
                v.push(format!(
                    "R12: segment {} still lists parts {from_end:.2} s from the end",
                    s.msn
                ));
            }
        }
    }
    // R14: PDT on every segment, deltas ~ EXTINF.
    for s in &pl.segments {
        if s.pdt.is_none() {
            if r.live {
                v.push(format!(
                    "R14: segment {} has no EXT-X-PROGRAM-DATE-TIME",
                    s.msn
                ));
            } else if s.discontinuity && pl.segments.iter().any(|x| x.pdt.is_some()) {
                v.push(format!(
                    "R14: DISCONTINUITY segment {} has no EXT-X-PROGRAM-DATE-TIME",
                    s.msn
                ));
            }
        }
    }
    for w in pl.segments.windows(2) {
        let (a, b) = (&w[0], &w[1]);
        if b.discontinuity {
            continue;
        }
        if let (Some(pa), Some(pb), Some(d)) = (a.pdt_ms, b.pdt_ms, a.extinf) {
            let delta = (pb - pa) as f64 / 1000.0;
            if (delta - d).abs() > r.pdt_tolerance {
                v.push(format!(
                    "R14: PDT of segment {} is {delta:.3} s after segment {}'s, but EXTINF is {d}",
                    b.msn, a.msn
                ));
            }
        }
    }
    // R15: MAP first; INDEPENDENT-SEGMENTS.
    if let Some(s) = pl.segments.first() {
        if s.map.is_none() || !s.map_here {
            v.push("R15: no EXT-X-MAP before the first segment".into());
        }
    }
    if !pl.independent_segments {
        v.push("R15: no EXT-X-INDEPENDENT-SEGMENTS".into());
    }
    // R16/R17: sequence numbers.
    if pl.media_sequence.is_none() && !pl.segments.is_empty() {
        v.push("R16: no EXT-X-MEDIA-SEQUENCE".into());
    }
    if r.live && pl.playlist_type.is_some() {
        v.push(format!(
            "R16: PLAYLIST-TYPE {:?} on a sliding window",
            pl.playlist_type
        ));
    }
    for w in pl.segments.windows(2) {
        if w[0].map != w[1].map && !w[1].discontinuity {
            v.push(format!(
                "R17: init changes at segment {} without EXT-X-DISCONTINUITY",
                w[1].msn
            ));
        }
    }
    if pl.endlist && pl.segments.last().is_some_and(|s| !s.complete()) {
        v.push("ENDLIST after an incomplete segment".into());
    }
    v
}

/// Parses and checks a playlist, also with m3u8-rs; panics listing every violation.
pub fn assert_valid(text: &str, r: &Rules) -> MediaPlaylist {
    let pl = MediaPlaylist::parse(text);
    let mut v = check(&pl, r);
    v.extend(m3u8_cross_check(&pl));
    assert!(
        v.is_empty(),
        "LL-HLS rule violations:\n  {}\nplaylist:\n{text}",
        v.join("\n  ")
    );
    pl
}

/// m3u8-rs must accept the playlist as a media playlist and agree with this parser.
pub fn m3u8_cross_check(pl: &MediaPlaylist) -> Vec<String> {
    let mut v = Vec::new();
    let parsed = match m3u8_rs::parse_playlist_res(pl.text.as_bytes()) {
        Ok(m3u8_rs::Playlist::MediaPlaylist(m)) => m,
        Ok(m3u8_rs::Playlist::MasterPlaylist(_)) => {
            return vec!["m3u8-rs: parsed as a multivariant playlist".into()]
        }
        Err(e) => return vec![format!("m3u8-rs rejects the playlist: {e:?}")],
    };
    if Some(parsed.target_duration) != pl.target {
        v.push(format!(
            "m3u8-rs: TARGETDURATION {} vs {:?}",
            parsed.target_duration, pl.target
        ));
    }
    if parsed.media_sequence != pl.media_sequence.unwrap_or(0) {
        v.push(format!(
            "m3u8-rs: MEDIA-SEQUENCE {} vs {:?}",
            parsed.media_sequence, pl.media_sequence
        ));
    }
    if parsed.end_list != pl.endlist {
        v.push("m3u8-rs: ENDLIST disagrees".into());
    }
    if parsed.independent_segments != pl.independent_segments {
        v.push("m3u8-rs: INDEPENDENT-SEGMENTS disagrees".into());
    }
    let mine: Vec<&Segment> = pl.complete().collect();
    if parsed.segments.len() != mine.len() {
        v.push(format!(
            "m3u8-rs: {} segments vs {}",
            parsed.segments.len(),
            mine.len()
        ));
    } else {
        for (a, b) in parsed.segments.iter().zip(mine) {
            if Some(&a.uri) != b.uri.as_ref() {
                v.push(format!("m3u8-rs: URI {} vs {:?}", a.uri, b.uri));
            }
            if (a.duration as f64 - b.extinf.unwrap()).abs() > 1e-3 {
                v.push(format!("m3u8-rs: EXTINF {} vs {:?}", a.duration, b.extinf));
            }
            if a.discontinuity != b.discontinuity {
                v.push(format!("m3u8-rs: DISCONTINUITY of {} disagrees", a.uri));
            }
            if a.program_date_time.is_some() != b.pdt.is_some() {
                v.push(format!("m3u8-rs: PDT of {} disagrees", a.uri));
            }
            if let (Some(ad), Some(ms)) = (a.program_date_time, b.pdt_ms) {
                if ad.timestamp_millis() != ms {
                    v.push(format!(
                        "m3u8-rs: PDT of {} is {} vs {ms}",
                        a.uri,
                        ad.timestamp_millis()
                    ));
                }
            }
            let n_parts = a.unknown_tags.iter().filter(|t| t.tag == "X-PART").count();
            if n_parts != b.parts.len() {
                v.push(format!(
                    "m3u8-rs: {} EXT-X-PART tags on {} vs {}",
                    n_parts,
                    a.uri,
                    b.parts.len()
                ));
            }
        }
    }
    v
}

/// What the tracker remembers of a segment across reloads.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    uri: Option<String>,
    extinf: Option<f64>,
    pdt: Option<String>,
    discontinuity: bool,
    map: Option<String>,
    parts: Vec<Part>,
}

/// Cross-reload rules (R3, R4, R6 constancy; R10 hint fulfilment; R16 sliding window; R17
/// discontinuity sequence). Feed it every full (non-delta) playlist of one stream in order.
#[derive(Debug, Default)]
pub struct Tracker {
    prev: Option<MediaPlaylist>,
    /// Every segment ever seen, by MSN.
    seen: BTreeMap<u64, Seen>,
    /// (last listed part URI, hinted URI) of earlier reloads whose hint is not yet confirmed.
    hints: Vec<(String, String)>,
    pub hints_confirmed: usize,
    max_complete: usize,
    max_listed: f64,
    pub reloads: usize,
    pub violations: Vec<String>,
}

impl Tracker {
    pub fn new() -> Tracker {
        Tracker::default()
    }

    pub fn last(&self) -> Option<&MediaPlaylist> {
        self.prev.as_ref()
    }

    /// Checks `pl` against earlier reloads; panics on violations.
    pub fn observe(&mut self, pl: &MediaPlaylist) {
        let v = self.observe_collect(pl);
        assert!(
            v.is_empty(),
            "LL-HLS reload violations (reload {}):\n  {}\nplaylist:\n{}\nprevious:\n{}",
            self.reloads,
            v.join("\n  "),
            pl.text,
            self.prev.as_ref().map(|p| p.text.as_str()).unwrap_or("")
        );
        self.prev = Some(pl.clone());
    }

    /// Like [`Tracker::observe`] but returns the violations (and always records `pl`).
    pub fn observe_collect(&mut self, pl: &MediaPlaylist) -> Vec<String> {
        let mut v = Vec::new();
        self.reloads += 1;
        if pl.skipped.is_some() {
            v.push("tracker: feed full playlists, not delta updates".into());
        }
        if let Some(prev) = &self.prev {
            if pl.target != prev.target {
                v.push(format!(
                    "R3: TARGETDURATION changed {:?} -> {:?}",
                    prev.target, pl.target
                ));
            }
            if pl.part_inf_raw != prev.part_inf_raw {
                v.push(format!(
                    "R4: PART-INF changed {:?} -> {:?}",
                    prev.part_inf_raw, pl.part_inf_raw
                ));
            }
            if pl.server_control_raw != prev.server_control_raw {
                v.push(format!(
                    "R4/R6: SERVER-CONTROL changed {:?} -> {:?}",
                    prev.server_control_raw, pl.server_control_raw
                ));
            }
            let (pms, nms) = (
                prev.media_sequence.unwrap_or(0),
                pl.media_sequence.unwrap_or(0),
            );
            if nms < pms {
                v.push(format!("R16: MEDIA-SEQUENCE decreased {pms} -> {nms}"));
            }
            let (pd, nd) = (
                prev.discontinuity_sequence.unwrap_or(0),
                pl.discontinuity_sequence.unwrap_or(0),
            );
            if nms >= pms {
                // DISCONTINUITY-SEQUENCE grows by the discontinuities that left the window.
                let prev_last = prev.segments.last().map(|s| s.msn + 1).unwrap_or(pms);
                if nms <= prev_last {
                    let left = prev
                        .segments
                        .iter()
                        .filter(|s| s.msn < nms && s.discontinuity)
                        .count() as u64;
                    if nd != pd + left {
                        v.push(format!("R17: DISCONTINUITY-SEQUENCE {pd} -> {nd}, but {left} discontinuities left the window"));
                    }
                } else if nd < pd {
                    v.push(format!(
                        "R17: DISCONTINUITY-SEQUENCE decreased {pd} -> {nd}"
                    ));
                }
            }
            if prev.endlist {
                if !pl.endlist {
                    v.push("ENDLIST disappeared".into());
                } else if pl.text != prev.text {
                    v.push("an ended playlist changed".into());
                }
            }
            let prev_end = prev
                .segments
                .last()
                .map(|s| (s.msn, s.parts.len(), s.complete()));
            let new_end = pl
                .segments
                .last()
                .map(|s| (s.msn, s.parts.len(), s.complete()));
            if let (Some(a), Some(b)) = (prev_end, new_end) {
                if b.0 < a.0 || (b.0 == a.0 && !b.2 && (a.2 || b.1 < a.1)) {
                    v.push(format!("R16: playlist end went backwards: {a:?} -> {b:?}"));
                }
            }
            // R10: the part after prev's last listed part is the one prev hinted.
        }
        let flat = pl.parts();
        self.hints.retain(|(last, hint)| {
            let Some(i) = flat.iter().position(|(_, _, p)| &p.uri == last) else {
                return true;
            };
            match flat.get(i + 1) {
                Some((_, _, next)) => {
                    if &next.uri != hint {
                        v.push(format!(
                            "R10: the part after {last} is {} but {hint} was hinted",
                            next.uri
                        ));
                    } else {
                        self.hints_confirmed += 1;
                    }
                    false
                }
                None => true,
            }
        });
        if let (Some(h), Some(last)) = (pl.part_hint(), flat.last()) {
            self.hints.push((last.2.uri.clone(), h));
            if self.hints.len() > 64 {
                self.hints.remove(0);
            }
        }
        v.extend(self.consistency(pl));
        // R16: never shrink (Apple: >= 6 segments once reached; never below 3 T).
        let complete = pl.complete().count();
        if complete < self.max_complete.min(6) {
            v.push(format!(
                "R16: {complete} segments listed after {} were",
                self.max_complete
            ));
        }
        let listed: f64 = pl.complete().map(|s| s.extinf.unwrap()).sum();
        let three_t = 3.0 * pl.target.unwrap_or(1) as f64;
        if listed + 1e-6 < self.max_listed.min(three_t) {
            v.push(format!(
                "R16: playlist shrank to {listed:.3} s (had {:.3} s; floor 3T = {three_t})",
                self.max_listed
            ));
        }
        self.max_complete = self.max_complete.max(complete);
        self.max_listed = self.max_listed.max(listed);
        for s in &pl.segments {
            let e = self.seen.entry(s.msn).or_insert_with(|| Seen {
                uri: None,
                extinf: None,
                pdt: s.pdt.clone(),
                discontinuity: s.discontinuity,
                map: s.map.clone(),
                parts: vec![],
            });
            if s.complete() {
                e.uri = s.uri.clone();
                e.extinf = s.extinf;
            }
            if s.parts.len() > e.parts.len() {
                e.parts = s.parts.clone();
            }
        }
        v
    }

    /// Same MSN → same URI, EXTINF, PDT, DISCONTINUITY, MAP; parts only appended (R16).
    /// Also used for delta updates (which number their segments from MEDIA-SEQUENCE + skipped).
    pub fn consistency(&self, pl: &MediaPlaylist) -> Vec<String> {
        let mut v = Vec::new();
        for s in &pl.segments {
            let Some(e) = self.seen.get(&s.msn) else {
                continue;
            };
            if let (Some(a), Some(b)) = (&e.uri, &s.uri) {
                if a != b {
                    v.push(format!("R16: MSN {} was {a}, now {b}", s.msn));
                }
            }
            if let (Some(a), Some(b)) = (e.extinf, s.extinf) {
                if a != b {
                    v.push(format!("R16: EXTINF of MSN {} changed {a} -> {b}", s.msn));
                }
            }
            if e.uri.is_some() && s.uri.is_none() {
                v.push(format!("R16: segment {} was complete, now open", s.msn));
            }
            if e.pdt != s.pdt && s.pdt.is_some() {
                v.push(format!(
                    "R14/R16: PDT of MSN {} changed {:?} -> {:?}",
                    s.msn, e.pdt, s.pdt
                ));
            }
            if e.discontinuity != s.discontinuity {
                v.push(format!("R16/R17: DISCONTINUITY of MSN {} changed", s.msn));
            }
            if e.map != s.map {
                v.push(format!(
                    "R16: MAP of MSN {} changed {:?} -> {:?}",
                    s.msn, e.map, s.map
                ));
            }
            let n = e.parts.len().min(s.parts.len());
            if !s.parts.is_empty() && e.parts[..n] != s.parts[..n] {
                v.push(format!(
                    "R16: parts of MSN {} changed: {:?} -> {:?}",
                    s.msn,
                    &e.parts[..n],
                    &s.parts[..n]
                ));
            }
        }
        v
    }
}
