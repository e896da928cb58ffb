"""`swin_rollout.rollout` on attention from anywhere: equal to a dense numpy rollout on small
geometries with shifts, padding, clamped windows and merges; bad input raises, naming the block."""

import numpy as np
import pytest

import swin_rollout
from reference import geometry_row, random_attention, rollout as dense_rollout


def small_trace(seed=0):
    """Stage 0: 5×5 tokens, window 3 (padded to 6×6), blocks without and with shift 1;
    stage 1: 3×3 (an odd merge), window clamped to 3; stage 2: 2×2, clamped to 2."""
    rng = np.random.default_rng(seed)
    rows = [
        geometry_row(0, 0, 5, 5, 3, 0),
        geometry_row(0, 1, 5, 5, 3, 1),
        geometry_row(1, 0, 3, 3, 3, 0),
        geometry_row(1, 1, 3, 3, 3, 1),
        geometry_row(2, 0, 2, 2, 3, 0),
    ]
    heads = [2, 2, 3, 3, 1]
    attentions = [random_attention(rng, r, h) for r, h in zip(rows, heads)]
    return attentions, np.array(rows, dtype=np.int64)


def test_geometry_covers_padding_shift_and_clamp():
    _, geometry = small_trace()
    assert geometry[1].tolist() == [0, 1, 5, 5, 6, 6, 3, 1]  # padded and shifted
    assert geometry[3].tolist() == [1, 1, 3, 3, 3, 3, 3, 0]  # shift dropped by the clamp
    assert geometry[4].tolist() == [2, 0, 2, 2, 2, 2, 2, 0]  # window clamped to the grid


@pytest.mark.parametrize(
    "fusion,residual,discard",
    [("mean", 0.5, 0.0), ("max", 0.3, 0.0), ("min", 0.0, 0.0), ("mean", 0.5, 0.4)],
)
def test_equals_a_dense_rollout(fusion, residual, discard):
    attentions, geometry = small_trace(seed=1)
    got = swin_rollout.rollout(attentions, geometry, fusion, residual, discard)
    want = dense_rollout(attentions, geometry.tolist(), fusion, residual, discard)
    assert got.dtype == np.float32 and got.shape == (5, 5, 5)
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-6)
    np.testing.assert_allclose(got.sum(axis=(1, 2)), 1.0, atol=1e-5)


def test_shift_matters():
    """The same attention read without the shift gives another map: the index image is used."""
    attentions, geometry = small_trace(seed=2)
    unshifted = geometry.copy()
    unshifted[1, 7] = 0
    a = swin_rollout.rollout(attentions, geometry)
    b = swin_rollout.rollout(attentions, unshifted)
    assert np.abs(a[1] - b[1]).max() > 1e-3


def test_equals_the_export_rollout(scene):
    """On the embedded model's real attention, rollout() gives explain()'s rollout maps."""
    arrays = swin_rollout.explain(scene)
    blocks = len(arrays["geometry"])
    attentions = [arrays[f"attn_{k:02}"] for k in range(blocks)]
    got = swin_rollout.rollout(attentions, arrays["geometry"])
    want = np.stack([arrays[f"rollout_{k:02}"] for k in range(blocks)])
    np.testing.assert_array_equal(got, want)


def test_accepts_float64_and_lists():
    attentions, geometry = small_trace()
    a = swin_rollout.rollout([x.astype(np.float64) for x in attentions], geometry.tolist())
    b = swin_rollout.rollout(attentions, geometry)
    np.testing.assert_allclose(a, b, atol=1e-7)


def test_result_is_writable():
    attentions, geometry = small_trace()
    maps = swin_rollout.rollout(attentions, geometry)
    maps[0, 0, 0] = 1.0


def test_bad_attention_shape_names_the_block():
    attentions, geometry = small_trace()
    attentions[2] = attentions[2][:, :, :4, :4]
    with pytest.raises(ValueError, match="attn_02"):
        swin_rollout.rollout(attentions, geometry)


def test_missing_block_is_named():
    attentions, geometry = small_trace()
    with pytest.raises(ValueError, match="attn_04"):
        swin_rollout.rollout(attentions[:4], geometry)


def test_nan_and_unnormalized_attention_are_refused():
    attentions, geometry = small_trace()
    bad = [a.copy() for a in attentions]
    bad[1][0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="attn_01"):
        swin_rollout.rollout(bad, geometry)
    bad = [a.copy() for a in attentions]
    bad[0] *= 2.0
    with pytest.raises(ValueError, match="attn_00"):
        swin_rollout.rollout(bad, geometry)


def test_bad_geometry_is_refused():
    attentions, geometry = small_trace()
    with pytest.raises(ValueError, match="geometry"):
        swin_rollout.rollout(attentions, geometry[:, :7])
    wrong = geometry.copy()
    wrong[1, 4] = 7  # a padded height that is not a multiple of the window
    with pytest.raises(ValueError):
        swin_rollout.rollout(attentions, wrong)


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        ({"head_fusion": "median"}, ValueError, "head_fusion"),
        ({"residual": 1.5}, ValueError, "residual"),
        ({"discard": 1.0}, ValueError, "discard"),
        ({"residual": "0.5"}, TypeError, "residual"),
    ],
)
def test_bad_options_raise(kwargs, error, match):
    attentions, geometry = small_trace()
    with pytest.raises(error, match=match):
        swin_rollout.rollout(attentions, geometry, **kwargs)


def test_bad_argument_types_raise():
    attentions, geometry = small_trace()
    with pytest.raises(TypeError, match="attentions"):
        swin_rollout.rollout(attentions[0], geometry)
    with pytest.raises(TypeError, match="geometry"):
        swin_rollout.rollout(attentions, geometry.astype(np.float32))
    with pytest.raises(TypeError):
        swin_rollout.rollout(attentions, "geometry")
