//! Every kind of bad trace, as `.npz` files made from the numpy-written fixture with one array
//! spoilt, and the words its one-line message must hold.

use std::path::{Path, PathBuf};

use swin_rollout::npz::{self, Array, Values};

/// An array to write: name, shape, values.
#[derive(Clone)]
pub enum Owned {
    /// float32.
    F(String, Vec<usize>, Vec<f32>),
    /// int64.
    I(String, Vec<usize>, Vec<i64>),
}

/// The trace fixture numpy wrote (3 blocks: 6×6 padded to 8×8 with window 4, regular and
/// shifted by 2, 2 heads; then 3×3, window 3, 1 head).
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/traces")
        .join(name)
}

/// The plain fixture's arrays: geometry first, then attn_00…attn_02.
pub fn plain_arrays() -> Vec<Owned> {
    npz::read(&fixture("plain.npz"))
        .unwrap()
        .into_iter()
        .map(|a| match a.values {
            Values::Int(v) => Owned::I(a.name, a.shape, v),
            Values::Float(v) => Owned::F(a.name, a.shape, v),
        })
        .collect()
}

/// Writes `arrays` as an `.npz`.
pub fn save(path: &Path, arrays: &[Owned]) {
    let list: Vec<Array> = arrays
        .iter()
        .map(|a| match a {
            Owned::F(n, s, v) => Array::f32(n.clone(), s, v),
            Owned::I(n, s, v) => Array::i64(n.clone(), s, v),
        })
        .collect();
    npz::write(path, &list).unwrap();
}

fn geometry(a: &mut [Owned]) -> &mut Vec<i64> {
    match &mut a[0] {
        Owned::I(_, _, v) => v,
        Owned::F(..) => unreachable!(),
    }
}

fn attn(a: &mut [Owned], k: usize) -> (&mut Vec<usize>, &mut Vec<f32>) {
    match &mut a[1 + k] {
        Owned::F(_, s, v) => (s, v),
        Owned::I(..) => unreachable!(),
    }
}

type Spoil = fn(&mut Vec<Owned>);

/// (file stem, what the message must say, how the plain fixture is spoilt).
const CASES: [(&str, &str, Spoil); 18] = [
    ("columns", "geometry has shape [4, 6]", |a| {
        if let Owned::I(_, s, _) = &mut a[0] {
            *s = vec![4, 6];
        }
    }),
    ("negative", "geometry row 1: window is -4", |a| {
        geometry(a)[8 + 6] = -4
    }),
    (
        "padding",
        "padded size 9×8 is not the 6×6 grid padded",
        |a| geometry(a)[4] = 9,
    ),
    ("shift", "shift 4 is not below window 4", |a| {
        geometry(a)[8 + 7] = 4
    }),
    ("stages", "stage 2 follows stage 0", |a| geometry(a)[16] = 2),
    ("merge", "a 4×4 grid where 3×3 was expected", |a| {
        geometry(a)[16 + 2..16 + 7].copy_from_slice(&[4, 4, 4, 4, 4]);
        let (s, v) = attn(a, 2);
        *s = vec![1, 1, 16, 16];
        *v = vec![1.0 / 16.0; 256];
    }),
    ("missing", "attn_01 is missing", |a| {
        a.remove(2);
    }),
    ("surplus", "attn_03 has no row in geometry", |a| {
        if let Owned::F(_, s, v) = a[3].clone() {
            a.push(Owned::F("attn_03".into(), s, v));
        }
    }),
    (
        "shape",
        "attn_00 (stage 0, block_in_stage 0): shape [8, 1, 16, 16] disagrees",
        |a| *attn(a, 0).0 = vec![8, 1, 16, 16],
    ),
    (
        "nan",
        "attn_01 (stage 0, block_in_stage 1): window 0, head 1, query place 2 holds NaN",
        |a| attn(a, 1).1[256 + 2 * 16 + 5] = f32::NAN,
    ),
    (
        "negative_attention",
        "attn_02 (stage 1, block_in_stage 0): window 0, head 0, query place 0 holds -0.25",
        |a| attn(a, 2).1[3] = -0.25,
    ),
    (
        "unnormalized",
        "attn_00 (stage 0, block_in_stage 0): window 3, head 0, query place 0 sums to 0.5",
        |a| {
            let start = 3 * 2 * 256;
            attn(a, 0).1[start..start + 16]
                .iter_mut()
                .for_each(|v| *v *= 0.5);
        },
    ),
    ("float_geometry", "`geometry` has dtype <f4", |a| {
        if let Owned::I(n, s, v) = a[0].clone() {
            a[0] = Owned::F(n, s, v.iter().map(|&x| x as f32).collect());
        }
    }),
    ("nan_logits", "logits holds NaN", |a| {
        a.push(Owned::F("logits".into(), vec![3], vec![0.0, f32::NAN, 1.0]))
    }),
    ("pixels", "pixel_values is 8×8 pixels", |a| {
        a.push(Owned::F(
            "pixel_values".into(),
            vec![3, 8, 8],
            vec![0.0; 192],
        ))
    }),
    ("no_geometry", "has no `geometry` array", |a| {
        a.remove(0);
    }),
    ("vit_prefix", "prefix_tokens is 1", |a| {
        a.push(Owned::I("prefix_tokens".into(), vec![], vec![1]))
    }),
    ("prefix_shape", "prefix_tokens has shape [2]", |a| {
        a.push(Owned::I("prefix_tokens".into(), vec![2], vec![0, 0]))
    }),
];

/// Every kind of bad trace written into `dir`, with the words its message must hold; the
/// last few are files that are no trace at all.
pub fn bad_traces(dir: &Path) -> Vec<(PathBuf, &'static str)> {
    let mut out = Vec::new();
    for (name, needle, spoil) in CASES {
        let mut arrays = plain_arrays();
        spoil(&mut arrays);
        let path = dir.join(format!("{name}.npz"));
        save(&path, &arrays);
        out.push((path, needle));
    }
    let not_zip = dir.join("not_zip.npz");
    std::fs::write(&not_zip, b"geometry").unwrap();
    out.push((not_zip, "not an .npz file"));
    out.push((fixture("fortran.npz"), "`geometry` is in Fortran order"));
    out.push((fixture("float16.npz"), "`attn_00` has dtype '<f2'"));
    out.push((dir.join("absent.npz"), "does not exist"));
    out
}
