"""How a Predictor runs a model: one typed, validated options object for every front end.

The ROS node's parameters, the `tqdm-bag evaluate` and `training.evaluate` command lines, the benchmark and the
demo each map their own spelling onto `InferenceOptions` and hand it to `tqdm_core.inference.load_predictor`;
nothing else assembles the Predictor's arguments. The field names are the Predictor's argument names, the
choices are the Predictor's own constants, and the numeric ranges below are the only ones: front ends read them
for their own checks and descriptions (the node's parameter descriptors, `--help`), so a value a front end
accepts is a value the Predictor accepts.

What depends on the model or the machine stays with the Predictor: the window must be a multiple of the model's
size divisor (32 for every preset), and a CUDA device must exist.
"""
from __future__ import annotations

import dataclasses
import inspect
import math
import re
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tqdm_core.inference.predictor import ARGUMENT_RANGES, MODES, PRECISIONS, RUNTIMES, Predictor

DEVICE_PATTERN = re.compile(r"^(cpu|cuda(:\d+)?)$")
# Allowed values of the string options.
CHOICES: dict[str, tuple[str, ...]] = {"precision": tuple(PRECISIONS), "mode": MODES, "runtime": RUNTIMES}
# Inclusive ranges of the numeric options: the Predictor's own. `scale` may also be None (the checkpoint's
# recommendation).
RANGES: dict[str, tuple[float, float]] = ARGUMENT_RANGES


_PREDICTOR_DEFAULTS = {name: parameter.default
                       for name, parameter in inspect.signature(Predictor.__init__).parameters.items()}


class InvalidOption(ValueError):
    """An invalid inference option, worded in the option names of whichever front end set it.

    Args:
        option: the option's field name in `InferenceOptions`.
        rule: what the value must be; may name other options as ``{field}`` (rendered in the caller's names).
        value: the value found.
    """

    def __init__(self, option: str, rule: str, value: Any) -> None:
        self.option, self.rule, self.value = option, rule, value
        super().__init__(self.describe())

    def describe(self, names: Mapping[str, str] | None = None) -> str:
        """The message with every option called by its name in `names` (field name -> front-end name)."""
        spelled = _Spelling(names or {})
        return f"{spelled[self.option]} must be {self.rule.format_map(spelled)}, got {self.value!r}"


class _Spelling(dict):
    """Option field name -> quoted front-end name; names without an entry are quoted as they are."""

    def __init__(self, names: Mapping[str, str]) -> None:
        super().__init__()
        self.names = names

    def __missing__(self, option: str) -> str:
        return f"'{self.names.get(option, option)}'"


