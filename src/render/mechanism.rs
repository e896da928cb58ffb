//! Mechanism mode: the schematic of window attention on a small synthetic token grid, with no
//! model. A regular block, a shifted block and the merged stage, each with attention computed
//! the way the model would — a softmax inside each window, with keys in another shift region
//! masked to exactly zero — but from a smooth distance-based score instead of learned weights.

use image::RgbImage;

use super::canvas::{blend_rect, fill_rect, stroke_rect, Rect, Rgb};
use super::colormap::{Lut, Norm};
use super::format::Vars;
use super::panels::matrix::MatrixPanel;
use super::panels::{fit, Ctx};
use super::story::Story;
use super::template::{ImageSpec, MechanismSpec};
use super::text::Align;
use super::windows::{window_pieces, window_place};
use crate::error::{Error, Result};
use crate::geometry::Geometry;
use crate::rollout::RolloutOptions;
use crate::trace::{BlockTrace, Trace};

/// Input pixels per token of the synthetic image.
const PATCH: usize = 16;

/// Where the synthetic "object" sits, as a share of the grid: attention leans towards it, so
/// the rollout of the schematic has something to find.
const OBJECT: (f32, f32) = (0.62, 0.36);

impl Story {
    /// The schematic story: an `spec.grid`² token grid with `spec.window` windows, a regular
    /// and a shifted block, then the merged stage, all with synthetic attention (see the
    /// module documentation).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a spec that
    /// [`Template::parse`](super::template::Template::parse) would have rejected (an odd grid,
    /// a window that does not divide it, a sigma that is not positive).
    pub fn mechanism(spec: &MechanismSpec) -> Result<Story> {
        let (n, m) = (spec.grid, spec.window);
        let sigma_ok = spec.sigma.is_finite() && spec.sigma > 0.0;
        if n < 2 || !n.is_multiple_of(2) || m < 2 || m > n || !n.is_multiple_of(m) || !sigma_ok {
            return Err(Error::InvalidArgument(format!(
                "the schematic needs an even grid of at least 2 tokens, a window of at least 2 \
                 that divides it and a positive sigma; got grid {n}, window {m}, sigma {}",
                spec.sigma
            )));
        }
        let geometries = [
            Geometry::new(0, 0, n, n, m, 0),
            Geometry::new(0, 1, n, n, m, m / 2),
            Geometry::new(1, 0, n / 2, n / 2, m, 0),
        ];
        let blocks = geometries
            .iter()
            .map(|g| BlockTrace {
                geometry: *g,
                heads: 1,
                attention: synthetic_attention(g, spec.sigma, n),
            })
            .collect();
        let side = n * PATCH;
        let trace = Trace {
            pixel_values: Vec::new(),
            image_size: (side, side),
            logits: Vec::new(),
            blocks,
        };
        let mut story = Story::new(&trace, synthetic_image(side), &RolloutOptions::default())?;
        story.model = "schematic".into();
        story.schematic = true;
        Ok(story)
    }
}

