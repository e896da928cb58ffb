//! One block's attention as a block-sparse matrix over its stage's tokens.

use rayon::prelude::*;

use super::options::{HeadFusion, RolloutOptions};
use crate::error::{Error, Result};
use crate::geometry::Geometry;
use crate::trace::BlockTrace;

/// Columns of the right-hand side handled at a time by [`SparseAttention::mul_rows`]: one
/// window's M² input rows of this width (49 × 4 KiB) stay in L2 while its output rows are
/// formed.
const COLUMN_CHUNK: usize = 1024;

/// One window's output rows in [`SparseAttention::mul_rows`], with their query places.
type WindowRows<'a> = Vec<(usize, &'a mut [f32])>;

/// One block's Â as a block-sparse N×N matrix over the stage's N = H·W real tokens: one
/// M²×M² block per window, placed by the window's index image.
///
/// Every real token sits in exactly one place of one window, so row t of Â (the query t) is
/// exactly one row of one window block, and its non-zero columns are that window's real
/// tokens. Rows of padding places and columns of padding keys are stored as zeros.
#[derive(Debug, Clone)]
pub struct SparseAttention {
    geometry: Geometry,
    /// `[windows, M²]`: token at each place, or [`Geometry::PADDING`].
    index: Vec<u32>,
    /// `[N]`: for each token, its place `window·M² + position` in `index`.
    slot: Vec<u32>,
    /// `[windows, M², M²]`: Â restricted to each window, row = query place, column = key place.
    values: Vec<f32>,
}

impl SparseAttention {
    /// Builds Â for one block: fuses heads, drops attention paid to padding and renormalizes,
    /// discards the lowest `options.discard` fraction of each row and renormalizes, then mixes
    /// in the identity with weight `options.residual` (see [`RolloutOptions`]).
    ///
    /// With `naive`, window places are read as if the block had no shift (what a
    /// window-unaware tool does); padding is then also taken from the unshifted places.
    ///
    /// Discard rule: in each query row, take the n real keys sorted ascending by value (ties by
    /// place), and zero the lowest ⌊discard·n⌋ of them (the product computed in `f32`), except
    /// the diagonal, which is kept even when it is among them. If a row has no attention left
    /// on any real key (all zeros), it becomes the query itself (a one on the diagonal), so
    /// rows always sum to 1.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for invalid options, or a block whose geometry, head count,
    /// attention length or values (not finite, negative) do not make sense.
    pub fn from_block(block: &BlockTrace, options: &RolloutOptions, naive: bool) -> Result<Self> {
        options.validate()?;
        check_block(block)?;
        let mut a = SparseAttention::placed(block.geometry, naive, Vec::new());
        let area = a.geometry.window_area();
        a.values = vec![0f32; a.index.len() * area];
        a.values
            .par_chunks_mut(area * area)
            .zip(a.index.par_chunks(area))
            .enumerate()
            .for_each(|(w, (out, idx))| fill_window(block, w, idx, options, out));
        Ok(a)
    }

    /// A matrix whose window blocks (`[windows, M², M²]`, rows = query places) were computed
    /// elsewhere, placed through `geometry`'s index image (with `naive`, as if it had no shift).
    /// Entries of padding places are zeroed; nothing is renormalized.
    ///
    /// # Panics
    /// If `values` does not hold windows × M² × M² entries.
    pub(crate) fn from_window_blocks(geometry: Geometry, values: Vec<f32>, naive: bool) -> Self {
        let area = geometry.window_area();
        assert_eq!(values.len(), geometry.windows() * area * area);
        let mut a = SparseAttention::placed(geometry, naive, values);
        a.values
            .par_chunks_mut(area * area)
            .zip(a.index.par_chunks(area))
            .for_each(|(block, idx)| {
                for (row, &q) in block.chunks_mut(area).zip(idx) {
                    for (v, &k) in row.iter_mut().zip(idx) {
                        if q == Geometry::PADDING || k == Geometry::PADDING {
                            *v = 0.0;
                        }
                    }
                }
            });
        a
    }

    /// The index image and token slots of `geometry` (unshifted with `naive`), around `values`.
    fn placed(mut geometry: Geometry, naive: bool, values: Vec<f32>) -> Self {
        if naive {
            geometry.shift = 0;
        }
        let index = geometry.index_image();
        let mut slot = vec![Geometry::PADDING; geometry.tokens()];
        for (place, &t) in index.iter().enumerate() {
            if t != Geometry::PADDING {
                slot[t as usize] = place as u32;
            }
        }
        SparseAttention {
            geometry,
            index,
            slot,
            values,
        }
    }

