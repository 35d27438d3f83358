"""Typed configuration of a training run (METHOD.md section 7). The defaults are the official recipe of the
GTA5 -> Cityscapes CLIP ViT-B/16 config; YAML files in ``training/configs`` hold only what differs from them.

A config is loaded as: dataclass defaults, then the YAML file, then ``key.path=value`` command-line overrides.
Unknown keys and values of the wrong type are errors, so a typo never silently falls back to a default.
"""
from __future__ import annotations

import collections.abc
import dataclasses
import inspect
import logging
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tqdm_core.config import deep_update, plain_data
from tqdm_core.data import DATASETS
from tqdm_core.inference.options import RANGES, InferenceOptions, InvalidOption
from tqdm_core.losses import LossConfig

logger = logging.getLogger(__name__)

PRECISIONS = ("fp32", "bf16", "fp16")


@dataclass
class DatasetConfig:
    """One dataset of ``tqdm_core.data.DATASETS`` in its on-disk layout."""

    name: str = "gta5"  # registry key: gta5, cityscapes, bdd100k, mapillary, camvid, image_folder
    root: str = "data/gta5"  # dataset folder
    split: str | None = None  # split understood by that dataset; None = the dataset's default
    options: dict[str, Any] = field(default_factory=dict)  # further dataset keyword arguments, e.g. {classes: camvid11}


@dataclass
class AugmentationConfig:
    """The training pipeline of METHOD.md section 7.2 (``tqdm_core.data.TrainTransform``)."""

    crop_size: tuple[int, int] = (512, 512)  # (height, width) of the training crop
    scale_range: tuple[float, float] = (0.5, 2.0)  # random rescale of the original image size
    cat_max_ratio: float = 0.75  # largest share one class may take of a crop (10 redraws)
    flip_prob: float = 0.5  # horizontal flip probability
    photometric: bool = True  # mmseg PhotoMetricDistortion
    lighting: bool = False  # tqdm_core.data.LightingAugmentation after it: gamma, white balance, blur, noise
    pad_after_normalize: bool = True  # official quirk: padding is the CLIP mean colour (mmseg pads after Normalize)


@dataclass
class RareClassSamplingConfig:
    """DAFormer rare-class sampling as configured by tqdm (METHOD.md section 7.2; section 11, item 10)."""

    enabled: bool = True  # every sample is drawn by RCS; False: shuffled epochs over the dataset
    class_temp: float = 100.0  # T = 100 is nearly class-uniform (official value)
    min_pixels: int = 3000  # an image is a candidate for class c if it holds more pixels of c than this
    min_crop_ratio: float = 0.5  # the crop must keep min_pixels * min_crop_ratio pixels of c (10 redraws)
    official_statistics: str | None = None  # official sample_class_stats.json / samples_with_class.json (or folder)
    cache_path: str | None = None  # JSON cache of the per-image class pixel counts; None: <output_dir>/rcs_stats.json


@dataclass
class ClassPasteConfig:
    """Rare-class paste (``tqdm_core.data.RareClassPaste``, issue 13): not in the official recipe, off by default."""

    probability: float = 0.0  # share of training samples that get a donor crop's pixels pasted in; 0 = off
    classes: list[str] = field(default_factory=list)  # names of the pasted classes, e.g. [sign-symbol, fence]
    min_pixels: int = 500  # a donor image holds more than this many pixels of a pasted class


@dataclass
class MixStyleConfig:
    """MixStyle feature-statistics mixing (``tqdm_core.modeling.mix_style``, issue 13): not in the official recipe,
    off by default."""

    probability: float = 0.0  # chance per training forward pass that a listed layer mixes its statistics; 0 = off
    alpha: float = 0.1  # mixing weights ~ Beta(alpha, alpha) (the paper's 0.1)
    # The ResNet towers' first three stages (the paper's choice); a ViT preset has no (B, C, H, W) stages to name.
    layers: list[str] = field(default_factory=lambda: ["backbone.visual.layer1", "backbone.visual.layer2",
                                                       "backbone.visual.layer3"])


