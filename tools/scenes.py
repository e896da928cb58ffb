"""Seeded, reproducible "cluttered Fashion-MNIST" scene generator.

Source data: Debian's Fashion-MNIST (idx format, gzip) in
``/usr/share/datasets/fashion-mnist/``.  Training scenes draw items from the
60 000 ``train-*`` images, held-out (test / demo) scenes from the 10 000
``t10k-*`` images.  Both the main item and the clutter fragments of a scene
come from the same split.

A scene is a 224x224 RGB uint8 image containing ONE Fashion-MNIST item
(scaled 2-4x, tinted, fully inside the canvas) on a cluttered background.
The label is the item's class (0..9, names in ``CLASS_NAMES``).  Along with
the image the generator returns the item's binary mask and its bounding box.

Random numbers
--------------
Scene ``i`` of a scene set with base seed ``S`` uses its own generator
``rng = numpy.random.default_rng([S, i])`` (PCG64, SeedSequence of [S, i]).
Notation: ``U{a..b}`` = uniform integer in [a, b] inclusive
(``rng.integers(a, b + 1)``); ``U[a,b)`` = uniform float (``rng.uniform``);
``N(0,s)`` = normal (``rng.normal``).  ``N_src`` = number of images in the
split (60000 or 10000).  Canvas size ``C = 224``.

Helper "tint colour": draw ``c = U{64..255}`` three times (R, G, B, in that
order, one ``rng.integers(64, 256, size=3)`` call), then rescale so that the
largest channel is 255: ``c = c * 255 / max(c)`` (float).

Helper "resize": a 28x28 uint8 glyph (or a crop of it) is resized to
(w, h) with PIL ``Image.resize((w, h), Image.BILINEAR)`` (resample=2,
triangle filter, half-pixel centres) and converted to float intensity
``I`` in [0, 255].

Draws, in this exact order:

1. Main item index ``k = U{0..N_src-1}``; label = labels[k].
2. Scale ``s = U[2, 4)``; item side ``size = clip(round(28*s), 56, 112)``
   (the item is a ``size x size`` square).
3. Position ``x0 = U{0..C-size}``, then ``y0 = U{0..C-size}``
   (top-left corner; item fully inside the canvas).
4. Main item tint colour ``c_main`` (tint-colour helper above).
5. Background base colour ``b = U{0..79}`` x3 (one ``integers(0, 80, 3)``).
6. Texture amplitude ``A = U[0, 40)``.
7. Texture grid ``g``: 8x8x3 values ``U[0, 1)`` (one ``rng.random((8,8,3))``),
   bilinearly upsampled to 224x224 with half-pixel centres and edge clamping
   (source coordinate ``u = (x + 0.5) / 28 - 0.5``, clamped to [0, 7]).
8. Pixel noise std ``sigma = U[0, 12)``; then noise ``n = N(0, sigma)`` of
   shape (224, 224, 3) (one ``rng.normal(0, sigma, (224,224,3))`` call).
   Background ``bg = b + A * g + n`` (float, per channel).
9. Number of fragments ``F = U{4..8}``.  For each fragment f = 1..F, in order:
   a. source index ``j = U{0..N_src-1}`` (any item, may equal k);
   b. crop width ``cw = U{10..20}``, crop height ``ch = U{10..20}``;
   c. crop origin ``cx = U{0..28-cw}``, ``cy = U{0..28-ch}``;
   d. scale ``fs = U[1, 2.5)``; fragment size
      ``w = round(cw*fs)``, ``h = round(ch*fs)``; the crop
      ``img[j][cy:cy+ch, cx:cx+cw]`` is resized to (w, h);
   e. position ``px = U{-(w//2) .. C-1-(w//2)}``,
      ``py = U{-(h//2) .. C-1-(h//2)}`` (may be partly outside; clipped);
   f. tint colour ``c_f`` (tint-colour helper);
   g. opacity ``m = U[0.25, 0.55)``;
   composite over the canvas: ``alpha = m * I / 255``,
   ``canvas = (1 - alpha) * canvas + alpha * c_f``.
   (Fragments are at most 50 px and at most 55 % opaque, so they are
   smaller and dimmer than the main item.)
10. Main item: ``img[k]`` resized to (size, size), ``alpha = I / 255``,
    composited at (x0, y0) the same way with ``c_main`` (fully opaque where
    the glyph is 255).
11. ``image = clip(round(canvas), 0, 255)`` as uint8.

Mask and box (no random draws): ``mask`` is the 224x224 bool array that is
True where the resized main-item intensity ``I > 64`` (inside its square).
``bbox = (x0b, y0b, x1b, y1b)`` is the tight bounding box of ``mask`` in
canvas pixels with exclusive ends; if the mask is empty (never happens in
practice) it is the item square ``(x0, y0, x0+size, y0+size)``.

Usage::

    from scenes import SceneSource
    src = SceneSource("test")
    img, label, bbox, mask = src.scene(seed=1234, index=0)
    imgs, labels = src.batch(seed=1234, start=0, count=1000)

Demo scenes: ``python tools/scenes.py demo [MODEL_DIR]`` writes
``assets/scenes/scene_{0..3}.png`` and ``assets/scenes/scenes.json`` from the held-out t10k
split: base seed ``DEMO_SEED``, or with ``MODEL_DIR`` the first seed >= ``DEMO_SEED`` whose
four scenes have four distinct classes that the model there classifies correctly (a demo
should show the model working; ``evaluate`` measures how often it does).
"""

