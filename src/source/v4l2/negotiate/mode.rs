//! The capture mode: the offered frame size and frame rate nearest to the request (exact when
//! offered), with a note naming what the device offers when they differ.

use super::caps::{
    fps_text, DeviceCaps, FormatCaps, FourCc, FrameRates, FrameSize, Interval, SizeCaps,
};
use super::Request;

/// Picks the offered size nearest to the request (exact if offered).
pub(super) fn choose_size<'a>(
    fmt: &'a FormatCaps,
    req: &Request,
    cam: &DeviceCaps,
    notes: &mut Vec<String>,
) -> (u32, u32, Option<&'a SizeCaps>) {
    let fit = |min: u32, max: u32, step: u32, want: u32| {
        let v = want.clamp(min, max.max(min));
        let step = step.max(1);
        min + (v - min) / step * step
    };
    let candidates = fmt.sizes.iter().map(|s| {
        let (w, h) = match s.size {
            FrameSize::Discrete { width, height } => (width, height),
            FrameSize::Stepwise {
                min_width,
                max_width,
                step_width,
                min_height,
                max_height,
                step_height,
            } => (
                fit(min_width, max_width, step_width, req.width),
                fit(min_height, max_height, step_height, req.height),
            ),
        };
        (w, h, s)
    });
    let Some((w, h, s)) =
        candidates.min_by_key(|(w, h, _)| w.abs_diff(req.width) + h.abs_diff(req.height))
    else {
        return (req.width, req.height, None); // not enumerated: the driver adjusts on S_FMT
    };
    if (w, h) != (req.width, req.height) {
        notes.push(format!(
            "{}x{} is not offered in {} by {} (it offers {}); using {w}x{h}",
            req.width,
            req.height,
            fmt.fourcc,
            cam.label(),
            size_list(fmt)
        ));
    }
    (w, h, Some(s))
}

fn size_list(fmt: &FormatCaps) -> String {
    fmt.sizes
        .iter()
        .map(|s| s.size.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Picks the offered frame rate nearest to the request (exact if offered).
pub(super) fn choose_rate(
    rates: Option<&FrameRates>,
    fps: f64,
    f: FourCc,
    w: u32,
    h: u32,
    cam: &DeviceCaps,
    notes: &mut Vec<String>,
) -> Interval {
    let want = Interval::from_fps(fps);
    let (got, offered) = match rates {
        None | Some(FrameRates::Unknown) => return want,
        Some(FrameRates::Discrete(list)) if list.is_empty() => return want,
        Some(FrameRates::Discrete(list)) => {
            let best = *list
                .iter()
                .min_by(|a, b| (a.fps() - fps).abs().total_cmp(&(b.fps() - fps).abs()))
                .expect("non-empty");
            let offered = list
                .iter()
                .map(|i| fps_text(i.fps()))
                .collect::<Vec<_>>()
                .join(", ");
            (best, offered)
        }
        Some(FrameRates::Range { min_fps, max_fps }) => (
            Interval::from_fps(fps.clamp(*min_fps, max_fps.max(*min_fps))),
            format!("{}..{}", fps_text(*min_fps), fps_text(*max_fps)),
        ),
    };
    if (got.fps() - fps).abs() > 0.01 {
        notes.push(format!(
            "{} fps is not offered for {f} {w}x{h} by {} (it offers {offered} fps); using {}",
            fps_text(fps),
            cam.label(),
            fps_text(got.fps())
        ));
    }
    got
}
