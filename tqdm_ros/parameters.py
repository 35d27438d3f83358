"""Parameters of the segmentation node: one table, declared with descriptions, validated at start.

:data:`PARAMETER_SPECS` is the single source of truth: the node declares every entry (description
and constraints visible in ``ros2 param describe``), :func:`read_parameters` validates types,
ranges and choices into a typed :class:`NodeParameters`, and the tests check that
``config/segment.yaml`` and ``launch/segment.launch.py`` name only parameters listed here.
Parameters are read on ``configure``. ``ros2 param set`` is validated like a start-up value;
while the node is configured it is refused for every parameter except
:data:`RUNTIME_PARAMETERS` (applied at once), with a reason saying to deactivate and clean up
first, since the others only take effect at the next configure.

The inference parameters are the node's spelling of :class:`tqdm_core.InferenceOptions`
(:data:`OPTION_NAMES`): their defaults, choices and ranges come from it, the rules that involve
several of them are its own, and :meth:`NodeParameters.inference_options` hands them over to
:func:`tqdm_core.load_predictor`. So a value the node accepts is one the Predictor accepts.
"""

from dataclasses import dataclass
import difflib
import math
from typing import Any, Optional, Sequence

from tqdm_core.inference.options import CHOICES, InferenceOptions, InvalidOption, RANGES

from tqdm_ros.camera_topics import camera_topics, topic_name_problem, TRANSPORTS
from tqdm_ros.image_conversion import DEFAULT_MAX_PIXELS

