//! Configuration precedence through the real binary: defaults < `--config` file < `HLSD_*`
//! environment < command-line flags, for every option (README "Configuration"). Each case uses
//! an invalid value so the binary stops at validation and its error names the value that won.

use std::process::Command;

/// Runs hlsd with `args` and `env` (and no inherited HLSD_* variables); returns its stderr.
fn config_error(args: &[&str], env: &[(&str, &str)]) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hlsd"));
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("HLSD_")) {
        cmd.env_remove(k);
    }
    let out = cmd.args(args).envs(env.iter().copied()).output().expect("run hlsd");
    assert!(!out.status.success(), "hlsd accepted {args:?} {env:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn environment_sits_between_file_and_flags() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hlsd.toml");
    std::fs::write(&file, "window = 4\nsegment-duration = 20.0\n").unwrap();
    let f = file.to_str().unwrap();
    // The file alone.
    let e = config_error(&["--config", f], &[]);
    assert!(e.contains("segment-duration") && e.contains("20"), "{e}");
    // The environment beats the file...
    let e = config_error(&["--config", f], &[("HLSD_SEGMENT_DURATION", "1.0"), ("HLSD_WINDOW", "3")]);
    assert!(e.contains("window") && e.contains("3 segments"), "{e}");
    // ...and a flag beats the environment.
    let e = config_error(&["--config", f, "--window", "2"], &[("HLSD_SEGMENT_DURATION", "1.0"), ("HLSD_WINDOW", "3")]);
    assert!(e.contains("2 segments"), "{e}");
}

#[test]
fn every_option_reads_its_environment_variable() {
    // One invalid value per option, by its HLSD_ name; the error must name the option.
    for (var, value, key) in [
        ("HLSD_PART_DURATION", "nan", "part-duration"),
        ("HLSD_IDLE_FLUSH_MS", "99", "idle-flush-ms"),
        ("HLSD_STALL_TIMEOUT", "inf", "stall-timeout"),
        ("HLSD_WIDTH", "17", "width"),
        ("HLSD_FPS", "0", "fps"),
        ("HLSD_V4L2_PROFILE", "ultra", "v4l2-profile"),
        ("HLSD_HTTP_WRITE_TIMEOUT", "-1", "http-write-timeout"),
        ("HLSD_MAX_HELD_REQUESTS", "0", "max-held-requests"),
        ("HLSD_OUTPUT", "ftp://nowhere", "output"),
    ] {
        let e = config_error(&[], &[(var, value)]);
        assert!(e.contains(key), "{var}={value}: {e}");
    }
}
