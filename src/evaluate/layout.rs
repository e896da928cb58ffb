//! Where things are: how map cells, canvas pixels, model-input pixels and deletion patches
//! relate.

use super::PATCH_GRID;
use crate::scene::CANVAS;

/// How map cells, canvas pixels, model-input pixels and deletion patches relate; fixed for a
/// model and computed once.
#[derive(Debug, Clone)]
pub(super) struct Layout {
    /// Model input height and width.
    pub(super) input: (usize, usize),
    /// First-stage token grid.
    pub(super) grid: (usize, usize),
    /// For each canvas pixel (row-major), its cell.
    pub(super) cell_of_pixel: Vec<u32>,
    /// Canvas pixels per cell.
    pub(super) pixels_per_cell: Vec<u32>,
    /// Each cell's centre as a canvas pixel (x, y).
    pub(super) cell_centre: Vec<(usize, usize)>,
    /// For each model-input pixel (row-major), its deletion patch.
    pub(super) patch_of_input: Vec<u16>,
}

impl Layout {
    pub(super) fn new(input: (usize, usize), patch: usize) -> Self {
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
    pub(super) fn pixel_map(&self, map: &[f64]) -> Vec<f64> {
        self.cell_of_pixel
            .iter()
            .map(|&c| map[c as usize] / f64::from(self.pixels_per_cell[c as usize]))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
