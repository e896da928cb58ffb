//! Render-only speed of the explainer template at 1920×1080 on the swin-tiny geometry
//! (224×224 input, 56×56 tokens, depths 2-2-6-2, heads 3-6-12-24) with random weights.
//!
//! `cargo bench --bench render -- --warm-up-time 2 --measurement-time 10`
//!
//! `frame` renders frames spread over the whole video (every beat kind, in a stride that
//! visits fill, reorder, merge and finale frames), one per iteration, on one thread: frames/s
//! is 1 / (time per iteration). `frames_parallel` renders 64 frames on the rayon pool, as the
//! encoder's pipeline does. Precomputation (matrix levels, overlays, the figure) happens
//! during warm-up, as it happens once at the start of a real render.

use std::sync::atomic::{AtomicUsize, Ordering};

use candle_core::{Device, Tensor};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rayon::prelude::*;
use swin_rollout::model::{Checkpoint, Config, Swin};
use swin_rollout::preprocess::Preprocessor;
use swin_rollout::render::{input_image, Renderer, Story, Template};
use swin_rollout::{RolloutOptions, Trace};

/// A smooth synthetic photo, so the bench needs no image file.
fn pixels(pre: &Preprocessor) -> Vec<f32> {
    let img = image::RgbImage::from_fn(224, 224, |x, y| {
        let (u, v) = (x as f32 / 224.0, y as f32 / 224.0);
        image::Rgb([
            (255.0 * u) as u8,
            (255.0 * v) as u8,
            (128.0 + 100.0 * (6.0 * u).sin() * (5.0 * v).cos()) as u8,
        ])
    });
    pre.apply(&img)
}

fn story() -> Story {
    let config = Config::swin_tiny(1000);
    let swin = Swin::load(&Checkpoint::random(&config, 7).unwrap(), config).unwrap();
    let pre = Preprocessor::imagenet((224, 224));
    let px = pixels(&pre);
    let t = Tensor::from_vec(px.clone(), (3, 224, 224), &Device::Cpu).unwrap();
    let (logits, blocks) = swin.trace(&t).unwrap();
    let trace = Trace {
        pixel_values: px.clone(),
        image_size: (224, 224),
        logits,
        blocks,
    };
    let image = input_image(&px, (224, 224), &pre).unwrap();
    Story::new(&trace, image, &RolloutOptions::default())
        .unwrap()
        .with_logits(&trace.logits, &swin.config().labels)
        .with_model_name("swin-tiny (random weights)")
}

fn benches(c: &mut Criterion) {
    let story = story();
    let template = Template::load("explainer").unwrap();
    let renderer = Renderer::new(&story, &template).unwrap();
    let n = renderer.frame_count();
    // Warm every lazy cache once, as the first pass of a real render does.
    for i in (0..n).step_by(15) {
        renderer.frame(i).unwrap();
    }
    let mut g = c.benchmark_group("explainer_1080p_swin_tiny");
    g.throughput(Throughput::Elements(1));
    let next = AtomicUsize::new(0);
    g.bench_function("frame", |b| {
        b.iter(|| {
            let i = next.fetch_add(37, Ordering::Relaxed) % n;
            renderer.frame(i).unwrap()
        })
    });
    g.throughput(Throughput::Elements(64));
    g.sample_size(10);
    g.bench_function("frames_parallel", |b| {
        b.iter(|| {
            let start = next.fetch_add(64 * 7, Ordering::Relaxed);
            (0..64)
                .into_par_iter()
                .map(|k| renderer.frame((start + 7 * k) % n).unwrap().len())
                .sum::<usize>()
        })
    });
    g.finish();
}

criterion_group!(render_benches, benches);
criterion_main!(render_benches);
