"""Train a tqdm model (METHOD.md section 7).

Single process:
    python -m training.train --config training/configs/camvid_tiny_rn.yaml
Data parallel (gloo on CPU, NCCL on GPU), one process per GPU, any number of nodes; batch_size is per process and
the learning rate is not scaled, so keep the paper's total batch of 8 by dividing it by the number of processes:
    torchrun --nproc_per_node 2 -m training.train --config training/configs/tqdm_clip_vit-b16_gta2city.yaml batch_size=4
Overrides after the options, as key.path=value (values parsed as YAML):
    python -m training.train --config X.yaml schedule.iterations=100 train_dataset.root=/data/gta5 precision=bf16
Continue a killed run exactly where its last checkpoint left it (the run folder alone is enough; its config.yaml is
used when --config is not given):
    python -m training.train --config X.yaml --resume auto
    python -m training.train --resume runs/X
--resume auto refuses a run folder that does not exist or holds no run (a mistyped output_dir never silently starts
over); an unreadable newest checkpoint is set aside and the run resumes from the newest readable one, with a warning.
A run folder is locked by its run (train.lock); under torchrun, the ranks end when torchrun does.
Mistakes (a wrong path, an invalid config value, a folder in use) print one line and exit with code 2; --debug shows
the traceback.

The run folder (default runs/<config name>) gets config.yaml, log.jsonl (plot it with
``python -m training.plot_log RUN_DIR``), checkpoints/iter_*.pt and, at the end, model_final.pt for the Predictor,
the ROS node and ``python -m training.evaluate``.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from training.run_folder import CONFIG_FILE, holds_run
from training.train_config import TrainConfig, load_config
from training.trainer import Trainer
from training.user_errors import user_errors_exit


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m training.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, help="YAML file of overrides (training/configs/*.yaml)")
    parser.add_argument("--resume", help="'auto' (continue the run of the run folder from its newest readable "
                        "checkpoint), a run folder (continue that run, in that folder), a checkpoint file, or "
                        "'none' (a new run: the default)")
    parser.add_argument("--stop-at", type=int, help="stop after this iteration and leave a resumable checkpoint")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (log files only)")
    parser.add_argument("--debug", action="store_true", help="show the traceback of errors")
    parser.add_argument("overrides", nargs="*", metavar="key.path=value", help="config overrides")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with user_errors_exit("python -m training.train", debug=args.debug):
        config = _run_config(args)
        trainer = Trainer(config, resume=args.resume, stop_at=args.stop_at, progress=not args.no_progress)
        try:
            if trainer.context.is_main:
                print(f"training {config.preset} on {config.train_dataset.name}:{config.train_dataset.split} "
                      f"({len(trainer.stream.dataset)} images), {config.schedule.iterations} iterations of "
                      f"{config.batch_size} x {config.accumulation_steps} x {trainer.context.world_size} images, "
                      f"{config.precision} on {trainer.device}; run folder {config.output_dir}", flush=True)
            summary = trainer.train()
            if trainer.context.is_main:
                print(_summary_text(summary, config.output_dir), flush=True)
        finally:
            trainer.close()
    return 0


def _run_config(args: argparse.Namespace) -> TrainConfig:
    """The config with its overrides, and the run folder.

    Resuming a run folder (``--resume FOLDER``) without ``--config`` uses the folder's config.yaml; a missing or empty
    one is an error (the defaults are another run's config). The run folder is an ``output_dir=`` override if given,
    else the folder given to --resume, else the config's, else runs/<config file name>.
    """
    resume_folder = Path(args.resume) if args.resume not in (None, "auto", "none") else None
    if resume_folder is not None and not (resume_folder.is_dir() and holds_run(resume_folder)):
        resume_folder = None  # a checkpoint file, or a folder the trainer refuses with a message
    config_path = args.config
    if config_path is None and resume_folder is not None:
        config_path = resume_folder / CONFIG_FILE
        if not config_path.is_file() or not config_path.read_text().strip():
            raise ValueError(f"run folder '{resume_folder}' has {'an empty' if config_path.is_file() else 'no'} "
                             f"{CONFIG_FILE}, so its config is unknown; pass the config the run started with as "
                             f"--config (every checkpoint also records it, as 'train_config')")
    config = load_config(config_path, args.overrides)
    if resume_folder is not None and not any(item.partition("=")[0].strip() == "output_dir" for item in args.overrides):
        config.output_dir = str(resume_folder)
    elif not config.output_dir:
        config.output_dir = str(Path("runs") / (args.config.stem if args.config is not None else "train"))
    return config


def _summary_text(summary: dict, output_dir: str) -> str:
    losses = summary["losses"]
    lines = [
        "",
        f"run folder        {output_dir}",
        f"iterations        {summary['iterations']}",
        f"wall time         {summary['seconds']:.1f} s ({summary['seconds_per_iteration']:.3f} s/iteration)",
        f"last loss         {losses.get('total', float('nan')):.4f} (final layer: cls "
        f"{losses.get('loss_cls', float('nan')):.4f}, mask {losses.get('loss_mask', float('nan')):.4f}, dice "
        f"{losses.get('loss_dice', float('nan')):.4f})",
    ]
    validation = summary["validation"]
    if validation is not None:
        lines.append(f"validation        {validation['dataset']}: mIoU {100 * (validation['miou'] or 0):.2f}, "
                     f"pixel accuracy {100 * (validation['pixel_accuracy'] or 0):.2f}")
    if summary["model_path"] is not None:
        lines.append(f"model             {summary['model_path']}")
    else:
        lines.append(f"stopped early     continue with --resume auto (checkpoints in {output_dir}/checkpoints)")
    lines.append(f"curves            python -m training.plot_log {output_dir}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