    /// The geometry the matrix was read with (shift 0 for a naive reading).
    pub fn geometry(&self) -> &Geometry {
        &self.geometry
    }

    /// N, the number of real tokens: rows and columns of Â.
    pub fn tokens(&self) -> usize {
        self.slot.len()
    }

    /// The index image `[windows, M²]` (see [`Geometry::index_image`]).
    pub fn index_image(&self) -> &[u32] {
        &self.index
    }

    /// The window blocks `[windows, M², M²]`, rows = query places, columns = key places.
    pub fn values(&self) -> &[f32] {
        &self.values
    }

    /// Row `token` of Â as the keys of its window (tokens, or [`Geometry::PADDING`] with value
    /// 0) and their values; `None` if `token ≥ N`.
    pub fn row(&self, token: usize) -> Option<(&[u32], &[f32])> {
        let place = *self.slot.get(token)? as usize;
        let area = self.geometry.window_area();
        let (w, q) = (place / area, place % area);
        let keys = &self.index[w * area..(w + 1) * area];
        let start = (w * area + q) * area;
        Some((keys, &self.values[start..start + area]))
    }

    /// Â as a dense row-major N×N matrix. Memory grows as N²: meant for small grids, tests and
    /// comparisons, never for the rollout itself.
    pub fn to_dense(&self) -> Vec<f32> {
        let n = self.tokens();
        let mut dense = vec![0f32; n * n];
        if n == 0 {
            return dense;
        }
        dense.par_chunks_mut(n).enumerate().for_each(|(t, out)| {
            if let Some((keys, vals)) = self.row(t) {
                for (&k, &a) in keys.iter().zip(vals) {
                    if k != Geometry::PADDING {
                        out[k as usize] = a;
                    }
                }
            }
        });
        dense
    }

    /// The row vector vᵀ·Â, for v over the N tokens.
    ///
    /// Costs N·M²: each window block is multiplied once.
    ///
    /// # Panics
    /// If `v.len() != N`.
    pub fn vec_mul(&self, v: &[f64]) -> Vec<f64> {
        let n = self.tokens();
        assert_eq!(v.len(), n, "vector length must equal the token count");
        let area = self.geometry.window_area();
        let mut y = vec![0f64; n];
        for (idx, block) in self.index.chunks(area).zip(self.values.chunks(area * area)) {
            for (&tq, row) in idx.iter().zip(block.chunks(area)) {
                if tq == Geometry::PADDING {
                    continue;
                }
                let vq = v[tq as usize];
                if vq == 0.0 {
                    continue;
                }
                for (&tk, &a) in idx.iter().zip(row) {
                    if tk != Geometry::PADDING {
                        y[tk as usize] += vq * f64::from(a);
                    }
                }
            }
        }
        y
    }

    /// `out = Â · rhs` for a row-major N×`cols` matrix `rhs`.
    ///
    /// Each output row combines the M² rows of its window, so this costs N·M²·cols; windows
    /// run in parallel (they own disjoint output rows).
    ///
    /// # Panics
    /// If `rhs` or `out` is not N×`cols`.
    pub fn mul_rows(&self, rhs: &[f32], cols: usize, out: &mut [f32]) {
        let n = self.tokens();
        assert_eq!(rhs.len(), n * cols, "rhs must be N×cols");
        assert_eq!(out.len(), n * cols, "out must be N×cols");
        if cols == 0 {
            return;
        }
        let area = self.geometry.window_area();
        // Hand each window its own output rows, so windows can run in parallel safely.
        let mut rows: Vec<Option<&mut [f32]>> = out.chunks_mut(cols).map(Some).collect();
        let jobs: Vec<(usize, WindowRows)> = self
            .index
            .chunks(area)
            .enumerate()
            .map(|(w, idx)| {
                let mine = idx
                    .iter()
                    .enumerate()
                    .filter(|(_, &t)| t != Geometry::PADDING)
                    .filter_map(|(q, &t)| rows[t as usize].take().map(|r| (q, r)))
                    .collect();
                (w, mine)
            })
            .collect();
        jobs.into_par_iter().for_each(|(w, mut outputs)| {
            let idx = &self.index[w * area..(w + 1) * area];
            let block = &self.values[w * area * area..(w + 1) * area * area];
            let keys: Vec<&[f32]> = idx
                .iter()
                .filter(|&&t| t != Geometry::PADDING)
                .map(|&t| &rhs[t as usize * cols..(t as usize + 1) * cols])
                .collect();
            let key_places: Vec<usize> =
                (0..area).filter(|&k| idx[k] != Geometry::PADDING).collect();
            // Per query, its non-zero coefficients as (value, position in `keys`).
            let terms: Vec<Vec<(f32, usize)>> = outputs
                .iter()
                .map(|(q, _)| {
                    let row = &block[q * area..(q + 1) * area];
                    key_places
                        .iter()
                        .enumerate()
                        .filter(|(_, &k)| row[k] != 0.0)
                        .map(|(i, &k)| (row[k], i))
                        .collect()
                })
                .collect();
            let mut inputs: Vec<&[f32]> = Vec::with_capacity(keys.len());
            for start in (0..cols).step_by(COLUMN_CHUNK) {
                let end = (start + COLUMN_CHUNK).min(cols);
                inputs.clear();
                inputs.extend(keys.iter().map(|r| &r[start..end]));
                for ((_, out_row), coeffs) in outputs.iter_mut().zip(&terms) {
                    combine(&mut out_row[start..end], coeffs, &inputs);
                }
            }
        });
    }
}

