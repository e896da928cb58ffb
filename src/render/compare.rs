//! Two models' stories side by side and in step: the compare template.
//!
//! Each model's story is drawn by its own [`Renderer`] in one of the template's two boxes,
//! with the template's panels and captions placed relative to the box. The block and merge
//! beats of the shallower model are stretched so that both go from their first block to their
//! last in the same time: a 12-block Swin and a 10-block ViT begin their blocks together and
//! reach their finales together. Captions with `canvas = true` are drawn once over the whole
//! canvas, with the first model's placeholders.

use std::borrow::Cow;

use image::RgbImage;

use super::canvas::{blit, solid, Rect};
use super::story::Story;
use super::template::{Mode, Template};
use super::timeline::Timeline;
use super::{Frames, Renderer};
use crate::error::{Error, Result};

/// Renders a compare template: one model's story in each box, frame by frame.
///
/// Like [`Renderer`], a frame is a pure function of its index, so frames can be rendered on
/// any number of threads with identical bytes.
#[derive(Debug)]
pub struct Comparison<'a> {
    sides: [Renderer<'a>; 2],
    boxes: [Rect; 2],
    background: RgbImage,
    fps: u32,
    frames: usize,
}

impl<'a> Comparison<'a> {
    /// Prepares both sides: `left` in the template's `[compare] left` box, `right` in its
    /// `right` box.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a template that is not a compare template; as
    /// [`Renderer::new`] for either side (a story without blocks, a schematic).
    pub fn new(left: &'a Story, right: &'a Story, template: &Template) -> Result<Comparison<'a>> {
        let spec = match (&template.compare, template.mode) {
            (Some(spec), Mode::Compare) => spec,
            _ => {
                return Err(Error::InvalidArgument(format!(
                    "template '{}' is not a compare template (mode = \"compare\"); render one \
                     story with Renderer",
                    template.name
                )))
            }
        };
        let boxes = [spec.left, spec.right];
        let body = |s: &Story| Timeline::body_seconds(&template.timing, s.geometries());
        let longest = body(left).max(body(right));
        let side = |story: &'a Story, place: Rect| {
            let own = body(story);
            let stretch = if own > 0.0 { longest / own } else { 1.0 };
            let size = (place.w.unsigned_abs(), place.h.unsigned_abs());
            Renderer::with_template(story, Cow::Owned(template.side(size, stretch)))
        };
        let sides = [side(left, boxes[0])?, side(right, boxes[1])?];
        let frames = sides[0].frame_count().max(sides[1].frame_count());
        Ok(Comparison {
            sides,
            boxes,
            background: solid(template.width, template.height, template.colors.background),
            fps: template.fps,
            frames,
        })
    }

    /// The renderer of one side: 0 the first model's (left), 1 the second's (right).
    pub fn side(&self, index: usize) -> Option<&Renderer<'a>> {
        self.sides.get(index)
    }

    /// The canvas boxes of the two sides, left then right.
    pub fn boxes(&self) -> [Rect; 2] {
        self.boxes
    }

    /// Number of frames: the longer side's (the other holds its last frame).
    pub fn frame_count(&self) -> usize {
        self.frames
    }

    /// Frames per second.
    pub fn fps(&self) -> u32 {
        self.fps
    }

    /// Canvas width and height.
    pub fn size(&self) -> (u32, u32) {
        self.background.dimensions()
    }

    /// The frame at time `seconds` (clamped to the video).
    ///
    /// # Errors
    /// As [`Comparison::frame`].
    pub fn frame_at(&self, seconds: f64) -> Result<RgbImage> {
        Frames::frame_at(self, seconds)
    }

    /// Frame `index`: each side's frame of that index (or its last) in its box, then the
    /// canvas captions.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an index past the last frame.
    pub fn frame(&self, index: usize) -> Result<RgbImage> {
        if index >= self.frames {
            return Err(Error::InvalidArgument(format!(
                "frame {index} is out of range: the video has {} frames",
                self.frames
            )));
        }
        let mut img = self.background.clone();
        for (side, place) in self.sides.iter().zip(self.boxes) {
            let frame = side.frame(index.min(side.frame_count() - 1))?;
            blit(&mut img, &frame, place.x, place.y);
        }
        self.sides[0].canvas_captions(&mut img, index);
        Ok(img)
    }
}

impl Frames for Comparison<'_> {
    fn frame_count(&self) -> usize {
        Comparison::frame_count(self)
    }

    fn fps(&self) -> u32 {
        Comparison::fps(self)
    }

    fn size(&self) -> (u32, u32) {
        Comparison::size(self)
    }

    fn frame(&self, index: usize) -> Result<RgbImage> {
        Comparison::frame(self, index)
    }
}
