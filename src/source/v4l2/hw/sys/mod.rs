//! Thin wrappers over the V4L2 ioctls the `v4l` crate does not cover for hlsd: format
//! enumeration per queue type (M2M devices have two queues), single- and multi-planar formats,
//! frame rates on OUTPUT queues, and control queries that do not panic on the compound controls
//! of stateless codecs (the Pi's HEVC decoder has them); buffer queues, streaming and poll are
//! in [`buffers`]. Everything goes through `v4l::v4l2::ioctl` with the crate's generated
//! `v4l_sys` structs.

// bindgen names the kernel's enum constants `v4l2_ctrl_type_V4L2_CTRL_TYPE_*`.
#![allow(non_upper_case_globals)]

use super::super::negotiate::{
    ControlCaps, ControlKind, FormatCaps, FourCc, FrameRates, FrameSize, Interval, SizeCaps,
};
use std::io;
use std::os::raw::{c_int, c_void};
use v4l::v4l2::{self, vidioc};
use v4l::v4l_sys::*;

mod buffers;
pub use buffers::*;

/// A V4L2 buffer type (queue).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufType(pub u32);

impl BufType {
    pub const CAPTURE: BufType = BufType(v4l2_buf_type_V4L2_BUF_TYPE_VIDEO_CAPTURE);
    pub const OUTPUT: BufType = BufType(v4l2_buf_type_V4L2_BUF_TYPE_VIDEO_OUTPUT);
    pub const CAPTURE_MPLANE: BufType = BufType(v4l2_buf_type_V4L2_BUF_TYPE_VIDEO_CAPTURE_MPLANE);
    pub const OUTPUT_MPLANE: BufType = BufType(v4l2_buf_type_V4L2_BUF_TYPE_VIDEO_OUTPUT_MPLANE);

    pub fn capture(mplane: bool) -> Self {
        if mplane {
            Self::CAPTURE_MPLANE
        } else {
            Self::CAPTURE
        }
    }
    pub fn output(mplane: bool) -> Self {
        if mplane {
            Self::OUTPUT_MPLANE
        } else {
            Self::OUTPUT
        }
    }
    pub fn is_mplane(self) -> bool {
        self == Self::CAPTURE_MPLANE || self == Self::OUTPUT_MPLANE
    }
    pub fn is_output(self) -> bool {
        self == Self::OUTPUT || self == Self::OUTPUT_MPLANE
    }
}

/// # Safety
/// `arg` must be the struct `req` expects.
pub(super) unsafe fn ioctl<T>(fd: c_int, req: vidioc::_IOC_TYPE, arg: &mut T) -> io::Result<()> {
    v4l2::ioctl(fd, req, arg as *mut T as *mut c_void)
}

pub(super) fn zeroed<T>() -> T {
    // SAFETY: only used for the plain-data bindgen structs of videodev2.h, for which all-zero is
    // a valid value (the kernel API's documented way to initialise them).
    unsafe { std::mem::zeroed() }
}

fn cstr(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).trim().to_string()
}

/// VIDIOC_ENUM_FMT on one queue, with sizes and frame rates.
pub fn enum_formats(fd: c_int, t: BufType) -> io::Result<Vec<FormatCaps>> {
    let mut out = Vec::new();
    for index in 0.. {
        let mut d: v4l2_fmtdesc = zeroed();
        d.index = index;
        d.type_ = t.0;
        // SAFETY: VIDIOC_ENUM_FMT takes a v4l2_fmtdesc.
        match unsafe { ioctl(fd, vidioc::VIDIOC_ENUM_FMT, &mut d) } {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => break,
            Err(e) => return Err(e),
        }
        let fourcc = FourCc::from_u32(d.pixelformat);
        out.push(FormatCaps {
            fourcc,
            description: cstr(&d.description),
            sizes: enum_sizes(fd, fourcc),
        });
    }
    Ok(out)
}

/// VIDIOC_ENUM_FRAMESIZES (+ intervals); empty if the driver does not enumerate.
fn enum_sizes(fd: c_int, fourcc: FourCc) -> Vec<SizeCaps> {
    let mut out = Vec::new();
    for index in 0..256 {
        let mut s: v4l2_frmsizeenum = zeroed();
        s.index = index;
        s.pixel_format = fourcc.to_u32();
        // SAFETY: VIDIOC_ENUM_FRAMESIZES takes a v4l2_frmsizeenum.
        if unsafe { ioctl(fd, vidioc::VIDIOC_ENUM_FRAMESIZES, &mut s) }.is_err() {
            break;
        }
        // SAFETY: the union member is chosen by the type the driver reported.
        let size = unsafe {
            if s.type_ == v4l2_frmsizetypes_V4L2_FRMSIZE_TYPE_DISCRETE {
                let d = s.__bindgen_anon_1.discrete;
                FrameSize::Discrete {
                    width: d.width,
                    height: d.height,
                }
            } else {
                let w = s.__bindgen_anon_1.stepwise;
                FrameSize::Stepwise {
                    min_width: w.min_width,
                    max_width: w.max_width,
                    step_width: w.step_width.max(1),
                    min_height: w.min_height,
                    max_height: w.max_height,
                    step_height: w.step_height.max(1),
                }
            }
        };
        let rates = match size {
            FrameSize::Discrete { width, height } => enum_rates(fd, fourcc, width, height),
            FrameSize::Stepwise {
                max_width,
                max_height,
                ..
            } => enum_rates(fd, fourcc, max_width, max_height),
        };
        let stepwise = matches!(size, FrameSize::Stepwise { .. });
        out.push(SizeCaps { size, rates });
        if stepwise {
            break;
        }
    }
    out
}

