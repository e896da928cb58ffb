"""Benchmarks of the Python package (`make pytest` builds it into .venv; for timing build it
optimized: `VIRTUAL_ENV=.venv .venv/bin/maturin develop --release -m python/Cargo.toml`).

    .venv/bin/python tools/bench_python.py [--threads 2] [--runs 20]

1. `swin_rollout.rollout()` on the swin-tiny geometry (224×224, window 7, depths 2-2-6-2,
   heads 3-6-12-24) with random attention: compare with `cargo bench --bench rollout --
   from_export` (the same validation, build and pooled maps in Rust, without the crossing).
2. `swin_rollout.torch.capture()` against a plain forward of the same Hugging Face swin-tiny
   (random weights), with SDPA (the default) and eager attention: every capture against the
   forwards just before and after it.

Prints medians in milliseconds and the ratios."""
import argparse
import statistics
import time

import numpy as np


def swin_tiny_trace(rng):
    geometry, attentions = [], []
    for stage, (depth, heads) in enumerate([(2, 3), (2, 6), (6, 12), (2, 24)]):
        n = 56 >> stage
        for block in range(depth):
            window = min(7, n)
            shift = 3 if block % 2 == 1 and n > 7 else 0
            geometry.append([stage, block, n, n, n, n, window, shift])
            windows = (n // window) ** 2
            logits = rng.random((windows, heads, window * window, window * window), dtype=np.float32) * 4
            e = np.exp(logits)
            attentions.append(e / e.sum(axis=-1, keepdims=True))
    return attentions, np.array(geometry, dtype=np.int64)


def median_ms(f, runs):
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        f()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--only", choices=["rollout", "capture"],
                    help="one of the two (capture needs torch and transformers)")
    args = ap.parse_args()

    import swin_rollout

    if args.only != "capture":
        attentions, geometry = swin_tiny_trace(np.random.default_rng(42))
        swin_rollout.rollout(attentions, geometry)
        ms = median_ms(lambda: swin_rollout.rollout(attentions, geometry), args.runs)
        print(f"rollout() swin-tiny geometry: {ms:.1f} ms (median of {args.runs})")
    if args.only == "rollout":
        return

    import torch
    from transformers import SwinConfig, SwinForImageClassification

    from swin_rollout.torch import capture

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = SwinConfig(image_size=224, patch_size=4, embed_dim=96, depths=[2, 2, 6, 2],
                        num_heads=[3, 6, 12, 24], window_size=7, num_labels=1000)
    x = torch.randn(1, 3, 224, 224)
    for impl in ["sdpa", "eager"]:
        model = SwinForImageClassification._from_config(config, attn_implementation=impl).eval()

        def plain():
            with torch.no_grad():
                model(x)

        for _ in range(3):
            plain()
            capture(model, x)
        # Paired: each capture against the mean of the forwards just before and after it, so
        # that drift in the machine's speed cancels; the median ratio and its quartiles.
        forward, ratios = [], []
        for _ in range(args.runs):
            before = median_ms(plain, 1)
            c = median_ms(lambda: capture(model, x), 1)
            after = median_ms(plain, 1)
            forward.append(before)
            ratios.append(c / ((before + after) / 2))
        ratios.sort()
        q = lambda p: 100 * (ratios[int(p * (len(ratios) - 1))] - 1)
        print(f"{impl:5} forward {statistics.median(forward):.1f} ms, capture +{q(0.5):.1f} % "
              f"(quartiles +{q(0.25):.1f} / +{q(0.75):.1f} %, {args.runs} pairs)")

if __name__ == "__main__":
    main()
