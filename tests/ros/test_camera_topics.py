"""Topics of a camera: raw or compressed input, where the outputs go, which names are valid."""

import pytest

from tqdm_ros.camera_topics import camera_output_namespace, camera_topics, topic_name_problem
from tqdm_ros.parameters import PARAMETER_SPECS, ParameterError, validate_parameters

DEFAULTS = {spec.name: spec.default for spec in PARAMETER_SPECS}


@pytest.mark.parametrize('topic, namespace', [
    ('/camera/image_raw', '/camera/segmentation'),
    ('/camera/image_raw/compressed', '/camera/segmentation'),
    ('/front/left/image_rect', '/front/left/segmentation'),
    ('/image', '/segmentation'),
    ('camera/image', 'camera/segmentation'),
    ('image', 'segmentation'),
])
def test_outputs_go_under_the_camera_namespace(topic, namespace):
    assert camera_output_namespace(topic, 'segmentation') == namespace


@pytest.mark.parametrize('topic, transport, subscribed, compressed', [
    ('/front/image_raw', 'raw', '/front/image_raw', False),
    ('/front/image_raw', 'compressed', '/front/image_raw/compressed', True),
    ('/front/image_raw/compressed', 'raw', '/front/image_raw/compressed', True),
    ('/front/image_raw/compressed', 'compressed', '/front/image_raw/compressed', True),
])
def test_transport_chooses_the_subscribed_topic_and_type(topic, transport, subscribed,
                                                         compressed):
    camera = camera_topics(topic, transport=transport, output_namespace='segmentation')
    assert (camera.camera, camera.subscribed, camera.compressed, camera.outputs) == (
        '/front/image_raw', subscribed, compressed, '/front/segmentation')


@pytest.mark.parametrize('name', ['/camera/image_raw', 'cam_a/image', '~/image', 'a/{node}/b'])
def test_valid_topic_names(name):
    assert topic_name_problem(name) == ''


@pytest.mark.parametrize('name, problem', [
    ('/camera/image raw', 'must not contain characters other than alphanumerics'),
    ("['/camera/image_raw']", 'must not contain characters other than alphanumerics'),
    ('/a//b', "must not contain repeated '/'"),
    ('/camera/', 'must not end with a forward slash'),
    ('1camera/image', 'must not start with a number'),
    ('a/{robot}/b', 'unknown substitution'),
])
def test_invalid_topic_names_say_why(name, problem):
    assert problem in topic_name_problem(name)


@pytest.mark.parametrize('changes, message', [
    ({'input_topics': ['/camera/image raw']},
     "parameter 'input_topics' holds '/camera/image raw', which is not a valid topic name"),
    ({'input_topics': ["['/camera/image_raw']"]}, 'which is not a valid topic name'),
    ({'output_namespace': 'seg mentation'},
     "camera '/camera/image_raw' gets the output '/camera/seg mentation/labels'"),
    ({'input_topics': ['/a/image', '/a/image/compressed']}, 'lists a topic twice'),
    ({'input_topics': ['/a/image_raw', '/a/image_rect']},
     "cameras '/a/image_raw' and '/a/image_rect' of parameter 'input_topics' are in the same "
     'namespace'),
    ({'input_transport': 'theora'}, "'input_transport' must be one of 'raw', 'compressed'"),
])
def test_topic_parameters_are_validated_with_the_others(changes, message):
    with pytest.raises(ParameterError) as error:
        validate_parameters({**DEFAULTS, **changes})
    assert message in str(error.value)