@dataclass
class OptimizerConfig:
    """AdamW with the parameter groups of METHOD.md section 7.3."""

    lr: float = 1e-5  # base LR: 1e-5 for GTA5 source, 1e-4 for Cityscapes source
    weight_decay: float = 1e-4  # 1e-4 for GTA5 source, 1e-5 for Cityscapes source
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    backbone_lr_mult: float = 0.1  # visual encoder (incl. its pyramid and projections) at 0.1x
    backbone_norm_decay: bool = True  # official quirk: mmcv matches "backbone" before "norm", so its norms decay
    # Which head parameters count as norms (no weight decay): "name" (official quirk: mmcv's key "norm" in the
    # parameter name, so the pixel decoder's GroupNorms and the context decoder's index-named LayerNorms decay)
    # or "type" (every normalization layer, by module type).
    norm_rule: str = "name"
    no_decay_keys: tuple[str, ...] = ()  # more parameter-name substrings without decay (C configs: level/query_embed)


@dataclass
class ScheduleConfig:
    """Per-iteration poly decay with linear warm-up (mmcv PolyLrUpdaterHook semantics)."""

    iterations: int = 20000  # optimizer steps
    warmup_iterations: int = 1500  # linear warm-up length; 0 disables it
    warmup_ratio: float = 1e-6  # LR factor at iteration 0 of the warm-up
    power: float = 0.9  # poly exponent
    min_lr: float = 1e-6  # LR floor; official quirk: one floor for every group, so the G configs' backbone
    #                       (1e-5 x 0.1 = 1e-6) stays at 1e-6 for the whole run
    scale_min_lr: bool = False  # True: each group's floor is min_lr x its lr_mult (the backbone then decays too)


@dataclass
class ValidationConfig:
    """Periodic validation on the source domain's validation set (never on target data: METHOD.md 11, item 11)."""

    dataset: DatasetConfig | None = None  # None disables validation
    interval: int = 2000  # validate every this many iterations and after the last one
    mode: str = "slide"  # Predictor mode: "whole" or "slide" (512 window, stride 341, as the official test)
    window: int = 512
    stride: int = 341
    max_images: int | None = None  # evenly spaced subset of this many images (large source val sets); None = all
    # Predictor input scale. A model trained on downscaled crops is validated at its training scale, and
    # model_final.pt records it as "inference_scale", the Predictor's default for that checkpoint.
    scale: float = 1.0