/// Softmax of −d²/(2σ²) plus a pull towards the object, over the keys a query may see: its
/// window's real tokens in its own shift region. Masked keys get exactly 0, as after the
/// model's −100 mask.
fn synthetic_attention(g: &Geometry, sigma: f32, grid0: usize) -> Vec<f32> {
    let area = g.window_area();
    let index = g.index_image();
    let scale = (1usize << g.stage) as f32;
    let sigma = sigma / scale;
    // The object's centre (row, column) and radius in this stage's tokens.
    let object = (
        OBJECT.1 * grid0 as f32 / scale,
        OBJECT.0 * grid0 as f32 / scale,
    );
    let radius = (1.5 / scale).max(0.7);
    let mut out = vec![0f32; g.windows() * area * area];
    for (w, idx) in index.chunks(area).enumerate() {
        for (q, &tq) in idx.iter().enumerate() {
            if tq == Geometry::PADDING {
                continue;
            }
            let (qy, qx) = (
                (tq as usize / g.width) as f32,
                (tq as usize % g.width) as f32,
            );
            let rq = g.shift_region(tq as usize / g.width, tq as usize % g.width);
            let row = &mut out[(w * area + q) * area..][..area];
            let mut sum = 0f32;
            for (k, &tk) in idx.iter().enumerate() {
                if tk == Geometry::PADDING {
                    continue;
                }
                let (ky, kx) = (tk as usize / g.width, tk as usize % g.width);
                if g.shift_region(ky, kx) != rq {
                    continue;
                }
                let (ky, kx) = (ky as f32, kx as f32);
                let d2 = (qy - ky).powi(2) + (qx - kx).powi(2);
                let o2 = (ky + 0.5 - object.0).powi(2) + (kx + 0.5 - object.1).powi(2);
                let pull = 1.6 * (-o2 / (2.0 * radius * radius)).exp();
                let v = (-d2 / (2.0 * sigma * sigma) + pull).exp();
                row[k] = v;
                sum += v;
            }
            if sum > 0.0 {
                for v in row.iter_mut() {
                    *v /= sum;
                }
            }
        }
    }
    out
}

/// A calm synthetic picture: a dark gradient with a warm disc where the "object" is.
fn synthetic_image(side: usize) -> RgbImage {
    let s = side as f32;
    RgbImage::from_fn(side as u32, side as u32, |x, y| {
        let (u, v) = (x as f32 / s, y as f32 / s);
        let d = ((u - OBJECT.0).powi(2) + (v - OBJECT.1).powi(2)).sqrt();
        let disc = (1.0 - ((d - 0.14) / 0.03).clamp(0.0, 1.0)) * 0.9;
        let base = [40.0 + 40.0 * v, 60.0 + 30.0 * u, 90.0 + 40.0 * (1.0 - v)];
        let warm = [235.0, 150.0, 70.0];
        image::Rgb([0, 1, 2].map(|c| (base[c] + (warm[c] - base[c]) * disc) as u8))
    })
}

/// Every masked pair of a block, as (query token, key token): tokens in one window but in
/// different shift regions.
pub fn masked_pairs(g: &Geometry) -> Vec<(u32, u32)> {
    let area = g.window_area();
    let mut out = Vec::new();
    for idx in g.index_image().chunks(area) {
        for &q in idx.iter().filter(|&&t| t != Geometry::PADDING) {
            let rq = g.shift_region(q as usize / g.width, q as usize % g.width);
            for &k in idx.iter().filter(|&&t| t != Geometry::PADDING) {
                if g.shift_region(k as usize / g.width, k as usize % g.width) != rq {
                    out.push((q, k));
                }
            }
        }
    }
    out
}

/// What the schematic grid shows in a frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum GridState {
    /// The first stage's grid, no block yet.
    Plain,
    /// Block `block` with query `query` (token) being filled, if any.
    Block {
        /// Block index.
        block: usize,
        /// The query token being filled.
        query: Option<u32>,
    },
    /// Merging 2×2 tokens: block `from`'s grid with its 2×2 groups lighting up, then (from
    /// half-way) block `to`'s coarser grid.
    Merge {
        /// Last block of the old stage.
        from: usize,
        /// First block of the new stage.
        to: usize,
        /// Progress in [0, 1].
        progress: f32,
    },
}

/// The schematic token grid, drawn where the template's image panel goes.
#[derive(Debug)]
pub struct SchematicPanel {
    /// The panel's place.
    pub place: Rect,
    /// The grid's square.
    pub content: Rect,
}

impl SchematicPanel {
    /// Lays the grid out in the image panel's place.
    pub fn new(ctx: &Ctx, spec: &ImageSpec) -> SchematicPanel {
        let top = ctx.title_height();
        let note = (ctx.template.fonts.tick * 2.0).ceil() as i32;
        let area = Rect::new(
            spec.place.x,
            spec.place.y + top,
            spec.place.w,
            spec.place.h - top - note,
        );
        let mut content = fit(area, 1.0, 1.0);
        content.x = spec.place.x;
        SchematicPanel {
            place: spec.place,
            content,
        }
    }

