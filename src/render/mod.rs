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
//! can be rendered on any number of threads, in any order, with identical bytes.
//!
//! Modules, one per concept: [`template`] (TOML templates), [`timeline`] (frame → moment),
//! [`story`] (the data), [`panels`] (the [`Panel`](panels::Panel) seam and every panel: image +
//! windows, schematic grid, matrix, rollout, progress track; the stage and classes figures; the
//! colour scales panels share), [`mechanism`] (the schematic's synthetic story), [`canvas`],
//! [`text`] and [`colormap`] (drawing), [`format`] (caption placeholders), [`windows`] (window
//! pieces and shift regions).

pub mod canvas;
pub mod colormap;
pub mod format;
pub mod mechanism;
pub mod panels;
pub mod renderer;
pub mod story;
pub mod template;
pub mod text;
pub mod timeline;
pub mod windows;

use image::RgbImage;

pub use renderer::Renderer;
pub use story::{input_image, ClassMap, Story};
pub use template::{Mode, Order, Template};
pub use timeline::{Beat, Moment, Timeline};

use crate::error::Result;

/// The frame of `template` at time `seconds` (clamped to the video); for a figure template,
/// its single frame.
///
/// # Errors
/// As [`Renderer::new`].
pub fn still(story: &Story, template: &Template, seconds: f64) -> Result<RgbImage> {
    Renderer::new(story, template)?.frame_at(seconds)
}
