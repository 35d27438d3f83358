"""The training loop of METHOD.md section 7: data-parallel, mixed precision, gradient accumulation, exact resume.

One ``Trainer`` per process. Under ``torchrun`` the processes form a DDP group (gloo on CPU, NCCL on GPU); without
it the run is a single process. What makes a killed run resume *exactly* (bit-identical weights):

- the data are a pure function of a global sample number (``training.sample_stream``), so the sampler state is
  the next iteration;
- a checkpoint holds the model, the frozen teacher, the optimizer, the GradScaler, the iteration and the Python,
  numpy and torch (CPU and CUDA) random states of every process; it is written atomically;
- the log is cut back to the checkpoint's iteration on resume, so it never holds lines of a lost future.

What makes a crash harmless (``training.run_folder``, ``training.run_lock``, ``training.launcher_watch``):

- one run per folder: the main process holds ``<output_dir>/train.lock`` (with its pid) for the whole run;
- a run starts by removing the temporary files of interrupted writes and a torn last line of ``log.jsonl``;
- ``resume="auto"`` checks the newest checkpoint and falls back to the newest readable one, saying so, and refuses a
  folder that holds no run (a mistyped ``output_dir`` never silently starts over);
- under torchrun, every rank ends when the launcher dies.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import logging
import os
import random
import re
import shutil
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import yaml
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

import tqdm_core
from tqdm_core import Predictor, TqdmConfig, save_checkpoint
from tqdm_core.builder import unrecorded_activation
from tqdm_core.checkpoint import (Checkpoint, CheckpointMetadata, atomic_torch_save, atomic_write,
                                  read_checkpoint_file)
from tqdm_core.inference import InferenceOptions
from tqdm_core.inference.host_memory import reuse_freed_memory
from tqdm_core.data import (LightingAugmentation, RareClassPaste, RareClassSamplingDataset, SegmentationDataset,
                            TrainTransform, UnreadableSampleError, build_dataset, load_class_statistics)
from tqdm_core.evaluation import SemSegEvaluator
from tqdm_core.losses import TqdmLoss
from tqdm_core.modeling.mix_style import attach_mix_style
from tqdm_core.official_keys import TEACHER_METADATA
from tqdm_core.presets import get_preset
from tqdm_core.pretrained import PretrainedWeightsUnavailable
from training.launcher_watch import exit_with_launcher, launched_by_torchrun
from training.optimizer import PolySchedule, build_optimizer
from training.run_folder import (CHECKPOINT_FOLDER, CONFIG_FILE, FINAL_MODEL, FINAL_RAW_MODEL, LOG_FILE, RCS_CACHE,
                                 checkpoint_path, holds_run, list_checkpoints, no_run_message,
                                 remove_stale_temporaries, set_aside, truncate_log)
from training.run_lock import RunLock
from training.sample_stream import ShuffledStream, StreamSampler
from training.train_config import DatasetConfig, TrainConfig, changed_fields, dataset_options

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "tqdm_ros.training.checkpoint.v1"
AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class DistributedContext:
    """Where this process sits in the (possibly single-process) data-parallel group."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()


def init_distributed(device: str) -> DistributedContext:
    """Join the torchrun process group if there is one (env:// rendezvous) and pick this process's device.

    A process started by torchrun also ends when torchrun does (``training.launcher_watch``).

    Args:
        device: "auto" (cuda:LOCAL_RANK when CUDA is available, else cpu), "cpu" or "cuda".
    """
    if launched_by_torchrun():
        exit_with_launcher()
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got '{device}'")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but CUDA is not available here; use device=cpu")
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    torch_device = torch.device(f"cuda:{local_rank}" if use_cuda else "cpu")
    if use_cuda:
        torch.cuda.set_device(torch_device)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo", device_id=torch_device if use_cuda else None)
    return DistributedContext(rank=rank, world_size=world_size, local_rank=local_rank, device=torch_device)


def build_training_stream(config: TrainConfig, dataset: SegmentationDataset, *, cache_path: Path) -> Dataset:
    """The training samples by global number: rare-class sampling or shuffled epochs over the source dataset."""
    aug = config.augmentation
    transform = TrainTransform(crop_size=aug.crop_size, scale_range=aug.scale_range, cat_max_ratio=aug.cat_max_ratio,
                               flip_prob=aug.flip_prob, photometric=aug.photometric,
                               lighting=LightingAugmentation() if aug.lighting else None,
                               pad_after_normalize=aug.pad_after_normalize, ignore_index=config.loss.ignore_index)
    rcs = config.rare_class_sampling
    if rcs.enabled:
        stream = RareClassSamplingDataset(dataset, transform=transform, class_temp=rcs.class_temp,
                                          min_pixels=rcs.min_pixels, min_crop_ratio=rcs.min_crop_ratio,
                                          cache_path=rcs.cache_path or cache_path,
                                          official_statistics=rcs.official_statistics, seed=config.seed,
                                          num_workers=config.num_workers)
    else:
        stream = ShuffledStream(dataset, transform=transform, seed=config.seed)
    paste = config.class_paste
    if paste.probability == 0:
        return stream
    names = list(dataset.class_table.names)
    unknown = [name for name in paste.classes if name not in names]
    if unknown:
        raise ValueError(f"class_paste.classes names {unknown}, which {dataset!r} does not have; its classes: {names}")
    pixel_counts = (stream.pixel_counts if rcs.enabled else
                    load_class_statistics(dataset, cache_path=rcs.cache_path or cache_path,
                                          num_workers=config.num_workers))
    return RareClassPaste(stream, dataset=dataset, transform=transform, pixel_counts=pixel_counts,
                          class_ids=[names.index(name) for name in paste.classes], probability=paste.probability,
                          min_pixels=paste.min_pixels, seed=config.seed)


