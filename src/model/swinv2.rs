//! Swin Transformer V2 for image classification, recording every block's window attention.
//!
//! Reads top to bottom like the reference (`transformers`' `modeling_swinv2.py`). What differs
//! from V1 ([`super::Swin`]): scaled cosine attention (normalized queries and keys, times a
//! learned per-head logit scale clamped at 100); a continuous relative position bias, an MLP on
//! log-spaced window offsets squashed to `16·sigmoid`; post-norm blocks (`x + norm(attn(x))`);
//! patch merging that reduces before it normalizes; and windows fixed from the configured image
//! size when the model is built ([`Config::v2_window`]), so a small grid is padded up to a
//! window instead of clamping it. Padding, cyclic shift and window partition are V1's: the same
//! index image.

use rayon::prelude::*;

use candle_core::{Device, Module, Tensor};
use candle_nn::{Activation, LayerNorm};

use super::backbone::{Backbone, Forward, Merge, WindowBlock};
use super::checkpoint::Checkpoint;
use super::config::Config;
use super::kernels::{self, with_f32, AttentionShape, Dense};
use super::layers::{
    layer_norm, linear, merge_children, shift_mask, WindowPartition, TORCH_LAYER_NORM_EPS,
};
use crate::error::{Error, Result};
use crate::geometry::Geometry;
use crate::trace::{AttentionGradients, BlockTrace};

mod backward;

/// The logit scale's clamp, `log(1 / 0.01)`: τ is at most 100.
const MAX_LOG_SCALE: f32 = 4.605_170_2;

/// Hidden width of the continuous position bias MLP.
const CPB_HIDDEN: usize = 512;

/// `F.normalize`'s floor on the norm.
const NORMALIZE_EPS: f32 = 1e-12;

/// The `[heads, M², M²]` position bias of a V2 block with an `m`×`m` window: the MLP
/// (`2 → 512`, ReLU, `512 → heads`) on every offset's log-spaced coordinates, read at each token
/// pair's offset, as `16·sigmoid`.
fn continuous_position_bias(
    ck: &Checkpoint,
    prefix: &str,
    m: usize,
    pretrained: usize,
    heads: usize,
) -> Result<Tensor> {
    let w1 = ck
        .get(&format!("{prefix}.0.weight"), &[CPB_HIDDEN, 2])?
        .flatten_all()?
        .to_vec1::<f32>()?;
    let b1 = ck
        .get(&format!("{prefix}.0.bias"), &[CPB_HIDDEN])?
        .to_vec1::<f32>()?;
    let w2 = ck
        .get(&format!("{prefix}.2.weight"), &[heads, CPB_HIDDEN])?
        .flatten_all()?
        .to_vec1::<f32>()?;
    let side = 2 * m - 1;
    // Offsets −(m−1)…m−1 per axis, over the pretrained window (or this one) minus 1, to ±8,
    // then sign·log2(|x| + 1) / log2(8).
    // (timm's max(·, 1): a side of 1 has the one offset 0; transformers refuses p = 1.)
    let divisor = match (pretrained, m) {
        (0, m) => (m.max(2) - 1) as f32,
        (p, _) => (p.max(2) - 1) as f32,
    };
    let coordinate = |offset: isize| {
        let x = offset as f32 / divisor * 8.0;
        x.signum() * (x.abs() + 1.0).log2() / 3.0
    };
    let mut table = vec![0f32; side * side * heads];
    let mut hidden = vec![0f32; CPB_HIDDEN];
    for dy in 0..side {
        for dx in 0..side {
            let (cy, cx) = (
                coordinate(dy as isize - (m as isize - 1)),
                coordinate(dx as isize - (m as isize - 1)),
            );
            for (j, h) in hidden.iter_mut().enumerate() {
                *h = (w1[2 * j] * cy + w1[2 * j + 1] * cx + b1[j]).max(0.0);
            }
            for head in 0..heads {
                let row = &w2[head * CPB_HIDDEN..(head + 1) * CPB_HIDDEN];
                let v: f32 = row.iter().zip(&hidden).map(|(w, h)| w * h).sum();
                table[(dy * side + dx) * heads + head] = v;
            }
        }
    }
    let n = m * m;
    let mut bias = vec![0f32; heads * n * n];
    for q in 0..n {
        for k in 0..n {
            let dy = q / m + m - 1 - k / m;
            let dx = q % m + m - 1 - k % m;
            for head in 0..heads {
                let v = table[(dy * side + dx) * heads + head];
                bias[(head * n + q) * n + k] = 16.0 / (1.0 + (-v).exp());
            }
        }
    }
    Ok(Tensor::from_vec(bias, (heads, n, n), &Device::Cpu)?)
}

