"""Inference: the numpy-in, numpy-out Predictor, its options, and the one loader that builds it.

Names load on first use, so importing `tqdm_core.inference.options` (the node's parameter checks) does not import
the checkpoint and model code.
"""
from tqdm_core.lazy_names import lazy_getattr

_LAZY = {
    "load_predictor": "tqdm_core.inference.loader",
    "predictor_for": "tqdm_core.inference.loader",
    "InferenceOptions": "tqdm_core.inference.options",
    "InvalidOption": "tqdm_core.inference.options",
    "Prediction": "tqdm_core.inference.predictor",
    "Predictor": "tqdm_core.inference.predictor",
    "check_image": "tqdm_core.inference.predictor",
}

__all__ = sorted(_LAZY)


__getattr__ = lazy_getattr(__name__, _LAZY)
