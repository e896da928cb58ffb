//! Window-aware attention rollout.
//!
//! Each block's window attention becomes a block-sparse matrix Â over its stage's tokens
//! ([`SparseAttention`]), placed through the block's index image so that the cyclic shift and
//! the padding are undone. Rollout then multiplies these matrices, with a merge matrix P between
//! stages that averages each merged token's real children:
//!
//! R₀ = Â₀, R_k = Â_k · (P ·) R_{k−1},
//!
//! so R_k maps block k's tokens back onto the first stage's tokens. Nothing is ever densified
//! into an N×N attention matrix: pooled maps are vector–matrix chains (vᵀ·Â_k·P·Â_{k−1}…), and
//! full R_k are built by combining, for each output row, the M² rows of its window.

mod options;
mod sparse;

pub use options::{HeadFusion, RolloutOptions};
pub use sparse::SparseAttention;

pub(crate) use sparse::check_block;

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::geometry::Geometry;
use crate::trace::Trace;

/// A map over a token grid, row-major: `values[y·width + x]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Map {
    /// Rows of the grid.
    pub height: usize,
    /// Columns of the grid.
    pub width: usize,
    /// `height·width` values, row-major.
    pub values: Vec<f32>,
}

impl Map {
    /// The value at row `y`, column `x`.
    ///
    /// # Panics
    /// If (y, x) is outside the grid.
    pub fn get(&self, y: usize, x: usize) -> f32 {
        assert!(
            y < self.height && x < self.width,
            "({y}, {x}) is outside the map"
        );
        self.values[y * self.width + x]
    }

    /// A map of `values` (f64 while computing) scaled to sum 1 where they sum to anything.
    fn normalized(height: usize, width: usize, values: &[f64]) -> Map {
        let sum: f64 = values.iter().sum();
        let scale = if sum > 0.0 { 1.0 / sum } else { 1.0 };
        Map {
            height,
            width,
            values: values.iter().map(|v| (v * scale) as f32).collect(),
        }
    }
}

/// The pooled map of one (regular, shifted) block pair on its own: what the two blocks
/// together do, without the blocks before them.
#[derive(Debug, Clone, PartialEq)]
pub struct PairMap {
    /// The stage the pair belongs to.
    pub stage: usize,
    /// Indices, in the trace, of the regular block (2i within its stage) and of the shifted one
    /// (2i + 1).
    pub blocks: (usize, usize),
    /// Mean of the rows of Â_shifted·Â_regular, normalized to sum 1, over the stage's grid.
    pub stage_map: Map,
    /// `stage_map` upsampled to the first stage's grid (each stage token covering its
    /// 2^s×2^s first-stage tokens, cropped at odd sizes), normalized to sum 1.
    pub input_map: Map,
}

/// A window-aware rollout over every block of a trace.
///
/// Holds one [`SparseAttention`] per block (and a window-unaware one per shifted block, for
/// comparison). Every readout is over the first block's token grid (H₀×W₀), except
/// [`PairMap::stage_map`].
#[derive(Debug, Clone)]
pub struct Rollout {
    blocks: Vec<SparseAttention>,
    /// Naive reading of each block; `None` where it is the same as the window-aware one
    /// (no shift).
    naive: Vec<Option<SparseAttention>>,
    /// `merges[k]`: merge children when block k starts a new stage, applied before Â_k.
    merges: Vec<Option<Vec<[u32; 4]>>>,
    first: Geometry,
}