/// Scaled cosine attention inside windows of a fixed side.
#[derive(Debug)]
struct CosineAttention {
    qkv: Dense,
    output: Dense,
    /// `[heads, M², M²]`, `16·sigmoid` of the position-bias MLP.
    bias: Tensor,
    /// `exp(min(logit_scale, log 100))` per head.
    scale: Vec<f32>,
    window: usize,
    heads: usize,
    head_dim: usize,
}

impl CosineAttention {
    fn load(ck: &Checkpoint, c: &Config, prefix: &str, stage: usize, block: usize) -> Result<Self> {
        let dim = c.stage_dim(stage);
        let heads = c.num_heads[stage];
        let s = format!("{prefix}.attention.self");
        let weight = ["query", "key", "value"]
            .iter()
            .map(|w| ck.get(&format!("{s}.{w}.weight"), &[dim, dim]))
            .collect::<Result<Vec<_>>>()?;
        let weight = Tensor::cat(&weight, 0)?;
        // The key projection has no bias in V2.
        let bias = if c.qkv_bias {
            let q = ck.get(&format!("{s}.query.bias"), &[dim])?;
            let v = ck.get(&format!("{s}.value.bias"), &[dim])?;
            Some(Tensor::cat(&[&q, &q.zeros_like()?, &v], 0)?)
        } else {
            None
        };
        let scale = ck
            .get(&format!("{s}.logit_scale"), &[heads, 1, 1])?
            .flatten_all()?
            .to_vec1::<f32>()?
            .into_iter()
            .map(|l| l.min(MAX_LOG_SCALE).exp())
            .collect();
        let (window, _) = c.v2_window(stage, block);
        Ok(CosineAttention {
            qkv: Dense::new(&weight, bias.as_ref())?,
            output: linear(
                ck,
                &format!("{prefix}.attention.output.dense"),
                dim,
                dim,
                true,
            )?,
            bias: continuous_position_bias(
                ck,
                &format!("{s}.continuous_position_bias_mlp"),
                window,
                c.pretrained_window(stage),
                heads,
            )?,
            scale,
            window,
            heads,
            head_dim: dim / heads,
        })
    }

    /// `windows`: `[B·nW, M², C]`; `mask`: `[nW, M², M²]` for shifted blocks. Returns the
    /// attended tokens, the probabilities `[B·nW, heads, M², M²]` (row-major), and what the
    /// backward pass reads: the projection with unit queries and keys `[B·nW, M², 3·C]` and
    /// the norms they were divided by, `[B·nW·M², 2, heads]`.
    fn forward(
        &self,
        windows: &Tensor,
        mask: Option<&Tensor>,
    ) -> Result<(Tensor, Vec<f32>, Tensor, Vec<f32>)> {
        let (bw, n, _) = windows.dims3()?;
        let (heads, d) = (self.heads, self.head_dim);
        let qkv = self.qkv.forward(windows)?;
        // Unit queries and keys per head; the kernel then scales each head's queries by τ.
        let mut qkv = with_f32(&qkv, |v| Ok(v.to_vec()))?;
        let c = heads * d;
        let mut norms = vec![0f32; bw * n * 2 * heads];
        qkv.par_chunks_exact_mut(3 * c)
            .zip(norms.par_chunks_exact_mut(2 * heads))
            .for_each(|(row, norms)| {
                for (head, slot) in row[..2 * c].chunks_exact_mut(d.max(1)).zip(norms) {
                    let norm = head.iter().map(|x| x * x).sum::<f32>().sqrt();
                    *slot = norm;
                    let norm = norm.max(NORMALIZE_EPS);
                    for x in head.iter_mut() {
                        *x /= norm;
                    }
                }
            });
        let qkv = Tensor::from_vec(qkv, (bw, n, 3 * c), &Device::Cpu)?;
        let (out, probs) = kernels::window_attention(
            &qkv,
            &self.bias,
            mask,
            Some(&self.scale),
            AttentionShape {
                windows: bw,
                tokens: n,
                heads,
                head_dim: d,
            },
        )?;
        Ok((self.output.forward(&out)?, probs, qkv, norms))
    }
}

