//! The schematic token grid of mechanism mode, drawn where the template's image panel goes:
//! cells tinted by shift region, windows outlined, the current query's keys coloured on the
//! attention scale (the matrix's), masked keys crossed out, and 2×2 groups lighting up while
//! tokens merge.

use image::RgbImage;

use super::{fit, Frame, Panel, Prepare};
use crate::geometry::Geometry;
use crate::render::canvas::{blend_rect, fill_rect, line, stroke_rect, Rect, Rgb};
use crate::render::colormap::{Lut, Norm, Scale};
use crate::render::template::{ImageSpec, Mode};
use crate::render::text::{Align, Style};
use crate::render::timeline::Beat;
use crate::render::windows::{window_of, window_pieces, window_place};

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
    lut: Lut,
    norms: Vec<Norm>,
    spec: ImageSpec,
}

/// The schematic grid, in the image section's place, if the template is the mechanism's.
pub fn prepare(p: &Prepare) -> Option<Box<dyn Panel>> {
    let spec = p.video(&p.template().image)?;
    if p.template().mode != Mode::Mechanism {
        return None;
    }
    Some(Box::new(SchematicPanel::new(p, spec)))
}

impl SchematicPanel {
    /// Lays the grid out in the image panel's place, its keys on the attention scale.
    fn new(p: &Prepare, spec: &ImageSpec) -> SchematicPanel {
        let ctx = p.ctx;
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
        let scale = &p.scales.attention;
        SchematicPanel {
            place: spec.place,
            content,
            lut: scale.lut.clone(),
            norms: (0..p.story.attention.len())
                .filter_map(|k| scale.norm(k).copied())
                .collect(),
            spec: spec.clone(),
        }
    }

    fn cell(&self, g: &Geometry, y: usize, x: usize) -> Rect {
        let (n, s) = (g.height.max(g.width) as i32, self.content.w);
        let (x0, x1) = (x as i32 * s / n, (x as i32 + 1) * s / n);
        let (y0, y1) = (y as i32 * s / n, (y as i32 + 1) * s / n);
        Rect::new(self.content.x + x0, self.content.y + y0, x1 - x0, y1 - y0)
    }

    /// What the grid shows at the frame's moment.
    fn state(f: &Frame) -> GridState {
        let m = f.moment;
        match m.beat {
            Beat::Intro => GridState::Plain,
            Beat::Merge { from, to } => GridState::Merge {
                from,
                to,
                progress: m.progress as f32,
            },
            _ => GridState::Block {
                block: f.focus.block,
                query: f.focus.query,
            },
        }
    }
}

impl Panel for SchematicPanel {
    /// Draws the grid: cells tinted by shift region, windows outlined, the current query and
    /// its keys coloured by attention, masked keys marked.
    fn draw(&self, f: &mut Frame) {
        let spec = &self.spec;
        let state = Self::state(f);
        f.title(self.place, &spec.title);
        let norm = self.norms.get(f.focus.block);
        let (ctx, story, img) = (f.ctx, f.story, &mut *f.img);
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
        let focus = query.map(|q| window_of(g, q as usize));
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
                            let norm = norm.copied().unwrap_or(Norm {
                                scale: Scale::Linear,
                                lo: 0.0,
                                hi: 1.0,
                            });
                            fill_rect(img, r.inset(3), self.lut.get(norm.level(v)));
                        } else if qregion.is_some_and(|qr| qr != reg) {
                            // A key of the same window in another region: masked, gets 0.
                            cross(img, r.inset(r.w / 4), Rgb([214, 80, 80]));
                        }
                    }
                }
                // Token numbers tie cells to matrix rows and columns (token order).
                if r.w >= 40 {
                    let style = Style {
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
            let style = Style {
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
            f.note(self.content, 8.0, &spec.shifted_note);
        }
    }
}

/// A small × in `r`.
fn cross(img: &mut RgbImage, r: Rect, c: Rgb) {
    let (x0, y0, x1, y1) = (r.x as f32, r.y as f32, r.right() as f32, r.bottom() as f32);
    line(img, (x0, y0), (x1, y1), 3.0, c, 1.0);
    line(img, (x0, y1), (x1, y0), 3.0, c, 1.0);
}
