"""Fixtures of the bag tool tests: small synthetic datasets, bags made from them, a ROS context."""
import os
import pathlib

import cv2
from domain_coordinator import domain_id
import numpy as np
import pytest

from tqdm_ros.bag.make_bag import find_frames, make_bag, MakeBagConfig

WIDTH, HEIGHT = 96, 72
START_NS = 1_700_000_000_123_000_000


def write_camvid(root: pathlib.Path, num_frames: int, *, split: str = 'val') -> pathlib.Path:
    """Write a CamVid-layout folder of (72, 96) frames, labels 0..11 (11 = void); return root."""
    rng = np.random.default_rng(7)
    (root / split).mkdir(parents=True)
    (root / f'{split}annot').mkdir()
    for index in range(num_frames):
        name = f'seq_{index:05d}.png'
        image = rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
        label = rng.integers(0, 12, (HEIGHT, WIDTH), dtype=np.uint8)
        cv2.imwrite(str(root / split / name), image)
        cv2.imwrite(str(root / f'{split}annot' / name), label)
    return root


def read_rgb(path: pathlib.Path) -> np.ndarray:
    """Read an image file as (H, W, 3) uint8 RGB."""
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


@pytest.fixture
def camvid_root(tmp_path):
    """Return a CamVid-layout folder of 4 synthetic frames."""
    return write_camvid(tmp_path / 'camvid', 4)


@pytest.fixture
def make_test_bag(tmp_path):
    """Return a function making a bag (name, num_frames, **config) of synthetic CamVid frames."""
    def make(name: str = 'bag', num_frames: int = 4, **overrides) -> pathlib.Path:
        root = tmp_path / f'{name}_frames'
        if not root.exists():
            write_camvid(root, num_frames)
        settings = {'start_time_ns': START_NS, 'stamp_jitter_ms': 0.0} | overrides
        return make_bag(find_frames(root), tmp_path / name,
                        config=MakeBagConfig(**settings)).path
    return make


@pytest.fixture(scope='session')
def ros_domain():
    """Reserve a ROS_DOMAIN_ID no other test process uses, exported for child processes."""
    with domain_id() as reserved:
        previous = os.environ.get('ROS_DOMAIN_ID')
        os.environ['ROS_DOMAIN_ID'] = str(reserved)
        yield reserved
        if previous is None:
            os.environ.pop('ROS_DOMAIN_ID', None)
        else:
            os.environ['ROS_DOMAIN_ID'] = previous


@pytest.fixture
def ros_context(ros_domain):
    """Yield a fresh rclpy context on the reserved domain, shut down after the test."""
    import rclpy
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=ros_domain)
    yield context
    rclpy.shutdown(context=context)
