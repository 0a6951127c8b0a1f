//! Self-test of the LL-HLS rule checker in tests/common/rules.rs: a good playlist passes, and
//! each rule, broken on purpose, is reported. This is what makes the server tests' assertions
//! able to fail. No server is started here.

mod common;

use common::rules::{assert_valid, check, MediaPlaylist, Rules, Tracker};

const GOOD: &str = "#EXTM3U
#EXT-X-VERSION:6
#EXT-X-TARGETDURATION:1
#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,CAN-SKIP-UNTIL=6.0,PART-HOLD-BACK=0.60000
#EXT-X-PART-INF:PART-TARGET=0.20000
#EXT-X-MEDIA-SEQUENCE:4
#EXT-X-DISCONTINUITY-SEQUENCE:0
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-MAP:URI=\"r-i0.mp4\"
#EXT-X-PROGRAM-DATE-TIME:2026-11-22T15:25:03.151Z
#EXTINF:1.00000,
r-s4.m4s
#EXT-X-PROGRAM-DATE-TIME:2026-11-22T15:25:04.151Z
#EXT-X-PART:DURATION=0.20000,URI=\"r-p25.m4s\",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.20000,URI=\"r-p26.m4s\"
#EXT-X-PART:DURATION=0.20000,URI=\"r-p27.m4s\"
#EXT-X-PART:DURATION=0.20000,URI=\"r-p28.m4s\"
#EXT-X-PART:DURATION=0.20000,URI=\"r-p29.m4s\"
#EXTINF:1.00000,
r-s5.m4s
#EXT-X-PROGRAM-DATE-TIME:2026-11-22T15:25:05.152Z
#EXT-X-PART:DURATION=0.20000,URI=\"r-p30.m4s\",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.20000,URI=\"r-p31.m4s\"
#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"r-p32.m4s\"
";

fn violations(text: &str) -> Vec<String> {
    let pl = MediaPlaylist::parse(text);
    let mut v = check(&pl, &Rules::default());
    v.extend(common::rules::m3u8_cross_check(&pl));
    v
}

/// Applies `from -> to` to GOOD and asserts a violation mentioning `rule` is reported.
fn broken(from: &str, to: &str, rule: &str) {
    assert!(GOOD.contains(from), "mutation source {from:?} not in GOOD");
    let text = GOOD.replacen(from, to, 1);
    let v = violations(&text);
    assert!(
        v.iter().any(|m| m.contains(rule)),
        "breaking {from:?} -> {to:?} should violate {rule}, got {v:?}"
    );
}

#[test]
fn good_playlist_passes_and_parses() {
    let pl = assert_valid(GOOD, &Rules::default());
    assert_eq!(pl.target, Some(1));
    assert_eq!(pl.media_sequence, Some(4));
    assert_eq!(pl.segments.len(), 3);
    assert_eq!(pl.last_complete_msn(), Some(5));
    assert_eq!(pl.segments[2].msn, 6);
    assert!(!pl.segments[2].complete());
    assert_eq!(pl.part_hint().as_deref(), Some("r-p32.m4s"));
    assert_eq!(pl.next_part_position(), (6, 2));
    assert!(pl.has_part_or_later(6, 1) && !pl.has_part_or_later(6, 2));
    assert_eq!(pl.segments[0].map.as_deref(), Some("r-i0.mp4"));
    assert_eq!(
        common::rules::parse_pdt("1970-01-01T00:00:01.500Z"),
        Some(1500)
    );
    assert_eq!(
        common::rules::parse_pdt("1970-01-01T01:00:00.000+01:00"),
        Some(0)
    );
    assert_eq!(
        common::rules::parse_pdt("2026-11-22T15:25:03Z"),
        None,
        "ms precision required"
    );
}

