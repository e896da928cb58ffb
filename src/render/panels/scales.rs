//! Colour scales that more than one panel shows, computed once per renderer from the template
//! and the story: the attention scale (the matrix and the schematic's keys) and the map scale
//! (the rollout and naive overlays, which share colours so that they compare).

use super::relative;
use crate::render::colormap::{Colormap, Lut, Norm, Scale};
use crate::render::story::Story;
use crate::render::template::{RangeMode, Template};
use crate::rollout::Map;

/// The shared scales.
#[derive(Debug)]
pub struct Scales {
    /// Attention weights.
    pub attention: AttentionScale,
    /// Rollout maps, in units of the uniform share.
    pub maps: MapScale,
}

impl Scales {
    /// The scales `template` shows `story` with.
    pub fn new(template: &Template, story: &Story) -> Scales {
        let mut shown: Vec<&[Map]> = Vec::new();
        if template.rollout.is_some() {
            shown.push(&story.pooled);
        }
        if template.naive.is_some() {
            shown.push(&story.naive);
        }
        Scales {
            attention: AttentionScale::new(template, story),
            maps: MapScale::new(&shown),
        }
    }
}

/// The attention scale: the matrix's colour map and each block's range (global or per block,
/// as the matrix section says); without a matrix, magma and no ranges.
#[derive(Debug)]
pub struct AttentionScale {
    /// Colours.
    pub lut: Lut,
    norms: Vec<Norm>,
}

impl AttentionScale {
    fn new(template: &Template, story: &Story) -> AttentionScale {
        let Some(spec) = &template.matrix else {
            return AttentionScale {
                lut: Colormap::Magma.lut(),
                norms: Vec::new(),
            };
        };
        let max_of = |k: usize| {
            story.attention[k]
                .values()
                .iter()
                .copied()
                .fold(0f32, f32::max)
        };
        let global = (0..story.attention.len()).map(max_of).fold(0f32, f32::max);
        let norms = (0..story.attention.len())
            .map(|k| Norm {
                scale: spec.scale(),
                lo: 0.0,
                hi: match spec.range {
                    RangeMode::Global => global,
                    RangeMode::Block => max_of(k),
                }
                .max(f32::MIN_POSITIVE),
            })
            .collect();
        AttentionScale {
            lut: spec.colormap.lut(),
            norms,
        }
    }

    /// Block `k`'s range, if the template shows the matrix.
    pub fn norm(&self, k: usize) -> Option<&Norm> {
        self.norms.get(k)
    }
}

/// The value range of the maps shown side by side: over all blocks, and block by block (the
/// same block of every map set).
#[derive(Debug)]
pub struct MapScale {
    global: (f32, f32),
    blocks: Vec<(f32, f32)>,
}

fn range(lo_hi: (f32, f32), values: &[f32]) -> (f32, f32) {
    values
        .iter()
        .fold(lo_hi, |(lo, hi), &v| (lo.min(v), hi.max(v)))
}

const EMPTY: (f32, f32) = (f32::INFINITY, f32::NEG_INFINITY);

impl MapScale {
    fn new(sets: &[&[Map]]) -> MapScale {
        let blocks_n = sets.iter().map(|s| s.len()).max().unwrap_or(0);
        let mut blocks = vec![EMPTY; blocks_n];
        for set in sets {
            for (k, map) in set.iter().enumerate() {
                blocks[k] = range(blocks[k], &relative(map));
            }
        }
        let global = blocks
            .iter()
            .fold(EMPTY, |(lo, hi), &(a, b)| (lo.min(a), hi.max(b)));
        MapScale { global, blocks }
    }

    /// The norms of `count` blocks' maps for a panel with range mode `mode`.
    pub fn norms(&self, mode: RangeMode, count: usize) -> Vec<Norm> {
        (0..count)
            .map(|k| {
                let (lo, hi) = match mode {
                    RangeMode::Global => self.global,
                    RangeMode::Block => self.blocks.get(k).copied().unwrap_or(EMPTY),
                };
                let (lo, hi) = if lo.is_finite() && hi > lo {
                    (lo, hi)
                } else {
                    (lo.min(1.0) - 0.5, hi.max(1.0) + 0.5)
                };
                Norm {
                    scale: Scale::Linear,
                    lo,
                    hi,
                }
            })
            .collect()
    }
}
