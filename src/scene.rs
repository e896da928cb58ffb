//! "Cluttered Fashion-MNIST" scenes: a Rust port of `tools/scenes.py`, the generator the default
//! model was trained on, so the benchmark can make fresh held-out scenes without Python.
//!
//! A scene is a 224×224 RGB image holding ONE Fashion-MNIST item (scaled 2–4×, tinted, fully
//! inside the canvas) on a textured, noisy background with 4–8 dim fragments of other items.
//! Along with the image come the item's class, its pixel mask and its tight bounding box. The
//! algorithm, the order of the draws and every distribution are those of `tools/scenes.py`
//! (its module docstring is the specification); the random numbers are not. Python uses NumPy's
//! PCG64 seeded with `SeedSequence([S, i])`; this port uses its own small generator ([`Rng`],
//! xoshiro256++ seeded through SplitMix64 from (S, i)), so a Rust scene is **not** the
//! bit-identical twin of the Python scene with the same seed and index — it is an independent
//! draw from the same distribution. Glyph resizing uses [`crate::preprocess::resize`], which
//! matches Pillow's BILINEAR exactly, as the Python generator uses Pillow.
//!
//! Source data: Debian's `dataset-fashion-mnist` package, gzip-compressed idx files in
//! `/usr/share/datasets/fashion-mnist/` ([`DEFAULT_DATA_DIR`]), or wherever the environment
//! variable [`DATA_DIR_VAR`] (`SWIN_ROLLOUT_FASHION_MNIST`) points. Training scenes come from
//! the 60 000 `train-*` images, held-out scenes (all the benchmark uses) from the 10 000 `t10k-*`
//! images; a scene's item and its clutter come from the same split.

use std::io::Read;
use std::path::{Path, PathBuf};

use image::{Rgb, RgbImage};

use crate::error::{Error, Result};
use crate::preprocess::{resize, Filter};
pub use crate::rng::Rng;

/// Side of the square scene canvas in pixels.
pub const CANVAS: usize = 224;

/// Side of a Fashion-MNIST glyph in pixels.
pub const GLYPH: usize = 28;

/// Resized item intensity above which a pixel belongs to the item's mask (of 255).
pub const MASK_THRESHOLD: f32 = 64.0;

/// The Fashion-MNIST classes, by label index.
pub const CLASS_NAMES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

/// Where Debian's `dataset-fashion-mnist` package installs the data.
pub const DEFAULT_DATA_DIR: &str = "/usr/share/datasets/fashion-mnist";

/// Environment variable that, when set, replaces [`DEFAULT_DATA_DIR`] as the folder holding the
/// four `*-ubyte.gz` files.
pub const DATA_DIR_VAR: &str = "SWIN_ROLLOUT_FASHION_MNIST";

/// Which Fashion-MNIST images a scene draws from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// The 60 000 training images (`train-*`), which the default model was trained on.
    Train,
    /// The 10 000 test images (`t10k-*`): held-out scenes.
    Test,
}

impl Split {
    fn prefix(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "t10k",
        }
    }
}

/// One generated scene.
#[derive(Debug, Clone, PartialEq)]
pub struct Scene {
    /// The 224×224 RGB image.
    pub image: RgbImage,
    /// The item's class, 0..10 (names in [`CLASS_NAMES`]).
    pub label: usize,
    /// Tight bounding box of `mask` in canvas pixels, `(x0, y0, x1, y1)` with exclusive ends.
    pub bbox: (usize, usize, usize, usize),
    /// 224×224 row-major (`mask[y·224 + x]`): where the resized item's intensity exceeds
    /// [`MASK_THRESHOLD`].
    pub mask: Vec<bool>,
}

impl Scene {
    /// Whether canvas pixel (x, y) lies inside the bounding box.
    pub fn in_bbox(&self, x: usize, y: usize) -> bool {
        let (x0, y0, x1, y1) = self.bbox;
        (x0..x1).contains(&x) && (y0..y1).contains(&y)
    }

    /// Share of the canvas covered by the mask.
    pub fn mask_fraction(&self) -> f64 {
        self.mask.iter().filter(|&&m| m).count() as f64 / self.mask.len() as f64
    }
}

/// Fashion-MNIST images and labels of one split, ready to make scenes from.
#[derive(Debug, Clone)]
pub struct SceneSource {
    split: Split,
    /// `count × 28 × 28` glyphs, row-major.
    images: Vec<u8>,
    labels: Vec<u8>,
}