_OPTION_DEFAULTS = InferenceOptions()


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
        unset_value: a number outside the range that means "not set" (None of the option).
        option: the :class:`tqdm_core.InferenceOptions` field this parameter sets, or None.
        replaced_by: for a deprecated name, the parameter to use instead.
    """

    name: str
    default: Any
    description: str
    choices: Optional[tuple[str, ...]] = None
    min_value: Optional[float] = None
    max_value: Optional[float] = None
    unset_value: Optional[float] = None
    option: Optional[str] = None
    replaced_by: Optional[str] = None

    def constraints(self) -> str:
        """Human-readable constraints, shown in the descriptor and in error messages."""
        if self.choices is not None:
            return 'one of ' + ', '.join(repr(c) for c in self.choices)
        unset = '' if self.unset_value is None else f'{self.unset_value} or '
        if self.min_value is not None and self.max_value is not None:
            return f'{unset}in [{self.min_value}, {self.max_value}]'
        if self.min_value is not None:
            return f'>= {self.min_value}'
        return ''


def option_spec(name: str, option: str, description: str, *, default: Any = None,
                unset_value: Optional[float] = None) -> ParameterSpec:
    """Describe a parameter that sets an InferenceOptions field, with the option's choices and range.

    Args:
        name: the parameter name.
        option: the InferenceOptions field.
        description: one line for ``ros2 param describe``.
        default: the node's default; None: the option's default.
        unset_value: the parameter value that leaves the option None.
    """
    low, high = RANGES.get(option, (None, None))
    return ParameterSpec(
        name, getattr(_OPTION_DEFAULTS, option) if default is None else default, description,
        choices=CHOICES.get(option), min_value=low, max_value=high, unset_value=unset_value,
        option=option)


PARAMETER_SPECS = (
    ParameterSpec(
        'input_topics', ['/camera/image_raw'],
        'camera image topics, one per camera (sensor_msgs/Image, or CompressedImage on '
        '<topic>/compressed: see input_transport); outputs go to '
        '<topic namespace>/<output_namespace>/...'),
    ParameterSpec(
        'output_namespace', 'segmentation',
        'sub-namespace of each camera namespace that holds the outputs'),
    ParameterSpec(
        'input_transport', 'raw',
        "'raw': sensor_msgs/Image on each topic; 'compressed': sensor_msgs/CompressedImage "
        '(JPEG, PNG) on <topic>/compressed; a topic ending in /compressed is always compressed',
        choices=TRANSPORTS),
    ParameterSpec(
        'checkpoint', 'default',
        "path of a tqdm checkpoint (tqdm_core.save_checkpoint); 'default': the model shipped in "
        "the package; empty: build 'preset' with untrained heads"),
    ParameterSpec(
        'preset', '',
        'model preset; checked against the checkpoint before loading (empty: accept the '
        'checkpoint preset), built with untrained heads when checkpoint is empty'),
    ParameterSpec('model', '', "deprecated name of 'preset'", replaced_by='preset'),
    ParameterSpec(
        'pretrained', 'default',
        "CLIP tower weights when checkpoint is empty: 'default' (the preset's tag), another "
        "open_clip tag, a file, or 'none' (random)"),
    option_spec('device', 'device', "inference device: 'cpu', 'cuda' or 'cuda:<index>'"),
    option_spec('precision', 'precision', 'inference precision'),
    option_spec('inference_mode', 'mode',
                'whole image at once, or sliding windows (window / stride below)'),
    option_spec('slide_window', 'window',
                'sliding window size in pixels, a multiple of the model size divisor (32)'),
    option_spec('slide_stride', 'stride', 'sliding window stride in pixels, at most slide_window'),
    option_spec('input_scale', 'scale',
                'resize factor applied before the model (speed); outputs are at the input '
                "resolution; 0: the checkpoint's recommended scale (1.0 without one)",
                default=0.0, unset_value=0.0),
    option_spec('confidence_threshold', 'confidence_threshold',
                'pixels whose confidence is below this become 255 (unlabeled); also sent in '
                'LabelInfo'),
    option_spec('max_batch_size', 'max_batch_size',
                'most frames (from different cameras, same size) in one forward pass', default=4),
    option_spec('compile', 'compile',
                'run the network through torch.compile (the first frame of each size compiles)'),
    option_spec('runtime', 'runtime',
                "'onnxruntime': run the network in ONNX Runtime (CPU, fp32, no compile)"),
    option_spec('flip_test', 'flip',
                'also run each frame mirrored left-right and average the scores (test-time '
                'augmentation: about twice the model time)'),
    option_spec('reuse_memory', 'reuse_memory',
                'on the CPU, keep freed memory in the process (glibc malloc) so large activations stop '
                'page-faulting on every frame (paper presets); off by default in the node',
                default=False),
    ParameterSpec('max_rate_hz', 0.0, 'cap on inference runs per second; 0 means no cap',
                  min_value=0.0, max_value=1000.0),
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
# Parameters a configured node applies at once when set; every other one needs a reconfigure.
RUNTIME_PARAMETERS = frozenset({'overlay_alpha', 'max_rate_hz', 'confidence_threshold'})
# InferenceOptions field -> the node parameter that sets it.
OPTION_NAMES = {spec.option: spec.name for spec in PARAMETER_SPECS if spec.option is not None}


@dataclass(frozen=True)
class NodeParameters:
    """Validated node parameters; see :data:`PARAMETER_SPECS` for the meaning of each field."""

    input_topics: tuple[str, ...]
    output_namespace: str
    input_transport: str
    checkpoint: str
    preset: str
    model: str
    pretrained: str
    device: str
    precision: str
    inference_mode: str
    slide_window: int
    slide_stride: int
    input_scale: float
    confidence_threshold: float
    max_batch_size: int
    compile: bool
    runtime: str
    flip_test: bool
    reuse_memory: bool
    max_rate_hz: float
    input_qos: str
    input_qos_depth: int
    output_qos: str
    output_qos_depth: int
    probability_classes: tuple[str, ...]
    overlay_alpha: float
    max_input_pixels: int
    diagnostics_period_s: float
    autostart: bool

    def inference_options(self) -> InferenceOptions:
        """Return the inference parameters as the options the Predictor is built from.

        Raises:
            InvalidOption: a combination the Predictor cannot run (found by
                :func:`validate_parameters` already for parameters read through it).
        """
        values = {}
        for option, name in OPTION_NAMES.items():
            value = getattr(self, name)
            values[option] = None if value == SPECS_BY_NAME[name].unset_value else value
        return InferenceOptions(**values)


def parameter_help(program: str) -> str:
    """The ``--help`` text of the console script: usage and every parameter with its default."""
    lines = [f'usage: {program} [--ros-args (-p NAME:=VALUE | --params-file FILE) ...]', '',
             'Semantic segmentation of camera images with tqdm (ROS 2 lifecycle node).',
             'Parameters:', '']
    for spec in PARAMETER_SPECS:
        constraints = f' ({spec.constraints()})' if spec.constraints() else ''
        if spec.replaced_by is not None:
            constraints = f' (use {spec.replaced_by!r})'
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
        if value is None:  # a list without a value reads as empty
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
    if spec.unset_value is not None and value == spec.unset_value:
        return value
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
    _check_topics(checked['input_topics'], checked['input_transport'],
                  checked['output_namespace'])
    if checked['model']:
        if checked['preset'] not in ('', checked['model']):
            raise ParameterError(
                f"parameters 'preset' ({checked['preset']!r}) and 'model' ({checked['model']!r}, "
                "its deprecated name) disagree; set only 'preset'")
        checked['preset'] = checked['model']
    if not checked['checkpoint'] and not checked['preset']:
        raise ParameterError(
            "parameters 'checkpoint' and 'preset' are both empty; set a checkpoint path, "
            "'default' or a model preset name")
    parameters = NodeParameters(**checked)
    try:
        parameters.inference_options()
    except InvalidOption as error:
        raise ParameterError(f'parameter {error.describe(OPTION_NAMES)}') from None
    return parameters


def _check_topics(input_topics: tuple[str, ...], transport: str, output_namespace: str) -> None:
    """Topic names valid, each camera once, no two cameras writing to the same outputs."""
    cameras = [camera_topics(t, transport=transport, output_namespace=output_namespace)
               for t in input_topics]
    for topic, camera in zip(input_topics, cameras):
        for name, what in ((topic, "parameter 'input_topics' holds"),
                           (f'{camera.outputs}/labels', f'camera {topic!r} gets the output')):
            problem = topic_name_problem(name)
            if problem:
                raise ParameterError(
                    f'{what} {name!r}, which is not a valid topic name ({problem}); check '
                    "'input_topics' and 'output_namespace'")
    for index, camera in enumerate(cameras):
        for other, earlier in zip(input_topics, cameras[:index]):
            if camera.camera == earlier.camera:
                raise ParameterError(f"parameter 'input_topics' lists a topic twice (camera "
                                     f'{camera.camera!r}): {list(input_topics)}')
            if camera.outputs == earlier.outputs:
                raise ParameterError(
                    f"cameras {other!r} and {input_topics[index]!r} of parameter 'input_topics' "
                    f'are in the same namespace and would publish to the same outputs under '
                    f'{camera.outputs!r}; give each camera its own namespace, e.g. '
                    '/front/image_raw and /rear/image_raw')


def declare_parameters(node) -> None:
    """Declare every parameter of :data:`PARAMETER_SPECS` on a node.

    Scalars use dynamic typing so that :func:`validate_value` reports a wrong type in its own
    words (and accepts ``1`` for a float); lists are declared as string arrays. An empty list
    carries no type (rcl also reads an empty YAML list as unset), so it is set explicitly as an
    empty string array: every parameter has a value, which ``ros2 param dump`` and the
    get_parameters service need (they answer nothing for a request naming an unset one).

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
                declared = node.declare_parameter(spec.name, initial, descriptor)
            except InvalidParameterTypeException as error:
                raise ParameterError(
                    f'parameter {spec.name!r} must be a list of strings ({error})') from None
            if declared.type_ == Parameter.Type.NOT_SET:
                node.set_parameters([Parameter(spec.name, Parameter.Type.STRING_ARRAY, [])])
        else:
            descriptor.dynamic_typing = True
            node.declare_parameter(spec.name, spec.default, descriptor)


