//! Turning rendered frames into a file: an MP4 (H.264), an animated GIF, or a folder of
//! numbered PNGs, all behind one streaming API.
//!
//! ```no_run
//! use std::path::Path;
//! use swin_rollout::encode::{self, EncodeOptions, FrameRate, OutputFormat};
//!
//! # fn main() -> swin_rollout::Result<()> {
//! let path = Path::new("clip.mp4");
//! let format = OutputFormat::from_path(path)?;
//! let sink = encode::open(path, format, 640, 360, FrameRate::new(30, 1)?, &EncodeOptions::default())?;
//! // Two seconds of a red ramp, rendered in parallel and encoded in order.
//! encode::render_to(sink, 60, |i| Ok(image::RgbImage::from_pixel(640, 360, image::Rgb([(i * 4) as u8, 0, 0]))), None)?;
//! # Ok(()) }
//! ```
//!
//! Every output appears whole or not at all, like the rest of the crate's outputs (see
//! [`crate::output`]): MP4 and GIF are written to a temporary file beside the target and renamed
//! into place by [`FrameSink::finish`]; a sink dropped without `finish` (an error, a panic, or a
//! render closure that stops early because the user pressed Ctrl-C) deletes its temporary file.
//! The library installs no signal handler: a caller that wants a clean Ctrl-C makes its render
//! closure return an error once interrupted, and [`render_to`] drops the sink. Missing folders
//! are never created.

mod gif;
#[cfg(feature = "video")]
mod mp4;
mod png;
#[cfg(feature = "video")]
mod yuv;

use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::sync::mpsc;

use image::RgbImage;
use rayon::prelude::*;

use crate::error::{Error, Result};

pub use png::frame_file_name;
#[cfg(feature = "video")]
pub use yuv::Yuv420Converter;

/// A destination for video frames, pushed one at a time in display order.
///
/// Sinks are `Send` so that [`render_to`] can encode on one thread while rayon renders the next
/// frames on the others.
pub trait FrameSink: Send {
    /// Appends `frame`, which must have the size the sink was opened with.
    fn push(&mut self, frame: &RgbImage) -> Result<()>;

    /// Flushes the encoder and moves the finished file into place. Until this returns `Ok`,
    /// nothing exists at the output path (PNG folders excepted: each frame appears as it is
    /// pushed). Fails if no frame was pushed.
    fn finish(self: Box<Self>) -> Result<()>;
}

/// The kind of output file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    /// H.264 in MP4 (yuv420p, BT.709, `+faststart`): plays in browsers, PowerPoint and Keynote.
    Mp4,
    /// Animated GIF with one 256-colour palette for the whole clip, looping forever.
    Gif,
    /// A folder (which must exist) of `frame_00000.png`, `frame_00001.png`, …
    PngFrames,
}

impl OutputFormat {
    /// Chooses the format from `path`: a `.mp4` or `.gif` extension (any case), or an existing
    /// folder for PNG frames. Anything else is an error that lists the choices.
    pub fn from_path(path: &Path) -> Result<Self> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("mp4") => Ok(OutputFormat::Mp4),
            Some("gif") => Ok(OutputFormat::Gif),
            _ if path.is_dir() => Ok(OutputFormat::PngFrames),
            None => Err(Error::Output(format!(
                "{}: no such folder for PNG frames; create it first, or give a file name ending \
                 in .mp4 or .gif",
                path.display()
            ))),
            Some(other) => Err(Error::InvalidArgument(format!(
                "{}: unknown video format .{other}; use .mp4, .gif or an existing folder for PNG \
                 frames",
                path.display()
            ))),
        }
    }
}

/// A frame rate as an exact fraction `num/den` frames per second (e.g. 30000/1001 for NTSC's
/// 29.97), so that frame timestamps never drift.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameRate {
    num: u32,
    den: u32,
}

