//! The faithfulness benchmark: how well does each explanation point at the one item of a
//! cluttered Fashion-MNIST scene ([`crate::scene`]), and how much does the classifier depend on
//! the pixels it ranks highest?
//!
//! On `scenes` freshly generated held-out scenes, each explanation ([`Method`]) is scored with
//! four metrics ([`Scores`]): the pointing game, the mass in the item's mask, and the deletion
//! and insertion AUCs. The methodology (geometry, metrics, ties, baselines, explanations) is
//! written out in `docs/evaluate.md`.
//!
//! One file per concept: the settings and [`Baseline`]s (`options`), the explanations under
//! test (`method`), where cells, pixels and patches lie (`layout`), the per-map metrics
//! (`metrics`), the deletion and insertion curves (`curves`) and the [`Report`] (`report`).
//! Results are kept per method ([`ByMethod`]) and per curve, never by position.
//!
//! Scenes are evaluated in parallel, but every scene's numbers depend only on (seed, index) and
//! are reduced in scene order, so the report does not depend on the number of threads.

mod curves;
mod layout;
mod method;
mod metrics;
mod options;
mod report;

use std::time::Instant;

use candle_core::{Device, Tensor};
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::model::{softmax, Model};
use crate::preprocess::Preprocessor;
use crate::scene::{Rng, Scene, SceneSource, CLASS_NAMES};
use layout::Layout;

pub use method::{ByMethod, Method};
pub use metrics::Scores;
pub use options::{Baseline, EvaluateOptions};
pub use report::{MethodSummary, Report, SceneResult};

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
    if !model.has_classifier() {
        return Err(model.no_classifier("evaluate scores its class predictions"));
    }
    let labels = model.labels().len();
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
    let layout = Layout::new(preprocessor.size, model.network.patch_size());
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
    Ok(report::summarize(
        model.name.clone(),
        model.network.attends_globally(),
        options,
        per_scene,
        seconds_per_scene,
    ))
}

/// Softmax probabilities of `count` preprocessed images laid end to end in `pixels`.
fn probabilities(
    model: &Model,
    pixels: &[f32],
    count: usize,
    (h, w): (usize, usize),
) -> Result<Vec<Vec<f64>>> {
    let input = Tensor::from_slice(pixels, (count, 3, h, w), &Device::Cpu)?;
    let logits = model
        .network
        .forward(&input, false)?
        .logits
        .to_vec2::<f32>()?;
    Ok(logits.iter().map(|l| softmax(l)).collect())
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
    let (logits, maps) = method::explanations(
        model,
        pixels.clone(),
        scene.label,
        options,
        index,
        layout.grid,
    )?;
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
    let pixel_maps = ByMethod::from_fn(|m| layout.pixel_map(&maps[m]));
    let ranks = ByMethod::from_fn(|m| curves::patch_ranks(&pixel_maps[m], &tie_rank));
    let aucs = curves::aucs(model, layout, &pixels, &ranks, label, probs[label], options)?;
    let scores = ByMethod::from_fn(|m| Scores {
        pointing: metrics::pointing(&maps[m], layout, scene),
        mask_mass: metrics::mask_mass(&pixel_maps[m], scene),
        deletion_auc: aucs[m].deletion,
        insertion_auc: aucs[m].insertion,
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
