"""An independent, dense numpy rollout, written from the method's definition (not from the Rust
code), to check `swin_rollout.rollout` against on small geometries."""

import numpy as np


def geometry_row(stage, block, height, width, window, shift):
    """One row of the export geometry, with Swin's clamp: a grid not larger than the window
    makes the window the grid's smaller side and the shift 0."""
    if min(height, width) <= window:
        window, shift = min(height, width), 0
    pad = lambda n: -(-n // window) * window
    return [stage, block, height, width, pad(height), pad(width), window, shift]


def index_image(row):
    """[windows, M²] token index (y·W + x) or -1 for padding: pad bottom/right, roll by −s,
    cut windows row-major."""
    _, _, h, w, ph, pw, m, s = row
    out = []
    for wr in range(ph // m):
        for wc in range(pw // m):
            places = []
            for r in range(m):
                for c in range(m):
                    y, x = (wr * m + r + s) % ph, (wc * m + c + s) % pw
                    places.append(y * w + x if y < h and x < w else -1)
            out.append(places)
    return np.array(out)


def block_matrix(attention, row, fusion="mean", residual=0.5, discard=0.0):
    """The dense Â of one block over its stage's tokens."""
    _, _, h, w, _, _, m, _ = row
    n = h * w
    a_hat = np.zeros((n, n))
    fuse = {"mean": np.mean, "max": np.max, "min": np.min}[fusion]
    for win, places in enumerate(index_image(row)):
        fused = fuse(attention[win].astype(np.float64), axis=0)  # [M², M²]
        real = [p for p in range(m * m) if places[p] >= 0]
        for q in real:
            r = np.array([fused[q, k] for k in real])
            r = r / r.sum()
            d = int(np.floor(np.float32(discard) * np.float32(len(real))))
            if d:
                order = sorted(range(len(real)), key=lambda i: (r[i], real[i]))
                for i in order[:d]:
                    if real[i] != q:
                        r[i] = 0.0
                r = r / r.sum()
            for i, k in enumerate(real):
                a_hat[places[q], places[k]] += (1 - residual) * r[i]
            a_hat[places[q], places[q]] += residual
    return a_hat


def merge_matrix(row):
    """P: [tokens of the next stage, tokens of this one], each merged token the mean of its
    real 2×2 children (odd grids are padded)."""
    _, _, h, w = row[:4]
    h2, w2 = -(-h // 2), -(-w // 2)
    p = np.zeros((h2 * w2, h * w))
    for i in range(h2):
        for j in range(w2):
            kids = [(2 * i + a) * w + 2 * j + b for a in (0, 1) for b in (0, 1)
                    if 2 * i + a < h and 2 * j + b < w]
            for k in kids:
                p[i * w2 + j, k] = 1.0 / len(kids)
    return p


def rollout(attentions, geometry, fusion="mean", residual=0.5, discard=0.0):
    """[L, H₀, W₀]: the mean of R_b's rows after every block, normalized to sum 1."""
    h0, w0 = geometry[0][2], geometry[0][3]
    maps, r = [], None
    for k, (a, row) in enumerate(zip(attentions, geometry)):
        a_hat = block_matrix(a, row, fusion, residual, discard)
        if r is None:
            r = a_hat
        else:
            if row[0] != geometry[k - 1][0]:
                r = merge_matrix(geometry[k - 1]) @ r
            r = a_hat @ r
        pooled = r.mean(axis=0)
        maps.append((pooled / pooled.sum()).reshape(h0, w0))
    return np.array(maps, dtype=np.float32)


def random_attention(rng, row, heads):
    """Softmax probabilities [windows, heads, M², M²] over all M² keys (padding included, as
    Swin computes them)."""
    _, _, _, _, ph, pw, m, _ = row
    logits = rng.normal(size=((ph // m) * (pw // m), heads, m * m, m * m)) * 2.0
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)
