//! Fused multi-head attention inside windows: a whole window (or, when windows are too few
//! for the threads, one head of one) in one task — scores, bias, mask, softmax and the
//! weighted sum — so thousands of tiny products pay no packing or dispatch each.

use candle_core::{Device, Tensor};
use rayon::prelude::*;

use super::{exp, with_f32, zeros, LANES};
use crate::error::{Error, Result};

/// The shapes of one fused window-attention call.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AttentionShape {
    /// Windows in the batch (B·nW).
    pub windows: usize,
    /// Tokens per window (M²).
    pub tokens: usize,
    /// Attention heads.
    pub heads: usize,
    /// Channels per head.
    pub head_dim: usize,
}

/// Multi-head attention inside every window.
///
/// `qkv`: `[windows, tokens, 3, heads, head_dim]` (the fused projection's output);
/// `bias`: `[heads, tokens, tokens]`, added to every window; `mask`: `[nW, tokens, tokens]`,
/// added to window `w` as `mask[w mod nW]`. Scores are `(s_h·q)·kᵀ + bias + mask`, then softmax,
/// where the query scale `s_h` of head `h` is `query_scale[h]`, or `1/√d` when `None` (Swin V2
/// passes its normalized queries and keys with each head's logit scale).
/// Returns the attended tokens `[windows, tokens, heads·head_dim]` and the probabilities
/// `[windows, heads, tokens, tokens]`, row-major; a plain buffer, so that recording them in a
/// trace moves it instead of copying megabytes out of a tensor.
pub(crate) fn window_attention(
    qkv: &Tensor,
    bias: &Tensor,
    mask: Option<&Tensor>,
    query_scale: Option<&[f32]>,
    s: AttentionShape,
) -> Result<(Tensor, Vec<f32>)> {
    let AttentionShape {
        windows,
        tokens: n,
        heads,
        head_dim: d,
    } = s;
    let c = heads * d;
    let scale = head_scales(query_scale, s)?;
    let qkv = qkv.contiguous()?;
    let bias = bias.contiguous()?;
    let mask = mask.map(Tensor::contiguous).transpose()?;
    if qkv.elem_count() != windows * n * 3 * c || bias.elem_count() != heads * n * n {
        return Err(Error::Model(format!(
            "window attention got qkv {:?} and bias {:?} for {s:?}",
            qkv.dims(),
            bias.dims()
        )));
    }
    let mut out = zeros(windows * n * c);
    let mut probs = zeros(windows * heads * n * n);
    with_f32(&qkv, |qkv| {
        with_f32(&bias, |bias| {
            let mut run = |mask: Option<&[f32]>| -> Result<()> {
                let mask_windows = match mask {
                    Some(m) if m.is_empty() || m.len() % (n * n) != 0 => {
                        return Err(Error::Model("shift mask has the wrong size".into()))
                    }
                    Some(m) => m.len() / (n * n),
                    None => 1,
                };
                let window_mask = |w: usize| {
                    mask.map(|m| {
                        let i = w % mask_windows;
                        &m[i * n * n..(i + 1) * n * n]
                    })
                };
                if windows >= 2 * rayon::current_num_threads() {
                    out.par_chunks_mut(n * c)
                        .zip(probs.par_chunks_mut(heads * n * n))
                        .zip(qkv.par_chunks(n * 3 * c))
                        .enumerate()
                        .for_each_init(
                            || Scratch::new(s),
                            |scratch, (w, ((out, probs), qkv))| {
                                attend_window(Window {
                                    qkv,
                                    bias,
                                    mask: window_mask(w),
                                    scale: &scale,
                                    out,
                                    probs,
                                    shape: s,
                                    scratch,
                                })
                            },
                        );
                    return Ok(());
                }
                // Too few windows to keep every thread busy (a ViT has one): one task per
                // head instead, each writing its own [n, d] block, interleaved afterwards.
                // The arithmetic is the same, so are the bits.
                let mut heads_out = zeros(windows * heads * n * d);
                heads_out
                    .par_chunks_mut(n * d)
                    .zip(probs.par_chunks_mut(n * n))
                    .enumerate()
                    .for_each_init(
                        || Scratch::new(s),
                        |scratch, (wh, (out, probs))| {
                            let (w, h) = (wh / heads, wh % heads);
                            attend_head(AttendHead {
                                qkv: &qkv[w * n * 3 * c..(w + 1) * n * 3 * c],
                                bias: &bias[h * n * n..(h + 1) * n * n],
                                mask: window_mask(w),
                                scale: scale[h],
                                head: h,
                                out,
                                out_row: (d, 0),
                                probs,
                                shape: s,
                                scratch,
                            })
                        },
                    );
                out.par_chunks_mut(c).enumerate().for_each(|(r, row)| {
                    let (w, i) = (r / n, r % n);
                    for (h, dst) in row.chunks_mut(d.max(1)).enumerate() {
                        let at = ((w * heads + h) * n + i) * d;
                        dst.copy_from_slice(&heads_out[at..at + d]);
                    }
                });
                Ok(())
            };
            match &mask {
                Some(m) => with_f32(m, |m| run(Some(m))),
                None => run(None),
            }
        })
    })?;
    Ok((Tensor::from_vec(out, (windows, n, c), &Device::Cpu)?, probs))
}

