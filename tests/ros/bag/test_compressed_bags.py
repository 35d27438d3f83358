"""Bags whose camera topic is sensor_msgs/CompressedImage: make, read, replay, record.

``tqdm-bag make --compressed png|jpeg`` writes the frames as image_transport's compressed plugin
records them (``/camera/image_raw/compressed``); PNG keeps every pixel, JPEG nearly. The player
and the recorder move the compressed bytes unchanged.
"""
import pathlib
import threading

import cv2
from mcap.reader import make_reader
from mcap_ros2.decoder import DecoderFactory
import numpy as np
import pytest
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import CompressedImage

from tests.ros.bag.conftest import read_rgb
from tqdm_ros.bag.bag_reader import (
    BagError, COMPRESSED_IMAGE_TYPE, connections_for, iter_labeled_frames, open_bag,
    resolve_camera_topic, summarize_bag)
from tqdm_ros.bag.cli import main as cli_main
from tqdm_ros.bag.make_bag import find_frames, make_bag, MakeBagConfig
from tqdm_ros.bag.record import RecordConfig, Recorder
from tqdm_ros.bag.replay import BagPlayer, ReplayConfig

COMPRESSED_TOPIC = '/camera/image_raw/compressed'
SAMPLE = pathlib.Path(__file__).resolve().parents[3] / 'data' / 'camvid_sample'


def frames_of(bag, camera_topic='/camera/image_raw'):
    with open_bag(bag) as reader:
        topic = resolve_camera_topic(reader, camera_topic)
        return list(iter_labeled_frames(reader, image_topic=topic,
                                        label_topic='/camera/ground_truth'))


def test_png_bag_holds_the_same_frames_as_the_raw_bag(make_test_bag):
    raw = frames_of(make_test_bag('raw'))
    png_bag = make_test_bag('png', compression='png', storage='mcap')
    png = frames_of(png_bag)
    assert len(png) == len(raw) == 4
    for compressed, reference in zip(png, raw):
        assert compressed.stamp_ns == reference.stamp_ns
        np.testing.assert_array_equal(compressed.image, reference.image)
        np.testing.assert_array_equal(compressed.label, reference.label)
    topics = {t.name: t for t in summarize_bag(png_bag).topics}
    assert topics[COMPRESSED_TOPIC].msgtype == COMPRESSED_IMAGE_TYPE
    assert '/camera/image_raw' not in topics
    assert topics['/camera/ground_truth'].msgtype == 'sensor_msgs/msg/Image'
    # The independent MCAP decoder reads the same PNG streams.
    with open(png_bag / 'png.mcap', 'rb') as stream:
        decoded = [msg for _, channel, _, msg in make_reader(
            stream, decoder_factories=[DecoderFactory()]).iter_decoded_messages()
            if channel.topic == COMPRESSED_TOPIC]
    assert [m.format for m in decoded] == ['rgb8; png compressed bgr8'] * 4
    bgr = cv2.imdecode(np.frombuffer(bytes(decoded[0].data), np.uint8), cv2.IMREAD_COLOR)
    np.testing.assert_array_equal(bgr[:, :, ::-1], raw[0].image)


def test_jpeg_bag_frames_are_close_to_the_originals(tmp_path):
    result = make_bag(find_frames(SAMPLE), tmp_path / 'jpeg', limit=2,
                      config=MakeBagConfig(compression='jpeg', jpeg_quality=90))
    assert (result.camera_topic, result.compression) == (COMPRESSED_TOPIC, 'jpeg')
    frames = frames_of(result.path)
    originals = [read_rgb(p) for p in sorted((SAMPLE / 'val').glob('*.png'))[:2]]
    assert len(frames) == 2
    for frame, original in zip(frames, originals):
        assert frame.image.shape == original.shape == (360, 480, 3)
        difference = np.abs(frame.image.astype(int) - original)
        assert 0 < difference.mean() < 3  # lossy, but a few grey levels on real frames


def test_bad_compression_settings_are_refused():
    with pytest.raises(ValueError, match="compression must be one of \\('jpeg', 'png'\\)"):
        MakeBagConfig(compression='webp')
    with pytest.raises(ValueError, match='jpeg_quality must be in \\[1, 100\\]'):
        MakeBagConfig(compression='jpeg', jpeg_quality=0)


