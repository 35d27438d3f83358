"""What ``launch/segment.launch.py`` does with its arguments, as plain functions.

The launch file only declares arguments and creates actions; the decisions live here, so they
are tested without a ROS 2 launch installation, and a wrong argument fails the launch with a
message that names it before any process starts:

- node parameters from the non-empty arguments (:func:`node_parameter_overrides`),
  ``camera_topics`` given as a comma list or a YAML list;
- the DDS environment of the started processes (:func:`dds_environment`): inherited by default,
  loopback-only with ``local_only:=true``, the Fast DDS profile variable set or removed with
  ``fastdds_profile``;
- the node's parameters checked by the node's own validation when an argument sets an inference
  option (:func:`check_node_parameters`), so ``precision:=fp64`` ends the launch at once;
- the topics of the RViz config, rewritten for the first camera (:func:`rviz_config`).

:func:`loopback_environment` is the loopback-only environment for every distro at once, for the
processes the package's own tools start (benchmarks), which cannot rely on ``ROS_DISTRO``.
"""

import os
import re
from typing import Any, Optional

import yaml

from tqdm_ros.camera_topics import camera_topics, TRANSPORTS

# Launch argument -> node parameter, applied over the params file when the argument is not
# empty. 'model' is the deprecated name of 'preset', passed through for the node to report.
ARGUMENT_PARAMETERS = {
    'camera_topics': 'input_topics',
    'input_transport': 'input_transport',
    'checkpoint': 'checkpoint',
    'preset': 'preset',
    'model': 'model',
    'device': 'device',
    'precision': 'precision',
    'autostart': 'autostart',
}
# Launch arguments that set a tqdm_core.InferenceOptions field: only the node's parameter
# validation (which imports torch) can check them, so the launch runs it when one is given.
INFERENCE_ARGUMENTS = ('device', 'precision')
NODE_NAME = 'segmentation_node'
# The camera config/segment.rviz shows, as the node names its topics with the default
# output_namespace; rviz_config() moves every display to the launched camera.
RVIZ_TEMPLATE_CAMERA = camera_topics(
    '/camera/image_raw', transport='raw', output_namespace='segmentation')
PROFILE_AUTO = 'auto'
PROFILE_NONE = 'none'
# Fast DDS 3 (Kilted and newer) reads FASTDDS_DEFAULT_PROFILES_FILE; Fast DDS 2 (Humble, Iron,
# Jazzy) only FASTRTPS_DEFAULT_PROFILES_FILE, which Fast DDS 3 reports as deprecated.
PROFILE_VARIABLES = ('FASTDDS_DEFAULT_PROFILES_FILE', 'FASTRTPS_DEFAULT_PROFILES_FILE')
FAST_DDS_2_DISTROS = ('humble', 'iron', 'jazzy')


class LaunchArgumentError(ValueError):
    """A launch argument with a value the launch file cannot use; the message names it."""


def parse_bool(name: str, text: str) -> bool:
    """Read a ``true``/``false`` launch argument (any letter case).

    Raises:
        LaunchArgumentError: any other text.
    """
    value = text.strip().lower()
    if value not in ('true', 'false'):
        raise LaunchArgumentError(f"launch argument {name} must be 'true' or 'false', "
                                  f'got {text!r}')
    return value == 'true'


def parse_topic_list(text: str) -> list[str]:
    """Read ``camera_topics``: a comma list or a YAML list of topic names.

    ``/a/image,/b/image``, ``[/a/image, /b/image]`` and ``"['/a/image', '/b/image']"`` all give
    ``['/a/image', '/b/image']``.

    Raises:
        LaunchArgumentError: a YAML list that does not parse or holds something other than
            names, or no topic at all.
    """
    stripped = text.strip()
    if stripped.startswith('['):
        try:
            topics = yaml.safe_load(stripped)
        except yaml.YAMLError as error:
            raise LaunchArgumentError(
                f'launch argument camera_topics looks like a YAML list but does not parse: '
                f"{text!r} ({str(error).splitlines()[0]}); write e.g. \"['/cam/image_raw']\" or "
                '/cam0/image_raw,/cam1/image_raw') from None
        if not isinstance(topics, list) or not all(isinstance(t, str) for t in topics):
            raise LaunchArgumentError(
                f'launch argument camera_topics must list topic names, got {text!r}')
        topics = [t.strip() for t in topics]
    else:
        topics = [t.strip() for t in stripped.split(',')]
    topics = [t for t in topics if t]
    if not topics:
        raise LaunchArgumentError(f'launch argument camera_topics names no topic: {text!r}')
    return topics


