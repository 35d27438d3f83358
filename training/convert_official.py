"""Convert an official tqdm checkpoint (mmsegmentation `.pth`) into a tqdm_core checkpoint.

    python -m training.convert_official tqdm_eva02_clip_vit_l_gta.pth tqdm-eva02-l14-gta.pt
    python -m training.convert_official OFFICIAL.pth OUT.pt --preset tqdm-clip-vit-b16

The backbone kind (tqdm_CLIP: "vit", tqdm_EVA_CLIP: "eva") is detected from the keys; `--preset auto` then takes
the preset of the released checkpoints of that kind, and `--preset NAME` any preset of that kind whose sizes fit
the file (e.g. tqdm-clip-vit-tiny-official for the tiny parity fixture). Every official tensor is mapped exactly
once or dropped for a stated reason (EVA's RoPE tables, the text causal mask); anything else stops the conversion
with the offending keys. The output holds the preset, its config with every official quirk ON (CLIP towers with
QuickGELU, as the official code hard-codes), the Cityscapes-19 class table and the weights, written atomically;
load it with `tqdm_core.load_checkpoint` or `Predictor.from_checkpoint`. No CLIP weights are needed.

The frozen teacher of the vision regularizer (`reg_E0`: the pretrained backbone the official model was built
from, about a third of the file; 318 M values for EVA02-L) is dropped by default: inference never uses it, and a
file for a robot should not carry it into memory. `--keep-teacher` keeps it, in the backbone's keys, in the
metadata entry `tqdm_core.official_keys.TEACHER_METADATA`: `training.trainer.checkpoint_teacher` builds the teacher
from it, so the vision regularization loss of the converted model is the official one (a copy of the converted
backbone would be the fine-tuned student, whose loss is 0). Keep it to compare losses with the official code or to
fine-tune a converted model with the official regularizer.

The file is checked before anything is converted: a file that is not a PyTorch checkpoint (an HTML page from a failed
download, an image) is named as such, and every record's CRC-32 is verified (torch.load does not check them, so a
damaged block would otherwise convert into silently wrong weights). Mistakes print one line and exit with code 2;
--debug shows the traceback.
"""
from __future__ import annotations

import argparse
import pickle
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from tqdm_core import CheckpointError, create_model, save_checkpoint
from tqdm_core.checkpoint import damaged_record, error_summary, non_checkpoint_kind
from tqdm_core.official_keys import (OFFICIAL_CONFIG_OVERRIDES, OFFICIAL_MODELS, RELEASED_PRESETS, TEACHER_METADATA,
                                     TEACHER_PREFIX, convert_official_state_dict, detect_official_kind,
                                     official_presets, official_state_dict)
from tqdm_core.presets import get_preset
from training.user_errors import user_errors_exit

PROGRAM = "python -m training.convert_official"

# Scalar fields of mmcv's checkpoint `meta` worth keeping as provenance (the training config text included).
_META_FIELDS = ("mmcv_version", "time", "iter", "epoch", "seed", "exp_name", "config")
# Where the official checkpoints are downloaded from.
_OFFICIAL_LINKS = "the links in the official README (github.com/ByeongHyunPak/tqdm, section Checkpoints)"


