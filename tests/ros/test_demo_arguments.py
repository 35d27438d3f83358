"""The demo refuses a bad scale before it starts anything; --input-scale is a deprecated alias."""
import pathlib

import pytest

from tqdm_ros import demo


@pytest.mark.parametrize('argv', [['--scale', '0.01'], ['--scale', 'half'],
                                  ['--input-scale', '9']])
def test_bad_scale_is_refused_before_anything_starts(argv, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        demo.main(argv)
    assert exit_info.value.code == 2
    assert 'scale' in capsys.readouterr().err
    assert not any(tmp_path.iterdir()), 'the demo created files before refusing its arguments'


def test_input_scale_is_read_as_scale_with_a_notice(monkeypatch, capsys):
    seen = []
    monkeypatch.setattr(demo, 'run_demo', lambda config: seen.append(config) or pathlib.Path())
    assert demo.main(['--input-scale', '0.5']) == 0
    assert demo.main(['--input-scale', '0']) == 0  # the old spelling of "the checkpoint's scale"
    assert [config.scale for config in seen] == [0.5, None]
    assert 'deprecated' in capsys.readouterr().err


def test_default_output_is_under_runs_of_the_working_folder(monkeypatch):
    seen = []
    monkeypatch.setattr(demo, 'run_demo', lambda config: seen.append(config) or pathlib.Path())
    assert demo.main([]) == 0
    assert seen[0].output.parts[:2] == ('runs', 'demo') and not seen[0].output.is_absolute()
    assert seen[0].scale is None
