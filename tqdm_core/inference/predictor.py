"""Numpy in, numpy out: the one interface between the tqdm model and every application (node, bag tools, eval).

The Predictor owns colour order, optional rescaling, normalisation, padding, whole-image or sliding-window
inference, precision, `no_grad`, and the input contract. Outputs are always at the input resolution.

Which output is which official quantity (METHOD.md section 8), for converted official checkpoints:

- `Predictor.scores`: the window-averaged semantic scores S resized to the input, the output of the official
  `whole_inference` / `slide_inference` (called `seg_logit` there and in tests/data/parity_fixture);
- `Predictor.softmax_probabilities`: softmax over classes of S, the output of the official `inference`, which
  `simple_test` calls `seg_logit` and takes the argmax of;
- `Predictor.probabilities`, `Prediction.probabilities` and `Prediction.confidence`: the normalised mixture
  S_c / sum_c S_c (not an official output: the official softmax of S is nearly flat). All three share S's argmax.
"""
from __future__ import annotations

import copy
import logging
import os
from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from tqdm_core.classes import IGNORE_INDEX, ClassTable
from tqdm_core.data.transforms import scaled_size
from tqdm_core.image_normalization import normalize_images
from tqdm_core.inference.bf16_network import bf16_network
from tqdm_core.inference.channels_last_network import channels_last_network
from tqdm_core.inference.export import InferenceGraph, OnnxRuntimeRunner
from tqdm_core.inference.host_memory import reuse_freed_memory
from tqdm_core.inference.precision import PRECISIONS  # noqa: F401 (re-exported: the precision choices)
from tqdm_core.inference.precision import DTYPES, cpu_has_native_bf16, cpu_info, resolve_precision
from tqdm_core.inference.sliding_window import window_starts
from tqdm_core.modeling.semantic_inference import confidence_and_labels, scores_to_probabilities

logger = logging.getLogger(__name__)

MODES = ("whole", "slide")
RUNTIMES = ("torch", "onnxruntime")
MAX_SIDE = 8192  # larger inputs are almost surely a wrong shape or encoding
SCALE_RANGE = (0.05, 8.0)  # input resize factors accepted (inclusive)
CONFIDENCE_RANGE = (0.0, 1.0)  # confidence thresholds accepted (inclusive)
# Inclusive ranges of the numeric arguments: the only ones (InferenceOptions and every front end read this table).
ARGUMENT_RANGES: dict[str, tuple[float, float]] = {
    "window": (32, MAX_SIDE),
    "stride": (16, MAX_SIDE),
    "scale": SCALE_RANGE,
    "confidence_threshold": CONFIDENCE_RANGE,
    "max_batch_size": (1, 64),
}


@dataclass
class Prediction:
    """Per-pixel result for one image, at the image's resolution.

    Attributes:
        labels: (H, W) uint8 class ids; 255 where confidence < the predictor's confidence_threshold.
        confidence: (H, W) float32 in [0, 1], the largest class probability.
        probabilities: (K, H, W) float32 class probabilities, the normalised mixture S_c / sum_c S_c (not the
            official softmax of S: `Predictor.softmax_probabilities`), or None unless requested.
    """

    labels: np.ndarray
    confidence: np.ndarray
    probabilities: np.ndarray | None = None


