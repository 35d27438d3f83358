"""Any dataset stored as an image folder plus a label folder, paired by file stem.

For a user's own recordings: ``<root>/images[/<split>]/<name>.{png,jpg,jpeg}`` with
``<root>/labels[/<split>]/<name><label_suffix>.png`` (folder names and suffix are arguments). Labels hold either
train ids directly or ids mapped by ``id_to_train_id``.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from tqdm_core.classes import CITYSCAPES_19, ClassTable
from tqdm_core.data.base import SampleFiles, SegmentationDataset, Transform, list_files, missing_labels_error
from tqdm_core.data.label_mappings import identity_table, lookup_table

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


class ImageFolderDataset(SegmentationDataset):
    """Images and labels in two folders, matched by file stem.

    Args:
        root: dataset folder.
        split: optional sub-folder of both the image and the label folder (``None`` = no split folders).
        image_dir: image folder, relative to ``root`` (or absolute).
        label_dir: label folder, relative to ``root`` (or absolute).
        label_suffix: text between the image stem and ``.png`` in label names (e.g. ``"_labelTrainIds"``).
        class_table: classes the train ids refer to.
        id_to_train_id: mapping from the ids stored in the labels to train ids; ids not in it become 255. ``None``
            means the labels already hold train ids (values >= the number of classes become 255).
        transform: optional callable applied to each sample dict.
    """

    def __init__(self, root: str | Path, *, split: str | None = None, image_dir: str | Path = "images",
                 label_dir: str | Path = "labels", label_suffix: str = "", class_table: ClassTable = CITYSCAPES_19,
                 id_to_train_id: Mapping[int, int] | None = None, transform: Transform | None = None) -> None:
        root = Path(root)
        images, labels = root / image_dir, root / label_dir
        if split is not None:
            images, labels = images / split, labels / split
        layout = f"images in '{images}' (*.png/*.jpg) with labels '{labels}/<image stem>{label_suffix}.png'"
        if not images.is_dir() or not labels.is_dir():
            raise FileNotFoundError(f"image folder '{images}' and label folder '{labels}' must both exist; "
                                    f"expected {layout}")
        image_files = list_files(images, IMAGE_SUFFIXES)
        if not image_files:
            raise FileNotFoundError(f"no images in '{images}'; expected {layout}")
        if id_to_train_id is None:
            label_table = identity_table(class_table.num_classes)
        else:
            out_of_range = {target for target in id_to_train_id.values()
                            if target >= class_table.num_classes and target != 255}
            if out_of_range:
                raise ValueError(f"id_to_train_id maps to train ids {sorted(out_of_range)}, but class table "
                                 f"'{class_table.name}' has only {class_table.num_classes} classes (255 = ignore)")
            label_table = lookup_table(id_to_train_id)

        samples, missing = [], []
        for image_file in image_files:
            label_file = labels / f"{image_file.stem}{label_suffix}.png"
            if label_file.is_file():
                samples.append(SampleFiles(image_file, label_file, image_file.stem, label_table))
            else:
                missing.append((image_file, (label_file,)))
        if missing:
            raise missing_labels_error(missing, len(image_files), layout)
        super().__init__(samples, class_table=class_table, transform=transform)
