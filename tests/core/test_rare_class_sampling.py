"""Rare-class sampling: class distribution, candidate images, crop redraws, statistics cache and official files."""
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tqdm_core.classes import CAMVID_11
from tqdm_core.data import ImageFolderDataset, RareClassSamplingDataset, TrainTransform
from tqdm_core.data import rare_class_sampling
from tqdm_core.data.rare_class_sampling import class_sampling_probabilities, load_class_statistics

NUM_CLASSES = CAMVID_11.num_classes


def make_folder_dataset(root: Path, labels: list[np.ndarray]) -> ImageFolderDataset:
    for index, label in enumerate(labels):
        (root / "images").mkdir(parents=True, exist_ok=True)
        (root / "labels").mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.zeros((*label.shape, 3), np.uint8)).save(root / "images" / f"{index:05d}.png")
        Image.fromarray(label).save(root / "labels" / f"{index:05d}.png")
    return ImageFolderDataset(root, class_table=CAMVID_11)


def skewed_counts() -> np.ndarray:
    """(40, 11) counts: class 0 is everywhere (1e6 px per image), class k > 0 has 4000 * k px in images 4k-4..4k-1."""
    counts = np.zeros((40, NUM_CLASSES), np.int64)
    counts[:, 0] = 1_000_000
    for class_id in range(1, NUM_CLASSES):
        counts[4 * (class_id - 1): 4 * class_id, class_id] = 4000 * class_id
    return counts


def test_class_probabilities_by_hand():
    """Totals 1000 and 3000 px: f = (0.25, 0.75), T = 1 -> p0 = e^0.75 / (e^0.75 + e^0.25) = 1 / (1 + e^-0.5)."""
    classes, probabilities = class_sampling_probabilities(np.array([[1000, 0, 3000]]), class_temp=1.0)
    np.testing.assert_array_equal(classes, [0, 2])  # a class without pixels is never drawn
    np.testing.assert_allclose(probabilities, [1 / (1 + math.exp(-0.5)), 1 / (1 + math.exp(0.5))])
    with pytest.raises(ValueError, match="class_temp"):
        class_sampling_probabilities(np.array([[1, 1]]), class_temp=0.0)


class _Unused:
    """Stands in for a dataset whose samples are never decoded (only ``draw`` is exercised)."""

    class_table = CAMVID_11

    def __len__(self) -> int:
        return 40


def draw_many(sampler: RareClassSamplingDataset, count: int = 8000) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    draws = np.array([sampler.draw(rng) for _ in range(count)])
    return draws[:, 0], draws[:, 1]


def test_temperature_100_is_near_uniform_and_small_temperature_favours_rare_classes():
    """Class 0 holds ~99.5% of the pixels; at T = 100 every class still gets ~1/11 of the draws.

    With 8000 draws a share of 1/11 has a standard deviation of 0.0032, 3.5% of 1/11.
    """
    uniform = RareClassSamplingDataset(_Unused(), pixel_counts=skewed_counts(), class_temp=100.0)
    classes, _ = draw_many(uniform)
    shares = np.bincount(classes, minlength=NUM_CLASSES) / classes.size
    np.testing.assert_allclose(shares, 1 / NUM_CLASSES, rtol=0.15)  # ~4 standard deviations

    skewed = RareClassSamplingDataset(_Unused(), pixel_counts=skewed_counts(), class_temp=0.01)
    classes, _ = draw_many(skewed)
    shares = np.bincount(classes, minlength=NUM_CLASSES) / classes.size
    assert shares[0] < 0.01  # the dominant class is almost never chosen
    assert shares[1] > shares[10] > 0.02  # the rarest class is chosen most


def test_drawn_images_hold_more_than_min_pixels_of_the_class():
    counts = skewed_counts()
    with pytest.warns(UserWarning, match="skips"):
        sampler = RareClassSamplingDataset(_Unused(), pixel_counts=counts, min_pixels=10000)
    classes, indices = draw_many(sampler, 5000)
    assert np.all(counts[indices, classes] > 10000)
    # Classes 1 and 2 (4000 and 8000 px per image) have no candidate image and are dropped.
    assert set(np.unique(classes).tolist()) == {0} | set(range(3, NUM_CLASSES))


def test_unreachable_classes_are_reported():
    with pytest.warns(UserWarning, match=r"skips \['building'\]: no image has more than 5000"):
        RareClassSamplingDataset(_Unused(), pixel_counts=skewed_counts(), min_pixels=5000)
    with pytest.raises(ValueError, match="lower min_pixels"):
        RareClassSamplingDataset(_Unused(), pixel_counts=skewed_counts(), min_pixels=10**9)


def small_block_labels() -> list[np.ndarray]:
    """Four 64x64 labels of sky (0) with an 8x40 block of class 2 (pole): 320 px, in a different place each."""
    labels = []
    for index in range(4):
        label = np.zeros((64, 64), np.uint8)
        label[8 * index + 10: 8 * index + 18, 12:52] = 2
        labels.append(label)
    return labels


