"""The demo refuses a bad scale, frame count or rate before it starts anything; --input-scale is a
deprecated alias."""
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


@pytest.mark.parametrize('argv, message', [
    (['--frames', '-1'], 'frames'), (['--frames', '0'], 'frames'), (['--frames', 'two'], 'frames'),
    (['--rate', '0'], 'rate'), (['--rate', '-2'], 'rate'), (['--rate', 'fast'], 'rate')])
def test_bad_frames_or_rate_are_refused_before_anything_starts(argv, message, tmp_path,
                                                               monkeypatch, capsys):
    """--frames -1 used to score 5 of 6 frames (frames[:-1]); --rate 0 was refused only after
    the bag was made and the node had loaded its model."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(demo, 'run_demo', lambda config: pytest.fail('the demo started'))
    with pytest.raises(SystemExit) as exit_info:
        demo.main(argv)
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert f'argument --{message}' in error and argv[1] in error
    assert not any(tmp_path.iterdir()), 'the demo created files before refusing its arguments'


def test_input_scale_is_read_as_scale_with_a_notice(monkeypatch, capsys):
    seen = []
    monkeypatch.setattr(demo, 'run_demo', lambda config: seen.append(config) or pathlib.Path())
    assert demo.main(['--input-scale', '0.5']) == 0
    assert demo.main(['--input-scale', '0']) == 0  # the old spelling of "the checkpoint's scale"
    assert [config.scale for config in seen] == [0.5, None]
    assert 'deprecated' in capsys.readouterr().err


def test_default_output_is_under_runs_of_the_working_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    seen = []
    monkeypatch.setattr(demo, 'run_demo', lambda config: seen.append(config) or pathlib.Path())
    assert demo.main([]) == 0
    assert seen[0].output.parent == tmp_path / 'runs' / 'demo'
    assert seen[0].scale is None


def test_paths_are_read_in_the_working_folder_and_printed_absolute(tmp_path, monkeypatch,
                                                                  capsys):
    """`-o myout --checkpoint model.pt` given in a folder mean that folder's files, though the
    node runs in the repository; the final message names the folder by its absolute path."""
    monkeypatch.chdir(tmp_path)
    seen = []
    monkeypatch.setattr(demo, 'run_demo', lambda config: seen.append(config) or config.output)
    assert demo.main(['-o', 'myout', '--checkpoint', 'model.pt']) == 0
    assert seen[0].output == tmp_path / 'myout'
    assert capsys.readouterr().out.rstrip().endswith(
        f'report and pictures in {tmp_path / "myout"}')
    assert f'checkpoint:={tmp_path / "model.pt"}' in demo.node_command(seen[0])
    assert 'checkpoint:=default' in demo.node_command(demo.DemoConfig(output=tmp_path))
