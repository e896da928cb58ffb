//! The Swin V2 backward pass of a block and a merge, the steps of the walk from one class logit
//! back to every block's attention ([`crate::model::SwinV2::trace_with_gradients`]). What
//! differs from V1's: norms after the branches instead of before, the per-head logit scale in
//! place of `1/√d`, the normalization of queries and keys, and merges that normalize after
//! reducing.

use candle_core::Tensor;

use super::{Block, BlockSaved, PatchMerging};
use crate::error::Result;
use crate::geometry::Geometry;
use crate::model::gradients::{
    activation_backward, add_assign, gather_rows, norm_backward, scatter_rows,
};
use crate::model::kernels::{window_attention_backward, with_f32, AttentionShape};
use crate::trace::BlockTrace;

/// `dx` of `x̂ = x / max(‖x‖, ε)` for one head's `d` values, given `x̂`, `‖x‖` and `dx̂`, in
/// place of `dx̂`.
fn normalize_backward(unit: &[f32], norm: f32, d_unit: &mut [f32]) {
    if norm > super::NORMALIZE_EPS {
        let along: f32 = unit.iter().zip(d_unit.iter()).map(|(u, g)| u * g).sum();
        for (g, &u) in d_unit.iter_mut().zip(unit) {
            *g = (*g - u * along) / norm;
        }
    } else {
        // Below the floor the division is by a constant.
        for g in d_unit.iter_mut() {
            *g /= super::NORMALIZE_EPS;
        }
    }
}

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
        // MLP branch: out = mid + norm_after(fc2(act(fc1(mid)))).
        let d_mlp = norm_backward(&self.norm_after, &saved.mlp, d_out)?;
        let mut d_hidden = self.fc2.backward_input(&d_mlp)?;
        activation_backward(self.activation, &saved.hidden, &mut d_hidden)?;
        let mut d_mid = self.fc1.backward_input(&d_hidden)?;
        add_assign(&mut d_mid, d_out);

        // Attention branch: mid = input + norm_before(unpartition(output(attention(…)))).
        let d_attended = norm_backward(&self.norm_before, &saved.attended, &d_mid)?;
        let c = d_mid.len() / g.tokens().max(1);
        let image = g.index_image();
        let d_places = gather_rows(&image, &d_attended, c);
        let d_heads = self.attention.output.backward_input(&d_places)?;
        let (heads, d) = (self.attention.heads, self.attention.head_dim);
        let shape = AttentionShape {
            windows: g.windows(),
            tokens: g.window_area(),
            heads,
            head_dim: d,
        };
        let (d_probs, d_qkv) = with_f32(&saved.qkv, |qkv| {
            let (d_probs, d_qkv) = window_attention_backward(
                qkv,
                &trace.attention,
                &d_heads,
                Some(&self.attention.scale),
                shape,
                input_gradient,
            )?;
            // Through the normalization of queries and keys (values pass unchanged).
            let d_qkv = d_qkv.map(|mut d_qkv| {
                let rows = d_qkv.chunks_exact_mut(3 * c).zip(qkv.chunks_exact(3 * c));
                for ((d_row, row), norms) in rows.zip(saved.norms.chunks_exact(2 * heads)) {
                    for (part, norm) in norms.iter().enumerate() {
                        let span = part * d..(part + 1) * d;
                        normalize_backward(&row[span.clone()], *norm, &mut d_row[span]);
                    }
                }
                d_qkv
            });
            Ok((d_probs, d_qkv))
        })?;
        let Some(d_qkv) = d_qkv else {
            return Ok((d_probs, None));
        };
        let d_windows = self.attention.qkv.backward_input(&d_qkv)?;
        let mut d_input = scatter_rows(&image, &d_windows, c, g.tokens());
        add_assign(&mut d_input, &d_mid);
        Ok((d_probs, Some(d_input)))
    }
}

impl PatchMerging {
    /// From the gradient with respect to the merged tokens to the gradient with respect to the
    /// tokens of the grid `before` describes; `reduced` is the norm's saved input.
    pub(super) fn backward(
        &self,
        reduced: &Tensor,
        before: &Geometry,
        d_merged: &[f32],
    ) -> Result<Vec<f32>> {
        let d_reduced = norm_backward(&self.norm, reduced, d_merged)?;
        let d_concat = self.reduction.backward_input(&d_reduced)?;
        let children = before.merge_children();
        let c = d_concat.len() / children.len().max(1) / 4;
        // d_concat's rows of c are the children in order: merged token m, slot s at 4m + s.
        let places: Vec<u32> = children.iter().flatten().copied().collect();
        Ok(scatter_rows(&places, &d_concat, c, before.tokens()))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Module, Tensor};