impl SceneSource {
    /// Reads `split` from the folder named by [`DATA_DIR_VAR`], else [`DEFAULT_DATA_DIR`].
    ///
    /// # Errors
    /// A missing file is reported with its path and how to install the data; a malformed
    /// file with its path and what is wrong.
    pub fn load(split: Split) -> Result<Self> {
        Self::load_from(&data_dir(), split)
    }

    /// Reads `split` from the idx files in `dir`.
    ///
    /// # Errors
    /// As [`SceneSource::load`].
    pub fn load_from(dir: &Path, split: Split) -> Result<Self> {
        let p = split.prefix();
        let images_path = dir.join(format!("{p}-images-idx3-ubyte.gz"));
        let labels_path = dir.join(format!("{p}-labels-idx1-ubyte.gz"));
        let (image_dims, images) = read_idx(&images_path, 3)?;
        let (label_dims, labels) = read_idx(&labels_path, 1)?;
        if image_dims[1..] != [GLYPH, GLYPH] {
            return Err(malformed(
                &images_path,
                &format!(
                    "images are {}×{}, expected 28×28",
                    image_dims[1], image_dims[2]
                ),
            ));
        }
        if label_dims[0] != image_dims[0] || image_dims[0] == 0 {
            return Err(malformed(
                &labels_path,
                &format!(
                    "{} labels for {} images; they must match and be non-zero",
                    label_dims[0], image_dims[0]
                ),
            ));
        }
        if let Some(bad) = labels
            .iter()
            .find(|&&l| usize::from(l) >= CLASS_NAMES.len())
        {
            return Err(malformed(
                &labels_path,
                &format!("label {bad} is not in 0..10"),
            ));
        }
        Ok(SceneSource {
            split,
            images,
            labels,
        })
    }

    /// The split the images come from.
    pub fn split(&self) -> Split {
        self.split
    }

    /// Number of source images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no source images (never true for a loaded source).
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Scene `index` of the scene set with base seed `seed`. Each scene has its own random
    /// stream derived from (seed, index), so scenes do not depend on each other or on the
    /// order (or the threads) they are made in.
    pub fn scene(&self, seed: u64, index: u64) -> Scene {
        make_scene(&mut Rng::for_stream(seed, index, 0), self)
    }

    fn glyph(&self, k: usize) -> &[u8] {
        &self.images[k * GLYPH * GLYPH..(k + 1) * GLYPH * GLYPH]
    }
}

/// The data folder: [`DATA_DIR_VAR`] if set and non-empty, else [`DEFAULT_DATA_DIR`].
pub fn data_dir() -> PathBuf {
    match std::env::var_os(DATA_DIR_VAR) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from(DEFAULT_DATA_DIR),
    }
}

fn malformed(path: &Path, what: &str) -> Error {
    Error::Input(format!(
        "{}: not a Fashion-MNIST idx file ({what}); reinstall it with `apt-get install --reinstall dataset-fashion-mnist`",
        path.display()
    ))
}

/// Reads a gzip-compressed idx file with `ndim` dimensions of unsigned bytes.
fn read_idx(path: &Path, ndim: usize) -> Result<(Vec<usize>, Vec<u8>)> {
    let file = std::fs::File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::Input(format!(
            "Fashion-MNIST is missing: {} does not exist; install it with `apt-get install dataset-fashion-mnist` (tools/setup.sh does), or set {DATA_DIR_VAR} to a folder holding the *-ubyte.gz files",
            path.display()
        )),
        _ => Error::io(path, e),
    })?;
    let mut data = Vec::new();
    flate2::read::GzDecoder::new(file)
        .read_to_end(&mut data)
        .map_err(|e| malformed(path, &format!("gzip: {}", crate::error::reason(&e))))?;
    let header = 4 + 4 * ndim;
    // Magic: two zero bytes, type 0x08 (unsigned byte), number of dimensions.
    if data.len() < header || data[..3] != [0, 0, 8] || usize::from(data[3]) != ndim {
        return Err(malformed(
            path,
            &format!("expected an unsigned-byte idx header with {ndim} dimensions"),
        ));
    }
    let dims: Vec<usize> = (0..ndim)
        .map(|i| {
            let b = &data[4 + 4 * i..8 + 4 * i];
            u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize
        })
        .collect();
    let count: usize = dims.iter().product();
    if data.len() - header != count {
        return Err(malformed(
            path,
            &format!(
                "the header promises {count} bytes of data, the file holds {}",
                data.len() - header
            ),
        ));
    }
    data.drain(..header);
    Ok((dims, data))
}

