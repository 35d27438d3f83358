"""BDD100K semantic segmentation (Yu et al. 2020): the 10k subset, 7,000 train and 1,000 val frames of 1280x720.

Layouts (checked against the BDD100K download, mmsegmentation's BDD100K guide and the RobustNet loader):

- Official ``10k_images_*.zip`` + ``bdd100k_sem_seg_labels_trainval.zip``: ``<root>/images/10k/<split>/<name>.jpg``
  with ``<root>/labels/sem_seg/masks/<split>/<name>.png``. The masks already hold the 19 Cityscapes train ids with
  255 = ignore. (``labels/sem_seg/colormaps/`` holds colour renderings that cannot be read as ids.)
- The official tqdm configs read ``<root>/labels/sem_seg/colormaps/<split>/<name>_labelTrainIds.png``, train-id
  images converted by the authors; they are used when the official masks are absent.
- The older "seg" release used by RobustNet: ``<root>/images/<split>/<name>.jpg`` with
  ``<root>/labels/<split>/<name>_train_id.png`` (train ids), optionally under a ``seg/`` folder.
"""
from __future__ import annotations

from pathlib import Path

from tqdm_core.classes import CITYSCAPES_19
from tqdm_core.data.base import SampleFiles, SegmentationDataset, Transform, list_files, missing_labels_error
from tqdm_core.data.label_mappings import CITYSCAPES_TRAIN_ID_LUT

SPLITS = ("train", "val")


def _layouts(root: Path, split: str) -> list[tuple[Path, list[tuple[Path, str]]]]:
    """(image folder, [(label folder, label file suffix), ...]) per known layout, most official first."""
    sem_seg = root / "labels" / "sem_seg"
    return [
        (root / "images" / "10k" / split,
         [(sem_seg / "masks" / split, ".png"), (sem_seg / "colormaps" / split, "_labelTrainIds.png")]),
        (root / "images" / split, [(root / "labels" / split, "_train_id.png")]),
        (root / "seg" / "images" / split, [(root / "seg" / "labels" / split, "_train_id.png")]),
    ]


def _layout(root: Path, split: str) -> str:
    return (f"<root>/images/10k/{split}/*.jpg with <root>/labels/sem_seg/masks/{split}/*.png (official 10k release; "
            f"or labels/sem_seg/colormaps/{split}/*_labelTrainIds.png), or the older <root>/images/{split}/*.jpg "
            f"with <root>/labels/{split}/*_train_id.png, root: {root}")


class BDD100KDataset(SegmentationDataset):
    """BDD100K 10k semantic segmentation, labels in the 19 Cityscapes train ids.

    Args:
        root: the ``bdd100k`` folder holding ``images/`` and ``labels/``.
        split: ``"train"`` or ``"val"``.
        transform: optional callable applied to each sample dict.
    """

    def __init__(self, root: str | Path, *, split: str = "val", transform: Transform | None = None) -> None:
        if split not in SPLITS:
            raise ValueError(f"BDD100K split '{split}' is unknown; expected one of {SPLITS} (test has no labels)")
        root = Path(root)
        for image_dir, label_options in _layouts(root, split):
            if image_dir.is_dir():
                break
        else:
            raise FileNotFoundError(f"no BDD100K image folder for split '{split}'; expected {_layout(root, split)}")
        image_files = list_files(image_dir, (".jpg", ".jpeg", ".png"))
        if not image_files:
            raise FileNotFoundError(f"no BDD100K images in '{image_dir}'; expected {_layout(root, split)}")

        samples, missing = [], []
        for image_file in image_files:
            candidates = [label_dir / f"{image_file.stem}{suffix}" for label_dir, suffix in label_options]
            label_file = next((candidate for candidate in candidates if candidate.is_file()), None)
            if label_file is None:
                missing.append((image_file, candidates))
            else:
                samples.append(SampleFiles(image_file, label_file, image_file.stem, CITYSCAPES_TRAIN_ID_LUT))
        if missing:
            error = missing_labels_error(missing, len(image_files), _layout(root, split))
            if image_dir.parent.name == "10k" and len(missing) <= 10:
                # The 10k image zips published before June 2021 hold a few frames without a mask.
                error = ValueError(f"{error}\nA few images without a mask are the known defect of the BDD100K 10k "
                                   "image zips published before June 2021: download the current 10k_images_*.zip "
                                   "from the BDD100K site, or delete the listed images")
            raise error
        super().__init__(samples, class_table=CITYSCAPES_19, transform=transform)
