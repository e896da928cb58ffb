//! ViT and DeiT for image classification, recording every block's global attention.
//!
//! Reads top to bottom like the reference (`transformers`' `modeling_vit.py`,
//! `modeling_deit.py`): patch embedding, the prefix tokens (CLS, and DeiT's distillation token)
//! before the patches, learned position embeddings, pre-norm blocks of multi-head attention over
//! the whole sequence, the final norm, and the head on the prefix tokens.

mod backward;
mod config;

pub use config::{Family, ViTConfig};

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{Activation, LayerNorm};

use super::backbone::Forward;
use super::checkpoint::Checkpoint;
use super::gradients::values;
use super::kernels::{self, AttentionShape, Dense};
use super::layers::{fused_qkv, layer_norm, linear, one_image};
use crate::error::{Error, Result};
use crate::geometry::Geometry;
use crate::trace::BlockTrace;

/// The patch embedding, the prefix tokens and the position embeddings.
#[derive(Debug)]
struct Embeddings {
    /// The stride-p, kernel-p convolution as a matrix product over flattened patches.
    projection: Dense,
    /// `[1, prefix, C]`: CLS (and the distillation token).
    prefix: Tensor,
    /// `[1, prefix + h·w, C]`, for the configured image's grid.
    position: Tensor,
    patch: usize,
    channels: usize,
    image_size: (usize, usize),
}

impl Embeddings {
    fn load(ck: &Checkpoint, c: &ViTConfig) -> Result<Self> {
        let (p, e, ch) = (c.patch_size, c.hidden_size, c.num_channels);
        let m = c.family.model_type();
        let prefix = format!("{m}.embeddings.patch_embeddings.projection");
        let w = ck.get(&format!("{prefix}.weight"), &[e, ch, p, p])?;
        let b = ck.get(&format!("{prefix}.bias"), &[e])?;
        let mut tokens = vec![ck.get(&format!("{m}.embeddings.cls_token"), &[1, 1, e])?];
        if c.family == Family::DeiT {
            tokens.push(ck.get(&format!("{m}.embeddings.distillation_token"), &[1, 1, e])?);
        }
        let (h, w_) = c.token_grid(c.image_size.0, c.image_size.1);
        let sequence = c.family.prefix_tokens() + h * w_;
        Ok(Embeddings {
            projection: Dense::new(&w.reshape((e, ch * p * p))?, Some(&b))?,
            prefix: Tensor::cat(&tokens, 1)?,
            position: ck.get(
                &format!("{m}.embeddings.position_embeddings"),
                &[1, sequence, e],
            )?,
            patch: p,
            channels: ch,
            image_size: c.image_size,
        })
    }

    /// `[B, C, H, W]` pixels → `[B, T, E]` tokens (prefix first) and the patch grid.
    fn forward(&self, pixels: &Tensor) -> Result<(Tensor, (usize, usize))> {
        let (b, ch, height, width) = pixels.dims4()?;
        if ch != self.channels {
            return Err(Error::InvalidArgument(format!(
                "the model expects {} input channels, got {ch}",
                self.channels
            )));
        }
        // As transformers: the position embeddings are for the configured size only.
        if (height, width) != self.image_size {
            return Err(Error::InvalidArgument(format!(
                "the model takes {}×{} inputs (its position embeddings cover that grid), got {height}×{width}; resize the image to the model's size",
                self.image_size.0, self.image_size.1
            )));
        }
        let p = self.patch;
        let (h, w) = (height / p, width / p);
        // The convolution ignores the pixels that do not fill a whole patch.
        let patches = pixels
            .narrow(2, 0, h * p)?
            .narrow(3, 0, w * p)?
            .reshape((b, ch, h, p, w, p))?
            .permute((0, 2, 4, 1, 3, 5))?
            .reshape((b * h * w, ch * p * p))?;
        let patches = self.projection.forward(&patches)?.reshape((b, h * w, ()))?;
        let prefix = self
            .prefix
            .broadcast_as((b, self.prefix.dim(1)?, self.prefix.dim(2)?))?;
        let tokens = Tensor::cat(&[&prefix.contiguous()?, &patches], 1)?;
        Ok((tokens.broadcast_add(&self.position)?, (h, w)))
    }
}

