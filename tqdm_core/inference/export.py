"""ONNX export of the inference graph and an ONNX Runtime CPU runner (issue 8: export where it helps).

The exported graph is `InferenceGraph`: normalised, padded images in, Mask2Former semantic scores at stride 4
out. The class text embeddings are constant at inference (cached by the text encoder), so they are folded into
the graph as constants: an exported file belongs to one class list. Shapes are static; `OnnxRuntimeRunner`
exports once per input shape and keeps one session per shape.

Deformable attention exports through `grid_sample` (ONNX GridSample, opset >= 16) and attention through
`scaled_dot_product_attention` (decomposed by the exporter); the opset used is 18. Needs the optional
packages onnx, onnxscript (the dynamo-based exporter) and onnxruntime.
"""
from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from tqdm_core.modeling import fused_ops
from tqdm_core.modeling.semantic_inference import semantic_scores

logger = logging.getLogger(__name__)

OPSET = 18
EXPORT_PACKAGES = ("onnx", "onnxscript", "onnxruntime")


class InferenceGraph(nn.Module):
    """The part of the Predictor that is a pure tensor function: segmenter plus semantic inference.

    Shared by eager inference, `torch.compile` and the ONNX export, so all three run the same graph.

    Args (keyword-only):
        model: a TqdmSegmentor in eval mode, fp32 or bf16 (`bf16_network`); images are cast to its dtype.
        fast_kernels: run the fused CPU kernels of `tqdm_core.modeling.fused_ops` (the Predictor's eager
            network); off, the plain ops run (FLOP counting; compile and export never fuse this way).
    """

    def __init__(self, *, model: nn.Module, fast_kernels: bool = False) -> None:
        super().__init__()
        self.model = model
        self.fast_kernels = fast_kernels
        self.input_dtype = next(model.backbone.parameters()).dtype
        self.eval()
        with torch.no_grad():
            # Fill the text-embedding cache now, so that compiled and exported graphs see a constant instead of
            # an attribute assigned during tracing (a recompile on the second call, a warning in export).
            model.text_encoder()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """
        Args:
            images: (B, 3, H, W) CLIP-normalised, H and W multiples of the model's size divisor.

        Returns:
            (B, K, H/4, W/4) semantic scores S, each in [0, K] (fp32).
        """
        with fused_ops.fast_kernels() if self.fast_kernels else contextlib.nullcontext():
            outputs = self.model(images.to(self.input_dtype), auxiliary=False)
        # Scores in fp32 whatever the caller's autocast: they are averaged over windows and thresholded.
        with torch.autocast(device_type=images.device.type, enabled=False):
            return semantic_scores(outputs["pred_logits"], outputs["pred_masks"])


def require_export_packages() -> None:
    """Raise ImportError naming the missing optional packages of the ONNX path and how to install them."""
    import importlib.util

    missing = [name for name in EXPORT_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        raise ImportError(f"ONNX export and ONNX Runtime inference need the packages {list(EXPORT_PACKAGES)}; "
                          f"missing {missing}: pip install {' '.join(missing)}")


def export_onnx(model: nn.Module, path: str | os.PathLike, *, batch_size: int, height: int, width: int) -> Path:
    """Export `InferenceGraph(model)` for one static input shape.

    Args:
        model: a TqdmSegmentor (put in eval mode here).
        path: output .onnx file (weights embedded).
        batch_size, height, width: the input shape; height and width multiples of `model.size_divisor`.

    Returns:
        The path written.
    """
    require_export_packages()
    divisor = model.size_divisor
    if height % divisor or width % divisor or min(batch_size, height, width) < 1:
        raise ValueError(f"export needs a positive batch and height/width multiples of {divisor}, "
                         f"got batch_size={batch_size}, height={height}, width={width}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    graph = InferenceGraph(model=model)
    example = torch.zeros(batch_size, 3, height, width)
    with torch.no_grad():
        torch.onnx.export(graph, (example,), str(path), dynamo=True, opset_version=OPSET, input_names=["images"],
                          output_names=["scores"], external_data=False, verbose=False)
    return path


class OnnxRuntimeRunner:
    """Runs `InferenceGraph(model)` with ONNX Runtime on CPU; a drop-in for the graph in the Predictor.

    Each new input shape is exported once (into `cache_dir`, a temporary directory by default) and gets its own
    session; later calls of that shape only run the session.

    Args:
        model: a TqdmSegmentor; its weights and class list are frozen into the exported files.
        threads: ONNX Runtime intra-op threads (None: torch's current thread count).
        cache_dir: where the .onnx files go.
    """

    def __init__(self, model: nn.Module, *, threads: int | None = None, cache_dir: str | os.PathLike | None = None):
        require_export_packages()
        self.model = model.eval()
        self.threads = threads or torch.get_num_threads()
        self._temporary = tempfile.TemporaryDirectory(prefix="tqdm_onnx_") if cache_dir is None else None
        self.cache_dir = Path(cache_dir) if cache_dir is not None else Path(self._temporary.name)
        self._sessions: dict[tuple[int, ...], object] = {}

    def session(self, shape: tuple[int, int, int, int]):
        """The ONNX Runtime session for a (B, 3, H, W) input, exported on first use."""
        if shape not in self._sessions:
            import onnxruntime

            batch_size, _, height, width = shape
            path = self.cache_dir / f"{self.model.preset}_{batch_size}x{height}x{width}.onnx"
            logger.info("exporting %s for input %s to %s (once per shape)", self.model.preset, shape, path)
            export_onnx(self.model, path, batch_size=batch_size, height=height, width=width)
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = self.threads
            options.inter_op_num_threads = 1
            options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
            self._sessions[shape] = onnxruntime.InferenceSession(str(path), options,
                                                                 providers=["CPUExecutionProvider"])
        return self._sessions[shape]

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) normalised fp32 CPU images -> (B, K, H/4, W/4) fp32 scores, as `InferenceGraph`."""
        if images.device.type != "cpu" or images.dtype != torch.float32:
            raise ValueError(f"ONNX Runtime runs on CPU in fp32; got a {images.dtype} tensor on {images.device}")
        array = np.ascontiguousarray(images.numpy())
        scores = self.session(tuple(images.shape)).run(["scores"], {"images": array})[0]
        return torch.from_numpy(scores)
