//! Swin Transformer V1 for image classification, recording every block's window attention.
//!
//! Reads top to bottom like the reference (`transformers`' `modeling_swin.py`): patch embedding,
//! stages of (shifted) window-attention blocks with patch merging between them, final norm,
//! mean pooling, classifier.

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{Activation, LayerNorm};

use super::checkpoint::Checkpoint;
use super::config::Config;
use super::kernels::{self, AttentionShape, Dense};
use crate::error::{Error, Result};
use crate::geometry::Geometry;
use crate::trace::BlockTrace;

mod backward;

/// `nn.LayerNorm`'s default epsilon, which the reference uses for the patch-embedding and
/// patch-merging norms whatever `layer_norm_eps` says.
const TORCH_LAYER_NORM_EPS: f64 = 1e-5;

/// The reference's additive mask between cyclic-shift regions: large enough to zero a
/// probability in practice (about 1e-43), not `-inf`.
const SHIFT_MASK: f32 = -100.0;

fn linear(ck: &Checkpoint, prefix: &str, inp: usize, out: usize, bias: bool) -> Result<Dense> {
    let w = ck.get(&format!("{prefix}.weight"), &[out, inp])?;
    let b = if bias {
        Some(ck.get(&format!("{prefix}.bias"), &[out])?)
    } else {
        None
    };
    Dense::new(&w, b.as_ref())
}

fn layer_norm(ck: &Checkpoint, prefix: &str, dim: usize, eps: f64) -> Result<LayerNorm> {
    Ok(LayerNorm::new(
        ck.get(&format!("{prefix}.weight"), &[dim])?,
        ck.get(&format!("{prefix}.bias"), &[dim])?,
        eps,
    ))
}

/// Non-overlapping patch embedding. A stride-p, kernel-p convolution is exactly a matrix
/// product over flattened patches, which is faster than a generic convolution here.
#[derive(Debug)]
struct PatchEmbedding {
    projection: Dense,
    norm: LayerNorm,
    position: Option<Tensor>,
    patch: usize,
    channels: usize,
}

impl PatchEmbedding {
    fn load(ck: &Checkpoint, c: &Config) -> Result<Self> {
        let (p, e, ch) = (c.patch_size, c.embed_dim, c.num_channels);
        let prefix = "swin.embeddings.patch_embeddings.projection";
        let w = ck.get(&format!("{prefix}.weight"), &[e, ch, p, p])?;
        let b = ck.get(&format!("{prefix}.bias"), &[e])?;
        let projection = Dense::new(&w.reshape((e, ch * p * p))?, Some(&b))?;
        let position = if c.use_absolute_embeddings {
            let (h, w) = c.token_grid(c.image_size.0, c.image_size.1);
            Some(ck.get("swin.embeddings.position_embeddings", &[1, h * w, e])?)
        } else {
            None
        };
        Ok(PatchEmbedding {
            projection,
            norm: layer_norm(ck, "swin.embeddings.norm", e, TORCH_LAYER_NORM_EPS)?,
            position,
            patch: p,
            channels: ch,
        })
    }

    /// `[B, C, H, W]` pixels → `[B, h·w, E]` tokens and the token grid `(h, w)`.
    fn forward(&self, pixels: &Tensor) -> Result<(Tensor, (usize, usize))> {
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
        let parts = ["query", "key", "value"];
        // One fused projection: a single matrix product instead of three.
        let weight = parts
            .iter()
            .map(|w| ck.get(&format!("{s}.{w}.weight"), &[dim, dim]))
            .collect::<Result<Vec<_>>>()?;
        let weight = Tensor::cat(&weight, 0)?;
        let bias = if c.qkv_bias {
            let biases = parts
                .iter()
                .map(|w| ck.get(&format!("{s}.{w}.bias"), &[dim]))
                .collect::<Result<Vec<_>>>()?;
            Some(Tensor::cat(&biases, 0)?)
        } else {
            None
        };
        let table_name = format!("{s}.relative_position_bias_table");
        let rows = ck.shape(&table_name).map_or(0, |s| s[0]);
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
            qkv: Dense::new(&weight, bias.as_ref())?,
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
}

impl Block {
    fn load(ck: &Checkpoint, c: &Config, stage: usize, block: usize) -> Result<Self> {
        let dim = c.stage_dim(stage);
        let hidden = c.mlp_hidden(dim);
        let p = format!("swin.encoder.layers.{stage}.blocks.{block}");
        Ok(Block {
            norm_before: layer_norm(ck, &format!("{p}.layernorm_before"), dim, c.layer_norm_eps)?,
            attention: WindowAttention::load(ck, c, &p, dim, c.num_heads[stage])?,
            norm_after: layer_norm(ck, &format!("{p}.layernorm_after"), dim, c.layer_norm_eps)?,
            fc1: linear(ck, &format!("{p}.intermediate.dense"), dim, hidden, true)?,
            fc2: linear(ck, &format!("{p}.output.dense"), hidden, dim, true)?,
            activation: c.hidden_act,
        })
    }

