//! The encoder's controls from the request: bitrate and IDR interval clamped into the control's
//! range, profile and level if the menu offers them, repeated headers, and whether a key frame
//! can be forced. What cannot be applied becomes a note naming what the device supports.

use super::caps::{ControlCaps, ControlKind, DeviceCaps};
use super::{Request, SetControl};
use crate::source::v4l2::controls::{self, level_name, profile_name};

/// The controls to set on the encoding device, and what they allow.
pub(super) struct Encoding {
    pub controls: Vec<SetControl>,
    /// The IDR interval (frames) the encoder is set to, if it has such a control.
    pub gop_frames: Option<u32>,
    /// The encoding device accepts FORCE_KEY_FRAME.
    pub can_force_keyframe: bool,
}

/// Plans the controls of `enc` for `req`, noting what differs.
pub(super) fn choose(req: &Request, enc: &DeviceCaps, notes: &mut Vec<String>) -> Encoding {
    let mut controls = Vec::new();
    let who = enc.label();

    if let Some(b) = req.bitrate {
        match enc.control(controls::BITRATE) {
            Some(c) => controls.push(SetControl {
                id: c.id,
                value: clamp(c, b as i64, "bitrate", "bit/s", &who, notes),
            }),
            None => notes.push(format!(
                "{who} has no settable {}; its own bitrate is used",
                controls::name(controls::BITRATE)
            )),
        }
    }
    let gop_control = enc
        .control(controls::H264_I_PERIOD)
        .or_else(|| enc.control(controls::GOP_SIZE));
    let gop_frames = match gop_control {
        Some(c) => {
            let v = clamp(
                c,
                req.idr_interval as i64,
                "IDR interval",
                "frames",
                &who,
                notes,
            );
            controls.push(SetControl { id: c.id, value: v });
            Some(v.max(0) as u32)
        }
        None => {
            if req.idr_interval_explicit {
                notes.push(format!(
                    "{who} has no IDR interval control (V4L2_CID_MPEG_VIDEO_H264_I_PERIOD or GOP_SIZE); \
                     v4l2-idr-interval {} cannot be applied",
                    req.idr_interval
                ));
            }
            None
        }
    };
    for (want, id, what, name) in [
        (
            req.profile,
            controls::H264_PROFILE,
            "profile",
            profile_name as fn(i64) -> String,
        ),
        (
            req.level,
            controls::H264_LEVEL,
            "level",
            level_name as fn(i64) -> String,
        ),
    ] {
        let Some(want) = want else { continue };
        match enc.control(id) {
            Some(c) if c.menu.is_empty() || c.menu.iter().any(|(i, _)| *i == want) => {
                controls.push(SetControl { id, value: want })
            }
            Some(c) => {
                notes.push(format!(
                "H.264 {what} {} is not offered by {who} (it offers {}); its default ({}) is used",
                name(want),
                c.menu.iter().map(|(i, _)| name(*i)).collect::<Vec<_>>().join(", "),
                name(c.default)
            ))
            }
            None => notes.push(format!(
                "{who} has no settable {}; its default is used",
                controls::name(id)
            )),
        }
    }
    if let Some(c) = enc.control(controls::REPEAT_SEQ_HEADER) {
        controls.push(SetControl {
            id: c.id,
            value: req.repeat_headers as i64,
        });
    }
    let can_force_keyframe = enc
        .control(controls::FORCE_KEY_FRAME)
        .is_some_and(|c| c.kind == ControlKind::Button);
    if gop_frames.is_none() && !can_force_keyframe {
        notes.push(format!(
            "{who} has neither an IDR interval control nor FORCE_KEY_FRAME: segments start at the \
             camera's own key frames, however far apart"
        ));
    }
    Encoding {
        controls,
        gop_frames,
        can_force_keyframe,
    }
}

/// Clamps `want` into the control's range (and step), noting a change.
fn clamp(
    c: &ControlCaps,
    want: i64,
    what: &str,
    unit: &str,
    who: &str,
    notes: &mut Vec<String>,
) -> i64 {
    let mut v = want.clamp(c.min, c.max.max(c.min));
    if c.step > 1 {
        v = c.min + (v - c.min) / c.step as i64 * c.step as i64;
    }
    if v != want {
        notes.push(format!(
            "{what} {want} {unit} is outside what {who} supports ({}..={} step {}); using {v}",
            c.min, c.max, c.step
        ));
    }
    v
}
