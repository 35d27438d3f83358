"""bag_reader: clear errors for missing, damaged or mismatched bags; image decoding."""
import numpy as np
import pytest
from rosbags.rosbag2 import Writer

from tqdm_ros.bag.bag_reader import (BagError, image_to_array, IMAGE_TYPE, iter_labeled_frames,
                                     open_bag, summarize_bag, typestore_for)
from tqdm_ros.bag.make_bag import image_message, STORAGES


def _read_all(bag):
    with open_bag(bag) as reader:
        return list(iter_labeled_frames(reader, image_topic='/camera/image_raw',
                                        label_topic='/camera/ground_truth'))


def test_missing_bag_and_directory_without_metadata(tmp_path):
    with pytest.raises(FileNotFoundError, match="no bag at '.*nothing'"):
        _read_all(tmp_path / 'nothing')
    (tmp_path / 'half').mkdir()
    (tmp_path / 'half' / 'half.db3').write_bytes(b'')
    with pytest.raises(BagError, match='not a rosbag2 bag.*metadata.yaml'):
        _read_all(tmp_path / 'half')


@pytest.mark.parametrize('storage', ['sqlite3', 'mcap'])
def test_truncated_bag_gives_a_clear_error(make_test_bag, storage):
    bag = make_test_bag(storage=storage)
    (data_file,) = [p for p in bag.iterdir() if p.suffix in ('.db3', '.mcap')]
    data_file.write_bytes(data_file.read_bytes()[:data_file.stat().st_size // 2])
    with pytest.raises(BagError, match='damaged or truncated'):
        _read_all(bag)


def test_missing_topic_lists_the_topics_of_the_bag(make_test_bag):
    bag = make_test_bag()
    with open_bag(bag) as reader, pytest.raises(
            BagError, match=r'no topic /cam/labels; its topics are: /camera/ground_truth, '):
        list(iter_labeled_frames(reader, image_topic='/camera/image_raw',
                                 label_topic='/cam/labels'))


def test_ground_truth_of_another_size_in_a_bag(tmp_path):
    store = typestore_for()
    with Writer(tmp_path / 'bag', version=9, storage_plugin=STORAGES['sqlite3']) as writer:
        for topic, array, encoding in (
                ('/camera/image_raw', np.zeros((72, 96, 3), np.uint8), 'rgb8'),
                ('/camera/ground_truth', np.zeros((36, 48), np.uint8), 'mono8')):
            conn = writer.add_connection(topic, IMAGE_TYPE, typestore=store)
            msg = image_message(store, array=array, encoding=encoding, stamp_ns=5, frame_id='c')
            writer.write(conn, 5, store.serialize_cdr(msg, IMAGE_TYPE))
    with pytest.raises(BagError, match='ground truth at stamp 5 ns is 48x36 but its image is '
                                       '96x72'):
        _read_all(tmp_path / 'bag')


def test_summary_counts_topics(make_test_bag):
    summary = summarize_bag(make_test_bag(num_frames=3, rate_hz=5.0))
    assert summary.message_count == 7 and summary.storage == 'sqlite3'
    assert [(t.name, t.message_count, t.latched) for t in summary.topics] == [
        ('/camera/ground_truth', 3, False), ('/camera/ground_truth/class_table', 1, True),
        ('/camera/image_raw', 3, False)]
    # Frames 0.2 s apart, logged 3 ms after capture; the class table is logged at the first stamp.
    assert summary.duration_s == pytest.approx(0.403)


def test_image_to_array_respects_step_and_channel_order():
    store = typestore_for()
    rgb = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    # bgr8 rows of 9 bytes padded to a step of 12: the padding must not leak into the pixels.
    padded = np.zeros((2, 12), np.uint8)
    padded[:, :9] = rgb[:, :, ::-1].reshape(2, 9)
    msg = image_message(store, array=rgb, encoding='rgb8', stamp_ns=0, frame_id='')
    msg.encoding, msg.step, msg.data = 'bgr8', 12, padded.reshape(-1)
    np.testing.assert_array_equal(image_to_array(msg), rgb)
    msg.data = padded.reshape(-1)[:-5]
    with pytest.raises(BagError, match='cannot decode bgr8 image of the bag: .*19 bytes'):
        image_to_array(msg)
    msg.encoding = '16UC1'
    with pytest.raises(BagError, match='cannot decode 16UC1 image'):
        image_to_array(msg)


def test_only_frames_with_ground_truth_are_decoded_and_mono8_cameras_are_read(tmp_path,
                                                                             monkeypatch):
    """A 10-frame mono8 camera with ground truth on frames 3 and 7: two frames come out, both
    with three equal channels, and only those two camera frames are decoded."""
    from tqdm_ros.bag import bag_reader

    store = typestore_for()
    rng = np.random.default_rng(4)
    camera = [rng.integers(0, 256, (6, 8), dtype=np.uint8) for _ in range(10)]
    with Writer(tmp_path / 'bag', version=9, storage_plugin=STORAGES['sqlite3']) as writer:
        image_conn = writer.add_connection('/camera/image_raw', IMAGE_TYPE, typestore=store)
        label_conn = writer.add_connection('/camera/ground_truth', IMAGE_TYPE, typestore=store)
        for index, frame in enumerate(camera):
            stamp = (index + 1) * 100_000_000
            msg = image_message(store, array=frame, encoding='mono8', stamp_ns=stamp,
                                frame_id='c')
            writer.write(image_conn, stamp, store.serialize_cdr(msg, IMAGE_TYPE))
            if index in (3, 7):
                label = image_message(store, array=np.full((6, 8), index, np.uint8),
                                      encoding='mono8', stamp_ns=stamp, frame_id='c')
                writer.write(label_conn, stamp + 1, store.serialize_cdr(label, IMAGE_TYPE))
    decoded = []
    decode = bag_reader.image_to_array
    monkeypatch.setattr(bag_reader, 'image_to_array',
                        lambda msg: decoded.append(msg.header.stamp.sec) or decode(msg))
    frames = _read_all(tmp_path / 'bag')
    assert [frame.stamp_ns for frame in frames] == [400_000_000, 800_000_000]
    for frame, index in zip(frames, (3, 7)):
        np.testing.assert_array_equal(frame.image, np.repeat(camera[index][:, :, None], 3, axis=2))
        assert (frame.label == index).all()
    assert len(decoded) == 2  # the two camera frames with ground truth


def _write_frame(path, *, camera_encoding, label_encoding, label):
    """Write a one-frame bag: a 6x8 camera image and a label image of the given encodings."""
    store = typestore_for()
    with Writer(path, version=9, storage_plugin=STORAGES['sqlite3']) as writer:
        for topic, array, encoding in (
                ('/camera/image_raw', np.full((6, 8), 90, np.uint8), camera_encoding),
                ('/camera/ground_truth', label, label_encoding)):
            conn = writer.add_connection(topic, IMAGE_TYPE, typestore=store)
            msg = image_message(store, array=array, encoding=encoding, stamp_ns=5, frame_id='c')
            writer.write(conn, 5, store.serialize_cdr(msg, IMAGE_TYPE))
    return path


def test_8uc1_label_topics_are_read_like_mono8_but_not_cameras(tmp_path):
    """8UC1, the generic name of mono8's layout, is a common label encoding: its class ids are
    read as they are. A camera frame in 8UC1 stays an unsupported camera encoding, as in the
    node; a label of three channels is refused."""
    label = np.arange(48, dtype=np.uint8).reshape(6, 8)
    label[0, 0] = 255
    (frame,) = _read_all(_write_frame(tmp_path / 'labels', camera_encoding='mono8',
                                      label_encoding='8UC1', label=label))
    np.testing.assert_array_equal(frame.label, label)
    assert frame.label.dtype == np.uint8 and frame.image.shape == (6, 8, 3)
    with pytest.raises(BagError, match='cannot decode 8UC1 image of the bag: unsupported'):
        _read_all(_write_frame(tmp_path / 'camera', camera_encoding='8UC1',
                               label_encoding='mono8', label=label))
    with pytest.raises(BagError, match="label topic '/camera/ground_truth' carries rgb8 images; "
                                       'expected class ids in mono8 or 8UC1'):
        _read_all(_write_frame(tmp_path / 'colour', camera_encoding='mono8',
                               label_encoding='rgb8', label=np.zeros((6, 8, 3), np.uint8)))
