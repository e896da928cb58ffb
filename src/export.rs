//! `swin-rollout export`: a trace (and its rollout) as NumPy arrays in one `.npz` file.

use std::path::Path;

use crate::error::Result;
use crate::geometry::{Geometry, RollOrder};
use crate::npz::{self, Array};
use crate::relevance::Relevance;
use crate::rollout::Rollout;
use crate::trace::{Trace, ROLL_BEFORE_PAD};

/// One block's row of the export's `geometry` table: stage, block_in_stage, height, width,
/// padded_height, padded_width, window, shift.
pub fn geometry_row(g: &Geometry) -> [i64; 8] {
    [
        g.stage,
        g.block,
        g.height,
        g.width,
        g.padded_height,
        g.padded_width,
        g.window,
        g.shift,
    ]
    .map(|v| v as i64)
}

/// The per-block geometry as the `[L, 8]` int64 table of the export format (see
/// [`geometry_row`]).
pub fn geometry_table(trace: &Trace) -> Vec<i64> {
    trace
        .blocks
        .iter()
        .flat_map(|b| geometry_row(&b.geometry))
        .collect()
}

/// Writes `pixel_values`, `logits` (absent for a headless model), `geometry`, `prefix_tokens`
/// (an int64 scalar: 0 for window attention, 1 or 2 for a ViT's CLS and distillation tokens),
/// `roll_before_pad` (an int64 scalar 1, only for a model that rolls its shifted grids before
/// padding them, as timm's Swins do; absent otherwise),
/// `attn_00`… (`[1, heads, T, T]` for a ViT) to `path`; with a rollout its
/// pooled map after every block, `rollout_00`… `[H₀, W₀]`, and the final one as `rollout`;
/// with a relevance its map after every block, `relevance_00`… `[H₀, W₀]` (the mean of R_b's
/// rows, not rescaled), the final one as `relevance`, and the class explained as `target`
/// (an int64 scalar). The arrays are those of [`with_arrays`].
pub fn write_trace(
    path: &Path,
    trace: &Trace,
    rollout: Option<&Rollout>,
    relevance: Option<&Relevance>,
) -> Result<()> {
    with_arrays(trace, rollout, relevance, |arrays| npz::write(path, arrays))
}

/// Hands `use_arrays` the arrays of the export format, in the order [`write_trace`] stores
/// them, so that other front ends (the Python bindings) give exactly what `export` writes.
/// The arrays borrow maps computed here, hence the callback.
pub fn with_arrays<R>(
    trace: &Trace,
    rollout: Option<&Rollout>,
    relevance: Option<&Relevance>,
    use_arrays: impl FnOnce(&[Array]) -> R,
) -> R {
    let maps = rollout.map(Rollout::pooled_maps).unwrap_or_default();
    let relevance_maps: Vec<_> = relevance
        .map(|r| r.maps().into_iter().map(|m| m.map).collect())
        .unwrap_or_default();
    let target = relevance.map(|r| [r.target() as i64]);
    let (h, w) = trace.image_size;
    let geometry = geometry_table(trace);
    let mut arrays = vec![Array::f32("pixel_values", &[3, h, w], &trace.pixel_values)];
    // A headless model has no logits, and the export none either.
    if !trace.logits.is_empty() {
        arrays.push(Array::f32("logits", &[trace.logits.len()], &trace.logits));
    }
    arrays.push(Array::i64("geometry", &[trace.blocks.len(), 8], &geometry));
    // Tokens before the patches in every attention matrix: none in a window trace.
    let prefix = [trace.blocks.first().map_or(0, |b| b.geometry.prefix as i64)];
    arrays.push(Array::i64("prefix_tokens", &[], &prefix));
    // Written only for the order that is not the default, so every other export keeps its
    // bytes: timm rolls a shifted grid before padding it.
    let timm_roll = trace
        .blocks
        .iter()
        .any(|b| b.geometry.roll == RollOrder::RollThenPad);
    if timm_roll {
        arrays.push(Array::i64(ROLL_BEFORE_PAD, &[], &[1]));
    }
    for (k, block) in trace.blocks.iter().enumerate() {
        let a = block.geometry.window_area();
        arrays.push(Array::f32(
            format!("attn_{k:02}"),
            &[block.geometry.windows(), block.heads, a, a],
            &block.attention,
        ));
    }
    for (name, maps) in [("rollout", &maps), ("relevance", &relevance_maps)] {
        // One array per block, and the last block's again under the plain name.
        for (k, map) in maps.iter().enumerate() {
            let shape = [map.height, map.width];
            arrays.push(Array::f32(format!("{name}_{k:02}"), &shape, &map.values));
        }
        if let Some(last) = maps.last() {
            arrays.push(Array::f32(name, &[last.height, last.width], &last.values));
        }
    }
    if let Some(target) = &target {
        arrays.push(Array::i64("target", &[], target));
    }
    use_arrays(&arrays)
}
