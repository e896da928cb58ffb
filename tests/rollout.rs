//! The window-aware rollout against a plain dense implementation written here, on small
//! synthetic traces, and against reference maps computed in Python from a real Swin model.

use std::path::Path;

mod common;

use common::*;
use swin_rollout::{BlockTrace, Geometry, HeadFusion, Map, Rollout, RolloutOptions, Trace};

const TOL: f64 = 1e-6;

fn reference_matrix(block: &BlockTrace, opts: &RolloutOptions, naive: bool) -> Dense {
    let g = block.geometry;
    let shift = if naive { 0 } else { g.shift };
    let n = g.tokens();
    let area = g.window_area();
    let mut a = vec![vec![0.0; n]; n];
    for (w, places) in reference_places(&g, shift).iter().enumerate() {
        let keys: Vec<(usize, usize)> = places
            .iter()
            .enumerate()
            .filter_map(|(p, t)| t.map(|t| (p, t)))
            .collect();
        for &(q, tq) in &keys {
            let mut row: Vec<(usize, usize, f64)> = keys
                .iter()
                .map(|&(k, tk)| {
                    let per_head = (0..block.heads).map(|h| {
                        f64::from(block.attention[((w * block.heads + h) * area + q) * area + k])
                    });
                    let v = match opts.fusion {
                        HeadFusion::Mean => per_head.sum::<f64>() / block.heads as f64,
                        HeadFusion::Max => per_head.fold(f64::MIN, f64::max),
                        HeadFusion::Min => per_head.fold(f64::MAX, f64::min),
                    };
                    (k, tk, v)
                })
                .collect();
            let sum: f64 = row.iter().map(|e| e.2).sum();
            row.iter_mut().for_each(|e| e.2 /= sum);
            let drop = (opts.discard * row.len() as f32).floor() as usize;
            let mut sorted = row.clone();
            sorted.sort_by(|x, y| x.2.partial_cmp(&y.2).unwrap().then(x.0.cmp(&y.0)));
            for &(k, _, _) in &sorted[..drop] {
                if k != q {
                    row.iter_mut().find(|e| e.0 == k).unwrap().2 = 0.0;
                }
            }
            let sum: f64 = row.iter().map(|e| e.2).sum();
            let alpha = f64::from(opts.residual);
            for &(_, tk, v) in &row {
                a[tq][tk] = (1.0 - alpha) * v / sum + if tk == tq { alpha } else { 0.0 };
            }
        }
    }
    a
}

/// Mean of the rows, normalized to sum 1.
fn pooled(r: &Dense) -> Vec<f64> {
    let mut v = vec![0.0; r[0].len()];
    for row in r {
        for (o, x) in v.iter_mut().zip(row) {
            *o += x;
        }
    }
    let sum: f64 = v.iter().sum();
    v.iter().map(|x| x / sum).collect()
}

/// R_k for every block, densely.
fn reference_chain(trace: &Trace, opts: &RolloutOptions, naive: bool) -> Vec<Dense> {
    let g0 = trace.blocks[0].geometry;
    let mut r = identity(g0.tokens());
    let mut prev = g0;
    let mut out = Vec::new();
    for block in &trace.blocks {
        let g = block.geometry;
        if g.stage != prev.stage {
            r = matmul(&reference_merge(prev.height, prev.width), &r);
        }
        r = matmul(&reference_matrix(block, opts, naive), &r);
        out.push(r.clone());
        prev = g;
    }
    out
}

fn assert_close(got: &[f32], want: &[f64], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            (f64::from(g) - w).abs() <= TOL,
            "{what}: entry {i}: got {g}, want {w}"
        );
    }
}

fn assert_map(map: &Map, h: usize, w: usize, want: &[f64], what: &str) {
    assert_eq!((map.height, map.width), (h, w), "{what}: size");
    assert_close(&map.values, want, what);
}

