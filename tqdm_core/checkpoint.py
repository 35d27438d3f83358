"""tqdm checkpoints: one file holding the preset, config, class table, weights and metadata.

Files are written atomically (temporary file, then rename) with the usual permissions (0644 under the common
umask 022), and read with `torch.load(weights_only=True)`, so a checkpoint can never execute code. Reading maps
the file into memory: the preset is checked before any weight is read or any module is built. Every failure says
what was expected, what was found and what to do.
"""
from __future__ import annotations

import math
import os
import pickle
import re
import uuid
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Callable, Mapping

import torch

from tqdm_core.classes import ClassTable
from tqdm_core.config import TqdmConfig
from tqdm_core.default_model import resolve_checkpoint

CHECKPOINT_FORMAT = "tqdm_core.checkpoint.v1"

# Metadata keys that code reads or writes; any other key is kept as written (`CheckpointMetadata.extra`).
INFERENCE_SCALE = "inference_scale"  # input resize factor the model expects: the Predictor's default scale for it
VALIDATION = "validation"  # scores on the validation set (miou, pixel_accuracy, iou per class, ...)
TRAINING_COMMAND = "training_command"  # the command that trained the model
LICENSE = "license"  # license of the weights (follows the training data)
SOURCE_CHECKPOINT = "source_checkpoint"  # file name of the checkpoint a packaged model was made from


# How torch's legacy (pre-zip) format begins: a pickled magic number, 10 bytes little-endian after the opcodes.
_LEGACY_TORCH_MAGIC = torch.serialization.MAGIC_NUMBER.to_bytes(10, "little")
# File signatures of what is most often passed by mistake, for naming it.
_SIGNATURES = ((b"\x89PNG\r\n\x1a\n", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"), (b"GIF8", "a GIF image"),
               (b"\x1f\x8b", "a gzip archive (unpack it first?)"), (b"%PDF", "a PDF document"))
# Terminal colour codes: torch's safe-loader message bolds words with them; quoted in a one-line error they are noise.
_ANSI_CODES = re.compile(r"\x1b\[[0-9;]*m")


class CheckpointError(RuntimeError):
    """A checkpoint file is corrupt, of another kind, or does not fit the requested model."""


@dataclass(frozen=True)
class CheckpointMetadata:
    """What a checkpoint says about its model besides the weights.

    Attributes:
        inference_scale: input resize factor the model expects (0.5 for a model trained on half-size crops), used
            by the Predictor unless told otherwise; None: full resolution.
        validation: the model's scores on its validation set, as the trainer or `training.package_model` wrote
            them (fractions in [0, 1]); None when not recorded.
        training_command: the command that trained the model, or None.
        license: license of the weights, or None.
        source_checkpoint: file name of the checkpoint a packaged model was made from, or None.
        extra: every other key, as written (training config, conversion report, notes).
    """

    inference_scale: float | None = None
    validation: dict[str, Any] | None = None
    training_command: str | None = None
    license: str | None = None
    source_checkpoint: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, path: str | os.PathLike = "checkpoint") -> "CheckpointMetadata":
        """Read the metadata dict of a checkpoint.

        Raises:
            CheckpointError: a known key holds a value of the wrong kind.
        """
        known = {INFERENCE_SCALE, VALIDATION, TRAINING_COMMAND, LICENSE, SOURCE_CHECKPOINT}
        scale = data.get(INFERENCE_SCALE)
        if scale is not None and (isinstance(scale, bool) or not isinstance(scale, (int, float))
                                  or not math.isfinite(scale) or scale <= 0):
            raise CheckpointError(f"checkpoint '{path}': metadata '{INFERENCE_SCALE}' must be a positive number, "
                                  f"found {scale!r}; the file was edited or mis-written")
        return cls(inference_scale=None if scale is None else float(scale), validation=data.get(VALIDATION),
                   training_command=data.get(TRAINING_COMMAND), license=data.get(LICENSE),
                   source_checkpoint=data.get(SOURCE_CHECKPOINT),
                   extra={key: value for key, value in data.items() if key not in known})

    def to_dict(self) -> dict[str, Any]:
        """The dict stored in the file: the known keys that are set, then `extra`."""
        known = {INFERENCE_SCALE: self.inference_scale, VALIDATION: self.validation,
                 TRAINING_COMMAND: self.training_command, LICENSE: self.license,
                 SOURCE_CHECKPOINT: self.source_checkpoint}
        return {**{key: value for key, value in known.items() if value is not None}, **self.extra}


