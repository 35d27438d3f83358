"""Parameters of the segmentation node: one table, declared with descriptions, validated at start.

:data:`PARAMETER_SPECS` is the single source of truth: the node declares every entry (description
and constraints visible in ``ros2 param describe``), :func:`read_parameters` validates types,
ranges and choices into a typed :class:`NodeParameters`, and the tests check that
``config/segment.yaml`` and ``launch/segment.launch.py`` name only parameters listed here.
Parameters are read on ``configure``: a change made with ``ros2 param set`` takes effect at the
next cleanup + configure, and an invalid one is refused when it is set.
"""

from dataclasses import dataclass
import math
import re
from typing import Any, Optional

from tqdm_ros.image_conversion import DEFAULT_MAX_PIXELS

DEVICE_PATTERN = re.compile(r'^(cpu|cuda(:\d+)?)$')


@dataclass(frozen=True)
class ParameterSpec:
    """One declared parameter.

    Attributes:
        name: parameter name.
        default: default value; its Python type is the parameter type (int values are also
            accepted for float parameters).
        description: one line for ``ros2 param describe``.
        choices: allowed values of a string parameter, or None.
        min_value: smallest allowed number, or None.
        max_value: largest allowed number, or None.
    """

    name: str
    default: Any
    description: str
    choices: Optional[tuple[str, ...]] = None
    min_value: Optional[float] = None
    max_value: Optional[float] = None

    def constraints(self) -> str:
        """Human-readable constraints, shown in the descriptor and in error messages."""
        if self.choices is not None:
            return 'one of ' + ', '.join(repr(c) for c in self.choices)
        if self.min_value is not None and self.max_value is not None:
            return f'in [{self.min_value}, {self.max_value}]'
        if self.min_value is not None:
            return f'>= {self.min_value}'
        return ''


PARAMETER_SPECS = (
    ParameterSpec(
        'input_topics', ['/camera/image_raw'],
        'sensor_msgs/Image topics, one per camera; outputs go to '
        '<topic namespace>/<output_namespace>/...'),
    ParameterSpec(
        'output_namespace', 'segmentation',
        'sub-namespace of each camera namespace that holds the outputs'),
    ParameterSpec(
        'checkpoint', 'default',
        "path of a tqdm checkpoint (tqdm_core.save_checkpoint); 'default': the model shipped in "
        "the package; empty: build 'model' with untrained heads"),
    ParameterSpec(
        'model', '',
        'model preset; checked against the checkpoint (empty: accept the checkpoint preset), '
        'built from scratch when checkpoint is empty'),
    ParameterSpec(
        'pretrained', 'default',
        "CLIP tower weights when checkpoint is empty: 'default' (the preset's tag), another "
        "open_clip tag, a file, or 'none' (random)"),
    ParameterSpec('device', 'cpu', "inference device: 'cpu', 'cuda' or 'cuda:<index>'"),
    ParameterSpec('precision', 'fp32', 'inference precision', choices=('fp32', 'bf16', 'fp16')),
    ParameterSpec(
        'inference_mode', 'whole',
        'whole image at once, or sliding windows (window / stride below)',
        choices=('whole', 'slide')),
    ParameterSpec('slide_window', 512, 'sliding window size in pixels', min_value=32,
                  max_value=8192),
    ParameterSpec('slide_stride', 341, 'sliding window stride in pixels, at most slide_window',
                  min_value=16, max_value=8192),
    ParameterSpec(
        'input_scale', 0.0,
        'resize factor applied before the model (speed); outputs are at the input resolution; '
        "0: the checkpoint's recommended scale (1.0 without one)",
        min_value=0.0, max_value=8.0),
    ParameterSpec(
        'confidence_threshold', 0.0,
        'pixels whose confidence is below this become 255 (unlabeled); also sent in LabelInfo',
        min_value=0.0, max_value=1.0),
    ParameterSpec('max_rate_hz', 0.0, 'cap on inference runs per second; 0 means no cap',
                  min_value=0.0, max_value=1000.0),
    ParameterSpec(
        'max_batch_size', 4,
        'most frames (from different cameras, same size) in one forward pass',
        min_value=1, max_value=64),
    ParameterSpec(
        'input_qos', 'sensor_data',
        'image subscription QoS: sensor_data (best effort) or reliable',
        choices=('sensor_data', 'reliable')),
    ParameterSpec('input_qos_depth', 1, 'image subscription history depth', min_value=1,
                  max_value=100),
    ParameterSpec(
        'output_qos', 'reliable',
        'output QoS: reliable (matches every subscriber) or sensor_data (best effort)',
        choices=('reliable', 'sensor_data')),
    ParameterSpec('output_qos_depth', 2, 'output history depth', min_value=1, max_value=100),
    ParameterSpec(
        'probability_classes', [],
        'class names that get a mono8 probability image (probability * 255) each'),
    ParameterSpec('overlay_alpha', 0.5, 'weight of the colour mask in the overlay',
                  min_value=0.0, max_value=1.0),
    ParameterSpec('max_input_pixels', DEFAULT_MAX_PIXELS,
                  'larger images are rejected as corrupt', min_value=1, max_value=2 ** 31 - 1),
    ParameterSpec('diagnostics_period_s', 1.0, 'period of the /diagnostics report in seconds',
                  min_value=0.1, max_value=60.0),
    ParameterSpec(
        'autostart', True,
        'configure and activate at start; false leaves it to a lifecycle manager'),
)

