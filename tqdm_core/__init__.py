"""tqdm_core: the tqdm domain-generalized semantic segmenter (Pak et al., ECCV 2024) in plain PyTorch."""
from tqdm_core.classes import CAMVID_11, CITYSCAPES_19, IGNORE_INDEX, ClassTable, get_class_table

__all__ = ["CAMVID_11", "CITYSCAPES_19", "IGNORE_INDEX", "ClassTable", "get_class_table"]
__version__ = "0.1.0"
