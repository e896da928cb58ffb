//! The architecture of a Swin Transformer (V1 or V2), read from a checkpoint's `config.json`
//! (Hugging Face `SwinConfig` / `Swinv2Config`, or timm's `config.json`) or inferred from its
//! weights.

use std::collections::BTreeMap;

use candle_nn::Activation;
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::geometry::{Geometry, RollOrder};

/// Which Swin Transformer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// Swin (Liu et al., 2021): scaled dot-product attention with a learned relative position
    /// bias table, pre-norm blocks; `model_type` "swin".
    V1,
    /// Swin V2 (Liu et al., 2022): scaled cosine attention with a learned, clamped logit scale,
    /// a continuous relative position bias (an MLP on log-spaced offsets), post-norm blocks, and
    /// windows fixed from the configured image size; `model_type` "swinv2".
    V2,
}

impl Version {
    /// The `model_type` of Hugging Face configs, which is also the weights' backbone prefix.
    pub fn model_type(self) -> &'static str {
        match self {
            Version::V1 => "swin",
            Version::V2 => "swinv2",
        }
    }
}

/// Whose implementation a checkpoint was trained in, where Hugging Face's and timm's Swins
/// compute differently: the order of a shifted block's roll and padding, a V2 block's window
/// at a stage whose grid is not a power-of-two fraction of the image's, and V2's shift mask.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Implementation {
    /// Hugging Face `transformers` (`SwinForImageClassification`, `Swinv2ForImageClassification`).
    #[default]
    Transformers,
    /// timm (`SwinTransformer`, `SwinTransformerV2`).
    Timm,
}

/// The `model_type`s whose checkpoints load, for messages.
pub const SUPPORTED_MODEL_TYPES: &str = "swin, swinv2";

/// A Swin image classifier's hyper-parameters, with the meaning of Hugging Face's `SwinConfig`
/// and `Swinv2Config`.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// V1 or V2.
    pub version: Version,
    /// Input height and width in pixels.
    pub image_size: (usize, usize),
    /// Side of the square patches the image is cut into.
    pub patch_size: usize,
    /// Input channels (3 for RGB).
    pub num_channels: usize,
    /// Channels of the first stage; stage `i` has `embed_dim · 2^i`.
    pub embed_dim: usize,
    /// Blocks per stage.
    pub depths: Vec<usize>,
    /// Attention heads per stage.
    pub num_heads: Vec<usize>,
    /// Configured window side M (clamped per stage where the grid is not larger).
    pub window_size: usize,
    /// MLP hidden width over block width.
    pub mlp_ratio: f64,
    /// Whether the query, key and value projections have biases.
    pub qkv_bias: bool,
    /// The MLP's activation.
    pub hidden_act: Activation,
    /// Whether learned absolute position embeddings are added after the patch embedding.
    pub use_absolute_embeddings: bool,
    /// Epsilon of the blocks' and the final LayerNorms.
    pub layer_norm_eps: f64,
    /// Class names, indexed by logit; empty for a headless backbone.
    pub labels: Vec<String>,
    /// V2 only: per stage, the window the model was pretrained with, which scales the
    /// position-bias coordinates (0: the stage's own window). Empty means all 0.
    pub pretrained_window_sizes: Vec<usize>,
    /// Whose arithmetic to follow where Hugging Face and timm differ.
    pub implementation: Implementation,
}

impl Config {
    /// The `microsoft/swin-tiny-patch4-window7-224` architecture with `num_labels` classes.
    pub fn swin_tiny(num_labels: usize) -> Self {
        Config {
            version: Version::V1,
            image_size: (224, 224),
            patch_size: 4,
            num_channels: 3,
            embed_dim: 96,
            depths: vec![2, 2, 6, 2],
            num_heads: vec![3, 6, 12, 24],
            window_size: 7,
            mlp_ratio: 4.0,
            qkv_bias: true,
            hidden_act: Activation::Gelu,
            use_absolute_embeddings: false,
            layer_norm_eps: 1e-5,
            labels: (0..num_labels).map(|i| format!("LABEL_{i}")).collect(),
            pretrained_window_sizes: Vec::new(),
            implementation: Implementation::Transformers,
        }
    }