# Optimizer-group values that come from the config (training/optimizer.py); "lr" is set by the schedule.
CONFIGURED_GROUP_KEYS = ("initial_lr", "min_lr", "weight_decay", "betas", "eps")


def update_weight_average(average: AveragedModel, model: nn.Module) -> None:
    """One step of the moving average of the weights and BatchNorm statistics; other buffers follow the model.

    AveragedModel(use_buffers=True) averages every buffer: the text encoder's causal mask (-inf above the diagonal,
    not saved) would become NaN and integer buffers (token ids) would be rounded, so the average scored during
    training would not be the model_final.pt saved from it (which rebuilds the unsaved buffers).
    """
    average.update_parameters(model)
    with torch.no_grad():
        for averaged_module, module in zip(average.module.modules(), model.modules(), strict=True):
            for name, buffer in module.named_buffers(recurse=False):
                if name in module._non_persistent_buffers_set or not buffer.is_floating_point():
                    getattr(averaged_module, name).copy_(buffer)


def _build_dataset(spec: DatasetConfig, where: str) -> SegmentationDataset:
    """The dataset of ``spec`` (config path ``where``, named by errors); options it does not take are refused."""
    return build_dataset(spec.name, spec.root, spec.split, **dataset_options(spec, where))


def _checkpoint_iteration(path: Path) -> int | None:
    """The iteration in a checkpoint's name (``iter_0000200.pt`` -> 200), or None for another name."""
    number = path.stem.removeprefix("iter_")
    return int(number) if number.isdigit() else None


def _original_message(error: BaseException) -> str:
    """An exception's message on one line; for one raised in a DataLoader worker (torch raises it again with the
    worker's traceback in the message), the message of the worker's exception only."""
    text = str(error)
    # The traceback's last line names the exception by its qualified name unless it is a builtin one.
    marker = re.compile(rf"\n(?:[\w.]+\.)?{type(error).__name__}: ")
    if text.startswith("Caught ") and marker.search(text):
        text = marker.split(text)[-1]
    return " ".join(line.strip() for line in text.strip().splitlines())


def read_training_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a resumable checkpoint written by ``Trainer`` (weights_only: it cannot run code), checking every CRC.

    Raises:
        FileNotFoundError: no such file.
        tqdm_core.CheckpointError: a truncated or corrupt file, or not a training checkpoint; the message names it.
    """
    path = Path(path)
    if path.is_file() and path.stat().st_size == 0:
        raise tqdm_core.CheckpointError(f"checkpoint '{path}' is empty (0 bytes: its write or copy never happened); "
                                        f"copy it again")
    payload = read_checkpoint_file(path)  # also checks every record's CRC
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise tqdm_core.CheckpointError(f"'{path}' is not a training checkpoint (format '{CHECKPOINT_FORMAT}'); "
                                        f"resume from <output_dir>/checkpoints/iter_*.pt")
    return payload


def model_from_training_checkpoint(payload: Mapping[str, Any]) -> nn.Module:
    """The TqdmSegmentor stored in a resumable checkpoint (CPU, eval mode), e.g. to evaluate it: the weights
    model_final.pt would hold at that iteration, i.e. the moving average in a run that keeps one (ema_decay), which
    is also what the run's validation scores."""
    model = tqdm_core.create_model(payload["preset"], pretrained=None,
                                   config=TqdmConfig.from_dict(payload["model_config"]))
    average = payload.get("ema")
    weights = payload["model"] if average is None else {
        name[len("module."):]: value for name, value in average.items() if name.startswith("module.")}
    model.load_state_dict(weights, strict=True)
    return model.eval()


def frozen_teacher(backbone: nn.Module, state: Mapping[str, torch.Tensor] | None = None) -> nn.Module:
    """The frozen teacher of the vision regularizer (METHOD.md 6.2, 11.7): a copy of `backbone`, in eval mode,
    without gradients, that training never updates.

    Args:
        backbone: a model's backbone. Without `state` its current weights become the teacher's, which is right only
            for a backbone just built from the pretrained weights (the start of a run); a trained backbone would
            be its own teacher, and the vision regularization loss 0.
        state: the teacher's own weights in the keys of `backbone.state_dict()`, loaded strictly: a training
            checkpoint's `teacher`, or the official `reg_E0` of a converted checkpoint (`checkpoint_teacher`).
    """
    teacher = copy.deepcopy(backbone).eval().requires_grad_(False)
    if state is not None:
        teacher.load_state_dict(state, strict=True)
    return teacher


def checkpoint_teacher(checkpoint: Checkpoint) -> nn.Module:
    """The vision regularizer's teacher of a model loaded from a file: the official pretrained encoder `reg_E0` that
    `training.convert_official` keeps in a converted checkpoint (metadata `TEACHER_METADATA`), on the backbone's device.

    Raises:
        tqdm_core.CheckpointError: the checkpoint holds no teacher (a copy of its backbone, the trained student,
            would give a vision regularization loss of 0).
    """
    state = checkpoint.metadata.extra.get(TEACHER_METADATA)
    if state is None:
        raise tqdm_core.CheckpointError(
            f"checkpoint '{checkpoint.path}' holds no teacher for the vision regularizer (metadata "
            f"'{TEACHER_METADATA}'): only official checkpoints converted with --keep-teacher do; convert the official "
            f"file again with python -m training.convert_official OFFICIAL.pth OUT.pt --keep-teacher, or for a run of "
            f"ours use its training checkpoint (checkpoints/iter_*.pt), which keeps the teacher")
    return frozen_teacher(checkpoint.model.backbone, state)


