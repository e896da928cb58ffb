//! Image → model input, as the checkpoint's preprocessing says: decode any image the `image`
//! crate reads, convert to 8-bit RGB, resize with Pillow's exact resampling arithmetic (the
//! reference preprocessors resize through Pillow), optionally center-crop, rescale, normalize.

use std::path::Path;

use image::RgbImage;
use serde::Deserialize;

use crate::error::{Error, Result};

/// Resampling filters, with Pillow's definitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    /// Nearest neighbour (Pillow 0).
    Nearest,
    /// Triangle, support 1 (Pillow 2).
    Bilinear,
    /// Keys cubic with a = −0.5, support 2 (Pillow 3).
    Bicubic,
    /// Lanczos-3 (Pillow 1).
    Lanczos,
}

impl Filter {
    /// From Pillow's / HF's `resample` integer.
    pub fn from_pil(code: u32) -> Result<Self> {
        Ok(match code {
            0 => Filter::Nearest,
            1 => Filter::Lanczos,
            2 => Filter::Bilinear,
            3 => Filter::Bicubic,
            other => {
                return Err(Error::Model(format!(
                    "preprocessor_config.json: unsupported `resample` {other} (0 nearest, 1 lanczos, 2 bilinear, 3 bicubic)"
                )))
            }
        })
    }

    fn support(self) -> f64 {
        match self {
            Filter::Nearest => 0.5,
            Filter::Bilinear => 1.0,
            Filter::Bicubic => 2.0,
            Filter::Lanczos => 3.0,
        }
    }

    fn weight(self, x: f64) -> f64 {
        let x = x.abs();
        match self {
            Filter::Nearest => {
                if x < 0.5 {
                    1.0
                } else {
                    0.0
                }
            }
            Filter::Bilinear => (1.0 - x).max(0.0),
            Filter::Bicubic => {
                const A: f64 = -0.5;
                if x < 1.0 {
                    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * A
                } else {
                    0.0
                }
            }
            Filter::Lanczos => {
                let sinc = |x: f64| {
                    if x == 0.0 {
                        1.0
                    } else {
                        let px = x * std::f64::consts::PI;
                        px.sin() / px
                    }
                };
                if x < 3.0 {
                    sinc(x) * sinc(x / 3.0)
                } else {
                    0.0
                }
            }
        }
    }
}

/// How a checkpoint wants its images prepared.
#[derive(Debug, Clone, PartialEq)]
pub struct Preprocessor {
    /// Output height and width in pixels.
    pub size: (usize, usize),
    /// Resampling filter for the resize.
    pub filter: Filter,
    /// timm's `crop_pct`: resize so the crop is this share of the shorter side, then
    /// center-crop; `None` resizes straight to `size` (Hugging Face's ViT processor).
    pub crop_pct: Option<f64>,
    /// Hugging Face's `do_center_crop`: resize straight to this height and width, then take
    /// the centre `size` (DeiT: 256×256, then 224×224).
    pub resize_to: Option<(usize, usize)>,
    /// Factor applied to 8-bit values (1/255).
    pub rescale: f32,
    /// Per-channel mean subtracted after rescaling.
    pub mean: [f32; 3],
    /// Per-channel standard deviation divided by.
    pub std: [f32; 3],
}

/// ImageNet statistics, the default of Swin checkpoints.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet statistics, the default of Swin checkpoints.
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

impl Preprocessor {
    /// Swin's published preprocessing for a `size` input: bicubic resize, ImageNet statistics.
    pub fn imagenet(size: (usize, usize)) -> Self {
        Preprocessor {
            size,
            filter: Filter::Bicubic,
            crop_pct: None,
            resize_to: None,
            rescale: 1.0 / 255.0,
            mean: IMAGENET_MEAN,
            std: IMAGENET_STD,
        }
    }

