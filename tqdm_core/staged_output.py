"""Output folders that appear whole or not at all: written under a hidden staging name, renamed at the end."""
from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def staged_path(output: Path) -> Iterator[Path]:
    """Yield ``.<name>.partial/<name>`` next to ``output`` (not created), moved to ``output`` if the block succeeds.

    The staged path keeps the final name because some writers name their files after their folder (rosbag2 names
    its storage file after the bag directory). On any exception (Ctrl-C included) the staging folder is removed,
    so ``output`` either holds complete results or does not exist.

    Raises:
        FileExistsError: ``output`` exists already.
    """
    output = Path(output)
    if output.exists():
        raise FileExistsError(f"'{output}' exists; remove it or choose another output path")
    output.parent.mkdir(parents=True, exist_ok=True)
    holder = output.parent / f".{output.name}.partial"
    shutil.rmtree(holder, ignore_errors=True)
    holder.mkdir()
    try:
        yield holder / output.name
        (holder / output.name).rename(output)
    finally:
        shutil.rmtree(holder, ignore_errors=True)
