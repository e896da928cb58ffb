//! The networks swin-rollout runs, Swin Transformers (V1 and V2) and ViT / DeiT: their
//! configuration, checkpoint files, where models come from (a local folder, the Hugging Face
//! hub, or the embedded default), and the networks.

mod backbone;
mod checkpoint;
mod config;
mod gradients;
mod kernels;
mod layers;
mod source;
mod swin;
mod swinv2;
mod timm;
mod vit;

pub use backbone::Forward;
pub use checkpoint::{Checkpoint, Layout};
pub use config::{Config, Implementation, Version, SUPPORTED_MODEL_TYPES};
pub use source::{ModelSource, EMBEDDED_SWIN_ARG, EMBEDDED_VIT_ARG};
pub use swin::Swin;
pub use swinv2::SwinV2;
pub use vit::{Family, ViT, ViTConfig};

use std::path::Path;

use candle_core::{Device, Tensor};

use crate::error::{Error, Result};
use crate::preprocess::Preprocessor;
use crate::trace::{AttentionGradients, BlockTrace, Trace};

/// What a checkpoint's `config.json` describes.
#[derive(Debug, Clone, PartialEq)]
pub enum Architecture {
    /// A Swin Transformer, V1 or V2.
    Swin(Config),
    /// A ViT or DeiT.
    ViT(ViTConfig),
}

impl Architecture {
    /// Parses a Hugging Face `config.json` by its `model_type` ("swin" when it has none).
    pub fn from_hf_json(text: &str) -> Result<Self> {
        let model_type: Option<String> = serde_json::from_str::<serde_json::Value>(text)
            .ok()
            .and_then(|v| Some(v.get("model_type")?.as_str()?.to_string()));
        match model_type.as_deref() {
            Some("vit" | "deit") => Ok(Architecture::ViT(ViTConfig::from_hf_json(text)?)),
            _ => Ok(Architecture::Swin(Config::from_hf_json(text)?)),
        }
    }

    /// The `model_type`, which is also the weights' backbone prefix (`swin`, `vit`, …).
    pub fn model_type(&self) -> &'static str {
        match self {
            Architecture::Swin(c) => c.version.model_type(),
            Architecture::ViT(c) => c.family.model_type(),
        }
    }

    /// The configured input height and width in pixels.
    pub fn image_size(&self) -> (usize, usize) {
        match self {
            Architecture::Swin(c) => c.image_size,
            Architecture::ViT(c) => c.image_size,
        }
    }

    fn labels_mut(&mut self) -> &mut Vec<String> {
        match self {
            Architecture::Swin(c) => &mut c.labels,
            Architecture::ViT(c) => &mut c.labels,
        }
    }
}

impl From<Config> for Architecture {
    fn from(config: Config) -> Self {
        Architecture::Swin(config)
    }
}

impl From<ViTConfig> for Architecture {
    fn from(config: ViTConfig) -> Self {
        Architecture::ViT(config)
    }
}

/// A network of one of the families swin-rollout runs.
#[derive(Debug)]
pub enum Network {
    /// Swin V1.
    Swin(Swin),
    /// Swin V2.
    SwinV2(SwinV2),
    /// ViT or DeiT.
    ViT(ViT),
}

impl Network {
    /// Builds the network `architecture` describes from `checkpoint`. A checkpoint without a
    /// classifier is a headless backbone: its config's labels are dropped. One with a classifier
    /// but no labels in its config gets `LABEL_i` names for its classes.
    pub fn load(checkpoint: &Checkpoint, architecture: impl Into<Architecture>) -> Result<Self> {
        let mut architecture = architecture.into();
        let head = checkpoint
            .shape("classifier.weight")
            .or_else(|| checkpoint.shape("cls_classifier.weight"));
        let labels = architecture.labels_mut();
        match head {
            None => labels.clear(),
            Some(&[classes, _]) if labels.is_empty() => {
                *labels = (0..classes).map(|i| format!("LABEL_{i}")).collect();
            }
            Some(_) => {}
        }
        Ok(match architecture {
            Architecture::Swin(config) => match config.version {
                Version::V1 => Network::Swin(Swin::load(checkpoint, config)?),
                Version::V2 => Network::SwinV2(SwinV2::load(checkpoint, config)?),
            },
            Architecture::ViT(config) => Network::ViT(ViT::load(checkpoint, config)?),
        })
    }