/// Every readout of the crate against the dense reference.
fn check_against_reference(cfg: &Config, opts: &RolloutOptions, seed: u64) {
    let trace = random_trace(cfg, seed);
    let rollout = Rollout::new(&trace, opts).unwrap();
    let (h0, w0) = (cfg.height, cfg.width);
    assert_eq!(rollout.input_size(), (h0, w0));
    let chain = reference_chain(&trace, opts, false);
    let naive = reference_chain(&trace, opts, true);
    let name = format!(
        "{}×{} window {} depths {:?} shift {} {:?}",
        cfg.height, cfg.width, cfg.window, cfg.depths, cfg.shift, opts
    );

    let maps = rollout.pooled_maps();
    let naive_maps = rollout.naive_pooled_maps();
    assert_eq!(maps.len(), trace.blocks.len());
    for k in 0..trace.blocks.len() {
        assert_map(
            &maps[k],
            h0,
            w0,
            &pooled(&chain[k]),
            &format!("{name}: pooled {k}"),
        );
        assert_map(
            &naive_maps[k],
            h0,
            w0,
            &pooled(&naive[k]),
            &format!("{name}: naive {k}"),
        );
        for (t, row) in chain[k].iter().enumerate() {
            let map = rollout.token_map(k, t).unwrap();
            assert_map(
                &map,
                h0,
                w0,
                row,
                &format!("{name}: token {t} of block {k}"),
            );
        }
    }

    let mut visited = 0;
    rollout.visit_full(|k, r| {
        assert_eq!(k, visited);
        let want: Vec<f64> = chain[k].concat();
        assert_close(r, &want, &format!("{name}: R_{k}"));
        visited += 1;
    });
    assert_eq!(visited, trace.blocks.len());
    let last = trace.blocks.len() - 1;
    assert_close(
        &rollout.full(last).unwrap(),
        &chain[last].concat(),
        &format!("{name}: full({last})"),
    );

    // Pairs: blocks 2i, 2i+1 of each stage, multiplied on their own.
    let mut want_pairs = Vec::new();
    for k in 0..last {
        let (g, g1) = (trace.blocks[k].geometry, trace.blocks[k + 1].geometry);
        if g.stage == g1.stage && g.block % 2 == 0 && g1.block == g.block + 1 {
            want_pairs.push(k);
        }
    }
    let pairs = rollout.pair_maps();
    assert_eq!(pairs.len(), want_pairs.len(), "{name}: pair count");
    for (pair, &k) in pairs.iter().zip(&want_pairs) {
        let g = trace.blocks[k].geometry;
        assert_eq!(pair.blocks, (k, k + 1));
        assert_eq!(pair.stage, g.stage);
        let product = matmul(
            &reference_matrix(&trace.blocks[k + 1], opts, false),
            &reference_matrix(&trace.blocks[k], opts, false),
        );
        let stage_map = pooled(&product);
        assert_map(
            &pair.stage_map,
            g.height,
            g.width,
            &stage_map,
            &format!("{name}: pair {k} stage map"),
        );
        // Paint each stage token over its 2^s×2^s block of input tokens, cropped.
        let side = 1 << g.stage;
        let mut up = vec![0.0; h0 * w0];
        for y in 0..g.height {
            for x in 0..g.width {
                for dy in 0..side {
                    for dx in 0..side {
                        let (iy, ix) = (y * side + dy, x * side + dx);
                        if iy < h0 && ix < w0 {
                            up[iy * w0 + ix] = stage_map[y * g.width + x];
                        }
                    }
                }
            }
        }
        let sum: f64 = up.iter().sum();
        up.iter_mut().for_each(|v| *v /= sum);
        assert_map(
            &pair.input_map,
            h0,
            w0,
            &up,
            &format!("{name}: pair {k} input map"),
        );
    }
}

#[test]
fn matches_dense_reference_with_default_options() {
    for (i, cfg) in CONFIGS.iter().enumerate() {
        check_against_reference(cfg, &RolloutOptions::default(), 100 + i as u64);
    }
}

#[test]
fn matches_dense_reference_with_other_fusions_residuals_and_discard() {
    let variants = [
        RolloutOptions {
            fusion: HeadFusion::Max,
            residual: 0.3,
            discard: 0.25,
        },
        RolloutOptions {
            fusion: HeadFusion::Min,
            residual: 0.8,
            discard: 0.5,
        },
        RolloutOptions {
            fusion: HeadFusion::Mean,
            residual: 0.0,
            discard: 0.9,
        },
    ];
    for (i, cfg) in CONFIGS.iter().enumerate() {
        let opts = &variants[i % variants.len()];
        check_against_reference(cfg, opts, 200 + i as u64);
    }
}

// ---------------------------------------------------------------------------------------------
// Properties