/// Tint colour: three draws of U{64..255}, rescaled so the largest channel is 255.
fn tint(rng: &mut Rng) -> [f32; 3] {
    let c: [f64; 3] = std::array::from_fn(|_| rng.int_inclusive(64, 255) as f64);
    let max = c[0].max(c[1]).max(c[2]);
    c.map(|v| (v * 255.0 / max) as f32)
}

/// Resizes a grey glyph (or crop) of `w0 × h0` to `w × h` with Pillow's BILINEAR filter,
/// returning float intensities. The crate's resize works on RGB, so the glyph is replicated
/// into three identical channels and one is read back: Pillow resamples every channel alike.
fn resize_glyph(grey: &[u8], w0: usize, h0: usize, w: usize, h: usize) -> Vec<f32> {
    let rgb = RgbImage::from_fn(w0 as u32, h0 as u32, |x, y| {
        let v = grey[y as usize * w0 + x as usize];
        Rgb([v, v, v])
    });
    resize(&rgb, w, h, Filter::Bilinear)
        .pixels()
        .map(|p| f32::from(p[0]))
        .collect()
}

/// Bilinear upsampling of an 8×8×3 grid to the canvas, half-pixel centres, clamped edges.
fn upsample_grid(g: &[f32]) -> Vec<f32> {
    const N: usize = 8;
    let taps: Vec<(usize, usize, f32)> = (0..CANVAS)
        .map(|x| {
            let u = ((x as f64 + 0.5) * N as f64 / CANVAS as f64 - 0.5).clamp(0.0, (N - 1) as f64);
            let i0 = u.floor() as usize;
            (i0, (i0 + 1).min(N - 1), (u - i0 as f64) as f32)
        })
        .collect();
    let mut out = vec![0f32; CANVAS * CANVAS * 3];
    for (y, &(y0, y1, ty)) in taps.iter().enumerate() {
        for (x, &(x0, x1, tx)) in taps.iter().enumerate() {
            for c in 0..3 {
                let at = |yy: usize, xx: usize| g[(yy * N + xx) * 3 + c];
                let left = at(y0, x0) * (1.0 - ty) + at(y1, x0) * ty;
                let right = at(y0, x1) * (1.0 - ty) + at(y1, x1) * ty;
                out[(y * CANVAS + x) * 3 + c] = left * (1.0 - tx) + right * tx;
            }
        }
    }
    out
}

/// Alpha-composites a `w × h` intensity patch at (x, y) (may overhang the canvas) in `colour`
/// with `opacity`: alpha = opacity·I/255, canvas = (1 − alpha)·canvas + alpha·colour.
fn composite(
    canvas: &mut [f32],
    (inten, w, h): (&[f32], usize, usize),
    (x, y): (i64, i64),
    colour: [f32; 3],
    opacity: f64,
) {
    let c = CANVAS as i64;
    let (xa, ya) = (x.max(0), y.max(0));
    let (xb, yb) = ((x + w as i64).min(c), (y + h as i64).min(c));
    let scale = (opacity / 255.0) as f32;
    for cy in ya..yb {
        for cx in xa..xb {
            let a = scale * inten[(cy - y) as usize * w + (cx - x) as usize];
            let px = &mut canvas[(cy as usize * CANVAS + cx as usize) * 3..][..3];
            for (v, &col) in px.iter_mut().zip(&colour) {
                *v = (1.0 - a) * *v + a * col;
            }
        }
    }
}