    use super::super::SwinV2;
    use crate::model::backbone::WindowBlock;
    use crate::model::gradients::{
        argmax, check_finite_differences, moved_output, values, wave_pixels,
    };
    use crate::model::layers::{merge_children, WindowPartition};
    use crate::model::{Checkpoint, Config};

    /// 40×40 pixels, patch 4: grids 10 → 5 → 3. V2 fixes the windows from the configured
    /// image: stages 0 and 1 use window 4 with shift 2 (padding 10 → 12 and 5 → 8), stage 2 a
    /// window of 2 (its configured grid is 10/4 = 2) on a 3×3 grid padded to 4×4; both merges
    /// are odd.
    fn tiny() -> (SwinV2, Tensor) {
        let mut c = Config::swinv2_tiny(5);
        c.image_size = (40, 40);
        c.embed_dim = 8;
        c.depths = vec![2, 2, 1];
        c.num_heads = vec![1, 2, 2];
        c.window_size = 4;
        c.mlp_ratio = 2.0;
        c.pretrained_window_sizes = vec![0, 6, 0];
        let swin = SwinV2::load(&Checkpoint::random(&c, 7).unwrap(), c).unwrap();
        (swin, wave_pixels(40, 0.37))
    }

    /// Logit `target` when block `at`'s attention probabilities are A + δ·r: the change of
    /// A·V, (δ·r)·V, goes through the output projection (without its bias) into the attention
    /// branch before its norm, and everything after runs on that.
    fn logit_with_attention_moved(
        swin: &SwinV2,
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
                let (y, _, saved) = block.forward(&x, g, true).unwrap();
                x = if k == at {
                    let saved = saved.unwrap();
                    let qkv = values(&saved.qkv).unwrap();
                    let (heads, d) = (block.attention.heads, block.attention.head_dim);
                    let (n, c) = (g.window_area(), heads * d);
                    let moved = moved_output(&qkv, r, delta, g, heads, d);
                    let shape = (g.windows(), n, c);
                    let zeros =
                        Tensor::zeros(shape, candle_core::DType::F32, &Device::Cpu).unwrap();
                    let moved = Tensor::from_vec(moved, shape, &Device::Cpu).unwrap();
                    let projected = (block.attention.output.forward(&moved).unwrap()
                        - block.attention.output.forward(&zeros).unwrap())
                    .unwrap();
                    let partition = WindowPartition::new(g, 1).unwrap();
                    let attended =
                        (&saved.attended + partition.tokens(&projected, g).unwrap()).unwrap();
                    let mid = (&x + block.norm_before.forward(&attended).unwrap()).unwrap();
                    let hidden = block.fc1.forward(&mid).unwrap();
                    let act = crate::model::kernels::gelu(&hidden).unwrap();
                    let mlp = block.fc2.forward(&act).unwrap();
                    (&mid + block.norm_after.forward(&mlp).unwrap()).unwrap()
                } else {
                    y
                };
                k += 1;
            }
            if let Some(merge) = &stage.downsample {
                let reduced = merge
                    .reduction
                    .forward(&merge_children(&x, grid).unwrap())
                    .unwrap();
                x = merge.norm.forward(&reduced).unwrap();
                grid = (grid.0.div_ceil(2), grid.1.div_ceil(2));
            }
        }
        let logits = values(&swin.0.head.forward(&x).unwrap()).unwrap();
        f64::from(logits[target])
    }

    #[test]
    fn the_tiny_model_has_the_windows_v2_fixes() {
        let (swin, _) = tiny();
        let g = swin.0.config.geometries(40, 40);
        let rows: Vec<_> = g
            .iter()
            .map(|g| (g.height, g.padded_height, g.window, g.shift))
            .collect();
        assert_eq!(
            rows,
            [
                (10, 12, 4, 0),
                (10, 12, 4, 2),
                (5, 8, 4, 0),
                (5, 8, 4, 2),
                (3, 4, 2, 0)
            ]
        );
    }

    #[test]
    fn attention_gradients_match_finite_differences() {
        let (swin, pixels) = tiny();
        for target in [None, Some(3)] {
            let (logits, traces, grads) = swin.trace_with_gradients(&pixels, target).unwrap();
            assert_eq!(grads.target, target.unwrap_or_else(|| argmax(&logits)));
            let target = grads.target;
            // Smaller than V1's 1e-2: with logit scales up to ~27 the second-order term
            // is larger (measured: the error shrinks as δ², 0.04 at 1e-2, 3e-4 at 1e-3).
            check_finite_differences(&grads, &traces, 2e-3, |k, r, delta| {
                logit_with_attention_moved(&swin, &pixels, k, r, delta, target)
            });
        }
    }
}
