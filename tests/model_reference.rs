//! The model against Hugging Face `transformers` on the fixtures made by
//! `tests/fixtures/make_fixtures.py`, `make_swinv2.py` and `make_vit.py`: logits, every block's attention and
//! geometry (Swin V1 and V2), the same weights under timm's names, and preprocessing of a real
//! photo.

use std::path::Path;

use candle_core::{Device, Tensor};
use swin_rollout::model::{Model, ModelSource};
use swin_rollout::preprocess::Preprocessor;

mod common;

use common::{fixture_path as fixture, reference};

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Runs `model_dir` on the reference input of `reference_dir` and compares everything.
fn check(model_dir: &str, reference_dir: &str) {
    let model = Model::load(&ModelSource::Folder(fixture(model_dir))).expect("model loads");
    let r = reference(reference_dir);
    let pixels = &r["pixel_values"];
    let (logits, blocks) = model.network.trace(pixels).expect("forward");

    // A headless backbone's reference has no logits, and the model gives none.
    match r.get("logits") {
        Some(want) => {
            let want = want.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
            let diff = max_abs_diff(&logits, &want);
            assert!(
                diff <= 1e-4 * scale,
                "{model_dir}: logits differ by {diff} (scale {scale})"
            );
        }
        None => assert!(logits.is_empty(), "{model_dir}: a headless model's logits"),
    }

    // Swin V2 fixtures hold transformers' float64 result and, per block, how close a float32
    // forward can be (see make_swinv2.py); V1 fixtures hold float32 results to 1e-5.
    let tolerance = r
        .get("attn_tolerance")
        .map_or_else(|| vec![1e-5; blocks.len()], |t| t.to_vec1::<f32>().unwrap());
    let geometry = r["geometry"].to_vec2::<i64>().unwrap();
    assert_eq!(
        blocks.len(),
        geometry.len(),
        "{model_dir}: number of blocks"
    );
    for (k, (block, g)) in blocks.iter().zip(&geometry).enumerate() {
        let b = &block.geometry;
        let ours = swin_rollout::export::geometry_row(b);
        assert_eq!(&ours[..], &g[..], "{model_dir}: geometry of block {k}");
        let want = &r[&format!("attn_{k:02}")];
        assert_eq!(
            [b.windows(), block.heads, b.window_area(), b.window_area()],
            want.dims(),
            "{model_dir}: attention shape of block {k}"
        );
        let want = want.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let diff = max_abs_diff(&block.attention, &want);
        assert!(
            diff <= tolerance[k],
            "{model_dir}: block {k} attention differs by {diff} (tolerance {})",
            tolerance[k]
        );
    }
}

#[test]
fn swin224_matches_transformers() {
    check("swin224", "swin224");
}

#[test]
fn padded_and_clamped_model_from_pytorch_bin_matches_transformers() {
    check("swin_pad", "swin_pad");
}

#[test]
fn swin_v2_matches_transformers() {
    check("swinv2_112", "swinv2_112");
}

#[test]
fn swin_v2_with_padding_clamped_windows_and_pretrained_sizes_matches_transformers() {
    check("swinv2_pad", "swinv2_pad");
    let model = Model::load(&ModelSource::Folder(fixture("swinv2_pad"))).unwrap();
    assert_eq!(
        model.network.swin_config().unwrap().version,
        swin_rollout::model::Version::V2
    );
}

#[test]
fn headless_backbones_saved_by_transformers_load_and_match() {
    for dir in ["swin_headless", "swinv2_headless"] {
        check(dir, dir);
        let model = Model::load(&ModelSource::Folder(fixture(dir))).unwrap();
        assert!(!model.has_classifier(), "{dir}");
        let pixels = reference(dir)["pixel_values"]
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let err = model
            .trace_pixels_with_gradients(pixels, None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("has no classifier") && err.contains("--explain rollout"),
            "{err}"
        );
        let err = model.class_index("0").unwrap_err().to_string();
        assert!(err.contains("has no classifier"), "{err}");
    }
}

