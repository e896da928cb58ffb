//! Mechanism mode: the schematic of window attention on a small synthetic token grid, with no
//! model. A regular block, a shifted block and the merged stage, each with attention computed
//! the way the model would — a softmax inside each window, with keys in another shift region
//! masked to exactly zero — but from a smooth distance-based score instead of learned weights.
//! The schematic's grid is drawn by [`panels::schematic`](super::panels::schematic).

use image::RgbImage;

use super::story::Story;
use super::template::MechanismSpec;
use crate::error::{Error, Result};
use crate::geometry::Geometry;
use crate::rollout::RolloutOptions;
use crate::trace::{BlockTrace, Trace};

/// Input pixels per token of the synthetic image.
const PATCH: usize = 16;

/// Where the synthetic "object" sits, as a share of the grid: attention leans towards it, so
/// the rollout of the schematic has something to find.
const OBJECT: (f32, f32) = (0.62, 0.36);

impl Story {
    /// The schematic story: an `spec.grid`² token grid with `spec.window` windows, a regular
    /// and a shifted block, then the merged stage, all with synthetic attention (see the
    /// module documentation).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a spec that
    /// [`Template::parse`](super::template::Template::parse) would have rejected (an odd grid,
    /// a window that does not divide it, a sigma that is not positive).
    pub fn mechanism(spec: &MechanismSpec) -> Result<Story> {
        let (n, m) = (spec.grid, spec.window);
        let sigma_ok = spec.sigma.is_finite() && spec.sigma > 0.0;
        if n < 2 || !n.is_multiple_of(2) || m < 2 || m > n || !n.is_multiple_of(m) || !sigma_ok {
            return Err(Error::InvalidArgument(format!(
                "the schematic needs an even grid of at least 2 tokens, a window of at least 2 \
                 that divides it and a positive sigma; got grid {n}, window {m}, sigma {}",
                spec.sigma
            )));
        }
        let geometries = [
            Geometry::new(0, 0, n, n, m, 0),
            Geometry::new(0, 1, n, n, m, m / 2),
            Geometry::new(1, 0, n / 2, n / 2, m, 0),
        ];
        let blocks = geometries
            .iter()
            .map(|g| BlockTrace {
                geometry: *g,
                heads: 1,
                attention: synthetic_attention(g, spec.sigma, n),
            })
            .collect();
        let side = n * PATCH;
        let trace = Trace {
            pixel_values: Vec::new(),
            image_size: (side, side),
            logits: Vec::new(),
            blocks,
        };
        let mut story = Story::new(&trace, synthetic_image(side), &RolloutOptions::default())?;
        story.model = "schematic".into();
        story.schematic = true;
        Ok(story)
    }
}

/// Softmax of −d²/(2σ²) plus a pull towards the object, over the keys a query may see: its
/// window's real tokens in its own shift region. Masked keys get exactly 0, as after the
/// model's −100 mask.
fn synthetic_attention(g: &Geometry, sigma: f32, grid0: usize) -> Vec<f32> {
    let area = g.window_area();
    let index = g.index_image();
    let scale = (1usize << g.stage) as f32;
    let sigma = sigma / scale;
    // The object's centre (row, column) and radius in this stage's tokens.
    let object = (
        OBJECT.1 * grid0 as f32 / scale,
        OBJECT.0 * grid0 as f32 / scale,
    );
    let radius = (1.5 / scale).max(0.7);
    let mut out = vec![0f32; g.windows() * area * area];
    for (w, idx) in index.chunks(area).enumerate() {
        for (q, &tq) in idx.iter().enumerate() {
            if tq == Geometry::PADDING {
                continue;
            }
            let (qy, qx) = (
                (tq as usize / g.width) as f32,
                (tq as usize % g.width) as f32,
            );
            let rq = g.shift_region(tq as usize / g.width, tq as usize % g.width);
            let row = &mut out[(w * area + q) * area..][..area];
            let mut sum = 0f32;
            for (k, &tk) in idx.iter().enumerate() {
                if tk == Geometry::PADDING {
                    continue;
                }
                let (ky, kx) = (tk as usize / g.width, tk as usize % g.width);
                if g.shift_region(ky, kx) != rq {
                    continue;
                }
                let (ky, kx) = (ky as f32, kx as f32);
                let d2 = (qy - ky).powi(2) + (qx - kx).powi(2);
                let o2 = (ky + 0.5 - object.0).powi(2) + (kx + 0.5 - object.1).powi(2);
                let pull = 1.6 * (-o2 / (2.0 * radius * radius)).exp();
                let v = (-d2 / (2.0 * sigma * sigma) + pull).exp();
                row[k] = v;
                sum += v;
            }
            if sum > 0.0 {
                for v in row.iter_mut() {
                    *v /= sum;
                }
            }
        }
    }
    out
}

/// A calm synthetic picture: a dark gradient with a warm disc where the "object" is.
fn synthetic_image(side: usize) -> RgbImage {
    let s = side as f32;
    RgbImage::from_fn(side as u32, side as u32, |x, y| {
        let (u, v) = (x as f32 / s, y as f32 / s);
        let d = ((u - OBJECT.0).powi(2) + (v - OBJECT.1).powi(2)).sqrt();
        let disc = (1.0 - ((d - 0.14) / 0.03).clamp(0.0, 1.0)) * 0.9;
        let base = [40.0 + 40.0 * v, 60.0 + 30.0 * u, 90.0 + 40.0 * (1.0 - v)];
        let warm = [235.0, 150.0, 70.0];
        image::Rgb([0, 1, 2].map(|c| (base[c] + (warm[c] - base[c]) * disc) as u8))
    })
}

/// Every masked pair of a block, as (query token, key token): tokens in one window but in
/// different shift regions.
pub fn masked_pairs(g: &Geometry) -> Vec<(u32, u32)> {
    let area = g.window_area();
    let mut out = Vec::new();
    for idx in g.index_image().chunks(area) {
        for &q in idx.iter().filter(|&&t| t != Geometry::PADDING) {
            let rq = g.shift_region(q as usize / g.width, q as usize % g.width);
            for &k in idx.iter().filter(|&&t| t != Geometry::PADDING) {
                if g.shift_region(k as usize / g.width, k as usize % g.width) != rq {
                    out.push((q, k));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masked_pairs_get_exactly_zero() {
        let spec = MechanismSpec {
            grid: 8,
            window: 4,
            sigma: 1.2,
        };
        let story = Story::mechanism(&spec).unwrap();
        let a = story.attention(1).unwrap();
        let pairs = masked_pairs(a.geometry());
        assert!(!pairs.is_empty());
        for (q, k) in pairs {
            let (keys, vals) = a.row(q as usize).unwrap();
            let i = keys.iter().position(|&t| t == k).unwrap();
            assert_eq!(vals[i], 0.0);
        }
        assert!(masked_pairs(story.attention(0).unwrap().geometry()).is_empty());
    }
}
