"""Inference: the numpy-in, numpy-out Predictor and sliding-window placement."""
from tqdm_core.inference.predictor import Prediction, Predictor, check_image

__all__ = ["Prediction", "Predictor", "check_image"]
