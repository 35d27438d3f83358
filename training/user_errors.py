"""User mistakes in the training command lines: one clear line and exit code 2, the traceback only with --debug.

A wrong path, a missing or truncated checkpoint, an invalid option or config value are the user's to fix; the
message of each of these errors says what was expected and what to do, so a traceback only hides it.
"""
from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import yaml

from tqdm_core.checkpoint import CheckpointError
from tqdm_core.pretrained import PretrainedWeightsUnavailable
from training.run_lock import RunFolderInUse

# ValueError covers the options, config and dataset checks (InvalidOption, EvaluationError are ValueErrors).
USER_ERRORS = (FileNotFoundError, FileExistsError, NotADirectoryError, CheckpointError, PretrainedWeightsUnavailable,
               RunFolderInUse, ValueError, KeyError, yaml.YAMLError)
EXIT_USER_ERROR = 2


@contextmanager
def user_errors_exit(program: str, *, debug: bool) -> Iterator[None]:
    """Turn a `USER_ERRORS` exception into ``<program>: error: <message>`` on stderr and `SystemExit(2)`.

    Args:
        program: the command's name in the message (``python -m training.evaluate``).
        debug: re-raise instead, with the full traceback.
    """
    try:
        yield
    except USER_ERRORS as error:
        if debug:
            raise
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"{program}: error: {message} (--debug shows the traceback)", file=sys.stderr)
        raise SystemExit(EXIT_USER_ERROR) from None