@dataclass(frozen=True)
class InferenceOptions:
    """How to run a model: the Predictor's keyword arguments and defaults, validated together on construction.

    Attributes:
        device: "cpu", "cuda" or "cuda:N".
        precision: autocast precision, one of `CHOICES["precision"]` ("fp16" needs CUDA).
        mode: "whole" (one pass over the padded image) or "slide" (windows, scores averaged).
        window: sliding-window size in pixels (paper: 512); a multiple of the model's size divisor.
        stride: sliding-window step in pixels (paper: 341), at most `window`.
        scale: resize factor of the model input (outputs stay at the input resolution); None: the factor the
            checkpoint recommends (its metadata `inference_scale`), 1.0 when it recommends none.
        confidence_threshold: pixels whose confidence is below it are labelled 255 (unlabeled).
        max_batch_size: images (whole) or windows (slide) per forward pass.
        compile: run the network through `torch.compile`.
        runtime: "torch", or "onnxruntime" (CPU, fp32, without compile).
        flip: also run each image mirrored left-right and average the scores (test-time augmentation, 2x time).
        reuse_memory: on the CPU, keep freed memory in the process (glibc) so large activations stop page-faulting
            on every call; process-wide.

    Raises:
        InvalidOption: on construction, for the first value out of its range or choices, or a combination the
            Predictor cannot run.
    """

    device: str = _PREDICTOR_DEFAULTS["device"]
    precision: str = _PREDICTOR_DEFAULTS["precision"]
    mode: str = _PREDICTOR_DEFAULTS["mode"]
    window: int = _PREDICTOR_DEFAULTS["window"]
    stride: int = _PREDICTOR_DEFAULTS["stride"]
    scale: float | None = None  # not the Predictor's 1.0: None defers to the checkpoint
    confidence_threshold: float = _PREDICTOR_DEFAULTS["confidence_threshold"]
    max_batch_size: int = _PREDICTOR_DEFAULTS["max_batch_size"]
    compile: bool = _PREDICTOR_DEFAULTS["compile"]
    runtime: str = _PREDICTOR_DEFAULTS["runtime"]
    flip: bool = _PREDICTOR_DEFAULTS["flip"]
    reuse_memory: bool = _PREDICTOR_DEFAULTS["reuse_memory"]

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            check_option(field.name, getattr(self, field.name))
        if not DEVICE_PATTERN.match(self.device):
            raise InvalidOption("device", "'cpu', 'cuda' or 'cuda:<index>'", self.device)
        if self.stride > self.window:
            raise InvalidOption("stride", "at most {window} " f"({self.window}): windows would leave gaps",
                                self.stride)
        if self.precision == "fp16" and self.device == "cpu":
            raise InvalidOption("precision", "'fp32' or 'bf16' on the CPU ('fp16' needs a CUDA {device})",
                                self.precision)
        # "auto" (where the Predictor defines it) resolves to fp32 for ONNX Runtime.
        if self.runtime == "onnxruntime" and (self.precision not in ("fp32", "auto") or self.device != "cpu"
                                              or self.compile):
            raise InvalidOption("runtime", "'torch' unless {precision} is 'fp32', {device} is 'cpu' and {compile} "
                                f"is off (found {self.precision}, {self.device}, compile {self.compile})",
                                self.runtime)

    def predictor_arguments(self, *, recommended_scale: float | None) -> dict[str, Any]:
        """The Predictor's keyword arguments, with `scale` resolved.

        Args:
            recommended_scale: the checkpoint's recommended input scale, or None (1.0).

        Raises:
            InvalidOption: `scale` is None and the recommended scale is outside `RANGES["scale"]`.
        """
        scale = self.scale
        if scale is None:
            scale = 1.0 if recommended_scale is None else recommended_scale
            check_option("scale", scale)
        return {**dataclasses.asdict(self), "scale": scale}


def check_option(option: str, value: Any) -> None:
    """Check one option's type, range or choices (not the rules that involve several options).

    Raises:
        InvalidOption: the value does not fit.
        KeyError: `option` is not a field of `InferenceOptions`.
    """
    kind, optional = _KINDS[option]
    if value is None and optional:
        return
    if kind is bool or kind is str:
        if type(value) is not kind:
            raise InvalidOption(option, "true or false" if kind is bool else "a string", value)
        if option in CHOICES and value not in CHOICES[option]:
            raise InvalidOption(option, "one of " + ", ".join(repr(c) for c in CHOICES[option]), value)
        return
    kinds = (int,) if kind is int else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not math.isfinite(value):
        raise InvalidOption(option, "an integer" if kind is int else "a finite number", value)
    low, high = RANGES[option]
    if not low <= value <= high:
        raise InvalidOption(option, f"in [{low}, {high}]", value)


def _kind(hint: Any) -> tuple[type, bool]:
    """(value type, None allowed) of a field annotation: `float | None` -> (float, True)."""
    arguments = typing.get_args(hint)
    return (next(a for a in arguments if a is not type(None)), True) if arguments else (hint, False)


_KINDS: dict[str, tuple[type, bool]] = {name: _kind(hint) for name, hint in
                                        typing.get_type_hints(InferenceOptions).items()}
