"""Inference: the numpy-in, numpy-out Predictor, its options, and the one loader that builds it.

Names load on first use, so importing `tqdm_core.inference.options` (the node's parameter checks) does not import
the checkpoint and model code.
"""
import importlib

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


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'tqdm_core.inference' has no attribute '{name}'")