@dataclass(frozen=True, eq=False)
class Checkpoint:
    """A model rebuilt from a checkpoint file, with what the file says about it.

    Attributes:
        model: the TqdmSegmentor (CPU, eval mode, fp32) with its `preset`, `config` and `class_table`.
        metadata: the file's metadata.
        path: the file it was read from.
    """

    model: torch.nn.Module
    metadata: CheckpointMetadata
    path: Path


def save_checkpoint(model: torch.nn.Module, path: str | os.PathLike, *,
                    metadata: CheckpointMetadata | Mapping[str, Any] | None = None, half: bool = False) -> Path:
    """Write `model` with everything needed to rebuild it.

    Args:
        model: a TqdmSegmentor built by `create_model` (it carries `preset`, `config` and `class_table`).
        path: destination file; its parent folder is created.
        metadata: what to record about the model (`CheckpointMetadata`, or a plain dict using the key constants
            of this module and any other JSON-like entries).
        half: store floating-point weights as fp16 (halves the size; loading casts back to fp32).
    """
    if isinstance(metadata, CheckpointMetadata):
        metadata = metadata.to_dict()
    state = {k: (v.half() if half and v.is_floating_point() else v).detach().cpu().contiguous()
             for k, v in model.state_dict().items()}
    payload = {
        "format": CHECKPOINT_FORMAT,
        "preset": model.preset,
        "config": model.config.to_dict(),
        "class_table": model.class_table.to_dict(),
        "state_dict": state,
        "metadata": dict(metadata or {}),
    }
    return atomic_torch_save(payload, path)


def atomic_torch_save(payload: Any, path: str | os.PathLike) -> Path:
    """torch.save to a temporary file in the same folder, then rename: a crash never leaves a partial file.

    The file gets the permissions of any new file (0666 minus the umask, 0644 usually), so a node running as
    another user can read it.
    """
    return atomic_write(path, lambda stream: torch.save(payload, stream))


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> Path:
    """Call ``write`` on a temporary file in the same folder, fsync, then rename it to ``path``: a crash leaves the
    old file or the new one, never an empty or partial one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    try:
        with open(temporary, "xb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path


def read_checkpoint_file(path: str | os.PathLike) -> Any:
    """The one safe `torch.load` of checkpoint files (model files and training checkpoints alike).

    Tensors are memory-mapped: they are read from disk only when used.

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: truncated or corrupt file, one that is not a PyTorch file (named: an image, a web page...),
            or one holding Python objects.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint '{path}' does not exist")
    looks_like = non_checkpoint_kind(path)
    if looks_like is not None:
        raise CheckpointError(f"'{path}' is not a checkpoint: it is {looks_like}; expected a file written by "
                              f"tqdm_core.save_checkpoint or the trainer (.pt)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except PermissionError:
        raise
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError) as error:
        if isinstance(error, pickle.UnpicklingError) and "weights only load failed" in str(error).lower():
            raise CheckpointError(
                f"'{path}' holds Python objects that the safe loader refuses ({error_summary(error).splitlines()[0]}):"
                f" it was not written by tqdm_core.save_checkpoint or the trainer; for an official tqdm .pth file "
                f"use python -m training.convert_official") from error
        raise CheckpointError(
            f"checkpoint '{path}' is truncated or corrupt ({error_summary(error)}); copy or download it again") from error
    damaged = damaged_record(path)
    if damaged is not None:
        raise CheckpointError(f"checkpoint '{path}' is corrupt: its record '{damaged}' fails its CRC-32 check (the "
                              f"file changed after it was written); copy or download it again")
    return payload


def non_checkpoint_kind(path: Path) -> str | None:
    """What `path` looks like when it is not a file torch.save writes (zip archive or legacy pickle); None if it is one.

    A zip archive cut short (no central directory) counts as a checkpoint here: torch.load then names it truncated.
    """
    with open(path, "rb") as stream:
        head = stream.read(512)
    if head.startswith(b"PK\x03\x04"):
        if not zipfile.is_zipfile(path):
            return None
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
        if any(name == "data.pkl" or name.endswith("/data.pkl") for name in names):
            return None
        return f"a zip archive without the data.pkl record of torch.save (it holds {len(names)} files: {names[:3]})"
    if head.startswith(b"\x80") and _LEGACY_TORCH_MAGIC in head[:32]:
        return None
    if not head:
        return "an empty file"
    for signature, kind in _SIGNATURES:
        if head.startswith(signature):
            return kind
    if head.startswith(b"\x80"):
        return "a Python pickle that torch.save did not write"
    text = head.decode("utf-8", errors="replace")
    if "\x00" in text or text.count("\ufffd") > 3:
        return f"binary data of an unknown kind (first bytes {head[:8].hex(' ')})"
    if "<html" in text.lower() or text.lstrip().lower().startswith("<!doctype html"):
        return "an HTML page (a download link that answered with a web page, e.g. a sign-in or quota page)"
    first_line = (text.strip().splitlines() or [""])[0]
    return f"a text file (first line {first_line[:60]!r})"


