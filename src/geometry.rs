//! The geometry of Swin's windows: which token of a stage sits at which place of which
//! window, through padding and the cyclic shift, and how tokens merge between stages. A ViT
//! block is the degenerate case: one "window" holding the whole sequence (prefix tokens, then
//! the patches), `window` 0 in the export's geometry table.

/// What one block did with its stage's token grid.
///
/// `window` and `shift` are the values the block really used: where the stage's grid is not
/// larger than the configured window, the window is clamped to the grid and the shift is 0.
/// `window` 0 means global attention (a ViT block): every token of the sequence, `prefix`
/// tokens and then the grid's patches row-major, attends to every other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Geometry {
    /// Stage index, 0-based.
    pub stage: usize,
    /// Block index within the stage, 0-based.
    pub block: usize,
    /// Token rows of the stage.
    pub height: usize,
    /// Token columns of the stage.
    pub width: usize,
    /// Rows after padding at the bottom to a multiple of `window`.
    pub padded_height: usize,
    /// Columns after padding at the right to a multiple of `window`.
    pub padded_width: usize,
    /// Window side M (windows are M×M tokens).
    pub window: usize,
    /// Cyclic shift s (0 for regular blocks).
    pub shift: usize,
    /// Tokens before the grid's patches in the attended sequence (a ViT's CLS and
    /// distillation tokens); 0 for window attention.
    pub prefix: usize,
    /// Whether the cyclic shift rolls the padded grid (Hugging Face) or the grid before it is
    /// padded (timm); the two put different tokens at a window's places where a shifted grid
    /// is padded.
    pub roll: RollOrder,
}

/// In which order a shifted block pads its grid and rolls it, which decides the token at each
/// window place when the grid is not a multiple of the window (otherwise both agree).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RollOrder {
    /// Pad at the bottom and right, then roll the padded grid by −s (Hugging Face
    /// `transformers`, Swin V1 and V2).
    #[default]
    PadThenRoll,
    /// Roll the unpadded grid by −s, then pad at the bottom and right (timm's
    /// `SwinTransformer` and `SwinTransformerV2`).
    RollThenPad,
}

impl Geometry {
    /// The geometry of block `block` of stage `stage` on an `height`×`width` grid, for a
    /// configured window `window` and a block that asks for `shift` (0 or window/2).
    ///
    /// Applies the clamping rule of the reference implementation: where the smaller side of the
    /// grid is not larger than the window, the window becomes that side and the shift 0.
    pub fn new(
        stage: usize,
        block: usize,
        height: usize,
        width: usize,
        window: usize,
        shift: usize,
    ) -> Self {
        let (window, shift) = if height.min(width) <= window {
            (height.min(width), 0)
        } else {
            (window, shift)
        };
        Self::unclamped(stage, block, height, width, window, shift)
    }

    /// The geometry of a block that uses `window` and `shift` as given, whatever the grid:
    /// Swin V2 fixes them when the model is built, so a grid smaller than the window is padded
    /// up to one window.
    pub fn unclamped(
        stage: usize,
        block: usize,
        height: usize,
        width: usize,
        window: usize,
        shift: usize,
    ) -> Self {
        let pad = |n: usize| n.div_ceil(window.max(1)) * window;
        Geometry {
            stage,
            block,
            height,
            width,
            padded_height: pad(height),
            padded_width: pad(width),
            window,
            shift,
            prefix: 0,
            roll: RollOrder::default(),
        }
    }

    /// The same geometry with the pad/roll order `roll`.
    pub fn with_roll(self, roll: RollOrder) -> Self {
        Geometry { roll, ..self }
    }

    /// The geometry of block `block` of a ViT: global attention over `prefix` tokens and the
    /// `height`×`width` patch grid (stage 0, window 0, shift 0, no padding).
    pub fn global(block: usize, height: usize, width: usize, prefix: usize) -> Self {
        Geometry {
            stage: 0,
            block,
            height,
            width,
            padded_height: height,
            padded_width: width,
            window: 0,
            shift: 0,
            prefix,
            roll: RollOrder::default(),
        }
    }