impl Rollout {
    /// Builds every block's Â from `trace` with `options`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for invalid options, an empty trace, a malformed block (see
    /// [`SparseAttention::from_block`]), or blocks whose stages and grids do not follow each
    /// other (same grid within a stage; ⌈H/2⌉×⌈W/2⌉ in the next one).
    pub fn new(trace: &Trace, options: &RolloutOptions) -> Result<Self> {
        options.validate()?;
        let first = trace.blocks.first().ok_or_else(|| {
            Error::InvalidArgument("invalid trace: it holds no blocks to roll out".into())
        })?;
        let merges = stage_merges(trace)?;
        let blocks = trace
            .blocks
            .iter()
            .map(|b| SparseAttention::from_block(b, options, false))
            .collect::<Result<Vec<_>>>()?;
        let naive = trace
            .blocks
            .iter()
            .map(|b| {
                (b.geometry.shift != 0)
                    .then(|| SparseAttention::from_block(b, options, true))
                    .transpose()
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Rollout {
            blocks,
            naive,
            merges,
            first: first.geometry,
        })
    }

    /// The window-aware Â of every block, in forward order.
    pub fn blocks(&self) -> &[SparseAttention] {
        &self.blocks
    }

    /// Height and width of the first stage's token grid, which every readout maps onto.
    pub fn input_size(&self) -> (usize, usize) {
        (self.first.height, self.first.width)
    }

    /// The pooled map after every block: the mean of the rows of R_k, normalized to sum 1.
    /// For global attention with prefix tokens (a ViT), the CLS row of R_k over the patch
    /// tokens, renormalized to sum 1 (as vit-explain reads it).
    ///
    /// Computed as vector chains u_kᵀ·Â_k·…·Â₀ (u_k uniform over block k's tokens), all
    /// chains advancing together from the last block down so each matrix is visited once per
    /// level; costs about L²/2 · N·M².
    pub fn pooled_maps(&self) -> Vec<Map> {
        self.pooled_chains(false)
    }

    /// Like [`Rollout::pooled_maps`], but with every block read as if it had no shift: what a
    /// window-unaware tool computes.
    pub fn naive_pooled_maps(&self) -> Vec<Map> {
        self.pooled_chains(true)
    }

    /// Row `token` of R_`block`: how token `token` of block `block` (raster index over that
    /// block's grid; for a ViT, over its sequence, prefix tokens first) draws on the first
    /// stage's tokens (a ViT's patches, renormalized). Sums to 1.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if the block or the token does not exist.
    pub fn token_map(&self, block: usize, token: usize) -> Result<Map> {
        let a = self.block(block)?;
        let g = a.geometry();
        if token >= a.tokens() {
            return Err(Error::InvalidArgument(format!(
                "token {token} is out of range: block {block} has {} tokens ({}×{})",
                a.tokens(),
                g.height,
                g.width
            )));
        }
        let mut v = vec![0f64; a.tokens()];
        v[token] = 1.0;
        let v = self.pull_to_input(v, block, false);
        if self.first.prefix > 0 {
            return Ok(self.readout(&v));
        }
        let (h, w) = self.input_size();
        Ok(Map {
            height: h,
            width: w,
            values: v.iter().map(|&x| x as f32).collect(),
        })
    }

    /// A row over the first block's tokens as a map over its grid, normalized to sum 1; for
    /// global attention the prefix tokens' columns are dropped first.
    fn readout(&self, v: &[f64]) -> Map {
        let (h, w) = self.input_size();
        Map::normalized(h, w, &v[self.first.prefix..])
    }

    /// The pooled map of each (regular, shifted) block pair, blocks 2i and 2i + 1 of a stage,
    /// taken on its own: mean of the rows of Â_{2i+1}·Â_{2i}. A stage's unpaired last block has
    /// none.
    pub fn pair_maps(&self) -> Vec<PairMap> {
        if self.first.is_global() {
            return Vec::new();
        }
        let (h0, w0) = self.input_size();
        (0..self.blocks.len().saturating_sub(1))
            .into_par_iter()
            .filter_map(|k| {
                let (regular, shifted) = (&self.blocks[k], &self.blocks[k + 1]);
                let (g, g1) = (regular.geometry(), shifted.geometry());
                if g.stage != g1.stage || g.block % 2 != 0 || g1.block != g.block + 1 {
                    return None;
                }
                let n = regular.tokens();
                let v = regular.vec_mul(&shifted.vec_mul(&vec![1.0 / n as f64; n]));
                let stage_map = Map::normalized(g.height, g.width, &v);
                // Each merge halves the grid (rounding up), so a stage-s token covers the
                // first-stage tokens whose coordinates, shifted right by s, are its own.
                let s = g.stage - self.first.stage;
                let up: Vec<f64> = (0..h0 * w0)
                    .map(|i| v[((i / w0) >> s) * g.width + ((i % w0) >> s)])
                    .collect();
                Some(PairMap {
                    stage: g.stage,
                    blocks: (k, k + 1),
                    stage_map,
                    input_map: Map::normalized(h0, w0, &up),
                })
            })
            .collect()
    }

    /// R_`block` as a dense row-major N_k×N₀ matrix (N_k tokens of that block, N₀ of the first
    /// stage). Costs about N·M²·N₀ per block up to `block`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if the block does not exist.
    pub fn full(&self, block: usize) -> Result<Vec<f32>> {
        self.block(block)?;
        Ok(self.full_chain(block, &mut |_, _| {}))
    }

    /// Calls `visit(k, R_k)` for every block k in order, with R_k dense and row-major
    /// N_k×N₀. Only R_k and R_{k−1} are alive at any time (for swin-tiny, 2 × 39 MB).
    pub fn visit_full<F: FnMut(usize, &[f32])>(&self, mut visit: F) {
        self.full_chain(self.blocks.len() - 1, &mut visit);
    }

    fn block(&self, block: usize) -> Result<&SparseAttention> {
        self.blocks.get(block).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "block {block} is out of range: the trace has {} blocks",
                self.blocks.len()
            ))
        })
    }

    fn matrix(&self, k: usize, naive: bool) -> &SparseAttention {
        match &self.naive[k] {
            Some(n) if naive => n,
            _ => &self.blocks[k],
        }
    }

    fn pooled_chains(&self, naive: bool) -> Vec<Map> {
        let mut live: Vec<Vec<f64>> = Vec::with_capacity(self.blocks.len());
        for k in (0..self.blocks.len()).rev() {
            live.push(self.blocks[k].geometry().readout_row());
            live.par_iter_mut()
                .for_each(|v| *v = self.step_back(std::mem::take(v), k, naive));
        }
        // `live` was filled from the last block down.
        live.reverse();
        live.iter().map(|v| self.readout(v)).collect()
    }

    /// vᵀ·Â_k, then ·P if block k starts a stage: from block k's tokens back to the tokens
    /// before it.
    fn step_back(&self, v: Vec<f64>, k: usize, naive: bool) -> Vec<f64> {
        let v = self.matrix(k, naive).vec_mul(&v);
        match &self.merges[k] {
            Some(children) => merge_back(&v, children, self.blocks[k - 1].tokens()),
            None => v,
        }
    }

    /// vᵀ·Â_k·(P·)Â_{k−1}…Â₀ for v over block k's tokens.
    fn pull_to_input(&self, mut v: Vec<f64>, k: usize, naive: bool) -> Vec<f64> {
        for j in (0..=k).rev() {
            v = self.step_back(v, j, naive);
        }
        v
    }

    /// Builds R_0 … R_last, calling `visit` on each, and returns R_last.
    fn full_chain(&self, last: usize, visit: &mut dyn FnMut(usize, &[f32])) -> Vec<f32> {
        let n0 = self.blocks[0].tokens();
        // R₀ = Â₀·I needs no product.
        let mut cur = self.blocks[0].to_dense();
        visit(0, &cur);
        let mut next: Vec<f32> = Vec::new();
        for k in 1..=last {
            if let Some(children) = &self.merges[k] {
                next.resize(children.len() * n0, 0.0);
                merge_rows(children, &cur, n0, &mut next);
                std::mem::swap(&mut cur, &mut next);
            }
            next.resize(self.blocks[k].tokens() * n0, 0.0);
            self.blocks[k].mul_rows(&cur, n0, &mut next);
            std::mem::swap(&mut cur, &mut next);
            visit(k, &cur);
        }
        cur
    }
}

