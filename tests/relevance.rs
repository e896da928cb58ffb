//! The window-aware relevance against a plain dense implementation written here, on small
//! synthetic traces with random gradients: shifts, padding, clamped windows, odd merges.

mod common;

use common::*;
use swin_rollout::{AttentionGradients, BlockTrace, Geometry, Relevance, Trace};

/// Gradients in [−1, 1], so that about half of ∇A ⊙ A is clipped by the max(0, ·).
fn random_gradients(trace: &Trace, seed: u64) -> AttentionGradients {
    let mut rng = Rng(seed);
    AttentionGradients {
        target: 0,
        blocks: trace
            .blocks
            .iter()
            .map(|b| {
                (0..b.attention.len())
                    .map(|_| (2.0 * rng.next_f64() - 1.0) as f32)
                    .collect()
            })
            .collect(),
    }
}

/// Ā of one block as a dense N×N matrix over the stage's tokens.
fn reference_abar(block: &BlockTrace, grad: &[f32], naive: bool) -> Dense {
    let g = block.geometry;
    let n = g.tokens();
    let area = g.window_area();
    let shift = if naive { 0 } else { g.shift };
    let mut a = vec![vec![0.0; n]; n];
    for (w, places) in reference_places(&g, shift).iter().enumerate() {
        for (q, tq) in places.iter().enumerate() {
            for (k, tk) in places.iter().enumerate() {
                let (Some(tq), Some(tk)) = (tq, tk) else {
                    continue;
                };
                let sum: f64 = (0..block.heads)
                    .map(|h| {
                        let i = ((w * block.heads + h) * area + q) * area + k;
                        (f64::from(grad[i]) * f64::from(block.attention[i])).max(0.0)
                    })
                    .sum();
                a[*tq][*tk] = sum / block.heads as f64;
            }
        }
    }
    a
}

/// Ā of a block whose one window holds every token in order (a plain transformer's), dense.
fn one_window_abar(block: &BlockTrace, grad: &[f32]) -> Dense {
    let n = block.geometry.window_area();
    let heads = block.heads;
    (0..n)
        .map(|i| {
            (0..n)
                .map(|j| {
                    (0..heads)
                        .map(|h| {
                            let e = (h * n + i) * n + j;
                            (f64::from(grad[e]) * f64::from(block.attention[e])).max(0.0)
                        })
                        .sum::<f64>()
                        / heads as f64
                })
                .collect()
        })
        .collect()
}

fn add(a: &Dense, b: &Dense) -> Dense {
    a.iter()
        .zip(b)
        .map(|(x, y)| x.iter().zip(y).map(|(x, y)| x + y).collect())
        .collect()
}

fn row_mean(r: &Dense) -> Vec<f64> {
    let mut v = vec![0.0; r[0].len()];
    for row in r {
        for (o, x) in v.iter_mut().zip(row) {
            *o += x / r.len() as f64;
        }
    }
    v
}

/// The map and the baseline (every Ā = 0) after every block: R₀ = I, R ← P·R at merges,
/// R ← R + Ā·R.
fn reference_relevance(
    trace: &Trace,
    grads: &AttentionGradients,
    naive: bool,
) -> Vec<(Vec<f64>, Vec<f64>)> {
    let g0 = trace.blocks[0].geometry;
    let mut r = identity(g0.tokens());
    let mut base = identity(g0.tokens());
    let mut prev = g0;
    let mut out = Vec::new();
    for (block, grad) in trace.blocks.iter().zip(&grads.blocks) {
        let g = block.geometry;
        if g.stage != prev.stage {
            let p = reference_merge(prev.height, prev.width);
            r = matmul(&p, &r);
            base = matmul(&p, &base);
        }
        r = add(&r, &matmul(&reference_abar(block, grad, naive), &r));
        out.push((row_mean(&r), row_mean(&base)));
        prev = g;
    }
    out
}

fn assert_close(got: &[f32], want: &[f64], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(0f64, |m, v| m.max(v.abs()));
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            (f64::from(g) - w).abs() <= 1e-6 * scale.max(1e-12),
            "{what}: entry {i}: got {g}, want {w} (scale {scale})"
        );
    }
}

#[test]
fn matches_the_dense_reference_through_shifts_padding_and_merges() {
    for (i, cfg) in CONFIGS.iter().enumerate() {
        let trace = random_trace(cfg, 300 + i as u64);
        let grads = random_gradients(&trace, 400 + i as u64);
        let relevance = Relevance::new(&trace, &grads).unwrap();
        for naive in [false, true] {
            let maps = if naive {
                relevance.naive_maps()
            } else {
                relevance.maps()
            };
            let want = reference_relevance(&trace, &grads, naive);
            assert_eq!(maps.len(), want.len());
            for (k, (m, (map, base))) in maps.iter().zip(&want).enumerate() {
                let what = format!("config {i} naive {naive} block {k}");
                assert_eq!((m.map.height, m.map.width), (cfg.height, cfg.width));
                assert_close(&m.map.values, map, &format!("{what}: map"));
                assert_close(&m.baseline.values, base, &format!("{what}: baseline"));
                let part: Vec<f64> = map.iter().zip(base).map(|(m, b)| m - b).collect();
                assert_close(&m.class_part.values, &part, &format!("{what}: class part"));
                let total: f64 = m.baseline.values.iter().map(|&v| f64::from(v)).sum();
                assert!(
                    (total - 1.0).abs() < 1e-5,
                    "{what}: baseline sums to {total}"
                );
            }
        }
    }
}

