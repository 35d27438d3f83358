"""Node parameters: spec table, config/segment.yaml, validation rules, rclpy declaration."""

import contextlib
import dataclasses

import pytest
import rclpy
from rclpy.parameter import Parameter

from tests.ros.ros_harness import REPO_ROOT, reserved_domain
from tqdm_ros.parameters import (
    NodeParameters, PARAMETER_SPECS, ParameterError, SPECS_BY_NAME, validate_parameters,
    validate_value)
from tqdm_ros.segmentation_node import SegmentationNode
import yaml

DEFAULTS = {spec.name: spec.default for spec in PARAMETER_SPECS}


@pytest.fixture(scope='module')
def ros_domain():
    with reserved_domain() as domain:
        yield domain


@contextlib.contextmanager
def node_with_arguments(*ros_args: str):
    """Build a SegmentationNode in its own context from command-line ROS arguments."""
    context = rclpy.Context()
    rclpy.init(args=['test', '--ros-args', *ros_args], context=context)
    try:
        node = SegmentationNode(context=context)
        try:
            yield node
        finally:
            node.destroy_node()
    finally:
        rclpy.shutdown(context=context)


def test_every_field_has_a_spec_and_the_defaults_are_valid():
    assert [f.name for f in dataclasses.fields(NodeParameters)] == [
        s.name for s in PARAMETER_SPECS]
    params = validate_parameters(DEFAULTS)
    assert params.input_topics == ('/camera/image_raw',) and params.probability_classes == ()
    assert all(spec.description for spec in PARAMETER_SPECS)


def test_config_file_lists_every_parameter_with_its_default():
    config = yaml.safe_load((REPO_ROOT / 'config' / 'segment.yaml').read_text())
    values = config['/**/segmentation_node']['ros__parameters']
    assert list(values) == list(DEFAULTS)
    for name, value in values.items():
        assert value == DEFAULTS[name], name


@pytest.mark.parametrize('name, value, message', [
    ('max_batch_size', 'four', "'max_batch_size' must be an integer, got a string 'four'"),
    ('max_batch_size', 2.5, "'max_batch_size' must be an integer, got a float 2.5"),
    ('autostart', 1, "'autostart' must be a bool, got an integer 1"),
    ('confidence_threshold', 1.5, "'confidence_threshold' must be in [0.0, 1.0], got 1.5"),
    ('confidence_threshold', float('nan'), "'confidence_threshold' must be a finite number"),
    ('max_rate_hz', -1.0, "'max_rate_hz' must be in [0.0, 1000.0], got -1.0"),
    ('precision', 'fp8', "'precision' must be one of 'fp32', 'bf16', 'fp16', got 'fp8'"),
    ('input_qos', 'best_effort', "'input_qos' must be one of 'sensor_data', 'reliable'"),
    ('input_topics', [1, 2], "'input_topics' must be a list of strings, got [1, 2]"),
])
def test_invalid_values_name_the_parameter_the_rule_and_the_value(name, value, message):
    with pytest.raises(ParameterError) as error:
        validate_value(SPECS_BY_NAME[name], value)
    assert message in str(error.value)


def test_an_integer_is_accepted_for_a_float_parameter():
    assert validate_value(SPECS_BY_NAME['confidence_threshold'], 1) == 1.0
    assert isinstance(validate_value(SPECS_BY_NAME['max_rate_hz'], 30), float)


@pytest.mark.parametrize('changes, message', [
    ({'input_topics': None}, "'input_topics' is empty"),
    ({'input_topics': ['/a/image', '/a/image']}, 'lists a topic twice'),
    ({'device': 'gpu'}, "'device' must be 'cpu', 'cuda' or 'cuda:<index>', got 'gpu'"),
    ({'checkpoint': '', 'model': ''}, "'checkpoint' and 'model' are both empty"),
    ({'slide_window': 256, 'slide_stride': 300}, "'slide_stride' (300) must not exceed"),
])
def test_rules_across_parameters(changes, message):
    with pytest.raises(ParameterError) as error:
        validate_parameters({**DEFAULTS, **changes})
    assert message in str(error.value)


def test_devices_accepted():
    for device in ('cpu', 'cuda', 'cuda:1'):
        assert validate_parameters({**DEFAULTS, 'device': device}).device == device


def test_the_shipped_params_file_loads_through_rclpy(ros_domain):
    """Also covers the empty YAML list (probability_classes: []), which rcl leaves unset."""
    with node_with_arguments('--params-file', str(REPO_ROOT / 'config' / 'segment.yaml'),
                             '-p', 'probability_classes:=[road, person]') as node:
        assert node.parameters == validate_parameters(
            {**DEFAULTS, 'probability_classes': ['road', 'person']})
        descriptor = node.describe_parameter('confidence_threshold')
        assert descriptor.description and descriptor.additional_constraints == 'in [0.0, 1.0]'
    with node_with_arguments('--params-file', str(REPO_ROOT / 'config' / 'segment.yaml')) as node:
        assert node.parameters.probability_classes == ()


@pytest.mark.parametrize('override, message', [
    ('confidence_threshold:=2.0', "'confidence_threshold' must be in [0.0, 1.0], got 2.0"),
    ('max_batch_size:=big', "'max_batch_size' must be an integer, got a string 'big'"),
    ('input_topics:=[1, 2]', "'input_topics' must be a list of strings"),
])
def test_bad_overrides_fail_node_construction(ros_domain, override, message):
    with pytest.raises(ParameterError) as error:
        with node_with_arguments('-p', override):
            pass
    assert message in str(error.value)


def test_invalid_runtime_changes_are_refused(ros_domain):
    with node_with_arguments() as node:
        refused = node.set_parameters([Parameter('overlay_alpha', value=3.0)])[0]
        assert not refused.successful and "'overlay_alpha' must be in [0.0, 1.0]" in refused.reason
        accepted = node.set_parameters([Parameter('overlay_alpha', value=0.25)])[0]
        assert accepted.successful
        assert node.get_parameter('overlay_alpha').value == 0.25


@pytest.mark.parametrize('argv', [['--help'], ['-h'], ['-h', '--ros-args', '-p', 'device:=cpu']])
def test_help_prints_every_parameter_and_exits_without_starting(argv, capsys):
    from tqdm_ros import segmentation_node

    with pytest.raises(SystemExit) as exited:
        segmentation_node.main(argv, predictor_factory=_must_not_load)
    assert exited.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith('usage: segmentation_node')
    for spec in PARAMETER_SPECS:
        assert f'  {spec.name} = {spec.default!r}\n      {spec.description}' in text
    assert "precision = 'fp32'\n      inference precision (one of 'fp32', 'bf16', 'fp16')" in text
    assert not rclpy.ok()  # rclpy was never initialised


def _must_not_load(parameters):
    raise AssertionError('--help must not load a model')
