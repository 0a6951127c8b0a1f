//! OpenH264's own messages, routed through `tracing` (target `openh264`).
//!
//! The C library prints with `fprintf(stderr, ...)` (`welsCodecTrace`), outside hlsd's log
//! format and filter, and does so at every start: while the encoder initialises it warns that
//! "bitrate can't be controlled ... without enabling skip frame". Frame skipping is off on
//! purpose (every picture must come out so that IDRs land exactly every `idr_interval_frames`),
//! so that warning is expected. The `openh264` crate sets the library's trace level only after
//! initialisation (to quiet), too late for it; the trace callback, which OpenH264 accepts before
//! initialisation, replaces the library's stderr writer instead.
//!
//! Levels: OpenH264's errors become warnings (hlsd itself reports an encoder failure as an
//! error, [`super::TestsrcError::Encoder`]); its warnings are about parameters hlsd sets on
//! purpose, so they become debug lines; anything more detailed becomes trace.

use openh264::encoder::Encoder;
use openh264_sys2::{
    WelsTraceCallback, ENCODER_OPTION_TRACE_CALLBACK, WELS_LOG_ERROR, WELS_LOG_WARNING,
};
use std::ffi::{c_char, c_int, c_void, CStr};

/// Installs the callback; call before the first `encode` (which initialises the encoder).
pub(super) fn route_to_tracing(encoder: &mut Encoder) {
    let callback: WelsTraceCallback = Some(forward);
    // SAFETY: TRACE_CALLBACK is one of the three options OpenH264 takes before initialisation
    // (`CWelsH264SVCEncoder::SetOption`); it copies the function pointer out of `callback`,
    // which lives through the call. No parameter the encoder relies on is touched.
    let rc = unsafe {
        encoder
            .raw_api()
            .set_option(ENCODER_OPTION_TRACE_CALLBACK, (&raw const callback).cast_mut().cast())
    };
    if rc != 0 {
        tracing::debug!(rc, "OpenH264 refused its log callback; its messages go to stderr");
    }
}

/// The callback: one message, NUL-terminated (OpenH264 formats it into a fixed buffer).
unsafe extern "C" fn forward(_ctx: *mut c_void, level: c_int, message: *const c_char) {
    if message.is_null() {
        return;
    }
    // SAFETY: OpenH264 passes a NUL-terminated string that stays valid during the call.
    let text = unsafe { CStr::from_ptr(message) }.to_string_lossy();
    let text = strip_prefix(&text);
    if level <= WELS_LOG_ERROR {
        tracing::warn!(target: "openh264", "{text}");
    } else if level <= WELS_LOG_WARNING {
        tracing::debug!(target: "openh264", "{text}");
    } else {
        tracing::trace!(target: "openh264", "{text}");
    }
}

/// Drops the `[OpenH264] this = 0x55d0c1a0, ` prefix (an address, useless in a log) and the
/// level word that follows it, which the tracing level replaces.
fn strip_prefix(text: &str) -> &str {
    let rest = match text.strip_prefix("[OpenH264] this = ") {
        Some(r) => r.split_once(", ").map_or(r, |(_, m)| m),
        None => text,
    };
    ["Error:", "Warning:", "Info:", "Debug:", "Detail:"]
        .iter()
        .find_map(|w| rest.strip_prefix(w))
        .unwrap_or(rest)
        .trim()
}

#[cfg(test)]
mod tests {
    use super::strip_prefix;

    #[test]
    fn prefix_and_level_word_are_dropped() {
        assert_eq!(
            strip_prefix("[OpenH264] this = 0x0x55d0c1a0, Warning:bEnableFrameSkip = 0,bitrate can't be controlled"),
            "bEnableFrameSkip = 0,bitrate can't be controlled"
        );
        assert_eq!(strip_prefix("plain text"), "plain text");
        assert_eq!(strip_prefix("[OpenH264] this = 0x1"), "0x1");
    }
}
