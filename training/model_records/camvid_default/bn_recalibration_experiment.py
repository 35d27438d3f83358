"""Recompute the BatchNorm statistics of an averaged (EMA) model on its fold's training frames (session-5 record).

The EMA lever of the model card: the averaged weights came with averaged BatchNorm statistics that do not match
them; SWA's `update_bn` re-estimates the statistics from 96 random 320x320 crops of the frames the fold trained on.

    python training/model_records/camvid_default/bn_recalibration_experiment.py 0001TP runs/ema_bnrecal_0001TP.pt
"""
import sys

import numpy as np
import torch
from torch.optim.swa_utils import update_bn

from tqdm_core import load_checkpoint, save_checkpoint
from tqdm_core.data import build_dataset
from tqdm_core.image_normalization import normalize_images

CROP = 320
CROPS = 96
BATCH_SIZE = 8


def random_crop_batches(held_out_sequence: str, rng: np.random.Generator) -> list[torch.Tensor]:
    """Normalised (8, 3, 320, 320) batches of random crops from the fold's training frames."""
    frames = build_dataset("camvid", "../shared/data/camvid", "trainval", exclude_sequences=[held_out_sequence])
    chosen = rng.permutation(len(frames))[:CROPS]
    batches = []
    for start in range(0, len(chosen), BATCH_SIZE):
        crops = []
        for index in chosen[start:start + BATCH_SIZE]:
            image = frames.load_sample(int(index))["image"]  # (360, 480, 3) uint8
            top = rng.integers(0, image.shape[0] - CROP + 1)
            left = rng.integers(0, image.shape[1] - CROP + 1)
            crops.append(image[top:top + CROP, left:left + CROP])
        pixels = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).contiguous()  # (B, H, W, 3) -> (B, 3, H, W)
        batches.append(normalize_images(pixels))
    return batches


def main(held_out_sequence: str, output: str) -> None:
    torch.set_num_threads(1)
    checkpoint = load_checkpoint(f"runs/sched3000_ema_holdout_{held_out_sequence}/model_final.pt")
    update_bn(random_crop_batches(held_out_sequence, np.random.default_rng(0)), checkpoint.model)
    checkpoint.model.eval()
    save_checkpoint(checkpoint.model, output, metadata=checkpoint.metadata)
    print("saved", output)


if __name__ == "__main__":
    main(*sys.argv[1:3])
