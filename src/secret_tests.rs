//! Masking of every shape a secret takes in a command line, URL, header or log line.

use super::*;

fn masked(input: &str, secret: &str, keeps: &str) {
    let m = mask(input);
    assert!(!m.contains(secret), "{input:?} -> {m:?} still holds {secret:?}");
    assert!(m.contains(keeps), "{input:?} -> {m:?} lost {keeps:?}");
    assert!(m.contains(MASK), "{input:?} -> {m:?}");
}

#[test]
fn masks_url_userinfo() {
    masked("ffmpeg -i rtsp://admin:S3CRET@192.168.1.9:554/stream1 -c copy", "S3CRET", "rtsp://admin:***@192.168.1.9:554/stream1");
    masked("curl https://TOKEN1234@example.com/x", "TOKEN1234", "https://***@example.com/x");
    masked("'http://u:p%40ss@h/'", "p%40ss", "http://u:***@h/'");
    assert_eq!(mask("http://host/path a@b"), "http://host/path a@b", "an @ after the authority is not userinfo");
}

#[test]
fn masks_rtmp_stream_keys() {
    masked("ffmpeg -f flv rtmp://a.rtmp.youtube.com/live2/abcd-SECRET-KEY", "SECRET", "rtmp://a.rtmp.youtube.com/live2/***");
    masked("rtmps://u:PW@h/app/KEYX", "PW", "rtmps://");
    assert!(!mask("rtmps://u:PW@h/app/KEYX").contains("KEYX"));
}

#[test]
fn masks_secret_query_values() {
    for (input, secret) in [
        ("https://cdn/x.m3u8?token=TOK123&quality=hd", "TOK123"),
        ("s3 put https://b.s3.amazonaws.com/o?X-Amz-Credential=AKIAX&X-Amz-Signature=abcdef01", "abcdef01"),
        ("https://b.blob.core.windows.net/c?sv=2020&sig=SIGVALUE%3D", "SIGVALUE"),
        ("srt://0.0.0.0:9000?mode=listener&passphrase=PASSPHRASE1&latency=20", "PASSPHRASE1"),
        ("srt://h:9000?streamid=#!::r=live/STREAMKEY,m=publish", "STREAMKEY"),
        ("http://h/?api_key=APIKEY9", "APIKEY9"),
        ("http://h/?auth=AUTHV&key=KEYV", "AUTHV"),
        ("http://h/?auth=AUTHV&key=KEYV", "KEYV"),
        ("http://h/?access_token=AT&password=PW_VALUE", "PW_VALUE"),
    ] {
        let m = mask(input);
        assert!(!m.contains(secret), "{input} -> {m}");
    }
    let m = mask("https://cdn/x.m3u8?token=TOK123&quality=hd&keyint=30");
    assert!(m.contains("quality=hd") && m.contains("keyint=30"), "harmless parameters stay: {m}");
}

#[test]
fn masks_flag_values() {
    for (input, secret, keeps) in [
        ("openssl enc -pass pass:HUNTER2 -in x", "HUNTER2", "-in x"),
        ("tool -password HUNTER2 -v", "HUNTER2", "-v"),
        ("tool --key=HUNTER2 --verbose", "HUNTER2", "--verbose"),
        ("tool --key HUNTER2 --verbose", "HUNTER2", "--verbose"),
        ("ffmpeg -passphrase 'two words' -f mpegts srt://h:1", "two words", "-f mpegts"),
        ("ffmpeg -srt_passphrase \"q u o\" -y", "q u o", "-y"),
        ("tool --access-secret=HUNTER2", "HUNTER2", "--access-secret="),
        ("tool -streamid HUNTER2", "HUNTER2", "-streamid"),
        ("secret=HUNTER2 other=1", "HUNTER2", "other=1"),
        ("ffmpeg -headers 'Authorization: Bearer HUNTER2' -i x", "HUNTER2", "Authorization: Bearer"),
        ("Authorization: Basic dXNlcjpIVU5URVIy", "dXNlcjpIVU5URVIy", "Authorization: Basic"),
        ("authorization:TOKENONLY", "TOKENONLY", "authorization:"),
    ] {
        masked(input, secret, keeps);
    }
    // A flag without a value, a harmless flag, a value that is another flag.
    for plain in ["rpicam-vid -t 0 --inline --intra 30 -o -", "x264 keyint=30 min-keyint=3", "tool --key --verbose", "ffmpeg -g 30 -bf 0"] {
        assert_eq!(mask(plain), plain);
    }
}

