"""Tests of the recorder: raw bytes into a finished bag, clean stops, nothing left on failure.

Bags are read back by rosbags and by the mcap decoder; latched QoS is kept.
"""
import os
import pathlib
import signal
import subprocess
import sys
import threading
import time

from mcap.reader import make_reader
from mcap_ros2.decoder import DecoderFactory
import numpy as np
import pytest
import rclpy
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import Image
from std_msgs.msg import String

from tqdm_ros.bag.bag_reader import (connections_for, is_latched, iter_labeled_frames,
                                     open_bag)
from tqdm_ros.bag.record import RecordConfig, Recorder

REPO_ROOT = pathlib.Path(__file__).resolve().parents[3]
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)


def _image(index: int) -> Image:
    msg = Image(height=6, width=8, encoding='rgb8', step=24)
    msg.header.stamp.sec, msg.header.frame_id = 100 + index, 'cam'
    msg.data = np.full(6 * 24, index, np.uint8).tobytes()
    return msg


class Talker:
    """Publishes a latched string, then numbered images every 20 ms once a subscriber matched."""

    def __init__(self, context, count, *, wait_for_subscriber_s=10.0):
        self.wait_for_subscriber_s = wait_for_subscriber_s
        self.node = rclpy.create_node('bag_test_talker', context=context)
        self.images = self.node.create_publisher(Image, '/test/image', 10)
        self.table = self.node.create_publisher(String, '/test/table', LATCHED)
        self.table.publish(String(data='classes'))
        self.sent = []
        self.thread = threading.Thread(target=self._run, args=(count,), daemon=True)

    def _run(self, count):
        deadline = time.monotonic() + self.wait_for_subscriber_s
        while self.images.get_subscription_count() == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        if self.images.get_subscription_count() == 0:
            return
        for index in range(count):
            msg = _image(index)
            self.images.publish(msg)
            self.sent.append(msg)
            time.sleep(0.02)

    def close(self):
        self.thread.join(timeout=10.0)
        self.node.destroy_node()


@pytest.mark.parametrize('storage', ['sqlite3', 'mcap'])
def test_record_writes_raw_bytes_into_a_finished_bag(ros_context, tmp_path, storage):
    talker = Talker(ros_context, count=5)
    recorder = Recorder(tmp_path / 'out', context=ros_context,
                        config=RecordConfig(topics=('/test/image', '/test/table'),
                                            storage=storage, max_messages=6))
    talker.thread.start()
    try:
        summary = recorder.run()
    finally:
        recorder.close()
        talker.close()
    assert summary.stop_reason == 'max_messages'
    assert summary.messages == {'/test/image': 5, '/test/table': 1}
    assert not (tmp_path / '.out.partial').exists()
    with open_bag(tmp_path / 'out') as reader:
        (image_conn,) = connections_for(reader, ['/test/image'])
        (table_conn,) = connections_for(reader, ['/test/table'])
        assert is_latched(table_conn) and not is_latched(image_conn)
        recorded = [bytes(raw) for _, _, raw in reader.messages([image_conn])]
        frames = list(iter_labeled_frames(reader, image_topic='/test/image'))
    # Compared as messages: CDR alignment padding is not initialized by the sender's serializer.
    assert [deserialize_message(raw, Image) for raw in recorded] == talker.sent
    assert [int(f.image[0, 0, 0]) for f in frames] == [0, 1, 2, 3, 4]
    if storage == 'mcap':
        with open(tmp_path / 'out' / 'out.mcap', 'rb') as stream:
            decoded = [(channel.topic, msg) for _, channel, _, msg in make_reader(
                stream, decoder_factories=[DecoderFactory()]).iter_decoded_messages()]
        assert [m.data for t, m in decoded if t == '/test/table'] == ['classes']
        assert [m.header.stamp.sec for t, m in decoded if t == '/test/image'] == \
            [100, 101, 102, 103, 104]


def test_topic_without_publisher_times_out_and_leaves_nothing(ros_context, tmp_path):
    recorder = Recorder(tmp_path / 'out', context=ros_context,
                        config=RecordConfig(topics=('/never/published',),
                                            discovery_timeout_s=0.3))
    try:
        with pytest.raises(TimeoutError, match='no publisher of /never/published within 0.3 s'):
            recorder.run()
    finally:
        recorder.close()
    assert sorted(tmp_path.iterdir()) == []


def test_existing_output_and_bad_config_are_refused(ros_context, tmp_path):
    (tmp_path / 'out').mkdir()
    with pytest.raises(FileExistsError, match='exists; remove it'):
        Recorder(tmp_path / 'out', context=ros_context, config=RecordConfig(topics=('/x',)))
    with pytest.raises(ValueError, match='at least one topic'):
        RecordConfig(topics=())
    with pytest.raises(ValueError, match='max_messages must be > 0'):
        RecordConfig(topics=('/x',), max_messages=0)


def test_relative_topic_names_are_the_absolute_ones():
    """The graph and the bag name topics absolutely; a relative name was subscribed again on
    every poll once another topic was still pending, and the bag refused the second connection."""
    assert RecordConfig(topics=('camera/image_raw', '/b')).topics == ('/camera/image_raw', '/b')


def test_cli_record_stops_cleanly_on_ctrl_c(ros_context, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    process = subprocess.Popen(
        [sys.executable, '-m', 'tqdm_ros.bag.cli', 'record', '-o', str(tmp_path / 'out'),
         '--topics', '/test/image', '--storage', 'mcap'],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # The recorder subscribes only after its imports (torch via tqdm_core): wait generously.
    talker = Talker(ros_context, count=3, wait_for_subscriber_s=60.0)
    talker.thread.start()
    try:
        talker.thread.join(timeout=70.0)
        assert len(talker.sent) == 3, 'the recorder process never subscribed'
        # Give the last message time to arrive, then interrupt as a user would.
        time.sleep(0.3)
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=15.0)
    finally:
        if process.poll() is None:
            process.kill()
        talker.close()
    assert process.returncode == 0, stderr
    assert 'recorded 3 messages' in stdout and 'stopped by stopped' in stdout
    with open_bag(tmp_path / 'out') as reader:
        assert [deserialize_message(bytes(raw), Image) for _, _, raw in reader.messages()] == \
            talker.sent
