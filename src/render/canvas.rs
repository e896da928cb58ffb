//! Drawing primitives on an [`RgbImage`]: rectangles, blending, lines, arrows and blits.
//!
//! Everything clips to the image, so a panel placed partly off the canvas draws what fits
//! instead of panicking. Coordinates are `i32` so that callers can compute positions left of or
//! above the canvas without wrapping.

use image::RgbImage;

/// An 8-bit sRGB colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Rgb(pub [u8; 3]);

impl Rgb {
    /// Black.
    pub const BLACK: Rgb = Rgb([0, 0, 0]);
    /// White.
    pub const WHITE: Rgb = Rgb([255, 255, 255]);

    /// `self` mixed with `other`: `t = 0` is `self`, `t = 1` is `other`.
    pub fn mix(self, other: Rgb, t: f32) -> Rgb {
        let t = t.clamp(0.0, 1.0);
        let mut out = [0u8; 3];
        for (c, o) in out.iter_mut().enumerate() {
            let a = f32::from(self.0[c]);
            let b = f32::from(other.0[c]);
            *o = (a + (b - a) * t).round() as u8;
        }
        Rgb(out)
    }

    /// `#rrggbb` text of the colour.
    pub fn hex(self) -> String {
        format!("#{:02x}{:02x}{:02x}", self.0[0], self.0[1], self.0[2])
    }
}

/// An axis-aligned rectangle in canvas pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rect {
    /// Left edge.
    pub x: i32,
    /// Top edge.
    pub y: i32,
    /// Width (never negative for rectangles this module makes).
    pub w: i32,
    /// Height.
    pub h: i32,
}

impl Rect {
    /// A rectangle from its left, top, width and height.
    pub const fn new(x: i32, y: i32, w: i32, h: i32) -> Rect {
        Rect { x, y, w, h }
    }

    /// One past the right edge.
    pub fn right(&self) -> i32 {
        self.x + self.w
    }

    /// One past the bottom edge.
    pub fn bottom(&self) -> i32 {
        self.y + self.h
    }

    /// Shrunk by `d` on every side (never below zero size).
    pub fn inset(&self, d: i32) -> Rect {
        Rect::new(
            self.x + d,
            self.y + d,
            (self.w - 2 * d).max(0),
            (self.h - 2 * d).max(0),
        )
    }

    /// Whether the point lies inside.
    pub fn contains(&self, x: i32, y: i32) -> bool {
        x >= self.x && y >= self.y && x < self.right() && y < self.bottom()
    }

    /// The overlap with `other` (empty if none).
    pub fn intersect(&self, other: &Rect) -> Rect {
        let x0 = self.x.max(other.x);
        let y0 = self.y.max(other.y);
        let x1 = self.right().min(other.right());
        let y1 = self.bottom().min(other.bottom());
        Rect::new(x0, y0, (x1 - x0).max(0), (y1 - y0).max(0))
    }

    /// Whether it has no area.
    pub fn is_empty(&self) -> bool {
        self.w <= 0 || self.h <= 0
    }
}

/// The whole image as a rectangle.
pub fn bounds(img: &RgbImage) -> Rect {
    Rect::new(0, 0, img.width() as i32, img.height() as i32)
}

/// Fills `r` with `c`.
pub fn fill_rect(img: &mut RgbImage, r: Rect, c: Rgb) {
    let r = r.intersect(&bounds(img));
    if r.is_empty() {
        return;
    }
    let width = img.width() as usize;
    let buf: &mut [u8] = img;
    for y in r.y..r.bottom() {
        let row = &mut buf[(y as usize * width + r.x as usize) * 3..][..r.w as usize * 3];
        for px in row.chunks_exact_mut(3) {
            px.copy_from_slice(&c.0);
        }
    }
}

/// Blends `c` over `r` with opacity `alpha` in [0, 1].
pub fn blend_rect(img: &mut RgbImage, r: Rect, c: Rgb, alpha: f32) {
    let r = r.intersect(&bounds(img));
    if r.is_empty() || alpha <= 0.0 {
        return;
    }
    // 8-bit fixed point: exact enough for overlays and far cheaper than floats per channel.
    let a = (alpha.clamp(0.0, 1.0) * 256.0).round() as u32;
    let na = 256 - a;
    let pre = c.0.map(|v| u32::from(v) * a);
    let width = img.width() as usize;
    let buf: &mut [u8] = img;
    for y in r.y..r.bottom() {
        let row = &mut buf[(y as usize * width + r.x as usize) * 3..][..r.w as usize * 3];
        for px in row.chunks_exact_mut(3) {
            for ch in 0..3 {
                px[ch] = ((u32::from(px[ch]) * na + pre[ch]) >> 8) as u8;
            }
        }
    }
}

