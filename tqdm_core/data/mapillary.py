"""Mapillary Vistas (Neuhold et al. 2017): 18,000 training and 2,000 validation street photos of varied sizes.

Layouts (checked against the Vistas v2.0 download, RobustNet's loader and the official tqdm configs):

- Vistas v2.0 download (holds the v1.2 annotations too): ``<root>/{training,validation}/images/<name>.jpg`` with
  ``<root>/{training,validation}/v1.2/labels/<name>.png``: palette PNGs whose index is one of the 66 v1.2 classes
  (``config_v1.2.json`` order, see ``label_mappings.MAPILLARY_V12_CLASS_NAMES``). The 124-class ``v2.0/labels``
  are not used.
- Vistas v1.x download: the same with ``<root>/<split>/labels/<name>.png`` (66 classes).
- The official tqdm configs read ``<root>/validation/labels/<name>_labelTrainIds.png``, already converted to the 19
  train ids by a script that is not published; such files are read as train ids.

The 66 classes are mapped to the 19 Cityscapes train ids with the RobustNet grouping (METHOD.md section 7.1). Other
published converters group differently (e.g. bike lane, crosswalk, parking and service lane as road, curb cut and
pedestrian area as sidewalk, street light as pole, sign frames and backs as traffic sign, manhole ignored), which moves
the road, sidewalk, pole and sign scores; where ``_labelTrainIds.png`` files are present they are used, so a score can
follow the conversion the official evaluation used.
"""
from __future__ import annotations

from pathlib import Path

from tqdm_core.classes import CITYSCAPES_19
from tqdm_core.data.base import SampleFiles, SegmentationDataset, Transform, list_files, missing_labels_error
from tqdm_core.data.label_mappings import CITYSCAPES_TRAIN_ID_LUT, MAPILLARY_V12_LUT

SPLIT_FOLDERS = {"train": "training", "val": "validation"}


def _layout(root: Path, folder: str) -> str:
    return (f"<root>/{folder}/images/*.jpg with <root>/{folder}/v1.2/labels/*.png (Vistas v1.2 labels, 66 classes), "
            f"<root>/{folder}/labels/*.png (v1.x) or <root>/{folder}/labels/*_labelTrainIds.png (19 train ids), "
            f"root: {root}")


class MapillaryVistasDataset(SegmentationDataset):
    """Mapillary Vistas v1.2 labels mapped to the 19 Cityscapes train ids.

    Args:
        root: dataset folder holding ``training/`` and ``validation/``.
        split: ``"train"`` (folder ``training``) or ``"val"`` (folder ``validation``).
        transform: optional callable applied to each sample dict.
    """

    def __init__(self, root: str | Path, *, split: str = "val", transform: Transform | None = None) -> None:
        if split not in SPLIT_FOLDERS:
            raise ValueError(f"Mapillary Vistas split '{split}' is unknown; expected one of {tuple(SPLIT_FOLDERS)}")
        root = Path(root)
        folder = SPLIT_FOLDERS[split]
        image_dir = root / folder / "images"
        if not image_dir.is_dir():
            raise FileNotFoundError(f"Mapillary Vistas image folder '{image_dir}' does not exist; "
                                    f"expected {_layout(root, folder)}")
        image_files = list_files(image_dir, (".jpg", ".jpeg", ".png"))
        if not image_files:
            raise FileNotFoundError(f"no Mapillary Vistas images in '{image_dir}'; expected {_layout(root, folder)}")

        samples, missing = [], []
        for image_file in image_files:
            name = image_file.stem
            # Converted train-id labels first: they are what the official evaluation reads, and the 66 -> 19
            # grouping differs between converters (see the module docstring).
            candidates = (
                (root / folder / "labels" / f"{name}_labelTrainIds.png", CITYSCAPES_TRAIN_ID_LUT),
                (root / folder / "v1.2" / "labels" / f"{name}.png", MAPILLARY_V12_LUT),
                (root / folder / "labels" / f"{name}.png", MAPILLARY_V12_LUT),
            )
            found = next(((path, table) for path, table in candidates if path.is_file()), None)
            if found is None:
                missing.append((image_file, [path for path, _ in candidates]))
            else:
                samples.append(SampleFiles(image_file, found[0], name, found[1]))
        if missing:
            raise missing_labels_error(missing, len(image_files), _layout(root, folder))
        super().__init__(samples, class_table=CITYSCAPES_19, transform=transform)
