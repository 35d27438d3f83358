"""Shared data of the evaluation tests: small CamVid frames, their bag, a tiny-model checkpoint."""
import pathlib

import cv2
import numpy as np
import pytest
from rosbags.rosbag2 import Writer
import torch

from tests.ros.bag.conftest import START_NS
from tqdm_ros.bag.bag_reader import IMAGE_TYPE, STRING_TYPE, typestore_for
from tqdm_ros.class_table_json import class_table_to_json
from tqdm_ros.bag.make_bag import BAG_VERSION, find_frames, image_message, make_bag
from tqdm_ros.bag.make_bag import MakeBagConfig

REPO_ROOT = pathlib.Path(__file__).resolve().parents[3]
SAMPLE = REPO_ROOT / 'data' / 'camvid_sample'
SMALL_SIZE = (96, 72)  # (width, height): a fifth of 480x360 keeps the tiny model fast
NUM_FRAMES = 3
BAG_RATE_HZ = 0.5  # 2 s between frames: the node keeps up even on a loaded 2-core machine
# Random mask logits are nearly flat, so a random model predicts one class everywhere; amplified
# mask embeddings make it predict two classes in a spatial pattern (road and train, of which only
# road exists in CamVid), so the confusion matrices compared are not a single column.
MASK_EMBED_GAIN = 300.0


def write_small_camvid(root: pathlib.Path) -> pathlib.Path:
    """Copy the first sample frames downscaled into a CamVid layout (no list file); return root."""
    (root / 'val').mkdir(parents=True)
    (root / 'valannot').mkdir()
    for image_path in sorted((SAMPLE / 'val').glob('*.png'))[:NUM_FRAMES]:
        image = cv2.imread(str(image_path), cv2.IMREAD_COLOR)
        label = cv2.imread(str(SAMPLE / 'valannot' / image_path.name), cv2.IMREAD_UNCHANGED)
        cv2.imwrite(str(root / 'val' / image_path.name),
                    cv2.resize(image, SMALL_SIZE, interpolation=cv2.INTER_AREA))
        cv2.imwrite(str(root / 'valannot' / image_path.name),
                    cv2.resize(label, SMALL_SIZE, interpolation=cv2.INTER_NEAREST))
    return root


@pytest.fixture(scope='module')
def small_camvid(tmp_path_factory) -> pathlib.Path:
    """Write the first sample frames downscaled in a CamVid layout."""
    return write_small_camvid(tmp_path_factory.mktemp('camvid') / 'camvid')


@pytest.fixture(scope='module')
def camvid_bag(small_camvid, tmp_path_factory) -> pathlib.Path:
    """Make a bag of the small CamVid frames with ground truth, stamps 2 s apart."""
    config = MakeBagConfig(start_time_ns=START_NS, rate_hz=BAG_RATE_HZ, stamp_jitter_ms=0.0)
    return make_bag(find_frames(small_camvid), tmp_path_factory.mktemp('bags') / 'camvid',
                    config=config).path


@pytest.fixture(scope='module')
def tiny_checkpoint(tmp_path_factory) -> pathlib.Path:
    """Save a tqdm-tiny-rn checkpoint (random weights, amplified mask embeddings)."""
    from tqdm_core import create_model, save_checkpoint
    model = create_model('tqdm-tiny-rn', pretrained=None, seed=0)
    with torch.no_grad():
        model.transformer_decoder.mask_embed[-1].weight.mul_(MASK_EMBED_GAIN)
    return pathlib.Path(save_checkpoint(model, tmp_path_factory.mktemp('model') / 'tiny.pt'))


def write_bag(path: pathlib.Path, *, image: np.ndarray, label: np.ndarray, class_table,
              stamps_ns=(START_NS,)) -> pathlib.Path:
    """Write a bag by hand: the same image and label at each stamp, and a class table.

    Unlike `make_bag` it checks nothing, so it can hold ground truth that does not fit.
    """
    store = typestore_for()
    writer = Writer(path, version=BAG_VERSION)
    writer.open()
    camera = writer.add_connection('/camera/image_raw', IMAGE_TYPE, typestore=store)
    truth = writer.add_connection('/camera/ground_truth', IMAGE_TYPE, typestore=store)
    table = writer.add_connection('/camera/ground_truth/class_table', STRING_TYPE,
                                  typestore=store)
    writer.write(table, stamps_ns[0], store.serialize_cdr(
        store.types[STRING_TYPE](data=class_table_to_json(class_table)), STRING_TYPE))
    for stamp in stamps_ns:
        for connection, array, encoding in ((camera, image, 'rgb8'), (truth, label, 'mono8')):
            msg = image_message(store, array=array, encoding=encoding, stamp_ns=stamp,
                                frame_id='camera')
            writer.write(connection, stamp, store.serialize_cdr(msg, IMAGE_TYPE))
    writer.close()
    return path
