"""Checkpoint round trip and every documented checkpoint error."""
import pytest
import torch

from tqdm_core import CheckpointError, Predictor, create_model, load_checkpoint, read_checkpoint, save_checkpoint


@pytest.fixture(scope="module")
def model():
    return create_model("tqdm-tiny-rn", pretrained=None, seed=0)


def test_round_trip_is_bit_exact(model, tmp_path):
    path = save_checkpoint(model, tmp_path / "model.pt", metadata={"note": "test"})
    loaded = load_checkpoint(path)
    original = model.state_dict()
    restored = loaded.state_dict()
    assert original.keys() == restored.keys()
    for key, value in original.items():
        assert torch.equal(value, restored[key]), key
    assert loaded.class_table == model.class_table
    assert loaded.preset == "tqdm-tiny-rn"
    assert loaded.checkpoint_metadata == {"note": "test"}
    assert not list(tmp_path.glob(".*.tmp"))  # the atomic write left no temporary file


def test_custom_classes_travel_with_the_checkpoint(tmp_path):
    names = ["road", "grass", "tree", "person"]
    model = create_model("tqdm-tiny-rn", pretrained=None, seed=0, classes=names)
    loaded = load_checkpoint(save_checkpoint(model, tmp_path / "custom.pt"))
    assert loaded.class_table.names == tuple(names)
    assert Predictor(loaded).class_table.num_classes == 4


def test_truncated_file_is_reported(model, tmp_path):
    path = save_checkpoint(model, tmp_path / "model.pt")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
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
    loaded = load_checkpoint(path)
    weight = loaded.pixel_decoder.mask_feature.weight
    assert weight.dtype == torch.float32
    torch.testing.assert_close(weight, model.pixel_decoder.mask_feature.weight.half().float())
