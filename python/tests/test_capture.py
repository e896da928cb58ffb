"""`swin_rollout.torch.capture` on tiny random Hugging Face and timm Swins: what the models'
own attention outputs and hooks give, geometry our candle model agrees with, outputs unchanged."""

import json

import numpy as np
import pytest
import torch

import swin_rollout
from swin_rollout.torch import capture

transformers = pytest.importorskip("transformers")
timm = pytest.importorskip("timm")

IMAGENET = {
    "do_resize": True,
    "size": {"height": 40, "width": 40},
    "resample": 3,
    "do_rescale": True,
    "rescale_factor": 1 / 255,
    "do_normalize": True,
    "image_mean": [0.485, 0.456, 0.406],
    "image_std": [0.229, 0.224, 0.225],
}


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory):
    """A random Swin whose 10×10 first grid pads to 12×12 under a shift of 1, merges to 5×5
    (padded to 6×6, shifted) and then to 3×3 (an odd merge), where the clamp drops the shift.
    (transformers cannot run a grid smaller than the window: its position bias keeps the
    configured size.)"""
    torch.manual_seed(0)
    config = transformers.SwinConfig(
        image_size=40, patch_size=4, embed_dim=12, depths=[2, 2, 2], num_heads=[1, 2, 2],
        window_size=3, num_labels=5, id2label={i: f"c{i}" for i in range(5)},
        label2id={f"c{i}": i for i in range(5)},
    )
    model = transformers.SwinForImageClassification(config).eval()
    folder = tmp_path_factory.mktemp("swin")
    model.save_pretrained(folder)
    (folder / "preprocessor_config.json").write_text(json.dumps(IMAGENET))
    return folder


def hf(folder, implementation, cls=None):
    cls = cls or transformers.SwinForImageClassification
    return cls.from_pretrained(folder, attn_implementation=implementation).eval()


def pixels(seed=0, size=40, batch=1):
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


def own_attentions(model, x):
    """The model's own `output_attentions`, [images, windows, heads, M², M²]: Hugging Face
    returns one per stage, its last block's."""
    with torch.no_grad():
        out = model(x, output_attentions=True)
    return [a.reshape(x.shape[0], -1, *a.shape[1:]).numpy() for a in out.attentions]


def stage_last(trace):
    """The captured attention of every stage's last block."""
    geometry = trace["geometry"]
    last = [k for k in range(len(geometry)) if k + 1 == len(geometry) or geometry[k + 1][0] != geometry[k][0]]
    return [trace["attentions"][k] for k in last]


def test_hf_eager_equals_output_attentions(hf_folder):
    model = hf(hf_folder, "eager")
    x = pixels()
    trace = capture(model, x)
    want = own_attentions(model, x)
    assert len(trace["attentions"]) == 6 and len(want) == 3
    for got, w in zip(stage_last(trace), want):
        np.testing.assert_array_equal(got, w[0])
    assert trace["geometry"].tolist() == [
        [0, 0, 10, 10, 12, 12, 3, 0],
        [0, 1, 10, 10, 12, 12, 3, 1],
        [1, 0, 5, 5, 6, 6, 3, 0],
        [1, 1, 5, 5, 6, 6, 3, 1],
        [2, 0, 3, 3, 3, 3, 3, 0],
        [2, 1, 3, 3, 3, 3, 3, 0],
    ]


@pytest.mark.parametrize("implementation", ["eager", "sdpa"])
def test_hf_outputs_unchanged(hf_folder, implementation):
    model = hf(hf_folder, implementation)
    x = pixels(1)
    with torch.no_grad():
        plain = model(x).logits
    trace = capture(model, x)
    assert torch.equal(trace["output"].logits, plain)
    np.testing.assert_array_equal(trace["logits"], plain[0].numpy())
    assert not model._forward_hooks and all(not m._forward_hooks for m in model.modules())
    # The attention implementation capture swapped in for the forward is the user's again.
    assert model.config._attn_implementation == implementation


def test_hf_sdpa_gets_the_eager_probabilities(hf_folder):
    x = pixels(2)
    sdpa = capture(hf(hf_folder, "sdpa"), x)
    eager = capture(hf(hf_folder, "eager"), x)
    for got, want in zip(sdpa["attentions"], eager["attentions"]):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)


def test_hf_agrees_with_our_model(hf_folder, scene):
    """Our candle model on the same weights and pixels: same geometry, same attention."""
    ours = swin_rollout.explain(scene, model=hf_folder)
    x = torch.from_numpy(ours["pixel_values"]).unsqueeze(0)
    trace = capture(hf(hf_folder, "eager"), x)
    np.testing.assert_array_equal(trace["geometry"], ours["geometry"])
    for k, got in enumerate(trace["attentions"]):
        np.testing.assert_allclose(got, ours[f"attn_{k:02}"], rtol=0, atol=2e-5)
    np.testing.assert_allclose(trace["logits"], ours["logits"], rtol=0, atol=1e-4)
    maps = swin_rollout.rollout(trace["attentions"], trace["geometry"])
    np.testing.assert_allclose(maps[-1], ours["rollout"], rtol=0, atol=1e-5)


def test_hf_headless_and_batch(hf_folder):
    model = hf(hf_folder, "sdpa", transformers.SwinModel)
    x = pixels(3, batch=2)
    traces = capture(model, x)
    assert isinstance(traces, list) and len(traces) == 2
    assert all("logits" not in t for t in traces)
    for i, t in enumerate(traces):
        single = capture(model, x[i : i + 1])
        for a, b in zip(t["attentions"], single["attentions"]):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)
        np.testing.assert_array_equal(t["pixel_values"], x[i].numpy())


