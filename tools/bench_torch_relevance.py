"""PyTorch baseline for the class-specific window-aware relevance (Chefer et al. 2021 rule on
Swin): HF SwinForImageClassification with the swin-tiny architecture
(microsoft/swin-tiny-patch4-window7-224's config: embed 96, depths 2,2,6,2, heads 3,6,12,24,
window 7, 224x224, 1000 labels) with random weights (built from SwinConfig, nothing downloaded),
eager attention, float32, CPU, batch 1.

    python3 tools/bench_torch_relevance.py [--threads N] [--runs 10] [--warmup 3] [--check]
    python3 tools/bench_torch_relevance.py --model vit   # vit-base/16: forward + backward only

Times (median and quartiles over --runs after --warmup untimed runs):
  * forward only (torch.inference_mode), for scale;
  * forward + backward of the top logit with every block's attention probabilities (the softmax
    output that multiplies V, captured from the SwinAttention forward hook's output[1]) retained
    in the graph with retain_grad() and their .grad read, pixel_values.requires_grad_(True):
      - "activation grads": every parameter requires_grad False (only activation gradients: the
        fair baseline for a tool that needs no weight gradients);
      - "param grads": parameters require grad (transformers' default), weight gradients computed too;
  * a simple torch implementation of the relevance from the captured A and dA (not part of the
    forward+backward numbers): Ā_b = mean_heads max(0, dA ⊙ A), R = I (N0 x N0, float64),
    per block R <- P R at a stage start (2x2 average of the real children), R <- R + Ā_b R with
    Ā_b applied window by window (gather the window's rows of R, bmm, scatter back), the map after
    every block = rows-mean of R (the definition in tests/fixtures/make_relevance.py); and the
    final map alone by the transposed (vector) recursion u <- u + u Ā_b from the last block back.

--check first runs the torch relevance on tests/fixtures/swin_pad (padding + shift + odd merge)
with the stored Ā of relevance.safetensors and compares with its relevance maps.
--threads defaults to all cores (os.cpu_count()).
"""
import argparse
import os
import statistics
import time

import torch
import transformers
from transformers import SwinConfig, SwinForImageClassification

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ---------------------------------------------------------------------------------------------
# capture: attention probabilities in the graph, geometry of every block

def blocks(model):
    return [blk for stage in model.swin.encoder.layers for blk in stage.blocks]


def install_hooks(model, store):
    """Forward hooks: store['attn'] gets every block's attention probs (retain_grad), store['dims']
    each block's (H, W) input dimensions. Returns the handles."""
    handles = []
    for blk in blocks(model):
        def pre(mod, args, kwargs):
            dims = args[1] if len(args) > 1 else kwargs["input_dimensions"]
            store["dims"].append((int(dims[0]), int(dims[1])))

        def post(mod, args, output):
            a = output[1]
            if a.requires_grad:
                a.retain_grad()
            store["attn"].append(a)

        handles.append(blk.register_forward_pre_hook(pre, with_kwargs=True))
        handles.append(blk.attention.register_forward_hook(post))
    return handles


