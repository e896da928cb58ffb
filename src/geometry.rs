//! The geometry of Swin's windows: which token of a stage sits at which place of which
//! window, through padding and the cyclic shift, and how tokens merge between stages.

/// What one Swin block did with its stage's token grid.
///
/// `window` and `shift` are the values the block really used: where the stage's grid is not
/// larger than the configured window, the window is clamped to the grid and the shift is 0.
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
        let pad = |n: usize| n.div_ceil(window) * window;
        Geometry {
            stage,
            block,
            height,
            width,
            padded_height: pad(height),
            padded_width: pad(width),
            window,
            shift,
        }
    }

    /// Number of real (unpadded) tokens, H·W.
    pub fn tokens(&self) -> usize {
        self.height * self.width
    }

    /// Number of windows the padded grid is cut into.
    pub fn windows(&self) -> usize {
        self.windows_down() * self.windows_across()
    }

    /// Windows per column of the padded grid.
    pub fn windows_down(&self) -> usize {
        self.padded_height / self.window
    }

    /// Windows per row of the padded grid.
    pub fn windows_across(&self) -> usize {
        self.padded_width / self.window
    }

    /// Tokens per window, M².
    pub fn window_area(&self) -> usize {
        self.window * self.window
    }
}
