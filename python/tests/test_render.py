"""`swin_rollout.render` from an image, a captured trace and an .npz; the CLI renders the same
trace to the same bytes; bad arguments raise and leave nothing behind."""

import numpy as np
import pytest
import torch

import swin_rollout
from swin_rollout.torch import capture

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def captured():
    torch.manual_seed(3)
    config = transformers.SwinConfig(
        image_size=64, patch_size=4, embed_dim=12, depths=[2, 2], num_heads=[1, 2],
        window_size=4, num_labels=3,
    )
    model = transformers.SwinForImageClassification(config).eval()
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    return capture(model, x)


def test_captured_trace_renders_like_the_cli(captured, cli, tmp_path):
    npz = swin_rollout.save_trace(tmp_path / "trace.npz", captured)
    cli("still", "--trace", npz, "--template", "stages", "-o", tmp_path / "cli.png")
    ours = swin_rollout.render(npz, tmp_path / "py.png", template="stages")
    assert ours.read_bytes() == (tmp_path / "cli.png").read_bytes()
    from_dict = swin_rollout.render(captured, tmp_path / "dict.png", template="stages")
    assert from_dict.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_captured_trace_renders_a_video_with_the_cli(captured, cli, scene, tmp_path):
    npz = swin_rollout.save_trace(tmp_path / "trace.npz", captured)
    out = tmp_path / "clip.mp4"
    cli("render", "--trace", npz, "--image", scene, "--template", "timelapse", "-o", out, "--quiet")
    assert out.read_bytes()[4:8] == b"ftyp"


def test_image_renders_a_gif_and_a_still(scene, cli, tmp_path):
    gif = swin_rollout.render(scene, tmp_path / "clip.gif", template="timelapse", progress=False)
    assert gif.read_bytes()[:6] == b"GIF89a"
    png = swin_rollout.render(scene, tmp_path / "stages.png", template="stages")
    cli("still", scene, "--template", "stages", "-o", tmp_path / "cli.png")
    assert png.read_bytes() == (tmp_path / "cli.png").read_bytes()


def test_relevance_still_equals_the_cli(scene, cli, tmp_path):
    png = swin_rollout.render(
        scene, tmp_path / "py.png", template="stages", explain="relevance", target="Sandal"
    )
    cli("still", scene, "--template", "stages", "--explain", "relevance", "--class", "Sandal",
        "-o", tmp_path / "cli.png")
    assert png.read_bytes() == (tmp_path / "cli.png").read_bytes()


def test_compare_still_equals_the_cli(scene, cli, tmp_path):
    png = swin_rollout.render(scene, tmp_path / "py.png", template="compare", at=20.0)
    cli("still", scene, "--template", "compare", "--at", "20", "-o", tmp_path / "cli.png")
    assert png.read_bytes() == (tmp_path / "cli.png").read_bytes()
    # The defaults are the embedded Swin and ViT; swapped, the picture changes.
    swapped = swin_rollout.render(
        scene, tmp_path / "swapped.png", template="compare", at=20.0,
        model="embedded:vit", compare="embedded:swin",
    )
    assert swapped.read_bytes() != png.read_bytes()


def test_compare_needs_the_compare_template_and_an_image(captured, scene, tmp_path):
    with pytest.raises(ValueError, match='template="compare"'):
        swin_rollout.render(scene, tmp_path / "a.png", compare="embedded:vit")
    with pytest.raises(ValueError, match="not a trace"):
        swin_rollout.render(captured, tmp_path / "b.png", template="compare")
    with pytest.raises(ValueError, match="compare="):
        swin_rollout.render(captured, tmp_path / "c.png", compare="embedded:vit")
    assert list(tmp_path.iterdir()) == []


def test_schematic_needs_no_source(tmp_path):
    out = swin_rollout.render(None, tmp_path / "mechanism.png", template="mechanism", at=3.0)
    assert out.stat().st_size > 0


def test_templates_are_listed():
    names = swin_rollout.templates()
    assert {"explainer", "stages", "timelapse", "mechanism"} <= set(names)


@pytest.mark.parametrize(
    "name,kwargs,error,match",
    [
        ("clip.avi", {}, ValueError, "avi"),
        ("clip.mp4", {"template": "no-such-template"}, ValueError, "no-such-template"),
        ("clip.mp4", {"crf": 60}, ValueError, "crf"),
        ("clip.mp4", {"preset": "warp"}, ValueError, "preset"),
        ("clip.mp4", {"target": "c1"}, ValueError, "relevance"),
        ("clip.mp4", {"labels": ["a"]}, ValueError, "labels"),
    ],
)
def test_bad_arguments_leave_nothing(scene, tmp_path, name, kwargs, error, match):
    with pytest.raises(error, match=match):
        swin_rollout.render(scene, tmp_path / name, progress=False, **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_trace_errors(captured, tmp_path):
    with pytest.raises(ValueError, match='explain="relevance"'):
        swin_rollout.render(captured, tmp_path / "a.png", template="stages", explain="relevance")
    broken = dict(captured)
    broken["attentions"] = captured["attentions"][:-1]
    with pytest.raises(ValueError, match="attn_03"):
        swin_rollout.render(broken, tmp_path / "b.png", template="stages")
    with pytest.raises(ValueError, match="geometry"):
        swin_rollout.render({"attentions": []}, tmp_path / "c.png")
    with pytest.raises(ValueError, match="model="):
        swin_rollout.render(captured, tmp_path / "d.png", model="x")
    with pytest.raises(ValueError, match="prefix_tokens is 1"):
        swin_rollout.render(dict(captured, prefix_tokens=1), tmp_path / "f.png", template="stages")
    with pytest.raises(FileNotFoundError):
        swin_rollout.render(tmp_path / "missing.npz", tmp_path / "e.png")
    assert list(tmp_path.iterdir()) == []


def test_unwritable_output_raises_oserror(scene, tmp_path):
    with pytest.raises(OSError, match="no-such-folder"):
        swin_rollout.render(scene, tmp_path / "no-such-folder" / "a.png", template="stages")


def test_save_trace_round_trips(captured, tmp_path):
    path = swin_rollout.save_trace(tmp_path / "t.npz", captured)
    with np.load(path) as f:
        assert f["geometry"].dtype == np.int64
        np.testing.assert_array_equal(f["attn_01"], captured["attentions"][1])
        assert f["prefix_tokens"].shape == () and int(f["prefix_tokens"]) == 0
    assert [p.name for p in tmp_path.iterdir()] == ["t.npz"]


def test_the_capture_example_runs(scene, tmp_path):
    """examples/capture_render.py, as a user runs it (offline: a random tiny Swin)."""
    import subprocess
    import sys
    from pathlib import Path

    example = Path(__file__).resolve().parents[1] / "examples" / "capture_render.py"
    out = tmp_path / "stages.png"
    done = subprocess.run(
        [sys.executable, str(example), str(scene), str(out), "--template", "stages"],
        capture_output=True, text=True,
    )
    assert done.returncode == 0, done.stderr
    assert "predicts" in done.stdout and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
