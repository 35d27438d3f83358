"""tqdm_core: the tqdm domain-generalized semantic segmenter (Pak et al., ECCV 2024) in plain PyTorch.

Light names (class tables) import at once; the model, Predictor, inference options, loader and checkpoint helpers
load torch and open_clip on first use, so tools that only need class tables start fast. `load_predictor` with an
`InferenceOptions` is the one way from a checkpoint (or "default", or a preset) to a ready Predictor.
"""
from tqdm_core.classes import CAMVID_11, CITYSCAPES_19, IGNORE_INDEX, ClassTable, get_class_table
from tqdm_core.lazy_names import lazy_getattr

_LAZY = {
    "create_model": "tqdm_core.builder",
    "Checkpoint": "tqdm_core.checkpoint",
    "CheckpointError": "tqdm_core.checkpoint",
    "CheckpointMetadata": "tqdm_core.checkpoint",
    "load_checkpoint": "tqdm_core.checkpoint",
    "read_checkpoint": "tqdm_core.checkpoint",
    "save_checkpoint": "tqdm_core.checkpoint",
    "TqdmConfig": "tqdm_core.config",
    "InferenceOptions": "tqdm_core.inference.options",
    "InvalidOption": "tqdm_core.inference.options",
    "load_predictor": "tqdm_core.inference.loader",
    "Prediction": "tqdm_core.inference.predictor",
    "Predictor": "tqdm_core.inference.predictor",
    "list_presets": "tqdm_core.presets",
    "PretrainedWeightsUnavailable": "tqdm_core.pretrained",
}

__all__ = ["CAMVID_11", "CITYSCAPES_19", "IGNORE_INDEX", "ClassTable", "get_class_table", *_LAZY]
__version__ = "0.1.0"


__getattr__ = lazy_getattr(__name__, _LAZY)
