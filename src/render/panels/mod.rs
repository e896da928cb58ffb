//! The panels a frame is composed of. Each panel is built once per renderer (precomputing its
//! rasters, lazily per block where that is costly) and then drawn per frame from a
//! [`Moment`](super::timeline::Moment) without mutating anything.

pub mod classes;
pub mod figure;
pub mod image;
pub mod matrix;
pub mod overlay;
pub mod track;

use ::image::RgbImage;

use super::canvas::{blend_rect, fill_rect, stroke_rect, Rect, Rgb};
use super::colormap::{Lut, Norm};
use super::format::{Format, Vars};
use super::template::Template;
use super::text::{Align, Style, Typesetter};
use crate::rollout::Map;

/// What every panel needs to draw text and pick colours.
pub struct Ctx<'a> {
    /// Glyphs.
    pub text: &'a Typesetter,
    /// The template.
    pub template: &'a Template,
}

impl Ctx<'_> {
    /// Panel-title style.
    pub fn label(&self) -> Style {
        Style {
            size: self.template.fonts.label,
            bold: true,
            color: self.template.colors.text,
        }
    }

    /// Tick and note style.
    pub fn tick(&self) -> Style {
        Style {
            size: self.template.fonts.tick,
            bold: false,
            color: self.template.colors.muted,
        }
    }

    /// Height of a panel's title row.
    pub fn title_height(&self) -> i32 {
        (self.template.fonts.label * 1.7).ceil() as i32
    }

    /// Height kept under a panel for its note: none when the template leaves the note empty.
    pub fn note_height(&self, note: &Format) -> i32 {
        if note.is_empty() {
            0
        } else {
            (self.template.fonts.tick * 2.0).ceil() as i32
        }
    }

    /// Draws a panel's note (if it is not empty) `gap` pixels below `above`, left-aligned.
    pub fn draw_note(&self, img: &mut RgbImage, above: Rect, gap: f32, note: &Format, vars: &Vars) {
        let (x, y) = (above.x as f32, above.bottom() as f32 + gap);
        self.draw_line(img, note, vars, (x, y), &self.tick());
    }

    /// Draws a panel title (if it is not empty) on the first row of `place`.
    pub fn draw_title(&self, img: &mut RgbImage, place: Rect, title: &Format, vars: &Vars) {
        let (x, y) = (place.x as f32, place.y as f32);
        self.draw_line(img, title, vars, (x, y), &self.label());
    }

    /// One left-aligned line of template text with its top at `(x, y)`; nothing if it is empty.
    fn draw_line(
        &self,
        img: &mut RgbImage,
        text: &Format,
        vars: &Vars,
        (x, y): (f32, f32),
        style: &Style,
    ) {
        if !text.is_empty() {
            self.text
                .draw_top(img, &text.render(vars), x, y, Align::Left, style);
        }
    }
}

/// The largest rectangle of aspect `w:h` inside `area`, centred horizontally, at the top.
pub fn fit(area: Rect, w: f64, h: f64) -> Rect {
    if area.is_empty() || w <= 0.0 || h <= 0.0 {
        return Rect::new(area.x, area.y, 0, 0);
    }
    let scale = (f64::from(area.w) / w).min(f64::from(area.h) / h);
    let (fw, fh) = ((w * scale).floor() as i32, (h * scale).floor() as i32);
    Rect::new(area.x + (area.w - fw) / 2, area.y, fw, fh)
}

/// Room a vertical colour bar needs right of its content: gap, bar, gap, tick labels.
pub fn vbar_room(ctx: &Ctx) -> i32 {
    let tick = ctx.template.fonts.tick;
    (12.0 + 14.0 + 8.0 + tick * 3.4).ceil() as i32
}

/// A vertical colour bar in `r` (bar on the left of `r`, tick labels right of it), bottom =
/// low; `label` above it.
pub fn draw_vbar(img: &mut RgbImage, ctx: &Ctx, r: Rect, lut: &Lut, norm: &Norm, label: &str) {
    let bar = Rect::new(r.x, r.y, 14, r.h);
    if bar.h < 2 {
        return;
    }
    for y in 0..bar.h {
        let t = 1.0 - y as f32 / (bar.h - 1) as f32;
        fill_rect(img, Rect::new(bar.x, bar.y + y, bar.w, 1), lut.at(t));
    }
    stroke_rect(img, bar, 1, ctx.template.colors.muted, 0.6);
    let style = ctx.tick();
    let ascent = ctx.text.ascent(&style);
    let ticks = norm.ticks(7);
    let mut last_y = f32::NEG_INFINITY;
    // From the top down, so that a crowded label gives way to the one above it.
    for (t, label) in ticks.iter().rev() {
        let y = bar.y as f32 + (1.0 - t) * (bar.h - 1) as f32;
        if y - last_y < style.size * 1.05 {
            continue;
        }
        last_y = y;
        blend_rect(
            img,
            Rect::new(bar.right(), y.round() as i32, 5, 1),
            ctx.template.colors.muted,
            1.0,
        );
        ctx.text.draw(
            img,
            label,
            (bar.right() + 8) as f32,
            y + ascent * 0.36,
            Align::Left,
            &style,
        );
    }
    if !label.is_empty() {
        ctx.text.draw(
            img,
            label,
            bar.x as f32,
            bar.y as f32 - style.size * 0.6,
            Align::Left,
            &style,
        );
    }
}

