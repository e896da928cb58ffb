//! CPU kernels for the places where candle's generic operators cost the most time in a Swin
//! forward pass: the dense layers, window attention and the exact GELU.
//!
//! Window attention is thousands of tiny matrix products (M² × head-dim, 49 × 32 for swin-tiny);
//! through generic batched products every one pays for packing and thread dispatch, and the
//! bias add, softmax and transposes each take another pass over memory. The fused kernel does a
//! whole window — all heads, scores, bias, mask, softmax and the weighted sum — in one task,
//! with windows spread over rayon's threads. GELU gets a branch-free `erf` so it vectorizes.
//!
//! The attention and GELU loops are written so that the compiler can vectorize them without
//! reordering any sum (every reduction runs in a fixed order), so their result does not depend
//! on the SIMD width the CPU offers. (The dense layers' `gemm` picks its kernel by CPU, so logits
//! may differ in the last bits between an AVX2 and an AVX-512 machine; on one machine every run
//! gives the same bits.)

use candle_core::{CpuStorage, CustomOp1, Device, Layout, Shape, Storage, Tensor};
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::geometry::Geometry;

/// Defines `$name`, which runs the `#[inline(always)]` function `$inner` compiled for the
/// widest vector unit this CPU has (AVX-512, then AVX2, then the x86-64 baseline).
macro_rules! simd_dispatch {
    ($name:ident => $inner:ident ( $($arg:ident : $ty:ty),* $(,)? )) => {
        fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512vl,avx512dq,avx2,fma")]
                fn wide($($arg: $ty),*) {
                    $inner($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                fn medium($($arg: $ty),*) {
                    $inner($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512vl")
                    && std::arch::is_x86_feature_detected!("avx512dq")
                {
                    // SAFETY: the CPU has the features `wide` is compiled for.
                    return unsafe { wide($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: the CPU has the features `medium` is compiled for.
                    return unsafe { medium($($arg),*) };
                }
            }
            $inner($($arg),*)
        }
    };
}

mod backward;

pub(crate) use backward::{gelu_backward, layer_norm_backward, window_attention_backward};

/// `len` values repeating `pattern` (zeros when it is `[0.0]`), written by all threads: a
/// buffer of megabytes filled by one thread alone, while the others wait for the next
/// parallel step, costs as much as the layer that reads it.
pub(crate) fn filled(len: usize, pattern: &[f32]) -> Vec<f32> {
    let mut out = Vec::with_capacity(len);
    let width = pattern.len().max(1);
    // Whole copies of the pattern per task, so every chunk starts at its first value.
    let chunk = width * (16 * 1024 / width).max(1);
    out.spare_capacity_mut()
        .par_chunks_mut(chunk)
        .for_each(|dst| {
            for (d, &v) in dst.iter_mut().zip(pattern.iter().cycle()) {
                d.write(v);
            }
        });
    // SAFETY: every one of the `len` slots was written above.
    unsafe { out.set_len(len) };
    out
}

/// `residual + bias` row by row (`bias` repeating every `bias.len()` values), written by all
/// threads.
fn seeded(residual: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
    let bias = bias.filter(|b| !b.is_empty()).unwrap_or(&[0.0]);
    // Whole rows per task, so every chunk starts at the bias's first value.
    let chunk = bias.len() * (16 * 1024 / bias.len()).max(1);
    let mut out = Vec::with_capacity(residual.len());
    out.spare_capacity_mut()
        .par_chunks_mut(chunk)
        .zip(residual.par_chunks(chunk))
        .for_each(|(dst, src)| {
            for ((d, &r), &b) in dst.iter_mut().zip(src).zip(bias.iter().cycle()) {
                d.write(r + b);
            }
        });
    // SAFETY: every one of the `residual.len()` slots was written above.
    unsafe { out.set_len(residual.len()) };
    out
}

/// Rows of `c` values: `out[place] = rows[index[place]]` for every place whose index is not
/// padding (those stay zero), `out` holding `index.len()` rows.
pub(crate) fn gather_rows(index: &[u32], rows: &[f32], c: usize) -> Vec<f32> {
    let mut out = zeros(index.len() * c);
    out.par_chunks_mut(c)
        .zip(index.par_iter())
        .for_each(|(out, &t)| {
            if t != Geometry::PADDING {
                let t = t as usize;
                out.copy_from_slice(&rows[t * c..(t + 1) * c]);
            }
        });
    out
}

/// `a + b` for two f32 tensors of one shape, by all threads: candle's own elementwise ops run
/// on a second thread pool that competes with rayon's for the cores.
pub(crate) fn add(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    if a.dims() != b.dims() {
        return Err(Error::Model(format!(
            "cannot add tensors of shapes {:?} and {:?}",
            a.dims(),
            b.dims()
        )));
    }
    let (a, b) = (a.contiguous()?, b.contiguous()?);
    const CHUNK: usize = 16 * 1024;
    let sum = with_f32(&a, |a| {
        with_f32(&b, |b| {
            let mut out = Vec::with_capacity(a.len());
            out.spare_capacity_mut()
                .par_chunks_mut(CHUNK)
                .zip(a.par_chunks(CHUNK).zip(b.par_chunks(CHUNK)))
                .for_each(|(dst, (a, b))| {
                    for ((d, &x), &y) in dst.iter_mut().zip(a).zip(b) {
                        d.write(x + y);
                    }
                });
            // SAFETY: every one of the `a.len()` slots was written above.
            unsafe { out.set_len(a.len()) };
            Ok(out)
        })
    })?;
    Ok(Tensor::from_vec(sum, a.dims(), &Device::Cpu)?)
}

/// `len` zeros, written by all threads (see [`filled`]).
pub(crate) fn zeros(len: usize) -> Vec<f32> {
    filled(len, &[0.0])
}

/// The contiguous f32 data of a CPU tensor.
pub(crate) fn with_f32<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> Result<R>) -> Result<R> {
    let (storage, layout) = t.storage_and_layout();
    let (start, end) = layout
        .contiguous_offsets()
        .ok_or_else(|| Error::Model("kernel input is not contiguous".into()))?;
    match &*storage {
        Storage::Cpu(CpuStorage::F32(data)) => f(&data[start..end]),
        _ => Err(Error::Model(
            "kernel input must be an f32 tensor on the CPU".into(),
        )),
    }
}

/// `e^x` for f32, branch-free so that it vectorizes: Cody–Waite range reduction
/// `x = k·ln2 + r` and a degree-6 polynomial for `e^r` on |r| ≤ ln2/2, within 2 ulp of the
/// exact value on the range where softmax needs it. Inputs are clamped to [−87, 88], so far
/// negative ones give about 1.6e-38 instead of underflowing to 0; NaN stays NaN.
#[inline(always)]
fn exp(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let x = x.clamp(-87.0, 88.0);
    let k = (x * std::f32::consts::LOG2_E).round_ties_even();
    let r = (x - k * LN2_HI) - k * LN2_LO;
    let p = 1.0 / 720.0;
    let p = p * r + 1.0 / 120.0;
    let p = p * r + 1.0 / 24.0;
    let p = p * r + 1.0 / 6.0;
    let p = p * r + 0.5;
    let p = p * r + 1.0;
    let p = p * r + 1.0;
    // 2^k by building the exponent bits; k is in [−126, 127] after the clamp.
    let two_k = f32::from_bits((((k as i32) + 127) as u32) << 23);
    p * two_k
}

/// `erf(x)` for f32 as the rational approximation `x·P(x²)/Q(x²)` on [−4, 4] (beyond which
/// erf is ±1 in f32), as Eigen and XLA compute it; within a few ulp of the exact value.
#[inline(always)]
fn erf(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let p = -2.726_142_3e-10;
    let p = p * x2 + 2.770_681_4e-8;
    let p = p * x2 + -2.101_024e-6;
    let p = p * x2 + -5.692_506_4e-5;
    let p = p * x2 + -7.349_906_3e-4;
    let p = p * x2 + -2.954_6e-3;
    let p = p * x2 + -1.609_603_3e-2;
    let q = -1.456_607_2e-5;
    let q = q * x2 + -2.133_740_6e-4;
    let q = q * x2 + -1.682_827e-3;
    let q = q * x2 + -7.373_329_5e-3;
    let q = q * x2 + -1.426_474e-2;
    x * p / q
}

/// The exact (erf) GELU, `x/2·(1 + erf(x/√2))`, as `nn.GELU()` computes it.
#[inline(always)]
fn gelu_one(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

#[inline(always)]
fn gelu_slice_inline(src: &[f32], dst: &mut [f32]) {
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = gelu_one(s);
    }
}

simd_dispatch!(gelu_slice => gelu_slice_inline(src: &[f32], dst: &mut [f32]));

struct Gelu;

impl CustomOp1 for Gelu {
    fn name(&self) -> &'static str {
        "swin-gelu-erf"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (start, end) = layout
            .contiguous_offsets()
            .ok_or_else(|| candle_core::Error::Msg("gelu input is not contiguous".into()))?;
        let CpuStorage::F32(data) = storage else {
            return Err(candle_core::Error::Msg("gelu takes f32".into()));
        };
        let src = &data[start..end];
        let mut dst = zeros(src.len());
        const CHUNK: usize = 16 * 1024;
        dst.par_chunks_mut(CHUNK)
            .zip(src.par_chunks(CHUNK))
            .for_each(|(d, s)| gelu_slice(s, d));
        Ok((CpuStorage::F32(dst), layout.shape().clone()))
    }
}

/// The exact GELU of every element of an f32 CPU tensor, in parallel and vectorized.
pub(crate) fn gelu(x: &Tensor) -> Result<Tensor> {
    Ok(x.contiguous()?.apply_op1_no_bwd(&Gelu)?)
}

/// A fully connected layer, `y = x·Wᵀ + b`, over the last dimension.
///
/// The weight is stored transposed (`[in, out]`, i.e. `W` column-major) and the product is
/// computed as `yᵀ = W·xᵀ`: that is the orientation `gemm`'s kernels read without repacking,
/// where `x·Wᵀ` through candle repacks the weight on every call (measured: a fifth of the
/// forward pass). The bias seeds the output instead of taking another pass over it.
#[derive(Debug)]
pub(crate) struct Dense {
    weight_t: Vec<f32>,
    bias: Option<Vec<f32>>,
    inputs: usize,
    outputs: usize,
    /// `W` itself (`[out, in]`), built on the first backward pass only: the orientation in
    /// which `gemm` reads it without repacking for `dx = dy·W`.
    weight: std::sync::OnceLock<Vec<f32>>,
}

impl Dense {
    /// From a `[out, in]` weight and an optional `[out]` bias.
    pub(crate) fn new(weight: &Tensor, bias: Option<&Tensor>) -> Result<Self> {
        let (outputs, inputs) = weight.dims2()?;
        let weight_t = weight
            .to_dtype(candle_core::DType::F32)?
            .t()?
            .contiguous()?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let bias = bias
            .map(|b| b.to_dtype(candle_core::DType::F32)?.to_vec1::<f32>())
            .transpose()?;
        if bias.as_ref().is_some_and(|b| b.len() != outputs) {
            return Err(Error::Model(format!(
                "a bias of the wrong length for a layer with {outputs} outputs"
            )));
        }
        Ok(Dense {
            weight_t,
            bias,
            inputs,
            outputs,
            weight: std::sync::OnceLock::new(),
        })
    }

    /// `[…, in]` → `[…, out]`.
    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_seeded(x, None)
    }

    /// `residual + layer(x)`, the residual seeding the product's output as the bias does, so a
    /// block's skip connection costs no pass of its own; `residual` has the output's shape.
    pub(crate) fn forward_residual(&self, x: &Tensor, residual: &Tensor) -> Result<Tensor> {
        self.forward_seeded(x, Some(residual))
    }

    fn forward_seeded(&self, x: &Tensor, residual: Option<&Tensor>) -> Result<Tensor> {
        let (k, o) = (self.inputs, self.outputs);
        let mut dims = x.dims().to_vec();
        if dims.last() != Some(&k) {
            return Err(Error::Model(format!(
                "a layer with {k} inputs got a tensor of shape {dims:?}"
            )));
        }
        let rows = x.elem_count() / k.max(1);
        let x = x.contiguous()?;
        let mut y = match (&self.bias, residual) {
            (_, Some(r)) => {
                if r.elem_count() != rows * o {
                    return Err(Error::Model(format!(
                        "a residual of shape {:?} for a layer output of {rows}×{o}",
                        r.dims()
                    )));
                }
                let r = r.contiguous()?;
                with_f32(&r, |r| Ok(seeded(r, self.bias.as_deref())))?
            }
            (Some(b), None) => filled(rows * o, b),
            (None, None) => zeros(rows * o),
        };
        let read_seed = self.bias.is_some() || residual.is_some();
        let threads = rayon::current_num_threads();
        let parallelism = if threads > 1 {
            gemm::Parallelism::Rayon(threads)
        } else {
            gemm::Parallelism::None
        };
        with_f32(&x, |x| {
            // SAFETY: y is [rows, o], the weight [k, o] and x [rows, k], all contiguous, and the
            // strides below stay inside them: dst(i, j) = y[j·o + i], lhs(i, l) = Wᵀ[l·o + i],
            // rhs(l, j) = x[j·k + l] for i < o, j < rows, l < k.
            unsafe {
                gemm::gemm(
                    o,
                    rows,
                    k,
                    y.as_mut_ptr(),
                    o as isize,
                    1,
                    read_seed,
                    self.weight_t.as_ptr(),
                    o as isize,
                    1,
                    x.as_ptr(),
                    k as isize,
                    1,
                    1.0,
                    1.0,
                    false,
                    false,
                    false,
                    parallelism,
                );
            }
            Ok(())
        })?;
        if let Some(last) = dims.last_mut() {
            *last = o;
        }
        Ok(Tensor::from_vec(y, dims, &Device::Cpu)?)
    }
}

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
fn head_scales(query_scale: Option<&[f32]>, s: AttentionShape) -> Result<Vec<f32>> {
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

/// f32 lanes of the widest vector register (AVX-512).
const LANES: usize = 16;

simd_dispatch!(attend_window => attend_window_inline(window: Window<'_>));
simd_dispatch!(attend_head => attend_head_inline(job: AttendHead<'_>));

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_within_a_few_ulp() {
        let mut worst = 0f64;
        for i in -87_000..=88_000 {
            let x = i as f32 / 1000.0;
            let want = (x as f64).exp();
            let got = exp(x) as f64;
            worst = worst.max(((got - want) / want).abs());
        }
        assert!(worst < 5e-7, "relative error {worst}");
        assert!(exp(-1000.0) < 1e-37);
        assert_eq!(exp(0.0), 1.0);
    }

    #[test]
    fn erf_is_within_a_few_ulp() {
        let mut worst = 0f64;
        for i in -6000..=6000 {
            let x = i as f32 / 1000.0;
            let want = libm_erf(x as f64);
            worst = worst.max((erf(x) as f64 - want).abs());
        }
        assert!(worst < 1e-6, "absolute error {worst}");
    }

    /// erf in f64 by its Taylor series (|x| ≤ 3) or the continued fraction of erfc beyond.
    fn libm_erf(x: f64) -> f64 {
        if x.abs() > 3.0 {
            // erfc(x) = exp(−x²)/(x√π) · 1/(1 + 1/(2x²)/(1 + 2/(2x²)/(1 + …))), Lentz-free form.
            let a = x.abs();
            let mut f = 0.0;
            for k in (1..60).rev() {
                f = (k as f64 / 2.0) / (a + f);
            }
            let erfc = (-a * a).exp() / std::f64::consts::PI.sqrt() / (a + f);
            return (1.0 - erfc).copysign(x);
        }
        let mut term = x;
        let mut sum = x;
        let x2 = x * x;
        for k in 1..200 {
            term *= -x2 / k as f64;
            let add = term / (2 * k + 1) as f64;
            sum += add;
            if add.abs() < 1e-17 {
                break;
            }
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    }

    /// A window at a time (many windows for the threads) or a head at a time (too few): the
    /// same probabilities and outputs to the bit, with and without a shift mask.
    #[test]
    fn window_and_head_tasks_give_the_same_bits() {
        let s = AttentionShape {
            windows: 3,
            tokens: 10,
            heads: 2,
            head_dim: 5,
        };
        let (n, c) = (s.tokens, s.heads * s.head_dim);
        let mut rng = crate::rng::SplitMix64(5);
        let mut random =
            |len: usize| -> Vec<f32> { (0..len).map(|_| rng.next_f32() * 4.0 - 2.0).collect() };
        let cpu = &Device::Cpu;
        let qkv = Tensor::from_vec(random(s.windows * n * 3 * c), (s.windows, n, 3 * c), cpu);
        let bias = Tensor::from_vec(random(s.heads * n * n), (s.heads, n, n), cpu);
        let mask = Tensor::from_vec(random(n * n), (1, n, n), cpu).unwrap();
        let (qkv, bias) = (qkv.unwrap(), bias.unwrap());
        for mask in [None, Some(&mask)] {
            let run = |threads: usize| {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                let (out, probs) = pool
                    .install(|| window_attention(&qkv, &bias, mask, None, s))
                    .unwrap();
                (out.flatten_all().unwrap().to_vec1::<f32>().unwrap(), probs)
            };
            // 1 thread: 3 windows ≥ 2 tasks, window by window; 4 threads: head by head.
            let (by_window, by_head) = (run(1), run(4));
            assert!(by_window.1.iter().all(|p| p.is_finite()));
            assert_eq!(by_window, by_head);
        }
    }
}
