"""training.train and training.evaluate: a user mistake is one line on stderr and exit code 2; --debug re-raises.

(training.evaluate's own cases, a truncated checkpoint among them, are in test_evaluate.py.)
"""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.training.conftest import small_overrides
from tqdm_core.data import TrainTransform
from tqdm_core.default_model import default_checkpoint
from training import train

CONFIG = Path(__file__).resolve().parents[2] / "training" / "configs" / "camvid_tiny_rn.yaml"
SAMPLE = Path(__file__).resolve().parents[2] / "data" / "camvid_sample"


def run_train(arguments: list[str], capsys) -> str:
    """Run training.train, expect exit code 2, return the one line it printed."""
    with pytest.raises(SystemExit) as exited:
        train.main(arguments)
    assert exited.value.code == 2
    error = capsys.readouterr().err
    assert error.startswith("python -m training.train: error: ") and error.count("\n") == 1, error
    assert "Traceback" not in error and error.rstrip().endswith("(--debug shows the traceback)")
    return error


def test_train_mistakes_are_one_line(tmp_path, capsys):
    assert "config file 'missing.yaml' does not exist" in run_train(["--config", "missing.yaml"], capsys)
    assert "override 'iterations' must look like key.path=value" in run_train(
        ["--config", str(CONFIG), "iterations"], capsys)
    truncated = tmp_path / "iter_0000010.pt"
    truncated.write_bytes(default_checkpoint().read_bytes()[:3000])
    error = run_train(["--config", str(CONFIG), "--resume", str(truncated), f"output_dir={tmp_path / 'run'}",
                       f"train_dataset.root={SAMPLE}", f"validation.dataset.root={SAMPLE}"], capsys)
    assert f"checkpoint '{truncated}' is truncated or corrupt" in error


def test_debug_shows_the_exception(capsys):
    with pytest.raises(FileNotFoundError, match="config file 'missing.yaml' does not exist"):
        train.main(["--config", "missing.yaml", "--debug"])


def test_an_unknown_dataset_option_is_one_line(camvid_two_frames, tmp_path, capsys):
    error = run_train(small_overrides(camvid_two_frames, tmp_path / "run", "train_dataset.options={foo: 1}"), capsys)
    assert ("'train_dataset.options' sets ['foo'], which dataset 'camvid' does not take; the options it takes: "
            "['classes', 'exclude_sequences', 'sequences']") in error


def test_an_undecodable_training_image_is_named_with_a_remedy(camvid_two_frames, tmp_path, capsys):
    """The sample is read in a DataLoader worker, whose exception torch raises again with the worker's traceback."""
    broken = sorted((camvid_two_frames / "train").glob("*.png"))[0]
    broken.write_bytes(b"not a png" * 100)
    error = run_train(["--no-progress", *small_overrides(camvid_two_frames, tmp_path / "run", "num_workers=1",
                                                         "schedule.iterations=2")], capsys)
    assert (f"cannot load a training sample at iteration 0: could not decode image '{broken}'; the file is truncated, "
            f"corrupt or not an image; replace that file with a readable copy") in error


def test_a_failing_transform_is_not_blamed_on_a_file(camvid_two_frames, tmp_path, capsys, monkeypatch):
    """Only an unreadable file gets the "replace that file" remedy; any other error is reported as it is."""
    def broken_transform(self, sample, **options):
        raise ValueError("a bug in a transform")

    monkeypatch.setattr(TrainTransform, "__call__", broken_transform)
    error = run_train(["--no-progress", *small_overrides(camvid_two_frames, tmp_path / "run", "num_workers=0",
                                                         "schedule.iterations=2")], capsys)
    assert "a bug in a transform" in error and "replace that file" not in error


@pytest.mark.parametrize("given", ["checkpoints", "empty"])
def test_a_folder_or_an_empty_file_given_as_the_checkpoint_is_named(tmp_path, capsys, given):
    run_folder = tmp_path / "first"
    (run_folder / "checkpoints").mkdir(parents=True)
    (run_folder / "config.yaml").write_text("preset: tqdm-tiny-rn\n")
    (run_folder / "checkpoints" / "iter_0000002.pt").write_bytes(b"")
    resume = run_folder / "checkpoints" / ("" if given == "checkpoints" else "iter_0000002.pt")
    error = run_train(["--resume", str(resume), "preset=tqdm-tiny-rn", "pretrained=null",
                       f"output_dir={tmp_path / 'second'}"], capsys)
    if given == "checkpoints":
        assert (f"'{resume}' is the checkpoint folder of run '{run_folder}', not a checkpoint; pass the run folder "
                f"to continue from its newest readable checkpoint, or one of its files (newest: "
                f"'{run_folder / 'checkpoints' / 'iter_0000002.pt'}')") in error
    else:
        assert f"cannot resume: checkpoint '{resume}' is empty (0 bytes" in error
    assert not (tmp_path / "second").exists()


def test_pretrained_weights_for_a_preset_without_any_say_to_use_null(camvid_two_frames, tmp_path, capsys):
    error = run_train(small_overrides(camvid_two_frames, tmp_path / "run", "pretrained=openai"), capsys)
    assert ("preset 'tqdm-tiny-rn' has no pretrained weights (its towers start random), but pretrained=openai asks "
            "for them; use pretrained=null") in error


@pytest.mark.parametrize("state", ["empty", "missing"])
def test_a_run_folder_without_its_config_is_not_resumed_with_the_defaults(tmp_path, capsys, state):
    """``--resume FOLDER`` alone takes the folder's config.yaml; the defaults would be another run's config."""
    folder = tmp_path / "run"
    (folder / "checkpoints").mkdir(parents=True)
    if state == "empty":
        (folder / "config.yaml").write_text("")
    error = run_train(["--resume", str(folder)], capsys)
    assert (f"run folder '{folder}' has {'an empty' if state == 'empty' else 'no'} config.yaml, so its config is "
            f"unknown; pass the config the run started with as --config") in error
