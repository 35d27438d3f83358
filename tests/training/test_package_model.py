"""Packaging a trained model for shipping: fp16 weights, the recorded input scale, the model card metadata; errors."""
from __future__ import annotations

import json

import pytest
import torch

from tqdm_core import create_model, load_checkpoint, save_checkpoint
from training.package_model import main as package_model_main, package_model


def test_package_keeps_the_recorded_scale_halves_the_weights_and_adds_metrics(tmp_path):
    model = create_model("tqdm-tiny-rn", pretrained=None, seed=0)
    source = save_checkpoint(model, tmp_path / "model_final.pt", metadata={"inference_scale": 0.5})
    metrics = tmp_path / "report.json"
    metrics.write_text(json.dumps({"metrics": {"miou": 0.6, "pixel_accuracy": 0.9, "per_class": {"sky": {"iou": 0.9}}},
                                   "calibration": {"ece": 0.015}}))

    packaged = package_model(source, tmp_path / "shipped.pt", metrics_path=metrics, inference_scale=None,
                             training_command="python -m training.train", license_text="CC BY-NC 4.0")
    loaded = load_checkpoint(packaged)
    assert loaded.metadata.inference_scale == 0.5
    assert loaded.metadata.validation == {
        "miou": 0.6, "pixel_accuracy": 0.9, "iou": {"sky": 0.9}, "expected_calibration_error": 0.015}
    assert (loaded.metadata.license, loaded.metadata.source_checkpoint) == ("CC BY-NC 4.0", "model_final.pt")
    assert packaged.stat().st_size < 0.6 * source.stat().st_size  # fp16 storage
    for name, value in model.state_dict().items():
        if value.is_floating_point():
            torch.testing.assert_close(loaded.model.state_dict()[name], value.half().float(), rtol=0, atol=0)

    overridden = package_model(source, tmp_path / "other.pt", metrics_path=None, inference_scale=0.75,
                               training_command="", license_text="")
    assert load_checkpoint(overridden).metadata.inference_scale == 0.75


def test_packaging_onto_the_source_is_refused_and_leaves_it_intact(tmp_path):
    source = save_checkpoint(create_model("tqdm-tiny-rn", pretrained=None, seed=0), tmp_path / "model_final.pt")
    before = source.read_bytes()
    with pytest.raises(ValueError, match="is the source checkpoint"):
        package_model(source, tmp_path / "." / "model_final.pt", metrics_path=None, inference_scale=None,
                      training_command="", license_text="")
    assert source.read_bytes() == before


@pytest.mark.parametrize("content", [
    "miou: 0.6\n",  # notes, not JSON
    json.dumps({"checkpoint": "model_final.pt", "datasets": {"camvid_val": {"miou": 0.6}}}),  # evaluate's summary.json
    json.dumps([0.6, 0.9]),
], ids=["text", "summary-json", "json-list"])
def test_a_metrics_file_that_is_not_an_evaluation_report_is_one_line(tmp_path, capsys, content):
    """It used to fail with a JSONDecodeError message without the file's name, or a KeyError traceback."""
    source = save_checkpoint(create_model("tqdm-tiny-rn", pretrained=None, seed=0), tmp_path / "model_final.pt")
    metrics = tmp_path / "summary.json"
    metrics.write_text(content)
    arguments = [str(source), str(tmp_path / "shipped.pt"), "--metrics", str(metrics)]
    with pytest.raises(SystemExit) as exited:
        package_model_main(arguments)
    assert exited.value.code == 2
    error = capsys.readouterr().err
    assert error.startswith(f"python -m training.package_model: error: --metrics file '{metrics}' is not ")
    assert "pass the report.json that `python -m training.evaluate` writes" in error
    assert error.count("\n") == 1 and "Traceback" not in error
    assert not (tmp_path / "shipped.pt").exists()
    with pytest.raises(ValueError, match="is not"):
        package_model_main([*arguments, "--debug"])
