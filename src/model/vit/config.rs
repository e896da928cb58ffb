//! The architecture of a ViT or DeiT, read from a Hugging Face `config.json` (`ViTConfig`,
//! `DeiTConfig`).

use candle_nn::Activation;
use serde::Deserialize;

use super::super::config::{
    default_gelu, default_three, default_true, labels_from_map, parse_activation, IntOrPair,
};
use crate::error::{Error, Result};
use crate::geometry::Geometry;

/// Which vision transformer: they differ in their prefix tokens and their heads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// ViT (Dosovitskiy et al., 2021): one CLS token, classified from it; `model_type` "vit"
    /// (also non-distilled DeiT checkpoints).
    ViT,
    /// Distilled DeiT (Touvron et al., 2021): a CLS and a distillation token; classified from
    /// CLS (`DeiTForImageClassification`) or by the mean of both tokens' heads
    /// (`…WithTeacher`); `model_type` "deit".
    DeiT,
}

impl Family {
    /// The weights' backbone prefix (`vit.encoder…`, `deit.encoder…`).
    pub fn model_type(self) -> &'static str {
        match self {
            Family::ViT => "vit",
            Family::DeiT => "deit",
        }
    }

    /// Tokens before the patches: CLS, and DeiT's distillation token.
    pub fn prefix_tokens(self) -> usize {
        match self {
            Family::ViT => 1,
            Family::DeiT => 2,
        }
    }
}

/// A ViT's hyper-parameters, with the meaning of Hugging Face's `ViTConfig` / `DeiTConfig`.
#[derive(Debug, Clone, PartialEq)]
pub struct ViTConfig {
    /// ViT or distilled DeiT.
    pub family: Family,
    /// Input height and width in pixels (the position embeddings cover this grid).
    pub image_size: (usize, usize),
    /// Side of the square patches.
    pub patch_size: usize,
    /// Input channels (3 for RGB).
    pub num_channels: usize,
    /// Token width.
    pub hidden_size: usize,
    /// Transformer blocks.
    pub num_layers: usize,
    /// Attention heads of every block.
    pub num_heads: usize,
    /// Hidden width of the MLPs.
    pub intermediate_size: usize,
    /// Whether the query, key and value projections have biases.
    pub qkv_bias: bool,
    /// The MLP's activation.
    pub hidden_act: Activation,
    /// Epsilon of every LayerNorm.
    pub layer_norm_eps: f64,
    /// Class names, indexed by logit; empty for a headless backbone.
    pub labels: Vec<String>,
}

impl ViTConfig {
    /// The `google/vit-base-patch16-224` architecture with `num_labels` classes.
    pub fn vit_base(num_labels: usize) -> Self {
        ViTConfig {
            family: Family::ViT,
            image_size: (224, 224),
            patch_size: 16,
            num_channels: 3,
            hidden_size: 768,
            num_layers: 12,
            num_heads: 12,
            intermediate_size: 3072,
            qkv_bias: true,
            hidden_act: Activation::Gelu,
            layer_norm_eps: 1e-12,
            labels: (0..num_labels).map(|i| format!("LABEL_{i}")).collect(),
        }
    }

    /// The patch grid of an input of `height`×`width` pixels: the patch convolution drops
    /// what does not fill a whole patch.
    pub fn token_grid(&self, height: usize, width: usize) -> (usize, usize) {
        (height / self.patch_size, width / self.patch_size)
    }

    /// The geometry of every block for an input of `height`×`width` pixels: global attention
    /// over the prefix tokens and the patch grid.
    pub fn geometries(&self, height: usize, width: usize) -> Vec<Geometry> {
        let (h, w) = self.token_grid(height, width);
        (0..self.num_layers)
            .map(|block| Geometry::global(block, h, w, self.family.prefix_tokens()))
            .collect()
    }

