//! The ViT / DeiT backward pass: from one class logit back to every block's global attention,
//! carrying the gradient with respect to the token activations only (no weight gradients), as
//! Swin's does. A ViT block is a Swin block with one window of the whole sequence and no index
//! image, so the same kernels serve.

use candle_core::Tensor;

use super::{Block, BlockSaved, Classifier, ViT};
use crate::error::{Error, Result};
use crate::model::gradients::{
    add_assign, norm_backward, pre_norm_mlp_backward, resolve_target, values,
};
use crate::model::kernels::{window_attention_backward, with_f32, AttentionShape};
use crate::model::layers::one_image;
use crate::trace::{AttentionGradients, BlockTrace};

impl ViT {
    /// Logits, traces and the gradient of logit `target` (the top class when `None`) with
    /// respect to every block's attention probabilities, for one image.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a headless model or a target beyond its classes.
    pub fn trace_with_gradients(
        &self,
        pixels: &Tensor,
        target: Option<usize>,
    ) -> Result<(Vec<f32>, Vec<BlockTrace>, AttentionGradients)> {
        let pixels = one_image(pixels, "the backward pass")?;
        let mut tape = Vec::with_capacity(self.blocks.len());
        let (x, traces) = self.run(&pixels, true, Some(&mut tape))?;
        if tape.len() != self.blocks.len() || traces.len() != self.blocks.len() {
            return Err(Error::Model(
                "the forward pass did not keep what the backward needs".into(),
            ));
        }
        let logits = values(&self.classify(&x)?)?;
        let target = resolve_target(target, &logits)?;
        let mut dx = self.head_backward(&x, target)?;
        let mut grads = vec![Vec::new(); traces.len()];
        for k in (0..self.blocks.len()).rev() {
            let (d_attention, d_input) =
                self.blocks[k].backward(&tape[k], &traces[k].attention, &dx, k > 0)?;
            grads[k] = d_attention;
            if let Some(d) = d_input {
                dx = d;
            }
        }
        Ok((
            logits,
            traces,
            AttentionGradients {
                target,
                blocks: grads,
            },
        ))
    }

    /// The gradient of logit `target` with respect to the last block's output `last`
    /// (`[1, T, C]`): only the prefix tokens the classifier reads get one, through the final
    /// norm. ViT: y_c = W_c·n₀ + b_c; DeiT with teacher: y_c = (W_c·n₀ + D_c·n₁)/2 + b.
    fn head_backward(&self, last: &Tensor, target: usize) -> Result<Vec<f32>> {
        let (tokens, c) = (last.dim(1)?, last.dim(2)?);
        let row = |head: &crate::model::kernels::Dense| {
            head.weight_row(target).ok_or_else(|| {
                Error::InvalidArgument(format!("class {target} is beyond the model's classes"))
            })
        };
        let mut d_normed = vec![0f32; tokens * c];
        match &self.classifier {
            Classifier::None => {
                return Err(Error::InvalidArgument(
                    "the model has no classifier to explain a class of".into(),
                ))
            }
            Classifier::Cls(head) => d_normed[..c].copy_from_slice(&row(head)?),
            Classifier::ClsAndDistillation(cls, distillation) => {
                for (i, head) in [cls, distillation].into_iter().enumerate() {
                    for (d, w) in d_normed[i * c..(i + 1) * c].iter_mut().zip(row(head)?) {
                        *d = w / 2.0;
                    }
                }
            }
        }
        norm_backward(&self.norm, last, &d_normed)
    }
}

impl Block {
    /// From the gradient with respect to the block's output (`[T, C]`) to the gradient with
    /// respect to its attention probabilities `probs` and, with `input_gradient`, its input.
    fn backward(
        &self,
        saved: &BlockSaved,
        probs: &[f32],
        d_out: &[f32],
        input_gradient: bool,
    ) -> Result<(Vec<f32>, Option<Vec<f32>>)> {
        let d_mid = pre_norm_mlp_backward(
            &self.norm_after,
            (&self.fc1, &self.fc2),
            self.activation,
            &saved.mid,
            &saved.hidden,
            d_out,
        )?;
        // Attention branch: mid = input + output(attention(qkv(norm_before(input)))).
        let d_heads = self.output.backward_input(&d_mid)?;
        let shape = AttentionShape {
            windows: 1,
            tokens: saved.input.dim(1)?,
            heads: self.heads,
            head_dim: self.head_dim,
        };
        let (d_probs, d_qkv) = with_f32(&saved.qkv, |qkv| {
            window_attention_backward(qkv, probs, &d_heads, None, shape, input_gradient)
        })?;
        let Some(d_qkv) = d_qkv else {
            return Ok((d_probs, None));
        };
        let d_normed = self.qkv.backward_input(&d_qkv)?;
        let mut d_input = norm_backward(&self.norm_before, &saved.input, &d_normed)?;
        add_assign(&mut d_input, &d_mid);
        Ok((d_probs, Some(d_input)))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device, Module, Tensor};

