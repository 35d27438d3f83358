"""Make a torchrun worker end when its launcher dies.

torchrun starts each rank in a session of its own (``start_new_session``), so when torchrun itself is killed (kill -9,
out-of-memory killer, a lost SSH session) nothing reaches the ranks: they would go on training, holding the GPUs and
the run folder's lock. A daemon thread of each rank polls its parent pid and sends the rank SIGTERM as soon as the
parent is gone (the rank is then re-parented to init or a sub-reaper). Checkpoint writes are atomic, so the rank may
die anywhere; ``--resume auto`` continues from the last checkpoint. Polling, unlike Linux's PR_SET_PDEATHSIG, works on
any POSIX system and does not fire when only the launcher thread that started the rank ends.
"""
from __future__ import annotations

import os
import signal
import threading
import time

LAUNCHER_ENVIRONMENT = "TORCHELASTIC_RUN_ID"  # set by torchrun (torch.distributed.run) in every worker it starts
POLL_SECONDS = 1.0


def launched_by_torchrun() -> bool:
    """Whether this process is a rank started by torchrun."""
    return LAUNCHER_ENVIRONMENT in os.environ


def exit_with_launcher(poll_seconds: float = POLL_SECONDS) -> threading.Thread:
    """Start the daemon thread that terminates this process (SIGTERM) once its parent process has exited.

    Call it early in the rank: a launcher that died before the call is noticed only if the rank was re-parented to
    init (pid 1), not to a sub-reaper.

    Args:
        poll_seconds: time between two looks at the parent pid; the rank ends at most this long after its launcher.
    """
    launcher = os.getppid()

    def watch() -> None:
        while launcher != 1 and os.getppid() == launcher:
            time.sleep(poll_seconds)
        os.kill(os.getpid(), signal.SIGTERM)

    thread = threading.Thread(target=watch, name="exit-with-launcher", daemon=True)
    thread.start()
    return thread
