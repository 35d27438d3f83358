"""ema_decay: an exponential moving average of the weights beside the trained ones, resumable, never fed back."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.training.conftest import small_config
from tests.training.test_resume import RANDOM_RECIPE, run
from tqdm_core import Predictor, load_checkpoint
from training import evaluate
from training.run_folder import FINAL_MODEL, FINAL_RAW_MODEL, checkpoint_path
from training.train_config import load_config
from training.trainer import Trainer

DECAY = 0.75


def _weights(path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["state_dict"]


def test_average_is_the_ema_of_the_trained_weights_and_leaves_training_unchanged(camvid_two_frames, tmp_path):
    config = small_config(camvid_two_frames, tmp_path / "ema", *RANDOM_RECIPE, "schedule.iterations=2",
                          "checkpoint_interval=1", "keep_checkpoints=0", f"ema_decay={DECAY}")
    averaged = run(config)
    plain = run(small_config(camvid_two_frames, tmp_path / "plain", *RANDOM_RECIPE, "schedule.iterations=2"))

    first = torch.load(checkpoint_path(tmp_path / "ema", 1), weights_only=False)
    raw = _weights(tmp_path / "ema" / FINAL_RAW_MODEL)
    average = _weights(averaged["model_path"])
    assert averaged["model_path"].endswith(FINAL_MODEL)
    plain_final = _weights(plain["model_path"])
    assert all(torch.equal(raw[name], plain_final[name]) for name in plain_final), "the average changed training"

    # After step 1 the average is a copy of the weights; after step 2: w1 + (1 - decay) (w2 - w1).
    w1 = first["model"]
    assert first["ema"]["n_averaged"].item() == 1
    checked = 0
    for name, value in average.items():
        if not value.is_floating_point():
            continue
        expected = torch.lerp(w1[name].float(), raw[name].float(), 1 - DECAY)
        torch.testing.assert_close(value.float(), expected, rtol=1e-6, atol=1e-7, msg=name)
        checked += not torch.equal(w1[name], raw[name])
    assert checked > 10, "too few tensors moved during training for this test to mean anything"


def test_resume_restores_the_average_bit_for_bit(camvid_two_frames, tmp_path):
    recipe = (*RANDOM_RECIPE, f"ema_decay={DECAY}")
    uninterrupted = run(small_config(camvid_two_frames, tmp_path / "a", *recipe))
    run(small_config(camvid_two_frames, tmp_path / "b", *recipe), stop_at=2)
    torch.manual_seed(999)
    resumed = run(small_config(camvid_two_frames, tmp_path / "b", *recipe), resume="auto")
    for name in (FINAL_MODEL, FINAL_RAW_MODEL):
        expected, actual = _weights(tmp_path / "a" / name), _weights(tmp_path / "b" / name)
        assert all(torch.equal(expected[key], actual[key]) for key in expected), name
    assert (uninterrupted["model_path"], resumed["model_path"]) == (str(tmp_path / "a" / FINAL_MODEL),
                                                                     str(tmp_path / "b" / FINAL_MODEL))


def test_average_can_start_on_a_run_saved_without_it(camvid_two_frames, tmp_path, caplog):
    run(small_config(camvid_two_frames, tmp_path / "run", *RANDOM_RECIPE), stop_at=2)
    with caplog.at_level("WARNING"):
        run(small_config(camvid_two_frames, tmp_path / "run", *RANDOM_RECIPE, f"ema_decay={DECAY}"), resume="auto")
    assert "holds no weight average" in caplog.text
    assert (tmp_path / "run" / FINAL_RAW_MODEL).is_file()
    metadata = torch.load(tmp_path / "run" / FINAL_MODEL, weights_only=True)["metadata"]
    assert metadata["weights"] == f"ema {DECAY:g}"
    last = json.loads((tmp_path / "run" / "log.jsonl").read_text().splitlines()[-1])
    assert last["iteration"] == 4


def test_the_average_scored_in_training_is_the_saved_model(camvid_two_frames, tmp_path):
    """The in-training validation scores the average; it must predict what model_final.pt predicts.

    Averaging every buffer used to turn the text encoder's unsaved causal mask (-inf above the diagonal) into NaN,
    so the logged validation of every ema_decay run scored a broken model (1.8 mIoU on a model worth 35)."""
    validation = f"validation.dataset={{name: camvid, root: '{camvid_two_frames}', split: train}}"
    config = small_config(camvid_two_frames, tmp_path / "ema", *RANDOM_RECIPE, f"ema_decay={DECAY}", validation)
    with Trainer(config, progress=False) as trainer:
        summary = trainer.train()
        averaged, trained = trainer.ema.module, trainer.model
        for (name, value), (_, expected) in zip(averaged.named_buffers(), trained.named_buffers(), strict=True):
            if not value.is_floating_point() or name.endswith("causal_mask"):
                assert torch.equal(value, expected), name
        frame = trainer.validation_set.load_sample(0)["image"]
        live = Predictor(averaged).predict(frame).labels
    saved = Predictor(load_checkpoint(summary["model_path"]).model).predict(frame).labels
    assert np.array_equal(live, saved)


def test_a_training_checkpoint_is_evaluated_with_the_average(camvid_two_frames, tmp_path):
    """training.evaluate on checkpoints/iter_*.pt scores what the run's validation scored: the average."""
    config = small_config(camvid_two_frames, tmp_path / "ema", *RANDOM_RECIPE, f"ema_decay={DECAY}")
    summary = run(config)  # 4 iterations, checkpoints at 2 and 4
    evaluated = evaluate.load_model(checkpoint_path(tmp_path / "ema", 4)).model.state_dict()
    final = _weights(summary["model_path"])
    assert all(torch.equal(evaluated[name], final[name].to(evaluated[name].dtype)) for name in final)


@pytest.mark.parametrize("decay", ["0", "1", "1.5", "-0.1"])
def test_decay_outside_the_open_unit_interval_is_refused(decay):
    with pytest.raises(ValueError, match="ema_decay must be in"):
        load_config(None, [f"ema_decay={decay}"])