    /// Whether every token attends to every token (a ViT block, `window` 0).
    pub fn is_global(&self) -> bool {
        self.window == 0
    }

    /// Checks what everything that reads a geometry relies on: a non-empty grid and window, the
    /// padded size the grid padded to the next multiple of the window (as every Swin pads), an
    /// index image that fits `u32`, and a shift below the window. The problem, if any, is one
    /// phrase for the caller to prefix with the block it names.
    pub fn check(&self) -> Result<(), String> {
        if self.is_global() {
            return self.check_global();
        }
        if self.prefix != 0 {
            return Err(format!(
                "window attention (window {}) has {} prefix tokens; only global attention (window 0) has them",
                self.window, self.prefix
            ));
        }
        if self.height == 0 || self.width == 0 || self.window == 0 {
            return Err(format!(
                "height {}, width {} and window {} must be at least 1",
                self.height, self.width, self.window
            ));
        }
        let pad = |n: usize| n.checked_next_multiple_of(self.window);
        if pad(self.height) != Some(self.padded_height)
            || pad(self.width) != Some(self.padded_width)
        {
            return Err(format!(
                "padded size {}×{} is not the {}×{} grid padded to a multiple of window {}",
                self.padded_height, self.padded_width, self.height, self.width, self.window
            ));
        }
        // Indices are u32 with u32::MAX reserved for padding.
        match self.padded_height.checked_mul(self.padded_width) {
            Some(places) if places < Self::PADDING as usize => {}
            _ => return Err("the grid is too large".into()),
        }
        if self.shift >= self.window {
            return Err(format!(
                "shift {} is not below window {}",
                self.shift, self.window
            ));
        }
        Ok(())
    }

    /// What a global block needs: a non-empty grid, no padding, no shift, a sequence whose
    /// square fits memory indices.
    fn check_global(&self) -> Result<(), String> {
        if self.height == 0 || self.width == 0 {
            return Err(format!(
                "height {} and width {} must be at least 1",
                self.height, self.width
            ));
        }
        if (self.padded_height, self.padded_width) != (self.height, self.width) {
            return Err(format!(
                "padded size {}×{} of global attention (window 0) must be the grid's {}×{}",
                self.padded_height, self.padded_width, self.height, self.width
            ));
        }
        if self.shift != 0 {
            return Err(format!(
                "shift {} of global attention (window 0) must be 0",
                self.shift
            ));
        }
        match self
            .height
            .checked_mul(self.width)
            .and_then(|n| n.checked_add(self.prefix))
            .and_then(|t| t.checked_mul(t))
        {
            Some(cells) if cells < Self::PADDING as usize => Ok(()),
            _ => Err("the sequence is too long".into()),
        }
    }

    /// Number of real (unpadded) tokens of the block's sequence: H·W, plus the prefix tokens
    /// of a global block. Rows and columns of the block's attention matrix over real tokens.
    pub fn tokens(&self) -> usize {
        self.prefix + self.height * self.width
    }

    /// Number of windows the padded grid is cut into (1 for global attention).
    pub fn windows(&self) -> usize {
        self.windows_down() * self.windows_across()
    }

    /// Windows per column of the padded grid.
    pub fn windows_down(&self) -> usize {
        if self.is_global() {
            1
        } else {
            self.padded_height / self.window
        }
    }

    /// Windows per row of the padded grid.
    pub fn windows_across(&self) -> usize {
        if self.is_global() {
            1
        } else {
            self.padded_width / self.window
        }
    }

    /// Tokens per window, M² (the whole sequence for global attention).
    pub fn window_area(&self) -> usize {
        if self.is_global() {
            self.tokens()
        } else {
            self.window * self.window
        }
    }

    /// The grid position `(y, x)` of token `token` of the sequence, or `None` for a prefix
    /// token (or one past the end).
    pub fn position(&self, token: usize) -> Option<(usize, usize)> {
        let patch = token.checked_sub(self.prefix)?;
        (patch < self.height * self.width).then(|| (patch / self.width, patch % self.width))
    }

