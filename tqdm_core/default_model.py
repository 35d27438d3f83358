"""The model shipped inside the package: what "default" (or no checkpoint) means everywhere.

It is `tqdm-small-rn` trained from scratch on CamVid (11 classes) on a 2-core CPU; its model card
(`weights/MODEL_CARD.md`) gives the recipe, numbers and caveats.
"""
from __future__ import annotations

import os
from pathlib import Path

DEFAULT_CHECKPOINT = Path(__file__).resolve().parent / "weights" / "tqdm_small_rn_camvid_fullres.pt"
MODEL_CARD = DEFAULT_CHECKPOINT.parent / "MODEL_CARD.md"
DEFAULT = "default"  # the name front ends accept for the shipped model (node parameter, command lines)


def default_checkpoint() -> Path:
    """Path of the shipped default checkpoint.

    Raises:
        FileNotFoundError: the installation lacks it (e.g. a package built without its data files).
    """
    if not DEFAULT_CHECKPOINT.is_file():
        raise FileNotFoundError(f"the default model {DEFAULT_CHECKPOINT} is missing from this installation; "
                                f"reinstall tqdm_ros (pip install .) or pass a checkpoint path explicitly")
    return DEFAULT_CHECKPOINT


def resolve_checkpoint(checkpoint: str | os.PathLike | None) -> Path:
    """The file a checkpoint argument names: None or "default" is the shipped model, anything else a path.

    A leading ``~`` is the home folder: a ROS parameter (``checkpoint:=~/model.pt``) reaches the node unexpanded.

    Raises:
        FileNotFoundError: the default model is missing from the installation.
    """
    if checkpoint is None or (isinstance(checkpoint, str) and checkpoint == DEFAULT):
        return default_checkpoint()
    return Path(checkpoint).expanduser()