    /// The architecture's name, for captions: "Swin Transformer", "Swin Transformer V2",
    /// "ViT", "DeiT".
    pub fn architecture(&self) -> &'static str {
        match self {
            Network::Swin(_) => "Swin Transformer",
            Network::SwinV2(_) => "Swin Transformer V2",
            Network::ViT(n) => match n.config().family {
                Family::ViT => "ViT",
                Family::DeiT => "DeiT",
            },
        }
    }

    /// What kind of attention its blocks compute, as a caption prefix of "W-MSA": "" for
    /// scaled dot-product attention, "cosine " for V2's scaled cosine attention. (A ViT's
    /// attention is global, which captions say from the trace.)
    pub fn attention_style(&self) -> &'static str {
        match self {
            Network::Swin(_) | Network::ViT(_) => "",
            Network::SwinV2(_) => "cosine ",
        }
    }

    /// The Swin architecture; `None` for a ViT.
    pub fn swin_config(&self) -> Option<&Config> {
        match self {
            Network::Swin(n) => Some(n.config()),
            Network::SwinV2(n) => Some(n.config()),
            Network::ViT(_) => None,
        }
    }

    /// Class names, indexed by logit; empty for a headless backbone.
    pub fn labels(&self) -> &[String] {
        match self {
            Network::Swin(n) => &n.config().labels,
            Network::SwinV2(n) => &n.config().labels,
            Network::ViT(n) => &n.config().labels,
        }
    }

    /// Whether every block attends over the whole sequence (ViT, DeiT) rather than in windows.
    pub fn attends_globally(&self) -> bool {
        matches!(self, Network::ViT(_))
    }

    /// Side of the square patches the input is cut into.
    pub fn patch_size(&self) -> usize {
        match self {
            Network::Swin(n) => n.config().patch_size,
            Network::SwinV2(n) => n.config().patch_size,
            Network::ViT(n) => n.config().patch_size,
        }
    }

    /// Runs `pixels` (`[B, C, H, W]`, preprocessed); with `record`, keeps every block's
    /// attention.
    pub fn forward(&self, pixels: &Tensor, record: bool) -> Result<Forward> {
        match self {
            Network::Swin(n) => n.forward(pixels, record),
            Network::SwinV2(n) => n.forward(pixels, record),
            Network::ViT(n) => n.forward(pixels, record),
        }
    }

    /// Logits and per-block traces of one image (`[C, H, W]` or `[1, C, H, W]`).
    pub fn trace(&self, pixels: &Tensor) -> Result<(Vec<f32>, Vec<BlockTrace>)> {
        match self {
            Network::Swin(n) => n.trace(pixels),
            Network::SwinV2(n) => n.trace(pixels),
            Network::ViT(n) => n.trace(pixels),
        }
    }

    /// Logits, traces and the gradient of logit `target` (the top class when `None`) with
    /// respect to every block's attention, for one image.
    pub fn trace_with_gradients(
        &self,
        pixels: &Tensor,
        target: Option<usize>,
    ) -> Result<(Vec<f32>, Vec<BlockTrace>, AttentionGradients)> {
        match self {
            Network::Swin(n) => n.trace_with_gradients(pixels, target),
            Network::SwinV2(n) => n.trace_with_gradients(pixels, target),
            Network::ViT(n) => n.trace_with_gradients(pixels, target),
        }
    }
}

/// A ready-to-run model: the network, its labels (none for a headless backbone) and its
/// preprocessing.
#[derive(Debug)]
pub struct Model {
    /// The network.
    pub network: Network,
    /// How input images are prepared.
    pub preprocessor: Preprocessor,
    /// Where it came from, for messages ("assets/model", "microsoft/swin-tiny-…").
    pub name: String,
}

/// A label with its softmax probability.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    /// Logit index.
    pub index: usize,
    /// Class name from `id2label`.
    pub label: String,
    /// Softmax probability.
    pub probability: f32,
}

impl Model {
    /// Whether the model classifies (a headless backbone such as `SwinModel` does not).
    pub fn has_classifier(&self) -> bool {
        !self.labels().is_empty()
    }

    /// The error for asking a headless model about classes; `what` says what needed them.
    pub fn no_classifier(&self, what: &str) -> Error {
        Error::InvalidArgument(format!(
            "{} has no classifier (a headless backbone such as SwinModel): {what}",
            self.name
        ))
    }

    /// Loads a model from wherever `source` points.
    pub fn load(source: &ModelSource) -> Result<Self> {
        source.load()
    }

    /// Class names, indexed by logit; empty for a headless backbone.
    pub fn labels(&self) -> &[String] {
        self.network.labels()
    }