/// A horizontal colour bar `r` with tick labels under it (low on the left).
pub fn draw_hbar(img: &mut RgbImage, ctx: &Ctx, r: Rect, lut: &Lut, norm: &Norm, max_ticks: usize) {
    if r.w < 2 {
        return;
    }
    for x in 0..r.w {
        let t = x as f32 / (r.w - 1) as f32;
        fill_rect(img, Rect::new(r.x + x, r.y, 1, r.h), lut.at(t));
    }
    stroke_rect(img, r, 1, ctx.template.colors.muted, 0.6);
    let style = ctx.tick();
    let ascent = ctx.text.ascent(&style);
    let mut last_right = f32::NEG_INFINITY;
    for (t, label) in norm.ticks(max_ticks) {
        let x = r.x as f32 + t * (r.w - 1) as f32;
        let w = ctx.text.width(&label, &style);
        let left = (x - w / 2.0).clamp(r.x as f32 - 4.0, r.right() as f32 - w + 4.0);
        if left < last_right + 6.0 {
            continue;
        }
        last_right = left + w;
        blend_rect(
            img,
            Rect::new(x.round() as i32, r.bottom(), 1, 4),
            ctx.template.colors.muted,
            1.0,
        );
        ctx.text.draw(
            img,
            &label,
            left,
            r.bottom() as f32 + 5.0 + ascent,
            Align::Left,
            &style,
        );
    }
}

/// Values of a map in units of the uniform share (1 = uniform), so numbers read the same at
/// every grid size.
pub fn relative(map: &Map) -> Vec<f32> {
    let n = map.values.len() as f32;
    map.values.iter().map(|v| v * n).collect()
}

/// How a map is sampled onto pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sampling {
    /// Bilinear between token centres (smooth).
    Bilinear,
    /// Each token a flat square (shows the grid's resolution).
    Nearest,
}

/// The map `values` (a `gh`×`gw` token grid covering `cover_h`×`cover_w` of the underlay's
/// pixels, from its top-left corner) colour-mapped over `underlay` with opacity up to `alpha`
/// (`alpha` at the top of the scale, 30 % of it at the bottom).
#[allow(clippy::too_many_arguments)]
pub fn overlay_raster(
    underlay: &RgbImage,
    values: &[f32],
    (gh, gw): (usize, usize),
    (cover_h, cover_w): (f64, f64),
    norm: &Norm,
    lut: &Lut,
    alpha: f32,
    sampling: Sampling,
) -> RgbImage {
    let (w, h) = underlay.dimensions();
    let mut out = underlay.clone();
    if gh == 0 || gw == 0 || values.len() != gh * gw {
        return out;
    }
    // Token coordinate of each pixel centre, and the interpolation weights along one axis.
    let axis = |n: u32, cover: f64, g: usize| -> Vec<(usize, usize, f32)> {
        (0..n)
            .map(|p| {
                let u = (f64::from(p) + 0.5) / cover * g as f64;
                match sampling {
                    Sampling::Nearest => {
                        let i = (u.floor() as usize).min(g - 1);
                        (i, i, 0.0)
                    }
                    Sampling::Bilinear => {
                        let c = (u - 0.5).clamp(0.0, (g - 1) as f64);
                        let i = (c.floor() as usize).min(g - 1);
                        let j = (i + 1).min(g - 1);
                        (i, j, (c - i as f64) as f32)
                    }
                }
            })
            .collect()
    };
    let xs = axis(w, cover_w, gw);
    let ys = axis(h, cover_h, gh);
    let a = alpha.clamp(0.0, 1.0);
    for (py, &(y0, y1, fy)) in ys.iter().enumerate() {
        for (px, &(x0, x1, fx)) in xs.iter().enumerate() {
            let v00 = values[y0 * gw + x0];
            let v01 = values[y0 * gw + x1];
            let v10 = values[y1 * gw + x0];
            let v11 = values[y1 * gw + x1];
            let v = (v00 * (1.0 - fx) + v01 * fx) * (1.0 - fy) + (v10 * (1.0 - fx) + v11 * fx) * fy;
            let t = norm.t(v);
            let c: Rgb = lut.at(t);
            // Low values let more of the image through, so the picture stays readable where
            // little attention goes and the hot spots sit on top of it.
            let a = a * (0.3 + 0.7 * t);
            let p = out.get_pixel_mut(px as u32, py as u32);
            for ch in 0..3 {
                let base = f32::from(p.0[ch]);
                p.0[ch] = (base + (f32::from(c.0[ch]) - base) * a).round() as u8;
            }
        }
    }
    out
}