impl FrameRate {
    /// `num/den` frames per second, reduced to lowest terms. Both must be positive and fit in an
    /// `i32` (FFmpeg's rationals are signed 32-bit).
    pub fn new(num: u32, den: u32) -> Result<Self> {
        if num == 0 || den == 0 || num > i32::MAX as u32 || den > i32::MAX as u32 {
            return Err(Error::InvalidArgument(format!(
                "frame rate {num}/{den} is out of range; give a positive rate such as 30 or \
                 30000/1001"
            )));
        }
        let g = gcd(u64::from(num), u64::from(den)) as u32;
        Ok(FrameRate {
            num: num / g,
            den: den / g,
        })
    }

    /// Numerator (frames).
    pub fn num(self) -> u32 {
        self.num
    }

    /// Denominator (seconds).
    pub fn den(self) -> u32 {
        self.den
    }

    /// Frames per second as a float, for display.
    pub fn as_f64(self) -> f64 {
        f64::from(self.num) / f64::from(self.den)
    }
}

/// Greatest common divisor (Euclid).
pub(crate) fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

impl FromStr for FrameRate {
    type Err = Error;

    /// Parses `30` or `30000/1001`.
    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            Error::InvalidArgument(format!(
                "frame rate {s:?} is not a number; give e.g. 30 or 30000/1001"
            ))
        };
        let (num, den) = match s.trim().split_once('/') {
            Some((n, d)) => (n.trim(), d.trim()),
            None => (s.trim(), "1"),
        };
        FrameRate::new(
            num.parse().map_err(|_| bad())?,
            den.parse().map_err(|_| bad())?,
        )
    }
}

impl fmt::Display for FrameRate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.den == 1 {
            write!(f, "{}", self.num)
        } else {
            write!(f, "{}/{}", self.num, self.den)
        }
    }
}

/// The x264 presets, fastest first.
pub const X264_PRESETS: [&str; 10] = [
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
    "placebo",
];

/// Encoder settings. Only MP4 uses them; GIF and PNG ignore them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncodeOptions {
    /// x264 preset, one of [`X264_PRESETS`]. Default `"veryfast"`: on explainer content (a still
    /// picture under a moving heat map) slower presets shrink the file a little at the same CRF
    /// but cost several times the encoding time.
    pub preset: String,
    /// x264 constant rate factor, 0 (lossless) to 51. Default 18, visually lossless for this
    /// kind of content.
    pub crf: u8,
    /// x264 thread count. Default 8. It is fixed rather than "auto" because x264's output
    /// depends on its thread count: with a fixed count the same frames give the same bytes
    /// whatever the machine's number of cores or rayon's thread count (for the same FFmpeg and
    /// x264 versions, whose names and settings the file records).
    pub encoder_threads: usize,
}

impl Default for EncodeOptions {
    fn default() -> Self {
        EncodeOptions {
            preset: "veryfast".to_string(),
            crf: 18,
            encoder_threads: 8,
        }
    }
}

impl EncodeOptions {
    fn validate(&self) -> Result<()> {
        if !X264_PRESETS.contains(&self.preset.as_str()) {
            return Err(Error::InvalidArgument(format!(
                "unknown x264 preset {:?}; use one of {}",
                self.preset,
                X264_PRESETS.join(", ")
            )));
        }
        if self.crf > 51 {
            return Err(Error::InvalidArgument(format!(
                "CRF {} is out of range; use 0 (lossless) to 51 (18 is visually lossless)",
                self.crf
            )));
        }
        if self.encoder_threads == 0 || self.encoder_threads > 64 {
            return Err(Error::InvalidArgument(format!(
                "encoder thread count {} is out of range; use 1 to 64",
                self.encoder_threads
            )));
        }
        Ok(())
    }
}