/// Generates one scene, drawing from `rng` in the specification's order (steps 1–11 of
/// `tools/scenes.py`).
fn make_scene(rng: &mut Rng, src: &SceneSource) -> Scene {
    const C: i64 = CANVAS as i64;
    let n_src = src.len() as u64;
    // 1–4: the main item.
    let k = rng.below(n_src) as usize;
    let s = rng.uniform(2.0, 4.0);
    let size = ((GLYPH as f64 * s).round_ties_even() as i64).clamp(56, 112);
    let x0 = rng.int_inclusive(0, C - size);
    let y0 = rng.int_inclusive(0, C - size);
    let c_main = tint(rng);
    // 5–8: the background.
    let base: [f32; 3] = std::array::from_fn(|_| rng.int_inclusive(0, 79) as f32);
    let amplitude = rng.uniform(0.0, 40.0) as f32;
    let grid: Vec<f32> = (0..8 * 8 * 3).map(|_| rng.unit() as f32).collect();
    let sigma = rng.uniform(0.0, 12.0);
    let texture = upsample_grid(&grid);
    let mut canvas: Vec<f32> = texture
        .iter()
        .enumerate()
        .map(|(i, &t)| base[i % 3] + amplitude * t + (sigma * rng.normal()) as f32)
        .collect();
    // 9: clutter fragments.
    let fragments = rng.int_inclusive(4, 8);
    for _ in 0..fragments {
        let j = rng.below(n_src) as usize;
        let cw = rng.int_inclusive(10, 20) as usize;
        let ch = rng.int_inclusive(10, 20) as usize;
        let cx = rng.int_inclusive(0, (GLYPH - cw) as i64) as usize;
        let cy = rng.int_inclusive(0, (GLYPH - ch) as i64) as usize;
        let fs = rng.uniform(1.0, 2.5);
        let w = (cw as f64 * fs).round_ties_even() as usize;
        let h = (ch as f64 * fs).round_ties_even() as usize;
        let glyph = src.glyph(j);
        let crop: Vec<u8> = (cy..cy + ch)
            .flat_map(|r| glyph[r * GLYPH + cx..r * GLYPH + cx + cw].iter().copied())
            .collect();
        let inten = resize_glyph(&crop, cw, ch, w, h);
        let px = rng.int_inclusive(-((w / 2) as i64), C - 1 - (w / 2) as i64);
        let py = rng.int_inclusive(-((h / 2) as i64), C - 1 - (h / 2) as i64);
        let colour = tint(rng);
        let opacity = rng.uniform(0.25, 0.55);
        composite(&mut canvas, (&inten, w, h), (px, py), colour, opacity);
    }
    // 10: the main item, fully opaque where the glyph is 255.
    let size = size as usize;
    let inten = resize_glyph(src.glyph(k), GLYPH, GLYPH, size, size);
    composite(&mut canvas, (&inten, size, size), (x0, y0), c_main, 1.0);
    // 11: round half to even, as `np.rint`.
    let pixels: Vec<u8> = canvas
        .iter()
        .map(|&v| v.round_ties_even().clamp(0.0, 255.0) as u8)
        .collect();
    let image = RgbImage::from_raw(CANVAS as u32, CANVAS as u32, pixels)
        .unwrap_or_else(|| RgbImage::new(CANVAS as u32, CANVAS as u32));
    // Mask and box: no random draws.
    let (x0, y0) = (x0 as usize, y0 as usize);
    let mut mask = vec![false; CANVAS * CANVAS];
    let (mut bx0, mut by0, mut bx1, mut by1) = (CANVAS, CANVAS, 0, 0);
    for y in 0..size {
        for x in 0..size {
            if inten[y * size + x] > MASK_THRESHOLD {
                let (cx, cy) = (x0 + x, y0 + y);
                mask[cy * CANVAS + cx] = true;
                bx0 = bx0.min(cx);
                by0 = by0.min(cy);
                bx1 = bx1.max(cx + 1);
                by1 = by1.max(cy + 1);
            }
        }
    }
    let bbox = if bx1 > bx0 {
        (bx0, by0, bx1, by1)
    } else {
        (x0, y0, x0 + size, y0 + size)
    };
    Scene {
        image,
        label: usize::from(src.labels[k]),
        bbox,
        mask,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_integers_cover_their_range_evenly() {
        let mut rng = Rng::new(1);
        let mut counts = [0usize; 5];
        for _ in 0..50_000 {
            let v = rng.int_inclusive(-2, 2);
            counts[(v + 2) as usize] += 1;
        }
        for c in counts {
            assert!((9_000..11_000).contains(&c), "{counts:?}");
        }
    }

    #[test]
    fn normals_have_unit_variance() {
        let mut rng = Rng::new(7);
        let n = 100_000;
        let z: Vec<f64> = (0..n).map(|_| rng.normal()).collect();
        let mean = z.iter().sum::<f64>() / n as f64;
        let var = z.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n as f64;
        assert!(mean.abs() < 0.02, "{mean}");
        assert!((var - 1.0).abs() < 0.03, "{var}");
    }

    #[test]
    fn streams_differ() {
        let a = Rng::for_stream(1, 0, 0).next_u64();
        let b = Rng::for_stream(1, 1, 0).next_u64();
        let c = Rng::for_stream(2, 0, 0).next_u64();
        let d = Rng::for_stream(1, 0, 1).next_u64();
        assert!(a != b && a != c && b != c && a != d);
    }

    #[test]
    fn flat_grid_upsamples_flat() {
        let g = vec![0.25f32; 8 * 8 * 3];
        assert!(upsample_grid(&g).iter().all(|&v| (v - 0.25).abs() < 1e-6));
    }
}
