"""Score one checkpoint on one or several datasets through the Predictor (the numbers the ROS node would produce).

    python -m training.evaluate --checkpoint runs/x/model_final.pt \\
        --dataset cityscapes:data/cityscapes --dataset bdd100k:data/bdd100k --dataset camvid:../shared/data/camvid:val
    python -m training.evaluate --dataset camvid:../shared/data/camvid:val:sequences=[0016E5]   # the shipped model

``--dataset NAME:ROOT[:SPLIT][:KEY=VALUE]...`` names a ``tqdm_core.data`` dataset (gta5, cityscapes, bdd100k,
mapillary, camvid, image_folder); each ``KEY=VALUE`` is one more keyword argument of the dataset, the value read as
YAML (``classes=camvid11``, ``sequences=[0016E5,0006R0]``). A model whose classes differ from the dataset's (a
Cityscapes-19 model on CamVid-11 ground truth) is scored through the class mapping by name
(``SemSegEvaluator.for_class_table``). Each dataset gets a report folder under ``--output-dir`` (default
``runs/eval/<checkpoint name>-<date-time>``), the same report ``tqdm-bag evaluate`` writes (``tqdm_core.evaluation``):
report.json (mIoU, per-class IoU and accuracy, pixel accuracy, confusion matrix, calibration, latency),
summary.md, per_class_iou.png, confusion_matrix.png, reliability.png, latency.png and overlays.png; summary.json
lists all. The checkpoint may be a model file (``tqdm_core.save_checkpoint``, e.g. model_final.pt), 'default' (the
model shipped in the package) or a resumable training checkpoint (checkpoints/iter_*.pt). Mistakes (a wrong path,
a truncated checkpoint, an invalid option) print one line and exit with code 2; --debug shows the traceback.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

from tqdm_core import InferenceOptions, InvalidOption, Predictor
from tqdm_core.checkpoint import Checkpoint, CheckpointMetadata, build_checkpoint, read_checkpoint_file
from tqdm_core.data import DATASETS, SegmentationDataset, UnreadableSampleError, build_dataset
from tqdm_core.data.transforms import scaled_size
from tqdm_core.default_model import resolve_checkpoint
from tqdm_core.evaluation import (EvaluationReport, FrameScorer, LabeledImage, ModelInfo, predicted_frames,
                                  score_frames, write_report)
from tqdm_core.evaluation.scoring import PREDICTOR_LATENCY
from tqdm_core.inference import predictor_for
from tqdm_core.inference.options import CHOICES
from training.train_config import DatasetConfig, dataset_options
from training.trainer import CHECKPOINT_FORMAT, model_from_training_checkpoint
from training.user_errors import user_errors_exit

PROGRAM = "python -m training.evaluate"

# Official test scales (METHOD.md section 8): keep-ratio resize to fit (long side, short side). Cityscapes and
# BDD100K images already have that size; Mapillary images are shrunk to it. Others are scored at their own size.
TEST_SCALES: dict[str, tuple[int, int]] = {"cityscapes": (2048, 1024), "bdd100k": (1280, 720),
                                           "mapillary": (2048, 1024)}


@dataclass(frozen=True)
class DatasetSpec:
    """A ``--dataset NAME:ROOT[:SPLIT][:KEY=VALUE]...`` argument.

    Attributes:
        name: a key of ``tqdm_core.data.DATASETS``.
        root: the dataset folder.
        split: the split, or None for the dataset's default.
        options: further keyword arguments of the dataset (values parsed as YAML).
    """

    name: str
    root: str
    split: str | None = None
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """Folder name of the dataset's report: ``camvid_val``, ``camvid_val_sequences-0016E5+0006R0``."""
        parts = [self.name] + ([self.split] if self.split else [])
        for key, value in self.options.items():
            listed = value if isinstance(value, (list, tuple)) else [value]
            parts.append(f"{key}-{'+'.join(str(item) for item in listed)}")
        return re.sub(r"[^A-Za-z0-9_.+-]+", "-", "_".join(parts))

    @classmethod
    def parse(cls, text: str) -> "DatasetSpec":
        """Parse the command-line form.

        Raises:
            argparse.ArgumentTypeError: a malformed spec or an unknown dataset name.
        """
        name, root, *rest = text.split(":") if ":" in text else (text, "")
        split = rest.pop(0) if rest and "=" not in rest[0] else None
        if not name or not root or split == "" or not all("=" in part and part.split("=")[0] for part in rest):
            raise argparse.ArgumentTypeError(f"--dataset must look like NAME:ROOT[:SPLIT][:KEY=VALUE]... (e.g. "
                                             f"camvid:data/camvid:val or camvid:data/camvid:val:sequences=[0016E5]), "
                                             f"got '{text}'")
        if name not in DATASETS:
            raise argparse.ArgumentTypeError(f"unknown dataset '{name}' in '{text}'; known: {sorted(DATASETS)}")
        options = {key: yaml.safe_load(value) for key, value in (part.split("=", 1) for part in rest)}
        return cls(name, root, split, options)

    def build(self) -> SegmentationDataset:
        """The dataset.

        Raises:
            FileNotFoundError: the root does not hold the dataset's layout.
            ValueError: an unknown split or option.
        """
        options = dataset_options(DatasetConfig(self.name, self.root, self.split, self.options), "--dataset")
        return build_dataset(self.name, self.root, self.split, **options)


