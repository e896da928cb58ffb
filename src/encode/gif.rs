//! Animated GIF output with one palette for the whole clip.
//!
//! FFmpeg's palettegen/paletteuse filters need libavfilter, which this crate does not link, so
//! the GIF is made here with the `gif` crate and `color_quant`'s NeuQuant:
//!
//! * Frames are spooled as raw RGB to an unnamed temporary file beside the output (the OS
//!   deletes it even if the process is killed), so memory stays at one frame however long the
//!   clip, at the cost of `width × height × 3` bytes of disk per frame until `finish`.
//! * At `finish`, one global 256-colour palette is computed from up to 16 frames spread evenly
//!   over the whole clip (colours that appear late, such as a heat map's peak, are included).
//!   A per-frame palette would flicker as it changes from frame to frame. If the sample has at
//!   most 256 distinct colours they become the palette exactly (flat graphics stay exact);
//!   otherwise NeuQuant chooses them.
//! * No dithering: dither noise changes from frame to frame (shimmer) and defeats both LZW and
//!   the changed-rectangle optimisation below.
//! * After the first frame, each frame stores only the rectangle whose palette indices changed
//!   from the previous one, drawn over it (disposal "keep"), which shrinks explainer clips whose
//!   background is still.
//! * Delays are in GIF's 1/100 s units, rounded so that frame `i` starts at
//!   `round(i × 100 / fps)`: no drift over the clip, though single frames may differ by 1/100 s.
//!   Browsers play delays under 2/100 s slowly, so GIF rates above 50 fps are refused.
//! * The animation loops forever.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use color_quant::NeuQuant;
use image::RgbImage;
use rayon::prelude::*;

use super::{check_frame_size, FrameRate, FrameSink};
use crate::error::{Error, Result};
use crate::output::{check_writable, parent_of, temp_file_beside, unwritable};

/// How many frames, spread over the clip, the palette is computed from.
const PALETTE_SAMPLE_FRAMES: usize = 16;
/// At most this many pixels (taken evenly from the sampled frames) train the palette.
const PALETTE_SAMPLE_PIXELS: usize = 1 << 20;
/// Highest frame rate a GIF plays correctly (2/100 s per frame).
const MAX_GIF_FPS: f64 = 50.0;

pub(crate) struct GifSink {
    spool: BufWriter<File>,
    frames: usize,
    width: u32,
    height: u32,
    fps: FrameRate,
    path: PathBuf,
}

impl GifSink {
    pub(crate) fn create(path: &Path, width: u32, height: u32, fps: FrameRate) -> Result<Self> {
        if width > u32::from(u16::MAX) || height > u32::from(u16::MAX) {
            return Err(Error::InvalidArgument(format!(
                "{}: a GIF can be at most 65535x65535 pixels, not {width}x{height}",
                path.display()
            )));
        }
        if fps.as_f64() > MAX_GIF_FPS {
            return Err(Error::InvalidArgument(format!(
                "{}: GIFs play at most 50 frames per second (browsers slow down shorter \
                 delays), not {fps}; lower the frame rate or write an MP4",
                path.display()
            )));
        }
        check_writable(path)?;
        let spool = tempfile::tempfile_in(parent_of(path)).map_err(|e| unwritable(path, &e))?;
        Ok(GifSink {
            spool: BufWriter::new(spool),
            frames: 0,
            width,
            height,
            fps,
            path: path.to_path_buf(),
        })
    }

    fn frame_bytes(&self) -> usize {
        self.width as usize * self.height as usize * 3
    }
}

fn spool_error(path: &Path, e: &std::io::Error) -> Error {
    Error::Encode(format!(
        "{}: cannot use the temporary frame file beside it ({})",
        path.display(),
        crate::error::reason(e)
    ))
}

