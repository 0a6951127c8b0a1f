//! Destination URL parsing and masking tests.

use super::*;

#[test]
fn parses_ingest_urls() {
    let u: RtmpUrl = "rtmp://a.rtmp.youtube.com/live2/abcd-efgh-ijkl"
        .parse()
        .unwrap();
    assert_eq!(
        (u.tls, u.host.as_str(), u.port, u.app.as_str()),
        (false, "a.rtmp.youtube.com", 1935, "live2")
    );
    assert_eq!(u.stream_key(), "abcd-efgh-ijkl");
    assert_eq!(u.masked(), "rtmp://a.rtmp.youtube.com/live2/***");
    assert_eq!(u.tc_url(), "rtmp://a.rtmp.youtube.com:1935/live2");

    let u: RtmpUrl = "rtmps://live-api-s.facebook.com:443/rtmp/FB-123?s_bl=1"
        .parse()
        .unwrap();
    assert_eq!(
        (u.tls, u.port, u.app.as_str(), u.stream_key()),
        (true, 443, "rtmp", "FB-123?s_bl=1")
    );
    assert_eq!(u.masked(), "rtmps://live-api-s.facebook.com/rtmp/***");

    let u: RtmpUrl = "RTMP://127.0.0.1:19350/app/inst/key/".parse().unwrap();
    assert_eq!(
        (u.port, u.app.as_str(), u.stream_key()),
        (19350, "app/inst", "key")
    );
    assert_eq!(u.masked(), "rtmp://127.0.0.1:19350/app/inst/***");

    let u: RtmpUrl = "rtmp://[::1]:1936/live/k".parse().unwrap();
    assert_eq!((u.host.as_str(), u.port), ("::1", 1936));
    assert_eq!(u.tc_url(), "rtmp://[::1]:1936/live");
}

#[test]
fn errors_never_show_the_key() {
    for (bad, want) in [
        ("http://host/live/SECRETKEY", "rtmp://"),
        ("rtmp://host/SECRETKEY", "APP/STREAM-KEY"),
        ("rtmp://host/live/", "APP/STREAM-KEY"),
        ("rtmp://host:99999/live/SECRETKEY", "bad port"),
        ("rtmp://user:SECRETKEY@host/live/x", "credentials"),
        ("rtmp:///live/SECRETKEY", "missing or malformed host"),
        // Found by fuzzing: a host the masked form could not give back.
        ("rtmp://::1]:1935/live/SECRETKEY", "malformed host"),
        ("rtmp://a:b:1935/live/SECRETKEY", "malformed host"),
        ("rtmp://[::1]junk/live/SECRETKEY", "malformed host"),
        ("rtmp://[::1]:/live/SECRETKEY", "bad port"),
        ("SECRETKEY", "rtmp://"),
    ] {
        let e = bad.parse::<RtmpUrl>().unwrap_err().to_string();
        assert!(e.contains(want), "{bad}: {e}");
        assert!(!e.contains("SECRETKEY"), "{bad}: key leaked in {e}");
    }
}

#[test]
fn debug_and_display_mask_the_key() {
    let d: Destination = "rtmp://host/live/SECRETKEY".parse().unwrap();
    assert!(!format!("{d:?} {} {:?}", d.url, d.url).contains("SECRETKEY"));
    assert!(format!("{d:?}").contains("rtmp://host/live/***"));
}

#[test]
fn deserializes_from_string_or_table() {
    #[derive(Deserialize, Serialize)]
    struct C {
        rtmp: Vec<Destination>,
    }
    let c: C =
        toml::from_str("rtmp = [\"rtmp://h/a/k1\", { url = \"rtmps://h/a/k2\" }]").unwrap();
    assert_eq!(c.rtmp[1].url.stream_key(), "k2");
    let c: C = toml::from_str(
        "[[rtmp]]\nurl = \"rtmp://h/a/k1\"\n[[rtmp]]\nurl = \"rtmp://h/b/k2\"\n",
    )
    .unwrap();
    assert_eq!(c.rtmp.len(), 2);
    // Round trip (the config merge goes through a TOML table).
    let back: C = toml::from_str(&toml::to_string(&c).unwrap()).unwrap();
    assert_eq!(back.rtmp, c.rtmp);
    let e = toml::from_str::<C>("[[rtmp]]\nurl = \"rtmp://h/a/k\"\nkey = 1\n")
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("unknown field"), "{e}");
    let e = toml::from_str::<C>("[[rtmp]]\nurl = \"rtmp://h/SECRETKEY\"\n")
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("APP/STREAM-KEY") && !e.contains("SECRETKEY"),
        "{e}"
    );
}

#[test]
fn masks_urls_in_text() {
    let t = "TOML parse error at line 2\n2 | url = \"rtmp://a.rtmp.youtube.com/live2/SECRET-KEY\n  |       ^";
    let m = mask_urls(t);
    assert!(!m.contains("SECRET"), "{m}");
    assert!(m.contains("rtmp://a.rtmp.youtube.com/live2/***"), "{m}");
    assert_eq!(
        mask_urls("RTMPS://h:444/app/K1, rtmp://h/K2 rtmpx"),
        "rtmps://h:444/app/***, rtmp://h/*** rtmpx"
    );
    assert_eq!(mask_urls("no urls here"), "no urls here");
}
