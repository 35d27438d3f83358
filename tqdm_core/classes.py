"""Class tables: the ordered class names a model predicts and the colours used to draw them.

A class table travels with every checkpoint, so labels, colours and names always agree downstream
(node, bag tools, evaluation pictures).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

IGNORE_INDEX = 255  # "unlabeled" in label images, ground truth and published label maps


@dataclass(frozen=True)
class ClassTable:
    """Ordered class names and their RGB colours.

    Attributes:
        name: short identifier of the table (``cityscapes19``, ``camvid11``, ``custom``).
        names: class names in train-id order; index ``k`` is label value ``k``.
        colors: one (R, G, B) triple in [0, 255] per class.
    """

    name: str
    names: tuple[str, ...]
    colors: tuple[tuple[int, int, int], ...]

    def __post_init__(self) -> None:
        if len(self.names) != len(self.colors):
            raise ValueError(f"class table '{self.name}': {len(self.names)} names but {len(self.colors)} colours")
        if not 0 < len(self.names) < IGNORE_INDEX:
            raise ValueError(f"class table '{self.name}': needs 1 to {IGNORE_INDEX - 1} classes, got {len(self.names)}")

    @property
    def num_classes(self) -> int:
        return len(self.names)

    def palette(self) -> np.ndarray:
        """(256, 3) uint8 lookup table: class colours, black for ignore and unused ids."""
        lut = np.zeros((256, 3), dtype=np.uint8)
        lut[: self.num_classes] = np.asarray(self.colors, dtype=np.uint8)
        return lut

    def to_dict(self) -> dict:
        return {"name": self.name, "names": list(self.names), "colors": [list(c) for c in self.colors]}

    @classmethod
    def from_dict(cls, data: dict) -> "ClassTable":
        return cls(name=str(data["name"]), names=tuple(data["names"]), colors=tuple(tuple(c) for c in data["colors"]))

    @classmethod
    def from_names(cls, names: list[str] | tuple[str, ...], name: str = "custom") -> "ClassTable":
        """A table for any list of class names (classes can be changed by text), with distinct colours."""
        known = dict(zip(CITYSCAPES_19.names, CITYSCAPES_19.colors)) | dict(zip(CAMVID_11.names, CAMVID_11.colors))
        rng = np.random.default_rng(12345)
        colors = tuple(known.get(n, tuple(int(v) for v in rng.integers(40, 256, 3))) for n in names)
        return cls(name=name, names=tuple(names), colors=colors)


# Cityscapes train ids 0..18 with the official Cityscapes colours.
CITYSCAPES_19 = ClassTable(
    name="cityscapes19",
    names=(
        "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign", "vegetation",
        "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle",
    ),
    colors=(
        (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153), (153, 153, 153),
        (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152), (70, 130, 180), (220, 20, 60),
        (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100), (0, 80, 100), (0, 0, 230), (119, 11, 32),
    ),
)

# CamVid, SegNet version: 11 classes (id 11 "void" is ignore), SegNet palette colours.
CAMVID_11 = ClassTable(
    name="camvid11",
    names=(
        "sky", "building", "pole", "road", "sidewalk", "tree", "sign-symbol", "fence", "car", "pedestrian",
        "bicyclist",
    ),
    colors=(
        (128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (60, 40, 222), (128, 128, 0),
        (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0), (0, 128, 192),
    ),
)

# CamVid class name -> Cityscapes class name (the mapping the CamVid data documents): CamVid merges traffic lights
# into "sign-symbol" and riders with their bicycles into "bicyclist", so those map to "traffic sign" and "rider".
# Used for labels (tqdm_core.data.label_mappings) and for scoring a CamVid model on Cityscapes ground truth
# (tqdm_core.evaluation); here, free of torch, so both read the one table.
CAMVID_TO_CITYSCAPES_NAMES: dict[str, str] = {
    "sky": "sky", "building": "building", "pole": "pole", "road": "road", "sidewalk": "sidewalk",
    "tree": "vegetation", "sign-symbol": "traffic sign", "fence": "fence", "car": "car", "pedestrian": "person",
    "bicyclist": "rider",
}

CLASS_TABLES = {table.name: table for table in (CITYSCAPES_19, CAMVID_11)}


def get_class_table(name: str) -> ClassTable:
    """Look up a built-in class table by name."""
    try:
        return CLASS_TABLES[name]
    except KeyError:
        raise KeyError(f"unknown class table '{name}'; built-in tables: {sorted(CLASS_TABLES)}") from None