    /// The `microsoft/swinv2-tiny-patch4-window8-256` architecture with `num_labels` classes.
    pub fn swinv2_tiny(num_labels: usize) -> Self {
        Config {
            version: Version::V2,
            image_size: (256, 256),
            window_size: 8,
            pretrained_window_sizes: vec![0; 4],
            ..Config::swin_tiny(num_labels)
        }
    }

    /// Number of stages.
    pub fn stages(&self) -> usize {
        self.depths.len()
    }

    /// Channels of stage `stage`.
    pub fn stage_dim(&self, stage: usize) -> usize {
        self.embed_dim << stage
    }

    /// Channels of the final features fed to the classifier.
    pub fn num_features(&self) -> usize {
        self.stage_dim(self.stages() - 1)
    }

    /// Hidden width of the MLP of a block with `dim` channels (HF truncates, as `int()` does).
    pub fn mlp_hidden(&self, dim: usize) -> usize {
        (self.mlp_ratio * dim as f64) as usize
    }

    /// Number of classes.
    pub fn num_labels(&self) -> usize {
        self.labels.len()
    }

    /// Token grid of the first stage for an input of `height`×`width` pixels (the input is
    /// padded to whole patches, as the reference does).
    pub fn token_grid(&self, height: usize, width: usize) -> (usize, usize) {
        (
            height.div_ceil(self.patch_size),
            width.div_ceil(self.patch_size),
        )
    }

    /// The window side and shift of block `block` of stage `stage` of a V2 model: fixed when
    /// the model is built from the configured image's grid, whatever the input.
    ///
    /// transformers halves `image_size / patch_size` by floor division per stage and clamps by
    /// the smaller side: where it is not above the window, the window becomes that side and
    /// the shift 0. timm halves by ceiling division (its stages' real grids) and clamps each
    /// axis on its own (`_calc_window_shift`); [`Config::validate`] refuses a timm model whose
    /// axes end up with different windows or shifts, so the height's are returned.
    pub fn v2_window(&self, stage: usize, block: usize) -> (usize, usize) {
        let shift = if block % 2 == 1 {
            self.window_size / 2
        } else {
            0
        };
        match self.implementation {
            Implementation::Transformers => {
                let grid = |side: usize| (side / self.patch_size) >> stage;
                let resolution = grid(self.image_size.0).min(grid(self.image_size.1));
                clamp_window(resolution, self.window_size, shift)
            }
            Implementation::Timm => self.timm_window(stage, shift)[0],
        }
    }

    /// timm's `(window, shift)` of each axis (height, width) of stage `stage`, for a block
    /// that asks for `shift`: the stage's grid is the patch grid (`image_size // patch_size`)
    /// halved by ceiling division per stage, and each axis keeps the configured window and
    /// shift only where its grid is larger than the window.
    fn timm_window(&self, stage: usize, shift: usize) -> [(usize, usize); 2] {
        let grid =
            |side: usize| (0..stage).fold(side / self.patch_size.max(1), |g, _| g.div_ceil(2));
        [self.image_size.0, self.image_size.1]
            .map(|side| clamp_window(grid(side), self.window_size, shift))
    }

    /// How a shifted block of this model rolls and pads its grid: timm rolls, then pads.
    pub fn roll_order(&self) -> RollOrder {
        match self.implementation {
            Implementation::Transformers => RollOrder::PadThenRoll,
            Implementation::Timm => RollOrder::RollThenPad,
        }
    }

    /// The value added to the scores of token pairs of different shift regions. Every Swin V1
    /// adds −100; transformers' V2 adds V1's −100 twice (once when it groups the scores by
    /// window and again after), which is −200 once; timm's V2 adds it once.
    pub fn shift_mask(&self) -> f32 {
        match (self.version, self.implementation) {
            (Version::V2, Implementation::Transformers) => -200.0,
            _ => -100.0,
        }
    }