def node_parameter_overrides(arguments: dict[str, str]) -> dict:
    """Node parameters from the launch arguments that are not empty, in their parameter types.

    Args:
        arguments: launch argument name -> text, for the names of
            :data:`ARGUMENT_PARAMETERS`; an empty text keeps the params file's value.

    Raises:
        LaunchArgumentError: an ``autostart`` that is not a bool, an ``input_transport`` that is
            not a transport, a ``camera_topics`` that is not a topic list.
    """
    overrides = {}
    for argument, parameter in ARGUMENT_PARAMETERS.items():
        text = arguments.get(argument, '').strip()
        if not text:
            continue
        if argument == 'camera_topics':
            overrides[parameter] = parse_topic_list(text)
        elif argument == 'autostart':
            overrides[parameter] = parse_bool(argument, text)
        elif argument == 'input_transport' and text not in TRANSPORTS:
            raise LaunchArgumentError(
                f'launch argument input_transport must be one of {", ".join(TRANSPORTS)}, '
                f'got {text!r}')
        else:
            overrides[parameter] = text
    return overrides


def dds_environment(*, local_only: bool, fastdds_profile: str, shipped_profile: str,
                    distro: Optional[str]) -> dict[str, Optional[str]]:
    """Environment changes for the launched processes' DDS settings.

    Args:
        local_only: limit discovery to this host and use a loopback-only profile.
        fastdds_profile: ``auto`` (the shipped profile with ``local_only``, else the
            environment's), ``none`` (no profile file, whatever the environment says) or the
            path of a Fast DDS XML profile.
        shipped_profile: path of the package's loopback profile (shared memory sized for big
            images, UDP on 127.0.0.1 only).
        distro: ``ROS_DISTRO``; decides the profile variable Fast DDS reads.

    Returns:
        Variable -> value to set, or None to remove it; empty to inherit everything.

    Raises:
        LaunchArgumentError: a profile path that is not a file.
    """
    changes: dict[str, Optional[str]] = {}
    if local_only:
        changes['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
        if distro == 'humble':  # before ROS_AUTOMATIC_DISCOVERY_RANGE existed
            changes['ROS_LOCALHOST_ONLY'] = '1'
    profile = fastdds_profile.strip()
    if profile == PROFILE_AUTO:
        profile = shipped_profile if local_only else ''
    if profile == PROFILE_NONE:
        changes.update(dict.fromkeys(PROFILE_VARIABLES))
    elif profile:
        if not os.path.isfile(profile):
            raise LaunchArgumentError(
                f"launch argument fastdds_profile: '{profile}' is not a file; give the path of "
                f"a Fast DDS XML profile, '{PROFILE_AUTO}' or '{PROFILE_NONE}'")
        variable = PROFILE_VARIABLES[1 if distro in FAST_DDS_2_DISTROS else 0]
        changes[variable] = os.path.abspath(profile)
    return changes


def loopback_environment(profile: str) -> dict[str, str]:
    """Loopback-only DDS settings that hold on every ROS 2 distro, whatever ``ROS_DISTRO`` says.

    Discovery stays on this host under both names (``ROS_AUTOMATIC_DISCOVERY_RANGE`` for Jazzy
    and newer, ``ROS_LOCALHOST_ONLY`` for Humble, which Jazzy still honours and Kilted ignores)
    and ``profile`` is named under both Fast DDS variables (:data:`PROFILE_VARIABLES`: Fast DDS 3
    reads one, Fast DDS 2 the other). :func:`dds_environment` sets only what the launch's distro
    reads; the package's own tools (benchmarks) use this instead, since a pip install sets no
    ``ROS_DISTRO`` and a sourced ROS install may not be the one that runs. The price: Kilted's
    rmw warns once per participant that the ``FASTRTPS_`` name is deprecated.

    Args:
        profile: path of a loopback-only Fast DDS XML profile (the package's shipped one).

    Returns:
        Variable -> value, to set in the environment of every process started.
    """
    return {'ROS_AUTOMATIC_DISCOVERY_RANGE': 'LOCALHOST', 'ROS_LOCALHOST_ONLY': '1',
            **dict.fromkeys(PROFILE_VARIABLES, profile)}


def _node_name_pattern(key: str) -> re.Pattern:
    """A params-file key as rcl matches it: ``*`` one namespace token, ``**`` any number."""
    tokens = [t for t in key.split('/') if t]
    parts = []
    for index, token in enumerate(tokens):
        if token == '**':
            parts.append('(/[^/]+)*' if index < len(tokens) - 1 else '(/[^/]+)+')
        else:
            parts.append('/[^/]+' if token == '*' else '/' + re.escape(token))
    return re.compile(''.join(parts) + r'\Z')


def params_file_parameters(path: str, *, namespace: str) -> dict[str, Any]:
    """The parameters a params file gives the launched node, later sections over earlier ones.

    Args:
        path: the ``params_file`` argument.
        namespace: the ``namespace`` argument ('' for the root namespace).

    Raises:
        LaunchArgumentError: a file that is missing or is not a ROS 2 params file.
    """
    try:
        with open(path) as file:
            content = yaml.safe_load(file) or {}
    except (OSError, yaml.YAMLError) as error:
        raise LaunchArgumentError(
            f"launch argument params_file: cannot read '{path}' ({error}); give a YAML file "
            'keyed /**/segmentation_node: ros__parameters: ...') from None
    node = f"{node_namespace(namespace).rstrip('/')}/{NODE_NAME}"
    values = {}
    for key, section in content.items() if isinstance(content, dict) else ():
        if isinstance(section, dict) and _node_name_pattern(str(key)).match(node):
            values.update(section.get('ros__parameters') or {})
    return values


def node_namespace(namespace: str) -> str:
    """The node's namespace as launch_ros gives it: ``ns`` and ``/ns/`` -> ``/ns``, '' -> ``/``."""
    return '/' + namespace.strip().strip('/')


def check_node_parameters(overrides: dict, *, params_file: str, namespace: str) -> None:
    """Validate the node's parameters as the node will, when an argument sets an inference option.

    The node validates at configure, after loading torch and the model; the launch would report
    ``precision:=fp64`` only when the node dies. The check imports the node's parameter table
    (and torch with it), so it runs only when one of :data:`INFERENCE_ARGUMENTS` is given: the
    other arguments are checked by :func:`node_parameter_overrides` without it.

    Args:
        overrides: :func:`node_parameter_overrides` of the launch arguments.
        params_file: the ``params_file`` argument, read as rcl reads it for the node.
        namespace: the ``namespace`` argument.

    Raises:
        LaunchArgumentError: the node would refuse its parameters; the message is the node's.
    """
    if not any(ARGUMENT_PARAMETERS[name] in overrides for name in INFERENCE_ARGUMENTS):
        return
    from tqdm_ros.parameters import PARAMETER_SPECS, ParameterError, validate_parameters

    values = {spec.name: spec.default for spec in PARAMETER_SPECS}
    values.update(params_file_parameters(params_file, namespace=namespace))
    values.update(overrides)
    try:
        validate_parameters(values)
    except ParameterError as error:
        given = ', '.join(f'{name}:={overrides[ARGUMENT_PARAMETERS[name]]}'
                          for name in INFERENCE_ARGUMENTS if ARGUMENT_PARAMETERS[name] in overrides)
        raise LaunchArgumentError(
            f'launch arguments ({given}) with {params_file}: {error}') from None


def rviz_config(template: str, *, input_topic: str, transport: str, output_namespace: str,
                namespace: str) -> str:
    """The RViz config ``template`` with its displays on the topics of one camera.

    Args:
        template: text of config/segment.rviz, which shows :data:`RVIZ_TEMPLATE_CAMERA`.
        input_topic: the camera's topic as the node is given it (relative names resolve in the
            node's namespace, as the node resolves them).
        transport: the node's ``input_transport``; a compressed camera is shown compressed.
        output_namespace: the node's ``output_namespace``.
        namespace: the ``namespace`` argument.

    Returns:
        The config text, every display topic fully qualified.

    Raises:
        LaunchArgumentError: a template display on a topic of no camera (the template changed).
    """
    from rclpy.expand_topic_name import expand_topic_name

    camera = camera_topics(input_topic, transport=transport, output_namespace=output_namespace)

    def resolve(name: str) -> str:
        return expand_topic_name(name, NODE_NAME, node_namespace(namespace))

    outputs = resolve(camera.outputs)
    config = yaml.safe_load(template)
    for display in config['Visualization Manager']['Displays']:
        topic = display.get('Topic')
        if not isinstance(topic, dict):
            continue
        value = topic['Value']
        if value == RVIZ_TEMPLATE_CAMERA.subscribed:
            topic['Value'] = resolve(camera.subscribed)
        elif value.startswith(RVIZ_TEMPLATE_CAMERA.outputs + '/'):
            topic['Value'] = outputs + value[len(RVIZ_TEMPLATE_CAMERA.outputs):]
        else:
            raise LaunchArgumentError(
                f"the RViz config's display {display.get('Name')!r} shows {value!r}, not a topic "
                f'of the camera {RVIZ_TEMPLATE_CAMERA.camera!r} it is written for')
    return yaml.safe_dump(config, sort_keys=False)


def rviz_camera(overrides: dict, *, params_file: str, namespace: str) -> dict[str, str]:
    """The :func:`rviz_config` arguments of the node's first camera.

    Each value comes from the launch arguments, else the params file, else the node's default.

    Raises:
        LaunchArgumentError: an unreadable params file.
    """
    values = {**params_file_parameters(params_file, namespace=namespace), **overrides}
    names = ('input_topics', 'input_transport', 'output_namespace')
    if any(name not in values for name in names):
        from tqdm_ros.parameters import SPECS_BY_NAME  # imports torch: only when needed

        values = {name: SPECS_BY_NAME[name].default for name in names} | values
    topics = values['input_topics'] or [RVIZ_TEMPLATE_CAMERA.camera]  # empty: the node refuses
    return {'input_topic': topics[0], 'transport': values['input_transport'],
            'output_namespace': values['output_namespace'], 'namespace': namespace}
