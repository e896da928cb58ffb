//! timm's Swins against timm itself, on the fixtures of `tests/fixtures/make_swinv2_timm.py`:
//! `SwinTransformerV2` checkpoints as `save_for_hf` writes them (window from `model_args` or
//! from the architecture's name), and a `SwinTransformer` whose shifted stages are padded.
//! Logits, every block's attention and geometry, and every block's index image, which timm
//! rolls before padding: against timm's own roll/pad/partition and against a grid materialized
//! here. Then an export of such a trace keeps that order when it is read back.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use swin_rollout::model::{Implementation, Model, ModelSource, Version};
use swin_rollout::{Geometry, RollOrder, Trace};

mod common;

use common::{fixture_path as fixture, reference};

fn load(dir: &Path) -> swin_rollout::Result<Model> {
    Model::load(&ModelSource::Folder(dir.to_path_buf()))
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// The index image of `g` from first principles: number the H×W grid's tokens, roll the grid
/// by −s (before any padding, as timm does), pad at the bottom and right, cut M×M windows.
fn rolled_then_padded(g: &Geometry) -> Vec<u32> {
    let (h, w, m, s) = (g.height, g.width, g.window, g.shift);
    let grid: Vec<Vec<u32>> = (0..h)
        .map(|y| (0..w).map(|x| (y * w + x) as u32).collect())
        .collect();
    let rolled: Vec<Vec<u32>> = (0..h)
        .map(|y| (0..w).map(|x| grid[(y + s) % h][(x + s) % w]).collect())
        .collect();
    let (hp, wp) = (h.div_ceil(m) * m, w.div_ceil(m) * m);
    let at = |y: usize, x: usize| {
        if y < h && x < w {
            rolled[y][x]
        } else {
            Geometry::PADDING
        }
    };
    let mut image = Vec::with_capacity(hp * wp);
    for wy in 0..hp / m {
        for wx in 0..wp / m {
            for r in 0..m {
                for c in 0..m {
                    image.push(at(wy * m + r, wx * m + c));
                }
            }
        }
    }
    image
}

/// Runs the fixture and compares logits (1e-4 relative), geometry, index images (timm's own
/// and the materialized one) and every block's attention (1e-5). Returns the largest errors.
fn check(dir: &str) -> (f32, f32) {
    let model = load(&fixture(dir)).expect("model loads");
    let r = reference(dir);
    let (logits, blocks) = model.network.trace(&r["pixel_values"]).expect("forward");
    let want = r["logits"].flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    let logit_error = max_abs_diff(&logits, &want);
    assert!(
        logit_error <= 1e-4 * scale,
        "{dir}: logits differ by {logit_error} (scale {scale})"
    );
    let geometry = r["geometry"].to_vec2::<i64>().unwrap();
    assert_eq!(blocks.len(), geometry.len(), "{dir}: number of blocks");
    let mut attention_error = 0f32;
    for (k, (block, row)) in blocks.iter().zip(&geometry).enumerate() {
        let g = &block.geometry;
        let ours = swin_rollout::export::geometry_row(g);
        assert_eq!(&ours[..], &row[..], "{dir}: geometry of block {k}");
        assert_eq!(g.roll, RollOrder::RollThenPad, "{dir}: block {k}");
        let timm: Vec<u32> = r[&format!("index_{k:02}")]
            .flatten_all()
            .unwrap()
            .to_vec1::<i64>()
            .unwrap()
            .into_iter()
            .map(|t| u32::try_from(t).unwrap_or(Geometry::PADDING))
            .collect();
        assert_eq!(
            g.index_image(),
            timm,
            "{dir}: block {k} index image vs timm"
        );
        assert_eq!(g.index_image(), rolled_then_padded(g), "{dir}: block {k}");
        let want = r[&format!("attn_{k:02}")]
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let diff = max_abs_diff(&block.attention, &want);
        assert!(diff <= 1e-5, "{dir}: block {k} attention differs by {diff}");
        attention_error = attention_error.max(diff);
    }
    eprintln!("{dir}: max |logits − timm| {logit_error:.1e}, max |attention − timm| {attention_error:.1e}");
    (logit_error, attention_error)
}

#[test]
fn timm_swinv2_with_its_window_in_model_args_matches_timm() {
    check("swinv2_timm");
    let model = load(&fixture("swinv2_timm")).unwrap();
    let c = model.network.swin_config().unwrap();
    assert_eq!(
        (c.version, c.implementation),
        (Version::V2, Implementation::Timm)
    );
    assert_eq!((c.window_size, c.image_size), (4, (64, 64)));
    assert_eq!(c.labels, ["cat", "dog", "fox", "owl", "yak"]);
    assert_eq!(model.network.architecture(), "Swin Transformer V2");
}

#[test]
fn timm_swinv2_with_its_window_in_its_name_pads_shifts_and_clamps_as_timm() {
    check("swinv2_timm_pad");
    let model = load(&fixture("swinv2_timm_pad")).unwrap();
    let c = model.network.swin_config().unwrap();
    // From `swinv2_tiny_window4to6_32to76`: window 6, pretrained 4 clamped to 8, 4, 2.
    assert_eq!(c.window_size, 6);
    assert_eq!(c.pretrained_window_sizes, [4, 4, 2]);
    // Where the shifted grid is padded, Hugging Face's order would put other tokens there.
    let (_, blocks) = model
        .network
        .trace(&reference("swinv2_timm_pad")["pixel_values"])
        .unwrap();
    let g = blocks[1].geometry;
    assert!(g.shift > 0 && g.padded_height > g.height);
    assert_ne!(
        g.index_image(),
        g.with_roll(RollOrder::PadThenRoll).index_image()
    );
}

#[test]
fn timm_swin_v1_rolls_its_grid_before_padding_as_timm() {
    check("swin_timm_pad");
    let model = load(&fixture("swin_timm_pad")).unwrap();
    let c = model.network.swin_config().unwrap();
    assert_eq!(
        (c.version, c.implementation),
        (Version::V1, Implementation::Timm)
    );
}

#[test]
fn an_exported_timm_trace_reads_back_with_its_roll_order() {
    let model = load(&fixture("swinv2_timm_pad")).unwrap();
    let r = reference("swinv2_timm_pad");
    let (logits, blocks) = model.network.trace(&r["pixel_values"]).unwrap();
    let pixel_values = r["pixel_values"].flatten_all().unwrap().to_vec1().unwrap();
    let trace = Trace {
        pixel_values,
        image_size: (76, 76),
        logits,
        blocks,
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("trace.npz");
    swin_rollout::export::write_trace(&path, &trace, None, None).unwrap();
    let back = Trace::load_npz(&path).unwrap();
    assert_eq!(back.blocks.len(), trace.blocks.len());
    for (a, b) in back.blocks.iter().zip(&trace.blocks) {
        assert_eq!(a.geometry, b.geometry);
        assert_eq!(a.geometry.index_image(), b.geometry.index_image());
        assert_eq!(a.attention, b.attention);
    }
    // The scalar is what carries it: the same arrays without it read back in HF's order.
    let mut arrays = swin_rollout::npz::Reader::open(&path).unwrap();
    let roll = arrays
        .read("roll_before_pad")
        .unwrap()
        .expect("written for timm");
    assert_eq!(roll.shape, Vec::<usize>::new());
    let hf = Trace {
        blocks: trace
            .blocks
            .iter()
            .map(|b| swin_rollout::BlockTrace {
                geometry: b.geometry.with_roll(RollOrder::PadThenRoll),
                ..b.clone()
            })
            .collect(),
        ..trace.clone()
    };
    let hf_path = dir.path().join("hf.npz");
    swin_rollout::export::write_trace(&hf_path, &hf, None, None).unwrap();
    let mut arrays = swin_rollout::npz::Reader::open(&hf_path).unwrap();
    assert!(arrays.read("roll_before_pad").unwrap().is_none());
    let back = Trace::load_npz(&hf_path).unwrap();
    assert!(back
        .blocks
        .iter()
        .all(|b| b.geometry.roll == RollOrder::PadThenRoll));
}

/// A copy of fixture `dir` with its config.json replaced by `config` and its tensors edited.
fn variant(
    dir: &str,
    config: impl FnOnce(&mut serde_json::Value),
    tensors: impl FnOnce(&mut HashMap<String, Tensor>),
) -> tempfile::TempDir {
    let out = tempfile::tempdir().unwrap();
    let src = fixture(dir);
    let text = std::fs::read_to_string(src.join("config.json")).unwrap();
    let mut json: serde_json::Value = serde_json::from_str(&text).unwrap();
    config(&mut json);
    std::fs::write(out.path().join("config.json"), json.to_string()).unwrap();
    let mut t =
        candle_core::safetensors::load(src.join("model.safetensors"), &Device::Cpu).unwrap();
    tensors(&mut t);
    candle_core::safetensors::save(&t, out.path().join("model.safetensors")).unwrap();
    out
}

fn error(dir: &Path) -> String {
    let e = load(dir).expect_err("must be refused").to_string();
    assert_eq!(e.lines().count(), 1, "one line: {e}");
    e
}

#[test]
fn a_timm_swinv2_without_a_window_to_read_is_one_line_saying_what_to_add() {
    let dir = variant(
        "swinv2_timm_pad",
        |j| j["architecture"] = "swinv2_custom".into(),
        |_| {},
    );
    let e = error(dir.path());
    assert!(
        e.contains("config.json") && e.contains("\"window_size\"") && e.contains("swinv2_custom"),
        "{e}"
    );
    // The same with the window added loads, and computes what the named one does.
    let dir = variant(
        "swinv2_timm_pad",
        |j| {
            j["architecture"] = "swinv2_custom".into();
            j["model_args"]["window_size"] = 6.into();
            j["model_args"]["pretrained_window_sizes"] = serde_json::json!([4, 4, 2]);
        },
        |_| {},
    );
    let pixels = &reference("swinv2_timm_pad")["pixel_values"];
    let (ours, _) = load(dir.path()).unwrap().network.trace(pixels).unwrap();
    let (named, _) = load(&fixture("swinv2_timm_pad"))
        .unwrap()
        .network
        .trace(pixels)
        .unwrap();
    assert_eq!(ours, named);
}

#[test]
fn timm_swinv2_window_arguments_follow_timm_s_spelling() {
    // One (h, w) for every stage, or one per stage: the same model when all are equal.
    let pixels = &reference("swinv2_timm")["pixel_values"];
    let (want, _) = load(&fixture("swinv2_timm"))
        .unwrap()
        .network
        .trace(pixels)
        .unwrap();
    for window in [serde_json::json!([4, 4]), serde_json::json!([4, 4, [4, 4]])] {
        let dir = variant(
            "swinv2_timm",
            |j| j["model_args"]["window_size"] = window.clone(),
            |_| {},
        );
        let (logits, _) = load(dir.path()).unwrap().network.trace(pixels).unwrap();
        assert_eq!(logits, want, "window_size {window}");
    }
    for (window, says) in [
        (serde_json::json!([4, 6]), "square"),
        (serde_json::json!([4, 4, 6]), "different window per stage"),
        (serde_json::json!([4, 4, 4, 4]), "4 windows for 3 stages"),
    ] {
        let dir = variant(
            "swinv2_timm",
            |j| j["model_args"]["window_size"] = window.clone(),
            |_| {},
        );
        let e = error(dir.path());
        assert!(e.contains("window_size") && e.contains(says), "{e}");
    }
    let dir = variant(
        "swinv2_timm",
        |j| j["model_args"]["always_partition"] = true.into(),
        |_| {},
    );
    assert!(error(dir.path()).contains("always_partition"));
}

#[test]
fn a_timm_swinv2_with_a_wrong_tensor_names_it() {
    let dir = variant(
        "swinv2_timm",
        |_| {},
        |t| {
            let name = "layers.1.blocks.0.attn.cpb_mlp.0.weight";
            t.insert(
                name.into(),
                Tensor::zeros((512, 3), candle_core::DType::F32, &Device::Cpu).unwrap(),
            );
        },
    );
    let e = error(dir.path());
    assert!(e.contains("continuous_position_bias_mlp.0.weight"), "{e}");
    let dir = variant(
        "swinv2_timm",
        |_| {},
        |t| {
            t.insert(
                "layers.0.blocks.1.attn.logit_scale".into(),
                Tensor::zeros(3, candle_core::DType::F32, &Device::Cpu).unwrap(),
            );
        },
    );
    let e = error(dir.path());
    assert!(e.contains("logit_scale"), "{e}");
}

#[test]
fn timm_swinv2_cr_checkpoints_are_refused_in_one_line() {
    let dir = variant(
        "swinv2_timm",
        |j| j["architecture"] = "swinv2_cr_tiny_ns_224".into(),
        |t| {
            let renamed: HashMap<String, Tensor> = t
                .drain()
                .map(|(n, v)| (n.replacen("layers.", "stages.", 1), v))
                .collect();
            *t = renamed;
        },
    );
    let e = error(dir.path());
    assert!(
        e.contains("swinv2_cr") && e.contains("SwinTransformerV2Cr"),
        "{e}"
    );
}

/// The backward pass through timm's roll-then-pad windows: every block's ∂y_c/∂A against
/// float64 autograd on timm (1e-4 of the block's largest entry), and a relevance built on it.
#[test]
fn attention_gradients_of_timm_swins_match_timm_autograd() {
    for dir in ["swinv2_timm_pad", "swin_timm_pad"] {
        let model = load(&fixture(dir)).unwrap();
        let pixels = reference(dir)["pixel_values"]
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let r = candle_core::safetensors::load(
            fixture(dir).join("relevance.safetensors"),
            &Device::Cpu,
        )
        .unwrap();
        let target = r["targets"].to_vec1::<i64>().unwrap()[0] as usize;
        let (trace, grads) = model.trace_pixels_with_gradients(pixels, None).unwrap();
        assert_eq!(grads.target, target, "{dir}: the argmax");
        let mut worst = 0f32;
        for (k, g) in grads.blocks.iter().enumerate() {
            let want = r[&format!("t0_grad_{k:02}")]
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
            let err = max_abs_diff(g, &want) / scale;
            assert!(err < 1e-4, "{dir}: block {k} gradient error {err}");
            worst = worst.max(err);
        }
        eprintln!("{dir}: max relative |∂y/∂A − timm autograd| {worst:.1e}");
        let relevance = swin_rollout::Relevance::new(&trace, &grads).unwrap();
        let last = relevance.maps().pop().unwrap();
        assert!(last.class_part.values.iter().all(|v| v.is_finite()));
        assert!(last.class_part.values.iter().any(|&v| v != 0.0));
    }
}

#[test]
fn roll_before_pad_is_0_or_1_and_anything_else_is_one_line_naming_it() {
    use swin_rollout::trace::{roll_order, NdArray};
    let scalar = |v: i64| NdArray::new(vec![], vec![v]);
    assert_eq!(roll_order(None).unwrap(), RollOrder::PadThenRoll);
    assert_eq!(
        roll_order(Some(&scalar(0))).unwrap(),
        RollOrder::PadThenRoll
    );
    assert_eq!(
        roll_order(Some(&scalar(1))).unwrap(),
        RollOrder::RollThenPad
    );
    for bad in [scalar(2), scalar(-1), NdArray::new(vec![2], vec![1, 1])] {
        let e = roll_order(Some(&bad)).unwrap_err().to_string();
        assert!(
            e.contains("roll_before_pad") && e.lines().count() == 1,
            "{e}"
        );
    }
}