    /// Checks the invariants the model relies on, so a bad config is an error, not a panic.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Model(format!("config.json: {m}")));
        if self.patch_size == 0 || self.hidden_size == 0 || self.num_layers == 0 {
            return bad(
                "`patch_size`, `hidden_size` and `num_hidden_layers` must be positive".into(),
            );
        }
        let (gh, gw) = self.token_grid(self.image_size.0, self.image_size.1);
        if gh == 0 || gw == 0 {
            return bad(format!(
                "`image_size` {:?} is smaller than one patch of {}",
                self.image_size, self.patch_size
            ));
        }
        if self.num_heads == 0 || !self.hidden_size.is_multiple_of(self.num_heads) {
            return bad(format!(
                "`hidden_size` {} is not divisible by `num_attention_heads` {}",
                self.hidden_size, self.num_heads
            ));
        }
        if self.intermediate_size == 0 {
            return bad("`intermediate_size` must be positive".into());
        }
        if self.layer_norm_eps.is_nan() || self.layer_norm_eps <= 0.0 {
            return bad("`layer_norm_eps` must be positive".into());
        }
        Ok(())
    }

    /// Parses a Hugging Face `config.json` whose `model_type` is "vit" or "deit".
    pub fn from_hf_json(text: &str) -> Result<Self> {
        let raw: HfViTConfig = serde_json::from_str(text)
            .map_err(|e| Error::Model(format!("config.json is malformed: {e}")))?;
        let family = match raw.model_type.as_str() {
            "vit" => Family::ViT,
            "deit" => Family::DeiT,
            other => {
                return Err(Error::Model(format!(
                    "config.json: `model_type` \"{other}\" is not a ViT or DeiT"
                )))
            }
        };
        let config = ViTConfig {
            family,
            image_size: raw.image_size.pair(),
            patch_size: raw.patch_size.square()?,
            num_channels: raw.num_channels,
            hidden_size: raw.hidden_size,
            num_layers: raw.num_hidden_layers,
            num_heads: raw.num_attention_heads,
            intermediate_size: raw.intermediate_size,
            qkv_bias: raw.qkv_bias,
            hidden_act: parse_activation(&raw.hidden_act)?,
            layer_norm_eps: raw.layer_norm_eps,
            labels: labels_from_map(raw.id2label, raw.num_labels)?,
        };
        config.validate()?;
        Ok(config)
    }
}

fn default_image_size() -> IntOrPair {
    IntOrPair::One(224)
}
fn default_patch_size() -> IntOrPair {
    IntOrPair::One(16)
}
fn default_hidden() -> usize {
    768
}
fn default_twelve() -> usize {
    12
}
fn default_intermediate() -> usize {
    3072
}
fn default_eps() -> f64 {
    1e-12
}

/// The fields of HF's `ViTConfig` / `DeiTConfig` that matter here, with their defaults.
#[derive(Debug, Deserialize)]
struct HfViTConfig {
    model_type: String,
    #[serde(default = "default_image_size")]
    image_size: IntOrPair,
    #[serde(default = "default_patch_size")]
    patch_size: IntOrPair,
    #[serde(default = "default_three")]
    num_channels: usize,
    #[serde(default = "default_hidden")]
    hidden_size: usize,
    #[serde(default = "default_twelve")]
    num_hidden_layers: usize,
    #[serde(default = "default_twelve")]
    num_attention_heads: usize,
    #[serde(default = "default_intermediate")]
    intermediate_size: usize,
    #[serde(default = "default_true")]
    qkv_bias: bool,
    #[serde(default = "default_gelu")]
    hidden_act: String,
    #[serde(default = "default_eps")]
    layer_norm_eps: f64,
    #[serde(default)]
    id2label: Option<std::collections::BTreeMap<String, String>>,
    #[serde(default)]
    num_labels: Option<usize>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vit_and_deit_configs_parse_with_their_defaults() {
        let c =
            ViTConfig::from_hf_json(r#"{"model_type": "vit", "id2label": {"0": "cat"}}"#).unwrap();
        assert_eq!(c, ViTConfig::vit_base(0).with_labels(&["cat"]));
        let d = ViTConfig::from_hf_json(r#"{"model_type": "deit", "image_size": 32}"#).unwrap();
        assert_eq!((d.family.prefix_tokens(), d.image_size), (2, (32, 32)));
        let g = d.geometries(32, 35);
        assert_eq!(g.len(), 12);
        assert_eq!((g[3].height, g[3].width, g[3].tokens()), (2, 2, 6));
        let err = ViTConfig::from_hf_json(r#"{"model_type": "vit", "hidden_size": 10}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not divisible"), "{err}");
    }

    impl ViTConfig {
        fn with_labels(mut self, labels: &[&str]) -> Self {
            self.labels = labels.iter().map(|l| l.to_string()).collect();
            self
        }
    }
}
