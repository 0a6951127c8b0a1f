//! Test-pattern painter for [`super`]: builds the I420 planes the encoder reads.
//!
//! The picture is scrolling colour bars over a static luma ramp, a bouncing red box, and a black
//! panel with a large UTC clock (`HH:MM:SS.mmm`, the frame's capture time) above the frame number.
//! Everything is drawn with a 5x7 bitmap font scaled up by an integer factor, so a viewer can read
//! glass-to-glass latency off the screen. The planes are allocated once and repainted in place.

use std::time::{SystemTime, UNIX_EPOCH};

/// 75 % colour bars (BT.709, limited range) as (Y, Cb, Cr): white, yellow, cyan, green, magenta, red, blue.
const BARS: [(u8, u8, u8); 7] = [
    (180, 128, 128),
    (168, 44, 136),
    (145, 147, 44),
    (133, 63, 52),
    (63, 193, 204),
    (51, 109, 212),
    (28, 212, 120),
];
const BLACK: (u8, u8, u8) = (16, 128, 128);
/// 100 % red, visible on every shade of the luma ramp.
const RED: (u8, u8, u8) = (63, 102, 240);
const WHITE: u8 = 235;

/// 5x7 glyphs, one byte per row, bit 4 is the leftmost column. Order: `0`-`9`, `:`, `.`.
const FONT: [[u8; 7]; 12] = [
    [0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E],
    [0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E],
    [0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F],
    [0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E],
    [0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02],
    [0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E],
    [0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E],
    [0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08],
    [0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E],
    [0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C],
    [0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x0C, 0x00],
    [0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x0C],
];
/// Glyph cell in font pixels: 5 columns plus 1 column of spacing, 7 rows.
const CELL_W: usize = 6;
const CELL_H: usize = 7;
/// Characters in `HH:MM:SS.mmm`.
const CLOCK_LEN: usize = 12;
const FRAME_NO_LEN: usize = 8;

/// One I420 picture, repainted for every frame.
pub(super) struct Picture {
    width: usize,
    height: usize,
    pub(super) y: Vec<u8>,
    pub(super) u: Vec<u8>,
    pub(super) v: Vec<u8>,
    /// One row of bars (luma, then chroma), stored twice so a scrolled row is a single slice copy.
    bars: [Vec<u8>; 3],
    /// One row of the luma ramp under the bars.
    ramp: Vec<u8>,
}

impl Picture {
    /// `width` and `height` must be even (checked by the caller's config validation).
    pub(super) fn new(width: usize, height: usize) -> Self {
        let (cw, ch) = (width / 2, height / 2);
        let mut bars = [vec![0; 2 * width], vec![0; 2 * cw], vec![0; 2 * cw]];
        for x in 0..width {
            bars[0][x] = BARS[x * BARS.len() / width].0;
        }
        for x in 0..cw {
            let c = BARS[x * BARS.len() / cw];
            bars[1][x] = c.1;
            bars[2][x] = c.2;
        }
        for plane in &mut bars {
            let half = plane.len() / 2;
            plane.copy_within(..half, half);
        }
        let ramp = (0..width)
            .map(|x| (16 + x * 219 / width.max(1)) as u8)
            .collect();
        Self {
            width,
            height,
            y: vec![0; width * height],
            u: vec![128; cw * ch],
            v: vec![128; cw * ch],
            bars,
            ramp,
        }
    }

    /// Paints frame `n` of a `fps` stream whose picture was taken at `capture`.
    pub(super) fn paint(&mut self, n: u64, fps: u32, capture: SystemTime) {
        let (w, h) = (self.width, self.height);
        let bars_h = (h * 2 / 3) & !1;
        // Bars scroll left by one full width every 4 seconds; keep the offset even for chroma.
        let step = ((w / (4 * fps as usize)).max(1) + 1) & !1;
        let off = (((n % w as u64) as usize * step) % w) & !1;
        for row in 0..h {
            let dst = &mut self.y[row * w..(row + 1) * w];
            if row < bars_h {
                dst.copy_from_slice(&self.bars[0][off..off + w]);
            } else {
                dst.copy_from_slice(&self.ramp);
            }
        }
        let cw = w / 2;
        for row in 0..h / 2 {
            let (u, v) = (
                &mut self.u[row * cw..(row + 1) * cw],
                &mut self.v[row * cw..(row + 1) * cw],
            );
            if row * 2 < bars_h {
                u.copy_from_slice(&self.bars[1][off / 2..off / 2 + cw]);
                v.copy_from_slice(&self.bars[2][off / 2..off / 2 + cw]);
            } else {
                u.fill(128);
                v.fill(128);
            }
        }

        // A red box bouncing left and right across the ramp, one width every 2 seconds.
        let side = ((h - bars_h) / 2).min(h / 8).max(2) & !1;
        let travel = w.saturating_sub(side).max(1);
        let pos =
            ((n % (2 * travel) as u64) as usize * (w / (2 * fps as usize)).max(1)) % (2 * travel);
        let bx = if pos < travel { pos } else { 2 * travel - pos };
        let by = bars_h + (h - bars_h - side) / 2;
        self.fill_rect(bx, by, side, side, RED);

        // Black panel with the clock (scale s) above the frame number (scale s/2).
        let s = (h / 8 / CELL_H).min(w / (CLOCK_LEN * CELL_W + 2)).max(1);
        let s2 = (s / 2).max(1);
        let pad = s * 2;
        let panel_w = CLOCK_LEN * CELL_W * s + 2 * pad;
        let panel_h = CELL_H * s + pad + CELL_H * s2 + 2 * pad;
        let px = w.saturating_sub(panel_w) / 2;
        let py = (h * 2 / 5).saturating_sub(panel_h / 2);
        self.fill_rect(px, py, panel_w, panel_h, BLACK);
        self.text(px + pad, py + pad, s, &clock_text(capture));
        let frame_x = px + (panel_w.saturating_sub(FRAME_NO_LEN * CELL_W * s2)) / 2;
        self.text(frame_x, py + pad + CELL_H * s + pad, s2, &frame_text(n));
    }