@dataclass
class ConversionSummary:
    """What a conversion did (printed as the one-screen summary)."""

    source: Path
    output: Path
    official_model: str
    preset: str
    mapped_tensors: int
    mapped_values: int
    teacher: tuple[int, int]  # (tensors, values) of the frozen teacher in the file; (0, 0): it holds none
    teacher_kept: bool
    dropped: dict[str, tuple[int, int]]  # reason -> (tensors, values)
    official_iteration: int | None
    seconds: float

    def report(self) -> str:
        lines = [f"converted {self.source} ({self.official_model}) -> {self.output}",
                 f"  preset {self.preset}, official quirks on, classes cityscapes19"
                 + (f", trained {self.official_iteration} iterations" if self.official_iteration else ""),
                 f"  mapped  {self.mapped_tensors:5d} tensors {self.mapped_values / 1e6:8.1f} M values"]
        tensors, values = self.teacher
        if not tensors:
            lines.append(f"  teacher none: the file holds no {TEACHER_PREFIX}* (the vision regularizer has no teacher)")
        elif self.teacher_kept:
            lines.append(f"  teacher {tensors:5d} tensors {values / 1e6:8.1f} M values: the frozen {TEACHER_PREFIX}* "
                         f"(vision regularizer), in metadata '{TEACHER_METADATA}'")
        else:
            lines.append(f"  teacher {tensors:5d} tensors {values / 1e6:8.1f} M values dropped: the frozen "
                         f"{TEACHER_PREFIX}* is only for training losses (--keep-teacher keeps it)")
        lines += [f"  dropped {tensors:5d} tensors {values / 1e6:8.1f} M values: {reason}"
                  for reason, (tensors, values) in self.dropped.items()]
        lines.append(f"  {self.output.stat().st_size / 2 ** 20:.0f} MiB written in {self.seconds:.0f} s")
        return "\n".join(lines)


