"""PyTorch baseline for benches/forward.rs: HF SwinForImageClassification with the
swin-tiny architecture (random weights), eager and SDPA attention, float32, CPU, batch 1; or,
with `--model swinv2`, Swinv2ForImageClassification with swinv2-tiny's (window 8, 256×256),
whose attention has one implementation; or, with `--model vit`, ViTForImageClassification with
vit-base/16's (224×224, 197 tokens), eager and SDPA.

    python3 tools/bench_torch.py [--model swin|swinv2|vit] [--threads 2] [--runs 30]

Prints the median and quartiles of the forward time in milliseconds."""
import argparse
import statistics
import time

import torch
from transformers import (SwinConfig, SwinForImageClassification, Swinv2Config,
                          Swinv2ForImageClassification, ViTConfig, ViTForImageClassification)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--model", choices=["swin", "swinv2", "vit"], default="swin")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    tiny = dict(patch_size=4, embed_dim=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24],
                num_labels=1000)
    if args.model == "swin":
        config, side = SwinConfig(image_size=224, window_size=7, **tiny), 224
        runs = [(impl, lambda impl=impl: SwinForImageClassification._from_config(
            config, attn_implementation=impl)) for impl in ["eager", "sdpa"]]
    elif args.model == "vit":
        config, side = ViTConfig(num_labels=1000), 224
        runs = [(impl, lambda impl=impl: ViTForImageClassification._from_config(
            config, attn_implementation=impl)) for impl in ["eager", "sdpa"]]
    else:
        config, side = Swinv2Config(image_size=256, window_size=8, **tiny), 256
        runs = [("swinv2", lambda: Swinv2ForImageClassification(config))]
    for impl, make in runs:
        model = make().eval()
        x = torch.randn(1, 3, side, side)
        with torch.inference_mode():
            for _ in range(5):
                model(pixel_values=x)
            times = []
            for _ in range(args.runs):
                t = time.perf_counter()
                model(pixel_values=x)
                times.append((time.perf_counter() - t) * 1000)
        q = statistics.quantiles(times, n=4)
        print(f"torch {torch.__version__} {impl}: median {statistics.median(times):.1f} ms "
              f"(q1 {q[0]:.1f}, q3 {q[2]:.1f}) over {args.runs} runs, {args.threads} threads")


if __name__ == "__main__":
    main()