/// One ViT block: attention over the whole sequence and an MLP, each with a pre-norm and a
/// residual.
#[derive(Debug)]
struct Block {
    norm_before: LayerNorm,
    qkv: Dense,
    output: Dense,
    norm_after: LayerNorm,
    fc1: Dense,
    fc2: Dense,
    activation: Activation,
    heads: usize,
    head_dim: usize,
}

impl Block {
    fn load(ck: &Checkpoint, c: &ViTConfig, layer: usize) -> Result<Self> {
        let (dim, hidden) = (c.hidden_size, c.intermediate_size);
        let p = format!("{}.encoder.layer.{layer}", c.family.model_type());
        Ok(Block {
            norm_before: layer_norm(ck, &format!("{p}.layernorm_before"), dim, c.layer_norm_eps)?,
            qkv: fused_qkv(ck, &format!("{p}.attention.attention"), dim, c.qkv_bias)?,
            output: linear(ck, &format!("{p}.attention.output.dense"), dim, dim, true)?,
            norm_after: layer_norm(ck, &format!("{p}.layernorm_after"), dim, c.layer_norm_eps)?,
            fc1: linear(ck, &format!("{p}.intermediate.dense"), dim, hidden, true)?,
            fc2: linear(ck, &format!("{p}.output.dense"), hidden, dim, true)?,
            activation: c.hidden_act,
            heads: c.num_heads,
            head_dim: dim / c.num_heads,
        })
    }

