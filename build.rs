//! Build script: puts hls.js into the binary.
//!
//! The player page (`player/`) is embedded with `include_bytes!` by `src/http/assets.rs`, so
//! hlsd serves it with no file next to the binary and no third-party CDN at run time. Its one
//! external piece, hls.js, comes from the npm registry, pinned by `player/package.json` and
//! `player/package-lock.json`. This script makes sure the pinned version is installed
//! (`npm ci --prefix player` when `player/node_modules/hls.js` is missing or holds another
//! version) and copies `hls.min.js` into `OUT_DIR`, where `assets.rs` includes it.
//!
//! Packagers without npm or network can set `HLSD_HLSJS=/path/to/hls.min.js` instead.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// What `assets.rs` includes from `OUT_DIR`.
const OUT_NAME: &str = "hls.min.js";

fn main() {
    let manifest_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let player = manifest_dir.join("player");

    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=HLSD_HLSJS");
    println!("cargo:rerun-if-changed=player/package.json");
    println!("cargo:rerun-if-changed=player/package-lock.json");

    let (source, version) = match env::var_os("HLSD_HLSJS") {
        Some(path) => {
            let path = PathBuf::from(path);
            println!("cargo:rerun-if-changed={}", path.display());
            (path, String::from("external"))
        }
        None => {
            let wanted = pinned_version(&player);
            let installed_manifest = player.join("node_modules/hls.js/package.json");
            if installed_version(&installed_manifest).as_deref() != Some(wanted.as_str()) {
                npm_ci(&player, &wanted);
            }
            // Re-run when someone reinstalls or changes node_modules/hls.js by hand.
            println!("cargo:rerun-if-changed=player/node_modules/hls.js/package.json");
            println!("cargo:rerun-if-changed=player/node_modules/hls.js/dist/hls.min.js");
            (player.join("node_modules/hls.js/dist/hls.min.js"), wanted)
        }
    };

    let body = fs::read(&source).unwrap_or_else(|e| {
        fail(&format!(
            "cannot read hls.js at {}: {e}\n\
             Run `npm ci --prefix player` in the repository root, or set HLSD_HLSJS to a hls.min.js file.",
            source.display()
        ))
    });
    // Write only on change so that a re-run of this script does not touch the file's mtime.
    let target = out_dir.join(OUT_NAME);
    if fs::read(&target).ok().as_deref() != Some(body.as_slice()) {
        fs::write(&target, &body)
            .unwrap_or_else(|e| fail(&format!("cannot write {}: {e}", target.display())));
    }
    println!("cargo:rustc-env=HLSD_HLSJS_VERSION={version}");
}

/// The exact hls.js version that `player/package.json` pins (`"hls.js": "1.7.4"`).
fn pinned_version(player: &Path) -> String {
    let manifest = player.join("package.json");
    let text = fs::read_to_string(&manifest)
        .unwrap_or_else(|e| fail(&format!("cannot read {}: {e}", manifest.display())));
    json_string_field(&text, "hls.js")
        .filter(|v| v.chars().all(|c| c.is_ascii_digit() || c == '.'))
        .unwrap_or_else(|| {
            fail(&format!(
                "{} must pin hls.js to an exact version (\"hls.js\": \"1.7.4\")",
                manifest.display()
            ))
        })
}

/// The version of the installed hls.js, if there is one.
fn installed_version(package_json: &Path) -> Option<String> {
    json_string_field(&fs::read_to_string(package_json).ok()?, "version")
}

/// First `"key": "value"` in a JSON text. Enough for these two package.json files without a
/// JSON dependency: ours names "hls.js" once (in `dependencies`), and hls.js's names "version" once.
fn json_string_field(text: &str, key: &str) -> Option<String> {
    let pattern = format!("\"{key}\"");
    let rest = &text[text.find(&pattern)? + pattern.len()..];
    let rest = rest
        .trim_start()
        .strip_prefix(':')?
        .trim_start()
        .strip_prefix('"')?;
    Some(rest[..rest.find('"')?].to_string())
}

fn npm_ci(player: &Path, wanted: &str) {
    println!("cargo:warning=installing hls.js {wanted} with `npm ci --prefix player` (player/node_modules is missing or stale)");
    let npm = env::var_os("NPM").unwrap_or_else(|| "npm".into());
    let status = Command::new(&npm)
        .args(["ci", "--no-audit", "--no-fund", "--prefix"])
        .arg(player)
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => fail(&format!(
            "`npm ci --prefix player` failed ({s}).\n\
             hlsd embeds hls.js from player/node_modules. Fix the npm error above and run \
             `npm ci --prefix player` in the repository root, or set HLSD_HLSJS to a hls.min.js {wanted} file."
        )),
        Err(e) => fail(&format!(
            "cannot run npm ({e}).\n\
             hlsd embeds hls.js from player/node_modules: install Node.js + npm and run \
             `npm ci --prefix player` in the repository root, or set HLSD_HLSJS to a hls.min.js {wanted} file."
        )),
    }
}

fn fail(message: &str) -> ! {
    panic!("hlsd build script: {message}");
}