/// `out = Σ a·inputs[i]` over `terms = [(a, i)]`, four inputs per pass so each output element
/// is loaded and stored a quarter as often.
fn combine(out: &mut [f32], terms: &[(f32, usize)], inputs: &[&[f32]]) {
    out.fill(0.0);
    let len = out.len();
    let mut quads = terms.chunks_exact(4);
    for quad in &mut quads {
        let (a0, a1, a2, a3) = (quad[0].0, quad[1].0, quad[2].0, quad[3].0);
        let x0 = &inputs[quad[0].1][..len];
        let x1 = &inputs[quad[1].1][..len];
        let x2 = &inputs[quad[2].1][..len];
        let x3 = &inputs[quad[3].1][..len];
        for ((((o, &v0), &v1), &v2), &v3) in out.iter_mut().zip(x0).zip(x1).zip(x2).zip(x3) {
            *o += a0 * v0 + a1 * v1 + a2 * v2 + a3 * v3;
        }
    }
    for &(a, i) in quads.remainder() {
        for (o, &v) in out.iter_mut().zip(&inputs[i][..len]) {
            *o += a * v;
        }
    }
}

/// Rejects a block the rollout cannot read, naming what is wrong with it.
pub(crate) fn check_block(block: &BlockTrace) -> Result<()> {
    let g = &block.geometry;
    let bad = |what: String| {
        Err(Error::InvalidArgument(format!(
            "invalid trace: stage {} block {}: {what}",
            g.stage, g.block
        )))
    };
    g.check().or_else(bad)?;
    if block.heads == 0 {
        return bad("no attention heads".into());
    }
    let area = g.window_area();
    let expected = g
        .windows()
        .checked_mul(block.heads)
        .and_then(|x| x.checked_mul(area * area));
    if expected != Some(block.attention.len()) {
        return bad(format!(
            "attention holds {} values, expected {} windows × {} heads × {area}² × {area}²",
            block.attention.len(),
            g.windows(),
            block.heads
        ));
    }
    if let Some(v) = block
        .attention
        .iter()
        .find(|v| !(v.is_finite() && **v >= 0.0))
    {
        return bad(format!("attention holds {v}, which is not a probability"));
    }
    Ok(())
}