    /// `x`: `[B, H·W, C]` → same shape, and the attention probabilities; with `save`, also what
    /// the backward pass needs.
    fn forward(
        &self,
        x: &Tensor,
        g: &Geometry,
        save: bool,
    ) -> Result<(Tensor, Vec<f32>, Option<BlockSaved>)> {
        let (b, tokens, c) = x.dims3()?;
        // Padding, cyclic shift and window partition are one gather through the geometry's
        // index image (the same map the rollout uses), and its inverse puts tokens back.
        let partition = WindowPartition::new(g, b)?;
        let y = self.norm_before.forward(x)?.reshape((b * tokens, c))?;
        let y = if partition.has_padding {
            Tensor::cat(&[&y, &Tensor::zeros((1, c), y.dtype(), y.device())?], 0)?
        } else {
            y
        };
        let windows =
            y.index_select(&partition.gather, 0)?
                .reshape((b * g.windows(), g.window_area(), c))?;
        let mask = if g.shift > 0 {
            Some(shift_mask(g)?)
        } else {
            None
        };
        let (attended, probs, qkv) = self.attention.forward(&windows, g.window, mask.as_ref())?;
        let y = attended
            .reshape((b * g.windows() * g.window_area(), c))?
            .index_select(&partition.scatter, 0)?
            .reshape((b, tokens, c))?;
        let mid = (x + y)?;
        let y = self.norm_after.forward(&mid)?;
        let hidden = self.fc1.forward(&y)?;
        let y = match self.activation {
            Activation::Gelu => kernels::gelu(&hidden)?,
            other => other.forward(&hidden)?,
        };
        let y = self.fc2.forward(&y)?;
        let out = (&mid + y)?;
        let saved = save.then(|| BlockSaved {
            input: x.clone(),
            qkv,
            mid,
            hidden,
        });
        Ok((out, probs, saved))
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

/// Row indices that cut a batch of `[B·H·W, C]` token rows into windows and back.
struct WindowPartition {
    /// For every window place of every image: the token row it holds, or the zero row
    /// `B·H·W` appended for padding.
    gather: Tensor,
    /// For every token row: the window place that holds it.
    scatter: Tensor,
    has_padding: bool,
}

impl WindowPartition {
    fn new(g: &Geometry, batch: usize) -> Result<Self> {
        let image = g.index_image();
        let tokens = g.tokens();
        let zero_row = (batch * tokens) as u32;
        let places = image.len();
        let mut gather = Vec::with_capacity(batch * places);
        let mut scatter = vec![0u32; batch * tokens];
        for b in 0..batch {
            for (place, &token) in image.iter().enumerate() {
                if token == Geometry::PADDING {
                    gather.push(zero_row);
                } else {
                    gather.push((b * tokens) as u32 + token);
                    scatter[b * tokens + token as usize] = (b * places + place) as u32;
                }
            }
        }
        Ok(WindowPartition {
            has_padding: places > tokens,
            gather: Tensor::from_vec(gather, batch * places, &Device::Cpu)?,
            scatter: Tensor::from_vec(scatter, batch * tokens, &Device::Cpu)?,
        })
    }
}

/// The −100 mask of a shifted block, `[nW, M², M²]`: tokens of different cyclic-shift regions
/// (3 per axis of the padded grid) must not attend to each other.
fn shift_mask(g: &Geometry) -> Result<Tensor> {
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
                        mask[base + qi * a + ki] = SHIFT_MASK;
                    }
                }
            }
        }
    }
    Ok(Tensor::from_vec(mask, (g.windows(), a, a), &Device::Cpu)?)
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

    /// `[B, h·w, C]` → `[B, ⌈h/2⌉·⌈w/2⌉, 4·C]`, each merged token's children side by side.
    fn concat(x: &Tensor, (h, w): (usize, usize)) -> Result<Tensor> {
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
}

