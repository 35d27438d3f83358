"""A rosbag2 directory named '*.bag' reads as a ROS 1 bag to rosbags: refused up front, clearly."""
import pytest

from tqdm_ros.bag.bag_reader import BagError, open_bag, staged_bag_path


def test_writing_a_dot_bag_directory_is_refused(tmp_path):
    with pytest.raises(ValueError, match="ROS 1 bag"):
        with staged_bag_path(tmp_path / 'camvid.bag'):
            pass
    assert not list(tmp_path.iterdir())  # nothing was created


def test_reading_a_dot_bag_directory_explains_the_rename(tmp_path):
    bag = tmp_path / 'camvid.bag'
    bag.mkdir()
    (bag / 'metadata.yaml').write_text('rosbag2_bagfile_information: {}\n')
    with pytest.raises(BagError, match="rename the rosbag2 directory"):
        with open_bag(bag):
            pass