/// Blends `c` onto one pixel with opacity `alpha` (0–255); ignores pixels off the image.
#[inline]
pub fn blend_pixel(img: &mut RgbImage, x: i32, y: i32, c: Rgb, alpha: u32) {
    if x < 0 || y < 0 || x >= img.width() as i32 || y >= img.height() as i32 || alpha == 0 {
        return;
    }
    let a = alpha.min(255) + (alpha.min(255) >> 7);
    let na = 256 - a;
    let width = img.width() as usize;
    let buf: &mut [u8] = img;
    let i = (y as usize * width + x as usize) * 3;
    for ch in 0..3 {
        buf[i + ch] = ((u32::from(buf[i + ch]) * na + u32::from(c.0[ch]) * a) >> 8) as u8;
    }
}

/// Outlines `r` with lines `t` pixels thick drawn inside it, blended with `alpha`.
pub fn stroke_rect(img: &mut RgbImage, r: Rect, t: i32, c: Rgb, alpha: f32) {
    if r.is_empty() || t <= 0 {
        return;
    }
    let t = t.min(r.w).min(r.h);
    blend_rect(img, Rect::new(r.x, r.y, r.w, t), c, alpha);
    blend_rect(img, Rect::new(r.x, r.bottom() - t, r.w, t), c, alpha);
    blend_rect(img, Rect::new(r.x, r.y + t, t, r.h - 2 * t), c, alpha);
    blend_rect(
        img,
        Rect::new(r.right() - t, r.y + t, t, r.h - 2 * t),
        c,
        alpha,
    );
}

/// An antialiased line segment from `(x0, y0)` to `(x1, y1)` of width `w`, drawn as the set of
/// pixels within `w/2` of the segment with a one-pixel soft edge.
pub fn line(
    img: &mut RgbImage,
    (x0, y0): (f32, f32),
    (x1, y1): (f32, f32),
    w: f32,
    c: Rgb,
    alpha: f32,
) {
    let half = w / 2.0;
    let minx = (x0.min(x1) - half - 1.0).floor() as i32;
    let maxx = (x0.max(x1) + half + 1.0).ceil() as i32;
    let miny = (y0.min(y1) - half - 1.0).floor() as i32;
    let maxy = (y0.max(y1) + half + 1.0).ceil() as i32;
    let r = Rect::new(minx, miny, maxx - minx, maxy - miny).intersect(&bounds(img));
    let (dx, dy) = (x1 - x0, y1 - y0);
    let len2 = (dx * dx + dy * dy).max(1e-6);
    for y in r.y..r.bottom() {
        for x in r.x..r.right() {
            let (px, py) = (x as f32 + 0.5, y as f32 + 0.5);
            let t = (((px - x0) * dx + (py - y0) * dy) / len2).clamp(0.0, 1.0);
            let (cx, cy) = (x0 + t * dx - px, y0 + t * dy - py);
            let d = (cx * cx + cy * cy).sqrt();
            let cover = (half + 0.5 - d).clamp(0.0, 1.0);
            if cover > 0.0 {
                blend_pixel(img, x, y, c, (cover * alpha * 255.0).round() as u32);
            }
        }
    }
}