#[test]
fn a_timm_checkpoint_without_its_head_is_a_headless_backbone() {
    let dir = tempfile::tempdir().unwrap();
    let src = fixture("swin224_timm");
    for entry in std::fs::read_dir(&src).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name() != "model.safetensors" {
            std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
        }
    }
    let mut tensors =
        candle_core::safetensors::load(src.join("model.safetensors"), &Device::Cpu).unwrap();
    tensors.retain(|name, _| !name.starts_with("head."));
    candle_core::safetensors::save(&tensors, dir.path().join("model.safetensors")).unwrap();
    let headless = Model::load(&ModelSource::Folder(dir.path().to_path_buf())).unwrap();
    let full = Model::load(&ModelSource::Folder(src)).unwrap();
    assert!(!headless.has_classifier() && full.has_classifier());
    let pixels = &reference("swin224")["pixel_values"];
    let (logits, blocks) = headless.network.trace(pixels).unwrap();
    let (_, want) = full.network.trace(pixels).unwrap();
    assert!(logits.is_empty());
    assert_eq!(blocks.len(), want.len());
    for (a, b) in blocks.iter().zip(&want) {
        assert_eq!(
            a.attention, b.attention,
            "the backbone is the same without its head"
        );
    }
}

#[test]
fn timm_named_weights_give_the_same_model() {
    check("swin224_timm", "swin224");
    let timm = Model::load(&ModelSource::Folder(fixture("swin224_timm"))).unwrap();
    let hf = Model::load(&ModelSource::Folder(fixture("swin224"))).unwrap();
    let (t, h) = (
        timm.network.swin_config().unwrap(),
        hf.network.swin_config().unwrap(),
    );
    assert_eq!(t.depths, h.depths);
    assert_eq!(t.num_heads, h.num_heads);
    assert_eq!(t.window_size, h.window_size);
    assert_eq!(t.labels, h.labels);
}

/// A batch records each block's windows image by image, each image's exactly as alone.
#[test]
fn batched_forward_records_every_image_s_attention_in_order() {
    let model = Model::load(&ModelSource::Folder(fixture("swin_pad"))).unwrap();
    let r = reference("swin_pad");
    let first = r["pixel_values"].clone();
    let second = first.flip(&[3]).unwrap();
    let (_, alone_first) = model.network.trace(&first).unwrap();
    let (_, alone_second) = model.network.trace(&second).unwrap();
    let batch = Tensor::cat(&[&first, &second], 0).unwrap();
    let out = model.network.forward(&batch, true).unwrap();
    assert_eq!(out.attentions.len(), alone_first.len());
    for ((both, a), b) in out.attentions.iter().zip(&alone_first).zip(&alone_second) {
        assert_eq!(both.geometry, a.geometry);
        assert_eq!(both.heads, a.heads);
        let half = a.attention.len();
        assert_eq!(both.attention.len(), 2 * half);
        assert!(max_abs_diff(&both.attention[..half], &a.attention) <= 1e-5);
        assert!(max_abs_diff(&both.attention[half..], &b.attention) <= 1e-5);
    }
    assert!(
        max_abs_diff(&alone_first[0].attention, &alone_second[0].attention) > 1e-3,
        "the two images must differ for the order to be tested"
    );
}

#[test]
fn preprocessing_matches_the_reference_processor() {
    let text = std::fs::read_to_string(fixture("preprocess/preprocessor_config.json")).unwrap();
    let pre = Preprocessor::from_hf_json(&text, (224, 224)).unwrap();
    let ours = pre
        .load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/chelsea.png"))
        .unwrap();
    let want = candle_core::safetensors::load(
        fixture("preprocess/chelsea_swin_tiny.safetensors"),
        &Device::Cpu,
    )
    .unwrap();
    let want = want["pixel_values"]
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let diff = max_abs_diff(&ours, &want);
    // Pillow's 8-bit resampling is reproduced exactly; what remains is float rounding.
    assert!(diff <= 1e-5, "preprocessing differs by {diff}");
}

