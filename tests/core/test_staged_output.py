"""staged_path: results appear whole at the output path or not at all."""
from __future__ import annotations

import pytest

from tqdm_core.staged_output import staged_path


def test_success_moves_the_staged_folder_to_the_output(tmp_path):
    output = tmp_path / "nested" / "report"
    with staged_path(output) as staging:
        assert staging.name == "report" and not output.exists()
        staging.mkdir()
        (staging / "a.txt").write_text("done")
    assert (output / "a.txt").read_text() == "done"
    assert not (tmp_path / "nested" / ".report.partial").exists()


def test_failure_leaves_neither_output_nor_staging(tmp_path):
    output = tmp_path / "report"
    with pytest.raises(KeyboardInterrupt):
        with staged_path(output) as staging:
            staging.mkdir()
            (staging / "half.txt").write_text("x")
            raise KeyboardInterrupt
    assert sorted(tmp_path.iterdir()) == []


def test_existing_output_is_refused(tmp_path):
    (tmp_path / "report").mkdir()
    with pytest.raises(FileExistsError, match="exists; remove it"):
        with staged_path(tmp_path / "report"):
            pass
