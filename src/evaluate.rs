//! The faithfulness benchmark: how well does each explanation point at the one item of a
//! cluttered Fashion-MNIST scene ([`crate::scene`]), and how much does the classifier depend on
//! the pixels it ranks highest?
//!
//! On `scenes` freshly generated held-out scenes (t10k split, scene i of base seed S), five
//! explanations ([`Method`]) are scored with four metrics ([`Scores`]). All explanations are
//! maps over the first stage's token grid (H₀×W₀ cells), normalized to sum 1.
//!
//! **Geometry.** The scene is preprocessed as the model says, except that a centre crop
//! (`crop_pct`) is never applied: the item may lie anywhere in the canvas, and the scene is
//! already square. Cell (y, x) covers model-input pixels `[y·p, (y+1)·p)` (p = patch size).
//! Canvas pixel (px, py) belongs to the cell holding model-input pixel
//! `⌊(px + ½)·W_in/224⌋` (likewise for rows); a cell's mass is spread evenly over its canvas
//! pixels, which gives the map at pixel resolution. When the input is 224×224 this is exact.
//!
//! **Metrics**, each averaged over scenes (the table adds ± one standard error of the mean):
//! - *pointing game*: 1 if the map's maximal cell has its centre (rounded down to a canvas
//!   pixel) inside the item's bounding box, else 0. Ties are split: when k cells share the
//!   maximum (within a relative 10⁻⁶), the score is the share of them whose centre is inside —
//!   the expected hit under random tie-breaking. For the uniform map this is the share of all
//!   cells centred in the box.
//! - *mask mass*: the share of the map's mass that falls on the item's mask pixels (map at
//!   pixel resolution, as above). For the uniform map this is the mask's area fraction.
//! - *deletion AUC* (lower is better): the canvas is cut into a 14×14 grid of 16-px patches,
//!   each scored by the map mass on its pixels; patches are removed most-salient first —
//!   replaced by the deletion baseline ([`Baseline`]; by default 0 in the preprocessed input,
//!   i.e. the normalization mean colour; or a Gaussian-blurred copy of the scene) — in 16 steps
//!   (after step k, the first round(196·k/16) patches are gone, ties to even), and the model's
//!   softmax probability of the TRUE class is read after each step. The AUC is the trapezoid
//!   rule over the fraction of patches removed, from the intact image (fraction 0) to the
//!   deletion baseline image (fraction 1). Patches whose scores tie (quantized to 10⁻⁹ of the
//!   map's mass) are ordered by a per-scene seeded random permutation shared by all methods, so
//!   a map without information (uniform) removes patches in random order. The forward passes
//!   of the curves are batched ([`EvaluateOptions::batch`]); the intact image's probability is
//!   that of the traced forward pass.
//! - *insertion AUC* (higher is better): the same order and steps, but starting from the
//!   insertion baseline (by default the scene blurred with σ = 8 canvas pixels, as in RISE)
//!   and revealing the scene's patches.
//!
//! **Explanations**: the window-aware pooled rollout after the last block
//! ([`Rollout::pooled_maps`]); the naive rollout that ignores the cyclic shifts
//! ([`Rollout::naive_pooled_maps`]); the last block's head-fused attention alone (with no
//! residual identity mixed in), pooled over its rows and upsampled from its stage's grid to the
//! first stage's grid; a random map (cell values uniform in [0, 1), seeded per scene); and the
//! uniform map.
//!
//! Scenes are evaluated in parallel, but every scene's numbers depend only on (seed, index) and
//! are reduced in scene order, so the report does not depend on the number of threads.

use std::path::Path;
use std::time::Instant;

use candle_core::{Device, Tensor};
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::model::Model;
use crate::preprocess::Preprocessor;
use crate::rollout::{Map, Rollout, RolloutOptions, SparseAttention};
use crate::scene::{Rng, Scene, SceneSource, CANVAS, CLASS_NAMES};

/// Base seed of the benchmark's scenes when none is given.
pub const DEFAULT_SEED: u64 = 20_261_127;

/// Scenes the benchmark evaluates when no number is given.
pub const DEFAULT_SCENES: usize = 200;

/// Side of the deletion/insertion patch grid over the canvas (14×14 patches of 16 px).
pub const PATCH_GRID: usize = 14;

/// Random-stream domains (see [`Rng::for_stream`]); scenes use 0.
const DOMAIN_RANDOM_MAP: u64 = 1;
const DOMAIN_TIE_BREAK: u64 = 2;

/// Standard deviation, in canvas pixels, of the Gaussian blur of [`Baseline::Blur`]: half a
/// deletion patch, enough to erase a 56–112 px item's shape but keep its colour blob.
pub const BLUR_SIGMA: f64 = 8.0;

