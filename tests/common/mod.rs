//! What the dense-reference tests share: small synthetic traces and a dense f64 reading of
//! Swin's window placement and patch merging, written from first principles.

#![allow(dead_code)] // each test file uses its own part

pub mod bad_traces;

use swin_rollout::{BlockTrace, Geometry, Trace};

// ---------------------------------------------------------------------------------------------
// Synthetic traces

pub use swin_rollout::rng::SplitMix64 as Rng;

/// A file or folder under `tests/fixtures/`.
pub fn fixture_path(p: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(p)
}

/// The reference tensors a fixture script saved beside the model folder `dir`.
pub fn reference(dir: &str) -> std::collections::HashMap<String, candle_core::Tensor> {
    let path = fixture_path(dir).join("reference.safetensors");
    candle_core::safetensors::load(path, &candle_core::Device::Cpu).expect("reference fixture")
}

/// A small Swin-like model: grid, configured window, blocks and heads per stage.
#[derive(Clone, Copy)]
pub struct Config {
    pub height: usize,
    pub width: usize,
    pub window: usize,
    pub depths: &'static [usize],
    pub heads: &'static [usize],
    pub shift: bool,
    /// Swin V2's rule: the window and shift stay as configured on grids smaller than the
    /// window, which are padded up to it, instead of V1's clamp.
    pub fixed_windows: bool,
}

pub fn geometries(cfg: &Config) -> Vec<Geometry> {
    let (mut h, mut w) = (cfg.height, cfg.width);
    let mut out = Vec::new();
    for (stage, &depth) in cfg.depths.iter().enumerate() {
        for block in 0..depth {
            let shift = if cfg.shift && block % 2 == 1 {
                cfg.window / 2
            } else {
                0
            };
            out.push(if cfg.fixed_windows {
                Geometry::unclamped(stage, block, h, w, cfg.window, shift)
            } else {
                Geometry::new(stage, block, h, w, cfg.window, shift)
            });
        }
        h = h.div_ceil(2);
        w = w.div_ceil(2);
    }
    out
}

/// Random attention: every row of every head is positive and sums to 1 over all M² places,
/// padding included (the model does not mask padding).
pub fn random_trace(cfg: &Config, seed: u64) -> Trace {
    let mut rng = Rng(seed);
    let blocks = geometries(cfg)
        .into_iter()
        .map(|g| random_block(g, cfg.heads[g.stage], &mut rng))
        .collect();
    Trace {
        pixel_values: Vec::new(),
        image_size: (0, 0),
        logits: Vec::new(),
        blocks,
    }
}

/// One block of random attention over `g`'s windows (a global block's one window is the whole
/// sequence): every row of every head positive, summing to 1 over the window's places.
fn random_block(g: Geometry, heads: usize, rng: &mut Rng) -> BlockTrace {
    let area = g.window_area();
    let mut attention = Vec::with_capacity(g.windows() * heads * area * area);
    for _ in 0..g.windows() * heads * area {
        let row: Vec<f64> = (0..area).map(|_| (4.0 * rng.next_f64()).exp()).collect();
        let sum: f64 = row.iter().sum();
        attention.extend(row.iter().map(|v| (v / sum) as f32));
    }
    BlockTrace {
        geometry: g,
        heads,
        attention,
    }
}

/// A ViT-like trace: `depth` blocks of global attention with `heads` heads over `prefix`
/// tokens and an `h`×`w` patch grid, random positive softmax rows over the whole sequence.
pub fn random_global_trace(
    (h, w): (usize, usize),
    prefix: usize,
    depth: usize,
    heads: usize,
    seed: u64,
) -> Trace {
    let mut rng = Rng(seed);
    let blocks = (0..depth)
        .map(|block| random_block(Geometry::global(block, h, w, prefix), heads, &mut rng))
        .collect();
    Trace {
        pixel_values: Vec::new(),
        image_size: (h * 8, w * 8),
        logits: vec![0.3, 1.5],
        blocks,
    }
}

// ---------------------------------------------------------------------------------------------
// The dense reference, in f64, built from first principles

pub type Dense = Vec<Vec<f64>>;

