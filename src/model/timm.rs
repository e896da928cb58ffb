//! timm's checkpoints: its tensor names brought to Hugging Face's, and the architecture, which
//! timm's `config.json` names but does not spell out, read off the weights.

use candle_core::Tensor;
use serde_json::Value;

use super::checkpoint::Checkpoint;
use super::config::Config;
use super::vit::{Family, ViTConfig};
use super::Architecture;
use crate::error::{Error, Result};
use crate::preprocess::{Filter, Preprocessor};

mod v2;

/// A fused `[3·C, …]` q|k|v tensor as three Hugging Face tensors, `named(which)` naming each
/// of "query", "key" and "value".
fn split_qkv(
    name: &str,
    tensor: &Tensor,
    named: impl Fn(&str) -> String,
) -> Result<Vec<(String, Tensor)>> {
    let rows = tensor.dim(0)?;
    if rows % 3 != 0 {
        return Err(Error::Model(format!(
            "tensor `{name}` has {rows} rows, not a fused q|k|v (a multiple of 3)"
        )));
    }
    let third = rows / 3;
    ["query", "key", "value"]
        .iter()
        .enumerate()
        .map(|(i, which)| Ok((named(which), tensor.narrow(0, i * third, third)?)))
        .collect()
}

/// Renames one tensor of a timm Swin (`model` "swin" for `SwinTransformer`, "swinv2" for
/// `SwinTransformerV2`: the Hugging Face backbone prefix) to its Hugging Face name(s); the
/// fused q|k|v splits into three. V2's separate query and value biases become the query's and
/// the value's (its key has no bias in either library).
pub(super) fn swin_to_hf(
    name: &str,
    tensor: Tensor,
    old_layout: bool,
    model: &str,
) -> Result<Vec<(String, Tensor)>> {
    let e = format!("{model}.encoder.layers");
    let simple = |n: String| Ok(vec![(n, tensor.clone())]);
    if let Some(rest) = name.strip_prefix("patch_embed.proj.") {
        return simple(format!(
            "{model}.embeddings.patch_embeddings.projection.{rest}"
        ));
    }
    if let Some(rest) = name.strip_prefix("patch_embed.norm.") {
        return simple(format!("{model}.embeddings.norm.{rest}"));
    }
    if name == "absolute_pos_embed" {
        return simple(format!("{model}.embeddings.position_embeddings"));
    }
    if let Some(rest) = name.strip_prefix("norm.") {
        return simple(format!("{model}.layernorm.{rest}"));
    }
    if let Some(rest) = name
        .strip_prefix("head.fc.")
        .or_else(|| name.strip_prefix("head."))
    {
        return simple(format!("classifier.{rest}"));
    }
    let Some(rest) = name.strip_prefix("layers.") else {
        return Ok(vec![]);
    };
    let Some((stage, rest)) = rest.split_once('.') else {
        return Ok(vec![]);
    };
    let Ok(stage) = stage.parse::<usize>() else {
        return Ok(vec![]);
    };
    if let Some(rest) = rest.strip_prefix("downsample.") {
        // timm ≥ 0.9 merges at the start of stages 1..; HF (and old timm) at the end of 0..
        let owner = if old_layout {
            stage
        } else {
            stage.saturating_sub(1)
        };
        return simple(format!("{e}.{owner}.downsample.{rest}"));
    }
    let Some(rest) = rest.strip_prefix("blocks.") else {
        return Ok(vec![]);
    };
    let Some((block, part)) = rest.split_once('.') else {
        return Ok(vec![]);
    };
    let prefix = format!("{e}.{stage}.blocks.{block}");
    let s = format!("{prefix}.attention.self");
    let renamed = match part {
        p if p.starts_with("norm1.") => format!("{prefix}.layernorm_before.{}", &p[6..]),
        p if p.starts_with("norm2.") => format!("{prefix}.layernorm_after.{}", &p[6..]),
        p if p.starts_with("attn.proj.") => format!("{prefix}.attention.output.dense.{}", &p[10..]),
        p if p.starts_with("mlp.fc1.") => format!("{prefix}.intermediate.dense.{}", &p[8..]),
        p if p.starts_with("mlp.fc2.") => format!("{prefix}.output.dense.{}", &p[8..]),
        "attn.relative_position_bias_table" => format!("{s}.relative_position_bias_table"),
        "attn.q_bias" => format!("{s}.query.bias"),
        "attn.v_bias" => format!("{s}.value.bias"),
        "attn.logit_scale" => format!("{s}.logit_scale"),
        p if p.starts_with("attn.cpb_mlp.") => {
            format!("{s}.continuous_position_bias_mlp.{}", &p[13..])
        }
        p if p.starts_with("attn.qkv.") => {
            return split_qkv(name, &tensor, |which| {
                format!("{prefix}.attention.self.{which}.{}", &p[9..])
            });
        }
        _ => return Ok(vec![]),
    };
    simple(renamed)
}