/// Reads up to [`PALETTE_SAMPLE_FRAMES`] evenly spaced frames of the `frames` in `spool` and
/// returns a sample of their pixels as RGBA (NeuQuant's input format).
fn palette_sample(
    spool: &mut File,
    frames: usize,
    width: usize,
    height: usize,
) -> std::io::Result<Vec<u8>> {
    let n = frames.min(PALETTE_SAMPLE_FRAMES);
    let pixels_per_frame = width * height;
    let per_frame_budget = (PALETTE_SAMPLE_PIXELS / n).max(1);
    // Take every `step`-th pixel; a step sharing no factor with the width walks diagonally
    // across the frame instead of down the same few columns.
    let mut step = pixels_per_frame.div_ceil(per_frame_budget).max(1);
    while step > 1 && super::gcd(step as u64, width as u64) != 1 {
        step += 1;
    }
    let mut frame = vec![0u8; pixels_per_frame * 3];
    let mut sample = Vec::with_capacity(n * pixels_per_frame.div_ceil(step) * 4);
    for k in 0..n {
        let index = k * frames / n;
        spool.seek(SeekFrom::Start((index * frame.len()) as u64))?;
        spool.read_exact(&mut frame)?;
        for px in frame.chunks_exact(3).step_by(step) {
            sample.extend_from_slice(&[px[0], px[1], px[2], 255]);
        }
    }
    Ok(sample)
}

/// A 256-colour palette and the mapping from RGB to its indices.
struct Palette {
    rgb: Vec<u8>,
    exact: HashMap<[u8; 3], u8>,
    quant: Option<NeuQuant>,
}

impl Palette {
    fn from_sample(sample: &[u8]) -> Palette {
        let mut exact = HashMap::new();
        for px in sample.chunks_exact(4) {
            let key = [px[0], px[1], px[2]];
            if !exact.contains_key(&key) {
                if exact.len() == 256 {
                    return Palette::neuquant(sample);
                }
                let next = exact.len() as u8;
                exact.insert(key, next);
            }
        }
        let mut rgb = vec![0u8; exact.len() * 3];
        for (key, &i) in &exact {
            rgb[i as usize * 3..][..3].copy_from_slice(key);
        }
        Palette {
            rgb,
            exact,
            quant: None,
        }
    }

    fn neuquant(sample: &[u8]) -> Palette {
        // samplefac 1 (every sample pixel) is best; larger factors keep training time near
        // 0.1 s for big samples. NeuQuant itself is deterministic.
        let samplefac = (sample.len() / 4).div_ceil(300_000).clamp(1, 10) as i32;
        let quant = NeuQuant::new(samplefac, 256, sample);
        Palette {
            rgb: quant.color_map_rgb(),
            exact: HashMap::new(),
            quant: Some(quant),
        }
    }

    fn index_of(&self, px: &[u8]) -> u8 {
        if let Some(quant) = &self.quant {
            return quant.index_of(&[px[0], px[1], px[2], 255]) as u8;
        }
        if let Some(&i) = self.exact.get(&[px[0], px[1], px[2]]) {
            return i;
        }
        // A colour absent from the sampled frames: the nearest palette entry.
        let distance = |c: &[u8]| -> i32 {
            (0..3)
                .map(|k| (i32::from(c[k]) - i32::from(px[k])).pow(2))
                .sum()
        };
        self.rgb
            .chunks_exact(3)
            .enumerate()
            .min_by_key(|(_, c)| distance(c))
            .map_or(0, |(i, _)| i as u8)
    }
}

/// The smallest rectangle `(left, top, width, height)` containing every index that differs
/// between `prev` and `next`, or `None` if none does.
fn changed_rect(prev: &[u8], next: &[u8], width: usize) -> Option<(usize, usize, usize, usize)> {
    let rows_changed = |(a, b): (&[u8], &[u8])| a != b;
    let rows = prev.chunks_exact(width).zip(next.chunks_exact(width));
    let top = rows.clone().position(rows_changed)?;
    let bottom = rows.len() - 1 - rows.clone().rev().position(rows_changed)?;
    let (mut left, mut right) = (width, 0);
    for (a, b) in prev
        .chunks_exact(width)
        .zip(next.chunks_exact(width))
        .take(bottom + 1)
        .skip(top)
    {
        if let Some(l) = a.iter().zip(b).position(|(x, y)| x != y) {
            left = left.min(l);
            let r = width - 1 - a.iter().zip(b).rev().position(|(x, y)| x != y).unwrap_or(0);
            right = right.max(r);
        }
    }
    Some((left, top, right + 1 - left, bottom + 1 - top))
}

