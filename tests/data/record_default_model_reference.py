"""Re-record tests/data/default_model_reference.pt after the shipped default model changes.

    python tests/data/record_default_model_reference.py "with the 5,000-iteration default model (issue 13)"

The input is one committed CamVid frame, CLIP-normalised then resized to 96x128 (bilinear, antialias), run on one
thread: small enough for a fast test, and the same input every time so a re-recording changes only the outputs.
The argument says which model was recorded; the file's `recorded_with` adds the commit and the CPU kernels.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import torch
import torch.nn.functional as F

from tqdm_core import load_checkpoint
from tqdm_core.image_normalization import normalize_images

REPOSITORY = Path(__file__).resolve().parents[2]
FRAME = REPOSITORY / "data" / "camvid_sample" / "val" / "0016E5_08091.png"
OUTPUT = Path(__file__).resolve().parent / "default_model_reference.pt"
SIZE = (96, 128)


def reference_input() -> torch.Tensor:
    """(1, 3, 96, 128) float32: the frame, CLIP-normalised, then resized."""
    rgb = cv2.imread(str(FRAME), cv2.IMREAD_COLOR)[:, :, ::-1].copy()
    normalised = normalize_images(torch.from_numpy(rgb).permute(2, 0, 1)[None])
    return F.interpolate(normalised, size=SIZE, mode="bilinear", antialias=True, align_corners=False)


def record(model_description: str) -> dict:
    torch.set_num_threads(1)
    images = reference_input()
    model = load_checkpoint().model.eval()
    with torch.no_grad():
        outputs = model(images)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPOSITORY, capture_output=True,
                            text=True, check=True).stdout.strip()
    kernels = torch.backends.cpu.get_cpu_capability()
    return {
        "recorded_with": (f"tqdm_core at commit {commit} {model_description}, one thread, {kernels} kernels: "
                          f"CamVid val {FRAME.name}, CLIP-normalised and resized to {SIZE[0]}x{SIZE[1]} "
                          f"(bilinear, antialias); text_embeddings are those of image 0"),
        "images": images,
        "pred_logits": outputs["pred_logits"],
        "pred_masks": outputs["pred_masks"],
        "text_embeddings": outputs["text_embeddings"][0],
    }


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    reference = record(sys.argv[1])
    torch.save(reference, OUTPUT)
    print(f"wrote {OUTPUT}: {reference['recorded_with']}")
