//! The deletion and insertion curves: patches ranked by a map, removed from (or revealed onto)
//! a baseline image step by step, and the area under the true class's probability.

use super::layout::Layout;
use super::method::{ByMethod, Method};
use super::{probabilities, Baseline, EvaluateOptions, BLUR_SIGMA, PATCH_GRID};
use crate::error::Result;
use crate::model::Model;
use crate::scene::CANVAS;

/// Patch scores are compared after rounding to this share of the map's mass, so float noise in
/// the sums cannot order patches that a map scores equally.
const SCORE_QUANTUM: f64 = 1e-9;

/// A faithfulness curve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Curve {
    /// Salient patches replaced by the deletion baseline.
    Deletion,
    /// Salient patches of the scene revealed on the insertion baseline.
    Insertion,
}

impl Curve {
    /// Both curves, in the order their images are batched.
    const ALL: [Curve; 2] = [Curve::Deletion, Curve::Insertion];
}

/// One value per curve.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct PerCurve<T> {
    /// The deletion curve's.
    pub deletion: T,
    /// The insertion curve's.
    pub insertion: T,
}

impl<T> PerCurve<T> {
    fn get(&self, curve: Curve) -> &T {
        match curve {
            Curve::Deletion => &self.deletion,
            Curve::Insertion => &self.insertion,
        }
    }

    fn get_mut(&mut self, curve: Curve) -> &mut T {
        match curve {
            Curve::Deletion => &mut self.deletion,
            Curve::Insertion => &mut self.insertion,
        }
    }
}

/// One image of a scene's deletion and insertion curves.
#[derive(Debug, Clone, Copy)]
enum Job {
    /// The curve's baseline image: where deletion ends and insertion starts.
    Base(Curve),
    /// The scene with the first `count` patches of `method`'s order deleted, or revealed.
    Point {
        method: Method,
        curve: Curve,
        count: usize,
    },
}

/// The deletion and insertion AUCs of every method on one scene.
///
/// `pixels` is the preprocessed scene, `ranks` each method's patch ranks ([`patch_ranks`]),
/// `intact` the true class's probability on the intact scene (the traced forward pass's).
pub(super) fn aucs(
    model: &Model,
    layout: &Layout,
    pixels: &[f32],
    ranks: &ByMethod<Vec<usize>>,
    label: usize,
    intact: f64,
    options: &EvaluateOptions,
) -> Result<ByMethod<PerCurve<f64>>> {
    let plane = layout.input.0 * layout.input.1;
    let baseline_image = |b: Baseline| match b {
        Baseline::Mean => vec![0f32; pixels.len()],
        Baseline::Blur => {
            let sigma = BLUR_SIGMA * layout.input.0.max(layout.input.1) as f64 / CANVAS as f64;
            blur(pixels, layout.input, sigma)
        }
    };
    // The image a fully deleted scene becomes, and the one insertion starts from.
    let bases = PerCurve {
        deletion: baseline_image(options.deletion_baseline),
        insertion: baseline_image(options.insertion_baseline),
    };
    // Every image to run, batched: the two baseline images first (deletion's last point,
    // insertion's first), then the interior points of every curve. The intact image's point
    // is the trace's own.
    let counts = step_counts(options.steps);
    let interior = &counts[1..counts.len() - 1];
    let jobs: Vec<Job> = Curve::ALL
        .into_iter()
        .map(Job::Base)
        .chain(Method::ALL.into_iter().flat_map(|method| {
            Curve::ALL.into_iter().flat_map(move |curve| {
                interior.iter().map(move |&count| Job::Point {
                    method,
                    curve,
                    count,
                })
            })
        }))
        .collect();
    let mut ends = PerCurve::<f64>::default();
    let mut points = ByMethod::from_fn(|_| PerCurve::<Vec<f64>>::default());
    for chunk in jobs.chunks(options.batch) {
        let mut batch = Vec::with_capacity(chunk.len() * 3 * plane);
        for &job in chunk {
            let (method, curve, count) = match job {
                Job::Base(curve) => {
                    batch.extend_from_slice(bases.get(curve));
                    continue;
                }
                Job::Point {
                    method,
                    curve,
                    count,
                } => (method, curve, count),
            };
            let rank = &ranks[method];
            let base = bases.get(curve);
            let insertion = curve == Curve::Insertion;
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
        let probs = probabilities(model, &batch, chunk.len(), layout.input)?;
        for (job, p) in chunk.iter().zip(probs) {
            match *job {
                Job::Base(curve) => *ends.get_mut(curve) = p[label],
                Job::Point { method, curve, .. } => {
                    points[method].get_mut(curve).push(p[label]);
                }
            }
        }
    }
    let patches = PATCH_GRID * PATCH_GRID;
    let x: Vec<f64> = counts.iter().map(|&c| c as f64 / patches as f64).collect();
    let curve = |first: f64, middle: &[f64], last: f64| {
        let mut y = Vec::with_capacity(counts.len());
        y.push(first);
        y.extend_from_slice(middle);
        y.push(last);
        y
    };
    Ok(ByMethod::from_fn(|method| {
        let p = &points[method];
        let deletion = curve(intact, &p.deletion, ends.deletion);
        let insertion = curve(ends.insertion, &p.insertion, intact);
        PerCurve {
            deletion: trapezoid(&x, &deletion).clamp(0.0, 1.0),
            insertion: trapezoid(&x, &insertion).clamp(0.0, 1.0),
        }
    }))
}

/// For each patch, its rank (0 = most salient) under `pixel_map`, ties by `tie_rank`.
pub(super) fn patch_ranks(pixel_map: &[f64], tie_rank: &[usize]) -> Vec<usize> {
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
    fn uniform_scores_tie_everywhere() {
        let l = Layout::new((224, 224), 4);
        let map = vec![1.0 / 3136.0; 3136];
        let tie: Vec<usize> = (0..196).rev().collect();
        let ranks = patch_ranks(&l.pixel_map(&map), &tie);
        // All scores equal: the tie order decides alone.
        assert_eq!(ranks, tie);
    }
}
