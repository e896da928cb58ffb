//! What the backward passes of both Swin versions share: layer norm and activation
//! derivatives on plain buffers, moving gradient rows between tokens and window places, and
//! the class a backward pass explains.

use candle_core::Tensor;
use candle_nn::{Activation, LayerNorm};
use rayon::prelude::*;

pub(super) use super::kernels::gather_rows;
use super::kernels::{gelu_backward, layer_norm_backward, with_f32, Dense};
use super::layers::Head;
use crate::error::{Error, Result};
use crate::geometry::Geometry;

/// The class to explain: `target` when it is one of `logits`' indices, else the most probable.
///
/// # Errors
/// [`Error::InvalidArgument`] for a target that is not a class index.
pub(super) fn resolve_target(target: Option<usize>, logits: &[f32]) -> Result<usize> {
    match target {
        Some(t) if t < logits.len() => Ok(t),
        Some(t) => Err(Error::InvalidArgument(format!(
            "class {t} is out of range: the model has {} classes (0–{})",
            logits.len(),
            logits.len().saturating_sub(1)
        ))),
        None => Ok(argmax(logits)),
    }
}

impl Head {
    /// The gradient of logit `target` with respect to the last stage's tokens `last`
    /// (`[1, T, C]`): y_c = W_c · mean_t(norm(x_t)) + b_c, so every token's normed output gets
    /// W_c / T.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a headless model or a target beyond its classes.
    pub(super) fn backward(&self, last: &Tensor, target: usize) -> Result<Vec<f32>> {
        let classifier = self.classifier.as_ref().ok_or_else(|| {
            Error::InvalidArgument("the model has no classifier to explain a class of".into())
        })?;
        let w = classifier.weight_row(target).ok_or_else(|| {
            Error::InvalidArgument(format!("class {target} is beyond the model's classes"))
        })?;
        let tokens = last.dim(1)?;
        let share: Vec<f32> = w.iter().map(|&v| v / tokens as f32).collect();
        norm_backward(&self.norm, last, &share.repeat(tokens))
    }
}

/// `dy ← dy·act'(pre)` for the MLP activation, given its pre-activation.
pub(super) fn activation_backward(
    activation: Activation,
    pre: &Tensor,
    dy: &mut [f32],
) -> Result<()> {
    with_f32(pre, |hidden| match activation {
        Activation::Gelu => {
            gelu_backward(hidden, dy);
            Ok(())
        }
        Activation::Relu => {
            for (d, &h) in dy.iter_mut().zip(hidden) {
                if h <= 0.0 {
                    *d = 0.0;
                }
            }
            Ok(())
        }
        other => Err(Error::Model(format!(
            "class-specific explanations need the MLP activation's derivative, which is \
             implemented for gelu and relu, not {other:?}"
        ))),
    })
}

pub(super) fn values(t: &Tensor) -> Result<Vec<f32>> {
    Ok(t.flatten_all()?.to_vec1::<f32>()?)
}

/// The gradient with respect to `mid` of a pre-norm MLP branch with its residual,
/// `out = mid + fc2(act(fc1(norm(mid))))`, given ∂/∂out; `hidden` is fc1's saved output.
pub(super) fn pre_norm_mlp_backward(
    norm: &LayerNorm,
    (fc1, fc2): (&Dense, &Dense),
    activation: Activation,
    mid: &Tensor,
    hidden: &Tensor,
    d_out: &[f32],
) -> Result<Vec<f32>> {
    let mut d_hidden = fc2.backward_input(d_out)?;
    activation_backward(activation, hidden, &mut d_hidden)?;
    let d_normed = fc1.backward_input(&d_hidden)?;
    let mut d_mid = norm_backward(norm, mid, &d_normed)?;
    add_assign(&mut d_mid, d_out);
    Ok(d_mid)
}

/// `dx` of a layer norm whose input was `x`, given `dy`.
pub(super) fn norm_backward(norm: &LayerNorm, x: &Tensor, dy: &[f32]) -> Result<Vec<f32>> {
    with_f32(norm.weight(), |gamma| {
        with_f32(x, |x| Ok(layer_norm_backward(x, gamma, norm.eps(), dy)))
    })
}

