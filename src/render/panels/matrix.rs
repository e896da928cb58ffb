//! The attention-matrix panel: a block's global N×N head-fused attention, rows = queries,
//! columns = keys, building up query by query in window order.
//!
//! Where N is larger than the panel, pixels pool several entries with MAX, so a single strong
//! entry survives. Values become colour levels once per block (see
//! [`colormap`](crate::render::colormap)); since the level scale is monotonic, pooling levels
//! with MAX is the same as pooling values. Each frame then only splats the entries filled so
//! far (or moves them, during the window-order → token-order transition) and looks levels up.

use std::sync::OnceLock;

use image::RgbImage;

use super::{draw_vbar, vbar_room, Ctx, Frame, Panel, Prepare};
use crate::geometry::Geometry;
use crate::render::canvas::{blend_rect, bounds, fill_rect, stroke_rect, triangle, Rect, Rgb};
use crate::render::colormap::{Lut, Norm};
use crate::render::mechanism::masked_pairs;
use crate::render::story::Story;
use crate::render::template::MatrixSpec;
use crate::render::text::Align;
use crate::render::timeline::{smoothstep, Beat};
use crate::render::windows::window_order;

/// What the matrix panel shows in a frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MatrixState {
    /// An empty frame (intro).
    Empty,
    /// Block `block`, `fill` of its queries filled, moved `reorder` of the way from window
    /// order to token order (for order = "both").
    Block {
        /// Block index.
        block: usize,
        /// Filled share of queries, in [0, 1].
        fill: f64,
        /// Window → token order progress, in [0, 1].
        reorder: f64,
    },
    /// Patch merging from block `from` to block `to`.
    Merge {
        /// Last block of the old stage.
        from: usize,
        /// First block of the new stage.
        to: usize,
        /// Progress in [0, 1].
        progress: f64,
    },
}

/// A level raster: `size`×`size` colour levels and which of its rows are filled.
#[derive(Debug, Clone, PartialEq)]
pub struct Levels {
    /// Side in pixels.
    pub size: usize,
    /// `size·size` levels, row-major; 0 = no attention.
    pub levels: Vec<u8>,
    /// Whether each pixel row holds at least one filled query.
    pub filled: Vec<bool>,
}

/// One block's entries, ready to splat.
#[derive(Debug)]
struct BlockMatrix {
    tokens: usize,
    /// Non-zero entries in fill order: (query token, key token, level).
    entries: Vec<(u32, u32, u8)>,
    /// `starts[i]`: first entry of the i-th query in fill order; `tokens + 1` long.
    starts: Vec<u32>,
    /// Token of the i-th query in fill order.
    fill_tokens: Vec<u32>,
    /// Window-order slot of each token.
    slots: Vec<u32>,
    full_window: Levels,
    full_token: Levels,
}

/// The matrix panel.
#[derive(Debug)]
pub struct MatrixPanel {
    /// The panel's place.
    pub place: Rect,
    /// The matrix square.
    pub square: Rect,
    bar: Rect,
    lut: Lut,
    norms: Vec<Norm>,
    spec: MatrixSpec,
    /// Whether the story is the schematic's (its masked entries are marked).
    schematic: bool,
    blocks: Vec<OnceLock<BlockMatrix>>,
}

/// Pixel span `[start, end)` of slot position `pos` (possibly fractional) among `n` slots
/// drawn over `size` pixels; at least one pixel.
#[inline]
fn span(pos: f64, n: usize, size: usize) -> (u16, u16) {
    let scale = size as f64 / n as f64;
    let start = ((pos * scale).floor().max(0.0) as usize).min(size - 1);
    let end = (((pos + 1.0) * scale).floor() as usize).clamp(start + 1, size);
    (start as u16, end as u16)
}

/// The matrix panel, if the template has one.
pub fn prepare(p: &Prepare) -> Option<Box<dyn Panel>> {
    Some(Box::new(MatrixPanel::new(p)?))
}

impl MatrixPanel {
    /// Lays the panel out on the shared attention scale; None without a matrix section.
    pub fn new(p: &Prepare) -> Option<MatrixPanel> {
        let (ctx, story) = (p.ctx, p.story);
        let spec = p.video(&p.template().matrix)?;
        let place = spec.place;
        let top = ctx.title_height();
        let note = ctx.note_height(&spec.note);
        // Left margin for the current-query marker; right for the colour bar.
        let margin = 14;
        let side = (place.w - margin - vbar_room(ctx))
            .min(place.h - top - note)
            .max(1);
        let square = Rect::new(place.x + margin, place.y + top, side, side);
        let bar = Rect::new(
            square.right() + 12,
            square.y + (ctx.template.fonts.tick * 1.2) as i32,
            vbar_room(ctx) - 12,
            side - (ctx.template.fonts.tick * 1.2) as i32,
        );
        let scale = &p.scales.attention;
        let norms = (0..story.attention.len())
            .filter_map(|k| scale.norm(k).copied())
            .collect();
        Some(MatrixPanel {
            place,
            square,
            bar,
            lut: scale.lut.clone(),
            norms,
            spec: spec.clone(),
            schematic: story.is_schematic(),
            blocks: (0..story.attention.len())
                .map(|_| OnceLock::new())
                .collect(),
        })
    }

