//! The structure both Swin versions share: a patch embedding, stages of window-attention blocks
//! with a patch merge between them, and the head; the forward walk that records every block's
//! attention, and the backward walk from one class logit to every block's attention. A version
//! supplies its block and its merge ([`WindowBlock`], [`Merge`]).

use candle_core::{DType, Tensor};

use super::checkpoint::Checkpoint;
use super::config::Config;
use super::gradients::{resolve_target, values};
use super::layers::{one_image, Head, PatchEmbedding};
use crate::error::{Error, Result};
use crate::geometry::Geometry;
use crate::trace::{AttentionGradients, BlockTrace};

/// What one forward pass returns: logits and, when asked, every block's attention.
#[derive(Debug)]
pub struct Forward {
    /// `[B, num_labels]` (`[B, 0]` for a headless backbone).
    pub logits: Tensor,
    /// Every block in forward order (empty unless attention was recorded). For a batch of
    /// `B` images each block's `attention` holds `B·nW` windows, image by image.
    pub attentions: Vec<BlockTrace>,
}

/// A (shifted) window-attention block of one Swin version.
pub(super) trait WindowBlock {
    /// What the block's backward pass reads from its forward pass.
    type Saved;

    /// Attention heads.
    fn heads(&self) -> usize;

    /// `x`: `[B, H·W, C]` → same shape, and the attention probabilities `[B·nW, heads, M², M²]`;
    /// with `save`, also what the backward pass needs.
    fn forward(
        &self,
        x: &Tensor,
        g: &Geometry,
        save: bool,
    ) -> Result<(Tensor, Vec<f32>, Option<Self::Saved>)>;

    /// From the gradient with respect to the block's output (`[H·W, C]`) to the gradient with
    /// respect to its attention probabilities and, with `input_gradient`, its input.
    fn backward(
        &self,
        saved: &Self::Saved,
        trace: &BlockTrace,
        d_out: &[f32],
        input_gradient: bool,
    ) -> Result<(Vec<f32>, Option<Vec<f32>>)>;
}

/// The 2×2 patch merge of one Swin version.
pub(super) trait Merge {
    /// `[B, h·w, C]` → `[B, ⌈h/2⌉·⌈w/2⌉, 2·C]`, and the tensor its backward pass reads.
    fn forward(&self, x: &Tensor, grid: (usize, usize)) -> Result<(Tensor, Tensor)>;

    /// From the gradient with respect to the merged tokens to the gradient with respect to the
    /// tokens of the grid `before` describes; `saved` is what the forward kept.
    fn backward(&self, saved: &Tensor, before: &Geometry, d_merged: &[f32]) -> Result<Vec<f32>>;
}

#[derive(Debug)]
pub(super) struct Stage<B, M> {
    pub(super) blocks: Vec<B>,
    pub(super) downsample: Option<M>,
}

/// What a forward pass keeps for the backward pass, in forward order.
pub(super) struct Tape<S> {
    blocks: Vec<S>,
    /// What every patch merge kept.
    merges: Vec<Tensor>,
    /// The last stage's output, before the final norm.
    last: Option<Tensor>,
}

impl<S> Default for Tape<S> {
    fn default() -> Self {
        Tape {
            blocks: Vec::new(),
            merges: Vec::new(),
            last: None,
        }
    }
}

/// A Swin network: embedding, stages, head, and the config that built them.
#[derive(Debug)]
pub(super) struct Backbone<B, M> {
    pub(super) config: Config,
    pub(super) embedding: PatchEmbedding,
    pub(super) stages: Vec<Stage<B, M>>,
    pub(super) head: Head,
}