/// VIDIOC_ENUM_FRAMEINTERVALS at one size.
fn enum_rates(fd: c_int, fourcc: FourCc, width: u32, height: u32) -> FrameRates {
    let mut list = Vec::new();
    for index in 0..64 {
        let mut i: v4l2_frmivalenum = zeroed();
        i.index = index;
        i.pixel_format = fourcc.to_u32();
        i.width = width;
        i.height = height;
        // SAFETY: VIDIOC_ENUM_FRAMEINTERVALS takes a v4l2_frmivalenum.
        if unsafe { ioctl(fd, vidioc::VIDIOC_ENUM_FRAMEINTERVALS, &mut i) }.is_err() {
            break;
        }
        // SAFETY: the union member is chosen by the type the driver reported.
        unsafe {
            if i.type_ == v4l2_frmivaltypes_V4L2_FRMIVAL_TYPE_DISCRETE {
                let f = i.__bindgen_anon_1.discrete;
                list.push(Interval {
                    num: f.numerator,
                    den: f.denominator,
                });
            } else {
                let s = i.__bindgen_anon_1.stepwise;
                let fps = |f: v4l2_fract| {
                    if f.numerator == 0 {
                        0.0
                    } else {
                        f.denominator as f64 / f.numerator as f64
                    }
                };
                // The shortest interval is the highest rate.
                return FrameRates::Range {
                    min_fps: fps(s.max),
                    max_fps: fps(s.min),
                };
            }
        }
    }
    if list.is_empty() {
        FrameRates::Unknown
    } else {
        FrameRates::Discrete(list)
    }
}

/// What S_FMT/G_FMT report for a single-plane image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PixFormat {
    pub fourcc: FourCc,
    pub width: u32,
    pub height: u32,
    pub bytesperline: u32,
    pub sizeimage: u32,
}

/// VIDIOC_S_FMT for a one-plane format (single-planar API, or multi-planar with one plane);
/// returns what the driver set.
pub fn set_format(fd: c_int, t: BufType, want: PixFormat) -> io::Result<PixFormat> {
    let mut f: v4l2_format = zeroed();
    f.type_ = t.0;
    // SAFETY: writing the union member that matches `type_`; VIDIOC_S_FMT takes a v4l2_format.
    unsafe {
        if t.is_mplane() {
            let mp = &mut f.fmt.pix_mp;
            mp.width = want.width;
            mp.height = want.height;
            mp.pixelformat = want.fourcc.to_u32();
            mp.field = v4l2_field_V4L2_FIELD_NONE;
            mp.num_planes = 1;
            mp.plane_fmt[0].bytesperline = want.bytesperline;
            mp.plane_fmt[0].sizeimage = want.sizeimage;
        } else {
            let p = &mut f.fmt.pix;
            p.width = want.width;
            p.height = want.height;
            p.pixelformat = want.fourcc.to_u32();
            p.field = v4l2_field_V4L2_FIELD_NONE;
            p.bytesperline = want.bytesperline;
            p.sizeimage = want.sizeimage;
        }
        ioctl(fd, vidioc::VIDIOC_S_FMT, &mut f)?;
        Ok(if t.is_mplane() {
            let mp = f.fmt.pix_mp;
            if mp.num_planes > 1 {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    format!(
                        "the driver wants {} planes for {}; hlsd handles one",
                        mp.num_planes, want.fourcc
                    ),
                ));
            }
            PixFormat {
                fourcc: FourCc::from_u32(mp.pixelformat),
                width: mp.width,
                height: mp.height,
                bytesperline: mp.plane_fmt[0].bytesperline,
                sizeimage: mp.plane_fmt[0].sizeimage,
            }
        } else {
            let p = f.fmt.pix;
            PixFormat {
                fourcc: FourCc::from_u32(p.pixelformat),
                width: p.width,
                height: p.height,
                bytesperline: p.bytesperline,
                sizeimage: p.sizeimage,
            }
        })
    }
}

