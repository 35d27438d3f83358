"""Datasets by name: ``build_dataset("cityscapes", root, "val")`` over a plain dict."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from tqdm_core.data.base import SegmentationDataset
from tqdm_core.data.bdd100k import BDD100KDataset
from tqdm_core.data.camvid import CamVidDataset
from tqdm_core.data.cityscapes import CityscapesDataset
from tqdm_core.data.gta5 import GTA5Dataset
from tqdm_core.data.image_folder import ImageFolderDataset
from tqdm_core.data.mapillary import MapillaryVistasDataset

DATASETS: dict[str, type[SegmentationDataset]] = {
    "gta5": GTA5Dataset,
    "cityscapes": CityscapesDataset,
    "bdd100k": BDD100KDataset,
    "mapillary": MapillaryVistasDataset,
    "camvid": CamVidDataset,
    "image_folder": ImageFolderDataset,
}


def build_dataset(name: str, root: str | Path, split: str | None = None, **kwargs: Any) -> SegmentationDataset:
    """Build a registered dataset.

    Args:
        name: key of ``DATASETS``.
        root: dataset folder.
        split: split name understood by that dataset (``None`` = the dataset's default).
        **kwargs: further keyword arguments of the dataset class (``transform``, ``classes`` for CamVid, ...).
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset '{name}'; registered datasets: {sorted(DATASETS)}")
    if split is not None:
        kwargs["split"] = split
    return DATASETS[name](root, **kwargs)