    /// Runs one preprocessed image (`[3, H, W]` row-major) and records every block.
    pub fn trace_pixels(&self, pixel_values: Vec<f32>) -> Result<Trace> {
        let (h, w) = self.preprocessor.size;
        let pixels = Tensor::from_vec(pixel_values.clone(), (1, 3, h, w), &Device::Cpu)?;
        let (logits, blocks) = self.network.trace(&pixels)?;
        Ok(Trace {
            pixel_values,
            image_size: (h, w),
            logits,
            blocks,
        })
    }

    /// Runs one preprocessed image (`[3, H, W]` row-major) forward and back: every block's
    /// trace and the gradient of class `target`'s logit (the most probable class when `None`)
    /// with respect to every block's attention.
    pub fn trace_pixels_with_gradients(
        &self,
        pixel_values: Vec<f32>,
        target: Option<usize>,
    ) -> Result<(Trace, AttentionGradients)> {
        if !self.has_classifier() {
            return Err(self.no_classifier(
                "class-specific relevance needs class logits; use --explain rollout, or a checkpoint with a classification head",
            ));
        }
        let (h, w) = self.preprocessor.size;
        let pixels = Tensor::from_vec(pixel_values.clone(), (1, 3, h, w), &Device::Cpu)?;
        let (logits, blocks, gradients) = self.network.trace_with_gradients(&pixels, target)?;
        let trace = Trace {
            pixel_values,
            image_size: (h, w),
            logits,
            blocks,
        };
        Ok((trace, gradients))
    }

    /// Reads, preprocesses and runs an image file, recording every block.
    pub fn trace_image(&self, path: &Path) -> Result<Trace> {
        self.trace_pixels(self.preprocessor.load(path)?)
    }

    /// Preprocesses and runs an RGB image, recording every block.
    pub fn trace_rgb(&self, image: &image::RgbImage) -> Result<Trace> {
        self.trace_pixels(self.preprocessor.apply(image))
    }

    /// The class a user named: a label (exactly as in `id2label`, or ignoring case when that
    /// is unambiguous) or a logit index.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the labels (or, for many classes, their count) when
    /// `class` is neither.
    pub fn class_index(&self, class: &str) -> Result<usize> {
        if !self.has_classifier() {
            return Err(self.no_classifier(&format!(
                "--class {class} names no class; leave --class out and use --explain rollout"
            )));
        }
        let labels = self.labels();
        let wanted = class.trim();
        if let Some(i) = labels.iter().position(|l| l == wanted) {
            return Ok(i);
        }
        let folded: Vec<usize> = (0..labels.len())
            .filter(|&i| labels[i].eq_ignore_ascii_case(wanted))
            .collect();
        if let [i] = folded[..] {
            return Ok(i);
        }
        if let Ok(i) = wanted.parse::<usize>() {
            if i < labels.len() {
                return Ok(i);
            }
            return Err(Error::InvalidArgument(format!(
                "--class {i} is out of range: the model has {} classes (indices 0–{})",
                labels.len(),
                labels.len().saturating_sub(1)
            )));
        }
        let known = if labels.len() <= 20 {
            format!("one of: {}", labels.join(", "))
        } else {
            format!("a label of the model or an index below {}", labels.len())
        };
        Err(Error::InvalidArgument(format!(
            "unknown --class '{class}': the model has {} classes; give {known}",
            labels.len()
        )))
    }

    /// The `k` most probable labels of a trace's logits, most probable first.
    pub fn top_k(&self, logits: &[f32], k: usize) -> Vec<Prediction> {
        top_k(logits, self.labels(), k)
    }
}

/// The probabilities of `logits`, in f64 and shifted by the largest logit so no term
/// overflows.
pub fn softmax(logits: &[f32]) -> Vec<f64> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f64> = logits.iter().map(|&l| f64::from(l - max).exp()).collect();
    let total: f64 = exp.iter().sum();
    exp.iter().map(|e| e / total).collect()
}

/// The `k` most probable labels of `logits`, most probable first (ties by index).
pub fn top_k(logits: &[f32], labels: &[String], k: usize) -> Vec<Prediction> {
    let probs = softmax(logits);
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
    order
        .into_iter()
        .take(k)
        .map(|index| Prediction {
            index,
            label: labels
                .get(index)
                .cloned()
                .unwrap_or_else(|| format!("LABEL_{index}")),
            probability: probs[index] as f32,
        })
        .collect()
}