/// A filled, antialiased triangle.
pub fn triangle(img: &mut RgbImage, p: [(f32, f32); 3], c: Rgb, alpha: f32) {
    let minx = p.iter().map(|q| q.0).fold(f32::INFINITY, f32::min).floor() as i32 - 1;
    let maxx = p
        .iter()
        .map(|q| q.0)
        .fold(f32::NEG_INFINITY, f32::max)
        .ceil() as i32
        + 1;
    let miny = p.iter().map(|q| q.1).fold(f32::INFINITY, f32::min).floor() as i32 - 1;
    let maxy = p
        .iter()
        .map(|q| q.1)
        .fold(f32::NEG_INFINITY, f32::max)
        .ceil() as i32
        + 1;
    let r = Rect::new(minx, miny, maxx - minx, maxy - miny).intersect(&bounds(img));
    // Signed distance to each edge, oriented so the inside is positive whatever the winding.
    let area = (p[1].0 - p[0].0) * (p[2].1 - p[0].1) - (p[2].0 - p[0].0) * (p[1].1 - p[0].1);
    let sign = if area < 0.0 { -1.0 } else { 1.0 };
    let edges: Vec<(f32, f32, f32)> = (0..3)
        .map(|i| {
            let (a, b) = (p[i], p[(i + 1) % 3]);
            let (ex, ey) = (b.0 - a.0, b.1 - a.1);
            let len = (ex * ex + ey * ey).sqrt().max(1e-6);
            // Inward normal · (q − a) gives the distance inside this edge.
            (
                -ey * sign / len,
                ex * sign / len,
                (ey * a.0 - ex * a.1) * sign / len,
            )
        })
        .collect();
    for y in r.y..r.bottom() {
        for x in r.x..r.right() {
            let (px, py) = (x as f32 + 0.5, y as f32 + 0.5);
            let d = edges
                .iter()
                .map(|(nx, ny, k)| nx * px + ny * py + k)
                .fold(f32::INFINITY, f32::min);
            let cover = (d + 0.5).clamp(0.0, 1.0);
            if cover > 0.0 {
                blend_pixel(img, x, y, c, (cover * alpha * 255.0).round() as u32);
            }
        }
    }
}

/// A right-pointing arrow from `(x0, y)` to `(x1, y)` with a filled head.
pub fn arrow_right(img: &mut RgbImage, x0: f32, x1: f32, y: f32, w: f32, c: Rgb) {
    let head = (w * 4.0).max(10.0);
    line(img, (x0, y), (x1 - head * 0.8, y), w, c, 1.0);
    triangle(
        img,
        [
            (x1 - head, y - head * 0.55),
            (x1, y),
            (x1 - head, y + head * 0.55),
        ],
        c,
        1.0,
    );
}

/// Copies `src` with its top-left corner at `(x, y)`, clipped to the image.
pub fn blit(img: &mut RgbImage, src: &RgbImage, x: i32, y: i32) {
    blit_part(
        img,
        src,
        Rect::new(0, 0, src.width() as i32, src.height() as i32),
        x,
        y,
    );
}

/// Copies the part `part` of `src` (in `src`'s pixels) so that `src`'s origin lands at
/// `(x, y)`: the part's pixels keep their place relative to the rest of `src`.
pub fn blit_part(img: &mut RgbImage, src: &RgbImage, part: Rect, x: i32, y: i32) {
    let part = part.intersect(&bounds(src));
    let dst = Rect::new(x + part.x, y + part.y, part.w, part.h).intersect(&bounds(img));
    if dst.is_empty() {
        return;
    }
    let (sw, dw) = (src.width() as usize, img.width() as usize);
    let sbuf: &[u8] = src;
    let dbuf: &mut [u8] = img;
    let n = dst.w as usize * 3;
    for dy in dst.y..dst.bottom() {
        let sy = (dy - y) as usize;
        let sx = (dst.x - x) as usize;
        let s = &sbuf[(sy * sw + sx) * 3..][..n];
        dbuf[(dy as usize * dw + dst.x as usize) * 3..][..n].copy_from_slice(s);
    }
}

/// Draws `src` scaled (nearest neighbour) into `dst`.
pub fn blit_scaled(img: &mut RgbImage, src: &RgbImage, dst: Rect) {
    if dst.is_empty() || src.width() == 0 || src.height() == 0 {
        return;
    }
    let clip = dst.intersect(&bounds(img));
    let (sw, sh) = (src.width() as i64, src.height() as i64);
    let xs: Vec<usize> = (clip.x..clip.right())
        .map(|x| (((i64::from(x - dst.x) * sw) / i64::from(dst.w)).min(sw - 1)) as usize)
        .collect();
    let iw = img.width() as usize;
    let sbuf: &[u8] = src;
    let dbuf: &mut [u8] = img;
    for y in clip.y..clip.bottom() {
        let sy = ((i64::from(y - dst.y) * sh) / i64::from(dst.h)).min(sh - 1) as usize;
        let srow = &sbuf[sy * sw as usize * 3..][..sw as usize * 3];
        let drow = &mut dbuf[(y as usize * iw + clip.x as usize) * 3..][..clip.w as usize * 3];
        for (d, &sx) in drow.chunks_exact_mut(3).zip(&xs) {
            d.copy_from_slice(&srow[sx * 3..sx * 3 + 3]);
        }
    }
}

