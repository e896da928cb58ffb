//! Checkpoint files: read every tensor of a `model.safetensors` or `pytorch_model.bin`, bring
//! timm's names to Hugging Face's, and hand out tensors by name with shape checks that name
//! the tensor when they fail.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};

use super::timm;
use crate::error::{Error, Result};

/// How the tensors of a checkpoint are named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Hugging Face `transformers` (`swin.encoder.layers.0.blocks.0.attention.self.query.weight`).
    HuggingFace,
    /// timm (`layers.0.blocks.0.attn.qkv.weight`, fused q|k|v, downsample at stage start).
    Timm,
}

/// The tensors of one checkpoint, under Hugging Face names, in f32 on the CPU.
#[derive(Debug)]
pub struct Checkpoint {
    tensors: HashMap<String, Tensor>,
    file: PathBuf,
    layout: Layout,
}

impl Checkpoint {
    /// Reads `model.safetensors` or `pytorch_model.bin` (by extension) and detects its layout.
    pub fn read(file: &Path) -> Result<Self> {
        if !file.exists() {
            return Err(Error::Model(format!(
                "{} does not exist; a model folder needs model.safetensors or pytorch_model.bin",
                file.display()
            )));
        }
        if file.extension().is_some_and(|e| e == "bin" || e == "pth") {
            let raw = candle_core::pickle::read_all(file).map_err(|e| corrupt(file, &e))?;
            return Self::from_tensors(raw, file);
        }
        let bytes = std::fs::read(file).map_err(|e| Error::io(file, e))?;
        Self::from_safetensors_bytes(&bytes, file)
    }

    /// Parses safetensors bytes; `file` names them in messages.
    pub fn from_safetensors_bytes(bytes: &[u8], file: &Path) -> Result<Self> {
        let raw = candle_core::safetensors::load_buffer(bytes, &Device::Cpu)
            .map_err(|e| corrupt(file, &e))?;
        Self::from_tensors(raw.into_iter().collect(), file)
    }

    /// Builds a checkpoint from named tensors (any float dtype), detecting the layout.
    pub fn from_tensors(raw: Vec<(String, Tensor)>, file: &Path) -> Result<Self> {
        let layout = if raw.iter().any(|(n, _)| n.starts_with("patch_embed.")) {
            Layout::Timm
        } else {
            Layout::HuggingFace
        };
        // timm's other Swin V2 (`SwinTransformerV2Cr`) has stages of its own design.
        if layout == Layout::Timm
            && raw
                .iter()
                .any(|(n, _)| n.starts_with("stages.") || n.contains(".attn.meta_mlp."))
        {
            return Err(Error::Model(format!(
                "{} is a timm swinv2_cr_* checkpoint (SwinTransformerV2Cr, a different Swin V2 \
                 implementation), which swin-rollout does not run; timm's swinv2_* \
                 (SwinTransformerV2) and Hugging Face's Swinv2ForImageClassification load",
                file.display()
            )));
        }
        // A timm Swin V2 has a logit scale per block; its backbone is named as transformers'.
        let swin = if raw.iter().any(|(n, _)| n.ends_with(".attn.logit_scale")) {
            "swinv2"
        } else {
            "swin"
        };
        let mut tensors = HashMap::with_capacity(raw.len());
        let old_timm = raw
            .iter()
            .any(|(n, _)| n.starts_with("layers.0.downsample."));
        // A timm ViT or DeiT has a CLS token at the top level; its backbone prefix follows
        // transformers' (a distilled DeiT is "deit", every other "vit").
        let vit =
            (layout == Layout::Timm && raw.iter().any(|(n, _)| n == "cls_token")).then(|| {
                if raw.iter().any(|(n, _)| n == "dist_token") {
                    "deit"
                } else {
                    "vit"
                }
            });
        if vit.is_some() {
            timm::check_vit_supported(raw.iter().map(|(n, _)| n.as_str()), file)?;
        }
        for (name, tensor) in raw {
            let tensor = match tensor.dtype() {
                DType::F32 | DType::F16 | DType::BF16 | DType::F64 => {
                    tensor.to_dtype(DType::F32)?
                }
                // Integer buffers (relative_position_index, masks) are recomputed, not read.
                _ => continue,
            };
            match layout {
                Layout::HuggingFace => {
                    tensors.insert(name, tensor);
                }
                Layout::Timm => {
                    let renamed = match vit {
                        Some(model) => timm::vit_to_hf(&name, tensor, model)?,
                        None => timm::swin_to_hf(&name, tensor, old_timm, swin)?,
                    };
                    for (name, tensor) in renamed {
                        tensors.insert(name, tensor);
                    }
                }
            }
        }
        Ok(Checkpoint {
            tensors,
            file: file.to_path_buf(),
            layout,
        })
    }