/// VIDIOC_S_PARM: frame interval of a capture queue (camera) or an OUTPUT queue (encoder);
/// returns what the driver set, or None if it has no frame rate setting.
pub fn set_interval(fd: c_int, t: BufType, want: Interval) -> io::Result<Option<Interval>> {
    let mut p: v4l2_streamparm = zeroed();
    p.type_ = t.0;
    let fract = v4l2_fract {
        numerator: want.num,
        denominator: want.den,
    };
    // SAFETY: writing the union member that matches `type_`; VIDIOC_S_PARM takes a v4l2_streamparm.
    unsafe {
        if t.is_output() {
            p.parm.output.timeperframe = fract;
        } else {
            p.parm.capture.timeperframe = fract;
        }
        match ioctl(fd, vidioc::VIDIOC_S_PARM, &mut p) {
            Ok(()) => {}
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL) | Some(libc::ENOTTY)) => {
                return Ok(None)
            }
            Err(e) => return Err(e),
        }
        let got = if t.is_output() {
            p.parm.output.timeperframe
        } else {
            p.parm.capture.timeperframe
        };
        Ok(
            (got.numerator > 0 && got.denominator > 0).then_some(Interval {
                num: got.numerator,
                den: got.denominator,
            }),
        )
    }
}

/// VIDIOC_QUERY_EXT_CTRL (+ QUERYMENU) for one control; None if the device lacks it.
pub fn query_control(fd: c_int, id: u32) -> Option<ControlCaps> {
    let mut q: v4l2_query_ext_ctrl = zeroed();
    q.id = id;
    // SAFETY: VIDIOC_QUERY_EXT_CTRL takes a v4l2_query_ext_ctrl.
    unsafe { ioctl(fd, vidioc::VIDIOC_QUERY_EXT_CTRL, &mut q) }.ok()?;
    if q.id != id {
        return None;
    }
    let kind = match q.type_ {
        v4l2_ctrl_type_V4L2_CTRL_TYPE_INTEGER => ControlKind::Integer,
        v4l2_ctrl_type_V4L2_CTRL_TYPE_BOOLEAN => ControlKind::Boolean,
        v4l2_ctrl_type_V4L2_CTRL_TYPE_MENU | v4l2_ctrl_type_V4L2_CTRL_TYPE_INTEGER_MENU => {
            ControlKind::Menu
        }
        v4l2_ctrl_type_V4L2_CTRL_TYPE_BUTTON => ControlKind::Button,
        _ => ControlKind::Other,
    };
    let mut menu = Vec::new();
    if kind == ControlKind::Menu && q.maximum - q.minimum < 256 {
        for index in q.minimum..=q.maximum {
            let mut m: v4l2_querymenu = zeroed();
            m.id = id;
            m.index = index as u32;
            // SAFETY: VIDIOC_QUERYMENU takes a v4l2_querymenu; skipped indices return EINVAL.
            if unsafe { ioctl(fd, vidioc::VIDIOC_QUERYMENU, &mut m) }.is_ok() {
                // SAFETY: name for MENU controls, value for INTEGER_MENU ones.
                let name = unsafe {
                    if q.type_ == v4l2_ctrl_type_V4L2_CTRL_TYPE_MENU {
                        cstr(&m.__bindgen_anon_1.name)
                    } else {
                        { m.__bindgen_anon_1.value }.to_string()
                    }
                };
                menu.push((index, name));
            }
        }
    }
    let name_bytes: Vec<u8> = q.name.iter().map(|c| *c as u8).collect();
    Some(ControlCaps {
        id,
        name: cstr(&name_bytes),
        kind,
        min: q.minimum,
        max: q.maximum,
        step: q.step,
        default: q.default_value,
        menu,
        read_only: q.flags & (V4L2_CTRL_FLAG_DISABLED | V4L2_CTRL_FLAG_READ_ONLY) != 0,
    })
}

#[cfg(test)]
mod tests {
    use super::super::super::controls;
    use v4l::v4l_sys::*;

    #[test]
    fn control_ids_match_the_kernel_headers() {
        assert_eq!(controls::BITRATE, V4L2_CID_MPEG_VIDEO_BITRATE);
        assert_eq!(controls::BITRATE_MODE, V4L2_CID_MPEG_VIDEO_BITRATE_MODE);
        assert_eq!(controls::GOP_SIZE, V4L2_CID_MPEG_VIDEO_GOP_SIZE);
        assert_eq!(
            controls::REPEAT_SEQ_HEADER,
            V4L2_CID_MPEG_VIDEO_REPEAT_SEQ_HEADER
        );
        assert_eq!(
            controls::FORCE_KEY_FRAME,
            V4L2_CID_MPEG_VIDEO_FORCE_KEY_FRAME
        );
        assert_eq!(controls::H264_I_PERIOD, V4L2_CID_MPEG_VIDEO_H264_I_PERIOD);
        assert_eq!(controls::H264_LEVEL, V4L2_CID_MPEG_VIDEO_H264_LEVEL);
        assert_eq!(controls::H264_PROFILE, V4L2_CID_MPEG_VIDEO_H264_PROFILE);
        assert_eq!(
            v4l2_mpeg_video_h264_profile_V4L2_MPEG_VIDEO_H264_PROFILE_HIGH,
            4
        );
        assert_eq!(
            v4l2_mpeg_video_h264_level_V4L2_MPEG_VIDEO_H264_LEVEL_4_0,
            11
        );
        assert_eq!(
            v4l2_mpeg_video_h264_level_V4L2_MPEG_VIDEO_H264_LEVEL_6_2,
            19
        );
    }
}
