"""What ``launch/segment.launch.py`` does with its arguments, as plain functions.

The launch file only declares arguments and creates actions; the decisions live here, so they
are tested without a ROS 2 launch installation, and a wrong argument fails the launch with a
message that names it before any process starts:

- node parameters from the non-empty arguments (:func:`node_parameter_overrides`),
  ``camera_topics`` given as a comma list or a YAML list;
- the DDS environment of the started processes (:func:`dds_environment`): inherited by default,
  loopback-only with ``local_only:=true``, the Fast DDS profile variable set or removed with
  ``fastdds_profile``.

:func:`loopback_environment` is the loopback-only environment for every distro at once, for the
processes the package's own tools start (benchmarks), which cannot rely on ``ROS_DISTRO``.
"""

import os
from typing import Optional

import yaml

from tqdm_ros.camera_topics import TRANSPORTS

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