/// The error for a tensor the architecture is read off and the checkpoint lacks.
fn missing(ck: &Checkpoint, what: &str) -> Error {
    Error::Model(format!(
        "{}: cannot infer the architecture, tensor `{what}` is missing",
        ck.file().display()
    ))
}

/// Width, input channels and patch side from the patch embedding of backbone `model`
/// ("swin", "vit", "deit"): its `[width, channels, patch, patch]` convolution.
fn projection(ck: &Checkpoint, model: &str) -> Result<[usize; 3]> {
    let proj = format!("{model}.embeddings.patch_embeddings.projection.weight");
    match ck.shape(&proj) {
        Some(&[width, channels, patch, _]) => Ok([width, channels, patch]),
        Some(_) => Err(Error::Model(format!(
            "tensor `{proj}` is not 4-dimensional"
        ))),
        None => Err(missing(ck, &proj)),
    }
}

/// A timm Swin: depths, heads and window read off the weights.
fn swin_config(json: &Value, ck: &Checkpoint) -> Result<(Config, Preprocessor)> {
    let missing = |what: &str| missing(ck, what);
    let [embed_dim, num_channels, patch_size] = projection(ck, "swin")?;
    let depths: Vec<usize> = (0..)
        .map(|s| ck.blocks_in_stage("swin", s))
        .take_while(|&d| d > 0)
        .collect();
    let table = |s: usize| {
        format!("swin.encoder.layers.{s}.blocks.0.attention.self.relative_position_bias_table")
    };
    let num_heads = (0..depths.len())
        .map(|s| {
            ck.shape(&table(s))
                .and_then(|t| t.get(1).copied())
                .ok_or_else(|| missing(&table(s)))
        })
        .collect::<Result<Vec<_>>>()?;
    let rows = ck
        .shape(&table(0))
        .and_then(<[usize]>::first)
        .map_or(1, |&r| r);
    let window_size = ((rows as f64).sqrt().round() as usize).div_ceil(2);
    let fc1 = "swin.encoder.layers.0.blocks.0.intermediate.dense.weight";
    let hidden = *ck
        .shape(fc1)
        .and_then(<[usize]>::first)
        .ok_or_else(|| missing(fc1))?;
    // A headless timm model (num_classes=0) has no head: no classes.
    let classes = ck
        .shape("classifier.weight")
        .and_then(<[usize]>::first)
        .map_or(0, |&c| c);
    let cfg = json.get("pretrained_cfg").unwrap_or(json);
    let image_size = input_size(cfg).unwrap_or((224, 224));
    let labels = labels(json, classes);
    let config = Config {
        version: super::config::Version::V1,
        pretrained_window_sizes: Vec::new(),
        image_size,
        patch_size,
        num_channels,
        embed_dim,
        mlp_ratio: hidden as f64 / embed_dim as f64,
        qkv_bias: ck.contains("swin.encoder.layers.0.blocks.0.attention.self.query.bias"),
        hidden_act: candle_nn::Activation::Gelu,
        use_absolute_embeddings: ck.contains("swin.embeddings.position_embeddings"),
        layer_norm_eps: 1e-5,
        depths,
        num_heads,
        window_size,
        labels,
        // timm rolls a shifted grid before padding it.
        implementation: super::config::Implementation::Timm,
    };
    config.validate()?;
    let pre = preprocessor(cfg, image_size);
    Ok((config, pre))
}

/// Refuses, in one line naming the feature, the timm ViTs whose computation differs from the
/// transformers ViT this project runs.
pub(super) fn check_vit_supported<'a>(
    mut names: impl Iterator<Item = &'a str>,
    file: &std::path::Path,
) -> Result<()> {
    const UNSUPPORTED: [(&str, &str); 4] = [
        (
            "fc_norm.",
            "average pooling of the patch tokens (global_pool='avg')",
        ),
        (".ls1.", "layer scale (DeiT III and others)"),
        ("reg_token", "register tokens"),
        (".attn.q_norm.", "query/key normalization"),
    ];
    match names.find_map(|n| UNSUPPORTED.iter().find(|(key, _)| n.contains(key))) {
        Some((_, feature)) => Err(Error::Model(format!(
            "{} is a timm ViT with {feature}, which swin-rollout does not run; ViTs that \
             classify from the CLS token (vit_*_patch*, deit_*) load",
            file.display()
        ))),
        None => Ok(()),
    }
}

