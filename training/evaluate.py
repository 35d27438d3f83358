"""Score one checkpoint on one or several datasets through the Predictor (the numbers the ROS node would produce).

    python -m training.evaluate --checkpoint runs/x/model_final.pt \\
        --dataset cityscapes:data/cityscapes --dataset bdd100k:data/bdd100k --dataset camvid:../shared/data/camvid:val

``--dataset NAME:ROOT[:SPLIT]`` names a ``tqdm_core.data`` dataset (gta5, cityscapes, bdd100k, mapillary, camvid,
image_folder). A model whose classes differ from the dataset's (a Cityscapes-19 model on CamVid-11 ground truth) is
scored through the class mapping by name (``SemSegEvaluator.for_class_table``). Each dataset gets a folder under
``--output-dir`` with metrics.json (mIoU, per-class IoU and accuracy, pixel accuracy, confusion matrix,
calibration), per_class_iou.png, confusion_matrix.png, reliability.png and overlays.png; summary.json lists all.
The checkpoint may be a model file (``tqdm_core.save_checkpoint``, e.g. model_final.pt) or a resumable training
checkpoint (checkpoints/iter_*.pt).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from tqdm import tqdm

from tqdm_core import InferenceOptions, Predictor
from tqdm_core.checkpoint import Checkpoint, CheckpointMetadata, build_checkpoint, read_checkpoint_file
from tqdm_core.data import DATASETS, SegmentationDataset, build_dataset
from tqdm_core.data.transforms import scaled_size
from tqdm_core.evaluation import CalibrationAccumulator, SemSegEvaluator
from tqdm_core.evaluation.figures import (OverlayFrame, plot_confusion_matrix, plot_overlay_grid,
                                          plot_per_class_iou, plot_reliability_diagram)
from tqdm_core.inference import predictor_for
from training.trainer import CHECKPOINT_FORMAT, model_from_training_checkpoint

# Official test scales (METHOD.md section 8): keep-ratio resize to fit (long side, short side). Cityscapes and
# BDD100K images already have that size; Mapillary images are shrunk to it. Others are scored at their own size.
TEST_SCALES: dict[str, tuple[int, int]] = {"cityscapes": (2048, 1024), "bdd100k": (1280, 720),
                                           "mapillary": (2048, 1024)}


@dataclass(frozen=True)
class DatasetSpec:
    """A ``--dataset NAME:ROOT[:SPLIT]`` argument."""

    name: str
    root: str
    split: str | None

    @property
    def label(self) -> str:
        return f"{self.name}_{self.split}" if self.split else self.name

    @classmethod
    def parse(cls, text: str) -> "DatasetSpec":
        parts = text.split(":")
        if len(parts) not in (2, 3) or not all(parts):
            raise argparse.ArgumentTypeError(f"--dataset must look like NAME:ROOT or NAME:ROOT:SPLIT "
                                             f"(e.g. camvid:data/camvid:val), got '{text}'")
        if parts[0] not in DATASETS:
            raise argparse.ArgumentTypeError(f"unknown dataset '{parts[0]}' in '{text}'; known: {sorted(DATASETS)}")
        return cls(parts[0], parts[1], parts[2] if len(parts) == 3 else None)


def load_model(path: str | os.PathLike) -> Checkpoint:
    """A model file (tqdm_core.save_checkpoint) or the model inside a resumable training checkpoint.

    The file is read once, by the reader the node and the Predictor use (a truncated file is one clear
    CheckpointError); a training checkpoint records no metadata, so its model runs at the options' scale.
    """
    payload = read_checkpoint_file(path)
    if isinstance(payload, dict) and payload.get("format") == CHECKPOINT_FORMAT:
        return Checkpoint(model=model_from_training_checkpoint(payload), metadata=CheckpointMetadata(), path=Path(path))
    return build_checkpoint(payload, path=path)


class ScaledPredictor:
    """Predictions with a per-image keep-ratio test scale: one Predictor (sharing the model) per scale factor.

    Args:
        checkpoint: the model and its metadata.
        test_scale: (long side, short side) each image is resized to fit, keeping its ratio; None: its own size.
        options: how to run the model; the test-scale factor multiplies its scale (None: the checkpoint's).
    """

    def __init__(self, checkpoint: Checkpoint, test_scale: tuple[int, int] | None, options: InferenceOptions) -> None:
        self.checkpoint = checkpoint
        self.model = checkpoint.model
        self.test_scale = test_scale
        self.options = options
        self._predictors: dict[float, Predictor] = {}
        # A model trained at a reduced resolution records the input scale it expects (checkpoint metadata).
        self.model_scale = options.predictor_arguments(recommended_scale=checkpoint.metadata.inference_scale)["scale"]

    def predictor(self, height: int, width: int) -> Predictor:
        ratio = 1.0
        if self.test_scale is not None:
            long_side, short_side = self.test_scale
            ratio = min(long_side / max(height, width), short_side / min(height, width))
            # Only the scaled size matters; images the test scale leaves unchanged are run at ratio 1.
            if scaled_size(height, width, ratio) == (width, height):
                ratio = 1.0
        if ratio not in self._predictors:
            options = dataclasses.replace(self.options, scale=ratio * self.model_scale)
            self._predictors[ratio] = predictor_for(self.checkpoint, options)
        return self._predictors[ratio]


def evaluate_dataset(scaled: ScaledPredictor, dataset: SegmentationDataset, output_dir: Path, *, title: str,
                     max_images: int | None = None, num_overlays: int = 4, progress: bool = True) -> dict[str, Any]:
    """Run the model on every image, accumulate the scores and write metrics.json and the pictures.

    Returns:
        The metrics dict written to metrics.json.
    """
    model_table = scaled.model.class_table
    evaluator = SemSegEvaluator.for_class_table(dataset.class_table, model_table=model_table)
    calibration = CalibrationAccumulator()
    count = len(dataset) if max_images is None else min(max_images, len(dataset))
    indices = np.linspace(0, len(dataset) - 1, num_overlays).round().astype(int) if num_overlays else []
    overlay_indices = set(int(i) for i in indices if i < count)
    frames: list[OverlayFrame] = []
    start = time.perf_counter()
    for index in tqdm(range(count), desc=title, unit="img", disable=not progress):
        sample = dataset.load_sample(index)
        image, label = sample["image"], sample["label"]
        prediction = scaled.predictor(*label.shape).predict(image)
        evaluator.process(prediction.labels, label)
        calibration.process(prediction.confidence, prediction.labels, label, class_mapping=evaluator.class_mapping)
        if index in overlay_indices:
            frames.append(OverlayFrame(image=_thumbnail(image), prediction=_thumbnail(prediction.labels),
                                       confidence=_thumbnail(prediction.confidence), ground_truth=_thumbnail(label),
                                       title=sample["name"]))
    seconds = time.perf_counter() - start
    results = evaluator.evaluate()
    metrics = evaluator.to_json()
    calibration_result = calibration.result()
    metrics.update({"dataset": title, "images": count, "seconds_per_image": seconds / max(count, 1),
                    "calibration": calibration_result.to_json(), "model_classes": model_table.name,
                    "predictor": scaled.predictor(*dataset.load_label(0).shape).describe()})
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    names = results["class_names"]
    plot_per_class_iou(results["iou"], names, output_dir / "per_class_iou.png", colors=dataset.class_table.colors,
                       title=f"Per-class IoU on {title}")
    plot_confusion_matrix(results["confusion_matrix"], names, output_dir / "confusion_matrix.png",
                          unlabeled_predictions=results["unlabeled_predictions"])
    plot_reliability_diagram(calibration_result, output_dir / "reliability.png", title=f"Reliability on {title}")
    if frames:
        plot_overlay_grid(frames, output_dir / "overlays.png", prediction_table=model_table,
                          ground_truth_table=dataset.class_table)
    return metrics


def _thumbnail(array: np.ndarray, width: int = 640) -> np.ndarray:
    """Shrink large frames for the overlay picture (nearest for labels, area for the photo and confidence)."""
    height, current = array.shape[:2]
    if current <= width:
        return array
    size = (width, max(1, round(height * width / current)))
    interpolation = cv2.INTER_NEAREST if array.dtype == np.uint8 and array.ndim == 2 else cv2.INTER_AREA
    return cv2.resize(array, size, interpolation=interpolation)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, type=Path, help="model_final.pt or checkpoints/iter_*.pt")
    parser.add_argument("--dataset", required=True, action="append", type=DatasetSpec.parse,
                        help="NAME:ROOT[:SPLIT], repeatable")
    parser.add_argument("--mode", choices=("whole", "slide"), default="slide",
                        help="whole image or sliding window (official: slide, 512 window, stride 341)")
    parser.add_argument("--window", type=int, default=512)
    parser.add_argument("--stride", type=int, default=341)
    parser.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--native-size", action="store_true",
                        help="score every image at its own size (no official test-scale resize)")
    parser.add_argument("--max-images", type=int, help="score only the first N images of each dataset")
    parser.add_argument("--num-overlays", type=int, default=4, help="example frames in overlays.png (0: none)")
    parser.add_argument("--output-dir", type=Path, help="default: <checkpoint folder>/eval_<checkpoint name>")
    parser.add_argument("--no-progress", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    output_dir = args.output_dir or args.checkpoint.parent / f"eval_{args.checkpoint.stem}"
    checkpoint = load_model(args.checkpoint)
    model = checkpoint.model
    options = InferenceOptions(device=args.device, precision=args.precision, mode=args.mode, window=args.window,
                               stride=args.stride)
    datasets = [(spec, build_dataset(spec.name, spec.root, spec.split)) for spec in args.dataset]
    summary: dict[str, Any] = {"checkpoint": str(args.checkpoint), "mode": args.mode, "datasets": {}}
    for spec, dataset in datasets:
        test_scale = None if args.native_size else TEST_SCALES.get(spec.name)
        scaled = ScaledPredictor(checkpoint, test_scale, options)
        metrics = evaluate_dataset(scaled, dataset, output_dir / spec.label, title=spec.label,
                                   max_images=args.max_images, num_overlays=args.num_overlays,
                                   progress=not args.no_progress)
        summary["datasets"][spec.label] = {key: metrics[key] for key in ("miou", "pixel_accuracy", "mean_accuracy",
                                                                          "images", "seconds_per_image")}
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"\n{model.preset} ({model.class_table.name}) from {args.checkpoint}, {args.mode} inference")
    print(f"{'dataset':<24}{'images':>8}{'mIoU %':>9}{'pixel acc %':>13}{'s/img':>8}")
    for label, row in summary["datasets"].items():
        print(f"{label:<24}{row['images']:>8}{100 * (row['miou'] or 0):>9.2f}"
              f"{100 * (row['pixel_accuracy'] or 0):>13.2f}{row['seconds_per_image']:>8.2f}")
    print(f"results in {output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
