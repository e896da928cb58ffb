//! `swin-rollout export`: a trace (and its rollout) as NumPy arrays in one `.npz` file.

use std::path::Path;

use crate::error::Result;
use crate::npz::{self, Array};
use crate::rollout::Rollout;
use crate::trace::Trace;

/// The per-block geometry as the `[L, 8]` int64 table of the export format: stage,
/// block_in_stage, height, width, padded_height, padded_width, window, shift.
pub fn geometry_table(trace: &Trace) -> Vec<i64> {
    trace
        .blocks
        .iter()
        .flat_map(|b| {
            let g = &b.geometry;
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
        })
        .map(|v| v as i64)
        .collect()
}

/// Writes `pixel_values`, `logits`, `geometry`, `attn_00`… to `path`, and with a rollout its
/// pooled map after every block, `rollout_00`… `[H₀, W₀]`, and the final one as `rollout`.
pub fn write_trace(path: &Path, trace: &Trace, rollout: Option<&Rollout>) -> Result<()> {
    let maps = rollout.map(Rollout::pooled_maps).unwrap_or_default();
    let (h, w) = trace.image_size;
    let geometry = geometry_table(trace);
    let mut arrays = vec![
        Array::f32("pixel_values", &[3, h, w], &trace.pixel_values),
        Array::f32("logits", &[trace.logits.len()], &trace.logits),
        Array::i64("geometry", &[trace.blocks.len(), 8], &geometry),
    ];
    for (k, block) in trace.blocks.iter().enumerate() {
        let a = block.geometry.window_area();
        arrays.push(Array::f32(
            format!("attn_{k:02}"),
            &[block.geometry.windows(), block.heads, a, a],
            &block.attention,
        ));
    }
    for (k, map) in maps.iter().enumerate() {
        let shape = [map.height, map.width];
        arrays.push(Array::f32(format!("rollout_{k:02}"), &shape, &map.values));
    }
    if let Some(last) = maps.last() {
        arrays.push(Array::f32(
            "rollout",
            &[last.height, last.width],
            &last.values,
        ));
    }
    npz::write(path, &arrays)
}