def load_model(path: str | os.PathLike) -> Checkpoint:
    """A model file (tqdm_core.save_checkpoint), 'default', or the model inside a resumable training checkpoint.

    The file is read once, by the reader the node and the Predictor use (a truncated file is one clear
    CheckpointError); a training checkpoint records no metadata, so its model runs at the options' scale.
    """
    path = resolve_checkpoint(path)
    payload = read_checkpoint_file(path)
    if isinstance(payload, dict) and payload.get("format") == CHECKPOINT_FORMAT:
        return Checkpoint(model=model_from_training_checkpoint(payload), metadata=CheckpointMetadata(), path=path)
    return build_checkpoint(payload, path=path)


class ScaledPredictor:
    """Predictions with a per-image keep-ratio test scale: one Predictor per scale factor, all sharing one network.

    Args:
        checkpoint: the model and its metadata.
        test_scale: (long side, short side) each image is resized to fit, keeping its ratio; None: its own size.
        options: how to run the model; the test-scale factor multiplies its scale (None: the checkpoint's).
    """

    def __init__(self, checkpoint: Checkpoint, test_scale: tuple[int, int] | None, options: InferenceOptions) -> None:
        self.checkpoint = checkpoint
        self.model = checkpoint.model
        self.test_scale = test_scale
        # A model trained at a reduced resolution records the input scale it expects (checkpoint metadata).
        self.model_scale = options.predictor_arguments(recommended_scale=checkpoint.metadata.inference_scale)["scale"]
        base = predictor_for(checkpoint, dataclasses.replace(options, scale=self.model_scale))
        self._predictors: dict[float, Predictor] = {1.0: base}

    def predictor(self, height: int, width: int) -> Predictor:
        ratio = 1.0
        if self.test_scale is not None:
            long_side, short_side = self.test_scale
            ratio = min(long_side / max(height, width), short_side / min(height, width))
            # Only the scaled size matters; images the test scale leaves unchanged are run at ratio 1.
            if scaled_size(height, width, ratio) == (width, height):
                ratio = 1.0
        if ratio not in self._predictors:
            self._predictors[ratio] = self._predictors[1.0].with_scale(ratio * self.model_scale)
        return self._predictors[ratio]


def evaluate_dataset(scaled: ScaledPredictor, dataset: SegmentationDataset, *, label: str,
                     max_images: int | None = None, num_overlays: int = 4, progress: bool = True) -> EvaluationReport:
    """Run the model on every image (or the first `max_images`) and score it.

    Args:
        scaled: the model and how to run it on each image size.
        dataset: images with ground truth.
        label: the dataset's name in the report (``camvid_val``).
        max_images: score only the first N images.
        num_overlays: example frames in the overlay picture.
        progress: show a progress bar.

    Raises:
        ValueError: a frame's image or label cannot be read (the message names the file).
    """
    count = len(dataset) if max_images is None else min(max_images, len(dataset))
    model = scaled.model
    scorer = FrameScorer(ground_truth_classes=dataset.class_table, model_classes=model.class_table,
                         num_frames=count, num_overlays=num_overlays)

    def samples():
        for index in range(count):
            try:
                sample = dataset.load_sample(index)
            except UnreadableSampleError as error:  # it names the file; other errors keep their traceback
                raise ValueError(f"cannot score frame {index} of {label}: {error}; replace that file with a "
                                 f"readable, matching copy (or remove the frame from the dataset), then evaluate "
                                 f"again") from error
            yield LabeledImage(name=sample["name"], image=sample["image"], ground_truth=sample["label"])

    def predict(image):
        return scaled.predictor(*image.shape[:2]).predict(image)

    wall_s = score_frames(predicted_frames(predict, samples()), scorer, description=label, progress=progress)
    details = scaled.predictor(*dataset.load_label(0).shape).describe()
    info = ModelInfo(name=model.preset, source=str(scaled.checkpoint.path), trained=True, details=details)
    return scorer.report(mode="offline", source=label, model=info, latency_kind=PREDICTOR_LATENCY,
                         run={"wall_s": wall_s, "test_scale": scaled.test_scale})


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROGRAM, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default="default",
                        help="model_final.pt, checkpoints/iter_*.pt (its weight average if the run keeps one), "
                             "or 'default' (the shipped model; the default)")
    parser.add_argument("--dataset", required=True, action="append", type=DatasetSpec.parse,
                        help="NAME:ROOT[:SPLIT][:KEY=VALUE]..., repeatable")
    parser.add_argument("--mode", choices=CHOICES["mode"], default="slide",
                        help="whole image or sliding window (official: slide, 512 window, stride 341)")
    parser.add_argument("--window", type=int, default=512)
    parser.add_argument("--stride", type=int, default=341)
    parser.add_argument("--scale", type=float,
                        help="input resize factor (default: the checkpoint's recommended one, else 1); multiplies "
                             "the dataset's test scale")
    parser.add_argument("--precision", choices=CHOICES["precision"], default="fp32")
    parser.add_argument("--runtime", choices=CHOICES["runtime"], default="torch")
    parser.add_argument("--flip", action="store_true",
                        help="also run each image mirrored left-right and average the scores (test-time augmentation)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--native-size", action="store_true",
                        help="score every image at its own size (no official test-scale resize)")
    parser.add_argument("--max-images", type=int, help="score only the first N images of each dataset")
    parser.add_argument("--num-overlays", type=int, default=4, help="example frames in overlays.png (0: none)")
    parser.add_argument("--output-dir", type=Path, help="default: runs/eval/<checkpoint name>-<date-time>")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--debug", action="store_true", help="show the traceback of errors")
    return parser.parse_args(argv)


