"""Pure functions of the node: topic tokens, per-class statistics, class table, model loading."""

import json

import numpy as np
import pytest
from tqdm_core import CheckpointError, CITYSCAPES_19, create_model, save_checkpoint

from tqdm_ros.class_table_json import class_table_to_json
from tqdm_ros.parameters import PARAMETER_SPECS, validate_parameters
from tqdm_ros.segmentation_node import (
    class_statistics, load_predictor, probability_class_ids, statistics_message, topic_safe)


def test_class_names_become_topic_tokens():
    assert [topic_safe(n) for n in ('traffic light', 'sign-symbol', 'Car')] == [
        'traffic_light', 'sign_symbol', 'car']


def test_class_statistics_by_hand():
    """Six pixels, one unlabeled (255).

    class 0: pixels 0.5, 0.7 -> fraction 2/6, mean 0.6
    class 1: pixels 0.9, 0.3, 0.6 -> fraction 3/6, mean 0.6
    class 2: none -> 0, 0 (the 255 pixel counts in no class)
    """
    labels = np.array([[0, 0, 1], [255, 1, 1]], dtype=np.uint8)
    confidence = np.array([[0.5, 0.7, 0.9], [0.1, 0.3, 0.6]], dtype=np.float32)
    statistics = class_statistics(labels, confidence, num_classes=3)
    assert statistics.dtype == np.float32
    np.testing.assert_allclose(statistics, [[2 / 6, 0.6], [3 / 6, 0.6], [0, 0]], atol=1e-6)


def test_statistics_message_layout_is_row_major():
    msg = statistics_message(np.arange(6, dtype=np.float32).reshape(3, 2))
    assert [(d.label, d.size, d.stride) for d in msg.layout.dim] == [
        ('class', 3, 6), ('pixel_fraction,mean_confidence', 2, 2)]
    assert list(msg.data) == [0, 1, 2, 3, 4, 5]


def test_probability_classes_are_looked_up_by_name():
    assert probability_class_ids(('car', 'road'), CITYSCAPES_19) == (13, 0)
    with pytest.raises(ValueError, match=r"\['cars'\], not classes of the model"):
        probability_class_ids(('car', 'cars'), CITYSCAPES_19)


def test_class_table_json():
    table = json.loads(class_table_to_json(CITYSCAPES_19, confidence_threshold=0.4))
    assert table['name'] == 'cityscapes19' and table['unlabeled_id'] == 255
    assert table['confidence_threshold'] == 0.4
    assert table['classes'][13] == {'id': 13, 'name': 'car', 'color': [0, 0, 142]}
    assert len(table['classes']) == 19


def test_load_predictor_checks_the_checkpoint_preset(tmp_path):
    checkpoint = str(save_checkpoint(create_model('tqdm-tiny-rn', pretrained=None, seed=0),
                                     tmp_path / 'tiny.pt'))
    defaults = {spec.name: spec.default for spec in PARAMETER_SPECS}
    params = validate_parameters({**defaults, 'checkpoint': checkpoint, 'input_scale': 0.5})
    predictor = load_predictor(params)
    assert predictor.describe()['preset'] == 'tqdm-tiny-rn' and predictor.scale == 0.5
    mismatch = validate_parameters({**defaults, 'checkpoint': checkpoint,
                                    'preset': 'tqdm-clip-vit-b16'})
    with pytest.raises(CheckpointError, match="saved for preset 'tqdm-tiny-rn' but preset "
                                              "'tqdm-clip-vit-b16' was requested"):
        load_predictor(mismatch)
    missing = validate_parameters({**defaults, 'checkpoint': str(tmp_path / 'none.pt')})
    with pytest.raises(FileNotFoundError):
        load_predictor(missing)