/// What a block's backward pass reads from its forward pass.
struct BlockSaved {
    /// The projection with unit queries and keys `[nW, M², 3·C]`.
    qkv: Tensor,
    /// The query and key norms, `[nW·M², 2, heads]`.
    norms: Vec<f32>,
    /// The attention branch's tokens before their norm `[1, H·W, C]`.
    attended: Tensor,
    /// The MLP's pre-activation `[1, H·W, hidden]`.
    hidden: Tensor,
    /// The MLP's output before its norm `[1, H·W, C]`.
    mlp: Tensor,
}

/// One Swin V2 block: (shifted) window attention and an MLP, each normalized after it and added
/// to the residual.
#[derive(Debug)]
struct Block {
    attention: CosineAttention,
    norm_before: LayerNorm,
    norm_after: LayerNorm,
    fc1: Dense,
    fc2: Dense,
    activation: Activation,
    /// What the shift mask adds between regions: this model's library's value
    /// ([`Config::shift_mask`]).
    shift_mask: f32,
}

impl Block {
    fn load(ck: &Checkpoint, c: &Config, stage: usize, block: usize) -> Result<Self> {
        let dim = c.stage_dim(stage);
        let hidden = c.mlp_hidden(dim);
        let p = format!("swinv2.encoder.layers.{stage}.blocks.{block}");
        Ok(Block {
            shift_mask: c.shift_mask(),
            attention: CosineAttention::load(ck, c, &p, stage, block)?,
            norm_before: layer_norm(ck, &format!("{p}.layernorm_before"), dim, c.layer_norm_eps)?,
            norm_after: layer_norm(ck, &format!("{p}.layernorm_after"), dim, c.layer_norm_eps)?,
            fc1: linear(ck, &format!("{p}.intermediate.dense"), dim, hidden, true)?,
            fc2: linear(ck, &format!("{p}.output.dense"), hidden, dim, true)?,
            activation: c.hidden_act,
        })
    }
}

impl WindowBlock for Block {
    type Saved = BlockSaved;

    fn heads(&self) -> usize {
        self.attention.heads
    }

    fn forward(
        &self,
        x: &Tensor,
        g: &Geometry,
        save: bool,
    ) -> Result<(Tensor, Vec<f32>, Option<BlockSaved>)> {
        if g.window != self.attention.window {
            return Err(Error::Model(format!(
                "block {}.{} was built for windows of {} but is asked for {}",
                g.stage, g.block, self.attention.window, g.window
            )));
        }
        // No norm before attention in V2: padding places are zero tokens, which the cosine
        // attention sees as zero keys (score 0 plus the position bias).
        let partition = WindowPartition::new(g, x.dim(0)?)?;
        let windows = partition.windows(x, g)?;
        let mask = if g.shift > 0 {
            Some(shift_mask(g, self.shift_mask)?)
        } else {
            None
        };
        let (attended, probs, qkv, norms) = self.attention.forward(&windows, mask.as_ref())?;
        let attended = partition.tokens(&attended, g)?;
        let mid = kernels::add(x, &self.norm_before.forward(&attended)?)?;
        let hidden = self.fc1.forward(&mid)?;
        let y = match self.activation {
            Activation::Gelu => kernels::gelu(&hidden)?,
            other => other.forward(&hidden)?,
        };
        let mlp = self.fc2.forward(&y)?;
        let out = kernels::add(&mid, &self.norm_after.forward(&mlp)?)?;
        let saved = save.then(|| BlockSaved {
            qkv,
            norms,
            attended,
            hidden,
            mlp,
        });
        Ok((out, probs, saved))
    }