def test_crops_are_redrawn_until_they_hold_the_sampled_class(tmp_path):
    """Only pole is drawable (pixel_counts has no sky); 16x16 crops of a 64x64 image rarely hit the 8x40 block.

    A crop needs more than min_pixels * min_crop_ratio = 20 * 0.5 = 10 pole pixels.
    """
    dataset = make_folder_dataset(tmp_path, small_block_labels())
    counts = np.zeros((4, NUM_CLASSES), np.int64)
    counts[:, 2] = 320
    transform = TrainTransform(crop_size=(16, 16), scale_range=(1.0, 1.0), cat_max_ratio=1.0, photometric=False)
    kwargs = {"transform": transform, "pixel_counts": counts, "min_pixels": 20}
    with_redraws = RareClassSamplingDataset(dataset, min_crop_ratio=0.5, **kwargs)
    without = RareClassSamplingDataset(dataset, min_crop_ratio=0.0, **kwargs)
    pole_pixels = [int((with_redraws[index]["label"] == 2).sum()) for index in range(30)]
    assert min(pole_pixels) > 10
    assert sum(int((without[index]["label"] == 2).sum()) <= 10 for index in range(30)) > 5


def test_items_are_a_function_of_seed_epoch_and_index(tmp_path):
    dataset = make_folder_dataset(tmp_path, small_block_labels())
    sampler = RareClassSamplingDataset(dataset, transform=TrainTransform(crop_size=(24, 24)), min_pixels=20,
                                       seed=3)
    first = sampler[5]
    assert torch.equal(first["image"], sampler[5]["image"]) and first["name"] == sampler[5]["name"]
    assert len(sampler) == 4 and sampler[1000]["image"].shape == (3, 24, 24)  # any index seeds a draw
    sampler.set_epoch(1)
    assert any(not torch.equal(sampler[index]["image"], RareClassSamplingDataset(
        dataset, transform=TrainTransform(crop_size=(24, 24)), min_pixels=20, seed=3)[index]["image"])
        for index in range(4))
    raw = RareClassSamplingDataset(dataset, min_pixels=20)[0]
    assert raw["image"].shape == (64, 64, 3)  # without a transform the raw sample is returned


def test_statistics_are_computed_cached_and_recomputed_when_the_dataset_changes(tmp_path, monkeypatch):
    labels = small_block_labels()
    dataset = make_folder_dataset(tmp_path / "data", labels)
    cache = tmp_path / "cache" / "stats.json"
    counts = load_class_statistics(dataset, cache_path=cache, progress=False)
    expected = np.zeros((4, NUM_CLASSES), np.int64)
    expected[:, 0], expected[:, 2] = 64 * 64 - 320, 320
    np.testing.assert_array_equal(counts, expected)
    assert json.loads(cache.read_text())["names"] == ["00000", "00001", "00002", "00003"]

    def fail(*args, **kwargs):
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(rare_class_sampling, "count_class_pixels", fail)
    np.testing.assert_array_equal(load_class_statistics(dataset, cache_path=cache), expected)
    monkeypatch.undo()

    bigger = make_folder_dataset(tmp_path / "data", labels + [np.full((64, 64), 5, np.uint8)])
    with pytest.warns(UserWarning, match="recomputed"):
        counts = load_class_statistics(bigger, cache_path=cache, progress=False, num_workers=2)
    assert counts.shape == (5, NUM_CLASSES) and counts[4, 5] == 64 * 64


def test_official_statistics_files_are_matched_by_sample_name(tmp_path):
    dataset = make_folder_dataset(tmp_path / "data", small_block_labels())
    official = [{"0": 100 + index, "2": 320, "file": f"/media/user/gta/labels/train/{index:05d}_labelTrainIds.png"}
                for index in range(4)]
    official.append({"0": 7, "file": "/media/user/gta/labels/train/99999_labelTrainIds.png"})  # not in the dataset
    (tmp_path / "sample_class_stats.json").write_text(json.dumps(official))
    counts = load_class_statistics(dataset, official_statistics=tmp_path)
    np.testing.assert_array_equal(counts[:, 0], [100, 101, 102, 103])
    np.testing.assert_array_equal(counts[:, 2], [320] * 4)

    by_class = {"2": [[f"x/{index:05d}_labelTrainIds.png", 320] for index in range(4)]}
    (tmp_path / "samples_with_class.json").write_text(json.dumps(by_class))
    counts = load_class_statistics(dataset, official_statistics=tmp_path / "samples_with_class.json")
    np.testing.assert_array_equal(counts[:, 2], [320] * 4)
    assert counts[:, 0].sum() == 0

    (tmp_path / "other.json").write_text(json.dumps([{"3": 5, "file": "elsewhere/abc.png"}]))
    with pytest.raises(ValueError, match="another dataset"):
        load_class_statistics(dataset, official_statistics=tmp_path / "other.json")
