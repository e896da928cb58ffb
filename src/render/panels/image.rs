//! The input image with the current block's window grid over it.
//!
//! On shifted blocks the windows are drawn where the model really cut them: offset by the shift
//! and wrapping around the border, with the sub-regions that the shift mask keeps apart tinted
//! in different colours. The window being filled is shown bright, with its tokens, while the
//! rest of the image is dimmed.

use std::sync::OnceLock;

use image::imageops::FilterType;
use image::RgbImage;

use super::{fit, Ctx, Frame, Panel, Prepare};
use crate::geometry::Geometry;
use crate::render::canvas::{blend_rect, blit, blit_part, muted, stroke_rect, Rect, Rgb};
use crate::render::story::Story;
use crate::render::template::{ImageSpec, Mode};
use crate::render::timeline::Beat;
use crate::render::windows::{window_pieces, TokenRect};

/// What the image panel shows in a frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ImageState {
    /// The image with the first stage's token grid at the given opacity.
    Plain {
        /// Opacity of the token grid.
        tokens: f32,
    },
    /// Block `block`, with window `window` being filled (None: the block is complete).
    Block {
        /// Block index.
        block: usize,
        /// The window being filled.
        window: Option<usize>,
    },
    /// Patch merging from block `from`'s grid to block `to`'s, `progress` in [0, 1].
    Merge {
        /// Last block of the old stage.
        from: usize,
        /// First block of the new stage.
        to: usize,
        /// Progress.
        progress: f32,
    },
}

/// The image panel with its precomputed rasters.
#[derive(Debug)]
pub struct ImagePanel {
    /// The panel's place on the canvas.
    pub place: Rect,
    /// Where the image itself lies.
    pub content: Rect,
    bright: RgbImage,
    dim: RgbImage,
    /// Per block: (bright, dim) with the shift regions tinted; only built for shifted blocks.
    tinted: Vec<OnceLock<(RgbImage, RgbImage)>>,
    input: (usize, usize),
    patch: usize,
    spec: ImageSpec,
}

/// The image panel, if the template has one and it is not the schematic's.
pub fn prepare(p: &Prepare) -> Option<Box<dyn Panel>> {
    let spec = p.video(&p.template().image)?;
    if p.template().mode == Mode::Mechanism {
        return None;
    }
    Some(Box::new(ImagePanel::new(p.ctx, spec, p.story)))
}

impl ImagePanel {
    /// Lays the panel out and upscales the image once.
    pub fn new(ctx: &Ctx, spec: &ImageSpec, story: &Story) -> ImagePanel {
        let place = spec.place;
        let top = ctx.title_height();
        // Room under the image for the note on shifted blocks.
        let note = ctx.note_height(&spec.shifted_note);
        let area = Rect::new(place.x, place.y + top, place.w, place.h - top - note);
        let (ih, iw) = story.input_size;
        let content = fit(area, iw as f64, ih as f64);
        let bright = upscale(
            &story.image,
            content.w.max(1) as u32,
            content.h.max(1) as u32,
        );
        let dim = muted(&bright, 0.6, spec.dim);
        ImagePanel {
            place,
            content,
            bright,
            dim,
            tinted: (0..story.geometries.len())
                .map(|_| OnceLock::new())
                .collect(),
            input: story.input_size,
            patch: story.patch,
            spec: spec.clone(),
        }
    }

    /// The upscaled image, as drawn.
    pub fn image(&self) -> &RgbImage {
        &self.bright
    }

    /// Panel x of the boundary at token column `v` of stage `stage` (clamped to the image).
    fn tx(&self, stage: usize, v: usize) -> i32 {
        let px = (v * (self.patch << stage)) as f64 / self.input.1 as f64;
        self.content.x + (px.min(1.0) * f64::from(self.content.w)).round() as i32
    }

    /// Panel y of the boundary at token row `v` of stage `stage`.
    fn ty(&self, stage: usize, v: usize) -> i32 {
        let px = (v * (self.patch << stage)) as f64 / self.input.0 as f64;
        self.content.y + (px.min(1.0) * f64::from(self.content.h)).round() as i32
    }

