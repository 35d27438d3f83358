"""One training run per run folder: ``<output_dir>/train.lock``, held for the whole run, names its owner.

The lock is an ``flock`` on the file, so the kernel releases it when the owning process ends, however it ends
(kill -9 included): a lock can never outlive its run, and a lock file nobody holds is stale by construction, whatever
pid it names (pids are reused). The file's contents (pid, host, start time, command) only make the messages useful: a
second run on the folder is refused with the owner named; a stale file is taken over with a message naming the run
that left it. flock works on local file systems and on NFSv4 (Linux maps it onto NFS byte-range locks).
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import sys
import time
import weakref
from pathlib import Path

logger = logging.getLogger(__name__)

LOCK_FILE = "train.lock"

# The locks this process holds: descriptor -> its release. A forked child (a DataLoader worker) shares the lock with
# its parent; it closes its copy at once and never releases, so that the lock ends with the parent, not with the last
# of its workers.
_held: dict[int, weakref.finalize] = {}


def _close_held_descriptors_in_child() -> None:
    for descriptor, release in _held.items():
        release.detach()
        os.close(descriptor)
    _held.clear()


os.register_at_fork(after_in_child=_close_held_descriptors_in_child)


class RunFolderInUse(RuntimeError):
    """Another live training run holds the run folder's lock."""


def _owner_text(descriptor: int) -> str:
    """'pid 123 on host h since 2024-01-01 12:00:00 (python -m training.train ...)' from a lock file's contents."""
    raw = os.pread(descriptor, 65536, 0).decode("utf-8", errors="replace")
    try:
        owner = json.loads(raw)
        return (f"pid {owner['pid']} on host {owner['host']} since {owner['started']} "
                f"({' '.join(owner['command'])})")
    except (ValueError, KeyError, TypeError):
        return f"owner details unreadable: {raw[:80]!r}" if raw.strip() else ""


def _release(path: Path, descriptor: int) -> None:
    """Remove the lock file (while still holding it, so nobody locks the doomed file), then unlock."""
    try:
        if os.path.samestat(os.fstat(descriptor), os.stat(path)):
            path.unlink()
    except FileNotFoundError:
        pass
    _held.pop(descriptor, None)
    os.close(descriptor)


class RunLock:
    """The exclusive lock of a run folder, taken on construction (the folder is created if needed).

    Released by ``release()``, or when the object is garbage-collected or the interpreter exits; the kernel releases
    it if the process dies.

    Args:
        folder: the run folder.

    Raises:
        RunFolderInUse: a live process holds the folder's lock; the message names it.
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / LOCK_FILE
        while True:
            descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                owner = _owner_text(descriptor)
                os.close(descriptor)
                raise RunFolderInUse(
                    f"run folder '{folder}' is in use by another training run ({owner or 'just starting'}); wait "
                    f"for it to end or stop it, or choose another output_dir") from None
            # The previous owner may have removed the file between our open and our flock: then we locked a file
            # nobody else will ever see, and must start again on the current one.
            try:
                if os.path.samestat(os.fstat(descriptor), os.stat(self.path)):
                    break
            except FileNotFoundError:
                pass
            os.close(descriptor)
        previous = _owner_text(descriptor)
        if previous:
            logger.warning("run folder '%s': taking over the lock file of a run that is no longer running (%s)",
                           folder, previous)
        record = {"pid": os.getpid(), "host": socket.gethostname(),
                  "started": time.strftime("%Y-%m-%d %H:%M:%S"), "command": sys.argv}
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, (json.dumps(record) + "\n").encode(), 0)
        self._finalizer = weakref.finalize(self, _release, self.path, descriptor)
        _held[descriptor] = self._finalizer

    def release(self) -> None:
        """Give the folder up (idempotent)."""
        self._finalizer()
