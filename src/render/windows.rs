//! Where a block's windows lie on its stage's grid, in image (unshifted) coordinates: the
//! pieces a wrapped window is cut into, and which window
//! and place each token sits in. [`Geometry`] answers the opposite question (which token sits
//! at a window place); these are its inverses for drawing.

use crate::geometry::Geometry;

/// A rectangle of tokens: rows `y0..y1`, columns `x0..x1` of the stage's grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenRect {
    /// First row.
    pub y0: usize,
    /// One past the last row.
    pub y1: usize,
    /// First column.
    pub x0: usize,
    /// One past the last column.
    pub x1: usize,
}

/// The up to two intervals that `[start, start + len)` covers on a circle of `n`, clipped to
/// `[0, limit)`.
fn wrapped(start: usize, len: usize, n: usize, limit: usize) -> Vec<(usize, usize)> {
    let start = start % n;
    let mut out = Vec::with_capacity(2);
    let mut push = |a: usize, b: usize| {
        let b = b.min(limit);
        if a < b {
            out.push((a, b));
        }
    };
    if start + len <= n {
        push(start, start + len);
    } else {
        push(start, n);
        push(0, start + len - n);
    }
    out
}

/// The pieces of window `window` on the real (unpadded) grid: one rectangle for an ordinary
/// window, two or four for a window that the cyclic shift wraps around the border.
pub fn window_pieces(g: &Geometry, window: usize) -> Vec<TokenRect> {
    if g.is_global() {
        // Global attention has one window: the whole grid.
        return vec![TokenRect {
            y0: 0,
            y1: g.height,
            x0: 0,
            x1: g.width,
        }];
    }
    let m = g.window;
    let across = g.windows_across().max(1);
    let (wr, wc) = (window / across, window % across);
    // The window's rolled rows [wr·M, wr·M + M) sit at image rows shifted by s around the
    // rolled grid; rolled rows past the real grid are padding (timm pads after rolling).
    let (rolled_h, rolled_w) = g.rolled_size();
    let span = |start: usize, n: usize| m.min(n.saturating_sub(start));
    let rows = wrapped(wr * m + g.shift, span(wr * m, rolled_h), rolled_h, g.height);
    let cols = wrapped(wc * m + g.shift, span(wc * m, rolled_w), rolled_w, g.width);
    let mut out = Vec::with_capacity(rows.len() * cols.len());
    for &(y0, y1) in &rows {
        for &(x0, x1) in &cols {
            out.push(TokenRect { y0, y1, x0, x1 });
        }
    }
    out
}

/// The window and place (row-major inside the window) holding token `(y, x)`.
pub fn window_place(g: &Geometry, y: usize, x: usize) -> (usize, usize) {
    if g.is_global() {
        return (0, g.prefix + y * g.width + x);
    }
    let m = g.window;
    // Windows are cut from the grid rolled by −shift: image row y sits at rolled row y − s.
    let (rolled_h, rolled_w) = g.rolled_size();
    let ry = (y + rolled_h - g.shift % rolled_h) % rolled_h;
    let rx = (x + rolled_w - g.shift % rolled_w) % rolled_w;
    let window = (ry / m) * g.windows_across() + rx / m;
    (window, (ry % m) * m + rx % m)
}

/// The window of token `token` of the sequence (raster index over the grid; for global
/// attention, prefix tokens first, all in its one window).
pub fn window_of(g: &Geometry, token: usize) -> usize {
    match g.position(token) {
        Some((y, x)) if !g.is_global() => window_place(g, y, x).0,
        _ => 0,
    }
}

/// For each token (raster order), its slot when tokens are grouped window by window: windows
/// in the model's order, tokens in place order inside each, padding skipped.
pub fn window_order(g: &Geometry) -> Vec<u32> {
    let mut slots = vec![0u32; g.tokens()];
    let mut next = 0u32;
    for t in g.index_image() {
        if t != Geometry::PADDING {
            slots[t as usize] = next;
            next += 1;
        }
    }
    slots
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::RollOrder;

    /// Shifted and padded geometries in both roll orders, and a clamped one.
    fn geometries() -> Vec<Geometry> {
        let mut out = Vec::new();
        for roll in [RollOrder::PadThenRoll, RollOrder::RollThenPad] {
            out.push(Geometry::new(0, 1, 8, 8, 4, 2).with_roll(roll));
            out.push(Geometry::new(0, 1, 5, 7, 3, 1).with_roll(roll));
            out.push(Geometry::new(0, 1, 10, 9, 4, 2).with_roll(roll));
        }
        out.push(Geometry::new(1, 0, 7, 7, 7, 0));
        out
    }

    #[test]
    fn places_invert_the_index_image() {
        for g in geometries() {
            let image = g.index_image();
            let area = g.window_area();
            for y in 0..g.height {
                for x in 0..g.width {
                    let (w, p) = window_place(&g, y, x);
                    assert_eq!(image[w * area + p], (y * g.width + x) as u32, "{g:?}");
                }
            }
        }
    }

    #[test]
    fn pieces_cover_exactly_the_window() {
        for g in geometries() {
            let image = g.index_image();
            let area = g.window_area();
            for w in 0..g.windows() {
                let mut covered = vec![];
                for p in window_pieces(&g, w) {
                    for y in p.y0..p.y1 {
                        for x in p.x0..p.x1 {
                            covered.push((y * g.width + x) as u32);
                        }
                    }
                }
                // Exactly the window's real tokens, as the index image has them.
                let mut expected: Vec<u32> = image[w * area..(w + 1) * area]
                    .iter()
                    .copied()
                    .filter(|&t| t != Geometry::PADDING)
                    .collect();
                covered.sort_unstable();
                expected.sort_unstable();
                assert_eq!(covered, expected, "{g:?} window {w}");
            }
        }
        // The last window wraps on both axes: four pieces.
        assert_eq!(window_pieces(&Geometry::new(0, 1, 8, 8, 4, 2), 3).len(), 4);
    }

    #[test]
    fn global_attention_has_one_window_of_every_token() {
        let g = Geometry::global(0, 3, 5, 2);
        assert_eq!(
            window_pieces(&g, 0),
            [TokenRect {
                y0: 0,
                y1: 3,
                x0: 0,
                x1: 5
            }]
        );
        let image = g.index_image();
        for y in 0..3 {
            for x in 0..5 {
                let (w, p) = window_place(&g, y, x);
                assert_eq!((w, image[p]), (0, (2 + y * 5 + x) as u32));
            }
        }
        assert!((0..g.tokens()).all(|t| window_of(&g, t) == 0));
        // Window attention: the window the token's place lies in.
        let s = Geometry::new(0, 1, 8, 8, 4, 2);
        assert_eq!(window_of(&s, 3 * 8 + 3), window_place(&s, 3, 3).0);
    }

    #[test]
    fn regions_split_only_wrapped_windows() {
        let g = Geometry::new(0, 1, 8, 8, 4, 2);
        // Window 0 (rows 2..6, columns 2..6) lies in region 0.
        assert_eq!(g.shift_region(3, 3), 0);
        // The bottom strip and the top strip of the last window row differ.
        assert_eq!(g.shift_region(7, 3), 3);
        assert_eq!(g.shift_region(0, 3), 6);
        assert_eq!(g.shift_region(0, 0), 8);
    }
}