    /// The row vector a pooled map reads from this block's tokens: the CLS token's row where
    /// there are prefix tokens (a ViT's map), else the mean of every row.
    pub fn readout_row(&self) -> Vec<f64> {
        let n = self.tokens();
        if self.prefix > 0 {
            let mut cls = vec![0f64; n];
            cls[0] = 1.0;
            cls
        } else {
            vec![1.0 / n as f64; n]
        }
    }

    /// Marker for a window place that holds padding instead of a token, in
    /// [`Geometry::index_image`] and [`Geometry::merge_children`].
    ///
    /// A sentinel rather than `Option<u32>` keeps the index image at 4 bytes a place; it can
    /// never be a real index because grids are limited to fewer than `u32::MAX` places.
    pub const PADDING: u32 = u32::MAX;

    /// The token at place `position` (row-major inside the M×M window) of window `window`
    /// (row-major over the padded grid's windows): its raster index `y·W + x` in the stage's
    /// unshifted, unpadded grid, or `None` where the place holds padding. A global block's only
    /// window holds the sequence in order.
    ///
    /// With [`RollOrder::PadThenRoll`] (Hugging Face) the grid is padded at the bottom and
    /// right, then the padded grid is rolled by −s on both axes before windows are cut, so
    /// local place (r, c) of window (wr, wc) holds padded-grid position
    /// ((wr·M + r + s) mod Hp, (wc·M + c + s) mod Wp); positions with y ≥ H or x ≥ W are
    /// padding. With [`RollOrder::RollThenPad`] (timm) the unpadded grid is rolled first: the
    /// place at padded position (Y, X) = (wr·M + r, wc·M + c) is padding where Y ≥ H or X ≥ W
    /// and otherwise holds token ((Y + s) mod H, (X + s) mod W).
    ///
    /// # Panics
    /// If the window is 0 or the padded grid is empty (a geometry no model produces).
    pub fn token_at(&self, window: usize, position: usize) -> Option<u32> {
        if self.is_global() {
            return (window == 0 && position < self.tokens()).then_some(position as u32);
        }
        let m = self.window;
        let across = self.windows_across();
        let (wr, wc) = (window / across, window % across);
        let (r, c) = (position / m, position % m);
        let (y, x) = match self.roll {
            RollOrder::PadThenRoll => (
                (wr * m + r + self.shift) % self.padded_height,
                (wc * m + c + self.shift) % self.padded_width,
            ),
            RollOrder::RollThenPad => {
                let (y, x) = (wr * m + r, wc * m + c);
                if y >= self.height || x >= self.width {
                    return None;
                }
                (
                    (y + self.shift) % self.height,
                    (x + self.shift) % self.width,
                )
            }
        };
        (y < self.height && x < self.width).then(|| (y * self.width + x) as u32)
    }

    /// The index image: for every window and every place of it, the token held there (see
    /// [`Geometry::token_at`]), or [`Geometry::PADDING`]. Laid out `[windows, M²]`, in the
    /// order the model's attention is laid out.
    ///
    /// A window-unaware reading of a shifted block is the index image of the same geometry
    /// with `shift: 0`.
    pub fn index_image(&self) -> Vec<u32> {
        let area = self.window_area();
        (0..self.windows() * area)
            .map(|i| self.token_at(i / area, i % area).unwrap_or(Self::PADDING))
            .collect()
    }

    /// The shift-mask region of image token `(y, x)`: tokens of one window attend to each
    /// other only within the same region.
    ///
    /// As in the reference implementation, the mask is built on the rolled grid: rolled rows
    /// `[0, Hp−M)` are region 0, `[Hp−M, Hp−s)` region 1 and `[Hp−s, Hp)` region 2 (the same
    /// for columns), and a token's region is `3·row_region + column_region`. Without a shift
    /// every token is in region 0. The regions lie on the padded grid in both roll orders;
    /// which token sits in a region depends on [`Geometry::roll`].
    pub fn shift_region(&self, y: usize, x: usize) -> usize {
        let s = self.shift;
        // Image row y sits at rolled row y − s, modulo the grid that was rolled.
        let roll = |v: usize, n: usize| (v + n - s % n) % n;
        let (rows, columns) = self.rolled_size();
        self.rolled_region(roll(y, rows), roll(x, columns))
    }

