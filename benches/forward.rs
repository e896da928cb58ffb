//! Forward pass of the real swin-tiny architecture (embed 96, depths 2,2,6,2, heads
//! 3,6,12,24, window 7, 224×224) and of swinv2-tiny (the same with window 8 at 256×256, scaled
//! cosine attention and the continuous position bias); random weights, no download; with and
//! without recording every block's attention. Compare with `tools/bench_torch.py` (and
//! `--model swinv2`) on the same machine; and of vit-base/16 (12 blocks of global attention over
//! 197 tokens at 224×224), against `tools/bench_torch.py --model vit`.

use candle_core::{Device, Tensor};
use criterion::{criterion_group, criterion_main, Criterion};

/// The allocator of the `swin-rollout` binary, tuned as it tunes it (see `fn main`), so the
/// figures are the ones users get.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use swin_rollout::model::{Architecture, Checkpoint, Config, Network, ViTConfig};

fn forward(c: &mut Criterion) {
    swin_rollout::allocator::keep_freed_memory();
    let vit = ViTConfig::vit_base(1000);
    for (name, config) in [
        (
            "swin_tiny_forward",
            Architecture::from(Config::swin_tiny(1000)),
        ),
        ("swinv2_tiny_forward", Config::swinv2_tiny(1000).into()),
        ("vit_base_forward", vit.into()),
    ] {
        let side = config.image_size().0;
        let checkpoint = match &config {
            Architecture::Swin(c) => Checkpoint::random(c, 7),
            Architecture::ViT(c) => Checkpoint::random_vit(c, 7),
        }
        .expect("random weights");
        let network = Network::load(&checkpoint, config).expect("model");
        let pixels = Tensor::randn(0f32, 1.0, (1, 3, side, side), &Device::Cpu).expect("input");
        let mut group = c.benchmark_group(name);
        group.sample_size(20);
        group.bench_function("logits_only", |b| {
            b.iter(|| network.forward(&pixels, false).expect("forward"))
        });
        group.bench_function("with_attention_trace", |b| {
            b.iter(|| network.trace(&pixels).expect("trace"))
        });
        group.finish();
    }
}

criterion_group!(benches, forward);
criterion_main!(benches);
