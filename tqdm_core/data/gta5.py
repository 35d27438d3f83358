"""GTA5 ("Playing for Data", Richter et al. 2016): 24,966 synthetic 1914x1052 frames, the usual DGSS source.

Layouts found in the wild (checked against the RobustNet and TLDR READMEs and the official tqdm configs):

- Official download, flat: ``<root>/images/00001.png`` ... and ``<root>/labels/00001.png``. Labels are palette PNGs
  whose palette index is the Cityscapes label id (mapped here to the 19 train ids). ``split="all"`` reads all
  images; ``split="train"|"val"|"test"`` needs a split file.
- RobustNet split files (``split_data/gtav_split_{train,val,test}.txt`` in github.com/shachoi/RobustNet; one image
  file name such as ``00003.png`` per line; 12,388 / 6,382 / 6,181 names): place them at
  ``<root>/gtav_split_<split>.txt`` or pass ``split_file``.
- Split folders, as made from those split files: TLDR and tqdm read ``<root>/images/train/*.png`` with
  ``<root>/labels/train/*.png``; RobustNet's own loader adds one sub-folder level
  (``<root>/images/train/folder/*.png``). The validation folder is ``valid`` (``val`` is accepted too). Images are
  found recursively, labels at the same relative path under ``labels/``.
- TLDR/DAFormer's ``tools/convert_datasets/gta.py`` writes ``<name>_labelTrainIds.png`` next to each label; when that
  file exists it is read as train ids directly.

METHOD.md section 11 item 9: the official recipe trains on the RobustNet train split, many papers on all images.
A few GTA5 frames have an image whose size differs from its label (RobustNet's loader skips them). The official
mmseg pipeline loads both as they are; its Resize then rescales the label to the scale computed from the image, so
the label is stretched (nearest) onto the image. Here the image is resized to its label instead (bilinear), which
keeps the ground truth exact for scoring, and a warning names the two files (`SegmentationDataset.load_sample`).
"""
from __future__ import annotations

from pathlib import Path
import warnings

from tqdm_core.classes import CITYSCAPES_19
from tqdm_core.data.base import (
    SampleFiles,
    SegmentationDataset,
    Transform,
    list_files,
    missing_labels_error,
    require_dir,
)
from tqdm_core.data.label_mappings import CITYSCAPES_ID_LUT, CITYSCAPES_TRAIN_ID_LUT

SPLITS = ("train", "val", "test", "all")
_SPLIT_FOLDERS = {"train": ("train",), "val": ("valid", "val"), "test": ("test",)}
_TRAIN_ID_SUFFIX = "_labelTrainIds"


def _layout(root: Path, split: str) -> str:
    if split == "all":
        return ("<root>/images/**/*.png with labels at the same relative path under <root>/labels/ (the flat layout "
                f"<root>/images/*.png + <root>/labels/*.png or the split folders train/valid/test) (root: {root})")
    folder = _SPLIT_FOLDERS[split][0]
    return (f"either the split-folder layout <root>/images/{folder}/**/*.png with labels at the same relative path "
            f"under <root>/labels/{folder}/, or the flat layout <root>/images/*.png + <root>/labels/*.png with a "
            f"split file <root>/gtav_split_{split}.txt (RobustNet split_data) or split_file=...; split='all' reads "
            f"every image of either layout (root: {root})")


class GTA5Dataset(SegmentationDataset):
    """GTA5 with labels mapped to the 19 Cityscapes train ids.

    Args:
        root: dataset folder holding ``images/`` and ``labels/``.
        split: ``"train"``, ``"val"``, ``"test"`` (RobustNet split) or ``"all"`` (every image found).
        split_file: text file with one image file name per line; overrides the split-folder lookup.
        transform: optional callable applied to each sample dict.
    """

    def __init__(self, root: str | Path, *, split: str = "train", split_file: str | Path | None = None,
                 transform: Transform | None = None) -> None:
        if split not in SPLITS:
            raise ValueError(f"GTA5 split '{split}' is unknown; expected one of {SPLITS}")
        root = Path(root)
        image_root = require_dir(root / "images", _layout(root, split))
        label_root = require_dir(root / "labels", _layout(root, split))
        image_files = self._find_images(root, image_root, split, split_file)
        if not image_files:
            raise FileNotFoundError(f"no GTA5 images found for split '{split}'; expected {_layout(root, split)}")

        samples, missing = [], []
        for image_file in image_files:
            relative = image_file.relative_to(image_root)
            raw_label = label_root / relative
            train_id_label = raw_label.with_name(raw_label.stem + _TRAIN_ID_SUFFIX + ".png")
            if train_id_label.is_file():
                samples.append(SampleFiles(image_file, train_id_label, image_file.stem, CITYSCAPES_TRAIN_ID_LUT))
            elif raw_label.is_file():
                samples.append(SampleFiles(image_file, raw_label, image_file.stem, CITYSCAPES_ID_LUT))
            else:
                missing.append((image_file, (raw_label, train_id_label)))
        if missing:
            raise missing_labels_error(missing, len(image_files), _layout(root, split))
        super().__init__(samples, class_table=CITYSCAPES_19, transform=transform, resize_mismatched_images=True)

    @staticmethod
    def _find_images(root: Path, image_root: Path, split: str, split_file: str | Path | None) -> list[Path]:
        if split == "all" and split_file is None:
            return _unique_names(list_files(image_root, (".png",), recursive=True))
        if split_file is None:
            for folder in _SPLIT_FOLDERS[split]:
                if (image_root / folder).is_dir():
                    return list_files(image_root / folder, (".png",), recursive=True)
            split_file = root / f"gtav_split_{split}.txt"
        split_file = Path(split_file)
        if not split_file.is_file():
            raise FileNotFoundError(
                f"GTA5 split '{split}': neither a split folder nor the split file '{split_file}' exists; expected "
                f"{_layout(root, split)}")
        names = [line.strip() for line in split_file.read_text().splitlines() if line.strip()]
        # Split files list bare file names ("00003.png"); keep only the name if a line carries a path.
        image_files = [image_root / Path(name).name for name in names]
        absent = [path for path in image_files if not path.is_file()]
        if absent:
            raise FileNotFoundError(
                f"{len(absent)} of {len(image_files)} images listed in '{split_file}' are missing, e.g. '{absent[0]}'; "
                f"the split file names images of the flat layout <root>/images/<name>")
        return image_files


def _unique_names(image_files: list[Path]) -> list[Path]:
    """One file per frame name: split folders made beside the flat files (links or copies) list each frame twice."""
    by_name: dict[str, Path] = {}
    for path in image_files:
        by_name.setdefault(path.name, path)
    if len(by_name) < len(image_files):
        warnings.warn(f"GTA5 split 'all': {len(image_files) - len(by_name)} images share a file name with another "
                      "image under images/ (split folders beside the flat files?); each frame is read once",
                      stacklevel=3)
    return sorted(by_name.values())