/// Opens a sink that writes `width`×`height` frames at `fps` to `path` in `format`.
///
/// MP4 needs even dimensions (4:2:0 chroma covers 2×2 pixels); an odd size is an
/// [`Error::InvalidArgument`] naming it rather than a silent crop or pad, so the pixels in the
/// file are exactly the frames pushed. For MP4 and GIF the folder of `path` must exist; for PNG
/// frames `path` itself must be an existing folder. Nothing is created until the first write, and
/// MP4 and GIF outputs appear only when [`FrameSink::finish`] succeeds.
pub fn open(
    path: &Path,
    format: OutputFormat,
    width: u32,
    height: u32,
    fps: FrameRate,
    options: &EncodeOptions,
) -> Result<Box<dyn FrameSink>> {
    if width == 0 || height == 0 {
        return Err(Error::InvalidArgument(format!(
            "{}: frame size {width}x{height} is empty",
            path.display()
        )));
    }
    match format {
        #[cfg(feature = "video")]
        OutputFormat::Mp4 => {
            options.validate()?;
            Ok(Box::new(mp4::Mp4Sink::create(
                path, width, height, fps, options,
            )?))
        }
        #[cfg(not(feature = "video"))]
        OutputFormat::Mp4 => {
            options.validate()?;
            Err(Error::Encode(format!(
                "{}: this build writes no MP4 (it lacks the `video` feature); write a .gif or PNG frames",
                path.display()
            )))
        }
        OutputFormat::Gif => Ok(Box::new(gif::GifSink::create(path, width, height, fps)?)),
        OutputFormat::PngFrames => Ok(Box::new(png::PngSink::create(path, width, height)?)),
    }
}

/// Checks that a pushed frame has the sink's size.
fn check_frame_size(frame: &RgbImage, width: u32, height: u32, path: &Path) -> Result<()> {
    if frame.dimensions() != (width, height) {
        return Err(Error::InvalidArgument(format!(
            "{}: frame is {}x{} but the output was opened for {width}x{height}",
            path.display(),
            frame.width(),
            frame.height()
        )));
    }
    Ok(())
}

/// Renders frames `0..frame_count` with `render` in parallel on the current rayon pool and
/// pushes them to `sink` strictly in order, then finishes the sink.
///
/// Frames are rendered in chunks of `C = 2 × rayon::current_num_threads()` while a separate
/// thread pushes the previous chunk into the sink, so rendering and encoding overlap. At most
/// `3·C` frames are alive at once (one chunk being rendered, one queued, one being pushed), plus
/// the encoder's own lookahead, whatever the video's length.
///
/// The output does not depend on the thread count: frame `i` is always `render(i)` and the sink
/// sees frames in index order. On the first error (the lowest failing frame index, or a sink
/// error) nothing more is rendered, the sink is dropped without `finish` (so no output file
/// appears) and the error is returned. `progress`, if given, is called once per pushed frame
/// (from the writing thread), so a caller can drive a progress bar of its own.
pub fn render_to<F>(
    sink: Box<dyn FrameSink>,
    frame_count: usize,
    render: F,
    progress: Option<&(dyn Fn() + Sync)>,
) -> Result<()>
where
    F: Fn(usize) -> Result<RgbImage> + Sync,
{
    let chunk = 2 * rayon::current_num_threads().max(1);
    // Capacity 1: the producer may run one chunk ahead of the writer, no more.
    let (tx, rx) = mpsc::sync_channel::<Vec<RgbImage>>(1);
    std::thread::scope(|scope| {
        let writer = scope.spawn(move || -> Result<Box<dyn FrameSink>> {
            let mut sink = sink;
            for frames in rx {
                for frame in &frames {
                    sink.push(frame)?;
                    if let Some(tick) = progress {
                        tick();
                    }
                }
            }
            // The sink goes back to the caller, who finishes it only if rendering succeeded too.
            Ok(sink)
        });

        let mut rendered = Ok(());
        let mut start = 0;
        while start < frame_count {
            let end = (start + chunk).min(frame_count);
            // Collect every result, then take the first error in frame order, so the error
            // reported does not depend on which thread failed first.
            let results: Vec<Result<RgbImage>> =
                (start..end).into_par_iter().map(&render).collect();
            let frames: Result<Vec<RgbImage>> = results.into_iter().collect();
            match frames {
                Ok(frames) => {
                    if tx.send(frames).is_err() {
                        // The writer stopped on an error; it is reported below.
                        break;
                    }
                }
                Err(e) => {
                    rendered = Err(e);
                    break;
                }
            }
            start = end;
        }
        drop(tx);

        let written = match writer.join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        // A render error comes first: a writer error after it would only be a consequence.
        rendered?;
        written?.finish()
    })
}
