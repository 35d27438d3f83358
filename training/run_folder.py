"""The files of a training run folder, and their repair after a crash.

A run folder holds ``config.yaml``, ``log.jsonl``, ``checkpoints/iter_<iteration>.pt`` and, at the end,
``model_final.pt`` (with ``ema_decay``, also ``model_final_raw.pt``). Files are replaced atomically (written to a
temporary file, then renamed), so a crash leaves only two kinds of debris, both repaired here when a run starts or resumes (under the folder's lock,
``training.run_lock``, so no live process is writing them):

- temporary files of a write that never finished (``checkpoints/.iter_*.pt.*.tmp``: as large as a checkpoint);
- a torn last line in ``log.jsonl``, the only file written by appending (full disk, power loss).

A checkpoint can still be unreadable (a file system that lost its data, a partial copy, a flipped bit): the trainer
checks the one it resumes from, down to the CRC-32 of every record (``tqdm_core.checkpoint.read_checkpoint_file``
checks them for every reader), and sets unreadable ones aside as ``*.corrupt`` (``set_aside``).
"""
from __future__ import annotations

import difflib
import json
import logging
import os
from pathlib import Path

from tqdm_core.checkpoint import atomic_write

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.yaml"
LOG_FILE = "log.jsonl"
CHECKPOINT_FOLDER = "checkpoints"
FINAL_MODEL = "model_final.pt"
FINAL_RAW_MODEL = "model_final_raw.pt"  # with ema_decay: the last trained weights (model_final.pt holds the average)
RCS_CACHE = "rcs_class_pixels.json"
# Temporary files of the atomic writes: tqdm_core.checkpoint.atomic_write ('.<name>.<random>.tmp': checkpoints, the
# config and the log rewrite of truncate_log; '.log.jsonl.tmp' from older versions) and the rare-class statistics
# cache ('<name>.<pid>.tmp').
TEMPORARY_PATTERNS = (f"{CHECKPOINT_FOLDER}/.iter_*.pt.*.tmp", f".{FINAL_MODEL}.*.tmp", f".{FINAL_RAW_MODEL}.*.tmp",
                      f".{LOG_FILE}.tmp", f".{LOG_FILE}.*.tmp", f"{RCS_CACHE}.*.tmp",
                      f".{CONFIG_FILE}.*.tmp")


def checkpoint_path(folder: str | os.PathLike, iteration: int) -> Path:
    """``<folder>/checkpoints/iter_<iteration, 7 digits>.pt``."""
    return Path(folder, CHECKPOINT_FOLDER, f"iter_{iteration:07d}.pt")


def list_checkpoints(folder: str | os.PathLike) -> list[Path]:
    """The resumable checkpoints of a run folder, oldest first."""
    return sorted(Path(folder, CHECKPOINT_FOLDER).glob("iter_*.pt"))


def holds_run(folder: str | os.PathLike) -> bool:
    """Whether a run was ever started in ``folder`` (it has a config, a log or a checkpoint folder)."""
    folder = Path(folder)
    return any((folder / name).exists() for name in (CONFIG_FILE, LOG_FILE, CHECKPOINT_FOLDER))


def no_run_message(folder: str | os.PathLike) -> str:
    """Why ``folder`` cannot be resumed, and the run folders next to it whose names are close (typos)."""
    folder = Path(folder)
    state = "does not exist" if not folder.exists() else "holds no run (no config.yaml, log.jsonl or checkpoints)"
    message = f"nothing to resume: run folder '{folder}' {state}"
    parent = folder.parent
    if parent.is_dir():
        runs = [entry.name for entry in parent.iterdir() if entry.is_dir() and holds_run(entry)]
        close = difflib.get_close_matches(folder.name, runs, n=3, cutoff=0.6)
        if close:
            message += f" (did you mean {' or '.join(repr(str(parent / name)) for name in close)}?)"
    return message


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files that interrupted atomic writes left in a run folder; returns them.

    Only call it while holding the folder's lock: then no live process is writing them.
    """
    folder = Path(folder)
    stale = sorted(path for pattern in TEMPORARY_PATTERNS for path in folder.glob(pattern) if path.is_file())
    if stale:
        size = sum(path.stat().st_size for path in stale)
        logger.warning("run folder '%s': removing %d temporary file(s) of interrupted writes (%.1f MB): %s", folder,
                       len(stale), size / 1e6, ", ".join(str(path.relative_to(folder)) for path in stale))
        for path in stale:
            path.unlink()
    return stale


def set_aside(path: Path) -> Path:
    """Rename an unreadable checkpoint to ``<name>.corrupt`` (hidden from ``list_checkpoints``); returns that path."""
    corrupt = path.with_name(f"{path.name}.corrupt")
    os.replace(path, corrupt)
    return corrupt


def truncate_log(folder: str | os.PathLike, iteration: int) -> None:
    """Keep the lines of ``log.jsonl`` up to ``iteration`` (a killed run may have logged past its last checkpoint).

    A torn last line (full disk, power loss: partial JSON or NUL bytes) is dropped with a warning; an unreadable
    line before the last one is an error, as the log was then damaged otherwise.

    Raises:
        ValueError: a line other than the last is not a JSON record; the message names the file and line.
    """
    path = Path(folder, LOG_FILE)
    if not path.exists():
        return
    kept = []
    lines = path.read_bytes().split(b"\n") if iteration > 0 else []
    last = max((index for index, line in enumerate(lines) if line.strip()), default=-1)
    for index, line in enumerate(lines[:last + 1]):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            if index < last:
                raise ValueError(f"line {index + 1} of '{path}' is not a JSON record ({line[:80]!r}); repair or "
                                 f"remove that line, then resume again") from None
            logger.warning("'%s': dropping its torn last line (%d bytes: %r), written when the previous run "
                           "stopped", path, len(line), line[:80])
            continue
        if record["iteration"] <= iteration:
            kept.append(line.decode() + "\n")
    atomic_write(path, lambda stream: stream.write("".join(kept).encode()))
