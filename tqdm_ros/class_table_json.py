"""The one JSON form of a class table, shared by the node's latched topic, bags and files.

    {"name": "camvid11",
     "classes": [{"id": 0, "name": "sky", "color": [128, 128, 128]}, ...],
     "unlabeled_id": 255,
     "confidence_threshold": 0.0}          # only where a threshold applies (the node)

Ids must be 0..K-1 (in any order); a class's label value in a mono8 label image is its id and
255 means unlabeled. Readers of the node's ``class_table`` topic, of bags written by
``tqdm-bag make`` and of ``--classes table.json`` files all parse this one form.
"""

from __future__ import annotations

import json
from typing import Optional

from tqdm_core import ClassTable, IGNORE_INDEX

EXAMPLE = ('{"name": "my_classes", "classes": [{"id": 0, "name": "road", '
           '"color": [128, 64, 128]}, ...], "unlabeled_id": 255}')


class ClassTableFormatError(ValueError):
    """A text that is not the JSON class table; the message shows the expected form."""


def class_table_to_json(class_table: ClassTable, *,
                        confidence_threshold: Optional[float] = None) -> str:
    """Serialize a class table; the threshold is included when given."""
    document = {
        'name': class_table.name,
        'classes': [{'id': i, 'name': n, 'color': list(c)}
                    for i, (n, c) in enumerate(zip(class_table.names, class_table.colors))],
        'unlabeled_id': IGNORE_INDEX,
    }
    if confidence_threshold is not None:
        document['confidence_threshold'] = confidence_threshold
    return json.dumps(document)


def class_table_from_json(text: str) -> ClassTable:
    """Parse a JSON class table.

    Raises:
        ClassTableFormatError: not JSON, keys missing, ids not 0..K-1, a colour that is not
            three integers in [0, 255], or an unlabeled id other than 255.
    """
    try:
        document = json.loads(text)
        classes = sorted(document['classes'], key=lambda c: c['id'])
        ids = [c['id'] for c in classes]
        if ids != list(range(len(classes))) or not classes:
            raise ValueError(f'class ids must be 0..K-1 without gaps, got {ids}')
        if len(classes) >= IGNORE_INDEX:
            raise ValueError(f'at most {IGNORE_INDEX} classes fit a mono8 label image')
        unlabeled = document.get('unlabeled_id', IGNORE_INDEX)
        if unlabeled != IGNORE_INDEX:
            raise ValueError(f'unlabeled_id must be {IGNORE_INDEX}, got {unlabeled}')
        colors = tuple(tuple(c['color']) for c in classes)
        for color in colors:
            if len(color) != 3 or not all(isinstance(v, int) and 0 <= v <= 255 for v in color):
                raise ValueError(
                    f'a colour must be [r, g, b] integers in 0..255, got {list(color)}')
        return ClassTable(name=str(document['name']), names=tuple(str(c['name']) for c in classes),
                          colors=colors)
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        detail = f'missing key {err}' if isinstance(err, KeyError) else str(err)
        raise ClassTableFormatError(
            f'not a JSON class table ({detail}); expected {EXAMPLE}') from None