/// Renames one tensor of a timm ViT or DeiT (`model` "vit" or "deit", the backbone prefix) to
/// its Hugging Face name(s); the fused q|k|v splits into three, as in
/// `ViTForImageClassification` / `DeiTForImageClassificationWithTeacher`.
pub(super) fn vit_to_hf(name: &str, tensor: Tensor, model: &str) -> Result<Vec<(String, Tensor)>> {
    let e = format!("{model}.embeddings");
    let renamed = match name {
        "cls_token" => format!("{e}.cls_token"),
        "dist_token" => format!("{e}.distillation_token"),
        "pos_embed" => format!("{e}.position_embeddings"),
        n if n.starts_with("patch_embed.proj.") => {
            format!("{e}.patch_embeddings.projection.{}", &n[17..])
        }
        n if n.starts_with("norm.") => format!("{model}.layernorm.{}", &n[5..]),
        n if n.starts_with("head_dist.") => format!("distillation_classifier.{}", &n[10..]),
        // A distilled DeiT's CLS head sits beside the distillation head.
        n if n.starts_with("head.") && model == "deit" => format!("cls_classifier.{}", &n[5..]),
        n if n.starts_with("head.") => format!("classifier.{}", &n[5..]),
        n => {
            let Some((block, part)) = n.strip_prefix("blocks.").and_then(|r| r.split_once('.'))
            else {
                return Ok(vec![]);
            };
            let b = format!("{model}.encoder.layer.{block}");
            if let Some(suffix) = part.strip_prefix("attn.qkv.") {
                return split_qkv(name, &tensor, |which| {
                    format!("{b}.attention.attention.{which}.{suffix}")
                });
            }
            let renames = [
                ("norm1.", "layernorm_before"),
                ("norm2.", "layernorm_after"),
                ("attn.proj.", "attention.output.dense"),
                ("mlp.fc1.", "intermediate.dense"),
                ("mlp.fc2.", "output.dense"),
            ];
            let Some((to, suffix)) = renames
                .iter()
                .find_map(|(from, to)| part.strip_prefix(from).map(|s| (to, s)))
            else {
                return Ok(vec![]);
            };
            format!("{b}.{to}.{suffix}")
        }
    };
    Ok(vec![(renamed, tensor)])
}

/// The architecture and preprocessing of a timm checkpoint (renamed): a ViT or DeiT where it
/// has a CLS token, else a Swin V2 where its blocks have logit scales, else a Swin.
pub(super) fn config(json: &Value, ck: &Checkpoint) -> Result<(Architecture, Preprocessor)> {
    if ck.contains("vit.embeddings.cls_token") || ck.contains("deit.embeddings.cls_token") {
        let (config, pre) = vit_config(json, ck)?;
        return Ok((Architecture::ViT(config), pre));
    }
    let (config, pre) = if ck.contains("swinv2.embeddings.patch_embeddings.projection.weight") {
        v2::swinv2_config(json, ck)?
    } else {
        swin_config(json, ck)?
    };
    Ok((Architecture::Swin(config), pre))
}

