"""Window-aware attention rollout and class relevance for Swin Transformers.

numpy in, numpy out (float32), the same arrays as ``swin-rollout export``::

    import swin_rollout
    arrays = swin_rollout.explain("photo.jpg")            # the embedded model
    arrays["rollout"]                                     # f32 [H0, W0]
    maps = swin_rollout.rollout(attentions, geometry)     # attention from anywhere
    swin_rollout.render("photo.jpg", "clip.mp4")          # the explainer video

``swin_rollout.torch.capture`` records attention from a PyTorch Swin (Hugging Face or timm)
in the export layout; torch is imported only there.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np

from . import _native

__version__ = _native.__version__

__all__ = [
    "explain",
    "rollout",
    "render",
    "save_trace",
    "templates",
    "labels",
    "HEAD_FUSIONS",
    "EXPLANATIONS",
]

#: Ways to fuse a block's heads into one attention matrix.
HEAD_FUSIONS = ("mean", "max", "min")
#: Explanation methods: where information flows, or why the model says a class.
EXPLANATIONS = ("rollout", "relevance")

PathLike = Union[str, "os.PathLike[str]"]
ImageLike = Union[PathLike, np.ndarray]


def _from_native(name: str, dtype: str, shape: Sequence[int], data: bytearray) -> np.ndarray:
    return np.frombuffer(data, dtype=np.dtype(dtype)).reshape(tuple(shape))


def _array_in(name: str, value: Any, dtype: Any, ndim: Optional[int] = None) -> tuple:
    """(shape, bytes) of ``value`` as a C-ordered little-endian array, checked and named."""
    try:
        a = np.asarray(value)
    except Exception as e:  # a ragged list, an object numpy cannot hold
        raise TypeError(f"{name}: not an array ({e})") from None
    if a.dtype == object or not (
        np.issubdtype(a.dtype, np.number) or np.issubdtype(a.dtype, np.bool_)
    ):
        raise TypeError(f"{name}: expected a numeric array, got dtype {a.dtype}")
    if ndim is not None and a.ndim != ndim:
        raise ValueError(f"{name}: expected {ndim} dimensions, got shape {a.shape}")
    if np.issubdtype(dtype, np.integer) and not np.issubdtype(a.dtype, np.integer):
        raise TypeError(f"{name}: expected integers, got dtype {a.dtype}")
    a = np.ascontiguousarray(a, dtype=np.dtype(dtype).newbyteorder("<"))
    return (list(a.shape), a.tobytes())


def _path(name: str, value: Any) -> str:
    if isinstance(value, (str, os.PathLike)):
        return os.fspath(value)
    raise TypeError(f"{name}: expected a path (str or os.PathLike), got {type(value).__name__}")


def _existing_file(name: str, path: Any) -> str:
    path = os.fspath(path)
    if not os.path.isfile(path):
        what = "is a folder, not a file" if os.path.isdir(path) else "does not exist"
        raise FileNotFoundError(f"{name}: {path} {what}; check the path")
    return path


def _image_in(image: Any, name: str = "image") -> tuple:
    """(path, None) or (None, (height, width, bytes)) for the native side."""
    if image is None:
        return (None, None)
    if isinstance(image, (str, os.PathLike)):
        return (_existing_file(name, image), None)
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(
                f"{name}: expected an H×W×3 RGB array, got shape {image.shape}; "
                "drop an alpha channel with image[..., :3]"
            )
        if image.dtype != np.uint8:
            raise TypeError(
                f"{name}: expected dtype uint8 (0-255), got {image.dtype}; "
                "convert with (image * 255).round().astype(np.uint8) for floats in [0, 1]"
            )
        h, w, _ = image.shape
        if h == 0 or w == 0:
            raise ValueError(f"{name}: the image is empty ({h}×{w})")
        return (None, (h, w, np.ascontiguousarray(image).tobytes()))
    raise TypeError(
        f"{name}: expected a path or an H×W×3 uint8 numpy array, got {type(image).__name__}"
    )


def _rollout_options(head_fusion: Any, residual: Any, discard: Any) -> tuple:
    if head_fusion not in HEAD_FUSIONS:
        raise ValueError(f"head_fusion must be one of {', '.join(HEAD_FUSIONS)}, got {head_fusion!r}")
    for name, value in (("residual", residual), ("discard", discard)):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
            raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    residual, discard = float(residual), float(discard)
    if not 0.0 <= residual <= 1.0:
        raise ValueError(f"residual must be in [0, 1], got {residual}")
    if not 0.0 <= discard < 1.0:
        raise ValueError(f"discard must be in [0, 1) (1 would discard whole rows), got {discard}")
    return head_fusion, residual, discard


def _explain_options(explain: Any, target: Any) -> tuple:
    if explain not in EXPLANATIONS:
        raise ValueError(f"explain must be 'rollout' or 'relevance', got {explain!r}")
    if target is None:
        return explain, None
    if isinstance(target, bool) or not isinstance(target, (int, np.integer, str)):
        raise TypeError(f"target must be a class label (str) or index (int), got {type(target).__name__}")
    if isinstance(target, (int, np.integer)) and target < 0:
        raise ValueError(f"target must be a class index from 0, got {target}")
    if explain != "relevance":
        raise ValueError(
            "target picks the class that explain='relevance' explains; the rollout is the same "
            "for every class: pass explain='relevance'"
        )
    return explain, str(target)


def _model_in(model: Any) -> Optional[str]:
    return None if model is None else _path("model", model)


def explain(
    image: ImageLike,
    model: Optional[PathLike] = None,
    explain: str = "rollout",
    target: Union[int, str, None] = None,
    head_fusion: str = "mean",
    residual: float = 0.5,
    discard: float = 0.0,
) -> dict:
    """Runs a Swin on ``image`` and explains its prediction.

    Returns the arrays ``swin-rollout export`` writes, with the same keys, dtypes and shapes:
    ``pixel_values`` f32 [3, H, W], ``logits`` f32 [classes], ``geometry`` i64 [L, 8],
    ``attn_00`` … f32 [windows, heads, M², M²], ``rollout_00`` … and ``rollout`` f32 [H₀, W₀];
    with ``explain="relevance"`` also ``relevance_00`` … and ``relevance`` f32 [H₀, W₀] (the
    mean of R_b's rows, not rescaled) and ``target`` (i64 scalar, the class explained).

    Args:
        image: a path, or an H×W×3 uint8 RGB array (any size: it is resized as the model's
            preprocessor says).
        model: a model folder (Hugging Face or timm layout), a hub id, or ``"embedded:swin"``
            / ``"embedded:vit"``; None for the embedded Swin (a small Swin trained on cluttered
            Fashion-MNIST; the embedded ViT is trained on the same scenes).
        explain: "rollout" (where information flows) or "relevance" (why this class).
        target: for relevance, the class as a label or an index; None for the top prediction.
        head_fusion: "mean", "max" or "min".
        residual: weight of the identity in [0, 1].
        discard: share of each row's lowest entries dropped, in [0, 1).

    Raises:
        ValueError: a bad argument, an unreadable image or model, an unknown class.
        FileNotFoundError: a missing image or model folder.
    """
    image_in = _image_in(image)
    if image_in == (None, None):
        raise TypeError("image: expected a path or an H×W×3 uint8 numpy array, got None")
    explain_, target_ = _explain_options(explain, target)
    options = _rollout_options(head_fusion, residual, discard)
    arrays = _native.explain(image_in, _model_in(model), explain_, target_, *options)
    return {name: _from_native(name, *rest) for name, *rest in arrays}


def _attention_list(trace: Mapping) -> list:
    if "attentions" in trace:
        return list(trace["attentions"])
    attentions = []
    while f"attn_{len(attentions):02}" in trace:
        attentions.append(trace[f"attn_{len(attentions):02}"])
    return attentions


def rollout(
    attentions: Sequence[np.ndarray],
    geometry: np.ndarray,
    head_fusion: str = "mean",
    residual: float = 0.5,
    discard: float = 0.0,
    roll_before_pad: bool = False,
) -> np.ndarray:
    """The window-aware rollout of attention computed anywhere.

    Args:
        attentions: one f32 array per block, [windows, heads, M², M²]: softmax probabilities,
            windows row-major over the shifted, padded grid (as Swin computes them).
        geometry: i64 [L, 8], one row per block: stage, block_in_stage, height, width,
            padded_height, padded_width, window, shift.
        roll_before_pad: True for attention of timm's Swins, whose shifted blocks roll the
            grid before padding it (a trace's ``roll_before_pad``); Hugging Face pads first.
            The two orders differ only where a shifted grid is padded.

    Returns:
        f32 [L, H₀, W₀]: the pooled map (mean of R_b's rows, summing to 1) after every block,
        over the first stage's token grid.

    Raises:
        ValueError: shapes that disagree with the geometry, values that are not probabilities,
            or an inconsistent geometry; the message names the array and the block.
    """
    if isinstance(attentions, np.ndarray) or not isinstance(attentions, Sequence):
        raise TypeError(
            f"attentions: expected a list of per-block arrays, got {type(attentions).__name__}"
        )
    options = _rollout_options(head_fusion, residual, discard)
    geometry_in = _array_in("geometry", geometry, np.int64, ndim=2)
    attn_in = [
        _array_in(f"attn_{k:02}", a, np.float32, ndim=4) for k, a in enumerate(attentions)
    ]
    if not isinstance(roll_before_pad, (bool, np.bool_)):
        raise TypeError(f"roll_before_pad must be True or False, got {roll_before_pad!r}")
    roll = np.array(int(roll_before_pad), dtype=np.int64)
    _, *rest = _native.rollout(geometry_in, attn_in, _array_in("roll_before_pad", roll, np.int64),
                               *options)
    return _from_native("rollout", *rest)


def _trace_in(trace: Mapping) -> tuple:
    if "geometry" not in trace:
        raise ValueError(
            "trace: no 'geometry' array (int64 [L, 8]); pass what swin_rollout.torch.capture or "
            "swin_rollout.explain returned"
        )
    geometry = _array_in("geometry", trace["geometry"], np.int64, ndim=2)
    attentions = [
        _array_in(f"attn_{k:02}", a, np.float32, ndim=4)
        for k, a in enumerate(_attention_list(trace))
    ]
    optional = []
    for key in ("logits", "pixel_values"):
        value = trace.get(key)
        optional.append(None if value is None else _array_in(key, value, np.float32))
    for key in ("prefix_tokens", "roll_before_pad"):
        value = trace.get(key)
        optional.append(None if value is None else _array_in(key, value, np.int64))
    return (geometry, attentions, *optional)


def render(
    source: Union[ImageLike, Mapping, None],
    output: PathLike,
    template: str = "explainer",
    *,
    model: Optional[PathLike] = None,
    compare: Optional[PathLike] = None,
    image: Optional[ImageLike] = None,
    labels: Optional[Sequence[str]] = None,
    explain: str = "rollout",
    target: Union[int, str, None] = None,
    head_fusion: str = "mean",
    residual: float = 0.5,
    discard: float = 0.0,
    at: float = 0.0,
    crf: int = 18,
    preset: str = "veryfast",
    progress: bool = True,
) -> Path:
    """Renders a video or a still of an explanation, as ``swin-rollout render`` / ``still``.

    Args:
        source: an image (a path or an H×W×3 uint8 array) that ``model`` runs on; or a trace:
            a dict as ``swin_rollout.torch.capture`` or ``explain`` returns, or an ``.npz``
            path in the export layout; None for templates that need no model (the schematic
            ``mechanism``).
        output: ``.mp4`` (H.264), ``.gif``, an existing folder (PNG frames), or ``.png`` for a
            still at ``at`` seconds (figure templates such as ``stages`` are stills). Written
            atomically: nothing appears unless the render succeeded; an existing file is
            replaced.
        template: a built-in template name (see ``templates()``) or a ``.toml`` file.
        model: for an image source, a model folder, hub id, ``"embedded:swin"`` or
            ``"embedded:vit"``; None for the embedded Swin.
        compare: for the ``compare`` template, the second model, drawn beside ``model``'s
            (as ``model``); None for the embedded ViT.
        image: for a trace source, the image it was made from (default: the trace's
            ``pixel_values``).
        labels: for a trace source, class names for its logits (default ``class N``).
        explain, target, head_fusion, residual, discard: as in ``explain()``. Traces give
            the rollout only: relevance needs the model's backward pass.
        crf, preset: x264 settings for MP4.
        progress: show a progress bar on a terminal.

    Returns:
        The output path.
    """
    output = Path(_path("output", output))
    if not isinstance(template, (str, os.PathLike)):
        raise TypeError(f"template: expected a name or a .toml path, got {type(template).__name__}")
    explain_, target_ = _explain_options(explain, target)
    options = _rollout_options(head_fusion, residual, discard)
    if isinstance(crf, bool) or not isinstance(crf, (int, np.integer)) or not 0 <= crf <= 51:
        raise ValueError(f"crf must be an integer from 0 (lossless) to 51, got {crf!r}")
    if not isinstance(preset, str):
        raise TypeError(f"preset: expected an x264 preset name, got {type(preset).__name__}")
    if isinstance(at, bool) or not isinstance(at, (int, float, np.floating, np.integer)):
        raise TypeError(f"at must be a time in seconds, got {type(at).__name__}")
    trace_file, trace, image_in = None, None, (None, None)
    if isinstance(source, Mapping):
        trace = _trace_in(source)
        image_in = _image_in(image)
    elif isinstance(source, (str, os.PathLike)) and Path(source).suffix.lower() == ".npz":
        trace_file = _existing_file("source", source)
        image_in = _image_in(image)
    else:
        if image is not None:
            raise ValueError(
                "image= is the picture a trace was made from; for an image source pass it as "
                "the first argument"
            )
        image_in = _image_in(source, "source")
    if trace_file is None and trace is None:
        if labels is not None:
            raise ValueError("labels= names a trace's logits; a model brings its own labels")
    elif model is not None or compare is not None:
        which = "model=" if model is not None else "compare="
        raise ValueError(f"{which} runs on an image; a trace was already computed by its model")
    if labels is not None:
        if isinstance(labels, str) or not all(isinstance(l, str) for l in labels):
            raise TypeError("labels: expected a list of class names (str)")
        labels = list(labels)
    # Captions name a trace file as the CLI does; an in-memory trace has no name to show.
    name = None if trace_file is None else Path(trace_file).name
    _native.render(
        os.fspath(output),
        os.fspath(template),
        _model_in(model),
        None if compare is None else _path("compare", compare),
        image_in,
        trace_file,
        trace,
        labels,
        name,
        explain_,
        target_,
        *options,
        float(at),
        int(crf),
        preset,
        bool(progress),
    )
    return output


def save_trace(path: PathLike, trace: Mapping) -> Path:
    """Writes a trace (what ``swin_rollout.torch.capture`` returns) as an ``.npz`` in the
    export layout, which ``swin-rollout render --trace`` and ``still --trace`` read."""
    path = Path(_path("path", path))
    if "geometry" not in trace:
        raise ValueError("trace: no 'geometry' array; pass what swin_rollout.torch.capture returned")
    arrays = {"geometry": np.asarray(trace["geometry"], dtype=np.int64)}
    for k, a in enumerate(_attention_list(trace)):
        arrays[f"attn_{k:02}"] = np.asarray(a, dtype=np.float32)
    for key in ("logits", "pixel_values"):
        if trace.get(key) is not None:
            arrays[key] = np.asarray(trace[key], dtype=np.float32)
    for key in ("prefix_tokens", "roll_before_pad"):
        if trace.get(key) is not None:
            arrays[key] = np.asarray(trace[key], dtype=np.int64)
    # Through a hidden temporary file beside it, so that no half-written trace is left; and to
    # a file object, since numpy would append .npz to other names.
    tmp = path.with_name(f".{path.name}.part")
    try:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def templates() -> dict:
    """The built-in templates: name → what it shows."""
    return dict(_native.templates())


def labels(model: Optional[PathLike] = None) -> list:
    """The class labels of ``model`` (None: the embedded model), in logit order."""
    return _native.labels(_model_in(model))
