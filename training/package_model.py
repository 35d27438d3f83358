"""Package a trained model for shipping: fp16 weights plus the metadata its model card quotes.

    python -m training.package_model runs/camvid_default/model_final.pt tqdm_core/weights/tqdm_small_rn_camvid_fullres.pt \
        --metrics runs/eval/model_final-<date-time>/camvid_val/report.json --inference-scale 1.0 \
        --training-command "python -m training.train --config training/configs/camvid_default.yaml" \
        --license "CC BY-NC 4.0 (trained on CamVid)"

The output loads with `tqdm_core.load_checkpoint` / `tqdm_core.load_predictor`; its metadata's `inference_scale`
becomes the Predictor's default input scale for this model. Mistakes (a wrong path, a truncated checkpoint, a
--metrics file that is not an evaluation report) print one line and exit with code 2; --debug shows the traceback.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

from tqdm_core.checkpoint import load_checkpoint, save_checkpoint
from training.user_errors import user_errors_exit

PROGRAM = "python -m training.package_model"


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
        ValueError: `output` is `source`, or `metrics_path` is not an evaluation report.
    """
    if output.resolve() == source.resolve():
        raise ValueError(f"output {output} is the source checkpoint: packaging would replace its fp32 weights with "
                         "fp16 ones; write the packaged model to another path")
    validation = None if metrics_path is None else validation_scores(metrics_path)  # checked before the model loads
    checkpoint = load_checkpoint(source)
    metadata = dataclasses.replace(
        checkpoint.metadata, training_command=training_command, license=license_text, source_checkpoint=source.name,
        inference_scale=checkpoint.metadata.inference_scale if inference_scale is None else inference_scale)
    if validation is not None:
        metadata = dataclasses.replace(metadata, validation=validation)
    return save_checkpoint(checkpoint.model, output, metadata=metadata, half=True)


def validation_scores(report_path: Path) -> dict[str, Any]:
    """The scores a model card quotes, from a report.json of `training.evaluate` (or `tqdm-bag evaluate`).

    Returns:
        {"miou", "pixel_accuracy": fractions in [0, 1], "iou": {class name: IoU}, "expected_calibration_error"}.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not JSON or lacks an entry of an evaluation report.
    """
    expected = ("pass the report.json that `python -m training.evaluate` writes "
                "(<output-dir>/<dataset>/report.json, e.g. runs/eval/model_final-<date-time>/camvid_val/report.json)")
    try:
        report = json.loads(report_path.read_text())
    except ValueError as error:  # not UTF-8 text, or not JSON
        raise ValueError(f"--metrics file '{report_path}' is not JSON ({type(error).__name__}: "
                         f"{str(error)[:100]}); {expected}") from error
    try:
        metrics = report["metrics"]
        return {"miou": metrics["miou"], "pixel_accuracy": metrics["pixel_accuracy"],
                "iou": {name: entry["iou"] for name, entry in metrics["per_class"].items()},
                "expected_calibration_error": report["calibration"]["ece"]}
    except (KeyError, TypeError, AttributeError) as error:  # another JSON file: a missing key or another layout
        found = sorted(report)[:6] if isinstance(report, dict) else type(report).__name__
        raise ValueError(f"--metrics file '{report_path}' is not an evaluation report (it lacks the entries "
                         f"metrics.miou, metrics.pixel_accuracy, metrics.per_class.*.iou and calibration.ece; found "
                         f"{found}); {expected}") from error


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog=PROGRAM, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path, help="model_final.pt of a training run")
    parser.add_argument("output", type=Path, help="packaged checkpoint to write")
    parser.add_argument("--metrics", type=Path, help="report.json written by training.evaluate")
    parser.add_argument("--inference-scale", type=float, default=None,
                        help="input scale the model expects (default: the one the training run recorded, else 1)")
    parser.add_argument("--training-command", default="", help="command that trained the model")
    parser.add_argument("--license", default="", help="license of the weights (follows the training data)")
    parser.add_argument("--debug", action="store_true", help="show the traceback of errors")
    args = parser.parse_args(argv)
    with user_errors_exit(PROGRAM, debug=args.debug):
        try:
            path = package_model(args.source, args.output, metrics_path=args.metrics,
                                 inference_scale=args.inference_scale, training_command=args.training_command,
                                 license_text=args.license)
        except OSError as error:  # a path that cannot be read or written (permissions, a folder): the error names it
            raise ValueError(str(error)) from error
    print(f"packaged {args.source} -> {path} ({path.stat().st_size / 1e6:.1f} MB, fp16)")


if __name__ == "__main__":
    main()