/// For every block of `trace`, the merge children when it starts a new stage (applied before
/// its attention), after checking that blocks and stages follow each other: the same grid
/// within a stage, ⌈H/2⌉×⌈W/2⌉ in the next one.
pub(crate) fn stage_merges(trace: &Trace) -> Result<Vec<Option<Vec<[u32; 4]>>>> {
    let mut merges = vec![None];
    for (k, pair) in trace.blocks.windows(2).enumerate() {
        let (prev, cur) = (&pair[0].geometry, &pair[1].geometry);
        let expected = if cur.stage == prev.stage {
            merges.push(None);
            (prev.height, prev.width)
        } else if cur.stage == prev.stage + 1 {
            merges.push(Some(prev.merge_children()));
            prev.merged_size()
        } else {
            return Err(Error::InvalidArgument(format!(
                "invalid trace: block {} is in stage {} right after a block of stage {}; \
             stages must follow each other",
                k + 1,
                cur.stage,
                prev.stage
            )));
        };
        if (cur.height, cur.width) != expected {
            return Err(Error::InvalidArgument(format!(
                "invalid trace: block {} has a {}×{} grid where {}×{} was expected after \
             the {}×{} grid of the block before it",
                k + 1,
                cur.height,
                cur.width,
                expected.0,
                expected.1,
                prev.height,
                prev.width
            )));
        }
    }
    Ok(merges)
}

/// vᵀ·P: a row vector over merged tokens back onto the `tokens` of the stage before, each
/// merged token's value shared equally among its real children.
pub(crate) fn merge_back(v: &[f64], children: &[[u32; 4]], tokens: usize) -> Vec<f64> {
    let mut prev = vec![0f64; tokens];
    for (&x, kids) in v.iter().zip(children) {
        let real = kids.iter().filter(|&&c| c != Geometry::PADDING);
        let share = x / real.clone().count() as f64;
        for &c in real {
            prev[c as usize] += share;
        }
    }
    prev
}

/// `out = P · rows`: each merged token's row is the mean of its real children's rows.
fn merge_rows(children: &[[u32; 4]], rows: &[f32], cols: usize, out: &mut [f32]) {
    out.par_chunks_mut(cols)
        .zip(children.par_iter())
        .for_each(|(o, kids)| {
            o.fill(0.0);
            let real: Vec<usize> = kids
                .iter()
                .filter(|&&c| c != Geometry::PADDING)
                .map(|&c| c as usize)
                .collect();
            let share = 1.0 / real.len() as f32;
            for c in real {
                for (o, &x) in o.iter_mut().zip(&rows[c * cols..(c + 1) * cols]) {
                    *o += share * x;
                }
            }
        });
}
