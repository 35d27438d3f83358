"""tqdm_core: the tqdm domain-generalized semantic segmenter (Pak et al., ECCV 2024) in plain PyTorch."""
from tqdm_core.builder import create_model
from tqdm_core.checkpoint import CheckpointError, load_checkpoint, read_checkpoint, save_checkpoint
from tqdm_core.classes import CAMVID_11, CITYSCAPES_19, IGNORE_INDEX, ClassTable, get_class_table
from tqdm_core.config import TqdmConfig
from tqdm_core.inference import Prediction, Predictor
from tqdm_core.presets import list_presets
from tqdm_core.pretrained import PretrainedWeightsUnavailable

__all__ = [
    "CAMVID_11", "CITYSCAPES_19", "IGNORE_INDEX", "CheckpointError", "ClassTable", "Prediction", "Predictor",
    "PretrainedWeightsUnavailable", "TqdmConfig", "create_model", "get_class_table", "list_presets",
    "load_checkpoint", "read_checkpoint", "save_checkpoint",
]
__version__ = "0.1.0"