pub(super) fn add_assign(a: &mut [f32], b: &[f32]) {
    const CHUNK: usize = 16 * 1024;
    a.par_chunks_mut(CHUNK)
        .zip(b.par_chunks(CHUNK))
        .for_each(|(a, b)| {
            for (a, &b) in a.iter_mut().zip(b) {
                *a += b;
            }
        });
}

/// The inverse of [`gather_rows`] for an index that names every one of `tokens` rows once:
/// `out[index[place]] = rows[place]`, padding places dropped.
pub(super) fn scatter_rows(index: &[u32], rows: &[f32], c: usize, tokens: usize) -> Vec<f32> {
    let mut slot = vec![Geometry::PADDING; tokens];
    for (place, &t) in index.iter().enumerate() {
        if let Some(s) = slot.get_mut(t as usize) {
            *s = place as u32;
        }
    }
    gather_rows(&slot, rows, c)
}

/// The index of the largest logit (the first of equal ones).
pub(super) fn argmax(logits: &[f32]) -> usize {
    logits
        .iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |best, (i, &v)| {
            if v > best.1 {
                (i, v)
            } else {
                best
            }
        })
        .0
}

/// For finite-difference tests: the change of a block's attention output `[nW, M², C]` when
/// its probabilities move by `delta·r` (`r` laid out as the probabilities), `(δ·r)·V` per
/// window and head, with the values read from the fused projection `qkv` `[nW, M², 3·C]`.
#[cfg(test)]
pub(super) fn moved_output(
    qkv: &[f32],
    r: &[f32],
    delta: f32,
    g: &Geometry,
    heads: usize,
    d: usize,
) -> Vec<f32> {
    let (n, c) = (g.window_area(), heads * d);
    let mut moved = vec![0f32; g.windows() * n * c];
    for w in 0..g.windows() {
        for h in 0..heads {
            for i in 0..n {
                for j in 0..n {
                    let e = delta * r[((w * heads + h) * n + i) * n + j];
                    let v = &qkv[(w * n + j) * 3 * c + 2 * c + h * d..][..d];
                    let o = &mut moved[(w * n + i) * c + h * d..][..d];
                    for (o, &v) in o.iter_mut().zip(v) {
                        *o += e * v;
                    }
                }
            }
        }
    }
    moved
}

/// For finite-difference tests: a `[1, 3, side, side]` image of `sin(i·step)` over the pixel
/// index `i`, smooth and with every channel different.
#[cfg(test)]
pub(super) fn wave_pixels(side: usize, step: f32) -> Tensor {
    let pixels: Vec<f32> = (0..3 * side * side)
        .map(|i| ((i as f32) * step).sin())
        .collect();
    Tensor::from_vec(pixels, (1, 3, side, side), &candle_core::Device::Cpu)
        .expect("the pixels fill the shape")
}

/// For finite-difference tests: checks every block's attention gradient `grads.blocks[k]`
/// against the central difference of `logit(k, r, δ)` (the target logit with block `k`'s
/// probabilities moved by `δ·r`) along a fixed random direction `r`, within 2e-3 of
/// Σ|g·r| plus 1e-4.
#[cfg(test)]
pub(super) fn check_finite_differences(
    grads: &crate::trace::AttentionGradients,
    traces: &[crate::trace::BlockTrace],
    delta: f32,
    logit: impl Fn(usize, &[f32], f32) -> f64,
) {
    for (k, g) in grads.blocks.iter().enumerate() {
        assert_eq!(g.len(), traces[k].attention.len());
        let mut rng = crate::rng::SplitMix64(11 + k as u64);
        let r: Vec<f32> = (0..g.len()).map(|_| rng.next_f32() * 2.0 - 1.0).collect();
        let predicted: f64 = g.iter().zip(&r).map(|(&g, &r)| f64::from(g * r)).sum();
        let scale: f64 = g
            .iter()
            .zip(&r)
            .map(|(&g, &r)| f64::from((g * r).abs()))
            .sum();
        let measured = (logit(k, &r, delta) - logit(k, &r, -delta)) / (2.0 * f64::from(delta));
        assert!(
            (measured - predicted).abs() <= 2e-3 * scale + 1e-4,
            "block {k}: finite difference {measured}, gradient {predicted} (scale {scale})"
        );
    }
}
