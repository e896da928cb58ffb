//! `export` writes exactly the documented arrays, with the documented types and shapes.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A parsed `.npy`: dtype descr, shape, raw little-endian bytes.
struct Npy {
    descr: String,
    shape: Vec<usize>,
    data: Vec<u8>,
}

impl Npy {
    fn f32s(&self) -> Vec<f32> {
        assert_eq!(self.descr, "<f4");
        self.data
            .chunks(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect()
    }
    fn i64s(&self) -> Vec<i64> {
        assert_eq!(self.descr, "<i8");
        self.data
            .chunks(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
            .collect()
    }
}

fn read_npz(path: &Path) -> BTreeMap<String, Npy> {
    let mut zip = zip::ZipArchive::new(std::fs::File::open(path).unwrap()).unwrap();
    let mut out = BTreeMap::new();
    for i in 0..zip.len() {
        let mut f = zip.by_index(i).unwrap();
        let name = f.name().trim_end_matches(".npy").to_string();
        let mut bytes = Vec::new();
        f.read_to_end(&mut bytes).unwrap();
        assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
        let len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        assert_eq!((10 + len) % 64, 0, "data aligned");
        let header = std::str::from_utf8(&bytes[10..10 + len]).unwrap();
        let descr = header.split("'descr': '").nth(1).unwrap()[..3].to_string();
        assert!(header.contains("'fortran_order': False"));
        let shape = header
            .split("'shape': (")
            .nth(1)
            .unwrap()
            .split(')')
            .next()
            .unwrap();
        let shape = shape
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(|s| s.trim().parse().unwrap())
            .collect();
        out.insert(
            name,
            Npy {
                descr,
                shape,
                data: bytes[10 + len..].to_vec(),
            },
        );
    }
    out
}

/// The arrays a default `export` of a classifier with `blocks` blocks writes, sorted.
fn export_keys(blocks: usize) -> Vec<String> {
    let mut keys: Vec<String> = [
        "pixel_values",
        "logits",
        "geometry",
        "prefix_tokens",
        "rollout",
    ]
    .map(String::from)
    .to_vec();
    for k in 0..blocks {
        keys.push(format!("attn_{k:02}"));
        keys.push(format!("rollout_{k:02}"));
    }
    keys.sort();
    keys
}

#[test]
fn export_writes_exactly_the_documented_arrays() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("trace.npz");
    let status = Command::new(env!("CARGO_BIN_EXE_swin-rollout"))
        .args([
            "export",
            "assets/chelsea.png",
            "--model",
            "tests/fixtures/swin224",
            "-o",
        ])
        .arg(&out)
        .current_dir(root())
        .status()
        .unwrap();
    assert!(status.success());
    let npz = read_npz(&out);
    assert_eq!(npz.keys().cloned().collect::<Vec<_>>(), export_keys(8));

    assert_eq!(npz["pixel_values"].shape, [3, 224, 224]);
    assert_eq!(npz["logits"].shape, [10]);
    assert_eq!(npz["geometry"].shape, [8, 8]);
    // A window trace has no tokens before its patches.
    assert_eq!(npz["prefix_tokens"].shape, Vec::<usize>::new());
    assert_eq!(npz["prefix_tokens"].i64s(), [0]);
    let geometry = npz["geometry"].i64s();
    // Block 3: stage 1, second block, 14×14, window 7 shifted by 3.
    assert_eq!(&geometry[3 * 8..4 * 8], &[1, 1, 14, 14, 14, 14, 7, 3]);
    // Block 7: the 4×4 stage clamps the window to 4 without shift.
    assert_eq!(&geometry[7 * 8..8 * 8], &[3, 1, 4, 4, 4, 4, 4, 0]);
    assert_eq!(npz["attn_00"].shape, [16, 2, 49, 49]);
    assert_eq!(npz["attn_07"].shape, [1, 4, 16, 16]);
    for k in 0..8 {
        let map = &npz[&format!("rollout_{k:02}")];
        assert_eq!(map.shape, [28, 28]);
        let sum: f32 = map.f32s().iter().sum();
        assert!((sum - 1.0).abs() < 1e-4, "rollout_{k:02} sums to {sum}");
    }
    assert_eq!(npz["rollout"].data, npz["rollout_07"].data);

    // The input is the reference preprocessing of the photo.
    let reference = candle_core::safetensors::load(
        root().join("tests/fixtures/preprocess/chelsea_swin_tiny.safetensors"),
        &candle_core::Device::Cpu,
    )
    .unwrap();
    let want = reference["pixel_values"]
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let got = npz["pixel_values"].f32s();
    let diff = got
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(diff < 1e-5, "pixel_values differ by {diff}");
}

#[test]
fn a_headless_backbone_exports_without_logits_and_renders() {
    let dir = tempfile::tempdir().unwrap();
    for (i, model) in [
        "tests/fixtures/swin_headless",
        "tests/fixtures/swinv2_headless",
    ]
    .into_iter()
    .enumerate()
    {
        let out = dir.path().join(format!("trace{i}.npz"));
        let status = Command::new(env!("CARGO_BIN_EXE_swin-rollout"))
            .args(["export", "assets/chelsea.png", "--model", model, "-o"])
            .arg(&out)
            .current_dir(root())
            .status()
            .unwrap();
        assert!(status.success(), "{model}");
        let npz = read_npz(&out);
        assert!(!npz.contains_key("logits"), "{model}");
        assert!(
            npz.contains_key("rollout") && npz.contains_key("attn_05"),
            "{model}"
        );
        let still = dir.path().join("figure.png");
        let status = Command::new(env!("CARGO_BIN_EXE_swin-rollout"))
            .args([
                "still",
                "assets/chelsea.png",
                "--model",
                model,
                "--force",
                "-o",
            ])
            .arg(&still)
            .current_dir(root())
            .status()
            .unwrap();
        assert!(status.success() && still.exists(), "{model}");
    }
}

#[test]
fn rollout_flags_change_the_maps_and_bad_values_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let export = |name: &str, flags: &[&str]| {
        let out = dir.path().join(name);
        let o = Command::new(env!("CARGO_BIN_EXE_swin-rollout"))
            .args([
                "export",
                "assets/chelsea.png",
                "--model",
                "tests/fixtures/swin_pad",
                "-o",
            ])
            .arg(&out)
            .args(flags)
            .current_dir(root())
            .output()
            .unwrap();
        (o, out)
    };
    let (a, pa) = export("a.npz", &[]);
    let (b, pb) = export(
        "b.npz",
        &[
            "--head-fusion",
            "max",
            "--residual",
            "0.3",
            "--discard",
            "0.5",
        ],
    );
    assert!(a.status.success() && b.status.success());
    assert_ne!(read_npz(&pa)["rollout"].data, read_npz(&pb)["rollout"].data);
    assert_eq!(read_npz(&pa)["attn_03"].data, read_npz(&pb)["attn_03"].data);