/// Fills one window's M²×M² block of Â (see [`SparseAttention::from_block`]).
fn fill_window(
    block: &BlockTrace,
    window: usize,
    index: &[u32],
    options: &RolloutOptions,
    out: &mut [f32],
) {
    let area = index.len();
    let real: Vec<usize> = (0..area)
        .filter(|&p| index[p] != Geometry::PADDING)
        .collect();
    let discard = (options.discard * real.len() as f32).floor() as usize;
    let alpha = f64::from(options.residual);
    let heads: Vec<&[f32]> = (0..block.heads)
        .map(|h| block.window_head(window, h))
        .collect();
    let mut row = vec![0f64; area];
    let mut order: Vec<usize> = Vec::with_capacity(real.len());
    for &q in &real {
        // Only real keys are fused: attention paid to padding is dropped right after anyway.
        let start = q * area;
        for &k in &real {
            row[k] = f64::from(heads[0][start + k]);
        }
        for head in &heads[1..] {
            let h = &head[start..start + area];
            for &k in &real {
                let v = f64::from(h[k]);
                row[k] = match options.fusion {
                    HeadFusion::Mean => row[k] + v,
                    HeadFusion::Max => row[k].max(v),
                    HeadFusion::Min => row[k].min(v),
                };
            }
        }
        // Mean needs no division here: the renormalization below absorbs the 1/heads.
        normalize(&mut row, &real, q);
        if discard > 0 {
            order.clear();
            order.extend_from_slice(&real);
            order.sort_unstable_by(|&a, &b| row[a].total_cmp(&row[b]).then(a.cmp(&b)));
            for &k in &order[..discard] {
                if k != q {
                    row[k] = 0.0;
                }
            }
            normalize(&mut row, &real, q);
        }
        let out_row = &mut out[start..start + area];
        for &k in &real {
            let identity = if k == q { alpha } else { 0.0 };
            out_row[k] = ((1.0 - alpha) * row[k] + identity) as f32;
        }
    }
}

/// Scales `row` over the `real` places to sum 1; a row with nothing on them becomes the
/// query itself.
fn normalize(row: &mut [f64], real: &[usize], query: usize) {
    let sum: f64 = real.iter().map(|&k| row[k]).sum();
    if sum > 0.0 && sum.is_finite() {
        for &k in real {
            row[k] /= sum;
        }
    } else {
        for &k in real {
            row[k] = 0.0;
        }
        row[query] = 1.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(geometry: Geometry, heads: usize, attention: Vec<f32>) -> BlockTrace {
        BlockTrace {
            geometry,
            heads,
            attention,
        }
    }

    #[test]
    fn padding_keys_are_dropped_and_rows_renormalized() {
        // 1×3 grid clamps the window to 1: use a 3×3 grid with window 2 instead → padded 4×4.
        let g = Geometry::new(0, 0, 3, 3, 2, 0);
        let area = g.window_area();
        let attention = vec![1.0 / area as f32; g.windows() * area * area];
        let a =
            SparseAttention::from_block(&block(g, 1, attention), &RolloutOptions::default(), false)
                .unwrap();
        // Token 8 = (2, 2) sits alone in the last window with three padding places.
        let (keys, vals) = a.row(8).unwrap();
        assert_eq!(keys[0], 8);
        assert!((vals[0] - 1.0).abs() < 1e-7);
        assert!(vals[1..].iter().all(|&v| v == 0.0));
        // Token 2 = (0, 2) shares its window with token 5 only: 0.5·(½, ½) + 0.5·I.
        let (keys, vals) = a.row(2).unwrap();
        let of = |t: u32| vals[keys.iter().position(|&k| k == t).unwrap()];
        assert!((of(2) - 0.75).abs() < 1e-7 && (of(5) - 0.25).abs() < 1e-7);
    }

    #[test]
    fn discard_keeps_the_diagonal() {
        let g = Geometry::new(0, 0, 2, 2, 2, 0);
        // Query 0 pays least to itself; discard 0.5 of 4 keys = 2 lowest: itself (kept) and key 1.
        let mut attention = vec![0.25f32; 16];
        attention[..4].copy_from_slice(&[0.1, 0.2, 0.3, 0.4]);
        let options = RolloutOptions {
            residual: 0.0,
            discard: 0.5,
            ..Default::default()
        };
        let a = SparseAttention::from_block(&block(g, 1, attention), &options, false).unwrap();
        let (_, vals) = a.row(0).unwrap();
        let expect = [0.1 / 0.8, 0.0, 0.3 / 0.8, 0.4 / 0.8];
        for (v, e) in vals.iter().zip(expect) {
            assert!((f64::from(*v) - e).abs() < 1e-7, "{vals:?}");
        }
    }

    #[test]
    fn bad_blocks_are_rejected() {
        let g = Geometry::new(0, 0, 2, 2, 2, 0);
        let opts = RolloutOptions::default();
        assert!(SparseAttention::from_block(&block(g, 1, vec![0.25; 15]), &opts, false).is_err());
        assert!(SparseAttention::from_block(&block(g, 0, vec![]), &opts, false).is_err());
        let mut nan = vec![0.25; 16];
        nan[3] = f32::NAN;
        let err = SparseAttention::from_block(&block(g, 1, nan), &opts, false).unwrap_err();
        assert!(err.to_string().contains("not a probability"), "{err}");
    }
}