    /// The naming the file used.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// The file the tensors came from.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// Whether a tensor of this (Hugging Face) name exists.
    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// The shape of a tensor, if present.
    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        self.tensors.get(name).map(|t| t.dims())
    }

    /// The tensor `name`, which must have shape `shape`.
    pub fn get(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let tensor = self.tensors.get(name).ok_or_else(|| {
            Error::Model(format!(
                "{}: tensor `{name}` is missing; is this an image-classification checkpoint matching its config.json?",
                self.file.display()
            ))
        })?;
        if tensor.dims() != shape {
            return Err(Error::Model(format!(
                "{}: tensor `{name}` has shape {:?}, expected {:?} from config.json",
                self.file.display(),
                tensor.dims(),
                shape
            )));
        }
        Ok(tensor.clone())
    }

    /// Names the backbone's tensors under `model` (`swin`, `swinv2`) when they were saved
    /// without it, as a headless `SwinModel.save_pretrained` writes them (`embeddings.…`,
    /// `encoder.…`, `layernorm.…`).
    pub fn prefix_bare_backbone(&mut self, model: &str) {
        let bare = "embeddings.patch_embeddings.projection.weight";
        if self.tensors.contains_key(&format!("{model}.{bare}")) || !self.tensors.contains_key(bare)
        {
            return;
        }
        self.tensors = std::mem::take(&mut self.tensors)
            .into_iter()
            .map(|(name, t)| {
                let backbone = ["embeddings.", "encoder.", "layernorm.", "pooler."]
                    .iter()
                    .any(|p| name.starts_with(p));
                (
                    if backbone {
                        format!("{model}.{name}")
                    } else {
                        name
                    },
                    t,
                )
            })
            .collect();
    }

    /// Number of blocks stored for `stage` of backbone `model` (`swin`, `swinv2`), used to
    /// infer depths from timm weights.
    pub fn blocks_in_stage(&self, model: &str, stage: usize) -> usize {
        (0..)
            .take_while(|b| {
                self.contains(&format!(
                    "{model}.encoder.layers.{stage}.blocks.{b}.layernorm_before.weight"
                ))
            })
            .count()
    }
}

fn corrupt(file: &Path, e: &candle_core::Error) -> Error {
    let text = e.to_string();
    Error::Model(format!(
        "{} is truncated or corrupt ({}); download or export it again",
        file.display(),
        text.lines().next().unwrap_or(&text)
    ))
}

/// Seeded random tensors under Hugging Face names.
struct RandomWeights {
    state: u64,
    tensors: Vec<(String, Tensor)>,
}

impl RandomWeights {
    /// Uniform in [−0.5, 0.5) by splitmix64: tiny, seedable, good enough for weights.
    fn next(&mut self) -> f32 {
        let mut rng = crate::rng::SplitMix64(self.state);
        let x = rng.next_f32() - 0.5;
        self.state = rng.0;
        x
    }

    fn tensor(&mut self, name: String, shape: &[usize], scale: f32, offset: f32) -> Result<()> {
        let n = shape.iter().product();
        let data: Vec<f32> = (0..n).map(|_| offset + scale * self.next()).collect();
        let t = Tensor::from_vec(data, shape, &Device::Cpu)?;
        self.tensors.push((name, t));
        Ok(())
    }

    fn norm(&mut self, prefix: &str, dim: usize) -> Result<()> {
        self.tensor(format!("{prefix}.weight"), &[dim], 0.2, 1.0)?;
        self.tensor(format!("{prefix}.bias"), &[dim], 0.2, 0.0)
    }

    fn linear(&mut self, prefix: &str, inp: usize, out: usize, bias: bool) -> Result<()> {
        let scale = 2.0 / (inp as f32).sqrt();
        self.tensor(format!("{prefix}.weight"), &[out, inp], scale, 0.0)?;
        if bias {
            self.tensor(format!("{prefix}.bias"), &[out], 0.1, 0.0)?;
        }
        Ok(())
    }
}

