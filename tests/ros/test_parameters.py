"""Node parameters: spec table, config/segment.yaml, validation rules, rclpy declaration."""

import contextlib
import dataclasses
import subprocess
import sys

import pytest
import rclpy
from rclpy.parameter import Parameter
from tqdm_core import create_model, InferenceOptions, InvalidOption, Predictor
from tqdm_core.inference.options import CHOICES, RANGES

from tests.ros.ros_harness import REPO_ROOT
from tqdm_ros.parameters import (
    NodeParameters, OPTION_NAMES, PARAMETER_SPECS, ParameterError, SPECS_BY_NAME,
    undeclared_overrides, undeclared_overrides_warning, validate_parameters, validate_value)
from tqdm_ros.segmentation_node import SegmentationNode
import yaml

DEFAULTS = {spec.name: spec.default for spec in PARAMETER_SPECS}


@pytest.fixture(scope='module')
def tiny_model():
    return create_model('tqdm-tiny-rn', pretrained=None, seed=0)



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
    assert list(values) == [s.name for s in PARAMETER_SPECS if s.replaced_by is None]
    for name, value in values.items():
        assert value == DEFAULTS[name], name


@pytest.mark.parametrize('name, value, message', [
    ('max_batch_size', 'four', "'max_batch_size' must be an integer, got a string 'four'"),
    ('max_batch_size', 2.5, "'max_batch_size' must be an integer, got a float 2.5"),
    ('autostart', 1, "'autostart' must be a bool, got an integer 1"),
    ('confidence_threshold', 1.5, "'confidence_threshold' must be in [0.0, 1.0], got 1.5"),
    ('confidence_threshold', float('nan'), "'confidence_threshold' must be a finite number"),
    ('max_rate_hz', -1.0, "'max_rate_hz' must be in [0.0, 1000.0], got -1.0"),
    ('precision', 'fp8', "'precision' must be one of "
     f"{', '.join(repr(c) for c in CHOICES['precision'])}, got 'fp8'"),
    ('input_scale', 0.01, "'input_scale' must be 0.0 or in [0.05, 8.0], got 0.01"),
    ('slide_window', 16, "'slide_window' must be in [32, 8192], got 16"),
    ('runtime', 'tensorrt', "'runtime' must be one of 'torch', 'onnxruntime', got 'tensorrt'"),
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
    ({'checkpoint': '', 'preset': ''}, "'checkpoint' and 'preset' are both empty"),
    ({'slide_window': 256, 'slide_stride': 300},
     "parameter 'slide_stride' must be at most 'slide_window' (256): windows would leave gaps"),
    ({'precision': 'fp16'}, "parameter 'precision' must be 'fp32' or 'bf16' on the CPU ('fp16' "
                            "needs a CUDA 'device')"),
    ({'runtime': 'onnxruntime', 'compile': True}, "'compile' is off"),
    ({'preset': 'tqdm-tiny-rn', 'model': 'tqdm-tiny-vit'},
     "'preset' ('tqdm-tiny-rn') and 'model'"),
])
def test_rules_across_parameters(changes, message):
    with pytest.raises(ParameterError) as error:
        validate_parameters({**DEFAULTS, **changes})
    assert message in str(error.value)


def test_inference_parameters_are_the_options_with_their_ranges_and_defaults():
    """Every inference parameter maps to one InferenceOptions field with the same choices and range
    (input_scale adds 0 = the checkpoint's recommendation); the defaults map to the options'."""
    assert set(OPTION_NAMES) == {f.name for f in dataclasses.fields(InferenceOptions)}
    for option, name in OPTION_NAMES.items():
        spec = SPECS_BY_NAME[name]
        assert spec.choices == CHOICES.get(option), name
        assert (spec.min_value, spec.max_value) == RANGES.get(option, (None, None)), name
    options = validate_parameters(DEFAULTS).inference_options()
    # The node batches at most 4 cameras, and leaves the process's malloc settings alone unless asked.
    assert options == InferenceOptions(max_batch_size=4, reuse_memory=False)
    assert validate_parameters({**DEFAULTS, 'input_scale': 0.5}).inference_options().scale == 0.5


