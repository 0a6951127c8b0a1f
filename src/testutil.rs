//! Helpers shared by unit tests across modules: the real camera captures of
//! `../shared/fixtures/` (or `HLSD_FIXTURES`). A missing fixture fails the test that needs it,
//! naming the path and the variable, rather than letting it pass without checking anything.

use std::path::PathBuf;

/// The fixture directory: `HLSD_FIXTURES`, else `../shared/fixtures` beside the repository.
pub fn fixtures_dir() -> PathBuf {
    std::env::var_os("HLSD_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/fixtures")))
}

/// The bytes of fixture `name`; panics if it cannot be read.
pub fn fixture(name: &str) -> Vec<u8> {
    let path = fixtures_dir().join(name);
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "fixture {} cannot be read ({e}); set HLSD_FIXTURES to the directory of the camera captures",
            path.display()
        )
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn missing_fixture_fails_loudly() {
        let r = std::panic::catch_unwind(|| super::fixture("no-such-capture.h264"));
        let msg = *r.unwrap_err().downcast::<String>().unwrap();
        assert!(msg.contains("no-such-capture.h264") && msg.contains("HLSD_FIXTURES"), "{msg}");
    }
}
