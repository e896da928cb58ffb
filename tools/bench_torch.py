"""PyTorch baseline for benches/forward.rs: HF SwinForImageClassification with the
swin-tiny architecture (random weights), eager attention, float32, CPU, batch 1.

    python3 tools/bench_torch.py [--threads 2] [--runs 30]

Prints the median and quartiles of the forward time in milliseconds."""
import argparse
import statistics
import time

import torch
from transformers import SwinConfig, SwinForImageClassification


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=30)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = SwinConfig(image_size=224, patch_size=4, embed_dim=96, depths=[2, 2, 6, 2],
                        num_heads=[3, 6, 12, 24], window_size=7, num_labels=1000)
    for impl in ["eager", "sdpa"]:
        model = SwinForImageClassification._from_config(config, attn_implementation=impl).eval()
        x = torch.randn(1, 3, 224, 224)
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