    /// The panel rectangle of a rectangle of tokens.
    fn token_rect(&self, stage: usize, r: &TokenRect) -> Rect {
        let (x0, x1) = (self.tx(stage, r.x0), self.tx(stage, r.x1));
        let (y0, y1) = (self.ty(stage, r.y0), self.ty(stage, r.y1));
        Rect::new(x0, y0, x1 - x0, y1 - y0)
    }

    /// (bright, dim) rasters for block `k`: tinted by shift region on shifted blocks.
    fn rasters(&self, ctx: &Ctx, story: &Story, k: usize) -> (&RgbImage, &RgbImage) {
        let g = &story.geometries[k];
        if g.shift == 0 {
            return (&self.bright, &self.dim);
        }
        let (b, d) = self.tinted[k].get_or_init(|| {
            let regions = &ctx.template.colors.regions;
            (
                self.tint(&self.bright, g, regions, 0.30),
                self.tint(&self.dim, g, regions, 0.38),
            )
        });
        (b, d)
    }

    /// `src` with every token outside region 0 tinted by its region's colour.
    fn tint(&self, src: &RgbImage, g: &Geometry, palette: &[Rgb], alpha: f32) -> RgbImage {
        let mut out = src.clone();
        let (w, h) = out.dimensions();
        let side = (self.patch << g.stage) as f64;
        let token = |p: u32, n: u32, input: usize, limit: usize| {
            let px = (f64::from(p) + 0.5) / f64::from(n) * input as f64;
            ((px / side) as usize).min(limit - 1)
        };
        let xs: Vec<usize> = (0..w).map(|x| token(x, w, self.input.1, g.width)).collect();
        for y in 0..h {
            let ty = token(y, h, self.input.0, g.height);
            for (x, &tx) in xs.iter().enumerate() {
                let r = g.shift_region(ty, tx);
                if r == 0 {
                    continue;
                }
                // The pieces of one wrapped window get different colours: bottom/top strip and
                // right/left strip are told apart by whether the region index is 2 (the strip
                // that wrapped to the top or left).
                let (ry, rx) = (r / 3, r % 3);
                let i = usize::from(ry == 2) * 2 + usize::from(rx == 2);
                let c = palette[i % palette.len()];
                let p = out.get_pixel_mut(x as u32, y);
                for ch in 0..3 {
                    let base = f32::from(p.0[ch]);
                    p.0[ch] = (base + (f32::from(c.0[ch]) - base) * alpha).round() as u8;
                }
            }
        }
        out
    }

    /// Window boundaries of `g` as lines `t` px thick.
    fn window_lines(&self, img: &mut RgbImage, g: &Geometry, c: Rgb, alpha: f32) {
        if alpha <= 0.0 {
            return;
        }
        let m = g.window.max(1);
        let t = 2;
        // A window edge lies before image column b where b's rolled column starts a window.
        let (rolled_h, rolled_w) = g.rolled_size();
        for b in 1..g.width {
            if (b + rolled_w - g.shift % rolled_w).is_multiple_of(m) {
                let x = self.tx(g.stage, b);
                blend_rect(
                    img,
                    Rect::new(x - 1, self.content.y, t, self.content.h),
                    c,
                    alpha,
                );
            }
        }
        for b in 1..g.height {
            if (b + rolled_h - g.shift % rolled_h).is_multiple_of(m) {
                let y = self.ty(g.stage, b);
                blend_rect(
                    img,
                    Rect::new(self.content.x, y - 1, self.content.w, t),
                    c,
                    alpha,
                );
            }
        }
    }

    /// Token boundaries of stage `stage` (a `height`×`width` grid) inside `clip`.
    fn token_lines(
        &self,
        img: &mut RgbImage,
        stage: usize,
        (height, width): (usize, usize),
        clip: Rect,
        c: Rgb,
        alpha: f32,
    ) {
        // Lines closer than 4 px would turn the image into a grey mesh.
        if alpha <= 0.0 || self.tx(stage, 1) - self.tx(stage, 0) < 4 {
            return;
        }
        for b in 1..width {
            let x = self.tx(stage, b);
            if x > clip.x && x < clip.right() {
                blend_rect(img, Rect::new(x, clip.y, 1, clip.h), c, alpha);
            }
        }
        for b in 1..height {
            let y = self.ty(stage, b);
            if y > clip.y && y < clip.bottom() {
                blend_rect(img, Rect::new(clip.x, y, clip.w, 1), c, alpha);
            }
        }
    }

