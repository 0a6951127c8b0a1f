//! hlsd's log on a stderr that is not a terminal (a file, a pipe, journald): plain text, no ANSI
//! colour escapes, and no third-party library writing around the log format (OpenH264 used to
//! print a warning of its own at every start of the test source).

mod common;

use common::*;
use std::time::Duration;

#[test]
fn log_to_a_pipe_is_plain_text() {
    let mut srv = Hlsd::start(&["--source", "testsrc", "--width", "320", "--height", "240"]);
    assert!(
        srv.wait_stderr("test source started", STARTUP_TIMEOUT),
        "no start line:\n{}",
        srv.stderr()
    );
    srv.terminate();
    assert!(srv.wait_exit(Duration::from_secs(20)).is_some(), "hlsd did not exit on SIGTERM");
    let log = srv.stderr();
    // Not vacuous: the levels and messages are there, only the escapes must not be.
    assert!(log.contains(" INFO ") && log.contains("test source started"), "{log}");
    assert!(!log.contains("\x1b["), "ANSI escapes on a pipe:\n{log:?}");
    let raw: Vec<&str> = log.lines().filter(|l| l.contains("[OpenH264]")).collect();
    assert!(raw.is_empty(), "OpenH264 wrote to stderr itself: {raw:?}");
    srv.assert_no_panic();
}
