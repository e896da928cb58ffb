//! The layers both Swin versions share: linear and norm loading, the patch embedding, the window
//! partition through the geometry's index image, the shift mask, the patch merge's gather and
//! the head.

use candle_core::{Device, Module, Tensor};
use candle_nn::LayerNorm;

use super::checkpoint::Checkpoint;
use super::config::Config;
use super::kernels::{gather_rows, with_f32, Dense};
use crate::error::{Error, Result};
use crate::geometry::Geometry;

/// `nn.LayerNorm`'s default epsilon, which the reference uses for the patch-embedding and
/// patch-merging norms whatever `layer_norm_eps` says.
pub(super) const TORCH_LAYER_NORM_EPS: f64 = 1e-5;

pub(super) fn linear(
    ck: &Checkpoint,
    prefix: &str,
    inp: usize,
    out: usize,
    bias: bool,
) -> Result<Dense> {
    let w = ck.get(&format!("{prefix}.weight"), &[out, inp])?;
    let b = if bias {
        Some(ck.get(&format!("{prefix}.bias"), &[out])?)
    } else {
        None
    };
    Dense::new(&w, b.as_ref())
}

/// The query, key and value projections under `prefix` (`{prefix}.query.weight`, …) as one
/// fused `dim → 3·dim` projection: a single matrix product instead of three.
pub(super) fn fused_qkv(ck: &Checkpoint, prefix: &str, dim: usize, bias: bool) -> Result<Dense> {
    let parts = ["query", "key", "value"];
    let read = |what: &str, shape: &[usize]| -> Result<Tensor> {
        let parts = parts
            .iter()
            .map(|p| ck.get(&format!("{prefix}.{p}.{what}"), shape))
            .collect::<Result<Vec<_>>>()?;
        Ok(Tensor::cat(&parts, 0)?)
    };
    let weight = read("weight", &[dim, dim])?;
    let bias = bias.then(|| read("bias", &[dim])).transpose()?;
    Dense::new(&weight, bias.as_ref())
}

pub(super) fn layer_norm(ck: &Checkpoint, prefix: &str, dim: usize, eps: f64) -> Result<LayerNorm> {
    Ok(LayerNorm::new(
        ck.get(&format!("{prefix}.weight"), &[dim])?,
        ck.get(&format!("{prefix}.bias"), &[dim])?,
        eps,
    ))
}

/// Non-overlapping patch embedding. A stride-p, kernel-p convolution is exactly a matrix
/// product over flattened patches, which is faster than a generic convolution here.
#[derive(Debug)]
pub(super) struct PatchEmbedding {
    projection: Dense,
    norm: LayerNorm,
    position: Option<Tensor>,
    patch: usize,
    channels: usize,
}

impl PatchEmbedding {
    /// The embedding under `model` (`swin` or `swinv2`, as Hugging Face names the backbone).
    pub(super) fn load(ck: &Checkpoint, c: &Config, model: &str) -> Result<Self> {
        let (p, e, ch) = (c.patch_size, c.embed_dim, c.num_channels);
        let prefix = format!("{model}.embeddings.patch_embeddings.projection");
        let w = ck.get(&format!("{prefix}.weight"), &[e, ch, p, p])?;
        let b = ck.get(&format!("{prefix}.bias"), &[e])?;
        let projection = Dense::new(&w.reshape((e, ch * p * p))?, Some(&b))?;
        let position = if c.use_absolute_embeddings {
            let (h, w) = c.token_grid(c.image_size.0, c.image_size.1);
            Some(ck.get(
                &format!("{model}.embeddings.position_embeddings"),
                &[1, h * w, e],
            )?)
        } else {
            None
        };
        Ok(PatchEmbedding {
            projection,
            norm: layer_norm(
                ck,
                &format!("{model}.embeddings.norm"),
                e,
                TORCH_LAYER_NORM_EPS,
            )?,
            position,
            patch: p,
            channels: ch,
        })
    }

    /// `[B, C, H, W]` pixels → `[B, h·w, E]` tokens and the token grid `(h, w)`.
    pub(super) fn forward(&self, pixels: &Tensor) -> Result<(Tensor, (usize, usize))> {
        let (b, ch, height, width) = pixels.dims4()?;
        if ch != self.channels {
            return Err(Error::InvalidArgument(format!(
                "the model expects {} input channels, got {ch}",
                self.channels
            )));
        }
        let p = self.patch;
        let pixels = pixels
            .pad_with_zeros(3, 0, width.div_ceil(p) * p - width)?
            .pad_with_zeros(2, 0, height.div_ceil(p) * p - height)?;
        let (h, w) = (height.div_ceil(p), width.div_ceil(p));
        let patches = pixels
            .reshape((b, ch, h, p, w, p))?
            .permute((0, 2, 4, 1, 3, 5))?
            .reshape((b * h * w, ch * p * p))?;
        let tokens = self.projection.forward(&patches)?.reshape((b, h * w, ()))?;
        let mut tokens = self.norm.forward(&tokens)?;
        if let Some(pos) = &self.position {
            if pos.dim(1)? != h * w {
                return Err(Error::InvalidArgument(format!(
                    "this model's absolute position embeddings cover {} patches, the input has {}; resize the image to the model's size",
                    pos.dim(1)?,
                    h * w
                )));
            }
            tokens = tokens.broadcast_add(pos)?;
        }
        Ok((tokens, (h, w)))
    }
}

/// Row indices that cut a batch of `[B·H·W, C]` token rows into windows and back, applied by
/// all threads (candle's `index_select` copies on one).
pub(super) struct WindowPartition {
    /// For every window place of every image: the token row it holds, or
    /// [`Geometry::PADDING`] for a zero row.
    gather: Vec<u32>,
    /// For every token row: the window place that holds it.
    scatter: Vec<u32>,
}