    /// What the panel shows at the frame's moment.
    fn state(f: &Frame) -> ImageState {
        let m = f.moment;
        match m.beat {
            Beat::Intro => ImageState::Plain {
                tokens: m.progress as f32,
            },
            Beat::Merge { from, to } => ImageState::Merge {
                from,
                to,
                progress: m.progress as f32,
            },
            _ => ImageState::Block {
                block: f.focus.block,
                window: f.focus.window,
            },
        }
    }
}

impl Panel for ImagePanel {
    fn draw(&self, f: &mut Frame) {
        let spec = &self.spec;
        let state = Self::state(f);
        let query = f.focus.query;
        f.title(self.place, &spec.title);
        let (ctx, story, vars, img) = (f.ctx, f.story, f.vars, &mut *f.img);
        let colors = &ctx.template.colors;
        let (x, y) = (self.content.x, self.content.y);
        match state {
            ImageState::Plain { tokens } => {
                blit(img, &self.bright, x, y);
                let g = &story.geometries[0];
                self.token_lines(
                    img,
                    0,
                    (g.height, g.width),
                    self.content,
                    colors.grid,
                    0.35 * tokens,
                );
            }
            ImageState::Block { block, window } => {
                let g = &story.geometries[block];
                let (bright, dim) = self.rasters(ctx, story, block);
                match window {
                    Some(w) => {
                        blit(img, dim, x, y);
                        let pieces: Vec<Rect> = window_pieces(g, w)
                            .iter()
                            .map(|p| self.token_rect(g.stage, p))
                            .collect();
                        for r in &pieces {
                            let part = Rect::new(r.x - x, r.y - y, r.w, r.h);
                            blit_part(img, bright, part, x, y);
                            self.token_lines(
                                img,
                                g.stage,
                                (g.height, g.width),
                                *r,
                                colors.grid,
                                0.3,
                            );
                        }
                        self.window_lines(img, g, colors.grid, 0.55);
                        for r in &pieces {
                            stroke_rect(img, r.inset(-2), 3, colors.accent, 1.0);
                        }
                        // Global attention has one window, the image: mark the query's patch.
                        if let Some((ty, tx)) = query
                            .filter(|_| g.is_global())
                            .and_then(|q| g.position(q as usize))
                        {
                            let patch = TokenRect {
                                y0: ty,
                                y1: ty + 1,
                                x0: tx,
                                x1: tx + 1,
                            };
                            let r = self.token_rect(g.stage, &patch);
                            stroke_rect(img, r.inset(-1), 2, colors.accent, 1.0);
                        }
                    }
                    None => {
                        blit(img, bright, x, y);
                        self.window_lines(img, g, colors.grid, 0.75);
                    }
                }
                if g.shift > 0 {
                    ctx.draw_note(img, self.content, 6.0, &spec.shifted_note, vars);
                }
            }
            ImageState::Merge { from, to, progress } => {
                blit(img, &self.bright, x, y);
                let (a, b) = (&story.geometries[from], &story.geometries[to]);
                let u = progress.clamp(0.0, 1.0);
                self.token_lines(
                    img,
                    a.stage,
                    (a.height, a.width),
                    self.content,
                    colors.grid,
                    0.4 * (1.0 - u),
                );
                self.token_lines(
                    img,
                    b.stage,
                    (b.height, b.width),
                    self.content,
                    colors.accent,
                    0.55 * u,
                );
                self.window_lines(img, a, colors.grid, 0.75 * (1.0 - u));
                self.window_lines(img, b, colors.grid, 0.75 * u);
            }
        }
        stroke_rect(img, self.content.inset(-1), 1, colors.muted, 0.5);
    }
}

/// Upscales with Lanczos (or downscales with a triangle filter) once per renderer.
pub fn upscale(src: &RgbImage, w: u32, h: u32) -> RgbImage {
    if src.dimensions() == (w, h) {
        return src.clone();
    }
    let filter = if w >= src.width() {
        FilterType::Lanczos3
    } else {
        FilterType::Triangle
    };
    image::imageops::resize(src, w, h, filter)
}