/// Token (raster index) at every window place, found by materializing the padded grid,
/// rotating it as `torch.roll(-s)` does and cutting it into windows.
pub fn reference_places(g: &Geometry, shift: usize) -> Vec<Vec<Option<usize>>> {
    let (hp, wp, m) = (g.padded_height, g.padded_width, g.window);
    let mut grid: Vec<Vec<Option<usize>>> = (0..hp)
        .map(|y| {
            (0..wp)
                .map(|x| (y < g.height && x < g.width).then_some(y * g.width + x))
                .collect()
        })
        .collect();
    grid.rotate_left(shift % hp);
    for row in &mut grid {
        row.rotate_left(shift % wp);
    }
    let mut windows = Vec::new();
    for wr in 0..hp / m {
        for wc in 0..wp / m {
            let mut places = Vec::new();
            for r in 0..m {
                for c in 0..m {
                    places.push(grid[wr * m + r][wc * m + c]);
                }
            }
            windows.push(places);
        }
    }
    windows
}

/// P: each merged token averages its real children.
pub fn reference_merge(h: usize, w: usize) -> Dense {
    let (h2, w2) = (h.div_ceil(2), w.div_ceil(2));
    let mut p = vec![vec![0.0; h * w]; h2 * w2];
    for y in 0..h2 {
        for x in 0..w2 {
            let kids: Vec<usize> = [(0, 0), (1, 0), (0, 1), (1, 1)]
                .iter()
                .map(|(dy, dx)| (2 * y + dy, 2 * x + dx))
                .filter(|&(cy, cx)| cy < h && cx < w)
                .map(|(cy, cx)| cy * w + cx)
                .collect();
            for &c in &kids {
                p[y * w2 + x][c] = 1.0 / kids.len() as f64;
            }
        }
    }
    p
}

pub fn matmul(a: &Dense, b: &Dense) -> Dense {
    let cols = b[0].len();
    a.iter()
        .map(|row| {
            let mut out = vec![0.0; cols];
            for (k, &x) in row.iter().enumerate() {
                if x != 0.0 {
                    for (o, &y) in out.iter_mut().zip(&b[k]) {
                        *o += x * y;
                    }
                }
            }
            out
        })
        .collect()
}

pub fn identity(n: usize) -> Dense {
    (0..n)
        .map(|i| (0..n).map(|j| if i == j { 1.0 } else { 0.0 }).collect())
        .collect()
}

/// Small geometries that exercise shifts, padding, clamping, odd sizes and merges.
pub const CONFIGS: &[Config] = &[
    // Shift wraps; second stage keeps windows of 2 with shift 1; third is clamped.
    Config {
        height: 8,
        width: 8,
        window: 2,
        depths: &[2, 2, 2],
        heads: &[1, 2, 3],
        shift: true,
        fixed_windows: false,
    },
    Config {
        height: 8,
        width: 8,
        window: 4,
        depths: &[2, 2],
        heads: &[2, 4],
        shift: true,
        fixed_windows: false,
    },
    Config {
        height: 12,
        width: 12,
        window: 3,
        depths: &[2, 2, 2],
        heads: &[2, 3, 4],
        shift: true,
        fixed_windows: false,
    },
    // Second stage 6×6 pads to 8×8.
    Config {
        height: 12,
        width: 12,
        window: 4,
        depths: &[2, 2],
        heads: &[3, 2],
        shift: true,
        fixed_windows: false,
    },
    // Padding in every stage but the clamped last one.
    Config {
        height: 10,
        width: 10,
        window: 4,
        depths: &[2, 2, 2],
        heads: &[2, 2, 2],
        shift: true,
        fixed_windows: false,
    },
    // Odd sizes: 7×9 → 4×5 → 2×3 (clamped to window 2, padded to 2×4).
    Config {
        height: 7,
        width: 9,
        window: 3,
        depths: &[2, 2, 2],
        heads: &[1, 2, 2],
        shift: true,
        fixed_windows: false,
    },
    Config {
        height: 8,
        width: 8,
        window: 2,
        depths: &[2, 2],
        heads: &[2, 2],
        shift: false,
        fixed_windows: false,
    },
    // An odd number of blocks: the third has no pair.
    Config {
        height: 8,
        width: 8,
        window: 3,
        depths: &[3],
        heads: &[2],
        shift: true,
        fixed_windows: false,
    },
    // Swin V2 windows on a small input: 6×6 pads to 8×8, then 3×3 and 2×2 each pad up to one
    // 4×4 window that is still shifted by 2.
    Config {
        height: 6,
        width: 6,
        window: 4,
        depths: &[2, 2, 2],
        heads: &[2, 1, 2],
        shift: true,
        fixed_windows: true,
    },
    // One block per stage: a merge after every block, no pairs.
    Config {
        height: 7,
        width: 9,
        window: 3,
        depths: &[1, 1, 1],
        heads: &[2, 2, 2],
        shift: true,
        fixed_windows: false,
    },
];
