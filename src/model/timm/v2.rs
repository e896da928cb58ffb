//! timm's Swin V2 (`timm.models.swin_transformer_v2.SwinTransformerV2`, `swinv2_*`): the
//! architecture read off the weights, and what they do not hold — the window and the windows
//! the model was pretrained with, whose coordinate tables timm does not save — from the
//! config's `model_args` or, as timm's registered architectures fix them, from the
//! architecture's name.

use serde_json::Value;

use super::super::checkpoint::Checkpoint;
use super::super::config::{parse_activation, Config, Implementation, Version};
use super::{input_size, labels, missing, preprocessor, projection};
use crate::error::{Error, Result};
use crate::preprocess::Preprocessor;

/// What an architecture name such as `swinv2_base_window12to16_192to256` says: the window (16),
/// the window it was pretrained with (12) and the pretraining image side (192), and the image
/// side (256).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct NamedSizes {
    pub(super) window: Option<usize>,
    pub(super) pretrained_window: Option<usize>,
    pub(super) pretrained_image: Option<usize>,
    pub(super) image: Option<usize>,
}

/// Reads the window (`window8`, `window12to16`) and image (`256`, `192to256`) parts of a timm
/// Swin V2 name.
pub(super) fn named_sizes(architecture: &str) -> NamedSizes {
    let pair = |text: &str| -> Option<(Option<usize>, usize)> {
        match text.split_once("to") {
            Some((from, to)) => Some((Some(from.parse().ok()?), to.parse().ok()?)),
            None => Some((None, text.parse().ok()?)),
        }
    };
    let mut sizes = NamedSizes::default();
    for part in architecture.split('_') {
        if let Some(window) = part.strip_prefix("window") {
            if let Some((from, to)) = pair(window) {
                sizes.window = Some(to);
                sizes.pretrained_window = from;
            }
        } else if let Some((from, to)) = pair(part) {
            sizes.image = Some(to);
            sizes.pretrained_image = from;
        }
    }
    sizes
}

/// One size of `model_args`: an int, or an `[h, w]` pair, which must be square.
fn square(value: &Value, key: &str, file: &std::path::Path) -> Result<usize> {
    let not_square = || {
        Error::Model(format!(
            "{}: `model_args.{key}` in its config.json is {value}; swin-rollout runs square \
             windows and images (an int, or [n, n])",
            file.display()
        ))
    };
    match value {
        Value::Number(n) => n.as_u64().map(|n| n as usize).ok_or_else(not_square),
        Value::Array(a) => match a.as_slice() {
            [h, w] if h == w && h.is_u64() => Ok(h.as_u64().map_or(0, |h| h as usize)),
            _ => Err(not_square()),
        },
        _ => Err(not_square()),
    }
}

/// `model_args.img_size`: an int, or `[h, w]`.
fn image_arg(value: &Value, file: &std::path::Path) -> Result<(usize, usize)> {
    let side = |v: &Value| v.as_u64().map(|n| n as usize);
    let pair = match value.as_array().map(Vec::as_slice) {
        Some([h, w]) => side(h).zip(side(w)),
        Some(_) => None,
        None => side(value).map(|s| (s, s)),
    };
    pair.ok_or_else(|| {
        Error::Model(format!(
            "{}: `model_args.img_size` in its config.json is {value}; it must be an int or \
             [height, width]",
            file.display()
        ))
    })
}

/// `model_args.window_size`: one window for every stage (an int or `[h, w]`), or one per stage,
/// which must all be equal here.
fn window_arg(value: &Value, stages: usize, file: &std::path::Path) -> Result<usize> {
    // As timm's `resolve_stage_window_sizes`: two ints are one (h, w) for every stage.
    let per_stage = value.as_array().filter(|a| a.len() != 2 || a[0].is_array());
    let Some(windows) = per_stage else {
        return square(value, "window_size", file);
    };
    if windows.len() != stages {
        return Err(Error::Model(format!(
            "{}: `model_args.window_size` in its config.json is {value}: {} windows for {stages} \
             stages",
            file.display(),
            windows.len()
        )));
    }
    let windows = windows
        .iter()
        .map(|w| square(w, "window_size", file))
        .collect::<Result<Vec<_>>>()?;
    match windows.as_slice() {
        [first, rest @ ..] if rest.iter().all(|w| w == first) => Ok(*first),
        _ => Err(Error::Model(format!(
            "{}: `model_args.window_size` in its config.json is {value}, a different window per \
             stage, which swin-rollout does not run",
            file.display()
        ))),
    }
}