#[test]
fn rows_of_every_matrix_and_every_rollout_are_distributions() {
    let opts = RolloutOptions {
        discard: 0.3,
        ..Default::default()
    };
    for (i, cfg) in CONFIGS.iter().enumerate() {
        let trace = random_trace(cfg, 300 + i as u64);
        let rollout = Rollout::new(&trace, &opts).unwrap();
        for (k, a) in rollout.blocks().iter().enumerate() {
            for t in 0..a.tokens() {
                let (_, vals) = a.row(t).unwrap();
                assert!(vals.iter().all(|&v| v >= 0.0), "Â_{k} row {t} negative");
                let sum: f64 = vals.iter().map(|&v| f64::from(v)).sum();
                assert!((sum - 1.0).abs() < 1e-6, "Â_{k} row {t} sums to {sum}");
            }
        }
        let n0 = cfg.height * cfg.width;
        rollout.visit_full(|k, r| {
            for (t, row) in r.chunks(n0).enumerate() {
                assert!(row.iter().all(|&v| v >= 0.0), "R_{k} row {t} negative");
                let sum: f64 = row.iter().map(|&v| f64::from(v)).sum();
                assert!((sum - 1.0).abs() < 1e-5, "R_{k} row {t} sums to {sum}");
            }
        });
    }
}

#[test]
fn one_window_over_all_tokens_is_plain_rollout() {
    // 8×8 tokens with window 8: one window, no shift, no padding, no merge.
    let cfg = Config {
        height: 8,
        width: 8,
        window: 8,
        depths: &[4],
        heads: &[3],
        shift: true,
        fixed_windows: false,
    };
    let trace = random_trace(&cfg, 7);
    assert!(trace.blocks.iter().all(|b| b.geometry.windows() == 1));
    let n = 64;
    // Abnar & Zuidema: mean over heads, add the identity, renormalize rows, multiply. The
    // window's places are the raster order here.
    let mut r = identity(n);
    let mut want = Vec::new();
    for block in &trace.blocks {
        let mut a = vec![vec![0.0; n]; n];
        for (q, row) in a.iter_mut().enumerate() {
            for (k, v) in row.iter_mut().enumerate() {
                let sum: f64 = (0..block.heads)
                    .map(|h| f64::from(block.attention[(h * n + q) * n + k]))
                    .sum();
                *v = sum / block.heads as f64 + if q == k { 1.0 } else { 0.0 };
            }
            let s: f64 = row.iter().sum();
            row.iter_mut().for_each(|v| *v /= s);
        }
        r = matmul(&a, &r);
        want.push(pooled(&r));
    }
    let rollout = Rollout::new(&trace, &RolloutOptions::default()).unwrap();
    for (k, (map, want)) in rollout.pooled_maps().iter().zip(&want).enumerate() {
        assert_map(map, 8, 8, want, &format!("plain rollout block {k}"));
    }
    assert_close(&rollout.full(3).unwrap(), &r.concat(), "plain rollout R_3");
}

#[test]
fn hand_computed_two_by_two() {
    // 2×2 tokens, one window of 2 (place = token), one head, one block:
    //
    //        A                       Â = ½A + ½I
    //   t0 [ .5  .5   0   0 ]       [ .75   .25   0     0    ]
    //   t1 [ 0   1    0   0 ]       [ 0     1     0     0    ]
    //   t2 [ .25 .25 .25 .25]       [ .125  .125  .625  .125 ]
    //   t3 [ 0   0    0   1 ]       [ 0     0     0     1    ]
    //
    // Pooled map = column means of Â: (.875, 1.375, .625, 1.125) / 4
    //                                = (.21875, .34375, .15625, .28125), which sums to 1.
    // Token map of t2 = row t2 of Â.
    //
    // With discard 0.5 (2 of 4 keys per row, ties broken by place): row t2 drops t0 and t1 →
    // (0, 0, .5, .5); Â row t2 = (0, 0, .75, .25). Row t0 (.5, .5, 0, 0) drops places 2 and 3
    // (already 0), so it is unchanged.
    let attention = vec![
        0.5, 0.5, 0.0, 0.0, //
        0.0, 1.0, 0.0, 0.0, //
        0.25, 0.25, 0.25, 0.25, //
        0.0, 0.0, 0.0, 1.0,
    ];
    let trace = Trace {
        pixel_values: Vec::new(),
        image_size: (8, 8),
        logits: Vec::new(),
        blocks: vec![BlockTrace {
            geometry: Geometry::new(0, 0, 2, 2, 7, 0),
            heads: 1,
            attention,
        }],
    };
    let rollout = Rollout::new(&trace, &RolloutOptions::default()).unwrap();
    let maps = rollout.pooled_maps();
    assert_map(
        &maps[0],
        2,
        2,
        &[0.21875, 0.34375, 0.15625, 0.28125],
        "pooled",
    );
    let t2 = rollout.token_map(0, 2).unwrap();
    assert_map(&t2, 2, 2, &[0.125, 0.125, 0.625, 0.125], "token t2");
    assert_eq!(t2.get(1, 0), 0.625);

    let discard = RolloutOptions {
        discard: 0.5,
        ..Default::default()
    };
    let rollout = Rollout::new(&trace, &discard).unwrap();
    let t2 = rollout.token_map(0, 2).unwrap();
    assert_map(&t2, 2, 2, &[0.0, 0.0, 0.75, 0.25], "token t2 with discard");
    let t0 = rollout.token_map(0, 0).unwrap();
    assert_map(&t0, 2, 2, &[0.75, 0.25, 0.0, 0.0], "token t0 with discard");
}

