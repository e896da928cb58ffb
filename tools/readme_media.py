"""Regenerate the README's pictures and clip in docs/ from the embedded model and demo scene.

    cargo build --release --examples
    python3 tools/readme_media.py

- docs/timelapse.gif: the `timelapse` template, scaled to 540x540 at 10 fps (a GIF plays
  inline on a repository page; the MP4 that `render` writes is the full-quality version).
- docs/stages.png: `swin-rollout still` (the stage figure).
- docs/classes.png: `swin-rollout still --template classes` (the top classes' relevance).
- docs/vit_explainer_block.png: `swin-rollout still --model embedded:vit --template explainer
  --at 9` (the small ViT's global attention, its second block filling).
- docs/compare.png: `swin-rollout still --template compare --at 25` (the embedded Swin's
  shifted stage-3 block beside the embedded ViT's full matrix).
- docs/explainer_*.png, docs/mechanism_shifted.png: key frames from the `render_preview`
  example.
"""

import os
import shutil
import subprocess
import sys
import tempfile

from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "swin-rollout")
PREVIEW = os.path.join(ROOT, "target", "release", "examples", "render_preview")
DOCS = os.path.join(ROOT, "docs")
SCENE = os.path.join(ROOT, "assets", "scenes", "scene_0.png")
# Relative, run from ROOT: the frames print the model's path in their header.
MODEL = os.path.join("assets", "model")

# render_preview's file → the README's file.
KEY_FRAMES = {
    "explainer_block1_full.png": "explainer_shifted_block.png",
    "explainer_block1_reorder.png": "explainer_reorder.png",
    "mechanism_block1_full.png": "mechanism_shifted.png",
}


def run(*args):
    print("+", " ".join(args), flush=True)
    subprocess.run(args, check=True, cwd=ROOT)


def gif(frames_dir, out, size=540, every=3, fps=10):
    names = sorted(n for n in os.listdir(frames_dir) if n.endswith(".png"))
    frames = [
        Image.open(os.path.join(frames_dir, n)).convert("RGB").resize((size, size), Image.LANCZOS)
        for n in names[::every]
    ]
    # One palette for the whole clip keeps colours steady from frame to frame.
    palette = frames[len(frames) // 2].quantize(colors=255, method=Image.Quantize.MEDIANCUT)
    frames = [f.quantize(palette=palette, dither=Image.Dither.NONE) for f in frames]
    durations = [1000 // fps] * len(frames)
    durations[-1] = 2000  # rest on the final map before looping
    frames[0].save(out, save_all=True, append_images=frames[1:], duration=durations, loop=0, optimize=True)
    print(f"{out}: {len(frames)} frames, {os.path.getsize(out) / 1e6:.2f} MB")


def main():
    for exe in (BIN, PREVIEW):
        if not os.path.exists(exe):
            sys.exit(f"{exe} is missing: run `cargo build --release --examples` first")
    os.makedirs(DOCS, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        frames = os.path.join(tmp, "timelapse")
        os.makedirs(frames)
        run(BIN, "render", SCENE, "--template", "timelapse", "--frames-dir", frames, "--quiet")
        gif(frames, os.path.join(DOCS, "timelapse.gif"))
        run(BIN, "still", SCENE, "-o", os.path.join(DOCS, "stages.png"), "--force")
        run(BIN, "still", SCENE, "--template", "classes", "-o", os.path.join(DOCS, "classes.png"), "--force")
        run(BIN, "still", SCENE, "--model", "embedded:vit", "--template", "explainer", "--at", "9",
            "-o", os.path.join(DOCS, "vit_explainer_block.png"), "--force")
        run(BIN, "still", SCENE, "--template", "compare", "--at", "25",
            "-o", os.path.join(DOCS, "compare.png"), "--force")
        keys = os.path.join(tmp, "keys")
        run(PREVIEW, MODEL, SCENE, keys)
        for src, dst in KEY_FRAMES.items():
            shutil.copyfile(os.path.join(keys, src), os.path.join(DOCS, dst))
    # The ViT frame stays full colour: its smooth rollout map bands at 256 colours.
    for name in ["stages.png", "classes.png", *KEY_FRAMES.values()]:
        # 256 colours keep the pictures sharp at a third of the size.
        path = os.path.join(DOCS, name)
        Image.open(path).convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(
            path, optimize=True
        )


if __name__ == "__main__":
    main()
