//! Explainer videos and figures of a Swin Transformer's window attention and its window-aware
//! rollout.
//!
//! A [`Story`] holds the data (from a model's trace, or the synthetic schematic of
//! [`Story::mechanism`]); a [`Template`] says how it looks and how long each part lasts; a
//! [`Renderer`] turns frame indices into images:
//!
//! ```no_run
//! use swin_rollout::render::{Renderer, Story, Template};
//!
//! let template = Template::load("mechanism")?;
//! let story = Story::mechanism(&template.mechanism)?;
//! let renderer = Renderer::new(&story, &template)?;
//! for i in (0..renderer.frame_count()).step_by(30) {
//!     renderer.frame(i)?.save(format!("frame_{i:04}.png")).ok();
//! }
//! # Ok::<(), swin_rollout::Error>(())
//! ```
//!
//! [`Renderer::frame`] is a pure function of the index and the renderer is `Sync`, so frames
//! can be rendered on any number of threads, in any order, with identical bytes. A compare
//! template draws two models' stories side by side with a [`Comparison`]; both are
//! [`Frames`], which [`write_video`] encodes.
//!
//! Modules, one per concept: [`template`] (TOML templates), [`timeline`] (frame → moment),
//! [`compare`] (two stories side by side),
//! [`story`] (the data), [`panels`] (the [`Panel`](panels::Panel) seam and every panel: image +
//! windows, schematic grid, matrix, rollout, progress track; the stage and classes figures; the
//! colour scales panels share), [`mechanism`] (the schematic's synthetic story), [`canvas`],
//! [`text`] and [`colormap`] (drawing), [`format`] (caption placeholders), [`windows`] (window
//! pieces and shift regions).

pub mod canvas;
pub mod colormap;
pub mod compare;
pub mod format;
pub mod mechanism;
pub mod panels;
pub mod renderer;
pub mod story;
pub mod template;
pub mod text;
pub mod timeline;
pub mod windows;

use std::path::Path;

use image::RgbImage;

pub use compare::Comparison;
pub use renderer::Renderer;
pub use story::{input_image, ClassMap, Story};
pub use template::{Mode, Order, Template};
pub use timeline::{Beat, Moment, Timeline};

use crate::encode::{self, EncodeOptions, FrameRate, OutputFormat};
use crate::error::{Error, Result};
use crate::explain::ExplainOptions;
use crate::model::Model;
use crate::output::write_atomically;
use crate::rollout::RolloutOptions;

/// What a template draws: one story, or a compare template's two.
#[derive(Debug)]
pub enum Stories {
    /// One model's (or trace's, or the schematic's) story.
    One(Box<Story>),
    /// Two models' stories of one image, the first drawn on the left.
    Two(Box<[Story; 2]>),
}

impl Stories {
    /// The stories of `image` through `models` for `template`: one model, or two for a compare
    /// template (see [`Story::for_template`]).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when the number of models is not the template's, and as
    /// [`Story::for_template`].
    pub fn for_template(
        models: &[&Model],
        image: &RgbImage,
        template: &Template,
        options: &RolloutOptions,
        explain: &ExplainOptions,
    ) -> Result<Stories> {
        let story = |model: &Model| Story::for_template(model, image, template, options, explain);
        match (template.mode == Mode::Compare, models) {
            (false, [model]) => Ok(Stories::One(Box::new(story(model)?))),
            (true, [a, b]) => Ok(Stories::Two(Box::new([story(a)?, story(b)?]))),
            (compare, _) => Err(Error::InvalidArgument(format!(
                "template '{}' shows {}, not {}",
                template.name,
                if compare {
                    "two models side by side"
                } else {
                    "one model"
                },
                models.len()
            ))),
        }
    }