@dataclass
class TrainConfig:
    """A whole training run."""

    preset: str = "tqdm-clip-vit-b16"  # tqdm_core preset ("model" in older configs: a deprecated alias)
    model_overrides: dict[str, Any] = field(default_factory=dict)  # nested TqdmConfig fields, e.g. {class_table: x}
    pretrained: str | None = "default"  # CLIP weights: "default" (the preset's tag), a tag, a file, None = random
    train_dataset: DatasetConfig = field(default_factory=lambda: DatasetConfig(name="gta5", root="data/gta5",
                                                                               split="train"))
    augmentation: AugmentationConfig = field(default_factory=AugmentationConfig)
    rare_class_sampling: RareClassSamplingConfig = field(default_factory=RareClassSamplingConfig)
    class_paste: ClassPasteConfig = field(default_factory=ClassPasteConfig)
    mix_style: MixStyleConfig = field(default_factory=MixStyleConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    batch_size: int = 8  # images per process and micro-step (official: 8 per GPU)
    accumulation_steps: int = 1  # micro-steps per optimizer step; effective batch = batch x accumulation x processes
    precision: str = "fp32"  # fp32 (official), bf16 (CPU or GPU autocast) or fp16 (GPU autocast + GradScaler)
    device: str = "auto"  # "auto" (cuda:LOCAL_RANK if available, else cpu), "cpu" or "cuda"
    sync_batchnorm: bool = True  # convert BatchNorm layers to SyncBatchNorm under data parallelism (as mmseg)
    num_workers: int = 4  # DataLoader processes per training process
    num_threads: int | None = None  # torch CPU threads per process; None: torch's default (split between processes)
    checkpoint_interval: int = 2000  # save a resumable checkpoint every this many iterations
    keep_checkpoints: int = 0  # newest resumable checkpoints kept; 0 keeps all (official saves every 2000)
    log_interval: int = 10  # iterations averaged into one line of log.jsonl
    seed: int = 2023  # official seed (dist_train.sh)
    # Exponential moving average of the weights and BatchNorm statistics, updated after every optimizer step (it
    # never feeds back into training): validation and model_final.pt use the average, model_final_raw.pt keeps the
    # last weights. None: off (official). 0.999 averages over about the last 1000 steps.
    ema_decay: float | None = None
    output_dir: str = ""  # run folder; "" = runs/<config file name>
    # Sequence-held-out validation: train without this recording, validate on it alone (datasets with a
    # `sequences` option, e.g. CamVid "0001TP"). Sets train_dataset.options.exclude_sequences and validation.dataset.
    hold_out_sequence: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (YAML- and JSON-safe; tuples become lists)."""
        return plain_data(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        config = _build(cls, data, "")
        for where, spec in (("train_dataset", config.train_dataset), ("validation.dataset", config.validation.dataset)):
            if spec is not None:
                spec.options = dataset_options(spec, where)
        return config

    def check(self) -> None:
        """Raise ValueError on values that would only fail later, deep inside a run."""
        problems = []
        if self.precision not in PRECISIONS:
            problems.append(f"precision must be one of {PRECISIONS}, got '{self.precision}'")
        for name in ("batch_size", "accumulation_steps", "checkpoint_interval", "log_interval"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.schedule.iterations < 1:
            problems.append(f"schedule.iterations must be >= 1, got {self.schedule.iterations}")
        if self.schedule.warmup_iterations < 0:
            problems.append(f"schedule.warmup_iterations must be >= 0, got {self.schedule.warmup_iterations}")
        if self.validation.mode not in ("whole", "slide"):
            problems.append(f"validation.mode must be 'whole' or 'slide', got '{self.validation.mode}'")
        low, high = RANGES["scale"]
        if not low <= self.validation.scale <= high:
            problems.append(f"validation.scale must be in [{low:g}, {high:g}], got {self.validation.scale}")
        if self.validation.interval < 1:
            problems.append(f"validation.interval must be >= 1, got {self.validation.interval}")
        try:  # the Predictor's own rules (ranges, stride <= window), in this config's names
            InferenceOptions(window=self.validation.window, stride=self.validation.stride)
        except InvalidOption as error:
            problems.append(error.describe({"window": "validation.window", "stride": "validation.stride"}))
        if self.ema_decay is not None and not 0.0 < self.ema_decay < 1.0:
            problems.append(f"ema_decay must be in (0, 1) or null, got {self.ema_decay}")
        if not 0.0 <= self.class_paste.probability <= 1.0:
            problems.append(f"class_paste.probability must be in [0, 1], got {self.class_paste.probability}")
        if self.class_paste.probability > 0 and not self.class_paste.classes:
            problems.append("class_paste.classes is empty: name the classes to paste (e.g. [sign-symbol, fence])")
        if not 0.0 <= self.mix_style.probability <= 1.0:
            problems.append(f"mix_style.probability must be in [0, 1], got {self.mix_style.probability}")
        if self.mix_style.alpha <= 0:
            problems.append(f"mix_style.alpha must be > 0, got {self.mix_style.alpha}")
        if self.mix_style.probability > 0 and not self.mix_style.layers:
            problems.append("mix_style.layers is empty: name the layers whose outputs to mix (e.g. "
                            "[backbone.visual.layer1])")
        if self.keep_checkpoints < 0:
            problems.append(f"keep_checkpoints must be >= 0, got {self.keep_checkpoints}")
        if problems:
            raise ValueError("invalid training config: " + "; ".join(problems))


def load_config(path: str | Path | None, overrides: list[str] = ()) -> TrainConfig:
    """Defaults, then the YAML file (if any), then ``key.path=value`` overrides (values parsed as YAML).

    Args:
        path: YAML file of overrides, or None for the defaults.
        overrides: strings such as ``schedule.iterations=100`` or ``train_dataset.root=/data/gta5``.
    """
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file '{path}' does not exist; configs live in training/configs/")
        loaded = _parse_yaml(path.read_text(), f"config file '{path}'")
        if loaded is not None and not isinstance(loaded, dict):
            raise ValueError(f"config file '{path}' must hold a mapping of fields, found {type(loaded).__name__}")
        data = _renamed_fields(loaded or {}, f"config file '{path}'")
    for override in overrides:
        key, separator, value = override.partition("=")
        if not separator or not key:
            raise ValueError(f"override '{override}' must look like key.path=value (e.g. schedule.iterations=100)")
        _set_path(data, _renamed_fields({key: None}, f"override '{override}'").popitem()[0].split("."),
                  _parse_yaml(value, f"override '{override}'"))
    config = TrainConfig.from_dict(deep_update(TrainConfig().to_dict(), data))
    config.check()
    return hold_out(config) if config.hold_out_sequence else config


DEPRECATED_FIELDS = {"model": "preset"}  # old top-level name -> current name
NOT_DATASET_OPTIONS = ("root", "split", "transform")  # dataset arguments that are not `DatasetConfig.options`


def dataset_options(spec: DatasetConfig, where: str) -> dict[str, Any]:
    """``spec.options`` checked against the keyword arguments of its dataset class (``tqdm_core.data.DATASETS``).

    An option that takes a list of strings also takes a bare string, as a list of one (``sequences=0016E5``:
    iterating the string would select recordings named by single characters).

    Args:
        spec: the dataset; an unknown name is left to ``build_dataset``, which lists the registered ones.
        where: the config path of ``spec`` in messages (``train_dataset``).

    Raises:
        ValueError: an option the dataset does not take (the message lists those it takes), or a value of the
            wrong type in a list of strings.
    """
    dataset_class = DATASETS.get(spec.name)
    if dataset_class is None:
        return dict(spec.options)
    parameters = inspect.signature(dataset_class).parameters
    valid = sorted(name for name, parameter in parameters.items() if name not in NOT_DATASET_OPTIONS
                   and parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY))
    unknown = sorted(set(spec.options) - set(valid))
    if unknown and not any(parameter.kind is parameter.VAR_KEYWORD for parameter in parameters.values()):
        takes = f"the options it takes: {valid}" if valid else "it takes no options"
        raise ValueError(f"'{where}.options' sets {unknown}, which dataset '{spec.name}' does not take; {takes}")
    hints = typing.get_type_hints(dataset_class.__init__)
    options = dict(spec.options)
    for name, value in options.items():
        if value is not None and _is_list_of_strings(hints.get(name)):
            options[name] = _convert(list[str], value, f"{where}.options.{name}")
    return options


def _is_list_of_strings(hint: Any) -> bool:
    """Whether a type hint is a list, tuple or sequence of strings, or one of them or None."""
    arguments = [argument for argument in typing.get_args(hint) if argument is not type(None)]
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and len(arguments) == 1:
        hint = arguments[0]
    return (typing.get_origin(hint) in (list, tuple, collections.abc.Sequence)
            and typing.get_args(hint) in ((str,), (str, Ellipsis)))


def _parse_yaml(text: str, where: str) -> Any:
    """``yaml.safe_load`` whose syntax errors are one line naming ``where`` and the line and column."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        position = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ValueError(f"{where} is not valid YAML: {problem}{position}; fix the syntax (quote values that hold "
                         f"YAML punctuation such as ': ', '[' or '{{')") from error


def changed_fields(before: dict[str, Any], after: dict[str, Any], prefix: str = "") -> dict[str, list[Any]]:
    """Dotted paths whose value differs between two plain config dicts: ``{"optimizer.lr": [old, new]}``.

    Paths missing from ``before`` (fields added to the config since it was written) are not changes.
    """
    changes: dict[str, list[Any]] = {}
    for key, new in after.items():
        if key not in before:
            continue
        old, path = before[key], f"{prefix}{key}"
        if isinstance(old, dict) and isinstance(new, dict) and old and new:
            changes.update(changed_fields(old, new, f"{path}."))
        elif old != new:
            changes[path] = [old, new]
    return changes


def _renamed_fields(data: dict[str, Any], where: str) -> dict[str, Any]:
    """Top-level fields under their current names; a deprecated name is accepted with a warning."""
    renamed = dict(data)
    for old, new in DEPRECATED_FIELDS.items():
        if old not in renamed:
            continue
        if new in renamed and renamed[new] != renamed[old]:
            raise ValueError(f"{where} sets both '{new}' ({renamed[new]!r}) and its deprecated name '{old}' "
                             f"({renamed[old]!r}); keep only '{new}'")
        logger.warning("%s: field '%s' is deprecated, use '%s'", where, old, new)
        renamed[new] = renamed.pop(old)
    return renamed


def hold_out(config: TrainConfig) -> TrainConfig:
    """Train on every recording of the training dataset but ``config.hold_out_sequence``, validate on that one.

    Idempotent, so a run's saved config.yaml loads to the same datasets. The validation set is the training
    dataset's own split restricted to the held-out recording (its frames never reach the training stream).
    """
    sequence = config.hold_out_sequence
    train = config.train_dataset
    excluded = sorted(set(train.options.get("exclude_sequences") or ()) | {sequence})
    config.train_dataset = dataclasses.replace(train, options={**train.options, "exclude_sequences": excluded})
    validation_options = {key: value for key, value in train.options.items() if key != "exclude_sequences"}
    config.validation.dataset = DatasetConfig(name=train.name, root=train.root, split=train.split,
                                              options={**validation_options, "sequences": [sequence]})
    return config


def _set_path(data: dict[str, Any], keys: list[str], value: Any) -> None:
    for key in keys[:-1]:
        data = data.setdefault(key, {})
        if not isinstance(data, dict):
            raise ValueError(f"override path '{'.'.join(keys)}' goes through '{key}', which is not a mapping")
    data[keys[-1]] = value


def _build(cls: type, data: Any, where: str) -> Any:
    """Rebuild dataclass ``cls`` from a dict, checking field names and simple types."""
    if not isinstance(data, dict):
        raise ValueError(f"'{where or 'config'}' must be a mapping of {cls.__name__} fields, got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ValueError(f"unknown field(s) {unknown} in '{where or 'config'}' ({cls.__name__}); "
                         f"valid fields: {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    return cls(**{name: _convert(hints[name], value, f"{where}{name}") for name, value in data.items()})


def _convert(hint: Any, value: Any, where: str) -> Any:
    """Check ``value`` against the type hint; build nested dataclasses; lists become tuples for tuple fields; a
    bare string is a list of one for list-of-strings fields."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in (o for o in options if o is not type(None)):
            try:
                return _convert(option, value, where)
            except ValueError as error:
                errors.append(str(error))
        raise ValueError(errors[0])
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, f"{where}.")
    arguments = typing.get_args(hint)
    if isinstance(value, str) and _is_list_of_strings(hint):
        value = [value]  # a bare name on the command line (class_paste.classes=sign-symbol) is a list of one
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"'{where}' must be a list, got {value!r}")
        item_types = [arguments[0]] * len(value) if len(arguments) == 2 and arguments[1] is Ellipsis else arguments
        if len(item_types) != len(value):
            raise ValueError(f"'{where}' must have {len(item_types)} entries, got {list(value)}")
        return tuple(_convert(t, v, f"{where}[{i}]") for i, (t, v) in enumerate(zip(item_types, value)))
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"'{where}' must be a list, got {value!r}")
        return [_convert(arguments[0], item, f"{where}[{index}]") for index, item in enumerate(value)]
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise ValueError(f"'{where}' must be a mapping, got {value!r}")
        return dict(value)
    if hint is float and not isinstance(value, bool):
        # PyYAML reads "1e-5" (no dot) as a string, so numeric strings are accepted for float fields.
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ValueError(f"'{where}' must be a number, got {value!r}") from None
    if hint in (int, float, str, bool):
        if hint is str and isinstance(value, (int, float)) and not isinstance(value, bool):
            raise ValueError(f"'{where}' must be a string, got the number {value!r}; quote it ('{value}') if it is "
                             f"a name")
        if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
            raise ValueError(f"'{where}' must be {hint.__name__}, got {value!r}")
        return value
    return value
