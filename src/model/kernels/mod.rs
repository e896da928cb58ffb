//! CPU kernels for the places where candle's generic operators cost the most time in a Swin
//! forward pass: the dense layers (`dense.rs`), window attention (`attention.rs`), their
//! backward (`backward.rs`), the exact GELU, and the row gather and elementwise add that replace
//! candle's single-threaded `index_select` and its second thread pool (which competes with
//! rayon's for the cores).
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

mod attention;
mod backward;
mod dense;

pub(crate) use attention::{window_attention, AttentionShape};
pub(crate) use dense::Dense;

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

/// Rows of `c` values: `out[place] = rows[index[place]]` for every place whose index is not
/// padding (those stay zero), `out` holding `index.len()` rows.
pub(crate) fn gather_rows(index: &[u32], rows: &[f32], c: usize) -> Vec<f32> {
    let len = index.len() * c;
    let mut out = Vec::with_capacity(len);
    // Each row written once, copied or zero: the window partition runs this every block.
    out.spare_capacity_mut()
        .par_chunks_mut(c.max(1))
        .zip(index.par_iter())
        .for_each(|(out, &t)| {
            if t == Geometry::PADDING {
                out.iter_mut().for_each(|o| {
                    o.write(0.0);
                });
            } else {
                let t = t as usize;
                for (o, &v) in out.iter_mut().zip(&rows[t * c..(t + 1) * c]) {
                    o.write(v);
                }
            }
        });
    // SAFETY: the `index.len()` chunks of `c` slots cover all `len`, each written above.
    unsafe { out.set_len(len) };
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

/// f32 lanes of the widest vector register (AVX-512).
const LANES: usize = 16;

/// For the kernels' tests: the shape both task modes are checked on (3 windows: window by
/// window on 1 thread, head by head on 4), uniform values in [−2, 2), and a run on a pool of
/// `threads` threads.
#[cfg(test)]
mod testing {
    use super::AttentionShape;

    pub(super) const SHAPE: AttentionShape = AttentionShape {
        windows: 3,
        tokens: 10,
        heads: 2,
        head_dim: 5,
    };

    pub(super) fn random(rng: &mut crate::rng::SplitMix64, len: usize) -> Vec<f32> {
        (0..len).map(|_| rng.next_f32() * 4.0 - 2.0).collect()
    }

    pub(super) fn on_threads<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("a thread pool")
            .install(f)
    }
}

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
}