/// Every head's query scale: `query_scale` as given (checked against the head count), or
/// `1/√d` for all.
pub(super) fn head_scales(query_scale: Option<&[f32]>, s: AttentionShape) -> Result<Vec<f32>> {
    match query_scale {
        Some(scale) if scale.len() != s.heads => Err(Error::Model(format!(
            "window attention got {} query scales for {} heads",
            scale.len(),
            s.heads
        ))),
        Some(scale) => Ok(scale.to_vec()),
        None => Ok(vec![(s.head_dim as f32).powf(-0.5); s.heads]),
    }
}

/// One window's inputs and outputs: `qkv` `[n, 3, heads, d]`, `bias` `[heads, n, n]`, `mask`
/// `[n, n]`; `out` `[n, heads·d]` and `probs` `[heads, n, n]` are written.
struct Window<'a> {
    qkv: &'a [f32],
    bias: &'a [f32],
    mask: Option<&'a [f32]>,
    /// The query scale of every head.
    scale: &'a [f32],
    out: &'a mut [f32],
    probs: &'a mut [f32],
    shape: AttentionShape,
    scratch: &'a mut Scratch,
}

/// Per-head working copies, allocated once per thread rather than once per window: q scaled
/// `[n, d]`; kᵀ `[d, np]` and v `[n, dp]` padded with zeros to whole vectors (np, dp multiples
/// of LANES), so every inner loop is a run of full-width vector operations on a LANES-wide
/// accumulator that stays in a register. Only the unpadded places are ever written, so the
/// padding stays zero from window to window.
struct Scratch {
    q: Vec<f32>,
    kt: Vec<f32>,
    v: Vec<f32>,
    row: Vec<f32>,
}

impl Scratch {
    fn new(s: AttentionShape) -> Scratch {
        let (n, d) = (s.tokens, s.head_dim);
        let (np, dp) = (n.div_ceil(LANES) * LANES, d.div_ceil(LANES) * LANES);
        Scratch {
            q: vec![0f32; n * d],
            kt: vec![0f32; d * np],
            v: vec![0f32; n * dp],
            row: vec![0f32; np],
        }
    }
}

/// One window, all heads.
#[inline(always)]
fn attend_window_inline(window: Window<'_>) {
    let Window {
        qkv,
        bias,
        mask,
        scale,
        out,
        probs,
        shape,
        scratch,
    } = window;
    let AttentionShape {
        tokens: n,
        heads,
        head_dim: d,
        ..
    } = shape;
    for h in 0..heads {
        attend_head_inline(AttendHead {
            qkv,
            bias: &bias[h * n * n..(h + 1) * n * n],
            mask,
            scale: scale[h],
            head: h,
            out,
            out_row: (heads * d, h * d),
            probs: &mut probs[h * n * n..(h + 1) * n * n],
            shape,
            scratch,
        });
    }
}

/// One head of one window: `qkv` `[n, 3, heads, d]` (the window's), `bias` and `probs` the
/// head's `[n, n]`; query `i`'s output goes to `out[i·stride + offset..][..d]` with
/// `out_row = (stride, offset)`: the window's `[n, heads·d]` rows, or a head's own `[n, d]`.
struct AttendHead<'a> {
    qkv: &'a [f32],
    bias: &'a [f32],
    mask: Option<&'a [f32]>,
    scale: f32,
    head: usize,
    out: &'a mut [f32],
    out_row: (usize, usize),
    probs: &'a mut [f32],
    shape: AttentionShape,
    scratch: &'a mut Scratch,
}