    fn block(&self, story: &Story, k: usize) -> &BlockMatrix {
        self.blocks[k].get_or_init(|| self.build(story, k))
    }

    fn build(&self, story: &Story, k: usize) -> BlockMatrix {
        let a = &story.attention[k];
        let g = a.geometry();
        let n = a.tokens();
        let norm = &self.norms[k];
        let area = g.window_area();
        let index = a.index_image();
        let values = a.values();
        let mut entries = Vec::new();
        let mut starts = Vec::with_capacity(n + 1);
        let mut fill_tokens = Vec::with_capacity(n);
        for (w, idx) in index.chunks(area).enumerate() {
            for (q, &tq) in idx.iter().enumerate() {
                if tq == Geometry::PADDING {
                    continue;
                }
                starts.push(entries.len() as u32);
                fill_tokens.push(tq);
                let row = &values[(w * area + q) * area..][..area];
                for (&tk, &v) in idx.iter().zip(row) {
                    if tk != Geometry::PADDING && v > 0.0 {
                        let level = norm.level(v);
                        if level > 0 {
                            entries.push((tq, tk, level));
                        }
                    }
                }
            }
        }
        starts.push(entries.len() as u32);
        let slots = window_order(g);
        let size = self.square.w.max(1) as usize;
        let mut bm = BlockMatrix {
            tokens: n,
            entries,
            starts,
            fill_tokens,
            slots,
            full_window: Levels {
                size,
                levels: Vec::new(),
                filled: Vec::new(),
            },
            full_token: Levels {
                size,
                levels: Vec::new(),
                filled: Vec::new(),
            },
        };
        let pos_w: Vec<f64> = bm.slots.iter().map(|&s| f64::from(s)).collect();
        let pos_t: Vec<f64> = (0..n).map(|t| t as f64).collect();
        bm.full_window = splat(&bm, size, n, &pos_w);
        bm.full_token = splat(&bm, size, n, &pos_t);
        bm
    }

    /// The level raster of block `k` with `fill` of its queries filled, in window order
    /// (`reorder` = 0) or token order (`reorder` = 1) or in between.
    pub fn levels(&self, story: &Story, k: usize, fill: f64, reorder: f64) -> Levels {
        let bm = self.block(story, k);
        let size = self.square.w.max(1) as usize;
        let queries = ((fill.clamp(0.0, 1.0) * bm.tokens as f64).round() as usize).min(bm.tokens);
        let u = reorder.clamp(0.0, 1.0);
        if queries == bm.tokens && u == 0.0 {
            return bm.full_window.clone();
        }
        if queries == bm.tokens && u == 1.0 {
            return bm.full_token.clone();
        }
        let pos: Vec<f64> = bm
            .slots
            .iter()
            .enumerate()
            .map(|(t, &s)| f64::from(s) + (t as f64 - f64::from(s)) * u)
            .collect();
        splat(bm, size, queries, &pos)
    }

    /// The queries (tokens) filled at `fill`, in fill order.
    pub fn filled_queries<'s>(&'s self, story: &'s Story, k: usize, fill: f64) -> &'s [u32] {
        let bm = self.block(story, k);
        let queries = ((fill.clamp(0.0, 1.0) * bm.tokens as f64).round() as usize).min(bm.tokens);
        &bm.fill_tokens[..queries]
    }

    /// The canvas rectangle of entry (`query`, `key`) of block `k` at order mix `u`.
    pub fn cell(&self, story: &Story, k: usize, query: u32, key: u32, u: f64) -> Rect {
        let bm = self.block(story, k);
        let size = self.square.w.max(1) as usize;
        let pos = |t: u32| {
            let s = f64::from(bm.slots[t as usize]);
            s + (f64::from(t) - s) * u
        };
        let (r0, r1) = span(pos(query), bm.tokens, size);
        let (c0, c1) = span(pos(key), bm.tokens, size);
        Rect::new(
            self.square.x + i32::from(c0),
            self.square.y + i32::from(r0),
            i32::from(c1 - c0),
            i32::from(r1 - r0),
        )
    }

