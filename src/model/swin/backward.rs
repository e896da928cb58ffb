//! The Swin V1 backward pass of a block and a merge: the steps of the walk from one class logit
//! back to every block's attention ([`crate::model::Swin::trace_with_gradients`]), carrying the
//! gradient with respect to the token activations and nothing else (no weight gradients). At
//! each block the gradient with respect to the attention probabilities falls out on the way,
//! `dA = dO·Vᵀ` per window and head.

use candle_core::Tensor;

use super::{Block, BlockSaved, PatchMerging};
use crate::error::Result;
use crate::geometry::Geometry;
use crate::model::gradients::{
    add_assign, gather_rows, norm_backward, pre_norm_mlp_backward, scatter_rows,
};
use crate::model::kernels::{window_attention_backward, with_f32, AttentionShape};
use crate::trace::BlockTrace;

impl Block {
    /// From the gradient with respect to the block's output (`[H·W, C]`) to the gradient with
    /// respect to its attention probabilities and, with `input_gradient`, its input.
    pub(super) fn backward(
        &self,
        saved: &BlockSaved,
        trace: &BlockTrace,
        d_out: &[f32],
        input_gradient: bool,
    ) -> Result<(Vec<f32>, Option<Vec<f32>>)> {
        let g = &trace.geometry;
        let d_mid = pre_norm_mlp_backward(
            &self.norm_after,
            (&self.fc1, &self.fc2),
            self.activation,
            &saved.mid,
            &saved.hidden,
            d_out,
        )?;

        // Attention branch: mid = input + unpartition(output(attention(qkv(partition(norm))))).
        let c = d_mid.len() / g.tokens().max(1);
        let image = g.index_image();
        let d_attended = gather_rows(&image, &d_mid, c);
        let d_heads = self.attention.output.backward_input(&d_attended)?;
        let shape = AttentionShape {
            windows: g.windows(),
            tokens: g.window_area(),
            heads: self.attention.heads,
            head_dim: self.attention.head_dim,
        };
        let (d_probs, d_qkv) = with_f32(&saved.qkv, |qkv| {
            window_attention_backward(qkv, &trace.attention, &d_heads, None, shape, input_gradient)
        })?;
        let Some(d_qkv) = d_qkv else {
            return Ok((d_probs, None));
        };
        let d_windows = self.attention.qkv.backward_input(&d_qkv)?;
        let d_normed = scatter_rows(&image, &d_windows, c, g.tokens());
        let mut d_input = norm_backward(&self.norm_before, &saved.input, &d_normed)?;
        add_assign(&mut d_input, &d_mid);
        Ok((d_probs, Some(d_input)))
    }
}

impl PatchMerging {
    /// From the gradient with respect to the merged tokens to the gradient with respect to the
    /// tokens of the grid `before` describes; `concat` is the merge's saved input.
    pub(super) fn backward(
        &self,
        concat: &Tensor,
        before: &Geometry,
        d_merged: &[f32],
    ) -> Result<Vec<f32>> {
        let d_normed = self.reduction.backward_input(d_merged)?;
        let d_concat = norm_backward(&self.norm, concat, &d_normed)?;
        let children = before.merge_children();
        let c4 = d_concat.len() / children.len().max(1);
        let c = c4 / 4;
        // d_concat's rows of c are the children in order: merged token m, slot s at 4m + s.
        let places: Vec<u32> = children.iter().flatten().copied().collect();
        Ok(scatter_rows(&places, &d_concat, c, before.tokens()))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Module, Tensor};

    use super::super::Swin;
    use super::*;
    use crate::model::backbone::WindowBlock;
    use crate::model::gradients::{
        argmax, check_finite_differences, moved_output, values, wave_pixels,
    };
    use crate::model::layers::merge_children;
    use crate::model::{Checkpoint, Config};