    for (flags, needle) in [
        (&["--residual", "1.5"][..], "--residual"),
        (&["--discard", "1"][..], "--discard"),
        (&["--head-fusion", "median"][..], "median"),
    ] {
        let (o, path) = export("bad.npz", flags);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{flags:?} accepted");
        assert!(err.contains(needle), "{err}");
        assert!(!path.exists());
    }
}

#[test]
fn exports_are_byte_identical_across_runs() {
    let dir = tempfile::tempdir().unwrap();
    let run = |name: &str, threads: &str| {
        let out = dir.path().join(name);
        let ok = Command::new(env!("CARGO_BIN_EXE_swin-rollout"))
            .args([
                "export",
                "assets/chelsea.png",
                "--model",
                "tests/fixtures/swin_pad",
                "-o",
            ])
            .arg(&out)
            .env("RAYON_NUM_THREADS", threads)
            .current_dir(root())
            .status()
            .unwrap();
        assert!(ok.success());
        std::fs::read(out).unwrap()
    };
    assert!(run("one.npz", "1") == run("two.npz", "2"));
}

/// max |a − b| over max |b|.
fn relative_error(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
    let diff = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    diff / scale
}

/// `export --explain relevance` of the photo through a fixture model against PyTorch autograd
/// on the same weights and input (`tests/fixtures/make_relevance.py`): every map, and its
/// class-specific part on its own, within 1e-3 of its maximum, for the default class and one
/// named by index.
fn check_relevance_export(model: &str, blocks: usize) {
    let dir = tempfile::tempdir().unwrap();
    let reference = candle_core::safetensors::load(
        root().join(format!("tests/fixtures/{model}/relevance.safetensors")),
        &candle_core::Device::Cpu,
    )
    .unwrap();
    let values = |name: &str| {
        reference[name]
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
    };
    let targets = reference["targets"].to_vec1::<i64>().unwrap();
    for (slot, target) in targets.iter().enumerate() {
        let out = dir.path().join(format!("t{slot}.npz"));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_swin-rollout"));
        cmd.args(["export", "assets/chelsea.png", "--explain", "relevance"])
            .args(["--model", &format!("tests/fixtures/{model}"), "-o"])
            .arg(&out)
            .current_dir(root());
        if slot > 0 {
            cmd.args(["--class", &target.to_string()]);
        }
        assert!(cmd.status().unwrap().success());
        let npz = read_npz(&out);
        assert_eq!(npz["target"].shape, Vec::<usize>::new());
        assert_eq!(
            npz["target"].i64s(),
            [*target],
            "{model}: the class explained"
        );
        assert_eq!(
            npz["relevance"].data,
            npz[&format!("relevance_{:02}", blocks - 1)].data
        );
        assert!(
            npz.contains_key("rollout"),
            "the rollout is exported beside it"
        );
        for k in 0..blocks {
            let got = npz[&format!("relevance_{k:02}")].f32s();
            let err = relative_error(&got, &values(&format!("t{slot}_relevance_{k:02}")));
            assert!(err < 1e-3, "{model} t{slot} block {k}: map error {err}");
            let baseline = values(&format!("baseline_{k:02}"));
            let part: Vec<f32> = got.iter().zip(&baseline).map(|(m, b)| m - b).collect();
            let err = relative_error(&part, &values(&format!("t{slot}_part_{k:02}")));
            assert!(
                err < 1e-3,
                "{model} t{slot} block {k}: class part error {err}"
            );
        }
    }
}

