//! The faithfulness benchmark on a handful of scenes with the random-weight fixture model (so
//! it runs without the trained model): numbers in range, the uniform baseline where theory puts
//! it, reproducible for a seed, independent of the thread count, and clear errors.
//! Needs Debian's dataset-fashion-mnist (tools/setup.sh installs it).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use swin_rollout::evaluate::{evaluate, EvaluateOptions, Method, Report};
use swin_rollout::scene::{SceneSource, Split, CANVAS};
use swin_rollout::{Model, ModelSource};

fn fixture(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(p)
}

fn model() -> &'static Model {
    static MODEL: OnceLock<Model> = OnceLock::new();
    MODEL.get_or_init(|| {
        Model::load(&ModelSource::Folder(fixture("swin224"))).expect("fixture model loads")
    })
}

fn source() -> &'static SceneSource {
    static SOURCE: OnceLock<SceneSource> = OnceLock::new();
    SOURCE.get_or_init(|| match SceneSource::load(Split::Test) {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    })
}

fn options(scenes: usize, seed: u64) -> EvaluateOptions {
    EvaluateOptions {
        scenes,
        seed,
        ..EvaluateOptions::default()
    }
}

fn run_small(seed: u64) -> Report {
    evaluate(model(), source(), &options(4, seed), &|| {}).expect("evaluate runs")
}

/// The 4-scene report of seed 1, computed once for the tests that only read it.
fn shared_report() -> &'static Report {
    static REPORT: OnceLock<Report> = OnceLock::new();
    REPORT.get_or_init(|| run_small(1))
}

#[test]
fn numbers_are_in_range() {
    let report = shared_report();
    assert_eq!(report.scenes, 4);
    assert_eq!(report.per_scene.len(), 4);
    assert_eq!(report.methods.len(), Method::ALL.len());
    assert!((0.0..=1.0).contains(&report.accuracy));
    let unit = |v: f64, what: &str| assert!((0.0..=1.0).contains(&v), "{what} = {v}");
    for s in &report.per_scene {
        assert!(s.label < 10 && s.predicted < 10);
        unit(s.probability, "probability");
        for (m, sc) in Method::ALL.iter().zip(&s.scores) {
            unit(sc.pointing, &format!("{m:?} pointing"));
            unit(sc.mask_mass, &format!("{m:?} mask mass"));
            unit(sc.deletion_auc, &format!("{m:?} deletion"));
            unit(sc.insertion_auc, &format!("{m:?} insertion"));
        }
    }
    for m in &report.methods {
        for v in [
            m.mean.pointing,
            m.mean.mask_mass,
            m.mean.deletion_auc,
            m.mean.insertion_auc,
        ] {
            unit(v, m.method.name());
        }
    }
    assert!(report.seconds_per_scene > 0.0);
}

#[test]
fn uniform_baseline_is_where_theory_puts_it() {
    let report = shared_report();
    let uniform = Method::Uniform;
    for (i, s) in report.per_scene.iter().enumerate() {
        let u = s.scores[uniform];
        // Every cell covers the same number of canvas pixels, so a uniform map puts exactly
        // the mask's area fraction on the mask.
        assert!(
            (u.mask_mass - s.mask_fraction).abs() < 1e-9,
            "scene {i}: {} vs {}",
            u.mask_mass,
            s.mask_fraction
        );
        // With every cell tied, the pointing game scores the share of the 28×28 cells whose
        // centre lies in the box.
        let scene = source().scene(1, i as u64);
        let step = CANVAS / 28;
        let inside = (0..28 * 28)
            .filter(|c| scene.in_bbox((c % 28) * step + step / 2, (c / 28) * step + step / 2))
            .count();
        assert!(
            (u.pointing - inside as f64 / 784.0).abs() < 1e-12,
            "scene {i}"
        );
    }
    let mean = report.methods[uniform].mean.mask_mass;
    assert!((mean - report.mask_fraction).abs() < 1e-9);
}

#[test]
fn reproducible_for_a_seed() {
    let (a, b) = (shared_report(), run_small(1));
    assert_eq!(a.csv(), b.csv());
    assert_eq!(a.markdown(), b.markdown());
    assert_eq!(a.per_scene, b.per_scene);
    let other = evaluate(model(), source(), &options(1, 4), &|| {}).expect("evaluate runs");
    assert_ne!(
        a.per_scene[0], other.per_scene[0],
        "another seed, another scene"
    );
}

