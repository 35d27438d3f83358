"""Tests of make_bag: layouts, stamps, class table, read-back by rosbags and the mcap decoder."""
import json
import pathlib

import cv2
from mcap.reader import make_reader
from mcap_ros2.decoder import DecoderFactory
import numpy as np
import pytest

from tests.ros.bag.conftest import HEIGHT, read_rgb, START_NS, WIDTH, write_camvid
from tqdm_core.classes import CAMVID_11, CITYSCAPES_19, IGNORE_INDEX
from tqdm_ros.bag.bag_reader import (connections_for, is_latched, iter_labeled_frames,
                                     open_bag, read_class_table, stamp_to_ns)
from tqdm_ros.bag.make_bag import find_frames, make_bag, MakeBagConfig


def _camvid_ids(label_path):
    """Return the CamVid ground truth as the bag should hold it: void (11) becomes 255."""
    raw = cv2.imread(str(label_path), cv2.IMREAD_UNCHANGED)
    return np.where(raw == 11, IGNORE_INDEX, raw).astype(np.uint8)


def test_camvid_bag_holds_frames_labels_stamps_and_class_table(camvid_root, tmp_path):
    frames = find_frames(camvid_root)
    assert frames.layout == 'camvid' and frames.class_table == CAMVID_11
    config = MakeBagConfig(rate_hz=10.0, start_time_ns=START_NS, stamp_jitter_ms=1.0,
                           transport_delay_ms=3.0, frame_id='cam_front')
    result = make_bag(frames, tmp_path / 'bag', config=config)
    assert result.num_frames == 4 and result.image_size == (WIDTH, HEIGHT)
    # Each stamp maps back to the file the frame was made from.
    assert result.frame_files == {f.stamp_ns: pair.image_path.name for f, pair in zip(
        _read_frames(result.path, config), frames.frames)}

    with open_bag(result.path) as reader:
        assert read_class_table(reader, config.class_table_topic) == CAMVID_11
        (table_conn,) = connections_for(reader, [config.class_table_topic])
        assert is_latched(table_conn)
        got = list(iter_labeled_frames(reader, image_topic=config.image_topic,
                                       label_topic=config.label_topic))
        image_conns = connections_for(reader, [config.image_topic])
        log_times = {stamp_to_ns(reader.deserialize(raw, c.msgtype).header.stamp): t
                     for c, t, raw in reader.messages(image_conns)}
    assert len(got) == 4
    for frame, pair in zip(got, frames.frames):
        np.testing.assert_array_equal(frame.image, read_rgb(pair.image_path))
        np.testing.assert_array_equal(frame.label, _camvid_ids(pair.label_path))
        assert frame.frame_id == 'cam_front'
        # Logged a transport delay after capture, as a recorder would.
        assert log_times[frame.stamp_ns] - frame.stamp_ns == 3_000_000
    stamps = np.array([f.stamp_ns for f in got])
    assert stamps[0] == START_NS
    # 100 ms period; jitter sigma 1 ms is clipped at a quarter period, so 4 sigma bounds it here.
    assert np.all(np.abs(np.diff(stamps) - 100_000_000) < 8_000_000)
    assert np.any(np.diff(stamps) != 100_000_000)


def _read_frames(bag, config):
    with open_bag(bag) as reader:
        return list(iter_labeled_frames(reader, image_topic=config.image_topic,
                                        label_topic=config.label_topic))


def test_zero_jitter_gives_exact_grid(make_test_bag):
    bag = make_test_bag(rate_hz=30.0)
    with open_bag(bag) as reader:
        stamps = [f.stamp_ns for f in iter_labeled_frames(reader, image_topic='/camera/image_raw')]
    assert stamps == [START_NS + round(i * 1e9 / 30.0) for i in range(4)]


def test_mcap_bag_is_read_by_the_independent_mcap_decoder(camvid_root, tmp_path):
    frames = find_frames(camvid_root)
    config = MakeBagConfig(storage='mcap', start_time_ns=START_NS)
    bag = make_bag(frames, tmp_path / 'bag', config=config).path
    decoded = {}
    with open(bag / 'bag.mcap', 'rb') as stream:
        reader = make_reader(stream, decoder_factories=[DecoderFactory()])
        for schema, channel, _, msg in reader.iter_decoded_messages():
            decoded.setdefault(channel.topic, []).append((schema.name, msg))
    assert {name for name, _ in decoded[config.image_topic]} == {'sensor_msgs/msg/Image'}
    table = json.loads(decoded[config.class_table_topic][0][1].data)
    assert [c['name'] for c in table['classes']] == list(CAMVID_11.names)
    assert [c['id'] for c in table['classes']] == list(range(11)) and table['unlabeled_id'] == 255
    for (_, image), (_, label), pair in zip(decoded[config.image_topic],
                                            decoded[config.label_topic], frames.frames):
        assert (image.encoding, image.width, image.height, image.step) == ('rgb8', 96, 72, 288)
        assert (label.encoding, label.step) == ('mono8', 96)
        assert image.header.stamp == label.header.stamp
        pixels = np.frombuffer(bytes(image.data), np.uint8).reshape(HEIGHT, WIDTH, 3)
        np.testing.assert_array_equal(pixels, read_rgb(pair.image_path))
        ids = np.frombuffer(bytes(label.data), np.uint8).reshape(HEIGHT, WIDTH)
        np.testing.assert_array_equal(ids, _camvid_ids(pair.label_path))