impl FrameSink for GifSink {
    fn push(&mut self, frame: &RgbImage) -> Result<()> {
        check_frame_size(frame, self.width, self.height, &self.path)?;
        let written = self.spool.write_all(frame.as_raw());
        written.map_err(|e| spool_error(&self.path, &e))?;
        self.frames += 1;
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<()> {
        let frame_bytes = self.frame_bytes();
        let GifSink {
            spool,
            frames,
            width,
            height,
            fps,
            path,
        } = *self;
        if frames == 0 {
            return Err(Error::InvalidArgument(format!(
                "{}: no frames to write",
                path.display()
            )));
        }
        let mut spool = spool
            .into_inner()
            .map_err(|e| spool_error(&path, e.error()))?;
        let sample = palette_sample(&mut spool, frames, width as usize, height as usize)
            .map_err(|e| spool_error(&path, &e))?;
        let palette = Palette::from_sample(&sample);
        drop(sample);

        let gif_error = |e: gif::EncodingError| {
            Error::Encode(format!("{}: cannot write the GIF ({e})", path.display()))
        };
        let mut out = temp_file_beside(&path, ".gif.part")?;
        {
            // Sizes were checked to fit u16 in `create`.
            let mut encoder = gif::Encoder::new(
                BufWriter::new(&mut out),
                width as u16,
                height as u16,
                &palette.rgb,
            )
            .map_err(gif_error)?;
            encoder
                .set_repeat(gif::Repeat::Infinite)
                .map_err(gif_error)?;

            spool
                .seek(SeekFrom::Start(0))
                .map_err(|e| spool_error(&path, &e))?;
            let mut reader = BufReader::new(&mut spool);
            let width = width as usize;
            let mut rgb = vec![0u8; frame_bytes];
            let mut previous: Option<Vec<u8>> = None;
            let (num, den) = (u128::from(fps.num()), u128::from(fps.den()));
            // Start of frame i in 1/100 s, rounded to nearest (u128: no overflow for any rate).
            let start = |i: u128| (i * 200 * den + num) / (2 * num);
            for i in 0..frames as u128 {
                reader
                    .read_exact(&mut rgb)
                    .map_err(|e| spool_error(&path, &e))?;
                // Rows in parallel; each pixel's index depends only on the pixel, so the result
                // does not depend on the thread count.
                let indices: Vec<u8> = rgb
                    .par_chunks(3 * width)
                    .flat_map_iter(|row| row.chunks_exact(3).map(|px| palette.index_of(px)))
                    .collect();
                let delay = (start(i + 1) - start(i)).min(u128::from(u16::MAX)) as u16;
                let (left, top, w, h) = match &previous {
                    None => (0, 0, width, height as usize),
                    // Nothing changed: a single unchanged pixel still carries the delay.
                    Some(prev) => changed_rect(prev, &indices, width).unwrap_or((0, 0, 1, 1)),
                };
                let buffer: Vec<u8> = indices
                    .chunks_exact(width)
                    .skip(top)
                    .take(h)
                    .flat_map(|row| row[left..left + w].iter().copied())
                    .collect();
                let frame = gif::Frame {
                    delay,
                    dispose: gif::DisposalMethod::Keep,
                    left: left as u16,
                    top: top as u16,
                    width: w as u16,
                    height: h as u16,
                    buffer: buffer.into(),
                    ..gif::Frame::default()
                };
                encoder.write_frame(&frame).map_err(gif_error)?;
                previous = Some(indices);
            }
            let mut writer = encoder.into_inner().map_err(gif_error)?;
            writer.flush().map_err(|e| unwritable(&path, &e))?;
        }
        out.persist(&path)
            .map_err(|e| unwritable(&path, &e.error))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changed_rect_finds_the_bounding_box() {
        let prev = vec![0u8; 5 * 4];
        let mut next = prev.clone();
        assert_eq!(changed_rect(&prev, &next, 5), None);
        next[5 + 1] = 1; // (1, 1)
        next[2 * 5 + 3] = 1; // (3, 2)
        assert_eq!(changed_rect(&prev, &next, 5), Some((1, 1, 3, 2)));
    }

    #[test]
    fn few_colours_make_an_exact_palette() {
        let sample = [10, 20, 30, 255, 200, 100, 0, 255, 10, 20, 30, 255];
        let p = Palette::from_sample(&sample);
        assert_eq!(p.rgb.len(), 6);
        assert_eq!(p.index_of(&[10, 20, 30]), 0);
        assert_eq!(p.index_of(&[200, 100, 0]), 1);
        assert_eq!(p.index_of(&[190, 90, 5]), 1);
    }
}
