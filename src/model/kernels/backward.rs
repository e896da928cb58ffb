//! The backward kernels: gradients with respect to activations, never weights.
//!
//! An explanation needs ∂y_c/∂A for every block's attention A and nothing about the weights, so
//! the backward pass is about one forward pass of work: `dx = dy·W` through each dense layer,
//! the layer-norm and GELU derivatives, and window attention's backward, fused per window like
//! its forward. Every reduction runs in a fixed order, so gradients are the same bits on every
//! run and thread count.

use rayon::prelude::*;

use super::{erf, exp, zeros, AttentionShape, LANES};
use crate::error::{Error, Result};

/// The gradient with respect to the input `x` `[rows, dim]` of a layer norm with scale `gamma`,
/// given the gradient `dy` with respect to its output:
/// `dx = rstd·(g − mean(g) − x̂·mean(g·x̂))` with `g = dy·γ`, `x̂` the normalized input.
/// Statistics are recomputed from `x` in f64.
pub(crate) fn layer_norm_backward(x: &[f32], gamma: &[f32], eps: f64, dy: &[f32]) -> Vec<f32> {
    let dim = gamma.len();
    let mut dx = zeros(x.len());
    if dim == 0 {
        return dx;
    }
    dx.par_chunks_mut(dim)
        .zip(x.par_chunks(dim).zip(dy.par_chunks(dim)))
        .for_each(|(dx, (x, dy))| {
            let n = dim as f64;
            let mean = x.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
            let var = x
                .iter()
                .map(|&v| (f64::from(v) - mean).powi(2))
                .sum::<f64>()
                / n;
            let rstd = 1.0 / (var + eps).sqrt();
            let (mut g_mean, mut gx_mean) = (0f64, 0f64);
            for ((&xv, &d), &w) in x.iter().zip(dy).zip(gamma) {
                let g = f64::from(d) * f64::from(w);
                g_mean += g;
                gx_mean += g * (f64::from(xv) - mean) * rstd;
            }
            g_mean /= n;
            gx_mean /= n;
            for (((o, &xv), &d), &w) in dx.iter_mut().zip(x).zip(dy).zip(gamma) {
                let g = f64::from(d) * f64::from(w);
                let xhat = (f64::from(xv) - mean) * rstd;
                *o = (rstd * (g - g_mean - xhat * gx_mean)) as f32;
            }
        });
    dx
}

/// d GELU(x)/dx of the exact GELU: Φ(x) + x·φ(x).
#[inline(always)]
fn gelu_derivative(x: f32) -> f32 {
    const INV_SQRT_2PI: f32 = 0.398_942_3;
    0.5 * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2)) + x * INV_SQRT_2PI * exp(-0.5 * x * x)
}

#[inline(always)]
fn gelu_backward_inline(x: &[f32], dy: &mut [f32]) {
    for (d, &v) in dy.iter_mut().zip(x) {
        *d *= gelu_derivative(v);
    }
}

simd_dispatch!(gelu_backward_slice => gelu_backward_inline(x: &[f32], dy: &mut [f32]));

/// `dy ← dy·GELU'(x)`: the gradient through the exact GELU of the pre-activation `x`.
pub(crate) fn gelu_backward(x: &[f32], dy: &mut [f32]) {
    const CHUNK: usize = 16 * 1024;
    dy.par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK))
        .for_each(|(d, x)| gelu_backward_slice(x, d));
}