/// A timm Swin V2: depths, widths and heads read off the weights; window, pretrained windows
/// and image size from `model_args`, `pretrained_cfg` or the architecture's name.
pub(super) fn swinv2_config(json: &Value, ck: &Checkpoint) -> Result<(Config, Preprocessor)> {
    let file = ck.file();
    let [embed_dim, num_channels, patch_size] = projection(ck, "swinv2")?;
    let depths: Vec<usize> = (0..)
        .map(|s| ck.blocks_in_stage("swinv2", s))
        .take_while(|&d| d > 0)
        .collect();
    let scale = |s: usize| format!("swinv2.encoder.layers.{s}.blocks.0.attention.self.logit_scale");
    let num_heads = (0..depths.len())
        .map(|s| match ck.shape(&scale(s)) {
            Some(&[heads, 1, 1]) => Ok(heads),
            Some(shape) => Err(Error::Model(format!(
                "{}: tensor `layers.{s}.blocks.0.attn.logit_scale` has shape {shape:?}, not \
                 [heads, 1, 1]",
                file.display()
            ))),
            None => Err(missing(ck, &scale(s))),
        })
        .collect::<Result<Vec<_>>>()?;
    let fc1 = "swinv2.encoder.layers.0.blocks.0.intermediate.dense.weight";
    let hidden = *ck
        .shape(fc1)
        .and_then(<[usize]>::first)
        .ok_or_else(|| missing(ck, fc1))?;
    let classes = ck
        .shape("classifier.weight")
        .and_then(<[usize]>::first)
        .map_or(0, |&c| c);
    let architecture = json
        .get("architecture")
        .and_then(Value::as_str)
        .unwrap_or("");
    if architecture.starts_with("swinv2_cr") {
        return Err(Error::Model(format!(
            "{}: `{architecture}` is timm's SwinTransformerV2Cr, a different Swin V2 \
             implementation, which swin-rollout does not run; timm's swinv2_* \
             (SwinTransformerV2) and Hugging Face's Swinv2ForImageClassification load",
            file.display()
        )));
    }
    let named = named_sizes(architecture);
    let args = json.get("model_args");
    let arg = |key: &str| args.and_then(|a| a.get(key)).filter(|v| !v.is_null());
    check_supported(arg, classes, file)?;
    let cfg = json.get("pretrained_cfg").unwrap_or(json);
    let image_size = match arg("img_size") {
        Some(v) => image_arg(v, file)?,
        None => input_size(cfg)
            .or_else(|| named.image.map(|s| (s, s)))
            .ok_or_else(|| {
                Error::Model(format!(
                    "{}: cannot tell the image size of timm Swin V2 `{architecture}`; add \
                     \"model_args\": {{\"img_size\": N}} to its config.json",
                    file.display()
                ))
            })?,
    };
    let window_size = match arg("window_size") {
        Some(v) => window_arg(v, depths.len(), file)?,
        None => named.window.ok_or_else(|| {
            Error::Model(format!(
                "{}: cannot tell the window of timm Swin V2 `{architecture}` (timm does not save \
                 it); add \"model_args\": {{\"window_size\": N}} to its config.json, and \
                 \"pretrained_window_sizes\": [..] (one per stage) if it was fine-tuned from \
                 other windows",
                file.display()
            ))
        })?,
    };
    let pretrained_window_sizes = match arg("pretrained_window_sizes") {
        Some(v) => v
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|p| square(p, "pretrained_window_sizes", file))
                    .collect::<Result<Vec<_>>>()
            })
            .unwrap_or_else(|| square(v, "pretrained_window_sizes", file).map(|p| vec![p]))?,
        None => pretrained_windows(&named, patch_size, depths.len()),
    };
    // timm reads one per stage (and fails on fewer).
    if pretrained_window_sizes.len() < depths.len() {
        return Err(Error::Model(format!(
            "{}: `model_args.pretrained_window_sizes` in its config.json is {:?}, fewer than \
             the weights' {} stages",
            file.display(),
            pretrained_window_sizes,
            depths.len()
        )));
    }
    let hidden_act = match arg("act_layer").and_then(Value::as_str) {
        Some(name) => parse_activation(name)?,
        None => candle_nn::Activation::Gelu,
    };
    let config = Config {
        version: Version::V2,
        pretrained_window_sizes,
        image_size,
        patch_size,
        num_channels,
        embed_dim,
        mlp_ratio: hidden as f64 / embed_dim as f64,
        qkv_bias: ck.contains("swinv2.encoder.layers.0.blocks.0.attention.self.query.bias"),
        hidden_act,
        use_absolute_embeddings: false,
        layer_norm_eps: 1e-5,
        depths,
        num_heads,
        window_size,
        labels: labels(json, classes),
        implementation: Implementation::Timm,
    };
    config.validate()?;
    Ok((config, preprocessor(cfg, image_size)))
}