#[test]
fn table_and_csv_have_a_row_per_method() {
    let report = shared_report();
    let csv = report.csv();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 1 + Method::ALL.len());
    let columns = lines[0].split(',').count();
    assert!(lines[0].starts_with("method,pointing_game,"));
    assert!(lines[0].contains("model_accuracy"));
    for (line, m) in lines[1..].iter().zip(Method::ALL) {
        assert!(line.starts_with(&format!("{},", m.name())), "{line}");
        assert_eq!(line.split(',').count(), columns);
    }
    let md = report.markdown();
    for m in Method::ALL {
        assert!(md.contains(&format!("| {} |", m.description())), "{md}");
    }
    assert!(md.contains("Model accuracy"));
}

#[test]
fn both_baselines_work_either_way_round() {
    use swin_rollout::evaluate::Baseline;
    let swapped = EvaluateOptions {
        deletion_baseline: Baseline::Blur,
        insertion_baseline: Baseline::Mean,
        ..options(1, 1)
    };
    let report = evaluate(model(), source(), &swapped, &|| {}).expect("evaluate runs");
    let default = shared_report();
    for (a, b) in report.per_scene[0]
        .scores
        .iter()
        .zip(&default.per_scene[0].scores)
    {
        assert!((0.0..=1.0).contains(&a.deletion_auc) && (0.0..=1.0).contains(&a.insertion_auc));
        // The maps do not depend on the baselines; the curves do.
        assert_eq!((a.pointing, a.mask_mass), (b.pointing, b.mask_mass));
        assert_ne!(a.deletion_auc, b.deletion_auc);
    }
    assert!(report
        .csv()
        .lines()
        .nth(1)
        .is_some_and(|l| l.ends_with(",blur,mean")));
}

#[test]
fn invalid_options_are_errors() {
    let err = evaluate(model(), source(), &options(0, 1), &|| {})
        .expect_err("no scenes")
        .to_string();
    assert!(err.contains("--scenes"), "{err}");
}

fn cli(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_swin-rollout"));
    cmd.args(args);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().expect("binary runs")
}

#[test]
fn cli_output_does_not_depend_on_threads() {
    let dir = tempfile::tempdir().expect("temp dir");
    let model = fixture("swin224").display().to_string();
    let mut results = Vec::new();
    for threads in ["1", "2"] {
        let csv = dir.path().join(format!("t{threads}.csv"));
        let csv_arg = csv.display().to_string();
        let out = cli(
            &[
                "evaluate", "--model", &model, "--scenes", "3", "--seed", "9", "--csv", &csv_arg,
            ],
            &[("RAYON_NUM_THREADS", threads)],
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{err}");
        assert!(err.contains("per scene"), "timing goes to stderr: {err}");
        let csv = std::fs::read_to_string(&csv).expect("CSV written");
        results.push((csv, out.stdout));
    }
    assert_eq!(
        results[0].0, results[1].0,
        "CSV differs between 1 and 2 threads"
    );
    assert_eq!(
        results[0].1, results[1].1,
        "table differs between 1 and 2 threads"
    );
    assert!(String::from_utf8_lossy(&results[0].1).contains("| window-aware rollout |"));
}

#[test]
fn cli_missing_dataset_is_one_clear_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let model = fixture("swin224").display().to_string();
    let csv = dir.path().join("out.csv");
    let out = cli(
        &[
            "evaluate",
            "--model",
            &model,
            "--scenes",
            "2",
            "--csv",
            &csv.display().to_string(),
        ],
        &[(
            "SWIN_ROLLOUT_FASHION_MNIST",
            &dir.path().display().to_string(),
        )],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("t10k-images-idx3-ubyte.gz"), "{err}");
    assert!(
        err.contains("apt-get install dataset-fashion-mnist"),
        "{err}"
    );
    assert!(!csv.exists(), "no CSV on failure");
}

/// A copy of the swin224 fixture with only its first 3 classes.
fn three_label_model(dir: &Path) -> String {
    let text = std::fs::read_to_string(fixture("swin224/config.json")).expect("config");
    let mut config: serde_json::Value = serde_json::from_str(&text).expect("json");
    let names = ["T-shirt/top", "Trouser", "Pullover"];
    config["id2label"] = names
        .iter()
        .enumerate()
        .map(|(i, n)| (i.to_string(), serde_json::json!(n)))
        .collect::<serde_json::Map<_, _>>()
        .into();
    config["label2id"] = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.to_string(), serde_json::json!(i)))
        .collect::<serde_json::Map<_, _>>()
        .into();
    std::fs::write(dir.join("config.json"), config.to_string()).expect("write config");
    std::fs::copy(
        fixture("swin224/preprocessor_config.json"),
        dir.join("preprocessor_config.json"),
    )
    .expect("copy");
    let device = candle_core::Device::Cpu;
    let mut t = candle_core::safetensors::load(fixture("swin224/model.safetensors"), &device)
        .expect("weights");
    for name in ["classifier.weight", "classifier.bias"] {
        let narrowed = t[name].narrow(0, 0, 3).expect("narrow");
        t.insert(name.to_string(), narrowed);
    }
    candle_core::safetensors::save(&t, dir.join("model.safetensors")).expect("save");
    dir.display().to_string()
}

