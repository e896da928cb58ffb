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
//! A ViT or DeiT is the plain-transformer case Chefer et al. wrote the rule for: one window of
//! the whole sequence, no merges, and the map is R_b's CLS row over the patches.
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
    /// The readout row of R_b over the first stage's grid (baseline + class part), not
    /// rescaled: the mean of the rows for Swin, the CLS row over the patches for a ViT.
    pub map: Map,
    /// What the gradient-weighted attention adds: the map minus the baseline.
    pub class_part: Map,
    /// What the identities and merges alone give (every Ā = 0): sums to 1 for Swin; zero for
    /// a ViT, whose CLS row of the identity holds only the CLS token itself.
    pub baseline: Map,
}

/// Window-aware relevance for one target class over every block of a trace.
#[derive(Debug, Clone)]
pub struct Relevance {
    target: usize,
    /// Ā of every block, window-aware.
    blocks: Vec<SparseAttention>,
    /// Ā window by window before padding was dropped, for the naive reading of the shifted
    /// blocks whose padding places move with the shift; `None` where `blocks` already holds
    /// the same values (no shift, or no padding).
    unplaced: Vec<Option<Vec<f32>>>,
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
        // Blocks are independent: each checks its inputs and weighs its attention in parallel.
        let built: Vec<Result<(SparseAttention, Option<Vec<f32>>)>> = trace
            .blocks
            .par_iter()
            .zip(&gradients.blocks)
            .enumerate()
            .map(|(k, (block, grad))| {
                crate::rollout::check_block(block)?;
                if grad.len() != block.attention.len() {
                    return Err(Error::InvalidArgument(format!(
                        "invalid gradients: block {k} has {} gradient values for {} attention \
                         values",
                        grad.len(),
                        block.attention.len()
                    )));
                }
                let windows = weighted_attention(block, grad).map_err(|v| {
                    Error::InvalidArgument(format!("invalid gradients: block {k} holds {v}"))
                })?;
                let g = block.geometry;
                let padded = g.padded_height != g.height || g.padded_width != g.width;
                let unplaced = (g.shift != 0 && padded).then(|| windows.clone());
                Ok((
                    SparseAttention::from_window_blocks(g, windows, false),
                    unplaced,
                ))
            })
            .collect();
        // The first bad block in forward order, whichever thread found it.
        let (blocks, unplaced) = built
            .into_iter()
            .collect::<Result<Vec<_>>>()?
            .into_iter()
            .unzip();
        Ok(Relevance {
            target: gradients.target,
            blocks,
            unplaced,
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
        self.chains(&self.blocks.iter().collect::<Vec<_>>())
    }

    /// Like [`Relevance::maps`], with every block read as if it had no shift: what a
    /// window-unaware tool computes.
    pub fn naive_maps(&self) -> Vec<RelevanceMap> {
        let naive: Vec<Option<SparseAttention>> = self
            .blocks
            .par_iter()
            .zip(&self.unplaced)
            .map(|(a, unplaced)| {
                let g = *a.geometry();
                (g.shift != 0).then(|| {
                    let windows = unplaced.clone().unwrap_or_else(|| a.values().to_vec());
                    SparseAttention::from_window_blocks(g, windows, true)
                })
            })
            .collect();
        let matrices: Vec<&SparseAttention> = naive
            .iter()
            .zip(&self.blocks)
            .map(|(n, a)| n.as_ref().unwrap_or(a))
            .collect();
        self.chains(&matrices)
    }

    fn chains(&self, matrices: &[&SparseAttention]) -> Vec<RelevanceMap> {
        // One (baseline, class part) pair of row vectors per block's map, all advancing
        // together from the last block down, so every Ā is visited once per level.
        let mut live: Vec<(Vec<f64>, Vec<f64>)> = Vec::with_capacity(self.blocks.len());
        for k in (0..self.blocks.len()).rev() {
            let readout = self.blocks[k].geometry().readout_row();
            let n = readout.len();
            live.push((readout, vec![0f64; n]));
            live.par_iter_mut().for_each(|(base, part)| {
                // (base + part)ᵀ(I + Ā) = base + (part + (base + part)ᵀĀ).
                let sum: Vec<f64> = base.iter().zip(part.iter()).map(|(b, p)| b + p).collect();
                let added = matrices[k].vec_mul(&sum);
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
        // A ViT's prefix tokens lead the sequence; the maps cover the patches.
        let prefix = self.first.prefix;
        let map = |values: Vec<f32>| Map {
            height: h,
            width: w,
            values,
        };
        live.iter()
            .map(|(base, part)| {
                let (base, part) = (&base[prefix..], &part[prefix..]);
                RelevanceMap {
                    map: map(base.iter().zip(part).map(|(b, p)| (b + p) as f32).collect()),
                    class_part: map(part.iter().map(|&p| p as f32).collect()),
                    baseline: map(base.iter().map(|&b| b as f32).collect()),
                }
            })
            .collect()
    }
}

/// One block's Ā window by window, `[windows, M², M²]`: the mean over heads of
/// max(0, ∇A ⊙ A). A gradient that is not finite is returned as the error.
fn weighted_attention(block: &BlockTrace, grad: &[f32]) -> std::result::Result<Vec<f32>, f32> {
    let area = block.geometry.window_area();
    let size = area * area;
    let heads = block.heads;
    let mut out = vec![0f32; block.geometry.windows() * size];
    out.par_chunks_mut(size).enumerate().try_for_each_init(
        || vec![0f64; size],
        |sum, (w, out)| {
            sum.fill(0.0);
            for h in 0..heads {
                let start = (w * heads + h) * size;
                let (a, g) = (
                    &block.attention[start..start + size],
                    &grad[start..start + size],
                );
                if let Some(&v) = g.iter().find(|v| !v.is_finite()) {
                    return Err(v);
                }
                for ((s, &a), &g) in sum.iter_mut().zip(a).zip(g) {
                    *s += (f64::from(a) * f64::from(g)).max(0.0);
                }
            }
            for (o, &s) in out.iter_mut().zip(sum.iter()) {
                *o = (s / heads as f64) as f32;
            }
            Ok(())
        },
    )?;
    Ok(out)
}