    fn cell(&self, g: &Geometry, y: usize, x: usize) -> Rect {
        let (n, s) = (g.height.max(g.width) as i32, self.content.w);
        let (x0, x1) = (x as i32 * s / n, (x as i32 + 1) * s / n);
        let (y0, y1) = (y as i32 * s / n, (y as i32 + 1) * s / n);
        Rect::new(self.content.x + x0, self.content.y + y0, x1 - x0, y1 - y0)
    }

    /// Draws the grid: cells tinted by shift region, windows outlined, the current query and
    /// its keys coloured by attention, masked keys marked.
    #[allow(clippy::too_many_arguments)]
    pub fn draw(
        &self,
        img: &mut RgbImage,
        ctx: &Ctx,
        spec: &ImageSpec,
        story: &Story,
        state: GridState,
        colormap: (&Lut, Option<&Norm>),
        vars: &Vars,
    ) {
        ctx.draw_title(img, self.place, &spec.title, vars);
        let colors = &ctx.template.colors;
        let (block, merging) = match state {
            GridState::Plain => (0, None),
            GridState::Block { block, .. } => (block, None),
            GridState::Merge { progress, to, .. } if progress >= 0.5 => (to, None),
            GridState::Merge { from, progress, .. } => (from, Some(progress * 2.0)),
        };
        let g = &story.geometries[block];
        // While tokens merge, the shift of the block before is over: no tints, no windows.
        let tints = merging.is_none();
        let query = match state {
            GridState::Block { query, .. } => query,
            _ => None,
        };
        let focus = query.map(|q| window_place(g, q as usize / g.width, q as usize % g.width).0);
        let row = query.and_then(|q| {
            let a = story.attention.get(block)?;
            a.row(q as usize)
        });
        let qregion = query.map(|q| g.shift_region(q as usize / g.width, q as usize % g.width));
        let cell_base = colors.panel.mix(Rgb::WHITE, 0.10);
        for y in 0..g.height {
            for x in 0..g.width {
                let r = self.cell(g, y, x).inset(2);
                let (w, _) = window_place(g, y, x);
                let reg = g.shift_region(y, x);
                let mut c = cell_base;
                if reg != 0 && tints {
                    let (ry, rx) = (reg / 3, reg % 3);
                    let i = usize::from(ry == 2) * 2 + usize::from(rx == 2);
                    c = c.mix(colors.regions[i % colors.regions.len()], 0.45);
                }
                if focus.is_some_and(|f| f != w) {
                    c = c.mix(colors.background, 0.6);
                }
                fill_rect(img, r, c);
                // Keys of the current query: coloured by the attention they get.
                if let (Some(f), Some((keys, vals))) = (focus, row) {
                    if f == w {
                        let t = (y * g.width + x) as u32;
                        let v = keys.iter().position(|&k| k == t).map_or(0.0, |i| vals[i]);
                        if v > 0.0 {
                            let norm = colormap.1.copied().unwrap_or(Norm {
                                scale: super::colormap::Scale::Linear,
                                lo: 0.0,
                                hi: 1.0,
                            });
                            fill_rect(img, r.inset(3), colormap.0.get(norm.level(v)));
                        } else if qregion.is_some_and(|qr| qr != reg) {
                            // A key of the same window in another region: masked, gets 0.
                            cross(img, r.inset(r.w / 4), Rgb([214, 80, 80]));
                        }
                    }
                }
                // Token numbers tie cells to matrix rows and columns (token order).
                if r.w >= 40 {
                    let style = super::text::Style {
                        size: (r.h as f32 * 0.2).clamp(9.0, 15.0),
                        bold: false,
                        color: colors.muted,
                    };
                    ctx.text.draw_top(
                        img,
                        &(y * g.width + x).to_string(),
                        (r.x + 4) as f32,
                        (r.y + 2) as f32,
                        Align::Left,
                        &style,
                    );
                }
            }
        }
        // Window outlines (wrapped windows drawn as their pieces).
        for w in (0..g.windows()).filter(|_| tints) {
            for p in window_pieces(g, w) {
                let a = self.cell(g, p.y0, p.x0);
                let b = self.cell(g, p.y1 - 1, p.x1 - 1);
                let r = Rect::new(a.x, a.y, b.right() - a.x, b.bottom() - a.y);
                let (c, t, alpha) = if focus == Some(w) {
                    (colors.accent, 3, 1.0)
                } else {
                    (colors.grid, 2, 0.55)
                };
                stroke_rect(img, r, t, c, alpha);
            }
        }
        if let Some(q) = query {
            let r = self.cell(g, q as usize / g.width, q as usize % g.width);
            stroke_rect(img, r.inset(1), 3, Rgb::WHITE, 1.0);
            let style = super::text::Style {
                size: (r.h as f32 * 0.42).clamp(8.0, 28.0),
                bold: true,
                color: Rgb::WHITE,
            };
            ctx.text.draw(
                img,
                "q",
                (r.x + r.w / 2) as f32,
                (r.y + r.h / 2) as f32 + style.size * 0.3,
                Align::Center,
                &style,
            );
        }
        if let Some(progress) = merging {
            let groups = g.height.div_ceil(2);
            for gy in 0..groups {
                for gx in 0..g.width.div_ceil(2) {
                    let a = self.cell(g, 2 * gy, 2 * gx);
                    let b = self.cell(
                        g,
                        (2 * gy + 1).min(g.height - 1),
                        (2 * gx + 1).min(g.width - 1),
                    );
                    let r = Rect::new(a.x, a.y, b.right() - a.x, b.bottom() - a.y);
                    blend_rect(img, r.inset(3), colors.accent, 0.25 * progress);
                    stroke_rect(img, r.inset(1), 2, colors.accent, progress);
                }
            }
        }
        if g.shift > 0 && tints {
            ctx.draw_note(img, self.content, 8.0, &spec.shifted_note, vars);
        }
    }
}