    /// The position-bias coordinates' scale of stage `stage` (V2): its pretrained window, or 0.
    pub fn pretrained_window(&self, stage: usize) -> usize {
        self.pretrained_window_sizes
            .get(stage)
            .copied()
            .unwrap_or(0)
    }

    /// The geometry of every block, in forward order, for an input of `height`×`width` pixels.
    pub fn geometries(&self, height: usize, width: usize) -> Vec<Geometry> {
        let (mut h, mut w) = self.token_grid(height, width);
        let mut out = Vec::new();
        for (stage, &depth) in self.depths.iter().enumerate() {
            for block in 0..depth {
                out.push(
                    match self.version {
                        Version::V1 => {
                            let shift = if block % 2 == 1 {
                                self.window_size / 2
                            } else {
                                0
                            };
                            Geometry::new(stage, block, h, w, self.window_size, shift)
                        }
                        Version::V2 => {
                            let (window, shift) = self.v2_window(stage, block);
                            Geometry::unclamped(stage, block, h, w, window, shift)
                        }
                    }
                    .with_roll(self.roll_order()),
                );
            }
            if stage + 1 < self.stages() {
                h = h.div_ceil(2);
                w = w.div_ceil(2);
            }
        }
        out
    }

    /// Checks the invariants the model relies on, so a bad config is an error, not a panic.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Model(format!("config.json: {m}")));
        if self.depths.is_empty() || self.depths.len() != self.num_heads.len() {
            return bad(format!(
                "`depths` ({:?}) and `num_heads` ({:?}) must be non-empty and of equal length",
                self.depths, self.num_heads
            ));
        }
        if self.patch_size == 0 || self.window_size == 0 || self.embed_dim == 0 {
            return bad("`patch_size`, `window_size` and `embed_dim` must be positive".into());
        }
        if self.image_size.0 == 0 || self.image_size.1 == 0 {
            return bad("`image_size` must be positive".into());
        }
        for (stage, &heads) in self.num_heads.iter().enumerate() {
            if heads == 0 || !self.stage_dim(stage).is_multiple_of(heads) {
                return bad(format!(
                    "stage {stage} has {} channels, not divisible by its {heads} heads",
                    self.stage_dim(stage)
                ));
            }
        }
        // timm clamps each axis on its own (V1 and V2): where that gives the axes different
        // windows the model has non-square windows; elsewhere it agrees with the smaller-side
        // rule that transformers' V1 applies.
        if self.implementation == Implementation::Timm {
            for stage in 0..self.stages() {
                let [rows, columns] = self.timm_window(stage, self.window_size / 2);
                if rows != columns {
                    return bad(format!(
                        "`img_size` {:?} gives stage {stage} windows (and shifts) of {rows:?} \
                         down but {columns:?} across; swin-rollout needs square windows",
                        self.image_size
                    ));
                }
            }
        }
        if self.version == Version::V2 {
            // timm halves by ceiling division: only an image below one patch empties it.
            let last = match self.implementation {
                Implementation::Transformers => self.stages() - 1,
                Implementation::Timm => 0,
            };
            let grid = |side: usize| (side / self.patch_size) >> last;
            let (gh, gw) = (grid(self.image_size.0), grid(self.image_size.1));
            if gh == 0 || gw == 0 {
                return bad(format!(
                    "`image_size` {:?} is too small for {} stages of patch {}: the last stage's grid is empty",
                    self.image_size,
                    self.stages(),
                    self.patch_size
                ));
            }
            if gh.min(self.window_size) != gw.min(self.window_size)
                && self.implementation == Implementation::Transformers
            {
                return bad(format!(
                    "`image_size` {:?} gives non-square windows in the last stage; swin-rollout needs square windows",
                    self.image_size
                ));
            }
            // timm divides by max(p − 1, 1); transformers by p − 1, which 1 makes infinite.
            let transformers = self.implementation == Implementation::Transformers;
            if let Some(p) = self
                .pretrained_window_sizes
                .iter()
                .find(|&&p| p == 1 && transformers)
            {
                return bad(format!(
                    "`pretrained_window_sizes` holds {p}; each must be 0 (none) or at least 2"
                ));
            }
            if self.use_absolute_embeddings {
                return bad("Swin V2 with `use_absolute_embeddings` is not supported (transformers cannot run it either)".into());
            }
        }
        if self.mlp_ratio.is_nan()
            || self.mlp_ratio <= 0.0
            || self.layer_norm_eps.is_nan()
            || self.layer_norm_eps <= 0.0
        {
            return bad("`mlp_ratio` and `layer_norm_eps` must be positive".into());
        }
        Ok(())
    }

    /// Parses a Hugging Face `config.json` of a `SwinForImageClassification` or
    /// `Swinv2ForImageClassification` (by its `model_type`; "swin" when it has none).
    pub fn from_hf_json(text: &str) -> Result<Self> {
        let raw: HfConfig = serde_json::from_str(text)
            .map_err(|e| Error::Model(format!("config.json is malformed: {e}")))?;
        let version = match raw.model_type.as_deref() {
            None | Some("swin") => Version::V1,
            Some("swinv2") => Version::V2,
            Some(other) => {
                return Err(Error::Model(format!(
                    "config.json: `model_type` \"{other}\" is not a model swin-rollout runs (it runs: {SUPPORTED_MODEL_TYPES})"
                )))
            }
        };
        let labels = labels_from_map(raw.id2label, raw.num_labels)?;
        let config = Config {
            version,
            pretrained_window_sizes: raw.pretrained_window_sizes.unwrap_or_default(),
            image_size: raw.image_size.pair(),
            patch_size: raw.patch_size.square()?,
            num_channels: raw.num_channels,
            embed_dim: raw.embed_dim,
            depths: raw.depths,
            num_heads: raw.num_heads,
            window_size: raw.window_size,
            mlp_ratio: raw.mlp_ratio,
            qkv_bias: raw.qkv_bias,
            hidden_act: parse_activation(&raw.hidden_act)?,
            use_absolute_embeddings: raw.use_absolute_embeddings,
            layer_norm_eps: raw.layer_norm_eps,
            labels,
            implementation: Implementation::Transformers,
        };
        config.validate()?;
        Ok(config)
    }
}