/// Relative tolerance under which two cells tie for the maximum in the pointing game.
const POINTING_TIE: f64 = 1e-6;

/// Patch scores are compared after rounding to this share of the map's mass, so float noise in
/// the sums cannot order patches that a map scores equally.
const SCORE_QUANTUM: f64 = 1e-9;

/// An explanation under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// The window-aware pooled rollout after the last block.
    WindowAware,
    /// The rollout with every shifted block read as unshifted.
    Naive,
    /// The last block's head-fused attention, pooled over its rows.
    LastBlock,
    /// A seeded random map.
    Random,
    /// The uniform map.
    Uniform,
}

impl Method {
    /// Every method, in report order.
    pub const ALL: [Method; 5] = [
        Method::WindowAware,
        Method::Naive,
        Method::LastBlock,
        Method::Random,
        Method::Uniform,
    ];

    /// Short name, used in the CSV.
    pub fn name(self) -> &'static str {
        match self {
            Method::WindowAware => "window-aware",
            Method::Naive => "naive",
            Method::LastBlock => "last-block",
            Method::Random => "random",
            Method::Uniform => "uniform",
        }
    }

    /// Description, used in the table.
    pub fn description(self) -> &'static str {
        match self {
            Method::WindowAware => "window-aware rollout",
            Method::Naive => "naive rollout (shifts ignored)",
            Method::LastBlock => "last block attention",
            Method::Random => "random map",
            Method::Uniform => "uniform map",
        }
    }
}

/// The settings of a benchmark run.
#[derive(Debug, Clone, PartialEq)]
pub struct EvaluateOptions {
    /// Number of held-out scenes (at least 1).
    pub scenes: usize,
    /// Base seed: scene i is scene i of this seed.
    pub seed: u64,
    /// How the rollouts are computed (the last-block map uses the same head fusion and
    /// discard, but no residual identity).
    pub rollout: RolloutOptions,
    /// Deletion/insertion steps from fraction 0 to fraction 1 (at least 1).
    pub steps: usize,
    /// Images per batched forward pass of the deletion/insertion curves (at least 1).
    pub batch: usize,
    /// What deleted patches become (default [`Baseline::Mean`]).
    pub deletion_baseline: Baseline,
    /// What insertion reveals patches onto (default [`Baseline::Blur`]).
    pub insertion_baseline: Baseline,
}

/// A "no information" image: what a deleted patch becomes, or what insertion reveals patches
/// onto.
///
/// The defaults follow RISE (Petsiuk et al., 2018): deletion replaces patches with a constant
/// (here the mean colour), insertion starts from a blurred copy. Insertion onto the flat mean
/// colour was measured and rejected as the default: a few sharp item patches on a flat canvas
/// are far from anything the model saw. On an early checkpoint of the default model it ranked
/// the uniform map above the rollouts; on the final one (200 scenes) it barely separated them
/// (insertion AUC 0.33 against 0.30, where the blurred start gives 0.58 against 0.49).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Baseline {
    /// Zero in the preprocessed input: the normalization mean colour (a flat grey-brown).
    #[default]
    Mean,
    /// A Gaussian-blurred copy of the scene (σ = [`BLUR_SIGMA`] canvas pixels), which keeps
    /// the colours and the layout but not the item's shape: the RISE convention for insertion.
    Blur,
}

impl Baseline {
    /// Every baseline, in the order the CLI lists them.
    pub const ALL: [Baseline; 2] = [Baseline::Mean, Baseline::Blur];

    /// The name used on the command line and in the report.
    pub fn name(self) -> &'static str {
        match self {
            Baseline::Mean => "mean",
            Baseline::Blur => "blur",
        }
    }

    /// What the baseline image is, for the report.
    pub fn describe(self) -> &'static str {
        match self {
            Baseline::Mean => "the mean colour",
            Baseline::Blur => "the blurred scene",
        }
    }
}

impl std::fmt::Display for Baseline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Baseline {
    type Err = Error;

    /// Parses `mean` or `blur` (case-insensitive).
    fn from_str(s: &str) -> Result<Self> {
        let wanted = s.trim().to_ascii_lowercase();
        Baseline::ALL
            .into_iter()
            .find(|b| b.name() == wanted)
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "unknown --baseline '{s}'; expected one of: mean, blur"
                ))
            })
    }
}

impl Default for EvaluateOptions {
    fn default() -> Self {
        EvaluateOptions {
            scenes: DEFAULT_SCENES,
            seed: DEFAULT_SEED,
            rollout: RolloutOptions::default(),
            steps: 16,
            batch: 8,
            deletion_baseline: Baseline::Mean,
            insertion_baseline: Baseline::Blur,
        }
    }
}

