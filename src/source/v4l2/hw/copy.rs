//! Copying a raw frame from a camera buffer into an M2M encoder's OUTPUT buffer, for when the
//! two cannot share the buffer (no DMABUF export/import, or different line pitch or plane
//! alignment). One pass over the picture; a single memcpy when the layouts agree.

use super::super::negotiate::FourCc;

/// Where a buffer's planes lie: line pitch of the luma plane and the number of luma rows before
/// the chroma planes start (the height rounded up to the driver's alignment).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub bytesperline: u32,
    pub plane_height: u32,
}

impl Layout {
    /// The layout of a one-buffer image from what S_FMT reported: the plane height is inferred
    /// from `sizeimage` (4:2:0 images are 1.5 × pitch × plane height).
    pub fn of(f: FourCc, height: u32, bytesperline: u32, sizeimage: u32) -> Layout {
        let plane_height = match f {
            FourCc::NV12 | FourCc::YU12 if bytesperline > 0 => {
                ((sizeimage as u64 * 2 / 3) / bytesperline as u64) as u32
            }
            _ => height,
        };
        Layout {
            bytesperline,
            plane_height: plane_height.max(height),
        }
    }
}

/// (offset, pitch, rows, bytes per row) of each plane.
fn planes(f: FourCc, width: u32, height: u32, l: Layout) -> Vec<(usize, usize, usize, usize)> {
    let (w, h, bpl, ph) = (
        width as usize,
        height as usize,
        l.bytesperline as usize,
        l.plane_height as usize,
    );
    match f {
        FourCc::NV12 => vec![(0, bpl, h, w), (bpl * ph, bpl, h / 2, w)],
        FourCc::YU12 => {
            let c = bpl * ph;
            vec![
                (0, bpl, h, w),
                (c, bpl / 2, h / 2, w / 2),
                (c + (bpl / 2) * (ph / 2), bpl / 2, h / 2, w / 2),
            ]
        }
        _ => vec![(0, bpl, h, w * 2)], // YUYV and other packed formats
    }
}

/// Copies the picture; returns the bytes used in `dst` (its `bytesused`).
pub fn copy_frame(
    f: FourCc,
    width: u32,
    height: u32,
    src: &[u8],
    src_l: Layout,
    dst: &mut [u8],
    dst_l: Layout,
) -> usize {
    let dst_planes = planes(f, width, height, dst_l);
    let used = dst_planes
        .last()
        .map(|&(o, p, r, _)| o + p * r)
        .unwrap_or(0)
        .min(dst.len());
    if src_l == dst_l {
        let n = used.min(src.len());
        dst[..n].copy_from_slice(&src[..n]);
        return n;
    }
    for (s, d) in planes(f, width, height, src_l).into_iter().zip(dst_planes) {
        let row = s.3.min(d.3);
        for r in 0..s.2.min(d.2) {
            let (a, b) = (s.0 + r * s.1, d.0 + r * d.1);
            if a + row > src.len() || b + row > dst.len() {
                return used;
            }
            dst[b..b + row].copy_from_slice(&src[a..a + row]);
        }
    }
    used
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nv12_and_yu12_are_restrided() {
        // 4x2 NV12, source pitch 4, destination pitch 8 with a plane height of 4 (aligned).
        let src: Vec<u8> = (1..=12).collect(); // Y: 1..8, UV: 9..12
        let sl = Layout::of(FourCc::NV12, 2, 4, 12);
        let dl = Layout::of(FourCc::NV12, 2, 8, 48);
        assert_eq!((sl.plane_height, dl.plane_height), (2, 4));
        let mut dst = vec![0u8; 48];
        let used = copy_frame(FourCc::NV12, 4, 2, &src, sl, &mut dst, dl);
        assert_eq!(used, 40);
        assert_eq!(&dst[0..4], &[1, 2, 3, 4]);
        assert_eq!(&dst[8..12], &[5, 6, 7, 8]);
        assert_eq!(&dst[32..36], &[9, 10, 11, 12]);
        assert_eq!(dst[4], 0, "padding untouched");

        // 4x2 YU12: Y 8 bytes, U 2, V 2.
        let src: Vec<u8> = (1..=12).collect();
        let mut dst = vec![0u8; 48];
        copy_frame(
            FourCc::YU12,
            4,
            2,
            &src,
            Layout::of(FourCc::YU12, 2, 4, 12),
            &mut dst,
            Layout::of(FourCc::YU12, 2, 8, 48),
        );
        assert_eq!(&dst[32..34], &[9, 10], "U at pitch 4");
        assert_eq!(&dst[40..42], &[11, 12], "V after two U rows of pitch 4");

        // Same layout: one memcpy.
        let mut dst = vec![0u8; 16];
        let l = Layout::of(FourCc::YUYV, 2, 8, 16);
        assert_eq!(
            copy_frame(FourCc::YUYV, 4, 2, &[7u8; 16], l, &mut dst, l),
            16
        );
        assert_eq!(dst, vec![7u8; 16]);
    }
}