/// A block's window and shift where its stage's grid has side `resolution`: the configured
/// `window` and `shift` where the grid is larger than the window, else the grid's side and no
/// shift (the rule of both transformers and timm).
fn clamp_window(resolution: usize, window: usize, shift: usize) -> (usize, usize) {
    if resolution <= window {
        (resolution, 0)
    } else {
        (window, shift)
    }
}

pub(super) fn parse_activation(name: &str) -> Result<Activation> {
    Ok(match name {
        "gelu" => Activation::Gelu,
        "gelu_new" | "gelu_fast" => Activation::NewGelu,
        "gelu_pytorch_tanh" => Activation::GeluPytorchTanh,
        "relu" => Activation::Relu,
        "silu" | "swish" => Activation::Silu,
        other => {
            return Err(Error::Model(format!(
                "config.json: unsupported `hidden_act` \"{other}\" (supported: gelu, gelu_new, gelu_pytorch_tanh, relu, silu)"
            )))
        }
    })
}

/// Class names from HF's `id2label` (keys are decimal strings), filling gaps with `LABEL_i`.
pub(super) fn labels_from_map(
    id2label: Option<BTreeMap<String, String>>,
    num_labels: Option<usize>,
) -> Result<Vec<String>> {
    let mut map = BTreeMap::new();
    for (key, name) in id2label.unwrap_or_default() {
        let id: usize = key.parse().map_err(|_| {
            Error::Model(format!(
                "config.json: `id2label` key \"{key}\" is not a number"
            ))
        })?;
        map.insert(id, name);
    }
    let count = num_labels
        .unwrap_or(0)
        .max(map.keys().next_back().map_or(0, |&k| k + 1));
    Ok((0..count)
        .map(|i| map.get(&i).cloned().unwrap_or_else(|| format!("LABEL_{i}")))
        .collect())
}

