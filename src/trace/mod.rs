//! The trace of a forward pass: logits plus, for every block, its geometry and its
//! window-attention probabilities. [`import`] builds one from arrays in the export layout
//! (an `.npz` of `export`, or attention captured from any Swin in Python).

use crate::geometry::Geometry;

pub mod import;

pub use import::{attention_name, roll_order, NdArray, TraceArrays, ROLL_BEFORE_PAD};

/// One block's attention, exactly as the model computed it.
#[derive(Debug, Clone)]
pub struct BlockTrace {
    /// Where the block's windows lay.
    pub geometry: Geometry,
    /// Number of attention heads.
    pub heads: usize,
    /// Softmax probabilities, row-major `[windows, heads, M², M²]`, windows in the order the
    /// model partitions them (row-major over the shifted, padded grid).
    pub attention: Vec<f32>,
}

impl BlockTrace {
    /// The `[M², M²]` probabilities of one window and head, row-major (query, key).
    pub fn window_head(&self, window: usize, head: usize) -> &[f32] {
        let a = self.geometry.window_area();
        let size = a * a;
        let start = (window * self.heads + head) * size;
        &self.attention[start..start + size]
    }
}

/// Everything one forward pass recorded.
#[derive(Debug, Clone)]
pub struct Trace {
    /// The preprocessed input, `[3, H, W]` row-major; empty for a trace imported without it.
    pub pixel_values: Vec<f32>,
    /// Input height and width in pixels.
    pub image_size: (usize, usize),
    /// Classifier logits, one per label; empty where unknown (an imported trace without them).
    pub logits: Vec<f32>,
    /// Every block in forward order.
    pub blocks: Vec<BlockTrace>,
}

/// The gradient of one class's logit with respect to every block's attention probabilities:
/// what makes an explanation specific to that class.
#[derive(Debug, Clone)]
pub struct AttentionGradients {
    /// The class whose (pre-softmax) logit was differentiated.
    pub target: usize,
    /// ∂y_target/∂A for every block in forward order, each laid out as that block's
    /// [`BlockTrace::attention`] (`[windows, heads, M², M²]`).
    pub blocks: Vec<Vec<f32>>,
}
