"""Attention captured from a PyTorch Swin, rolled out and rendered: the notebook workflow.

    python examples/capture_render.py photo.jpg clip.mp4 [--model microsoft/swin-tiny-patch4-window7-224]

Without --model it builds a small random-weight Swin, so it runs offline; with it, any
Hugging Face Swin (a hub id or a folder) with its own image processor."""
import argparse

import numpy as np
import torch
from PIL import Image

import swin_rollout
from swin_rollout.torch import capture


def load(model_name):
    from transformers import AutoImageProcessor, SwinConfig, SwinForImageClassification

    if model_name is None:
        torch.manual_seed(0)
        config = SwinConfig(image_size=112, embed_dim=24, depths=[2, 2, 2], num_heads=[1, 2, 4],
                            window_size=7, num_labels=3)
        model = SwinForImageClassification(config).eval()
        size = config.image_size

        def preprocess(photo):
            x = np.asarray(photo.resize((size, size), Image.BICUBIC), np.float32) / 255
            x = (x - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]
            return torch.from_numpy(x.transpose(2, 0, 1).astype(np.float32))[None]

        return model, preprocess
    model = SwinForImageClassification.from_pretrained(model_name).eval()
    processor = AutoImageProcessor.from_pretrained(model_name)
    return model, lambda photo: processor(photo, return_tensors="pt").pixel_values


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("image")
    ap.add_argument("output", help=".mp4, .gif, or .png for a still")
    ap.add_argument("--model", help="Hugging Face hub id or folder [default: a random tiny Swin]")
    ap.add_argument("--template", default="timelapse")
    args = ap.parse_args()

    model, preprocess = load(args.model)
    photo = Image.open(args.image).convert("RGB")
    trace = capture(model, preprocess(photo))
    maps = swin_rollout.rollout(trace["attentions"], trace["geometry"])
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    top = int(np.argmax(trace["logits"]))
    print(f"{len(maps)} blocks, final map {maps[-1].shape}, predicts {labels[top]}")
    swin_rollout.render(trace, args.output, template=args.template, image=args.image,
                        labels=labels, progress=False)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