from __future__ import annotations

import gzip
import json
import os
import sys

import numpy as np
from PIL import Image

DATA_DIR = "/usr/share/datasets/fashion-mnist"
CANVAS = 224
DEMO_SEED = 108  # first seed >= 100 whose 4 demo scenes have 4 distinct classes
CLASS_NAMES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
MASK_THRESHOLD = 64


def _read_idx(path: str) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load_split(split: str, data_dir: str = DATA_DIR):
    prefix = {"train": "train", "test": "t10k"}[split]
    images = _read_idx(os.path.join(data_dir, f"{prefix}-images-idx3-ubyte.gz"))
    labels = _read_idx(os.path.join(data_dir, f"{prefix}-labels-idx1-ubyte.gz"))
    return images, labels


def _tint(rng) -> np.ndarray:
    c = rng.integers(64, 256, size=3).astype(np.float64)
    return c * 255.0 / c.max()


def _resize(glyph: np.ndarray, w: int, h: int) -> np.ndarray:
    im = Image.fromarray(np.ascontiguousarray(glyph)).resize((w, h), Image.BILINEAR)
    return np.asarray(im, dtype=np.float32)


def _upsample_grid(g: np.ndarray, out: int = CANVAS) -> np.ndarray:
    n = g.shape[0]
    u = (np.arange(out) + 0.5) * n / out - 0.5
    u = np.clip(u, 0, n - 1)
    i0 = np.floor(u).astype(int)
    i1 = np.minimum(i0 + 1, n - 1)
    t = (u - i0).astype(np.float32)
    rows = g[i0] * (1 - t)[:, None, None] + g[i1] * t[:, None, None]
    return rows[:, i0] * (1 - t)[None, :, None] + rows[:, i1] * t[None, :, None]


def _composite(canvas, inten, x, y, colour, opacity):
    h, w = inten.shape
    C = canvas.shape[0]
    xa, ya = max(x, 0), max(y, 0)
    xb, yb = min(x + w, C), min(y + h, C)
    if xa >= xb or ya >= yb:
        return
    a = (opacity / 255.0) * inten[ya - y : yb - y, xa - x : xb - x, None]
    region = canvas[ya:yb, xa:xb]
    canvas[ya:yb, xa:xb] = (1 - a) * region + a * colour.astype(np.float32)


