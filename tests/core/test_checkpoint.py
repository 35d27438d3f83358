"""Checkpoint round trip, metadata, permissions and every documented checkpoint error."""
import argparse
import os
import re
import stat

import pytest
import torch

from tqdm_core import (CheckpointError, CheckpointMetadata, Predictor, create_model, load_checkpoint, read_checkpoint,
                       save_checkpoint)
from tqdm_core.checkpoint import INFERENCE_SCALE
from tqdm_core.default_model import DEFAULT_CHECKPOINT


@pytest.fixture(scope="module")
def model():
    return create_model("tqdm-tiny-rn", pretrained=None, seed=0)


def test_round_trip_is_bit_exact(model, tmp_path):
    path = save_checkpoint(model, tmp_path / "model.pt", metadata={"note": "test"})
    checkpoint = load_checkpoint(path)
    loaded = checkpoint.model
    original = model.state_dict()
    restored = loaded.state_dict()
    assert original.keys() == restored.keys()
    for key, value in original.items():
        assert torch.equal(value, restored[key]), key
    assert loaded.class_table == model.class_table
    assert loaded.preset == "tqdm-tiny-rn"
    assert checkpoint.metadata == CheckpointMetadata(extra={"note": "test"}) and checkpoint.path == path
    assert not list(tmp_path.glob(".*.tmp"))  # the atomic write left no temporary file


def test_custom_classes_travel_with_the_checkpoint(tmp_path):
    names = ["road", "grass", "tree", "person"]
    model = create_model("tqdm-tiny-rn", pretrained=None, seed=0, classes=names)
    loaded = load_checkpoint(save_checkpoint(model, tmp_path / "custom.pt")).model
    assert loaded.class_table.names == tuple(names)
    assert Predictor(loaded).class_table.num_classes == 4


def test_truncated_file_is_reported(model, tmp_path):
    path = save_checkpoint(model, tmp_path / "model.pt")
    data = path.read_bytes()
    for size in (len(data) // 2, 100):  # torch fails differently on files shorter than a zip record
        path.write_bytes(data[:size])
        with pytest.raises(CheckpointError, match="truncated or corrupt"):
            load_checkpoint(path)
    path.write_bytes(b"")
    with pytest.raises(CheckpointError, match="is not a checkpoint: it is an empty file"):
        load_checkpoint(path)


@pytest.mark.parametrize("content, kind", [
    (b"\x89PNG\r\n\x1a\n" + bytes(200), "a PNG image"),
    (b"<!DOCTYPE html><html><body>Sign in</body></html>", "an HTML page"),
    (b"version https://git-lfs.github.com/spec/v1\noid sha256:0\n", "a text file (first line 'version https://git-lfs"),
])
def test_a_file_of_another_kind_is_named(tmp_path, content, kind):
    """A label image, a download that answered with a web page or a Git LFS pointer: not called "corrupt"."""
    path = tmp_path / "model.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=re.escape(f"'{path}' is not a checkpoint: it is {kind}")):
        load_checkpoint(path)


def test_the_safe_loader_message_is_quoted_without_colour_codes(tmp_path):
    path = tmp_path / "pickled.pt"
    torch.save({"options": argparse.Namespace(depth=2)}, path)  # a Python object the safe loader refuses
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(path)
    message = str(error.value)
    assert "holds Python objects that the safe loader refuses" in message and "Weights only load failed" in message
    assert "\x1b[" not in message


def test_a_flipped_byte_inside_the_weights_is_reported(model, tmp_path):
    """torch.load does not check CRCs: without the check, a damaged disk block loads as wrong weights."""
    path = save_checkpoint(model, tmp_path / "model.pt")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="fails its CRC-32 check"):
        load_checkpoint(path)


def test_missing_file_and_foreign_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not a tqdm_core checkpoint"):
        read_checkpoint(tmp_path / "foreign.pt")
    torch.save({"meta": {}, "state_dict": {"backbone.conv1.weight": torch.zeros(1)}}, tmp_path / "official.pth")
    with pytest.raises(CheckpointError, match="convert_official"):
        read_checkpoint(tmp_path / "official.pth")


def test_other_preset_is_reported(model, tmp_path):
    path = save_checkpoint(model, tmp_path / "model.pt")
    with pytest.raises(CheckpointError, match="saved for preset 'tqdm-tiny-rn' but preset 'tqdm-tiny-vit'"):
        load_checkpoint(path, preset="tqdm-tiny-vit")


def test_missing_and_unexpected_keys_are_listed(model, tmp_path):
    path = save_checkpoint(model, tmp_path / "model.pt")
    payload = torch.load(path, weights_only=True)
    removed = next(iter(payload["state_dict"]))
    del payload["state_dict"][removed]
    payload["state_dict"]["extra.weight"] = torch.zeros(1)
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=r"1 missing keys .*" + removed.replace(".", r"\.") + r".*extra\.weight"):
        load_checkpoint(path)


def test_half_precision_storage_loads_as_fp32(model, tmp_path):
    path = save_checkpoint(model, tmp_path / "half.pt", half=True)
    loaded = load_checkpoint(path).model
    weight = loaded.pixel_decoder.mask_feature.weight
    assert weight.dtype == torch.float32
    torch.testing.assert_close(weight, model.pixel_decoder.mask_feature.weight.half().float())


def test_metadata_keys_are_typed_and_round_trip(model, tmp_path):
    metadata = CheckpointMetadata(inference_scale=0.5, validation={"miou": 0.6}, training_command="train",
                                  license="MIT", source_checkpoint="model_final.pt", extra={"iterations": 10})
    path = save_checkpoint(model, tmp_path / "model.pt", metadata=metadata)
    assert read_checkpoint(path)["metadata"] == {"inference_scale": 0.5, "validation": {"miou": 0.6},
                                                 "training_command": "train", "license": "MIT",
                                                 "source_checkpoint": "model_final.pt", "iterations": 10}
    assert load_checkpoint(path).metadata == metadata
    # A plain dict with the key constants (what the trainer writes) reads back typed.
    path = save_checkpoint(model, tmp_path / "plain.pt", metadata={INFERENCE_SCALE: 1})
    assert load_checkpoint(path).metadata.inference_scale == 1.0
    for bad in (0, -0.5, "half", True, float("nan")):
        with pytest.raises(CheckpointError, match="'inference_scale' must be a positive number"):
            CheckpointMetadata.from_dict({INFERENCE_SCALE: bad})


def test_checkpoints_get_the_umask_permissions(model, tmp_path):
    """0644 under umask 022 (readable by a node running as another user), 0600 only when the umask says so."""
    previous = os.umask(0o022)
    try:
        assert stat.S_IMODE(save_checkpoint(model, tmp_path / "shared.pt").stat().st_mode) == 0o644
        os.umask(0o077)
        assert stat.S_IMODE(save_checkpoint(model, tmp_path / "private.pt").stat().st_mode) == 0o600
    finally:
        os.umask(previous)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["private.pt", "shared.pt"]


def test_default_names_the_shipped_model():
    assert load_checkpoint("default").path == load_checkpoint().path == DEFAULT_CHECKPOINT


def test_a_path_starting_with_a_tilde_is_the_home_folder(model, tmp_path, monkeypatch):
    """`checkpoint:=~/model.pt` on a ros2 command line reaches the node unexpanded: the shell expands only a leading ~."""
    monkeypatch.setenv("HOME", str(tmp_path))
    save_checkpoint(model, tmp_path / "model.pt")
    assert load_checkpoint("~/model.pt").path == tmp_path / "model.pt"