/// The backward of [`super::window_attention`].
///
/// `qkv` `[windows, tokens, 3·heads·head_dim]` and `probs` `[windows, heads, tokens, tokens]`
/// as the forward made them, `d_out` the gradient with respect to its attended tokens
/// `[windows, tokens, heads·head_dim]`. Returns ∂/∂probs (same layout as `probs`) and, with
/// `input_gradient`, ∂/∂qkv (same layout as `qkv`): through the softmax
/// (`dS = A·(dA − rowsum(dA·A))`) and the scaled product, the bias and mask having none.
/// `query_scale` is the forward's (per head; `None` for `1/√d`).
pub(crate) fn window_attention_backward(
    qkv: &[f32],
    probs: &[f32],
    d_out: &[f32],
    query_scale: Option<&[f32]>,
    s: AttentionShape,
    input_gradient: bool,
) -> Result<(Vec<f32>, Option<Vec<f32>>)> {
    let AttentionShape {
        windows,
        tokens: n,
        heads,
        head_dim: d,
    } = s;
    let c = heads * d;
    let scale = super::attention::head_scales(query_scale, s)?;
    if qkv.len() != windows * n * 3 * c
        || probs.len() != windows * heads * n * n
        || d_out.len() != windows * n * c
    {
        return Err(Error::Model(format!(
            "window attention backward got {} qkv, {} probability and {} gradient values for {s:?}",
            qkv.len(),
            probs.len(),
            d_out.len()
        )));
    }
    let mut d_probs = zeros(probs.len());
    let mut d_qkv = if input_gradient {
        zeros(qkv.len())
    } else {
        Vec::new()
    };
    if windows < 2 * rayon::current_num_threads() {
        // Too few windows to keep every thread busy (a ViT has one): a task per head, as in
        // the forward; each writes its own [n, 3·d] block of ∂/∂qkv, interleaved afterwards.
        let mut heads_qkv = if input_gradient {
            zeros(windows * heads * n * 3 * d)
        } else {
            Vec::new()
        };
        let head_job = |scratch: &mut GradScratch,
                        wh: usize,
                        d_probs: &mut [f32],
                        d_qkv: Option<&mut [f32]>| {
            let (w, h) = (wh / heads, wh % heads);
            attend_head_backward(GradHead {
                qkv: &qkv[w * n * 3 * c..(w + 1) * n * 3 * c],
                probs: &probs[wh * n * n..(wh + 1) * n * n],
                d_out: &d_out[w * n * c..(w + 1) * n * c],
                d_probs,
                d_qkv: d_qkv.map(|out| (out, 3 * d, [0, d, 2 * d])),
                scale: scale[h],
                head: h,
                shape: s,
                scratch,
            })
        };
        let tasks = d_probs.par_chunks_mut(n * n).enumerate();
        if !input_gradient {
            tasks.for_each_init(
                || GradScratch::new(s),
                |scratch, (wh, d_probs)| head_job(scratch, wh, d_probs, None),
            );
            return Ok((d_probs, None));
        }
        tasks
            .zip(heads_qkv.par_chunks_mut((n * 3 * d).max(1)))
            .for_each_init(
                || GradScratch::new(s),
                |scratch, ((wh, d_probs), out)| head_job(scratch, wh, d_probs, Some(out)),
            );
        d_qkv
            .par_chunks_mut((3 * c).max(1))
            .enumerate()
            .for_each(|(r, row)| {
                let (w, i) = (r / n, r % n);
                for (part, dst) in row.chunks_mut(c.max(1)).enumerate() {
                    for (h, dst) in dst.chunks_mut(d.max(1)).enumerate() {
                        let at = ((w * heads + h) * n + i) * 3 * d + part * d;
                        dst.copy_from_slice(&heads_qkv[at..at + d]);
                    }
                }
            });
        return Ok((d_probs, Some(d_qkv)));
    }
    let jobs = d_probs
        .par_chunks_mut(heads * n * n)
        .zip(qkv.par_chunks(n * 3 * c))
        .zip(probs.par_chunks(heads * n * n))
        .zip(d_out.par_chunks(n * c));
    let run = |scratch: &mut GradScratch,
               (((d_probs, qkv), probs), d_out): WindowJob<'_>,
               d_qkv: Option<&mut [f32]>| {
        attend_window_backward(GradWindow {
            qkv,
            probs,
            d_out,
            d_probs,
            d_qkv,
            scale: &scale,
            shape: s,
            scratch,
        })
    };
    if input_gradient {
        jobs.zip(d_qkv.par_chunks_mut(n * 3 * c)).for_each_init(
            || GradScratch::new(s),
            |scratch, (job, d_qkv)| run(scratch, job, Some(d_qkv)),
        );
        Ok((d_probs, Some(d_qkv)))
    } else {
        jobs.for_each_init(
            || GradScratch::new(s),
            |scratch, job| run(scratch, job, None),
        );
        Ok((d_probs, None))
    }
}

/// One window's slices of ∂/∂probs, qkv, probs and ∂/∂out, as the parallel zip hands them out.
type WindowJob<'a> = (((&'a mut [f32], &'a [f32]), &'a [f32]), &'a [f32]);

/// One window's backward: inputs as in [`window_attention_backward`], restricted to the
/// window; `d_probs` `[heads, n, n]` and `d_qkv` `[n, 3·c]` are written.
struct GradWindow<'a> {
    qkv: &'a [f32],
    probs: &'a [f32],
    d_out: &'a [f32],
    d_probs: &'a mut [f32],
    d_qkv: Option<&'a mut [f32]>,
    /// The query scale of every head.
    scale: &'a [f32],
    shape: AttentionShape,
    scratch: &'a mut GradScratch,
}