    /// `x`: `[B, T, C]` → same shape, the probabilities `[B, heads, T, T]` and, with `keep`,
    /// what the backward pass reads.
    fn forward(
        &self,
        x: &Tensor,
        no_bias: &Tensor,
        keep: bool,
    ) -> Result<(Tensor, Vec<f32>, Option<BlockSaved>)> {
        let (b, t, _) = x.dims3()?;
        let qkv = self.qkv.forward(&self.norm_before.forward(x)?)?;
        // Global attention is window attention with one window of the whole sequence and no
        // position bias.
        let (attended, probs) = kernels::window_attention(
            &qkv,
            no_bias,
            None,
            None,
            AttentionShape {
                windows: b,
                tokens: t,
                heads: self.heads,
                head_dim: self.head_dim,
            },
        )?;
        let mid = self.output.forward_residual(&attended, x)?;
        let hidden = self.fc1.forward(&self.norm_after.forward(&mid)?)?;
        let y = match self.activation {
            Activation::Gelu => kernels::gelu(&hidden)?,
            other => other.forward(&hidden)?,
        };
        let out = self.fc2.forward_residual(&y, &mid)?;
        let saved = keep.then(|| BlockSaved {
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
    /// The block's input `[1, T, C]`.
    input: Tensor,
    /// The fused projection's output `[1, T, 3·C]`.
    qkv: Tensor,
    /// The input plus the attention branch `[1, T, C]`.
    mid: Tensor,
    /// The MLP's pre-activation `[1, T, hidden]`.
    hidden: Tensor,
}

/// The classifier on the prefix tokens: ViT's and DeiT's on CLS, or DeiT-with-teacher's mean of
/// the CLS and the distillation heads; none for a headless backbone.
#[derive(Debug)]
enum Classifier {
    None,
    Cls(Dense),
    ClsAndDistillation(Dense, Dense),
}

/// A ViT or DeiT image classifier (`ViTForImageClassification`,
/// `DeiTForImageClassification[WithTeacher]`), or a headless `ViTModel` / `DeiTModel`.
#[derive(Debug)]
pub struct ViT {
    config: ViTConfig,
    embeddings: Embeddings,
    blocks: Vec<Block>,
    norm: LayerNorm,
    classifier: Classifier,
    /// `[heads, T, T]` zeros: the attention kernel's position bias, which a ViT does not have.
    no_bias: Tensor,
}

impl ViT {
    /// Builds the model from a checkpoint whose tensors match `config`.
    pub fn load(ck: &Checkpoint, config: ViTConfig) -> Result<Self> {
        config.validate()?;
        let c = &config;
        let (e, classes) = (c.hidden_size, c.labels.len());
        let classifier = if ck.contains("cls_classifier.weight") {
            Classifier::ClsAndDistillation(
                linear(ck, "cls_classifier", e, classes, true)?,
                linear(ck, "distillation_classifier", e, classes, true)?,
            )
        } else if ck.contains("classifier.weight") {
            Classifier::Cls(linear(ck, "classifier", e, classes, true)?)
        } else {
            Classifier::None
        };
        let (h, w) = c.token_grid(c.image_size.0, c.image_size.1);
        let t = c.family.prefix_tokens() + h * w;
        Ok(ViT {
            embeddings: Embeddings::load(ck, c)?,
            blocks: (0..c.num_layers)
                .map(|layer| Block::load(ck, c, layer))
                .collect::<Result<_>>()?,
            norm: layer_norm(
                ck,
                &format!("{}.layernorm", c.family.model_type()),
                e,
                c.layer_norm_eps,
            )?,
            classifier,
            no_bias: Tensor::zeros((c.num_heads, t, t), DType::F32, &Device::Cpu)?,
            config,
        })
    }

    /// The architecture.
    pub fn config(&self) -> &ViTConfig {
        &self.config
    }

    /// Runs `pixels` (`[B, C, H, W]`, preprocessed) through the network; with `record`, keeps
    /// every block's attention probabilities (`B` "windows" of the whole sequence a block).
    pub fn forward(&self, pixels: &Tensor, record: bool) -> Result<Forward> {
        let (x, attentions) = self.run(pixels, record, None)?;
        Ok(Forward {
            logits: self.classify(&x)?,
            attentions,
        })
    }

    /// The embeddings and every block: the last block's output `[B, T, C]` and, with `record`,
    /// every block's trace; with `tape`, what each block's backward reads is pushed onto it.
    fn run(
        &self,
        pixels: &Tensor,
        record: bool,
        mut tape: Option<&mut Vec<BlockSaved>>,
    ) -> Result<(Tensor, Vec<BlockTrace>)> {
        let pixels = pixels.to_dtype(DType::F32)?;
        let (mut x, (h, w)) = self.embeddings.forward(&pixels)?;
        let prefix = self.config.family.prefix_tokens();
        let mut attentions = Vec::new();
        for (k, block) in self.blocks.iter().enumerate() {
            let (y, probs, saved) = block.forward(&x, &self.no_bias, tape.is_some())?;
            x = y;
            if record {
                attentions.push(BlockTrace {
                    geometry: Geometry::global(k, h, w, prefix),
                    heads: block.heads,
                    attention: probs,
                });
            }
            if let (Some(tape), Some(saved)) = (tape.as_deref_mut(), saved) {
                tape.push(saved);
            }
        }
        Ok((x, attentions))
    }

    /// The logits `[B, classes]` of the last block's output `x` `[B, T, C]`.
    fn classify(&self, x: &Tensor) -> Result<Tensor> {
        let x = self.norm.forward(x)?;
        let token = |i: usize| x.narrow(1, i, 1).and_then(|t| t.squeeze(1));
        Ok(match &self.classifier {
            Classifier::None => Tensor::zeros((x.dim(0)?, 0), DType::F32, &Device::Cpu)?,
            Classifier::Cls(head) => head.forward(&token(0)?)?,
            Classifier::ClsAndDistillation(cls, distillation) => {
                ((cls.forward(&token(0)?)? + distillation.forward(&token(1)?)?)? / 2.0)?
            }
        })
    }

    /// Logits and per-block traces of one image (`[C, H, W]` or `[1, C, H, W]`).
    pub fn trace(&self, pixels: &Tensor) -> Result<(Vec<f32>, Vec<BlockTrace>)> {
        let out = self.forward(&one_image(pixels, "trace")?, true)?;
        Ok((values(&out.logits)?, out.attentions))
    }
}