impl<B: WindowBlock, M: Merge> Backbone<B, M> {
    /// Builds the network under `model` (`swin`, `swinv2`) from `block(stage, block)` and
    /// `merge(stage)` (every stage but the last ends with a merge).
    pub(super) fn load(
        ck: &Checkpoint,
        config: Config,
        model: &str,
        block: impl Fn(usize, usize) -> Result<B>,
        merge: impl Fn(usize) -> Result<M>,
    ) -> Result<Self> {
        config.validate()?;
        let c = &config;
        let stages = (0..c.stages())
            .map(|stage| {
                Ok(Stage {
                    blocks: (0..c.depths[stage])
                        .map(|b| block(stage, b))
                        .collect::<Result<_>>()?,
                    downsample: if stage + 1 < c.stages() {
                        Some(merge(stage)?)
                    } else {
                        None
                    },
                })
            })
            .collect::<Result<_>>()?;
        Ok(Backbone {
            embedding: PatchEmbedding::load(ck, c, model)?,
            stages,
            head: Head::load(ck, c, model)?,
            config,
        })
    }

    /// Runs `pixels` (`[B, C, H, W]`, preprocessed); with `record`, keeps every block's
    /// attention probabilities, and with `tape`, what the backward pass needs.
    pub(super) fn run(
        &self,
        pixels: &Tensor,
        record: bool,
        mut tape: Option<&mut Tape<B::Saved>>,
    ) -> Result<Forward> {
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
                        heads: block.heads(),
                        attention: probs,
                    });
                }
            }
            if let Some(merge) = &stage.downsample {
                let (merged, saved) = merge.forward(&x, grid)?;
                x = merged;
                if let Some(tape) = tape.as_deref_mut() {
                    tape.merges.push(saved);
                }
                grid = (grid.0.div_ceil(2), grid.1.div_ceil(2));
            }
        }
        if let Some(tape) = tape {
            tape.last = Some(x.clone());
        }
        let logits = self.head.forward(&x)?;
        Ok(Forward { logits, attentions })
    }

    /// Logits and per-block traces of one image (`[C, H, W]` or `[1, C, H, W]`).
    pub(super) fn trace(&self, pixels: &Tensor) -> Result<(Vec<f32>, Vec<BlockTrace>)> {
        let out = self.run(&one_image(pixels, "trace")?, true, None)?;
        Ok((values(&out.logits)?, out.attentions))
    }

    /// One image forward and back: logits, every block's trace, and the gradient of logit
    /// `target` (the most probable class when `None`) with respect to every block's attention.
    pub(super) fn trace_with_gradients(
        &self,
        pixels: &Tensor,
        target: Option<usize>,
    ) -> Result<(Vec<f32>, Vec<BlockTrace>, AttentionGradients)> {
        let pixels = one_image(pixels, "the backward pass")?;
        let mut tape = Tape::default();
        let out = self.run(&pixels, true, Some(&mut tape))?;
        let logits = values(&out.logits)?;
        let target = resolve_target(target, &logits)?;
        let blocks = self.backward(&tape, &out.attentions, target)?;
        Ok((
            logits,
            out.attentions,
            AttentionGradients { target, blocks },
        ))
    }

    /// From the classifier back to the first block, carrying only the gradient with respect to
    /// the token activations; every block's attention gradient falls out on the way.
    fn backward(
        &self,
        tape: &Tape<B::Saved>,
        traces: &[BlockTrace],
        target: usize,
    ) -> Result<Vec<Vec<f32>>> {
        let broken =
            || Error::Model("the forward pass did not keep what the backward needs".into());
        let last = tape.last.as_ref().ok_or_else(broken)?;
        if tape.blocks.len() != traces.len() {
            return Err(broken());
        }
        let mut dx = self.head.backward(last, target)?;
        let mut grads = vec![Vec::new(); traces.len()];
        let mut k = traces.len();
        let mut merges = tape.merges.len();
        for stage in self.stages.iter().rev() {
            if let Some(merge) = &stage.downsample {
                merges = merges.checked_sub(1).ok_or_else(broken)?;
                let before = traces.get(k.wrapping_sub(1)).ok_or_else(broken)?;
                dx = merge.backward(&tape.merges[merges], &before.geometry, &dx)?;
            }
            for block in stage.blocks.iter().rev() {
                k = k.checked_sub(1).ok_or_else(broken)?;
                let (d_attention, d_input) =
                    block.backward(&tape.blocks[k], &traces[k], &dx, k > 0)?;
                grads[k] = d_attention;
                if let Some(d) = d_input {
                    dx = d;
                }
            }
        }
        Ok(grads)
    }
}