/// `[C, H, W]` or `[1, C, H, W]` as a batch of one; `what` names the caller in the refusal of
/// a larger batch.
fn one_image(pixels: &Tensor, what: &str) -> Result<Tensor> {
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

/// What a forward pass keeps for the backward pass, in forward order.
#[derive(Default)]
struct Tape {
    blocks: Vec<BlockSaved>,
    /// The input of every patch merge, its children concatenated `[1, N, 4·C]`.
    merges: Vec<Tensor>,
    /// The last stage's output, before the final norm.
    last: Option<Tensor>,
}

#[derive(Debug)]
struct Stage {
    blocks: Vec<Block>,
    downsample: Option<PatchMerging>,
}

/// A Swin Transformer image classifier (`SwinForImageClassification`).
#[derive(Debug)]
pub struct Swin {
    config: Config,
    embedding: PatchEmbedding,
    stages: Vec<Stage>,
    norm: LayerNorm,
    classifier: Dense,
}

/// What one forward pass returns: logits and, when asked, every block's attention.
#[derive(Debug)]
pub struct Forward {
    /// `[B, num_labels]`.
    pub logits: Tensor,
    /// Every block in forward order (empty unless attention was recorded). For a batch of
    /// `B` images each block's `attention` holds `B·nW` windows, image by image.
    pub attentions: Vec<BlockTrace>,
}

impl Swin {
    /// Builds the model from a checkpoint whose tensors match `config`.
    pub fn load(ck: &Checkpoint, config: Config) -> Result<Self> {
        config.validate()?;
        let c = &config;
        let stages = (0..c.stages())
            .map(|stage| {
                Ok(Stage {
                    blocks: (0..c.depths[stage])
                        .map(|block| Block::load(ck, c, stage, block))
                        .collect::<Result<_>>()?,
                    downsample: if stage + 1 < c.stages() {
                        Some(PatchMerging::load(ck, stage, c.stage_dim(stage))?)
                    } else {
                        None
                    },
                })
            })
            .collect::<Result<_>>()?;
        let f = c.num_features();
        Ok(Swin {
            embedding: PatchEmbedding::load(ck, c)?,
            stages,
            norm: layer_norm(ck, "swin.layernorm", f, c.layer_norm_eps)?,
            classifier: linear(ck, "classifier", f, c.num_labels(), true)?,
            config,
        })
    }

    /// The architecture.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Runs `pixels` (`[B, C, H, W]`, preprocessed) through the network; with `record`, keeps
    /// every block's attention probabilities.
    pub fn forward(&self, pixels: &Tensor, record: bool) -> Result<Forward> {
        self.run(pixels, record, None)
    }

    /// [`Swin::forward`], keeping on `tape` what the backward pass needs.
    fn run(&self, pixels: &Tensor, record: bool, mut tape: Option<&mut Tape>) -> Result<Forward> {
        let pixels = pixels.to_dtype(DType::F32)?;
        let (_, _, height, width) = pixels.dims4()?;
        let geometries = self.config.geometries(height, width);
        let (mut x, mut grid) = self.embedding.forward(&pixels)?;
        let mut attentions = Vec::new();
        let mut geometry = geometries.iter();
        for stage in &self.stages {
            for block in &stage.blocks {
                let g = geometry
                    .next()
                    .ok_or_else(|| Error::Model("config and weights disagree on depth".into()))?;
                let (y, probs, saved) = block.forward(&x, g, tape.is_some())?;
                x = y;
                if let (Some(tape), Some(saved)) = (tape.as_deref_mut(), saved) {
                    tape.blocks.push(saved);
                }
                if record {
                    attentions.push(BlockTrace {
                        geometry: *g,
                        heads: block.attention.heads,
                        attention: probs,
                    });
                }
            }
            if let Some(merge) = &stage.downsample {
                let concat = PatchMerging::concat(&x, grid)?;
                x = merge.reduction.forward(&merge.norm.forward(&concat)?)?;
                if let Some(tape) = tape.as_deref_mut() {
                    tape.merges.push(concat);
                }
                grid = (grid.0.div_ceil(2), grid.1.div_ceil(2));
            }
        }
        if let Some(tape) = tape {
            tape.last = Some(x.clone());
        }
        let pooled = self.norm.forward(&x)?.mean(1)?;
        let logits = self.classifier.forward(&pooled)?;
        Ok(Forward { logits, attentions })
    }

    /// Logits and per-block traces of one image (`[C, H, W]` or `[1, C, H, W]`).
    pub fn trace(&self, pixels: &Tensor) -> Result<(Vec<f32>, Vec<BlockTrace>)> {
        let out = self.forward(&one_image(pixels, "trace")?, true)?;
        Ok((out.logits.flatten_all()?.to_vec1::<f32>()?, out.attentions))
    }
}
