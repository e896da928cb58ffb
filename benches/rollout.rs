//! Rollout on the real swin-tiny geometry (224×224 input, patch 4 → 56×56 tokens, window 7,
//! depths 2-2-6-2, heads 3-6-12-24) with random attention.
//!
//! `cargo bench --bench rollout -- --warm-up-time 1 --measurement-time 5`

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use rayon::prelude::*;
use swin_rollout::trace::NdArray;
use swin_rollout::{BlockTrace, Geometry, Rollout, RolloutOptions, Trace, TraceArrays};

use swin_rollout::rng::SplitMix64 as Rng;

fn swin_tiny_trace() -> Trace {
    let mut rng = Rng(42);
    let mut blocks = Vec::new();
    let side = 56;
    for (stage, (depth, heads)) in [(2, 3), (2, 6), (6, 12), (2, 24)].into_iter().enumerate() {
        let n = side >> stage;
        for block in 0..depth {
            let g = Geometry::new(stage, block, n, n, 7, if block % 2 == 1 { 3 } else { 0 });
            let area = g.window_area();
            let mut attention = Vec::with_capacity(g.windows() * heads * area * area);
            for _ in 0..g.windows() * heads * area {
                let row: Vec<f32> = (0..area).map(|_| (4.0 * rng.next_f32()).exp()).collect();
                let sum: f32 = row.iter().sum();
                attention.extend(row.iter().map(|v| v / sum));
            }
            blocks.push(BlockTrace {
                geometry: g,
                heads,
                attention,
            });
        }
    }
    Trace {
        pixel_values: Vec::new(),
        image_size: (224, 224),
        logits: Vec::new(),
        blocks,
    }
}

/// The trace as the arrays Python hands over.
fn export_arrays(trace: &Trace) -> TraceArrays {
    let geometry = swin_rollout::export::geometry_table(trace);
    TraceArrays {
        geometry: NdArray::new(vec![trace.blocks.len(), 8], geometry),
        attentions: trace
            .blocks
            .iter()
            .map(|b| {
                let a = b.geometry.window_area();
                NdArray::new(
                    vec![b.geometry.windows(), b.heads, a, a],
                    b.attention.clone(),
                )
            })
            .collect(),
        ..TraceArrays::default()
    }
}

/// `out = a · b` for dense n×n matrices, tiled so a 128×512 tile of `b` stays in L2 while 16
/// rows of `a` use it: the dense baseline a window-unaware implementation would run.
fn dense_matmul(a: &[f32], b: &[f32], n: usize, out: &mut [f32]) {
    const ROWS: usize = 16;
    const KS: usize = 128;
    const JS: usize = 512;
    out.par_chunks_mut(n * ROWS)
        .zip(a.par_chunks(n * ROWS))
        .for_each(|(o, a)| {
            o.fill(0.0);
            for j0 in (0..n).step_by(JS) {
                let j1 = (j0 + JS).min(n);
                for k0 in (0..n).step_by(KS) {
                    let k1 = (k0 + KS).min(n);
                    for (orow, arow) in o.chunks_mut(n).zip(a.chunks(n)) {
                        let orow = &mut orow[j0..j1];
                        for (k, &x) in arow.iter().enumerate().take(k1).skip(k0) {
                            for (o, &y) in orow.iter_mut().zip(&b[k * n + j0..k * n + j1]) {
                                *o += x * y;
                            }
                        }
                    }
                }
            }
        });
}

fn benches(c: &mut Criterion) {
    let trace = swin_tiny_trace();
    let opts = RolloutOptions::default();
    let rollout = Rollout::new(&trace, &opts).unwrap();

    let mut g = c.benchmark_group("swin_tiny");
    g.bench_function("build", |b| {
        b.iter(|| Rollout::new(black_box(&trace), &opts).unwrap())
    });
    g.bench_function("pooled_maps", |b| b.iter(|| rollout.pooled_maps()));
    // What `swin_rollout.rollout()` runs natively: the trace checked as user data, built, and
    // pooled (tools/bench_python.py compares the Python call with this).
    let arrays = export_arrays(&trace);
    g.bench_function("from_export_build_pooled", |b| {
        b.iter_batched(
            || arrays.clone(),
            |a| {
                let t = Trace::from_export(a).unwrap();
                Rollout::new(&t, &opts).unwrap().pooled_maps()
            },
            criterion::BatchSize::LargeInput,
        )
    });
    g.bench_function("naive_pooled_maps", |b| {
        b.iter(|| rollout.naive_pooled_maps())
    });
    g.bench_function("pair_maps", |b| b.iter(|| rollout.pair_maps()));
    g.sample_size(10);
    g.bench_function("full_all", |b| {
        b.iter(|| {
            let mut corner = 0.0;
            rollout.visit_full(|_, r| corner += r[0]);
            corner
        })
    });
    // One stage-1 block (the shifted one, R_1 = Â_1·R_0), sparse and dense. The matrices are
    // made inside the closures so a filtered run (e.g. for peak memory) skips them.
    let n = rollout.blocks()[1].tokens();
    g.bench_function("stage1_block_sparse", |b| {
        let r0 = rollout.full(0).unwrap();
        let mut out = vec![0f32; n * n];
        b.iter(|| rollout.blocks()[1].mul_rows(&r0, n, &mut out))
    });
    g.bench_function("stage1_block_dense", |b| {
        let r0 = rollout.full(0).unwrap();
        let a1 = rollout.blocks()[1].to_dense();
        let mut out = vec![0f32; n * n];
        b.iter(|| dense_matmul(&a1, &r0, n, &mut out))
    });
    g.finish();
}

criterion_group!(rollout_benches, benches);
criterion_main!(rollout_benches);
