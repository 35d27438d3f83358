"""Inference: the numpy-in, numpy-out Predictor, its options, and the one loader that builds it."""
from tqdm_core.inference.loader import load_predictor, predictor_for
from tqdm_core.inference.options import InferenceOptions, InvalidOption
from tqdm_core.inference.predictor import Prediction, Predictor, check_image

__all__ = ["InferenceOptions", "InvalidOption", "Prediction", "Predictor", "check_image", "load_predictor",
           "predictor_for"]
