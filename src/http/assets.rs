//! The player page, embedded in the binary.
//!
//! `player/` (index.html, player.js, player.css) is included at compile time, and hls.js is
//! included from the copy that `build.rs` puts in `OUT_DIR` (installed from the npm registry by
//! `npm ci --prefix player`, pinned by `player/package-lock.json`). So hlsd serves a working
//! page on a LAN with no internet and no file next to the binary. The router asks [`lookup`] for
//! any path under the mount point; all URLs in the page are relative, so the mount point can be
//! a path prefix.
//!
//! Cache policy is the router's: these bodies change only with the binary.

/// One embedded file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Asset {
    pub body: &'static [u8],
    pub content_type: &'static str,
}

/// Version of the embedded hls.js (from `player/package.json`), for logs and `--version` output.
pub const HLSJS_VERSION: &str = env!("HLSD_HLSJS_VERSION");

const INDEX_HTML: Asset = Asset {
    body: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/player/index.html")),
    content_type: "text/html; charset=utf-8",
};
const PLAYER_JS: Asset = Asset {
    body: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/player/player.js")),
    content_type: "text/javascript; charset=utf-8",
};
const PLAYER_CSS: Asset = Asset {
    body: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/player/player.css")),
    content_type: "text/css; charset=utf-8",
};
const HLS_JS: Asset = Asset {
    body: include_bytes!(concat!(env!("OUT_DIR"), "/hls.min.js")),
    content_type: "text/javascript; charset=utf-8",
};

/// The asset at `path`, relative to where the player is mounted and without a leading slash:
/// `""` and `"index.html"` are the page itself. `None` for anything else (the router answers 404).
pub fn lookup(path: &str) -> Option<Asset> {
    match path {
        "" | "index.html" => Some(INDEX_HTML),
        "player.js" => Some(PLAYER_JS),
        "player.css" => Some(PLAYER_CSS),
        "hls.min.js" => Some(HLS_JS),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_is_served_at_root_and_by_name() {
        let root = lookup("").expect("root");
        assert_eq!(root, lookup("index.html").expect("index.html"));
        assert!(root.content_type.starts_with("text/html"));
        assert!(std::str::from_utf8(root.body).unwrap().contains("<video"));
    }

    #[test]
    fn page_references_only_relative_assets_that_exist() {
        let html = std::str::from_utf8(lookup("").unwrap().body).unwrap();
        for name in ["player.js", "player.css", "hls.min.js"] {
            assert!(
                html.contains(&format!("\"{name}\"")),
                "index.html must reference {name} relatively"
            );
            assert!(lookup(name).is_some(), "{name} must be embedded");
        }
        assert!(
            !html.contains("src=\"/") && !html.contains("href=\"/"),
            "absolute URLs break mounting under a prefix"
        );
        assert!(
            !html.contains("http://") && !html.contains("https://"),
            "no third-party URLs at run time"
        );
    }

    #[test]
    fn hls_js_is_the_pinned_build() {
        let js = lookup("hls.min.js").unwrap();
        assert!(
            js.body.len() > 100_000,
            "hls.min.js is suspiciously small ({} bytes)",
            js.body.len()
        );
        assert!(js.content_type.starts_with("text/javascript"));
        if HLSJS_VERSION != "external" {
            let pinned = format!("\"{HLSJS_VERSION}\"");
            assert!(
                js.body
                    .windows(pinned.len())
                    .any(|w| w == pinned.as_bytes()),
                "embedded hls.min.js does not carry version {HLSJS_VERSION}"
            );
        }
    }

    #[test]
    fn unknown_paths_are_none() {
        for path in [
            "/",
            "/index.html",
            "stream.m3u8",
            "../Cargo.toml",
            "player.js.map",
            "node_modules/hls.js/dist/hls.min.js",
        ] {
            assert!(lookup(path).is_none(), "{path:?}");
        }
    }
}