/// `image_size` and `patch_size` are an int or a pair in HF configs.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum IntOrPair {
    One(usize),
    Two([usize; 2]),
}

impl IntOrPair {
    pub(super) fn pair(&self) -> (usize, usize) {
        match *self {
            IntOrPair::One(n) => (n, n),
            IntOrPair::Two([h, w]) => (h, w),
        }
    }

    pub(super) fn square(&self) -> Result<usize> {
        match self.pair() {
            (h, w) if h == w => Ok(h),
            (h, w) => Err(Error::Model(format!(
                "config.json: non-square patches {h}×{w} are not supported"
            ))),
        }
    }
}

fn default_image_size() -> IntOrPair {
    IntOrPair::One(224)
}
fn default_patch_size() -> IntOrPair {
    IntOrPair::One(4)
}
pub(super) fn default_three() -> usize {
    3
}
fn default_embed_dim() -> usize {
    96
}
fn default_depths() -> Vec<usize> {
    vec![2, 2, 6, 2]
}
fn default_heads() -> Vec<usize> {
    vec![3, 6, 12, 24]
}
fn default_window() -> usize {
    7
}
fn default_mlp_ratio() -> f64 {
    4.0
}
pub(super) fn default_true() -> bool {
    true
}
pub(super) fn default_gelu() -> String {
    "gelu".into()
}
fn default_eps() -> f64 {
    1e-5
}

/// The fields of HF's `SwinConfig` that matter here, with its defaults.
#[derive(Debug, Deserialize)]
struct HfConfig {
    #[serde(default = "default_image_size")]
    image_size: IntOrPair,
    #[serde(default = "default_patch_size")]
    patch_size: IntOrPair,
    #[serde(default = "default_three")]
    num_channels: usize,
    #[serde(default = "default_embed_dim")]
    embed_dim: usize,
    #[serde(default = "default_depths")]
    depths: Vec<usize>,
    #[serde(default = "default_heads")]
    num_heads: Vec<usize>,
    #[serde(default = "default_window")]
    window_size: usize,
    #[serde(default = "default_mlp_ratio")]
    mlp_ratio: f64,
    #[serde(default = "default_true")]
    qkv_bias: bool,
    #[serde(default = "default_gelu")]
    hidden_act: String,
    #[serde(default)]
    use_absolute_embeddings: bool,
    #[serde(default = "default_eps")]
    layer_norm_eps: f64,
    #[serde(default)]
    id2label: Option<BTreeMap<String, String>>,
    #[serde(default)]
    num_labels: Option<usize>,
    #[serde(default)]
    model_type: Option<String>,
    #[serde(default)]
    pretrained_window_sizes: Option<Vec<usize>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swin_tiny_geometry_matches_the_published_model() {
        let g = Config::swin_tiny(1000).geometries(224, 224);
        assert_eq!(g.len(), 12);
        assert_eq!((g[0].height, g[0].window, g[0].shift), (56, 7, 0));
        assert_eq!((g[1].height, g[1].shift), (56, 3));
        assert_eq!((g[2].stage, g[2].height), (1, 28));
        // 7×7 grid with window 7: clamped, no shift.
        assert_eq!((g[11].height, g[11].window, g[11].shift), (7, 7, 0));
    }

    #[test]
    fn hf_config_parses_labels_and_rejects_garbage() {
        let c = Config::from_hf_json(
            r#"{"image_size": 96, "embed_dim": 8, "depths": [2], "num_heads": [2],
                "id2label": {"0": "cat", "1": "dog"}}"#,
        )
        .unwrap();
        assert_eq!(c.labels, vec!["cat", "dog"]);
        assert_eq!(c.image_size, (96, 96));
        let err = Config::from_hf_json("{not json").unwrap_err().to_string();
        assert!(err.contains("config.json is malformed"), "{err}");
        let err =
            Config::from_hf_json(r#"{"depths": [2, 2], "num_heads": [3], "id2label": {"0": "a"}}"#)
                .unwrap_err()
                .to_string();
        assert!(err.contains("num_heads"), "{err}");
    }
}