    /// 40×40 pixels, patch 4: grids 10 → 5 → 3. Stages 0 and 1 pad (window 4 on 10 and 5) and
    /// shift by 2, both merges are odd, and stage 2 clamps its window to 3.
    fn tiny() -> (Swin, Tensor) {
        let mut c = Config::swin_tiny(5);
        c.image_size = (40, 40);
        c.embed_dim = 8;
        c.depths = vec![2, 2, 1];
        c.num_heads = vec![1, 2, 2];
        c.window_size = 4;
        c.mlp_ratio = 2.0;
        let swin = Swin::load(&Checkpoint::random(&c, 7).unwrap(), c).unwrap();
        (swin, wave_pixels(40, 0.37))
    }

    /// Logit `target` when block `at`'s attention probabilities are A + δ·r: the change of
    /// A·V, (δ·r)·V, goes through the output projection (without its bias) into the residual
    /// stream, and the block's MLP and everything after it run on that.
    fn logit_with_attention_moved(
        swin: &Swin,
        pixels: &Tensor,
        at: usize,
        r: &[f32],
        delta: f32,
        target: usize,
    ) -> f64 {
        let (_, _, height, width) = pixels.dims4().unwrap();
        let geometries = swin.0.config.geometries(height, width);
        let (mut x, mut grid) = swin.0.embedding.forward(pixels).unwrap();
        let mut k = 0;
        for stage in &swin.0.stages {
            for block in &stage.blocks {
                let g = &geometries[k];
                let (y, probs, saved) = block.forward(&x, g, true).unwrap();
                x = if k == at {
                    let saved = saved.unwrap();
                    let qkv = values(&saved.qkv).unwrap();
                    let (heads, d) = (block.attention.heads, block.attention.head_dim);
                    let (n, c) = (g.window_area(), heads * d);
                    let moved = moved_output(&qkv, r, delta, g, heads, d);
                    let zeros =
                        Tensor::zeros((g.windows() * n, c), candle_core::DType::F32, &Device::Cpu)
                            .unwrap();
                    let moved =
                        Tensor::from_vec(moved, (g.windows() * n, c), &Device::Cpu).unwrap();
                    let projected = values(
                        &(block.attention.output.forward(&moved).unwrap()
                            - block.attention.output.forward(&zeros).unwrap())
                        .unwrap(),
                    )
                    .unwrap();
                    let mut mid = values(&saved.mid).unwrap();
                    for (place, &t) in g.index_image().iter().enumerate() {
                        if t != Geometry::PADDING {
                            let t = t as usize;
                            add_assign(
                                &mut mid[t * c..(t + 1) * c],
                                &projected[place * c..(place + 1) * c],
                            );
                        }
                    }
                    let mid = Tensor::from_vec(mid, saved.mid.shape(), &Device::Cpu).unwrap();
                    let hidden = block
                        .fc1
                        .forward(&block.norm_after.forward(&mid).unwrap())
                        .unwrap();
                    let act = crate::model::kernels::gelu(&hidden).unwrap();
                    (&mid + block.fc2.forward(&act).unwrap()).unwrap()
                } else {
                    drop(probs);
                    y
                };
                k += 1;
            }
            if let Some(merge) = &stage.downsample {
                let concat = merge_children(&x, grid).unwrap();
                x = merge
                    .reduction
                    .forward(&merge.norm.forward(&concat).unwrap())
                    .unwrap();
                grid = (grid.0.div_ceil(2), grid.1.div_ceil(2));
            }
        }
        let logits = values(&swin.0.head.forward(&x).unwrap()).unwrap();
        f64::from(logits[target])
    }

    #[test]
    fn attention_gradients_match_finite_differences() {
        let (swin, pixels) = tiny();
        for target in [None, Some(3)] {
            let (logits, traces, grads) = swin.trace_with_gradients(&pixels, target).unwrap();
            let want = target.unwrap_or_else(|| argmax(&logits));
            assert_eq!(grads.target, want, "the default target is the argmax");
            let target = grads.target;
            check_finite_differences(&grads, &traces, 1e-2, |k, r, delta| {
                logit_with_attention_moved(&swin, &pixels, k, r, delta, target)
            });
        }
    }

    #[test]
    fn an_out_of_range_class_is_refused() {
        let (swin, pixels) = tiny();
        let err = swin
            .trace_with_gradients(&pixels, Some(5))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("class 5 is out of range") && err.contains("5 classes"),
            "{err}"
        );
    }
}
