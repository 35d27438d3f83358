"""Rare-class paste: what is pasted, where, how often, reproducibly; the trainer's config path to it."""
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tqdm_core.classes import CAMVID_11
from tqdm_core.data import ImageFolderDataset, RareClassPaste, TrainTransform
from tqdm_core.data.rare_class_sampling import count_class_pixels
from tqdm_core.image_normalization import normalize_images
from training.sample_stream import ShuffledStream
from training.train_config import load_config
from training.trainer import build_training_stream

SKY, BUILDING, SIGN = 0, 1, 6


def make_dataset(root: Path) -> ImageFolderDataset:
    """Six 48x64 frames: 0-3 grey sky over building, 4-5 add a white sign (8x12 at rows 10-17, columns 20-31)."""
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir(parents=True)
    for index in range(6):
        image = np.full((48, 64, 3), 30 + 10 * index, np.uint8)
        label = np.full((48, 64), SKY, np.uint8)
        label[24:] = BUILDING
        if index >= 4:
            image[10:18, 20:32] = 250
            label[10:18, 20:32] = SIGN
        Image.fromarray(image).save(root / "images" / f"{index:05d}.png")
        Image.fromarray(label).save(root / "labels" / f"{index:05d}.png")
    return ImageFolderDataset(root, class_table=CAMVID_11)


def fixed_transform() -> TrainTransform:
    """The whole frame, no flip, no colour change: a pixel's place and colour are known after it."""
    return TrainTransform(crop_size=(48, 64), scale_range=(1.0, 1.0), cat_max_ratio=1.0, flip_prob=0.0,
                          photometric=False)


def paste(dataset, probability, **kwargs) -> tuple[ShuffledStream, RareClassPaste]:
    stream = ShuffledStream(dataset, transform=fixed_transform(), seed=1)
    pasted = RareClassPaste(stream, dataset=dataset, transform=fixed_transform(),
                            pixel_counts=count_class_pixels(dataset, progress=False), class_ids=[SIGN],
                            probability=probability, min_pixels=50, seed=1)
    return stream, pasted


def test_the_donor_sign_is_pasted_at_its_place_with_its_label_and_nothing_else_changes(tmp_path):
    stream, pasted = paste(make_dataset(tmp_path), probability=1.0)
    sign = torch.zeros(48, 64, dtype=torch.bool)
    sign[10:18, 20:32] = True
    white = normalize_images(torch.full((3, 1, 1), 250.0))[:, 0, 0]
    for number in range(12):
        original, result = stream[number], pasted[number]
        assert bool((result["label"][sign] == SIGN).all())
        assert torch.allclose(result["image"][:, sign], white[:, None].expand(3, int(sign.sum())))
        assert torch.equal(result["label"][~sign], original["label"][~sign])
        assert torch.equal(result["image"][:, ~sign], original["image"][:, ~sign])
        assert result["name"] == original["name"]


def test_probability_sets_the_share_of_pasted_samples_and_items_are_reproducible(tmp_path):
    dataset = make_dataset(tmp_path)
    stream, pasted = paste(dataset, probability=0.5)
    # Frames 0-3 have no sign: a sign in their sample can only come from a paste.
    without_own_sign = [n for n in range(200) if stream.source_index(n) < 4]
    got_sign = [bool((pasted[n]["label"] == SIGN).any()) for n in without_own_sign]
    assert 0.35 < np.mean(got_sign) < 0.65, np.mean(got_sign)
    again = paste(dataset, probability=0.5)[1]
    assert all(torch.equal(pasted[n]["image"], again[n]["image"]) for n in without_own_sign[:20])
    _, never = paste(dataset, probability=0.0)
    assert all(torch.equal(never[n]["image"], stream[n]["image"]) for n in range(20))


def test_bad_arguments_say_what_to_do(tmp_path):
    dataset = make_dataset(tmp_path)
    with pytest.raises(ValueError, match="probability must be in"):
        paste(dataset, probability=2.0)
    stream = ShuffledStream(dataset, transform=fixed_transform(), seed=1)
    with pytest.raises(ValueError, match="lower min_pixels"):
        RareClassPaste(stream, dataset=dataset, transform=fixed_transform(),
                       pixel_counts=count_class_pixels(dataset, progress=False), class_ids=[SIGN], probability=0.5,
                       min_pixels=10_000)


def test_the_training_config_builds_it_and_rejects_unknown_class_names(tmp_path):
    dataset = make_dataset(tmp_path / "data")
    base = ["preset=tqdm-tiny-rn", "rare_class_sampling.enabled=false", "augmentation.crop_size=[48,64]",
            "class_paste.probability=0.5", "class_paste.min_pixels=50"]
    config = load_config(None, base + ["class_paste.classes=[sign-symbol]"])
    stream = build_training_stream(config, dataset, cache_path=tmp_path / "counts.json")
    assert isinstance(stream, RareClassPaste) and stream.class_ids.tolist() == [SIGN]
    assert stream[3]["image"].shape == (3, 48, 64)
    config = load_config(None, base + ["class_paste.classes=[sign]"])
    with pytest.raises(ValueError, match=r"does not have; its classes: \['sky'"):
        build_training_stream(config, dataset, cache_path=tmp_path / "counts.json")
    off = load_config(None, base[:-2])
    assert isinstance(build_training_stream(off, dataset, cache_path=tmp_path / "counts.json"), ShuffledStream)