    /// Rows and columns of the grid the cyclic shift rolls: the padded grid with
    /// [`RollOrder::PadThenRoll`], the real grid with [`RollOrder::RollThenPad`]. Image row y
    /// sits at rolled row (y − s) modulo the first.
    pub fn rolled_size(&self) -> (usize, usize) {
        match self.roll {
            RollOrder::PadThenRoll => (self.padded_height, self.padded_width),
            RollOrder::RollThenPad => (self.height, self.width),
        }
    }

    /// The shift-mask region of the token at `(row, column)` of the rolled, padded grid (the
    /// grid windows are cut from); see [`Geometry::shift_region`].
    pub fn rolled_region(&self, row: usize, column: usize) -> usize {
        if self.shift == 0 {
            return 0;
        }
        let (m, s) = (self.window, self.shift);
        let part = |i: usize, n: usize| usize::from(i >= n - m) + usize::from(i >= n - s);
        3 * part(row, self.padded_height) + part(column, self.padded_width)
    }

    /// Height and width of the next stage's grid after patch merging: ⌈H/2⌉ × ⌈W/2⌉.
    pub fn merged_size(&self) -> (usize, usize) {
        (self.height.div_ceil(2), self.width.div_ceil(2))
    }

    /// The merge map into the next stage: for every token of the next stage's grid (raster
    /// order over [`Geometry::merged_size`]), the raster indices of its four children in this
    /// stage, in the order patch merging concatenates them: (2y, 2x), (2y+1, 2x), (2y, 2x+1),
    /// (2y+1, 2x+1). Children outside H×W (the zero padding added to odd sizes) are
    /// [`Geometry::PADDING`]; the first child always exists.
    pub fn merge_children(&self) -> Vec<[u32; 4]> {
        let (h2, w2) = self.merged_size();
        let child = |y: usize, x: usize| {
            if y < self.height && x < self.width {
                (y * self.width + x) as u32
            } else {
                Self::PADDING
            }
        };
        (0..h2 * w2)
            .map(|t| {
                let (y, x) = (2 * (t / w2), 2 * (t % w2));
                [
                    child(y, x),
                    child(y + 1, x),
                    child(y, x + 1),
                    child(y + 1, x + 1),
                ]
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::{Geometry, RollOrder};

    #[test]
    fn index_image_without_shift_or_padding_is_window_partition() {
        let g = Geometry::new(0, 0, 4, 4, 2, 0);
        assert_eq!(
            g.index_image(),
            vec![0, 1, 4, 5, 2, 3, 6, 7, 8, 9, 12, 13, 10, 11, 14, 15]
        );
    }

    #[test]
    fn shift_rolls_the_grid_by_minus_s() {
        // 4×4 grid, window 2, shift 1: window 0 starts at padded position (1, 1).
        let g = Geometry::new(0, 1, 4, 4, 2, 1);
        let image = g.index_image();
        assert_eq!(&image[..4], &[5, 6, 9, 10]);
        // The last window wraps around both edges: (3,3), (3,0), (0,3), (0,0).
        assert_eq!(&image[12..], &[15, 12, 3, 0]);
    }

    #[test]
    fn padding_is_marked_and_every_token_appears_once() {
        // 5×3 grid, window 2 → padded 6×4, shift 1.
        let g = Geometry::new(0, 1, 5, 3, 2, 1);
        assert_eq!((g.padded_height, g.padded_width), (6, 4));
        let image = g.index_image();
        let mut seen = [0; 15];
        for &t in &image {
            if t != Geometry::PADDING {
                seen[t as usize] += 1;
            }
        }
        assert!(seen.iter().all(|&n| n == 1));
        assert_eq!(
            image.iter().filter(|&&t| t == Geometry::PADDING).count(),
            24 - 15
        );
        assert_eq!(g.token_at(0, 0), Some(4)); // padded (1, 1)
        assert_eq!(g.token_at(0, 2), Some(7)); // padded (2, 1)
        assert_eq!(g.token_at(1, 0), None); // padded (1, 3): x = 3 ≥ W
    }

    /// The index image by materializing the grid: tokens `y·W + x` on an H×W grid, rolled and
    /// padded in `roll`'s order, cut into M×M windows.
    fn dense_index_image(g: &Geometry) -> Vec<u32> {
        let (h, w, hp, wp, m, s) = (
            g.height,
            g.width,
            g.padded_height,
            g.padded_width,
            g.window,
            g.shift,
        );
        let pad = Geometry::PADDING;
        let mut grid = vec![vec![pad; wp]; hp];
        match g.roll {
            RollOrder::PadThenRoll => {
                let mut padded = vec![vec![pad; wp]; hp];
                for (y, row) in padded.iter_mut().enumerate().take(h) {
                    for (x, v) in row.iter_mut().enumerate().take(w) {
                        *v = (y * w + x) as u32;
                    }
                }
                for (y, row) in grid.iter_mut().enumerate() {
                    for (x, v) in row.iter_mut().enumerate() {
                        *v = padded[(y + s) % hp][(x + s) % wp];
                    }
                }
            }
            RollOrder::RollThenPad => {
                for (y, row) in grid.iter_mut().enumerate().take(h) {
                    for (x, v) in row.iter_mut().enumerate().take(w) {
                        *v = (((y + s) % h) * w + (x + s) % w) as u32;
                    }
                }
            }
        }
        let mut image = Vec::new();
        for wr in 0..hp / m {
            for wc in 0..wp / m {
                for r in 0..m {
                    for c in 0..m {
                        image.push(grid[wr * m + r][wc * m + c]);
                    }
                }
            }
        }
        image
    }

    #[test]
    fn both_roll_orders_match_a_materialized_grid() {
        for (h, w, m, s) in [
            (5, 3, 2, 1),
            (7, 9, 4, 2),
            (6, 6, 4, 2),
            (13, 13, 4, 2),
            (8, 8, 4, 2),
        ] {
            for roll in [RollOrder::PadThenRoll, RollOrder::RollThenPad] {
                let g = Geometry::new(0, 1, h, w, m, s).with_roll(roll);
                assert_eq!(
                    g.index_image(),
                    dense_index_image(&g),
                    "{h}×{w} M{m} s{s} {roll:?}"
                );
                // Every token's region is the region of the place that holds it.
                for (place, &t) in g.index_image().iter().enumerate() {
                    if t == Geometry::PADDING {
                        continue;
                    }
                    let (window, p) = (place / (m * m), place % (m * m));
                    let across = g.windows_across();
                    let (y, x) = ((window / across) * m + p / m, (window % across) * m + p % m);
                    let (ty, tx) = (t as usize / w, t as usize % w);
                    assert_eq!(g.shift_region(ty, tx), g.rolled_region(y, x), "{roll:?}");
                }
            }
        }
    }

    #[test]
    fn roll_orders_differ_only_where_a_shifted_grid_is_padded() {
        let hf = Geometry::new(0, 1, 7, 9, 4, 2);
        let timm = hf.with_roll(RollOrder::RollThenPad);
        assert_ne!(hf.index_image(), timm.index_image());
        let hf = Geometry::new(0, 1, 8, 12, 4, 2);
        assert_eq!(
            hf.index_image(),
            hf.with_roll(RollOrder::RollThenPad).index_image()
        );
        let hf = Geometry::new(0, 0, 7, 9, 4, 0);
        assert_eq!(
            hf.index_image(),
            hf.with_roll(RollOrder::RollThenPad).index_image()
        );
    }

    #[test]
    fn merge_children_of_odd_grid() {
        let g = Geometry::new(0, 0, 3, 3, 7, 0);
        assert_eq!(g.merged_size(), (2, 2));
        let p = Geometry::PADDING;
        assert_eq!(
            g.merge_children(),
            vec![[0, 3, 1, 4], [2, 5, p, p], [6, p, 7, p], [8, p, p, p]]
        );
    }
}
