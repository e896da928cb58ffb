//! Swin Transformer V1 for image classification, recording every block's window attention.
//!
//! Reads top to bottom like the reference (`transformers`' `modeling_swin.py`): patch embedding,
//! stages of (shifted) window-attention blocks with patch merging between them, final norm,
//! mean pooling, classifier.

use candle_core::{Device, Module, Tensor};
use candle_nn::{Activation, LayerNorm};

use super::backbone::{Backbone, Forward, Merge, WindowBlock};
use super::checkpoint::Checkpoint;
use super::config::Config;
use super::kernels::{self, AttentionShape, Dense};
use super::layers::{
    fused_qkv, layer_norm, linear, merge_children, shift_mask, WindowPartition,
    TORCH_LAYER_NORM_EPS,
};
use crate::error::{Error, Result};
use crate::geometry::Geometry;
use crate::trace::{AttentionGradients, BlockTrace};

mod backward;

/// Multi-head self-attention inside windows, with relative position bias.
#[derive(Debug)]
struct WindowAttention {
    qkv: Dense,
    output: Dense,
    /// `[(2K−1)², heads]` for the table's own window K (≥ the window actually used).
    bias_table: Tensor,
    table_window: usize,
    heads: usize,
    head_dim: usize,
}

impl WindowAttention {
    fn load(ck: &Checkpoint, c: &Config, prefix: &str, dim: usize, heads: usize) -> Result<Self> {
        let s = format!("{prefix}.attention.self");
        let qkv = fused_qkv(ck, &s, dim, c.qkv_bias)?;
        let table_name = format!("{s}.relative_position_bias_table");
        let rows = ck
            .shape(&table_name)
            .and_then(<[usize]>::first)
            .map_or(0, |&r| r);
        // The table of a clamped stage may be sized for the configured window or the clamped
        // one; both are read through the same offset formula.
        let side = (rows as f64).sqrt().round() as usize;
        let table_window = if side * side == rows && side % 2 == 1 {
            side.div_ceil(2)
        } else {
            c.window_size
        };
        let table_side = 2 * table_window - 1;
        let bias_table = ck.get(&table_name, &[table_side * table_side, heads])?;
        Ok(WindowAttention {
            qkv,
            output: linear(
                ck,
                &format!("{prefix}.attention.output.dense"),
                dim,
                dim,
                true,
            )?,
            bias_table,
            table_window,
            heads,
            head_dim: dim / heads,
        })
    }

    /// The `[heads, m², m²]` bias for a window of side `m`: each token pair reads the table at
    /// its relative offset, i.e. the central `(2m−1)²` part of a larger table.
    fn position_bias(&self, m: usize) -> Result<Tensor> {
        if m > self.table_window {
            return Err(Error::Model(format!(
                "a relative position table for windows of {0}×{0} cannot serve a {m}×{m} window",
                self.table_window
            )));
        }
        let k = self.table_window;
        let side = 2 * k - 1;
        let mut index = Vec::with_capacity(m.pow(4));
        for qi in 0..m * m {
            for ki in 0..m * m {
                let dy = (qi / m + k - 1) - ki / m;
                let dx = (qi % m + k - 1) - ki % m;
                index.push((dy * side + dx) as u32);
            }
        }
        let index = Tensor::from_vec(index, m.pow(4), &Device::Cpu)?;
        Ok(self
            .bias_table
            .index_select(&index, 0)?
            .reshape((m * m, m * m, self.heads))?
            .permute((2, 0, 1))?
            .contiguous()?)
    }

    /// `windows`: `[B·nW, m², C]`; `mask`: `[nW, m², m²]` for shifted blocks.
    /// Returns the attended tokens, the probabilities `[B·nW, heads, m², m²]` (row-major) and
    /// the projected queries, keys and values (which the backward pass reads).
    fn forward(
        &self,
        windows: &Tensor,
        m: usize,
        mask: Option<&Tensor>,
    ) -> Result<(Tensor, Vec<f32>, Tensor)> {
        let (bw, n, _) = windows.dims3()?;
        let qkv = self.qkv.forward(windows)?;
        let bias = self.position_bias(m)?;
        let (out, probs) = kernels::window_attention(
            &qkv,
            &bias,
            mask,
            None,
            AttentionShape {
                windows: bw,
                tokens: n,
                heads: self.heads,
                head_dim: self.head_dim,
            },
        )?;
        Ok((self.output.forward(&out)?, probs, qkv))
    }
}

/// One Swin block: (shifted) window attention and an MLP, each with a pre-norm and a residual.
#[derive(Debug)]
struct Block {
    norm_before: LayerNorm,
    attention: WindowAttention,
    norm_after: LayerNorm,
    fc1: Dense,
    fc2: Dense,
    activation: Activation,
    /// The additive mask between cyclic-shift regions ([`Config::shift_mask`], −100 in both
    /// libraries): large enough to zero a probability in practice (about 1e-43), not `-inf`.
    shift_mask: f32,
}

