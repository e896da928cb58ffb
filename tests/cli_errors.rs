//! Bad input gets one clear error line, a non-zero exit, no panic, and no output file.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use candle_core::Device;

fn fixture(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(p)
}

fn run(args: &[&str], envs: &[(&str, &Path)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_swin-rollout"));
    cmd.args(args);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().expect("binary runs")
}

/// Asserts a clean failure whose single stderr line mentions every `needle`.
fn fails_with(out: &Output, needles: &[&str]) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "should fail: {err}");
    assert_eq!(out.status.code(), Some(1), "exit code, stderr: {err}");
    assert!(!err.contains("panicked"), "panic: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    for n in needles {
        assert!(err.contains(n), "`{n}` not in: {err}");
    }
}

fn image() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("assets/chelsea.png")
        .display()
        .to_string()
}

/// A copy of the swin224 fixture folder whose weights `edit` changes.
fn edited_model(
    dir: &Path,
    edit: impl FnOnce(&mut std::collections::HashMap<String, candle_core::Tensor>),
) -> String {
    for f in ["config.json", "preprocessor_config.json"] {
        std::fs::copy(fixture("swin224").join(f), dir.join(f)).unwrap();
    }
    let mut t =
        candle_core::safetensors::load(fixture("swin224/model.safetensors"), &Device::Cpu).unwrap();
    edit(&mut t);
    candle_core::safetensors::save(&t, dir.join("model.safetensors")).unwrap();
    dir.display().to_string()
}

#[test]
fn missing_image() {
    let out = run(
        &[
            "predict",
            "no/such.png",
            "-m",
            fixture("swin224").to_str().unwrap(),
        ],
        &[],
    );
    fails_with(&out, &["no/such.png"]);
}

#[test]
fn file_that_is_not_an_image() {
    let out = run(
        &[
            "predict",
            fixture("swin224/config.json").to_str().unwrap(),
            "-m",
            fixture("swin224").to_str().unwrap(),
        ],
        &[],
    );
    fails_with(&out, &["config.json", "not a readable image"]);
}

#[test]
fn missing_model_folder() {
    let out = run(&["predict", &image(), "-m", "./no/such/model"], &[]);
    fails_with(&out, &["no/such/model", "does not exist"]);
}

#[test]
fn malformed_config() {
    let dir = tempfile::tempdir().unwrap();
    let m = edited_model(dir.path(), |_| {});
    std::fs::write(dir.path().join("config.json"), "{\"depths\": [2, 2,").unwrap();
    fails_with(
        &run(&["predict", &image(), "-m", &m], &[]),
        &["config.json", "malformed"],
    );
}

#[test]
fn truncated_weights() {
    let dir = tempfile::tempdir().unwrap();
    let m = edited_model(dir.path(), |_| {});
    let w = dir.path().join("model.safetensors");
    let bytes = std::fs::read(&w).unwrap();
    std::fs::write(&w, &bytes[..bytes.len() / 2]).unwrap();
    fails_with(
        &run(&["predict", &image(), "-m", &m], &[]),
        &["model.safetensors", "truncated or corrupt"],
    );
}

#[test]
fn missing_tensor_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let name = "swin.encoder.layers.1.blocks.0.attention.self.key.weight";
    let m = edited_model(dir.path(), |t| {
        t.remove(name);
    });
    fails_with(
        &run(&["predict", &image(), "-m", &m], &[]),
        &[name, "missing"],
    );
}

#[test]
fn wrong_shape_is_named_with_both_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let name = "swin.encoder.layers.0.blocks.1.intermediate.dense.weight";
    let m = edited_model(dir.path(), |t| {
        t.insert(
            name.into(),
            candle_core::Tensor::zeros((47, 12), candle_core::DType::F32, &Device::Cpu).unwrap(),
        );
    });
    fails_with(
        &run(&["predict", &image(), "-m", &m], &[]),
        &[name, "[47, 12]", "[24, 12]"],
    );
}

#[test]
fn unknown_hub_id_offline_mentions_the_cache() {
    let home = tempfile::tempdir().unwrap();
    let out = run(
        &["predict", &image(), "-m", "nobody/no-such-swin"],
        &[("HF_HOME", home.path()), ("HF_HUB_OFFLINE", Path::new("1"))],
    );
    fails_with(&out, &["nobody/no-such-swin", "cache"]);
}

