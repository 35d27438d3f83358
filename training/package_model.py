"""Package a trained model for shipping: fp16 weights plus the metadata its model card quotes.

    python -m training.package_model runs/camvid_default/model_final.pt tqdm_core/weights/tqdm_small_rn_camvid_fullres.pt \
        --metrics runs/eval/model_final-<date-time>/camvid_val/report.json --inference-scale 1.0 \
        --training-command "python -m training.train --config training/configs/camvid_default.yaml" \
        --license "CC BY-NC 4.0 (trained on CamVid)"

The output loads with `tqdm_core.load_checkpoint` / `tqdm_core.load_predictor`; its metadata's `inference_scale`
becomes the Predictor's default input scale for this model.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from tqdm_core.checkpoint import CheckpointError, load_checkpoint, save_checkpoint


def package_model(source: Path, output: Path, *, metrics_path: Path | None, inference_scale: float | None,
                  training_command: str, license_text: str) -> Path:
    """Write `source`'s model to `output` in fp16 with shipping metadata; returns the output path.

    Args:
        source: a model checkpoint (e.g. a run's model_final.pt).
        output: the packaged checkpoint to write.
        metrics_path: a report.json written by `training.evaluate` (or `tqdm-bag evaluate`), whose scores are
            recorded as the model's validation; None keeps the source's.
        inference_scale: the input scale the model expects; None keeps the one the source records.
        training_command, license_text: recorded as they are.

    Raises:
        ValueError: `output` is `source`.
    """
    if output.resolve() == source.resolve():
        raise ValueError(f"output {output} is the source checkpoint: packaging would replace its fp32 weights with "
                         "fp16 ones; write the packaged model to another path")
    checkpoint = load_checkpoint(source)
    metadata = dataclasses.replace(
        checkpoint.metadata, training_command=training_command, license=license_text, source_checkpoint=source.name,
        inference_scale=checkpoint.metadata.inference_scale if inference_scale is None else inference_scale)
    if metrics_path is not None:
        report = json.loads(metrics_path.read_text())
        metrics = report["metrics"]
        metadata = dataclasses.replace(metadata, validation={
            "miou": metrics["miou"], "pixel_accuracy": metrics["pixel_accuracy"],
            "iou": {name: entry["iou"] for name, entry in metrics["per_class"].items()},
            "expected_calibration_error": report["calibration"]["ece"],
        })
    return save_checkpoint(checkpoint.model, output, metadata=metadata, half=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path, help="model_final.pt of a training run")
    parser.add_argument("output", type=Path, help="packaged checkpoint to write")
    parser.add_argument("--metrics", type=Path, help="report.json written by training.evaluate")
    parser.add_argument("--inference-scale", type=float, default=None,
                        help="input scale the model expects (default: the one the training run recorded, else 1)")
    parser.add_argument("--training-command", default="", help="command that trained the model")
    parser.add_argument("--license", default="", help="license of the weights (follows the training data)")
    args = parser.parse_args(argv)
    try:
        path = package_model(args.source, args.output, metrics_path=args.metrics,
                             inference_scale=args.inference_scale, training_command=args.training_command,
                             license_text=args.license)
    except (CheckpointError, OSError, ValueError) as error:  # bad checkpoint or paths: the message says what to do, no traceback
        parser.exit(1, f"error: {error}\n")
    print(f"packaged {args.source} -> {path} ({path.stat().st_size / 1e6:.1f} MB, fp16)")


if __name__ == "__main__":
    main()
