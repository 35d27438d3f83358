"""Stopping a run and resuming it gives bit-identical weights to an uninterrupted run."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.training.conftest import small_config
from training.run_folder import list_checkpoints
from training.trainer import Trainer

# Every source of randomness is on: rescale, crop, flip, photometric change, shuffled epochs, the context decoder's
# dropout, the point sampling of the mask losses, MixStyle's draws; the warm-up and the poly decay move the LR; both
# regularizers (frozen teacher, anchors) are on.
RANDOM_RECIPE = ("augmentation.scale_range=[0.2, 0.35]", "augmentation.flip_prob=0.5",
                 "augmentation.photometric=true", "augmentation.cat_max_ratio=0.75", "schedule.iterations=4",
                 "schedule.warmup_iterations=2", "optimizer.lr=1e-3", "checkpoint_interval=2",
                 "mix_style.probability=0.5")


def _final_weights(summary: dict) -> dict[str, torch.Tensor]:
    return torch.load(summary["model_path"], weights_only=True)["state_dict"]


def run(config, *, resume: str | None = None, stop_at: int | None = None) -> dict:
    """Train with ``config`` (from ``resume``) to ``stop_at`` or the end, and release the run folder."""
    with Trainer(config, resume=resume, progress=False) as trainer:
        return trainer.train(stop_at=stop_at)


def assert_same_weights(expected_summary: dict, actual_summary: dict) -> None:
    expected, actual = _final_weights(expected_summary), _final_weights(actual_summary)
    assert expected.keys() == actual.keys()
    different = [name for name in expected if not torch.equal(expected[name], actual[name])]
    assert not different, f"{len(different)} tensors differ after resume, e.g. {different[:3]}"


def test_stop_and_resume_is_bit_identical(camvid_two_frames, tmp_path):
    uninterrupted = run(small_config(camvid_two_frames, tmp_path / "a", *RANDOM_RECIPE))

    config = small_config(camvid_two_frames, tmp_path / "b", *RANDOM_RECIPE)
    stopped = run(config, stop_at=2)
    assert stopped["model_path"] is None
    assert [path.name for path in list_checkpoints(tmp_path / "b")] == ["iter_0000002.pt"]
    # Scramble every random stream, as a new process would have them: the checkpoint must restore them.
    torch.manual_seed(12345)
    with open(tmp_path / "b" / "log.jsonl", "a") as log:  # a line a killed run wrote after its last checkpoint
        log.write(json.dumps({"iteration": 3, "losses": {"total": 0.0}, "lr": {}}) + "\n")
    resumed = run(small_config(camvid_two_frames, tmp_path / "b", *RANDOM_RECIPE), resume="auto")

    assert_same_weights(uninterrupted, resumed)
    iterations = [json.loads(line)["iteration"] for line in (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    assert iterations == [1, 2, 3, 4]
    losses_a = [json.loads(line)["losses"] for line in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    losses_b = [json.loads(line)["losses"] for line in (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    assert losses_a == losses_b


def test_fresh_run_refuses_a_folder_with_checkpoints(camvid_two_frames, tmp_path):
    config = small_config(camvid_two_frames, tmp_path / "run", *RANDOM_RECIPE)
    run(config, stop_at=2)
    with pytest.raises(FileExistsError, match="--resume auto"):
        Trainer(config, progress=False)


def test_resume_with_another_batch_size_is_refused(camvid_two_frames, tmp_path):
    run(small_config(camvid_two_frames, tmp_path / "run", *RANDOM_RECIPE), stop_at=2)
    with pytest.raises(ValueError, match="batch_size 2 \\(checkpoint\\) vs 1 \\(now\\)"):
        Trainer(small_config(camvid_two_frames, tmp_path / "run", *RANDOM_RECIPE, "batch_size=1"), resume="auto",
                progress=False)


def test_resume_with_another_learning_rate_uses_it_and_records_the_change(camvid_two_frames, tmp_path, caplog):
    """After a divergence the user resumes an earlier checkpoint with a lower optimizer.lr: the saved optimizer
    groups must not override it, and the run folder must say the recipe changed there."""
    run(small_config(camvid_two_frames, tmp_path / "run", *RANDOM_RECIPE), stop_at=2)
    with caplog.at_level("WARNING", logger="training.trainer"):
        trainer = Trainer(small_config(camvid_two_frames, tmp_path / "run", *RANDOM_RECIPE, "optimizer.lr=2e-4",
                                       "augmentation.flip_prob=0.0"), resume="auto", progress=False)
    with trainer:
        assert max(group["initial_lr"] for group in trainer.optimizer.param_groups) == 2e-4
        assert trainer.optimizer.state  # the AdamW moments were restored
        trainer.train()
    assert "augmentation.flip_prob 0.5 -> 0.0, optimizer.lr 0.001 -> 0.0002" in caplog.text
    records = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    changes = [record for record in records if "config_changes" in record]
    assert changes == [{"iteration": 2, "time": changes[0]["time"], "config_changes": {
        "augmentation.flip_prob": [0.5, 0.0], "optimizer.lr": [0.001, 0.0002]}}]
    lrs = [record["lr"] for record in records if record["iteration"] == 3 and "lr" in record]
    assert lrs and all(value <= 2e-4 for value in lrs[0].values())  # the schedule starts from the new lr


def test_resume_of_a_checkpoint_saved_before_the_activation_was_recorded(camvid_two_frames, tmp_path):
    """Checkpoints written before TqdmConfig.quick_gelu existed have no such key: they resume as their preset's."""
    uninterrupted = run(small_config(camvid_two_frames, tmp_path / "a", *RANDOM_RECIPE))
    run(small_config(camvid_two_frames, tmp_path / "b", *RANDOM_RECIPE), stop_at=2)
    [checkpoint] = list_checkpoints(tmp_path / "b")
    payload = torch.load(checkpoint, weights_only=True)
    del payload["model_config"]["quick_gelu"]
    torch.save(payload, checkpoint)
    resumed = run(small_config(camvid_two_frames, tmp_path / "b", *RANDOM_RECIPE), resume="auto")
    assert_same_weights(uninterrupted, resumed)


def test_a_run_stopped_while_writing_its_final_model_finishes_on_resume(camvid_two_frames, tmp_path):
    """The checkpoint of the last iteration is written before model_final.pt: a kill or a full disk in between
    left a run that --resume auto called done ("nothing to do") without its model."""
    config = small_config(camvid_two_frames, tmp_path / "run", *RANDOM_RECIPE)  # checkpoints at 2 and 4 of 4
    finished = run(config)
    expected = _final_weights(finished)
    Path(finished["model_path"]).unlink()
    resumed = run(small_config(camvid_two_frames, tmp_path / "run", *RANDOM_RECIPE), resume="auto")
    assert resumed["model_path"] == finished["model_path"]
    actual = _final_weights(resumed)
    assert all(torch.equal(expected[name], actual[name]) for name in expected)
    with pytest.raises(ValueError, match="nothing to do"):  # a finished run stays finished
        run(small_config(camvid_two_frames, tmp_path / "run", *RANDOM_RECIPE), resume="auto")