    /// Parses Hugging Face's `preprocessor_config.json`; `default_size` is the model's input.
    pub fn from_hf_json(text: &str, default_size: (usize, usize)) -> Result<Self> {
        let raw: HfPreprocessor = serde_json::from_str(text)
            .map_err(|e| Error::Model(format!("preprocessor_config.json is malformed: {e}")))?;
        let mut p = Preprocessor::imagenet(default_size);
        let shortest_edge = matches!(
            raw.size,
            Some(HfSize::Map {
                height: None,
                shortest_edge: Some(_),
                ..
            })
        );
        if let Some(size) = &raw.size {
            p.size = size.pair().unwrap_or(default_size);
        }
        let crop = raw.crop_size.as_ref().and_then(HfSize::pair);
        if let (true, Some((ch, cw))) = (raw.do_center_crop.unwrap_or(false), crop) {
            let (h, w) = p.size;
            if ch > h || cw > w {
                return Err(Error::Model(format!(
                    "preprocessor_config.json: `crop_size` {ch}×{cw} is larger than `size` \
                     {h}×{w}; the crop must fit in the resized image"
                )));
            }
            if shortest_edge {
                // Aspect kept, shorter side to `shortest_edge`: timm's crop_pct rule.
                p.crop_pct = Some(ch.max(cw) as f64 / h as f64);
            } else {
                p.resize_to = Some((h, w));
            }
            p.size = (ch, cw);
        }
        if let Some(code) = raw.resample {
            p.filter = Filter::from_pil(code)?;
        }
        p.rescale = match (raw.do_rescale.unwrap_or(true), raw.rescale_factor) {
            (false, _) => 1.0,
            (true, Some(f)) => f as f32,
            (true, None) => 1.0 / 255.0,
        };
        if !raw.do_normalize.unwrap_or(true) {
            p.mean = [0.0; 3];
            p.std = [1.0; 3];
        } else {
            if let Some(m) = raw.image_mean {
                p.mean = triple(&m, "image_mean")?;
            }
            if let Some(s) = raw.image_std {
                p.std = triple(&s, "image_std")?;
            }
        }
        if !raw.do_resize.unwrap_or(true) {
            return Err(Error::Model(
                "preprocessor_config.json: `do_resize: false` is not supported; the model needs a fixed input size".into(),
            ));
        }
        p.validate()?;
        Ok(p)
    }

    fn validate(&self) -> Result<()> {
        if self.size.0 == 0 || self.size.1 == 0 || self.std.contains(&0.0) {
            return Err(Error::Model(
                "preprocessor: size must be positive and `image_std` non-zero".into(),
            ));
        }
        Ok(())
    }

    /// Reads an image file and prepares it: `[3, H, W]` row-major, as the model takes it.
    pub fn load(&self, path: &Path) -> Result<Vec<f32>> {
        Ok(self.apply(&read_rgb(path)?))
    }

    /// Prepares an RGB image: `[3, H, W]` row-major.
    pub fn apply(&self, image: &RgbImage) -> Vec<f32> {
        let (h, w) = self.size;
        let resized = match self.crop_pct {
            None => match self.resize_to {
                None => resize(image, w, h, self.filter),
                Some((rh, rw)) => {
                    // transformers' center_crop: the offsets round down.
                    let (rh, rw) = (rh.max(h), rw.max(w));
                    let r = resize(image, rw, rh, self.filter);
                    let (top, left) = ((rh - h) / 2, (rw - w) / 2);
                    image::imageops::crop_imm(&r, left as u32, top as u32, w as u32, h as u32)
                        .to_image()
                }
            },
            Some(pct) => {
                // timm: scale the shorter side to size/crop_pct, then take the centre.
                let target = ((h.max(w) as f64) / pct).floor() as usize;
                let (iw, ih) = (image.width() as usize, image.height() as usize);
                let (rw, rh) = if iw <= ih {
                    (target, (target * ih) / iw)
                } else {
                    ((target * iw) / ih, target)
                };
                let r = resize(image, rw.max(w), rh.max(h), self.filter);
                let top = ((r.height() as usize - h) as f64 / 2.0).round_ties_even() as u32;
                let left = ((r.width() as usize - w) as f64 / 2.0).round_ties_even() as u32;
                image::imageops::crop_imm(&r, left, top, w as u32, h as u32).to_image()
            }
        };
        let mut out = vec![0f32; 3 * h * w];
        for (i, px) in resized.pixels().enumerate() {
            for c in 0..3 {
                out[c * h * w + i] = (px[c] as f32 * self.rescale - self.mean[c]) / self.std[c];
            }
        }
        out
    }
}

