"""training.train and training.evaluate: a user mistake is one line on stderr and exit code 2; --debug re-raises.

(training.evaluate's own cases, a truncated checkpoint among them, are in test_evaluate.py.)
"""
from __future__ import annotations

from pathlib import Path

import pytest

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