/// A timm ViT or DeiT: widths and depth read off the weights, the heads from `model_args` or
/// the architecture's name (timm's ViTs have 64 channels a head, but for huge and giant).
fn vit_config(json: &Value, ck: &Checkpoint) -> Result<(ViTConfig, Preprocessor)> {
    let family = if ck.contains("deit.embeddings.distillation_token") {
        Family::DeiT
    } else {
        Family::ViT
    };
    let m = family.model_type();
    let missing = |what: &str| missing(ck, what);
    let [hidden, num_channels, patch_size] = projection(ck, m)?;
    let layer = |i: usize| format!("{m}.encoder.layer.{i}");
    let num_layers = (0..)
        .take_while(|&i| ck.contains(&format!("{}.layernorm_before.weight", layer(i))))
        .count();
    let fc1 = format!("{}.intermediate.dense.weight", layer(0));
    let intermediate_size = *ck
        .shape(&fc1)
        .and_then(<[usize]>::first)
        .ok_or_else(|| missing(&fc1))?;
    let args = json.get("model_args");
    let arg = |key: &str| args.and_then(|a| a.get(key)).and_then(Value::as_u64);
    let architecture = json
        .get("architecture")
        .and_then(Value::as_str)
        .unwrap_or("");
    let num_heads = match arg("num_heads") {
        Some(h) => h as usize,
        None => heads_of(architecture, hidden).ok_or_else(|| {
            Error::Model(format!(
                "{}: cannot tell the heads of `{architecture}` ({hidden} channels); add \
                 \"model_args\": {{\"num_heads\": N}} to its config.json",
                ck.file().display()
            ))
        })?,
    };
    let head = match family {
        Family::DeiT => "cls_classifier.weight",
        Family::ViT => "classifier.weight",
    };
    // A headless timm model (num_classes=0) has no head: no classes.
    let classes = ck.shape(head).and_then(<[usize]>::first).map_or(0, |&c| c);
    let cfg = json.get("pretrained_cfg").unwrap_or(json);
    let image_size = input_size(cfg)
        .or_else(|| arg("img_size").map(|s| (s as usize, s as usize)))
        .unwrap_or((224, 224));
    let config = ViTConfig {
        family,
        image_size,
        patch_size,
        num_channels,
        hidden_size: hidden,
        num_layers,
        num_heads,
        intermediate_size,
        qkv_bias: ck.contains(&format!("{}.attention.attention.query.bias", layer(0))),
        hidden_act: candle_nn::Activation::Gelu,
        layer_norm_eps: 1e-6,
        labels: labels(json, classes),
    };
    config.validate()?;
    Ok((config, preprocessor(cfg, image_size)))
}

/// The heads of a timm ViT by its name: 64 channels a head, but for the huge and giant ones.
fn heads_of(architecture: &str, hidden: usize) -> Option<usize> {
    let size = architecture.split('_').nth(1).unwrap_or("");
    match size {
        "huge" | "giant" | "gigantic" => Some(16),
        _ => (hidden > 0 && hidden.is_multiple_of(64)).then_some(hidden / 64),
    }
}

/// `pretrained_cfg.input_size` `[C, H, W]` as (H, W).
fn input_size(cfg: &Value) -> Option<(usize, usize)> {
    let a = cfg.get("input_size")?.as_array()?;
    Some((a.get(1)?.as_u64()? as usize, a.get(2)?.as_u64()? as usize))
}

/// Class names from `label_names` when it has one a class, else `LABEL_i`.
fn labels(json: &Value, classes: usize) -> Vec<String> {
    json.get("label_names")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|v| v.as_str().unwrap_or("").to_string())
                .collect::<Vec<_>>()
        })
        .filter(|l| l.len() == classes)
        .unwrap_or_else(|| (0..classes).map(|i| format!("LABEL_{i}")).collect())
}

/// The preprocessing `pretrained_cfg` describes (timm's eval transform: resize by `crop_pct`,
/// centre crop, its interpolation, mean and std).
fn preprocessor(cfg: &Value, image_size: (usize, usize)) -> Preprocessor {
    let floats = |key: &str| -> Option<[f32; 3]> {
        let a = cfg.get(key)?.as_array()?;
        let v: Vec<f32> = a
            .iter()
            .filter_map(|x| x.as_f64().map(|f| f as f32))
            .collect();
        (v.len() == 3).then(|| [v[0], v[1], v[2]])
    };
    let mut pre = Preprocessor::imagenet(image_size);
    pre.mean = floats("mean").unwrap_or(pre.mean);
    pre.std = floats("std").unwrap_or(pre.std);
    pre.crop_pct = Some(cfg.get("crop_pct").and_then(Value::as_f64).unwrap_or(0.9));
    pre.filter = match cfg.get("interpolation").and_then(Value::as_str) {
        Some("bilinear") => Filter::Bilinear,
        Some("nearest") => Filter::Nearest,
        Some("lanczos") => Filter::Lanczos,
        _ => Filter::Bicubic,
    };
    pre
}

#[cfg(test)]
mod tests {
    use super::heads_of;

    #[test]
    fn heads_follow_timm_s_architectures() {
        assert_eq!(heads_of("vit_tiny_patch16_224", 192), Some(3));
        assert_eq!(heads_of("deit_small_distilled_patch16_224", 384), Some(6));
        assert_eq!(heads_of("vit_base_patch16_224", 768), Some(12));
        assert_eq!(heads_of("vit_large_patch16_224", 1024), Some(16));
        assert_eq!(heads_of("vit_huge_patch14_224", 1280), Some(16));
        assert_eq!(heads_of("vit_custom", 100), None);
    }
}