fn triple(v: &[f64], key: &str) -> Result<[f32; 3]> {
    match v {
        [a] => Ok([*a as f32; 3]),
        [a, b, c] => Ok([*a as f32, *b as f32, *c as f32]),
        _ => Err(Error::Model(format!(
            "preprocessor_config.json: `{key}` needs 1 or 3 values, found {}",
            v.len()
        ))),
    }
}

/// File extensions (lower case) that [`image_files`] takes for images.
pub const IMAGE_EXTENSIONS: [&str; 8] = ["png", "jpg", "jpeg", "bmp", "gif", "tif", "tiff", "webp"];

/// The image files directly in `folder` (by extension, any case), sorted by path, so that
/// every process listing the same folder sees the same order (see [`crate::shard`]).
///
/// # Errors
/// [`Error::Io`] if the folder cannot be read; [`Error::InvalidArgument`] if it holds no image.
pub fn image_files(folder: &Path) -> Result<Vec<std::path::PathBuf>> {
    let mut inputs: Vec<_> = std::fs::read_dir(folder)
        .map_err(|e| Error::io(folder, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
        })
        .collect();
    inputs.sort();
    if inputs.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "{} holds no images ({})",
            folder.display(),
            IMAGE_EXTENSIONS.join(", ")
        )));
    }
    Ok(inputs)
}