#[test]
fn naive_map_differs_when_the_shift_wraps() {
    let cfg = CONFIGS[1]; // 8×8, window 4, shift 2 in the second block
    let trace = random_trace(&cfg, 11);
    let rollout = Rollout::new(&trace, &RolloutOptions::default()).unwrap();
    let aware = rollout.pooled_maps();
    let naive = rollout.naive_pooled_maps();
    // Block 0 has no shift: both readings agree.
    assert_eq!(aware[0], naive[0]);
    let diff = aware[1]
        .values
        .iter()
        .zip(&naive[1].values)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(diff > 1e-3, "naive and aware maps agree to {diff}");

    // Without any shift the two readings are the same.
    let trace = random_trace(&CONFIGS[6], 12);
    let rollout = Rollout::new(&trace, &RolloutOptions::default()).unwrap();
    assert_eq!(rollout.pooled_maps(), rollout.naive_pooled_maps());
}

#[test]
fn invalid_settings_are_rejected_with_clear_errors() {
    let bad = |opts: RolloutOptions, flag: &str| {
        let msg = opts.validate().unwrap_err().to_string();
        assert!(msg.contains(flag), "{msg}");
        let trace = random_trace(&CONFIGS[0], 1);
        let msg = Rollout::new(&trace, &opts).unwrap_err().to_string();
        assert!(msg.contains(flag), "{msg}");
    };
    let base = RolloutOptions::default();
    for residual in [-0.1, 1.5, f32::NAN, f32::INFINITY] {
        bad(RolloutOptions { residual, ..base }, "--residual");
    }
    for discard in [-0.1, 1.0, f32::NAN, f32::NEG_INFINITY] {
        bad(RolloutOptions { discard, ..base }, "--discard");
    }
    assert!(RolloutOptions {
        residual: 1.0,
        discard: 0.99,
        ..base
    }
    .validate()
    .is_ok());
    let msg = "median".parse::<HeadFusion>().unwrap_err().to_string();
    assert!(
        msg.contains("--head-fusion") && msg.contains("mean, max, min"),
        "{msg}"
    );

    // Bad requests and bad traces are errors too, not panics.
    let mut trace = random_trace(&CONFIGS[0], 2);
    let rollout = Rollout::new(&trace, &base).unwrap();
    assert!(rollout.token_map(6, 0).is_err());
    assert!(rollout
        .token_map(0, 64)
        .unwrap_err()
        .to_string()
        .contains("out of range"));
    assert!(rollout.full(6).is_err());

    let empty = Trace {
        blocks: Vec::new(),
        ..trace.clone()
    };
    assert!(Rollout::new(&empty, &base).is_err());
    trace.blocks[3].attention.pop();
    assert!(Rollout::new(&trace, &base).is_err());
    // Stage 1 cannot keep the 8×8 grid of stage 0: a merge halves it.
    let mut trace = random_trace(&CONFIGS[0], 3);
    trace.blocks[2] = trace.blocks[0].clone();
    trace.blocks[2].geometry.stage = 1;
    let msg = Rollout::new(&trace, &base).unwrap_err().to_string();
    assert!(
        msg.contains("block 2 has a 8×8 grid where 4×4 was expected"),
        "{msg}"
    );
}

// ---------------------------------------------------------------------------------------------
// Reference maps from the Python helper (a real Swin model)

fn read_f32(st: &safetensors::SafeTensors, name: &str) -> (Vec<usize>, Vec<f32>) {
    let t = st.tensor(name).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(t.dtype(), safetensors::Dtype::F32, "{name}");
    let values = t
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    (t.shape().to_vec(), values)
}

