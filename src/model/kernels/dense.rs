//! The dense layers: `y = x·Wᵀ + b` through `gemm` with the weight stored in the orientation
//! its kernels read without repacking, the bias (and a residual) seeding the output.

use candle_core::{Device, Tensor};
use rayon::prelude::*;

use super::{filled, with_f32, zeros};
use crate::error::{Error, Result};

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

/// The backward pass reads the layer through these: gradients with respect to its input, never
/// its weights.
impl Dense {
    /// `dx = dy·W`: the gradient with respect to the input of a gradient `dy` `[rows, out]`
    /// with respect to the output; `[rows, in]`.
    pub(crate) fn backward_input(&self, dy: &[f32]) -> Result<Vec<f32>> {
        let (k, o) = (self.inputs, self.outputs);
        if o == 0 || !dy.len().is_multiple_of(o) {
            return Err(Error::Model(format!(
                "a layer with {o} outputs got a gradient of {} values",
                dy.len()
            )));
        }
        let rows = dy.len() / o;
        let weight = self.weight.get_or_init(|| {
            let mut w = vec![0f32; o * k];
            for (l, row) in self.weight_t.chunks(o).enumerate() {
                for (i, &v) in row.iter().enumerate() {
                    w[i * k + l] = v;
                }
            }
            w
        });
        let mut dx = zeros(rows * k);
        let threads = rayon::current_num_threads();
        let parallelism = if threads > 1 {
            gemm::Parallelism::Rayon(threads)
        } else {
            gemm::Parallelism::None
        };
        // SAFETY: dx is [rows, k], W [o, k] and dy [rows, o], all contiguous, and the strides
        // stay inside them: dst(l, j) = dx[j·k + l], lhs(l, i) = W[i·k + l],
        // rhs(i, j) = dy[j·o + i] for l < k, j < rows, i < o.
        unsafe {
            gemm::gemm(
                k,
                rows,
                o,
                dx.as_mut_ptr(),
                k as isize,
                1,
                false,
                weight.as_ptr(),
                k as isize,
                1,
                dy.as_ptr(),
                o as isize,
                1,
                0.0,
                1.0,
                false,
                false,
                false,
                parallelism,
            );
        }
        Ok(dx)
    }

    /// Row `output` of `W`: the weights that make output `output` (for a classifier, the
    /// gradient of that logit with respect to the layer's input).
    pub(crate) fn weight_row(&self, output: usize) -> Option<Vec<f32>> {
        (output < self.outputs).then(|| {
            self.weight_t
                .chunks(self.outputs)
                .map(|row| row[output])
                .collect()
        })
    }
}