#[test]
fn one_window_over_all_tokens_is_the_generic_rule_of_a_plain_transformer() {
    // A 5×5 grid in one 5×5 window, no shift, no merge: Swin reduces to a plain transformer,
    // and the rule to Chefer et al.'s R ← R + Ā·R over tokens in raster order.
    let cfg = Config {
        height: 5,
        width: 5,
        window: 5,
        depths: &[3],
        heads: &[2],
        shift: true,
        fixed_windows: false,
    };
    let trace = random_trace(&cfg, 7);
    let grads = random_gradients(&trace, 8);
    let n = 25;
    let mut r = identity(n);
    for (block, grad) in trace.blocks.iter().zip(&grads.blocks) {
        assert_eq!(block.geometry.windows(), 1);
        let abar = one_window_abar(block, grad);
        r = add(&r, &matmul(&abar, &r));
    }
    let maps = Relevance::new(&trace, &grads).unwrap().maps();
    assert_close(&maps[2].map.values, &row_mean(&r), "generic rule");
}

#[test]
fn a_vit_relevance_is_the_cls_row_of_the_generic_rule_over_the_patches() {
    // CLS and a distillation token before a 3×4 patch grid, global attention in three blocks:
    // Chefer et al.'s rule as written for ViT, R ← R + Ā·R over the whole sequence, read at
    // the CLS row over the patch columns, not rescaled.
    let (h, w, prefix, heads) = (3, 4, 2, 2);
    let t = prefix + h * w;
    let trace = random_global_trace((h, w), prefix, 3, heads, 17);
    let grads = random_gradients(&trace, 18);
    let mut r = identity(t);
    let maps = Relevance::new(&trace, &grads).unwrap().maps();
    for (k, (block, grad)) in trace.blocks.iter().zip(&grads.blocks).enumerate() {
        r = add(&r, &matmul(&one_window_abar(block, grad), &r));
        let m = &maps[k];
        assert_eq!((m.map.height, m.map.width), (h, w));
        let what = format!("ViT block {k}");
        assert_close(&m.map.values, &r[0][prefix..], &format!("{what}: map"));
        assert_close(
            &m.class_part.values,
            &r[0][prefix..],
            &format!("{what}: class part"),
        );
        assert!(
            m.baseline.values.iter().all(|&v| v == 0.0),
            "{what}: the CLS row of I holds no patch"
        );
    }
    assert!(maps[2].map.values.iter().any(|&v| v > 0.0));
}

#[test]
fn abar_is_zero_wherever_attention_is_zero_or_the_gradient_is_negative() {
    let cfg = CONFIGS[4];
    let mut trace = random_trace(&cfg, 21);
    // Zero every head's attention on a pattern of (query, key) places; the gradients there
    // stay non-zero.
    for block in &mut trace.blocks {
        let area = block.geometry.window_area();
        for (i, a) in block.attention.iter_mut().enumerate() {
            if (i % area + (i / area) % area) % 3 == 0 {
                *a = 0.0;
            }
        }
    }
    let grads = random_gradients(&trace, 22);
    let relevance = Relevance::new(&trace, &grads).unwrap();
    let mut zeros = 0;
    for ((block, grad), abar) in trace
        .blocks
        .iter()
        .zip(&grads.blocks)
        .zip(relevance.blocks())
    {
        let area = block.geometry.window_area();
        for (e, &v) in abar.values().iter().enumerate() {
            let (w, q, k) = (e / (area * area), (e / area) % area, e % area);
            let heads = (0..block.heads).map(|h| ((w * block.heads + h) * area + q) * area + k);
            let nothing = heads
                .clone()
                .all(|i| block.attention[i] == 0.0 || grad[i] <= 0.0);
            if nothing {
                assert_eq!(v, 0.0, "block {:?} entry {e}", block.geometry);
                zeros += 1;
            } else {
                assert!(v >= 0.0);
            }
        }
    }
    assert!(zeros > 1000, "the pattern zeroed only {zeros} entries");
}

#[test]
fn padding_rows_and_columns_hold_nothing() {
    let cfg = CONFIGS[4]; // 10×10, window 4: padded to 12×12
    let trace = random_trace(&cfg, 31);
    let grads = AttentionGradients {
        target: 0,
        blocks: trace
            .blocks
            .iter()
            .map(|b| vec![1.0; b.attention.len()])
            .collect(),
    };
    let relevance = Relevance::new(&trace, &grads).unwrap();
    let abar = &relevance.blocks()[0];
    let area = abar.geometry().window_area();
    for (e, &v) in abar.values().iter().enumerate() {
        let (w, q, k) = (e / (area * area), (e / area) % area, e % area);
        let index = abar.index_image();
        let padding = |p: usize| index[w * area + p] == Geometry::PADDING;
        if padding(q) || padding(k) {
            assert_eq!(v, 0.0, "padding entry {e}");
        } else {
            assert!(v > 0.0, "real entry {e}");
        }
    }
}

#[test]
fn gradients_that_do_not_fit_the_trace_are_rejected() {
    let trace = random_trace(&CONFIGS[0], 1);
    let mut grads = random_gradients(&trace, 2);
    grads.blocks.pop();
    let err = Relevance::new(&trace, &grads).unwrap_err().to_string();
    assert!(err.contains("blocks of gradients"), "{err}");

    let mut grads = random_gradients(&trace, 2);
    grads.blocks[1].pop();
    let err = Relevance::new(&trace, &grads).unwrap_err().to_string();
    assert!(err.contains("block 1"), "{err}");

    let mut grads = random_gradients(&trace, 2);
    grads.blocks[2][5] = f32::NAN;
    let err = Relevance::new(&trace, &grads).unwrap_err().to_string();
    assert!(err.contains("block 2") && err.contains("NaN"), "{err}");
}