#[test]
fn relevance_export_matches_pytorch() {
    check_relevance_export("swin224", 8);
}

#[test]
fn relevance_export_matches_pytorch_through_padding_and_clamped_windows() {
    check_relevance_export("swin_pad", 8);
}

#[test]
fn a_vit_exports_its_global_attention_and_rollout_and_the_trace_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("vit.npz");
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_swin-rollout"))
            .args(args)
            .current_dir(root())
            .output()
            .unwrap()
    };
    let export = run(&[
        "export",
        "assets/chelsea.png",
        "--model",
        "tests/fixtures/deit_teacher",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(export.status.success(), "{export:?}");
    let npz = read_npz(&out);
    assert_eq!(npz.keys().cloned().collect::<Vec<_>>(), export_keys(3));
    // CLS and distillation tokens first, then the 4×4 patches: T = 18, one "window".
    assert_eq!(npz["prefix_tokens"].i64s(), [2]);
    assert_eq!(npz["attn_01"].shape, [1, 4, 18, 18]);
    assert_eq!(&npz["geometry"].i64s()[8..16], &[0, 1, 4, 4, 4, 4, 0, 0]);
    // The rollout is the CLS row over the 4×4 patches.
    assert_eq!(npz["rollout"].shape, [4, 4]);
    let sum: f32 = npz["rollout"].f32s().iter().sum();
    assert!((sum - 1.0).abs() < 1e-5, "rollout sums to {sum}");

    // The export is a valid trace, and draws as every template's frame does.
    let trace = swin_rollout::trace::Trace::load_npz(&out).unwrap();
    assert_eq!(trace.blocks[2].geometry.prefix, 2);
    assert_eq!(trace.image_size, (32, 32));
    for (template, at) in [("stages", "0"), ("explainer", "6")] {
        let png = dir.path().join(format!("{template}.png"));
        let still = run(&[
            "still",
            "--trace",
            out.to_str().unwrap(),
            "--template",
            template,
            "--at",
            at,
            "-o",
            png.to_str().unwrap(),
        ]);
        assert!(still.status.success(), "{still:?}");
        let img = image::open(&png).unwrap();
        assert_eq!((img.width(), img.height()), (1920, 1080), "{template}");
    }
}

#[test]
fn vit_relevance_export_matches_pytorch() {
    check_relevance_export("vit_small", 3);
}
