//! Class-specific, gradient-weighted relevance: Chefer et al.'s generic attention rule (ICCV
//! 2021), carried through Swin's windows, shifts and merges.
//!
//! Per block, Ā = mean over heads of max(0, ∇A ⊙ A), window by window, with ∇A = ∂y_c/∂A for
//! the target class's logit y_c. Each window's Ā is placed at its tokens' global positions
//! through the block's index image (the rollout's), rows and columns of padding dropped and
//! nothing renormalized. Then R₀ = I over the first stage's tokens, R_b = R_{b−1} + Ā_b·R_{b−1}
//! within a stage, and R ← P·R at every patch merge (P averages each merged token's real
//! children, as in the rollout). The map after block b is the mean of R_b's rows.
//!
//! Like the rollout, nothing is densified: each map is a vector chain uᵀ(I+Ā_b)(P)…(I+Ā₀).
//! The chain carries the baseline (what the identities and merges alone give, every Ā = 0)
//! and the class-specific part separately, in f64, so the part — a few per cent of the map on
//! an untrained model — is never lost in the rounding of the baseline.

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::geometry::Geometry;
use crate::rollout::{merge_back, stage_merges, Map, SparseAttention};
use crate::trace::{AttentionGradients, BlockTrace, Trace};

/// The relevance map after one block, and its two parts.
#[derive(Debug, Clone, PartialEq)]
pub struct RelevanceMap {
    /// The mean of R_b's rows over the first stage's grid (baseline + class part), not
    /// rescaled.
    pub map: Map,
    /// What the gradient-weighted attention adds: the map minus the baseline.
    pub class_part: Map,
    /// What the identities and merges alone give (every Ā = 0); sums to 1.
    pub baseline: Map,
}

/// Window-aware relevance for one target class over every block of a trace.
#[derive(Debug, Clone)]
pub struct Relevance {
    target: usize,
    /// Ā of every block, window-aware.
    blocks: Vec<SparseAttention>,
    /// Ā read as if the block had no shift; `None` where that is the same (no shift).
    naive: Vec<Option<SparseAttention>>,
    merges: Vec<Option<Vec<[u32; 4]>>>,
    first: Geometry,
}

impl Relevance {
    /// Builds every block's Ā from the attention of `trace` and its gradients for one class.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a trace the rollout would reject too, or gradients that
    /// do not match its blocks (count, length) or are not finite.
    pub fn new(trace: &Trace, gradients: &AttentionGradients) -> Result<Self> {
        let first = trace.blocks.first().ok_or_else(|| {
            Error::InvalidArgument("invalid trace: it holds no blocks to explain".into())
        })?;
        if gradients.blocks.len() != trace.blocks.len() {
            return Err(Error::InvalidArgument(format!(
                "invalid gradients: {} blocks of gradients for a trace of {} blocks",
                gradients.blocks.len(),
                trace.blocks.len()
            )));
        }
        let merges = stage_merges(trace)?;
        let mut blocks = Vec::with_capacity(trace.blocks.len());
        let mut naive = Vec::with_capacity(trace.blocks.len());
        for (k, (block, grad)) in trace.blocks.iter().zip(&gradients.blocks).enumerate() {
            crate::rollout::check_block(block)?;
            if grad.len() != block.attention.len() {
                return Err(Error::InvalidArgument(format!(
                    "invalid gradients: block {k} has {} gradient values for {} attention values",
                    grad.len(),
                    block.attention.len()
                )));
            }
            if let Some(v) = grad.iter().find(|v| !v.is_finite()) {
                return Err(Error::InvalidArgument(format!(
                    "invalid gradients: block {k} holds {v}"
                )));
            }
            let windows = weighted_attention(block, grad);
            let g = block.geometry;
            naive.push(
                (g.shift != 0)
                    .then(|| SparseAttention::from_window_blocks(g, windows.clone(), true)),
            );
            blocks.push(SparseAttention::from_window_blocks(g, windows, false));
        }
        Ok(Relevance {
            target: gradients.target,
            blocks,
            naive,
            merges,
            first: first.geometry,
        })
    }

    /// The class explained.
    pub fn target(&self) -> usize {
        self.target
    }

    /// Ā of every block, placed at global token positions, in forward order.
    pub fn blocks(&self) -> &[SparseAttention] {
        &self.blocks
    }

    /// Height and width of the first stage's token grid, which every map covers.
    pub fn input_size(&self) -> (usize, usize) {
        (self.first.height, self.first.width)
    }

    /// The relevance map after every block, with its class part and baseline.
    ///
    /// Costs about L²/2 · N·M², like the rollout's pooled maps.
    pub fn maps(&self) -> Vec<RelevanceMap> {
        self.chains(false)
    }

    /// Like [`Relevance::maps`], with every block read as if it had no shift: what a
    /// window-unaware tool computes.
    pub fn naive_maps(&self) -> Vec<RelevanceMap> {
        self.chains(true)
    }

    fn matrix(&self, k: usize, naive: bool) -> &SparseAttention {
        match &self.naive[k] {
            Some(n) if naive => n,
            _ => &self.blocks[k],
        }
    }

    fn chains(&self, naive: bool) -> Vec<RelevanceMap> {
        // One (baseline, class part) pair of row vectors per block's map, all advancing
        // together from the last block down, so every Ā is visited once per level.
        let mut live: Vec<(Vec<f64>, Vec<f64>)> = Vec::with_capacity(self.blocks.len());
        for k in (0..self.blocks.len()).rev() {
            let n = self.blocks[k].tokens();
            live.push((vec![1.0 / n as f64; n], vec![0f64; n]));
            live.par_iter_mut().for_each(|(base, part)| {
                // (base + part)ᵀ(I + Ā) = base + (part + (base + part)ᵀĀ).
                let sum: Vec<f64> = base.iter().zip(part.iter()).map(|(b, p)| b + p).collect();
                let added = self.matrix(k, naive).vec_mul(&sum);
                for (p, a) in part.iter_mut().zip(added) {
                    *p += a;
                }
                if let Some(children) = &self.merges[k] {
                    let before = self.blocks[k - 1].tokens();
                    *base = merge_back(base, children, before);
                    *part = merge_back(part, children, before);
                }
            });
        }
        live.reverse();
        let (h, w) = self.input_size();
        let map = |values: Vec<f32>| Map {
            height: h,
            width: w,
            values,
        };
        live.iter()
            .map(|(base, part)| RelevanceMap {
                map: map(base.iter().zip(part).map(|(b, p)| (b + p) as f32).collect()),
                class_part: map(part.iter().map(|&p| p as f32).collect()),
                baseline: map(base.iter().map(|&b| b as f32).collect()),
            })
            .collect()
    }
}

/// One block's Ā window by window, `[windows, M², M²]`: the mean over heads of
/// max(0, ∇A ⊙ A).
fn weighted_attention(block: &BlockTrace, grad: &[f32]) -> Vec<f32> {
    let area = block.geometry.window_area();
    let size = area * area;
    let heads = block.heads;
    let mut out = vec![0f32; block.geometry.windows() * size];
    out.par_chunks_mut(size).enumerate().for_each(|(w, out)| {
        let mut sum = vec![0f64; size];
        for h in 0..heads {
            let start = (w * heads + h) * size;
            let (a, g) = (
                &block.attention[start..start + size],
                &grad[start..start + size],
            );
            for ((s, &a), &g) in sum.iter_mut().zip(a).zip(g) {
                *s += (f64::from(a) * f64::from(g)).max(0.0);
            }
        }
        for (o, s) in out.iter_mut().zip(sum) {
            *o = (s / heads as f64) as f32;
        }
    });
    out
}