@pytest.mark.parametrize('name', sorted(n for n, s in SPECS_BY_NAME.items()
                                        if s.option in RANGES))
def test_node_and_predictor_agree_on_every_range(name, tiny_model):
    """The ends of each range pass the node and build a Predictor; just outside, the node refuses
    and so does the Predictor."""
    spec = SPECS_BY_NAME[name]
    step = 1 if isinstance(spec.default, int) else 1e-6
    # A window no larger than the stride bound, a stride no smaller than the window bound.
    extra = ({'slide_stride': 16} if name == 'slide_window'
             else {'slide_window': 8192} if name == 'slide_stride' else {})
    for value in (spec.min_value, spec.max_value):
        params = validate_parameters({**DEFAULTS, **extra, name: value})
        arguments = params.inference_options().predictor_arguments(recommended_scale=None)
        Predictor(tiny_model, **arguments)
    for value in (spec.min_value - step, spec.max_value + step):
        if value != spec.unset_value:
            with pytest.raises(ParameterError, match=f"'{name}' must be"):
                validate_parameters({**DEFAULTS, **extra, name: value})
            with pytest.raises(InvalidOption):
                InferenceOptions(**{spec.option: value})
            others = {SPECS_BY_NAME[k].option: v for k, v in extra.items()}
            arguments = {spec.option: value, **others}
            with pytest.raises(ValueError, match=f'{spec.option} must be in'):
                Predictor(tiny_model, **arguments)


def test_deprecated_model_is_read_as_preset():
    params = validate_parameters({**DEFAULTS, 'checkpoint': '', 'model': 'tqdm-tiny-rn'})
    assert (params.preset, params.model) == ('tqdm-tiny-rn', 'tqdm-tiny-rn')


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


def test_misspelt_parameters_are_named_with_the_closest_known_one(ros_domain, tmp_path):
    """ROS drops parameters a node does not declare; the node must say so, not run on defaults."""
    params_file = tmp_path / 'typo.yaml'
    params_file.write_text(yaml.safe_dump({'segmentation_node': {'ros__parameters': {
        'confidance_threshold': 0.5, 'input_topic': ['/front/image_raw'], 'device': 'cpu'}}}))
    with node_with_arguments('--params-file', str(params_file), '-p', 'use_sim_time:=true',
                             '-p', 'qos_overrides./x.subscription.depth:=3') as node:
        unknown = undeclared_overrides(node)
        assert unknown == ['confidance_threshold', 'input_topic']
        assert node.parameters.confidence_threshold == DEFAULTS['confidence_threshold']
    warning = undeclared_overrides_warning(unknown)
    assert "'confidance_threshold' (did you mean 'confidence_threshold'?)" in warning
    assert "'input_topic' (did you mean 'input_topics'?)" in warning
    assert undeclared_overrides_warning(['zzz']).startswith("ignoring unknown parameter 'zzz':")
    with node_with_arguments('--params-file', str(REPO_ROOT / 'config' / 'segment.yaml')) as node:
        assert undeclared_overrides(node) == []


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
    assert f"precision = {DEFAULTS['precision']!r}\n      inference precision (one of " in text
    assert "  model = ''\n      deprecated name of 'preset' (use 'preset')" in text
    assert not rclpy.ok()  # rclpy was never initialised


def _must_not_load(parameters):
    raise AssertionError('--help must not load a model')


def test_parameter_checks_do_not_import_the_model_stack():
    """The node validates its parameters before any model code: open_clip (and timm) load only with the model."""
    probe = ('import sys, tqdm_ros.parameters; '
             "print(sorted(m for m in ('open_clip', 'timm', 'tqdm_core.builder') if m in sys.modules))")
    result = subprocess.run([sys.executable, '-c', probe], capture_output=True, text=True,
                            timeout=120, check=True)
    assert result.stdout.strip() == '[]'