class Predictor:
    """Runs a TqdmSegmentor on numpy images.

    Args:
        model: a TqdmSegmentor (put in eval mode and moved to `device`).
        device: "cpu", "cuda" or "cuda:N".
        precision: "auto" (bf16 on a CPU with native bf16, fp32 on other CPUs, bf16 or fp16 on CUDA; see
            `tqdm_core.inference.precision`), "fp32", "bf16" or "fp16" (CUDA only). CPU bf16 runs a copy of the
            network converted once (`bf16_network`: weights as they are at construction); CUDA uses autocast.
            The resolved precision is `self.precision` and is logged.
        mode: "whole" (pad to the model's size divisor, one pass) or "slide" (windows, scores averaged). Known
            deviations, outside the official protocol (slide on images larger than the window): whole pads to the
            size divisor (32) and slide pads an image smaller than the window up to it (zeros, the mean colour), where
            the official code runs the image or crop as it is; outputs differ only for such images.
        window, stride: sliding-window size and step in pixels (512 and 341 in the paper).
        scale: resize factor applied to the input before inference (e.g. 0.5 for speed); outputs are resized back.
            The uint8 image is resized as the official test pipeline does (`resize_like_official`), then normalised.
        confidence_threshold: pixels whose confidence is below it are labelled 255 (unlabeled).
        max_batch_size: images (whole) or windows (slide) per forward pass.
        compile: run the network through `torch.compile` (inductor); the first call of each input shape
            compiles (minutes for the paper presets), later calls are faster. Outputs match eager fp32 within
            the tolerance pinned by tests/core/test_fast_paths.py.
        runtime: "torch", or "onnxruntime" (CPU, fp32 only): the network is exported to ONNX once per input
            shape and run by ONNX Runtime (tqdm_core.inference.export).
        flip: test-time augmentation: also run the image mirrored left-right and average the two score maps
            (twice the model time).
        reuse_memory: on the CPU, make glibc keep freed memory in the process so large activations stop
            page-faulting on every call (`tqdm_core.inference.host_memory`; 11-17 % of a 512x1024 slide call).
            Process-wide and never undone; the process keeps its peak working set. `self.reuse_memory` says whether
            it is in effect (False off glibc).
    """

    def __init__(self, model: torch.nn.Module, *, device: str = "cpu", precision: str = "auto", mode: str = "whole",
                 window: int = 512, stride: int = 341, scale: float = 1.0, confidence_threshold: float = 0.0,
                 max_batch_size: int = 8, compile: bool = False, runtime: str = "torch", flip: bool = False,
                 reuse_memory: bool = True) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got '{mode}'")
        self.device = _check_device(device)
        requested_precision = precision
        precision = resolve_precision(precision, self.device, runtime=runtime)  # "auto" -> what runs best here
        values = {"window": window, "stride": stride, "scale": scale, "confidence_threshold": confidence_threshold,
                  "max_batch_size": max_batch_size}
        for name, (low, high) in ARGUMENT_RANGES.items():
            if not low <= values[name] <= high:
                raise ValueError(f"{name} must be in [{low:g}, {high:g}], got {values[name]}")
        if window % model.size_divisor or stride > window:
            raise ValueError(f"window must be a multiple of {model.size_divisor} and stride <= window, "
                             f"got window={window}, stride={stride}")
        if runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {RUNTIMES}, got '{runtime}'")
        if runtime == "onnxruntime" and (precision != "fp32" or self.device.type != "cpu" or compile):
            raise ValueError(f"runtime 'onnxruntime' runs fp32 on the CPU without torch.compile; got precision="
                             f"'{precision}', device='{device}', compile={compile}")
        if precision == "bf16" and self.device.type == "cpu" and not cpu_has_native_bf16():
            logger.warning("precision 'bf16' on a CPU without AVX512-BF16 or AMX: bf16 matmuls and convolutions are "
                           "emulated and much slower than fp32 here; use precision 'fp32' or 'auto'")
        self.model = model.eval().to(self.device)
        self.compile = compile
        self.runtime = runtime
        self.precision = precision
        self.requested_precision = requested_precision
        if runtime == "onnxruntime":
            self._network = OnnxRuntimeRunner(self.model)
        else:
            network = self.model
            if self.device.type == "cpu" and precision == "bf16":
                network = bf16_network(self.model)
            elif self.device.type == "cpu" and not compile:  # the compiler picks its own layouts
                network = channels_last_network(self.model)
            graph = InferenceGraph(model=network, fast_kernels=not compile)  # the compiler fuses on its own
            self._network = torch.compile(graph, dynamic=False) if compile else graph
        logger.info("precision '%s' -> %s on %s (%s)", requested_precision, precision, self.device,
                    _precision_reason(precision, self.device))
        self.mode = mode
        self.window = window
        self.stride = stride
        self.scale = scale
        self.confidence_threshold = confidence_threshold
        self.max_batch_size = max_batch_size
        self.flip = flip
        self.reuse_memory = reuse_memory and self.device.type == "cpu" and reuse_freed_memory()

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike | None = None, *, preset: str | None = None,
                        **options) -> "Predictor":
        """Load a checkpoint written by `tqdm_core.save_checkpoint` (`tqdm_core.inference.load_predictor`).

        Args:
            path: the checkpoint; None or "default" loads the default model shipped in the package.
            preset: if given, the preset the checkpoint must hold (checked before the model is built).
            options: `InferenceOptions` fields (the keyword arguments of Predictor). Without `scale`, the
                checkpoint's recommended input scale is used (e.g. 0.5 for a model trained at half resolution).
        """
        from tqdm_core.default_model import DEFAULT
        from tqdm_core.inference.loader import load_predictor
        from tqdm_core.inference.options import InferenceOptions

        return load_predictor(DEFAULT if path is None else path, preset=preset, options=InferenceOptions(**options))

    @property
    def class_table(self) -> ClassTable:
        return self.model.class_table

    def describe(self) -> dict:
        """Summary for logs and diagnostics."""
        return {
            "preset": self.model.preset,
            "classes": self.class_table.name,
            "num_classes": self.class_table.num_classes,
            "parameters": sum(p.numel() for p in self.model.parameters()),
            "device": str(self.device),
            "precision": self.precision,
            "requested_precision": self.requested_precision,
            "mode": self.mode,
            "scale": self.scale,
            "compile": self.compile,
            "runtime": self.runtime,
            "confidence_threshold": self.confidence_threshold,
            "flip": self.flip,
            "reuse_memory": self.reuse_memory,
        }

    def with_scale(self, scale: float) -> "Predictor":
        """This Predictor at another input scale, sharing its network: no second bf16 copy, export or compile
        (an evaluation with a per-image test scale needs one scale per image size)."""
        low, high = ARGUMENT_RANGES["scale"]
        if not low <= scale <= high:
            raise ValueError(f"scale must be in [{low:g}, {high:g}], got {scale}")
        scaled = copy.copy(self)
        scaled.scale = scale
        return scaled

    def predict(self, image: np.ndarray, *, channel_order: str = "rgb",
                return_probabilities: bool = False) -> Prediction:
        """Segment one (H, W, 3) uint8 image."""
        return self.predict_batch([image], channel_order=channel_order, return_probabilities=return_probabilities)[0]

    def predict_batch(self, images: Sequence[np.ndarray], *, channel_order: str = "rgb",
                      return_probabilities: bool = False) -> list[Prediction]:
        """Segment several images; images of the same size share forward passes.

        Args:
            images: (H_i, W_i, 3) uint8 arrays, sizes may differ.
            channel_order: "rgb" or "bgr" (OpenCV order).
            return_probabilities: also return the (K, H, W) class probabilities.
        """
        if channel_order not in ("rgb", "bgr"):
            raise ValueError(f"channel_order must be 'rgb' or 'bgr', got '{channel_order}'")
        if not isinstance(images, (list, tuple)):
            raise ValueError(f"predict_batch expects a list of images, got {type(images).__name__}")
        for index, image in enumerate(images):
            check_image(image, name=f"image {index}")
        results: list[Prediction | None] = [None] * len(images)
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for index, image in enumerate(images):
            by_shape.setdefault(image.shape, []).append(index)
        for indices in by_shape.values():
            step = self.max_batch_size if self.mode == "whole" else 1
            for start in range(0, len(indices), step):
                chunk = indices[start:start + step]
                batch = np.stack([images[i] for i in chunk])
                for i, prediction in zip(chunk, self._predict_same_size(batch, channel_order, return_probabilities)):
                    results[i] = prediction
        return results

    @torch.inference_mode()
    def probabilities(self, images: np.ndarray, *, channel_order: str = "rgb") -> torch.Tensor:
        """Normalised mixture S_c / sum_c S_c for a (B, H, W, 3) uint8 batch of same-size images: (B, K, H, W)
        float32 (device), sums to 1 per pixel. The basis of `Prediction.confidence`; not an official output (see
        `softmax_probabilities`)."""
        return scores_to_probabilities(self.scores(images, channel_order=channel_order))

    @torch.inference_mode()
    def softmax_probabilities(self, images: np.ndarray, *, channel_order: str = "rgb") -> torch.Tensor:
        """Softmax over classes of the scores S, the official output, for a (B, H, W, 3) uint8 batch of same-size
        images: (B, K, H, W) float32 (device).

        This is what the official `inference` returns (mmseg `EncoderDecoder.inference`, named `seg_logit` in
        `simple_test`, which takes its argmax): softmax_c of the window-averaged S resized to the input. A trained
        model's S lies in [0, ~1], so it is nearly flat (every value close to 1/K); its argmax is that of S. With
        `flip=True` it is the softmax of the averaged S, where the official flip augmentation averages the two
        softmaxes.
        """
        return self.scores(images, channel_order=channel_order).softmax(dim=1)

    @torch.inference_mode()
    def scores(self, images: np.ndarray, *, channel_order: str = "rgb") -> torch.Tensor:
        """Semantic scores S for a (B, H, W, 3) uint8 batch of same-size images: (B, K, H, W) float32 (device).

        S_c = sum_q p_q(c) m_q, averaged over sliding windows and resized to the input: the output of the official
        `whole_inference` / `slide_inference` (their `seg_logit`, the input of the official softmax). At a scale
        other than 1 the uint8 images are resized the official way (`resize_like_official`) before normalisation.

        Raises:
            ValueError: `images` is not a (B, H, W, 3) uint8 array (float images are refused, as by `predict`:
                convert them to 8-bit RGB first).
        """
        if not isinstance(images, np.ndarray) or images.ndim != 4 or not len(images):
            found = images.shape if isinstance(images, np.ndarray) else type(images).__name__
            raise ValueError(f"expected a (B, H, W, 3) uint8 numpy batch of one or more images, got {found}; "
                             f"stack same-size images with numpy.stack")
        check_image(images[0], name="batch")
        height, width = images.shape[1:3]
        resized = resize_like_official(images, self.scale)
        tensor = torch.from_numpy(resized).to(self.device)
        tensor = tensor.permute(0, 3, 1, 2)  # (B, h, w, 3) -> (B, 3, h, w)
        if channel_order == "bgr":
            tensor = tensor.flip(1)
        tensor = normalize_images(tensor)
        run = self._whole if self.mode == "whole" else self._slide
        scores = run(tensor)
        if self.flip:  # the mirrored image's scores, mirrored back: the average is left-right symmetric
            scores = (scores + run(tensor.flip(-1)).flip(-1)) / 2
        if scores.shape[-2:] != (height, width):
            scores = F.interpolate(scores, size=(height, width), mode="bilinear", align_corners=False)
        return scores

    def _predict_same_size(self, images: np.ndarray, channel_order: str,
                           return_probabilities: bool) -> list[Prediction]:
        scores = self.scores(images, channel_order=channel_order)
        confidence, labels = confidence_and_labels(scores)
        probabilities = scores_to_probabilities(scores) if return_probabilities else None
        labels = labels.to(torch.uint8)
        labels[confidence < self.confidence_threshold] = IGNORE_INDEX
        labels_np = labels.cpu().numpy()
        confidence_np = confidence.clamp(0.0, 1.0).cpu().numpy().astype(np.float32)
        probabilities_np = probabilities.cpu().numpy() if probabilities is not None else None
        return [Prediction(labels=labels_np[i], confidence=confidence_np[i],
                           probabilities=None if probabilities_np is None else probabilities_np[i])
                for i in range(len(images))]

    def _forward_scores(self, batch: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) normalised, H and W multiples of the size divisor -> (B, K, H, W) scores S (fp32)."""
        autocast = self.device.type == "cuda" and self.precision != "fp32"  # CPU bf16 runs the converted copy
        with torch.autocast(device_type=self.device.type, dtype=DTYPES[self.precision], enabled=autocast):
            scores = self._network(batch)
        return F.interpolate(scores, size=batch.shape[-2:], mode="bilinear", align_corners=False)

    def _whole(self, images: torch.Tensor) -> torch.Tensor:
        height, width = images.shape[-2:]
        divisor = self.model.size_divisor
        padded = F.pad(images, (0, -width % divisor, 0, -height % divisor))  # zeros = the mean colour
        return self._forward_scores(padded)[..., :height, :width]

    def _slide(self, images: torch.Tensor) -> torch.Tensor:
        """Average the scores of overlapping windows; windows of one image go through the model together."""
        height, width = images.shape[-2:]
        window = self.window
        padded = F.pad(images, (0, max(window - width, 0), 0, max(window - height, 0)))
        padded_h, padded_w = padded.shape[-2:]
        boxes = [(y, x) for y in window_starts(padded_h, window, self.stride)
                 for x in window_starts(padded_w, window, self.stride)]
        scores = torch.zeros(images.shape[0], self.model.num_classes, padded_h, padded_w, device=images.device)
        counts = torch.zeros(1, 1, padded_h, padded_w, device=images.device)
        for start in range(0, len(boxes), self.max_batch_size):
            chunk = boxes[start:start + self.max_batch_size]
            crops = torch.cat([padded[..., y:y + window, x:x + window] for y, x in chunk])  # (n * B, 3, win, win)
            chunk_scores = self._forward_scores(crops).split(images.shape[0])
            for (y, x), crop_scores in zip(chunk, chunk_scores):
                scores[..., y:y + window, x:x + window] += crop_scores
                counts[..., y:y + window, x:x + window] += 1
        return (scores / counts)[..., :height, :width]


def resize_like_official(images: np.ndarray, scale: float) -> np.ndarray:
    """Resize images as the official test pipeline does before `Normalize` (mmseg `Resize` -> `mmcv.imrescale`).

    Each uint8 image goes through OpenCV's bilinear filter (`cv2.INTER_LINEAR`: no anti-aliasing when shrinking,
    results rounded to uint8) to (int(H * scale + 0.5), int(W * scale + 0.5)), at least 1 (mmcv's rounding, also
    `tqdm_core.data.transforms.scaled_size`). Converted official checkpoints then see the inputs of the official
    Mapillary protocol (keep-ratio resize to fit 2048x1024).

    Args:
        images: (B, H, W, 3) uint8.
        scale: resize factor > 0.

    Returns:
        (B, h, w, 3) uint8, contiguous; the images themselves when the size does not change.
    """
    height, width = images.shape[1:3]
    size = scaled_size(height, width, scale)  # (w, h): OpenCV's order
    images = np.ascontiguousarray(images)  # OpenCV refuses negative strides (mirrored views)
    if size == (width, height):
        return images
    return np.stack([cv2.resize(image, size, interpolation=cv2.INTER_LINEAR) for image in images])


def check_image(image: np.ndarray, *, name: str = "image") -> None:
    """Raise ValueError unless `image` is an (H, W, 3) uint8 array of a sensible size."""
    if not isinstance(image, np.ndarray):
        raise ValueError(f"{name}: expected a numpy array (H, W, 3) uint8, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise ValueError(f"{name}: expected dtype uint8, got {image.dtype}; convert 16-bit or float images to "
                         f"8-bit RGB first")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"{name}: expected shape (H, W, 3), got {image.shape}; convert grey or RGBA images to RGB")
    if not (0 < image.shape[0] <= MAX_SIDE and 0 < image.shape[1] <= MAX_SIDE):
        raise ValueError(f"{name}: height and width must be in 1..{MAX_SIDE}, got {image.shape[:2]}")


def _precision_reason(precision: str, device: torch.device) -> str:
    """What decided the precision, for the log line."""
    if device.type == "cuda":
        return "CUDA autocast"
    cpu = cpu_info()
    conversion = ", weights converted to bf16 once" if precision == "bf16" else ""
    return (f"CPU '{cpu.model}', native bf16: {cpu.native_bf16} (flags: {' '.join(cpu.flags) or 'none of interest'})"
            f"{conversion}")


def _check_device(device: str) -> torch.device:
    try:
        parsed = torch.device(device)
    except RuntimeError as error:
        raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got '{device}'") from error
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device '{device}' requested but CUDA is not available here; use device='cpu'")
    if parsed.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got '{device}'")
    return parsed