def test_cityscapes_label_ids_become_train_ids(tmp_path):
    root = tmp_path / 'cityscapes'
    (root / 'leftImg8bit' / 'val' / 'lindau').mkdir(parents=True)
    (root / 'gtFine' / 'val' / 'lindau').mkdir(parents=True)
    image = np.full((HEIGHT, WIDTH, 3), 90, np.uint8)
    # Label ids 7 road, 26 car, 33 bicycle, 0 unlabeled, 4 static (no train id).
    label_ids = np.tile(np.array([7, 26, 33, 0, 4], np.uint8), (HEIGHT, WIDTH // 5 + 1))[:, :WIDTH]
    cv2.imwrite(str(root / 'leftImg8bit/val/lindau/lindau_000000_000019_leftImg8bit.png'), image)
    cv2.imwrite(str(root / 'gtFine/val/lindau/lindau_000000_000019_gtFine_labelIds.png'),
                label_ids)
    frames = find_frames(root)
    assert frames.layout == 'cityscapes' and frames.class_table == CITYSCAPES_19
    bag = make_bag(frames, tmp_path / 'bag', config=MakeBagConfig()).path
    with open_bag(bag) as reader:
        (frame,) = iter_labeled_frames(reader, image_topic='/camera/image_raw',
                                       label_topic='/camera/ground_truth')
    expected = {7: 0, 26: 13, 33: 18, 0: 255, 4: 255}
    np.testing.assert_array_equal(frame.label, np.vectorize(expected.get)(label_ids))


def test_palette_labels_are_read_as_their_indices(camvid_root, tmp_path):
    """GTA5 and Mapillary ship palette PNGs: the index is the class id (OpenCV expands colours)."""
    from PIL import Image as PilImage

    label_path = camvid_root / 'valannot' / 'seq_00000.png'
    ids = _camvid_ids(label_path)
    raw = cv2.imread(str(label_path), cv2.IMREAD_UNCHANGED)
    palette = PilImage.fromarray(raw, mode='P')
    palette.putpalette([v for i in range(256) for v in (i, 255 - i, (7 * i) % 256)])
    palette.save(label_path)
    bag = make_bag(find_frames(camvid_root), tmp_path / 'bag').path
    with open_bag(bag) as reader:
        first = next(iter_labeled_frames(reader, image_topic='/camera/image_raw',
                                         label_topic='/camera/ground_truth'))
    np.testing.assert_array_equal(first.label, ids)


def test_plain_folders_match_by_stem_and_need_a_class_table(tmp_path):
    images, labels = tmp_path / 'images', tmp_path / 'labels'
    images.mkdir()
    labels.mkdir()
    for name, value in (('b', 2), ('a', 1)):
        cv2.imwrite(str(images / f'{name}.jpg'), np.zeros((HEIGHT, WIDTH, 3), np.uint8))
        cv2.imwrite(str(labels / f'{name}.png'), np.full((HEIGHT, WIDTH), value, np.uint8))
    with pytest.raises(ValueError, match='--classes'):
        find_frames(images, labels=labels)
    frames = find_frames(images, labels=labels, class_table=CAMVID_11)
    assert [p.name for p in frames.frames] == ['a', 'b']
    bag = make_bag(frames, tmp_path / 'bag', config=MakeBagConfig()).path
    with open_bag(bag) as reader:
        got = list(iter_labeled_frames(reader, image_topic='/camera/image_raw',
                                       label_topic='/camera/ground_truth'))
    assert [int(f.label[0, 0]) for f in got] == [1, 2]


@pytest.mark.parametrize('orientation', [2, 3, 4])
def test_exif_orientation_of_a_jpeg_is_ignored_as_the_datasets_do(tmp_path, orientation):
    """A JPEG with EXIF orientation 2, 3 or 4 (mirrored, turned, flipped: same size) must go into
    the bag as stored, as tqdm_core's datasets read it, or it no longer lines up with its label
    (which has no EXIF tag)."""
    from PIL import Image
    from tqdm_core.data.base import read_image

    images, labels = tmp_path / 'images', tmp_path / 'labels'
    images.mkdir()
    labels.mkdir()
    pixels = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    pixels[:HEIGHT // 2, :WIDTH // 3] = (250, 20, 20)  # a red block in the top left corner only
    exif = Image.Exif()
    exif[0x0112] = orientation  # the EXIF Orientation tag
    Image.fromarray(pixels).save(images / 'a.jpg', quality=100, exif=exif.tobytes())
    label = np.zeros((HEIGHT, WIDTH), np.uint8)
    label[:HEIGHT // 2, :WIDTH // 3] = CAMVID_11.names.index('car')
    cv2.imwrite(str(labels / 'a.png'), label)
    turned = cv2.imread(str(images / 'a.jpg'), cv2.IMREAD_COLOR)[:, :, ::-1]
    assert turned[0, 0, 0] < 128  # OpenCV's default read turns it: the red block moves away

    bag = make_bag(find_frames(images, labels=labels, class_table=CAMVID_11), tmp_path / 'bag',
                   config=MakeBagConfig()).path
    with open_bag(bag) as reader:
        (frame,) = iter_labeled_frames(reader, image_topic='/camera/image_raw',
                                       label_topic='/camera/ground_truth')
    np.testing.assert_array_equal(frame.image, read_image(images / 'a.jpg'))
    assert frame.image[0, 0, 0] > 200 and frame.label[0, 0] == CAMVID_11.names.index('car')


def test_images_without_labels_make_a_camera_only_bag(tmp_path):
    images = tmp_path / 'images'
    images.mkdir()
    cv2.imwrite(str(images / 'x.png'), np.zeros((HEIGHT, WIDTH, 3), np.uint8))
    bag = make_bag(find_frames(images), tmp_path / 'bag', config=MakeBagConfig()).path
    with open_bag(bag) as reader:
        assert {c.topic for c in reader.connections} == {'/camera/image_raw'}


def _assert_nothing_written(tmp_path, name='bag'):
    assert not (tmp_path / name).exists()
    assert not (tmp_path / f'.{name}.partial').exists()


def test_label_of_another_size_is_rejected_and_nothing_is_written(camvid_root, tmp_path):
    label = camvid_root / 'valannot' / 'seq_00002.png'
    cv2.imwrite(str(label), np.zeros((HEIGHT // 2, WIDTH // 2), np.uint8))
    with pytest.raises(ValueError, match=r"seq_00002.png' is 48x36 but its image is 96x72"):
        make_bag(find_frames(camvid_root), tmp_path / 'bag')
    _assert_nothing_written(tmp_path)


def test_label_values_outside_the_class_table_are_rejected(camvid_root, tmp_path):
    cv2.imwrite(str(camvid_root / 'valannot' / 'seq_00001.png'),
                np.full((HEIGHT, WIDTH), 40, np.uint8))
    with pytest.raises(ValueError, match=r'values \[40\] that are not classes of .camvid11'):
        make_bag(find_frames(camvid_root), tmp_path / 'bag')
    _assert_nothing_written(tmp_path)


def test_colour_labels_and_missing_labels_are_rejected(camvid_root, tmp_path):
    cv2.imwrite(str(camvid_root / 'valannot' / 'seq_00000.png'),
                np.zeros((HEIGHT, WIDTH, 3), np.uint8))
    with pytest.raises(ValueError, match='colour image; expected a single-channel image'):
        make_bag(find_frames(camvid_root), tmp_path / 'bag')
    (camvid_root / 'valannot' / 'seq_00003.png').unlink()
    with pytest.raises(FileNotFoundError, match='1 of 4 images .* no label .*seq_00003'):
        find_frames(camvid_root)
    _assert_nothing_written(tmp_path)


def test_existing_output_is_never_overwritten(make_test_bag, tmp_path):
    bag = make_test_bag()
    before = sorted(p.name for p in bag.iterdir())
    with pytest.raises(FileExistsError, match='exists; remove it'):
        make_test_bag()
    assert sorted(p.name for p in bag.iterdir()) == before


def test_second_split_and_other_source_errors(tmp_path):
    root = write_camvid(tmp_path / 'camvid', 2, split='test')
    assert len(find_frames(root, split='test').frames) == 2
    with pytest.raises(FileNotFoundError, match="expects '.*val'"):
        find_frames(root, layout='camvid', split='val')
    with pytest.raises(FileNotFoundError, match='is not a directory'):
        find_frames(tmp_path / 'nowhere')
    with pytest.raises(ValueError, match='rate_hz must be > 0'):
        MakeBagConfig(rate_hz=0)


def test_committed_camvid_sample_makes_a_bag(tmp_path):
    root = pathlib.Path(__file__).resolve().parents[3] / 'data' / 'camvid_sample'
    frames = find_frames(root)
    assert frames.layout == 'camvid' and len(frames.frames) == 6
    bag = make_bag(frames, tmp_path / 'bag', config=MakeBagConfig(storage='mcap')).path
    with open_bag(bag) as reader:
        got = list(iter_labeled_frames(reader, image_topic='/camera/image_raw',
                                       label_topic='/camera/ground_truth'))
    assert [f.image.shape for f in got] == [(360, 480, 3)] * 6
    for frame, pair in zip(got, frames.frames):
        np.testing.assert_array_equal(frame.label, _camvid_ids(pair.label_path))


@pytest.mark.parametrize('limit', [-1, 0])
def test_a_limit_below_one_is_refused(camvid_root, tmp_path, limit):
    """A negative limit used to slice off frames from the end (frames[:-1])."""
    with pytest.raises(ValueError, match=f'limit must be >= 1 or None, got {limit}'):
        make_bag(find_frames(camvid_root), tmp_path / 'bag', limit=limit)
    assert not (tmp_path / 'bag').exists()