/// `out = a·(1 − t) + b·t` for two images of one size, placed at `(x, y)`.
pub fn blit_mix(img: &mut RgbImage, a: &RgbImage, b: &RgbImage, t: f32, x: i32, y: i32) {
    if a.dimensions() != b.dimensions() {
        blit(img, if t < 0.5 { a } else { b }, x, y);
        return;
    }
    let tb = (t.clamp(0.0, 1.0) * 256.0).round() as u32;
    if tb == 0 {
        return blit(img, a, x, y);
    }
    if tb == 256 {
        return blit(img, b, x, y);
    }
    let ta = 256 - tb;
    let src = Rect::new(x, y, a.width() as i32, a.height() as i32);
    let dst = src.intersect(&bounds(img));
    if dst.is_empty() {
        return;
    }
    let (sw, dw) = (a.width() as usize, img.width() as usize);
    let (abuf, bbuf): (&[u8], &[u8]) = (a, b);
    let dbuf: &mut [u8] = img;
    let n = dst.w as usize * 3;
    for dy in dst.y..dst.bottom() {
        let s = ((dy - y) as usize * sw + (dst.x - x) as usize) * 3;
        let d = &mut dbuf[(dy as usize * dw + dst.x as usize) * 3..][..n];
        for ((o, &p), &q) in d.iter_mut().zip(&abuf[s..s + n]).zip(&bbuf[s..s + n]) {
            *o = ((u32::from(p) * ta + u32::from(q) * tb) >> 8) as u8;
        }
    }
}

/// Mixes the whole image towards `c` by `t` (0 keeps it, 1 makes it `c`).
pub fn fade_to(img: &mut RgbImage, c: Rgb, t: f32) {
    let r = bounds(img);
    blend_rect(img, r, c, t);
}

/// A solid image of `w`×`h` filled with `c`.
pub fn solid(w: u32, h: u32, c: Rgb) -> RgbImage {
    RgbImage::from_pixel(w, h, image::Rgb(c.0))
}

/// A darker, less saturated copy of `src`: `grey·(1 − saturation) + colour·saturation`, then
/// scaled by `brightness`, so an overlay on it stands out.
pub fn muted(src: &RgbImage, saturation: f32, brightness: f32) -> RgbImage {
    let mut out = src.clone();
    for px in out.pixels_mut() {
        let [r, g, b] = px.0.map(f32::from);
        let grey = 0.299 * r + 0.587 * g + 0.114 * b;
        for (ch, v) in px.0.iter_mut().zip([r, g, b]) {
            *ch = ((grey + (v - grey) * saturation) * brightness)
                .round()
                .clamp(0.0, 255.0) as u8;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drawing_clips_at_the_border() {
        let mut img = solid(10, 10, Rgb::BLACK);
        fill_rect(&mut img, Rect::new(-5, -5, 8, 8), Rgb::WHITE);
        stroke_rect(&mut img, Rect::new(8, 8, 10, 10), 2, Rgb::WHITE, 1.0);
        line(&mut img, (-20.0, 5.0), (30.0, 5.0), 3.0, Rgb::WHITE, 1.0);
        blit_scaled(&mut img, &solid(3, 3, Rgb::WHITE), Rect::new(7, -3, 9, 9));
        assert_eq!(img.get_pixel(0, 0).0, [255, 255, 255]);
        assert_eq!(img.get_pixel(4, 9).0, [0, 0, 0]);
    }

    #[test]
    fn mix_is_exact_at_the_ends() {
        let a = solid(4, 2, Rgb([10, 20, 30]));
        let b = solid(4, 2, Rgb([200, 100, 0]));
        let mut img = solid(4, 2, Rgb::BLACK);
        blit_mix(&mut img, &a, &b, 0.0, 0, 0);
        assert_eq!(img.get_pixel(1, 1).0, [10, 20, 30]);
        blit_mix(&mut img, &a, &b, 1.0, 0, 0);
        assert_eq!(img.get_pixel(1, 1).0, [200, 100, 0]);
    }
}