impl WindowPartition {
    pub(super) fn new(g: &Geometry, batch: usize) -> Result<Self> {
        let image = g.index_image();
        let tokens = g.tokens();
        let places = image.len();
        let mut gather = Vec::with_capacity(batch * places);
        let mut scatter = vec![0u32; batch * tokens];
        for b in 0..batch {
            for (place, &token) in image.iter().enumerate() {
                if token == Geometry::PADDING {
                    gather.push(Geometry::PADDING);
                } else {
                    gather.push((b * tokens) as u32 + token);
                    scatter[b * tokens + token as usize] = (b * places + place) as u32;
                }
            }
        }
        Ok(WindowPartition { gather, scatter })
    }

    /// `[B, H·W, C]` tokens → `[B·nW, M², C]` windows (padding places zero).
    pub(super) fn windows(&self, x: &Tensor, g: &Geometry) -> Result<Tensor> {
        let (b, _, c) = x.dims3()?;
        let rows = with_f32(&x.contiguous()?, |x| Ok(gather_rows(&self.gather, x, c)))?;
        Ok(Tensor::from_vec(
            rows,
            (b * g.windows(), g.window_area(), c),
            &Device::Cpu,
        )?)
    }

    /// The inverse of [`WindowPartition::windows`]: `[B·nW, M², C]` → `[B, H·W, C]`, padding
    /// places dropped.
    pub(super) fn tokens(&self, windows: &Tensor, g: &Geometry) -> Result<Tensor> {
        let (bw, _, c) = windows.dims3()?;
        let batch = bw / g.windows().max(1);
        let rows = with_f32(&windows.contiguous()?, |w| {
            Ok(gather_rows(&self.scatter, w, c))
        })?;
        Ok(Tensor::from_vec(
            rows,
            (batch, g.tokens(), c),
            &Device::Cpu,
        )?)
    }
}

/// The mask of a shifted block, `[nW, M², M²]`: tokens of different cyclic-shift regions (3 per
/// axis of the padded grid) must not attend to each other, so their scores get `value` added.
pub(super) fn shift_mask(g: &Geometry, value: f32) -> Result<Tensor> {
    let m = g.window;
    let a = m * m;
    let mut mask = vec![0f32; g.windows() * a * a];
    for wr in 0..g.windows_down() {
        for wc in 0..g.windows_across() {
            let ids: Vec<usize> = (0..a)
                .map(|p| {
                    let (y, x) = (wr * m + p / m, wc * m + p % m);
                    g.rolled_region(y, x)
                })
                .collect();
            let base = (wr * g.windows_across() + wc) * a * a;
            for (qi, q) in ids.iter().enumerate() {
                for (ki, k) in ids.iter().enumerate() {
                    if q != k {
                        mask[base + qi * a + ki] = value;
                    }
                }
            }
        }
    }
    Ok(Tensor::from_vec(mask, (g.windows(), a, a), &Device::Cpu)?)
}

/// `[B, h·w, C]` → `[B, ⌈h/2⌉·⌈w/2⌉, 4·C]`, each merged token's children side by
/// side in the order (0,0), (1,0), (0,1), (1,1) (row, column), the grid padded to even sides.
pub(super) fn merge_children(x: &Tensor, (h, w): (usize, usize)) -> Result<Tensor> {
    let (b, _, c) = x.dims3()?;
    let x = x
        .reshape((b, h, w, c))?
        .pad_with_zeros(1, 0, h % 2)?
        .pad_with_zeros(2, 0, w % 2)?;
    let (h2, w2) = (h.div_ceil(2), w.div_ceil(2));
    // [B, h2, row, w2, col, C] → [B, h2, w2, col, row, C]: children ordered col-major.
    Ok(x.reshape((b, h2, 2, w2, 2, c))?
        .permute((0, 1, 3, 4, 2, 5))?
        .reshape((b, h2 * w2, 4 * c))?)
}

/// `[C, H, W]` or `[1, C, H, W]` as a batch of one; `what` names the caller in the refusal of
/// a larger batch.
pub(super) fn one_image(pixels: &Tensor, what: &str) -> Result<Tensor> {
    let pixels = if pixels.rank() == 3 {
        pixels.unsqueeze(0)?
    } else {
        pixels.clone()
    };
    if pixels.dim(0)? != 1 {
        return Err(Error::InvalidArgument(format!(
            "{what} takes one image at a time"
        )));
    }
    Ok(pixels)
}

/// The final norm, mean pooling and, for a classifier, the class logits. A headless backbone
/// (Hugging Face `SwinModel`, `Swinv2Model`) has no classifier and gives no logits.
#[derive(Debug)]
pub(super) struct Head {
    pub(super) norm: LayerNorm,
    pub(super) classifier: Option<Dense>,
}

impl Head {
    /// The head under `model` (`swin` or `swinv2`); the classifier when the checkpoint has one.
    pub(super) fn load(ck: &Checkpoint, c: &Config, model: &str) -> Result<Self> {
        let f = c.num_features();
        let classifier = if ck.contains("classifier.weight") {
            Some(linear(ck, "classifier", f, c.num_labels(), true)?)
        } else {
            None
        };
        Ok(Head {
            norm: layer_norm(ck, &format!("{model}.layernorm"), f, c.layer_norm_eps)?,
            classifier,
        })
    }

    /// `[B, N, C]` last-stage tokens → `[B, classes]` logits (`[B, 0]` without a classifier).
    pub(super) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let pooled = self.norm.forward(x)?.mean(1)?;
        match &self.classifier {
            Some(classifier) => classifier.forward(&pooled),
            None => Ok(Tensor::zeros(
                (pooled.dim(0)?, 0),
                pooled.dtype(),
                pooled.device(),
            )?),
        }
    }
}