def test_camera_topic_resolves_to_its_compressed_sibling_or_says_what_is_there(make_test_bag):
    bag = make_test_bag('png', compression='png')
    with open_bag(bag) as reader:
        assert resolve_camera_topic(reader, '/camera/image_raw') == COMPRESSED_TOPIC
        assert resolve_camera_topic(reader, COMPRESSED_TOPIC) == COMPRESSED_TOPIC
        with pytest.raises(BagError, match='has no camera topic /front/image_raw \\(nor '
                                           '/front/image_raw/compressed\\); its topics are'):
            resolve_camera_topic(reader, '/front/image_raw')


def test_a_damaged_compressed_frame_in_a_bag_is_a_clear_error(make_test_bag, tmp_path):
    from rosbags.rosbag2 import Writer

    from tqdm_ros.bag.bag_reader import typestore_for
    from tqdm_ros.bag.make_bag import BAG_VERSION, compressed_image_message

    store = typestore_for()
    writer = Writer(tmp_path / 'damaged', version=BAG_VERSION)
    writer.open()
    connection = writer.add_connection(COMPRESSED_TOPIC, COMPRESSED_IMAGE_TYPE, typestore=store)
    msg = compressed_image_message(store, image=np.zeros((8, 8, 3), np.uint8), codec='jpeg',
                                   jpeg_quality=90, stamp_ns=5, frame_id='camera')
    msg.data = msg.data[:len(msg.data) // 2]  # cut in transit
    writer.write(connection, 5, store.serialize_cdr(msg, COMPRESSED_IMAGE_TYPE))
    writer.close()
    with open_bag(tmp_path / 'damaged') as reader:
        with pytest.raises(BagError, match='cannot decode compressed \\(rgb8; jpeg compressed '
                                           'bgr8\\) image of the bag: JPEG data has no readable'):
            list(iter_labeled_frames(reader, image_topic=COMPRESSED_TOPIC))


def test_cli_make_compressed_reports_the_topic(camvid_root, tmp_path, capsys):
    assert cli_main(['make', str(camvid_root), '-o', str(tmp_path / 'bag'), '--compressed',
                     'png']) == 0
    out = capsys.readouterr().out
    assert f'made 4 frames of 96x72 png on {COMPRESSED_TOPIC}' in out
    assert cli_main(['make', str(camvid_root), '-o', str(tmp_path / 'bad'), '--compressed',
                     'jpeg', '--jpeg-quality', '101']) == 1
    assert 'jpeg_quality must be in [1, 100], got 101' in capsys.readouterr().err


def test_replayed_compressed_frames_are_recorded_byte_for_byte(make_test_bag, ros_context,
                                                                tmp_path):
    bag = make_test_bag('jpeg', compression='jpeg', rate_hz=20.0)
    recorder = Recorder(tmp_path / 'recorded', context=ros_context,
                        config=RecordConfig(topics=(COMPRESSED_TOPIC,), max_messages=4,
                                            discovery_timeout_s=30.0))
    player = BagPlayer(bag, context=ros_context, config=ReplayConfig(
        topics=(COMPRESSED_TOPIC,), wait_for_subscribers_s=30.0, clock_hz=0.0))
    recording = threading.Thread(target=recorder.run)
    recording.start()
    try:
        summary = player.play()
        recording.join(30.0)
    finally:
        player.stop()
        recorder.stop()
        recording.join(10.0)
        player.close()
        recorder.close()
    assert summary.messages == {COMPRESSED_TOPIC: 4}
    with open_bag(bag) as reader:
        sent = [deserialize_message(bytes(raw), CompressedImage) for _, _, raw in
                reader.messages(connections_for(reader, [COMPRESSED_TOPIC]))]
    with open_bag(tmp_path / 'recorded') as reader:
        (connection,) = connections_for(reader, [COMPRESSED_TOPIC])
        assert connection.msgtype == COMPRESSED_IMAGE_TYPE
        got = [deserialize_message(bytes(raw), CompressedImage) for _, _, raw in
               reader.messages([connection])]
    assert got == sent