    fn backward(
        &self,
        saved: &BlockSaved,
        trace: &BlockTrace,
        d_out: &[f32],
        input_gradient: bool,
    ) -> Result<(Vec<f32>, Option<Vec<f32>>)> {
        Block::backward(self, saved, trace, d_out, input_gradient)
    }
}

/// V2's patch merging: each 2×2 group's children side by side, halved in channels, then
/// normalized.
#[derive(Debug)]
struct PatchMerging {
    reduction: Dense,
    norm: LayerNorm,
}

impl PatchMerging {
    fn load(ck: &Checkpoint, stage: usize, dim: usize) -> Result<Self> {
        let p = format!("swinv2.encoder.layers.{stage}.downsample");
        Ok(PatchMerging {
            reduction: linear(ck, &format!("{p}.reduction"), 4 * dim, 2 * dim, false)?,
            norm: layer_norm(ck, &format!("{p}.norm"), 2 * dim, TORCH_LAYER_NORM_EPS)?,
        })
    }
}

impl Merge for PatchMerging {
    /// Keeps the reduction's output (the norm's input).
    fn forward(&self, x: &Tensor, grid: (usize, usize)) -> Result<(Tensor, Tensor)> {
        let reduced = self.reduction.forward(&merge_children(x, grid)?)?;
        Ok((self.norm.forward(&reduced)?, reduced))
    }

    fn backward(&self, reduced: &Tensor, before: &Geometry, d_merged: &[f32]) -> Result<Vec<f32>> {
        PatchMerging::backward(self, reduced, before, d_merged)
    }
}

/// A Swin V2 image classifier (`Swinv2ForImageClassification`, or a headless `Swinv2Model`).
#[derive(Debug)]
pub struct SwinV2(Backbone<Block, PatchMerging>);

impl SwinV2 {
    /// Builds the model from a checkpoint whose tensors match `config` (Hugging Face names).
    pub fn load(ck: &Checkpoint, config: Config) -> Result<Self> {
        let c = config.clone();
        let block = |stage, block| Block::load(ck, &c, stage, block);
        let merge = |stage| PatchMerging::load(ck, stage, c.stage_dim(stage));
        Ok(SwinV2(Backbone::load(ck, config, "swinv2", block, merge)?))
    }

    /// The architecture.
    pub fn config(&self) -> &Config {
        &self.0.config
    }

    /// Runs `pixels` (`[B, C, H, W]`, preprocessed) through the network; with `record`, keeps
    /// every block's attention probabilities.
    pub fn forward(&self, pixels: &Tensor, record: bool) -> Result<Forward> {
        self.0.run(pixels, record, None)
    }

    /// Logits and per-block traces of one image (`[C, H, W]` or `[1, C, H, W]`).
    pub fn trace(&self, pixels: &Tensor) -> Result<(Vec<f32>, Vec<BlockTrace>)> {
        self.0.trace(pixels)
    }

    /// Runs one image (`[C, H, W]` or `[1, C, H, W]`) forward and back: its logits, every
    /// block's trace, and the gradient of logit `target` (the most probable class when `None`)
    /// with respect to every block's attention probabilities.
    ///
    /// # Errors
    /// As [`super::Swin::trace_with_gradients`].
    pub fn trace_with_gradients(
        &self,
        pixels: &Tensor,
        target: Option<usize>,
    ) -> Result<(Vec<f32>, Vec<BlockTrace>, AttentionGradients)> {
        self.0.trace_with_gradients(pixels, target)
    }
}
