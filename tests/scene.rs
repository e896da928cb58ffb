//! The Rust port of the cluttered Fashion-MNIST generator: boxes and masks hold the item,
//! scenes are reproducible per (seed, index) and differ otherwise, labels are balanced.
//! Needs Debian's dataset-fashion-mnist (tools/setup.sh installs it).

use std::sync::OnceLock;

use swin_rollout::scene::{SceneSource, Split, CANVAS, CLASS_NAMES};

fn source() -> &'static SceneSource {
    static SOURCE: OnceLock<SceneSource> = OnceLock::new();
    SOURCE.get_or_init(|| match SceneSource::load(Split::Test) {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    })
}

#[test]
fn test_split_is_the_held_out_one() {
    assert_eq!(source().split(), Split::Test);
    assert_eq!(source().len(), 10_000);
}

#[test]
fn boxes_and_masks_hold_the_item() {
    for index in 0..100 {
        let s = source().scene(3, index);
        assert_eq!((s.image.width(), s.image.height()), (224, 224));
        assert_eq!(s.mask.len(), CANVAS * CANVAS);
        let (x0, y0, x1, y1) = s.bbox;
        assert!(
            x0 < x1 && y0 < y1 && x1 <= CANVAS && y1 <= CANVAS,
            "{:?}",
            s.bbox
        );
        let mut inside = 0usize;
        let (mut mx0, mut my0, mut mx1, mut my1) = (CANVAS, CANVAS, 0, 0);
        for y in 0..CANVAS {
            for x in 0..CANVAS {
                if s.mask[y * CANVAS + x] {
                    assert!(
                        s.in_bbox(x, y),
                        "scene {index}: mask pixel ({x}, {y}) outside the box"
                    );
                    inside += 1;
                    (mx0, my0, mx1, my1) = (mx0.min(x), my0.min(y), mx1.max(x + 1), my1.max(y + 1));
                }
            }
        }
        assert!(inside > 0, "scene {index}: empty mask");
        assert_eq!((mx0, my0, mx1, my1), s.bbox, "scene {index}: box not tight");
        // The item is 56–112 px and Fashion-MNIST glyphs fill much of their square.
        let (w, h) = (x1 - x0, y1 - y0);
        assert!(
            w <= 112 && h <= 112 && w.max(h) >= 20,
            "scene {index}: box {w}×{h}"
        );
        // The item is painted opaque where its glyph is bright, in its own tint, over a dark
        // textured background and dim fragments: its mean colour stands apart (by 60+ on
        // 400 scenes checked).
        let (mut on, mut off, mut n_on, mut n_off) = ([0.0; 3], [0.0; 3], 0.0, 0.0);
        for y in 0..CANVAS {
            for x in 0..CANVAS {
                let p = s.image.get_pixel(x as u32, y as u32);
                let (sum, n) = if s.mask[y * CANVAS + x] {
                    (&mut on, &mut n_on)
                } else {
                    (&mut off, &mut n_off)
                };
                for c in 0..3 {
                    sum[c] += f64::from(p[c]);
                }
                *n += 1.0;
            }
        }
        let distance = (0..3)
            .map(|c| (on[c] / n_on - off[c] / n_off).powi(2))
            .sum::<f64>()
            .sqrt();
        assert!(
            distance > 40.0,
            "scene {index}: item and background colours {distance:.1} apart"
        );
    }
}

#[test]
fn scenes_are_reproducible_per_seed_and_index() {
    let again = SceneSource::load(Split::Test).expect("data loads");
    for index in [0, 1, 17] {
        assert_eq!(source().scene(11, index), again.scene(11, index));
    }
    let a = source().scene(11, 0);
    assert_ne!(a.image, source().scene(11, 1).image, "indices must differ");
    assert_ne!(a.image, source().scene(12, 0).image, "seeds must differ");
}

#[test]
fn labels_are_valid_and_roughly_balanced() {
    let n = 300;
    let mut counts = [0usize; 10];
    for index in 0..n {
        let s = source().scene(5, index);
        assert!(s.label < CLASS_NAMES.len());
        counts[s.label] += 1;
    }
    // 30 expected per class, standard deviation about 5.2: 12..=50 is beyond 3.4σ.
    for (c, &k) in counts.iter().enumerate() {
        assert!((12..=50).contains(&k), "class {c}: {k} of {n} ({counts:?})");
    }
}

#[test]
fn missing_data_names_the_file_and_the_fix() {
    let dir = tempfile::tempdir().expect("temp dir");
    let err = SceneSource::load_from(dir.path(), Split::Test)
        .expect_err("an empty folder has no data")
        .to_string();
    assert!(err.contains("t10k-images-idx3-ubyte.gz"), "{err}");
    assert!(
        err.contains("apt-get install dataset-fashion-mnist"),
        "{err}"
    );
    assert!(err.contains("SWIN_ROLLOUT_FASHION_MNIST"), "{err}");
}

#[test]
fn a_corrupt_file_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().expect("temp dir");
    for name in ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"] {
        std::fs::write(dir.path().join(name), b"not gzip").expect("write");
    }
    let err = SceneSource::load_from(dir.path(), Split::Test)
        .expect_err("garbage is rejected")
        .to_string();
    assert!(err.contains("not a Fashion-MNIST idx file"), "{err}");
}