def error_summary(error: BaseException, limit: int = 200) -> str:
    """``Type: message`` of an exception for a one-line error: colour codes removed, cut at ``limit`` characters."""
    return f"{type(error).__name__}: {_ANSI_CODES.sub('', str(error))[:limit]}"


def damaged_record(path: str | os.PathLike) -> str | None:
    """The first record of a checkpoint (a zip archive, as torch.save writes) whose data fail their CRC-32, or None.

    ``torch.load`` does not check the CRCs, so a damaged block inside a tensor would load silently as wrong
    weights; this reads the whole file once (about a second for the 1.2 GB EVA02-L files). Files in torch's
    legacy (non-zip) format have no CRCs: None.
    """
    if not zipfile.is_zipfile(path):
        return None
    with zipfile.ZipFile(path) as archive:
        return archive.testzip()


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load and validate a model checkpoint's contents (no model is built).

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: truncated or corrupt file, or not a tqdm_core checkpoint.
    """
    return _checked_payload(read_checkpoint_file(path), Path(path))


def load_checkpoint(path: str | os.PathLike | None = None, *, preset: str | None = None) -> Checkpoint:
    """Rebuild the model stored in a checkpoint file (CPU, eval mode, fp32).

    Args:
        path: a file written by `save_checkpoint`; None or "default": the model shipped in the package.
        preset: if given, the preset the caller expects; a checkpoint of another preset is an error, raised
            before any module is built.
    """
    path = resolve_checkpoint(path)
    return build_checkpoint(read_checkpoint_file(path), path=path, preset=preset)


def build_checkpoint(payload: Any, *, path: str | os.PathLike, preset: str | None = None) -> Checkpoint:
    """Rebuild the model of a payload read by `read_checkpoint_file` (see `load_checkpoint`).

    Raises:
        CheckpointError: not a tqdm_core checkpoint, another preset than `preset`, or weights that do not fit.
    """
    from tqdm_core.builder import create_model  # the builder imports the modeling stack; keep this module light

    path = Path(path)
    payload = _checked_payload(payload, path)
    if preset is not None and payload["preset"] != preset:
        raise CheckpointError(f"checkpoint '{path}' was saved for preset '{payload['preset']}' but preset "
                              f"'{preset}' was requested; request preset '{payload['preset']}' (or none)")
    metadata = CheckpointMetadata.from_dict(payload.get("metadata", {}), path=path)
    config = TqdmConfig.from_dict(payload["config"])
    model = create_model(payload["preset"], pretrained=None, config=config)
    stored_table = ClassTable.from_dict(payload["class_table"])
    if stored_table.names != model.class_table.names:
        raise CheckpointError(f"checkpoint '{path}': stored class table {stored_table.names} does not match its "
                              f"config's {model.class_table.names}; the file was edited or mis-written")
    model.class_table = stored_table
    state = payload["state_dict"]
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(f"checkpoint '{path}' does not fit preset '{payload['preset']}': "
                              f"{len(missing)} missing keys {missing[:5]}, {len(unexpected)} unexpected keys "
                              f"{unexpected[:5]}; it was saved by an incompatible version or edited")
    mismatched = [f"{k}: {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
                  if tuple(state[k].shape) != tuple(v.shape)]
    if mismatched:
        raise CheckpointError(f"checkpoint '{path}': shape mismatches (file vs model) {mismatched[:5]}")
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()}, strict=True)
    return Checkpoint(model=model.eval(), metadata=metadata, path=path)


def _checked_payload(payload: Any, path: Path) -> dict[str, Any]:
    """Return `payload` if it is a tqdm_core checkpoint; name what it is otherwise."""
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        if isinstance(payload, dict) and "state_dict" in payload and "meta" in payload:
            raise CheckpointError(f"'{path}' looks like an official mmsegmentation tqdm checkpoint; convert it "
                                  f"first: python -m training.convert_official {path} OUTPUT.pt")
        keys = sorted(payload)[:6] if isinstance(payload, dict) else type(payload).__name__
        raise CheckpointError(f"'{path}' is not a tqdm_core checkpoint (expected format '{CHECKPOINT_FORMAT}', "
                              f"found {keys}); save models with tqdm_core.save_checkpoint")
    return payload