#[test]
fn embedded_model_is_the_shipped_checkpoint_with_swin_tiny_geometry() {
    let embedded = Model::load(&ModelSource::Embedded).expect("embedded model loads");
    let folder = Model::load(&ModelSource::Folder(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/model"),
    ))
    .unwrap();
    let c = embedded.network.swin_config().unwrap();
    assert_eq!(
        (c.image_size, c.patch_size, c.window_size),
        ((224, 224), 4, 7)
    );
    let grids: Vec<_> = c.geometries(224, 224).iter().map(|g| g.height).collect();
    assert_eq!(grids.first(), Some(&56));
    assert_eq!(grids.last(), Some(&7));
    assert_eq!(c.labels.len(), 10);
    assert_eq!(c.labels[9], "Ankle boot");
    let image = swin_rollout::demo::demo_image().unwrap();
    let a = embedded.trace_rgb(&image).unwrap();
    let b = folder.trace_rgb(&image).unwrap();
    assert_eq!(a.logits, b.logits);
}

#[test]
fn embedded_model_classifies_the_committed_demo_scenes() {
    let model = Model::load(&ModelSource::Embedded).expect("embedded model loads");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/scenes");
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("scenes.json")).unwrap()).unwrap();
    let scenes = index["scenes"].as_array().unwrap();
    assert!(scenes.len() >= 4);
    for scene in scenes {
        let file = scene["file"].as_str().unwrap();
        let label = scene["label"].as_u64().unwrap() as usize;
        let image = image::open(dir.join(file)).unwrap().to_rgb8();
        let trace = model.trace_rgb(&image).unwrap();
        let best = trace
            .logits
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(i, _)| i)
            .unwrap();
        assert_eq!(model.labels()[best], model.labels()[label], "{file}");
    }
}

#[test]
fn vit_matches_transformers() {
    check("vit_small", "vit_small");
    let model = Model::load(&ModelSource::Folder(fixture("vit_small"))).unwrap();
    assert_eq!(model.network.architecture(), "ViT");
    assert_eq!(model.labels().len(), 5);
}

#[test]
fn distilled_deit_with_teacher_and_cls_head_match_transformers() {
    check("deit_teacher", "deit_teacher");
    check("deit_cls", "deit_cls");
    let model = Model::load(&ModelSource::Folder(fixture("deit_teacher"))).unwrap();
    let (_, blocks) = model
        .network
        .trace(&reference("deit_teacher")["pixel_values"])
        .unwrap();
    // CLS and distillation tokens, then the 4×4 patches.
    assert_eq!(
        (blocks[0].geometry.prefix, blocks[0].geometry.tokens()),
        (2, 18)
    );
}

/// timm's `VisionTransformer` and `VisionTransformerDistilled` with the Hugging Face fixtures'
/// weights, as `save_for_hf` writes them (`make_vit_timm.py`): the same numbers, the
/// architecture read off the weights and `model_args`, the labels from `label_names`.
#[test]
fn timm_vit_and_distilled_deit_give_the_same_models() {
    for (timm, hf, family) in [
        ("vit_small_timm", "vit_small", "ViT"),
        ("deit_teacher_timm", "deit_teacher", "DeiT"),
    ] {
        check(timm, hf);
        let t = Model::load(&ModelSource::Folder(fixture(timm))).unwrap();
        let h = Model::load(&ModelSource::Folder(fixture(hf))).unwrap();
        assert_eq!(t.network.architecture(), family);
        assert_eq!(t.labels(), h.labels());
        // timm's eval transform: bicubic, crop_pct 0.9, mean and std 0.5 as its config says.
        assert_eq!(t.preprocessor.crop_pct, Some(0.9));
        assert_eq!(t.preprocessor.mean, [0.5; 3]);
    }
}

/// A timm ViT whose head differs from the CLS token's (average pooling) is one line naming
/// the feature, not wrong numbers.
#[test]
fn a_timm_vit_with_average_pooling_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let src = fixture("vit_small_timm");
    std::fs::copy(src.join("config.json"), dir.path().join("config.json")).unwrap();
    let mut tensors =
        candle_core::safetensors::load(src.join("model.safetensors"), &Device::Cpu).unwrap();
    let norm = tensors["norm.weight"].clone();
    tensors.insert("fc_norm.weight".into(), norm);
    candle_core::safetensors::save(&tensors, dir.path().join("model.safetensors")).unwrap();
    let err = Model::load(&ModelSource::Folder(dir.path().to_path_buf()))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("average pooling") && err.contains("CLS token") && !err.contains('\n'),
        "{err}"
    );
}

