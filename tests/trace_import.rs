//! Traces from `.npz` files: what `export` writes reads back as the same trace, what real
//! numpy writes (`savez`, `savez_compressed`, format 2.0, float64, int32) reads, and every kind
//! of bad trace is one line naming the array and the block.

use std::path::PathBuf;

mod common;

use common::bad_traces::{bad_traces, fixture};
use swin_rollout::{Model, ModelSource, Rollout, RolloutOptions, Trace};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn export_round_trips_through_load_npz() {
    let model = Model::load(&ModelSource::Folder(root().join("tests/fixtures/swin_pad"))).unwrap();
    let trace = model
        .trace_image(&root().join("assets/chelsea.png"))
        .unwrap();
    let rollout = Rollout::new(&trace, &RolloutOptions::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("trace.npz");
    swin_rollout::export::write_trace(&path, &trace, Some(&rollout), None).unwrap();
    let back = Trace::load_npz(&path).unwrap();
    assert_eq!(back.image_size, trace.image_size);
    assert_eq!(back.pixel_values, trace.pixel_values);
    assert_eq!(back.logits, trace.logits);
    assert_eq!(back.blocks.len(), trace.blocks.len());
    for (a, b) in back.blocks.iter().zip(&trace.blocks) {
        assert_eq!(a.geometry, b.geometry);
        assert_eq!(a.heads, b.heads);
        assert_eq!(a.attention, b.attention);
    }
    // swin_pad pads its windows, and its real queries put mass on padding keys: rows sum to 1
    // over all M² keys, not over the real ones, which is why the check counts every key.
    let padded = trace.blocks.iter().find(|b| {
        let g = b.geometry;
        g.padded_height > g.height || g.padded_width > g.width
    });
    let b = padded.expect("swin_pad has a padded stage");
    let area = b.geometry.window_area();
    let index = b.geometry.index_image();
    let worst_real_sum = (0..b.geometry.windows())
        .flat_map(|w| (0..area).map(move |q| (w, q)))
        .filter(|&(w, q)| index[w * area + q] != swin_rollout::Geometry::PADDING)
        .map(|(w, q)| {
            let row = &b.window_head(w, 0)[q * area..(q + 1) * area];
            (0..area)
                .filter(|&k| index[w * area + k] != swin_rollout::Geometry::PADDING)
                .map(|k| f64::from(row[k]))
                .sum::<f64>()
        })
        .fold(1.0, f64::min);
    assert!(
        worst_real_sum < 0.999,
        "padding keys get attention: {worst_real_sum}"
    );
}

#[test]
fn numpy_written_traces_read_in_every_layout() {
    let plain = Trace::load_npz(&fixture("plain.npz")).unwrap();
    let geometry: Vec<_> = plain
        .blocks
        .iter()
        .map(|b| {
            let g = b.geometry;
            (
                g.stage,
                g.block,
                g.height,
                g.padded_height,
                g.window,
                g.shift,
                b.heads,
            )
        })
        .collect();
    assert_eq!(
        geometry,
        [
            (0, 0, 6, 8, 4, 0, 2),
            (0, 1, 6, 8, 4, 2, 2),
            (1, 0, 3, 3, 3, 0, 1)
        ]
    );
    // No pixel_values: the input is the first grid times the patch of every Swin.
    assert_eq!(plain.image_size, (24, 24));
    assert!(plain.pixel_values.is_empty() && plain.logits.is_empty());
    for name in ["compressed.npz", "version2.npz"] {
        let t = Trace::load_npz(&fixture(name)).unwrap();
        for (a, b) in t.blocks.iter().zip(&plain.blocks) {
            assert_eq!((a.geometry, a.heads), (b.geometry, b.heads), "{name}");
            // float64 holds the float32 values exactly.
            assert_eq!(a.attention, b.attention, "{name}");
        }
    }
    let compressed = Trace::load_npz(&fixture("compressed.npz")).unwrap();
    assert_eq!(compressed.logits, [0.5, 2.0, -1.0, 0.0, 1.0]);
    Rollout::new(&plain, &RolloutOptions::default()).unwrap();
    for (name, needle) in [
        ("fortran.npz", "`geometry` is in Fortran order"),
        ("float16.npz", "`attn_00` has dtype '<f2'"),
    ] {
        let e = Trace::load_npz(&fixture(name)).unwrap_err().to_string();
        assert!(e.contains(needle), "{name}: {e}");
    }
}

#[test]
fn bad_traces_are_one_line_naming_the_array_and_the_block() {
    let dir = tempfile::tempdir().unwrap();
    for (path, needle) in bad_traces(dir.path()) {
        let e = Trace::load_npz(&path).unwrap_err().to_string();
        assert!(e.contains(needle), "{}: {e}", path.display());
        assert!(!e.contains('\n'), "{e}");
        assert!(
            e.starts_with(&path.display().to_string()),
            "names the file: {e}"
        );
    }
}