def geometry(model, dims):
    """[(stage, H, W, Hp, Wp, m, shift)] per block, read from the modules after a forward."""
    out, k = [], 0
    for si, stage in enumerate(model.swin.encoder.layers):
        for blk in stage.blocks:
            H, W = dims[k]
            m, s = int(blk.window_size), int(blk.shift_size)
            out.append((si, H, W, -(-H // m) * m, -(-W // m) * m, m, s))
            k += 1
    return out


def forward_backward(model, x, store):
    store["attn"].clear()
    store["dims"].clear()
    logits = model(pixel_values=x).logits
    logits[0, int(logits[0].argmax())].backward()
    grads = [a.grad for a in store["attn"]]
    assert all(g is not None for g in grads)
    return store["attn"], grads


# ---------------------------------------------------------------------------------------------
# relevance in torch (float64)

def window_token_index(H, W, Hp, Wp, m, s):
    """[windows, m*m] raster token index of each window place, -1 for padding (HF: pad
    bottom/right, roll by -s, partition row-major)."""
    ys = (torch.arange(Hp).view(Hp // m, m) + s) % Hp  # [nwr, m]
    xs = (torch.arange(Wp).view(Wp // m, m) + s) % Wp  # [nwc, m]
    y = ys[:, None, :, None].expand(Hp // m, Wp // m, m, m)
    x = xs[None, :, None, :].expand(Hp // m, Wp // m, m, m)
    idx = torch.where((y < H) & (x < W), y * W + x, torch.full_like(y, -1))
    return idx.reshape(-1, m * m)


def merge_rows(R, H, W):
    """P @ R for the patch merge of an H x W grid: each merged token averages its real children."""
    N0 = R.shape[1]
    H2, W2 = (H + 1) // 2, (W + 1) // 2
    g = torch.zeros(2 * H2, 2 * W2, N0, dtype=R.dtype)
    g[:H, :W] = R.view(H, W, N0)
    cnt = torch.zeros(2 * H2, 2 * W2, 1, dtype=R.dtype)
    cnt[:H, :W] = 1
    s = g.view(H2, 2, W2, 2, N0).sum(dim=(1, 3))
    c = cnt.view(H2, 2, W2, 2, 1).sum(dim=(1, 3))
    return (s / c).reshape(H2 * W2, N0)


def merge_transpose(u, H, W):
    """u P for the merge of an H x W grid: child (y, x) gets u[parent] / (real children of parent)."""
    W2 = (W + 1) // 2
    y = torch.arange(H)[:, None]
    x = torch.arange(W)[None, :]
    parent = ((y // 2) * W2 + x // 2).reshape(-1)
    cnt = torch.bincount(parent, minlength=u.numel()).to(u.dtype)
    return u[parent] / cnt[parent]


def abar_of(attn, grad):
    return (grad.double() * attn.double()).clamp_min(0).mean(dim=1)  # [windows, m², m²]


def relevance_torch(abars, geom):
    """Maps after every block ([H0, W0] float64) by the R recursion."""
    _, H0, W0, *_ = geom[0]
    N0 = H0 * W0
    R = torch.eye(N0, dtype=torch.float64)
    maps = []
    for b, (ab, (st, H, W, Hp, Wp, m, s)) in enumerate(zip(abars, geom)):
        if b > 0 and st != geom[b - 1][0]:
            R = merge_rows(R, geom[b - 1][1], geom[b - 1][2])
        idx = window_token_index(H, W, Hp, Wp, m, s)  # [nW, m²]
        Rext = torch.cat([R, torch.zeros(1, N0, dtype=R.dtype)])  # row N = padding (zero)
        Rw = Rext[torch.where(idx >= 0, idx, H * W)]  # [nW, m², N0]
        upd = torch.bmm(ab, Rw)  # [nW, m², N0]; padding rows of Rw are 0 (columns dropped)
        real = idx >= 0
        R = R.index_add(0, idx[real], upd[real])  # padding rows of upd dropped
        maps.append(R.mean(dim=0).view(H0, W0))
    return maps


def final_relevance_vector(abars, geom):
    """Only the final map: (1/N_L) 1ᵀ (I + Ā_L) ... P ... (I + Ā_0), as a row vector from the end."""
    _, H0, W0, *_ = geom[0]
    _, HL, WL, *_ = geom[-1]
    u = torch.full((HL * WL,), 1.0 / (HL * WL), dtype=torch.float64)
    for b in range(len(geom) - 1, -1, -1):
        st, H, W, Hp, Wp, m, s = geom[b]
        idx = window_token_index(H, W, Hp, Wp, m, s)
        real = idx >= 0
        uw = torch.where(real, torch.cat([u, u.new_zeros(1)])[torch.where(real, idx, H * W)], 0.0)
        upd = torch.bmm(uw.unsqueeze(1), abars[b]).squeeze(1)  # [nW, m²]
        u = u.index_add(0, idx[real], upd[real])
        if b > 0 and st != geom[b - 1][0]:  # u <- u P (transpose of the merge)
            u = merge_transpose(u, geom[b - 1][1], geom[b - 1][2])
    return u.view(H0, W0)


def check_on_fixture():
    from safetensors.torch import load_file
    folder = os.path.join(REPO, "tests", "fixtures", "swin_pad")
    ref = load_file(os.path.join(folder, "reference.safetensors"))
    rel = load_file(os.path.join(folder, "relevance.safetensors"))
    geom = [(g[0], g[2], g[3], g[4], g[5], g[6], g[7]) for g in ref["geometry"].tolist()]
    abars = [rel[f"t0_abar_{b:02d}"].double() for b in range(len(geom))]
    maps = relevance_torch(abars, geom)
    err = max(((mp - rel[f"t0_relevance_{b:02d}"].double()).abs().max().item()) for b, mp in enumerate(maps))
    perr = max(((mp - rel[f"baseline_{b:02d}"].double() - rel[f"t0_part_{b:02d}"].double()).abs().max().item())
               for b, mp in enumerate(maps))
    v = final_relevance_vector(abars, geom)
    verr = (v - maps[-1]).abs().max().item()
    print(f"check (swin_pad fixture, stored Ā): max |relevance_torch - t0_relevance| {err:.1e}, "
          f"|relevance_torch - baseline - part| {perr:.1e}, |vector final - R final| {verr:.1e}")
    assert err < 1e-6 and perr < 1e-6 and verr < 1e-12


# ---------------------------------------------------------------------------------------------

def timeit(fn, runs, warmup):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    q = statistics.quantiles(times, n=4) if len(times) > 1 else [times[0]] * 3
    return statistics.median(times), q[0], q[2]


def vit_forward_backward(args):
    """vit-base/16 (google/vit-base-patch16-224's architecture, random weights, eager): forward +
    backward of the top logit with every block's attention (as output_attentions returns them,
    the tensors that multiply V) retained, activation gradients only."""
    from transformers import ViTConfig, ViTForImageClassification

    config = ViTConfig(num_labels=1000)
    model = ViTForImageClassification._from_config(config, attn_implementation="eager").eval()
    for p in model.parameters():
        p.requires_grad_(False)
    x = torch.randn(1, 3, 224, 224).requires_grad_(True)

    def fb():
        x.grad = None
        out = model(pixel_values=x, output_attentions=True)
        for a in out.attentions:
            a.retain_grad()
        out.logits[0, int(out.logits[0].argmax())].backward()
        return [a.grad for a in out.attentions]

    med, q1, q3 = timeit(fb, args.runs, args.warmup)
    assert all(g is not None for g in fb())
    print(f"torch vit-base forward+backward (activation grads): {med:.1f} ms (q1 {q1:.1f}, q3 {q3:.1f})")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--check", action="store_true", help="check the torch relevance on tests/fixtures/swin_pad first")
    ap.add_argument("--model", choices=["swin", "vit"], default="swin",
                    help="swin-tiny (default) or vit-base/16 at 224 (forward + backward only)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, {args.threads} threads, "
          f"median (q1, q3) over {args.runs} runs after {args.warmup} warm-up")
    if args.model == "vit":
        return vit_forward_backward(args)
    if args.check:
        check_on_fixture()

    config = SwinConfig(image_size=224, patch_size=4, embed_dim=96, depths=[2, 2, 6, 2],
                        num_heads=[3, 6, 12, 24], window_size=7, num_labels=1000)
    model = SwinForImageClassification._from_config(config, attn_implementation="eager").eval()
    x = torch.randn(1, 3, 224, 224)
    store = {"attn": [], "dims": []}
    handles = install_hooks(model, store)

    def fwd():
        store["attn"].clear()
        store["dims"].clear()
        with torch.inference_mode():
            model(pixel_values=x)

    med, q1, q3 = timeit(fwd, args.runs, args.warmup)
    print(f"torch forward only (inference_mode): {med:.1f} ms (q1 {q1:.1f}, q3 {q3:.1f})")

    results = {}
    for label, params_grad in (("activation grads", False), ("param grads", True)):
        for p in model.parameters():
            p.requires_grad_(params_grad)
            p.grad = None
        xg = x.clone().requires_grad_(True)

        def fb():
            model.zero_grad(set_to_none=True)
            xg.grad = None
            return forward_backward(model, xg, store)

        med, q1, q3 = timeit(fb, args.runs, args.warmup)
        results[label] = fb()
        print(f"torch forward+backward ({label}): {med:.1f} ms (q1 {q1:.1f}, q3 {q3:.1f})")

    for h in handles:
        h.remove()

    attns, grads = results["activation grads"]
    geom = geometry(model, store["dims"])
    a2, g2 = results["param grads"]
    gdiff = max((ga - gb).abs().max().item() for ga, gb in zip(grads, g2))
    print(f"  {len(attns)} blocks; dA identical with/without param grads: max diff {gdiff:.1e}")

    abars = [abar_of(a, g) for a, g in zip(attns, grads)]
    med, q1, q3 = timeit(lambda: [abar_of(a, g) for a, g in zip(attns, grads)], args.runs, 1)
    print(f"torch Ā (mean_heads max(0, dA*A), f64): {med:.1f} ms (q1 {q1:.1f}, q3 {q3:.1f})")
    maps = relevance_torch(abars, geom)
    med, q1, q3 = timeit(lambda: relevance_torch(abars, geom), max(3, args.runs // 3), 1)
    N0 = geom[0][1] * geom[0][2]
    print(f"torch relevance, all {len(geom)} per-block maps (R {N0}x{N0} f64, windowed bmm): "
          f"{med:.1f} ms (q1 {q1:.1f}, q3 {q3:.1f})")
    v = final_relevance_vector(abars, geom)
    med, q1, q3 = timeit(lambda: final_relevance_vector(abars, geom), args.runs, 1)
    print(f"torch relevance, final map only (vector recursion): {med:.2f} ms (q1 {q1:.2f}, q3 {q3:.2f}); "
          f"max |vector - R final| {(v - maps[-1]).abs().max().item():.1e}")
    print(f"  final map sum {maps[-1].sum().item():.6f} (baseline part sums to 1)")


if __name__ == "__main__":
    main()