    /// The frames `template` makes of them: a [`Renderer`] of one story, a [`Comparison`] of two.
    ///
    /// # Errors
    /// As [`Renderer::new`] and [`Comparison::new`].
    pub fn frames<'a>(&'a self, template: &'a Template) -> Result<Box<dyn Frames + 'a>> {
        Ok(match self {
            Stories::One(story) => Box::new(Renderer::new(story, template)?),
            Stories::Two(pair) => Box::new(Comparison::new(&pair[0], &pair[1], template)?),
        })
    }
}

/// The frame of `template` at time `seconds` (clamped to the video); for a figure template,
/// its single frame.
///
/// # Errors
/// As [`Renderer::new`].
pub fn still(story: &Story, template: &Template, seconds: f64) -> Result<RgbImage> {
    Renderer::new(story, template)?.frame_at(seconds)
}

/// A video's frames by index, each a pure function of it: what [`write_video`] encodes.
pub trait Frames: Sync {
    /// Number of frames.
    fn frame_count(&self) -> usize;
    /// Frames per second.
    fn fps(&self) -> u32;
    /// Frame width and height.
    fn size(&self) -> (u32, u32);
    /// Frame `index`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an index past the last frame.
    fn frame(&self, index: usize) -> Result<RgbImage>;

    /// The frame at time `seconds`, clamped to the video (the one frame of a still).
    ///
    /// # Errors
    /// As [`Frames::frame`].
    fn frame_at(&self, seconds: f64) -> Result<RgbImage> {
        let f = (seconds.max(0.0) * f64::from(self.fps()) + 1e-9).floor() as usize;
        self.frame(f.min(self.frame_count().saturating_sub(1)))
    }
}

impl Frames for Renderer<'_> {
    fn frame_count(&self) -> usize {
        Renderer::frame_count(self)
    }

    fn fps(&self) -> u32 {
        Renderer::fps(self)
    }

    fn size(&self) -> (u32, u32) {
        Renderer::size(self)
    }

    fn frame(&self, index: usize) -> Result<RgbImage> {
        Renderer::frame(self, index)
    }
}

/// Renders every frame of `renderer` into `output` — `.mp4`, `.gif`, or an existing folder of
/// PNG frames (see [`OutputFormat::from_path`]) — in parallel, streamed to the encoder, with
/// nothing at `output` unless every frame made it (PNG folders excepted).
///
/// `check` runs before each frame and stops the render with its error (Ctrl-C in the CLI,
/// `KeyboardInterrupt` in Python); `progress` is called once per frame written.
///
/// # Errors
/// As [`OutputFormat::from_path`], [`encode::open`] and [`Renderer::frame`], or `check`'s error.
pub fn write_video(
    renderer: &dyn Frames,
    output: &Path,
    encoder: &EncodeOptions,
    check: &(dyn Fn() -> Result<()> + Sync),
    progress: Option<&(dyn Fn() + Sync)>,
) -> Result<()> {
    let format = OutputFormat::from_path(output)?;
    let (width, height) = renderer.size();
    let fps = FrameRate::new(renderer.fps(), 1)?;
    let sink = encode::open(output, format, width, height, fps, encoder)?;
    encode::render_to(
        sink,
        renderer.frame_count(),
        |i| {
            check()?;
            renderer.frame(i)
        },
        progress,
    )
}

/// Writes the frame of `template` at `seconds` (see [`still`]) to `output` as a PNG, atomically.
///
/// # Errors
/// As [`still`], or [`Error::Output`] naming `output` if it cannot be written.
pub fn write_still(story: &Story, template: &Template, seconds: f64, output: &Path) -> Result<()> {
    write_png(&still(story, template, seconds)?, output)
}

/// Writes `frame` to `output` as a PNG, atomically.
///
/// # Errors
/// [`Error::Output`] naming `output` if it cannot be written.
pub fn write_png(frame: &RgbImage, output: &Path) -> Result<()> {
    write_atomically(output, |out| {
        frame
            .write_to(out, image::ImageFormat::Png)
            .map_err(|e| Error::Output(format!("{}: {e}", output.display())))
    })
}
