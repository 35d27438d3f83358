"""Cityscapes (Cordts et al. 2016): 2,975 train and 500 val frames of 2048x1024, fine annotations.

Layout of the official ``leftImg8bit_trainvaltest.zip`` and ``gtFine_trainvaltest.zip``:
``<root>/leftImg8bit/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png`` and
``<root>/gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png``. Label ids are mapped to the 19 train ids
here; a ``*_gtFine_labelTrainIds.png`` made by cityscapesscripts' ``createTrainIdLabelImgs`` is read directly when it
exists. RobustNet keeps the zip folders (``<root>/leftImg8bit_trainvaltest/leftImg8bit/...`` and
``<root>/gtFine_trainvaltest/gtFine/...``); that layout is accepted too.
"""
from __future__ import annotations

from pathlib import Path

from tqdm_core.classes import CITYSCAPES_19
from tqdm_core.data.base import SampleFiles, SegmentationDataset, Transform, list_files, missing_labels_error
from tqdm_core.data.label_mappings import CITYSCAPES_ID_LUT, CITYSCAPES_TRAIN_ID_LUT

SPLITS = ("train", "val")
_IMAGE_SUFFIX = "_leftImg8bit.png"


def _layout(root: Path, split: str) -> str:
    return (f"<root>/leftImg8bit/{split}/<city>/*{_IMAGE_SUFFIX} with "
            f"<root>/gtFine/{split}/<city>/*_gtFine_labelIds.png (or *_gtFine_labelTrainIds.png), or the same "
            "inside the zip folders <root>/leftImg8bit_trainvaltest/leftImg8bit/ and <root>/gtFine_trainvaltest/gtFine/ "
            f"(both nested or both not), root: {root}")


class CityscapesDataset(SegmentationDataset):
    """Cityscapes fine annotations as the 19 train ids.

    Args:
        root: dataset folder holding ``leftImg8bit/`` and ``gtFine/``.
        split: ``"train"`` or ``"val"``.
        transform: optional callable applied to each sample dict.
    """

    def __init__(self, root: str | Path, *, split: str = "val", transform: Transform | None = None) -> None:
        if split not in SPLITS:
            raise ValueError(f"Cityscapes split '{split}' is unknown; expected one of {SPLITS} (test has no labels)")
        root = Path(root)
        image_root, label_root = root / "leftImg8bit", root / "gtFine"
        if not image_root.is_dir() and (root / "leftImg8bit_trainvaltest" / "leftImg8bit").is_dir():
            image_root = root / "leftImg8bit_trainvaltest" / "leftImg8bit"
            label_root = root / "gtFine_trainvaltest" / "gtFine"
        if not (image_root / split).is_dir():
            raise FileNotFoundError(f"Cityscapes image folder '{image_root / split}' does not exist; "
                                    f"expected {_layout(root, split)}")
        image_files = list_files(image_root / split, (_IMAGE_SUFFIX,), recursive=True)
        if not image_files:
            raise FileNotFoundError(f"no Cityscapes images in '{image_root / split}'; expected {_layout(root, split)}")

        samples, missing = [], []
        for image_file in image_files:
            name = image_file.name[: -len(_IMAGE_SUFFIX)]
            label_dir = label_root / image_file.parent.relative_to(image_root)
            train_id_label = label_dir / f"{name}_gtFine_labelTrainIds.png"
            id_label = label_dir / f"{name}_gtFine_labelIds.png"
            if train_id_label.is_file():
                samples.append(SampleFiles(image_file, train_id_label, name, CITYSCAPES_TRAIN_ID_LUT))
            elif id_label.is_file():
                samples.append(SampleFiles(image_file, id_label, name, CITYSCAPES_ID_LUT))
            else:
                missing.append((image_file, (id_label, train_id_label)))
        if missing:
            raise missing_labels_error(missing, len(image_files), _layout(root, split))
        super().__init__(samples, class_table=CITYSCAPES_19, transform=transform)
