//! Frames as a pure function of their index: [`Renderer::frame`] looks up the frame's
//! [`Moment`] on the timeline and composes the panels for it.
//!
//! Everything costly (upscaled images, matrix levels, overlay rasters, glyphs, the stage
//! figure) is computed once — up front or lazily behind a `OnceLock`, which yields the same
//! bytes whichever thread gets there first — so frames are byte-identical whatever order and
//! however many threads render them.

use std::sync::OnceLock;

use image::RgbImage;

use super::canvas::{blit_mix, solid};
use super::format::Vars;
use super::mechanism::{mark_masked, GridState, SchematicPanel};
use super::panels::classes::draw_classes;
use super::panels::figure::draw_figure;
use super::panels::image::{ImagePanel, ImageState};
use super::panels::matrix::{Levels, MatrixPanel, MatrixState};
use super::panels::overlay::{OverlayPanel, OverlayState};
use super::panels::Ctx;
use super::story::Story;
use super::template::{During, Mode, Order, Template};
use super::text::{Style, Typesetter};
use super::timeline::{Beat, Moment, Timeline};
use super::windows::window_place;
use crate::error::{Error, Result};

/// Renders a story with a template, frame by frame.
#[derive(Debug)]
pub struct Renderer<'a> {
    story: &'a Story,
    template: &'a Template,
    timeline: Timeline,
    text: Typesetter,
    background: image::RgbImage,
    image: Option<ImagePanel>,
    schematic: Option<SchematicPanel>,
    matrix: Option<MatrixPanel>,
    rollout: Option<OverlayPanel>,
    naive: Option<OverlayPanel>,
    figure: OnceLock<RgbImage>,
    base: Vars,
}

