//! Class-specific relevance on the real swin-tiny architecture (embed 96, depths 2,2,6,2, heads
//! 3,6,12,24, window 7, 224×224, 1000 labels; random weights, no download): the forward pass
//! alone, forward + backward (∂y_c/∂A of every block), and forward + backward + the relevance
//! maps of every block. Compare with `python3 tools/bench_torch_relevance.py` in the same run.
//!
//! And the same on vit-base/16 (`vit_base_relevance`).
//!
//! `cargo bench --bench relevance`

use candle_core::{Device, Tensor};
use criterion::{criterion_group, criterion_main, Criterion};

/// The allocator of the `swin-rollout` binary, tuned as it tunes it (see `fn main`), so the
/// figures are the ones users get.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use swin_rollout::model::{Architecture, Checkpoint, Config, Network, Swin, ViTConfig};
use swin_rollout::{AttentionGradients, Relevance, Trace};

fn relevance(c: &mut Criterion) {
    swin_rollout::allocator::keep_freed_memory();
    let config = Config::swin_tiny(1000);
    let checkpoint = Checkpoint::random(&config, 7).expect("random weights");
    let swin = Swin::load(&checkpoint, config).expect("model");
    let pixels = Tensor::randn(0f32, 1.0, (1, 3, 224, 224), &Device::Cpu).expect("input");
    let mut group = c.benchmark_group("swin_tiny_relevance");
    group.sample_size(20);
    group.bench_function("forward_trace", |b| {
        b.iter(|| swin.trace(&pixels).expect("trace"))
    });
    group.bench_function("forward_backward", |b| {
        b.iter(|| swin.trace_with_gradients(&pixels, None).expect("gradients"))
    });
    group.bench_function("forward_backward_relevance", |b| {
        b.iter(|| {
            let (logits, blocks, gradients): (_, _, AttentionGradients) =
                swin.trace_with_gradients(&pixels, None).expect("gradients");
            let trace = Trace {
                pixel_values: Vec::new(),
                image_size: (224, 224),
                logits,
                blocks,
            };
            let relevance = Relevance::new(&trace, &gradients).expect("relevance");
            relevance.maps()
        })
    });
    group.finish();
}

/// vit-base/16 at 224 (12 blocks of global attention over 197 tokens), random weights: forward +
/// backward + every block's relevance map; compare with
/// `python3 tools/bench_torch_relevance.py --model vit`.
fn vit_relevance(c: &mut Criterion) {
    swin_rollout::allocator::keep_freed_memory();
    let config = ViTConfig::vit_base(1000);
    let checkpoint = Checkpoint::random_vit(&config, 7).expect("random weights");
    let network = Network::load(&checkpoint, Architecture::ViT(config)).expect("model");
    let pixels = Tensor::randn(0f32, 1.0, (1, 3, 224, 224), &Device::Cpu).expect("input");
    let mut group = c.benchmark_group("vit_base_relevance");
    group.sample_size(10);
    group.bench_function("forward_backward_relevance", |b| {
        b.iter(|| {
            let (logits, blocks, gradients) = network
                .trace_with_gradients(&pixels, None)
                .expect("gradients");
            let trace = Trace {
                pixel_values: Vec::new(),
                image_size: (224, 224),
                logits,
                blocks,
            };
            Relevance::new(&trace, &gradients)
                .expect("relevance")
                .maps()
        })
    });
    group.finish();
}

criterion_group!(benches, relevance, vit_relevance);
criterion_main!(benches);
