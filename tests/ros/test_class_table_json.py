"""The one JSON class-table form: round trip; malformed tables refused with the form shown."""
import json

import pytest
from tqdm_core import CAMVID_11, CITYSCAPES_19, ClassTable

from tqdm_ros.class_table_json import class_table_from_json, class_table_to_json
from tqdm_ros.class_table_json import ClassTableFormatError


@pytest.mark.parametrize('table', [CAMVID_11, CITYSCAPES_19,
                                   ClassTable.from_names(['road', 'curb', 'puddle'], name='mine')])
def test_round_trip_is_exact(table):
    assert class_table_from_json(class_table_to_json(table)) == table
    assert class_table_from_json(class_table_to_json(table, confidence_threshold=0.3)) == table


def test_threshold_is_written_only_when_given():
    assert 'confidence_threshold' not in json.loads(class_table_to_json(CAMVID_11))
    assert json.loads(class_table_to_json(CAMVID_11, confidence_threshold=0.3))[
        'confidence_threshold'] == 0.3


def test_ids_in_any_order_are_sorted():
    document = json.loads(class_table_to_json(CAMVID_11))
    document['classes'].reverse()
    assert class_table_from_json(json.dumps(document)) == CAMVID_11


def _document_with(**changes):
    document = json.loads(class_table_to_json(CAMVID_11))
    document.update(changes)
    return json.dumps(document)


@pytest.mark.parametrize('text, reason', [
    ('not json', 'Expecting value'),
    ('{"name": "x"}', "missing key 'classes'"),
    (json.dumps({'name': 'x', 'names': ['a'], 'colors': [[1, 2, 3]]}), "missing key 'classes'"),
    (_document_with(classes=[]), r'ids must be 0..K-1'),
    (_document_with(classes=[{'id': 1, 'name': 'a', 'color': [1, 2, 3]}]), r'got \[1\]'),
    (_document_with(classes=[{'id': 0, 'name': 'a', 'color': [1, 2]}]), 'colour must be'),
    (_document_with(classes=[{'id': 0, 'name': 'a', 'color': [1, 2, 300]}]), 'colour must be'),
    (_document_with(unlabeled_id=0), 'unlabeled_id must be 255'),
])
def test_malformed_tables_are_refused_with_the_expected_form(text, reason):
    with pytest.raises(ClassTableFormatError, match=reason) as caught:
        class_table_from_json(text)
    assert '"classes": [{"id": 0' in str(caught.value)
