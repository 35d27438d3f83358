"""A run folder left by a crash (torn checkpoint, temporary files, torn log line), a mistyped folder, a run folder
given to --resume, and two runs on one folder: each is repaired, refused or resumed as training.trainer documents."""
from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.training.conftest import SCALE, small_config
from tests.training.test_resume import RANDOM_RECIPE, assert_same_weights, run
from tqdm_core import CheckpointError
from training import train
from training.run_folder import LOG_FILE, checkpoint_path, list_checkpoints
from training.run_lock import LOCK_FILE, RunFolderInUse, RunLock
from training.trainer import Trainer

REPO_ROOT = Path(__file__).resolve().parents[2]
SIX_ITERATIONS = (*RANDOM_RECIPE, "schedule.iterations=6")


def _truncate(path: Path) -> None:
    """Keep the first half of a file, as a copy or a file system that lost the rest would."""
    path.write_bytes(path.read_bytes()[:path.stat().st_size // 2])


def _flip_a_byte(path: Path) -> None:
    """Invert one byte in the middle of a file (inside a tensor's data), as a failing disk block would."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _logged_iterations(folder: Path) -> list[int]:
    return [json.loads(line)["iteration"] for line in (folder / LOG_FILE).read_text().splitlines()]


# ----------------------------------------------------------------------------------------------------------------
# Unreadable checkpoints


def test_resume_auto_falls_back_past_a_truncated_checkpoint(camvid_two_frames, tmp_path, caplog):
    uninterrupted = run(small_config(camvid_two_frames, tmp_path / "a", *SIX_ITERATIONS))
    folder = tmp_path / "b"
    run(small_config(camvid_two_frames, folder, *SIX_ITERATIONS), stop_at=4)
    torn = checkpoint_path(folder, 4)
    _truncate(torn)

    caplog.set_level(logging.WARNING)
    resumed = run(small_config(camvid_two_frames, folder, *SIX_ITERATIONS), resume="auto")

    assert_same_weights(uninterrupted, resumed)  # it went on from iteration 2, exactly
    warnings = caplog.text
    assert f"checkpoint '{torn}' is unreadable" in warnings
    assert f"resuming from '{checkpoint_path(folder, 2)}' (iteration 2)" in warnings
    assert "set aside as 'iter_0000004.pt.corrupt'" in warnings
    assert torn.with_name("iter_0000004.pt.corrupt").is_file()
    assert [path.name for path in list_checkpoints(folder)] == ["iter_0000002.pt", "iter_0000004.pt",
                                                                 "iter_0000006.pt"]
    assert _logged_iterations(folder) == [1, 2, 3, 4, 5, 6]


@pytest.mark.parametrize(("damage", "found"), [(_truncate, "is truncated or corrupt"),
                                               (_flip_a_byte, "is corrupt: its record '.*' fails its CRC-32 check")],
                         ids=["truncated", "flipped-byte"])
def test_resume_from_a_damaged_checkpoint_file_names_it(camvid_two_frames, tmp_path, damage, found):
    config = small_config(camvid_two_frames, tmp_path / "run", *RANDOM_RECIPE)
    run(config, stop_at=2)
    damaged = checkpoint_path(tmp_path / "run", 2)
    damage(damaged)
    with pytest.raises(CheckpointError, match=f"cannot resume: checkpoint '{damaged}' {found}"):
        Trainer(config, resume=str(damaged), progress=False)


def test_resume_auto_stops_when_no_checkpoint_reads(camvid_two_frames, tmp_path):
    config = small_config(camvid_two_frames, tmp_path / "run", *SIX_ITERATIONS)
    run(config, stop_at=4)
    for iteration in (2, 4):
        _truncate(checkpoint_path(tmp_path / "run", iteration))
    with pytest.raises(CheckpointError, match=r"no checkpoint of .* is readable \(iter_0000004.pt, iter_0000002.pt"):
        Trainer(config, resume="auto", progress=False)
    assert len(list_checkpoints(tmp_path / "run")) == 2  # nothing renamed: the user decides
    assert not (tmp_path / "run" / LOCK_FILE).exists()  # the failed start released the folder


# ----------------------------------------------------------------------------------------------------------------
# Debris of interrupted writes


def test_stale_temporary_files_are_removed_on_resume(camvid_two_frames, tmp_path, caplog):
    folder = tmp_path / "run"
    config = small_config(camvid_two_frames, folder, *RANDOM_RECIPE)
    run(config, stop_at=2)
    stale = [folder / "checkpoints" / ".iter_0000004.pt.4242.0123456789abcdef.tmp",
             folder / ".model_final.pt.4242.ab.tmp", folder / ".log.jsonl.tmp", folder / ".log.jsonl.4242.ab.tmp",
             folder / ".config.yaml.4242.ab.tmp", folder / "rcs_class_pixels.json.4242.tmp"]
    for path in stale:
        path.write_bytes(b"\0" * 1000)
    unrelated = folder / "notes.tmp"
    unrelated.write_text("mine")

    caplog.set_level(logging.WARNING)
    with Trainer(config, resume="auto", progress=False) as trainer:
        assert trainer.start_iteration == 2
    assert not any(path.exists() for path in stale)
    assert unrelated.read_text() == "mine"
    assert "removing 6 temporary file(s) of interrupted writes" in caplog.text
    assert "checkpoints/.iter_0000004.pt.4242.0123456789abcdef.tmp" in caplog.text


# ----------------------------------------------------------------------------------------------------------------
# A folder to resume that holds no run


@pytest.mark.parametrize("state", ["missing", "empty"])
def test_resume_auto_refuses_a_folder_without_a_run(camvid_two_frames, tmp_path, state):
    run(small_config(camvid_two_frames, tmp_path / "camvid_run", *RANDOM_RECIPE), stop_at=2)
    mistyped = tmp_path / "camvid_rnu"
    if state == "empty":
        mistyped.mkdir()
    with pytest.raises(FileNotFoundError) as error:
        Trainer(small_config(camvid_two_frames, mistyped, *RANDOM_RECIPE), resume="auto", progress=False)
    message = str(error.value)
    assert f"nothing to resume: run folder '{mistyped}'" in message
    assert ("does not exist" if state == "missing" else "holds no run") in message
    assert f"(did you mean '{tmp_path / 'camvid_run'}'?)" in message
    assert "leave out --resume to start a new run there" in message
    assert mistyped.exists() == (state == "empty")  # nothing created
    if state == "empty":
        assert not any(mistyped.iterdir())


def test_resume_auto_restarts_a_run_killed_before_its_first_checkpoint(camvid_two_frames, tmp_path, caplog):
    folder = tmp_path / "run"
    config = small_config(camvid_two_frames, folder, *RANDOM_RECIPE)
    Trainer(config, progress=False).close()  # started (config.yaml written), killed before any checkpoint
    (folder / LOG_FILE).write_text(json.dumps({"iteration": 1, "losses": {}}) + "\n")
    caplog.set_level(logging.WARNING)
    with Trainer(config, resume="auto", progress=False) as trainer:
        assert trainer.start_iteration == 0
    assert "holds a run without any checkpoint yet" in caplog.text
    assert "starting it again from iteration 0" in caplog.text
    assert (folder / LOG_FILE).read_text() == ""


# ----------------------------------------------------------------------------------------------------------------
# log.jsonl


@pytest.mark.parametrize("torn", [b'{"iteration": 3, "time": 17', b"\0" * 4096], ids=["partial-json", "nul-bytes"])
def test_a_torn_last_log_line_is_dropped_on_resume(camvid_two_frames, tmp_path, caplog, torn):
    folder = tmp_path / "run"
    run(small_config(camvid_two_frames, folder, *RANDOM_RECIPE), stop_at=2)
    with open(folder / LOG_FILE, "ab") as log:
        log.write(torn)
    caplog.set_level(logging.WARNING)
    run(small_config(camvid_two_frames, folder, *RANDOM_RECIPE), resume="auto")
    assert f"'{folder / LOG_FILE}': dropping its torn last line ({len(torn)} bytes" in caplog.text
    assert _logged_iterations(folder) == [1, 2, 3, 4]


def test_a_damaged_log_line_before_the_last_is_an_error(camvid_two_frames, tmp_path):
    folder = tmp_path / "run"
    config = small_config(camvid_two_frames, folder, *RANDOM_RECIPE)
    run(config, stop_at=2)
    lines = (folder / LOG_FILE).read_text().splitlines()
    (folder / LOG_FILE).write_text(f"{lines[0]}\n{{\"iter\n{lines[1]}\n")
    with pytest.raises(ValueError, match=f"line 2 of '{folder / LOG_FILE}' is not a JSON record"):
        Trainer(config, resume="auto", progress=False)


# ----------------------------------------------------------------------------------------------------------------
# --resume RUN_FOLDER


def test_resume_from_another_run_folder_starts_from_its_newest_checkpoint(camvid_two_frames, tmp_path):
    run(small_config(camvid_two_frames, tmp_path / "first", *SIX_ITERATIONS), stop_at=4)
    with Trainer(small_config(camvid_two_frames, tmp_path / "branch", *SIX_ITERATIONS), resume=str(tmp_path / "first"),
                 progress=False) as trainer:
        assert trainer.start_iteration == 4
    assert not (tmp_path / "branch" / "checkpoints").exists()


def test_train_resumes_a_run_folder_alone(camvid_two_frames, tmp_path, capsys):
    """``python -m training.train --resume FOLDER``: the folder's config.yaml, the run continued in that folder.

    The folder is a moved copy (its config.yaml still names the original folder), and the run ends as the
    uninterrupted one.
    """
    uninterrupted = run(small_config(camvid_two_frames, tmp_path / "a", *RANDOM_RECIPE))
    run(small_config(camvid_two_frames, tmp_path / "b", *RANDOM_RECIPE), stop_at=2)
    moved = tmp_path / "moved"
    shutil.copytree(tmp_path / "b", moved)

    assert train.main(["--resume", str(moved), "--no-progress"]) == 0

    assert f"run folder        {moved}" in capsys.readouterr().out
    assert_same_weights(uninterrupted, {"model_path": moved / "model_final.pt"})
    assert not (tmp_path / "b" / "model_final.pt").exists()


# ----------------------------------------------------------------------------------------------------------------
# One run per folder


def test_a_second_run_on_a_folder_in_use_is_refused(camvid_two_frames, tmp_path):
    config = small_config(camvid_two_frames, tmp_path / "run", *RANDOM_RECIPE)
    with Trainer(config, progress=False):
        assert json.loads((tmp_path / "run" / LOCK_FILE).read_text())["pid"] == os.getpid()
        with pytest.raises(RunFolderInUse, match=f"in use by another training run \\(pid {os.getpid()} on host"):
            Trainer(config, resume="auto", progress=False)
    assert not (tmp_path / "run" / LOCK_FILE).exists()
    run(config, resume="auto", stop_at=1)  # free again


def test_the_lock_of_another_live_process_is_named(camvid_two_frames, tmp_path):
    folder = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from training.run_lock import RunLock; lock = RunLock(sys.argv[1]); "
                               "print('locked', flush=True); sys.stdin.read()", str(folder)],
        cwd=REPO_ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "locked\n"
        with pytest.raises(RunFolderInUse, match=f"'{folder}' is in use by another training run \\(pid {holder.pid} "):
            Trainer(small_config(camvid_two_frames, folder, *RANDOM_RECIPE), progress=False)
    finally:
        holder.communicate(timeout=30)
    assert holder.returncode == 0
    assert not (folder / LOCK_FILE).exists()  # released at the holder's exit


def test_a_stale_lock_is_taken_over_with_a_message(camvid_two_frames, tmp_path, caplog):
    folder = tmp_path / "run"
    folder.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    dead_pid = int(dead.stdout)
    (folder / LOCK_FILE).write_text(json.dumps({"pid": dead_pid, "host": "h", "started": "then",
                                                "command": ["python", "-m", "training.train"]}))
    caplog.set_level(logging.WARNING)
    with Trainer(small_config(camvid_two_frames, folder, *RANDOM_RECIPE), progress=False):
        assert json.loads((folder / LOCK_FILE).read_text())["pid"] == os.getpid()
    assert "taking over the lock file of a run that is no longer running" in caplog.text
    assert f"pid {dead_pid} on host h since then (python -m training.train)" in caplog.text


def test_the_lock_ends_with_its_process_not_with_forked_workers(tmp_path):
    """A process holding the lock forks a child (as DataLoader workers are), then is killed: the lock is free."""
    script = ("import os, sys, time\n"
              "from training.run_lock import RunLock\n"
              "lock = RunLock(sys.argv[1])\n"
              "if os.fork() == 0:  # the worker says its pid once its fork handlers have run\n"
              "    print(os.getpid(), flush=True)\n"
              "time.sleep(60)\n")
    holder = subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "run")], cwd=REPO_ROOT,
                              stdout=subprocess.PIPE, text=True)
    worker = int(holder.stdout.readline())
    try:
        holder.kill()
        holder.wait(timeout=30)
        assert Path(f"/proc/{worker}").exists()  # the worker lives on (it closed its copy of the lock at fork)
        RunLock(tmp_path / "run").release()
    finally:
        os.kill(worker, signal.SIGKILL)


def test_class_table_mismatch_is_refused_before_anything_is_written(camvid_two_frames, tmp_path):
    """The model predicts Cityscapes-19, the labels are CamVid-11: refused before the RCS statistics are cached."""
    config = small_config(camvid_two_frames, tmp_path / "runs" / "run", "model_overrides={}",
                          "rare_class_sampling.enabled=true")
    with pytest.raises(ValueError, match="the model predicts cityscapes19 classes"):
        Trainer(config, progress=False)
    assert not (tmp_path / "runs").exists(), "a refused run left the folders it created"


def test_a_refused_run_keeps_a_folder_that_existed(camvid_two_frames, tmp_path):
    (tmp_path / "run").mkdir()
    config = small_config(camvid_two_frames, tmp_path / "run", "model_overrides={}")
    with pytest.raises(ValueError, match="the model predicts cityscapes19 classes"):
        Trainer(config, progress=False)
    assert (tmp_path / "run").is_dir() and not any((tmp_path / "run").iterdir())


# ----------------------------------------------------------------------------------------------------------------
# Refusals and errors that must not cost work or change the run folder


def test_an_error_while_validating_keeps_the_checkpoint_of_that_iteration(camvid_two_frames, tmp_path):
    """The checkpoint due at an iteration is written before that iteration's validation: an unreadable validation
    image costs no training, and the resumed run validates that iteration first, once."""
    for folder in ("val", "valannot"):
        shutil.copytree(camvid_two_frames / f"train{folder[3:]}", camvid_two_frames / folder)
    broken = sorted((camvid_two_frames / "val").glob("*.png"))[0]
    image = broken.read_bytes()
    broken.write_bytes(b"not a png")
    folder = tmp_path / "run"
    validated = (*RANDOM_RECIPE, f"validation.dataset={{name: camvid, root: '{camvid_two_frames}', split: val}}",
                 "validation.mode=whole", f"validation.scale={SCALE}", "validation.interval=2")
    with pytest.raises(ValueError, match=f"could not decode image '{broken}'"):
        run(small_config(camvid_two_frames, folder, *validated))
    assert [path.name for path in list_checkpoints(folder)] == ["iter_0000002.pt"]

    broken.write_bytes(image)
    summary = run(small_config(camvid_two_frames, folder, *validated), resume="auto")
    records = [json.loads(line) for line in (folder / LOG_FILE).read_text().splitlines()]
    assert [record["iteration"] for record in records if "validation" in record] == [2, 4]
    assert summary["validation"]["miou"] == records[-1]["validation"]["miou"]


def test_a_validation_window_the_model_cannot_use_is_refused_at_start(camvid_two_frames, tmp_path):
    config = small_config(camvid_two_frames, tmp_path / "run", "validation.window=100", "validation.stride=64",
                          f"validation.dataset={{name: camvid, root: '{camvid_two_frames}', split: train}}")
    with pytest.raises(ValueError, match="validation.window must be a multiple of 32 \\(the model's size divisor\\), "
                                         "got 100"):
        Trainer(config, progress=False)
    assert not (tmp_path / "run").exists()


def test_resuming_an_earlier_checkpoint_sets_the_abandoned_continuation_aside(camvid_two_frames, tmp_path, caplog):
    """A run resumed from an explicit earlier checkpoint (say with a lower LR) and interrupted again must continue
    with --resume auto from its own newest checkpoint, not from the abandoned run's; nothing is deleted."""
    folder = tmp_path / "run"
    first = run(small_config(camvid_two_frames, folder, *RANDOM_RECIPE))  # checkpoints 2 and 4, model_final.pt
    first_log = (folder / LOG_FILE).read_text()
    caplog.set_level(logging.WARNING)
    run(small_config(camvid_two_frames, folder, *RANDOM_RECIPE, "optimizer.lr=2e-4"),
        resume=str(checkpoint_path(folder, 2)), stop_at=3)

    [abandoned] = (folder / "checkpoints").glob("abandoned_*")
    assert sorted(path.name for path in abandoned.iterdir()) == ["config.yaml", "iter_0000004.pt", "log.jsonl",
                                                                 "model_final.pt"]
    assert (abandoned / LOG_FILE).read_text() == first_log
    assert "optimizer:\n  lr: 0.001\n" in (abandoned / "config.yaml").read_text()
    assert not Path(first["model_path"]).exists()
    assert [path.name for path in list_checkpoints(folder)] == ["iter_0000002.pt", "iter_0000003.pt"]
    assert (f"its continuation after iteration 2 is abandoned; moved iter_0000004.pt, model_final.pt and copies of "
            f"config.yaml and log.jsonl as they were to '{abandoned}'") in caplog.text
    assert _logged_iterations(folder) == [1, 2, 2, 3]  # the second 2 is the record of the config change
    with Trainer(small_config(camvid_two_frames, folder, *RANDOM_RECIPE, "optimizer.lr=2e-4"), resume="auto",
                 progress=False) as trainer:
        assert trainer.start_iteration == 3


def test_a_refused_stop_at_changes_nothing_in_the_run_folder(camvid_two_frames, tmp_path, capsys):
    folder = tmp_path / "run"
    run(small_config(camvid_two_frames, folder, *RANDOM_RECIPE), stop_at=2)
    before = {path: path.read_bytes() for path in (folder / "config.yaml", folder / LOG_FILE)}
    with pytest.raises(SystemExit) as exited:
        train.main(["--resume", str(folder), "--stop-at", "1", "optimizer.lr=2e-4"])
    assert exited.value.code == 2
    assert {path: path.read_bytes() for path in before} == before
    assert ("nothing to do: the run is at iteration 2 and would stop at 1; pass a --stop-at after 2"
            in capsys.readouterr().err)


def test_a_model_config_mismatch_names_the_field_and_the_run_config(camvid_two_frames, tmp_path):
    run(small_config(camvid_two_frames, tmp_path / "first", *RANDOM_RECIPE), stop_at=2)
    checkpoint = checkpoint_path(tmp_path / "first", 2)
    with pytest.raises(ValueError) as error:
        Trainer(small_config(camvid_two_frames, tmp_path / "second", *RANDOM_RECIPE, "model_overrides={}"),
                resume=str(checkpoint), progress=False)
    assert str(error.value) == (
        f"cannot resume '{checkpoint}': its model differs from the config's: model_overrides.class_table 'camvid11' "
        f"(checkpoint) vs 'cityscapes19' (now); resume with the preset and model_overrides the run started with (as "
        f"in '{tmp_path / 'first' / 'config.yaml'}')")


def test_config_yaml_is_replaced_atomically(camvid_two_frames, tmp_path, monkeypatch):
    """A write that fails (a full disk, here at its fsync) leaves the previous config.yaml whole: an empty one
    would make ``--resume FOLDER`` lose the run's config."""
    folder = tmp_path / "run"
    run(small_config(camvid_two_frames, folder, *RANDOM_RECIPE), stop_at=2)
    saved = (folder / "config.yaml").read_text()

    def full_disk(descriptor: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space left on device"):
        Trainer(small_config(camvid_two_frames, folder, *RANDOM_RECIPE, "optimizer.lr=2e-4"), resume="auto",
                progress=False)
    assert (folder / "config.yaml").read_text() == saved
    assert not list(folder.glob(".config.yaml*.tmp"))