/// One head's operands laid out for full-width vector loops, once per thread: vᵀ `[d, np]`
/// for dA = dO·Vᵀ; Q, K and dO as rows padded to `dp`; dS row by row and dSᵀ, Aᵀ column by
/// column, so each of dQ = dS·K, dK = dSᵀ·Q and dV = Aᵀ·dO sums one output row in registers
/// and writes it once. Padding entries stay zero from head to head.
struct GradScratch {
    vt: Vec<f32>,
    row: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    go: Vec<f32>,
    ds: Vec<f32>,
    ds_t: Vec<f32>,
    a_t: Vec<f32>,
}

impl GradScratch {
    fn new(s: AttentionShape) -> GradScratch {
        let np = s.tokens.div_ceil(LANES) * LANES;
        let dp = s.head_dim.div_ceil(LANES) * LANES;
        let (rows, square) = (s.tokens * dp, s.tokens * np);
        GradScratch {
            vt: vec![0f32; s.head_dim * np],
            row: vec![0f32; np],
            q: vec![0f32; rows],
            k: vec![0f32; rows],
            go: vec![0f32; rows],
            ds: vec![0f32; square],
            ds_t: vec![0f32; square],
            a_t: vec![0f32; square],
        }
    }
}

/// `out[..] = Σ_j weights[j]·rows[j]` for rows of `dp` values (`dp` a multiple of LANES),
/// summed in order of `j` one LANES-wide accumulator at a time; `out` gets the first
/// `out.len()` sums.
#[inline(always)]
fn weighted_rows(weights: &[f32], rows: &[f32], dp: usize, out: &mut [f32]) {
    for (chunk, out) in out.chunks_mut(LANES).enumerate() {
        let mut acc = [0f32; LANES];
        for (j, &w) in weights.iter().enumerate() {
            let r = &rows[j * dp + chunk * LANES..j * dp + (chunk + 1) * LANES];
            for (a, &x) in acc.iter_mut().zip(r) {
                *a += w * x;
            }
        }
        out.copy_from_slice(&acc[..out.len()]);
    }
}

#[inline(always)]
fn attend_window_backward_inline(window: GradWindow<'_>) {
    let GradWindow {
        qkv,
        probs,
        d_out,
        d_probs,
        mut d_qkv,
        scale,
        shape,
        scratch,
    } = window;
    let AttentionShape {
        tokens: n,
        heads,
        head_dim: d,
        ..
    } = shape;
    let c = heads * d;
    for h in 0..heads {
        attend_head_backward_inline(GradHead {
            qkv,
            probs: &probs[h * n * n..(h + 1) * n * n],
            d_out,
            d_probs: &mut d_probs[h * n * n..(h + 1) * n * n],
            d_qkv: d_qkv
                .as_deref_mut()
                .map(|d_qkv| (d_qkv, 3 * c, [h * d, c + h * d, 2 * c + h * d])),
            scale: scale[h],
            head: h,
            shape,
            scratch,
        });
    }
}

/// One head of one window's backward: `qkv` `[n, 3·c]` and `d_out` `[n, c]` the window's,
/// `probs` and `d_probs` the head's `[n, n]`; with `d_qkv = (out, stride, [q, k, v])`, row `i`
/// of the head's dQ, dK and dV goes to `out[i·stride + q..]`, `[.. + k..]`, `[.. + v..]`: the
/// window's `[n, 3·c]`, or a head's own `[n, 3·d]`.
struct GradHead<'a> {
    qkv: &'a [f32],
    probs: &'a [f32],
    d_out: &'a [f32],
    d_probs: &'a mut [f32],
    d_qkv: Option<(&'a mut [f32], usize, [usize; 3])>,
    scale: f32,
    head: usize,
    shape: AttentionShape,
    scratch: &'a mut GradScratch,
}