def make_scene(rng, images: np.ndarray, labels: np.ndarray):
    """Generate one scene with generator ``rng``. Returns (img, label, bbox, mask)."""
    n_src = images.shape[0]
    C = CANVAS
    # 1-4: main item parameters
    k = int(rng.integers(0, n_src))
    s = rng.uniform(2.0, 4.0)
    size = int(np.clip(round(28 * s), 56, 112))
    x0 = int(rng.integers(0, C - size + 1))
    y0 = int(rng.integers(0, C - size + 1))
    c_main = _tint(rng)
    # 5-8: background
    b = rng.integers(0, 80, size=3).astype(np.float32)
    A = rng.uniform(0.0, 40.0)
    g = rng.random((8, 8, 3)).astype(np.float32)
    sigma = rng.uniform(0.0, 12.0)
    noise = rng.normal(0.0, sigma, (C, C, 3)).astype(np.float32)
    canvas = b + np.float32(A) * _upsample_grid(g) + noise
    # 9: fragments
    nf = int(rng.integers(4, 9))
    for _ in range(nf):
        j = int(rng.integers(0, n_src))
        cw = int(rng.integers(10, 21))
        ch = int(rng.integers(10, 21))
        cx = int(rng.integers(0, 28 - cw + 1))
        cy = int(rng.integers(0, 28 - ch + 1))
        fs = rng.uniform(1.0, 2.5)
        w, h = int(round(cw * fs)), int(round(ch * fs))
        inten = _resize(images[j, cy : cy + ch, cx : cx + cw], w, h)
        px = int(rng.integers(-(w // 2), C - (w // 2)))
        py = int(rng.integers(-(h // 2), C - (h // 2)))
        c_f = _tint(rng)
        m = rng.uniform(0.25, 0.55)
        _composite(canvas, inten, px, py, c_f, m)
    # 10: main item
    inten = _resize(images[k], size, size)
    _composite(canvas, inten, x0, y0, c_main, 1.0)
    img = np.clip(np.rint(canvas), 0, 255).astype(np.uint8)
    # mask / bbox
    mask = np.zeros((C, C), dtype=bool)
    mask[y0 : y0 + size, x0 : x0 + size] = inten > MASK_THRESHOLD
    ys, xs = np.nonzero(mask)
    if len(xs):
        bbox = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
    else:
        bbox = (x0, y0, x0 + size, y0 + size)
    return img, int(labels[k]), bbox, mask


class SceneSource:
    def __init__(self, split: str, data_dir: str = DATA_DIR):
        self.split = split
        self.images, self.labels = load_split(split, data_dir)

    def scene(self, seed: int, index: int):
        rng = np.random.default_rng([seed, index])
        return make_scene(rng, self.images, self.labels)

    def batch(self, seed: int, start: int, count: int):
        imgs = np.empty((count, CANVAS, CANVAS, 3), dtype=np.uint8)
        labels = np.empty(count, dtype=np.int64)
        for n in range(count):
            img, lab, _, _ = self.scene(seed, start + n)
            imgs[n] = img
            labels[n] = lab
        return imgs, labels


def pick_demo_seed(model_dir: str, count: int = 4, first: int = DEMO_SEED) -> int:
    """First seed >= `first` whose `count` scenes have distinct classes, all predicted right."""
    import torch
    from transformers import SwinForImageClassification

    model = SwinForImageClassification.from_pretrained(model_dir).eval()
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    src = SceneSource("test")
    for seed in range(first, first + 1000):
        imgs, labels = src.batch(seed, 0, count)
        if len(set(labels.tolist())) < count:
            continue
        x = (torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 255.0 - mean) / std
        with torch.no_grad():
            pred = model(pixel_values=x).logits.argmax(-1).numpy()
        if (pred == labels).all():
            return seed
    raise SystemExit("no seed in 1000 gives demo scenes the model classifies correctly")


def write_demo(out_dir: str, count: int = 4, seed: int = DEMO_SEED):
    os.makedirs(out_dir, exist_ok=True)
    src = SceneSource("test")
    entries = []
    for i in range(count):
        img, lab, bbox, _ = src.scene(seed, i)
        fname = f"scene_{i}.png"
        Image.fromarray(img).save(os.path.join(out_dir, fname), optimize=True)
        entries.append(
            {
                "file": fname,
                "label": lab,
                "label_name": CLASS_NAMES[lab],
                "bbox": list(bbox),
                "split": "test",
                "seed": seed,
                "index": i,
                "rng": "numpy.random.default_rng([seed, index])",
            }
        )
    with open(os.path.join(out_dir, "scenes.json"), "w") as f:
        json.dump({"generator": "tools/scenes.py", "scenes": entries}, f, indent=2)
        f.write("\n")
    return entries


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "demo":
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        out = os.path.join(root, "assets", "scenes")
        seed = pick_demo_seed(sys.argv[2]) if len(sys.argv) > 2 else DEMO_SEED
        for e in write_demo(out, seed=seed):
            print(e)
    else:
        import time

        src = SceneSource("train")
        t = time.time()
        imgs, labels = src.batch(1, 0, 200)
        print(f"{(time.time() - t) / 200 * 1000:.2f} ms/scene", np.bincount(labels))
