"""`swin_rollout.explain`: the same arrays as the CLI's `export`, from a path or a numpy image."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import swin_rollout
from conftest import load_npz


def assert_same_arrays(got, want):
    assert sorted(got) == sorted(want)
    for key in want:
        assert got[key].dtype == want[key].dtype, key
        assert got[key].shape == want[key].shape, key
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)


def test_rollout_equals_cli_export(cli, scene, tmp_path):
    out = tmp_path / "export.npz"
    cli("export", scene, "-o", out)
    assert_same_arrays(swin_rollout.explain(scene), load_npz(out))


def test_relevance_equals_cli_export(cli, scene, tmp_path):
    out = tmp_path / "export.npz"
    cli("export", scene, "--explain", "relevance", "--class", "Sandal", "-o", out)
    got = swin_rollout.explain(scene, explain="relevance", target="Sandal")
    assert_same_arrays(got, load_npz(out))
    labels = swin_rollout.labels()
    assert got["target"].shape == () and labels[int(got["target"])] == "Sandal"
    by_index = swin_rollout.explain(scene, explain="relevance", target=labels.index("Sandal"))
    np.testing.assert_array_equal(by_index["relevance"], got["relevance"])


def test_vit_relevance_equals_cli_export(cli, tmp_path):
    """A ViT (and a distilled DeiT under timm's names) explains its classes from Python too."""
    root = Path(__file__).resolve().parents[2]
    image = root / "assets" / "chelsea.png"
    for model in ("vit_small", "deit_teacher_timm"):
        folder = root / "tests" / "fixtures" / model
        out = tmp_path / f"{model}.npz"
        cli("export", image, "--model", folder, "--explain", "relevance", "-o", out)
        got = swin_rollout.explain(str(image), model=str(folder), explain="relevance")
        assert_same_arrays(got, load_npz(out))
        assert int(got["prefix_tokens"]) in (1, 2)
        assert got["relevance"].shape == got["rollout"].shape


def test_options_reach_the_rollout(cli, scene, tmp_path):
    out = tmp_path / "export.npz"
    cli("export", scene, "--head-fusion", "max", "--residual", "0.2", "--discard", "0.5", "-o", out)
    got = swin_rollout.explain(scene, head_fusion="max", residual=0.2, discard=0.5)
    assert_same_arrays(got, load_npz(out))


def test_numpy_image_equals_path(scene):
    pixels = np.asarray(Image.open(scene).convert("RGB"))
    a = swin_rollout.explain(pixels)
    b = swin_rollout.explain(scene)
    assert_same_arrays(a, b)


def test_layout(scene):
    arrays = swin_rollout.explain(scene, explain="relevance")
    geometry = arrays["geometry"]
    assert geometry.dtype == np.int64 and geometry.shape[1] == 8
    h0, w0 = geometry[0, 2], geometry[0, 3]
    assert arrays["rollout"].shape == (h0, w0) and arrays["relevance"].dtype == np.float32
    for k, row in enumerate(geometry):
        windows = (row[4] // row[6]) * (row[5] // row[6])
        a = arrays[f"attn_{k:02}"]
        assert a.shape[0] == windows and a.shape[2:] == (row[6] ** 2, row[6] ** 2)
    assert int(arrays["target"]) == int(np.argmax(arrays["logits"]))
    prefix = arrays["prefix_tokens"]
    assert prefix.dtype == np.int64 and prefix.shape == () and int(prefix) == 0
    arrays["rollout"][0, 0] = 0.0  # writable


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        ({"explain": "gradcam"}, ValueError, "explain"),
        ({"target": "Sandal"}, ValueError, "relevance"),
        ({"explain": "relevance", "target": "Spaceship"}, ValueError, "target"),
        ({"explain": "relevance", "target": 99}, ValueError, "target 99 is out of range"),
        ({"explain": "relevance", "target": 1.5}, TypeError, "target"),
        ({"head_fusion": "avg"}, ValueError, "head_fusion"),
        ({"residual": -0.1}, ValueError, "residual"),
    ],
)
def test_bad_arguments_raise(scene, kwargs, error, match):
    with pytest.raises(error, match=match):
        swin_rollout.explain(scene, **kwargs)


def test_bad_images_raise(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.png"):
        swin_rollout.explain(tmp_path / "missing.png")
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not an image")
    with pytest.raises(ValueError, match="junk.png"):
        swin_rollout.explain(junk)
    with pytest.raises(ValueError, match="H×W×3"):
        swin_rollout.explain(np.zeros((8, 8), np.uint8))
    with pytest.raises(TypeError, match="uint8"):
        swin_rollout.explain(np.zeros((8, 8, 3), np.float32))
    with pytest.raises(TypeError, match="image"):
        swin_rollout.explain(42)


def test_bad_model_raises(scene, tmp_path):
    with pytest.raises((ValueError, FileNotFoundError), match="no-such-model"):
        swin_rollout.explain(scene, model=tmp_path / "no-such-model")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises((ValueError, FileNotFoundError), match="empty"):
        swin_rollout.explain(scene, model=empty)


FIXTURES = Path(__file__).resolve().parents[2] / "tests" / "fixtures"


@pytest.mark.parametrize("folder", ["swinv2_pad", "swin_headless", "swinv2_headless"])
def test_swin_v2_and_headless_models_equal_cli_export(cli, scene, tmp_path, folder):
    model = FIXTURES / folder
    out = tmp_path / "export.npz"
    cli("export", scene, "--model", model, "-o", out)
    got = swin_rollout.explain(scene, model=str(model))
    assert_same_arrays(got, load_npz(out))
    # A headless backbone exports no logits, and cannot explain a class.
    assert ("logits" in got) == (folder == "swinv2_pad")
    if folder != "swinv2_pad":
        with pytest.raises(ValueError, match="has no classifier"):
            swin_rollout.explain(scene, model=str(model), explain="relevance")


def test_swin_v2_relevance_equals_cli_export(cli, scene, tmp_path):
    model = FIXTURES / "swinv2_pad"
    out = tmp_path / "export.npz"
    cli("export", scene, "--model", model, "--explain", "relevance", "--class", "fox", "-o", out)
    got = swin_rollout.explain(scene, model=str(model), explain="relevance", target="fox")
    assert_same_arrays(got, load_npz(out))