#[inline(always)]
fn attend_head_backward_inline(job: GradHead<'_>) {
    let GradHead {
        qkv,
        probs,
        d_out,
        d_probs,
        d_qkv,
        scale,
        head: h,
        shape:
            AttentionShape {
                tokens: n,
                heads,
                head_dim: d,
                ..
            },
        scratch:
            GradScratch {
                vt,
                row,
                q,
                k,
                go,
                ds,
                ds_t,
                a_t,
            },
    } = job;
    let c = heads * d;
    let np = n.div_ceil(LANES) * LANES;
    let dp = d.div_ceil(LANES) * LANES;
    for j in 0..n {
        let v = &qkv[j * 3 * c + 2 * c + h * d..j * 3 * c + 2 * c + (h + 1) * d];
        for (t, &x) in v.iter().enumerate() {
            vt[t * np + j] = x;
        }
    }
    for i in 0..n {
        let go = &d_out[i * c + h * d..i * c + (h + 1) * d];
        // dA[i, j] = Σ_t dO[i, t]·v[j, t], a LANES-wide run of j at a time.
        for (chunk, out) in row.chunks_exact_mut(LANES).enumerate() {
            let mut acc = [0f32; LANES];
            for (t, &g) in go.iter().enumerate() {
                let vr = &vt[t * np + chunk * LANES..t * np + (chunk + 1) * LANES];
                for (a, &v) in acc.iter_mut().zip(vr) {
                    *a += g * v;
                }
            }
            out.copy_from_slice(&acc);
        }
        d_probs[i * n..(i + 1) * n].copy_from_slice(&row[..n]);
    }
    let Some((d_qkv, stride, [q_at, k_at, v_at])) = d_qkv else {
        return;
    };
    // Through the softmax: dS = A·(dA − rowsum(dA·A)), times the score scale.
    for i in 0..n {
        let src = &qkv[i * 3 * c..(i + 1) * 3 * c];
        q[i * dp..i * dp + d].copy_from_slice(&src[h * d..(h + 1) * d]);
        k[i * dp..i * dp + d].copy_from_slice(&src[c + h * d..c + (h + 1) * d]);
        go[i * dp..i * dp + d].copy_from_slice(&d_out[i * c + h * d..i * c + (h + 1) * d]);
        let a = &probs[i * n..(i + 1) * n];
        let da = &d_probs[i * n..(i + 1) * n];
        let r: f32 = a.iter().zip(da).map(|(&a, &g)| a * g).sum();
        for j in 0..n {
            let s = a[j] * (da[j] - r) * scale;
            ds[i * np + j] = s;
            ds_t[j * np + i] = s;
            a_t[j * np + i] = a[j];
        }
    }
    for i in 0..n {
        let base = i * stride;
        // dQ_i = Σ_j dS[i, j]·K_j, dK_i = Σ_j dS[j, i]·Q_j, dV_i = Σ_j A[j, i]·dO_j.
        weighted_rows(
            &ds[i * np..i * np + n],
            k,
            dp,
            &mut d_qkv[base + q_at..base + q_at + d],
        );
        weighted_rows(
            &ds_t[i * np..i * np + n],
            q,
            dp,
            &mut d_qkv[base + k_at..base + k_at + d],
        );
        weighted_rows(
            &a_t[i * np..i * np + n],
            go,
            dp,
            &mut d_qkv[base + v_at..base + v_at + d],
        );
    }
}

simd_dispatch!(attend_window_backward => attend_window_backward_inline(window: GradWindow<'_>));
simd_dispatch!(attend_head_backward => attend_head_backward_inline(job: GradHead<'_>));

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};

    use super::super::testing::{on_threads, random, SHAPE};
    use super::*;

    /// A window at a time or a head at a time: the same ∂/∂probs and ∂/∂qkv to the bit.
    #[test]
    fn window_and_head_tasks_give_the_same_gradients() {
        let s = SHAPE;
        let (n, c) = (s.tokens, s.heads * s.head_dim);
        let mut rng = crate::rng::SplitMix64(9);
        let qkv = random(&mut rng, s.windows * n * 3 * c);
        let bias = random(&mut rng, s.heads * n * n);
        let bias = Tensor::from_vec(bias, (s.heads, n, n), &Device::Cpu).unwrap();
        let qkv_t = Tensor::from_vec(qkv.clone(), (s.windows, n, 3 * c), &Device::Cpu).unwrap();
        let (_, probs) = super::super::window_attention(&qkv_t, &bias, None, None, s).unwrap();
        let d_out = random(&mut rng, s.windows * n * c);
        for input_gradient in [false, true] {
            let run = |threads: usize| {
                on_threads(threads, || {
                    window_attention_backward(&qkv, &probs, &d_out, None, s, input_gradient)
                })
                .unwrap()
            };
            let (by_window, by_head) = (run(1), run(4));
            assert!(by_window.0.iter().any(|&g| g != 0.0));
            assert_eq!(by_window.1.is_some(), input_gradient);
            assert_eq!(by_window, by_head);
        }
    }
}