impl Block {
    fn load(ck: &Checkpoint, c: &Config, stage: usize, block: usize) -> Result<Self> {
        let dim = c.stage_dim(stage);
        let hidden = c.mlp_hidden(dim);
        let p = format!("swin.encoder.layers.{stage}.blocks.{block}");
        Ok(Block {
            shift_mask: c.shift_mask(),
            norm_before: layer_norm(ck, &format!("{p}.layernorm_before"), dim, c.layer_norm_eps)?,
            attention: WindowAttention::load(ck, c, &p, dim, c.num_heads[stage])?,
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
        // Padding, cyclic shift and window partition are one gather through the geometry's
        // index image (the same map the rollout uses), and its inverse puts tokens back.
        let partition = WindowPartition::new(g, x.dim(0)?)?;
        let windows = partition.windows(&self.norm_before.forward(x)?, g)?;
        let mask = if g.shift > 0 {
            Some(shift_mask(g, self.shift_mask)?)
        } else {
            None
        };
        let (attended, probs, qkv) = self.attention.forward(&windows, g.window, mask.as_ref())?;
        let y = partition.tokens(&attended, g)?;
        let mid = kernels::add(x, &y)?;
        let y = self.norm_after.forward(&mid)?;
        let hidden = self.fc1.forward(&y)?;
        let y = match self.activation {
            Activation::Gelu => kernels::gelu(&hidden)?,
            other => other.forward(&hidden)?,
        };
        let out = self.fc2.forward_residual(&y, &mid)?;
        let saved = save.then(|| BlockSaved {
            input: x.clone(),
            qkv,
            mid,
            hidden,
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

/// What a block's backward pass reads from its forward pass (tensors shared, not copied).
struct BlockSaved {
    /// The block's input `[1, H·W, C]`.
    input: Tensor,
    /// The fused projection's output `[nW, M², 3·C]`.
    qkv: Tensor,
    /// The input plus the attention branch `[1, H·W, C]`.
    mid: Tensor,
    /// The MLP's pre-activation `[1, H·W, hidden]`.
    hidden: Tensor,
}

/// 2×2 patch merging: concatenates each 2×2 group's children in the order (0,0), (1,0),
/// (0,1), (1,1) (row, column), normalizes and halves the channels.
#[derive(Debug)]
struct PatchMerging {
    norm: LayerNorm,
    reduction: Dense,
}

impl PatchMerging {
    fn load(ck: &Checkpoint, stage: usize, dim: usize) -> Result<Self> {
        let p = format!("swin.encoder.layers.{stage}.downsample");
        Ok(PatchMerging {
            norm: layer_norm(ck, &format!("{p}.norm"), 4 * dim, TORCH_LAYER_NORM_EPS)?,
            reduction: linear(ck, &format!("{p}.reduction"), 4 * dim, 2 * dim, false)?,
        })
    }
}

impl Merge for PatchMerging {
    fn forward(&self, x: &Tensor, grid: (usize, usize)) -> Result<(Tensor, Tensor)> {
        let concat = merge_children(x, grid)?;
        let merged = self.reduction.forward(&self.norm.forward(&concat)?)?;
        Ok((merged, concat))
    }

    fn backward(&self, concat: &Tensor, before: &Geometry, d_merged: &[f32]) -> Result<Vec<f32>> {
        PatchMerging::backward(self, concat, before, d_merged)
    }
}

/// A Swin Transformer image classifier (`SwinForImageClassification`, or a headless
/// `SwinModel`).
#[derive(Debug)]
pub struct Swin(Backbone<Block, PatchMerging>);

impl Swin {
    /// Builds the model from a checkpoint whose tensors match `config`.
    pub fn load(ck: &Checkpoint, config: Config) -> Result<Self> {
        let c = config.clone();
        let block = |stage, block| Block::load(ck, &c, stage, block);
        let merge = |stage| PatchMerging::load(ck, stage, c.stage_dim(stage));
        Ok(Swin(Backbone::load(ck, config, "swin", block, merge)?))
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
    /// [`Error::InvalidArgument`] for a batch of more than one image, a headless model or a
    /// target that is not a class index; [`Error::Model`] for an MLP activation whose
    /// derivative is not implemented (GELU and ReLU are).
    pub fn trace_with_gradients(
        &self,
        pixels: &Tensor,
        target: Option<usize>,
    ) -> Result<(Vec<f32>, Vec<BlockTrace>, AttentionGradients)> {
        self.0.trace_with_gradients(pixels, target)
    }
}