impl EvaluateOptions {
    /// Checks that every setting is in range.
    pub fn validate(&self) -> Result<()> {
        self.rollout.validate()?;
        if self.scenes == 0 {
            return Err(Error::InvalidArgument("--scenes must be at least 1".into()));
        }
        if self.steps == 0 || self.steps > PATCH_GRID * PATCH_GRID {
            return Err(Error::InvalidArgument(format!(
                "deletion/insertion steps must be in 1..={}, got {}",
                PATCH_GRID * PATCH_GRID,
                self.steps
            )));
        }
        if self.batch == 0 {
            return Err(Error::InvalidArgument(
                "batch size must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

/// One method's scores, on one scene or averaged.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Scores {
    /// Pointing game hit, in [0, 1] (fractional only for ties).
    pub pointing: f64,
    /// Share of the map's mass on the item's mask, in [0, 1].
    pub mask_mass: f64,
    /// Deletion AUC of the true class's probability, in [0, 1]; lower is better.
    pub deletion_auc: f64,
    /// Insertion AUC of the true class's probability, in [0, 1]; higher is better.
    pub insertion_auc: f64,
}

impl Scores {
    fn as_array(&self) -> [f64; 4] {
        [
            self.pointing,
            self.mask_mass,
            self.deletion_auc,
            self.insertion_auc,
        ]
    }

    fn from_array(a: [f64; 4]) -> Self {
        Scores {
            pointing: a[0],
            mask_mass: a[1],
            deletion_auc: a[2],
            insertion_auc: a[3],
        }
    }
}

/// Everything measured on one scene.
#[derive(Debug, Clone, PartialEq)]
pub struct SceneResult {
    /// Scene index within the seed's scene set.
    pub index: u64,
    /// True class.
    pub label: usize,
    /// The model's most probable class on the intact scene.
    pub predicted: usize,
    /// Softmax probability of the true class on the intact scene.
    pub probability: f64,
    /// Share of the canvas covered by the item's mask.
    pub mask_fraction: f64,
    /// Scores of each method, in [`Method::ALL`] order.
    pub scores: [Scores; 5],
}

/// One method's averaged scores.
#[derive(Debug, Clone, PartialEq)]
pub struct MethodSummary {
    /// The method.
    pub method: Method,
    /// Means over scenes.
    pub mean: Scores,
    /// Standard errors of the means (sample standard deviation / √n; 0 for one scene).
    pub std_error: Scores,
}

/// The benchmark's result.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// Where the model came from.
    pub model: String,
    /// Number of scenes.
    pub scenes: usize,
    /// Base seed.
    pub seed: u64,
    /// What deleted patches became.
    pub deletion_baseline: Baseline,
    /// What insertion started from.
    pub insertion_baseline: Baseline,
    /// Share of scenes the model classifies correctly (top-1).
    pub accuracy: f64,
    /// Mean share of the canvas covered by the item's mask.
    pub mask_fraction: f64,
    /// One summary per method, in [`Method::ALL`] order.
    pub methods: Vec<MethodSummary>,
    /// Every scene's numbers, in scene order.
    pub per_scene: Vec<SceneResult>,
    /// Wall-clock seconds per scene (all threads together); not part of the table or CSV, so
    /// those stay identical from run to run.
    pub seconds_per_scene: f64,
}

/// How map cells, canvas pixels, model-input pixels and deletion patches relate; fixed for a
/// model and computed once.
#[derive(Debug, Clone)]
struct Layout {
    /// Model input height and width.
    input: (usize, usize),
    /// First-stage token grid.
    grid: (usize, usize),
    /// For each canvas pixel (row-major), its cell.
    cell_of_pixel: Vec<u32>,
    /// Canvas pixels per cell.
    pixels_per_cell: Vec<u32>,
    /// Each cell's centre as a canvas pixel (x, y).
    cell_centre: Vec<(usize, usize)>,
    /// For each model-input pixel (row-major), its deletion patch.
    patch_of_input: Vec<u16>,
}

impl Layout {
    fn new(input: (usize, usize), patch: usize) -> Self {
        let (hi, wi) = input;
        let grid = (hi.div_ceil(patch), wi.div_ceil(patch));
        // Canvas coordinate → model-input coordinate (nearest, half-pixel centres).
        let to_input = |c: usize, n: usize| {
            (((c as f64 + 0.5) * n as f64 / CANVAS as f64) as usize).min(n - 1)
        };
        let mut cell_of_pixel = Vec::with_capacity(CANVAS * CANVAS);
        let mut pixels_per_cell = vec![0u32; grid.0 * grid.1];
        for py in 0..CANVAS {
            let cy = to_input(py, hi) / patch;
            for px in 0..CANVAS {
                let cell = cy * grid.1 + to_input(px, wi) / patch;
                cell_of_pixel.push(cell as u32);
                pixels_per_cell[cell] += 1;
            }
        }
        // The centre of the cell's real input pixels, back in canvas pixels.
        let centre = |c: usize, n: usize| {
            let mid = (c * patch + ((c + 1) * patch).min(n)) as f64 / 2.0;
            ((mid * CANVAS as f64 / n as f64) as usize).min(CANVAS - 1)
        };
        let cell_centre = (0..grid.0 * grid.1)
            .map(|c| (centre(c % grid.1, wi), centre(c / grid.1, hi)))
            .collect();
        let side = CANVAS / PATCH_GRID;
        // Model-input pixel → canvas coordinate of its centre → patch.
        let to_patch = |i: usize, n: usize| {
            let c = ((i as f64 + 0.5) * CANVAS as f64 / n as f64) as usize;
            (c / side).min(PATCH_GRID - 1)
        };
        let mut patch_of_input = Vec::with_capacity(hi * wi);
        for y in 0..hi {
            for x in 0..wi {
                patch_of_input.push((to_patch(y, hi) * PATCH_GRID + to_patch(x, wi)) as u16);
            }
        }
        Layout {
            input,
            grid,
            cell_of_pixel,
            pixels_per_cell,
            cell_centre,
            patch_of_input,
        }
    }

    /// The map at canvas resolution: each cell's value spread evenly over its pixels.
    fn pixel_map(&self, map: &[f64]) -> Vec<f64> {
        self.cell_of_pixel
            .iter()
            .map(|&c| map[c as usize] / f64::from(self.pixels_per_cell[c as usize]))
            .collect()
    }
}

/// Runs the benchmark: `options.scenes` held-out scenes of `options.seed` from `source`
/// through `model`. `on_scene` is called once per finished scene (for a progress bar), from
/// any thread.
///
/// # Errors
/// Invalid options, a model without exactly the 10 Fashion-MNIST classes, or a failed
/// forward pass.
pub fn evaluate(
    model: &Model,
    source: &SceneSource,
    options: &EvaluateOptions,
    on_scene: &(dyn Fn() + Sync),
) -> Result<Report> {
    options.validate()?;
    let labels = model.config().num_labels();
    if labels != CLASS_NAMES.len() {
        return Err(Error::InvalidArgument(format!(
            "evaluate needs a Fashion-MNIST classifier with {} labels; {} has {labels}; pass one with --model",
            CLASS_NAMES.len(),
            model.name
        )));
    }
    let mut preprocessor = model.preprocessor.clone();
    // A centre crop would cut off items near the border; the scenes are square already.
    preprocessor.crop_pct = None;
    let layout = Layout::new(preprocessor.size, model.config().patch_size);
    let start = Instant::now();
    let per_scene = (0..options.scenes as u64)
        .into_par_iter()
        .map(|index| {
            let scene = source.scene(options.seed, index);
            let result = evaluate_scene(model, &preprocessor, &layout, &scene, index, options);
            on_scene();
            result
        })
        .collect::<Result<Vec<_>>>()?;
    let seconds_per_scene = start.elapsed().as_secs_f64() / options.scenes as f64;
    Ok(summarize(
        model.name.clone(),
        options,
        per_scene,
        seconds_per_scene,
    ))
}

fn summarize(
    model: String,
    options: &EvaluateOptions,
    per_scene: Vec<SceneResult>,
    seconds_per_scene: f64,
) -> Report {
    let n = per_scene.len() as f64;
    let methods = Method::ALL
        .iter()
        .enumerate()
        .map(|(m, &method)| {
            let values: Vec<[f64; 4]> = per_scene.iter().map(|s| s.scores[m].as_array()).collect();
            let mean: [f64; 4] =
                std::array::from_fn(|j| values.iter().map(|v| v[j]).sum::<f64>() / n);
            let se: [f64; 4] = std::array::from_fn(|j| {
                if values.len() < 2 {
                    return 0.0;
                }
                let var = values.iter().map(|v| (v[j] - mean[j]).powi(2)).sum::<f64>() / (n - 1.0);
                (var / n).sqrt()
            });
            MethodSummary {
                method,
                mean: Scores::from_array(mean),
                std_error: Scores::from_array(se),
            }
        })
        .collect();
    let correct = per_scene.iter().filter(|s| s.predicted == s.label).count();
    Report {
        model,
        scenes: per_scene.len(),
        seed: options.seed,
        deletion_baseline: options.deletion_baseline,
        insertion_baseline: options.insertion_baseline,
        accuracy: correct as f64 / n,
        mask_fraction: per_scene.iter().map(|s| s.mask_fraction).sum::<f64>() / n,
        methods,
        per_scene,
        seconds_per_scene,
    }
}

/// Softmax probabilities of `count` preprocessed images laid end to end in `pixels`.
fn probabilities(
    model: &Model,
    pixels: &[f32],
    count: usize,
    (h, w): (usize, usize),
) -> Result<Vec<Vec<f64>>> {
    let input = Tensor::from_slice(pixels, (count, 3, h, w), &Device::Cpu)?;
    let logits = model.swin.forward(&input, false)?.logits.to_vec2::<f32>()?;
    Ok(logits.iter().map(|l| softmax(l)).collect())
}

fn softmax(logits: &[f32]) -> Vec<f64> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f64> = logits.iter().map(|&l| f64::from(l - max).exp()).collect();
    let total: f64 = exp.iter().sum();
    exp.iter().map(|e| e / total).collect()
}

/// Every explanation of one scene, over the first stage's grid, each summing to 1.
fn explanations(
    model: &Model,
    pixels: Vec<f32>,
    options: &EvaluateOptions,
    index: u64,
    grid: (usize, usize),
) -> Result<(Vec<f32>, [Vec<f64>; 5])> {
    let trace = model.trace_pixels(pixels)?;
    let rollout = Rollout::new(&trace, &options.rollout)?;
    if rollout.input_size() != grid {
        return Err(Error::Model(format!(
            "the rollout's {}×{} grid does not match the {}×{} patch grid of the input",
            rollout.input_size().0,
            rollout.input_size().1,
            grid.0,
            grid.1
        )));
    }
    let last_map = |maps: Vec<Map>| -> Result<Vec<f64>> {
        let map = maps
            .into_iter()
            .next_back()
            .ok_or_else(|| Error::Model("the rollout has no blocks".into()))?;
        Ok(normalized(
            map.values.iter().map(|&v| f64::from(v)).collect(),
        ))
    };
    let window_aware = last_map(rollout.pooled_maps())?;
    let naive = last_map(rollout.naive_pooled_maps())?;
    let last_block = last_block_map(&trace, options, grid)?;
    let mut rng = Rng::for_stream(options.seed, index, DOMAIN_RANDOM_MAP);
    let random = normalized((0..grid.0 * grid.1).map(|_| rng.unit()).collect());
    let uniform = vec![1.0 / (grid.0 * grid.1) as f64; grid.0 * grid.1];
    Ok((
        trace.logits,
        [window_aware, naive, last_block, random, uniform],
    ))
}

/// The last block's head-fused attention without the residual identity, pooled over its rows
/// (uniform vᵀ·A), upsampled to the first stage's grid: each merge halves the grid, rounding
/// up, so a stage-s token covers the first-stage tokens whose coordinates shifted right by s are
/// its own.
fn last_block_map(
    trace: &crate::trace::Trace,
    options: &EvaluateOptions,
    (h0, w0): (usize, usize),
) -> Result<Vec<f64>> {
    let (first, last) = match (trace.blocks.first(), trace.blocks.last()) {
        (Some(f), Some(l)) => (f, l),
        _ => return Err(Error::Model("the trace has no blocks".into())),
    };
    let attention_only = RolloutOptions {
        residual: 0.0,
        ..options.rollout
    };
    let a = SparseAttention::from_block(last, &attention_only, false)?;
    let n = a.tokens();
    let pooled = a.vec_mul(&vec![1.0 / n as f64; n]);
    let g = a.geometry();
    let s = g.stage - first.geometry.stage;
    Ok(normalized(
        (0..h0 * w0)
            .map(|i| pooled[((i / w0) >> s) * g.width + ((i % w0) >> s)])
            .collect(),
    ))
}

/// Scales to sum 1; a map with no mass becomes uniform (every cell equally likely).
fn normalized(mut v: Vec<f64>) -> Vec<f64> {
    let total: f64 = v.iter().sum();
    if total > 0.0 && total.is_finite() {
        v.iter_mut().for_each(|x| *x /= total);
    } else {
        let u = 1.0 / v.len() as f64;
        v.iter_mut().for_each(|x| *x = u);
    }
    v
}

/// Pointing game with ties split (see the module docs).
fn pointing(map: &[f64], layout: &Layout, scene: &Scene) -> f64 {
    let max = map.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let floor = max - POINTING_TIE * max.abs();
    let (mut hits, mut ties) = (0usize, 0usize);
    for (c, &v) in map.iter().enumerate() {
        if v >= floor {
            ties += 1;
            let (x, y) = layout.cell_centre[c];
            hits += usize::from(scene.in_bbox(x, y));
        }
    }
    if ties == 0 {
        0.0
    } else {
        hits as f64 / ties as f64
    }
}

/// Share of the pixel-resolution map on the mask.
fn mask_mass(pixel_map: &[f64], scene: &Scene) -> f64 {
    let total: f64 = pixel_map.iter().sum();
    if total <= 0.0 {
        return 0.0;
    }
    let inside: f64 = pixel_map
        .iter()
        .zip(&scene.mask)
        .filter(|(_, &m)| m)
        .map(|(v, _)| v)
        .sum();
    (inside / total).clamp(0.0, 1.0)
}

/// For each patch, its rank (0 = most salient) under `pixel_map`, ties by `tie_rank`.
fn patch_ranks(pixel_map: &[f64], tie_rank: &[usize]) -> Vec<usize> {
    let side = CANVAS / PATCH_GRID;
    let mut score = vec![0f64; PATCH_GRID * PATCH_GRID];
    for (i, &v) in pixel_map.iter().enumerate() {
        let (y, x) = (i / CANVAS, i % CANVAS);
        score[(y / side).min(PATCH_GRID - 1) * PATCH_GRID + (x / side).min(PATCH_GRID - 1)] += v;
    }
    let total: f64 = score.iter().sum();
    let quantum = if total > 0.0 {
        total * SCORE_QUANTUM
    } else {
        1.0
    };
    let key: Vec<i64> = score.iter().map(|s| (s / quantum).round() as i64).collect();
    let mut order: Vec<usize> = (0..score.len()).collect();
    order.sort_by(|&a, &b| key[b].cmp(&key[a]).then(tie_rank[a].cmp(&tie_rank[b])));
    let mut rank = vec![0usize; order.len()];
    for (r, &p) in order.iter().enumerate() {
        rank[p] = r;
    }
    rank
}

/// Patches affected after each step k = 0..=steps: round(P·k/steps), ties to even.
fn step_counts(steps: usize) -> Vec<usize> {
    let p = PATCH_GRID * PATCH_GRID;
    (0..=steps)
        .map(|k| ((p * k) as f64 / steps as f64).round_ties_even() as usize)
        .collect()
}

/// Trapezoid rule of `y` over `x`.
fn trapezoid(x: &[f64], y: &[f64]) -> f64 {
    x.windows(2)
        .zip(y.windows(2))
        .map(|(x, y)| (x[1] - x[0]) * (y[0] + y[1]) / 2.0)
        .sum()
}

/// A separable Gaussian blur of each channel of a `[3, H, W]` input, edges clamped, kernel
/// truncated at 3σ.
fn blur(pixels: &[f32], (h, w): (usize, usize), sigma: f64) -> Vec<f32> {
    let radius = (3.0 * sigma).ceil() as i64;
    let weights: Vec<f32> = (-radius..=radius)
        .map(|d| (-(d * d) as f64 / (2.0 * sigma * sigma)).exp())
        .map(|k| k as f32)
        .collect();
    let total: f32 = weights.iter().sum();
    let weights: Vec<f32> = weights.iter().map(|k| k / total).collect();
    let pass = |src: &[f32], len: usize, at: &dyn Fn(usize, usize) -> usize, n: usize| {
        // `at(line, i)` is the index of sample i of line `line`; `n` lines of `len` samples.
        let mut out = vec![0f32; src.len()];
        for line in 0..n {
            for i in 0..len {
                let mut acc = 0f32;
                for (k, &wt) in weights.iter().enumerate() {
                    let j = (i as i64 + k as i64 - radius).clamp(0, len as i64 - 1) as usize;
                    acc += wt * src[at(line, j)];
                }
                out[at(line, i)] = acc;
            }
        }
        out
    };
    let plane = h * w;
    let mut out = Vec::with_capacity(pixels.len());
    for channel in pixels.chunks(plane) {
        let rows = pass(channel, w, &|y, x| y * w + x, h);
        out.extend(pass(&rows, h, &|x, y| y * w + x, w));
    }
    out
}

/// One image of a scene's deletion and insertion curves.
#[derive(Debug, Clone, Copy)]
enum Job {
    /// Baseline image 0 (deletion's) or 1 (insertion's).
    Base(usize),
    /// The scene with the first `count` patches of `method`'s order deleted, or revealed.
    Point {
        method: usize,
        insertion: bool,
        count: usize,
    },
}

/// Runs one scene through every method and metric.
fn evaluate_scene(
    model: &Model,
    preprocessor: &Preprocessor,
    layout: &Layout,
    scene: &Scene,
    index: u64,
    options: &EvaluateOptions,
) -> Result<SceneResult> {
    let pixels = preprocessor.apply(&scene.image);
    let (logits, maps) = explanations(model, pixels.clone(), options, index, layout.grid)?;
    let probs = softmax(&logits);
    let label = scene.label;
    let predicted = (0..probs.len())
        .max_by(|&a, &b| probs[a].total_cmp(&probs[b]).then(b.cmp(&a)))
        .unwrap_or(0);
    // One random order for patches that a map scores equally, the same for every method.
    let mut rng = Rng::for_stream(options.seed, index, DOMAIN_TIE_BREAK);
    let patches = PATCH_GRID * PATCH_GRID;
    let mut tie_rank: Vec<usize> = (0..patches).collect();
    for i in (1..patches).rev() {
        tie_rank.swap(i, rng.below(i as u64 + 1) as usize);
    }
    let mut partial = Vec::with_capacity(maps.len());
    let mut ranks = Vec::with_capacity(maps.len());
    for map in &maps {
        let pixel_map = layout.pixel_map(map);
        partial.push((pointing(map, layout, scene), mask_mass(&pixel_map, scene)));
        ranks.push(patch_ranks(&pixel_map, &tie_rank));
    }
    let plane = layout.input.0 * layout.input.1;
    let baseline_image = |b: Baseline| match b {
        Baseline::Mean => vec![0f32; pixels.len()],
        Baseline::Blur => {
            let sigma = BLUR_SIGMA * layout.input.0.max(layout.input.1) as f64 / CANVAS as f64;
            blur(&pixels, layout.input, sigma)
        }
    };
    // [deletion's, insertion's]: the image a fully deleted scene becomes, and the one
    // insertion starts from.
    let bases = [
        baseline_image(options.deletion_baseline),
        baseline_image(options.insertion_baseline),
    ];
    // Every image to run, batched: the two baseline images first (deletion's last point,
    // insertion's first), then the interior points of every curve. The intact image's point
    // is the trace's own.
    let counts = step_counts(options.steps);
    let interior = &counts[1..counts.len() - 1];
    let jobs: Vec<Job> = [Job::Base(0), Job::Base(1)]
        .into_iter()
        .chain((0..maps.len()).flat_map(|method| {
            [false, true].into_iter().flat_map(move |insertion| {
                interior.iter().map(move |&count| Job::Point {
                    method,
                    insertion,
                    count,
                })
            })
        }))
        .collect();
    let mut curve_probs = Vec::with_capacity(jobs.len());
    for chunk in jobs.chunks(options.batch) {
        let mut batch = Vec::with_capacity(chunk.len() * 3 * plane);
        for &job in chunk {
            let (m, insertion, count) = match job {
                Job::Base(b) => {
                    batch.extend_from_slice(&bases[b]);
                    continue;
                }
                Job::Point {
                    method,
                    insertion,
                    count,
                } => (method, insertion, count),
            };
            let rank = &ranks[m];
            let base = &bases[usize::from(insertion)];
            // A pixel is "affected" if its patch is among the first `count`: replaced by the
            // baseline for deletion, revealed for insertion.
            batch.extend(pixels.iter().zip(base).enumerate().map(|(i, (&v, &b))| {
                let affected = rank[usize::from(layout.patch_of_input[i % plane])] < count;
                if affected == insertion {
                    v
                } else {
                    b
                }
            }));
        }
        for p in probabilities(model, &batch, chunk.len(), layout.input)? {
            curve_probs.push(p[label]);
        }
    }
    let (deleted, blank) = (curve_probs[0], curve_probs[1]);
    let curve_probs = &curve_probs[2..];
    let x: Vec<f64> = counts.iter().map(|&c| c as f64 / patches as f64).collect();
    let per_curve = interior.len();
    let scores = std::array::from_fn(|m| {
        let at =
            |ins: usize| &curve_probs[(2 * m + ins) * per_curve..(2 * m + ins + 1) * per_curve];
        let curve = |first: f64, middle: &[f64], last: f64| {
            let mut y = Vec::with_capacity(counts.len());
            y.push(first);
            y.extend_from_slice(middle);
            y.push(last);
            y
        };
        let deletion = curve(probs[label], at(0), deleted);
        let insertion = curve(blank, at(1), probs[label]);
        Scores {
            pointing: partial[m].0,
            mask_mass: partial[m].1,
            deletion_auc: trapezoid(&x, &deletion).clamp(0.0, 1.0),
            insertion_auc: trapezoid(&x, &insertion).clamp(0.0, 1.0),
        }
    });
    Ok(SceneResult {
        index,
        label,
        predicted,
        probability: probs[label],
        mask_fraction: scene.mask_fraction(),
        scores,
    })
}

impl Report {
    /// The results as a markdown table (one row per method, ± one standard error), followed by
    /// the model's accuracy.
    pub fn markdown(&self) -> String {
        let mut out = format!(
            "Faithfulness on {} held-out cluttered Fashion-MNIST scenes (seed {}), model {}; \
             deleted patches become {}, insertion starts from {}\n\n",
            self.scenes,
            self.seed,
            self.model,
            self.deletion_baseline.describe(),
            self.insertion_baseline.describe()
        );
        out.push_str(
            "| method | pointing game ↑ | mass in mask ↑ | deletion AUC ↓ | insertion AUC ↑ |\n",
        );
        out.push_str("|---|---|---|---|---|\n");
        for m in &self.methods {
            let cell = |mean: f64, se: f64| format!("{mean:.3} ± {se:.3}");
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} |\n",
                m.method.description(),
                cell(m.mean.pointing, m.std_error.pointing),
                cell(m.mean.mask_mass, m.std_error.mask_mass),
                cell(m.mean.deletion_auc, m.std_error.deletion_auc),
                cell(m.mean.insertion_auc, m.std_error.insertion_auc),
            ));
        }
        let correct = self
            .per_scene
            .iter()
            .filter(|s| s.predicted == s.label)
            .count();
        out.push_str(&format!(
            "\nModel accuracy: {:.3} ({correct}/{} scenes). The item's mask covers {:.3} of the canvas on average.\n",
            self.accuracy, self.scenes, self.mask_fraction
        ));
        out
    }

    /// The results as CSV: a header, then one row per method with every metric's mean and
    /// standard error, the model accuracy, the number of scenes, the seed and both baselines.
    pub fn csv(&self) -> String {
        let mut out = String::from(
            "method,pointing_game,pointing_game_se,mask_mass,mask_mass_se,deletion_auc,deletion_auc_se,insertion_auc,insertion_auc_se,model_accuracy,scenes,seed,deletion_baseline,insertion_baseline\n",
        );
        for m in &self.methods {
            let (a, s) = (m.mean, m.std_error);
            out.push_str(&format!(
                "{},{:.6},{:.6},{:.6},{:.6},{:.6},{:.6},{:.6},{:.6},{:.6},{},{},{},{}\n",
                m.method.name(),
                a.pointing,
                s.pointing,
                a.mask_mass,
                s.mask_mass,
                a.deletion_auc,
                s.deletion_auc,
                a.insertion_auc,
                s.insertion_auc,
                self.accuracy,
                self.scenes,
                self.seed,
                self.deletion_baseline,
                self.insertion_baseline
            ));
        }
        out
    }

    /// Writes [`Report::csv`] to `path` atomically.
    ///
    /// # Errors
    /// If the folder does not exist or the file cannot be written.
    pub fn write_csv(&self, path: &Path) -> Result<()> {
        use std::io::Write;
        crate::output::write_atomically(path, |out| {
            out.write_all(self.csv().as_bytes())
                .map_err(|e| Error::io(path, e))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_cover_all_patches() {
        let c = step_counts(16);
        assert_eq!(c.first(), Some(&0));
        assert_eq!(c.last(), Some(&196));
        assert!(c.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn trapezoid_of_a_line() {
        let x = [0.0, 0.25, 1.0];
        assert!((trapezoid(&x, &[1.0, 0.75, 0.0]) - 0.5).abs() < 1e-12);
    }

    #[test]
    fn layout_of_a_224_input_is_exact() {
        let l = Layout::new((224, 224), 8);
        assert_eq!(l.grid, (28, 28));
        assert!(l.pixels_per_cell.iter().all(|&n| n == 64));
        assert_eq!(l.cell_centre[0], (4, 4));
        assert_eq!(l.cell_centre[28 + 2], (20, 12));
        // 16-px patches hold 2×2 cells of 8 px.
        assert_eq!(l.patch_of_input[17 * 224 + 33], 14 + 2);
    }

    #[test]
    fn blur_keeps_flat_images_flat_and_smooths_edges() {
        let (h, w) = (20, 30);
        let flat = vec![0.7f32; 3 * h * w];
        assert!(blur(&flat, (h, w), 3.0)
            .iter()
            .all(|&v| (v - 0.7).abs() < 1e-5));
        // A vertical step edge: blurred values lie between the two sides and the edge softens.
        let step: Vec<f32> = (0..3 * h * w)
            .map(|i| if i % w < 15 { 0.0 } else { 1.0 })
            .collect();
        let b = blur(&step, (h, w), 3.0);
        assert!(b.iter().all(|&v| (-1e-6..=1.0 + 1e-6).contains(&v)));
        assert!(b[14] > 0.2 && b[15] < 0.8, "{} {}", b[14], b[15]);
    }

    #[test]
    fn baselines_parse() {
        assert_eq!(" Blur".parse::<Baseline>().unwrap(), Baseline::Blur);
        assert!("gray"
            .parse::<Baseline>()
            .unwrap_err()
            .to_string()
            .contains("mean, blur"));
    }

    #[test]
    fn uniform_scores_tie_everywhere() {
        let l = Layout::new((224, 224), 4);
        let map = vec![1.0 / 3136.0; 3136];
        let tie: Vec<usize> = (0..196).rev().collect();
        let ranks = patch_ranks(&l.pixel_map(&map), &tie);
        // All scores equal: the tie order decides alone.
        assert_eq!(ranks, tie);
    }
}