impl<'a> Renderer<'a> {
    /// Prepares everything that does not change from frame to frame.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when the mechanism template is given a model's story (it
    /// draws the schematic: use [`Story::mechanism`] with `template.mechanism`), or a story
    /// without blocks.
    pub fn new(story: &'a Story, template: &'a Template) -> Result<Renderer<'a>> {
        if template.mode == Mode::Mechanism && !story.is_schematic() {
            return Err(Error::InvalidArgument(format!(
                "template '{}' draws the schematic and needs no model; build its story with \
                 Story::mechanism",
                template.name
            )));
        }
        if story.geometries.is_empty() {
            return Err(Error::InvalidArgument("the story has no blocks".into()));
        }
        let timeline = Timeline::new(
            &template.timing,
            template.fps,
            &story.geometries,
            template.mode,
        );
        let mut extra = template.literal_chars();
        if let Some(p) = &story.prediction {
            extra.push_str(&p.label);
        }
        extra.push_str(&story.model);
        let text = Typesetter::new(&template.text_styles(), &extra)?;
        let base = base_vars(story);
        let mut r = Renderer {
            story,
            template,
            timeline,
            text,
            background: solid(template.width, template.height, template.colors.background),
            image: None,
            schematic: None,
            matrix: None,
            rollout: None,
            naive: None,
            figure: OnceLock::new(),
            base,
        };
        if !template.mode.is_still() {
            let ctx = Ctx {
                text: &r.text,
                template,
            };
            if let Some(spec) = &template.image {
                if template.mode == Mode::Mechanism {
                    r.schematic = Some(SchematicPanel::new(&ctx, spec));
                } else {
                    r.image = Some(ImagePanel::new(&ctx, spec, story));
                }
            }
            r.matrix = template
                .matrix
                .as_ref()
                .map(|spec| MatrixPanel::new(&ctx, spec, story));
            let naive_on = template.naive.is_some();
            r.rollout = template.rollout.as_ref().map(|spec| {
                let with: &[crate::rollout::Map] = if naive_on { &story.naive } else { &[] };
                OverlayPanel::new(&ctx, spec, story, &story.pooled, with)
            });
            r.naive = template.naive.as_ref().map(|spec| {
                let with: &[crate::rollout::Map] = if r.rollout.is_some() {
                    &story.pooled
                } else {
                    &[]
                };
                OverlayPanel::new(&ctx, spec, story, &story.naive, with)
            });
        }
        Ok(r)
    }

    /// Number of frames the timeline implies.
    pub fn frame_count(&self) -> usize {
        self.timeline.frame_count()
    }

    /// Frames per second.
    pub fn fps(&self) -> u32 {
        self.timeline.fps()
    }

    /// Canvas width and height.
    pub fn size(&self) -> (u32, u32) {
        (self.template.width, self.template.height)
    }

    /// The timeline.
    pub fn timeline(&self) -> &Timeline {
        &self.timeline
    }

    /// The matrix panel's level raster of block `block` (fully filled) in `order`
    /// (token or window), or None without a matrix panel or such a block.
    pub fn matrix_levels(&self, block: usize, order: Order) -> Option<Levels> {
        let m = self.matrix.as_ref()?;
        if block >= self.story.geometries.len() {
            return None;
        }
        let u = if order == Order::Window { 0.0 } else { 1.0 };
        Some(m.levels(self.story, block, 1.0, u))
    }

    /// The canvas rectangle of the matrix square, if the template shows the matrix.
    pub fn matrix_square(&self) -> Option<super::canvas::Rect> {
        self.matrix.as_ref().map(|m| m.square)
    }

    /// The canvas rectangle of the matrix entry (`query`, `key`) of `block` in `order`.
    pub fn matrix_cell(
        &self,
        block: usize,
        query: u32,
        key: u32,
        order: Order,
    ) -> Option<super::canvas::Rect> {
        let m = self.matrix.as_ref()?;
        let u = if order == Order::Window { 0.0 } else { 1.0 };
        Some(m.cell(self.story, block, query, key, u))
    }

    /// The frame at time `seconds` (clamped to the video).
    pub fn frame_at(&self, seconds: f64) -> Result<RgbImage> {
        self.frame(self.timeline.frame_at(seconds))
    }

    /// Frame `index`: a pure function of the index.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an index past the last frame.
    pub fn frame(&self, index: usize) -> Result<RgbImage> {
        if index >= self.frame_count() {
            return Err(Error::InvalidArgument(format!(
                "frame {index} is out of range: the video has {} frames",
                self.frame_count()
            )));
        }
        let m = self.timeline.moment(index);
        let vars = self.vars(&m);
        let mut img = match (self.template.mode, m.beat, &self.template.figure) {
            (mode, _, _) if mode.is_still() => self.figure(&vars).clone(),
            (_, Beat::Finale, Some(_)) => {
                let mut img = self.background.clone();
                blit_mix(
                    &mut img,
                    &self.background,
                    self.figure(&vars),
                    m.fade as f32,
                    0,
                    0,
                );
                img
            }
            _ => {
                let mut img = self.background.clone();
                self.panels(&mut img, &m, &vars);
                img
            }
        };
        self.track(&mut img, &m);
        self.captions(&mut img, &m, &vars);
        Ok(img)
    }

    fn ctx(&self) -> Ctx<'_> {
        Ctx {
            text: &self.text,
            template: self.template,
        }
    }

    fn figure(&self, vars: &Vars) -> &RgbImage {
        self.figure.get_or_init(|| {
            let mut img = self.background.clone();
            if let (false, Some(spec)) =
                (self.template.mode == Mode::Classes, &self.template.figure)
            {
                // The figure shows the whole network: its captions speak of the last block.
                let mut v = vars.clone();
                let last = self.story.geometries.len() - 1;
                self.block_vars(&mut v, last);
                draw_figure(&mut img, &self.ctx(), spec, self.story, &v);
            }
            if let (Mode::Classes, Some(spec)) = (self.template.mode, &self.template.classes) {
                draw_classes(&mut img, &self.ctx(), spec, self.story, vars);
            }
            img
        })
    }

    /// The block whose state a beat shows, with its fill and order progress.
    fn block_state(&self, m: &Moment) -> (usize, f64, f64) {
        let last = self.story.geometries.len() - 1;
        match m.beat {
            Beat::Intro => (0, 0.0, 0.0),
            Beat::Block(k) => (k, m.fill, m.reorder),
            Beat::Merge { from, .. } => (from, 1.0, 1.0),
            Beat::Finale => (last, 1.0, 1.0),
        }
    }

    /// The query (token) being filled in block `k` at `fill`, in window order.
    fn current_query(&self, k: usize, fill: f64) -> Option<u32> {
        if !(fill > 0.0 && fill < 1.0) {
            return None;
        }
        let a = &self.story.attention[k];
        let n = a.tokens();
        let q = ((fill * n as f64).round() as usize).clamp(1, n) - 1;
        a.index_image()
            .iter()
            .filter(|&&t| t != crate::geometry::Geometry::PADDING)
            .nth(q)
            .copied()
    }

    fn panels(&self, img: &mut RgbImage, m: &Moment, vars: &Vars) {
        let ctx = self.ctx();
        let t = self.template;
        let (k, fill, reorder) = self.block_state(m);
        let query = self.current_query(k, fill);
        let g = &self.story.geometries[k];
        let window = query.map(|q| window_place(g, q as usize / g.width, q as usize % g.width).0);

        if let (Some(p), Some(spec)) = (&self.image, &t.image) {
            let state = match m.beat {
                Beat::Intro => ImageState::Plain {
                    tokens: m.progress as f32,
                },
                Beat::Merge { from, to } => ImageState::Merge {
                    from,
                    to,
                    progress: m.progress as f32,
                },
                _ => ImageState::Block { block: k, window },
            };
            p.draw(img, &ctx, spec, self.story, state, vars);
        }
        if let (Some(p), Some(spec)) = (&self.schematic, &t.image) {
            let state = match m.beat {
                Beat::Intro => GridState::Plain,
                Beat::Merge { from, to } => GridState::Merge {
                    from,
                    to,
                    progress: m.progress as f32,
                },
                _ => GridState::Block { block: k, query },
            };
            let lut = self.matrix.as_ref().map(|mp| mp.lut().clone());
            let lut = lut.unwrap_or_else(|| super::colormap::Colormap::Magma.lut());
            let norm = self.matrix.as_ref().and_then(|mp| mp.norm(k));
            p.draw(img, &ctx, spec, self.story, state, (&lut, norm), vars);
        }
        if let (Some(p), Some(spec)) = (&self.matrix, &t.matrix) {
            let state = match m.beat {
                Beat::Intro => MatrixState::Empty,
                Beat::Merge { from, to } => MatrixState::Merge {
                    from,
                    to,
                    progress: m.progress,
                },
                _ => MatrixState::Block {
                    block: k,
                    fill,
                    reorder,
                },
            };
            p.draw(img, &ctx, spec, self.story, state, vars);
            if self.story.is_schematic() && matches!(state, MatrixState::Block { .. }) {
                mark_masked(img, p, self.story, k, fill, p.order_mix(reorder));
            }
        }
        for (panel, spec, maps_len) in [
            (&self.rollout, &t.rollout, self.story.pooled.len()),
            (&self.naive, &t.naive, self.story.naive.len()),
        ] {
            if let (Some(p), Some(spec)) = (panel, spec) {
                let state = match m.beat {
                    Beat::Intro => OverlayState::Plain,
                    Beat::Block(b) => OverlayState::Block {
                        block: b,
                        crossfade: m.crossfade,
                    },
                    _ => OverlayState::Block {
                        block: k.min(maps_len.saturating_sub(1)),
                        crossfade: 1.0,
                    },
                };
                p.draw(img, &ctx, spec, state, vars);
            }
        }
    }

    fn track(&self, img: &mut RgbImage, m: &Moment) {
        if let (Some(spec), false) = (&self.template.track, self.template.mode.is_still()) {
            super::panels::track::draw_track(
                img,
                &self.ctx(),
                spec,
                self.story,
                m,
                &self.base,
                |v, k| self.block_vars(v, k),
            );
        }
    }

    fn captions(&self, img: &mut RgbImage, m: &Moment, vars: &Vars) {
        let shifted = match m.beat {
            Beat::Block(k) => self.story.geometries[k].shift > 0,
            _ => false,
        };
        for c in &self.template.captions {
            let show = c.during.is_empty()
                || c.during.iter().any(|d| match (d, m.beat) {
                    (During::Intro, Beat::Intro) => true,
                    (During::Block, Beat::Block(_)) => true,
                    (During::Regular, Beat::Block(_)) => !shifted,
                    (During::Shifted, Beat::Block(_)) => shifted,
                    (During::Merge, Beat::Merge { .. }) => true,
                    (During::Finale, Beat::Finale) => true,
                    _ => false,
                });
            if !show || c.explain.is_some_and(|e| e != self.story.explanation) {
                continue;
            }
            let s = c.text.render(vars);
            let style = Style {
                size: c.size_in(&self.template.fonts),
                bold: c.bold,
                color: self.template.colors.paint(c.color),
            };
            self.text
                .draw_top(img, &s, c.at.0 as f32, c.at.1 as f32, c.align, &style);
        }
    }

    /// Fills the block-dependent placeholders for block `k`.
    fn block_vars(&self, v: &mut Vars, k: usize) {
        let g = &self.story.geometries[k];
        v.stage = g.stage + 1;
        v.block = g.block + 1;
        v.blocks = self
            .story
            .geometries
            .iter()
            .filter(|o| o.stage == g.stage)
            .count();
        v.layer = k + 1;
        v.shift = g.shift;
        v.window = g.window;
        v.windows = g.windows();
        v.height = g.height;
        v.width = g.width;
        v.heads = self.story.heads.get(k).copied().unwrap_or(0);
        v.patch = self.story.patch << g.stage;
        let next = self
            .story
            .geometries
            .get(k + 1)
            .filter(|n| n.stage != g.stage);
        (v.next_height, v.next_width) = match next {
            Some(n) => (n.height, n.width),
            None => g.merged_size(),
        };
    }

    fn vars(&self, m: &Moment) -> Vars {
        let mut v = self.base.clone();
        let (k, fill, reorder) = self.block_state(m);
        self.block_vars(&mut v, k);
        let n = self.story.attention[k].tokens();
        if let Some(q) = self.current_query(k, fill) {
            let g = &self.story.geometries[k];
            let (w, _) = window_place(g, q as usize / g.width, q as usize % g.width);
            v.filling = w + 1;
            v.query = q as usize;
            v.filled = ((fill * n as f64).round() as usize).clamp(1, n);
        } else {
            // Complete (or not begun): the last window and query in fill order.
            v.filling = self.story.geometries[k].windows();
            v.query = self.story.attention[k]
                .index_image()
                .iter()
                .rev()
                .find(|&&t| t != crate::geometry::Geometry::PADDING)
                .map_or(0, |&t| t as usize);
            v.filled = if fill > 0.0 { n } else { 0 };
        }
        let u = self.matrix.as_ref().map_or(1.0, |p| p.order_mix(reorder));
        v.window_order = u < 0.5;
        v
    }
}

/// The placeholders that never change within a video.
fn base_vars(story: &Story) -> Vars {
    let (label, probability) = match &story.prediction {
        Some(p) => (p.label.clone(), format!("{:.1}%", p.probability * 100.0)),
        None => ("—".into(), "—".into()),
    };
    Vars {
        model: story.model.clone(),
        label,
        probability,
        stages: story.geometries.last().map_or(0, |g| g.stage + 1),
        layers: story.geometries.len(),
        fusion: story.options.fusion.to_string(),
        residual: story.options.residual,
        image_height: story.input_size.0,
        image_width: story.input_size.1,
        class: story.explained_label().to_string(),
        explanation: story.explanation_name(),
        ..Vars::default()
    }
}