#[test]
fn cli_rejects_a_model_without_ten_labels() {
    let dir = tempfile::tempdir().expect("temp dir");
    let model = three_label_model(dir.path());
    let out = cli(&["evaluate", "--model", &model, "--scenes", "1"], &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        err.contains("10 labels") && err.contains("--model"),
        "{err}"
    );
}

#[test]
fn relevance_rows_exist_are_in_range_and_deterministic() {
    let report = shared_report();
    let csv = report.csv();
    let names: Vec<&str> = csv
        .lines()
        .skip(1)
        .filter_map(|l| l.split(',').next())
        .collect();
    // The rollout rows first, as before, then the relevance rows, then the rest in their old
    // order.
    assert_eq!(
        names,
        [
            "window-aware",
            "naive",
            "relevance",
            "naive-relevance",
            "last-block",
            "random",
            "uniform"
        ]
    );
    let md = report.markdown();
    assert!(
        md.contains("| window-aware relevance (true class) |"),
        "{md}"
    );
    assert!(md.contains("| naive relevance (shifts ignored) |"), "{md}");
    let again = run_small(1);
    for m in [Method::Relevance, Method::NaiveRelevance] {
        let s = &report.methods[m];
        for v in [
            s.mean.pointing,
            s.mean.mask_mass,
            s.mean.deletion_auc,
            s.mean.insertion_auc,
        ] {
            assert!((0.0..=1.0).contains(&v), "{m:?}: {v}");
        }
        assert_eq!(*s, again.methods[m], "{m:?} is reproducible");
        for (a, b) in report.per_scene.iter().zip(&again.per_scene) {
            assert_eq!(a.scores[m], b.scores[m], "{m:?}, scene {}", a.index);
        }
    }
}

#[test]
fn relevance_differs_from_rollout_and_from_naive_relevance() {
    let report = shared_report();
    let differs = |a: Method, b: Method| {
        report
            .per_scene
            .iter()
            .any(|s| s.scores[a].mask_mass != s.scores[b].mask_mass)
    };
    assert!(differs(Method::Relevance, Method::WindowAware));
    assert!(differs(Method::NaiveRelevance, Method::Naive));
    // The fixture's shifted blocks make the naive reading another map.
    assert!(differs(Method::Relevance, Method::NaiveRelevance));
}

#[test]
fn the_pass_with_gradients_traces_what_the_plain_pass_does() {
    // evaluate runs one forward and backward pass and scores the rollout methods on its trace,
    // so the old rows must not move: same logits and attention, bit for bit.
    let m = model();
    let mut preprocessor = m.preprocessor.clone();
    preprocessor.crop_pct = None;
    let scene = source().scene(1, 0);
    let pixels = preprocessor.apply(&scene.image);
    let plain = m.trace_pixels(pixels.clone()).expect("forward");
    let (traced, gradients) = m
        .trace_pixels_with_gradients(pixels, Some(scene.label))
        .expect("forward and backward");
    assert_eq!(gradients.target, scene.label, "the true class is explained");
    assert_eq!(plain.logits, traced.logits);
    assert_eq!(plain.blocks.len(), traced.blocks.len());
    for (a, b) in plain.blocks.iter().zip(&traced.blocks) {
        assert_eq!(a.geometry, b.geometry);
        assert_eq!(a.attention, b.attention);
    }
}

/// A ViT (the small one trained here) is scored too; with no windows, its table has the plain
/// rollout and relevance and no window-unaware twins (the same numbers), while the CSV keeps
/// every method so its columns and rows stay the same for every model.
#[test]
fn a_vit_is_scored_without_window_unaware_rows() {
    let vit = Model::load(&ModelSource::Folder(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/vit"),
    ))
    .expect("the small ViT loads");
    let report = evaluate(&vit, source(), &options(2, 1), &|| {}).expect("evaluate runs");
    assert!(report.global_attention);
    let scores = |m: Method| report.methods[m].mean;
    assert_eq!(scores(Method::WindowAware), scores(Method::Naive));
    assert_eq!(scores(Method::Relevance), scores(Method::NaiveRelevance));
    let table = report.markdown();
    assert!(table.contains("| attention rollout |"), "{table}");
    assert!(table.contains("| relevance (true class) |"), "{table}");
    assert!(
        !table.contains("naive") && !table.contains("window-aware"),
        "{table}"
    );
    assert_eq!(report.csv().lines().count(), 1 + Method::ALL.len());
    assert!(
        !shared_report().global_attention,
        "a Swin's table keeps every row"
    );
}
