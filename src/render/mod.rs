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

use std::path::Path;

use image::RgbImage;

pub use renderer::Renderer;
pub use story::{input_image, ClassMap, Story};
pub use template::{Mode, Order, Template};
pub use timeline::{Beat, Moment, Timeline};

use crate::encode::{self, EncodeOptions, FrameRate, OutputFormat};
use crate::error::{Error, Result};
use crate::output::write_atomically;

/// The frame of `template` at time `seconds` (clamped to the video); for a figure template,
/// its single frame.
///
/// # Errors
/// As [`Renderer::new`].
pub fn still(story: &Story, template: &Template, seconds: f64) -> Result<RgbImage> {
    Renderer::new(story, template)?.frame_at(seconds)
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
    renderer: &Renderer,
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
    let frame = still(story, template, seconds)?;
    write_atomically(output, |out| {
        frame
            .write_to(out, image::ImageFormat::Png)
            .map_err(|e| Error::Output(format!("{}: {e}", output.display())))
    })
}