/// Decodes any image the `image` crate reads and converts it to 8-bit RGB (grey replicated,
/// alpha dropped, 16-bit scaled), as `PIL.Image.convert("RGB")` does.
pub fn read_rgb(path: &Path) -> Result<RgbImage> {
    let bytes = std::fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::Input(format!(
            "image {} does not exist; check the path",
            path.display()
        )),
        _ => Error::io(path, e),
    })?;
    let image = image::load_from_memory(&bytes).map_err(|e| Error::Image {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    Ok(image.to_rgb8())
}

/// Pillow's fixed-point precision for 8-bit resampling.
const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Per output pixel: first input index and fixed-point weights (Pillow's `precompute_coeffs`
/// followed by `normalize_coeffs_8bpc`).
fn coefficients(input: usize, output: usize, filter: Filter) -> Vec<(usize, Vec<i32>)> {
    let scale = input as f64 / output as f64;
    let filterscale = scale.max(1.0);
    let support = filter.support() * filterscale;
    (0..output)
        .map(|i| {
            let center = (i as f64 + 0.5) * scale;
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = ((center + support + 0.5) as i64).min(input as i64) as usize;
            let weights: Vec<f64> = (xmin..xmax)
                .map(|x| filter.weight((x as f64 - center + 0.5) / filterscale))
                .collect();
            let total: f64 = weights.iter().sum();
            let fixed = weights
                .iter()
                .map(|&k| {
                    let k = if total != 0.0 { k / total } else { 0.0 };
                    let v = k * f64::from(1u32 << PRECISION_BITS);
                    (if k < 0.0 { v - 0.5 } else { v + 0.5 }) as i32
                })
                .collect();
            (xmin, fixed)
        })
        .collect()
}

fn clip8(acc: i64) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Resizes like Pillow's `Image.resize(size, filter)` with `reducing_gap=None`: a horizontal
/// then a vertical pass, each rounding to 8 bits.
pub fn resize(image: &RgbImage, width: usize, height: usize, filter: Filter) -> RgbImage {
    let (iw, ih) = (image.width() as usize, image.height() as usize);
    if (iw, ih) == (width, height) {
        return image.clone();
    }
    if filter == Filter::Nearest {
        return image::imageops::resize(
            image,
            width as u32,
            height as u32,
            image::imageops::FilterType::Nearest,
        );
    }
    let src = image.as_raw();
    let half = 1i64 << (PRECISION_BITS - 1);
    let horizontal: Vec<u8> = if iw != width {
        let coeffs = coefficients(iw, width, filter);
        let mut out = vec![0u8; ih * width * 3];
        for y in 0..ih {
            let row = &src[y * iw * 3..(y + 1) * iw * 3];
            for (x, (start, ws)) in coeffs.iter().enumerate() {
                for c in 0..3 {
                    let acc = ws.iter().enumerate().fold(half, |acc, (k, &wt)| {
                        acc + i64::from(row[(start + k) * 3 + c]) * i64::from(wt)
                    });
                    out[(y * width + x) * 3 + c] = clip8(acc);
                }
            }
        }
        out
    } else {
        src.to_vec()
    };
    let vertical = if ih != height {
        let coeffs = coefficients(ih, height, filter);
        let mut out = vec![0u8; height * width * 3];
        for (y, (start, ws)) in coeffs.iter().enumerate() {
            for i in 0..width * 3 {
                let acc = ws.iter().enumerate().fold(half, |acc, (k, &wt)| {
                    acc + i64::from(horizontal[(start + k) * width * 3 + i]) * i64::from(wt)
                });
                out[y * width * 3 + i] = clip8(acc);
            }
        }
        out
    } else {
        horizontal
    };
    RgbImage::from_raw(width as u32, height as u32, vertical)
        .unwrap_or_else(|| RgbImage::new(width as u32, height as u32))
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum HfSize {
    Square(usize),
    Map {
        height: Option<usize>,
        width: Option<usize>,
        shortest_edge: Option<usize>,
    },
}

impl HfSize {
    /// Height and width, where the entry gives them (a shortest edge stands for a square).
    fn pair(&self) -> Option<(usize, usize)> {
        match *self {
            HfSize::Square(n) => Some((n, n)),
            HfSize::Map {
                height: Some(h),
                width: Some(w),
                ..
            } => Some((h, w)),
            HfSize::Map {
                shortest_edge: Some(n),
                ..
            } => Some((n, n)),
            HfSize::Map { .. } => None,
        }
    }
}

#[derive(Debug, Deserialize)]
struct HfPreprocessor {
    do_resize: Option<bool>,
    size: Option<HfSize>,
    resample: Option<u32>,
    do_rescale: Option<bool>,
    rescale_factor: Option<f64>,
    do_normalize: Option<bool>,
    image_mean: Option<Vec<f64>>,
    image_std: Option<Vec<f64>>,
    do_center_crop: Option<bool>,
    crop_size: Option<HfSize>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resize_keeps_a_flat_image_flat() {
        let img = RgbImage::from_pixel(37, 23, image::Rgb([200, 10, 99]));
        for f in [Filter::Bilinear, Filter::Bicubic, Filter::Lanczos] {
            let r = resize(&img, 11, 50, f);
            assert!(r.pixels().all(|p| p.0 == [200, 10, 99]), "{f:?}");
        }
    }

    #[test]
    fn normalization_follows_the_config() {
        let img = RgbImage::from_pixel(4, 4, image::Rgb([255, 0, 128]));
        let p = Preprocessor::imagenet((4, 4));
        let v = p.apply(&img);
        assert!((v[0] - (1.0 - 0.485) / 0.229).abs() < 1e-6);
        assert!((v[16] - (0.0 - 0.456) / 0.224).abs() < 1e-6);
    }
}
