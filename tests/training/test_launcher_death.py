"""Killing torchrun alone (kill -9) ends the two ranks it started, mid-training."""
from __future__ import annotations

import os
import signal
import subprocess
import textwrap
import time
from collections.abc import Callable
from pathlib import Path


from tests.training.conftest import REPO_ROOT, small_config, torchrun_command
from training.run_folder import LOG_FILE

# Run by torchrun in each process: say its pid, then train far longer than the test lasts.
WORKER = textwrap.dedent("""
    import os, sys, yaml
    from training.train_config import TrainConfig
    from training.trainer import Trainer
    config = TrainConfig.from_dict(yaml.safe_load(open(sys.argv[1])))
    with Trainer(config, progress=False) as trainer:
        with open(f"{sys.argv[2]}/rank{trainer.context.rank}.pid", "w") as stream:
            stream.write(str(os.getpid()))
        trainer.train()
""")


def _alive(pid: int) -> bool:
    """Whether ``pid`` is a running process (a zombie, waiting for init to reap it, has ended)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _wait_for(condition: Callable[[], bool], timeout: float) -> bool:
    """Poll ``condition`` every 0.2 s until it holds or ``timeout`` seconds passed; returns its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return condition()


def test_ranks_end_when_torchrun_is_killed(camvid_two_frames, tmp_path):
    folder = tmp_path / "run"
    config = small_config(camvid_two_frames, folder, "batch_size=1", "schedule.iterations=100000",
                          "checkpoint_interval=100000")
    command, environment = torchrun_command(config, WORKER, tmp_path)
    launcher = subprocess.Popen(command, cwd=REPO_ROOT, env=environment, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
    ranks: list[int] = []
    try:
        pid_files = [tmp_path / f"rank{rank}.pid" for rank in (0, 1)]
        started = _wait_for(lambda: all(path.is_file() and path.read_text() for path in pid_files)
                            and (folder / LOG_FILE).is_file() and (folder / LOG_FILE).read_text(), timeout=180)
        assert started, launcher.stderr.read().decode()[-3000:] if launcher.poll() is not None else "no start"
        ranks = [int(path.read_text()) for path in pid_files]
        assert all(_alive(pid) for pid in ranks)

        launcher.kill()
        launcher.wait(timeout=30)

        assert _wait_for(lambda: not any(_alive(pid) for pid in ranks), timeout=20), \
            f"ranks {[pid for pid in ranks if _alive(pid)]} still running 20 s after their launcher was killed"
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
        for pid in ranks:  # only if the test failed: the ranks it started must not outlive it
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        launcher.stderr.close()