fn check_fixture(dir: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(dir)
        .join("reference.safetensors");
    let bytes = std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; the fixture is generated by the Python helper and committed",
            path.display()
        )
    });
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let geometry = st.tensor("geometry").unwrap();
    assert_eq!(geometry.dtype(), safetensors::Dtype::I64);
    let rows: Vec<i64> = geometry
        .data()
        .chunks_exact(8)
        .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
        .collect();
    let blocks: Vec<BlockTrace> = rows
        .chunks_exact(8)
        .enumerate()
        .map(|(k, r)| {
            let r: Vec<usize> = r.iter().map(|&v| v as usize).collect();
            let geometry = Geometry {
                stage: r[0],
                block: r[1],
                height: r[2],
                width: r[3],
                padded_height: r[4],
                padded_width: r[5],
                window: r[6],
                shift: r[7],
                prefix: 0,
                roll: Default::default(),
            };
            let (shape, attention) = read_f32(&st, &format!("attn_{k:02}"));
            assert_eq!(shape.len(), 4, "attn_{k:02} shape");
            assert_eq!(shape[0], geometry.windows(), "attn_{k:02} windows");
            BlockTrace {
                geometry,
                heads: shape[1],
                attention,
            }
        })
        .collect();
    assert!(!blocks.is_empty());
    let trace = Trace {
        pixel_values: Vec::new(),
        image_size: (0, 0),
        logits: Vec::new(),
        blocks,
    };
    let rollout = Rollout::new(&trace, &RolloutOptions::default()).unwrap();
    let (h0, w0) = rollout.input_size();
    let check = |map: &Map, name: &str| {
        let (shape, want) = read_f32(&st, name);
        assert_eq!(shape, vec![h0, w0], "{name} shape");
        assert_eq!((map.height, map.width), (h0, w0), "{name}");
        let want: Vec<f64> = want.iter().map(|&v| f64::from(v)).collect();
        assert_close(&map.values, &want, &format!("{dir}: {name}"));
    };
    let maps = rollout.pooled_maps();
    for (k, map) in maps.iter().enumerate() {
        check(map, &format!("rollout_{k:02}"));
    }
    check(rollout.naive_pooled_maps().last().unwrap(), "naive_final");
}

#[test]
fn matches_python_reference_swin224() {
    check_fixture("swin224");
}

#[test]
fn matches_python_reference_swin_pad() {
    check_fixture("swin_pad");
}

#[test]
fn a_vit_rollout_is_the_cls_row_of_plain_rollout_over_the_patches() {
    // CLS plus a 3×4 patch grid, global attention in three blocks of two heads.
    let (h, w, prefix, heads) = (3, 4, 1, 2);
    let t = prefix + h * w;
    let trace = random_global_trace((h, w), prefix, 3, heads, 0x9e37_79b9);
    // Abnar & Zuidema over the whole sequence: mean over heads plus the identity, rows
    // renormalized, multiplied block by block.
    let mut r = identity(t);
    let mut want = Vec::new();
    for block in &trace.blocks {
        let mut a = vec![vec![0.0; t]; t];
        for (q, row) in a.iter_mut().enumerate() {
            for (k, v) in row.iter_mut().enumerate() {
                let sum: f64 = (0..heads)
                    .map(|hd| f64::from(block.attention[(hd * t + q) * t + k]))
                    .sum();
                *v = sum / heads as f64 + if q == k { 1.0 } else { 0.0 };
            }
            let s: f64 = row.iter().sum();
            row.iter_mut().for_each(|v| *v /= s);
        }
        r = matmul(&a, &r);
        want.push(r.clone());
    }
    // The CLS row over the patches, renormalized to sum 1.
    let patches = |row: &[f64]| {
        let s: f64 = row[prefix..].iter().sum();
        row[prefix..].iter().map(|v| v / s).collect::<Vec<_>>()
    };
    let rollout = Rollout::new(&trace, &RolloutOptions::default()).unwrap();
    assert_eq!(rollout.input_size(), (h, w));
    for (k, (map, r)) in rollout.pooled_maps().iter().zip(&want).enumerate() {
        assert_map(
            map,
            h,
            w,
            &patches(&r[0]),
            &format!("ViT rollout block {k}"),
        );
    }
    // A patch token's row reads the same way; R itself is over the whole sequence.
    let token = rollout.token_map(2, 6).unwrap();
    assert_map(&token, h, w, &patches(&want[2][6]), "ViT token map");
    assert_close(&rollout.full(2).unwrap(), &want[2].concat(), "ViT R_2");
    assert!(rollout.pair_maps().is_empty());
}