SPECS_BY_NAME = {spec.name: spec for spec in PARAMETER_SPECS}


@dataclass(frozen=True)
class NodeParameters:
    """Validated node parameters; see :data:`PARAMETER_SPECS` for the meaning of each field."""

    input_topics: tuple[str, ...]
    output_namespace: str
    checkpoint: str
    model: str
    pretrained: str
    device: str
    precision: str
    inference_mode: str
    slide_window: int
    slide_stride: int
    input_scale: float
    confidence_threshold: float
    max_rate_hz: float
    max_batch_size: int
    input_qos: str
    input_qos_depth: int
    output_qos: str
    output_qos_depth: int
    probability_classes: tuple[str, ...]
    overlay_alpha: float
    max_input_pixels: int
    diagnostics_period_s: float
    autostart: bool


def parameter_help(program: str) -> str:
    """The ``--help`` text of the console script: usage and every parameter with its default."""
    lines = [f'usage: {program} [--ros-args (-p NAME:=VALUE | --params-file FILE) ...]', '',
             'Semantic segmentation of camera images with tqdm (ROS 2 lifecycle node).',
             'Parameters:', '']
    for spec in PARAMETER_SPECS:
        constraints = f' ({spec.constraints()})' if spec.constraints() else ''
        lines.append(f'  {spec.name} = {spec.default!r}')
        lines.append(f'      {spec.description}{constraints}')
    lines += ['', 'Defaults: config/segment.yaml; outputs, topics and diagnostics: README.md.']
    return '\n'.join(lines)


class ParameterError(ValueError):
    """An invalid parameter value; the message names the parameter, the rule and the value."""


def _type_name(value: Any) -> str:
    """Name the type of a value in words, with its article: 'an integer', 'a string'."""
    if isinstance(value, bool):
        return 'a bool'
    if isinstance(value, int):
        return 'an integer'
    if isinstance(value, float):
        return 'a float'
    if isinstance(value, str):
        return 'a string'
    if isinstance(value, (list, tuple)):
        return 'a list'
    return f'a {type(value).__name__}'