    /// What the panel shows at the frame's moment.
    fn state(f: &Frame) -> MatrixState {
        let m = f.moment;
        match m.beat {
            Beat::Intro => MatrixState::Empty,
            Beat::Merge { from, to } => MatrixState::Merge {
                from,
                to,
                progress: m.progress,
            },
            _ => MatrixState::Block {
                block: f.focus.block,
                fill: f.focus.fill,
                reorder: f.focus.order,
            },
        }
    }

    /// Marks the masked entries among the filled rows with a red dot, so they read as
    /// "blocked" rather than merely small; the entry itself stays at the zero colour.
    fn mark_masked(&self, img: &mut RgbImage, story: &Story, block: usize, fill: f64, u: f64) {
        let g = &story.geometries[block];
        if g.shift == 0 {
            return;
        }
        let filled: std::collections::HashSet<u32> = self
            .filled_queries(story, block, fill)
            .iter()
            .copied()
            .collect();
        for (q, k) in masked_pairs(g) {
            if !filled.contains(&q) {
                continue;
            }
            let r = self.cell(story, block, q, k, u);
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
}

impl Panel for MatrixPanel {
    fn draw(&self, f: &mut Frame) {
        let spec = &self.spec;
        let state = Self::state(f);
        f.title(self.place, &spec.title);
        let (ctx, story, vars, img) = (f.ctx, f.story, f.vars, &mut *f.img);
        let colors = &ctx.template.colors;
        fill_rect(img, self.square, colors.panel);
        let norm_block = match state {
            MatrixState::Empty => 0,
            MatrixState::Block { block, .. } => block,
            MatrixState::Merge { from, .. } => from,
        };
        match state {
            MatrixState::Empty => {}
            MatrixState::Block {
                block,
                fill,
                reorder: u,
            } => {
                let levels = self.levels(story, block, fill, u);
                self.paint(img, &levels, self.square, colors.panel);
                let bm = self.block(story, block);
                if u == 0.0 {
                    self.window_outlines(img, ctx, story, block);
                }
                if fill < 1.0 {
                    self.query_marker(img, ctx, bm, fill, u);
                }
            }
            MatrixState::Merge { from, to, progress } => {
                let ratio = (story.attention[to].tokens() as f64
                    / story.attention[from].tokens() as f64)
                    .clamp(0.02, 1.0);
                let s = f64::from(self.square.w);
                let split = 0.55;
                if progress < split {
                    let a = smoothstep(progress / split);
                    let side = (s * (1.0 - a * (1.0 - ratio))).round() as i32;
                    let levels = self.levels(story, from, 1.0, 1.0);
                    let dst = Rect::new(self.square.x, self.square.y, side, side);
                    self.paint(img, &levels, dst, colors.panel);
                    stroke_rect(img, dst, 1, colors.muted, 0.8);
                } else {
                    let b = smoothstep((progress - split) / (1.0 - split));
                    let side = (s * (ratio + b * (1.0 - ratio))).round() as i32;
                    let dst = Rect::new(self.square.x, self.square.y, side, side);
                    stroke_rect(img, dst, 2, colors.accent, 0.9);
                    let n = story.attention[to].tokens();
                    let label = format!("{n} × {n}");
                    let style = ctx.tick();
                    ctx.text.draw(
                        img,
                        &label,
                        (dst.x + dst.w / 2) as f32,
                        (dst.y + dst.h / 2) as f32 + style.size * 0.35,
                        Align::Center,
                        &style,
                    );
                }
            }
        }
        stroke_rect(img, self.square.inset(-1), 1, colors.muted, 0.5);
        if let Some(norm) = self.norms.get(norm_block) {
            let label = spec.bar.render(vars);
            draw_vbar(img, ctx, self.bar, &self.lut, norm, &label);
        }
        f.note(self.square, 8.0, &spec.note);
        if let (
            true,
            MatrixState::Block {
                block,
                fill,
                reorder,
            },
        ) = (self.schematic, state)
        {
            self.mark_masked(f.img, story, block, fill, reorder);
        }
    }
}

impl MatrixPanel {
    /// Paints a level raster into `dst` (nearest-neighbour scaled); rows not yet filled get
    /// `empty`.
    fn paint(&self, img: &mut RgbImage, levels: &Levels, dst: Rect, empty: Rgb) {
        let size = levels.size;
        let clip = dst.intersect(&bounds(img));
        if clip.is_empty() || size == 0 {
            return;
        }
        let (dw, dh) = (dst.w as usize, dst.h as usize);
        let xs: Vec<usize> = (clip.x..clip.right())
            .map(|x| ((x - dst.x) as usize * size / dw).min(size - 1))
            .collect();
        let iw = img.width() as usize;
        let buf: &mut [u8] = img;
        for y in clip.y..clip.bottom() {
            let sy = ((y - dst.y) as usize * size / dh).min(size - 1);
            let row = &mut buf[(y as usize * iw + clip.x as usize) * 3..][..clip.w as usize * 3];
            if !levels.filled[sy] {
                for px in row.chunks_exact_mut(3) {
                    px.copy_from_slice(&empty.0);
                }
                continue;
            }
            let src = &levels.levels[sy * size..(sy + 1) * size];
            for (px, &sx) in row.chunks_exact_mut(3).zip(&xs) {
                px.copy_from_slice(&self.lut.get(src[sx]).0);
            }
        }
    }

    /// Faint outlines of the diagonal window blocks in window order, where they are big enough
    /// to see.
    fn window_outlines(&self, img: &mut RgbImage, ctx: &Ctx, story: &Story, k: usize) {
        let a = &story.attention[k];
        let g = a.geometry();
        let n = a.tokens();
        let size = self.square.w.max(1) as usize;
        let per_window = g.window_area() as f64 * size as f64 / n as f64;
        if per_window < 10.0 || g.windows() < 2 {
            return;
        }
        let mut start = 0usize;
        for idx in a.index_image().chunks(g.window_area()) {
            let real = idx.iter().filter(|&&t| t != Geometry::PADDING).count();
            let (a0, _) = span(start as f64, n, size);
            let (_, b1) = span((start + real - 1) as f64, n, size);
            let r = Rect::new(
                self.square.x + i32::from(a0),
                self.square.y + i32::from(a0),
                i32::from(b1 - a0),
                i32::from(b1 - a0),
            );
            stroke_rect(img, r, 1, ctx.template.colors.grid, 0.22);
            start += real;
        }
    }

    /// A marker left of the matrix at the row being filled.
    fn query_marker(&self, img: &mut RgbImage, ctx: &Ctx, bm: &BlockMatrix, fill: f64, u: f64) {
        let queries = ((fill * bm.tokens as f64).round() as usize).min(bm.tokens);
        if queries == 0 {
            return;
        }
        let t = bm.fill_tokens[queries - 1] as usize;
        let s = f64::from(bm.slots[t]);
        let pos = s + (t as f64 - s) * u;
        let size = self.square.w.max(1) as usize;
        let (a, b) = span(pos, bm.tokens, size);
        let y = self.square.y as f32 + (f32::from(a) + f32::from(b)) / 2.0;
        let x = self.square.x as f32 - 3.0;
        triangle(
            img,
            [(x - 10.0, y - 6.0), (x, y), (x - 10.0, y + 6.0)],
            ctx.template.colors.accent,
            1.0,
        );
        if b - a >= 3 {
            let r = Rect::new(
                self.square.x,
                self.square.y + i32::from(a),
                self.square.w,
                i32::from(b - a),
            );
            blend_rect(img, r, ctx.template.colors.accent, 0.12);
        }
    }
}

/// Splats the first `queries` queries' entries with positions `pos` (per token, in slots)
/// into a `size`×`size` raster, pooling with MAX.
fn splat(bm: &BlockMatrix, size: usize, queries: usize, pos: &[f64]) -> Levels {
    let n = bm.tokens;
    let mut levels = vec![0u8; size * size];
    let mut filled = vec![false; size];
    if n == 0 || size == 0 {
        return Levels {
            size,
            levels,
            filled,
        };
    }
    let spans: Vec<(u16, u16)> = pos.iter().map(|&p| span(p, n, size)).collect();
    if queries == n {
        // Complete: rows that moving tokens leave empty hold zeros, like empty columns do.
        filled.fill(true);
    }
    for &t in &bm.fill_tokens[..queries] {
        let (a, b) = spans[t as usize];
        for f in &mut filled[a as usize..b as usize] {
            *f = true;
        }
    }
    let end = bm.starts[queries] as usize;
    for &(q, k, level) in &bm.entries[..end] {
        let (r0, r1) = spans[q as usize];
        let (c0, c1) = spans[k as usize];
        if r1 - r0 == 1 && c1 - c0 == 1 {
            let cell = &mut levels[r0 as usize * size + c0 as usize];
            *cell = (*cell).max(level);
            continue;
        }
        for r in r0..r1 {
            let row = &mut levels[r as usize * size..][c0 as usize..c1 as usize];
            for cell in row {
                *cell = (*cell).max(level);
            }
        }
    }
    Levels {
        size,
        levels,
        filled,
    }
}
