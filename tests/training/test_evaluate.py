"""training.evaluate on data/camvid_sample: a Cityscapes-19 model scored on CamVid-11 ground truth; its errors."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import tqdm_core
from tqdm_core import Predictor
from tqdm_core.data import build_dataset
from tqdm_core.evaluation import CITYSCAPES_TO_CAMVID_NAMES
from tqdm_core.evaluation.report import PICTURES
from training import evaluate, plot_log

CAMVID_SAMPLE = Path(__file__).resolve().parents[2] / "data" / "camvid_sample"


@pytest.fixture(scope="module")
def cityscapes_checkpoint(tmp_path_factory) -> Path:
    model = tqdm_core.create_model("tqdm-tiny-rn", pretrained=None, seed=3)
    return tqdm_core.save_checkpoint(model, tmp_path_factory.mktemp("model") / "tiny.pt")


def test_evaluate_writes_scores_and_pictures(cityscapes_checkpoint, tmp_path):
    output = tmp_path / "eval"
    assert evaluate.main(["--checkpoint", str(cityscapes_checkpoint), "--dataset", f"camvid:{CAMVID_SAMPLE}:val",
                          "--mode", "whole", "--max-images", "2", "--num-overlays", "2", "--no-progress",
                          "--output-dir", str(output)]) == 0
    report = json.loads((output / "camvid_val" / "report.json").read_text())
    metrics = report["metrics"]
    assert report["frames"]["scored"] == 2 and report["mode"] == "offline" and report["source"] == "camvid_val"
    camvid = tqdm_core.CAMVID_11
    assert metrics["class_names"] == list(camvid.names)
    assert len(metrics["class_mapping"]) == 19  # Cityscapes ids -> CamVid ids (255: no counterpart)
    confusion = np.asarray(metrics["confusion_matrix"])
    assert confusion.shape == (11, 11)
    assert set(metrics["per_class"]) == set(camvid.names)
    assert metrics["pixel_accuracy"] == pytest.approx(np.trace(confusion) / metrics["num_pixels"])

    # The same numbers by hand: Predictor labels, mapped to CamVid by class name, against the labels.
    predictor = Predictor.from_checkpoint(cityscapes_checkpoint, mode="whole")
    to_camvid = np.full(256, 255, dtype=np.int64)
    for model_id, name in enumerate(predictor.class_table.names):
        if name in CITYSCAPES_TO_CAMVID_NAMES:
            to_camvid[model_id] = camvid.names.index(CITYSCAPES_TO_CAMVID_NAMES[name])
    dataset = build_dataset("camvid", CAMVID_SAMPLE, "val")
    correct = labelled = 0
    for index in range(2):
        sample = dataset.load_sample(index)
        predicted = to_camvid[predictor.predict(sample["image"]).labels]
        valid = sample["label"] != 255
        correct += int((predicted[valid] == sample["label"][valid]).sum())
        labelled += int(valid.sum())
    assert metrics["num_pixels"] == labelled
    assert metrics["pixel_accuracy"] == pytest.approx(correct / labelled)

    for picture in PICTURES.values():
        image = cv2.imread(str(output / "camvid_val" / picture))
        assert image is not None and min(image.shape[:2]) >= 100, picture
    assert "| mIoU |" in (output / "camvid_val" / "summary.md").read_text()
    summary = json.loads((output / "summary.json").read_text())
    assert summary["datasets"]["camvid_val"]["miou"] == metrics["miou"]
    assert summary["datasets"]["camvid_val"]["report"] == "camvid_val"


def test_flip_reaches_the_predictor(cityscapes_checkpoint, tmp_path):
    output = tmp_path / "eval"
    assert evaluate.main(["--checkpoint", str(cityscapes_checkpoint), "--dataset", f"camvid:{CAMVID_SAMPLE}:val",
                          "--mode", "whole", "--max-images", "1", "--num-overlays", "1", "--no-progress",
                          "--flip", "--output-dir", str(output)]) == 0
    report = json.loads((output / "camvid_val" / "report.json").read_text())
    assert report["model"]["details"]["flip"] is True
    sample = build_dataset("camvid", CAMVID_SAMPLE, "val").load_sample(0)
    image = sample["image"][None]
    flipped = Predictor.from_checkpoint(cityscapes_checkpoint, mode="whole", flip=True).scores(image)
    plain = Predictor.from_checkpoint(cityscapes_checkpoint, mode="whole").scores(image)
    assert not torch.equal(flipped, plain)  # the option changes what is scored


def test_test_scale_sizes_share_one_network(cityscapes_checkpoint):
    """A dataset of many image sizes (Mapillary) must not build a model copy per resize factor."""
    checkpoint = tqdm_core.load_checkpoint(cityscapes_checkpoint)
    scaled = evaluate.ScaledPredictor(checkpoint, (2048, 1024), tqdm_core.InferenceOptions(precision="fp32"))
    sizes = [(3000, 4000), (2448, 3264), (1024, 2048), (600, 800)]
    predictors = [scaled.predictor(height, width) for height, width in sizes]
    assert [round(p.scale, 4) for p in predictors] == [0.3413, 0.4183, 1.0, 1.7067]
    assert len({id(p._network) for p in predictors}) == 1


def test_dataset_specs_with_options_and_their_errors():
    spec = evaluate.DatasetSpec.parse("camvid:/data/camvid:val:sequences=[0016E5,0006R0]:classes=camvid11")
    assert spec == evaluate.DatasetSpec("camvid", "/data/camvid", "val",
                                        {"sequences": ["0016E5", "0006R0"], "classes": "camvid11"})
    assert spec.label == "camvid_val_sequences-0016E5+0006R0_classes-camvid11"
    assert evaluate.DatasetSpec.parse("camvid:/data/camvid:classes=camvid11").split is None
    assert evaluate.DatasetSpec.parse("camvid:/d:val") == evaluate.DatasetSpec("camvid", "/d", "val")
    for text in ("camvid", "camvid:", "camvid:/d::x=1", "camvid:/d:val:x", "camvid:/d:val:=3"):
        with pytest.raises(Exception, match=r"NAME:ROOT\[:SPLIT\]\[:KEY=VALUE\]"):
            evaluate.DatasetSpec.parse(text)
    with pytest.raises(Exception, match="unknown dataset 'kitti'"):
        evaluate.DatasetSpec.parse("kitti:/data/kitti")
    with pytest.raises(ValueError, match=r"sets \['colour'\], which dataset 'camvid' does not take; the options "):
        evaluate.DatasetSpec.parse(f"camvid:{CAMVID_SAMPLE}:val:colour=red").build()


def test_a_bare_sequence_name_selects_that_recording():
    """``sequences=0016E5`` (YAML reads a string, not a list) is one recording, not six one-letter ones."""
    assert len(evaluate.DatasetSpec.parse(f"camvid:{CAMVID_SAMPLE}:val:sequences=0016E5").build()) == 6
    assert len(evaluate.DatasetSpec.parse(f"camvid:{CAMVID_SAMPLE}:val:sequences=[0016E5]").build()) == 6


def test_user_mistakes_print_one_line_and_exit_2(cityscapes_checkpoint, tmp_path, capsys, monkeypatch):
    """A truncated checkpoint, a missing dataset, an invalid option: one line on stderr, exit code 2, nothing
    written; --debug shows the traceback (the exception itself)."""
    monkeypatch.chdir(tmp_path)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(cityscapes_checkpoint.read_bytes()[:4096])
    dataset = f"camvid:{CAMVID_SAMPLE}:val"
    taken = tmp_path / "taken"
    (taken / "camvid_val").mkdir(parents=True)  # an earlier report: refused before scoring
    for arguments, message in (
            (["--checkpoint", str(truncated), "--dataset", dataset], f"checkpoint '{truncated}' is truncated or "
                                                                     "corrupt"),
            (["--checkpoint", str(cityscapes_checkpoint), "--dataset", "camvid:/nowhere:val"], "/nowhere"),
            (["--checkpoint", str(cityscapes_checkpoint), "--dataset", dataset, "--scale", "0.01"],
             "'--scale' must be in [0.05, 8.0], got 0.01"),
            (["--checkpoint", str(cityscapes_checkpoint), "--dataset", dataset, "--dataset", dataset],
             "--dataset names camvid_val more than once"),
            (["--checkpoint", str(cityscapes_checkpoint), "--dataset", dataset, "--output-dir", str(taken)],
             f"{taken / 'camvid_val'} already exists")):
        with pytest.raises(SystemExit) as exited:
            evaluate.main([*arguments, "--no-progress"])
        assert exited.value.code == 2
        error = capsys.readouterr().err
        assert error.startswith("python -m training.evaluate: error: ") and message in error
        assert error.count("\n") == 1 and "Traceback" not in error
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken", "truncated.pt"]
    assert [p.name for p in taken.iterdir()] == ["camvid_val"]
    with pytest.raises(tqdm_core.CheckpointError, match="truncated or corrupt"):
        evaluate.main(["--checkpoint", str(truncated), "--dataset", dataset, "--debug"])


def test_an_undecodable_image_is_named_with_a_remedy(cityscapes_checkpoint, tmp_path, capsys):
    """The frame is reached after the ones before it were scored: one line naming the file and what to do, exit
    code 2, no report (as training names an unreadable sample)."""
    root = tmp_path / "camvid"
    shutil.copytree(CAMVID_SAMPLE, root)
    broken = root / "val" / "0016E5_07999.png"  # the second frame of val.txt
    broken.write_bytes(b"not a png" * 100)
    output = tmp_path / "eval"
    with pytest.raises(SystemExit) as exited:
        evaluate.main(["--checkpoint", str(cityscapes_checkpoint), "--dataset", f"camvid:{root}:val", "--mode",
                       "whole", "--max-images", "2", "--no-progress", "--output-dir", str(output)])
    assert exited.value.code == 2
    error = capsys.readouterr().err
    assert error.startswith("python -m training.evaluate: error: cannot score frame 1 of camvid_val: could not "
                            f"decode image '{broken}'")
    assert "replace that file with a readable, matching copy (or remove the frame from the dataset)" in error
    assert error.count("\n") == 1 and "Traceback" not in error
    assert not output.exists()


def test_default_output_is_under_runs_of_the_working_folder(cityscapes_checkpoint, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert evaluate.main(["--checkpoint", str(cityscapes_checkpoint), "--dataset", f"camvid:{CAMVID_SAMPLE}:val",
                          "--mode", "whole", "--max-images", "1", "--num-overlays", "1", "--no-progress"]) == 0
    (run,) = (tmp_path / "runs" / "eval").iterdir()
    assert run.name.startswith("tiny-") and (run / "camvid_val" / "report.json").is_file()
    assert not list(cityscapes_checkpoint.parent.glob("eval_*"))


def test_plot_log_draws_a_png(tmp_path):
    records = [{"iteration": i, "lr": {"backbone": 1e-6, "head": 1e-5 / i}, "losses": {
        "total": 50.0 / i, "loss_cls": 2.0 / i, "loss_mask": 1.0, "loss_dice": 3.0}} for i in range(1, 6)]
    records.append({"iteration": 5, "validation": {"miou": 0.3, "pixel_accuracy": 0.8, "dataset": "camvid:val"}})
    records.insert(2, {"iteration": 2, "time": 0.0, "config_changes": {"optimizer.lr": [1e-3, 2e-4]}})  # a resume
    (tmp_path / "log.jsonl").write_text("".join(json.dumps(record) + "\n" for record in records))
    path = plot_log.plot_log(tmp_path)
    image = cv2.imread(str(path))
    assert image is not None and image.shape[:2] == (800, 1200)
    with pytest.raises(FileNotFoundError, match="log.jsonl"):
        plot_log.plot_log(tmp_path / "missing")