    /// Fills a rectangle (clipped to the picture) in all three planes.
    fn fill_rect(&mut self, x: usize, y: usize, w: usize, h: usize, (cy, cu, cv): (u8, u8, u8)) {
        let (x1, y1) = ((x + w).min(self.width), (y + h).min(self.height));
        if x >= x1 || y >= y1 {
            return;
        }
        for row in y..y1 {
            self.y[row * self.width + x..row * self.width + x1].fill(cy);
        }
        let cw = self.width / 2;
        let (cx0, cx1) = (x / 2, x1.div_ceil(2).min(cw));
        for row in y / 2..y1.div_ceil(2).min(self.height / 2) {
            self.u[row * cw + cx0..row * cw + cx1].fill(cu);
            self.v[row * cw + cx0..row * cw + cx1].fill(cv);
        }
    }

    /// Draws glyph indices (see [`FONT`]) in white luma, each font pixel an `s`x`s` square.
    fn text(&mut self, x: usize, y: usize, s: usize, glyphs: &[u8]) {
        for (i, &g) in glyphs.iter().enumerate() {
            for (r, bits) in FONT[g as usize].iter().enumerate() {
                let y0 = y + r * s;
                for c in 0..5 {
                    if bits & (0x10 >> c) == 0 {
                        continue;
                    }
                    let x0 = x + (i * CELL_W + c) * s;
                    let x1 = (x0 + s).min(self.width);
                    for row in y0..(y0 + s).min(self.height) {
                        if x0 < x1 {
                            self.y[row * self.width + x0..row * self.width + x1].fill(WHITE);
                        }
                    }
                }
            }
        }
    }
}

/// `HH:MM:SS.mmm` (UTC) as glyph indices.
fn clock_text(t: SystemTime) -> [u8; CLOCK_LEN] {
    let ms = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
        % 86_400_000;
    let (h, m, s, milli) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
    let d = |v: u128, p: u32| (v / 10u128.pow(p) % 10) as u8;
    let (colon, dot) = (10, 11);
    [
        d(h, 1),
        d(h, 0),
        colon,
        d(m, 1),
        d(m, 0),
        colon,
        d(s, 1),
        d(s, 0),
        dot,
        d(milli, 2),
        d(milli, 1),
        d(milli, 0),
    ]
}

/// The frame number modulo 10^8, zero-padded, as glyph indices.
fn frame_text(n: u64) -> [u8; FRAME_NO_LEN] {
    let mut out = [0; FRAME_NO_LEN];
    for (i, g) in out.iter_mut().enumerate() {
        *g = (n / 10u64.pow((FRAME_NO_LEN - 1 - i) as u32) % 10) as u8;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn clock_text_is_utc_time_of_day() {
        // 1970-01-02 13:04:05.678 UTC
        let t =
            UNIX_EPOCH + Duration::from_millis(86_400_000 + 13 * 3_600_000 + 4 * 60_000 + 5_678);
        assert_eq!(clock_text(t), [1, 3, 10, 0, 4, 10, 0, 5, 11, 6, 7, 8]);
        assert_eq!(frame_text(1234), [0, 0, 0, 0, 1, 2, 3, 4]);
    }

    #[test]
    fn paints_any_valid_size_without_panicking() {
        for (w, h) in [
            (16, 16),
            (176, 100),
            (1280, 720),
            (3840, 2160),
            (2160, 3840),
        ] {
            let mut p = Picture::new(w, h);
            for n in [0, 1, 59, 1_000_000] {
                p.paint(n, 30, SystemTime::now());
            }
            assert_eq!(p.y.len(), w * h);
        }
    }
}
