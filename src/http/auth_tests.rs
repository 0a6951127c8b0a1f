//! Signed URLs (expiry, forgery, paths and prefix boundaries, tampering) and basic auth.

use super::*;

const SECRET: &[u8] = b"0123456789abcdef-test-secret";
const NOW: u64 = 1_800_000_000;

fn key() -> hmac::Key {
    hmac::Key::new(hmac::HMAC_SHA256, SECRET)
}

#[test]
fn signed_url_round_trip_and_rejections() {
    let q = sign(SECRET, "/cams/", NOW + 60);
    assert!(q.starts_with(&format!("expires={}&prefix=/cams/&sig=", NOW + 60)), "{q}");
    assert_eq!(verify(&key(), Some(&q), "/cams/stream.m3u8", NOW), Ok(q.clone()), "canonical form is what was signed");
    // Other query parameters (blocking reload) coexist, in any order.
    let mixed = format!("_HLS_msn=5&{q}&_HLS_part=2");
    assert!(verify(&key(), Some(&mixed), "/cams/media.m3u8", NOW).is_ok());
    assert_eq!(verify(&key(), Some(&q), "/cams/x", NOW + 60), Ok(q.clone()), "valid through the expiry second");
    assert_eq!(verify(&key(), Some(&q), "/cams/x", NOW + 61), Err(Denied::Expired));
    assert_eq!(verify(&key(), Some(&q), "/other/stream.m3u8", NOW), Err(Denied::OtherPath));
    assert_eq!(verify(&key(), Some(&q), "/cams", NOW), Err(Denied::OtherPath), "/cams/ does not cover /cams");
    let other = hmac::Key::new(hmac::HMAC_SHA256, b"another secret");
    assert_eq!(verify(&other, Some(&q), "/cams/x", NOW), Err(Denied::Forged));
    // Tampered expiry or prefix: the signature no longer matches.
    let later = q.replace(&format!("expires={}", NOW + 60), &format!("expires={}", NOW + 999_999));
    assert_eq!(verify(&key(), Some(&later), "/cams/x", NOW), Err(Denied::Forged));
    let wider = q.replace("prefix=/cams/", "prefix=/");
    assert_eq!(verify(&key(), Some(&wider), "/x", NOW), Err(Denied::Forged));
    let at = q.find("sig=").unwrap() + 4;
    let first = &q[at..at + 1];
    let bad_sig = format!("{}{}{}", &q[..at], if first == "A" { "B" } else { "A" }, &q[at + 1..]);
    assert_eq!(verify(&key(), Some(&bad_sig), "/cams/x", NOW), Err(Denied::Forged));
    // Missing and malformed.
    assert_eq!(verify(&key(), None, "/cams/x", NOW), Err(Denied::Missing));
    assert_eq!(verify(&key(), Some("_HLS_msn=1"), "/cams/x", NOW), Err(Denied::Missing));
    for bad in [
        format!("expires={}&prefix=/cams/", NOW + 60),
        format!("{q}&sig=AAAA"),
        q.replace(&format!("expires={}", NOW + 60), "expires=-1"),
        q.replace("sig=", "sig=!!"),
    ] {
        assert_eq!(verify(&key(), Some(&bad), "/cams/x", NOW), Err(Denied::Malformed), "{bad}");
    }
}

#[test]
fn prefix_boundaries() {
    assert!(covers("/a", "/a") && covers("/a", "/a/b") && !covers("/a", "/ab") && !covers("/a", "/"));
    assert!(covers("/a/", "/a/b") && !covers("/a/", "/a") && !covers("/a/", "/ab"));
    assert!(covers("/", "/anything") && covers("/", "/"));
    let q = sign(SECRET, "/a", NOW + 1);
    assert!(verify(&key(), Some(&q), "/a/stream.m3u8", NOW).is_ok());
    assert_eq!(verify(&key(), Some(&q), "/ab/stream.m3u8", NOW), Err(Denied::OtherPath));
    // Prefixes with reserved characters are percent-encoded and still verify.
    let q = sign(SECRET, "/cam one&two/", NOW + 1);
    assert!(q.contains("prefix=/cam%20one%26two/"), "{q}");
    assert!(verify(&key(), Some(&q), "/cam one&two/x", NOW).is_ok());
}

#[test]
fn basic_auth() {
    let b = Basic::new("viewer:pa:ss", "Basic realm=\"t\"");
    let hdr = |s: &str| format!("Basic {}", STANDARD.encode(s));
    assert_eq!(b.check(Some(hdr("viewer:pa:ss").as_bytes())), Ok(()));
    assert_eq!(b.check(Some(format!("basic  {}", STANDARD.encode("viewer:pa:ss")).as_bytes())), Ok(()));
    assert_eq!(b.check(Some(hdr("viewer:pa:sS").as_bytes())), Err(Denied::BadPassword));
    assert_eq!(b.check(Some(hdr("viewer:pa:ss ").as_bytes())), Err(Denied::BadPassword));
    assert_eq!(b.check(Some(hdr("viewer").as_bytes())), Err(Denied::BadPassword));
    assert_eq!(b.check(Some(b"Basic !!!")), Err(Denied::BadPassword));
    assert_eq!(b.check(Some(b"Bearer abc")), Err(Denied::Missing));
    assert_eq!(b.check(None), Err(Denied::Missing));
}

#[test]
fn either_method_grants_viewers() {
    let a = Access::new(Some("0123456789abcdef-test-secret"), Some("u:p"), None);
    let q = sign(SECRET, "/", NOW + 10);
    let basic = format!("Basic {}", STANDARD.encode("u:p"));
    assert_eq!(a.viewer(Some(&q), "/x", None, NOW), Ok(q.clone()));
    assert_eq!(a.viewer(None, "/x", Some(basic.as_bytes()), NOW), Ok(String::new()));
    assert_eq!(a.viewer(None, "/x", None, NOW), Err(Denied::Missing));
    assert_eq!(a.viewer(Some(&q), "/x", None, NOW + 11), Err(Denied::Expired));
    assert_eq!(Access::default().viewer(None, "/x", None, NOW), Ok(String::new()), "off by default");
}

#[test]
fn durations() {
    assert_eq!(parse_duration("24h"), Ok(86_400));
    assert_eq!(parse_duration("90"), Ok(90));
    assert_eq!(parse_duration("7d"), Ok(604_800));
    assert!(parse_duration("1w").is_err() && parse_duration("").is_err() && parse_duration("h").is_err());
    assert!(parse_duration("99999999999999999999d").is_err());
}