#[test]
fn each_broken_rule_is_reported() {
    broken("#EXTM3U\n", "\u{feff}#EXTM3U\n", "R1");
    broken(
        "#EXT-X-VERSION:6\n",
        "#EXT-X-VERSION:6\n#EXT-X-VERSION:6\n",
        "R1",
    );
    broken(
        "#EXT-X-TARGETDURATION:1\n",
        "#EXT-X-TARGETDURATION:1\n#EXT-X-TARGETDURATION:1\n",
        "R1",
    );
    broken("URI=\"r-p26.m4s\"", "URI=\"r-p26.m4s\",URI=\"x\"", "R1");
    broken("#EXT-X-VERSION:6", "#EXT-X-VERSION:5", "R2");
    broken("#EXT-X-TARGETDURATION:1", "#EXT-X-TARGETDURATION:1.0", "R3");
    broken("#EXTINF:1.00000,\nr-s4", "#EXTINF:1.60000,\nr-s4", "R3");
    broken("#EXT-X-PART-INF:PART-TARGET=0.20000\n", "", "R4");
    broken(
        "DURATION=0.20000,URI=\"r-p27.m4s\"",
        "DURATION=0.20100,URI=\"r-p27.m4s\"",
        "R4",
    );
    broken(
        "DURATION=0.20000,URI=\"r-p27.m4s\"",
        "DURATION=0.10000,URI=\"r-p27.m4s\"",
        "R4",
    );
    broken(
        "DURATION=0.20000,URI=\"r-p29.m4s\"",
        "DURATION=0.19000,URI=\"r-p29.m4s\"",
        "R5",
    );
    broken(
        "#EXT-X-PROGRAM-DATE-TIME:2026-11-22T15:25:04.151Z\n#EXT-X-PART:DURATION=0.20000,URI=\"r-p25.m4s\",INDEPENDENT=YES\n",
        "#EXT-X-PART:DURATION=0.20000,URI=\"r-p25.m4s\",INDEPENDENT=YES\n#EXT-X-PROGRAM-DATE-TIME:2026-11-22T15:25:04.151Z\n",
        "R5",
    );
    broken("PART-HOLD-BACK=0.60000", "PART-HOLD-BACK=0.40000", "R6");
    broken(",PART-HOLD-BACK=0.60000", "", "R6");
    broken("CAN-SKIP-UNTIL=6.0", "CAN-SKIP-UNTIL=5.0", "R6");
    broken("CAN-BLOCK-RELOAD=YES,", "", "R7");
    broken(
        "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"r-p32.m4s\"\n",
        "",
        "R10",
    );
    broken("URI=\"r-p32.m4s\"", "URI=\"r-p33.m4s\"", "R10");
    broken("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"r-p32.m4s\"\n", "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"r-p32.m4s\"\n#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"r-p32.m4s\"\n", "R10");
    broken(
        "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"r-p32.m4s\"\n",
        "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"r-p32.m4s\"\n#EXT-X-ENDLIST\n",
        "R10",
    );
    broken(
        "URI=\"r-p30.m4s\",INDEPENDENT=YES",
        "URI=\"r-p30.m4s\"",
        "R11",
    );
    broken(
        "#EXT-X-PROGRAM-DATE-TIME:2026-11-22T15:25:05.152Z\n",
        "",
        "R14",
    );
    broken("15:25:05.152Z", "15:25:05.652Z", "R14");
    broken("15:25:05.152Z", "15:25:05Z", "R14");
    broken("#EXT-X-MAP:URI=\"r-i0.mp4\"\n", "", "R15");
    broken("#EXT-X-INDEPENDENT-SEGMENTS\n", "", "R15");
    broken("#EXT-X-MEDIA-SEQUENCE:4\n", "", "R16");
    broken(
        "#EXT-X-INDEPENDENT-SEGMENTS\n",
        "#EXT-X-INDEPENDENT-SEGMENTS\n#EXT-X-PLAYLIST-TYPE:EVENT\n",
        "R16",
    );
    broken(
        "#EXT-X-PROGRAM-DATE-TIME:2026-11-22T15:25:04.151Z\n",
        "#EXT-X-MAP:URI=\"r-i1.mp4\"\n#EXT-X-PROGRAM-DATE-TIME:2026-11-22T15:25:04.151Z\n",
        "R17",
    );
    broken(
        "#EXT-X-MEDIA-SEQUENCE:4\n",
        "#EXT-X-MEDIA-SEQUENCE:4\n#EXT-X-SKIP:SKIPPED-SEGMENTS=1\n",
        "R9",
    );
}

#[test]
fn tracker_reports_reload_violations() {
    let good = MediaPlaylist::parse(GOOD);
    // The next reload: part 32 published, hint moves to 33.
    let next_text = GOOD.replace(
        "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"r-p32.m4s\"",
        "#EXT-X-PART:DURATION=0.20000,URI=\"r-p32.m4s\"\n#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"r-p33.m4s\"",
    );
    let mut t = Tracker::new();
    t.observe(&good);
    t.observe(&MediaPlaylist::parse(&next_text));
    assert_eq!(t.hints_confirmed, 1);

    let after = |mutated: &str| {
        let mut t = Tracker::new();
        t.observe(&good);
        t.observe_collect(&MediaPlaylist::parse(mutated))
    };
    let expect = |mutated: String, rule: &str| {
        let v = after(&mutated);
        assert!(
            v.iter().any(|m| m.contains(rule)),
            "expected {rule}, got {v:?}\n{mutated}"
        );
    };
    expect(
        next_text.replace("TARGETDURATION:1", "TARGETDURATION:2"),
        "R3",
    );
    expect(
        next_text.replace("PART-TARGET=0.20000", "PART-TARGET=0.19000"),
        "R4",
    );
    expect(
        next_text.replace("PART-HOLD-BACK=0.60000", "PART-HOLD-BACK=0.70000"),
        "R6",
    );
    expect(
        next_text.replace("MEDIA-SEQUENCE:4", "MEDIA-SEQUENCE:3"),
        "R16",
    );
    expect(next_text.replace("r-s5.m4s", "r-s5b.m4s"), "R16");
    expect(next_text.replace("r-p32.m4s\"\n", "r-p34.m4s\"\n"), "R10");
    expect(
        next_text.replace("DISCONTINUITY-SEQUENCE:0", "DISCONTINUITY-SEQUENCE:1"),
        "R17",
    );
    // Dropping a whole segment at the head without a new one: shrinks below the window.
    let shrunk = next_text
        .replace("MEDIA-SEQUENCE:4", "MEDIA-SEQUENCE:5")
        .replace(
            "#EXT-X-PROGRAM-DATE-TIME:2026-11-22T15:25:03.151Z\n#EXTINF:1.00000,\nr-s4.m4s\n",
            "",
        );
    expect(shrunk, "R16");
}