/// Marks the masked entries among the filled rows of the matrix with a red dot, so they read
/// as "blocked" rather than merely small; the entry itself stays at the zero colour.
pub fn mark_masked(
    img: &mut RgbImage,
    matrix: &MatrixPanel,
    story: &Story,
    block: usize,
    fill: f64,
    u: f64,
) {
    let g = &story.geometries[block];
    if g.shift == 0 {
        return;
    }
    let filled: std::collections::HashSet<u32> = matrix
        .filled_queries(story, block, fill)
        .iter()
        .copied()
        .collect();
    for (q, k) in masked_pairs(g) {
        if !filled.contains(&q) {
            continue;
        }
        let r = matrix.cell(story, block, q, k, u);
        if r.w >= 5 {
            let d = (r.w / 3).max(2);
            fill_rect(
                img,
                Rect::new(r.x + (r.w - d) / 2, r.y + (r.h - d) / 2, d, d),
                Rgb([214, 80, 80]),
            );
        }
    }
}

/// A small × in `r`.
fn cross(img: &mut RgbImage, r: Rect, c: Rgb) {
    let (x0, y0, x1, y1) = (r.x as f32, r.y as f32, r.right() as f32, r.bottom() as f32);
    super::canvas::line(img, x0, y0, x1, y1, 3.0, c, 1.0);
    super::canvas::line(img, x0, y1, x1, y0, 3.0, c, 1.0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masked_pairs_get_exactly_zero() {
        let spec = MechanismSpec {
            grid: 8,
            window: 4,
            sigma: 1.2,
        };
        let story = Story::mechanism(&spec).unwrap();
        let a = story.attention(1).unwrap();
        let pairs = masked_pairs(a.geometry());
        assert!(!pairs.is_empty());
        for (q, k) in pairs {
            let (keys, vals) = a.row(q as usize).unwrap();
            let i = keys.iter().position(|&t| t == k).unwrap();
            assert_eq!(vals[i], 0.0);
        }
        assert!(masked_pairs(story.attention(0).unwrap().geometry()).is_empty());
    }
}
