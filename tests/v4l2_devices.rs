//! `hlsd devices` and the `v4l2:` source on a machine without video devices (CI, this project's
//! machines): the plain "no devices" message, configuration errors, and a missing camera that is
//! retried while the server keeps running. Devices themselves are exercised by the unit tests in
//! `src/source/v4l2` against a fake that replays the Pi capture fixtures.

mod common;

use common::Hlsd;
use std::process::{Command, Stdio};
use std::time::Duration;

/// True if this machine has V4L2 nodes (then the "no devices" checks do not apply).
fn has_video_nodes() -> bool {
    std::fs::read_dir("/dev")
        .map(|d| {
            d.flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with("video"))
        })
        .unwrap_or(false)
}

#[test]
fn devices_without_video_nodes_says_so_plainly() {
    if has_video_nodes() {
        eprintln!("skipped: this machine has /dev/video* nodes");
        return;
    }
    let out = Command::new(env!("CARGO_BIN_EXE_hlsd"))
        .arg("devices")
        .env("HLSD_LOG", "info")
        .stdin(Stdio::null())
        .output()
        .expect("run hlsd devices");
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !cfg!(feature = "v4l2") {
        assert!(stdout.contains("built without V4L2 support"), "{stdout}");
        return;
    }
    assert!(
        out.status.success(),
        "exit {:?}; stderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.starts_with("no V4L2 video devices found (/dev/video* does not exist)."),
        "stdout:\n{stdout}"
    );
    assert!(
        stdout.contains("hlsd devices") && stdout.contains("rpicam-vid"),
        "{stdout}"
    );
}

#[test]
fn bad_v4l2_settings_are_refused_with_the_fix() {
    let (st, err) = Hlsd::run_to_exit(&["--source", "v4l2:video0"], Duration::from_secs(20));
    assert_eq!(st.code(), Some(2), "{err}");
    assert!(
        err.contains("needs a device path, e.g. v4l2:/dev/video0"),
        "{err}"
    );
    let (st, err) = Hlsd::run_to_exit(
        &["--source", "v4l2:/dev/video0", "--v4l2-profile", "ultra"],
        Duration::from_secs(20),
    );
    assert_eq!(st.code(), Some(2), "{err}");
    assert!(
        err.contains("v4l2-profile") && err.contains("baseline, constrained-baseline, main"),
        "{err}"
    );
    let (st, err) = Hlsd::run_to_exit(&["--v4l2-level", "4.7"], Duration::from_secs(20));
    assert_eq!(st.code(), Some(2), "{err}");
    assert!(err.contains("not an H.264 level"), "{err}");
}

#[test]
fn missing_camera_is_retried_and_the_server_keeps_running() {
    let node = "/dev/video97";
    if std::path::Path::new(node).exists() {
        eprintln!("skipped: {node} exists");
        return;
    }
    let mut h = Hlsd::start(&["--source", &format!("v4l2:{node}")]);
    // Retries with backoff (0.5 s, 1 s, ...): at least three attempts, each logged.
    let retry = "V4L2 device not streaming; retrying";
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while h.stderr().matches(retry).count() < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "fewer than 3 retries in 20 s:\n{}",
            h.stderr()
        );
        assert!(
            h.wait_exit(Duration::from_millis(100)).is_none(),
            "hlsd exited on its own:\n{}",
            h.stderr()
        );
    }
    let err = h.stderr();
    if cfg!(feature = "v4l2") {
        assert!(
            err.contains(&format!("{node}: cannot open: No such file or directory")),
            "{err}"
        );
    }
    assert!(
        h.wait_exit(Duration::from_millis(100)).is_none(),
        "hlsd exited on its own:\n{err}"
    );
    h.terminate();
    let st = h
        .wait_exit(Duration::from_secs(15))
        .expect("exits promptly on SIGTERM");
    assert!(st.success(), "{st:?}\n{}", h.stderr());
    h.assert_no_panic();
}