#[inline(always)]
fn attend_head_inline(job: AttendHead<'_>) {
    let AttendHead {
        qkv,
        bias,
        mask,
        scale,
        head: h,
        out,
        out_row: (stride, offset),
        probs,
        shape:
            AttentionShape {
                tokens: n,
                heads,
                head_dim: d,
                ..
            },
        scratch: Scratch { q, kt, v, row },
    } = job;
    let c = heads * d;
    let np = n.div_ceil(LANES) * LANES;
    let dp = d.div_ceil(LANES) * LANES;
    for t in 0..n {
        let src = &qkv[t * 3 * c..(t + 1) * 3 * c];
        let (qr, kr, vr) = (
            &src[h * d..(h + 1) * d],
            &src[c + h * d..c + (h + 1) * d],
            &src[2 * c + h * d..2 * c + (h + 1) * d],
        );
        for (dst, &x) in q[t * d..(t + 1) * d].iter_mut().zip(qr) {
            *dst = x * scale;
        }
        for (i, &x) in kr.iter().enumerate() {
            kt[i * np + t] = x;
        }
        v[t * dp..t * dp + d].copy_from_slice(vr);
    }
    for i in 0..n {
        let qi = &q[i * d..(i + 1) * d];
        // Scores in the reference's order: q·k (summed over channels in order), + bias,
        // + mask.
        for (chunk, out) in row.chunks_exact_mut(LANES).enumerate() {
            let mut acc = [0f32; LANES];
            for (k, &qk) in qi.iter().enumerate() {
                let kr = &kt[k * np + chunk * LANES..k * np + (chunk + 1) * LANES];
                for (a, &kv) in acc.iter_mut().zip(kr) {
                    *a += qk * kv;
                }
            }
            out.copy_from_slice(&acc);
        }
        let p = &mut probs[i * n..(i + 1) * n];
        for ((pj, &sj), &bj) in p.iter_mut().zip(row.iter()).zip(&bias[i * n..(i + 1) * n]) {
            *pj = sj + bj;
        }
        if let Some(m) = mask {
            for (pj, &mj) in p.iter_mut().zip(&m[i * n..(i + 1) * n]) {
                *pj += mj;
            }
        }
        let max = p.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
        for pj in p.iter_mut() {
            *pj = exp(*pj - max);
        }
        let sum: f32 = p.iter().sum();
        let inv = 1.0 / sum;
        for pj in p.iter_mut() {
            *pj *= inv;
        }
        let o = &mut out[i * stride + offset..i * stride + offset + d];
        for (chunk, o) in o.chunks_mut(LANES).enumerate() {
            let mut acc = [0f32; LANES];
            for (j, &pj) in p.iter().enumerate() {
                let vr = &v[j * dp + chunk * LANES..j * dp + (chunk + 1) * LANES];
                for (a, &vv) in acc.iter_mut().zip(vr) {
                    *a += pj * vv;
                }
            }
            o.copy_from_slice(&acc[..o.len()]);
        }
    }
}

simd_dispatch!(attend_window => attend_window_inline(window: Window<'_>));
simd_dispatch!(attend_head => attend_head_inline(job: AttendHead<'_>));

#[cfg(test)]
mod tests {
    use super::super::testing::{on_threads, random, SHAPE};
    use super::*;

    /// A window at a time (many windows for the threads) or a head at a time (too few): the
    /// same probabilities and outputs to the bit, with and without a shift mask.
    #[test]
    fn window_and_head_tasks_give_the_same_bits() {
        let s = SHAPE;
        let (n, c) = (s.tokens, s.heads * s.head_dim);
        let mut rng = crate::rng::SplitMix64(5);
        let cpu = &Device::Cpu;
        let qkv = random(&mut rng, s.windows * n * 3 * c);
        let qkv = Tensor::from_vec(qkv, (s.windows, n, 3 * c), cpu).unwrap();
        let bias = random(&mut rng, s.heads * n * n);
        let bias = Tensor::from_vec(bias, (s.heads, n, n), cpu).unwrap();
        let mask = Tensor::from_vec(random(&mut rng, n * n), (1, n, n), cpu).unwrap();
        for mask in [None, Some(&mask)] {
            let run = |threads: usize| {
                let (out, probs) =
                    on_threads(threads, || window_attention(&qkv, &bias, mask, None, s)).unwrap();
                (out.flatten_all().unwrap().to_vec1::<f32>().unwrap(), probs)
            };
            let (by_window, by_head) = (run(1), run(4));
            assert!(by_window.1.iter().all(|p| p.is_finite()));
            assert_eq!(by_window, by_head);
        }
    }
}
