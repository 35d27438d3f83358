"""Shared fixtures of the training tests: a two-frame CamVid copy and a small, fast training config."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from training.train_config import TrainConfig, load_config

CAMVID_SAMPLE = Path(__file__).resolve().parents[2] / "data" / "camvid_sample"
FRAMES = ("0016E5_07959", "0016E5_08091")
# 480x360 CamVid frames shrunk by 4/15 to 128x96: a multiple of the ResNet stride 32, so one crop is a whole frame.
SCALE = 128 / 480


@pytest.fixture
def camvid_two_frames(tmp_path: Path) -> Path:
    """A CamVid folder (SegNet layout) whose train split holds two frames of data/camvid_sample."""
    root = tmp_path / "camvid"
    for folder in ("train", "trainannot"):
        (root / folder).mkdir(parents=True)
    for frame in FRAMES:
        shutil.copy(CAMVID_SAMPLE / "val" / f"{frame}.png", root / "train" / f"{frame}.png")
        shutil.copy(CAMVID_SAMPLE / "valannot" / f"{frame}.png", root / "trainannot" / f"{frame}.png")
    return root


def small_config(camvid_root: Path, output_dir: Path, *overrides: str) -> TrainConfig:
    """tqdm-tiny-rn on whole 128x96 CamVid frames: no random crop, flip, photometric change or sampling."""
    return load_config(None, [
        "preset=tqdm-tiny-rn", "pretrained=null", "model_overrides={class_table: camvid11}",
        f"train_dataset={{name: camvid, root: '{camvid_root}', split: train}}",
        "augmentation.crop_size=[96, 128]", f"augmentation.scale_range=[{SCALE}, {SCALE}]",
        "augmentation.cat_max_ratio=1.0", "augmentation.flip_prob=0.0", "augmentation.photometric=false",
        "rare_class_sampling.enabled=false", "loss.num_points=768", "batch_size=2", "num_workers=0",
        "num_threads=1", "log_interval=1", f"output_dir='{output_dir}'", *overrides,
    ])
