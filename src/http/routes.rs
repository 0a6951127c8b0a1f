//! Typed routes. Only these paths are served; anything else is 404. What each response carries
//! (Content-Type, Cache-Control) is decided in [`crate::policy`], shared with the storage outputs.
//!
//! Media object names carry the run id (`playlist::names`), so a name from an earlier run of the
//! process is unknown (404) rather than a wrong object served from a stale cache.

/// A request path, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// A player asset ("" is the page itself).
    Asset(String),
    Multivariant,
    Media,
    Init(u32),
    Part(u64),
    Segment(u64),
    Snapshot,
    Health,
    Metrics,
}

impl Route {
    /// Parses a path below the base path (starting with '/'). `run` is the current run id.
    pub fn parse(path: &str, run: &str) -> Option<Route> {
        let name = path.strip_prefix('/')?;
        if name.contains('/') || name.contains("..") {
            return None;
        }
        Some(match name {
            "stream.m3u8" => Route::Multivariant,
            "media.m3u8" => Route::Media,
            "snapshot.jpg" => Route::Snapshot,
            "healthz" => Route::Health,
            "metrics" => Route::Metrics,
            _ => {
                if let Some(rest) = name.strip_prefix(run).and_then(|r| r.strip_prefix('-')) {
                    return media(rest);
                }
                Route::Asset(name.to_string())
            }
        })
    }

    /// Label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Route::Asset(_) => "asset",
            Route::Multivariant => "multivariant",
            Route::Media => "media",
            Route::Init(_) => "init",
            Route::Part(_) => "part",
            Route::Segment(_) => "segment",
            Route::Snapshot => "snapshot",
            Route::Health => "healthz",
            Route::Metrics => "metrics",
        }
    }
}

/// A path that tries to leave its directory: a `.` or `..` segment, a backslash, or a
/// percent-encoded `.`, `/`, `\` or NUL (hlsd's names never hold them). Answered 400.
pub fn is_traversal(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    ["%2e", "%2f", "%5c", "%00", "\\"].iter().any(|p| lower.contains(p))
        || path.split('/').any(|seg| seg == "." || seg == "..")
}

fn media(rest: &str) -> Option<Route> {
    let num = |s: &str| -> Option<u64> {
        if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    if let Some(n) = rest.strip_prefix('i').and_then(|r| r.strip_suffix(".mp4")) {
        return num(n).and_then(|n| u32::try_from(n).ok()).map(Route::Init);
    }
    if let Some(n) = rest.strip_prefix('p').and_then(|r| r.strip_suffix(".m4s")) {
        return num(n).map(Route::Part);
    }
    if let Some(n) = rest.strip_prefix('s').and_then(|r| r.strip_suffix(".m4s")) {
        return num(n).map(Route::Segment);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_only_known_routes() {
        let r = "k3x";
        assert_eq!(Route::parse("/", r), Some(Route::Asset(String::new())));
        assert_eq!(Route::parse("/stream.m3u8", r), Some(Route::Multivariant));
        assert_eq!(Route::parse("/media.m3u8", r), Some(Route::Media));
        assert_eq!(Route::parse("/k3x-i0.mp4", r), Some(Route::Init(0)));
        assert_eq!(Route::parse("/k3x-p123.m4s", r), Some(Route::Part(123)));
        assert_eq!(Route::parse("/k3x-s9.m4s", r), Some(Route::Segment(9)));
        assert_eq!(Route::parse("/k3x-s9.mp4", r), None);
        assert_eq!(Route::parse("/k3x-p.m4s", r), None);
        assert_eq!(Route::parse("/k3x-p+1.m4s", r), None);
        assert_eq!(Route::parse("/k3x-p99999999999999999999999.m4s", r), None);
        // Every number hlsd can write parses back (u64::MAX has 20 digits; found by fuzzing).
        assert_eq!(Route::parse("/k3x-p18446744073709551615.m4s", r), Some(Route::Part(u64::MAX)));
        assert_eq!(Route::parse("/k3x-s18446744073709551616.m4s", r), None);
        assert_eq!(Route::parse("/../etc/passwd", r), None);
        assert_eq!(Route::parse("/a/b", r), None);
        assert_eq!(Route::parse("x", r), None);
        // Another run's object is just an unknown asset name (the asset lookup 404s it).
        assert_eq!(Route::parse("/old-p1.m4s", r), Some(Route::Asset("old-p1.m4s".into())));
        for p in ["/../etc/passwd", "/a/./b", "/%2e%2e/x", "/%2E%2E%2Fetc", "/..%2fmedia.m3u8", "/x%5c..", "/a\\b", "/..", "/x%00"] {
            assert!(is_traversal(p), "{p}");
        }
        for p in ["/", "/media.m3u8", "/k3x-p1.m4s", "/..x", "/a..b", "/%20"] {
            assert!(!is_traversal(p), "{p}");
        }
    }
}
