"""The model shipped inside the package: used by the Predictor, the node and the demo when no checkpoint is given.

It is `tqdm-small-rn` trained from scratch on CamVid (11 classes) on a 2-core CPU; its model card
(`weights/MODEL_CARD.md`) gives the recipe, numbers and caveats.
"""
from __future__ import annotations

from pathlib import Path

DEFAULT_CHECKPOINT = Path(__file__).resolve().parent / "weights" / "tqdm_small_rn_camvid.pt"
MODEL_CARD = DEFAULT_CHECKPOINT.parent / "MODEL_CARD.md"


def default_checkpoint() -> Path:
    """Path of the shipped default checkpoint.

    Raises:
        FileNotFoundError: the installation lacks it (e.g. a package built without its data files).
    """
    if not DEFAULT_CHECKPOINT.is_file():
        raise FileNotFoundError(f"the default model {DEFAULT_CHECKPOINT} is missing from this installation; "
                                f"reinstall tqdm_ros (pip install .) or pass a checkpoint path explicitly")
    return DEFAULT_CHECKPOINT