# This command's spelling of the InferenceOptions fields it sets.
OPTION_FLAGS = {"device": "--device", "precision": "--precision", "mode": "--mode", "window": "--window",
                "stride": "--stride", "scale": "--scale", "runtime": "--runtime", "flip": "--flip"}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with user_errors_exit(PROGRAM, debug=args.debug):
        try:
            return evaluate(args)
        except InvalidOption as error:
            raise ValueError(error.describe(OPTION_FLAGS)) from error


def evaluate(args: argparse.Namespace) -> int:
    """Score the checkpoint on every dataset; write a report per dataset and summary.json."""
    options = InferenceOptions(device=args.device, precision=args.precision, mode=args.mode, window=args.window,
                               stride=args.stride, scale=args.scale, runtime=args.runtime, flip=args.flip)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    output_dir = args.output_dir or Path("runs") / "eval" / f"{Path(str(args.checkpoint)).stem}-{stamp}"
    datasets = [(spec, spec.build()) for spec in args.dataset]  # wrong dataset paths fail before the model loads
    labels = [spec.label for spec, _ in datasets]
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise ValueError(f"--dataset names {', '.join(repeated)} more than once; give each dataset once")
    taken = [output_dir / label for label in labels if (output_dir / label).exists()]
    if taken:  # checked before hours of scoring, not when the report is written
        raise FileExistsError(f"{', '.join(map(str, taken))} already exists; choose another --output-dir or remove "
                              f"it")
    checkpoint = load_model(args.checkpoint)
    model = checkpoint.model
    summary: dict[str, Any] = {"checkpoint": str(checkpoint.path), "mode": args.mode, "datasets": {}}
    for spec, dataset in datasets:
        test_scale = None if args.native_size else TEST_SCALES.get(spec.name)
        scaled = ScaledPredictor(checkpoint, test_scale, options)
        report = evaluate_dataset(scaled, dataset, label=spec.label, max_images=args.max_images,
                                  num_overlays=args.num_overlays, progress=not args.no_progress)
        folder = write_report(report, output_dir / spec.label)
        scores = report.evaluator.to_json()
        summary["datasets"][spec.label] = {
            "miou": scores["miou"], "pixel_accuracy": scores["pixel_accuracy"],
            "mean_accuracy": scores["mean_accuracy"], "images": report.frames_scored,
            "seconds_per_image": report.latency_summary()["mean"] / 1e3, "report": str(folder.relative_to(output_dir))}
    (output_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"\n{model.preset} ({model.class_table.name}) from {checkpoint.path}, {args.mode} inference")
    width = max(24, *(len(label) + 2 for label in summary["datasets"]))
    print(f"{'dataset':<{width}}{'images':>8}{'mIoU %':>9}{'pixel acc %':>13}{'s/img':>8}")
    for label, row in summary["datasets"].items():
        print(f"{label:<{width}}{row['images']:>8}{100 * (row['miou'] or 0):>9.2f}"
              f"{100 * (row['pixel_accuracy'] or 0):>13.2f}{row['seconds_per_image']:>8.2f}")
    print(f"results in {output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
