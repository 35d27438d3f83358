"""Datasets in their real on-disk layouts, training augmentation and rare-class sampling (METHOD.md section 7)."""
from tqdm_core.data.base import SampleFiles, SegmentationDataset, UnreadableSampleError, read_image, read_label_ids
from tqdm_core.data.bdd100k import BDD100KDataset
from tqdm_core.data.camvid import CamVidDataset
from tqdm_core.data.cityscapes import CityscapesDataset
from tqdm_core.data.class_paste import RareClassPaste
from tqdm_core.data.gta5 import GTA5Dataset
from tqdm_core.data.image_folder import ImageFolderDataset
from tqdm_core.data.lighting_augmentation import LightingAugmentation
from tqdm_core.data.mapillary import MapillaryVistasDataset
from tqdm_core.data.rare_class_sampling import (
    RareClassSamplingDataset,
    class_sampling_probabilities,
    count_class_pixels,
    load_class_statistics,
    read_official_statistics,
)
from tqdm_core.data.registry import DATASETS, build_dataset
from tqdm_core.data.transforms import EvalTransform, PhotometricDistortion, TrainTransform, seed_worker

__all__ = [
    "BDD100KDataset", "CamVidDataset", "CityscapesDataset", "DATASETS", "EvalTransform", "GTA5Dataset",
    "ImageFolderDataset", "LightingAugmentation", "MapillaryVistasDataset", "PhotometricDistortion",
    "RareClassPaste", "RareClassSamplingDataset", "SampleFiles", "SegmentationDataset", "TrainTransform",
    "UnreadableSampleError", "build_dataset", "class_sampling_probabilities", "count_class_pixels",
    "load_class_statistics", "read_image", "read_label_ids", "read_official_statistics", "seed_worker",
]
