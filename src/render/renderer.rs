//! Frames as a pure function of their index: [`Renderer::frame`] looks up the frame's
//! [`Moment`] on the timeline and composes the panels for it.
//!
//! Everything costly (upscaled images, matrix levels, overlay rasters, glyphs, the stage
//! figure) is computed once — up front or lazily behind a `OnceLock`, which yields the same
//! bytes whichever thread gets there first — so frames are byte-identical whatever order and
//! however many threads render them.

use std::any::Any;
use std::borrow::Cow;
use std::sync::OnceLock;

use image::RgbImage;

use super::canvas::{blit_mix, solid};
use super::format::Vars;
use super::panels::matrix::{Levels, MatrixPanel};
use super::panels::{prepare_all, Ctx, Focus, Frame, Layer, Panel, Prepare, Scales};
use super::story::Story;
use super::template::{During, Mode, Order, Template};
use super::text::{Style, Typesetter};
use super::timeline::{Beat, Moment, Timeline};
use super::windows::window_of;
use crate::error::{Error, Result};

/// Renders a story with a template, frame by frame.
#[derive(Debug)]
pub struct Renderer<'a> {
    story: &'a Story,
    template: Cow<'a, Template>,
    timeline: Timeline,
    text: Typesetter,
    background: image::RgbImage,
    /// The panels, in drawing order.
    panels: Vec<Box<dyn Panel>>,
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
        Renderer::with_template(story, Cow::Borrowed(template))
    }

    /// As [`Renderer::new`], with a template of its own (one side of a comparison).
    pub(super) fn with_template(
        story: &'a Story,
        template: Cow<'a, Template>,
    ) -> Result<Renderer<'a>> {
        if template.mode == Mode::Compare {
            return Err(Error::InvalidArgument(format!(
                "template '{}' shows two models side by side; render it with \
                 render::Comparison and a story of each",
                template.name
            )));
        }
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
        let base = story.base_vars();
        let background = solid(template.width, template.height, template.colors.background);
        let mut r = Renderer {
            story,
            template,
            timeline,
            text,
            background,
            panels: Vec::new(),
            figure: OnceLock::new(),
            base,
        };
        let scales = Scales::new(&r.template, story);
        let prepare = Prepare {
            ctx: &r.ctx(),
            story,
            scales: &scales,
        };
        r.panels = prepare_all(&prepare);
        Ok(r)
    }

    /// The matrix panel, if the template shows one.
    fn matrix(&self) -> Option<&MatrixPanel> {
        self.panels
            .iter()
            .find_map(|p| (p.as_ref() as &dyn Any).downcast_ref::<MatrixPanel>())
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
        let m = self.matrix()?;
        if block >= self.story.geometries.len() {
            return None;
        }
        let u = if order == Order::Window { 0.0 } else { 1.0 };
        Some(m.levels(self.story, block, 1.0, u))
    }

    /// The canvas rectangle of the matrix square, if the template shows the matrix.
    pub fn matrix_square(&self) -> Option<super::canvas::Rect> {
        self.matrix().map(|m| m.square)
    }

    /// The canvas rectangle of the matrix entry (`query`, `key`) of `block` in `order`.
    pub fn matrix_cell(
        &self,
        block: usize,
        query: u32,
        key: u32,
        order: Order,
    ) -> Option<super::canvas::Rect> {
        let m = self.matrix()?;
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
        let focus = Focus::new(self.story, &self.template, &m);
        let vars = self.vars(&focus);
        let ctx = self.ctx();
        let mut img = self.background.clone();
        let mut f = Frame {
            img: &mut img,
            ctx: &ctx,
            story: self.story,
            moment: &m,
            focus,
            vars: &vars,
            base: &self.base,
        };
        match (self.template.mode, m.beat, &self.template.figure) {
            (mode, _, _) if mode.is_still() => f.img.clone_from(self.figure(&f)),
            (_, Beat::Finale, Some(_)) => {
                let figure = self.figure(&f);
                blit_mix(f.img, &self.background, figure, m.fade as f32, 0, 0);
            }
            _ => self.draw(&mut f, Layer::Stage),
        }
        if !self.template.mode.is_still() {
            // What every frame of a video shows, over the stage or the figure.
            self.draw(&mut f, Layer::Chrome);
        }
        self.captions(&mut img, &m, &vars, false);
        Ok(img)
    }

    /// Draws the captions of a compare template that are anchored on the whole canvas
    /// (`canvas = true`) onto `img`, the whole canvas, as they read at frame `index`.
    pub(super) fn canvas_captions(&self, img: &mut RgbImage, index: usize) {
        let m = self.timeline.moment(index.min(self.frame_count() - 1));
        let focus = Focus::new(self.story, &self.template, &m);
        let vars = self.vars(&focus);
        self.captions(img, &m, &vars, true);
    }

    fn ctx(&self) -> Ctx<'_> {
        Ctx {
            text: &self.text,
            template: &self.template,
        }
    }

    /// Draws the panels of `layer` into `f`.
    fn draw(&self, f: &mut Frame, layer: Layer) {
        for p in self.panels.iter().filter(|p| p.layer() == layer) {
            p.draw(f);
        }
    }

    /// The still figure, drawn once by the figure panels (with the placeholders of the frame
    /// `f` that first asks for it: every frame that shows the figure has the same).
    fn figure(&self, f: &Frame) -> &RgbImage {
        self.figure.get_or_init(|| {
            let mut img = self.background.clone();
            self.draw(
                &mut Frame {
                    img: &mut img,
                    ..*f
                },
                Layer::Figure,
            );
            img
        })
    }

    /// Draws the captions whose `canvas` is `canvas` that show at `m`.
    fn captions(&self, img: &mut RgbImage, m: &Moment, vars: &Vars, canvas: bool) {
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
            if !show
                || c.canvas != canvas
                || c.explain.is_some_and(|e| e != self.story.explanation)
                || c.attention
                    .is_some_and(|a| a != self.story.attention_kind())
            {
                continue;
            }
            // A caption about the prediction or the model says nothing without them.
            if c.text.vars().any(|v| !self.story.knows(v)) {
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

    fn vars(&self, focus: &Focus) -> Vars {
        let mut v = self.base.clone();
        let (k, fill) = (focus.block, focus.fill);
        self.story.set_block_vars(&mut v, k);
        let n = self.story.attention[k].tokens();
        if let Some(q) = focus.query {
            let g = &self.story.geometries[k];
            let w = window_of(g, q as usize);
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
        // A global block has one window: window order is token order.
        v.window_order = focus.order < 0.5 && !v.global;
        v
    }
}
