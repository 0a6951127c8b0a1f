//! Harnesses for configuration text: a TOML file → [`Config`] → `validate()` → the settings the
//! app derives from it, and the spec strings inside it (`--source`, `--rtmp`, `--output`,
//! `--v4l2-profile/level`) and the URL masking of error messages.

use crate::config::Config;
use crate::sink::rtmp::url::KEY_MASK;
use crate::sink::rtmp::{mask_urls, RtmpUrl};
use crate::sink::storage::config::{OutputSpec, Target};
use crate::source::SourceSpec;
use std::time::Duration;

/// TOML text → `Config`. Properties: no panic; a config that validates can be turned into the
/// app's settings (durations and all: `validate` must refuse what would panic later), and
/// serialises to TOML that parses back to the same config (the `--config` merge round-trips
/// through TOML) and validates again.
pub fn config_toml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let cfg: Config = match toml::from_str(text) {
        Ok(c) => c,
        Err(e) => {
            let _ = mask_urls(&e.to_string());
            return;
        }
    };
    let _ = format!("{cfg:?}");
    if cfg.validate().is_err() {
        return;
    }
    let _ = crate::app::source_config(&cfg);
    let _ = crate::app::segmenter_config(&cfg);
    assert!(Duration::try_from_secs_f64(cfg.http_timeout).is_ok(), "validated http-timeout {} is no Duration", cfg.http_timeout);
    let _ = cfg.base();
    for o in &cfg.output {
        let _ = (o.0.label(), o.0.target(), o.0.s3_settings("b", cfg.s3_endpoint.as_deref()));
    }
    let written = toml::to_string(&cfg).unwrap_or_else(|e| panic!("validated config does not serialise: {e}"));
    let back: Config = toml::from_str(&written).unwrap_or_else(|e| panic!("serialised config does not parse: {e}\n{written}"));
    assert!(back.validate().is_ok(), "serialised config no longer validates:\n{written}");
    let again = toml::to_string(&back).expect("serialises");
    assert_eq!(written, again, "config changes on a TOML round trip");
}

/// Spec strings. Properties: no panic; `--source` specs round-trip through their `Display`; an
/// RTMP URL's masked forms (Display, Debug, `masked`, `tc_url`, `mask_urls`) never show its
/// stream key and the masked URL parses back to the same host, port and app; a refused RTMP
/// URL's error does not show what would be its key; `mask_urls` is idempotent and bounded;
/// an S3 output's label is a spec for the same target.
pub fn specs(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(spec) = text.parse::<SourceSpec>() {
        assert_eq!(spec.to_string().parse::<SourceSpec>(), Ok(spec.clone()), "source spec {spec} does not round-trip");
    }
    rtmp(&text);
    let masked = mask_urls(&text);
    assert!(masked.len() <= 2 * text.len() + 16);
    assert_eq!(mask_urls(&masked), masked, "mask_urls is not idempotent");
    if let Ok(spec) = text.parse::<OutputSpec>() {
        let _ = spec.validate();
        if let Ok(t @ Target::S3 { .. }) = spec.target() {
            let again = spec.label().parse::<OutputSpec>().and_then(|s| s.target());
            assert_eq!(again, Ok(t), "label {} is not the same output", spec.label());
        }
    }
    let _ = crate::source::v4l2::controls::parse_profile(&text);
    let _ = crate::source::v4l2::controls::parse_level(&text);
}

fn rtmp(text: &str) {
    const MARK: &str = "ZqKeyMark";
    if text.contains(MARK) {
        return; // (the fuzzer learns the marker from the comparisons)
    }
    match text.parse::<RtmpUrl>() {
        Ok(u) => {
            // Put a marker in place of the key and look for it in everything printed (the key
            // itself may well also spell a part of the host or app).
            let raw = u.expose().trim_end_matches('/');
            let stem = raw.strip_suffix(u.stream_key()).unwrap_or_else(|| panic!("key is not the end of {raw:?}"));
            let probe = format!("{stem}{MARK}");
            let p: RtmpUrl = probe.parse().unwrap_or_else(|e| panic!("{probe:?} (another key) does not parse: {e}"));
            assert_eq!(p.stream_key(), MARK);
            for shown in [p.masked(), p.to_string(), format!("{p:?}"), p.tc_url()] {
                assert!(!shown.contains(MARK), "{shown} shows the stream key");
            }
            if !probe.contains(|c: char| c.is_whitespace() || "\"'`,]}>".contains(c)) {
                let m = mask_urls(&probe);
                assert!(!m.contains(MARK), "mask_urls shows the stream key: {m}");
            }
            let back: RtmpUrl = u.masked().parse().unwrap_or_else(|e| panic!("masked URL {} does not parse: {e}", u.masked()));
            assert_eq!((back.tls, &back.host, back.port, &back.app), (u.tls, &u.host, u.port, &u.app), "{}", u.masked());
            assert_eq!(back.stream_key(), KEY_MASK);
        }
        Err(_) => {
            // A refused URL's error must not show what would be its key (the last path
            // component): put a marker there and look for it in the error.
            let Some((scheme, rest)) = text.trim().split_once("://") else { return };
            let Some((authority, path)) = rest.split_once('/') else { return };
            let app = path.trim_end_matches('/').rsplit_once('/').map(|(a, _)| format!("{a}/")).unwrap_or_default();
            if let Err(e) = format!("{scheme}://{authority}/{app}{MARK}").parse::<RtmpUrl>() {
                assert!(!e.to_string().contains(MARK), "error shows the would-be key: {e}");
            }
        }
    }
}
