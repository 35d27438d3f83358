"""load_predictor: checkpoint file, 'default' or untrained preset -> a ready Predictor, preset checked first."""
import pytest

import tqdm_core.builder
from tqdm_core import CheckpointError, InferenceOptions, InvalidOption, create_model, load_predictor, save_checkpoint
from tqdm_core.checkpoint import INFERENCE_SCALE


@pytest.fixture(scope="module")
def half_scale_checkpoint(tmp_path_factory):
    model = create_model("tqdm-tiny-rn", pretrained=None, seed=0)
    return save_checkpoint(model, tmp_path_factory.mktemp("model") / "half.pt", metadata={INFERENCE_SCALE: 0.5})


def test_the_checkpoints_scale_unless_the_options_set_one(half_scale_checkpoint):
    predictor = load_predictor(half_scale_checkpoint, options=InferenceOptions(mode="slide", window=64, stride=32))
    assert (predictor.scale, predictor.mode, predictor.window, predictor.stride) == (0.5, "slide", 64, 32)
    assert load_predictor(half_scale_checkpoint, options=InferenceOptions(scale=1.0)).scale == 1.0


def test_a_wrong_preset_is_refused_before_any_module_is_built(half_scale_checkpoint, monkeypatch):
    def no_build(*args, **kwargs):
        raise AssertionError("the model was built before the preset check")

    monkeypatch.setattr(tqdm_core.builder, "create_model", no_build)
    with pytest.raises(CheckpointError, match="saved for preset 'tqdm-tiny-rn' but preset 'tqdm-tiny-vit'"):
        load_predictor(half_scale_checkpoint, preset="tqdm-tiny-vit")


def test_untrained_preset_and_missing_model(tmp_path):
    predictor = load_predictor(None, preset="tqdm-tiny-vit", options=InferenceOptions(scale=None))
    assert predictor.model.preset == "tqdm-tiny-vit" and predictor.scale == 1.0
    with pytest.raises(ValueError, match="no checkpoint and no preset"):
        load_predictor(None)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_predictor(tmp_path / "missing.pt")


def test_a_truncated_checkpoint_and_a_bad_recommended_scale(half_scale_checkpoint, tmp_path):
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(half_scale_checkpoint.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_predictor(truncated)
    tiny = save_checkpoint(create_model("tqdm-tiny-rn", pretrained=None, seed=0), tmp_path / "tiny.pt",
                           metadata={INFERENCE_SCALE: 0.01})
    with pytest.raises(InvalidOption, match=r"'scale' must be in \[0.05, 8.0\], got 0.01"):
        load_predictor(tiny)
