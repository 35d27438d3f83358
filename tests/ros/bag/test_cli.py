"""tqdm-bag command line: make, info and replay end to end, one-screen summaries, exit codes."""
import signal

import pytest
from sensor_msgs.msg import Image

from tests.ros.bag.conftest import write_camvid
from tests.ros.bag.test_replay import Listener
from tqdm_ros.bag.cli import main


def test_make_then_info(tmp_path, capsys):
    root = write_camvid(tmp_path / 'camvid', 3)
    bag = tmp_path / 'bag'
    assert main(['make', str(root), '-o', str(bag), '--rate', '5', '--storage', 'mcap',
                 '--frame-id', 'front', '--start-time', '1700000000']) == 0
    made = capsys.readouterr().out
    assert ('made 3 frames of 96x72 rgb8 on /camera/image_raw from the camvid layout, with '
            'ground truth (camvid11' in made)
    assert main(['info', str(bag)]) == 0
    info = capsys.readouterr().out
    assert 'storage   mcap' in info
    assert 'start     2023-11-14T22:13:20.000+00:00' in info
    assert '/camera/ground_truth/class_table  std_msgs/msg/String' in info and 'latched' in info
    assert '/camera/image_raw                 sensor_msgs/msg/Image         3 msgs' in info


@pytest.mark.parametrize('argv, message', [
    (['info', '{tmp}/missing'], "no bag at '{tmp}/missing'"),
    (['make', '{tmp}/missing', '-o', '{tmp}/out'], "image source '{tmp}/missing' is not a "
                                                   'directory'),
    (['make', '{tmp}', '-o', '{tmp}/out', '--classes', 'kitti'], "unknown class table 'kitti'"),
])
def test_bad_input_exits_1_with_a_clear_message(tmp_path, capsys, argv, message):
    argv = [a.format(tmp=tmp_path) for a in argv]
    assert main(argv) == 1
    assert message.format(tmp=tmp_path) in capsys.readouterr().err
    assert not (tmp_path / 'out').exists()


@pytest.mark.parametrize('command', ['make', 'evaluate'])
@pytest.mark.parametrize('limit', ['-1', '0', 'all'])
def test_a_limit_below_one_is_refused_by_the_parser(tmp_path, capsys, command, limit):
    """--limit -1 used to write all frames but the last (frames[:-1])."""
    root = write_camvid(tmp_path / 'camvid', 2)
    with pytest.raises(SystemExit) as exit_info:
        main([command, str(root), '-o', str(tmp_path / 'out'), '--limit', limit])
    assert exit_info.value.code == 2
    assert f"argument --limit: expected a whole number >= 1, got '{limit}'" in (
        capsys.readouterr().err)
    assert not (tmp_path / 'out').exists()


@pytest.fixture
def keep_signal_handlers():
    """Give pytest its SIGINT/SIGTERM handlers back after the replay command replaced them."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


def test_replay_command_publishes_remapped_topics(make_test_bag, ros_context, capsys,
                                                  keep_signal_handlers):
    bag = make_test_bag(num_frames=3, rate_hz=20.0)
    listener = Listener(ros_context, [('/front/image', Image, 10)])
    try:
        assert main(['replay', str(bag), '--rate', '2', '--topics', '/camera/image_raw',
                     '--remap', '/camera/image_raw:=/front/image',
                     '--wait-for-subscribers', '10']) == 0
        received = listener.wait_for('/front/image', 3)
    finally:
        listener.close()
    assert len(received) == 3
    out = capsys.readouterr().out
    assert 'replay finished: 3 messages' in out and '/front/image  3 msgs' in out
    assert 'schedule lateness  p50' in out