def _to_float32(value: Any) -> Any:
    """Floating tensors in (nested dicts / lists of) model outputs as float32: losses run outside autocast."""
    if isinstance(value, torch.Tensor):
        return value.float() if value.is_floating_point() else value
    if isinstance(value, dict):
        return {key: _to_float32(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_float32(item) for item in value)
    return value


def _rng_state(device: torch.device) -> dict[str, Any]:
    """This process's random states in weights_only-loadable types."""
    numpy_state = np.random.get_state(legacy=False)
    state = {
        "python": random.getstate(),
        "numpy": {**numpy_state, "state": {"key": numpy_state["state"]["key"].tolist(),
                                           "pos": numpy_state["state"]["pos"]}},
        "torch": torch.get_rng_state(),
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: Mapping[str, Any], device: torch.device) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    numpy_state = dict(state["numpy"])
    numpy_state["state"] = {"key": np.asarray(numpy_state["state"]["key"], dtype=np.uint32),
                            "pos": numpy_state["state"]["pos"]}
    np.random.set_state(numpy_state)
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


class Trainer:
    """Builds everything a run needs from a TrainConfig and runs the loop.

    Args:
        config: the run's configuration (``config.output_dir`` must be set).
        resume: where the run starts:

            - None or "none": a new run; refused when the output folder already holds checkpoints;
            - "auto": continue the run of the output folder from its newest readable checkpoint (unreadable newer
              ones are set aside as ``*.corrupt``, with a warning); a folder whose run has no checkpoint yet starts
              from iteration 0, with a warning; a folder that does not exist or holds no run is refused;
            - a run folder: the same as "auto" for the output folder; another folder is only read (its newest
              readable checkpoint starts this run);
            - a checkpoint file (``<run folder>/checkpoints/iter_*.pt``). One older than the newest checkpoint of the
              output folder abandons the run's continuation after it: its newer checkpoints and final model move
              to ``checkpoints/abandoned_<time>/`` with copies of its config.yaml and log.jsonl, with a warning.
        stop_at: the iteration ``train()`` stops at (None: the end of the schedule); a run already there is
            refused here, before anything in the run folder changes.
        progress: show progress bars (main process only).

    The main process holds the output folder's lock (``training.run_lock``) from construction to ``close()``; use the
    trainer as a context manager, or call ``close()``.
    """

    def __init__(self, config: TrainConfig, *, resume: str | None = None, stop_at: int | None = None,
                 progress: bool = True) -> None:
        config.check()
        if not config.output_dir:
            raise ValueError("config.output_dir is empty; set output_dir (training.train defaults it to "
                             "runs/<config name>)")
        self.config = config
        self.output_dir = Path(config.output_dir)
        self.context = init_distributed(config.device)
        self.device = self.context.device
        self.progress = progress and self.context.is_main
        self.stop_at = stop_at
        self.lock: RunLock | None = None
        new_folders = [folder for folder in (self.output_dir, *self.output_dir.parents) if not folder.exists()]
        try:
            self._set_up(resume)
        except BaseException:
            if self.lock is not None:
                self.lock.release()
            for folder in new_folders:  # a refused run leaves no empty folders behind (innermost first)
                if folder.is_dir() and not any(folder.iterdir()):
                    folder.rmdir()
            raise

    def __enter__(self) -> Trainer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _set_up(self, resume: str | None) -> None:
        """Lock and repair the run folder, build model, optimizer and data, restore the checkpoint to resume from."""
        config = self.config
        if config.precision == "fp16" and self.device.type != "cuda":
            raise ValueError("precision fp16 needs a CUDA device (GradScaler); on CPU use bf16 or fp32")
        self._configure_cpu()
        resumed = self._open_run_folder(resume)

        # Per-process global seeds (dropout, drop path, point sampling); the model's initialisation has its own
        # seed, equal on every process, so all processes start from the same weights.
        seed = config.seed + self.context.rank
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)

        try:
            self.model = tqdm_core.create_model(config.preset, pretrained=config.pretrained, seed=config.seed,
                                                overrides=config.model_overrides or None).to(self.device)
        except PretrainedWeightsUnavailable as error:
            if get_preset(config.preset).backbone.open_clip_model:
                raise
            raise PretrainedWeightsUnavailable(
                f"preset '{config.preset}' has no pretrained weights (its towers start random), but pretrained="
                f"{config.pretrained} asks for them; use pretrained=null") from error
        divisor = self.model.size_divisor
        if config.validation.dataset is not None and config.validation.window % divisor:
            raise ValueError(f"validation.window must be a multiple of {divisor} (the model's size divisor), got "
                             f"{config.validation.window}; the paper's is 512")
        self.criterion = TqdmLoss.from_config(config.loss)
        # The frozen teacher of the vision regularizer: the visual encoder as just built from the pretrained weights;
        # a resumed run replaces it with the teacher its checkpoint saved (_load_checkpoint), never the student.
        self.teacher = frozen_teacher(self.model.backbone) if self.criterion.needs_teacher else None
        self.anchors = self.model.text_encoder.anchor_embeddings() if config.loss.language_regularization else None
        if config.sync_batchnorm and self.context.distributed:
            if self.device.type == "cuda":
                self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
            elif self.context.is_main:
                logger.info("SyncBatchNorm needs CUDA: BatchNorm statistics stay per process on CPU")
        self.optimizer = build_optimizer(self.model, config.optimizer, config.schedule)
        self.schedule = PolySchedule(config.schedule)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=config.precision == "fp16")
        self.ema: AveragedModel | None = None
        if config.ema_decay is not None:
            self.ema = AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(config.ema_decay),
                                     use_buffers=True).eval().requires_grad_(False)
        if config.mix_style.probability > 0:  # after the copies above (teacher, EMA): only the trained model mixes
            attach_mix_style(self.model, config.mix_style.layers, probability=config.mix_style.probability,
                             alpha=config.mix_style.alpha)

        self.start_iteration = 0
        self.config_changes: dict[str, list[Any]] = {}  # config fields that differ from the resumed run's
        self.last_validation: dict[str, Any] | None = None
        rng_state = self._load_checkpoint(*resumed) if resumed is not None else None
        self._end_iteration(stop_at=self.stop_at)  # refuses a run with nothing to do before it changes any file

        # The RCS statistics are computed once (main process) and read from the cache by the others.
        # Checked before the RCS statistics are counted and cached, so a mismatch leaves no file behind.
        train_dataset = _build_dataset(config.train_dataset, "train_dataset")
        if train_dataset.class_table.names != self.model.class_table.names:
            raise ValueError(
                f"the model predicts {self.model.class_table.name} classes {list(self.model.class_table.names)} but "
                f"the training labels are {train_dataset.class_table.name} classes "
                f"{list(train_dataset.class_table.names)}; set model_overrides.class_table (e.g. camvid11) or the "
                f"dataset's classes option so that both agree")
        cache_path = self.output_dir / RCS_CACHE
        if self.context.is_main:
            self.stream = build_training_stream(config, train_dataset, cache_path=cache_path)
        self.context.barrier()
        if not self.context.is_main:
            self.stream = build_training_stream(config, train_dataset, cache_path=cache_path)
        self.validation_set = (_build_dataset(config.validation.dataset, "validation.dataset")
                               if config.validation.dataset is not None else None)

        self.train_model: nn.Module = self.model
        if self.context.distributed:
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            self.train_model = DistributedDataParallel(self.model, device_ids=device_ids)
        if self.context.is_main:
            if resumed is not None:
                self._set_aside_abandoned_continuation(resumed[0])
            atomic_write(self.output_dir / CONFIG_FILE,  # a crash never leaves an empty config.yaml
                         lambda stream: stream.write(yaml.safe_dump(config.to_dict(), sort_keys=False).encode()))
            truncate_log(self.output_dir, self.start_iteration)
            self._record_config_changes()
        self.validation_pending = self._resumed_validation_pending()
        # Restored last, so that nothing built above (model, teacher, datasets) consumes the resumed random streams.
        if rng_state is not None:
            _set_rng_state(rng_state, self.device)

    # ----------------------------------------------------------------------------------------------------------
    # Set-up helpers

    def _configure_cpu(self) -> None:
        """Threads per process, and (on the CPU) glibc keeping freed memory for reuse."""
        if self.device.type == "cpu":
            reuse_freed_memory()  # 15-20 % per iteration on a 2-core CPU: large tensors stop page-faulting
        if self.config.num_threads is not None:
            torch.set_num_threads(self.config.num_threads)
        elif self.context.distributed and self.device.type == "cpu":
            # Processes on one machine share its cores; more threads than cores slows every process down.
            local_processes = int(os.environ.get("LOCAL_WORLD_SIZE", self.context.world_size))
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // local_processes))

    def _open_run_folder(self, resume: str | None) -> tuple[Path, dict[str, Any]] | None:
        """Lock and repair the output folder, then read the checkpoint to resume from (see the class docstring).

        The main process does the folder's work and chooses the checkpoint; the others read the one it chose.

        Returns:
            (checkpoint path, its contents), or None for a run from iteration 0.
        """
        resumed = None
        if self.context.is_main:
            if resume is not None and resume not in ("auto", "none") and Path(resume).is_dir() \
                    and Path(resume).resolve() == self.output_dir.resolve():
                resume = "auto"
            if resume == "auto" and not holds_run(self.output_dir):
                raise FileNotFoundError(f"{no_run_message(self.output_dir)}; check output_dir, or leave out --resume "
                                        f"to start a new run there")
            self.lock = RunLock(self.output_dir)
            remove_stale_temporaries(self.output_dir)
            resumed = self._resolve_resume(resume)
        if self.context.distributed:
            chosen = [None if resumed is None else str(resumed[0])]
            dist.broadcast_object_list(chosen, src=0)
            if not self.context.is_main and chosen[0] is not None:
                resumed = Path(chosen[0]), read_training_checkpoint(chosen[0])
        return resumed

    def _resolve_resume(self, resume: str | None) -> tuple[Path, dict[str, Any]] | None:
        """Main process: the checkpoint ``resume`` designates, read, or None (see the class docstring)."""
        if resume is None or resume == "none":
            existing = list_checkpoints(self.output_dir)
            if existing:
                raise FileExistsError(f"'{self.output_dir}' already holds checkpoints of a run (last: "
                                      f"{existing[-1].name}); pass --resume auto to continue it, or choose another "
                                      f"output_dir")
            return None
        if resume == "auto":
            return self._newest_readable_checkpoint(self.output_dir, owned=True)
        path = Path(resume)
        if path.is_dir():
            if path.name == CHECKPOINT_FOLDER and holds_run(path.parent):
                newest = list_checkpoints(path.parent)
                raise ValueError(f"'{path}' is the checkpoint folder of run '{path.parent}', not a checkpoint; pass "
                                 f"the run folder to continue from its newest readable checkpoint"
                                 + (f", or one of its files (newest: '{newest[-1]}')" if newest else ""))
            if not holds_run(path):
                raise FileNotFoundError(f"{no_run_message(path)}; pass a checkpoint file (<run folder>/checkpoints/"
                                        f"iter_*.pt) or a run folder")
            return self._newest_readable_checkpoint(path, owned=False)
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint to resume from '{path}' does not exist; pass a checkpoint file "
                                    f"(<run folder>/checkpoints/iter_*.pt), a run folder, or auto (the output folder)")
        try:
            return path, read_training_checkpoint(path)
        except tqdm_core.CheckpointError as error:
            raise tqdm_core.CheckpointError(f"cannot resume: {error}; or resume from an earlier checkpoint of the run "
                                            f"(a run folder or auto takes its newest readable one)") from error

    def _newest_readable_checkpoint(self, folder: Path, *, owned: bool) -> tuple[Path, dict[str, Any]] | None:
        """The newest checkpoint of ``folder`` that reads, and its contents.

        Unreadable newer ones are skipped with a warning; in the output folder (``owned``) they are also set aside
        as ``*.corrupt``, so that neither a later resume nor the pruning of old checkpoints takes them for good.

        Returns:
            None when the output folder's run has no checkpoint yet (it starts from iteration 0, with a warning).

        Raises:
            FileNotFoundError: another folder without checkpoints.
            tqdm_core.CheckpointError: no checkpoint reads; the message lists them.
        """
        candidates = list_checkpoints(folder)
        unreadable: list[Path] = []
        for path in reversed(candidates):
            try:
                payload = read_training_checkpoint(path)
            except tqdm_core.CheckpointError as error:
                logger.warning("checkpoint '%s' is unreadable: %s", path, error.__cause__ or error)
                unreadable.append(path)
                continue
            if unreadable:
                fate = "skipped"
                if owned:
                    fate = f"set aside as {', '.join(repr(set_aside(bad).name) for bad in unreadable)}"
                logger.warning("resuming from '%s' (iteration %d), the newest readable checkpoint; the unreadable "
                               "newer one(s) %s", path, payload["iteration"], fate)
            return path, payload
        if unreadable:
            raise tqdm_core.CheckpointError(
                f"no checkpoint of '{folder}' is readable ({', '.join(path.name for path in unreadable)}: truncated or "
                f"corrupt); move them out of {folder / 'checkpoints'} to start the run again from iteration 0")
        if not owned:
            raise FileNotFoundError(f"run folder '{folder}' holds no checkpoint to resume from")
        logger.warning("run folder '%s' holds a run without any checkpoint yet (it stopped before its first one): "
                       "starting it again from iteration 0", folder)
        return None

    def _load_checkpoint(self, path: Path, payload: dict[str, Any]) -> dict[str, Any]:
        """Restore model, teacher, optimizer, scaler and iteration; returns this process's random state."""
        config = self.config
        expected = {"world_size": self.context.world_size, "batch_size": config.batch_size,
                    "accumulation_steps": config.accumulation_steps, "seed": config.seed}
        stored = payload["sampler"]
        differences = {key: (stored[key], value) for key, value in expected.items() if stored[key] != value}
        if differences:
            described = ", ".join(f"{key} {old} (checkpoint) vs {new} (now)" for key, (old, new) in differences.items())
            raise ValueError(f"cannot resume '{path}' exactly: {described}; resume with the same number of processes "
                             f"and the same batch_size, accumulation_steps and seed")
        if payload["schedule"] != self.schedule.state_dict():
            raise ValueError(f"cannot resume '{path}': its schedule {payload['schedule']} differs from the config's "
                             f"{self.schedule.state_dict()}")
        stored_config = dict(payload["model_config"])
        if stored_config.get("quick_gelu") is None:  # saved before the towers' activation was recorded
            stored_config["quick_gelu"] = unrecorded_activation(payload["preset"])
        current_config = self.model.config.to_dict()
        if payload["preset"] != self.model.preset or stored_config != current_config:
            differences = ([f"preset '{payload['preset']}' (checkpoint) vs '{self.model.preset}' (now)"]
                           if payload["preset"] != self.model.preset else
                           [f"model_overrides.{field} {old!r} (checkpoint) vs {new!r} (now)"
                            for field, (old, new) in changed_fields(stored_config, current_config).items()])
            run_config = path.parent.parent / CONFIG_FILE
            source = f"'{run_config}'" if run_config.is_file() else "the checkpoint's train_config"
            raise ValueError(f"cannot resume '{path}': its model differs from the config's: "
                             f"{', '.join(differences) or 'another model config'}; resume with the preset and "
                             f"model_overrides the run started with (as in {source})")
        self.model.load_state_dict(payload["model"], strict=True)
        if self.teacher is not None:
            if payload["teacher"] is None:
                raise ValueError(f"'{path}' was saved without the vision regularizer's teacher; resume with "
                                 f"loss.vision_regularization as it was")
            self.teacher.load_state_dict(payload["teacher"], strict=True)
        if self.ema is not None:
            if payload.get("ema") is not None:
                self.ema.load_state_dict(payload["ema"], strict=True)
            elif self.context.is_main:
                # The average never feeds back into training, so it can start at any iteration of a run.
                logger.warning("'%s' holds no weight average: ema_decay %g starts averaging from its weights",
                               path, self.config.ema_decay)
        configured = [{key: group[key] for key in CONFIGURED_GROUP_KEYS} for group in self.optimizer.param_groups]
        self.optimizer.load_state_dict(payload["optimizer"])
        # load_state_dict restores the saved hyper-parameters; the config's win (e.g. a lower optimizer.lr after a
        # divergence), and the moments and step counts carry on.
        for group, values in zip(self.optimizer.param_groups, configured, strict=True):
            group.update(values)
        self.config_changes = changed_fields(payload.get("train_config") or {}, config.to_dict())
        self.scaler.load_state_dict(payload["scaler"])
        self.start_iteration = int(payload["iteration"])
        self.last_validation = payload.get("last_validation")
        if self.context.is_main:
            logger.info("resumed from %s at iteration %d", path, self.start_iteration)
        return payload["rng"][self.context.rank]

    def _record_config_changes(self) -> None:
        """A run resumed with another config says so: in the log it writes and in log.jsonl, since config.yaml now
        holds the new values only."""
        if not self.config_changes:
            return
        described = ", ".join(f"{path} {old!r} -> {new!r}" for path, (old, new) in self.config_changes.items())
        logger.warning("resuming at iteration %d with a changed config: %s", self.start_iteration, described)
        with open(self.output_dir / LOG_FILE, "a") as stream:
            stream.write(json.dumps({"iteration": self.start_iteration, "time": time.time(),
                                     "config_changes": self.config_changes}) + "\n")

    def _set_aside_abandoned_continuation(self, resumed: Path) -> None:
        """Main process: after resuming before the newest checkpoint of the output folder (an explicit earlier
        checkpoint, e.g. to redo a diverged stretch with a lower LR), the newer checkpoints and the final model
        belong to the abandoned continuation. They move to ``checkpoints/abandoned_<time>/`` with copies of
        config.yaml and log.jsonl as they were (the run's own are rewritten and cut back to the resumed iteration),
        so that a later ``--resume auto`` continues this run and not that one; nothing is deleted."""
        newer = [path for path in list_checkpoints(self.output_dir)
                 if (_checkpoint_iteration(path) or 0) > self.start_iteration]
        if not newer:
            return
        folder = self.output_dir / CHECKPOINT_FOLDER / f"abandoned_{time.strftime('%Y%m%d-%H%M%S')}"
        folder.mkdir()
        moved = [*newer, *(self.output_dir / name for name in (FINAL_MODEL, FINAL_RAW_MODEL)
                           if (self.output_dir / name).is_file())]
        for name in (CONFIG_FILE, LOG_FILE):
            if (self.output_dir / name).is_file():
                shutil.copy2(self.output_dir / name, folder / name)
        for path in moved:
            os.replace(path, folder / path.name)
        logger.warning("resuming '%s' at iteration %d, before the newest checkpoint of '%s': its continuation after "
                       "iteration %d is abandoned; moved %s and copies of %s and %s as they were to '%s'", resumed,
                       self.start_iteration, self.output_dir, self.start_iteration,
                       ", ".join(path.name for path in moved), CONFIG_FILE, LOG_FILE, folder)

    def _validation_due(self, iteration: int) -> bool:
        """Whether the run validates after ``iteration``: every ``validation.interval`` and after the last one."""
        return self.validation_set is not None and (iteration % self.config.validation.interval == 0
                                                    or iteration == self.config.schedule.iterations)

    def _resumed_validation_pending(self) -> bool:
        """Whether the validation due at the resumed iteration has yet to run; restores its metrics if it ran.

        The checkpoint of an iteration is written before that iteration's validation (an error while validating
        then loses no training), so it holds the metrics of the validation before; log.jsonl holds the later ones
        if the stopped run got that far.
        """
        if self.start_iteration == 0 or not self._validation_due(self.start_iteration):
            return False
        logged: list[dict[str, Any] | None] = [None]
        if self.context.is_main and (self.output_dir / LOG_FILE).is_file():
            for line in (self.output_dir / LOG_FILE).read_text().splitlines():
                record = json.loads(line) if line.strip() else {}
                if record.get("iteration") == self.start_iteration and "validation" in record:
                    logged[0] = record["validation"]
        if self.context.distributed:
            dist.broadcast_object_list(logged, src=0)
        if logged[0] is None:
            return True
        self.last_validation = logged[0]
        return False

    def _end_iteration(self, stop_at: int | None) -> int:
        """The iteration a run to ``stop_at`` (None: the end of the schedule) ends at.

        Raises:
            ValueError: the run is already there; a run at its last iteration without its final model is not (it
                stopped while writing it, ``_finish_stopped_run``).
        """
        total = self.config.schedule.iterations
        end = total if stop_at is None else min(stop_at, total)
        if end <= self.start_iteration and not (self.start_iteration == total
                                                and not (self.output_dir / FINAL_MODEL).exists()):
            remedy = (f"pass a --stop-at after {self.start_iteration}" if self.start_iteration < total else
                      f"the run is finished ({self.output_dir / FINAL_MODEL}); start a new one in another output_dir")
            raise ValueError(f"nothing to do: the run is at iteration {self.start_iteration} and would stop at {end}; "
                             f"{remedy}")
        return end

    def _loader(self, end_iteration: int) -> DataLoader:
        config = self.config
        sampler = StreamSampler(start_iteration=self.start_iteration, total_iterations=end_iteration,
                                batch_size=config.batch_size, accumulation_steps=config.accumulation_steps,
                                rank=self.context.rank, world_size=self.context.world_size)
        # A private generator for the workers' base seed: creating the loader must not consume the global torch
        # random stream (a resumed run would diverge). Samples never depend on worker seeds anyway.
        return DataLoader(self.stream, batch_size=config.batch_size, sampler=sampler, num_workers=config.num_workers,
                          pin_memory=self.device.type == "cuda", generator=torch.Generator().manual_seed(config.seed),
                          persistent_workers=False)

    # ----------------------------------------------------------------------------------------------------------
    # The loop

    def train(self, *, stop_at: int | None = None) -> dict[str, Any]:
        """Run from the current iteration to the end of the schedule, or to ``stop_at`` (then leave a checkpoint).

        Args:
            stop_at: None: the constructor's ``stop_at``.

        Returns:
            Summary: ``iterations``, ``seconds``, ``seconds_per_iteration``, ``losses`` (last logged means),
            ``validation`` (last metrics or None), ``model_path`` (None when stopped early).
        """
        config = self.config
        total = config.schedule.iterations
        end = self._end_iteration(self.stop_at if stop_at is None else stop_at)
        if self.validation_pending:  # the resumed run stopped between a checkpoint and the validation after it
            self.last_validation = self.validate(self.start_iteration)
            self.validation_pending = False
        if end <= self.start_iteration:
            return self._finish_stopped_run()
        batches = iter(self._loader(end))
        self.train_model.train()
        bar = tqdm(total=total, initial=self.start_iteration, desc="train", unit="it", disable=not self.progress,
                   dynamic_ncols=True)
        interval_losses: dict[str, float] = {}
        interval_start, interval_count, data_seconds = time.perf_counter(), 0, 0.0
        run_start = time.perf_counter()
        last_logged: dict[str, float] = {}
        for iteration in range(self.start_iteration, end):
            self.schedule.apply(self.optimizer, iteration)
            losses, waited = self._step(batches, iteration)
            if self.ema is not None:
                update_weight_average(self.ema, self.model)
            for key, value in losses.items():
                interval_losses[key] = interval_losses.get(key, 0.0) + value
            interval_count += 1
            data_seconds += waited
            done = iteration + 1
            bar.update(1)
            bar.set_postfix_str(f"loss {losses['total']:.3f}  lr {self.optimizer.param_groups[-1]['lr']:.2e}")
            if done % config.log_interval == 0 or done == end:
                seconds = time.perf_counter() - interval_start
                last_logged = self._log_losses(done, interval_losses, interval_count, seconds, data_seconds)
                interval_losses, interval_start, interval_count, data_seconds = {}, time.perf_counter(), 0, 0.0
            if done % config.checkpoint_interval == 0 or done == end < total:
                self.save_checkpoint(done)  # before validating: an error there must not lose this training
            if self._validation_due(done):
                self.last_validation = self.validate(done)
        bar.close()
        seconds = time.perf_counter() - run_start
        if self.context.distributed:
            # DDP copies rank 0's buffers (BatchNorm statistics) into the others before every forward, so the last
            # forward leaves each process with its own; align them so that every process ends with the same model.
            for buffer in self.model.buffers():
                dist.broadcast(buffer, src=0)
        model_path = self._save_final_model() if end == total else None
        self.context.barrier()
        summary = {"iterations": end, "seconds": seconds,
                   "seconds_per_iteration": seconds / (end - self.start_iteration), "losses": last_logged,
                   "validation": self.last_validation, "model_path": None if model_path is None else str(model_path)}
        self.start_iteration = end
        return summary

    def _finish_stopped_run(self) -> dict[str, Any]:
        """Write the final model of a run whose last checkpoint is its last iteration: it stopped while writing
        model_final.pt (kill, full disk), after the checkpoint of that iteration."""
        if self.context.is_main:
            logger.warning("'%s' holds the checkpoint of its last iteration but no %s: writing it", self.output_dir,
                           FINAL_MODEL)
        model_path = self._save_final_model()
        self.context.barrier()
        return {"iterations": self.start_iteration, "seconds": 0.0, "seconds_per_iteration": 0.0, "losses": {},
                "validation": self.last_validation, "model_path": None if model_path is None else str(model_path)}

    def _step(self, batches: Iterator[dict], iteration: int) -> tuple[dict[str, float], float]:
        """One optimizer step over ``accumulation_steps`` micro-batches; returns mean losses and data wait time."""
        config = self.config
        steps = config.accumulation_steps
        autocast = torch.autocast(device_type=self.device.type, dtype=AUTOCAST_DTYPES.get(config.precision),
                                  enabled=config.precision in AUTOCAST_DTYPES)
        self.optimizer.zero_grad(set_to_none=True)
        sums: dict[str, torch.Tensor] = {}
        waited = 0.0
        for micro_step in range(steps):
            start = time.perf_counter()
            try:
                batch = next(batches)
            except UnreadableSampleError as error:  # it names the file; other errors keep their traceback
                raise ValueError(f"cannot load a training sample at iteration {iteration}: {_original_message(error)}; "
                                 f"replace that file with a readable copy (or remove the sample from the dataset), "
                                 f"then continue with --resume auto") from error
            waited += time.perf_counter() - start
            images = batch["image"].to(self.device, non_blocking=True)
            labels = batch["label"].to(self.device, non_blocking=True)
            # Gradients are all-reduced once per optimizer step, on the last micro-batch.
            last = micro_step == steps - 1
            distributed = self.context.distributed
            synchronise = self.train_model.no_sync() if distributed and not last else contextlib.nullcontext()
            with synchronise:
                with autocast:
                    outputs = self.train_model(images)
                    teacher_embedding = None
                    if self.teacher is not None:
                        with torch.no_grad():
                            teacher_embedding = self.teacher(images).image_embedding
                losses = self.criterion(_to_float32(outputs), labels, anchor_embeddings=self.anchors,
                                        teacher_image_embedding=_to_float32(teacher_embedding))
                self.scaler.scale(losses["total"] / steps).backward()
            for key, value in losses.items():
                sums[key] = sums.get(key, 0.0) + value.detach() / steps
        if not torch.isfinite(sums["total"]):
            terms = {key: float(value) for key, value in sums.items() if not torch.isfinite(value)}
            raise FloatingPointError(f"non-finite loss at iteration {iteration}: {terms}; resume from an earlier "
                                     f"checkpoint with a lower optimizer.lr or precision fp32 (with the same "
                                     f"settings a resumed run repeats the same steps)")
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return {key: float(value) for key, value in sums.items()}, waited

    def _log_losses(self, iteration: int, sums: dict[str, float], count: int, seconds: float,
                    data_seconds: float) -> dict[str, float]:
        """Mean losses of the interval over all processes, appended to log.jsonl by the main process."""
        names = sorted(sums)
        means = torch.tensor([sums[name] / count for name in names], dtype=torch.float64)
        if self.context.distributed:
            means = means.to(self.device)
            dist.all_reduce(means)
            means = means.cpu() / self.context.world_size
        losses = dict(zip(names, means.tolist()))
        if self.context.is_main:
            record = {"iteration": iteration, "time": time.time(),
                      "lr": {group["name"]: group["lr"] for group in self.optimizer.param_groups},
                      "losses": losses, "seconds_per_iteration": seconds / count,
                      "data_seconds_per_iteration": data_seconds / count}
            with open(self.output_dir / LOG_FILE, "a") as stream:
                stream.write(json.dumps(record) + "\n")
        return losses

    # ----------------------------------------------------------------------------------------------------------
    # Validation, checkpoints, final model

    def validate(self, iteration: int) -> dict[str, Any]:
        """Score the current model on the source validation set through the Predictor (the node's code path).

        Every process scores a share of the images; the confusion matrices are summed. Returns mIoU, pixel
        accuracy and per-class IoU (fractions in [0, 1]); the main process logs them.
        """
        spec = self.config.validation
        dataset = self.validation_set
        indices = np.arange(len(dataset))
        if spec.max_images is not None and spec.max_images < len(dataset):
            indices = np.linspace(0, len(dataset) - 1, spec.max_images).round().astype(int)
        evaluator = SemSegEvaluator.for_class_table(dataset.class_table, model_table=self.model.class_table)
        scored = self.model if self.ema is None else self.ema.module  # the weights model_final.pt will hold
        precision = self.config.precision
        options = InferenceOptions(device=str(self.device), precision=precision, mode=spec.mode,
                                   window=spec.window, stride=spec.stride, scale=spec.scale)
        predictor = Predictor(scored, **options.predictor_arguments(recommended_scale=None))
        shard = indices[self.context.rank::self.context.world_size]
        for index in tqdm(shard, desc=f"validate @{iteration}", unit="img", leave=False, disable=not self.progress):
            sample = dataset.load_sample(int(index))
            evaluator.process(predictor.predict(sample["image"]).labels, sample["label"])
        if self.context.distributed:
            counts = torch.from_numpy(evaluator.counts).to(self.device)
            dist.all_reduce(counts)
            evaluator.counts[...] = counts.cpu().numpy()
        self.train_model.train()
        results = evaluator.to_json()
        metrics = {"miou": results["miou"], "pixel_accuracy": results["pixel_accuracy"],
                   "iou": {name: scores["iou"] for name, scores in results["per_class"].items()},
                   "images": int(len(indices)), "dataset": f"{spec.dataset.name}:{spec.dataset.split}"}
        if self.context.is_main:
            with open(self.output_dir / LOG_FILE, "a") as stream:
                stream.write(json.dumps({"iteration": iteration, "time": time.time(), "validation": metrics}) + "\n")
            tqdm.write(f"[iteration {iteration}] validation on {metrics['dataset']} ({metrics['images']} images): "
                       f"mIoU {100 * (metrics['miou'] or 0):.2f}, pixel accuracy "
                       f"{100 * (metrics['pixel_accuracy'] or 0):.2f}")
        return metrics

    def save_checkpoint(self, iteration: int) -> Path | None:
        """Write ``checkpoints/iter_<iteration>.pt`` atomically (main process); every process contributes its RNG."""
        rng = _rng_state(self.device)
        states: list[Any] = [rng]
        if self.context.distributed:
            states = [None] * self.context.world_size
            dist.all_gather_object(states, rng)
        path = None
        if self.context.is_main:
            config = self.config
            payload = {
                "format": CHECKPOINT_FORMAT,
                "iteration": iteration,
                "preset": self.model.preset,
                "model_config": self.model.config.to_dict(),
                "train_config": config.to_dict(),
                "model": self.model.state_dict(),
                "teacher": None if self.teacher is None else self.teacher.state_dict(),
                "ema": None if self.ema is None else self.ema.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scaler": self.scaler.state_dict(),
                "schedule": self.schedule.state_dict(),
                "sampler": {"next_iteration": iteration, "world_size": self.context.world_size,
                            "batch_size": config.batch_size, "accumulation_steps": config.accumulation_steps,
                            "seed": config.seed},
                "rng": states,
                "last_validation": self.last_validation,
            }
            path = atomic_torch_save(payload, checkpoint_path(self.output_dir, iteration))
            if config.keep_checkpoints:
                for old in list_checkpoints(self.output_dir)[:-config.keep_checkpoints]:
                    old.unlink()
        self.context.barrier()
        return path

    def _save_final_model(self) -> Path | None:
        """``model_final.pt`` in the tqdm_core checkpoint format, loadable by the Predictor and the node."""
        if not self.context.is_main:
            return None
        extra = {"train_config": self.config.to_dict(), "iterations": self.config.schedule.iterations}
        metadata = CheckpointMetadata(inference_scale=self.config.validation.scale, validation=self.last_validation,
                                      extra=extra)
        if self.ema is None:
            return save_checkpoint(self.model, self.output_dir / FINAL_MODEL, metadata=metadata)
        # The validation scores belong to the average (validate() scores it), so the last weights get none.
        save_checkpoint(self.model, self.output_dir / FINAL_RAW_MODEL,
                        metadata=dataclasses.replace(metadata, validation=None, extra={**extra, "weights": "last"}))
        return save_checkpoint(self.ema.module, self.output_dir / FINAL_MODEL, metadata=dataclasses.replace(
            metadata, extra={**extra, "weights": f"ema {self.config.ema_decay:g}"}))

    def close(self) -> None:
        """Release the output folder and leave the process group (call once, at the end of the run)."""
        if self.lock is not None:
            self.lock.release()
        if self.context.distributed and dist.is_initialized():
            dist.destroy_process_group()
