"""Shared fixtures of the training tests: a two-frame CamVid copy and a small, fast training config."""
from __future__ import annotations

import os
import shutil
import socket
import sys
from pathlib import Path

import pytest

import yaml

from training.train_config import TrainConfig, load_config

REPO_ROOT = Path(__file__).resolve().parents[2]

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


def small_overrides(camvid_root: Path, output_dir: Path, *overrides: str) -> list[str]:
    """The command-line overrides of `small_config` (for ``training.train.main``)."""
    return [
        "preset=tqdm-tiny-rn", "pretrained=null", "model_overrides={class_table: camvid11}",
        f"train_dataset={{name: camvid, root: '{camvid_root}', split: train}}",
        "augmentation.crop_size=[96, 128]", f"augmentation.scale_range=[{SCALE}, {SCALE}]",
        "augmentation.cat_max_ratio=1.0", "augmentation.flip_prob=0.0", "augmentation.photometric=false",
        "rare_class_sampling.enabled=false", "loss.num_points=768", "batch_size=2", "num_workers=0",
        "num_threads=1", "log_interval=1", f"output_dir='{output_dir}'", *overrides,
    ]


def small_config(camvid_root: Path, output_dir: Path, *overrides: str) -> TrainConfig:
    """tqdm-tiny-rn on whole 128x96 CamVid frames: no random crop, flip, photometric change or sampling."""
    return load_config(None, small_overrides(camvid_root, output_dir, *overrides))


def torchrun_command(config: TrainConfig, worker_source: str, folder: Path) -> tuple[list[str], dict[str, str]]:
    """Command and environment that run ``worker_source`` on 2 gloo ranks over loopback with ``config``.

    The worker gets the config path as argv[1] and ``folder`` (where config.yaml and worker.py are written) as argv[2].
    """
    config_path = folder / "config.yaml"
    config_path.write_text(yaml.safe_dump(config.to_dict()))
    worker = folder / "worker.py"
    worker.write_text(worker_source)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    environment = dict(os.environ, PYTHONPATH=str(REPO_ROOT), GLOO_SOCKET_IFNAME="lo", OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
               "--master_port", str(port), str(worker), str(config_path), str(folder)]
    return command, environment
