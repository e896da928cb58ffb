//! The panels a frame is composed of, behind one seam: the [`Panel`] trait.
//!
//! Each panel file exposes a `prepare` function that builds the panel once per renderer from
//! a [`Prepare`] (the template, the story and the shared [`Scales`]) — precomputing its
//! rasters, lazily per block where that is costly — or returns None when the template has no
//! section for it. Per frame the renderer hands every panel the same [`Frame`] draw context
//! and the panel maps the frame's [`Moment`] to what it shows, without mutating anything.
//!
//! A new panel is one new file (its `prepare` and its `impl Panel`), one entry in
//! [`PANELS`] and one template section.

pub mod classes;
pub mod figure;
pub mod image;
pub mod matrix;
pub mod overlay;
pub mod scales;
pub mod schematic;
pub mod track;

use std::any::Any;

use ::image::RgbImage;

use super::canvas::{blend_rect, fill_rect, stroke_rect, Rect, Rgb};
use super::colormap::{Lut, Norm};
use super::format::{Format, Vars};
use super::story::Story;
use super::template::{Order, Template};
use super::text::{Align, Style, Typesetter};
use super::timeline::{Beat, Moment};
use super::windows::window_of;
use crate::rollout::Map;
pub use scales::Scales;

/// A part of the frame, prepared once and drawn per moment.
pub trait Panel: Any + std::fmt::Debug + Send + Sync {
    /// Draws the panel for the frame `f` describes.
    fn draw(&self, f: &mut Frame);

    /// Where the panel sits in the frame's layers.
    fn layer(&self) -> Layer {
        Layer::Stage
    }
}

/// When a panel is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer {
    /// With the block beats; the finale's figure takes its place.
    Stage,
    /// On every frame of a video, over the stage or the figure (the progress track).
    Chrome,
    /// Once, into the still figure that a figure template is made of or that the finale
    /// fades in (the stage and classes figures).
    Figure,
}

/// Builds a panel, or None where the template does not ask for it.
pub type Maker = fn(&Prepare) -> Option<Box<dyn Panel>>;

/// Every panel, in drawing order.
pub const PANELS: &[Maker] = &[
    figure::prepare,
    classes::prepare,
    image::prepare,
    schematic::prepare,
    matrix::prepare,
    overlay::prepare_rollout,
    overlay::prepare_naive,
    track::prepare,
];

/// What a panel is prepared from.
pub struct Prepare<'a> {
    /// Glyphs and template.
    pub ctx: &'a Ctx<'a>,
    /// The data.
    pub story: &'a Story,
    /// Colour scales shared between panels.
    pub scales: &'a Scales,
}

impl Prepare<'_> {
    /// The template.
    pub fn template(&self) -> &Template {
        self.ctx.template
    }

    /// A section of a video template's stage or chrome: None in a figure template, which
    /// shows its figure alone.
    pub fn video<'s, T>(&self, section: &'s Option<T>) -> Option<&'s T> {
        section
            .as_ref()
            .filter(|_| !self.template().mode.is_still())
    }
}

/// The panels the template asks for, prepared, in drawing order.
pub fn prepare_all(p: &Prepare) -> Vec<Box<dyn Panel>> {
    PANELS.iter().filter_map(|make| make(p)).collect()
}

/// Which block a moment shows and how far it has got: worked out once per frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Focus {
    /// The block whose state the beat shows.
    pub block: usize,
    /// Share of its queries filled, in [0, 1].
    pub fill: f64,
    /// Window → token order progress of the beat, in [0, 1].
    pub reorder: f64,
    /// How far towards token order the matrix is (the template's order applied to
    /// `reorder`): 0 = window order, 1 = token order.
    pub order: f64,
    /// The query (token) being filled, if any.
    pub query: Option<u32>,
    /// The window of that query.
    pub window: Option<usize>,
}

impl Focus {
    /// The focus of moment `m`.
    pub fn new(story: &Story, template: &Template, m: &Moment) -> Focus {
        let last = story.geometries.len() - 1;
        let (block, fill, reorder) = match m.beat {
            Beat::Intro => (0, 0.0, 0.0),
            Beat::Block(k) => (k, m.fill, m.reorder),
            Beat::Merge { from, .. } => (from, 1.0, 1.0),
            Beat::Finale => (last, 1.0, 1.0),
        };
        let query = current_query(story, block, fill);
        let g = &story.geometries[block];
        let window = query.map(|q| window_of(g, q as usize));
        let order = template.matrix.as_ref().map_or(1.0, |s| match s.order {
            Order::Token => 1.0,
            Order::Window => 0.0,
            Order::Both => reorder.clamp(0.0, 1.0),
        });
        Focus {
            block,
            fill,
            reorder,
            order,
            query,
            window,
        }
    }
}

/// The query (token) being filled in block `k` at `fill`, in window order.
fn current_query(story: &Story, k: usize, fill: f64) -> Option<u32> {
    if !(fill > 0.0 && fill < 1.0) {
        return None;
    }
    let a = &story.attention[k];
    let n = a.tokens();
    let q = ((fill * n as f64).round() as usize).clamp(1, n) - 1;
    a.index_image()
        .iter()
        .filter(|&&t| t != crate::geometry::Geometry::PADDING)
        .nth(q)
        .copied()
}

/// The draw context of one frame: the image and everything panels draw it from.
pub struct Frame<'a> {
    /// The image being composed.
    pub img: &'a mut RgbImage,
    /// Glyphs and template.
    pub ctx: &'a Ctx<'a>,
    /// The data.
    pub story: &'a Story,
    /// Where the timeline is.
    pub moment: &'a Moment,
    /// The block the moment shows.
    pub focus: Focus,
    /// The placeholders for this frame.
    pub vars: &'a Vars,
    /// The placeholders that never change within the video (for per-block labels).
    pub base: &'a Vars,
}

impl Frame<'_> {
    /// The template.
    pub fn template(&self) -> &Template {
        self.ctx.template
    }

    /// Draws a panel title (if it is not empty) on the first row of `place`.
    pub fn title(&mut self, place: Rect, title: &Format) {
        self.ctx.draw_title(self.img, place, title, self.vars);
    }

    /// Draws a panel's note (if it is not empty) `gap` pixels below `above`.
    pub fn note(&mut self, above: Rect, gap: f32, note: &Format) {
        self.ctx.draw_note(self.img, above, gap, note, self.vars);
    }
}

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

/// How a map's colours go over the image: its scale, colour map and opacity.
#[derive(Debug, Clone, Copy)]
pub struct Wash<'a> {
    /// Value → [0, 1].
    pub norm: &'a Norm,
    /// Colours.
    pub lut: &'a Lut,
    /// Opacity at the top of the scale.
    pub alpha: f32,
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
pub fn overlay_raster(
    underlay: &RgbImage,
    values: &[f32],
    (gh, gw): (usize, usize),
    (cover_h, cover_w): (f64, f64),
    wash: &Wash,
    sampling: Sampling,
) -> RgbImage {
    let Wash { norm, lut, alpha } = *wash;
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
