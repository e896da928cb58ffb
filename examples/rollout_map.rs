//! Rolls random attention through a small Swin-like model (no weights needed) and prints the
//! window-aware pooled map after every block as ASCII shading.
//!
//! `cargo run --example rollout_map`

use swin_rollout::{BlockTrace, Geometry, Map, Rollout, RolloutOptions, Trace};

/// Darkest last.
const SHADES: &[u8] = b" .:-=+*#%@";

fn main() -> swin_rollout::Result<()> {
    // 16×16 tokens, window 4, two blocks (regular, shifted) in each of three stages.
    let (side, window, depths, heads) = (16, 4, [2, 2, 2], [2, 4, 8]);
    // Attention is random, but every query pays extra attention to tokens near a "salient"
    // spot, so the rollout has something to find. `token_at` says which token sits at each
    // window place, through the shift and the padding.
    let spot = (4.0, 11.0);
    let mut rng = swin_rollout::rng::SplitMix64(1);
    let mut blocks = Vec::new();
    for stage in 0..depths.len() {
        let n = side >> stage;
        let scale = (1 << stage) as f64;
        for block in 0..depths[stage] {
            let g = Geometry::new(stage, block, n, n, window, (block % 2) * window / 2);
            let area = g.window_area();
            let mut attention = Vec::new();
            for w in 0..g.windows() {
                for _head in 0..heads[stage] {
                    for _query in 0..area {
                        let row: Vec<f64> = (0..area)
                            .map(|p| {
                                let near = g.token_at(w, p).map_or(0.0, |t| {
                                    let (y, x) = ((t as usize / n) as f64, (t as usize % n) as f64);
                                    let d2 =
                                        (y * scale - spot.0).powi(2) + (x * scale - spot.1).powi(2);
                                    4.0 * (-d2 / 8.0).exp()
                                });
                                (near + rng.next_f64()).exp()
                            })
                            .collect();
                        let sum: f64 = row.iter().sum();
                        attention.extend(row.iter().map(|v| (v / sum) as f32));
                    }
                }
            }
            blocks.push(BlockTrace {
                geometry: g,
                heads: heads[stage],
                attention,
            });
        }
    }
    let trace = Trace {
        pixel_values: Vec::new(),
        image_size: (side * 4, side * 4),
        logits: Vec::new(),
        blocks,
    };

    let rollout = Rollout::new(&trace, &RolloutOptions::default())?;
    for (k, map) in rollout.pooled_maps().iter().enumerate() {
        let g = trace.blocks[k].geometry;
        println!(
            "after block {k} (stage {}, {}×{} tokens, window {}, shift {}):",
            g.stage, g.height, g.width, g.window, g.shift
        );
        print_map(map);
    }
    Ok(())
}

/// One character per token (doubled across, for squarer cells), shaded relative to the max.
fn print_map(map: &Map) {
    let max = map.values.iter().copied().fold(f32::MIN_POSITIVE, f32::max);
    for row in map.values.chunks(map.width) {
        let line: String = row
            .iter()
            .flat_map(|&v| {
                let i = ((v / max) * (SHADES.len() - 1) as f32).round() as usize;
                let c = SHADES[i.min(SHADES.len() - 1)] as char;
                [c, c]
            })
            .collect();
        println!("  |{line}|");
    }
}
