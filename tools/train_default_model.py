"""Train the small default Swin Transformer (or, with ``--arch vit``, the small ViT that the
``compare`` template sets beside it) on cluttered Fashion-MNIST scenes.

Scenes come from ``tools/scenes.py``.  Training data is an endless stream of
fresh scenes from the Fashion-MNIST *train* split: epoch ``e`` uses scenes
``e*epoch_size .. (e+1)*epoch_size-1`` of base seed ``--train-seed`` (so no
scene is seen twice).  After every epoch the model is evaluated on a fixed
set of ``--val-scenes`` held-out scenes (t10k split, seed ``--val-seed``);
whenever that accuracy improves the checkpoint is written in Hugging Face
layout to ``--out`` (config.json, preprocessor_config.json,
model.safetensors).  Per-epoch lines go to ``--log``.

Learning-rate schedule: linear warmup then cosine decay to 0, driven by the
training progress ``p = max(step / max_steps, elapsed / time_budget)`` so the
schedule always completes within the wall-clock budget (``--time-budget``
seconds or until ``--deadline`` HH:MM UTC, whichever is earlier).

Final check (``--final-eval N``): reload ``--out`` with
``SwinForImageClassification.from_pretrained`` and evaluate on N held-out
scenes of a *different* seed (``--test-seed``), plus the validation set.

Example::

    python tools/train_default_model.py --deadline 11:50
    python tools/train_default_model.py --final-eval 2000 --skip-train
    python tools/train_default_model.py --arch vit --out assets/vit \
        --log tools/train_log_vit.txt --deadline 21:10
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import re
import shutil
import sys
import time

import numpy as np

# On a small, shared CPU the default OpenMP spin-waiting collapses throughput
# when other processes compete for the cores (measured: 2.5 -> 13.8 img/s).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import scenes  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# torch.compile and the allocator settle in the first steps; --bench times only what follows.
BENCH_WARMUP_STEPS = 10
MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]


def parse_args():
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", choices=["swin", "vit"], default="swin")
    ap.add_argument("--embed-dim", type=int, default=24)
    # ViT only: a 14x14 patch grid at 224 (patch 16), one CLS token.
    ap.add_argument("--vit-hidden", type=int, default=128)
    ap.add_argument("--vit-layers", type=int, default=6)
    ap.add_argument("--vit-heads", type=int, default=4)
    ap.add_argument("--vit-patch", type=int, default=16)
    ap.add_argument("--depths", type=str, default="1,1,3,1")
    ap.add_argument("--heads", type=str, default="1,2,4,8")
    ap.add_argument("--mlp-ratio", type=float, default=4.0)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--weight-decay", type=float, default=0.05)
    ap.add_argument("--warmup", type=float, default=0.04, help="fraction of progress")
    ap.add_argument("--label-smoothing", type=float, default=0.1)
    ap.add_argument("--epoch-size", type=int, default=6000)
    ap.add_argument("--max-epochs", type=int, default=100)
    ap.add_argument("--max-steps", type=int, default=10**9)
    ap.add_argument("--time-budget", type=float, default=7200.0, help="seconds")
    ap.add_argument("--deadline", type=str, default=None, help="HH:MM UTC today")
    ap.add_argument("--eval-reserve", type=float, default=90.0, help="s kept for eval+save")
    ap.add_argument(
        "--ema",
        type=float,
        default=0.0,
        help="keep an exponential moving average of the weights with this decay (e.g. 0.999); "
        "validation, selection and the saved checkpoint then use the average",
    )
    ap.add_argument("--train-seed", type=int, default=1)
    ap.add_argument("--val-seed", type=int, default=2)
    ap.add_argument("--test-seed", type=int, default=3)
    ap.add_argument("--val-scenes", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--out", type=str, default=os.path.join(ROOT, "assets", "model"))
    ap.add_argument("--log", type=str, default=os.path.join(ROOT, "tools", "train_log.txt"))
    ap.add_argument("--no-compile", action="store_true", help="disable torch.compile")
    ap.add_argument(
        "--bf16",
        action="store_true",
        help="run the training forward/backward under bfloat16 autocast (weights, optimizer and "
        "the saved checkpoint stay float32); faster on CPUs with AVX512-BF16 or AMX",
    )
    ap.add_argument("--skip-train", action="store_true")
    ap.add_argument("--final-eval", type=int, default=0)
    ap.add_argument(
        "--bench", type=int, default=0, help="time N train steps after 10 warm-up steps and exit"
    )
    ap.add_argument(
        "--init-from",
        type=str,
        default=None,
        help="warm-start from this HF checkpoint folder; blocks that it lacks (deeper --depths) "
        "start as identities (zeroed output projections), so training resumes from its function",
    )
    return ap.parse_args()


class TrainScenes(torch.utils.data.Dataset):
    def __init__(self, seed, start, count):
        self.seed, self.start, self.count = seed, start, count
        self.src = None

    def __len__(self):
        return self.count

    def __getitem__(self, i):
        if self.src is None:
            self.src = scenes.SceneSource("train")
        img, label, _, _ = self.src.scene(self.seed, self.start + i)
        return torch.from_numpy(img), label


def _worker_init(_):
    torch.set_num_threads(1)


def to_pixels(imgs_u8: torch.Tensor) -> torch.Tensor:
    """uint8 NHWC -> normalized float NCHW (same as ViTImageProcessor)."""
    x = imgs_u8.permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    return (x - mean) / std


@torch.no_grad()
def predict(model, imgs: np.ndarray, bs=100) -> np.ndarray:
    model.eval()
    preds = []
    for i in range(0, len(imgs), bs):
        x = to_pixels(torch.from_numpy(imgs[i : i + bs]))
        preds.append(model(pixel_values=x).logits.argmax(-1).numpy())
    model.train()
    return np.concatenate(preds)


def evaluate(model, imgs: np.ndarray, labels: np.ndarray) -> float:
    return float((predict(model, imgs) == labels).mean())


def per_class_accuracy(pred: np.ndarray, labels: np.ndarray) -> dict:
    """Accuracy of each true class and the class it is most often mistaken for."""
    out = {}
    for c, name in enumerate(scenes.CLASS_NAMES):
        mine = pred[labels == c]
        wrong = mine[mine != c]
        top = np.bincount(wrong, minlength=len(scenes.CLASS_NAMES)).argmax() if len(wrong) else None
        out[name] = {
            "acc": round(float((mine == c).mean()), 3) if len(mine) else None,
            "n": int(len(mine)),
            "most_confused_with": scenes.CLASS_NAMES[top] if top is not None else None,
        }
    return out


def labels():
    return {
        "num_labels": 10,
        "id2label": {i: n for i, n in enumerate(scenes.CLASS_NAMES)},
        "label2id": {n: i for i, n in enumerate(scenes.CLASS_NAMES)},
    }


def build_model(args):
    if args.arch == "vit":
        from transformers import ViTConfig, ViTForImageClassification

        cfg = ViTConfig(
            image_size=224,
            patch_size=args.vit_patch,
            num_channels=3,
            hidden_size=args.vit_hidden,
            num_hidden_layers=args.vit_layers,
            num_attention_heads=args.vit_heads,
            intermediate_size=4 * args.vit_hidden,
            hidden_act="gelu",
            hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0,
            layer_norm_eps=1e-6,
            qkv_bias=True,
            **labels(),
        )
        return ViTForImageClassification(cfg)

    from transformers import SwinConfig, SwinForImageClassification

    depths = [int(v) for v in args.depths.split(",")]
    heads = [int(v) for v in args.heads.split(",")]
    cfg = SwinConfig(
        image_size=224,
        patch_size=4,
        num_channels=3,
        embed_dim=args.embed_dim,
        depths=depths,
        num_heads=heads,
        window_size=7,
        mlp_ratio=args.mlp_ratio,
        qkv_bias=True,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        drop_path_rate=0.0,
        hidden_act="gelu",
        use_absolute_embeddings=False,
        layer_norm_eps=1e-5,
        **labels(),
    )
    return SwinForImageClassification(cfg)


def save_checkpoint(model, out_dir):
    tmp = out_dir.rstrip("/") + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    model.save_pretrained(tmp, safe_serialization=True)
    pre = {
        "image_processor_type": "ViTImageProcessor",
        "do_resize": True,
        "size": {"height": 224, "width": 224},
        "resample": 3,
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": MEAN,
        "image_std": STD,
    }
    with open(os.path.join(tmp, "preprocessor_config.json"), "w") as f:
        json.dump(pre, f, indent=2)
        f.write("\n")
    os.makedirs(out_dir, exist_ok=True)
    for name in os.listdir(tmp):  # os.replace is atomic per file
        os.replace(os.path.join(tmp, name), os.path.join(out_dir, name))
    shutil.rmtree(tmp, ignore_errors=True)


def log_line(path, text):
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%H:%M:%S")
    line = f"[{stamp}Z] {text}"
    print(line, flush=True)
    with open(path, "a") as f:
        f.write(line + "\n")


def main():
    args = parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    t0 = time.time()
    budget = args.time_budget
    if args.deadline:
        now = dt.datetime.now(dt.timezone.utc)
        hh, mm = (int(v) for v in args.deadline.split(":"))
        dl = now.replace(hour=hh, minute=mm, second=0, microsecond=0)
        budget = min(budget, (dl - now).total_seconds())

    val_src = scenes.SceneSource("test")
    val_imgs, val_labels = val_src.batch(args.val_seed, 0, args.val_scenes)

    if not args.skip_train:
        train(args, budget, t0, val_imgs, val_labels)

    if args.final_eval:
        from transformers import AutoModelForImageClassification

        model = AutoModelForImageClassification.from_pretrained(args.out)
        n_params = sum(p.numel() for p in model.parameters())
        acc_val = evaluate(model, val_imgs, val_labels)
        te = time.time()
        test_imgs, test_labels = val_src.batch(args.test_seed, 0, args.final_eval)
        test_pred = predict(model, test_imgs)
        acc_test = float((test_pred == test_labels).mean())
        pred_time = time.time() - te
        res = {
            "reloaded_from": os.path.relpath(args.out, ROOT),
            "params": n_params,
            "val_acc": acc_val,
            "val_scenes": len(val_labels),
            "val_seed": args.val_seed,
            "test_acc": acc_test,
            "test_scenes": args.final_eval,
            "test_seed": args.test_seed,
            "gen_plus_eval_seconds": round(pred_time, 1),
        }
        log_line(args.log, "FINAL " + json.dumps(res))
        log_line(args.log, "PER-CLASS " + json.dumps(per_class_accuracy(test_pred, test_labels)))


def warm_start(model, folder):
    """Copy every tensor of `folder`'s checkpoint into `model`; zero new blocks' outputs.

    A new block whose attention-output and MLP-output projections are zero adds
    nothing to the residual stream, so the grown model computes exactly what the
    old one did and training continues from there instead of from scratch.
    """
    from transformers import AutoModelForImageClassification

    # Loading through transformers maps the hub names to its module names.
    old = AutoModelForImageClassification.from_pretrained(folder).state_dict()
    state = model.state_dict()
    copied = 0
    for name, tensor in old.items():
        if name not in state or state[name].shape != tensor.shape:
            raise SystemExit(f"--init-from: {name} {tuple(tensor.shape)} does not fit the new model")
        state[name] = tensor
        copied += 1
    grown = set()
    for name in state:
        if name in old:
            continue
        # A Swin grows blocks within its stages; a ViT grows layers after its last one.
        m = re.match(r"swin\.encoder\.layers\.(\d+)\.blocks\.(\d+)\.", name) or re.match(
            r"vit\.layers\.(\d+)\.", name
        )
        if not m:
            raise SystemExit(f"--init-from: the old checkpoint lacks {name}")
        grown.add(m.group(0))
        # The attention output and the second MLP layer (module names of transformers 5).
        if re.search(r"\.(attention\.o_proj|mlp\.fc2)\.(weight|bias)$", name):
            state[name] = torch.zeros_like(state[name])
    model.load_state_dict(state)
    return copied, sorted(grown)


def shape(args):
    if args.arch == "vit":
        return (
            f"hidden={args.vit_hidden} layers={args.vit_layers} heads={args.vit_heads} "
            f"patch={args.vit_patch}"
        )
    return f"embed_dim={args.embed_dim} depths={args.depths} heads={args.heads}"


def train(args, budget, t0, val_imgs, val_labels):
    model = build_model(args)
    if args.init_from:
        copied, grown = warm_start(model, args.init_from)
        print(f"warm start: {copied} tensors from {args.init_from}; new identity blocks: {grown}", flush=True)
    model.train()
    n_params = sum(p.numel() for p in model.parameters())
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "position" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "position" not in n)]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=args.lr,
        betas=(0.9, 0.999),
    )
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=args.label_smoothing)

    train_budget = budget - args.eval_reserve - (time.time() - t0)
    log_line(
        args.log,
        f"START arch={args.arch} params={n_params} {shape(args)} "
        f"bs={args.batch_size} lr={args.lr} wd={args.weight_decay} ls={args.label_smoothing} "
        f"epoch_size={args.epoch_size} train_budget_s={train_budget:.0f} max_steps={args.max_steps} "
        f"train_seed={args.train_seed} init_from={args.init_from} ema={args.ema}",
    )
    # torch.compile (inductor) is ~3x faster than eager on this 2-core CPU; the
    # first step pays the compile time (~1.5 min).  Evaluation/saving use the
    # uncompiled `model`, which shares the parameters.
    fwd = model if args.no_compile else torch.compile(model)
    t_train = time.time()

    def progress(step):
        return max(step / args.max_steps, (time.time() - t_train) / train_budget)

    def lr_at(p):
        if p < args.warmup:
            return args.lr * p / args.warmup
        q = min(1.0, (p - args.warmup) / (1 - args.warmup))
        return args.lr * 0.5 * (1 + math.cos(math.pi * q))

    # The average of recent weights sits nearer the loss basin's centre than any
    # single noisy step; it starts from the initial weights, which for a warm
    # start are already a good model.
    live = [t for t in model.state_dict().values() if t.is_floating_point()]
    ema = [t.detach().clone() for t in live] if args.ema else None

    best = -1.0
    step = 0
    seen = 0
    done = False
    for epoch in range(args.max_epochs):
        ds = TrainScenes(args.train_seed, epoch * args.epoch_size, args.epoch_size)
        dl = torch.utils.data.DataLoader(
            ds,
            batch_size=args.batch_size,
            shuffle=False,
            num_workers=args.workers,
            worker_init_fn=_worker_init if args.workers else None,
            drop_last=True,
            prefetch_factor=4 if args.workers else None,
        )
        loss_sum, n_b, correct, count = 0.0, 0, 0, 0
        te = time.time()
        for imgs, labels in dl:
            p = progress(step)
            if p >= 1.0:
                done = True
                break
            for g in opt.param_groups:
                g["lr"] = lr_at(p)
            x = to_pixels(imgs)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
                logits = fwd(pixel_values=x).logits
            loss = loss_fn(logits.float(), labels)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            if ema is not None:
                with torch.no_grad():
                    torch._foreach_lerp_(ema, live, 1.0 - args.ema)
            step += 1
            seen += len(labels)
            loss_sum += loss.item()
            n_b += 1
            correct += int((logits.argmax(-1) == labels).sum())
            count += len(labels)
            if step % 20 == 0:
                print(
                    f"  ep {epoch} step {step} loss {loss_sum / n_b:.4f} train_acc {correct / count:.3f} "
                    f"lr {lr_at(p):.2e} p {p:.3f} {count / (time.time() - te):.1f} img/s",
                    flush=True,
                )
            if args.bench and step == BENCH_WARMUP_STEPS:
                t_bench, seen_bench = time.time(), seen
            if args.bench and step >= args.bench + BENCH_WARMUP_STEPS:
                rate = (seen - seen_bench) / (time.time() - t_bench)
                print(f"BENCH {rate:.2f} img/s (after {BENCH_WARMUP_STEPS} warm-up steps)")
                return
        if n_b == 0:
            break
        ep_time = time.time() - te
        if ema is not None:
            with torch.no_grad():
                backup = [t.clone() for t in live]
                torch._foreach_copy_(live, ema)
        acc = evaluate(model, val_imgs, val_labels)
        saved = ""
        if acc > best:
            best = acc
            save_checkpoint(model, args.out)
            saved = " saved"
        if ema is not None:
            with torch.no_grad():
                torch._foreach_copy_(live, backup)
        log_line(
            args.log,
            f"epoch {epoch + 1} steps {step} seen {seen} train_loss {loss_sum / n_b:.4f} "
            f"train_acc {correct / count:.4f} val_acc {acc:.4f} best {best:.4f} "
            f"epoch_s {ep_time:.0f} thr {count / ep_time:.1f} img/s elapsed_s {time.time() - t_train:.0f}{saved}",
        )
        if done:
            break
    log_line(args.log, f"END steps {step} seen {seen} best_val_acc {best:.4f} train_s {time.time() - t_train:.0f}")


if __name__ == "__main__":
    main()
