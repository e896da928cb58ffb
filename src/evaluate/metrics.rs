//! What is measured of one map: the pointing game and the mass in the item's mask (the
//! deletion and insertion curves are in [`super::curves`]).

use super::layout::Layout;
use crate::scene::Scene;

/// Relative tolerance under which two cells tie for the maximum in the pointing game.
const POINTING_TIE: f64 = 1e-6;

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
    pub(super) fn as_array(&self) -> [f64; 4] {
        [
            self.pointing,
            self.mask_mass,
            self.deletion_auc,
            self.insertion_auc,
        ]
    }

    pub(super) fn from_array(a: [f64; 4]) -> Self {
        Scores {
            pointing: a[0],
            mask_mass: a[1],
            deletion_auc: a[2],
            insertion_auc: a[3],
        }
    }
}

/// Scales to sum 1; a map with no mass becomes uniform (every cell equally likely).
pub(super) fn normalized(mut v: Vec<f64>) -> Vec<f64> {
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
pub(super) fn pointing(map: &[f64], layout: &Layout, scene: &Scene) -> f64 {
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
pub(super) fn mask_mass(pixel_map: &[f64], scene: &Scene) -> f64 {
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