    use super::super::{Family, ViTConfig};
    use super::*;
    use crate::geometry::Geometry;
    use crate::model::gradients::{argmax, check_finite_differences, moved_output, wave_pixels};
    use crate::model::kernels;
    use crate::model::Checkpoint;

    /// 16×16 pixels, patch 4: a 4×4 grid behind one or two prefix tokens, two blocks of two
    /// heads.
    fn tiny(family: Family) -> (ViT, Tensor) {
        let mut c = ViTConfig::vit_base(5);
        c.family = family;
        c.image_size = (16, 16);
        c.patch_size = 4;
        c.hidden_size = 8;
        c.num_layers = 2;
        c.num_heads = 2;
        c.intermediate_size = 16;
        let vit = ViT::load(&Checkpoint::random_vit(&c, 3).unwrap(), c).unwrap();
        (vit, wave_pixels(16, 0.61))
    }

    /// Logit `target` when block `at`'s attention probabilities are A + δ·r: (δ·r)·V goes
    /// through the output projection (without its bias) into the residual stream, and the
    /// block's MLP and everything after it run on that.
    fn logit_with_attention_moved(
        vit: &ViT,
        pixels: &Tensor,
        at: usize,
        r: &[f32],
        delta: f32,
        target: usize,
    ) -> f64 {
        let (mut x, (h, w)) = vit.embeddings.forward(pixels).unwrap();
        let prefix = vit.config.family.prefix_tokens();
        for (k, block) in vit.blocks.iter().enumerate() {
            let (y, _, saved) = block.forward(&x, &vit.no_bias, true).unwrap();
            if k != at {
                x = y;
                continue;
            }
            let saved = saved.unwrap();
            let g = Geometry::global(k, h, w, prefix);
            let (heads, d) = (block.heads, block.head_dim);
            let (t, c) = (g.window_area(), heads * d);
            let moved = moved_output(&values(&saved.qkv).unwrap(), r, delta, &g, heads, d);
            let moved = Tensor::from_vec(moved, (1, t, c), &Device::Cpu).unwrap();
            let zeros = Tensor::zeros((1, t, c), DType::F32, &Device::Cpu).unwrap();
            let projected = (block.output.forward(&moved).unwrap()
                - block.output.forward(&zeros).unwrap())
            .unwrap();
            let mid = (&saved.mid + projected).unwrap();
            let hidden = block
                .fc1
                .forward(&block.norm_after.forward(&mid).unwrap())
                .unwrap();
            let act = kernels::gelu(&hidden).unwrap();
            x = (&mid + block.fc2.forward(&act).unwrap()).unwrap();
        }
        f64::from(values(&vit.classify(&x).unwrap()).unwrap()[target])
    }

    #[test]
    fn attention_gradients_match_finite_differences_for_vit_and_distilled_deit() {
        for family in [Family::ViT, Family::DeiT] {
            let (vit, pixels) = tiny(family);
            for target in [None, Some(3)] {
                let (logits, traces, grads) = vit.trace_with_gradients(&pixels, target).unwrap();
                assert_eq!(
                    grads.target,
                    target.unwrap_or_else(|| argmax(&logits)),
                    "the default target is the argmax"
                );
                let (logits_alone, _) = vit.trace(&pixels).unwrap();
                assert_eq!(
                    logits, logits_alone,
                    "the backward's forward is the forward"
                );
                let target = grads.target;
                // δ = 1e-2 (Swin's) is past this model's linear range: 1 % truncation error.
                check_finite_differences(&grads, &traces, 1e-3, |k, r, delta| {
                    logit_with_attention_moved(&vit, &pixels, k, r, delta, target)
                });
            }
        }
    }

    #[test]
    fn an_out_of_range_class_is_refused() {
        let (vit, pixels) = tiny(Family::ViT);
        let err = vit
            .trace_with_gradients(&pixels, Some(5))
            .unwrap_err()
            .to_string();
        assert!(err.contains("class 5 is out of range"), "{err}");
    }
}
