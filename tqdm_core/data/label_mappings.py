"""Label id -> train id tables for every dataset (METHOD.md section 7.1, "Label mappings").

Every table is also available as a (256,) uint8 lookup table, so a label image of any size is converted with one
fancy-indexing step (``lut[label]``); ids without a train id map to ``IGNORE_INDEX`` (255).
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from tqdm_core.classes import CAMVID_11, CAMVID_TO_CITYSCAPES_NAMES, CITYSCAPES_19, IGNORE_INDEX

# Cityscapes label ids (``*_gtFine_labelIds.png``) -> the 19 train ids. GTA5 labels use the same ids.
CITYSCAPES_ID_TO_TRAIN_ID: dict[int, int] = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12, 26: 13, 27: 14,
    28: 15, 31: 16, 32: 17, 33: 18,
}

# Mapillary Vistas v1.2 class names in label-index order (``config_v1.2.json``, 66 entries, 65 = "Unlabeled").
MAPILLARY_V12_CLASS_NAMES: tuple[str, ...] = (
    "Bird", "Ground Animal", "Curb", "Fence", "Guard Rail", "Barrier", "Wall", "Bike Lane", "Crosswalk - Plain",
    "Curb Cut", "Parking", "Pedestrian Area", "Rail Track", "Road", "Service Lane", "Sidewalk", "Bridge", "Building",
    "Tunnel", "Person", "Bicyclist", "Motorcyclist", "Other Rider", "Lane Marking - Crosswalk",
    "Lane Marking - General", "Mountain", "Sand", "Sky", "Snow", "Terrain", "Vegetation", "Water", "Banner", "Bench",
    "Bike Rack", "Billboard", "Catch Basin", "CCTV Camera", "Fire Hydrant", "Junction Box", "Mailbox", "Manhole",
    "Phone Booth", "Pothole", "Street Light", "Pole", "Traffic Sign Frame", "Utility Pole", "Traffic Light",
    "Traffic Sign (Back)", "Traffic Sign (Front)", "Trash Can", "Bicycle", "Boat", "Bus", "Car", "Caravan",
    "Motorcycle", "On Rails", "Other Vehicle", "Trailer", "Truck", "Wheeled Slow", "Car Mount", "Ego Vehicle",
    "Unlabeled",
)

# Mapillary Vistas v1.2 (66 classes) -> Cityscapes 19, the RobustNet grouping the DGSS literature evaluates with.
# Written by class name so every entry can be checked against the list above.
_MAPILLARY_NAME_TO_CITYSCAPES_NAME: dict[str, str] = {
    "Road": "road", "Lane Marking - General": "road", "Manhole": "road",
    "Curb": "sidewalk", "Sidewalk": "sidewalk",
    "Building": "building", "Wall": "wall", "Fence": "fence",
    "Pole": "pole", "Utility Pole": "pole",
    "Traffic Light": "traffic light", "Traffic Sign (Front)": "traffic sign",
    "Vegetation": "vegetation", "Terrain": "terrain", "Sky": "sky", "Person": "person",
    "Bicyclist": "rider", "Motorcyclist": "rider", "Other Rider": "rider",
    "Car": "car", "Truck": "truck", "Bus": "bus", "On Rails": "train", "Motorcycle": "motorcycle",
    "Bicycle": "bicycle",
}
MAPILLARY_V12_TO_CITYSCAPES: dict[int, int] = {
    MAPILLARY_V12_CLASS_NAMES.index(source): CITYSCAPES_19.names.index(target)
    for source, target in _MAPILLARY_NAME_TO_CITYSCAPES_NAME.items()
}

# CamVid (SegNet version) class 11 is "void"; classes 0..10 are CAMVID_11 in order.
CAMVID_VOID_ID = 11
CAMVID_TO_CAMVID: dict[int, int] = {index: index for index in range(CAMVID_11.num_classes)}
# CamVid -> Cityscapes 19 (data/camvid README), by class name: tqdm_core.classes.CAMVID_TO_CITYSCAPES_NAMES.
CAMVID_TO_CITYSCAPES: dict[int, int] = {
    CAMVID_11.names.index(source): CITYSCAPES_19.names.index(target)
    for source, target in CAMVID_TO_CITYSCAPES_NAMES.items()
}


def lookup_table(mapping: Mapping[int, int]) -> np.ndarray:
    """(256,) uint8 table: ``table[label_id]`` is the train id, ``IGNORE_INDEX`` for ids not in ``mapping``."""
    table = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    for source, target in mapping.items():
        if not (0 <= source <= 255 and 0 <= target <= 255):
            raise ValueError(f"label mapping {source} -> {target}: both ids must be in [0, 255]")
        table[source] = target
    return table


def identity_table(num_classes: int) -> np.ndarray:
    """(256,) uint8 table for labels that already hold train ids: 0..num_classes-1 kept, anything else -> 255."""
    return lookup_table({index: index for index in range(num_classes)})


CITYSCAPES_ID_LUT = lookup_table(CITYSCAPES_ID_TO_TRAIN_ID)
CITYSCAPES_TRAIN_ID_LUT = identity_table(CITYSCAPES_19.num_classes)
MAPILLARY_V12_LUT = lookup_table(MAPILLARY_V12_TO_CITYSCAPES)
CAMVID_LUT = lookup_table(CAMVID_TO_CAMVID)
CAMVID_TO_CITYSCAPES_LUT = lookup_table(CAMVID_TO_CITYSCAPES)
