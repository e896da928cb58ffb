"""Shared fixtures: the CLI binary (to compare against), the repository's images, tiny models."""

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
SCENE = ROOT / "assets" / "scenes" / "scene_0.png"


@pytest.fixture(scope="session")
def cli():
    """Runs the `swin-rollout` binary (SWIN_ROLLOUT_BIN, as `make pytest` sets it)."""
    path = Path(os.environ.get("SWIN_ROLLOUT_BIN", ROOT / "target" / "debug" / "swin-rollout"))
    if not path.is_file():
        pytest.fail(f"{path}: no swin-rollout binary; run `make pytest`, which builds it")

    def run(*args, check=True):
        done = subprocess.run([str(path), *map(str, args)], capture_output=True, text=True)
        if check and done.returncode != 0:
            raise AssertionError(f"swin-rollout {' '.join(map(str, args))} failed:\n{done.stderr}")
        return done

    return run


@pytest.fixture(scope="session")
def scene():
    return SCENE


def load_npz(path):
    with np.load(path) as f:
        return {k: f[k] for k in f.files}
