"""Plot a training run's log.jsonl: losses, learning rates and validation scores, as one PNG.

    python -m training.plot_log RUN_DIR [--output RUN_DIR/training_curves.png]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from training.trainer import LOG_FILE

# Loss curves drawn besides the total: the final prediction layer and the three regularizers.
TERMS = ("loss_cls", "loss_mask", "loss_dice", "loss_reg_language", "loss_reg_vision_language", "loss_reg_vision")


def read_log(path: str | os.PathLike) -> tuple[list[dict], list[dict]]:
    """(loss records, validation records) of a log.jsonl, each sorted by iteration."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no training log at '{path}'; pass the run folder that holds {LOG_FILE}")
    losses, validations = [], []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"'{path}' line {number} is not JSON ({error}); the file is damaged") from None
        if "validation" in record:
            validations.append(record)
        elif "losses" in record:  # other records (a resume's config changes) are not plotted
            losses.append(record)
    if not losses:
        raise ValueError(f"'{path}' holds no loss records yet; plot after the first log_interval iterations")
    return sorted(losses, key=lambda r: r["iteration"]), sorted(validations, key=lambda r: r["iteration"])


def plot_log(run_dir: str | os.PathLike, output: str | os.PathLike | None = None) -> Path:
    """Draw total loss, per-term losses, learning rates and validation mIoU / pixel accuracy into one PNG."""
    from matplotlib.figure import Figure

    run_dir = Path(run_dir)
    losses, validations = read_log(run_dir / LOG_FILE)
    output = Path(output) if output is not None else run_dir / "training_curves.png"
    iterations = [record["iteration"] for record in losses]
    figure = Figure(figsize=(12, 8), dpi=100, layout="constrained")
    (total_axes, terms_axes), (lr_axes, validation_axes) = figure.subplots(2, 2)

    total_axes.plot(iterations, [record["losses"]["total"] for record in losses], color="black")
    total_axes.set_title("total loss (all prediction layers + regularizers)")
    for term in TERMS:
        if term in losses[-1]["losses"]:
            terms_axes.plot(iterations, [record["losses"].get(term, float("nan")) for record in losses], label=term)
    terms_axes.set_title("weighted loss terms (final layer, regularizers)")
    terms_axes.legend(fontsize=8)

    for group in losses[-1]["lr"]:
        lr_axes.plot(iterations, [record["lr"].get(group, float("nan")) for record in losses], label=group)
    lr_axes.set_yscale("log")
    lr_axes.set_title("learning rate per parameter group")
    lr_axes.legend(fontsize=8)

    if validations:
        steps = [record["iteration"] for record in validations]
        for key, label in (("miou", "mIoU"), ("pixel_accuracy", "pixel accuracy")):
            values = [100.0 * (record["validation"][key] or 0.0) for record in validations]
            validation_axes.plot(steps, values, marker="o", label=label)
        validation_axes.set_title(f"validation on {validations[-1]['validation']['dataset']} (%)")
        validation_axes.legend(fontsize=8)
    else:
        validation_axes.text(0.5, 0.5, "no validation in this run", ha="center", va="center")
    for axes in (total_axes, terms_axes, lr_axes, validation_axes):
        axes.set_xlabel("iteration")
        axes.grid(alpha=0.3)
    output.parent.mkdir(parents=True, exist_ok=True)
    temporary = output.with_name(f".{output.name}.{os.getpid()}.tmp")
    figure.savefig(temporary, format="png")
    os.replace(temporary, output)
    return output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.plot_log", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path, help="training run folder (holds log.jsonl)")
    parser.add_argument("--output", type=Path, help="PNG path (default RUN_DIR/training_curves.png)")
    args = parser.parse_args(argv)
    print(plot_log(args.run_dir, args.output))
    return 0


if __name__ == "__main__":
    sys.exit(main())
