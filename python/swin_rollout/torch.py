"""Attention captured from a PyTorch Swin in the user's own session, in the export layout.

    from swin_rollout.torch import capture
    trace = capture(model, pixel_values)          # model: Hugging Face or timm Swin
    swin_rollout.rollout(trace["attentions"], trace["geometry"])

Supported: Hugging Face ``SwinForImageClassification`` / ``SwinModel`` (and their V2
``Swinv2ForImageClassification`` / ``Swinv2Model``) and timm's ``SwinTransformer``. The model
runs as it would without us: hooks only read, its outputs are unchanged, and a model loaded
with SDPA attention (which computes no probabilities) gets them computed from the query, key
and mask its attention function receives, exactly as its eager path computes them. (For
transformers 5 Swin, capture names its own attention function in the model's config for the
forward; that function calls the model's own and keeps its inputs.)
"""

from __future__ import annotations

from typing import Any, Callable, List, Optional

import numpy as np

__all__ = ["capture"]


def _torch():
    try:
        import torch
    except ImportError:  # the package works without torch; only capture needs it
        raise ImportError(
            "swin_rollout.torch.capture needs PyTorch: pip install torch"
        ) from None
    return torch


class _Block:
    """What one Swin block recorded: its grid, window, shift and attention probabilities."""

    def __init__(self, stage: int, index: int):
        self.stage = stage
        self.index = index
        self.grid: Optional[tuple] = None
        self.window: Optional[int] = None
        self.shift: Optional[int] = None
        self.probs = None  # torch tensor [B·windows, heads, M², M²]
        # timm's fused attention: the block's qkv projection, to compute the probabilities.
        self.qkv = None

    def geometry_row(self) -> list:
        h, w = self.grid
        m, s = self.window, self.shift
        ph, pw = -(-h // m) * m, -(-w // m) * m
        return [self.stage, self.index, h, w, ph, pw, m, s]


def _square(name: str, value: Any) -> int:
    if isinstance(value, (tuple, list)):
        if len(set(int(v) for v in value)) != 1:
            raise ValueError(f"{name} {tuple(value)} is not square; swin_rollout needs square windows")
        return int(value[0])
    return int(value)


def _stages(model) -> tuple:
    """(family, [stage modules]) of a supported model, in forward order."""
    names = {type(m).__name__: m for m in model.modules()}
    if "SwinStage" in names or "Swinv2Stage" in names:
        stages = [m for m in model.modules() if type(m).__name__ in ("SwinStage", "Swinv2Stage")]
        return ("hf", stages)
    if "SwinTransformerStage" in names:
        return ("timm", [m for m in model.modules() if type(m).__name__ == "SwinTransformerStage"])
    raise TypeError(
        f"capture: {type(model).__name__} is not a supported Swin; pass a Hugging Face "
        "SwinForImageClassification / SwinModel (or Swinv2…) or a timm SwinTransformer"
    )


def _hf_hooks(block: _Block, layer, hooks: list, recording: list) -> None:
    """Hooks on a Hugging Face SwinLayer / Swinv2Layer."""

    def on_layer(module, args, kwargs, output):
        dims = args[1] if len(args) > 1 else kwargs["input_dimensions"]
        block.grid = (int(dims[0]), int(dims[1]))
        # SwinLayer clamps window and shift to the grid during its forward: read them after.
        block.window = _square("window_size", module.window_size)
        block.shift = _square("shift_size", module.shift_size)

    hooks.append(layer.register_forward_hook(on_layer, with_kwargs=True))
    attention = layer.attention
    inner = getattr(attention, "self", None)
    if inner is not None and hasattr(inner, "dropout"):
        # Swin V2 (and transformers 4 Swin): probabilities go through a dropout module, whose
        # input is them exactly, whatever the mode.
        def on_dropout(module, args):
            block.probs = args[0].detach()

        hooks.append(inner.dropout.register_forward_pre_hook(on_dropout))
        return

    # transformers 5 Swin: the attention calls the function its config names (eager, sdpa,
    # …) with the query, key and the position bias plus shift mask it combined; capture swaps
    # in a function that calls that same one and keeps its inputs (see _recording_attention).
    if attention in _RECORDING:
        raise RuntimeError("capture: this model is already being captured (one capture at a time)")
    _RECORDING[attention] = [block, None]
    recording.append(attention)


# transformers 5 attention modules of the captures under way -> [their _Block, the attention
# function they would call without capture].
_RECORDING: dict = {}
_RECORDING_NAME = "swin_rollout_capture"


def _recording_attention(module, query, key, value, attention_mask, **kwargs):
    """The module's own attention, whose probabilities are kept (computed as eager attention
    computes them when the implementation, like SDPA, returns none)."""
    block, inner = _RECORDING[module]
    output, weights = inner(module, query, key, value, attention_mask, **kwargs)
    block.probs = (
        weights.detach()
        if weights is not None
        else _probabilities(query, key, attention_mask, kwargs.get("scaling"))
    )
    return output, weights


def _probabilities(query, key, mask, scaling):
    """Eager attention's probabilities, in one tensor that becomes them in place."""
    torch = _torch()
    if scaling is None:
        scaling = query.shape[-1] ** -0.5
    scores = torch.matmul(query.detach(), key.detach().transpose(2, 3))
    scores.mul_(scaling)
    if mask is not None:
        scores.add_(mask.detach())
    return torch.softmax(scores, dim=-1, out=scores)


class _Recording:
    """While capture runs, the configs of the recorded transformers 5 attention modules name
    the recording attention function; afterwards, what they named before."""

    def __init__(self, modules: list):
        self.modules = modules
        self.configs: dict = {}  # id -> (config, implementation before)

    def __enter__(self):
        if not self.modules:
            return self
        import sys

        from transformers import AttentionInterface
        from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

        AttentionInterface.register(_RECORDING_NAME, _recording_attention)
        for module in self.modules:
            config = module.config
            if id(config) not in self.configs:
                self.configs[id(config)] = (config, config._attn_implementation)
            name = self.configs[id(config)][1]
            # As the module looks it up, so the outputs are those it gives without us.
            eager = getattr(sys.modules[type(module).__module__], "eager_attention_forward")
            _RECORDING[module][1] = ALL_ATTENTION_FUNCTIONS.get_interface(name, eager)
        for config, _ in self.configs.values():
            config._attn_implementation = _RECORDING_NAME
        return self

    def __exit__(self, *exc):
        for config, before in self.configs.values():
            config._attn_implementation = before
        return False


def _timm_hooks(block: _Block, layer, hooks: list, recording: list) -> None:
    """Hooks on a timm SwinTransformerBlock."""

    def on_layer(module, args, output):
        x = args[0]
        block.grid = (int(x.shape[1]), int(x.shape[2]))
        block.window = _square("window_size", module.window_size)
        block.shift = _square("shift_size", module.shift_size)

    hooks.append(layer.register_forward_hook(on_layer))
    attn = layer.attn

    def on_drop(module, args):
        block.probs = args[0].detach()

    hooks.append(attn.attn_drop.register_forward_pre_hook(on_drop))

    def on_qkv(module, args, output):
        block.qkv = output.detach()

    def on_attn(module, args, kwargs, output):
        if not getattr(module, "fused_attn", False):
            return
        mask = args[1] if len(args) > 1 else kwargs.get("mask")
        block.probs = _timm_recompute(module, block.qkv, mask)
        block.qkv = None

    hooks.append(attn.qkv.register_forward_hook(on_qkv))
    hooks.append(attn.register_forward_hook(on_attn, with_kwargs=True))


def _timm_recompute(module, qkv, mask):
    """timm's unfused attention probabilities from its kept qkv projection."""
    b, n, _ = qkv.shape
    qkv = qkv.reshape(b, n, 3, module.num_heads, -1).permute(2, 0, 3, 1, 4)
    q, k, _ = qkv.unbind(0)
    attn = (q * module.scale) @ k.transpose(-2, -1)
    attn = attn + module._get_rel_pos_bias()
    if mask is not None:
        windows = mask.shape[0]
        attn = attn.view(-1, windows, module.num_heads, n, n) + mask.unsqueeze(1).unsqueeze(0)
        attn = attn.view(-1, module.num_heads, n, n)
    return attn.softmax(dim=-1)


def _logits(family: str, model, output) -> Optional[Any]:
    if family == "hf":
        return getattr(output, "logits", None)
    # timm: a classifier returns logits, a headless model (num_classes=0) pooled features.
    if getattr(model, "num_classes", 0) > 0 and hasattr(output, "shape"):
        return output
    return None


def capture(model, pixel_values) -> Any:
    """Runs ``model`` on ``pixel_values`` and records every block's attention and geometry.

    Args:
        model: a Hugging Face ``SwinForImageClassification``, ``SwinModel``,
            ``Swinv2ForImageClassification`` or ``Swinv2Model``, or a timm
            ``SwinTransformer``, with any attention implementation.
        pixel_values: a float tensor [B, 3, H, W] (or [3, H, W]) as the model takes it.

    Returns:
        For one image, a dict in the export layout: ``geometry`` (i64 [L, 8]),
        ``prefix_tokens`` (i64 scalar 0: window attention has no CLS token), for timm
        ``roll_before_pad`` (i64 scalar 1: its shifted blocks roll the grid, then pad it),
        ``attentions``
        (a list of f32 [windows, heads, M², M²]), ``logits`` (f32 [classes], when the model
        has a classifier), ``pixel_values`` (f32 [3, H, W]) and ``output`` (what the model
        returned, untouched). For a batch of B > 1, a list of B such dicts (``output`` is the
        whole batch's in each). ``swin_rollout.rollout``, ``render`` and ``save_trace`` take
        the dict as it is.
    """
    torch = _torch()
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"capture: model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(pixel_values, torch.Tensor):
        raise TypeError(
            f"capture: pixel_values must be a torch.Tensor [B, 3, H, W], got {type(pixel_values).__name__}"
        )
    single = pixel_values.dim() == 3
    if single:
        pixel_values = pixel_values.unsqueeze(0)
    if pixel_values.dim() != 4 or pixel_values.shape[1] != 3 or pixel_values.shape[0] == 0:
        raise ValueError(
            f"capture: pixel_values must be [B, 3, H, W] (or [3, H, W]), got {tuple(pixel_values.shape)}"
        )
    family, stages = _stages(model)
    blocks: List[_Block] = []
    hooks: list = []
    recording: list = []
    add: Callable = _hf_hooks if family == "hf" else _timm_hooks
    try:
        for s, stage in enumerate(stages):
            for i, layer in enumerate(stage.blocks):
                block = _Block(s, i)
                blocks.append(block)
                add(block, layer, hooks, recording)
        with _Recording(recording), torch.no_grad():
            output = model(pixel_values)
    finally:
        for h in hooks:
            h.remove()
        for module in recording:
            _RECORDING.pop(module, None)
    missing = [f"{b.stage}.{b.index}" for b in blocks if b.probs is None or b.grid is None]
    if missing:
        raise RuntimeError(
            f"capture: blocks {', '.join(missing)} recorded no attention; is this a supported "
            "Swin (see help(swin_rollout.torch.capture))?"
        )
    geometry = np.array([b.geometry_row() for b in blocks], dtype=np.int64)
    batch = pixel_values.shape[0]
    attentions = []
    for b, row in zip(blocks, geometry):
        windows = int(row[4] // row[6]) * int(row[5] // row[6])
        p = b.probs.float().cpu()
        attentions.append(p.reshape(batch, windows, *p.shape[1:]).numpy())
    logits = _logits(family, model, output)
    if logits is not None:
        logits = logits.detach().float().cpu().reshape(batch, -1).numpy()
    pixels = pixel_values.detach().float().cpu().numpy()
    traces = []
    for i in range(batch):
        trace = {
            "geometry": geometry.copy(),
            "prefix_tokens": np.array(0, dtype=np.int64),
            "attentions": [np.ascontiguousarray(a[i]) for a in attentions],
            "pixel_values": np.ascontiguousarray(pixels[i]),
            "output": output,
        }
        if logits is not None:
            trace["logits"] = np.ascontiguousarray(logits[i])
        if family == "timm":
            # timm rolls a shifted grid before padding it; Hugging Face pads first.
            trace["roll_before_pad"] = np.array(1, dtype=np.int64)
        traces.append(trace)
    return traces[0] if single or batch == 1 else traces