def test_hf_v2_equals_output_attentions(tmp_path):
    torch.manual_seed(1)
    config = transformers.Swinv2Config(
        image_size=32, patch_size=4, embed_dim=12, depths=[2, 2], num_heads=[1, 2],
        window_size=4, num_labels=3,
    )
    model = transformers.Swinv2ForImageClassification(config).eval()
    x = pixels(4, size=32)
    with torch.no_grad():
        plain = model(x).logits
    trace = capture(model, x)
    assert torch.equal(trace["output"].logits, plain)
    for got, w in zip(stage_last(trace), own_attentions(model, x)):
        np.testing.assert_array_equal(got, w[0])
    assert trace["geometry"][:, 6].tolist() == [4, 4, 4, 4]
    assert trace["geometry"][:, 7].tolist() == [0, 2, 0, 0]
    swin_rollout.rollout(trace["attentions"], trace["geometry"])


def timm_swin(num_classes=5):
    from timm.models.swin_transformer import SwinTransformer

    torch.manual_seed(2)
    return SwinTransformer(
        img_size=56, patch_size=4, window_size=7, embed_dim=12, depths=(2, 2),
        num_heads=(1, 2), num_classes=num_classes,
    ).eval()


def set_fused(model, fused):
    for m in model.modules():
        if hasattr(m, "fused_attn") and hasattr(m, "attn_drop"):
            m.fused_attn = fused


def test_timm_fused_and_unfused_agree_and_outputs_unchanged():
    model = timm_swin()
    x = pixels(5, size=56)
    traces = {}
    for fused in (False, True):
        set_fused(model, fused)
        with torch.no_grad():
            plain = model(x)
        traces[fused] = capture(model, x)
        assert torch.equal(traces[fused]["output"], plain)
        np.testing.assert_array_equal(traces[fused]["logits"], plain[0].numpy())
    for a, b in zip(traces[False]["attentions"], traces[True]["attentions"]):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
    assert traces[False]["geometry"].tolist() == [
        [0, 0, 14, 14, 14, 14, 7, 0],
        [0, 1, 14, 14, 14, 14, 7, 3],
        [1, 0, 7, 7, 7, 7, 7, 0],
        [1, 1, 7, 7, 7, 7, 7, 0],
    ]


def test_timm_probabilities_are_what_its_softmax_gives():
    """The unfused path's own softmax output, read with a hook of the test's own."""
    model = timm_swin()
    set_fused(model, False)
    x = pixels(6, size=56)
    seen = []
    hooks = [
        m.softmax.register_forward_hook(lambda mod, a, out: seen.append(out.detach().numpy()))
        for m in model.modules()
        if hasattr(m, "softmax") and hasattr(m, "attn_drop")
    ]
    trace = capture(model, x)
    for h in hooks:
        h.remove()
    for got, want in zip(trace["attentions"], seen):
        np.testing.assert_array_equal(got, want.reshape(got.shape))


def test_timm_headless_has_no_logits():
    trace = capture(timm_swin(num_classes=0), pixels(7, size=56))
    assert "logits" not in trace and len(trace["attentions"]) == 4


def test_timm_padded_grid_rolls_before_padding_as_our_model_does(scene):
    """timm rolls a shifted grid before padding it: on a padded, shifted stage the captured
    attention equals our model's on the same timm checkpoint, place for place, and the
    rollout of the capture equals our export's."""
    from safetensors.torch import load_file

    from conftest import ROOT

    folder = ROOT / "tests" / "fixtures" / "swin_timm_pad"
    config = json.loads((folder / "config.json").read_text())
    model = timm.create_model(config["architecture"], pretrained=False, **config["model_args"])
    model.load_state_dict(load_file(folder / "model.safetensors"), strict=True)
    model.eval()
    ours = swin_rollout.explain(scene, model=str(folder))
    trace = capture(model, torch.from_numpy(ours["pixel_values"])[None])
    assert int(trace["roll_before_pad"]) == 1 and int(ours["roll_before_pad"]) == 1
    np.testing.assert_array_equal(trace["geometry"], ours["geometry"])
    padded = trace["geometry"][:, 2] != trace["geometry"][:, 4]
    assert (padded & (trace["geometry"][:, 7] > 0)).any(), "a shifted block is padded"
    for k, a in enumerate(trace["attentions"]):
        np.testing.assert_allclose(a, ours[f"attn_{k:02}"], rtol=0, atol=1e-5)
    maps = swin_rollout.rollout(trace["attentions"], trace["geometry"], roll_before_pad=True)
    np.testing.assert_allclose(maps[-1], ours["rollout"], rtol=0, atol=1e-6)
    # Read in Hugging Face's order the same attention lands elsewhere.
    other = swin_rollout.rollout(trace["attentions"], trace["geometry"])
    assert np.abs(other[-1] - ours["rollout"]).max() > 1e-4


def test_bad_arguments_raise(hf_folder):
    model = hf(hf_folder, "eager")
    with pytest.raises(TypeError, match="not a supported Swin"):
        capture(torch.nn.Linear(3, 3), pixels())
    with pytest.raises(TypeError, match="pixel_values"):
        capture(model, np.zeros((1, 3, 40, 40), np.float32))
    with pytest.raises(ValueError, match="pixel_values"):
        capture(model, torch.zeros(1, 4, 40, 40))
    with pytest.raises(TypeError, match="torch.nn.Module"):
        capture("model", pixels())