/// The pretrained windows a name such as `…_window12to16_192to256` implies: the pretraining
/// window, clamped per stage as timm clamps it to that stage's grid at the pretraining image
/// size (12, 12, 12, 6 for timm's published ones); none (all 0) without a `…to…` window.
fn pretrained_windows(named: &NamedSizes, patch: usize, stages: usize) -> Vec<usize> {
    let (Some(window), Some(image)) = (named.pretrained_window, named.pretrained_image) else {
        return vec![0; stages];
    };
    let mut grid = image / patch.max(1);
    (0..stages)
        .map(|stage| {
            if stage > 0 {
                grid = grid.div_ceil(2);
            }
            window.min(grid)
        })
        .collect()
}

/// Refuses, in one line naming the argument, the timm options that change what a block
/// computes and that swin-rollout does not follow.
fn check_supported<'a>(
    arg: impl Fn(&str) -> Option<&'a Value>,
    classes: usize,
    file: &std::path::Path,
) -> Result<()> {
    let refuse = |what: String| {
        Err(Error::Model(format!(
            "{}: {what} in its config.json's `model_args`, which swin-rollout does not run",
            file.display()
        )))
    };
    if arg("always_partition").and_then(Value::as_bool) == Some(true) {
        return refuse("`always_partition` is true (windows never clamped to the grid)".into());
    }
    match arg("global_pool").and_then(Value::as_str) {
        Some(pool) if classes > 0 && pool != "avg" => refuse(format!(
            "`global_pool` is \"{pool}\" (the head averages the tokens)"
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::{named_sizes, pretrained_windows, NamedSizes};

    #[test]
    fn names_give_windows_and_sizes() {
        let n = named_sizes("swinv2_base_window12to16_192to256");
        assert_eq!(
            n,
            NamedSizes {
                window: Some(16),
                pretrained_window: Some(12),
                pretrained_image: Some(192),
                image: Some(256),
            }
        );
        assert_eq!(pretrained_windows(&n, 4, 4), vec![12, 12, 12, 6]);
        let n = named_sizes("swinv2_tiny_window8_256");
        assert_eq!(
            (n.window, n.pretrained_window, n.image),
            (Some(8), None, Some(256))
        );
        assert_eq!(pretrained_windows(&n, 4, 4), vec![0; 4]);
        let n = named_sizes("swinv2_large_window12to24_192to384");
        assert_eq!((n.window, n.image), (Some(24), Some(384)));
        assert_eq!(named_sizes("swinv2_custom"), NamedSizes::default());
    }
}
