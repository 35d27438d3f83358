"""tqdm checkpoints: one file holding the preset, config, class table and weights.

Files are written atomically (temporary file, then rename) and read with `torch.load(weights_only=True)`, so a
checkpoint can never execute code. Every failure says what was expected, what was found and what to do.
"""
from __future__ import annotations

import os
import pickle
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch

from tqdm_core.classes import ClassTable
from tqdm_core.config import TqdmConfig

CHECKPOINT_FORMAT = "tqdm_core.checkpoint.v1"


class CheckpointError(RuntimeError):
    """A checkpoint file is corrupt, of another kind, or does not fit the requested model."""


def save_checkpoint(model: torch.nn.Module, path: str | os.PathLike, *, metadata: dict[str, Any] | None = None,
                    half: bool = False) -> Path:
    """Write `model` with everything needed to rebuild it.

    Args:
        model: a TqdmSegmentor built by `create_model` (it carries `preset`, `config` and `class_table`).
        path: destination file; its parent folder is created.
        metadata: extra JSON-like information (training command, metrics, ...).
        half: store floating-point weights as fp16 (halves the size; loading casts back to fp32).
    """
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
    """torch.save to a temporary file in the same folder, then rename: a crash never leaves a partial file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            torch.save(payload, stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load and validate a checkpoint file's contents (no model is built).

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: truncated or corrupt file, or not a tqdm_core checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint '{path}' does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError) as error:
        raise CheckpointError(
            f"checkpoint '{path}' is truncated or corrupt ({type(error).__name__}: {str(error)[:200]}); "
            f"copy or download it again") from error
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        if isinstance(payload, dict) and "state_dict" in payload and "meta" in payload:
            raise CheckpointError(f"'{path}' looks like an official mmsegmentation tqdm checkpoint; convert it "
                                  f"first: python -m training.convert_official {path} OUTPUT.pt")
        keys = sorted(payload)[:6] if isinstance(payload, dict) else type(payload).__name__
        raise CheckpointError(f"'{path}' is not a tqdm_core checkpoint (expected format '{CHECKPOINT_FORMAT}', "
                              f"found {keys}); save models with tqdm_core.save_checkpoint")
    return payload


def load_checkpoint(path: str | os.PathLike | None = None, *, preset: str | None = None) -> torch.nn.Module:
    """Rebuild the model stored in `path` (CPU, eval mode, fp32).

    Args:
        path: a file written by `save_checkpoint`; None loads the default model shipped in the package.
        preset: if given, the preset the caller expects; a checkpoint of another preset is an error.
    """
    from tqdm_core.builder import create_model  # the builder imports the modeling stack; keep this module light

    if path is None:
        from tqdm_core.default_model import default_checkpoint

        path = default_checkpoint()
    payload = read_checkpoint(path)
    if preset is not None and payload["preset"] != preset:
        raise CheckpointError(f"checkpoint '{path}' was saved for preset '{payload['preset']}' but preset "
                              f"'{preset}' was requested; pass --model {payload['preset']} (or no preset)")
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
    model.checkpoint_metadata = payload.get("metadata", {})
    return model.eval()