def read_official_checkpoint(path: str | Path, *,
                             allow_pickle: bool = False) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The state dict and the mmcv `meta` of an official checkpoint file.

    Zip-format files are memory-mapped, so tensors that are dropped (EVA's RoPE tables) are never read. By
    default the file is read with `weights_only=True`, which cannot execute code from the file.

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: not a PyTorch checkpoint, a record failing its CRC-32, truncated or corrupt file, Python
            objects a safe load refuses, or no state dict.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"official checkpoint '{path}' does not exist; download it from {_OFFICIAL_LINKS}")
    try:
        looks_like = non_checkpoint_kind(path)
        # Before torch.load: it does not check CRCs, so damaged weights would be read as they are.
        damaged = None if looks_like else damaged_record(path)
    except zipfile.BadZipFile as error:  # the archive's directory is damaged
        raise CheckpointError(f"'{path}' is truncated or corrupt (BadZipFile: {error}); download it again from "
                              f"{_OFFICIAL_LINKS}") from error
    if looks_like is not None:
        raise CheckpointError(f"'{path}' is not a PyTorch checkpoint: it is {looks_like}; expected the official .pth "
                              f"file (a zip archive written by torch.save); download it again from {_OFFICIAL_LINKS}")
    if damaged is not None:
        raise CheckpointError(f"'{path}' is corrupt: its record '{damaged}' fails its CRC-32 check (the file changed "
                              f"after it was written: a damaged download or disk); download it again from "
                              f"{_OFFICIAL_LINKS}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=not allow_pickle, mmap=zipfile.is_zipfile(path))
    except pickle.UnpicklingError as error:
        if not allow_pickle and "weights only load failed" in str(error).lower():
            raise CheckpointError(
                f"'{path}' stores Python objects that the safe loader refuses ({error_summary(error).splitlines()[0]}); "
                f"if you trust the file (downloaded from the official links), rerun with --allow-pickle") from error
        raise CheckpointError(f"'{path}' is truncated or corrupt ({error_summary(error)}); "
                              f"download it again") from error
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as error:
        raise CheckpointError(f"'{path}' is truncated or corrupt ({error_summary(error)}); "
                              f"download it again") from error
    meta = payload.get("meta") if isinstance(payload, dict) else None
    return official_state_dict(payload, source=str(path)), dict(meta) if isinstance(meta, dict) else {}


def convert_official_checkpoint(source: str | Path, output: str | Path, *, preset: str = "auto",
                                allow_pickle: bool = False, keep_teacher: bool = False) -> ConversionSummary:
    """Read an official checkpoint, map it onto the preset's model, check it loads strictly, save it.

    Args:
        source: the official `.pth` file.
        output: the tqdm_core checkpoint to write (atomically; its folder is created).
        preset: "auto" (the released preset of the file's backbone kind) or any preset of that kind (see
            `official_presets()`) whose sizes fit the file.
        allow_pickle: read the file with `weights_only=False` (executes code from the file: trusted files only).
        keep_teacher: store the official frozen teacher `reg_E0` in the metadata (for training losses; inference
            does not use it).
    """
    started = time.monotonic()
    source, output = Path(source), Path(output)
    if output.resolve() == source.resolve():
        raise ValueError(f"output '{output}' is the official checkpoint itself; choose another file name")
    if preset != "auto" and preset not in official_presets():
        raise ValueError(f"--preset must be 'auto' or one of {official_presets()}, got '{preset}'")
    state, meta = read_official_checkpoint(source, allow_pickle=allow_pickle)
    kind = detect_official_kind(state, source=str(source))
    preset = RELEASED_PRESETS[kind] if preset == "auto" else preset
    if get_preset(preset).backbone.kind != kind:
        matching = [name for name in official_presets() if get_preset(name).backbone.kind == kind]
        raise CheckpointError(f"'{source}' holds an official {OFFICIAL_MODELS[kind]} model, but preset '{preset}' "
                              f"has a '{get_preset(preset).backbone.kind}' backbone; pass --preset auto or one of "
                              f"{matching}")
    model = create_model(preset, pretrained=None, overrides=OFFICIAL_CONFIG_OVERRIDES[kind])
    conversion = convert_official_state_dict(state, model)
    model.load_state_dict(conversion.state_dict, strict=True)
    dropped = {reason: (len(keys), sum(state[key].numel() for key in keys))
               for reason, keys in conversion.dropped.items()}
    metadata = {
        "converted_from": source.name,
        "official_model": OFFICIAL_MODELS[kind],
        "official_meta": {k: meta[k] for k in _META_FIELDS if isinstance(meta.get(k), (str, int, float))},
        "dropped_official_tensors": {reason: tensors for reason, (tensors, _) in dropped.items()},
    }
    teacher = conversion.teacher_state_dict or {}
    if teacher and keep_teacher:
        metadata[TEACHER_METADATA] = teacher
    save_checkpoint(model.eval(), output, metadata=metadata)
    iteration = meta.get("iter")
    return ConversionSummary(source=source, output=output, official_model=OFFICIAL_MODELS[kind], preset=preset,
                             mapped_tensors=len(conversion.state_dict),
                             mapped_values=sum(t.numel() for t in conversion.state_dict.values()),
                             teacher=(len(teacher), sum(t.numel() for t in teacher.values())),
                             teacher_kept=keep_teacher, dropped=dropped,
                             official_iteration=iteration if isinstance(iteration, int) else None,
                             seconds=time.monotonic() - started)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROGRAM, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path, help="official checkpoint (.pth, mmsegmentation format)")
    parser.add_argument("output", type=Path, help="tqdm_core checkpoint to write (.pt)")
    parser.add_argument("--preset", default="auto", choices=["auto", *official_presets()],
                        help="preset to convert into: any preset of the file's backbone kind whose sizes fit "
                             "(default: the released preset of the kind detected from the keys)")
    parser.add_argument("--allow-pickle", action="store_true",
                        help="read the file with weights_only=False if the safe loader refuses it "
                             "(executes code from the file: only for files you trust)")
    parser.add_argument("--keep-teacher", action="store_true",
                        help="keep the official frozen teacher reg_E0 (a third of the file) for training losses: the "
                             "official vision regularization loss, fine-tuning; inference does not use it")
    parser.add_argument("--debug", action="store_true", help="show the traceback of errors")
    args = parser.parse_args(argv)
    with user_errors_exit(PROGRAM, debug=args.debug):
        try:
            summary = convert_official_checkpoint(args.source, args.output, preset=args.preset,
                                                  allow_pickle=args.allow_pickle, keep_teacher=args.keep_teacher)
        except OSError as error:  # a path that cannot be read or written (permissions, a folder): the error names it
            raise ValueError(str(error)) from error
    print(summary.report())
    return 0


if __name__ == "__main__":
    sys.exit(main())