def undeclared_overrides(node) -> list[str]:
    """Parameters given to the node (params file, ``-p``) that it does not declare.

    ROS ignores them silently, so a misspelt key (``confidance_threshold``) would leave the
    default in force. ``qos_overrides.*`` entries belong to rclpy's QoS overriding, not to us.
    """
    # rclpy keeps the overrides it received here; it has no public accessor for them.
    overrides = getattr(node, '_parameter_overrides', {})
    return sorted(name for name in overrides
                  if not node.has_parameter(name) and not name.startswith('qos_overrides.'))


def undeclared_overrides_warning(names: Sequence[str]) -> str:
    """One warning for :func:`undeclared_overrides`, naming the closest known parameter."""
    parts = []
    for name in names:
        close = difflib.get_close_matches(name, SPECS_BY_NAME, n=1)
        parts.append(f'{name!r}' + (f' (did you mean {close[0]!r}?)' if close else ''))
    return (f"ignoring unknown parameter{'s' if len(names) > 1 else ''} {', '.join(parts)}: "
            'not a parameter of this node (segmentation_node --help lists them); check the '
            'params file and -p arguments')


def parameter_values(node) -> dict[str, Any]:
    """The current value of every declared parameter of :data:`PARAMETER_SPECS`, by name."""
    return {spec.name: node.get_parameter(spec.name).value for spec in PARAMETER_SPECS}


def read_parameters(node) -> NodeParameters:
    """Read and validate the declared parameters of a node (see :func:`validate_parameters`)."""
    return validate_parameters(parameter_values(node))