impl Checkpoint {
    /// A checkpoint of random weights for `config` (seeded, reproducible), for benchmarks and
    /// examples that need the real architecture without a download.
    pub fn random(c: &super::Config, seed: u64) -> Result<Self> {
        let mut w = RandomWeights {
            state: seed,
            tensors: Vec::new(),
        };
        let v2 = c.version == super::Version::V2;
        let model = c.version.model_type();
        let (e, p, ch) = (c.embed_dim, c.patch_size, c.num_channels);
        let proj = format!("{model}.embeddings.patch_embeddings.projection");
        w.tensor(format!("{proj}.weight"), &[e, ch, p, p], 0.2, 0.0)?;
        w.tensor(format!("{proj}.bias"), &[e], 0.1, 0.0)?;
        w.norm(&format!("{model}.embeddings.norm"), e)?;
        if c.use_absolute_embeddings {
            let (h, wd) = c.token_grid(c.image_size.0, c.image_size.1);
            w.tensor(
                format!("{model}.embeddings.position_embeddings"),
                &[1, h * wd, e],
                0.1,
                0.0,
            )?;
        }
        let side = 2 * c.window_size - 1;
        for stage in 0..c.stages() {
            let d = c.stage_dim(stage);
            let heads = c.num_heads[stage];
            for block in 0..c.depths[stage] {
                let b = format!("{model}.encoder.layers.{stage}.blocks.{block}");
                w.norm(&format!("{b}.layernorm_before"), d)?;
                for which in ["query", "key", "value"] {
                    // V2's key projection has no bias.
                    let bias = c.qkv_bias && !(v2 && which == "key");
                    w.linear(&format!("{b}.attention.self.{which}"), d, d, bias)?;
                }
                if v2 {
                    let s = format!("{b}.attention.self");
                    // log τ around log 10, the reference's initial value.
                    w.tensor(format!("{s}.logit_scale"), &[heads, 1, 1], 2.0, 2.3)?;
                    let mlp = format!("{s}.continuous_position_bias_mlp");
                    w.tensor(format!("{mlp}.0.weight"), &[512, 2], 2.0, 0.0)?;
                    w.tensor(format!("{mlp}.0.bias"), &[512], 2.0, 0.0)?;
                    w.tensor(format!("{mlp}.2.weight"), &[heads, 512], 0.2, 0.0)?;
                } else {
                    let table = format!("{b}.attention.self.relative_position_bias_table");
                    w.tensor(table, &[side * side, heads], 2.0, 0.0)?;
                }
                w.linear(&format!("{b}.attention.output.dense"), d, d, true)?;
                w.norm(&format!("{b}.layernorm_after"), d)?;
                let hidden = c.mlp_hidden(d);
                w.linear(&format!("{b}.intermediate.dense"), d, hidden, true)?;
                w.linear(&format!("{b}.output.dense"), hidden, d, true)?;
            }
            if stage + 1 < c.stages() {
                let m = format!("{model}.encoder.layers.{stage}.downsample");
                // V1 normalizes the concatenated children, V2 the reduced tokens.
                w.norm(&format!("{m}.norm"), if v2 { 2 * d } else { 4 * d })?;
                w.linear(&format!("{m}.reduction"), 4 * d, 2 * d, false)?;
            }
        }
        w.norm(&format!("{model}.layernorm"), c.num_features())?;
        w.linear("classifier", c.num_features(), c.num_labels(), true)?;
        Self::from_tensors(w.tensors, Path::new("<random weights>"))
    }

    /// A checkpoint of random weights for the ViT or DeiT `c` (seeded, reproducible; a
    /// distilled DeiT gets both heads), for benchmarks and examples.
    pub fn random_vit(c: &super::ViTConfig, seed: u64) -> Result<Self> {
        let mut w = RandomWeights {
            state: seed,
            tensors: Vec::new(),
        };
        let model = c.family.model_type();
        let (e, p, ch) = (c.hidden_size, c.patch_size, c.num_channels);
        let embeddings = format!("{model}.embeddings");
        let proj = format!("{embeddings}.patch_embeddings.projection");
        w.tensor(format!("{proj}.weight"), &[e, ch, p, p], 0.2, 0.0)?;
        w.tensor(format!("{proj}.bias"), &[e], 0.1, 0.0)?;
        w.tensor(format!("{embeddings}.cls_token"), &[1, 1, e], 0.2, 0.0)?;
        let prefix = c.family.prefix_tokens();
        if prefix == 2 {
            w.tensor(
                format!("{embeddings}.distillation_token"),
                &[1, 1, e],
                0.2,
                0.0,
            )?;
        }
        let (h, wd) = c.token_grid(c.image_size.0, c.image_size.1);
        let position = format!("{embeddings}.position_embeddings");
        w.tensor(position, &[1, prefix + h * wd, e], 0.1, 0.0)?;
        for layer in 0..c.num_layers {
            let b = format!("{model}.encoder.layer.{layer}");
            w.norm(&format!("{b}.layernorm_before"), e)?;
            for which in ["query", "key", "value"] {
                w.linear(
                    &format!("{b}.attention.attention.{which}"),
                    e,
                    e,
                    c.qkv_bias,
                )?;
            }
            w.linear(&format!("{b}.attention.output.dense"), e, e, true)?;
            w.norm(&format!("{b}.layernorm_after"), e)?;
            w.linear(
                &format!("{b}.intermediate.dense"),
                e,
                c.intermediate_size,
                true,
            )?;
            w.linear(&format!("{b}.output.dense"), c.intermediate_size, e, true)?;
        }
        w.norm(&format!("{model}.layernorm"), e)?;
        let labels = c.labels.len();
        if prefix == 2 {
            w.linear("cls_classifier", e, labels, true)?;
            w.linear("distillation_classifier", e, labels, true)?;
        } else {
            w.linear("classifier", e, labels, true)?;
        }
        Self::from_tensors(w.tensors, Path::new("<random weights>"))
    }
}