def validate_value(spec: ParameterSpec, value: Any) -> Any:
    """Check one value against its spec.

    Returns:
        The value converted to the spec type (int to float, list to tuple).

    Raises:
        ParameterError: wrong type, out of range or not an allowed choice.
    """
    expected = type(spec.default)
    if expected is list:
        if value is None:  # an empty YAML list arrives as an unset parameter
            return ()
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise ParameterError(
                f'parameter {spec.name!r} must be a list of strings, got {value!r}')
        return tuple(value)
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if type(value) is not expected:
        raise ParameterError(
            f'parameter {spec.name!r} must be {_type_name(spec.default)}, got '
            f'{_type_name(value)} {value!r}')
    if spec.choices is not None and value not in spec.choices:
        raise ParameterError(
            f'parameter {spec.name!r} must be {spec.constraints()}, got {value!r}')
    if isinstance(value, float) and not math.isfinite(value):
        raise ParameterError(f'parameter {spec.name!r} must be a finite number, got {value!r}')
    if spec.min_value is not None and value < spec.min_value or (
            spec.max_value is not None and value > spec.max_value):
        raise ParameterError(
            f'parameter {spec.name!r} must be {spec.constraints()}, got {value!r}')
    return value


def validate_parameters(values: dict[str, Any]) -> NodeParameters:
    """Validate every parameter and the rules that involve several of them.

    Args:
        values: parameter name to value, one entry per spec.

    Returns:
        The typed parameters.

    Raises:
        ParameterError: the first invalid value, with what was expected and what to do.
    """
    checked = {spec.name: validate_value(spec, values[spec.name]) for spec in PARAMETER_SPECS}
    if not checked['input_topics']:
        raise ParameterError(
            "parameter 'input_topics' is empty; give at least one image topic, e.g. "
            "-p input_topics:=\"['/camera/image_raw']\"")
    if len(set(checked['input_topics'])) != len(checked['input_topics']):
        raise ParameterError(f"parameter 'input_topics' lists a topic twice: "
                             f"{list(checked['input_topics'])}")
    if not DEVICE_PATTERN.match(checked['device']):
        raise ParameterError(
            f"parameter 'device' must be 'cpu', 'cuda' or 'cuda:<index>', "
            f"got {checked['device']!r}")
    if not checked['checkpoint'] and not checked['model']:
        raise ParameterError(
            "parameters 'checkpoint' and 'model' are both empty; set a checkpoint path or a "
            'model preset name')
    if checked['slide_stride'] > checked['slide_window']:
        raise ParameterError(
            f"parameter 'slide_stride' ({checked['slide_stride']}) must not exceed "
            f"'slide_window' ({checked['slide_window']}): windows would leave gaps")
    return NodeParameters(**checked)


def declare_parameters(node) -> None:
    """Declare every parameter of :data:`PARAMETER_SPECS` on a node.

    Scalars use dynamic typing so that :func:`validate_value` reports a wrong type in its own
    words (and accepts ``1`` for a float); lists are declared as string arrays (an empty list
    carries no type, so it arrives unset: read as empty).

    Raises:
        ParameterError: an override (params file, ``-p``) of the wrong type for a list.
    """
    from rcl_interfaces.msg import ParameterDescriptor
    from rclpy.exceptions import InvalidParameterTypeException
    from rclpy.parameter import Parameter

    for spec in PARAMETER_SPECS:
        descriptor = ParameterDescriptor(
            description=spec.description, additional_constraints=spec.constraints())
        if isinstance(spec.default, list):
            initial = spec.default or Parameter.Type.STRING_ARRAY
            try:
                node.declare_parameter(spec.name, initial, descriptor)
            except InvalidParameterTypeException as error:
                raise ParameterError(
                    f'parameter {spec.name!r} must be a list of strings ({error})') from None
        else:
            descriptor.dynamic_typing = True
            node.declare_parameter(spec.name, spec.default, descriptor)


def read_parameters(node) -> NodeParameters:
    """Read and validate the declared parameters of a node (see :func:`validate_parameters`)."""
    from rclpy.exceptions import ParameterUninitializedException

    values = {}
    for spec in PARAMETER_SPECS:
        try:
            values[spec.name] = node.get_parameter(spec.name).value
        except ParameterUninitializedException:  # a list declared by type and never set
            values[spec.name] = None
    return validate_parameters(values)