/// A timm checkpoint whose tensors have the wrong rank is an error naming a tensor, never a
/// panic.
#[test]
fn a_timm_vit_with_a_scalar_where_a_matrix_belongs_is_an_error() {
    for name in ["blocks.0.mlp.fc1.weight", "head.weight"] {
        let dir = tempfile::tempdir().unwrap();
        let src = fixture("vit_small_timm");
        std::fs::copy(src.join("config.json"), dir.path().join("config.json")).unwrap();
        let mut tensors =
            candle_core::safetensors::load(src.join("model.safetensors"), &Device::Cpu).unwrap();
        tensors.insert(name.into(), Tensor::new(1f32, &Device::Cpu).unwrap());
        candle_core::safetensors::save(&tensors, dir.path().join("model.safetensors")).unwrap();
        let err = Model::load(&ModelSource::Folder(dir.path().to_path_buf()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("tensor `"), "{name}: {err}");
    }
}

#[test]
fn headless_vit_has_no_classifier() {
    check("vit_headless", "vit_headless");
    let model = Model::load(&ModelSource::Folder(fixture("vit_headless"))).unwrap();
    assert!(!model.has_classifier());
}

#[test]
fn deit_preprocessing_resizes_then_centre_crops_as_transformers() {
    // DeiT's processors resize to `size` and crop `crop_size` (256 → 224 in the checkpoints).
    for (case, size) in [("square", (32, 32)), ("wide", (32, 36))] {
        let dir = fixture(&format!("preprocess_deit/{case}"));
        let text = std::fs::read_to_string(dir.join("preprocessor_config.json")).unwrap();
        let p = Preprocessor::from_hf_json(&text, (224, 224)).unwrap();
        assert_eq!(p.size, size, "{case}: the model's input is the crop");
        let got = p.load(&fixture("../../assets/chelsea.png")).unwrap();
        let want = candle_core::safetensors::load(dir.join("chelsea.safetensors"), &Device::Cpu)
            .unwrap()["pixel_values"]
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(got.len(), want.len());
        let diff = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(diff < 1e-5, "{case}: pixel_values differ by {diff}");
    }
    let too_big = r#"{"size": {"height": 20, "width": 20}, "do_center_crop": true,
                      "crop_size": {"height": 24, "width": 24}}"#;
    let err = Preprocessor::from_hf_json(too_big, (224, 224))
        .unwrap_err()
        .to_string();
    assert!(err.contains("crop_size") && err.contains("24×24"), "{err}");
}

#[test]
fn random_vit_and_deit_checkpoints_load_as_their_architecture() {
    use swin_rollout::model::{Checkpoint, Family, Network, ViTConfig};
    for family in [Family::ViT, Family::DeiT] {
        let config = ViTConfig {
            family,
            image_size: (32, 32),
            patch_size: 8,
            hidden_size: 16,
            num_layers: 2,
            num_heads: 2,
            intermediate_size: 32,
            ..ViTConfig::vit_base(3)
        };
        let ck = Checkpoint::random_vit(&config, 3).unwrap();
        let network = Network::load(&ck, config).unwrap();
        let pixels = Tensor::randn(0f32, 1.0, (1, 3, 32, 32), &Device::Cpu).unwrap();
        let (logits, blocks) = network.trace(&pixels).unwrap();
        let prefix = family.prefix_tokens();
        assert_eq!(blocks.len(), 2, "{family:?}");
        assert_eq!(blocks[1].geometry.tokens(), prefix + 16, "{family:?}");
        assert_eq!(logits.len(), 3, "{family:?}");
        assert!(logits.iter().all(|v| v.is_finite()), "{family:?}");
    }
}