#[test]
fn secret_names() {
    for n in ["key", "--key", "X-Amz-Signature", "api_key", "streamkey", "passphrase", "auth", "access-secret", "sig", "session_token"] {
        assert!(secret_name(n), "{n}");
    }
    for n in ["keyint", "design", "quality", "-g", "mode", "latency", "signal"] {
        assert!(!secret_name(n), "{n}");
    }
}

#[test]
fn types_never_print_secrets() {
    let s: Secret = "HUNTER2".parse().unwrap();
    assert_eq!(format!("{s} {s:?}"), "*** \"***\"");
    assert_eq!(s.expose(), "HUNTER2");
    let m: Masked = "exec:ffmpeg -i rtsp://u:HUNTER2@cam/ -f h264 -".parse().unwrap();
    assert!(!format!("{m} {m:?}").contains("HUNTER2"));
    assert!(m.contains("HUNTER2"), "the code sees the real text");
    assert!(format!("{m:?}").starts_with('"'));
}

/// `Debug` of the whole config, with a secret in every shape the config takes one.
#[test]
fn config_debug_masks_every_shape() {
    use crate::config::Config;
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("hlsd.toml");
    std::fs::write(
        &p,
        "source = \"exec:ffmpeg -i rtsp://admin:SECRET01@cam/ -passphrase SECRET02 -f h264 -\"\n\
         access-secret = \"SECRET03-0123456789\"\nbasic-auth = \"u:SECRET04\"\nmetrics-auth = \"m:SECRET05\"\n\
         s3-endpoint = \"http://k:SECRET06@minio:9000\"\n\
         rtmp = [\"rtmp://h/live/SECRET07\", { url = \"rtmps://h/live/SECRET08\" }]\n\
         [[output]]\nurl = \"s3://bucket/x\"\naccess-key-id = \"AKID\"\nsecret-access-key = \"SECRET09\"\n\
         session-token = \"SECRET10\"\nendpoint = \"http://k:SECRET11@minio:9000\"\n\
         [[output]]\nurl = \"dir:/srv/hls\"\n",
    )
    .unwrap();
    let c = Config::load_from(["hlsd", "--config", p.to_str().unwrap()]).unwrap();
    assert_eq!(c.rtmp.len(), 2);
    assert_eq!(c.output.len(), 2);
    // Table-array RTMP form, and the command-line forms.
    std::fs::write(dir.path().join("t.toml"), "[[rtmp]]\nurl = \"rtmp://h/live/SECRET12\"\n").unwrap();
    let t = Config::load_from(["hlsd", "--config", dir.path().join("t.toml").to_str().unwrap()]).unwrap();
    let cli = Config::load_from([
        "hlsd", "--rtmp", "rtmp://h/app/SECRET13", "--source", "exec:tool --key=SECRET14",
        "--output", "s3://b-1/x", "--basic-auth", "u:SECRET15",
    ])
    .unwrap();
    for (what, cfg) in [("file", &c), ("table array", &t), ("command line", &cli)] {
        for dbg in [format!("{cfg:?}"), format!("{cfg:#?}")] {
            assert!(!dbg.contains("SECRET"), "{what}: Debug shows a secret:\n{dbg}");
            assert!(dbg.contains(MASK), "{what}: {dbg}");
        }
    }
    assert!(format!("{c:?}").contains("rtmp://h/live/***") && format!("{c:?}").contains("rtsp://admin:***@cam/"));
    // The code still sees the real values.
    assert!(c.source.contains("SECRET01") && c.access_secret.as_ref().unwrap().expose().starts_with("SECRET03"));
}
