"""How the demo's segmentation node ended: written at the end of node.log, kept in the report,
and a warning in the summary unless the node shut down on request with exit code 0.

Stand-in processes play the node (no ROS): one that exits 0 on SIGINT, one that exits 3, one
that ignores SIGINT (killed after the grace time) and one that has ended before it is stopped.
"""
import subprocess
import sys
import time

import numpy as np
import pytest
from tqdm_core import ClassTable
from tqdm_core.evaluation import (format_summary, FrameScorer, LabeledImage, ModelInfo,
                                  ScoredFrame)

from tqdm_ros import demo

NODE = '''
import signal, sys, time
signal.signal(signal.SIGINT, {handler})
print('ready', flush=True)
time.sleep(60)
'''


def start(tmp_path, handler: str) -> tuple[subprocess.Popen, object]:
    """Start a stand-in node writing into tmp_path/node.log; return it once it handles SIGINT."""
    log = tmp_path / 'node.log'
    with open(log, 'w') as log_file:
        process = subprocess.Popen([sys.executable, '-c', NODE.format(handler=handler)],
                                   stdout=log_file, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while 'ready' not in log.read_text():
        assert time.monotonic() < deadline and process.poll() is None, log.read_text()
        time.sleep(0.05)
    return process, log


@pytest.mark.parametrize('handler, expected, clean, line', [
    ('lambda *_: sys.exit(0)', demo.NodeExit(returncode=0, stop='SIGINT'), True,
     'the segmentation node shut down on SIGINT with exit code 0'),
    ('lambda *_: sys.exit(3)', demo.NodeExit(returncode=3, stop='SIGINT'), False,
     'the segmentation node exited with code 3 after SIGINT'),
    ('signal.SIG_IGN', demo.NodeExit(returncode=-9, stop='SIGKILL'), False,
     'the segmentation node did not stop after SIGINT and was killed (SIGKILL)'),
])
def test_how_the_node_ended_is_logged(tmp_path, handler, expected, clean, line):
    process, log = start(tmp_path, handler)
    ended = demo._stop(process, log, grace_s=1.0)
    assert ended == expected and ended.clean is clean
    assert log.read_text().splitlines() == ['ready', f'[demo] {line}']


def test_a_node_that_ended_by_itself_is_logged(tmp_path):
    process, log = start(tmp_path, 'signal.SIG_DFL')
    process.terminate()
    process.wait(10)
    ended = demo._stop(process, log)
    assert ended == demo.NodeExit(returncode=-15, stop='none') and not ended.clean
    assert log.read_text().splitlines()[-1] == (
        '[demo] the segmentation node was ended by signal SIGTERM before the demo stopped it')


def small_report():
    """A report of one scored 1x2 frame."""
    table = ClassTable.from_names(['road', 'car'], name='two')
    scorer = FrameScorer(ground_truth_classes=table, model_classes=table, num_frames=1)
    truth = np.zeros((1, 2), np.uint8)
    scorer.add(0, ScoredFrame(sample=LabeledImage(name='a', image=np.zeros((1, 2, 3), np.uint8),
                                                  ground_truth=truth),
                              labels=truth, confidence=np.ones((1, 2), np.float32),
                              latency_ms=1.0))
    return scorer.report(mode='live', source='bag', latency_kind='test',
                         model=ModelInfo(name='m', source='m.pt', trained=True))


def test_an_unclean_end_is_a_warning_in_the_summary():
    ended = demo.NodeExit(returncode=-9, stop='SIGKILL')
    report = demo.with_node_exit(small_report(), ended)
    assert report.run['node_exit'] == {'returncode': -9, 'stop': 'SIGKILL'}
    assert ('**WARNING: the segmentation node did not stop after SIGINT and was killed (SIGKILL); '
            'see node.log.**') in format_summary(report)
    clean = demo.with_node_exit(small_report(), demo.NodeExit(returncode=0, stop='SIGINT'))
    assert clean.run['node_exit'] == {'returncode': 0, 'stop': 'SIGINT'}
    assert 'WARNING' not in format_summary(clean)