#[test]
fn cached_hub_model_loads_offline() {
    // The hub cache layout: models--owner--name/refs/main names a snapshot folder.
    let home = tempfile::tempdir().unwrap();
    let repo = home.path().join("hub/models--someone--tiny-swin");
    let snap = repo.join("snapshots/0123abc");
    std::fs::create_dir_all(&snap).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), "0123abc").unwrap();
    for f in [
        "config.json",
        "model.safetensors",
        "preprocessor_config.json",
    ] {
        std::fs::copy(fixture("swin224").join(f), snap.join(f)).unwrap();
    }
    let out = run(
        &["predict", &image(), "-m", "someone/tiny-swin", "-k", "1"],
        &[("HF_HOME", home.path()), ("HF_HUB_OFFLINE", Path::new("1"))],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let direct = run(
        &[
            "predict",
            &image(),
            "-m",
            fixture("swin224").to_str().unwrap(),
            "-k",
            "1",
        ],
        &[],
    );
    assert_eq!(out.stdout, direct.stdout);
}

#[test]
fn output_folder_must_exist_and_is_not_created() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("missing/trace.npz");
    let out = run(
        &[
            "export",
            &image(),
            "-m",
            fixture("swin224").to_str().unwrap(),
            "-o",
            target.to_str().unwrap(),
        ],
        &[],
    );
    fails_with(&out, &["does not exist"]);
    assert!(!dir.path().join("missing").exists());
}

#[test]
fn failed_export_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("trace.npz");
    let out = run(
        &[
            "export",
            "no/such.png",
            "-m",
            fixture("swin224").to_str().unwrap(),
            "-o",
            target.to_str().unwrap(),
        ],
        &[],
    );
    fails_with(&out, &["no/such.png"]);
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "no file, no temporary left"
    );
}

#[test]
fn bad_classes_name_the_choices() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("t.npz");
    let out_s = out.display().to_string();
    let model = fixture("swin224").display().to_string();
    let base = [
        "export",
        "--model",
        &model,
        "-o",
        &out_s,
        "--explain",
        "relevance",
    ];
    let label = run(&[&base[..], &["--class", "Hat"]].concat(), &[]);
    fails_with(
        &label,
        &["--class 'Hat'", "10 classes", "Sandal", "Ankle boot"],
    );
    let index = run(&[&base[..], &["--class", "10"]].concat(), &[]);
    fails_with(&index, &["--class 10 is out of range", "10 classes", "0–9"]);
    let rollout = run(
        &[
            "export", "--model", &model, "-o", &out_s, "--class", "Sandal",
        ],
        &[],
    );
    fails_with(&rollout, &["--class", "--explain relevance"]);
    let method = run(&[&base[..5], &["--explain", "saliency"]].concat(), &[]);
    assert!(!method.status.success());
    assert!(String::from_utf8_lossy(&method.stderr).contains("rollout or relevance"));
    assert!(!out.exists(), "no output after a refused class");
}

#[test]
fn a_model_type_we_do_not_run_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let model = edited_model(dir.path(), |_| {});
    let config = dir.path().join("config.json");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("\"model_type\": \"swin\"", "\"model_type\": \"convnext\""),
    )
    .unwrap();
    let out = dir.path().join("x.png");
    let o = run(
        &[
            "still",
            &image(),
            "--model",
            &model,
            "-o",
            &out.to_string_lossy(),
        ],
        &[],
    );
    fails_with(&o, &["model_type", "convnext", "swin, swinv2"]);
    assert!(!out.exists());
}

#[test]
fn a_headless_backbone_says_it_has_no_classifier() {
    let model = fixture("swin_headless").display().to_string();
    let o = run(&["predict", &image(), "--model", &model], &[]);
    fails_with(&o, &["has no classifier", "predict"]);
    let dir = tempfile::tempdir().unwrap();
    for args in [
        vec!["--explain", "relevance"],
        vec!["--explain", "relevance", "--class", "3"],
        vec!["--template", "classes"],
    ] {
        let out = dir.path().join("x.png");
        let (image, out_arg) = (image(), out.to_string_lossy().to_string());
        let mut all = vec!["still", &image, "--model", &model, "-o", &out_arg];
        all.extend(args.iter().copied());
        let o = run(&all, &[]);
        fails_with(&o, &["has no classifier"]);
        assert!(!out.exists(), "{args:?}");
    }
}
